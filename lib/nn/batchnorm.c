/* Batch norm (BatchNorm2d / BatchNorm1d) forward (train and eval, optional fused ReLU), backward,
 * and folding into a conv for inference. x is [n, c, hw]; statistics are per channel over
 * (n, hw). Every loop is parallel over channels (blocks of channels in training mode) and each
 * channel is reduced by one thread in a fixed order (vectorised float partial sums over short
 * blocks, joined in double), so results do not depend on the thread count. */
#include "slidestream/nn_layers.h"

#include <math.h>

/* Parallel loops hand out blocks of channels: at least BN_TASK_ELEMS elements per task (the
 * 3×3 and 2×2 planes of late ResNet layers make a channel only a few hundred elements, too little
 * for one task each) and at most BN_MAX_CB channels. Blocks depend on the shape only; each channel
 * is still reduced by one thread in a fixed order, so results do not depend on the thread count.
 * Dynamic scheduling keeps both cores busy when the machine is shared. Tiny tensors run serially
 * to avoid fork/join overhead dominating. */
#define BN_PAR_MIN ((size_t)1 << 15)
#define BN_TASK_ELEMS 8192
#define BN_MAX_CB 64
/* Elements summed in float (vector lanes) before the partial sum joins the channel's double sum:
 * short enough that float rounding stays far below the tests' tolerances. */
#define BN_FBLK 512

/* Planes smaller than this go through the "segment" path: a channel block's rows of one image
 * are one contiguous segment of nch*hw floats (at most BN_SEG_MAX), processed as a whole with
 * per-element parameters, so short rows cost no per-row loop overhead. */
#define BN_SEG_HW 40
#define BN_SEG_MAX 1024
/* Images accumulated in float per element on the segment path before flushing into double. */
#define BN_SEG_FLUSH 64

static int bn_block(int n, int c, int hw)
{
    size_t per = (size_t)n * (size_t)hw, cb = (BN_TASK_ELEMS + per - 1) / per;
    if (cb > BN_MAX_CB)
        cb = BN_MAX_CB;
    if (hw < BN_SEG_HW && cb * (size_t)hw > BN_SEG_MAX)
        cb = BN_SEG_MAX / (size_t)hw;
    if (cb > (size_t)c)
        cb = (size_t)c;
    return cb < 1 ? 1 : (int)cb;
}

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

/* s1 += sum(x - shift), s2 += sum((x - shift)^2) over one row, in float blocks. */
static inline void bn_row_moments(const float *xp, int hw, float shift, double *s1, double *s2)
{
    for (int p0 = 0; p0 < hw; p0 += BN_FBLK) {
        const int p1 = hw - p0 < BN_FBLK ? hw : p0 + BN_FBLK;
        float a = 0.0f, b = 0.0f;
#pragma omp simd reduction(+ : a, b)
        for (int p = p0; p < p1; p++) {
            const float d = xp[p] - shift;
            a += d;
            b += d * d;
        }
        *s1 += a;
        *s2 += b;
    }
}

static inline void bn_row_affine(float *op, const float *xp, int hw, float scale, float shift,
                                 int relu)
{
    if (relu) {
#pragma omp simd
        for (int p = 0; p < hw; p++) {
            const float v = xp[p] * scale + shift;
            op[p] = v > 0.0f ? v : 0.0f;
        }
    } else {
#pragma omp simd
        for (int p = 0; p < hw; p++)
            op[p] = xp[p] * scale + shift;
    }
}

/* Segment sums: the float block sums f1/f2 of L elements go into the double ones d1/d2 (and are
 * reset); at the end each channel's hw doubles are added into its sums s1/s2. */
static void bn_seg_flush(double *d1, double *d2, float *f1, float *f2, int L)
{
    for (int e = 0; e < L; e++) {
        d1[e] += f1[e];
        d2[e] += f2[e];
        f1[e] = f2[e] = 0.0f;
    }
}

static void bn_seg_reduce(double *s1, double *s2, const double *d1, const double *d2, int nch,
                          int hw)
{
    for (int j = 0; j < nch; j++)
        for (int p = 0; p < hw; p++) {
            s1[j] += d1[j * hw + p];
            s2[j] += d2[j * hw + p];
        }
}

/* Segment path (hw < BN_SEG_HW): s1[j], s2[j] += shifted moments of channel c0+j. Per-element
 * float accumulators over up to BN_SEG_FLUSH images, flushed into double; each channel's hw
 * element sums are then added in order. */
static void bn_seg_moments(const float *x, int n, int c, int hw, int c0, int nch,
                           const float *shift, double *s1, double *s2)
{
    const int L = nch * hw;
    float sh[BN_SEG_MAX], f1[BN_SEG_MAX], f2[BN_SEG_MAX];
    double d1[BN_SEG_MAX], d2[BN_SEG_MAX];
    for (int e = 0; e < L; e++) {
        sh[e] = shift[e / hw];
        f1[e] = f2[e] = 0.0f;
        d1[e] = d2[e] = 0.0;
    }
    for (int i = 0; i < n; i++) {
        const float *xb = x + ((size_t)i * c + c0) * hw;
#pragma omp simd
        for (int e = 0; e < L; e++) {
            const float d = xb[e] - sh[e];
            f1[e] += d;
            f2[e] += d * d;
        }
        if ((i + 1) % BN_SEG_FLUSH == 0 || i == n - 1)
            bn_seg_flush(d1, d2, f1, f2, L);
    }
    bn_seg_reduce(s1, s2, d1, d2, nch, hw);
}

static void bn_seg_affine(float *out, const float *x, int n, int c, int hw, int c0, int nch,
                          const float *scale, const float *offs, int relu)
{
    const int L = nch * hw;
    float sc[BN_SEG_MAX], of[BN_SEG_MAX];
    for (int e = 0; e < L; e++) {
        sc[e] = scale[e / hw];
        of[e] = offs[e / hw];
    }
    for (int i = 0; i < n; i++) {
        const size_t off = ((size_t)i * c + c0) * hw;
        const float *xb = x + off;
        float *ob = out + off;
        if (relu) {
#pragma omp simd
            for (int e = 0; e < L; e++) {
                const float v = xb[e] * sc[e] + of[e];
                ob[e] = v > 0.0f ? v : 0.0f;
            }
        } else {
#pragma omp simd
            for (int e = 0; e < L; e++)
                ob[e] = xb[e] * sc[e] + of[e];
        }
    }
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
    const int cb = bn_block(n, c, hw), ntasks = (c + cb - 1) / cb;
#pragma omp parallel for schedule(dynamic, 1) if (total >= BN_PAR_MIN)
    for (int task = 0; task < ntasks; task++) {
        const int c0 = task * cb, nch = c - c0 < cb ? c - c0 : cb;
        /* Shifted sums (shift = the channel's first element) keep the one-pass variance
         * accurate. Images outer: a block's rows of one image are contiguous in memory. */
        double s1[BN_MAX_CB] = {0}, s2[BN_MAX_CB] = {0};
        float shift[BN_MAX_CB], scale[BN_MAX_CB], offs[BN_MAX_CB];
        for (int j = 0; j < nch; j++)
            shift[j] = x[(size_t)(c0 + j) * hw];
        if (hw < BN_SEG_HW)
            bn_seg_moments(x, n, c, hw, c0, nch, shift, s1, s2);
        else
            for (int i = 0; i < n; i++) {
                const float *xb = x + ((size_t)i * c + c0) * hw;
                for (int j = 0; j < nch; j++)
                    bn_row_moments(xb + (size_t)j * hw, hw, shift[j], &s1[j], &s2[j]);
            }
        for (int j = 0; j < nch; j++) {
            const int ch = c0 + j;
            double dm = s1[j] / (double)count;
            double var = s2[j] / (double)count - dm * dm;
            if (var < 0.0)
                var = 0.0;
            double mean = (double)shift[j] + dm;
            float invstd = (float)(1.0 / sqrt(var + (double)eps));
            save_mean[ch] = (float)mean;
            save_invstd[ch] = invstd;
            bn_update_running(running_mean, running_var, num_batches_tracked, ch, mean, var,
                              count, momentum, nbt);
            const float g = gamma ? gamma[ch] : 1.0f, bt = beta ? beta[ch] : 0.0f;
            scale[j] = g * invstd;
            offs[j] = bt - (float)mean * scale[j];
        }
        if (hw < BN_SEG_HW) {
            bn_seg_affine(out, x, n, c, hw, c0, nch, scale, offs, relu);
            continue;
        }
        for (int i = 0; i < n; i++) {
            const size_t off = ((size_t)i * c + c0) * hw;
            for (int j = 0; j < nch; j++)
                bn_row_affine(out + off + (size_t)j * hw, x + off + (size_t)j * hw, hw, scale[j],
                              offs[j], relu);
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

/* a += sum(dy), b += sum(dy * (x - mean)) over one row, dy masked by relu_out when given; float
 * blocks joined in double. */
static inline void bn_row_dsums(const float *dp, const float *xp, const float *rp, int hw,
                                float mean, double *a, double *b)
{
    for (int p0 = 0; p0 < hw; p0 += BN_FBLK) {
        const int p1 = hw - p0 < BN_FBLK ? hw : p0 + BN_FBLK;
        float sa = 0.0f, sb = 0.0f;
        if (rp) {
#pragma omp simd reduction(+ : sa, sb)
            for (int p = p0; p < p1; p++) {
                const float dy = rp[p] > 0.0f ? dp[p] : 0.0f;
                sa += dy;
                sb += dy * (xp[p] - mean);
            }
        } else {
#pragma omp simd reduction(+ : sa, sb)
            for (int p = p0; p < p1; p++) {
                sa += dp[p];
                sb += dp[p] * (xp[p] - mean);
            }
        }
        *a += sa;
        *b += sb;
    }
}

/* din = k1 * (dy - mdy - (x - mean) * invstd * mdyx) over one row (dy masked as above). */
static inline void bn_row_din(float *ip, const float *dp, const float *xp, const float *rp, int hw,
                              float mean, float invstd, float k1, float mdy, float mdyx)
{
    if (rp) {
#pragma omp simd
        for (int p = 0; p < hw; p++) {
            const float dy = rp[p] > 0.0f ? dp[p] : 0.0f;
            const float xh = (xp[p] - mean) * invstd;
            ip[p] = k1 * (dy - mdy - xh * mdyx);
        }
    } else {
#pragma omp simd
        for (int p = 0; p < hw; p++) {
            const float xh = (xp[p] - mean) * invstd;
            ip[p] = k1 * (dp[p] - mdy - xh * mdyx);
        }
    }
}

/* Segment path of the backward sums (see bn_seg_moments). */
static void bn_seg_dsums(const float *dout, const float *x, const float *relu_out, int n, int c,
                         int hw, int c0, int nch, const float *mean, double *sdy, double *sdyx)
{
    const int L = nch * hw;
    float mu[BN_SEG_MAX], f1[BN_SEG_MAX], f2[BN_SEG_MAX];
    double d1[BN_SEG_MAX], d2[BN_SEG_MAX];
    for (int e = 0; e < L; e++) {
        mu[e] = mean[c0 + e / hw];
        f1[e] = f2[e] = 0.0f;
        d1[e] = d2[e] = 0.0;
    }
    for (int i = 0; i < n; i++) {
        const size_t off = ((size_t)i * c + c0) * hw;
        const float *xb = x + off, *db = dout + off;
        if (relu_out) {
            const float *rb = relu_out + off;
#pragma omp simd
            for (int e = 0; e < L; e++) {
                const float dy = rb[e] > 0.0f ? db[e] : 0.0f;
                f1[e] += dy;
                f2[e] += dy * (xb[e] - mu[e]);
            }
        } else {
#pragma omp simd
            for (int e = 0; e < L; e++) {
                f1[e] += db[e];
                f2[e] += db[e] * (xb[e] - mu[e]);
            }
        }
        if ((i + 1) % BN_SEG_FLUSH == 0 || i == n - 1)
            bn_seg_flush(d1, d2, f1, f2, L);
    }
    bn_seg_reduce(sdy, sdyx, d1, d2, nch, hw);
}

static void bn_seg_din(float *din, const float *dout, const float *x, const float *relu_out,
                       int n, int c, int hw, int c0, int nch, const float *mean,
                       const float *invstd, const float *k1, const float *mdy, const float *mdyx)
{
    const int L = nch * hw;
    float mu[BN_SEG_MAX], is[BN_SEG_MAX], a[BN_SEG_MAX], m1[BN_SEG_MAX], m2[BN_SEG_MAX];
    for (int e = 0; e < L; e++) {
        const int j = e / hw;
        mu[e] = mean[c0 + j];
        is[e] = invstd[c0 + j];
        a[e] = k1[j];
        m1[e] = mdy[j];
        m2[e] = mdyx[j];
    }
    for (int i = 0; i < n; i++) {
        const size_t off = ((size_t)i * c + c0) * hw;
        const float *xb = x + off, *db = dout + off;
        float *ib = din + off;
        if (relu_out) {
            const float *rb = relu_out + off;
#pragma omp simd
            for (int e = 0; e < L; e++) {
                const float dy = rb[e] > 0.0f ? db[e] : 0.0f;
                const float xh = (xb[e] - mu[e]) * is[e];
                ib[e] = a[e] * (dy - m1[e] - xh * m2[e]);
            }
        } else {
#pragma omp simd
            for (int e = 0; e < L; e++) {
                const float xh = (xb[e] - mu[e]) * is[e];
                ib[e] = a[e] * (db[e] - m1[e] - xh * m2[e]);
            }
        }
    }
}

void ss_batchnorm_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                           const float *x, const float *save_mean, const float *save_invstd,
                           const float *gamma, const float *relu_out, int n, int c, int hw)
{
    const size_t count = (size_t)n * hw, total = count * c;
    const int cb = bn_block(n, c, hw), ntasks = (c + cb - 1) / cb;
#pragma omp parallel for schedule(dynamic, 1) if (total >= BN_PAR_MIN)
    for (int task = 0; task < ntasks; task++) {
        const int c0 = task * cb, nch = c - c0 < cb ? c - c0 : cb;
        double sdy[BN_MAX_CB] = {0}, sdyx[BN_MAX_CB] = {0}; /* sum dy, sum dy * (x - mean) */
        float k1[BN_MAX_CB], mdy[BN_MAX_CB], mdyx[BN_MAX_CB];
        if (hw < BN_SEG_HW)
            bn_seg_dsums(dout, x, relu_out, n, c, hw, c0, nch, save_mean, sdy, sdyx);
        else
            for (int i = 0; i < n; i++) {
                const size_t off = ((size_t)i * c + c0) * hw;
                for (int j = 0; j < nch; j++) {
                    const size_t o = off + (size_t)j * hw;
                    bn_row_dsums(dout + o, x + o, relu_out ? relu_out + o : NULL, hw,
                                 save_mean[c0 + j], &sdy[j], &sdyx[j]);
                }
            }
        for (int j = 0; j < nch; j++) {
            const int ch = c0 + j;
            const double s_dyx = sdyx[j] * save_invstd[ch]; /* sum dy * xhat */
            if (dgamma)
                dgamma[ch] += (float)s_dyx;
            if (dbeta)
                dbeta[ch] += (float)sdy[j];
            k1[j] = (gamma ? gamma[ch] : 1.0f) * save_invstd[ch]; /* dxhat -> dx */
            mdy[j] = (float)(sdy[j] / (double)count);               /* mean(dy)        */
            mdyx[j] = (float)(s_dyx / (double)count);               /* mean(dy * xhat) */
        }
        if (!din)
            continue;
        if (hw < BN_SEG_HW) {
            bn_seg_din(din, dout, x, relu_out, n, c, hw, c0, nch, save_mean, save_invstd, k1, mdy,
                       mdyx);
            continue;
        }
        for (int i = 0; i < n; i++) {
            const size_t off = ((size_t)i * c + c0) * hw;
            for (int j = 0; j < nch; j++) {
                const size_t o = off + (size_t)j * hw;
                bn_row_din(din + o, dout + o, x + o, relu_out ? relu_out + o : NULL, hw,
                           save_mean[c0 + j], save_invstd[c0 + j], k1[j], mdy[j], mdyx[j]);
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
