/* slidestream cache — the per-slide cache writer (layout in include/slidestream/cache.h).
 *
 * Rows are buffered (SS_CACHE_CHUNK_ROWS at a time) and appended to resizable, chunked,
 * shuffle+deflate datasets of <slide_id>.h5.tmp. finish() writes `complete` = 1 last, closes,
 * fsyncs and renames; any failure removes the .tmp, so only a finished file carries the final
 * name. The writer owns copies of every meta string. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache_internal.h"
#include "slidestream/cache.h"
#include "slidestream/error.h"
#include "slidestream/log.h"

enum { DS_FEAT, DS_COORD, DS_CENT, DS_IDS, DS_BB, DS_AREA, DS_COUNT };

struct ss_cache_writer {
    char *path, *tmp;
    ss_cache_meta_t meta; /* strings below are owned copies */
    char *s_slide, *s_split, *s_enc, *s_hash, *s_feat, *s_pre;
    hid_t file;
    hid_t ds[DS_COUNT];
    int decided, has_bb, has_ar; /* optional columns, fixed by the first non-empty add */
    int failed;
    int64_t written; /* rows on disk */
    int nbuf;        /* rows buffered */
    float *bfeat;    /* (CHUNK, dim) */
    int64_t *bcoord, *bcent; /* (CHUNK, 2) */
    uint64_t *bids;
    int32_t *bbb; /* (CHUNK, 4) */
    uint32_t *barea;
};

static const char *ds_name[DS_COUNT] = {"features", "coords", "centres",
                                        "cell_ids", "bboxes", "areas"};

static int deflate_ok(void)
{
    static int state = -1; /* -1 unknown, 0 no, 1 yes */
    if (state < 0) {
        unsigned cfg = 0;
        state = H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0 &&
                H5Zget_filter_info(H5Z_FILTER_DEFLATE, &cfg) >= 0 &&
                (cfg & H5Z_FILTER_CONFIG_ENCODE_ENABLED);
        if (!state) ss_warn("cache: HDF5 has no deflate (zlib) filter; writing uncompressed");
    }
    return state;
}

/* Rows per chunk: many rows (never (1, D)), but at most ~1 MiB so a chunk fits HDF5's
 * default chunk cache and h5py readers do not thrash. */
static hsize_t chunk_rows(size_t row_bytes)
{
    hsize_t r = 4096;
    while (r > 16 && r * row_bytes > (1u << 20)) r /= 2;
    return r;
}

/* A (N, cols) dataset, or (N) when cols == 0, of elem-byte values. */
static hid_t create_ds(hid_t file, const char *name, hid_t type, int cols, size_t elem)
{
    hsize_t c = (hsize_t)(cols > 0 ? cols : 1);
    return h5_create_rows(file, name, type, cols > 0 ? 2 : 1, &c, chunk_rows(elem * c),
                          deflate_ok() ? H5_ROWS_DEFLATE : 0);
}

static int flush_rows(ss_cache_writer_t *w)
{
    if (w->nbuf == 0) return 0;
    int n = w->nbuf;
    struct {
        int ds;
        hid_t type;
        int cols;
        const void *buf;
    } cols[DS_COUNT] = {
        {DS_FEAT, H5T_NATIVE_FLOAT, w->meta.dim, w->bfeat},
        {DS_COORD, H5T_NATIVE_INT64, 2, w->bcoord},
        {DS_CENT, H5T_NATIVE_INT64, 2, w->bcent},
        {DS_IDS, H5T_NATIVE_UINT64, 0, w->bids},
        {DS_BB, H5T_NATIVE_INT32, 4, w->bbb},
        {DS_AREA, H5T_NATIVE_UINT32, 0, w->barea},
    };
    for (int i = 0; i < DS_COUNT; i++) {
        if (w->ds[cols[i].ds] < 0) continue;
        hsize_t c = (hsize_t)(cols[i].cols > 0 ? cols[i].cols : 1);
        if (h5_append_rows(w->ds[cols[i].ds], cols[i].type, cols[i].cols > 0 ? 2 : 1, &c,
                           (hsize_t)w->written, (hsize_t)n, cols[i].buf)) {
            w->failed = 1;
            char what[160];
            snprintf(what, sizeof what, "cannot write %d rows of '%s' at row %lld", n,
                     ds_name[cols[i].ds], (long long)w->written);
            return h5_fail(w->tmp, what);
        }
    }
    w->written += n;
    w->nbuf = 0;
    return 0;
}

static void free_writer(ss_cache_writer_t *w)
{
    for (int i = 0; i < DS_COUNT; i++)
        if (w->ds[i] >= 0) H5Dclose(w->ds[i]);
    if (w->file >= 0) H5Fclose(w->file);
    free(w->path);
    free(w->tmp);
    free(w->s_slide);
    free(w->s_split);
    free(w->s_enc);
    free(w->s_hash);
    free(w->s_feat);
    free(w->s_pre);
    free(w->bfeat);
    free(w->bcoord);
    free(w->bcent);
    free(w->bids);
    free(w->bbb);
    free(w->barea);
    free(w);
}

static int valid_slide_id(const char *s)
{
    return s && s[0] && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..") &&
           strlen(s) < 1000;
}

static int write_meta_attrs(ss_cache_writer_t *w)
{
    const ss_cache_meta_t *m = &w->meta;
    hid_t f = w->file, feat = w->ds[DS_FEAT], co = w->ds[DS_COORD];
    if (h5_attr_str(f, "format", SS_CACHE_FORMAT) || h5_attr_i64(f, "version", SS_CACHE_VERSION) ||
        h5_attr_str(f, "slide_id", m->slide_id) || h5_attr_i64(f, "label", m->label) ||
        h5_attr_str(f, "split", m->split))
        return -1;
    if (h5_attr_str(feat, "encoder", m->encoder) ||
        h5_attr_str(feat, "encoder_hash", m->encoder_hash) ||
        h5_attr_str(feat, "feature", m->feature) ||
        h5_attr_str(feat, "preprocessing", m->preprocessing) ||
        h5_attr_str(feat, "name", m->slide_id))
        return -1;
    /* TRIDENT's coords attributes (magnification = 10 / mpp, the field's convention), plus the
     * exact mpps so nothing is lost to binning. */
    if (h5_attr_i64(co, "patch_size", m->patch_size) ||
        h5_attr_i64(co, "patch_size_level0", m->patch_size_level0) ||
        h5_attr_f64(co, "target_mpp", m->target_mpp) || h5_attr_f64(co, "slide_mpp", m->slide_mpp) ||
        h5_attr_str(co, "name", m->slide_id))
        return -1;
    if (m->slide_mpp > 0 && h5_attr_f64(co, "level0_magnification", 10.0 / m->slide_mpp))
        return -1;
    if (m->target_mpp > 0 && h5_attr_f64(co, "target_magnification", 10.0 / m->target_mpp))
        return -1;
    return 0;
}

ss_cache_writer_t *ss_cache_writer_new(const char *dir, const ss_cache_meta_t *meta)
{
    if (!dir || !meta) {
        ss_error("cache", "writer: no directory or metadata");
        return NULL;
    }
    if (!valid_slide_id(meta->slide_id)) {
        ss_error("cache", "writer: invalid slide id '%s' (must be a plain file name)",
                 meta->slide_id ? meta->slide_id : "(null)");
        return NULL;
    }
    if (meta->dim <= 0 || meta->dim > (1 << 20)) {
        ss_error("cache", "writer for %s: invalid feature dimension %d", meta->slide_id, meta->dim);
        return NULL;
    }
    if (cache_mkdirs(dir)) return NULL;

    ss_cache_writer_t *w = calloc(1, sizeof *w);
    if (!w) {
        ss_error("cache", "out of memory");
        return NULL;
    }
    w->file = -1;
    for (int i = 0; i < DS_COUNT; i++) w->ds[i] = -1;
    w->meta = *meta;
    w->s_slide = strdup(meta->slide_id);
    w->s_split = strdup(meta->split ? meta->split : "");
    w->s_enc = strdup(meta->encoder ? meta->encoder : "");
    w->s_hash = strdup(meta->encoder_hash ? meta->encoder_hash : "");
    w->s_feat = strdup(meta->feature ? meta->feature : "");
    w->s_pre = strdup(meta->preprocessing ? meta->preprocessing : "");
    size_t C = SS_CACHE_CHUNK_ROWS;
    w->bfeat = malloc(C * (size_t)meta->dim * sizeof(float));
    w->bcoord = malloc(C * 2 * sizeof(int64_t));
    w->bcent = malloc(C * 2 * sizeof(int64_t));
    w->bids = malloc(C * sizeof(uint64_t));
    w->bbb = malloc(C * 4 * sizeof(int32_t));
    w->barea = malloc(C * sizeof(uint32_t));
    w->path = cache_strf("%s/%s.h5", dir, meta->slide_id);
    w->tmp = cache_strf("%s/%s.h5.tmp", dir, meta->slide_id);
    if (!w->s_slide || !w->s_split || !w->s_enc || !w->s_hash || !w->s_feat || !w->s_pre ||
        !w->bfeat || !w->bcoord || !w->bcent || !w->bids || !w->bbb || !w->barea || !w->path ||
        !w->tmp) {
        ss_error("cache", "out of memory for the writer of %s", meta->slide_id);
        free_writer(w);
        return NULL;
    }
    w->meta.slide_id = w->s_slide;
    w->meta.split = w->s_split;
    w->meta.encoder = w->s_enc;
    w->meta.encoder_hash = w->s_hash;
    w->meta.feature = w->s_feat;
    w->meta.preprocessing = w->s_pre;

    h5quiet_t q = h5q_begin();
    int ok = 0;
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (w->file < 0) {
        /* HDF5's text hides the cause; an unwritable directory is the usual one. */
        if (access(dir, W_OK) < 0)
            ss_error_system("cache", "%s: cannot create cache file in directory %s", w->tmp, dir);
        else
            h5_fail(w->tmp, "cannot create cache file");
        goto done;
    }
    w->ds[DS_FEAT] = create_ds(w->file, "features", H5T_IEEE_F32LE, meta->dim, sizeof(float));
    w->ds[DS_COORD] = create_ds(w->file, "coords", H5T_STD_I64LE, 2, sizeof(int64_t));
    w->ds[DS_CENT] = create_ds(w->file, "centres", H5T_STD_I64LE, 2, sizeof(int64_t));
    w->ds[DS_IDS] = create_ds(w->file, "cell_ids", H5T_STD_U64LE, 0, sizeof(uint64_t));
    if (w->ds[DS_FEAT] < 0 || w->ds[DS_COORD] < 0 || w->ds[DS_CENT] < 0 || w->ds[DS_IDS] < 0) {
        h5_fail(w->tmp, "cannot create datasets");
        goto done;
    }
    if (write_meta_attrs(w)) {
        h5_fail(w->tmp, "cannot write attributes");
        goto done;
    }
    ok = 1;
done:
    h5q_end(q);
    if (!ok) {
        ss_cache_writer_abort(&w);
        return NULL;
    }
    return w;
}

int ss_cache_writer_add(ss_cache_writer_t *w, int n, const float *features,
                        const int64_t *coords, const int64_t *centres, const uint64_t *cell_ids,
                        const int32_t *bboxes, const uint32_t *areas)
{
    if (!w) return ss_error("cache", "add: no writer");
    if (w->failed) return ss_error("cache", "%s: writer already failed", w->tmp);
    if (n < 0) return ss_error("cache", "%s: negative row count %d", w->tmp, n);
    if (n == 0) return 0;
    if (!features || !coords || !centres || !cell_ids)
        return ss_error("cache", "%s: add needs features, coords, centres and cell ids", w->tmp);
    h5quiet_t q = h5q_begin();
    int rc = -1;
    if (!w->decided) {
        w->decided = 1;
        w->has_bb = bboxes != NULL;
        w->has_ar = areas != NULL;
        if (w->has_bb &&
            (w->ds[DS_BB] = create_ds(w->file, "bboxes", H5T_STD_I32LE, 4, sizeof(int32_t))) < 0) {
            w->failed = 1;
            h5_fail(w->tmp, "cannot create dataset 'bboxes'");
            goto done;
        }
        if (w->has_ar &&
            (w->ds[DS_AREA] = create_ds(w->file, "areas", H5T_STD_U32LE, 0, sizeof(uint32_t))) < 0) {
            w->failed = 1;
            h5_fail(w->tmp, "cannot create dataset 'areas'");
            goto done;
        }
    } else if ((bboxes != NULL) != w->has_bb || (areas != NULL) != w->has_ar) {
        w->failed = 1;
        ss_error("cache", "%s: bboxes/areas given on some adds but not others", w->tmp);
        goto done;
    }
    size_t D = (size_t)w->meta.dim;
    for (int i = 0; i < n;) {
        int take = SS_CACHE_CHUNK_ROWS - w->nbuf;
        if (take > n - i) take = n - i;
        size_t b = (size_t)w->nbuf;
        memcpy(w->bfeat + b * D, features + (size_t)i * D, (size_t)take * D * sizeof(float));
        memcpy(w->bcoord + b * 2, coords + (size_t)i * 2, (size_t)take * 2 * sizeof(int64_t));
        memcpy(w->bcent + b * 2, centres + (size_t)i * 2, (size_t)take * 2 * sizeof(int64_t));
        memcpy(w->bids + b, cell_ids + i, (size_t)take * sizeof(uint64_t));
        if (bboxes)
            memcpy(w->bbb + b * 4, bboxes + (size_t)i * 4, (size_t)take * 4 * sizeof(int32_t));
        if (areas) memcpy(w->barea + b, areas + i, (size_t)take * sizeof(uint32_t));
        w->nbuf += take;
        i += take;
        if (w->nbuf == SS_CACHE_CHUNK_ROWS && flush_rows(w)) goto done;
    }
    rc = 0;
done:
    h5q_end(q);
    return rc;
}

int64_t ss_cache_writer_rows(const ss_cache_writer_t *w)
{
    return w ? w->written + w->nbuf : 0;
}

const char *ss_cache_writer_path(const ss_cache_writer_t *w)
{
    return w ? w->path : NULL;
}

int ss_cache_writer_finish(ss_cache_writer_t **wp)
{
    if (!wp || !*wp) return ss_error("cache", "finish: no writer");
    ss_cache_writer_t *w = *wp;
    if (w->failed) {
        ss_error("cache", "%s: not finished: an earlier write failed", w->tmp);
        ss_cache_writer_abort(wp);
        return -1;
    }
    h5quiet_t q = h5q_begin();
    int rc = -1;
    if (flush_rows(w)) goto done;
    if (h5_attr_i64(w->file, "complete", 1) < 0) {
        h5_fail(w->tmp, "cannot write the 'complete' attribute");
        goto done;
    }
    if (H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0) {
        h5_fail(w->tmp, "cannot flush to disk");
        goto done;
    }
    if (h5_close_all(w->ds, DS_COUNT, &w->file)) {
        h5_fail(w->tmp, "cannot close the file (disk full?)");
        goto done;
    }
    if (cache_commit(w->tmp, w->path, "cache")) goto done;
    rc = 0;
done:
    h5q_end(q);
    if (rc) {
        ss_cache_writer_abort(wp);
        return -1;
    }
    free_writer(w);
    *wp = NULL;
    return 0;
}

void ss_cache_writer_abort(ss_cache_writer_t **wp)
{
    if (!wp || !*wp) return;
    ss_cache_writer_t *w = *wp;
    h5_discard(w->ds, DS_COUNT, &w->file, w->tmp);
    free_writer(w);
    *wp = NULL;
}
