/* Cell detection on an in-memory RGB image at a known mpp (see include/slidestream/cells.h).
 *
 * Nucleated cells: a nucleus-stain channel (green minus blue optical density, i.e. log(B/G)
 * against the background's ratio), a threshold, an opening that removes thin purple rims,
 * fragments grouped by a dilation of half the lobe gap (lobulated nuclei become one object),
 * touching nuclei split by h-maxima + watershed on the distance map, then per-object area and
 * stain tests reject platelets, red cells and debris.
 * All cells: green optical density against the background (every cell absorbs green), Otsu
 * threshold, pallor holes filled, watershed split, size filter; objects carrying nucleus stain
 * are classified nucleated.
 * Every buffer is allocated here and freed before returning; the image is borrowed. */
#include "slidestream/cells.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "morph.h"
#include "slidestream/error.h"

void ss_cells_params_default(ss_cells_params_t *p, ss_cells_mode_t mode)
{
    memset(p, 0, sizeof *p);
    p->mode = mode;
    p->nucleus_threshold = 0.25;
    p->nucleus_min_um2 = 15.0; /* small lymphocyte nucleus ≈ 7 µm ⌀ ≈ 38 µm²; platelet ≈ 5 */
    p->nucleus_max_um2 = 1000.0; /* far above any blast nucleus (≈ 15 µm ⌀ ≈ 180 µm²) */
    p->nucleus_min_mean = 0.33;  /* nuclei ≈ 0.5; platelet granulomere ≈ 0.3 */
    p->nucleus_min_fill = 0.5;   /* nuclei ≈ 0.6–0.8; a granular platelet clump ≈ 0.4 */
    p->lobe_gap_um = 1.6;
    /* Nuclei of neighbouring cells are kept apart by cytoplasm, so nucleus splitting need only
     * undo real contact; red cells touch along short arcs and need a finer depth. */
    p->split_depth_um = mode == SS_CELLS_ALL ? 0.7 : 1.5;
    p->fragment_max_um2 = 25.0; /* a neutrophil lobe ≈ 8–20 µm²; whole nuclei are larger */
    p->fragment_reach_um = 8.0; /* lobe centres lie within a cell radius of each other */
    p->cell_threshold = 0;
    p->cell_min_um2 = 10.0; /* microcytes ≈ 20 µm², schistocyte fragments ≥ 10; platelets < 8 */
    p->cell_max_um2 = 400.0;
    p->hole_max_um2 = 25.0;
}

int ss_cell_list_push(ss_cell_list_t *l, const ss_cell_t *c)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        ss_cell_t *nc = realloc(l->cells, cap * sizeof *nc);
        if (!nc) return ss_error("cells", "out of memory growing a cell list to %zu", cap);
        l->cells = nc;
        l->cap = cap;
    }
    l->cells[l->n++] = *c;
    return 0;
}

void ss_cell_list_free(ss_cell_list_t *l)
{
    free(l->cells);
    l->cells = NULL;
    l->n = l->cap = 0;
}

/* Box blur of radius r (two separable passes), in place. */
static int box_blur(float *img, int w, int h, int r)
{
    if (r <= 0) return 0;
    int n = w > h ? w : h;
    float *line = malloc(sizeof(float) * n);
    if (!line) return ss_error("cells", "out of memory blurring");
    for (int y = 0; y < h; y++) {
        float *row = img + (size_t)y * w;
        memcpy(line, row, sizeof(float) * w);
        for (int x = 0; x < w; x++) {
            int a = x - r < 0 ? 0 : x - r, b = x + r >= w ? w - 1 : x + r;
            double s = 0;
            for (int i = a; i <= b; i++)
                s += line[i];
            row[x] = (float)(s / (b - a + 1));
        }
    }
    for (int x = 0; x < w; x++) {
        for (int y = 0; y < h; y++)
            line[y] = img[(size_t)y * w + x];
        for (int y = 0; y < h; y++) {
            int a = y - r < 0 ? 0 : y - r, b = y + r >= h ? h - 1 : y + r;
            double s = 0;
            for (int i = a; i <= b; i++)
                s += line[i];
            img[(size_t)y * w + x] = (float)(s / (b - a + 1));
        }
    }
    free(line);
    return 0;
}

/* Background colour: per-channel medians over the brightest 15% of pixels (glass between cells;
 * smears always show some). Pure white is left out: it is what readers pad beyond a slide's
 * edge with, not glass seen through a microscope. */
static void background_rgb(const uint8_t *rgb, size_t n, double bg[3])
{
    size_t hist[1021] = {0}, white = 0;
    for (size_t i = 0; i < n; i++)
        hist[rgb[3 * i] + 2 * rgb[3 * i + 1] + rgb[3 * i + 2]]++;
    if (hist[1020] < n) white = hist[1020], hist[1020] = 0;
    size_t want = (n - white) * 15 / 100 + 1, acc = 0;
    int cut = 1020;
    for (; cut > 0; cut--) {
        acc += hist[cut];
        if (acc >= want) break;
    }
    size_t ch[3][256] = {{0}};
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = rgb + 3 * i;
        if (p[0] + 2 * p[1] + p[2] < cut || (white && p[0] + 2 * p[1] + p[2] == 1020)) continue;
        ch[0][p[0]]++, ch[1][p[1]]++, ch[2][p[2]]++;
        m++;
    }
    for (int c = 0; c < 3; c++) {
        size_t a = 0;
        int v = 0;
        for (; v < 255; v++) {
            a += ch[c][v];
            if (2 * a >= m) break;
        }
        bg[c] = v;
    }
}

/* Otsu's threshold of the values in [lo, hi) over 256 bins. */
static double otsu(const float *v, size_t n, double lo, double hi)
{
    double hist[256] = {0}, total = 0, sum = 0;
    for (size_t i = 0; i < n; i++) {
        int b = (int)((v[i] - lo) / (hi - lo) * 256);
        if (b < 0) b = 0;
        if (b > 255) b = 255;
        hist[b]++;
    }
    for (int b = 0; b < 256; b++)
        total += hist[b], sum += b * hist[b];
    double wb = 0, sb = 0, best = -1;
    int arg = 0;
    for (int b = 0; b < 256; b++) {
        wb += hist[b];
        if (wb == 0 || wb == total) continue;
        sb += b * hist[b];
        double mb = sb / wb, mf = (sum - sb) / (total - wb);
        double between = wb * (total - wb) * (mb - mf) * (mb - mf);
        if (between > best) best = between, arg = b;
    }
    return lo + (arg + 1) * (hi - lo) / 256;
}

/* Green optical density separating cells from glass: Otsu, kept within what red cells give
 * (pale hypochromic cells ≈ 0.1, glass ≈ 0) so an image of nearly all glass or nearly all
 * cells cannot drive it to noise or into the cells. */
static double cell_threshold_of(const float *od, size_t n)
{
    double t = otsu(od, n, -0.2, 1.5);
    return t < 0.06 ? 0.06 : t > 0.3 ? 0.3 : t;
}

int ss_cells_calibrate(const uint8_t *rgb, int w, int h, ss_cells_params_t *p)
{
    if (!rgb || w <= 0 || h <= 0) return ss_error("cells", "calibration image is empty");
    size_t n = (size_t)w * h;
    background_rgb(rgb, n, p->background);
    if (p->mode != SS_CELLS_ALL || p->cell_threshold > 0) return 0;
    float *od = malloc(sizeof(float) * n);
    if (!od) return ss_error("cells", "out of memory calibrating on %dx%d", w, h);
    double g0 = p->background[1] + 1;
    for (size_t i = 0; i < n; i++)
        od[i] = (float)log(g0 / (rgb[3 * i + 1] + 1.0));
    p->cell_threshold = cell_threshold_of(od, n);
    free(od);
    return 0;
}

typedef struct {
    double n, sx, sy, stain; /* nucleus pixels, their coordinate and stain sums */
    double area, ax, ay;     /* all object pixels */
    int x0, y0, x1, y1;      /* bbox of the object */
    int border;
    int merged_into; /* > 0: this fragment now belongs to that object */
} obj_t;

static void absorb(obj_t *dst, const obj_t *src)
{
    dst->n += src->n, dst->sx += src->sx, dst->sy += src->sy, dst->stain += src->stain;
    dst->area += src->area, dst->ax += src->ax, dst->ay += src->ay;
    if (src->x0 < dst->x0) dst->x0 = src->x0;
    if (src->y0 < dst->y0) dst->y0 = src->y0;
    if (src->x1 > dst->x1) dst->x1 = src->x1;
    if (src->y1 > dst->y1) dst->y1 = src->y1;
    dst->border |= src->border;
}

/* Lobes of one nucleus (neutrophils, eosinophils) can lie further apart than the grouping
 * dilation bridges. A fragment smaller than any whole nucleus joins the nearest larger object
 * whose centre lies within reach (pixels), smallest fragments first; whole nuclei never merge. */
static void merge_fragments(obj_t *o, int nl, double frag_max_px, double reach_px)
{
    for (;;) {
        int best = 0;
        for (int l = 1; l <= nl; l++)
            if (!o[l].merged_into && o[l].n > 0 && o[l].n < frag_max_px &&
                (!best || o[l].n < o[best].n))
                best = l;
        if (!best) return;
        obj_t *f = &o[best];
        double fx = f->sx / f->n, fy = f->sy / f->n, dbest = reach_px * reach_px;
        int to = 0;
        for (int l = 1; l <= nl; l++) {
            /* Into larger objects only (ties by label) so that merging cannot cycle. */
            if (l == best || o[l].merged_into > 0 || o[l].n < f->n || (o[l].n == f->n && l < best))
                continue;
            double dx = o[l].sx / o[l].n - fx, dy = o[l].sy / o[l].n - fy;
            if (dx * dx + dy * dy <= dbest) dbest = dx * dx + dy * dy, to = l;
        }
        if (to) absorb(&o[to], f);
        /* Either way this fragment is settled: mark it so the loop ends. */
        f->merged_into = to ? to : -1;
    }
}

static int64_t nucleus_channel(const uint8_t *rgb, size_t n, const double bg[3], float *out)
{
    double ref = log((bg[2] + 1) / (bg[1] + 1));
    for (size_t i = 0; i < n; i++)
        out[i] = (float)(log((rgb[3 * i + 2] + 1.0) / (rgb[3 * i + 1] + 1.0)) - ref);
    return 0;
}

static int sort_cells_cmp(const void *a, const void *b)
{
    const ss_cell_t *p = a, *q = b;
    if (p->y != q->y) return p->y < q->y ? -1 : 1;
    if (p->x != q->x) return p->x < q->x ? -1 : 1;
    return 0;
}

/* Gathers per-object statistics for labels 1..nl. */
static obj_t *object_stats(const int32_t *lab, int nl, const uint8_t *nuc, const float *stain,
                           int w, int h)
{
    obj_t *o = calloc((size_t)nl + 1, sizeof *o);
    if (!o) return NULL;
    for (int i = 1; i <= nl; i++)
        o[i].x0 = w, o[i].y0 = h, o[i].x1 = -1, o[i].y1 = -1;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            int32_t l = lab[i];
            if (!l) continue;
            obj_t *b = &o[l];
            b->area++, b->ax += x, b->ay += y;
            if (x < b->x0) b->x0 = x;
            if (y < b->y0) b->y0 = y;
            if (x > b->x1) b->x1 = x;
            if (y > b->y1) b->y1 = y;
            if (x == 0 || y == 0 || x == w - 1 || y == h - 1) b->border = 1;
            if (nuc[i]) b->n++, b->sx += x, b->sy += y, b->stain += stain[i];
        }
    return o;
}

static int detect_nucleated(const uint8_t *rgb, int w, int h, double mpp,
                            const ss_cells_params_t *p, const double bg[3], float *stain,
                            uint8_t *nuc, ss_cell_list_t *out)
{
    size_t n = (size_t)w * h;
    double um2 = mpp * mpp;
    int result = -1;
    uint8_t *grp = malloc(n);
    int32_t *lab = malloc(sizeof(int32_t) * n);
    obj_t *o = NULL;
    if (!grp || !lab) {
        ss_error("cells", "out of memory (%dx%d image)", w, h);
        goto done;
    }
    memcpy(grp, nuc, n);
    /* Fragments within lobe_gap of each other fuse; enclosed gaps (between lobes) close. */
    if (ss_morph_dilate(grp, w, h, p->lobe_gap_um / 2 / mpp) ||
        ss_morph_fill_holes(grp, w, h, 60.0 / um2))
        goto done;
    int nl = ss_morph_split(grp, w, h, p->split_depth_um / mpp, lab);
    if (nl < 0) goto done;
    o = object_stats(lab, nl, nuc, stain, w, h);
    if (!o) {
        ss_error("cells", "out of memory for %d objects", nl);
        goto done;
    }
    merge_fragments(o, nl, p->fragment_max_um2 / um2, p->fragment_reach_um / mpp);
    for (int l = 1; l <= nl; l++) {
        obj_t *b = &o[l];
        if (b->merged_into > 0) continue;
        double a = b->n * um2;
        if (a < p->nucleus_min_um2 || a > p->nucleus_max_um2) continue;
        if (b->stain / b->n < p->nucleus_min_mean || b->n < p->nucleus_min_fill * b->area) continue;
        ss_cell_t c = {0};
        c.x = b->sx / b->n;
        c.y = b->sy / b->n;
        c.bbox_x = b->x0, c.bbox_y = b->y0;
        c.bbox_w = b->x1 - b->x0 + 1, c.bbox_h = b->y1 - b->y0 + 1;
        c.area = b->area;
        c.nucleus_area = b->n;
        c.stain = b->stain / b->n;
        c.kind = SS_CELL_NUCLEATED;
        c.touches_border = b->border;
        if (ss_cell_list_push(out, &c)) goto done;
    }
    result = 0;
done:
    free(grp), free(lab), free(o);
    return result;
}

static int detect_all(const uint8_t *rgb, int w, int h, double mpp, const ss_cells_params_t *p,
                      const double bg[3], float *stain, uint8_t *nuc, ss_cell_list_t *out)
{
    size_t n = (size_t)w * h;
    double um2 = mpp * mpp;
    int result = -1;
    float *od = malloc(sizeof(float) * n);
    uint8_t *m = malloc(n);
    int32_t *lab = malloc(sizeof(int32_t) * n);
    obj_t *o = NULL;
    if (!od || !m || !lab) {
        ss_error("cells", "out of memory (%dx%d image)", w, h);
        goto done;
    }
    double g0 = bg[1] + 1;
    for (size_t i = 0; i < n; i++)
        od[i] = (float)log(g0 / (rgb[3 * i + 1] + 1.0));
    if (box_blur(od, w, h, (int)lround(0.25 / mpp))) goto done;
    double t = p->cell_threshold > 0 ? p->cell_threshold : cell_threshold_of(od, n);
    for (size_t i = 0; i < n; i++)
        m[i] = od[i] > t || nuc[i];
    if (ss_morph_fill_holes(m, w, h, p->hole_max_um2 / um2) || ss_morph_open(m, w, h, 0.5 / mpp))
        goto done;
    int nl = ss_morph_split(m, w, h, p->split_depth_um / mpp, lab);
    if (nl < 0) goto done;
    o = object_stats(lab, nl, nuc, stain, w, h);
    if (!o) {
        ss_error("cells", "out of memory for %d objects", nl);
        goto done;
    }
    for (int l = 1; l <= nl; l++) {
        obj_t *b = &o[l];
        double a = b->area * um2;
        if (a < p->cell_min_um2 || a > p->cell_max_um2) continue;
        ss_cell_t c = {0};
        c.x = b->ax / b->area;
        c.y = b->ay / b->area;
        c.bbox_x = b->x0, c.bbox_y = b->y0;
        c.bbox_w = b->x1 - b->x0 + 1, c.bbox_h = b->y1 - b->y0 + 1;
        c.area = b->area;
        c.nucleus_area = b->n;
        /* A red cell carries no nucleus stain; a platelet lying on one adds a few µm². */
        c.kind = b->n * um2 >= p->nucleus_min_um2 / 2 && b->n >= 0.2 * b->area ? SS_CELL_NUCLEATED
                                                                               : SS_CELL_RED;
        c.touches_border = b->border;
        if (ss_cell_list_push(out, &c)) goto done;
    }
    result = 0;
done:
    free(od), free(m), free(lab), free(o);
    return result;
}

int ss_cells_detect(const uint8_t *rgb, int w, int h, double mpp, const ss_cells_params_t *p,
                    ss_cell_list_t *out)
{
    if (!rgb || w <= 0 || h <= 0) return ss_error("cells", "empty image (%dx%d)", w, h);
    if (!(mpp > 0) || mpp > 50) return ss_error("cells", "invalid mpp %g", mpp);
    if ((size_t)w * h > (size_t)INT32_MAX) return ss_error("cells", "image too large %dx%d", w, h);
    ss_cells_params_t def;
    if (!p) {
        ss_cells_params_default(&def, SS_CELLS_NUCLEATED);
        p = &def;
    }
    size_t n = (size_t)w * h, first = out->n;
    double bg[3] = {p->background[0], p->background[1], p->background[2]};
    if (!(bg[0] > 0 && bg[1] > 0 && bg[2] > 0)) background_rgb(rgb, n, bg);
    float *stain = malloc(sizeof(float) * n);
    uint8_t *nuc = malloc(n);
    int rc = -1;
    if (!stain || !nuc) {
        ss_error("cells", "out of memory (%dx%d image)", w, h);
        goto done;
    }
    nucleus_channel(rgb, n, bg, stain);
    /* JPEG chroma is coarse; smoothing over ~0.3 µm steadies the ratio channel. */
    if (box_blur(stain, w, h, (int)lround(0.3 / mpp))) goto done;
    for (size_t i = 0; i < n; i++)
        nuc[i] = stain[i] > p->nucleus_threshold;
    /* Thin purple rims (chromatic fringes on red cells) vanish in a small opening. */
    if (ss_morph_open(nuc, w, h, 0.4 / mpp)) goto done;
    rc = p->mode == SS_CELLS_ALL ? detect_all(rgb, w, h, mpp, p, bg, stain, nuc, out)
                                 : detect_nucleated(rgb, w, h, mpp, p, bg, stain, nuc, out);
    if (!rc && out->n > first)
        qsort(out->cells + first, out->n - first, sizeof(ss_cell_t), sort_cells_cmp);
done:
    free(stain), free(nuc);
    return rc;
}

void ss_cells_tile_to_pixels(const ss_cells_tile_t *t, double lx, double ly, double *px, double *py)
{
    *px = (lx + 0.5 - t->x0) / t->scale - 0.5;
    *py = (ly + 0.5 - t->y0) / t->scale - 0.5;
}

int ss_cells_detect_tile(const uint8_t *rgb, int w, int h, double mpp, const ss_cells_tile_t *tile,
                         const ss_cells_params_t *p, ss_cell_list_t *out)
{
    if (!(tile->scale > 0)) return ss_error("cells", "invalid tile scale %g", tile->scale);
    ss_cell_list_t tmp = {0};
    if (ss_cells_detect(rgb, w, h, mpp, p, &tmp)) {
        ss_cell_list_free(&tmp);
        return -1;
    }
    double s = tile->scale;
    for (size_t i = 0; i < tmp.n; i++) {
        ss_cell_t c = tmp.cells[i];
        /* Tile pixel i covers level-0 [x0 + i·s, x0 + (i+1)·s): a centroid at pixel index i
         * is the continuous point x0 + (i + ½)·s, which is what core membership is decided on
         * (as ss_tile_owns does). Reported coordinates are pixel indices again (minus ½). */
        double X = tile->x0 + (c.x + 0.5) * s, Y = tile->y0 + (c.y + 0.5) * s;
        if (X < tile->core_x || X >= tile->core_x + tile->core_w || Y < tile->core_y ||
            Y >= tile->core_y + tile->core_h)
            continue;
        c.x = X - 0.5;
        c.y = Y - 0.5;
        double bx = tile->x0 + c.bbox_x * s, by = tile->y0 + c.bbox_y * s;
        c.bbox_x = (int)floor(bx);
        c.bbox_y = (int)floor(by);
        c.bbox_w = (int)ceil(bx + tmp.cells[i].bbox_w * s) - c.bbox_x;
        c.bbox_h = (int)ceil(by + tmp.cells[i].bbox_h * s) - c.bbox_y;
        c.area *= s * s;
        c.nucleus_area *= s * s;
        if (ss_cell_list_push(out, &c)) {
            ss_cell_list_free(&tmp);
            return -1;
        }
    }
    ss_cell_list_free(&tmp);
    return 0;
}
