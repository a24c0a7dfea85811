/* Line plots: building the figure (see include/slidestream/plot.h).
 *
 * The figure owns copies of its text and of each series, reduced when added (moving average
 * computed first from the full series, then min/max per bucket), so memory and output stay
 * bounded by SS_PLOT_MAX_POINTS per series however long the run. Drawing is plot_svg.c.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plot_private.h"
#include "slidestream/error.h"

static char *dup_text(const char *s)
{
    return strdup(s ? s : "");
}

ss_plot_t *ss_plot_new(const char *title, int columns)
{
    if (columns < 1 || columns > 3) {
        ss_error("plot", "%d columns: want 1 to 3", columns);
        return NULL;
    }
    ss_plot_t *p = calloc(1, sizeof *p);
    if (!p || !(p->title = dup_text(title))) {
        free(p);
        ss_error("plot", "out of memory");
        return NULL;
    }
    p->columns = columns;
    return p;
}

static void line_free(plot_line_t *l)
{
    free(l->x);
    free(l->y);
    l->x = l->y = NULL;
    l->n = 0;
}

void ss_plot_destroy(ss_plot_t **pp)
{
    if (!pp || !*pp) return;
    ss_plot_t *p = *pp;
    for (int i = 0; i < p->npanels; i++) {
        plot_panel_t *pa = &p->panels[i];
        for (int j = 0; j < pa->nseries; j++) {
            free(pa->series[j].name);
            line_free(&pa->series[j].raw);
            line_free(&pa->series[j].avg);
        }
        free(pa->series);
        free(pa->title);
        free(pa->xlabel);
        free(pa->ylabel);
    }
    free(p->panels);
    free(p->title);
    free(p);
    *pp = NULL;
}

int ss_plot_panel(ss_plot_t *p, const char *title, const char *xlabel, const char *ylabel,
                  int flags)
{
    if (flags & ~(SS_PLOT_LOGY | SS_PLOT_LOGX | SS_PLOT_MARKERS)) return ss_error("plot", "panel flags 0x%x: unknown bits", flags);
    plot_panel_t *grown = realloc(p->panels, (size_t)(p->npanels + 1) * sizeof *grown);
    if (!grown) return ss_error("plot", "out of memory");
    p->panels = grown;
    plot_panel_t *pa = &p->panels[p->npanels];
    memset(pa, 0, sizeof *pa);
    pa->flags = flags;
    pa->title = dup_text(title);
    pa->xlabel = dup_text(xlabel);
    pa->ylabel = dup_text(ylabel);
    if (!pa->title || !pa->xlabel || !pa->ylabel) {
        free(pa->title);
        free(pa->xlabel);
        free(pa->ylabel);
        return ss_error("plot", "out of memory");
    }
    return p->npanels++;
}

/* Keep at most SS_PLOT_MAX_POINTS + a few points of (x, y): per bucket of consecutive points
 * the lowest and the highest (so spikes and the envelope survive) in their original order,
 * plus a gap where the bucket had one. Short series are copied as they are. */
static int decimate(const double *x, const double *y, size_t n, plot_line_t *out)
{
    size_t nb = SS_PLOT_MAX_POINTS / 2, cap = n <= SS_PLOT_MAX_POINTS ? n : 3 * nb;
    out->n = 0;
    if (!n) return 0;
    out->x = malloc(cap * sizeof(double));
    out->y = malloc(cap * sizeof(double));
    if (!out->x || !out->y) {
        line_free(out);
        return ss_error("plot", "out of memory");
    }
    if (n <= SS_PLOT_MAX_POINTS) {
        memcpy(out->x, x, n * sizeof(double));
        memcpy(out->y, y, n * sizeof(double));
        out->n = n;
        return 0;
    }
    for (size_t b = 0; b < nb; b++) {
        size_t lo = b * n / nb, hi = (b + 1) * n / nb;
        size_t imin = SIZE_MAX, imax = SIZE_MAX, igap = SIZE_MAX;
        for (size_t i = lo; i < hi; i++) {
            if (!isfinite(x[i]) || !isfinite(y[i])) {
                if (igap == SIZE_MAX) igap = i;
                continue;
            }
            if (imin == SIZE_MAX || y[i] < y[imin]) imin = i;
            if (imax == SIZE_MAX || y[i] > y[imax]) imax = i;
        }
        size_t keep[3] = {imin, imax, igap};
        /* three entries in index order (SIZE_MAX, i.e. absent, sorts last) */
        for (int a = 0; a < 2; a++)
            for (int c = 0; c < 2 - a; c++)
                if (keep[c] > keep[c + 1]) {
                    size_t t = keep[c];
                    keep[c] = keep[c + 1];
                    keep[c + 1] = t;
                }
        for (int k = 0; k < 3; k++) {
            if (keep[k] == SIZE_MAX || (k && keep[k] == keep[k - 1])) continue;
            int gap = keep[k] == igap;
            out->x[out->n] = gap ? NAN : x[keep[k]];
            out->y[out->n] = gap ? NAN : y[keep[k]];
            out->n++;
        }
    }
    return 0;
}

/* Centred moving average over `window` points of the finite values; NaN where y is a gap.
 * Prefix sums make it O(n) for any window. */
static double *moving_average(const double *x, const double *y, size_t n, int window)
{
    double *s = malloc((n + 1) * sizeof *s), *c = malloc((n + 1) * sizeof *c);
    double *out = malloc(n * sizeof *out);
    if (!s || !c || !out) {
        free(s);
        free(c);
        free(out);
        ss_error("plot", "out of memory");
        return NULL;
    }
    s[0] = c[0] = 0;
    for (size_t i = 0; i < n; i++) {
        int ok = isfinite(x[i]) && isfinite(y[i]);
        s[i + 1] = s[i] + (ok ? y[i] : 0);
        c[i + 1] = c[i] + ok;
    }
    size_t left = (size_t)(window - 1) / 2, right = (size_t)window / 2;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) {
            out[i] = NAN;
            continue;
        }
        size_t a = i > left ? i - left : 0, b = i + right + 1 < n ? i + right + 1 : n;
        out[i] = (s[b] - s[a]) / (c[b] - c[a]);
    }
    free(s);
    free(c);
    return out;
}

int ss_plot_ylim(ss_plot_t *p, int panel, double lo, double hi)
{
    if (panel < 0 || panel >= p->npanels)
        return ss_error("plot", "y range: no panel %d (the figure has %d)", panel, p->npanels);
    plot_panel_t *pa = &p->panels[panel];
    if (!(lo < hi) || !isfinite(lo) || !isfinite(hi) || ((pa->flags & SS_PLOT_LOGY) && lo <= 0))
        return ss_error("plot", "y range [%g, %g]: want finite lo < hi (lo > 0 on a log axis)", lo,
                        hi);
    pa->has_ylim = 1;
    pa->ylim_lo = lo;
    pa->ylim_hi = hi;
    return 0;
}

int ss_plot_series(ss_plot_t *p, int panel, const char *name, const double *x, const double *y,
                   size_t n, int smooth)
{
    if (panel < 0 || panel >= p->npanels)
        return ss_error("plot", "series '%s': no panel %d (the figure has %d)", name ? name : "",
                        panel, p->npanels);
    if (n && (!x || !y)) return ss_error("plot", "series '%s': no data arrays", name ? name : "");
    plot_panel_t *pa = &p->panels[panel];
    plot_series_t *grown = realloc(pa->series, (size_t)(pa->nseries + 1) * sizeof *grown);
    if (!grown) return ss_error("plot", "out of memory");
    pa->series = grown;
    plot_series_t *s = &pa->series[pa->nseries];
    memset(s, 0, sizeof *s);
    s->n_input = n;
    s->window = n > 1 && smooth > 1 ? smooth : 0;

    /* On a log axis a value <= 0 has no place: a gap, counted so that the panel can say so. */
    const double *yy = y;
    double *ylog = NULL;
    if ((pa->flags & (SS_PLOT_LOGY | SS_PLOT_LOGX)) && n) {
        if (!(ylog = malloc(n * sizeof *ylog))) return ss_error("plot", "out of memory");
        for (size_t i = 0; i < n; i++) {
            ylog[i] = y[i];
            if (((pa->flags & SS_PLOT_LOGY) && y[i] <= 0) ||
                ((pa->flags & SS_PLOT_LOGX) && x[i] <= 0)) {
                ylog[i] = NAN;
                pa->skipped++;
            }
        }
        yy = ylog;
    }
    int rc = 0;
    double *avg = NULL;
    if (!(s->name = dup_text(name)))
        rc = ss_error("plot", "out of memory");
    else if (decimate(x, yy, n, &s->raw))
        rc = -1;
    else if (s->window &&
             (!(avg = moving_average(x, yy, n, s->window)) || decimate(x, avg, n, &s->avg)))
        rc = -1;
    free(avg);
    free(ylog);
    if (rc) {
        free(s->name);
        line_free(&s->raw);
        line_free(&s->avg);
        return -1;
    }
    pa->nseries++;
    return 0;
}
