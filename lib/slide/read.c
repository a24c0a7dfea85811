/* Reading pixels: a level rectangle from OpenSlide or libvips (white outside the slide), and
 * regions at a target mpp resampled by exact area averaging (box filter with fractional
 * weights), processed in bands of source rows so memory stays bounded for any output size.
 *
 * OpenSlide errors are sticky: once a read fails, the handle returns nothing but that error.
 * We report the failing region, then reopen the handle so the next tile can still be read; after
 * SS_SLIDE_MAX_REOPENS consecutive failures, or when reopening fails, the handle is marked dead. */
#include "slide_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/error.h"
#include "slidestream/log.h"

/* Source rows held at once while resampling (bytes). */
#define BAND_BUDGET (24u << 20)

static int region_error(ss_slide_t *s, int level, int64_t lx, int64_t ly, int w, int h,
                        const char *why)
{
    double ds = s->ld[level];
    return ss_error(
        "slide", "'%s': cannot read region x=%lld y=%lld w=%lld h=%lld (level-0) level=%d: %s",
        s->path, (long long)llround((double)lx * ds), (long long)llround((double)ly * ds),
        (long long)llround(w * ds), (long long)llround(h * ds), level, why);
}

/* After a failed read: replace the sticky-error handle by a fresh one, within budget. */
static void openslide_recover(ss_slide_t *s)
{
    openslide_close(s->osr);
    s->osr = NULL;
    if (s->reopens >= SS_SLIDE_MAX_REOPENS) {
        s->dead = 1;
        ss_warn("slide '%s': %d consecutive read errors, giving up on this slide", s->path,
                s->reopens + 1);
        return;
    }
    s->reopens++;
    s->osr = openslide_open(s->path);
    if (!s->osr || openslide_get_error(s->osr)) {
        if (s->osr) openslide_close(s->osr);
        s->osr = NULL;
        s->dead = 1;
    }
}

static int read_openslide(ss_slide_t *s, int level, int64_t lx, int64_t ly, int w, int h,
                          uint8_t *rgb, int stride)
{
    if (s->dead || !s->osr)
        return region_error(s, level, lx, ly, w, h,
                            "slide handle is dead after earlier read errors");
    size_t need = (size_t)w * (size_t)h;
    if (need > s->argb_cap) {
        uint32_t *p = realloc(s->argb, need * sizeof *p);
        if (!p) return region_error(s, level, lx, ly, w, h, "out of memory");
        s->argb = p;
        s->argb_cap = need;
    }
    double ds = s->ld[level];
    /* OpenSlide takes the top-left in level-0 coordinates. */
    openslide_read_region(s->osr, s->argb, (int64_t)llround((double)lx * ds),
                          (int64_t)llround((double)ly * ds), level, w, h);
    const char *err = openslide_get_error(s->osr);
    if (err) {
        region_error(s, level, lx, ly, w, h, err);
        openslide_recover(s);
        return -1;
    }
    s->reopens = 0; /* the budget is for consecutive failures: a corrupt patch of tiles in an
                       otherwise good slide must not cost the rest of it */
    /* Premultiplied ARGB over white: c + (255 - a). */
    for (int y = 0; y < h; y++) {
        const uint32_t *src = s->argb + (size_t)y * (size_t)w;
        uint8_t *dst = rgb + (size_t)y * (size_t)stride * 3;
        for (int x = 0; x < w; x++) {
            uint32_t p = src[x];
            unsigned a = p >> 24;
            unsigned add = 255u - a;
            dst[3 * x + 0] = (uint8_t)(((p >> 16) & 255u) + add);
            dst[3 * x + 1] = (uint8_t)(((p >> 8) & 255u) + add);
            dst[3 * x + 2] = (uint8_t)((p & 255u) + add);
        }
    }
    return 0;
}

static int read_vips(ss_slide_t *s, int64_t lx, int64_t ly, int w, int h, uint8_t *rgb, int stride)
{
    VipsRect r = {(int)lx, (int)ly, w, h};
    if (vips_region_prepare(s->region, &r)) {
        region_error(s, 0, lx, ly, w, h, vips_error_buffer());
        vips_error_clear();
        return -1;
    }
    for (int y = 0; y < h; y++)
        memcpy(rgb + (size_t)y * (size_t)stride * 3,
               VIPS_REGION_ADDR(s->region, (int)lx, (int)ly + y), (size_t)w * 3);
    return 0;
}

int ss_slide_read_level_px(ss_slide_t *s, int level, int64_t lx, int64_t ly, int w, int h,
                           uint8_t *rgb)
{
    if (level < 0 || level >= s->nlevels)
        return ss_error("slide", "'%s': level %d out of range", s->path, level);
    if (w <= 0 || h <= 0) return ss_error("slide", "'%s': empty region %dx%d", s->path, w, h);
    memset(rgb, 255, (size_t)w * (size_t)h * 3);
    int64_t ix0 = lx > 0 ? lx : 0, iy0 = ly > 0 ? ly : 0;
    int64_t ix1 = lx + w < s->lw[level] ? lx + w : s->lw[level];
    int64_t iy1 = ly + h < s->lh[level] ? ly + h : s->lh[level];
    if (ix1 <= ix0 || iy1 <= iy0) return 0; /* entirely outside: white */
    uint8_t *dst = rgb + ((size_t)(iy0 - ly) * (size_t)w + (size_t)(ix0 - lx)) * 3;
    int iw = (int)(ix1 - ix0), ih = (int)(iy1 - iy0);
    if (s->backend == SS_BACKEND_OPENSLIDE)
        return read_openslide(s, level, ix0, iy0, iw, ih, dst, w);
    return read_vips(s, ix0, iy0, iw, ih, dst, w);
}

/* Box-filter taps for n output samples over source intervals [a0 + i f, a0 + (i+1) f), given
 * relative to source index `base`. Weights are normalised to sum 1. */
typedef struct {
    int n, maxt;
    int *k0;   /* [n] first source index (relative to base) */
    int *nt;   /* [n] number of taps */
    float *wt; /* [n][maxt] */
} taps_t;

static void taps_free(taps_t *t)
{
    free(t->k0);
    free(t->nt);
    free(t->wt);
}

static int taps_build(taps_t *t, double a0, double f, int n, int64_t base, int64_t limit)
{
    t->n = n;
    t->maxt = (int)ceil(f) + 2;
    t->k0 = malloc((size_t)n * sizeof *t->k0);
    t->nt = malloc((size_t)n * sizeof *t->nt);
    t->wt = malloc((size_t)n * (size_t)t->maxt * sizeof *t->wt);
    if (!t->k0 || !t->nt || !t->wt) return ss_error("slide", "out of memory (resampling taps)");
    for (int i = 0; i < n; i++) {
        double a = a0 + i * f, b = a0 + (i + 1) * f;
        int64_t k = (int64_t)floor(a), kend = (int64_t)ceil(b);
        if (kend <= k) kend = k + 1;
        if (kend - k > t->maxt) kend = k + t->maxt;
        float *w = t->wt + (size_t)i * (size_t)t->maxt;
        double sum = 0;
        int m = 0;
        for (int64_t q = k; q < kend; q++) {
            double lo = a > (double)q ? a : (double)q,
                   hi = b < (double)(q + 1) ? b : (double)(q + 1);
            double ww = hi - lo;
            if (ww < 0) ww = 0;
            w[m++] = (float)ww;
            sum += ww;
        }
        if (sum <= 0) {
            w[0] = 1;
            sum = 1;
            m = 1;
        }
        for (int j = 0; j < m; j++)
            w[j] = (float)(w[j] / sum);
        t->k0[i] = (int)(k - base);
        t->nt[i] = m;
        (void)limit;
    }
    return 0;
}

static int resample(ss_slide_t *s, int level, double lx0, double ly0, double fx, double fy, int w,
                    int h, uint8_t *out)
{
    int64_t sx0 = (int64_t)floor(lx0), sx1 = (int64_t)ceil(lx0 + w * fx) + 1;
    int64_t sy0 = (int64_t)floor(ly0), sy1 = (int64_t)ceil(ly0 + h * fy) + 1;
    int64_t srcw64 = sx1 - sx0;
    if (srcw64 > (1 << 30) / 3 || sy1 - sy0 > (1 << 30))
        return ss_error("slide", "'%s': region too large to resample", s->path);
    int srcw = (int)srcw64;
    taps_t tx = {0}, ty = {0};
    uint8_t *band = NULL;
    float *vrow = NULL;
    int rc = -1;
    if (taps_build(&tx, lx0, fx, w, sx0, sx1) || taps_build(&ty, ly0, fy, h, sy0, sy1)) goto done;
    int maxrows = (int)(BAND_BUDGET / ((size_t)srcw * 3));
    if (maxrows < ty.maxt + 1) maxrows = ty.maxt + 1;
    if (maxrows > (int)(sy1 - sy0)) maxrows = (int)(sy1 - sy0);
    band = malloc((size_t)maxrows * (size_t)srcw * 3);
    vrow = malloc((size_t)srcw * 3 * sizeof *vrow);
    if (!band || !vrow) {
        ss_error("slide", "out of memory (resampling band)");
        goto done;
    }
    int j = 0;
    while (j < h) {
        int r0 = ty.k0[j]; /* relative to sy0 */
        int j1 = j;
        while (j1 < h && ty.k0[j1] + ty.nt[j1] - r0 <= maxrows)
            j1++;
        if (j1 == j) j1 = j + 1; /* cannot happen: maxrows >= maxt */
        int rows = ty.k0[j1 - 1] + ty.nt[j1 - 1] - r0;
        if (ss_slide_read_level_px(s, level, sx0, sy0 + r0, srcw, rows, band)) goto done;
        for (int jj = j; jj < j1; jj++) {
            const float *wy = ty.wt + (size_t)jj * (size_t)ty.maxt;
            int base = ty.k0[jj] - r0;
            const uint8_t *row = band + (size_t)base * (size_t)srcw * 3;
            for (int x = 0; x < srcw * 3; x++)
                vrow[x] = wy[0] * row[x];
            for (int t = 1; t < ty.nt[jj]; t++) {
                const uint8_t *rt = band + (size_t)(base + t) * (size_t)srcw * 3;
                float wt = wy[t];
                for (int x = 0; x < srcw * 3; x++)
                    vrow[x] += wt * rt[x];
            }
            uint8_t *o = out + (size_t)jj * (size_t)w * 3;
            for (int i = 0; i < w; i++) {
                const float *wx = tx.wt + (size_t)i * (size_t)tx.maxt;
                const float *v = vrow + (size_t)tx.k0[i] * 3;
                float r = 0, g = 0, b = 0;
                for (int t = 0; t < tx.nt[i]; t++) {
                    r += wx[t] * v[3 * t];
                    g += wx[t] * v[3 * t + 1];
                    b += wx[t] * v[3 * t + 2];
                }
                int ri = (int)(r + 0.5f), gi = (int)(g + 0.5f), bi = (int)(b + 0.5f);
                o[3 * i] = (uint8_t)(ri > 255 ? 255 : ri < 0 ? 0 : ri);
                o[3 * i + 1] = (uint8_t)(gi > 255 ? 255 : gi < 0 ? 0 : gi);
                o[3 * i + 2] = (uint8_t)(bi > 255 ? 255 : bi < 0 ? 0 : bi);
            }
        }
        j = j1;
    }
    rc = 0;
done:
    taps_free(&tx);
    taps_free(&ty);
    free(band);
    free(vrow);
    return rc;
}

static int check_size(const ss_slide_t *s, int w, int h)
{
    if (w <= 0 || h <= 0 || w > (1 << 20) || h > (1 << 20) || (int64_t)w * h > ((int64_t)1 << 30))
        return ss_error("slide", "'%s': bad region size %dx%d", s->path, w, h);
    return 0;
}

int ss_slide_read_region(ss_slide_t *s, int64_t x0, int64_t y0, double target_mpp, int w, int h,
                         uint8_t *rgb_out)
{
    if (check_size(s, w, h)) return -1;
    if (!(target_mpp > 0) || !isfinite(target_mpp))
        return ss_error("slide", "'%s': bad target mpp %g", s->path, target_mpp);
    int level = ss_slide_best_level(s, target_mpp);
    double ds = s->ld[level];
    double fx = target_mpp / s->info.mpp_x / ds, fy = target_mpp / s->info.mpp_y / ds;
    double lx0 = (double)x0 / ds, ly0 = (double)y0 / ds;
    if (fabs(fx - 1) < 1e-6 && fabs(fy - 1) < 1e-6) {
        double rx = floor(lx0 + 0.5), ry = floor(ly0 + 0.5);
        if (fabs(lx0 - rx) < 1e-3 && fabs(ly0 - ry) < 1e-3)
            return ss_slide_read_level_px(s, level, (int64_t)rx, (int64_t)ry, w, h, rgb_out);
    }
    return resample(s, level, lx0, ly0, fx, fy, w, h, rgb_out);
}

int ss_slide_read_level(ss_slide_t *s, int level, int64_t x0, int64_t y0, int w, int h,
                        uint8_t *rgb_out)
{
    if (check_size(s, w, h)) return -1;
    if (level < 0 || level >= s->nlevels)
        return ss_error("slide", "'%s': level %d out of range (0-%d)", s->path, level,
                        s->nlevels - 1);
    double ds = s->ld[level];
    return ss_slide_read_level_px(s, level, (int64_t)floor((double)x0 / ds),
                                  (int64_t)floor((double)y0 / ds), w, h, rgb_out);
}
