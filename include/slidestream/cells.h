/* slidestream — cell detection and cropping (the cell-cropper stage's library).
 *
 * Finds cells in bright-field Romanowsky-type smears (May-Grünwald-Giemsa, Wright, Giemsa) held
 * in memory as packed 8-bit RGB, at a known microns-per-pixel. Every size parameter is in
 * microns and is converted through the image's mpp, so one parameter set serves any
 * magnification. Two modes:
 *   - SS_CELLS_NUCLEATED: nucleated (white) cells; red cells, platelets and debris rejected by
 *     size, shape and colour; lobulated nuclei grouped into one cell.
 *   - SS_CELLS_ALL: every cell (red and white), touching cells split.
 *
 * Ownership: lists own their arrays (ss_cell_list_free); images passed in are borrowed.
 * Coordinates are image pixels (x right, y down) unless a function says level 0.
 */
#ifndef SLIDESTREAM_CELLS_H
#define SLIDESTREAM_CELLS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { SS_CELLS_NUCLEATED = 0, SS_CELLS_ALL = 1 } ss_cells_mode_t;

typedef enum { SS_CELL_NUCLEATED = 1, SS_CELL_RED = 2 } ss_cell_kind_t;

/* Default crop: 96 px at 0.25 µm/px = a 24 µm field, room for a 20 µm white cell and a margin
 * of context; 96 divides into ResNet's 32× downsampling as a 3×3 final map. */
#define SS_CELLS_DEFAULT_CROP 96
#define SS_CELLS_DEFAULT_TARGET_MPP 0.25

typedef struct {
    ss_cells_mode_t mode;
    /* Nucleus stain: log(B/G) relative to the background's, i.e. the optical density in green
     * minus that in blue. Nuclei absorb green much more than blue in every Romanowsky variant,
     * red cells about equally; intensity (illumination, vignetting) cancels in the ratio. */
    double nucleus_threshold; /* on that channel; nuclei ≈ 0.5, red cells ≤ 0.15 */
    double nucleus_min_um2;   /* a nucleated cell's stained area at least (platelets ≈ 5–10) */
    double nucleus_max_um2;   /* larger stained blobs are clumps or artefacts */
    double nucleus_min_mean;  /* mean nucleus-stain over the cell's nucleus pixels (platelets
                                 stain paler than nuclei) */
    double nucleus_min_fill;  /* stained fraction of the grouped object: granular platelet clumps
                                 fill it sparsely, nuclei densely */
    double lobe_gap_um;       /* nucleus fragments closer than this belong to one cell */
    double split_depth_um;    /* touching objects split when each bulges this much (h-maxima) */
    double fragment_max_um2;  /* nucleus pieces smaller than this join a larger neighbour ... */
    double fragment_reach_um; /* ... whose centre lies within this distance */
    /* SS_CELLS_ALL: a cell is any stained object against the pale background. */
    double cell_threshold; /* on green optical density; 0 = automatic (Otsu, clamped) */
    double cell_min_um2;   /* below: platelets, debris */
    double cell_max_um2;   /* above: unsplit clumps are still reported (capped at this) */
    double hole_max_um2;   /* red-cell central pallor filled up to this size */
    /* Glass colour (RGB). All zero: estimated per image from its brightest pixels. Set it (with
     * ss_cells_calibrate on a thumbnail) when detecting tile by tile, so every tile sees the
     * same reference and tiles padded beyond the slide do not skew it. */
    double background[3];
} ss_cells_params_t;

void ss_cells_params_default(ss_cells_params_t *p, ss_cells_mode_t mode);

/* Fixes the per-slide references from a picture of the whole slide (a thumbnail): the glass
 * colour and, in SS_CELLS_ALL mode when cell_threshold is 0, the cell threshold. */
int ss_cells_calibrate(const uint8_t *rgb, int w, int h, ss_cells_params_t *p);

typedef struct {
    double x, y; /* centre */
    int bbox_x, bbox_y, bbox_w, bbox_h;
    double area;         /* px²: red cells the whole object; nucleated cells the grouped
                            nucleus (+ a lobe_gap/2 rim), which matched BCCD's WBC boxes
                            (mean IoU ≈ 0.8) better than a cytoplasm estimate did */
    double nucleus_area; /* px² of nucleus stain (0 for red cells) */
    double stain;        /* mean nucleus-stain value over those pixels */
    ss_cell_kind_t kind;
    int touches_border; /* the object reaches the image edge (may be cut) */
} ss_cell_t;

typedef struct {
    ss_cell_t *cells;
    size_t n, cap;
} ss_cell_list_t;

int ss_cell_list_push(ss_cell_list_t *l, const ss_cell_t *c);
void ss_cell_list_free(ss_cell_list_t *l);

/* Detect cells in rgb (h, w, 3) packed uint8 at `mpp` µm/px; appends to `out` in image pixels,
 * sorted by (y, x). */
int ss_cells_detect(const uint8_t *rgb, int w, int h, double mpp, const ss_cells_params_t *p,
                    ss_cell_list_t *out);

/* A tile of a larger image: where its pixel (0,0) lies in level 0, how many level-0 pixels one
 * tile pixel spans, and the core rectangle (level 0) that this tile owns. */
typedef struct {
    double x0, y0;
    double scale;
    int64_t core_x, core_y, core_w, core_h;
} ss_cells_tile_t;

/* As ss_cells_detect on one tile, appending only cells whose centre lies in the core
 * (half-open [core_x, core_x + core_w)), with every coordinate and area in level-0 pixels.
 * Cores that partition the slide therefore never duplicate a cell. */
int ss_cells_detect_tile(const uint8_t *rgb, int w, int h, double mpp, const ss_cells_tile_t *tile,
                         const ss_cells_params_t *p, ss_cell_list_t *out);

/* Maps a level-0 point into tile pixels (inverse of the tile's placement). */
void ss_cells_tile_to_pixels(const ss_cells_tile_t *t, double lx, double ly, double *px,
                             double *py);

/* One size×size RGB crop centred on (cx, cy); pixels outside the image repeat the edge.
 * out holds size*size*3 bytes. */
void ss_cells_crop(const uint8_t *rgb, int w, int h, double cx, double cy, int size, uint8_t *out);

/* Drawing into an RGB buffer (clipped to it). */
void ss_draw_circle(uint8_t *rgb, int w, int h, double cx, double cy, double r, int thickness,
                    const uint8_t color[3]);
void ss_draw_rect(uint8_t *rgb, int w, int h, int x, int y, int bw, int bh, int thickness,
                  const uint8_t color[3]);

/* Draws each cell (image pixel coordinates scaled by `scale`, e.g. thumbnail/level-0):
 * nucleated cells in blue circles, red cells in green. */
void ss_cells_draw_overlay(uint8_t *rgb, int w, int h, const ss_cell_t *cells, size_t n,
                           double scale);

/* Gallery: n crops of size×size (packed one after another) tiled on a grid of `cols` columns
 * with a 2-px white gutter, saved as PNG (or any format libvips writes, by suffix). */
int ss_cells_gallery_save(const char *path, const uint8_t *crops, size_t n, int size, int cols);

/* QuPath-compatible GeoJSON: a FeatureCollection with one Polygon per cell (a 16-gon inscribed
 * in the bounding box, level-0 pixels), objectType "detection", classification
 * "Nucleated"/"Red cell", measurements area_um2 (mpp > 0) and area_px. `source` (may be NULL)
 * goes in each feature's properties. The writer streams: begin, add per image, end. */
int ss_geojson_begin(FILE *f);
int ss_geojson_add_cells(FILE *f, const ss_cell_t *cells, size_t n, double mpp, const char *source,
                         int *first);
int ss_geojson_end(FILE *f);

/* Image I/O through libvips (initialised on first use). Loaders sniff the content, so a PNG
 * named .jpg loads. Result: packed RGB, alpha flattened on white, caller frees *rgb. */
int ss_image_load_rgb(const char *path, uint8_t **rgb, int *w, int *h);
int ss_image_save_rgb(const char *path, const uint8_t *rgb, int w, int h);

/* Where a cell folder's crops came from: root/cells.csv (written by `slidestream cells
 * from-labels`; columns path, relative to root, and source, the image cropped). Sources are
 * numbered 0..count-1 in byte order of their names, so that studies can keep train and test
 * cells from disjoint images. Loading gives *out NULL and 0 when there is no cells.csv or it has
 * no path and source columns; -1 (naming file:line) for a file that cannot be read, a row without
 * both, or a path listed twice. */
typedef struct ss_cell_sources ss_cell_sources_t;

int ss_cell_sources_load(const char *root, ss_cell_sources_t **out);
/* The source index of the crop at rel ("<CLASS>/<file>"), -1 when unlisted (or s is NULL). */
int ss_cell_sources_find(const ss_cell_sources_t *s, const char *rel);
size_t ss_cell_sources_count(const ss_cell_sources_t *s);
const char *ss_cell_sources_name(const ss_cell_sources_t *s, int index); /* NULL out of range */
void ss_cell_sources_destroy(ss_cell_sources_t **s);

/* Pre-cropped cell images as a stream: root/<CLASS>/<image>.{png,jpg,jpeg,bmp,tif,tiff}, one
 * folder per class code, visited in sorted order (classes, then files, byte order). */
typedef struct ss_cell_folder ss_cell_folder_t;

typedef struct {
    const char *class_code; /* the folder name */
    const char *path;
    uint8_t *rgb; /* (h, w, 3); owned by the stream, valid until the next call */
    int w, h;
    size_t index;       /* position in the sorted listing */
    const char *source; /* the image it was cropped from (root/cells.csv), or NULL */
    int source_index;   /* that source's number (ss_cell_sources_*), or -1 */
} ss_cell_item_t;

int ss_cell_folder_open(const char *root, ss_cell_folder_t **out);
size_t ss_cell_folder_count(const ss_cell_folder_t *f);
/* The folder's cells.csv sources, NULL when it has none; owned by the stream. */
const ss_cell_sources_t *ss_cell_folder_sources(const ss_cell_folder_t *f);
/* 1: *item filled; 0: end; -1: this file failed (error names it) — the next call goes on. */
int ss_cell_folder_next(ss_cell_folder_t *f, ss_cell_item_t *item);
void ss_cell_folder_destroy(ss_cell_folder_t **f);

#endif
