/* slidestream — layer kernels of the neural-network core (plain C on OpenBLAS).
 *
 * Every layer is a pair of free functions, `ss_<layer>_forward` / `ss_<layer>_backward`, in the
 * spirit of llm.c: outputs come first, inputs after, shapes last; nothing allocates. Scratch memory
 * is a caller-provided `float *work` whose size (in FLOATS) a `..._workspace(...)` function returns;
 * 64-byte aligned scratch is best (e.g. aligned_alloc(64, ...)) but not required.
 *
 * Conventions
 * - Tensors are plain contiguous float arrays. Activations are NCHW (PyTorch's layout): x[n][c][h][w].
 *   Weights are in PyTorch layout: conv [cout, cin, kh, kw], linear [out, in], norms [c] / [dim].
 *   So a PyTorch state_dict tensor maps 1:1 onto the memory these functions read.
 * - Backward:
 *     din (input gradient)            OVERWRITTEN  (nullable: skipped when NULL)
 *     dweight / dbias / dgamma / ...  ACCUMULATED (+=), PyTorch semantics: the caller zeroes the
 *                                     gradient buffer once per step (nullable: skipped when NULL)
 *   To sum gradients arriving at one tensor from two branches (residual blocks) use
 *   ss_add_inplace().
 * - Element-wise layers accept out == in (and din == dout) for in-place use, where noted.
 * - Threads: every function threads itself with OpenMP; call them from ONE thread, never from
 *   inside your own parallel region. There is ONE pool: OpenBLAS runs single-threaded and our
 *   OpenMP threads split each sgemm (ss_sgemm below), because on 2 cores an OpenMP pool spinning
 *   after a region while OpenBLAS's own pool runs the next sgemm measured 2-3x slower. So use
 *   ss_sgemm, not cblas_sgemm, for big products outside this file's kernels. Results do not
 *   depend on the thread count beyond float rounding (every output element and every reduction
 *   is computed by one thread in a fixed order).
 * - Every fast kernel has a naive reference `<fn>_naive` (serial, direct loops, double
 *   accumulation where it matters); it is the test oracle, not for production use.
 * - Shape validation: ss_conv2d_init / ss_pool2d_init check the geometry and return -1 via
 *   ss_error("nn", ...) on nonsense. The kernels themselves trust their arguments (our own
 *   invariants), so validate anything that came from a file before calling them.
 */
#ifndef SLIDESTREAM_NN_LAYERS_H
#define SLIDESTREAM_NN_LAYERS_H

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------------------------ */
/* Threads                                                                                     */

/* Set the thread count of our OpenMP pool (n <= 0: number of online CPUs) and put OpenBLAS in
 * single-threaded mode (see "Threads" above). Call once at start-up, outside parallel regions. */
void ss_nn_set_threads(int n);
/* The thread count currently in effect for our loops. */
int ss_nn_threads(void);
/* Once per process: warn (ss_warn) when OPENBLAS_CORETYPE forces OpenBLAS onto an older kernel
 * than the CPU has (e.g. Haswell's AVX2 kernel on an AVX-512 CPU, half the sgemm speed). Models
 * call it when they are made. */
void ss_nn_check_blas(void);

/* ------------------------------------------------------------------------------------------ */
/* Deterministic RNG: xoshiro256** seeded through splitmix64. Header-only, no global state.    */

typedef struct ss_rng_t {
    uint64_t s[4];
} ss_rng_t;

/* splitmix64 step: also a good 64-bit mixing hash of a counter (used for dropout masks). */
static inline uint64_t ss_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline void ss_rng_seed(ss_rng_t *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = ss_splitmix64(&x);
}

static inline uint64_t ss_rng_u64(ss_rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t x = s[1] * 5;
    uint64_t result = ((x << 7) | (x >> 57)) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

/* Uniform float in [0, 1) with 24 random bits. */
static inline float ss_rng_uniform(ss_rng_t *r)
{
    return (float)(ss_rng_u64(r) >> 40) * (1.0f / 16777216.0f);
}

/* Standard normal (Box–Muller, one value per call; deterministic, not the fastest). */
float ss_rng_normal(ss_rng_t *r);

/* Fill x[n] with N(mean, std^2) / U[lo, hi). Serial, so the values depend only on the seed. */
void ss_rng_fill_normal(ss_rng_t *r, float *x, size_t n, float mean, float std);
void ss_rng_fill_uniform(ss_rng_t *r, float *x, size_t n, float lo, float hi);

/* ------------------------------------------------------------------------------------------ */
/* Threaded row-major sgemm: C[M, N] = alpha * op(A)[M, K] · op(B)[K, N] + beta * C, where
 * op(X) = X^T when transX != 0 (A is then stored [K, M], B [N, K]). Same semantics as
 * cblas_sgemm(CblasRowMajor, ...); blocks of C go to the OpenMP threads.                      */
void ss_sgemm(int transa, int transb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);

/* ------------------------------------------------------------------------------------------ */
/* Small vector helpers (threaded)                                                             */

void ss_add_inplace(float *y, const float *x, size_t n); /* y[i] += x[i] */
void ss_scale_inplace(float *y, float a, size_t n);      /* y[i] *= a    */

/* ------------------------------------------------------------------------------------------ */
/* Conv2d (no groups, no dilation). im2col + one cblas_sgemm per batch chunk; 1×1 fast paths.  */

typedef struct ss_conv2d_t {
    int n, cin, h, w; /* input   [n, cin, h, w]                 */
    int cout, kh, kw; /* weight  [cout, cin, kh, kw], bias [cout] */
    int sh, sw;       /* stride                                 */
    int ph, pw;       /* zero padding on each side              */
    int ho, wo;       /* output  [n, cout, ho, wo] (set by init) */
} ss_conv2d_t;

/* Fill *c for a square stride/padding (PyTorch Conv2d(cin, cout, (kh, kw), stride, padding)).
 * ho = (h + 2*pad - kh) / stride + 1 (floor), likewise wo. Returns -1 (ss_error) when a
 * dimension is < 1 or the output would be empty. */
int ss_conv2d_init(ss_conv2d_t *c, int n, int cin, int h, int w, int cout, int kh, int kw,
                   int stride, int pad);
/* Same, with separate vertical/horizontal stride and padding. */
int ss_conv2d_init2(ss_conv2d_t *c, int n, int cin, int h, int w, int cout, int kh, int kw,
                    int sh, int sw, int ph, int pw);

/* Scratch floats needed by forward / backward (0 is possible, e.g. 1×1 stride 1). The two differ
 * (forward: one block of columns per CPU; backward: a chunk of images); a model can allocate
 * ONE buffer of the max over all its layers and both directions and share it, since calls are
 * sequential. Bounded: the backward processes large batches in chunks of images whose scratch
 * fits the work cap (default 8 Mi floats = 32 MiB; at least one image per chunk). Sizes depend
 * on the shape and the number of CPUs only, not on ss_nn_set_threads(), and never grow when n
 * shrinks: the workspace for the largest batch serves every smaller one. */
size_t ss_conv2d_forward_workspace(const ss_conv2d_t *c);
size_t ss_conv2d_backward_workspace(const ss_conv2d_t *c);

/* Tuning/testing knob: the backward pass's scratch cap per chunk of images, in floats (0 restores
 * the default). Global; set it before asking for workspace sizes, never while convolutions run. */
void ss_conv2d_set_work_cap(size_t floats);

/* 3×3 stride-1 pad-1 convs with enough output tiles run the forward pass and both gradients
 * through Winograd F(2×2,3×3) (2.25× fewer multiplications; agrees with the direct convolution
 * to float rounding); convs on small output maps sum over the (position, tap) pairs that miss
 * the padding, and the stem runs by output rows. On by default; off forces im2col everywhere
 * (testing, comparisons). Global; set it before asking for workspace sizes, never while
 * convolutions run. */
void ss_conv2d_set_winograd(int on);

/* Where the NN core's own product kernel replaces OpenBLAS beyond what it always does (tap pairs
 * on small maps, the stem by rows, 64-channel Winograd products and channels-last weight
 * gradients under a non-AVX-512 OpenBLAS core): by default only in builds for wide vectors
 * (AVX2 with FMA, or AVX-512: SS_NATIVE on such a CPU); a generic x86-64 build (SSE2, as the
 * sanitizer build) runs the kernel's 16-lane vectors in pieces, and OpenBLAS's runtime-chosen
 * kernels are faster. 1 forces these paths on, 0 off, -1 restores the default (tests: the same
 * paths in every build). Global; set it before asking for workspace sizes. */
void ss_nn_set_own_kernels(int on);

/* out[n, cout, ho, wo] = conv(in[n, cin, h, w], weight[cout, cin, kh, kw]) + bias[cout].
 * bias nullable. work: ss_conv2d_forward_workspace(c) floats. out must not alias in. */
void ss_conv2d_forward(const ss_conv2d_t *c, float *out, const float *in, const float *weight,
                       const float *bias, float *work);

/* Fused epilogue for inference (e.g. with batch norm folded into weight/bias, see
 * ss_batchnorm_fold): out = act(conv(in) + bias + residual), where residual [n, cout, ho, wo] is
 * nullable and act is ReLU when relu != 0, identity otherwise. residual may alias out. */
void ss_conv2d_forward_fused(const ss_conv2d_t *c, float *out, const float *in,
                             const float *weight, const float *bias, const float *residual,
                             int relu, float *work);

/* din[n, cin, h, w]           OVERWRITTEN (nullable)
 * dweight[cout, cin, kh, kw]  ACCUMULATED (nullable)
 * dbias[cout]                 ACCUMULATED (nullable)
 * from dout[n, cout, ho, wo], the forward input `in` (needed when dweight != NULL) and weight
 * (needed when din != NULL). work: ss_conv2d_backward_workspace(c) floats. */
void ss_conv2d_backward(const ss_conv2d_t *c, float *din, float *dweight, float *dbias,
                        const float *dout, const float *in, const float *weight, float *work);

/* Direct 7-loop reference versions (same semantics, no workspace, double accumulation). */
void ss_conv2d_forward_naive(const ss_conv2d_t *c, float *out, const float *in,
                             const float *weight, const float *bias);
void ss_conv2d_backward_naive(const ss_conv2d_t *c, float *din, float *dweight, float *dbias,
                              const float *dout, const float *in, const float *weight);

/* ------------------------------------------------------------------------------------------ */
/* Batch norm over (n, hw) per channel; x is [n, c, hw] (BatchNorm2d: hw = H*W; BatchNorm1d on
 * [n, c]: hw = 1). gamma/beta [c] (PyTorch `weight`/`bias`), running_mean/var [c].            */

/* Training mode: batch statistics.
 * out[n, c, hw]    = gamma * (x - mean) * invstd + beta, then ReLU when relu != 0 (fused)
 * save_mean[c]     OVERWRITTEN: batch mean                 (needed by backward)
 * save_invstd[c]   OVERWRITTEN: 1 / sqrt(biased_var + eps) (needed by backward)
 * running_mean/var UPDATED (nullable: both or neither), PyTorch semantics:
 *     running = (1 - momentum) * running + momentum * batch_stat, where the variance used is the
 *     UNBIASED batch variance (times n*hw/(n*hw-1)); momentum <= 0 means PyTorch's
 *     momentum=None: cumulative average with factor 1/num_batches_tracked.
 * num_batches_tracked  incremented by 1 (nullable).
 * PyTorch defaults: momentum 0.1, eps 1e-5. out may alias x. */
void ss_batchnorm_forward_train(float *out, float *save_mean, float *save_invstd,
                                float *running_mean, float *running_var,
                                int64_t *num_batches_tracked, const float *x, const float *gamma,
                                const float *beta, int n, int c, int hw, float momentum,
                                float eps, int relu);

/* Eval mode: out = gamma * (x - running_mean) / sqrt(running_var + eps) + beta (+ fused ReLU).
 * out may alias x. */
void ss_batchnorm_forward_eval(float *out, const float *x, const float *gamma, const float *beta,
                               const float *running_mean, const float *running_var, int n, int c,
                               int hw, float eps, int relu);

/* Backward of the training-mode forward.
 * din[n, c, hw]  OVERWRITTEN (nullable);  dgamma[c], dbeta[c]  ACCUMULATED (nullable)
 * x is the forward input, save_mean/save_invstd from forward_train.
 * relu_out: when the forward ran with relu != 0, pass its output here; dout is then masked
 * where relu_out <= 0 (the fused ReLU backward). NULL when the forward had no ReLU.
 * din may alias dout. */
void ss_batchnorm_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                           const float *x, const float *save_mean, const float *save_invstd,
                           const float *gamma, const float *relu_out, int n, int c, int hw);

/* Backward of the eval-mode forward (frozen statistics, e.g. fine-tuning with BN in eval):
 * din OVERWRITTEN (nullable), dgamma/dbeta ACCUMULATED (nullable), relu_out as above. */
void ss_batchnorm_backward_eval(float *din, float *dgamma, float *dbeta, const float *dout,
                                const float *x, const float *gamma, const float *running_mean,
                                const float *running_var, const float *relu_out, int n, int c,
                                int hw, float eps);

/* Fold eval-mode batch norm into the preceding conv for inference:
 * w_out[cout, k] = w[cout, k] * s, b_out[cout] = (b - running_mean) * s + beta, where
 * s = gamma / sqrt(running_var + eps), k = cin*kh*kw, b = conv bias (nullable = 0).
 * w_out may alias w. */
void ss_batchnorm_fold(float *w_out, float *b_out, const float *w, const float *b,
                       const float *gamma, const float *beta, const float *running_mean,
                       const float *running_var, int cout, int k, float eps);

void ss_batchnorm_forward_train_naive(float *out, float *save_mean, float *save_invstd,
                                      float *running_mean, float *running_var,
                                      int64_t *num_batches_tracked, const float *x,
                                      const float *gamma, const float *beta, int n, int c, int hw,
                                      float momentum, float eps, int relu);
void ss_batchnorm_forward_eval_naive(float *out, const float *x, const float *gamma,
                                     const float *beta, const float *running_mean,
                                     const float *running_var, int n, int c, int hw, float eps,
                                     int relu);
void ss_batchnorm_backward_naive(float *din, float *dgamma, float *dbeta, const float *dout,
                                 const float *x, const float *save_mean,
                                 const float *save_invstd, const float *gamma,
                                 const float *relu_out, int n, int c, int hw);

/* ------------------------------------------------------------------------------------------ */
/* Element-wise activations. n = number of elements. out may alias in; din may alias dout.     */

void ss_relu_forward(float *out, const float *in, size_t n);
/* din = dout * (out > 0); `out` is the forward OUTPUT. din OVERWRITTEN. */
void ss_relu_backward(float *din, const float *dout, const float *out, size_t n);

/* GELU, exact erf form (PyTorch default approximate='none'): 0.5 x (1 + erf(x / sqrt 2)).
 * Backward needs the forward INPUT. din OVERWRITTEN. */
void ss_gelu_forward(float *out, const float *in, size_t n);
void ss_gelu_backward(float *din, const float *dout, const float *in, size_t n);

/* tanh / sigmoid: backward needs the forward OUTPUT. din OVERWRITTEN. */
void ss_tanh_forward(float *out, const float *in, size_t n);
void ss_tanh_backward(float *din, const float *dout, const float *out, size_t n);
void ss_sigmoid_forward(float *out, const float *in, size_t n);
void ss_sigmoid_backward(float *din, const float *dout, const float *out, size_t n);

void ss_relu_forward_naive(float *out, const float *in, size_t n);
void ss_relu_backward_naive(float *din, const float *dout, const float *out, size_t n);
void ss_gelu_forward_naive(float *out, const float *in, size_t n);
void ss_gelu_backward_naive(float *din, const float *dout, const float *in, size_t n);
void ss_tanh_forward_naive(float *out, const float *in, size_t n);
void ss_tanh_backward_naive(float *din, const float *dout, const float *out, size_t n);
void ss_sigmoid_forward_naive(float *out, const float *in, size_t n);
void ss_sigmoid_backward_naive(float *din, const float *dout, const float *out, size_t n);

/* ------------------------------------------------------------------------------------------ */
/* Residual add                                                                                */

/* out = a + b (+ ReLU when relu != 0); out may alias a or b. */
void ss_add_forward(float *out, const float *a, const float *b, size_t n, int relu);
/* da = db = dout (masked by out > 0 when the forward had relu: pass its output as relu_out,
 * else NULL). da, db OVERWRITTEN (each nullable); either may alias dout. */
void ss_add_backward(float *da, float *db, const float *dout, const float *relu_out, size_t n);
void ss_add_forward_naive(float *out, const float *a, const float *b, size_t n, int relu);

/* ------------------------------------------------------------------------------------------ */
/* Pooling                                                                                     */

/* Max pool, PyTorch MaxPool2d(k, stride, pad) with ceil_mode=False, dilation 1: padding acts as
 * -inf; ties go to the first maximum in row-major window order; NaN propagates.
 * ResNet stem: k=3, stride=2, pad=1. */
typedef struct ss_pool2d_t {
    int n, c, h, w; /* input  [n, c, h, w]            */
    int k, s, p;    /* window, stride, padding        */
    int ho, wo;     /* output [n, c, ho, wo] (by init) */
} ss_pool2d_t;

/* Returns -1 (ss_error) if pad > k/2 (PyTorch rejects it too) or the output is empty. */
int ss_pool2d_init(ss_pool2d_t *p, int n, int c, int h, int w, int k, int stride, int pad);

/* out[n, c, ho, wo]; argmax[n, c, ho, wo] OVERWRITTEN: flat index h*w-plane offset (iy*w + ix)
 * of the chosen input element, as PyTorch's return_indices. */
void ss_maxpool2d_forward(const ss_pool2d_t *p, float *out, int32_t *argmax, const float *in);
/* Inference: out[n, c, ho, wo] only (no argmax); the same values as ss_maxpool2d_forward (a NaN
 * in a window gives NaN). Separable: a column max over the window's rows, then the row max. */
void ss_maxpool2d_forward_values(const ss_pool2d_t *p, float *out, const float *in);
/* din[n, c, h, w] OVERWRITTEN from dout[n, c, ho, wo] and the saved argmax. */
void ss_maxpool2d_backward(const ss_pool2d_t *p, float *din, const float *dout,
                           const int32_t *argmax);
void ss_maxpool2d_forward_naive(const ss_pool2d_t *p, float *out, int32_t *argmax,
                                const float *in);
void ss_maxpool2d_backward_naive(const ss_pool2d_t *p, float *din, const float *dout,
                                 const int32_t *argmax);

/* Global average pool (AdaptiveAvgPool2d(1) + flatten): out[n, c] = mean over hw of in[n, c, hw].
 * Backward: din[n, c, hw] = dout[n, c] / hw, OVERWRITTEN. */
void ss_avgpool_global_forward(float *out, const float *in, int n, int c, int hw);
void ss_avgpool_global_backward(float *din, const float *dout, int n, int c, int hw);
void ss_avgpool_global_forward_naive(float *out, const float *in, int n, int c, int hw);
void ss_avgpool_global_backward_naive(float *din, const float *dout, int n, int c, int hw);

/* ------------------------------------------------------------------------------------------ */
/* Linear: out[rows, nout] = in[rows, nin] W^T + b, W [nout, nin] (PyTorch), b [nout] nullable. */

void ss_linear_forward(float *out, const float *in, const float *weight, const float *bias,
                       int rows, int nin, int nout);
/* din[rows, nin] = dout W        OVERWRITTEN (nullable)
 * dweight[nout, nin] += dout^T in ACCUMULATED (nullable)
 * dbias[nout] += sum_rows dout    ACCUMULATED (nullable) */
void ss_linear_backward(float *din, float *dweight, float *dbias, const float *dout,
                        const float *in, const float *weight, int rows, int nin, int nout);
void ss_linear_forward_naive(float *out, const float *in, const float *weight, const float *bias,
                             int rows, int nin, int nout);
void ss_linear_backward_naive(float *din, float *dweight, float *dbias, const float *dout,
                              const float *in, const float *weight, int rows, int nin, int nout);

/* ------------------------------------------------------------------------------------------ */
/* Dropout (inverted, PyTorch semantics): in training, each element is zeroed with probability p
 * and the survivors are scaled by 1/(1-p); p == 1 zeroes everything. The mask comes from a
 * counter-based hash of one draw from *rng (which advances by exactly one u64 per call), so it
 * is independent of the thread count. For eval just don't call it (identity).                 */

/* out[n]; mask[n] OVERWRITTEN (1 = kept, 0 = dropped), needed by backward. out may alias in. */
void ss_dropout_forward(float *out, uint8_t *mask, const float *in, size_t n, float p,
                        ss_rng_t *rng);
/* din = dout * mask / (1 - p), OVERWRITTEN; din may alias dout. */
void ss_dropout_backward(float *din, const float *dout, const uint8_t *mask, size_t n, float p);
/* Serial reference; produces the identical mask for the same rng state. */
void ss_dropout_forward_naive(float *out, uint8_t *mask, const float *in, size_t n, float p,
                              ss_rng_t *rng);

/* ------------------------------------------------------------------------------------------ */
/* LayerNorm over the last dim: x [rows, dim]; weight/bias [dim] (nullable = no affine).       */

/* out = (x - mean) * rstd * weight + bias; save_mean[rows], save_rstd[rows] OVERWRITTEN
 * (rstd = 1/sqrt(biased_var + eps); PyTorch default eps 1e-5). out may alias x. */
void ss_layernorm_forward(float *out, float *save_mean, float *save_rstd, const float *x,
                          const float *weight, const float *bias, int rows, int dim, float eps);
/* din[rows, dim] OVERWRITTEN (nullable); dweight, dbias [dim] ACCUMULATED (nullable).
 * din may alias dout. */
void ss_layernorm_backward(float *din, float *dweight, float *dbias, const float *dout,
                           const float *x, const float *save_mean, const float *save_rstd,
                           const float *weight, int rows, int dim);
void ss_layernorm_forward_naive(float *out, float *save_mean, float *save_rstd, const float *x,
                                const float *weight, const float *bias, int rows, int dim,
                                float eps);
void ss_layernorm_backward_naive(float *din, float *dweight, float *dbias, const float *dout,
                                 const float *x, const float *save_mean, const float *save_rstd,
                                 const float *weight, int rows, int dim);

/* ------------------------------------------------------------------------------------------ */
/* Softmax over the last dim: x [rows, dim]. Numerically stable (max subtracted).              */

void ss_softmax_forward(float *out, const float *x, int rows, int dim); /* out may alias x */
/* din = out * (dout - sum(dout * out)) per row, OVERWRITTEN; `out` is the forward output;
 * din may alias dout. */
void ss_softmax_backward(float *din, const float *dout, const float *out, int rows, int dim);
void ss_softmax_forward_naive(float *out, const float *x, int rows, int dim);
void ss_softmax_backward_naive(float *din, const float *dout, const float *out, int rows,
                               int dim);

#endif
