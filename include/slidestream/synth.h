/* slidestream — synthetic blood-smear slides and single-cell image sets.
 *
 * Everything here is a pure function of the options and the seed: the same options give the same
 * cells, the same truth CSV bytes and the same pixels, whatever region order a reader uses.
 *
 * The slide is laid out in fixed 40 µm blocks; each block's cells come from a hash of (seed,
 * block), so any region is rendered from the blocks around it alone and a gigapixel slide is
 * written in bounded memory (pixels are generated per region while libvips streams the TIFF).
 *
 * Classes: LYT (normal lymphocyte) and the abnormal nucleated classes BLA (blast), NGS
 * (segmented neutrophil), EOS (eosinophil), MON (monocyte); RBC (red cell) and PLT (platelet)
 * are not nucleated and only appear in the truth CSV as distractors.
 *
 * Difficulty (0..1) brings the abnormal classes' look toward the normal one's: at 0 each class
 * looks as it always did (a glance tells them apart); up to 0.5, size, outline, nucleus size,
 * colours, chromatin texture, granules and vacuoles are drawn ever closer to the normal class's
 * distributions; from 0.5 to 1 what is left, each class's own sign (lobes, a notch, nucleoli),
 * fades to a fifth of its strength. Normal cells never change.
 */
#ifndef SLIDESTREAM_SYNTH_H
#define SLIDESTREAM_SYNTH_H

#include <stdint.h>

typedef enum {
    SS_SYNTH_LYT = 0, /* normal */
    SS_SYNTH_BLA,
    SS_SYNTH_NGS,
    SS_SYNTH_EOS,
    SS_SYNTH_MON,
    SS_SYNTH_RBC,
    SS_SYNTH_PLT,
    SS_SYNTH_NCLASSES
} ss_synth_class_t;

/* Nucleated classes are the first SS_SYNTH_NNUCLEATED codes; of those, all but LYT are abnormal. */
#define SS_SYNTH_NNUCLEATED 5

/* The default difficulty of both generators, chosen by measurement: on 1 500 generated cells a
 * linear probe separates normal from abnormal with ROC-AUC 0.80 on a random-init ResNet-18's
 * pooled features (1.00 at difficulty 0; 0.825 on real Chula red cells) and 0.98 on a supervised
 * encoder's (test synth.difficulty; the table is in `slidestream synth cells --help`). */
#define SS_SYNTH_DIFFICULTY_DEFAULT 0.625

/* "LYT", "BLA", ...; NULL when out of range. */
const char *ss_synth_class_code(ss_synth_class_t c);

typedef struct {
    int64_t width, height;    /* level-0 pixels */
    double mpp;               /* microns per pixel (default 0.25) */
    double witness_rate;      /* share of abnormal among nucleated cells (default 0.05) */
    uint64_t seed;            /* default 1 */
    double nucleated_per_mm2; /* mean nucleated-cell density (default 200; real smears have less) */
    int tile_size;            /* TIFF tile edge, 256 or 512 (default 256) */
    int quality;              /* JPEG quality (default 90) */
    double difficulty;        /* abnormal look toward normal, 0..1 (SS_SYNTH_DIFFICULTY_DEFAULT) */
} ss_synth_slide_opts_t;

void ss_synth_slide_opts_default(ss_synth_slide_opts_t *o);

/* One ground-truth cell: level-0 centre and radius in pixels. */
typedef struct {
    ss_synth_class_t cls;
    int64_t x, y;
    double radius;
} ss_synth_cell_t;

/* Calls fn for every cell of the slide (all classes, centres inside the slide) in block order;
 * stops and returns -1 when fn returns non-zero. Memory is O(1) in the slide size. */
int ss_synth_slide_cells(const ss_synth_slide_opts_t *o,
                         int (*fn)(const ss_synth_cell_t *cell, void *user), void *user);

/* Renders the level-0 region [x, x+w) × [y, y+h) into rgb (h, w, 3) uint8, interleaved.
 * The region may extend past the slide (those pixels are rendered as glass). */
int ss_synth_slide_render(const ss_synth_slide_opts_t *o, int64_t x, int64_t y, int w, int h,
                          uint8_t *rgb);

/* Writes the slide as a tiled, pyramidal, JPEG-compressed TIFF (BigTIFF when large) with the
 * resolution in the TIFF tags (OpenSlide reports it as openslide.mpp-x/y), under a temporary
 * name renamed when complete; and, when truth_csv is not NULL, the truth CSV
 * `class,x,y,radius` listing every cell (nucleated cells, RBC and PLT). */
int ss_synth_slide_write(const ss_synth_slide_opts_t *o, const char *tiff_path,
                         const char *truth_csv);

typedef struct {
    int per_class;     /* images per nucleated class */
    int size;          /* crop edge in pixels (default 96) */
    double mpp;        /* 0 = field of view of 38.4 µm whatever the size (0.4 µm/px at 96 px) */
    uint64_t seed;     /* default 1 */
    double difficulty; /* abnormal look toward normal, 0..1 (SS_SYNTH_DIFFICULTY_DEFAULT) */
} ss_synth_cells_opts_t;

void ss_synth_cells_opts_default(ss_synth_cells_opts_t *o);

/* Renders one centred single-cell crop of class cls (nucleated only), image `index` of the set,
 * into rgb (size, size, 3). */
int ss_synth_cell_render(const ss_synth_cells_opts_t *o, ss_synth_class_t cls, int index,
                         uint8_t *rgb);

/* Writes out_dir/<CODE>/<CODE>_<index:05d>.png for every nucleated class (out_dir is created). */
int ss_synth_cells_write(const ss_synth_cells_opts_t *o, const char *out_dir);

#endif
