/* nn.loss — losses against double-precision references written from specs/methods.md §6.2, and
 * their gradients against central finite differences (of the reference, tightly, and of the
 * float implementation itself, loosely). */
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "slidestream/error.h"
#include "slidestream/nn_loss.h"

static unsigned long long seed = 88172645463325252ULL;
static double urand(void)
{
    seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
    return (double)(seed >> 11) / 9007199254740992.0;
}

static void unit_rows(double *u, const double *z, int N, int d)
{
    for (int k = 0; k < N; k++) {
        double s = 0;
        for (int j = 0; j < d; j++)
            s += z[k * d + j] * z[k * d + j];
        s = sqrt(s);
        for (int j = 0; j < d; j++)
            u[k * d + j] = z[k * d + j] / s;
    }
}

static double dotd(const double *a, const double *b, int d)
{
    double s = 0;
    for (int j = 0; j < d; j++)
        s += a[j] * b[j];
    return s;
}

/* -(1/N) sum_k [ s_{k,k^1} - log sum_{l!=k} exp(s_kl) ], views interleaved. */
static double ntxent_ref(const double *z, int N, int d, double tau)
{
    double *u = malloc(sizeof(double) * N * d), L = 0;
    unit_rows(u, z, N, d);
    for (int k = 0; k < N; k++) {
        double sum = 0;
        for (int l = 0; l < N; l++)
            if (l != k) sum += exp(dotd(u + k * d, u + l * d, d) / tau);
        L += dotd(u + k * d, u + (k ^ 1) * d, d) / tau - log(sum);
    }
    free(u);
    return -L / N;
}

/* The identity form: (1/tau_b) mean_{k != l} (1 - u_k.u_l). */
static double sim_ref(const double *z, int N, int d, double tau_b)
{
    double *u = malloc(sizeof(double) * N * d), L = 0;
    unit_rows(u, z, N, d);
    for (int k = 0; k < N; k++)
        for (int l = 0; l < N; l++)
            if (l != k) L += 1.0 - dotd(u + k * d, u + l * d, d);
    free(u);
    return L / ((double)N * (N - 1)) / tau_b;
}

static double ce_ref(const double *x, const int *y, int B, int C)
{
    double L = 0;
    for (int b = 0; b < B; b++) {
        double s = 0;
        for (int c = 0; c < C; c++)
            s += exp(x[b * C + c]);
        L += log(s) - x[b * C + y[b]];
    }
    return L / B;
}

typedef double (*ref_fn)(const double *x, void *ctx);
typedef struct {
    int N, d, kind;
    const int *y;
    double tau;
} ctx_t;

static double call_ref(const double *x, void *vc)
{
    ctx_t *c = vc;
    if (c->kind == 0) return ce_ref(x, c->y, c->N, c->d);
    if (c->kind == 1) return ntxent_ref(x, c->N, c->d, c->tau);
    return sim_ref(x, c->N, c->d, c->tau);
}

static float call_c(const float *x, float *grad, ctx_t *c, float *ws)
{
    float L = NAN;
    int rc = c->kind == 0 ? ss_loss_cross_entropy(&L, grad, x, c->y, c->N, c->d)
             : c->kind == 1
                 ? ss_loss_ntxent(&L, grad, x, c->N, c->d, (float)c->tau, ws)
                 : ss_loss_similarity(&L, grad, x, c->N, c->d, (float)c->tau, (float)c->tau, ws);
    CHECK(rc == 0, "%s", ss_error_last());
    return L;
}

static void check_loss(const char *what, ctx_t *c, double scale)
{
    int n = c->N * c->d;
    float *x = malloc(sizeof(float) * n), *g = malloc(sizeof(float) * n);
    double *xd = malloc(sizeof(double) * n);
    float *ws = malloc(sizeof(float) * (ss_loss_ntxent_workspace(c->N, c->d) + 1));
    for (int i = 0; i < n; i++)
        x[i] = (float)((urand() * 2 - 1) * scale), xd[i] = x[i];
    float L = call_c(x, g, c, ws);
    double Lr = call_ref(xd, c);
    printf("%s: loss %.7g (reference %.7g)\n", what, L, Lr);
    CHECK_NEAR(L, Lr, 1e-5, 1e-5);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        /* tight: FD of the double reference */
        double h = 1e-5, keep = xd[i];
        xd[i] = keep + h;
        double lp = call_ref(xd, c);
        xd[i] = keep - h;
        double lm = call_ref(xd, c);
        xd[i] = keep;
        double fd = (lp - lm) / (2 * h);
        double err = fabs(g[i] - fd) / (1e-4 + fabs(fd));
        if (err > worst) worst = err;
        CHECK_NEAR(g[i], fd, 2e-5, 1e-3);
        /* loose: FD of the float implementation itself */
        float hf = 1e-2f, kf = x[i];
        x[i] = kf + hf;
        float fp = call_c(x, NULL, c, ws);
        x[i] = kf - hf;
        float fm = call_c(x, NULL, c, ws);
        x[i] = kf;
        CHECK_NEAR(g[i], (fp - fm) / (2 * hf), 2e-3 * (1 + fabs(L)), 3e-2);
    }
    printf("%s: worst relative gradient error vs FD %.2e\n", what, worst);
    free(x), free(g), free(xd), free(ws);
}

int main(void)
{
    int y[5] = {0, 3, 2, 6, 1};
    ctx_t ce = {5, 7, 0, y, 0};
    check_loss("cross-entropy", &ce, 3.0);
    ctx_t nt = {8, 6, 1, NULL, 0.07};
    check_loss("nt-xent tau=0.07", &nt, 1.0);
    ctx_t nt2 = {6, 5, 1, NULL, 0.5};
    check_loss("nt-xent tau=0.5", &nt2, 1.0);
    ctx_t si = {8, 6, 2, NULL, 0.07};
    check_loss("similarity", &si, 1.0);

    /* NT-Xent: perfectly aligned pairs with orthogonal images give the known value
     * -(1/tau - log(exp(1/tau) + (N-2))) per row. */
    {
        float z[4 * 4] = {1, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0};
        float ws[64], L;
        CHECK(ss_loss_ntxent(&L, NULL, z, 4, 4, 0.5f, ws) == 0, "ntxent");
        CHECK_NEAR(L, -(2.0 - log(exp(2.0) + 2.0)), 1e-6, 1e-6);
        /* similarity: identical directions give 0, opposite give 2/tau_b per pair */
        CHECK(ss_loss_similarity(&L, NULL, z, 2, 4, 0.07f, 0.07f, ws) == 0, "sim");
        CHECK_NEAR(L, 0.0, 1e-6, 0);
        float zo[2 * 2] = {1, 0, -2, 0};
        CHECK(ss_loss_similarity(&L, NULL, zo, 2, 2, 0.07f, 0.07f, ws) == 0, "sim");
        CHECK_NEAR(L, 2.0 / 0.07, 1e-4, 1e-6);
        /* tau only enters through tau/tau_b, which cancels: the value ignores tau */
        float L2;
        CHECK(ss_loss_similarity(&L2, NULL, z + 8, 2, 4, 0.2f, 0.07f, ws) == 0, "sim");
        CHECK(ss_loss_similarity(&L, NULL, z + 8, 2, 4, 0.07f, 0.07f, ws) == 0, "sim");
        CHECK_NEAR(L2, L, 1e-4, 1e-5);
    }
    /* bad input is an error, not a crash */
    {
        float L, x[4] = {0};
        int bad[2] = {0, 5};
        CHECK(ss_loss_cross_entropy(&L, NULL, x, bad, 2, 2) == -1, "label out of range");
        CHECK(ss_loss_ntxent(&L, NULL, x, 3, 1, 0.1f, x) == -1, "odd N");
        ss_error_clear();
    }
    return check_exit("nn.loss");
}
