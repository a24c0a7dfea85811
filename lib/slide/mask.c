/* Foreground mask: which parts of the slide are not empty glass.
 *
 * Smears have no tissue contours: cells are sparse dots on pale glass, so Otsu-plus-contours
 * (CLAM) loses them. We decide per thumbnail pixel instead. The background brightness is
 * estimated per block of about 250 µm (a high percentile, then the maximum over neighbouring
 * blocks so a block crowded with cells borrows glass from its neighbours), which follows uneven
 * illumination. A pixel is foreground when it is clearly more saturated than the glass or
 * clearly darker than the local glass. Dark-field (fluorescence) slides are detected by their
 * dark median and use the mirror rule (clearly brighter than the local background). One pixel of
 * dilation keeps a lone cell's tile. No minimum area, no contour filtering.
 *
 * The mask owns its pixel array; it keeps no pointer to the slide. */
#include "slide_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/error.h"

#define MASK_DEFAULT_MPP 8.0
#define MASK_MIN_SIDE 512
#define MASK_MAX_SIDE 4096
#define BLOCK_UM 250.0

/* p-quantile (0..1) of a 256-bin histogram with `n` samples. */
static int hist_quantile(const uint32_t *hist, uint64_t n, double p)
{
    if (n == 0) return 0;
    uint64_t want = (uint64_t)(p * (double)(n - 1));
    uint64_t c = 0;
    for (int v = 0; v < 256; v++) {
        c += hist[v];
        if (c > want) return v;
    }
    return 255;
}

static double choose_mpp(const ss_slide_info_t *in, double req)
{
    double ext = fmax((double)in->width * in->mpp_x, (double)in->height * in->mpp_y);
    double m = req > 0 ? req : MASK_DEFAULT_MPP;
    if (req <= 0 && ext / m < MASK_MIN_SIDE) m = ext / MASK_MIN_SIDE;
    if (ext / m > (req > 0 ? 16384 : MASK_MAX_SIDE)) m = ext / (req > 0 ? 16384 : MASK_MAX_SIDE);
    if (m < in->mpp_x) m = in->mpp_x; /* never finer than the slide itself */
    return m;
}

ss_mask_t *ss_mask_new(ss_slide_t *s, double mask_mpp)
{
    const ss_slide_info_t *in = ss_slide_info(s);
    double m = choose_mpp(in, mask_mpp);
    ss_thumb_t *t = ss_slide_thumbnail_mpp(s, m);
    if (!t) {
        ss_error("slide", "'%s': cannot compute the foreground mask", s->path);
        return NULL;
    }
    int w = t->width, h = t->height;
    size_t np = (size_t)w * (size_t)h;
    ss_mask_t *mk = calloc(1, sizeof *mk);
    uint8_t *lum = malloc(np), *sat = malloc(np), *raw = calloc(np, 1);
    int bs = (int)fmax(8.0, floor(BLOCK_UM / m + 0.5));
    int bw = (w + bs - 1) / bs, bh = (h + bs - 1) / bs;
    uint8_t *blk = malloc((size_t)bw * (size_t)bh), *blk2 = malloc((size_t)bw * (size_t)bh);
    uint32_t *hist = calloc(256, sizeof *hist);
    if (!mk || !lum || !sat || !raw || !blk || !blk2 || !hist) {
        ss_error("slide", "out of memory (mask %dx%d)", w, h);
        goto fail;
    }
    mk->width = w;
    mk->height = h;
    mk->mpp = m;
    mk->scale_x = t->scale_x;
    mk->scale_y = t->scale_y;
    mk->slide_width = in->width;
    mk->slide_height = in->height;

    for (size_t i = 0; i < np; i++) {
        const uint8_t *p = t->rgb + 3 * i;
        int r = p[0], g = p[1], b = p[2];
        int mx = r > g ? (r > b ? r : b) : (g > b ? g : b);
        int mn = r < g ? (r < b ? r : b) : (g < b ? g : b);
        lum[i] = (uint8_t)((77 * r + 150 * g + 29 * b) >> 8);
        sat[i] = (uint8_t)(mx ? (255 * (mx - mn)) / mx : 0);
        hist[lum[i]]++;
    }
    int median = hist_quantile(hist, np, 0.5);
    int dark = median < 100;
    mk->dark_field = dark;

    /* Per-block background level: bright-field glass is the bright end, dark-field the dark end. */
    for (int by = 0; by < bh; by++)
        for (int bx = 0; bx < bw; bx++) {
            memset(hist, 0, 256 * sizeof *hist);
            uint64_t n = 0;
            for (int y = by * bs; y < (by + 1) * bs && y < h; y++)
                for (int x = bx * bs; x < (bx + 1) * bs && x < w; x++) {
                    hist[lum[(size_t)y * w + x]]++;
                    n++;
                }
            blk[(size_t)by * bw + bx] = (uint8_t)hist_quantile(hist, n, dark ? 0.10 : 0.90);
        }
    /* Crowded blocks borrow the background of their neighbours. */
    for (int by = 0; by < bh; by++)
        for (int bx = 0; bx < bw; bx++) {
            int best = blk[(size_t)by * bw + bx];
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    int yy = by + dy, xx = bx + dx;
                    if (yy < 0 || yy >= bh || xx < 0 || xx >= bw) continue;
                    int v = blk[(size_t)yy * bw + xx];
                    if (dark ? v < best : v > best) best = v;
                }
            blk2[(size_t)by * bw + bx] = (uint8_t)best;
        }
    /* A slide filled edge to edge with cells has no glass at all: don't let the estimate fall far
     * below the brightest glass seen on the slide (bright-field only). */
    if (!dark) {
        memset(hist, 0, 256 * sizeof *hist);
        for (size_t i = 0; i < np; i++)
            hist[lum[i]]++;
        int glass = hist_quantile(hist, np, 0.98);
        for (int i = 0; i < bw * bh; i++)
            if (blk2[i] < (int)(0.8 * glass)) blk2[i] = (uint8_t)(0.8 * glass);
    }

    /* Saturation of the glass itself (scanners tint it), measured on background-bright pixels. */
    memset(hist, 0, 256 * sizeof *hist);
    uint64_t nbg = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            int bg = blk2[(size_t)(y / bs) * bw + x / bs];
            if (dark ? lum[i] <= bg + 4 : lum[i] >= bg - 8) {
                hist[sat[i]]++;
                nbg++;
            }
        }
    int sat_bg = hist_quantile(hist, nbg, 0.5);
    int sat_thr = sat_bg + 24;

    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            int bg = blk2[(size_t)(y / bs) * bw + x / bs];
            int fg;
            if (dark) {
                fg = lum[i] > bg + 15;
            } else {
                int margin = bg / 8 > 16 ? bg / 8 : 16;
                fg = sat[i] > sat_thr || lum[i] < bg - margin;
            }
            raw[i] = (uint8_t)fg;
        }

    /* 3x3 dilation. */
    mk->data = calloc(np, 1);
    if (!mk->data) {
        ss_error("slide", "out of memory (mask)");
        goto fail;
    }
    int64_t count = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int v = 0;
            for (int dy = -1; dy <= 1 && !v; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    int yy = y + dy, xx = x + dx;
                    if (yy >= 0 && yy < h && xx >= 0 && xx < w && raw[(size_t)yy * w + xx]) {
                        v = 1;
                        break;
                    }
                }
            mk->data[(size_t)y * w + x] = (uint8_t)v;
            count += v;
        }
    mk->foreground = count;
    free(lum);
    free(sat);
    free(raw);
    free(blk);
    free(blk2);
    free(hist);
    ss_thumb_destroy(&t);
    return mk;
fail:
    free(lum);
    free(sat);
    free(raw);
    free(blk);
    free(blk2);
    free(hist);
    ss_thumb_destroy(&t);
    ss_mask_destroy(&mk);
    return NULL;
}

void ss_mask_destroy(ss_mask_t **mp)
{
    if (!mp || !*mp) return;
    free((*mp)->data);
    free(*mp);
    *mp = NULL;
}

int ss_mask_any(const ss_mask_t *m, int64_t x, int64_t y, int64_t w, int64_t h)
{
    if (w <= 0 || h <= 0) return 0;
    /* Mask pixel i spans level-0 [i*sc, (i+1)*sc): it meets [x, x+w) iff i*sc < x+w and
     * (i+1)*sc > x. */
    int64_t x0 = (int64_t)floor((double)x / m->scale_x),
            x1 = (int64_t)ceil((double)(x + w) / m->scale_x);
    int64_t y0 = (int64_t)floor((double)y / m->scale_y),
            y1 = (int64_t)ceil((double)(y + h) / m->scale_y);
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > m->width) x1 = m->width;
    if (y1 > m->height) y1 = m->height;
    for (int64_t yy = y0; yy < y1; yy++) {
        const uint8_t *row = m->data + (size_t)yy * (size_t)m->width;
        for (int64_t xx = x0; xx < x1; xx++)
            if (row[xx]) return 1;
    }
    return 0;
}
