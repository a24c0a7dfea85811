/* detect — runs the tiler and the cell detector in one process over slides or plain images and
 * writes one CSV row per cell (level-0 pixels), plus optional pictures: a QuPath GeoJSON of the
 * cells, a gallery of crops and the thumbnail with the detections drawn on it.
 *   slidestream detect [--mpp M] [--cells nucleated|all] --out CELLS.csv [--geojson FILE] INPUT...
 * Every input is attempted; a failing input (or tile) is reported on stderr naming the file and
 * the exit status is 1 when any failed. Tiles overlap by more than a cell; each cell is written
 * by the one tile whose core holds its centre. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "slidestream/args.h"
#include "slidestream/cells.h"
#include "slidestream/log.h"
#include "slidestream/slide.h"

typedef struct {
    double mpp_flag, target_mpp;
    int tile_px, crop, gallery_max, details, use_mask;
    ss_cells_mode_t mode;
    const char *overlay;
    int ninputs;
    /* gallery crops, gathered over all inputs: [n][crop][crop][3] */
    uint8_t *crops;
    size_t ncrops;
    /* Outputs, written tile by tile so memory does not grow with the slide. */
    FILE *csv, *geo;
    int geo_first;
    int write_failed;
} detect_opts_t;

/* "a/b/name.png" + stem "slide" → "a/b/name-slide.png" when several inputs share one picture. */
static void per_input_path(const char *path, const char *input, char *out, size_t cap)
{
    const char *base = strrchr(input, '/');
    base = base ? base + 1 : input;
    char stem[512];
    snprintf(stem, sizeof stem, "%s", base);
    char *dot = strrchr(stem, '.');
    if (dot && dot != stem) *dot = '\0';
    const char *slash = strrchr(path, '/'), *ext = strrchr(path, '.');
    if (!ext || (slash && ext < slash)) ext = path + strlen(path);
    snprintf(out, cap, "%.*s-%s%s", (int)(ext - path), path, stem, ext);
}

static int write_rows(FILE *f, const char *input, const ss_cell_t *cells, size_t n, size_t id0,
                      int details)
{
    for (size_t i = 0; i < n; i++) {
        const ss_cell_t *c = &cells[i];
        /* Quote the source only when it needs it (RFC 4180). */
        if (strpbrk(input, ",\"\n")) {
            fputc('"', f);
            for (const char *q = input; *q; q++) {
                if (*q == '"') fputc('"', f);
                fputc(*q, f);
            }
            fputc('"', f);
        } else
            fputs(input, f);
        fprintf(f, ",%zu,%ld,%ld,%d,%d,%d,%d,%.0f", id0 + i, lround(c->x), lround(c->y), c->bbox_x,
                c->bbox_y, c->bbox_w, c->bbox_h, c->area);
        if (details)
            fprintf(f, ",%s,%d,%.0f", c->kind == SS_CELL_RED ? "red" : "nucleated",
                    c->touches_border, c->nucleus_area);
        fputc('\n', f);
    }
    return ferror(f) ? -1 : 0;
}

/* Detects the cells of one input and writes them (level 0) tile by tile; *ncells counts them.
 * Returns 0, or -1 after reporting when the input (or any of its tiles) failed. */
static int detect_input(const char *input, detect_opts_t *o, size_t *ncells, double *mpp_out,
                        int64_t *wh)
{
    ss_slide_t *s = ss_slide_open(input, o->mpp_flag, "flag");
    if (!s) return -1;
    const ss_slide_info_t *info = ss_slide_info(s);
    *mpp_out = info->mpp_x;
    wh[0] = info->width, wh[1] = info->height;
    /* Work at the target resolution, or at the slide's own when that is coarser (never
     * enlarge: it adds pixels, not detail). */
    double work = o->target_mpp > info->mpp_x ? o->target_mpp : info->mpp_x;
    ss_cells_params_t p;
    ss_cells_params_default(&p, o->mode);
    ss_thumb_t *th = ss_slide_thumbnail(s, 2048);
    if (!th || ss_cells_calibrate(th->rgb, th->width, th->height, &p)) {
        ss_thumb_destroy(&th);
        ss_slide_destroy(&s);
        return -1;
    }
    /* The thumbnail stays for the overlay, drawn on as tiles are done. */
    ss_tiling_opts_t to;
    ss_tiling_opts_default(&to);
    to.target_mpp = work;
    to.tile_px = o->tile_px;
    /* A small image needs no more than one tile of its own size (plus the overlap): detection
     * costs grow with the tile area, padding included. */
    double span =
        (double)(info->width > info->height ? info->width : info->height) * info->mpp_x / work;
    int overlap_px = (int)ceil(to.overlap_um / work);
    if (span + 2 * overlap_px + 2 < to.tile_px) to.tile_px = (int)ceil(span) + 2 * overlap_px + 2;
    to.use_mask = o->use_mask;
    ss_tiler_t *t = ss_tiler_new(s, &to);
    uint8_t *rgb = t ? malloc((size_t)to.tile_px * to.tile_px * 3) : NULL;
    if (!rgb) {
        if (t) ss_error("detect", "out of memory for %d px tiles", to.tile_px);
        ss_tiler_destroy(&t);
        ss_thumb_destroy(&th);
        ss_slide_destroy(&s);
        return -1;
    }
    ss_tiler_stats_t ts;
    ss_tiler_stats(t, &ts);
    ss_progress_t *pr = ss_progress_new("tiles", (uint64_t)ts.kept);
    int failed = 0;
    ss_tile_t tile;
    ss_cell_list_t list = {0}, *cells = &list;
    while (ss_tiler_next(t, &tile) == 1) {
        ss_progress_add(pr, 1);
        cells->n = 0;
        if (ss_tiler_read(t, &tile, rgb)) {
            ss_warn("detect: %s: %s", input, ss_error_last());
            ss_error_clear();
            failed = 1;
            continue;
        }
        ss_cells_tile_t ct = {(double)tile.x0, (double)tile.y0, tile.scale_x, tile.core_x,
                              tile.core_y,     tile.core_w,     tile.core_h};
        if (ss_cells_detect_tile(rgb, tile.size, tile.size, work, &ct, &p, cells)) {
            ss_warn("detect: %s: tile (%lld,%lld): %s", input, (long long)tile.x0,
                    (long long)tile.y0, ss_error_last());
            ss_error_clear();
            failed = 1;
            continue;
        }
        for (size_t i = 0; i < cells->n; i++) {
            ss_cell_t *c = &cells->cells[i];
            /* "Cut by the slide's edge" is a property of the slide, not of the tile. */
            /* The edge pixel of a resampled tile mixes slide and outside: allow one of them. */
            int m = (int)ceil(tile.scale_x) + 1;
            c->touches_border = c->bbox_x <= m || c->bbox_y <= m ||
                                c->bbox_x + c->bbox_w >= info->width - m ||
                                c->bbox_y + c->bbox_h >= info->height - m;
            if (o->gallery_max > 0 && o->ncrops < (size_t)o->gallery_max) {
                double px, py;
                ss_cells_tile_to_pixels(&ct, c->x, c->y, &px, &py);
                ss_cells_crop(rgb, tile.size, tile.size, px, py, o->crop,
                              o->crops + o->ncrops * o->crop * o->crop * 3);
                o->ncrops++;
            }
        }
        if (o->overlay)
            ss_cells_draw_overlay(th->rgb, th->width, th->height, cells->cells, cells->n,
                                  1.0 / th->scale_x);
        if (write_rows(o->csv, input, cells->cells, cells->n, *ncells, o->details) ||
            (o->geo && ss_geojson_add_cells(o->geo, cells->cells, cells->n, info->mpp_x, input,
                                            &o->geo_first))) {
            o->write_failed = 1;
            break;
        }
        *ncells += cells->n;
    }
    ss_cell_list_free(&list);
    ss_progress_destroy(&pr);
    free(rgb);
    ss_tiler_destroy(&t);
    if (o->overlay && !o->write_failed) {
        char path[4096];
        if (o->ninputs > 1)
            per_input_path(o->overlay, input, path, sizeof path);
        else
            snprintf(path, sizeof path, "%s", o->overlay);
        if (ss_image_save_rgb(path, th->rgb, th->width, th->height)) {
            ss_warn("detect: %s: overlay: %s", input, ss_error_last());
            ss_error_clear();
            failed = 1;
        }
    }
    ss_thumb_destroy(&th);
    ss_slide_destroy(&s);
    return failed ? -1 : 0;
}

int ss_main_detect(int argc, char **argv)
{
    detect_opts_t o = {0};
    const char *out = NULL, *geojson = NULL, *gallery = NULL, *mode = "nucleated";
    int quiet = 0, no_mask = 0;
    o.target_mpp = SS_CELLS_DEFAULT_TARGET_MPP;
    o.tile_px = 1024;
    o.crop = SS_CELLS_DEFAULT_CROP;
    o.gallery_max = 0;
    int gallery_n = 64;
    ss_arg_t args[] = {
        {"--mpp", SS_ARG_DOUBLE, &o.mpp_flag, "M",
         "microns per pixel for inputs that store none (plain images)", SS_MPP_MIN, SS_MPP_MAX},
        {"--cells", SS_ARG_STRING, &mode, "nucleated|all",
         "nucleated cells only (default), or every cell incl. red cells", 0, 0},
        {"--out", SS_ARG_STRING, &out, "CELLS.csv", "one row per cell (level-0 pixels)", 0, 0},
        {"--geojson", SS_ARG_STRING, &geojson, "FILE", "QuPath GeoJSON of the cells", 0, 0},
        {"--gallery", SS_ARG_STRING, &gallery, "FILE.png", "picture of the first cells' crops", 0,
         0},
        {"--gallery-cells", SS_ARG_INT, &gallery_n, "N", "cells in the gallery (default 64)", 1,
         4096},
        {"--overlay", SS_ARG_STRING, &o.overlay, "FILE.png",
         "thumbnail with the detections drawn (FILE-<input>.png for several inputs)", 0, 0},
        {"--target-mpp", SS_ARG_DOUBLE, &o.target_mpp, "M",
         "resolution for detection and crops (default 0.25; the input's own if coarser)",
         SS_MPP_MIN, SS_MPP_MAX},
        {"--tile", SS_ARG_INT, &o.tile_px, "PX", "tile size in target pixels (default 1024)", 128,
         8192},
        {"--crop", SS_ARG_INT, &o.crop, "PX", "crop size for the gallery (default 96)", 8, 1024},
        {"--details", SS_ARG_FLAG, &o.details, NULL,
         "append columns kind,touches_border,nucleus_area", 0, 0},
        {"--no-mask", SS_ARG_FLAG, &no_mask, NULL, "visit every tile, glass included", 0, 0},
        {"--quiet", SS_ARG_FLAG, &quiet, NULL, "no progress lines", 0, 0},
        {0},
    };
    int npos = 0;
    char **pos = NULL;
    int rc = ss_args_parse(argc, argv,
                           "[--mpp M] [--cells nucleated|all] --out CELLS.csv [--geojson FILE] "
                           "INPUT...\n\n"
                           "Tiles slides or plain images and detects cells; writes "
                           "source,cell_id,x,y,bbox_x,bbox_y,bbox_w,bbox_h,area\n"
                           "(level-0 pixels; x, y the centre; area in level-0 px^2).",
                           args, &npos, &pos);
    if (rc) {
        free(pos);
        return rc > 0 ? 0 : (ss_error_report(NULL), 2);
    }
    if (ss_args_require("detect", "--out", out)) {
        free(pos);
        ss_error_report(NULL);
        return 2;
    }
    if (npos < 1) {
        free(pos);
        fprintf(stderr, "slidestream: detect: no INPUT given (see --help)\n");
        return 2;
    }
    if (!strcmp(mode, "nucleated"))
        o.mode = SS_CELLS_NUCLEATED;
    else if (!strcmp(mode, "all"))
        o.mode = SS_CELLS_ALL;
    else {
        free(pos);
        fprintf(stderr, "slidestream: detect: --cells '%s': want nucleated or all\n", mode);
        return 2;
    }
    ss_log_set_quiet(quiet);
    o.use_mask = !no_mask;
    o.ninputs = npos;
    if (gallery) {
        o.gallery_max = gallery_n;
        o.crops = malloc((size_t)gallery_n * o.crop * o.crop * 3);
        if (!o.crops) {
            free(pos);
            fprintf(stderr, "slidestream: detect: out of memory for the gallery\n");
            return 1;
        }
    }
    char tmp_out[4096], tmp_geo[4096];
    snprintf(tmp_out, sizeof tmp_out, "%s.tmp", out);
    FILE *f = fopen(tmp_out, "w"), *g = NULL;
    if (!f) {
        ss_error_system("detect", "cannot write %s", tmp_out);
        ss_error_report(NULL);
        free(pos), free(o.crops);
        return 1;
    }
    if (geojson) {
        snprintf(tmp_geo, sizeof tmp_geo, "%s.tmp", geojson);
        if (!(g = fopen(tmp_geo, "w"))) {
            ss_error_system("detect", "cannot write %s", tmp_geo);
            ss_error_report(NULL);
            fclose(f);
            remove(tmp_out);
            free(pos), free(o.crops);
            return 1;
        }
        ss_geojson_begin(g);
    }
    fprintf(f, "source,cell_id,x,y,bbox_x,bbox_y,bbox_w,bbox_h,area%s\n",
            o.details ? ",kind,touches_border,nucleus_area" : "");
    int failures = 0;
    size_t total = 0;
    double t0 = ss_now();
    o.csv = f;
    o.geo = g;
    o.geo_first = 1;
    for (int i = 0; i < npos; i++) {
        size_t ncells = 0;
        double mpp = 0;
        int64_t wh[2] = {0, 0};
        /* A partly failed input still keeps the cells of the tiles that worked. */
        int bad = detect_input(pos[i], &o, &ncells, &mpp, wh);
        if (o.write_failed) {
            ss_error_system("detect", "writing %s", out);
            ss_error_report(NULL);
            failures++;
            break;
        }
        if (bad) {
            const char *why = ss_error_buffer();
            fprintf(stderr, "slidestream: detect: %s failed: %s", pos[i],
                    *why ? why : "see the messages above\n");
            ss_error_clear();
            failures++;
        }
        ss_info("detect: %s: %zu cells (%lldx%lld px, %.4f um/px)", pos[i], ncells,
                (long long)wh[0], (long long)wh[1], mpp);
        total += ncells;
    }
    int werr = fclose(f) != 0;
    if (g) werr |= ss_geojson_end(g) != 0, werr |= fclose(g) != 0;
    if (werr || rename(tmp_out, out) || (g && rename(tmp_geo, geojson))) {
        ss_error_system("detect", "cannot finish %s", out);
        ss_error_report(NULL);
        failures++;
    }
    if (gallery && o.ncrops > 0 && ss_cells_gallery_save(gallery, o.crops, o.ncrops, o.crop, 16)) {
        ss_error_report(NULL);
        failures++;
    }
    ss_info("detect: %zu cells from %d inputs in %.1f s, %d failed", total, npos, ss_now() - t0,
            failures);
    free(o.crops);
    free(pos);
    return failures ? 1 : 0;
}
