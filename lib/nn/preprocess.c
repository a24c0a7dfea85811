/* The encoder's input normalisation (nn_preprocess.h): the one implementation of
 * "crop -> (v / 255 - mean) / std, planar", used by the encoder stage, `embed`, the ResNet's
 * batch helper and the training augmentations.
 *
 * ss_nn compiles with -ffp-contract=fast, but this file is built with contraction off (see
 * lib/nn/CMakeLists.txt): v * scale + shift must round twice, as the stages always did, or the
 * bits fed to the network would depend on whether the build's CPU has FMA. */
#include "slidestream/nn_preprocess.h"

#include <stddef.h>

#include "slidestream/error.h"

void ss_nn_normalise_u8(const uint8_t *rgb, int width, int x0, int y0, int S, const double mean[3],
                        const double std[3], float *out)
{
    size_t plane = (size_t)S * (size_t)S;
    for (int c = 0; c < 3; c++) {
        /* One multiply and one add per value instead of a divide: the constants round once,
         * here, in double. */
        const float sc = (float)(1.0 / (255.0 * std[c])), sh = (float)(-mean[c] / std[c]);
        float *o = out + (size_t)c * plane;
        for (int y = 0; y < S; y++) {
            const uint8_t *row = rgb + ((size_t)(y0 + y) * (size_t)width + (size_t)x0) * 3 + c;
            float *orow = o + (size_t)y * S;
            for (int x = 0; x < S; x++)
                orow[x] = row[3 * x] * sc + sh;
        }
    }
}

int ss_nn_normalise_centre_u8(const uint8_t *rgb, int w, int h, int S, const double mean[3],
                              const double std[3], float *out)
{
    if (w < S || h < S)
        return ss_error("nn", "image is %dx%d, smaller than the input size %dx%d", w, h, S, S);
    ss_nn_normalise_u8(rgb, w, ss_nn_centre_offset(w, S), ss_nn_centre_offset(h, S), S, mean, std,
                       out);
    return 0;
}

void ss_nn_normalise_f32(float *x, int S, const double mean[3], const double std[3])
{
    size_t plane = (size_t)S * (size_t)S;
    for (int c = 0; c < 3; c++) {
        /* A subtraction and a true division with float32 mean and std, as torchvision's
         * Normalize does, so augmented views match it exactly. */
        const float m = (float)mean[c], s = (float)std[c];
        float *p = x + (size_t)c * plane;
        for (size_t i = 0; i < plane; i++)
            p[i] = (p[i] - m) / s;
    }
}
