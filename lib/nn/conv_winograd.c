/* Winograd F(2×2, 3×3) for 3×3 stride-1 pad-1 convolutions (most of ResNet's FLOPs): 16 sgemms
 * of [cout, cin] · [cin, tiles] replace one of [cout, 9·cin] · [9·cin, 4·tiles], i.e. 2.25× fewer
 * multiplications, and the transformed input is 4× the input instead of im2col's 9×.
 *
 *   U[ξ][co][ci] = (G g G^T)[ξ]     weights, 4×4 per (co, ci)          ξ = 0..15
 *   V[ξ][ci][t]  = (B^T d B)[ξ]     input 4×4 patch of tile t (rows/cols 2ty-1 .. 2ty+2)
 *   M[ξ]         = U[ξ] · V[ξ]      16 sgemms per block of tiles
 *   y            = A^T M A          2×2 output of tile t, + bias, + residual, ReLU
 * with B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1],
 * A^T = [1 1 1 0; 0 1 -1 -1]. The transforms only add and halve, so the result matches the
 * direct convolution to a few float ulps of the activation scale.
 *
 * The input gradient of such a conv is again a 3×3 stride-1 pad-1 conv (of dout with the
 * weights flipped and cin/cout swapped), so the backward pass reuses this with flip = 1.
 *
 * Threading: U is computed in parallel over (co, ci); tiles are split into blocks whose extent
 * depends on the shape and the CPU count only, handed out dynamically; each block is transformed,
 * multiplied and written back by one thread (its own slot of V and M), so results do not depend
 * on the thread count. */
#include "nn_internal.h"

#include <omp.h>
#include <string.h>
#include <stdlib.h>

static int wino_enabled = 1;

void ss_conv2d_set_winograd(int on)
{
    wino_enabled = on != 0;
}

int ss_conv_wino_applies(const ss_conv2d_t *c)
{
    if (!wino_enabled || c->kh != 3 || c->kw != 3 || c->sh != 1 || c->sw != 1 || c->ph != 1 ||
        c->pw != 1)
        return 0;
    /* Partial tiles waste work: 3×3 outputs compute 4×4. Require < 1.5× waste, and enough tiles
     * that the per-call weight transform and the small sgemms pay off. */
    long th = (c->h + 1) / 2, tw = (c->w + 1) / 2;
    long tiles = (long)c->n * th * tw;
    return 4 * th * tw * 2 <= 3L * c->h * c->w && tiles >= 128;
}

static int wino_slots(void)
{
    int p = omp_get_num_procs();
    return p > 0 ? p : 1;
}

/* Tiles per block: about three blocks per CPU, 32 .. 512, a multiple of 16. */
static int wino_tb(const ss_conv2d_t *c)
{
    long tiles = (long)c->n * ((c->h + 1) / 2) * ((c->w + 1) / 2);
    long s = wino_slots();
    long tb = (tiles + 3 * s - 1) / (3 * s);
    tb = (tb + 15) / 16 * 16;
    static int cap = -1;
    if (cap < 0) { const char *e = getenv("SS_TB"); cap = e ? atoi(e) : 512; }
    return (int)(tb < 32 ? 32 : tb > cap ? cap : tb);
}

size_t ss_conv_wino_workspace(const ss_conv2d_t *c)
{
    return (size_t)16 * c->cout * c->cin +
           (size_t)wino_slots() * 16 * (size_t)(c->cin + c->cout) * wino_tb(c);
}

/* U[16][cout][cin] from weight [cout][cin][3][3]; flip: weight is the forward weight of the
 * transposed problem, i.e. [cin][cout][3][3] read as w'[co][ci][ky][kx] = w[ci][co][2-ky][2-kx]. */
static void wino_weights(const ss_conv2d_t *c, float *U, const float *weight, int flip)
{
    const int cout = c->cout, cin = c->cin;
    const size_t plane = (size_t)cout * cin;
#pragma omp for collapse(2) schedule(static)
    for (int co = 0; co < cout; co++) {
        for (int ci = 0; ci < cin; ci++) {
            float g[3][3], t[4][3];
            if (!flip) {
                const float *w = weight + ((size_t)co * cin + ci) * 9;
                for (int i = 0; i < 9; i++)
                    g[i / 3][i % 3] = w[i];
            } else {
                const float *w = weight + ((size_t)ci * cout + co) * 9;
                for (int i = 0; i < 9; i++)
                    g[i / 3][i % 3] = w[8 - i];
            }
            for (int j = 0; j < 3; j++) { /* G g */
                t[0][j] = g[0][j];
                t[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
                t[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
                t[3][j] = g[2][j];
            }
            for (int i = 0; i < 4; i++) { /* (G g) G^T */
                float *u = U + (size_t)(i * 4) * plane + (size_t)co * cin + ci;
                u[0] = t[i][0];
                u[plane] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
                u[2 * plane] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
                u[3 * plane] = t[i][2];
            }
        }
    }
}

/* Where tile t of a block lives: image, top-left input corner (may be -1), interior flag. */
typedef struct {
    int img, y0, x0, inner;
} wino_tile_t;

static void wino_tiles(const ss_conv2d_t *c, wino_tile_t *tl, long t0, long t1)
{
    const int h = c->h, w = c->w, th = (h + 1) / 2, tw = (w + 1) / 2;
    for (long t = t0; t < t1; t++) {
        const int rem = (int)(t % ((long)th * tw)), ty = rem / tw, tx = rem % tw;
        wino_tile_t *e = &tl[t - t0];
        e->img = (int)(t / ((long)th * tw));
        e->y0 = 2 * ty - 1;
        e->x0 = 2 * tx - 1;
        e->inner = e->y0 >= 0 && e->x0 >= 0 && e->y0 + 3 < h && e->x0 + 3 < w;
    }
}

/* V[16][cin][ldv] for the nb tiles tl[]. Channel-major so that each of the 16 rows of V is
 * written sequentially. */
static void wino_input(const ss_conv2d_t *c, float *V, int ldv, const float *in,
                       const wino_tile_t *tl, int nb)
{
    const int h = c->h, w = c->w, cin = c->cin;
    const size_t plane = (size_t)h * w, vstride = (size_t)cin * ldv;
    for (int ci = 0; ci < cin; ci++) {
        float *vc = V + (size_t)ci * ldv;
        for (int j = 0; j < nb; j++) {
            const wino_tile_t *e = &tl[j];
            const float *p = in + ((size_t)e->img * cin + ci) * plane;
            float d[4][4];
            if (e->inner) {
                const float *q = p + (size_t)e->y0 * w + e->x0;
                for (int i = 0; i < 4; i++)
                    for (int k = 0; k < 4; k++)
                        d[i][k] = q[(size_t)i * w + k];
            } else {
                for (int i = 0; i < 4; i++)
                    for (int k = 0; k < 4; k++) {
                        int y = e->y0 + i, x = e->x0 + k;
                        d[i][k] = (y >= 0 && y < h && x >= 0 && x < w) ? p[(size_t)y * w + x] : 0;
                    }
            }
            float r[4][4];
            for (int k = 0; k < 4; k++) { /* B^T d */
                r[0][k] = d[0][k] - d[2][k];
                r[1][k] = d[1][k] + d[2][k];
                r[2][k] = d[2][k] - d[1][k];
                r[3][k] = d[1][k] - d[3][k];
            }
            for (int i = 0; i < 4; i++) { /* (B^T d) B */
                vc[(size_t)(i * 4 + 0) * vstride + j] = r[i][0] - r[i][2];
                vc[(size_t)(i * 4 + 1) * vstride + j] = r[i][1] + r[i][2];
                vc[(size_t)(i * 4 + 2) * vstride + j] = r[i][2] - r[i][1];
                vc[(size_t)(i * 4 + 3) * vstride + j] = r[i][1] - r[i][3];
            }
        }
    }
}

/* out for the nb tiles tl[] = A^T M A (+ bias, + residual, ReLU) from M[16][cout][ldm]. */
static void wino_output(const ss_conv2d_t *c, float *out, const float *M, int ldm,
                        const float *bias, const float *residual, int relu,
                        const wino_tile_t *tl, int nb)
{
    const int h = c->h, w = c->w, cout = c->cout;
    const size_t plane = (size_t)h * w, mstride = (size_t)cout * ldm;
    for (int co = 0; co < cout; co++) {
        const float *mc = M + (size_t)co * ldm;
        const float b = bias ? bias[co] : 0.0f;
        for (int j = 0; j < nb; j++) {
            const wino_tile_t *e = &tl[j];
            const int y0 = e->y0 + 1, x0 = e->x0 + 1; /* output corner */
            const int ny = y0 + 1 < h ? 2 : 1, nx = x0 + 1 < w ? 2 : 1;
            float v[16], s[2][4];
            for (int k = 0; k < 16; k++)
                v[k] = mc[(size_t)k * mstride + j];
            for (int k = 0; k < 4; k++) { /* A^T M */
                s[0][k] = v[k] + v[4 + k] + v[8 + k];
                s[1][k] = v[4 + k] - v[8 + k] - v[12 + k];
            }
            float y[2][2];
            for (int i = 0; i < 2; i++) { /* (A^T M) A */
                y[i][0] = s[i][0] + s[i][1] + s[i][2];
                y[i][1] = s[i][1] - s[i][2] - s[i][3];
            }
            const size_t off = ((size_t)e->img * cout + co) * plane + (size_t)y0 * w + x0;
            for (int i = 0; i < ny; i++)
                for (int k = 0; k < nx; k++) {
                    const size_t o = off + (size_t)i * w + k;
                    float val = y[i][k] + b + (residual ? residual[o] : 0.0f);
                    out[o] = (relu && val < 0.0f) ? 0.0f : val;
                }
        }
    }
}

void ss_conv_wino_forward(const ss_conv2d_t *c, float *out, const float *in, const float *weight,
                          int flip, const float *bias, const float *residual, int relu,
                          float *work)
{
    ss_nn_blas_single();
    const int cin = c->cin, cout = c->cout, tb = wino_tb(c), slots = wino_slots();
    const long tiles = (long)c->n * ((c->h + 1) / 2) * ((c->w + 1) / 2);
    const long nblocks = (tiles + tb - 1) / tb;
    float *U = work, *slot0 = work + (size_t)16 * cout * cin;
    int nt = omp_get_max_threads();
    nt = nt < slots ? nt : slots;
#pragma omp parallel num_threads(nt)
    {
        wino_weights(c, U, weight, flip); /* ends with the for's barrier */
        float *V = slot0 + (size_t)omp_get_thread_num() * 16 * (size_t)(cin + cout) * tb;
        float *M = V + (size_t)16 * cin * tb;
#pragma omp for schedule(dynamic, 1)
        for (long b = 0; b < nblocks; b++) {
            const long t0 = b * tb, t1 = t0 + tb < tiles ? t0 + tb : tiles;
            const int nb = (int)(t1 - t0);
            wino_tile_t tl[512]; /* tb <= 512 */
            wino_tiles(c, tl, t0, t1);
            wino_input(c, V, tb, in, tl, nb);
            for (int k = 0; k < 16; k++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, nb, cin, 1.0f,
                            U + (size_t)k * cout * cin, cin, V + (size_t)k * cin * tb, tb, 0.0f,
                            M + (size_t)k * cout * tb, tb);
            wino_output(c, out, M, tb, bias, residual, relu, tl, nb);
        }
    }
}
