/* ss_synth internals: counter-based random numbers, the cell record and the renderer shared by
 * the slide writer and the single-cell set. Not installed; only lib/synth includes it. */
#ifndef SS_SYNTH_INTERNAL_H
#define SS_SYNTH_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "slidestream/synth.h"

/* Counter-based randomness: a value is a hash of (seed, coordinates, stream), so any block or
 * texel can be computed on its own, in any order, on any thread. */
static inline uint64_t sy_mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t sy_hash(uint64_t seed, uint64_t a, uint64_t b, uint64_t c)
{
    return sy_mix(sy_mix(sy_mix(seed ^ sy_mix(a)) ^ b) ^ (c * 0x632be59bd9b4e019ull));
}

/* Uniform [0, 1) from the top 53 bits. */
static inline double sy_unit(uint64_t h)
{
    return (double)(h >> 11) * (1.0 / 9007199254740992.0);
}

/* A tiny sequential generator for drawing several numbers from one hashed state. */
typedef struct {
    uint64_t s;
} sy_rng_t;

static inline double sy_rand(sy_rng_t *r)
{
    r->s += 0x9e3779b97f4a7c15ull;
    return sy_unit(sy_mix(r->s));
}

static inline double sy_range(sy_rng_t *r, double lo, double hi)
{
    return lo + (hi - lo) * sy_rand(r);
}

/* A cell placed in a scene: pixel coordinates of the scene (level-0 for slides). */
typedef struct {
    ss_synth_class_t cls;
    double cx, cy;     /* centre, pixels */
    double r_um;       /* outer radius, microns */
    double angle;      /* radians */
    uint64_t seed;     /* shape, colour and texture draws */
    double difficulty; /* abnormal classes: how far their look is drawn toward normal, 0..1 */
} sy_cell_t;

/* Largest outer radius any class can have, microns (bounds the search margin). */
#define SY_MAX_RADIUS_UM 10.0

/* The difficulty d (0..1) of an abnormal cell's look, in two halves. Over [0, 0.5] its general
 * look (size, outline, nucleus size and place, colours, chromatin texture, granules, vacuoles)
 * is drawn toward the normal class's, all the way at 0.5; over [0.5, 1] the class's own sign
 * (lobes, the monocyte's notch, the blast's nucleoli) fades from full strength to
 * SY_CUE_FLOOR of it. */
#define SY_LOOK_END 0.5
#define SY_CUE_FLOOR 0.2

/* Share of the way from the class's general look to the normal one, 0..1. */
static inline double sy_look_share(double d)
{
    return d >= SY_LOOK_END ? 1.0 : d / SY_LOOK_END;
}

/* Strength of the class's own sign, SY_CUE_FLOOR..1. */
static inline double sy_cue_strength(double d)
{
    double u = d <= SY_LOOK_END ? 0.0 : (d - SY_LOOK_END) / (1.0 - SY_LOOK_END);
    return 1.0 - (1.0 - SY_CUE_FLOOR) * u;
}

/* Draws a class-typical outer radius in microns. */
double sy_class_radius(ss_synth_class_t cls, sy_rng_t *r);

/* The outer radius of a cell at a difficulty: the class's draw (the same draws from r as
 * sy_class_radius) and, for an abnormal class at difficulty d > 0, moved a share
 * sy_look_share(d) of the way to a normal draw taken from a side stream, so that r's later
 * draws do not depend on d. */
double sy_cell_radius(ss_synth_class_t cls, double difficulty, sy_rng_t *r);

/* Adds the optical density (h, w, 3) of the cells over the region [x0, x0+w) × [y0, y0+h).
 * Optical density adds where cells overlap (Beer–Lambert), so the result does not depend on
 * which other cells a region happened to gather. */
void sy_render_cells(const sy_cell_t *cells, size_t n, double mpp, double x0, double y0, int w,
                     int h, float *od);

/* Converts optical density to RGB under the slide's illumination (uneven, seeded) plus faint
 * sensor noise; rgb rows are `stride` bytes apart. (ix, iy) are the integer scene coordinates of
 * the region's top-left pixel, used for noise and illumination so that tiles join seamlessly. */
void sy_expose(const float *od, int w, int h, int64_t ix, int64_t iy, double mpp, uint64_t seed,
               uint8_t *rgb, size_t stride);

/* libvips' error buffer flattened to one line into buf, and cleared. */
const char *sy_vips_error(char *buf, size_t n);

#endif
