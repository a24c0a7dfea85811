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

#endif
