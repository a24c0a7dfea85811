/* ABMILX: DAttentionX of DearCaat/E2E-WSI-ABMILX (modules/abmilx.py) in the two-stage feature
 * setting (specs/methods.md §4.1): input_dim = dim, mil_bias and attn_bias on, ReLU, no
 * mil_norm, attn_type 'mlp', attn_plus on, attn_plus_embed_new off, no ffn, dropout off.
 *
 *   H   = ReLU(X W_f^T + b_f)                          (n, C)      C = hidden, d = C / heads
 *   A   = W_2 GELU(W_1 H_h + b_1) + b_2                (n, h)      per head, MLP shared by heads
 *                                                          (MLPAttn's own default act: GELU)
 *   Z   = LN_d(H_h);  [Q | K] = Z W_qk^T               (n, h, 2d)  no bias
 *   A  += softmax_m(Q K^T / sqrt d) (w_v A)            per head (A⁺, the "attention plus")
 *   α   = softmax over cells of A, per head;  z = concat_heads Σ α H_h
 *   logits = W_cls (W_p z + b_p) + b_cls;  loss = cross-entropy
 * Attention toward class 1 (mil.h) = the mean over heads of α.
 *
 * State_dict (DAttentionX's names, in its registration order): attn_plus_fn.qk.weight (2d, d),
 * attn_plus_fn.v.weight (1, 1), attn_plus_fn.norm_x.{weight,bias} (d), feature.0.{weight,bias}
 * (C, dim), attention.fc1.{weight,bias} (D', d), attention.fc2.{weight,bias} (1, D'),
 * proj.{weight,bias} (C, C), classifier.{weight,bias} (2, C). D' = cfg->attn (0: d) is taken
 * as the MLP's width itself (the reference's abx_D > 10 would be divided by the heads).
 * Init as the reference: Xavier normal on every Linear (w_v: std 1), zero biases, LN 1 / 0.
 *
 * A⁺ is A⁺[i, j] for cell i and head j, as the spec reads it: the reference's 4-D path
 * transposes sdpa()'s output to (B, N, heads, 1) before A + A⁺ with A (B, heads, N, 1); which
 * layout its sdpa (modules/vit_mil.py, not in the snapshot) returns could not be checked.
 * A⁺ runs as an online-softmax kernel over blocks of keys (ss_abmilx_aplus_*, below, with its
 * O(n²)-time reference), so both eval and training need memory linear in n.
 *
 * Memory: m->impl owns ONE buffer, grown to the largest bag (and mode) seen. A training
 * forward copies the bag (backward needs it) and keeps every activation; an eval forward keeps
 * only Q|K and the per-(cell, head) scalars: it runs the per-row layers in chunks of cells and
 * embeds each chunk again for the pooling. A backward spends the saved activations (they are
 * overwritten): one per training forward. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abmilx.h"
#include "mil_internal.h"
#include "slidestream/error.h"

#define DOM "mil"
#define ROWS 1024    /* cells per chunk of the per-row layers in eval */
#define TS 64        /* short side of a score tile */
#define TL 256       /* long side of a score tile */
#define LN_EPS 1e-5f /* nn.LayerNorm's default */

enum {
    P_QK,
    P_V,
    P_LNW,
    P_LNB,
    P_FW,
    P_FB,
    P_W1,
    P_B1,
    P_W2,
    P_B2,
    P_PW,
    P_PB,
    P_CW,
    P_CB,
    P_COUNT
};

static int use_naive;

void ss_abmilx_set_naive(int on)
{
    use_naive = on != 0;
}

/* ---- A⁺ kernels ------------------------------------------------------------------------- */

/* e^x within 2 ulp (Cephes' polynomial on x - n ln 2), 0 below -87: a branch-free function of
 * floats so that the score loops vectorise without -ffast-math (floorf and fmaxf would not:
 * n = rint(x log2 e) comes from adding and subtracting 1.5 · 2^23). */
static inline float fexp(float x)
{
    float c = x < -87.0f ? -87.0f : x;
    c = c > 88.0f ? 88.0f : c;
    float fx = (c * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = c - fx * 0.693359375f + fx * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { /* 2^n from its exponent bits (C11 allows punning through a union) */
        int32_t i;
        float f;
    } s = {.i = ((int32_t)fx + 127) << 23};
    float v = p * s.f;
    return x < -87.0f ? 0.0f : v;
}

#define SLOT ((size_t)TS * TL) /* floats per thread: one score tile */

static int clamp_slots(int slots)
{
    return slots < 1 ? 1 : slots;
}

size_t ss_abmilx_aplus_workspace(int n, int h, int slots)
{
    return (size_t)clamp_slots(slots) * SLOT + 6 * (size_t)n * h;
}

/* OpenBLAS must run single-threaded inside our parallel regions (as in the NN core). */
static void blas_single(void)
{
    if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
}

static int team(int slots, int tasks)
{
    int nt = omp_get_max_threads();
    if (nt > clamp_slots(slots)) nt = clamp_slots(slots);
    if (nt > tasks) nt = tasks;
    return nt < 1 ? 1 : nt;
}

/* S[i][k] = scale Q[q0 + i] · K[k0 + k] of head j, for i < bq, k < bk; row stride lds. */
static void scores(float *S, int lds, const float *qk, int q0, int bq, int k0, int bk, int j, int h,
                   int d, float scale)
{
    const int ld = 2 * h * d;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bq, bk, d, scale,
                qk + (size_t)q0 * ld + (size_t)j * 2 * d, ld,
                qk + (size_t)k0 * ld + (size_t)j * 2 * d + d, ld, 0.0f, S, lds);
}

/* dst[j * n + i] = src[i * h + j]: one contiguous row per head. */
static void by_head(float *dst, const float *src, int n, int h)
{
    for (size_t i = 0; i < (size_t)n; i++)
        for (int j = 0; j < h; j++)
            dst[(size_t)j * n + i] = src[i * h + j];
}

static float scale_of(int d)
{
    return (float)(1.0 / sqrt((double)d));
}

void ss_abmilx_aplus_forward(float *out, float *rmax, float *rsum, const float *qk, const float *v,
                             int n, int h, int d, float *work, int slots)
{
    const float scale = scale_of(d);
    float *vh = work + (size_t)clamp_slots(slots) * SLOT; /* [h, n] */
    by_head(vh, v, n, h);
    const int nq = (n + TS - 1) / TS, tasks = nq * h;
    blas_single();
    /* Task = (head, block of TS queries) over every key, TL keys a tile: running max, and
     * the sums of e^(s - max) and e^(s - max) V rescaled whenever the max grows. */
#pragma omp parallel for schedule(dynamic, 1) num_threads(team(slots, tasks))
    for (int task = 0; task < tasks; task++) {
        const int j = task / nq, q0 = (task % nq) * TS, bq = n - q0 < TS ? n - q0 : TS;
        float *S = work + (size_t)omp_get_thread_num() * SLOT; /* [TS][TL] */
        const float *vj = vh + (size_t)j * n;
        float mrow[TS];
        double lrow[TS], orow[TS];
        for (int i = 0; i < bq; i++)
            mrow[i] = -INFINITY, lrow[i] = 0.0, orow[i] = 0.0;
        for (int k0 = 0; k0 < n; k0 += TL) {
            const int bk = n - k0 < TL ? n - k0 : TL;
            const float *vk = vj + k0;
            scores(S, TL, qk, q0, bq, k0, bk, j, h, d, scale);
            for (int i = 0; i < bq; i++) {
                const float *row = S + (size_t)i * TL;
                float mx = mrow[i];
#pragma omp simd reduction(max : mx)
                for (int k = 0; k < bk; k++)
                    mx = row[k] > mx ? row[k] : mx;
                float sl = 0.0f, so = 0.0f;
#pragma omp simd reduction(+ : sl, so)
                for (int k = 0; k < bk; k++) {
                    float e = fexp(row[k] - mx);
                    sl += e;
                    so += e * vk[k];
                }
                double corr = fexp(mrow[i] - mx); /* 0 on the first tile (max -inf) */
                lrow[i] = lrow[i] * corr + sl;
                orow[i] = orow[i] * corr + so;
                mrow[i] = mx;
            }
        }
        for (int i = 0; i < bq; i++) {
            size_t o = (size_t)(q0 + i) * h + j;
            out[o] = (float)(orow[i] / lrow[i]);
            rmax[o] = mrow[i];
            rsum[o] = (float)lrow[i];
        }
    }
}

/* With P = softmax(S) and O = P V, V one number per key, the score gradient is
 * dS_ik = P_ik dO_i (V_k - O_i) (the softmax's row term Σ_k P_ik dP_ik is dO_i O_i). Two passes
 * over the tiles, so that each gradient element is owned by one task: dQ by blocks of queries,
 * then dK and dV by blocks of keys; both recompute P = e^(S - max) / sum from the forward's
 * per-query statistics. */
void ss_abmilx_aplus_backward(float *dqk, float *dv, const float *dout, const float *qk,
                              const float *v, const float *out, const float *rmax,
                              const float *rsum, int n, int h, int d, float *work, int slots)
{
    const float scale = scale_of(d);
    const int ld = 2 * h * d;
    const size_t nh = (size_t)n * h;
    /* per-head rows: V, max, 1/sum, dO, O, and dV before it is put back in [n, h] order */
    float *vh = work + (size_t)clamp_slots(slots) * SLOT, *mh = vh + nh, *ih = mh + nh;
    float *gh = ih + nh, *oh = gh + nh, *dvh = oh + nh;
    by_head(vh, v, n, h);
    by_head(mh, rmax, n, h);
    by_head(ih, rsum, n, h);
    for (size_t i = 0; i < nh; i++)
        ih[i] = 1.0f / ih[i];
    by_head(gh, dout, n, h);
    by_head(oh, out, n, h);
    blas_single();
    const int nb = (n + TS - 1) / TS, tasks = nb * h;

#pragma omp parallel for schedule(dynamic, 1) num_threads(team(slots, tasks))
    for (int task = 0; task < tasks; task++) { /* pass 1: dQ */
        const int j = task / nb, q0 = (task % nb) * TS, bq = n - q0 < TS ? n - q0 : TS;
        float *S = work + (size_t)omp_get_thread_num() * SLOT; /* [TS][TL] */
        const float *vj = vh + (size_t)j * n, *mj = mh + (size_t)j * n + q0;
        const float *ij = ih + (size_t)j * n + q0, *gj = gh + (size_t)j * n + q0;
        const float *oj = oh + (size_t)j * n + q0;
        float *dQ = dqk + (size_t)q0 * ld + (size_t)j * 2 * d;
        for (int k0 = 0; k0 < n; k0 += TL) {
            const int bk = n - k0 < TL ? n - k0 : TL;
            const float *vk = vj + k0;
            scores(S, TL, qk, q0, bq, k0, bk, j, h, d, scale);
            for (int i = 0; i < bq; i++) {
                float *row = S + (size_t)i * TL;
                const float mi = mj[i], gi = gj[i] * ij[i], oi = oj[i];
#pragma omp simd
                for (int k = 0; k < bk; k++)
                    row[k] = fexp(row[k] - mi) * gi * (vk[k] - oi);
            }
            /* dQ += scale dS K */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bq, d, bk, scale, S, TL,
                        qk + (size_t)k0 * ld + (size_t)j * 2 * d + d, ld, k0 ? 1.0f : 0.0f, dQ, ld);
        }
    }

#pragma omp parallel for schedule(dynamic, 1) num_threads(team(slots, tasks))
    for (int task = 0; task < tasks; task++) { /* pass 2: dK, dV */
        const int j = task / nb, k0 = (task % nb) * TS, bk = n - k0 < TS ? n - k0 : TS;
        float *S = work + (size_t)omp_get_thread_num() * SLOT; /* [TL][TS] */
        const float *vk = vh + (size_t)j * n + k0, *mj = mh + (size_t)j * n;
        const float *ij = ih + (size_t)j * n, *gj = gh + (size_t)j * n, *oj = oh + (size_t)j * n;
        float *dK = dqk + (size_t)k0 * ld + (size_t)j * 2 * d + d;
        double dvacc[TS];
        float dvrow[TS];
        for (int k = 0; k < bk; k++)
            dvacc[k] = 0.0;
        for (int q0 = 0; q0 < n; q0 += TL) {
            const int bq = n - q0 < TL ? n - q0 : TL;
            scores(S, TS, qk, q0, bq, k0, bk, j, h, d, scale);
            for (int k = 0; k < bk; k++)
                dvrow[k] = 0.0f;
            for (int i = 0; i < bq; i++) {
                float *row = S + (size_t)i * TS;
                const float mi = mj[q0 + i], il = ij[q0 + i], g = gj[q0 + i], oi = oj[q0 + i];
#pragma omp simd
                for (int k = 0; k < bk; k++) {
                    float pg = fexp(row[k] - mi) * il * g;
                    dvrow[k] += pg;
                    row[k] = pg * (vk[k] - oi);
                }
            }
            for (int k = 0; k < bk; k++)
                dvacc[k] += dvrow[k];
            /* dK += scale dS^T Q */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, bk, d, bq, scale, S, TS,
                        qk + (size_t)q0 * ld + (size_t)j * 2 * d, ld, q0 ? 1.0f : 0.0f, dK, ld);
        }
        for (int k = 0; k < bk; k++)
            dvh[(size_t)j * n + k0 + k] = (float)dvacc[k];
    }
    for (size_t i = 0; i < (size_t)n; i++)
        for (int j = 0; j < h; j++)
            dv[i * h + j] = dvh[(size_t)j * n + i];
}

/* Reference: the row of scores of query i, head j, in double into w[n]; returns its max. */
static double score_row(double *w, const float *qk, int i, int j, int n, int h, int d)
{
    const size_t ld = 2 * (size_t)h * d;
    const float *q = qk + i * ld + (size_t)j * 2 * d;
    double mx = -INFINITY, scale = scale_of(d);
    for (int k = 0; k < n; k++) {
        const float *kk = qk + k * ld + (size_t)j * 2 * d + d;
        double s = 0.0;
        for (int t = 0; t < d; t++)
            s += (double)q[t] * kk[t];
        w[k] = s * scale;
        if (w[k] > mx) mx = w[k];
    }
    return mx;
}

void ss_abmilx_aplus_forward_naive(float *out, float *rmax, float *rsum, const float *qk,
                                   const float *v, int n, int h, int d, double *work)
{
    for (int j = 0; j < h; j++)
        for (int i = 0; i < n; i++) {
            double mx = score_row(work, qk, i, j, n, h, d), l = 0.0, o = 0.0;
            for (int k = 0; k < n; k++) {
                double e = exp(work[k] - mx);
                l += e;
                o += e * v[(size_t)k * h + j];
            }
            size_t at = (size_t)i * h + j;
            out[at] = (float)(o / l);
            if (rmax) rmax[at] = (float)mx;
            if (rsum) rsum[at] = (float)l;
        }
}

void ss_abmilx_aplus_backward_naive(float *dqk, float *dv, const float *dout, const float *qk,
                                    const float *v, int n, int h, int d, double *work)
{
    const size_t ld = 2 * (size_t)h * d;
    const double scale = scale_of(d);
    double *w = work, *mx = w + n, *l = mx + n, *o = l + n, *acc = o + n; /* acc[d] */
    for (int j = 0; j < h; j++) {
        for (int i = 0; i < n; i++) { /* the forward's statistics, in double */
            mx[i] = score_row(w, qk, i, j, n, h, d);
            l[i] = o[i] = 0.0;
            for (int k = 0; k < n; k++) {
                double e = exp(w[k] - mx[i]);
                l[i] += e;
                o[i] += e * v[(size_t)k * h + j];
            }
            o[i] /= l[i];
        }
        for (int i = 0; i < n; i++) { /* dQ_i = scale Σ_k dS_ik K_k */
            score_row(w, qk, i, j, n, h, d);
            double g = dout[(size_t)i * h + j];
            for (int t = 0; t < d; t++)
                acc[t] = 0.0;
            for (int k = 0; k < n; k++) {
                double ds = exp(w[k] - mx[i]) / l[i] * g * (v[(size_t)k * h + j] - o[i]);
                const float *kk = qk + k * ld + (size_t)j * 2 * d + d;
                for (int t = 0; t < d; t++)
                    acc[t] += ds * kk[t];
            }
            for (int t = 0; t < d; t++)
                dqk[i * ld + (size_t)j * 2 * d + t] = (float)(scale * acc[t]);
        }
        for (int k = 0; k < n; k++) { /* dK_k = scale Σ_i dS_ik Q_i, dV_k = Σ_i P_ik dO_i */
            const float *kk = qk + k * ld + (size_t)j * 2 * d + d;
            double dvk = 0.0;
            for (int t = 0; t < d; t++)
                acc[t] = 0.0;
            for (int i = 0; i < n; i++) {
                const float *q = qk + i * ld + (size_t)j * 2 * d;
                double s = 0.0;
                for (int t = 0; t < d; t++)
                    s += (double)q[t] * kk[t];
                double pg = exp(s * scale - mx[i]) / l[i] * dout[(size_t)i * h + j];
                dvk += pg;
                for (int t = 0; t < d; t++)
                    acc[t] += pg * (v[(size_t)k * h + j] - o[i]) * q[t];
            }
            for (int t = 0; t < d; t++)
                dqk[k * ld + (size_t)j * 2 * d + d + t] = (float)(scale * acc[t]);
            dv[(size_t)k * h + j] = (float)dvk;
        }
    }
}

/* ---- the model ------------------------------------------------------------------------- */

typedef struct {
    float *buf;          /* the one activation buffer */
    size_t cap;          /* its size in floats */
    int n, train, slots; /* the bag and mode the views below describe */
    /* m = n cells in training; in eval, a chunk of at most ROWS cells */
    float *x;             /* [n, dim]      the bag (training only) */
    float *H;             /* [m, C]        ReLU(embedding) = [m, h, d] heads */
    float *U, *G;         /* [m, h, D']    MLP pre-activation, GELU */
    float *Z, *lnm, *lnr; /* [m, h, d], [m, h]  LN output and its statistics */
    float *QK;            /* [n, h, 2d] */
    float *A, *V, *Ap;    /* [n, h]        MLP scores, w_v A, A⁺ */
    float *rmax, *rsum;   /* [n, h]        A⁺ per-query statistics */
    float *alpha;         /* [h, n]        softmax over cells (scores first) */
    float *z, *z2;        /* [C]           pooled, projected */
    float logits[SS_MIL_CLASSES];
    float *work;   /* A⁺ kernel scratch */
    double *nwork; /* A⁺ reference scratch (naive mode) */
    /* training: backward scratch */
    float *dH, *dQK, *T;  /* [n, C], [n, h, 2d], [n, C] */
    float *dS, *dAp, *dV; /* [h, n], [n, h], [n, h] */
    float *dz, *dz2;      /* [C] */
} abx_t;

typedef struct {
    int D, C, h, d, Dp;
} dims_t;

static dims_t dims_of(const ss_mil_config_t *c)
{
    dims_t s = {c->dim, c->hidden, c->heads, c->hidden / c->heads, 0};
    s.Dp = c->attn ? c->attn : s.d;
    return s;
}

static int layout(const ss_mil_config_t *c, ss_mil_tensor_spec_t *s)
{
    if (c->hidden % c->heads)
        return ss_error(DOM, "abmilx: hidden width %d is not divisible by %d heads", c->hidden,
                        c->heads);
    dims_t m = dims_of(c);
    if (s) {
        ss_mil_spec(&s[P_QK], "attn_plus_fn.qk.weight", 2, 2 * m.d, m.d);
        ss_mil_spec(&s[P_V], "attn_plus_fn.v.weight", 2, 1, 1);
        ss_mil_spec(&s[P_LNW], "attn_plus_fn.norm_x.weight", 1, m.d, 0);
        ss_mil_spec(&s[P_LNB], "attn_plus_fn.norm_x.bias", 1, m.d, 0);
        ss_mil_spec(&s[P_FW], "feature.0.weight", 2, m.C, m.D);
        ss_mil_spec(&s[P_FB], "feature.0.bias", 1, m.C, 0);
        ss_mil_spec(&s[P_W1], "attention.fc1.weight", 2, m.Dp, m.d);
        ss_mil_spec(&s[P_B1], "attention.fc1.bias", 1, m.Dp, 0);
        ss_mil_spec(&s[P_W2], "attention.fc2.weight", 2, 1, m.Dp);
        ss_mil_spec(&s[P_B2], "attention.fc2.bias", 1, 1, 0);
        ss_mil_spec(&s[P_PW], "proj.weight", 2, m.C, m.C);
        ss_mil_spec(&s[P_PB], "proj.bias", 1, m.C, 0);
        ss_mil_spec(&s[P_CW], "classifier.weight", 2, SS_MIL_CLASSES, m.C);
        ss_mil_spec(&s[P_CB], "classifier.bias", 1, SS_MIL_CLASSES, 0);
    }
    return P_COUNT;
}

static void init(ss_mil_t *m, ss_rng_t *rng)
{
    for (int i = 0; i < m->table_len; i++) {
        const ss_mil_tensor_spec_t *s = &m->specs[i];
        float *p = ss_mil_param(m, i);
        size_t len = (size_t)ss_ckpt_numel(&m->table[i]);
        if (i == P_LNW)
            for (size_t k = 0; k < len; k++)
                p[k] = 1.0f;
        else if (s->ndim == 2) /* xavier_normal_: std = sqrt(2 / (fan_in + fan_out)) */
            ss_rng_fill_normal(rng, p, len, 0.0f,
                               (float)sqrt(2.0 / (double)(s->shape[0] + s->shape[1])));
        else
            memset(p, 0, len * sizeof *p);
    }
}

/* Lay the views out over base (NULL: only count); returns the floats needed. */
static size_t plan(abx_t *t, const dims_t *m, int n, int train, int slots, float *base)
{
    size_t off = 0;
    const size_t nh = (size_t)n * m->h, rows = (size_t)(train || n < ROWS ? n : ROWS) * m->h;
#define TAKE(p, count)                                                                             \
    do {                                                                                           \
        t->p = base ? base + off : NULL;                                                           \
        off += ((size_t)(count) + 15) & ~(size_t)15;                                               \
    } while (0)
    TAKE(H, rows * m->d);
    TAKE(U, rows * m->Dp);
    TAKE(G, rows * m->Dp);
    TAKE(Z, rows * m->d);
    TAKE(lnm, rows);
    TAKE(lnr, rows);
    TAKE(QK, nh * 2 * m->d);
    TAKE(A, nh);
    TAKE(V, nh);
    TAKE(Ap, nh);
    TAKE(rmax, nh);
    TAKE(rsum, nh);
    TAKE(alpha, nh);
    TAKE(z, m->C);
    TAKE(z2, m->C);
    TAKE(work, ss_abmilx_aplus_workspace(n, m->h, slots));
    t->nwork = NULL;
    if (use_naive) {
        float *w = base ? base + off : NULL;
        off += ((4 * (size_t)n + m->d) * 2 + 15) & ~(size_t)15;
        t->nwork = (double *)w;
    }
    t->x = t->dH = t->dQK = t->T = t->dS = t->dAp = t->dV = t->dz = t->dz2 = NULL;
    if (train) {
        TAKE(x, (size_t)n * m->D);
        TAKE(dH, (size_t)n * m->C);
        TAKE(dQK, nh * 2 * m->d);
        TAKE(T, (size_t)n * m->C);
        TAKE(dS, nh);
        TAKE(dAp, nh);
        TAKE(dV, nh);
        TAKE(dz, m->C);
        TAKE(dz2, m->C);
    }
#undef TAKE
    return off;
}

static int reserve(ss_mil_t *m, abx_t *t, const dims_t *dm, int n, int train)
{
    int slots = omp_get_max_threads();
    size_t need = plan(t, dm, n, train, slots, NULL);
    if (ss_mil_buffer_grow(&t->buf, &t->cap, need, "abmilx", n)) return -1;
    plan(t, dm, n, train, slots, t->buf);
    t->n = n, t->train = train, t->slots = slots;
    return 0;
}

#define PRM(i) ss_mil_param(m, (i))
#define GRD(i) ss_mil_grad(m, (i))

/* H rows [r0, r0 + rc) into dst: ReLU(X W_f^T + b_f). */
static void embed(ss_mil_t *m, float *dst, const float *x, int r0, int rc)
{
    const dims_t dm = dims_of(&m->cfg);
    ss_linear_forward(dst, x + (size_t)r0 * dm.D, PRM(P_FW), PRM(P_FB), rc, dm.D, dm.C);
    ss_relu_forward(dst, dst, (size_t)rc * dm.C);
}

static int forward(ss_mil_t *m, const float *x, int n, int train, float *logits, float *attention)
{
    abx_t *t = m->impl;
    if (!t && !(t = m->impl = calloc(1, sizeof *t))) return ss_error(DOM, "out of memory");
    const dims_t dm = dims_of(&m->cfg);
    const int C = dm.C, h = dm.h, d = dm.d, Dp = dm.Dp;
    t->n = 0;
    if (reserve(m, t, &dm, n, train)) return -1;
    if (train) {
        memcpy(t->x, x, (size_t)n * dm.D * sizeof *x);
        x = t->x;
    }

    /* Per chunk of cells (training: one chunk, every activation kept): H, the attention MLP
     * on every (cell, head) row, and LN + W_qk. */
    const int R = train || n < ROWS ? n : ROWS;
    for (int r0 = 0; r0 < n; r0 += R) {
        const int rc = n - r0 < R ? n - r0 : R, rows = rc * h;
        const size_t at = train ? (size_t)r0 * h : 0; /* chunk scratch in eval */
        float *Hc = t->H + at * d, *U = t->U + at * Dp, *G = t->G + at * Dp, *Z = t->Z + at * d;
        embed(m, Hc, x, r0, rc);
        ss_linear_forward(U, Hc, PRM(P_W1), PRM(P_B1), rows, d, Dp);
        ss_gelu_forward(G, U, (size_t)rows * Dp);
        ss_linear_forward(t->A + (size_t)r0 * h, G, PRM(P_W2), PRM(P_B2), rows, Dp, 1);
        ss_layernorm_forward(Z, t->lnm + at, t->lnr + at, Hc, PRM(P_LNW), PRM(P_LNB), rows, d,
                             LN_EPS);
        ss_linear_forward(t->QK + (size_t)r0 * h * 2 * d, Z, PRM(P_QK), NULL, rows, d, 2 * d);
    }

    const size_t nh = (size_t)n * h;
    const float wv = PRM(P_V)[0];
    for (size_t i = 0; i < nh; i++)
        t->V[i] = wv * t->A[i];
    if (use_naive)
        ss_abmilx_aplus_forward_naive(t->Ap, t->rmax, t->rsum, t->QK, t->V, n, h, d, t->nwork);
    else
        ss_abmilx_aplus_forward(t->Ap, t->rmax, t->rsum, t->QK, t->V, n, h, d, t->work, t->slots);

    /* α = softmax over cells of A + A⁺, one row per head; z_j = Σ_i α_ij H_ij (eval: H chunk
     * by chunk again, cheap beside A⁺'s n² work, so that it need not be kept) */
    for (size_t i = 0; i < (size_t)n; i++)
        for (int j = 0; j < h; j++)
            t->alpha[(size_t)j * n + i] = t->A[i * h + j] + t->Ap[i * h + j];
    ss_softmax_forward(t->alpha, t->alpha, h, n);
    for (int r0 = 0; r0 < n; r0 += R) {
        const int rc = n - r0 < R ? n - r0 : R;
        if (!train) embed(m, t->H, x, r0, rc);
        for (int j = 0; j < h; j++)
            ss_sgemm(0, 0, 1, d, rc, 1.0f, t->alpha + (size_t)j * n + r0, rc, t->H + (size_t)j * d,
                     C, r0 ? 1.0f : 0.0f, t->z + (size_t)j * d, d);
    }
    ss_linear_forward(t->z2, t->z, PRM(P_PW), PRM(P_PB), 1, C, C);
    ss_linear_forward(t->logits, t->z2, PRM(P_CW), PRM(P_CB), 1, C, SS_MIL_CLASSES);

    memcpy(logits, t->logits, sizeof t->logits);
    if (attention)
        for (size_t i = 0; i < (size_t)n; i++) {
            double s = 0.0;
            for (int j = 0; j < h; j++)
                s += t->alpha[(size_t)j * n + i];
            attention[i] = (float)(s / h);
        }
    return 0;
}

static int backward(ss_mil_t *m, int y, double *loss)
{
    abx_t *t = m->impl;
    if (!t || !t->n || !t->train)
        return ss_error(DOM, "abmilx: backward needs a training forward first");
    const dims_t dm = dims_of(&m->cfg);
    const int n = t->n, C = dm.C, h = dm.h, d = dm.d, Dp = dm.Dp, rows = n * h;
    const size_t nh = (size_t)n * h;

    /* cross-entropy on the two logits */
    float dlog[SS_MIL_CLASSES];
    *loss = ss_mil_cross_entropy(dlog, t->logits, y, 1.0f);
    ss_linear_backward(t->dz2, GRD(P_CW), GRD(P_CB), dlog, t->z2, PRM(P_CW), 1, C, SS_MIL_CLASSES);
    ss_linear_backward(t->dz, GRD(P_PW), GRD(P_PB), t->dz2, t->z, PRM(P_PW), 1, C, C);

    /* pooling: dα_ij = dz_j · H_ij and dH_ij = α_ij dz_j (dH starts here) */
    for (int j = 0; j < h; j++) {
        ss_sgemm(0, 1, 1, n, d, 1.0f, t->dz + (size_t)j * d, d, t->H + (size_t)j * d, C, 0.0f,
                 t->dS + (size_t)j * n, n);
        ss_sgemm(1, 0, n, d, 1, 1.0f, t->alpha + (size_t)j * n, n, t->dz + (size_t)j * d, d, 0.0f,
                 t->dH + (size_t)j * d, C);
    }
    ss_softmax_backward(t->dS, t->dS, t->alpha, h, n);
    for (size_t i = 0; i < (size_t)n; i++)
        for (int j = 0; j < h; j++)
            t->dAp[i * h + j] = t->dS[(size_t)j * n + i];

    /* A⁺ = softmax(Q K^T / sqrt d) V with V = w_v A; then A's gradient gathers the shortcut,
     * the path through V, and w_v's */
    if (use_naive)
        ss_abmilx_aplus_backward_naive(t->dQK, t->dV, t->dAp, t->QK, t->V, n, h, d, t->nwork);
    else
        ss_abmilx_aplus_backward(t->dQK, t->dV, t->dAp, t->QK, t->V, t->Ap, t->rmax, t->rsum, n, h,
                                 d, t->work, t->slots);
    const float wv = PRM(P_V)[0];
    double dwv = 0.0;
    for (size_t i = 0; i < nh; i++) {
        dwv += (double)t->dV[i] * t->A[i];
        t->dAp[i] += wv * t->dV[i]; /* now dA */
    }
    GRD(P_V)[0] += (float)dwv;

    /* attention MLP: A = G w_2 + b_2, G = GELU(U), U = H_h W_1^T + b_1 */
    ss_linear_backward(NULL, GRD(P_W2), GRD(P_B2), t->dAp, t->G, PRM(P_W2), rows, Dp, 1);
    const float *w2 = PRM(P_W2);
    for (size_t r = 0; r < nh; r++)
        for (int k = 0; k < Dp; k++)
            t->G[r * Dp + k] = t->dAp[r] * w2[k]; /* dG */
    ss_gelu_backward(t->G, t->G, t->U, nh * Dp);
    ss_linear_backward(t->T, GRD(P_W1), GRD(P_B1), t->G, t->H, PRM(P_W1), rows, d, Dp);
    ss_add_inplace(t->dH, t->T, (size_t)n * C);

    /* LN + W_qk */
    ss_linear_backward(t->T, GRD(P_QK), NULL, t->dQK, t->Z, PRM(P_QK), rows, d, 2 * d);
    ss_layernorm_backward(t->T, GRD(P_LNW), GRD(P_LNB), t->T, t->H, t->lnm, t->lnr, PRM(P_LNW),
                          rows, d);
    ss_add_inplace(t->dH, t->T, (size_t)n * C);

    /* embedding */
    ss_relu_backward(t->dH, t->dH, t->H, (size_t)n * C);
    ss_linear_backward(NULL, GRD(P_FW), GRD(P_FB), t->dH, t->x, PRM(P_FW), n, dm.D, C);
    t->train = 0; /* the saved activations are spent (overwritten in place) */
    return 0;
}

static void release(ss_mil_t *m)
{
    abx_t *t = m->impl;
    if (t) free(t->buf);
    free(t);
    m->impl = NULL;
}

const ss_mil_ops_t ss_mil_abmilx_ops = {"abmilx", layout, init, forward, backward, release};
