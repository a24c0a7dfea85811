/* ABMIL, gated (Ilse et al. 2018, as WSI pipelines use it; specs/methods.md §1-§2):
 *
 *   h = ReLU(X W_0^T + b_0)                                    (n, hidden)
 *   e = w_c · [tanh(h W_a^T + b_a) ⊙ sigmoid(h W_b^T + b_b)] + b_c    (n)   width cfg->attn
 *   α = softmax over cells of e;  z = Σ α h;  logits = W_cls z + b_cls;  loss = cross-entropy
 * Attention toward class 1 (mil.h) = α.
 *
 * State_dict: the E2E-WSI-ABMILX repository's gated module (modules/abmil.py, AttentionGated)
 * is imported by its modules/__init__.py but the file is not in the repository snapshot we can
 * read, so the names are CLAM-SB's (mahmoodlab/CLAM models/model_clam.py, gate on, dropout
 * off): attention_net.0.{weight,bias} (hidden, dim), attention_net.3.attention_a.0.{weight,bias}
 * (attn, hidden), attention_net.3.attention_b.0.{weight,bias}, attention_net.3.attention_c.
 * {weight,bias} (1, attn), classifiers.{weight,bias} (2, hidden). CLAM-SB's
 * instance_classifiers are left out: this ABMIL has no instance loss.
 * Init as the E2E repository's initialize_weights: Xavier normal on every Linear weight
 * (std = sqrt(2 / (fan_in + fan_out))), zero biases.
 *
 * Memory: m->impl owns ONE buffer grown to the largest bag (and mode) seen. A training forward
 * copies the bag (backward needs it) and keeps h and both attention branches; an eval forward
 * streams the bag in chunks of cells (pooling by an online softmax) and keeps only the scores.
 * A backward spends the saved activations (they are overwritten): one per training forward. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mil_internal.h"
#include "slidestream/error.h"

#define DOM "mil"
#define ROWS 4096 /* cells per chunk in eval */

enum { P_W0, P_B0, P_WA, P_BA, P_WB, P_BB, P_WC, P_BC, P_CLW, P_CLB, P_COUNT };

typedef struct {
    float *buf; /* the one activation buffer */
    size_t cap; /* its size in floats */
    int n, train;
    /* m = n cells in training; in eval, a chunk of at most ROWS cells */
    float *x;     /* [n, dim]  the bag (training only) */
    float *h;     /* [m, H]    ReLU(embedding) */
    float *a, *g; /* [m, A]    tanh and sigmoid branches */
    float *w;     /* [m]       e^(score - running max) */
    float *alpha; /* [n]       scores, then their softmax */
    float *z;     /* [H]       pooled */
    double *zacc; /* [H]       Σ w h, rescaled whenever the running max grows */
    float logits[SS_MIL_CLASSES];
    float *dh, *T; /* [n, H], [n, max(H, A)]  training: backward scratch */
    float *dalpha; /* [n] */
    float *dz;     /* [H] */
} abmil_t;

static int layout(const ss_mil_config_t *c, ss_mil_tensor_spec_t *s)
{
    if (c->attn < 1) return ss_error(DOM, "abmil: attention width %d must be positive", c->attn);
    if (s) {
        ss_mil_spec(&s[P_W0], "attention_net.0.weight", 2, c->hidden, c->dim);
        ss_mil_spec(&s[P_B0], "attention_net.0.bias", 1, c->hidden, 0);
        ss_mil_spec(&s[P_WA], "attention_net.3.attention_a.0.weight", 2, c->attn, c->hidden);
        ss_mil_spec(&s[P_BA], "attention_net.3.attention_a.0.bias", 1, c->attn, 0);
        ss_mil_spec(&s[P_WB], "attention_net.3.attention_b.0.weight", 2, c->attn, c->hidden);
        ss_mil_spec(&s[P_BB], "attention_net.3.attention_b.0.bias", 1, c->attn, 0);
        ss_mil_spec(&s[P_WC], "attention_net.3.attention_c.weight", 2, 1, c->attn);
        ss_mil_spec(&s[P_BC], "attention_net.3.attention_c.bias", 1, 1, 0);
        ss_mil_spec(&s[P_CLW], "classifiers.weight", 2, SS_MIL_CLASSES, c->hidden);
        ss_mil_spec(&s[P_CLB], "classifiers.bias", 1, SS_MIL_CLASSES, 0);
    }
    return P_COUNT;
}

static void init(ss_mil_t *m, ss_rng_t *rng)
{
    for (int i = 0; i < m->table_len; i++) {
        const ss_mil_tensor_spec_t *s = &m->specs[i];
        float *p = ss_mil_param(m, i);
        size_t len = ss_ckpt_numel(&m->table[i]);
        if (s->ndim == 2)
            ss_rng_fill_normal(rng, p, len, 0.0f,
                               (float)sqrt(2.0 / (double)(s->shape[0] + s->shape[1])));
        else
            memset(p, 0, len * sizeof *p);
    }
}

/* Lay the views out over base (NULL: only count); returns the floats needed. */
static size_t plan(abmil_t *t, const ss_mil_config_t *c, int n, int train, float *base)
{
    size_t off = 0;
    const size_t H = (size_t)c->hidden, A = (size_t)c->attn;
    const size_t rows = (size_t)(train || n < ROWS ? n : ROWS);
#define TAKE(p, count)                                                                             \
    do {                                                                                           \
        t->p = base ? base + off : NULL;                                                           \
        off += ((size_t)(count) + 15) & ~(size_t)15;                                               \
    } while (0)
    TAKE(h, rows * H);
    TAKE(a, rows * A);
    TAKE(g, rows * A);
    TAKE(w, rows);
    TAKE(alpha, (size_t)n);
    TAKE(z, H);
    float *zacc = base ? base + off : NULL;
    off += (2 * H + 15) & ~(size_t)15;
    t->zacc = (double *)zacc;
    t->x = t->dh = t->T = t->dalpha = t->dz = NULL;
    if (train) {
        TAKE(x, (size_t)n * c->dim);
        TAKE(dh, (size_t)n * H);
        TAKE(T, (size_t)n * (H > A ? H : A));
        TAKE(dalpha, (size_t)n);
        TAKE(dz, H);
    }
#undef TAKE
    return off;
}

static int reserve(abmil_t *t, const ss_mil_config_t *c, int n, int train)
{
    size_t need = plan(t, c, n, train, NULL);
    if (ss_mil_buffer_grow(&t->buf, &t->cap, need, "abmil", n)) return -1;
    plan(t, c, n, train, t->buf);
    t->n = n, t->train = train;
    return 0;
}

#define PRM(i) ss_mil_param(m, (i))
#define GRD(i) ss_mil_grad(m, (i))

static int forward(ss_mil_t *m, const float *x, int n, int train, float *logits, float *attention)
{
    abmil_t *t = m->impl;
    if (!t && !(t = m->impl = calloc(1, sizeof *t))) return ss_error(DOM, "out of memory");
    const ss_mil_config_t *c = &m->cfg;
    const int H = c->hidden, A = c->attn;
    t->n = 0;
    if (reserve(t, c, n, train)) return -1;
    if (train) {
        memcpy(t->x, x, (size_t)n * c->dim * sizeof *x);
        x = t->x;
    }

    /* Chunks of cells (training: one chunk, every activation kept): the scores, and the
     * pooling as an online softmax: a running max, Σ e^(score - max) and Σ e^(score - max) h. */
    const int R = train || n < ROWS ? n : ROWS;
    const float *wc = PRM(P_WC), bc = PRM(P_BC)[0];
    double mx = -INFINITY, sum = 0.0;
    for (int k = 0; k < H; k++)
        t->zacc[k] = 0.0;
    for (int r0 = 0; r0 < n; r0 += R) {
        const int rc = n - r0 < R ? n - r0 : R;
        float *hc = train ? t->h + (size_t)r0 * H : t->h, *a = t->a, *g = t->g;
        if (train) a += (size_t)r0 * A, g += (size_t)r0 * A;
        float *e = t->alpha + r0;
        ss_linear_forward(hc, x + (size_t)r0 * c->dim, PRM(P_W0), PRM(P_B0), rc, c->dim, H);
        ss_relu_forward(hc, hc, (size_t)rc * H);
        ss_linear_forward(a, hc, PRM(P_WA), PRM(P_BA), rc, H, A);
        ss_tanh_forward(a, a, (size_t)rc * A);
        ss_linear_forward(g, hc, PRM(P_WB), PRM(P_BB), rc, H, A);
        ss_sigmoid_forward(g, g, (size_t)rc * A);
#pragma omp parallel for schedule(static) if ((size_t)rc * A >= ((size_t)1 << 15))
        for (int i = 0; i < rc; i++) {
            const float *ai = a + (size_t)i * A, *gi = g + (size_t)i * A;
            float s = 0.0f;
            for (int k = 0; k < A; k++)
                s += ai[k] * gi[k] * wc[k];
            e[i] = s + bc;
        }
        double cm = mx;
        for (int i = 0; i < rc; i++)
            cm = e[i] > cm ? e[i] : cm;
        if (cm > mx) { /* rescale what was summed under the old max */
            double f = exp(mx - cm);
            sum *= f;
            for (int k = 0; k < H; k++)
                t->zacc[k] *= f;
            mx = cm;
        }
        for (int i = 0; i < rc; i++) {
            t->w[i] = (float)exp(e[i] - mx);
            sum += t->w[i];
        }
        ss_sgemm(0, 0, 1, H, rc, 1.0f, t->w, rc, hc, H, 0.0f, t->z, H);
        for (int k = 0; k < H; k++)
            t->zacc[k] += t->z[k];
    }
    for (int k = 0; k < H; k++)
        t->z[k] = (float)(t->zacc[k] / sum);
    for (int i = 0; i < n; i++)
        t->alpha[i] = (float)(exp(t->alpha[i] - mx) / sum);
    ss_linear_forward(t->logits, t->z, PRM(P_CLW), PRM(P_CLB), 1, H, SS_MIL_CLASSES);
    memcpy(logits, t->logits, sizeof t->logits);
    if (attention) memcpy(attention, t->alpha, (size_t)n * sizeof *attention);
    return 0;
}

static int backward(ss_mil_t *m, int y, double *loss)
{
    abmil_t *t = m->impl;
    if (!t || !t->n || !t->train)
        return ss_error(DOM, "abmil: backward needs a training forward first");
    const ss_mil_config_t *c = &m->cfg;
    const int n = t->n, H = c->hidden, A = c->attn;

    float dlog[SS_MIL_CLASSES];
    *loss = ss_mil_cross_entropy(dlog, t->logits, y, 1.0f);
    ss_linear_backward(t->dz, GRD(P_CLW), GRD(P_CLB), dlog, t->z, PRM(P_CLW), 1, H, SS_MIL_CLASSES);

    /* pooling z = α^T h: dα_i = dz · h_i, dh_i = α_i dz (dh starts here) */
    ss_sgemm(0, 1, 1, n, H, 1.0f, t->dz, H, t->h, H, 0.0f, t->dalpha, n);
    ss_sgemm(1, 0, n, H, 1, 1.0f, t->alpha, n, t->dz, H, 0.0f, t->dh, H);
    ss_softmax_backward(t->dalpha, t->dalpha, t->alpha, 1, n); /* now de */

    /* e = (a ⊙ g) w_c + b_c: w_c's gradient from a ⊙ g (built in T), then the branches'
     * pre-activation gradients replace a and g in place */
    float *ag = t->T;
    const float *wc = PRM(P_WC);
#pragma omp parallel for schedule(static) if ((size_t)n * A >= ((size_t)1 << 15))
    for (int i = 0; i < n; i++)
        for (int k = 0; k < A; k++)
            ag[(size_t)i * A + k] = t->a[(size_t)i * A + k] * t->g[(size_t)i * A + k];
    ss_linear_backward(NULL, GRD(P_WC), GRD(P_BC), t->dalpha, ag, wc, n, A, 1);
#pragma omp parallel for schedule(static) if ((size_t)n * A >= ((size_t)1 << 15))
    for (int i = 0; i < n; i++)
        for (int k = 0; k < A; k++) {
            size_t o = (size_t)i * A + k;
            float dag = t->dalpha[i] * wc[k], a = t->a[o], g = t->g[o];
            t->a[o] = dag * g * (1.0f - a * a);
            t->g[o] = dag * a * g * (1.0f - g);
        }
    ss_linear_backward(t->T, GRD(P_WA), GRD(P_BA), t->a, t->h, PRM(P_WA), n, H, A);
    ss_add_inplace(t->dh, t->T, (size_t)n * H);
    ss_linear_backward(t->T, GRD(P_WB), GRD(P_BB), t->g, t->h, PRM(P_WB), n, H, A);
    ss_add_inplace(t->dh, t->T, (size_t)n * H);

    ss_relu_backward(t->dh, t->dh, t->h, (size_t)n * H);
    ss_linear_backward(NULL, GRD(P_W0), GRD(P_B0), t->dh, t->x, PRM(P_W0), n, c->dim, H);
    t->train = 0; /* the saved activations are spent (overwritten in place) */
    return 0;
}

static void release(ss_mil_t *m)
{
    abmil_t *t = m->impl;
    if (t) free(t->buf);
    free(t);
    m->impl = NULL;
}

const ss_mil_ops_t ss_mil_abmil_ops = {"abmil", layout, init, forward, backward, release};
