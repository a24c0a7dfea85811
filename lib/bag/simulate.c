/* Witness-rate bag simulation (specs/methods.md §7) and the bag manifests.
 *
 * The normal and abnormal pools are each shuffled once with the seed, then consumed front to
 * back: training negatives, training positives, test negatives, test positives. A cell is
 * therefore used at most once in the whole plan — train and test are disjoint by construction,
 * and ss_bag_simulate re-checks it before returning. The plan owns its bags and index arrays.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "slidestream/bag.h"
#include "slidestream/error.h"

void ss_bag_sim_opts_default(ss_bag_sim_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->seed = 1;
}

int ss_bag_witness_count(double wr, int bag_size)
{
    /* the epsilon absorbs binary representation error (0.005 is stored as 0.00499999...) */
    return (int)floor(wr * (double)bag_size + 0.5 + 1e-9);
}

/* splitmix64: a small, seedable, well-mixed sequence */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n) by rejection, so the shuffle has no modulo bias. */
static size_t below(uint64_t *s, size_t n)
{
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    uint64_t r;
    do
        r = next_u64(s);
    while (r >= lim);
    return (size_t)(r % n);
}

static void shuffle(size_t *a, size_t n, uint64_t *s)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = below(s, i);
        size_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

void ss_bag_plan_destroy(ss_bag_plan_t **pp)
{
    if (!pp || !*pp) return;
    ss_bag_plan_t *p = *pp;
    for (size_t i = 0; i < p->n; i++)
        free(p->bags[i].cells);
    free(p->bags);
    free(p);
    *pp = NULL;
}

typedef struct {
    size_t *idx;
    size_t n, next;
} pool_t;

static size_t take(pool_t *p)
{
    return p->idx[p->next++];
}

/* Source images for the test bags: sources in a seeded order are set aside until their cells
 * cover the test bags' needs; the rest are for training. Returns a flag per source (1 = test),
 * NULL with an error naming what is short. */
static unsigned char *split_sources(const ss_cellset_t *cs, uint64_t nn_te, uint64_t na_te,
                                    uint64_t nn_tr, uint64_t na_tr, uint64_t seed)
{
    if (cs->n_sources == 0 || cs->n_unsourced > 0) {
        ss_error("bag",
                 "train and test from disjoint source images needs each cell's source (a "
                 "cells.csv beside the class folders, as `slidestream cells from-labels` writes); "
                 "%zu of %zu cells have none",
                 cs->n_unsourced, cs->n);
        return NULL;
    }
    size_t ns = cs->n_sources;
    uint64_t *cnt = calloc(2 * ns, sizeof *cnt); /* normal, abnormal cells per source */
    size_t *order = malloc(ns * sizeof *order);
    unsigned char *test = calloc(ns, 1);
    if (!cnt || !order || !test) {
        free(cnt);
        free(order);
        free(test);
        ss_error("bag", "out of memory splitting %zu source images", ns);
        return NULL;
    }
    for (size_t i = 0; i < cs->n; i++) cnt[2 * (size_t)cs->cells[i].source + cs->cells[i].abnormal]++;
    for (size_t i = 0; i < ns; i++) order[i] = i;
    uint64_t s = seed ^ 0x736f7572636573ull;
    shuffle(order, ns, &s);
    uint64_t te[2] = {0, 0}, tr[2] = {0, 0};
    for (size_t i = 0; i < ns; i++) {
        size_t src = order[i];
        if (te[0] < nn_te || te[1] < na_te) {
            test[src] = 1;
            te[0] += cnt[2 * src];
            te[1] += cnt[2 * src + 1];
        } else {
            tr[0] += cnt[2 * src];
            tr[1] += cnt[2 * src + 1];
        }
    }
    free(cnt);
    free(order);
    const char *what = NULL;
    uint64_t have = 0, need = 0;
    if (te[0] < nn_te) what = "normal cells for the test bags", have = te[0], need = nn_te;
    else if (te[1] < na_te) what = "abnormal cells for the test bags", have = te[1], need = na_te;
    else if (tr[0] < nn_tr) what = "normal cells for the training bags", have = tr[0], need = nn_tr;
    else if (tr[1] < na_tr) what = "abnormal cells for the training bags", have = tr[1], need = na_tr;
    if (what) {
        ss_error("bag",
                 "not enough %s once train and test use disjoint source images: need %llu, the "
                 "images set aside hold %llu (short by %llu)",
                 what, (unsigned long long)need, (unsigned long long)have,
                 (unsigned long long)(need - have));
        free(test);
        return NULL;
    }
    return test;
}

/* Moves the cells of test sources from p (order kept) into a new pool te. */
static int partition(pool_t *p, pool_t *te, const ss_cellset_t *cs, const unsigned char *test)
{
    te->idx = malloc((p->n ? p->n : 1) * sizeof *te->idx);
    if (!te->idx) return -1;
    size_t k = 0;
    for (size_t i = 0; i < p->n; i++) {
        size_t c = p->idx[i];
        if (test[cs->cells[c].source])
            te->idx[te->n++] = c;
        else
            p->idx[k++] = c;
    }
    p->n = k;
    return 0;
}

int ss_bag_simulate(const ss_cellset_t *cs, const ss_bag_sim_opts_t *o, ss_bag_plan_t **out)
{
    *out = NULL;
    if (o->n_bags < 0 || o->n_bags % 2 || o->n_bags > 1000000)
        return ss_error("bag", "--bags %d: need an even count (half negative, half positive)",
                        o->n_bags);
    if (o->n_test_bags < 0 || o->n_test_bags % 2 || o->n_test_bags > 1000000)
        return ss_error("bag", "--test-bags %d: need an even count (half negative, half positive)",
                        o->n_test_bags);
    if (o->n_bags + o->n_test_bags == 0) return ss_error("bag", "no bags requested");
    if (o->bag_size < 1 || o->bag_size > 10000000)
        return ss_error("bag", "--bag-size %d out of range (1..10000000)", o->bag_size);
    if (!(o->witness_rate > 0.0 && o->witness_rate <= 1.0))
        return ss_error("bag", "--witness-rate %g out of range (0 < R <= 1)", o->witness_rate);
    const int B = o->bag_size;
    const int k = ss_bag_witness_count(o->witness_rate, B);
    if (k < 1)
        return ss_error("bag",
                        "witness rate %g with bag size %d gives round(%g) = 0 witnesses per "
                        "positive bag; use a larger --bag-size or --witness-rate",
                        o->witness_rate, B, o->witness_rate * B);
    if (k > B) return ss_error("bag", "witness count %d exceeds bag size %d", k, B);

    /* cells needed, per pool and split */
    const uint64_t half_tr = (uint64_t)o->n_bags / 2, half_te = (uint64_t)o->n_test_bags / 2;
    const uint64_t need_norm_tr = half_tr * (uint64_t)B + half_tr * (uint64_t)(B - k);
    const uint64_t need_norm_te = half_te * (uint64_t)B + half_te * (uint64_t)(B - k);
    const uint64_t need_abn_tr = half_tr * (uint64_t)k, need_abn_te = half_te * (uint64_t)k;
    if (need_norm_tr + need_norm_te > cs->n_normal)
        return ss_error(
            "bag",
            "not enough normal cells: need %llu (train %llu + test %llu), have %zu (short by %llu)",
            (unsigned long long)(need_norm_tr + need_norm_te), (unsigned long long)need_norm_tr,
            (unsigned long long)need_norm_te, cs->n_normal,
            (unsigned long long)(need_norm_tr + need_norm_te - cs->n_normal));
    if (need_abn_tr + need_abn_te > cs->n_abnormal)
        return ss_error(
            "bag",
            "not enough abnormal cells: need %llu (train %llu + test %llu), have %zu (short by %llu)",
            (unsigned long long)(need_abn_tr + need_abn_te), (unsigned long long)need_abn_tr,
            (unsigned long long)need_abn_te, cs->n_abnormal,
            (unsigned long long)(need_abn_tr + need_abn_te - cs->n_abnormal));

    pool_t norm = {calloc(cs->n_normal ? cs->n_normal : 1, sizeof(size_t)), 0, 0};
    pool_t abn = {calloc(cs->n_abnormal ? cs->n_abnormal : 1, sizeof(size_t)), 0, 0};
    pool_t norm_te = {0}, abn_te = {0};
    ss_bag_plan_t *plan = calloc(1, sizeof *plan);
    const size_t nb = (size_t)o->n_bags + (size_t)o->n_test_bags;
    if (plan) plan->bags = calloc(nb, sizeof *plan->bags);
    unsigned char *used = calloc(cs->n ? cs->n : 1, 1);
    unsigned char *test_src = NULL;
    int rc = 0;
    if (!norm.idx || !abn.idx || !plan || !plan->bags || !used) {
        rc = ss_error("bag", "out of memory planning %zu bags", nb);
        goto done;
    }
    for (size_t i = 0; i < cs->n; i++) {
        if (cs->cells[i].abnormal)
            abn.idx[abn.n++] = i;
        else
            norm.idx[norm.n++] = i;
    }
    /* one seeded shuffle per pool; a separate stream orders cells within each bag */
    uint64_t s_norm = o->seed ^ 0x6e6f726d616cull, s_abn = o->seed ^ 0x61626e6f726dull;
    uint64_t s_bag = o->seed ^ 0x626167736f7274ull;
    shuffle(norm.idx, norm.n, &s_norm);
    shuffle(abn.idx, abn.n, &s_abn);
    /* Test bags draw from their own pools: the rest of the training pools, or with by_source
     * the cells of the source images set aside for testing. */
    pool_t *pn[2] = {&norm, &norm}, *pa[2] = {&abn, &abn};
    if (o->by_source && o->n_test_bags > 0) {
        if (!(test_src = split_sources(cs, need_norm_te, need_abn_te, need_norm_tr, need_abn_tr,
                                       o->seed))) {
            rc = -1;
            goto done;
        }
        if (partition(&norm, &norm_te, cs, test_src) || partition(&abn, &abn_te, cs, test_src)) {
            rc = ss_error("bag", "out of memory planning %zu bags", nb);
            goto done;
        }
        pn[SS_BAG_TEST] = &norm_te;
        pa[SS_BAG_TEST] = &abn_te;
    }

    plan->witnesses_per_positive = k;
    const int counts[2] = {o->n_bags / 2, o->n_test_bags / 2};
    const int width = nb > 2000 ? 6 : 3;
    for (int split = SS_BAG_TRAIN; split <= SS_BAG_TEST; split++) {
        for (int label = 0; label <= 1; label++) {
            for (int b = 0; b < counts[split]; b++) {
                ss_bag_t *bag = &plan->bags[plan->n++];
                snprintf(bag->id, sizeof bag->id, "%s_%s%0*d", label ? "abnormal" : "normal",
                         split == SS_BAG_TEST ? "test_" : "", width, b);
                bag->label = label;
                bag->split = split;
                bag->n_cells = (size_t)B;
                bag->n_witness = label ? k : 0;
                if (!(bag->cells = malloc((size_t)B * sizeof *bag->cells))) {
                    rc = ss_error("bag", "out of memory for bag %s", bag->id);
                    goto done;
                }
                for (int i = 0; i < B; i++)
                    bag->cells[i] = i < bag->n_witness ? take(pa[split]) : take(pn[split]);
                shuffle(bag->cells, bag->n_cells, &s_bag);
            }
        }
    }
    /* the guarantee, checked: every cell at most once in the plan; labels as promised */
    for (size_t b = 0; b < plan->n; b++) {
        int w = 0;
        for (size_t i = 0; i < plan->bags[b].n_cells; i++) {
            size_t c = plan->bags[b].cells[i];
            if (used[c]++) {
                rc = ss_error("bag", "internal error: cell %s drawn twice", cs->cells[c].cell_id);
                goto done;
            }
            w += cs->cells[c].abnormal;
        }
        if (w != plan->bags[b].n_witness) {
            rc = ss_error("bag", "internal error: bag %s has %d witnesses, planned %d",
                          plan->bags[b].id, w, plan->bags[b].n_witness);
            goto done;
        }
    }
done:
    free(norm.idx);
    free(abn.idx);
    free(norm_te.idx);
    free(abn_te.idx);
    free(test_src);
    free(used);
    if (rc) {
        ss_bag_plan_destroy(&plan);
        return -1;
    }
    *out = plan;
    return 0;
}

/* CSV field: quoted when it holds a comma, quote or newline (RFC 4180). */
static int csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\n\r")) return fputs(s, f) < 0;
    if (fputc('"', f) == EOF) return 1;
    for (; *s; s++) {
        if (*s == '"' && fputc('"', f) == EOF) return 1;
        if (fputc(*s, f) == EOF) return 1;
    }
    return fputc('"', f) == EOF;
}

static int write_csv(const char *dir, const char *name, const ss_bag_plan_t *plan,
                     const ss_cellset_t *cs, int per_cell)
{
    char path[4096], tmp[4200];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return ss_error("bag", "path too long: %s", dir);
    snprintf(tmp, sizeof tmp, "%s.part", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return ss_error_system("bag", "cannot write %s", tmp);
    static const char *const split_name[2] = {"train", "test"};
    int bad = 0;
    if (per_cell) {
        bad |= fputs("bag_id,cell_id,path,class,instance_label\n", f) < 0;
        for (size_t b = 0; b < plan->n && !bad; b++) {
            const ss_bag_t *bag = &plan->bags[b];
            for (size_t i = 0; i < bag->n_cells && !bad; i++) {
                const ss_cell_image_t *c = &cs->cells[bag->cells[i]];
                bad |= fprintf(f, "%s,", bag->id) < 0;
                bad |= csv_field(f, c->cell_id) || fputc(',', f) == EOF;
                bad |= csv_field(f, c->path) || fputc(',', f) == EOF;
                bad |= csv_field(f, c->cls);
                bad |= fprintf(f, ",%d\n", c->abnormal) < 0;
            }
        }
    } else {
        bad |= fputs("bag_id,label,split,n_cells,n_witness\n", f) < 0;
        for (size_t b = 0; b < plan->n && !bad; b++) {
            const ss_bag_t *bag = &plan->bags[b];
            bad |= fprintf(f, "%s,%d,%s,%zu,%d\n", bag->id, bag->label, split_name[bag->split],
                           bag->n_cells, bag->n_witness) < 0;
        }
    }
    if (fclose(f) || bad) {
        ss_error_system("bag", "writing %s failed", path);
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path)) {
        ss_error_system("bag", "cannot rename %s to %s", tmp, path);
        unlink(tmp);
        return -1;
    }
    return 0;
}

int ss_bag_plan_write(const ss_bag_plan_t *plan, const ss_cellset_t *cs, const char *out_dir)
{
    if (mkdir(out_dir, 0777) && errno != EEXIST)
        return ss_error_system("bag", "cannot create directory %s", out_dir);
    struct stat st;
    if (stat(out_dir, &st) || !S_ISDIR(st.st_mode))
        return ss_error("bag", "%s is not a directory", out_dir);
    if (write_csv(out_dir, "bag_cells.csv", plan, cs, 1) ||
        write_csv(out_dir, "bags.csv", plan, cs, 0))
        return -1;
    return 0;
}

static int ensure_dir(const char *path)
{
    if (mkdir(path, 0777) && errno != EEXIST)
        return ss_error_system("bag", "cannot create directory %s", path);
    return 0;
}

int ss_bag_plan_link(const ss_bag_plan_t *plan, const ss_cellset_t *cs, const char *out_dir)
{
    static const char *const split_name[2] = {"train", "test"};
    char path[8192];
    if (ensure_dir(out_dir)) return -1;
    for (int s = 0; s < 2; s++) {
        snprintf(path, sizeof path, "%s/%s", out_dir, split_name[s]);
        if (ensure_dir(path)) return -1;
    }
    for (size_t b = 0; b < plan->n; b++) {
        const ss_bag_t *bag = &plan->bags[b];
        if (snprintf(path, sizeof path, "%s/%s/%s", out_dir, split_name[bag->split], bag->id) >=
                (int)sizeof path ||
            ensure_dir(path))
            return ss_error("bag", "cannot create the folder of bag %s under %s", bag->id, out_dir);
        for (size_t i = 0; i < bag->n_cells; i++) {
            const ss_cell_image_t *c = &cs->cells[bag->cells[i]];
            const char *base = strrchr(c->path, '/');
            base = base ? base + 1 : c->path;
            if (snprintf(path, sizeof path, "%s/%s/%s/%s", out_dir, split_name[bag->split], bag->id,
                         base) >= (int)sizeof path)
                return ss_error("bag", "path too long for %s", c->path);
            if (symlink(c->path, path)) {
                if (errno != EEXIST) return ss_error_system("bag", "cannot link %s", path);
                /* an earlier run's link is fine when it points at the same cell */
                char old[8192];
                ssize_t n = readlink(path, old, sizeof old - 1);
                if (n < 0 || (old[n] = 0, strcmp(old, c->path)))
                    return ss_error("bag",
                                    "%s exists and is not a link to %s (two cells with "
                                    "one file name in bag %s, or a stale folder)",
                                    path, c->path, bag->id);
            }
        }
    }
    return 0;
}
