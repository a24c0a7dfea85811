/* How long a grid would take here: a few training and inference passes of the configured
 * encoder are timed, and the grid's image counts scale them. Pretraining dominates; the
 * aggregator's share is small and is left out (the estimate says so). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "slidestream/log.h"
#include "slidestream/nn_resnet.h"
#include "slidestream/study.h"
#include "slidestream/train.h"

#define CAL_BATCH 8

double ss_study_estimate(const ss_study_config_t *c, FILE *log)
{
    ss_resnet_config_t rc = ss_resnet_config_default(18);
    rc.width_multiplier = c->width;
    rc.input_size = c->size;
    rc.proj_hidden = rc.proj_out = c->proj;
    ss_resnet_t *m = ss_resnet_new(&rc, CAL_BATCH, 1);
    size_t per = (size_t)3 * c->size * c->size;
    float *x = malloc(CAL_BATCH * per * sizeof *x);
    float *dp = calloc((size_t)CAL_BATCH * (size_t)c->proj, sizeof *dp);
    if (!m || !x || !dp) {
        ss_resnet_destroy(&m);
        free(x);
        free(dp);
        return NAN;
    }
    for (size_t i = 0; i < CAL_BATCH * per; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1;
    double t_train = INFINITY, t_eval = INFINITY;
    for (int rep = 0; rep < 3; rep++) { /* the best of three: the machine is shared */
        double t = ss_now();
        ss_resnet_zero_grad(m);
        if (ss_resnet_forward(m, x, CAL_BATCH, 1) || ss_resnet_backward(m, NULL, NULL, dp)) break;
        t_train = fmin(t_train, (ss_now() - t) / CAL_BATCH);
        t = ss_now();
        if (ss_resnet_forward(m, x, CAL_BATCH, 0)) break;
        t_eval = fmin(t_eval, (ss_now() - t) / CAL_BATCH);
    }
    ss_resnet_destroy(&m);
    free(x);
    free(dp);
    if (!isfinite(t_train) || !isfinite(t_eval)) return NAN;
    double train_cells = (double)c->train_bags * c->bag_size;
    double all_cells = (double)(c->train_bags + c->test_bags) * c->bag_size;
    double total = 0;
    for (int i = 0; i < c->n_methods; i++) {
        ss_train_method_t mt;
        ss_train_method_parse(c->methods[i], &mt);
        /* two views a cell; the two-task methods run each pass again with activations */
        double passes = 2.0 * (ss_train_method_two_task(mt) ? 1.5 : 1.0);
        double run = c->epochs * train_cells * passes * t_train + all_cells * t_eval;
        total += run * c->n_rates * c->seeds;
    }
    if (log)
        fprintf(log,
                "estimate: ResNet-18 width %g at %d px here: %.1f ms per image per training pass, "
                "%.1f ms per image embedded;\n  %d runs x %d epochs over %.0f training cells: "
                "about %.1f hours (%.0f days), aggregator training not included\n",
                c->width, c->size, 1e3 * t_train, 1e3 * t_eval,
                c->n_methods * c->n_rates * c->seeds, c->epochs, train_cells, total / 3600,
                total / 86400);
    return total;
}
