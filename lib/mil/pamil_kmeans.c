/* PAMIL prototype initialisation by two-stage k-means, as the original PAMIL prepares its
 * prototypes (specs/methods.md §3.2): per bag k = min(n, 8) centres, the centres pooled, then
 * K centres of the pool (mil_pamil.h). The caller owns the bags; everything else is allocated
 * and freed here.
 *
 * Determinism: one RNG from the seed, consumed in bag order; squared distances come from one
 * sgemm per block (each element summed by one thread in a fixed order) and the centre sums run
 * serially in row order, so the result depends on the seed only.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/error.h"
#include "slidestream/mil_pamil.h"
#include "slidestream/nn_layers.h"

#define DOM "mil"
#define PER_BAG 8     /* stage-1 centres per bag */
#define MAX_ITERS 100 /* Lloyd iterations at most */
#define BLOCK 4096    /* rows per distance block */

typedef struct {
    int n, d, k;
    const float *x; /* (n, d) */
    float *c;       /* (k, d) centres */
    int *assign;    /* (n) */
    double *dist;   /* (n) squared distance to the assigned (or nearest chosen) centre */
    float *xx;      /* (n) |x|^2 */
    float *cc;      /* (k) |c|^2 */
    float *dots;    /* (BLOCK, k) */
    double *sum;    /* (k, d) */
    int *count;     /* (k) */
} km_t;

static double sqdist(const float *a, const float *b, int d)
{
    double s = 0;
    for (int j = 0; j < d; j++) {
        double t = (double)a[j] - b[j];
        s += t * t;
    }
    return s;
}

/* k-means++ seeding: the first centre uniformly, each next one with probability ∝ D². */
static void seed_plus_plus(km_t *km, ss_rng_t *rng)
{
    int n = km->n, d = km->d;
    int first = (int)(ss_rng_u64(rng) % (uint64_t)n);
    memcpy(km->c, km->x + (size_t)first * d, (size_t)d * sizeof(float));
    for (int i = 0; i < n; i++)
        km->dist[i] = sqdist(km->x + (size_t)i * d, km->c, d);
    for (int j = 1; j < km->k; j++) {
        double total = 0;
        for (int i = 0; i < n; i++)
            total += km->dist[i];
        int pick = -1;
        if (total > 0) {
            double r = (double)(ss_rng_u64(rng) >> 11) * (1.0 / 9007199254740992.0) * total;
            for (int i = 0; i < n; i++) {
                if (km->dist[i] <= 0) continue;
                pick = i; /* the last candidate, should rounding leave r >= 0 at the end */
                r -= km->dist[i];
                if (r < 0) break;
            }
        } else { /* every point sits on a centre already: any point */
            pick = (int)(ss_rng_u64(rng) % (uint64_t)n);
        }
        float *cj = km->c + (size_t)j * d;
        memcpy(cj, km->x + (size_t)pick * d, (size_t)d * sizeof(float));
        for (int i = 0; i < n; i++) {
            double t = sqdist(km->x + (size_t)i * d, cj, d);
            if (t < km->dist[i]) km->dist[i] = t;
        }
    }
}

/* Nearest centre of every point (|x|² - 2 x.c + |c|², first minimum); the number of changes. */
static int assign(km_t *km)
{
    int n = km->n, d = km->d, k = km->k, changed = 0;
    for (int j = 0; j < k; j++) {
        double s = 0;
        for (int t = 0; t < d; t++)
            s += (double)km->c[(size_t)j * d + t] * km->c[(size_t)j * d + t];
        km->cc[j] = (float)s;
    }
    for (int r0 = 0; r0 < n; r0 += BLOCK) {
        int rows = n - r0 < BLOCK ? n - r0 : BLOCK;
        ss_sgemm(0, 1, rows, k, d, 1.0f, km->x + (size_t)r0 * d, d, km->c, d, 0.0f, km->dots, k);
        for (int r = 0; r < rows; r++) {
            const float *dt = km->dots + (size_t)r * k;
            int i = r0 + r, best = 0;
            double bd = INFINITY;
            for (int j = 0; j < k; j++) {
                double v = (double)km->xx[i] - 2.0 * dt[j] + km->cc[j];
                if (v < bd) bd = v, best = j;
            }
            changed += km->assign[i] != best;
            km->assign[i] = best;
            km->dist[i] = bd;
        }
    }
    return changed;
}

/* Centres = means of their points; an empty cluster takes the point farthest from its centre. */
static void update(km_t *km)
{
    int n = km->n, d = km->d, k = km->k;
    memset(km->sum, 0, (size_t)k * d * sizeof(double));
    memset(km->count, 0, (size_t)k * sizeof(int));
    for (int i = 0; i < n; i++) {
        double *s = km->sum + (size_t)km->assign[i] * d;
        const float *x = km->x + (size_t)i * d;
        for (int t = 0; t < d; t++)
            s[t] += x[t];
        km->count[km->assign[i]]++;
    }
    for (int j = 0; j < k; j++) {
        float *c = km->c + (size_t)j * d;
        if (km->count[j]) {
            for (int t = 0; t < d; t++)
                c[t] = (float)(km->sum[(size_t)j * d + t] / km->count[j]);
            continue;
        }
        int far = 0;
        for (int i = 1; i < n; i++)
            if (km->dist[i] > km->dist[far]) far = i;
        memcpy(c, km->x + (size_t)far * d, (size_t)d * sizeof(float));
        km->dist[far] = -1.0; /* not again for another empty cluster */
    }
}

/* centres (k, d) of x (n, d), 1 <= k <= n. */
static int kmeans(float *centres, const float *x, int n, int d, int k, ss_rng_t *rng)
{
    km_t km = {n, d, k, x, centres, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    int blk = n < BLOCK ? n : BLOCK;
    km.assign = malloc((size_t)n * sizeof(int));
    km.dist = malloc((size_t)n * sizeof(double));
    km.xx = malloc((size_t)n * sizeof(float));
    km.cc = malloc((size_t)k * sizeof(float));
    km.dots = malloc((size_t)blk * k * sizeof(float));
    km.sum = malloc((size_t)k * d * sizeof(double));
    km.count = malloc((size_t)k * sizeof(int));
    int rc = 0;
    if (!km.assign || !km.dist || !km.xx || !km.cc || !km.dots || !km.sum || !km.count) {
        rc = ss_error(DOM, "k-means: out of memory for %d points of width %d", n, d);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int t = 0; t < d; t++)
            s += (double)x[(size_t)i * d + t] * x[(size_t)i * d + t];
        km.xx[i] = (float)s;
        km.assign[i] = -1;
    }
    seed_plus_plus(&km, rng);
    for (int it = 0; it < MAX_ITERS; it++) {
        if (!assign(&km) && it > 0) break;
        update(&km);
    }
done:
    free(km.assign), free(km.dist), free(km.xx), free(km.cc), free(km.dots), free(km.sum);
    free(km.count);
    return rc;
}

int ss_mil_pamil_kmeans_init(ss_mil_t *m, const float *const *bags, const int *sizes, int nbags,
                             uint64_t seed)
{
    if (!m || m->cfg.arch != SS_MIL_PAMIL)
        return ss_error(DOM, "k-means prototypes: the model is %s, not pamil",
                        m ? ss_mil_arch_name(m->cfg.arch) : "(none)");
    int d = m->cfg.dim, K = m->cfg.protos, idx = ss_mil_tensor(m, "proto");
    size_t pool_n = 0;
    for (int b = 0; b < nbags; b++) {
        if (sizes[b] < 0 || (sizes[b] > 0 && !bags[b]))
            return ss_error(DOM, "k-means prototypes: bag %d has %d cells and %s data", b, sizes[b],
                            bags[b] ? "some" : "no");
        pool_n += (size_t)(sizes[b] < PER_BAG ? sizes[b] : PER_BAG);
    }
    if (pool_n < (size_t)K)
        return ss_error(DOM,
                        "k-means prototypes: %d bags give %zu centres, fewer than the %d "
                        "prototypes",
                        nbags, pool_n, K);
    if (pool_n > (size_t)INT32_MAX)
        return ss_error(DOM, "k-means prototypes: %zu centres are too many", pool_n);
    float *pool = malloc((pool_n + K) * d * sizeof(float)), *protos = pool + pool_n * d;
    if (!pool) return ss_error(DOM, "k-means prototypes: out of memory for %zu centres", pool_n);
    ss_rng_t rng;
    ss_rng_seed(&rng, seed);
    size_t at = 0;
    int rc = 0;
    for (int b = 0; b < nbags && !rc; b++) {
        if (!sizes[b]) continue;
        int k = sizes[b] < PER_BAG ? sizes[b] : PER_BAG;
        rc = kmeans(pool + at * d, bags[b], sizes[b], d, k, &rng);
        at += (size_t)k;
    }
    if (!rc) rc = kmeans(protos, pool, (int)pool_n, d, K, &rng);
    if (!rc) memcpy(ss_mil_param(m, idx), protos, (size_t)K * d * sizeof(float));
    free(pool);
    return rc;
}
