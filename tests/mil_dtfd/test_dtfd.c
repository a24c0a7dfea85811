/* mil.dtfd.* unit tests of DTFD-MIL (lib/mil/dtfd.c): every gradient against finite differences
 * of a naive double-precision reference written here (the oracle), n = 1 and n < groups,
 * attention sums, the streaming eval forward against the oracle, checkpoint round trips and
 * refusals, the pseudo-bag partition's determinism, the tiers. One executable: argv[1] picks
 * the case, argv[2] is a directory for scratch files. */
#define _XOPEN_SOURCE 700 /* mkdtemp */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slidestream/error.h"
#include "slidestream/mil.h"
#include "slidestream/mil_dtfd.h"

#include "../check.h"

static char dir[1024];

static ss_mil_t *tiny(int dim, int groups, uint64_t seed)
{
    ss_mil_config_t c = ss_mil_config_default(SS_MIL_DTFD, dim);
    c.hidden = 8, c.attn = 4, c.groups = groups, c.seed = seed;
    ss_mil_t *m = ss_mil_new(&c);
    if (!m) {
        ss_error_report("ss_mil_new");
        exit(1);
    }
    return m;
}

static void fill(float *x, size_t n, uint64_t seed)
{
    ss_rng_t r;
    ss_rng_seed(&r, seed);
    ss_rng_fill_normal(&r, x, n, 0.3f, 1.0f);
}

/* ---- the oracle: DTFD in double, straight from the spec ------------------------------------ */

typedef struct {
    const ss_mil_t *m;
    const double *p; /* parameters in m->params' layout */
} ref_t;

static const double *T(const ref_t *r, int i)
{
    return r->p + ((const float *)r->m->table[i].data - r->m->params);
}

/* Gated attention score of one row v (L) with the six tensors from table index base. */
static double gate(const ref_t *r, int base, const double *v)
{
    const int L = r->m->cfg.hidden, A = r->m->cfg.attn;
    const double *vw = T(r, base), *vb = T(r, base + 1), *uw = T(r, base + 2);
    const double *ub = T(r, base + 3), *ww = T(r, base + 4), *wb = T(r, base + 5);
    double e = wb[0];
    for (int k = 0; k < A; k++) {
        double a = vb[k], u = ub[k];
        for (int j = 0; j < L; j++)
            a += vw[k * L + j] * v[j], u += uw[k * L + j] * v[j];
        e += ww[k] * tanh(a) * (1 / (1 + exp(-u)));
    }
    return e;
}

static double ce(const double *lg, int y)
{
    double mx = fmax(lg[0], lg[1]);
    return mx + log(exp(lg[0] - mx) + exp(lg[1] - mx)) - lg[y];
}

/* Train forward on a partition (order, np.array_split into min(groups, n)): loss0, loss1, the
 * tier-2 logits and the softmax over all cells of the tier-1 scores. Eval = identity order. */
static void oracle(const ref_t *r, const float *x, int n, const int *order, int y, double *loss0,
                   double *loss1, double lg1[2], double *att)
{
    const ss_mil_t *m = r->m;
    const int D = m->cfg.dim, L = m->cfg.hidden, M = m->cfg.groups < n ? m->cfg.groups : n;
    double *h = calloc((size_t)n * L, sizeof(double)), *e = calloc((size_t)n, sizeof(double));
    double *f = calloc((size_t)M * L, sizeof(double)), *e2 = calloc((size_t)M, sizeof(double));
    const double *w1 = T(r, 2), *cw = T(r, 0), *cb = T(r, 1), *cw2 = T(r, 15), *cb2 = T(r, 16);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < L; j++) {
            double s = 0;
            for (int d = 0; d < D; d++)
                s += w1[j * D + d] * x[(size_t)i * D + d];
            h[(size_t)i * L + j] = s > 0 ? s : 0;
        }
        e[i] = gate(r, 3, h + (size_t)i * L);
    }
    *loss0 = 0;
    for (int g = 0, lo = 0; g < M; g++) {
        int size = n / M + (g < n % M), hi = lo + size;
        double mx = -INFINITY, s = 0;
        for (int q = lo; q < hi; q++)
            mx = fmax(mx, e[order[q]]);
        for (int q = lo; q < hi; q++)
            s += exp(e[order[q]] - mx);
        for (int q = lo; q < hi; q++)
            for (int j = 0; j < L; j++)
                f[g * L + j] += exp(e[order[q]] - mx) / s * h[(size_t)order[q] * L + j];
        double lg[2];
        for (int c = 0; c < 2; c++) {
            lg[c] = cb[c];
            for (int j = 0; j < L; j++)
                lg[c] += cw[c * L + j] * f[g * L + j];
        }
        *loss0 += ce(lg, y) / M;
        lo = hi;
    }
    double mx = -INFINITY, s = 0;
    for (int g = 0; g < M; g++)
        e2[g] = gate(r, 9, f + g * L), mx = fmax(mx, e2[g]);
    for (int g = 0; g < M; g++)
        s += exp(e2[g] - mx);
    for (int c = 0; c < 2; c++) {
        lg1[c] = cb2[c];
        for (int g = 0; g < M; g++)
            for (int j = 0; j < L; j++)
                lg1[c] += cw2[c * L + j] * exp(e2[g] - mx) / s * f[g * L + j];
    }
    *loss1 = ce(lg1, y);
    if (att) {
        double mxa = -INFINITY, sa = 0;
        for (int i = 0; i < n; i++)
            mxa = fmax(mxa, e[i]);
        for (int i = 0; i < n; i++)
            sa += exp(e[i] - mxa);
        for (int i = 0; i < n; i++)
            att[i] = exp(e[i] - mxa) / sa;
    }
    free(h), free(e), free(f), free(e2);
}

static double *params_double(const ss_mil_t *m)
{
    double *p = malloc(m->num_params * sizeof(double));
    for (size_t i = 0; i < m->num_params; i++)
        p[i] = m->params[i];
    return p;
}

/* ---- cases ---------------------------------------------------------------------------------- */

/* Every parameter's gradient against central differences of the oracle: tier-1 tensors against
 * loss0, tier-2 tensors against loss1 (the tier-2 input is detached). Error of an element:
 * |g - fd| / max(max|fd| of its tensor, 1e-3 max|g| of the model); measured worst 1.5e-5 (the
 * attention biases, whose true gradient is 0), ~1e-6 elsewhere; tolerance 1e-4. */
static void test_grad(void)
{
    static const struct {
        int n, groups, y;
    } cases[] = {{7, 3, 1}, {7, 3, 0}, {1, 3, 1}, {2, 3, 0}, {3, 3, 1}, {11, 4, 1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int n = cases[c].n, y = cases[c].y, D = 5;
        ss_mil_t *m = tiny(D, cases[c].groups, 11 + c);
        float *x = malloc((size_t)n * D * sizeof(float));
        fill(x, (size_t)n * D, 100 + c);
        float logits[2];
        double loss;
        ss_mil_zero_grad(m);
        CHECK(!ss_mil_forward(m, x, n, 1, logits, NULL), "%s", ss_error_buffer());
        int on = 0;
        const int *order = ss_mil_dtfd_last_order(m, &on);
        CHECK(order && on == n, "last order");
        int *ord = malloc((size_t)n * sizeof(int));
        memcpy(ord, order, (size_t)n * sizeof(int));
        CHECK(!ss_mil_backward(m, y, &loss), "%s", ss_error_buffer());
        double l0, l1, rl0, rl1, rlg[2];
        CHECK(!ss_mil_dtfd_losses(m, &l0, &l1), "losses");
        ref_t r = {m, params_double(m)};
        oracle(&r, x, n, ord, y, &rl0, &rl1, rlg, NULL);
        CHECK_NEAR(l0, rl0, 1e-6, 1e-5);
        CHECK_NEAR(l1, rl1, 1e-6, 1e-5);
        CHECK_NEAR(loss, rl0 + rl1, 1e-6, 1e-5);
        CHECK_NEAR(logits[0], rlg[0], 1e-6, 1e-5);
        CHECK_NEAR(logits[1], rlg[1], 1e-6, 1e-5);
        double *p = (double *)r.p, worst = 0, gmax = 0;
        for (size_t i = 0; i < m->num_params; i++)
            gmax = fmax(gmax, fabs(m->grads[i]));
        for (int t = 0; t < m->table_len; t++) {
            size_t k = ss_ckpt_numel(&m->table[t]);
            const float *g = ss_mil_grad(m, t);
            /* the attention biases' true gradient is 0 (softmax ignores a shift): their scale
             * is the model's largest gradient */
            double *fd = malloc(k * sizeof(double)), scale = 1e-3 * gmax, err = 0;
            size_t off = (size_t)(ss_mil_param(m, t) - m->params);
            int tier = ss_mil_dtfd_tier(m, t);
            for (size_t i = 0; i < k; i++) {
                double keep = p[off + i], eps = 1e-6, a0, a1, b0, b1, lg[2];
                p[off + i] = keep + eps;
                oracle(&r, x, n, ord, y, &a0, &a1, lg, NULL);
                p[off + i] = keep - eps;
                oracle(&r, x, n, ord, y, &b0, &b1, lg, NULL);
                p[off + i] = keep;
                fd[i] = tier == 1 ? (a0 - b0) / (2 * eps) : (a1 - b1) / (2 * eps);
                scale = fmax(scale, fabs(fd[i]));
            }
            for (size_t i = 0; i < k; i++) {
                double d = fabs(g[i] - fd[i]) / scale;
                if (d > err) err = d;
                CHECK(d <= 1e-4, "n %d %s[%zu]: grad %.9g, finite difference %.9g", n,
                      m->table[t].name, i, g[i], fd[i]);
            }
            worst = fmax(worst, err);
            free(fd);
        }
        printf("grad n %d groups %d y %d: loss %.6f, worst relative gradient error %.2e\n", n,
               cases[c].groups, y, loss, worst);
        free(p), free(x), free(ord);
        ss_mil_destroy(&m);
    }
}

/* Attention sums to 1 in train and eval; the streaming eval (blocks of 1024 cells, online
 * softmax) matches the oracle on the contiguous partition; a train forward on the identity
 * order gives the eval's logits. */
static void test_attention(void)
{
    static const int ns[] = {1, 2, 3, 7, 1024, 1025, 2500};
    for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++) {
        const int n = ns[c], D = 6;
        ss_mil_t *m = tiny(D, 4, 5 + c);
        float *x = malloc((size_t)n * D * sizeof(float)), *att = malloc((size_t)n * sizeof(float));
        double *ratt = malloc((size_t)n * sizeof(double));
        int *id = malloc((size_t)n * sizeof(int));
        for (int i = 0; i < n; i++)
            id[i] = i;
        fill(x, (size_t)n * D, 7 + c);
        float lg[2], lgt[2];
        double l0, l1, rlg[2], sum = 0, worst = 0;
        CHECK(!ss_mil_forward(m, x, n, 0, lg, att), "%s", ss_error_buffer());
        ref_t r = {m, params_double(m)};
        oracle(&r, x, n, id, 0, &l0, &l1, rlg, ratt);
        for (int i = 0; i < n; i++) {
            sum += att[i];
            worst = fmax(worst, fabs(att[i] - ratt[i]) / ratt[i]);
        }
        CHECK(fabs(sum - 1) <= 1e-5, "n %d: eval attention sums to %.9g", n, sum);
        CHECK(worst <= 1e-5, "n %d: eval attention relative error %.3g", n, worst);
        CHECK_NEAR(lg[0], rlg[0], 1e-5, 1e-5);
        CHECK_NEAR(lg[1], rlg[1], 1e-5, 1e-5);
        CHECK(!ss_mil_dtfd_set_next_order(m, id, n), "%s", ss_error_buffer());
        CHECK(!ss_mil_forward(m, x, n, 1, lgt, att), "%s", ss_error_buffer());
        sum = 0;
        for (int i = 0; i < n; i++)
            sum += att[i];
        CHECK(fabs(sum - 1) <= 1e-5, "n %d: train attention sums to %.9g", n, sum);
        CHECK_NEAR(lgt[0], lg[0], 1e-5, 1e-5);
        CHECK_NEAR(lgt[1], lg[1], 1e-5, 1e-5);
        printf("attention n %d: eval logits (%.6f, %.6f), oracle (%.6f, %.6f), attention rel "
               "err %.2e\n",
               n, lg[0], lg[1], rlg[0], rlg[1], worst);
        free((void *)r.p), free(x), free(att), free(ratt), free(id);
        ss_mil_destroy(&m);
    }
    /* eval twice gives bit-identical results, and draws no randomness */
    ss_mil_t *a = tiny(6, 4, 3);
    float x[60], l1[2], l2[2], t1[10], t2[10];
    fill(x, 60, 9);
    ss_rng_t before = a->rng;
    CHECK(!ss_mil_forward(a, x, 10, 0, l1, t1) && !ss_mil_forward(a, x, 10, 0, l2, t2), "eval");
    CHECK(!memcmp(l1, l2, sizeof l1) && !memcmp(t1, t2, sizeof t1), "eval is not repeatable");
    CHECK(!memcmp(&before, &a->rng, sizeof before), "eval drew from the model's rng");
    CHECK(!ss_mil_forward(a, x, 10, 0, l1, NULL), "eval without attention");
    ss_mil_destroy(&a);
}

static void path_of(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", dir, name);
}

/* save -> load: the same configuration, bit-identical parameters and outputs. A checkpoint whose
 * tensors are of another dim than its attributes say, or that lacks a tensor, is refused with
 * an error naming the tensor. */
static void test_checkpoint(void)
{
    char p1[1200], p2[1200];
    path_of(p1, sizeof p1, "dtfd_a.h5");
    path_of(p2, sizeof p2, "dtfd_b.h5");
    ss_mil_config_t c = ss_mil_config_default(SS_MIL_DTFD, 24);
    c.groups = 5, c.seed = 77;
    ss_mil_t *m = ss_mil_new(&c);
    CHECK(m && !ss_mil_save(m, p1), "%s", ss_error_buffer());
    ss_mil_t *l = ss_mil_load(p1);
    CHECK(l, "load: %s", ss_error_buffer());
    if (!m || !l) return;
    CHECK(l->cfg.arch == SS_MIL_DTFD && l->cfg.dim == 24 && l->cfg.hidden == 512 &&
              l->cfg.attn == 128 && l->cfg.groups == 5,
          "configuration after load");
    CHECK(l->num_params == m->num_params &&
              !memcmp(l->params, m->params, m->num_params * sizeof(float)),
          "parameters differ after the round trip");
    float x[24 * 50], la[2], lb[2], aa[50], ab[50];
    fill(x, sizeof x / sizeof x[0], 4);
    CHECK(!ss_mil_forward(m, x, 50, 0, la, aa) && !ss_mil_forward(l, x, 50, 0, lb, ab), "eval");
    CHECK(!memcmp(la, lb, sizeof la) && !memcmp(aa, ab, sizeof aa), "outputs differ after load");
    ss_mil_destroy(&l);

    /* attributes of dim 16 over the tensors of a dim-24 model */
    ss_ckpt_attr_t a[] = {{"format", "slidestream-mil", 0},
                          {"arch", "dtfd", 0},
                          {"dim", NULL, 16},
                          {"hidden", NULL, 512},
                          {"attn", NULL, 128},
                          {"heads", NULL, 8},
                          {"protos", NULL, 10},
                          {"groups", NULL, 5},
                          {"proto_pred", NULL, 0},
                          {"inst_pred", NULL, 0}};
    CHECK(!ss_ckpt_save_attrs(p2, NULL, a, 10, m->table, m->table_len), "%s", ss_error_buffer());
    ss_error_clear();
    l = ss_mil_load(p2);
    CHECK(!l, "a checkpoint of dim 24 labelled 16 loaded");
    const char *err = ss_error_buffer();
    CHECK(strstr(err, "dim_reduction.fc1.weight") && strstr(err, "(512, 24)") &&
              strstr(err, "(512, 16)"),
          "unclear error: %s", err);
    printf("dim mismatch refused: %s", err);
    ss_mil_destroy(&l);

    /* a tensor missing */
    ss_error_clear();
    CHECK(!ss_ckpt_save_attrs(p2, NULL, a, 10, m->table + 1, m->table_len - 1), "save");
    a[2].value = 24;
    CHECK(!ss_ckpt_save_attrs(p2, NULL, a, 10, m->table + 1, m->table_len - 1), "save");
    l = ss_mil_load(p2);
    CHECK(!l && strstr(ss_error_buffer(), "classifier.fc.weight"), "missing tensor: %s",
          ss_error_buffer());
    ss_mil_destroy(&l);
    ss_error_clear();
    ss_mil_destroy(&m);
    unlink(p1), unlink(p2);
}

/* The pseudo-bag partition: a permutation drawn from the model's rng, the same for the same
 * seed, different for another seed or the next bag; the hook replaces one draw without
 * consuming randomness; bad orders are refused; backward runs once per train forward. */
static void test_partition(void)
{
    enum { N = 40, D = 3 };
    float x[N * D], lg[2];
    fill(x, N * D, 1);
    ss_mil_t *a = tiny(D, 4, 123), *b = tiny(D, 4, 123), *c = tiny(D, 4, 124);
    int prev[N], first[N], on = 0;
    for (int step = 0; step < 3; step++) {
        CHECK(!ss_mil_forward(a, x, N, 1, lg, NULL) && !ss_mil_forward(b, x, N, 1, lg, NULL) &&
                  !ss_mil_forward(c, x, N, 1, lg, NULL),
              "forward");
        const int *oa = ss_mil_dtfd_last_order(a, &on), *ob = ss_mil_dtfd_last_order(b, NULL);
        const int *oc = ss_mil_dtfd_last_order(c, NULL);
        CHECK(on == N && !memcmp(oa, ob, sizeof prev), "step %d: same seed, other partition", step);
        CHECK(memcmp(oa, oc, sizeof prev), "step %d: another seed, same partition", step);
        int seen[N] = {0};
        for (int i = 0; i < N; i++)
            if (oa[i] >= 0 && oa[i] < N) seen[oa[i]]++;
        for (int i = 0; i < N; i++)
            CHECK(seen[i] == 1, "cell %d appears %d times", i, seen[i]);
        if (step) CHECK(memcmp(oa, prev, sizeof prev), "the same partition twice in a row");
        if (!step) memcpy(first, oa, sizeof first);
        memcpy(prev, oa, sizeof prev);
    }
    /* a fresh model with a hooked first bag: its second bag gets a fresh model's first draw */
    ss_mil_t *h = tiny(D, 4, 123);
    int rev[N];
    for (int i = 0; i < N; i++)
        rev[i] = N - 1 - i;
    CHECK(!ss_mil_dtfd_set_next_order(h, rev, N), "%s", ss_error_buffer());
    CHECK(!ss_mil_forward(h, x, N, 1, lg, NULL), "forward");
    CHECK(!memcmp(ss_mil_dtfd_last_order(h, NULL), rev, sizeof rev), "the hook was not used");
    CHECK(!ss_mil_forward(h, x, N, 1, lg, NULL), "forward");
    CHECK(!memcmp(ss_mil_dtfd_last_order(h, NULL), first, sizeof first),
          "the hook consumed randomness");

    /* refusals */
    ss_error_clear();
    rev[3] = rev[4];
    CHECK(ss_mil_dtfd_set_next_order(h, rev, N) && strstr(ss_error_buffer(), "permutation"),
          "a repeated cell accepted: %s", ss_error_buffer());
    int three[3] = {2, 0, 1};
    CHECK(!ss_mil_dtfd_set_next_order(h, three, 3), "set");
    ss_error_clear();
    CHECK(ss_mil_forward(h, x, N, 1, lg, NULL) && strstr(ss_error_buffer(), "3 cells"),
          "an order for another bag size used: %s", ss_error_buffer());
    ss_error_clear();
    double loss;
    ss_mil_t *fresh = tiny(D, 4, 5);
    CHECK(ss_mil_backward(fresh, 1, &loss), "backward before any forward");
    CHECK(!ss_mil_forward(fresh, x, N, 1, lg, NULL) && !ss_mil_backward(fresh, 1, &loss), "step");
    CHECK(ss_mil_backward(fresh, 1, &loss), "backward twice after one forward");
    CHECK(!ss_mil_forward(fresh, x, N, 0, lg, NULL) && ss_mil_backward(fresh, 1, &loss),
          "backward after an eval forward");
    CHECK(!ss_mil_dtfd_last_order(fresh, NULL), "an eval forward left an order");
    CHECK(ss_mil_backward(fresh, 2, &loss), "label 2 accepted");
    ss_error_clear();
    ss_mil_destroy(&a), ss_mil_destroy(&b), ss_mil_destroy(&c), ss_mil_destroy(&h);
    ss_mil_destroy(&fresh);
}

/* Table names, shapes, tiers and modules; the init's ranges (PyTorch's default Linear init). */
static void test_layout(void)
{
    ss_mil_config_t cfg = ss_mil_config_default(SS_MIL_DTFD, 384);
    ss_mil_t *m = ss_mil_new(&cfg);
    CHECK(m && m->table_len == 17, "17 tensors");
    if (!m) return;
    static const struct {
        const char *name;
        int64_t r, c;
        int module;
    } want[] = {
        {"classifier.fc.weight", 2, 512, SS_DTFD_CLASSIFIER},
        {"classifier.fc.bias", 2, 0, SS_DTFD_CLASSIFIER},
        {"dim_reduction.fc1.weight", 512, 384, SS_DTFD_DIM_REDUCTION},
        {"attention.attention_V.0.weight", 128, 512, SS_DTFD_ATTENTION},
        {"attention.attention_V.0.bias", 128, 0, SS_DTFD_ATTENTION},
        {"attention.attention_U.0.weight", 128, 512, SS_DTFD_ATTENTION},
        {"attention.attention_U.0.bias", 128, 0, SS_DTFD_ATTENTION},
        {"attention.attention_weights.weight", 1, 128, SS_DTFD_ATTENTION},
        {"attention.attention_weights.bias", 1, 0, SS_DTFD_ATTENTION},
        {"att_classifier.attention.attention_V.0.weight", 128, 512, SS_DTFD_ATT_CLASSIFIER},
        {"att_classifier.attention.attention_V.0.bias", 128, 0, SS_DTFD_ATT_CLASSIFIER},
        {"att_classifier.attention.attention_U.0.weight", 128, 512, SS_DTFD_ATT_CLASSIFIER},
        {"att_classifier.attention.attention_U.0.bias", 128, 0, SS_DTFD_ATT_CLASSIFIER},
        {"att_classifier.attention.attention_weights.weight", 1, 128, SS_DTFD_ATT_CLASSIFIER},
        {"att_classifier.attention.attention_weights.bias", 1, 0, SS_DTFD_ATT_CLASSIFIER},
        {"att_classifier.classifier.fc.weight", 2, 512, SS_DTFD_ATT_CLASSIFIER},
        {"att_classifier.classifier.fc.bias", 2, 0, SS_DTFD_ATT_CLASSIFIER}};
    for (int i = 0; i < 17; i++) {
        const ss_ckpt_tensor_t *t = &m->table[i];
        int ndim = want[i].c ? 2 : 1;
        CHECK(!strcmp(t->name, want[i].name), "tensor %d is %s, want %s", i, t->name, want[i].name);
        CHECK(t->ndim == ndim && t->shape[0] == want[i].r &&
                  (ndim == 1 || t->shape[1] == want[i].c),
              "%s: shape", t->name);
        CHECK(ss_mil_dtfd_module(m, i) == want[i].module, "%s: module", t->name);
        CHECK(ss_mil_dtfd_tier(m, i) == (want[i].module == SS_DTFD_ATT_CLASSIFIER ? 2 : 1),
              "%s: tier", t->name);
        /* U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = the weight's input width */
        double bound = 1 / sqrt((double)(ndim == 2 ? want[i].c : want[i > 0 ? i - 1 : 0].c));
        const float *p = ss_mil_param(m, i);
        double lo = 1e9, hi = -1e9;
        size_t k = ss_ckpt_numel(t);
        for (size_t j = 0; j < k; j++)
            lo = fmin(lo, p[j]), hi = fmax(hi, p[j]);
        CHECK(lo >= -bound && hi <= bound, "%s: init outside +-%.4f: [%.4f, %.4f]", t->name, bound,
              lo, hi);
        if (k >= 100)
            CHECK(lo < -0.9 * bound && hi > 0.9 * bound,
                  "%s: init [%.4f, %.4f] does not fill +-%.4f", t->name, lo, hi, bound);
    }
    CHECK(ss_mil_dtfd_module(m, 17) == -1 && ss_mil_dtfd_module(m, -1) == -1, "bad index");
    CHECK(ss_mil_dtfd_losses(m, NULL, NULL) == -1, "losses before any backward");
    ss_mil_destroy(&m);
    /* the tier helpers refuse another architecture's model (when one is built in) */
    cfg = ss_mil_config_default(SS_MIL_ABMIL, 8);
    ss_error_clear();
    ss_mil_t *other = ss_mil_new(&cfg);
    if (other) CHECK(ss_mil_dtfd_tier(other, 0) == -1, "tier of an ABMIL tensor");
    ss_mil_destroy(&other);
    ss_error_clear();
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } cases[] = {{"grad", test_grad},
                 {"attention", test_attention},
                 {"checkpoint", test_checkpoint},
                 {"partition", test_partition},
                 {"layout", test_layout}};
    if (argc != 3) {
        fprintf(stderr, "usage: %s CASE|all SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    snprintf(dir, sizeof dir, "%s/dtfd-%s-XXXXXX", argv[2], argv[1]);
    if (!mkdtemp(dir)) {
        perror(dir);
        return 2;
    }
    ss_nn_set_threads(0);
    int ran = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (!strcmp(argv[1], "all") || !strcmp(argv[1], cases[i].name)) {
            cases[i].fn();
            ran++;
        }
    rmdir(dir);
    if (!ran) {
        fprintf(stderr, "unknown case %s\n", argv[1]);
        return 2;
    }
    return check_exit(argv[1]);
}
