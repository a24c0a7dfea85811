/* DTFD-MIL (Zhang et al. 2022; specs/methods.md §5), distillation AFS, as a MIL architecture
 * (mil.h). Tier 1: h = ReLU(x W1^T) (DimReduction, no bias); the cells are shuffled and split
 * np.array_split-wise into M = min(groups, n) pseudo-bags; per pseudo-bag a gated attention
 * score e, alpha = softmax of e within the pseudo-bag, f = sum alpha h, a Linear(L -> 2)
 * classifier and cross-entropy: loss0 = the mean over pseudo-bags. Tier 2 (the reference's
 * Attention_with_Classifier) takes the M features f, DETACHED (the reference's intent: its
 * tier-2 loss must not update tier 1), through gated attention, pooling and a Linear(L -> 2):
 * loss1. backward returns loss0 + loss1; loss0's gradient reaches tier 1 only and loss1's
 * tier 2 only.
 *
 * Eval: tier-1 scores over the whole bag; the tier-2 input comes from ONE fixed partition, the
 * contiguous np.array_split of the cells in bag order (the reference draws a random one at test
 * time; a fixed one makes predictions reproducible). It streams the bag in blocks of
 * EVAL_BLOCK cells with an online softmax per pseudo-bag, so its memory does not grow with n.
 * The attention reported is the softmax over all cells of the tier-1 scores.
 *
 * Memory: m->impl owns one arena, grown to the largest bag seen, carved per call into the
 * train layout (the bag's copy, h, tanh and sigmoid branches: what backward needs) or the eval
 * layout (one block). A train forward keeps its activations until its backward; backward
 * consumes them (the gate branches are overwritten by their gradients), so it runs once.
 */
#include <float.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mil_internal.h"
#include "slidestream/error.h"
#include "slidestream/mil_dtfd.h"

#define DOM "mil"
#define EVAL_BLOCK 1024 /* cells per block of the streaming eval forward */
#define BWD_BLOCK 4096  /* cells per block of the tier-1 input-side backward */

/* The state_dict, in the order of the reference's saved dict (classifier, dim_reduction,
 * attention, att_classifier). A gated attention's six tensors are consecutive from its base. */
enum {
    P_CLS_W,            /* classifier.fc.weight (2, L) */
    P_CLS_B,            /* classifier.fc.bias (2) */
    P_DR_W,             /* dim_reduction.fc1.weight (L, D) */
    P_AT,               /* attention: V (A, L), (A); U (A, L), (A); w (1, A), (1) */
    P_T2 = P_AT + 6,    /* att_classifier.attention: as P_AT */
    P_T2_CW = P_T2 + 6, /* att_classifier.classifier.fc.weight (2, L) */
    P_T2_CB,            /* att_classifier.classifier.fc.bias (2) */
    P_COUNT
};
enum { G_VW, G_VB, G_UW, G_UB, G_WW, G_WB }; /* offsets within a gated attention */

typedef struct {
    char *arena;
    size_t cap; /* bytes */
    /* the train forward waiting for its backward (train layout) */
    int n, groups, pending;
    float *x;                 /* (n, D) copy of the bag */
    float *h;                 /* (n, L) ReLU(x W1^T) */
    float *av;                /* (n, A) tanh branch; backward: its pre-activation gradient */
    float *au;                /* (n, A) sigmoid branch; likewise */
    float *e;                 /* (n) tier-1 scores */
    float *alpha;             /* (n) softmax within the cell's pseudo-bag */
    float *de;                /* (n) gradient of e */
    int *order;               /* (n) cells in pseudo-bag order */
    int *chunk;               /* (n) pseudo-bag of each cell */
    float *dh;                /* (min(n, BWD_BLOCK), L) */
    double *dw;               /* (A) attention_weights gradient accumulator */
    float *f;                 /* (M, L) pseudo-bag features = the tier-2 input */
    float *df;                /* (M, L) */
    float *lg0;               /* (M, 2) tier-1 logits */
    float *dlg0;              /* (M, 2) */
    float *av2, *au2;         /* (M, A) tier-2 gate branches */
    float *e2, *beta, *dbeta; /* (M) */
    float *z, *dz;            /* (L) tier-2 pooled feature */
    float lg1[2];             /* tier-2 logits */
    /* eval layout extras */
    float *fmax, *fsum; /* (M) online softmax state */
    /* the test hook's next order, and the last losses */
    int *next;
    int next_n;
    int order_n; /* cells of the last train forward whose order is still in the arena */
    double loss0, loss1;
    int have_losses;
} dtfd_t;

/* ---- layout and init ------------------------------------------------------------------------- */

static void gate_specs(ss_mil_tensor_spec_t *s, const char *prefix, int L, int A)
{
    static const char *const names[6] = {"attention_V.0.weight",     "attention_V.0.bias",
                                         "attention_U.0.weight",     "attention_U.0.bias",
                                         "attention_weights.weight", "attention_weights.bias"};
    static const int ndims[6] = {2, 1, 2, 1, 2, 1};
    const int64_t rows[6] = {A, A, A, A, 1, 1}, cols[6] = {L, 0, L, 0, A, 0};
    for (int i = 0; i < 6; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s%s", prefix, names[i]);
        ss_mil_spec(&s[i], name, ndims[i], rows[i], cols[i]);
    }
}

static int dtfd_layout(const ss_mil_config_t *cfg, ss_mil_tensor_spec_t *s)
{
    if (cfg->attn < 1) return ss_error(DOM, "dtfd: attention width %d must be positive", cfg->attn);
    if (!s) return P_COUNT;
    const int L = cfg->hidden, A = cfg->attn;
    ss_mil_spec(&s[P_CLS_W], "classifier.fc.weight", 2, SS_MIL_CLASSES, L);
    ss_mil_spec(&s[P_CLS_B], "classifier.fc.bias", 1, SS_MIL_CLASSES, 0);
    ss_mil_spec(&s[P_DR_W], "dim_reduction.fc1.weight", 2, L, cfg->dim);
    gate_specs(&s[P_AT], "attention.", L, A);
    gate_specs(&s[P_T2], "att_classifier.attention.", L, A);
    ss_mil_spec(&s[P_T2_CW], "att_classifier.classifier.fc.weight", 2, SS_MIL_CLASSES, L);
    ss_mil_spec(&s[P_T2_CB], "att_classifier.classifier.fc.bias", 1, SS_MIL_CLASSES, 0);
    return P_COUNT;
}

/* PyTorch's default Linear init: W and b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the reference
 * initialises nothing itself. A bias takes the fan-in of the weight before it. */
static void dtfd_init(ss_mil_t *m, ss_rng_t *rng)
{
    int64_t fan_in = 1;
    for (int i = 0; i < m->table_len; i++) {
        const ss_mil_tensor_spec_t *s = &m->specs[i];
        if (s->ndim == 2) fan_in = s->shape[1];
        float bound = 1.0f / sqrtf((float)fan_in);
        ss_rng_fill_uniform(rng, ss_mil_param(m, i), ss_ckpt_numel(&m->table[i]), -bound, bound);
    }
}

/* ---- the arena ------------------------------------------------------------------------------- */

typedef struct {
    char *base; /* NULL: only measure */
    size_t off;
} carver_t;

static void *take(carver_t *c, size_t bytes)
{
    void *p = c->base ? c->base + c->off : NULL;
    c->off += (bytes + 63) & ~(size_t)63;
    return p;
}

static int pseudo_bags(const ss_mil_t *m, int n)
{
    return m->cfg.groups < n ? m->cfg.groups : n;
}

/* Carves the train layout (train != 0) or the eval layout for a bag of n cells into c. */
static void carve(dtfd_t *t, carver_t *c, const ss_mil_config_t *cfg, int n, int M, int train)
{
    const size_t D = (size_t)cfg->dim, L = (size_t)cfg->hidden, A = (size_t)cfg->attn;
    const size_t F = sizeof(float);
    size_t rows = train ? (size_t)n : (size_t)(n < EVAL_BLOCK ? n : EVAL_BLOCK);
    t->x = train ? take(c, (size_t)n * D * F) : NULL;
    t->h = take(c, rows * L * F);
    t->av = take(c, rows * A * F);
    t->au = take(c, rows * A * F);
    t->e = take(c, rows * F);
    t->alpha = train ? take(c, (size_t)n * F) : NULL;
    t->de = train ? take(c, (size_t)n * F) : NULL;
    t->order = train ? take(c, (size_t)n * sizeof(int)) : NULL;
    t->chunk = train ? take(c, (size_t)n * sizeof(int)) : NULL;
    t->dh = train ? take(c, (size_t)(n < BWD_BLOCK ? n : BWD_BLOCK) * L * F) : NULL;
    t->dw = take(c, A * sizeof(double));
    t->f = take(c, (size_t)M * L * F);
    t->df = take(c, (size_t)M * L * F);
    t->lg0 = take(c, (size_t)M * 2 * F);
    t->dlg0 = take(c, (size_t)M * 2 * F);
    t->av2 = take(c, (size_t)M * A * F);
    t->au2 = take(c, (size_t)M * A * F);
    t->e2 = take(c, (size_t)M * F);
    t->beta = take(c, (size_t)M * F);
    t->dbeta = take(c, (size_t)M * F);
    t->fmax = take(c, (size_t)M * F);
    t->fsum = take(c, (size_t)M * F);
    t->z = take(c, L * F);
    t->dz = take(c, L * F);
}

static dtfd_t *impl_of(ss_mil_t *m)
{
    if (!m->impl && !(m->impl = calloc(1, sizeof(dtfd_t)))) ss_error(DOM, "out of memory");
    return m->impl;
}

/* Grows the arena for this bag and carves it; the previous forward's activations are lost. */
static int prepare(ss_mil_t *m, dtfd_t *t, int n, int M, int train)
{
    carver_t c = {NULL, 0};
    carve(t, &c, &m->cfg, n, M, train);
    if (c.off > t->cap) {
        free(t->arena);
        t->cap = 0;
        t->arena = aligned_alloc(64, c.off);
        if (!t->arena)
            return ss_error(DOM, "dtfd: out of memory for a bag of %d cells (%.0f MB)", n,
                            c.off / 1048576.0);
        t->cap = c.off;
    }
    c = (carver_t){t->arena, 0};
    carve(t, &c, &m->cfg, n, M, train);
    t->pending = 0;
    t->order_n = 0;
    return 0;
}

/* ---- pieces shared by both tiers ------------------------------------------------------------- */

/* Pseudo-bag g of n cells in M: positions [*lo, *hi) (np.array_split: the first n % M get one
 * more). */
static void split_bounds(int n, int M, int g, int *lo, int *hi)
{
    int q = n / M, r = n % M;
    *lo = g * q + (g < r ? g : r);
    *hi = *lo + q + (g < r);
}

/* Gated attention on rows of h (rows, L): av = tanh(h V^T + bV), au = sigmoid(h U^T + bU)
 * (rows, A); e = (av * au) w^T + b_w (rows). p: the six tensors from G_VW. */
static void gate_forward(float *e, float *av, float *au, const float *h, float *const *p, int rows,
                         int L, int A)
{
    ss_linear_forward(av, h, p[G_VW], p[G_VB], rows, L, A);
    ss_tanh_forward(av, av, (size_t)rows * A);
    ss_linear_forward(au, h, p[G_UW], p[G_UB], rows, L, A);
    ss_sigmoid_forward(au, au, (size_t)rows * A);
    for (int i = 0; i < rows; i++) {
        const float *a = av + (size_t)i * A, *u = au + (size_t)i * A;
        double s = p[G_WB][0];
        for (int k = 0; k < A; k++)
            s += (double)a[k] * u[k] * p[G_WW][k];
        e[i] = (float)s;
    }
}

/* Gated attention backward, element-wise part, for the attention whose parameters start at AT:
 * from de (rows), turn av and au IN PLACE into the gradients of their pre-activations, and add
 * the gradients of w and b_w (summed in dw, A doubles of scratch). The Linear parts follow with
 * av/au as dout. */
static void gate_backward_pointwise(ss_mil_t *m, int at, float *av, float *au, double *dw,
                                    const float *de, int rows, int A)
{
    const float *w = ss_mil_param(m, at + G_WW);
    double db = 0;
    memset(dw, 0, (size_t)A * sizeof *dw);
    for (int i = 0; i < rows; i++) {
        float d = de[i];
        float *a = av + (size_t)i * A, *u = au + (size_t)i * A;
        db += d;
        for (int k = 0; k < A; k++) {
            float ak = a[k], uk = u[k], dg = d * w[k];
            dw[k] += (double)d * ak * uk;
            a[k] = dg * uk * (1.0f - ak * ak);
            u[k] = dg * ak * uk * (1.0f - uk);
        }
    }
    float *gw = ss_mil_grad(m, at + G_WW);
    for (int k = 0; k < A; k++)
        gw[k] += (float)dw[k];
    ss_mil_grad(m, at + G_WB)[0] += (float)db;
}

/* Tier 2 forward on the M features f (M, L): beta = softmax of the gated scores, z = beta f,
 * lg1 = z Wc^T + bc. */
static void tier2_forward(ss_mil_t *m, dtfd_t *t, int M)
{
    const int L = m->cfg.hidden, A = m->cfg.attn;
    float *p[6];
    for (int i = 0; i < 6; i++)
        p[i] = ss_mil_param(m, P_T2 + i);
    gate_forward(t->e2, t->av2, t->au2, t->f, p, M, L, A);
    ss_softmax_forward(t->beta, t->e2, 1, M);
    memset(t->z, 0, (size_t)L * sizeof(float));
    for (int g = 0; g < M; g++) {
        const float *fg = t->f + (size_t)g * L;
        for (int j = 0; j < L; j++)
            t->z[j] += t->beta[g] * fg[j];
    }
    ss_linear_forward(t->lg1, t->z, ss_mil_param(m, P_T2_CW), ss_mil_param(m, P_T2_CB), 1, L,
                      SS_MIL_CLASSES);
}

/* Softmax over all n cells of the scores in att (in place). */
static void attention_out(float *att, const float *e, int n)
{
    if (att != e) memcpy(att, e, (size_t)n * sizeof(float));
    ss_softmax_forward(att, att, 1, n);
}

/* ---- forward --------------------------------------------------------------------------------- */

static void shuffle(int *order, int n, ss_rng_t *rng)
{
    for (int i = 0; i < n; i++)
        order[i] = i;
    for (int i = n - 1; i > 0; i--) { /* Fisher-Yates; j uniform in [0, i] (Lemire's product) */
        int j = (int)(((ss_rng_u64(rng) >> 32) * (uint64_t)(i + 1)) >> 32);
        int s = order[i];
        order[i] = order[j];
        order[j] = s;
    }
}

static int forward_train(ss_mil_t *m, dtfd_t *t, const float *x, int n, float *logits,
                         float *attention)
{
    const int D = m->cfg.dim, L = m->cfg.hidden, A = m->cfg.attn, M = pseudo_bags(m, n);
    if (t->next && t->next_n != n)
        return ss_error(DOM, "dtfd: the order set for the next bag has %d cells, the bag %d",
                        t->next_n, n);
    if (prepare(m, t, n, M, 1)) return -1;
    if (t->next) {
        memcpy(t->order, t->next, (size_t)n * sizeof(int));
        free(t->next);
        t->next = NULL;
    } else {
        shuffle(t->order, n, &m->rng);
    }
    memcpy(t->x, x, (size_t)n * D * sizeof(float));

    ss_linear_forward(t->h, t->x, ss_mil_param(m, P_DR_W), NULL, n, D, L);
    ss_relu_forward(t->h, t->h, (size_t)n * L);
    float *p[6];
    for (int i = 0; i < 6; i++)
        p[i] = ss_mil_param(m, P_AT + i);
    gate_forward(t->e, t->av, t->au, t->h, p, n, L, A);

    for (int g = 0; g < M; g++) { /* alpha within each pseudo-bag, f = sum alpha h */
        int lo, hi;
        split_bounds(n, M, g, &lo, &hi);
        float mx = -FLT_MAX;
        for (int q = lo; q < hi; q++)
            mx = fmaxf(mx, t->e[t->order[q]]);
        double s = 0;
        for (int q = lo; q < hi; q++)
            s += exp((double)t->e[t->order[q]] - mx);
        float *fg = t->f + (size_t)g * L;
        memset(fg, 0, (size_t)L * sizeof(float));
        for (int q = lo; q < hi; q++) {
            int i = t->order[q];
            float a = (float)(exp((double)t->e[i] - mx) / s);
            const float *hi_ = t->h + (size_t)i * L;
            t->alpha[i] = a;
            t->chunk[i] = g;
            for (int j = 0; j < L; j++)
                fg[j] += a * hi_[j];
        }
    }
    ss_linear_forward(t->lg0, t->f, ss_mil_param(m, P_CLS_W), ss_mil_param(m, P_CLS_B), M, L,
                      SS_MIL_CLASSES);
    tier2_forward(m, t, M);

    logits[0] = t->lg1[0], logits[1] = t->lg1[1];
    if (attention) attention_out(attention, t->e, n);
    t->n = n, t->groups = M, t->pending = 1, t->order_n = n;
    return 0;
}

/* Streams the bag in blocks: each block's h and scores, and per pseudo-bag (contiguous) an
 * online softmax: f_g holds sum exp(e - fmax_g) h, fsum_g the sum of the weights. */
static int forward_eval(ss_mil_t *m, dtfd_t *t, const float *x, int n, float *logits,
                        float *attention)
{
    const int D = m->cfg.dim, L = m->cfg.hidden, A = m->cfg.attn, M = pseudo_bags(m, n);
    if (prepare(m, t, n, M, 0)) return -1;
    float *p[6];
    for (int i = 0; i < 6; i++)
        p[i] = ss_mil_param(m, P_AT + i);
    memset(t->f, 0, (size_t)M * L * sizeof(float));
    for (int g = 0; g < M; g++)
        t->fmax[g] = -INFINITY, t->fsum[g] = 0;

    for (int b0 = 0; b0 < n; b0 += EVAL_BLOCK) {
        int nb = n - b0 < EVAL_BLOCK ? n - b0 : EVAL_BLOCK;
        ss_linear_forward(t->h, x + (size_t)b0 * D, ss_mil_param(m, P_DR_W), NULL, nb, D, L);
        ss_relu_forward(t->h, t->h, (size_t)nb * L);
        gate_forward(t->e, t->av, t->au, t->h, p, nb, L, A);
        if (attention) memcpy(attention + b0, t->e, (size_t)nb * sizeof(float));
        for (int g = 0; g < M; g++) {
            int lo, hi;
            split_bounds(n, M, g, &lo, &hi);
            if (lo < b0) lo = b0;
            if (hi > b0 + nb) hi = b0 + nb;
            if (lo >= hi) continue;
            float mx = t->fmax[g];
            for (int i = lo; i < hi; i++)
                mx = fmaxf(mx, t->e[i - b0]);
            float *fg = t->f + (size_t)g * L;
            if (mx > t->fmax[g]) {               /* rescale what the earlier blocks added */
                float r = expf(t->fmax[g] - mx); /* 0 for the first segment */
                t->fsum[g] *= r;
                for (int j = 0; j < L; j++)
                    fg[j] *= r;
                t->fmax[g] = mx;
            }
            for (int i = lo; i < hi; i++) {
                float w = expf(t->e[i - b0] - mx);
                const float *hr = t->h + (size_t)(i - b0) * L;
                t->fsum[g] += w;
                for (int j = 0; j < L; j++)
                    fg[j] += w * hr[j];
            }
        }
    }
    for (int g = 0; g < M; g++)
        ss_scale_inplace(t->f + (size_t)g * L, 1.0f / t->fsum[g], L);
    tier2_forward(m, t, M);
    logits[0] = t->lg1[0], logits[1] = t->lg1[1];
    if (attention) attention_out(attention, attention, n);
    return 0;
}

static int dtfd_forward(ss_mil_t *m, const float *x, int n, int train, float *logits,
                        float *attention)
{
    dtfd_t *t = impl_of(m);
    if (!t) return -1;
    return train ? forward_train(m, t, x, n, logits, attention)
                 : forward_eval(m, t, x, n, logits, attention);
}

/* ---- backward -------------------------------------------------------------------------------- */

/* loss0 -> classifier, attention, dim_reduction. */
static void backward_tier1(ss_mil_t *m, dtfd_t *t, int y)
{
    const int n = t->n, M = t->groups, D = m->cfg.dim, L = m->cfg.hidden, A = m->cfg.attn;
    double loss = 0;
    for (int g = 0; g < M; g++)
        loss += ss_mil_cross_entropy(t->dlg0 + 2 * g, t->lg0 + 2 * g, y, 1.0f / M);
    t->loss0 = loss / M;
    ss_linear_backward(t->df, ss_mil_grad(m, P_CLS_W), ss_mil_grad(m, P_CLS_B), t->dlg0, t->f,
                       ss_mil_param(m, P_CLS_W), M, L, SS_MIL_CLASSES);

    for (int g = 0; g < M; g++) { /* f_g = sum alpha h: d alpha, then the softmax */
        int lo, hi;
        split_bounds(n, M, g, &lo, &hi);
        const float *dfg = t->df + (size_t)g * L;
        double s = 0;
        for (int q = lo; q < hi; q++) {
            int i = t->order[q];
            const float *hr = t->h + (size_t)i * L;
            float da = 0;
            for (int j = 0; j < L; j++)
                da += dfg[j] * hr[j];
            t->de[i] = da;
            s += (double)t->alpha[i] * da;
        }
        for (int q = lo; q < hi; q++) {
            int i = t->order[q];
            t->de[i] = t->alpha[i] * (t->de[i] - (float)s);
        }
    }

    const int at = P_AT;
    gate_backward_pointwise(m, at, t->av, t->au, t->dw, t->de, n, A);

    /* the input side in blocks: dh = dV V + dU U + alpha df, masked by ReLU, then W1 */
    for (int b0 = 0; b0 < n; b0 += BWD_BLOCK) {
        int nb = n - b0 < BWD_BLOCK ? n - b0 : BWD_BLOCK;
        const float *h = t->h + (size_t)b0 * L;
        float *av = t->av + (size_t)b0 * A, *au = t->au + (size_t)b0 * A;
        ss_linear_backward(t->dh, ss_mil_grad(m, at + G_VW), ss_mil_grad(m, at + G_VB), av, h,
                           ss_mil_param(m, at + G_VW), nb, L, A);
        ss_linear_backward(NULL, ss_mil_grad(m, at + G_UW), ss_mil_grad(m, at + G_UB), au, h,
                           ss_mil_param(m, at + G_UW), nb, L, A);
        ss_sgemm(0, 0, nb, L, A, 1.0f, au, A, ss_mil_param(m, at + G_UW), L, 1.0f, t->dh, L);
        for (int r = 0; r < nb; r++) {
            int i = b0 + r;
            float a = t->alpha[i];
            const float *dfg = t->df + (size_t)t->chunk[i] * L;
            float *dr = t->dh + (size_t)r * L;
            for (int j = 0; j < L; j++)
                dr[j] += a * dfg[j];
        }
        ss_relu_backward(t->dh, t->dh, h, (size_t)nb * L);
        ss_linear_backward(NULL, ss_mil_grad(m, P_DR_W), NULL, t->dh, t->x + (size_t)b0 * D,
                           ss_mil_param(m, P_DR_W), nb, D, L);
    }
}

/* loss1 -> att_classifier only (f is detached). */
static void backward_tier2(ss_mil_t *m, dtfd_t *t, int y)
{
    const int M = t->groups, L = m->cfg.hidden, A = m->cfg.attn;
    float dlg1[2];
    t->loss1 = ss_mil_cross_entropy(dlg1, t->lg1, y, 1.0f);
    ss_linear_backward(t->dz, ss_mil_grad(m, P_T2_CW), ss_mil_grad(m, P_T2_CB), dlg1, t->z,
                       ss_mil_param(m, P_T2_CW), 1, L, SS_MIL_CLASSES);
    for (int g = 0; g < M; g++) { /* z = sum beta f */
        const float *fg = t->f + (size_t)g * L;
        float d = 0;
        for (int j = 0; j < L; j++)
            d += t->dz[j] * fg[j];
        t->dbeta[g] = d;
    }
    ss_softmax_backward(t->dbeta, t->dbeta, t->beta, 1, M); /* now d e2 */

    const int at = P_T2;
    gate_backward_pointwise(m, at, t->av2, t->au2, t->dw, t->dbeta, M, A);
    ss_linear_backward(NULL, ss_mil_grad(m, at + G_VW), ss_mil_grad(m, at + G_VB), t->av2, t->f,
                       ss_mil_param(m, at + G_VW), M, L, A);
    ss_linear_backward(NULL, ss_mil_grad(m, at + G_UW), ss_mil_grad(m, at + G_UB), t->au2, t->f,
                       ss_mil_param(m, at + G_UW), M, L, A);
}

static int dtfd_backward(ss_mil_t *m, int y, double *loss)
{
    dtfd_t *t = m->impl;
    if (!t || !t->pending)
        return ss_error(DOM, "dtfd: backward needs a train forward first (once per forward)");
    backward_tier1(m, t, y);
    backward_tier2(m, t, y);
    t->pending = 0;
    t->have_losses = 1;
    if (loss) *loss = t->loss0 + t->loss1;
    return 0;
}

static void dtfd_release(ss_mil_t *m)
{
    dtfd_t *t = m->impl;
    if (!t) return;
    free(t->arena);
    free(t->next);
    free(t);
    m->impl = NULL;
}

const ss_mil_ops_t ss_mil_dtfd_ops = {
    .name = "dtfd",
    .layout = dtfd_layout,
    .init = dtfd_init,
    .forward = dtfd_forward,
    .backward = dtfd_backward,
    .release = dtfd_release,
};

/* ---- mil_dtfd.h ------------------------------------------------------------------------------ */

int ss_mil_dtfd_module(const ss_mil_t *m, int index)
{
    if (!m || m->ops != &ss_mil_dtfd_ops || index < 0 || index >= m->table_len) return -1;
    return index <= P_CLS_B  ? SS_DTFD_CLASSIFIER
           : index == P_DR_W ? SS_DTFD_DIM_REDUCTION
           : index < P_T2    ? SS_DTFD_ATTENTION
                             : SS_DTFD_ATT_CLASSIFIER;
}

int ss_mil_dtfd_tier(const ss_mil_t *m, int index)
{
    int mod = ss_mil_dtfd_module(m, index);
    return mod < 0 ? -1 : mod == SS_DTFD_ATT_CLASSIFIER ? 2 : 1;
}

int ss_mil_dtfd_losses(const ss_mil_t *m, double *loss0, double *loss1)
{
    const dtfd_t *t = m && m->ops == &ss_mil_dtfd_ops ? m->impl : NULL;
    if (!t || !t->have_losses) return -1;
    if (loss0) *loss0 = t->loss0;
    if (loss1) *loss1 = t->loss1;
    return 0;
}

int ss_mil_dtfd_set_next_order(ss_mil_t *m, const int *order, int n)
{
    if (!m || m->ops != &ss_mil_dtfd_ops) return ss_error(DOM, "not a dtfd model");
    if (n < 1) return ss_error(DOM, "dtfd: an order of %d cells", n);
    dtfd_t *t = impl_of(m);
    if (!t) return -1;
    char *seen = calloc((size_t)n, 1);
    int *copy = malloc((size_t)n * sizeof(int));
    if (!seen || !copy) {
        free(seen), free(copy);
        return ss_error(DOM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        if (order[i] < 0 || order[i] >= n || seen[order[i]]) {
            ss_error(DOM, "dtfd: order[%d] = %d: not a permutation of 0..%d", i, order[i], n - 1);
            free(seen), free(copy);
            return -1;
        }
        seen[order[i]] = 1;
        copy[i] = order[i];
    }
    free(seen);
    free(t->next);
    t->next = copy;
    t->next_n = n;
    return 0;
}

const int *ss_mil_dtfd_last_order(const ss_mil_t *m, int *n)
{
    const dtfd_t *t = m && m->ops == &ss_mil_dtfd_ops ? m->impl : NULL;
    if (!t || !t->order_n) return NULL;
    if (n) *n = t->order_n;
    return t->order;
}
