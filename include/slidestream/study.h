/* slidestream — the witness-rate study (specs/methods.md §7, §8): pretraining methods × witness
 * rates × seeds on one labelled cell folder, an attention MIL aggregator on top, and the
 * paper's tables and figure from the runs.
 *
 * For each (witness rate, seed) the study simulates training and test bags (lib/bag: half
 * negative, half positive with round(WR·B) abnormal cells; test cells disjoint from training
 * cells, and from disjoint source images when the folder records them), keeps every bag's
 * crops in one crop store, and then for each method: pretrains an encoder on the training
 * bags' cells from slide labels alone (ss_pretrain_run), embeds every bag (pooled features,
 * one embedding-cache file per bag), trains the aggregator on the training bags (validation
 * split drawn from them) and evaluates it on the test bags (bag F1, accuracy, ROC-AUC,
 * Recall@K of witnesses among the top-K attended cells of positive bags).
 *
 * Layout of the study folder (a run is one (method, witness rate, seed)):
 *   study.conf                      the settings; a study resumes only with the same ones
 *   wr-<WR>/seed-<S>/bags/          bags.csv, bag_cells.csv (the plan)
 *   wr-<WR>/seed-<S>/crops.h5       every bag's crops (the crop store)
 *   wr-<WR>/seed-<S>/<method>/      train/ (encoder.h5, steps.csv, curves.svg), cache/ (one
 *                                   file per bag), mil/ (model.h5, train.csv, train.svg),
 *                                   test/ (bags.csv, instances.csv, metrics.json),
 *                                   result.csv (the run's figures and wall times: its end mark)
 *   results.csv                     every finished run, one row each
 *   table-f1.{csv,md}, table-recall.{csv,md}   mean ± std over seeds (paper Tables 2, 3)
 *   figure-1.svg                    F1 and Recall@K against witness rate, a line per method
 *                                   (also one panel a file: figure-1-f1.svg, figure-1-recall.svg)
 *   report.md                       what each number is, and the wall time of each part
 * Every step writes its outputs under temporary names renamed when complete, so a study that
 * is stopped (SIGINT/SIGTERM, a crash) continues where it stopped when run again, without
 * redoing finished runs; a pretraining cut short resumes from its last epoch.
 */
#ifndef SLIDESTREAM_STUDY_H
#define SLIDESTREAM_STUDY_H

#include <stdint.h>
#include <stdio.h>

#define SS_STUDY_MAX_METHODS 8
#define SS_STUDY_MAX_RATES 16

typedef struct {
    /* grid */
    char methods[SS_STUDY_MAX_METHODS][16]; /* trainer method names (train.h) */
    int n_methods;
    double rates[SS_STUDY_MAX_RATES]; /* witness rates, 0 < r <= 1 */
    int n_rates;
    int seeds;          /* seeds 1..seeds (bags, pretraining, aggregator) */
    /* bags */
    int bag_size;       /* cells per bag */
    int train_bags;     /* even */
    int test_bags;      /* even */
    int by_source;      /* -1 = when the folder records sources, 0 = never, 1 = required */
    /* pretraining */
    int epochs, warmup, batch;
    double lr;
    int size;           /* network input in pixels */
    double width;       /* ResNet-18 width multiplier */
    int proj;           /* projection head width (hidden = out) */
    /* aggregator */
    char arch[16];      /* mil.h architecture name */
    int mil_epochs;
    double mil_lr;      /* 0 = the architecture's default */
    int top_k;          /* K of Recall@K */
    /* running */
    int threads;        /* compute threads; 0 = all cores */
    int max_runs;       /* stop (as on a signal) after this many runs of this session; 0 = no */
    int quiet;
} ss_study_config_t;

/* "paper": the paper's settings (five methods, rates 10, 5, 1, 0.5 %, five seeds, bags of
 * 1 000 cells, 18 training and 6 test bags, 150 epochs, 224 px, PAMIL, K = 400).
 * "quick": the same grid with one seed, scaled down to run in well under 45 minutes on a
 * 2-core machine. Returns -1 (ss_error) for another name. */
int ss_study_profile(const char *name, ss_study_config_t *cfg);

/* Parses "a,b,c" into cfg->methods / cfg->rates (rates in percent when given with '%').
 * Errors name the bad item. */
int ss_study_set_methods(ss_study_config_t *cfg, const char *list);
int ss_study_set_rates(ss_study_config_t *cfg, const char *list);

/* The settings as text (what study.conf holds): one "key = value" per line. */
int ss_study_config_text(const ss_study_config_t *cfg, const char *cells, const char *normal,
                         char *buf, size_t size);

/* Checks, before any training, that the cell folder fills every (rate, seed) of the grid:
 * builds each plan and fails with the first shortfall (which rate, what is short, by how
 * much). Prints the cells the grid needs at its most demanding rate. */
int ss_study_check(const ss_study_config_t *cfg, const char *cells, const char *normal);

/* Runs the grid into out_dir (created; resumed when it holds a study with the same settings,
 * refused when the settings differ). *stop non-zero (a signal) stops at the next step
 * boundary. Returns 0 when the grid is complete (tables and figure written), 1 when stopped,
 * -1 on error. */
int ss_study_run(const ss_study_config_t *cfg, const char *cells, const char *normal,
                 const char *out_dir, volatile int *stop);

/* Reads out_dir's finished runs and writes results.csv, the two tables, figure-1.svg and
 * report.md (also called by ss_study_run at the end, and on demand for a partial grid). */
int ss_study_report(const ss_study_config_t *cfg, const char *out_dir);

/* Seconds the grid would take here, from timing a few training and inference steps at the
 * configuration's sizes and scaling by the grid's cell counts. */
double ss_study_estimate(const ss_study_config_t *cfg, FILE *log);

/* The folder of one run, e.g. "wr-0.010/seed-1/slam-ags" (relative to the study folder). */
void ss_study_run_dir(char *buf, size_t size, double rate, int seed, const char *method);

#endif
