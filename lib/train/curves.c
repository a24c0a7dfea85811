/* The training curves: <dir>/steps.csv (one row per step, pretrain.c) drawn as <dir>/curves.svg.
 * The CSV is read back whole each time (a float per column per step: 100 000 steps are a few
 * MB), so a resumed run's picture shows the steps of every earlier call too. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/error.h"
#include "slidestream/plot.h"
#include "train_internal.h"

#define DOM "train"

enum { C_STEP, C_EPOCH, C_BATCH, C_LR, C_LOSS, C_CON, C_SIM, C_CE, C_COS, C_CONFLICT, C_N1,
       C_N2, C_BEFORE, C_AFTER, C_SCALE, C_IPS, C_COUNT };

typedef struct {
    double *col[C_COUNT];
    size_t n, cap;
} table_t;

static int table_push(table_t *t, const double *row)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 1024;
        for (int c = 0; c < C_COUNT; c++) {
            double *p = realloc(t->col[c], cap * sizeof(double));
            if (!p) return ss_error(DOM, "out of memory");
            t->col[c] = p;
        }
        t->cap = cap;
    }
    for (int c = 0; c < C_COUNT; c++) t->col[c][t->n] = row[c];
    t->n++;
    return 0;
}

static int has_data(const double *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == v[i]) return 1;
    return 0;
}

int ss_train_curves(const char *dir)
{
    char path[4096], svg[4096];
    snprintf(path, sizeof path, "%s/steps.csv", dir);
    snprintf(svg, sizeof svg, "%s/curves.svg", dir);
    FILE *f = fopen(path, "r");
    if (!f) return ss_error_system(DOM, "cannot read %s", path);
    table_t t = {0};
    char line[4096];
    int rc = 0, first = 1;
    while (!rc && fgets(line, sizeof line, f)) {
        if (first) { /* header */
            first = 0;
            continue;
        }
        double row[C_COUNT];
        char *p = line;
        int c = 0;
        for (; c < C_COUNT && *p; c++) {
            char *end;
            row[c] = strtod(p, &end); /* "nan" parses as NaN */
            if (end == p) break;
            p = *end == ',' ? end + 1 : end;
        }
        if (c == C_COUNT) rc = table_push(&t, row);
    }
    fclose(f);
    ss_plot_t *pl = rc ? NULL : ss_plot_new("encoder training", 2);
    if (!rc && !pl) rc = -1;
    if (!rc) {
        const double *x = t.col[C_STEP];
        size_t n = t.n;
        int smooth = n > 200 ? (int)(n / 100) : (n > 20 ? 5 : 1);
        int pl_loss = ss_plot_panel(pl, "losses", "step", "loss", SS_PLOT_LOGY);
        int pl_cos = ss_plot_panel(pl, "cosine between the task gradients", "step",
                                   "cos(g1, g2)", 0);
        int pl_norm = ss_plot_panel(pl, "gradient norms", "step", "L2 norm", SS_PLOT_LOGY);
        int pl_lr = ss_plot_panel(pl, "learning rate", "step", "lr", 0);
        int pl_ips = ss_plot_panel(pl, "throughput", "step", "images / s", 0);
        static const struct {
            int panel, col;
            const char *name;
        } series[] = {
            {0, C_LOSS, "total"},          {0, C_CON, "NT-Xent"},
            {0, C_SIM, "similarity"},      {0, C_CE, "cross-entropy"},
            {1, C_COS, "cos(g1, g2)"},     {2, C_N1, "|g1| (NT-Xent)"},
            {2, C_N2, "|g2| (similarity)"}, {2, C_BEFORE, "|g1 + g2| before surgery"},
            {2, C_AFTER, "|g| after surgery"}, {3, C_LR, "lr"},
            {4, C_IPS, "images / s"},
        };
        int panels[] = {pl_loss, pl_cos, pl_norm, pl_lr, pl_ips};
        for (int k = 0; k < 5; k++)
            if (panels[k] < 0) rc = -1;
        for (size_t k = 0; !rc && k < sizeof series / sizeof series[0]; k++) {
            const double *y = t.col[series[k].col];
            if (n && !has_data(y, n)) continue; /* a loss this method does not have */
            int sm = series[k].col == C_LR ? 1 : smooth;
            rc = ss_plot_series(pl, panels[series[k].panel], series[k].name, x, y, n, sm);
        }
        if (!rc) rc = ss_plot_write(pl, svg);
    }
    ss_plot_destroy(&pl);
    for (int c = 0; c < C_COUNT; c++) free(t.col[c]);
    return rc;
}
