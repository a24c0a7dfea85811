/* slidestream — pictures and GeoJSON of a predicted bag (the aggregator's results a person looks
 * at). Called per bag from ss_mil_predict's bag_done callback, while the bag's cells are loaded.
 *
 * Colours: every picture maps a cell's attention RANK to viridis (perceptually uniform, lightness
 * increasing): t = 1 for the most attended cell (rank 1, yellow), t = 0 for the least (rank n,
 * dark violet), linear in rank between. Rank rather than attention / max because attention is a
 * softmax over the bag and usually peaked: by value, all but a few cells would share one colour.
 * The colour bar beside a heatmap is labelled with the ranks and attentions at its ends.
 *
 * Where a bag's pixels come from (ss_mil_sources_t):
 *  - a slide: the bag's id is a slide_id of a manifest (slide_id,path,label[,split,mpp]: the file
 *    the tiler read); cells are cut from the slide at their level-0 centres, the crop size and
 *    resolution being the cache's (patch_size at target_mpp);
 *  - a folder of cell images (simulated bags): a bag_cells.csv (bag_id,cell_id,path,...) from
 *    `bags simulate`, the bag's k-th row being its cell with id k. Such a bag has no slide, so
 *    its "heatmap" is the grid of its cells in rank order, each framed in its colour.
 *
 * All writers write PATH.tmp and rename it when complete; they return 0, or -1 with an ss_error
 * line (domain "mil") naming the file or the bag.
 */
#ifndef SLIDESTREAM_MIL_RESULTS_H
#define SLIDESTREAM_MIL_RESULTS_H

#include <stdint.h>

#include "slidestream/mil_train.h"

/* viridis at t in [0, 1] (clamped). */
void ss_mil_colormap(double t, uint8_t rgb[3]);

typedef struct ss_mil_sources ss_mil_sources_t;

/* Either argument may be NULL. Errors name the file and line. */
ss_mil_sources_t *ss_mil_sources_new(const char *slides_manifest, const char *cells_csv);
void ss_mil_sources_free(ss_mil_sources_t **s);

typedef enum { SS_MIL_SOURCE_NONE = 0, SS_MIL_SOURCE_SLIDE = 1, SS_MIL_SOURCE_CELLS = 2 } ss_mil_source_t;

/* Where bag `bag_id`'s pixels come from (a slide wins when both know the id). src may be NULL. */
ss_mil_source_t ss_mil_sources_find(const ss_mil_sources_t *src, const char *bag_id);

/* QuPath-compatible GeoJSON FeatureCollection, level-0 pixels: one detection per cell, a 16-gon
 * around its centre (radius a quarter of the cache's crop side), properties objectType
 * "detection", name "cell <id>", classification "Attention high" (top 10% by rank) / "medium"
 * (next 40%) / "low" (rest) with their viridis colours, measurements {attention, attention_rank}
 * (attention printed as instances.csv prints it). */
int ss_mil_write_geojson(const ss_mil_bag_t *b, const float *attention, const int64_t *rank,
                         const char *path);

/* Attention heatmap PNG: the slide's thumbnail (longer side max_size px; 0 = 1024) with a disc
 * per cell in its rank colour (most attended drawn last, on top), or, for a folder bag, the grid
 * of its cells in rank order; a colour bar on the right. Beside it, PATH with .csv for .png:
 * cell_id,rank,attention,px,py — where each cell's colour is in the picture. */
int ss_mil_write_heatmap(const ss_mil_bag_t *b, const float *attention, const int64_t *rank,
                         const ss_mil_sources_t *src, int max_size, const char *path);

/* Gallery PNG of the k most attended cells (fewer when the bag is smaller), rank 1 first, row by
 * row; under each crop "#rank attention" and a bar of length attention / top attention in its
 * rank colour. Beside it, PATH with .csv for .png: tile,rank,cell_id,x,y,attention,image. */
int ss_mil_write_gallery(const ss_mil_bag_t *b, const float *attention, const int64_t *rank,
                         const ss_mil_sources_t *src, int k, const char *path);

#endif
