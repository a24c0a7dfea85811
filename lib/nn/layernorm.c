/* LayerNorm over the last dim (PyTorch nn.LayerNorm(dim)), parallel over rows; each row is reduced
 * by one thread in a fixed order. Row statistics in double. */
#include "slidestream/nn_layers.h"

#include <math.h>

#define LN_PAR_MIN ((size_t)1 << 14)

void ss_layernorm_forward(float *out, float *save_mean, float *save_rstd, const float *x,
                          const float *weight, const float *bias, int rows, int dim, float eps)
{
#pragma omp parallel for schedule(dynamic, 8) if ((size_t)rows * dim >= LN_PAR_MIN)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim;
        float *or = out + (size_t)r * dim;
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (int j = 0; j < dim; j++)
            s += xr[j];
        double mean = s / dim, v = 0.0;
#pragma omp simd reduction(+ : v)
        for (int j = 0; j < dim; j++) {
            double d = xr[j] - mean;
            v += d * d;
        }
        float m = (float)mean, rstd = (float)(1.0 / sqrt(v / dim + eps));
        save_mean[r] = m;
        save_rstd[r] = rstd;
        for (int j = 0; j < dim; j++) {
            float y = (xr[j] - m) * rstd;
            if (weight)
                y *= weight[j];
            if (bias)
                y += bias[j];
            or[j] = y;
        }
    }
}

void ss_layernorm_backward(float *din, float *dweight, float *dbias, const float *dout,
                           const float *x, const float *save_mean, const float *save_rstd,
                           const float *weight, int rows, int dim)
{
    /* Parameter gradients: split over columns so each column sums rows in order. */
    if (dweight || dbias) {
#pragma omp parallel for schedule(dynamic, 8) if ((size_t)rows * dim >= LN_PAR_MIN)
        for (int j = 0; j < dim; j++) {
            double gw = 0.0, gb = 0.0;
            for (int r = 0; r < rows; r++) {
                float d = dout[(size_t)r * dim + j];
                gw += (double)d * ((x[(size_t)r * dim + j] - save_mean[r]) * save_rstd[r]);
                gb += d;
            }
            if (dweight)
                dweight[j] += (float)gw;
            if (dbias)
                dbias[j] += (float)gb;
        }
    }
    if (!din)
        return;
#pragma omp parallel for schedule(dynamic, 8) if ((size_t)rows * dim >= LN_PAR_MIN)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim, *dr = dout + (size_t)r * dim;
        float *ir = din + (size_t)r * dim;
        const float m = save_mean[r], rstd = save_rstd[r];
        double a = 0.0, b = 0.0; /* mean(g), mean(g * xhat) with g = dout * weight */
        for (int j = 0; j < dim; j++) {
            float g = dr[j] * (weight ? weight[j] : 1.0f);
            a += g;
            b += (double)g * ((xr[j] - m) * rstd);
        }
        const float ma = (float)(a / dim), mb = (float)(b / dim);
        for (int j = 0; j < dim; j++) {
            float g = dr[j] * (weight ? weight[j] : 1.0f);
            float xh = (xr[j] - m) * rstd;
            ir[j] = rstd * (g - ma - xh * mb);
        }
    }
}

void ss_layernorm_forward_naive(float *out, float *save_mean, float *save_rstd, const float *x,
                                const float *weight, const float *bias, int rows, int dim,
                                float eps)
{
    for (int r = 0; r < rows; r++) {
        double mean = 0.0, var = 0.0;
        for (int j = 0; j < dim; j++)
            mean += x[(size_t)r * dim + j];
        mean /= dim;
        for (int j = 0; j < dim; j++)
            var += (x[(size_t)r * dim + j] - mean) * (x[(size_t)r * dim + j] - mean);
        var /= dim;
        double rstd = 1.0 / sqrt(var + eps);
        save_mean[r] = (float)mean;
        save_rstd[r] = (float)rstd;
        for (int j = 0; j < dim; j++)
            out[(size_t)r * dim + j] = (float)((x[(size_t)r * dim + j] - mean) * rstd *
                                                   (weight ? weight[j] : 1.0) +
                                               (bias ? bias[j] : 0.0));
    }
}

void ss_layernorm_backward_naive(float *din, float *dweight, float *dbias, const float *dout,
                                 const float *x, const float *save_mean, const float *save_rstd,
                                 const float *weight, int rows, int dim)
{
    for (int r = 0; r < rows; r++) {
        double a = 0.0, b = 0.0;
        for (int j = 0; j < dim; j++) {
            size_t o = (size_t)r * dim + j;
            double xh = ((double)x[o] - save_mean[r]) * save_rstd[r];
            double g = (double)dout[o] * (weight ? weight[j] : 1.0);
            a += g;
            b += g * xh;
            if (dweight)
                dweight[j] += (float)(dout[o] * xh);
            if (dbias)
                dbias[j] += dout[o];
        }
        if (!din)
            continue;
        for (int j = 0; j < dim; j++) {
            size_t o = (size_t)r * dim + j;
            double xh = ((double)x[o] - save_mean[r]) * save_rstd[r];
            double g = (double)dout[o] * (weight ? weight[j] : 1.0);
            din[o] = (float)(save_rstd[r] * (g - a / dim - xh * b / dim));
        }
    }
}
