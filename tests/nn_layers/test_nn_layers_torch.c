/* PyTorch parity of the NN layer kernels. torch_layers.py writes each layer's inputs and
 * PyTorch's outputs and gradients as raw float32 files into DIR and runs `test_nn_layers_torch
 * DIR`; this program recomputes everything with nn_layers.h and compares.
 * Tolerance: max|ours - torch| / max|torch| <= 1e-5 (2e-5 for conv/BN gradients), exact for
 * max-pool indices. Exit 1 on any mismatch. */
#include "slidestream/nn_layers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *dir;
static int failures;

/* Read DIR/name.f32, which must hold exactly n floats; exits 1 otherwise (our own fixture). */
static float *load(const char *name, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.f32", dir, name);
    FILE *f = fopen(path, "rb");
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!f || !p) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(1);
    }
    size_t got = fread(p, sizeof(float), n, f);
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (got != n || extra) {
        fprintf(stderr, "%s: expected %zu floats\n", path, n);
        exit(1);
    }
    return p;
}

static float *zeros(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p)
        exit(2);
    return p;
}

static void check(const char *what, const float *ours, const float *ref, size_t n, double tol)
{
    double worst = 0, scale = 1e-6;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)ours[i] - ref[i]);
        if (!(d <= worst)) {
            worst = d;
            wi = i;
        }
        scale = fmax(scale, fabs(ref[i]));
    }
    double rel = worst / scale;
    int ok = rel <= tol;
    printf("%s %-28s rel %.3g (tol %.0e)", ok ? "ok  " : "FAIL", what, rel, tol);
    if (!ok)
        printf(" at %zu: %.8g vs torch %.8g", wi, (double)ours[wi], (double)ref[wi]);
    printf("\n");
    failures += !ok;
}

static void test_conv(void)
{
    ss_conv2d_t c;
    if (ss_conv2d_init(&c, 2, 3, 11, 9, 5, 3, 3, 2, 1))
        exit(1);
    size_t nx = 2 * 3 * 11 * 9, nw = 5 * 3 * 9, ny = (size_t)2 * 5 * c.ho * c.wo;
    float *x = load("conv_x", nx), *w = load("conv_w", nw), *b = load("conv_b", 5),
          *y = load("conv_y", ny), *dy = load("conv_dy", ny), *dx = load("conv_dx", nx),
          *dw = load("conv_dw", nw), *db = load("conv_db", 5);
    size_t wf = ss_conv2d_forward_workspace(&c), wb = ss_conv2d_backward_workspace(&c);
    float *work = zeros(wf > wb ? wf : wb), *oy = zeros(ny), *odx = zeros(nx), *odw = zeros(nw),
          *odb = zeros(5);
    ss_conv2d_forward(&c, oy, x, w, b, work);
    ss_conv2d_backward(&c, odx, odw, odb, dy, x, w, work);
    check("conv2d y", oy, y, ny, 1e-5);
    check("conv2d dx", odx, dx, nx, 2e-5);
    check("conv2d dw", odw, dw, nw, 2e-5);
    check("conv2d db", odb, db, 5, 2e-5);
    free(x), free(w), free(b), free(y), free(dy), free(dx), free(dw), free(db), free(work);
    free(oy), free(odx), free(odw), free(odb);
}

static void test_bn(void)
{
    const int n = 4, c = 3, hw = 30;
    size_t nx = (size_t)n * c * hw;
    float *g = load("bn_gamma", c), *bt = load("bn_beta", c), *rm = load("bn_rm0", c),
          *rv = load("bn_rv0", c), *x = load("bn_x", nx), *y = load("bn_y", nx),
          *dy = load("bn_dy", nx), *dx = load("bn_dx", nx), *dg = load("bn_dgamma", c),
          *db = load("bn_dbeta", c), *rm1 = load("bn_rm1", c), *rv1 = load("bn_rv1", c),
          *nbt_ref = load("bn_nbt", 1), *x2 = load("bn_x2", nx), *y2 = load("bn_y2", nx);
    float *oy = zeros(nx), *m = zeros(c), *s = zeros(c), *odx = zeros(nx), *odg = zeros(c),
          *odb = zeros(c), *oy2 = zeros(nx);
    int64_t nbt = 0;
    ss_batchnorm_forward_train(oy, m, s, rm, rv, &nbt, x, g, bt, n, c, hw, 0.1f, 1e-5f, 0);
    ss_batchnorm_backward(odx, odg, odb, dy, x, m, s, g, NULL, n, c, hw);
    check("batchnorm train y", oy, y, nx, 1e-5);
    check("batchnorm running_mean", rm, rm1, c, 1e-6);
    check("batchnorm running_var", rv, rv1, c, 1e-6);
    float fnbt = (float)nbt;
    check("batchnorm num_batches_tracked", &fnbt, nbt_ref, 1, 0);
    check("batchnorm dx", odx, dx, nx, 2e-5);
    check("batchnorm dgamma", odg, dg, c, 2e-5);
    check("batchnorm dbeta", odb, db, c, 2e-5);
    ss_batchnorm_forward_eval(oy2, x2, g, bt, rm, rv, n, c, hw, 1e-5f, 0);
    check("batchnorm eval y", oy2, y2, nx, 1e-5);
    free(g), free(bt), free(rm), free(rv), free(x), free(y), free(dy), free(dx), free(dg);
    free(db), free(rm1), free(rv1), free(nbt_ref), free(x2), free(y2), free(oy), free(m), free(s);
    free(odx), free(odg), free(odb), free(oy2);
}

static void test_pool(void)
{
    ss_pool2d_t p;
    if (ss_pool2d_init(&p, 2, 3, 9, 8, 3, 2, 1))
        exit(1);
    size_t nx = 2 * 3 * 9 * 8, ny = (size_t)2 * 3 * p.ho * p.wo;
    float *x = load("mp_x", nx), *y = load("mp_y", ny), *idx = load("mp_idx", ny),
          *dy = load("mp_dy", ny), *dx = load("mp_dx", nx);
    float *oy = zeros(ny), *oidx = zeros(ny), *odx = zeros(nx);
    int32_t *am = calloc(ny, sizeof(int32_t));
    ss_maxpool2d_forward(&p, oy, am, x);
    ss_maxpool2d_backward(&p, odx, dy, am);
    for (size_t i = 0; i < ny; i++)
        oidx[i] = (float)am[i];
    check("maxpool y", oy, y, ny, 0);
    check("maxpool indices", oidx, idx, ny, 0);
    check("maxpool dx", odx, dx, nx, 1e-6);
    free(x), free(y), free(idx), free(dy), free(dx), free(oy), free(oidx), free(odx), free(am);

    const int n = 3, c = 4, hw = 35;
    float *gx = load("gap_x", (size_t)n * c * hw), *gy = load("gap_y", (size_t)n * c),
          *gdy = load("gap_dy", (size_t)n * c), *gdx = load("gap_dx", (size_t)n * c * hw);
    float *ogy = zeros((size_t)n * c), *ogdx = zeros((size_t)n * c * hw);
    ss_avgpool_global_forward(ogy, gx, n, c, hw);
    ss_avgpool_global_backward(ogdx, gdy, n, c, hw);
    check("avgpool y", ogy, gy, (size_t)n * c, 1e-6);
    check("avgpool dx", ogdx, gdx, (size_t)n * c * hw, 1e-6);
    free(gx), free(gy), free(gdy), free(gdx), free(ogy), free(ogdx);
}

static void test_linear_ln(void)
{
    float *x = load("lin_x", 70), *w = load("lin_w", 40), *b = load("lin_b", 4),
          *y = load("lin_y", 28), *dy = load("lin_dy", 28), *dx = load("lin_dx", 70),
          *dw = load("lin_dw", 40), *db = load("lin_db", 4);
    float *oy = zeros(28), *odx = zeros(70), *odw = zeros(40), *odb = zeros(4);
    ss_linear_forward(oy, x, w, b, 7, 10, 4);
    ss_linear_backward(odx, odw, odb, dy, x, w, 7, 10, 4);
    check("linear y", oy, y, 28, 1e-5);
    check("linear dx", odx, dx, 70, 1e-5);
    check("linear dw", odw, dw, 40, 1e-5);
    check("linear db", odb, db, 4, 1e-5);
    free(x), free(w), free(b), free(y), free(dy), free(dx), free(dw), free(db);
    free(oy), free(odx), free(odw), free(odb);

    float *lx = load("ln_x", 60), *lw = load("ln_w", 12), *lb = load("ln_b", 12),
          *ly = load("ln_y", 60), *ldy = load("ln_dy", 60), *ldx = load("ln_dx", 60),
          *ldw = load("ln_dw", 12), *ldb = load("ln_db", 12);
    float *o = zeros(60), *m = zeros(5), *r = zeros(5), *odx2 = zeros(60), *odw2 = zeros(12),
          *odb2 = zeros(12);
    ss_layernorm_forward(o, m, r, lx, lw, lb, 5, 12, 1e-5f);
    ss_layernorm_backward(odx2, odw2, odb2, ldy, lx, m, r, lw, 5, 12);
    check("layernorm y", o, ly, 60, 1e-5);
    check("layernorm dx", odx2, ldx, 60, 1e-5);
    check("layernorm dweight", odw2, ldw, 12, 1e-5);
    check("layernorm dbias", odb2, ldb, 12, 1e-5);
    free(lx), free(lw), free(lb), free(ly), free(ldy), free(ldx), free(ldw), free(ldb);
    free(o), free(m), free(r), free(odx2), free(odw2), free(odb2);
}

static void test_elementwise(void)
{
    static const char *names[] = {"gelu", "tanh", "sigmoid", "relu", "softmax"};
    const size_t n = 54;
    for (int k = 0; k < 5; k++) {
        char nm[64];
        snprintf(nm, sizeof nm, "%s_x", names[k]);
        float *x = load(nm, n);
        snprintf(nm, sizeof nm, "%s_y", names[k]);
        float *y = load(nm, n);
        snprintf(nm, sizeof nm, "%s_dy", names[k]);
        float *dy = load(nm, n);
        snprintf(nm, sizeof nm, "%s_dx", names[k]);
        float *dx = load(nm, n);
        float *oy = zeros(n), *odx = zeros(n);
        switch (k) {
        case 0:
            ss_gelu_forward(oy, x, n);
            ss_gelu_backward(odx, dy, x, n);
            break;
        case 1:
            ss_tanh_forward(oy, x, n);
            ss_tanh_backward(odx, dy, oy, n);
            break;
        case 2:
            ss_sigmoid_forward(oy, x, n);
            ss_sigmoid_backward(odx, dy, oy, n);
            break;
        case 3:
            ss_relu_forward(oy, x, n);
            ss_relu_backward(odx, dy, oy, n);
            break;
        default:
            ss_softmax_forward(oy, x, 6, 9);
            ss_softmax_backward(odx, dy, oy, 6, 9);
        }
        snprintf(nm, sizeof nm, "%s y", names[k]);
        check(nm, oy, y, n, 1e-5);
        snprintf(nm, sizeof nm, "%s dx", names[k]);
        check(nm, odx, dx, n, 1e-5);
        free(x), free(y), free(dy), free(dx), free(oy), free(odx);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR (run through torch_layers.py)\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    ss_nn_set_threads(0);
    test_conv();
    test_bn();
    test_pool();
    test_linear_ln();
    test_elementwise();
    printf("torch parity: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
