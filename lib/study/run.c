/* The study's runs: for each (witness rate, seed) the bags and their crop store, then for each
 * method pretraining, embedding, aggregator training and evaluation. Each part leaves its
 * outputs complete or not at all, and a run's result.csv is written last, so the grid resumes
 * where it stopped. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "slidestream/bag.h"
#include "slidestream/cache.h"
#include "slidestream/cells.h"
#include "slidestream/encoder_id.h"
#include "slidestream/error.h"
#include "slidestream/log.h"
#include "slidestream/mil_eval.h"
#include "slidestream/mil_predict.h"
#include "slidestream/mil_train.h"
#include "slidestream/nn_preprocess.h"
#include "slidestream/nn_resnet.h"
#include "slidestream/study.h"
#include "slidestream/train.h"
#include "slidestream/train_store.h"
#include "study_internal.h"

#define DOM "study"

/* Paths under the study folder: its name is bounded (ss_study_run) so that these fit. */
static void path_of(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void path_of(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, size, fmt, ap);
    va_end(ap);
}

static int exists(const char *path)
{
    return access(path, F_OK) == 0;
}

int study_mkdirs(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return ss_error(DOM, "path too long: %s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || !*p) {
            char c = *p;
            *p = 0;
            if (mkdir(buf, 0777) && errno != EEXIST)
                return ss_error_system(DOM, "cannot create directory %s", buf);
            *p = c;
            if (!c) break;
        }
    }
    return 0;
}

int study_write_file(const char *path, const char *text)
{
    char tmp[4200];
    path_of(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return ss_error_system(DOM, "cannot write %s", tmp);
    int bad = fputs(text, f) < 0;
    if (fclose(f) || bad) {
        unlink(tmp);
        return ss_error_system(DOM, "cannot write %s", tmp);
    }
    if (rename(tmp, path)) {
        unlink(tmp);
        return ss_error_system(DOM, "cannot rename %s to %s", tmp, path);
    }
    return 0;
}

/* ---- the crop store of one (rate, seed) ---------------------------------------------------- */

/* Every bag's cells, in bag order (a bag's k-th cell gets cell id k, as bag_cells.csv numbers
 * them), cut to the side of the first image; test bags are recorded with split "test", which
 * pretraining leaves out. */
static int write_crops(const ss_study_config_t *c, const ss_cellset_t *cs,
                       const ss_bag_plan_t *plan, const char *path)
{
    ss_crop_writer_t *w = NULL;
    uint8_t *rgb = NULL, *crop = NULL;
    int side = 0, rc = 0;
    for (size_t b = 0; !rc && b < plan->n; b++) {
        const ss_bag_t *bag = &plan->bags[b];
        for (size_t k = 0; !rc && k < bag->n_cells; k++) {
            const ss_cell_image_t *ci = &cs->cells[bag->cells[k]];
            int iw = 0, ih = 0;
            free(rgb);
            rgb = NULL;
            if (ss_image_load_rgb(ci->path, &rgb, &iw, &ih)) {
                rc = -1;
                break;
            }
            if (!w) { /* the first image sets the store's crop side */
                side = iw < ih ? iw : ih;
                if (side < c->size) {
                    rc = ss_error(DOM, "%s is %dx%d px, smaller than the network input --size %d",
                                  ci->path, iw, ih, c->size);
                    break;
                }
                if (!(crop = malloc((size_t)side * side * 3))) {
                    rc = ss_error(DOM, "out of memory");
                    break;
                }
                if (!(w = ss_crop_writer_new(path, side))) {
                    rc = -1;
                    break;
                }
            }
            if (iw < side || ih < side) {
                rc = ss_error(DOM, "%s is %dx%d px, smaller than the other cells (%d px)", ci->path,
                              iw, ih, side);
                break;
            }
            int x0 = ss_nn_centre_offset(iw, side), y0 = ss_nn_centre_offset(ih, side);
            for (int y = 0; y < side; y++)
                memcpy(crop + (size_t)y * side * 3, rgb + ((size_t)(y0 + y) * iw + x0) * 3,
                       (size_t)side * 3);
            ss_crop_info_t info = {.bag_id = (uint32_t)b,
                                   .label = bag->label,
                                   .cell_id = (uint64_t)k,
                                   .x = iw / 2,
                                   .y = ih / 2,
                                   .source = ci->source >= 0 ? cs->sources[ci->source] : ci->cell_id};
            if (k == 0 && ss_crop_writer_add_bag(w, (uint32_t)b, bag->id, bag->label,
                                                 bag->split == SS_BAG_TEST ? "test" : "train"))
                rc = -1;
            if (!rc && ss_crop_writer_add(w, crop, side, &info)) rc = -1;
        }
    }
    free(rgb);
    free(crop);
    if (rc) {
        ss_crop_writer_abort(&w);
        return -1;
    }
    return ss_crop_writer_finish(&w);
}

/* ---- the aggregator ---------------------------------------------------------------------- */

static int train_and_test(const ss_study_config_t *c, int seed, const char *cache_dir,
                          const char *witness_csv, const char *run_dir, study_result_t *res)
{
    char mil_dir[4200], test_dir[4200], path[4300];
    path_of(mil_dir, sizeof mil_dir, "%s/mil", run_dir);
    path_of(test_dir, sizeof test_dir, "%s/test", run_dir);
    ss_mil_bags_t all = {0};
    ss_mil_witnesses_t *wit = NULL;
    ss_mil_t *m = NULL;
    int rc = ss_mil_bags_open(cache_dir, &all);
    ss_mil_arch_t arch;
    ss_mil_arch_parse(c->arch, &arch);
    if (!rc) {
        ss_mil_config_t mc = ss_mil_config_default(arch, all.dim);
        mc.seed = (uint64_t)seed;
        if (!(m = ss_mil_new(&mc))) rc = -1;
    }
    if (!rc) {
        ss_mil_train_config_t tc = ss_mil_train_config_default(arch);
        tc.epochs = c->mil_epochs;
        if (c->mil_lr > 0) tc.lr = c->mil_lr;
        tc.seed = (uint64_t)seed;
        tc.quiet = 1;
        rc = ss_mil_fit(m, &all, &tc, mil_dir);
    }
    /* the test bags alone */
    if (!rc && !ss_mil_bags_keep_split(&all, "test"))
        rc = ss_error(DOM, "%s holds no test bags", cache_dir);
    if (!rc && !(wit = ss_mil_witnesses_load(witness_csv))) rc = -1;
    if (!rc) {
        ss_mil_predict_config_t pc = {.top_k = c->top_k, .witnesses = wit, .quiet = 1};
        rc = ss_mil_predict(m, &all, &pc, test_dir);
    }
    res->test_bags = (int)all.n;
    ss_mil_witnesses_free(&wit);
    ss_mil_destroy(&m);
    ss_mil_bags_free(&all);
    if (rc) return -1;
    path_of(path, sizeof path, "%s/metrics.json", test_dir);
    FILE *f = fopen(path, "r");
    if (!f) return ss_error_system(DOM, "cannot read %s", path);
    char text[4096];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    res->f1 = ss_mil_metrics_value(text, "f1");
    res->accuracy = ss_mil_metrics_value(text, "accuracy");
    res->auc = ss_mil_metrics_value(text, "roc_auc");
    res->recall = ss_mil_metrics_value(text, "recall_at_k");
    return 0;
}

/* ---- results --------------------------------------------------------------------------- */

static int result_write(const char *dir, const study_result_t *r)
{
    char path[4200], text[1024];
    path_of(path, sizeof path, "%s/result.csv", dir);
    snprintf(text, sizeof text, STUDY_RESULT_HEADER "\n%s,%.6g,%d,%.6f,%.6f,%.6f,%.6f,%d,%d,%d,%.1f,%.1f,%.1f\n",
             r->method, r->rate, r->seed, r->f1, r->accuracy, r->auc, r->recall, r->top_k,
             r->witnesses, r->test_bags, r->pretrain_s, r->embed_s, r->mil_s);
    return study_write_file(path, text);
}

int study_result_read(const char *dir, study_result_t *r)
{
    char path[4200], line[1024], *f[16];
    path_of(path, sizeof path, "%s/result.csv", dir);
    FILE *fp = fopen(path, "r");
    if (!fp) return errno == ENOENT ? 1 : ss_error_system(DOM, "cannot read %s", path);
    int ok = fgets(line, sizeof line, fp) && fgets(line, sizeof line, fp);
    fclose(fp);
    int n = 0;
    char *save = NULL;
    for (char *t = ok ? strtok_r(line, ",\n", &save) : NULL; t && n < 16; t = strtok_r(NULL, ",\n", &save))
        f[n++] = t;
    if (n != 13) return ss_error(DOM, "%s: want one row of 13 fields after the header", path);
    memset(r, 0, sizeof *r);
    snprintf(r->method, sizeof r->method, "%s", f[0]);
    r->rate = atof(f[1]);
    r->seed = atoi(f[2]);
    r->f1 = strtod(f[3], NULL), r->accuracy = strtod(f[4], NULL), r->auc = strtod(f[5], NULL);
    r->recall = strtod(f[6], NULL);
    r->top_k = atoi(f[7]), r->witnesses = atoi(f[8]), r->test_bags = atoi(f[9]);
    r->pretrain_s = atof(f[10]), r->embed_s = atof(f[11]), r->mil_s = atof(f[12]);
    return 0;
}

/* ---- the grid ---------------------------------------------------------------------------- */

typedef struct {
    const ss_study_config_t *c;
    volatile int *stop;
    int run, runs;        /* this run's number (1-based) and the grid's */
    int done_before;      /* runs finished in earlier sessions */
    int done_now;         /* runs finished in this session */
    double t0;            /* this session's start */
    double run_t0;        /* this run's start */
    long steps, steps_planned;
    double last_print;
    const char *label;    /* "slam-ags WR 1% seed 1" */
} progress_t;

static void print_progress(progress_t *p, const char *part, int force)
{
    double now = ss_now();
    if (p->c->quiet || (!force && now - p->last_print < 15)) return;
    p->last_print = now;
    double frac = p->steps_planned ? (double)p->steps / (double)p->steps_planned : 0;
    if (frac > 1) frac = 1;
    double done = p->done_now + 0.9 * frac, left = p->runs - p->done_before - p->done_now - 0.9 * frac;
    char eta[64] = "ETA after the first run";
    if (done > 0.05) {
        double s = (now - p->t0) / done * left;
        if (s < 90)
            snprintf(eta, sizeof eta, "grid ETA %.0f s", s);
        else if (s < 5400)
            snprintf(eta, sizeof eta, "grid ETA %.0f min", s / 60);
        else
            snprintf(eta, sizeof eta, "grid ETA %.1f h", s / 3600);
    }
    ss_info("study: [%d/%d] %s: %s (%.0f s) — %s", p->run, p->runs, p->label, part,
            now - p->run_t0, eta);
}

static void tick(void *arg)
{
    progress_t *p = arg;
    p->steps++;
    char part[64];
    snprintf(part, sizeof part, "pretraining, step %ld of ~%ld", p->steps, p->steps_planned);
    print_progress(p, part, 0);
}

static int make_init(const ss_study_config_t *c, ss_train_method_t method, int seed,
                     const char *path)
{
    if (exists(path)) return 0;
    ss_resnet_config_t rc = ss_resnet_config_default(18);
    rc.width_multiplier = c->width;
    rc.input_size = c->size;
    rc.seed = (uint64_t)seed;
    if (method == SS_TRAIN_SUPERVISED)
        rc.num_classes = 2;
    else
        rc.proj_hidden = rc.proj_out = c->proj;
    ss_resnet_t *m = ss_resnet_new(&rc, 1, 0);
    int r = m ? ss_resnet_save(m, path) : -1;
    ss_resnet_destroy(&m);
    return r;
}

/* One run. 0 done, 1 stopped, -1 error. */
static int one_run(const ss_study_config_t *c, const char *group_dir, const char *method_name,
                   double rate, int seed, int witnesses, progress_t *p)
{
    char run[4200], path[4400], train_dir[4400], cache[4400], wcsv[4400], store[4400];
    path_of(run, sizeof run, "%s/%s", group_dir, method_name);
    path_of(train_dir, sizeof train_dir, "%s/train", run);
    path_of(cache, sizeof cache, "%s/cache", run);
    path_of(wcsv, sizeof wcsv, "%s/bags/bag_cells.csv", group_dir);
    path_of(store, sizeof store, "%s/crops.h5", group_dir);
    if (study_mkdirs(train_dir)) return -1;
    ss_train_method_t method;
    ss_train_method_parse(method_name, &method);
    study_result_t res = {0};
    snprintf(res.method, sizeof res.method, "%s", method_name);
    res.rate = rate, res.seed = seed, res.top_k = c->top_k, res.witnesses = witnesses;

    /* pretraining (resumes from last.h5 when a previous session was stopped) */
    path_of(path, sizeof path, "%s/encoder.h5", train_dir);
    char tfile[4400];
    path_of(tfile, sizeof tfile, "%s/pretrain_seconds", run);
    double t = ss_now();
    if (!exists(path)) {
        char init[4400], last[4400];
        path_of(init, sizeof init, "%s/init.h5", run);
        path_of(last, sizeof last, "%s/last.h5", train_dir);
        if (make_init(c, method, seed, init)) return -1;
        ss_pretrain_config_t pc = ss_pretrain_config_default(method);
        pc.epochs = c->epochs;
        pc.warmup_epochs = c->warmup;
        pc.lr = c->lr;
        pc.batch = c->batch;
        pc.size = c->size;
        pc.seed = (uint64_t)seed;
        pc.keep = 1;
        pc.stop = p->stop;
        pc.tick = tick;
        pc.tick_arg = p;
        pc.quiet = 1;
        print_progress(p, "pretraining", 1);
        int r = ss_pretrain_run(&pc, store, init, train_dir, exists(last));
        if (r) return r;
        char secs[64];
        snprintf(secs, sizeof secs, "%.1f\n", ss_now() - t);
        if (study_write_file(tfile, secs)) return -1;
    }
    FILE *tf = fopen(tfile, "r");
    if (tf) {
        if (fscanf(tf, "%lf", &res.pretrain_s) != 1) res.pretrain_s = NAN;
        fclose(tf);
    }
    if (*p->stop) return 1;

    t = ss_now();
    print_progress(p, "embedding the bags", 1);
    if (ss_crop_store_embed(store, path, "pooled", cache, 1)) return -1;
    res.embed_s = ss_now() - t;
    if (*p->stop) return 1;

    t = ss_now();
    print_progress(p, "training and testing the aggregator", 1);
    if (train_and_test(c, seed, cache, wcsv, run, &res)) return -1;
    res.mil_s = ss_now() - t;
    if (result_write(run, &res)) return -1;
    if (!c->quiet)
        ss_info("study: [%d/%d] %s: F1 %.3f, Recall@%d %.3f (pretraining %.0f s, embedding %.0f s, "
                "aggregator %.0f s)",
                p->run, p->runs, p->label, res.f1, c->top_k, res.recall, res.pretrain_s,
                res.embed_s, res.mil_s);
    return 0;
}

/* The bags and the crop store of one (rate, seed). */
static int prepare_group(const ss_study_config_t *c, const ss_cellset_t *cs, double rate, int seed,
                         const char *group_dir, int *witnesses)
{
    char path[4400];
    ss_bag_plan_t *plan = NULL;
    if (study_plan(c, cs, rate, seed, &plan)) return -1;
    *witnesses = plan->witnesses_per_positive;
    int rc = 0;
    path_of(path, sizeof path, "%s/bags/bag_cells.csv", group_dir);
    if (!exists(path)) {
        path_of(path, sizeof path, "%s/bags", group_dir);
        rc = study_mkdirs(path) || ss_bag_plan_write(plan, cs, path) ? -1 : 0;
    }
    path_of(path, sizeof path, "%s/crops.h5", group_dir);
    if (!rc && !exists(path)) rc = write_crops(c, cs, plan, path);
    ss_bag_plan_destroy(&plan);
    return rc;
}

static int check_settings(const char *out_dir, const char *text)
{
    char path[4200];
    path_of(path, sizeof path, "%s/study.conf", out_dir);
    FILE *f = fopen(path, "r");
    if (!f) return study_write_file(path, text);
    char old[8192];
    size_t n = fread(old, 1, sizeof old - 1, f);
    fclose(f);
    old[n] = 0;
    if (!strcmp(old, text)) return 0;
    /* name the first setting that differs */
    const char *a = old, *b = text;
    while (*a && *b) {
        const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');
        size_t la = ea ? (size_t)(ea - a) : strlen(a), lb = eb ? (size_t)(eb - b) : strlen(b);
        if (la != lb || memcmp(a, b, la))
            return ss_error(DOM,
                            "%s holds a study with other settings (it has '%.*s', this run asks "
                            "'%.*s'): use another --out, or the same settings to resume it",
                            out_dir, (int)la, a, (int)lb, b);
        a += la + (ea != NULL), b += lb + (eb != NULL);
    }
    return ss_error(DOM, "%s holds a study with other settings (see %s)", out_dir, path);
}

int ss_study_run(const ss_study_config_t *c, const char *cells, const char *normal,
                 const char *out_dir, volatile int *stop)
{
    char text[8192], abs_cells[PATH_MAX];
    if (strlen(out_dir) > 2048) return ss_error(DOM, "--out %.40s...: path too long", out_dir);
    if (ss_study_check(c, cells, normal)) return -1;
    if (!realpath(cells, abs_cells)) return ss_error_system(DOM, "cannot open %s", cells);
    if (ss_study_config_text(c, abs_cells, normal, text, sizeof text) || study_mkdirs(out_dir) ||
        check_settings(out_dir, text))
        return -1;
    ss_cellset_t *cs = NULL;
    if (ss_cellset_load(cells, normal, &cs)) return -1;
    progress_t p = {.c = c, .stop = stop, .runs = c->n_rates * c->seeds * c->n_methods, .t0 = ss_now()};
    char group[4400], rdir[4600], label[128];
    study_result_t r;
    for (int ri = 0; ri < c->n_rates; ri++)
        for (int s = 1; s <= c->seeds; s++)
            for (int m = 0; m < c->n_methods; m++) {
                ss_study_run_dir(rdir, sizeof rdir, c->rates[ri], s, c->methods[m]);
                path_of(group, sizeof group, "%s/%s", out_dir, rdir);
                if (study_result_read(group, &r) == 0) p.done_before++;
            }
    if (!c->quiet)
        ss_info("study: %d runs (%d methods x %d witness rates x %d seeds), %d already finished",
                p.runs, c->n_methods, c->n_rates, c->seeds, p.done_before);
    int rc = 0;
    double t_prepare = 0;
    for (int ri = 0; !rc && ri < c->n_rates; ri++)
        for (int s = 1; !rc && s <= c->seeds; s++) {
            double rate = c->rates[ri];
            ss_study_run_dir(rdir, sizeof rdir, rate, s, NULL);
            path_of(group, sizeof group, "%s/%s", out_dir, rdir);
            int pending = 0, witnesses = 0;
            for (int m = 0; m < c->n_methods; m++) {
                path_of(rdir, sizeof rdir, "%s/%s", group, c->methods[m]);
                pending += study_result_read(rdir, &r) != 0;
            }
            if (!pending) {
                p.run += c->n_methods;
                continue;
            }
            double t = ss_now();
            if (study_mkdirs(group) || prepare_group(c, cs, rate, s, group, &witnesses)) {
                rc = -1;
                break;
            }
            t_prepare += ss_now() - t;
            for (int m = 0; !rc && m < c->n_methods; m++) {
                p.run++;
                path_of(rdir, sizeof rdir, "%s/%s", group, c->methods[m]);
                if (study_result_read(rdir, &r) == 0) continue;
                snprintf(label, sizeof label, "%s WR %g%% seed %d", c->methods[m], 100 * rate, s);
                p.label = label;
                p.run_t0 = ss_now();
                p.steps = 0;
                /* steps of the pretraining: every training cell once per epoch */
                long cells_tr = (long)c->train_bags * c->bag_size;
                p.steps_planned = (long)c->epochs * ((cells_tr + c->batch - 1) / c->batch);
                rc = one_run(c, group, c->methods[m], rate, s, witnesses, &p);
                if (rc == 0) p.done_now++;
                if (!rc && (*stop || (c->max_runs && p.done_now >= c->max_runs))) rc = 1;
            }
        }
    ss_cellset_destroy(&cs);
    if (rc < 0) {
        ss_error_report("study failed");
        return -1;
    }
    if (!c->quiet && t_prepare > 0)
        ss_info("study: bags and crop stores took %.0f s in this session", t_prepare);
    if (ss_study_report(c, out_dir)) return -1;
    if (rc == 1) {
        if (!c->quiet)
            ss_info("study: stopped after %d of %d runs; run the same command again to continue",
                    p.done_before + p.done_now, p.runs);
        return 1;
    }
    return 0;
}
