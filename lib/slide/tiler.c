/* Tiling plan and iterator.
 *
 * Geometry, per axis (x shown; y is the same with mpp_y):
 *   sc  = target_mpp / mpp_x          level-0 pixels per tile pixel
 *   O   = overlap in tile pixels, S = T - O the core size, Ol = O / 2
 *   b_i = round(i * S * sc)           core boundaries in level-0, i = 0..n-1, b_n = width
 *   core i = [b_i, b_{i+1})           so the cores partition [0, width) exactly
 *   tile i origin = b_i - round(Ol * sc); the tile spans T tile pixels from there.
 * Boundaries are integers computed once from i, so neighbouring tiles agree on them exactly and a
 * level-0 point is in exactly one core. Tiles are generated on the fly (O(1) memory besides the
 * mask); the count of kept tiles is known right after planning, for counted completion.
 *
 * The tiler borrows the slide (must outlive it) and owns its mask. */
#include "slide_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/error.h"

typedef struct {
    int n;          /* tiles along the axis */
    double stride0; /* S * sc, level-0 */
    int64_t extent; /* slide width or height */
    int64_t lead;   /* round(Ol * sc): level-0 distance from tile origin to core start */
} axis_t;

struct ss_tiler {
    ss_slide_t *slide;
    ss_tiling_opts_t o;
    double scx, scy;
    int overlap, stride;
    axis_t ax, ay;
    ss_mask_t *mask;
    int64_t next; /* next grid index to look at */
    int64_t kept, skipped, emitted;
};

void ss_tiling_opts_default(ss_tiling_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->target_mpp = 0;
    o->tile_px = 512;
    o->overlap_um = 20.0;
    o->overlap_px = 0;
    o->use_mask = 1;
    o->mask_mpp = 0;
}

static int64_t boundary(const axis_t *a, int i)
{
    if (i >= a->n) return a->extent;
    return (int64_t)llround(i * a->stride0);
}

static int axis_plan(axis_t *a, int64_t extent, double stride0, int64_t lead)
{
    a->extent = extent;
    a->stride0 = stride0;
    a->lead = lead;
    double n = ceil((double)extent / stride0 - 1e-9);
    if (n < 1) n = 1;
    if (n > 1e8) return -1;
    a->n = (int)n;
    /* Rounding must not leave an empty last core. */
    while (a->n > 1 && llround((a->n - 1) * stride0) >= extent)
        a->n--;
    return 0;
}

static void make_tile(const ss_tiler_t *t, int col, int row, ss_tile_t *tile)
{
    memset(tile, 0, sizeof *tile);
    tile->index = (int64_t)row * t->ax.n + col;
    tile->col = col;
    tile->row = row;
    tile->size = t->o.tile_px;
    tile->target_mpp = t->o.target_mpp;
    tile->scale_x = t->scx;
    tile->scale_y = t->scy;
    int64_t bx0 = boundary(&t->ax, col), bx1 = boundary(&t->ax, col + 1);
    int64_t by0 = boundary(&t->ay, row), by1 = boundary(&t->ay, row + 1);
    tile->core_x = bx0;
    tile->core_y = by0;
    tile->core_w = bx1 - bx0;
    tile->core_h = by1 - by0;
    tile->x0 = bx0 - t->ax.lead;
    tile->y0 = by0 - t->ay.lead;
    tile->core_px_x0 = (double)(bx0 - tile->x0) / t->scx;
    tile->core_px_x1 = (double)(bx1 - tile->x0) / t->scx;
    tile->core_px_y0 = (double)(by0 - tile->y0) / t->scy;
    tile->core_px_y1 = (double)(by1 - tile->y0) / t->scy;
}

static int tile_kept(const ss_tiler_t *t, const ss_tile_t *tile)
{
    if (!t->mask) return 1;
    return ss_mask_any(t->mask, tile->core_x, tile->core_y, tile->core_w, tile->core_h);
}

ss_tiler_t *ss_tiler_new(ss_slide_t *s, const ss_tiling_opts_t *opts)
{
    const ss_slide_info_t *in = ss_slide_info(s);
    ss_tiler_t *t = calloc(1, sizeof *t);
    if (!t) {
        ss_error("slide", "out of memory");
        return NULL;
    }
    if (opts)
        t->o = *opts;
    else
        ss_tiling_opts_default(&t->o);
    t->slide = s;
    ss_tiling_opts_t *o = &t->o;
    if (o->target_mpp <= 0) o->target_mpp = in->mpp_x;
    if (!isfinite(o->target_mpp) || o->target_mpp > 1000) {
        ss_error("slide", "'%s': bad target mpp %g", in->path, o->target_mpp);
        goto fail;
    }
    if (o->tile_px < 8 || o->tile_px > 16384) {
        ss_error("slide", "tile size %d out of range (8-16384)", o->tile_px);
        goto fail;
    }
    if (o->overlap_px > 0)
        t->overlap = o->overlap_px;
    else if (o->overlap_um >= 0 && isfinite(o->overlap_um))
        t->overlap = (int)ceil(o->overlap_um / o->target_mpp - 1e-9);
    else {
        ss_error("slide", "bad overlap %g um", o->overlap_um);
        goto fail;
    }
    if (t->overlap >= o->tile_px) {
        ss_error("slide",
                 "overlap %d px (%.3g um at %.3g um/px) must be smaller than the tile size "
                 "%d px",
                 t->overlap, t->overlap * o->target_mpp, o->target_mpp, o->tile_px);
        goto fail;
    }
    t->stride = o->tile_px - t->overlap;
    t->scx = o->target_mpp / in->mpp_x;
    t->scy = o->target_mpp / in->mpp_y;
    if (t->stride * t->scx < 1 || t->stride * t->scy < 1) {
        ss_error("slide", "'%s': a tile core of %d px at %g um/px is smaller than one slide pixel",
                 in->path, t->stride, o->target_mpp);
        goto fail;
    }
    int ol = t->overlap / 2;
    if (axis_plan(&t->ax, in->width, t->stride * t->scx, llround(ol * t->scx)) ||
        axis_plan(&t->ay, in->height, t->stride * t->scy, llround(ol * t->scy))) {
        ss_error("slide", "'%s': too many tiles", in->path);
        goto fail;
    }
    if (o->use_mask) {
        t->mask = ss_mask_new(s, o->mask_mpp);
        if (!t->mask) goto fail;
    }
    /* Count kept tiles now so a producer can announce them before streaming. */
    ss_tile_t tile;
    for (int r = 0; r < t->ay.n; r++)
        for (int c = 0; c < t->ax.n; c++) {
            make_tile(t, c, r, &tile);
            if (tile_kept(t, &tile))
                t->kept++;
            else
                t->skipped++;
        }
    return t;
fail:
    ss_tiler_destroy(&t);
    return NULL;
}

void ss_tiler_destroy(ss_tiler_t **tp)
{
    if (!tp || !*tp) return;
    ss_mask_destroy(&(*tp)->mask);
    free(*tp);
    *tp = NULL;
}

int ss_tiler_next(ss_tiler_t *t, ss_tile_t *tile)
{
    int64_t grid = (int64_t)t->ax.n * t->ay.n;
    while (t->next < grid) {
        int64_t i = t->next++;
        make_tile(t, (int)(i % t->ax.n), (int)(i / t->ax.n), tile);
        if (tile_kept(t, tile)) {
            t->emitted++;
            return 1;
        }
    }
    return 0;
}

void ss_tiler_rewind(ss_tiler_t *t)
{
    t->next = 0;
    t->emitted = 0;
}

int ss_tiler_tile(const ss_tiler_t *t, int col, int row, ss_tile_t *tile)
{
    if (col < 0 || row < 0 || col >= t->ax.n || row >= t->ay.n)
        return ss_error("slide", "tile (%d, %d) outside the %dx%d grid", col, row, t->ax.n,
                        t->ay.n);
    make_tile(t, col, row, tile);
    return 0;
}

int ss_tiler_read(ss_tiler_t *t, const ss_tile_t *tile, uint8_t *rgb_out)
{
    return ss_slide_read_region(t->slide, tile->x0, tile->y0, tile->target_mpp, tile->size,
                                tile->size, rgb_out);
}

void ss_tiler_stats(const ss_tiler_t *t, ss_tiler_stats_t *st)
{
    memset(st, 0, sizeof *st);
    st->cols = t->ax.n;
    st->rows = t->ay.n;
    st->grid = (int64_t)t->ax.n * t->ay.n;
    st->kept = t->kept;
    st->skipped_empty = t->skipped;
    st->emitted = t->emitted;
    st->overlap_px = t->overlap;
    st->stride_px = t->stride;
    st->target_mpp = t->o.target_mpp;
}

const ss_mask_t *ss_tiler_mask(const ss_tiler_t *t)
{
    return t->mask;
}

void ss_tile_to_level0(const ss_tile_t *t, double px, double py, double *x, double *y)
{
    *x = (double)t->x0 + px * t->scale_x;
    *y = (double)t->y0 + py * t->scale_y;
}

int ss_tile_owns(const ss_tile_t *t, double px, double py)
{
    double x, y;
    ss_tile_to_level0(t, px, py, &x, &y);
    return x >= (double)t->core_x && x < (double)(t->core_x + t->core_w) &&
           y >= (double)t->core_y && y < (double)(t->core_y + t->core_h);
}
