/* train.augment.unit: the augmentations' contract without PyTorch. Draws are a pure function of
 * (seed, epoch, cell, view); outputs are bit-reproducible; frequencies and ranges match the
 * configuration; a center view carries exactly the encoder's input; the geometry is the
 * documented index mapping; bad inputs give named errors. (Parity with torchvision is
 * parity.py's job.) */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "slidestream/error.h"
#include "slidestream/nn_preprocess.h"
#include "slidestream/train_augment.h"

static const double MEAN[3] = {0.6009, 0.5513, 0.7394}, STD[3] = {0.1982, 0.2448, 0.1076};

/* A smear-like test image: a pale background, a dark round nucleus, some texture. */
static uint8_t *make_image(int w, int h)
{
    uint8_t *rgb = malloc((size_t)w * h * 3);
    uint32_t s = 12345;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            s = s * 1664525u + 1013904223u;
            int noise = (int)(s >> 28) - 8;
            double d = hypot(x - 0.45 * w, y - 0.55 * h) / (0.3 * w);
            int in = d < 1;
            int v[3] = {in ? 110 : 225, in ? 60 : 200, in ? 170 : 215};
            for (int c = 0; c < 3; c++) {
                int t = v[c] + noise + (c == 0 ? x / 4 : 0);
                rgb[((size_t)y * w + x) * 3 + c] = (uint8_t)(t < 0 ? 0 : t > 255 ? 255 : t);
            }
        }
    return rgb;
}

static int same_params(const ss_aug_params_t *a, const ss_aug_params_t *b)
{
    if (a->x0 != b->x0 || a->y0 != b->y0 || a->hflip != b->hflip || a->jitter != b->jitter ||
        a->rot90 != b->rot90 || a->n_ops != b->n_ops)
        return 0;
    for (int i = 0; i < a->n_ops; i++)
        if (a->ops[i] != b->ops[i]) return 0;
    return a->brightness == b->brightness && a->contrast == b->contrast &&
           a->saturation == b->saturation && a->hue == b->hue;
}

static void test_determinism(const uint8_t *rgb, int w, int h, int S)
{
    ss_aug_config_t cfg = ss_aug_config_default();
    ss_aug_params_t a, b;
    size_t n = (size_t)3 * S * S;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);

    CHECK(ss_aug_draw(&cfg, SS_AUG_SIMCLR, w, h, S, 7, 3, 1001, 1, &a) == 0, "%s", ss_error_last());
    /* Other draws in between must not matter: no hidden state. */
    for (int i = 0; i < 10; i++)
        ss_aug_draw(&cfg, SS_AUG_SIMCLR, w, h, S, 7, 3, i, 0, &b);
    CHECK(ss_aug_draw(&cfg, SS_AUG_SIMCLR, w, h, S, 7, 3, 1001, 1, &b) == 0, "%s", ss_error_last());
    CHECK(same_params(&a, &b), "same keys, different params");

    /* Bit-identical outputs for a jittered view and a plain one. */
    for (uint64_t view = 0; view < 40; view++) {
        ss_aug_draw(&cfg, SS_AUG_SIMCLR, w, h, S, 7, 3, 1001, view, &a);
        memset(x, 0xff, n * sizeof *x);
        memset(y, 0, n * sizeof *y);
        CHECK(ss_aug_apply(&a, rgb, w, h, S, MEAN, STD, x) == 0, "%s", ss_error_last());
        CHECK(ss_aug_view(&cfg, SS_AUG_SIMCLR, rgb, w, h, S, 7, 3, 1001, view, MEAN, STD, y) == 0,
              "%s", ss_error_last());
        CHECK(!memcmp(x, y, n * sizeof *x), "view %d: outputs differ between calls", (int)view);
    }

    /* Each key changes the draw. */
    ss_aug_draw(&cfg, SS_AUG_SIMCLR, w, h, S, 7, 3, 1001, 0, &a);
    const uint64_t keys[4][4] = {
        {7, 3, 1001, 1}, {7, 3, 1002, 0}, {7, 4, 1001, 0}, {8, 3, 1001, 0}};
    for (int k = 0; k < 4; k++) {
        ss_aug_draw(&cfg, SS_AUG_SIMCLR, w, h, S, keys[k][0], keys[k][1], keys[k][2], keys[k][3],
                    &b);
        CHECK(!same_params(&a, &b), "key set %d gave the same params", k);
        CHECK(a.brightness != b.brightness || !a.jitter || !b.jitter, "key set %d: same factor", k);
    }

    /* The order cells are visited in does not matter (what a threaded trainer relies on). */
    enum { NC = 64 };
    ss_aug_params_t fwd[NC], rev;
    for (int c = 0; c < NC; c++)
        ss_aug_draw(&cfg, SS_AUG_SIMCLR, w, h, S, 1, 0, c, 0, &fwd[c]);
    for (int c = NC - 1; c >= 0; c--) {
        ss_aug_draw(&cfg, SS_AUG_SIMCLR, w, h, S, 1, 0, c, 0, &rev);
        CHECK(same_params(&fwd[c], &rev), "cell %d depends on the visiting order", c);
    }
    free(x), free(y);
}

static void test_frequencies(int w, int h, int S)
{
    ss_aug_config_t cfg = ss_aug_config_default();
    enum { N = 20000 };
    int flips = 0, jit = 0, rots = 0, perms[256] = {0}, nperm = 0;
    int *seen_x = calloc((size_t)(w - S + 1), sizeof(int));
    int *seen_y = calloc((size_t)(h - S + 1), sizeof(int));
    double sum_b = 0, sum_h = 0;
    float lo[4] = {9, 9, 9, 9}, hi[4] = {-9, -9, -9, -9};
    int bad = 0;
    for (int i = 0; i < N; i++) {
        ss_aug_params_t p;
        if (ss_aug_draw(&cfg, SS_AUG_SIMCLR, w, h, S, 42, i / 100, i % 100, 1, &p)) {
            bad++;
            continue;
        }
        flips += p.hflip, jit += p.jitter, rots += p.rot90;
        if (p.x0 < 0 || p.x0 > w - S || p.y0 < 0 || p.y0 > h - S) {
            bad++;
            continue;
        }
        seen_x[p.x0]++, seen_y[p.y0]++;
        if (p.n_ops != 4) bad++;
        int code = 0, mask = 0;
        for (int k = 0; k < p.n_ops; k++)
            code = code * 4 + p.ops[k], mask |= 1 << p.ops[k];
        if (mask != 15) bad++;
        if (!perms[code & 255]++) nperm++;
        if (p.jitter) {
            const float f[4] = {p.brightness, p.contrast, p.saturation, p.hue};
            for (int k = 0; k < 4; k++)
                lo[k] = fminf(lo[k], f[k]), hi[k] = fmaxf(hi[k], f[k]);
            sum_b += p.brightness, sum_h += p.hue;
        } else if (p.brightness != 1 || p.contrast != 1 || p.saturation != 1 || p.hue != 0)
            bad++;
    }
    CHECK(bad == 0, "%d draws failed, left the crop range or had a wrong op list", bad);
    /* 4 standard deviations of a binomial at N = 20000 is under 0.015. */
    CHECK(fabs(flips / (double)N - 0.5) < 0.015, "flip rate %.4f, want 0.5", flips / (double)N);
    CHECK(fabs(jit / (double)N - 0.8) < 0.015, "jitter rate %.4f, want 0.8", jit / (double)N);
    CHECK(fabs(rots / (double)N - 0.8) < 0.015, "rotation rate %.4f, want 0.8", rots / (double)N);
    for (int v = 0; v <= w - S; v++)
        CHECK(seen_x[v] > 0, "crop x offset %d never drawn", v);
    for (int v = 0; v <= h - S; v++)
        CHECK(seen_y[v] > 0, "crop y offset %d never drawn", v);
    CHECK(nperm == 24, "%d of the 24 jitter orders seen", nperm);
    for (int k = 0; k < 3; k++)
        CHECK(lo[k] >= 0.9f && hi[k] <= 1.1f && lo[k] < 0.905f && hi[k] > 1.095f,
              "factor %d spans [%g, %g], want [0.9, 1.1]", k, lo[k], hi[k]);
    CHECK(lo[3] >= -0.1f && hi[3] <= 0.1f && lo[3] < -0.095f && hi[3] > 0.095f,
          "hue spans [%g, %g], want [-0.1, 0.1]", lo[3], hi[3]);
    CHECK(fabs(sum_b / jit - 1) < 0.003 && fabs(sum_h / jit) < 0.003,
          "mean brightness %.4f, mean hue %.4f", sum_b / jit, sum_h / jit);
    printf("over %d draws: flip %.4f, jitter %.4f, rotation %.4f; offsets x 0..%d, y 0..%d all "
           "seen; 24/24 orders\n",
           N, flips / (double)N, jit / (double)N, rots / (double)N, w - S, h - S);

    /* A strength of 0 leaves its op out, as torchvision's ColorJitter does. */
    cfg.hue = 0;
    cfg.contrast = 0;
    ss_aug_params_t p;
    CHECK(ss_aug_draw(&cfg, SS_AUG_SIMCLR, w, h, S, 1, 2, 3, 4, &p) == 0, "%s", ss_error_last());
    CHECK(p.n_ops == 2 && p.hue == 0 && p.contrast == 1, "n_ops %d", p.n_ops);
    for (int k = 0; k < p.n_ops; k++)
        CHECK(p.ops[k] == SS_AUG_BRIGHTNESS || p.ops[k] == SS_AUG_SATURATION, "op %d", p.ops[k]);
    free(seen_x), free(seen_y);
}

static void test_center_and_geometry(const uint8_t *rgb, int w, int h, int S)
{
    size_t n = (size_t)3 * S * S, plane = (size_t)S * S;
    float *x = malloc(n * sizeof *x), *ref = malloc(n * sizeof *ref), *g = malloc(n * sizeof *g);
    ss_aug_params_t p;

    /* Center views: the encoder's crop and arithmetic, bit for bit. */
    CHECK(ss_aug_draw(NULL, SS_AUG_CENTER, w, h, S, 1, 2, 3, 4, &p) == 0, "%s", ss_error_last());
    CHECK(p.x0 == (w - S) / 2 && p.y0 == (h - S) / 2 && !p.hflip && !p.jitter && !p.rot90,
          "center params (%d, %d)", p.x0, p.y0);
    CHECK(ss_aug_apply(&p, rgb, w, h, S, MEAN, STD, x) == 0, "%s", ss_error_last());
    CHECK(ss_nn_normalise_centre_u8(rgb, w, h, S, MEAN, STD, ref) == 0, "%s", ss_error_last());
    CHECK(!memcmp(x, ref, n * sizeof *x), "center view differs from the encoder's input");

    /* Flip then rotate: out(c, i, j) = crop(c, j', S-1-i) with j' the flipped column. */
    p = (ss_aug_params_t){.x0 = 3, .y0 = 1, .hflip = 1, .rot90 = 1};
    ss_nn_normalise_u8(rgb, w, p.x0, p.y0, S, MEAN, STD, ref);
    CHECK(ss_aug_apply(&p, rgb, w, h, S, MEAN, STD, x) == 0, "%s", ss_error_last());
    int wrong = 0;
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < S; i++)
            for (int j = 0; j < S; j++) {
                int sy = j, sx = S - 1 - (S - 1 - i); /* rotation's source, then the flip */
                wrong += x[c * plane + (size_t)i * S + j] != ref[c * plane + (size_t)sy * S + sx];
            }
    CHECK(wrong == 0, "flip + rot90: %d values off the index mapping", wrong);

    /* The float (jitter) path with identity factors agrees with the 8-bit path within a few
     * ulp: (v / 255 - m) / s against v * (1 / (255 s)) - m / s. */
    p = (ss_aug_params_t){.x0 = 2,
                          .y0 = 2,
                          .jitter = 1,
                          .n_ops = 3,
                          .brightness = 1,
                          .contrast = 1,
                          .saturation = 1,
                          .rot90 = 1};
    p.ops[0] = SS_AUG_SATURATION, p.ops[1] = SS_AUG_BRIGHTNESS, p.ops[2] = SS_AUG_CONTRAST;
    CHECK(ss_aug_apply(&p, rgb, w, h, S, MEAN, STD, x) == 0, "%s", ss_error_last());
    p.jitter = 0;
    CHECK(ss_aug_apply(&p, rgb, w, h, S, MEAN, STD, g) == 0, "%s", ss_error_last());
    double dmax = 0;
    for (size_t i = 0; i < n; i++)
        dmax = fmax(dmax, fabs(x[i] - g[i]));
    CHECK(dmax < 2e-6, "identity jitter moved values by %g", dmax);

    /* A gray image has no hue: any shift leaves it exactly as it was. */
    uint8_t *grey = malloc((size_t)S * S * 3);
    for (size_t i = 0; i < (size_t)S * S; i++)
        memset(grey + 3 * i, (int)(i % 251), 3);
    p = (ss_aug_params_t){
        .jitter = 1, .n_ops = 1, .brightness = 1, .contrast = 1, .saturation = 1, .hue = 0.37f};
    p.ops[0] = SS_AUG_HUE;
    const double zero[3] = {0, 0, 0}, one[3] = {1, 1, 1};
    CHECK(ss_aug_apply(&p, grey, S, S, S, zero, one, x) == 0, "%s", ss_error_last());
    wrong = 0;
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < plane; i++)
            wrong += x[c * plane + i] != (float)(i % 251) / 255.0f;
    CHECK(wrong == 0, "hue moved %d gray values", wrong);
    free(grey), free(x), free(ref), free(g);
}

static void test_errors(const uint8_t *rgb, int w, int h, int S)
{
    ss_aug_config_t cfg = ss_aug_config_default();
    ss_aug_params_t p = {0};
    float *x = malloc(sizeof(float) * 3 * S * S);

    ss_error_clear();
    CHECK(ss_aug_draw(&cfg, SS_AUG_SIMCLR, 50, 70, 64, 0, 0, 0, 0, &p) == -1, "small source");
    CHECK(strstr(ss_error_last(), "source is 50x70, smaller than the crop size 64x64") != NULL,
          "error was: %s", ss_error_last());
    ss_error_clear();
    CHECK(ss_aug_apply(&p, rgb, 63, 80, 64, MEAN, STD, x) == -1, "small source in apply");
    CHECK(strstr(ss_error_last(), "train.augment: source is 63x80, smaller than the crop size "
                                  "64x64") != NULL,
          "error was: %s", ss_error_last());

    ss_error_clear();
    p = (ss_aug_params_t){.x0 = w - S + 1};
    CHECK(ss_aug_apply(&p, rgb, w, h, S, MEAN, STD, x) == -1, "crop outside");
    CHECK(strstr(ss_error_last(), "does not fit") != NULL, "error was: %s", ss_error_last());

    ss_error_clear();
    p = (ss_aug_params_t){
        .jitter = 1, .n_ops = 1, .brightness = 1, .contrast = 1, .saturation = 1, .hue = 0.7f};
    CHECK(ss_aug_apply(&p, rgb, w, h, S, MEAN, STD, x) == -1, "hue out of range");
    CHECK(strstr(ss_error_last(), "hue shift 0.7") != NULL, "error was: %s", ss_error_last());

    ss_error_clear();
    cfg.p_rot = 1.5f;
    CHECK(ss_aug_draw(&cfg, SS_AUG_SIMCLR, w, h, S, 0, 0, 0, 0, &p) == -1, "p_rot 1.5");
    CHECK(strstr(ss_error_last(), "p_rot = 1.5 is outside [0, 1]") != NULL, "error was: %s",
          ss_error_last());
    cfg = ss_aug_config_default();
    cfg.hue = NAN;
    ss_error_clear();
    CHECK(ss_aug_draw(&cfg, SS_AUG_SIMCLR, w, h, S, 0, 0, 0, 0, &p) == -1, "hue NaN");
    ss_error_clear();
    free(x);
}

int main(void)
{
    const int w = 83, h = 77, S = 64;
    uint8_t *rgb = make_image(w, h);
    test_determinism(rgb, w, h, S);
    test_frequencies(w, h, S);
    test_center_and_geometry(rgb, w, h, S);
    test_center_and_geometry(rgb, w, h, 63); /* odd size: the rotation's centre stays */
    test_errors(rgb, w, h, S);
    free(rgb);
    return check_exit("train.augment.unit");
}
