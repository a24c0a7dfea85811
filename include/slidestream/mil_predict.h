/* slidestream — MIL prediction on embedding caches and its result files.
 *
 * ss_mil_predict runs every bag of a bag set through the model in eval mode, one bag at a time,
 * and writes into the output folder (contracts):
 *   bags.csv       slide_id,label,probability,prediction   (probability = softmax of the two
 *                  logits, class 1; prediction = argmax)
 *   instances.csv  slide_id,cell_id,x,y,attention,rank     (x, y: level-0 cell centre;
 *                  attention toward class 1 as mil.h defines it; rank 1 = most attended)
 *   metrics.json   when bags carry labels: accuracy, F1, ROC-AUC; Recall@K when the cells'
 *                  witness labels are given (mil_eval.h)
 * A bag_done callback sees each bag with its attention (for pictures) before it is unloaded.
 */
#ifndef SLIDESTREAM_MIL_PREDICT_H
#define SLIDESTREAM_MIL_PREDICT_H

#include "slidestream/mil_train.h"

/* Witness labels of cells: a bag_cells.csv (bag_id,...,instance_label; a bag's k-th row is
 * the cell with id k, as `bags simulate` and the bag-builder number them). */
typedef struct ss_mil_witnesses ss_mil_witnesses_t;
ss_mil_witnesses_t *ss_mil_witnesses_load(const char *csv);
void ss_mil_witnesses_free(ss_mil_witnesses_t **w);

/* The result files of one run, bag by bag (mil predict, the aggregator stage). */
typedef struct ss_mil_writer ss_mil_writer_t;
ss_mil_writer_t *ss_mil_writer_new(const char *out_dir, int64_t top_k,
                                   const ss_mil_witnesses_t *witnesses);
/* One bag's rows: logits (2) and attention (b->n) from ss_mil_forward; b needs id, label, n,
 * centres and cell_ids. Returns the cells' ranks (valid until the next call), NULL on error. */
const int64_t *ss_mil_writer_bag(ss_mil_writer_t *w, const ss_mil_bag_t *b, const float *logits,
                                 const float *attention);
/* Close the CSVs and write metrics.json over the labelled bags; frees and NULLs *w. */
int ss_mil_writer_finish(ss_mil_writer_t **w, int quiet);

typedef struct {
    int64_t top_k;                        /* K of Recall@K (400 in the paper) */
    const ss_mil_witnesses_t *witnesses;  /* NULL: no Recall@K */
    int (*bag_done)(const ss_mil_bag_t *b, const float *attention, const int64_t *rank,
                    double probability, void *arg);
    void *arg;
    int quiet;
} ss_mil_predict_config_t;

int ss_mil_predict(ss_mil_t *m, ss_mil_bags_t *bags, const ss_mil_predict_config_t *cfg,
                   const char *out_dir);

#endif
