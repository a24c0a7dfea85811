/* mil_bench — one-off measurement, not a test: eval forward time and peak RSS of one MIL
 * architecture (default configuration) on one random bag.
 * Usage: mil_bench ARCH [CELLS=100000] [DIM=512] [RUNS=2] [THREADS=0 (all CPUs)] */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "slidestream/error.h"
#include "slidestream/mil.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* CPU seconds of the process (all threads): less sensitive than wall time to other load */
static double cpu(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

static double peak_mib(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss / 1024.0;
}

int main(int argc, char **argv)
{
    ss_mil_arch_t arch;
    if (argc < 2 || ss_mil_arch_parse(argv[1], &arch)) {
        ss_error_report("usage: mil_bench ARCH [CELLS] [DIM] [RUNS] [THREADS]");
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 100000, dim = argc > 3 ? atoi(argv[3]) : 512;
    int runs = argc > 4 ? atoi(argv[4]) : 2, threads = argc > 5 ? atoi(argv[5]) : 0;
    if (n < 1 || dim < 1 || runs < 1) {
        fprintf(stderr, "mil_bench: cells, dim and runs must be positive\n");
        return 2;
    }
    ss_nn_set_threads(threads);
    ss_mil_config_t c = ss_mil_config_default(arch, dim);
    ss_mil_t *m = ss_mil_new(&c);
    float *x = malloc((size_t)n * dim * sizeof *x), *att = malloc((size_t)n * sizeof *att);
    if (!m || !x || !att) {
        ss_error_report("cannot make the model or the bag");
        return 1;
    }
    ss_rng_t rng;
    ss_rng_seed(&rng, 1);
    for (size_t i = 0; i < (size_t)n * dim; i++)
        x[i] = ss_rng_uniform(&rng) * 2.0f - 1.0f;
    double base = peak_mib();
    printf("%s: %d cells x %d dims (bag %.0f MiB), %d threads; peak RSS before the forward "
           "%.0f MiB\n",
           argv[1], n, dim, (double)n * dim * 4 / 1048576.0, ss_nn_threads(), base);
    for (int r = 0; r < runs; r++) {
        float lg[SS_MIL_CLASSES];
        double t0 = now(), c0 = cpu();
        if (ss_mil_forward(m, x, n, 0, lg, att)) {
            ss_error_report("forward failed");
            return 1;
        }
        double wall = now() - t0, used = cpu() - c0;
        printf("  eval forward %d: %.3f s wall, %.3f CPU s, logits (%.5f, %.5f), peak RSS %.0f MiB "
               "(+%.0f MiB)\n",
               r, wall, used, lg[0], lg[1], peak_mib(), peak_mib() - base);
        fflush(stdout);
    }
    free(x), free(att);
    ss_mil_destroy(&m);
    return 0;
}
