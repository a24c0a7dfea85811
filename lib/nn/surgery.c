/* slidestream — two-task gradient surgery: sum, PCGrad, SLAM-AGS (PCGrad + rescaling), CAGrad,
 * MGDA. Every method reduces to out = scale * (a g1 + b g2), so one pass gathers the dot
 * products (double), the coefficients are solved on scalars, and one pass writes the result.
 */
#include "slidestream/nn_surgery.h"

#include <math.h>
#include <string.h>

#include "slidestream/error.h"

#define AGS_EPS 1e-10   /* SLAM-AGS `eps`, used in the projection and the rescaling */
#define CAGRAD_EPS 1e-8 /* official CAGrad epsilons (see the CAGRAD case) */

static const char *const names[] = {"sum", "pcgrad", "ags", "cagrad", "mgda"};

int ss_surgery_parse(const char *name, ss_surgery_method_t *method)
{
    for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++)
        if (!strcmp(name, names[i])) {
            *method = (ss_surgery_method_t)i;
            return 0;
        }
    return ss_error("nn.surgery",
                    "unknown gradient-surgery method '%s' (sum, pcgrad, ags, "
                    "cagrad, mgda)",
                    name);
}

const char *ss_surgery_name(ss_surgery_method_t method)
{
    return (unsigned)method < sizeof(names) / sizeof(names[0]) ? names[method] : "?";
}

/* CAGrad's inner problem on scalars. With d = g1 - g2 and g_w = g2 + w d:
 *   F(w) = g_w.g0 + s |g_w|,  s = sqrt(phi),
 * is convex on [0, 1] (linear plus the norm of an affine map). Writing |g_w|^2 = A w^2 + 2Bw + C
 * (A = |d|^2, B = g2.d, C = |g2|^2) and t = A w + B, the stationarity condition
 *   d.g0 + s t / |g_w| = 0  with |g_w| = sqrt((t^2 + D)/A), D = A C - B^2 >= 0,
 * gives t / sqrt(t^2 + D) = r := -d.g0 / (s sqrt(A)), so t = r sqrt(D / (1 - r^2)) when |r| < 1.
 * The minimiser is that root clipped to [0, 1], or an end point; we evaluate F at the
 * candidates and keep the smallest, which is exact up to rounding (no iterative search). */
static double cagrad_weight(double n11, double n22, double n12, double s)
{
    double A = n11 - 2.0 * n12 + n22;
    if (A <= 0.0) return 0.5; /* g1 == g2: every w gives the same g_w */
    double B = n12 - n22, C = n22;
    double dg0 = 0.5 * (n11 - n22); /* d.g0 with g0 = (g1+g2)/2 */
    double cand[3] = {0.0, 1.0, -1.0};
    int nc = 2;
    if (s > 0.0) {
        double r = -dg0 / (s * sqrt(A));
        if (fabs(r) < 1.0) {
            double D = A * C - B * B;
            if (D < 0.0) D = 0.0;
            double t = r * sqrt(D / (1.0 - r * r));
            double w = (t - B) / A;
            cand[nc++] = w < 0.0 ? 0.0 : w > 1.0 ? 1.0 : w;
        }
    }
    double best_w = 0.0, best_f = INFINITY;
    for (int i = 0; i < nc; i++) {
        double w = cand[i];
        double nw2 = A * w * w + 2.0 * B * w + C;
        double f = (0.5 * (n12 + n22) + w * dg0) + s * sqrt(nw2 > 0.0 ? nw2 : 0.0);
        if (f < best_f) {
            best_f = f;
            best_w = w;
        }
    }
    return best_w;
}

int ss_surgery_combine(float *out, const float *g1, const float *g2, size_t n,
                       ss_surgery_method_t method, double cagrad_c, ss_surgery_info_t *info)
{
    if ((unsigned)method > SS_SURGERY_MGDA)
        return ss_error("nn.surgery", "bad method %d", (int)method);
    double n11 = 0.0, n22 = 0.0, n12 = 0.0, ndiff = 0.0;
    for (size_t i = 0; i < n; i++) {
        double x = g1[i], y = g2[i];
        n11 += x * x;
        n22 += y * y;
        n12 += x * y;
        ndiff += (x - y) * (x - y);
    }
    double a = 1.0, b = 1.0, weight = 0.0;
    switch (method) {
    case SS_SURGERY_SUM:
        break;
    case SS_SURGERY_PCGRAD:
    case SS_SURGERY_AGS:
        /* For two tasks both projections use the original vectors, so the (shuffled) task
         * order of the reference cannot change the result. */
        if (n12 < 0.0) {
            /* g1' = g1 - (g1.g2/(|g2|^2+eps)) g2 ; g2' = g2 - (g2.g1/(|g1|^2+eps)) g1 */
            a = 1.0 - (n11 != 0.0 ? n12 / (n11 + AGS_EPS) : 0.0);
            b = 1.0 - (n22 != 0.0 ? n12 / (n22 + AGS_EPS) : 0.0);
        }
        break;
    case SS_SURGERY_CAGRAD: {
        /* The official code's epsilons: |g0| = sqrt(mean(G^T G) + 1e-8), c|g0| + 1e-8, and
         * lambda = that / (|g_w| + 1e-8). (Its objective's sqrt(. + 1e-8) is dropped from the
         * inner problem: it moves w* by far less than SciPy's SLSQP tolerance.) */
        double g0sq = 0.25 * (n11 + 2.0 * n12 + n22);
        double s = cagrad_c * sqrt((g0sq > 0.0 ? g0sq : 0.0) + CAGRAD_EPS) + CAGRAD_EPS;
        double w = cagrad_weight(n11, n22, n12, s);
        double nw2 = w * w * n11 + 2.0 * w * (1.0 - w) * n12 + (1.0 - w) * (1.0 - w) * n22;
        double lambda = s / (sqrt(nw2 > 0.0 ? nw2 : 0.0) + CAGRAD_EPS);
        double r = 1.0 / (1.0 + cagrad_c * cagrad_c);
        a = (0.5 + lambda * w) * r;
        b = (0.5 + lambda * (1.0 - w)) * r;
        weight = w;
        break;
    }
    case SS_SURGERY_MGDA: {
        double alpha = ndiff > 0.0 ? (n22 - n12) / ndiff : 0.5;
        alpha = alpha < 0.0 ? 0.0 : alpha > 1.0 ? 1.0 : alpha;
        a = alpha;
        b = 1.0 - alpha;
        weight = alpha;
        break;
    }
    }
    /* Write out = a g1 + b g2, measuring |out| and |g1 + g2| on the way for AGS. */
    double nout = 0.0, nsum = 0.0;
    float fa = (float)a, fb = (float)b;
    for (size_t i = 0; i < n; i++) {
        float x = g1[i], y = g2[i];
        float o = fa * x + fb * y;
        double sum = (double)x + y;
        nout += (double)o * o;
        nsum += sum * sum;
        out[i] = o;
    }
    double scale = 1.0;
    if (method == SS_SURGERY_AGS && nout > 0.0) {
        scale = sqrt(nsum) / (sqrt(nout) + AGS_EPS);
        float fs = (float)scale;
        for (size_t i = 0; i < n; i++)
            out[i] *= fs;
    }
    if (info) {
        info->dot = n12;
        info->norm1 = sqrt(n11);
        info->norm2 = sqrt(n22);
        info->cosine = n11 > 0.0 && n22 > 0.0 ? n12 / (sqrt(n11) * sqrt(n22)) : 0.0;
        info->conflict = n12 < 0.0;
        info->a = a;
        info->b = b;
        info->scale = scale;
        info->weight = weight;
    }
    return 0;
}
