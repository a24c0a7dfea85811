/* Line plots: axis ranges, "nice" ticks and their labels (linear and log10). Pure computation
 * on a plot_axis_t the caller owns. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "plot_private.h"

/* 1, 2 or 5 times a power of ten, near range / target. */
static double nice_step(double range, int target)
{
    double raw = range / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

/* "1.5e-05" -> "1.5e-5", "2e+06" -> "2e6" */
static void compact_exponent(char *s)
{
    char *e = strchr(s, 'e');
    if (!e) return;
    char *d = e + 1, *r = e + 1;
    if (*r == '+')
        r++;
    else if (*r == '-')
        *d++ = *r++;
    while (*r == '0' && r[1])
        r++;
    memmove(d, r, strlen(r) + 1);
}

/* The label of a linear-axis tick `v` among ticks `step` apart, with as many decimals as the
 * step needs and no more, so that neighbouring labels differ and stay short. */
static void linear_label(char *out, double v, double step, double maxabs)
{
    int k = (int)floor(log10(step) + 1e-9);
    if (v == 0)
        snprintf(out, TICK_CHARS, "0");
    else if (maxabs >= 1e7 && k >= 6)
        snprintf(out, TICK_CHARS, "%.0fM", v / 1e6);
    else if (maxabs >= 1e4 && k >= 3)
        snprintf(out, TICK_CHARS, "%.0fk", v / 1e3);
    else if (k >= -4 && maxabs < 1e6)
        snprintf(out, TICK_CHARS, "%.*f", k < 0 ? -k : 0, v);
    else {
        int sig = (int)floor(log10(maxabs)) - k;
        snprintf(out, TICK_CHARS, "%.*e", sig > 0 ? sig : 0, v);
        compact_exponent(out);
    }
}

/* Labels of log-axis ticks (at 1, 2 or 5 times powers of ten): plain numbers while all fit in
 * a few characters, else all as 1e-5, so that one axis does not mix "5e-4" and "0.001". */
static void log_labels(plot_axis_t *a)
{
    int plain = 1;
    for (int i = 0; i < a->nticks; i++)
        plain &= a->tick[i] > -3.01 && a->tick[i] < 4.99;
    for (int i = 0; i < a->nticks; i++) {
        double v = pow(10, a->tick[i]);
        snprintf(a->label[i], TICK_CHARS, plain ? "%g" : "%.0e", v);
        compact_exponent(a->label[i]);
    }
}

static double label_width(const plot_axis_t *a)
{
    double w = 0;
    for (int i = 0; i < a->nticks; i++) {
        double l = (double)strlen(a->label[i]) * TICK_CHAR_W;
        if (l > w) w = l;
    }
    return w;
}

static void linear_ticks(plot_axis_t *a, int target)
{
    double step = nice_step(a->hi - a->lo, target);
    if (a->integer && step < 1) step = 1;
    double maxabs = fmax(fabs(a->lo), fabs(a->hi));
    a->nticks = 0;
    for (double k = ceil(a->lo / step); k * step <= a->hi + 1e-9 * step; k++) {
        if (a->nticks == MAX_TICKS) break;
        double v = k * step;
        if (fabs(v) < 1e-9 * step) v = 0; /* no "-0" */
        a->tick[a->nticks] = a->log ? log10(v) : v;
        linear_label(a->label[a->nticks], v, step, maxabs);
        a->nticks++;
    }
}

/* Log-axis ticks: every k-th decade; within fewer than three decades also 2x and 5x; within a
 * narrower range still, linear ticks placed on the log axis. */
static void log_ticks(plot_axis_t *a, int target)
{
    int d0 = (int)ceil(a->lo - 1e-9), d1 = (int)floor(a->hi + 1e-9);
    int decades = d1 - d0 + 1;
    a->nticks = 0;
    if (decades >= 3) {
        int k = (decades + target - 1) / target;
        for (int d = d0 - ((d0 % k) + k) % k; d <= d1 && a->nticks < MAX_TICKS; d += k) {
            if (d < d0) continue;
            a->tick[a->nticks++] = d;
        }
        log_labels(a);
        return;
    }
    static const int mult[] = {1, 2, 5};
    for (int d = d0 - 1; d <= d1 && a->nticks < MAX_TICKS; d++)
        for (int m = 0; m < 3; m++) {
            double v = mult[m] * pow(10, d), t = log10(v);
            if (t < a->lo - 1e-9 || t > a->hi + 1e-9 || a->nticks == MAX_TICKS) continue;
            a->tick[a->nticks++] = t;
        }
    log_labels(a);
    if (a->nticks >= 3) return;
    double lo = a->lo, hi = a->hi;
    a->lo = pow(10, lo), a->hi = pow(10, hi);
    linear_ticks(a, target > 4 ? 4 : target);
    a->lo = lo, a->hi = hi;
}

/* Ticks first as many as fit (target falling from the densest sensible), so a wide panel gets
 * fine ticks and a narrow one still has labels that do not overlap. */
void ss_plot_axis_make(plot_axis_t *a, double lo, double hi, int log, int integer, double pad,
                       double length, int horizontal)
{
    memset(a, 0, sizeof *a);
    a->log = log;
    a->integer = integer && !log;
    if (!(lo <= hi)) lo = 0, hi = 1; /* no data at all */
    if (hi - lo < 1e-12 * fmax(1, fmax(fabs(lo), fabs(hi)))) {
        /* constant: a window around the value (half a decade on log, one on whole numbers) */
        double h = log ? 0.5 : a->integer || lo == 0 ? 1 : 0.1 * fabs(lo);
        lo -= h, hi += h;
    } else {
        double w = hi - lo;
        lo -= pad * w, hi += pad * w;
    }
    a->lo = lo, a->hi = hi;
    for (int target = horizontal ? 10 : (int)(length / 38); target >= 2; target--) {
        if (log)
            log_ticks(a, target);
        else
            linear_ticks(a, target);
        a->label_w = label_width(a);
        if (a->nticks < 2) continue;
        double gap = length * (a->tick[1] - a->tick[0]) / (a->hi - a->lo);
        double need = horizontal ? a->label_w + 10 : 18;
        if (gap >= need) break;
    }
}

double ss_plot_axis_frac(const plot_axis_t *a, double v)
{
    return (v - a->lo) / (a->hi - a->lo);
}
