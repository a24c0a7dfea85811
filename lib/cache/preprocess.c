/* slidestream cache — the encoder's preprocessing, in one place: the normalisation of crops
 * and the string that identifies it in cache files (resume compares it). */
#include <stdio.h>

#include "slidestream/cache.h"

int ss_cache_preprocessing(int input_size, const double mean[3], const double std[3], char *buf,
                           size_t size)
{
    int n = snprintf(buf, size, "input=%d;mean=%.9g,%.9g,%.9g;std=%.9g,%.9g,%.9g", input_size,
                     mean[0], mean[1], mean[2], std[0], std[1], std[2]);
    return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

void ss_cache_normalise(const uint8_t *rgb, int width, int x0, int y0, int S,
                        const double mean[3], const double std[3], float *out)
{
    size_t plane = (size_t)S * (size_t)S;
    for (int c = 0; c < 3; c++) {
        /* float32 throughout, as torch: ToTensor divides by 255, Normalize subtracts/divides */
        const float m = (float)mean[c], sd = (float)std[c];
        float *o = out + (size_t)c * plane;
        for (int y = 0; y < S; y++) {
            const uint8_t *row = rgb + ((size_t)(y0 + y) * (size_t)width + (size_t)x0) * 3 + c;
            for (int x = 0; x < S; x++) o[(size_t)y * S + x] = ((float)row[3 * x] / 255.0f - m) / sd;
        }
    }
}
