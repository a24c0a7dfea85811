/* Prediction on a bag set (mil_predict.h): every bag through the model in eval mode, one at a
 * time (bounded memory), bags.csv and instances.csv as they go, and metrics.json when the bags
 * carry labels (Recall@K too when the cells' witness labels are given). */
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

/* ---- prediction ----------------------------------------------------------------------------- */

static void json_num(FILE *f, const char *key, double v, int comma)
{
    if (isfinite(v)) fprintf(f, "  \"%s\": %.6f%s\n", key, v, comma ? "," : "");
    else fprintf(f, "  \"%s\": null%s\n", key, comma ? "," : "");
}

int ss_mil_predict(ss_mil_t *m, ss_mil_bags_t *B, const ss_mil_predict_config_t *cfg,
                   const char *out_dir)
{
    if (B->dim != m->cfg.dim)
        return ss_error(DOM, "the cache's features have width %d, the model takes %d", B->dim,
                        m->cfg.dim);
    mkdir(out_dir, 0777);
    char pb[4096], pi[4096];
    snprintf(pb, sizeof pb, "%s/bags.csv", out_dir);
    snprintf(pi, sizeof pi, "%s/instances.csv", out_dir);
    FILE *fb = fopen(pb, "w"), *fi = fopen(pi, "w");
    size_t nb = B->n;
    int *pred = calloc(nb, sizeof(int)), *lab = calloc(nb, sizeof(int));
    double *prob = calloc(nb, sizeof(double)), *recall = calloc(nb, sizeof(double));
    int rc = 0, labelled = 0;
    if (!fb || !fi) rc = ss_error_system(DOM, "cannot write %s", !fb ? pb : pi);
    else if (!pred || !lab || !prob || !recall) rc = ss_error(DOM, "out of memory");
    if (!rc) {
        fprintf(fb, "slide_id,label,probability,prediction\n");
        fprintf(fi, "slide_id,cell_id,x,y,attention,rank\n");
    }
    float *att = NULL;
    int64_t *rank = NULL;
    int *wit = NULL;
    size_t cap = 0;
    double t0 = ss_now(), last = t0;
    for (size_t i = 0; !rc && i < nb; i++) {
        ss_mil_bag_t *b = &B->bags[i];
        if ((rc = ss_mil_bag_load(b, B->dim))) break;
        if ((size_t)b->n > cap) {
            cap = (size_t)b->n;
            float *a = realloc(att, cap * sizeof *att);
            int64_t *r = a ? realloc(rank, cap * sizeof *rank) : NULL;
            int *w = r ? realloc(wit, cap * sizeof *wit) : NULL;
            if (a) att = a;
            if (r) rank = r;
            if (w) wit = w;
            if (!a || !r || !w) {
                rc = ss_error(DOM, "out of memory for a bag of %lld cells", (long long)b->n);
                break;
            }
        }
        float logits[2];
        if (ss_mil_forward(m, b->x, (int)b->n, 0, logits, att)) {
            rc = ss_error(DOM, "bag %s (%s)", b->id, b->path);
            break;
        }
        double mx = logits[0] > logits[1] ? logits[0] : logits[1];
        prob[i] = exp(logits[1] - mx) / (exp(logits[0] - mx) + exp(logits[1] - mx));
        pred[i] = logits[1] > logits[0];
        lab[i] = b->label;
        labelled += b->label == 0 || b->label == 1;
        fprintf(fb, "%s,%d,%.6f,%d\n", b->id, b->label, prob[i], pred[i]);
        ss_eval_ranks(att, (size_t)b->n, rank, NULL);
        for (int64_t c = 0; c < b->n; c++)
            fprintf(fi, "%s,%llu,%lld,%lld,%.8g,%lld\n", b->id, (unsigned long long)b->cell_ids[c],
                    (long long)b->centres[2 * c], (long long)b->centres[2 * c + 1], att[c],
                    (long long)rank[c]);
        recall[i] = NAN;
        if (cfg->witnesses && b->label == 1) {
            if ((rc = witness_flags(cfg->witnesses, b, wit))) break;
            recall[i] = ss_eval_recall_at_k(rank, wit, (size_t)b->n, cfg->top_k, NULL);
        }
        if (cfg->bag_done && (rc = cfg->bag_done(b, att, rank, prob[i], cfg->arg))) break;
        ss_mil_bag_unload(b);
        if (!cfg->quiet && ss_now() - last > 10) {
            last = ss_now();
            ss_info("mil: %zu/%zu bags predicted", i + 1, nb);
        }
    }
    if (fb && fclose(fb) && !rc) rc = ss_error_system(DOM, "cannot write %s", pb);
    if (fi && fclose(fi) && !rc) rc = ss_error_system(DOM, "cannot write %s", pi);
    if (!rc && labelled) {
        /* metrics over the labelled bags */
        size_t k = 0;
        for (size_t i = 0; i < nb; i++)
            if (lab[i] == 0 || lab[i] == 1) {
                pred[k] = pred[i], lab[k] = lab[i], prob[k] = prob[i], recall[k] = recall[i];
                k++;
            }
        double rm, rs;
        ss_eval_mean_std(recall, k, &rm, &rs);
        char pm[4096];
        snprintf(pm, sizeof pm, "%s/metrics.json", out_dir);
        FILE *f = fopen(pm, "w");
        if (!f) {
            rc = ss_error_system(DOM, "cannot write %s", pm);
        } else {
            fprintf(f, "{\n  \"bags\": %zu,\n", k);
            json_num(f, "accuracy", ss_eval_accuracy(pred, lab, k), 1);
            json_num(f, "f1", ss_eval_f1(pred, lab, k), 1);
            json_num(f, "roc_auc", ss_eval_auc(prob, lab, k), 1);
            fprintf(f, "  \"top_k\": %lld,\n", (long long)cfg->top_k);
            fprintf(f, "  \"recall_at_k_definition\": \"witnesses among the top-K attended cells "
                       "of a positive bag / min(K, witnesses in the bag), mean over positive "
                       "bags\",\n");
            json_num(f, "recall_at_k", cfg->witnesses ? rm : NAN, 1);
            json_num(f, "recall_at_k_std", cfg->witnesses ? rs : NAN, 0);
            fprintf(f, "}\n");
            if (fclose(f)) rc = ss_error_system(DOM, "cannot write %s", pm);
        }
        if (!rc && !cfg->quiet)
            ss_info("mil: %zu labelled bags: accuracy %.3f, F1 %.3f, ROC-AUC %.3f%s", k,
                    ss_eval_accuracy(pred, lab, k), ss_eval_f1(pred, lab, k),
                    ss_eval_auc(prob, lab, k), cfg->witnesses ? "" : " (no witness labels: no Recall@K)");
        if (!rc && !cfg->quiet && cfg->witnesses)
            ss_info("mil: Recall@%lld %.3f ± %.3f over positive bags", (long long)cfg->top_k, rm, rs);
    }
    free(att), free(rank), free(wit), free(pred), free(lab), free(prob), free(recall);
    return rc;
}
