/* Thread control of the NN core: our OpenMP pool does all the threading (ss_sgemm splits each
 * product over it), OpenBLAS runs single-threaded so the two pools never compete for cores. */
#include "slidestream/log.h"
#include "slidestream/nn_layers.h"
#include "nn_internal.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void ss_nn_set_threads(int n)
{
    if (n <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 ? (int)cpus : 1;
    }
    openblas_set_num_threads(1);
    omp_set_num_threads(n);
}

int ss_nn_threads(void)
{
    return omp_get_max_threads();
}

static int own_kernels = -1;

void ss_nn_set_own_kernels(int on)
{
    own_kernels = on < 0 ? -1 : on != 0;
}

int ss_nn_own_kernels(void)
{
    if (own_kernels >= 0)
        return own_kernels;
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
    return 1;
#else
    return 0;
#endif
}

int ss_nn_blas_avx512(void)
{
    static const char *const avx512[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
    const char *core = openblas_get_corename();
    for (size_t i = 0; core && i < sizeof avx512 / sizeof *avx512; i++)
        if (strcmp(core, avx512[i]) == 0)
            return 1;
    return 0;
}

void ss_nn_check_blas(void)
{
    static int checked;
    int first;
#pragma omp atomic capture
    first = checked++;
    if (first)
        return;
    const char *forced = getenv("OPENBLAS_CORETYPE");
    const char *core = openblas_get_corename();
    if (!forced || !*forced || !core)
        return;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    /* AVX-512 CPU, forced onto a kernel without AVX-512 */
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && !ss_nn_blas_avx512())
        ss_warn("nn: OPENBLAS_CORETYPE=%s makes OpenBLAS use its %s kernel on this AVX-512 CPU: "
                "sgemm runs at about half speed (unsetting it lets OpenBLAS pick the CPU's own; "
                "where it was set because that kernel is unreliable, keep it: docs/nn-core.md)",
                forced, core);
#endif
}
