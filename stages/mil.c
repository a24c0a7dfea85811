/* mil — attention MIL aggregators on embedding caches:
 *   slidestream mil init --arch abmil|pamil|abmilx|dtfd --dim D --out M.h5 [--seed S]
 *                        [--protos K] [--heads H]
 *   slidestream mil train --arch A --cache DIR --out DIR [--epochs N] [--lr X] [--seed S]
 *                         [--val-fraction F]
 *   slidestream mil predict --model M.h5 --cache DIR --out DIR [--top-k K] [--witnesses CSV]
 *   slidestream mil summary [--out F.json] RUN_DIR...   (mean ± std over runs, e.g. seeds)
 *                           [--geojson] [--heatmaps] [--gallery K] [--slides CSV] [--cells CSV]
 * The models, training and prediction live in lib/mil (mil.h, mil_train.h, mil_predict.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"
#include "slidestream/args.h"
#include "slidestream/error.h"
#include "slidestream/log.h"
#include "slidestream/mil.h"
#include "slidestream/mil_eval.h"
#include "slidestream/mil_predict.h"
#include "slidestream/mil_results.h"
#include "slidestream/mil_train.h"
#include "slidestream/nn_layers.h"

static int cmd_init(int argc, char **argv)
{
    const char *arch_name = NULL, *out = NULL;
    int dim = 0, protos = 10, heads = 8, groups = 4, proto_pred = 0, inst_pred = 0;
    int64_t seed = 1;
    ss_arg_t args[] = {
        {"--arch", SS_ARG_STRING, &arch_name, "A", "abmil | pamil | abmilx | dtfd", 0, 0},
        {"--dim", SS_ARG_INT, &dim, "D", "embedding width of the caches", 1, 1 << 20},
        {"--out", SS_ARG_STRING, &out, "M.h5", "model checkpoint to write", 0, 0},
        {"--seed", SS_ARG_I64, &seed, "S", "initialisation seed (default 1)", 0, 0},
        {"--protos", SS_ARG_INT, &protos, "K", "PAMIL prototypes (default 10)", 1, 1 << 20},
        {"--heads", SS_ARG_INT, &heads, "H", "ABMILX heads (default 8)", 1, 4096},
        {"--groups", SS_ARG_INT, &groups, "M", "DTFD pseudo-bags (default 4)", 1, 1 << 20},
        {"--proto-pred", SS_ARG_FLAG, &proto_pred, NULL, "PAMIL: the prototype branch", 0, 0},
        {"--inst-pred", SS_ARG_FLAG, &inst_pred, NULL, "PAMIL: the instance loss", 0, 0},
        {0},
    };
    int rc = ss_args_parse(argc, argv, "--arch A --dim D --out M.h5 [options]", args, NULL,
                           NULL);
    if (rc) return rc > 0 ? 0 : (ss_error_report(NULL), 2);
    ss_mil_arch_t arch;
    if (ss_args_require("mil init", "--arch", arch_name) ||
        ss_args_require("mil init", "--out", out) || ss_mil_arch_parse(arch_name, &arch)) {
        ss_error_report(NULL);
        return 2;
    }
    if (dim < 1) {
        fprintf(stderr, "slidestream: mil init: --dim D is needed (the caches' feature width)\n");
        return 2;
    }
    ss_mil_config_t c = ss_mil_config_default(arch, dim);
    c.seed = (uint64_t)seed;
    c.protos = protos, c.heads = heads, c.groups = groups;
    c.proto_pred = proto_pred, c.inst_pred = inst_pred;
    ss_mil_t *m = ss_mil_new(&c);
    if (!m || ss_mil_save(m, out)) {
        ss_error_report("mil init failed");
        ss_mil_destroy(&m);
        return 1;
    }
    printf("%s: %s on %d-wide embeddings, %zu parameters\n", out, arch_name, dim, m->num_params);
    ss_mil_destroy(&m);
    return 0;
}

static int cmd_train(int argc, char **argv)
{
    const char *arch_name = NULL, *cache = NULL, *out = NULL, *init = NULL;
    int epochs = -1, patience = -1, quiet = 0, threads = 0;
    int protos = 10, heads = 8, groups = 4;
    int64_t seed = 1;
    double lr = 0, wd = -1, val = -1;
    ss_arg_t args[] = {
        {"--arch", SS_ARG_STRING, &arch_name, "A", "abmil | pamil | abmilx | dtfd", 0, 0},
        {"--cache", SS_ARG_STRING, &cache, "DIR", "embedding caches: DIR/<slide_id>.h5, one labelled bag each", 0, 0},
        {"--out", SS_ARG_STRING, &out, "DIR", "model.h5, train.csv, train.svg", 0, 0},
        {"--init", SS_ARG_STRING, &init, "M.h5", "start from this model (from `mil init`) instead of a fresh one", 0, 0},
        {"--epochs", SS_ARG_INT, &epochs, "N", "epochs (default 100)", 1, 1000000},
        {"--lr", SS_ARG_DOUBLE, &lr, "X", "learning rate (default per architecture)", 1e-12, 10},
        {"--weight-decay", SS_ARG_DOUBLE, &wd, "X", "weight decay (default per architecture)", 0, 10},
        {"--seed", SS_ARG_I64, &seed, "S", "initialisation, validation split and bag order (default 1)", 0, 0},
        {"--val-fraction", SS_ARG_DOUBLE, &val, "F", "training bags held out for validation and model selection (default 0.2)", 0, 0.95},
        {"--patience", SS_ARG_INT, &patience, "N", "stop after N epochs without a better validation loss (default 20; 0 = never)", 0, 1000000},
        {"--protos", SS_ARG_INT, &protos, "K", "PAMIL prototypes (default 10)", 1, 1 << 20},
        {"--heads", SS_ARG_INT, &heads, "H", "ABMILX heads (default 8)", 1, 4096},
        {"--groups", SS_ARG_INT, &groups, "M", "DTFD pseudo-bags (default 4)", 1, 1 << 20},
        {"--threads", SS_ARG_INT, &threads, "N", "compute threads (default: all cores)", 0, 1024},
        {"--quiet", SS_ARG_FLAG, &quiet, NULL, "no progress lines", 0, 0},
        {0},
    };
    int rc = ss_args_parse(argc, argv,
                           "--arch A --cache DIR --out DIR [options]\n\n"
                           "Trains an aggregator on the labelled bags of a cache folder (split "
                           "\"test\" left out), selecting the epoch with the lowest\nvalidation "
                           "loss on a stratified held-out fraction of them.",
                           args, NULL, NULL);
    if (rc) return rc > 0 ? 0 : (ss_error_report(NULL), 2);
    ss_mil_arch_t arch;
    if (ss_args_require("mil train", "--arch", arch_name) ||
        ss_args_require("mil train", "--cache", cache) ||
        ss_args_require("mil train", "--out", out) || ss_mil_arch_parse(arch_name, &arch)) {
        ss_error_report(NULL);
        return 2;
    }
    ss_log_set_quiet(quiet);
    if (threads > 0) ss_nn_set_threads(threads);
    ss_mil_bags_t bags;
    if (ss_mil_bags_open(cache, &bags)) {
        ss_error_report("mil train failed");
        return 1;
    }
    ss_mil_t *m = NULL;
    if (init) {
        m = ss_mil_load(init);
        if (m && m->cfg.arch != arch) {
            ss_error("mil", "%s is a %s model, not --arch %s", init, ss_mil_arch_name(m->cfg.arch),
                     arch_name);
            ss_mil_destroy(&m);
        }
    } else {
        ss_mil_config_t c = ss_mil_config_default(arch, bags.dim);
        c.seed = (uint64_t)seed;
        c.protos = protos, c.heads = heads, c.groups = groups;
        m = ss_mil_new(&c);
    }
    ss_mil_train_config_t tc = ss_mil_train_config_default(arch);
    tc.seed = (uint64_t)seed;
    tc.quiet = quiet;
    if (epochs > 0) tc.epochs = epochs;
    if (lr > 0) tc.lr = lr;
    if (wd >= 0) tc.weight_decay = wd;
    if (val >= 0) tc.val_fraction = val;
    if (patience >= 0) tc.patience = patience;
    int code = 0;
    if (!m || ss_mil_fit(m, &bags, &tc, out)) {
        ss_error_report("mil train failed");
        code = 1;
    } else {
        printf("mil train: %s/model.h5, %s/train.csv, %s/train.svg\n", out, out, out);
    }
    ss_mil_destroy(&m);
    ss_mil_bags_free(&bags);
    return code;
}

/* Per-bag result files of `mil predict` (mil_results.h), from its bag_done callback. */
typedef struct {
    const char *out;
    int geojson, heatmaps, gallery;
    ss_mil_sources_t *src;
} results_t;

static int results_bag(const ss_mil_bag_t *b, const float *att, const int64_t *rank,
                       double probability, void *arg)
{
    (void)probability;
    results_t *R = arg;
    char p[4096];
    if (R->geojson) {
        snprintf(p, sizeof p, "%s/geojson/%s.geojson", R->out, b->id);
        if (ss_mil_write_geojson(b, att, rank, p)) return -1;
    }
    if ((R->heatmaps || R->gallery) && !ss_mil_sources_find(R->src, b->id)) {
        ss_warn("mil predict: bag %s is neither in --slides nor in --cells: no heatmap or gallery",
                b->id);
        return 0;
    }
    if (R->heatmaps) {
        snprintf(p, sizeof p, "%s/heatmaps/%s.png", R->out, b->id);
        if (ss_mil_write_heatmap(b, att, rank, R->src, 0, p)) return -1;
    }
    if (R->gallery) {
        snprintf(p, sizeof p, "%s/gallery/%s.png", R->out, b->id);
        if (ss_mil_write_gallery(b, att, rank, R->src, R->gallery, p)) return -1;
    }
    return 0;
}

static int cmd_predict(int argc, char **argv)
{
    const char *model = NULL, *cache = NULL, *out = NULL, *wit = NULL;
    const char *slides = NULL, *cells = NULL, *split = NULL;
    int64_t top_k = 400;
    int quiet = 0, threads = 0;
    results_t R = {0};
    ss_arg_t args[] = {
        {"--model", SS_ARG_STRING, &model, "M.h5", "aggregator checkpoint", 0, 0},
        {"--cache", SS_ARG_STRING, &cache, "DIR", "embedding caches to predict", 0, 0},
        {"--out", SS_ARG_STRING, &out, "DIR", "bags.csv, instances.csv, metrics.json", 0, 0},
        {"--split", SS_ARG_STRING, &split, "S", "only the bags of this split (e.g. test: the slides training left out)", 0, 0},
        {"--top-k", SS_ARG_I64, &top_k, "K", "K of Recall@K (default 400)", 1, 1e12},
        {"--witnesses", SS_ARG_STRING, &wit, "CSV", "the cells' witness labels (a bag_cells.csv from `bags simulate`): Recall@K", 0, 0},
        {"--geojson", SS_ARG_FLAG, &R.geojson, NULL, "DIR/geojson/<slide_id>.geojson: the cells with their attention (QuPath)", 0, 0},
        {"--heatmaps", SS_ARG_FLAG, &R.heatmaps, NULL, "DIR/heatmaps/<slide_id>.png: attention rank over the slide thumbnail (or the cells in rank order)", 0, 0},
        {"--gallery", SS_ARG_INT, &R.gallery, "K", "DIR/gallery/<slide_id>.png: the K most attended cells", 1, 100000},
        {"--slides", SS_ARG_STRING, &slides, "CSV", "manifest (slide_id,path,label) of the slides, for --heatmaps and --gallery", 0, 0},
        {"--cells", SS_ARG_STRING, &cells, "CSV", "bag_cells.csv (bag_id,cell_id,path,...) of folder bags, for --heatmaps and --gallery", 0, 0},
        {"--threads", SS_ARG_INT, &threads, "N", "compute threads (default: all cores)", 0, 1024},
        {"--quiet", SS_ARG_FLAG, &quiet, NULL, "no progress lines", 0, 0},
        {0},
    };
    int rc = ss_args_parse(argc, argv, "--model M.h5 --cache DIR --out DIR [options]",
                           args, NULL, NULL);
    if (rc) return rc > 0 ? 0 : (ss_error_report(NULL), 2);
    if (ss_args_require("mil predict", "--model", model) ||
        ss_args_require("mil predict", "--cache", cache) ||
        ss_args_require("mil predict", "--out", out)) {
        ss_error_report(NULL);
        return 2;
    }
    if ((R.heatmaps || R.gallery) && !slides && !cells) {
        fprintf(stderr, "slidestream: mil predict: --heatmaps and --gallery need the bags' pixels: "
                        "--slides MANIFEST (slides) and/or --cells bag_cells.csv (cell images)\n");
        return 2;
    }
    ss_log_set_quiet(quiet);
    if (threads > 0) ss_nn_set_threads(threads);
    ss_mil_bags_t bags = {0};
    ss_mil_witnesses_t *w = NULL;
    ss_mil_t *m = ss_mil_load(model);
    int code = 1;
    if (!m || ss_mil_bags_open(cache, &bags) || (wit && !(w = ss_mil_witnesses_load(wit))))
        goto done;
    if (split && !ss_mil_bags_keep_split(&bags, split)) {
        ss_error("mil", "%s holds no bags of split '%s'", cache, split);
        goto done;
    }
    if ((slides || cells) && !(R.src = ss_mil_sources_new(slides, cells))) goto done;
    R.out = out;
    char sub[4096];
    mkdir(out, 0777);
    for (int i = 0; i < 3; i++) {
        const char *name[3] = {"geojson", "heatmaps", "gallery"};
        int on[3] = {R.geojson, R.heatmaps, R.gallery};
        snprintf(sub, sizeof sub, "%s/%s", out, name[i]);
        if (on[i] && mkdir(sub, 0777) && errno != EEXIST) {
            ss_error_system("mil", "cannot create %s", sub);
            goto done;
        }
    }
    ss_mil_predict_config_t pc = {.top_k = top_k, .witnesses = w, .quiet = quiet};
    if (R.geojson || R.heatmaps || R.gallery) pc.bag_done = results_bag, pc.arg = &R;
    if (ss_mil_predict(m, &bags, &pc, out)) goto done;
    printf("mil predict: %zu bags -> %s/bags.csv, %s/instances.csv%s%s%s\n", bags.n, out, out,
           R.geojson ? ", geojson/" : "", R.heatmaps ? ", heatmaps/" : "",
           R.gallery ? ", gallery/" : "");
    code = 0;
done:
    if (code) ss_error_report("mil predict failed");
    ss_mil_witnesses_free(&w);
    ss_mil_sources_free(&R.src);
    ss_mil_bags_free(&bags);
    ss_mil_destroy(&m);
    return code;
}

static int cmd_summary(int argc, char **argv)
{
    const char *out = NULL;
    int npos = 0;
    char **pos = NULL;
    ss_arg_t args[] = {
        {"--out", SS_ARG_STRING, &out, "F.json", "also write the summary as JSON", 0, 0},
        {0},
    };
    int rc = ss_args_parse(argc, argv,
                           "[--out F.json] RUN_DIR...\n\n"
                           "Mean ± standard deviation over runs (e.g. seeds) of the metrics in "
                           "each RUN_DIR/metrics.json (`mil predict`).",
                           args, &npos, &pos);
    if (rc) return rc > 0 ? 0 : (ss_error_report(NULL), 2);
    if (npos < 1) {
        fprintf(stderr, "slidestream: mil summary: give the run folders of `mil predict`\n");
        free(pos);
        return 2;
    }
    rc = ss_mil_summarize((const char *const *)pos, npos, stdout, out);
    free(pos);
    if (rc) {
        ss_error_report("mil summary failed");
        return 1;
    }
    return 0;
}

int ss_main_mil(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "summary")) return argv[1] = "mil summary", cmd_summary(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "init")) return argv[1] = "mil init", cmd_init(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "train")) return argv[1] = "mil train", cmd_train(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "predict")) return argv[1] = "mil predict", cmd_predict(argc - 1, argv + 1);
    fprintf(stderr, "usage: slidestream mil init|train|predict|summary [options] (see slidestream mil "
                    "<mode> --help)\n");
    return 2;
}
