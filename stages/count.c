/* count — the collecting sink: pulls a data stream and the producers' control messages,
 * checks every slide against what its producers announced, and reports what is missing.
 *   data in:    PULL --in (binds by default)
 *   control in: PULL --control (binds by default): SLIDE, COUNT, ERROR, END messages
 * Exits 0 when every announced slide is complete, 3 when the stream ended with items
 * missing (each incomplete slide is named on stderr and in --report). The collecting is the
 * library's collector (slidestream/collector.h), which never closes a slide here: completion
 * is judged once, at the end, over every slide the ledger holds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "slidestream/args.h"
#include "slidestream/collector.h"
#include "slidestream/log.h"
#include "slidestream/transport.h"

/* "<id> (<name from its SLIDE message>)", or "<id>" when none came. */
static const char *slide_label(ss_collector_t *coll, uint32_t id, char *buf, size_t bn)
{
    const ss_collector_bag_t *b = ss_collector_find(coll, id);
    if (b && b->have_meta) snprintf(buf, bn, "%u (%.127s)", id, b->name);
    else snprintf(buf, bn, "%u", id);
    return buf;
}

static int write_report(const char *path, ss_collector_t *coll, const ss_stage_counts_t *c,
                        int complete, double elapsed)
{
    const ss_tally_t *tally = ss_collector_tally(coll);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return ss_error_system("count", "cannot write report %s", tmp);
    size_t ns = ss_tally_slides(tally, NULL, 0);
    uint32_t *ids = calloc(ns ? ns : 1, sizeof *ids);
    if (!ids) {
        fclose(f);
        return ss_error("count", "out of memory");
    }
    ss_tally_slides(tally, ids, ns);
    fprintf(f, "{\n  \"complete\": %s,\n  \"items\": %llu,\n  \"rejected\": %llu,\n"
               "  \"errors\": %llu,\n  \"elapsed_s\": %.3f,\n  \"slides\": [",
            complete ? "true" : "false", (unsigned long long)c->in,
            (unsigned long long)c->rejected, (unsigned long long)c->errors, elapsed);
    for (size_t i = 0; i < ns; i++) {
        char why[512];
        ss_tally_describe(tally, ids[i], why, sizeof why);
        fprintf(f, "%s\n    {\"slide\": %u, \"name\": \"", i ? "," : "", ids[i]);
        const ss_collector_bag_t *b = ss_collector_find(coll, ids[i]);
        char nm[128] = "";
        if (b && b->have_meta) snprintf(nm, sizeof nm, "%.127s", b->name);
        for (const char *p = nm; *p; p++)
            if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
            else if ((unsigned char)*p >= 0x20) fputc(*p, f);
        fprintf(f, "\", \"items\": %llu, \"complete\": %s, \"missing\": \"%s\"}",
                (unsigned long long)ss_tally_items(tally, ids[i]),
                ss_tally_complete(tally, ids[i]) ? "true" : "false", why);
    }
    fprintf(f, "\n  ]\n}\n");
    free(ids);
    if (fclose(f)) return ss_error_system("count", "cannot write report %s", tmp);
    if (rename(tmp, path)) return ss_error_system("count", "cannot rename %s", tmp);
    return 0;
}

/* ---- the collector's callbacks (see slidestream/collector.h) ---------------------------- */

static int on_item(ss_collector_bag_t *b, const ss_msg_t *m, void *arg)
{
    (void)b, (void)m;
    ss_progress_add(*(ss_progress_t **)arg, 1);
    return 0;
}

static void fault_text(char *buf, size_t n, ss_collect_refusal_t why, const ss_collector_bag_t *b,
                       const ss_msg_header_t *h, const char *detail, void *arg)
{
    (void)b, (void)arg;
    switch (why) {
    case SS_COLLECT_DUPLICATE:
    case SS_COLLECT_LATE: /* never: count closes no slide */
        snprintf(buf, n, "slide %u: item %llu arrived twice", h->slide,
                 (unsigned long long)h->item);
        break;
    case SS_COLLECT_INVALID:
        snprintf(buf, n, "%s", detail);
        break;
    case SS_COLLECT_UNEXPECTED:
        snprintf(buf, n, "unexpected %s message on the collector", ss_msg_type_name(h->type));
        break;
    }
}

int ss_main_count(int argc, char **argv)
{
    const char *in_ep = NULL, *ctl_ep = NULL, *report = NULL;
    int parts_are_items = 0, producers = 1, hwm = 1000;
    double idle_timeout = 10.0;
    ss_stage_args_t sa = {0};
    ss_arg_t args[] = {
        {"--in", SS_ARG_STRING, &in_ep, "EP", "data stream to collect (PULL, binds)", 0, 0},
        {"--control", SS_ARG_STRING, &ctl_ep, "EP", "producers' announcements (PULL, binds)", 0,
         0},
        {"--parts-are-items", SS_ARG_FLAG, &parts_are_items, NULL,
         "each part (tile) is itself one item: a tile stream", 0, 0},
        {"--producers", SS_ARG_INT, &producers, "N", "END messages to wait for (default 1)", 1,
         1e6},
        {"--idle-timeout", SS_ARG_DOUBLE, &idle_timeout, "S",
         "after END, give up waiting for missing items after S quiet seconds (default 10)", 0.1,
         1e6},
        {"--hwm", SS_ARG_INT, &hwm, "N", "receive high-water mark (default 1000)", 1, 1e7},
        {"--report", SS_ARG_STRING, &report, "FILE.json", "write a per-slide report", 0, 0},
        SS_STAGE_ARGS(sa),
        {0},
    };
    int rc = ss_args_parse(argc, argv,
                           "--in EP --control EP [options]\n\n"
                           "Collects a stream and checks it against the producers' counts.",
                           args, NULL, NULL);
    if (rc) return rc > 0 ? 0 : (ss_error_report(NULL), 2);
    if (ss_args_require("count", "--in", in_ep) || ss_args_require("count", "--control", ctl_ep)) {
        ss_error_report(NULL);
        return 2;
    }
    ss_log_set_quiet(sa.quiet);

    ss_stage_t *st = ss_stage_open("count", &sa);
    ss_sock_t *data = st ? ss_sock_new(SS_PULL, in_ep, 1, hwm) : NULL;
    ss_sock_t *ctl = data ? ss_sock_new(SS_PULL, ctl_ep, 1, hwm) : NULL;
    ss_progress_t *prog = NULL;
    ss_collector_config_t cfg = {
        .name = "count",
        .data_types = SS_COLLECT_TYPE(SS_MSG_TILE) | SS_COLLECT_TYPE(SS_MSG_CELL) |
                      SS_COLLECT_TYPE(SS_MSG_EMBED),
        .producers = producers,
        .idle_timeout = idle_timeout,
        .parts_are_items = parts_are_items,
        .arg = &prog,
        .item = on_item,
        .fault_text = fault_text,
    };
    ss_collector_t *coll = ctl ? ss_collector_new(st, &cfg) : NULL;
    if (!coll) {
        ss_error_report("count: cannot start");
        ss_sock_destroy(&ctl);
        ss_sock_destroy(&data);
        ss_stage_destroy(&st);
        return 1;
    }
    ss_stage_set_unit(st, parts_are_items ? "tiles" : "items", 0);
    ss_stage_counts_t *c = ss_stage_counts(st);
    double start = ss_now();
    prog = sa.quiet || sa.status ? NULL : ss_progress_new("collected", 0);
    ss_sock_t *socks[2] = {data, ctl};
    int stopped = ss_collector_run(coll, socks, 2) == 1;
    ss_progress_destroy(&prog);

    /* Verdict: every slide complete and every producer finished. */
    const ss_tally_t *tally = ss_collector_tally(coll);
    int ends = ss_collector_ends(coll);
    uint64_t announced = ss_collector_announced(coll);
    size_t ns = ss_tally_slides(tally, NULL, 0);
    uint32_t *ids = calloc(ns ? ns : 1, sizeof *ids);
    int complete = ends >= producers && ids != NULL && ns >= announced;
    if (ids) ss_tally_slides(tally, ids, ns);
    uint64_t missing_slides = 0;
    for (size_t i = 0; ids && i < ns; i++) {
        char line[512], lab[160];
        if (ss_tally_complete(tally, ids[i])) {
            ss_info("slide %s: complete, %llu items", slide_label(coll, ids[i], lab, sizeof lab),
                    (unsigned long long)ss_tally_items(tally, ids[i]));
            continue;
        }
        complete = 0;
        missing_slides++;
        ss_tally_describe(tally, ids[i], line, sizeof line);
        fprintf(stderr, "slidestream count: INCOMPLETE %s (slide name: %s)\n", line,
                slide_label(coll, ids[i], lab, sizeof lab));
    }
    free(ids);
    if (ends < producers)
        fprintf(stderr, "slidestream count: INCOMPLETE: %d of %d producers finished%s\n", ends,
                producers, stopped ? " before shutdown" : "");
    else if (ns < announced)
        fprintf(stderr, "slidestream count: INCOMPLETE: producers announced %llu slides, %zu "
                        "reported\n", (unsigned long long)announced, ns);
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)missing_slides);
    ss_stage_set_note(st, "incomplete_slides", buf);
    ss_stage_flush_status(st, complete ? "complete" : "incomplete");
    if (report && write_report(report, coll, c, complete, ss_now() - start))
        ss_error_report(NULL);
    printf("collected %llu items from %zu slides: %s (%llu rejected, %llu faults)\n",
           (unsigned long long)c->in, ns, complete ? "complete" : "INCOMPLETE",
           (unsigned long long)c->rejected, (unsigned long long)c->errors);
    ss_collector_destroy(&coll);
    ss_sock_destroy(&ctl);
    ss_sock_destroy(&data);
    ss_stage_destroy(&st);
    return complete ? 0 : 3;
}
