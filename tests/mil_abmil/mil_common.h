/* Checks every MIL architecture's unit test runs (tests/mil_abmil, tests/mil_abmilx): random
 * bags, a central-difference check of every parameter's gradient, attention that sums to 1,
 * the n = 1 bag, checkpoint round trips and refusals. Each check counts its failures in
 * check.h's check_failures and prints what it measured. */
#ifndef SS_TESTS_MIL_COMMON_H
#define SS_TESTS_MIL_COMMON_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../check.h"
#include "slidestream/error.h"
#include "slidestream/mil.h"

/* n × dim values from N(0, 1) (caller frees). */
static float *mil_rand_bag(ss_rng_t *rng, int n, int dim)
{
    float *x = malloc((size_t)n * dim * sizeof *x);
    if (x) ss_rng_fill_normal(rng, x, (size_t)n * dim, 0.0f, 1.0f);
    return x;
}

/* Cross-entropy of an eval forward, in double from the float logits. */
static double mil_eval_loss(ss_mil_t *m, const float *x, int n, int y)
{
    float lg[SS_MIL_CLASSES];
    if (ss_mil_forward(m, x, n, 0, lg, NULL)) return NAN;
    double l0 = lg[0], l1 = lg[1], mx = l0 > l1 ? l0 : l1;
    return mx + log(exp(l0 - mx) + exp(l1 - mx)) - (y ? l1 : l0);
}

/* Every parameter's analytic gradient against (L(p + eps) - L(p - eps)) / 2 eps, with L the
 * float model's loss; an element fails when |fd - an| > atol + rtol |an|. atol covers the
 * quotient's float noise (~1e-7 / eps: the loss is float-accurate) and matters for tensors
 * whose exact gradient is 0 (a bias that shifts every score alike). Returns the worst
 * |fd - an| seen; SS_TEST_VERBOSE=1 prints it per tensor. */
static double mil_fd_check(ss_mil_t *m, const float *x, int n, int y, double eps, double atol,
                           double rtol)
{
    double loss = 0.0;
    ss_mil_zero_grad(m);
    float lg[SS_MIL_CLASSES];
    CHECK(ss_mil_forward(m, x, n, 1, lg, NULL) == 0, "%s", ss_error_last());
    CHECK(ss_mil_backward(m, y, &loss) == 0, "%s", ss_error_last());
    CHECK(fabs(loss - mil_eval_loss(m, x, n, y)) < 1e-5, "train loss %g vs eval %g", loss,
          mil_eval_loss(m, x, n, y));
    float *an = malloc(m->num_params * sizeof *an);
    memcpy(an, m->grads, m->num_params * sizeof *an);
    double worst = 0.0;
    for (int i = 0; i < m->table_len; i++) {
        float *p = ss_mil_param(m, i);
        const float *g = an + (ss_mil_grad(m, i) - m->grads);
        size_t len = ss_ckpt_numel(&m->table[i]);
        double gmax = 0.0, tworst = 0.0;
        int bad = 0;
        for (size_t k = 0; k < len; k++) {
            float keep = p[k];
            p[k] = keep + (float)eps;
            double lp = mil_eval_loss(m, x, n, y);
            p[k] = keep - (float)eps;
            double lm = mil_eval_loss(m, x, n, y);
            p[k] = keep;
            double fd = (lp - lm) / (2.0 * eps), err = fabs(fd - g[k]);
            gmax = fmax(gmax, fabs(g[k]));
            tworst = fmax(tworst, err);
            if (err > atol + rtol * fabs(g[k]) && bad++ < 3)
                CHECK(0, "gradient %s[%zu]: analytic %.7g, finite difference %.7g",
                      m->table[i].name, k, g[k], fd);
        }
        worst = fmax(worst, tworst);
        if (getenv("SS_TEST_VERBOSE"))
            printf("  %-40s max|g| %9.3g  max|fd - g| %9.3g\n", m->table[i].name, gmax, tworst);
    }
    free(an);
    return worst;
}

/* Forward (eval and train) and backward on a bag: finite outputs, attention >= 0 summing to 1,
 * the same logits and attention in both modes; a second backward is refused (the backward
 * spends the saved activations). */
static void mil_check_bag(ss_mil_t *m, const float *x, int n, int y, const char *what)
{
    float le[SS_MIL_CLASSES], lt[SS_MIL_CLASSES];
    float *ae = malloc((size_t)n * sizeof *ae), *at = malloc((size_t)n * sizeof *at);
    double loss = NAN;
    CHECK(ss_mil_forward(m, x, n, 0, le, ae) == 0, "%s: %s", what, ss_error_last());
    CHECK(ss_mil_forward(m, x, n, 1, lt, at) == 0, "%s: %s", what, ss_error_last());
    CHECK(ss_mil_backward(m, y, &loss) == 0, "%s: %s", what, ss_error_last());
    CHECK(isfinite(loss) && loss >= 0, "%s: loss %g", what, loss);
    double again;
    CHECK(ss_mil_backward(m, y, &again) == -1, "%s: a second backward after one forward", what);
    ss_error_clear();
    double s = 0.0, worst = 0.0;
    int neg = 0;
    for (int i = 0; i < n; i++) {
        s += ae[i];
        neg += !(ae[i] >= 0);
        worst = fmax(worst, fabs(ae[i] - at[i]));
    }
    CHECK(fabs(s - 1.0) < 1e-5 && !neg, "%s: attention sums to %.9g (%d negative)", what, s, neg);
    for (int c = 0; c < SS_MIL_CLASSES; c++)
        CHECK(isfinite(le[c]) && fabs(le[c] - lt[c]) <= 1e-5 * (1 + fabs(lt[c])),
              "%s: eval logit %d %.9g, train %.9g", what, c, le[c], lt[c]);
    CHECK(worst <= 1e-6, "%s: eval and train attention differ by %g", what, worst);
    int finite = 1;
    for (size_t k = 0; k < m->num_params; k++)
        finite &= isfinite(m->grads[k]);
    CHECK(finite, "%s: a gradient is not finite", what);
    printf("%s: n %d, loss %.6f, attention sum %.9f, eval-train max |Δ attention| %.2g\n", what, n,
           loss, s, worst);
    free(ae), free(at);
}

/* save -> ss_mil_load: the same configuration, bit-identical parameters and outputs. */
static void mil_check_roundtrip(ss_mil_t *m, const char *path, const float *x, int n)
{
    CHECK(ss_mil_save(m, path) == 0, "%s", ss_error_last());
    ss_mil_t *l = ss_mil_load(path);
    CHECK(l != NULL, "load: %s", ss_error_last());
    if (!l) return;
    CHECK(l->cfg.arch == m->cfg.arch && l->cfg.dim == m->cfg.dim &&
              l->cfg.hidden == m->cfg.hidden && l->cfg.attn == m->cfg.attn &&
              l->cfg.heads == m->cfg.heads,
          "configuration changed in the round trip");
    CHECK(l->num_params == m->num_params &&
              !memcmp(l->params, m->params, m->num_params * sizeof(float)),
          "parameters are not bit-identical after the round trip");
    float a[SS_MIL_CLASSES], b[SS_MIL_CLASSES];
    float *aa = malloc((size_t)n * sizeof *aa), *ab = malloc((size_t)n * sizeof *ab);
    CHECK(ss_mil_forward(m, x, n, 0, a, aa) == 0 && ss_mil_forward(l, x, n, 0, b, ab) == 0, "%s",
          ss_error_last());
    CHECK(!memcmp(a, b, sizeof a) && !memcmp(aa, ab, (size_t)n * sizeof *aa),
          "outputs differ after the round trip");
    printf("round trip %s: %zu parameters bit-identical\n", path, m->num_params);
    free(aa), free(ab);
    ss_mil_destroy(&l);
}

/* A checkpoint whose dim attribute disagrees with its tensors (a model of another embedding
 * width) must be refused, naming the tensor. */
static void mil_check_dim_refused(ss_mil_t *m, const char *path, const char *tensor)
{
    int dim = m->cfg.dim;
    m->cfg.dim = dim + 8;
    CHECK(ss_mil_save(m, path) == 0, "%s", ss_error_last());
    m->cfg.dim = dim;
    ss_error_clear();
    ss_mil_t *l = ss_mil_load(path);
    const char *err = ss_error_buffer();
    CHECK(l == NULL, "a checkpoint of dim %d with tensors of dim %d was accepted", dim + 8, dim);
    CHECK(strstr(err, tensor) != NULL, "the refusal does not name %s: %s", tensor, err);
    printf("refused, as it should be: %s", err);
    ss_error_clear();
    ss_mil_destroy(&l);
}

/* The common checks of a model on a dim-24 bag set: bags of the given sizes (mil_check_bag),
 * n = 1 gives attention 1 and refuses a backward after an eval forward, the save/load round
 * trip, and a checkpoint of another width refused (naming `first_tensor`). `tag` names the
 * checkpoint file in dir. */
static void mil_check_model(ss_mil_t *m, ss_rng_t *rng, const int bags[3], const char *dir,
                            const char *tag, const char *first_tensor)
{
    for (int b = 0; b < 3; b++) {
        float *x = mil_rand_bag(rng, bags[b], 24);
        char what[32];
        snprintf(what, sizeof what, "bag %d", b);
        mil_check_bag(m, x, bags[b], b & 1, what);
        free(x);
    }
    float *x = mil_rand_bag(rng, 1, 24), lg[2], at = 0;
    CHECK(!ss_mil_forward(m, x, 1, 0, lg, &at) && at == 1.0f, "n = 1: attention %g", at);
    double loss;
    ss_error_clear();
    CHECK(ss_mil_backward(m, 0, &loss) == -1 && strstr(ss_error_last(), "training forward"),
          "backward after an eval forward: '%s'", ss_error_last());
    ss_error_clear();
    free(x);

    char path[512];
    snprintf(path, sizeof path, "%s/%s_%ld.h5", dir, tag, (long)getpid());
    x = mil_rand_bag(rng, 50, 24);
    mil_check_roundtrip(m, path, x, 50);
    mil_check_dim_refused(m, path, first_tensor);
    unlink(path);
    free(x);
}

#endif
