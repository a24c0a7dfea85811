/* slidestream train — opening, validating and reading a crop store (layout in
 * include/slidestream/train_store.h).
 *
 * open() checks everything that came from the file before anything uses it (format, version,
 * every dataset's type and shape, the bag table, source indices) and loads the small per-cell
 * columns and tables; crops stay on disk and are read one by one through a hyperslab. A store
 * owns its HDF5 handles, columns and string copies; accessors hand out borrowed pointers that
 * live as long as the store. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache_internal.h"
#include "slidestream/error.h"
#include "slidestream/train_store.h"

#define DOMAIN "cropstore" /* ss_error domain of the writer and the reader */

struct ss_crop_store {
    char *path;
    hid_t file, crops;
    hid_t fspace, mspace; /* the crops' file space and a one-crop memory space, reused */
    int size;             /* C */
    size_t crop_bytes;    /* C * C * 3 */
    int64_t n;
    uint32_t *bag;     /* (n) bag ids */
    int32_t *bag_of;   /* (n) index into the bag table */
    int32_t *label;    /* (n) */
    uint64_t *cell_id; /* (n) */
    int64_t *centre;   /* (n, 2) */
    int32_t *source;   /* (n) index into sources */
    char **sources;
    int64_t nsources;
    int nbags;
    uint32_t *bag_ids;   /* (nbags) */
    int32_t *bag_labels; /* (nbags) */
    char **bag_names, **bag_splits;
    int64_t *bag_start; /* (nbags + 1): bag b's cells are bag_cells[bag_start[b] ..) */
    int64_t *bag_cells; /* (n) */
};

static void free_strings(char **s, int64_t n)
{
    if (!s) return;
    for (int64_t i = 0; i < n; i++)
        free(s[i]);
    free(s);
}

static void store_free(ss_crop_store_t *s)
{
    if (!s) return;
    if (s->mspace >= 0) H5Sclose(s->mspace);
    if (s->fspace >= 0) H5Sclose(s->fspace);
    if (s->crops >= 0) H5Dclose(s->crops);
    if (s->file >= 0) H5Fclose(s->file);
    free(s->bag);
    free(s->bag_of);
    free(s->label);
    free(s->cell_id);
    free(s->centre);
    free(s->source);
    free_strings(s->sources, s->nsources);
    free(s->bag_ids);
    free(s->bag_labels);
    free_strings(s->bag_names, s->nbags);
    free_strings(s->bag_splits, s->nbags);
    free(s->bag_start);
    free(s->bag_cells);
    free(s->path);
    free(s);
}

/* Opens dataset `name` and checks its class and shape: rank 1 (cols == 0), (rows, cols)
 * (cols > 0) or any rank (cols < 0), and `rows` rows when rows >= 0 (`of` names what they
 * count: "cells", "bags"). *nrows receives the row count. */
static hid_t open_checked(hid_t file, const char *name, H5T_class_t cls, int64_t rows,
                          const char *of, int cols, int64_t *nrows, char *err, size_t size)
{
    htri_t ex = H5Lexists(file, name, H5P_DEFAULT);
    if (ex <= 0) {
        if (ex < 0)
            h5_why(err, size, "cannot look up datasets");
        else
            cache_why(err, size, "missing dataset '%s'", name);
        return -1;
    }
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    if (d < 0) {
        char what[200];
        snprintf(what, sizeof what, "cannot open dataset '%s'", name);
        h5_why(err, size, what);
        return -1;
    }
    H5T_class_t c;
    hsize_t dims[8] = {0};
    int rank = h5_ds_shape(d, &c, dims);
    int ok = 0;
    if (c != cls)
        cache_why(err, size, "dataset '%s' is not %s", name,
                  cls == H5T_STRING ? "a string array" : "an integer array");
    else if (cols == 0 && rank != 1)
        cache_why(err, size, "dataset '%s' must be 1-D, (N); it has rank %d", name, rank);
    else if (cols > 0 && (rank != 2 || dims[1] != (hsize_t)cols))
        cache_why(err, size, "dataset '%s' must be (N, %d)", name, cols);
    else if (rows >= 0 && dims[0] != (hsize_t)rows)
        cache_why(err, size, "dataset '%s' has %llu rows, but the store has %lld %s", name,
                  (unsigned long long)dims[0], (long long)rows, of);
    else if (dims[0] > (hsize_t)(INT32_MAX)*64)
        cache_why(err, size, "dataset '%s' has an implausible %llu rows", name,
                  (unsigned long long)dims[0]);
    else
        ok = 1;
    if (!ok) {
        H5Dclose(d);
        return -1;
    }
    *nrows = (int64_t)dims[0];
    return d;
}

/* A whole integer column (rows x max(cols, 1) values of memtype) into a new buffer. */
static void *read_column(hid_t file, const char *name, int64_t rows, const char *of, int cols,
                         hid_t memtype, int64_t *nrows, char *err, size_t size)
{
    int64_t got = 0;
    hid_t d = open_checked(file, name, H5T_INTEGER, rows, of, cols, &got, err, size);
    if (d < 0) return NULL;
    size_t elems = (size_t)got * (size_t)(cols > 0 ? cols : 1);
    void *buf = malloc((elems ? elems : 1) * H5Tget_size(memtype));
    if (!buf) {
        cache_why(err, size, "out of memory for dataset '%s' (%lld rows)", name, (long long)got);
    } else if (elems && H5Dread(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        char what[200];
        snprintf(what, sizeof what, "cannot read dataset '%s'", name);
        h5_why(err, size, what);
        free(buf);
        buf = NULL;
    }
    H5Dclose(d);
    if (buf && nrows) *nrows = got;
    return buf;
}

/* A 1-D string dataset (variable or fixed length) as malloc'd copies. */
static char **read_strings(hid_t file, const char *name, int64_t rows, const char *of,
                           int64_t *nrows, char *err, size_t size)
{
    int64_t n = 0;
    hid_t d = open_checked(file, name, H5T_STRING, rows, of, 0, &n, err, size);
    if (d < 0) return NULL;
    char **out = calloc((size_t)(n ? n : 1), sizeof *out);
    hid_t ft = H5Dget_type(d), mt = -1;
    int ok = 0;
    char what[200];
    snprintf(what, sizeof what, "cannot read dataset '%s'", name);
    if (!out || ft < 0) {
        cache_why(err, size, "out of memory for dataset '%s'", name);
    } else if (n == 0) {
        ok = 1;
    } else if (H5Tis_variable_str(ft) > 0) {
        char **v = calloc((size_t)n, sizeof *v);
        mt = H5Tcopy(H5T_C_S1);
        if (!v) {
            cache_why(err, size, "out of memory for dataset '%s'", name);
        } else if (mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 ||
                   H5Tset_cset(mt, H5Tget_cset(ft)) < 0) {
            h5_why(err, size, what);
        } else if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) {
            h5_why(err, size, what);
        } else {
            ok = 1;
            for (int64_t i = 0; i < n; i++) {
                if (ok && !(out[i] = strdup(v[i] ? v[i] : ""))) {
                    cache_why(err, size, "out of memory for dataset '%s'", name);
                    ok = 0;
                }
                if (v[i]) H5free_memory(v[i]);
            }
        }
        free(v);
    } else {
        size_t w = H5Tget_size(ft);
        char *buf = w ? malloc((size_t)n * w) : NULL;
        mt = H5Tcopy(ft);
        if (!buf || mt < 0) {
            cache_why(err, size, "out of memory for dataset '%s'", name);
        } else if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
            h5_why(err, size, what);
        } else {
            ok = 1;
            for (int64_t i = 0; i < n && ok; i++)
                if (!(out[i] = strndup(buf + (size_t)i * w, w))) {
                    cache_why(err, size, "out of memory for dataset '%s'", name);
                    ok = 0;
                }
        }
        free(buf);
    }
    if (mt >= 0) H5Tclose(mt);
    if (ft >= 0) H5Tclose(ft);
    H5Dclose(d);
    if (!ok) {
        free_strings(out, n);
        return NULL;
    }
    *nrows = n;
    return out;
}

/* The crops dataset: uint8 (n, C, C, 3). Opened without a chunk cache when each chunk holds
 * one crop (a random read then goes straight from the file into the caller's buffer); a store
 * written by other tools with many crops a chunk keeps HDF5's cache, so neighbours are not
 * re-read or re-decompressed for every crop. */
static int open_crops(ss_crop_store_t *s, char *err, size_t size)
{
    int64_t rows = 0;
    hid_t d = open_checked(s->file, "crops", H5T_INTEGER, -1, NULL, -1, &rows, err, size);
    if (d < 0) return -1;
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d), pl = H5Dget_create_plist(d);
    size_t tsize = t >= 0 ? H5Tget_size(t) : 0;
    H5T_sign_t sign = t >= 0 ? H5Tget_sign(t) : H5T_SGN_ERROR;
    int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    hsize_t dims[4] = {0}, chunk[4] = {0};
    if (rank == 4) H5Sget_simple_extent_dims(sp, dims, NULL);
    int one_per_chunk = pl >= 0 && H5Pget_layout(pl) == H5D_CHUNKED &&
                        H5Pget_chunk(pl, 4, chunk) == 4 && chunk[0] == 1;
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    if (pl >= 0) H5Pclose(pl);
    hsize_t C = (hsize_t)s->size;
    int rc = -1;
    if (tsize != 1 || sign != H5T_SGN_NONE)
        cache_why(err, size, "dataset 'crops' is not uint8");
    else if (rank != 4 || dims[1] != C || dims[2] != C || dims[3] != 3)
        cache_why(err, size, "dataset 'crops' must be (N, %d, %d, 3) for crop_size %d", s->size,
                  s->size, s->size);
    else if ((int64_t)dims[0] != s->n)
        cache_why(err, size, "dataset 'crops' has %llu crops, but 'count' says %lld",
                  (unsigned long long)dims[0], (long long)s->n);
    else
        rc = 0;
    if (rc || !one_per_chunk) {
        s->crops = d;
        return rc;
    }
    H5Dclose(d);
    hid_t ap = H5Pcreate(H5P_DATASET_ACCESS);
    if (ap >= 0 && H5Pset_chunk_cache(ap, 0, 0, 1.0) >= 0)
        s->crops = H5Dopen2(s->file, "crops", ap);
    if (ap >= 0) H5Pclose(ap);
    if (s->crops < 0) return h5_why(err, size, "cannot open dataset 'crops'");
    return 0;
}

static int cmp_u32_pair(const void *a, const void *b)
{
    const uint32_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0;
}

/* Bag ids distinct, each cell's bag in the table (-> bag_of), source indices in range; then
 * the cells of each bag by counting sort. */
static int index_cells(ss_crop_store_t *s, char *err, size_t size)
{
    size_t B = (size_t)s->nbags;
    uint32_t *byid = malloc((B ? B : 1) * 2 * sizeof *byid); /* (B, 2): id, bag index */
    s->bag_of = malloc((size_t)(s->n ? s->n : 1) * sizeof *s->bag_of);
    s->bag_start = calloc(B + 1, sizeof *s->bag_start);
    s->bag_cells = malloc((size_t)(s->n ? s->n : 1) * sizeof *s->bag_cells);
    int rc = -1;
    if (!byid || !s->bag_of || !s->bag_start || !s->bag_cells) {
        cache_why(err, size, "out of memory for the bag index");
        goto done;
    }
    for (size_t b = 0; b < B; b++) {
        byid[2 * b] = s->bag_ids[b];
        byid[2 * b + 1] = (uint32_t)b;
    }
    qsort(byid, B, 2 * sizeof *byid, cmp_u32_pair);
    for (size_t b = 1; b < B; b++)
        if (byid[2 * b] == byid[2 * b - 2]) {
            cache_why(err, size, "bag id %u appears twice in 'bag_ids'", byid[2 * b]);
            goto done;
        }
    for (int64_t i = 0; i < s->n; i++) {
        uint32_t key[2] = {s->bag[i], 0};
        const uint32_t *hit = bsearch(key, byid, B, 2 * sizeof *byid, cmp_u32_pair);
        if (!hit) {
            cache_why(err, size, "cell %lld belongs to bag %u, which is not in 'bag_ids'",
                      (long long)i, s->bag[i]);
            goto done;
        }
        s->bag_of[i] = (int32_t)hit[1];
        s->bag_start[hit[1] + 1]++;
        if (s->source[i] < 0 || s->source[i] >= s->nsources) {
            cache_why(err, size,
                      "cell %lld has source index %d, outside the %lld names of 'sources'",
                      (long long)i, s->source[i], (long long)s->nsources);
            goto done;
        }
    }
    for (size_t b = 0; b < B; b++)
        s->bag_start[b + 1] += s->bag_start[b];
    /* Fill in ascending cell order, using bag_start[b] as bag b's cursor, then restore it. */
    for (int64_t i = 0; i < s->n; i++)
        s->bag_cells[s->bag_start[s->bag_of[i]]++] = i;
    for (size_t b = B; b > 0; b--)
        s->bag_start[b] = s->bag_start[b - 1];
    s->bag_start[0] = 0;
    rc = 0;
done:
    free(byid);
    return rc;
}

/* Opens `path` into a new store, or returns NULL with a reason in err (no ss_error). */
static ss_crop_store_t *open_impl(const char *path, int expect, char *err, size_t size)
{
    hid_t file = h5_open_readonly(path, err, size);
    if (file < 0) return NULL;
    ss_crop_store_t *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        H5Fclose(file);
        cache_why(err, size, "out of memory");
        return NULL;
    }
    s->crops = s->fspace = s->mspace = -1;
    s->file = file;
    char *fmt = NULL;
    int rc = h5_get_str(s->file, "format", &fmt);
    if (rc != 0) {
        if (rc < 0)
            h5_why(err, size, "cannot read the 'format' attribute");
        else
            cache_why(err, size, "not a slidestream crop store (no 'format' attribute)");
        goto fail;
    }
    int same = !strcmp(fmt, SS_CROPS_FORMAT);
    if (!same) cache_why(err, size, "not a slidestream crop store (format = '%.100s')", fmt);
    free(fmt);
    if (!same) goto fail;
    int64_t ver = 0, csize = 0, count = -1;
    if (h5_get_i64(s->file, "version", &ver) != 0 || ver < 1 || ver > SS_CROPS_VERSION) {
        cache_why(err, size, "unsupported crop store version %lld (this build reads up to %d)",
                  (long long)ver, SS_CROPS_VERSION);
        goto fail;
    }
    if (h5_get_i64(s->file, "crop_size", &csize) != 0 || csize < 1 || csize > SS_CROPS_MAX_SIZE) {
        cache_why(err, size, "missing or invalid 'crop_size' attribute (%lld)", (long long)csize);
        goto fail;
    }
    if (expect > 0 && csize != expect) {
        cache_why(err, size, "the store holds %lld px crops, but %d px crops were asked for",
                  (long long)csize, expect);
        goto fail;
    }
    if (h5_get_i64(s->file, "count", &count) != 0 || count < 0) {
        cache_why(err, size, "missing or invalid 'count' attribute (an unfinished store?)");
        goto fail;
    }
    s->size = (int)csize;
    s->crop_bytes = (size_t)csize * (size_t)csize * 3;
    s->n = count;
    if (open_crops(s, err, size)) goto fail;

    int64_t nb = 0, n = s->n, ignored = 0;
    hid_t f = s->file;
    if (!(s->bag = read_column(f, "bag", n, "cells", 0, H5T_NATIVE_UINT32, NULL, err, size)) ||
        !(s->label = read_column(f, "label", n, "cells", 0, H5T_NATIVE_INT32, NULL, err, size)) ||
        !(s->cell_id =
              read_column(f, "cell_id", n, "cells", 0, H5T_NATIVE_UINT64, NULL, err, size)) ||
        !(s->centre = read_column(f, "centre", n, "cells", 2, H5T_NATIVE_INT64, NULL, err, size)) ||
        !(s->source = read_column(f, "source", n, "cells", 0, H5T_NATIVE_INT32, NULL, err, size)) ||
        !(s->sources = read_strings(f, "sources", -1, NULL, &s->nsources, err, size)) ||
        !(s->bag_ids = read_column(f, "bag_ids", -1, NULL, 0, H5T_NATIVE_UINT32, &nb, err, size)))
        goto fail;
    if (nb > INT32_MAX) {
        cache_why(err, size, "implausible bag table of %lld bags", (long long)nb);
        goto fail;
    }
    s->nbags = (int)nb;
    if (!(s->bag_labels =
              read_column(f, "bag_labels", nb, "bags", 0, H5T_NATIVE_INT32, NULL, err, size)) ||
        !(s->bag_names = read_strings(f, "bag_names", nb, "bags", &ignored, err, size)) ||
        !(s->bag_splits = read_strings(f, "bag_splits", nb, "bags", &ignored, err, size)))
        goto fail;
    if (index_cells(s, err, size)) goto fail;

    hsize_t C = (hsize_t)s->size, one[4] = {1, C, C, 3};
    s->fspace = H5Dget_space(s->crops);
    s->mspace = H5Screate_simple(4, one, NULL);
    if (s->fspace < 0 || s->mspace < 0) {
        h5_why(err, size, "cannot set up crop reads");
        goto fail;
    }
    return s;
fail:
    H5Eclear2(H5E_DEFAULT);
    store_free(s);
    return NULL;
}

ss_crop_store_t *ss_crop_store_open(const char *path, int expect_crop_size)
{
    if (!path) {
        ss_error(DOMAIN, "open: no path");
        return NULL;
    }
    char err[800] = "";
    h5quiet_t q = h5q_begin();
    ss_crop_store_t *s = open_impl(path, expect_crop_size, err, sizeof err);
    h5q_end(q);
    if (!s) ss_error(DOMAIN, "%s: %s", path, err);
    return s;
}

void ss_crop_store_close(ss_crop_store_t **sp)
{
    if (!sp || !*sp) return;
    h5quiet_t q = h5q_begin();
    store_free(*sp);
    H5Eclear2(H5E_DEFAULT);
    h5q_end(q);
    *sp = NULL;
}

const char *ss_crop_store_path(const ss_crop_store_t *s)
{
    return s->path;
}

int64_t ss_crop_store_count(const ss_crop_store_t *s)
{
    return s->n;
}

int ss_crop_store_crop_size(const ss_crop_store_t *s)
{
    return s->size;
}

int32_t ss_crop_store_label(const ss_crop_store_t *s, int64_t i)
{
    assert(i >= 0 && i < s->n);
    return s->label[i];
}

uint32_t ss_crop_store_bag(const ss_crop_store_t *s, int64_t i)
{
    assert(i >= 0 && i < s->n);
    return s->bag[i];
}

int ss_crop_store_bag_index(const ss_crop_store_t *s, int64_t i)
{
    assert(i >= 0 && i < s->n);
    return s->bag_of[i];
}

uint64_t ss_crop_store_cell_id(const ss_crop_store_t *s, int64_t i)
{
    assert(i >= 0 && i < s->n);
    return s->cell_id[i];
}

void ss_crop_store_centre(const ss_crop_store_t *s, int64_t i, int64_t *x, int64_t *y)
{
    assert(i >= 0 && i < s->n);
    if (x) *x = s->centre[2 * i];
    if (y) *y = s->centre[2 * i + 1];
}

const char *ss_crop_store_source(const ss_crop_store_t *s, int64_t i)
{
    assert(i >= 0 && i < s->n);
    return s->sources[s->source[i]];
}

void ss_crop_store_info(const ss_crop_store_t *s, int64_t i, ss_crop_info_t *info)
{
    assert(i >= 0 && i < s->n);
    *info = (ss_crop_info_t){.bag_id = s->bag[i],
                             .label = s->label[i],
                             .cell_id = s->cell_id[i],
                             .x = s->centre[2 * i],
                             .y = s->centre[2 * i + 1],
                             .source = s->sources[s->source[i]]};
}

int ss_crop_store_nbags(const ss_crop_store_t *s)
{
    return s->nbags;
}

uint32_t ss_crop_store_bag_id(const ss_crop_store_t *s, int b)
{
    assert(b >= 0 && b < s->nbags);
    return s->bag_ids[b];
}

const char *ss_crop_store_bag_name(const ss_crop_store_t *s, int b)
{
    assert(b >= 0 && b < s->nbags);
    return s->bag_names[b];
}

int ss_crop_store_bag_label(const ss_crop_store_t *s, int b)
{
    assert(b >= 0 && b < s->nbags);
    return s->bag_labels[b];
}

const char *ss_crop_store_bag_split(const ss_crop_store_t *s, int b)
{
    assert(b >= 0 && b < s->nbags);
    return s->bag_splits[b];
}

const int64_t *ss_crop_store_bag_cells(const ss_crop_store_t *s, int b, int64_t *n)
{
    assert(b >= 0 && b < s->nbags);
    if (n) *n = s->bag_start[b + 1] - s->bag_start[b];
    return s->bag_cells + s->bag_start[b];
}

/* One crop by hyperslab; the caller has checked i and silenced HDF5. */
static int read_one(ss_crop_store_t *s, int64_t i, uint8_t *out)
{
    hsize_t C = (hsize_t)s->size, start[4] = {(hsize_t)i, 0, 0, 0}, count[4] = {1, C, C, 3};
    if (H5Sselect_hyperslab(s->fspace, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Dread(s->crops, H5T_NATIVE_UINT8, s->mspace, s->fspace, H5P_DEFAULT, out) < 0) {
        char d[400];
        h5_detail(d, sizeof d);
        return ss_error(DOMAIN, "%s: cannot read crop %lld%s%s", s->path, (long long)i,
                        d[0] ? " (HDF5: " : "", d[0] ? d : "");
    }
    return 0;
}

int ss_crop_store_read(ss_crop_store_t *s, int64_t i, uint8_t *out)
{
    if (!s || !out) return ss_error(DOMAIN, "read: no store or no buffer");
    if (i < 0 || i >= s->n)
        return ss_error(DOMAIN, "%s: crop %lld out of range (the store has %lld)", s->path,
                        (long long)i, (long long)s->n);
    h5quiet_t q = h5q_begin();
    int rc = read_one(s, i, out);
    h5q_end(q);
    return rc;
}

typedef struct {
    int64_t idx;
    int pos;
} want_t;

static int cmp_want(const void *a, const void *b)
{
    const want_t *x = a, *y = b;
    return x->idx < y->idx ? -1 : x->idx > y->idx ? 1 : 0;
}

int ss_crop_store_read_many(ss_crop_store_t *s, const int64_t *idx, int n, uint8_t *out)
{
    if (!s || (n > 0 && (!idx || !out)))
        return ss_error(DOMAIN, "read_many: no store, indices or buffer");
    if (n < 0) return ss_error(DOMAIN, "%s: read_many of %d crops", s->path, n);
    for (int k = 0; k < n; k++)
        if (idx[k] < 0 || idx[k] >= s->n)
            return ss_error(DOMAIN, "%s: crop %lld out of range (the store has %lld)", s->path,
                            (long long)idx[k], (long long)s->n);
    if (n == 0) return 0;
    want_t *w = malloc((size_t)n * sizeof *w);
    if (!w) return ss_error(DOMAIN, "%s: out of memory for a read of %d crops", s->path, n);
    for (int k = 0; k < n; k++)
        w[k] = (want_t){idx[k], k};
    qsort(w, (size_t)n, sizeof *w, cmp_want);
    h5quiet_t q = h5q_begin();
    int rc = 0;
    for (int k = 0; k < n && !rc; k++) {
        uint8_t *dst = out + (size_t)w[k].pos * s->crop_bytes;
        if (k > 0 && w[k].idx == w[k - 1].idx)
            memcpy(dst, out + (size_t)w[k - 1].pos * s->crop_bytes, s->crop_bytes);
        else
            rc = read_one(s, w[k].idx, dst);
    }
    h5q_end(q);
    free(w);
    return rc;
}
