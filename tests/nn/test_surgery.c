/* nn.surgery — hand-checked two-task combinations (conflict, no conflict, zero gradient) and
 * CAGrad's closed-form weight against a brute-force search of its objective. */
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "slidestream/error.h"
#include "slidestream/nn_surgery.h"

static void run(ss_surgery_method_t m, const float *g1, const float *g2, size_t n,
                const double *want, double c)
{
    float out[8];
    ss_surgery_info_t info;
    CHECK(ss_surgery_combine(out, g1, g2, n, m, c, &info) == 0, "%s", ss_error_last());
    for (size_t i = 0; i < n; i++) {
        CHECK_NEAR(out[i], want[i], 1e-6, 1e-6);
        if (fabs(out[i] - want[i]) > 1e-6 + 1e-6 * fabs(want[i]))
            fprintf(stderr, "  method %s element %zu\n", ss_surgery_name(m), i);
    }
}

/* F(w) = g_w.g0 + c|g0| |g_w| sampled on a fine grid. */
static double cagrad_brute(const float *g1, const float *g2, size_t n, double c)
{
    double best = INFINITY, bw = 0, g0n = 0;
    for (size_t i = 0; i < n; i++)
        g0n += 0.25 * (g1[i] + g2[i]) * (g1[i] + g2[i]);
    g0n = sqrt(g0n);
    for (int k = 0; k <= 200000; k++) {
        double w = k / 200000.0, dot = 0, nn = 0;
        for (size_t i = 0; i < n; i++) {
            double gw = w * g1[i] + (1 - w) * g2[i];
            dot += gw * 0.5 * (g1[i] + g2[i]);
            nn += gw * gw;
        }
        double f = dot + c * g0n * sqrt(nn);
        if (f < best) best = f, bw = w;
    }
    return bw;
}

int main(void)
{
    const float a[2] = {1, 0}, b_ok[2] = {1, 1}, b_conf[2] = {-1, 1}, zero[2] = {0, 0};
    /* No conflict: every projection method is the plain sum. */
    double sum_ok[2] = {2, 1};
    run(SS_SURGERY_SUM, a, b_ok, 2, sum_ok, 0);
    run(SS_SURGERY_PCGRAD, a, b_ok, 2, sum_ok, 0);
    run(SS_SURGERY_AGS, a, b_ok, 2, sum_ok, 0);
    /* Conflict: g1.g2 = -1, |g1|^2 = 1, |g2|^2 = 2.
     * g1' = g1 + g2/2 = (0.5, 0.5); g2' = g2 + g1 = (0, 1); sum (0.5, 1.5).
     * AGS rescales to |g1 + g2| = |(0, 1)| = 1: (0.5, 1.5)/sqrt(2.5). */
    double pc[2] = {0.5, 1.5}, ags[2] = {0.5 / sqrt(2.5), 1.5 / sqrt(2.5)}, s[2] = {0, 1};
    run(SS_SURGERY_SUM, a, b_conf, 2, s, 0);
    run(SS_SURGERY_PCGRAD, a, b_conf, 2, pc, 0);
    run(SS_SURGERY_AGS, a, b_conf, 2, ags, 0);
    /* Zero gradient on one task: nothing to project against; AGS keeps the norm. */
    double ga[2] = {1, 0}, z[2] = {0, 0};
    run(SS_SURGERY_PCGRAD, a, zero, 2, ga, 0);
    run(SS_SURGERY_AGS, a, zero, 2, ga, 0);
    run(SS_SURGERY_AGS, zero, a, 2, ga, 0);
    run(SS_SURGERY_AGS, zero, zero, 2, z, 0);
    run(SS_SURGERY_MGDA, zero, zero, 2, z, 0);
    run(SS_SURGERY_CAGRAD, zero, zero, 2, z, 0.5);
    /* In place: out aliases g1. */
    {
        float g1[2] = {1, 0};
        CHECK(ss_surgery_combine(g1, g1, b_conf, 2, SS_SURGERY_PCGRAD, 0, NULL) == 0, "alias");
        CHECK_NEAR(g1[0], 0.5, 1e-7, 0);
        CHECK_NEAR(g1[1], 1.5, 1e-7, 0);
    }
    /* MGDA: orthogonal unit gradients meet at (0.5, 0.5); a dominated direction picks the
     * shorter vector (alpha clipped to 1). */
    const float e2[2] = {0, 1}, twice[2] = {2, 0};
    double mid[2] = {0.5, 0.5};
    run(SS_SURGERY_MGDA, a, e2, 2, mid, 0);
    run(SS_SURGERY_MGDA, a, twice, 2, ga, 0);
    run(SS_SURGERY_MGDA, twice, a, 2, ga, 0);
    /* MGDA with conflict: g1=(1,0), g2=(-1,1): alpha = ((g2-g1).g2)/|g1-g2|^2 = 3/5;
     * d = 0.6 g1 + 0.4 g2 = (0.2, 0.4). */
    double mg[2] = {0.2, 0.4};
    run(SS_SURGERY_MGDA, a, b_conf, 2, mg, 0);
    /* CAGrad with equal gradients: g_w = g0 = (1,0), d = (1 + c/(1+1e-8)) g0 / (1 + c^2). */
    double cg[2] = {(1 + 0.5 / (1 + 1e-8)) / 1.25, 0};
    run(SS_SURGERY_CAGRAD, a, a, 2, cg, 0.5);
    /* CAGrad: closed-form w* against a grid search, on random conflicting gradients. */
    unsigned long long x = 12345;
    for (int trial = 0; trial < 20; trial++) {
        float g1[6], g2[6];
        for (int i = 0; i < 6; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            g1[i] = (float)((double)(x >> 11) / 9007199254740992.0 * 2 - 1);
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            g2[i] = (float)((double)(x >> 11) / 9007199254740992.0 * 2 - 1) * (1 + trial % 3);
        }
        double c = trial % 2 ? 0.4 : 0.5;
        ss_surgery_info_t info;
        float out[6];
        CHECK(ss_surgery_combine(out, g1, g2, 6, SS_SURGERY_CAGRAD, c, &info) == 0, "cagrad");
        double bw = cagrad_brute(g1, g2, 6, c);
        CHECK_NEAR(info.weight, bw, 2e-5, 0);
        /* and the output is (g0 + c|g0|/|g_w| g_w)/(1 + c^2) */
        double g0n = 0, gwn = 0, w = info.weight;
        for (int i = 0; i < 6; i++) {
            g0n += 0.25 * (g1[i] + g2[i]) * (g1[i] + g2[i]);
            gwn += (w * g1[i] + (1 - w) * g2[i]) * (w * g1[i] + (1 - w) * g2[i]);
        }
        double lam = c * sqrt(g0n) / (sqrt(gwn) + 1e-8);
        for (int i = 0; i < 6; i++)
            CHECK_NEAR(out[i],
                       (0.5 * (g1[i] + g2[i]) + lam * (w * g1[i] + (1 - w) * g2[i])) / (1 + c * c),
                       1e-6, 1e-5);
    }
    ss_surgery_method_t m;
    CHECK(ss_surgery_parse("ags", &m) == 0 && m == SS_SURGERY_AGS, "parse");
    CHECK(ss_surgery_parse("bogus", &m) == -1, "parse rejects");
    ss_error_clear();
    return check_exit("nn.surgery");
}
