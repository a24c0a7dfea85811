/* Internal helpers shared by the NN layer sources (not a public header). */
#ifndef SLIDESTREAM_NN_INTERNAL_H
#define SLIDESTREAM_NN_INTERNAL_H

#include "slidestream/nn_layers.h"

#include <cblas.h>
#include <stdint.h>

/* [*lo, *hi) = part `part` of [0, n) split into `parts`, boundaries rounded up to `align`. */
void ss_nn_split(int n, int parts, int part, int align, int *lo, int *hi);

/* Thread `tid` of `nthreads` computes its block of the row-major sgemm (call from inside a
 * parallel region, every thread, with the same arguments). */
void ss_sgemm_part(int transa, int transb, int M, int N, int K, float alpha, const float *A,
                   int lda, const float *B, int ldb, float beta, float *C, int ldc, int tid,
                   int nthreads);

/* 16 floats as one vector (GCC/Clang vector extension; AVX-512 register with -march=native). */
typedef float ss_v16 __attribute__((vector_size(64)));

typedef int32_t ss_v16i __attribute__((vector_size(64)));

/* r[j][i] = r[i][j]: a 16 × 16 block transposed in registers, by four rounds of interleaving
 * pairs of rows (8, 4, 2, then 1 lanes at a time). A macro over an array of 16 ss_v16, so that
 * no function passes 64-byte vectors (their ABI differs with and without AVX-512). */
#define SS_T16_ROUND(r, s, ...)                                                                    \
    do {                                                                                           \
        for (int i_ = 0; i_ < 16; i_++)                                                            \
            if ((i_ & (2 * (s) - 1)) < (s)) {                                                      \
                const ss_v16 a_ = (r)[i_], b_ = (r)[i_ + (s)];                                     \
                __VA_ARGS__                                                                        \
            }                                                                                      \
    } while (0)
#define SS_TRANSPOSE16(r)                                                                          \
    do {                                                                                           \
        SS_T16_ROUND(r, 8,                                                                         \
                     (r)[i_] = __builtin_shufflevector(a_, b_, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, \
                                                       19, 20, 21, 22, 23);                        \
                     (r)[i_ + 8] = __builtin_shufflevector(a_, b_, 8, 9, 10, 11, 12, 13, 14, 15,   \
                                                           24, 25, 26, 27, 28, 29, 30, 31););      \
        SS_T16_ROUND(r, 4,                                                                         \
                     (r)[i_] = __builtin_shufflevector(a_, b_, 0, 1, 2, 3, 16, 17, 18, 19, 8, 9,   \
                                                       10, 11, 24, 25, 26, 27);                    \
                     (r)[i_ + 4] = __builtin_shufflevector(a_, b_, 4, 5, 6, 7, 20, 21, 22, 23, 12, \
                                                           13, 14, 15, 28, 29, 30, 31););          \
        SS_T16_ROUND(r, 2,                                                                         \
                     (r)[i_] = __builtin_shufflevector(a_, b_, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9,   \
                                                       24, 25, 12, 13, 28, 29);                    \
                     (r)[i_ + 2] = __builtin_shufflevector(a_, b_, 2, 3, 18, 19, 6, 7, 22, 23, 10, \
                                                           11, 26, 27, 14, 15, 30, 31););          \
        SS_T16_ROUND(r, 1,                                                                         \
                     (r)[i_] = __builtin_shufflevector(a_, b_, 0, 16, 2, 18, 4, 20, 6, 22, 8, 24,  \
                                                       10, 26, 12, 28, 14, 30);                    \
                     (r)[i_ + 1] = __builtin_shufflevector(a_, b_, 1, 17, 3, 19, 5, 21, 7, 23, 9,  \
                                                           25, 11, 27, 13, 29, 15, 31););          \
    } while (0)

/* Columns of a panel: a [K][SS_PANEL] block of the right-hand operand, contiguous. */
#define SS_PANEL 32

/* res[r][0, 32) = sum over k of A[r][k] · panel[k][0, 32), rows r < rb <= 8 (A row-major with
 * leading dimension lda; the panel's rows ldp floats apart, SS_PANEL when packed; res's rows ldr
 * floats apart, SS_PANEL in ss_panel_block): 16 vector
 * accumulators, k ascending (one fixed summation order). The
 * small products of the NN core whose right operand is already laid out in panels (Winograd's
 * U, im2col blocks) go through this instead of an sgemm that would copy it again. */
static inline __attribute__((always_inline)) void
ss_panel_block_rows(int rb, int K, const float *restrict A, int lda, const float *restrict panel,
                    int ldp, float *restrict res, int ldr)
{
    ss_v16 acc[8][2];
    for (int r = 0; r < rb; r++)
        acc[r][0] = acc[r][1] = (ss_v16){0};
    for (int k = 0; k < K; k++) {
        ss_v16 b0, b1;
        __builtin_memcpy(&b0, panel + (size_t)k * ldp, sizeof b0);
        __builtin_memcpy(&b1, panel + (size_t)k * ldp + 16, sizeof b1);
        for (int r = 0; r < rb; r++) {
            const float a = A[(size_t)r * lda + k];
            acc[r][0] += a * b0;
            acc[r][1] += a * b1;
        }
    }
    for (int r = 0; r < rb; r++)
        __builtin_memcpy(res + (size_t)r * ldr, acc[r], sizeof acc[r]);
}

static inline void ss_panel_block(int rb, int K, const float *restrict A, int lda,
                                  const float *restrict panel, int ldp, float *restrict res)
{
    if (rb == 8) /* a constant row count keeps the accumulators in registers */
        ss_panel_block_rows(8, K, A, lda, panel, ldp, res, SS_PANEL);
    else
        ss_panel_block_rows(rb, K, A, lda, panel, ldp, res, SS_PANEL);
}

/* res[r][0, 32) = Σ_k Σ_j A[r·sr + k·sak + aoff[j]] · B[k·sbk + boff[j] + (0, 32)], rows r < rb
 * <= 8: 16 vector accumulators, k ascending, pairs j ascending within each k. ss_panel_block
 * with any strides for A and a list of (A, B) offset pairs per k: the tap-pair convolution's
 * kernel (conv_pairs.c), and with one pair a product whose left operand is stored transposed. */
static inline __attribute__((always_inline)) void
ss_pairs_block_rows(int rb, int kn, int np, const float *restrict A, long sr, long sak,
                 const int *aoff, const float *restrict B, long sbk, const int *boff,
                 float *restrict res)
{
    ss_v16 acc[8][2];
    for (int r = 0; r < rb; r++)
        acc[r][0] = acc[r][1] = (ss_v16){0};
    for (int k = 0; k < kn; k++) {
        const float *a = A + (size_t)k * sak, *b = B + (size_t)k * sbk;
        for (int j = 0; j < np; j++) {
            ss_v16 b0, b1;
            __builtin_memcpy(&b0, b + boff[j], sizeof b0);
            __builtin_memcpy(&b1, b + boff[j] + 16, sizeof b1);
            const float *aj = a + aoff[j];
            for (int r = 0; r < rb; r++) {
                const float v = aj[(size_t)r * sr];
                acc[r][0] += v * b0;
                acc[r][1] += v * b1;
            }
        }
    }
    for (int r = 0; r < rb; r++)
        __builtin_memcpy(res + (size_t)r * SS_PANEL, acc[r], sizeof acc[r]);
}

static inline void ss_pairs_block(int rb, int kn, int np, const float *A, long sr, long sak,
                        const int *aoff, const float *B, long sbk, const int *boff, float *res)
{
    /* a constant row count keeps the accumulators in registers; a constant pair count unrolls
     * the pairs and keeps their offsets in registers (4, 6, 9: a 3×3 kernel's corner, edge and
     * inner positions) */
    if (rb == 8 && np == 1)
        ss_pairs_block_rows(8, kn, 1, A, sr, sak, aoff, B, sbk, boff, res);
    else if (rb == 8 && np == 4)
        ss_pairs_block_rows(8, kn, 4, A, sr, sak, aoff, B, sbk, boff, res);
    else if (rb == 8 && np == 6)
        ss_pairs_block_rows(8, kn, 6, A, sr, sak, aoff, B, sbk, boff, res);
    else if (rb == 8 && np == 9)
        ss_pairs_block_rows(8, kn, 9, A, sr, sak, aoff, B, sbk, boff, res);
    else if (rb == 8)
        ss_pairs_block_rows(8, kn, np, A, sr, sak, aoff, B, sbk, boff, res);
    else
        ss_pairs_block_rows(rb, kn, np, A, sr, sak, aoff, B, sbk, boff, res);
}

/* C[M][N] = A[M][K] · B by ss_panel_block, one thread, no copies of A or B: panel q (columns
 * 32q .. 32q+31 of B) starts at B + q·pstride with rows ldp floats apart, so a row-major B is
 * (pstride 32, ldp = ldb) and a panel-packed one (32·K, 32). The last panel may be partial:
 * its spare columns are read (they must be allocated) but not stored. */
void ss_gemm_panels(int M, int N, int K, const float *A, int lda, const float *B, size_t pstride,
                    int ldp, float *C, int ldc);

/* Scratch cap per chunk of images (ss_conv2d_set_work_cap), in floats. */
size_t ss_conv_work_cap(void);

/* Winograd F(2x2,3x3) path for 3x3 stride-1 pad-1 convs (conv_winograd.c). applies: shape
 * qualifies and the knob is on. flip: weight is the forward weight of the transposed problem
 * (used for the input gradient). */
int ss_conv_wino_applies(const ss_conv2d_t *c);
size_t ss_conv_wino_workspace(const ss_conv2d_t *c);
void ss_conv_wino_forward(const ss_conv2d_t *c, float *out, const float *in, const float *weight,
                          int flip, const float *bias, const float *residual, int relu,
                          float *work);
/* The transformed weights U of a forward pass (no flip), computed once and reused while the
 * weights stay the same (inference): ss_conv_wino_forward_u then skips the per-call transform.
 * U holds ss_conv_wino_weights_floats(c) floats; work is sized as for ss_conv_wino_forward. */
size_t ss_conv_wino_weights_floats(const ss_conv2d_t *c);
void ss_conv_wino_weights(const ss_conv2d_t *c, float *U, const float *weight);
/* As ss_conv_wino_applies, for ss_conv_wino_forward_u (U precomputed): also smaller batches
 * of small images with many channels. Its workspace is ss_conv_wino_workspace's. */
int ss_conv_wino_applies_u(const ss_conv2d_t *c);
void ss_conv_wino_forward_u(const ss_conv2d_t *c, float *out, const float *in, const float *U,
                            const float *bias, const float *residual, int relu, float *work);
/* dweight[cout][cin][3][3] += Winograd weight gradient from dout and the forward input. */
size_t ss_conv_wino_dw_workspace(const ss_conv2d_t *c);
void ss_conv_wino_backward_weights(const ss_conv2d_t *c, float *dweight, const float *dout,
                                   const float *in, float *work);

/* Tap-pair convolution for small output maps (conv_pairs.c): the forward pass and the input
 * gradient sum each output over the (input position, tap) pairs that miss the padding. enable:
 * ss_conv2d_set_winograd's knob (off: im2col everywhere). */
void ss_conv_pairs_enable(int on);
int ss_conv_pairs_applies(const ss_conv2d_t *c);
size_t ss_conv_pairs_workspace(const ss_conv2d_t *c);
void ss_conv_pairs_forward(const ss_conv2d_t *c, float *out, const float *in, const float *weight,
                           const float *bias, const float *residual, int relu, float *work);
void ss_conv_pairs_backward_input(const ss_conv2d_t *c, float *din, const float *dout,
                                  const float *weight, float *work);
int ss_conv_pairs_dw_applies(const ss_conv2d_t *c);
/* Row-direct forward (conv_pairs.c): convs with wide output rows and a small K (the stem). */
int ss_conv_rows_applies(const ss_conv2d_t *c);
size_t ss_conv_rows_workspace(const ss_conv2d_t *c);
void ss_conv_rows_forward(const ss_conv2d_t *c, float *out, const float *in, const float *weight,
                          const float *bias, const float *residual, int relu, float *work);
void ss_conv_pairs_backward_weights(const ss_conv2d_t *c, float *dweight, const float *dout,
                                    const float *in, float *work);

/* The own-kernel paths of ss_nn_set_own_kernels are on (default: a build for wide vectors). */
int ss_nn_own_kernels(void);

/* OpenBLAS runs one of its AVX-512 kernels (SkylakeX, Cooperlake, SapphireRapids), which have
 * a small-matrix sgemm path: below ~100 on a side it then beats the panel kernel. */
int ss_nn_blas_avx512(void);

/* OpenBLAS must be single-threaded before sgemm is called from our parallel regions (in case the
 * program never called ss_nn_set_threads). Cheap: one read of OpenBLAS's thread count. */
static inline void ss_nn_blas_single(void)
{
    if (openblas_get_num_threads() != 1)
        openblas_set_num_threads(1);
}

#endif
