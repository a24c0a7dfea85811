/* The collector (see include/slidestream/collector.h): bags keyed by slide id, fed by data and
 * control messages, closed when the tally says they are complete. Owns its bag records, their
 * user blocks and its tally; the stage, its sockets and what hangs off a user block are not
 * its own. Bags are kept twice: in arrival order (reports, the stage's walks) and sorted by
 * slide (lookup per message). */
#include "slidestream/collector.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/error.h"
#include "slidestream/log.h"

#define POLL_MS 200
#define MAX_SOCKS 16
#define DATA_TYPES                                                                                 \
    (SS_COLLECT_TYPE(SS_MSG_TILE) | SS_COLLECT_TYPE(SS_MSG_CELL) | SS_COLLECT_TYPE(SS_MSG_EMBED))

struct ss_collector {
    ss_stage_t *st;
    ss_collector_config_t cfg;
    ss_tally_t *tally;
    ss_collector_bag_t **bags;   /* [n] in arrival order */
    ss_collector_bag_t **sorted; /* [n] by slide */
    size_t n, cap;
    int ends;           /* END messages received */
    uint64_t announced; /* bags those ENDs announced */
};

ss_collector_t *ss_collector_new(ss_stage_t *st, const ss_collector_config_t *cfg)
{
    if (!st || !cfg || !cfg->name) {
        ss_error("collector", "needs a stage and a named config");
        return NULL;
    }
    if (cfg->producers < 1 || !(cfg->idle_timeout > 0)) {
        ss_error("collector", "%s: %d producers, idle timeout %g s: want >= 1 and > 0", cfg->name,
                 cfg->producers, cfg->idle_timeout);
        return NULL;
    }
    if (!cfg->data_types || (cfg->data_types & ~DATA_TYPES)) {
        ss_error("collector", "%s: data types 0x%x: want TILE, CELL and/or EMBED", cfg->name,
                 cfg->data_types);
        return NULL;
    }
    ss_collector_t *c = calloc(1, sizeof *c);
    if (!c || !(c->tally = ss_tally_new(cfg->parts_are_items))) {
        free(c);
        ss_error("collector", "out of memory");
        return NULL;
    }
    c->st = st;
    c->cfg = *cfg;
    return c;
}

void ss_collector_destroy(ss_collector_t **cp)
{
    if (!cp || !*cp) return;
    ss_collector_t *c = *cp;
    for (size_t i = 0; i < c->n; i++) {
        if (c->cfg.release) c->cfg.release(c->bags[i], c->cfg.arg);
        free(c->bags[i]->user);
        free(c->bags[i]);
    }
    free(c->bags);
    free(c->sorted);
    ss_tally_destroy(&c->tally);
    free(c);
    *cp = NULL;
}

static size_t lower_bound(const ss_collector_t *c, uint32_t slide)
{
    size_t lo = 0, hi = c->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c->sorted[mid]->slide < slide)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

ss_collector_bag_t *ss_collector_find(ss_collector_t *c, uint32_t slide)
{
    size_t i = lower_bound(c, slide);
    return i < c->n && c->sorted[i]->slide == slide ? c->sorted[i] : NULL;
}

/* The bag of `slide`, made on first mention. NULL when out of memory. */
static ss_collector_bag_t *get(ss_collector_t *c, uint32_t slide)
{
    size_t pos = lower_bound(c, slide);
    if (pos < c->n && c->sorted[pos]->slide == slide) return c->sorted[pos];
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 16;
        ss_collector_bag_t **nb = realloc(c->bags, cap * sizeof *nb);
        if (!nb) return NULL;
        c->bags = nb;
        ss_collector_bag_t **ns = realloc(c->sorted, cap * sizeof *ns);
        if (!ns) return NULL;
        c->sorted = ns;
        c->cap = cap;
    }
    ss_collector_bag_t *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    if (c->cfg.bag_user_size && !(b->user = calloc(1, c->cfg.bag_user_size))) {
        free(b);
        return NULL;
    }
    b->slide = slide;
    b->label = -1;
    snprintf(b->name, sizeof b->name, "slide%u", slide);
    c->bags[c->n] = b;
    memmove(&c->sorted[pos + 1], &c->sorted[pos], (c->n - pos) * sizeof *c->sorted);
    c->sorted[pos] = b;
    c->n++;
    return b;
}

int ss_collector_complete(const ss_collector_t *c, const ss_collector_bag_t *b)
{
    return ss_tally_complete(c->tally, b->slide);
}

/* Still waited for: not done, and (for a collector that never closes bags) not complete. */
static int unfinished(const ss_collector_t *c, const ss_collector_bag_t *b)
{
    if (b->done) return 0;
    if (!c->cfg.complete && !b->failed) return !ss_tally_complete(c->tally, b->slide);
    return 1;
}

static void refuse(ss_collector_t *c, ss_collect_refusal_t why, const ss_collector_bag_t *b,
                   const ss_msg_header_t *h, const char *detail)
{
    char text[1024];
    if (c->cfg.fault_text) {
        text[0] = '\0';
        c->cfg.fault_text(text, sizeof text, why, b, h, detail, c->cfg.arg);
    } else if (why == SS_COLLECT_UNEXPECTED) {
        snprintf(text, sizeof text, "unexpected %s message", ss_msg_type_name(h->type));
    } else {
        unsigned long long item = (unsigned long long)h->item;
        if (why == SS_COLLECT_DUPLICATE)
            snprintf(text, sizeof text, "bag '%s': item %llu arrived twice", b->name, item);
        else if (why == SS_COLLECT_LATE)
            snprintf(text, sizeof text, "bag '%s': item %llu arrived after the bag was done",
                     b->name, item);
        else
            snprintf(text, sizeof text, "bag '%s': item %llu: %s", b->name, item,
                     detail ? detail : "refused");
    }
    ss_stage_fault(c->st, "%s", text);
}

/* Close `b` if it just became complete. */
static int settle(ss_collector_t *c, ss_collector_bag_t *b)
{
    if (!c->cfg.complete || b->done || b->failed) return 0;
    if (c->cfg.need_meta && !b->have_meta) return 0;
    if (!ss_tally_complete(c->tally, b->slide)) return 0;
    int rc = c->cfg.complete(b, c->cfg.arg);
    if (rc == 0 && !b->failed) b->done = 1;
    return rc;
}

static void read_meta(ss_collector_bag_t *b, const ss_msg_t *m)
{
    char v[64];
    ss_text_get(m->data, m->size, "id", b->name, sizeof b->name);
    ss_text_get(m->data, m->size, "split", b->split, sizeof b->split);
    ss_text_get(m->data, m->size, "path", b->path, sizeof b->path);
    if (!ss_text_get(m->data, m->size, "label", v, sizeof v)) b->label = atoi(v);
    if (!ss_text_get(m->data, m->size, "mpp", v, sizeof v)) b->mpp = atof(v);
    b->have_meta = 1;
}

static int take_item(ss_collector_t *c, ss_collector_bag_t *b, const ss_msg_t *m)
{
    const ss_msg_header_t *h = &m->h;
    if (c->cfg.check && c->cfg.check(b, m, c->cfg.arg)) return 0;
    if (b->done) {
        refuse(c, SS_COLLECT_LATE, b, h, NULL);
        return 0;
    }
    int d = ss_tally_item(c->tally, h->slide, c->cfg.one_part ? 0 : h->part, h->item);
    if (d) {
        refuse(c, d == 1 ? SS_COLLECT_DUPLICATE : SS_COLLECT_INVALID, b, h,
               d == 1 ? NULL : ss_error_last());
        ss_error_clear();
        return 0;
    }
    b->items++;
    if (b->failed) return 0; /* counted, so a repeat is still a duplicate; not passed on */
    ss_stage_counts(c->st)->in++;
    if (b->label < 0) b->label = h->label;
    return c->cfg.item ? c->cfg.item(b, m, c->cfg.arg) : 0;
}

/* One received message. 0 go on, 1 stop, -1 fatal. */
static int take(ss_collector_t *c, const ss_msg_t *m)
{
    const ss_msg_header_t *h = &m->h;
    if (h->type == SS_MSG_END) {
        c->ends++;
        c->announced += h->item;
        return 0;
    }
    if (h->type == SS_MSG_ERROR) {
        /* A failed slide may have no bag (it never started): none is made for it. */
        ss_collector_bag_t *b = ss_collector_find(c, h->slide);
        if (b) b->faults++;
        if (c->cfg.error) return c->cfg.error(b, m, c->cfg.arg);
        ss_stage_fault(c->st, "upstream: %.*s", (int)(m->size > 400 ? 400 : m->size),
                       (const char *)m->data);
        return 0;
    }
    /* Any other message makes its slide's bag known, even one of a type not taken here: a
     * mis-wired stream then ends with an incomplete bag instead of passing quietly. */
    ss_collector_bag_t *b = get(c, h->slide);
    if (!b) {
        ss_stage_fault(c->st, "out of memory");
        return -1;
    }
    int data = h->type < 32 && (c->cfg.data_types & SS_COLLECT_TYPE(h->type));
    if (!data && h->type != SS_MSG_SLIDE && h->type != SS_MSG_COUNT) {
        ss_stage_counts(c->st)->rejected++;
        refuse(c, SS_COLLECT_UNEXPECTED, b, h, NULL);
        return 0;
    }
    int rc = 0;
    if (h->type == SS_MSG_COUNT) {
        if (ss_tally_count(c->tally, h)) {
            ss_stage_fault(c->st, "%s", ss_error_last());
            ss_error_clear();
        }
    } else if (h->type == SS_MSG_SLIDE) {
        read_meta(b, m);
        if (c->cfg.meta) rc = c->cfg.meta(b, m, c->cfg.arg);
    } else {
        rc = take_item(c, b, m);
    }
    /* Only this message's bag can have changed state. */
    return rc ? rc : settle(c, b);
}

static int finished(const ss_collector_t *c)
{
    if (c->n < c->announced) return 0;
    for (size_t i = 0; i < c->n; i++)
        if (unfinished(c, c->bags[i]) && !c->bags[i]->failed) return 0;
    return 1;
}

int ss_collector_run(ss_collector_t *c, ss_sock_t **socks, int n)
{
    if (n < 1 || n > MAX_SOCKS) return ss_error("collector", "%d sockets (1 to %d)", n, MAX_SOCKS);
    double last = ss_now();
    for (;;) {
        /* After the last END, the stream is over once every bag is settled; messages still
         * in flight get idle_timeout quiet seconds to arrive. */
        if (c->ends >= c->cfg.producers && (finished(c) || ss_now() - last > c->cfg.idle_timeout))
            return 0;
        ss_msg_t m;
        int r = ss_stage_next(c->st, socks, n, POLL_MS, &m, NULL);
        if (r == -2) return 1;
        if (r != 1) continue;
        last = ss_now();
        int rc = take(c, &m);
        ss_msg_release(&m);
        if (rc) return rc;
    }
}

void ss_collector_fail(ss_collector_bag_t *b, const char *why)
{
    b->failed = 1;
    snprintf(b->failed_why_, sizeof b->failed_why_, "%s", why && *why ? why : "failed");
}

void ss_collector_describe(const ss_collector_t *c, const ss_collector_bag_t *b, char *buf,
                           size_t n)
{
    if (!n) return;
    if (b->failed)
        snprintf(buf, n, "%s", b->failed_why_);
    else
        ss_tally_describe(c->tally, b->slide, buf, n);
}

int ss_collector_report(ss_collector_t *c)
{
    int incomplete = 0;
    for (size_t i = 0; i < c->n; i++) {
        ss_collector_bag_t *b = c->bags[i];
        if (!unfinished(c, b)) continue;
        incomplete = 1;
        char lacks[512];
        ss_collector_describe(c, b, lacks, sizeof lacks);
        if (!c->cfg.incomplete)
            fprintf(stderr, "slidestream %s: INCOMPLETE bag '%s': %s\n", c->cfg.name, b->name,
                    lacks);
        else if (c->cfg.incomplete(b, lacks, c->cfg.arg))
            break;
    }
    if (c->ends < c->cfg.producers) {
        fprintf(stderr, "slidestream %s: INCOMPLETE: %d of %d producers finished\n", c->cfg.name,
                c->ends, c->cfg.producers);
        incomplete = 1;
    }
    return incomplete;
}

size_t ss_collector_nbags(const ss_collector_t *c)
{
    return c->n;
}

ss_collector_bag_t *ss_collector_bag(ss_collector_t *c, size_t i)
{
    return i < c->n ? c->bags[i] : NULL;
}

int ss_collector_ends(const ss_collector_t *c)
{
    return c->ends;
}

uint64_t ss_collector_announced(const ss_collector_t *c)
{
    return c->announced;
}

const ss_tally_t *ss_collector_tally(const ss_collector_t *c)
{
    return c->tally;
}
