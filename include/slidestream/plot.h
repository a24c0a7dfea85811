/* slidestream — line plots as standalone SVG files (training curves and similar).
 *
 * A figure is a grid of 1-3 columns of panels, filled row by row; each panel has a title, axis
 * labels, optional log-scale y and named series drawn in a colour-blind-safe palette with a
 * legend. Series data are copied when added, already reduced: a series of more than
 * SS_PLOT_MAX_POINTS points keeps the minimum and maximum of each of SS_PLOT_MAX_POINTS / 2
 * buckets, so a 100 000-step run gives a file of a few hundred kB and the figure holds little
 * memory however long the run. NaN (and, on a log axis, non-positive) values are gaps.
 *
 *   ss_plot_t *p = ss_plot_new("run 7", 2);
 *   int loss = ss_plot_panel(p, "loss", "step", "loss", SS_PLOT_LOGY);
 *   if (loss < 0 || ss_plot_series(p, loss, "total", x, y, n, 100) || ss_plot_write(p, path))
 *       ...ss_error_report...
 *   ss_plot_destroy(&p);
 */
#ifndef SLIDESTREAM_PLOT_H
#define SLIDESTREAM_PLOT_H

#include <stddef.h>

/* Points kept per series (and per moving average) after min/max decimation. */
#define SS_PLOT_MAX_POINTS 2000

/* ss_plot_panel flags */
#define SS_PLOT_LOGY 1 /* log10 y axis; values <= 0 are skipped and the panel says how many */
#define SS_PLOT_LOGX 2 /* log10 x axis (e.g. witness rates); x <= 0 are skipped likewise */
#define SS_PLOT_MARKERS 4 /* a dot at every point: for series of a few points (a grid's results) */

typedef struct ss_plot ss_plot_t;

/* A figure with an optional title (NULL for none) and `columns` panels per row (1..3).
 * NULL (with ss_error) on a bad column count or no memory. */
ss_plot_t *ss_plot_new(const char *title, int columns);

/* Free the figure and set *pp to NULL; NULL and *pp == NULL are fine. */
void ss_plot_destroy(ss_plot_t **pp);

/* Append a panel; any text may be NULL. Returns the panel's index (0, 1, ...) or -1. */
int ss_plot_panel(ss_plot_t *p, const char *title, const char *xlabel, const char *ylabel,
                  int flags);

/* Fix panel `panel`'s y range to [lo, hi] (lo < hi; in data units, also on a log axis) instead
 * of the data's range, e.g. 0..1 for scores; values outside are clipped. */
int ss_plot_ylim(ss_plot_t *p, int panel, double lo, double hi);

/* Add series `name` (x[i], y[i]), i < n, to panel `panel`; the arrays are copied. x should be
 * non-decreasing (steps, epochs); points whose x or y is NaN are gaps. With smooth > 1 the
 * series is drawn faint and a centred moving average over `smooth` points (gaps excluded) is
 * drawn over it as a thicker line. n == 0 is allowed: the legend then says "no data". */
int ss_plot_series(ss_plot_t *p, int panel, const char *name, const double *x, const double *y,
                   size_t n, int smooth);

/* Write the figure as a standalone SVG to `path`, through a temporary file in the same
 * directory renamed into place, so a reader (a browser refreshing it) never sees half a file. */
int ss_plot_write(const ss_plot_t *p, const char *path);

#endif
