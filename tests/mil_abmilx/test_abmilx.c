/* mil.abmilx — ABMILX (lib/mil/abmilx.c): the online-softmax A⁺ kernels against their O(n²)
 * reference over tile edges (and bit-identical for 1 and 2 threads), the whole model with the
 * fast kernel against the reference, a central-difference check of every gradient, n = 1,
 * attention sums, chunked eval against train, checkpoint round trip and refusals.
 * Usage: test_mil_abmilx SCRATCH_DIR */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../mil_abmil/mil_common.h"
#include "abmilx.h"

/* Central differences: step, and the tolerance |fd - g| <= FD_ATOL + FD_RTOL |g|. Measured
 * worst |fd - g| over every parameter: 2.6e-5 (gradients up to ~0.6; the float loss puts ~1e-7 /
 * eps of noise into the quotient). */
#define FD_EPS 4e-3
#define FD_ATOL 1e-4
#define FD_RTOL 1e-2

/* max |a - b| / max |b| (b the reference). Measured, fast A⁺ against the reference: forward
 * <= 7e-7, backward <= 7e-7 (1.3e-6 / 3.8e-6 on the peaked rows); whole model, every gradient
 * <= 8e-7 of its tensor's max (7e-6 for fc2.bias, whose exact gradient is 0). */
static double rel_err(const float *a, const float *b, size_t len)
{
    double e = 0.0, s = 0.0;
    for (size_t i = 0; i < len; i++) {
        e = fmax(e, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return s > 0 ? e / s : e;
}

static void kernel_case(ss_rng_t *rng, int n, int h, int d, float qk_std, double tol)
{
    const size_t nh = (size_t)n * h, len = nh * 2 * d;
    float *qk = malloc(len * 4), *v = malloc(nh * 4), *g = malloc(nh * 4);
    float *o1 = malloc(nh * 4), *m1 = malloc(nh * 4), *s1 = malloc(nh * 4);
    float *o2 = malloc(nh * 4), *m2 = malloc(nh * 4), *s2 = malloc(nh * 4);
    float *dqk1 = malloc(len * 4), *dqk2 = malloc(len * 4), *dqk3 = malloc(len * 4);
    float *dv1 = malloc(nh * 4), *dv2 = malloc(nh * 4), *dv3 = malloc(nh * 4), *o3 = malloc(nh * 4);
    float *work = malloc(ss_abmilx_aplus_workspace(n, h, 2) * 4);
    double *nw = malloc((4 * (size_t)n + d) * sizeof *nw);
    ss_rng_fill_normal(rng, qk, len, 0.0f, qk_std);
    ss_rng_fill_normal(rng, v, nh, 0.0f, 1.0f);
    ss_rng_fill_normal(rng, g, nh, 0.0f, 1.0f);

    omp_set_num_threads(2);
    ss_abmilx_aplus_forward(o1, m1, s1, qk, v, n, h, d, work, 2);
    ss_abmilx_aplus_backward(dqk1, dv1, g, qk, v, o1, m1, s1, n, h, d, work, 2);
    ss_abmilx_aplus_forward_naive(o2, m2, s2, qk, v, n, h, d, nw);
    ss_abmilx_aplus_backward_naive(dqk2, dv2, g, qk, v, n, h, d, nw);
    double eo = rel_err(o1, o2, nh), em = rel_err(m1, m2, nh), es = rel_err(s1, s2, nh);
    double eq = rel_err(dqk1, dqk2, len), ev = rel_err(dv1, dv2, nh);
    printf("A+ n %4d h %d d %2d: fast vs naive  out %.2g  max %.2g  sum %.2g  dqk %.2g  dv %.2g\n",
           n, h, d, eo, em, es, eq, ev);
    CHECK(eo < tol && em < tol && es < tol, "A+ forward n %d: out %g max %g sum %g", n, eo, em, es);
    CHECK(eq < 4 * tol && ev < 4 * tol, "A+ backward n %d: dqk %g dv %g", n, eq, ev);

    /* one thread: the same bits */
    omp_set_num_threads(1);
    ss_abmilx_aplus_forward(o3, m2, s2, qk, v, n, h, d, work, 2);
    ss_abmilx_aplus_backward(dqk3, dv3, g, qk, v, o3, m2, s2, n, h, d, work, 2);
    omp_set_num_threads(2);
    CHECK(!memcmp(o1, o3, nh * 4) && !memcmp(m1, m2, nh * 4) && !memcmp(s1, s2, nh * 4) &&
              !memcmp(dqk1, dqk3, len * 4) && !memcmp(dv1, dv3, nh * 4),
          "A+ n %d: 1 and 2 threads differ", n);
    free(qk), free(v), free(g), free(o1), free(m1), free(s1), free(o2), free(m2), free(s2);
    free(dqk1), free(dqk2), free(dqk3), free(dv1), free(dv2), free(dv3), free(o3), free(work);
    free(nw);
}

static ss_mil_t *model(int dim, int hidden, int heads, int attn, uint64_t seed)
{
    ss_mil_config_t c = ss_mil_config_default(SS_MIL_ABMILX, dim);
    c.hidden = hidden, c.heads = heads, c.attn = attn, c.seed = seed;
    ss_mil_t *m = ss_mil_new(&c);
    CHECK(m != NULL, "ss_mil_new: %s", ss_error_last());
    return m;
}

/* Biases and LN parameters away from their zero/one init, so that their paths are tested. */
static void jitter(ss_mil_t *m, ss_rng_t *rng)
{
    for (int i = 0; i < m->table_len; i++)
        if (m->specs[i].ndim == 1) {
            float *p = ss_mil_param(m, i);
            size_t len = ss_ckpt_numel(&m->table[i]);
            for (size_t k = 0; k < len; k++)
                p[k] += 0.3f * ss_rng_normal(rng);
        }
}

/* The whole model with the fast A⁺ against the same with the reference. */
static void model_fast_vs_naive(ss_rng_t *rng, int n)
{
    ss_mil_t *m = model(16, 32, 4, 0, 7);
    if (!m) return;
    jitter(m, rng);
    float *x = mil_rand_bag(rng, n, 16), *a1 = malloc(n * 4), *a2 = malloc(n * 4);
    float l1[2], l2[2];
    double loss1 = 0, loss2 = 0;
    float *g1 = malloc(m->num_params * 4);
    ss_mil_zero_grad(m);
    CHECK(!ss_mil_forward(m, x, n, 1, l1, a1) && !ss_mil_backward(m, 1, &loss1), "%s",
          ss_error_last());
    memcpy(g1, m->grads, m->num_params * 4);
    ss_abmilx_set_naive(1);
    ss_mil_zero_grad(m);
    CHECK(!ss_mil_forward(m, x, n, 1, l2, a2) && !ss_mil_backward(m, 1, &loss2), "%s",
          ss_error_last());
    ss_abmilx_set_naive(0);
    double el = rel_err(l1, l2, 2), ea = rel_err(a1, a2, n), worst = 0.0, gscale = 0.0;
    for (size_t k = 0; k < m->num_params; k++)
        gscale = fmax(gscale, fabs(m->grads[k]));
    CHECK(el < 1e-5 && ea < 1e-5 && fabs(loss1 - loss2) < 1e-5,
          "model n %d: logits %g attention %g", n, el, ea);
    for (int i = 0; i < m->table_len; i++) {
        size_t off = ss_mil_grad(m, i) - m->grads, len = ss_ckpt_numel(&m->table[i]);
        double e = 0.0, s = 1e-3 * gscale; /* floor: tensors whose exact gradient is 0 */
        for (size_t k = 0; k < len; k++) {
            e = fmax(e, fabs((double)g1[off + k] - m->grads[off + k]));
            s = fmax(s, fabs(m->grads[off + k]));
        }
        e /= s;
        worst = fmax(worst, e);
        if (getenv("SS_TEST_VERBOSE")) printf("  %-40s %.2g\n", m->table[i].name, e);
        CHECK(e < 5e-5, "model n %d: gradient %s differs by %g (relative to its max)", n,
              m->table[i].name, e);
    }
    printf("model n %d: fast vs naive A+  logits %.2g  attention %.2g  worst gradient %.2g\n", n,
           el, ea, worst);
    free(x), free(a1), free(a2), free(g1);
    ss_mil_destroy(&m);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    ss_rng_t rng;
    ss_rng_seed(&rng, 20250611);

    /* kernels: tile edges (TS 64, TL 256), n = 1, several heads */
    const int ns[] = {1, 2, 63, 64, 65, 255, 257, 600};
    for (size_t i = 0; i < sizeof ns / sizeof *ns; i++)
        kernel_case(&rng, ns[i], 3, 8, 1.0f, 2e-6);
    kernel_case(&rng, 300, 2, 64, 0.5f, 2e-6);
    /* peaked rows: scores of ~±40 carry float rounding of ~1e-5 into e^(s - max) */
    kernel_case(&rng, 130, 1, 4, 6.0f, 2e-5);

    model_fast_vs_naive(&rng, 1);
    model_fast_vs_naive(&rng, 300);

    /* gradients by central differences on a tiny bag: D' = d, and D' != d */
    const int attns[] = {0, 3};
    for (int a = 0; a < 2; a++) {
        ss_mil_t *m = model(6, 8, 2, attns[a], 3 + a);
        if (!m) continue;
        jitter(m, &rng);
        float *x = mil_rand_bag(&rng, 5, 6);
        double w = mil_fd_check(m, x, 5, a, FD_EPS, FD_ATOL, FD_RTOL);
        printf("finite differences (attn %d, n 5): worst |fd - analytic| = %.2g\n", attns[a], w);
        w = mil_fd_check(m, x, 1, 1 - a, FD_EPS, FD_ATOL, FD_RTOL);
        printf("finite differences (attn %d, n 1): worst |fd - analytic| = %.2g\n", attns[a], w);
        free(x);
        ss_mil_destroy(&m);
    }

    /* n = 1, a small bag, and a bag larger than the eval chunk (1024 cells) */
    ss_mil_t *m = model(24, 32, 4, 0, 11);
    if (m) {
        jitter(m, &rng);
        const int bags[] = {1, 37, 2500};
        mil_check_model(m, &rng, bags, dir, "abmilx", "feature.0.weight");
        ss_mil_destroy(&m);
    }

    /* configurations refused with a clear error */
    ss_mil_config_t c = ss_mil_config_default(SS_MIL_ABMILX, 16);
    c.hidden = 30, c.heads = 4;
    ss_error_clear();
    CHECK(ss_mil_new(&c) == NULL && strstr(ss_error_last(), "not divisible"),
          "hidden 30 / 4 heads: '%s'", ss_error_last());
    ss_error_clear();
    return check_exit("mil.abmilx");
}
