/* slidestream — two-task gradient surgery over flat gradient vectors (NN core).
 *
 * g1, g2 (n) are the gradients of two losses w.r.t. the same parameters (the model's flat
 * gradient allocation, captured after each backward). Every method produces
 * out = a*g1 + b*g2 (then a scale for AGS), with dot products accumulated in double.
 * `out` may alias g1 or g2. Methods (specs/methods.md §6.4, §9):
 *   SUM     g1 + g2
 *   PCGRAD  each g_i projected off the ORIGINAL other g_j when g_i.g_j < 0 and |g_j|^2 != 0:
 *           g_i - (g_i.g_j / (|g_j|^2 + 1e-10)) g_j; out = g1' + g2'
 *   AGS     PCGRAD, then (if |out| > 0) out *= |g1 + g2| / (|out| + 1e-10)   (SLAM-AGS)
 *   CAGRAD  g0 = (g1+g2)/2, sqrt(phi) = c|g0|; w* = argmin_{w in [0,1]} g_w.g0 + sqrt(phi)|g_w|,
 *           g_w = w g1 + (1-w) g2, solved in closed form (see surgery.c);
 *           out = (g0 + sqrt(phi)/(|g_w*| + 1e-8) g_w*) / (1 + c^2)  (official rescale=1;
 *           like the official code, sqrt(phi) = c sqrt(|g0|^2 + 1e-8) + 1e-8)
 *   MGDA    alpha = clip(((g2-g1).g2) / |g1-g2|^2, 0, 1); out = alpha g1 + (1-alpha) g2
 */
#ifndef SLIDESTREAM_NN_SURGERY_H
#define SLIDESTREAM_NN_SURGERY_H

#include <stddef.h>

typedef enum {
    SS_SURGERY_SUM,
    SS_SURGERY_PCGRAD,
    SS_SURGERY_AGS,
    SS_SURGERY_CAGRAD,
    SS_SURGERY_MGDA
} ss_surgery_method_t;

/* What a combination did, for logging. */
typedef struct {
    double dot;          /* g1.g2 */
    double norm1, norm2; /* |g1|, |g2| */
    double cosine;       /* g1.g2 / (|g1||g2|), 0 if either is zero */
    int conflict;        /* g1.g2 < 0 */
    double a, b;         /* out = scale * (a g1 + b g2) */
    double scale;        /* AGS rescaling factor, 1 otherwise */
    double weight;       /* CAGrad w*, MGDA alpha; 0 otherwise */
} ss_surgery_info_t;

/* Parse "sum" | "pcgrad" | "ags" | "cagrad" | "mgda". */
int ss_surgery_parse(const char *name, ss_surgery_method_t *method);
const char *ss_surgery_name(ss_surgery_method_t method);

/* cagrad_c is CAGrad's c (0.4-0.5 typical; ignored by the other methods). info may be NULL. */
int ss_surgery_combine(float *out, const float *g1, const float *g2, size_t n,
                       ss_surgery_method_t method, double cagrad_c, ss_surgery_info_t *info);

#endif
