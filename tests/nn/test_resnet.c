/* nn.resnet — model structure (torchvision parameter counts and state_dict names), width
 * multiplier and layer3 truncation, a finite-difference check of the whole backward on a tiny
 * model, checkpoint round trips and wrong-checkpoint errors.
 *
 * Also helper modes for nn.ckpt_convert: `test_nn_resnet resave IN.h5 OUT.h5` loads IN into a
 * model built from its attributes and saves it again; `test_nn_resnet make OUT.h5 WIDTH` saves
 * a random width-scaled ResNet-18.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../check.h"
#include "slidestream/error.h"
#include "slidestream/nn_layers.h"
#include "slidestream/nn_resnet.h"

static const ss_ckpt_tensor_t *find(const ss_resnet_t *m, const char *name)
{
    for (int i = 0; i < m->table_len; i++)
        if (!strcmp(m->table[i].name, name)) return &m->table[i];
    return NULL;
}

static void structure(void)
{
    /* torchvision: resnet18 11,689,512 and resnet34 21,797,672 parameters with fc(512, 1000) */
    struct {
        int depth;
        size_t params;
        int entries;
    } want[2] = {{18, 11689512, 122}, {34, 21797672, 218}};
    for (int i = 0; i < 2; i++) {
        ss_resnet_config_t c = ss_resnet_config_default(want[i].depth);
        c.num_classes = 1000;
        c.input_size = 32;
        ss_resnet_t *m = ss_resnet_new(&c, 1, 0);
        CHECK(m != NULL, "%s", ss_error_last());
        if (!m) continue;
        CHECK(m->num_params == want[i].params, "resnet%d has %zu params", want[i].depth,
              m->num_params);
        CHECK(m->table_len == want[i].entries, "resnet%d state_dict has %d entries", want[i].depth,
              m->table_len);
        CHECK(!strcmp(m->table[0].name, "conv1.weight"), "first %s", m->table[0].name);
        CHECK(!strcmp(m->table[m->table_len - 1].name, "fc.bias"), "last");
        const ss_ckpt_tensor_t *t = find(m, "layer2.0.downsample.0.weight");
        CHECK(t && t->ndim == 4 && t->shape[0] == 128 && t->shape[1] == 64 && t->shape[2] == 1,
              "downsample shape");
        t = find(m, "layer3.1.bn2.num_batches_tracked");
        CHECK(t && t->dtype == SS_DTYPE_I64 && t->ndim == 0, "counter");
        CHECK(find(m, "layer1.0.downsample.0.weight") == NULL, "no downsample in layer1");
        ss_resnet_destroy(&m);
        CHECK(m == NULL, "destroy");
    }
    /* width 0.25, truncated after layer3, projector */
    ss_resnet_config_t c = ss_resnet_config_default(18);
    c.width_multiplier = 0.25;
    c.truncate_layer3 = 1;
    c.proj_hidden = 32;
    c.proj_out = 16;
    c.input_size = 48;
    ss_resnet_t *m = ss_resnet_new(&c, 2, 1);
    CHECK(m && m->feature_dim == 64, "feature dim %d", m ? m->feature_dim : -1);
    if (m) {
        CHECK(find(m, "layer4.0.conv1.weight") == NULL, "no layer4");
        const ss_ckpt_tensor_t *t = find(m, "layer3.0.conv1.weight");
        CHECK(t && t->shape[0] == 64 && t->shape[1] == 32, "layer3 widths");
        t = find(m, "projector.2.weight");
        CHECK(t && t->shape[0] == 16 && t->shape[1] == 32, "projector shape");
        CHECK(ss_resnet_output(m, SS_RESNET_LOGITS, NULL) == NULL, "no fc");
    }
    ss_resnet_destroy(&m);
    /* bad configurations are errors */
    c = ss_resnet_config_default(50);
    CHECK(ss_resnet_new(&c, 1, 0) == NULL, "depth 50 rejected");
    c = ss_resnet_config_default(18);
    c.input_size = 31;
    CHECK(ss_resnet_new(&c, 1, 0) == NULL, "31 px rejected");
    ss_error_clear();
}

/* loss = sum_i w_i f_i over the feature, the logits and the projection. */
static double probe_loss(ss_resnet_t *m, const float *x, int n, const float *w, int train)
{
    if (ss_resnet_forward(m, x, n, train)) return NAN;
    double L = 0;
    int dims[3], k = 0;
    const float *o[3] = {ss_resnet_output(m, SS_RESNET_FEATURE, &dims[0]),
                         ss_resnet_output(m, SS_RESNET_LOGITS, &dims[1]),
                         ss_resnet_output(m, SS_RESNET_PROJECTION, &dims[2])};
    for (int j = 0; j < 3; j++)
        for (int i = 0; i < n * dims[j]; i++)
            L += (double)w[k++] * o[j][i];
    return L;
}

static void gradient_check(void)
{
    ss_resnet_config_t c = ss_resnet_config_default(18);
    /* 8-16-32 channels, truncated after layer3 (4x4 at 64 px): BN over a 1x1 layer4 with four
     * images would be too ill-conditioned for finite differences */
    c.width_multiplier = 1.0 / 8;
    c.truncate_layer3 = 1;
    c.input_size = 64;
    c.num_classes = 3;
    c.proj_hidden = 8;
    c.proj_out = 5;
    c.seed = 7;
    int n = 4;
    ss_nn_set_threads(1); /* many tiny forwards: threads would only add overhead */
    ss_resnet_t *m = ss_resnet_new(&c, n, 1);
    CHECK(m != NULL, "%s", ss_error_last());
    if (!m) return;
    ss_rng_t rng;
    ss_rng_seed(&rng, 3);
    size_t nx = (size_t)n * 3 * 64 * 64, nw = (size_t)n * (32 + 3 + 5);
    float *x = malloc(nx * sizeof(float)), *w = malloc(nw * sizeof(float));
    ss_rng_fill_normal(&rng, x, nx, 0, 1);
    ss_rng_fill_normal(&rng, w, nw, 0, 1);
    /* analytic gradient */
    ss_resnet_zero_grad(m);
    probe_loss(m, x, n, w, 1);
    CHECK(ss_resnet_backward(m, w, w + n * 32, w + n * 35) == 0, "%s", ss_error_last());
    float *g = malloc(m->num_params * sizeof(float));
    memcpy(g, m->grads, m->num_params * sizeof(float));
    /* the running stats move on every training forward; keep them fixed for the probes */
    float *buf = malloc(m->num_buffers * sizeof(float));
    memcpy(buf, m->buffers, m->num_buffers * sizeof(float));
    /* Central differences on 40 parameters spread over the model. ReLU and max-pool kinks
     * make a single step size unreliable on a whole network (a 1e-3 step on a stem weight
     * crosses many of them), so a parameter passes when the difference quotient at any of
     * three step sizes agrees; a wrong gradient disagrees at all of them. The bit-level check
     * of every gradient is nn.parity_resnet18 (against PyTorch). */
    static const double steps[3] = {3e-4, 1e-4, 1e-3};
    int bad = 0, checked = 0, fallback = 0;
    double worst = 0;
    for (int k = 0; k < 40; k++) {
        size_t i = (size_t)((double)k / 40 * m->num_params) + (size_t)(k * 7919) % 97;
        if (i >= m->num_params) i = m->num_params - 1;
        float keep = m->params[i];
        double best = INFINITY, best_fd = 0;
        for (int s = 0; s < 3 && best > 1; s++) {
            double h = steps[s];
            m->params[i] = keep + (float)h;
            double lp = probe_loss(m, x, n, w, 1);
            m->params[i] = keep - (float)h;
            double lm = probe_loss(m, x, n, w, 1);
            m->params[i] = keep;
            double fd = (lp - lm) / (2 * h);
            double err = fabs(fd - g[i]) / (5e-3 + 5e-2 * fabs(fd));
            if (err < best) best = err, best_fd = fd;
            if (s > 0 && err <= 1) fallback++;
        }
        if (best > worst) worst = best;
        if (best > 1) {
            bad++;
            fprintf(stderr, "param %zu: analytic %.6g finite difference %.6g\n", i, g[i], best_fd);
        }
        checked++;
    }
    memcpy(m->buffers, buf, m->num_buffers * sizeof(float));
    printf("resnet gradient check: %d parameters (%d needed a second step size), worst "
           "err/tol %.3f\n",
           checked, fallback, worst);
    CHECK(bad == 0, "%d of %d finite-difference checks failed", bad, checked);

    /* eval forward = batch-norm-on-running-stats; same input twice gives the same output,
     * and a batch of one equals the first row of the batch */
    CHECK(ss_resnet_forward(m, x, n, 0) == 0, "eval");
    int d;
    const float *f = ss_resnet_output(m, SS_RESNET_PROJECTION, &d);
    float *keep = malloc(sizeof(float) * n * d);
    memcpy(keep, f, sizeof(float) * n * d);
    CHECK(ss_resnet_forward(m, x, 1, 0) == 0, "eval n=1");
    for (int i = 0; i < d; i++)
        CHECK_NEAR(f[i], keep[i], 1e-5, 1e-4);
    CHECK(ss_resnet_forward(m, x, 1, 1) == -1, "training forward of one image is refused");
    CHECK(ss_resnet_forward(m, x, n + 1, 0) == -1, "batch above max refused");
    ss_error_clear();
    free(keep), free(x), free(w), free(g), free(buf);
    ss_resnet_destroy(&m);
    ss_nn_set_threads(0);
}

static void checkpoints(const char *dir)
{
    char path[512], path2[512];
    snprintf(path, sizeof(path), "%s/nn_resnet_test_%ld.h5", dir, (long)getpid());
    snprintf(path2, sizeof(path2), "%s/nn_resnet_test2_%ld.h5", dir, (long)getpid());
    ss_resnet_config_t c = ss_resnet_config_default(18);
    c.width_multiplier = 0.125;
    c.input_size = 40;
    c.num_classes = 2;
    c.truncate_layer3 = 1;
    c.mean[0] = 0.6009;
    c.seed = 11;
    ss_resnet_t *m = ss_resnet_new(&c, 2, 0);
    if (!m) {
        CHECK(0, "%s", ss_error_last());
        return;
    }
    m->counters[3] = 42;
    m->buffers[5] = 0.75f;
    CHECK(ss_resnet_save(m, path) == 0, "%s", ss_error_last());
    ss_resnet_t *r = ss_resnet_new_from_checkpoint(path, 3, 0);
    CHECK(r != NULL, "%s", ss_error_last());
    if (r) {
        CHECK(r->num_params == m->num_params && r->cfg.num_classes == 2 && r->cfg.truncate_layer3 &&
                  r->cfg.input_size == 40 && r->cfg.width_multiplier == 0.125 &&
                  r->cfg.mean[0] == 0.6009,
              "configuration restored");
        CHECK(!memcmp(r->params, m->params, m->num_params * sizeof(float)), "params");
        CHECK(r->counters[3] == 42 && r->buffers[5] == 0.75f, "buffers and counters");
        ss_resnet_destroy(&r);
    }
    /* an inference-only model (own ping-pong buffers) computes what a training-capable one
     * computes in eval mode (buffers carved from its training arena) */
    r = ss_resnet_new_from_checkpoint(path, 2, 1);
    CHECK(r != NULL, "%s", ss_error_last());
    if (r) {
        size_t nx = (size_t)2 * 3 * 40 * 40;
        float *x = malloc(nx * sizeof(float));
        ss_rng_t rng;
        ss_rng_seed(&rng, 5);
        ss_rng_fill_normal(&rng, x, nx, 0, 1);
        int d1, d2;
        CHECK(ss_resnet_forward(m, x, 2, 0) == 0 && ss_resnet_forward(r, x, 2, 0) == 0, "eval");
        const float *a = ss_resnet_output(m, SS_RESNET_LOGITS, &d1);
        const float *b = ss_resnet_output(r, SS_RESNET_LOGITS, &d2);
        CHECK(d1 == 2 && d2 == 2, "logit width");
        for (int i = 0; i < 4; i++)
            CHECK_NEAR(a[i], b[i], 1e-6, 1e-5);
        free(x);
        ss_resnet_destroy(&r);
    }
    /* a checkpoint's configuration with another input size loads the same weights */
    ss_resnet_config_t fc;
    CHECK(ss_resnet_config_from_checkpoint(path, &fc) == 0, "%s", ss_error_last());
    CHECK(fc.num_classes == 2 && fc.proj_hidden == 0 && fc.truncate_layer3, "config");
    fc.input_size = 64;
    r = ss_resnet_new(&fc, 1, 0);
    CHECK(r && ss_resnet_load(r, path, 0) == 0, "load at 64 px: %s", ss_error_last());
    if (r) {
        CHECK(!memcmp(r->params, m->params, m->num_params * sizeof(float)), "params");
        /* preprocessing: (v/255 - mean)/std, HWC bytes to CHW floats */
        uint8_t *rgb = malloc(64 * 64 * 3);
        float *x = malloc(sizeof(float) * 3 * 64 * 64);
        for (int i = 0; i < 64 * 64 * 3; i++)
            rgb[i] = (uint8_t)(i * 7);
        ss_resnet_preprocess_u8(r, x, rgb, 1);
        for (int c = 0; c < 3; c++)
            CHECK_NEAR(x[c * 64 * 64 + 5], (rgb[15 + c] / 255.0 - fc.mean[c]) / fc.std[c], 1e-5,
                       1e-5);
        free(rgb), free(x);
        ss_resnet_destroy(&r);
    }
    /* loading into a model of another shape names the problem */
    c.num_classes = 3;
    ss_resnet_t *o = ss_resnet_new(&c, 1, 0);
    ss_error_clear();
    CHECK(o && ss_resnet_load(o, path, 0) == -1, "wrong head accepted");
    CHECK(strstr(ss_error_buffer(), "'fc.weight' has shape (2, 32), the model expects (3, 32)"),
          "error was: %s", ss_error_buffer());
    ss_resnet_destroy(&o);
    c.truncate_layer3 = 0;
    c.num_classes = 2;
    o = ss_resnet_new(&c, 1, 0);
    ss_error_clear();
    CHECK(o && ss_resnet_load(o, path, 0) == -1, "layer4 model accepted a layer3 file");
    CHECK(strstr(ss_error_buffer(), "(layer3)") != NULL, "error was: %s", ss_error_buffer());
    ss_resnet_destroy(&o);
    ss_error_clear();
    /* save -> load -> save gives an identical table */
    r = ss_resnet_new_from_checkpoint(path, 1, 0);
    CHECK(r && ss_resnet_save(r, path2) == 0, "resave");
    ss_resnet_destroy(&r);
    unlink(path);
    unlink(path2);
    ss_resnet_destroy(&m);
}

/* The inference paths of ResNet-18: Winograd with the weights transformed once (F(4×4) on
 * layers 1-2, F(2×2) channels last on layer3 at 64 px and layer4's 2×2 maps, F(3×3) on the
 * 6×6 and 3×3 maps at 96 px; batch 13 there, so that products have rows left over; a 0.75
 * width) against im2col for every conv, and 1 against 2 threads, bit for bit. */
static void eval_paths(int size, int n, double width)
{
    ss_resnet_config_t c = ss_resnet_config_default(18);
    c.input_size = size;
    c.width_multiplier = width;
    c.num_classes = 5;
    c.seed = 3;
    ss_resnet_t *m = ss_resnet_new(&c, n, 0);
    if (!m) {
        CHECK(0, "%s", ss_error_last());
        return;
    }
    size_t nx = (size_t)n * 3 * size * size;
    float *x = malloc(nx * sizeof(float));
    ss_rng_t rng;
    ss_rng_seed(&rng, 17);
    ss_rng_fill_normal(&rng, x, nx, 0, 1);
    int d = 0;
    float *out[3];
    for (int k = 0; k < 3; k++) { /* 2 threads; 1 thread; im2col */
        ss_nn_set_threads(k == 1 ? 1 : 2);
        ss_conv2d_set_winograd(k != 2);
        CHECK(ss_resnet_forward(m, x, n, 0) == 0, "eval %d", k);
        const float *f = ss_resnet_output(m, SS_RESNET_FEATURE, &d);
        out[k] = malloc((size_t)n * d * sizeof(float));
        memcpy(out[k], f, (size_t)n * d * sizeof(float));
    }
    ss_conv2d_set_winograd(1);
    ss_nn_set_threads(0);
    CHECK(!memcmp(out[0], out[1], (size_t)n * d * sizeof(float)),
          "eval features at %d px, width %g: 1 and 2 threads bit-identical", size, width);
    double scale = 0;
    for (size_t i = 0; i < (size_t)n * d; i++)
        scale = fabs(out[2][i]) > scale ? fabs(out[2][i]) : scale;
    int bad = 0;
    double worst = 0;
    for (size_t i = 0; i < (size_t)n * d; i++) {
        const double e = fabs(out[0][i] - out[2][i]);
        worst = e > worst ? e : worst;
        bad += e > 2e-5 * scale + 2e-5 * fabs(out[2][i]);
    }
    printf("eval features at %d px, width %g: Winograd vs im2col worst |diff| %.2e of the scale "
           "%.3g\n",
           size, width, worst / scale, scale);
    CHECK(bad == 0,
          "eval features at %d px, width %g: Winograd vs im2col, %d of %d beyond 2e-5 of the "
          "scale %.3g",
          size, width, bad, n * d, scale);
    for (int k = 0; k < 3; k++)
        free(out[k]);
    free(x);
    ss_resnet_destroy(&m);
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "resave")) {
        ss_resnet_t *m = ss_resnet_new_from_checkpoint(argv[2], 1, 0);
        if (!m || ss_resnet_save(m, argv[3])) {
            ss_error_report("resave failed");
            ss_resnet_destroy(&m);
            return 1;
        }
        printf("resaved %s -> %s (%d tensors)\n", argv[2], argv[3], m->table_len);
        ss_resnet_destroy(&m);
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "make")) { /* a random width-scaled checkpoint */
        ss_resnet_config_t c = ss_resnet_config_default(18);
        c.width_multiplier = atof(argv[3]);
        c.input_size = 64;
        c.num_classes = 3;
        c.seed = 9;
        ss_resnet_t *m = ss_resnet_new(&c, 1, 0);
        int rc = !m || ss_resnet_save(m, argv[2]);
        if (rc) ss_error_report("make failed");
        ss_resnet_destroy(&m);
        return rc;
    }
    structure();
    gradient_check();
    eval_paths(64, 16, 1.0);
    eval_paths(96, 13, 1.0);
    eval_paths(96, 6, 0.75); /* 48 .. 384 channels: output channels short of whole panels */
    checkpoints(argc > 1 ? argv[1] : ".");
    return check_exit("nn.resnet");
}
