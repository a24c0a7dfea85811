/* Counted completion (see include/slidestream/transport.h): the collector's ledger of what
 * each slide was announced to contain and what has arrived. Memory is O(parts + items) per
 * open slide; a finished slide can be dropped by the caller by not referring to it again. */
#include "slidestream/transport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/error.h"

typedef struct {
    int64_t expected; /* items this part announced, -1 while unknown */
    uint64_t received;
} part_t;

typedef struct {
    uint32_t id;
    int64_t nparts; /* -1 while unknown */
    part_t *parts;
    size_t cap_parts, max_part_seen; /* max_part_seen = highest part index + 1 */
    uint64_t parts_done;             /* parts whose announced count has fully arrived */
    uint64_t items;
    uint64_t *set; /* open-addressing set of item ids + 1 (0 = empty) */
    size_t set_cap, set_n;
} slide_t;

struct ss_tally {
    int parts_are_items;
    slide_t *slides; /* sorted by id */
    size_t n, cap;
};

ss_tally_t *ss_tally_new(int parts_are_items)
{
    ss_tally_t *t = calloc(1, sizeof *t);
    if (!t) ss_error("tally", "out of memory");
    else t->parts_are_items = parts_are_items;
    return t;
}

void ss_tally_destroy(ss_tally_t **tp)
{
    if (!tp || !*tp) return;
    for (size_t i = 0; i < (*tp)->n; i++) {
        free((*tp)->slides[i].parts);
        free((*tp)->slides[i].set);
    }
    free((*tp)->slides);
    free(*tp);
    *tp = NULL;
}

static slide_t *find(const ss_tally_t *t, uint32_t id, size_t *pos)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t->slides[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    if (pos) *pos = lo;
    return lo < t->n && t->slides[lo].id == id ? &t->slides[lo] : NULL;
}

static slide_t *get(ss_tally_t *t, uint32_t id)
{
    size_t pos;
    slide_t *s = find(t, id, &pos);
    if (s) return s;
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        slide_t *ns = realloc(t->slides, cap * sizeof *ns);
        if (!ns) {
            ss_error("tally", "out of memory");
            return NULL;
        }
        t->slides = ns;
        t->cap = cap;
    }
    memmove(&t->slides[pos + 1], &t->slides[pos], (t->n - pos) * sizeof *t->slides);
    t->n++;
    s = &t->slides[pos];
    memset(s, 0, sizeof *s);
    s->id = id;
    s->nparts = -1;
    return s;
}

/* Parts (tiles) per slide we accept: far above any real slide (a 200k x 200k slide in 256 px
 * tiles has ~600k), low enough that a hostile count cannot exhaust memory. */
#define MAX_PARTS (1u << 24)

static part_t *get_part(slide_t *s, uint32_t part)
{
    if (part >= MAX_PARTS) {
        ss_error("tally", "slide %u: part %u is beyond the %u parts a slide may have", s->id,
                 part, MAX_PARTS);
        return NULL;
    }
    if (part >= s->cap_parts) {
        size_t cap = s->cap_parts ? s->cap_parts : 64;
        while (cap <= part) cap *= 2;
        part_t *np = realloc(s->parts, cap * sizeof *np);
        if (!np) {
            ss_error("tally", "out of memory");
            return NULL;
        }
        for (size_t i = s->cap_parts; i < cap; i++) np[i] = (part_t){-1, 0};
        s->parts = np;
        s->cap_parts = cap;
    }
    if (part + 1 > s->max_part_seen) s->max_part_seen = part + 1;
    return &s->parts[part];
}

/* Keep parts_done in step with one part's state change. */
static void settle(slide_t *s, part_t *p, int was_done)
{
    int done = p->expected >= 0 && p->received == (uint64_t)p->expected;
    if (done && !was_done) s->parts_done++;
    if (!done && was_done) s->parts_done--;
}

int ss_tally_parts(ss_tally_t *t, uint32_t slide, uint64_t nparts)
{
    slide_t *s = get(t, slide);
    if (!s) return -1;
    if (s->nparts >= 0 && (uint64_t)s->nparts != nparts)
        return ss_error("tally", "slide %u announced %llu parts after %lld", slide,
                        (unsigned long long)nparts, (long long)s->nparts);
    if (nparts > MAX_PARTS) return ss_error("tally", "slide %u: %llu parts (at most %u)", slide,
                                            (unsigned long long)nparts, MAX_PARTS);
    if (s->max_part_seen > nparts)
        return ss_error("tally", "slide %u announced %llu parts but part %zu arrived", slide,
                        (unsigned long long)nparts, s->max_part_seen - 1);
    s->nparts = (int64_t)nparts;
    return 0;
}

int ss_tally_part_items(ss_tally_t *t, uint32_t slide, uint32_t part, uint64_t nitems)
{
    slide_t *s = get(t, slide);
    if (!s) return -1;
    if (s->nparts >= 0 && part >= s->nparts)
        return ss_error("tally", "slide %u: count for part %u of %lld", slide, part,
                        (long long)s->nparts);
    part_t *p = get_part(s, part);
    if (!p) return -1;
    if (p->expected >= 0 && (uint64_t)p->expected != nitems)
        return ss_error("tally", "slide %u part %u announced %llu items after %lld", slide, part,
                        (unsigned long long)nitems, (long long)p->expected);
    int was = p->expected >= 0 && p->received == (uint64_t)p->expected;
    p->expected = (int64_t)nitems;
    settle(s, p, was);
    return 0;
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

/* Insert item+1 into the slide's set: 0 new, 1 present, -1 no memory. */
static int set_add(slide_t *s, uint64_t item)
{
    uint64_t key = item + 1;
    if (key == 0) key = UINT64_MAX; /* item UINT64_MAX collides with it; harmless */
    if (2 * (s->set_n + 1) > s->set_cap) {
        size_t cap = s->set_cap ? 2 * s->set_cap : 1024;
        uint64_t *ns = calloc(cap, sizeof *ns);
        if (!ns) return ss_error("tally", "out of memory");
        for (size_t i = 0; i < s->set_cap; i++) {
            if (!s->set[i]) continue;
            size_t j = mix(s->set[i]) & (cap - 1);
            while (ns[j]) j = (j + 1) & (cap - 1);
            ns[j] = s->set[i];
        }
        free(s->set);
        s->set = ns;
        s->set_cap = cap;
    }
    size_t j = mix(key) & (s->set_cap - 1);
    while (s->set[j]) {
        if (s->set[j] == key) return 1;
        j = (j + 1) & (s->set_cap - 1);
    }
    s->set[j] = key;
    s->set_n++;
    return 0;
}

int ss_tally_item(ss_tally_t *t, uint32_t slide, uint32_t part, uint64_t item)
{
    slide_t *s = get(t, slide);
    if (!s) return -1;
    if (s->nparts >= 0 && part >= s->nparts)
        return ss_error("tally", "slide %u: item %llu from part %u of %lld", slide,
                        (unsigned long long)item, part, (long long)s->nparts);
    int dup = set_add(s, item);
    if (dup) return dup;
    part_t *p = get_part(s, part);
    if (!p) return -1;
    int was = p->expected >= 0 && p->received == (uint64_t)p->expected;
    if (t->parts_are_items) p->expected = 1;
    p->received++;
    s->items++;
    settle(s, p, was);
    return 0;
}

int ss_tally_count(ss_tally_t *t, const ss_msg_header_t *h)
{
    return h->flags == SS_COUNT_PARTS ? ss_tally_parts(t, h->slide, h->item)
                                      : ss_tally_part_items(t, h->slide, h->part, h->item);
}

int ss_tally_complete(const ss_tally_t *t, uint32_t slide)
{
    const slide_t *s = find(t, slide, NULL);
    return s && s->nparts >= 0 && s->parts_done == (uint64_t)s->nparts;
}

uint64_t ss_tally_items(const ss_tally_t *t, uint32_t slide)
{
    const slide_t *s = find(t, slide, NULL);
    return s ? s->items : 0;
}

size_t ss_tally_slides(const ss_tally_t *t, uint32_t *ids, size_t n)
{
    size_t k = 0;
    for (; k < t->n && k < n; k++) ids[k] = t->slides[k].id;
    return t->n;
}

void ss_tally_describe(const ss_tally_t *t, uint32_t slide, char *buf, size_t n)
{
    if (!n) return;
    buf[0] = '\0';
    const slide_t *s = find(t, slide, NULL);
    if (!s) {
        snprintf(buf, n, "slide %u: nothing arrived", slide);
        return;
    }
    if (ss_tally_complete(t, slide)) return;
    if (s->nparts < 0) {
        snprintf(buf, n, "slide %u: its producer never announced how many parts it has "
                         "(%llu items arrived)", slide, (unsigned long long)s->items);
        return;
    }
    uint64_t expected = 0, silent = 0, short_parts = 0;
    size_t len = 0;
    char list[256] = "";
    int listed = 0;
    for (uint32_t i = 0; i < (uint64_t)s->nparts; i++) {
        part_t p = i < s->cap_parts ? s->parts[i] : (part_t){-1, 0};
        int bad = 0;
        if (p.expected < 0) silent++, bad = 1;
        else {
            expected += (uint64_t)p.expected;
            if (p.received != (uint64_t)p.expected) short_parts++, bad = 1;
        }
        if (bad && listed < 12) {
            int w = snprintf(list + len, sizeof list - len, "%s%u", listed ? "," : "", i);
            if (w > 0 && (size_t)w < sizeof list - len) len += (size_t)w;
            listed++;
        }
    }
    if (silent == 0) { /* every count arrived: what is missing is items (cells a worker lost) */
        snprintf(buf, n, "slide %u: %llu of %llu items missing (%llu arrived)%s%s%s", slide,
                 (unsigned long long)(expected - s->items), (unsigned long long)expected,
                 (unsigned long long)s->items, s->nparts > 1 ? "; short parts: " : "",
                 s->nparts > 1 ? list : "", s->nparts > 1 && short_parts > 12 ? ",..." : "");
        return;
    }
    snprintf(buf, n,
             "slide %u: %llu of %lld parts never reported, %llu short of items; %llu items "
             "arrived of %llu announced so far; first missing parts: %s%s",
             slide, (unsigned long long)silent, (long long)s->nparts,
             (unsigned long long)short_parts, (unsigned long long)s->items,
             (unsigned long long)expected, list, (silent + short_parts) > 12 ? ",..." : "");
}
