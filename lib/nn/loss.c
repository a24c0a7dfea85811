/* slidestream — losses: softmax cross-entropy, NT-Xent (SimCLR) and the SLAM-AGS similarity
 * loss (specs/methods.md §6.2). Gradients overwrite the caller's arrays; scratch memory is the
 * caller's workspace. The Gram matrices go through cblas_sgemm; every reduction is in double.
 */
#include "slidestream/nn_loss.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "slidestream/error.h"

/* F.normalize uses max(|z|, eps) with eps = 1e-12. */
#define SS_NORM_EPS 1e-12

int ss_loss_cross_entropy(float *loss, float *dlogits, const float *logits, const int *labels,
                          int B, int C)
{
    if (B <= 0 || C <= 0) return ss_error("nn.loss", "cross-entropy: bad shape B=%d C=%d", B, C);
    for (int b = 0; b < B; b++)
        if (labels[b] < 0 || labels[b] >= C)
            return ss_error("nn.loss", "cross-entropy: label %d of row %d outside [0, %d)",
                            labels[b], b, C);
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        const float *x = logits + (size_t)b * C; /* (C) */
        double mx = x[0];
        for (int c = 1; c < C; c++)
            if (x[c] > mx) mx = x[c];
        double sum = 0.0;
        for (int c = 0; c < C; c++)
            sum += exp((double)x[c] - mx);
        double lse = mx + log(sum);
        total += lse - x[labels[b]];
        if (dlogits) {
            float *g = dlogits + (size_t)b * C;
            for (int c = 0; c < C; c++)
                g[c] = (float)((exp((double)x[c] - lse) - (c == labels[b])) / B);
        }
    }
    *loss = (float)(total / B);
    return 0;
}

/* u (N, d) = rows of z scaled to unit length; inv[k] = 1/max(|z_k|, eps). */
static void normalise_rows(float *u, double *inv, const float *z, int N, int d)
{
    for (int k = 0; k < N; k++) {
        const float *zk = z + (size_t)k * d;
        double ss = 0.0;
        for (int j = 0; j < d; j++)
            ss += (double)zk[j] * zk[j];
        double n = sqrt(ss);
        double iv = 1.0 / (n > SS_NORM_EPS ? n : SS_NORM_EPS);
        if (inv) inv[k] = iv;
        for (int j = 0; j < d; j++)
            u[(size_t)k * d + j] = (float)(zk[j] * iv);
    }
}

/* S (N, N) = U U^T / tau. */
static void gram(float *S, const float *U, int N, int d, float tau)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, N, d, 1.0f / tau, U, d, U, d, 0.0f, S,
                N);
}

/* Given G (N, N) = dL/dS (S = U U^T / tau), write dz (N, d) = dL/dz through the
 * normalisation: du = (G + G^T) U / tau; dz_k = (du_k - u_k (u_k . du_k)) / max(|z_k|, eps).
 * G is symmetrised in place. */
static void gram_backward(float *dz, float *G, const float *U, const float *z, int N, int d,
                          float tau)
{
    for (int k = 0; k < N; k++)
        for (int l = k; l < N; l++) {
            float s = G[(size_t)k * N + l] + G[(size_t)l * N + k];
            G[(size_t)k * N + l] = s;
            G[(size_t)l * N + k] = s;
        }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, d, N, 1.0f / tau, G, N, U, d, 0.0f,
                dz, d);
    for (int k = 0; k < N; k++) {
        const float *zk = z + (size_t)k * d;
        const float *uk = U + (size_t)k * d;
        float *gk = dz + (size_t)k * d;
        double ss = 0.0, dot = 0.0;
        for (int j = 0; j < d; j++) {
            ss += (double)zk[j] * zk[j];
            dot += (double)uk[j] * gk[j];
        }
        double n = sqrt(ss);
        if (n > SS_NORM_EPS) {
            for (int j = 0; j < d; j++)
                gk[j] = (float)((gk[j] - uk[j] * dot) / n);
        } else { /* u = z / eps: the clamp makes the map linear */
            for (int j = 0; j < d; j++)
                gk[j] = (float)(gk[j] / SS_NORM_EPS);
        }
    }
}

size_t ss_loss_ntxent_workspace(int N, int d)
{
    return (size_t)N * d + (size_t)N * N;
}

int ss_loss_ntxent(float *loss, float *dz, const float *z, int N, int d, float tau,
                   float *workspace)
{
    if (N < 2 || N % 2 || d <= 0)
        return ss_error("nn.loss", "nt-xent: need an even number of rows >= 2 (got N=%d, d=%d)", N,
                        d);
    if (!(tau > 0.0f)) return ss_error("nn.loss", "nt-xent: temperature %g must be > 0", tau);
    float *U = workspace;                 /* (N, d) unit rows */
    float *S = workspace + (size_t)N * d; /* (N, N) similarities, then dL/dS */
    normalise_rows(U, NULL, z, N, d);
    gram(S, U, N, d, tau);
    double total = 0.0;
    for (int k = 0; k < N; k++) {
        float *row = S + (size_t)k * N;
        int pos = k ^ 1; /* interleaved views: 2i <-> 2i+1 */
        /* The reference subtracts the row max (diagonal included) for stability only. */
        double mx = row[0];
        for (int l = 1; l < N; l++)
            if (row[l] > mx) mx = row[l];
        double sum = 0.0;
        for (int l = 0; l < N; l++)
            if (l != k) sum += exp((double)row[l] - mx);
        double lse = mx + log(sum);
        total += (double)row[pos] - lse;
        if (dz) {
            /* dL/ds_kl = (softmax_{l != k}(s_k)_l - [l == pos]) / N, zero on the diagonal. */
            for (int l = 0; l < N; l++)
                row[l] = l == k ? 0.0f : (float)((exp((double)row[l] - lse) - (l == pos)) / N);
        }
    }
    *loss = (float)(-total / N);
    if (dz) gram_backward(dz, S, U, z, N, d, tau);
    return 0;
}

size_t ss_loss_similarity_workspace(int N, int d)
{
    return (size_t)N * d + (size_t)N * N;
}

int ss_loss_similarity(float *loss, float *dz, const float *z, int N, int d, float tau,
                       float tau_base, float *workspace)
{
    if (N < 1 || d <= 0) return ss_error("nn.loss", "similarity: bad shape N=%d d=%d", N, d);
    if (!(tau > 0.0f) || !(tau_base > 0.0f))
        return ss_error("nn.loss", "similarity: temperatures must be > 0 (tau=%g, tau_b=%g)", tau,
                        tau_base);
    if (N == 1) { /* no pair: the reference divides an empty sum by 1 */
        *loss = 0.0f;
        if (dz) memset(dz, 0, sizeof(float) * d);
        return 0;
    }
    float *U = workspace;
    float *S = workspace + (size_t)N * d; /* (N, N) */
    normalise_rows(U, NULL, z, N, d);
    gram(S, U, N, d, tau);
    /* The code's form: every l != k is a positive of k and there is no denominator, so
     * L = -(tau/tau_b) (1/N) sum_k (1/(N-1)) sum_{l!=k} (s_kl - max_j s_kj). As the max
     * includes the diagonal s_kk = 1/tau, this is (1/tau_b) mean_{k!=l} (1 - u_k.u_l): a pure
     * alignment loss. We keep the code's arithmetic (max included) to match it to rounding. */
    double scale = -(double)tau / tau_base / ((double)N * (N - 1));
    double total = 0.0;
    for (int k = 0; k < N; k++) {
        float *row = S + (size_t)k * N;
        double mx = row[0];
        for (int l = 1; l < N; l++)
            if (row[l] > mx) mx = row[l];
        double acc = 0.0;
        for (int l = 0; l < N; l++)
            if (l != k) acc += (double)row[l] - mx;
        total += acc;
        if (dz) /* the max is detached: dL/ds_kl = scale off the diagonal */
            for (int l = 0; l < N; l++)
                row[l] = l == k ? 0.0f : (float)scale;
    }
    *loss = (float)(scale * total);
    if (dz) gram_backward(dz, S, U, z, N, d, tau);
    return 0;
}
