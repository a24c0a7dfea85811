/* train — encoder training from slide labels (SLAM-AGS and its baselines).
 *   slidestream train --method M (--in EP --control EP | --store F.h5) --out DIR [options]
 *       data in:    PULL --in (connects by default): CELL messages from the bag-builder
 *       control in: PULL --control (binds by default): SLIDE, COUNT, ERROR, END
 *       Collects every bag's crops into DIR/crops.h5 (the crop store) with counted
 *       completion, then trains from the store; `--store F.h5` trains from a store directly.
 *   slidestream train step --method M --checkpoint CK.h5 --pos DIR --neg DIR --out CK2.h5
 *       one optimiser step on every image of two folders, without augmentation (the parity
 *       check against PyTorch, and a quick way to see a method's gradients)
 * The training logic lives in lib/train (train.h); this file parses flags and reports. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "slidestream/args.h"
#include "slidestream/cells.h"
#include "slidestream/collector.h"
#include "slidestream/error.h"
#include "slidestream/log.h"
#include "slidestream/nn_layers.h"
#include "slidestream/nn_preprocess.h"
#include "slidestream/train.h"
#include "slidestream/train_store.h"
#include "slidestream/transport.h"

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
    else
        rc = ss_nn_normalise_centre_u8(rgb, w, h, S, m->cfg.mean, m->cfg.std, x);
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
                           "--method M --checkpoint CK.h5 --pos DIR --neg DIR --out CK2.h5 "
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

/* ---- collecting the stream into a crop store ------------------------------------------------ */

typedef struct {
    ss_stage_t *st;
    const char *path;
    ss_crop_writer_t *w;
    int crop;
} collect_t;

static int collect_item(ss_collector_bag_t *bag, const ss_msg_t *m, void *arg)
{
    collect_t *c = arg;
    int size = (int)m->h.shape[0];
    if (m->h.dtype != SS_DT_U8 || m->h.shape[1] != m->h.shape[0] || m->h.shape[2] != 3) {
        ss_stage_fault(c->st, "bag '%s': cell %llu is not a square RGB crop (%ux%ux%u)",
                       bag->name, (unsigned long long)m->h.item, m->h.shape[1], m->h.shape[0],
                       m->h.shape[2]);
        ss_collector_fail(bag, "a cell that is not a square RGB crop");
        return 0;
    }
    if (!c->w) {
        if (!(c->w = ss_crop_writer_new(c->path, size))) return -1;
        c->crop = size;
    }
    ss_crop_info_t info = {.bag_id = bag->slide, .label = bag->label >= 0 ? bag->label : m->h.label,
                           .cell_id = m->h.item, .x = m->h.x, .y = m->h.y,
                           .source = bag->path[0] ? bag->path : bag->name};
    if (ss_crop_writer_add(c->w, m->data, size, &info)) {
        if (size != c->crop) { /* a mis-configured producer: this bag cannot be used */
            ss_stage_fault(c->st, "bag '%s': %s", bag->name, ss_error_last());
            ss_error_clear();
            ss_collector_fail(bag, "crops of another size");
            return 0;
        }
        return -1; /* the store cannot be written: nothing more can be kept */
    }
    ss_stage_counts(c->st)->in++;
    return 0;
}

static int collect_complete(ss_collector_bag_t *bag, void *arg)
{
    collect_t *c = arg;
    if (!c->w && !(c->w = ss_crop_writer_new(c->path, 1))) return -1; /* an empty first bag */
    return ss_crop_writer_add_bag(c->w, bag->slide, bag->name, bag->label, bag->split);
}

/* Pull the stream into <dir>/crops.h5. 0: every bag complete; 3: some incomplete (the store
 * is kept, their bags marked split "incomplete", and training does not start); 1: stopped or
 * failed. */
static int collect(ss_stage_t *st, const char *in_ep, const char *ctl_ep, int producers,
                   double idle, int hwm, const char *store)
{
    collect_t c = {.st = st, .path = store};
    ss_collector_config_t cc = {.name = "train", .data_types = SS_COLLECT_TYPE(SS_MSG_CELL),
                                .producers = producers, .idle_timeout = idle, .one_part = 1,
                                .need_meta = 1, .arg = &c, .item = collect_item,
                                .complete = collect_complete};
    ss_sock_t *in = ss_sock_new(SS_PULL, in_ep, 0, hwm);
    ss_sock_t *ctl = in ? ss_sock_new(SS_PULL, ctl_ep, 1, 100000) : NULL;
    ss_collector_t *col = ctl ? ss_collector_new(st, &cc) : NULL;
    int code = 1;
    if (!col) {
        ss_error_report("train: cannot start");
        goto done;
    }
    ss_stage_set_unit(st, "cells", 0);
    ss_info("train: collecting cells into %s", store);
    int r = ss_collector_run(col, (ss_sock_t *[]){in, ctl}, 2);
    if (r) {
        if (r < 0) ss_error_report("train: collecting the cells failed");
        goto done;
    }
    int incomplete = 0;
    for (size_t i = 0; i < ss_collector_nbags(col); i++) {
        ss_collector_bag_t *b = ss_collector_bag(col, i);
        if (b->done) continue;
        incomplete = 1;
        if (c.w && ss_crop_writer_add_bag(c.w, b->slide, b->name, b->label, "incomplete")) {
            ss_error_report(NULL);
            goto done;
        }
    }
    ss_collector_report(col);
    if (!c.w) {
        fprintf(stderr, "slidestream train: no cells arrived; nothing to train on\n");
        goto done;
    }
    int64_t n = ss_crop_writer_count(c.w);
    if (ss_crop_writer_finish(&c.w)) {
        ss_error_report(NULL);
        goto done;
    }
    printf("train: %lld cells of %zu bags in %s%s\n", (long long)n, ss_collector_nbags(col),
           store, incomplete ? " (INCOMPLETE bags marked; not training)" : "");
    code = incomplete ? 3 : 0;
done:
    ss_crop_writer_abort(&c.w);
    ss_collector_destroy(&col);
    ss_sock_destroy(&ctl);
    ss_sock_destroy(&in);
    return code;
}

/* ---- train ---------------------------------------------------------------------------------- */

static void tick(void *st)
{
    ss_stage_tick(st);
}

int ss_main_train(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "step")) return argv[1] = "train step", cmd_step(argc - 1, argv + 1);
    const char *method_name = NULL, *in_ep = NULL, *ctl_ep = NULL, *store = NULL, *out = NULL;
    const char *ckpt = NULL;
    int epochs = 150, warmup = 10, batch = 256, size = 0, resume = 0, joint = 0, chunk = 0;
    int threads = 0, keep = 3, producers = 1, hwm = 1000;
    int64_t seed = 1, max_steps = 0;
    double lr = 1e-3, momentum = 0.9, wd = 1e-4, tau = 0.07, idle = 30;
    ss_stage_args_t sa = {0};
    ss_arg_t args[] = {
        {"--method", SS_ARG_STRING, &method_name, "M", "slam-ags | pcgrad | cagrad | mgda | weaksupcon | simclr | supervised", 0, 0},
        {"--in", SS_ARG_STRING, &in_ep, "EP", "cell crops from the bag-builder (PULL, connects)", 0, 0},
        {"--control", SS_ARG_STRING, &ctl_ep, "EP", "the bag-builder's announcements (PULL, binds)", 0, 0},
        {"--store", SS_ARG_STRING, &store, "F.h5", "train from this crop store (no stream)", 0, 0},
        {"--out", SS_ARG_STRING, &out, "DIR", "run folder: encoder.h5, epoch-NNN.h5, last.h5, steps.csv, curves.svg (and crops.h5)", 0, 0},
        {"--checkpoint", SS_ARG_STRING, &ckpt, "INIT.h5", "starting model (with a projection head for the contrastive methods, fc with 2 classes for supervised)", 0, 0},
        {"--epochs", SS_ARG_INT, &epochs, "N", "epochs (default 150)", 1, 1000000},
        {"--warmup", SS_ARG_INT, &warmup, "N", "linear warm-up epochs before the cosine (default 10)", 0, 1000000},
        {"--batch", SS_ARG_INT, &batch, "B", "cells per step, positive + negative (default 256)", 2, 1 << 20},
        {"--size", SS_ARG_INT, &size, "PX", "network input size (default: the checkpoint's); crops are cut to it", 0, 4096},
        {"--seed", SS_ARG_I64, &seed, "S", "shuffles and augmentations (default 1)", 0, 0},
        {"--lr", SS_ARG_DOUBLE, &lr, "X", "base learning rate (default 1e-3)", 1e-12, 1e3},
        {"--momentum", SS_ARG_DOUBLE, &momentum, "X", "SGD momentum (default 0.9)", 0, 1},
        {"--weight-decay", SS_ARG_DOUBLE, &wd, "X", "SGD weight decay (default 1e-4)", 0, 1},
        {"--tau", SS_ARG_DOUBLE, &tau, "X", "contrastive temperature (default 0.07)", 1e-6, 1e3},
        {"--joint", SS_ARG_FLAG, &joint, NULL, "one forward pass over all views (shared batch-norm statistics)", 0, 0},
        {"--chunk", SS_ARG_INT, &chunk, "N", "at most N images per forward pass (default: a whole view group)", 0, 1 << 20},
        {"--resume", SS_ARG_FLAG, &resume, NULL, "continue from DIR/last.h5", 0, 0},
        {"--keep", SS_ARG_INT, &keep, "K", "epoch checkpoints kept (the newest; 0 = all; default 3)", 0, 1000000},
        {"--max-steps", SS_ARG_I64, &max_steps, "N", "stop after N steps of this run, as on SIGTERM (0 = no limit)", 0, 0},
        {"--threads", SS_ARG_INT, &threads, "N", "compute threads (default: all cores)", 0, 1024},
        {"--producers", SS_ARG_INT, &producers, "N", "END messages to wait for (default 1)", 1, 1000000},
        {"--idle-timeout", SS_ARG_DOUBLE, &idle, "S", "after END, wait S quiet seconds for missing cells (default 30)", 0.1, 1e6},
        {"--hwm", SS_ARG_INT, &hwm, "N", "receive high-water mark (default 1000)", 1, 10000000},
        SS_STAGE_ARGS(sa),
        {0},
    };
    int rc = ss_args_parse(argc, argv,
                           "--method M (--in EP --control EP | --store F.h5) --out DIR "
                           "[--checkpoint INIT.h5] [options]\n"
                           "       slidestream train step --help\n\n"
                           "Trains the encoder from slide labels: SLAM-AGS (similarity loss on "
                           "cells of negative bags, NT-Xent on cells of\npositive bags, PCGrad "
                           "and rescaling) or a baseline. SIGTERM writes DIR/last.h5 and exits 0; "
                           "--resume continues.",
                           args, NULL, NULL);
    if (rc) return rc > 0 ? 0 : (ss_error_report(NULL), 2);
    ss_train_method_t method;
    if (ss_args_require("train", "--method", method_name) ||
        ss_args_require("train", "--out", out) || ss_train_method_parse(method_name, &method)) {
        ss_error_report(NULL);
        return 2;
    }
    if (!store == !in_ep || (in_ep && !ctl_ep)) {
        fprintf(stderr, "slidestream: train: give either --in EP --control EP (the stream) or "
                        "--store F.h5\n");
        return 2;
    }
    if (!resume && !ckpt) {
        fprintf(stderr, "slidestream: train: --checkpoint INIT.h5 is needed (make one with "
                        "`slidestream checkpoint init --projection 512,512`), or --resume\n");
        return 2;
    }
    ss_log_set_quiet(sa.quiet);
    if (threads > 0) ss_nn_set_threads(threads);
    if (mkdir(out, 0777) && errno != EEXIST) {
        fprintf(stderr, "slidestream: train: cannot create %s: %s\n", out, strerror(errno));
        return 1;
    }
    ss_stage_t *st = ss_stage_open("train", &sa);
    if (!st) {
        ss_error_report("train: cannot start");
        return 1;
    }
    char store_buf[4096];
    int code = 0;
    if (in_ep) {
        snprintf(store_buf, sizeof store_buf, "%s/crops.h5", out);
        store = store_buf;
        if (!(resume && access(store, R_OK) == 0)) {
            code = collect(st, in_ep, ctl_ep, producers, idle, hwm, store);
            if (code) goto done;
        }
    }
    ss_pretrain_config_t cfg = ss_pretrain_config_default(method);
    cfg.step.momentum = (float)momentum;
    cfg.step.weight_decay = (float)wd;
    cfg.step.tau = (float)tau;
    cfg.step.joint = joint;
    cfg.step.chunk = chunk;
    cfg.epochs = epochs;
    cfg.warmup_epochs = warmup;
    cfg.lr = lr;
    cfg.batch = batch;
    cfg.size = size;
    cfg.seed = (uint64_t)seed;
    cfg.keep = keep;
    cfg.max_steps = max_steps;
    cfg.stop = ss_stage_stop_flag(st);
    cfg.tick = tick;
    cfg.tick_arg = st;
    cfg.quiet = sa.quiet;
    ss_stage_set_unit(st, "steps", 0);
    int r = ss_pretrain_run(&cfg, store, ckpt, out, resume);
    if (r < 0) {
        ss_error_report("train failed");
        code = 1;
    }
done:
    ss_stage_flush_status(st, code ? "failed" : "stopped");
    ss_stage_destroy(&st);
    return code;
}
