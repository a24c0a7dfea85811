/* core.plot: the SVG line-plot writer. Writes, into the directory argv[1]:
 *   example.svg — four panels of a 100 000-step run (losses on a log axis, gradient cosine,
 *                 norms, learning rate), smoothed; must stay small;
 *   edges.svg   — text that needs escaping, NaN gaps, an empty series, a single point, a
 *                 constant series, non-positive values on a log axis, a panel with no series;
 *   spike.svg   — one spike among 100 000 zeros, which decimation must keep;
 *   epochs.svg  — a per-epoch figure in three columns, as the MIL trainer draws;
 * and checks their structure by counting elements; plot_test.sh then parses every file as XML.
 * Also the refusals: bad column counts, a missing panel, an unwritable path (no file left). */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "slidestream/error.h"
#include "slidestream/plot.h"

#include "../check.h"

static char dir[900];

static const char *at(const char *name)
{
    static char buf[1000];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    if (s) s[n] = '\0';
    fclose(f);
    if (len) *len = (size_t)n;
    return s;
}

static int count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* The d attribute of the k-th path of class `cls` (a pointer into s, up to the closing quote). */
static const char *path_d(const char *s, const char *cls, int k, size_t *len)
{
    char key[64];
    snprintf(key, sizeof key, "class=\"%s\"", cls);
    const char *p = s;
    for (int i = 0; p && i <= k; i++)
        if ((p = strstr(p, key))) p += strlen(key);
    if (!p || !(p = strstr(p, " d=\""))) return NULL;
    p += 4;
    *len = strcspn(p, "\"");
    return p;
}

static int count_in(const char *d, size_t len, char c)
{
    int n = 0;
    for (size_t i = 0; i < len; i++)
        n += d[i] == c;
    return n;
}

/* a noisy decaying loss, deterministic */
static double noise(unsigned *state)
{
    *state = *state * 1664525u + 1013904223u;
    return ((*state >> 8) & 0xFFFF) / 65536.0 - 0.5;
}

static void example(void)
{
    enum { N = 100000 };
    double *x = malloc(N * sizeof *x), *y[3];
    for (int k = 0; k < 3; k++)
        y[k] = malloc(N * sizeof *y[k]);
    unsigned st = 7;
    ss_plot_t *p = ss_plot_new("pretraining run 7 (synthetic curves)", 2);
    CHECK(p != NULL, "new: %s", ss_error_buffer());
    if (!p) return;
    int loss = ss_plot_panel(p, "losses", "step", "loss", SS_PLOT_LOGY);
    int cosine = ss_plot_panel(p, "gradient cosine", "step", "cos(g_contrastive, g_mil)", 0);
    int norms = ss_plot_panel(p, "norms", "step", "L2 norm", SS_PLOT_LOGY);
    int lr = ss_plot_panel(p, "learning rate", "step", "lr", 0);
    CHECK(loss == 0 && cosine == 1 && norms == 2 && lr == 3, "panel indices %d %d %d %d", loss,
          cosine, norms, lr);
    for (int i = 0; i < N; i++) {
        double t = (double)i / N;
        x[i] = i + 1;
        y[0][i] = (0.4 + 5.0 * exp(-8 * t)) * (1 + 0.6 * noise(&st));
        y[1][i] = (0.1 + 1.2 * exp(-5 * t)) * (1 + 0.9 * noise(&st));
        y[2][i] = y[0][i] + y[1][i];
    }
    CHECK(ss_plot_series(p, loss, "total", x, y[2], N, 500) == 0, "%s", ss_error_buffer());
    CHECK(ss_plot_series(p, loss, "contrastive", x, y[0], N, 500) == 0, "%s", ss_error_buffer());
    CHECK(ss_plot_series(p, loss, "MIL", x, y[1], N, 500) == 0, "%s", ss_error_buffer());
    for (int i = 0; i < N; i++) {
        double t = (double)i / N;
        y[0][i] = 0.6 * exp(-3 * t) - 0.05 + 0.5 * noise(&st);
    }
    CHECK(ss_plot_series(p, cosine, "cosine", x, y[0], N, 1000) == 0, "%s", ss_error_buffer());
    for (int i = 0; i < N; i++) {
        double t = (double)i / N;
        y[0][i] = 30 * exp(-4 * t) * (1 + 0.8 * noise(&st)) + 0.5;
        y[1][i] = 40 + 25 * t;
    }
    CHECK(ss_plot_series(p, norms, "gradient", x, y[0], N, 500) == 0, "%s", ss_error_buffer());
    CHECK(ss_plot_series(p, norms, "weights", x, y[1], N, 0) == 0, "%s", ss_error_buffer());
    for (int i = 0; i < N; i++) {
        double warm = 2000, t = (i - warm) / (N - warm);
        y[0][i] = i < warm ? 3e-4 * i / warm : 1.5e-4 * (1 + cos(M_PI * t));
    }
    CHECK(ss_plot_series(p, lr, "lr", x, y[0], N, 0) == 0, "%s", ss_error_buffer());
    CHECK(ss_plot_write(p, at("example.svg")) == 0, "write: %s", ss_error_buffer());
    ss_plot_destroy(&p);
    CHECK(p == NULL, "destroy sets the pointer to NULL");

    size_t len = 0;
    char *s = slurp(at("example.svg"), &len);
    CHECK(s != NULL, "example.svg was not written");
    if (s) {
        CHECK(len < 600000, "example.svg is %zu bytes for 7 series of 100 000 points", len);
        CHECK(count(s, "class=\"ss-panel\"") == 4, "panels: %d", count(s, "class=\"ss-panel\""));
        CHECK(count(s, "class=\"ss-raw\"") == 7, "raw paths: %d", count(s, "class=\"ss-raw\""));
        CHECK(count(s, "class=\"ss-smooth\"") == 5, "smoothed paths: %d",
              count(s, "class=\"ss-smooth\""));
        CHECK(count(s, "class=\"ss-legend-entry\"") == 7, "legend entries: %d",
              count(s, "class=\"ss-legend-entry\""));
        CHECK(count(s, "class=\"ss-note\"") == 0, "a note on skipped values with none skipped");
        for (int k = 0; k < 7; k++) {
            size_t dl = 0;
            const char *d = path_d(s, "ss-raw", k, &dl);
            /* "Mx y x y ...": one space in the first point, two in each later one */
            int points = d ? (count_in(d, dl, ' ') + 1) / 2 : 0;
            CHECK(d && points <= 3 * SS_PLOT_MAX_POINTS / 2 && points > 100,
                  "raw path %d has %d points", k, points);
        }
        printf("example.svg: %zu bytes\n", len);
    }
    free(s);
    free(x);
    for (int k = 0; k < 3; k++)
        free(y[k]);
}

static void edges(void)
{
    ss_plot_t *p = ss_plot_new("a<b & \"c\" 'd' \x01 bad\xff utf-8: \xc3\xa9", 3);
    CHECK(p != NULL, "new: %s", ss_error_buffer());
    if (!p) return;
    double x[10], y[10];
    for (int i = 0; i < 10; i++)
        x[i] = i, y[i] = i * i - 20;

    /* panel 0: NaN gaps (two runs and an isolated point), an empty series */
    int a = ss_plot_panel(p, "gaps <&>", "x & y", "y < 1", 0);
    double g[10];
    memcpy(g, y, sizeof g);
    g[3] = NAN, g[5] = NAN; /* runs 0-2, 4 (isolated), 6-9 */
    double gx[10];
    memcpy(gx, x, sizeof gx);
    gx[8] = NAN; /* now 6-7 and 9 (isolated) */
    CHECK(ss_plot_series(p, a, "gappy <series>", gx, g, 10, 0) == 0, "%s", ss_error_buffer());
    CHECK(ss_plot_series(p, a, "empty", NULL, NULL, 0, 50) == 0, "%s", ss_error_buffer());

    /* panel 1: a single point, a constant series */
    int b = ss_plot_panel(p, "one point, constant", "step", "value", 0);
    double one_x = 5, one_y = 3;
    CHECK(ss_plot_series(p, b, "single", &one_x, &one_y, 1, 10) == 0, "%s", ss_error_buffer());
    double c[10];
    for (int i = 0; i < 10; i++)
        c[i] = 3;
    CHECK(ss_plot_series(p, b, "constant", x, c, 10, 3) == 0, "%s", ss_error_buffer());

    /* panel 2: log scale with 3 values <= 0 (of y = i*i - 20 for i < 5, 4 are < 0: use 3) */
    int l = ss_plot_panel(p, "log with non-positive", "step", "loss", SS_PLOT_LOGY);
    double ly[10];
    for (int i = 0; i < 10; i++)
        ly[i] = pow(10, i - 4);
    ly[0] = 0, ly[4] = -1, ly[7] = -0.0;
    CHECK(ss_plot_series(p, l, "loss", x, ly, 10, 0) == 0, "%s", ss_error_buffer());

    /* panel 3: nothing in it */
    int e = ss_plot_panel(p, NULL, NULL, NULL, 0);
    CHECK(e == 3, "panel index %d", e);

    /* refusals: a missing panel, an unknown flag */
    CHECK(ss_plot_series(p, 9, "lost", x, y, 10, 0) == -1, "a series for panel 9 was taken");
    CHECK(strstr(ss_error_buffer(), "no panel 9") != NULL, "error: %s", ss_error_buffer());
    CHECK(ss_plot_panel(p, "x", "x", "x", 0x10) == -1, "flag 0x10 was taken");
    ss_error_clear();
    CHECK(ss_plot_write(p, at("edges.svg")) == 0, "write: %s", ss_error_buffer());

    /* an unwritable path: an error naming it, nothing left behind */
    CHECK(ss_plot_write(p, at("no/such/dir/x.svg")) == -1, "writing into a missing directory");
    CHECK(strstr(ss_error_buffer(), "no/such/dir/x.svg") != NULL, "error: %s", ss_error_buffer());
    ss_error_clear();
    ss_plot_destroy(&p);

    char *s = slurp(at("edges.svg"), NULL);
    CHECK(s != NULL, "edges.svg was not written");
    if (!s) return;
    CHECK(strstr(s, "a&lt;b &amp; &quot;c&quot; &apos;d&apos;   bad? utf-8: \xc3\xa9") != NULL,
          "figure title not escaped as expected");
    CHECK(strstr(s, "gappy &lt;series&gt;") && strstr(s, "gaps &lt;&amp;&gt;") &&
              strstr(s, "x &amp; y") && strstr(s, "y &lt; 1"),
          "panel text not escaped");
    CHECK(!strstr(s, "<series>") && !strstr(s, "\x01") && !strstr(s, "\xff"),
          "raw markup or bytes invalid in XML left in the file");
    CHECK(count(s, "class=\"ss-panel\"") == 4, "panels: %d", count(s, "class=\"ss-panel\""));
    /* raw paths: gappy, single, constant, log (the empty series has none) */
    CHECK(count(s, "class=\"ss-raw\"") == 4, "raw paths: %d", count(s, "class=\"ss-raw\""));
    /* smoothed: constant only (one point does not smooth; the empty series has nothing) */
    CHECK(count(s, "class=\"ss-smooth\"") == 1, "smoothed: %d", count(s, "class=\"ss-smooth\""));
    CHECK(count(s, "class=\"ss-legend-entry\"") == 5, "legend entries: %d",
          count(s, "class=\"ss-legend-entry\""));
    CHECK(count(s, "(no data)") == 1, "the empty series is not marked");
    /* isolated points drawn as dots: gappy's two and the single point */
    CHECK(count(s, "class=\"ss-dot\"") == 3, "dots: %d", count(s, "class=\"ss-dot\""));
    CHECK(count(s, ">no data<") == 1, "the empty panel does not say so");
    size_t dl = 0;
    const char *d = path_d(s, "ss-raw", 0, &dl);
    CHECK(d && count_in(d, dl, 'M') == 4 && count_in(d, dl, 'h') == 2,
          "gappy: want 4 runs, 2 of them single points: %.*s", (int)dl, d ? d : "");
    d = path_d(s, "ss-raw", 1, &dl);
    CHECK(d && count_in(d, dl, 'M') == 1 && count_in(d, dl, 'h') == 1, "single point: %.*s",
          (int)dl, d ? d : "");
    d = path_d(s, "ss-raw", 2, &dl);
    CHECK(d && count_in(d, dl, 'M') == 1 && count_in(d, dl, 'h') == 0 && !strstr(s, "nan"),
          "constant: %.*s", (int)dl, d ? d : "");
    /* log: 0 (index 0), -1 (index 4), -0 (index 7) skipped: runs 1-3, 5-6, 8-9 */
    d = path_d(s, "ss-raw", 3, &dl);
    CHECK(d && count_in(d, dl, 'M') == 3, "log: %.*s", (int)dl, d ? d : "");
    CHECK(strstr(s, "3 values \xe2\x89\xa4 0 not shown") != NULL, "no note on skipped values");
    CHECK(!strstr(s, "inf") && !strstr(s, "nan"), "non-finite numbers in the file");
    free(s);
}

static void spike(void)
{
    enum { N = 100000 };
    double *x = malloc(N * sizeof *x), *y = calloc(N, sizeof *y);
    for (int i = 0; i < N; i++)
        x[i] = i;
    y[77777] = 1000;
    ss_plot_t *p = ss_plot_new(NULL, 1);
    int a = ss_plot_panel(p, "spike", "step", "value", 0);
    CHECK(ss_plot_series(p, a, "s", x, y, N, 0) == 0 && ss_plot_write(p, at("spike.svg")) == 0,
          "%s", ss_error_buffer());
    ss_plot_destroy(&p);
    char *s = slurp(at("spike.svg"), NULL);
    /* the y axis reaches the spike: its top tick is 1000 */
    CHECK(s && strstr(s, ">1000</text>"), "decimation lost the spike");
    CHECK(s && !strstr(s, "ss-title"), "a title without one");
    free(s);
    free(x);
    free(y);
}

/* what the MIL trainer draws from train.csv: a few epochs, three columns, a curve with one
 * point so far */
static void epochs(void)
{
    double ep[7] = {1, 2, 3, 4, 5, 6, 7};
    double train[7] = {0.69, 0.61, 0.52, 0.47, 0.41, 0.38, 0.36};
    double val[7] = {0.70, 0.64, 0.58, 0.57, 0.59, NAN, 0.61};
    double auc[7] = {0.55, 0.67, 0.74, 0.78, 0.79, 0.80, 0.80};
    double lr[1] = {1e-3};
    ss_plot_t *p = ss_plot_new("MIL aggregator", 3);
    int a = ss_plot_panel(p, "loss", "epoch", "cross-entropy", 0);
    int b = ss_plot_panel(p, "validation AUC", "epoch", "AUC", 0);
    int c = ss_plot_panel(p, "learning rate", "epoch", "lr", SS_PLOT_LOGY);
    CHECK(!ss_plot_series(p, a, "train", ep, train, 7, 0) &&
              !ss_plot_series(p, a, "validation", ep, val, 7, 0) &&
              !ss_plot_series(p, b, "AUC", ep, auc, 7, 0) &&
              !ss_plot_series(p, c, "lr", ep, lr, 1, 0) && !ss_plot_write(p, at("epochs.svg")),
          "%s", ss_error_buffer());
    ss_plot_destroy(&p);
    char *s = slurp(at("epochs.svg"), NULL);
    CHECK(s && count(s, "class=\"ss-raw\"") == 4 && count(s, "class=\"ss-dot\"") == 2,
          "epochs.svg: paths or dots (the point after the validation gap, the single lr)");
    free(s);
}

static void refusals(void)
{
    CHECK(ss_plot_new("x", 0) == NULL && strstr(ss_error_buffer(), "0 columns"), "0 columns: %s",
          ss_error_buffer());
    ss_error_clear();
    CHECK(ss_plot_new("x", 4) == NULL, "4 columns taken");
    ss_error_clear();
    ss_plot_destroy(NULL);
}

static void no_leftovers(void)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL, "cannot list %s", dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *dot = strrchr(e->d_name, '.');
        if (e->d_name[0] != '.' && (!dot || strcmp(dot, ".svg")))
            CHECK(0, "%s left in %s (a temporary file?)", e->d_name, dir);
    }
    closedir(d);
}

int main(int argc, char **argv)
{
    snprintf(dir, sizeof dir, "%s", argc > 1 ? argv[1] : ".");
    mkdir(dir, 0755);
    example();
    edges();
    spike();
    epochs();
    refusals();
    no_leftovers();
    return check_exit("core.plot");
}
