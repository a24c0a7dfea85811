/* slidestream — slide reading, resolution handling, foreground mask and tiling (lib/slide).
 *
 * One handle per slide. Vendor formats (Aperio SVS incl. JPEG 2000, Hamamatsu NDPI, generic tiled
 * TIFF, MIRAX, ... whatever OpenSlide 3.4 reads) go through OpenSlide; plain images (PNG, JPEG,
 * TIFF without pyramid, WebP, BMP) go through libvips. The format is detected from the content
 * (openslide_detect_vendor, then libvips' loader sniffing), never from the file name.
 *
 * Conventions
 *  - Coordinates are level-0 pixels, x to the right, y down. Integer origins.
 *  - Every pixel buffer is RGB uint8, interleaved, row-major: rgb[(y * w + x) * 3 + c].
 *    RGBA sources are composited over white; anything outside the slide reads as white.
 *  - Resolution is in microns per pixel (mpp). A read "at target mpp t" samples the slide so that
 *    one output pixel covers t/mpp_x by t/mpp_y level-0 pixels (area averaging when shrinking).
 *  - Functions return 0 / -1 (or NULL) and append a message to the ss_error buffer that names
 *    the slide file and, for reads, the region (x, y, w, h at level-0, level). After a failure
 *    the caller may go on with the next tile or the next slide.
 *
 * Ownership: ss_slide_t owns its backend handle; ss_tiler_t, ss_mask_t and ss_thumb_t keep a
 * borrowed pointer to the slide (or none) and must be destroyed before it. A handle is used by one
 * thread at a time; open one handle per thread to read a slide in parallel.
 *
 * Typical use (errors omitted):
 *
 *     ss_slide_t *s = ss_slide_open(path, manifest_mpp, "manifest");  // 0 = no override
 *     ss_tiling_opts_t o; ss_tiling_opts_default(&o); o.target_mpp = 0.5; o.tile_px = 512;
 *     ss_tiler_t *t = ss_tiler_new(s, &o);
 *     uint8_t *rgb = malloc((size_t)o.tile_px * o.tile_px * 3);      // [T][T][3]
 *     ss_tile_t tile;
 *     while (ss_tiler_next(t, &tile) == 1) {
 *         if (ss_tiler_read(t, &tile, rgb)) { report ss_error_last(); ss_error_clear(); continue; }
 *         ... detect cells; keep a cell iff ss_tile_owns(&tile, cx, cy) ...
 *     }
 *     ss_tiler_destroy(&t); ss_slide_destroy(&s);
 */
#ifndef SLIDESTREAM_SLIDE_H
#define SLIDESTREAM_SLIDE_H

#include <stdint.h>

/* Range of microns per pixel we believe. Anything outside (e.g. 72 dpi = 352.8 µm/px, the
 * default many writers store, or resolution 1) is treated as "not stored". */
#define SS_MPP_MIN 0.05
#define SS_MPP_MAX 20.0

/* ------------------------------------------------------------------------------------------ */
/* Slide handle                                                                                */

typedef struct ss_slide ss_slide_t;

/* Read-only facts about an open slide; valid as long as the slide. */
typedef struct {
    const char *path;       /* as given to ss_slide_open */
    const char *backend;    /* "openslide" or "vips" */
    const char *format;     /* OpenSlide vendor ("aperio", "hamamatsu", "generic-tiff", "mirax",
                               ...) or the libvips loader ("jpegload", "pngload", "tiffload", ...) */
    int64_t width, height;  /* level 0, pixels */
    int level_count;        /* >= 1 (plain images: 1) */
    double mpp_x, mpp_y;    /* microns per level-0 pixel, always within [SS_MPP_MIN, SS_MPP_MAX] */
    const char *mpp_source; /* where mpp came from: "openslide.mpp-x", "aperio.MPP",
                               "mirax.LAYER_0_LEVEL_0_SECTION.MICROMETER_PER_PIXEL_X",
                               "hamamatsu.XResolution", "tiff.XResolution", "png.pHYs",
                               "jpeg.density", or the caller's override_source ("manifest",
                               "flag", ...) */
    double objective_power; /* openslide.objective-power, 0 when unknown (informative only) */
} ss_slide_info_t;

/* Opens `path` (any characters in the name are fine: spaces, parentheses, ...).
 * mpp: the slide's own metadata wins when it holds a sane value; otherwise `mpp_override`
 * (> 0; 0 = none) is used and `override_source` ("flag", "manifest"; NULL means "override") is
 * recorded. A slide with neither is refused with a message naming the file and how to supply
 * an mpp. When both exist and differ by more than 10% a warning is logged and metadata is kept.
 * DICOM files are refused with a clear message (OpenSlide 3.4 has no DICOM support), as is any
 * file that neither OpenSlide nor libvips' plain-image loaders recognise.
 * Returns NULL and sets ss_error on failure. */
ss_slide_t *ss_slide_open(const char *path, double mpp_override, const char *override_source);
void ss_slide_destroy(ss_slide_t **s);

const ss_slide_info_t *ss_slide_info(const ss_slide_t *s);

/* Level geometry: dimensions in that level's pixels and its downsample relative to level 0.
 * Returns -1 (ss_error) for a level out of range. */
int ss_slide_level(const ss_slide_t *s, int level, int64_t *width, int64_t *height,
                   double *downsample);

/* The level a read at `target_mpp` uses: the coarsest level whose resolution is finer than or
 * equal to the target (downsample <= target/mpp * 1.01), so resampling only ever shrinks,
 * except when the target is finer than level 0 (then level 0, enlarged). */
int ss_slide_best_level(const ss_slide_t *s, double target_mpp);

/* Reads a w x h RGB region at `target_mpp` whose top-left output pixel starts at level-0 (x0, y0).
 * Output pixel (i, j) covers level-0 [x0 + i*sx, x0 + (i+1)*sx) x [y0 + j*sy, y0 + (j+1)*sy),
 * sx = target_mpp / mpp_x, sy = target_mpp / mpp_y, area-averaged from ss_slide_best_level().
 * Parts outside the slide are white. rgb_out: [h][w][3], caller-allocated.
 * On failure returns -1 with "slide 'PATH': cannot read region x=.. y=.. w=.. h=.. level=..: why".
 * OpenSlide errors are sticky per handle: after a failed read the handle is reopened so later
 * regions can still be read; after 16 consecutive failed reads, or if reopening fails, the slide
 * is marked dead and every later read fails at once saying so. */
int ss_slide_read_region(ss_slide_t *s, int64_t x0, int64_t y0, double target_mpp, int w, int h,
                         uint8_t *rgb_out);

/* As ss_slide_read_region, but at a pyramid level's own resolution (no resampling): reads
 * w x h level pixels whose top-left is at level-0 (x0, y0). */
int ss_slide_read_level(ss_slide_t *s, int level, int64_t x0, int64_t y0, int w, int h,
                        uint8_t *rgb_out);

/* 1 after the handle died (see above), else 0. */
int ss_slide_is_dead(const ss_slide_t *s);

/* ------------------------------------------------------------------------------------------ */
/* Thumbnail (pictures, overlays)                                                              */

typedef struct {
    int width, height;
    uint8_t *rgb;            /* [height][width][3] */
    double mpp;              /* microns per thumbnail pixel (x; y may differ for anisotropic) */
    double scale_x, scale_y; /* level-0 pixels per thumbnail pixel: level0_x = tx * scale_x */
} ss_thumb_t;

/* Whole-slide RGB picture whose longer side is at most `max_size` pixels (aspect kept), read from
 * the coarsest suitable level with area averaging. Memory: the picture plus a bounded strip. */
ss_thumb_t *ss_slide_thumbnail(ss_slide_t *s, int max_size);
/* Same, at a given resolution (microns per thumbnail pixel). */
ss_thumb_t *ss_slide_thumbnail_mpp(ss_slide_t *s, double mpp);
void ss_thumb_destroy(ss_thumb_t **t);

/* ------------------------------------------------------------------------------------------ */
/* Foreground mask: what is not empty glass                                                    */

/* Per mask pixel 1 = foreground. Computed from a thumbnail at mask_mpp (default ~8 µm/px, made
 * coarser for huge slides and finer for tiny images): background brightness is estimated per
 * block (robust to uneven illumination), a pixel is foreground when it is clearly saturated or
 * clearly darker than the local glass (brighter, for dark-field/fluorescence slides), then the
 * mask is dilated by one pixel so an isolated cell keeps its tile. Sparse cells on a smear are
 * kept: there is no contour filtering or minimum area. */
typedef struct {
    int width, height;
    uint8_t *data;                     /* [height][width], 0 or 1 */
    double mpp;                        /* microns per mask pixel (x) */
    double scale_x, scale_y;           /* level-0 pixels per mask pixel */
    int64_t slide_width, slide_height; /* level-0 extent the mask covers */
    int64_t foreground;                /* number of 1 pixels */
    int dark_field;                    /* 1 when the background was found dark (fluorescence) */
} ss_mask_t;

/* mask_mpp <= 0 picks the default. */
ss_mask_t *ss_mask_new(ss_slide_t *s, double mask_mpp);
void ss_mask_destroy(ss_mask_t **m);

/* 1 when any foreground mask pixel intersects the level-0 rectangle [x, x+w) x [y, y+h). */
int ss_mask_any(const ss_mask_t *m, int64_t x, int64_t y, int64_t w, int64_t h);

/* Writes the mask as a QuPath-compatible GeoJSON FeatureCollection in level-0 pixel coordinates:
 * one Feature, properties {objectType "annotation", classification {name "Foreground", color}},
 * geometry a MultiPolygon traced from the mask's pixel boundaries (outer rings with their holes).
 * Written to PATH.tmp and renamed. */
int ss_mask_write_geojson(const ss_mask_t *m, const char *path);

/* ------------------------------------------------------------------------------------------ */
/* Tiling                                                                                      */

typedef struct {
    double target_mpp; /* microns per tile pixel; <= 0: the slide's level-0 mpp (mpp_x) */
    int tile_px;       /* T: tiles are T x T target pixels (default 512) */
    double overlap_um; /* overlap between neighbouring tiles in microns, >= the largest cell
                          diameter (default 20); converted to target pixels, rounded up */
    int overlap_px;    /* > 0: overlap in target pixels, overrides overlap_um */
    int use_mask;      /* 1 (default): skip tiles whose core holds no foreground */
    double mask_mpp;   /* mask resolution, <= 0 = default */
} ss_tiling_opts_t;

void ss_tiling_opts_default(ss_tiling_opts_t *o);

/* One tile. Its pixels are T x T at target mpp; tile pixel (i, j) covers level-0
 * [x0 + i*scale_x, x0 + (i+1)*scale_x) x [y0 + j*scale_y, ...).
 * The CORE is the part this tile is responsible for: the cores of all grid tiles partition the
 * slide's level-0 area exactly (no overlap, no gap), so "the tile whose core contains a cell's
 * centre owns the cell" gives every cell exactly one owner. Each tile extends overlap/2 target
 * pixels (to within 1.5 level-0 pixels of rounding) beyond its core on every side, so a cell of
 * diameter <= overlap whose centre is in the core lies inside the tile. Beyond the slide's edge
 * the tile is white. With overlap 0, core_px_* may exceed [0, T] by less than one pixel. */
typedef struct {
    int64_t index;  /* position in the full row-major grid (skipped tiles included) */
    int col, row;   /* grid position */
    int64_t x0, y0; /* level-0 position of tile pixel (0,0)'s top-left corner; may be < 0 */
    int size;       /* T */
    double target_mpp;
    double scale_x, scale_y;                /* level-0 pixels per tile pixel */
    int64_t core_x, core_y, core_w, core_h; /* core, level-0 integer rectangle */
    double core_px_x0, core_px_y0, core_px_x1,
        core_px_y1; /* core in tile pixels: [x0,x1)x[y0,y1) */
} ss_tile_t;

/* Level-0 position of a point given in tile pixels (continuous: pixel i spans [i, i+1)). */
void ss_tile_to_level0(const ss_tile_t *t, double px, double py, double *x, double *y);

/* 1 iff the point (tile pixels, continuous) lies in this tile's core. The test is done in level-0
 * coordinates against the integer core rectangle, so two tiles never both own one point. */
int ss_tile_owns(const ss_tile_t *t, double px, double py);

/* Counts for one tiler. */
typedef struct {
    int cols, rows;        /* grid */
    int64_t grid;          /* cols * rows */
    int64_t kept;          /* tiles that will be / were emitted (known right after _new) */
    int64_t skipped_empty; /* grid tiles with no foreground in their core */
    int64_t emitted;       /* tiles returned by ss_tiler_next so far */
    int overlap_px;        /* effective overlap in target pixels */
    int stride_px;         /* tile_px - overlap_px: core size in target pixels */
    double target_mpp;
} ss_tiler_stats_t;

typedef struct ss_tiler ss_tiler_t;

/* Plans the grid (and computes the mask when opts->use_mask). Memory: O(1) plus the mask; tiles
 * are generated on the fly. Fails (NULL + ss_error) on bad options, e.g. overlap >= tile size, or
 * when the mask cannot be computed (an unreadable slide). `opts` NULL = defaults. */
ss_tiler_t *ss_tiler_new(ss_slide_t *s, const ss_tiling_opts_t *opts);
void ss_tiler_destroy(ss_tiler_t **t);

/* Next kept tile in row-major order (the slide's storage order, so reads are sequential).
 * Returns 1 with *tile filled, 0 when done. */
int ss_tiler_next(ss_tiler_t *t, ss_tile_t *tile);

/* Restarts iteration from the first tile. */
void ss_tiler_rewind(ss_tiler_t *t);

/* The grid tile (col, row), whether kept or not; -1 when out of range. */
int ss_tiler_tile(const ss_tiler_t *t, int col, int row, ss_tile_t *tile);

/* Reads the tile's pixels: rgb_out [T][T][3], white beyond the slide. */
int ss_tiler_read(ss_tiler_t *t, const ss_tile_t *tile, uint8_t *rgb_out);

void ss_tiler_stats(const ss_tiler_t *t, ss_tiler_stats_t *st);

/* The mask the tiler uses (NULL when use_mask was 0); owned by the tiler. */
const ss_mask_t *ss_tiler_mask(const ss_tiler_t *t);

#endif
