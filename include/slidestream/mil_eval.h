/* slidestream — evaluation of bag predictions and attention retrieval (specs/methods.md §7).
 *
 * Bag level: accuracy, F1 of the positive class (sklearn's binary F1: 0 when there is no true
 * or predicted positive), ROC-AUC of the class-1 probability (rank statistic, ties count half;
 * NaN when one class is absent). Cell level: Recall@K of witnesses among the K most attended
 * cells of a positive bag, normalised by min(K, number of witnesses) so that 1 means the top K
 * hold every witness they could; averaged over positive bags that have witnesses.
 */
#ifndef SLIDESTREAM_MIL_EVAL_H
#define SLIDESTREAM_MIL_EVAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

double ss_eval_accuracy(const int *pred, const int *label, size_t n);
double ss_eval_f1(const int *pred, const int *label, size_t n);
double ss_eval_auc(const double *score, const int *label, size_t n);

/* Ranks (1 = most attended) of attention (n): rank[i] for cell i; ties broken by cell order.
 * order (n, optional) receives the cells from most to least attended. */
void ss_eval_ranks(const float *attention, size_t n, int64_t *rank, int64_t *order);

/* Witnesses among the K most attended cells / min(K, witnesses); NaN when the bag has none.
 * witness (n) 1 for a witness; rank as ss_eval_ranks gives. *hits receives the count. */
double ss_eval_recall_at_k(const int64_t *rank, const int *witness, size_t n, int64_t K,
                           int64_t *hits);

/* mean and sample standard deviation (n - 1; 0 for one value) of the finite values of x. */
void ss_eval_mean_std(const double *x, size_t n, double *mean, double *std);

/* The number after "key": in the text of a metrics.json (`mil predict`); NaN for null or
 * absent. */
double ss_mil_metrics_value(const char *text, const char *key);

/* Mean ± sample standard deviation over runs (e.g. seeds) of the metrics in <run>/metrics.json
 * (`mil predict`): accuracy, f1, roc_auc, recall_at_k. A table on `table` (may be NULL) and,
 * when out_json is not NULL, {"runs": n, "<metric>": {"mean", "std", "runs"}, ...}. */
int ss_mil_summarize(const char *const *runs, int n, FILE *table, const char *out_json);

#endif
