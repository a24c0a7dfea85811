/* Result pictures and GeoJSON of a predicted bag (mil_results.h): the viridis map, a 5x7 bitmap
 * font for ranks and scores, where a bag's pixels come from (a slide of a manifest or the cell
 * images of a bag_cells.csv), and the three writers. Every buffer is allocated and freed inside
 * one writer; the sources own their tables. */
#include "slidestream/mil_results.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "slidestream/cache.h"
#include "slidestream/cells.h"
#include "slidestream/error.h"
#include "slidestream/manifest.h"
#include "slidestream/slide.h"

#define DOM "mil"

/* ---- colours and text ----------------------------------------------------------------------- */

/* viridis sampled at t = 0, 1/8, ..., 1; linear between samples. */
static const uint8_t VIRIDIS[9][3] = {
    {68, 1, 84},    {72, 45, 123},  {59, 82, 139},  {44, 114, 142}, {33, 144, 140},
    {39, 173, 129}, {93, 200, 99},  {170, 220, 50}, {253, 231, 37},
};

void ss_mil_colormap(double t, uint8_t rgb[3])
{
    if (!(t > 0)) t = 0;
    if (t > 1) t = 1;
    double u = t * 8;
    int i = (int)u;
    if (i > 7) i = 7;
    double f = u - i;
    for (int c = 0; c < 3; c++)
        rgb[c] = (uint8_t)lrint(VIRIDIS[i][c] * (1 - f) + VIRIDIS[i + 1][c] * f);
}

/* Colour position of a cell: 1 for rank 1, 0 for rank n. */
static double rank_t(int64_t rank, int64_t n)
{
    return n > 1 ? 1.0 - (double)(rank - 1) / (double)(n - 1) : 1.0;
}

/* 5x7 glyphs, one string of 35 cells ('#' = ink) per character. */
static const struct {
    char c;
    const char *rows;
} FONT[] = {
    {'0', " ### #   ##  ### # ###  ##   # ### "}, {'1', "  #   ##    #    #    #    #   ### "},
    {'2', " ### #   #    #   #   #   #   #####"}, {'3', "#####   #   #     #     ##   # ### "},
    {'4', "   #   ##  # # #  # #####   #    # "}, {'5', "######    ####     #    ##   # ### "},
    {'6', "  ##  #   #    #### #   ##   # ### "}, {'7', "#####    #   #   #   #    #    #   "},
    {'8', " ### #   ##   # ### #   ##   # ### "}, {'9', " ### #   ##   # ####    #   #  ##  "},
    {'.', "                          ##   ##  "}, {'-', "                ###                "},
    {'#', " # #  # # ##### # # ##### # #  # # "}, {'e', "           ### #   #######     ### "},
    {'+', "       #    #  #####  #    #       "},
};

static const char *glyph(char c)
{
    for (size_t i = 0; i < sizeof FONT / sizeof FONT[0]; i++)
        if (FONT[i].c == c) return FONT[i].rows;
    return NULL; /* space and anything unknown: blank */
}

static void draw_text(uint8_t *rgb, int w, int h, int x, int y, const char *s, int scale,
                      const uint8_t col[3])
{
    for (; *s; s++, x += 6 * scale) {
        const char *g = glyph(*s);
        if (!g) continue;
        for (int r = 0; r < 7; r++)
            for (int c = 0; c < 5; c++) {
                if (g[r * 5 + c] != '#') continue;
                for (int dy = 0; dy < scale; dy++)
                    for (int dx = 0; dx < scale; dx++) {
                        int px = x + c * scale + dx, py = y + r * scale + dy;
                        if (px >= 0 && py >= 0 && px < w && py < h)
                            memcpy(rgb + ((size_t)py * w + px) * 3, col, 3);
                    }
            }
    }
}

static void fill_rect(uint8_t *rgb, int w, int h, int x, int y, int bw, int bh, const uint8_t c[3])
{
    for (int j = y < 0 ? 0 : y; j < y + bh && j < h; j++)
        for (int i = x < 0 ? 0 : x; i < x + bw && i < w; i++)
            memcpy(rgb + ((size_t)j * w + i) * 3, c, 3);
}

/* A disc clipped to the w x h top-left part of a canvas `stride` pixels wide. */
static void fill_disc(uint8_t *rgb, int stride, int w, int h, double cx, double cy, double r,
                      const uint8_t c[3])
{
    for (int j = (int)floor(cy - r); j <= (int)ceil(cy + r); j++)
        for (int i = (int)floor(cx - r); i <= (int)ceil(cx + r); i++)
            if (i >= 0 && j >= 0 && i < w && j < h &&
                (i + 0.5 - cx) * (i + 0.5 - cx) + (j + 0.5 - cy) * (j + 0.5 - cy) <= r * r)
                memcpy(rgb + ((size_t)j * stride + i) * 3, c, 3);
}

/* Area-average resample of src (sw, sh) into dst (dw, dh): each output pixel averages the source
 * pixels its footprint covers (at least the nearest one, so enlarging is nearest-neighbour). */
static void resample(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh)
{
    for (int y = 0; y < dh; y++) {
        int y0 = (int)((int64_t)y * sh / dh), y1 = (int)((int64_t)(y + 1) * sh / dh);
        if (y1 <= y0) y1 = y0 + 1;
        for (int x = 0; x < dw; x++) {
            int x0 = (int)((int64_t)x * sw / dw), x1 = (int)((int64_t)(x + 1) * sw / dw);
            if (x1 <= x0) x1 = x0 + 1;
            unsigned sum[3] = {0, 0, 0}, k = 0;
            for (int j = y0; j < y1; j++)
                for (int i = x0; i < x1; i++, k++)
                    for (int c = 0; c < 3; c++) sum[c] += src[((size_t)j * sw + i) * 3 + c];
            for (int c = 0; c < 3; c++)
                dst[((size_t)y * dw + x) * 3 + c] = (uint8_t)((sum[c] + k / 2) / k);
        }
    }
}

/* Copy a (tw, th) picture into the canvas at (x, y). */
static void blit(uint8_t *rgb, int w, int h, int x, int y, const uint8_t *tile, int tw, int th)
{
    for (int j = 0; j < th; j++)
        for (int i = 0; i < tw; i++)
            if (x + i >= 0 && y + j >= 0 && x + i < w && y + j < h)
                memcpy(rgb + ((size_t)(y + j) * w + x + i) * 3, tile + ((size_t)j * tw + i) * 3, 3);
}

/* ---- where pixels come from ---------------------------------------------------------------- */

struct ss_mil_sources {
    ss_manifest_t *slides;
    char (*bag)[256];
    char **path; /* per row of the cells CSV, resolved */
    size_t n, cap;
};

void ss_mil_sources_free(ss_mil_sources_t **ps)
{
    ss_mil_sources_t *s = ps ? *ps : NULL;
    if (!s) return;
    ss_manifest_destroy(&s->slides);
    for (size_t i = 0; i < s->n; i++) free(s->path[i]);
    free(s->path), free(s->bag), free(s);
    *ps = NULL;
}

/* A relative path that does not exist from here is taken relative to the CSV's folder. */
static char *resolve(const char *csv, const char *p)
{
    struct stat st;
    const char *slash = strrchr(csv, '/');
    if (p[0] == '/' || !slash || !stat(p, &st)) return strdup(p);
    size_t n = (size_t)(slash - csv) + 1 + strlen(p) + 1;
    char *r = malloc(n);
    if (r) snprintf(r, n, "%.*s/%s", (int)(slash - csv), csv, p);
    return r;
}

static int load_cells(ss_mil_sources_t *s, const char *csv)
{
    FILE *f = fopen(csv, "r");
    if (!f) return ss_error_system(DOM, "cannot read %s", csv);
    char line[16384];
    char *fld[64];
    int cb = -1, cp = -1, lineno = 1, rc = 0;
    if (!fgets(line, sizeof line, f)) {
        fclose(f);
        return ss_error(DOM, "%s: empty", csv);
    }
    int nf = ss_csv_split(line, fld, 64);
    for (int i = 0; i < nf; i++) {
        fld[i][strcspn(fld[i], "\r\n")] = 0;
        if (!strcmp(fld[i], "bag_id")) cb = i;
        if (!strcmp(fld[i], "path")) cp = i;
    }
    if (cb < 0 || cp < 0) {
        fclose(f);
        return ss_error(DOM, "%s: want columns bag_id and path (a bag_cells.csv of `bags "
                             "simulate`)", csv);
    }
    while (!rc && fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = 0;
        if (!*line) continue;
        nf = ss_csv_split(line, fld, 64);
        if (nf <= cb || nf <= cp || !*fld[cp]) {
            rc = ss_error(DOM, "%s:%d: too few columns or no path", csv, lineno);
            break;
        }
        if (s->n == s->cap) {
            size_t cap = s->cap ? 2 * s->cap : 1024;
            void *a = realloc(s->bag, cap * sizeof *s->bag), *b = NULL;
            if (a) s->bag = a;
            if (a) b = realloc(s->path, cap * sizeof *s->path);
            if (!b) {
                rc = ss_error(DOM, "out of memory reading %s", csv);
                break;
            }
            s->path = b;
            s->cap = cap;
        }
        snprintf(s->bag[s->n], sizeof s->bag[0], "%s", fld[cb]);
        if (!(s->path[s->n] = resolve(csv, fld[cp]))) {
            rc = ss_error(DOM, "out of memory reading %s", csv);
            break;
        }
        s->n++;
    }
    fclose(f);
    return rc;
}

ss_mil_sources_t *ss_mil_sources_new(const char *slides_manifest, const char *cells_csv)
{
    ss_mil_sources_t *s = calloc(1, sizeof *s);
    if (!s) {
        ss_error(DOM, "out of memory");
        return NULL;
    }
    if ((slides_manifest && !(s->slides = ss_manifest_load(slides_manifest))) ||
        (cells_csv && load_cells(s, cells_csv)))
        ss_mil_sources_free(&s);
    return s;
}

static const ss_manifest_row_t *find_slide(const ss_mil_sources_t *s, const char *id)
{
    for (size_t i = 0; s && s->slides && i < s->slides->n; i++)
        if (!strcmp(s->slides->rows[i].slide_id, id)) return &s->slides->rows[i];
    return NULL;
}

ss_mil_source_t ss_mil_sources_find(const ss_mil_sources_t *s, const char *bag_id)
{
    if (find_slide(s, bag_id)) return SS_MIL_SOURCE_SLIDE;
    for (size_t i = 0; s && i < s->n; i++)
        if (!strcmp(s->bag[i], bag_id)) return SS_MIL_SOURCE_CELLS;
    return SS_MIL_SOURCE_NONE;
}

/* The image path of each cell of a folder bag: out[c] for cell c (its id = its row in the bag). */
static int cell_paths(const ss_mil_sources_t *s, const ss_mil_bag_t *b, const char **out)
{
    int64_t rows = 0;
    for (size_t i = 0; i < s->n; i++) rows += !strcmp(s->bag[i], b->id);
    const char **row = malloc((size_t)(rows ? rows : 1) * sizeof *row);
    if (!row) return ss_error(DOM, "out of memory");
    for (size_t i = 0, j = 0; i < s->n; i++)
        if (!strcmp(s->bag[i], b->id)) row[j++] = s->path[i];
    int rc = 0;
    for (int64_t c = 0; c < b->n && !rc; c++) {
        if (b->cell_ids[c] >= (uint64_t)rows)
            rc = ss_error(DOM, "bag %s: cell id %llu, but the cells CSV has %lld rows for it", b->id,
                          (unsigned long long)b->cell_ids[c], (long long)rows);
        else
            out[c] = row[b->cell_ids[c]];
    }
    free(row);
    return rc;
}

/* ---- a bag's geometry ----------------------------------------------------------------------- */

typedef struct {
    int patch;        /* crop side in pixels as embedded (0 unknown) */
    int64_t patch0;   /* its side in level-0 pixels (0 unknown) */
    double target_mpp, slide_mpp;
} geom_t;

static int bag_geom(const ss_mil_bag_t *b, geom_t *g)
{
    ss_cache_reader_t *r = ss_cache_open(b->path);
    if (!r) return ss_error(DOM, "bag %s: cannot read %s", b->id, b->path);
    const ss_cache_meta_t *m = ss_cache_meta(r);
    g->patch = m->patch_size;
    g->patch0 = m->patch_size_level0;
    g->target_mpp = m->target_mpp;
    g->slide_mpp = m->slide_mpp;
    ss_cache_close(&r);
    return 0;
}

/* Cells ordered by rank (order[0] = rank 1); falls back to attention order when rank is not a
 * permutation of 1..n. */
static const float *g_att;
static int cmp_att(const void *a, const void *b)
{
    float x = g_att[*(const int64_t *)a], y = g_att[*(const int64_t *)b];
    return x > y ? -1 : x < y ? 1 : (*(const int64_t *)a > *(const int64_t *)b) - (*(const int64_t *)a < *(const int64_t *)b);
}

static int64_t *rank_order(const ss_mil_bag_t *b, const float *att, const int64_t *rank)
{
    int64_t n = b->n, *o = malloc((size_t)(n ? n : 1) * sizeof *o);
    if (!o) {
        ss_error(DOM, "out of memory");
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) o[i] = -1;
    int ok = 1;
    for (int64_t c = 0; c < n && ok; c++) {
        if (rank[c] < 1 || rank[c] > n || o[rank[c] - 1] >= 0) ok = 0;
        else o[rank[c] - 1] = c;
    }
    if (!ok) {
        for (int64_t i = 0; i < n; i++) o[i] = i;
        g_att = att;
        qsort(o, (size_t)n, sizeof *o, cmp_att);
    }
    return o;
}

/* ---- files ---------------------------------------------------------------------------------- */

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

/* Moves the written TMP onto PATH, so that PATH is never seen half written. */
static int publish(const char *tmp, const char *path)
{
    if (rename(tmp, path)) {
        remove(tmp);
        return ss_error_system(DOM, "cannot rename %s to %s", tmp, path);
    }
    return 0;
}

static int finish_file(FILE *f, const char *tmp, const char *path)
{
    int bad = ferror(f);
    if (fclose(f) || bad) {
        remove(tmp);
        return ss_error_system(DOM, "cannot write %s", path);
    }
    return publish(tmp, path);
}

/* PNG through libvips, which chooses the format by suffix: the temporary name keeps ".png". */
static int save_png(const char *path, const uint8_t *rgb, int w, int h)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.png", path);
    if (ss_image_save_rgb(tmp, rgb, w, h)) {
        remove(tmp);
        return ss_error(DOM, "cannot write %s", path);
    }
    return publish(tmp, path);
}

/* Opens PATH's temporary file TMP ("PATH.tmp", which finish_file renames onto PATH) for
 * writing; NULL with the error set. */
static FILE *open_tmp(const char *path, char *tmp, size_t size)
{
    snprintf(tmp, size, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) ss_error_system(DOM, "cannot write %s", tmp);
    return f;
}

/* A picture's CSV sidecar: PATH is the picture's with its .png suffix (if any) replaced by
 * .csv, written through TMP (open_tmp, then finish_file). */
typedef struct {
    char path[4200], tmp[4300];
    FILE *f;
} sidecar_t;

/* Saves the picture PATH (rgb, w x h) and opens its sidecar; -1 with the error set. */
static int save_png_sidecar(sidecar_t *sc, const char *path, const uint8_t *rgb, int w, int h)
{
    if (save_png(path, rgb, w, h)) return -1;
    size_t n = strlen(path);
    if (n > 4 && !strcmp(path + n - 4, ".png")) n -= 4;
    snprintf(sc->path, sizeof sc->path, "%.*s.csv", (int)n, path);
    return (sc->f = open_tmp(sc->path, sc->tmp, sizeof sc->tmp)) ? 0 : -1;
}

/* ---- GeoJSON -------------------------------------------------------------------------------- */

int ss_mil_write_geojson(const ss_mil_bag_t *b, const float *att, const int64_t *rank,
                         const char *path)
{
    geom_t g = {0};
    if (bag_geom(b, &g)) return -1;
    double r = g.patch0 > 0 ? g.patch0 / 4.0 : 8.0;
    char tmp[4200];
    FILE *f = open_tmp(path, tmp, sizeof tmp);
    if (!f) return -1;
    if (ss_geojson_begin(f)) {
        fclose(f);
        remove(tmp);
        return ss_error(DOM, "cannot write %s", path);
    }
    const double pi = 3.14159265358979323846;
    int64_t hi = b->n / 10 > 1 ? b->n / 10 : 1, mid = b->n / 2 > hi ? b->n / 2 : hi;
    for (int64_t c = 0; c < b->n; c++) {
        double cx = (double)b->centres[2 * c], cy = (double)b->centres[2 * c + 1];
        fprintf(f, "%s{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[",
                c ? ",\n" : "");
        for (int k = 0; k <= 16; k++) {
            double a = 2 * pi * (k % 16) / 16;
            fprintf(f, "%s[%.1f,%.1f]", k ? "," : "", cx + r * cos(a), cy + r * sin(a));
        }
        const char *cls = rank[c] <= hi ? "Attention high" : rank[c] <= mid ? "Attention medium"
                                                                             : "Attention low";
        uint8_t col[3];
        ss_mil_colormap(rank[c] <= hi ? 1.0 : rank[c] <= mid ? 0.6 : 0.1, col);
        fprintf(f, "]]},\"properties\":{\"objectType\":\"detection\",\"name\":\"cell %llu\","
                   "\"classification\":{\"name\":\"%s\",\"color\":[%d,%d,%d]},\"slide_id\":",
                (unsigned long long)b->cell_ids[c], cls, col[0], col[1], col[2]);
        json_string(f, b->id);
        fprintf(f, ",\"measurements\":{\"attention\":%.8g,\"attention_rank\":%lld}}}", att[c],
                (long long)rank[c]);
    }
    if (ss_geojson_end(f)) {
        fclose(f);
        remove(tmp);
        return ss_error(DOM, "cannot write %s", path);
    }
    return finish_file(f, tmp, path);
}

/* ---- heatmap -------------------------------------------------------------------------------- */

/* Where the pixels of bag B's picture WHAT come from; SS_MIL_SOURCE_NONE with the error set. */
static ss_mil_source_t picture_source(const ss_mil_sources_t *src, const ss_mil_bag_t *b,
                                      const char *what)
{
    ss_mil_source_t kind = ss_mil_sources_find(src, b->id);
    if (kind == SS_MIL_SOURCE_NONE)
        ss_error(DOM, "bag %s: no slide (manifest) or cell images (bag_cells.csv) for a %s",
                 b->id, what);
    return kind;
}

static ss_slide_t *open_bag_slide(const ss_mil_sources_t *src, const ss_mil_bag_t *b,
                                  const geom_t *g)
{
    const ss_manifest_row_t *row = find_slide(src, b->id);
    double mpp = row->mpp > 0 ? row->mpp : g->slide_mpp;
    ss_slide_t *s = ss_slide_open(row->path, mpp, row->mpp > 0 ? "manifest" : "cache");
    if (!s) ss_error(DOM, "bag %s: cannot open its slide %s", b->id, row->path);
    return s;
}

/* The colour bar: a (bw, bh) column at (x, y), hot at the top, with the rank and attention of
 * both ends written to its right. */
static void colour_bar(uint8_t *rgb, int w, int h, int x, int y, int bw, int bh, int scale,
                       int64_t n, double top_att, double low_att)
{
    static const uint8_t ink[3] = {30, 30, 30};
    for (int j = 0; j < bh; j++) {
        uint8_t c[3];
        ss_mil_colormap(bh > 1 ? 1.0 - (double)j / (bh - 1) : 1.0, c);
        fill_rect(rgb, w, h, x, y + j, bw, 1, c);
    }
    char s[64];
    int tx = x + bw + 4 * scale;
    snprintf(s, sizeof s, "#1");
    draw_text(rgb, w, h, tx, y, s, scale, ink);
    snprintf(s, sizeof s, "%.3g", top_att);
    draw_text(rgb, w, h, tx, y + 9 * scale, s, scale, ink);
    snprintf(s, sizeof s, "#%lld", (long long)n);
    draw_text(rgb, w, h, tx, y + bh - 16 * scale, s, scale, ink);
    snprintf(s, sizeof s, "%.3g", low_att);
    draw_text(rgb, w, h, tx, y + bh - 7 * scale, s, scale, ink);
}

int ss_mil_write_heatmap(const ss_mil_bag_t *b, const float *att, const int64_t *rank,
                         const ss_mil_sources_t *src, int max_size, const char *path)
{
    ss_mil_source_t kind = picture_source(src, b, "heatmap");
    if (kind == SS_MIL_SOURCE_NONE) return -1;
    if (b->n < 1) return ss_error(DOM, "bag %s: no cells for a heatmap", b->id);
    if (max_size <= 0) max_size = 1024;
    geom_t g = {0};
    if (bag_geom(b, &g)) return -1;
    int64_t *order = rank_order(b, att, rank);
    int64_t n = b->n;
    double *px = malloc((size_t)n * 2 * sizeof *px);
    const char **paths = NULL;
    uint8_t *canvas = NULL, *tile = NULL;
    ss_slide_t *s = NULL;
    ss_thumb_t *th = NULL;
    int rc = 0, W = 0, H = 0, bar_x = 0, bar_y = 0, bar_h = 0, scale = 1;
    if (!order || !px) {
        rc = ss_error(DOM, "out of memory");
        goto done;
    }
    if (kind == SS_MIL_SOURCE_SLIDE) {
        if (!(s = open_bag_slide(src, b, &g)) || !(th = ss_slide_thumbnail(s, max_size))) {
            rc = ss_error(DOM, "bag %s: no thumbnail for its heatmap %s", b->id, path);
            goto done;
        }
        scale = (th->width > th->height ? th->width : th->height) >= 600 ? 2 : 1;
        int panel = 24 * scale + 4 * scale + 9 * 6 * scale + 8 * scale;
        W = th->width + panel, H = th->height;
        if (H < 60 * scale) H = 60 * scale;
        canvas = malloc((size_t)W * H * 3);
        if (!canvas) {
            rc = ss_error(DOM, "out of memory");
            goto done;
        }
        memset(canvas, 255, (size_t)W * H * 3);
        /* the slide, faded toward white so the discs stand out */
        for (int j = 0; j < th->height; j++)
            for (int i = 0; i < th->width; i++)
                for (int c = 0; c < 3; c++) {
                    size_t k = ((size_t)j * th->width + i) * 3 + c;
                    canvas[((size_t)j * W + i) * 3 + c] = (uint8_t)(255 - (255 - th->rgb[k]) * 3 / 5);
                }
        double r = g.patch0 > 0 ? g.patch0 / 4.0 / th->scale_x : 3;
        if (r < 3) r = 3;
        static const uint8_t edge[3] = {20, 20, 20};
        for (int64_t k = n - 1; k >= 0; k--) { /* least attended first: rank 1 ends on top */
            int64_t c = order[k];
            double x = b->centres[2 * c] / th->scale_x, y = b->centres[2 * c + 1] / th->scale_y;
            uint8_t col[3];
            ss_mil_colormap(rank_t(k + 1, n), col);
            fill_disc(canvas, W, th->width, th->height, x, y, r + 1, edge);
            fill_disc(canvas, W, th->width, th->height, x, y, r, col);
            px[2 * c] = x, px[2 * c + 1] = y;
        }
        bar_x = th->width + 8 * scale;
    } else {
        if (!(paths = malloc((size_t)n * sizeof *paths)) || cell_paths(src, b, paths)) {
            rc = paths ? -1 : ss_error(DOM, "out of memory");
            goto done;
        }
        /* grid of the cells in rank order, each framed in its colour, longer side ~max_size */
        int cols = (int)ceil(sqrt((double)n));
        int rows = (int)((n + cols - 1) / cols);
        int T = max_size / cols;
        if (T > 72) T = 72;
        if (T < 10) T = 10;
        int fr = T >= 32 ? 4 : 2, in = T - 2 * fr - 2;
        scale = cols * T >= 600 ? 2 : 1;
        int panel = 24 * scale + 4 * scale + 9 * 6 * scale + 8 * scale;
        W = cols * T + panel, H = rows * T;
        if (H < 60 * scale) H = 60 * scale;
        canvas = malloc((size_t)W * H * 3);
        tile = malloc((size_t)in * in * 3);
        if (!canvas || !tile) {
            rc = ss_error(DOM, "out of memory");
            goto done;
        }
        memset(canvas, 255, (size_t)W * H * 3);
        for (int64_t k = 0; k < n && !rc; k++) {
            int64_t c = order[k];
            int x = (int)(k % cols) * T, y = (int)(k / cols) * T;
            uint8_t col[3], *img = NULL;
            int iw, ih;
            ss_mil_colormap(rank_t(k + 1, n), col);
            fill_rect(canvas, W, H, x + 1, y + 1, T - 2, T - 2, col);
            if (ss_image_load_rgb(paths[c], &img, &iw, &ih)) {
                rc = ss_error(DOM, "bag %s: cell %llu", b->id, (unsigned long long)b->cell_ids[c]);
                break;
            }
            resample(img, iw, ih, tile, in, in);
            free(img);
            blit(canvas, W, H, x + 1 + fr, y + 1 + fr, tile, in, in);
            px[2 * c] = x + 1 + fr / 2.0, px[2 * c + 1] = y + T / 2.0; /* on the frame */
        }
        if (rc) goto done;
        bar_x = cols * T + 8 * scale;
    }
    bar_y = 4 * scale, bar_h = H - 8 * scale;
    colour_bar(canvas, W, H, bar_x, bar_y, 24 * scale, bar_h, scale, n, att[order[0]],
               att[order[n - 1]]);
    sidecar_t sc;
    if ((rc = save_png_sidecar(&sc, path, canvas, W, H))) goto done;
    FILE *f = sc.f;
    fprintf(f, "cell_id,rank,attention,px,py\n");
    for (int64_t k = 0; k < n; k++) {
        int64_t c = order[k];
        fprintf(f, "%llu,%lld,%.8g,%.1f,%.1f\n", (unsigned long long)b->cell_ids[c],
                (long long)(k + 1), att[c], px[2 * c], px[2 * c + 1]);
    }
    rc = finish_file(f, sc.tmp, sc.path);
done:
    ss_thumb_destroy(&th);
    ss_slide_destroy(&s);
    free(order), free(px), free(paths), free(canvas), free(tile);
    return rc;
}

/* ---- gallery -------------------------------------------------------------------------------- */

int ss_mil_write_gallery(const ss_mil_bag_t *b, const float *att, const int64_t *rank,
                         const ss_mil_sources_t *src, int k, const char *path)
{
    ss_mil_source_t kind = picture_source(src, b, "gallery");
    if (kind == SS_MIL_SOURCE_NONE) return -1;
    if (k < 1) return ss_error(DOM, "bag %s: gallery of %d cells", b->id, k);
    if (b->n < 1) return ss_error(DOM, "bag %s: no cells for a gallery", b->id);
    if (k > b->n) k = (int)b->n;
    geom_t g = {0};
    if (bag_geom(b, &g)) return -1;
    int64_t *order = rank_order(b, att, rank);
    const char **paths = NULL;
    ss_slide_t *s = NULL;
    uint8_t *canvas = NULL, *crop = NULL, *tile = NULL;
    int rc = 0;
    /* a tile: the crop (D x D), then a band with "#rank attention" and the attention bar */
    const int D = 128, pad = 6, band = 22;
    int cols = k <= 5 ? k : (int)ceil(sqrt((double)k * 1.5));
    if (cols > k) cols = k;
    int rows = (k + cols - 1) / cols;
    int TW = D + pad, TH = D + band + pad;
    int W = cols * TW + pad, H = rows * TH + pad;
    int cw = g.patch > 0 ? g.patch : 96, ch = cw;
    double mpp = g.target_mpp;
    if (!order) return -1;
    if (kind == SS_MIL_SOURCE_SLIDE) {
        if (!(s = open_bag_slide(src, b, &g))) {
            rc = -1;
            goto done;
        }
        if (!(mpp > 0)) mpp = ss_slide_info(s)->mpp_x;
    } else if (!(paths = malloc((size_t)b->n * sizeof *paths)) || cell_paths(src, b, paths)) {
        rc = paths ? -1 : ss_error(DOM, "out of memory");
        goto done;
    }
    canvas = malloc((size_t)W * H * 3);
    tile = malloc((size_t)D * D * 3);
    crop = kind == SS_MIL_SOURCE_SLIDE ? malloc((size_t)cw * ch * 3) : NULL;
    if (!canvas || !tile || (kind == SS_MIL_SOURCE_SLIDE && !crop)) {
        rc = ss_error(DOM, "out of memory");
        goto done;
    }
    memset(canvas, 255, (size_t)W * H * 3);
    static const uint8_t ink[3] = {30, 30, 30}, track[3] = {225, 225, 225};
    double top = att[order[0]] > 0 ? att[order[0]] : 1;
    for (int i = 0; i < k && !rc; i++) {
        int64_t c = order[i];
        int x = pad + (i % cols) * TW, y = pad + (i / cols) * TH;
        if (kind == SS_MIL_SOURCE_SLIDE) {
            const ss_slide_info_t *in = ss_slide_info(s);
            double sx = mpp / in->mpp_x, sy = mpp / in->mpp_y;
            int64_t x0 = (int64_t)llround(b->centres[2 * c] - cw * sx / 2);
            int64_t y0 = (int64_t)llround(b->centres[2 * c + 1] - ch * sy / 2);
            if (ss_slide_read_region(s, x0, y0, mpp, cw, ch, crop)) {
                rc = ss_error(DOM, "bag %s: cell %llu for the gallery %s", b->id,
                              (unsigned long long)b->cell_ids[c], path);
                break;
            }
            resample(crop, cw, ch, tile, D, D);
        } else {
            uint8_t *img = NULL;
            int iw, ih;
            if (ss_image_load_rgb(paths[c], &img, &iw, &ih)) {
                rc = ss_error(DOM, "bag %s: cell %llu for the gallery %s", b->id,
                              (unsigned long long)b->cell_ids[c], path);
                break;
            }
            resample(img, iw, ih, tile, D, D);
            free(img);
        }
        blit(canvas, W, H, x, y, tile, D, D);
        char label[64];
        snprintf(label, sizeof label, "#%d %.3g", i + 1, att[c]);
        draw_text(canvas, W, H, x + 1, y + D + 3, label, 1, ink);
        uint8_t col[3];
        ss_mil_colormap(rank_t(i + 1, b->n), col);
        int len = (int)lround(D * (att[c] > 0 ? att[c] / top : 0));
        fill_rect(canvas, W, H, x, y + D + 13, D, 6, track);
        fill_rect(canvas, W, H, x, y + D + 13, len, 6, col);
    }
    sidecar_t sc;
    if (rc || (rc = save_png_sidecar(&sc, path, canvas, W, H))) goto done;
    FILE *f = sc.f;
    fprintf(f, "tile,rank,cell_id,x,y,attention,image\n");
    for (int i = 0; i < k; i++) {
        int64_t c = order[i];
        fprintf(f, "%d,%d,%llu,%lld,%lld,%.8g,", i, i + 1, (unsigned long long)b->cell_ids[c],
                (long long)b->centres[2 * c], (long long)b->centres[2 * c + 1], att[c]);
        const char *img = paths ? paths[c] : find_slide(src, b->id)->path;
        if (strpbrk(img, ",\"\n")) {
            fputc('"', f);
            for (const char *p = img; *p; p++) {
                if (*p == '"') fputc('"', f);
                fputc(*p, f);
            }
            fputc('"', f);
        } else {
            fputs(img, f);
        }
        fputc('\n', f);
    }
    rc = finish_file(f, sc.tmp, sc.path);
done:
    ss_slide_destroy(&s);
    free(order), free(paths), free(canvas), free(crop), free(tile);
    return rc;
}
