/* embed_infer_bench — bare inference throughput of a checkpoint on the NN core: batches of
 * random normalised crops through ss_resnet_forward (eval), images/s over a timed window.
 * The peer for the slide-to-cache pipeline: bench/run_embed_bench.sh divides the pipeline's
 * cells/s by this figure to report the embedding stage's efficiency.
 *   embed_infer_bench CK.h5 [batch 32] [threads 2] [seconds 10] [feature pooled|projection] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/log.h"
#include "slidestream/nn_layers.h"
#include "slidestream/nn_resnet.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: embed_infer_bench CK.h5 [batch] [threads] [seconds]\n");
        return 2;
    }
    int batch = argc > 2 ? atoi(argv[2]) : 32, threads = argc > 3 ? atoi(argv[3]) : 2;
    double seconds = argc > 4 ? atof(argv[4]) : 10;
    if (batch < 1 || threads < 1 || seconds <= 0) return 2;
    ss_nn_set_threads(threads);
    ss_resnet_t *m = ss_resnet_new_from_checkpoint(argv[1], batch, 0);
    if (!m) {
        ss_error_report(NULL);
        return 1;
    }
    int S = m->cfg.input_size;
    size_t n = (size_t)batch * 3 * S * S;
    float *x = malloc(n * sizeof *x);
    if (!x) return 1;
    uint64_t s = 88172645463325252ULL;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 4.0 - 2.0);
    }
    ss_resnet_forward(m, x, batch, 0); /* warm-up */
    double t0 = ss_now(), t;
    long images = 0;
    do {
        if (ss_resnet_forward(m, x, batch, 0)) {
            ss_error_report(NULL);
            return 1;
        }
        images += batch;
        t = ss_now();
    } while (t - t0 < seconds);
    printf("images_per_s=%.2f batch=%d threads=%d input=%d\n", images / (t - t0), batch, threads, S);
    free(x);
    ss_resnet_destroy(&m);
    return 0;
}
