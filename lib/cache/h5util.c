/* slidestream cache — HDF5 attribute helpers, error translation and small file-system
 * utilities shared by the cache writer, reader and the embed output file. */
#include "cache_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "slidestream/cache.h"
#include "slidestream/error.h"

h5quiet_t h5q_begin(void)
{
    h5quiet_t q = {NULL, NULL};
    H5Eget_auto2(H5E_DEFAULT, &q.func, &q.data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return q;
}

void h5q_end(h5quiet_t q)
{
    H5Eset_auto2(H5E_DEFAULT, q.func, q.data);
}

void ss_cache_hdf5_quiet(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

typedef struct {
    char *out;
    size_t size;
    int found;
} walk_t;

/* Walking upward visits the innermost frame first: the place the failure was detected, whose
 * text carries the system error ("errno = 28, error message = 'No space left on device'"). */
static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    walk_t *w = data;
    if (w->found || !e->desc || !e->desc[0]) return 0;
    w->found = 1;
    /* The low-level driver's text is long ("file write failed: time = ..., filename = ...,
     * errno = 28, error message = 'No space left on device', buf = ..."): keep the gist. */
    const char *msg = strstr(e->desc, "error message = '");
    const char *colon = strchr(e->desc, ':');
    if (msg && colon && colon < msg) {
        msg += strlen("error message = '");
        const char *end = strchr(msg, '\'');
        int n = end ? (int)(end - msg) : (int)strlen(msg);
        snprintf(w->out, w->size, "%.*s: %.*s", (int)(colon - e->desc), e->desc, n, msg);
    } else {
        snprintf(w->out, w->size, "%s", e->desc);
    }
    for (char *p = w->out; *p; p++)
        if (*p == '\n') *p = ' ';
    return 0;
}

/* Every successful HDF5 call clears the error stack, so helpers that tidy up after a failure
 * save the stack's message first; h5_detail falls back to it. */
static _Thread_local char saved_detail[600];

void h5_save_detail(void)
{
    if (H5Eget_num(H5E_DEFAULT) <= 0) return;
    walk_t w = {saved_detail, sizeof saved_detail, 0};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, &w);
}

void h5_detail(char *out, size_t size)
{
    if (!size) return;
    out[0] = '\0';
    walk_t w = {out, size, 0};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, &w);
    if (!w.found && saved_detail[0]) snprintf(out, size, "%s", saved_detail);
    saved_detail[0] = '\0';
    H5Eclear2(H5E_DEFAULT);
}

int h5_fail(const char *path, const char *what)
{
    char d[600];
    h5_detail(d, sizeof d);
    if (d[0]) return ss_error("cache", "%s: %s (HDF5: %s)", path, what, d);
    return ss_error("cache", "%s: %s", path, what);
}

int cache_why(char *why, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, size, fmt, ap);
    va_end(ap);
    return -1;
}

int h5_why(char *why, size_t size, const char *what)
{
    char d[400];
    h5_detail(d, sizeof d);
    return cache_why(why, size, "%s%s%s", what, d[0] ? ": " : "", d);
}

hid_t h5_open_readonly(const char *path, char *why, size_t size)
{
    if (access(path, R_OK) < 0) return cache_why(why, size, "%s", strerror(errno));
    if (H5Fis_hdf5(path) <= 0)
        return h5_why(why, size, "not an HDF5 file (truncated or another format)");
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) h5_why(why, size, "cannot open (truncated or corrupt?)");
    return f;
}

int h5_ds_shape(hid_t d, H5T_class_t *cls, hsize_t dims[8])
{
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    *cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (rank >= 1 && rank <= 8) H5Sget_simple_extent_dims(sp, dims, NULL);
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    return rank;
}

static int attr_write(hid_t obj, const char *name, hid_t type, const void *buf)
{
    if (H5Aexists(obj, name) > 0 && H5Adelete(obj, name) < 0) return -1;
    hid_t sp = H5Screate(H5S_SCALAR);
    if (sp < 0) return -1;
    hid_t a = H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (a >= 0 && H5Awrite(a, type, buf) >= 0) ? 0 : -1;
    if (rc) h5_save_detail();
    if (a >= 0 && H5Aclose(a) < 0) rc = -1;
    H5Sclose(sp);
    return rc;
}

int h5_attr_str(hid_t obj, const char *name, const char *value)
{
    hid_t st = H5Tcopy(H5T_C_S1);
    if (st < 0) return -1;
    const char *v = value ? value : "";
    int rc = -1;
    if (H5Tset_size(st, H5T_VARIABLE) >= 0 && H5Tset_cset(st, H5T_CSET_UTF8) >= 0)
        rc = attr_write(obj, name, st, &v);
    H5Tclose(st);
    return rc;
}

int h5_attr_i64(hid_t obj, const char *name, int64_t value)
{
    return attr_write(obj, name, H5T_NATIVE_INT64, &value);
}

int h5_attr_f64(hid_t obj, const char *name, double value)
{
    return attr_write(obj, name, H5T_NATIVE_DOUBLE, &value);
}

/* Opens a scalar (or one-element) attribute; returns its id and class, or -1 / absent. */
static hid_t attr_open1(hid_t obj, const char *name, H5T_class_t *cls, int *absent)
{
    *absent = 0;
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0) return -1;
    if (ex == 0) {
        *absent = 1;
        return -1;
    }
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t sp = H5Aget_space(a), t = H5Aget_type(a);
    hssize_t npts = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    *cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    if (npts != 1) {
        H5Aclose(a);
        *absent = 1; /* an array attribute is not the scalar we want */
        return -1;
    }
    return a;
}

int h5_get_str(hid_t obj, const char *name, char **out)
{
    *out = NULL;
    H5T_class_t cls;
    int absent;
    hid_t a = attr_open1(obj, name, &cls, &absent);
    if (a < 0) return absent ? 1 : -1;
    if (cls != H5T_STRING) {
        H5Aclose(a);
        return 1;
    }
    hid_t ft = H5Aget_type(a);
    int rc = -1;
    if (ft < 0) goto done;
    if (H5Tis_variable_str(ft) > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        char *s = NULL;
        if (mt >= 0 && H5Tset_size(mt, H5T_VARIABLE) >= 0 &&
            H5Tset_cset(mt, H5Tget_cset(ft)) >= 0 && H5Aread(a, mt, &s) >= 0) {
            *out = strdup(s ? s : "");
            rc = *out ? 0 : -1;
            if (s) H5free_memory(s);
        }
        if (mt >= 0) H5Tclose(mt);
    } else {
        size_t n = H5Tget_size(ft);
        char *s = calloc(n + 1, 1);
        hid_t mt = H5Tcopy(ft);
        if (s && mt >= 0 && H5Aread(a, mt, s) >= 0) {
            s[n] = '\0';
            *out = s;
            s = NULL;
            rc = 0;
        }
        free(s);
        if (mt >= 0) H5Tclose(mt);
    }
    H5Tclose(ft);
done:
    H5Aclose(a);
    return rc;
}

int h5_get_i64(hid_t obj, const char *name, int64_t *out)
{
    H5T_class_t cls;
    int absent;
    hid_t a = attr_open1(obj, name, &cls, &absent);
    if (a < 0) return absent ? 1 : -1;
    int rc = 1;
    if (cls == H5T_INTEGER) {
        rc = H5Aread(a, H5T_NATIVE_INT64, out) >= 0 ? 0 : -1;
    } else if (cls == H5T_FLOAT) {
        double d;
        rc = H5Aread(a, H5T_NATIVE_DOUBLE, &d) >= 0 ? 0 : -1;
        if (!rc) {
            if (d == d && d > -9.2e18 && d < 9.2e18)
                *out = (int64_t)d;
            else
                rc = 1;
        }
    }
    H5Aclose(a);
    return rc;
}

int h5_get_f64(hid_t obj, const char *name, double *out)
{
    H5T_class_t cls;
    int absent;
    hid_t a = attr_open1(obj, name, &cls, &absent);
    if (a < 0) return absent ? 1 : -1;
    int rc = 1;
    if (cls == H5T_INTEGER || cls == H5T_FLOAT)
        rc = H5Aread(a, H5T_NATIVE_DOUBLE, out) >= 0 ? 0 : -1;
    H5Aclose(a);
    return rc;
}

hid_t h5_create_rows(hid_t file, const char *name, hid_t type, int rank, const hsize_t *tail,
                     hsize_t chunk_rows, unsigned flags)
{
    hsize_t dims[4] = {0}, maxd[4] = {H5S_UNLIMITED}, chunk[4] = {chunk_rows};
    for (int k = 1; k < rank; k++)
        dims[k] = maxd[k] = chunk[k] = tail[k - 1];
    hid_t sp = H5Screate_simple(rank, dims, maxd);
    hid_t pl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t ap = H5Pcreate(H5P_DATASET_ACCESS);
    hid_t d = -1;
    if (sp >= 0 && pl >= 0 && ap >= 0 && H5Pset_chunk(pl, rank, chunk) >= 0 &&
        (!(flags & H5_ROWS_DEFLATE) || (H5Pset_shuffle(pl) >= 0 && H5Pset_deflate(pl, 1) >= 0)) &&
        (!(flags & H5_ROWS_NO_CACHE) || H5Pset_chunk_cache(ap, 0, 0, 1.0) >= 0))
        d = H5Dcreate2(file, name, type, sp, H5P_DEFAULT, pl, ap);
    if (d < 0) h5_save_detail();
    if (ap >= 0) H5Pclose(ap);
    if (pl >= 0) H5Pclose(pl);
    if (sp >= 0) H5Sclose(sp);
    return d;
}

int h5_append_rows(hid_t d, hid_t memtype, int rank, const hsize_t *tail, hsize_t at, hsize_t n,
                   const void *buf)
{
    hsize_t dims[4] = {at + n}, start[4] = {at}, count[4] = {n};
    for (int k = 1; k < rank; k++)
        dims[k] = count[k] = tail[k - 1];
    if (H5Dset_extent(d, dims) < 0) {
        h5_save_detail();
        return -1;
    }
    hid_t fs = H5Dget_space(d);
    hid_t ms = H5Screate_simple(rank, count, NULL);
    int rc = -1;
    if (fs >= 0 && ms >= 0 &&
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
        H5Dwrite(d, memtype, ms, fs, H5P_DEFAULT, buf) >= 0)
        rc = 0;
    if (rc) h5_save_detail();
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    return rc;
}

int cache_mkdirs(const char *dir)
{
    size_t n = strlen(dir);
    if (n == 0) return 0;
    char *p = strdup(dir);
    if (!p) return ss_error("cache", "out of memory");
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0777) < 0 && errno != EEXIST) {
            int rc = ss_error_system("cache", "cannot create directory %s", p);
            free(p);
            return rc;
        }
        p[i] = c;
    }
    free(p);
    struct stat st;
    if (stat(dir, &st) < 0) return ss_error_system("cache", "%s", dir);
    if (!S_ISDIR(st.st_mode)) return ss_error("cache", "%s: not a directory", dir);
    return 0;
}

int cache_fsync_path(const char *path, int is_dir)
{
    int fd = open(path, is_dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return ss_error_system("cache", "%s: cannot open to sync", path);
    /* EINVAL: the file system does not support syncing (e.g. some pseudo-fs); not a failure. */
    if (fsync(fd) < 0 && errno != EINVAL) {
        int rc = ss_error_system("cache", "%s: fsync failed", path);
        close(fd);
        return rc;
    }
    close(fd);
    return 0;
}

int h5_close_all(hid_t *ds, int n, hid_t *file)
{
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (ds[i] >= 0 && H5Dclose(ds[i]) < 0) bad = 1;
        ds[i] = -1;
    }
    if (*file >= 0 && H5Fclose(*file) < 0) bad = 1;
    *file = -1;
    return bad ? -1 : 0;
}

/* Makes a rename durable; best effort (the file's data is synced already). */
static void sync_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    int fd = dir ? open(dir, O_RDONLY | O_DIRECTORY) : -1;
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

int cache_commit(const char *tmp, const char *path, const char *domain)
{
    if (cache_fsync_path(tmp, 0)) return -1;
    if (rename(tmp, path) < 0) return ss_error_system(domain, "cannot rename %s to %s", tmp, path);
    sync_dir_of(path);
    return 0;
}

void h5_discard(hid_t *ds, int n, hid_t *file, const char *tmp)
{
    h5quiet_t q = h5q_begin();
    (void)h5_close_all(ds, n, file);
    H5Eclear2(H5E_DEFAULT);
    h5q_end(q);
    if (tmp) unlink(tmp);
}

char *cache_strf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}
