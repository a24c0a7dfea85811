/* resnet_bench — images/s of the C ResNet-18 (inference and a full training step: forward,
 * cross-entropy, backward, SGD with momentum) and the cblas_sgemm peak in the same process.
 * bench/run_resnet_bench.sh runs it beside bench/resnet_bench_torch.py (same output lines) and
 * prints the comparison table. Not a test: figures only.
 *
 * usage: resnet_bench [--threads N] [--sizes 64,96,224] [--batch 32] [--min-time S] [--cpu]
 *        resnet_bench --memory [--threads N]   (one training step, batch 256 at 96 px; peak RSS)
 * --cpu times with process CPU time instead of the wall clock (use with --threads 1).
 * --only infer|train times one of the two (for profiling one path).
 * Output: one "key value..." line per figure (corename, threads, sgemm_gflops, infer, train,
 * rss_mb), easy to parse. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "slidestream/log.h"
#include "slidestream/nn_layers.h"
#include "slidestream/nn_loss.h"
#include "slidestream/nn_optim.h"
#include "slidestream/nn_resnet.h"

/* Wall clock, or with --cpu the process CPU time: with one thread that is robust to other
 * processes on a busy machine (with more it adds their spinning). */
static int use_cpu_time;

static double now(void)
{
    if (!use_cpu_time) return ss_now();
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *alloc_floats(size_t n)
{
    float *p = malloc(n * sizeof(float));
    if (!p) {
        fprintf(stderr, "resnet_bench: out of memory\n");
        exit(1);
    }
    return p;
}

static double sgemm_gflops(int n)
{
    size_t nn = (size_t)n * n;
    float *a = alloc_floats(nn), *b = alloc_floats(nn), *c = alloc_floats(nn);
    ss_rng_t r;
    ss_rng_seed(&r, 1);
    ss_rng_fill_uniform(&r, a, nn, -1, 1);
    ss_rng_fill_uniform(&r, b, nn, -1, 1);
    double best = 1e30;
    for (int i = 0; i < 4; i++) {
        double t = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
        t = now() - t;
        if (i && t < best) best = t; /* first call warms up */
    }
    free(a), free(b), free(c);
    return 2.0 * n * n * (double)n / best * 1e-9;
}

/* Forward FLOPs of every convolution and the fc of ResNet-18 for one image. */
static double model_flops(const ss_resnet_t *m)
{
    double f = 0;
    /* conv FLOPs = 2 * cout * ho * wo * cin * kh * kw; recompute the geometry as torchvision */
    int S = m->cfg.input_size;
    int h = (S + 6 - 7) / 2 + 1;
    f += 2.0 * 64 * h * h * 3 * 49;
    h = (h + 2 - 3) / 2 + 1;
    int cin = 64;
    for (int L = 0; L < 4; L++) {
        int planes = 64 << L;
        for (int b = 0; b < 2; b++) {
            int s = (b == 0 && L > 0) ? 2 : 1;
            int ho = (h + 2 - 3) / s + 1;
            f += 2.0 * planes * ho * ho * cin * 9 + 2.0 * planes * ho * ho * planes * 9;
            if (s != 1 || cin != planes) f += 2.0 * planes * ho * ho * cin;
            cin = planes;
            h = ho;
        }
    }
    return f + 2.0 * 512 * m->cfg.num_classes;
}

static ss_resnet_t *make(int size, int batch, int train)
{
    ss_resnet_config_t c = ss_resnet_config_default(18);
    c.input_size = size;
    c.num_classes = 1000;
    c.seed = 1;
    ss_resnet_t *m = ss_resnet_new(&c, batch, train);
    if (!m) {
        ss_error_report("cannot build the model");
        exit(1);
    }
    return m;
}

typedef struct {
    ss_resnet_t *m;
    ss_optim_t *opt;
    float *x, *dl;
    int *y, n;
} step_t;

static void train_step(step_t *s)
{
    float loss;
    ss_resnet_zero_grad(s->m);
    if (ss_resnet_forward(s->m, s->x, s->n, 1) ||
        ss_loss_cross_entropy(&loss, s->dl, ss_resnet_output(s->m, SS_RESNET_LOGITS, NULL), s->y,
                              s->n, 1000) ||
        ss_resnet_backward(s->m, NULL, s->dl, NULL)) {
        ss_error_report("training step failed");
        exit(1);
    }
    ss_optim_step(s->opt, s->m->params, s->m->grads, s->opt->cfg.lr);
}

static step_t step_new(int size, int n)
{
    step_t s = {.m = make(size, n, 1), .n = n};
    ss_optim_config_t oc = ss_optim_config_default(SS_OPTIM_SGD, 0.01f);
    oc.momentum = 0.9f, oc.weight_decay = 1e-4f;
    s.opt = ss_optim_new(&oc, s.m->num_params);
    size_t nx = (size_t)n * 3 * size * size;
    s.x = alloc_floats(nx);
    s.dl = alloc_floats((size_t)n * 1000);
    s.y = malloc(sizeof(int) * n);
    ss_rng_t r;
    ss_rng_seed(&r, 2);
    ss_rng_fill_normal(&r, s.x, nx, 0, 1);
    for (int i = 0; i < n; i++)
        s.y[i] = (int)(ss_rng_u64(&r) % 1000);
    return s;
}

static void step_free(step_t *s)
{
    ss_resnet_destroy(&s->m);
    ss_optim_destroy(&s->opt);
    free(s->x), free(s->dl), free(s->y);
}

/* Best time of repeated calls after a warm-up: at least one timed run, min_time seconds in all. */
static double best_time(void (*fn)(void *), void *arg, double min_time)
{
    /* warm-up (first-touch of the arenas, BN folding): as the PyTorch peer, at least 3 calls
     * and min_time / 2 seconds */
    for (double w0 = now(), k = 0; k < 3 || now() - w0 < 0.5 * min_time; k++)
        fn(arg);
    double best = 1e30, total = 0;
    for (int i = 0; i < 1 || total < min_time; i++) {
        double t = now();
        fn(arg);
        t = now() - t;
        total += t;
        if (t < best) best = t;
        if (i >= 50) break;
    }
    return best;
}

static void run_infer(void *a)
{
    step_t *s = a;
    if (ss_resnet_forward(s->m, s->x, s->n, 0)) {
        ss_error_report("inference failed");
        exit(1);
    }
}

static void run_train(void *a)
{
    train_step(a);
}

int main(int argc, char **argv)
{
    int threads = 2, batch = 32, memory = 0, do_infer = 1, do_train = 1;
    double min_time = 0.5;
    char sizes[128] = "64,96,224";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--sizes") && i + 1 < argc)
            snprintf(sizes, sizeof(sizes), "%s", argv[++i]);
        else if (!strcmp(argv[i], "--min-time") && i + 1 < argc)
            min_time = atof(argv[++i]);
        else if (!strcmp(argv[i], "--memory"))
            memory = 1;
        else if (!strcmp(argv[i], "--cpu"))
            use_cpu_time = 1;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc && !strcmp(argv[i + 1], "infer"))
            do_train = 0, i++;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc && !strcmp(argv[i + 1], "train"))
            do_infer = 0, i++;
        else {
            fprintf(stderr, "usage: resnet_bench [--threads N] [--sizes 64,96,224] [--batch 32] "
                            "[--min-time S] [--cpu] [--only infer|train] | --memory [--threads N]\n");
            return 2;
        }
    }
    ss_nn_set_threads(threads);
    printf("corename %s\nthreads %d\n", openblas_get_corename(), threads);
    if (memory) {
        step_t s = step_new(96, 256);
        train_step(&s);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        printf("rss_mb %.0f\n", ru.ru_maxrss / 1024.0);
        printf("model_mb %.0f\n", ss_resnet_memory_bytes(s.m) / 1048576.0);
        step_free(&s);
        return 0;
    }
    printf("sgemm_gflops %.1f\n", sgemm_gflops(2048));
    fflush(stdout);
    for (char *tok = strtok(sizes, ","); tok; tok = strtok(NULL, ",")) {
        int size = atoi(tok);
        step_t s = step_new(size, batch);
        double flops = model_flops(s.m) * batch;
        if (do_infer) {
            double ti = best_time(run_infer, &s, min_time);
            printf("infer %d %.1f %.1f\n", size, batch / ti, flops / ti * 1e-9);
            fflush(stdout);
        }
        if (do_train) {
            double tt = best_time(run_train, &s, min_time);
            printf("train %d %.1f\n", size, batch / tt);
            fflush(stdout);
        }
        step_free(&s);
    }
    return 0;
}
