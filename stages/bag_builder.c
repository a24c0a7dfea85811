/* bag-builder — the collector of a slide's cells: groups them into one bag per slide, with the
 * slide's label, checks the bag is complete against the tiler's and croppers' counts, and
 * passes the cells on with their bag id. Writes the bag manifest (bags.csv, bag_cells.csv).
 *   data in:     PULL --in (binds): CELL messages from the cell-croppers
 *   control in:  PULL --control (binds): SLIDE, COUNT, ERROR, END from tiler and croppers
 *   data out:    PUSH --out (binds; encoders connect): CELL messages, bag = slide index
 *   control out: PUSH --next (connects) to the next collector: SLIDE, COUNT, ERROR, END
 * Without --cap, cells stream straight through; with --cap N a bag keeps a seeded sample of N
 * cells (chosen by cell id, so the sample does not depend on arrival order) and is sent when
 * complete. Exit 0 when every bag is complete, 3 when one is not (named on stderr). The
 * collecting itself (bags, counts, duplicates, END, idle timeout) is the library's collector
 * (slidestream/collector.h); this file says what a bag-builder does with each bag.
 * With --simulated DIR it is a source instead: it streams the bags that `slidestream bags
 * simulate` wrote (DIR/bags.csv, DIR/bag_cells.csv), reading each pre-cropped cell image, so
 * single-cell datasets flow through the same encoders and cache as slides. Cell ids are the
 * cells' positions within their bag in bag_cells.csv. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "slidestream/args.h"
#include "slidestream/cells.h"
#include "slidestream/collector.h"
#include "slidestream/manifest.h"
#include "slidestream/log.h"
#include "slidestream/transport.h"

typedef struct {
    ss_msg_header_t h;
    uint8_t *pixels;
    uint64_t key; /* seeded hash of the cell id: the sample keeps the smallest keys */
} held_t;

/* A bag's cells, kept in the collector's bag->user. */
typedef struct {
    uint64_t sent; /* cells passed on */
    held_t *held;  /* --cap only */
    size_t nheld, capheld;
} cells_t;

/* The streaming bag-builder, as its collector callbacks see it. */
typedef struct {
    ss_stage_t *st;
    ss_sock_t *out, *next;
    int cap;
    int64_t seed;
    FILE *cells_csv, *bags_csv;
    size_t closed; /* bags closed and announced downstream */
    int stopped;
} builder_t;

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static int cmp_key(const void *a, const void *b)
{
    uint64_t x = ((const held_t *)a)->key, y = ((const held_t *)b)->key;
    return x < y ? -1 : x > y;
}

static int cmp_item(const void *a, const void *b)
{
    uint64_t x = ((const held_t *)a)->h.item, y = ((const held_t *)b)->h.item;
    return x < y ? -1 : x > y;
}

static void csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void write_cell_row(FILE *f, const ss_collector_bag_t *g, const ss_msg_header_t *h)
{
    if (!f) return;
    csv_field(f, g->name);
    fprintf(f, ",%llu,%lld,%lld,%d,%d,%d,%d,%u\n", (unsigned long long)h->item, (long long)h->x,
            (long long)h->y, h->aux[0], h->aux[1], h->aux[2], h->aux[3], h->area);
}

/* Pass one cell on as part of bag `g`. 0 sent, 1 stopped, -1 error. */
static int forward(builder_t *B, ss_collector_bag_t *g, ss_msg_header_t h, const void *pixels)
{
    cells_t *u = g->user;
    h.bag = g->slide;
    h.part = 0; /* downstream, a bag is one unit of `sent` items */
    h.label = g->label;
    int r = ss_sock_send(B->out, &h, pixels, ss_stage_stop_flag(B->st));
    if (r == 0) {
        u->sent++;
        ss_stage_counts(B->st)->out++;
        write_cell_row(B->cells_csv, g, &h);
    }
    return r;
}

/* Close a bag: with --cap, choose and send the sample; announce the count downstream.
 * 0 closed, 1 stopped. */
static int close_bag(builder_t *B, ss_collector_bag_t *g, int complete)
{
    volatile int *stop = ss_stage_stop_flag(B->st);
    cells_t *u = g->user;
    if (B->cap > 0) {
        size_t keep = u->nheld < (size_t)B->cap ? u->nheld : (size_t)B->cap;
        qsort(u->held, u->nheld, sizeof *u->held, cmp_key);
        qsort(u->held, keep, sizeof *u->held, cmp_item); /* send in cell-id order */
        for (size_t i = 0; i < keep; i++)
            if (forward(B, g, u->held[i].h, u->held[i].pixels)) return 1;
        for (size_t i = 0; i < u->nheld; i++) free(u->held[i].pixels);
        free(u->held);
        u->held = NULL;
        u->nheld = u->capheld = 0;
    }
    ss_msg_header_t c = ss_msg_header_init(SS_MSG_COUNT);
    c.slide = g->slide;
    c.bag = g->slide;
    c.label = g->label;
    c.flags = SS_COUNT_PARTS;
    c.item = 1;
    if (ss_sock_send(B->next, &c, NULL, stop)) return 1;
    c.flags = SS_COUNT_ITEMS;
    c.part = 0;
    c.item = u->sent;
    if (ss_sock_send(B->next, &c, NULL, stop)) return 1;
    B->closed++;
    if (B->bags_csv) {
        FILE *f = B->bags_csv;
        csv_field(f, g->name);
        fprintf(f, ",%d,", g->label);
        csv_field(f, g->split);
        fprintf(f, ",%llu,%s,%llu,", (unsigned long long)u->sent, complete ? "1" : "0",
                (unsigned long long)g->faults);
        csv_field(f, g->path);
        fputc('\n', f);
        fflush(f);
    }
    if (g->faults)
        ss_warn("bag-builder: bag '%s': %llu upstream faults (see the tiler's log): the cells of "
                "the tiles that failed are not in the bag", g->name, (unsigned long long)g->faults);
    ss_info("bag-builder: bag '%s' (label %d): %llu cells%s", g->name, g->label,
            (unsigned long long)u->sent, complete ? "" : " — INCOMPLETE");
    return 0;
}

/* ---- the collector's callbacks (see slidestream/collector.h) ---------------------------- */

/* A new cell of bag `g`: stream it on, or hold it for the sample. */
static int on_cell(ss_collector_bag_t *g, const ss_msg_t *m, void *arg)
{
    builder_t *B = arg;
    cells_t *u = g->user;
    if (B->cap <= 0) return forward(B, g, m->h, m->data) ? 1 : 0;
    if (u->nheld == u->capheld) {
        size_t nc = u->capheld ? 2 * u->capheld : 256;
        held_t *nh = realloc(u->held, nc * sizeof *nh);
        if (!nh) {
            ss_stage_fault(B->st, "bag '%s': out of memory holding cells", g->name);
            return 0;
        }
        u->held = nh;
        u->capheld = nc;
    }
    held_t *hc = &u->held[u->nheld];
    hc->h = m->h;
    hc->key = mix64(m->h.item ^ mix64((uint64_t)B->seed));
    hc->pixels = malloc(m->size);
    if (!hc->pixels) {
        ss_stage_fault(B->st, "bag '%s': out of memory holding cells", g->name);
        return 0;
    }
    memcpy(hc->pixels, m->data, m->size);
    u->nheld++;
    return 0;
}

/* The slide's description is passed on, as the bag's. */
static int on_slide(ss_collector_bag_t *g, const ss_msg_t *m, void *arg)
{
    builder_t *B = arg;
    ss_msg_header_t h = m->h;
    h.bag = g->slide;
    return ss_sock_send(B->next, &h, m->data, ss_stage_stop_flag(B->st)) ? 1 : 0;
}

/* A failed slide has no bag: its error goes on to the next collector. */
static int on_error(ss_collector_bag_t *g, const ss_msg_t *m, void *arg)
{
    builder_t *B = arg;
    (void)g;
    return ss_sock_send(B->next, &m->h, m->data, ss_stage_stop_flag(B->st)) ? 1 : 0;
}

static int on_complete(ss_collector_bag_t *g, void *arg)
{
    return close_bag(arg, g, 1);
}

/* Bags still open were not completed: close what arrived, flagged. */
static int on_incomplete(ss_collector_bag_t *g, const char *lacks, void *arg)
{
    builder_t *B = arg;
    if (B->stopped) return 1;
    fprintf(stderr, "slidestream bag-builder: INCOMPLETE bag '%s': %s\n", g->name, lacks);
    if (close_bag(B, g, 0)) B->stopped = 1;
    return B->stopped;
}

static void fault_text(char *buf, size_t n, ss_collect_refusal_t why, const ss_collector_bag_t *g,
                       const ss_msg_header_t *h, const char *detail, void *arg)
{
    (void)arg;
    switch (why) {
    case SS_COLLECT_LATE:
        snprintf(buf, n, "bag '%s': cell %llu arrived after the bag was closed", g->name,
                 (unsigned long long)h->item);
        break;
    case SS_COLLECT_DUPLICATE:
        snprintf(buf, n, "bag '%s': a cell arrived twice", g->name);
        break;
    case SS_COLLECT_INVALID:
        snprintf(buf, n, "bag '%s': %s", g->name, detail);
        break;
    case SS_COLLECT_UNEXPECTED:
        snprintf(buf, n, "unexpected %s message", ss_msg_type_name(h->type));
        break;
    }
}

static void release_cells(ss_collector_bag_t *g, void *arg)
{
    cells_t *u = g->user;
    (void)arg;
    for (size_t k = 0; k < u->nheld; k++) free(u->held[k].pixels);
    free(u->held);
    u->held = NULL;
    u->nheld = u->capheld = 0;
}

typedef struct {
    char bag_id[256], split[64];
    int label;
} sim_bag_t;

/* Stream simulated bags. Returns 0, or 1 when stopped, -1 on a fatal error. */
static int stream_simulated(ss_stage_t *st, const char *dir, ss_sock_t *out, ss_sock_t *next,
                            double mpp)
{
    volatile int *stop = ss_stage_stop_flag(st);
    char path[4096], line[16384];
    char *f[16];
    snprintf(path, sizeof path, "%s/bags.csv", dir);
    FILE *fb = fopen(path, "r");
    if (!fb) return ss_error_system("bag-builder", "cannot open %s", path);
    sim_bag_t *bags = NULL;
    size_t nb = 0, cap = 0;
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof line, fb)) {
        if (lineno++ == 0) continue; /* header: bag_id,label,split,n_cells,n_witness */
        int n = ss_csv_split(line, f, 16);
        if (n < 3 || !*f[0]) {
            rc = ss_error("bag-builder", "%s:%d: want bag_id,label,split,...", path, lineno);
            break;
        }
        if (nb == cap) {
            cap = cap ? 2 * cap : 64;
            sim_bag_t *nbags = realloc(bags, cap * sizeof *nbags);
            if (!nbags) {
                rc = ss_error("bag-builder", "out of memory");
                break;
            }
            bags = nbags;
        }
        char *end;
        long lab = strtol(f[1], &end, 10);
        if (!*f[1] || *end || lab < 0 || lab > 1000000) {
            rc = ss_error("bag-builder", "%s:%d: label '%s' is not a class number >= 0", path,
                          lineno, f[1]);
            break;
        }
        snprintf(bags[nb].bag_id, sizeof bags[nb].bag_id, "%s", f[0]);
        bags[nb].label = (int)lab;
        snprintf(bags[nb].split, sizeof bags[nb].split, "%s", f[2]);
        nb++;
    }
    fclose(fb);
    snprintf(path, sizeof path, "%s/bag_cells.csv", dir);
    FILE *fc = rc ? NULL : fopen(path, "r");
    if (!rc && !fc) rc = ss_error_system("bag-builder", "cannot open %s", path);
    uint64_t *sent = calloc(nb ? nb : 1, sizeof *sent);
    uint8_t *announced = calloc(nb ? nb : 1, 1);
    if (!rc && (!sent || !announced)) rc = ss_error("bag-builder", "out of memory");
    lineno = 0;
    ss_stage_counts_t *cnt = ss_stage_counts(st);
    while (!rc && fgets(line, sizeof line, fc)) {
        if (lineno++ == 0) continue; /* bag_id,cell_id,path,class,instance_label */
        int n = ss_csv_split(line, f, 16);
        if (n < 3) {
            rc = ss_error("bag-builder", "%s:%d: want bag_id,cell_id,path,...", path, lineno);
            break;
        }
        size_t b = 0;
        while (b < nb && strcmp(bags[b].bag_id, f[0])) b++;
        if (b == nb) {
            ss_stage_fault(st, "%s:%d: bag '%s' is not in bags.csv; cell skipped", path, lineno, f[0]);
            continue;
        }
        if (!announced[b]) {
            char text[1024];
            snprintf(text, sizeof text, "id=%s\npath=%s\nlabel=%d\nsplit=%s\nmpp=%.6f\nsource=simulated\n",
                     bags[b].bag_id, dir, bags[b].label, bags[b].split, mpp);
            ss_msg_header_t sh = ss_msg_header_init(SS_MSG_SLIDE);
            sh.slide = sh.bag = (uint32_t)b;
            sh.label = bags[b].label;
            if (ss_sock_send_text(next, &sh, text, stop)) {
                rc = 1;
                break;
            }
            announced[b] = 1;
        }
        uint8_t *rgb = NULL;
        int w = 0, h = 0;
        cnt->in++;
        if (ss_image_load_rgb(f[2], &rgb, &w, &h)) {
            ss_stage_fault(st, "bag '%s': %s", bags[b].bag_id, ss_error_last());
            ss_error_clear();
            continue;
        }
        ss_msg_header_t ch = ss_msg_header_init(SS_MSG_CELL);
        uint32_t dims[3] = {(uint32_t)h, (uint32_t)w, 3};
        ss_msg_header_set_payload(&ch, SS_DT_U8, 3, dims);
        ch.slide = ch.bag = (uint32_t)b;
        ch.label = bags[b].label;
        ch.item = sent[b];
        ch.x = w / 2;
        ch.y = h / 2;
        ch.aux[2] = w;
        ch.aux[3] = h;
        ch.extra = (uint32_t)(mpp * 1000.0 + 0.5);
        int r = ss_sock_send(out, &ch, rgb, stop);
        free(rgb);
        if (r) {
            rc = r > 0 ? 1 : -1;
            break;
        }
        sent[b]++;
        cnt->out++;
        ss_stage_tick(st);
    }
    if (fc) fclose(fc);
    for (size_t b = 0; rc == 0 && b < nb; b++) {
        if (!announced[b]) {
            ss_stage_fault(st, "bag '%s' has no cells in bag_cells.csv", bags[b].bag_id);
            continue;
        }
        ss_msg_header_t c = ss_msg_header_init(SS_MSG_COUNT);
        c.slide = c.bag = (uint32_t)b;
        c.label = bags[b].label;
        c.flags = SS_COUNT_PARTS;
        c.item = 1;
        if (ss_sock_send(next, &c, NULL, stop)) rc = 1;
        c.flags = SS_COUNT_ITEMS;
        c.item = sent[b];
        if (!rc && ss_sock_send(next, &c, NULL, stop)) rc = 1;
    }
    if (rc == 0) {
        size_t closed = 0;
        for (size_t b = 0; b < nb; b++) closed += announced[b];
        ss_msg_header_t e = ss_msg_header_init(SS_MSG_END);
        e.item = closed;
        if (ss_sock_send(next, &e, NULL, stop)) rc = 1;
        ss_info("bag-builder: %zu simulated bags, %llu cells streamed", closed,
                (unsigned long long)cnt->out);
    }
    free(sent);
    free(announced);
    free(bags);
    return rc;
}

int ss_main_bag_builder(int argc, char **argv)
{
    const char *in_ep = NULL, *ctl_ep = NULL, *out_ep = NULL, *next_ep = NULL, *out_dir = NULL;
    const char *simulated = NULL;
    double sim_mpp = 0;
    int cap = 0, producers = 1, hwm = 256;
    int64_t seed = 1;
    double idle_timeout = 10;
    ss_stage_args_t sa = {0};
    ss_arg_t args[] = {
        {"--in", SS_ARG_STRING, &in_ep, "EP", "cells from the croppers (PULL, binds)", 0, 0},
        {"--control", SS_ARG_STRING, &ctl_ep, "EP", "announcements from tiler and croppers (PULL, binds)", 0, 0},
        {"--out", SS_ARG_STRING, &out_ep, "EP", "cells with their bag id (PUSH, binds)", 0, 0},
        {"--next", SS_ARG_STRING, &next_ep, "EP", "the next collector's announcements (PUSH, connects)", 0, 0},
        {"--bags-dir", SS_ARG_STRING, &out_dir, "DIR", "write bags.csv and bag_cells.csv here", 0, 0},
        {"--simulated", SS_ARG_STRING, &simulated, "DIR", "stream the bags `bags simulate` wrote in DIR (instead of --in/--control)", 0, 0},
        {"--mpp", SS_ARG_DOUBLE, &sim_mpp, "M", "with --simulated: microns per pixel of the cell images", 0.01, 100},
        {"--cap", SS_ARG_INT, &cap, "N", "keep a seeded sample of at most N cells per bag", 1, 100000000},
        {"--seed", SS_ARG_I64, &seed, "S", "sampling seed (default 1)", 0, 0},
        {"--producers", SS_ARG_INT, &producers, "N", "END messages to wait for (default 1)", 1, 1000000},
        {"--idle-timeout", SS_ARG_DOUBLE, &idle_timeout, "S", "after END, wait S quiet seconds for missing cells (default 10)", 0.1, 1e6},
        {"--hwm", SS_ARG_INT, &hwm, "N", "high-water mark (default 256)", 1, 10000000},
        SS_STAGE_ARGS(sa),
        {0},
    };
    int rc = ss_args_parse(argc, argv,
                           "--in EP --control EP --out EP --next EP [options]\n"
                           "       slidestream bag-builder --simulated DIR --mpp M --out EP --next EP\n\n"
                           "Groups each slide's cells into a bag with the slide's label.",
                           args, NULL, NULL);
    if (rc) return rc > 0 ? 0 : (ss_error_report(NULL), 2);
    if (simulated) {
        if (ss_args_require("bag-builder", "--out", out_ep) ||
            ss_args_require("bag-builder", "--next", next_ep)) {
            ss_error_report(NULL);
            return 2;
        }
        if (sim_mpp <= 0) {
            ss_error_report("bag-builder: --simulated needs --mpp (microns per pixel of the cell images)");
            return 2;
        }
        ss_log_set_quiet(sa.quiet);
        ss_stage_t *st = ss_stage_open("bag-builder", &sa);
        ss_sock_t *out = st ? ss_sock_new(SS_PUSH, out_ep, 1, hwm) : NULL;
        ss_sock_t *next = out ? ss_sock_new(SS_PUSH, next_ep, 0, 100000) : NULL;
        int r = next ? stream_simulated(st, simulated, out, next, sim_mpp) : -1;
        if (r < 0) ss_error_report("bag-builder: cannot start");
        if (st) ss_stage_flush_status(st, r == 0 ? "done" : "failed");
        ss_sock_destroy(&next);
        ss_sock_destroy(&out);
        ss_stage_destroy(&st);
        return r == 0 ? 0 : 1;
    }
    if (ss_args_require("bag-builder", "--in", in_ep) ||
        ss_args_require("bag-builder", "--control", ctl_ep) ||
        ss_args_require("bag-builder", "--out", out_ep) ||
        ss_args_require("bag-builder", "--next", next_ep)) {
        ss_error_report(NULL);
        return 2;
    }
    ss_log_set_quiet(sa.quiet);
    FILE *bags_csv = NULL, *cells_csv = NULL;
    char bags_path[4096] = "", cells_path[4096] = "";
    if (out_dir) {
        mkdir(out_dir, 0777);
        snprintf(bags_path, sizeof bags_path, "%s/bags.csv.tmp", out_dir);
        snprintf(cells_path, sizeof cells_path, "%s/bag_cells.csv.tmp", out_dir);
        bags_csv = fopen(bags_path, "w");
        cells_csv = bags_csv ? fopen(cells_path, "w") : NULL;
        if (!cells_csv) {
            fprintf(stderr, "slidestream: bag-builder: cannot write in %s\n", out_dir);
            if (bags_csv) fclose(bags_csv);
            return 1;
        }
        fprintf(bags_csv, "bag_id,label,split,n_cells,complete,faults,path\n");
        fprintf(cells_csv, "bag_id,cell_id,x,y,bbox_x,bbox_y,bbox_w,bbox_h,area\n");
    }
    ss_stage_t *st = ss_stage_open("bag-builder", &sa);
    ss_sock_t *in = st ? ss_sock_new(SS_PULL, in_ep, 1, hwm) : NULL;
    ss_sock_t *ctl = in ? ss_sock_new(SS_PULL, ctl_ep, 1, 100000) : NULL;
    ss_sock_t *out = ctl ? ss_sock_new(SS_PUSH, out_ep, 1, hwm) : NULL;
    ss_sock_t *next = out ? ss_sock_new(SS_PUSH, next_ep, 0, 100000) : NULL;
    builder_t B = {st, out, next, cap, seed, cells_csv, bags_csv, 0, 0};
    ss_collector_config_t cfg = {
        .name = "bag-builder",
        .data_types = SS_COLLECT_TYPE(SS_MSG_CELL),
        .producers = producers,
        .idle_timeout = idle_timeout,
        .bag_user_size = sizeof(cells_t),
        .arg = &B,
        .item = on_cell,
        .meta = on_slide,
        .complete = on_complete,
        .incomplete = on_incomplete,
        .error = on_error,
        .fault_text = fault_text,
        .release = release_cells,
    };
    ss_collector_t *coll = next ? ss_collector_new(st, &cfg) : NULL;
    if (!coll) {
        ss_error_report("bag-builder: cannot start");
        ss_sock_destroy(&next);
        ss_sock_destroy(&out);
        ss_sock_destroy(&ctl);
        ss_sock_destroy(&in);
        ss_stage_destroy(&st);
        if (bags_csv) fclose(bags_csv), fclose(cells_csv);
        return 1;
    }
    ss_stage_set_unit(st, "cells", 0);
    ss_sock_t *socks[2] = {in, ctl};
    B.stopped = ss_collector_run(coll, socks, 2) != 0;
    /* Name and close (flagged) every bag still open; a stopped run closes none. */
    int incomplete = ss_collector_report(coll);
    int all_complete = !B.stopped && !incomplete;
    if (!B.stopped) {
        ss_msg_header_t e = ss_msg_header_init(SS_MSG_END);
        e.item = B.closed;
        ss_sock_send(next, &e, NULL, ss_stage_stop_flag(st));
    }
    ss_collector_destroy(&coll);
    if (bags_csv && B.stopped) {
        /* A stopped run keeps the previous manifest; its partial one goes. */
        fclose(bags_csv);
        fclose(cells_csv);
        unlink(bags_path);
        unlink(cells_path);
    } else if (bags_csv) {
        int bad = fclose(bags_csv) | fclose(cells_csv);
        char final[4096];
        snprintf(final, sizeof final, "%s/bags.csv", out_dir);
        bad |= rename(bags_path, final);
        snprintf(final, sizeof final, "%s/bag_cells.csv", out_dir);
        bad |= rename(cells_path, final);
        if (bad) fprintf(stderr, "slidestream: bag-builder: cannot write the bag manifest in %s\n", out_dir);
    }
    ss_stage_flush_status(st, all_complete ? "complete" : "incomplete");
    ss_sock_destroy(&next);
    ss_sock_destroy(&out);
    ss_sock_destroy(&ctl);
    ss_sock_destroy(&in);
    ss_stage_destroy(&st);
    return B.stopped ? 1 : (all_complete ? 0 : 3);
}
