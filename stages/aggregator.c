/* aggregator — the live MIL stage: collects each bag's embeddings, and when a bag is complete
 * (every cell its producer announced has arrived) runs the aggregator on it and writes its
 * prediction and every cell's attention; an incomplete bag is reported, never predicted.
 *   data in:    PULL --in (binds by default): EMBED messages (encoders, or replay)
 *   control in: PULL --control (binds by default): SLIDE, COUNT, ERROR, END from the producer
 * Writes DIR/bags.csv, DIR/instances.csv and, when bags carry labels, DIR/metrics.json (the
 * files of `mil predict`, mil_predict.h). Exit 0 when every announced bag was predicted, 3 when
 * some were incomplete. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "slidestream/args.h"
#include "slidestream/collector.h"
#include "slidestream/error.h"
#include "slidestream/log.h"
#include "slidestream/mil.h"
#include "slidestream/mil_predict.h"
#include "slidestream/nn_layers.h"
#include "slidestream/transport.h"

/* One bag's rows as they arrive (the collector's per-bag user block). */
typedef struct {
    float *x;           /* (cap, dim) */
    int64_t *centres;   /* (cap, 2) */
    uint64_t *cell_ids; /* (cap) */
    size_t n, cap;
} rows_t;

typedef struct {
    ss_stage_t *st;
    ss_mil_t *m;
    ss_mil_writer_t *w;
    float *att;
    size_t att_cap;
    uint64_t predicted;
} agg_t;

static void rows_free(rows_t *r)
{
    free(r->x), free(r->centres), free(r->cell_ids);
    memset(r, 0, sizeof *r);
}

static int agg_check(ss_collector_bag_t *bag, const ss_msg_t *m, void *arg)
{
    agg_t *a = arg;
    if ((int)m->h.shape[0] == a->m->cfg.dim && m->h.dtype == SS_DT_F32) return 0;
    /* a mis-configured encoder: this bag must not be predicted without those cells */
    ss_stage_fault(a->st, "bag '%s': embedding of width %u, the model takes %d (the encoders' "
                          "checkpoint and --feature must be those the model was trained on)",
                   bag->name, m->h.shape[0], a->m->cfg.dim);
    ss_collector_fail(bag, "embeddings of another width");
    return 1;
}

static int agg_item(ss_collector_bag_t *bag, const ss_msg_t *m, void *arg)
{
    agg_t *a = arg;
    rows_t *r = bag->user;
    int dim = a->m->cfg.dim;
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 256;
        float *x = realloc(r->x, cap * dim * sizeof *x);
        if (x) r->x = x;
        int64_t *c = x ? realloc(r->centres, cap * 2 * sizeof *c) : NULL;
        if (c) r->centres = c;
        uint64_t *id = c ? realloc(r->cell_ids, cap * sizeof *id) : NULL;
        if (id) r->cell_ids = id;
        if (!id) return ss_error("aggregator", "out of memory for bag '%s'", bag->name);
        r->cap = cap;
    }
    memcpy(r->x + r->n * dim, m->data, (size_t)dim * sizeof(float)); /* payload may be unaligned */
    r->centres[2 * r->n] = m->h.x;
    r->centres[2 * r->n + 1] = m->h.y;
    r->cell_ids[r->n] = m->h.item;
    r->n++;
    return 0;
}

static int agg_complete(ss_collector_bag_t *bag, void *arg)
{
    agg_t *a = arg;
    rows_t *r = bag->user;
    if (r->n == 0) { /* nothing to attend to: reported, not predicted */
        ss_stage_fault(a->st, "bag '%s' has no cells: no prediction", bag->name);
        ss_collector_fail(bag, "no cells");
        return 0;
    }
    if (r->n > a->att_cap) {
        float *p = realloc(a->att, r->n * sizeof *p);
        if (!p) return ss_error("aggregator", "out of memory for bag '%s'", bag->name);
        a->att = p;
        a->att_cap = r->n;
    }
    ss_mil_bag_t b = {.label = bag->label, .n = (int64_t)r->n, .x = r->x, .centres = r->centres,
                      .cell_ids = r->cell_ids};
    snprintf(b.id, sizeof b.id, "%s", bag->name);
    snprintf(b.split, sizeof b.split, "%s", bag->split);
    float logits[2];
    if (ss_mil_forward(a->m, b.x, (int)b.n, 0, logits, a->att) ||
        !ss_mil_writer_bag(a->w, &b, logits, a->att))
        return ss_error("aggregator", "bag '%s'", bag->name);
    a->predicted++;
    ss_info("aggregator: bag '%s': %zu cells, logits %.3f %.3f", bag->name, r->n, logits[0],
            logits[1]);
    rows_free(r);
    return 0;
}

static void agg_release(ss_collector_bag_t *bag, void *arg)
{
    rows_free(bag->user);
}

int ss_main_aggregator(int argc, char **argv)
{
    const char *model = NULL, *in_ep = NULL, *ctl_ep = NULL, *out = NULL, *wit = NULL;
    int producers = 1, hwm = 1000, threads = 0;
    int64_t top_k = 400;
    double idle = 60;
    ss_stage_args_t sa = {0};
    ss_arg_t args[] = {
        {"--model", SS_ARG_STRING, &model, "M.h5", "aggregator checkpoint (`mil train`)", 0, 0},
        {"--in", SS_ARG_STRING, &in_ep, "EP", "embeddings (PULL, binds)", 0, 0},
        {"--control", SS_ARG_STRING, &ctl_ep, "EP", "the producer's announcements (PULL, binds)", 0, 0},
        {"--out", SS_ARG_STRING, &out, "DIR", "bags.csv, instances.csv, metrics.json", 0, 0},
        {"--top-k", SS_ARG_I64, &top_k, "K", "K of Recall@K (default 400)", 1, 1e12},
        {"--witnesses", SS_ARG_STRING, &wit, "CSV", "the cells' witness labels (bag_cells.csv): Recall@K", 0, 0},
        {"--producers", SS_ARG_INT, &producers, "N", "END messages to wait for (default 1)", 1, 1000000},
        {"--idle-timeout", SS_ARG_DOUBLE, &idle, "S", "after END, wait S quiet seconds for missing embeddings (default 60)", 0.1, 1e6},
        {"--hwm", SS_ARG_INT, &hwm, "N", "receive high-water mark (default 1000)", 1, 10000000},
        {"--threads", SS_ARG_INT, &threads, "N", "compute threads (default: all cores)", 0, 1024},
        SS_STAGE_ARGS(sa),
        {0},
    };
    int rc = ss_args_parse(argc, argv,
                           "--model M.h5 --in EP --control EP --out DIR [options]\n\n"
                           "Predicts each bag when its embeddings are complete; writes "
                           "bags.csv and instances.csv (attention toward class 1, ranks).",
                           args, NULL, NULL);
    if (rc) return rc > 0 ? 0 : (ss_error_report(NULL), 2);
    if (ss_args_require("aggregator", "--model", model) ||
        ss_args_require("aggregator", "--in", in_ep) ||
        ss_args_require("aggregator", "--control", ctl_ep) ||
        ss_args_require("aggregator", "--out", out)) {
        ss_error_report(NULL);
        return 2;
    }
    ss_log_set_quiet(sa.quiet);
    if (threads > 0) ss_nn_set_threads(threads);
    agg_t a = {0};
    ss_mil_witnesses_t *w = NULL;
    if (!(a.m = ss_mil_load(model)) || (wit && !(w = ss_mil_witnesses_load(wit))) ||
        !(a.w = ss_mil_writer_new(out, top_k, w))) {
        ss_error_report("aggregator: cannot start");
        ss_mil_destroy(&a.m);
        ss_mil_witnesses_free(&w);
        return 2;
    }
    a.st = ss_stage_open("aggregator", &sa);
    ss_sock_t *in = a.st ? ss_sock_new(SS_PULL, in_ep, 1, hwm) : NULL;
    ss_sock_t *ctl = in ? ss_sock_new(SS_PULL, ctl_ep, 1, 100000) : NULL;
    ss_collector_config_t cc = {.name = "aggregator", .data_types = SS_COLLECT_TYPE(SS_MSG_EMBED),
                                .producers = producers, .idle_timeout = idle, .one_part = 1,
                                .need_meta = 1, .bag_user_size = sizeof(rows_t), .arg = &a,
                                .check = agg_check, .item = agg_item, .complete = agg_complete,
                                .release = agg_release};
    ss_collector_t *col = ctl ? ss_collector_new(a.st, &cc) : NULL;
    int code = 1;
    if (!col) {
        ss_error_report("aggregator: cannot start");
        goto done;
    }
    ss_stage_set_unit(a.st, "embeddings", 0);
    ss_info("aggregator: %s model %s on %d-wide embeddings -> %s", ss_mil_arch_name(a.m->cfg.arch),
            model, a.m->cfg.dim, out);
    int r = ss_collector_run(col, (ss_sock_t *[]){in, ctl}, 2);
    if (r < 0) ss_error_report("aggregator failed");
    int incomplete = ss_collector_report(col);
    if (ss_mil_writer_finish(&a.w, sa.quiet)) {
        ss_error_report(NULL);
        r = -1;
    }
    printf("aggregator: %llu bags predicted -> %s/bags.csv, %s/instances.csv%s\n",
           (unsigned long long)a.predicted, out, out, incomplete ? " (some bags INCOMPLETE)" : "");
    code = r ? 1 : incomplete ? 3 : 0;
done:
    ss_stage_flush_status(a.st, code ? "incomplete" : "complete");
    ss_mil_writer_finish(&a.w, 1);
    ss_collector_destroy(&col);
    ss_sock_destroy(&ctl);
    ss_sock_destroy(&in);
    ss_stage_destroy(&a.st);
    ss_mil_witnesses_free(&w);
    ss_mil_destroy(&a.m);
    free(a.att);
    return code;
}
