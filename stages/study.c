/* study — the paper's witness-rate study in one command:
 *   slidestream study --cells DIR --out DIR [--normal CODES] [--profile quick|paper] [options]
 * Pretraining methods × witness rates × seeds on one labelled cell folder (lib/study), with the
 * tables, Figure 1 and a report at the end. SIGINT/SIGTERM stop it at the next step boundary;
 * the same command continues it. --check only checks that the folder fills the grid;
 * --estimate prints how long the grid would take here. A stopped study's report covers the
 * runs finished so far. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "slidestream/args.h"
#include "slidestream/error.h"
#include "slidestream/log.h"
#include "slidestream/nn_layers.h"
#include "slidestream/study.h"

static volatile int stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

int ss_main_study(int argc, char **argv)
{
    const char *cells = NULL, *out = NULL, *normal = NULL, *profile = "quick";
    const char *methods = NULL, *rates = NULL, *arch = NULL;
    int seeds = 0, bag_size = 0, train_bags = 0, test_bags = 0, epochs = 0, warmup = -1;
    int batch = 0, size = 0, mil_epochs = 0, top_k = 0, threads = 0, quiet = 0, by_source = 0;
    int no_source = 0, check = 0, estimate = 0, max_runs = 0;
    double lr = 0, width = 0, mil_lr = 0;
    ss_arg_t args[] = {
        {"--cells", SS_ARG_STRING, &cells, "DIR", "labelled cell folder DIR/<class>/*.png (e.g. from `slidestream cells from-labels` or `synth cells`)", 0, 0},
        {"--normal", SS_ARG_STRING, &normal, "CODES", "the normal class code(s), comma list; every other class is abnormal (required)", 0, 0},
        {"--out", SS_ARG_STRING, &out, "DIR", "the study folder (created; resumed when it holds this study)", 0, 0},
        {"--profile", SS_ARG_STRING, &profile, "NAME", "quick (default: all methods and rates, one seed, scaled down) or paper", 0, 0},
        {"--methods", SS_ARG_STRING, &methods, "LIST", "pretraining methods (default supervised,simclr,weaksupcon,pcgrad,slam-ags)", 0, 0},
        {"--rates", SS_ARG_STRING, &rates, "LIST", "witness rates, e.g. 10%,5%,1%,0.5% (the default)", 0, 0},
        {"--seeds", SS_ARG_INT, &seeds, "N", "seeds 1..N per cell of the grid", 1, 1000},
        {"--bag-size", SS_ARG_INT, &bag_size, "B", "cells per bag", 2, 10000000},
        {"--train-bags", SS_ARG_INT, &train_bags, "N", "training bags per (rate, seed), even", 4, 100000},
        {"--test-bags", SS_ARG_INT, &test_bags, "N", "test bags per (rate, seed), even", 2, 100000},
        {"--by-source", SS_ARG_FLAG, &by_source, NULL, "require train and test from disjoint source images (default: whenever the folder's cells.csv records them)", 0, 0},
        {"--no-by-source", SS_ARG_FLAG, &no_source, NULL, "draw train and test from disjoint cells only, even when sources are recorded", 0, 0},
        {"--epochs", SS_ARG_INT, &epochs, "N", "pretraining epochs", 1, 100000},
        {"--warmup", SS_ARG_INT, &warmup, "N", "pretraining warm-up epochs", 0, 100000},
        {"--batch", SS_ARG_INT, &batch, "B", "pretraining cells per step", 4, 1 << 20},
        {"--lr", SS_ARG_DOUBLE, &lr, "X", "pretraining base learning rate", 1e-12, 1e3},
        {"--size", SS_ARG_INT, &size, "PX", "encoder input in pixels (cells are centre-cut to it)", 32, 4096},
        {"--width", SS_ARG_DOUBLE, &width, "M", "ResNet-18 width multiplier", 0.01, 4},
        {"--arch", SS_ARG_STRING, &arch, "A", "aggregator: pamil (default), abmil, abmilx, dtfd", 0, 0},
        {"--mil-epochs", SS_ARG_INT, &mil_epochs, "N", "aggregator epochs (early stopping on validation)", 1, 100000},
        {"--mil-lr", SS_ARG_DOUBLE, &mil_lr, "X", "aggregator learning rate (default: the architecture's)", 1e-12, 1e3},
        {"--top-k", SS_ARG_INT, &top_k, "K", "K of Recall@K", 1, 100000000},
        {"--threads", SS_ARG_INT, &threads, "N", "compute threads (default: all cores)", 0, 1024},
        {"--max-runs", SS_ARG_INT, &max_runs, "N", "stop after N runs of this session, as on Ctrl-C (0 = no limit)", 0, 1000000},
        {"--check", SS_ARG_FLAG, &check, NULL, "only check that the cell folder fills the grid", 0, 0},
        {"--estimate", SS_ARG_FLAG, &estimate, NULL, "only print how long the grid would take on this machine", 0, 0},
        {"--quiet", SS_ARG_FLAG, &quiet, NULL, "no progress lines", 0, 0},
        {0},
    };
    int rc = ss_args_parse(argc, argv,
                           "--cells DIR --normal CODES --out DIR [--profile quick|paper] [options]\n\n"
                           "The witness-rate study of SLAM-AGS (methods x witness rates x seeds): "
                           "simulated bags from the cell folder,\npretraining of each method from "
                           "bag labels, embeddings, an aggregator per run, and the paper's "
                           "tables\n(bag F1, Recall@K: mean ± std over seeds), Figure 1 and "
                           "report.md in --out. Flags override the profile.\nStopped (Ctrl-C, "
                           "SIGTERM), the same command continues without redoing finished runs.",
                           args, NULL, NULL);
    if (rc) return rc > 0 ? 0 : (ss_error_report(NULL), 2);
    ss_study_config_t c;
    if (ss_study_profile(profile, &c) || (methods && ss_study_set_methods(&c, methods)) ||
        (rates && ss_study_set_rates(&c, rates))) {
        ss_error_report(NULL);
        return 2;
    }
    if (seeds) c.seeds = seeds;
    if (bag_size) c.bag_size = bag_size;
    if (train_bags) c.train_bags = train_bags;
    if (test_bags) c.test_bags = test_bags;
    if (epochs) c.epochs = epochs;
    if (warmup >= 0) c.warmup = warmup;
    if (c.warmup > c.epochs) c.warmup = c.epochs > 1 ? 1 : 0;
    if (batch) c.batch = batch;
    if (lr > 0) c.lr = lr;
    if (size) c.size = size;
    if (width > 0) c.width = width;
    if (arch) snprintf(c.arch, sizeof c.arch, "%s", arch);
    if (mil_epochs) c.mil_epochs = mil_epochs;
    if (mil_lr > 0) c.mil_lr = mil_lr;
    if (top_k) c.top_k = top_k;
    if (by_source && no_source) {
        fprintf(stderr, "slidestream: study: --by-source and --no-by-source exclude each other\n");
        return 2;
    }
    c.by_source = by_source ? 1 : no_source ? 0 : -1;
    c.threads = threads;
    c.max_runs = max_runs;
    c.quiet = quiet;
    ss_log_set_quiet(quiet);
    if (threads > 0) ss_nn_set_threads(threads);

    if (estimate) {
        double s = ss_study_estimate(&c, stdout);
        if (!(s >= 0)) {
            ss_error_report("study: the estimate failed");
            return 1;
        }
        return 0;
    }
    if (!cells) {
        fprintf(stderr, "slidestream: study: --cells DIR is needed (see --help)\n");
        return 2;
    }
    if (ss_args_require("study", "--out", out) || ss_args_require("study", "--normal", normal)) {
        ss_error_report(NULL);
        return 2;
    }
    if (check) {
        if (ss_study_check(&c, cells, normal)) {
            ss_error_report(NULL);
            return 1;
        }
        printf("study: %s fills the grid (%d methods x %d rates x %d seeds)\n", cells, c.n_methods,
               c.n_rates, c.seeds);
        return 0;
    }
    if (!strcmp(profile, "paper") && !quiet) { /* say up front what the paper's grid costs here */
        printf("study: the paper profile on this machine — ");
        fflush(stdout);
        ss_study_estimate(&c, stdout);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    double t0 = ss_now();
    int r = ss_study_run(&c, cells, normal, out, &stop_flag);
    if (r < 0) {
        ss_error_report(NULL);
        return 1;
    }
    if (!quiet)
        printf("study: %s in %.1f min: %s/report.md, %s/table-f1.md, %s/table-recall.md, "
               "%s/figure-1.svg\n",
               r ? "stopped" : "finished", (ss_now() - t0) / 60, out, out, out, out);
    return 0;
}
