/* cache-writer — the collector of embeddings: writes one HDF5 file per bag,
 * <dir>/<slide_id>.h5, under a temporary name renamed only when the bag is complete (every
 * cell the bag-builder announced has arrived). An incomplete bag's partial file is deleted
 * and the bag is named on stderr (exit 3); re-running the pipeline redoes it.
 *   data in:    PULL --in (binds): EMBED messages from the encoders
 *   control in: PULL --control (binds): SLIDE, COUNT, ERROR, END from the bag-builder
 * The collecting itself is the library's collector (slidestream/collector.h); this file writes
 * what it hands over. A bag's file and the rows that came before its SLIDE message are kept in
 * the collector's bag->user and released with it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "slidestream/args.h"
#include "slidestream/cache.h"
#include "slidestream/collector.h"
#include "slidestream/encoder_id.h"
#include "slidestream/log.h"
#include "slidestream/transport.h"

/* A bag's file, in the collector's bag->user. */
typedef struct {
    ss_cache_writer_t *w;
    /* rows that arrived before the bag's SLIDE message (file name unknown yet) */
    ss_msg_header_t *pend_h;
    float *pend_f;
    size_t npend, cappend;
} bagfile_t;

typedef struct {
    const char *dir;
    ss_encoder_id_t id;
    ss_stage_t *st;
    float *vec; /* [dim] one embedding, aligned */
    uint64_t files, rows;
} writer_t;

/* Append one embedding row (creating the file on the first row). */
static int add_row(writer_t *W, ss_collector_bag_t *b, const ss_msg_header_t *h, const float *f)
{
    bagfile_t *u = b->user;
    if (!u->w) {
        ss_cache_meta_t m = {0};
        m.slide_id = b->name;
        m.label = b->label >= 0 ? b->label : h->label;
        m.split = b->split;
        m.patch_size = h->crop;
        m.patch_size_level0 = (int64_t)llround(h->crop * (double)h->scale);
        m.target_mpp = h->extra / 1000.0;
        m.slide_mpp = b->mpp;
        m.encoder = W->id.encoder;
        m.encoder_hash = W->id.hash;
        m.feature = W->id.feature;
        m.preprocessing = W->id.preprocessing;
        m.dim = (int)h->shape[0];
        if (!(u->w = ss_cache_writer_new(W->dir, &m))) return -1;
    }
    int64_t half = (int64_t)llround(h->crop * (double)h->scale / 2);
    int64_t coords[2] = {h->x - half, h->y - half}, centre[2] = {h->x, h->y};
    uint64_t cid = h->item;
    int32_t bbox[4] = {h->aux[0], h->aux[1], h->aux[0] + h->aux[2], h->aux[1] + h->aux[3]};
    uint32_t area = h->area;
    return ss_cache_writer_add(u->w, 1, f, coords, centre, &cid, bbox, &area);
}

static void free_pending(bagfile_t *u)
{
    free(u->pend_h);
    free(u->pend_f);
    u->pend_h = NULL;
    u->pend_f = NULL;
    u->npend = u->cappend = 0;
}

static int flush_pending(writer_t *W, ss_collector_bag_t *b)
{
    bagfile_t *u = b->user;
    int rc = 0;
    for (size_t i = 0; i < u->npend && !rc; i++)
        rc = add_row(W, b, &u->pend_h[i], u->pend_f + i * (size_t)W->id.dim);
    free_pending(u);
    return rc;
}

/* A write failed: the fault names it, the partial file goes, the bag never completes. */
static void fail_bag(writer_t *W, ss_collector_bag_t *b)
{
    ss_stage_fault(W->st, "bag '%s': %s", b->name, ss_error_last());
    ss_error_clear();
    ss_cache_writer_abort(&((bagfile_t *)b->user)->w);
    ss_collector_fail(b, "write failed");
}

/* Finish a complete bag: the rename makes it visible. Empty bags still get a (0, D) file. */
static int finish_bag(writer_t *W, ss_collector_bag_t *b)
{
    bagfile_t *u = b->user;
    if (!u->w) {
        ss_cache_meta_t m = {0};
        m.slide_id = b->name;
        m.label = b->label;
        m.split = b->split;
        m.slide_mpp = b->mpp;
        m.patch_size = W->id.input_size;
        m.encoder = W->id.encoder;
        m.encoder_hash = W->id.hash;
        m.feature = W->id.feature;
        m.preprocessing = W->id.preprocessing;
        m.dim = W->id.dim;
        if (!(u->w = ss_cache_writer_new(W->dir, &m))) return -1;
    }
    int64_t rows = ss_cache_writer_rows(u->w);
    char path[4096];
    snprintf(path, sizeof path, "%s", ss_cache_writer_path(u->w));
    if (ss_cache_writer_finish(&u->w)) return -1;
    W->files++;
    W->rows += (uint64_t)rows;
    ss_info("cache-writer: %s: %lld embeddings", path, (long long)rows);
    return 0;
}

/* ---- the collector's callbacks (see slidestream/collector.h) ---------------------------- */

/* A mis-configured encoder: the bag must not be finished without it. */
static int check_width(ss_collector_bag_t *b, const ss_msg_t *m, void *arg)
{
    writer_t *W = arg;
    if ((int)m->h.shape[0] == W->id.dim) return 0;
    ss_stage_fault(W->st, "bag '%s': embedding of width %u, the checkpoint's is %d "
                   "(encoders and cache-writer must use the same checkpoint "
                   "and --feature)", b->name, m->h.shape[0], W->id.dim);
    ss_cache_writer_abort(&((bagfile_t *)b->user)->w);
    ss_collector_fail(b, "write failed");
    return 1;
}

static int on_embed(ss_collector_bag_t *b, const ss_msg_t *m, void *arg)
{
    writer_t *W = arg;
    bagfile_t *u = b->user;
    size_t dim = (size_t)W->id.dim;
    memcpy(W->vec, m->data, dim * sizeof *W->vec);
    if (b->have_meta) {
        if (add_row(W, b, &m->h, W->vec)) fail_bag(W, b);
        return 0;
    }
    if (u->npend == u->cappend) {
        size_t nc = u->cappend ? 2 * u->cappend : 64;
        ss_msg_header_t *nh = realloc(u->pend_h, nc * sizeof *nh);
        if (nh) u->pend_h = nh;
        float *nf = realloc(u->pend_f, nc * dim * sizeof *nf);
        if (nf) u->pend_f = nf;
        if (!nh || !nf) {
            ss_stage_fault(W->st, "out of memory");
            return -1;
        }
        u->cappend = nc;
    }
    u->pend_h[u->npend] = m->h;
    memcpy(u->pend_f + u->npend * dim, W->vec, dim * sizeof *W->vec);
    u->npend++;
    return 0;
}

/* The file name is known now: clear what an earlier run left, write the rows that waited. */
static int on_slide(ss_collector_bag_t *b, const ss_msg_t *m, void *arg)
{
    writer_t *W = arg;
    (void)m;
    ss_cache_discard_partial(W->dir, b->name);
    if (flush_pending(W, b)) fail_bag(W, b);
    return 0;
}

static int on_complete(ss_collector_bag_t *b, void *arg)
{
    writer_t *W = arg;
    if (finish_bag(W, b)) {
        ss_stage_fault(W->st, "bag '%s': %s", b->name, ss_error_last());
        ss_error_clear();
        ss_collector_fail(b, "write failed");
    }
    return 0;
}

static void release_bag(ss_collector_bag_t *b, void *arg)
{
    bagfile_t *u = b->user;
    (void)arg;
    ss_cache_writer_abort(&u->w);
    free_pending(u);
}

/* Whatever is still open is incomplete: its temporary file goes, nothing looks finished. */
static int on_incomplete(ss_collector_bag_t *b, const char *lacks, void *arg)
{
    (void)arg;
    fprintf(stderr, "slidestream cache-writer: INCOMPLETE bag '%s': %s; no cache file "
                    "written (re-run to redo it)\n", b->name, lacks);
    release_bag(b, NULL);
    return 0;
}

static void fault_text(char *buf, size_t n, ss_collect_refusal_t why, const ss_collector_bag_t *b,
                       const ss_msg_header_t *h, const char *detail, void *arg)
{
    (void)arg;
    unsigned long long item = (unsigned long long)h->item;
    switch (why) {
    case SS_COLLECT_LATE:
        snprintf(buf, n, "bag '%s': embedding of cell %llu arrived after the bag was written",
                 b->name, item);
        break;
    case SS_COLLECT_DUPLICATE:
        snprintf(buf, n, "bag '%s': embedding of cell %llu arrived twice", b->name, item);
        break;
    case SS_COLLECT_INVALID:
        snprintf(buf, n, "bag '%s': embedding of cell %llu %s", b->name, item, detail);
        break;
    case SS_COLLECT_UNEXPECTED:
        snprintf(buf, n, "unexpected %s message", ss_msg_type_name(h->type));
        break;
    }
}

int ss_main_cache_writer(int argc, char **argv)
{
    const char *in_ep = NULL, *ctl_ep = NULL, *ckpt = NULL, *feature = "pooled";
    int producers = 1, hwm = 1000;
    double idle_timeout = 60; /* a starved encoder (a loaded machine) can be quiet for 10 s and more */
    writer_t W = {0};
    ss_stage_args_t sa = {0};
    ss_arg_t args[] = {
        {"--in", SS_ARG_STRING, &in_ep, "EP", "embeddings (PULL, binds)", 0, 0},
        {"--control", SS_ARG_STRING, &ctl_ep, "EP", "the bag-builder's announcements (PULL, binds)", 0, 0},
        {"--dir", SS_ARG_STRING, &W.dir, "DIR", "cache folder: DIR/<slide_id>.h5", 0, 0},
        {"--checkpoint", SS_ARG_STRING, &ckpt, "CK.h5", "the encoders' checkpoint (its identity is recorded)", 0, 0},
        {"--feature", SS_ARG_STRING, &feature, "pooled|projection", "as given to the encoders (default pooled)", 0, 0},
        {"--producers", SS_ARG_INT, &producers, "N", "END messages to wait for (default 1)", 1, 1000000},
        {"--idle-timeout", SS_ARG_DOUBLE, &idle_timeout, "S", "after END, wait S quiet seconds for missing embeddings (default 60)", 0.1, 1e6},
        {"--hwm", SS_ARG_INT, &hwm, "N", "receive high-water mark (default 1000)", 1, 10000000},
        SS_STAGE_ARGS(sa),
        {0},
    };
    int rc = ss_args_parse(argc, argv,
                           "--in EP --control EP --dir DIR --checkpoint CK.h5 [options]\n\n"
                           "Writes one HDF5 embedding file per bag, renamed into place when complete.",
                           args, NULL, NULL);
    if (rc) return rc > 0 ? 0 : (ss_error_report(NULL), 2);
    if (ss_args_require("cache-writer", "--in", in_ep) ||
        ss_args_require("cache-writer", "--control", ctl_ep) ||
        ss_args_require("cache-writer", "--dir", W.dir) ||
        ss_args_require("cache-writer", "--checkpoint", ckpt)) {
        ss_error_report(NULL);
        return 2;
    }
    ss_log_set_quiet(sa.quiet);
    ss_cache_hdf5_quiet();
    if (ss_encoder_id(ckpt, feature, &W.id)) {
        ss_error_report(NULL);
        return 2;
    }
    ss_stage_t *st = ss_stage_open("cache-writer", &sa);
    ss_sock_t *in = st ? ss_sock_new(SS_PULL, in_ep, 1, hwm) : NULL;
    ss_sock_t *ctl = in ? ss_sock_new(SS_PULL, ctl_ep, 1, 100000) : NULL;
    W.st = st;
    ss_collector_config_t cfg = {
        .name = "cache-writer",
        .data_types = SS_COLLECT_TYPE(SS_MSG_EMBED),
        .producers = producers,
        .idle_timeout = idle_timeout,
        .one_part = 1,
        .need_meta = 1,
        .bag_user_size = sizeof(bagfile_t),
        .arg = &W,
        .check = check_width,
        .item = on_embed,
        .meta = on_slide,
        .complete = on_complete,
        .incomplete = on_incomplete,
        .fault_text = fault_text,
        .release = release_bag,
    };
    ss_collector_t *coll = ctl ? ss_collector_new(st, &cfg) : NULL;
    if (!coll) {
        ss_error_report("cache-writer: cannot start");
        ss_sock_destroy(&ctl);
        ss_sock_destroy(&in);
        ss_stage_destroy(&st);
        return 1;
    }
    ss_stage_set_unit(st, "embeddings", 0);
    ss_sock_t *socks[2] = {in, ctl};
    W.vec = malloc((size_t)W.id.dim * sizeof *W.vec);
    int stopped = W.vec ? ss_collector_run(coll, socks, 2) == 1 : 0;
    int complete = !stopped && W.vec;
    if (ss_collector_report(coll)) complete = 0;
    printf("cache-writer: %llu files, %llu embeddings in %s: %s\n", (unsigned long long)W.files,
           (unsigned long long)W.rows, W.dir, complete ? "complete" : "INCOMPLETE");
    ss_stage_flush_status(st, complete ? "complete" : "incomplete");
    ss_collector_destroy(&coll);
    free(W.vec);
    ss_sock_destroy(&ctl);
    ss_sock_destroy(&in);
    ss_stage_destroy(&st);
    return stopped ? 1 : (complete ? 0 : 3);
}
