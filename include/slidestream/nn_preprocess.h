/* slidestream — the encoder's input normalisation, in one place: 8-bit RGB crops (or [0, 1]
 * float images) become (3, S, S) planar floats x = (v - mean) / std with the checkpoint's
 * mean/std. The encoder stage, `embed`, ss_resnet_preprocess_u8 and the training augmentations
 * all call these, so a cell embedded live, embedded from a file and seen un-augmented in
 * training feeds the network the same bits.
 */
#ifndef SLIDESTREAM_NN_PREPROCESS_H
#define SLIDESTREAM_NN_PREPROCESS_H

#include <stdint.h>

/* The S x S window at (x0, y0) of packed RGB `rgb` (rows of `width` pixels, 3 bytes each)
 * becomes out (3, S, S): out[c] = v * (float)(1 / (255 std[c])) + (float)(-mean[c] / std[c]),
 * in float32 without contraction (within ~1 ulp of torchvision's (v / 255 - mean) / std). The
 * window must lie inside the image; the caller has checked it. */
void ss_nn_normalise_u8(const uint8_t *rgb, int width, int x0, int y0, int S, const double mean[3],
                        const double std[3], float *out);

/* The offset of a centred window of S pixels in a side of n >= S pixels: floor((n - S) / 2).
 * torchvision's CenterCrop uses int(round((n - S) / 2.0)) (round half to even): the two agree
 * when n - S is even, or when (n - S - 1) / 2 is even. */
static inline int ss_nn_centre_offset(int n, int S)
{
    return (n - S) / 2;
}

/* As ss_nn_normalise_u8 on the centred S x S window of a w x h image. -1 (domain "nn", naming
 * both sizes) when the image is smaller than S in either direction. */
int ss_nn_normalise_centre_u8(const uint8_t *rgb, int w, int h, int S, const double mean[3],
                              const double std[3], float *out);

/* In place on x (3, S, S), values in [0, 1]: x[c] = (x[c] - (float)mean[c]) / (float)std[c],
 * torchvision's Normalize on a float32 tensor, bit for bit. For images that are no longer 8-bit
 * (the training augmentations' colour jitter). */
void ss_nn_normalise_f32(float *x, int S, const double mean[3], const double std[3]);

#endif
