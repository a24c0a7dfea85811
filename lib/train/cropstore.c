/* slidestream train — the crop store writer (layout in include/slidestream/train_store.h).
 *
 * Cells are buffered a few MiB at a time and appended in blocks to resizable datasets of
 * <path>.partial; the bag table and the source-name table grow in memory (they are small
 * beside the crops: one entry per bag and per distinct source) and are written by finish(),
 * which then closes, syncs and renames, so only a complete store carries the final name.
 * The writer owns its buffers, tables and copies of every string it is given. HDF5 helpers
 * (quiet error stacks, attributes, the close / sync / rename tail) are the embedding cache's
 * (lib/cache). */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache_internal.h"
#include "slidestream/error.h"
#include "slidestream/train_store.h"

#define DOMAIN "cropstore" /* ss_error domain of the writer and the reader */

enum { W_CROPS, W_BAG, W_LABEL, W_CELL, W_CENTRE, W_SOURCE, W_COUNT };

typedef struct {
    uint32_t id;
    int32_t label;
    char *name, *split;
    int given; /* recorded by add_bag (not only implied by a cell) */
} bag_t;

/* Open addressing over item indices: slot = index + 1, 0 = empty. Keys live in the items. */
typedef struct {
    int32_t *slot;
    size_t cap; /* power of two */
} ixset_t;

struct ss_crop_writer {
    char *path, *tmp;
    int size;          /* C */
    size_t crop_bytes; /* C * C * 3 */
    hid_t file;
    hid_t ds[W_COUNT];
    int failed;       /* sticky: the first failure makes every later call fail */
    int64_t written;  /* rows on disk */
    int nbuf, maxbuf; /* rows buffered, capacity */
    uint8_t *bcrops;  /* (maxbuf, C, C, 3) */
    uint32_t *bbag;   /* (maxbuf) */
    int32_t *blabel;  /* (maxbuf) */
    uint64_t *bcell;  /* (maxbuf) */
    int64_t *bcentre; /* (maxbuf, 2) */
    int32_t *bsource; /* (maxbuf) */
    bag_t *bags;
    int nbags, capbags, lastbag;
    ixset_t bagset;
    char **sources;
    int32_t nsources, capsources, lastsource;
    ixset_t sourceset;
};

#define BLOCK_BYTES (4u << 20) /* crops buffered before a block write */
#define COLUMN_CHUNK 4096      /* rows per chunk of the per-cell columns */

/* ---- small tables -------------------------------------------------------------------- */

static uint64_t hash_u32(uint32_t v)
{
    uint64_t h = (uint64_t)v * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 29);
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h ^ (h >> 31);
}

static uint64_t bag_hash(const ss_crop_writer_t *w, int32_t i)
{
    return hash_u32(w->bags[i].id);
}

static uint64_t source_hash(const ss_crop_writer_t *w, int32_t i)
{
    return hash_str(w->sources[i]);
}

/* The slot holding an item equal to key (same(w, item, key)), or the empty slot where it would
 * go. The table is never full (grown at half load). */
static int32_t *ixset_probe(const ixset_t *t, uint64_t h, const ss_crop_writer_t *w,
                            int (*same)(const ss_crop_writer_t *, int32_t, const void *),
                            const void *key)
{
    size_t m = t->cap - 1;
    for (size_t k = h & m;; k = (k + 1) & m) {
        int32_t *s = &t->slot[k];
        if (*s == 0 || same(w, *s - 1, key)) return s;
    }
}

/* Makes room for one more item when n items are in; rehashes them with hash(). */
static int ixset_reserve(ixset_t *t, int32_t n, const ss_crop_writer_t *w,
                         uint64_t (*hash)(const ss_crop_writer_t *, int32_t))
{
    if ((size_t)n + 1 <= t->cap / 2) return 0;
    size_t cap = t->cap ? t->cap * 2 : 64;
    int32_t *slot = calloc(cap, sizeof *slot);
    if (!slot) return -1;
    for (int32_t i = 0; i < n; i++) {
        size_t m = cap - 1, k = hash(w, i) & m;
        while (slot[k])
            k = (k + 1) & m;
        slot[k] = i + 1;
    }
    free(t->slot);
    t->slot = slot;
    t->cap = cap;
    return 0;
}

static int bag_same(const ss_crop_writer_t *w, int32_t i, const void *key)
{
    return w->bags[i].id == *(const uint32_t *)key;
}

static int source_same(const ss_crop_writer_t *w, int32_t i, const void *key)
{
    return !strcmp(w->sources[i], key);
}

/* Index of bag `id`, recorded with neutral details when new; -1 on allocation failure.
 * Cells usually arrive bag after bag, so the last hit is tried first. */
static int bag_lookup(ss_crop_writer_t *w, uint32_t id)
{
    if (w->lastbag >= 0 && w->bags[w->lastbag].id == id) return w->lastbag;
    if (ixset_reserve(&w->bagset, w->nbags, w, bag_hash)) return -1;
    int32_t *s = ixset_probe(&w->bagset, hash_u32(id), w, bag_same, &id);
    if (*s) return w->lastbag = *s - 1;
    if (w->nbags == w->capbags) {
        int cap = w->capbags ? w->capbags * 2 : 64;
        bag_t *b = realloc(w->bags, (size_t)cap * sizeof *b);
        if (!b) return -1;
        w->bags = b;
        w->capbags = cap;
    }
    bag_t *b = &w->bags[w->nbags];
    *b = (bag_t){.id = id, .label = -1, .name = strdup(""), .split = strdup("")};
    if (!b->name || !b->split) {
        free(b->name);
        free(b->split);
        return -1;
    }
    *s = ++w->nbags;
    return w->lastbag = w->nbags - 1;
}

/* Index of source name s in the string table, added when new; -1 on allocation failure or
 * when the table is full (int32 indices). */
static int32_t source_lookup(ss_crop_writer_t *w, const char *name)
{
    if (w->lastsource >= 0 && !strcmp(w->sources[w->lastsource], name)) return w->lastsource;
    if (w->nsources == INT32_MAX - 1 || ixset_reserve(&w->sourceset, w->nsources, w, source_hash))
        return -1;
    int32_t *s = ixset_probe(&w->sourceset, hash_str(name), w, source_same, name);
    if (*s) return w->lastsource = *s - 1;
    if (w->nsources == w->capsources) {
        int32_t cap = w->capsources
                          ? (w->capsources > INT32_MAX / 4 ? INT32_MAX - 1 : w->capsources * 2)
                          : 64;
        char **v = realloc(w->sources, (size_t)cap * sizeof *v);
        if (!v) return -1;
        w->sources = v;
        w->capsources = cap;
    }
    if (!(w->sources[w->nsources] = strdup(name))) return -1;
    *s = ++w->nsources;
    return w->lastsource = w->nsources - 1;
}

/* ---- HDF5 ---------------------------------------------------------------------------- */

/* ss_error("cropstore", "<file>: <what> (HDF5: <detail>)"); returns -1. */
static int fail(const char *file, const char *fmt, ...) SS_PRINTF(2, 3);
static int fail(const char *file, const char *fmt, ...)
{
    char what[600], d[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    h5_detail(d, sizeof d);
    if (d[0]) return ss_error(DOMAIN, "%s: %s (HDF5: %s)", file, what, d);
    return ss_error(DOMAIN, "%s: %s", file, what);
}

/* A fixed-size 1-D dataset holding n values (n may be 0). */
static int write_array(hid_t file, const char *name, hid_t type, hid_t memtype, size_t n,
                       const void *buf)
{
    hsize_t dims[1] = {n};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t d =
        sp >= 0 ? H5Dcreate2(file, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int rc = d >= 0 && (n == 0 || H5Dwrite(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0)
                 ? 0
                 : -1;
    if (rc) h5_save_detail();
    if (d >= 0 && H5Dclose(d) < 0) rc = -1;
    if (sp >= 0) H5Sclose(sp);
    return rc;
}

/* n strings as one fixed-length, NUL-padded UTF-8 array as wide as the longest (at least 1).
 * Fixed rather than variable length: variable-length strings live in HDF5's global heap,
 * whose reader (libhdf5 1.10) crashes on a damaged heap instead of returning an error. Written
 * a block at a time, so a table of 10^6 names needs no second copy of it all. */
static int write_strings(hid_t file, const char *name, size_t n, const char *const *s)
{
    size_t width = 1;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(s[i]);
        if (l > width) width = l;
    }
    size_t block = (1u << 20) / width + 1;
    if (block > n) block = n ? n : 1;
    char *buf = malloc(block * width);
    hsize_t dims[1] = {n};
    hid_t st = H5Tcopy(H5T_C_S1);
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t d = -1;
    int rc = -1;
    if (buf && st >= 0 && sp >= 0 && H5Tset_size(st, width) >= 0 &&
        H5Tset_strpad(st, H5T_STR_NULLPAD) >= 0 && H5Tset_cset(st, H5T_CSET_UTF8) >= 0 &&
        (d = H5Dcreate2(file, name, st, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) >= 0) {
        rc = 0;
        for (size_t at = 0; at < n && !rc; at += block) {
            size_t m = n - at < block ? n - at : block;
            memset(buf, 0, m * width);
            for (size_t i = 0; i < m; i++)
                memcpy(buf + i * width, s[at + i], strlen(s[at + i]));
            hsize_t start[1] = {at}, count[1] = {m};
            hid_t ms = H5Screate_simple(1, count, NULL);
            if (ms < 0 || H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
                H5Dwrite(d, st, ms, sp, H5P_DEFAULT, buf) < 0)
                rc = -1;
            if (ms >= 0) H5Sclose(ms);
        }
    }
    if (rc) h5_save_detail();
    if (d >= 0 && H5Dclose(d) < 0) rc = -1;
    if (sp >= 0) H5Sclose(sp);
    if (st >= 0) H5Tclose(st);
    free(buf);
    return rc;
}

static const char *const w_name[W_COUNT] = {"crops", "bag", "label", "cell_id", "centre", "source"};

static int flush_rows(ss_crop_writer_t *w)
{
    if (w->nbuf == 0) return 0;
    hsize_t n = (hsize_t)w->nbuf, at = (hsize_t)w->written;
    hsize_t crop_tail[3] = {(hsize_t)w->size, (hsize_t)w->size, 3}, two[1] = {2};
    struct {
        hid_t type;
        int rank;
        const hsize_t *tail;
        const void *buf;
    } col[W_COUNT] = {
        [W_CROPS] = {H5T_NATIVE_UINT8, 4, crop_tail, w->bcrops},
        [W_BAG] = {H5T_NATIVE_UINT32, 1, NULL, w->bbag},
        [W_LABEL] = {H5T_NATIVE_INT32, 1, NULL, w->blabel},
        [W_CELL] = {H5T_NATIVE_UINT64, 1, NULL, w->bcell},
        [W_CENTRE] = {H5T_NATIVE_INT64, 2, two, w->bcentre},
        [W_SOURCE] = {H5T_NATIVE_INT32, 1, NULL, w->bsource},
    };
    for (int i = 0; i < W_COUNT; i++)
        if (h5_append_rows(w->ds[i], col[i].type, col[i].rank, col[i].tail, at, n, col[i].buf)) {
            w->failed = 1;
            return fail(w->tmp, "cannot write %d cells of '%s' at cell %lld", w->nbuf, w_name[i],
                        (long long)w->written);
        }
    w->written += w->nbuf;
    w->nbuf = 0;
    return 0;
}

/* ---- the writer ---------------------------------------------------------------------- */

static void free_writer(ss_crop_writer_t *w)
{
    for (int i = 0; i < W_COUNT; i++)
        if (w->ds[i] >= 0) H5Dclose(w->ds[i]);
    if (w->file >= 0) H5Fclose(w->file);
    for (int i = 0; i < w->nbags; i++) {
        free(w->bags[i].name);
        free(w->bags[i].split);
    }
    for (int32_t i = 0; i < w->nsources; i++)
        free(w->sources[i]);
    free(w->bags);
    free(w->bagset.slot);
    free(w->sources);
    free(w->sourceset.slot);
    free(w->bcrops);
    free(w->bbag);
    free(w->blabel);
    free(w->bcell);
    free(w->bcentre);
    free(w->bsource);
    free(w->path);
    free(w->tmp);
    free(w);
}

ss_crop_writer_t *ss_crop_writer_new(const char *path, int crop_size)
{
    if (!path || !path[0]) {
        ss_error(DOMAIN, "writer: no path");
        return NULL;
    }
    if (crop_size < 1 || crop_size > SS_CROPS_MAX_SIZE) {
        ss_error(DOMAIN, "%s: invalid crop size %d (want 1..%d)", path, crop_size,
                 SS_CROPS_MAX_SIZE);
        return NULL;
    }
    ss_crop_writer_t *w = calloc(1, sizeof *w);
    if (!w) {
        ss_error(DOMAIN, "out of memory");
        return NULL;
    }
    w->file = -1;
    for (int i = 0; i < W_COUNT; i++)
        w->ds[i] = -1;
    w->lastbag = w->lastsource = -1;
    w->size = crop_size;
    w->crop_bytes = (size_t)crop_size * (size_t)crop_size * 3;
    size_t rows = BLOCK_BYTES / w->crop_bytes;
    w->maxbuf = rows < 1 ? 1 : rows > 1024 ? 1024 : (int)rows;
    size_t B = (size_t)w->maxbuf;
    w->bcrops = malloc(B * w->crop_bytes);
    w->bbag = malloc(B * sizeof *w->bbag);
    w->blabel = malloc(B * sizeof *w->blabel);
    w->bcell = malloc(B * sizeof *w->bcell);
    w->bcentre = malloc(B * 2 * sizeof *w->bcentre);
    w->bsource = malloc(B * sizeof *w->bsource);
    w->path = strdup(path);
    w->tmp = cache_strf("%s.partial", path);
    if (!w->bcrops || !w->bbag || !w->blabel || !w->bcell || !w->bcentre || !w->bsource ||
        !w->path || !w->tmp) {
        ss_error(DOMAIN, "%s: out of memory for the writer", path);
        free_writer(w);
        return NULL;
    }
    /* HDF5's text for a failed create hides the cause (a missing directory, no permission);
     * creating the file ourselves first gets errno. */
    int fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) {
        ss_error_system(DOMAIN, "%s: cannot create the crop store", w->tmp);
        free_writer(w);
        return NULL;
    }
    close(fd);

    h5quiet_t q = h5q_begin();
    int ok = 0;
    hsize_t crop_tail[3] = {(hsize_t)crop_size, (hsize_t)crop_size, 3}, two[1] = {2};
    /* The 1.10 file format: its chunk index for a dataset growing along one axis (an
     * extensible array) finds a crop's chunk directly, while the 1.8 format's B-tree, cached
     * as it is walked, grew a reader by ~100 MB over random reads of 200 000 crops. */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0 && H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110) >= 0)
        w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (fapl >= 0) H5Pclose(fapl);
    if (w->file < 0) {
        fail(w->tmp, "cannot create the crop store");
        goto done;
    }
    /* Uncompressed. One crop per chunk: a random read touches exactly one crop's bytes; no
     * chunk cache for the crops, so whole-chunk writes go straight to the file. */
    w->ds[W_CROPS] =
        h5_create_rows(w->file, "crops", H5T_STD_U8LE, 4, crop_tail, 1, H5_ROWS_NO_CACHE);
    w->ds[W_BAG] = h5_create_rows(w->file, "bag", H5T_STD_U32LE, 1, NULL, COLUMN_CHUNK, 0);
    w->ds[W_LABEL] = h5_create_rows(w->file, "label", H5T_STD_I32LE, 1, NULL, COLUMN_CHUNK, 0);
    w->ds[W_CELL] = h5_create_rows(w->file, "cell_id", H5T_STD_U64LE, 1, NULL, COLUMN_CHUNK, 0);
    w->ds[W_CENTRE] = h5_create_rows(w->file, "centre", H5T_STD_I64LE, 2, two, COLUMN_CHUNK, 0);
    w->ds[W_SOURCE] = h5_create_rows(w->file, "source", H5T_STD_I32LE, 1, NULL, COLUMN_CHUNK, 0);
    for (int i = 0; i < W_COUNT; i++)
        if (w->ds[i] < 0) {
            fail(w->tmp, "cannot create dataset '%s'", w_name[i]);
            goto done;
        }
    if (h5_attr_str(w->ds[W_CROPS], "channels", "RGB") ||
        h5_attr_str(w->file, "format", SS_CROPS_FORMAT) ||
        h5_attr_i64(w->file, "version", SS_CROPS_VERSION) ||
        h5_attr_i64(w->file, "crop_size", crop_size)) {
        fail(w->tmp, "cannot write attributes");
        goto done;
    }
    ok = 1;
done:
    h5q_end(q);
    if (!ok) ss_crop_writer_abort(&w);
    return w;
}

static int same_str(const char *a, const char *b)
{
    return !strcmp(a ? a : "", b ? b : "");
}

int ss_crop_writer_add_bag(ss_crop_writer_t *w, uint32_t bag_id, const char *name, int label,
                           const char *split)
{
    if (!w) return ss_error(DOMAIN, "add_bag: no writer");
    if (w->failed) return ss_error(DOMAIN, "%s: writer already failed", w->tmp);
    int b = bag_lookup(w, bag_id);
    if (b < 0) {
        w->failed = 1;
        return ss_error(DOMAIN, "%s: out of memory for the bag table", w->tmp);
    }
    bag_t *g = &w->bags[b];
    if (g->given) {
        if (g->label == label && same_str(g->name, name) && same_str(g->split, split)) return 0;
        return ss_error(DOMAIN,
                        "%s: bag %u added twice with different details ('%s', label %d, "
                        "split '%s', then '%s', label %d, split '%s')",
                        w->tmp, bag_id, g->name, g->label, g->split, name ? name : "", label,
                        split ? split : "");
    }
    char *n = strdup(name ? name : ""), *s = strdup(split ? split : "");
    if (!n || !s) {
        free(n);
        free(s);
        w->failed = 1;
        return ss_error(DOMAIN, "%s: out of memory for the bag table", w->tmp);
    }
    free(g->name);
    free(g->split);
    g->name = n;
    g->split = s;
    g->label = label;
    g->given = 1;
    return 0;
}

int ss_crop_writer_add(ss_crop_writer_t *w, const uint8_t *crop, int size,
                       const ss_crop_info_t *info)
{
    if (!w) return ss_error(DOMAIN, "add: no writer");
    if (w->failed) return ss_error(DOMAIN, "%s: writer already failed", w->tmp);
    if (!crop || !info) return ss_error(DOMAIN, "%s: add needs a crop and its info", w->tmp);
    /* Refused without failing the writer: the store stays consistent. */
    if (size != w->size)
        return ss_error(DOMAIN,
                        "%s: crop of %d px refused: this store holds %d px crops (cell %llu)",
                        w->tmp, size, w->size, (unsigned long long)info->cell_id);
    if (bag_lookup(w, info->bag_id) < 0) {
        w->failed = 1;
        return ss_error(DOMAIN, "%s: out of memory for the bag table", w->tmp);
    }
    int32_t src = source_lookup(w, info->source ? info->source : "");
    if (src < 0) {
        w->failed = 1;
        return ss_error(DOMAIN, "%s: cannot add source '%s' to the source table", w->tmp,
                        info->source ? info->source : "");
    }
    size_t k = (size_t)w->nbuf;
    memcpy(w->bcrops + k * w->crop_bytes, crop, w->crop_bytes);
    w->bbag[k] = info->bag_id;
    w->blabel[k] = info->label;
    w->bcell[k] = info->cell_id;
    w->bcentre[2 * k] = info->x;
    w->bcentre[2 * k + 1] = info->y;
    w->bsource[k] = src;
    if (++w->nbuf < w->maxbuf) return 0;
    h5quiet_t q = h5q_begin();
    int rc = flush_rows(w);
    h5q_end(q);
    return rc;
}

int64_t ss_crop_writer_count(const ss_crop_writer_t *w)
{
    return w ? w->written + w->nbuf : 0;
}

const char *ss_crop_writer_path(const ss_crop_writer_t *w)
{
    return w ? w->path : NULL;
}

static int write_tables(ss_crop_writer_t *w)
{
    size_t B = (size_t)w->nbags;
    uint32_t *ids = malloc((B ? B : 1) * sizeof *ids);
    int32_t *labels = malloc((B ? B : 1) * sizeof *labels);
    const char **names = malloc((B ? B : 1) * sizeof *names);
    const char **splits = malloc((B ? B : 1) * sizeof *splits);
    int rc = -1;
    if (!ids || !labels || !names || !splits) {
        ss_error(DOMAIN, "%s: out of memory for the bag table", w->tmp);
        goto done;
    }
    for (size_t b = 0; b < B; b++) {
        ids[b] = w->bags[b].id;
        labels[b] = w->bags[b].label;
        names[b] = w->bags[b].name;
        splits[b] = w->bags[b].split;
    }
    const char *what = NULL;
    if (write_strings(w->file, "sources", (size_t)w->nsources, (const char *const *)w->sources))
        what = "sources";
    else if (write_array(w->file, "bag_ids", H5T_STD_U32LE, H5T_NATIVE_UINT32, B, ids))
        what = "bag_ids";
    else if (write_strings(w->file, "bag_names", B, names))
        what = "bag_names";
    else if (write_array(w->file, "bag_labels", H5T_STD_I32LE, H5T_NATIVE_INT32, B, labels))
        what = "bag_labels";
    else if (write_strings(w->file, "bag_splits", B, splits))
        what = "bag_splits";
    else if (h5_attr_i64(w->file, "count", w->written))
        what = "the 'count' attribute";
    if (what)
        fail(w->tmp, "cannot write %s", what);
    else
        rc = 0;
done:
    free(ids);
    free(labels);
    free(names);
    free(splits);
    return rc;
}

int ss_crop_writer_finish(ss_crop_writer_t **wp)
{
    if (!wp || !*wp) return ss_error(DOMAIN, "finish: no writer");
    ss_crop_writer_t *w = *wp;
    if (w->failed) {
        ss_error(DOMAIN, "%s: not finished: an earlier write failed", w->tmp);
        ss_crop_writer_abort(wp);
        return -1;
    }
    h5quiet_t q = h5q_begin();
    int rc = -1;
    if (flush_rows(w) || write_tables(w)) goto done;
    /* Closing writes the metadata: on a full disk this is where it fails. */
    if (h5_close_all(w->ds, W_COUNT, &w->file)) {
        fail(w->tmp, "cannot close the crop store (disk full?)");
        goto done;
    }
    if (cache_commit(w->tmp, w->path, DOMAIN)) goto done;
    rc = 0;
done:
    h5q_end(q);
    if (rc) {
        ss_crop_writer_abort(wp);
        return -1;
    }
    free_writer(w);
    *wp = NULL;
    return 0;
}

void ss_crop_writer_abort(ss_crop_writer_t **wp)
{
    if (!wp || !*wp) return;
    ss_crop_writer_t *w = *wp;
    h5_discard(w->ds, W_COUNT, &w->file, w->tmp);
    free_writer(w);
    *wp = NULL;
}
