/* Training a MIL aggregator on a bag set (mil_train.h, ss_mil_fit): the validation split, the
 * epoch loop (one bag a step), validation, model selection on the validation loss, early
 * stopping, train.csv and train.svg. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "slidestream/error.h"
#include "slidestream/log.h"
#include "slidestream/mil_dtfd.h"
#include "slidestream/mil_eval.h"
#include "slidestream/mil_train.h"
#include "slidestream/nn_optim.h"
#include "slidestream/plot.h"

#define DOM "mil"

ss_mil_train_config_t ss_mil_train_config_default(ss_mil_arch_t arch)
{
    ss_mil_train_config_t c = {0};
    c.epochs = 100;
    c.val_fraction = 0.2;
    c.patience = 20;
    c.seed = 1;
    switch (arch) {
    case SS_MIL_PAMIL: c.lr = 1e-3; break;                      /* SLAM-AGS PAMIL.py */
    case SS_MIL_ABMILX: c.lr = 1e-4, c.adamw = 1; break;        /* two-stage configs */
    case SS_MIL_DTFD: c.lr = 1e-4, c.weight_decay = 1e-4, c.clip = 5; break;
    default: c.lr = 2e-4, c.weight_decay = 1e-4; break;         /* ABMIL */
    }
    return c;
}

static void shuffle(int *v, int n, ss_rng_t *r)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(ss_rng_u64(r) % (uint64_t)(i + 1)), t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

static double softmax1(const float *l)
{
    double a = l[0], b = l[1], m = a > b ? a : b;
    return exp(b - m) / (exp(a - m) + exp(b - m));
}

static double ce(const float *l, int y)
{
    double a = l[0], b = l[1], m = a > b ? a : b;
    return m + log(exp(a - m) + exp(b - m)) - (y ? b : a);
}

/* Gradient-norm clipping: DTFD's reference clips each of its modules on its own (the tier-1
 * classifier, dimension reduction and attention, and tier 2); other models as one. */
static void clip_modules(ss_mil_t *m, double max_norm)
{
    if (m->cfg.arch != SS_MIL_DTFD) {
        ss_clip_grad_norm(m->grads, m->num_params, max_norm);
        return;
    }
    for (int mod = 0;; mod++) {
        double s = 0;
        int any = 0;
        for (int i = 0; i < m->table_len; i++) {
            if (ss_mil_dtfd_module(m, i) != mod) continue;
            any = 1;
            const float *g = ss_mil_grad(m, i);
            for (size_t k = 0; k < ss_ckpt_numel(&m->table[i]); k++) s += (double)g[k] * g[k];
        }
        if (!any) break;
        double total = sqrt(s), scale = max_norm / (total + 1e-6);
        if (scale >= 1) continue;
        for (int i = 0; i < m->table_len; i++) {
            if (ss_mil_dtfd_module(m, i) != mod) continue;
            float *g = ss_mil_grad(m, i);
            for (size_t k = 0; k < ss_ckpt_numel(&m->table[i]); k++) g[k] = (float)(g[k] * scale);
        }
    }
}

typedef struct {
    double loss, acc, auc, f1;
} scores_t;

/* Eval-mode pass over bags idx[0..n): CE loss, accuracy, AUC, F1. */
static int evaluate(ss_mil_t *m, ss_mil_bags_t *B, const int *idx, int n, scores_t *s)
{
    int *pred = malloc((size_t)(n ? n : 1) * sizeof(int)), *lab = malloc((size_t)(n ? n : 1) * sizeof(int));
    double *prob = malloc((size_t)(n ? n : 1) * sizeof(double)), loss = 0;
    int rc = pred && lab && prob ? 0 : ss_error(DOM, "out of memory");
    for (int i = 0; !rc && i < n; i++) {
        ss_mil_bag_t *b = &B->bags[idx[i]];
        float logits[2];
        if (ss_mil_forward(m, b->x, (int)b->n, 0, logits, NULL)) {
            rc = ss_error(DOM, "bag %s", b->id);
            break;
        }
        prob[i] = softmax1(logits);
        pred[i] = logits[1] > logits[0];
        lab[i] = b->label;
        loss += ce(logits, b->label);
    }
    if (!rc) {
        s->loss = n ? loss / n : NAN;
        s->acc = ss_eval_accuracy(pred, lab, (size_t)n);
        s->auc = ss_eval_auc(prob, lab, (size_t)n);
        s->f1 = ss_eval_f1(pred, lab, (size_t)n);
    }
    free(pred), free(lab), free(prob);
    return rc;
}

/* The curves of train.csv as train.svg: losses, and the validation metrics. */
static void draw(const char *dir, const double *cols, int stride, int epochs, int have_val)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/train.svg", dir);
    ss_plot_t *p = ss_plot_new("aggregator training", 2);
    if (!p) goto out;
    double *x = malloc((size_t)epochs * sizeof(double));
    if (!x) goto out;
    for (int e = 0; e < epochs; e++) x[e] = e + 1;
    int pl = ss_plot_panel(p, "loss", "epoch", "cross-entropy", 0);
    int pm = ss_plot_panel(p, "accuracy and validation metrics", "epoch", "", 0);
    static const char *names[] = {"train loss", "train accuracy", "validation loss",
                                  "validation accuracy", "validation ROC-AUC", "validation F1"};
    int rc = pl < 0 || pm < 0;
    for (int k = 0; !rc && k < 6; k++) {
        if (k >= 2 && !have_val) break;
        rc = ss_plot_series(p, (k == 0 || k == 2) ? pl : pm, names[k], x, cols + (size_t)k * stride,
                            (size_t)epochs, 1);
    }
    if (!rc) rc = ss_plot_write(p, path);
    free(x);
    if (!rc) {
        ss_plot_destroy(&p);
        return;
    }
out:
    ss_warn("mil: cannot draw %s: %s", path, ss_error_last());
    ss_error_clear();
    ss_plot_destroy(&p);
}

int ss_mil_fit(ss_mil_t *m, ss_mil_bags_t *B, const ss_mil_train_config_t *cfg,
               const char *out_dir)
{
    if (cfg->epochs < 1 || !(cfg->lr > 0) || cfg->val_fraction < 0 || cfg->val_fraction >= 1)
        return ss_error(DOM, "epochs %d, lr %g, validation fraction %g: want >= 1, > 0, [0, 1)",
                        cfg->epochs, cfg->lr, cfg->val_fraction);
    if (B->dim != m->cfg.dim)
        return ss_error(DOM, "the cache's features have width %d, the model takes %d", B->dim,
                        m->cfg.dim);
    mkdir(out_dir, 0777);
    /* training bags by class; test bags and unlabelled bags are left out */
    int nb = (int)B->n, *cls[2], ncls[2] = {0, 0};
    cls[0] = malloc((size_t)nb * sizeof(int));
    cls[1] = malloc((size_t)nb * sizeof(int));
    int *tr = malloc((size_t)nb * sizeof(int)), *va = malloc((size_t)nb * sizeof(int));
    double *cols = malloc((size_t)cfg->epochs * 6 * sizeof(double));
    float *best = malloc(m->num_params * sizeof(float));
    ss_optim_t *opt = NULL;
    FILE *csv = NULL;
    int rc = 0, ntr = 0, nva = 0;
    if (!cls[0] || !cls[1] || !tr || !va || !cols || !best) {
        rc = ss_error(DOM, "out of memory");
        goto done;
    }
    for (int i = 0; i < nb; i++) {
        ss_mil_bag_t *b = &B->bags[i];
        if (!strcmp(b->split, "test")) continue;
        if (b->label != 0 && b->label != 1) {
            rc = ss_error(DOM, "bag %s (%s) has no label (%d); training needs every training "
                               "bag labelled 0 or 1",
                          b->id, b->path, b->label);
            goto done;
        }
        cls[b->label][ncls[b->label]++] = i;
    }
    if (ncls[0] + ncls[1] < 1) {
        rc = ss_error(DOM, "no training bags (every bag is in the test split)");
        goto done;
    }
    ss_rng_t rng;
    ss_rng_seed(&rng, cfg->seed);
    for (int c = 0; c < 2; c++) { /* stratified validation split */
        shuffle(cls[c], ncls[c], &rng);
        int k = (int)lround(cfg->val_fraction * ncls[c]);
        if (cfg->val_fraction > 0 && k == 0 && ncls[c] >= 2) k = 1;
        for (int i = 0; i < ncls[c]; i++) {
            if (i < k) va[nva++] = cls[c][i];
            else tr[ntr++] = cls[c][i];
        }
    }
    if (!ntr) {
        rc = ss_error(DOM, "no bags left to train on after the validation split");
        goto done;
    }
    for (int i = 0; i < ntr; i++)
        if ((rc = ss_mil_bag_load(&B->bags[tr[i]], B->dim))) goto done;
    for (int i = 0; i < nva; i++)
        if ((rc = ss_mil_bag_load(&B->bags[va[i]], B->dim))) goto done;
    ss_optim_config_t oc = ss_optim_config_default(cfg->adamw ? SS_OPTIM_ADAMW : SS_OPTIM_ADAM,
                                                   (float)cfg->lr);
    oc.weight_decay = (float)cfg->weight_decay;
    if (!(opt = ss_optim_new(&oc, m->num_params))) {
        rc = -1;
        goto done;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/train.csv", out_dir);
    if (!(csv = fopen(path, "w"))) {
        rc = ss_error_system(DOM, "cannot write %s", path);
        goto done;
    }
    fprintf(csv, "epoch,train_loss,train_acc,val_loss,val_acc,val_auc,val_f1,selected\n");
    if (!cfg->quiet)
        ss_info("mil: %s on %d training and %d validation bags (of %d negative and %d "
                "positive), %d epochs, lr %g", ss_mil_arch_name(m->cfg.arch), ntr, nva, ncls[0],
                ncls[1], cfg->epochs, cfg->lr);
    if (!nva && !cfg->quiet)
        ss_warn("mil: no validation bags: the last epoch is kept (no model selection)");
    double best_loss = INFINITY;
    int best_epoch = 0, epochs_run = 0;
    memcpy(best, m->params, m->num_params * sizeof(float));
    for (int e = 0; e < cfg->epochs; e++) {
        shuffle(tr, ntr, &rng);
        double tl = 0;
        int ok = 0;
        for (int i = 0; i < ntr; i++) {
            ss_mil_bag_t *b = &B->bags[tr[i]];
            float logits[2];
            double loss;
            ss_mil_zero_grad(m);
            if (ss_mil_forward(m, b->x, (int)b->n, 1, logits, NULL) ||
                ss_mil_backward(m, b->label, &loss)) {
                rc = ss_error(DOM, "bag %s", b->id);
                goto done;
            }
            if (!isfinite(loss)) {
                rc = ss_error(DOM, "epoch %d, bag %s: the loss is %g (lower --lr?)", e + 1, b->id,
                              loss);
                goto done;
            }
            if (cfg->clip > 0) clip_modules(m, cfg->clip);
            ss_optim_step(opt, m->params, m->grads, opt->cfg.lr);
            tl += loss;
            ok += (logits[1] > logits[0]) == b->label;
        }
        scores_t v = {NAN, NAN, NAN, NAN};
        if (nva && (rc = evaluate(m, B, va, nva, &v))) goto done;
        int selected = nva ? v.loss < best_loss : 1;
        if (selected) {
            best_loss = nva ? v.loss : best_loss;
            best_epoch = e + 1;
            memcpy(best, m->params, m->num_params * sizeof(float));
        }
        double row[6] = {tl / ntr, (double)ok / ntr, v.loss, v.acc, v.auc, v.f1};
        for (int k = 0; k < 6; k++) cols[(size_t)k * cfg->epochs + e] = row[k];
        fprintf(csv, "%d,%.6f,%.4f,%.6f,%.4f,%.4f,%.4f,%d\n", e + 1, row[0], row[1], row[2],
                row[3], row[4], row[5], selected);
        fflush(csv);
        epochs_run = e + 1;
        if (!cfg->quiet)
            ss_info("mil: epoch %d/%d  train loss %.4f acc %.3f  val loss %.4f acc %.3f auc "
                    "%.3f%s", e + 1, cfg->epochs, row[0], row[1], v.loss, v.acc, v.auc,
                    selected ? "  *" : "");
        if (nva && cfg->patience > 0 && e + 1 - best_epoch >= cfg->patience) {
            if (!cfg->quiet)
                ss_info("mil: no better validation loss for %d epochs: stopping", cfg->patience);
            break;
        }
    }
    memcpy(m->params, best, m->num_params * sizeof(float));
    snprintf(path, sizeof path, "%s/model.h5", out_dir);
    if ((rc = ss_mil_save(m, path))) goto done;
    draw(out_dir, cols, cfg->epochs, epochs_run, nva > 0);
    if (!cfg->quiet)
        ss_info("mil: kept epoch %d%s -> %s", best_epoch,
                nva ? " (lowest validation loss)" : " (the last)", path);
done:
    if (csv && fclose(csv) && !rc) rc = ss_error_system(DOM, "cannot write %s/train.csv", out_dir);
    ss_optim_destroy(&opt);
    free(cls[0]), free(cls[1]), free(tr), free(va), free(cols), free(best);
    return rc;
}
