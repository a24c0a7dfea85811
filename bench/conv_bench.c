/* conv_bench — achieved GFLOP/s of ss_conv2d_forward/backward on the convolutions of ResNet-18
 * (batch 32 at 64, 96 and 224 px) beside cblas_sgemm's peak measured in the same process.
 *
 * usage: conv_bench [--threads N] [--sizes 64,96,224] [--batch 32] [--cpu] [--no-winograd]
 * Prints the OpenBLAS kernel in use (openblas_get_corename; env OPENBLAS_CORETYPE overrides the
 * auto-detected one) and the thread count. GFLOP/s count the direct convolution's 2·MACs, so
 * Winograd layers (3×3 stride 1, on by default; --no-winograd for plain im2col) show the
 * effective rate and can exceed the sgemm peak. Not a test: figures only. */
#include "slidestream/log.h"
#include "slidestream/nn_layers.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Wall clock by default; --cpu switches to process CPU time, which is robust to other processes
 * on a busy machine (meaningful with --threads 1; with more threads it adds their spinning). */
static int use_cpu_time;

static double now(void)
{
    if (!use_cpu_time)
        return ss_now();
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *alloc_floats(size_t n)
{
    float *p = aligned_alloc(64, ((n ? n : 1) * sizeof(float) + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "conv_bench: out of memory (%zu floats)\n", n);
        exit(1);
    }
    return p;
}

static void fill(float *p, size_t n, ss_rng_t *r)
{
    ss_rng_fill_uniform(r, p, n, -1.0f, 1.0f);
}

/* Best of `reps` timings of a square sgemm of size n: GFLOP/s. threaded_blas: plain cblas_sgemm
 * with OpenBLAS's own pool at our thread count; otherwise ss_sgemm (our pool, OpenBLAS
 * single-threaded inside, as the layers use it). */
static double sgemm_peak(int n, int reps, int threaded_blas)
{
    size_t nn = (size_t)n * n;
    float *a = alloc_floats(nn), *b = alloc_floats(nn), *c = alloc_floats(nn);
    ss_rng_t r;
    ss_rng_seed(&r, 1);
    fill(a, nn, &r);
    fill(b, nn, &r);
    double best = 1e30;
    for (int i = 0; i < reps + 1; i++) { /* first run warms up the thread pool */
        double t0 = now();
        if (threaded_blas)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f,
                        c, n);
        else
            ss_sgemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double t = now() - t0;
        if (i > 0 && t < best)
            best = t;
    }
    free(a), free(b), free(c);
    return 2.0 * n * (double)n * n / best * 1e-9;
}

typedef struct {
    const char *name;
    int cin, cout, k, stride, pad, in_div; /* input side = size / in_div */
    int count;                             /* how many convs of this shape ResNet-18 has */
} layer_t;

/* ResNet-18 convolutions (torchvision), grouped by shape. */
static const layer_t resnet18[] = {
    {"conv1 7x7/2", 3, 64, 7, 2, 3, 1, 1},
    {"layer1 3x3", 64, 64, 3, 1, 1, 4, 4},
    {"layer2.0 3x3/2", 64, 128, 3, 2, 1, 4, 1},
    {"layer2.0 ds 1x1/2", 64, 128, 1, 2, 0, 4, 1},
    {"layer2 3x3", 128, 128, 3, 1, 1, 8, 3},
    {"layer3.0 3x3/2", 128, 256, 3, 2, 1, 8, 1},
    {"layer3.0 ds 1x1/2", 128, 256, 1, 2, 0, 8, 1},
    {"layer3 3x3", 256, 256, 3, 1, 1, 16, 3},
    {"layer4.0 3x3/2", 256, 512, 3, 2, 1, 16, 1},
    {"layer4.0 ds 1x1/2", 256, 512, 1, 2, 0, 16, 1},
    {"layer4 3x3", 512, 512, 3, 1, 1, 32, 3},
};

static void bench_size(int size, int batch, double peak, double *fwd_eff, double *bwd_eff)
{
    const int nl = (int)(sizeof resnet18 / sizeof resnet18[0]);
    double tot_flop = 0, tot_bflop = 0, tot_fwd = 0, tot_bwd = 0;
    ss_rng_t r;
    ss_rng_seed(&r, 7);
    printf("\n%d px, batch %d\n", size, batch);
    printf("  %-18s %-22s %9s %8s %6s %9s %8s %6s\n", "layer", "in -> out", "fwd ms", "GFLOP/s",
           "%peak", "bwd ms", "GFLOP/s", "%peak");
    for (int l = 0; l < nl; l++) {
        const layer_t *L = &resnet18[l];
        int side = size / L->in_div;
        if (L->in_div > 1) /* after the stem conv (/2) and max pool (/2, pad 1, k 3) */
            side = ((size + 1) / 2 + 1) / 2 / (L->in_div / 4);
        ss_conv2d_t c;
        if (ss_conv2d_init(&c, batch, L->cin, side, side, L->cout, L->k, L->k, L->stride, L->pad))
            continue;
        size_t nx = (size_t)batch * L->cin * side * side, nw = (size_t)L->cout * L->cin * L->k * L->k,
               ny = (size_t)batch * L->cout * c.ho * c.wo;
        size_t wf = ss_conv2d_forward_workspace(&c), wb = ss_conv2d_backward_workspace(&c);
        float *x = alloc_floats(nx), *w = alloc_floats(nw), *y = alloc_floats(ny),
              *dx = alloc_floats(nx), *dw = alloc_floats(nw), *work = alloc_floats(wf > wb ? wf : wb);
        fill(x, nx, &r);
        fill(w, nw, &r);
        memset(dw, 0, nw * sizeof(float));
        double flop = 2.0 * batch * L->cout * (double)c.ho * c.wo * L->cin * L->k * L->k;
        int reps = flop > 20e9 ? 1 : flop > 2e9 ? 3 : 8;
        double bf = 1e30, bb = 1e30;
        ss_conv2d_forward(&c, y, x, w, NULL, work); /* warm-up */
        for (int i = 0; i < reps; i++) {
            double t0 = now();
            ss_conv2d_forward(&c, y, x, w, NULL, work);
            double t = now() - t0;
            bf = t < bf ? t : bf;
        }
        for (int i = 0; i < reps; i++) {
            double t0 = now();
            /* The stem conv needs no input gradient in training (its input is the image). */
            ss_conv2d_backward(&c, l == 0 ? NULL : dx, dw, NULL, y, x, w, work);
            double t = now() - t0;
            bb = t < bb ? t : bb;
        }
        char shape[64];
        snprintf(shape, sizeof shape, "%dx%d²->%dx%d²", L->cin, side, L->cout, c.ho);
        const double bflop = (l == 0 ? 1 : 2) * flop; /* dW (+ din) */
        double gf = flop / bf * 1e-9, gb = bflop / bb * 1e-9;
        printf("  %-18s %-22s %9.2f %8.1f %5.0f%% %9.2f %8.1f %5.0f%%\n", L->name, shape, bf * 1e3,
               gf, 100 * gf / peak, bb * 1e3, gb, 100 * gb / peak);
        tot_flop += L->count * flop;
        tot_fwd += L->count * bf;
        tot_bwd += L->count * bb;
        tot_bflop += L->count * bflop;
        free(x), free(w), free(y), free(dx), free(dw), free(work);
    }
    *fwd_eff = tot_flop / tot_fwd * 1e-9;
    *bwd_eff = tot_bflop / tot_bwd * 1e-9;
    printf("  %-41s %9.1f %8.1f %5.0f%% %9.1f %8.1f %5.0f%%\n", "all ResNet-18 convs (weighted)",
           tot_fwd * 1e3, *fwd_eff, 100 * *fwd_eff / peak, tot_bwd * 1e3, *bwd_eff,
           100 * *bwd_eff / peak);
}

int main(int argc, char **argv)
{
    int threads = 0, batch = 32;
    char sizes[64] = "64,96,224";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-winograd"))
            ss_conv2d_set_winograd(0);
        else if (!strcmp(argv[i], "--cpu"))
            use_cpu_time = 1;
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--sizes") && i + 1 < argc)
            snprintf(sizes, sizeof sizes, "%s", argv[++i]);
        else {
            fprintf(stderr, "usage: conv_bench [--threads N] [--sizes 64,96,224] [--batch 32] [--cpu] [--no-winograd]\n");
            return 2;
        }
    }
    if (batch < 1) {
        fprintf(stderr, "conv_bench: bad --batch %d\n", batch);
        return 2;
    }
    ss_nn_set_threads(threads);
    const char *env = getenv("OPENBLAS_CORETYPE");
    printf("OpenBLAS core: %s (OPENBLAS_CORETYPE=%s), threads: %d (OpenBLAS %d)\n",
           openblas_get_corename(), env ? env : "unset", ss_nn_threads(),
           openblas_get_num_threads());
    openblas_set_num_threads(ss_nn_threads());
    double peak = sgemm_peak(2048, 3, 1);
    ss_nn_set_threads(threads); /* back to OpenBLAS single-threaded under our pool */
    double peak_ss = sgemm_peak(2048, 3, 0);
    printf("cblas_sgemm peak (2048^3, OpenBLAS pool, best of 3): %.1f GFLOP/s\n", peak);
    printf("ss_sgemm    peak (2048^3, our pool,      best of 3): %.1f GFLOP/s\n", peak_ss);

    char *save = NULL;
    double results[8][3];
    int nres = 0;
    for (char *tok = strtok_r(sizes, ",", &save); tok && nres < 8;
         tok = strtok_r(NULL, ",", &save)) {
        int s = atoi(tok);
        if (s < 32) {
            fprintf(stderr, "conv_bench: size %d < 32\n", s);
            return 2;
        }
        results[nres][0] = s;
        bench_size(s, batch, peak, &results[nres][1], &results[nres][2]);
        nres++;
    }
    printf("\nsummary, all ResNet-18 convs weighted by count (backward = dW + din, stem: dW only):\n");
    printf("%-6s %14s %8s %14s %8s   (sgemm peak %.1f GFLOP/s, core %s, %d threads)\n", "size",
           "fwd GFLOP/s", "%peak", "bwd GFLOP/s", "%peak", peak, openblas_get_corename(),
           ss_nn_threads());
    for (int i = 0; i < nres; i++)
        printf("%-6.0f %14.1f %7.0f%% %14.1f %7.0f%%\n", results[i][0], results[i][1],
               100 * results[i][1] / peak, results[i][2], 100 * results[i][2] / peak);
    return 0;
}
