/* mil.abmil — gated ABMIL (lib/mil/abmil.c): the model against a direct-loop double-precision
 * reference of the same maths (logits, attention, loss, every gradient), a central-difference
 * check of every gradient, n = 1, attention sums, chunked eval against train (a bag larger than
 * the 4096-cell chunk), checkpoint round trip and refusals.
 * Usage: test_mil_abmil SCRATCH_DIR */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mil_common.h"

/* Central differences: step, and the tolerance |fd - g| <= FD_ATOL + FD_RTOL |g|. Measured
 * worst |fd - g| over every parameter: 1.1e-5 (gradients up to ~0.6; the float loss puts ~1e-7 /
 * eps of noise into the quotient). */
#define FD_EPS 4e-3
#define FD_ATOL 1e-4
#define FD_RTOL 1e-2

/* The reference: every quantity in double, loops as the formulas read. grads (num_params, the
 * model's layout) OVERWRITTEN. */
static double reference(ss_mil_t *m, const float *x, int n, int y, double lg[2], double *att,
                        double *grads)
{
    const int D = m->cfg.dim, H = m->cfg.hidden, A = m->cfg.attn;
    const float *W0 = ss_mil_param(m, 0), *b0 = ss_mil_param(m, 1), *Wa = ss_mil_param(m, 2);
    const float *ba = ss_mil_param(m, 3), *Wb = ss_mil_param(m, 4), *bb = ss_mil_param(m, 5);
    const float *wc = ss_mil_param(m, 6), *bc = ss_mil_param(m, 7), *Wl = ss_mil_param(m, 8);
    const float *bl = ss_mil_param(m, 9);
    double *G[10];
    for (int i = 0; i < 10; i++)
        G[i] = grads + (ss_mil_grad(m, i) - m->grads);
    memset(grads, 0, m->num_params * sizeof *grads);
    double *h = calloc((size_t)n * H, 8), *a = calloc((size_t)n * A, 8),
           *g = calloc((size_t)n * A, 8);
    double *e = calloc(n, 8), *z = calloc(H, 8), *dh = calloc((size_t)n * H, 8);
    for (int i = 0; i < n; i++) {
        for (int t = 0; t < H; t++) {
            double s = b0[t];
            for (int k = 0; k < D; k++)
                s += (double)W0[t * D + k] * x[(size_t)i * D + k];
            h[(size_t)i * H + t] = s > 0 ? s : 0;
        }
        e[i] = bc[0];
        for (int u = 0; u < A; u++) {
            double sa = ba[u], sb = bb[u];
            for (int t = 0; t < H; t++) {
                sa += (double)Wa[u * H + t] * h[(size_t)i * H + t];
                sb += (double)Wb[u * H + t] * h[(size_t)i * H + t];
            }
            a[(size_t)i * A + u] = tanh(sa);
            g[(size_t)i * A + u] = 1.0 / (1.0 + exp(-sb));
            e[i] += wc[u] * a[(size_t)i * A + u] * g[(size_t)i * A + u];
        }
    }
    double mx = -INFINITY, s = 0.0;
    for (int i = 0; i < n; i++)
        mx = fmax(mx, e[i]);
    for (int i = 0; i < n; i++)
        s += exp(e[i] - mx);
    for (int i = 0; i < n; i++)
        att[i] = exp(e[i] - mx) / s;
    for (int t = 0; t < H; t++)
        for (int i = 0; i < n; i++)
            z[t] += att[i] * h[(size_t)i * H + t];
    for (int c = 0; c < 2; c++) {
        lg[c] = bl[c];
        for (int t = 0; t < H; t++)
            lg[c] += (double)Wl[c * H + t] * z[t];
    }
    double lm = fmax(lg[0], lg[1]), lse = lm + log(exp(lg[0] - lm) + exp(lg[1] - lm));
    double loss = lse - lg[y], dl[2], *dz = calloc(H, 8);
    for (int c = 0; c < 2; c++) {
        dl[c] = exp(lg[c] - lse) - (c == y);
        G[9][c] += dl[c];
        for (int t = 0; t < H; t++)
            G[8][c * H + t] += dl[c] * z[t];
    }
    for (int t = 0; t < H; t++)
        dz[t] = dl[0] * Wl[t] + dl[1] * Wl[H + t];
    double *da = calloc(n, 8), sda = 0.0;
    for (int i = 0; i < n; i++) {
        for (int t = 0; t < H; t++) {
            da[i] += dz[t] * h[(size_t)i * H + t];
            dh[(size_t)i * H + t] = att[i] * dz[t];
        }
        sda += att[i] * da[i];
    }
    for (int i = 0; i < n; i++) {
        double de = att[i] * (da[i] - sda);
        G[7][0] += de;
        for (int u = 0; u < A; u++) {
            double av = a[(size_t)i * A + u], gv = g[(size_t)i * A + u], dag = de * wc[u];
            G[6][u] += de * av * gv;
            double dpa = dag * gv * (1 - av * av), dpb = dag * av * gv * (1 - gv);
            G[3][u] += dpa, G[5][u] += dpb;
            for (int t = 0; t < H; t++) {
                G[2][u * H + t] += dpa * h[(size_t)i * H + t];
                G[4][u * H + t] += dpb * h[(size_t)i * H + t];
                dh[(size_t)i * H + t] += dpa * Wa[u * H + t] + dpb * Wb[u * H + t];
            }
        }
        for (int t = 0; t < H; t++) {
            double d = h[(size_t)i * H + t] > 0 ? dh[(size_t)i * H + t] : 0;
            G[1][t] += d;
            for (int k = 0; k < D; k++)
                G[0][t * D + k] += d * x[(size_t)i * D + k];
        }
    }
    free(h), free(a), free(g), free(e), free(z), free(dh), free(da), free(dz);
    return loss;
}

static double rel_err(const float *c, const double *r, size_t len, double floor)
{
    double e = 0.0, s = floor;
    for (size_t i = 0; i < len; i++) {
        e = fmax(e, fabs(c[i] - r[i]));
        s = fmax(s, fabs(r[i]));
    }
    return e / s;
}

static void against_reference(ss_mil_t *m, ss_rng_t *rng, int n, int y)
{
    float *x = mil_rand_bag(rng, n, m->cfg.dim), lg[2], *att = malloc((size_t)n * 4);
    double rlg[2], *ratt = malloc((size_t)n * 8), *rg = malloc(m->num_params * 8), loss = 0;
    double rloss = reference(m, x, n, y, rlg, ratt, rg), gscale = 0, worst = 0;
    ss_mil_zero_grad(m);
    CHECK(!ss_mil_forward(m, x, n, 1, lg, att) && !ss_mil_backward(m, y, &loss), "%s",
          ss_error_last());
    double el = rel_err(lg, rlg, 2, 0), ea = rel_err(att, ratt, n, 0);
    CHECK(el < 1e-5 && ea < 1e-5 && fabs(loss - rloss) < 1e-5 * (1 + rloss),
          "n %d: logits %g attention %g loss %.9g vs %.9g", n, el, ea, loss, rloss);
    for (size_t k = 0; k < m->num_params; k++)
        gscale = fmax(gscale, fabs(rg[k]));
    for (int i = 0; i < m->table_len; i++) {
        size_t off = ss_mil_grad(m, i) - m->grads, len = ss_ckpt_numel(&m->table[i]);
        double e = rel_err(m->grads + off, rg + off, len, 1e-3 * gscale);
        worst = fmax(worst, e);
        CHECK(e < 1e-4, "n %d: gradient %s differs from the reference by %g of its max", n,
              m->table[i].name, e);
    }
    printf("reference n %d: logits %.2g  attention %.2g  loss %.2g  worst gradient %.2g\n", n, el,
           ea, fabs(loss - rloss), worst);
    free(x), free(att), free(ratt), free(rg);
}

static ss_mil_t *model(int dim, int hidden, int attn, uint64_t seed, ss_rng_t *rng)
{
    ss_mil_config_t c = ss_mil_config_default(SS_MIL_ABMIL, dim);
    c.hidden = hidden, c.attn = attn, c.seed = seed;
    ss_mil_t *m = ss_mil_new(&c);
    CHECK(m != NULL, "ss_mil_new: %s", ss_error_last());
    if (m) /* biases away from their zero init, so that their paths are tested */
        for (int i = 0; i < m->table_len; i++)
            if (m->specs[i].ndim == 1)
                for (size_t k = 0; k < ss_ckpt_numel(&m->table[i]); k++)
                    ss_mil_param(m, i)[k] += 0.3f * ss_rng_normal(rng);
    return m;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    ss_rng_t rng;
    ss_rng_seed(&rng, 20250612);

    ss_mil_t *m = model(20, 24, 12, 5, &rng);
    if (m) {
        const int ns[] = {1, 2, 9, 300};
        for (int i = 0; i < 4; i++)
            against_reference(m, &rng, ns[i], i & 1);
        ss_mil_destroy(&m);
    }

    m = model(6, 8, 4, 3, &rng);
    if (m) {
        float *x = mil_rand_bag(&rng, 5, 6);
        printf("finite differences (n 5): worst |fd - analytic| = %.2g\n",
               mil_fd_check(m, x, 5, 1, FD_EPS, FD_ATOL, FD_RTOL));
        printf("finite differences (n 1): worst |fd - analytic| = %.2g\n",
               mil_fd_check(m, x, 1, 0, FD_EPS, FD_ATOL, FD_RTOL));
        free(x);
        ss_mil_destroy(&m);
    }

    m = model(24, 32, 16, 11, &rng);
    if (m) {
        const int bags[] = {1, 37, 9000};
        mil_check_model(m, &rng, bags, dir, "abmil", "attention_net.0.weight");
        ss_mil_destroy(&m);
    }

    ss_mil_config_t c = ss_mil_config_default(SS_MIL_ABMIL, 16);
    c.attn = 0;
    ss_error_clear();
    CHECK(ss_mil_new(&c) == NULL && strstr(ss_error_last(), "attention width"), "attn 0: '%s'",
          ss_error_last());
    ss_error_clear();
    return check_exit("mil.abmil");
}
