/* cache-writer — the collector of embeddings: writes one HDF5 file per bag,
 * <dir>/<slide_id>.h5, under a temporary name renamed only when the bag is complete (every
 * cell the bag-builder announced has arrived). An incomplete bag's partial file is deleted
 * and the bag is named on stderr (exit 3); re-running the pipeline redoes it.
 *   data in:    PULL --in (binds): EMBED messages from the encoders
 *   control in: PULL --control (binds): SLIDE, COUNT, ERROR, END from the bag-builder */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "slidestream/args.h"
#include "slidestream/cache.h"
#include "slidestream/encoder_id.h"
#include "slidestream/log.h"
#include "slidestream/transport.h"

typedef struct {
    uint32_t slide;
    int have_meta, done, failed;
    char id[256], split[64];
    int label;
    double slide_mpp;
    ss_cache_writer_t *w;
    /* rows that arrived before the bag's SLIDE message (file name unknown yet) */
    ss_msg_header_t *pend_h;
    float *pend_f;
    size_t npend, cappend;
} bag_t;

typedef struct {
    const char *dir;
    ss_encoder_id_t id;
    bag_t *bags;
    size_t n, cap;
    uint64_t files, rows;
} writer_t;

static bag_t *bag_get(writer_t *W, uint32_t slide)
{
    for (size_t i = 0; i < W->n; i++)
        if (W->bags[i].slide == slide) return &W->bags[i];
    if (W->n == W->cap) {
        size_t cap = W->cap ? 2 * W->cap : 16;
        bag_t *nb = realloc(W->bags, cap * sizeof *nb);
        if (!nb) return NULL;
        W->bags = nb;
        W->cap = cap;
    }
    bag_t *b = &W->bags[W->n++];
    memset(b, 0, sizeof *b);
    b->slide = slide;
    b->label = -1;
    snprintf(b->id, sizeof b->id, "slide%u", slide);
    return b;
}

/* Append one embedding row (creating the file on the first row). */
static int add_row(writer_t *W, bag_t *b, const ss_msg_header_t *h, const float *f)
{
    if (!b->w) {
        ss_cache_meta_t m = {0};
        m.slide_id = b->id;
        m.label = b->label >= 0 ? b->label : h->label;
        m.split = b->split;
        m.patch_size = h->crop;
        m.patch_size_level0 = (int64_t)llround(h->crop * (double)h->scale);
        m.target_mpp = h->extra / 1000.0;
        m.slide_mpp = b->slide_mpp;
        m.encoder = W->id.encoder;
        m.encoder_hash = W->id.hash;
        m.feature = W->id.feature;
        m.preprocessing = W->id.preprocessing;
        m.dim = (int)h->shape[0];
        if (!(b->w = ss_cache_writer_new(W->dir, &m))) return -1;
    }
    int64_t half = (int64_t)llround(h->crop * (double)h->scale / 2);
    int64_t coords[2] = {h->x - half, h->y - half}, centre[2] = {h->x, h->y};
    uint64_t cid = h->item;
    int32_t bbox[4] = {h->aux[0], h->aux[1], h->aux[0] + h->aux[2], h->aux[1] + h->aux[3]};
    uint32_t area = h->area;
    return ss_cache_writer_add(b->w, 1, f, coords, centre, &cid, bbox, &area);
}

static int flush_pending(writer_t *W, bag_t *b)
{
    int rc = 0;
    for (size_t i = 0; i < b->npend && !rc; i++)
        rc = add_row(W, b, &b->pend_h[i], b->pend_f + i * (size_t)W->id.dim);
    free(b->pend_h);
    free(b->pend_f);
    b->pend_h = NULL;
    b->pend_f = NULL;
    b->npend = b->cappend = 0;
    return rc;
}

/* Finish a complete bag: the rename makes it visible. Empty bags still get a (0, D) file. */
static int finish_bag(writer_t *W, bag_t *b)
{
    if (!b->w) {
        ss_cache_meta_t m = {0};
        m.slide_id = b->id;
        m.label = b->label;
        m.split = b->split;
        m.slide_mpp = b->slide_mpp;
        m.patch_size = W->id.input_size;
        m.encoder = W->id.encoder;
        m.encoder_hash = W->id.hash;
        m.feature = W->id.feature;
        m.preprocessing = W->id.preprocessing;
        m.dim = W->id.dim;
        if (!(b->w = ss_cache_writer_new(W->dir, &m))) return -1;
    }
    int64_t rows = ss_cache_writer_rows(b->w);
    char path[4096];
    snprintf(path, sizeof path, "%s", ss_cache_writer_path(b->w));
    if (ss_cache_writer_finish(&b->w)) return -1;
    b->done = 1;
    W->files++;
    W->rows += (uint64_t)rows;
    ss_info("cache-writer: %s: %lld embeddings", path, (long long)rows);
    return 0;
}

int ss_main_cache_writer(int argc, char **argv)
{
    const char *in_ep = NULL, *ctl_ep = NULL, *ckpt = NULL, *feature = "pooled";
    int producers = 1, hwm = 1000;
    double idle_timeout = 10;
    writer_t W = {0};
    ss_stage_args_t sa = {0};
    ss_arg_t args[] = {
        {"--in", SS_ARG_STRING, &in_ep, "EP", "embeddings (PULL, binds)", 0, 0},
        {"--control", SS_ARG_STRING, &ctl_ep, "EP", "the bag-builder's announcements (PULL, binds)", 0, 0},
        {"--dir", SS_ARG_STRING, &W.dir, "DIR", "cache folder: DIR/<slide_id>.h5", 0, 0},
        {"--checkpoint", SS_ARG_STRING, &ckpt, "CK.h5", "the encoders' checkpoint (its identity is recorded)", 0, 0},
        {"--feature", SS_ARG_STRING, &feature, "pooled|projection", "as given to the encoders (default pooled)", 0, 0},
        {"--producers", SS_ARG_INT, &producers, "N", "END messages to wait for (default 1)", 1, 1000000},
        {"--idle-timeout", SS_ARG_DOUBLE, &idle_timeout, "S", "after END, wait S quiet seconds for missing embeddings (default 10)", 0.1, 1e6},
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
    ss_stage_t *st = ss_stage_new(sa.name ? sa.name : "cache-writer", sa.status, sa.shutdown);
    ss_sock_t *in = st ? ss_sock_new(SS_PULL, in_ep, 1, hwm) : NULL;
    ss_sock_t *ctl = in ? ss_sock_new(SS_PULL, ctl_ep, 1, 100000) : NULL;
    ss_tally_t *tally = ctl ? ss_tally_new(0) : NULL;
    if (!tally) {
        ss_error_report("cache-writer: cannot start");
        ss_sock_destroy(&ctl);
        ss_sock_destroy(&in);
        ss_stage_destroy(&st);
        return 1;
    }
    ss_stage_set_unit(st, "embeddings", 0);
    ss_stage_counts_t *cnt = ss_stage_counts(st);
    int ends = 0, stopped = 0;
    uint64_t announced = 0;
    double last_activity = ss_now();
    ss_sock_t *socks[2] = {in, ctl};
    float *vec = malloc((size_t)W.id.dim * sizeof *vec);
    while (vec) {
        for (size_t i = 0; i < W.n; i++) {
            bag_t *b = &W.bags[i];
            if (b->done || b->failed || !b->have_meta || !ss_tally_complete(tally, b->slide))
                continue;
            if (finish_bag(&W, b)) {
                ss_stage_fault(st, "bag '%s': %s", b->id, ss_error_last());
                ss_error_clear();
                b->failed = 1;
            }
        }
        if (ends >= producers) {
            size_t open = 0;
            for (size_t i = 0; i < W.n; i++) open += !W.bags[i].done && !W.bags[i].failed;
            if ((open == 0 && W.n >= announced) || ss_now() - last_activity > idle_timeout) break;
        }
        ss_msg_t m;
        int r = ss_stage_next(st, socks, 2, 200, &m, NULL);
        if (r == -2) {
            stopped = 1;
            break;
        }
        if (r != 1) continue;
        last_activity = ss_now();
        if (m.h.type == SS_MSG_END) {
            ends++;
            announced += m.h.item;
        } else if (m.h.type == SS_MSG_ERROR) {
            ss_stage_fault(st, "upstream: %.*s", (int)(m.size > 400 ? 400 : m.size), (const char *)m.data);
        } else {
            bag_t *b = bag_get(&W, m.h.slide);
            if (!b) {
                ss_msg_release(&m);
                break;
            }
            if (m.h.type == SS_MSG_EMBED) {
                int d = (int)m.h.shape[0] != W.id.dim ? 2
                        : b->done                      ? 3
                                                       : ss_tally_item(tally, m.h.slide, 0, m.h.item);
                if (d == 2) {
                    /* A mis-configured encoder: the bag must not be finished without it. */
                    ss_stage_fault(st, "bag '%s': embedding of width %u, the checkpoint's is %d "
                                   "(encoders and cache-writer must use the same checkpoint "
                                   "and --feature)", b->id, m.h.shape[0], W.id.dim);
                    ss_cache_writer_abort(&b->w);
                    b->failed = 1;
                } else if (d == 3) {
                    ss_stage_fault(st, "bag '%s': embedding of cell %llu arrived after the bag "
                                   "was written", b->id, (unsigned long long)m.h.item);
                } else if (d) {
                    ss_stage_fault(st, "bag '%s': embedding of cell %llu %s", b->id,
                                   (unsigned long long)m.h.item,
                                   d == 1 ? "arrived twice" : ss_error_last());
                    ss_error_clear();
                } else if (!b->failed) {
                    memcpy(vec, m.data, (size_t)W.id.dim * sizeof *vec);
                    cnt->in++;
                    if (b->have_meta) {
                        if (add_row(&W, b, &m.h, vec)) {
                            ss_stage_fault(st, "bag '%s': %s", b->id, ss_error_last());
                            ss_error_clear();
                            ss_cache_writer_abort(&b->w);
                            b->failed = 1;
                        }
                    } else {
                        if (b->npend == b->cappend) {
                            size_t nc = b->cappend ? 2 * b->cappend : 64;
                            ss_msg_header_t *nh = realloc(b->pend_h, nc * sizeof *nh);
                            if (nh) b->pend_h = nh;
                            float *nf = realloc(b->pend_f, nc * (size_t)W.id.dim * sizeof *nf);
                            if (nf) b->pend_f = nf;
                            if (!nh || !nf) {
                                ss_stage_fault(st, "out of memory");
                                ss_msg_release(&m);
                                break;
                            }
                            b->cappend = nc;
                        }
                        b->pend_h[b->npend] = m.h;
                        memcpy(b->pend_f + b->npend * (size_t)W.id.dim, vec, (size_t)W.id.dim * sizeof *vec);
                        b->npend++;
                    }
                }
            } else if (m.h.type == SS_MSG_SLIDE) {
                char v[64];
                ss_text_get(m.data, m.size, "id", b->id, sizeof b->id);
                ss_text_get(m.data, m.size, "split", b->split, sizeof b->split);
                if (!ss_text_get(m.data, m.size, "label", v, sizeof v)) b->label = atoi(v);
                if (!ss_text_get(m.data, m.size, "mpp", v, sizeof v)) b->slide_mpp = atof(v);
                b->have_meta = 1;
                ss_cache_discard_partial(W.dir, b->id);
                if (flush_pending(&W, b)) {
                    ss_stage_fault(st, "bag '%s': %s", b->id, ss_error_last());
                    ss_error_clear();
                    ss_cache_writer_abort(&b->w);
                    b->failed = 1;
                }
            } else if (m.h.type == SS_MSG_COUNT) {
                if (ss_tally_count(tally, &m.h)) {
                    ss_stage_fault(st, "%s", ss_error_last());
                    ss_error_clear();
                }
            } else {
                cnt->rejected++;
                ss_stage_fault(st, "unexpected %s message", ss_msg_type_name(m.h.type));
            }
        }
        ss_msg_release(&m);
    }
    /* Whatever is still open is incomplete: its temporary file goes, nothing looks finished. */
    int complete = !stopped && ends >= producers && vec;
    for (size_t i = 0; i < W.n; i++) {
        bag_t *b = &W.bags[i];
        if (!b->done) {
            char why[512] = "";
            ss_tally_describe(tally, b->slide, why, sizeof why);
            fprintf(stderr, "slidestream cache-writer: INCOMPLETE bag '%s': %s; no cache file "
                            "written (re-run to redo it)\n", b->id, b->failed ? "write failed" : why);
            complete = 0;
        }
        ss_cache_writer_abort(&b->w);
        free(b->pend_h);
        free(b->pend_f);
    }
    if (ends < producers)
        fprintf(stderr, "slidestream cache-writer: INCOMPLETE: %d of %d producers finished\n", ends, producers);
    printf("cache-writer: %llu files, %llu embeddings in %s: %s\n", (unsigned long long)W.files,
           (unsigned long long)W.rows, W.dir, complete ? "complete" : "INCOMPLETE");
    ss_stage_flush_status(st, complete ? "complete" : "incomplete");
    free(vec);
    free(W.bags);
    ss_tally_destroy(&tally);
    ss_sock_destroy(&ctl);
    ss_sock_destroy(&in);
    ss_stage_destroy(&st);
    return stopped ? 1 : (complete ? 0 : 3);
}
