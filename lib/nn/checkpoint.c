/* slidestream — HDF5 checkpoint I/O. The file layout is the PyTorch state_dict flattened to
 * root datasets (see nn_checkpoint.h), so h5py users move weights with a few lines. HDF5's own
 * error printing is switched off while we work and restored after; every failure becomes one
 * ss_error line naming the file and the tensor or attribute.
 */
#include "slidestream/nn_checkpoint.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slidestream/error.h"

#define DOM "nn.checkpoint"

size_t ss_ckpt_numel(const ss_ckpt_tensor_t *t)
{
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= (size_t)t->shape[i];
    return n;
}

/* Silence HDF5's stderr traces for the duration of one public call. */
typedef struct {
    H5E_auto2_t func;
    void *data;
} quiet_t;

static quiet_t quiet_begin(void)
{
    quiet_t q = {NULL, NULL};
    H5Eget_auto2(H5E_DEFAULT, &q.func, &q.data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return q;
}

static void quiet_end(quiet_t q)
{
    H5Eset_auto2(H5E_DEFAULT, q.func, q.data);
}

static int write_str_attr(hid_t f, const char *name, const char *value)
{
    /* Variable-length UTF-8, the type h5py gives a Python str: it reads back as str. */
    hid_t st = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR), a = -1;
    int rc = -1;
    if (st < 0 || sp < 0 || H5Tset_size(st, H5T_VARIABLE) < 0 || H5Tset_cset(st, H5T_CSET_UTF8) < 0)
        goto done;
    a = H5Acreate2(f, name, st, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, st, &value) < 0) goto done;
    rc = 0;
done:
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    if (st >= 0) H5Tclose(st);
    return rc;
}

static int write_num_attr(hid_t f, const char *name, hid_t file_type, hid_t mem_type, int n,
                          const void *value)
{
    hsize_t dim = (hsize_t)n;
    hid_t sp = n == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dim, NULL);
    hid_t a = sp < 0 ? -1 : H5Acreate2(f, name, file_type, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (a >= 0 && H5Awrite(a, mem_type, value) >= 0) ? 0 : -1;
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    return rc;
}

static int write_tensor(hid_t f, const ss_ckpt_tensor_t *t)
{
    hsize_t dims[SS_CKPT_MAX_DIM];
    for (int i = 0; i < t->ndim; i++)
        dims[i] = (hsize_t)t->shape[i];
    hid_t sp = t->ndim == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(t->ndim, dims, NULL);
    hid_t ft = t->dtype == SS_DTYPE_F32 ? H5T_IEEE_F32LE : H5T_STD_I64LE;
    hid_t mt = t->dtype == SS_DTYPE_F32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT64;
    /* "group/name" creates the group (the training state lives under "trainer/") */
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (lcpl >= 0) H5Pset_create_intermediate_group(lcpl, 1);
    hid_t d = sp < 0 || lcpl < 0 ? -1 : H5Dcreate2(f, t->name, ft, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (d >= 0 && H5Dwrite(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data) >= 0) ? 0 : -1;
    if (d >= 0) H5Dclose(d);
    if (lcpl >= 0) H5Pclose(lcpl);
    if (sp >= 0) H5Sclose(sp);
    return rc;
}

static int write_attrs(hid_t f, const ss_ckpt_attr_t *attrs, int nattrs)
{
    for (int i = 0; i < nattrs; i++) {
        const ss_ckpt_attr_t *a = &attrs[i];
        int rc = a->text ? write_str_attr(f, a->name, a->text)
                         : write_num_attr(f, a->name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0,
                                          &a->value);
        if (rc) return -1;
    }
    return 0;
}

int ss_ckpt_save(const char *path, const ss_ckpt_meta_t *meta, const ss_ckpt_tensor_t *tensors,
                 int count)
{
    return ss_ckpt_save_attrs(path, meta, NULL, 0, tensors, count);
}

int ss_ckpt_save_attrs(const char *path, const ss_ckpt_meta_t *meta, const ss_ckpt_attr_t *attrs,
                       int nattrs, const ss_ckpt_tensor_t *tensors, int count)
{
    size_t len = strlen(path) + 32;
    char *tmp = malloc(len);
    if (!tmp) return ss_error(DOM, "out of memory");
    snprintf(tmp, len, "%s.tmp.%ld", path, (long)getpid());
    quiet_t q = quiet_begin();
    int rc = -1;
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        ss_error(DOM, "cannot create %s", tmp);
        goto done;
    }
    int64_t input_size = meta ? meta->input_size : 0;
    if (write_attrs(f, attrs, nattrs)) {
        ss_error(DOM, "%s: cannot write the root attributes", tmp);
        goto done;
    }
    if (meta && (write_str_attr(f, "arch", meta->arch) ||
        write_num_attr(f, "width_multiplier", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0,
                       &meta->width_multiplier) ||
        write_num_attr(f, "input_size", H5T_STD_I64LE, H5T_NATIVE_INT64, 0, &input_size) ||
        write_num_attr(f, "mean", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 3, meta->mean) ||
        write_num_attr(f, "std", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 3, meta->std) ||
        (meta->truncate_after[0] && write_str_attr(f, "truncate_after", meta->truncate_after)))) {
        ss_error(DOM, "%s: cannot write the root attributes", tmp);
        goto done;
    }
    for (int i = 0; i < count; i++)
        if (write_tensor(f, &tensors[i])) {
            ss_error(DOM, "%s: cannot write tensor '%s'", tmp, tensors[i].name);
            goto done;
        }
    if (H5Fclose(f) < 0) {
        f = -1;
        ss_error(DOM, "%s: cannot close", tmp);
        goto done;
    }
    f = -1;
    if (rename(tmp, path)) {
        ss_error_system(DOM, "cannot rename %s to %s", tmp, path);
        goto done;
    }
    rc = 0;
done:
    if (f >= 0) H5Fclose(f);
    if (rc) unlink(tmp);
    quiet_end(q);
    free(tmp);
    return rc;
}

/* Reads a scalar string attribute (variable or fixed length) into buf. 1 = absent. */
static int read_str_attr(hid_t f, const char *path, const char *name, char *buf, size_t cap)
{
    if (H5Aexists(f, name) <= 0) return 1;
    hid_t a = H5Aopen(f, name, H5P_DEFAULT), t = a < 0 ? -1 : H5Aget_type(a), mt = -1;
    int rc = -1;
    if (t < 0 || H5Tget_class(t) != H5T_STRING) goto done;
    if (H5Tis_variable_str(t) > 0) {
        char *s = NULL;
        mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(t));
        if (H5Aread(a, mt, &s) < 0 || !s) goto done;
        snprintf(buf, cap, "%s", s);
        H5free_memory(s);
    } else {
        size_t sz = H5Tget_size(t);
        char *s = calloc(sz + 1, 1);
        if (!s) goto done;
        mt = H5Tcopy(t);
        if (H5Aread(a, mt, s) < 0) {
            free(s);
            goto done;
        }
        snprintf(buf, cap, "%s", s);
        free(s);
    }
    rc = 0;
done:
    if (mt >= 0) H5Tclose(mt);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    if (rc) return ss_error(DOM, "%s: attribute '%s' is not a readable string", path, name);
    return 0;
}

/* Reads a numeric attribute with n elements (n = 1 also accepts a scalar). 1 = absent. */
static int read_num_attr(hid_t f, const char *path, const char *name, int n, double *out)
{
    if (H5Aexists(f, name) <= 0) return 1;
    hid_t a = H5Aopen(f, name, H5P_DEFAULT), t = a < 0 ? -1 : H5Aget_type(a);
    hid_t sp = a < 0 ? -1 : H5Aget_space(a);
    int rc = -1;
    H5T_class_t cls = t < 0 ? H5T_NO_CLASS : H5Tget_class(t);
    if (sp < 0 || (cls != H5T_FLOAT && cls != H5T_INTEGER)) goto done;
    if (H5Sget_simple_extent_npoints(sp) != n) goto done;
    if (H5Aread(a, H5T_NATIVE_DOUBLE, out) < 0) goto done;
    rc = 0;
done:
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    if (rc) return ss_error(DOM, "%s: attribute '%s' must hold %d number(s)", path, name, n);
    return 0;
}

static int read_meta(hid_t f, const char *path, ss_ckpt_meta_t *m)
{
    static const double imagenet_mean[3] = {0.485, 0.456, 0.406};
    static const double imagenet_std[3] = {0.229, 0.224, 0.225};
    memset(m, 0, sizeof(*m));
    double v;
    int r;
    if ((r = read_str_attr(f, path, "arch", m->arch, sizeof(m->arch))) < 0) return -1;
    if (r) return ss_error(DOM, "%s: root attribute 'arch' is missing", path);
    if ((r = read_num_attr(f, path, "width_multiplier", 1, &v)) < 0) return -1;
    if (r) return ss_error(DOM, "%s: root attribute 'width_multiplier' is missing", path);
    m->width_multiplier = v;
    if ((r = read_num_attr(f, path, "input_size", 1, &v)) < 0) return -1;
    if (r) return ss_error(DOM, "%s: root attribute 'input_size' is missing", path);
    if (v < 1 || v > 1e6 || v != (double)(int)v)
        return ss_error(DOM, "%s: input_size %g is not a positive pixel count", path, v);
    m->input_size = (int)v;
    if ((r = read_num_attr(f, path, "mean", 3, m->mean)) < 0) return -1;
    if (r) memcpy(m->mean, imagenet_mean, sizeof(m->mean));
    if ((r = read_num_attr(f, path, "std", 3, m->std)) < 0) return -1;
    if (r) memcpy(m->std, imagenet_std, sizeof(m->std));
    for (int c = 0; c < 3; c++)
        if (!(m->std[c] > 0.0))
            return ss_error(DOM, "%s: std[%d] = %g must be > 0", path, c, m->std[c]);
    if (read_str_attr(f, path, "truncate_after", m->truncate_after, sizeof(m->truncate_after)) < 0)
        return -1;
    return 0;
}

int ss_ckpt_read_attrs(const char *path, ss_ckpt_attr_t *attrs, int nattrs, char *text,
                       size_t text_size)
{
    quiet_t q = quiet_begin();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    int rc = f < 0 ? ss_error(DOM, "cannot open %s as HDF5", path) : 0;
    size_t used = 0;
    for (int i = 0; !rc && i < nattrs; i++) {
        ss_ckpt_attr_t *a = &attrs[i];
        int r;
        if (a->text) { /* a string wanted: its text goes into the caller's buffer */
            char buf[1024];
            r = read_str_attr(f, path, a->name, buf, sizeof buf);
            if (r == 0) {
                size_t len = strlen(buf) + 1;
                if (used + len > text_size) {
                    rc = ss_error(DOM, "%s: attribute '%s' does not fit", path, a->name);
                    break;
                }
                memcpy(text + used, buf, len);
                a->text = text + used;
                used += len;
            }
        } else {
            r = read_num_attr(f, path, a->name, 1, &a->value);
        }
        if (r < 0) rc = -1;
        else if (r) rc = ss_error(DOM, "%s: root attribute '%s' is missing", path, a->name);
    }
    if (f >= 0) H5Fclose(f);
    quiet_end(q);
    return rc;
}

int ss_ckpt_read_meta(const char *path, ss_ckpt_meta_t *meta)
{
    quiet_t q = quiet_begin();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    int rc = f < 0 ? ss_error(DOM, "cannot open %s as HDF5", path) : read_meta(f, path, meta);
    if (f >= 0) H5Fclose(f);
    quiet_end(q);
    return rc;
}

typedef struct {
    const ss_ckpt_tensor_t *tensors;
    int count;
    const char *path;
    int bad; /* set when an unknown dataset was found */
} iter_ctx_t;

static herr_t check_known(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    iter_ctx_t *c = data;
    if (!strcmp(name, SS_CKPT_TRAINER_GROUP)) return 0; /* a training run's state, not the model's */
    for (int i = 0; i < c->count; i++)
        if (!strcmp(c->tensors[i].name, name)) return 0;
    ss_error(DOM, "%s: unexpected tensor '%s' (not part of this model)", c->path, name);
    c->bad = 1;
    return 1; /* stop at the first */
}

static int read_tensor(hid_t f, const char *path, const ss_ckpt_tensor_t *t, int flags)
{
    if (H5Lexists(f, t->name, H5P_DEFAULT) <= 0) {
        if (flags & SS_CKPT_ALLOW_MISSING) return 0;
        return ss_error(DOM, "%s: tensor '%s' is missing", path, t->name);
    }
    hid_t d = H5Dopen2(f, t->name, H5P_DEFAULT);
    hid_t sp = d < 0 ? -1 : H5Dget_space(d), ty = d < 0 ? -1 : H5Dget_type(d);
    int rc = -1;
    if (sp < 0 || ty < 0) {
        ss_error(DOM, "%s: '%s' is not a readable dataset", path, t->name);
        goto done;
    }
    H5T_class_t cls = H5Tget_class(ty);
    if ((t->dtype == SS_DTYPE_F32 && cls != H5T_FLOAT) ||
        (t->dtype == SS_DTYPE_I64 && cls != H5T_INTEGER)) {
        ss_error(DOM, "%s: tensor '%s' has the wrong type (expected %s)", path, t->name,
                 t->dtype == SS_DTYPE_F32 ? "float" : "integer");
        goto done;
    }
    int nd = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[8] = {0};
    if (nd < 0 || nd > 8 || H5Sget_simple_extent_dims(sp, dims, NULL) < 0) {
        ss_error(DOM, "%s: tensor '%s' has an unreadable shape", path, t->name);
        goto done;
    }
    int ok = nd == t->ndim;
    for (int i = 0; ok && i < nd; i++)
        ok = dims[i] == (hsize_t)t->shape[i];
    if (!ok && t->ndim == 0 && nd == 1 && dims[0] == 1) ok = 1; /* counter saved as (1,) */
    if (!ok) {
        char want[96] = "(", got[96] = "(";
        for (int i = 0; i < t->ndim; i++)
            snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s%lld", i ? ", " : "",
                     (long long)t->shape[i]);
        for (int i = 0; i < nd; i++)
            snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%llu", i ? ", " : "",
                     (unsigned long long)dims[i]);
        strcat(want, ")");
        strcat(got, ")");
        ss_error(DOM, "%s: tensor '%s' has shape %s, the model expects %s", path, t->name, got,
                 want);
        goto done;
    }
    hid_t mt = t->dtype == SS_DTYPE_F32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT64;
    if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data) < 0) {
        ss_error(DOM, "%s: cannot read tensor '%s'", path, t->name);
        goto done;
    }
    rc = 0;
done:
    if (ty >= 0) H5Tclose(ty);
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    return rc;
}

int ss_ckpt_load(const char *path, ss_ckpt_meta_t *meta, const ss_ckpt_tensor_t *tensors, int count,
                 int flags)
{
    quiet_t q = quiet_begin();
    int rc = -1;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        ss_error(DOM, "cannot open %s as HDF5", path);
        goto done;
    }
    if (meta && read_meta(f, path, meta)) goto done;
    if (!(flags & SS_CKPT_IGNORE_EXTRA)) {
        iter_ctx_t c = {tensors, count, path, 0};
        if (H5Literate(f, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, check_known, &c) < 0 || c.bad) {
            if (!c.bad) ss_error(DOM, "%s: cannot list the datasets", path);
            goto done;
        }
    }
    for (int i = 0; i < count; i++)
        if (read_tensor(f, path, &tensors[i], flags)) goto done;
    rc = 0;
done:
    if (f >= 0) H5Fclose(f);
    quiet_end(q);
    return rc;
}

int ss_ckpt_dataset_shape(const char *path, const char *name, int *ndim,
                          int64_t shape[SS_CKPT_MAX_DIM])
{
    quiet_t q = quiet_begin();
    int rc = -1;
    hid_t d = -1, sp = -1, f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        ss_error(DOM, "cannot open %s as HDF5", path);
        goto done;
    }
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0) {
        rc = 1;
        goto done;
    }
    d = H5Dopen2(f, name, H5P_DEFAULT);
    sp = d < 0 ? -1 : H5Dget_space(d);
    int nd = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
    hsize_t dims[SS_CKPT_MAX_DIM];
    if (nd < 0 || nd > SS_CKPT_MAX_DIM || H5Sget_simple_extent_dims(sp, dims, NULL) < 0) {
        ss_error(DOM, "%s: '%s' has an unreadable or too deep shape", path, name);
        goto done;
    }
    *ndim = nd;
    for (int i = 0; i < nd; i++)
        shape[i] = (int64_t)dims[i];
    rc = 0;
done:
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    if (f >= 0) H5Fclose(f);
    quiet_end(q);
    return rc;
}
