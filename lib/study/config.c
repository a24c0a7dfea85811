/* The study's settings: profiles, lists from flags, the settings text a study folder keeps,
 * and the check that a cell folder can fill the grid before anything trains. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/bag.h"
#include "slidestream/error.h"
#include "slidestream/log.h"
#include "slidestream/mil.h"
#include "slidestream/study.h"
#include "slidestream/train.h"
#include "study_internal.h"

static const char *const PAPER_METHODS = "supervised,simclr,weaksupcon,pcgrad,slam-ags";
static const char *const PAPER_RATES = "10%,5%,1%,0.5%";

int ss_study_profile(const char *name, ss_study_config_t *c)
{
    memset(c, 0, sizeof *c);
    if (ss_study_set_methods(c, PAPER_METHODS) || ss_study_set_rates(c, PAPER_RATES)) return -1;
    snprintf(c->arch, sizeof c->arch, "pamil");
    c->by_source = -1;
    c->warmup = 1;
    c->proj = 128;
    c->mil_lr = 0;
    if (!strcmp(name, "paper")) {
        c->seeds = 5;
        c->bag_size = 1000;
        c->train_bags = 18;
        c->test_bags = 6;
        c->epochs = 150;
        c->warmup = 10;
        c->batch = 256;
        c->lr = 1e-3;
        c->size = 224;
        c->width = 1.0;
        c->proj = 512;
        c->mil_epochs = 100;
        c->top_k = 400;
        return 0;
    }
    if (!strcmp(name, "quick")) {
        /* bags of 200 keep the four rates apart (20, 10, 2 and 1 witnesses; bags of 100 would
         * give 0.5 % and 1 % the same single witness) */
        c->seeds = 1;
        c->bag_size = 200;
        c->train_bags = 8;
        c->test_bags = 6;
        c->epochs = 3;
        c->batch = 64;
        c->lr = 0.01;
        c->size = 64;
        c->width = 0.25;
        c->mil_epochs = 40;
        c->top_k = 80;
        return 0;
    }
    return ss_error("study", "unknown profile '%s' (paper or quick)", name);
}

/* Calls take(c, item) for each item of a comma list; errors name the flag. */
static int each_item(ss_study_config_t *c, const char *flag, const char *list,
                     int (*take)(ss_study_config_t *c, const char *item))
{
    char buf[512];
    if (snprintf(buf, sizeof buf, "%s", list) >= (int)sizeof buf)
        return ss_error("study", "%s '%s': too long", flag, list);
    int n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save), n++)
        if (take(c, t)) return -1;
    return n ? 0 : ss_error("study", "%s: nothing given", flag);
}

static int take_method(ss_study_config_t *c, const char *t)
{
    ss_train_method_t m;
    if (ss_train_method_parse(t, &m))
        return ss_error("study", "--methods: '%s' is not a pretraining method (slam-ags, pcgrad, "
                                 "cagrad, mgda, weaksupcon, simclr, supervised)",
                        t);
    if (c->n_methods == SS_STUDY_MAX_METHODS)
        return ss_error("study", "--methods: at most %d methods", SS_STUDY_MAX_METHODS);
    for (int i = 0; i < c->n_methods; i++)
        if (!strcmp(c->methods[i], ss_train_method_name(m)))
            return ss_error("study", "--methods: '%s' given twice", t);
    snprintf(c->methods[c->n_methods++], sizeof c->methods[0], "%s", ss_train_method_name(m));
    return 0;
}

static int take_rate(ss_study_config_t *c, const char *t)
{
    char *end;
    double v = strtod(t, &end);
    if (*end == '%') v /= 100, end++;
    if (end == t || *end || !(v > 0 && v <= 1))
        return ss_error("study", "--rates: '%s' is not a witness rate (0 < r <= 1, or a "
                                 "percentage such as 0.5%%)",
                        t);
    if (c->n_rates == SS_STUDY_MAX_RATES)
        return ss_error("study", "--rates: at most %d rates", SS_STUDY_MAX_RATES);
    for (int i = 0; i < c->n_rates; i++)
        if (fabs(c->rates[i] - v) < 1e-12) return ss_error("study", "--rates: '%s' given twice", t);
    c->rates[c->n_rates++] = v;
    return 0;
}

int ss_study_set_methods(ss_study_config_t *c, const char *list)
{
    c->n_methods = 0;
    return each_item(c, "--methods", list, take_method);
}

int ss_study_set_rates(ss_study_config_t *c, const char *list)
{
    c->n_rates = 0;
    if (each_item(c, "--rates", list, take_rate)) return -1;
    /* highest rate first, as the paper's tables */
    for (int i = 1; i < c->n_rates; i++)
        for (int j = i; j > 0 && c->rates[j] > c->rates[j - 1]; j--) {
            double t = c->rates[j];
            c->rates[j] = c->rates[j - 1];
            c->rates[j - 1] = t;
        }
    return 0;
}

int ss_study_config_text(const ss_study_config_t *c, const char *cells, const char *normal,
                         char *buf, size_t size)
{
    size_t n = 0;
#define PUT(...)                                                                                   \
    do {                                                                                           \
        int w_ = snprintf(buf + n, n < size ? size - n : 0, __VA_ARGS__);                          \
        if (w_ < 0 || (n += (size_t)w_) >= size) return ss_error("study", "settings too long");   \
    } while (0)
    PUT("cells = %s\nnormal = %s\nmethods = ", cells, normal);
    for (int i = 0; i < c->n_methods; i++) PUT("%s%s", i ? "," : "", c->methods[i]);
    PUT("\nrates = ");
    for (int i = 0; i < c->n_rates; i++) PUT("%s%.6g", i ? "," : "", c->rates[i]);
    PUT("\nseeds = %d\nbag_size = %d\ntrain_bags = %d\ntest_bags = %d\nby_source = %d\n",
        c->seeds, c->bag_size, c->train_bags, c->test_bags, c->by_source);
    PUT("epochs = %d\nwarmup = %d\nbatch = %d\nlr = %.6g\nsize = %d\nwidth = %.6g\nproj = %d\n",
        c->epochs, c->warmup, c->batch, c->lr, c->size, c->width, c->proj);
    PUT("arch = %s\nmil_epochs = %d\nmil_lr = %.6g\ntop_k = %d\n", c->arch, c->mil_epochs,
        c->mil_lr, c->top_k);
#undef PUT
    return 0;
}

void ss_study_run_dir(char *buf, size_t size, double rate, int seed, const char *method)
{
    snprintf(buf, size, "wr-%.4f/seed-%d%s%s", rate, seed, method ? "/" : "", method ? method : "");
}

int study_plan(const ss_study_config_t *c, const ss_cellset_t *cs, double rate, int seed,
               ss_bag_plan_t **plan)
{
    ss_bag_sim_opts_t o;
    ss_bag_sim_opts_default(&o);
    o.n_bags = c->train_bags;
    o.n_test_bags = c->test_bags;
    o.bag_size = c->bag_size;
    o.witness_rate = rate;
    o.seed = (uint64_t)seed;
    o.by_source = c->by_source > 0 || (c->by_source < 0 && cs->n_sources && !cs->n_unsourced);
    return ss_bag_simulate(cs, &o, plan);
}

int study_validate(const ss_study_config_t *c)
{
    if (c->seeds < 1) return ss_error("study", "--seeds %d: need at least 1", c->seeds);
    if (c->train_bags < 4 || c->train_bags % 2)
        return ss_error("study", "--train-bags %d: need an even count of at least 4 (a validation "
                                 "split is drawn from them)",
                        c->train_bags);
    if (c->test_bags < 2 || c->test_bags % 2)
        return ss_error("study", "--test-bags %d: need an even count of at least 2", c->test_bags);
    if (c->bag_size < 2) return ss_error("study", "--bag-size %d: too small", c->bag_size);
    if (c->epochs < 1 || c->warmup < 0 || c->warmup > c->epochs)
        return ss_error("study", "--epochs %d / --warmup %d: need epochs >= 1 and 0 <= warmup <= "
                                 "epochs",
                        c->epochs, c->warmup);
    if (c->batch < 4) return ss_error("study", "--batch %d: need at least 4", c->batch);
    if (c->size < 32) return ss_error("study", "--size %d: need at least 32 px", c->size);
    if (!(c->width > 0 && c->width <= 4)) return ss_error("study", "--width %g: out of range", c->width);
    if (c->mil_epochs < 1) return ss_error("study", "--mil-epochs %d: need at least 1", c->mil_epochs);
    if (c->top_k < 1) return ss_error("study", "--top-k %d: need at least 1", c->top_k);
    ss_mil_arch_t a;
    if (ss_mil_arch_parse(c->arch, &a))
        return ss_error("study", "--arch '%s': not an aggregator (abmil, pamil, abmilx, dtfd)",
                        c->arch);
    return 0;
}

int ss_study_check(const ss_study_config_t *c, const char *cells, const char *normal)
{
    if (study_validate(c)) return -1;
    ss_cellset_t *cs = NULL;
    if (ss_cellset_load(cells, normal, &cs)) return -1;
    int rc = 0;
    if (c->by_source > 0 && (!cs->n_sources || cs->n_unsourced))
        rc = ss_error("study", "--by-source: %zu of %zu cells in %s have no source image (no "
                               "cells.csv beside the class folders?)",
                      cs->n_unsourced, cs->n, cells);
    for (int r = 0; !rc && r < c->n_rates; r++)
        for (int s = 1; !rc && s <= c->seeds; s++) {
            ss_bag_plan_t *plan = NULL;
            if (study_plan(c, cs, c->rates[r], s, &plan)) {
                char why[1024];
                snprintf(why, sizeof why, "%s", ss_error_last());
                rc = ss_error("study",
                              "the cell folder %s cannot fill the grid at witness rate %g%% "
                              "(seed %d): %s",
                              cells, 100 * c->rates[r], s, why);
            }
            ss_bag_plan_destroy(&plan);
        }
    for (int r = 1; !rc && !c->quiet && r < c->n_rates; r++)
        if (ss_bag_witness_count(c->rates[r], c->bag_size) ==
            ss_bag_witness_count(c->rates[r - 1], c->bag_size))
            ss_warn("study: witness rates %g%% and %g%% both give %d witnesses in bags of %d: "
                    "the same bags twice (larger --bag-size keeps them apart)",
                    100 * c->rates[r - 1], 100 * c->rates[r],
                    ss_bag_witness_count(c->rates[r], c->bag_size), c->bag_size);
    if (!rc && !c->quiet) {
        int k = ss_bag_witness_count(c->rates[0], c->bag_size);
        long nb = c->train_bags + c->test_bags;
        ss_info("study: %s: %zu normal and %zu abnormal cells%s; each (rate, seed) takes %ld bags "
                "of %d (up to %ld normal and %ld abnormal cells)",
                cells, cs->n_normal, cs->n_abnormal,
                cs->n_sources && !cs->n_unsourced ? ", source images recorded" : "", nb,
                c->bag_size, nb * c->bag_size - nb / 2 * ss_bag_witness_count(c->rates[c->n_rates - 1], c->bag_size),
                nb / 2 * k);
    }
    ss_cellset_destroy(&cs);
    return rc;
}
