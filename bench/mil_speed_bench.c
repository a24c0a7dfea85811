/* mil_speed_bench — speed of the MIL aggregators (lib/mil) on their default configurations: training
 * epochs/s and inference bags/s on bags of `cells` cells, and one eval forward on one large bag
 * (seconds and the process's peak RSS). bench/run_mil_bench.sh runs it beside
 * bench/mil_speed_bench_torch.py (same output lines) and prints the comparison table. Figures only,
 * not a test.
 *
 * Bags: `bags` bags of (cells, dim) features |normal(0.3, 0.8)|, seed 2, labels alternating
 * 0/1. An epoch = one optimiser step per bag, in order: zero_grad, train forward, the
 * architecture's whole loss and backward, then the architecture's training optimiser
 * (ss_mil_train_config_default: Adam, AdamW for ABMILX; its lr and weight decay). DTFD's
 * gradient clipping (`mil train` clips module by module) is left out on both sides.
 * Inference = eval forward (logits and attention) of every bag.
 *
 * usage: mil_speed_bench ARCH [--dim 512] [--cells 1000] [--bags 8] [--epochs 3] [--threads N]
 *        mil_speed_bench ARCH --large CELLS [--dim 512] [--threads N]
 * Output (a figure is the best of the timed passes after one warm-up pass; mean beside it):
 *   train ARCH CELLS BAGS EPOCHS_PER_S MEAN_EPOCHS_PER_S LOSS
 *   infer ARCH CELLS BAGS BAGS_PER_S MEAN_BAGS_PER_S
 *   large ARCH CELLS SECONDS RSS_MB BASE_RSS_MB P1
 * RSS_MB: peak resident set of the process (getrusage), BASE_RSS_MB: before the forward (model
 * and bag), P1: softmax class 1 of the logits (a sanity figure). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "slidestream/error.h"
#include "slidestream/log.h"
#include "slidestream/mil.h"
#include "slidestream/mil_train.h"
#include "slidestream/nn_layers.h"
#include "slidestream/nn_optim.h"

static double peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0; /* KB on Linux */
}

static void die(const char *what)
{
    ss_error_report(what);
    exit(1);
}

/* (n, dim) features as the bench's bags are made (both sides make them the same way in spirit;
 * the values do not change the work done). */
static float *make_bag(ss_rng_t *r, int n, int dim)
{
    float *x = malloc((size_t)n * dim * sizeof *x);
    if (!x) die("out of memory for a bag");
    for (size_t i = 0; i < (size_t)n * dim; i++) x[i] = fabsf(0.3f + 0.8f * ss_rng_normal(r));
    return x;
}

static double p1(const float *lg)
{
    double mx = lg[0] > lg[1] ? lg[0] : lg[1];
    return exp(lg[1] - mx) / (exp(lg[0] - mx) + exp(lg[1] - mx));
}

static int large(ss_mil_t *m, int n, int dim)
{
    ss_rng_t r;
    ss_rng_seed(&r, 2);
    float *x = make_bag(&r, n, dim), *att = malloc((size_t)n * sizeof *att), lg[2];
    if (!att) die("out of memory");
    double base = peak_rss_mb(), t = ss_now();
    if (ss_mil_forward(m, x, n, 0, lg, att)) die("forward");
    t = ss_now() - t;
    printf("large %s %d %.3f %.0f %.0f %.6f\n", ss_mil_arch_name(m->cfg.arch), n, t, peak_rss_mb(),
           base, p1(lg));
    free(x), free(att);
    return 0;
}

int main(int argc, char **argv)
{
    ss_mil_arch_t arch;
    if (argc < 2 || ss_mil_arch_parse(argv[1], &arch)) {
        ss_error_report("usage: mil_speed_bench ARCH [--dim D] [--cells N] [--bags B] [--epochs E] "
                        "[--threads T] | ARCH --large N");
        return 2;
    }
    int dim = 512, cells = 1000, nbags = 8, epochs = 3, threads = 0, big = 0;
    for (int i = 2; i + 1 < argc; i += 2) {
        int v = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--dim")) dim = v;
        else if (!strcmp(argv[i], "--cells")) cells = v;
        else if (!strcmp(argv[i], "--bags")) nbags = v;
        else if (!strcmp(argv[i], "--epochs")) epochs = v;
        else if (!strcmp(argv[i], "--threads")) threads = v;
        else if (!strcmp(argv[i], "--large")) big = v;
        else {
            fprintf(stderr, "mil_speed_bench: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (dim < 1 || cells < 1 || nbags < 1 || epochs < 1 || big < 0) {
        fprintf(stderr, "mil_speed_bench: sizes must be positive\n");
        return 2;
    }
    ss_nn_set_threads(threads);
    ss_mil_config_t c = ss_mil_config_default(arch, dim);
    ss_mil_t *m = ss_mil_new(&c);
    if (!m) die("cannot build the model");
    if (big) {
        int rc = large(m, big, dim);
        ss_mil_destroy(&m);
        return rc;
    }

    ss_rng_t r;
    ss_rng_seed(&r, 2);
    float **x = malloc((size_t)nbags * sizeof *x), *att = malloc((size_t)cells * sizeof *att);
    if (!x || !att) die("out of memory");
    for (int b = 0; b < nbags; b++) x[b] = make_bag(&r, cells, dim);
    ss_mil_train_config_t tc = ss_mil_train_config_default(arch);
    ss_optim_config_t oc =
        ss_optim_config_default(tc.adamw ? SS_OPTIM_ADAMW : SS_OPTIM_ADAM, (float)tc.lr);
    oc.weight_decay = (float)tc.weight_decay;
    ss_optim_t *opt = ss_optim_new(&oc, m->num_params);
    if (!opt) die("cannot make the optimiser");

    /* training: one warm-up epoch, then `epochs` timed ones */
    double best = 0, sum = 0, loss_sum = 0;
    for (int e = 0; e <= epochs; e++) {
        double t = ss_now();
        loss_sum = 0;
        for (int b = 0; b < nbags; b++) {
            float lg[2];
            double loss;
            ss_mil_zero_grad(m);
            if (ss_mil_forward(m, x[b], cells, 1, lg, NULL) || ss_mil_backward(m, b % 2, &loss))
                die("training step");
            ss_optim_step(opt, m->params, m->grads, opt->cfg.lr);
            loss_sum += loss;
        }
        t = ss_now() - t;
        if (e == 0) continue;
        sum += 1 / t;
        if (1 / t > best) best = 1 / t;
    }
    printf("train %s %d %d %.3f %.3f %.5f\n", argv[1], cells, nbags, best, sum / epochs,
           loss_sum / nbags);
    fflush(stdout);

    /* inference: a warm-up pass over the bags, then `epochs` timed passes */
    best = sum = 0;
    for (int e = 0; e <= epochs; e++) {
        double t = ss_now();
        for (int b = 0; b < nbags; b++) {
            float lg[2];
            if (ss_mil_forward(m, x[b], cells, 0, lg, att)) die("eval forward");
        }
        t = ss_now() - t;
        if (e == 0) continue;
        sum += nbags / t;
        if (nbags / t > best) best = nbags / t;
    }
    printf("infer %s %d %d %.2f %.2f\n", argv[1], cells, nbags, best, sum / epochs);
    for (int b = 0; b < nbags; b++) free(x[b]);
    free(x), free(att);
    ss_optim_destroy(&opt);
    ss_mil_destroy(&m);
    return 0;
}
