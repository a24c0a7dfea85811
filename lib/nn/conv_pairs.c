/* Tap-pair convolution for small output maps (ResNet's layer4 at the 64-96 px crop sizes: 2×2 and
 * 3×3 maps, 512 channels) in training; inference keeps Winograd with precomputed weights, which
 * measured as fast at 2×2 and faster at 3×3. On such maps most of a 3×3 kernel's taps fall on
 * the zero padding: at 2×2 only 16 of the 36 (output position, tap) pairs see the input, at 3×3
 * 49 of 81. im2col multiplies the zeros too; here each output position sums over its valid pairs
 * only:
 *
 *   out[n, co, o]  = Σ_ci Σ_(i,t) in pairs(o)  W[co, ci, t] · x[n, ci, i]
 *   din[n, ci, i]  = Σ_co Σ_(o,t) in pairs'(i) W[co, ci, t] · dout[n, co, o]
 *
 * pairs(o) lists the input positions i and taps t with i = o·stride - pad + t inside the map;
 * pairs'(i) is the same relation read from the input side. Images go in groups of 32, the
 * columns of the product kernel (the 32 lanes of its two vectors): the operand that runs along
 * the columns is transposed once per call into [group][channel][position][32] (x for the forward
 * pass, dout for the input gradient), the weight is read in place. Each 8 × 32 block of the
 * result is one call of pairs_block (channels outer, pairs inner, one fixed summation order)
 * and is written once, so results do not depend on the thread count. The weight gradient
 *
 *   dW[co, ci, t] += Σ_n Σ_(o,i) with tap t  dout[n, co, o] · x[n, ci, i]
 *
 * goes tap by tap over 32 input channels (x copied channels last), and the taps' blocks are
 * interleaved into the tap-innermost weight layout by a table-driven gather.
 *
 * The same kernel also runs the stem's forward pass without im2col (row-direct, at the end).
 *
 * Threading: tasks are blocks of 8 output rows (output channels; input channels for din) over
 * every group (or image) and position of a chunk, so each task's slice of the weight is read
 * from memory once; dynamically scheduled. */
#include "nn_internal.h"

#include <omp.h>
#include <string.h>

#define PAIRS_G SS_PANEL  /* images per group: the kernel's columns */
#define PAIRS_MAX_TAPS 9  /* kh·kw */
#define PAIRS_MAX_P 16    /* output positions */
#define PAIRS_MAX_HW 64   /* input positions */

/* Pair lists. Forward, output position o: np[o] pairs, the kernel offsets of input position i
 * (fb = i·32 into a group's [position][32] block) and of tap t (fa = t into a weight row).
 * Input gradient, input position i: nq[i] pairs (qb = o·32, qa = t). */
typedef struct {
    int np[PAIRS_MAX_P], fa[PAIRS_MAX_P][PAIRS_MAX_TAPS], fb[PAIRS_MAX_P][PAIRS_MAX_TAPS];
    int nq[PAIRS_MAX_HW], qa[PAIRS_MAX_HW][PAIRS_MAX_TAPS], qb[PAIRS_MAX_HW][PAIRS_MAX_TAPS];
    int total; /* valid pairs over all output positions */
} pairs_t;

static int pairs_fits(const ss_conv2d_t *c)
{
    return c->kh * c->kw <= PAIRS_MAX_TAPS && c->ho * c->wo <= PAIRS_MAX_P &&
           c->h * c->w <= PAIRS_MAX_HW;
}

/* Taps are visited in (ky, kx) order, so for every position its pairs ascend by tap. */
static void pairs_fill(const ss_conv2d_t *c, pairs_t *t)
{
    memset(t, 0, sizeof *t);
    for (int oy = 0; oy < c->ho; oy++)
        for (int ox = 0; ox < c->wo; ox++)
            for (int ky = 0; ky < c->kh; ky++)
                for (int kx = 0; kx < c->kw; kx++) {
                    const int iy = oy * c->sh - c->ph + ky, ix = ox * c->sw - c->pw + kx;
                    if (iy < 0 || iy >= c->h || ix < 0 || ix >= c->w)
                        continue;
                    const int o = oy * c->wo + ox, i = iy * c->w + ix, tap = ky * c->kw + kx;
                    t->fa[o][t->np[o]] = tap;
                    t->fb[o][t->np[o]++] = i * PAIRS_G;
                    t->qa[i][t->nq[i]] = tap;
                    t->qb[i][t->nq[i]++] = o * PAIRS_G;
                    t->total++;
                }
}

static int pairs_enabled = 1;

void ss_conv_pairs_enable(int on)
{
    pairs_enabled = on != 0;
}

/* Worth it when at least a third of im2col's products hit the padding (measured, 2 threads: 2×2
 * and 3×3 maps, 44% and 60% of the products, 30-40% faster than im2col in both directions; the
 * stride-2 conv from 4×4 to 2×2, 69%, 20% slower), the channels are many (the weight is read in
 * place, one row block per task) and Winograd F(2×2, 3×3) would not do fewer multiplications
 * (16 per tile: fewer from 4×4 maps on). Independent of the batch size, so workspace sizes stay
 * monotonic in it. */
int ss_conv_pairs_applies(const ss_conv2d_t *c)
{
    if (!pairs_enabled || !ss_nn_own_kernels() || !pairs_fits(c) || c->kh * c->kw < 2 ||
        c->cin < 64 || c->cout < 64)
        return 0;
    pairs_t t;
    pairs_fill(c, &t);
    const long dense = (long)c->ho * c->wo * c->kh * c->kw;
    if (3L * t.total > 2 * dense)
        return 0;
    const int wino = c->kh == 3 && c->kw == 3 && c->sh == 1 && c->sw == 1 && c->ph == 1 &&
                     c->pw == 1;
    return !(wino && 16L * ((c->h + 1) / 2) * ((c->w + 1) / 2) < t.total);
}

/* The weight gradient by pairs: where every tap has some (a tap without any would still be
 * interleaved into the weight layout, as zeros: on a 1×1 map, 8 of 9; measured slower there). */
int ss_conv_pairs_dw_applies(const ss_conv2d_t *c)
{
    if (!ss_conv_pairs_applies(c))
        return 0;
    pairs_t t;
    pairs_fill(c, &t);
    int used[PAIRS_MAX_TAPS] = {0};
    for (int o = 0; o < c->ho * c->wo; o++)
        for (int j = 0; j < t.np[o]; j++)
            used[t.fa[o][j]] = 1;
    for (int tap = 0; tap < c->kh * c->kw; tap++)
        if (!used[tap])
            return 0;
    return 1;
}

/* Groups per chunk: the transposed operand of a chunk within the work cap (at least one). */
static int pairs_chunk(const ss_conv2d_t *c, int rows_per_image)
{
    const int ng = (c->n + PAIRS_G - 1) / PAIRS_G;
    size_t per = (size_t)rows_per_image * PAIRS_G, g = ss_conv_work_cap() / per;
    if (g < 1)
        g = 1;
    return g < (size_t)ng ? (int)g : ng;
}

static size_t pairs_chunk_floats(const ss_conv2d_t *c, int rows_per_image)
{
    return (size_t)pairs_chunk(c, rows_per_image) * rows_per_image * PAIRS_G;
}

/* The weight gradient's copy of the input: [image][position][cin rounded up to 32], a chunk of
 * images within the work cap (at least one). */
static int pairs_cin_pad(const ss_conv2d_t *c)
{
    return (c->cin + SS_PANEL - 1) / SS_PANEL * SS_PANEL;
}

static int pairs_dw_chunk(const ss_conv2d_t *c)
{
    size_t per = (size_t)c->h * c->w * pairs_cin_pad(c), k = ss_conv_work_cap() / per;
    k = k < 1 ? 1 : k;
    return k < (size_t)c->n ? (int)k : c->n;
}

size_t ss_conv_pairs_workspace(const ss_conv2d_t *c)
{
    size_t f = pairs_chunk_floats(c, c->cin * c->h * c->w),
           b = pairs_chunk_floats(c, c->cout * c->ho * c->wo),
           w = (size_t)pairs_dw_chunk(c) * c->h * c->w * pairs_cin_pad(c);
    f = f > b ? f : b;
    return f > w ? f : w;
}

static int pairs_threads(void)
{
    const int t = omp_get_max_threads(), p = omp_get_num_procs();
    return p > 0 && p < t ? p : t;
}

/* dst[g][ch][pos][32] = src[g·32 + col][ch][pos] for the groups [g0, g0 + ngc) (zeros past the
 * last image), split over (group, channel) rows; call from inside a parallel region. */
static void pairs_transpose(float *dst, const float *src, int n, int chans, int npos, int g0,
                            int ngc)
{
    const size_t rows = (size_t)ngc * chans;
#pragma omp for schedule(static)
    for (size_t row = 0; row < rows; row++) {
        const int g = (int)(row / chans), ch = (int)(row % chans);
        float *d = dst + row * npos * PAIRS_G;
        for (int col = 0; col < PAIRS_G; col++) {
            const int img = (g0 + g) * PAIRS_G + col;
            if (img >= n) {
                for (int p = 0; p < npos; p++)
                    d[p * PAIRS_G + col] = 0.0f;
                continue;
            }
            const float *s = src + ((size_t)img * chans + ch) * npos;
            for (int p = 0; p < npos; p++)
                d[p * PAIRS_G + col] = s[p];
        }
    }
}

/* One pass of the tap-pair product, the forward pass or the input gradient: out[img][row][pos]
 * for rows [0, rows) and positions [0, npos) = Σ_k Σ_pairs A[row·sr + k·sak + a] · src at the
 * pair's position, src ([n][kn][spos]) copied into groups of 32 images first; then
 * (+ bias) (+ residual), ReLU, in conv_scatter_cols's order. */
typedef struct {
    int rows, kn, npos, spos;
    const int *np, (*a)[PAIRS_MAX_TAPS], (*b)[PAIRS_MAX_TAPS]; /* pairs of each position */
    const float *A, *src, *bias, *residual;
    long sr, sak;
    float *out;
    int relu;
} pairs_pass_t;

static void pairs_run(const ss_conv2d_t *c, const pairs_pass_t *q, float *work)
{
    const int ng = (c->n + PAIRS_G - 1) / PAIRS_G, nblk = (q->rows + 7) / 8;
    const int gc = pairs_chunk(c, q->kn * q->spos);
    for (int g0 = 0; g0 < ng; g0 += gc) {
        const int ngc = ng - g0 < gc ? ng - g0 : gc;
#pragma omp parallel num_threads(pairs_threads())
        {
            pairs_transpose(work, q->src, c->n, q->kn, q->spos, g0, ngc);
            float res[8 * PAIRS_G];
#pragma omp for schedule(dynamic, 1)
            for (int blk = 0; blk < nblk; blk++) {
                const int r0 = blk * 8, rb = q->rows - r0 < 8 ? q->rows - r0 : 8;
                for (int g = 0; g < ngc; g++) {
                    const float *B = work + (size_t)g * q->kn * q->spos * PAIRS_G;
                    const int img0 = (g0 + g) * PAIRS_G;
                    const int ncol = c->n - img0 < PAIRS_G ? c->n - img0 : PAIRS_G;
                    for (int o = 0; o < q->npos; o++) {
                        if (q->np[o])
                            ss_pairs_block(rb, q->kn, q->np[o], q->A + (size_t)r0 * q->sr, q->sr,
                                           q->sak, q->a[o], B, (long)q->spos * PAIRS_G, q->b[o],
                                           res);
                        else
                            memset(res, 0, sizeof res);
                        for (int r = 0; r < rb; r++) {
                            const float bias = q->bias ? q->bias[r0 + r] : 0.0f;
                            for (int col = 0; col < ncol; col++) {
                                const size_t at =
                                    ((size_t)(img0 + col) * q->rows + r0 + r) * q->npos + o;
                                float v = res[r * PAIRS_G + col];
                                if (q->bias)
                                    v += bias;
                                if (q->residual)
                                    v += q->residual[at];
                                q->out[at] = (q->relu && v < 0.0f) ? 0.0f : v;
                            }
                        }
                    }
                }
            }
        }
    }
}

void ss_conv_pairs_forward(const ss_conv2d_t *c, float *out, const float *in, const float *weight,
                           const float *bias, const float *residual, int relu, float *work)
{
    pairs_t t;
    pairs_fill(c, &t);
    const int khw = c->kh * c->kw;
    const pairs_pass_t q = {.rows = c->cout, .kn = c->cin, .npos = c->ho * c->wo,
                            .spos = c->h * c->w, .np = t.np, .a = t.fa, .b = t.fb, .A = weight,
                            .src = in, .bias = bias, .residual = residual,
                            .sr = (long)c->cin * khw, .sak = khw, .out = out, .relu = relu};
    pairs_run(c, &q, work);
}

void ss_conv_pairs_backward_input(const ss_conv2d_t *c, float *din, const float *dout,
                                  const float *weight, float *work)
{
    pairs_t t;
    pairs_fill(c, &t);
    const int khw = c->kh * c->kw;
    const pairs_pass_t q = {.rows = c->cin, .kn = c->cout, .npos = c->h * c->w,
                            .spos = c->ho * c->wo, .np = t.nq, .a = t.qa, .b = t.qb, .A = weight,
                            .src = dout, .sr = khw, .sak = (long)c->cin * khw, .out = din};
    pairs_run(c, &q, work);
}

/* dweight[co][ci][t] += Σ_n Σ_(o,i) with tap t  dout[n, co, o] · x[n, ci, i]: per tap, its pairs
 * (the corner taps of a 2×2 map have one, the centre four), K = the chunk's images. The input
 * is copied channels last ([image][position][ci], ci padded to whole panels) so that a panel is
 * 32 input channels; dout is read in place. Tasks are blocks of 8 output channels; for each
 * panel of input channels the 9 taps' 8 × 32 blocks are interleaved into the tap-innermost
 * weight layout and added to dweight, chunk after chunk in order. */
void ss_conv_pairs_backward_weights(const ss_conv2d_t *c, float *dweight, const float *dout,
                                    const float *in, float *work)
{
    pairs_t t;
    pairs_fill(c, &t);
    const int cin = c->cin, cout = c->cout, HW = c->h * c->w, P = c->ho * c->wo;
    const int khw = c->kh * c->kw, K = cin * khw, cp = pairs_cin_pad(c);
    const int nblk = (cout + 7) / 8, chunk = pairs_dw_chunk(c);
    /* pairs by tap: output position o (A offset) and input position i (B offset, i·cp) */
    int nt[PAIRS_MAX_TAPS] = {0}, ta[PAIRS_MAX_TAPS][PAIRS_MAX_P],
        tb[PAIRS_MAX_TAPS][PAIRS_MAX_P];
    for (int o = 0; o < P; o++)
        for (int j = 0; j < t.np[o]; j++) {
            const int tap = t.fa[o][j];
            ta[tap][nt[tap]] = o;
            tb[tap][nt[tap]++] = t.fb[o][j] / PAIRS_G * cp;
        }
    /* element e of a row's run of 32 channels × khw taps comes from res[e % khw][e / khw] */
    int gidx[PAIRS_G * PAIRS_MAX_TAPS];
    for (int e = 0; e < PAIRS_G * khw; e++)
        gidx[e] = e % khw * 8 * PAIRS_G + e / khw;
    for (int n0 = 0; n0 < c->n; n0 += chunk) {
        const int nc = c->n - n0 < chunk ? c->n - n0 : chunk;
#pragma omp parallel num_threads(pairs_threads())
        {
            /* the chunk's input, channels last */
#pragma omp for schedule(static)
            for (int img = 0; img < nc; img++) {
                const float *src = in + (size_t)(n0 + img) * cin * HW;
                float *dst = work + (size_t)img * HW * cp;
                for (int i = 0; i < HW; i++) {
                    for (int ci = 0; ci < cin; ci++)
                        dst[(size_t)i * cp + ci] = src[(size_t)ci * HW + i];
                    for (int ci = cin; ci < cp; ci++)
                        dst[(size_t)i * cp + ci] = 0.0f;
                }
            }
            float res[PAIRS_MAX_TAPS][8 * PAIRS_G];
#pragma omp for schedule(dynamic, 1)
            for (int blk = 0; blk < nblk; blk++) {
                const int co0 = blk * 8, rb = cout - co0 < 8 ? cout - co0 : 8;
                const float *A = dout + (size_t)n0 * cout * P + (size_t)co0 * P;
                for (int ci0 = 0; ci0 < cin; ci0 += SS_PANEL) {
                    const int ncol = cin - ci0 < SS_PANEL ? cin - ci0 : SS_PANEL;
                    for (int tap = 0; tap < khw; tap++)
                        if (nt[tap])
                            ss_pairs_block(rb, nc, nt[tap], A, P, (long)cout * P, ta[tap],
                                           work + ci0, (long)HW * cp, tb[tap], res[tap]);
                        else
                            memset(res[tap], 0, sizeof res[tap]);
                    for (int r = 0; r < rb; r++) {
                        float *d = dweight + (size_t)(co0 + r) * K + (size_t)ci0 * khw;
                        const float *rr = &res[0][0] + r * PAIRS_G;
                        const int ne = ncol * khw;
                        for (int e = 0; e < ne; e++) /* a gather by the table */
                            d[e] += rr[gidx[e]];
                    }
                }
            }
        }
    }
}

/* ---- row-direct forward: wide output rows, small K (the stem) --------------------------------
 *
 * The same kernel without im2col: a block is 8 output channels × 32 consecutive output pixels of
 * one row. Each image is copied into [phase][y][ci][x'] with its padding (phase f holds padded
 * columns x'·stride + f), so for kernel row ky, channel ci and column kx the block's 32 inputs
 * are 32 consecutive floats, and the pair (ky, ci) steps through the copy by one row of it:
 * k = (ky, ci) runs with one stride, the pairs are the kernel's columns kx. The weight is
 * reordered once per call to [co][ky][ci][kx] to match. */
#define ROWS_SPARE SS_PANEL /* columns read past a row's end by a partial block */

static int rows_width(const ss_conv2d_t *c)
{
    return (c->w + 2 * c->pw + c->sw - 1) / c->sw + ROWS_SPARE;
}

static size_t rows_image_floats(const ss_conv2d_t *c)
{
    return (size_t)c->sw * (c->h + 2 * c->ph) * c->cin * rows_width(c);
}

/* Measured against im2col into panels (2 threads, batch 32): the stem at 64 px (rows of 32
 * pixels) 14% faster, at 224 px (112) 7%; at 96 px (48: a second block half empty) 8% slower,
 * and so was layer2.0 at 224 px (K = 576). So: rows filling their blocks to at least 7/8, a
 * small K, stride 2 (stride 1 is Winograd's). */
int ss_conv_rows_applies(const ss_conv2d_t *c)
{
    const int blocks = (c->wo + SS_PANEL - 1) / SS_PANEL;
    return pairs_enabled && ss_nn_own_kernels() && c->sw == 2 && c->kw <= PAIRS_MAX_TAPS &&
           c->wo >= SS_PANEL && 8 * c->wo >= 7 * blocks * SS_PANEL &&
           (size_t)c->cin * c->kh * c->kw <= 256 && c->cout >= 8;
}

size_t ss_conv_rows_workspace(const ss_conv2d_t *c)
{
    int p = omp_get_num_procs();
    p = p > 0 ? p : 1;
    return (size_t)c->cout * c->cin * c->kh * c->kw + (size_t)p * rows_image_floats(c);
}

void ss_conv_rows_forward(const ss_conv2d_t *c, float *out, const float *in, const float *weight,
                          const float *bias, const float *residual, int relu, float *work)
{
    const int cin = c->cin, cout = c->cout, kh = c->kh, kw = c->kw, K = cin * kh * kw;
    const int sw = c->sw, hp = c->h + 2 * c->ph, rw = rows_width(c), P = c->ho * c->wo;
    const size_t phase = (size_t)hp * cin * rw;
    float *wr = work; /* [co][ky][ci][kx] */
    int aoff[PAIRS_MAX_TAPS], boff[PAIRS_MAX_TAPS];
    for (int kx = 0; kx < kw; kx++) {
        aoff[kx] = kx;
        boff[kx] = (int)((size_t)(kx % sw) * phase) + kx / sw;
    }
#pragma omp parallel num_threads(pairs_threads())
    {
#pragma omp for schedule(static)
        for (int co = 0; co < cout; co++)
            for (int ky = 0; ky < kh; ky++)
                for (int ci = 0; ci < cin; ci++)
                    memcpy(wr + (size_t)co * K + ((size_t)ky * cin + ci) * kw,
                           weight + (size_t)co * K + ((size_t)ci * kh + ky) * kw,
                           (size_t)kw * sizeof(float));
        float *xc = work + (size_t)cout * K + (size_t)omp_get_thread_num() * rows_image_floats(c);
        float res[8 * SS_PANEL];
#pragma omp for schedule(dynamic, 1)
        for (int img = 0; img < c->n; img++) {
            /* the padded image by phases: xc[f][y][ci][x'] = in[img][ci][y - ph][x'·sw + f - pw] */
            const float *src = in + (size_t)img * cin * c->h * c->w;
            for (int f = 0; f < sw; f++)
                for (int y = 0; y < hp; y++)
                    for (int ci = 0; ci < cin; ci++) {
                        float *d = xc + (size_t)f * phase + ((size_t)y * cin + ci) * rw;
                        const int iy = y - c->ph;
                        const float *s = src + ((size_t)ci * c->h + iy) * c->w;
                        for (int xq = 0; xq < rw; xq++) {
                            const int ix = xq * sw + f - c->pw;
                            d[xq] = iy >= 0 && iy < c->h && ix >= 0 && ix < c->w ? s[ix] : 0.0f;
                        }
                    }
            for (int oy = 0; oy < c->ho; oy++) {
                const float *B = xc + (size_t)oy * c->sh * cin * rw;
                for (int ox0 = 0; ox0 < c->wo; ox0 += SS_PANEL) {
                    const int ncol = c->wo - ox0 < SS_PANEL ? c->wo - ox0 : SS_PANEL;
                    for (int co0 = 0; co0 < cout; co0 += 8) {
                        const int rb = cout - co0 < 8 ? cout - co0 : 8;
                        ss_pairs_block(rb, kh * cin, kw, wr + (size_t)co0 * K, K, kw, aoff,
                                       B + ox0, rw, boff, res);
                        for (int r = 0; r < rb; r++) {
                            const size_t at = ((size_t)img * cout + co0 + r) * P +
                                              (size_t)oy * c->wo + ox0;
                            const float b = bias ? bias[co0 + r] : 0.0f;
                            const float *q = res + r * SS_PANEL;
                            for (int col = 0; col < ncol; col++) {
                                float v = q[col] + b;
                                if (residual)
                                    v += residual[at + col];
                                out[at + col] = (relu && v < 0.0f) ? 0.0f : v;
                            }
                        }
                    }
                }
            }
        }
    }
}
