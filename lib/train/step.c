/* The training step (train.h): forward passes over view groups, the method's losses on the whole
 * batch, per-task gradients by gradient caching, gradient surgery, one SGD step.
 *
 * Gradient caching. The model holds the activations of one forward pass only, and a batch is
 * several passes (one per view group, or chunks of them). So every pass first runs forward and
 * its embeddings are kept (a few KB a cell); the losses and their gradients w.r.t. the embeddings
 * are computed on the whole batch; then each pass whose embeddings carry gradient is run again
 * with activations and back-propagated from its slice of dL/dz. The last pass of the first sweep
 * is still live, so backward goes in reverse pass order and recomputes all but that one. A train
 * forward updates the batch-norm running statistics, so the state after the first sweep (one
 * update per pass, in pass order, as the reference's separate forward calls) is saved and put
 * back after the recomputations.
 *
 * Ownership: the trainer borrows the model; it owns the optimiser state and every buffer below,
 * allocated once for the largest batch.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/error.h"
#include "slidestream/nn_loss.h"
#include "slidestream/nn_surgery.h"
#include "slidestream/train.h"

#define DOM "train"

enum { MAT_CON, MAT_SIM, MAT_CE, MAT_COUNT };

/* One forward pass: rows [start, start + n) of the batch input. */
typedef struct {
    int start, n;
} pass_t;

struct ss_trainer {
    ss_resnet_t *m;
    ss_train_config_t cfg;
    ss_optim_t *opt;
    int max_pos, max_neg, max_rows, dim;
    /* embeddings and their gradients per loss matrix, rows in the loss's own order */
    float *z[MAT_COUNT], *dz[MAT_COUNT]; /* (rows, width) each */
    float *dpass;                         /* (max pass, width) one pass's dL/dz */
    float *ws;                            /* loss workspace */
    size_t ws_len;
    int *labels;           /* (max_pos + max_neg) supervised targets */
    int *row_mat, *row_at; /* (max_rows) where each batch row's output goes */
    pass_t *passes;
    float *g1, *g2;        /* (num_params) per-task gradients */
    float *buf_save;       /* (num_buffers) running statistics after the first sweep */
    int64_t *cnt_save;     /* (num_counters) */
};

ss_train_config_t ss_train_config_default(ss_train_method_t method)
{
    ss_train_config_t c = {0};
    c.method = method;
    c.momentum = 0.9f;
    c.weight_decay = 1e-4f;
    c.tau = 0.07f;
    c.cagrad_c = 0.5;
    return c;
}

int ss_train_views(ss_train_method_t method, int npos, int nneg)
{
    return method == SS_TRAIN_SUPERVISED ? npos + nneg : 2 * (npos + nneg);
}

int ss_train_slot(ss_train_method_t method, int npos, int nneg, int positive, int i, int view)
{
    if (view < 0 || view > 1 || i < 0 || i >= (positive ? npos : nneg)) return -1;
    if (method == SS_TRAIN_SUPERVISED) return view ? -1 : (positive ? i : npos + i);
    if (method == SS_TRAIN_SIMCLR)
        return view * (npos + nneg) + (positive ? i : npos + i);
    return positive ? view * npos + i : 2 * npos + view * nneg + i;
}

/* The view groups of a batch, as (start, n) ranges of its rows. */
static int groups(ss_train_method_t method, int joint, int P, int N, pass_t g[4])
{
    int total = ss_train_views(method, P, N);
    if (joint) {
        g[0] = (pass_t){0, total};
        return 1;
    }
    if (method == SS_TRAIN_SUPERVISED) {
        g[0] = (pass_t){0, P + N};
        return 1;
    }
    if (method == SS_TRAIN_SIMCLR) {
        g[0] = (pass_t){0, P + N};
        g[1] = (pass_t){P + N, P + N};
        return 2;
    }
    g[0] = (pass_t){0, P};
    g[1] = (pass_t){P, P};
    g[2] = (pass_t){2 * P, N};
    g[3] = (pass_t){2 * P + N, N};
    return 4;
}

/* Groups split into chunks of at most cfg->chunk rows, as evenly as possible. */
static int make_passes(const ss_train_config_t *cfg, int P, int N, pass_t *out)
{
    pass_t g[4];
    int ng = groups(cfg->method, cfg->joint, P, N, g), np = 0;
    for (int k = 0; k < ng; k++) {
        if (g[k].n == 0) continue;
        int pieces = cfg->chunk > 0 ? (g[k].n + cfg->chunk - 1) / cfg->chunk : 1;
        for (int j = 0, at = g[k].start; j < pieces; j++) {
            int n = g[k].n / pieces + (j < g[k].n % pieces);
            if (out) out[np] = (pass_t){at, n};
            np++;
            at += n;
        }
    }
    return np;
}

int ss_train_max_pass(const ss_train_config_t *cfg, int npos, int nneg)
{
    pass_t g[4];
    int ng = groups(cfg->method, cfg->joint, npos, nneg, g), mx = 0;
    for (int k = 0; k < ng; k++) {
        int n = g[k].n;
        if (cfg->chunk > 0 && n > 0) {
            int pieces = (n + cfg->chunk - 1) / cfg->chunk;
            n = (n + pieces - 1) / pieces;
        }
        if (n > mx) mx = n;
    }
    return mx;
}

ss_trainer_t *ss_trainer_new(ss_resnet_t *model, const ss_train_config_t *cfg, int max_pos,
                             int max_neg)
{
    if (!model || !model->grads) {
        ss_error(DOM, "the trainer needs a model built for training");
        return NULL;
    }
    if (max_pos < 0 || max_neg < 0 || max_pos + max_neg < 1) {
        ss_error(DOM, "batch of %d positive and %d negative images", max_pos, max_neg);
        return NULL;
    }
    if (!(cfg->tau > 0)) {
        ss_error(DOM, "temperature %g: want > 0", cfg->tau);
        return NULL;
    }
    const ss_resnet_config_t *mc = &model->cfg;
    if (ss_train_method_contrastive(cfg->method) && mc->proj_out <= 0) {
        ss_error(DOM, "method %s needs a projection head, and the model has none (make one "
                      "with `slidestream checkpoint init --projection 512,512`)",
                 ss_train_method_name(cfg->method));
        return NULL;
    }
    if (cfg->method == SS_TRAIN_SUPERVISED && mc->num_classes != 2) {
        ss_error(DOM, "method supervised needs an fc head with 2 classes, and the model has %s "
                      "(make one with `slidestream checkpoint init --classes 2`)",
                 mc->num_classes ? "another number of classes" : "none");
        return NULL;
    }
    int need = ss_train_max_pass(cfg, max_pos, max_neg);
    if (need > model->max_batch) {
        ss_error(DOM, "a forward pass of %d images, and the model holds at most %d", need,
                 model->max_batch);
        return NULL;
    }
    ss_trainer_t *t = calloc(1, sizeof *t);
    if (!t) goto oom;
    t->m = model;
    t->cfg = *cfg;
    t->max_pos = max_pos;
    t->max_neg = max_neg;
    t->max_rows = ss_train_views(cfg->method, max_pos, max_neg);
    int P = max_pos, N = max_neg, d = mc->proj_out, all = max_pos + max_neg;
    t->dim = cfg->method == SS_TRAIN_SUPERVISED ? 2 : d;
    size_t rows_con = 0, rows_sim = 0, rows_ce = 0;
    if (cfg->method == SS_TRAIN_SUPERVISED)
        rows_ce = (size_t)all;
    else if (cfg->method == SS_TRAIN_SIMCLR)
        rows_con = 2 * (size_t)all;
    else
        rows_con = 2 * (size_t)P, rows_sim = 2 * (size_t)N;
    size_t rows[MAT_COUNT] = {rows_con, rows_sim, rows_ce};
    for (int k = 0; k < MAT_COUNT; k++) {
        size_t w = k == MAT_CE ? 2 : (size_t)d;
        if (!rows[k]) continue;
        t->z[k] = malloc(rows[k] * w * sizeof(float));
        t->dz[k] = malloc(rows[k] * w * sizeof(float));
        if (!t->z[k] || !t->dz[k]) goto oom;
    }
    size_t a = rows_con ? ss_loss_ntxent_workspace((int)rows_con, d) : 0;
    size_t b = rows_sim ? ss_loss_similarity_workspace((int)rows_sim, d) : 0;
    t->ws_len = a > b ? a : b;
    t->ws = malloc((t->ws_len ? t->ws_len : 1) * sizeof(float));
    t->dpass = malloc((size_t)need * t->dim * sizeof(float));
    t->labels = malloc((size_t)all * sizeof(int));
    t->row_mat = malloc((size_t)t->max_rows * sizeof(int));
    t->row_at = malloc((size_t)t->max_rows * sizeof(int));
    t->passes = malloc((size_t)(t->max_rows + 4) * sizeof(pass_t));
    t->g1 = malloc(model->num_params * sizeof(float));
    t->g2 = malloc(model->num_params * sizeof(float));
    t->buf_save = malloc((model->num_buffers ? model->num_buffers : 1) * sizeof(float));
    t->cnt_save = malloc((model->num_counters ? model->num_counters : 1) * sizeof(int64_t));
    ss_optim_config_t oc = ss_optim_config_default(SS_OPTIM_SGD, 1e-3f);
    oc.momentum = cfg->momentum;
    oc.weight_decay = cfg->weight_decay;
    t->opt = ss_optim_new(&oc, model->num_params);
    if (!t->ws || !t->dpass || !t->labels || !t->row_mat || !t->row_at || !t->passes || !t->g1 ||
        !t->g2 || !t->buf_save || !t->cnt_save || !t->opt)
        goto oom;
    return t;
oom:
    ss_trainer_destroy(&t);
    ss_error(DOM, "out of memory for a batch of %d + %d images", max_pos, max_neg);
    return NULL;
}

void ss_trainer_destroy(ss_trainer_t **pt)
{
    ss_trainer_t *t = pt ? *pt : NULL;
    if (!t) return;
    for (int k = 0; k < MAT_COUNT; k++) free(t->z[k]), free(t->dz[k]);
    free(t->ws), free(t->dpass), free(t->labels), free(t->row_mat), free(t->row_at);
    free(t->passes), free(t->g1), free(t->g2), free(t->buf_save), free(t->cnt_save);
    ss_optim_destroy(&t->opt);
    free(t);
    *pt = NULL;
}

ss_optim_t *ss_trainer_optim(ss_trainer_t *t)
{
    return t->opt;
}

/* Where each batch row's embedding goes: (matrix, row) in the loss's own row order. */
static void map_rows(ss_trainer_t *t, int P, int N)
{
    ss_train_method_t me = t->cfg.method;
    for (int pos = 0; pos < 2; pos++)
        for (int i = 0; i < (pos ? P : N); i++)
            for (int v = 0; v < 2; v++) {
                int r = ss_train_slot(me, P, N, pos, i, v);
                if (r < 0) continue;
                if (me == SS_TRAIN_SUPERVISED) {
                    t->row_mat[r] = MAT_CE, t->row_at[r] = r;
                } else if (me == SS_TRAIN_SIMCLR) {
                    int img = pos ? i : P + i; /* interleaved views of all images */
                    t->row_mat[r] = MAT_CON, t->row_at[r] = 2 * img + v;
                } else if (pos) {
                    t->row_mat[r] = MAT_CON, t->row_at[r] = 2 * i + v; /* interleaved */
                } else {
                    t->row_mat[r] = MAT_SIM, t->row_at[r] = v * N + i; /* view-major */
                }
            }
}

static int width(const ss_trainer_t *t, int mat)
{
    return mat == MAT_CE ? 2 : t->m->cfg.proj_out;
}

static const float *pass_output(ss_trainer_t *t)
{
    return ss_resnet_output(t->m, t->cfg.method == SS_TRAIN_SUPERVISED ? SS_RESNET_LOGITS
                                                                       : SS_RESNET_PROJECTION,
                            NULL);
}

static int forward(ss_trainer_t *t, const float *x, const pass_t *p)
{
    size_t img = (size_t)3 * t->m->cfg.input_size * t->m->cfg.input_size;
    return ss_resnet_forward(t->m, x + (size_t)p->start * img, p->n, 1);
}

/* Back-propagate the rows of pass p whose matrix is in `mats` (a bit set) from dz; other rows
 * get zero gradient. Returns 0 when the pass had no such rows (nothing done). */
static int pass_backward(ss_trainer_t *t, const pass_t *p, unsigned mats, int *ran)
{
    int w = t->dim, any = 0;
    for (int r = 0; r < p->n; r++) {
        int row = p->start + r, mat = t->row_mat[row];
        float *dst = t->dpass + (size_t)r * w;
        if (mats & (1u << mat)) {
            memcpy(dst, t->dz[mat] + (size_t)t->row_at[row] * w, (size_t)w * sizeof(float));
            any = 1;
        } else {
            memset(dst, 0, (size_t)w * sizeof(float));
        }
    }
    *ran = any;
    if (!any) return 0;
    return t->cfg.method == SS_TRAIN_SUPERVISED ? ss_resnet_backward(t->m, NULL, t->dpass, NULL)
                                                : ss_resnet_backward(t->m, NULL, NULL, t->dpass);
}

/* Accumulate the gradient of the losses in `mats` into m->grads (zeroed first), running the
 * passes backward in reverse order; *live is the pass whose activations the model holds. */
static int task_gradient(ss_trainer_t *t, const float *x, int np, unsigned mats, int *live,
                         ss_train_stats_t *st)
{
    ss_resnet_zero_grad(t->m);
    /* the live pass first, if it takes part, then the others from the last */
    int first = *live;
    for (int step = -1; step < np; step++) {
        int k = step < 0 ? first : np - 1 - step;
        if ((step >= 0 && k == first) || k < 0) continue;
        const pass_t *p = &t->passes[k];
        int has = 0;
        for (int r = 0; r < p->n && !has; r++) has = (mats >> t->row_mat[p->start + r]) & 1u;
        if (!has) continue;
        if (k != *live) {
            if (forward(t, x, p)) return -1;
            *live = k;
            st->reforwards++;
            st->passes++;
        }
        int ran;
        if (pass_backward(t, p, mats, &ran)) return -1;
    }
    return 0;
}

static double norm2(const float *g, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    return sqrt(s);
}

int ss_trainer_step(ss_trainer_t *t, const float *x, int npos, int nneg, float lr,
                    ss_train_stats_t *stats)
{
    ss_train_stats_t st = {.loss_con = NAN, .loss_sim = NAN, .loss_ce = NAN, .cosine = NAN,
                           .norm1 = NAN, .norm2 = NAN, .scale = 1};
    ss_train_method_t me = t->cfg.method;
    int two = ss_train_method_two_task(me);
    if (npos < 0 || nneg < 0 || npos > t->max_pos || nneg > t->max_neg)
        return ss_error(DOM, "batch of %d positive and %d negative images; the trainer was "
                             "made for at most %d and %d",
                        npos, nneg, t->max_pos, t->max_neg);
    if (me != SS_TRAIN_SIMCLR && me != SS_TRAIN_SUPERVISED && (npos < 1 || nneg < 1))
        return ss_error(DOM, "method %s needs cells of both positive and negative bags; this "
                             "batch has %d positive and %d negative",
                        ss_train_method_name(me), npos, nneg);
    if (npos + nneg < 2)
        return ss_error(DOM, "a batch needs at least 2 images, this one has %d", npos + nneg);
    int np = make_passes(&t->cfg, npos, nneg, t->passes);
    for (int k = 0; k < np; k++)
        if (t->passes[k].n < 2)
            return ss_error(DOM, "a forward pass of %d image: batch norm in train mode needs "
                                 "at least 2 (a view group has too few images, or --chunk is 1)",
                            t->passes[k].n);
    map_rows(t, npos, nneg);

    /* 1. forward every pass, keep its embeddings */
    for (int k = 0; k < np; k++) {
        const pass_t *p = &t->passes[k];
        if (forward(t, x, p)) return -1;
        st.passes++;
        const float *o = pass_output(t);
        for (int r = 0; r < p->n; r++) {
            int row = p->start + r, mat = t->row_mat[row], w = width(t, mat);
            memcpy(t->z[mat] + (size_t)t->row_at[row] * w, o + (size_t)r * w,
                   (size_t)w * sizeof(float));
        }
    }
    int live = np - 1;
    ss_resnet_t *m = t->m;
    memcpy(t->buf_save, m->buffers, m->num_buffers * sizeof(float));
    memcpy(t->cnt_save, m->counters, (size_t)m->num_counters * sizeof(int64_t));

    /* 2. losses and dL/dz on the whole batch */
    int d = m->cfg.proj_out;
    float l;
    if (me == SS_TRAIN_SUPERVISED) {
        for (int i = 0; i < npos + nneg; i++) t->labels[i] = i < npos;
        if (ss_loss_cross_entropy(&l, t->dz[MAT_CE], t->z[MAT_CE], t->labels, npos + nneg, 2))
            return -1;
        st.loss_ce = st.loss = l;
    } else {
        int rows = 2 * (me == SS_TRAIN_SIMCLR ? npos + nneg : npos);
        if (rows > 0) {
            if (ss_loss_ntxent(&l, t->dz[MAT_CON], t->z[MAT_CON], rows, d, t->cfg.tau, t->ws))
                return -1;
            st.loss_con = l;
        }
        if (me != SS_TRAIN_SIMCLR) {
            if (ss_loss_similarity(&l, t->dz[MAT_SIM], t->z[MAT_SIM], 2 * nneg, d, t->cfg.tau,
                                   t->cfg.tau, t->ws))
                return -1;
            st.loss_sim = l;
            st.loss = st.loss_con + st.loss_sim;
        } else {
            st.loss = st.loss_con;
        }
    }

    /* 3. gradients by re-running the passes backward */
    size_t n = m->num_params;
    if (two) {
        /* the negative passes come last, so g2 first: its last pass is still live */
        if (task_gradient(t, x, np, 1u << MAT_SIM, &live, &st)) return -1;
        memcpy(t->g2, m->grads, n * sizeof(float));
        if (task_gradient(t, x, np, 1u << MAT_CON, &live, &st)) return -1;
        memcpy(t->g1, m->grads, n * sizeof(float));
        static const ss_surgery_method_t how[] = {
            [SS_TRAIN_SLAM_AGS] = SS_SURGERY_AGS, [SS_TRAIN_PCGRAD] = SS_SURGERY_PCGRAD,
            [SS_TRAIN_CAGRAD] = SS_SURGERY_CAGRAD, [SS_TRAIN_MGDA] = SS_SURGERY_MGDA};
        for (size_t i = 0; i < n; i++) m->grads[i] = t->g1[i] + t->g2[i];
        st.norm_before = norm2(m->grads, n);
        ss_surgery_info_t info;
        if (ss_surgery_combine(m->grads, t->g1, t->g2, n, how[me], t->cfg.cagrad_c, &info))
            return -1;
        st.cosine = info.cosine;
        st.conflict = info.conflict;
        st.norm1 = info.norm1;
        st.norm2 = info.norm2;
        st.scale = info.scale;
    } else {
        if (task_gradient(t, x, np, (1u << MAT_CON) | (1u << MAT_SIM) | (1u << MAT_CE), &live,
                          &st))
            return -1;
        st.norm_before = norm2(m->grads, n);
    }
    st.norm_after = norm2(m->grads, n);
    memcpy(m->buffers, t->buf_save, m->num_buffers * sizeof(float));
    memcpy(m->counters, t->cnt_save, (size_t)m->num_counters * sizeof(int64_t));

    /* 4. SGD */
    ss_optim_step(t->opt, m->params, m->grads, lr);
    ss_resnet_params_changed(m);
    if (stats) *stats = st;
    return 0;
}
