/* train_bench — training images/s of the encoder trainer (ss_trainer_step: view-group passes,
 * gradient caching, per-task gradients, surgery, SGD) for each method, and the peak RSS of one
 * step at the reference's batch. bench/run_train_bench.sh runs it beside
 * bench/train_bench_torch.py (same output lines) and prints the comparison table. Not a test:
 * figures only.
 *
 * The model: ResNet-18 (width 1), fc Linear(512, 2) and projector Linear(512, 512)-ReLU-
 * Linear(512, 512), seed 1; the batch: `cells` cells, half from positive bags (npos =
 * cells / 2, nneg = cells - npos), as normal(0, 1) images ("already normalised"), seed 2,
 * laid out as ss_train_slot says. Images counted = views forwarded for the loss
 * (ss_train_views: 2 per cell, 1 for supervised); the forward passes run, recomputations
 * included, are reported beside them.
 *
 * usage: train_bench [--threads N] [--methods m,m] [--sizes 64,96,224] [--cells 32]
 *                    [--steps 5] [--lr 1e-3]
 *        train_bench --memory [--threads N] [--methods slam-ags] [--sizes 224] [--cells 256]
 * Speed: one warm-up step, then `steps` timed steps; a figure is the best step (as
 * bench/resnet_bench.c), the mean is printed too. Output, one line per figure:
 *   train METHOD SIZE IMG/S MEAN_IMG/S CELLS VIEWS PASSES REFORWARDS LOSS
 * Memory (--memory): ONE step of the first method at the first size (default 256 cells =
 * 128 positive + 128 negative, 2 views each, 224 px: four view groups of 128), then
 *   memory METHOD SIZE CELLS VIEWS PASSES REFORWARDS RSS_MB MODEL_MB INPUT_MB
 * with RSS_MB the process's peak resident set (getrusage ru_maxrss). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "slidestream/error.h"
#include "slidestream/log.h"
#include "slidestream/nn_layers.h"
#include "slidestream/nn_resnet.h"
#include "slidestream/train.h"

typedef struct {
    ss_train_method_t method;
    int size, npos, nneg, views;
    ss_resnet_t *m;
    ss_trainer_t *t;
    float *x; /* (views, 3, size, size) */
} bench_t;

static void die(const char *what)
{
    ss_error_report(what);
    exit(1);
}

static void bench_free(bench_t *b)
{
    ss_trainer_destroy(&b->t);
    ss_resnet_destroy(&b->m);
    free(b->x);
    b->x = NULL;
}

static bench_t bench_new(ss_train_method_t method, int size, int cells)
{
    bench_t b = {.method = method, .size = size, .npos = cells / 2};
    b.nneg = cells - b.npos;
    b.views = ss_train_views(method, b.npos, b.nneg);
    ss_train_config_t tc = ss_train_config_default(method);
    ss_resnet_config_t rc = ss_resnet_config_default(18);
    rc.input_size = size;
    rc.num_classes = 2;
    rc.proj_hidden = 512;
    rc.proj_out = 512;
    rc.seed = 1;
    if (!(b.m = ss_resnet_new(&rc, ss_train_max_pass(&tc, b.npos, b.nneg), 1)))
        die("cannot build the model");
    if (!(b.t = ss_trainer_new(b.m, &tc, b.npos, b.nneg))) die("cannot build the trainer");
    size_t nx = (size_t)b.views * 3 * size * size;
    if (!(b.x = malloc(nx * sizeof(float)))) {
        fprintf(stderr, "train_bench: out of memory for %zu input floats\n", nx);
        exit(1);
    }
    ss_rng_t r;
    ss_rng_seed(&r, 2);
    ss_rng_fill_normal(&r, b.x, nx, 0, 1);
    return b;
}

static double step(bench_t *b, float lr, ss_train_stats_t *st)
{
    double t = ss_now();
    if (ss_trainer_step(b->t, b->x, b->npos, b->nneg, lr, st)) die("training step failed");
    return ss_now() - t;
}

static double peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0; /* KB on Linux */
}

static int parse_methods(char *list, ss_train_method_t *out, int max)
{
    int n = 0;
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        if (n == max || ss_train_method_parse(tok, &out[n])) {
            ss_error_report("train_bench: --methods");
            exit(2);
        }
        n++;
    }
    return n;
}

static int parse_sizes(char *list, int *out, int max)
{
    int n = 0;
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        char *end;
        long s = strtol(tok, &end, 10);
        if (*end || s < 32 || s > 4096 || n == max) {
            fprintf(stderr, "train_bench: size '%s': want an integer in [32, 4096]\n", tok);
            exit(2);
        }
        out[n++] = (int)s;
    }
    return n;
}

int main(int argc, char **argv)
{
    int threads = 2, cells = -1, steps = 5, memory = 0;
    float lr = 1e-3f;
    char methods_arg[256] = "slam-ags,pcgrad,cagrad,mgda,weaksupcon,simclr,supervised";
    char sizes_arg[128] = "";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--threads") && v)
            threads = atoi(v), i++;
        else if (!strcmp(a, "--methods") && v)
            snprintf(methods_arg, sizeof methods_arg, "%s", v), i++;
        else if (!strcmp(a, "--sizes") && v)
            snprintf(sizes_arg, sizeof sizes_arg, "%s", v), i++;
        else if (!strcmp(a, "--cells") && v)
            cells = atoi(v), i++;
        else if (!strcmp(a, "--steps") && v)
            steps = atoi(v), i++;
        else if (!strcmp(a, "--lr") && v)
            lr = (float)atof(v), i++;
        else if (!strcmp(a, "--memory"))
            memory = 1;
        else {
            fprintf(stderr, "usage: train_bench [--threads N] [--methods m,m] [--sizes 64,96,224] "
                            "[--cells 32] [--steps 5] [--lr 1e-3]\n"
                            "       train_bench --memory [--threads N] [--methods slam-ags] "
                            "[--sizes 224] [--cells 256]\n");
            return 2;
        }
    }
    if (!sizes_arg[0]) snprintf(sizes_arg, sizeof sizes_arg, "%s", memory ? "224" : "64,96,224");
    if (cells < 0) cells = memory ? 256 : 32;
    if (threads < 1 || cells < 4 || steps < 1) {
        fprintf(stderr, "train_bench: want --threads >= 1, --cells >= 4, --steps >= 1\n");
        return 2;
    }
    ss_train_method_t methods[16];
    int sizes[16];
    int nm = parse_methods(methods_arg, methods, 16), ns = parse_sizes(sizes_arg, sizes, 16);
    ss_nn_set_threads(threads);
    printf("corename %s\nthreads %d\n", openblas_get_corename(), threads);
    fflush(stdout);

    if (memory) {
        /* the figure: one step of the reference's batch, nothing else in the process */
        bench_t b = bench_new(methods[0], sizes[0], cells);
        ss_train_stats_t st;
        step(&b, lr, &st);
        printf("memory %s %d %d %d %d %d %.0f %.0f %.0f\n", ss_train_method_name(b.method), b.size,
               cells, b.views, st.passes, st.reforwards, peak_rss_mb(),
               ss_resnet_memory_bytes(b.m) / 1048576.0,
               (double)b.views * 3 * b.size * b.size * sizeof(float) / 1048576.0);
        bench_free(&b);
        return 0;
    }

    for (int si = 0; si < ns; si++)
        for (int mi = 0; mi < nm; mi++) {
            bench_t b = bench_new(methods[mi], sizes[si], cells);
            ss_train_stats_t st;
            step(&b, lr, &st); /* warm-up: first touch of the arenas and buffers */
            double best = 1e30, total = 0;
            for (int k = 0; k < steps; k++) {
                double t = step(&b, lr, &st);
                total += t;
                if (t < best) best = t;
            }
            if (!isfinite(st.loss))
                fprintf(stderr, "train_bench: %s %d px: loss %g after %d steps\n",
                        ss_train_method_name(b.method), b.size, st.loss, steps + 1);
            printf("train %s %d %.2f %.2f %d %d %d %d %.4f\n", ss_train_method_name(b.method),
                   b.size, b.views / best, b.views * steps / total, cells, b.views, st.passes,
                   st.reforwards, st.loss);
            fflush(stdout);
            bench_free(&b);
        }
    return 0;
}
