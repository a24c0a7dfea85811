/* PAMIL as SLAM-AGS's PAMIL.py uses it (specs/methods.md §3.1, §3.3; mil_pamil.h lists the
 * model, the loss and the two reference bugs fixed here).
 *
 * Memory: parameters and gradients are m->params / m->grads (mil.c). m->impl holds
 *  - fixed buffers (one allocation each of floats, ints and doubles, sized by the
 *    configuration): the prototype side (K rows), the bag-level head, and scratch for CHUNK
 *    rows of the bag;
 *  - the bag side of a TRAINING forward (one buffer grown to the largest bag): a copy of x
 *    (backward needs it for fc's weight gradient and the caller may reuse its buffer), h̃,
 *    the gate, S, the attention and their gradients. An EVAL forward streams the bag through
 *    the chunk scratch with an online softmax, so its memory does not depend on n.
 * The backward runs over the bag in chunks too (its n x hidden gradient lives in chunk
 * scratch), so a training step needs about (dim + hidden + attn + 2K + 7) floats a cell.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mil_internal.h"
#include "slidestream/error.h"
#include "slidestream/mil_pamil.h"

#define DOM "mil"
#define NC SS_MIL_CLASSES
#define CHUNK 1024     /* bag rows per block of the eval forward and the backward */
#define NORM_EPS 1e-12 /* F.normalize's eps */
#define ER_EPS 1e-8    /* ERLoss: log(softmax + 1e-8) */
#define MAX_INST (NC * 2 * SS_PAMIL_K_SAMPLE)

/* state_dict order (SLAM-AGS PAMIL.py): proto, fc, attention_net.{a, b, c}, classifiers (per
 * class: bias, weight_g, weight_v — torch.nn.utils.weight_norm's order), then
 * proto_pred_classifier (proto_pred) and instance_classifiers (inst_pred). */
enum { T_PROTO, T_FC_W, T_FC_B, T_A_W, T_A_B, T_B_W, T_B_B, T_C_W, T_C_B, T_CLS };
#define T_CLS_BIAS(c) (T_CLS + 3 * (c))
#define T_CLS_G(c) (T_CLS + 3 * (c) + 1)
#define T_CLS_V(c) (T_CLS + 3 * (c) + 2)
#define T_PP_W (T_CLS + 3 * NC)
#define T_PP_B (T_PP_W + 1)
static int t_inst_w(const ss_mil_config_t *c, int cls)
{
    return T_CLS + 3 * NC + (c->proto_pred ? 2 : 0) + 2 * cls;
}

typedef struct {
    int D, H, A, K;
    /* ---- fixed buffers (sized by the configuration) ---- */
    float *fixed;
    float *pn;      /* (K, H) p̃ = normalise(relu(P W_fc^T + b_fc)) */
    float *pnorm;   /* (K) row norms before normalising */
    float *pa;      /* (K, A) tanh(p̃ W_a^T + b_a) */
    float *dpn;     /* (K, H) */
    float *dpa;     /* (K, A) */
    float *dP;      /* (K, D) */
    float *M;       /* (NC, H) Σ_n α_c,n h̃_n */
    float *Mn;      /* (NC, H) M normalised */
    float *dM;      /* (NC, H) */
    float *mP;      /* (H) prototype-branch bag vector Σ_k π_k p̃_k */
    float *dmP;     /* (H) */
    float *s;       /* (K) prototype scores max_n S[n, k] */
    float *pi;      /* (K) softmax of the scaled scores */
    float *ch_h;    /* (CHUNK, H) h̃ of a block (eval) / its gradient (backward) */
    float *ch_b;    /* (CHUNK, A) gate of a block (eval) / its gradient (backward) */
    float *ch_s;    /* (CHUNK, K) */
    float *ch_a;    /* (CHUNK, NC) */
    float *ch_n;    /* (CHUNK) */
    float *inst_dh; /* (MAX_INST, H) instance-loss gradient rows of h̃ */
    int *s_arg;     /* (K) argmax_n S[n, k] */
    int *col_arg;   /* (K) argmax_n Q[n, k] */
    double *dk;     /* (K) scratch */
    double *acc;    /* (NC, H) eval: running Σ exp(A_raw - max) h̃ */
    int inst_row[MAX_INST], inst_count;
    double Mnorm[NC];
    double sdiv;  /* max_k |s_k| (1 when all zero) */
    int sdiv_arg; /* its k */
    float zb[NC]; /* bag-branch logits */
    float zp[NC]; /* prototype-branch logits */
    float z[NC];  /* the logits (fused with proto_pred) */
    /* ---- bag side of the last training forward (grown) ---- */
    float *rows;
    size_t rows_cap; /* floats */
    int n, ready;
    float *x;      /* (n, D) the bag */
    float *hn;     /* (n, H) h̃ */
    float *hnorm;  /* (n) */
    float *gb;     /* (n, A) sigmoid(h̃ W_b^T + b_b) */
    float *S;      /* (n, K) */
    float *dS;     /* (n, K) */
    float *araw;   /* (n, NC) A_raw^T */
    float *alpha;  /* (NC, n) */
    float *dalpha; /* (NC, n) */
} pamil_t;

/* ---- layout and init ------------------------------------------------------------------------ */

static int pamil_layout(const ss_mil_config_t *cfg, ss_mil_tensor_spec_t *specs)
{
    if (cfg->attn < 1)
        return ss_error(DOM, "pamil: attention width %d (attn must be positive)", cfg->attn);
    int count = T_CLS + 3 * NC + (cfg->proto_pred ? 2 : 0) + (cfg->inst_pred ? 2 * NC : 0);
    if (!specs) return count;
    int D = cfg->dim, H = cfg->hidden, A = cfg->attn, K = cfg->protos;
    char name[64];
    ss_mil_spec(&specs[T_PROTO], "proto", 2, K, D);
    ss_mil_spec(&specs[T_FC_W], "fc.0.weight", 2, H, D);
    ss_mil_spec(&specs[T_FC_B], "fc.0.bias", 1, H, 0);
    ss_mil_spec(&specs[T_A_W], "attention_net.attention_a.0.weight", 2, A, H);
    ss_mil_spec(&specs[T_A_B], "attention_net.attention_a.0.bias", 1, A, 0);
    ss_mil_spec(&specs[T_B_W], "attention_net.attention_b.0.weight", 2, A, H);
    ss_mil_spec(&specs[T_B_B], "attention_net.attention_b.0.bias", 1, A, 0);
    ss_mil_spec(&specs[T_C_W], "attention_net.attention_c.weight", 2, NC, K);
    ss_mil_spec(&specs[T_C_B], "attention_net.attention_c.bias", 1, NC, 0);
    for (int c = 0; c < NC; c++) {
        snprintf(name, sizeof name, "classifiers.%d.bias", c);
        ss_mil_spec(&specs[T_CLS_BIAS(c)], name, 1, 1, 0);
        snprintf(name, sizeof name, "classifiers.%d.weight_g", c);
        ss_mil_spec(&specs[T_CLS_G(c)], name, 2, 1, 1);
        snprintf(name, sizeof name, "classifiers.%d.weight_v", c);
        ss_mil_spec(&specs[T_CLS_V(c)], name, 2, 1, H);
    }
    if (cfg->proto_pred) {
        ss_mil_spec(&specs[T_PP_W], "proto_pred_classifier.0.weight", 2, NC, H);
        ss_mil_spec(&specs[T_PP_B], "proto_pred_classifier.0.bias", 1, NC, 0);
    }
    if (cfg->inst_pred)
        for (int c = 0; c < NC; c++) {
            snprintf(name, sizeof name, "instance_classifiers.%d.weight", c);
            ss_mil_spec(&specs[t_inst_w(cfg, c)], name, 2, 2, H);
            snprintf(name, sizeof name, "instance_classifiers.%d.bias", c);
            ss_mil_spec(&specs[t_inst_w(cfg, c) + 1], name, 1, 2, 0);
        }
    return count;
}

#define P(i) ((float *)m->table[i].data)
#define G(i) ss_mil_grad(m, i)

/* nn.Linear's default: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
static void linear_init(ss_rng_t *rng, float *w, float *b, int nout, int nin)
{
    float bound = 1.0f / sqrtf((float)nin);
    ss_rng_fill_uniform(rng, w, (size_t)nout * nin, -bound, bound);
    ss_rng_fill_uniform(rng, b, (size_t)nout, -bound, bound);
}

static void pamil_init(ss_mil_t *m, ss_rng_t *rng)
{
    const ss_mil_config_t *c = &m->cfg;
    int D = c->dim, H = c->hidden, A = c->attn, K = c->protos;
    ss_rng_fill_normal(rng, P(T_PROTO), (size_t)K * D, 0.0f, 1.0f);
    linear_init(rng, P(T_FC_W), P(T_FC_B), H, D);
    linear_init(rng, P(T_A_W), P(T_A_B), A, H);
    linear_init(rng, P(T_B_W), P(T_B_B), A, H);
    linear_init(rng, P(T_C_W), P(T_C_B), NC, K);
    for (int k = 0; k < NC; k++) { /* weight_norm: v = the Linear's weight, g = ‖v‖ */
        float *v = P(T_CLS_V(k));
        linear_init(rng, v, P(T_CLS_BIAS(k)), 1, H);
        double ss = 0;
        for (int j = 0; j < H; j++)
            ss += (double)v[j] * v[j];
        P(T_CLS_G(k))[0] = (float)sqrt(ss);
    }
    if (c->proto_pred) linear_init(rng, P(T_PP_W), P(T_PP_B), NC, H);
    if (c->inst_pred)
        for (int k = 0; k < NC; k++)
            linear_init(rng, P(t_inst_w(c, k)), P(t_inst_w(c, k) + 1), 2, H);
}

/* ---- buffers --------------------------------------------------------------------------------- */

static pamil_t *impl_of(ss_mil_t *m)
{
    if (m->impl) return m->impl;
    const ss_mil_config_t *c = &m->cfg;
    size_t D = c->dim, H = c->hidden, A = c->attn, K = c->protos;
    size_t fl = K * H + K + K * A + K * H + K * A + K * D + 3 * NC * H + 2 * H + 2 * K +
                CHUNK * (H + A + K + NC + 1) + MAX_INST * H;
    pamil_t *p = calloc(1, sizeof *p);
    float *f = p ? malloc(fl * sizeof(float)) : NULL;
    int *ia = f ? malloc(2 * K * sizeof(int)) : NULL;
    double *da = ia ? malloc((K + NC * H) * sizeof(double)) : NULL;
    if (!da) {
        free(ia), free(f), free(p);
        ss_error(DOM, "pamil: out of memory for %zu floats of buffers", fl);
        return NULL;
    }
    p->D = (int)D, p->H = (int)H, p->A = (int)A, p->K = (int)K;
    p->fixed = f;
    p->s_arg = ia, p->col_arg = ia + K;
    p->dk = da, p->acc = da + K;
    p->pn = f, f += K * H;
    p->pnorm = f, f += K;
    p->pa = f, f += K * A;
    p->dpn = f, f += K * H;
    p->dpa = f, f += K * A;
    p->dP = f, f += K * D;
    p->M = f, f += NC * H;
    p->Mn = f, f += NC * H;
    p->dM = f, f += NC * H;
    p->mP = f, f += H;
    p->dmP = f, f += H;
    p->s = f, f += K;
    p->pi = f, f += K;
    p->ch_h = f, f += CHUNK * H;
    p->ch_b = f, f += CHUNK * A;
    p->ch_s = f, f += CHUNK * K;
    p->ch_a = f, f += CHUNK * NC;
    p->ch_n = f, f += CHUNK;
    p->inst_dh = f, f += MAX_INST * H;
    m->impl = p;
    return p;
}

/* The training forward's bag side for n rows, growing the one buffer when n is a new maximum. */
static int bag_buffers(pamil_t *p, int n)
{
    size_t per = (size_t)p->D + p->H + 1 + p->A + 2 * (size_t)p->K + 3 * NC;
    size_t need = per * (size_t)n;
    if (need > p->rows_cap) {
        free(p->rows);
        p->rows_cap = 0;
        p->rows = malloc(need * sizeof(float));
        if (!p->rows)
            return ss_error(DOM, "pamil: out of memory for a training bag of %d cells (%zu MB)", n,
                            need * sizeof(float) >> 20);
        p->rows_cap = need;
    }
    size_t N = (size_t)n;
    float *f = p->rows;
    p->x = f, f += N * p->D;
    p->hn = f, f += N * p->H;
    p->hnorm = f, f += N;
    p->gb = f, f += N * p->A;
    p->S = f, f += N * p->K;
    p->dS = f, f += N * p->K;
    p->araw = f, f += N * NC;
    p->alpha = f, f += N * NC;
    p->dalpha = f, f += N * NC;
    return 0;
}

static void pamil_release(ss_mil_t *m)
{
    pamil_t *p = m->impl;
    if (!p) return;
    free(p->fixed), free(p->s_arg), free(p->dk), free(p->rows);
    free(p);
    m->impl = NULL;
}

/* ---- forward pieces -------------------------------------------------------------------------- */

/* out[rows, H] = F.normalize(relu(in W_fc^T + b_fc)), norms[rows] the norms before scaling. */
static void fc_forward(ss_mil_t *m, float *out, float *norms, const float *in, int rows)
{
    int D = m->cfg.dim, H = m->cfg.hidden;
    ss_linear_forward(out, in, P(T_FC_W), P(T_FC_B), rows, D, H);
#pragma omp parallel for schedule(static) if ((size_t)rows * H >= ((size_t)1 << 16))
    for (int r = 0; r < rows; r++) {
        float *h = out + (size_t)r * H;
        double ss = 0;
        for (int j = 0; j < H; j++) {
            if (h[j] < 0.0f) h[j] = 0.0f;
            ss += (double)h[j] * h[j];
        }
        double nrm = sqrt(ss);
        norms[r] = (float)nrm;
        float inv = (float)(1.0 / (nrm > NORM_EPS ? nrm : NORM_EPS));
        for (int j = 0; j < H; j++)
            h[j] *= inv;
    }
}

/* Backward of fc_forward in place: dh[rows, H] (gradient of the output) becomes the
 * gradient of the Linear's output; h the forward output, norms its norms. */
static void fc_norm_relu_backward(float *dh, const float *h, const float *norms, int rows, int H)
{
#pragma omp parallel for schedule(static) if ((size_t)rows * H >= ((size_t)1 << 16))
    for (int r = 0; r < rows; r++) {
        float *g = dh + (size_t)r * H;
        const float *y = h + (size_t)r * H;
        double nrm = norms[r];
        if (nrm > NORM_EPS) { /* y = x / |x|: dx = (dy - y (y . dy)) / |x| */
            double dot = 0;
            for (int j = 0; j < H; j++)
                dot += (double)y[j] * g[j];
            for (int j = 0; j < H; j++)
                g[j] = y[j] > 0.0f ? (float)((g[j] - y[j] * dot) / nrm) : 0.0f;
        } else { /* y = x / eps */
            for (int j = 0; j < H; j++)
                g[j] = y[j] > 0.0f ? (float)(g[j] / NORM_EPS) : 0.0f;
        }
    }
}

/* The prototype side: p̃ (K, H) and its gate a = tanh(p̃ W_a^T + b_a) (K, A). */
static void proto_forward(ss_mil_t *m, pamil_t *p)
{
    fc_forward(m, p->pn, p->pnorm, P(T_PROTO), p->K);
    ss_linear_forward(p->pa, p->pn, P(T_A_W), P(T_A_B), p->K, p->H, p->A);
    ss_tanh_forward(p->pa, p->pa, (size_t)p->K * p->A);
}

/* A block of `rows` cells of x (rows, D): h̃ (rows, H) with norms, the gate gb (rows, A),
 * S (rows, K) = gb · a^T and A_raw^T (rows, NC) = S W_c^T + b_c. */
static void rows_forward(ss_mil_t *m, pamil_t *p, const float *x, int rows, float *hn, float *hnorm,
                         float *gb, float *S, float *araw)
{
    int H = p->H, A = p->A, K = p->K;
    fc_forward(m, hn, hnorm, x, rows);
    ss_linear_forward(gb, hn, P(T_B_W), P(T_B_B), rows, H, A);
    ss_sigmoid_forward(gb, gb, (size_t)rows * A);
    ss_sgemm(0, 1, rows, K, A, 1.0f, gb, A, p->pa, A, 0.0f, S, K);
    ss_linear_forward(araw, S, P(T_C_W), P(T_C_B), rows, K, NC);
}

/* The bag-level head from M (NC, H) and the prototype scores s (K): M normalised, the
 * weight-normed classifiers, the prototype branch and the fused logits. */
static void head_forward(ss_mil_t *m, pamil_t *p)
{
    int H = p->H, K = p->K;
    for (int c = 0; c < NC; c++) {
        const float *Mc = p->M + (size_t)c * H, *v = P(T_CLS_V(c));
        float *Mn = p->Mn + (size_t)c * H;
        double ss = 0, vv = 0, dot = 0;
        for (int j = 0; j < H; j++)
            ss += (double)Mc[j] * Mc[j];
        p->Mnorm[c] = sqrt(ss);
        float inv = (float)(1.0 / (p->Mnorm[c] > NORM_EPS ? p->Mnorm[c] : NORM_EPS));
        for (int j = 0; j < H; j++) {
            Mn[j] = Mc[j] * inv;
            vv += (double)v[j] * v[j];
            dot += (double)v[j] * Mn[j];
        }
        p->zb[c] = (float)(P(T_CLS_G(c))[0] * dot / sqrt(vv) + P(T_CLS_BIAS(c))[0]);
    }
    if (!m->cfg.proto_pred) {
        memcpy(p->z, p->zb, sizeof p->z);
        return;
    }
    /* Fix (b): scale by max_k |s_k|, which keeps the ranking whatever the signs. */
    double d = 0;
    p->sdiv_arg = 0;
    for (int k = 0; k < K; k++)
        if (fabs(p->s[k]) > d) d = fabs(p->s[k]), p->sdiv_arg = k;
    p->sdiv = d > 0 ? d : 1.0;
    double mx = -INFINITY, sum = 0;
    for (int k = 0; k < K; k++)
        if (p->s[k] / p->sdiv > mx) mx = p->s[k] / p->sdiv;
    for (int k = 0; k < K; k++)
        sum += exp(p->s[k] / p->sdiv - mx);
    for (int k = 0; k < K; k++)
        p->pi[k] = (float)(exp(p->s[k] / p->sdiv - mx) / sum);
    /* mP (1, H) = π (1, K) · p̃ (K, H) */
    ss_sgemm(0, 0, 1, H, K, 1.0f, p->pi, K, p->pn, H, 0.0f, p->mP, H);
    ss_linear_forward(p->zp, p->mP, P(T_PP_W), P(T_PP_B), 1, H, NC);
    for (int c = 0; c < NC; c++)
        p->z[c] =
            (float)((1.0 - SS_PAMIL_PROTO_WEIGHT) * p->zb[c] + SS_PAMIL_PROTO_WEIGHT * p->zp[c]);
}

static int forward_train(ss_mil_t *m, pamil_t *p, const float *x, int n, float *logits,
                         float *attention)
{
    int H = p->H, K = p->K;
    if (bag_buffers(p, n)) return -1;
    p->n = n;
    memcpy(p->x, x, (size_t)n * p->D * sizeof(float));
    proto_forward(m, p);
    rows_forward(m, p, p->x, n, p->hn, p->hnorm, p->gb, p->S, p->araw);
    for (int k = 0; k < K; k++) { /* s_k = max_n S[n, k], first maximum */
        float best = p->S[k];
        int arg = 0;
        for (int r = 1; r < n; r++)
            if (p->S[(size_t)r * K + k] > best) best = p->S[(size_t)r * K + k], arg = r;
        p->s[k] = best;
        p->s_arg[k] = arg;
    }
    for (int r = 0; r < n; r++)
        for (int c = 0; c < NC; c++)
            p->alpha[(size_t)c * n + r] = p->araw[(size_t)r * NC + c];
    ss_softmax_forward(p->alpha, p->alpha, NC, n);
    ss_sgemm(0, 0, NC, H, n, 1.0f, p->alpha, n, p->hn, H, 0.0f, p->M, H);
    head_forward(m, p);
    memcpy(logits, p->z, sizeof p->z);
    if (attention) memcpy(attention, p->alpha + n, (size_t)n * sizeof(float));
    p->ready = 1;
    return 0;
}

/* Eval: the bag in blocks of CHUNK cells; per class a running maximum mx, sum l and
 * acc = Σ exp(A_raw - mx) h̃ (rescaled when the maximum grows), so M = acc / l without
 * keeping h̃ of the whole bag. */
static int forward_eval(ss_mil_t *m, pamil_t *p, const float *x, int n, float *logits,
                        float *attention)
{
    int H = p->H, K = p->K, D = p->D;
    double mx[NC], l[NC], *acc = p->acc;
    memset(acc, 0, (size_t)NC * H * sizeof(double));
    for (int c = 0; c < NC; c++)
        mx[c] = -INFINITY, l[c] = 0;
    for (int k = 0; k < K; k++)
        p->s[k] = -INFINITY;
    proto_forward(m, p);
    for (int r0 = 0; r0 < n; r0 += CHUNK) {
        int rows = n - r0 < CHUNK ? n - r0 : CHUNK;
        rows_forward(m, p, x + (size_t)r0 * D, rows, p->ch_h, p->ch_n, p->ch_b, p->ch_s, p->ch_a);
        for (int r = 0; r < rows; r++)
            for (int k = 0; k < K; k++)
                if (p->ch_s[(size_t)r * K + k] > p->s[k]) p->s[k] = p->ch_s[(size_t)r * K + k];
        for (int c = 0; c < NC; c++) {
            double cm = -INFINITY;
            for (int r = 0; r < rows; r++)
                if (p->ch_a[(size_t)r * NC + c] > cm) cm = p->ch_a[(size_t)r * NC + c];
            if (cm > mx[c]) {
                double sc = exp(mx[c] - cm); /* 0 on the first block */
                l[c] *= sc;
                for (int j = 0; j < H; j++)
                    acc[(size_t)c * H + j] *= sc;
                mx[c] = cm;
            }
            double *ac = acc + (size_t)c * H;
            for (int r = 0; r < rows; r++) {
                double e = exp(p->ch_a[(size_t)r * NC + c] - mx[c]);
                const float *h = p->ch_h + (size_t)r * H;
                l[c] += e;
                for (int j = 0; j < H; j++)
                    ac[j] += e * h[j];
            }
        }
        if (attention)
            for (int r = 0; r < rows; r++)
                attention[r0 + r] = p->ch_a[(size_t)r * NC + 1];
    }
    for (int c = 0; c < NC; c++)
        for (int j = 0; j < H; j++)
            p->M[(size_t)c * H + j] = (float)(acc[(size_t)c * H + j] / l[c]);
    head_forward(m, p);
    memcpy(logits, p->z, sizeof p->z);
    if (attention) {
        double sum = 0;
        for (int r = 0; r < n; r++)
            sum += exp(attention[r] - mx[1]);
        for (int r = 0; r < n; r++)
            attention[r] = (float)(exp(attention[r] - mx[1]) / sum);
    }
    return 0;
}

static int pamil_forward(ss_mil_t *m, const float *x, int n, int train, float *logits,
                         float *attention)
{
    pamil_t *p = impl_of(m);
    if (!p) return -1;
    p->ready = 0;
    return train ? forward_train(m, p, x, n, logits, attention)
                 : forward_eval(m, p, x, n, logits, attention);
}

/* ---- backward -------------------------------------------------------------------------------- */

/* The k largest (sign +1) or smallest (sign -1) entries of v[n], ties to the lower index. */
static void select_k(int *idx, const float *v, int n, int k, float sign)
{
    float best[SS_PAMIL_K_SAMPLE];
    int count = 0;
    for (int i = 0; i < n; i++) {
        float val = sign * v[i];
        if (count == k && !(val > best[k - 1])) continue;
        int j = count < k ? count++ : k - 1;
        while (j > 0 && val > best[j - 1])
            best[j] = best[j - 1], idx[j] = idx[j - 1], j--;
        best[j] = val, idx[j] = i;
    }
}

/* Instance loss of class c on `count` cells rows[] with targets t[]: its value (mean CE), the
 * classifier's gradients, and the gradient rows of h̃ queued in p->inst_dh (scaled by w). */
static double inst_term(ss_mil_t *m, pamil_t *p, int c, const int *rows, const int *t, int count,
                        double w)
{
    int H = p->H, ti = t_inst_w(&m->cfg, c);
    const float *W = P(ti), *b = P(ti + 1);
    float *dW = G(ti), *db = G(ti + 1);
    double loss = 0;
    for (int i = 0; i < count; i++) {
        const float *h = p->hn + (size_t)rows[i] * H;
        double z[2];
        for (int o = 0; o < 2; o++) {
            double s = b[o];
            for (int j = 0; j < H; j++)
                s += (double)W[(size_t)o * H + j] * h[j];
            z[o] = s;
        }
        double mz = z[0] > z[1] ? z[0] : z[1];
        double lse = mz + log(exp(z[0] - mz) + exp(z[1] - mz));
        loss += lse - z[t[i]];
        float *dh = p->inst_dh + (size_t)p->inst_count * H;
        p->inst_row[p->inst_count++] = rows[i];
        double g[2];
        for (int o = 0; o < 2; o++)
            g[o] = w / count * (exp(z[o] - lse) - (o == t[i]));
        for (int o = 0; o < 2; o++)
            db[o] += (float)g[o];
        for (int j = 0; j < H; j++) {
            dW[j] += (float)(g[0] * h[j]);
            dW[H + j] += (float)(g[1] * h[j]);
            dh[j] = (float)(g[0] * W[j] + g[1] * W[H + j]);
        }
    }
    return loss / count;
}

/* Prototype-branch backward from dzp: its classifier, p̃ (into p->dpn) and S (into p->dS). */
static void proto_branch_backward(ss_mil_t *m, pamil_t *p, const float *dzp)
{
    int H = p->H, K = p->K;
    ss_linear_backward(p->dmP, G(T_PP_W), G(T_PP_B), dzp, p->mP, P(T_PP_W), 1, H, NC);
    double *du = p->dk, dot = 0;
    for (int k = 0; k < K; k++) { /* π = softmax(u): du = π (dπ - π·dπ), dπ_k = dmP · p̃_k */
        double g = 0;
        for (int j = 0; j < H; j++)
            g += (double)p->dmP[j] * p->pn[(size_t)k * H + j];
        du[k] = g;
        dot += g * p->pi[k];
        for (int j = 0; j < H; j++)
            p->dpn[(size_t)k * H + j] += p->pi[k] * p->dmP[j];
    }
    double dd = 0; /* u = s / d, d = |s_j*| */
    for (int k = 0; k < K; k++) {
        du[k] = p->pi[k] * (du[k] - dot);
        dd -= du[k] * p->s[k] / (p->sdiv * p->sdiv);
    }
    for (int k = 0; k < K; k++) {
        double ds = du[k] / p->sdiv;
        if (k == p->sdiv_arg && p->sdiv_arg >= 0 && p->s[k] != 0.0f)
            ds += dd * (p->s[k] > 0 ? 1.0 : -1.0);
        p->dS[(size_t)p->s_arg[k] * K + k] += (float)ds;
    }
}

/* Clustering terms on Q = softmax_K(S) (rows): c_inst = mean_n max_k Q, c_proto = mean_k
 * max_n Q; their loss λ (1 - c) and its gradient into dS. Q is recomputed row by row (K
 * values), once for the column maxima and once for the gradient. Maxima: the first one. */
static double clustering_backward(pamil_t *p, int n)
{
    int K = p->K;
    float *q = p->ch_s, *colmax = p->ch_s + K; /* 2K floats of the chunk scratch */
    double *dq = p->dk, c_inst = 0, c_proto = 0;
    for (int k = 0; k < K; k++)
        colmax[k] = -1.0f, p->col_arg[k] = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int r = 0; r < n; r++) {
            const float *S = p->S + (size_t)r * K;
            float mx = S[0];
            for (int k = 1; k < K; k++)
                mx = S[k] > mx ? S[k] : mx;
            double sum = 0;
            for (int k = 0; k < K; k++)
                sum += exp((double)S[k] - mx);
            int arg = 0;
            for (int k = 0; k < K; k++) {
                q[k] = (float)(exp((double)S[k] - mx) / sum);
                if (q[k] > q[arg]) arg = k;
            }
            if (pass == 0) {
                c_inst += q[arg];
                for (int k = 0; k < K; k++)
                    if (q[k] > colmax[k]) colmax[k] = q[k], p->col_arg[k] = r;
                continue;
            }
            /* dQ: -λ_clst / n at the row's maximum, -λ_pc / K where the row holds a column's;
             * through the softmax: dS = Q (dQ - Q . dQ) */
            double dot = 0;
            for (int k = 0; k < K; k++) {
                dq[k] = (k == arg ? -SS_PAMIL_LAMBDA_CLST / n : 0.0) +
                        (p->col_arg[k] == r ? -SS_PAMIL_LAMBDA_PC / K : 0.0);
                dot += dq[k] * q[k];
            }
            float *dS = p->dS + (size_t)r * K;
            for (int k = 0; k < K; k++)
                dS[k] += (float)(q[k] * (dq[k] - dot));
        }
    for (int k = 0; k < K; k++)
        c_proto += colmax[k];
    return SS_PAMIL_LAMBDA_CLST * (1.0 - c_inst / n) + SS_PAMIL_LAMBDA_PC * (1.0 - c_proto / K);
}

static int pamil_backward(ss_mil_t *m, int y, double *loss)
{
    pamil_t *p = m->impl;
    if (!p || !p->ready)
        return ss_error(DOM, "pamil: backward without a training forward before it");
    const ss_mil_config_t *cfg = &m->cfg;
    int n = p->n, D = p->D, H = p->H, A = p->A, K = p->K;
    /* CE on the (fused) logits */
    double mz = p->z[0] > p->z[1] ? p->z[0] : p->z[1];
    double lse = mz + log(exp(p->z[0] - mz) + exp(p->z[1] - mz));
    double total = lse - p->z[y];
    float dz[NC], dzb[NC], dzp[NC];
    for (int c = 0; c < NC; c++)
        dz[c] = (float)(exp(p->z[c] - lse) - (c == y));
    memset(p->dpn, 0, (size_t)K * H * sizeof(float));
    memset(p->dS, 0, (size_t)n * K * sizeof(float));
    if (cfg->proto_pred) {
        for (int c = 0; c < NC; c++) {
            dzb[c] = (float)((1.0 - SS_PAMIL_PROTO_WEIGHT) * dz[c]);
            dzp[c] = (float)(SS_PAMIL_PROTO_WEIGHT * dz[c]);
        }
        /* ER = KL(q ‖ p), q = softmax(zp) detached, p = softmax(zb), log(p + 1e-8) */
        double pb[NC], q[NC], mb = fmax(p->zb[0], p->zb[1]), mq = fmax(p->zp[0], p->zp[1]);
        double sb = 0, sq = 0, er = 0, dot = 0, dp[NC];
        for (int c = 0; c < NC; c++)
            sb += exp(p->zb[c] - mb), sq += exp(p->zp[c] - mq);
        for (int c = 0; c < NC; c++) {
            pb[c] = exp(p->zb[c] - mb) / sb;
            q[c] = exp(p->zp[c] - mq) / sq;
            er += q[c] > 0 ? q[c] * (log(q[c]) - log(pb[c] + ER_EPS)) : 0.0;
            dp[c] = -SS_PAMIL_LAMBDA_ER * q[c] / (pb[c] + ER_EPS);
            dot += dp[c] * pb[c];
        }
        for (int c = 0; c < NC; c++)
            dzb[c] += (float)(pb[c] * (dp[c] - dot));
        total += SS_PAMIL_LAMBDA_ER * er;
        proto_branch_backward(m, p, dzp);
    } else {
        memcpy(dzb, dz, sizeof dzb);
    }
    /* weight-normed heads: zb_c = g (v . Mn_c) / |v| + bias */
    for (int c = 0; c < NC; c++) {
        const float *v = P(T_CLS_V(c)), *Mn = p->Mn + (size_t)c * H;
        float *dv = G(T_CLS_V(c)), *dM = p->dM + (size_t)c * H;
        double g = P(T_CLS_G(c))[0], vv = 0, dot = 0;
        for (int j = 0; j < H; j++)
            vv += (double)v[j] * v[j], dot += (double)v[j] * Mn[j];
        double vn = sqrt(vv), dl = dzb[c];
        G(T_CLS_BIAS(c))[0] += (float)dl;
        G(T_CLS_G(c))[0] += (float)(dl * dot / vn);
        for (int j = 0; j < H; j++) {
            dv[j] += (float)(dl * g / vn * (Mn[j] - dot * v[j] / vv));
            dM[j] = (float)(dl * g / vn * v[j]);
        }
        /* Mn = M / |M| */
        double nrm = p->Mnorm[c], dd = 0;
        for (int j = 0; j < H; j++)
            dd += (double)Mn[j] * dM[j];
        for (int j = 0; j < H; j++)
            dM[j] =
                nrm > NORM_EPS ? (float)((dM[j] - Mn[j] * dd) / nrm) : (float)(dM[j] / NORM_EPS);
    }
    /* M = α h̃: dα (NC, n) = dM h̃^T; α = softmax: dA_raw in place */
    ss_sgemm(0, 1, NC, n, H, 1.0f, p->dM, H, p->hn, H, 0.0f, p->dalpha, n);
    ss_softmax_backward(p->dalpha, p->dalpha, p->alpha, NC, n);
    /* A_raw^T = S W_c^T + b_c: dW_c += dA_raw S, dS += dA_raw^T W_c */
    float *dWc = G(T_C_W), *dbc = G(T_C_B);
    for (int c = 0; c < NC; c++) {
        double s = 0;
        for (int r = 0; r < n; r++)
            s += p->dalpha[(size_t)c * n + r];
        dbc[c] += (float)s;
    }
    ss_sgemm(0, 0, NC, K, n, 1.0f, p->dalpha, n, p->S, K, 1.0f, dWc, K);
    ss_sgemm(1, 0, n, K, NC, 1.0f, p->dalpha, n, P(T_C_W), K, 1.0f, p->dS, K);
    total += clustering_backward(p, n);
    /* instance loss (fix (a): class c's cells are ranked by α_c) */
    p->inst_count = 0;
    if (cfg->inst_pred) {
        int k = n < SS_PAMIL_K_SAMPLE ? n : SS_PAMIL_K_SAMPLE;
        int rows[2 * SS_PAMIL_K_SAMPLE], t[2 * SS_PAMIL_K_SAMPLE];
        double linst = 0, w = SS_PAMIL_LAMBDA_INST / NC;
        for (int c = 0; c < NC; c++) {
            const float *a = p->alpha + (size_t)c * n;
            select_k(rows, a, n, k, 1.0f);
            for (int i = 0; i < k; i++)
                t[i] = c == y;
            int count = k;
            if (c == y) {
                select_k(rows + k, a, n, k, -1.0f);
                for (int i = 0; i < k; i++)
                    t[k + i] = 0;
                count = 2 * k;
            }
            linst += inst_term(m, p, c, rows, t, count, w);
        }
        total += SS_PAMIL_LAMBDA_INST * linst / NC;
    }
    /* The bag side in blocks: dgate = dS a, da += dS^T gate, through the sigmoid, W_b, the
     * pooling (α^T dM), the instance rows, the normalisation, ReLU and fc. */
    memset(p->dpa, 0, (size_t)K * A * sizeof(float));
    for (int r0 = 0; r0 < n; r0 += CHUNK) {
        int rows = n - r0 < CHUNK ? n - r0 : CHUNK;
        const float *dS = p->dS + (size_t)r0 * K, *gb = p->gb + (size_t)r0 * A;
        const float *hn = p->hn + (size_t)r0 * H;
        float *db = p->ch_b, *dh = p->ch_h;
        ss_sgemm(0, 0, rows, A, K, 1.0f, dS, K, p->pa, A, 0.0f, db, A);
        ss_sgemm(1, 0, K, A, rows, 1.0f, dS, K, gb, A, 1.0f, p->dpa, A);
        ss_sigmoid_backward(db, db, gb, (size_t)rows * A);
        ss_linear_backward(dh, G(T_B_W), G(T_B_B), db, hn, P(T_B_W), rows, H, A);
        ss_sgemm(1, 0, rows, H, NC, 1.0f, p->alpha + r0, n, p->dM, H, 1.0f, dh, H);
        for (int i = 0; i < p->inst_count; i++)
            if (p->inst_row[i] >= r0 && p->inst_row[i] < r0 + rows)
                ss_add_inplace(dh + (size_t)(p->inst_row[i] - r0) * H, p->inst_dh + (size_t)i * H,
                               (size_t)H);
        fc_norm_relu_backward(dh, hn, p->hnorm + r0, rows, H);
        ss_linear_backward(NULL, G(T_FC_W), G(T_FC_B), dh, p->x + (size_t)r0 * D, P(T_FC_W), rows,
                           D, H);
    }
    /* The prototype side: a = tanh(p̃ W_a^T + b_a), p̃ = fc(P). */
    ss_tanh_backward(p->dpa, p->dpa, p->pa, (size_t)K * A);
    for (int k0 = 0; k0 < K; k0 += CHUNK) { /* dp̃ += da W_a, in blocks of the chunk scratch */
        int rows = K - k0 < CHUNK ? K - k0 : CHUNK;
        ss_linear_backward(p->ch_h, G(T_A_W), G(T_A_B), p->dpa + (size_t)k0 * A,
                           p->pn + (size_t)k0 * H, P(T_A_W), rows, H, A);
        ss_add_inplace(p->dpn + (size_t)k0 * H, p->ch_h, (size_t)rows * H);
    }
    fc_norm_relu_backward(p->dpn, p->pn, p->pnorm, K, H);
    ss_linear_backward(p->dP, G(T_FC_W), G(T_FC_B), p->dpn, P(T_PROTO), P(T_FC_W), K, D, H);
    ss_add_inplace(G(T_PROTO), p->dP, (size_t)K * D);
    *loss = total;
    return 0;
}

const ss_mil_ops_t ss_mil_pamil_ops = {
    .name = "pamil",
    .layout = pamil_layout,
    .init = pamil_init,
    .forward = pamil_forward,
    .backward = pamil_backward,
    .release = pamil_release,
};
