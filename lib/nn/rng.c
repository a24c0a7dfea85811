/* Non-inline parts of the NN core's deterministic RNG (xoshiro256**, see nn_layers.h). All fills
 * are serial on purpose: the values must depend only on the seed, never on the thread count. */
#include "slidestream/nn_layers.h"

#include <math.h>

float ss_rng_normal(ss_rng_t *r)
{
    /* Box–Muller in double; u1 in (0, 1] so log() is finite. */
    double u1 = ((double)(ss_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(ss_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

void ss_rng_fill_normal(ss_rng_t *r, float *x, size_t n, float mean, float std)
{
    for (size_t i = 0; i < n; i++)
        x[i] = mean + std * ss_rng_normal(r);
}

void ss_rng_fill_uniform(ss_rng_t *r, float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * ss_rng_uniform(r);
}
