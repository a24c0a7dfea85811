/* Internal to lib/mil (and its tests): ABMILX's global-correlation refinement A⁺ as a kernel
 * pair, with its naive reference, and a switch that makes the model use the reference.
 *
 * Per head j and query cell i (scale = 1/sqrt(d)):
 *   A⁺[i, j] = Σ_k softmax_k(Q[i, j] · K[k, j] · scale) V[k, j]
 * The fast kernel never holds more than a (BQ × BK) block of scores per thread: an online
 * softmax keeps a running max and sum per query (V is one number per key), so memory is linear
 * in n; the backward recomputes the score blocks from the saved max and sum. Results do not
 * depend on the thread count (each output is reduced by one thread in a fixed order). */
#ifndef SS_MIL_ABMILX_H
#define SS_MIL_ABMILX_H

#include <stddef.h>

/* Scratch floats for either kernel on n cells and h heads, run with at most `slots` threads:
 * one score tile per thread plus a few per-head copies of [n, h] arrays (linear in n). */
size_t ss_abmilx_aplus_workspace(int n, int h, int slots);

/* out[n, h]  A⁺                                       OVERWRITTEN
 * rmax[n, h], rsum[n, h]  per query: max score and Σ exp(score - max)   OVERWRITTEN
 * qk[n, h, 2d]: Q = qk[..., :d], K = qk[..., d:];  v[n, h].
 * work: ss_abmilx_aplus_workspace(slots) floats. */
void ss_abmilx_aplus_forward(float *out, float *rmax, float *rsum, const float *qk, const float *v,
                             int n, int h, int d, float *work, int slots);
/* dqk[n, h, 2d], dv[n, h]  OVERWRITTEN, from dout[n, h] and the forward's qk, v, out, rmax, rsum.
 */
void ss_abmilx_aplus_backward(float *dqk, float *dv, const float *dout, const float *qk,
                              const float *v, const float *out, const float *rmax,
                              const float *rsum, int n, int h, int d, float *work, int slots);

/* The O(n²)-time reference: direct loops in double, one query row at a time. Same outputs
 * (rmax/rsum nullable); the backward recomputes its rows itself. work: 4n + d doubles. */
void ss_abmilx_aplus_forward_naive(float *out, float *rmax, float *rsum, const float *qk,
                                   const float *v, int n, int h, int d, double *work);
void ss_abmilx_aplus_backward_naive(float *dqk, float *dv, const float *dout, const float *qk,
                                    const float *v, int n, int h, int d, double *work);

/* 1: every ABMILX forward/backward uses the naive A⁺ (tests); 0: the fast kernel (default).
 * Global; set it between calls, never while a model runs. */
void ss_abmilx_set_naive(int on);

#endif
