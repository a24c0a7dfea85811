/* transport.collector — the collector over real ZeroMQ sockets (inproc, one process): a
 * complete bag, bags that lack items or counts (and the report naming what they lack),
 * duplicates and late items refused, data before the SLIDE message, two producers, a
 * malformed and an unexpected message counted as rejected, a refused item failing its bag,
 * a sink that never closes bags, and shutdown. Every message of a case goes through the
 * sockets before the collector runs, except where a producer thread sends later. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "slidestream/collector.h"
#include "slidestream/error.h"
#include "slidestream/log.h"

#include "../check.h"

/* ---- producers ------------------------------------------------------------------------- */

static ss_sock_t *push(const char *ep)
{
    ss_sock_t *s = ss_sock_new(SS_PUSH, ep, 0, 1000);
    CHECK(s != NULL, "connect %s: %s", ep, ss_error_buffer());
    return s;
}

static void send_msg(ss_sock_t *s, ss_msg_header_t *h, const void *payload)
{
    static volatile int never;
    CHECK(ss_sock_send(s, h, payload, &never) == 0, "send %s: %s", ss_msg_type_name(h->type),
          ss_error_buffer());
}

/* One CELL (or another data type) of slide/part/item: a 2x2 RGB crop. */
static void send_data(ss_sock_t *s, ss_msg_type_t type, uint32_t slide, uint32_t part,
                      uint64_t item, int label)
{
    static const uint8_t px[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    ss_msg_header_t h = ss_msg_header_init(type);
    if (type == SS_MSG_EMBED) {
        float v[3] = {1, 2, 3};
        uint32_t d = 3;
        ss_msg_header_set_payload(&h, SS_DT_F32, 1, &d);
        h.slide = slide, h.part = part, h.item = item, h.label = label;
        send_msg(s, &h, v);
        return;
    }
    uint32_t dims[3] = {2, 2, 3};
    ss_msg_header_set_payload(&h, SS_DT_U8, 3, dims);
    h.slide = slide, h.part = part, h.item = item, h.label = label;
    h.extra = 250;                                    /* nm per pixel */
    if (type == SS_MSG_TILE) h.aux[2] = h.aux[3] = 2; /* the core: the whole tile */
    send_msg(s, &h, px);
}

static void send_cell(ss_sock_t *s, uint32_t slide, uint32_t part, uint64_t item)
{
    send_data(s, SS_MSG_CELL, slide, part, item, -1);
}

static void send_slide(ss_sock_t *s, uint32_t slide, const char *text)
{
    ss_msg_header_t h = ss_msg_header_init(SS_MSG_SLIDE);
    h.slide = slide;
    static volatile int never;
    CHECK(ss_sock_send_text(s, &h, text, &never) == 0, "send SLIDE: %s", ss_error_buffer());
}

static void send_parts(ss_sock_t *s, uint32_t slide, uint64_t nparts)
{
    ss_msg_header_t h = ss_msg_header_init(SS_MSG_COUNT);
    h.slide = slide, h.flags = SS_COUNT_PARTS, h.item = nparts;
    send_msg(s, &h, NULL);
}

static void send_items(ss_sock_t *s, uint32_t slide, uint32_t part, uint64_t nitems)
{
    ss_msg_header_t h = ss_msg_header_init(SS_MSG_COUNT);
    h.slide = slide, h.part = part, h.flags = SS_COUNT_ITEMS, h.item = nitems;
    send_msg(s, &h, NULL);
}

static void send_error(ss_sock_t *s, uint32_t slide, const char *text)
{
    ss_msg_header_t h = ss_msg_header_init(SS_MSG_ERROR);
    h.slide = slide;
    static volatile int never;
    CHECK(ss_sock_send_text(s, &h, text, &never) == 0, "send ERROR: %s", ss_error_buffer());
}

static void send_end(ss_sock_t *s, uint64_t bags)
{
    ss_msg_header_t h = ss_msg_header_init(SS_MSG_END);
    h.item = bags;
    send_msg(s, &h, NULL);
}

/* ---- what the callbacks saw ------------------------------------------------------------ */

typedef struct {
    char events[1024]; /* "I<slide>.<item> M<slide> C<slide> " in call order */
    int completes, items;
    char lacks[8][512]; /* incomplete: per bag, in report order */
    char lacks_bag[8][256];
    int nlacks;
    int refusals[4]; /* by ss_collect_refusal_t */
    int complete_label;
    char complete_name[256];
    int refuse_item; /* check: refuse (and fail the bag) for this item id + 1 */
} seen_t;

static void event(seen_t *s, char kind, unsigned slide, const uint64_t *item)
{
    size_t len = strlen(s->events);
    if (item)
        snprintf(s->events + len, sizeof s->events - len, "%c%u.%llu ", kind, slide,
                 (unsigned long long)*item);
    else
        snprintf(s->events + len, sizeof s->events - len, "%c%u ", kind, slide);
}

static int on_item(ss_collector_bag_t *b, const ss_msg_t *m, void *arg)
{
    seen_t *s = arg;
    s->items++;
    event(s, 'I', b->slide, &m->h.item);
    return 0;
}

static int on_meta(ss_collector_bag_t *b, const ss_msg_t *m, void *arg)
{
    (void)m;
    event(arg, 'M', b->slide, NULL);
    return 0;
}

static int on_complete(ss_collector_bag_t *b, void *arg)
{
    seen_t *s = arg;
    s->completes++;
    s->complete_label = b->label;
    snprintf(s->complete_name, sizeof s->complete_name, "%s", b->name);
    event(s, 'C', b->slide, NULL);
    return 0;
}

static int on_incomplete(ss_collector_bag_t *b, const char *lacks, void *arg)
{
    seen_t *s = arg;
    if (s->nlacks < 8) {
        snprintf(s->lacks[s->nlacks], sizeof s->lacks[0], "%s", lacks);
        snprintf(s->lacks_bag[s->nlacks], sizeof s->lacks_bag[0], "%s", b->name);
        s->nlacks++;
    }
    return 0;
}

static int on_check(ss_collector_bag_t *b, const ss_msg_t *m, void *arg)
{
    seen_t *s = arg;
    if (!s->refuse_item || m->h.item + 1 != (uint64_t)s->refuse_item) return 0;
    ss_collector_fail(b, "refused by the stage");
    return 1;
}

static void on_fault_text(char *buf, size_t n, ss_collect_refusal_t why,
                          const ss_collector_bag_t *b, const ss_msg_header_t *h, const char *detail,
                          void *arg)
{
    seen_t *s = arg;
    s->refusals[why]++;
    snprintf(buf, n, "test refusal %d: bag %s item %llu %s", (int)why, b ? b->name : "-",
             (unsigned long long)h->item, detail ? detail : "");
}

/* A collector of CELLs with every callback recording into *s. */
static ss_collector_config_t config(seen_t *s, double idle)
{
    ss_collector_config_t cfg = {
        .name = "collector-test",
        .data_types = SS_COLLECT_TYPE(SS_MSG_CELL),
        .producers = 1,
        .idle_timeout = idle,
        .arg = s,
        .item = on_item,
        .meta = on_meta,
        .complete = on_complete,
        .incomplete = on_incomplete,
        .check = on_check,
        .fault_text = on_fault_text,
    };
    return cfg;
}

/* The collector's side: PULL sockets bound at fresh inproc endpoints. */
typedef struct {
    char data_ep[64], ctl_ep[64];
    ss_sock_t *socks[2];
} sink_t;

static void sink_open(sink_t *k, const char *name)
{
    snprintf(k->data_ep, sizeof k->data_ep, "inproc://%s-data", name);
    snprintf(k->ctl_ep, sizeof k->ctl_ep, "inproc://%s-ctl", name);
    char ep[80];
    snprintf(ep, sizeof ep, "@%s", k->data_ep);
    k->socks[0] = ss_sock_new(SS_PULL, ep, 1, 1000);
    snprintf(ep, sizeof ep, "@%s", k->ctl_ep);
    k->socks[1] = ss_sock_new(SS_PULL, ep, 1, 1000);
    CHECK(k->socks[0] && k->socks[1], "bind %s: %s", name, ss_error_buffer());
}

static void sink_close(sink_t *k)
{
    ss_sock_destroy(&k->socks[0]);
    ss_sock_destroy(&k->socks[1]);
}

static ss_sock_t *producer(const sink_t *k, int ctl)
{
    char ep[80];
    snprintf(ep, sizeof ep, ">%s", ctl ? k->ctl_ep : k->data_ep);
    return push(ep);
}

/* Run to the end; *secs = how long it took. */
static int run(ss_collector_t *c, sink_t *k, double *secs)
{
    double t0 = ss_now();
    int r = ss_collector_run(c, k->socks, 2);
    *secs = ss_now() - t0;
    return r;
}

/* ---- cases ------------------------------------------------------------------------------ */

/* A bag whose SLIDE, counts and cells all arrive: complete once, metadata read, no faults;
 * the run ends at the last END, not at the idle timeout. */
static void complete_bag(ss_stage_t *st)
{
    sink_t k;
    sink_open(&k, "complete");
    ss_sock_t *p = producer(&k, 1); /* one socket: arrival order is send order */
    send_slide(p, 3, "id=alpha\npath=/slides/alpha.tiff\nlabel=1\nsplit=train\nmpp=0.25\n");
    send_parts(p, 3, 2);
    send_cell(p, 3, 0, 0);
    send_cell(p, 3, 0, 1);
    send_items(p, 3, 0, 2);
    send_cell(p, 3, 1, 65536);
    send_items(p, 3, 1, 1);
    send_end(p, 1);
    seen_t s = {0};
    ss_collector_config_t cfg = config(&s, 5);
    ss_collector_t *c = ss_collector_new(st, &cfg);
    uint64_t in0 = ss_stage_counts(st)->in, err0 = ss_stage_counts(st)->errors;
    double secs;
    CHECK(run(c, &k, &secs) == 0, "run");
    CHECK(secs < 3, "the run waited %.1f s: it should end at the last END", secs);
    CHECK(!strcmp(s.events, "M3 I3.0 I3.1 I3.65536 C3 "), "events '%s'", s.events);
    CHECK(ss_collector_nbags(c) == 1, "%zu bags", ss_collector_nbags(c));
    ss_collector_bag_t *b = ss_collector_find(c, 3);
    CHECK(b && b->done && !b->failed && b->have_meta && b->items == 3, "bag state");
    CHECK(b && !strcmp(b->name, "alpha") && !strcmp(b->split, "train") && b->label == 1 &&
              !strcmp(b->path, "/slides/alpha.tiff") && b->mpp == 0.25,
          "metadata: %s %s %d %s %g", b ? b->name : "", b ? b->split : "", b ? b->label : -9,
          b ? b->path : "", b ? b->mpp : 0);
    CHECK(ss_stage_counts(st)->in - in0 == 3, "in %llu",
          (unsigned long long)(ss_stage_counts(st)->in - in0));
    CHECK(ss_stage_counts(st)->errors == err0, "faults on a clean stream");
    CHECK(ss_collector_ends(c) == 1 && ss_collector_announced(c) == 1, "ends");
    CHECK(ss_collector_report(c) == 0 && s.nlacks == 0, "a complete collection reported");
    ss_collector_destroy(&c);
    CHECK(c == NULL, "destroy clears the pointer");
    ss_sock_destroy(&p);
    sink_close(&k);
}

/* One bag short of a cell and of a part's count, one announced by SLIDE only, one complete:
 * the run ends at the idle timeout and the report names the two unfinished bags, in arrival
 * order, with what each lacks. */
static void incomplete_bags(ss_stage_t *st)
{
    sink_t k;
    sink_open(&k, "incomplete");
    ss_sock_t *d = producer(&k, 0), *p = producer(&k, 1);
    send_slide(p, 4, "id=short\nlabel=0\n");
    send_parts(p, 4, 2);
    send_items(p, 4, 0, 2);
    send_cell(d, 4, 0, 0); /* cell 1 of part 0 never comes, part 1 never reports */
    send_slide(p, 5, "id=silent\n");
    send_slide(p, 6, "id=fine\n");
    send_parts(p, 6, 1);
    send_items(p, 6, 0, 0); /* an empty bag is complete */
    send_end(p, 3);
    seen_t s = {0};
    ss_collector_config_t cfg = config(&s, 0.3);
    ss_collector_t *c = ss_collector_new(st, &cfg);
    double secs;
    CHECK(run(c, &k, &secs) == 0, "run");
    CHECK(secs >= 0.3, "ended after %.2f s, before the idle timeout", secs);
    CHECK(s.completes == 1 && !strcmp(s.complete_name, "fine"), "completes %d (%s)", s.completes,
          s.complete_name);
    CHECK(ss_collector_report(c) == 1, "an incomplete collection reported complete");
    CHECK(s.nlacks == 2, "%d bags named", s.nlacks);
    CHECK(!strcmp(s.lacks_bag[0], "short") && strstr(s.lacks[0], "1 of 2 parts never reported") &&
              strstr(s.lacks[0], "1 short of items") &&
              strstr(s.lacks[0], "1 items arrived of 2 announced"),
          "bag %s lacks '%s'", s.lacks_bag[0], s.lacks[0]);
    CHECK(!strcmp(s.lacks_bag[1], "silent") && strstr(s.lacks[1], "nothing arrived"),
          "bag %s lacks '%s'", s.lacks_bag[1], s.lacks[1]);
    char why[512];
    ss_collector_describe(c, ss_collector_find(c, 6), why, sizeof why);
    CHECK(why[0] == '\0', "a complete bag described as lacking '%s'", why);
    ss_collector_destroy(&c);

    /* The default report (no incomplete callback, lines on stderr) says the same; with two
     * producers both ENDs are needed. */
    ss_sock_t *p2 = producer(&k, 1);
    send_parts(p2, 9, 1);
    send_end(p2, 1);
    send_end(p2, 0);
    cfg.incomplete = NULL;
    cfg.producers = 2;
    c = ss_collector_new(st, &cfg);
    CHECK(run(c, &k, &secs) == 0, "run");
    CHECK(ss_collector_ends(c) == 2 && ss_collector_report(c) == 1,
          "default report: part count never met");
    ss_collector_destroy(&c);
    ss_sock_destroy(&p2);

    /* Before any END, the collection is incomplete even with no bag at all. */
    c = ss_collector_new(st, &cfg);
    CHECK(ss_collector_report(c) == 1, "producers that never ended not reported");
    ss_collector_destroy(&c);
    ss_sock_destroy(&d);
    ss_sock_destroy(&p);
    sink_close(&k);
}

/* The same cell twice is refused (counted once); a cell after its bag was done is refused
 * as late; a ledger contradiction (a part beyond the announced parts) is refused as invalid.
 * Each refusal is one fault. */
static void refusals(ss_stage_t *st)
{
    sink_t k;
    sink_open(&k, "refusals");
    ss_sock_t *p = producer(&k, 1);
    send_parts(p, 7, 1);
    send_cell(p, 7, 0, 70);
    send_cell(p, 7, 0, 70);
    send_cell(p, 7, 3, 71); /* part 3 of a 1-part slide */
    send_items(p, 7, 0, 1);
    send_cell(p, 7, 0, 72); /* after the bag was done */
    send_end(p, 1);
    seen_t s = {0};
    ss_collector_config_t cfg = config(&s, 5);
    ss_collector_t *c = ss_collector_new(st, &cfg);
    uint64_t err0 = ss_stage_counts(st)->errors;
    double secs;
    CHECK(run(c, &k, &secs) == 0, "run");
    CHECK(s.items == 1 && s.completes == 1, "items %d completes %d", s.items, s.completes);
    CHECK(s.refusals[SS_COLLECT_DUPLICATE] == 1 && s.refusals[SS_COLLECT_LATE] == 1 &&
              s.refusals[SS_COLLECT_INVALID] == 1,
          "refusals dup %d late %d invalid %d", s.refusals[SS_COLLECT_DUPLICATE],
          s.refusals[SS_COLLECT_LATE], s.refusals[SS_COLLECT_INVALID]);
    CHECK(ss_stage_counts(st)->errors - err0 == 3, "faults %llu",
          (unsigned long long)(ss_stage_counts(st)->errors - err0));
    ss_collector_bag_t *b = ss_collector_find(c, 7);
    CHECK(b && b->done && b->items == 1, "bag state");
    CHECK(ss_error_buffer()[0] == '\0', "a refusal left the error buffer set: %s",
          ss_error_buffer());
    ss_collector_destroy(&c);
    ss_sock_destroy(&p);
    sink_close(&k);
}

/* Cells before their bag's SLIDE message: with need_meta the bag waits for it even though
 * its counts are met; the SLIDE's label wins over the items' header label. Without
 * need_meta a bag completes on its counts alone, labelled by its first cell. */
static void data_before_slide(ss_stage_t *st)
{
    sink_t k;
    sink_open(&k, "early");
    ss_sock_t *p = producer(&k, 1);
    send_data(p, SS_MSG_CELL, 8, 0, 0, 5);
    send_data(p, SS_MSG_CELL, 8, 0, 1, 5);
    send_parts(p, 8, 1);
    send_items(p, 8, 0, 2);
    send_slide(p, 8, "id=beta\nlabel=2\nsplit=test\n");
    send_end(p, 1);
    seen_t s = {0};
    ss_collector_config_t cfg = config(&s, 5);
    cfg.need_meta = 1;
    ss_collector_t *c = ss_collector_new(st, &cfg);
    double secs;
    CHECK(run(c, &k, &secs) == 0 && secs < 3, "run (%.1f s)", secs);
    CHECK(!strcmp(s.events, "I8.0 I8.1 M8 C8 "), "events '%s'", s.events);
    CHECK(!strcmp(s.complete_name, "beta") && s.complete_label == 2, "completed as %s label %d",
          s.complete_name, s.complete_label);
    ss_collector_destroy(&c);

    seen_t s2 = {0};
    cfg = config(&s2, 5);
    send_data(p, SS_MSG_CELL, 1, 0, 0, 4);
    send_parts(p, 1, 1);
    send_items(p, 1, 0, 1);
    send_end(p, 1);
    c = ss_collector_new(st, &cfg);
    CHECK(run(c, &k, &secs) == 0, "run");
    CHECK(!strcmp(s2.events, "I1.0 C1 "), "events '%s'", s2.events);
    CHECK(s2.complete_label == 4 && !strcmp(s2.complete_name, "slide1"), "completed as %s label %d",
          s2.complete_name, s2.complete_label);
    ss_collector_destroy(&c);
    ss_sock_destroy(&p);
    sink_close(&k);
}

/* Two producers, each with its own sockets; the second sends only after a pause: the run
 * must wait for its END and collect both bags. */
typedef struct {
    ss_sock_t *d, *p;
} late_producer_t;

static void *second_producer(void *arg)
{
    late_producer_t *lp = arg;
    struct timespec ts = {0, 400 * 1000 * 1000};
    nanosleep(&ts, NULL);
    send_slide(lp->p, 21, "id=from-b\n");
    send_parts(lp->p, 21, 1);
    send_cell(lp->d, 21, 0, 5);
    send_items(lp->p, 21, 0, 1);
    send_end(lp->p, 1);
    return NULL;
}

static void two_producers(ss_stage_t *st)
{
    sink_t k;
    sink_open(&k, "two");
    ss_sock_t *ad = producer(&k, 0), *ap = producer(&k, 1);
    late_producer_t b = {producer(&k, 0), producer(&k, 1)};
    send_slide(ap, 20, "id=from-a\n");
    send_parts(ap, 20, 1);
    send_cell(ad, 20, 0, 1);
    send_cell(ad, 20, 0, 2);
    send_items(ap, 20, 0, 2);
    send_end(ap, 1);
    seen_t s = {0};
    ss_collector_config_t cfg = config(&s, 5);
    cfg.producers = 2;
    ss_collector_t *c = ss_collector_new(st, &cfg);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, second_producer, &b) == 0, "thread");
    double secs;
    CHECK(run(c, &k, &secs) == 0, "run");
    pthread_join(th, NULL);
    CHECK(secs >= 0.35 && secs < 4,
          "ended after %.2f s: before the second END or at the idle "
          "timeout",
          secs);
    CHECK(s.completes == 2 && ss_collector_ends(c) == 2 && ss_collector_announced(c) == 2,
          "completes %d ends %d", s.completes, ss_collector_ends(c));
    ss_collector_bag_t *b0 = ss_collector_bag(c, 0), *b1 = ss_collector_bag(c, 1);
    CHECK(b0 && b1 && !strcmp(b0->name, "from-a") && !strcmp(b1->name, "from-b") && b0->done &&
              b1->done && ss_collector_bag(c, 2) == NULL,
          "bags in arrival order");
    CHECK(ss_collector_report(c) == 0, "two producers reported incomplete");
    ss_collector_destroy(&c);
    ss_sock_destroy(&b.d);
    ss_sock_destroy(&b.p);
    ss_sock_destroy(&ad);
    ss_sock_destroy(&ap);
    sink_close(&k);
}

/* A frame that is not a message and a message type the collector does not take are both
 * rejected (counted, reported); the second still makes its slide's bag, left incomplete. An
 * upstream ERROR is a fault counted on its bag, and makes no bag for a slide that has none. */
static void rejected(ss_stage_t *st)
{
    sink_t k;
    sink_open(&k, "rejected");
    ss_sock_t *d = producer(&k, 0), *p = producer(&k, 1);
    CHECK(zmq_send(ss_sock_handle(d), "not a message", 13, 0) == 13, "raw send");
    send_data(d, SS_MSG_TILE, 40, 0, 0, -1);
    send_slide(p, 30, "id=gamma\n");
    send_error(p, 30, "slide 'gamma': tile 4 skipped: unreadable");
    send_error(p, 31, "slide 'delta' skipped: cannot open");
    send_parts(p, 30, 1);
    send_items(p, 30, 0, 0);
    send_end(p, 1);
    seen_t s = {0};
    ss_collector_config_t cfg = config(&s, 0.3);
    cfg.fault_text = NULL; /* the default wording */
    ss_collector_t *c = ss_collector_new(st, &cfg);
    uint64_t rej0 = ss_stage_counts(st)->rejected, err0 = ss_stage_counts(st)->errors;
    double secs;
    CHECK(run(c, &k, &secs) == 0, "run");
    CHECK(ss_stage_counts(st)->rejected - rej0 == 2, "rejected %llu",
          (unsigned long long)(ss_stage_counts(st)->rejected - rej0));
    CHECK(ss_stage_counts(st)->errors - err0 == 4, "faults %llu (2 rejected, 2 upstream)",
          (unsigned long long)(ss_stage_counts(st)->errors - err0));
    CHECK(ss_collector_nbags(c) == 2 && ss_collector_find(c, 31) == NULL, "%zu bags",
          ss_collector_nbags(c));
    CHECK(ss_collector_report(c) == 1 && s.nlacks == 1 && !strcmp(s.lacks_bag[0], "slide40") &&
              strstr(s.lacks[0], "nothing arrived"),
          "the mis-sent TILE's bag: %s lacks '%s'", s.lacks_bag[0], s.lacks[0]);
    ss_collector_bag_t *b = ss_collector_find(c, 30);
    CHECK(b && b->faults == 1 && b->done, "bag gamma: %llu faults",
          b ? (unsigned long long)b->faults : 0);
    ss_collector_destroy(&c);
    ss_sock_destroy(&d);
    ss_sock_destroy(&p);
    sink_close(&k);
}

/* The stage refuses an item and fails its bag: the bag never completes, does not hold the
 * run up, and the report says what the stage said it lacks. */
static void failed_bag(ss_stage_t *st)
{
    sink_t k;
    sink_open(&k, "failed");
    ss_sock_t *p = producer(&k, 1);
    send_parts(p, 50, 1);
    send_cell(p, 50, 0, 0);
    send_cell(p, 50, 0, 1);
    send_items(p, 50, 0, 2);
    send_end(p, 1);
    seen_t s = {0};
    s.refuse_item = 1 + 1;
    ss_collector_config_t cfg = config(&s, 5);
    ss_collector_t *c = ss_collector_new(st, &cfg);
    double secs;
    CHECK(run(c, &k, &secs) == 0 && secs < 3, "run (%.1f s)", secs);
    CHECK(s.completes == 0 && s.items == 1, "completes %d items %d", s.completes, s.items);
    CHECK(ss_collector_report(c) == 1 && s.nlacks == 1 &&
              !strcmp(s.lacks[0], "refused by the stage"),
          "lacks '%s'", s.lacks[0]);
    ss_collector_destroy(&c);
    ss_sock_destroy(&p);
    sink_close(&k);
}

/* A counting sink: no complete callback, so bags never close; EMBED items, bag-level
 * counting (one_part), and a tile stream (parts_are_items). */
static void sinks(ss_stage_t *st)
{
    sink_t k;
    sink_open(&k, "sink");
    ss_sock_t *p = producer(&k, 1);
    send_parts(p, 60, 1);
    send_data(p, SS_MSG_EMBED, 60, 7, 0, -1); /* part 7: counted in part 0 */
    send_data(p, SS_MSG_EMBED, 60, 9, 1, -1);
    send_items(p, 60, 0, 2);
    send_end(p, 1);
    ss_collector_config_t cfg = {.name = "sink-test",
                                 .data_types = SS_COLLECT_TYPE(SS_MSG_EMBED),
                                 .producers = 1,
                                 .idle_timeout = 5,
                                 .one_part = 1};
    ss_collector_t *c = ss_collector_new(st, &cfg);
    double secs;
    CHECK(run(c, &k, &secs) == 0 && secs < 3, "run (%.1f s)", secs);
    ss_collector_bag_t *b = ss_collector_find(c, 60);
    CHECK(b && !b->done && b->items == 2 && ss_collector_complete(c, b), "one_part bag");
    CHECK(ss_collector_report(c) == 0, "a complete sink reported incomplete");
    ss_collector_destroy(&c);

    send_parts(p, 61, 2);
    send_data(p, SS_MSG_TILE, 61, 0, 0, -1);
    send_data(p, SS_MSG_TILE, 61, 1, 1, -1);
    send_end(p, 1);
    cfg.data_types = SS_COLLECT_TYPE(SS_MSG_TILE);
    cfg.one_part = 0;
    cfg.parts_are_items = 1;
    c = ss_collector_new(st, &cfg);
    CHECK(run(c, &k, &secs) == 0 && secs < 3, "run (%.1f s)", secs);
    CHECK(ss_collector_complete(c, ss_collector_find(c, 61)), "tile stream incomplete");
    ss_collector_destroy(&c);
    ss_sock_destroy(&p);
    sink_close(&k);
}

/* Configs the collector cannot work with are errors, not surprises later. */
static void bad_configs(ss_stage_t *st)
{
    ss_collector_config_t cfg = {.name = "bad",
                                 .data_types = SS_COLLECT_TYPE(SS_MSG_CELL),
                                 .producers = 0,
                                 .idle_timeout = 1};
    CHECK(ss_collector_new(st, &cfg) == NULL, "0 producers accepted");
    cfg.producers = 1;
    cfg.data_types = SS_COLLECT_TYPE(SS_MSG_SLIDE);
    CHECK(ss_collector_new(st, &cfg) == NULL, "SLIDE as a data type accepted");
    CHECK(strstr(ss_error_buffer(), "bad") != NULL, "errors name the stage: %s", ss_error_buffer());
    ss_error_clear();
}

/* Last: a shutdown (here SIGTERM) ends a run that is waiting for producers, with 1. */
static void shutdown_ends_run(ss_stage_t *st)
{
    sink_t k;
    sink_open(&k, "stop");
    seen_t s = {0};
    ss_collector_config_t cfg = config(&s, 5);
    ss_collector_t *c = ss_collector_new(st, &cfg);
    raise(SIGTERM);
    double secs;
    CHECK(run(c, &k, &secs) == 1 && secs < 3, "stopped run (%.1f s)", secs);
    ss_collector_destroy(&c);
    sink_close(&k);
}

int main(void)
{
    ss_log_set_quiet(1);
    ss_stage_t *st = ss_stage_new("collector-test", NULL, NULL);
    CHECK(st != NULL, "stage: %s", ss_error_buffer());
    if (!st) return 1;
    complete_bag(st);
    incomplete_bags(st);
    refusals(st);
    data_before_slide(st);
    two_producers(st);
    rejected(st);
    failed_bag(st);
    sinks(st);
    bad_configs(st);
    shutdown_ends_run(st);
    ss_stage_destroy(&st);
    return check_exit("transport.collector");
}
