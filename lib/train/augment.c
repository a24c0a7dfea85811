/* The trainer's augmentations (train_augment.h): per-view parameters drawn from a hash of
 * (seed, epoch, cell, view), and their application to an 8-bit crop, in place in the caller's
 * (3, S, S) output, without allocating.
 *
 * The arithmetic follows torchvision's tensor functions expression by expression (float32, one
 * rounding per operation, in the same order), which is what makes the parity test's bounds
 * tight. It relies on this file being compiled without floating-point contraction (the
 * project's -std=c11 default; ss_nn's -ffp-contract=fast is private to ss_nn): an FMA would
 * round a·b + c once where torch rounds twice. */
#include "slidestream/train_augment.h"

#include <math.h>
#include <stddef.h>

#include "slidestream/error.h"
#include "slidestream/nn_layers.h"
#include "slidestream/nn_preprocess.h"

#define DOM "train.augment"

/* Kept apart from every other user of the run's seed (weight init, sampling). */
#define AUG_STREAM 0x6175676d656e7431ULL

ss_aug_config_t ss_aug_config_default(void)
{
    return (ss_aug_config_t){.brightness = 0.1f,
                             .contrast = 0.1f,
                             .saturation = 0.1f,
                             .hue = 0.1f,
                             .p_flip = 0.5f,
                             .p_jitter = 0.8f,
                             .p_rot = 0.8f};
}

/* ---- drawing ---------------------------------------------------------------------------- */

/* The view's RNG seed: a splitmix64 chain over the four keys, each folded into the previous
 * hash, so changing any key changes everything downstream. */
static uint64_t view_key(uint64_t seed, uint64_t epoch, uint64_t cell, uint64_t view)
{
    uint64_t x = seed ^ AUG_STREAM;
    uint64_t k = ss_splitmix64(&x);
    x = k ^ epoch;
    k = ss_splitmix64(&x);
    x = k ^ cell;
    k = ss_splitmix64(&x);
    x = k ^ view;
    return ss_splitmix64(&x);
}

/* Uniform integer in [0, n) by a 32x32 multiply-high; the bias (n / 2^32) is far below
 * anything a crop offset or a permutation could show. */
static int draw_below(ss_rng_t *r, int n)
{
    return (int)(((ss_rng_u64(r) >> 32) * (uint64_t)(uint32_t)n) >> 32);
}

static float draw_range(ss_rng_t *r, float lo, float hi)
{
    return lo + (hi - lo) * ss_rng_uniform(r);
}

static int check_sizes(int w, int h, int S)
{
    if (S < 1) return ss_error(DOM, "crop size %d must be at least 1", S);
    if (w < S || h < S)
        return ss_error(DOM, "source is %dx%d, smaller than the crop size %dx%d", w, h, S, S);
    return 0;
}

static int check_config(const ss_aug_config_t *c)
{
    const struct {
        const char *name;
        float v, hi;
    } f[] = {{"brightness", c->brightness, 1},
             {"contrast", c->contrast, 1},
             {"saturation", c->saturation, 1},
             {"hue", c->hue, 0.5f},
             {"p_flip", c->p_flip, 1},
             {"p_jitter", c->p_jitter, 1},
             {"p_rot", c->p_rot, 1}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (!(f[i].v >= 0 && f[i].v <= f[i].hi)) /* also refuses NaN */
            return ss_error(DOM, "%s = %g is outside [0, %g]", f[i].name, f[i].v, f[i].hi);
    return 0;
}

int ss_aug_draw(const ss_aug_config_t *cfg, ss_aug_kind_t kind, int w, int h, int S, uint64_t seed,
                uint64_t epoch, uint64_t cell, uint64_t view, ss_aug_params_t *p)
{
    if (check_sizes(w, h, S)) return -1;
    *p = (ss_aug_params_t){.brightness = 1, .contrast = 1, .saturation = 1, .hue = 0};
    if (kind == SS_AUG_CENTER) {
        p->x0 = ss_nn_centre_offset(w, S);
        p->y0 = ss_nn_centre_offset(h, S);
        return 0;
    }
    if (kind != SS_AUG_SIMCLR) return ss_error(DOM, "unknown view kind %d", (int)kind);
    if (check_config(cfg)) return -1;

    ss_rng_t r;
    ss_rng_seed(&r, view_key(seed, epoch, cell, view));
    /* Every draw happens whatever the earlier ones decided, so each value always comes from
     * the same position in the view's stream. */
    p->x0 = draw_below(&r, w - S + 1);
    p->y0 = draw_below(&r, h - S + 1);
    p->hflip = ss_rng_uniform(&r) < cfg->p_flip;
    p->jitter = ss_rng_uniform(&r) < cfg->p_jitter;
    float b = draw_range(&r, 1 - cfg->brightness, 1 + cfg->brightness);
    float c = draw_range(&r, 1 - cfg->contrast, 1 + cfg->contrast);
    float s = draw_range(&r, 1 - cfg->saturation, 1 + cfg->saturation);
    float hu = draw_range(&r, -cfg->hue, cfg->hue);
    ss_aug_op_t perm[4] = {SS_AUG_BRIGHTNESS, SS_AUG_CONTRAST, SS_AUG_SATURATION, SS_AUG_HUE};
    for (int i = 3; i > 0; i--) { /* Fisher-Yates */
        int j = draw_below(&r, i + 1);
        ss_aug_op_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    p->rot90 = ss_rng_uniform(&r) < cfg->p_rot;

    const float strength[4] = {cfg->brightness, cfg->contrast, cfg->saturation, cfg->hue};
    for (int i = 0; i < 4; i++)
        if (strength[perm[i]] > 0) p->ops[p->n_ops++] = perm[i];
    if (p->jitter) {
        p->brightness = cfg->brightness > 0 ? b : 1;
        p->contrast = cfg->contrast > 0 ? c : 1;
        p->saturation = cfg->saturation > 0 ? s : 1;
        p->hue = cfg->hue > 0 ? hu : 0;
    }
    return 0;
}

/* ---- the ops, on planar float (3, S, S) in [0, 1] ----------------------------------------- */

static float clamp01(float v)
{
    return v < 0 ? 0 : v > 1 ? 1 : v;
}

/* torchvision's rgb_to_grayscale: float32 products summed left to right. */
static float gray(float r, float g, float b)
{
    return 0.2989f * r + 0.587f * g + 0.114f * b;
}

/* torchvision's _blend(x, y, f) = clamp(f x + (1 - f) y), where 1 - f is formed in double (a
 * Python float) and then used as a float32 scalar. */
static void adjust_brightness(float *x, size_t n, float f)
{
    /* The other image is zeros: (1 - f) * 0 adds a zero, which changes nothing. */
    for (size_t i = 0; i < 3 * n; i++)
        x[i] = clamp01(f * x[i]);
}

static void adjust_contrast(float *x, size_t n, float f)
{
    float *r = x, *g = x + n, *b = x + 2 * n;
    /* torch sums in float, in its own blocked order; a double sum rounded once lands within an
     * ulp of it (the parity test measures it) and depends on no order. */
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += gray(r[i], g[i], b[i]);
    const float m = (float)(sum / (double)n), k = (float)(1.0 - (double)f);
    const float km = k * m;
    for (size_t i = 0; i < 3 * n; i++)
        x[i] = clamp01(f * x[i] + km);
}

static void adjust_saturation(float *x, size_t n, float f)
{
    float *r = x, *g = x + n, *b = x + 2 * n;
    const float k = (float)(1.0 - (double)f);
    for (size_t i = 0; i < n; i++) {
        const float kl = k * gray(r[i], g[i], b[i]);
        r[i] = clamp01(f * r[i] + kl);
        g[i] = clamp01(f * g[i] + kl);
        b[i] = clamp01(f * b[i] + kl);
    }
}

/* torch's float remainder (Python's %): fmod, moved into the divisor's sign. */
static float remainder1(float a)
{
    float m = fmodf(a, 1.0f);
    return m < 0 ? m + 1.0f : m;
}

/* torchvision's _rgb2hsv, hue shift, _hsv2rgb, on one pixel. The comparisons pick the same
 * branch as torchvision's masks: red wins ties, then green. */
static void hue_pixel(float *pr, float *pg, float *pb, float shift)
{
    const float r = *pr, g = *pg, b = *pb;
    const float maxc = fmaxf(r, fmaxf(g, b)), minc = fminf(r, fminf(g, b));
    const int eqc = maxc == minc;
    const float cr = maxc - minc;
    const float s = cr / (eqc ? 1.0f : maxc);
    const float crd = eqc ? 1.0f : cr;
    const float rc = (maxc - r) / crd, gc = (maxc - g) / crd, bc = (maxc - b) / crd;
    float h;
    if (maxc == r)
        h = bc - gc;
    else if (maxc == g)
        h = 2.0f + rc - bc;
    else
        h = 4.0f + gc - rc;
    h = fmodf(h / 6.0f + 1.0f, 1.0f);
    h = remainder1(h + shift);

    const float v = maxc;
    const float i = floorf(h * 6.0f);
    const float fr = h * 6.0f - i;
    const float p = clamp01(v * (1.0f - s));
    const float q = clamp01(v * (1.0f - s * fr));
    const float t = clamp01(v * (1.0f - s * (1.0f - fr)));
    switch (((int)i % 6 + 6) % 6) {
    case 0:
        *pr = v, *pg = t, *pb = p;
        break;
    case 1:
        *pr = q, *pg = v, *pb = p;
        break;
    case 2:
        *pr = p, *pg = v, *pb = t;
        break;
    case 3:
        *pr = p, *pg = q, *pb = v;
        break;
    case 4:
        *pr = t, *pg = p, *pb = v;
        break;
    default:
        *pr = v, *pg = p, *pb = q;
        break;
    }
}

static void adjust_hue(float *x, size_t n, float shift)
{
    for (size_t i = 0; i < n; i++)
        hue_pixel(x + i, x + n + i, x + 2 * n + i, shift);
}

/* ---- geometry, in place on each of the three S x S planes --------------------------------- */

static void hflip_planes(float *x, int S)
{
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < S; y++) {
            float *row = x + ((size_t)c * S + y) * S;
            for (int a = 0, b = S - 1; a < b; a++, b--) {
                float t = row[a];
                row[a] = row[b];
                row[b] = t;
            }
        }
}

/* out(i, j) = in(j, S - 1 - i): counter-clockwise, as torchvision's rotate(x, 90) on a square
 * image. In place by 4-cycles of (i, j) -> (S-1-j, i) -> (S-1-i, S-1-j) -> (j, S-1-i). */
static void rot90_planes(float *x, int S)
{
    for (int c = 0; c < 3; c++) {
        float *a = x + (size_t)c * S * S;
#define A(i, j) a[(size_t)(i)*S + (j)]
        for (int i = 0; i < S / 2; i++)
            for (int j = i; j < S - 1 - i; j++) {
                float t = A(i, j);
                A(i, j) = A(j, S - 1 - i);
                A(j, S - 1 - i) = A(S - 1 - i, S - 1 - j);
                A(S - 1 - i, S - 1 - j) = A(S - 1 - j, i);
                A(S - 1 - j, i) = t;
            }
#undef A
    }
}

/* ---- apply -------------------------------------------------------------------------------- */

static int check_params(const ss_aug_params_t *p, int w, int h, int S)
{
    if (p->x0 < 0 || p->y0 < 0 || p->x0 > w - S || p->y0 > h - S)
        return ss_error(DOM, "crop %dx%d at (%d, %d) does not fit in the %dx%d source", S, S, p->x0,
                        p->y0, w, h);
    if (!p->jitter) return 0;
    if (p->n_ops < 0 || p->n_ops > 4) return ss_error(DOM, "%d jitter ops (at most 4)", p->n_ops);
    for (int i = 0; i < p->n_ops; i++)
        if ((unsigned)p->ops[i] > SS_AUG_HUE)
            return ss_error(DOM, "unknown jitter op %d", (int)p->ops[i]);
    if (!(p->brightness >= 0 && p->contrast >= 0 && p->saturation >= 0))
        return ss_error(DOM, "jitter factors (%g, %g, %g) must be >= 0", p->brightness, p->contrast,
                        p->saturation);
    if (!(p->hue >= -0.5f && p->hue <= 0.5f))
        return ss_error(DOM, "hue shift %g is outside [-0.5, 0.5]", p->hue);
    return 0;
}

int ss_aug_apply(const ss_aug_params_t *p, const uint8_t *rgb, int w, int h, int S,
                 const double mean[3], const double std[3], float *out)
{
    if (check_sizes(w, h, S) || check_params(p, w, h, S)) return -1;
    for (int c = 0; c < 3; c++)
        if (!(std[c] > 0)) return ss_error(DOM, "std[%d] = %g must be > 0", c, std[c]);
    const size_t n = (size_t)S * S;
    if (!p->jitter || p->n_ops == 0) {
        /* Normalisation is per pixel, so it commutes with the flip and the rotation: the
         * encoder's own arithmetic on the 8-bit values, then the geometry. */
        ss_nn_normalise_u8(rgb, w, p->x0, p->y0, S, mean, std, out);
        if (p->hflip) hflip_planes(out, S);
        if (p->rot90) rot90_planes(out, S);
        return 0;
    }
    /* ToTensor: v / 255 in float32 (a true division, as torch's div). The flip is a read in
     * reverse. */
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < S; y++) {
            const uint8_t *row = rgb + ((size_t)(p->y0 + y) * w + p->x0) * 3 + c;
            float *o = out + c * n + (size_t)y * S;
            for (int x = 0; x < S; x++)
                o[x] = (float)row[3 * (p->hflip ? S - 1 - x : x)] / 255.0f;
        }
    for (int i = 0; i < p->n_ops; i++)
        switch (p->ops[i]) {
        case SS_AUG_BRIGHTNESS:
            adjust_brightness(out, n, p->brightness);
            break;
        case SS_AUG_CONTRAST:
            adjust_contrast(out, n, p->contrast);
            break;
        case SS_AUG_SATURATION:
            adjust_saturation(out, n, p->saturation);
            break;
        case SS_AUG_HUE:
            adjust_hue(out, n, p->hue);
            break;
        }
    if (p->rot90) rot90_planes(out, S);
    ss_nn_normalise_f32(out, S, mean, std);
    return 0;
}

int ss_aug_view(const ss_aug_config_t *cfg, ss_aug_kind_t kind, const uint8_t *rgb, int w, int h,
                int S, uint64_t seed, uint64_t epoch, uint64_t cell, uint64_t view,
                const double mean[3], const double std[3], float *out)
{
    ss_aug_params_t p;
    if (ss_aug_draw(cfg, kind, w, h, S, seed, epoch, cell, view, &p)) return -1;
    return ss_aug_apply(&p, rgb, w, h, S, mean, std, out);
}
