/* labels_check OUT SIZE — checks a cell folder written by `slidestream cells from-labels` against
 * the images it names: every cells.csv row's crop exists as OUT/<class>/<source>_<n>.png, is
 * SIZE×SIZE, and equals the SIZE×SIZE window of its source image centred on the row's (x, y)
 * rounded (edge pixels repeated where the window leaves the image, which the padded column must
 * say); every PNG under OUT/<class>/ has a row, and no hidden (temporary) file is left.
 * Prints "class C N" per class and "total N padded P" for the calling script to compare with
 * the label files. Exit status 0 = consistent. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/cells.h"
#include "slidestream/error.h"
#include "slidestream/manifest.h"

static int bad;

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        if (bad < 20) {                                                                            \
            fprintf(stderr, "labels_check: ");                                                     \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
        bad++;                                                                                     \
    } while (0)

typedef struct {
    char name[64];
    size_t n;
} klass_t;

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static void check_row(const char *out, int S, char **f, const uint8_t *src, int w, int h)
{
    char want[1024], path[2048];
    const char *slash = strchr(f[0], '/'), *us = strrchr(f[0], '_');
    snprintf(want, sizeof want, "%s/%s_", f[1], f[2]);
    if (!slash || !us || strncmp(f[0], want, strlen(want)) ||
        strcmp(us + strspn(us + 1, "0123456789") + 1, ".png"))
        FAIL("%s: not named <class>/<source>_<n>.png for class %s, source %s", f[0], f[1], f[2]);
    snprintf(path, sizeof path, "%s/%s", out, f[0]);
    uint8_t *rgb = NULL;
    int cw, ch;
    if (ss_image_load_rgb(path, &rgb, &cw, &ch)) {
        FAIL("%s", ss_error_last());
        ss_error_clear();
        return;
    }
    int cx = (int)floor(atof(f[4]) + 0.5), cy = (int)floor(atof(f[5]) + 0.5);
    int x0 = cx - S / 2, y0 = cy - S / 2;
    int padded = x0 < 0 || y0 < 0 || x0 + S > w || y0 + S > h;
    if (cw != S || ch != S)
        FAIL("%s is %dx%d, want %dx%d", f[0], cw, ch, S, S);
    else if (padded != atoi(f[6]))
        FAIL("%s: padded column %s, but the window at (%d, %d) is %s the %dx%d image", f[0], f[6],
             x0, y0, padded ? "not inside" : "inside", w, h);
    else if (memcmp(rgb + ((size_t)(S / 2) * S + S / 2) * 3, src + ((size_t)cy * w + cx) * 3, 3))
        FAIL("%s: centre pixel differs from %s at (%d, %d)", f[0], f[3], cx, cy);
    else
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                int sx = clampi(x0 + x, 0, w - 1), sy = clampi(y0 + y, 0, h - 1);
                if (memcmp(rgb + ((size_t)y * S + x) * 3, src + ((size_t)sy * w + sx) * 3, 3)) {
                    FAIL("%s: pixel (%d, %d) differs from %s at (%d, %d)", f[0], x, y, f[3], sx,
                         sy);
                    y = S;
                    break;
                }
            }
    free(rgb);
}

/* Every file under OUT/<class>/ must be a listed crop; hidden ones are leftovers. */
static size_t count_files(const char *out, const klass_t *k, size_t nk)
{
    size_t total = 0;
    DIR *d = opendir(out);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, "cells.csv"))
            continue;
        char sub[2048];
        snprintf(sub, sizeof sub, "%s/%s", out, e->d_name);
        DIR *c = opendir(sub);
        if (!c) {
            FAIL("unexpected file %s", sub);
            continue;
        }
        size_t n = 0, listed = 0;
        struct dirent *g;
        while ((g = readdir(c)))
            if (g->d_name[0] == '.' && strcmp(g->d_name, ".") && strcmp(g->d_name, ".."))
                FAIL("hidden leftover %s/%s", sub, g->d_name);
            else if (g->d_name[0] != '.')
                n++;
        closedir(c);
        for (size_t i = 0; i < nk; i++)
            if (!strcmp(k[i].name, e->d_name)) listed = k[i].n;
        if (n != listed) FAIL("%s holds %zu files, cells.csv lists %zu", sub, n, listed);
        total += n;
    }
    if (d) closedir(d);
    return total;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: labels_check OUT SIZE\n");
        return 2;
    }
    const char *out = argv[1];
    int S = atoi(argv[2]);
    char path[2048], line[8192], *f[16], last[4096] = "";
    snprintf(path, sizeof path, "%s/cells.csv", out);
    FILE *csv = fopen(path, "r");
    if (!csv) {
        perror(path);
        return 1;
    }
    if (!fgets(line, sizeof line, csv) || strcmp(line, "path,class,source,image,x,y,padded\n"))
        FAIL("cells.csv header: %s", line);
    klass_t k[256];
    size_t nk = 0, rows = 0, padded = 0;
    uint8_t *src = NULL;
    int w = 0, h = 0;
    while (fgets(line, sizeof line, csv)) {
        if (ss_csv_split(line, f, 16) != 7) {
            FAIL("cells.csv row %zu has not 7 fields", rows + 2);
            continue;
        }
        rows++;
        padded += atoi(f[6]) == 1;
        size_t i = 0;
        while (i < nk && strcmp(k[i].name, f[1]))
            i++;
        if (i == nk && nk < 256) snprintf(k[nk++].name, sizeof k[0].name, "%s", f[1]);
        if (i < nk) k[i].n++;
        if (strcmp(last, f[3])) {
            free(src);
            src = NULL;
            snprintf(last, sizeof last, "%s", f[3]);
            if (ss_image_load_rgb(f[3], &src, &w, &h)) {
                FAIL("%s", ss_error_last());
                ss_error_clear();
            }
        }
        if (src) check_row(out, S, f, src, w, h);
    }
    fclose(csv);
    free(src);
    size_t files = count_files(out, k, nk);
    if (files != rows) FAIL("%zu crop files, %zu rows", files, rows);
    for (size_t i = 0; i < nk; i++)
        printf("class %s %zu\n", k[i].name, k[i].n);
    printf("total %zu padded %zu\n", rows, padded);
    if (bad) fprintf(stderr, "labels_check: %d problem(s)\n", bad);
    return bad ? 1 : 0;
}
