/* slidestream cache — the encoder's preprocessing in one place: crop normalisation shared by
 * `embed` and the encoder stage (the string naming it comes from ss_encoder_id). */
#include "slidestream/cache.h"

void ss_cache_normalise(const uint8_t *rgb, int width, int x0, int y0, int S,
                        const double mean[3], const double std[3], float *out)
{
    size_t plane = (size_t)S * (size_t)S;
    for (int c = 0; c < 3; c++) {
        /* v * (1 / (255 std)) + (-mean / std) in float32: the encoder stage's arithmetic, so a
         * crop embedded here and one embedded live give the same bits (within ~1 ulp of
         * torchvision's (v / 255 - mean) / std). */
        const float sc = (float)(1.0 / (255.0 * std[c])), sh = (float)(-mean[c] / std[c]);
        float *o = out + (size_t)c * plane;
        for (int y = 0; y < S; y++) {
            const uint8_t *row = rgb + ((size_t)(y0 + y) * (size_t)width + (size_t)x0) * 3 + c;
            for (int x = 0; x < S; x++) o[(size_t)y * S + x] = row[3 * x] * sc + sh;
        }
    }
}
