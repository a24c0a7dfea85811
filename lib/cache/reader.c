/* slidestream cache — opening, validating and reading cache files (replay), and the resume
 * checks. A reader owns its HDF5 handles and copies of the metadata strings. Files written by
 * CLAM/TRIDENT (only `features` and `coords`) open too; the missing columns are derived. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache_internal.h"
#include "slidestream/cache.h"
#include "slidestream/error.h"

enum { R_FEAT, R_COORD, R_CENT, R_IDS, R_BB, R_AREA, R_COUNT };

struct ss_cache_reader {
    char *path;
    hid_t file;
    hid_t ds[R_COUNT];
    int64_t n;
    int complete;
    int ours;          /* has format = "slidestream-cache" */
    int has_ps0;       /* coords carry patch_size_level0 (for derived centres) */
    ss_cache_meta_t meta;
    char *s_slide, *s_split, *s_enc, *s_hash, *s_feat, *s_pre;
};

static const char *r_name[R_COUNT] = {"features", "coords", "centres",
                                      "cell_ids", "bboxes", "areas"};

static void reader_free(ss_cache_reader_t *r)
{
    if (!r) return;
    for (int i = 0; i < R_COUNT; i++)
        if (r->ds[i] >= 0) H5Dclose(r->ds[i]);
    if (r->file >= 0) H5Fclose(r->file);
    free(r->path);
    free(r->s_slide);
    free(r->s_split);
    free(r->s_enc);
    free(r->s_hash);
    free(r->s_feat);
    free(r->s_pre);
    free(r);
}

/* Checks class and shape of dataset `i`: rank 2 with `cols` columns (cols > 0) or rank 1
 * (cols == 0; (N, 1) is accepted too), and `want_rows` rows when >= 0. Returns rows or -1. */
static int64_t check_ds(ss_cache_reader_t *r, int i, H5T_class_t cls, int cols, int64_t want_rows,
                        int64_t *ncols, char *err, size_t size)
{
    H5T_class_t c;
    hsize_t dims[8] = {0};
    int rank = h5_ds_shape(r->ds[i], &c, dims);
    if (c != cls)
        return cache_why(err, size, "dataset '%s' has the wrong type (want %s)", r_name[i],
                         cls == H5T_FLOAT ? "float" : "integer");
    if (cols < 0) { /* any width (features) */
        if (rank != 2)
            return cache_why(err, size, "dataset '%s' is not 2-D (rank %d)", r_name[i], rank);
        *ncols = (int64_t)dims[1];
    } else if (cols > 0) {
        if (rank != 2 || dims[1] != (hsize_t)cols)
            return cache_why(err, size, "dataset '%s' must be (N, %d)", r_name[i], cols);
    } else if (!(rank == 1 || (rank == 2 && dims[1] == 1))) {
        return cache_why(err, size, "dataset '%s' must be 1-D (N)", r_name[i]);
    }
    if (want_rows >= 0 && (int64_t)dims[0] != want_rows)
        return cache_why(err, size, "dataset '%s' has %lld rows but features has %lld", r_name[i],
                         (long long)dims[0], (long long)want_rows);
    return (int64_t)dims[0];
}

static char *dup_or_empty(char *s)
{
    return s ? s : strdup("");
}

/* Opens `path` into a new reader, or returns NULL with a reason in err (no ss_error). */
static ss_cache_reader_t *open_impl(const char *path, char *err, size_t size)
{
    err[0] = '\0';
    hid_t file = h5_open_readonly(path, err, size);
    if (file < 0) return NULL;
    ss_cache_reader_t *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r);
        H5Fclose(file);
        cache_why(err, size, "out of memory");
        return NULL;
    }
    r->file = file;
    for (int i = 0; i < R_COUNT; i++)
        r->ds[i] = -1;
    char *fmt = NULL;
    int rc = h5_get_str(r->file, "format", &fmt);
    if (rc < 0) {
        cache_why(err, size, "cannot read the 'format' attribute");
        goto fail;
    }
    if (rc == 0) {
        int same = !strcmp(fmt, SS_CACHE_FORMAT);
        if (!same) cache_why(err, size, "not a slidestream cache (format = '%.100s')", fmt);
        free(fmt);
        if (!same) goto fail;
        r->ours = 1;
        int64_t ver = 0;
        if (h5_get_i64(r->file, "version", &ver) != 0 || ver < 1 || ver > SS_CACHE_VERSION) {
            cache_why(err, size, "unsupported cache version %lld (this build reads 1..%d)",
                      (long long)ver, SS_CACHE_VERSION);
            goto fail;
        }
    }
    hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    /* A bigger chunk cache so block reads that straddle chunks decompress each chunk once. */
    if (dapl >= 0) H5Pset_chunk_cache(dapl, 521, 16u << 20, 0.75);
    for (int i = 0; i < R_COUNT; i++) {
        htri_t ex = H5Lexists(r->file, r_name[i], H5P_DEFAULT);
        if (ex > 0) r->ds[i] = H5Dopen2(r->file, r_name[i], i == R_FEAT && dapl >= 0 ? dapl : H5P_DEFAULT);
        if (ex > 0 && r->ds[i] < 0) {
            if (dapl >= 0) H5Pclose(dapl);
            cache_why(err, size, "cannot open dataset '%s'", r_name[i]);
            goto fail;
        }
    }
    if (dapl >= 0) H5Pclose(dapl);
    if (r->ds[R_FEAT] < 0) {
        cache_why(err, size, "no 'features' dataset");
        goto fail;
    }
    int64_t dim = 0;
    r->n = check_ds(r, R_FEAT, H5T_FLOAT, -1, -1, &dim, err, size);
    if (r->n < 0) goto fail;
    if (dim < 1 || dim > (1 << 20)) {
        cache_why(err, size, "features has an invalid width %lld", (long long)dim);
        goto fail;
    }
    if (r->ds[R_COORD] < 0) {
        cache_why(err, size, "no 'coords' dataset");
        goto fail;
    }
    if (r->ours && (r->ds[R_CENT] < 0 || r->ds[R_IDS] < 0)) {
        cache_why(err, size, "slidestream cache without '%s'",
                  r->ds[R_CENT] < 0 ? "centres" : "cell_ids");
        goto fail;
    }
    static const int cols[R_COUNT] = {0, 2, 2, 0, 4, 0};
    for (int i = R_COORD; i < R_COUNT; i++)
        if (r->ds[i] >= 0 && check_ds(r, i, H5T_INTEGER, cols[i], r->n, NULL, err, size) < 0)
            goto fail;

    /* Metadata: ours, else the TRIDENT names, else neutral defaults. */
    int64_t v = 0;
    r->complete = h5_get_i64(r->file, "complete", &v) == 0 && v == 1;
    r->meta.dim = (int)dim;
    r->meta.label = h5_get_i64(r->file, "label", &v) == 0 ? (int)v : -1;
    if (h5_get_str(r->file, "slide_id", &r->s_slide) != 0) {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        r->s_slide = strdup(base);
        if (r->s_slide) {
            char *dot = strstr(r->s_slide, ".h5");
            if (dot && dot != r->s_slide) *dot = '\0';
        }
    }
    h5_get_str(r->file, "split", &r->s_split);
    hid_t co = r->ds[R_COORD], fe = r->ds[R_FEAT];
    r->meta.patch_size = h5_get_i64(co, "patch_size", &v) == 0 ? (int)v : 0;
    if (h5_get_i64(co, "patch_size_level0", &v) == 0) {
        r->meta.patch_size_level0 = v;
        r->has_ps0 = 1;
    }
    double d;
    if (h5_get_f64(co, "target_mpp", &d) == 0) r->meta.target_mpp = d;
    else if (h5_get_f64(co, "target_magnification", &d) == 0 && d > 0) r->meta.target_mpp = 10.0 / d;
    if (h5_get_f64(co, "slide_mpp", &d) == 0) r->meta.slide_mpp = d;
    else if (h5_get_f64(co, "level0_magnification", &d) == 0 && d > 0) r->meta.slide_mpp = 10.0 / d;
    h5_get_str(fe, "encoder", &r->s_enc);
    h5_get_str(fe, "encoder_hash", &r->s_hash);
    h5_get_str(fe, "feature", &r->s_feat);
    h5_get_str(fe, "preprocessing", &r->s_pre);
    H5Eclear2(H5E_DEFAULT);
    r->s_slide = dup_or_empty(r->s_slide);
    r->s_split = dup_or_empty(r->s_split);
    r->s_enc = dup_or_empty(r->s_enc);
    r->s_hash = dup_or_empty(r->s_hash);
    r->s_feat = dup_or_empty(r->s_feat);
    r->s_pre = dup_or_empty(r->s_pre);
    if (!r->s_slide || !r->s_split || !r->s_enc || !r->s_hash || !r->s_feat || !r->s_pre) {
        cache_why(err, size, "out of memory");
        goto fail;
    }
    r->meta.slide_id = r->s_slide;
    r->meta.split = r->s_split;
    r->meta.encoder = r->s_enc;
    r->meta.encoder_hash = r->s_hash;
    r->meta.feature = r->s_feat;
    r->meta.preprocessing = r->s_pre;
    return r;
fail:
    H5Eclear2(H5E_DEFAULT);
    reader_free(r);
    return NULL;
}

ss_cache_reader_t *ss_cache_open(const char *path)
{
    if (!path) {
        ss_error("cache", "open: no path");
        return NULL;
    }
    char err[700];
    h5quiet_t q = h5q_begin();
    ss_cache_reader_t *r = open_impl(path, err, sizeof err);
    h5q_end(q);
    if (!r) ss_error("cache", "%s: %s", path, err);
    return r;
}

const ss_cache_meta_t *ss_cache_meta(const ss_cache_reader_t *r)
{
    return &r->meta;
}
int64_t ss_cache_rows(const ss_cache_reader_t *r)
{
    return r->n;
}
int ss_cache_dim(const ss_cache_reader_t *r)
{
    return r->meta.dim;
}
int ss_cache_is_complete(const ss_cache_reader_t *r)
{
    return r->complete;
}
int ss_cache_has_bboxes(const ss_cache_reader_t *r)
{
    return r->ds[R_BB] >= 0;
}
int ss_cache_has_areas(const ss_cache_reader_t *r)
{
    return r->ds[R_AREA] >= 0;
}
const char *ss_cache_path(const ss_cache_reader_t *r)
{
    return r->path;
}

static int read_rows(ss_cache_reader_t *r, int i, hid_t memtype, int64_t start, int n, int cols,
                     void *buf)
{
    hid_t d = r->ds[i];
    hid_t fs = H5Dget_space(d);
    int rank = fs >= 0 ? H5Sget_simple_extent_ndims(fs) : -1;
    hsize_t c = (hsize_t)(cols > 0 ? cols : 1);
    hsize_t st[2] = {(hsize_t)start, 0}, cnt[2] = {(hsize_t)n, c};
    /* A 1-D column stored as (N, 1) reads with a 2-D selection into the same buffer. */
    hid_t ms = H5Screate_simple(rank == 2 ? 2 : 1, cnt, NULL);
    int rc = -1;
    if (fs >= 0 && ms >= 0 && rank >= 1 &&
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, st, NULL, cnt, NULL) >= 0 &&
        H5Dread(d, memtype, ms, fs, H5P_DEFAULT, buf) >= 0)
        rc = 0;
    if (rc) h5_save_detail();
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    if (rc) {
        char what[200];
        snprintf(what, sizeof what, "cannot read rows %lld..%lld of '%s'", (long long)start,
                 (long long)(start + n - 1), r_name[i]);
        h5_fail(r->path, what);
    }
    return rc;
}

int ss_cache_read(ss_cache_reader_t *r, int64_t start, int n, float *features, int64_t *coords,
                  int64_t *centres, uint64_t *cell_ids, int32_t *bboxes, uint32_t *areas)
{
    if (!r) return ss_error("cache", "read: no reader");
    if (n < 0 || start < 0 || start > r->n || n > r->n - start)
        return ss_error("cache", "%s: rows %lld..+%d out of range (file has %lld)", r->path,
                        (long long)start, n, (long long)r->n);
    if (n == 0) return 0;
    h5quiet_t q = h5q_begin();
    int rc = -1;
    if (features && read_rows(r, R_FEAT, H5T_NATIVE_FLOAT, start, n, r->meta.dim, features))
        goto done;
    if (coords && read_rows(r, R_COORD, H5T_NATIVE_INT64, start, n, 2, coords)) goto done;
    if (centres) {
        if (r->ds[R_CENT] >= 0) {
            if (read_rows(r, R_CENT, H5T_NATIVE_INT64, start, n, 2, centres)) goto done;
        } else {
            if (read_rows(r, R_COORD, H5T_NATIVE_INT64, start, n, 2, centres)) goto done;
            int64_t half = r->has_ps0 ? r->meta.patch_size_level0 / 2 : 0;
            for (size_t k = 0; k < (size_t)n * 2; k++) centres[k] += half;
        }
    }
    if (cell_ids) {
        if (r->ds[R_IDS] >= 0) {
            if (read_rows(r, R_IDS, H5T_NATIVE_UINT64, start, n, 0, cell_ids)) goto done;
        } else {
            for (int k = 0; k < n; k++) cell_ids[k] = (uint64_t)(start + k);
        }
    }
    if (bboxes) {
        if (r->ds[R_BB] >= 0) {
            if (read_rows(r, R_BB, H5T_NATIVE_INT32, start, n, 4, bboxes)) goto done;
        } else {
            memset(bboxes, 0, (size_t)n * 4 * sizeof *bboxes);
        }
    }
    if (areas) {
        if (r->ds[R_AREA] >= 0) {
            if (read_rows(r, R_AREA, H5T_NATIVE_UINT32, start, n, 0, areas)) goto done;
        } else {
            memset(areas, 0, (size_t)n * sizeof *areas);
        }
    }
    rc = 0;
done:
    h5q_end(q);
    return rc;
}

void ss_cache_close(ss_cache_reader_t **rp)
{
    if (!rp || !*rp) return;
    h5quiet_t q = h5q_begin();
    reader_free(*rp);
    H5Eclear2(H5E_DEFAULT);
    h5q_end(q);
    *rp = NULL;
}

int ss_cache_check(const char *dir, const char *slide_id, const char *encoder_hash,
                   const char *feature, const char *preprocessing, char *why, size_t why_size)
{
    char dummy[8];
    if (!why || why_size == 0) {
        why = dummy;
        why_size = sizeof dummy;
    }
    why[0] = '\0';
    if (!dir || !slide_id || !slide_id[0] || strchr(slide_id, '/'))
        return ss_error("cache", "check: invalid directory or slide id");
    char *path = cache_strf("%s/%s.h5", dir, slide_id);
    char *tmp = cache_strf("%s/%s.h5.tmp", dir, slide_id);
    if (!path || !tmp) {
        free(path);
        free(tmp);
        return ss_error("cache", "out of memory");
    }
    int result = 0;
    if (access(path, F_OK) < 0) {
        snprintf(why, why_size, "missing%s",
                 access(tmp, F_OK) == 0 ? " (a partial .tmp from an interrupted run exists)" : "");
        goto done;
    }
    char err[700];
    h5quiet_t q = h5q_begin();
    ss_cache_reader_t *r = open_impl(path, err, sizeof err);
    h5q_end(q);
    if (!r) {
        snprintf(why, why_size, "unreadable: %s", err);
        goto done;
    }
    const ss_cache_meta_t *m = &r->meta;
    if (!r->ours)
        snprintf(why, why_size, "not a slidestream cache (no format attribute)");
    else if (!r->complete)
        snprintf(why, why_size, "partial: no complete=1 attribute");
    else if (encoder_hash && strcmp(encoder_hash, m->encoder_hash))
        snprintf(why, why_size, "different encoder: file has %.80s, want %.80s",
                 m->encoder_hash[0] ? m->encoder_hash : "(none)", encoder_hash);
    else if (feature && strcmp(feature, m->feature))
        snprintf(why, why_size, "different feature: file has '%.40s', want '%.40s'", m->feature,
                 feature);
    else if (preprocessing && strcmp(preprocessing, m->preprocessing))
        snprintf(why, why_size, "different preprocessing: file has '%.200s', want '%.200s'",
                 m->preprocessing, preprocessing);
    else {
        snprintf(why, why_size, "complete (%lld rows)", (long long)r->n);
        result = 1;
    }
    ss_cache_close(&r);
done:
    free(path);
    free(tmp);
    return result;
}

int ss_cache_discard_partial(const char *dir, const char *slide_id)
{
    if (!dir || !slide_id || !slide_id[0] || strchr(slide_id, '/'))
        return ss_error("cache", "discard: invalid directory or slide id");
    char *tmp = cache_strf("%s/%s.h5.tmp", dir, slide_id);
    if (!tmp) return ss_error("cache", "out of memory");
    int rc = 1;
    if (unlink(tmp) < 0) rc = errno == ENOENT ? 0 : ss_error_system("cache", "cannot remove %s", tmp);
    free(tmp);
    return rc;
}
