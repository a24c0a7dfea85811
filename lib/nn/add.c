/* Residual add (optionally fused with the ReLU that follows it in a ResNet block). */
#include "slidestream/nn_layers.h"

#include <string.h>

#define ADD_PAR_MIN ((size_t)1 << 15)

void ss_add_forward(float *out, const float *a, const float *b, size_t n, int relu)
{
    if (relu) {
#pragma omp parallel for simd schedule(dynamic, 8192) if (n >= ADD_PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            float v = a[i] + b[i];
            out[i] = v > 0.0f ? v : 0.0f;
        }
    } else {
#pragma omp parallel for simd schedule(dynamic, 8192) if (n >= ADD_PAR_MIN)
        for (size_t i = 0; i < n; i++)
            out[i] = a[i] + b[i];
    }
}

void ss_add_backward(float *da, float *db, const float *dout, const float *relu_out, size_t n)
{
    if (relu_out) {
        /* Mask once into da (or db), then copy, so dout may alias either. */
        float *first = da ? da : db;
        if (!first)
            return;
#pragma omp parallel for simd schedule(dynamic, 8192) if (n >= ADD_PAR_MIN)
        for (size_t i = 0; i < n; i++)
            first[i] = relu_out[i] > 0.0f ? dout[i] : 0.0f;
        if (da && db && db != da)
            memcpy(db, da, sizeof(float) * n);
        return;
    }
    if (da && da != dout)
        memcpy(da, dout, sizeof(float) * n);
    if (db && db != dout)
        memcpy(db, dout, sizeof(float) * n);
}

void ss_add_forward_naive(float *out, const float *a, const float *b, size_t n, int relu)
{
    for (size_t i = 0; i < n; i++) {
        float v = a[i] + b[i];
        out[i] = (relu && !(v > 0.0f)) ? 0.0f : v;
    }
}
