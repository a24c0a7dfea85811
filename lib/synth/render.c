/* Cell renderer for synthetic Romanowsky-stained smears (May-Grünwald-Giemsa look).
 *
 * Each cell is a set of signed-distance shapes in its own rotated frame, in microns: membrane,
 * nucleus (round, lobed or kidney-shaped), granules, nucleoli. Pixels accumulate optical density,
 * which adds where cells overlap (Beer–Lambert), and sy_expose turns density into RGB under an
 * uneven illumination. At a difficulty above 0, an abnormal cell's shapes are drawn toward a
 * normal twin's (toward_normal); at 0 nothing about any cell changes. Nothing here allocates;
 * callers own every buffer.
 */
#include <math.h>
#include <string.h>

#include "synth_internal.h"

/* Optical densities (−ln transmission) per RGB channel of each stained component. */
static const float OD_RBC[3] = {0.09f, 0.52f, 0.44f};       /* pink-salmon haemoglobin */
static const float OD_NUC_DARK[3] = {1.35f, 1.85f, 0.85f};  /* dense purple chromatin */
static const float OD_NUC_BLAST[3] = {0.80f, 1.15f, 0.45f}; /* open, finer chromatin */
static const float OD_NUC_MONO[3] = {0.68f, 0.98f, 0.40f};  /* lacy, paler chromatin */
static const float OD_CYT_LYT[3] = {0.36f, 0.23f, 0.06f};   /* pale sky blue */
static const float OD_CYT_BLA[3] = {0.50f, 0.36f, 0.14f};   /* basophilic deep blue */
static const float OD_CYT_NGS[3] = {0.07f, 0.15f, 0.09f};   /* pale pink-lilac */
static const float OD_CYT_EOS[3] = {0.05f, 0.15f, 0.22f};   /* pale, under the granules */
static const float OD_CYT_MON[3] = {0.32f, 0.29f, 0.16f};   /* grey-blue "ground glass" */
static const float OD_GRAN_NGS[3] = {0.16f, 0.30f, 0.10f};  /* fine lilac granules */
static const float OD_GRAN_EOS[3] = {0.02f, 0.62f, 1.10f};  /* orange-red granules */
static const float OD_PLT[3] = {0.55f, 0.95f, 0.35f};       /* purple granulomere */

enum { NUC_NONE, NUC_ELLIPSE, NUC_LOBES, NUC_KIDNEY };
enum { GRAN_NONE, GRAN_ADD, GRAN_VACUOLE };

typedef struct {
    float cx, cy;         /* centre, scene pixels */
    float ca, sa;         /* rotation */
    float R, ey;          /* outer radius (µm), ellipse squash of the membrane */
    float h2, p2, h3, p3; /* membrane harmonics (irregular outlines); 0 = smooth */
    float blur;           /* edge half-width, µm */
    float od_scale;       /* stain intensity of this cell */
    float pallor;         /* RBC: relative thickness at the centre */
    int nkind;
    float nx, ny, nrx, nry, nh, np; /* ellipse nucleus (and kidney body) */
    int nl;
    float lx[5], ly[5], lr[5], strand; /* lobes */
    float kx, ky, kr;                  /* kidney indentation */
    float od_cyt[3], od_nuc[3], od_gran[3];
    float chrom_scale, chrom_contrast;
    int gran_mode;
    float gran_cell, gran_r, gran_p;
    float vacuole; /* vacuoles: share of cytoplasm stain they clear */
    int nnl;
    float ox[3], oy[3], orad[3]; /* nucleoli */
    float pale;                  /* nucleoli: share of chromatin stain they lack */
    float tu, tv;                /* texture offset */
    uint64_t tex;
} shape_t;

double sy_class_radius(ss_synth_class_t cls, sy_rng_t *r)
{
    switch (cls) {
    case SS_SYNTH_LYT:
        return sy_range(r, 3.5, 4.5); /* 7–9 µm */
    case SS_SYNTH_BLA:
        return sy_range(r, 6.0, 9.0); /* 12–18 µm */
    case SS_SYNTH_NGS:
        return sy_range(r, 5.5, 6.5); /* 11–13 µm */
    case SS_SYNTH_EOS:
        return sy_range(r, 6.0, 7.0); /* 12–14 µm */
    case SS_SYNTH_MON:
        return sy_range(r, 7.0, 9.0); /* 14–18 µm */
    case SS_SYNTH_RBC:
        return sy_range(r, 3.4, 4.1); /* 6.8–8.2 µm */
    case SS_SYNTH_PLT:
        return sy_range(r, 0.9, 1.5); /* 2–3 µm */
    default:
        return 4.0;
    }
}

double sy_cell_radius(ss_synth_class_t cls, double difficulty, sy_rng_t *r)
{
    double R = sy_class_radius(cls, r);
    if (difficulty > 0 && cls > SS_SYNTH_LYT && cls < SS_SYNTH_NNUCLEATED) {
        sy_rng_t q = {sy_mix(r->s ^ 0x52414449ull)};
        R += sy_look_share(difficulty) * (sy_class_radius(SS_SYNTH_LYT, &q) - R);
    }
    return R;
}

static inline float lattice(int64_t i, int64_t j, uint64_t seed)
{
    uint64_t h = sy_mix(seed ^ ((uint64_t)i * 0x9e3779b97f4a7c15ull) ^
                        ((uint64_t)j * 0xc2b2ae3d27d4eb4full));
    return (float)(h >> 40) * (1.0f / 16777216.0f);
}

/* Smooth value noise in [0, 1], lattice spacing 1. */
static float vnoise(float x, float y, uint64_t seed)
{
    float fx = floorf(x), fy = floorf(y);
    int64_t i = (int64_t)fx, j = (int64_t)fy;
    float tx = x - fx, ty = y - fy;
    tx = tx * tx * (3.0f - 2.0f * tx);
    ty = ty * ty * (3.0f - 2.0f * ty);
    float a = lattice(i, j, seed), b = lattice(i + 1, j, seed);
    float c = lattice(i, j + 1, seed), d = lattice(i + 1, j + 1, seed);
    return a + (b - a) * tx + (c - a) * ty + (a - b - c + d) * tx * ty;
}

static float fbm2(float x, float y, uint64_t seed)
{
    return 0.65f * vnoise(x, y, seed) +
           0.35f * vnoise(2.03f * x + 17.1f, 2.03f * y - 5.3f, seed + 1);
}

/* Coverage of a shape at signed distance d (µm, negative inside), blurred over ±b. */
static inline float cover(float d, float b)
{
    float t = (b - d) / (2.0f * b);
    if (t <= 0.0f) return 0.0f;
    if (t >= 1.0f) return 1.0f;
    return t * t * (3.0f - 2.0f * t);
}

static inline float smin(float a, float b, float k)
{
    float h = 0.5f + 0.5f * (b - a) / k;
    if (h < 0.0f) h = 0.0f;
    if (h > 1.0f) h = 1.0f;
    return b + (a - b) * h - k * h * (1.0f - h);
}

static float seg_dist(float px, float py, float ax, float ay, float bx, float by)
{
    float vx = bx - ax, vy = by - ay, wx = px - ax, wy = py - ay;
    float l2 = vx * vx + vy * vy;
    float t = l2 > 0 ? (wx * vx + wy * vy) / l2 : 0;
    if (t < 0) t = 0;
    if (t > 1) t = 1;
    float dx = wx - t * vx, dy = wy - t * vy;
    return sqrtf(dx * dx + dy * dy);
}

static void set3(float dst[3], const float src[3], float k)
{
    for (int c = 0; c < 3; c++)
        dst[c] = src[c] * k;
}

/* The normal class's (LYT) nucleus, colours and texture for a cell of outer radius R. */
static void lyt_look(shape_t *s, sy_rng_t *r, float R)
{
    s->ey = (float)sy_range(r, 1.0, 1.06);
    s->nkind = NUC_ELLIPSE;
    float k = (float)sy_range(r, 0.78, 0.88);
    s->nrx = k * R;
    s->nry = k * R * (float)sy_range(r, 0.92, 1.0);
    float off = (float)sy_range(r, 0.03, 0.12) * R;
    s->nx = off;
    s->ny = 0;
    s->nh = 0.02f;
    s->np = (float)sy_range(r, 0, 6.283);
    set3(s->od_nuc, OD_NUC_DARK, 1.0f);
    set3(s->od_cyt, OD_CYT_LYT, (float)sy_range(r, 0.85, 1.15));
    s->chrom_scale = 1.1f;
    s->chrom_contrast = 0.28f;
}

static inline float lerpf(float a, float b, float t)
{
    return a + t * (b - a);
}

static void toward_normal(shape_t *s, const sy_cell_t *c);

/* Draws everything about a cell's look from its seed. */
static void shape_init(shape_t *s, const sy_cell_t *c, double mpp)
{
    memset(s, 0, sizeof *s);
    sy_rng_t r = {c->seed};
    s->cx = (float)c->cx;
    s->cy = (float)c->cy;
    s->ca = (float)cos(c->angle);
    s->sa = (float)sin(c->angle);
    float R = (float)c->r_um;
    s->R = R;
    s->blur = 0.28f + 0.5f * (float)mpp;
    s->od_scale = (float)sy_range(&r, 0.88, 1.12);
    s->ey = (float)sy_range(&r, 1.0, 1.10);
    s->tex = sy_mix(c->seed ^ 0x5bd1e995ull);
    s->tu = (float)sy_range(&r, 0, 1000);
    s->tv = (float)sy_range(&r, 0, 1000);
    s->nkind = NUC_NONE;
    s->pale = 0.45f;
    s->vacuole = 0.5f;
    switch (c->cls) {
    case SS_SYNTH_RBC:
        s->pallor = (float)sy_range(&r, 0.45, 0.72);
        break;
    case SS_SYNTH_PLT:
        s->h2 = (float)sy_range(&r, 0.05, 0.15);
        s->h3 = (float)sy_range(&r, 0.03, 0.12);
        s->p2 = (float)sy_range(&r, 0, 6.283);
        s->p3 = (float)sy_range(&r, 0, 6.283);
        s->chrom_scale = 0.45f;
        s->chrom_contrast = 0.45f;
        break;
    case SS_SYNTH_LYT:
        lyt_look(s, &r, R);
        break;
    case SS_SYNTH_BLA: {
        s->h2 = (float)sy_range(&r, 0.0, 0.04);
        s->p2 = (float)sy_range(&r, 0, 6.283);
        s->nkind = NUC_ELLIPSE;
        float k = (float)sy_range(&r, 0.76, 0.86);
        s->nrx = k * R;
        s->nry = k * R * (float)sy_range(&r, 0.85, 1.0);
        s->nx = (float)sy_range(&r, 0.0, 0.08) * R;
        s->nh = (float)sy_range(&r, 0.01, 0.05);
        s->np = (float)sy_range(&r, 0, 6.283);
        set3(s->od_nuc, OD_NUC_BLAST, (float)sy_range(&r, 0.9, 1.1));
        set3(s->od_cyt, OD_CYT_BLA, (float)sy_range(&r, 0.85, 1.15));
        s->chrom_scale = 0.55f;
        s->chrom_contrast = 0.14f;
        s->nnl = 1 + (int)(sy_rand(&r) * 3.0);
        for (int i = 0; i < s->nnl; i++) {
            float a = (float)sy_range(&r, 0, 6.283), d = (float)sy_range(&r, 0.1, 0.5) * s->nrx;
            s->ox[i] = s->nx + d * cosf(a);
            s->oy[i] = s->ny + d * sinf(a);
            s->orad[i] = (float)sy_range(&r, 0.6, 1.1);
        }
        break;
    }
    case SS_SYNTH_NGS: {
        s->nkind = NUC_LOBES;
        s->nl = 3 + (int)(sy_rand(&r) * 3.0); /* 3–5 lobes */
        float arc = 0.42f * R, span = (float)sy_range(&r, 3.2, 4.6);
        float a0 = (float)sy_range(&r, 0, 6.283);
        float lr = (s->nl == 5 ? 0.24f : s->nl == 4 ? 0.27f : 0.3f) * R;
        for (int i = 0; i < s->nl; i++) {
            float a = a0 + span * (float)i / (float)(s->nl - 1) + (float)sy_range(&r, -0.15, 0.15);
            float d = arc * (float)sy_range(&r, 0.85, 1.1);
            s->lx[i] = d * cosf(a);
            s->ly[i] = d * sinf(a);
            s->lr[i] = lr * (float)sy_range(&r, 0.85, 1.1);
        }
        s->strand = 0.07f * R;
        set3(s->od_nuc, OD_NUC_DARK, (float)sy_range(&r, 0.85, 1.0));
        set3(s->od_cyt, OD_CYT_NGS, 1.0f);
        set3(s->od_gran, OD_GRAN_NGS, 1.0f);
        s->gran_mode = GRAN_ADD;
        s->gran_cell = 0.55f;
        s->gran_r = 0.16f;
        s->gran_p = 0.6f;
        s->chrom_scale = 0.9f;
        s->chrom_contrast = 0.25f;
        break;
    }
    case SS_SYNTH_EOS: {
        s->nkind = NUC_LOBES;
        s->nl = 2;
        float d = 0.4f * R * (float)sy_range(&r, 0.9, 1.1);
        float a = (float)sy_range(&r, -0.3, 0.3);
        s->lx[0] = -d;
        s->ly[0] = 0;
        s->lx[1] = d * cosf(a);
        s->ly[1] = d * sinf(a);
        s->lr[0] = 0.33f * R * (float)sy_range(&r, 0.9, 1.1);
        s->lr[1] = 0.33f * R * (float)sy_range(&r, 0.9, 1.1);
        s->strand = 0.08f * R;
        set3(s->od_nuc, OD_NUC_DARK, (float)sy_range(&r, 0.8, 0.95));
        set3(s->od_cyt, OD_CYT_EOS, 1.0f);
        set3(s->od_gran, OD_GRAN_EOS, (float)sy_range(&r, 0.85, 1.1));
        s->gran_mode = GRAN_ADD;
        s->gran_cell = 0.8f;
        s->gran_r = 0.32f;
        s->gran_p = 0.9f;
        s->chrom_scale = 0.9f;
        s->chrom_contrast = 0.22f;
        break;
    }
    case SS_SYNTH_MON: {
        s->h2 = (float)sy_range(&r, 0.02, 0.07);
        s->h3 = (float)sy_range(&r, 0.01, 0.05);
        s->p2 = (float)sy_range(&r, 0, 6.283);
        s->p3 = (float)sy_range(&r, 0, 6.283);
        s->nkind = NUC_KIDNEY;
        s->nrx = 0.6f * R;
        s->nry = 0.66f * R;
        s->nx = -0.08f * R;
        s->nh = 0.05f;
        s->np = (float)sy_range(&r, 0, 6.283);
        s->kx = s->nx + s->nrx * (float)sy_range(&r, 0.85, 1.05);
        s->ky = (float)sy_range(&r, -0.1, 0.1) * R;
        s->kr = (float)sy_range(&r, 0.3, 0.42) * R;
        set3(s->od_nuc, OD_NUC_MONO, (float)sy_range(&r, 0.9, 1.1));
        set3(s->od_cyt, OD_CYT_MON, (float)sy_range(&r, 0.85, 1.1));
        s->gran_mode = GRAN_VACUOLE;
        s->gran_cell = 2.2f;
        s->gran_r = 0.45f;
        s->gran_p = 0.3f;
        s->chrom_scale = 0.7f;
        s->chrom_contrast = 0.22f;
        break;
    }
    default:
        break;
    }
    if (c->cls > SS_SYNTH_LYT && c->cls < SS_SYNTH_NNUCLEATED && c->difficulty > 0)
        toward_normal(s, c);
}

/* Signed distance to the nucleus, µm, in the cell frame. */
static float nucleus_sdf(const shape_t *s, float u, float v)
{
    switch (s->nkind) {
    case NUC_ELLIPSE:
    case NUC_KIDNEY: {
        float du = u - s->nx, dv = v - s->ny;
        float q = sqrtf((du * du) / (s->nrx * s->nrx) + (dv * dv) / (s->nry * s->nry));
        float m = s->nrx < s->nry ? s->nrx : s->nry;
        float d = (q - 1.0f) * m;
        if (s->nh > 0) d -= s->nh * m * cosf(3.0f * atan2f(dv, du) + s->np);
        if (s->nkind == NUC_KIDNEY) {
            float ku = u - s->kx, kv = v - s->ky;
            float di = sqrtf(ku * ku + kv * kv) - s->kr;
            if (-di > d) d = -di;
        }
        return d;
    }
    case NUC_LOBES: {
        float d = 1e9f;
        for (int i = 0; i < s->nl; i++) {
            float du = u - s->lx[i], dv = v - s->ly[i];
            float dl = sqrtf(du * du + dv * dv) - s->lr[i];
            d = i ? smin(d, dl, 0.25f) : dl;
        }
        for (int i = 0; i + 1 < s->nl; i++) {
            float ds = seg_dist(u, v, s->lx[i], s->ly[i], s->lx[i + 1], s->ly[i + 1]) - s->strand;
            if (ds < d) d = ds;
        }
        return d;
    }
    default:
        return 1e9f;
    }
}

/* Area of the nucleus, µm², counted on a grid over the cell (0.05 R spacing). */
static float nucleus_area(const shape_t *s)
{
    enum { N = 48 };
    const float h = 2.4f * s->R / N, o = 1.2f * s->R - 0.5f * h;
    int in = 0;
    for (int j = 0; j < N; j++)
        for (int i = 0; i < N; i++)
            in += nucleus_sdf(s, (float)i * h - o, (float)j * h - o) < 0.0f;
    return (float)in * h * h;
}

/* Scales the nucleus (and what lies on it: lobes, notch, nucleoli) by f about (cx, cy). */
static void scale_nucleus(shape_t *s, float f, float cx, float cy)
{
    s->nx = cx + (s->nx - cx) * f;
    s->ny = cy + (s->ny - cy) * f;
    s->nrx *= f;
    s->nry *= f;
    s->kx = cx + (s->kx - cx) * f;
    s->ky = cy + (s->ky - cy) * f;
    s->kr *= f;
    for (int i = 0; i < s->nl; i++) {
        s->lx[i] = cx + (s->lx[i] - cx) * f;
        s->ly[i] = cy + (s->ly[i] - cy) * f;
        s->lr[i] *= f;
    }
    s->strand *= f;
    for (int i = 0; i < s->nnl; i++) {
        s->ox[i] = cx + (s->ox[i] - cx) * f;
        s->oy[i] = cy + (s->oy[i] - cy) * f;
    }
}

/* Moves an abnormal cell's look toward a normal twin drawn from a side stream of its seed, so
 * that difficulty 0 leaves every draw as it was (and this is not even called). Size has
 * already moved (sy_cell_radius). A share t = sy_look_share(d) of the way: outline, nucleus
 * size and place, colours, chromatin texture; granules and vacuoles fade by 1 - t. The class's
 * own sign keeps a strength k = sy_cue_strength(d): lobes keep a share k of their spread, the
 * monocyte's notch a share k of its size, the blast's nucleoli a share k of their pallor.
 *
 * A sign must not give itself away by the stain it adds or removes (a glance, or a random
 * network's pooled features, sees that): the nucleus is rescaled to the area the general look
 * asks for whatever the lobes or the notch take away, and the chromatin darkened by what the
 * nucleoli make paler. What is left is shape. */
static void toward_normal(shape_t *s, const sy_cell_t *c)
{
    const float t = (float)sy_look_share(c->difficulty), k = (float)sy_cue_strength(c->difficulty);
    shape_t n;
    memset(&n, 0, sizeof n);
    sy_rng_t q = {sy_mix(c->seed ^ 0x4e4f524d414cull)};
    lyt_look(&n, &q, s->R);
    n.R = s->R;
    const float area = lerpf(nucleus_area(s), nucleus_area(&n), t); /* what the look asks */

    s->ey = lerpf(s->ey, n.ey, t);
    s->h2 = lerpf(s->h2, 0.0f, t);
    s->h3 = lerpf(s->h3, 0.0f, t);
    s->nh = lerpf(s->nh, n.nh, t);
    s->chrom_scale = lerpf(s->chrom_scale, n.chrom_scale, t);
    s->chrom_contrast = lerpf(s->chrom_contrast, n.chrom_contrast, t);
    for (int i = 0; i < 3; i++) {
        s->od_cyt[i] = lerpf(s->od_cyt[i], n.od_cyt[i], t);
        s->od_nuc[i] = lerpf(s->od_nuc[i], n.od_nuc[i], t);
        s->od_gran[i] *= 1.0f - t;
    }
    s->vacuole *= 1.0f - t;
    float cx, cy; /* where the nucleus is rescaled about */
    switch (s->nkind) {
    case NUC_ELLIPSE: /* nucleoli ride along with the nucleus */
    case NUC_KIDNEY: {
        float nx = lerpf(s->nx, n.nx, t), ny = lerpf(s->ny, n.ny, t);
        float sx = lerpf(s->nrx, n.nrx, t) / s->nrx, sy = lerpf(s->nry, n.nry, t) / s->nry;
        for (int i = 0; i < s->nnl; i++) {
            s->ox[i] = nx + (s->ox[i] - s->nx) * sx;
            s->oy[i] = ny + (s->oy[i] - s->ny) * sy;
        }
        s->pale *= k;
        s->kx = nx + (s->kx - s->nx) * sx;
        s->ky = ny + (s->ky - s->ny) * sy;
        s->kr *= k * sqrtf(sx * sy); /* the notch keeps its share of the nucleus, faded */
        s->nx = cx = nx;
        s->ny = cy = ny;
        s->nrx *= sx;
        s->nry *= sy;
        break;
    }
    case NUC_LOBES: {
        /* The lobes gather toward the twin's nucleus centre (a share k of their spread stays)
         * and grow so that the nucleus reaches as far as the general look asks: its own reach
         * at t = 0, the twin's round nucleus at t = 1. */
        float rn = sqrtf(n.nrx * n.nry);
        for (int i = 0; i < s->nl; i++) {
            float d = sqrtf(s->lx[i] * s->lx[i] + s->ly[i] * s->ly[i]);
            float reach = lerpf(d + s->lr[i], rn, t);
            s->lx[i] = lerpf(n.nx, s->lx[i], k);
            s->ly[i] = lerpf(n.ny, s->ly[i], k);
            s->lr[i] = reach - k * d;
        }
        cx = n.nx;
        cy = n.ny;
        break;
    }
    default:
        return;
    }
    const float now = nucleus_area(s);
    if (now > 0.0f) scale_nucleus(s, sqrtf(area / now), cx, cy);
    /* nucleoli take pallor·(their area) of the stain away: give it back to the rest */
    float pale = 0.0f;
    for (int i = 0; i < s->nnl; i++)
        pale += s->pale * (float)M_PI * s->orad[i] * s->orad[i];
    pale = area > 0.0f ? t * pale / area : 0.0f;
    if (pale > 0.0f && pale < 0.5f)
        for (int i = 0; i < 3; i++)
            s->od_nuc[i] /= 1.0f - pale;
}

/* Granule (or vacuole) coverage at (u, v): one dot per lattice cell, at most. */
static float granule(const shape_t *s, float u, float v, float b)
{
    float g = s->gran_cell;
    float fu = floorf(u / g), fv = floorf(v / g);
    uint64_t h = sy_mix(s->tex ^ ((uint64_t)(int64_t)fu * 0x9e3779b97f4a7c15ull) ^
                        ((uint64_t)(int64_t)fv * 0xc2b2ae3d27d4eb4full));
    if ((float)(h & 0xffff) * (1.0f / 65536.0f) >= s->gran_p) return 0.0f;
    float ou = (0.3f + 0.4f * (float)((h >> 16) & 0xffff) * (1.0f / 65536.0f)) * g;
    float ov = (0.3f + 0.4f * (float)((h >> 32) & 0xffff) * (1.0f / 65536.0f)) * g;
    float du = u - fu * g - ou, dv = v - fv * g - ov;
    return cover(sqrtf(du * du + dv * dv) - s->gran_r, b);
}

static void render_one(const sy_cell_t *c, double mpp, double x0, double y0, int w, int h,
                       float *od)
{
    shape_t s;
    shape_init(&s, c, mpp);
    float reach = (s.R * (1.0f + s.h2 + s.h3) + 2.0f * s.blur) / (float)mpp; /* pixels */
    int i0 = (int)floor(c->cx - reach - x0), i1 = (int)ceil(c->cx + reach - x0);
    int j0 = (int)floor(c->cy - reach - y0), j1 = (int)ceil(c->cy + reach - y0);
    if (i0 < 0) i0 = 0;
    if (j0 < 0) j0 = 0;
    if (i1 > w) i1 = w;
    if (j1 > h) j1 = h;
    if (i0 >= i1 || j0 >= j1) return;
    const float m = (float)mpp, b = s.blur, gb = 0.5f * b;
    const int irregular = s.h2 > 0 || s.h3 > 0;
    for (int j = j0; j < j1; j++) {
        float dy = (float)(y0 + j + 0.5 - c->cy) * m;
        float *row = od + (size_t)j * (size_t)w * 3;
        for (int i = i0; i < i1; i++) {
            float dx = (float)(x0 + i + 0.5 - c->cx) * m;
            float u = s.ca * dx + s.sa * dy, v = -s.sa * dx + s.ca * dy;
            float rho = sqrtf(u * u + v * v * s.ey * s.ey);
            float Reff = s.R;
            if (irregular) {
                float th = atan2f(v, u);
                Reff *= 1.0f + s.h2 * cosf(2.0f * th + s.p2) + s.h3 * cosf(3.0f * th + s.p3);
            }
            float d = rho - Reff;
            if (d >= b) continue;
            float ac = cover(d, b) * s.od_scale;
            float *px = row + 3 * i;
            if (c->cls == SS_SYNTH_RBC) {
                float q = rho / s.R;
                float t = (q - 0.12f) / 0.6f; /* biconcave: thin centre, thick rim */
                t = t < 0 ? 0 : t > 1 ? 1 : t;
                t = t * t * (3.0f - 2.0f * t);
                float thick = s.pallor + (1.0f - s.pallor) * t;
                for (int k = 0; k < 3; k++)
                    px[k] += ac * thick * OD_RBC[k];
                continue;
            }
            if (c->cls == SS_SYNTH_PLT) {
                float n = fbm2((u + s.tu) / s.chrom_scale, (v + s.tv) / s.chrom_scale, s.tex);
                float f = 1.0f + s.chrom_contrast * (2.0f * n - 1.0f);
                for (int k = 0; k < 3; k++)
                    px[k] += ac * f * OD_PLT[k];
                continue;
            }
            float an = cover(nucleus_sdf(&s, u, v), b);
            float cyt[3] = {s.od_cyt[0], s.od_cyt[1], s.od_cyt[2]};
            if (s.gran_mode != GRAN_NONE && an < 1.0f) {
                float g = granule(&s, u + s.tu, v + s.tv, gb);
                if (s.gran_mode == GRAN_ADD)
                    for (int k = 0; k < 3; k++)
                        cyt[k] += g * s.od_gran[k];
                else
                    for (int k = 0; k < 3; k++)
                        cyt[k] *= 1.0f - s.vacuole * g;
            }
            float nf = 0.0f;
            if (an > 0.0f) {
                float n = fbm2((u + s.tu) / s.chrom_scale, (v + s.tv) / s.chrom_scale, s.tex);
                nf = 1.0f + s.chrom_contrast * (2.0f * n - 1.0f);
                for (int l = 0; l < s.nnl; l++) {
                    float du = u - s.ox[l], dv = v - s.oy[l];
                    nf *= 1.0f - s.pale * cover(sqrtf(du * du + dv * dv) - s.orad[l], 0.35f);
                }
            }
            for (int k = 0; k < 3; k++)
                px[k] += ac * ((1.0f - an) * cyt[k] + an * nf * s.od_nuc[k]);
        }
    }
}

void sy_render_cells(const sy_cell_t *cells, size_t n, double mpp, double x0, double y0, int w,
                     int h, float *od)
{
    for (size_t i = 0; i < n; i++)
        render_one(&cells[i], mpp, x0, y0, w, h, od);
}

/* Background brightness per channel at a scene point (µm): slow lamp/thickness variation, the
 * vignetting of each scanner field of view, and a faint colour drift. */
static void illumination(double xu, double yu, uint64_t seed, float out[3])
{
    float lo = fbm2((float)(xu / 900.0), (float)(yu / 900.0), seed ^ 0x1111);
    float tint = vnoise((float)(xu / 1500.0), (float)(yu / 1500.0), seed ^ 0x2222) - 0.5f;
    const double fov = 480.0;
    double fx = fmod(xu, fov) / fov * 2.0 - 1.0, fy = fmod(yu, fov) / fov * 2.0 - 1.0;
    float vig = 0.022f * (float)(fx * fx + fy * fy);
    float base = 1.0f - 0.07f * lo - vig;
    out[0] = 236.0f * base * (1.0f + 0.025f * tint);
    out[1] = 232.0f * base;
    out[2] = 240.0f * base * (1.0f - 0.025f * tint);
}

#define ILLUM_STEP 64 /* illumination is evaluated on a global 64-px grid and interpolated */

static inline int64_t floor_div(int64_t a, int64_t b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

void sy_expose(const float *od, int w, int h, int64_t ix, int64_t iy, double mpp, uint64_t seed,
               uint8_t *rgb, size_t stride)
{
    /* Illumination nodes lie on a global grid, so tiles rendered apart join without seams;
     * along a row, brightness is linear within each 64-px grid cell. */
    float node[4][3];
    for (int j = 0; j < h; j++) {
        const int64_t Y = iy + j;
        const int64_t gy = floor_div(Y, ILLUM_STEP);
        const float ty = (float)(Y - gy * ILLUM_STEP) / ILLUM_STEP;
        uint8_t *out = rgb + (size_t)j * stride;
        const float *o = od + (size_t)j * (size_t)w * 3;
        int i = 0;
        while (i < w) {
            const int64_t X0 = ix + i;
            const int64_t gx = floor_div(X0, ILLUM_STEP);
            int end = (int)((gx + 1) * ILLUM_STEP - ix); /* first pixel of the next grid cell */
            if (end > w) end = w;
            for (int q = 0; q < 4; q++)
                illumination((double)((gx + (q & 1)) * ILLUM_STEP) * mpp,
                             (double)((gy + (q >> 1)) * ILLUM_STEP) * mpp, seed, node[q]);
            float L0[3], dL[3];
            for (int k = 0; k < 3; k++) {
                float left = node[0][k] + (node[2][k] - node[0][k]) * ty;
                float right = node[1][k] + (node[3][k] - node[1][k]) * ty;
                L0[k] = left;
                dL[k] = (right - left) / ILLUM_STEP;
            }
            for (; i < end; i++) {
                const int64_t X = ix + i;
                const float tx = (float)(X - gx * ILLUM_STEP);
                uint64_t hn = sy_mix(seed ^ ((uint64_t)X * 0x9e3779b97f4a7c15ull) ^
                                     ((uint64_t)Y * 0xc2b2ae3d27d4eb4full));
                const float *d = o + 3 * i;
                uint8_t *px = out + 3 * i;
                const int lit = d[0] > 0.0f || d[1] > 0.0f || d[2] > 0.0f;
                for (int k = 0; k < 3; k++) {
                    float val = L0[k] + dL[k] * tx;
                    if (lit) val *= expf(-d[k]);
                    /* faint sensor noise, a triangular ±1 grey level */
                    val += (float)((hn >> (8 * k)) & 0xff) * (1.0f / 255.0f) +
                           (float)((hn >> (8 * k + 24)) & 0xff) * (1.0f / 255.0f) - 1.0f;
                    int vi = (int)(val + 0.5f);
                    px[k] = (uint8_t)(vi < 0 ? 0 : vi > 255 ? 255 : vi);
                }
            }
        }
    }
}
