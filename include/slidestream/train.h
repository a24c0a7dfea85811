/* slidestream — encoder training from slide labels (SLAM-AGS and its baselines).
 *
 * The training step works on one batch of cells from positive bags (witnesses and normals
 * mixed) and from negative bags (normals only), each cell as two augmented views, already
 * normalised into (n, 3, S, S) floats. Methods (specs/methods.md §6, §8, §9):
 *   slam-ags    L_con = NT-Xent over the positive cells' views, L_sim = similarity loss over the
 *               negative cells' views; g1 = dL_con, g2 = dL_sim; PCGrad then rescaling to
 *               |g1 + g2| (AGS); SGD on the result
 *   pcgrad      the same without the rescaling
 *   cagrad      the same two gradients combined by CAGrad (c = 0.5)
 *   mgda        ... by the MGDA min-norm point
 *   weaksupcon  one gradient of L_con + L_sim
 *   simclr      NT-Xent over all cells (positive then negative), no bag labels
 *   supervised  each cell inherits its bag's label: cross-entropy on the fc head (view 1)
 * Every parameter of the model takes the SGD step; one that a loss does not reach has gradient
 * zero there and moves by weight decay alone (the reference writes the flat gradient back into
 * every parameter the same way).
 */
#ifndef SLIDESTREAM_TRAIN_H
#define SLIDESTREAM_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "slidestream/nn_optim.h"
#include "slidestream/nn_resnet.h"
#include "slidestream/train_augment.h"

typedef enum {
    SS_TRAIN_SLAM_AGS,
    SS_TRAIN_PCGRAD,
    SS_TRAIN_CAGRAD,
    SS_TRAIN_MGDA,
    SS_TRAIN_WEAKSUPCON,
    SS_TRAIN_SIMCLR,
    SS_TRAIN_SUPERVISED
} ss_train_method_t;

/* "slam-ags" | "pcgrad" | "cagrad" | "mgda" | "weaksupcon" | "simclr" | "supervised". */
int ss_train_method_parse(const char *name, ss_train_method_t *method);
const char *ss_train_method_name(ss_train_method_t method);
/* 1 for the methods that need a projection head (all but supervised), 0 otherwise. */
int ss_train_method_contrastive(ss_train_method_t method);
/* 1 for the methods that use two per-task gradients (slam-ags, pcgrad, cagrad, mgda). */
int ss_train_method_two_task(ss_train_method_t method);

/* ---- the training step ---------------------------------------------------------------- */

typedef struct {
    ss_train_method_t method;
    float momentum;     /* SGD momentum (0.9) */
    float weight_decay; /* SGD L2 weight decay (1e-4) */
    float tau;          /* NT-Xent temperature; also the similarity loss's tau = tau_base (0.07) */
    double cagrad_c;    /* CAGrad's c (0.5) */
    int joint;          /* 1: one forward pass over every view of the batch (shared batch-norm
                           statistics, as WeakSupCon); 0: one pass per view group (SLAM-AGS) */
    int chunk;          /* at most this many images per forward pass (batch-norm statistics per
                           chunk); 0 = a whole view group (or the whole batch when joint) */
} ss_train_config_t;

/* momentum 0.9, weight decay 1e-4, tau 0.07, CAGrad c 0.5, per-group passes, no chunking. */
ss_train_config_t ss_train_config_default(ss_train_method_t method);

/* What one step did, for telemetry. Losses not used by the method are NaN. */
typedef struct {
    double loss;                 /* the sum of the method's losses */
    double loss_con, loss_sim;   /* NT-Xent (positive cells, or all for simclr); similarity */
    double loss_ce;              /* supervised cross-entropy */
    double cosine;               /* cos(g1, g2); NaN for one-gradient methods */
    int conflict;                /* g1.g2 < 0 */
    double norm1, norm2;         /* |g1|, |g2| (NaN for one-gradient methods) */
    double norm_before;          /* |g1 + g2| (or |g|) before surgery */
    double norm_after;           /* |g| that the optimiser received */
    double scale;                /* AGS rescaling factor (1 otherwise) */
    int passes, reforwards;      /* forward passes run, of which recomputations */
} ss_train_stats_t;

/* The batch layout: the step's input x holds ss_train_views(method, P, N) images of
 * (3, S, S), in this order:
 *   two-task methods, weaksupcon:  pos view 1 (P), pos view 2 (P), neg view 1 (N), neg view 2 (N)
 *   simclr:                        pos view 1, neg view 1, pos view 2, neg view 2
 *   supervised:                    pos view 1 (P), neg view 1 (N)
 * ss_train_slot gives the index of (positive?, image i, view 0|1) in x, or -1 when the method
 * does not use that view. */
int ss_train_views(ss_train_method_t method, int npos, int nneg);
int ss_train_slot(ss_train_method_t method, int npos, int nneg, int positive, int i, int view);
/* The largest forward pass of a batch: the model must have max_batch >= this. */
int ss_train_max_pass(const ss_train_config_t *cfg, int npos, int nneg);

typedef struct ss_trainer ss_trainer_t;

/* A trainer for `model` (borrowed; built with train = 1): SGD state and the step's buffers
 * for batches of up to max_pos positive and max_neg negative images. Checks that the model has
 * the head the method needs (projection head; fc with 2 classes for supervised). */
ss_trainer_t *ss_trainer_new(ss_resnet_t *model, const ss_train_config_t *cfg, int max_pos,
                             int max_neg);
void ss_trainer_destroy(ss_trainer_t **pt);

/* One optimiser step on a batch of npos positive and nneg negative images laid out as
 * ss_train_slot says. Gradient caching: every pass is run forward (batch-norm running
 * statistics updated once per pass, in order), the losses and their gradients w.r.t. the
 * embeddings computed on the whole batch, then each pass is re-run with activations (the last
 * one is still live) and back-propagated; the re-runs leave the running statistics as the
 * first runs left them. x must stay valid during the call. */
int ss_trainer_step(ss_trainer_t *t, const float *x, int npos, int nneg, float lr,
                    ss_train_stats_t *stats);

/* The SGD state (momentum buffer, step count), for checkpoints. */
ss_optim_t *ss_trainer_optim(ss_trainer_t *t);

/* ---- a training run: epochs over a crop store ---------------------------------------------
 *
 * ss_pretrain_run trains an encoder on the cells of a crop store (train_store.h): cells of
 * bags labelled 1 are positive, of bags labelled 0 negative; cells with label -1 and cells of
 * bags whose split is "test" or "incomplete" are left out (and counted). Each step takes b_pos positive and b_neg negative cells in the ratio of the two
 * sets (b_pos = round(B r / (r + 1)), b_neg = round(B / (r + 1)), r = P / N, as the reference),
 * from a fresh shuffle of each set per epoch; an epoch is max(ceil(P / b_pos), ceil(N / b_neg))
 * steps, so every cell is seen once per epoch (the set that runs out first wraps around to the
 * start of its shuffle). Views (train_augment.h): positive cells two simclr views, negative cells a
 * centre view and a simclr view (simclr and supervised: simclr views for all), keyed by
 * (seed, epoch, cell index, view). The learning rate follows the reference's per-epoch
 * schedule: linear warm-up for `warmup_epochs`, then cosine to 0 at `epochs`.
 *
 * Files in out_dir: epoch-NNN.h5 after each epoch (the model with torchvision names, plus the
 * group "trainer": SGD momentum, epoch, step, seed and the run's settings, which resuming
 * checks); last.h5, the newest of those or the one written on a stop; encoder.h5, the final
 * model alone (what the encoder stage loads); steps.csv, one row per step; curves.svg, redrawn
 * every epoch. Resuming continues from last.h5 and ends bit-identical to an uninterrupted run
 * (same thread count).
 */

typedef struct {
    ss_train_config_t step;
    int epochs;           /* 150 */
    int warmup_epochs;    /* 10 */
    double lr;            /* base learning rate, 1e-3 */
    int batch;            /* cells per step, positive + negative: 256 */
    int size;             /* network input in pixels; 0 = the checkpoint's */
    uint64_t seed;        /* shuffles and augmentations */
    ss_aug_config_t aug;  /* simclr views */
    int keep;             /* epoch checkpoints kept on disk (the newest); 0 = all */
    long max_steps;       /* stop (as on a signal) after this many steps of this call; 0 = no */
    volatile int *stop;   /* non-zero: write last.h5 at the next step boundary and return 1 */
    void (*tick)(void *arg); /* called before each step, e.g. to refresh *stop and send status */
    void *tick_arg;
    int quiet;            /* no progress lines */
} ss_pretrain_config_t;

/* The reference's settings (above) for `method`. */
ss_pretrain_config_t ss_pretrain_config_default(ss_train_method_t method);

/* Train from init_ckpt (or, with resume, from out_dir/last.h5) on the store at store_path.
 * Returns 0 when all epochs ran (encoder.h5 written), 1 when stopped early (last.h5 written:
 * run again with resume), -1 on error. */
int ss_pretrain_run(const ss_pretrain_config_t *cfg, const char *store_path,
                    const char *init_ckpt, const char *out_dir, int resume);

#endif
