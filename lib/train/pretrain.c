/* A training run (train.h, ss_pretrain_run): epochs over a crop store, steps of the trainer,
 * checkpoints with the run's state, resume, telemetry (steps.csv, curves.svg) and progress.
 *
 * Reproducibility: everything random is a function of (seed, epoch, ...) — the per-epoch
 * shuffles of each cell set and every view's augmentation (keyed by the cell's store index) —
 * so no generator state has to be saved: a checkpoint written at a step boundary (epoch,
 * batch) together with the weights, batch-norm statistics and SGD momentum is the whole state,
 * and a resumed run computes exactly what the uninterrupted one would have.
 *
 * Ownership: run_t owns the store, the model, the trainer and the batch buffers for the call.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "slidestream/error.h"
#include "slidestream/log.h"
#include "slidestream/nn_layers.h"
#include "slidestream/train.h"
#include "slidestream/train_store.h"
#include "train_internal.h"

#define DOM "train"

/* trainer/state: int64 fields, in this order */
enum {
    ST_VERSION,
    ST_EPOCH,       /* the epoch in progress (0-based) */
    ST_BATCH,       /* the next step within it */
    ST_GLOBAL_STEP, /* steps taken in all */
    ST_OPTIM_STEP,  /* SGD steps (momentum buffer initialised when > 0) */
    ST_SEED,
    ST_METHOD,
    ST_BATCH_SIZE,
    ST_SIZE,
    ST_CELLS,       /* labelled cells of the store */
    ST_EPOCHS,
    ST_WARMUP,
    ST_COUNT
};

typedef struct {
    const ss_pretrain_config_t *cfg;
    const char *dir;
    ss_ckpt_meta_t meta; /* the starting checkpoint's attributes, at the run's input size */
    ss_crop_store_t *store;
    ss_resnet_t *m;
    ss_trainer_t *t;
    int S, C;
    int64_t *pos, *neg, P, N, unlabelled, held_out;
    int64_t *perm_pos, *perm_neg;
    int bp, bn, nb;
    int64_t *idx;   /* (bp + bn) store indices of the batch: positive then negative */
    uint8_t *crops; /* (bp + bn, C, C, 3) */
    float *x;       /* (views, 3, S, S) */
    int64_t state[ST_COUNT];
    FILE *csv;
    double t0, step_avg;
    long steps_this_call;
} run_t;

ss_pretrain_config_t ss_pretrain_config_default(ss_train_method_t method)
{
    ss_pretrain_config_t c = {0};
    c.step = ss_train_config_default(method);
    c.epochs = 150;
    c.warmup_epochs = 10;
    c.lr = 1e-3;
    c.batch = 256;
    c.seed = 1;
    c.aug = ss_aug_config_default();
    c.keep = 3;
    return c;
}

/* ---- shuffles ------------------------------------------------------------------------------- */

static uint64_t mix64(uint64_t z)
{
    return ss_splitmix64(&z); /* the NN core's mixing step, as a hash of z */
}

/* perm = a permutation of set (n), a function of (seed, epoch, which) only. */
static void shuffle(int64_t *perm, const int64_t *set, int64_t n, uint64_t seed, long epoch,
                    int which)
{
    ss_rng_t r;
    ss_rng_seed(&r, mix64(mix64(mix64(seed) ^ (uint64_t)epoch) ^ (uint64_t)(which + 1)));
    memcpy(perm, set, (size_t)n * sizeof *perm);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(ss_rng_u64(&r) % (uint64_t)(i + 1));
        int64_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
}

/* ---- checkpoints ---------------------------------------------------------------------------- */

static int save_state(run_t *R, const char *path)
{
    ss_resnet_t *m = R->m;
    ss_optim_t *o = ss_trainer_optim(R->t);
    R->state[ST_OPTIM_STEP] = o->step;
    int n = m->table_len;
    ss_ckpt_tensor_t *tab = malloc((size_t)(n + 2) * sizeof *tab);
    if (!tab) return ss_error(DOM, "out of memory");
    memcpy(tab, m->table, (size_t)n * sizeof *tab);
    tab[n] = (ss_ckpt_tensor_t){.name = SS_CKPT_TRAINER_GROUP "/momentum", .dtype = SS_DTYPE_F32,
                                .ndim = 1, .shape = {(int64_t)o->n}, .data = o->state};
    tab[n + 1] = (ss_ckpt_tensor_t){.name = SS_CKPT_TRAINER_GROUP "/state", .dtype = SS_DTYPE_I64,
                                    .ndim = 1, .shape = {ST_COUNT}, .data = R->state};
    int rc = ss_ckpt_save(path, &R->meta, tab, n + 2);
    free(tab);
    return rc;
}

static int load_state(run_t *R, const char *path)
{
    ss_optim_t *o = ss_trainer_optim(R->t);
    int64_t st[ST_COUNT];
    ss_ckpt_tensor_t tab[2] = {
        {.name = SS_CKPT_TRAINER_GROUP "/momentum", .dtype = SS_DTYPE_F32, .ndim = 1,
         .shape = {(int64_t)o->n}, .data = o->state},
        {.name = SS_CKPT_TRAINER_GROUP "/state", .dtype = SS_DTYPE_I64, .ndim = 1,
         .shape = {ST_COUNT}, .data = st},
    };
    if (ss_ckpt_load(path, NULL, tab, 2, SS_CKPT_IGNORE_EXTRA))
        return ss_error(DOM, "%s holds no training state to resume from", path);
    static const struct {
        int field;
        const char *what;
    } same[] = {{ST_METHOD, "method"},       {ST_SEED, "seed"},
                {ST_BATCH_SIZE, "batch size"}, {ST_SIZE, "input size"},
                {ST_CELLS, "labelled cells in the crop store"},
                {ST_EPOCHS, "number of epochs"}, {ST_WARMUP, "warm-up epochs"}};
    if (st[ST_VERSION] != R->state[ST_VERSION])
        return ss_error(DOM, "%s: training state version %lld, this build writes %lld", path,
                        (long long)st[ST_VERSION], (long long)R->state[ST_VERSION]);
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++)
        if (st[same[i].field] != R->state[same[i].field])
            return ss_error(DOM, "%s: the run being resumed had %s %lld, this one %lld; resume "
                                 "with the same settings and store",
                            path, same[i].what, (long long)st[same[i].field],
                            (long long)R->state[same[i].field]);
    memcpy(R->state, st, sizeof st);
    o->step = (long)st[ST_OPTIM_STEP];
    return 0;
}

/* last.h5 becomes the file at `path`: a hard link swapped in atomically, or a second save. */
static int point_last(run_t *R, const char *path)
{
    char last[4096], tmp[4200];
    snprintf(last, sizeof last, "%s/last.h5", R->dir);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", last, (long)getpid());
    unlink(tmp);
    if (link(path, tmp) == 0 && rename(tmp, last) == 0) return 0;
    unlink(tmp);
    return save_state(R, last);
}

/* ---- telemetry ------------------------------------------------------------------------------ */

static const char CSV_HEADER[] =
    "step,epoch,batch,lr,loss,loss_con,loss_sim,loss_ce,cosine,conflict,norm_g1,norm_g2,"
    "norm_before,norm_after,scale,images_per_s\n";

/* steps.csv: a new file, or on resume the rows of the steps before `keep_steps` kept. */
static int open_csv(run_t *R, int resume)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/steps.csv", R->dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *out = fopen(tmp, "w");
    if (!out) return ss_error_system(DOM, "cannot write %s", tmp);
    fputs(CSV_HEADER, out);
    FILE *in = resume ? fopen(path, "r") : NULL;
    if (in) {
        char line[4096];
        int first = 1;
        while (fgets(line, sizeof line, in)) {
            if (first) {
                first = 0;
                continue;
            }
            char *end;
            long long s = strtoll(line, &end, 10);
            if (end != line && s < R->state[ST_GLOBAL_STEP]) fputs(line, out);
        }
        fclose(in);
    }
    if (fclose(out) || rename(tmp, path)) return ss_error_system(DOM, "cannot write %s", path);
    R->csv = fopen(path, "a");
    if (!R->csv) return ss_error_system(DOM, "cannot append to %s", path);
    return 0;
}

static void fmt_num(char *buf, size_t n, double v)
{
    if (v != v)
        snprintf(buf, n, "nan");
    else
        snprintf(buf, n, "%.9g", v);
}

static int csv_row(run_t *R, double lr, const ss_train_stats_t *s, double ips)
{
    double v[] = {s->loss,  s->loss_con, s->loss_sim,    s->loss_ce,    s->cosine,
                  s->norm1, s->norm2,    s->norm_before, s->norm_after, s->scale};
    fprintf(R->csv, "%lld,%lld,%lld,%.9g", (long long)R->state[ST_GLOBAL_STEP],
            (long long)R->state[ST_EPOCH] + 1, (long long)R->state[ST_BATCH], lr);
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char b[64];
        fmt_num(b, sizeof b, v[i]);
        if (i == 5) fprintf(R->csv, ",%d", s->conflict); /* after the cosine */
        fprintf(R->csv, ",%s", b);
    }
    fprintf(R->csv, ",%.2f\n", ips);
    if (fflush(R->csv)) return ss_error_system(DOM, "cannot write %s/steps.csv", R->dir);
    return 0;
}

/* ---- the batch ------------------------------------------------------------------------------ */

/* Fill x with the views of batch b of the current epoch (shuffles already made). */
static int make_batch(run_t *R, long b)
{
    const ss_pretrain_config_t *cfg = R->cfg;
    ss_train_method_t me = cfg->step.method;
    int n = R->bp + R->bn;
    for (int k = 0; k < R->bp; k++) R->idx[k] = R->perm_pos[((int64_t)b * R->bp + k) % R->P];
    for (int k = 0; k < R->bn; k++) R->idx[R->bp + k] = R->perm_neg[((int64_t)b * R->bn + k) % R->N];
    if (ss_crop_store_read_many(R->store, R->idx, n, R->crops)) return -1;
    size_t img = (size_t)3 * R->S * R->S, crop = (size_t)R->C * R->C * 3;
    uint64_t epoch = (uint64_t)R->state[ST_EPOCH];
    const double *mean = R->m->cfg.mean, *std = R->m->cfg.std;
    int failed = 0;
#pragma omp parallel for schedule(dynamic, 4) reduction(| : failed)
    for (int k = 0; k < n; k++) {
        int positive = k < R->bp, i = positive ? k : k - R->bp;
        for (int v = 0; v < 2; v++) {
            int slot = ss_train_slot(me, R->bp, R->bn, positive, i, v);
            if (slot < 0) continue;
            /* the reference's negative first view is the centre crop alone (two-task methods
             * and weaksupcon); everything else is a simclr view */
            ss_aug_kind_t kind = (!positive && v == 0 && me != SS_TRAIN_SIMCLR &&
                                  me != SS_TRAIN_SUPERVISED)
                                     ? SS_AUG_CENTER
                                     : SS_AUG_SIMCLR;
            if (ss_aug_view(&cfg->aug, kind, R->crops + (size_t)k * crop, R->C, R->C, R->S,
                            cfg->seed, epoch, (uint64_t)R->idx[k], (uint64_t)v, mean, std,
                            R->x + (size_t)slot * img))
                failed = 1;
        }
    }
    return failed ? ss_error(DOM, "augmentation failed") : 0;
}

/* ---- the run -------------------------------------------------------------------------------- */

static void fmt_eta(char *buf, size_t n, double s)
{
    if (!(s >= 0) || s > 1e8)
        snprintf(buf, n, "?");
    else if (s >= 3600)
        snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else
        snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
}

static void run_free(run_t *R)
{
    if (R->csv) fclose(R->csv);
    ss_trainer_destroy(&R->t);
    ss_resnet_destroy(&R->m);
    ss_crop_store_close(&R->store);
    free(R->pos), free(R->neg), free(R->perm_pos), free(R->perm_neg);
    free(R->idx), free(R->crops), free(R->x);
}

/* Split the store's cells by their bag's label (the cell's own when the bag has none). */
static int split_cells(run_t *R)
{
    int64_t n = ss_crop_store_count(R->store);
    R->pos = malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    R->neg = malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    if (!R->pos || !R->neg) return ss_error(DOM, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        int b = ss_crop_store_bag_index(R->store, i);
        const char *split = ss_crop_store_bag_split(R->store, b);
        if (!strcmp(split, "test") || !strcmp(split, "incomplete")) {
            R->held_out++; /* test bags never train the encoder; incomplete bags are suspect */
            continue;
        }
        int lab = ss_crop_store_bag_label(R->store, b);
        if (lab < 0) lab = ss_crop_store_label(R->store, i);
        if (lab == 1)
            R->pos[R->P++] = i;
        else if (lab == 0)
            R->neg[R->N++] = i;
        else
            R->unlabelled++;
    }
    const char *path = ss_crop_store_path(R->store);
    ss_train_method_t me = R->cfg->step.method;
    if (me == SS_TRAIN_SIMCLR) {
        if (R->P + R->N < 2)
            return ss_error(DOM, "%s: %lld labelled cells; simclr needs at least 2", path,
                            (long long)(R->P + R->N));
    } else if (R->P < 2 || R->N < 2) {
        return ss_error(DOM, "%s: %lld cells of positive bags and %lld of negative bags; "
                             "method %s needs at least 2 of each (an empty %s set)",
                        path, (long long)R->P, (long long)R->N, ss_train_method_name(me),
                        R->P < 2 ? "positive" : "negative");
    }
    return 0;
}

/* b_pos and b_neg in the reference's ratio; clamped to the sets (and >= 2 where possible). */
static void batch_split(run_t *R)
{
    int B = R->cfg->batch;
    if (B > R->P + R->N) B = (int)(R->P + R->N);
    if (R->N == 0) {
        R->bp = B, R->bn = 0;
    } else if (R->P == 0) {
        R->bp = 0, R->bn = B;
    } else {
        double r = (double)R->P / (double)R->N;
        R->bp = (int)lround(B * r / (r + 1));
        R->bn = (int)lround(B / (r + 1));
        if (R->bp < 2) R->bp = 2;
        if (R->bn < 2) R->bn = 2;
        if (R->bp > R->P) R->bp = (int)R->P;
        if (R->bn > R->N) R->bn = (int)R->N;
    }
    int64_t a = R->bp ? (R->P + R->bp - 1) / R->bp : 0, b = R->bn ? (R->N + R->bn - 1) / R->bn : 0;
    R->nb = (int)(a > b ? a : b);
}

static int build(run_t *R, const char *store_path, const char *init, int resume)
{
    const ss_pretrain_config_t *cfg = R->cfg;
    char last[4096];
    snprintf(last, sizeof last, "%s/last.h5", R->dir);
    const char *from = resume ? last : init;
    if (resume && access(last, R_OK))
        return ss_error(DOM, "--resume: %s does not exist (nothing to resume in %s)", last,
                        R->dir);
    if (!from) return ss_error(DOM, "no starting checkpoint (--checkpoint)");
    ss_resnet_config_t mc;
    if (ss_resnet_config_from_checkpoint(from, &mc)) return -1;
    if (cfg->size > 0 && !resume) mc.input_size = cfg->size;
    if (cfg->size > 0 && resume && cfg->size != mc.input_size)
        return ss_error(DOM, "%s was trained at %d px, not --size %d", from, mc.input_size,
                        cfg->size);
    R->S = mc.input_size;
    if (ss_ckpt_read_meta(from, &R->meta)) return -1;
    R->meta.input_size = R->S;
    if (!(R->store = ss_crop_store_open(store_path, 0))) return -1;
    R->C = ss_crop_store_crop_size(R->store);
    if (R->C < R->S)
        return ss_error(DOM, "crop store %s holds crops of %d px, smaller than the network "
                             "input of %d px (--size, or the checkpoint's input size)",
                        store_path, R->C, R->S);
    if (split_cells(R)) return -1;
    batch_split(R);
    int maxb = ss_train_max_pass(&cfg->step, R->bp, R->bn);
    if (!(R->m = ss_resnet_new(&mc, maxb, 1))) return -1;
    if (ss_resnet_load(R->m, from, SS_CKPT_STRICT)) return -1;
    if (!(R->t = ss_trainer_new(R->m, &cfg->step, R->bp, R->bn)))
        return ss_error(DOM, "checkpoint %s", from);
    int n = R->bp + R->bn, views = ss_train_views(cfg->step.method, R->bp, R->bn);
    R->perm_pos = malloc((size_t)(R->P ? R->P : 1) * sizeof(int64_t));
    R->perm_neg = malloc((size_t)(R->N ? R->N : 1) * sizeof(int64_t));
    R->idx = malloc((size_t)n * sizeof(int64_t));
    R->crops = malloc((size_t)n * R->C * R->C * 3);
    R->x = malloc((size_t)views * 3 * R->S * R->S * sizeof(float));
    if (!R->perm_pos || !R->perm_neg || !R->idx || !R->crops || !R->x)
        return ss_error(DOM, "out of memory for a batch of %d cells at %d px", n, R->S);
    int64_t st[ST_COUNT] = {
        [ST_VERSION] = 1,      [ST_SEED] = (int64_t)cfg->seed,
        [ST_METHOD] = cfg->step.method, [ST_BATCH_SIZE] = cfg->batch,
        [ST_SIZE] = R->S,      [ST_CELLS] = R->P + R->N,
        [ST_EPOCHS] = cfg->epochs, [ST_WARMUP] = cfg->warmup_epochs};
    memcpy(R->state, st, sizeof st);
    if (resume && load_state(R, from)) return -1;
    return open_csv(R, resume);
}

static int end_of_epoch(run_t *R)
{
    const ss_pretrain_config_t *cfg = R->cfg;
    long e = (long)R->state[ST_EPOCH]; /* 0-based, just finished */
    R->state[ST_EPOCH] = e + 1;
    R->state[ST_BATCH] = 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/epoch-%03ld.h5", R->dir, e + 1);
    if (save_state(R, path) || point_last(R, path)) return -1;
    if (cfg->keep > 0 && e + 1 - cfg->keep >= 1) {
        snprintf(path, sizeof path, "%s/epoch-%03ld.h5", R->dir, e + 1 - cfg->keep);
        unlink(path);
    }
    if (ss_train_curves(R->dir)) {
        ss_warn("train: %s", ss_error_last()); /* telemetry only: training goes on */
        ss_error_clear();
    }
    return 0;
}

int ss_pretrain_run(const ss_pretrain_config_t *cfg, const char *store_path,
                    const char *init_ckpt, const char *out_dir, int resume)
{
    if (cfg->epochs < 1 || cfg->batch < 2 || cfg->warmup_epochs < 0 || !(cfg->lr > 0))
        return ss_error(DOM, "epochs %d, batch %d, warm-up %d, lr %g: want epochs >= 1, "
                             "batch >= 2, warm-up >= 0, lr > 0",
                        cfg->epochs, cfg->batch, cfg->warmup_epochs, cfg->lr);
    if (mkdir(out_dir, 0777) && errno != EEXIST)
        return ss_error_system(DOM, "cannot create %s", out_dir);
    run_t R = {.cfg = cfg, .dir = out_dir};
    if (build(&R, store_path, init_ckpt, resume)) {
        run_free(&R);
        return -1;
    }
    ss_train_method_t me = cfg->step.method;
    if (!cfg->quiet)
        ss_info("train: %s, %lld positive + %lld negative cells (left out: %lld of test or "
                "incomplete bags, %lld unlabelled), %d + %d a step, %d steps an epoch, %d "
                "epochs, %d px, %zu parameters%s",
                ss_train_method_name(me), (long long)R.P, (long long)R.N,
                (long long)R.held_out, (long long)R.unlabelled, R.bp, R.bn, R.nb, cfg->epochs, R.S, R.m->num_params,
                resume ? ", resumed" : "");
    if (resume && !cfg->quiet)
        ss_info("train: resuming at epoch %lld, step %lld of it (%lld steps done)",
                (long long)R.state[ST_EPOCH] + 1, (long long)R.state[ST_BATCH],
                (long long)R.state[ST_GLOBAL_STEP]);
    int views = ss_train_views(me, R.bp, R.bn), rc = 0;
    double last_print = 0;
    R.t0 = ss_now();
    while (R.state[ST_EPOCH] < cfg->epochs) {
        long e = (long)R.state[ST_EPOCH];
        double lr = cfg->lr * ss_lr_slam_ags_factor(e, cfg->warmup_epochs, cfg->epochs);
        shuffle(R.perm_pos, R.pos, R.P, cfg->seed, e, 0);
        shuffle(R.perm_neg, R.neg, R.N, cfg->seed, e, 1);
        while (R.state[ST_BATCH] < R.nb) {
            if (cfg->tick) cfg->tick(cfg->tick_arg);
            if ((cfg->stop && *cfg->stop) ||
                (cfg->max_steps > 0 && R.steps_this_call >= cfg->max_steps)) {
                char path[4096];
                snprintf(path, sizeof path, "%s/last.h5", R.dir);
                rc = save_state(&R, path) ? -1 : 1;
                if (rc == 1 && !cfg->quiet)
                    ss_info("train: stopped at epoch %ld, step %lld of %d; %s holds the state "
                            "(run again with --resume)",
                            e + 1, (long long)R.state[ST_BATCH], R.nb, path);
                goto out;
            }
            double t0 = ss_now();
            ss_train_stats_t s;
            if (make_batch(&R, (long)R.state[ST_BATCH]) ||
                ss_trainer_step(R.t, R.x, R.bp, R.bn, (float)lr, &s)) {
                rc = -1;
                goto out;
            }
            double dt = ss_now() - t0;
            R.step_avg = R.steps_this_call ? 0.9 * R.step_avg + 0.1 * dt : dt;
            if (!isfinite(s.loss)) {
                rc = ss_error(DOM, "epoch %ld step %lld: the loss is %g (lower the learning "
                                   "rate?)",
                              e + 1, (long long)R.state[ST_BATCH], s.loss);
                goto out;
            }
            if (csv_row(&R, lr, &s, views / dt)) {
                rc = -1;
                goto out;
            }
            R.state[ST_BATCH]++;
            R.state[ST_GLOBAL_STEP]++;
            R.steps_this_call++;
            double now = ss_now();
            if (!cfg->quiet && (now - last_print > 10 || R.state[ST_BATCH] == R.nb)) {
                last_print = now;
                long left = (long)(cfg->epochs - e - 1) * R.nb + (R.nb - (long)R.state[ST_BATCH]);
                char eta[32];
                fmt_eta(eta, sizeof eta, left * R.step_avg);
                ss_info("train: epoch %ld/%d step %lld/%d  loss %.4f%s  lr %.3g  %.1f img/s  "
                        "ETA %s",
                        e + 1, cfg->epochs, (long long)R.state[ST_BATCH], R.nb, s.loss,
                        s.conflict ? " (conflict)" : "", lr, views / R.step_avg, eta);
            }
        }
        if (end_of_epoch(&R)) {
            rc = -1;
            goto out;
        }
    }
    {
        char path[4096];
        snprintf(path, sizeof path, "%s/encoder.h5", R.dir);
        if (ss_resnet_save(R.m, path)) {
            rc = -1;
            goto out;
        }
        if (!cfg->quiet)
            ss_info("train: done in %.1f s: %s (final encoder), steps.csv, curves.svg",
                    ss_now() - R.t0, path);
    }
out:
    run_free(&R);
    return rc;
}
