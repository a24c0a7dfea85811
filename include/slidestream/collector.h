/* slidestream — the collector: the receiving half of counted completion, shared by every stage
 * that gathers a stream into bags (bag-builder, cache-writer, count, train, aggregator).
 *
 * A collector keeps one bag per slide id, fed from the stage's data and control sockets:
 *   data items (the types in `data_types`)  counted in the tally; duplicates and items for a
 *                                           bag already done are refused as per-item faults
 *   SLIDE   the bag's metadata (id, label, split, path, mpp); may come before or after data
 *   COUNT   the producers' announcements (ss_tally_count)
 *   ERROR   an upstream fault: counted on the bag, reported (or handed to the stage)
 *   END     one producer finished; its `item` says how many bags it announced
 * A bag is complete when the tally says so (and, with need_meta, its SLIDE came); the stage's
 * `complete` callback then runs once and the bag is done. ss_collector_run() ends when every
 * producer sent END and every bag is done (or failed), or when the idle timeout passes after
 * the last message, or on shutdown. ss_collector_report() then names each unfinished bag and
 * what it lacks.
 *
 * Ownership: the collector owns its bag records and each bag's zeroed `user` block
 * (bag_user_size bytes); what the stage hangs off a user block is the stage's, released in its
 * `release` callback when the collector is destroyed. Bag pointers stay valid until then. The
 * collector does not own the stage or the sockets.
 */
#ifndef SLIDESTREAM_COLLECTOR_H
#define SLIDESTREAM_COLLECTOR_H

#include <stddef.h>
#include <stdint.h>

#include "slidestream/transport.h"

typedef struct ss_collector ss_collector_t;

/* One bag. The collector fills every field; stages read them and write only into `user`. */
typedef struct {
    uint32_t slide;        /* the key: the slide (run index) that messages name */
    char name[256];        /* SLIDE id=, else "slide<N>" */
    char split[64];        /* SLIDE split=, else "" */
    char path[1024];       /* SLIDE path=, else "" */
    int label;             /* SLIDE label=, else the first accepted item's header label, else -1 */
    double mpp;            /* SLIDE mpp=, else 0 */
    int have_meta;         /* its SLIDE message came */
    int done;              /* it completed and `complete` ran */
    int failed;            /* ss_collector_fail(): it will never complete */
    uint64_t items;        /* data items counted (new, not refused), also for a failed bag */
    uint64_t faults;       /* ERROR messages upstream sent about it */
    void *user;            /* bag_user_size zeroed bytes for the stage, NULL when 0 */
    char failed_why_[128]; /* private: what the report says a failed bag lacks */
} ss_collector_bag_t;

/* Why a message was refused; each refusal is one ss_stage_fault(). */
typedef enum {
    SS_COLLECT_DUPLICATE, /* the bag already has this item */
    SS_COLLECT_LATE,      /* the bag was already done */
    SS_COLLECT_INVALID,   /* the tally refused it; `detail` says why */
    SS_COLLECT_UNEXPECTED /* a message type this collector does not take; also counted as
                             rejected, and its slide's bag is made all the same (a mis-wired
                             stream ends with an incomplete bag, not quietly) */
} ss_collect_refusal_t;

/* Bit for a message type in ss_collector_config_t.data_types. */
#define SS_COLLECT_TYPE(type) (1u << (type))

/* Callbacks are optional (NULL). Unless said otherwise they return 0 to go on, 1 to stop the
 * run as a shutdown would (e.g. a send abandoned because the stage is stopping), and -1 on a
 * fatal error the callback reported; ss_collector_run() returns that value. `arg` is the
 * config's arg. */
typedef struct {
    const char *name;     /* the stage, as in "slidestream <name>: INCOMPLETE ..." */
    unsigned data_types;  /* data message types taken, e.g. SS_COLLECT_TYPE(SS_MSG_CELL) */
    int producers;        /* END messages to wait for (>= 1) */
    double idle_timeout;  /* after the last END: give up after this many quiet seconds (> 0) */
    int parts_are_items;  /* each part is itself the one item (a tile stream; ss_tally_new) */
    int one_part;         /* a bag is one part: items count in part 0 whatever their header
                             says (collectors after the bag-builder, which announces bags so) */
    int need_meta;        /* a bag completes only once its SLIDE message came */
    size_t bag_user_size; /* zeroed bytes per bag for the stage, at bag->user */
    void *arg;

    /* A data item before anything else looks at it: return 0 to take it, non-zero to refuse
     * it (the callback reports why, and may ss_collector_fail() the bag). Cannot stop the
     * run. */
    int (*check)(ss_collector_bag_t *bag, const ss_msg_t *m, void *arg);
    /* A data item accepted into a bag (new, counted). Not called for a failed bag. */
    int (*item)(ss_collector_bag_t *bag, const ss_msg_t *m, void *arg);
    /* The bag's SLIDE message, after its fields were read into the record. */
    int (*meta)(ss_collector_bag_t *bag, const ss_msg_t *m, void *arg);
    /* The bag is complete; it is marked done when this returns 0 without failing the bag.
     * Without this callback bags never close: completion is judged at the end (a sink that
     * only counts), and items after completion are counted, not refused. */
    int (*complete)(ss_collector_bag_t *bag, void *arg);
    /* ss_collector_report() found the bag unfinished: the callback names it (in place of the
     * default line) and may act on it (e.g. pass on what arrived). Non-zero ends the walk. */
    int (*incomplete)(ss_collector_bag_t *bag, const char *lacks, void *arg);
    /* An ERROR message upstream sent; bag is NULL when its slide has no bag. Without this
     * callback it is reported as the fault "upstream: <text>". */
    int (*error)(ss_collector_bag_t *bag, const ss_msg_t *m, void *arg);
    /* Words a refusal into buf; the collector reports it with ss_stage_fault(). Without this
     * callback: "bag '<name>': item <id> arrived twice", "... arrived after the bag was done",
     * "bag '<name>': item <id>: <detail>", "unexpected <TYPE> message". */
    void (*fault_text)(char *buf, size_t n, ss_collect_refusal_t why, const ss_collector_bag_t *bag,
                       const ss_msg_header_t *h, const char *detail, void *arg);
    /* Frees what the stage hung off bag->user; called for every bag by ss_collector_destroy. */
    void (*release)(ss_collector_bag_t *bag, void *arg);
} ss_collector_config_t;

/* Faults, counts (in, rejected) and status go through `st`; the config is copied. */
ss_collector_t *ss_collector_new(ss_stage_t *st, const ss_collector_config_t *cfg);
void ss_collector_destroy(ss_collector_t **c);

/* Receive from `socks` (data and control, n <= 16) until the collection ends: 0 when every
 * producer ended and every bag is done or failed (and the ENDs' announced bags all came), or
 * when, after the last END, idle_timeout seconds passed without a message; 1 on shutdown (or
 * a callback asked to stop); -1 on a fatal error (out of memory, or a callback's -1). */
int ss_collector_run(ss_collector_t *c, ss_sock_t **socks, int n);

/* Name every unfinished bag, in arrival order, with what it lacks (the `incomplete`
 * callback, else "slidestream <name>: INCOMPLETE bag '<bag>': <lacks>" on stderr), then the
 * producers that never sent END. Returns 1 when something was incomplete, 0 when not. */
int ss_collector_report(ss_collector_t *c);

/* Mark a bag failed: it never completes and the report says it lacks `why`. The caller
 * reports the fault itself. */
void ss_collector_fail(ss_collector_bag_t *bag, const char *why);

/* One line saying what `bag` lacks ("" when it is complete). */
void ss_collector_describe(const ss_collector_t *c, const ss_collector_bag_t *bag, char *buf,
                           size_t n);

size_t ss_collector_nbags(const ss_collector_t *c);
/* The i-th bag in order of first arrival. */
ss_collector_bag_t *ss_collector_bag(ss_collector_t *c, size_t i);
/* The bag of `slide`, NULL when no message named it. */
ss_collector_bag_t *ss_collector_find(ss_collector_t *c, uint32_t slide);
/* The bag is complete by the tally (whether or not it was closed). */
int ss_collector_complete(const ss_collector_t *c, const ss_collector_bag_t *bag);
int ss_collector_ends(const ss_collector_t *c);           /* END messages received */
uint64_t ss_collector_announced(const ss_collector_t *c); /* bags the ENDs announced */
/* The ledger, for reports that list what it holds. */
const ss_tally_t *ss_collector_tally(const ss_collector_t *c);

#endif
