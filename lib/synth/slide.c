/* Synthetic smear slides: block layout, region rendering and the streaming TIFF writer.
 *
 * Layout: the slide is cut into 40 µm blocks. A block holds a jittered 4×4 grid of red cells
 * (kept with a probability that follows a slow "smear thickness" field, plus a few overlapping
 * extras), at most one nucleated cell, and a few platelets. Everything in a block is drawn from
 * hash(seed, block), and red cells and platelets only look at the nucleated cells of the 3×3
 * neighbouring blocks, so a block is computable alone and memory never depends on slide size.
 *
 * The writer hands libvips an image whose pixels are generated on demand per region (a custom
 * generate callback); tiffsave pulls regions sequentially and builds the pyramid as it goes.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vips/vips.h>

#include "slidestream/error.h"
#include "slidestream/log.h"
#include "synth_internal.h"

#define BLOCK_UM 40.0
#define RBC_GRID 4
#define BLOCK_MAX_CELLS 64
#define N_ABNORMAL (SS_SYNTH_NNUCLEATED - 1)

enum { STREAM_WBC = 1, STREAM_RBC, STREAM_PLT };

static const char *const CLASS_CODES[SS_SYNTH_NCLASSES] = {"LYT", "BLA", "NGS", "EOS",
                                                           "MON", "RBC", "PLT"};

const char *ss_synth_class_code(ss_synth_class_t c)
{
    return (int)c >= 0 && c < SS_SYNTH_NCLASSES ? CLASS_CODES[c] : NULL;
}

void ss_synth_slide_opts_default(ss_synth_slide_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->mpp = 0.25;
    o->witness_rate = 0.05;
    o->seed = 1;
    o->nucleated_per_mm2 = 200.0;
    o->tile_size = 256;
    o->quality = 90;
    o->difficulty = SS_SYNTH_DIFFICULTY_DEFAULT;
}

static int opts_check(const ss_synth_slide_opts_t *o)
{
    if (o->width < 1 || o->height < 1 || o->width > 10000000 || o->height > 10000000)
        return ss_error("synth", "slide size %lldx%lld out of range (1..10000000)",
                        (long long)o->width, (long long)o->height);
    if (!(o->mpp >= 0.05 && o->mpp <= 10.0))
        return ss_error("synth", "mpp %g out of range (0.05..10)", o->mpp);
    if (!(o->witness_rate >= 0.0 && o->witness_rate <= 1.0))
        return ss_error("synth", "witness rate %g out of range (0..1)", o->witness_rate);
    if (!(o->nucleated_per_mm2 >= 0.0 && o->nucleated_per_mm2 <= 1.0 / (BLOCK_UM * BLOCK_UM) * 1e6))
        return ss_error("synth", "nucleated density %g per mm² out of range (0..%g)",
                        o->nucleated_per_mm2, 1e6 / (BLOCK_UM * BLOCK_UM));
    if (!(o->difficulty >= 0.0 && o->difficulty <= 1.0))
        return ss_error("synth", "difficulty %g out of range (0..1)", o->difficulty);
    if (o->tile_size != 256 && o->tile_size != 512)
        return ss_error("synth", "tile size %d: use 256 or 512", o->tile_size);
    if (o->quality < 1 || o->quality > 100)
        return ss_error("synth", "JPEG quality %d out of range (1..100)", o->quality);
    return 0;
}

/* Derived layout constants. */
typedef struct {
    const ss_synth_slide_opts_t *o;
    double bpx;       /* block edge in pixels */
    int64_t nbx, nby; /* blocks across, down */
    double p_wbc;     /* chance a block holds a nucleated cell */
} layout_t;

static void layout_init(layout_t *L, const ss_synth_slide_opts_t *o)
{
    L->o = o;
    L->bpx = BLOCK_UM / o->mpp;
    L->nbx = (int64_t)ceil((double)o->width / L->bpx);
    L->nby = (int64_t)ceil((double)o->height / L->bpx);
    L->p_wbc = o->nucleated_per_mm2 * BLOCK_UM * BLOCK_UM * 1e-6;
}

/* Pixel-centre coordinate for a position in microns; -1 when outside the slide. */
static double place(double um, double mpp, int64_t limit)
{
    double p = floor(um / mpp);
    if (p < 0 || p >= (double)limit) return -1.0;
    return p + 0.5;
}

/* The block's nucleated cell, if any. Kept away from the block edge so nucleated cells of
 * neighbouring blocks never overlap each other (they may touch red cells). */
static int block_wbc(const layout_t *L, int64_t bx, int64_t by, sy_cell_t *c)
{
    if (bx < 0 || by < 0 || bx >= L->nbx || by >= L->nby) return 0;
    const ss_synth_slide_opts_t *o = L->o;
    sy_rng_t r = {sy_hash(o->seed, (uint64_t)bx, (uint64_t)by, STREAM_WBC)};
    if (sy_rand(&r) >= L->p_wbc) return 0;
    ss_synth_class_t cls = SS_SYNTH_LYT;
    if (sy_rand(&r) < o->witness_rate) {
        int k = (int)(sy_rand(&r) * N_ABNORMAL);
        cls = (ss_synth_class_t)(1 + (k < N_ABNORMAL ? k : N_ABNORMAL - 1));
    }
    double R = sy_cell_radius(cls, o->difficulty, &r);
    double m = R + 0.6;
    double xu = (double)bx * BLOCK_UM + sy_range(&r, m, BLOCK_UM - m);
    double yu = (double)by * BLOCK_UM + sy_range(&r, m, BLOCK_UM - m);
    c->cls = cls;
    c->r_um = R;
    c->angle = sy_range(&r, 0, 2 * M_PI);
    c->seed = sy_mix(r.s ^ 0xabcdefull);
    c->difficulty = o->difficulty;
    c->cx = place(xu, o->mpp, o->width);
    c->cy = place(yu, o->mpp, o->height);
    return c->cx >= 0 && c->cy >= 0;
}

/* All cells of one block: red cells, then its nucleated cell, then platelets. Returns count. */
static int block_cells(const layout_t *L, int64_t bx, int64_t by, sy_cell_t *out)
{
    const ss_synth_slide_opts_t *o = L->o;
    const double mpp = o->mpp;
    sy_cell_t wbc[9];
    int nw = 0;
    for (int dy = -1; dy <= 1; dy++)
        for (int dx = -1; dx <= 1; dx++)
            if (block_wbc(L, bx + dx, by + dy, &wbc[nw])) nw++;
    int n = 0;

    /* Red cells: a jittered grid, thinned by the smear-thickness field. */
    sy_rng_t r = {sy_hash(o->seed, (uint64_t)bx, (uint64_t)by, STREAM_RBC)};
    const double step = BLOCK_UM / RBC_GRID;
    for (int gy = 0; gy < RBC_GRID; gy++) {
        for (int gx = 0; gx < RBC_GRID; gx++) {
            double keep = sy_rand(&r);
            double xu = (double)bx * BLOCK_UM + (gx + 0.5) * step + sy_range(&r, -3.6, 3.6);
            double yu = (double)by * BLOCK_UM + (gy + 0.5) * step + sy_range(&r, -3.6, 3.6);
            double R = sy_class_radius(SS_SYNTH_RBC, &r);
            double close = sy_rand(&r) < 0.2 ? 0.35 : 0.75; /* some overlap a white cell */
            double ang = sy_range(&r, 0, 2 * M_PI);
            uint64_t cs = sy_mix(r.s ^ 0x1234ull);
            int extra = sy_rand(&r) < 0.07;
            double ea = sy_range(&r, 0, 2 * M_PI), ed = sy_range(&r, 0.9, 1.4) * R;
            /* density: 0.55..1 following a slow field (thick and thin parts of the smear) */
            double field = 0.5 + 0.5 * sin(xu / 310.0 + (double)(o->seed % 97)) *
                                     cos(yu / 270.0 + (double)(o->seed % 89));
            if (keep > 0.55 + 0.42 * field) continue;
            for (int e = 0; e <= extra; e++) {
                double x = e ? xu + ed * cos(ea) : xu, y = e ? yu + ed * sin(ea) : yu;
                int blocked = 0;
                for (int k = 0; k < nw && !blocked; k++) {
                    double ddx = x - (wbc[k].cx * mpp), ddy = y - (wbc[k].cy * mpp);
                    if (sqrt(ddx * ddx + ddy * ddy) < wbc[k].r_um + close * R) blocked = 1;
                }
                if (blocked) continue;
                sy_cell_t *c = &out[n];
                c->cls = SS_SYNTH_RBC;
                c->r_um = R;
                c->angle = ang;
                c->seed = cs + (uint64_t)e;
                c->difficulty = 0.0;
                c->cx = place(x, mpp, o->width);
                c->cy = place(y, mpp, o->height);
                /* extras may leave the block: keep them only if their centre stays inside it,
                 * so each cell belongs to exactly one block */
                if (c->cx < 0 || c->cy < 0) continue;
                if (e && (floor(x / BLOCK_UM) != (double)bx || floor(y / BLOCK_UM) != (double)by))
                    continue;
                n++;
            }
        }
    }

    if (block_wbc(L, bx, by, &out[n])) n++;

    /* Platelets: 0–2 per block, never on a white cell. */
    sy_rng_t p = {sy_hash(o->seed, (uint64_t)bx, (uint64_t)by, STREAM_PLT)};
    double u = sy_rand(&p);
    int np = u < 0.45 ? 0 : u < 0.85 ? 1 : 2;
    for (int i = 0; i < np; i++) {
        double xu = (double)bx * BLOCK_UM + sy_range(&p, 1.0, BLOCK_UM - 1.0);
        double yu = (double)by * BLOCK_UM + sy_range(&p, 1.0, BLOCK_UM - 1.0);
        double R = sy_class_radius(SS_SYNTH_PLT, &p);
        double ang = sy_range(&p, 0, 2 * M_PI);
        uint64_t cs = sy_mix(p.s ^ 0x777ull);
        int blocked = 0;
        for (int k = 0; k < nw && !blocked; k++) {
            double ddx = xu - wbc[k].cx * mpp, ddy = yu - wbc[k].cy * mpp;
            if (sqrt(ddx * ddx + ddy * ddy) < wbc[k].r_um + R + 2.5) blocked = 1;
        }
        if (blocked) continue;
        sy_cell_t *c = &out[n];
        c->cls = SS_SYNTH_PLT;
        c->r_um = R;
        c->angle = ang;
        c->seed = cs;
        c->difficulty = 0.0;
        c->cx = place(xu, mpp, o->width);
        c->cy = place(yu, mpp, o->height);
        if (c->cx >= 0 && c->cy >= 0) n++;
    }
    return n;
}

int ss_synth_slide_cells(const ss_synth_slide_opts_t *o,
                         int (*fn)(const ss_synth_cell_t *cell, void *user), void *user)
{
    if (opts_check(o)) return -1;
    layout_t L;
    layout_init(&L, o);
    sy_cell_t cells[BLOCK_MAX_CELLS];
    for (int64_t by = 0; by < L.nby; by++) {
        for (int64_t bx = 0; bx < L.nbx; bx++) {
            int n = block_cells(&L, bx, by, cells);
            for (int i = 0; i < n; i++) {
                ss_synth_cell_t t = {cells[i].cls, (int64_t)cells[i].cx, (int64_t)cells[i].cy,
                                     cells[i].r_um / o->mpp};
                if (fn(&t, user)) return -1;
            }
        }
    }
    return 0;
}

/* Per-thread scratch: gathered cells and an optical-density buffer, grown on demand. */
typedef struct {
    sy_cell_t *cells;
    size_t ncells, capcells;
    float *od;
    size_t capod;
} scratch_t;

static void scratch_free(scratch_t *s)
{
    free(s->cells);
    free(s->od);
    memset(s, 0, sizeof *s);
}

/* Cells of every block whose cells may reach the region, in a fixed (block-major) order. */
static int gather(const layout_t *L, scratch_t *s, int64_t x, int64_t y, int w, int h)
{
    const double margin = (SY_MAX_RADIUS_UM + 2.0) / L->o->mpp;
    int64_t bx0 = (int64_t)floor(((double)x - margin) / L->bpx);
    int64_t bx1 = (int64_t)floor(((double)x + w + margin) / L->bpx);
    int64_t by0 = (int64_t)floor(((double)y - margin) / L->bpx);
    int64_t by1 = (int64_t)floor(((double)y + h + margin) / L->bpx);
    if (bx0 < 0) bx0 = 0;
    if (by0 < 0) by0 = 0;
    if (bx1 >= L->nbx) bx1 = L->nbx - 1;
    if (by1 >= L->nby) by1 = L->nby - 1;
    s->ncells = 0;
    for (int64_t by = by0; by <= by1; by++) {
        for (int64_t bx = bx0; bx <= bx1; bx++) {
            if (s->capcells - s->ncells < BLOCK_MAX_CELLS) {
                size_t cap = s->capcells ? 2 * s->capcells : 1024;
                sy_cell_t *p = realloc(s->cells, cap * sizeof *p);
                if (!p) return ss_error("synth", "out of memory gathering cells");
                s->cells = p;
                s->capcells = cap;
            }
            s->ncells += (size_t)block_cells(L, bx, by, s->cells + s->ncells);
        }
    }
    return 0;
}

/* Renders a region into rows `stride` bytes apart. */
static int render_region(const layout_t *L, scratch_t *s, int64_t x, int64_t y, int w, int h,
                         uint8_t *rgb, size_t stride)
{
    size_t need = (size_t)w * (size_t)h * 3;
    if (need > s->capod) {
        float *p = realloc(s->od, need * sizeof *p);
        if (!p) return ss_error("synth", "out of memory for a %dx%d region", w, h);
        s->od = p;
        s->capod = need;
    }
    memset(s->od, 0, need * sizeof *s->od);
    if (gather(L, s, x, y, w, h)) return -1;
    sy_render_cells(s->cells, s->ncells, L->o->mpp, (double)x, (double)y, w, h, s->od);
    sy_expose(s->od, w, h, x, y, L->o->mpp, L->o->seed, rgb, stride);
    return 0;
}

int ss_synth_slide_render(const ss_synth_slide_opts_t *o, int64_t x, int64_t y, int w, int h,
                          uint8_t *rgb)
{
    if (opts_check(o)) return -1;
    if (w < 1 || h < 1) return ss_error("synth", "empty region %dx%d", w, h);
    layout_t L;
    layout_init(&L, o);
    scratch_t s = {0};
    int rc = render_region(&L, &s, x, y, w, h, rgb, (size_t)w * 3);
    scratch_free(&s);
    return rc;
}

/* ---- libvips source image ------------------------------------------------------------- */

typedef struct {
    layout_t L;
    pthread_mutex_t lock; /* guards progress and the first error */
    ss_progress_t *progress;
    char error[512];
} source_t;

static void *source_start(VipsImage *out, void *a, void *b)
{
    return calloc(1, sizeof(scratch_t));
}

static int source_generate(VipsRegion *region, void *seq, void *a, void *b, gboolean *stop)
{
    source_t *src = a;
    scratch_t *s = seq;
    VipsRect *r = &region->valid;
    if (!s) {
        vips_error("synth", "out of memory");
        return -1;
    }
    if (render_region(&src->L, s, r->left, r->top, r->width, r->height,
                      (uint8_t *)VIPS_REGION_ADDR(region, r->left, r->top),
                      (size_t)VIPS_REGION_LSKIP(region))) {
        pthread_mutex_lock(&src->lock);
        if (!src->error[0]) snprintf(src->error, sizeof src->error, "%s", ss_error_last());
        pthread_mutex_unlock(&src->lock);
        vips_error("synth", "%s", ss_error_last());
        ss_error_clear();
        return -1;
    }
    pthread_mutex_lock(&src->lock);
    ss_progress_add(src->progress, (uint64_t)r->width * (uint64_t)r->height);
    pthread_mutex_unlock(&src->lock);
    return 0;
}

static int source_stop(void *seq, void *a, void *b)
{
    scratch_t *s = seq;
    if (s) {
        scratch_free(s);
        free(s);
    }
    return 0;
}

typedef struct {
    FILE *f;
    uint64_t n;
} truth_t;

static int truth_row(const ss_synth_cell_t *c, void *user)
{
    truth_t *t = user;
    t->n++;
    return fprintf(t->f, "%s,%lld,%lld,%.2f\n", ss_synth_class_code(c->cls), (long long)c->x,
                   (long long)c->y, c->radius) < 0;
}

static int write_truth(const ss_synth_slide_opts_t *o, const char *path)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.part", path) >= (int)sizeof tmp)
        return ss_error("synth", "path too long: %s", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return ss_error_system("synth", "cannot write truth CSV %s", tmp);
    truth_t t = {f, 0};
    int rc = fprintf(f, "class,x,y,radius\n") < 0 || ss_synth_slide_cells(o, truth_row, &t);
    if (fclose(f) || rc) {
        ss_error_system("synth", "writing truth CSV %s failed", path);
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path)) {
        ss_error_system("synth", "cannot rename %s to %s", tmp, path);
        unlink(tmp);
        return -1;
    }
    ss_info("truth: %llu cells -> %s", (unsigned long long)t.n, path);
    return 0;
}

/* libvips' error buffer as one line (its messages end in newlines). */
const char *sy_vips_error(char *buf, size_t n)
{
    snprintf(buf, n, "%s", vips_error_buffer());
    vips_error_clear();
    size_t len = strlen(buf);
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
        buf[--len] = 0;
    for (char *p = buf; *p; p++)
        if (*p == '\n') *p = ';';
    return buf;
}

static int vips_ready(void)
{
    char msg[512];
    if (VIPS_INIT("slidestream"))
        return ss_error("synth", "libvips init failed: %s", sy_vips_error(msg, sizeof msg));
    return 0;
}

int ss_synth_slide_write(const ss_synth_slide_opts_t *o, const char *tiff_path,
                         const char *truth_csv)
{
    if (opts_check(o) || vips_ready()) return -1;
    if (truth_csv && write_truth(o, truth_csv)) return -1;

    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.part", tiff_path) >= (int)sizeof tmp)
        return ss_error("synth", "path too long: %s", tiff_path);
    source_t src;
    memset(&src, 0, sizeof src);
    layout_init(&src.L, o);
    pthread_mutex_init(&src.lock, NULL);
    uint64_t npix = (uint64_t)o->width * (uint64_t)o->height;
    src.progress = ss_progress_new("pixels", npix);

    VipsImage *img = vips_image_new();
    /* libvips resolution is pixels per millimetre */
    vips_image_init_fields(img, (int)o->width, (int)o->height, 3, VIPS_FORMAT_UCHAR,
                           VIPS_CODING_NONE, VIPS_INTERPRETATION_sRGB, 1000.0 / o->mpp,
                           1000.0 / o->mpp);
    int rc = vips_image_pipelinev(img, VIPS_DEMAND_STYLE_SMALLTILE, NULL) ||
             vips_image_generate(img, source_start, source_generate, source_stop, &src, NULL);
    /* OpenSlide 3.x reports no mpp for generic TIFF, so the first directory also carries an
     * Aperio-style description ("key = value" after '|'), which it maps to openslide.mpp-x/y
     * and objective power; the TIFF resolution tags stay for every other reader. */
    char desc[512];
    snprintf(desc, sizeof desc,
             "Aperio Image Format (slidestream synthetic smear)\r\n%lldx%lld (%dx%d) JPEG/RGB Q=%d"
             "|AppMag = %g|MPP = %.6g|Title = slidestream synth seed %llu witness-rate %g",
             (long long)o->width, (long long)o->height, o->tile_size, o->tile_size, o->quality,
             10.0 / o->mpp, o->mpp, (unsigned long long)o->seed, o->witness_rate);
    /* difficulty 0 keeps the description (and so the file) byte for byte as it always was */
    if (o->difficulty > 0) {
        size_t len = strlen(desc);
        snprintf(desc + len, sizeof desc - len, " difficulty %g", o->difficulty);
    }
    vips_image_set_string(img, "image-description", desc);
    /* BigTIFF once the file might pass 4 GB (JPEG rarely beats 4:1 on this content at Q90) */
    gboolean big = npix * 3 / 4 > 3500000000ull;
    if (!rc)
        rc = vips_tiffsave(img, tmp, "tile", TRUE, "tile_width", o->tile_size, "tile_height",
                           o->tile_size, "pyramid", TRUE, "compression",
                           VIPS_FOREIGN_TIFF_COMPRESSION_JPEG, "Q", o->quality, "bigtiff", big,
                           "resunit", VIPS_FOREIGN_TIFF_RESUNIT_CM, NULL);
    g_object_unref(img);
    ss_progress_destroy(&src.progress);
    pthread_mutex_destroy(&src.lock);
    if (rc) {
        char msg[512];
        sy_vips_error(msg, sizeof msg);
        ss_error("synth", "writing %s failed: %s", tiff_path, src.error[0] ? src.error : msg);
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, tiff_path)) {
        ss_error_system("synth", "cannot rename %s to %s", tmp, tiff_path);
        unlink(tmp);
        return -1;
    }
    ss_info("slide: %lldx%lld at %g µm/px -> %s", (long long)o->width, (long long)o->height, o->mpp,
            tiff_path);
    return 0;
}
