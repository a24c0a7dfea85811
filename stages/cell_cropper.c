/* cell-cropper — a scalable worker: pulls tiles, finds the cells each tile owns (centre in the
 * tile's core, so overlaps never duplicate a cell) and pushes one centred crop per cell.
 *   data in:     PULL --in (connects by default) TILE messages
 *   data out:    PUSH --out (connects by default) CELL messages
 *   control out: PUSH --control (connects) to the collector: per tile, how many cells it had
 * Start any number of them against one tiler; each tile is handled by exactly one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "slidestream/args.h"
#include "slidestream/cells.h"
#include "slidestream/log.h"
#include "slidestream/transport.h"

#define MAX_CELLS_PER_TILE 65536

/* Detect and emit the cells of one tile. Returns 0, -1 on a per-tile fault (reported), -2 on
 * stop. */
static int crop_tile(ss_stage_t *st, ss_sock_t *out, ss_sock_t *ctl, const ss_msg_t *m,
                     const ss_cells_params_t *params, int crop, uint8_t *crop_buf)
{
    volatile int *stop = ss_stage_stop_flag(st);
    const ss_msg_header_t *th = &m->h;
    int w = (int)th->shape[1], h = (int)th->shape[0];
    double mpp = th->extra / 1000.0;
    ss_cells_tile_t tile = {(double)th->x, (double)th->y, th->scale,
                            th->x + th->aux[0], th->y + th->aux[1], th->aux[2], th->aux[3]};
    ss_cell_list_t cells = {0};
    if (ss_cells_detect_tile(m->data, w, h, mpp, &tile, params, &cells)) {
        ss_stage_fault(st, "slide %u tile %u at (%lld,%lld): %s", th->slide, th->part,
                       (long long)th->x, (long long)th->y, ss_error_last());
        ss_error_clear();
        ss_cell_list_free(&cells);
        /* The tile still gets its count (zero cells) so the collector is not left waiting;
         * the fault is counted and reported. */
        cells.n = 0;
    }
    if (cells.n > MAX_CELLS_PER_TILE) {
        ss_stage_fault(st, "slide %u tile %u: %zu cells, keeping the first %d", th->slide,
                       th->part, cells.n, MAX_CELLS_PER_TILE);
        cells.n = MAX_CELLS_PER_TILE;
    }
    int rc = 0;
    for (size_t i = 0; i < cells.n; i++) {
        const ss_cell_t *c = &cells.cells[i];
        double px, py;
        ss_cells_tile_to_pixels(&tile, c->x, c->y, &px, &py);
        ss_cells_crop(m->data, w, h, px, py, crop, crop_buf);
        ss_msg_header_t ch = ss_msg_header_init(SS_MSG_CELL);
        uint32_t dims[3] = {(uint32_t)crop, (uint32_t)crop, 3};
        ss_msg_header_set_payload(&ch, SS_DT_U8, 3, dims);
        ch.slide = th->slide;
        ch.part = th->part;
        ch.bag = th->bag;
        ch.label = th->label;
        ch.item = (uint64_t)th->part * MAX_CELLS_PER_TILE + i;
        ch.x = (int64_t)(c->x + 0.5);
        ch.y = (int64_t)(c->y + 0.5);
        ch.aux[0] = c->bbox_x;
        ch.aux[1] = c->bbox_y;
        ch.aux[2] = c->bbox_w;
        ch.aux[3] = c->bbox_h;
        ch.area = (uint32_t)(c->area + 0.5);
        ch.scale = th->scale;
        ch.extra = th->extra;
        ch.flags = (uint8_t)c->kind;
        int r = ss_sock_send(out, &ch, crop_buf, stop);
        if (r) {
            rc = r > 0 ? -2 : -1;
            break;
        }
        ss_stage_counts(st)->out++;
    }
    if (rc == 0) {
        ss_msg_header_t n = ss_msg_header_init(SS_MSG_COUNT);
        n.slide = th->slide;
        n.part = th->part;
        n.flags = SS_COUNT_ITEMS;
        n.item = cells.n;
        if (ss_sock_send(ctl, &n, NULL, stop)) rc = -2;
    }
    ss_cell_list_free(&cells);
    return rc;
}

int ss_main_cell_cropper(int argc, char **argv)
{
    const char *in_ep = NULL, *out_ep = NULL, *ctl_ep = NULL, *mode = "nucleated";
    int crop = SS_CELLS_DEFAULT_CROP, hwm = 8;
    ss_stage_args_t sa = {0};
    ss_arg_t args[] = {
        {"--in", SS_ARG_STRING, &in_ep, "EP", "tiles to pull (PULL, connects)", 0, 0},
        {"--out", SS_ARG_STRING, &out_ep, "EP", "cell crops (PUSH, connects)", 0, 0},
        {"--control", SS_ARG_STRING, &ctl_ep, "EP", "the collector's announcements (PUSH, connects)", 0, 0},
        {"--cells", SS_ARG_STRING, &mode, "nucleated|all", "which cells (default nucleated)", 0, 0},
        {"--crop", SS_ARG_INT, &crop, "PX", "crop size in tile pixels (default 96)", 8, 4096},
        {"--hwm", SS_ARG_INT, &hwm, "N", "high-water mark in messages (default 8: small queues balance the load)", 1, 1000000},
        SS_STAGE_ARGS(sa),
        {0},
    };
    int rc = ss_args_parse(argc, argv,
                           "--in EP --out EP --control EP [options]\n\n"
                           "Finds the cells each tile owns and pushes one centred crop per cell.",
                           args, NULL, NULL);
    if (rc) return rc > 0 ? 0 : (ss_error_report(NULL), 2);
    if (ss_args_require("cell-cropper", "--in", in_ep) ||
        ss_args_require("cell-cropper", "--out", out_ep) ||
        ss_args_require("cell-cropper", "--control", ctl_ep)) {
        ss_error_report(NULL);
        return 2;
    }
    ss_cells_mode_t cm;
    if (!strcmp(mode, "nucleated")) cm = SS_CELLS_NUCLEATED;
    else if (!strcmp(mode, "all")) cm = SS_CELLS_ALL;
    else {
        fprintf(stderr, "slidestream: cell-cropper: --cells '%s': want nucleated or all\n", mode);
        return 2;
    }
    ss_log_set_quiet(sa.quiet);
    ss_cells_params_t params;
    ss_cells_params_default(&params, cm);
    ss_stage_t *st = ss_stage_open("cell-cropper", &sa);
    ss_sock_t *in = st ? ss_sock_new(SS_PULL, in_ep, 0, hwm) : NULL;
    ss_sock_t *out = in ? ss_sock_new(SS_PUSH, out_ep, 0, hwm) : NULL;
    ss_sock_t *ctl = out ? ss_sock_new(SS_PUSH, ctl_ep, 0, 100000) : NULL;
    uint8_t *crop_buf = malloc((size_t)crop * crop * 3);
    if (!ctl || !crop_buf) {
        ss_error_report("cell-cropper: cannot start");
        free(crop_buf);
        ss_sock_destroy(&ctl);
        ss_sock_destroy(&out);
        ss_sock_destroy(&in);
        ss_stage_destroy(&st);
        return 1;
    }
    ss_stage_set_unit(st, "cells", 0);
    ss_stage_counts_t *c = ss_stage_counts(st);
    int exit_code = 0;
    for (;;) {
        ss_msg_t m;
        int r = ss_stage_next(st, &in, 1, 500, &m, NULL);
        if (r == -2) break;
        if (r != 1) continue;
        if (m.h.type != SS_MSG_TILE) {
            c->rejected++;
            ss_stage_fault(st, "expected TILE messages, got %s", ss_msg_type_name(m.h.type));
            ss_msg_release(&m);
            continue;
        }
        c->in++;
        int t = crop_tile(st, out, ctl, &m, &params, crop, crop_buf);
        ss_msg_release(&m);
        if (t == -2) break;
    }
    ss_stage_flush_status(st, "stopped");
    free(crop_buf);
    ss_sock_destroy(&ctl);
    ss_sock_destroy(&out);
    ss_sock_destroy(&in);
    ss_stage_destroy(&st);
    return exit_code;
}
