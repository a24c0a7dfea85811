/* Element-wise activations (ReLU, exact GELU, tanh, sigmoid) and small vector helpers. Each
 * element is independent, so threading cannot change results; small arrays run serially. */
#include "slidestream/nn_layers.h"

#include <math.h>

/* Below this many elements the OpenMP fork/join costs more than the loop. */
#define ACT_PAR_MIN ((size_t)1 << 15)
#define ACT_PAR_MIN_HEAVY ((size_t)1 << 12) /* loops calling erff/expf/tanhf */

static const float kInvSqrt2 = 0.70710678118654752440f;
static const float kInvSqrt2Pi = 0.39894228040143267794f;

void ss_add_inplace(float *y, const float *x, size_t n)
{
#pragma omp parallel for simd schedule(dynamic, 8192) if (n >= ACT_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
}

void ss_scale_inplace(float *y, float a, size_t n)
{
#pragma omp parallel for simd schedule(dynamic, 8192) if (n >= ACT_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        y[i] *= a;
}

void ss_relu_forward(float *out, const float *in, size_t n)
{
#pragma omp parallel for simd schedule(dynamic, 8192) if (n >= ACT_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        out[i] = in[i] > 0.0f ? in[i] : 0.0f;
}

void ss_relu_backward(float *din, const float *dout, const float *out, size_t n)
{
#pragma omp parallel for simd schedule(dynamic, 8192) if (n >= ACT_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        din[i] = out[i] > 0.0f ? dout[i] : 0.0f;
}

void ss_gelu_forward(float *out, const float *in, size_t n)
{
#pragma omp parallel for schedule(dynamic, 2048) if (n >= ACT_PAR_MIN_HEAVY)
    for (size_t i = 0; i < n; i++) {
        float x = in[i];
        out[i] = 0.5f * x * (1.0f + erff(x * kInvSqrt2));
    }
}

void ss_gelu_backward(float *din, const float *dout, const float *in, size_t n)
{
    /* d/dx x*Phi(x) = Phi(x) + x*phi(x) */
#pragma omp parallel for schedule(dynamic, 2048) if (n >= ACT_PAR_MIN_HEAVY)
    for (size_t i = 0; i < n; i++) {
        float x = in[i];
        float cdf = 0.5f * (1.0f + erff(x * kInvSqrt2));
        float pdf = kInvSqrt2Pi * expf(-0.5f * x * x);
        din[i] = dout[i] * (cdf + x * pdf);
    }
}

void ss_tanh_forward(float *out, const float *in, size_t n)
{
#pragma omp parallel for schedule(dynamic, 2048) if (n >= ACT_PAR_MIN_HEAVY)
    for (size_t i = 0; i < n; i++)
        out[i] = tanhf(in[i]);
}

void ss_tanh_backward(float *din, const float *dout, const float *out, size_t n)
{
#pragma omp parallel for simd schedule(dynamic, 8192) if (n >= ACT_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        din[i] = dout[i] * (1.0f - out[i] * out[i]);
}

void ss_sigmoid_forward(float *out, const float *in, size_t n)
{
    /* Branch on the sign so expf never overflows. */
#pragma omp parallel for schedule(dynamic, 2048) if (n >= ACT_PAR_MIN_HEAVY)
    for (size_t i = 0; i < n; i++) {
        float x = in[i];
        if (x >= 0.0f) {
            out[i] = 1.0f / (1.0f + expf(-x));
        } else {
            float e = expf(x);
            out[i] = e / (1.0f + e);
        }
    }
}

void ss_sigmoid_backward(float *din, const float *dout, const float *out, size_t n)
{
#pragma omp parallel for simd schedule(dynamic, 8192) if (n >= ACT_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        din[i] = dout[i] * out[i] * (1.0f - out[i]);
}

/* ---- references (serial, double) ---------------------------------------------------------- */

void ss_relu_forward_naive(float *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = in[i] > 0.0f ? in[i] : 0.0f;
}

void ss_relu_backward_naive(float *din, const float *dout, const float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        din[i] = out[i] > 0.0f ? dout[i] : 0.0f;
}

void ss_gelu_forward_naive(float *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double x = in[i];
        out[i] = (float)(0.5 * x * (1.0 + erf(x / sqrt(2.0))));
    }
}

void ss_gelu_backward_naive(float *din, const float *dout, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double x = in[i];
        double d = 0.5 * (1.0 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
        din[i] = (float)(dout[i] * d);
    }
}

void ss_tanh_forward_naive(float *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (float)tanh((double)in[i]);
}

void ss_tanh_backward_naive(float *din, const float *dout, const float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        din[i] = (float)(dout[i] * (1.0 - (double)out[i] * out[i]));
}

void ss_sigmoid_forward_naive(float *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (float)(1.0 / (1.0 + exp(-(double)in[i])));
}

void ss_sigmoid_backward_naive(float *din, const float *dout, const float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        din[i] = (float)(dout[i] * (double)out[i] * (1.0 - out[i]));
}
