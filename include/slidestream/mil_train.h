/* slidestream — MIL aggregators on embedding caches: the bag set of a cache folder, training
 * with a validation split and model selection, and prediction with its result files.
 *
 * A cache folder holds <slide_id>.h5 files (cache.h); each is one bag with its label and split.
 * Training uses the labelled bags whose split is not "test"; a stratified, seeded fraction of
 * them is held out for validation. Each epoch visits the training bags in a fresh seeded order,
 * one bag a step (Adam or AdamW), then evaluates the validation bags; the model kept is the one
 * of the epoch with the lowest validation loss (not the best training accuracy, the reference's
 * habit), and training stops after `patience` epochs without improvement. Without validation
 * bags the last epoch is kept, and the run says so.
 */
#ifndef SLIDESTREAM_MIL_TRAIN_H
#define SLIDESTREAM_MIL_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "slidestream/mil.h"

typedef struct {
    char id[256];
    char split[64];
    char path[4096];
    int label;         /* -1 unknown */
    int64_t n;         /* cells */
    float *x;          /* (n, dim) features once loaded */
    int64_t *centres;  /* (n, 2) level-0 cell centres */
    uint64_t *cell_ids; /* (n) */
} ss_mil_bag_t;

typedef struct {
    ss_mil_bag_t *bags; /* sorted by id */
    size_t n;
    int dim;
} ss_mil_bags_t;

/* Every <dir>/<name>.h5 cache file (sorted by name): metadata only. Files of another feature width
 * than the first are refused with an error naming both. */
int ss_mil_bags_open(const char *dir, ss_mil_bags_t *out);
int ss_mil_bag_load(ss_mil_bag_t *b, int dim);
void ss_mil_bag_unload(ss_mil_bag_t *b);
void ss_mil_bags_free(ss_mil_bags_t *bags);
/* Keeps the bags whose split is `split` (e.g. "test"), in order; returns how many remain. */
size_t ss_mil_bags_keep_split(ss_mil_bags_t *bags, const char *split);

typedef struct {
    int epochs;          /* 100 */
    double lr;           /* per architecture (ABMIL 2e-4, PAMIL 1e-3, ABMILX 1e-4, DTFD 1e-4) */
    double weight_decay; /* per architecture */
    int adamw;           /* decoupled weight decay (ABMILX) */
    double val_fraction; /* 0.2 */
    int patience;        /* 20 epochs without a better validation loss; 0 = never stop early */
    double clip;         /* gradient-norm clipping (DTFD 5), 0 = off */
    uint64_t seed;
    int quiet;
} ss_mil_train_config_t;

ss_mil_train_config_t ss_mil_train_config_default(ss_mil_arch_t arch);

/* Train m on bags; writes <out>/model.h5 (the selected model), <out>/train.csv (per epoch:
 * train_loss, train_acc, val_loss, val_acc, val_auc, val_f1, selected) and <out>/train.svg.
 * m holds the selected weights afterwards. */
int ss_mil_fit(ss_mil_t *m, ss_mil_bags_t *bags, const ss_mil_train_config_t *cfg,
               const char *out_dir);

#endif
