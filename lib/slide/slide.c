/* Opening a slide: format detection (OpenSlide first, then libvips' plain-image loaders),
 * level geometry, and microns-per-pixel resolution with its recorded source.
 *
 * The handle owns the OpenSlide handle or the libvips image/region, plus scratch buffers.
 * mpp is never guessed: metadata that is missing or outside [SS_MPP_MIN, SS_MPP_MAX] falls
 * through to the caller's override, and without one the slide is refused. */
#include "slide_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "slidestream/error.h"
#include "slidestream/log.h"

static pthread_once_t vips_once = PTHREAD_ONCE_INIT;
static int vips_ok;

static void vips_start(void)
{
    vips_ok = vips_init("slidestream") == 0;
    if (vips_ok) {
        /* Each tile read is a one-off region request: libvips' operation cache would only hold
         * memory, and its leak reporter would complain at exit. */
        vips_cache_set_max(0);
    }
}

int ss_slide_vips_init(void)
{
    pthread_once(&vips_once, vips_start);
    if (!vips_ok) return ss_error("slide", "libvips failed to start: %s", vips_error_buffer());
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* mpp resolution                                                                             */

/* Parses a whole string as a finite double; 0 on failure. */
static int parse_double(const char *str, double *out)
{
    if (!str || !*str) return 0;
    char *end;
    double v = strtod(str, &end);
    while (*end == ' ' || *end == '\t')
        end++;
    if (end == str || *end || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

static int mpp_sane(double v)
{
    return v >= SS_MPP_MIN && v <= SS_MPP_MAX;
}

/* Accumulates "key=value (why not)" notes for the refusal message. */
typedef struct {
    char text[600];
    size_t len;
} notes_t;

static void note(notes_t *n, const char *fmt, ...) SS_PRINTF(2, 3);
static void note(notes_t *n, const char *fmt, ...)
{
    if (n->len + 4 >= sizeof n->text) return;
    if (n->len) n->len += (size_t)snprintf(n->text + n->len, sizeof n->text - n->len, "; ");
    if (n->len >= sizeof n->text) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(n->text + n->len, sizeof n->text - n->len, fmt, ap);
    va_end(ap);
    if (k > 0) n->len += (size_t)k;
    if (n->len >= sizeof n->text) n->len = sizeof n->text - 1;
}

/* microns per unit for a TIFF-style resolution unit name; 0 if unusable. */
static double unit_microns(const char *unit)
{
    if (!unit) return 0;
    if (!strcasecmp(unit, "centimeter") || !strcasecmp(unit, "cm") || !strcmp(unit, "3"))
        return 1e4;
    if (!strcasecmp(unit, "inch") || !strcmp(unit, "2")) return 25400.0;
    if (!strcasecmp(unit, "millimeter") || !strcasecmp(unit, "mm")) return 1e3;
    if (!strcasecmp(unit, "micrometer") || !strcasecmp(unit, "um")) return 1.0;
    return 0;
}

/* Direct mpp keys: value is microns per pixel. */
static int try_mpp_keys(openslide_t *osr, const char *kx, const char *ky, double *mx, double *my,
                        notes_t *n)
{
    const char *vx = openslide_get_property_value(osr, kx);
    if (!vx) return 0;
    double x, y;
    if (!parse_double(vx, &x)) {
        note(n, "%s='%s' (not a number)", kx, vx);
        return 0;
    }
    if (!mpp_sane(x)) {
        note(n, "%s=%g (outside %g-%g um/px)", kx, x, SS_MPP_MIN, SS_MPP_MAX);
        return 0;
    }
    const char *vy = ky ? openslide_get_property_value(osr, ky) : NULL;
    if (!vy || !parse_double(vy, &y) || !mpp_sane(y)) y = x;
    *mx = x;
    *my = y;
    return 1;
}

/* Resolution keys: value is pixels per unit. */
static int try_res_keys(openslide_t *osr, const char *kx, const char *ky, const char *unit_key,
                        const char *default_unit, double *mx, double *my, notes_t *n)
{
    const char *vx = openslide_get_property_value(osr, kx);
    if (!vx) return 0;
    const char *unit = unit_key ? openslide_get_property_value(osr, unit_key) : NULL;
    if (!unit) unit = default_unit;
    double um = unit_microns(unit);
    double rx, ry;
    if (!parse_double(vx, &rx) || rx <= 0) {
        note(n, "%s='%s' (not a positive number)", kx, vx);
        return 0;
    }
    if (um == 0) {
        note(n, "%s=%s with resolution unit '%s' (no physical unit)", kx, vx,
             unit ? unit : "missing");
        return 0;
    }
    double x = um / rx;
    if (!mpp_sane(x)) {
        note(n, "%s=%s per %s gives %g um/px (outside %g-%g, a writer's default?)", kx, vx, unit, x,
             SS_MPP_MIN, SS_MPP_MAX);
        return 0;
    }
    const char *vy = ky ? openslide_get_property_value(osr, ky) : NULL;
    double y = x;
    if (vy && parse_double(vy, &ry) && ry > 0 && mpp_sane(um / ry)) y = um / ry;
    *mx = x;
    *my = y;
    return 1;
}

static int openslide_mpp(ss_slide_t *s, notes_t *n)
{
    openslide_t *o = s->osr;
    double x = 0, y = 0;
    const char *src = NULL;
    if (try_mpp_keys(o, "openslide.mpp-x", "openslide.mpp-y", &x, &y, n))
        src = "openslide.mpp-x";
    else if (try_mpp_keys(o, "aperio.MPP", NULL, &x, &y, n))
        src = "aperio.MPP";
    else if (try_mpp_keys(o, "openslide.mirax.MPP", NULL, &x, &y, n))
        src = "openslide.mirax.MPP";
    else if (try_mpp_keys(o, "mirax.LAYER_0_LEVEL_0_SECTION.MICROMETER_PER_PIXEL_X",
                          "mirax.LAYER_0_LEVEL_0_SECTION.MICROMETER_PER_PIXEL_Y", &x, &y, n))
        src = "mirax.LAYER_0_LEVEL_0_SECTION.MICROMETER_PER_PIXEL_X";
    else if (try_res_keys(o, "hamamatsu.XResolution", "hamamatsu.YResolution",
                          openslide_get_property_value(o, "hamamatsu.ResolutionUnit")
                              ? "hamamatsu.ResolutionUnit"
                              : "tiff.ResolutionUnit",
                          "centimeter", &x, &y, n))
        src = "hamamatsu.XResolution";
    else if (try_res_keys(o, "tiff.XResolution", "tiff.YResolution", "tiff.ResolutionUnit", NULL,
                          &x, &y, n))
        src = "tiff.XResolution";
    if (!src) return 0;
    s->info.mpp_x = x;
    s->info.mpp_y = y;
    snprintf(s->mpp_source, sizeof s->mpp_source, "%s", src);
    return 1;
}

/* libvips stores xres/yres in pixels per millimetre. Loaders fill in a default (1 px/mm, or the
 * 72 dpi that many writers store): those fall far outside the sane range, so the range check is
 * what separates a real calibration from a default. */
static int vips_mpp(ss_slide_t *s, VipsImage *in, notes_t *n)
{
    double xres = in->Xres, yres = in->Yres;
    if (xres <= 0) return 0;
    double x = 1000.0 / xres;
    if (!mpp_sane(x)) {
        note(n,
             "stored resolution %.4g px/mm = %.4g um/px (outside %g-%g: a default, not a "
             "calibration)",
             xres, x, SS_MPP_MIN, SS_MPP_MAX);
        return 0;
    }
    double y = yres > 0 && mpp_sane(1000.0 / yres) ? 1000.0 / yres : x;
    s->info.mpp_x = x;
    s->info.mpp_y = y;
    const char *src = "vips.xres";
    if (!strcmp(s->format, "pngload"))
        src = "png.pHYs";
    else if (!strcmp(s->format, "jpegload"))
        src = "jpeg.density";
    else if (!strcmp(s->format, "tiffload"))
        src = "tiff.XResolution";
    else if (!strcmp(s->format, "webpload"))
        src = "webp.exif";
    snprintf(s->mpp_source, sizeof s->mpp_source, "%s", src);
    return 1;
}

/* ---------------------------------------------------------------------------------------- */
/* backends                                                                                   */

static int read_magic(const char *path, unsigned char *buf, size_t n, size_t *got)
{
    struct stat st;
    if (stat(path, &st)) return ss_error_system("slide", "cannot open '%s'", path);
    if (!S_ISREG(st.st_mode)) return ss_error("slide", "'%s' is not a regular file", path);
    FILE *f = fopen(path, "rb");
    if (!f) return ss_error_system("slide", "cannot open '%s'", path);
    *got = fread(buf, 1, n, f);
    fclose(f);
    return 0;
}

static int open_openslide(ss_slide_t *s, const char *vendor)
{
    s->osr = openslide_open(s->path);
    if (!s->osr)
        return ss_error("slide", "'%s': OpenSlide recognises it as '%s' but cannot open it",
                        s->path, vendor);
    const char *err = openslide_get_error(s->osr);
    if (err)
        return ss_error("slide", "'%s': OpenSlide cannot open this %s slide: %s", s->path, vendor,
                        err);
    s->backend = SS_BACKEND_OPENSLIDE;
    s->format = strdup(vendor);
    int32_t nl = openslide_get_level_count(s->osr);
    if (nl < 1 || nl > 64) return ss_error("slide", "'%s': bad level count %d", s->path, nl);
    s->nlevels = nl;
    s->lw = calloc((size_t)nl, sizeof *s->lw);
    s->lh = calloc((size_t)nl, sizeof *s->lh);
    s->ld = calloc((size_t)nl, sizeof *s->ld);
    if (!s->format || !s->lw || !s->lh || !s->ld) return ss_error("slide", "out of memory");
    for (int l = 0; l < nl; l++) {
        openslide_get_level_dimensions(s->osr, l, &s->lw[l], &s->lh[l]);
        s->ld[l] = openslide_get_level_downsample(s->osr, l);
        if (s->lw[l] <= 0 || s->lh[l] <= 0 || !(s->ld[l] >= 1.0 - 1e-9))
            return ss_error("slide", "'%s': level %d has bad geometry %lldx%lld downsample %g",
                            s->path, l, (long long)s->lw[l], (long long)s->lh[l], s->ld[l]);
    }
    err = openslide_get_error(s->osr);
    if (err) return ss_error("slide", "'%s': OpenSlide: %s", s->path, err);
    const char *op = openslide_get_property_value(s->osr, "openslide.objective-power");
    double v;
    if (op && parse_double(op, &v) && v > 0) s->info.objective_power = v;
    return 0;
}

/* libvips loaders we accept as "plain images". Everything else libvips could load (PDF, SVG,
 * FITS, matrix, DICOM through ImageMagick, ...) is not a slide and is refused. */
static int plain_loader(const char *loader, const unsigned char *magic, size_t got)
{
    static const char *ok[] = {"VipsForeignLoadJpegFile", "VipsForeignLoadPngFile",
                               "VipsForeignLoadTiffFile", "VipsForeignLoadWebpFile"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (!strcmp(loader, ok[i])) return 1;
    /* BMP only comes through ImageMagick in this libvips: accept it by its signature. */
    if (!strcmp(loader, "VipsForeignLoadMagickFile") && got >= 2 && magic[0] == 'B' &&
        magic[1] == 'M')
        return 1;
    return 0;
}

static int is_tiff(const unsigned char *m, size_t got)
{
    return got >= 4 && ((m[0] == 'I' && m[1] == 'I' && (m[2] == 42 || m[2] == 43) && m[3] == 0) ||
                        (m[0] == 'M' && m[1] == 'M' && m[2] == 0 && (m[3] == 42 || m[3] == 43)));
}

static int open_vips(ss_slide_t *s, const unsigned char *magic, size_t got)
{
    if (ss_slide_vips_init()) return -1;
    const char *loader = vips_foreign_find_load(s->path);
    if (is_tiff(magic, got) && (!loader || strcmp(loader, "VipsForeignLoadTiffFile"))) {
        vips_error_clear();
        return ss_error("slide",
                        "'%s': a TIFF file that neither OpenSlide nor libvips can read "
                        "(truncated or corrupt?)",
                        s->path);
    }
    if (!loader) {
        vips_error_clear();
        return ss_error("slide",
                        "'%s': not a slide format OpenSlide 3.4 reads, nor a plain image "
                        "(PNG, JPEG, TIFF, WebP, BMP)",
                        s->path);
    }
    if (!plain_loader(loader, magic, got))
        return ss_error("slide",
                        "'%s': not a slide OpenSlide reads; libvips sees it as %s, which "
                        "is not a supported plain image (PNG, JPEG, TIFF, WebP, BMP)",
                        s->path, loader);
    /* Random access: tiles are requested out of the decoder's natural order. */
    VipsImage *in = vips_image_new_from_file(s->path, "access", VIPS_ACCESS_RANDOM, NULL);
    if (!in) {
        ss_error("slide", "'%s': libvips cannot read it: %s", s->path, vips_error_buffer());
        vips_error_clear();
        return -1;
    }
    const char *vl = NULL;
    if (vips_image_get_typeof(in, "vips-loader")) vips_image_get_string(in, "vips-loader", &vl);
    s->format = strdup(vl ? vl : loader);

    /* Normalise to 3-band uchar sRGB: flatten alpha over white, convert colourspace, cast. */
    VipsImage *a = in, *b = NULL;
    int fail = 0;
    if (vips_image_hasalpha(a)) {
        /* white = the format's maximum (255, 65535, ...) */
        double maxv = a->BandFmt == VIPS_FORMAT_USHORT ? 65535.0 : 255.0;
        VipsArrayDouble *bg = vips_array_double_newv(1, maxv);
        fail = vips_flatten(a, &b, "background", bg, NULL);
        vips_area_unref(VIPS_AREA(bg));
        g_object_unref(a);
        a = b;
    }
    if (!fail) {
        fail = vips_colourspace(a, &b, VIPS_INTERPRETATION_sRGB, NULL);
        g_object_unref(a);
        a = fail ? NULL : b;
    }
    if (!fail && a->BandFmt != VIPS_FORMAT_UCHAR) {
        fail = vips_cast_uchar(a, &b, NULL);
        g_object_unref(a);
        a = fail ? NULL : b;
    }
    if (!fail && a->Bands != 3) {
        if (a->Bands > 3) {
            fail = vips_extract_band(a, &b, 0, "n", 3, NULL);
        } else {
            fail = vips_bandjoin_const1(a, &b, 0, NULL); /* not expected after colourspace */
        }
        g_object_unref(a);
        a = fail ? NULL : b;
    }
    if (fail || !a || a->Bands != 3) {
        if (a) g_object_unref(a);
        ss_error("slide", "'%s': cannot convert to RGB: %s", s->path, vips_error_buffer());
        vips_error_clear();
        return -1;
    }
    s->img = a;
    s->region = vips_region_new(a);
    if (!s->region) {
        ss_error("slide", "'%s': libvips region: %s", s->path, vips_error_buffer());
        vips_error_clear();
        return -1;
    }
    s->backend = SS_BACKEND_VIPS;
    s->nlevels = 1;
    s->lw = calloc(1, sizeof *s->lw);
    s->lh = calloc(1, sizeof *s->lh);
    s->ld = calloc(1, sizeof *s->ld);
    if (!s->format || !s->lw || !s->lh || !s->ld) return ss_error("slide", "out of memory");
    s->lw[0] = a->Xsize;
    s->lh[0] = a->Ysize;
    s->ld[0] = 1.0;
    return 0;
}

ss_slide_t *ss_slide_open(const char *path, double mpp_override, const char *override_source)
{
    if (!path || !*path) {
        ss_error("slide", "empty slide path");
        return NULL;
    }
    unsigned char magic[132];
    size_t got = 0;
    if (read_magic(path, magic, sizeof magic, &got)) return NULL;
    if (got == 0) {
        ss_error("slide", "'%s': empty file", path);
        return NULL;
    }
    if (got >= 132 && !memcmp(magic + 128, "DICM", 4)) {
        ss_error("slide",
                 "'%s': DICOM file; DICOM whole-slide images need OpenSlide >= 4.0 and "
                 "this build has OpenSlide %s. Convert it to a pyramidal TIFF first.",
                 path, openslide_get_version());
        return NULL;
    }
    ss_slide_t *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        ss_error("slide", "out of memory");
        return NULL;
    }
    const char *vendor = openslide_detect_vendor(path);
    int rc = vendor ? open_openslide(s, vendor) : open_vips(s, magic, got);
    if (rc) {
        ss_slide_destroy(&s);
        return NULL;
    }

    notes_t n = {{0}, 0};
    int have = s->backend == SS_BACKEND_OPENSLIDE ? openslide_mpp(s, &n) : vips_mpp(s, s->img, &n);
    if (have) {
        double ov = mpp_override;
        if (ov > 0 && fabs(ov - s->info.mpp_x) > 0.1 * s->info.mpp_x)
            ss_warn("slide '%s': the slide says %g um/px (%s) but the %s says %g; using the "
                    "slide's value",
                    path, s->info.mpp_x, s->mpp_source,
                    override_source ? override_source : "override", ov);
    } else if (mpp_override > 0) {
        if (!mpp_sane(mpp_override)) {
            ss_error("slide", "'%s': mpp override %g from %s is outside %g-%g um/px", path,
                     mpp_override, override_source ? override_source : "override", SS_MPP_MIN,
                     SS_MPP_MAX);
            ss_slide_destroy(&s);
            return NULL;
        }
        s->info.mpp_x = s->info.mpp_y = mpp_override;
        snprintf(s->mpp_source, sizeof s->mpp_source, "%s",
                 override_source ? override_source : "override");
    } else {
        ss_error("slide",
                 "'%s': no usable microns-per-pixel in the slide (%s); refusing to guess. "
                 "Supply it with --mpp M or the manifest's mpp column.",
                 path, n.len ? n.text : "no resolution metadata");
        ss_slide_destroy(&s);
        return NULL;
    }

    s->info.path = s->path;
    s->info.backend = s->backend == SS_BACKEND_OPENSLIDE ? "openslide" : "vips";
    s->info.format = s->format;
    s->info.width = s->lw[0];
    s->info.height = s->lh[0];
    s->info.level_count = s->nlevels;
    s->info.mpp_source = s->mpp_source;
    return s;
}

void ss_slide_destroy(ss_slide_t **sp)
{
    if (!sp || !*sp) return;
    ss_slide_t *s = *sp;
    if (s->osr) openslide_close(s->osr);
    if (s->region) g_object_unref(s->region);
    if (s->img) g_object_unref(s->img);
    free(s->argb);
    free(s->lw);
    free(s->lh);
    free(s->ld);
    free(s->format);
    free(s->path);
    free(s);
    *sp = NULL;
}

const ss_slide_info_t *ss_slide_info(const ss_slide_t *s)
{
    return &s->info;
}

int ss_slide_level(const ss_slide_t *s, int level, int64_t *w, int64_t *h, double *ds)
{
    if (level < 0 || level >= s->nlevels)
        return ss_error("slide", "'%s': level %d out of range (0-%d)", s->path, level,
                        s->nlevels - 1);
    if (w) *w = s->lw[level];
    if (h) *h = s->lh[level];
    if (ds) *ds = s->ld[level];
    return 0;
}

int ss_slide_best_level(const ss_slide_t *s, double target_mpp)
{
    /* Finer-or-equal in both axes: use the smaller of the two level-0 scale factors. */
    double f = fmin(target_mpp / s->info.mpp_x, target_mpp / s->info.mpp_y);
    int best = 0;
    for (int l = 1; l < s->nlevels; l++)
        if (s->ld[l] <= f * 1.01 && s->ld[l] > s->ld[best]) best = l;
    return best;
}

int ss_slide_is_dead(const ss_slide_t *s)
{
    return s->dead;
}
