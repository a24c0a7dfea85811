/* Bag metrics and attention retrieval (mil_eval.h). Plain loops in double: bags and cells are
 * few enough that clarity wins. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/mil_eval.h"

double ss_eval_accuracy(const int *pred, const int *label, size_t n)
{
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) ok += pred[i] == label[i];
    return n ? (double)ok / (double)n : NAN;
}

double ss_eval_f1(const int *pred, const int *label, size_t n)
{
    size_t tp = 0, fp = 0, fn = 0;
    for (size_t i = 0; i < n; i++) {
        tp += pred[i] == 1 && label[i] == 1;
        fp += pred[i] == 1 && label[i] != 1;
        fn += pred[i] != 1 && label[i] == 1;
    }
    return tp ? 2.0 * tp / (2.0 * tp + fp + fn) : 0.0;
}

typedef struct {
    double v;
    size_t i;
} keyed_t;

static int by_value(const void *a, const void *b)
{
    const keyed_t *x = a, *y = b;
    if (x->v < y->v) return -1;
    if (x->v > y->v) return 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

double ss_eval_auc(const double *score, const int *label, size_t n)
{
    size_t npos = 0;
    for (size_t i = 0; i < n; i++) npos += label[i] == 1;
    size_t nneg = n - npos;
    if (!npos || !nneg) return NAN;
    keyed_t *k = malloc(n * sizeof *k);
    if (!k) return NAN;
    for (size_t i = 0; i < n; i++) k[i] = (keyed_t){score[i], i};
    qsort(k, n, sizeof *k, by_value);
    double sum = 0; /* ranks of the positives, ties sharing their mean rank */
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j + 1 < n && k[j + 1].v == k[i].v) j++;
        double r = (double)(i + j) / 2 + 1;
        for (size_t t = i; t <= j; t++)
            if (label[k[t].i] == 1) sum += r;
        i = j + 1;
    }
    free(k);
    return (sum - (double)npos * (npos + 1) / 2) / ((double)npos * nneg);
}

static int by_attention_desc(const void *a, const void *b)
{
    const keyed_t *x = a, *y = b;
    if (x->v > y->v) return -1;
    if (x->v < y->v) return 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

void ss_eval_ranks(const float *attention, size_t n, int64_t *rank, int64_t *order)
{
    keyed_t *k = malloc((n ? n : 1) * sizeof *k);
    if (!k) { /* no memory: cell order */
        for (size_t i = 0; i < n; i++) {
            if (rank) rank[i] = (int64_t)i + 1;
            if (order) order[i] = (int64_t)i;
        }
        return;
    }
    for (size_t i = 0; i < n; i++) k[i] = (keyed_t){attention[i], i};
    qsort(k, n, sizeof *k, by_attention_desc);
    for (size_t r = 0; r < n; r++) {
        if (rank) rank[k[r].i] = (int64_t)r + 1;
        if (order) order[r] = (int64_t)k[r].i;
    }
    free(k);
}

double ss_eval_recall_at_k(const int64_t *rank, const int *witness, size_t n, int64_t K,
                           int64_t *hits)
{
    int64_t w = 0, h = 0;
    for (size_t i = 0; i < n; i++) {
        w += witness[i] == 1;
        h += witness[i] == 1 && rank[i] <= K;
    }
    if (hits) *hits = h;
    if (!w || K < 1) return NAN;
    return (double)h / (double)(w < K ? w : K);
}

void ss_eval_mean_std(const double *x, size_t n, double *mean, double *std)
{
    double s = 0, s2 = 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(x[i])) s += x[i], k++;
    double m = k ? s / k : NAN;
    for (size_t i = 0; i < n; i++)
        if (isfinite(x[i])) s2 += (x[i] - m) * (x[i] - m);
    *mean = m;
    *std = k > 1 ? sqrt(s2 / (k - 1)) : (k ? 0 : NAN);
}
