/* mil_dtfd_parity CKPT BAGS: the C side of mil.dtfd.parity (dtfd_parity.py writes both files).
 * Loads the PyTorch-made checkpoint with ss_mil_load, then for every bag: the train forward on
 * the bag's pseudo-bag order (ss_mil_dtfd_set_next_order), backward, and the eval forward, each
 * tensor compared with PyTorch's as |c - r| <= rtol |r| + atol max|r|:
 *   logits, attention   rtol 1e-5, atol 1e-5 (max|r| of the tensor)
 *   losses              rtol 1e-5
 *   gradients           rtol 1e-4, atol 1e-5 (max|r| over the tensor's TIER: the attention
 *                       biases' true gradient is 0 and some others cancel to ~1e-6 of it)
 * Measured worst max|c - r| / max|r| (2 threads): outputs 9.4e-7, gradients 2.6e-7.
 * Any mismatch names the tensor and element; the exit code is the verdict. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/error.h"
#include "slidestream/mil.h"
#include "slidestream/mil_dtfd.h"

#define RTOL_OUT 1e-5
#define ATOL_OUT 1e-5
#define RTOL_LOSS 1e-5
#define RTOL_GRAD 1e-4
#define ATOL_GRAD 1e-5

static int failures;
static double worst_out, worst_grad; /* max|c - r| / max|r| seen */

/* Reads dataset `name` of g, which must hold exactly count elements, as mem_type. */
static int read_ds(hid_t g, const char *name, hid_t mem_type, void *buf, size_t count)
{
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    if (d < 0) {
        fprintf(stderr, "missing dataset %s\n", name);
        return -1;
    }
    hid_t s = H5Dget_space(d);
    hssize_t np = H5Sget_simple_extent_npoints(s);
    int rc = np == (hssize_t)count && H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0
                 ? 0
                 : -1;
    if (rc) fprintf(stderr, "%s: %lld elements, want %zu\n", name, (long long)np, count);
    H5Sclose(s);
    H5Dclose(d);
    return rc;
}

/* scale: max|r| the atol is relative to; 0 = that of r itself */
static void compare(const char *bag, const char *what, const float *c, const float *r, size_t n,
                    double rtol, double atol, double scale, double *worst)
{
    double maxd = 0;
    if (scale <= 0)
        for (size_t i = 0; i < n; i++)
            scale = fmax(scale, fabs(r[i]));
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)c[i] - r[i]);
        maxd = fmax(maxd, d);
        if (!(d <= rtol * fabs(r[i]) + atol * scale)) {
            if (bad++ < 3)
                fprintf(stderr, "FAIL %s %s[%zu]: slidestream %.9g, torch %.9g\n", bag, what, i,
                        c[i], r[i]);
        }
    }
    if (bad) {
        fprintf(stderr, "FAIL %s %s: %d of %zu elements out of tolerance\n", bag, what, bad, n);
        failures++;
    }
    double rel = scale > 0 ? maxd / scale : maxd;
    if (rel > *worst) *worst = rel;
    if (getenv("DTFD_PARITY_VERBOSE")) printf("  %s %-50s %.2e\n", bag, what, rel);
}

static void compare_loss(const char *bag, const char *what, double c, double r)
{
    if (!(fabs(c - r) <= RTOL_LOSS * fabs(r))) {
        fprintf(stderr, "FAIL %s %s: slidestream %.9g, torch %.9g\n", bag, what, c, r);
        failures++;
    }
}

static int run_bag(ss_mil_t *m, hid_t f, int b)
{
    char bag[32];
    snprintf(bag, sizeof bag, "bag%d", b);
    hid_t g = H5Gopen2(f, bag, H5P_DEFAULT);
    if (g < 0) return fprintf(stderr, "%s missing\n", bag), -1;
    hid_t ds = H5Dopen2(g, "order", H5P_DEFAULT), sp = H5Dget_space(ds);
    int n = (int)H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp), H5Dclose(ds);
    const int D = m->cfg.dim;
    int y = -1, rc = -1;
    hid_t a = H5Aopen(g, "y", H5P_DEFAULT);
    if (a >= 0) H5Aread(a, H5T_NATIVE_INT, &y), H5Aclose(a);
    float *x = malloc((size_t)n * D * sizeof(float)), *att = malloc((size_t)n * sizeof(float));
    float *ratt = malloc((size_t)n * sizeof(float)), *rg = malloc(m->num_params * sizeof(float));
    int *order = malloc((size_t)n * sizeof(int));
    float lg[2], rlg[2];
    double loss, l0, l1, r0, r1;
    if (read_ds(g, "x", H5T_NATIVE_FLOAT, x, (size_t)n * D) ||
        read_ds(g, "order", H5T_NATIVE_INT, order, (size_t)n) ||
        read_ds(g, "loss0", H5T_NATIVE_DOUBLE, &r0, 1) ||
        read_ds(g, "loss1", H5T_NATIVE_DOUBLE, &r1, 1) || (y != 0 && y != 1))
        goto done;

    ss_mil_zero_grad(m);
    if (ss_mil_dtfd_set_next_order(m, order, n) || ss_mil_forward(m, x, n, 1, lg, att) ||
        ss_mil_backward(m, y, &loss) || ss_mil_dtfd_losses(m, &l0, &l1)) {
        ss_error_report("train step");
        goto done;
    }
    if (read_ds(g, "logits_train", H5T_NATIVE_FLOAT, rlg, 2) ||
        read_ds(g, "attention_train", H5T_NATIVE_FLOAT, ratt, (size_t)n))
        goto done;
    compare(bag, "train logits", lg, rlg, 2, RTOL_OUT, ATOL_OUT, 0, &worst_out);
    compare(bag, "train attention", att, ratt, (size_t)n, RTOL_OUT, ATOL_OUT, 0, &worst_out);
    compare_loss(bag, "loss0", l0, r0);
    compare_loss(bag, "loss1", l1, r1);
    compare_loss(bag, "loss", loss, r0 + r1);
    double tier_max[3] = {0, 0, 0}; /* max|r| over each tier's gradient (the atol scale) */
    for (int t = 0; t < m->table_len; t++) {
        char name[128];
        size_t k = ss_ckpt_numel(&m->table[t]), off = (size_t)(ss_mil_param(m, t) - m->params);
        snprintf(name, sizeof name, "grads/%s", m->table[t].name);
        if (read_ds(g, name, H5T_NATIVE_FLOAT, rg + off, k)) goto done;
        for (size_t i = 0; i < k; i++)
            tier_max[ss_mil_dtfd_tier(m, t)] =
                fmax(tier_max[ss_mil_dtfd_tier(m, t)], fabs(rg[off + i]));
    }
    for (int t = 0; t < m->table_len; t++) {
        size_t k = ss_ckpt_numel(&m->table[t]), off = (size_t)(ss_mil_param(m, t) - m->params);
        compare(bag, m->table[t].name, ss_mil_grad(m, t), rg + off, k, RTOL_GRAD, ATOL_GRAD,
                tier_max[ss_mil_dtfd_tier(m, t)], &worst_grad);
    }

    if (ss_mil_forward(m, x, n, 0, lg, att)) {
        ss_error_report("eval forward");
        goto done;
    }
    if (read_ds(g, "logits_eval", H5T_NATIVE_FLOAT, rlg, 2) ||
        read_ds(g, "attention_eval", H5T_NATIVE_FLOAT, ratt, (size_t)n))
        goto done;
    compare(bag, "eval logits", lg, rlg, 2, RTOL_OUT, ATOL_OUT, 0, &worst_out);
    compare(bag, "eval attention", att, ratt, (size_t)n, RTOL_OUT, ATOL_OUT, 0, &worst_out);
    printf("%s: n %d y %d loss %.6f (torch %.6f)\n", bag, n, y, loss, r0 + r1);
    rc = 0;
done:
    free(x), free(att), free(ratt), free(rg), free(order);
    H5Gclose(g);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s CKPT BAGS\n", argv[0]);
        return 2;
    }
    ss_nn_set_threads(0);
    ss_mil_t *m = ss_mil_load(argv[1]);
    if (!m) {
        ss_error_report("load");
        return 1;
    }
    hid_t f = H5Fopen(argv[2], H5F_ACC_RDONLY, H5P_DEFAULT);
    int count = 0, rc = f < 0;
    hid_t a = f < 0 ? -1 : H5Aopen(f, "count", H5P_DEFAULT);
    if (a < 0 || H5Aread(a, H5T_NATIVE_INT, &count) < 0 || count < 1) rc = 1;
    if (a >= 0) H5Aclose(a);
    for (int b = 0; !rc && b < count; b++)
        if (run_bag(m, f, b)) rc = 1;
    if (f >= 0) H5Fclose(f);
    printf("dtfd parity (dim %d hidden %d attn %d groups %d): worst max|c - r|/max|r|: outputs "
           "%.2e, gradients %.2e; %d mismatch(es)\n",
           m->cfg.dim, m->cfg.hidden, m->cfg.attn, m->cfg.groups, worst_out, worst_grad, failures);
    ss_mil_destroy(&m);
    if (rc) fprintf(stderr, "cannot read %s\n", argv[2]);
    return rc || failures ? 1 : 0;
}
