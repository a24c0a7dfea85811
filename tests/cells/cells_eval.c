/* cells_eval — scores cell detections against real or generated ground truth.
 *
 *   cells_eval bccd  DATA_DIR MPP [--csv CELLS.csv] [--recall R --precision P] [--overlay DIR]
 *   cells_eval chula DATA_DIR MPP [--csv CELLS.csv] [--recall R --precision P] [--overlay DIR]
 *   cells_eval synth TRUTH.csv CELLS.csv [--recall R --precision P]
 *
 * Detections come from `slidestream detect`'s CSV (--csv; rows matched to images by file stem)
 * or, without --csv, from ss_cells_detect run in this process. Matching is one-to-one and maximal
 * (Kuhn's augmenting paths), so no detection is credited twice:
 *   bccd:  nucleated detection ↔ WBC box containing its centre; figures per ImageSets split.
 *   chula: any detection ↔ labelled point inside its bounding box. Unlabelled cells exist (white
 *          cells, cells cut by the border), so an unmatched detection is not counted as a false
 *          positive when it is classified nucleated or its object touches the image border;
 *          those exclusions are counted and printed.
 *   synth: nucleated detection ↔ true nucleated cell (class not RBC/PLT) within its radius;
 *          also counts true cells claimed by two or more detections (duplicates).
 * Exit status: 0 when every reported figure meets the thresholds, 1 otherwise, 77 when data is
 * missing. */
#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/cells.h"
#include "slidestream/error.h"

typedef struct {
    double x0, y0, x1, y1; /* box, or point when x0 == x1 */
    int kind;              /* synth: 1 nucleated truth */
    double r;
} truth_t;

typedef struct {
    char stem[256];
    ss_cell_t *c;
    size_t n;
} dets_t;

static dets_t *csv_dets;
static size_t csv_n;

static void stem_of(const char *path, char *out, size_t cap)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(out, cap, "%s", b);
    char *dot = strrchr(out, '.');
    if (dot) *dot = '\0';
}

/* Reads `source,cell_id,x,y,bbox_x,bbox_y,bbox_w,bbox_h,area[,kind[,border]]` rows. */
static int load_csv(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cells_eval: cannot open %s\n", path);
        return -1;
    }
    char line[4096];
    if (!fgets(line, sizeof line, f) ||
        strncmp(line, "source,cell_id,x,y,bbox_x,bbox_y,bbox_w,bbox_h,area", 51)) {
        fprintf(stderr, "cells_eval: %s: bad header\n", path);
        fclose(f);
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        char *fields[16];
        int nf = 0;
        for (char *p = line, *tok; nf < 16 && (tok = strsep(&p, ",\n"));)
            fields[nf++] = tok;
        if (nf < 9) continue;
        char stem[256];
        stem_of(fields[0], stem, sizeof stem);
        dets_t *d = NULL;
        for (size_t i = 0; i < csv_n; i++)
            if (!strcmp(csv_dets[i].stem, stem)) d = &csv_dets[i];
        if (!d) {
            csv_dets = realloc(csv_dets, (csv_n + 1) * sizeof *csv_dets);
            d = &csv_dets[csv_n++];
            memset(d, 0, sizeof *d);
            snprintf(d->stem, sizeof d->stem, "%s", stem);
        }
        ss_cell_t c = {0};
        c.x = atof(fields[2]), c.y = atof(fields[3]);
        c.bbox_x = atoi(fields[4]), c.bbox_y = atoi(fields[5]);
        c.bbox_w = atoi(fields[6]), c.bbox_h = atoi(fields[7]);
        c.area = atof(fields[8]);
        c.kind = nf > 9 && !strncmp(fields[9], "red", 3) ? SS_CELL_RED : SS_CELL_NUCLEATED;
        c.touches_border = nf > 10 ? atoi(fields[10]) : 0;
        d->c = realloc(d->c, (d->n + 1) * sizeof *d->c);
        d->c[d->n++] = c;
    }
    fclose(f);
    return 0;
}

/* Kuhn's maximum bipartite matching; adj[i*nd + j] = truth i may match detection j. */
static int try_aug(int i, const unsigned char *adj, int nd, int *match_d, unsigned char *seen)
{
    for (int j = 0; j < nd; j++) {
        if (!adj[(size_t)i * nd + j] || seen[j]) continue;
        seen[j] = 1;
        if (match_d[j] < 0 || try_aug(match_d[j], adj, nd, match_d, seen)) {
            match_d[j] = i;
            return 1;
        }
    }
    return 0;
}

static int max_match(const unsigned char *adj, int nt, int nd, int *match_d)
{
    unsigned char *seen = malloc(nd + 1);
    for (int j = 0; j < nd; j++)
        match_d[j] = -1;
    int m = 0;
    for (int i = 0; i < nt; i++) {
        memset(seen, 0, nd + 1);
        m += try_aug(i, adj, nd, match_d, seen);
    }
    free(seen);
    return m;
}

static const char *mode;
static double mpp;
static const char *overlay_dir;
static int min_labels; /* chula: images with fewer labels are too sparsely labelled for precision */

static int detections_for(const char *img_path, const char *stem, ss_cells_mode_t cm,
                          ss_cell_t **out, size_t *n, uint8_t **rgb_keep, int *w, int *h)
{
    *rgb_keep = NULL;
    if (csv_dets || !img_path) {
        *out = NULL, *n = 0;
        for (size_t i = 0; i < csv_n; i++)
            if (!strcmp(csv_dets[i].stem, stem)) {
                *out = malloc((csv_dets[i].n + 1) * sizeof **out);
                memcpy(*out, csv_dets[i].c, csv_dets[i].n * sizeof **out);
                *n = csv_dets[i].n;
            }
        if (overlay_dir && img_path) ss_image_load_rgb(img_path, rgb_keep, w, h);
        return 0;
    }
    uint8_t *rgb;
    if (ss_image_load_rgb(img_path, &rgb, w, h)) return -1;
    ss_cells_params_t p;
    ss_cells_params_default(&p, cm);
    /* Development knobs, so parameter studies need no rebuild (never set by the tests). */
    if (getenv("CELLS_SPLIT")) p.split_depth_um = atof(getenv("CELLS_SPLIT"));
    if (getenv("CELLS_GAP")) p.lobe_gap_um = atof(getenv("CELLS_GAP"));
    if (getenv("CELLS_THR")) p.nucleus_threshold = atof(getenv("CELLS_THR"));
    if (getenv("CELLS_MEAN")) p.nucleus_min_mean = atof(getenv("CELLS_MEAN"));
    if (getenv("CELLS_FRAG")) p.fragment_max_um2 = atof(getenv("CELLS_FRAG"));
    if (getenv("CELLS_REACH")) p.fragment_reach_um = atof(getenv("CELLS_REACH"));
    if (getenv("CELLS_MIN")) p.nucleus_min_um2 = atof(getenv("CELLS_MIN"));
    if (getenv("CELLS_CMIN")) p.cell_min_um2 = atof(getenv("CELLS_CMIN"));
    if (getenv("CELLS_CTHR")) p.cell_threshold = atof(getenv("CELLS_CTHR"));
    if (getenv("CELLS_HOLE")) p.hole_max_um2 = atof(getenv("CELLS_HOLE"));
    ss_cell_list_t l = {0};
    if (ss_cells_detect(rgb, *w, *h, mpp, &p, &l)) {
        free(rgb);
        return -1;
    }
    *out = l.cells, *n = l.n;
    *rgb_keep = rgb;
    return 0;
}

static void save_overlay(const char *stem, uint8_t *rgb, int w, int h, const ss_cell_t *c, size_t n,
                         const truth_t *t, size_t nt)
{
    if (!overlay_dir || !rgb) return;
    static const uint8_t yel[3] = {255, 200, 0};
    for (size_t i = 0; i < nt; i++) {
        if (t[i].x0 == t[i].x1)
            ss_draw_rect(rgb, w, h, (int)t[i].x0 - 2, (int)t[i].y0 - 2, 5, 5, 1, yel);
        else
            ss_draw_rect(rgb, w, h, (int)t[i].x0, (int)t[i].y0, (int)(t[i].x1 - t[i].x0),
                         (int)(t[i].y1 - t[i].y0), 2, yel);
    }
    ss_cells_draw_overlay(rgb, w, h, c, n, 1.0);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.png", overlay_dir, stem);
    ss_image_save_rgb(path, rgb, w, h);
}

static double num_after(const char *s, const char *tag)
{
    const char *p = strstr(s, tag);
    return p ? atof(p + strlen(tag)) : -1;
}

static int read_file(const char *path, char **buf)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *buf = malloc(n + 1);
    size_t got = fread(*buf, 1, n, f);
    (*buf)[got] = 0;
    fclose(f);
    return 0;
}

/* WBC boxes of one BCCD annotation. */
static size_t bccd_truth(const char *xml_path, truth_t **out)
{
    char *x;
    *out = NULL;
    if (read_file(xml_path, &x)) return 0;
    size_t n = 0;
    for (char *p = x; (p = strstr(p, "<object>"));) {
        char *end = strstr(p, "</object>");
        if (!end) break;
        *end = 0;
        char *name = strstr(p, "<name>");
        if (name && !strncmp(name + 6, "WBC", 3)) {
            *out = realloc(*out, (n + 1) * sizeof **out);
            truth_t *t = &(*out)[n++];
            t->x0 = num_after(p, "<xmin>"), t->y0 = num_after(p, "<ymin>");
            t->x1 = num_after(p, "<xmax>"), t->y1 = num_after(p, "<ymax>");
            t->kind = 1, t->r = 0;
        }
        p = end + 1;
    }
    free(x);
    return n;
}

static int run_bccd(const char *root, double min_r, double min_p)
{
    const char *splits[] = {"train", "val", "test"};
    int ok = 1, any = 0;
    double tot_tp = 0, tot_t = 0, tot_d = 0;
    for (int s = 0; s < 3; s++) {
        char path[1024], id[256];
        snprintf(path, sizeof path, "%s/BCCD/ImageSets/Main/%s.txt", root, splits[s]);
        FILE *f = fopen(path, "r");
        if (!f) {
            printf("bccd %-5s: split list absent here — not reported\n", splits[s]);
            continue;
        }
        long nt = 0, nd = 0, tp = 0, imgs = 0, failed = 0;
        double iou_sum = 0;
        while (fscanf(f, "%255s", id) == 1) {
            char img[1024], xml[1024];
            snprintf(img, sizeof img, "%s/BCCD/JPEGImages/%s.jpg", root, id);
            snprintf(xml, sizeof xml, "%s/BCCD/Annotations/%s.xml", root, id);
            truth_t *t;
            size_t ntr = bccd_truth(xml, &t);
            ss_cell_t *c = NULL;
            size_t n = 0;
            uint8_t *rgb;
            int w, h;
            if (detections_for(csv_dets ? NULL : img, id, SS_CELLS_NUCLEATED, &c, &n, &rgb, &w,
                               &h)) {
                ss_error_report(NULL);
                failed++;
                free(t);
                continue;
            }
            if (overlay_dir && !rgb) ss_image_load_rgb(img, &rgb, &w, &h);
            int m = 0;
            if (n && ntr) {
                unsigned char *adj = calloc(ntr * n, 1);
                int *md = malloc(n * sizeof *md);
                for (size_t i = 0; i < ntr; i++)
                    for (size_t j = 0; j < n; j++)
                        adj[i * n + j] = c[j].x >= t[i].x0 && c[j].x <= t[i].x1 &&
                                         c[j].y >= t[i].y0 && c[j].y <= t[i].y1;
                m = max_match(adj, (int)ntr, (int)n, md);
                for (size_t j = 0; j < n; j++) {
                    if (md[j] < 0) continue;
                    const truth_t *b = &t[md[j]];
                    double ix0 = fmax(b->x0, c[j].bbox_x), iy0 = fmax(b->y0, c[j].bbox_y);
                    double ix1 = fmin(b->x1, c[j].bbox_x + c[j].bbox_w);
                    double iy1 = fmin(b->y1, c[j].bbox_y + c[j].bbox_h);
                    double inter = fmax(0, ix1 - ix0) * fmax(0, iy1 - iy0);
                    double uni = (b->x1 - b->x0) * (b->y1 - b->y0) +
                                 (double)c[j].bbox_w * c[j].bbox_h - inter;
                    iou_sum += uni > 0 ? inter / uni : 0;
                    if (getenv("CELLS_EVAL_IOU"))
                        printf("  iou %s %.2f box %.0fx%.0f det %dx%d\n", id,
                               uni > 0 ? inter / uni : 0, b->x1 - b->x0, b->y1 - b->y0, c[j].bbox_w,
                               c[j].bbox_h);
                }
                free(adj), free(md);
            }
            if (getenv("CELLS_EVAL_VERBOSE") && (m != (int)ntr || m != (int)n)) {
                printf("  %s: truth %zu det %zu matched %d\n", id, ntr, n, m);
                for (size_t j = 0; j < n; j++)
                    printf("    det (%.0f,%.0f) nucleus %.1f um2 fill %.2f stain %.2f\n", c[j].x,
                           c[j].y, c[j].nucleus_area * mpp * mpp, c[j].nucleus_area / c[j].area,
                           c[j].stain);
            }
            save_overlay(id, rgb, w, h, c, n, t, ntr);
            nt += ntr, nd += n, tp += m, imgs++;
            free(t), free(c), free(rgb);
        }
        fclose(f);
        double rec = nt ? (double)tp / nt : 0, prec = nd ? (double)tp / nd : 0;
        printf("bccd %-5s: images %ld, WBC boxes %ld, detections %ld, matched %ld: recall %.3f "
               "precision %.3f; mean box IoU of matched cells %.2f%s\n",
               splits[s], imgs, nt, nd, tp, rec, prec, tp ? iou_sum / tp : 0,
               failed ? " (some images failed)" : "");
        if (rec < min_r || prec < min_p || failed) ok = 0;
        tot_tp += tp, tot_t += nt, tot_d += nd;
        any = 1;
    }
    if (!any) return 77;
    printf(
        "bccd all  : recall %.3f precision %.3f (thresholds recall >= %.2f, precision >= %.2f)\n",
        tot_t ? tot_tp / tot_t : 0, tot_d ? tot_tp / tot_d : 0, min_r, min_p);
    return ok ? 0 : 1;
}

static int cmp_ids(const void *a, const void *b)
{
    return atoi(*(char *const *)a) - atoi(*(char *const *)b);
}

static int run_chula(const char *root, double min_r, double min_p)
{
    char dpath[1024];
    snprintf(dpath, sizeof dpath, "%s/Dataset", root);
    DIR *d = opendir(dpath);
    if (!d) return 77;
    char **names = NULL;
    size_t nn = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.') {
            names = realloc(names, (nn + 1) * sizeof *names);
            names[nn++] = strdup(de->d_name);
        }
    closedir(d);
    qsort(names, nn, sizeof *names, cmp_ids);
    long nt = 0, nd = 0, tp = 0, excl_nuc = 0, excl_border = 0, fp = 0, imgs = 0, failed = 0;
    long fp_holding = 0, fp_small = 0, fp_big = 0;
    long sparse_imgs = 0, sparse_tp = 0, nt_sparse = 0;
    for (size_t k = 0; k < nn; k++) {
        char stem[256], img[2400], lab[1400];
        stem_of(names[k], stem, sizeof stem);
        snprintf(img, sizeof img, "%s/%s", dpath, names[k]);
        snprintf(lab, sizeof lab, "%s/Label/%s.txt", root, stem);
        FILE *f = fopen(lab, "r");
        if (!f) continue;
        truth_t *t = NULL;
        size_t ntr = 0;
        double x, y;
        int cls;
        while (fscanf(f, "%lf %lf %d", &x, &y, &cls) == 3) {
            t = realloc(t, (ntr + 1) * sizeof *t);
            t[ntr++] = (truth_t){x, y, x, y, 1, 0};
        }
        fclose(f);
        ss_cell_t *c = NULL;
        size_t n = 0;
        uint8_t *rgb;
        int w, h;
        if (detections_for(csv_dets ? NULL : img, stem, SS_CELLS_ALL, &c, &n, &rgb, &w, &h)) {
            ss_error_report(NULL);
            failed++;
            free(t);
            continue;
        }
        if (overlay_dir && !rgb) ss_image_load_rgb(img, &rgb, &w, &h);
        int *md = malloc((n + 1) * sizeof *md);
        int m = 0;
        if (n && ntr) {
            unsigned char *adj = calloc(ntr * n, 1);
            for (size_t i = 0; i < ntr; i++)
                for (size_t j = 0; j < n; j++)
                    adj[i * n + j] = t[i].x0 >= c[j].bbox_x &&
                                     t[i].x0 < c[j].bbox_x + c[j].bbox_w &&
                                     t[i].y0 >= c[j].bbox_y && t[i].y0 < c[j].bbox_y + c[j].bbox_h;
            m = max_match(adj, (int)ntr, (int)n, md);
            free(adj);
        } else
            for (size_t j = 0; j < n; j++)
                md[j] = -1;
        long used = 0;
        int dense = (long)ntr >= min_labels;
        if (!dense) {
            sparse_imgs++, sparse_tp += m, nt_sparse += ntr;
            n = 0; /* precision is not measurable against a sparse labelling */
        }
        for (size_t j = 0; j < n; j++) {
            if (md[j] >= 0) {
                used++;
                continue;
            }
            if (c[j].kind == SS_CELL_NUCLEATED)
                excl_nuc++;
            else if (c[j].touches_border)
                excl_border++;
            else {
                fp++;
                used++;
                int holds = 0;
                for (size_t i = 0; i < ntr; i++)
                    holds |= t[i].x0 >= c[j].bbox_x && t[i].x0 < c[j].bbox_x + c[j].bbox_w &&
                             t[i].y0 >= c[j].bbox_y && t[i].y0 < c[j].bbox_y + c[j].bbox_h;
                fp_holding += holds;
                double a = c[j].area * mpp * mpp;
                fp_small += a < 25;
                fp_big += a > 70;
            }
        }
        if (getenv("CELLS_EVAL_VERBOSE"))
            printf("  %s: labels %zu det %zu matched %d\n", stem, ntr, n, m);
        save_overlay(stem, rgb, w, h, c, n, t, ntr);
        if (dense) nt += ntr, nd += used, tp += m;
        imgs++;
        free(t), free(c), free(md), free(rgb);
    }
    for (size_t k = 0; k < nn; k++)
        free(names[k]);
    free(names);
    if (!imgs) return 77;
    double rec_all = nt + nt_sparse ? (double)(tp + sparse_tp) / (nt + nt_sparse) : 0;
    double rec = nt ? (double)tp / nt : 0, prec = nd ? (double)tp / nd : 0;
    printf(
        "chula all-cells, densely labelled images (>= %d labels): images %ld, labelled cells %ld, "
        "counted detections %ld, matched %ld, false positives %ld: recall %.3f precision %.3f\n",
        min_labels, imgs - sparse_imgs, nt, nd, tp, fp, rec, prec);
    printf("chula all-cells, every image: images %ld, labelled cells %ld, matched %ld: recall %.3f "
           "(precision not measured on the %ld sparsely labelled images)\n",
           imgs, nt + nt_sparse, tp + sparse_tp, rec_all, sparse_imgs);
    printf("chula strict precision on those images (every unmatched red detection counted, "
           "border-cut ones included): %.3f\n",
           nd + excl_border ? (double)tp / (nd + excl_border) : 0);
    printf("chula unmatched detections not counted: %ld classified nucleated (white cells carry "
           "no label), %ld red objects touching the image border (cut cells carry no label)\n",
           excl_nuc, excl_border);
    printf("chula false positives: %ld hold an already-matched label (split or overlapping cell), "
           "%ld smaller than 25 um2, %ld larger than 70 um2\n",
           fp_holding, fp_small, fp_big);
    printf("chula thresholds: recall >= %.2f, precision >= %.2f%s\n", min_r, min_p,
           failed ? "; some images failed" : "");
    return rec_all >= min_r && prec >= min_p && !failed ? 0 : 1;
}

/* Truth CSV: class,x,y,radius (header line); RBC and PLT rows are not nucleated cells. */
static int run_synth(const char *truth_path, const char *cells_path, double min_r, double min_p)
{
    FILE *f = fopen(truth_path, "r");
    if (!f) {
        fprintf(stderr, "cells_eval: cannot open %s\n", truth_path);
        return 1;
    }
    char line[512];
    truth_t *t = NULL;
    size_t nt = 0;
    while (fgets(line, sizeof line, f)) {
        char cls[64];
        double x, y, r;
        if (sscanf(line, "%63[^,],%lf,%lf,%lf", cls, &x, &y, &r) != 4) continue;
        if (!strcmp(cls, "RBC") || !strcmp(cls, "PLT")) continue;
        t = realloc(t, (nt + 1) * sizeof *t);
        t[nt++] = (truth_t){x, y, x, y, 1, r};
    }
    fclose(f);
    if (load_csv(cells_path)) return 1;
    size_t n = 0;
    for (size_t i = 0; i < csv_n; i++)
        n += csv_dets[i].n;
    ss_cell_t *c = malloc((n + 1) * sizeof *c);
    n = 0;
    for (size_t i = 0; i < csv_n; i++)
        for (size_t j = 0; j < csv_dets[i].n; j++)
            if (csv_dets[i].c[j].kind == SS_CELL_NUCLEATED) c[n++] = csv_dets[i].c[j];
    unsigned char *adj = calloc(nt * n + 1, 1);
    int *md = malloc((n + 1) * sizeof *md);
    long dup = 0;
    for (size_t i = 0; i < nt; i++) {
        int claims = 0;
        for (size_t j = 0; j < n; j++) {
            double dx = c[j].x - t[i].x0, dy = c[j].y - t[i].y0;
            adj[i * n + j] = dx * dx + dy * dy <= t[i].r * t[i].r;
            claims += adj[i * n + j];
        }
        if (claims > 1) dup++;
    }
    int m = max_match(adj, (int)nt, (int)n, md);
    /* Exact duplicates: two detections at (almost) one point, e.g. from two tiles. */
    long same = 0;
    for (size_t a = 0; a < n; a++)
        for (size_t b = a + 1; b < n; b++)
            if (fabs(c[a].x - c[b].x) < 2 && fabs(c[a].y - c[b].y) < 2) same++;
    double rec = nt ? (double)m / nt : 0, prec = n ? (double)m / n : 0;
    printf("synth: true nucleated cells %zu, nucleated detections %zu, matched %d: recall %.3f "
           "precision %.3f; true cells claimed by >1 detection %ld; coincident detection pairs "
           "%ld\n",
           nt, n, m, rec, prec, dup, same);
    printf("synth thresholds: recall >= %.2f, precision >= %.2f, duplicates 0\n", min_r, min_p);
    free(t), free(c), free(adj), free(md);
    return rec >= min_r && prec >= min_p && same == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(
            stderr,
            "usage: cells_eval bccd|chula DATA_DIR MPP [--csv F] [--recall R] "
            "[--precision P] [--overlay DIR]\n       cells_eval synth TRUTH.csv CELLS.csv [...]\n");
        return 2;
    }
    mode = argv[1];
    double min_r = 0, min_p = 0;
    const char *csv = NULL;
    for (int i = 4; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--csv"))
            csv = argv[i + 1];
        else if (!strcmp(argv[i], "--recall"))
            min_r = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--precision"))
            min_p = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--overlay"))
            overlay_dir = argv[i + 1];
        else if (!strcmp(argv[i], "--min-labels"))
            min_labels = atoi(argv[i + 1]);
    }
    if (!strcmp(mode, "synth")) return run_synth(argv[2], argv[3], min_r, min_p);
    mpp = atof(argv[3]);
    if (csv && load_csv(csv)) return 1;
    int rc = !strcmp(mode, "bccd")    ? run_bccd(argv[2], min_r, min_p)
             : !strcmp(mode, "chula") ? run_chula(argv[2], min_r, min_p)
                                      : 2;
    for (size_t i = 0; i < csv_n; i++)
        free(csv_dets[i].c);
    free(csv_dets);
    return rc;
}
