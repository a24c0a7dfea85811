/* Tests of the NN layer kernels (include/slidestream/nn_layers.h). One executable, one ctest case
 * per argv[1]: for every layer (1) the fast kernel against its naive reference on awkward shapes,
 * (2) central finite-difference gradient checks of every input and parameter gradient, with the
 * loss L = sum(out * R) for a fixed random R accumulated in double, (3) 1 vs 2 threads.
 *
 * Tolerances (relative to the largest magnitude of the reference tensor):
 *   fast vs naive 2e-5 (element-wise 1e-6 .. 2e-6; conv/linear sum in float inside sgemm),
 *   finite differences 1e-2 (float forward, step 1e-2 or 1e-3; kinks avoided by construction),
 *   1 vs 2 threads 1e-6.
 * A failed check prints the worst error and the process exits 1. */
#include "slidestream/error.h"
#include "slidestream/nn_layers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
static ss_rng_t rng;

/* ---- helpers ------------------------------------------------------------------------------ */

static float *fnew(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static float *frand(size_t n, float lo, float hi)
{
    float *p = fnew(n);
    ss_rng_fill_uniform(&rng, p, n, lo, hi);
    return p;
}

static float *fcopy(const float *src, size_t n)
{
    float *p = fnew(n);
    memcpy(p, src, sizeof(float) * n);
    return p;
}

/* max|a-b| / max(max|b|, floor) <= tol, else report. */
static void expect_close(const char *what, const float *a, const float *b, size_t n, double tol)
{
    double worst = 0.0, scale = 0.0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= worst)) { /* also catches NaN */
            worst = d;
            wi = i;
        }
        if (fabs(b[i]) > scale)
            scale = fabs(b[i]);
    }
    if (scale < 1e-6)
        scale = 1e-6;
    double rel = worst / scale;
    if (!(rel <= tol)) {
        failures++;
        printf("FAIL %-48s rel %.3g > %.1g (at %zu: %.8g vs %.8g)\n", what, rel, tol, wi,
               (double)a[wi], (double)b[wi]);
    } else {
        printf("ok   %-48s rel %.3g\n", what, rel);
    }
}

static void expect_true(const char *what, int cond)
{
    if (!cond) {
        failures++;
        printf("FAIL %s\n", what);
    } else {
        printf("ok   %s\n", what);
    }
}

static double dot_d(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* Finite-difference check of `analytic` (d loss / d x) against central differences of loss().
 * At most `max_coords` coordinates are probed (evenly spread) to keep the test fast. */
typedef double (*loss_fn)(void *ctx);

static void gradcheck(const char *what, float *x, const float *analytic, size_t n, loss_fn loss,
                      void *ctx, float eps, double tol, size_t max_coords)
{
    size_t step = n > max_coords ? (n + max_coords - 1) / max_coords : 1;
    float *num = fnew(n), *ana = fnew(n);
    size_t m = 0;
    for (size_t i = 0; i < n; i += step, m++) {
        float saved = x[i];
        x[i] = saved + eps;
        double lp = loss(ctx);
        x[i] = saved - eps;
        double lm = loss(ctx);
        x[i] = saved;
        /* The perturbation actually applied in float: */
        double h = (double)(saved + eps) - (double)(saved - eps);
        num[m] = (float)((lp - lm) / h);
        ana[m] = analytic[i];
    }
    char label[320];
    snprintf(label, sizeof label, "%s (fd, %zu coords)", what, m);
    expect_close(label, ana, num, m, tol);
    free(num);
    free(ana);
}

/* ---- conv2d ------------------------------------------------------------------------------- */

typedef struct {
    ss_conv2d_t c;
    float *x, *w, *b, *r, *out;
} conv_ctx;

static double conv_loss(void *p)
{
    conv_ctx *k = p;
    ss_conv2d_forward_naive(&k->c, k->out, k->x, k->w, k->b);
    return dot_d(k->out, k->r, (size_t)k->c.n * k->c.cout * k->c.ho * k->c.wo);
}

static void conv_case(int n, int cin, int h, int w, int cout, int kh, int kw, int sh, int sw,
                      int ph, int pw, int with_bias, int fd)
{
    ss_conv2d_t c;
    if (ss_conv2d_init2(&c, n, cin, h, w, cout, kh, kw, sh, sw, ph, pw)) {
        ss_error_report(NULL);
        failures++;
        return;
    }
    char tag[96];
    snprintf(tag, sizeof tag, "conv n%d %dx%dx%d->%d k%dx%d s%dx%d p%dx%d%s", n, cin, h, w, cout,
             kh, kw, sh, sw, ph, pw, with_bias ? " +b" : "");
    size_t nx = (size_t)n * cin * h * w, nw = (size_t)cout * cin * kh * kw,
           ny = (size_t)n * cout * c.ho * c.wo;
    float *x = frand(nx, -1, 1), *wt = frand(nw, -0.5f, 0.5f);
    float *b = with_bias ? frand((size_t)cout, -0.5f, 0.5f) : NULL;
    float *y = fnew(ny), *y_ref = fnew(ny), *r = frand(ny, -1, 1);
    size_t ws = ss_conv2d_forward_workspace(&c), wb = ss_conv2d_backward_workspace(&c);
    float *work = fnew(ws > wb ? ws : wb);
    char label[160];

    ss_conv2d_forward(&c, y, x, wt, b, work);
    ss_conv2d_forward_naive(&c, y_ref, x, wt, b);
    snprintf(label, sizeof label, "%s fwd", tag);
    expect_close(label, y, y_ref, ny, 2e-5);

    /* Fused epilogue: relu(conv + b + residual), residual aliasing the output. */
    float *res = frand(ny, -1, 1), *fused = fcopy(res, ny), *fused_ref = fnew(ny);
    ss_conv2d_forward_fused(&c, fused, x, wt, b, fused, 1, work);
    for (size_t i = 0; i < ny; i++) {
        float v = y_ref[i] + res[i];
        fused_ref[i] = v > 0 ? v : 0;
    }
    snprintf(label, sizeof label, "%s fused res+relu", tag);
    expect_close(label, fused, fused_ref, ny, 2e-5);

    /* Backward: gradients accumulate onto a non-zero prefill. */
    float *dx = frand(nx, -1, 1), *dx_ref = frand(nx, -1, 1);
    float *dw = frand(nw, -1, 1), *dw_ref = fcopy(dw, nw);
    float *db = frand((size_t)cout, -1, 1), *db_ref = fcopy(db, (size_t)cout);
    ss_conv2d_backward(&c, dx, dw, db, r, x, wt, work);
    ss_conv2d_backward_naive(&c, dx_ref, dw_ref, db_ref, r, x, wt);
    snprintf(label, sizeof label, "%s bwd din", tag);
    expect_close(label, dx, dx_ref, nx, 2e-5);
    snprintf(label, sizeof label, "%s bwd dweight (+=)", tag);
    expect_close(label, dw, dw_ref, nw, 2e-5);
    snprintf(label, sizeof label, "%s bwd dbias (+=)", tag);
    expect_close(label, db, db_ref, (size_t)cout, 2e-5);

    if (fd) {
        conv_ctx k = {c, x, wt, b, r, fnew(ny)};
        memset(dw, 0, sizeof(float) * nw);
        memset(db, 0, sizeof(float) * cout);
        ss_conv2d_backward(&c, dx, dw, with_bias ? db : NULL, r, x, wt, work);
        snprintf(label, sizeof label, "%s din", tag);
        gradcheck(label, x, dx, nx, conv_loss, &k, 1e-2f, 1e-2, 150);
        snprintf(label, sizeof label, "%s dweight", tag);
        gradcheck(label, wt, dw, nw, conv_loss, &k, 1e-2f, 1e-2, 150);
        if (with_bias) {
            snprintf(label, sizeof label, "%s dbias", tag);
            gradcheck(label, b, db, (size_t)cout, conv_loss, &k, 1e-2f, 1e-2, 150);
        }
        free(k.out);
    }
    free(x), free(wt), free(b), free(y), free(y_ref), free(r), free(work), free(res);
    free(fused), free(fused_ref), free(dx), free(dx_ref), free(dw), free(dw_ref), free(db);
    free(db_ref);
}

/* Winograd on small images with many channels (channels last; a case of its own: with the
 * naive reference these shapes are slow in sanitizer builds). */
static void test_conv_cl(void)
{
    /* odd sizes, partial tiles, cin not a multiple of 16, a 2x3 image of two tiles */
    conv_case(8, 128, 8, 8, 130, 3, 3, 1, 1, 1, 1, 1, 0);
    conv_case(32, 129, 5, 7, 128, 3, 3, 1, 1, 1, 1, 1, 0);
    conv_case(64, 130, 2, 3, 128, 3, 3, 1, 1, 1, 1, 0, 0);
    conv_case(15, 128, 5, 5, 136, 3, 3, 1, 1, 1, 1, 1, 0); /* 135 tiles: rows not by 8 */
    ss_conv2d_set_work_cap(300000);
    conv_case(15, 128, 5, 5, 136, 3, 3, 1, 1, 1, 1, 1, 0); /* chunks of 7 images */
    ss_conv2d_set_work_cap(0);
    /* F(2x2) row blocks of several images (sides multiples of 4), and one block */
    conv_case(9, 64, 16, 16, 48, 3, 3, 1, 1, 1, 1, 1, 0);
    conv_case(4, 40, 8, 12, 72, 3, 3, 1, 1, 1, 1, 0, 0);
}

static void test_conv(void)
{
    /* n cin h w cout kh kw sh sw ph pw bias fd */
    conv_case(2, 3, 9, 7, 4, 3, 3, 1, 1, 1, 1, 1, 1);   /* odd, non-square, padding */
    conv_case(3, 2, 11, 10, 5, 3, 3, 2, 2, 1, 1, 0, 1); /* stride 2 */
    conv_case(2, 3, 15, 13, 4, 7, 7, 2, 2, 3, 3, 0, 1); /* ResNet stem geometry */
    conv_case(2, 4, 9, 8, 3, 1, 1, 2, 2, 0, 0, 0, 1);   /* 1x1 strided (downsample) */
    conv_case(2, 5, 6, 7, 4, 1, 1, 1, 1, 0, 0, 1, 1);   /* 1x1 s1, small plane (im2col path) */
    conv_case(2, 6, 33, 35, 7, 1, 1, 1, 1, 0, 0, 1, 1); /* 1x1 s1, direct per-image path */
    conv_case(2, 3, 8, 9, 2, 3, 5, 2, 1, 1, 2, 1, 1);   /* non-square kernel, stride, pad */
    conv_case(1, 2, 5, 5, 3, 5, 5, 1, 1, 0, 0, 1, 1);   /* kernel = input */
    conv_case(2, 2, 4, 4, 3, 3, 3, 3, 3, 2, 2, 1, 1);   /* stride > pad, edges */
    conv_case(4, 16, 12, 12, 24, 3, 3, 1, 1, 1, 1, 0, 0);
    /* im2col modes of the ResNet shapes: forward by blocks of output channels (few columns,
     * many channels), the input gradient by sub-blocks of columns, the stem by plane pieces,
     * the stride-2 backward by tasks of whole images */
    conv_case(4, 128, 4, 4, 512, 3, 3, 1, 1, 1, 1, 1, 0);
    conv_case(60, 64, 3, 3, 128, 3, 3, 1, 1, 1, 1, 0, 0);
    conv_case(2, 3, 96, 96, 8, 7, 7, 2, 2, 3, 3, 0, 0);
    conv_case(40, 16, 16, 16, 32, 3, 3, 2, 2, 1, 1, 1, 0);
    conv_case(3, 512, 2, 2, 20, 3, 3, 1, 1, 1, 1, 1, 0); /* panels with K = 4608 */
    /* tap pairs (small maps, many channels): a partial group of images, output channels not by
     * 8, a 1×1 and a non-square map, a 2×2 kernel */
    conv_case(33, 64, 2, 2, 72, 3, 3, 1, 1, 1, 1, 1, 0);
    conv_case(7, 64, 1, 1, 68, 3, 3, 1, 1, 1, 1, 0, 0);
    conv_case(5, 70, 3, 2, 64, 3, 3, 1, 1, 1, 1, 1, 0);
    conv_case(3, 64, 3, 3, 64, 2, 2, 1, 1, 1, 1, 0, 0);
    /* row-direct forward (rows of 32 output pixels, small K): the stem's geometry on a
     * non-square image with output channels not by 8, a stride-2 3x3 */
    conv_case(3, 3, 50, 64, 12, 7, 7, 2, 2, 3, 3, 1, 0);
    conv_case(2, 16, 64, 64, 8, 3, 3, 2, 2, 1, 1, 0, 0);
    /* Winograd F(2x2,3x3) path (3x3 s1 p1, >= 128 tiles): odd sizes, partial tiles, FD. */
    conv_case(4, 5, 13, 11, 6, 3, 3, 1, 1, 1, 1, 1, 1);
    conv_case(2, 24, 17, 16, 20, 3, 3, 1, 1, 1, 1, 0, 0);
    conv_case(3, 64, 12, 12, 32, 3, 3, 1, 1, 1, 1, 1, 0);
    conv_case(2, 3, 9, 33, 4, 3, 3, 1, 1, 1, 1, 1, 1);     /* row-strip transforms (>= 16 tiles/row) */
    conv_case(2, 16, 7, 40, 8, 3, 3, 1, 1, 1, 1, 0, 0);
    /* more than 128x128 channel pairs: the weight gradient by chunks, not block by block */
    conv_case(4, 130, 12, 12, 132, 3, 3, 1, 1, 1, 1, 0, 0);
    ss_conv2d_set_winograd(0); /* the same shapes through im2col */
    conv_case(4, 5, 13, 11, 6, 3, 3, 1, 1, 1, 1, 1, 1);
    conv_case(3, 64, 12, 12, 32, 3, 3, 1, 1, 1, 1, 1, 0);
    ss_conv2d_set_winograd(1);
    /* Force chunking of the batch (several sgemms per layer). */
    ss_conv2d_set_work_cap(3000);
    conv_case(5, 3, 9, 7, 4, 3, 3, 1, 1, 1, 1, 1, 1);
    conv_case(7, 8, 6, 6, 16, 3, 3, 2, 2, 1, 1, 0, 0);
    conv_case(6, 4, 10, 12, 5, 3, 3, 1, 1, 1, 1, 1, 1); /* Winograd dW block by block */
    conv_case(4, 130, 12, 12, 132, 3, 3, 1, 1, 1, 1, 0, 0); /* Winograd dW over several chunks */
    conv_case(40, 64, 2, 2, 64, 3, 3, 1, 1, 1, 1, 1, 0);    /* tap pairs, a group per chunk */
    ss_conv2d_set_work_cap(0);
    /* Workspace never grows when the batch shrinks (models size it once for the largest). */
    {
        static const int geo[][7] = {{3, 64, 64, 7, 2, 3, 224}, {64, 64, 56, 3, 1, 1, 0},
                                     {256, 512, 2, 3, 2, 1, 0}, {64, 128, 8, 1, 2, 0, 0},
                                     {32, 16, 40, 1, 1, 0, 0},   {128, 128, 8, 3, 1, 1, 0},
                                     {512, 512, 4, 3, 1, 1, 0},  {64, 64, 7, 3, 1, 1, 0}};
        int mono = 1;
        for (int g = 0; g < 8; g++) {
            size_t pf = 0, pb = 0;
            for (int n = 1; n <= 300; n += (n < 40 ? 1 : 37)) {
                ss_conv2d_t cc;
                int side = geo[g][6] ? geo[g][6] : geo[g][2];
                ss_conv2d_init(&cc, n, geo[g][0], side, side, geo[g][1], geo[g][3], geo[g][3],
                               geo[g][4], geo[g][5]);
                size_t f = ss_conv2d_forward_workspace(&cc), b = ss_conv2d_backward_workspace(&cc);
                mono &= f >= pf && b >= pb;
                pf = f;
                pb = b;
            }
        }
        expect_true("conv workspace non-decreasing in batch size", mono);
    }
    ss_conv2d_t c;
    expect_true("conv init rejects kernel > padded input",
                ss_conv2d_init(&c, 1, 1, 2, 2, 1, 5, 5, 1, 0) == -1);
    expect_true("conv init rejects stride 0", ss_conv2d_init(&c, 1, 1, 8, 8, 1, 3, 3, 0, 1) == -1);
    ss_error_clear();
}

/* ---- batch norm --------------------------------------------------------------------------- */

typedef struct {
    int n, c, hw, relu;
    float *x, *g, *b, *r, *out, *m, *s;
} bn_ctx;

static double bn_loss(void *p)
{
    bn_ctx *k = p;
    ss_batchnorm_forward_train_naive(k->out, k->m, k->s, NULL, NULL, NULL, k->x, k->g, k->b, k->n,
                                     k->c, k->hw, 0.1f, 1e-5f, k->relu);
    return dot_d(k->out, k->r, (size_t)k->n * k->c * k->hw);
}

static void bn_case(int n, int c, int hw, int relu)
{
    size_t nx = (size_t)n * c * hw;
    char tag[64], label[128];
    snprintf(tag, sizeof tag, "bn n%d c%d hw%d%s", n, c, hw, relu ? " +relu" : "");
    float *x = frand(nx, -2, 3), *g = frand((size_t)c, 0.5f, 1.5f), *b = frand((size_t)c, -1, 1);
    for (int ch = 0; ch < c; ch++) /* per-channel offsets, as real activations have */
        for (int i = 0; i < n; i++)
            for (int p = 0; p < hw; p++)
                x[((size_t)i * c + ch) * hw + p] += 0.7f * ch;
    float *y = fnew(nx), *y_ref = fnew(nx), *m = fnew(c), *s = fnew(c), *m_ref = fnew(c),
          *s_ref = fnew(c);
    float *rm = frand((size_t)c, -1, 1), *rv = frand((size_t)c, 0.5f, 2), *rm0 = fcopy(rm, c),
          *rv0 = fcopy(rv, c), *rm_ref = fcopy(rm, c), *rv_ref = fcopy(rv, c);
    int64_t nbt = 3, nbt_ref = 3;
    ss_batchnorm_forward_train(y, m, s, rm, rv, &nbt, x, g, b, n, c, hw, 0.1f, 1e-5f, relu);
    ss_batchnorm_forward_train_naive(y_ref, m_ref, s_ref, rm_ref, rv_ref, &nbt_ref, x, g, b, n, c,
                                     hw, 0.1f, 1e-5f, relu);
    snprintf(label, sizeof label, "%s train fwd", tag);
    expect_close(label, y, y_ref, nx, 2e-5);
    snprintf(label, sizeof label, "%s save_mean", tag);
    expect_close(label, m, m_ref, c, 1e-5);
    snprintf(label, sizeof label, "%s save_invstd", tag);
    expect_close(label, s, s_ref, c, 1e-5);
    snprintf(label, sizeof label, "%s running_mean", tag);
    expect_close(label, rm, rm_ref, c, 1e-5);
    snprintf(label, sizeof label, "%s running_var", tag);
    expect_close(label, rv, rv_ref, c, 1e-5);
    expect_true("bn num_batches_tracked incremented", nbt == 4 && nbt_ref == 4);

    /* Running stats against the PyTorch formula written out (unbiased variance, momentum 0.1). */
    float *rm_pt = fnew(c), *rv_pt = fnew(c);
    const size_t cnt = (size_t)n * hw;
    for (int ch = 0; ch < c; ch++) {
        double mu = 0, v = 0;
        for (int i = 0; i < n; i++)
            for (int p = 0; p < hw; p++)
                mu += x[((size_t)i * c + ch) * hw + p];
        mu /= cnt;
        for (int i = 0; i < n; i++)
            for (int p = 0; p < hw; p++)
                v += pow(x[((size_t)i * c + ch) * hw + p] - mu, 2);
        rm_pt[ch] = (float)(0.9 * rm0[ch] + 0.1 * mu);
        rv_pt[ch] = (float)(0.9 * rv0[ch] + 0.1 * v / (cnt - 1));
    }
    snprintf(label, sizeof label, "%s running stats = torch formula", tag);
    expect_close(label, rv, rv_pt, c, 1e-5);
    expect_close(label, rm, rm_pt, c, 1e-5);

    /* momentum <= 0: cumulative average, factor 1/num_batches_tracked. */
    memcpy(rm, rm0, sizeof(float) * c);
    nbt = 1; /* becomes 2: running = running/2 + batch/2 */
    ss_batchnorm_forward_train(y, m, s, rm, rv, &nbt, x, g, b, n, c, hw, 0.0f, 1e-5f, relu);
    for (int ch = 0; ch < c; ch++)
        rm_pt[ch] = 0.5f * rm0[ch] + 0.5f * m_ref[ch];
    snprintf(label, sizeof label, "%s cumulative running_mean", tag);
    expect_close(label, rm, rm_pt, c, 1e-5);

    /* Backward vs naive (relu_out = forward output when fused). */
    float *r = frand(nx, -1, 1), *dx = fnew(nx), *dx_ref = fnew(nx);
    float *dg = frand(c, -1, 1), *dg_ref = fcopy(dg, c), *db = frand(c, -1, 1),
          *db_ref = fcopy(db, c);
    ss_batchnorm_backward(dx, dg, db, r, x, m, s, g, relu ? y : NULL, n, c, hw);
    ss_batchnorm_backward_naive(dx_ref, dg_ref, db_ref, r, x, m_ref, s_ref, g,
                                relu ? y_ref : NULL, n, c, hw);
    snprintf(label, sizeof label, "%s bwd din", tag);
    expect_close(label, dx, dx_ref, nx, 2e-5);
    snprintf(label, sizeof label, "%s bwd dgamma (+=)", tag);
    expect_close(label, dg, dg_ref, c, 2e-5);
    snprintf(label, sizeof label, "%s bwd dbeta (+=)", tag);
    expect_close(label, db, db_ref, c, 2e-5);

    /* Finite differences (no relu: its kinks would need care; the mask path is covered above). */
    if (!relu) {
        bn_ctx k = {n, c, hw, 0, x, g, b, r, fnew(nx), fnew(c), fnew(c)};
        memset(dg, 0, sizeof(float) * c);
        memset(db, 0, sizeof(float) * c);
        ss_batchnorm_backward(dx, dg, db, r, x, m, s, g, NULL, n, c, hw);
        snprintf(label, sizeof label, "%s din", tag);
        gradcheck(label, x, dx, nx, bn_loss, &k, 1e-2f, 1e-2, 200);
        snprintf(label, sizeof label, "%s dgamma", tag);
        gradcheck(label, g, dg, c, bn_loss, &k, 1e-2f, 1e-2, 200);
        snprintf(label, sizeof label, "%s dbeta", tag);
        gradcheck(label, b, db, c, bn_loss, &k, 1e-2f, 1e-2, 200);
        free(k.out), free(k.m), free(k.s);
    }

    /* Eval mode vs naive, fold into a 1x1 "conv" (identity weights) == eval BN. */
    ss_batchnorm_forward_eval(y, x, g, b, rm, rv, n, c, hw, 1e-5f, relu);
    ss_batchnorm_forward_eval_naive(y_ref, x, g, b, rm, rv, n, c, hw, 1e-5f, relu);
    snprintf(label, sizeof label, "%s eval fwd", tag);
    expect_close(label, y, y_ref, nx, 2e-6);
    if (!relu) {
        float *wid = fnew((size_t)c * c), *wf = fnew((size_t)c * c), *bf = fnew(c);
        for (int i = 0; i < c; i++)
            wid[(size_t)i * c + i] = 1.0f;
        ss_batchnorm_fold(wf, bf, wid, NULL, g, b, rm, rv, c, c, 1e-5f);
        ss_conv2d_t cv;
        ss_conv2d_init(&cv, n, c, 1, hw, c, 1, 1, 1, 0);
        float *wk = fnew(ss_conv2d_forward_workspace(&cv) + 1);
        ss_conv2d_forward(&cv, dx, x, wf, bf, wk);
        snprintf(label, sizeof label, "%s fold == eval", tag);
        expect_close(label, dx, y_ref, nx, 2e-6);
        free(wid), free(wf), free(bf), free(wk);
    }
    free(x), free(g), free(b), free(y), free(y_ref), free(m), free(s), free(m_ref), free(s_ref);
    free(rm), free(rv), free(rm0), free(rv0), free(rm_ref), free(rv_ref), free(rm_pt), free(rv_pt);
    free(r), free(dx), free(dx_ref), free(dg), free(dg_ref), free(db), free(db_ref);
}

typedef struct {
    int n, c, hw;
    float *x, *g, *b, *rm, *rv, *r, *out;
} bne_ctx;

static double bne_loss(void *p)
{
    bne_ctx *k = p;
    ss_batchnorm_forward_eval_naive(k->out, k->x, k->g, k->b, k->rm, k->rv, k->n, k->c, k->hw,
                                    1e-5f, 0);
    return dot_d(k->out, k->r, (size_t)k->n * k->c * k->hw);
}

static void test_batchnorm(void)
{
    bn_case(4, 3, 25, 0);
    bn_case(3, 5, 7, 1);
    bn_case(8, 6, 1, 0);     /* BatchNorm1d */
    bn_case(32, 64, 64, 1);  /* big enough to run threaded */
    bn_case(2, 70, 300, 0);
    /* Eval-mode backward (frozen stats) by finite differences. */
    int n = 3, c = 4, hw = 10;
    size_t nx = (size_t)n * c * hw;
    bne_ctx k = {n, c, hw, frand(nx, -1, 1), frand(c, 0.5f, 1.5f), frand(c, -1, 1),
                 frand(c, -1, 1), frand(c, 0.5f, 2), frand(nx, -1, 1), fnew(nx)};
    float *dx = fnew(nx), *dg = fnew(c), *db = fnew(c);
    ss_batchnorm_backward_eval(dx, dg, db, k.r, k.x, k.g, k.rm, k.rv, NULL, n, c, hw, 1e-5f);
    gradcheck("bn eval din", k.x, dx, nx, bne_loss, &k, 1e-2f, 1e-2, 200);
    gradcheck("bn eval dgamma", k.g, dg, c, bne_loss, &k, 1e-2f, 1e-2, 200);
    gradcheck("bn eval dbeta", k.b, db, c, bne_loss, &k, 1e-2f, 1e-2, 200);
    free(k.x), free(k.g), free(k.b), free(k.rm), free(k.rv), free(k.r), free(k.out);
    free(dx), free(dg), free(db);
}

/* ---- pooling ------------------------------------------------------------------------------ */

typedef struct {
    ss_pool2d_t p;
    float *x, *r, *out;
    int32_t *idx;
} pool_ctx;

static double pool_loss(void *q)
{
    pool_ctx *k = q;
    ss_maxpool2d_forward_naive(&k->p, k->out, k->idx, k->x);
    return dot_d(k->out, k->r, (size_t)k->p.n * k->p.c * k->p.ho * k->p.wo);
}

static void maxpool_case(int n, int c, int h, int w, int k, int s, int p)
{
    ss_pool2d_t pl;
    if (ss_pool2d_init(&pl, n, c, h, w, k, s, p)) {
        ss_error_report(NULL);
        failures++;
        return;
    }
    char tag[64], label[128];
    snprintf(tag, sizeof tag, "maxpool n%d c%d %dx%d k%d s%d p%d", n, c, h, w, k, s, p);
    size_t nx = (size_t)n * c * h * w, ny = (size_t)n * c * pl.ho * pl.wo;
    /* Distinct values 0.05 apart (shuffled): no ties, and a step of 1e-3 never reorders. */
    float *x = fnew(nx);
    for (size_t i = 0; i < nx; i++)
        x[i] = 0.05f * (float)i - 0.025f * (float)nx;
    for (size_t i = nx - 1; i > 0; i--) {
        size_t j = ss_rng_u64(&rng) % (i + 1);
        float t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
    float *y = fnew(ny), *y_ref = fnew(ny), *r = frand(ny, -1, 1);
    int32_t *idx = calloc(ny, sizeof(int32_t)), *idx_ref = calloc(ny, sizeof(int32_t));
    ss_maxpool2d_forward(&pl, y, idx, x);
    ss_maxpool2d_forward_naive(&pl, y_ref, idx_ref, x);
    snprintf(label, sizeof label, "%s fwd", tag);
    expect_close(label, y, y_ref, ny, 0);
    snprintf(label, sizeof label, "%s argmax identical", tag);
    expect_true(label, memcmp(idx, idx_ref, ny * sizeof(int32_t)) == 0);
    memset(y, 0, ny * sizeof(float));
    ss_maxpool2d_forward_values(&pl, y, x);
    snprintf(label, sizeof label, "%s fwd values only", tag);
    expect_close(label, y, y_ref, ny, 0);
    float *dx = frand(nx, -1, 1), *dx_ref = fnew(nx);
    ss_maxpool2d_backward(&pl, dx, r, idx);
    ss_maxpool2d_backward_naive(&pl, dx_ref, r, idx_ref);
    snprintf(label, sizeof label, "%s bwd", tag);
    expect_close(label, dx, dx_ref, nx, 1e-6);
    pool_ctx kc = {pl, x, r, fnew(ny), calloc(ny, sizeof(int32_t))};
    snprintf(label, sizeof label, "%s din", tag);
    gradcheck(label, x, dx, nx, pool_loss, &kc, 1e-3f, 1e-2, 300);
    free(kc.out), free(kc.idx);
    free(x), free(y), free(y_ref), free(r), free(idx), free(idx_ref), free(dx), free(dx_ref);
}

typedef struct {
    int n, c, hw;
    float *x, *r, *out;
} gap_ctx;

static double gap_loss(void *q)
{
    gap_ctx *k = q;
    ss_avgpool_global_forward_naive(k->out, k->x, k->n, k->c, k->hw);
    return dot_d(k->out, k->r, (size_t)k->n * k->c);
}

static void test_pool(void)
{
    maxpool_case(2, 3, 9, 9, 3, 2, 1); /* ResNet stem pool, odd size */
    maxpool_case(2, 3, 8, 11, 3, 2, 1);
    maxpool_case(1, 2, 7, 6, 2, 2, 0);
    maxpool_case(2, 4, 10, 10, 3, 1, 1);
    maxpool_case(3, 16, 32, 32, 3, 2, 1); /* threaded */
    maxpool_case(2, 3, 35, 67, 3, 2, 1);  /* blocks of 32 columns, then an odd tail */
    maxpool_case(2, 2, 6, 64, 3, 2, 1);   /* whole blocks only */
    maxpool_case(1, 2, 5, 2, 3, 2, 1);    /* one window per row, clipped on both sides */
    /* Ties and padding semantics: all-equal input picks the first in-bounds element. */
    {
        ss_pool2d_t pl;
        ss_pool2d_init(&pl, 1, 1, 4, 4, 3, 2, 1);
        float x[16], y[4], y2[4];
        int32_t idx[4], idx2[4];
        for (int i = 0; i < 16; i++)
            x[i] = -3.0f;
        ss_maxpool2d_forward(&pl, y, idx, x);
        ss_maxpool2d_forward_naive(&pl, y2, idx2, x);
        expect_true("maxpool ties: first max, padding never wins",
                    idx[0] == 0 && idx[1] == 1 && idx[2] == 4 && idx[3] == 5 && y[0] == -3.0f &&
                        memcmp(idx, idx2, sizeof idx) == 0);
        x[5] = NAN;
        ss_maxpool2d_forward(&pl, y, idx, x);
        expect_true("maxpool NaN propagates", isnan(y[0]) && idx[0] == 5 && isnan(y[3]));
        x[10] = NAN; /* two NaNs in window (1,1): PyTorch keeps the last one */
        ss_maxpool2d_forward(&pl, y, idx, x);
        ss_maxpool2d_forward_naive(&pl, y2, idx2, x);
        expect_true("maxpool several NaNs: last wins, fast == naive",
                    idx[3] == 10 && memcmp(idx, idx2, sizeof idx) == 0);
        /* NaNs in the values-only path's 32-column blocks: on a block's edges and inside */
        {
            ss_pool2d_t pv;
            ss_pool2d_init(&pv, 1, 1, 3, 70, 3, 2, 1);
            float xv[210], yv[70], yv2[70];
            int32_t iv[70];
            for (int i = 0; i < 210; i++)
                xv[i] = (float)((i * 7) % 11);
            xv[31] = xv[32] = xv[70 + 17] = xv[140 + 63] = xv[140 + 69] = NAN;
            /* a first window of -inf only: its index is still column 0's */
            xv[0] = xv[1] = xv[70] = xv[71] = -INFINITY;
            ss_maxpool2d_forward_values(&pv, yv, xv);
            ss_maxpool2d_forward_naive(&pv, yv2, iv, xv);
            int same = 1;
            for (int i = 0; i < pv.ho * pv.wo; i++)
                same &= isnan(yv[i]) ? isnan(yv2[i]) : yv[i] == yv2[i];
            expect_true("maxpool values-only with NaNs == naive", same);
            /* the argmax path's 32-column blocks: ties (the values repeat), NaNs, -inf */
            float ya[70];
            int32_t ia[70];
            ss_maxpool2d_forward(&pv, ya, ia, xv);
            same = memcmp(ia, iv, (size_t)pv.ho * pv.wo * sizeof(int32_t)) == 0;
            for (int i = 0; i < pv.ho * pv.wo; i++)
                same &= isnan(ya[i]) ? isnan(yv2[i]) : ya[i] == yv2[i];
            expect_true("maxpool argmax with ties, NaNs and -inf on block edges == naive", same);
        }
        /* Same in the interior fast path (window fully inside a larger image). */
        ss_pool2d_t pb;
        ss_pool2d_init(&pb, 1, 1, 7, 7, 3, 2, 1);
        float xb[49], yb[16], yb2[16];
        int32_t ib[16], ib2[16];
        for (int i = 0; i < 49; i++)
            xb[i] = (float)(i % 5);
        xb[16] = NAN;
        xb[24] = NAN;
        ss_maxpool2d_forward(&pb, yb, ib, xb);
        ss_maxpool2d_forward_naive(&pb, yb2, ib2, xb);
        expect_true("maxpool interior NaNs/ties: fast == naive", memcmp(ib, ib2, sizeof ib) == 0);
    }
    /* Many ties (three levels, like ReLU output full of zeros) and a few NaNs on larger planes:
     * values and argmax bit-identical to the scan, with and without argmax. */
    {
        static const int geo[][7] = {{2, 3, 17, 19, 3, 2, 1}, {1, 2, 9, 8, 3, 1, 1},
                                     {1, 2, 33, 40, 3, 2, 1}, {2, 2, 6, 5, 3, 3, 0}};
        for (int g = 0; g < 4; g++) {
            ss_pool2d_t pl;
            ss_pool2d_init(&pl, geo[g][0], geo[g][1], geo[g][2], geo[g][3], geo[g][4], geo[g][5],
                           geo[g][6]);
            size_t nx = (size_t)pl.n * pl.c * pl.h * pl.w, ny = (size_t)pl.n * pl.c * pl.ho * pl.wo;
            float *x = fnew(nx), *y = fnew(ny), *y2 = fnew(ny), *y3 = fnew(ny);
            int32_t *i1 = calloc(ny, sizeof(int32_t)), *i2 = calloc(ny, sizeof(int32_t));
            for (size_t i = 0; i < nx; i++)
                x[i] = (float)(ss_rng_u64(&rng) % 3) - 1.0f;
            for (int k = 0; k < 3; k++)
                x[ss_rng_u64(&rng) % nx] = NAN;
            ss_maxpool2d_forward(&pl, y, i1, x);
            ss_maxpool2d_forward_naive(&pl, y2, i2, x);
            ss_maxpool2d_forward_values(&pl, y3, x);
            char label[96];
            snprintf(label, sizeof label, "maxpool ties+NaN %dx%d k%d s%d: fast == naive",
                     pl.h, pl.w, pl.k, pl.s);
            expect_true(label, memcmp(i1, i2, ny * sizeof(int32_t)) == 0 &&
                                   memcmp(y, y2, ny * sizeof(float)) == 0 &&
                                   memcmp(y3, y2, ny * sizeof(float)) == 0);
            free(x), free(y), free(y2), free(y3), free(i1), free(i2);
        }
    }
    ss_pool2d_t bad;
    expect_true("pool init rejects pad > k/2", ss_pool2d_init(&bad, 1, 1, 8, 8, 3, 2, 2) == -1);
    ss_error_clear();

    int n = 3, c = 5, hw = 13;
    size_t nx = (size_t)n * c * hw, ny = (size_t)n * c;
    gap_ctx k = {n, c, hw, frand(nx, -1, 1), frand(ny, -1, 1), fnew(ny)};
    float *y = fnew(ny), *y_ref = fnew(ny), *dx = fnew(nx), *dx_ref = fnew(nx);
    ss_avgpool_global_forward(y, k.x, n, c, hw);
    ss_avgpool_global_forward_naive(y_ref, k.x, n, c, hw);
    expect_close("avgpool fwd", y, y_ref, ny, 1e-6);
    ss_avgpool_global_backward(dx, k.r, n, c, hw);
    ss_avgpool_global_backward_naive(dx_ref, k.r, n, c, hw);
    expect_close("avgpool bwd", dx, dx_ref, nx, 1e-6);
    gradcheck("avgpool din", k.x, dx, nx, gap_loss, &k, 1e-2f, 1e-2, 300);
    free(k.x), free(k.r), free(k.out), free(y), free(y_ref), free(dx), free(dx_ref);
}

/* ---- linear ------------------------------------------------------------------------------- */

typedef struct {
    int rows, nin, nout;
    float *x, *w, *b, *r, *out;
} lin_ctx;

static double lin_loss(void *q)
{
    lin_ctx *k = q;
    ss_linear_forward_naive(k->out, k->x, k->w, k->b, k->rows, k->nin, k->nout);
    return dot_d(k->out, k->r, (size_t)k->rows * k->nout);
}

static void linear_case(int rows, int nin, int nout, int bias, int fd)
{
    char tag[64], label[128];
    snprintf(tag, sizeof tag, "linear %dx%d->%d%s", rows, nin, nout, bias ? " +b" : "");
    size_t nx = (size_t)rows * nin, nw = (size_t)nout * nin, ny = (size_t)rows * nout;
    lin_ctx k = {rows, nin, nout, frand(nx, -1, 1), frand(nw, -1, 1),
                 bias ? frand(nout, -1, 1) : NULL, frand(ny, -1, 1), fnew(ny)};
    float *y = fnew(ny), *y_ref = fnew(ny);
    ss_linear_forward(y, k.x, k.w, k.b, rows, nin, nout);
    ss_linear_forward_naive(y_ref, k.x, k.w, k.b, rows, nin, nout);
    snprintf(label, sizeof label, "%s fwd", tag);
    expect_close(label, y, y_ref, ny, 2e-5);
    float *dx = frand(nx, -1, 1), *dx_ref = fnew(nx), *dw = frand(nw, -1, 1),
          *dw_ref = fcopy(dw, nw), *db = frand(nout, -1, 1), *db_ref = fcopy(db, nout);
    ss_linear_backward(dx, dw, db, k.r, k.x, k.w, rows, nin, nout);
    ss_linear_backward_naive(dx_ref, dw_ref, db_ref, k.r, k.x, k.w, rows, nin, nout);
    snprintf(label, sizeof label, "%s bwd din", tag);
    expect_close(label, dx, dx_ref, nx, 2e-5);
    snprintf(label, sizeof label, "%s bwd dweight (+=)", tag);
    expect_close(label, dw, dw_ref, nw, 2e-5);
    snprintf(label, sizeof label, "%s bwd dbias (+=)", tag);
    expect_close(label, db, db_ref, nout, 2e-5);
    memset(dw, 0, sizeof(float) * nw);
    memset(db, 0, sizeof(float) * nout);
    ss_linear_backward(dx, dw, db, k.r, k.x, k.w, rows, nin, nout);
    if (fd) {
        snprintf(label, sizeof label, "%s din", tag);
        gradcheck(label, k.x, dx, nx, lin_loss, &k, 1e-2f, 1e-2, 200);
        snprintf(label, sizeof label, "%s dweight", tag);
        gradcheck(label, k.w, dw, nw, lin_loss, &k, 1e-2f, 1e-2, 200);
    }
    if (bias && fd) {
        snprintf(label, sizeof label, "%s dbias", tag);
        gradcheck(label, k.b, db, nout, lin_loss, &k, 1e-2f, 1e-2, 200);
    }
    free(k.x), free(k.w), free(k.b), free(k.r), free(k.out), free(y), free(y_ref);
    free(dx), free(dx_ref), free(dw), free(dw_ref), free(db), free(db_ref);
}

static void test_linear(void)
{
    linear_case(5, 7, 3, 1, 1);
    linear_case(1, 16, 9, 0, 1);
    linear_case(33, 65, 17, 1, 1);
    linear_case(130, 301, 70, 1, 0); /* big enough for the threaded ss_sgemm path */
    linear_case(70, 301, 130, 0, 0);
}

/* ss_sgemm against a direct triple loop, all transpositions, both split directions, with
 * leading dimensions larger than the matrices and beta != 0. */
static void test_sgemm(void)
{
    const int shapes[][3] = {{300, 77, 129}, {77, 300, 129}, {5, 7, 3}, {260, 260, 64}};
    for (int sh = 0; sh < 4; sh++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                const int M = shapes[sh][0], N = shapes[sh][1], K = shapes[sh][2];
                const int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
                const size_t na = (size_t)(ta ? K : M) * lda, nbb = (size_t)(tb ? N : K) * ldb,
                             nc = (size_t)M * ldc;
                float *A = frand(na, -1, 1), *B = frand(nbb, -1, 1), *C = frand(nc, -1, 1);
                float *R = fcopy(C, nc);
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++) {
                        double acc = 0;
                        for (int k = 0; k < K; k++)
                            acc += (double)(ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]) *
                                   (tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
                        R[(size_t)i * ldc + j] = (float)(0.7 * acc + 0.5 * R[(size_t)i * ldc + j]);
                    }
                ss_sgemm(ta, tb, M, N, K, 0.7f, A, lda, B, ldb, 0.5f, C, ldc);
                char label[96];
                snprintf(label, sizeof label, "ss_sgemm %dx%dx%d ta%d tb%d", M, N, K, ta, tb);
                expect_close(label, C, R, nc, 2e-5);
                free(A), free(B), free(C), free(R);
            }
}

/* ---- element-wise activations and residual add -------------------------------------------- */

typedef void (*unary_fwd)(float *, const float *, size_t);
typedef void (*unary_bwd)(float *, const float *, const float *, size_t);

typedef struct {
    unary_fwd f;
    float *x, *r, *out;
    size_t n;
} act_ctx;

static double act_loss(void *q)
{
    act_ctx *k = q;
    k->f(k->out, k->x, k->n);
    return dot_d(k->out, k->r, k->n);
}

static void act_case(const char *name, unary_fwd fwd, unary_fwd fwd_ref, unary_bwd bwd,
                     unary_bwd bwd_ref, int bwd_uses_output, float lo, float hi)
{
    char label[128];
    const size_t n = 100003; /* odd, large enough to run threaded */
    float *x = frand(n, lo, hi), *y = fnew(n), *y_ref = fnew(n), *r = frand(n, -1, 1);
    for (size_t i = 0; i < n; i++) /* keep away from the ReLU kink */
        if (fabsf(x[i]) < 0.05f)
            x[i] = x[i] < 0 ? -0.05f : 0.05f;
    fwd(y, x, n);
    fwd_ref(y_ref, x, n);
    snprintf(label, sizeof label, "%s fwd", name);
    expect_close(label, y, y_ref, n, 2e-6);
    float *dx = fnew(n), *dx_ref = fnew(n);
    const float *saved = bwd_uses_output ? y : x;
    bwd(dx, r, saved, n);
    bwd_ref(dx_ref, r, bwd_uses_output ? y_ref : x, n);
    snprintf(label, sizeof label, "%s bwd", name);
    expect_close(label, dx, dx_ref, n, 2e-6);
    /* In place: out == in, din == dout. */
    float *xi = fcopy(x, n), *ri = fcopy(r, n);
    fwd(xi, xi, n);
    bwd(ri, ri, bwd_uses_output ? xi : x, n);
    snprintf(label, sizeof label, "%s in-place", name);
    expect_close(label, xi, y, n, 0);
    expect_close(label, ri, dx, n, 0);
    /* FD on a small slice (the loss only sees the first 64 elements). */
    act_ctx k = {fwd_ref, x, r, fnew(64), 64};
    snprintf(label, sizeof label, "%s din", name);
    gradcheck(label, x, dx, 64, act_loss, &k, 1e-3f, 1e-2, 64);
    free(k.out), free(x), free(y), free(y_ref), free(r), free(dx), free(dx_ref), free(xi), free(ri);
}

static void test_act(void)
{
    act_case("relu", ss_relu_forward, ss_relu_forward_naive, ss_relu_backward,
             ss_relu_backward_naive, 1, -3, 3);
    act_case("gelu", ss_gelu_forward, ss_gelu_forward_naive, ss_gelu_backward,
             ss_gelu_backward_naive, 0, -6, 6);
    act_case("tanh", ss_tanh_forward, ss_tanh_forward_naive, ss_tanh_backward,
             ss_tanh_backward_naive, 1, -4, 4);
    act_case("sigmoid", ss_sigmoid_forward, ss_sigmoid_forward_naive, ss_sigmoid_backward,
             ss_sigmoid_backward_naive, 1, -30, 30);
    float big[2] = {-1000.0f, 1000.0f}, sg[2];
    ss_sigmoid_forward(sg, big, 2);
    expect_true("sigmoid saturates without NaN", sg[0] == 0.0f && sg[1] == 1.0f);

    /* Residual add, with and without fused ReLU. */
    const size_t n = 70001;
    float *a = frand(n, -1, 1), *b = frand(n, -1, 1), *y = fnew(n), *y_ref = fnew(n);
    float *d = frand(n, -1, 1), *da = fnew(n), *db = fnew(n), *dref = fnew(n);
    for (int relu = 0; relu < 2; relu++) {
        ss_add_forward(y, a, b, n, relu);
        ss_add_forward_naive(y_ref, a, b, n, relu);
        expect_close(relu ? "add+relu fwd" : "add fwd", y, y_ref, n, 0);
        ss_add_backward(da, db, d, relu ? y : NULL, n);
        for (size_t i = 0; i < n; i++)
            dref[i] = (!relu || y_ref[i] > 0) ? d[i] : 0.0f;
        expect_close(relu ? "add+relu bwd da" : "add bwd da", da, dref, n, 0);
        expect_close(relu ? "add+relu bwd db" : "add bwd db", db, dref, n, 0);
    }
    float *acc = fcopy(a, n);
    ss_add_inplace(acc, b, n);
    ss_add_forward_naive(y_ref, a, b, n, 0);
    expect_close("add_inplace", acc, y_ref, n, 0);
    free(a), free(b), free(y), free(y_ref), free(d), free(da), free(db), free(dref), free(acc);
}

/* ---- dropout ------------------------------------------------------------------------------ */

static void test_dropout(void)
{
    const size_t n = 200001;
    const float ps[] = {0.0f, 0.1f, 0.5f, 0.9f, 1.0f};
    float *x = frand(n, -1, 1), *y = fnew(n), *y_ref = fnew(n), *d = frand(n, -1, 1),
          *dx = fnew(n);
    uint8_t *m = malloc(n), *m_ref = malloc(n);
    for (size_t t = 0; t < sizeof ps / sizeof ps[0]; t++) {
        float p = ps[t];
        char label[96];
        ss_rng_t r1, r2;
        ss_rng_seed(&r1, 1234 + t);
        r2 = r1;
        ss_dropout_forward(y, m, x, n, p, &r1);
        ss_dropout_forward_naive(y_ref, m_ref, x, n, p, &r2);
        snprintf(label, sizeof label, "dropout p=%.1f fwd == naive", p);
        expect_close(label, y, y_ref, n, 1e-6);
        snprintf(label, sizeof label, "dropout p=%.1f same mask, rng advanced alike", p);
        expect_true(label, memcmp(m, m_ref, n) == 0 && memcmp(&r1, &r2, sizeof r1) == 0);
        size_t kept = 0;
        for (size_t i = 0; i < n; i++)
            kept += m[i];
        double frac = (double)kept / n, sd = sqrt(p * (1 - p) / n);
        snprintf(label, sizeof label, "dropout p=%.1f keep fraction %.4f", p, frac);
        expect_true(label, fabs(frac - (1 - p)) <= 5 * sd + 1e-9);
        /* Backward is linear with the forward's mask: d(sum(y*d))/dx = mask * d / (1-p). */
        ss_dropout_backward(dx, d, m, n, p);
        double worst = 0;
        for (size_t i = 0; i < n; i++) {
            double want = m[i] ? d[i] / (1.0 - p) : 0.0;
            worst = fmax(worst, fabs(want - dx[i]));
        }
        snprintf(label, sizeof label, "dropout p=%.1f bwd (err %.2g)", p, worst);
        expect_true(label, worst < 1e-5);
    }
    /* A different rng state gives a different mask. */
    ss_rng_t r3;
    ss_rng_seed(&r3, 99);
    ss_dropout_forward(y, m, x, n, 0.5f, &r3);
    ss_dropout_forward(y, m_ref, x, n, 0.5f, &r3);
    expect_true("dropout consecutive calls differ", memcmp(m, m_ref, n) != 0);
    free(x), free(y), free(y_ref), free(d), free(dx), free(m), free(m_ref);
}

/* ---- layernorm ---------------------------------------------------------------------------- */

typedef struct {
    int rows, dim;
    float *x, *w, *b, *r, *out, *m, *s;
} ln_ctx;

static double ln_loss(void *q)
{
    ln_ctx *k = q;
    ss_layernorm_forward_naive(k->out, k->m, k->s, k->x, k->w, k->b, k->rows, k->dim, 1e-5f);
    return dot_d(k->out, k->r, (size_t)k->rows * k->dim);
}

static void ln_case(int rows, int dim, int affine)
{
    char tag[64], label[128];
    snprintf(tag, sizeof tag, "layernorm %dx%d%s", rows, dim, affine ? " affine" : "");
    size_t nx = (size_t)rows * dim;
    ln_ctx k = {rows, dim, frand(nx, -2, 3), affine ? frand(dim, 0.5f, 1.5f) : NULL,
                affine ? frand(dim, -1, 1) : NULL, frand(nx, -1, 1), fnew(nx), fnew(rows),
                fnew(rows)};
    float *y = fnew(nx), *y_ref = fnew(nx), *m = fnew(rows), *s = fnew(rows), *m_ref = fnew(rows),
          *s_ref = fnew(rows);
    ss_layernorm_forward(y, m, s, k.x, k.w, k.b, rows, dim, 1e-5f);
    ss_layernorm_forward_naive(y_ref, m_ref, s_ref, k.x, k.w, k.b, rows, dim, 1e-5f);
    snprintf(label, sizeof label, "%s fwd", tag);
    expect_close(label, y, y_ref, nx, 2e-6);
    float *dx = fnew(nx), *dx_ref = fnew(nx), *dw = frand(dim, -1, 1), *dw_ref = fcopy(dw, dim),
          *db = frand(dim, -1, 1), *db_ref = fcopy(db, dim);
    ss_layernorm_backward(dx, affine ? dw : NULL, affine ? db : NULL, k.r, k.x, m, s, k.w, rows,
                          dim);
    ss_layernorm_backward_naive(dx_ref, affine ? dw_ref : NULL, affine ? db_ref : NULL, k.r, k.x,
                                m_ref, s_ref, k.w, rows, dim);
    snprintf(label, sizeof label, "%s bwd din", tag);
    expect_close(label, dx, dx_ref, nx, 2e-5);
    if (affine) {
        snprintf(label, sizeof label, "%s bwd dweight (+=)", tag);
        expect_close(label, dw, dw_ref, dim, 2e-5);
        snprintf(label, sizeof label, "%s bwd dbias (+=)", tag);
        expect_close(label, db, db_ref, dim, 2e-5);
        memset(dw, 0, sizeof(float) * dim);
        memset(db, 0, sizeof(float) * dim);
        ss_layernorm_backward(dx, dw, db, k.r, k.x, m, s, k.w, rows, dim);
        snprintf(label, sizeof label, "%s dweight", tag);
        gradcheck(label, k.w, dw, dim, ln_loss, &k, 1e-2f, 1e-2, 200);
        snprintf(label, sizeof label, "%s dbias", tag);
        gradcheck(label, k.b, db, dim, ln_loss, &k, 1e-2f, 1e-2, 200);
    }
    snprintf(label, sizeof label, "%s din", tag);
    gradcheck(label, k.x, dx, nx, ln_loss, &k, 1e-2f, 1e-2, 200);
    free(k.x), free(k.w), free(k.b), free(k.r), free(k.out), free(k.m), free(k.s);
    free(y), free(y_ref), free(m), free(s), free(m_ref), free(s_ref);
    free(dx), free(dx_ref), free(dw), free(dw_ref), free(db), free(db_ref);
}

static void test_layernorm(void)
{
    ln_case(4, 9, 1);
    ln_case(3, 16, 0);
    ln_case(300, 129, 1); /* threaded */
}

/* ---- softmax ------------------------------------------------------------------------------ */

typedef struct {
    int rows, dim;
    float *x, *r, *out;
} sm_ctx;

static double sm_loss(void *q)
{
    sm_ctx *k = q;
    ss_softmax_forward_naive(k->out, k->x, k->rows, k->dim);
    return dot_d(k->out, k->r, (size_t)k->rows * k->dim);
}

static void sm_case(int rows, int dim, float scale)
{
    char tag[64], label[128];
    snprintf(tag, sizeof tag, "softmax %dx%d scale %g", rows, dim, scale);
    size_t nx = (size_t)rows * dim;
    sm_ctx k = {rows, dim, frand(nx, -scale, scale), frand(nx, -1, 1), fnew(nx)};
    float *y = fnew(nx), *y_ref = fnew(nx), *dx = fnew(nx), *dx_ref = fnew(nx);
    ss_softmax_forward(y, k.x, rows, dim);
    ss_softmax_forward_naive(y_ref, k.x, rows, dim);
    snprintf(label, sizeof label, "%s fwd", tag);
    expect_close(label, y, y_ref, nx, 2e-6);
    ss_softmax_backward(dx, k.r, y, rows, dim);
    ss_softmax_backward_naive(dx_ref, k.r, y, rows, dim); /* same y: test the backward alone */
    snprintf(label, sizeof label, "%s bwd", tag);
    expect_close(label, dx, dx_ref, nx, 2e-6);
    /* Saturated rows (huge logits) make float differences meaningless; FD only when moderate. */
    if (scale <= 10) {
        snprintf(label, sizeof label, "%s din", tag);
        gradcheck(label, k.x, dx, nx, sm_loss, &k, 1e-3f, 1e-2, 200);
    }
    float *yi = fcopy(k.x, nx);
    ss_softmax_forward(yi, yi, rows, dim);
    snprintf(label, sizeof label, "%s in-place", tag);
    expect_close(label, yi, y, nx, 0);
    free(k.x), free(k.r), free(k.out), free(y), free(y_ref), free(dx), free(dx_ref), free(yi);
}

static void test_softmax(void)
{
    sm_case(3, 7, 3);
    sm_case(2, 10, 80); /* large logits: must not overflow */
    sm_case(200, 65, 2);
}

/* ---- thread-count independence ------------------------------------------------------------ */

/* Runs a ResNet-like chain (conv, BN train + relu, maxpool, conv, add+relu, avgpool, linear, LN,
 * GELU, softmax, dropout) forward and backward, returning every output and gradient concatenated. */
static float *chain_run(size_t *len)
{
    ss_rng_t r;
    ss_rng_seed(&r, 77);
    const int n = 6, cin = 3, h = 30, w = 26, c1 = 16;
    ss_conv2d_t cv1, cv2;
    ss_pool2d_t pl;
    ss_conv2d_init(&cv1, n, cin, h, w, c1, 7, 7, 2, 3);
    ss_pool2d_init(&pl, n, c1, cv1.ho, cv1.wo, 3, 2, 1);
    ss_conv2d_init(&cv2, n, c1, pl.ho, pl.wo, c1, 3, 3, 1, 1);
    const int hw1 = cv1.ho * cv1.wo, hw2 = pl.ho * pl.wo, nout = 10;
    size_t nx = (size_t)n * cin * h * w, n1 = (size_t)n * c1 * hw1, n2 = (size_t)n * c1 * hw2;
    size_t wss[4] = {ss_conv2d_forward_workspace(&cv1), ss_conv2d_backward_workspace(&cv1),
                     ss_conv2d_forward_workspace(&cv2), ss_conv2d_backward_workspace(&cv2)};
    size_t ws = 0;
    for (int i = 0; i < 4; i++)
        ws = wss[i] > ws ? wss[i] : ws;
    float *x = fnew(nx), *w1 = fnew((size_t)c1 * cin * 49), *w2 = fnew((size_t)c1 * c1 * 9),
          *g = fnew(c1), *bt = fnew(c1), *lw = fnew((size_t)nout * c1), *lb = fnew(nout),
          *work = fnew(ws);
    ss_rng_fill_uniform(&r, x, nx, -1, 1);
    ss_rng_fill_normal(&r, w1, (size_t)c1 * cin * 49, 0, 0.1f);
    ss_rng_fill_normal(&r, w2, (size_t)c1 * c1 * 9, 0, 0.1f);
    ss_rng_fill_uniform(&r, g, c1, 0.5f, 1.5f);
    ss_rng_fill_uniform(&r, bt, c1, -0.5f, 0.5f);
    ss_rng_fill_normal(&r, lw, (size_t)nout * c1, 0, 0.3f);
    ss_rng_fill_normal(&r, lb, nout, 0, 0.3f);
    /* Outputs and gradients, one buffer. */
    size_t total = n1 * 2 + n2 * 3 + (size_t)n * c1 + (size_t)n * nout * 4 + (size_t)c1 * cin * 49 +
                   (size_t)c1 * c1 * 9 + c1 * 2 + (size_t)nout * c1 + nout + nx + 4 * c1;
    float *all = fnew(total), *p = all;
#define TAKE(name, cnt) float *name = p; p += (cnt)
    TAKE(a1, n1); TAKE(b1, n1); TAKE(p1, n2); TAKE(a2, n2); TAKE(s2, n2);
    TAKE(gp, (size_t)n * c1); TAKE(lo, (size_t)n * nout); TAKE(ln, (size_t)n * nout);
    TAKE(ge, (size_t)n * nout); TAKE(sm, (size_t)n * nout);
    TAKE(dw1, (size_t)c1 * cin * 49); TAKE(dw2, (size_t)c1 * c1 * 9); TAKE(dg, c1); TAKE(db, c1);
    TAKE(dlw, (size_t)nout * c1); TAKE(dlb, nout); TAKE(dx, nx); TAKE(stats, 4 * c1);
#undef TAKE
    int32_t *idx = calloc(n2, sizeof(int32_t));
    float *lm = fnew(n), *ls = fnew(n), *rnd = fnew((size_t)n * nout);
    float *d_sm = fnew((size_t)n * nout), *d_ln = fnew((size_t)n * nout),
          *d_gp = fnew((size_t)n * c1), *d_s2 = fnew(n2), *d_p1 = fnew(n2), *d_b1 = fnew(n1),
          *d_a1 = fnew(n1), *d_res = fnew(n2), *d_lo = fnew((size_t)n * nout);
    uint8_t *mask = malloc((size_t)n * nout);
    int64_t nbt = 0;
    ss_rng_fill_uniform(&r, rnd, (size_t)n * nout, -1, 1);

    ss_conv2d_forward(&cv1, a1, x, w1, NULL, work);
    ss_batchnorm_forward_train(b1, stats, stats + c1, stats + 2 * c1, stats + 3 * c1, &nbt, a1, g,
                               bt, n, c1, hw1, 0.1f, 1e-5f, 1);
    ss_maxpool2d_forward(&pl, p1, idx, b1);
    ss_conv2d_forward(&cv2, a2, p1, w2, NULL, work);
    ss_add_forward(s2, a2, p1, n2, 1);
    ss_avgpool_global_forward(gp, s2, n, c1, hw2);
    ss_linear_forward(lo, gp, lw, lb, n, c1, nout);
    ss_layernorm_forward(ln, lm, ls, lo, NULL, NULL, n, nout, 1e-5f);
    ss_gelu_forward(ge, ln, (size_t)n * nout);
    ss_rng_t dr;
    ss_rng_seed(&dr, 5);
    ss_dropout_forward(ge, mask, ge, (size_t)n * nout, 0.2f, &dr);
    ss_softmax_forward(sm, ge, n, nout);

    ss_softmax_backward(d_sm, rnd, sm, n, nout);
    ss_dropout_backward(d_sm, d_sm, mask, (size_t)n * nout, 0.2f);
    ss_gelu_backward(d_ln, d_sm, ln, (size_t)n * nout);
    ss_layernorm_backward(d_lo, NULL, NULL, d_ln, lo, lm, ls, NULL, n, nout);
    ss_linear_backward(d_gp, dlw, dlb, d_lo, gp, lw, n, c1, nout);
    ss_avgpool_global_backward(d_s2, d_gp, n, c1, hw2);
    ss_add_backward(d_res, d_s2, d_s2, s2, n2); /* d_res: conv2 branch, d_s2: identity */
    ss_conv2d_backward(&cv2, d_p1, dw2, NULL, d_res, p1, w2, work);
    ss_add_inplace(d_p1, d_s2, n2);
    ss_maxpool2d_backward(&pl, d_b1, d_p1, idx);
    ss_batchnorm_backward(d_a1, dg, db, d_b1, a1, stats, stats + c1, g, b1, n, c1, hw1);
    ss_conv2d_backward(&cv1, dx, dw1, NULL, d_a1, x, w1, work);

    free(x), free(w1), free(w2), free(g), free(bt), free(lw), free(lb), free(work), free(idx);
    free(lm), free(ls), free(rnd), free(d_sm), free(d_ln), free(d_gp), free(d_s2), free(d_p1);
    free(d_b1), free(d_a1), free(d_res), free(d_lo), free(mask);
    *len = (size_t)(p - all);
    return all;
}

static void test_threads(void)
{
    size_t n1, n2;
    ss_nn_set_threads(1);
    expect_true("ss_nn_threads() == 1 after set(1)", ss_nn_threads() == 1);
    float *one = chain_run(&n1);
    ss_nn_set_threads(2);
    expect_true("ss_nn_threads() == 2 after set(2)", ss_nn_threads() == 2);
    float *two = chain_run(&n2);
    expect_true("same length", n1 == n2);
    expect_close("chain fwd+bwd 1 vs 2 threads", two, one, n1, 1e-6);
    size_t same = 0;
    for (size_t i = 0; i < n1; i++)
        same += one[i] == two[i];
    printf("     %zu of %zu values bit-identical\n", same, n1);
    free(one);
    free(two);
    /* Conv layers big enough that the work is really split, one per path (Winograd, im2col by
     * column tasks, by output-channel blocks, the stem by rows, stride-2 image tasks, 1x1
     * downsample, tap pairs on 2x2 and 3x3 maps): task extents depend on the shape and the CPU count only and every element is
     * reduced by one thread, so 1 and 2 threads give bit-identical results. */
    static const int geo[][9] = {/* n cin h w cout k s p */
                                 {8, 32, 20, 20, 48, 3, 1, 1},   {8, 64, 12, 12, 64, 3, 1, 1},
                                 {16, 128, 4, 4, 512, 3, 1, 1},  {4, 3, 64, 64, 16, 7, 2, 3},
                                 {16, 32, 16, 16, 64, 3, 2, 1},  {16, 64, 16, 16, 128, 1, 2, 0},
                                 {32, 128, 4, 4, 256, 3, 1, 1},  {8, 64, 16, 16, 64, 3, 1, 1},
                                 {40, 64, 2, 2, 72, 3, 1, 1},    {33, 64, 3, 3, 64, 3, 1, 1}};
    for (int g = 0; g < (int)(sizeof geo / sizeof geo[0]); g++) {
        ss_conv2d_t c;
        ss_conv2d_init(&c, geo[g][0], geo[g][1], geo[g][2], geo[g][3], geo[g][4], geo[g][5],
                       geo[g][5], geo[g][6], geo[g][7]);
        size_t nx = (size_t)c.n * c.cin * c.h * c.w, ny = (size_t)c.n * c.cout * c.ho * c.wo,
               nw = (size_t)c.cout * c.cin * c.kh * c.kw;
        size_t wf = ss_conv2d_forward_workspace(&c), wb = ss_conv2d_backward_workspace(&c);
        float *x = frand(nx, -1, 1), *w = frand(nw, -1, 1), *work = fnew(wf > wb ? wf : wb);
        float *y1 = fnew(ny), *y2 = fnew(ny), *dx1 = fnew(nx), *dx2 = fnew(nx), *dw1 = fnew(nw),
              *dw2 = fnew(nw);
        ss_nn_set_threads(1);
        ss_conv2d_forward(&c, y1, x, w, NULL, work);
        ss_conv2d_backward(&c, dx1, dw1, NULL, y1, x, w, work);
        ss_nn_set_threads(2);
        ss_conv2d_forward(&c, y2, x, w, NULL, work);
        ss_conv2d_backward(&c, dx2, dw2, NULL, y1, x, w, work);
        char label[96];
        snprintf(label, sizeof label, "conv n%d %dx%d²->%d k%d s%d: 1 vs 2 threads bit-identical",
                 c.n, c.cin, c.h, c.cout, c.kh, c.sh);
        expect_true(label, memcmp(y1, y2, ny * sizeof(float)) == 0 &&
                               memcmp(dx1, dx2, nx * sizeof(float)) == 0 &&
                               memcmp(dw1, dw2, nw * sizeof(float)) == 0);
        free(x), free(w), free(work), free(y1), free(y2), free(dx1), free(dx2), free(dw1),
            free(dw2);
    }
}

static void test_rng(void)
{
    ss_rng_t a, b;
    ss_rng_seed(&a, 42);
    ss_rng_seed(&b, 42);
    int same = 1;
    for (int i = 0; i < 1000; i++)
        same &= ss_rng_u64(&a) == ss_rng_u64(&b);
    expect_true("rng deterministic for a seed", same);
    double s = 0, s2 = 0, umin = 1, umax = 0;
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        double v = ss_rng_normal(&a), u = ss_rng_uniform(&a);
        s += v;
        s2 += v * v;
        umin = fmin(umin, u);
        umax = fmax(umax, u);
    }
    expect_true("rng normal: mean ~0, var ~1",
                fabs(s / n) < 0.02 && fabs(s2 / n - 1) < 0.02);
    expect_true("rng uniform in [0,1)", umin >= 0 && umax < 1 && umax > 0.999);
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } cases[] = {{"conv", test_conv},         {"conv_cl", test_conv_cl},
                 {"batchnorm", test_batchnorm},
                 {"pool", test_pool},         {"linear", test_linear},       {"sgemm", test_sgemm},
                 {"act", test_act},           {"dropout", test_dropout},
                 {"layernorm", test_layernorm}, {"softmax", test_softmax},
                 {"threads", test_threads},   {"rng", test_rng}};
    const int ncases = (int)(sizeof cases / sizeof cases[0]);
    if (argc != 2) {
        fprintf(stderr, "usage: %s CASE|all\n", argv[0]);
        return 2;
    }
    ss_rng_seed(&rng, 20261122);
    ss_nn_set_threads(0);
    /* the own-kernel paths (tap pairs, the stem by rows) in every build, sanitizers included */
    ss_nn_set_own_kernels(1);
    int ran = 0;
    for (int i = 0; i < ncases; i++)
        if (!strcmp(argv[1], "all") || !strcmp(argv[1], cases[i].name)) {
            cases[i].fn();
            ran++;
        }
    if (!ran) {
        fprintf(stderr, "unknown case %s\n", argv[1]);
        return 2;
    }
    printf("%s: %d failure(s)\n", argv[1], failures);
    return failures ? 1 : 0;
}
