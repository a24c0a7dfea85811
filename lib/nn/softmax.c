/* Softmax over the last dim, parallel over rows (each row owned by one thread). */
#include "slidestream/nn_layers.h"

#include <math.h>

#define SM_PAR_MIN ((size_t)1 << 13)

void ss_softmax_forward(float *out, const float *x, int rows, int dim)
{
#pragma omp parallel for schedule(dynamic, 8) if ((size_t)rows * dim >= SM_PAR_MIN)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim;
        float *or = out + (size_t)r * dim;
        float mx = -INFINITY;
        for (int j = 0; j < dim; j++)
            mx = xr[j] > mx ? xr[j] : mx;
        double s = 0.0;
        for (int j = 0; j < dim; j++) {
            float e = expf(xr[j] - mx);
            or[j] = e;
            s += e;
        }
        float inv = (float)(1.0 / s);
        for (int j = 0; j < dim; j++)
            or[j] *= inv;
    }
}

void ss_softmax_backward(float *din, const float *dout, const float *out, int rows, int dim)
{
#pragma omp parallel for schedule(dynamic, 8) if ((size_t)rows * dim >= SM_PAR_MIN)
    for (int r = 0; r < rows; r++) {
        const float *dr = dout + (size_t)r * dim, *yr = out + (size_t)r * dim;
        float *ir = din + (size_t)r * dim;
        double s = 0.0;
        for (int j = 0; j < dim; j++)
            s += (double)dr[j] * yr[j];
        /* Subtract in double: for a saturated row dout_j and s nearly cancel. */
        for (int j = 0; j < dim; j++)
            ir[j] = yr[j] * (float)((double)dr[j] - s);
    }
}

void ss_softmax_forward_naive(float *out, const float *x, int rows, int dim)
{
    for (int r = 0; r < rows; r++) {
        double mx = -INFINITY, s = 0.0;
        for (int j = 0; j < dim; j++)
            mx = x[(size_t)r * dim + j] > mx ? x[(size_t)r * dim + j] : mx;
        for (int j = 0; j < dim; j++)
            s += exp(x[(size_t)r * dim + j] - mx);
        for (int j = 0; j < dim; j++)
            out[(size_t)r * dim + j] = (float)(exp(x[(size_t)r * dim + j] - mx) / s);
    }
}

void ss_softmax_backward_naive(float *din, const float *dout, const float *out, int rows, int dim)
{
    for (int r = 0; r < rows; r++) {
        double s = 0.0;
        for (int j = 0; j < dim; j++)
            s += (double)dout[(size_t)r * dim + j] * out[(size_t)r * dim + j];
        for (int j = 0; j < dim; j++)
            din[(size_t)r * dim + j] =
                (float)(out[(size_t)r * dim + j] * (dout[(size_t)r * dim + j] - s));
    }
}
