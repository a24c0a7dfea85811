/* Prediction and its result files (mil_predict.h): the writer of bags.csv, instances.csv and
 * metrics.json (shared by `mil predict` and the live aggregator stage), and prediction on a bag
 * set, every bag through the model in eval mode, one at a time (bounded memory). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "slidestream/error.h"
#include "slidestream/log.h"
#include "slidestream/mil_eval.h"
#include "slidestream/mil_predict.h"

#define DOM "mil"

/* ---- witness labels ------------------------------------------------------------------------- */

struct ss_mil_witnesses {
    char (*bag)[256];
    int *flag;   /* per row of the file, in order */
    size_t n, cap;
};

void ss_mil_witnesses_free(ss_mil_witnesses_t **pw)
{
    ss_mil_witnesses_t *w = pw ? *pw : NULL;
    if (!w) return;
    free(w->bag), free(w->flag), free(w);
    *pw = NULL;
}

/* The columns of a header line: index of `name`, -1 if absent. */
static int column(char *header, const char *name)
{
    int k = 0;
    for (char *tok = strtok(header, ",\r\n"); tok; tok = strtok(NULL, ",\r\n"), k++)
        if (!strcmp(tok, name)) return k;
    return -1;
}

ss_mil_witnesses_t *ss_mil_witnesses_load(const char *csv)
{
    FILE *f = fopen(csv, "r");
    if (!f) {
        ss_error_system(DOM, "cannot read %s", csv);
        return NULL;
    }
    ss_mil_witnesses_t *w = calloc(1, sizeof *w);
    char line[8192], head[8192];
    int cb = -1, cl = -1, lineno = 1;
    if (!w || !fgets(line, sizeof line, f)) {
        ss_error(DOM, "%s: empty", csv);
        goto fail;
    }
    memcpy(head, line, sizeof head);
    cb = column(head, "bag_id");
    memcpy(head, line, sizeof head);
    cl = column(head, "instance_label");
    if (cb < 0 || cl < 0) {
        ss_error(DOM, "%s: want columns bag_id and instance_label (a bag_cells.csv)", csv);
        goto fail;
    }
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *fields[64];
        int nf = 0;
        for (char *p = line, *tok; nf < 64 && (tok = strsep(&p, ",")); ) fields[nf++] = tok;
        if (nf <= cb || nf <= cl) {
            ss_error(DOM, "%s:%d: too few columns", csv, lineno);
            goto fail;
        }
        if (w->n == w->cap) {
            size_t cap = w->cap ? 2 * w->cap : 1024;
            void *a = realloc(w->bag, cap * sizeof *w->bag), *b = NULL;
            if (a) w->bag = a;
            if (a) b = realloc(w->flag, cap * sizeof *w->flag);
            if (!a || !b) {
                ss_error(DOM, "out of memory");
                goto fail;
            }
            w->flag = b;
            w->cap = cap;
        }
        snprintf(w->bag[w->n], sizeof w->bag[0], "%s", fields[cb]);
        w->flag[w->n] = atoi(fields[cl]) == 1;
        w->n++;
    }
    fclose(f);
    return w;
fail:
    fclose(f);
    ss_mil_witnesses_free(&w);
    return NULL;
}

/* Flags of bag `id`'s cells: its rows in file order, cell id k = its k-th row. */
static int witness_flags(const ss_mil_witnesses_t *w, const ss_mil_bag_t *b, int *out)
{
    int64_t k = 0;
    for (size_t i = 0; i < w->n; i++)
        if (!strcmp(w->bag[i], b->id)) k++;
    if (k != b->n)
        return ss_error(DOM, "bag %s: %lld cells in the cache, %lld rows in the witness file",
                        b->id, (long long)b->n, (long long)k);
    int64_t *row = malloc((size_t)k * sizeof *row);
    if (!row) return ss_error(DOM, "out of memory");
    for (size_t i = 0, j = 0; i < w->n; i++)
        if (!strcmp(w->bag[i], b->id)) row[j++] = (int64_t)i;
    int rc = 0;
    for (int64_t c = 0; c < b->n; c++) {
        uint64_t id = b->cell_ids[c];
        if (id >= (uint64_t)k) {
            rc = ss_error(DOM, "bag %s: cell id %llu is not a position in the bag", b->id,
                          (unsigned long long)id);
            break;
        }
        out[c] = w->flag[row[id]];
    }
    free(row);
    return rc;
}

/* ---- the result files ---------------------------------------------------------------------- */

struct ss_mil_writer {
    char dir[4096];
    FILE *fb, *fi;
    int64_t top_k;
    const ss_mil_witnesses_t *witnesses;
    int *pred, *lab, *wit;
    double *prob, *recall;
    int64_t *rank;
    size_t n, cap, wcap;
};

ss_mil_writer_t *ss_mil_writer_new(const char *out_dir, int64_t top_k,
                                   const ss_mil_witnesses_t *witnesses)
{
    ss_mil_writer_t *w = calloc(1, sizeof *w);
    if (!w) {
        ss_error(DOM, "out of memory");
        return NULL;
    }
    snprintf(w->dir, sizeof w->dir, "%s", out_dir);
    w->top_k = top_k;
    w->witnesses = witnesses;
    mkdir(out_dir, 0777);
    char pb[4200], pi[4200];
    snprintf(pb, sizeof pb, "%s/bags.csv", out_dir);
    snprintf(pi, sizeof pi, "%s/instances.csv", out_dir);
    w->fb = fopen(pb, "w");
    w->fi = w->fb ? fopen(pi, "w") : NULL;
    if (!w->fi) {
        ss_error_system(DOM, "cannot write %s", w->fb ? pi : pb);
        if (w->fb) fclose(w->fb);
        free(w);
        return NULL;
    }
    fprintf(w->fb, "slide_id,label,probability,prediction\n");
    fprintf(w->fi, "slide_id,cell_id,x,y,attention,rank\n");
    return w;
}

const int64_t *ss_mil_writer_bag(ss_mil_writer_t *w, const ss_mil_bag_t *b, const float *logits,
                                 const float *attention)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        int *p = realloc(w->pred, cap * sizeof *p), *l = p ? realloc(w->lab, cap * sizeof *l) : NULL;
        if (p) w->pred = p;
        if (l) w->lab = l;
        double *pr = l ? realloc(w->prob, cap * sizeof *pr) : NULL;
        if (pr) w->prob = pr;
        double *rc = pr ? realloc(w->recall, cap * sizeof *rc) : NULL;
        if (rc) w->recall = rc;
        if (!rc) {
            ss_error(DOM, "out of memory");
            return NULL;
        }
        w->cap = cap;
    }
    if ((size_t)b->n > w->wcap) {
        int64_t *r = realloc(w->rank, (size_t)b->n * sizeof *r);
        if (r) w->rank = r;
        int *wi = r ? realloc(w->wit, (size_t)b->n * sizeof *wi) : NULL;
        if (wi) w->wit = wi;
        if (!wi) {
            ss_error(DOM, "out of memory for a bag of %lld cells", (long long)b->n);
            return NULL;
        }
        w->wcap = (size_t)b->n;
    }
    size_t i = w->n;
    double mx = logits[0] > logits[1] ? logits[0] : logits[1];
    w->prob[i] = exp(logits[1] - mx) / (exp(logits[0] - mx) + exp(logits[1] - mx));
    w->pred[i] = logits[1] > logits[0];
    w->lab[i] = b->label;
    fprintf(w->fb, "%s,%d,%.6f,%d\n", b->id, b->label, w->prob[i], w->pred[i]);
    ss_eval_ranks(attention, (size_t)b->n, w->rank, NULL);
    for (int64_t c = 0; c < b->n; c++)
        fprintf(w->fi, "%s,%llu,%lld,%lld,%.8g,%lld\n", b->id, (unsigned long long)b->cell_ids[c],
                (long long)b->centres[2 * c], (long long)b->centres[2 * c + 1], attention[c],
                (long long)w->rank[c]);
    w->recall[i] = NAN;
    if (w->witnesses && b->label == 1) {
        if (witness_flags(w->witnesses, b, w->wit)) return NULL;
        w->recall[i] = ss_eval_recall_at_k(w->rank, w->wit, (size_t)b->n, w->top_k, NULL);
    }
    w->n++;
    if (ferror(w->fb) || ferror(w->fi)) {
        ss_error_system(DOM, "cannot write the results in %s", w->dir);
        return NULL;
    }
    return w->rank;
}

static void json_num(FILE *f, const char *key, double v, int comma)
{
    if (isfinite(v)) fprintf(f, "  \"%s\": %.6f%s\n", key, v, comma ? "," : "");
    else fprintf(f, "  \"%s\": null%s\n", key, comma ? "," : "");
}

int ss_mil_writer_finish(ss_mil_writer_t **pw, int quiet)
{
    ss_mil_writer_t *w = pw ? *pw : NULL;
    if (!w) return 0;
    int rc = 0;
    if (fclose(w->fb)) rc = ss_error_system(DOM, "cannot write %s/bags.csv", w->dir);
    if (fclose(w->fi) && !rc) rc = ss_error_system(DOM, "cannot write %s/instances.csv", w->dir);
    size_t k = 0; /* metrics over the labelled bags */
    for (size_t i = 0; i < w->n; i++)
        if (w->lab[i] == 0 || w->lab[i] == 1) {
            w->pred[k] = w->pred[i], w->lab[k] = w->lab[i], w->prob[k] = w->prob[i];
            w->recall[k] = w->recall[i];
            k++;
        }
    if (!rc && k) {
        double rm, rs, acc = ss_eval_accuracy(w->pred, w->lab, k), f1 = ss_eval_f1(w->pred, w->lab, k);
        double auc = ss_eval_auc(w->prob, w->lab, k);
        ss_eval_mean_std(w->recall, k, &rm, &rs);
        char pm[4200];
        snprintf(pm, sizeof pm, "%s/metrics.json", w->dir);
        FILE *f = fopen(pm, "w");
        if (!f) {
            rc = ss_error_system(DOM, "cannot write %s", pm);
        } else {
            fprintf(f, "{\n  \"bags\": %zu,\n", k);
            json_num(f, "accuracy", acc, 1);
            json_num(f, "f1", f1, 1);
            json_num(f, "roc_auc", auc, 1);
            fprintf(f, "  \"top_k\": %lld,\n", (long long)w->top_k);
            fprintf(f, "  \"recall_at_k_definition\": \"witnesses among the top-K attended cells "
                       "of a positive bag / min(K, witnesses in the bag), mean over positive "
                       "bags\",\n");
            json_num(f, "recall_at_k", w->witnesses ? rm : NAN, 1);
            json_num(f, "recall_at_k_std", w->witnesses ? rs : NAN, 0);
            fprintf(f, "}\n");
            if (fclose(f)) rc = ss_error_system(DOM, "cannot write %s", pm);
        }
        if (!rc && !quiet)
            ss_info("mil: %zu labelled bags: accuracy %.3f, F1 %.3f, ROC-AUC %.3f%s", k, acc, f1,
                    auc, w->witnesses ? "" : " (no witness labels: no Recall@K)");
        if (!rc && !quiet && w->witnesses)
            ss_info("mil: Recall@%lld %.3f ± %.3f over positive bags", (long long)w->top_k, rm, rs);
    }
    free(w->pred), free(w->lab), free(w->wit), free(w->prob), free(w->recall), free(w->rank);
    free(w);
    *pw = NULL;
    return rc;
}

/* ---- prediction on a bag set ---------------------------------------------------------------- */

int ss_mil_predict(ss_mil_t *m, ss_mil_bags_t *B, const ss_mil_predict_config_t *cfg,
                   const char *out_dir)
{
    if (B->dim != m->cfg.dim)
        return ss_error(DOM, "the cache's features have width %d, the model takes %d", B->dim,
                        m->cfg.dim);
    ss_mil_writer_t *w = ss_mil_writer_new(out_dir, cfg->top_k, cfg->witnesses);
    if (!w) return -1;
    float *att = NULL;
    size_t cap = 0;
    int rc = 0;
    double last = ss_now();
    for (size_t i = 0; !rc && i < B->n; i++) {
        ss_mil_bag_t *b = &B->bags[i];
        if ((rc = ss_mil_bag_load(b, B->dim))) break;
        if ((size_t)b->n > cap) {
            float *a = realloc(att, (size_t)b->n * sizeof *att);
            if (!a) {
                rc = ss_error(DOM, "out of memory for a bag of %lld cells", (long long)b->n);
                break;
            }
            att = a;
            cap = (size_t)b->n;
        }
        float logits[2];
        const int64_t *rank;
        if (ss_mil_forward(m, b->x, (int)b->n, 0, logits, att)) {
            rc = ss_error(DOM, "bag %s (%s)", b->id, b->path);
            break;
        }
        if (!(rank = ss_mil_writer_bag(w, b, logits, att))) {
            rc = -1;
            break;
        }
        if (cfg->bag_done) {
            double mx = logits[0] > logits[1] ? logits[0] : logits[1];
            double p = exp(logits[1] - mx) / (exp(logits[0] - mx) + exp(logits[1] - mx));
            if ((rc = cfg->bag_done(b, att, rank, p, cfg->arg))) break;
        }
        ss_mil_bag_unload(b);
        if (!cfg->quiet && ss_now() - last > 10) {
            last = ss_now();
            ss_info("mil: %zu/%zu bags predicted", i + 1, B->n);
        }
    }
    free(att);
    if (rc) {
        ss_mil_writer_finish(&w, 1);
        return -1;
    }
    return ss_mil_writer_finish(&w, cfg->quiet);
}
