/* Conv2d forward/backward: im2col + sgemm with a wide N dimension (columns = image × output
 * pixel over the batch), so the 2×2 … 7×7 planes of late ResNet layers still make good sgemms.
 *
 * Layouts (K = cin*kh*kw, P = ho*wo):
 *   cols  [K, ncols]     row k = (ci, ky, kx), column = (image, oy, ox)
 *   C / D [cout, ncols]  sgemm result / gathered dout, scattered to / from NCHW
 * Forward:  tasks of nb columns over the whole batch; each task does im2col into its thread's
 *           slot of `work`, C = W[cout, K] · cols, and scatters C into out with the fused
 *           epilogue (bias, residual, ReLU). No barriers; dynamic schedule.
 * Backward: per chunk of images (bounded scratch), tasks of whole images: D = gather(dout),
 *           cols = im2col(in), dcols = W^T · D and col2im into the task's din planes; after
 *           one barrier, dW += D · cols^T split over blocks of dW columns.
 * Shape-chosen variants of the im2col path (each described where it is defined):
 *   row mode (few columns, large weight: layer4 at 64-96 px): tasks are blocks of output rows
 *     (forward) / input channels (input gradient) over all columns, so the weight is packed once;
 *   plane mode (large output planes: the stem): tasks are pieces of one image's plane, the sgemm
 *     reads / writes the NCHW tensors in place, and a stem-like weight gradient is summed in
 *     per-group partials;
 *   stream mode (backward, small weights: stride-2 and downsample convs): tasks of a few images
 *     whose blocks stay in cache, the weight gradient again in per-group partials.
 * Small planes use an offset table for im2col / col2im.
 * 1×1 stride-1 convs with a large plane skip im2col: sgemms straight on the NCHW tensors.
 * 3×3 stride-1 pad-1 convs with enough tiles use Winograd F(2×2,3×3) (conv_winograd.c) for the
 * forward pass, the input gradient and the weight gradient. Convs on small output maps whose
 * kernels mostly overhang the padding (layer4 at 64-96 px) sum over the valid (position, tap)
 * pairs only, and the stem's forward pass goes by output rows without im2col (conv_pairs.c).
 *
 * Threading: one OpenMP region per call; OpenBLAS runs single-threaded inside it (see sgemm.c).
 * Task extents depend only on the shape and the CPU count, and every output element is reduced
 * by one thread in a fixed order (inside one sgemm call, or, for the plane- and stream-mode
 * weight gradients, fixed groups summed in group order), so results do not depend on the thread
 * count or on the schedule.
 */
#include "slidestream/error.h"
#include "nn_internal.h"

#include <omp.h>
#include <string.h>

/* Backward scratch budget per chunk of images in floats (32 MiB): large enough that the sgemm
 * K dimension of dW is wide for every ResNet layer at batch 32, small enough that batch 256
 * does not blow up memory. */
#define CONV_WORK_CAP_DEFAULT ((size_t)1 << 23)
static size_t conv_work_cap = CONV_WORK_CAP_DEFAULT;

void ss_conv2d_set_work_cap(size_t floats)
{
    conv_work_cap = floats ? floats : CONV_WORK_CAP_DEFAULT;
}

size_t ss_conv_work_cap(void)
{
    return conv_work_cap;
}

/* A 1×1 stride-1 conv goes per image (no im2col) when one image's plane is at least this wide. */
#define CONV_1X1_DIRECT_MIN_P 1024

int ss_conv2d_init2(ss_conv2d_t *c, int n, int cin, int h, int w, int cout, int kh, int kw,
                    int sh, int sw, int ph, int pw)
{
    if (n < 1 || cin < 1 || h < 1 || w < 1 || cout < 1 || kh < 1 || kw < 1)
        return ss_error("nn", "conv2d: bad shape n=%d cin=%d h=%d w=%d cout=%d k=%dx%d", n, cin,
                        h, w, cout, kh, kw);
    if (sh < 1 || sw < 1 || ph < 0 || pw < 0)
        return ss_error("nn", "conv2d: bad stride %dx%d or padding %dx%d", sh, sw, ph, pw);
    int ho = (h + 2 * ph - kh) / sh + 1, wo = (w + 2 * pw - kw) / sw + 1;
    if (h + 2 * ph < kh || w + 2 * pw < kw || ho < 1 || wo < 1)
        return ss_error("nn", "conv2d: kernel %dx%d larger than padded input %dx%d", kh, kw,
                        h + 2 * ph, w + 2 * pw);
    *c = (ss_conv2d_t){.n = n, .cin = cin, .h = h, .w = w, .cout = cout, .kh = kh, .kw = kw,
                       .sh = sh, .sw = sw, .ph = ph, .pw = pw, .ho = ho, .wo = wo};
    return 0;
}

int ss_conv2d_init(ss_conv2d_t *c, int n, int cin, int h, int w, int cout, int kh, int kw,
                   int stride, int pad)
{
    return ss_conv2d_init2(c, n, cin, h, w, cout, kh, kw, stride, stride, pad, pad);
}

static size_t conv_k(const ss_conv2d_t *c)
{
    return (size_t)c->cin * c->kh * c->kw;
}

static size_t conv_p(const ss_conv2d_t *c)
{
    return (size_t)c->ho * c->wo;
}

static int conv_direct_1x1(const ss_conv2d_t *c)
{
    return c->kh == 1 && c->kw == 1 && c->sh == 1 && c->sw == 1 && c->ph == 0 && c->pw == 0 &&
           conv_p(c) >= CONV_1X1_DIRECT_MIN_P;
}

/* Images per chunk: as many as fit CONV_WORK_CAP (at least one). Depends on the shape only. */
static int conv_chunk(const ss_conv2d_t *c)
{
    size_t per_image = (conv_k(c) + (size_t)c->cout) * conv_p(c);
    size_t nc = conv_work_cap / per_image;
    if (nc < 1)
        nc = 1;
    if (nc > (size_t)c->n)
        nc = (size_t)c->n;
    return (int)nc;
}

/* Worker slots: per-thread scratch in the forward pass. Fixed for the process (the CPUs we may
 * run on), so workspace sizes queried early stay valid; regions use at most this many threads. */
static int conv_slots(void)
{
    int p = omp_get_num_procs();
    return p > 0 ? p : 1;
}

static int conv_threads(void)
{
    int t = omp_get_max_threads(), s = conv_slots();
    return t < s ? t : s;
}

static int round16(long x)
{
    return (int)((x + 15) / 16 * 16);
}

static int clampi(int x, int lo, int hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}

/* Output columns per forward task: a few tasks per slot for dynamic balancing (a busy machine
 * may stall one thread), at least 64 so sgemm stays efficient, at most 2048 so the im2col block
 * stays in cache. Depends on the shape and slot count only, never on the live thread count. */
#define CONV_FWD_NB_MAX 2048
static int conv_fwd_nb(const ss_conv2d_t *c)
{
    long total = (long)c->n * (long)conv_p(c);
    return clampi(round16((total + 3L * conv_slots() - 1) / (3L * conv_slots())), 64,
                  CONV_FWD_NB_MAX);
}

/* "Row" mode, for convs with few output columns and a large weight (layer4 of ResNet at 64-96 px:
 * 512 channels, 3×3 planes): with column tasks of ~64 columns each task's sgemm re-packs the
 * whole weight matrix, which costs as much as the product. Instead im2col covers every column
 * at once (tasks of columns, one barrier) and tasks are blocks of output rows (channels) over
 * all columns, so the weight is packed once in all. It applies when the column tasks would be
 * at most a quarter as wide as the weight is tall (at 2 threads layer3.0 at 64-96 px, nb / cout
 * = 0.4-0.75, measured faster with column tasks; layer4, 0.125, with row tasks) and all columns
 * fit: at most CONV_ROWS_MAX_COLS, and within the work cap (which bounds the workspace this
 * adds). */
#define CONV_ROWS_MAX_COLS 2048

static long conv_rows_max_cols(const ss_conv2d_t *c)
{
    long r = (long)(conv_work_cap / (conv_k(c) + (size_t)c->cout));
    return r < CONV_ROWS_MAX_COLS ? r : CONV_ROWS_MAX_COLS;
}

static int conv_fwd_rows(const ss_conv2d_t *c)
{
    const long total = (long)c->n * (long)conv_p(c);
    return total <= conv_rows_max_cols(c) && 4L * conv_fwd_nb(c) <= c->cout;
}

/* Row-mode tasks per slot. Each task re-packs every column, so more tasks cost more packing:
 * one per slot measured ~5% faster on layer4 than two (at the price of no dynamic balancing). */
#define CONV_ROW_TPS 1L

/* Rows (output channels) per row-mode task: CONV_ROW_TPS per slot, at least 32. */
static int conv_row_block(int m)
{
    const long parts = CONV_ROW_TPS * conv_slots();
    return clampi(round16((m + parts - 1) / parts), 32, m > 32 ? round16(m) : 32);
}

/* "Plane" mode, for convs with large output planes (the stem: 48² or 32² at 96 or 64 px): tasks
 * are pieces of one image's plane, so the sgemm writes straight into the NCHW output (a
 * [cout, P] matrix with leading dimension P) and the backward reads dout the same way, with no
 * gather or scatter copies. Pieces: P split evenly into blocks of at most CONV_FWD_NB_MAX. */
#define CONV_PLANE_MIN_P 512

static int conv_plane_mode(const ss_conv2d_t *c)
{
    return conv_p(c) >= CONV_PLANE_MIN_P;
}

static int conv_plane_pieces(const ss_conv2d_t *c)
{
    return (int)((conv_p(c) + CONV_FWD_NB_MAX - 1) / CONV_FWD_NB_MAX);
}

/* Columns of the widest piece (what a slot's im2col block must hold). */
static int conv_plane_width(const ss_conv2d_t *c)
{
    int lo, hi;
    ss_nn_split((int)conv_p(c), conv_plane_pieces(c), 0, 16, &lo, &hi);
    return hi - lo;
}

/* Panel mode: im2col straight into panels of 32 output columns ([K][32] each, the layout
 * ss_panel_block reads) and the product by blocks of 8 output channels, the weight read in
 * place: an sgemm would copy the weight and the im2col block once more into its own layout,
 * which at these sizes (the stem: K = 147; the stride-2 convs) costs as much as the product.
 * Tasks are runs of panels over the batch's columns (image, oy, ox), a few per slot; within a
 * task, channel blocks outside and panels inside, so each weight block is read once per task. */
#define CONV_PANELS_MAX 8

static int conv_fwd_panels(const ss_conv2d_t *c)
{
    /* measured (bench/conv_bench, 2 threads): faster for the stem at every size, for the
     * stride-2 3×3 convs at 64-96 px (10-20%) and for layer4's 3×3 convs on 2×2 and 3×3 maps
     * (K = 4608, 7-18%); slower with K < 128 (the 1×1 downsample) and for layer2.0 at 224 px,
     * where plane mode's long sgemms win (large planes, K = 576) */
    return conv_k(c) >= 128 && conv_k(c) <= 8192 && !(conv_plane_mode(c) && conv_k(c) > 256);
}

/* Panels per task: a few tasks per slot, at most CONV_PANELS_MAX, and the task's im2col block
 * within CONV_PANELS_CACHE floats (it is read once per block of 8 channels, so it should stay
 * in the core's cache: with 224 px inputs 8 panels of layer4.0's K = 2304 did not). */
#define CONV_PANELS_CACHE 65536

static int conv_panels_per_task(const ss_conv2d_t *c)
{
    const long panels = ((long)c->n * (long)conv_p(c) + SS_PANEL - 1) / SS_PANEL;
    const long fit = CONV_PANELS_CACHE / ((long)conv_k(c) * SS_PANEL);
    long ppt = (panels + 3L * conv_slots() - 1) / (3L * conv_slots());
    ppt = ppt < fit ? ppt : fit;
    return clampi((int)ppt, 1, CONV_PANELS_MAX);
}

/* Weight gradient without an input gradient (the stem) in plane mode: groups of plane pieces,
 * each group summing its pieces' dW = dout_i[:, piece] · cols^T into its own partial (the
 * sgemm reads dout in place, the im2col block stays in cache), then dW += the partials in group
 * order. The groups (CONV_DW_GROUPS per slot) and pieces depend on the shape and the CPU count
 * only, so the sums do not depend on the thread count. Only for small weights (the partials). */
#define CONV_DW_GROUPS 4
#define CONV_DW_PARTIAL_MAX 65536

static int conv_plane_dw(const ss_conv2d_t *c)
{
    return conv_plane_mode(c) && (size_t)c->cout * conv_k(c) <= CONV_DW_PARTIAL_MAX;
}

static size_t conv_plane_dw_workspace(const ss_conv2d_t *c)
{
    return (size_t)conv_slots() * conv_k(c) * (size_t)conv_plane_width(c) +
           (size_t)CONV_DW_GROUPS * conv_slots() * c->cout * conv_k(c);
}

/* "Stream" mode for the backward of convs with a small weight (stride-2 3×3 and 1×1 downsample
 * convs of layer2-4): instead of im2col over a whole chunk of images into a large buffer (a
 * round trip through memory) and dW tasks that re-pack all of D, tasks of a few whole images
 * keep their cols / D / dcols blocks in cache: din as in the image tasks below, and the task's
 * dW = D · cols^T added to its group's partial, the groups summed in order at the end (as in
 * conv_backward_plane_dw). Applies when the partials (CONV_DW_GROUPS per slot) take at most a
 * quarter of the work cap. Tasks take as many images as fit CONV_STREAM_FLOATS (at least one),
 * but no more than leave two tasks per slot. */
#define CONV_STREAM_FLOATS ((size_t)1 << 18)

static int conv_bwd_stream_imgs(const ss_conv2d_t *c)
{
    size_t per = (2 * conv_k(c) + (size_t)c->cout) * conv_p(c), imgs = CONV_STREAM_FLOATS / per;
    /* At least two tasks per slot, so small planes still use every thread. */
    const size_t parts = 2 * (size_t)conv_slots(), most = ((size_t)c->n + parts - 1) / parts;
    if (imgs > most)
        imgs = most;
    return imgs < 1 ? 1 : (int)imgs;
}

static size_t conv_stream_partials(const ss_conv2d_t *c)
{
    return (size_t)CONV_DW_GROUPS * conv_slots() * c->cout * conv_k(c);
}

static size_t conv_bwd_stream_workspace(const ss_conv2d_t *c)
{
    size_t w = (size_t)conv_bwd_stream_imgs(c) * conv_p(c);
    return (size_t)conv_slots() * (2 * conv_k(c) + (size_t)c->cout) * w + conv_stream_partials(c);
}

/* The problem whose forward pass is this conv's input gradient (3×3 s1 p1 only). */
static ss_conv2d_t conv_transposed(const ss_conv2d_t *c)
{
    ss_conv2d_t t = *c;
    t.cin = c->cout;
    t.cout = c->cin;
    return t;
}

size_t ss_conv2d_forward_workspace(const ss_conv2d_t *c)
{
    if (conv_direct_1x1(c))
        return 0;
    /* The im2col size is always included, so the size never drops when a smaller batch falls
     * below the Winograd tile threshold (workspace must not grow when n shrinks). */
    size_t im2col = (size_t)conv_slots() * (conv_k(c) + (size_t)c->cout) * (size_t)conv_fwd_nb(c);
    /* Row mode: cols + C for every column. Reserved whether or not the mode applies (it may at a
     * smaller batch); min(total, max cols) grows with n, so the size never drops with n. */
    long total = (long)c->n * (long)conv_p(c), rmax = conv_rows_max_cols(c);
    size_t rows = (conv_k(c) + (size_t)c->cout) * (size_t)(total < rmax ? total : rmax);
    if (rows > im2col)
        im2col = rows;
    /* Plane mode: one im2col block per slot (depends on the plane only). */
    if (conv_plane_mode(c)) {
        size_t plane = (size_t)conv_slots() * conv_k(c) * (size_t)conv_plane_width(c);
        if (plane > im2col)
            im2col = plane;
    }
    if (conv_fwd_panels(c)) {
        size_t panels = (size_t)conv_slots() *
                        (conv_k(c) * SS_PANEL * conv_panels_per_task(c) + 8 * SS_PANEL);
        if (panels > im2col)
            im2col = panels;
    }
    if (ss_conv_pairs_applies(c) && ss_conv_pairs_workspace(c) > im2col)
        im2col = ss_conv_pairs_workspace(c);
    if (ss_conv_rows_applies(c) && ss_conv_rows_workspace(c) > im2col)
        im2col = ss_conv_rows_workspace(c);
    if (ss_conv_wino_applies(c) || ss_conv_wino_applies_u(c)) {
        size_t wino = ss_conv_wino_workspace(c);
        return wino > im2col ? wino : im2col;
    }
    return im2col;
}

/* Images per backward task in a chunk of nc images: about nb columns (as in the forward), whole
 * images so that each task owns its din planes. */
static int conv_bwd_images(const ss_conv2d_t *c, int nc)
{
    const long P = (long)conv_p(c), ncols = (long)nc * P, slots = conv_slots();
    const long nb = clampi(round16((ncols + 3 * slots - 1) / (3 * slots)), 64, 2048);
    long imgs = (nb + P - 1) / P;
    return (int)(imgs < 1 ? 1 : imgs > nc ? nc : imgs);
}

/* Input channels per row-mode input-gradient task (see conv_bwd_rows): CONV_ROW_TPS per slot. */
static int conv_bwd_cib(const ss_conv2d_t *c)
{
    const int parts = (int)CONV_ROW_TPS * conv_slots();
    return (c->cin + parts - 1) / parts;
}

/* Row mode for the input gradient, the backward twin of conv_fwd_rows: with image tasks the
 * sgemm dcols = W^T · D of each task re-packs the whole weight; when a task would have fewer
 * columns than a block of input channels has rows, tasks become blocks of input channels over
 * every column of the chunk instead (D is re-packed per task, which is cheap there). */
static int conv_bwd_rows(const ss_conv2d_t *c)
{
    const int chunk = conv_chunk(c), P = (int)conv_p(c);
    const long ncols = (long)chunk * P, w = (long)conv_bwd_images(c, chunk) * P;
    return ncols <= conv_rows_max_cols(c) && w < (long)conv_bwd_cib(c) * c->kh * c->kw;
}

/* Images per row-mode input-gradient sub-block: the dcols block of a task covers about
 * CONV_ROWS_SUB_COLS columns (whole images, for col2im) at a time, bounding its scratch. */
#define CONV_ROWS_SUB_COLS 512

static int conv_bwd_rows_sub(const ss_conv2d_t *c, int nc)
{
    const int P = (int)conv_p(c), imgs = CONV_ROWS_SUB_COLS / P;
    return imgs < 1 ? 1 : imgs > nc ? nc : imgs;
}

static int conv_bwd_stream(const ss_conv2d_t *c)
{
    return !conv_bwd_rows(c) && conv_stream_partials(c) <= conv_work_cap / 4;
}

size_t ss_conv2d_backward_workspace(const ss_conv2d_t *c)
{
    if (conv_direct_1x1(c))
        return 0;
    const int chunk = conv_chunk(c);
    /* cols + D for the chunk, then per slot one dcols block: [K, images*P] for image tasks, or
     * [cib*kh*kw, sub-block images*P] in row mode (reserved whether or not that applies; it
     * grows with n, so the size never drops with n). */
    size_t slot = conv_k(c) * conv_p(c) * (size_t)conv_bwd_images(c, chunk);
    size_t slot_rows = (size_t)conv_bwd_cib(c) * c->kh * c->kw * conv_p(c) *
                       (size_t)conv_bwd_rows_sub(c, chunk);
    if (slot_rows > slot)
        slot = slot_rows;
    size_t im2col = (size_t)chunk * (conv_k(c) + (size_t)c->cout) * conv_p(c) +
                    (size_t)conv_slots() * slot;
    if (conv_plane_dw(c) && conv_plane_dw_workspace(c) > im2col)
        im2col = conv_plane_dw_workspace(c);
    if (conv_bwd_stream(c) && conv_bwd_stream_workspace(c) > im2col)
        im2col = conv_bwd_stream_workspace(c);
    if (ss_conv_pairs_applies(c) && ss_conv_pairs_workspace(c) > im2col)
        im2col = ss_conv_pairs_workspace(c);
    ss_conv2d_t t = conv_transposed(c);
    if (ss_conv_wino_applies(c)) { /* dW then din by Winograd, one after the other */
        size_t a = ss_conv_wino_dw_workspace(c), b = ss_conv_wino_workspace(&t);
        a = a > b ? a : b;
        return a > im2col ? a : im2col; /* im2col kept: see the forward workspace */
    }
    return im2col;
}
/* Valid output column range [*lo, *hi) for kernel column offset kx: ix = ox*s - p + kx in
 * [0, w). */
static void conv_valid_range(int wo, int w, int s, int p, int kx, int *lo, int *hi)
{
    int a = p - kx; /* need ox*s >= a */
    int l = a <= 0 ? 0 : (a + s - 1) / s;
    int b = w + p - kx; /* need ox*s < b */
    int u = b <= 0 ? 0 : (b + s - 1) / s;
    if (u > wo)
        u = wo;
    if (l > u)
        l = u;
    *lo = l;
    *hi = u;
}

static inline int imin(int a, int b)
{
    return a < b ? a : b;
}

static inline int imax(int a, int b)
{
    return a > b ? a : b;
}

/* dst[j] = src[2j] for j < len. The stem's im2col is mostly this; compilers turn the plain loop
 * into scalar moves, so with GCC vector extensions two 16-float loads are shuffled into one
 * vector of their even elements (a single permute with AVX-512). The vector loop never reads past
 * src[2*(len-1)], the last element the caller vouches for. */
static inline void copy_stride2(float *dst, const float *src, int len)
{
    int j = 0;
#if defined(__GNUC__) && !defined(__clang__)
    typedef float v16f __attribute__((vector_size(64)));
    typedef int v16i __attribute__((vector_size(64)));
    const v16i even = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
    for (;;) {
        if (j + 16 >= len) {
            /* Tail: one more vector ending at len-2 (overlapping what is done), if it fits. */
            if (len < 17 || j >= len - 1)
                break;
            j = len - 17;
        }
        v16f a, b, r;
        memcpy(&a, src + 2 * j, sizeof a);
        memcpy(&b, src + 2 * j + 16, sizeof b);
        r = __builtin_shuffle(a, b, even);
        memcpy(dst + j, &r, sizeof r);
        j += 16;
    }
#endif
    for (; j < len; j++)
        dst[j] = src[2 * j];
}

/* Small output planes (late layers: 2×2 … 12×12) make im2col / col2im walk a few elements per
 * output row, so the per-row bookkeeping costs more than the copy. Below this many (kernel
 * offset, output pixel) pairs they use a table instead: tbl[kk*P + p] = offset in the input
 * plane of kernel offset kk = ky*kw + kx at output pixel p, or -1 in the padding. (A zero-padded
 * scratch plane would make the gather branch-free, but copying the plane costs more than the
 * branches save, most of all for the 1×1 stride-2 convs.) */
#define CONV_TBL_MAX 2048

static int conv_use_tbl(const ss_conv2d_t *c)
{
    return (size_t)c->kh * c->kw * conv_p(c) <= CONV_TBL_MAX;
}

static void conv_fill_tbl(const ss_conv2d_t *c, int *tbl)
{
    const int P = (int)conv_p(c);
    for (int ky = 0; ky < c->kh; ky++)
        for (int kx = 0; kx < c->kw; kx++)
            for (int oy = 0; oy < c->ho; oy++)
                for (int ox = 0; ox < c->wo; ox++) {
                    const int iy = oy * c->sh - c->ph + ky, ix = ox * c->sw - c->pw + kx;
                    tbl[(ky * c->kw + kx) * P + oy * c->wo + ox] =
                        iy < 0 || iy >= c->h || ix < 0 || ix >= c->w ? -1 : iy * c->w + ix;
                }
}

/* With tiny planes (2×2, 3×3: P = 4, 9) even the table loop over one image's pixels is too
 * short; when the columns [c0, c1) are few, a table over all of them is built instead:
 * xt[kk*(c1-c0) + j] = offset of column c0+j's input for kernel offset kk from the plane of
 * image i0 = c0/P (same channel), or -1 in the padding. Then each cols row is one loop. */
#define CONV_XTBL_MAX 4096

static int conv_fill_xtbl(const ss_conv2d_t *c, const int *tbl, int c0, int c1, int *xt)
{
    const int khw = c->kh * c->kw, P = (int)conv_p(c), w = c1 - c0, i0 = c0 / P;
    const long stride = (long)c->cin * c->h * c->w; /* floats from one image to the next */
    if ((long)khw * w > CONV_XTBL_MAX || ((c1 - 1) / P - i0 + 1) * stride > 0x7fffffffL)
        return 0;
    for (int kk = 0; kk < khw; kk++)
        for (int j = 0; j < w; j++) {
            const int col = c0 + j, p = col % P, v = tbl[kk * P + p];
            xt[kk * w + j] = v < 0 ? -1 : (int)((col / P - i0) * stride + v);
        }
    return 1;
}

/* im2col_cols through the table (conv_use_tbl shapes). */
static void im2col_cols_tbl(const ss_conv2d_t *c, float *cols, size_t ldc, int cbase,
                            const float *in, int n0, int c0, int c1)
{
    const int khw = c->kh * c->kw, P = (int)conv_p(c), cin = c->cin;
    const size_t plane = (size_t)c->h * c->w;
    int tbl[CONV_TBL_MAX], xt[CONV_XTBL_MAX];
    conv_fill_tbl(c, tbl);
    const int i0 = c0 / P, i1 = (c1 + P - 1) / P;
    if (conv_fill_xtbl(c, tbl, c0, c1, xt)) {
        const int w = c1 - c0;
        for (int ci = 0; ci < cin; ci++) {
            const float *src = in + ((size_t)(n0 + i0) * cin + ci) * plane;
            for (int kk = 0; kk < khw; kk++) {
                const int *t = xt + kk * w;
                float *d = cols + (size_t)(ci * khw + kk) * ldc + (c0 - cbase);
                for (int j = 0; j < w; j++)
                    d[j] = t[j] >= 0 ? src[t[j]] : 0.0f;
            }
        }
        return;
    }
    for (int ci = 0; ci < cin; ci++)
        for (int kk = 0; kk < khw; kk++) {
            float *row = cols + (size_t)(ci * khw + kk) * ldc;
            for (int i = i0; i < i1; i++) {
                const float *src = in + ((size_t)(n0 + i) * cin + ci) * plane;
                const int pa = imax(c0 - i * P, 0), pb = imin(c1 - i * P, P);
                const int *t = tbl + kk * P + pa;
                float *d = row + (i * P + pa - cbase); /* column i*P + pa */
                for (int q = 0; q < pb - pa; q++)
                    d[q] = t[q] >= 0 ? src[t[q]] : 0.0f;
            }
        }
}

/* cols[k, col] for every row k and the columns [c0, c1) of a chunk that starts at image n0;
 * a column is (image, oy, ox), so a range may start or end inside an image or an output row. */
static void im2col_cols(const ss_conv2d_t *c, float *cols, size_t ldc, int cbase,
                        const float *in, int n0, int c0, int c1)
{
    if (conv_use_tbl(c)) {
        im2col_cols_tbl(c, cols, ldc, cbase, in, n0, c0, c1);
        return;
    }
    const int K = (int)conv_k(c), khw = c->kh * c->kw, wo = c->wo, sw = c->sw;
    const int P = (int)conv_p(c);
    const size_t plane = (size_t)c->h * c->w;
    if (c1 <= c0)
        return;
    /* Position of c0, decoded once; the walk below only increments. */
    const int i_start = c0 / P, oy_start = (c0 % P) / wo, ox_start = (c0 % P) % wo;
    for (int k = 0; k < K; k++) {
        const int ci = k / khw, ky = (k % khw) / c->kw, kx = k % c->kw;
        int lo, hi;
        conv_valid_range(wo, c->w, sw, c->pw, kx, &lo, &hi);
        float *dst = cols + (size_t)k * ldc - cbase + c0 - ox_start; /* indexed by ox */
        int i = i_start, oy = oy_start, ox0 = ox_start, left = c1 - c0;
        const float *src_plane = in + ((size_t)(n0 + i) * c->cin + ci) * plane;
        while (left > 0) {
            const int ox1 = ox0 + left < wo ? ox0 + left : wo;
            const int iy = oy * c->sh - c->ph + ky;
            if (iy < 0 || iy >= c->h) {
                for (int ox = ox0; ox < ox1; ox++)
                    dst[ox] = 0.0f;
            } else {
                const float *src = src_plane + (size_t)iy * c->w - c->pw + kx;
                const int a = imin(imax(ox0, lo), ox1), b = imax(imin(ox1, hi), a);
                for (int ox = ox0; ox < a; ox++)
                    dst[ox] = 0.0f;
                if (sw == 1) {
                    for (int ox = a; ox < b; ox++)
                        dst[ox] = src[ox];
                } else if (sw == 2) {
                    copy_stride2(dst + a, src + 2 * (size_t)a, b - a);
                } else {
                    for (int ox = a; ox < b; ox++)
                        dst[ox] = src[(size_t)ox * sw];
                }
                for (int ox = b; ox < ox1; ox++)
                    dst[ox] = 0.0f;
            }
            left -= ox1 - ox0;
            dst += wo;
            ox0 = 0;
            if (++oy == c->ho) {
                oy = 0;
                i++;
                src_plane += (size_t)c->cin * plane;
            }
        }
    }
}

/* din images n0 .. n0+nimg-1, channels ci0 .. ci1-1 = col2im(cols[(ci1-ci0)*kh*kw, nimg*P],
 * leading dimension ldc; row 0 of cols is channel ci0). The caller's task owns these planes, so
 * the scatter-add has no races and a fixed order: per plane, kernel offsets then output pixels
 * ascending (the table path adds in the same order). */
static void col2im_images(const ss_conv2d_t *c, float *din, const float *cols, size_t ldc, int n0,
                          int nimg, int ci0, int ci1)
{
    const int khw = c->kh * c->kw, cin = c->cin;
    const size_t P = conv_p(c), plane = (size_t)c->h * c->w;
    if (conv_use_tbl(c)) {
        /* Plane by plane: a table over all the images (as in im2col) would scatter across
         * planes 4 KiB apart, which thrashes L1 sets (measured slower). */
        int tbl[CONV_TBL_MAX];
        conv_fill_tbl(c, tbl);
        for (int i = 0; i < nimg; i++)
            for (int ci = ci0; ci < ci1; ci++) {
                float *dst = din + ((size_t)(n0 + i) * cin + ci) * plane;
                memset(dst, 0, sizeof(float) * plane);
                for (int kk = 0; kk < khw; kk++) {
                    const int *t = tbl + (size_t)kk * P;
                    const float *src =
                        cols + (size_t)((ci - ci0) * khw + kk) * ldc + (size_t)i * P;
                    for (size_t p = 0; p < P; p++)
                        if (t[p] >= 0)
                            dst[t[p]] += src[p];
                }
            }
        return;
    }
    for (int i = 0; i < nimg; i++) {
        for (int ci = ci0; ci < ci1; ci++) {
            float *dst_plane = din + ((size_t)(n0 + i) * cin + ci) * plane;
            memset(dst_plane, 0, sizeof(float) * plane);
            for (int ky = 0; ky < c->kh; ky++) {
                for (int kx = 0; kx < c->kw; kx++) {
                    int lo, hi;
                    conv_valid_range(c->wo, c->w, c->sw, c->pw, kx, &lo, &hi);
                    const float *row = cols + (size_t)((ci - ci0) * khw + ky * c->kw + kx) * ldc +
                                       (size_t)i * P;
                    for (int oy = 0; oy < c->ho; oy++) {
                        int iy = oy * c->sh - c->ph + ky;
                        if (iy < 0 || iy >= c->h)
                            continue;
                        const float *src = row + (size_t)oy * c->wo;
                        float *dst = dst_plane + (size_t)iy * c->w - c->pw + kx;
                        if (c->sw == 1) {
                            for (int ox = lo; ox < hi; ox++)
                                dst[ox] += src[ox];
                        } else {
                            const int s = c->sw;
                            for (int ox = lo; ox < hi; ox++)
                                dst[(size_t)ox * s] += src[ox];
                        }
                    }
                }
            }
        }
    }
}

/* out = epilogue(C[:, c0..c1)) for the columns [c0, c1) of the chunk at image n0 and the
 * channels [co0, co1) (C's row 0 is channel crow0): + bias, + residual, ReLU. residual may
 * alias out (same element read, then written). */
static void conv_scatter_cols(const ss_conv2d_t *c, float *out, const float *C, size_t ldc,
                              int cbase, const float *bias, const float *residual, int relu,
                              int n0, int c0, int c1, int co0, int co1, int crow0)
{
    const int cout = c->cout, P = (int)conv_p(c);
    for (int co = co0; co < co1; co++) {
        const float b = bias ? bias[co] : 0.0f;
        for (int col = c0; col < c1;) {
            const int i = col / P, p0 = col % P, len = imin(P - p0, c1 - col);
            const float *src = C + (size_t)(co - crow0) * ldc + (col - cbase);
            const size_t off = ((size_t)(n0 + i) * cout + co) * P + p0;
            float *dst = out + off;
            if (residual) {
                const float *res = residual + off;
                for (int p = 0; p < len; p++) {
                    float v = src[p] + b + res[p];
                    dst[p] = (relu && v < 0.0f) ? 0.0f : v;
                }
            } else if (relu) {
                for (int p = 0; p < len; p++) {
                    float v = src[p] + b;
                    dst[p] = v > 0.0f ? v : 0.0f;
                }
            } else {
                for (int p = 0; p < len; p++)
                    dst[p] = src[p] + b;
            }
            col += len;
        }
    }
}

/* D[co, c0..c1) = dout of the chunk at image n0, rearranged channel-major. */
static void conv_gather_cols(const ss_conv2d_t *c, float *D, size_t ldd, const float *dout, int n0,
                             int c0, int c1)
{
    const int cout = c->cout, P = (int)conv_p(c);
    for (int co = 0; co < cout; co++)
        for (int col = c0; col < c1;) {
            const int i = col / P, p0 = col % P, len = imin(P - p0, c1 - col);
            memcpy(D + (size_t)co * ldd + col, dout + ((size_t)(n0 + i) * cout + co) * P + p0,
                   sizeof(float) * (size_t)len);
            col += len;
        }
}

/* 1×1 stride-1 conv with a large plane, straight on NCHW: out[i][:, lo:hi] = W · in[i][:, lo:hi].
 * Tasks are (image, column block) so a batch of one still uses every thread. */
static void conv_forward_1x1(const ss_conv2d_t *c, float *out, const float *in,
                             const float *weight, const float *bias, const float *residual,
                             int relu)
{
    const int cin = c->cin, cout = c->cout, P = (int)conv_p(c), n = c->n;
#pragma omp parallel
    {
        const int T = omp_get_num_threads();
        const int splits = n >= T ? 1 : (T + n - 1) / n;
#pragma omp for schedule(dynamic, 1)
        for (int task = 0; task < n * splits; task++) {
            const int i = task / splits;
            int lo, hi;
            ss_nn_split(P, splits, task % splits, 16, &lo, &hi);
            if (hi <= lo)
                continue;
            float *o = out + (size_t)i * cout * P;
            /* A residual aliasing out is already in place: accumulate onto it. */
            const int in_place = residual == out;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, hi - lo, cin, 1.0f,
                        weight, cin, in + (size_t)i * cin * P + lo, P, in_place ? 1.0f : 0.0f,
                        o + lo, P);
            if (bias || relu || (residual && !in_place)) {
                const float *res = (residual && !in_place) ? residual + (size_t)i * cout * P : NULL;
                for (int co = 0; co < cout; co++) {
                    const float b = bias ? bias[co] : 0.0f;
                    float *d = o + (size_t)co * P;
                    const float *r = res ? res + (size_t)co * P : NULL;
                    for (int p = lo; p < hi; p++) {
                        float v = d[p] + b + (r ? r[p] : 0.0f);
                        d[p] = (relu && v < 0.0f) ? 0.0f : v;
                    }
                }
            }
        }
    }
}

/* Row mode (see conv_fwd_rows): cols [K, total] for the whole batch, then per task a block of
 * output channels: C[rows, total] = W[rows, K] · cols and the epilogue for those channels. */
static void conv_forward_rows(const ss_conv2d_t *c, float *out, const float *in,
                              const float *weight, const float *bias, const float *residual,
                              int relu, float *work)
{
    const int K = (int)conv_k(c), cout = c->cout, total = c->n * (int)conv_p(c);
    const int ncolt = 2 * conv_slots(), mb = conv_row_block(cout), nrowt = (cout + mb - 1) / mb;
    float *cols = work, *C = work + (size_t)K * total;
#pragma omp parallel num_threads(conv_threads())
    {
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < ncolt; t++) {
            int b0, b1;
            ss_nn_split(total, ncolt, t, 16, &b0, &b1);
            im2col_cols(c, cols, (size_t)total, 0, in, 0, b0, b1);
        }
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < nrowt; t++) {
            const int r0 = t * mb, r1 = imin(cout, r0 + mb);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, total, K, 1.0f,
                        weight + (size_t)r0 * K, K, cols, total, 0.0f, C + (size_t)r0 * total,
                        total);
            conv_scatter_cols(c, out, C, (size_t)total, 0, bias, residual, relu, 0, 0, total, r0,
                              r1, 0);
        }
    }
}

/* Plane mode (conv_plane_mode): per task, one piece [p0, p1) of one image's output plane: im2col
 * into the thread's slot, out[i][:, p0:p1] = W · cols straight into the output, then the
 * epilogue in place ((conv + bias) + residual, ReLU: the same order as conv_scatter_cols). A
 * residual aliasing out goes the column-task way instead (read before out is written). */
static void conv_forward_plane(const ss_conv2d_t *c, float *out, const float *in,
                               const float *weight, const float *bias, const float *residual,
                               int relu, float *work)
{
    const int K = (int)conv_k(c), cout = c->cout, P = (int)conv_p(c);
    const int pieces = conv_plane_pieces(c), wmax = conv_plane_width(c);
#pragma omp parallel num_threads(conv_threads())
    {
        float *cols = work + (size_t)omp_get_thread_num() * K * wmax;
#pragma omp for schedule(dynamic, 1)
        for (int task = 0; task < c->n * pieces; task++) {
            const int i = task / pieces;
            int p0, p1;
            ss_nn_split(P, pieces, task % pieces, 16, &p0, &p1);
            const int w = p1 - p0;
            im2col_cols(c, cols, (size_t)w, i * P + p0, in, 0, i * P + p0, i * P + p1);
            float *o = out + (size_t)i * cout * P;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, w, K, 1.0f, weight, K,
                        cols, w, 0.0f, o + p0, P);
            if (!bias && !residual && !relu)
                continue;
            for (int co = 0; co < cout; co++) {
                const float b = bias ? bias[co] : 0.0f;
                float *d = o + (size_t)co * P + p0;
                const float *r = residual ? residual + ((size_t)i * cout + co) * P + p0 : NULL;
                if (r) {
                    for (int p = 0; p < w; p++) {
                        const float v = d[p] + b + r[p];
                        d[p] = (relu && v < 0.0f) ? 0.0f : v;
                    }
                } else if (relu) {
                    for (int p = 0; p < w; p++) {
                        const float v = d[p] + b;
                        d[p] = v > 0.0f ? v : 0.0f;
                    }
                } else {
                    for (int p = 0; p < w; p++)
                        d[p] += b;
                }
            }
        }
    }
}

/* Epilogue of one block of conv_forward_panels: channels [co0, co0 + rb), columns [b0, b1)
 * (res row r = channel co0 + r). A panel inside one image's plane goes row by row in place;
 * one that spans images through conv_scatter_cols. */
static void conv_panel_store(const ss_conv2d_t *c, float *out, const float *res, int rb, int co0,
                             int b0, int b1, const float *bias, const float *residual, int relu)
{
    const int P = (int)conv_p(c), i = b0 / P, p0 = b0 % P, n = b1 - b0;
    if (p0 + n > P) {
        conv_scatter_cols(c, out, res, SS_PANEL, b0, bias, residual, relu, 0, b0, b1, co0,
                          co0 + rb, co0);
        return;
    }
    for (int r = 0; r < rb; r++) {
        const int co = co0 + r;
        const float b = bias ? bias[co] : 0.0f, *s = res + (size_t)r * SS_PANEL;
        const size_t off = ((size_t)i * c->cout + co) * P + p0;
        float *d = out + off;
        if (residual) { /* same order as conv_scatter_cols: (conv + bias) + residual */
            const float *q = residual + off;
            for (int p = 0; p < n; p++) {
                const float v = s[p] + b + q[p];
                d[p] = (relu && v < 0.0f) ? 0.0f : v;
            }
        } else if (relu) {
#pragma omp simd
            for (int p = 0; p < n; p++) {
                const float v = s[p] + b;
                d[p] = v > 0.0f ? v : 0.0f;
            }
        } else {
#pragma omp simd
            for (int p = 0; p < n; p++)
                d[p] = s[p] + b;
        }
    }
}

static void conv_forward_panels(const ss_conv2d_t *c, float *out, const float *in,
                                const float *weight, const float *bias, const float *residual,
                                int relu, float *work)
{
    const int K = (int)conv_k(c), cout = c->cout, total = c->n * (int)conv_p(c);
    const int ppt = conv_panels_per_task(c), cpt = ppt * SS_PANEL;
    const int ntasks = (total + cpt - 1) / cpt;
#pragma omp parallel num_threads(conv_threads())
    {
        /* the task's im2col block [K][cpt] (its panels are 32-column slices), then res */
        float *cols = work + (size_t)omp_get_thread_num() * ((size_t)K * cpt + 8 * SS_PANEL);
        float *res = cols + (size_t)K * cpt;
#pragma omp for schedule(dynamic, 1)
        for (int task = 0; task < ntasks; task++) {
            const int t0 = task * cpt, t1 = imin(total, t0 + cpt);
            const int np = (t1 - t0 + SS_PANEL - 1) / SS_PANEL;
            im2col_cols(c, cols, (size_t)cpt, t0, in, 0, t0, t1);
            for (int co0 = 0; co0 < cout; co0 += 8) {
                const int rb = imin(8, cout - co0);
                for (int q = 0; q < np; q++) {
                    const int b0 = t0 + q * SS_PANEL, b1 = imin(t1, b0 + SS_PANEL);
                    ss_panel_block(rb, K, weight + (size_t)co0 * K, K, cols + q * SS_PANEL, cpt,
                                   res);
                    conv_panel_store(c, out, res, rb, co0, b0, b1, bias, residual, relu);
                }
            }
        }
    }
}

void ss_conv2d_forward_fused(const ss_conv2d_t *c, float *out, const float *in,
                             const float *weight, const float *bias, const float *residual,
                             int relu, float *work)
{
    ss_nn_blas_single();
    if (conv_direct_1x1(c)) {
        conv_forward_1x1(c, out, in, weight, bias, residual, relu);
        return;
    }
    if (ss_conv_pairs_applies(c)) {
        ss_conv_pairs_forward(c, out, in, weight, bias, residual, relu, work);
        return;
    }
    if (ss_conv_rows_applies(c)) {
        ss_conv_rows_forward(c, out, in, weight, bias, residual, relu, work);
        return;
    }
    if (ss_conv_wino_applies(c)) {
        ss_conv_wino_forward(c, out, in, weight, 0, bias, residual, relu, work);
        return;
    }
    if (conv_fwd_panels(c)) {
        conv_forward_panels(c, out, in, weight, bias, residual, relu, work);
        return;
    }
    if (conv_fwd_rows(c)) {
        conv_forward_rows(c, out, in, weight, bias, residual, relu, work);
        return;
    }
    if (conv_plane_mode(c) && residual != out) {
        conv_forward_plane(c, out, in, weight, bias, residual, relu, work);
        return;
    }
    const int K = (int)conv_k(c), cout = c->cout, total = c->n * (int)conv_p(c);
    const int nb = conv_fwd_nb(c), ntasks = (total + nb - 1) / nb;
    /* Each task is a block of output columns (image, oy, ox) of the whole batch: im2col into the
     * thread's slot, one sgemm, epilogue; no barrier, dynamically scheduled. */
#pragma omp parallel num_threads(conv_threads())
    {
        float *cols = work + (size_t)omp_get_thread_num() * (K + cout) * nb;
        float *C = cols + (size_t)K * nb;
#pragma omp for schedule(dynamic, 1)
        for (int task = 0; task < ntasks; task++) {
            const int b0 = task * nb, b1 = imin(total, b0 + nb), w = b1 - b0;
            im2col_cols(c, cols, (size_t)w, b0, in, 0, b0, b1);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, w, K, 1.0f, weight, K,
                        cols, w, 0.0f, C, w);
            conv_scatter_cols(c, out, C, (size_t)w, b0, bias, residual, relu, 0, b0, b1, 0,
                              cout, 0);
        }
    }
}

void ss_conv2d_forward(const ss_conv2d_t *c, float *out, const float *in, const float *weight,
                       const float *bias, float *work)
{
    ss_conv2d_forward_fused(c, out, in, weight, bias, NULL, 0, work);
}

/* dbias[co] += sum over images and plane of dout (per channel, double, fixed order). */
static void conv_bias_grad(const ss_conv2d_t *c, float *dbias, const float *dout)
{
    const int n = c->n, cout = c->cout;
    const size_t P = conv_p(c);
#pragma omp parallel for schedule(dynamic, 4)
    for (int co = 0; co < cout; co++) {
        double s = 0.0;
        for (int i = 0; i < n; i++) {
            const float *d = dout + ((size_t)i * cout + co) * P;
            float part = 0.0f;
#pragma omp simd reduction(+ : part)
            for (size_t p = 0; p < P; p++)
                part += d[p];
            s += part;
        }
        dbias[co] += (float)s;
    }
}

static void conv_backward_1x1(const ss_conv2d_t *c, float *din, float *dweight,
                              const float *dout, const float *in, const float *weight)
{
    const int cin = c->cin, cout = c->cout, P = (int)conv_p(c), n = c->n;
#pragma omp parallel
    {
        const int T = omp_get_num_threads(), t = omp_get_thread_num();
        /* dW[cout, cin] += dout[i] · in[i]^T, images in order; each thread owns a block of dW. */
        if (dweight)
            for (int i = 0; i < n; i++)
                ss_sgemm_part(0, 1, cout, cin, P, 1.0f, dout + (size_t)i * cout * P, P,
                              in + (size_t)i * cin * P, P, 1.0f, dweight, cin, t, T);
        if (din) {
            const int splits = n >= T ? 1 : (T + n - 1) / n;
#pragma omp for schedule(dynamic, 1)
            for (int task = 0; task < n * splits; task++) {
                const int i = task / splits;
                int lo, hi;
                ss_nn_split(P, splits, task % splits, 16, &lo, &hi);
                if (hi > lo)
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cin, hi - lo, cout, 1.0f,
                                weight, cin, dout + (size_t)i * cout * P + lo, P, 0.0f,
                                din + (size_t)i * cin * P + lo, P);
            }
        }
    }
}

/* dW[nw] += the groups' partial sums (partial[g * nw + e]) in group order, element blocks
 * split over the threads. Call from inside a parallel region. */
static void conv_dw_add_partials(float *dweight, const float *partial, size_t nw, int groups)
{
#pragma omp for schedule(static)
    for (size_t e0 = 0; e0 < nw; e0 += 1024) {
        const size_t e1 = e0 + 1024 < nw ? e0 + 1024 : nw;
        for (size_t e = e0; e < e1; e++) {
            float sum = partial[e];
            for (int g = 1; g < groups; g++)
                sum += partial[(size_t)g * nw + e];
            dweight[e] += sum;
        }
    }
}

/* See conv_plane_dw. */
static void conv_backward_plane_dw(const ss_conv2d_t *c, float *dweight, const float *dout,
                                   const float *in, float *work)
{
    const int K = (int)conv_k(c), cout = c->cout, P = (int)conv_p(c);
    const int pieces = conv_plane_pieces(c), wmax = conv_plane_width(c), ntask = c->n * pieces;
    const int groups = imin(CONV_DW_GROUPS * conv_slots(), ntask);
    const size_t nw = (size_t)cout * K;
    float *partial = work + (size_t)conv_slots() * K * wmax;
#pragma omp parallel num_threads(conv_threads())
    {
        float *cols = work + (size_t)omp_get_thread_num() * K * wmax;
#pragma omp for schedule(dynamic, 1)
        for (int g = 0; g < groups; g++) {
            int t0, t1;
            ss_nn_split(ntask, groups, g, 1, &t0, &t1);
            for (int task = t0; task < t1; task++) {
                const int i = task / pieces;
                int p0, p1;
                ss_nn_split(P, pieces, task % pieces, 16, &p0, &p1);
                const int w = p1 - p0;
                im2col_cols(c, cols, (size_t)w, i * P + p0, in, 0, i * P + p0, i * P + p1);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, cout, K, w, 1.0f,
                            dout + (size_t)i * cout * P + p0, P, cols, w,
                            task == t0 ? 0.0f : 1.0f, partial + (size_t)g * nw, K);
            }
        }
        conv_dw_add_partials(dweight, partial, nw, groups);
    }
}

/* See conv_bwd_stream. */
static void conv_backward_stream(const ss_conv2d_t *c, float *din, float *dweight,
                                 const float *dout, const float *in, const float *weight,
                                 float *work)
{
    const int K = (int)conv_k(c), cout = c->cout, P = (int)conv_p(c);
    const int imgs = conv_bwd_stream_imgs(c), ntask = (c->n + imgs - 1) / imgs;
    const int groups = imin(CONV_DW_GROUPS * conv_slots(), ntask);
    const size_t nw = (size_t)cout * K, wmax = (size_t)imgs * P;
    float *partial = work + (size_t)conv_slots() * (2 * (size_t)K + cout) * wmax;
#pragma omp parallel num_threads(conv_threads())
    {
        float *cols = work + (size_t)omp_get_thread_num() * (2 * (size_t)K + cout) * wmax;
        float *dcols = cols + (size_t)K * wmax, *D = dcols + (size_t)K * wmax;
#pragma omp for schedule(dynamic, 1)
        for (int g = 0; g < groups; g++) {
            int t0, t1;
            ss_nn_split(ntask, groups, g, 1, &t0, &t1);
            for (int task = t0; task < t1; task++) {
                const int i0 = task * imgs, ni = imin(imgs, c->n - i0), w = ni * P;
                /* One image's dout is already a [cout, P] matrix; several are gathered. */
                const float *Dt = dout + (size_t)i0 * cout * P;
                int ldd = P;
                if (ni > 1) {
                    conv_gather_cols(c, D, (size_t)w, dout, i0, 0, w);
                    Dt = D;
                    ldd = w;
                }
                if (din) {
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, w, cout, 1.0f, weight,
                                K, Dt, ldd, 0.0f, dcols, w);
                    col2im_images(c, din, dcols, (size_t)w, i0, ni, 0, c->cin);
                }
                if (dweight) {
                    im2col_cols(c, cols, (size_t)w, i0 * P, in, 0, i0 * P, i0 * P + w);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, cout, K, w, 1.0f, Dt,
                                ldd, cols, w, task == t0 ? 0.0f : 1.0f, partial + (size_t)g * nw,
                                K);
                }
            }
        }
        if (dweight) {
            conv_dw_add_partials(dweight, partial, nw, groups);
        }
    }
}

/* Row mode (conv_bwd_rows), per chunk: phase A, image tasks gather D and im2col; after the
 * barrier one dynamic loop of input-channel tasks (dcols = W[:, rows]^T · D, col2im into those
 * channels' planes of every image in the chunk) and dW tasks (blocks of kb columns, as in
 * ss_conv2d_backward). Same determinism argument: fixed extents, one sgemm per element. */
static void conv_backward_rows(const ss_conv2d_t *c, float *din, float *dweight,
                               const float *dout, const float *in, const float *weight,
                               float *work, int kb)
{
    const int K = (int)conv_k(c), cout = c->cout, P = (int)conv_p(c), chunk = conv_chunk(c);
    const int khw = c->kh * c->kw, cib = conv_bwd_cib(c), ndin = (c->cin + cib - 1) / cib;
    const int ndw = dweight ? (K + kb - 1) / kb : 0;
    float *dcols_base = work + (size_t)chunk * (K + cout) * P;
    const size_t dcols_slot = (size_t)cib * khw * P * conv_bwd_rows_sub(c, chunk);
#pragma omp parallel num_threads(conv_threads())
    {
        float *dcols = dcols_base + (size_t)omp_get_thread_num() * dcols_slot;
        for (int n0 = 0; n0 < c->n; n0 += chunk) {
            const int nc = imin(chunk, c->n - n0), ncols = nc * P;
            const int imgs = conv_bwd_images(c, nc), ntasks = (nc + imgs - 1) / imgs;
            float *cols = work, *D = work + (size_t)K * ncols;
#pragma omp for schedule(dynamic, 1)
            for (int task = 0; task < ntasks; task++) {
                const int b0 = task * imgs * P, b1 = imin(ncols, b0 + imgs * P);
                conv_gather_cols(c, D, (size_t)ncols, dout, n0, b0, b1);
                if (dweight)
                    im2col_cols(c, cols, (size_t)ncols, 0, in, n0, b0, b1);
            }
#pragma omp for schedule(dynamic, 1)
            for (int task = 0; task < ndin + ndw; task++) {
                if (task < ndin) {
                    const int ci0 = task * cib, ci1 = imin(c->cin, ci0 + cib);
                    const int sub = conv_bwd_rows_sub(c, nc);
                    for (int s0 = 0; s0 < nc; s0 += sub) {
                        const int ns = imin(sub, nc - s0), w = ns * P;
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (ci1 - ci0) * khw,
                                    w, cout, 1.0f, weight + (size_t)ci0 * khw, K,
                                    D + (size_t)s0 * P, ncols, 0.0f, dcols, w);
                        col2im_images(c, din, dcols, (size_t)w, n0 + s0, ns, ci0, ci1);
                    }
                } else {
                    const int k0 = (task - ndin) * kb;
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, cout, imin(kb, K - k0),
                                ncols, 1.0f, D, ncols, cols + (size_t)k0 * ncols, ncols, 1.0f,
                                dweight + k0, K);
                }
            }
        }
    }
}

void ss_conv2d_backward(const ss_conv2d_t *c, float *din, float *dweight, float *dbias,
                        const float *dout, const float *in, const float *weight, float *work)
{
    ss_nn_blas_single();
    const int K = (int)conv_k(c), cout = c->cout, P = (int)conv_p(c), chunk = conv_chunk(c);
    if (dbias)
        conv_bias_grad(c, dbias, dout);
    if (!din && !dweight)
        return;
    if (conv_direct_1x1(c)) {
        conv_backward_1x1(c, din, dweight, dout, in, weight);
        return;
    }
    if (ss_conv_pairs_applies(c)) { /* din by tap pairs; dW too where every tap has pairs */
        if (din)
            ss_conv_pairs_backward_input(c, din, dout, weight, work);
        if (dweight && ss_conv_pairs_dw_applies(c)) {
            ss_conv_pairs_backward_weights(c, dweight, dout, in, work);
            return;
        }
        if (!dweight)
            return;
        din = NULL; /* dW below by im2col */
    }
    if (ss_conv_wino_applies(c)) {
        /* dW by Winograd, then din = the transposed conv of dout, by Winograd. */
        if (dweight)
            ss_conv_wino_backward_weights(c, dweight, dout, in, work);
        if (din) {
            ss_conv2d_t t = conv_transposed(c);
            ss_conv_wino_forward(&t, din, dout, weight, 1, NULL, NULL, 0, work);
        }
        return;
    }
    if (!din && conv_plane_dw(c)) {
        conv_backward_plane_dw(c, dweight, dout, in, work);
        return;
    }
    const int slots = conv_slots();
    /* Rows of dW per task: a few tasks per slot. */
    const int kb = clampi(round16((K + 2L * slots - 1) / (2L * slots)), 16, K > 16 ? K : 16);
    float *dcols_base = work + (size_t)chunk * (K + cout) * P;
    if (din && conv_bwd_rows(c)) {
        conv_backward_rows(c, din, dweight, dout, in, weight, work, kb);
        return;
    }
    if (conv_bwd_stream(c)) {
        conv_backward_stream(c, din, dweight, dout, in, weight, work);
        return;
    }
    const size_t dcols_slot = (size_t)K * P * conv_bwd_images(c, chunk);
    /* Per chunk: phase A, tasks of whole images: gather D, im2col (for dW), and for din
     * dcols = W^T · D into the thread's slot, col2im into the task's own images. Phase B, after
     * the one barrier: dW by blocks of its columns. Task extents depend on the shape and the CPU
     * count only and every output element is reduced inside one sgemm call, so neither the
     * thread count nor the dynamic schedule changes the result. */
#pragma omp parallel num_threads(conv_threads())
    {
        float *dcols = dcols_base + (size_t)omp_get_thread_num() * dcols_slot;
        for (int n0 = 0; n0 < c->n; n0 += chunk) {
            const int nc = imin(chunk, c->n - n0), ncols = nc * P;
            const int imgs = conv_bwd_images(c, nc), ntasks = (nc + imgs - 1) / imgs;
            float *cols = work, *D = work + (size_t)K * ncols;
#pragma omp for schedule(dynamic, 1)
            for (int task = 0; task < ntasks; task++) {
                const int i0 = task * imgs, ni = imin(imgs, nc - i0);
                const int b0 = i0 * P, w = ni * P;
                conv_gather_cols(c, D, (size_t)ncols, dout, n0, b0, b0 + w);
                if (dweight)
                    im2col_cols(c, cols, (size_t)ncols, 0, in, n0, b0, b0 + w);
                if (din) {
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, w, cout, 1.0f, weight,
                                K, D + b0, ncols, 0.0f, dcols, w);
                    col2im_images(c, din, dcols, (size_t)w, n0 + i0, ni, 0, c->cin);
                }
            }
            if (dweight) {
                /* dW[:, k0:k1] += D[cout, ncols] · cols[k0:k1, ncols]^T */
#pragma omp for schedule(dynamic, 1)
                for (int k0 = 0; k0 < K; k0 += kb)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, cout, imin(kb, K - k0),
                                ncols, 1.0f, D, ncols, cols + (size_t)k0 * ncols, ncols, 1.0f,
                                dweight + k0, K);
            }
        }
    }
}

/* ---- reference ---------------------------------------------------------------------------- */

static float conv_in_at(const ss_conv2d_t *c, const float *in, int i, int ci, int iy, int ix)
{
    if (iy < 0 || iy >= c->h || ix < 0 || ix >= c->w)
        return 0.0f;
    return in[(((size_t)i * c->cin + ci) * c->h + iy) * c->w + ix];
}

void ss_conv2d_forward_naive(const ss_conv2d_t *c, float *out, const float *in,
                             const float *weight, const float *bias)
{
    for (int i = 0; i < c->n; i++)
        for (int co = 0; co < c->cout; co++)
            for (int oy = 0; oy < c->ho; oy++)
                for (int ox = 0; ox < c->wo; ox++) {
                    double s = bias ? bias[co] : 0.0;
                    for (int ci = 0; ci < c->cin; ci++)
                        for (int ky = 0; ky < c->kh; ky++)
                            for (int kx = 0; kx < c->kw; kx++) {
                                int iy = oy * c->sh - c->ph + ky, ix = ox * c->sw - c->pw + kx;
                                double wv =
                                    weight[(((size_t)co * c->cin + ci) * c->kh + ky) * c->kw + kx];
                                s += wv * conv_in_at(c, in, i, ci, iy, ix);
                            }
                    out[(((size_t)i * c->cout + co) * c->ho + oy) * c->wo + ox] = (float)s;
                }
}

void ss_conv2d_backward_naive(const ss_conv2d_t *c, float *din, float *dweight, float *dbias,
                              const float *dout, const float *in, const float *weight)
{
    const size_t P = conv_p(c);
    if (dbias)
        for (int co = 0; co < c->cout; co++) {
            double s = 0.0;
            for (int i = 0; i < c->n; i++)
                for (size_t p = 0; p < P; p++)
                    s += dout[((size_t)i * c->cout + co) * P + p];
            dbias[co] += (float)s;
        }
    if (dweight)
        for (int co = 0; co < c->cout; co++)
            for (int ci = 0; ci < c->cin; ci++)
                for (int ky = 0; ky < c->kh; ky++)
                    for (int kx = 0; kx < c->kw; kx++) {
                        double s = 0.0;
                        for (int i = 0; i < c->n; i++)
                            for (int oy = 0; oy < c->ho; oy++)
                                for (int ox = 0; ox < c->wo; ox++) {
                                    int iy = oy * c->sh - c->ph + ky, ix = ox * c->sw - c->pw + kx;
                                    s += (double)dout[(((size_t)i * c->cout + co) * c->ho + oy) *
                                                          c->wo +
                                                      ox] *
                                         conv_in_at(c, in, i, ci, iy, ix);
                                }
                        dweight[(((size_t)co * c->cin + ci) * c->kh + ky) * c->kw + kx] +=
                            (float)s;
                    }
    if (din)
        for (int i = 0; i < c->n; i++)
            for (int ci = 0; ci < c->cin; ci++)
                for (int iy = 0; iy < c->h; iy++)
                    for (int ix = 0; ix < c->w; ix++) {
                        double s = 0.0;
                        for (int co = 0; co < c->cout; co++)
                            for (int ky = 0; ky < c->kh; ky++)
                                for (int kx = 0; kx < c->kw; kx++) {
                                    int ty = iy + c->ph - ky, tx = ix + c->pw - kx;
                                    if (ty < 0 || tx < 0 || ty % c->sh || tx % c->sw)
                                        continue;
                                    int oy = ty / c->sh, ox = tx / c->sw;
                                    if (oy >= c->ho || ox >= c->wo)
                                        continue;
                                    s += (double)weight[(((size_t)co * c->cin + ci) * c->kh + ky) *
                                                            c->kw +
                                                        kx] *
                                         dout[(((size_t)i * c->cout + co) * c->ho + oy) * c->wo +
                                              ox];
                                }
                        din[(((size_t)i * c->cin + ci) * c->h + iy) * c->w + ix] = (float)s;
                    }
}
