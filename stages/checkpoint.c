/* checkpoint — create and inspect encoder checkpoints (HDF5, PyTorch state_dict names).
 *   slidestream checkpoint init --out CK.h5 [--arch resnet18|resnet34] [--width M] [--input PX]
 *                               [--truncate layer3] [--projection HIDDEN,OUT] [--classes K]
 *                               [--seed N]
 *   slidestream checkpoint info CK.h5
 * `init` writes torchvision-initialised weights (an untrained encoder, e.g. the starting point
 * of pretraining); PyTorch weights come in through scripts/ckpt_convert.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "slidestream/args.h"
#include "slidestream/encoder_id.h"
#include "slidestream/log.h"
#include "slidestream/nn_resnet.h"

static int cmd_init(int argc, char **argv)
{
    const char *out = NULL, *arch = "resnet18", *truncate = NULL, *proj = NULL;
    double width = 1.0;
    int input = 96, if_missing = 0, classes = 0;
    int64_t seed = 0;
    ss_arg_t args[] = {
        {"--out", SS_ARG_STRING, &out, "CK.h5", "checkpoint to write", 0, 0},
        {"--arch", SS_ARG_STRING, &arch, "NAME", "resnet18 (default) or resnet34", 0, 0},
        {"--width", SS_ARG_DOUBLE, &width, "M", "width multiplier (default 1)", 0.01, 16},
        {"--input", SS_ARG_INT, &input, "PX", "input size (default 96)", 32, 4096},
        {"--truncate", SS_ARG_STRING, &truncate, "layer3", "drop layer4 (the end-to-end setting)", 0, 0},
        {"--projection", SS_ARG_STRING, &proj, "H,OUT", "add a projection head Linear(H)-ReLU-Linear(OUT)", 0, 0},
        {"--classes", SS_ARG_INT, &classes, "K", "add a classifier fc = Linear(feature, K) (e.g. 2 for supervised training)", 0, 100000},
        {"--seed", SS_ARG_I64, &seed, "N", "initialisation seed (default 0)", 0, 0},
        {"--if-missing", SS_ARG_FLAG, &if_missing, NULL, "do nothing when --out already exists (re-runs keep its identity)", 0, 0},
        {0},
    };
    int rc = ss_args_parse(argc, argv, "--out CK.h5 [options]", args, NULL, NULL);
    if (rc) return rc > 0 ? 0 : (ss_error_report(NULL), 2);
    if (ss_args_require("checkpoint init", "--out", out)) {
        ss_error_report(NULL);
        return 2;
    }
    if (if_missing && access(out, F_OK) == 0) {
        printf("%s: exists, kept\n", out);
        return 0;
    }
    int depth = !strcmp(arch, "resnet18") ? 18 : !strcmp(arch, "resnet34") ? 34 : 0;
    if (!depth) {
        fprintf(stderr, "slidestream: checkpoint init: --arch '%s': want resnet18 or resnet34\n", arch);
        return 2;
    }
    ss_resnet_config_t cfg = ss_resnet_config_default(depth);
    cfg.width_multiplier = width;
    cfg.input_size = input;
    cfg.seed = (uint64_t)seed;
    cfg.num_classes = classes;
    if (truncate) {
        if (strcmp(truncate, "layer3")) {
            fprintf(stderr, "slidestream: checkpoint init: --truncate '%s': only layer3\n", truncate);
            return 2;
        }
        cfg.truncate_layer3 = 1;
    }
    if (proj && (sscanf(proj, "%d,%d", &cfg.proj_hidden, &cfg.proj_out) != 2 ||
                 cfg.proj_hidden < 1 || cfg.proj_out < 1)) {
        fprintf(stderr, "slidestream: checkpoint init: --projection '%s': want HIDDEN,OUT\n", proj);
        return 2;
    }
    ss_resnet_t *m = ss_resnet_new(&cfg, 1, 0);
    if (!m || ss_resnet_save(m, out)) {
        ss_error_report(NULL);
        ss_resnet_destroy(&m);
        return 1;
    }
    printf("%s: %s, width %g, input %d px, %zu parameters, feature %d%s%s\n", out, arch, width,
           input, m->num_params, m->feature_dim, cfg.proj_out ? ", with projection head" : "",
           cfg.num_classes ? ", with fc classifier" : "");
    ss_resnet_destroy(&m);
    return 0;
}

static int cmd_info(int argc, char **argv)
{
    int npos = 0;
    char **pos = NULL;
    ss_arg_t args[] = {{0}};
    int rc = ss_args_parse(argc, argv, "CK.h5", args, &npos, &pos);
    if (rc) return rc > 0 ? 0 : (ss_error_report(NULL), 2);
    int status = npos ? 0 : 2;
    if (!npos) fprintf(stderr, "slidestream: checkpoint info: which checkpoint?\n");
    for (int i = 0; i < npos; i++) {
        ss_encoder_id_t pooled, projection;
        if (ss_encoder_id(pos[i], "pooled", &pooled)) {
            ss_error_report(NULL);
            status = 1;
            continue;
        }
        int has_proj = ss_encoder_id(pos[i], "projection", &projection) == 0;
        ss_error_clear();
        printf("%s\n  encoder: %s\n  sha256: %s\n  preprocessing: %s\n  pooled feature: %d\n",
               pos[i], pooled.encoder, pooled.hash, pooled.preprocessing, pooled.dim);
        if (has_proj) printf("  projection feature: %d\n", projection.dim);
    }
    free(pos);
    return status;
}

int ss_main_checkpoint(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "init")) return argv[1] = "checkpoint init", cmd_init(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "info")) return argv[1] = "checkpoint info", cmd_info(argc - 1, argv + 1);
    int help = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
    fprintf(help ? stdout : stderr,
            "usage: slidestream checkpoint init --out CK.h5 [--arch resnet18|resnet34] [--width M]\n"
            "                                   [--input PX] [--truncate layer3]\n"
            "                                   [--projection HIDDEN,OUT] [--seed N]\n"
            "       slidestream checkpoint info CK.h5...\n");
    return help ? 0 : 2;
}
