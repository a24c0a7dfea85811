/* Tests for lib/slide: `slide_test CASE [ARGS]`, one ctest entry per case (slide.<case>).
 * Real data comes from $SS_SHARED_DATA (exit 77 = skipped when absent); synthetic images are
 * written with libvips into a temporary directory the test removes. Exit status is the verdict. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>

#include "slidestream/error.h"
#include "slidestream/slide.h"

#include "../check.h"


static char data_dir[4096];
static char tmp_dir[256];

static int need_data(void)
{
    const char *d = getenv("SS_SHARED_DATA");
    if (!d) d = "../shared/data";
    snprintf(data_dir, sizeof data_dir, "%s", d);
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/wsi-aperio-cmu1-small-region/cmu-1-small-region.svs", d);
    if (access(probe, R_OK)) {
        printf("SKIP: shared data not found at %s (set SS_SHARED_DATA)\n", d);
        return 77;
    }
    return 0;
}

static const char *data(const char *rel)
{
    static char buf[8][4400];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", data_dir, rel);
    return buf[k];
}

static void make_tmp(void)
{
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/ss_slide_test_XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        exit(1);
    }
}

static void rm_tmp(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmp_dir);
}

/* Writes an RGB buffer with libvips to `path` (format from the suffix, options after '['). */
static int write_rgb(const uint8_t *rgb, int w, int h, double xres_px_per_mm, const char *path)
{
    VipsImage *im =
        vips_image_new_from_memory_copy(rgb, (size_t)w * h * 3, w, h, 3, VIPS_FORMAT_UCHAR);
    if (!im) return -1;
    im->Xres = im->Yres = xres_px_per_mm;
    im->Type = VIPS_INTERPRETATION_sRGB;
    int rc = vips_image_write_to_file(im, path, NULL);
    if (rc) fprintf(stderr, "vips: %s\n", vips_error_buffer());
    g_object_unref(im);
    return rc;
}

/* Pale glass with uneven illumination and sparse dark-purple dots (cells) of radius r. */
static uint8_t *smear_image(int w, int h, int ndots, int r, unsigned seed, int *cx, int *cy)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double ill = 235 - 25.0 * ((double)x / w) * ((double)y / h);
            uint8_t *q = p + ((size_t)y * w + x) * 3;
            q[0] = (uint8_t)ill;
            q[1] = (uint8_t)(ill - 3);
            q[2] = (uint8_t)(ill + 2 > 255 ? 255 : ill + 2);
        }
    srand(seed);
    for (int i = 0; i < ndots; i++) {
        int x0 = r + rand() % (w - 2 * r), y0 = r + rand() % (h - 2 * r);
        if (cx) cx[i] = x0, cy[i] = y0;
        for (int y = y0 - r; y <= y0 + r; y++)
            for (int x = x0 - r; x <= x0 + r; x++)
                if ((x - x0) * (x - x0) + (y - y0) * (y - y0) <= r * r) {
                    uint8_t *q = p + ((size_t)y * w + x) * 3;
                    q[0] = 110, q[1] = 60, q[2] = 150;
                }
    }
    return p;
}

/* Reads every tile the tiler plans; returns the number of read errors. */
static int64_t read_all(ss_tiler_t *t, int64_t *ntiles)
{
    ss_tiler_stats_t st;
    ss_tiler_stats(t, &st);
    ss_tile_t tile;
    int T = 0;
    uint8_t *buf = NULL;
    int64_t errs = 0, n = 0;
    ss_tiler_rewind(t);
    while (ss_tiler_next(t, &tile) == 1) {
        if (!buf) {
            T = tile.size;
            buf = malloc((size_t)T * T * 3);
        }
        if (ss_tiler_read(t, &tile, buf)) {
            fprintf(stderr, "  read error: %s\n", ss_error_last());
            ss_error_clear();
            errs++;
        }
        n++;
    }
    free(buf);
    *ntiles = n;
    return errs;
}

/* ---------------------------------------------------------------------------------------- */

typedef struct {
    const char *rel;
    double override; /* 0: none */
    const char *format;
    double mpp;         /* expected, 0 = refused without override */
    const char *source; /* expected mpp source */
    int64_t w, h;
    int levels;
} real_t;

static const real_t REAL[] = {
    {"wsi-aperio-cmu1-small-region/cmu-1-small-region.svs", 0, "aperio", 0.499, "openslide.mpp-x",
     2220, 2967, 1},
    {"wsi-aperio-jp2k-tcga-cr-7395/tcga-cr-7395-01a-01-ts1.svs", 0, "aperio", 0, NULL, 4443, 3567,
     2},
    {"wsi-hamamatsu-ndpi-fluorescence/test3-DAPI-2-(387).ndpi", 0, "hamamatsu", 0.228175,
     "openslide.mpp-x", 3968, 4864, 7},
    {"wsi-hamamatsu-ndpi-fluorescence/test3-TRITC 2 (560).ndpi", 0, "hamamatsu", 0.228175,
     "openslide.mpp-x", 3968, 4864, 7},
    {"wsi-format-fixtures-synthetic/small.svs", 0, "aperio", 0.499, "openslide.mpp-x", 16, 16, 1},
    /* 28.35 px/cm = 72 dpi: a writer's default, must not count as a calibration */
    {"wsi-format-fixtures-synthetic/boxes.tiff", 0, "generic-tiff", 0, NULL, 300, 250, 4},
    {"wsi-format-fixtures-synthetic/small_HE_levels.tiff", 0, "generic-tiff", 0, NULL, 300, 250, 4},
};

static int case_open(void)
{
    int rc = need_data();
    if (rc) return rc;
    for (size_t i = 0; i < sizeof REAL / sizeof REAL[0]; i++) {
        const real_t *r = &REAL[i];
        const char *p = data(r->rel);
        ss_slide_t *s = ss_slide_open(p, 0, NULL);
        if (r->mpp == 0) {
            CHECK(!s, "%s opened without mpp", r->rel);
            const char *e = ss_error_last();
            CHECK(strstr(e, p) && strstr(e, "--mpp") && strstr(e, "manifest"),
                  "refusal must name the file and how to supply mpp: %s", e);
            printf("refused as expected: %s\n", e);
            ss_error_clear();
            ss_slide_destroy(&s);
            s = ss_slide_open(p, 0.5, "flag");
            CHECK(s != NULL, "%s with override: %s", r->rel, ss_error_buffer());
            if (!s) continue;
            CHECK(!strcmp(ss_slide_info(s)->mpp_source, "flag"), "source %s",
                  ss_slide_info(s)->mpp_source);
            CHECK(ss_slide_info(s)->mpp_x == 0.5, "override mpp");
        } else {
            CHECK(s != NULL, "%s: %s", r->rel, ss_error_buffer());
            if (!s) continue;
            const ss_slide_info_t *in = ss_slide_info(s);
            CHECK(fabs(in->mpp_x - r->mpp) < 1e-4 && fabs(in->mpp_y - r->mpp) < 1e-4, "%s mpp %g",
                  r->rel, in->mpp_x);
            CHECK(!strcmp(in->mpp_source, r->source), "%s mpp source %s", r->rel, in->mpp_source);
            /* metadata wins over an override */
            ss_slide_t *s2 = ss_slide_open(p, 0.3, "manifest");
            CHECK(s2 && !strcmp(ss_slide_info(s2)->mpp_source, r->source), "metadata must win");
            ss_slide_destroy(&s2);
        }
        const ss_slide_info_t *in = ss_slide_info(s);
        CHECK(!strcmp(in->backend, "openslide"), "%s backend %s", r->rel, in->backend);
        CHECK(!strcmp(in->format, r->format), "%s format %s", r->rel, in->format);
        CHECK(in->width == r->w && in->height == r->h, "%s dims %lldx%lld", r->rel,
              (long long)in->width, (long long)in->height);
        CHECK(in->level_count == r->levels, "%s levels %d", r->rel, in->level_count);
        double prev = 0;
        for (int l = 0; l < in->level_count; l++) {
            int64_t lw, lh;
            double ds;
            CHECK(ss_slide_level(s, l, &lw, &lh, &ds) == 0, "level %d", l);
            CHECK(ds >= prev && lw > 0 && lh > 0, "%s level %d geometry", r->rel, l);
            prev = ds;
        }
        CHECK(ss_slide_level(s, in->level_count, NULL, NULL, NULL) == -1, "level range");
        ss_error_clear();
        printf("ok %-60s %s %lldx%lld levels=%d mpp=%g (%s)\n", r->rel, in->format,
               (long long)in->width, (long long)in->height, in->level_count, in->mpp_x,
               in->mpp_source);
        ss_slide_destroy(&s);
    }
    return check_failures ? 1 : 0;
}

static int case_tile_real(void)
{
    int rc = need_data();
    if (rc) return rc;
    static const char *rel[] = {
        "wsi-aperio-cmu1-small-region/cmu-1-small-region.svs",
        "wsi-aperio-jp2k-tcga-cr-7395/tcga-cr-7395-01a-01-ts1.svs",
        "wsi-hamamatsu-ndpi-fluorescence/test3-DAPI-2-(387).ndpi",
        "wsi-hamamatsu-ndpi-fluorescence/test3-TRITC 2 (560).ndpi",
        "wsi-format-fixtures-synthetic/small.svs",
        "wsi-format-fixtures-synthetic/boxes.tiff",
        "wsi-format-fixtures-synthetic/small_HE_levels.tiff",
    };
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        ss_slide_t *s = ss_slide_open(data(rel[i]), 0, NULL);
        if (!s) { /* no mpp in the file: supply one, as a manifest would */
            ss_error_clear();
            s = ss_slide_open(data(rel[i]), 0.5, "manifest");
        }
        CHECK(s, "%s: %s", rel[i], ss_error_buffer());
        if (!s) continue;
        double native = ss_slide_info(s)->mpp_x;
        double targets[2] = {native, native * 2.7};
        for (int k = 0; k < 2; k++) {
            for (int masked = 0; masked < 2; masked++) {
                ss_tiling_opts_t o;
                ss_tiling_opts_default(&o);
                o.target_mpp = targets[k];
                o.tile_px = 512;
                o.use_mask = masked;
                ss_tiler_t *t = ss_tiler_new(s, &o);
                CHECK(t, "%s tiler: %s", rel[i], ss_error_buffer());
                if (!t) continue;
                /* every tile is read unmasked; the masked plan only has to agree on counts */
                int64_t n = 0, errs = 0;
                if (masked) {
                    ss_tile_t tile;
                    while (ss_tiler_next(t, &tile) == 1)
                        n++;
                } else {
                    errs = read_all(t, &n);
                }
                ss_tiler_stats_t st;
                ss_tiler_stats(t, &st);
                CHECK(errs == 0, "%s: %lld read errors", rel[i], (long long)errs);
                CHECK(n == st.kept && st.kept + st.skipped_empty == st.grid,
                      "%s counts n=%lld kept=%lld skipped=%lld grid=%lld", rel[i], (long long)n,
                      (long long)st.kept, (long long)st.skipped_empty, (long long)st.grid);
                if (!masked) CHECK(st.skipped_empty == 0, "unmasked skips");
                printf("ok %-58s target=%.3f mask=%d grid=%dx%d kept=%lld skipped=%lld\n", rel[i],
                       targets[k], masked, st.cols, st.rows, (long long)st.kept,
                       (long long)st.skipped_empty);
                ss_tiler_destroy(&t);
            }
        }
        ss_slide_destroy(&s);
    }
    return check_failures ? 1 : 0;
}

/* Broken fixtures and DICOM: clear errors naming the file (and region for reads); a loop over a
 * list of slides keeps going and processes the good ones. */
static int case_broken(void)
{
    int rc = need_data();
    if (rc) return rc;
    const char *list[] = {
        data("wsi-format-fixtures-synthetic/unreadable.svs"),
        data("wsi-format-fixtures-synthetic/small.svs"),
        data("wsi-format-fixtures-synthetic/unopenable.tiff"),
        data("wsi-format-fixtures-synthetic/boxes_0.dcm"),
        data("wsi-aperio-cmu1-small-region/cmu-1-small-region.svs"),
        data("wsi-format-fixtures-synthetic/boxes_1.dcm"),
        data("wsi-format-fixtures-synthetic/PROVENANCE.md"),
        data("wsi-format-fixtures-synthetic/no-such-file.svs"),
    };
    int good = 0, bad = 0;
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) {
        ss_error_clear();
        ss_slide_t *s = ss_slide_open(list[i], 0.5, "flag");
        if (!s) {
            const char *e = ss_error_last();
            printf("open error: %s\n", e);
            CHECK(strstr(e, list[i]) != NULL, "error must name the file: %s", e);
            if (strstr(list[i], ".dcm")) CHECK(strstr(e, "DICOM") != NULL, "DICOM named: %s", e);
            bad++;
            continue;
        }
        ss_tiling_opts_t o;
        ss_tiling_opts_default(&o);
        o.tile_px = 64;
        o.overlap_px = 8;
        o.use_mask = 0;
        ss_tiler_t *t = ss_tiler_new(s, &o);
        int64_t n = 0, errs = t ? read_all(t, &n) : -1;
        if (!t) {
            printf("tiler error: %s\n", ss_error_last());
            bad++;
        } else if (errs) {
            bad++;
        } else {
            good++;
        }
        ss_tiler_destroy(&t);
        ss_slide_destroy(&s);
    }
    CHECK(good == 2 && bad == 6, "good=%d bad=%d", good, bad);

    /* The read error names slide and region; the handle recovers or reports itself dead. */
    const char *u = data("wsi-format-fixtures-synthetic/unreadable.svs");
    ss_slide_t *s = ss_slide_open(u, 0, NULL);
    CHECK(s, "unreadable.svs must open (it fails on read): %s", ss_error_buffer());
    if (s) {
        uint8_t buf[16 * 16 * 3];
        ss_error_clear();
        CHECK(ss_slide_read_region(s, 0, 0, 0.499, 16, 16, buf) == -1, "read must fail");
        const char *e = ss_error_last();
        printf("read error: %s\n", e);
        CHECK(strstr(e, u) && strstr(e, "x=0 y=0 w=16 h=16") && strstr(e, "level=0"),
              "read error must name slide and region: %s", e);
        int dead_seen = 0;
        for (int i = 0; i < 40; i++) {
            ss_error_clear();
            CHECK(ss_slide_read_region(s, 0, 0, 0.499, 16, 16, buf) == -1, "read must fail");
            if (ss_slide_is_dead(s)) dead_seen = 1;
        }
        CHECK(dead_seen, "handle must be given up after repeated errors");
        CHECK(strstr(ss_error_last(), "dead") != NULL, "dead handle message: %s", ss_error_last());
        ss_error_clear();
        ss_slide_destroy(&s);
    }

    /* A real slide with a corrupt stretch of tile data: the bad tiles fail naming their region,
     * every other tile still reads (the handle is reopened after each failure). A truncated copy
     * (TIFF directory lost) fails to open with a clear message. */
    make_tmp();
    const char *cmu = data("wsi-aperio-cmu1-small-region/cmu-1-small-region.svs");
    char badf[600], cut[600];
    snprintf(badf, sizeof badf, "%s/corrupt stretch.svs", tmp_dir);
    snprintf(cut, sizeof cut, "%s/truncated.svs", tmp_dir);
    FILE *in = fopen(cmu, "rb"), *ob = fopen(badf, "wb"), *oc = fopen(cut, "wb");
    CHECK(in && ob && oc, "copy fixtures");
    if (in && ob && oc) {
        long pos = 0;
        int ch;
        while ((ch = fgetc(in)) != EOF) {
            fputc(pos >= 700000 && pos < 900000 ? 0x5a : ch, ob);
            if (pos < 1200000) fputc(ch, oc);
            pos++;
        }
    }
    if (in) fclose(in);
    if (ob) fclose(ob);
    if (oc) fclose(oc);
    s = ss_slide_open(cut, 0, NULL);
    CHECK(!s && strstr(ss_error_last(), cut) && strstr(ss_error_last(), "truncated"),
          "truncated slide: %s", ss_error_last());
    printf("truncated: %s\n", ss_error_last());
    ss_error_clear();
    ss_slide_destroy(&s);
    s = ss_slide_open(badf, 0, NULL);
    CHECK(s, "corrupt-stretch slide opens: %s", ss_error_buffer());
    if (s) {
        ss_tiling_opts_t o;
        ss_tiling_opts_default(&o);
        o.use_mask = 0;
        ss_tiler_t *t = ss_tiler_new(s, &o);
        int ok = 0, nbad = 0;
        ss_tile_t tile;
        uint8_t *buf = malloc((size_t)o.tile_px * o.tile_px * 3);
        while (t && ss_tiler_next(t, &tile) == 1) {
            if (ss_tiler_read(t, &tile, buf) == 0) {
                ok++;
                continue;
            }
            nbad++;
            CHECK(strstr(ss_error_last(), badf) && strstr(ss_error_last(), " x=") &&
                      strstr(ss_error_last(), "level=0"),
                  "tile error names slide and region: %s", ss_error_last());
            ss_error_clear();
        }
        printf("corrupt stretch: %d tiles read, %d failed, dead=%d\n", ok, nbad,
               ss_slide_is_dead(s));
        CHECK(nbad > 0 && ok > nbad && !ss_slide_is_dead(s), "ok=%d bad=%d", ok, nbad);
        free(buf);
        ss_tiler_destroy(&t);
        ss_slide_destroy(&s);
    }
    rm_tmp();
    return check_failures ? 1 : 0;
}

/* Plain images through libvips: JPEG smear photos (mpp from override only, since 72 dpi is a
 * default), and a PNG with a .jpg name detected by content. */
static int case_plain(void)
{
    int rc = need_data();
    if (rc) return rc;
    const char *jpg = data("smear-bccd-voc/BCCD/JPEGImages/BloodImage_00000.jpg");
    ss_slide_t *s = ss_slide_open(jpg, 0, NULL);
    CHECK(!s, "a JPEG with 72 dpi must be refused without an override");
    CHECK(strstr(ss_error_last(), jpg) != NULL, "names file: %s", ss_error_last());
    ss_error_clear();
    int done = 0;
    for (int id = 0; id < 60; id++) {
        char rel[200];
        snprintf(rel, sizeof rel, "smear-bccd-voc/BCCD/JPEGImages/BloodImage_%05d.jpg", id);
        if (access(data(rel), R_OK)) continue;
        s = ss_slide_open(data(rel), 0.1, "manifest");
        CHECK(s, "%s: %s", rel, ss_error_buffer());
        if (!s) continue;
        const ss_slide_info_t *in = ss_slide_info(s);
        CHECK(!strcmp(in->backend, "vips") && !strcmp(in->format, "jpegload"), "%s %s/%s", rel,
              in->backend, in->format);
        CHECK(in->width == 640 && in->height == 480 && in->level_count == 1, "%s dims", rel);
        CHECK(!strcmp(in->mpp_source, "manifest"), "source");
        ss_tiling_opts_t o;
        ss_tiling_opts_default(&o);
        o.tile_px = 256;
        o.overlap_um = 12;
        ss_tiler_t *t = ss_tiler_new(s, &o);
        CHECK(t, "tiler %s", ss_error_buffer());
        if (t) {
            int64_t n, errs = read_all(t, &n);
            ss_tiler_stats_t st;
            ss_tiler_stats(t, &st);
            CHECK(errs == 0 && n > 0, "tiles %lld errs %lld", (long long)n, (long long)errs);
            CHECK(ss_tiler_mask(t)->foreground > 0, "smear mask empty");
            if (!done)
                printf("ok %s grid %dx%d kept %lld\n", rel, st.cols, st.rows, (long long)st.kept);
        }
        ss_tiler_destroy(&t);
        ss_slide_destroy(&s);
        done++;
    }
    CHECK(done >= 10, "only %d BCCD images", done);

    /* Chula RBC-12: every image in the folder opens by content (some names lie about the
     * format upstream) and reads. */
    int chula = 0;
    for (int id = 1; id <= 740; id++) {
        char rel[200];
        snprintf(rel, sizeof rel, "smear-chula-rbc12-subset/Dataset/%d.jpg", id);
        if (access(data(rel), R_OK)) continue;
        s = ss_slide_open(data(rel), 0.08, "manifest");
        CHECK(s, "%s: %s", rel, ss_error_buffer());
        if (!s) continue;
        const ss_slide_info_t *in = ss_slide_info(s);
        CHECK(!strcmp(in->format, "jpegload") || !strcmp(in->format, "pngload"), "%s %s", rel,
              in->format);
        uint8_t *buf = malloc((size_t)in->width * in->height * 3);
        CHECK(ss_slide_read_region(s, 0, 0, in->mpp_x, (int)in->width, (int)in->height, buf) == 0,
              "%s read", rel);
        free(buf);
        ss_slide_destroy(&s);
        chula++;
    }
    CHECK(chula >= 50, "only %d chula images", chula);
    printf("ok %d chula images\n", chula);

    /* PNG bytes under a .jpg name, and a BMP (ImageMagick path). */
    make_tmp();
    int w = 97, h = 61;
    uint8_t *img = smear_image(w, h, 3, 4, 1, NULL, NULL);
    char path[512];
    snprintf(path, sizeof path, "%s/really a png (1).png", tmp_dir);
    CHECK(write_rgb(img, w, h, 1.0, path) == 0, "write png");
    char disguised[512];
    snprintf(disguised, sizeof disguised, "%s/really a png (1).jpg", tmp_dir);
    CHECK(rename(path, disguised) == 0, "rename");
    s = ss_slide_open(disguised, 0.2, "flag");
    CHECK(s && !strcmp(ss_slide_info(s)->format, "pngload"), "disguised PNG: %s",
          s ? ss_slide_info(s)->format : ss_error_buffer());
    if (s) {
        uint8_t *buf = malloc((size_t)w * h * 3);
        CHECK(ss_slide_read_region(s, 0, 0, 0.2, w, h, buf) == 0, "read");
        CHECK(!memcmp(buf, img, (size_t)w * h * 3), "PNG pixels must round-trip");
        free(buf);
    }
    ss_slide_destroy(&s);
    /* A PNG whose pHYs holds a real calibration (4000 px/mm = 0.25 um/px) needs no override. */
    snprintf(path, sizeof path, "%s/calibrated.png", tmp_dir);
    CHECK(write_rgb(img, w, h, 4000.0, path) == 0, "write png");
    s = ss_slide_open(path, 0, NULL);
    CHECK(s && fabs(ss_slide_info(s)->mpp_x - 0.25) < 1e-3 &&
              !strcmp(ss_slide_info(s)->mpp_source, "png.pHYs"),
          "calibrated PNG: %s", s ? ss_slide_info(s)->mpp_source : ss_error_buffer());
    ss_slide_destroy(&s);
    snprintf(path, sizeof path, "%s/plain.bmp", tmp_dir);
    if (write_rgb(img, w, h, 1.0, path) == 0) {
        s = ss_slide_open(path, 0.2, "flag");
        CHECK(s != NULL, "BMP: %s", ss_error_buffer());
        if (s) printf("ok BMP via %s\n", ss_slide_info(s)->format);
        ss_slide_destroy(&s);
    } else {
        printf("note: this libvips cannot write BMP; BMP not tested\n");
        vips_error_clear();
    }
    ss_error_clear();
    free(img);
    rm_tmp();
    return check_failures ? 1 : 0;
}

/* Cores partition the slide exactly, each tile contains its core with the overlap margin, and
 * every foreground mask pixel lies in kept tiles' cores. Synthetic plain images of several
 * sizes; several tile sizes, overlaps and targets. */
static int check_coverage(ss_slide_t *s, const ss_tiling_opts_t *o)
{
    const ss_slide_info_t *in = ss_slide_info(s);
    ss_tiler_t *t = ss_tiler_new(s, o);
    CHECK(t, "tiler: %s", ss_error_buffer());
    if (!t) return -1;
    ss_tiler_stats_t st;
    ss_tiler_stats(t, &st);
    ss_tile_t a, b;
    /* analytic: along each axis the cores are contiguous, non-empty and span the extent */
    for (int r = 0; r < st.rows; r++)
        for (int c = 0; c < st.cols; c++) {
            ss_tiler_tile(t, c, r, &a);
            CHECK(a.core_w > 0 && a.core_h > 0, "empty core (%d,%d)", c, r);
            if (c == 0)
                CHECK(a.core_x == 0, "first core x");
            else {
                ss_tiler_tile(t, c - 1, r, &b);
                CHECK(b.core_x + b.core_w == a.core_x, "x gap/overlap at (%d,%d)", c, r);
            }
            if (r == 0)
                CHECK(a.core_y == 0, "first core y");
            else {
                ss_tiler_tile(t, c, r - 1, &b);
                CHECK(b.core_y + b.core_h == a.core_y, "y gap/overlap at (%d,%d)", c, r);
            }
            if (c == st.cols - 1) CHECK(a.core_x + a.core_w == in->width, "last core x");
            if (r == st.rows - 1) CHECK(a.core_y + a.core_h == in->height, "last core y");
            /* core inside the tile with at least ~overlap/2 margin where the slide goes on */
            /* level-0 rounding costs up to 1.5 level-0 pixels, i.e. 1.5/scale tile pixels */
            double hx = st.overlap_px / 2.0 - 1.0 - 1.5 / a.scale_x;
            double hy = st.overlap_px / 2.0 - 1.0 - 1.5 / a.scale_y;
            CHECK(a.core_px_x0 >= hx && a.core_px_y0 >= hy, "left/top margin %g %g", a.core_px_x0,
                  a.core_px_y0);
            if (c < st.cols - 1)
                CHECK(a.core_px_x1 <= a.size - hx, "right margin %g", a.core_px_x1);
            if (r < st.rows - 1)
                CHECK(a.core_px_y1 <= a.size - hy, "bottom margin %g", a.core_px_y1);
            if (check_failures > 20) return -1;
        }
    /* counting raster: every level-0 pixel centre is owned by exactly one tile */
    int64_t W = in->width, H = in->height;
    int step = (int)((W * H) / 200000 + 1);
    uint8_t *own = calloc((size_t)W * H, 1);
    for (int r = 0; r < st.rows; r++)
        for (int c = 0; c < st.cols; c++) {
            ss_tiler_tile(t, c, r, &a);
            int64_t ys = a.core_y, ye = a.core_y + a.core_h, xs = a.core_x,
                    xe = a.core_x + a.core_w;
            for (int64_t y = ys; y < ye; y++)
                for (int64_t x = xs; x < xe; x++) {
                    if ((y * W + x) % step) continue;
                    /* through the public ownership test, in tile pixel coordinates */
                    double px = (x + 0.5 - a.x0) / a.scale_x, py = (y + 0.5 - a.y0) / a.scale_y;
                    if (ss_tile_owns(&a, px, py)) own[y * W + x]++;
                }
        }
    for (int64_t i = 0; i < W * H; i += step)
        CHECK(own[i] == 1, "pixel %lld owned %d times", (long long)i, own[i]);
    free(own);
    /* mask coverage: each foreground mask pixel's level-0 area lies in kept cores */
    const ss_mask_t *m = ss_tiler_mask(t);
    if (m) {
        uint8_t *kept = calloc((size_t)st.grid, 1);
        int64_t n = 0;
        while (ss_tiler_next(t, &a) == 1) {
            kept[a.index] = 1;
            n++;
        }
        CHECK(n == st.kept, "kept count %lld vs %lld", (long long)n, (long long)st.kept);
        int64_t fgpix = 0;
        for (int my = 0; my < m->height; my++)
            for (int mx = 0; mx < m->width; mx++) {
                if (!m->data[(size_t)my * m->width + mx]) continue;
                fgpix++;
                double x0 = mx * m->scale_x, x1 = (mx + 1) * m->scale_x;
                double y0 = my * m->scale_y, y1 = (my + 1) * m->scale_y;
                for (int r = 0; r < st.rows; r++)
                    for (int c = 0; c < st.cols; c++) {
                        ss_tiler_tile(t, c, r, &a);
                        int meets = a.core_x < x1 && a.core_x + a.core_w > x0 && a.core_y < y1 &&
                                    a.core_y + a.core_h > y0;
                        if (meets)
                            CHECK(kept[a.index], "fg mask pixel (%d,%d) in skipped tile", mx, my);
                    }
                if (check_failures > 20) break;
            }
        CHECK(fgpix == m->foreground, "mask count");
        free(kept);
    }
    printf("ok %lldx%lld T=%d overlap=%dpx target=%.3f grid=%dx%d kept=%lld skipped=%lld\n",
           (long long)W, (long long)H, o->tile_px, st.overlap_px, st.target_mpp, st.cols, st.rows,
           (long long)st.kept, (long long)st.skipped_empty);
    ss_tiler_destroy(&t);
    return 0;
}

static int case_coverage(void)
{
    make_tmp();
    static const int sizes[][2] = {{1000, 700}, {1301, 977}, {257, 1999}, {64, 64}};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int w = sizes[k][0], h = sizes[k][1];
        uint8_t *img = smear_image(w, h, 12, 5, (unsigned)k + 7, NULL, NULL);
        char path[512];
        snprintf(path, sizeof path, "%s/s%zu.png", tmp_dir, k);
        CHECK(write_rgb(img, w, h, 1.0, path) == 0, "write");
        free(img);
        ss_slide_t *s = ss_slide_open(path, 0.25, "flag");
        CHECK(s, "open %s", ss_error_buffer());
        if (!s) continue;
        static const struct {
            int T;
            double ov_um;
            double target;
        } cfg[] = {{128, 20, 0.25}, {100, 20, 0.5}, {64, 3, 0.37},
                   {256, 0, 1.1},   {96, 10, 0.3},  {160, 12, 0.123}};
        for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
            ss_tiling_opts_t o;
            ss_tiling_opts_default(&o);
            o.tile_px = cfg[c].T;
            o.overlap_um = cfg[c].ov_um;
            o.target_mpp = cfg[c].target;
            o.mask_mpp = 2.0;
            check_coverage(s, &o);
        }
        ss_slide_destroy(&s);
    }
    /* options that cannot work are refused */
    {
        uint8_t *img = smear_image(100, 100, 1, 3, 1, NULL, NULL);
        char path[512];
        snprintf(path, sizeof path, "%s/bad.png", tmp_dir);
        write_rgb(img, 100, 100, 1.0, path);
        free(img);
        ss_slide_t *s = ss_slide_open(path, 0.25, "flag");
        ss_tiling_opts_t o;
        ss_tiling_opts_default(&o);
        o.tile_px = 64;
        o.overlap_px = 64;
        ss_tiler_t *t = s ? ss_tiler_new(s, &o) : NULL;
        CHECK(!t && strstr(ss_error_last(), "overlap"), "overlap >= tile must be refused");
        ss_error_clear();
        ss_tiler_destroy(&t);
        ss_slide_destroy(&s);
    }
    rm_tmp();
    return check_failures ? 1 : 0;
}

/* Resampling: at 2x the native mpp a read equals the 2x2 area average of the native read
 * (within 1); at odd factors it matches a double-precision box filter (within 1). */
static void box_ref(const uint8_t *src, int sw, int sh, double x0, double y0, double f, int w,
                    int h, double *out)
{
    for (int j = 0; j < h; j++)
        for (int i = 0; i < w; i++)
            for (int c = 0; c < 3; c++) {
                double ax = x0 + i * f, bx = ax + f, ay = y0 + j * f, by = ay + f, acc = 0, wt = 0;
                for (int y = (int)floor(ay); y < (int)ceil(by); y++)
                    for (int x = (int)floor(ax); x < (int)ceil(bx); x++) {
                        double wx = fmin(bx, x + 1) - fmax(ax, x),
                               wy = fmin(by, y + 1) - fmax(ay, y);
                        double v = (x >= 0 && y >= 0 && x < sw && y < sh)
                                       ? src[((size_t)y * sw + x) * 3 + c]
                                       : 255;
                        acc += wx * wy * v;
                        wt += wx * wy;
                    }
                out[((size_t)j * w + i) * 3 + c] = acc / wt;
            }
}

static int case_resample(void)
{
    int rc = need_data();
    if (rc) return rc;
    const char *p = data("wsi-aperio-cmu1-small-region/cmu-1-small-region.svs");
    ss_slide_t *s = ss_slide_open(p, 0, NULL);
    CHECK(s, "%s", ss_error_buffer());
    if (!s) return 1;
    double mpp = ss_slide_info(s)->mpp_x;
    int W = 400, H = 300;
    int64_t ox = 1000, oy = 1200;
    uint8_t *nat = malloc((size_t)W * H * 3), *half = malloc((size_t)W / 2 * H / 2 * 3);
    CHECK(ss_slide_read_region(s, ox, oy, mpp, W, H, nat) == 0, "native %s", ss_error_buffer());
    CHECK(ss_slide_read_region(s, ox, oy, 2 * mpp, W / 2, H / 2, half) == 0, "2x");
    int maxd = 0;
    for (int j = 0; j < H / 2; j++)
        for (int i = 0; i < W / 2; i++)
            for (int c = 0; c < 3; c++) {
                int sum = nat[((2 * j) * W + 2 * i) * 3 + c] +
                          nat[((2 * j) * W + 2 * i + 1) * 3 + c] +
                          nat[((2 * j + 1) * W + 2 * i) * 3 + c] +
                          nat[((2 * j + 1) * W + 2 * i + 1) * 3 + c];
                int d = abs(half[(j * (W / 2) + i) * 3 + c] - (sum + 2) / 4);
                if (d > maxd) maxd = d;
            }
    CHECK(maxd <= 1, "2x2 average differs by %d", maxd);
    printf("2x read vs 2x2 average: max diff %d\n", maxd);
    /* odd factors against a double-precision reference over the native read */
    static const double fs[] = {1.5, 2.7, 3.0, 0.75};
    for (size_t k = 0; k < sizeof fs / sizeof fs[0]; k++) {
        double f = fs[k];
        int w = (int)(W / f) - 2, h = (int)(H / f) - 2;
        if (w > 150) w = 150;
        if (h > 120) h = 120;
        uint8_t *o = malloc((size_t)w * h * 3);
        double *ref = malloc((size_t)w * h * 3 * sizeof *ref);
        CHECK(ss_slide_read_region(s, ox, oy, f * mpp, w, h, o) == 0, "read f=%g", f);
        box_ref(nat, W, H, 0, 0, f, w, h, ref);
        double md = 0;
        for (int i = 0; i < w * h * 3; i++)
            md = fmax(md, fabs(o[i] - ref[i]));
        CHECK(md <= 1.0, "factor %g max diff %g", f, md);
        printf("factor %.2f: max diff %.3f\n", f, md);
        free(o);
        free(ref);
    }
    /* beyond the slide edge reads white */
    uint8_t edge[8 * 8 * 3];
    CHECK(ss_slide_read_region(s, -100, -100, mpp, 8, 8, edge) == 0, "outside read");
    int allwhite = 1;
    for (size_t i = 0; i < sizeof edge; i++)
        allwhite &= edge[i] == 255;
    CHECK(allwhite, "outside must be white");
    ss_slide_destroy(&s);

    /* multi-level pyramid: a read at 4x on a tiled pyramidal TIFF comes from level 2 */
    make_tmp();
    int w = 2048, h = 1536;
    uint8_t *img = smear_image(w, h, 200, 12, 3, NULL, NULL);
    char path[512];
    snprintf(path, sizeof path,
             "%s/pyr.tif[tile,pyramid,compression=deflate,tile-width=256,"
             "tile-height=256]",
             tmp_dir);
    CHECK(write_rgb(img, w, h, 4000.0, path) == 0, "write pyramid");
    free(img);
    snprintf(path, sizeof path, "%s/pyr.tif", tmp_dir);
    s = ss_slide_open(path, 0, NULL);
    CHECK(s, "pyramid open: %s", ss_error_buffer());
    if (s) {
        const ss_slide_info_t *in = ss_slide_info(s);
        CHECK(!strcmp(in->format, "generic-tiff") && in->level_count >= 3, "pyramid %s %d",
              in->format, in->level_count);
        CHECK(fabs(in->mpp_x - 0.25) < 1e-3 && !strcmp(in->mpp_source, "tiff.XResolution"),
              "pyramid mpp %g %s", in->mpp_x, in->mpp_source);
        CHECK(ss_slide_best_level(s, 1.0) == 2 && ss_slide_best_level(s, 0.99) == 1 &&
                  ss_slide_best_level(s, 0.1) == 0,
              "best level");
        /* a whole-slide read at 1 um/px equals level 2 read directly */
        uint8_t *a = malloc(512 * 384 * 3), *b = malloc(512 * 384 * 3);
        CHECK(ss_slide_read_region(s, 0, 0, 1.0, 512, 384, a) == 0, "read");
        CHECK(ss_slide_read_level(s, 2, 0, 0, 512, 384, b) == 0, "read level");
        CHECK(!memcmp(a, b, 512 * 384 * 3), "target at a level's resolution reads that level");
        free(a);
        free(b);
        ss_thumb_t *t = ss_slide_thumbnail(s, 300);
        CHECK(t && t->width == 300 && t->height == 225, "thumbnail %dx%d", t ? t->width : 0,
              t ? t->height : 0);
        ss_thumb_destroy(&t);
    }
    ss_slide_destroy(&s);
    rm_tmp();
    free(nat);
    free(half);
    return check_failures ? 1 : 0;
}

/* The mask keeps sparse cells (smear-like synthetic image; every dot is foreground), not the
 * unevenly lit glass; it keeps BCCD white cells; the GeoJSON outline has exactly the mask's area.
 */
static int case_mask(void)
{
    make_tmp();
    int w = 3000, h = 2000, nd = 60;
    int cx[60], cy[60];
    uint8_t *img = smear_image(w, h, nd, 14, 5, cx, cy); /* 14 px at 0.25 um = 7 um diameter */
    char path[512];
    snprintf(path, sizeof path, "%s/smear.png", tmp_dir);
    CHECK(write_rgb(img, w, h, 1.0, path) == 0, "write");
    free(img);
    ss_slide_t *s = ss_slide_open(path, 0.25, "flag");
    CHECK(s, "%s", ss_error_buffer());
    if (!s) return 1;
    ss_mask_t *m = ss_mask_new(s, 4.0);
    CHECK(m, "mask %s", ss_error_buffer());
    if (m) {
        for (int i = 0; i < nd; i++)
            CHECK(ss_mask_any(m, cx[i], cy[i], 1, 1), "dot %d at (%d,%d) lost", i, cx[i], cy[i]);
        double frac = (double)m->foreground / ((double)m->width * m->height);
        CHECK(frac < 0.25, "glass counted as foreground: %.2f", frac);
        printf("synthetic smear mask %dx%d at %g um/px: foreground %.3f\n", m->width, m->height,
               m->mpp, frac);
        snprintf(path, sizeof path, "%s/mask.geojson", tmp_dir);
        CHECK(ss_mask_write_geojson(m, path) == 0, "geojson %s", ss_error_buffer());
    }
    ss_mask_destroy(&m);
    ss_slide_destroy(&s);

    /* hand-made mask with holes, an island in a hole and diagonal pinches */
    static const char *pat[] = {
        "##########..#", "#........#.#.", "#.######.#..#", "#.#....#.#.#.", "#.#.##.#.##..",
        "#.#....#..#..", "#.######...#.", "#.........#.#", "##########...",
    };
    ss_mask_t hm = {0};
    hm.width = 13;
    hm.height = 9;
    hm.scale_x = 3;
    hm.scale_y = 2;
    hm.mpp = 1;
    hm.slide_width = 39;
    hm.slide_height = 18;
    uint8_t d[13 * 9];
    for (int y = 0; y < 9; y++)
        for (int x = 0; x < 13; x++) {
            d[y * 13 + x] = pat[y][x] == '#';
            hm.foreground += d[y * 13 + x];
        }
    hm.data = d;
    char gj[512];
    snprintf(gj, sizeof gj, "%s/hand.geojson", tmp_dir);
    CHECK(ss_mask_write_geojson(&hm, gj) == 0, "geojson %s", ss_error_buffer());
    const char *py = getenv("SS_PYTHON");
    if (py && !access(py, X_OK)) {
        /* area of the MultiPolygon (outer minus holes) = foreground pixels x 3 x 2; every ring is
         * closed and simple (no repeated vertex); QuPath properties present */
        char cmd[3000];
        snprintf(
            cmd, sizeof cmd,
            "'%s' -c \"\nimport json,sys\n"
            "g=json.load(open('%s'))\nf=g['features'][0]\n"
            "assert f['properties']['objectType']=='annotation'\n"
            "assert f['properties']['classification']['name']=='Foreground'\n"
            "def A(r): return sum(r[i][0]*r[i+1][1]-r[i+1][0]*r[i][1] for i in range(len(r)-1))/2\n"
            "tot=0\nfor poly in f['geometry']['coordinates']:\n"
            "  for k,r in enumerate(poly):\n"
            "    assert r[0]==r[-1] and len(set(map(tuple,r[:-1])))==len(r)-1, r\n"
            "    a=A(r); assert (a>0)==(k==0), (k,a)\n"
            "    tot+=a\n"
            "print('geojson polygons',len(f['geometry']['coordinates']),'area',tot)\n"
            "sys.exit(0 if abs(tot-%lld*6)<1e-9 else 1)\n\"",
            py, gj, (long long)hm.foreground);
        CHECK(system(cmd) == 0, "GeoJSON check failed");
        snprintf(cmd, sizeof cmd,
                 "'%s' -c \"import json; g=json.load(open('%s/mask.geojson')); "
                 "print('smear mask polygons', len(g['features'][0]['geometry']['coordinates']))\"",
                 py, tmp_dir);
        CHECK(system(cmd) == 0, "smear GeoJSON does not parse");
    } else {
        printf("note: SS_PYTHON not set; GeoJSON not parsed\n");
    }

    /* BCCD: each white cell box meets the mask (uses the VOC annotations) */
    if (need_data() == 0) {
        int checked = 0, hit = 0;
        for (int id = 0; id < 40; id++) {
            char rel[200], xml[200];
            snprintf(rel, sizeof rel, "smear-bccd-voc/BCCD/JPEGImages/BloodImage_%05d.jpg", id);
            snprintf(xml, sizeof xml, "smear-bccd-voc/BCCD/Annotations/BloodImage_%05d.xml", id);
            FILE *f = fopen(data(xml), "r");
            if (!f) continue;
            s = ss_slide_open(data(rel), 0.1, "manifest");
            m = s ? ss_mask_new(s, 0) : NULL;
            char line[512];
            int inwbc = 0, box[4] = {0}, nb = 0;
            while (m && fgets(line, sizeof line, f)) {
                if (strstr(line, "<name>")) inwbc = strstr(line, "WBC") != NULL, nb = 0;
                const char *tags[4] = {"<xmin>", "<ymin>", "<xmax>", "<ymax>"};
                for (int k = 0; k < 4; k++) {
                    char *q = strstr(line, tags[k]);
                    if (q) box[k] = atoi(q + strlen(tags[k])), nb++;
                }
                if (inwbc && nb == 4) {
                    checked++;
                    hit += ss_mask_any(m, box[0], box[1], box[2] - box[0], box[3] - box[1]);
                    nb = 0;
                }
            }
            fclose(f);
            ss_mask_destroy(&m);
            ss_slide_destroy(&s);
        }
        CHECK(checked > 10 && hit == checked, "BCCD WBC boxes in mask: %d of %d", hit, checked);
        printf("BCCD white cells inside the mask: %d of %d\n", hit, checked);
        /* a real H&E slide: tissue kept, glass dropped */
        s = ss_slide_open(data("wsi-aperio-cmu1-small-region/cmu-1-small-region.svs"), 0, NULL);
        m = s ? ss_mask_new(s, 0) : NULL;
        CHECK(m, "cmu mask");
        if (m) {
            double frac = (double)m->foreground / ((double)m->width * m->height);
            printf("cmu-1-small-region mask %dx%d foreground %.3f\n", m->width, m->height, frac);
            CHECK(frac > 0.2 && frac < 0.95, "cmu foreground fraction %.3f", frac);
            snprintf(path, sizeof path, "%s/cmu.geojson", tmp_dir);
            CHECK(ss_mask_write_geojson(m, path) == 0, "cmu geojson");
        }
        ss_mask_destroy(&m);
        ss_slide_destroy(&s);
        /* fluorescence: dark field detected */
        s = ss_slide_open(data("wsi-hamamatsu-ndpi-fluorescence/test3-DAPI-2-(387).ndpi"), 0, NULL);
        m = s ? ss_mask_new(s, 0) : NULL;
        CHECK(m && m->dark_field, "DAPI must be seen as dark-field");
        if (m)
            printf("DAPI mask %dx%d foreground %.3f dark_field=%d\n", m->width, m->height,
                   (double)m->foreground / ((double)m->width * m->height), m->dark_field);
        ss_mask_destroy(&m);
        ss_slide_destroy(&s);
    }
    ss_error_clear();
    rm_tmp();
    return check_failures ? 1 : 0;
}

/* A generated smear with ground truth (slidestream synth slide): every cell centre is in the
 * foreground mask and owned by exactly one kept tile, and a cell no wider than the overlap lies
 * entirely inside the tile that owns it. */
static int case_synth(void)
{
    const char *ss = getenv("SLIDESTREAM");
    if (!ss || access(ss, X_OK)) {
        printf("SKIP: $SLIDESTREAM not set or not executable\n");
        return 77;
    }
    make_tmp();
    char cmd[2048], slide[512], truth[512];
    snprintf(slide, sizeof slide, "%s/synth smear.tiff", tmp_dir);
    snprintf(truth, sizeof truth, "%s/truth.csv", tmp_dir);
    snprintf(cmd, sizeof cmd,
             "'%s' synth slide --out '%s' --width 3000 --height 2200 --mpp 0.25 --seed 11 "
             "--density 400 --truth '%s' --quiet",
             ss, slide, truth);
    if (system(cmd)) {
        printf("SKIP: slidestream synth slide failed (its own tests cover it)\n");
        rm_tmp();
        return 77;
    }
    FILE *f = fopen(truth, "r");
    CHECK(f, "truth csv");
    if (!f) return 1;
    enum { MAXC = 20000 };
    static double cx[MAXC], cy[MAXC], cr[MAXC];
    static int nucleated[MAXC];
    int n = 0;
    char line[256];
    while (fgets(line, sizeof line, f) && n < MAXC) {
        char cls[32];
        if (sscanf(line, "%31[^,],%lf,%lf,%lf", cls, &cx[n], &cy[n], &cr[n]) != 4) continue;
        nucleated[n] = strcmp(cls, "RBC") && strcmp(cls, "PLT");
        n++;
    }
    fclose(f);
    CHECK(n > 100, "truth has %d cells", n);
    ss_slide_t *s = ss_slide_open(slide, 0, NULL);
    CHECK(s, "open synth: %s", ss_error_buffer());
    if (!s) return 1;
    CHECK(fabs(ss_slide_info(s)->mpp_x - 0.25) < 1e-6, "synth mpp %g (%s)", ss_slide_info(s)->mpp_x,
          ss_slide_info(s)->mpp_source);
    static const double targets[] = {0.25, 0.5};
    for (int k = 0; k < 2; k++) {
        ss_tiling_opts_t o;
        ss_tiling_opts_default(&o);
        o.target_mpp = targets[k];
        o.tile_px = 256;
        o.overlap_um = 20;
        ss_tiler_t *t = ss_tiler_new(s, &o);
        CHECK(t, "tiler %s", ss_error_buffer());
        if (!t) continue;
        const ss_mask_t *m = ss_tiler_mask(t);
        int in_mask = 0, in_mask_nuc = 0, nnuc = 0, inside = 0, need_inside = 0;
        static int owners[MAXC];
        memset(owners, 0, sizeof owners);
        ss_tile_t tile;
        while (ss_tiler_next(t, &tile) == 1) {
            double ext_x = tile.size * tile.scale_x, ext_y = tile.size * tile.scale_y;
            for (int i = 0; i < n; i++) {
                double px = (cx[i] - tile.x0) / tile.scale_x, py = (cy[i] - tile.y0) / tile.scale_y;
                if (!ss_tile_owns(&tile, px, py)) continue;
                owners[i]++;
                if (2 * cr[i] * 0.25 <= o.overlap_um) {
                    need_inside++;
                    inside += cx[i] - cr[i] >= (double)tile.x0 &&
                              cx[i] + cr[i] <= (double)tile.x0 + ext_x &&
                              cy[i] - cr[i] >= (double)tile.y0 &&
                              cy[i] + cr[i] <= (double)tile.y0 + ext_y;
                }
            }
        }
        int once = 0;
        for (int i = 0; i < n; i++) {
            int fgc = ss_mask_any(m, (int64_t)cx[i], (int64_t)cy[i], 1, 1);
            in_mask += fgc;
            if (nucleated[i]) nnuc++, in_mask_nuc += fgc;
            once += owners[i] == 1;
        }
        ss_tiler_stats_t st;
        ss_tiler_stats(t, &st);
        printf(
            "target %.2f: cells %d, in mask %d (nucleated %d of %d), owned once %d, inside owner "
            "%d of %d; tiles kept %lld skipped %lld\n",
            targets[k], n, in_mask, in_mask_nuc, nnuc, once, inside, need_inside,
            (long long)st.kept, (long long)st.skipped_empty);
        CHECK(in_mask_nuc == nnuc, "nucleated cells outside the mask");
        CHECK(in_mask >= n - n / 100, "cells outside the mask: %d of %d", n - in_mask, n);
        CHECK(once == n, "cells not owned exactly once: %d", n - once);
        CHECK(inside == need_inside, "cells cut by their owner tile: %d", need_inside - inside);
        ss_tiler_destroy(&t);
    }
    ss_slide_destroy(&s);
    rm_tmp();
    return check_failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (VIPS_INIT(argv[0])) return 1;
    if (argc < 2) {
        fprintf(stderr,
                "usage: slide_test open|tile_real|broken|plain|coverage|resample|mask|synth\n");
        return 2;
    }
    static const struct {
        const char *name;
        int (*fn)(void);
    } cases[] = {{"open", case_open},   {"tile_real", case_tile_real}, {"broken", case_broken},
                 {"plain", case_plain}, {"coverage", case_coverage},   {"resample", case_resample},
                 {"mask", case_mask},   {"synth", case_synth}};
    int rc = -1;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (!strcmp(argv[1], cases[i].name)) rc = cases[i].fn();
    if (rc < 0) {
        fprintf(stderr, "unknown case %s\n", argv[1]);
        return 2;
    }
    if (check_failures) fprintf(stderr, "%d check(s) failed\n", check_failures);
    vips_shutdown();
    return rc;
}
