/* ss_sgemm: row-major sgemm threaded by our own OpenMP pool. OpenBLAS itself runs single-threaded
 * (ss_nn_set_threads sets it so): on this 2-core machine an OpenMP pool spinning after a region
 * while OpenBLAS's pool runs the next sgemm (and vice versa) cost a measured 2-3x; with one pool
 * the threads that did im2col also run the sgemm. Each thread computes a block of output columns
 * (or rows) with a single-threaded cblas_sgemm, so every element is reduced by one thread in the
 * same order whatever the thread count.
 *
 * ss_gemm_panels: one thread's product on the NN core's own kernel (ss_panel_block), for
 * operands already laid out in 32-column panels (Winograd's U, im2col blocks). */
#include "nn_internal.h"

#include <omp.h>
#include <string.h>

void ss_nn_split(int n, int parts, int part, int align, int *lo, int *hi)
{
    long a = (long)n * part / parts, b = (long)n * (part + 1) / parts;
    if (align > 1) {
        a = (a + align - 1) / align * align;
        b = part == parts - 1 ? n : (b + align - 1) / align * align;
    }
    *lo = (int)(a < n ? a : n);
    *hi = (int)(b < n ? b : n);
}

void ss_sgemm_part(int transa, int transb, int M, int N, int K, float alpha, const float *A,
                   int lda, const float *B, int ldb, float beta, float *C, int ldc, int tid,
                   int nthreads)
{
    /* Split the wider of the output's dimensions; keep blocks multiples of 16 (kernel tiles). */
    int lo, hi;
    if (N >= M) {
        ss_nn_split(N, nthreads, tid, 16, &lo, &hi);
        if (hi <= lo)
            return;
        const float *Bp = transb ? B + (size_t)lo * ldb : B + lo;
        cblas_sgemm(CblasRowMajor, transa ? CblasTrans : CblasNoTrans,
                    transb ? CblasTrans : CblasNoTrans, M, hi - lo, K, alpha, A, lda, Bp, ldb,
                    beta, C + lo, ldc);
    } else {
        ss_nn_split(M, nthreads, tid, 16, &lo, &hi);
        if (hi <= lo)
            return;
        const float *Ap = transa ? A + lo : A + (size_t)lo * lda;
        cblas_sgemm(CblasRowMajor, transa ? CblasTrans : CblasNoTrans,
                    transb ? CblasTrans : CblasNoTrans, hi - lo, N, K, alpha, Ap, lda, B, ldb,
                    beta, C + (size_t)lo * ldc, ldc);
    }
}

void ss_sgemm(int transa, int transb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0)
        return;
    ss_nn_blas_single();
    /* Small products: one thread (fork/join would cost more than it saves). */
    double flops = 2.0 * M * (double)N * K;
    int nt = flops < 4e6 ? 1 : omp_get_max_threads();
    if (nt == 1) {
        ss_sgemm_part(transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, 0, 1);
        return;
    }
    /* Blocks of the wider output dimension, three per CPU (at least 64 wide), handed out
     * dynamically so that a thread stalled by another process does not hold up the rest. */
    const int split_n = N >= M, len = split_n ? N : M;
    const int procs = omp_get_num_procs() > 0 ? omp_get_num_procs() : 1;
    int nblk = 3 * procs;
    if (nblk > (len + 63) / 64)
        nblk = (len + 63) / 64;
    if (nblk < 1)
        nblk = 1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int b = 0; b < nblk; b++) {
        int lo, hi;
        ss_nn_split(len, nblk, b, 16, &lo, &hi);
        if (hi <= lo)
            continue;
        if (split_n)
            cblas_sgemm(CblasRowMajor, transa ? CblasTrans : CblasNoTrans,
                        transb ? CblasTrans : CblasNoTrans, M, hi - lo, K, alpha, A, lda,
                        transb ? B + (size_t)lo * ldb : B + lo, ldb, beta, C + lo, ldc);
        else
            cblas_sgemm(CblasRowMajor, transa ? CblasTrans : CblasNoTrans,
                        transb ? CblasTrans : CblasNoTrans, hi - lo, N, K, alpha,
                        transa ? A + lo : A + (size_t)lo * lda, lda, B, ldb, beta,
                        C + (size_t)lo * ldc, ldc);
    }
}

void ss_gemm_panels(int M, int N, int K, const float *A, int lda, const float *B, size_t pstride,
                    int ldp, float *C, int ldc)
{
    float res[8 * SS_PANEL];
    for (int n0 = 0, q = 0; n0 < N; n0 += SS_PANEL, q++) {
        const float *panel = B + (size_t)q * pstride;
        const int ncols = N - n0 < SS_PANEL ? N - n0 : SS_PANEL;
        for (int m0 = 0; m0 < M; m0 += 8) {
            const int rb = M - m0 < 8 ? M - m0 : 8;
            if (rb == 8 && ncols == SS_PANEL) { /* a whole block: straight into C */
                ss_panel_block_rows(8, K, A + (size_t)m0 * lda, lda, panel, ldp,
                                    C + (size_t)m0 * ldc + n0, ldc);
                continue;
            }
            ss_panel_block(rb, K, A + (size_t)m0 * lda, lda, panel, ldp, res);
            for (int r = 0; r < rb; r++)
                memcpy(C + (size_t)(m0 + r) * ldc + n0, res + r * SS_PANEL,
                       (size_t)ncols * sizeof(float));
        }
    }
}
