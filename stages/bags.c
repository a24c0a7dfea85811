/* slidestream bags — the bag-builder's offline modes.
 *
 *   slidestream bags simulate --cells DIR --out DIR --bags N --bag-size B --witness-rate R
 *                             [--normal LYT] [--seed S] [--test-bags M] [--link]
 *
 * `simulate` is the witness-rate protocol over labelled cell folders (lib/bag). The mode word is
 * argv[1], so other modes (e.g. bags from slides) slot in beside it. Usage errors exit 2.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "slidestream/bag.h"
#include "slidestream/error.h"
#include "slidestream/log.h"

static const char USAGE[] =
    "usage: slidestream bags <mode> [options]\n"
    "\n"
    "modes:\n"
    "  simulate   witness-rate bags from labelled cell folders (the paper's protocol)\n"
    "\n"
    "`slidestream bags <mode> --help` gives the mode's flags.\n";

static const char USAGE_SIMULATE[] =
    "usage: slidestream bags simulate --cells DIR --out DIR --bags N --bag-size B\n"
    "                                 --witness-rate R [--normal LYT] [--seed S] [--test-bags M]\n"
    "                                 [--by-source] [--link]\n"
    "\n"
    "Builds bags of B cells from DIR/<CODE>/*.png (e.g. from `slidestream synth cells`): half\n"
    "negative (normal cells only), half positive with exactly round(R*B) abnormal cells (halves\n"
    "round up) and the rest normal. Each pool is shuffled once with the seed and cells are drawn\n"
    "without replacement, so no cell is in two bags; test bags come from cells that no training\n"
    "bag uses.\n"
    "\n"
    "  --cells DIR        labelled cell folders, one per class code\n"
    "  --out DIR          output folder (created): bags.csv and bag_cells.csv\n"
    "  --bags N           training bags, even (N/2 negative, N/2 positive)\n"
    "  --test-bags M      also M test bags, even, from disjoint cells (default 0)\n"
    "  --bag-size B       cells per bag\n"
    "  --witness-rate R   share of abnormal cells in a positive bag, 0 < R <= 1 (e.g. 0.01)\n"
    "  --normal CODES     comma list of normal class codes (default LYT); other folders abnormal\n"
    "  --seed S           random seed (default 1)\n"
    "  --by-source        train and test cells from disjoint source images (needs the cells.csv\n"
    "                     `slidestream cells from-labels` writes beside the class folders)\n"
    "  --link             also write OUT/<train|test>/<bag_id>/ folders of symbolic links to the\n"
    "                     cell images (the folder-per-bag layout of the reference scripts)\n"
    "  --quiet            no summary line\n"
    "\n"
    "bags.csv:      bag_id,label,split,n_cells,n_witness  (ids normal_000, abnormal_000,\n"
    "               normal_test_000, abnormal_test_000; label 1 = positive; split train|test)\n"
    "bag_cells.csv: bag_id,cell_id,path,class,instance_label  (cell_id = CODE/file;\n"
    "               instance_label 1 = abnormal)\n";

static int usage_error(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "slidestream bags: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, " (see slidestream bags simulate --help)\n");
    return 2;
}

static int parse_int(const char *flag, const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        char why[96];
        snprintf(why, sizeof why, "'%s' (expected an integer %ld..%ld)", s, lo, hi);
        return usage_error("bad value for %s: %s", flag, why);
    }
    *out = (int)v;
    return 0;
}

static const char *flag_name(const char *arg, char *buf, size_t n)
{
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    if (len >= n) len = n - 1;
    memcpy(buf, arg, len);
    buf[len] = 0;
    return buf;
}

static int main_simulate(int argc, char **argv)
{
    ss_bag_sim_opts_t o;
    ss_bag_sim_opts_default(&o);
    const char *cells = NULL, *out = NULL, *normal = "LYT";
    int have_bags = 0, have_size = 0, have_wr = 0, quiet = 0, link = 0;
    static const char *const flags[] = {"--cells",     "--out",          "--bags",
                                        "--test-bags", "--bag-size",     "--normal",
                                        "--seed",      "--witness-rate", NULL};
    for (int i = 1; i < argc; i++) {
        char name[64];
        const char *f = flag_name(argv[i], name, sizeof name);
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
            fputs(USAGE_SIMULATE, stdout);
            return 0;
        }
        if (!strcmp(f, "--link")) {
            link = 1;
            continue;
        }
        if (!strcmp(f, "--by-source")) {
            o.by_source = 1;
            continue;
        }
        if (!strcmp(f, "--quiet")) {
            quiet = 1;
            ss_log_set_quiet(1);
            continue;
        }
        int known = 0;
        for (int k = 0; flags[k]; k++)
            known |= !strcmp(f, flags[k]);
        if (!known) return usage_error("bags simulate: unknown argument '%s'%s", argv[i], "");
        const char *v = strchr(argv[i], '=');
        if (v)
            v++;
        else if (i + 1 < argc)
            v = argv[++i];
        else
            return usage_error("%s needs a value%s", f, "");
        int rc = 0;
        if (!strcmp(f, "--cells"))
            cells = v;
        else if (!strcmp(f, "--out"))
            out = v;
        else if (!strcmp(f, "--normal"))
            normal = v;
        else if (!strcmp(f, "--bags")) {
            rc = parse_int(f, v, 0, 1000000, &o.n_bags);
            have_bags = 1;
        } else if (!strcmp(f, "--test-bags"))
            rc = parse_int(f, v, 0, 1000000, &o.n_test_bags);
        else if (!strcmp(f, "--bag-size")) {
            rc = parse_int(f, v, 1, 10000000, &o.bag_size);
            have_size = 1;
        } else if (!strcmp(f, "--witness-rate")) {
            char *end;
            errno = 0;
            o.witness_rate = strtod(v, &end);
            if (errno || end == v || *end || !isfinite(o.witness_rate) || o.witness_rate <= 0 ||
                o.witness_rate > 1)
                return usage_error("bad value for --witness-rate: '%s'%s (expected 0 < R <= 1)", v,
                                   "");
            have_wr = 1;
        } else if (!strcmp(f, "--seed")) {
            char *end;
            errno = 0;
            if (*v == '-' || !*v) return usage_error("bad value for --seed: '%s'%s", v, "");
            o.seed = strtoull(v, &end, 10);
            if (errno || *end) return usage_error("bad value for --seed: '%s'%s", v, "");
        }
        if (rc) return rc;
    }
    if (!cells) return usage_error("bags simulate: --cells DIR is required%s%s", "", "");
    if (!out) return usage_error("bags simulate: --out DIR is required%s%s", "", "");
    if (!have_bags) return usage_error("bags simulate: --bags N is required%s%s", "", "");
    if (!have_size) return usage_error("bags simulate: --bag-size B is required%s%s", "", "");
    if (!have_wr) return usage_error("bags simulate: --witness-rate R is required%s%s", "", "");
    char num[32];
    if (o.n_bags % 2) {
        snprintf(num, sizeof num, "%d", o.n_bags);
        return usage_error("bad value for --bags: '%s'%s (need an even count: half negative, "
                           "half positive)",
                           num, "");
    }
    if (o.n_test_bags % 2) {
        snprintf(num, sizeof num, "%d", o.n_test_bags);
        return usage_error("bad value for --test-bags: '%s'%s (need an even count)", num, "");
    }

    ss_cellset_t *cs = NULL;
    ss_bag_plan_t *plan = NULL;
    int rc = ss_cellset_load(cells, normal, &cs) || ss_bag_simulate(cs, &o, &plan) ||
             ss_bag_plan_write(plan, cs, out) || (link && ss_bag_plan_link(plan, cs, out));
    if (rc) {
        ss_error_report("bags simulate failed");
    } else if (!quiet) {
        ss_info("bags: %d train + %d test bags of %d cells, %d witnesses per positive bag "
                "(WR %g); %zu normal + %zu abnormal cells available -> %s/bags.csv",
                o.n_bags, o.n_test_bags, o.bag_size, plan->witnesses_per_positive, o.witness_rate,
                cs->n_normal, cs->n_abnormal, out);
    }
    ss_bag_plan_destroy(&plan);
    ss_cellset_destroy(&cs);
    return rc ? 1 : 0;
}

int ss_main_bags(int argc, char **argv)
{
    if (argc < 2) return usage_error("missing mode: simulate%s%s", "", "");
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "simulate")) return main_simulate(argc - 1, argv + 1);
    return usage_error("unknown mode '%s'%s (expected simulate)", argv[1], "");
}
