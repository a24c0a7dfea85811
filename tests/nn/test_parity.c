/* nn.parity_resnet18 — the C ResNet-18 against PyTorch. make_reference.py wrote a checkpoint
 * (ckpt.h5) and expected tensors (ref.h5); we load the same checkpoint and recompute: the
 * eval-mode forward, the train-mode forward and running statistics, both losses, every parameter
 * gradient of each loss, the weights after one SGD-with-momentum step, after two Adam and two
 * AdamW steps, and after one SLAM-AGS
 * (PCGrad + rescaling) step. Any element outside tolerance fails the process.
 *
 * Tolerance, per tensor t with reference r: |c - r| <= RTOL |r| + ATOL max|r| (the ATOL term
 * covers elements that are tiny relative to their tensor, where float32 summation order alone
 * moves the relative error). Usage: test_nn_parity <dir with ckpt.h5 and ref.h5>
 */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/error.h"
#include "slidestream/nn_layers.h"
#include "slidestream/nn_loss.h"
#include "slidestream/nn_optim.h"
#include "slidestream/nn_resnet.h"
#include "slidestream/nn_surgery.h"

#define RTOL 1e-4
#define ATOL 1e-4

static int failures;
static double worst_overall;
static const char *worst_name = "";
static char worst_buf[256];

typedef struct {
    const char *group;
    double worst_rel; /* worst |c - r| / (RTOL|r| + ATOL max|r|), <= 1 passes */
    double worst_abs; /* worst |c - r| / max|r| */
    char where[160];
    int count, bad;
} stats_t;

static int read_f32(hid_t f, const char *name, float *out, size_t n)
{
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return ss_error("parity", "reference lacks %s", name);
    hid_t sp = H5Dget_space(d);
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    int rc = 0;
    if ((size_t)np != n)
        rc = ss_error("parity", "%s has %lld elements, expected %zu", name, (long long)np, n);
    else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
        rc = ss_error("parity", "cannot read %s", name);
    H5Sclose(sp);
    H5Dclose(d);
    return rc;
}

static double read_scalar(hid_t f, const char *name)
{
    double v = NAN;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d >= 0) {
        H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v);
        H5Dclose(d);
    }
    return v;
}

static void read_attr(hid_t f, const char *name, double *v)
{
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    if (a < 0) return; /* keep the default */
    H5Aread(a, H5T_NATIVE_DOUBLE, v);
    H5Aclose(a);
}

static void compare(stats_t *s, const char *name, const float *c, const float *r, size_t n)
{
    double mx = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(r[i]) > mx) mx = fabs(r[i]);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)c[i] - r[i]);
        double tol = RTOL * fabs(r[i]) + ATOL * mx;
        double rel = tol > 0 ? e / tol : (e > 0 ? INFINITY : 0);
        if (!(rel <= 1.0)) {
            if (!bad)
                fprintf(stderr, "MISMATCH %s/%s[%zu]: C %.8g torch %.8g (max|ref| %.3g)\n",
                        s->group, name, i, c[i], r[i], mx);
            bad++;
        }
        if (!(rel <= s->worst_rel)) {
            s->worst_rel = rel;
            snprintf(s->where, sizeof(s->where), "%s[%zu] C %.7g torch %.7g", name, i, c[i], r[i]);
        }
        if (mx > 0 && e / mx > s->worst_abs) s->worst_abs = e / mx;
    }
    s->count++;
    if (bad) {
        s->bad++;
        failures++;
        fprintf(stderr, "  %d of %zu elements of %s/%s out of tolerance\n", bad, n, s->group, name);
    }
}

static void report(const stats_t *s)
{
    printf("%-16s %4d tensors  worst err/tol %.3f  worst |diff|/max|ref| %.2e  at %s%s\n", s->group,
           s->count, s->worst_rel, s->worst_abs, s->where, s->bad ? "  FAIL" : "");
    if (s->worst_rel > worst_overall) {
        worst_overall = s->worst_rel;
        snprintf(worst_buf, sizeof(worst_buf), "%s %s", s->group, s->where);
        worst_name = worst_buf;
    }
}

/* Compare every float parameter (or buffer) of the model with <group>/<name> in ref.h5. */
static int compare_table(hid_t f, ss_resnet_t *m, const char *group, const float *base, int buffers)
{
    stats_t s = {.group = group};
    float *tmp = NULL;
    for (int i = 0; i < m->table_len; i++) {
        const ss_ckpt_tensor_t *t = &m->table[i];
        int is_param =
            (float *)t->data >= m->params && (float *)t->data < m->params + m->num_params;
        if (t->dtype != SS_DTYPE_F32 || is_param == buffers) continue;
        size_t n = ss_ckpt_numel(t);
        size_t off = (float *)t->data - (buffers ? m->buffers : m->params);
        float *r = realloc(tmp, n * sizeof(float));
        if (!r) return ss_error("parity", "out of memory");
        tmp = r;
        char name[256];
        snprintf(name, sizeof(name), "%s/%s", group, t->name);
        if (read_f32(f, name, tmp, n)) {
            free(tmp);
            return -1;
        }
        compare(&s, t->name, base + off, tmp, n);
    }
    free(tmp);
    report(&s);
    return 0;
}

/* Reads <group>/<name> of every float parameter into flat (num_params), model layout. */
static int read_table(hid_t f, ss_resnet_t *m, const char *group, float *flat)
{
    for (int i = 0; i < m->table_len; i++) {
        const ss_ckpt_tensor_t *t = &m->table[i];
        if (t->dtype != SS_DTYPE_F32 || (float *)t->data < m->params ||
            (float *)t->data >= m->params + m->num_params)
            continue;
        char name[256];
        snprintf(name, sizeof(name), "%s/%s", group, t->name);
        if (read_f32(f, name, flat + ((float *)t->data - m->params), ss_ckpt_numel(t))) return -1;
    }
    return 0;
}

static int compare_output(hid_t f, ss_resnet_t *m, const char *group, ss_resnet_output_t which,
                          const char *label, int n)
{
    int dim;
    const float *o = ss_resnet_output(m, which, &dim);
    size_t cnt = (size_t)n * dim;
    float *r = malloc(cnt * sizeof(float));
    char name[128];
    snprintf(name, sizeof(name), "%s/%s", group, label);
    if (!r || read_f32(f, name, r, cnt)) {
        free(r);
        return -1;
    }
    stats_t s = {.group = name};
    compare(&s, label, o, r, cnt);
    report(&s);
    free(r);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_nn_parity DIR\n");
        return 2;
    }
    char ckpt[1024], refp[1024];
    snprintf(ckpt, sizeof(ckpt), "%s/ckpt.h5", argv[1]);
    snprintf(refp, sizeof(refp), "%s/ref.h5", argv[1]);
    hid_t f = H5Fopen(refp, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        fprintf(stderr, "cannot open %s\n", refp);
        return 1;
    }
    int B = 8, S = 64;
    ss_resnet_t *m = ss_resnet_new_from_checkpoint(ckpt, B, 1);
    float *x = malloc(sizeof(float) * B * 3 * S * S);
    int *y = malloc(sizeof(int) * B);
    if (!m || !x || !y || read_f32(f, "x", x, (size_t)B * 3 * S * S)) goto fail;
    {
        hid_t d = H5Dopen2(f, "y", H5P_DEFAULT);
        if (d < 0 || H5Dread(d, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, y) < 0) goto fail;
        H5Dclose(d);
    }
    printf("model: resnet%d, %zu parameters, %d classes, projector %d-%d; tolerance |diff| <= "
           "%.0e |ref| + %.0e max|ref|\n",
           m->cfg.depth, m->num_params, m->cfg.num_classes, m->cfg.proj_hidden, m->cfg.proj_out,
           RTOL, ATOL);

    /* eval-mode forward (BN folded) */
    if (ss_resnet_forward(m, x, B, 0) ||
        compare_output(f, m, "eval", SS_RESNET_FEATURE, "feature", B) ||
        compare_output(f, m, "eval", SS_RESNET_LOGITS, "logits", B) ||
        compare_output(f, m, "eval", SS_RESNET_PROJECTION, "projection", B))
        goto fail;
    /* train-mode forward, running statistics */
    if (ss_resnet_forward(m, x, B, 1) ||
        compare_output(f, m, "train", SS_RESNET_FEATURE, "feature", B) ||
        compare_output(f, m, "train", SS_RESNET_LOGITS, "logits", B) ||
        compare_output(f, m, "train", SS_RESNET_PROJECTION, "projection", B) ||
        compare_table(f, m, "buffers", m->buffers, 1))
        goto fail;
    for (int i = 0; i < m->num_counters; i++)
        if (m->counters[i] != 4) {
            fprintf(stderr, "MISMATCH num_batches_tracked[%d] = %lld, torch 4\n", i,
                    (long long)m->counters[i]);
            failures++;
            break;
        }
    /* losses and their gradients */
    double tau = 0.2;
    read_attr(f, "tau", &tau);
    int K = m->cfg.num_classes, P = m->cfg.proj_out;
    float *dl = malloc(sizeof(float) * B * K), *dz = malloc(sizeof(float) * B * P);
    float *ws = malloc(sizeof(float) * ss_loss_ntxent_workspace(B, P));
    size_t np = m->num_params;
    float *g1 = malloc(sizeof(float) * np), *g2 = malloc(sizeof(float) * np);
    float *p0 = malloc(sizeof(float) * np), *pw = malloc(sizeof(float) * np);
    float lce, lnt;
    if (!dl || !dz || !ws || !g1 || !g2 || !p0 || !pw) goto fail;
    if (ss_loss_cross_entropy(&lce, dl, ss_resnet_output(m, SS_RESNET_LOGITS, NULL), y, B, K) ||
        ss_loss_ntxent(&lnt, dz, ss_resnet_output(m, SS_RESNET_PROJECTION, NULL), B, P, (float)tau,
                       ws))
        goto fail;
    {
        float rl[2] = {(float)read_scalar(f, "loss_ce"), (float)read_scalar(f, "loss_nt")};
        float cl[2] = {lce, lnt};
        stats_t s = {.group = "losses"};
        compare(&s, "ce,nt-xent", cl, rl, 2);
        report(&s);
    }
    ss_resnet_zero_grad(m);
    if (ss_resnet_backward(m, NULL, dl, NULL)) goto fail;
    memcpy(g1, m->grads, sizeof(float) * np);
    if (compare_table(f, m, "grad_ce", g1, 0)) goto fail;
    ss_resnet_zero_grad(m);
    if (ss_resnet_backward(m, NULL, NULL, dz)) goto fail;
    memcpy(g2, m->grads, sizeof(float) * np);
    if (compare_table(f, m, "grad_nt", g2, 0)) goto fail;

    /* one SGD step on grad_ce, and one on the SLAM-AGS combination, each from the start */
    double lr = 0.05, mom = 0.9, wd = 5e-4;
    read_attr(f, "lr", &lr);
    read_attr(f, "momentum", &mom);
    read_attr(f, "weight_decay", &wd);
    memcpy(p0, m->params, sizeof(float) * np);
    ss_optim_config_t oc = ss_optim_config_default(SS_OPTIM_SGD, (float)lr);
    oc.momentum = (float)mom, oc.weight_decay = (float)wd;
    ss_optim_t *opt = ss_optim_new(&oc, np);
    if (!opt) goto fail;
    memcpy(pw, p0, sizeof(float) * np);
    ss_optim_step(opt, pw, g1, oc.lr);
    memcpy(m->params, pw, sizeof(float) * np);
    if (compare_table(f, m, "sgd", m->params, 0)) goto fail;
    /* Adam / AdamW: two steps, grad_ce then grad_nt. Adam's update is about lr * sign(g)
     * wherever |g| is tiny, so the last-bit differences of our own gradients would flip it;
     * these steps therefore start from PyTorch's gradients, which isolates the optimiser. */
    double alr = 1e-3, awd = 1e-2;
    read_attr(f, "adam_lr", &alr);
    read_attr(f, "adam_weight_decay", &awd);
    float *r1 = malloc(sizeof(float) * np), *r2 = malloc(sizeof(float) * np);
    if (!r1 || !r2 || read_table(f, m, "grad_ce", r1) || read_table(f, m, "grad_nt", r2)) goto fail;
    for (int k = 0; k < 2; k++) {
        ss_optim_config_t ac =
            ss_optim_config_default(k ? SS_OPTIM_ADAMW : SS_OPTIM_ADAM, (float)alr);
        ac.weight_decay = (float)awd;
        ss_optim_t *ad = ss_optim_new(&ac, np);
        if (!ad) goto fail;
        memcpy(pw, p0, sizeof(float) * np);
        ss_optim_step(ad, pw, r1, ac.lr);
        ss_optim_step(ad, pw, r2, ac.lr);
        ss_optim_destroy(&ad);
        memcpy(m->params, pw, sizeof(float) * np);
        if (compare_table(f, m, k ? "adamw" : "adam", m->params, 0)) goto fail;
    }
    free(r1), free(r2);
    ss_surgery_info_t info;
    ss_optim_reset(opt);
    if (ss_surgery_combine(g1, g1, g2, np, SS_SURGERY_AGS, 0, &info)) goto fail;
    memcpy(pw, p0, sizeof(float) * np);
    ss_optim_step(opt, pw, g1, oc.lr);
    memcpy(m->params, pw, sizeof(float) * np);
    printf("AGS: cosine(g_ce, g_nt) %.4f, conflict %d, coefficients %.4f %.4f, scale %.4f\n",
           info.cosine, info.conflict, info.a, info.b, info.scale);
    if (compare_table(f, m, "ags", m->params, 0)) goto fail;
    ss_optim_destroy(&opt);

    free(dl), free(dz), free(ws), free(g1), free(g2), free(p0), free(pw);
    free(x), free(y);
    ss_resnet_destroy(&m);
    H5Fclose(f);
    printf("worst over all groups: err/tol %.3f (%s)\n", worst_overall, worst_name);
    if (failures) {
        fprintf(stderr, "nn.parity_resnet18: %d tensor(s) out of tolerance\n", failures);
        return 1;
    }
    printf("nn.parity_resnet18: all tensors within tolerance\n");
    return 0;
fail:
    ss_error_report("parity test failed");
    return 1;
}
