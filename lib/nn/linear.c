/* Linear layer, PyTorch nn.Linear: out[rows, nout] = in[rows, nin] · W[nout, nin]^T + b.
 * All three products are single ss_sgemm calls (threaded over output blocks); the bias sums are split over
 * output columns so each column is reduced by one thread in row order. */
#include "slidestream/nn_layers.h"

void ss_linear_forward(float *out, const float *in, const float *weight, const float *bias,
                       int rows, int nin, int nout)
{
    float beta = 0.0f;
    if (bias) {
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < nout; j++)
                out[(size_t)r * nout + j] = bias[j];
        beta = 1.0f;
    }
    ss_sgemm(0, 1, rows, nout, nin, 1.0f, in, nin, weight, nin, beta, out, nout);
}

void ss_linear_backward(float *din, float *dweight, float *dbias, const float *dout,
                        const float *in, const float *weight, int rows, int nin, int nout)
{
    if (dbias) {
#pragma omp parallel for schedule(static) if ((size_t)rows * nout >= ((size_t)1 << 15))
        for (int j = 0; j < nout; j++) {
            double s = 0.0;
            for (int r = 0; r < rows; r++)
                s += dout[(size_t)r * nout + j];
            dbias[j] += (float)s;
        }
    }
    if (dweight) /* dW[nout, nin] += dout^T[nout, rows] · in[rows, nin] */
        ss_sgemm(1, 0, nout, nin, rows, 1.0f, dout, nout, in, nin, 1.0f, dweight, nin);
    if (din) /* din[rows, nin] = dout[rows, nout] · W[nout, nin] */
        ss_sgemm(0, 0, rows, nin, nout, 1.0f, dout, nout, weight, nin, 0.0f, din, nin);
}

void ss_linear_forward_naive(float *out, const float *in, const float *weight, const float *bias,
                             int rows, int nin, int nout)
{
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < nout; j++) {
            double s = bias ? bias[j] : 0.0;
            for (int k = 0; k < nin; k++)
                s += (double)in[(size_t)r * nin + k] * weight[(size_t)j * nin + k];
            out[(size_t)r * nout + j] = (float)s;
        }
}

void ss_linear_backward_naive(float *din, float *dweight, float *dbias, const float *dout,
                              const float *in, const float *weight, int rows, int nin, int nout)
{
    if (dbias)
        for (int j = 0; j < nout; j++) {
            double s = 0.0;
            for (int r = 0; r < rows; r++)
                s += dout[(size_t)r * nout + j];
            dbias[j] += (float)s;
        }
    if (dweight)
        for (int j = 0; j < nout; j++)
            for (int k = 0; k < nin; k++) {
                double s = 0.0;
                for (int r = 0; r < rows; r++)
                    s += (double)dout[(size_t)r * nout + j] * in[(size_t)r * nin + k];
                dweight[(size_t)j * nin + k] += (float)s;
            }
    if (din)
        for (int r = 0; r < rows; r++)
            for (int k = 0; k < nin; k++) {
                double s = 0.0;
                for (int j = 0; j < nout; j++)
                    s += (double)dout[(size_t)r * nout + j] * weight[(size_t)j * nin + k];
                din[(size_t)r * nin + k] = (float)s;
            }
}
