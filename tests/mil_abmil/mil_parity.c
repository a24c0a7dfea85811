/* mil_parity — slidestream's MIL model against PyTorch's outputs on the same weights (any
 * architecture without randomness in its forward). Usage: mil_parity CKPT BAGS.h5
 *   CKPT     a slidestream-mil checkpoint (written by tests/mil_abmil/parity.py)
 *   BAGS.h5  root attributes count, rtol, atol; groups bag0, bag1, ... each with x (n, dim)
 *            float32, attribute label, and PyTorch's logits (2), attention (n), loss () and
 *            grad/<state_dict key> (float64); attribute state_dict: the module's keys in
 *            order, one a line, which must be slidestream's layout order
 * Each bag runs an eval forward, then a train forward and backward from zeroed gradients.
 * Every element must satisfy |c - r| <= rtol |r| + atol · scale, scale = max |r| over the
 * tensor; for gradients at least 1e-2 of the largest |r| over all of the bag's gradients (a
 * tensor whose exact gradient is 0 — a bias shifting every score alike — is then held to that
 * scale, not to its own rounding noise). Any mismatch fails the process naming the bag, the
 * tensor and the element. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/error.h"
#include "slidestream/mil.h"

static int failures;
static double tol_rel, tol_abs; /* the file's rtol and atol */

/* Reads dataset `name` (float64 or float32 in the file) of exactly len elements. */
static int read_ds(hid_t f, const char *name, hid_t type, void *buf, size_t len)
{
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) {
        fprintf(stderr, "mil_parity: dataset %s is missing\n", name);
        return -1;
    }
    hid_t s = H5Dget_space(d);
    hssize_t np = H5Sget_simple_extent_npoints(s);
    int rc = -1;
    if (np != (hssize_t)len)
        fprintf(stderr, "mil_parity: %s has %lld elements, want %zu\n", name, (long long)np, len);
    else if (H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        fprintf(stderr, "mil_parity: cannot read %s\n", name);
    else
        rc = 0;
    H5Sclose(s);
    H5Dclose(d);
    return rc;
}

static int read_attr(hid_t obj, const char *name, hid_t type, void *out)
{
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) {
        fprintf(stderr, "mil_parity: attribute %s is missing\n", name);
        return -1;
    }
    herr_t rc = H5Aread(a, type, out);
    H5Aclose(a);
    return rc < 0 ? -1 : 0;
}

/* Compares c (slidestream) with r (PyTorch); returns the worst |c - r| / scale. */
static double compare(const char *bag, const char *what, const float *c, const double *r,
                      size_t len, double floor)
{
    double scale = floor, worst = 0.0;
    for (size_t i = 0; i < len; i++)
        scale = fmax(scale, fabs(r[i]));
    int shown = 0;
    for (size_t i = 0; i < len; i++) {
        double err = fabs((double)c[i] - r[i]);
        worst = fmax(worst, scale > 0 ? err / scale : err);
        if (!(err <= tol_rel * fabs(r[i]) + tol_abs * scale)) {
            if (shown++ < 5)
                fprintf(stderr,
                        "MISMATCH %s %s[%zu]: slidestream %.9g, PyTorch %.9g (|diff| %.3g)\n", bag,
                        what, i, c[i], r[i], err);
            failures++;
        }
    }
    return worst;
}

static int run_bag(ss_mil_t *m, hid_t f, int b)
{
    char g[64], name[256];
    snprintf(g, sizeof g, "bag%d", b);
    hid_t grp = H5Gopen2(f, g, H5P_DEFAULT);
    if (grp < 0) {
        fprintf(stderr, "mil_parity: group %s is missing\n", g);
        return -1;
    }
    int label = -1;
    snprintf(name, sizeof name, "%s/x", g);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    hsize_t dims[2] = {0, 0};
    if (d >= 0) {
        hid_t s = H5Dget_space(d);
        H5Sget_simple_extent_dims(s, dims, NULL);
        H5Sclose(s);
        H5Dclose(d);
    }
    const int n = (int)dims[0];
    if (read_attr(grp, "label", H5T_NATIVE_INT, &label) || n < 1 || (int)dims[1] != m->cfg.dim) {
        fprintf(stderr, "mil_parity: %s: a bag (n, %d) and a label are needed\n", g, m->cfg.dim);
        H5Gclose(grp);
        return -1;
    }
    H5Gclose(grp);
    float *x = malloc((size_t)n * m->cfg.dim * sizeof *x), *att = malloc((size_t)n * sizeof *att);
    double *ratt = malloc((size_t)n * sizeof *ratt), *rg = malloc(m->num_params * sizeof *rg);
    double rlog[SS_MIL_CLASSES], rloss;
    int rc = read_ds(f, name, H5T_NATIVE_FLOAT, x, (size_t)n * m->cfg.dim);
    snprintf(name, sizeof name, "%s/logits", g);
    rc = rc || read_ds(f, name, H5T_NATIVE_DOUBLE, rlog, SS_MIL_CLASSES);
    snprintf(name, sizeof name, "%s/attention", g);
    rc = rc || read_ds(f, name, H5T_NATIVE_DOUBLE, ratt, (size_t)n);
    snprintf(name, sizeof name, "%s/loss", g);
    rc = rc || read_ds(f, name, H5T_NATIVE_DOUBLE, &rloss, 1);
    for (int i = 0; !rc && i < m->table_len; i++) {
        snprintf(name, sizeof name, "%s/grad/%s", g, m->table[i].name);
        rc = read_ds(f, name, H5T_NATIVE_DOUBLE, rg + (ss_mil_grad(m, i) - m->grads),
                     ss_ckpt_numel(&m->table[i]));
    }
    float lg[SS_MIL_CLASSES];
    double loss = NAN;
    if (!rc) {
        rc = ss_mil_forward(m, x, n, 0, lg, att);
        if (!rc) {
            printf("%s n %5d y %d  eval:  logits %.2g  attention %.2g\n", g, n, label,
                   compare(g, "eval logits", lg, rlog, SS_MIL_CLASSES, 0),
                   compare(g, "eval attention", att, ratt, (size_t)n, 0));
        }
        ss_mil_zero_grad(m);
        rc = rc || ss_mil_forward(m, x, n, 1, lg, att) || ss_mil_backward(m, label, &loss);
        if (rc) ss_error_report("forward/backward failed");
    }
    if (!rc) {
        float fl = (float)loss;
        double gscale = 0.0, worst = 0.0;
        const char *worst_name = "";
        for (size_t k = 0; k < m->num_params; k++)
            gscale = fmax(gscale, fabs(rg[k]));
        printf("%s n %5d y %d  train: logits %.2g  attention %.2g  loss %.2g\n", g, n, label,
               compare(g, "logits", lg, rlog, SS_MIL_CLASSES, 0),
               compare(g, "attention", att, ratt, (size_t)n, 0),
               compare(g, "loss", &fl, &rloss, 1, 0));
        for (int i = 0; i < m->table_len; i++) {
            size_t off = ss_mil_grad(m, i) - m->grads;
            snprintf(name, sizeof name, "grad %s", m->table[i].name);
            double w = compare(g, name, m->grads + off, rg + off, ss_ckpt_numel(&m->table[i]),
                               1e-2 * gscale);
            if (w >= worst) worst = w, worst_name = m->table[i].name;
            if (getenv("SS_TEST_VERBOSE")) printf("  %-40s %.2g\n", m->table[i].name, w);
        }
        printf("%s n %5d y %d  train: worst gradient %.2g (%s)\n", g, n, label, worst, worst_name);
    }
    free(x), free(att), free(ratt), free(rg);
    return rc ? -1 : 0;
}

/* The PyTorch module's state_dict keys (a fixed-length string attribute, one key a line) must
 * be the model's table, in order. */
static int check_order(hid_t f, const ss_mil_t *m)
{
    hid_t a = H5Aopen(f, "state_dict", H5P_DEFAULT);
    if (a < 0) return fprintf(stderr, "mil_parity: attribute state_dict is missing\n"), -1;
    hid_t t = H5Aget_type(a);
    size_t len = H5Tget_size(t);
    char *s = calloc(len + 1, 1);
    int rc = H5Tis_variable_str(t) > 0 || H5Aread(a, t, s) < 0 ? -1 : 0;
    H5Tclose(t);
    H5Aclose(a);
    char *save = NULL, *key = rc ? NULL : strtok_r(s, "\n", &save);
    for (int i = 0; !rc && i < m->table_len; i++, key = strtok_r(NULL, "\n", &save))
        if (!key || strcmp(key, m->table[i].name)) {
            fprintf(stderr, "MISMATCH state_dict order at %d: PyTorch '%s', slidestream '%s'\n", i,
                    key ? key : "(end)", m->table[i].name);
            rc = -1;
        }
    if (!rc && key) {
        fprintf(stderr, "MISMATCH state_dict: PyTorch has a further key '%s'\n", key);
        rc = -1;
    }
    free(s);
    if (!rc) printf("state_dict: %d keys in the module's order\n", m->table_len);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: mil_parity CKPT BAGS.h5\n");
        return 2;
    }
    ss_mil_t *m = ss_mil_load(argv[1]);
    if (!m) {
        ss_error_report("cannot load the checkpoint");
        return 1;
    }
    hid_t f = H5Fopen(argv[2], H5F_ACC_RDONLY, H5P_DEFAULT);
    int count = 0, rc = f < 0;
    rc = rc || read_attr(f, "count", H5T_NATIVE_INT, &count) ||
         read_attr(f, "rtol", H5T_NATIVE_DOUBLE, &tol_rel) ||
         read_attr(f, "atol", H5T_NATIVE_DOUBLE, &tol_abs);
    if (rc) fprintf(stderr, "mil_parity: %s: not a bag file\n", argv[2]);
    rc = rc || check_order(f, m);
    printf("%s: %s, dim %d, hidden %d, attn %d, heads %d; %d bags; rtol %g, atol %g\n", argv[1],
           ss_mil_arch_name(m->cfg.arch), m->cfg.dim, m->cfg.hidden, m->cfg.attn, m->cfg.heads,
           count, tol_rel, tol_abs);
    for (int b = 0; !rc && b < count; b++)
        rc = run_bag(m, f, b);
    if (f >= 0) H5Fclose(f);
    ss_mil_destroy(&m);
    if (rc) return 1;
    if (failures) {
        fprintf(stderr, "mil_parity: %d element(s) differ from PyTorch beyond the tolerance\n",
                failures);
        return 1;
    }
    printf("mil_parity: every tensor matches PyTorch\n");
    return 0;
}
