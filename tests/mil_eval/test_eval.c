/* mil.eval — bag metrics and attention retrieval on cases worked out by hand. */
#include <math.h>

#include "check.h"
#include "slidestream/mil_eval.h"

int main(void)
{
    /* 6 bags: labels 1 1 1 0 0 0; predictions 1 0 1 1 0 0 -> tp 2, fp 1, fn 1 */
    int label[] = {1, 1, 1, 0, 0, 0}, pred[] = {1, 0, 1, 1, 0, 0};
    CHECK_NEAR(ss_eval_accuracy(pred, label, 6), 4.0 / 6, 1e-12, 0);
    CHECK_NEAR(ss_eval_f1(pred, label, 6), 2.0 * 2 / (2 * 2 + 1 + 1), 1e-12, 0);
    int none[] = {0, 0, 0, 0, 0, 0};
    CHECK(ss_eval_f1(none, label, 6) == 0.0, "F1 without predicted positives is 0");
    /* AUC: scores of positives .9 .4 .7, negatives .8 .1 .4 -> pairs won: .9 beats 3,
     * .4 beats .1 and ties .4 (1.5), .7 beats .1 .4 (2) -> 6.5 / 9 */
    double score[] = {0.9, 0.4, 0.7, 0.8, 0.1, 0.4};
    CHECK_NEAR(ss_eval_auc(score, label, 6), 6.5 / 9, 1e-12, 0);
    CHECK(isnan(ss_eval_auc(score, none, 6)), "AUC with one class is NaN");
    /* attention of 5 cells; ranks by descending attention, ties by cell order */
    float att[] = {0.1f, 0.4f, 0.2f, 0.2f, 0.1f};
    int64_t rank[5], order[5];
    ss_eval_ranks(att, 5, rank, order);
    int64_t want_rank[] = {4, 1, 2, 3, 5}, want_order[] = {1, 2, 3, 0, 4};
    for (int i = 0; i < 5; i++) {
        CHECK(rank[i] == want_rank[i], "rank[%d] = %lld", i, (long long)rank[i]);
        CHECK(order[i] == want_order[i], "order[%d] = %lld", i, (long long)order[i]);
    }
    /* witnesses: cells 1 and 4 -> top-2 holds one of two: 0.5; top-1 holds cell 1: 1/min(1,2) */
    int wit[] = {0, 1, 0, 0, 1};
    int64_t hits;
    CHECK_NEAR(ss_eval_recall_at_k(rank, wit, 5, 2, &hits), 0.5, 1e-12, 0);
    CHECK(hits == 1, "hits %lld", (long long)hits);
    CHECK_NEAR(ss_eval_recall_at_k(rank, wit, 5, 1, NULL), 1.0, 1e-12, 0);
    CHECK_NEAR(ss_eval_recall_at_k(rank, wit, 5, 400, NULL), 1.0, 1e-12, 0); /* K > n */
    int nowit[] = {0, 0, 0, 0, 0};
    CHECK(isnan(ss_eval_recall_at_k(rank, nowit, 5, 2, NULL)), "no witnesses: NaN");
    double xs[] = {1, 2, 3, 4, NAN}, m, s;
    ss_eval_mean_std(xs, 5, &m, &s);
    CHECK_NEAR(m, 2.5, 1e-12, 0);
    CHECK_NEAR(s, sqrt(5.0 / 3), 1e-12, 0);
    return check_exit("mil.eval");
}
