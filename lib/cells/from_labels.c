/* Crops every labelled cell of a set of images into a cell folder (see cells_labels.h).
 *
 * Three passes: (1) pair every input's images with their label files (or group a CSV's rows by
 * image) and check the inputs exist, before anything is written; (2) name each image's source,
 * unique over all inputs; (3) per image, read its labels, decode it, and write one crop per label
 * under a hidden name, renamed when complete, with a row of cells.csv. Memory holds one image.
 * Per-image faults are warned by name and counted; the run goes on. */
#include "slidestream/cells_labels.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "listing.h"
#include "slidestream/cells.h"
#include "slidestream/error.h"
#include "slidestream/log.h"

/* One image to crop. */
typedef struct {
    char *image;         /* absolute path */
    char *label_file;    /* points, VOC: its label file; CSV: the CSV */
    char *name;          /* points, VOC: the stem; CSV: the image column (for the source) */
    char *source;        /* unique over the run */
    size_t input;        /* which input it came from */
    ss_label_list_t csv; /* CSV: its rows */
} job_t;

typedef struct {
    job_t *v;
    size_t n, cap;
} jobs_t;

/* Names listed in warnings before "... and N more". */
enum { NAMED_MAX = 10 };

static char *join(const char *dir, const char *name)
{
    size_t len = strlen(dir) + strlen(name) + 2;
    char *p = malloc(len);
    if (p) snprintf(p, len, "%s%s%s", dir, dir[0] && dir[strlen(dir) - 1] != '/' ? "/" : "", name);
    return p;
}

/* name without its last suffix */
static char *stem_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    size_t n = dot && dot != name ? (size_t)(dot - name) : strlen(name);
    return strndup(name, n);
}

static void jobs_free(jobs_t *j)
{
    for (size_t i = 0; i < j->n; i++) {
        free(j->v[i].image), free(j->v[i].label_file), free(j->v[i].name);
        free(j->v[i].source);
        ss_label_list_free(&j->v[i].csv);
    }
    free(j->v);
    memset(j, 0, sizeof *j);
}

static job_t *jobs_add(jobs_t *j)
{
    if (j->n == j->cap) {
        size_t cap = j->cap ? 2 * j->cap : 256;
        job_t *v = realloc(j->v, cap * sizeof *v);
        if (!v) return NULL;
        j->v = v;
        j->cap = cap;
    }
    job_t *e = &j->v[j->n++];
    memset(e, 0, sizeof *e);
    return e;
}

/* A warning naming one item of a kind that may repeat: the first NAMED_MAX are named. */
static void named(size_t *count, const char *fmt, const char *a, const char *b)
{
    char msg[2048];
    snprintf(msg, sizeof msg, fmt, a, b);
    if (*count < NAMED_MAX) ss_warn("cells: %s", msg);
    if (*count == NAMED_MAX) ss_warn("cells: (more of these are counted, not named)");
    (*count)++;
}

static char **sort_keys; /* qsort has no context argument */

static int cmp_key(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    int c = strcmp(sort_keys[x], sort_keys[y]);
    return c ? c : (x > y) - (x < y);
}

/* Indices of keys in byte order of the keys (ties by index). */
static size_t *sort_by(char **keys, size_t n)
{
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!idx) return NULL;
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    sort_keys = keys;
    qsort(idx, n, sizeof *idx, cmp_key);
    return idx;
}

/* Points or VOC: label files LABELS/<stem>.txt|.xml beside images IMAGES/<stem>.<image suffix>. */
static int pair_folder(const ss_labels_input_t *in, size_t k, jobs_t *jobs, ss_crop_report_t *r)
{
    static const char *const txt[] = {".txt", NULL}, *const xml[] = {".xml", NULL};
    const ss_listing_filter_t lf = {0, in->format == SS_LABELS_VOC ? xml : txt},
                              imf = {0, ss_cells_image_suffixes};
    char **labs = NULL, **imgs = NULL;
    size_t nl = 0, ni = 0;
    int rc =
        ss_cells_list(in->labels, &lf, &labs, &nl) || ss_cells_list(in->images, &imf, &imgs, &ni);
    char **img_stems = calloc(ni ? ni : 1, sizeof *img_stems);
    char *used = calloc(ni ? ni : 1, 1);
    if (!rc && (!img_stems || !used)) rc = ss_error("cells", "out of memory");
    for (size_t i = 0; !rc && i < ni; i++)
        if (!(img_stems[i] = stem_of(imgs[i]))) rc = ss_error("cells", "out of memory");
    size_t *order = rc ? NULL : sort_by(img_stems, ni);
    if (!rc && !order) rc = ss_error("cells", "out of memory");
    if (!rc && nl == 0)
        rc = ss_error("cells", "no %s label files in %s", lf.suffixes[0], in->labels);
    for (size_t l = 0; !rc && l < nl; l++) {
        char *stem = stem_of(labs[l]);
        if (!stem) {
            rc = ss_error("cells", "out of memory");
            break;
        }
        /* the images of this stem: a run in the stem-sorted order */
        size_t lo = 0, hi = ni, hit = ni, hits = 0;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (strcmp(img_stems[order[mid]], stem) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (size_t i = lo; i < ni && !strcmp(img_stems[order[i]], stem); i++) {
            if (!hits++ || order[i] < hit) hit = order[i]; /* the first by name */
            used[order[i]] = 1;
        }
        char *lab = join(in->labels, labs[l]);
        if (!lab) {
            free(stem);
            rc = ss_error("cells", "out of memory");
            break;
        }
        if (hits != 1) {
            named(&r->labels_orphan,
                  hits ? "label file %s: several images in %s have its stem; skipped"
                       : "label file %s: no image of that stem in %s; skipped",
                  lab, in->images);
            free(stem), free(lab);
            continue;
        }
        char *rel = join(in->images, imgs[hit]);
        job_t *j = rel ? jobs_add(jobs) : NULL;
        if (!j) {
            free(stem), free(lab), free(rel);
            rc = ss_error("cells", "out of memory");
            break;
        }
        j->label_file = lab;
        j->name = stem;
        j->input = k;
        j->image = realpath(rel, NULL);
        if (!j->image)
            j->image = rel; /* gone since the listing: the decoder will say so */
        else
            free(rel);
    }
    for (size_t i = 0; !rc && i < ni; i++)
        if (!used[i]) {
            char *p = join(in->images, imgs[i]);
            named(&r->images_unlabelled, "image %s: no label file of that stem in %s; skipped",
                  p ? p : imgs[i], in->labels);
            free(p);
        }
    ss_cells_names_free(labs, nl);
    ss_cells_names_free(imgs, ni);
    ss_cells_names_free(img_stems, img_stems ? ni : 0);
    free(used);
    free(order);
    return rc;
}

static int cmp_label_image(const void *a, const void *b)
{
    const ss_label_t *x = a, *y = b;
    int c = strcmp(x->image, y->image);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

/* CSV: one file, rows grouped by their image (byte order), rows in file order within. */
static int pair_csv(const ss_labels_input_t *in, size_t k, jobs_t *jobs, ss_crop_report_t *r)
{
    ss_label_list_t all = {0};
    char *dir = NULL;
    if (ss_labels_read_csv(in->labels, &all, &r->lines_malformed)) return -1;
    if (in->images) {
        dir = strdup(in->images);
    } else {
        const char *slash = strrchr(in->labels, '/');
        dir = slash ? strndup(in->labels, (size_t)(slash - in->labels) + 1) : strdup(".");
    }
    int rc = dir ? 0 : ss_error("cells", "out of memory");
    struct stat st;
    if (!rc && in->images && (stat(dir, &st) || !S_ISDIR(st.st_mode)))
        rc = ss_error_system("cells", "images folder %s", dir);
    if (!rc && all.n == 0) rc = ss_error("cells", "no labels in %s", in->labels);
    if (!rc) qsort(all.v, all.n, sizeof *all.v, cmp_label_image);
    for (size_t a = 0, b; !rc && a < all.n; a = b) {
        for (b = a + 1; b < all.n && !strcmp(all.v[b].image, all.v[a].image); b++) {
        }
        const char *img = all.v[a].image;
        char *p = img[0] == '/' ? strdup(img) : join(dir, img);
        char *abs = p ? realpath(p, NULL) : NULL;
        if (p && !abs) {
            char where[1200];
            snprintf(where, sizeof where, "%s (%s:%d; its %zu labels skipped)", strerror(errno),
                     in->labels, all.v[a].line, b - a);
            named(&r->labels_orphan, "image %s: %s", p, where);
            free(p);
            continue;
        }
        free(p);
        job_t *j = abs ? jobs_add(jobs) : NULL;
        if (!j) {
            free(abs);
            rc = ss_error("cells", "out of memory");
            break;
        }
        j->image = abs;
        j->input = k;
        j->label_file = strdup(in->labels);
        j->name = strdup(img);
        for (size_t i = a; !rc && i < b; i++)
            rc = ss_label_list_push(&j->csv, all.v[i].x, all.v[i].y, all.v[i].cls, NULL,
                                    all.v[i].line);
        if (!rc && (!j->label_file || !j->name)) rc = ss_error("cells", "out of memory");
    }
    ss_label_list_free(&all);
    free(dir);
    return rc;
}

/* A source name usable in a file name: path separators become '-', a leading '.' and anything
 * outside [A-Za-z0-9_.+-] become '_'. CSV image names keep their folders ("a/1.jpg" -> "a-1"). */
static char *source_name(const char *name, size_t prefix_input)
{
    char *s = stem_of(name[0] == '/' ? strrchr(name, '/') + 1 : name);
    if (!s) return NULL;
    char *p = s;
    while (p[0] == '.' && p[1] == '/')
        p += 2;
    for (char *c = p; *c; c++) {
        int ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                 *c == '_' || *c == '.' || *c == '+' || *c == '-';
        if (*c == '/')
            *c = '-';
        else if (!ok)
            *c = '_';
    }
    if (p[0] == '.') p[0] = '_';
    size_t len = strlen(p) + 24;
    char *out = malloc(len);
    if (out) {
        if (prefix_input)
            snprintf(out, len, "%zu-%s", prefix_input, p);
        else
            snprintf(out, len, "%s", p);
    }
    free(s);
    return out;
}

/* Job indices by source (ties in job order). */
static size_t *by_source(jobs_t *jobs)
{
    char **keys = malloc((jobs->n ? jobs->n : 1) * sizeof *keys);
    if (!keys) return NULL;
    for (size_t i = 0; i < jobs->n; i++)
        keys[i] = jobs->v[i].source;
    size_t *idx = sort_by(keys, jobs->n);
    free(keys);
    return idx;
}

/* Every image's source: its stem; when two inputs share a stem, each such image's stem is
 * prefixed with its input's number (1-based); any clash left (two images of one CSV whose names
 * differ only in suffix) gets "-2", "-3", ... in job order, with a warning. */
static int name_sources(jobs_t *jobs)
{
    for (size_t i = 0; i < jobs->n; i++)
        if (!(jobs->v[i].source = source_name(jobs->v[i].name, 0)))
            return ss_error("cells", "out of memory");
    for (int pass = 0; pass < 2; pass++) {
        size_t *idx = by_source(jobs);
        if (!idx) return ss_error("cells", "out of memory");
        for (size_t a = 0, b; a < jobs->n; a = b) {
            int mixed = 0;
            for (b = a + 1; b < jobs->n && !strcmp(jobs->v[idx[a]].source, jobs->v[idx[b]].source);
                 b++)
                mixed |= jobs->v[idx[b]].input != jobs->v[idx[a]].input;
            if (b - a == 1) continue;
            for (size_t i = a; i < b; i++) {
                job_t *j = &jobs->v[idx[i]];
                char *s = NULL;
                if (pass == 0 && mixed) {
                    s = source_name(j->name, j->input + 1);
                } else if (pass == 1 && i > a) {
                    size_t len = strlen(j->source) + 24;
                    if ((s = malloc(len))) snprintf(s, len, "%s-%zu", j->source, i - a + 1);
                    if (s)
                        ss_warn("cells: images %s and %s would share the source name %s; "
                                "the second is %s",
                                jobs->v[idx[a]].image, j->image, j->source, s);
                } else {
                    continue;
                }
                if (!s) {
                    free(idx);
                    return ss_error("cells", "out of memory");
                }
                free(j->source);
                j->source = s;
            }
        }
        free(idx);
    }
    return 0;
}

/* ---- writing ---- */

typedef struct {
    const ss_crop_opts_t *o;
    ss_labels_format_t format;
    const char *out;
    ss_crop_report_t *r;
    FILE *csv;
    char **want; /* --classes, or NULL */
    size_t n_want;
    char *want_seen;
    uint8_t *crop; /* (size, size, 3) */
} run_t;

/* mkdir -p; an existing folder must be empty, so crops of two runs never mix. */
static int prepare_out(const char *out)
{
    char *p = strdup(out);
    if (!p) return ss_error("cells", "out of memory");
    for (char *c = p + 1; *c; c++)
        if (*c == '/') {
            *c = '\0';
            if (mkdir(p, 0777) && errno != EEXIST) {
                int rc = ss_error_system("cells", "cannot create output folder %s", p);
                free(p);
                return rc;
            }
            *c = '/';
        }
    free(p);
    if (!mkdir(out, 0777)) return 0;
    if (errno != EEXIST) return ss_error_system("cells", "cannot create output folder %s", out);
    char **names = NULL, **dirs = NULL;
    size_t nf = 0, nd = 0;
    const ss_listing_filter_t files = {0, NULL}, folders = {1, NULL};
    if (ss_cells_list(out, &files, &names, &nf) || ss_cells_list(out, &folders, &dirs, &nd))
        return -1;
    ss_cells_names_free(names, nf);
    ss_cells_names_free(dirs, nd);
    if (nf || nd)
        return ss_error("cells",
                        "output folder %s is not empty (crops of another run would mix in); "
                        "name a new folder or empty it",
                        out);
    return 0;
}

static int numeric(const char *s)
{
    return *s && strspn(s, "0123456789") == strlen(s) && strlen(s) < 18;
}

/* Class order in reports: numbers numerically ("2" before "10"), then names byte-wise. */
static int cmp_class(const char *a, const char *b)
{
    int na = numeric(a), nb = numeric(b);
    if (na && nb) {
        long long x = atoll(a), y = atoll(b);
        if (x != y) return x < y ? -1 : 1;
    } else if (na != nb) {
        return na ? -1 : 1;
    }
    return strcmp(a, b);
}

/* The class's slot in the report, creating OUT/<class>/ on first use. */
static int class_slot(run_t *R, const char *cls, size_t *slot)
{
    ss_crop_report_t *r = R->r;
    for (size_t i = 0; i < r->n_classes; i++)
        if (!strcmp(r->classes[i], cls)) {
            *slot = i;
            return 0;
        }
    char **c = realloc(r->classes, (r->n_classes + 1) * sizeof *c);
    if (c) r->classes = c;
    size_t *pc = realloc(r->per_class, (r->n_classes + 1) * sizeof *pc);
    if (pc) r->per_class = pc;
    if (!c || !pc || !(r->classes[r->n_classes] = strdup(cls)))
        return ss_error("cells", "out of memory");
    r->per_class[r->n_classes] = 0;
    char *dir = join(R->out, cls);
    if (!dir) return ss_error("cells", "out of memory");
    int rc = mkdir(dir, 0777) && errno != EEXIST
                 ? ss_error_system("cells", "cannot create class folder %s", dir)
                 : 0;
    free(dir);
    *slot = r->n_classes++;
    return rc;
}

static int selected(run_t *R, const char *cls)
{
    if (!R->want) return 1;
    for (size_t i = 0; i < R->n_want; i++)
        if (!strcmp(R->want[i], cls)) return R->want_seen[i] = 1;
    return 0;
}

/* A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180). */
static void csv_field(FILE *f, const char *s, int last)
{
    if (strpbrk(s, ",\"\r\n")) {
        fputc('"', f);
        for (; *s; s++) {
            if (*s == '"') fputc('"', f);
            fputc(*s, f);
        }
        fputc('"', f);
    } else {
        fputs(s, f);
    }
    fputc(last ? '\n' : ',', f);
}

/* Writes one crop as OUT/<class>/<source>_<n>.png, via a hidden temporary, and its CSV row. */
static int write_cell(run_t *R, const job_t *j, const ss_label_t *l, size_t n, int padded)
{
    size_t slot = 0;
    if (class_slot(R, l->cls, &slot)) return -1;
    size_t len = strlen(R->out) + strlen(l->cls) + strlen(j->source) + 48;
    char *tmp = malloc(len), *dst = malloc(len), *rel = malloc(len);
    int rc = 0;
    if (!tmp || !dst || !rel) {
        rc = ss_error("cells", "out of memory");
        goto done;
    }
    snprintf(rel, len, "%s/%s_%zu.png", l->cls, j->source, n);
    snprintf(dst, len, "%s/%s", R->out, rel);
    snprintf(tmp, len, "%s/%s/.%s_%zu.png", R->out, l->cls, j->source, n);
    if (ss_image_save_rgb(tmp, R->crop, R->o->size, R->o->size)) {
        unlink(tmp);
        rc = -1;
        goto done;
    }
    if (rename(tmp, dst)) {
        rc = ss_error_system("cells", "cannot rename %s to %s", tmp, dst);
        unlink(tmp);
        goto done;
    }
    char num[64];
    csv_field(R->csv, rel, 0);
    csv_field(R->csv, l->cls, 0);
    csv_field(R->csv, j->source, 0);
    csv_field(R->csv, j->image, 0);
    snprintf(num, sizeof num, "%.10g", l->x);
    csv_field(R->csv, num, 0);
    snprintf(num, sizeof num, "%.10g", l->y);
    csv_field(R->csv, num, 0);
    csv_field(R->csv, padded ? "1" : "0", 1);
    R->r->per_class[slot]++;
    R->r->cells_written++;
    R->r->cells_padded += (size_t)padded;
done:
    free(tmp), free(dst), free(rel);
    return rc;
}

/* One image: its labels, its pixels, its crops. 0 also when the image was skipped (warned and
 * counted); -1 only for a failed write. */
static int crop_image(run_t *R, const job_t *j)
{
    ss_crop_report_t *r = R->r;
    ss_label_list_t own = {0};
    const ss_label_list_t *labels = &j->csv;
    if (R->format != SS_LABELS_CSV) {
        int bad = R->format == SS_LABELS_VOC
                      ? ss_labels_read_voc(j->label_file, &own, &r->lines_malformed)
                      : ss_labels_read_points(j->label_file, &own, &r->lines_malformed);
        if (bad) {
            ss_warn("%s; image %s skipped", ss_error_last(), j->image);
            ss_error_clear();
            r->label_files_bad++;
            return 0;
        }
        labels = &own;
    }
    r->images++;
    if (labels->n == 0) {
        named(&r->images_empty, "label file %s holds no label; image %s has no crops",
              j->label_file, j->image);
        ss_label_list_free(&own);
        return 0;
    }
    uint8_t *rgb = NULL;
    int w = 0, h = 0, rc = 0, S = R->o->size;
    if (ss_image_load_rgb(j->image, &rgb, &w, &h)) {
        ss_warn("%s; its %zu labels skipped", ss_error_last(), labels->n);
        ss_error_clear();
        r->images_unreadable++;
        ss_label_list_free(&own);
        return 0;
    }
    for (size_t i = 0; !rc && i < labels->n; i++) {
        const ss_label_t *l = &labels->v[i];
        if (!selected(R, l->cls)) {
            r->cells_unselected++;
            continue;
        }
        /* the pixel holding the centre; the crop's pixel (S/2, S/2) */
        if (l->x < -0.5 || l->y < -0.5 || l->x >= w - 0.5 || l->y >= h - 0.5) {
            ss_warn("cells: %s:%d: centre (%g, %g) lies outside the %dx%d image %s; label skipped",
                    j->label_file, l->line, l->x, l->y, w, h, j->image);
            r->lines_malformed++;
            continue;
        }
        int px = (int)floor(l->x + 0.5), py = (int)floor(l->y + 0.5);
        int x0 = px - S / 2, y0 = py - S / 2;
        int padded = x0 < 0 || y0 < 0 || x0 + S > w || y0 + S > h;
        if (padded && R->o->border == SS_BORDER_SKIP) {
            r->cells_skipped++;
            continue;
        }
        ss_cells_crop(rgb, w, h, px, py, S, R->crop);
        rc = write_cell(R, j, l, i, padded);
    }
    free(rgb);
    ss_label_list_free(&own);
    return rc;
}

static int parse_classes(run_t *R, const char *list)
{
    if (!list) return 0;
    const char *p = list;
    for (;;) {
        const char *q = strchr(p, ',');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        char *c = strndup(p, len);
        char **v = realloc(R->want, (R->n_want + 1) * sizeof *v);
        if (v) R->want = v;
        if (!c || !v) {
            free(c);
            return ss_error("cells", "out of memory");
        }
        R->want[R->n_want++] = c;
        if (!ss_label_class_ok(c))
            return ss_error("cells", "bad class list '%s': '%s' is not a class name", list, c);
        if (!q) break;
        p = q + 1;
    }
    R->want_seen = calloc(R->n_want, 1);
    return R->want_seen ? 0 : ss_error("cells", "out of memory");
}

/* Sorts the report's classes (numbers numerically), keeping each count with its class. */
static void sort_report(ss_crop_report_t *r)
{
    for (size_t i = 1; i < r->n_classes; i++)
        for (size_t k = i; k > 0 && cmp_class(r->classes[k - 1], r->classes[k]) > 0; k--) {
            char *c = r->classes[k];
            r->classes[k] = r->classes[k - 1];
            r->classes[k - 1] = c;
            size_t n = r->per_class[k];
            r->per_class[k] = r->per_class[k - 1];
            r->per_class[k - 1] = n;
        }
}

void ss_crop_report_free(ss_crop_report_t *r)
{
    for (size_t i = 0; i < r->n_classes; i++)
        free(r->classes[i]);
    free(r->classes);
    free(r->per_class);
    memset(r, 0, sizeof *r);
}

int ss_cells_from_labels(const ss_labels_input_t *inputs, size_t n_inputs, const char *out_dir,
                         const ss_crop_opts_t *o, int quiet, ss_crop_report_t *r)
{
    memset(r, 0, sizeof *r);
    run_t R = {.o = o, .out = out_dir, .r = r};
    jobs_t jobs = {0};
    char *csv_path = join(out_dir, "cells.csv"), *csv_tmp = join(out_dir, "cells.csv.tmp");
    int rc = csv_path && csv_tmp ? 0 : ss_error("cells", "out of memory");
    if (!rc && (o->size < 1 || o->size > 8192))
        rc = ss_error("cells", "crop size %d px is out of range [1, 8192]", o->size);
    if (!rc && n_inputs == 0) rc = ss_error("cells", "no inputs");
    for (size_t k = 1; !rc && k < n_inputs; k++)
        if (inputs[k].format != inputs[0].format)
            rc = ss_error("cells", "every input must have the same label format");
    if (!rc) rc = parse_classes(&R, o->classes);
    for (size_t k = 0; !rc && k < n_inputs; k++) {
        R.format = inputs[k].format;
        rc = inputs[k].format == SS_LABELS_CSV ? pair_csv(&inputs[k], k, &jobs, r)
                                               : pair_folder(&inputs[k], k, &jobs, r);
    }
    if (!rc && jobs.n == 0) rc = ss_error("cells", "no labelled image found in the inputs");
    if (!rc) rc = name_sources(&jobs) || prepare_out(out_dir);
    if (!rc && !(R.crop = malloc((size_t)o->size * o->size * 3)))
        rc = ss_error("cells", "out of memory");
    if (!rc && !(R.csv = fopen(csv_tmp, "w")))
        rc = ss_error_system("cells", "cannot write %s", csv_tmp);
    if (!rc) fputs("path,class,source,image,x,y,padded\n", R.csv);
    ss_progress_t *prog = !rc && !quiet ? ss_progress_new("images", jobs.n) : NULL;
    for (size_t i = 0; !rc && i < jobs.n; i++) {
        rc = crop_image(&R, &jobs.v[i]);
        if (prog) ss_progress_add(prog, 1);
    }
    if (prog) ss_progress_destroy(&prog);
    if (R.csv) {
        int bad = ferror(R.csv);
        if (fclose(R.csv) || bad)
            rc = rc ? rc : ss_error_system("cells", "cannot write %s", csv_tmp);
        if (!rc && rename(csv_tmp, csv_path))
            rc = ss_error_system("cells", "cannot rename %s to %s", csv_tmp, csv_path);
        if (rc) unlink(csv_tmp);
    }
    for (size_t i = 0; !rc && i < R.n_want; i++)
        if (!R.want_seen[i]) ss_warn("cells: no label has the class '%s' (--classes)", R.want[i]);
    sort_report(r);
    jobs_free(&jobs);
    for (size_t i = 0; i < R.n_want; i++)
        free(R.want[i]);
    free(R.want), free(R.want_seen), free(R.crop), free(csv_path), free(csv_tmp);
    return rc ? -1 : 0;
}
