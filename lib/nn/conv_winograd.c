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
 * on the thread count. Small images with many channels go channels last (wino_cl): images are
 * transformed by one thread each, each plane's product by one thread, all over fixed shapes.
 *
 * Inference (U precomputed, ss_conv_wino_forward_u) also has larger tiles, further down:
 * F(4×4, 3×3) on maps whose sides are multiples of 4 and F(3×3, 3×3) on 6×6 and 3×3 maps. */
#include "nn_internal.h"

#include <omp.h>
#include <string.h>

static int wino_enabled = 1;
static int wino_cl(const ss_conv2d_t *c);
/* F(3×3, 3×3) and F(4×4, 3×3) for inference (further down) */
static int wino4(const ss_conv2d_t *c);
static size_t wino4_workspace(const ss_conv2d_t *c);
static size_t wino4_ustride(const ss_conv2d_t *c);
static void wino4_weights(const ss_conv2d_t *c, float *U, const float *weight);
static void wino4_forward_u(const ss_conv2d_t *c, float *out, const float *in, const float *U,
                            const float *bias, const float *residual, int relu, float *work);
static int wino3(const ss_conv2d_t *c);
static size_t wino3_workspace(const ss_conv2d_t *c);
static void wino3_weights(const ss_conv2d_t *c, float *U, const float *weight);
static void wino3_forward_u(const ss_conv2d_t *c, float *out, const float *in, const float *U,
                            const float *bias, const float *residual, int relu, float *work);


void ss_conv2d_set_winograd(int on)
{
    wino_enabled = on != 0;
    ss_conv_pairs_enable(on);
}

/* The shape qualifies: partial tiles waste work (3×3 outputs compute 4×4), so the waste must
 * stay under 1.5×. */
static int wino_kernel(const ss_conv2d_t *c)
{
    return wino_enabled && c->kh == 3 && c->kw == 3 && c->sh == 1 && c->sw == 1 && c->ph == 1 &&
           c->pw == 1;
}

static int wino_shape(const ss_conv2d_t *c)
{
    const long th = (c->h + 1) / 2, tw = (c->w + 1) / 2;
    return wino_kernel(c) && 4 * th * tw * 2 <= 3L * c->h * c->w;
}

static long wino_tiles(const ss_conv2d_t *c)
{
    return (long)c->n * ((c->h + 1) / 2) * ((c->w + 1) / 2);
}

/* Enough tiles that the per-call weight transform and the small sgemms pay off. */
int ss_conv_wino_applies(const ss_conv2d_t *c)
{
    return wino_shape(c) && wino_tiles(c) >= 128;
}

/* With U precomputed there is no per-call transform, and the channels-last path (small images,
 * many channels) beats im2col from 16 tiles on, even with up to 2× waste: at 2×2 (ResNet's
 * layer4 at 64 px) one tile is the image and U holds 16 / 9 of the weights where im2col
 * computes 9 / 4 of the products; at 3×3 (layer4 at 96 px) 4 tiles make 64 products per
 * weight pair and image against im2col's 81 (measured 5% faster over the model). */
int ss_conv_wino_applies_u(const ss_conv2d_t *c)
{
    if (wino4(c))
        return 1;
    const long th = (c->h + 1) / 2, tw = (c->w + 1) / 2;
    if (wino_cl(c) && wino_kernel(c) && wino_tiles(c) >= 16 && 4 * th * tw <= 2L * c->h * c->w)
        return 1;
    return wino_shape(c) && wino_tiles(c) >= 128;
}

static int wino_slots(void)
{
    int p = omp_get_num_procs();
    return p > 0 ? p : 1;
}

/* Narrow images (fewer than 16 tiles per row: every 3×3 layer at the 64/96 px crop sizes) are
 * transformed a few tile rows at a time along the whole rows (wino_input_rows and friends): a
 * tile row alone is too short to vectorise along. Wider images go by row strips. */
static int wino_narrow(const ss_conv2d_t *c)
{
    return (c->w + 1) / 2 < 16;
}

/* Tiles per block: about three blocks per CPU, 32 .. 512, a multiple of 16; for narrow images
 * at most 128 with few channels, and rounded to whole tile rows, so that a block is a run of
 * complete rows. */
static int wino_tb(const ss_conv2d_t *c)
{
    long tiles = (long)c->n * ((c->h + 1) / 2) * ((c->w + 1) / 2);
    long s = wino_slots();
    long tb = (tiles + 3 * s - 1) / (3 * s);
    tb = (tb + 15) / 16 * 16;
    tb = tb < 32 ? 32 : tb > 512 ? 512 : tb;
    if (wino_narrow(c)) {
        /* measured: with 64 channels or fewer, 128-tile blocks keep V and M in cache and beat
         * longer sgemms (64 px layer1 forward 13% faster); more channels want the longer ones */
        if (c->cin <= 64 && tb > 128)
            tb = 128;
        const long tw = (c->w + 1) / 2, rows = (tb + tw / 2) / tw;
        tb = (rows < 1 ? 1 : rows) * tw;
    }
    return (int)tb;
}

/* Blocks over `tiles` tiles: of tb tiles (the last one shorter) for wide images; for narrow
 * ones a multiple of the CPU count of blocks whose whole-row extents differ by at most a row,
 * so that the dynamic schedule ends with the threads even (at 64/96 px a layer has only 4-16
 * blocks). Both depend on the shape and the CPU count only. */
static long wino_nblocks(const ss_conv2d_t *c, long tiles, int tb)
{
    long nb = (tiles + tb - 1) / tb;
    if (wino_narrow(c)) {
        const long s = wino_slots(), rows = tiles / ((c->w + 1) / 2);
        nb = (nb + s - 1) / s * s;
        nb = nb > rows ? rows : nb;
    }
    return nb;
}

/* Tiles [*t0, *t1) of block b of nb over `tiles` tiles. */
static void wino_block(const ss_conv2d_t *c, long tiles, int tb, long nb, long b, long *t0,
                       long *t1)
{
    if (wino_narrow(c)) {
        const long tw = (c->w + 1) / 2, rows = tiles / tw;
        *t0 = rows * b / nb * tw;
        *t1 = rows * (b + 1) / nb * tw;
    } else {
        *t0 = b * tb;
        *t1 = *t0 + tb < tiles ? *t0 + tb : tiles;
    }
}

/* Small images, many channels (layers 2-4 at the 64/96 px crop sizes): a tile row has only
 * 1-6 tiles, too short to vectorise along, and one block per thread would give short sgemms
 * that repack U for every block. These go channels last instead, by chunks of whole images:
 * the threads copy their images to a zero-padded [y][x][ci] layout and transform them with
 * the channels as the vector lanes into Vt[16][tiles][cin]; then the 16 sgemms run with all
 * of the chunk's tiles (a task per plane), Mt[ξ] = Vt[ξ] · U[ξ]^T; then each image's
 * [y][x][co] result goes back to NCHW with the bias, residual and ReLU. */
static int wino_cl(const ss_conv2d_t *c)
{
    return (c->w + 1) / 2 <= 4 && (size_t)c->cin * c->cout >= (size_t)128 * 128;
}

/* Images per channels-last chunk: Vt and Mt together within about 16 MB (or the scratch cap,
 * ss_conv2d_set_work_cap, when that is lower). */
static int wino_cl_images(const ss_conv2d_t *c)
{
    const long tpi = (long)((c->h + 1) / 2) * ((c->w + 1) / 2);
    const size_t cap = ss_conv_work_cap() < ((size_t)4 << 20) ? ss_conv_work_cap() : (size_t)4 << 20;
    long n = (long)(cap / (16 * ((size_t)c->cin + c->cout) * tpi));
    return (int)(n < 1 ? 1 : n > c->n ? c->n : n);
}

/* Scratch per thread of the channels-last path: one padded input image [2th+2][2tw+2][cin],
 * one output image [2th][2tw][cout] and cout zeros (the bias when there is none). */
static size_t wino_cl_tmp_floats(const ss_conv2d_t *c)
{
    const size_t th = (c->h + 1) / 2, tw = (c->w + 1) / 2;
    return (2 * th + 2) * (2 * tw + 2) * c->cin + 4 * th * tw * c->cout + c->cout + 64;
}

/* Output channels of one panel of the channels-last U (see wino_gemm_panels). */
#define WINO_PANEL SS_PANEL

/* Output channels U holds: cout, rounded up to whole panels on the channels-last path. */
static int wino_ucout(const ss_conv2d_t *c)
{
    return wino_cl(c) ? (c->cout + WINO_PANEL - 1) / WINO_PANEL * WINO_PANEL : c->cout;
}

/* Floats between the 16 planes of U (and of dU): padded like V and M below. */
static size_t wino_ustride(const ss_conv2d_t *c)
{
    return (size_t)wino_ucout(c) * c->cin + 16;
}

/* Offset of U[co][ci] within a plane: row-major [cout][cin], or on the channels-last path in
 * panels [cout / 32][cin][32] that wino_gemm_panels streams in order. */
static inline size_t wino_uoff(int cl, int cin, int co, int ci)
{
    if (!cl)
        return (size_t)co * cin + ci;
    return ((size_t)(co / WINO_PANEL) * cin + ci) * WINO_PANEL + co % WINO_PANEL;
}

/* Floats between the 16 planes of V ([ch][tb] each) and of M: padded by 32 floats so the 16
 * streams of a transform do not fall into the same cache sets (power-of-two strides thrash). */
static size_t wino_pstride(int ch, int tb)
{
    return (size_t)ch * tb + 32; /* also: the spare columns of a partial panel (ss_gemm_panels) */
}

/* Scratch per slot for the transforms. Strips: 16 rows of tb floats, plus one zero-padded image
 * row. Narrow images: the four polyphase planes and the 16 planes of the flat transform for the
 * stacked pieces of a block, at most 2 tb / tw rows of tw + 1 columns (<= 4 tb floats), plus
 * slack. */
static size_t wino_tmp_floats(const ss_conv2d_t *c, int tb)
{
    if (wino_narrow(c))
        return (size_t)80 * tb + 1024;
    return (size_t)16 * tb + 2 * (size_t)c->w + 8;
}

size_t ss_conv_wino_workspace(const ss_conv2d_t *c)
{
    const int tb = wino_tb(c);
    size_t w2;
    if (wino_cl(c)) {
        const int tc = wino_cl_images(c) * ((c->h + 1) / 2) * ((c->w + 1) / 2);
        w2 = 16 * wino_ustride(c) + 16 * (wino_pstride(tc, c->cin) + wino_pstride(tc, c->cout)) +
             (size_t)wino_slots() * wino_cl_tmp_floats(c);
    } else {
        w2 = 16 * wino_ustride(c) +
             (size_t)wino_slots() * (16 * (wino_pstride(c->cin, tb) + wino_pstride(c->cout, tb)) +
                                     wino_tmp_floats(c, tb));
    }
    /* the inference-only tilings (ss_conv_wino_forward_u) share this workspace */
    const size_t w3 = wino3(c) ? wino3_workspace(c) : 0, w4 = wino4(c) ? wino4_workspace(c) : 0;
    const size_t w34 = w3 > w4 ? w3 : w4;
    return w2 > w34 ? w2 : w34;
}

/* U[16][cout][cin] from weight [cout][cin][3][3]; flip: weight is the forward weight of the
 * transposed problem, i.e. [cin][cout][3][3] read as w'[co][ci][ky][kx] = w[ci][co][2-ky][2-kx]. */
static void wino_weights(const ss_conv2d_t *c, float *U, const float *weight, int flip)
{
    const int cout = c->cout, cin = c->cin, cl = wino_cl(c);
    const size_t plane = wino_ustride(c);
    /* 16 lanes of the channel U is contiguous along: ci (row-major U), or co (panels: a group
     * of 16 stays inside one half-panel, and the spare channels past cout come out zero) */
    const int outer = cl ? cin : cout, inner = cl ? wino_ucout(c) : cin;
    const int groups = (inner + 15) / 16;
#pragma omp for collapse(2) schedule(static)
    for (int a = 0; a < outer; a++) {
        for (int q = 0; q < groups; q++) {
            const int b0 = q * 16, nl = inner - b0 < 16 ? inner - b0 : 16;
            float g[9][16], u[16][16];
            if (nl == 16 && (cl ? b0 + 16 <= cout : 1) && cl == flip) {
                /* a whole group whose 16 lanes' weights are 144 consecutive floats (lane j's
                 * taps at 9j, reversed when flipped): strided loads, no scalar transpose */
                const int co = cl ? b0 : a, ci = cl ? a : b0;
                const float *w = flip ? weight + ((size_t)ci * cout + co) * 9 + 8
                                      : weight + ((size_t)co * cin + ci) * 9;
                const int step = flip ? -1 : 1;
                for (int i = 0; i < 9; i++)
#pragma omp simd
                    for (int j = 0; j < 16; j++)
                        g[i][j] = w[j * 9 + i * step];
            } else for (int j = 0; j < 16; j++) {
                const int co = cl ? b0 + j : a, ci = cl ? a : b0 + j;
                if (j >= nl || co >= cout) {
                    for (int i = 0; i < 9; i++)
                        g[i][j] = 0.0f;
                } else if (!flip) {
                    const float *w = weight + ((size_t)co * cin + ci) * 9;
                    for (int i = 0; i < 9; i++)
                        g[i][j] = w[i];
                } else {
                    const float *w = weight + ((size_t)ci * cout + co) * 9;
                    for (int i = 0; i < 9; i++)
                        g[i][j] = w[8 - i];
                }
            }
#pragma omp simd
            for (int j = 0; j < 16; j++) {
                float t[4][3];
                for (int k = 0; k < 3; k++) { /* G g; g[r][k] = g[3r + k] */
                    t[0][k] = g[k][j];
                    t[1][k] = 0.5f * (g[k][j] + g[3 + k][j] + g[6 + k][j]);
                    t[2][k] = 0.5f * (g[k][j] - g[3 + k][j] + g[6 + k][j]);
                    t[3][k] = g[6 + k][j];
                }
                for (int i = 0; i < 4; i++) { /* (G g) G^T */
                    u[i * 4 + 0][j] = t[i][0];
                    u[i * 4 + 1][j] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
                    u[i * 4 + 2][j] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
                    u[i * 4 + 3][j] = t[i][2];
                }
            }
            const size_t off = wino_uoff(cl, cin, cl ? b0 : a, cl ? a : b0);
            for (int k = 0; k < 16; k++)
                memcpy(U + (size_t)k * plane + off, u[k], (size_t)nl * sizeof(float));
        }
    }
}

/* A block's tiles [t0, t1) split into segments of one tile row (image, ty) each; the transforms
 * work segment-wise so their inner loops run over consecutive tiles (contiguous in V and M,
 * stride 2 in the image) and vectorise. */
typedef struct {
    int img, ty, xa, xb; /* tiles tx in [xa, xb) of row ty of image img */
    int j0;              /* column of the first one in V / M */
} wino_seg_t;

static int wino_segments(const ss_conv2d_t *c, wino_seg_t *sg, long t0, long t1)
{
    const long th = (c->h + 1) / 2, tw = (c->w + 1) / 2;
    int n = 0;
    for (long t = t0; t < t1;) {
        const long row = t / tw; /* image * th + ty */
        const int xa = (int)(t % tw);
        const long end = (row + 1) * tw < t1 ? (row + 1) * tw : t1;
        sg[n] = (wino_seg_t){.img = (int)(row / th), .ty = (int)(row % th), .xa = xa,
                             .xb = xa + (int)(end - t), .j0 = (int)(t - t0)};
        n++;
        t = end;
    }
    return n;
}

/* V[16][cin][ldv] (plane stride vstride) for the segments. */
static void wino_input(const ss_conv2d_t *c, float *V, int ldv, size_t vstride, const float *in,
                       const wino_seg_t *sg, int nseg, float *tmp, int tb)
{
    const int h = c->h, w = c->w, cin = c->cin;
    const size_t plane = (size_t)h * w;
    float *pad = tmp + (size_t)16 * tb; /* pad[x + 1] = row[x], zeros outside [0, w) */
    for (int ci = 0; ci < cin; ci++) {
        for (int s = 0; s < nseg; s++) {
            const wino_seg_t *g = &sg[s];
            const int n = g->xb - g->xa;
            const float *p = in + ((size_t)g->img * cin + ci) * plane;
            /* Column transform of the 4 input rows: cr[i*4 + k][j] = (d_i B)[k] of tile j. */
            for (int i = 0; i < 4; i++) {
                float *c0 = tmp + (size_t)(i * 4) * tb, *c1 = c0 + tb, *c2 = c1 + tb,
                      *c3 = c2 + tb;
                const int y = 2 * g->ty - 1 + i;
                if (y < 0 || y >= h) {
                    for (int j = 0; j < n; j++)
                        c0[j] = c1[j] = c2[j] = c3[j] = 0.0f;
                    continue;
                }
                /* a_k(j) = pad[2 (xa + j) + k]; copy the part of the row the segment reads. */
                const int lo = 2 * g->xa, hi = 2 * g->xb + 2; /* pad indices [lo, hi] */
                for (int q = lo; q <= hi; q++) {
                    int x = q - 1;
                    pad[q] = (x >= 0 && x < w) ? p[(size_t)y * w + x] : 0.0f;
                }
                const float *a = pad + lo;
#pragma omp simd
                for (int j = 0; j < n; j++) {
                    float a0 = a[2 * j], a1 = a[2 * j + 1], a2 = a[2 * j + 2], a3 = a[2 * j + 3];
                    c0[j] = a0 - a2;
                    c1[j] = a1 + a2;
                    c2[j] = a2 - a1;
                    c3[j] = a1 - a3;
                }
            }
            /* Row transform (B^T ·) into the 16 planes of V. */
            float *v = V + (size_t)ci * ldv + g->j0;
            for (int k = 0; k < 4; k++) {
                const float *r0 = tmp + (size_t)(0 + k) * tb, *r1 = tmp + (size_t)(4 + k) * tb,
                            *r2 = tmp + (size_t)(8 + k) * tb, *r3 = tmp + (size_t)(12 + k) * tb;
                float *v0 = v + (size_t)(0 + k) * vstride, *v1 = v + (size_t)(4 + k) * vstride,
                      *v2 = v + (size_t)(8 + k) * vstride, *v3 = v + (size_t)(12 + k) * vstride;
#pragma omp simd
                for (int j = 0; j < n; j++) {
                    v0[j] = r0[j] - r2[j];
                    v1[j] = r1[j] + r2[j];
                    v2[j] = r2[j] - r1[j];
                    v3[j] = r1[j] - r3[j];
                }
            }
        }
    }
}

/* out for the segments = A^T M A (+ bias, + residual, ReLU) from M[16][cout][ldm]. */
static void wino_output(const ss_conv2d_t *c, float *out, const float *M, int ldm,
                        size_t mstride, const float *bias, const float *residual, int relu,
                        const wino_seg_t *sg, int nseg, float *tmp, int tb)
{
    const int h = c->h, w = c->w, cout = c->cout;
    const size_t plane = (size_t)h * w;
    float *row = tmp + (size_t)8 * tb; /* two output rows of 2n values */
    for (int co = 0; co < cout; co++) {
        const float b = bias ? bias[co] : 0.0f;
        for (int s = 0; s < nseg; s++) {
            const wino_seg_t *g = &sg[s];
            const int n = g->xb - g->xa;
            const float *m = M + (size_t)co * ldm + g->j0;
            /* A^T M: s[i][k][j] for i = 0, 1, k = 0..3 into tmp rows 0..7. */
            for (int k = 0; k < 4; k++) {
                const float *m0 = m + (size_t)(0 + k) * mstride, *m1 = m + (size_t)(4 + k) * mstride,
                            *m2 = m + (size_t)(8 + k) * mstride, *m3 = m + (size_t)(12 + k) * mstride;
                float *s0 = tmp + (size_t)k * tb, *s1 = tmp + (size_t)(4 + k) * tb;
#pragma omp simd
                for (int j = 0; j < n; j++) {
                    s0[j] = m0[j] + m1[j] + m2[j];
                    s1[j] = m1[j] - m2[j] - m3[j];
                }
            }
            /* (A^T M) A, interleaved into output rows: row[i][2j + 0/1]. */
            for (int i = 0; i < 2; i++) {
                const float *s0 = tmp + (size_t)(4 * i) * tb, *s1 = s0 + tb, *s2 = s1 + tb,
                            *s3 = s2 + tb;
                float *r = row + (size_t)i * 2 * tb;
#pragma omp simd
                for (int j = 0; j < n; j++) {
                    r[2 * j] = s0[j] + s1[j] + s2[j];
                    r[2 * j + 1] = s1[j] - s2[j] - s3[j];
                }
            }
            const int x0 = 2 * g->xa, nx = (2 * g->xb < w ? 2 * g->xb : w) - x0;
            for (int i = 0; i < 2; i++) {
                const int y = 2 * g->ty + i;
                if (y >= h)
                    break;
                const size_t off = ((size_t)g->img * cout + co) * plane + (size_t)y * w + x0;
                const float *r = row + (size_t)i * 2 * tb;
                float *o = out + off;
                const float *res = residual ? residual + off : NULL;
                if (res) {
                    for (int x = 0; x < nx; x++) {
                        float val = r[x] + b + res[x];
                        o[x] = (relu && val < 0.0f) ? 0.0f : val;
                    }
                } else if (relu) {
#pragma omp simd
                    for (int x = 0; x < nx; x++) {
                        float val = r[x] + b;
                        o[x] = val < 0.0f ? 0.0f : val;
                    }
                } else {
#pragma omp simd
                    for (int x = 0; x < nx; x++)
                        o[x] = r[x] + b;
                }
            }
        }
    }
}

/* d[0, n) = s[0, n) for the short rows of narrow images: two overlapping fixed-size copies
 * (inlined vector moves) instead of a library call per row. */
static inline void wino_copy_row(float *d, const float *s, int n)
{
    if (n >= 16 && n <= 32) {
        memcpy(d, s, 16 * sizeof(float));
        memcpy(d + n - 16, s + n - 16, 16 * sizeof(float));
    } else if (n >= 8 && n < 16) {
        memcpy(d, s, 8 * sizeof(float));
        memcpy(d + n - 8, s + n - 8, 8 * sizeof(float));
    } else {
        for (int i = 0; i < n; i++)
            d[i] = s[i];
    }
}

/* ---- narrow images ------------------------------------------------------------------------
 * A block is a run of whole tile rows, split into pieces of consecutive rows of one image. The
 * input transform copies the rows it needs, zero-padded to 2L = 2 (tw + 1) columns, into two
 * planes by row parity, P_a row u = input row 2u + a - 1: the 4×4 patch of tile q = u·L + v is
 * then at P_a[2q + k] and P_a[2q + 2L + k], so one flat loop over q vectorises (v = tw is a
 * spare, dropped on copy-out); the pieces of a block are stacked so that small images still
 * give one long loop. The output-gradient transform reads its 2×2 tiles through four compact
 * polyphase planes (q = u·tw + v), and the output transform runs flat over the compact M. */
typedef struct {
    int img, ty0, ty1; /* tile rows [ty0, ty1) of image img */
    int j0;            /* column of its first tile in V / M */
} wino_piece_t;

/* Pieces of the block of tiles [t0, t1) (both multiples of tw), columns from t0 - tbase. */
static int wino_pieces(const ss_conv2d_t *c, wino_piece_t *pc, long tbase, long t0, long t1)
{
    const long th = (c->h + 1) / 2, tw = (c->w + 1) / 2;
    int n = 0;
    for (long r = t0 / tw; r < t1 / tw;) {
        const long img = r / th, end = (img + 1) * th < t1 / tw ? (img + 1) * th : t1 / tw;
        pc[n++] = (wino_piece_t){.img = (int)img, .ty0 = (int)(r - img * th),
                                 .ty1 = (int)(end - img * th), .j0 = (int)(r * tw - tbase)};
        r = end;
    }
    return n;
}

/* V[16][cin][ldv] (plane stride vstride) for the pieces of one block. The pieces' padded rows are stacked (nr + 1 rows each: the extra one feeds only the spare outputs), so that
 * small images still give one long flat loop per channel. */
static void wino_input_rows(const ss_conv2d_t *c, float *V, int ldv, size_t vstride,
                            const float *in, const wino_piece_t *pc, int npc, float *tmp)
{
    const int h = c->h, w = c->w, cin = c->cin, tw = (w + 1) / 2, L = tw + 1, W2 = 2 * L;
    const size_t plane = (size_t)h * w;
    int nrows = 0;
    for (int s = 0; s < npc; s++)
        nrows += pc[s].ty1 - pc[s].ty0 + 1;
    const int np = (nrows - 1) * L, nblk = (nrows - npc) * tw; /* the block's tiles */
    const size_t ps = (size_t)nrows * W2 + 16, ts = (size_t)np + 16;
    /* P_a row u = padded input row 2u + a - 1: P_a[2q + k] = patch row a, column k of tile q,
     * P_a[2q + W2 + k] = patch row a + 2 */
    float *P0 = tmp, *P1 = P0 + ps, *T = P1 + ps;
    for (int k = 0; k < 16; k++)
        P0[ps - 16 + k] = P1[ps - 16 + k] = 0.0f; /* read by the spares of the last row */
    for (int ci = 0; ci < cin; ci++) {
        int u0 = 0;
        for (int s = 0; s < npc; s++) {
            const wino_piece_t *g = &pc[s];
            const int nu = g->ty1 - g->ty0 + 1;
            const float *p = in + ((size_t)g->img * cin + ci) * plane;
            for (int u = 0; u < nu; u++) {
                for (int a = 0; a < 2; a++) {
                    float *d = (a ? P1 : P0) + (size_t)(u0 + u) * W2;
                    const int y = 2 * (g->ty0 + u) + a - 1;
                    if (y < 0 || y >= h) {
                        for (int x = 0; x < W2; x++)
                            d[x] = 0.0f;
                        continue;
                    }
                    d[0] = 0.0f;
                    wino_copy_row(d + 1, p + (size_t)y * w, w);
                    for (int x = w + 1; x < W2; x++)
                        d[x] = 0.0f;
                }
            }
            u0 += nu;
        }
#pragma omp simd
        for (int q = 0; q < np; q++) {
            /* column transform (d_i B) of the four patch rows first, as in the strips */
            float cr[4][4];
            for (int i = 0; i < 4; i++) {
                const float *r = ((i & 1) ? P1 : P0) + (i >> 1) * W2 + 2 * q;
                const float a0 = r[0], a1 = r[1], a2 = r[2], a3 = r[3];
                cr[i][0] = a0 - a2;
                cr[i][1] = a1 + a2;
                cr[i][2] = a2 - a1;
                cr[i][3] = a1 - a3;
            }
            for (int k = 0; k < 4; k++) { /* B^T · */
                T[(size_t)(0 + k) * ts + q] = cr[0][k] - cr[2][k];
                T[(size_t)(4 + k) * ts + q] = cr[1][k] + cr[2][k];
                T[(size_t)(8 + k) * ts + q] = cr[2][k] - cr[1][k];
                T[(size_t)(12 + k) * ts + q] = cr[1][k] - cr[3][k];
            }
        }
        /* Copy out without the spares: 16 floats per tile row (tw < 16) where the excess lands
         * on later rows of the block (written after it), exactly near the block's end (the next
         * columns may be another thread's in the weight gradient). */
        u0 = 0;
        for (int s = 0; s < npc; s++) {
            const wino_piece_t *g = &pc[s];
            const int nr = g->ty1 - g->ty0, jr = g->j0 - pc[0].j0;
            float *v = V + (size_t)ci * ldv + g->j0;
            for (int x = 0; x < 16; x++) {
                const float *t = T + (size_t)x * ts + (size_t)u0 * L;
                float *vx = v + (size_t)x * vstride;
                for (int r = 0; r < nr; r++) {
                    if (jr + r * tw + 16 <= nblk)
                        memcpy(vx + (size_t)r * tw, t + (size_t)r * L, 16 * sizeof(float));
                    else
                        for (int k = 0; k < tw; k++)
                            vx[(size_t)r * tw + k] = t[(size_t)r * L + k];
                }
            }
            u0 += nr + 1;
        }
    }
}

/* out for the pieces = A^T M A (+ bias, + residual, ReLU) from M[16][cout][ldm]. */
static void wino_output_rows(const ss_conv2d_t *c, float *out, const float *M, int ldm,
                             size_t mstride, const float *bias, const float *residual, int relu,
                             const wino_piece_t *pc, int npc, float *tmp, int tb)
{
    const int h = c->h, w = c->w, cout = c->cout, tw = (w + 1) / 2;
    const size_t plane = (size_t)h * w;
    float *y00 = tmp, *y01 = y00 + tb, *y10 = y01 + tb, *y11 = y10 + tb, *st = y11 + tb;
    for (int co = 0; co < cout; co++) {
        const float b = bias ? bias[co] : 0.0f;
        for (int s = 0; s < npc; s++) {
            const wino_piece_t *g = &pc[s];
            const int nt = (g->ty1 - g->ty0) * tw;
            const float *m = M + (size_t)co * ldm + g->j0;
#pragma omp simd
            for (int j = 0; j < nt; j++) {
                float v[16], s0[4], s1[4];
                for (int k = 0; k < 16; k++)
                    v[k] = m[(size_t)k * mstride + j];
                for (int k = 0; k < 4; k++) { /* A^T M */
                    s0[k] = v[k] + v[4 + k] + v[8 + k];
                    s1[k] = v[4 + k] - v[8 + k] - v[12 + k];
                }
                y00[j] = s0[0] + s0[1] + s0[2] + b; /* (A^T M) A, + bias */
                y01[j] = s0[1] - s0[2] - s0[3] + b;
                y10[j] = s1[0] + s1[1] + s1[2] + b;
                y11[j] = s1[1] - s1[2] - s1[3] + b;
            }
            /* Interleave the piece's output rows (contiguous in out) into st, then one flat
             * pass adds the residual and applies the ReLU. */
            const int ya0 = 2 * g->ty0, yb1 = 2 * g->ty1 < h ? 2 * g->ty1 : h, half = w / 2;
            for (int y = ya0; y < yb1; y++) {
                const int r = (y - ya0) >> 1, i = (y - ya0) & 1;
                const float *ya = (i ? y10 : y00) + (size_t)r * tw,
                            *yb = (i ? y11 : y01) + (size_t)r * tw;
                float *d = st + (size_t)(y - ya0) * w;
                for (int x = 0; x < half; x++) {
                    d[2 * x] = ya[x];
                    d[2 * x + 1] = yb[x];
                }
                if (w & 1)
                    d[w - 1] = ya[half];
            }
            const size_t off = ((size_t)g->img * cout + co) * plane + (size_t)ya0 * w;
            const int len = (yb1 - ya0) * w;
            float *o = out + off;
            if (residual) {
                const float *res = residual + off;
                if (relu) {
#pragma omp simd
                    for (int x = 0; x < len; x++) {
                        const float val = st[x] + res[x];
                        o[x] = val < 0.0f ? 0.0f : val;
                    }
                } else {
#pragma omp simd
                    for (int x = 0; x < len; x++)
                        o[x] = st[x] + res[x];
                }
            } else if (relu) {
#pragma omp simd
                for (int x = 0; x < len; x++)
                    o[x] = st[x] < 0.0f ? 0.0f : st[x];
            } else {
                memcpy(o, st, (size_t)len * sizeof(float));
            }
        }
    }
}

size_t ss_conv_wino_weights_floats(const ss_conv2d_t *c)
{
    if (wino4(c))
        return 36 * wino4_ustride(c);
    return (wino3(c) ? 25 : 16) * wino_ustride(c);
}

void ss_conv_wino_weights(const ss_conv2d_t *c, float *U, const float *weight)
{
    int nt = omp_get_max_threads();
    nt = nt < wino_slots() ? nt : wino_slots();
    /* small: one thread (fork/join would cost more) */
#pragma omp parallel num_threads(nt) if ((size_t)c->cout * c->cin >= 4096)
    {
        if (wino4(c))
            wino4_weights(c, U, weight);
        else if (wino3(c))
            wino3_weights(c, U, weight);
        else
            wino_weights(c, U, weight, 0);
    }
}

/* dst[y·row + x·ch + c] = src[c][y][x] for a [ch][h][w] image: channels last, by blocks of 16
 * channels × 16 pixels transposed in registers, the rest one by one. */
static void wino_to_cl(float *dst, size_t row, const float *src, int ch, int h, int w)
{
    const size_t plane = (size_t)h * w;
    const int cfast = ch / 16 * 16;
    const size_t pfast = plane / 16 * 16;
    for (int c0 = 0; c0 < cfast; c0 += 16)
        for (size_t p0 = 0; p0 < pfast; p0 += 16) {
            ss_v16 r[16];
            for (int k = 0; k < 16; k++)
                memcpy(&r[k], src + (size_t)(c0 + k) * plane + p0, sizeof r[k]);
            SS_TRANSPOSE16(r);
            for (int i = 0; i < 16; i++) {
                const size_t y = (p0 + i) / (size_t)w, x = (p0 + i) % (size_t)w;
                memcpy(dst + y * row + x * ch + c0, &r[i], sizeof r[i]);
            }
        }
    for (int c = 0; c < ch; c++)
        for (size_t p = c < cfast ? pfast : 0; p < plane; p++) {
            const size_t y = p / (size_t)w, x = p % (size_t)w;
            dst[y * row + x * ch + c] = src[(size_t)c * plane + p];
        }
}

/* X[y + 1][x + 1][ci] = in[img][ci][y][x] in [hp][wp][cin] (hp, wp >= h + 2, w + 2), zero
 * outside: the padded image channels last. Returns X = tmp. */
static const float *wino_cl_pad(const ss_conv2d_t *c, float *tmp, const float *in, int img,
                                int hp, int wp)
{
    const int h = c->h, w = c->w, cin = c->cin;
    const size_t plane = (size_t)h * w, row = (size_t)wp * cin;
    float *X = tmp;
    memset(X, 0, row * sizeof(float));
    for (int y = h + 1; y < hp; y++)
        memset(X + y * row, 0, row * sizeof(float));
    for (int y = 1; y <= h; y++) {
        memset(X + y * row, 0, (size_t)cin * sizeof(float));
        memset(X + y * row + (size_t)(w + 1) * cin, 0, (size_t)(wp - w - 1) * cin * sizeof(float));
    }
    wino_to_cl(X + row + cin, row, in + (size_t)img * cin * plane, cin, h, w);
    return X;
}

/* Vt[16][tiles][cin] (plane stride vstride) of image img, its tiles from column t0. */
static void wino_input_cl(const ss_conv2d_t *c, float *Vt, size_t vstride, long t0,
                          const float *in, int img, float *tmp)
{
    const int th = (c->h + 1) / 2, tw = (c->w + 1) / 2, cin = c->cin;
    const size_t row = (size_t)(2 * tw + 2) * cin;
    const float *X = wino_cl_pad(c, tmp, in, img, 2 * th + 2, 2 * tw + 2);
    for (int ty = 0; ty < th; ty++)
        for (int tx = 0; tx < tw; tx++) {
            const float *p = X + (size_t)(2 * ty) * row + (size_t)(2 * tx) * cin;
            float *v = Vt + (size_t)(t0 + ty * tw + tx) * cin;
#pragma omp simd
            for (int ci = 0; ci < cin; ci++) {
                float cr[4][4];
                for (int i = 0; i < 4; i++) { /* d_i B: the patch rows' column transform */
                    const float *r = p + i * row + ci;
                    const float a0 = r[0], a1 = r[cin], a2 = r[2 * cin], a3 = r[3 * cin];
                    cr[i][0] = a0 - a2;
                    cr[i][1] = a1 + a2;
                    cr[i][2] = a2 - a1;
                    cr[i][3] = a1 - a3;
                }
                for (int k = 0; k < 4; k++) { /* B^T · */
                    v[(size_t)(0 + k) * vstride + ci] = cr[0][k] - cr[2][k];
                    v[(size_t)(4 + k) * vstride + ci] = cr[1][k] + cr[2][k];
                    v[(size_t)(8 + k) * vstride + ci] = cr[2][k] - cr[1][k];
                    v[(size_t)(12 + k) * vstride + ci] = cr[1][k] - cr[3][k];
                }
            }
        }
}

/* Image img of out (NCHW) from Y[y][x][co] (rows `row` floats apart, bias already in), + the
 * residual, ReLU. */
static void wino_cl_store(const ss_conv2d_t *c, float *out, const float *Y, size_t row,
                          const float *residual, int relu, int img)
{
    const int w = c->w, cout = c->cout;
    const size_t plane = (size_t)c->h * w, base = (size_t)img * cout * plane;
    /* Y without spare columns is [pixel][co]: blocks of 16 pixels × 16 channels transposed in
     * registers; the rest (channels past the last 16, pixels past the last 16) one by one */
    const int cfast = row == (size_t)w * cout ? cout / 16 * 16 : 0;
    const size_t pfast = cfast ? plane / 16 * 16 : 0;
    for (int co0 = 0; co0 < cfast; co0 += 16)
        for (size_t p0 = 0; p0 < pfast; p0 += 16) {
            ss_v16 r[16];
            for (int i = 0; i < 16; i++)
                memcpy(&r[i], Y + (p0 + i) * cout + co0, sizeof r[i]);
            SS_TRANSPOSE16(r);
            for (int j = 0; j < 16; j++) {
                const size_t off = base + (size_t)(co0 + j) * plane + p0;
                ss_v16 v = r[j];
                if (residual) {
                    ss_v16 q;
                    memcpy(&q, residual + off, sizeof q);
                    v += q;
                }
                if (relu) /* a NaN stays */
                    v = (ss_v16)((ss_v16i)v & ~(v < 0.0f));
                memcpy(out + off, &v, sizeof v);
            }
        }
    for (int co = 0; co < cout; co++) {
        float *o = out + base + (size_t)co * plane;
        const float *res = residual ? residual + base + (size_t)co * plane : NULL;
        for (size_t p = co < cfast ? pfast : 0; p < plane; p++) {
            const size_t y = p / (size_t)w, x = p % (size_t)w;
            float val = Y[y * row + x * cout + co];
            if (res)
                val += res[p];
            o[p] = (relu && val < 0.0f) ? 0.0f : val;
        }
    }
}

/* Image img of out = A^T M A (+ bias, + residual, ReLU) from Mt[16][tiles][cout], its tiles
 * from column t0. */
static void wino_output_cl(const ss_conv2d_t *c, float *out, const float *Mt, size_t mstride,
                           long t0, const float *bias, const float *residual, int relu, int img,
                           float *tmp)
{
    const int cout = c->cout, th = (c->h + 1) / 2, tw = (c->w + 1) / 2;
    const size_t row = (size_t)2 * tw * cout;
    float *Y = tmp, *zero = Y + 2 * th * row; /* Y[y][x][co] */
    if (!bias) {
        memset(zero, 0, (size_t)cout * sizeof(float));
        bias = zero;
    }
    for (int ty = 0; ty < th; ty++)
        for (int tx = 0; tx < tw; tx++) {
            const float *m = Mt + (size_t)(t0 + ty * tw + tx) * cout;
            float *y0 = Y + (size_t)(2 * ty) * row + (size_t)(2 * tx) * cout, *y1 = y0 + row;
#pragma omp simd
            for (int co = 0; co < cout; co++) {
                float s0[4], s1[4];
                for (int k = 0; k < 4; k++) { /* A^T M */
                    const float v0 = m[(size_t)k * mstride + co], v1 = m[(size_t)(4 + k) * mstride + co],
                                v2 = m[(size_t)(8 + k) * mstride + co],
                                v3 = m[(size_t)(12 + k) * mstride + co];
                    s0[k] = v0 + v1 + v2;
                    s1[k] = v1 - v2 - v3;
                }
                const float b = bias[co]; /* (A^T M) A, + bias */
                y0[co] = s0[0] + s0[1] + s0[2] + b;
                y0[cout + co] = s0[1] - s0[2] - s0[3] + b;
                y1[co] = s1[0] + s1[1] + s1[2] + b;
                y1[cout + co] = s1[1] - s1[2] - s1[3] + b;
            }
        }
    wino_cl_store(c, out, Y, row, residual, relu, img);
}

/* The channels-last forward (see wino_cl) inside wino_forward's parallel region. */
static void wino_forward_cl(const ss_conv2d_t *c, float *out, const float *in, const float *U,
                            const float *bias, const float *residual, int relu, float *work)
{
    const int cin = c->cin, cout = c->cout, tpi = ((c->h + 1) / 2) * ((c->w + 1) / 2);
    const int cimg = wino_cl_images(c), tcmax = cimg * tpi;
    const size_t vs = wino_pstride(tcmax, cin), ms = wino_pstride(tcmax, cout);
    float *Vt = work, *Mt = Vt + 16 * vs;
    float *tmp = Mt + 16 * ms + (size_t)omp_get_thread_num() * wino_cl_tmp_floats(c);
    for (int n0 = 0; n0 < c->n; n0 += cimg) {
        const int ni = c->n - n0 < cimg ? c->n - n0 : cimg;
#pragma omp for schedule(dynamic, 1)
        for (int i = 0; i < ni; i++)
            wino_input_cl(c, Vt, vs, (long)i * tpi, in, n0 + i, tmp);
#pragma omp for schedule(dynamic, 1)
        for (int k = 0; k < 16; k++)
            ss_gemm_panels(ni * tpi, cout, cin, Vt + (size_t)k * vs, cin,
                           U + (size_t)k * wino_ustride(c), (size_t)SS_PANEL * cin, SS_PANEL,
                           Mt + (size_t)k * ms, cout);
#pragma omp for schedule(dynamic, 1)
        for (int i = 0; i < ni; i++)
            wino_output_cl(c, out, Mt, ms, (long)i * tpi, bias, residual, relu, n0 + i, tmp);
    }
}

/* The channels-last tilings with U precomputed (F(3×3) and F(4×4)), planar: per chunk of
 * cimg images, each image transformed by one thread (input), the `planes` products with all
 * the chunk's tiles a task per plane, each image back by one thread (output). tmpf: scratch
 * floats per thread. */
typedef void (*wino_cl_in_fn)(const ss_conv2d_t *c, float *Vt, size_t vstride, long t0,
                              const float *in, int img, float *tmp);
typedef void (*wino_cl_out_fn)(const ss_conv2d_t *c, float *out, const float *Mt, size_t mstride,
                               long t0, const float *bias, const float *residual, int relu,
                               int img, float *tmp);

static void wino_cl_planar(const ss_conv2d_t *c, int planes, int tpi, int cimg, size_t tmpf,
                           wino_cl_in_fn input, wino_cl_out_fn output, float *out, const float *in,
                           const float *U, size_t ustride, const float *bias,
                           const float *residual, int relu, float *work)
{
    const int cin = c->cin, cout = c->cout, tcmax = cimg * tpi, slots = wino_slots();
    const size_t vs = wino_pstride(tcmax, cin), ms = wino_pstride(tcmax, cout);
    float *Vt = work, *Mt = Vt + planes * vs, *tmp0 = Mt + planes * ms;
    int nt = omp_get_max_threads();
    nt = nt < slots ? nt : slots;
#pragma omp parallel num_threads(nt)
    {
        float *tmp = tmp0 + (size_t)omp_get_thread_num() * tmpf;
        for (int n0 = 0; n0 < c->n; n0 += cimg) {
            const int ni = c->n - n0 < cimg ? c->n - n0 : cimg;
#pragma omp for schedule(dynamic, 1)
            for (int i = 0; i < ni; i++)
                input(c, Vt, vs, (long)i * tpi, in, n0 + i, tmp);
#pragma omp for schedule(dynamic, 1)
            for (int k = 0; k < planes; k++)
                ss_gemm_panels(ni * tpi, cout, cin, Vt + (size_t)k * vs, cin,
                               U + (size_t)k * ustride, (size_t)SS_PANEL * cin, SS_PANEL,
                               Mt + (size_t)k * ms, cout);
#pragma omp for schedule(dynamic, 1)
            for (int i = 0; i < ni; i++)
                output(c, out, Mt, ms, (long)i * tpi, bias, residual, relu, n0 + i, tmp);
        }
    }
}

/* Scratch floats per thread of the F(3×3) and F(4×4) paths: the padded image channels last,
 * the output image channels last, cout zeros (the bias when there is none). */
static size_t wino_cl_img_floats(const ss_conv2d_t *c)
{
    return (size_t)(c->h + 2) * (c->w + 2) * c->cin + (size_t)c->h * c->w * c->cout + c->cout +
           64;
}

/* ---- F(3×3, 3×3), channels last, U precomputed --------------------------------------------
 * On images whose sides are multiples of 3 (6×6 and 3×3: ResNet's layers 3-4 at 96 px) a 3×3
 * output tile from a 5×5 patch takes 25 products per weight pair, where F(2×2, 3×3) takes 36
 * for the same 9 outputs (and at 3×3, with four partial tiles, 64). Inference only (U from
 * ss_conv_wino_weights), through the channels-last path:
 *   B^T = [2 -1 -2 1 0; 0 2 1 -1 0; 0 -2 3 -1 0; 0 -1 0 1 0; 0 2 -1 -2 1]
 *   G   = [1/2 0 0; 1/2 1/2 1/2; 1/6 -1/6 1/6; 1/6 1/3 2/3; 0 0 1]
 *   A^T = [1 1 1 1 0; 0 1 -1 2 0; 0 1 1 4 1]
 * (Toom-Cook at 0, 1, -1, 2 and infinity, rows of B^T scaled to integers; in float32 the
 * error is a few 1e-7 of the output scale, 3e-6 at worst over random tiles.) */
static int wino3(const ss_conv2d_t *c)
{
    return wino_kernel(c) && wino_cl(c) && c->h % 3 == 0 && c->w % 3 == 0;
}

static int wino3_images(const ss_conv2d_t *c)
{
    const long tpi = (long)(c->h / 3) * (c->w / 3);
    const size_t cap = ss_conv_work_cap() < ((size_t)4 << 20) ? ss_conv_work_cap() : (size_t)4 << 20;
    long n = (long)(cap / (25 * ((size_t)c->cin + c->cout) * tpi));
    return (int)(n < 1 ? 1 : n > c->n ? c->n : n);
}

static size_t wino3_workspace(const ss_conv2d_t *c)
{
    const int tc = wino3_images(c) * (c->h / 3) * (c->w / 3);
    return 25 * (wino_pstride(tc, c->cin) + wino_pstride(tc, c->cout)) +
           (size_t)wino_slots() * wino_cl_img_floats(c);
}

/* U[25] in panels from weight [cout][cin][3][3], by groups of 16 output channels. */
static void wino3_weights(const ss_conv2d_t *c, float *U, const float *weight)
{
    const int cout = c->cout, cin = c->cin, ucout = wino_ucout(c), groups = ucout / 16;
    const size_t plane = wino_ustride(c);
#pragma omp for collapse(2) schedule(static)
    for (int ci = 0; ci < cin; ci++) {
        for (int q = 0; q < groups; q++) {
            float g[9][16], u[25][16];
            for (int j = 0; j < 16; j++) {
                const int co = q * 16 + j;
                for (int i = 0; i < 9; i++)
                    g[i][j] = co < cout ? weight[((size_t)co * cin + ci) * 9 + i] : 0.0f;
            }
#pragma omp simd
            for (int j = 0; j < 16; j++) {
                float t[5][3];
                for (int k = 0; k < 3; k++) { /* G g, column k: g[r][k] = g[3r + k] */
                    const float g0 = g[k][j], g1 = g[3 + k][j], g2 = g[6 + k][j];
                    t[0][k] = 0.5f * g0;
                    t[1][k] = 0.5f * (g0 + g1 + g2);
                    t[2][k] = (g0 - g1 + g2) / 6.0f;
                    t[3][k] = (g0 + 2.0f * g1 + 4.0f * g2) / 6.0f;
                    t[4][k] = g2;
                }
                for (int i = 0; i < 5; i++) { /* (G g) G^T */
                    const float a0 = t[i][0], a1 = t[i][1], a2 = t[i][2];
                    u[i * 5 + 0][j] = 0.5f * a0;
                    u[i * 5 + 1][j] = 0.5f * (a0 + a1 + a2);
                    u[i * 5 + 2][j] = (a0 - a1 + a2) / 6.0f;
                    u[i * 5 + 3][j] = (a0 + 2.0f * a1 + 4.0f * a2) / 6.0f;
                    u[i * 5 + 4][j] = a2;
                }
            }
            const size_t off = wino_uoff(1, cin, q * 16, ci);
            for (int k = 0; k < 25; k++)
                memcpy(U + (size_t)k * plane + off, u[k], 16 * sizeof(float));
        }
    }
}

/* Vt[25][tiles][cin] of image img, its tiles from row t0. */
static void wino3_input(const ss_conv2d_t *c, float *Vt, size_t vstride, long t0,
                        const float *in, int img, float *tmp)
{
    const int th = c->h / 3, tw = c->w / 3, cin = c->cin;
    const size_t row = (size_t)(c->w + 2) * cin;
    const float *X = wino_cl_pad(c, tmp, in, img, c->h + 2, c->w + 2);
    for (int ty = 0; ty < th; ty++)
        for (int tx = 0; tx < tw; tx++) {
            const float *p = X + (size_t)(3 * ty) * row + (size_t)(3 * tx) * cin;
            float *v = Vt + (size_t)(t0 + ty * tw + tx) * cin;
#pragma omp simd
            for (int ci = 0; ci < cin; ci++) {
                float cr[5][5];
                for (int a = 0; a < 5; a++) { /* d_a B: each patch row's column transform */
                    const float *r = p + a * row + ci;
                    const float d0 = r[0], d1 = r[cin], d2 = r[2 * cin], d3 = r[3 * cin],
                                d4 = r[4 * cin];
                    cr[a][0] = 2.0f * d0 - d1 - 2.0f * d2 + d3;
                    cr[a][1] = 2.0f * d1 + d2 - d3;
                    cr[a][2] = -2.0f * d1 + 3.0f * d2 - d3;
                    cr[a][3] = d3 - d1;
                    cr[a][4] = 2.0f * d1 - d2 - 2.0f * d3 + d4;
                }
                for (int k = 0; k < 5; k++) { /* B^T · */
                    const float e0 = cr[0][k], e1 = cr[1][k], e2 = cr[2][k], e3 = cr[3][k],
                                e4 = cr[4][k];
                    v[(size_t)(0 + k) * vstride + ci] = 2.0f * e0 - e1 - 2.0f * e2 + e3;
                    v[(size_t)(5 + k) * vstride + ci] = 2.0f * e1 + e2 - e3;
                    v[(size_t)(10 + k) * vstride + ci] = -2.0f * e1 + 3.0f * e2 - e3;
                    v[(size_t)(15 + k) * vstride + ci] = e3 - e1;
                    v[(size_t)(20 + k) * vstride + ci] = 2.0f * e1 - e2 - 2.0f * e3 + e4;
                }
            }
        }
}

/* Image img of out = A^T M A (+ bias, + residual, ReLU) from Mt[25][tiles][cout]. */
static void wino3_output(const ss_conv2d_t *c, float *out, const float *Mt, size_t mstride,
                         long t0, const float *bias, const float *residual, int relu, int img,
                         float *tmp)
{
    const int th = c->h / 3, tw = c->w / 3, cout = c->cout;
    const size_t row = (size_t)c->w * cout;
    float *Y = tmp, *zero = Y + (size_t)c->h * row; /* Y[y][x][co] */
    if (!bias) {
        memset(zero, 0, (size_t)cout * sizeof(float));
        bias = zero;
    }
    for (int ty = 0; ty < th; ty++)
        for (int tx = 0; tx < tw; tx++) {
            const float *m = Mt + (size_t)(t0 + ty * tw + tx) * cout;
            float *y = Y + (size_t)(3 * ty) * row + (size_t)(3 * tx) * cout;
#pragma omp simd
            for (int co = 0; co < cout; co++) {
                float s[3][5];
                for (int k = 0; k < 5; k++) { /* A^T M */
                    const float m0 = m[(size_t)k * mstride + co],
                                m1 = m[(size_t)(5 + k) * mstride + co],
                                m2 = m[(size_t)(10 + k) * mstride + co],
                                m3 = m[(size_t)(15 + k) * mstride + co],
                                m4 = m[(size_t)(20 + k) * mstride + co];
                    s[0][k] = m0 + m1 + m2 + m3;
                    s[1][k] = m1 - m2 + 2.0f * m3;
                    s[2][k] = m1 + m2 + 4.0f * m3 + m4;
                }
                const float b = bias[co];
                for (int i = 0; i < 3; i++) { /* (A^T M) A, + bias */
                    float *yi = y + (size_t)i * row;
                    yi[co] = s[i][0] + s[i][1] + s[i][2] + s[i][3] + b;
                    yi[cout + co] = s[i][1] - s[i][2] + 2.0f * s[i][3] + b;
                    yi[2 * cout + co] = s[i][1] + s[i][2] + 4.0f * s[i][3] + s[i][4] + b;
                }
            }
        }
    wino_cl_store(c, out, Y, row, residual, relu, img);
}

static void wino3_forward_u(const ss_conv2d_t *c, float *out, const float *in, const float *U,
                            const float *bias, const float *residual, int relu, float *work)
{
    ss_nn_blas_single();
    wino_cl_planar(c, 25, (c->h / 3) * (c->w / 3), wino3_images(c), wino_cl_img_floats(c),
                   wino3_input, wino3_output, out, in, U, wino_ustride(c), bias, residual, relu,
                   work);
}

/* ---- F(4×4, 3×3), channels last by blocks of images, U precomputed -------------------------
 * On images whose sides are multiples of 4 (ResNet's layers 1-2 at 64 and 96 px) a 4×4 output
 * tile from a 6×6 patch takes 36 products per weight pair, where F(2×2, 3×3) takes 64 for the
 * same 16 outputs. Inference only (U from ss_conv_wino_weights). Unlike the channels-last
 * F(2×2) path, each thread takes whole blocks of images (at least 32 tiles, for the products'
 * rows) from transform to output, so that V and M stay in its cache at these larger sizes.
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0;
 *          0 4 0 -5 0 1]
 *   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 * (Toom-Cook at 0, ±1, ±2 and infinity; in float32 about 1e-6 of the output scale.) */
static int wino4(const ss_conv2d_t *c)
{
    return wino_kernel(c) && c->h % 4 == 0 && c->w % 4 == 0 && c->cin >= 32 && c->cout >= 32;
}

/* U's plane stride: cout rounded up to whole panels, times cin. */
static size_t wino4_ustride(const ss_conv2d_t *c)
{
    return (size_t)((c->cout + SS_PANEL - 1) / SS_PANEL * SS_PANEL) * c->cin + 16;
}

static int wino4_block(const ss_conv2d_t *c) /* images per block (at least 32 tiles) */
{
    const int tpi = (c->h / 4) * (c->w / 4), b = (32 + tpi - 1) / tpi;
    return b < c->n ? b : c->n;
}

static size_t wino4_slot_floats(const ss_conv2d_t *c)
{
    const int tb = wino4_block(c) * (c->h / 4) * (c->w / 4);
    return 36 * (wino_pstride(tb, c->cin) + wino_pstride(tb, c->cout)) + wino_cl_img_floats(c);
}

/* Too few blocks to share out (small images: ResNet's layer3 at 64 px, one tile an image) go
 * planar, as the channels-last F(2×2) path does: all images of a chunk transformed, then the
 * 36 products with all their tiles, a task per plane. */
static int wino4_planar(const ss_conv2d_t *c)
{
    const int b = wino4_block(c);
    return (c->n + b - 1) / b < 2 * wino_slots();
}

static int wino4_images(const ss_conv2d_t *c) /* images per planar chunk, V and M within 16 MB */
{
    const long tpi = (long)(c->h / 4) * (c->w / 4);
    const size_t cap = ss_conv_work_cap() < ((size_t)4 << 20) ? ss_conv_work_cap() : (size_t)4 << 20;
    long n = (long)(cap / (36 * ((size_t)c->cin + c->cout) * tpi));
    return (int)(n < 1 ? 1 : n > c->n ? c->n : n);
}

/* Either layout's size, whichever the larger (each grows with n; which one applies may change
 * with n, and the workspace must never shrink as n grows). */
static size_t wino4_workspace(const ss_conv2d_t *c)
{
    const int tc = wino4_images(c) * (c->h / 4) * (c->w / 4);
    const size_t blocks = (size_t)wino_slots() * wino4_slot_floats(c);
    const size_t planar = 36 * (wino_pstride(tc, c->cin) + wino_pstride(tc, c->cout)) +
                          (size_t)wino_slots() * wino_cl_img_floats(c);
    return blocks > planar ? blocks : planar;
}

/* U[36] in panels from weight [cout][cin][3][3], by groups of 16 output channels. */
static void wino4_weights(const ss_conv2d_t *c, float *U, const float *weight)
{
    const int cout = c->cout, cin = c->cin, groups = (cout + SS_PANEL - 1) / SS_PANEL * 2;
    const size_t plane = wino4_ustride(c);
#pragma omp for collapse(2) schedule(static)
    for (int ci = 0; ci < cin; ci++) {
        for (int q = 0; q < groups; q++) {
            float g[9][16], u[36][16];
            for (int j = 0; j < 16; j++) {
                const int co = q * 16 + j;
                for (int i = 0; i < 9; i++)
                    g[i][j] = co < cout ? weight[((size_t)co * cin + ci) * 9 + i] : 0.0f;
            }
#pragma omp simd
            for (int j = 0; j < 16; j++) {
                float t[6][3];
                for (int k = 0; k < 3; k++) { /* G g, column k */
                    const float g0 = g[k][j], g1 = g[3 + k][j], g2 = g[6 + k][j];
                    t[0][k] = g0 / 4.0f;
                    t[1][k] = -(g0 + g1 + g2) / 6.0f;
                    t[2][k] = -(g0 - g1 + g2) / 6.0f;
                    t[3][k] = g0 / 24.0f + g1 / 12.0f + g2 / 6.0f;
                    t[4][k] = g0 / 24.0f - g1 / 12.0f + g2 / 6.0f;
                    t[5][k] = g2;
                }
                for (int i = 0; i < 6; i++) { /* (G g) G^T */
                    const float a0 = t[i][0], a1 = t[i][1], a2 = t[i][2];
                    u[i * 6 + 0][j] = a0 / 4.0f;
                    u[i * 6 + 1][j] = -(a0 + a1 + a2) / 6.0f;
                    u[i * 6 + 2][j] = -(a0 - a1 + a2) / 6.0f;
                    u[i * 6 + 3][j] = a0 / 24.0f + a1 / 12.0f + a2 / 6.0f;
                    u[i * 6 + 4][j] = a0 / 24.0f - a1 / 12.0f + a2 / 6.0f;
                    u[i * 6 + 5][j] = a2;
                }
            }
            const size_t off = wino_uoff(1, cin, q * 16, ci);
            for (int k = 0; k < 36; k++)
                memcpy(U + (size_t)k * plane + off, u[k], 16 * sizeof(float));
        }
    }
}

/* Vt[36][tiles][cin] of image img, its tiles from row t0. */
static void wino4_input(const ss_conv2d_t *c, float *Vt, size_t vstride, long t0,
                        const float *in, int img, float *tmp)
{
    const int th = c->h / 4, tw = c->w / 4, cin = c->cin;
    const size_t row = (size_t)(c->w + 2) * cin;
    const float *X = wino_cl_pad(c, tmp, in, img, c->h + 2, c->w + 2);
    for (int ty = 0; ty < th; ty++)
        for (int tx = 0; tx < tw; tx++) {
            const float *p = X + (size_t)(4 * ty) * row + (size_t)(4 * tx) * cin;
            float *v = Vt + (size_t)(t0 + ty * tw + tx) * cin;
#pragma omp simd
            for (int ci = 0; ci < cin; ci++) {
                float cr[6][6];
#pragma GCC unroll 6
                for (int a = 0; a < 6; a++) { /* d_a B: each patch row's column transform */
                    const float *r = p + a * row + ci;
                    const float d0 = r[0], d1 = r[cin], d2 = r[2 * cin], d3 = r[3 * cin],
                                d4 = r[4 * cin], d5 = r[5 * cin];
                    cr[a][0] = 4.0f * d0 - 5.0f * d2 + d4;
                    cr[a][1] = -4.0f * (d1 + d2) + d3 + d4;
                    cr[a][2] = 4.0f * (d1 - d2) - d3 + d4;
                    cr[a][3] = 2.0f * (d3 - d1) - d2 + d4;
                    cr[a][4] = 2.0f * (d1 - d3) - d2 + d4;
                    cr[a][5] = 4.0f * d1 - 5.0f * d3 + d5;
                }
#pragma GCC unroll 6
                for (int k = 0; k < 6; k++) { /* B^T · */
                    const float e0 = cr[0][k], e1 = cr[1][k], e2 = cr[2][k], e3 = cr[3][k],
                                e4 = cr[4][k], e5 = cr[5][k];
                    v[(size_t)(0 + k) * vstride + ci] = 4.0f * e0 - 5.0f * e2 + e4;
                    v[(size_t)(6 + k) * vstride + ci] = -4.0f * (e1 + e2) + e3 + e4;
                    v[(size_t)(12 + k) * vstride + ci] = 4.0f * (e1 - e2) - e3 + e4;
                    v[(size_t)(18 + k) * vstride + ci] = 2.0f * (e3 - e1) - e2 + e4;
                    v[(size_t)(24 + k) * vstride + ci] = 2.0f * (e1 - e3) - e2 + e4;
                    v[(size_t)(30 + k) * vstride + ci] = 4.0f * e1 - 5.0f * e3 + e5;
                }
            }
        }
}

/* Image img of out = A^T M A (+ bias, + residual, ReLU) from Mt[36][tiles][cout]. */
static void wino4_output(const ss_conv2d_t *c, float *out, const float *Mt, size_t mstride,
                         long t0, const float *bias, const float *residual, int relu, int img,
                         float *tmp)
{
    const int th = c->h / 4, tw = c->w / 4, cout = c->cout;
    const size_t row = (size_t)c->w * cout;
    float *Y = tmp, *zero = Y + (size_t)c->h * row; /* Y[y][x][co] */
    if (!bias) {
        memset(zero, 0, (size_t)cout * sizeof(float));
        bias = zero;
    }
    for (int ty = 0; ty < th; ty++)
        for (int tx = 0; tx < tw; tx++) {
            const float *m = Mt + (size_t)(t0 + ty * tw + tx) * cout;
            float *y = Y + (size_t)(4 * ty) * row + (size_t)(4 * tx) * cout;
#pragma omp simd
            for (int co = 0; co < cout; co++) {
                float s[4][6];
#pragma GCC unroll 6
                for (int k = 0; k < 6; k++) { /* A^T M */
                    float mm[6];
#pragma GCC unroll 6
                    for (int i = 0; i < 6; i++)
                        mm[i] = m[(size_t)(6 * i + k) * mstride + co];
                    s[0][k] = mm[0] + mm[1] + mm[2] + mm[3] + mm[4];
                    s[1][k] = mm[1] - mm[2] + 2.0f * (mm[3] - mm[4]);
                    s[2][k] = mm[1] + mm[2] + 4.0f * (mm[3] + mm[4]);
                    s[3][k] = mm[1] - mm[2] + 8.0f * (mm[3] - mm[4]) + mm[5];
                }
                const float b = bias[co];
#pragma GCC unroll 4
                for (int i = 0; i < 4; i++) { /* (A^T M) A, + bias */
                    float *yi = y + (size_t)i * row;
                    yi[co] = s[i][0] + s[i][1] + s[i][2] + s[i][3] + s[i][4] + b;
                    yi[cout + co] = s[i][1] - s[i][2] + 2.0f * (s[i][3] - s[i][4]) + b;
                    yi[2 * cout + co] = s[i][1] + s[i][2] + 4.0f * (s[i][3] + s[i][4]) + b;
                    yi[3 * cout + co] = s[i][1] - s[i][2] + 8.0f * (s[i][3] - s[i][4]) + s[i][5] + b;
                }
            }
        }
    wino_cl_store(c, out, Y, row, residual, relu, img);
}

static void wino4_forward_u(const ss_conv2d_t *c, float *out, const float *in, const float *U,
                            const float *bias, const float *residual, int relu, float *work)
{
    ss_nn_blas_single();
    const int cin = c->cin, cout = c->cout, tpi = (c->h / 4) * (c->w / 4);
    const int bimg = wino4_block(c), nblocks = (c->n + bimg - 1) / bimg, slots = wino_slots();
    const size_t vs = wino_pstride(bimg * tpi, cin), ms = wino_pstride(bimg * tpi, cout);
    const size_t us = wino4_ustride(c), slot = wino4_slot_floats(c);
    int nt = omp_get_max_threads();
    nt = nt < slots ? nt : slots;
    if (wino4_planar(c)) {
        wino_cl_planar(c, 36, tpi, wino4_images(c), wino_cl_img_floats(c), wino4_input,
                       wino4_output, out, in, U, us, bias, residual, relu, work);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        float *Vt = work + (size_t)omp_get_thread_num() * slot, *Mt = Vt + 36 * vs,
              *tmp = Mt + 36 * ms;
#pragma omp for schedule(dynamic, 1)
        for (int b = 0; b < nblocks; b++) {
            const int i0 = b * bimg, ni = c->n - i0 < bimg ? c->n - i0 : bimg;
            for (int i = 0; i < ni; i++)
                wino4_input(c, Vt, vs, (long)i * tpi, in, i0 + i, tmp);
            for (int k = 0; k < 36; k++)
                ss_gemm_panels(ni * tpi, cout, cin, Vt + (size_t)k * vs, cin, U + (size_t)k * us,
                               (size_t)SS_PANEL * cin, SS_PANEL, Mt + (size_t)k * ms, cout);
            for (int i = 0; i < ni; i++)
                wino4_output(c, out, Mt, ms, (long)i * tpi, bias, residual, relu, i0 + i, tmp);
        }
    }
}

/* The forward pass with U from the weights (into work) or, when Uready, precomputed. */
static void wino_forward(const ss_conv2d_t *c, float *out, const float *in, const float *weight,
                         int flip, const float *Uready, const float *bias,
                         const float *residual, int relu, float *work)
{
    ss_nn_blas_single();
    const int cin = c->cin, cout = c->cout, tb = wino_tb(c), slots = wino_slots();
    const long tiles = (long)c->n * ((c->h + 1) / 2) * ((c->w + 1) / 2);
    const long nblocks = wino_nblocks(c, tiles, tb);
    const float *U = Uready ? Uready : work;
    float *slot0 = work + 16 * wino_ustride(c);
    const int strips = !wino_narrow(c);
    /* The products on the panel kernel, or by sgemm: measured (2 threads, batch 32), with 128
     * input channels or more the panels beat sgemm's copies (layer2 at 96 px 10%); with 64,
     * OpenBLAS's small-matrix kernel on its AVX-512 cores is 2-8% faster (layer1 at 64-96 px),
     * and its Haswell kernel 35% slower (unless this build lacks wide vectors: see
     * ss_nn_set_own_kernels). */
    const int panels = cin >= 128 || (ss_nn_own_kernels() && !ss_nn_blas_avx512());
    int nt = omp_get_max_threads();
    nt = nt < slots ? nt : slots;
#pragma omp parallel num_threads(nt)
    {
        if (!Uready)
            wino_weights(c, work, weight, flip); /* ends with the for's barrier */
        if (wino_cl(c)) {
            wino_forward_cl(c, out, in, U, bias, residual, relu, slot0);
        } else {
        const size_t vs = wino_pstride(cin, tb), ms = wino_pstride(cout, tb);
        float *V = slot0 + (size_t)omp_get_thread_num() *
                               (16 * (vs + ms) + wino_tmp_floats(c, tb));
        float *M = V + 16 * vs, *tmp = M + 16 * ms;
        wino_seg_t sg[512]; /* a block of tb <= 512 tiles has at most tb segments */
        wino_piece_t pc[528]; /* or at most tb / tw <= 528 tile rows */
#pragma omp for schedule(dynamic, 1)
        for (long b = 0; b < nblocks; b++) {
            long t0, t1;
            wino_block(c, tiles, tb, nblocks, b, &t0, &t1);
            const int nb = (int)(t1 - t0);
            const int nseg = strips ? wino_segments(c, sg, t0, t1) : wino_pieces(c, pc, t0, t0, t1);
            if (strips)
                wino_input(c, V, tb, vs, in, sg, nseg, tmp, tb);
            else
                wino_input_rows(c, V, tb, vs, in, pc, nseg, tmp);
            for (int k = 0; k < 16; k++) {
                const float *Uk = U + (size_t)k * wino_ustride(c);
                if (panels)
                    ss_gemm_panels(cout, nb, cin, Uk, cin, V + (size_t)k * vs, SS_PANEL, tb,
                                   M + (size_t)k * ms, tb);
                else
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, nb, cin, 1.0f,
                                Uk, cin, V + (size_t)k * vs, tb, 0.0f, M + (size_t)k * ms, tb);
            }
            if (strips)
                wino_output(c, out, M, tb, ms, bias, residual, relu, sg, nseg, tmp, tb);
            else
                wino_output_rows(c, out, M, tb, ms, bias, residual, relu, pc, nseg, tmp, tb);
        }
        }
    }
}

void ss_conv_wino_forward(const ss_conv2d_t *c, float *out, const float *in, const float *weight,
                          int flip, const float *bias, const float *residual, int relu,
                          float *work)
{
    wino_forward(c, out, in, weight, flip, NULL, bias, residual, relu, work);
}

void ss_conv_wino_forward_u(const ss_conv2d_t *c, float *out, const float *in, const float *U,
                            const float *bias, const float *residual, int relu, float *work)
{
    if (wino4(c))
        wino4_forward_u(c, out, in, U, bias, residual, relu, work);
    else if (wino3(c))
        wino3_forward_u(c, out, in, U, bias, residual, relu, work);
    else
        wino_forward(c, out, in, NULL, 0, U, bias, residual, relu, work);
}

/* ---- weight gradient ----------------------------------------------------------------------
 * With y_t = A^T (U ⊙ V_t) A and U = G g G^T:  dU = Σ_t (A dy_t A^T) ⊙ V_t,  dg = G^T dU G.
 * So dW takes the same input transform, a transform of the 2×2 output-gradient tiles, and
 * 16 sgemms dU[ξ] += DY[ξ][cout, tiles] · V[ξ][cin, tiles]^T whose reduction runs over the tiles
 * inside one sgemm call per chunk of images, chunks in order: deterministic. */

/* Images per dW chunk: V and DY for all their tiles within the cap (at least one image). */
static int wino_dw_chunk(const ss_conv2d_t *c)
{
    const size_t per_img = (size_t)16 * (c->cin + c->cout) * ((c->h + 1) / 2) * ((c->w + 1) / 2);
    size_t nc = ss_conv_work_cap() / per_img;
    return (int)(nc < 1 ? 1 : nc > (size_t)c->n ? (size_t)c->n : nc);
}

/* Layers with few channels accumulate dU block by block instead (wino_dw_blocks): their V
 * and DY for a whole chunk are large beside dU and would go through memory, and their sgemms
 * would mostly pack; blocks keep V and DY in cache and dU is small. */
static int wino_dw_blockwise(const ss_conv2d_t *c)
{
    return (size_t)c->cout * c->cin <= (size_t)128 * 128;
}

/* Floats per slot of the block-wise weight gradient: its dU, then V, DY and the scratch. */
static size_t wino_dw_slot_floats(const ss_conv2d_t *c)
{
    const int tb = wino_tb(c);
    return 16 * wino_ustride(c) + 16 * (wino_pstride(c->cin, tb) + wino_pstride(c->cout, tb)) +
           wino_tmp_floats(c, tb);
}

size_t ss_conv_wino_dw_workspace(const ss_conv2d_t *c)
{
    if (wino_cl(c)) {
        const int tc = wino_cl_images(c) * ((c->h + 1) / 2) * ((c->w + 1) / 2);
        return 16 * wino_ustride(c) + 16 * (wino_pstride(tc, c->cin) + wino_pstride(tc, c->cout)) +
               (size_t)wino_slots() * wino_cl_tmp_floats(c);
    }
    if (wino_dw_blockwise(c))
        return (size_t)wino_slots() * wino_dw_slot_floats(c);
    const int nc = wino_dw_chunk(c), tb = wino_tb(c);
    const int tc = nc * ((c->h + 1) / 2) * ((c->w + 1) / 2);
    return 16 * wino_ustride(c) +
           16 * (wino_pstride(c->cin, tc) + wino_pstride(c->cout, tc)) +
           (size_t)wino_slots() * wino_tmp_floats(c, tb);
}

/* DY[16][cout][ldd] (plane stride dstride) for tiles [t0, t1), columns from t0 - tbase. */
static void wino_dy(const ss_conv2d_t *c, float *DY, int ldd, size_t dstride, const float *dout,
                    long tbase, long t0, long t1)
{
    const int h = c->h, w = c->w, cout = c->cout, th = (h + 1) / 2, tw = (w + 1) / 2;
    const size_t plane = (size_t)h * w;
    for (int co = 0; co < cout; co++) {
        float *dc = DY + (size_t)co * ldd;
        for (long t = t0; t < t1; t++) {
            const long img = t / ((long)th * tw);
            const int rem = (int)(t % ((long)th * tw)), y0 = 2 * (rem / tw), x0 = 2 * (rem % tw);
            const float *p = dout + ((size_t)img * cout + co) * plane + (size_t)y0 * w + x0;
            const int ry = y0 + 1 < h, rx = x0 + 1 < w;
            const float a = p[0], b = rx ? p[1] : 0.0f, cc = ry ? p[w] : 0.0f,
                        d = (rx && ry) ? p[w + 1] : 0.0f;
            /* A dy: rows [a b], [a+c b+d], [a-c b-d], [-c -d]; then each row [p q] -> A. */
            const float r[4][2] = {{a, b}, {a + cc, b + d}, {a - cc, b - d}, {-cc, -d}};
            const size_t j = (size_t)(t - tbase);
            for (int i = 0; i < 4; i++) {
                dc[(size_t)(i * 4 + 0) * dstride + j] = r[i][0];
                dc[(size_t)(i * 4 + 1) * dstride + j] = r[i][0] + r[i][1];
                dc[(size_t)(i * 4 + 2) * dstride + j] = r[i][0] - r[i][1];
                dc[(size_t)(i * 4 + 3) * dstride + j] = -r[i][1];
            }
        }
    }
}

/* DY for the pieces of a narrow image: the 2×2 output-gradient tiles read through their four
 * polyphase planes Y_ab[q] = dout[2u + a][2v + b] (q = u·tw + v, zero past the edge). */
static void wino_dy_rows(const ss_conv2d_t *c, float *DY, int ldd, size_t dstride,
                         const float *dout, const wino_piece_t *pc, int npc, float *tmp, int tb)
{
    const int h = c->h, w = c->w, cout = c->cout, tw = (w + 1) / 2;
    const size_t plane = (size_t)h * w;
    float *q00 = tmp, *q01 = q00 + tb, *q10 = q01 + tb, *q11 = q10 + tb;
    for (int co = 0; co < cout; co++) {
        for (int s = 0; s < npc; s++) {
            const wino_piece_t *g = &pc[s];
            const int nr = g->ty1 - g->ty0, nt = nr * tw;
            const float *p = dout + ((size_t)g->img * cout + co) * plane;
            for (int r = 0; r < nr; r++) {
                for (int a = 0; a < 2; a++) {
                    float *qa = (a ? q10 : q00) + (size_t)r * tw, *qb = (a ? q11 : q01) + (size_t)r * tw;
                    const int y = 2 * (g->ty0 + r) + a;
                    if (y >= h) {
                        for (int v = 0; v < tw; v++)
                            qa[v] = qb[v] = 0.0f;
                        continue;
                    }
                    const float *row = p + (size_t)y * w;
                    for (int v = 0; v < w / 2; v++) {
                        qa[v] = row[2 * v];
                        qb[v] = row[2 * v + 1];
                    }
                    if (w & 1) {
                        qa[tw - 1] = row[w - 1];
                        qb[tw - 1] = 0.0f;
                    }
                }
            }
            float *dc = DY + (size_t)co * ldd + g->j0;
#pragma omp simd
            for (int j = 0; j < nt; j++) {
                /* as wino_dy: A dy rows [a b], [a+c b+d], [a-c b-d], [-c -d], each row -> · A */
                const float a = q00[j], b = q01[j], cc = q10[j], d = q11[j];
                const float r[4][2] = {{a, b}, {a + cc, b + d}, {a - cc, b - d}, {-cc, -d}};
                for (int i = 0; i < 4; i++) {
                    dc[(size_t)(i * 4 + 0) * dstride + j] = r[i][0];
                    dc[(size_t)(i * 4 + 1) * dstride + j] = r[i][0] + r[i][1];
                    dc[(size_t)(i * 4 + 2) * dstride + j] = r[i][0] - r[i][1];
                    dc[(size_t)(i * 4 + 3) * dstride + j] = -r[i][1];
                }
            }
        }
    }
}

/* dW[co][ci] += G^T dU G (3×3 from 4×4), dU the sum of the nsum accumulators at stride
 * ustep floats, added in order. Call from inside a parallel region. */
static void wino_dw_finish(const ss_conv2d_t *c, float *dweight, const float *dU, size_t ustep,
                           int nsum)
{
    const int cout = c->cout, cin = c->cin;
    const size_t plane = wino_ustride(c);
#pragma omp for collapse(2) schedule(static)
    for (int co = 0; co < cout; co++) {
        for (int ci = 0; ci < cin; ci++) {
            const float *u = dU + (size_t)co * cin + ci;
            float m[4][4], t[3][4];
            for (int k = 0; k < 16; k++) {
                float a = u[(size_t)k * plane];
                for (int s = 1; s < nsum; s++)
                    a += u[(size_t)s * ustep + (size_t)k * plane];
                m[k / 4][k % 4] = a;
            }
            for (int j = 0; j < 4; j++) { /* G^T m */
                t[0][j] = m[0][j] + 0.5f * (m[1][j] + m[2][j]);
                t[1][j] = 0.5f * (m[1][j] - m[2][j]);
                t[2][j] = 0.5f * (m[1][j] + m[2][j]) + m[3][j];
            }
            float *dw = dweight + ((size_t)co * cin + ci) * 9;
            for (int i = 0; i < 3; i++) { /* (G^T m) G */
                dw[i * 3 + 0] += t[i][0] + 0.5f * (t[i][1] + t[i][2]);
                dw[i * 3 + 1] += 0.5f * (t[i][1] - t[i][2]);
                dw[i * 3 + 2] += 0.5f * (t[i][1] + t[i][2]) + t[i][3];
            }
        }
    }
}

/* Block-wise dU: slot s takes blocks s, s + slots, ... in order into its own dU_s (a fixed
 * assignment, whatever the thread count), then dU = dU_0 + dU_1 + ... in slot order. */
static void wino_dw_blocks(const ss_conv2d_t *c, float *dweight, const float *dout,
                           const float *in, float *work)
{
    const int cin = c->cin, cout = c->cout, tb = wino_tb(c), slots = wino_slots();
    const long tiles = (long)c->n * ((c->h + 1) / 2) * ((c->w + 1) / 2);
    const long nblocks = wino_nblocks(c, tiles, tb);
    const size_t us = wino_ustride(c), vs = wino_pstride(cin, tb), ds = wino_pstride(cout, tb);
    const size_t slot = wino_dw_slot_floats(c);
    const int strips = !wino_narrow(c), used = nblocks < slots ? (int)nblocks : slots;
    int nt = omp_get_max_threads();
    nt = nt < slots ? nt : slots;
#pragma omp parallel num_threads(nt)
    {
        wino_seg_t sg[512];
        wino_piece_t pc[528];
#pragma omp for schedule(dynamic, 1)
        for (int sl = 0; sl < used; sl++) {
            float *dU = work + (size_t)sl * slot, *V = dU + 16 * us, *DY = V + 16 * vs,
                  *tmp = DY + 16 * ds;
            for (long b = sl; b < nblocks; b += slots) {
                long t0, t1;
                wino_block(c, tiles, tb, nblocks, b, &t0, &t1);
                if (strips) {
                    const int nseg = wino_segments(c, sg, t0, t1);
                    wino_input(c, V, tb, vs, in, sg, nseg, tmp, tb);
                    wino_dy(c, DY, tb, ds, dout, t0, t0, t1);
                } else {
                    const int npc = wino_pieces(c, pc, t0, t0, t1);
                    wino_input_rows(c, V, tb, vs, in, pc, npc, tmp);
                    wino_dy_rows(c, DY, tb, ds, dout, pc, npc, tmp, tb);
                }
                for (int k = 0; k < 16; k++)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, cout, cin, (int)(t1 - t0),
                                1.0f, DY + (size_t)k * ds, tb, V + (size_t)k * vs, tb,
                                b == sl ? 0.0f : 1.0f, dU + (size_t)k * us, cin);
            }
        }
        wino_dw_finish(c, dweight, work, slot, used);
    }
}

/* DYt[16][tiles][cout] (plane stride dstride) of image img, its tiles from row t0: dout's 2×2
 * tiles channels last (the transform of wino_dy with the channels as the vector lanes). */
static void wino_dy_cl(const ss_conv2d_t *c, float *DYt, size_t dstride, long t0,
                       const float *dout, int img, float *tmp)
{
    const int h = c->h, w = c->w, cout = c->cout, th = (h + 1) / 2, tw = (w + 1) / 2;
    const size_t plane = (size_t)h * w, row = (size_t)2 * tw * cout;
    float *Y = tmp; /* Y[y][x][co] = dout[img][co][y][x], zero past the edge */
    if (2 * th > h)
        memset(Y + (size_t)h * row, 0, row * sizeof(float));
    for (int y = 0; y < h; y++)
        if (2 * tw > w)
            memset(Y + y * row + (size_t)w * cout, 0, (size_t)cout * sizeof(float));
    wino_to_cl(Y, row, dout + (size_t)img * cout * plane, cout, h, w);
    for (int ty = 0; ty < th; ty++)
        for (int tx = 0; tx < tw; tx++) {
            const float *p = Y + (size_t)(2 * ty) * row + (size_t)(2 * tx) * cout;
            float *dc = DYt + (size_t)(t0 + ty * tw + tx) * cout;
#pragma omp simd
            for (int co = 0; co < cout; co++) {
                /* as wino_dy: A dy rows [a b], [a+c b+d], [a-c b-d], [-c -d], each row -> · A */
                const float a = p[co], b = p[cout + co], cc = p[row + co], d = p[row + cout + co];
                const float r[4][2] = {{a, b}, {a + cc, b + d}, {a - cc, b - d}, {-cc, -d}};
                for (int i = 0; i < 4; i++) {
                    dc[(size_t)(i * 4 + 0) * dstride + co] = r[i][0];
                    dc[(size_t)(i * 4 + 1) * dstride + co] = r[i][0] + r[i][1];
                    dc[(size_t)(i * 4 + 2) * dstride + co] = r[i][0] - r[i][1];
                    dc[(size_t)(i * 4 + 3) * dstride + co] = -r[i][1];
                }
            }
        }
}

/* dU[ξ] (= or +=) DYt[ξ]^T · Vt[ξ] for every ξ on the panel kernel, DYt ([T][cout]) read
 * transposed in place, Vt [T][cin]: tasks of (ξ, 8 output channels), each element written by
 * one task. Call from inside a parallel region, every thread. */
static void wino_dw_cl_panels(const ss_conv2d_t *c, float *dU, size_t us, const float *DYt,
                              size_t ds, const float *Vt, size_t vs, int T, int overwrite)
{
    const int cin = c->cin, cout = c->cout, nblk = (cout + 7) / 8, zero = 0;
#pragma omp for schedule(dynamic, 1)
    for (int task = 0; task < 16 * nblk; task++) {
        const int k = task / nblk, co0 = task % nblk * 8;
        const int rb = cout - co0 < 8 ? cout - co0 : 8;
        float res[8 * SS_PANEL];
        for (int ci0 = 0; ci0 < cin; ci0 += SS_PANEL) {
            const int ncol = cin - ci0 < SS_PANEL ? cin - ci0 : SS_PANEL;
            ss_pairs_block(rb, T, 1, DYt + (size_t)k * ds + co0, 1, cout, &zero,
                           Vt + (size_t)k * vs + ci0, cin, &zero, res);
            for (int r = 0; r < rb; r++) {
                float *d = dU + (size_t)k * us + (size_t)(co0 + r) * cin + ci0;
                const float *q = res + r * SS_PANEL;
                if (overwrite)
                    memcpy(d, q, (size_t)ncol * sizeof(float));
                else
                    for (int col = 0; col < ncol; col++)
                        d[col] += q[col];
            }
        }
    }
}

/* Channels-last weight gradient (wino_cl shapes): per chunk of images, Vt and DYt image by
 * image, then dU[ξ] (+)= DYt[ξ]^T · Vt[ξ], one product per plane reducing over the chunk's tiles;
 * chunks in order. */
static void wino_dw_cl(const ss_conv2d_t *c, float *dweight, const float *dout, const float *in,
                       float *work)
{
    const int cin = c->cin, cout = c->cout, tpi = ((c->h + 1) / 2) * ((c->w + 1) / 2);
    const int cimg = wino_cl_images(c), tcmax = cimg * tpi, slots = wino_slots();
    const size_t us = wino_ustride(c), vs = wino_pstride(tcmax, cin), ds = wino_pstride(tcmax, cout);
    float *dU = work, *Vt = dU + 16 * us, *DYt = Vt + 16 * vs, *tmp0 = DYt + 16 * ds;
    /* the products by sgemm where OpenBLAS runs an AVX-512 core (measured 10-17% faster than
     * the panel kernel at K = 128-512 tiles), otherwise (its Haswell kernel: 18-27% slower) on
     * the panel kernel, in builds for wide vectors (ss_nn_set_own_kernels) */
    const int blas = ss_nn_blas_avx512() || !ss_nn_own_kernels();
    int nt = omp_get_max_threads();
    nt = nt < slots ? nt : slots;
#pragma omp parallel num_threads(nt)
    {
        float *tmp = tmp0 + (size_t)omp_get_thread_num() * wino_cl_tmp_floats(c);
        for (int n0 = 0; n0 < c->n; n0 += cimg) {
            const int ni = c->n - n0 < cimg ? c->n - n0 : cimg;
#pragma omp for schedule(dynamic, 1)
            for (int i = 0; i < ni; i++) {
                wino_input_cl(c, Vt, vs, (long)i * tpi, in, n0 + i, tmp);
                wino_dy_cl(c, DYt, ds, (long)i * tpi, dout, n0 + i, tmp);
            }
            /* dU[ξ] (+)= DYt[ξ]^T · Vt[ξ], the first chunk overwriting */
            if (blas) {
#pragma omp for schedule(dynamic, 1)
                for (int k = 0; k < 16; k++)
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cout, cin, ni * tpi,
                                1.0f, DYt + (size_t)k * ds, cout, Vt + (size_t)k * vs, cin,
                                n0 == 0 ? 0.0f : 1.0f, dU + (size_t)k * us, cin);
            } else {
                wino_dw_cl_panels(c, dU, us, DYt, ds, Vt, vs, ni * tpi, n0 == 0);
            }
        }
        wino_dw_finish(c, dweight, dU, 16 * us, 1);
    }
}

void ss_conv_wino_backward_weights(const ss_conv2d_t *c, float *dweight, const float *dout,
                                   const float *in, float *work)
{
    ss_nn_blas_single();
    if (wino_cl(c)) {
        wino_dw_cl(c, dweight, dout, in, work);
        return;
    }
    if (wino_dw_blockwise(c)) {
        wino_dw_blocks(c, dweight, dout, in, work);
        return;
    }
    const int cin = c->cin, cout = c->cout, tb = wino_tb(c), slots = wino_slots();
    const int nc = wino_dw_chunk(c), tpi = ((c->h + 1) / 2) * ((c->w + 1) / 2);
    const int tcmax = nc * tpi;
    const size_t vs = wino_pstride(cin, tcmax), ds = wino_pstride(cout, tcmax);
    float *dU = work, *V = dU + 16 * wino_ustride(c), *DY = V + 16 * vs,
          *tmp0 = DY + 16 * ds;
    const int strips = !wino_narrow(c);
    int nt = omp_get_max_threads();
    nt = nt < slots ? nt : slots;
#pragma omp parallel num_threads(nt)
    {
        float *tmp = tmp0 + (size_t)omp_get_thread_num() * wino_tmp_floats(c, tb);
        wino_seg_t sg[512];
        wino_piece_t pc[528];
        for (int n0 = 0; n0 < c->n; n0 += nc) {
            const int ni = c->n - n0 < nc ? c->n - n0 : nc;
            const long tbase = (long)n0 * tpi, tc = (long)ni * tpi;
            const long nblocks = wino_nblocks(c, tc, tb);
#pragma omp for schedule(dynamic, 1)
            for (long b = 0; b < nblocks; b++) {
                long t0, t1;
                wino_block(c, tc, tb, nblocks, b, &t0, &t1);
                t0 += tbase, t1 += tbase;
                if (strips) {
                    const int nseg = wino_segments(c, sg, t0, t1);
                    wino_input(c, V + (t0 - tbase), tcmax, vs, in, sg, nseg, tmp, tb);
                    wino_dy(c, DY, tcmax, ds, dout, tbase, t0, t1);
                } else {
                    const int npc = wino_pieces(c, pc, tbase, t0, t1);
                    wino_input_rows(c, V, tcmax, vs, in, pc, npc, tmp);
                    wino_dy_rows(c, DY, tcmax, ds, dout, pc, npc, tmp, tb);
                }
            }
            /* dU[ξ] (+)= DY[ξ] · V[ξ]^T, one task per ξ; the first chunk overwrites. */
#pragma omp for schedule(dynamic, 1)
            for (int k = 0; k < 16; k++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, cout, cin, (int)tc, 1.0f,
                            DY + (size_t)k * ds, tcmax, V + (size_t)k * vs, tcmax,
                            n0 == 0 ? 0.0f : 1.0f, dU + (size_t)k * wino_ustride(c), cin);
        }
        wino_dw_finish(c, dweight, dU, 16 * wino_ustride(c), 1);
    }
}
