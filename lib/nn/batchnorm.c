/* Batch norm (BatchNorm2d / BatchNorm1d) forward (train and eval, optional fused ReLU), backward,
 * and folding into a conv for inference. x is [n, c, hw]; statistics are per channel over
 * (n, hw). Every loop is parallel over channels and each channel is reduced by one thread in a
 * fixed order (double accumulators), so results do not depend on the thread count. */
#include "slidestream/nn_layers.h"

#include <math.h>

/* Channels are few (64..512) but large; dynamic scheduling keeps both cores busy when the
 * machine is shared (each channel is still reduced by one thread, so results do not change).
 * Tiny tensors run serially to avoid fork/join overhead dominating. */
#define BN_PAR_MIN ((size_t)1 << 15)

static void bn_update_running(float *running_mean, float *running_var,
                              int64_t *num_batches_tracked, int ch, double mean, double var_b,
                              size_t count, float momentum, int64_t nbt)
{
    if (!running_mean)
        return;
    double unbiased = count > 1 ? var_b * (double)count / (double)(count - 1) : var_b;
    double m = momentum > 0.0f ? (double)momentum : 1.0 / (double)nbt;
    running_mean[ch] = (float)((1.0 - m) * running_mean[ch] + m * mean);
    running_var[ch] = (float)((1.0 - m) * running_var[ch] + m * unbiased);
}

void ss_batchnorm_forward_train(float *out, float *save_mean, float *save_invstd,
                                float *running_mean, float *running_var,
                                int64_t *num_batches_tracked, const float *x, const float *gamma,
                                const float *beta, int n, int c, int hw, float momentum,
                                float eps, int relu)
{
    const size_t count = (size_t)n * hw, total = count * c;
    int64_t nbt = 1;
    if (num_batches_tracked)
        nbt = ++*num_batches_tracked;
#pragma omp parallel for schedule(dynamic, 1) if (total >= BN_PAR_MIN)
    for (int ch = 0; ch < c; ch++) {
        /* Shifted sums (shift = first element) keep the one-pass variance accurate. */
        const double shift = x[(size_t)ch * hw];
        double s1 = 0.0, s2 = 0.0;
        for (int i = 0; i < n; i++) {
            const float *xp = x + ((size_t)i * c + ch) * hw;
            double a = 0.0, b = 0.0;
#pragma omp simd reduction(+ : a, b)
            for (int p = 0; p < hw; p++) {
                double d = (double)xp[p] - shift;
                a += d;
                b += d * d;
            }
            s1 += a;
            s2 += b;
        }
        double dm = s1 / (double)count;
        double var = s2 / (double)count - dm * dm;
        if (var < 0.0)
            var = 0.0;
        double mean = shift + dm;
        float invstd = (float)(1.0 / sqrt(var + (double)eps));
        save_mean[ch] = (float)mean;
        save_invstd[ch] = invstd;
        bn_update_running(running_mean, running_var, num_batches_tracked, ch, mean, var, count,
                          momentum, nbt);
        const float g = gamma ? gamma[ch] : 1.0f, bt = beta ? beta[ch] : 0.0f;
        const float scale = g * invstd, shiftf = bt - (float)mean * scale;
        for (int i = 0; i < n; i++) {
            const float *xp = x + ((size_t)i * c + ch) * hw;
            float *op = out + ((size_t)i * c + ch) * hw;
            if (relu) {
#pragma omp simd
                for (int p = 0; p < hw; p++) {
                    float v = xp[p] * scale + shiftf;
                    op[p] = v > 0.0f ? v : 0.0f;
                }
            } else {
#pragma omp simd
                for (int p = 0; p < hw; p++)
                    op[p] = xp[p] * scale + shiftf;
            }
        }
    }
}

void ss_batchnorm_forward_eval(float *out, const float *x, const float *gamma, const float *beta,
                               const float *running_mean, const float *running_var, int n, int c,
                               int hw, float eps, int relu)
{
    const size_t total = (size_t)n * c * hw;
#pragma omp parallel for collapse(2) schedule(dynamic, 4) if (total >= BN_PAR_MIN)
    for (int i = 0; i < n; i++) {
        for (int ch = 0; ch < c; ch++) {
            const float g = gamma ? gamma[ch] : 1.0f, bt = beta ? beta[ch] : 0.0f;
            const float scale = g / sqrtf(running_var[ch] + eps);
            const float shiftf = bt - running_mean[ch] * scale;
            const float *xp = x + ((size_t)i * c + ch) * hw;
            float *op = out + ((size_t)i * c + ch) * hw;
            if (relu) {
#pragma omp simd
                for (int p = 0; p < hw; p++) {
                    float v = xp[p] * scale + shiftf;
                    op[p] = v > 0.0f ? v : 0.0f;
                }
            } else {
#pragma omp simd
                for (int p = 0; p < hw; p++)
                    op[p] = xp[p] * scale + shiftf;
            }
        }
    }
}

void ss_batchnorm_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                           const float *x, const float *save_mean, const float *save_invstd,
                           const float *gamma, const float *relu_out, int n, int c, int hw)
{
    const size_t count = (size_t)n * hw, total = count * c;
#pragma omp parallel for schedule(dynamic, 1) if (total >= BN_PAR_MIN)
    for (int ch = 0; ch < c; ch++) {
        const float mean = save_mean[ch], invstd = save_invstd[ch];
        double sdy = 0.0, sdyx = 0.0; /* sum dy, sum dy * xhat */
        for (int i = 0; i < n; i++) {
            const size_t off = ((size_t)i * c + ch) * hw;
            const float *xp = x + off, *dp = dout + off, *rp = relu_out ? relu_out + off : NULL;
            double a = 0.0, b = 0.0;
            if (rp) {
#pragma omp simd reduction(+ : a, b)
                for (int p = 0; p < hw; p++) {
                    float dy = rp[p] > 0.0f ? dp[p] : 0.0f;
                    a += dy;
                    b += (double)(dy * (xp[p] - mean));
                }
            } else {
#pragma omp simd reduction(+ : a, b)
                for (int p = 0; p < hw; p++) {
                    a += dp[p];
                    b += (double)(dp[p] * (xp[p] - mean));
                }
            }
            sdy += a;
            sdyx += b;
        }
        sdyx *= invstd;
        if (dgamma)
            dgamma[ch] += (float)sdyx;
        if (dbeta)
            dbeta[ch] += (float)sdy;
        if (!din)
            continue;
        const float g = gamma ? gamma[ch] : 1.0f;
        const float k1 = g * invstd;                          /* dxhat -> dx          */
        const float mdy = (float)(sdy / (double)count);       /* mean(dy)              */
        const float mdyx = (float)(sdyx / (double)count);     /* mean(dy * xhat)       */
        for (int i = 0; i < n; i++) {
            const size_t off = ((size_t)i * c + ch) * hw;
            const float *xp = x + off, *dp = dout + off, *rp = relu_out ? relu_out + off : NULL;
            float *ip = din + off;
            if (rp) {
#pragma omp simd
                for (int p = 0; p < hw; p++) {
                    float dy = rp[p] > 0.0f ? dp[p] : 0.0f;
                    float xh = (xp[p] - mean) * invstd;
                    ip[p] = k1 * (dy - mdy - xh * mdyx);
                }
            } else {
#pragma omp simd
                for (int p = 0; p < hw; p++) {
                    float xh = (xp[p] - mean) * invstd;
                    ip[p] = k1 * (dp[p] - mdy - xh * mdyx);
                }
            }
        }
    }
}

void ss_batchnorm_backward_eval(float *din, float *dgamma, float *dbeta, const float *dout,
                                const float *x, const float *gamma, const float *running_mean,
                                const float *running_var, const float *relu_out, int n, int c,
                                int hw, float eps)
{
    const size_t total = (size_t)n * c * hw;
#pragma omp parallel for schedule(dynamic, 1) if (total >= BN_PAR_MIN)
    for (int ch = 0; ch < c; ch++) {
        const float invstd = 1.0f / sqrtf(running_var[ch] + eps), mean = running_mean[ch];
        const float k1 = (gamma ? gamma[ch] : 1.0f) * invstd;
        double sdy = 0.0, sdyx = 0.0;
        for (int i = 0; i < n; i++) {
            const size_t off = ((size_t)i * c + ch) * hw;
            const float *xp = x + off, *dp = dout + off, *rp = relu_out ? relu_out + off : NULL;
            float *ip = din ? din + off : NULL;
            double a = 0.0, b = 0.0;
            for (int p = 0; p < hw; p++) {
                float dy = (rp && !(rp[p] > 0.0f)) ? 0.0f : dp[p];
                a += dy;
                b += dy * (xp[p] - mean) * invstd;
                if (ip)
                    ip[p] = k1 * dy;
            }
            sdy += a;
            sdyx += b;
        }
        if (dgamma)
            dgamma[ch] += (float)sdyx;
        if (dbeta)
            dbeta[ch] += (float)sdy;
    }
}

void ss_batchnorm_fold(float *w_out, float *b_out, const float *w, const float *b,
                       const float *gamma, const float *beta, const float *running_mean,
                       const float *running_var, int cout, int k, float eps)
{
    for (int co = 0; co < cout; co++) {
        float s = (gamma ? gamma[co] : 1.0f) / sqrtf(running_var[co] + eps);
        for (int j = 0; j < k; j++)
            w_out[(size_t)co * k + j] = w[(size_t)co * k + j] * s;
        b_out[co] = ((b ? b[co] : 0.0f) - running_mean[co]) * s + (beta ? beta[co] : 0.0f);
    }
}

/* ---- reference: two-pass statistics, textbook backward ------------------------------------ */

void ss_batchnorm_forward_train_naive(float *out, float *save_mean, float *save_invstd,
                                      float *running_mean, float *running_var,
                                      int64_t *num_batches_tracked, const float *x,
                                      const float *gamma, const float *beta, int n, int c, int hw,
                                      float momentum, float eps, int relu)
{
    const size_t count = (size_t)n * hw;
    int64_t nbt = 1;
    if (num_batches_tracked)
        nbt = ++*num_batches_tracked;
    for (int ch = 0; ch < c; ch++) {
        double mean = 0.0, var = 0.0;
        for (int i = 0; i < n; i++)
            for (int p = 0; p < hw; p++)
                mean += x[((size_t)i * c + ch) * hw + p];
        mean /= (double)count;
        for (int i = 0; i < n; i++)
            for (int p = 0; p < hw; p++) {
                double d = x[((size_t)i * c + ch) * hw + p] - mean;
                var += d * d;
            }
        var /= (double)count;
        double invstd = 1.0 / sqrt(var + eps);
        save_mean[ch] = (float)mean;
        save_invstd[ch] = (float)invstd;
        bn_update_running(running_mean, running_var, num_batches_tracked, ch, mean, var, count,
                          momentum, nbt);
        for (int i = 0; i < n; i++)
            for (int p = 0; p < hw; p++) {
                size_t o = ((size_t)i * c + ch) * hw + p;
                double v = (x[o] - mean) * invstd * (gamma ? gamma[ch] : 1.0) +
                           (beta ? beta[ch] : 0.0);
                out[o] = (float)(relu && v < 0.0 ? 0.0 : v);
            }
    }
}

void ss_batchnorm_forward_eval_naive(float *out, const float *x, const float *gamma,
                                     const float *beta, const float *running_mean,
                                     const float *running_var, int n, int c, int hw, float eps,
                                     int relu)
{
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++)
            for (int p = 0; p < hw; p++) {
                size_t o = ((size_t)i * c + ch) * hw + p;
                double v = (x[o] - (double)running_mean[ch]) / sqrt((double)running_var[ch] + eps) *
                               (gamma ? gamma[ch] : 1.0) +
                           (beta ? beta[ch] : 0.0);
                out[o] = (float)(relu && v < 0.0 ? 0.0 : v);
            }
}

void ss_batchnorm_backward_naive(float *din, float *dgamma, float *dbeta, const float *dout,
                                 const float *x, const float *save_mean,
                                 const float *save_invstd, const float *gamma,
                                 const float *relu_out, int n, int c, int hw)
{
    const size_t count = (size_t)n * hw;
    for (int ch = 0; ch < c; ch++) {
        double sdy = 0.0, sdyx = 0.0;
        for (int i = 0; i < n; i++)
            for (int p = 0; p < hw; p++) {
                size_t o = ((size_t)i * c + ch) * hw + p;
                double dy = (relu_out && !(relu_out[o] > 0.0f)) ? 0.0 : dout[o];
                sdy += dy;
                sdyx += dy * ((double)x[o] - save_mean[ch]) * save_invstd[ch];
            }
        if (dgamma)
            dgamma[ch] += (float)sdyx;
        if (dbeta)
            dbeta[ch] += (float)sdy;
        if (!din)
            continue;
        double g = gamma ? gamma[ch] : 1.0;
        for (int i = 0; i < n; i++)
            for (int p = 0; p < hw; p++) {
                size_t o = ((size_t)i * c + ch) * hw + p;
                double dy = (relu_out && !(relu_out[o] > 0.0f)) ? 0.0 : dout[o];
                double xh = ((double)x[o] - save_mean[ch]) * save_invstd[ch];
                din[o] = (float)(g * save_invstd[ch] * (dy - sdy / count - xh * sdyx / count));
            }
    }
}
