/* Private to lib/core/plot*.c: the figure's data model, shared by plot.c (building it),
 * plot_axis.c (ranges and ticks) and plot_svg.c (drawing it). Not installed, not for callers. */
#ifndef SS_PLOT_PRIVATE_H
#define SS_PLOT_PRIVATE_H

#include <stddef.h>

#include "slidestream/plot.h"

#define MAX_TICKS 40
#define TICK_CHARS 24
/* Average advance of a digit at the tick-label size (10 px sans): for label collisions. */
#define TICK_CHAR_W 6.2

typedef struct {
    double *x, *y; /* [n]; a NaN in either is a gap */
    size_t n;
} plot_line_t;

typedef struct {
    char *name;
    plot_line_t raw, avg; /* avg.n == 0 without smoothing */
    int window;
    size_t n_input;
} plot_series_t;

typedef struct {
    char *title, *xlabel, *ylabel;
    int flags;
    plot_series_t *series;
    int nseries;
    size_t skipped; /* non-positive values on a log axis */
    int has_ylim;   /* ss_plot_ylim: a fixed y range */
    double ylim_lo, ylim_hi;
} plot_panel_t;

struct ss_plot {
    char *title;
    int columns;
    plot_panel_t *panels;
    int npanels;
};

typedef struct {
    double lo, hi; /* drawn range, in log10 units on a log axis */
    int log;
    int integer; /* the data are whole numbers (steps, epochs): no ticks between them */
    int nticks;
    double tick[MAX_TICKS]; /* in axis units */
    char label[MAX_TICKS][TICK_CHARS];
    double label_w; /* widest label, px */
} plot_axis_t;

/* Range [lo, hi] of the data (in axis units: log10 on a log axis), padded by `pad` of its
 * width on each side and made non-empty; then ticks as dense as `length` px allows without
 * their labels touching (`horizontal`: labels side by side; else stacked). */
void ss_plot_axis_make(plot_axis_t *a, double lo, double hi, int log, int integer, double pad,
                       double length, int horizontal);

/* Where v (axis units) lies between the axis' ends, 0..1. */
double ss_plot_axis_frac(const plot_axis_t *a, double v);

#endif
