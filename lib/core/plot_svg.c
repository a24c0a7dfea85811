/* Line plots: drawing a figure as a standalone SVG and writing it atomically (temporary file
 * renamed into place). Reads the figure, changes nothing in it. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plot_private.h"
#include "slidestream/error.h"

/* Cell size of one panel in px; the plot area is what is left after titles and labels. */
#define CELL_W 480.0
#define CELL_H 320.0
#define FIG_TITLE_H 34.0
#define TEXT_CHAR_W 6.3 /* 11 px legend text */

/* Okabe & Ito's colour-blind-safe palette minus its yellow, too pale for lines on white;
 * series 8 and on repeat it dashed. */
static const char *const palette[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                      "#E69F00", "#56B4E9", "#000000"};
#define PALETTE_N ((int)(sizeof palette / sizeof palette[0]))

/* Text for XML: markup characters escaped, control characters (not allowed in XML 1.0) and
 * invalid UTF-8 bytes replaced, so that any name a caller passes gives a well-formed file. */
static void xml_text(FILE *f, const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    while (*u) {
        unsigned c = *u;
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        int ok = len > 0;
        for (int k = 1; ok && k < len; k++)
            ok = (u[k] & 0xC0) == 0x80;
        if (!ok) {
            fputc('?', f);
            u++;
            continue;
        }
        if (len > 1) {
            fwrite(u, 1, (size_t)len, f);
            u += len;
            continue;
        }
        switch (c) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&apos;", f);
            break;
        default:
            fputc(c < 0x20 ? ' ' : (int)c, f);
        }
        u++;
    }
}

/* Approximate width of `s` in px at the legend's font size (UTF-8 continuation bytes do not
 * count). */
static double text_width(const char *s, double char_w)
{
    double n = 0;
    for (const unsigned char *u = (const unsigned char *)s; *u; u++)
        if ((*u & 0xC0) != 0x80) n++;
    return n * char_w;
}

typedef struct {
    double left, top, width, height; /* plot area in px */
    plot_axis_t x, y;
} frame_t;

/* px_x: a data value; tick_x: a tick position (already in axis units) */
static double tick_x(const frame_t *fr, double t)
{
    return fr->left + fr->width * ss_plot_axis_frac(&fr->x, t);
}

static double px_x(const frame_t *fr, double v)
{
    return tick_x(fr, fr->x.log ? log10(v) : v);
}

static double px_y(const frame_t *fr, double v)
{
    return fr->top + fr->height * (1 - ss_plot_axis_frac(&fr->y, fr->y.log ? log10(v) : v));
}

/* Does the segment (x0,y0)-(x1,y1) meet the rectangle? Liang-Barsky clipping. */
static int segment_hits(double x0, double y0, double x1, double y1, const double r[4])
{
    double t0 = 0, t1 = 1, dx = x1 - x0, dy = y1 - y0;
    double p[4] = {-dx, dx, -dy, dy}, q[4] = {x0 - r[0], r[2] - x0, y0 - r[1], r[3] - y0};
    for (int i = 0; i < 4; i++) {
        if (p[i] == 0) {
            if (q[i] < 0) return 0;
            continue;
        }
        double t = q[i] / p[i];
        if (p[i] < 0 && t > t0) t0 = t;
        if (p[i] > 0 && t < t1) t1 = t;
        if (t0 > t1) return 0;
    }
    return 1;
}

/* How much of the panel's data the rectangle r = {x0, y0, x1, y1} (px) would hide. */
static size_t covered(const plot_panel_t *pa, const frame_t *fr, const double r[4])
{
    size_t hits = 0;
    for (int j = 0; j < pa->nseries; j++)
        for (int w = 0; w < 2; w++) {
            const plot_line_t *l = w ? &pa->series[j].avg : &pa->series[j].raw;
            double px = NAN, py = NAN;
            for (size_t i = 0; i < l->n; i++) {
                if (!isfinite(l->x[i]) || !isfinite(l->y[i])) {
                    px = py = NAN;
                    continue;
                }
                double qx = px_x(fr, l->x[i]), qy = px_y(fr, l->y[i]);
                if (isfinite(px) ? segment_hits(px, py, qx, qy, r)
                                 : (qx >= r[0] && qx <= r[2] && qy >= r[1] && qy <= r[3]))
                    hits++;
                px = qx, py = qy;
            }
        }
    return hits;
}

/* One path for a line: "M" after each gap, implicit line-tos after it, points closer than a
 * tenth of a pixel to the previous dropped; an isolated point becomes a zero-length segment
 * that the round cap draws as a dot. */
static void write_path(FILE *f, const frame_t *fr, const plot_line_t *l)
{
    long lx = LONG_MIN, ly = LONG_MIN;
    int run = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (!isfinite(l->x[i]) || !isfinite(l->y[i])) {
            run = 0;
            continue;
        }
        double qx = px_x(fr, l->x[i]), qy = px_y(fr, l->y[i]);
        long ix = lround(qx * 10), iy = lround(qy * 10);
        int next_gap = i + 1 == l->n || !isfinite(l->x[i + 1]) || !isfinite(l->y[i + 1]);
        if (run && ix == lx && iy == ly) continue;
        fprintf(f, run ? " %.1f %.1f" : "M%.1f %.1f", qx, qy);
        if (!run && next_gap) fputs("h0", f);
        run++;
        lx = ix, ly = iy;
    }
}

/* Single points between gaps (an epoch-level curve after its first epoch) as dots: a stroke's
 * round cap alone is too small to see. */
static void write_dots(FILE *f, const frame_t *fr, const plot_line_t *l, const char *colour,
                       int all)
{
    for (size_t i = 0; i < l->n; i++) {
        int prev_gap = i == 0 || !isfinite(l->x[i - 1]) || !isfinite(l->y[i - 1]);
        int next_gap = i + 1 == l->n || !isfinite(l->x[i + 1]) || !isfinite(l->y[i + 1]);
        if ((!all && (!prev_gap || !next_gap)) || !isfinite(l->x[i]) || !isfinite(l->y[i]))
            continue;
        fprintf(f, "<circle class=\"ss-dot\" cx=\"%.1f\" cy=\"%.1f\" r=\"2.8\" fill=\"%s\"/>\n",
                px_x(fr, l->x[i]), px_y(fr, l->y[i]), colour);
    }
}

static void write_text(FILE *f, double x, double y, const char *anchor, const char *style,
                       const char *s)
{
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\"%s>", x, y, anchor, style);
    xml_text(f, s);
    fputs("</text>\n", f);
}

static void panel_range(const plot_panel_t *pa, double *xlo, double *xhi, double *ylo, double *yhi,
                        int *x_integer)
{
    *x_integer = 1;
    *xlo = *ylo = INFINITY;
    *xhi = *yhi = -INFINITY;
    for (int j = 0; j < pa->nseries; j++) {
        const plot_line_t *l = &pa->series[j].raw; /* the average lies within the raw range */
        for (size_t i = 0; i < l->n; i++) {
            if (!isfinite(l->x[i]) || !isfinite(l->y[i])) continue;
            *xlo = fmin(*xlo, l->x[i]), *xhi = fmax(*xhi, l->x[i]);
            *x_integer &= l->x[i] == floor(l->x[i]);
            *ylo = fmin(*ylo, l->y[i]), *yhi = fmax(*yhi, l->y[i]);
        }
    }
}

static void write_panel(FILE *f, const plot_panel_t *pa, int index, double cx, double cy)
{
    int log = pa->flags & SS_PLOT_LOGY, logx = !!(pa->flags & SS_PLOT_LOGX);
    double xlo, xhi, ylo, yhi;
    int x_integer;
    panel_range(pa, &xlo, &xhi, &ylo, &yhi, &x_integer);
    if (pa->has_ylim) ylo = pa->ylim_lo, yhi = pa->ylim_hi;
    if (log && ylo <= yhi) ylo = log10(ylo), yhi = log10(yhi);
    if (logx && xlo <= xhi) xlo = log10(xlo), xhi = log10(xhi);
    frame_t fr;
    fr.top = cy + 34;
    fr.height = CELL_H - 34 - 46;
    ss_plot_axis_make(&fr.y, ylo, yhi, log, 0, 0.05, fr.height, 0);
    /* y label (rotated), then tick labels as wide as they are, then the plot */
    fr.left = cx + 14 + 8 + fr.y.label_w + 8;
    fr.width = cx + CELL_W - 18 - fr.left;
    ss_plot_axis_make(&fr.x, xlo, xhi, logx, x_integer, logx ? 0.05 : 0.02, fr.width, 1);
    double bottom = fr.top + fr.height, right = fr.left + fr.width;

    fprintf(f, "<g class=\"ss-panel\">\n");
    fprintf(f,
            "<clipPath id=\"ss-clip%d\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
            "height=\"%.1f\"/></clipPath>\n",
            index, fr.left, fr.top - 2, fr.width, fr.height + 4);
    /* grid and ticks */
    fputs("<g stroke=\"#e3e3e3\" stroke-width=\"1\">\n", f);
    for (int i = 0; i < fr.y.nticks; i++) {
        double y = fr.top + fr.height * (1 - ss_plot_axis_frac(&fr.y, fr.y.tick[i]));
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", fr.left, y, right,
                y);
    }
    for (int i = 0; i < fr.x.nticks; i++) {
        double x = tick_x(&fr, fr.x.tick[i]);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", x, fr.top, x,
                bottom);
    }
    fputs("</g>\n<g stroke=\"#444\" stroke-width=\"1\">\n", f);
    for (int i = 0; i < fr.y.nticks; i++) {
        double y = fr.top + fr.height * (1 - ss_plot_axis_frac(&fr.y, fr.y.tick[i]));
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", fr.left - 4, y,
                fr.left, y);
    }
    for (int i = 0; i < fr.x.nticks; i++) {
        double x = tick_x(&fr, fr.x.tick[i]);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", x, bottom, x,
                bottom + 4);
    }
    fputs("</g>\n<g class=\"ss-ticks\" font-size=\"10\" fill=\"#333\">\n", f);
    for (int i = 0; i < fr.y.nticks; i++) {
        double y = fr.top + fr.height * (1 - ss_plot_axis_frac(&fr.y, fr.y.tick[i]));
        write_text(f, fr.left - 7, y + 3.5, "end", "", fr.y.label[i]);
    }
    for (int i = 0; i < fr.x.nticks; i++)
        write_text(f, tick_x(&fr, fr.x.tick[i]), bottom + 16, "middle", "", fr.x.label[i]);
    fputs("</g>\n", f);

    /* titles and the note on skipped values */
    write_text(f, fr.left, cy + 20, "start", " font-size=\"13\" font-weight=\"bold\"", pa->title);
    if (pa->skipped) {
        char note[96];
        snprintf(note, sizeof note, "%zu value%s \xe2\x89\xa4 0 not shown (log scale)", pa->skipped,
                 pa->skipped == 1 ? "" : "s");
        write_text(f, right, cy + 20, "end", " class=\"ss-note\" font-size=\"10\" fill=\"#a33\"",
                   note);
    }
    write_text(f, (fr.left + right) / 2, bottom + 36, "middle", " font-size=\"11\"", pa->xlabel);
    fprintf(f,
            "<text transform=\"translate(%.1f %.1f) rotate(-90)\" text-anchor=\"middle\" "
            "font-size=\"11\">",
            cx + 16, fr.top + fr.height / 2);
    xml_text(f, pa->ylabel);
    fputs("</text>\n", f);

    /* data: all faint raw lines first so that no average hides under another series' noise */
    fprintf(f,
            "<g clip-path=\"url(#ss-clip%d)\" fill=\"none\" stroke-linejoin=\"round\" "
            "stroke-linecap=\"round\">\n",
            index);
    for (int pass = 0; pass < 2; pass++)
        for (int j = 0; j < pa->nseries; j++) {
            const plot_series_t *s = &pa->series[j];
            const plot_line_t *l = pass ? &s->avg : &s->raw;
            if (!l->n) continue;
            int faint = !pass && s->window;
            fprintf(f, "<path class=\"%s\" stroke=\"%s\" stroke-width=\"%s\"%s%s d=\"",
                    pass ? "ss-smooth" : "ss-raw", palette[j % PALETTE_N],
                    pass    ? "2.2"
                    : faint ? "1"
                            : "1.6",
                    faint ? " stroke-opacity=\"0.3\"" : "",
                    j >= PALETTE_N ? " stroke-dasharray=\"6 3\"" : "");
            write_path(f, &fr, l);
            fputs("\"/>\n", f);
            if (pass || !s->window)
                write_dots(f, &fr, l, palette[j % PALETTE_N], pa->flags & SS_PLOT_MARKERS);
        }
    fputs("</g>\n", f);
    fprintf(f,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
            "stroke=\"#444\"/>\n",
            fr.left, fr.top, fr.width, fr.height);

    /* legend: in whichever corner hides the least data, on a translucent background */
    if (pa->nseries) {
        double w = 0, h = 8 + 15.0 * pa->nseries;
        char extra[64];
        for (int j = 0; j < pa->nseries; j++) {
            const plot_series_t *s = &pa->series[j];
            snprintf(extra, sizeof extra, s->raw.n ? (s->window ? " (avg %d)" : "") : " (no data)",
                     s->window);
            double tw = text_width(s->name, TEXT_CHAR_W) + text_width(extra, TEXT_CHAR_W);
            if (tw > w) w = tw;
        }
        w += 8 + 22 + 6 + 8;
        double best[4] = {0};
        size_t best_hits = SIZE_MAX;
        for (int corner = 0; corner < 4; corner++) { /* top right, top left, bottom right, left */
            double x0 = corner % 2 ? fr.left + 6 : right - 6 - w;
            double y0 = corner < 2 ? fr.top + 6 : bottom - 6 - h;
            double r[4] = {x0 - 3, y0 - 3, x0 + w + 3, y0 + h + 3};
            size_t hits = covered(pa, &fr, r);
            if (hits < best_hits) {
                best_hits = hits;
                memcpy(best, r, sizeof best);
                best[0] += 3, best[1] += 3;
            }
        }
        fprintf(f, "<g class=\"ss-legend\" font-size=\"11\">\n");
        fprintf(f,
                "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#fff\" "
                "fill-opacity=\"0.85\" stroke=\"#bbb\" rx=\"3\"/>\n",
                best[0], best[1], w, h);
        for (int j = 0; j < pa->nseries; j++) {
            const plot_series_t *s = &pa->series[j];
            double y = best[1] + 4 + 15.0 * j + 7.5, x = best[0] + 8;
            fprintf(f, "<g class=\"ss-legend-entry\">");
            fprintf(f,
                    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                    "stroke-width=\"%s\"%s/>",
                    x, y, x + 22, y, palette[j % PALETTE_N], s->window ? "2.2" : "1.6",
                    j >= PALETTE_N ? " stroke-dasharray=\"6 3\"" : "");
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">", x + 28, y + 4);
            xml_text(f, s->name);
            if (!s->raw.n)
                fputs("<tspan dx=\"4\" fill=\"#888\">(no data)</tspan>", f);
            else if (s->window)
                fprintf(f, "<tspan dx=\"4\" fill=\"#888\">(avg %d)</tspan>", s->window);
            fputs("</text></g>\n", f);
        }
        fputs("</g>\n", f);
    } else {
        write_text(f, (fr.left + right) / 2, fr.top + fr.height / 2, "middle",
                   " font-size=\"12\" fill=\"#888\"", "no data");
    }
    fputs("</g>\n", f);
}

static int write_svg(const ss_plot_t *p, FILE *f)
{
    int rows = (p->npanels + p->columns - 1) / p->columns;
    if (!rows) rows = 1;
    int cols = p->npanels < p->columns && p->npanels ? p->npanels : p->columns;
    double top = p->title[0] ? FIG_TITLE_H : 0;
    double w = cols * CELL_W, h = top + rows * CELL_H;
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "viewBox=\"0 0 %.0f %.0f\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>\n",
            w, h, w, h);
    if (p->title[0])
        write_text(f, w / 2, 23, "middle",
                   " class=\"ss-title\" font-size=\"15\" font-weight=\"bold\"", p->title);
    for (int i = 0; i < p->npanels; i++)
        write_panel(f, &p->panels[i], i, (i % p->columns) * CELL_W,
                    top + (i / p->columns) * CELL_H);
    fputs("</svg>\n", f);
    return ferror(f) ? -1 : 0;
}

int ss_plot_write(const ss_plot_t *p, const char *path)
{
    size_t len = strlen(path);
    char *tmp = malloc(len + 8);
    if (!tmp) return ss_error("plot", "%s: out of memory", path);
    memcpy(tmp, path, len);
    memcpy(tmp + len, ".XXXXXX", 8);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        ss_error_system("plot", "%s: cannot create a temporary file beside it", path);
        free(tmp);
        return -1;
    }
    /* mkstemp makes the file private; a plot is for anyone who may read the directory */
    (void)fchmod(fd, 0644);
    FILE *f = fdopen(fd, "w");
    if (!f) {
        ss_error_system("plot", "%s", tmp);
        close(fd);
        unlink(tmp);
        free(tmp);
        return -1;
    }
    int rc = write_svg(p, f);
    int saved = errno;
    if (fclose(f) && !rc) rc = -1, saved = errno;
    if (!rc && rename(tmp, path)) rc = -1, saved = errno;
    if (rc) {
        errno = saved;
        ss_error_system("plot", "%s: cannot write", path);
        unlink(tmp);
    }
    free(tmp);
    return rc;
}
