/* Inverted dropout. The keep/drop decision of element i is a pure function of (key, i), where key
 * is one draw from the caller's RNG, so the mask is the same for any thread count and the serial
 * reference reproduces it exactly. */
#include "slidestream/nn_layers.h"

#include <string.h>

#define DROP_PAR_MIN ((size_t)1 << 15)

static inline int drop_keep(uint64_t key, size_t i, uint32_t threshold)
{
    uint64_t x = key + (uint64_t)i * 0xd1b54a32d192ed03ULL;
    /* Keep when the top 24 bits, as a uniform in [0, 1), are >= p. */
    return (uint32_t)(ss_splitmix64(&x) >> 40) >= threshold;
}

static uint32_t drop_threshold(float p)
{
    double t = (double)p * 16777216.0;
    return t >= 16777216.0 ? 16777216u : (uint32_t)(t + 0.5);
}

void ss_dropout_forward(float *out, uint8_t *mask, const float *in, size_t n, float p,
                        ss_rng_t *rng)
{
    uint64_t key = ss_rng_u64(rng);
    if (p >= 1.0f) {
        memset(out, 0, sizeof(float) * n);
        memset(mask, 0, n);
        return;
    }
    const uint32_t thr = drop_threshold(p);
    const float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(dynamic, 8192) if (n >= DROP_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        int keep = drop_keep(key, i, thr);
        mask[i] = (uint8_t)keep;
        out[i] = keep ? in[i] * scale : 0.0f;
    }
}

void ss_dropout_backward(float *din, const float *dout, const uint8_t *mask, size_t n, float p)
{
    if (p >= 1.0f) {
        memset(din, 0, sizeof(float) * n);
        return;
    }
    const float scale = 1.0f / (1.0f - p);
#pragma omp parallel for simd schedule(dynamic, 8192) if (n >= DROP_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        din[i] = mask[i] ? dout[i] * scale : 0.0f;
}

void ss_dropout_forward_naive(float *out, uint8_t *mask, const float *in, size_t n, float p,
                              ss_rng_t *rng)
{
    uint64_t key = ss_rng_u64(rng);
    const uint32_t thr = drop_threshold(p);
    for (size_t i = 0; i < n; i++) {
        int keep = p < 1.0f && drop_keep(key, i, thr);
        mask[i] = (uint8_t)keep;
        out[i] = keep ? (float)((double)in[i] / (1.0 - (double)p)) : 0.0f;
    }
}
