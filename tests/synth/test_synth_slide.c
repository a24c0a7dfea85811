/* Tests of ss_synth through its library API.
 *   openslide: a written slide opens in OpenSlide with its size, levels and mpp, and the pixels
 *              OpenSlide decodes match the renderer (up to JPEG loss).
 *   regions:   a region rendered whole equals the same region rendered in any tiling, so tiles
 *              written by libvips join exactly; renders are repeatable.
 * Exit status is the verdict. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openslide.h>
#include <vips/vips.h>

#include "slidestream/error.h"
#include "slidestream/synth.h"

#include "../check.h"


static double prop_double(openslide_t *s, const char *name)
{
    const char *v = openslide_get_property_value(s, name);
    return v ? atof(v) : -1.0;
}

static int test_openslide(void)
{
    char dir[] = "/tmp/ss-synth-test-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char path[256], truth[256];
    snprintf(path, sizeof path, "%s/slide.tiff", dir);
    snprintf(truth, sizeof truth, "%s/truth.csv", dir);
    ss_synth_slide_opts_t o;
    ss_synth_slide_opts_default(&o);
    o.width = 3000;
    o.height = 2000;
    o.mpp = 0.5;
    o.seed = 7;
    if (ss_synth_slide_write(&o, path, truth)) {
        ss_error_report("write failed");
        return 1;
    }
    openslide_t *s = openslide_open(path);
    CHECK(s && !openslide_get_error(s), "openslide_open(%s): %s", path,
          s ? openslide_get_error(s) : "not recognised");
    if (s && !openslide_get_error(s)) {
        int64_t w = 0, h = 0;
        openslide_get_level0_dimensions(s, &w, &h);
        CHECK(w == 3000 && h == 2000, "level 0 is %lldx%lld", (long long)w, (long long)h);
        CHECK(openslide_get_level_count(s) > 1, "%d levels", openslide_get_level_count(s));
        CHECK(fabs(prop_double(s, OPENSLIDE_PROPERTY_NAME_MPP_X) - 0.5) < 1e-9, "mpp-x %g",
              prop_double(s, OPENSLIDE_PROPERTY_NAME_MPP_X));
        CHECK(fabs(prop_double(s, OPENSLIDE_PROPERTY_NAME_MPP_Y) - 0.5) < 1e-9, "mpp-y %g",
              prop_double(s, OPENSLIDE_PROPERTY_NAME_MPP_Y));
        CHECK(fabs(prop_double(s, "tiff.XResolution") - 20000.0) < 1e-6, "tiff.XResolution %g",
              prop_double(s, "tiff.XResolution"));

        /* decoded pixels vs the renderer */
        const int64_t x = 1000, y = 600;
        const int rw = 512, rh = 384;
        uint32_t *argb = malloc((size_t)rw * rh * 4);
        uint8_t *rgb = malloc((size_t)rw * rh * 3);
        openslide_read_region(s, argb, x, y, 0, rw, rh);
        CHECK(!openslide_get_error(s), "read_region: %s", openslide_get_error(s));
        CHECK(!ss_synth_slide_render(&o, x, y, rw, rh, rgb), "render: %s", ss_error_last());
        double sum = 0;
        long dark = 0;
        for (int i = 0; i < rw * rh; i++) {
            uint32_t p = argb[i];
            int v[3] = {(int)((p >> 16) & 255), (int)((p >> 8) & 255), (int)(p & 255)};
            for (int k = 0; k < 3; k++)
                sum += abs(v[k] - rgb[3 * i + k]);
            if (rgb[3 * i + 1] < 150) dark++;
        }
        double mad = sum / (rw * rh * 3.0);
        CHECK(mad < 3.0, "decoded pixels differ from the renderer: mean |diff| %.2f", mad);
        CHECK(dark > rw * rh / 20, "region looks empty: %ld stained pixels", dark);
        fprintf(stderr, "openslide: mean |decoded - rendered| = %.3f grey levels\n", mad);
        free(argb);
        free(rgb);
    }
    if (s) openslide_close(s);

    /* the truth CSV lists what the iterator yields, header first */
    FILE *f = fopen(truth, "r");
    char line[256];
    CHECK(f && fgets(line, sizeof line, f) && !strcmp(line, "class,x,y,radius\n"), "truth header");
    long rows = 0;
    while (f && fgets(line, sizeof line, f))
        rows++;
    if (f) fclose(f);
    CHECK(rows > 100, "only %ld truth rows", rows);
    unlink(truth);
    unlink(path);
    rmdir(dir);
    return check_failures != 0;
}

static int test_regions(void)
{
    ss_synth_slide_opts_t o;
    ss_synth_slide_opts_default(&o);
    o.width = 4000;
    o.height = 3000;
    o.seed = 42;
    o.witness_rate = 0.5;
    const int64_t X = 1234, Y = 567;
    const int W = 700, H = 500;
    uint8_t *whole = malloc((size_t)W * H * 3), *tiled = malloc((size_t)W * H * 3);
    if (ss_synth_slide_render(&o, X, Y, W, H, whole)) {
        ss_error_report("render failed");
        return 1;
    }
    const int steps[] = {128, 77, 256, 33};
    for (size_t t = 0; t < sizeof steps / sizeof steps[0]; t++) {
        int st = steps[t];
        memset(tiled, 0, (size_t)W * H * 3);
        uint8_t *buf = malloc((size_t)st * st * 3);
        for (int ty = 0; ty < H; ty += st)
            for (int tx = 0; tx < W; tx += st) {
                int tw = W - tx < st ? W - tx : st, th = H - ty < st ? H - ty : st;
                if (ss_synth_slide_render(&o, X + tx, Y + ty, tw, th, buf)) {
                    ss_error_report("render failed");
                    return 1;
                }
                for (int r = 0; r < th; r++)
                    memcpy(tiled + ((size_t)(ty + r) * W + tx) * 3, buf + (size_t)r * tw * 3,
                           (size_t)tw * 3);
            }
        free(buf);
        CHECK(!memcmp(whole, tiled, (size_t)W * H * 3), "tiles of %d differ from the whole", st);
    }
    /* a different seed gives a different picture */
    o.seed = 43;
    ss_synth_slide_render(&o, X, Y, W, H, tiled);
    CHECK(memcmp(whole, tiled, (size_t)W * H * 3), "seed 43 renders like seed 42");
    free(whole);
    free(tiled);

    /* single-cell crops: repeatable, and distinct per index */
    ss_synth_cells_opts_t c;
    ss_synth_cells_opts_default(&c);
    uint8_t a[96 * 96 * 3], b[96 * 96 * 3];
    for (int cls = 0; cls < SS_SYNTH_NNUCLEATED; cls++) {
        CHECK(!ss_synth_cell_render(&c, (ss_synth_class_t)cls, 3, a), "cell render");
        CHECK(!ss_synth_cell_render(&c, (ss_synth_class_t)cls, 3, b), "cell render");
        CHECK(!memcmp(a, b, sizeof a), "class %d crop not repeatable", cls);
        CHECK(!ss_synth_cell_render(&c, (ss_synth_class_t)cls, 4, b), "cell render");
        CHECK(memcmp(a, b, sizeof a), "class %d crops 3 and 4 identical", cls);
        /* the centre pixel is stained (the cell is centred) */
        const uint8_t *p = a + (48 * 96 + 48) * 3;
        CHECK(p[1] < 200, "class %d: centre pixel not stained (%d,%d,%d)", cls, p[0], p[1], p[2]);
    }
    CHECK(ss_synth_cell_render(&c, SS_SYNTH_RBC, 0, a) == -1, "RBC is not a cell-set class");
    ss_error_clear();
    /* difficulty: validated, and it moves abnormal cells only (LYT crops stay byte for byte) */
    c.difficulty = 1.5;
    CHECK(ss_synth_cell_render(&c, SS_SYNTH_LYT, 0, a) == -1, "difficulty 1.5 accepted");
    ss_error_clear();
    c.difficulty = 0.0;
    ss_synth_cells_opts_t h = c;
    h.difficulty = 1.0;
    for (int cls = 0; cls < SS_SYNTH_NNUCLEATED; cls++) {
        CHECK(!ss_synth_cell_render(&c, (ss_synth_class_t)cls, 5, a), "cell render");
        CHECK(!ss_synth_cell_render(&h, (ss_synth_class_t)cls, 5, b), "cell render");
        int same = !memcmp(a, b, sizeof a);
        CHECK(cls == SS_SYNTH_LYT ? same : !same, "class %d: difficulty 1 %s the crop", cls,
              same ? "left" : "changed");
    }
    o.seed = 42;
    o.difficulty = -0.1;
    CHECK(ss_synth_slide_render(&o, X, Y, 16, 16, a) == -1, "slide difficulty -0.1 accepted");
    ss_error_clear();
    return check_failures != 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_synth_slide openslide|regions\n");
        return 2;
    }
    if (VIPS_INIT(argv[0])) return 1;
    int rc = 2;
    if (!strcmp(argv[1], "openslide"))
        rc = test_openslide();
    else if (!strcmp(argv[1], "regions"))
        rc = test_regions();
    vips_shutdown();
    if (rc != 2) return rc;
    fprintf(stderr, "unknown case %s\n", argv[1]);
    return 2;
}
