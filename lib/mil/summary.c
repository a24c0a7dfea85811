/* Mean ± standard deviation of runs' metrics (mil_eval.h, ss_mil_summarize): the metrics.json
 * files of several runs (seeds) of `mil predict`, the figure a paper's table reports. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/error.h"
#include "slidestream/mil_eval.h"

#define DOM "mil"

static const char *const metric_names[] = {"accuracy", "f1", "roc_auc", "recall_at_k"};
#define NMETRICS (sizeof metric_names / sizeof metric_names[0])

double ss_mil_metrics_value(const char *text, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(text, pat);
    if (!p) return NAN;
    p += strlen(pat);
    while (*p == ' ') p++;
    char *end;
    double v = strtod(p, &end);
    return end == p ? NAN : v;
}

int ss_mil_summarize(const char *const *runs, int n, FILE *table, const char *out_json)
{
    if (n < 1) return ss_error(DOM, "no runs to summarise");
    double *v = malloc((size_t)n * NMETRICS * sizeof *v);
    if (!v) return ss_error(DOM, "out of memory");
    int rc = 0;
    for (int r = 0; r < n && !rc; r++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/metrics.json", runs[r]);
        FILE *f = fopen(path, "r");
        if (!f) {
            rc = ss_error_system(DOM, "cannot read %s", path);
            break;
        }
        char text[8192];
        size_t len = fread(text, 1, sizeof text - 1, f);
        text[len] = 0;
        fclose(f);
        if (!strstr(text, "\"bags\"")) {
            rc = ss_error(DOM, "%s is not the metrics.json of `mil predict`", path);
            break;
        }
        for (size_t k = 0; k < NMETRICS; k++) v[k * n + r] = ss_mil_metrics_value(text, metric_names[k]);
    }
    FILE *out = NULL;
    char tmp[4200];
    if (!rc && out_json) {
        snprintf(tmp, sizeof tmp, "%s.tmp", out_json);
        if (!(out = fopen(tmp, "w"))) rc = ss_error_system(DOM, "cannot write %s", tmp);
        else fprintf(out, "{\n  \"runs\": %d", n);
    }
    for (size_t k = 0; !rc && k < NMETRICS; k++) {
        double m, s;
        ss_eval_mean_std(v + k * n, (size_t)n, &m, &s);
        int finite = 0;
        for (int r = 0; r < n; r++) finite += isfinite(v[k * n + r]);
        if (table) {
            if (finite) fprintf(table, "%-12s %.4f ± %.4f  (%d runs)\n", metric_names[k], m, s, finite);
            else fprintf(table, "%-12s -\n", metric_names[k]);
        }
        if (out) {
            if (finite)
                fprintf(out, ",\n  \"%s\": {\"mean\": %.6f, \"std\": %.6f, \"runs\": %d}",
                        metric_names[k], m, s, finite);
            else
                fprintf(out, ",\n  \"%s\": null", metric_names[k]);
        }
    }
    if (out) {
        fprintf(out, "\n}\n");
        if (fclose(out) && !rc) rc = ss_error_system(DOM, "cannot write %s", tmp);
        if (!rc && rename(tmp, out_json)) rc = ss_error_system(DOM, "cannot rename %s", tmp);
    }
    free(v);
    return rc;
}
