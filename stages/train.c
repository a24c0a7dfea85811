/* train — encoder training from slide labels (SLAM-AGS and its baselines).
 *   slidestream train step --method M --checkpoint CK.h5 --pos DIR --neg DIR --out CK2.h5
 *       one optimiser step on every image of two folders, without augmentation (the parity
 *       check against PyTorch, and a quick way to see a method's gradients)
 * The training logic lives in lib/train (train.h); this file parses flags and reports. */
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "commands.h"
#include "slidestream/args.h"
#include "slidestream/cells.h"
#include "slidestream/error.h"
#include "slidestream/log.h"
#include "slidestream/nn_layers.h"
#include "slidestream/train.h"

/* ---- folders of images -------------------------------------------------------------------- */

typedef struct {
    char **paths;
    int n;
} file_list_t;

static void files_free(file_list_t *l)
{
    for (int i = 0; i < l->n; i++) free(l->paths[i]);
    free(l->paths);
    l->paths = NULL;
    l->n = 0;
}

static int is_image_name(const char *name)
{
    static const char *const ext[] = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"};
    const char *dot = strrchr(name, '.');
    if (!dot || name[0] == '.') return 0;
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++)
        if (!strcasecmp(dot, ext[i])) return 1;
    return 0;
}

/* The image files of dir, sorted by name (byte order, as Python's sorted()). */
static int list_images(const char *dir, const char *what, file_list_t *out)
{
    struct dirent **ents = NULL;
    int n = scandir(dir, &ents, NULL, alphasort);
    if (n < 0) return ss_error_system("train", "cannot read the %s folder %s", what, dir);
    out->paths = calloc((size_t)(n ? n : 1), sizeof(char *));
    out->n = 0;
    int rc = out->paths ? 0 : ss_error("train", "out of memory");
    for (int i = 0; i < n; i++) {
        if (!rc && is_image_name(ents[i]->d_name)) {
            size_t len = strlen(dir) + strlen(ents[i]->d_name) + 2;
            char *p = malloc(len);
            if (!p) rc = ss_error("train", "out of memory");
            else {
                snprintf(p, len, "%s/%s", dir, ents[i]->d_name);
                out->paths[out->n++] = p;
            }
        }
        free(ents[i]);
    }
    free(ents);
    if (!rc && out->n == 0)
        rc = ss_error("train", "the %s folder %s has no images (.png, .jpg, .tif, ...)", what,
                      dir);
    if (rc) files_free(out);
    return rc;
}

/* Load an image, centre-crop it to S and normalise it with the model's mean/std into x. */
static int load_centre(const ss_resnet_t *m, const char *path, float *x)
{
    uint8_t *rgb = NULL;
    int w, h, S = m->cfg.input_size;
    if (ss_image_load_rgb(path, &rgb, &w, &h)) return -1;
    int rc = 0;
    if (w < S || h < S)
        rc = ss_error("train", "%s: %dx%d px, smaller than the model's input %d px", path, w, h,
                      S);
    else {
        int S2 = S * S, ox = (w - S) / 2, oy = (h - S) / 2;
        for (int c = 0; c < 3; c++) {
            float sc = (float)(1.0 / (255.0 * m->cfg.std[c]));
            float sh = (float)(-m->cfg.mean[c] / m->cfg.std[c]);
            for (int y = 0; y < S; y++)
                for (int xx = 0; xx < S; xx++)
                    x[c * S2 + y * S + xx] = rgb[((size_t)(y + oy) * w + ox + xx) * 3 + c] * sc + sh;
        }
    }
    free(rgb);
    return rc;
}

/* ---- train step ----------------------------------------------------------------------------- */

static int cmd_step(int argc, char **argv)
{
    const char *method_name = NULL, *ckpt = NULL, *pos_dir = NULL, *neg_dir = NULL, *out = NULL;
    double lr = 1e-3, momentum = 0.9, wd = 1e-4, tau = 0.07;
    int joint = 0, chunk = 0, threads = 0;
    ss_arg_t args[] = {
        {"--method", SS_ARG_STRING, &method_name, "M", "slam-ags | pcgrad | cagrad | mgda | weaksupcon | simclr | supervised", 0, 0},
        {"--checkpoint", SS_ARG_STRING, &ckpt, "CK.h5", "the model to step from", 0, 0},
        {"--pos", SS_ARG_STRING, &pos_dir, "DIR", "images of cells from positive bags", 0, 0},
        {"--neg", SS_ARG_STRING, &neg_dir, "DIR", "images of cells from negative bags", 0, 0},
        {"--out", SS_ARG_STRING, &out, "CK2.h5", "the stepped model (every tensor of CK.h5)", 0, 0},
        {"--lr", SS_ARG_DOUBLE, &lr, "X", "learning rate, taken as given (default 1e-3)", 0, 1e3},
        {"--momentum", SS_ARG_DOUBLE, &momentum, "X", "SGD momentum (default 0.9)", 0, 1},
        {"--weight-decay", SS_ARG_DOUBLE, &wd, "X", "SGD weight decay (default 1e-4)", 0, 1},
        {"--tau", SS_ARG_DOUBLE, &tau, "X", "contrastive temperature (default 0.07)", 1e-6, 1e3},
        {"--joint", SS_ARG_FLAG, &joint, NULL, "one forward pass over all views (shared batch-norm statistics)", 0, 0},
        {"--chunk", SS_ARG_INT, &chunk, "N", "at most N images per forward pass (default: a whole view group)", 0, 1 << 20},
        {"--threads", SS_ARG_INT, &threads, "N", "compute threads (default: all cores)", 0, 1024},
        {0},
    };
    int rc = ss_args_parse(argc, argv,
                           "step --method M --checkpoint CK.h5 --pos DIR --neg DIR --out CK2.h5 "
                           "[options]\n\n"
                           "Exactly one optimiser step from fresh optimiser state on every image "
                           "of both folders (sorted by name),\nboth views the centre crop to the "
                           "checkpoint's input size, normalised with its mean/std.",
                           args, NULL, NULL);
    if (rc) return rc > 0 ? 0 : (ss_error_report(NULL), 2);
    ss_train_method_t method;
    if (ss_args_require("train step", "--method", method_name) ||
        ss_args_require("train step", "--checkpoint", ckpt) ||
        ss_args_require("train step", "--pos", pos_dir) ||
        ss_args_require("train step", "--neg", neg_dir) ||
        ss_args_require("train step", "--out", out) ||
        ss_train_method_parse(method_name, &method)) {
        ss_error_report(NULL);
        return 2;
    }
    if (threads > 0) ss_nn_set_threads(threads);
    file_list_t pos = {0}, neg = {0};
    ss_resnet_t *m = NULL;
    ss_trainer_t *t = NULL;
    float *x = NULL;
    int code = 1;
    if (list_images(pos_dir, "positive", &pos) || list_images(neg_dir, "negative", &neg)) {
        code = 2;
        goto done;
    }
    ss_train_config_t cfg = ss_train_config_default(method);
    cfg.momentum = (float)momentum;
    cfg.weight_decay = (float)wd;
    cfg.tau = (float)tau;
    cfg.joint = joint;
    cfg.chunk = chunk;
    int P = pos.n, N = neg.n;
    if (!(m = ss_resnet_new_from_checkpoint(ckpt, ss_train_max_pass(&cfg, P, N), 1))) goto done;
    if (!(t = ss_trainer_new(m, &cfg, P, N))) {
        ss_error("train", "checkpoint %s", ckpt);
        code = 2;
        goto done;
    }
    size_t img = (size_t)3 * m->cfg.input_size * m->cfg.input_size;
    x = malloc((size_t)ss_train_views(method, P, N) * img * sizeof(float));
    if (!x) {
        ss_error("train", "out of memory for %d images", P + N);
        goto done;
    }
    for (int pv = 0; pv < 2; pv++)
        for (int i = 0; i < (pv ? P : N); i++) {
            const char *path = pv ? pos.paths[i] : neg.paths[i];
            int s0 = ss_train_slot(method, P, N, pv, i, 0);
            int s1 = ss_train_slot(method, P, N, pv, i, 1);
            if (load_centre(m, path, x + (size_t)s0 * img)) {
                code = 2;
                goto done;
            }
            if (s1 >= 0) memcpy(x + (size_t)s1 * img, x + (size_t)s0 * img, img * sizeof(float));
        }
    ss_train_stats_t st;
    if (ss_trainer_step(t, x, P, N, (float)lr, &st) || ss_resnet_save(m, out)) goto done;
    printf("train step: %s on %d positive + %d negative images: loss %.6g", method_name, P, N,
           st.loss);
    if (st.loss_con == st.loss_con) printf(" (nt-xent %.6g", st.loss_con);
    if (st.loss_sim == st.loss_sim) printf(", similarity %.6g", st.loss_sim);
    if (st.loss_con == st.loss_con) printf(")");
    if (st.cosine == st.cosine)
        printf(", cos(g1, g2) %.4f%s, |g| %.4g -> %.4g", st.cosine,
               st.conflict ? " (conflict)" : "", st.norm_before, st.norm_after);
    else
        printf(", |g| %.4g", st.norm_after);
    printf("; %d forward passes (%d recomputed) -> %s\n", st.passes, st.reforwards, out);
    code = 0;
done:
    if (code) ss_error_report("train step failed");
    free(x);
    ss_trainer_destroy(&t);
    ss_resnet_destroy(&m);
    files_free(&pos);
    files_free(&neg);
    return code;
}

int ss_main_train(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "step")) return cmd_step(argc - 1, argv + 1);
    fprintf(stderr, "usage: slidestream train step --method M --checkpoint CK.h5 --pos DIR "
                    "--neg DIR --out CK2.h5 [options]\n");
    return 2;
}
