/* Thread control of the NN core: our OpenMP pool does all the threading (ss_sgemm splits each
 * product over it), OpenBLAS runs single-threaded so the two pools never compete for cores. */
#include "slidestream/nn_layers.h"

#include <cblas.h>
#include <omp.h>
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
