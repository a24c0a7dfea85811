/* Pooling: max pool (PyTorch MaxPool2d semantics, argmax saved for backward) and global average
 * pool. Parallel over (image, channel) planes; each plane is owned by one thread. */
#include "slidestream/error.h"
#include "slidestream/nn_layers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define POOL_PAR_MIN ((size_t)1 << 14)

int ss_pool2d_init(ss_pool2d_t *p, int n, int c, int h, int w, int k, int stride, int pad)
{
    if (n < 1 || c < 1 || h < 1 || w < 1 || k < 1 || stride < 1 || pad < 0)
        return ss_error("nn", "pool2d: bad shape n=%d c=%d h=%d w=%d k=%d stride=%d pad=%d", n,
                        c, h, w, k, stride, pad);
    if (pad > k / 2)
        return ss_error("nn", "pool2d: padding %d exceeds half the window %d", pad, k);
    int ho = (h + 2 * pad - k) / stride + 1, wo = (w + 2 * pad - k) / stride + 1;
    if (h + 2 * pad < k || w + 2 * pad < k || ho < 1 || wo < 1)
        return ss_error("nn", "pool2d: window %d larger than padded input %dx%d", k, h + 2 * pad,
                        w + 2 * pad);
    *p = (ss_pool2d_t){.n = n, .c = c, .h = h, .w = w, .k = k, .s = stride, .p = pad, .ho = ho,
                       .wo = wo};
    return 0;
}

/* One output element; the window scan order (row-major) with "v > best || isnan(v)" is
 * PyTorch's: the first maximum wins ties, and a NaN wins (the last NaN, as in PyTorch). */
static inline void pool_window(const ss_pool2d_t *p, const float *plane, int oy, int ox,
                               float *best_out, int32_t *idx_out)
{
    int y0 = oy * p->s - p->p, x0 = ox * p->s - p->p;
    int y1 = y0 + p->k, x1 = x0 + p->k;
    if (y0 < 0)
        y0 = 0;
    if (x0 < 0)
        x0 = 0;
    if (y1 > p->h)
        y1 = p->h;
    if (x1 > p->w)
        x1 = p->w;
    float best = -INFINITY;
    int32_t bi = y0 * p->w + x0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            float v = plane[y * p->w + x];
            if (v > best || isnan(v)) {
                best = v;
                bi = y * p->w + x;
            }
        }
    *best_out = best;
    *idx_out = bi;
}

/* hv/hi = max of r[x .. x + 2] and its column col + k: the first maximum, a NaN taken. */
static inline void pool_max3(const float *r, int x, int32_t col, float *hv, int32_t *hi)
{
    float best = r[x];
    int32_t bi = col;
    const float v1 = r[x + 1], v2 = r[x + 2];
    int t = (v1 > best) | (v1 != v1);
    best = t ? v1 : best, bi = t ? col + 1 : bi;
    t = (v2 > best) | (v2 != v2);
    best = t ? v2 : best, bi = t ? col + 2 : bi;
    *hv = best, *hi = bi;
}

/* 16 floats as one vector (GCC/Clang vector extension): the stride-2 column picks of the stem's
 * pool become two shuffles instead of element-wise inserts. */
typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

/* max_nan lane by lane: takes v where it is greater or a NaN (a macro, so that no function
 * passes 64-byte vectors: their ABI differs between builds with and without AVX-512) */
#define MAX_NAN_V(best, v)                                                                         \
    ((v16f)((((v16i)(v)) & (((v) > (best)) | ((v) != (v)))) |                                      \
            (((v16i)(best)) & ~(((v) > (best)) | ((v) != (v))))))

/* pool_hrow3 for stride 2, padding 1 (the ResNet stem), by blocks of 32 columns split into
 * even and odd ones as in maxpool_3s2p1_plane, with the columns of the maxima: window ox scans
 * columns 2ox-1, 2ox, 2ox+1. The first window starts on a copy of column 0 (index 0), which
 * gives the clipped window's value and index; columns past the edge are -inf, never taken. */
static void pool_hrow3_s2p1(const float *r, int w, int wo, float *hv, int32_t *hi)
{
    float prev = r[0];  /* column 2ox-1 of the block's first window */
    int32_t prev_i = 0; /* and its index */
    const v16i lanes = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
    for (int ox = 0; ox < wo; ox += 16) {
        v16f a, b;
        if (2 * ox + 32 <= w) {
            memcpy(&a, r + 2 * ox, sizeof a);
            memcpy(&b, r + 2 * ox + 16, sizeof b);
        } else { /* the last, partial block */
            float t[32];
            for (int k = 0; k < 32; k++)
                t[k] = 2 * ox + k < w ? r[2 * ox + k] : -INFINITY;
            memcpy(&a, t, sizeof a);
            memcpy(&b, t + 16, sizeof b);
        }
        const v16f even = __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20,
                                                  22, 24, 26, 28, 30);
        const v16f odd = __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23,
                                                 25, 27, 29, 31);
        const v16f carry = {prev};
        const v16f left = __builtin_shufflevector(carry, odd, 0, 16, 17, 18, 19, 20, 21, 22, 23,
                                                  24, 25, 26, 27, 28, 29, 30);
        const v16i ci = lanes + 2 * ox, carry_i = {prev_i};
        const v16i left_i = __builtin_shufflevector(carry_i, ci - 1, 0, 17, 18, 19, 20, 21, 22,
                                                    23, 24, 25, 26, 27, 28, 29, 30, 31);
        /* the scan: left, then centre, then right, each taken where greater or a NaN */
        v16i t = (even > left) | (even != even);
        v16f m = (v16f)(((v16i)even & t) | ((v16i)left & ~t));
        v16i mi = (ci & t) | (left_i & ~t);
        t = (odd > m) | (odd != odd);
        m = (v16f)(((v16i)odd & t) | ((v16i)m & ~t));
        mi = ((ci + 1) & t) | (mi & ~t);
        const size_t nb = (size_t)(wo - ox < 16 ? wo - ox : 16);
        memcpy(hv + ox, &m, nb * sizeof(float));
        memcpy(hi + ox, &mi, nb * sizeof(int32_t));
        prev = odd[15];
        prev_i = 2 * ox + 31;
    }
}

/* The 3-wide windows of one input row: hv[ox] / hi[ox] = max and its column over columns
 * [ox·s - p, ox·s - p + 3) ∩ [0, w), first maximum kept, a NaN taken (the scan's rule). */
static void pool_hrow3(const ss_pool2d_t *p, const float *row, float *hv, int32_t *hi)
{
    const int w = p->w, s = p->s, pad = p->p;
    if (s == 2 && pad == 1) { /* the ResNet stem */
        pool_hrow3_s2p1(row, w, p->wo, hv, hi);
        return;
    }
    int lo = 0, hi_ = p->wo; /* interior ox: the window lies inside the row */
    while (lo < hi_ && lo * s - pad < 0)
        lo++;
    while (hi_ > lo && (hi_ - 1) * s - pad + 3 > w)
        hi_--;
    if (s == 2) {
#pragma omp simd
        for (int ox = lo; ox < hi_; ox++)
            pool_max3(row - pad, 2 * ox, 2 * ox - pad, &hv[ox], &hi[ox]);
    } else {
#pragma omp simd
        for (int ox = lo; ox < hi_; ox++)
            pool_max3(row, ox * s - pad, ox * s - pad, &hv[ox], &hi[ox]);
    }
    for (int ox = 0; ox < p->wo; ox++) { /* edges: the window clipped to the row */
        if (ox == lo && hi_ > lo)
            ox = hi_;
        if (ox >= p->wo)
            break;
        const int x0 = ox * s - pad, a = x0 < 0 ? 0 : x0, b = x0 + 3 > w ? w : x0 + 3;
        float best = row[a];
        int32_t bi = a;
        for (int x = a + 1; x < b; x++)
            if (row[x] > best || row[x] != row[x])
                best = row[x], bi = x;
        hv[ox] = best, hi[ox] = bi;
    }
}

void ss_maxpool2d_forward(const ss_pool2d_t *p, float *out, int32_t *argmax, const float *in)
{
    const int planes = p->n * p->c;
    const size_t in_plane = (size_t)p->h * p->w, out_plane = (size_t)p->ho * p->wo;
    /* 3-wide windows on planes up to 1024 outputs wide go in two passes: the row maxima of
     * each input row once, then the column maxima over the window's rows. Row-major scan
     * order is kept: the first row holding the maximum wins, and in it the first column (the
     * last NaN for NaNs), exactly the window scan's choice. */
    const int sep = p->k == 3 && p->wo <= 1024;
#pragma omp parallel if (planes * in_plane >= POOL_PAR_MIN)
    {
        float hv[3][1024];
        int32_t hi[3][1024];
#pragma omp for schedule(dynamic, 8)
        for (int pl = 0; pl < planes; pl++) {
            const float *src = in + pl * in_plane;
            float *dst = out + pl * out_plane;
            int32_t *idx = argmax + pl * out_plane;
            if (!sep) {
                for (int oy = 0; oy < p->ho; oy++)
                    for (int ox = 0; ox < p->wo; ox++)
                        pool_window(p, src, oy, ox, &dst[oy * p->wo + ox], &idx[oy * p->wo + ox]);
                continue;
            }
            int have = -1; /* input row held in hv[have % 3] */
            for (int oy = 0; oy < p->ho; oy++) {
                int y0 = oy * p->s - p->p, y1 = y0 + 3;
                y0 = y0 < 0 ? 0 : y0;
                y1 = y1 > p->h ? p->h : y1;
                for (int y = have + 1 > y0 ? have + 1 : y0; y < y1; y++)
                    pool_hrow3(p, src + (size_t)y * p->w, hv[y % 3], hi[y % 3]);
                have = y1 - 1 > have ? y1 - 1 : have;
                float *d = dst + (size_t)oy * p->wo;
                int32_t *di = idx + (size_t)oy * p->wo;
                const float *v0 = hv[y0 % 3];
                const int32_t *i0 = hi[y0 % 3];
                const int32_t w = p->w, b0 = y0 * w;
                if (y1 - y0 == 3) {
                    const float *v1 = hv[(y0 + 1) % 3], *v2 = hv[(y0 + 2) % 3];
                    const int32_t *i1 = hi[(y0 + 1) % 3], *i2 = hi[(y0 + 2) % 3];
#pragma omp simd
                    for (int ox = 0; ox < p->wo; ox++) {
                        float best = v0[ox];
                        int32_t bi = b0 + i0[ox];
                        int t = (v1[ox] > best) | (v1[ox] != v1[ox]);
                        best = t ? v1[ox] : best, bi = t ? b0 + w + i1[ox] : bi;
                        t = (v2[ox] > best) | (v2[ox] != v2[ox]);
                        best = t ? v2[ox] : best, bi = t ? b0 + 2 * w + i2[ox] : bi;
                        d[ox] = best, di[ox] = bi;
                    }
                } else if (y1 - y0 == 2) { /* the first (or last) row of windows */
                    const float *v1 = hv[(y0 + 1) % 3];
                    const int32_t *i1 = hi[(y0 + 1) % 3];
#pragma omp simd
                    for (int ox = 0; ox < p->wo; ox++) {
                        float best = v0[ox];
                        int32_t bi = b0 + i0[ox];
                        const int t = (v1[ox] > best) | (v1[ox] != v1[ox]);
                        best = t ? v1[ox] : best, bi = t ? b0 + w + i1[ox] : bi;
                        d[ox] = best, di[ox] = bi;
                    }
                } else {
                    for (int ox = 0; ox < p->wo; ox++) {
                        float best = v0[ox];
                        int32_t bi = b0 + i0[ox];
                        for (int y = y0 + 1; y < y1; y++) {
                            const float v = hv[y % 3][ox];
                            if (v > best || v != v)
                                best = v, bi = y * w + hi[y % 3][ox];
                        }
                        d[ox] = best, di[ox] = bi;
                    }
                }
            }
        }
    }
}

/* max that lets a NaN through, as the window scan does */
static inline float max_nan(float best, float v)
{
    return (v > best) | (v != v) ? v : best;
}

/* The ResNet stem's window (3×3, stride 2, padding 1) on one plane: each input row's column
 * triples first (hm[y][ox] = max of columns 2ox-1 .. 2ox+1, by blocks of 32 columns split into
 * even and odd ones; the last block padded with -inf), then the maximum of three such rows. The NaN-passing max gives the window
 * scan's values in any order. */
static void maxpool_3s2p1_plane(float *restrict dst, const float *restrict src, int h, int w,
                                int ho, int wo, float *restrict hm)
{
    for (int y = 0; y < h; y++) {
        const float *r = src + (size_t)y * w;
        float *o = hm + (size_t)y * wo;
        float prev = -INFINITY; /* column 2ox-1 of the block's first window */
        for (int ox = 0; ox < wo; ox += 16) {
            v16f a, b;
            if (2 * ox + 32 <= w) {
                memcpy(&a, r + 2 * ox, sizeof a);
                memcpy(&b, r + 2 * ox + 16, sizeof b);
            } else { /* the last, partial block: the columns past the edge are padding */
                float t[32];
                for (int k = 0; k < 32; k++)
                    t[k] = 2 * ox + k < w ? r[2 * ox + k] : -INFINITY;
                memcpy(&a, t, sizeof a);
                memcpy(&b, t + 16, sizeof b);
            }
            const v16f even = __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18,
                                                      20, 22, 24, 26, 28, 30);
            const v16f odd = __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21,
                                                     23, 25, 27, 29, 31);
            const v16f carry = {prev};
            const v16f left = __builtin_shufflevector(carry, odd, 0, 16, 17, 18, 19, 20, 21, 22,
                                                      23, 24, 25, 26, 27, 28, 29, 30);
            v16f m = MAX_NAN_V(left, even);
            m = MAX_NAN_V(m, odd);
            memcpy(o + ox, &m, (size_t)(wo - ox < 16 ? wo - ox : 16) * sizeof(float));
            prev = odd[15];
        }
    }
    for (int oy = 0; oy < ho; oy++) {
        const int y0 = 2 * oy - 1 < 0 ? 0 : 2 * oy - 1, y1 = 2 * oy + 1 < h ? 2 * oy + 1 : h - 1;
        float *restrict d = dst + (size_t)oy * wo;
        const float *restrict a = hm + (size_t)y0 * wo;
#pragma omp simd
        for (int ox = 0; ox < wo; ox++)
            d[ox] = a[ox];
        for (int y = y0 + 1; y <= y1; y++) {
            const float *restrict b = hm + (size_t)y * wo;
#pragma omp simd
            for (int ox = 0; ox < wo; ox++)
                d[ox] = max_nan(d[ox], b[ox]);
        }
    }
}

void ss_maxpool2d_forward_values(const ss_pool2d_t *p, float *out, const float *in)
{
    if (p->k == 3 && p->s == 2 && p->p == 1) {
        const int planes = p->n * p->c;
        const size_t in_plane = (size_t)p->h * p->w, out_plane = (size_t)p->ho * p->wo;
        int failed = 0;
#pragma omp parallel if (planes * in_plane >= POOL_PAR_MIN) reduction(| : failed)
        {
            float *hm = malloc((size_t)p->h * p->wo * sizeof(float));
            failed = !hm;
#pragma omp for schedule(dynamic, 8)
            for (int pl = 0; pl < planes; pl++)
                if (hm)
                    maxpool_3s2p1_plane(out + pl * out_plane, in + pl * in_plane, p->h, p->w,
                                        p->ho, p->wo, hm);
            free(hm);
        }
        if (!failed)
            return; /* out of memory for the row maxima: the general path below */
    }
    const int planes = p->n * p->c, w = p->w;
    const size_t in_plane = (size_t)p->h * p->w, out_plane = (size_t)p->ho * p->wo;
#pragma omp parallel if (planes * in_plane >= POOL_PAR_MIN)
    {
        /* col[p->p + x] = max over the window's rows of column x; -inf padding either side */
        float col[4096 + 64];
        float *cm = w + 2 * p->p + p->k <= 4096 + 64 ? col : NULL;
#pragma omp for schedule(dynamic, 8)
        for (int pl = 0; pl < planes; pl++) {
            const float *src = in + pl * in_plane;
            float *dst = out + pl * out_plane;
            if (!cm) { /* very wide planes: the window scan */
                int32_t idx;
                for (int oy = 0; oy < p->ho; oy++)
                    for (int ox = 0; ox < p->wo; ox++)
                        pool_window(p, src, oy, ox, &dst[oy * p->wo + ox], &idx);
                continue;
            }
            for (int i = 0; i < p->p; i++)
                cm[i] = -INFINITY;
            for (int i = p->p + w; i < 2 * p->p + w + p->k; i++)
                cm[i] = -INFINITY;
            float *c = cm + p->p;
            for (int oy = 0; oy < p->ho; oy++) {
                int y0 = oy * p->s - p->p, y1 = y0 + p->k;
                y0 = y0 < 0 ? 0 : y0;
                y1 = y1 > p->h ? p->h : y1;
                const float *r0 = src + (size_t)y0 * w;
#pragma omp simd
                for (int x = 0; x < w; x++)
                    c[x] = r0[x];
                for (int y = y0 + 1; y < y1; y++) {
                    const float *r = src + (size_t)y * w;
#pragma omp simd
                    for (int x = 0; x < w; x++)
                        c[x] = max_nan(c[x], r[x]);
                }
                float *d = dst + (size_t)oy * p->wo;
                if (p->k == 3 && p->s == 2) { /* the ResNet stem: constant stride vectorises */
#pragma omp simd
                    for (int ox = 0; ox < p->wo; ox++)
                        d[ox] = max_nan(max_nan(cm[2 * ox], cm[2 * ox + 1]), cm[2 * ox + 2]);
                } else if (p->k == 3) {
#pragma omp simd
                    for (int ox = 0; ox < p->wo; ox++) {
                        const float *q = cm + ox * p->s;
                        d[ox] = max_nan(max_nan(q[0], q[1]), q[2]);
                    }
                } else {
                    for (int ox = 0; ox < p->wo; ox++) {
                        const float *q = cm + ox * p->s;
                        float b = q[0];
                        for (int k = 1; k < p->k; k++)
                            b = max_nan(b, q[k]);
                        d[ox] = b;
                    }
                }
            }
        }
    }
}

void ss_maxpool2d_backward(const ss_pool2d_t *p, float *din, const float *dout,
                           const int32_t *argmax)
{
    const int planes = p->n * p->c;
    const size_t in_plane = (size_t)p->h * p->w, out_plane = (size_t)p->ho * p->wo;
#pragma omp parallel for schedule(dynamic, 8) if (planes * in_plane >= POOL_PAR_MIN)
    for (int pl = 0; pl < planes; pl++) {
        float *dst = din + pl * in_plane;
        const float *src = dout + pl * out_plane;
        const int32_t *idx = argmax + pl * out_plane;
        memset(dst, 0, sizeof(float) * in_plane);
        for (size_t o = 0; o < out_plane; o++)
            dst[idx[o]] += src[o];
    }
}

void ss_maxpool2d_forward_naive(const ss_pool2d_t *p, float *out, int32_t *argmax,
                                const float *in)
{
    /* Direct definition: scan the full padded window, treating padding as -inf. */
    for (int pl = 0; pl < p->n * p->c; pl++)
        for (int oy = 0; oy < p->ho; oy++)
            for (int ox = 0; ox < p->wo; ox++) {
                float best = -INFINITY;
                int32_t bi = -1;
                for (int ky = 0; ky < p->k; ky++)
                    for (int kx = 0; kx < p->k; kx++) {
                        int y = oy * p->s - p->p + ky, x = ox * p->s - p->p + kx;
                        if (y < 0 || y >= p->h || x < 0 || x >= p->w)
                            continue;
                        float v = in[(size_t)pl * p->h * p->w + (size_t)y * p->w + x];
                        if (bi < 0 || v > best || isnan(v)) {
                            best = v;
                            bi = y * p->w + x;
                        }
                    }
                size_t o = (size_t)pl * p->ho * p->wo + (size_t)oy * p->wo + ox;
                out[o] = best;
                argmax[o] = bi;
            }
}

void ss_maxpool2d_backward_naive(const ss_pool2d_t *p, float *din, const float *dout,
                                 const int32_t *argmax)
{
    const size_t in_plane = (size_t)p->h * p->w, out_plane = (size_t)p->ho * p->wo;
    memset(din, 0, sizeof(float) * in_plane * p->n * p->c);
    for (size_t pl = 0; pl < (size_t)p->n * p->c; pl++)
        for (size_t o = 0; o < out_plane; o++)
            din[pl * in_plane + argmax[pl * out_plane + o]] += dout[pl * out_plane + o];
}

void ss_avgpool_global_forward(float *out, const float *in, int n, int c, int hw)
{
    const int planes = n * c;
#pragma omp parallel for schedule(dynamic, 8) if ((size_t)planes * hw >= POOL_PAR_MIN)
    for (int pl = 0; pl < planes; pl++) {
        const float *src = in + (size_t)pl * hw;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int p = 0; p < hw; p++)
            s += src[p];
        out[pl] = s / (float)hw;
    }
}

void ss_avgpool_global_backward(float *din, const float *dout, int n, int c, int hw)
{
    const int planes = n * c;
#pragma omp parallel for schedule(dynamic, 8) if ((size_t)planes * hw >= POOL_PAR_MIN)
    for (int pl = 0; pl < planes; pl++) {
        float g = dout[pl] / (float)hw;
        float *dst = din + (size_t)pl * hw;
        for (int p = 0; p < hw; p++)
            dst[p] = g;
    }
}

void ss_avgpool_global_forward_naive(float *out, const float *in, int n, int c, int hw)
{
    for (int pl = 0; pl < n * c; pl++) {
        double s = 0.0;
        for (int p = 0; p < hw; p++)
            s += in[(size_t)pl * hw + p];
        out[pl] = (float)(s / hw);
    }
}

void ss_avgpool_global_backward_naive(float *din, const float *dout, int n, int c, int hw)
{
    for (int pl = 0; pl < n * c; pl++)
        for (int p = 0; p < hw; p++)
            din[(size_t)pl * hw + p] = (float)((double)dout[pl] / hw);
}
