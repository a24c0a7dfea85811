/* Private to lib/study: shared between the settings, the runs and the report. */
#ifndef SS_STUDY_INTERNAL_H
#define SS_STUDY_INTERNAL_H

#include "slidestream/bag.h"
#include "slidestream/study.h"

/* The bags of one (rate, seed): the settings' sizes, by source when asked or recorded. */
int study_plan(const ss_study_config_t *c, const ss_cellset_t *cs, double rate, int seed,
               ss_bag_plan_t **plan);

/* Range checks of the settings; errors name the flag. */
int study_validate(const ss_study_config_t *c);

/* One finished run, as its result.csv holds it. */
typedef struct {
    char method[16];
    double rate;
    int seed;
    double f1, accuracy, auc, recall;
    int top_k, witnesses, test_bags;
    double pretrain_s, embed_s, mil_s;
} study_result_t;

#define STUDY_RESULT_HEADER                                                                        \
    "method,witness_rate,seed,f1,accuracy,roc_auc,recall_at_k,top_k,witnesses_per_positive,"      \
    "test_bags,pretrain_s,embed_s,mil_s"

/* Reads <dir>/result.csv; 1 when absent (the run is not finished), -1 when unreadable. */
int study_result_read(const char *dir, study_result_t *r);

/* Human names of the methods, as the paper's tables name them. */
const char *study_method_label(const char *method);

/* mkdir -p; errors name the path. */
int study_mkdirs(const char *path);

/* Write text to path through path.tmp and a rename. */
int study_write_file(const char *path, const char *text);

#endif
