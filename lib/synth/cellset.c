/* Labelled single-cell image set: one folder per nucleated class, centred PNG crops.
 *
 * Each crop is a small scene rendered with the slide renderer: the cell at the centre (random
 * rotation, ±8% size jitter) among a thinned jittered grid of red cells pushed aside the way a
 * smear pushes them, sometimes a platelet, under the slide's uneven illumination sampled at a
 * random place. Image k of class c depends only on (seed, c, k) and the difficulty, which
 * changes only the abnormal classes' images (and nothing at all at 0).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <vips/vips.h>

#include "slidestream/error.h"
#include "slidestream/log.h"
#include "synth_internal.h"

#define FIELD_UM 38.4 /* default field of view: 0.4 µm/px at 96 px */

void ss_synth_cells_opts_default(ss_synth_cells_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->per_class = 100;
    o->size = 96;
    o->mpp = 0.0;
    o->seed = 1;
    o->difficulty = SS_SYNTH_DIFFICULTY_DEFAULT;
}

static int check(const ss_synth_cells_opts_t *o)
{
    if (o->per_class < 1 || o->per_class > 1000000)
        return ss_error("synth", "per-class count %d out of range (1..1000000)", o->per_class);
    if (o->size < 16 || o->size > 1024)
        return ss_error("synth", "crop size %d out of range (16..1024)", o->size);
    if (o->mpp != 0.0 && !(o->mpp >= 0.05 && o->mpp <= 10.0))
        return ss_error("synth", "mpp %g out of range (0.05..10)", o->mpp);
    if (!(o->difficulty >= 0.0 && o->difficulty <= 1.0))
        return ss_error("synth", "difficulty %g out of range (0..1)", o->difficulty);
    return 0;
}

static double cells_mpp(const ss_synth_cells_opts_t *o)
{
    return o->mpp > 0 ? o->mpp : FIELD_UM / o->size;
}

int ss_synth_cell_render(const ss_synth_cells_opts_t *o, ss_synth_class_t cls, int index,
                         uint8_t *rgb)
{
    if (check(o)) return -1;
    if ((int)cls < 0 || cls >= SS_SYNTH_NNUCLEATED)
        return ss_error("synth", "class %d is not a nucleated class", (int)cls);
    const double mpp = cells_mpp(o);
    const int S = o->size;
    sy_rng_t r = {sy_hash(o->seed, (uint64_t)cls, (uint64_t)index, 0xce11)};

    const double step = 10.0, field = S * mpp;
    size_t cap =
        (size_t)((field + 2 * step) / step + 3) * (size_t)((field + 2 * step) / step + 3) + 2;
    sy_cell_t *scene = malloc(cap * sizeof *scene);
    if (!scene) return ss_error("synth", "out of memory for a %dx%d crop", S, S);
    size_t n = 0;
    memset(scene, 0, cap * sizeof *scene);
    sy_cell_t *t = &scene[n++];
    t->cls = cls;
    t->r_um = sy_cell_radius(cls, o->difficulty, &r) * sy_range(&r, 0.92, 1.08);
    t->angle = sy_range(&r, 0, 2 * M_PI);
    t->seed = sy_mix(r.s ^ 0xfeedull);
    t->difficulty = o->difficulty;
    t->cx = S / 2.0;
    t->cy = S / 2.0;

    /* red cells on a jittered grid covering the crop and a margin */
    const double dens = sy_range(&r, 0.5, 0.95);
    const double ox = sy_range(&r, 0, step), oy = sy_range(&r, 0, step);
    for (double yu = -step + oy; yu < field + step && n < cap - 1; yu += step) {
        for (double xu = -step + ox; xu < field + step && n < cap - 1; xu += step) {
            double keep = sy_rand(&r);
            double x = xu + sy_range(&r, -3.6, 3.6), y = yu + sy_range(&r, -3.6, 3.6);
            double R = sy_class_radius(SS_SYNTH_RBC, &r);
            double close = sy_rand(&r) < 0.2 ? 0.35 : 0.75;
            double ang = sy_range(&r, 0, 2 * M_PI);
            uint64_t cs = sy_mix(r.s ^ 0x1234ull);
            if (keep > dens) continue;
            double dx = x - t->cx * mpp, dy = y - t->cy * mpp;
            if (sqrt(dx * dx + dy * dy) < t->r_um + close * R) continue;
            sy_cell_t *c = &scene[n++];
            c->cls = SS_SYNTH_RBC;
            c->r_um = R;
            c->angle = ang;
            c->seed = cs;
            c->cx = x / mpp;
            c->cy = y / mpp;
        }
    }
    if (sy_rand(&r) < 0.3) {
        double a = sy_range(&r, 0, 2 * M_PI), d = t->r_um + sy_range(&r, 3.0, 8.0);
        sy_cell_t *c = &scene[n++];
        c->cls = SS_SYNTH_PLT;
        c->r_um = sy_class_radius(SS_SYNTH_PLT, &r);
        c->angle = sy_range(&r, 0, 2 * M_PI);
        c->seed = sy_mix(r.s ^ 0x777ull);
        c->cx = t->cx + d * cos(a) / mpp;
        c->cy = t->cy + d * sin(a) / mpp;
    }

    float *od = calloc((size_t)S * (size_t)S * 3, sizeof *od);
    if (!od) {
        free(scene);
        return ss_error("synth", "out of memory for a %dx%d crop", S, S);
    }
    sy_render_cells(scene, n, mpp, 0.0, 0.0, S, S, od);
    free(scene);
    /* illumination and noise from a random place of a virtual slide */
    int64_t ix = (int64_t)sy_range(&r, 0, 1e6), iy = (int64_t)sy_range(&r, 0, 1e6);
    sy_expose(od, S, S, ix, iy, mpp, o->seed, rgb, (size_t)S * 3);
    free(od);
    return 0;
}

static int make_dir(const char *path)
{
    if (mkdir(path, 0777) && errno != EEXIST)
        return ss_error_system("synth", "cannot create directory %s", path);
    struct stat st;
    if (stat(path, &st) || !S_ISDIR(st.st_mode))
        return ss_error("synth", "%s exists and is not a directory", path);
    return 0;
}

static int save_png(const uint8_t *rgb, int S, const char *path)
{
    VipsImage *img =
        vips_image_new_from_memory((void *)rgb, (size_t)S * S * 3, S, S, 3, VIPS_FORMAT_UCHAR);
    char msg[512];
    if (!img) return ss_error("synth", "libvips: %s", sy_vips_error(msg, sizeof msg));
    int rc = vips_pngsave(img, path, "compression", 6, "strip", TRUE, NULL);
    g_object_unref(img);
    if (rc) {
        return ss_error("synth", "cannot write %s: %s", path, sy_vips_error(msg, sizeof msg));
    }
    return 0;
}

int ss_synth_cells_write(const ss_synth_cells_opts_t *o, const char *out_dir)
{
    if (check(o)) return -1;
    char msg[512];
    if (VIPS_INIT("slidestream"))
        return ss_error("synth", "libvips init failed: %s", sy_vips_error(msg, sizeof msg));
    if (make_dir(out_dir)) return -1;
    const int S = o->size;
    uint8_t *rgb = malloc((size_t)S * S * 3);
    if (!rgb) return ss_error("synth", "out of memory");
    ss_progress_t *prog =
        ss_progress_new("cell images", (uint64_t)o->per_class * SS_SYNTH_NNUCLEATED);
    int rc = 0;
    char path[4096];
    for (int c = 0; c < SS_SYNTH_NNUCLEATED && !rc; c++) {
        const char *code = ss_synth_class_code((ss_synth_class_t)c);
        if (snprintf(path, sizeof path, "%s/%s", out_dir, code) >= (int)sizeof path) {
            rc = ss_error("synth", "path too long: %s", out_dir);
            break;
        }
        if ((rc = make_dir(path))) break;
        for (int i = 0; i < o->per_class && !rc; i++) {
            snprintf(path, sizeof path, "%s/%s/%s_%05d.png", out_dir, code, code, i);
            rc = ss_synth_cell_render(o, (ss_synth_class_t)c, i, rgb) || save_png(rgb, S, path);
            ss_progress_add(prog, 1);
        }
    }
    ss_progress_destroy(&prog);
    free(rgb);
    if (!rc)
        ss_info("cells: %d per class x %d classes, %dx%d px at %.3f µm/px -> %s", o->per_class,
                SS_SYNTH_NNUCLEATED, S, S, cells_mpp(o), out_dir);
    return rc;
}
