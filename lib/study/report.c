/* The study's report: results.csv (every finished run), the paper's two tables (bag F1 and
 * Recall@K, mean ± sample std over seeds, each cell naming the runs it averages) as CSV and
 * Markdown, Figure 1 (both metrics against witness rate, a line per method) and report.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/bag.h"
#include "slidestream/error.h"
#include "slidestream/log.h"
#include "slidestream/mil_eval.h"
#include "slidestream/plot.h"
#include "slidestream/study.h"
#include "study_internal.h"

#define DOM "study"

const char *study_method_label(const char *m)
{
    static const struct {
        const char *name, *label;
    } names[] = {{"supervised", "Weakly supervised"}, {"simclr", "SimCLR"},
                 {"weaksupcon", "WeakSupCon"},        {"pcgrad", "SLAM-AGS w/o rescaling"},
                 {"slam-ags", "SLAM-AGS"},            {"cagrad", "CAGrad"},
                 {"mgda", "MGDA"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(names[i].name, m)) return names[i].label;
    return m;
}

typedef struct {
    study_result_t *r; /* [method][rate][seed], have[] says which are finished */
    unsigned char *have;
    int nm, nr, ns;
} grid_t;

static size_t at(const grid_t *g, int m, int r, int s)
{
    return ((size_t)m * g->nr + r) * g->ns + s;
}

/* A growing text buffer (the tables are small). */
typedef struct {
    char *s;
    size_t n, cap;
    int oom;
} text_t;

static void put(text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static void put(text_t *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(t->s ? t->s + t->n : NULL, t->s ? t->cap - t->n : 0, fmt, ap);
        va_end(ap);
        if (w < 0) {
            t->oom = 1;
            return;
        }
        if (t->s && t->n + (size_t)w < t->cap) {
            t->n += (size_t)w;
            return;
        }
        size_t cap = (t->cap + (size_t)w + 1) * 2;
        char *s = realloc(t->s, cap);
        if (!s) {
            t->oom = 1;
            return;
        }
        t->s = s;
        t->cap = cap;
    }
}

static double metric(const study_result_t *r, int which)
{
    return which ? r->recall : r->f1;
}

/* mean ± std over the finished seeds of (method, rate); n = how many */
static void cell(const grid_t *g, int m, int r, int which, double *mean, double *sd, int *n)
{
    double v[256];
    *n = 0;
    for (int s = 0; s < g->ns && *n < 256; s++)
        if (g->have[at(g, m, r, s)]) v[(*n)++] = metric(&g->r[at(g, m, r, s)], which);
    ss_eval_mean_std(v, (size_t)*n, mean, sd);
}

/* table-<metric>.csv and .md; the Markdown is also appended to the report. */
static int write_table(const ss_study_config_t *c, const grid_t *g, const char *out_dir, int which,
                       text_t *report)
{
    const char *stem = which ? "table-recall" : "table-f1";
    char path[4200];
    text_t csv = {0}, mdt = {0}, *md = &mdt;
    put(&csv, "method,witness_rate,mean,std,n,runs\n");
    put(md, "| Method |");
    for (int r = 0; r < g->nr; r++) put(md, " WR %g%% |", 100 * c->rates[r]);
    put(md, "\n|---|");
    for (int r = 0; r < g->nr; r++) put(md, "---|");
    put(md, "\n");
    for (int m = 0; m < g->nm; m++) {
        put(md, "| %s |", study_method_label(c->methods[m]));
        for (int r = 0; r < g->nr; r++) {
            double mean, sd;
            int n;
            cell(g, m, r, which, &mean, &sd, &n);
            put(&csv, "%s,%.6g,", c->methods[m], c->rates[r]);
            if (n)
                put(&csv, "%.6f,%.6f,%d,", mean, sd, n);
            else
                put(&csv, ",,0,");
            for (int s = 0, k = 0; s < g->ns; s++)
                if (g->have[at(g, m, r, s)]) {
                    char d[256];
                    ss_study_run_dir(d, sizeof d, c->rates[r], s + 1, c->methods[m]);
                    put(&csv, "%s%s", k++ ? ";" : "", d);
                }
            put(&csv, "\n");
            if (!n)
                put(md, " — |");
            else if (n == 1)
                put(md, " %.3f |", mean);
            else
                put(md, " %.3f ± %.3f |", mean, sd);
        }
        put(md, "\n");
    }
    int rc = csv.oom || md->oom ? ss_error(DOM, "out of memory") : 0;
    snprintf(path, sizeof path, "%s/%s.csv", out_dir, stem);
    if (!rc) rc = study_write_file(path, csv.s);
    snprintf(path, sizeof path, "%s/%s.md", out_dir, stem);
    if (!rc) rc = study_write_file(path, md->s);
    if (!rc) put(report, "%s", md->s);
    free(csv.s);
    free(md->s);
    return rc;
}

/* One panel of Figure 1: metric `which` (0 F1, 1 Recall@K) against witness rate. */
static int figure_panel(ss_plot_t *p, const ss_study_config_t *c, const grid_t *g, int which)
{
    char ylab[64];
    snprintf(ylab, sizeof ylab, "Recall@%d", c->top_k);
    int panel = ss_plot_panel(p, which ? "Top-K retrieval of witness cells" : "Bag F1",
                              "witness rate (%, log scale)", which ? ylab : "bag F1",
                              SS_PLOT_LOGX | SS_PLOT_MARKERS);
    if (panel < 0 || ss_plot_ylim(p, panel, 0, 1)) return -1;
    for (int m = 0; m < g->nm; m++) {
        double x[SS_STUDY_MAX_RATES], y[SS_STUDY_MAX_RATES];
        size_t k = 0;
        for (int r = g->nr - 1; r >= 0; r--) { /* ascending witness rate */
            double mean, sd;
            int n;
            cell(g, m, r, which, &mean, &sd, &n);
            x[k] = 100 * c->rates[r];
            y[k++] = n ? mean : NAN;
        }
        if (ss_plot_series(p, panel, study_method_label(c->methods[m]), x, y, k, 0)) return -1;
    }
    return 0;
}

/* figure-1.svg (both panels) and figure-1-f1.svg, figure-1-recall.svg (one each). */
static int write_figure(const ss_study_config_t *c, const grid_t *g, const char *out_dir)
{
    static const char *const name[3] = {"figure-1", "figure-1-f1", "figure-1-recall"};
    const char *title = c->seeds > 1 ? "mean over seeds (tables: ± std)" : NULL;
    int rc = 0;
    for (int f = 0; !rc && f < 3; f++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s.svg", out_dir, name[f]);
        ss_plot_t *p = ss_plot_new(title, f ? 1 : 2);
        rc = p ? 0 : -1;
        for (int which = 0; !rc && which < 2; which++)
            if (!f || f == which + 1) rc = figure_panel(p, c, g, which);
        if (!rc) rc = ss_plot_write(p, path);
        ss_plot_destroy(&p);
    }
    return rc;
}

int ss_study_report(const ss_study_config_t *c, const char *out_dir)
{
    grid_t g = {.nm = c->n_methods, .nr = c->n_rates, .ns = c->seeds};
    size_t total = (size_t)g.nm * g.nr * g.ns;
    g.r = calloc(total, sizeof *g.r);
    g.have = calloc(total, 1);
    text_t res = {0}, rep = {0};
    int rc = g.r && g.have ? 0 : ss_error(DOM, "out of memory");
    int finished = 0;
    double t_pre = 0, t_emb = 0, t_mil = 0;
    put(&res, STUDY_RESULT_HEADER "\n");
    for (int m = 0; !rc && m < g.nm; m++)
        for (int r = 0; !rc && r < g.nr; r++)
            for (int s = 0; !rc && s < g.ns; s++) {
                char d[256], dir[4400];
                ss_study_run_dir(d, sizeof d, c->rates[r], s + 1, c->methods[m]);
                snprintf(dir, sizeof dir, "%s/%s", out_dir, d);
                study_result_t *x = &g.r[at(&g, m, r, s)];
                int got = study_result_read(dir, x);
                if (got < 0) rc = -1;
                if (got) continue;
                g.have[at(&g, m, r, s)] = 1;
                finished++;
                t_pre += x->pretrain_s, t_emb += x->embed_s, t_mil += x->mil_s;
                put(&res, "%s,%.6g,%d,%.6f,%.6f,%.6f,%.6f,%d,%d,%d,%.1f,%.1f,%.1f\n", x->method,
                    x->rate, x->seed, x->f1, x->accuracy, x->auc, x->recall, x->top_k,
                    x->witnesses, x->test_bags, x->pretrain_s, x->embed_s, x->mil_s);
            }
    char path[4200];
    snprintf(path, sizeof path, "%s/results.csv", out_dir);
    if (!rc) rc = res.oom ? ss_error(DOM, "out of memory") : study_write_file(path, res.s);

    /* report.md: settings, definitions, both tables, wall times */
    char settings[8192] = "";
    snprintf(path, sizeof path, "%s/study.conf", out_dir);
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(settings, 1, sizeof settings - 1, f);
        settings[n] = 0;
        fclose(f);
    }
    put(&rep, "# Witness-rate study\n\n%d of %d runs finished (%d methods × %d witness rates × %d "
              "seeds).\n\n",
        finished, (int)total, g.nm, g.nr, g.ns);
    put(&rep, "## What the numbers are\n\n"
              "- Each run: bags simulated from the cell folder (half negative, half positive with "
              "round(WR × %d) abnormal cells; test cells disjoint from training cells, and from "
              "disjoint source images when the folder records them), the encoder pretrained by "
              "the method on the training bags' cells from bag labels alone, every bag embedded "
              "(pooled features), %s trained on the training bags (a validation split drawn from "
              "them selects the epoch) and evaluated on the %d test bags.\n"
              "- **Bag F1**: binary F1 of the test bags' predictions (positive = abnormal bag).\n"
              "- **Recall@%d**: for each positive test bag, the witness cells among its %d most "
              "attended cells divided by min(%d, witnesses in the bag); the mean over positive "
              "test bags. Attention drawn at random scores max(K, witnesses) / bag size on "
              "average: %.2f here for bags with at most K witnesses.\n"
              "- Table cells: mean ± sample standard deviation (n − 1) over the seeds that "
              "finished; one value when only one seed ran. table-*.csv names the runs of each "
              "cell.\n\n",
        c->bag_size, c->arch, c->test_bags, c->top_k, c->top_k, c->top_k,
        c->top_k < c->bag_size ? (double)c->top_k / c->bag_size : 1.0);
    put(&rep, "Witnesses per positive bag:");
    for (int r = 0; r < g.nr; r++)
        put(&rep, "%s WR %g%% → %d", r ? "," : "", 100 * c->rates[r],
            ss_bag_witness_count(c->rates[r], c->bag_size));
    put(&rep, " (bags of %d; %d training bags, of which a fifth validate the aggregator).\n\n",
        c->bag_size, c->train_bags);
    put(&rep, "## Bag F1 (paper Table 2)\n\n");
    if (!rc) rc = write_table(c, &g, out_dir, 0, &rep);
    put(&rep, "\n## Recall@%d (paper Table 3)\n\n", c->top_k);
    if (!rc) rc = write_table(c, &g, out_dir, 1, &rep);
    put(&rep, "\n![Figure 1](figure-1.svg)\n\n## Wall time of the finished runs\n\n"
              "| Part | Total | Mean per run |\n|---|---|---|\n");
    double k = finished ? finished : 1;
    put(&rep, "| Pretraining | %.0f s | %.0f s |\n| Embedding | %.0f s | %.0f s |\n"
              "| Aggregator training and test | %.0f s | %.0f s |\n",
        t_pre, t_pre / k, t_emb, t_emb / k, t_mil, t_mil / k);
    put(&rep, "\n(The bags and crop stores of each witness rate and seed are made once, before "
              "their runs; results.csv has every run's times.)\n\n## Settings\n\n```\n%s```\n",
        settings);
    snprintf(path, sizeof path, "%s/report.md", out_dir);
    if (!rc) rc = rep.oom ? ss_error(DOM, "out of memory") : study_write_file(path, rep.s);
    if (!rc) rc = write_figure(c, &g, out_dir);
    if (!rc && !c->quiet)
        ss_info("study: %d of %d runs finished; tables %s/table-{f1,recall}.{csv,md}, figure "
                "%s/figure-1.svg, report %s/report.md",
                finished, (int)total, out_dir, out_dir, out_dir);
    free(res.s), free(rep.s), free(g.r), free(g.have);
    return rc;
}
