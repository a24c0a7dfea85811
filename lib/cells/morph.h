/* Binary and grey morphology used by cell detection (private to lib/cells). Images are row-major
 * (h, w) arrays; masks are uint8 0/1; labels are int32 with 0 = background. Every function
 * allocates only what it returns or frees before returning. */
#ifndef SS_CELLS_MORPH_H
#define SS_CELLS_MORPH_H

#include <stdint.h>

/* Squared Euclidean distance from each pixel to the nearest pixel where mask == target_zero
 * (i.e. dist to the nearest 0 of `mask` when target_zero is 0). (h, w) floats. */
int ss_morph_edt(const uint8_t *mask, int w, int h, int target, float *dist2);

/* Disk dilation / erosion / opening of a mask by radius r (pixels), in place. */
int ss_morph_dilate(uint8_t *mask, int w, int h, double r);
int ss_morph_erode(uint8_t *mask, int w, int h, double r);
int ss_morph_open(uint8_t *mask, int w, int h, double r);

/* 8-connected components of mask; labels 1..n written to `labels`; returns n or -1. */
int ss_morph_label(const uint8_t *mask, int w, int h, int32_t *labels);

/* Fills holes (background components not touching the border) of at most max_area pixels. */
int ss_morph_fill_holes(uint8_t *mask, int w, int h, double max_area);

/* Splits the mask's objects: distance transform, h-maxima markers of depth h (pixels), then a
 * marker-driven watershed on the distance map. labels: 1..n regions, 0 outside the mask.
 * Returns n or -1. */
int ss_morph_split(const uint8_t *mask, int w, int h, double depth, int32_t *labels);

#endif
