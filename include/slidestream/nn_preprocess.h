/* slidestream — the encoder's input normalisation, in one place: 8-bit RGB crops become
 * (3, S, S) planar floats x = (v / 255 - mean) / std with the checkpoint's mean/std. The encoder
 * stage, `embed` and ss_resnet_preprocess_u8 all call it, so a cell embedded live and one
 * embedded from a file feed the network the same bits.
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

#endif
