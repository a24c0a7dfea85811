/* slidestream — ResNet-18/34 (torchvision BasicBlock layout) with optional fc and projection
 * head: construction, torchvision initialisation, training forward/backward, folded-BN
 * inference, checkpoint I/O.
 *
 * Ownership: the model owns every allocation it uses — one each for the parameters, their
 * gradients, the BN buffers (+ a small int64 array of counters) and the training activations,
 * plus the backward scratch, the conv workspace, the head outputs and, made on the first eval
 * forward, the BN-folded weights with the Winograd transforms of those that take that path
 * (and inference buffers when no training arena exists). All
 * are addressed by offsets fixed at construction for max_batch images; a forward with
 * n < max_batch uses the prefix of each slot. Offsets are in floats.
 */
#include "slidestream/nn_resnet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/error.h"
#include "slidestream/nn_layers.h"
#include "slidestream/nn_preprocess.h"
#include "nn_internal.h"

#define DOM "nn.resnet"
#define BN_MOMENTUM 0.1f
#define BN_EPS 1e-5f
#define MAX_BLOCKS 16

/* One convolution followed by batch norm (every conv of a torchvision ResNet is). */
typedef struct {
    ss_conv2d_t g;      /* geometry for max_batch images */
    size_t w;           /* param: weight [cout, cin, kh, kw] */
    size_t gamma, beta; /* param: BN weight / bias [cout] */
    size_t rmean, rvar; /* buffer: running stats [cout] */
    int counter;        /* counters[] index: num_batches_tracked */
    size_t fw, fb;      /* folded (inference) weight and bias */
    size_t fu;          /* folded: Winograd-transformed folded weight, if has_u */
    int has_u;
    /* training activations (floats, act arena) */
    size_t conv_out;             /* [n, cout, ho, wo] pre-BN, needed by BN backward */
    size_t save_mean, save_istd; /* [cout] */
} convbn_t;

typedef struct {
    convbn_t c1, c2, ds;
    int has_ds;
    size_t a1;                /* act: relu(bn1(conv1(x))) [n, planes, ho, wo] */
    size_t out;               /* act: relu(bn2(conv2(a1)) + identity) */
    size_t dsn;               /* act: bn_ds(conv_ds(x)) */
    size_t in_size, out_size; /* floats per image */
} block_t;

struct ss_resnet_impl {
    int train_capable;
    convbn_t stem;
    ss_pool2d_t pool; /* at max_batch */
    size_t stem_act;  /* act: relu(bn1(conv1)) [n, c0, h1, w1] */
    size_t pooled;    /* act: maxpool output */
    size_t argmax;    /* act (as int32): maxpool indices */
    block_t blocks[MAX_BLOCKS];
    int nblocks;
    int last_c, last_hw;
    size_t fc_w, fc_b, p0_w, p0_b, p2_w, p2_b; /* params */
    /* outputs (own small allocation): feature, logits, projector hidden (post-ReLU), proj */
    float *outs;
    size_t o_feat, o_logits, o_hidden, o_proj;
    /* arenas */
    float *act;
    size_t act_floats;
    float *gradbuf; /* backward scratch */
    size_t blockmax, gregion;
    float *work;
    size_t work_floats;
    float *folded;
    size_t folded_floats;
    float *infer; /* inference ping-pong buffers (may point into act) */
    int infer_owned;
    size_t infer_slot;
    int folded_valid;
    int last_n, last_train;
    const float *last_x;
    char **names;
};

ss_resnet_config_t ss_resnet_config_default(int depth)
{
    ss_resnet_config_t c = {.depth = depth,
                            .width_multiplier = 1.0,
                            .input_size = 224,
                            .mean = {0.485, 0.456, 0.406},
                            .std = {0.229, 0.224, 0.225}};
    return c;
}

static int width(double m, int base)
{
    long c = lround(base * m);
    return c < 1 ? 1 : (int)c;
}

/* ---- construction ------------------------------------------------------------------------ */

typedef struct {
    ss_resnet_t *m;
    size_t np, nb, nact;
    int nc;
    int nt;       /* table entries */
    size_t cap_t; /* table capacity (0 in the counting pass) */
    int failed;   /* a name could not be allocated */
} builder_t;

static int add_entry(builder_t *b, const char *name, ss_dtype_t dt, int ndim, const int64_t *shape,
                     size_t offset, int family)
{
    if (b->cap_t) {
        ss_resnet_t *m = b->m;
        char *s = strdup(name);
        if (!s) {
            b->failed = 1;
            return ss_error(DOM, "out of memory");
        }
        m->impl->names[b->nt] = s;
        ss_ckpt_tensor_t *t = &m->table[b->nt];
        t->name = s;
        t->dtype = dt;
        t->ndim = ndim;
        for (int i = 0; i < ndim; i++)
            t->shape[i] = shape[i];
        /* family: 0 params, 1 buffers, 2 counters; data resolved after allocation */
        t->data = (void *)(uintptr_t)((offset << 2) | (size_t)family);
    }
    b->nt++;
    return 0;
}

static size_t param(builder_t *b, const char *name, int ndim, const int64_t *shape)
{
    size_t n = 1, off = b->np;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    add_entry(b, name, SS_DTYPE_F32, ndim, shape, off, 0);
    b->np += n;
    return off;
}

static size_t buffer(builder_t *b, const char *name, int64_t c)
{
    size_t off = b->nb;
    add_entry(b, name, SS_DTYPE_F32, 1, &c, off, 1);
    b->nb += (size_t)c;
    return off;
}

static size_t act(builder_t *b, size_t floats)
{
    size_t off = b->nact;
    b->nact += (floats + 15) & ~(size_t)15; /* keep 64-byte alignment */
    return off;
}

static int convbn(builder_t *b, convbn_t *cb, const char *conv_name, const char *bn_name, int n,
                  int cin, int h, int cout, int k, int stride, int pad)
{
    char nm[128];
    if (ss_conv2d_init(&cb->g, n, cin, h, h, cout, k, k, stride, pad)) return -1;
    int64_t ws[4] = {cout, cin, k, k}, cs[1] = {cout};
    snprintf(nm, sizeof(nm), "%s.weight", conv_name);
    cb->w = param(b, nm, 4, ws);
    snprintf(nm, sizeof(nm), "%s.weight", bn_name);
    cb->gamma = param(b, nm, 1, cs);
    snprintf(nm, sizeof(nm), "%s.bias", bn_name);
    cb->beta = param(b, nm, 1, cs);
    snprintf(nm, sizeof(nm), "%s.running_mean", bn_name);
    cb->rmean = buffer(b, nm, cout);
    snprintf(nm, sizeof(nm), "%s.running_var", bn_name);
    cb->rvar = buffer(b, nm, cout);
    snprintf(nm, sizeof(nm), "%s.num_batches_tracked", bn_name);
    cb->counter = b->nc++;
    add_entry(b, nm, SS_DTYPE_I64, 0, NULL, (size_t)cb->counter, 2);
    size_t out = (size_t)n * cout * cb->g.ho * cb->g.wo;
    cb->conv_out = act(b, out);
    cb->save_mean = act(b, (size_t)cout);
    cb->save_istd = act(b, (size_t)cout);
    return 0;
}

static size_t per_image(const ss_conv2d_t *g)
{
    return (size_t)g->cout * g->ho * g->wo;
}

static int build(builder_t *b)
{
    ss_resnet_t *m = b->m;
    ss_resnet_impl_t *im = m->impl;
    const ss_resnet_config_t *cfg = &m->cfg;
    int n = m->max_batch, S = cfg->input_size;
    static const int depth18[4] = {2, 2, 2, 2}, depth34[4] = {3, 4, 6, 3};
    const int *nb = cfg->depth == 18 ? depth18 : depth34;
    int nlayers = cfg->truncate_layer3 ? 3 : 4;
    b->np = b->nb = b->nact = 0;
    b->nc = b->nt = 0;

    int c0 = width(cfg->width_multiplier, 64);
    if (convbn(b, &im->stem, "conv1", "bn1", n, 3, S, c0, 7, 2, 3)) return -1;
    im->stem_act = act(b, (size_t)n * per_image(&im->stem.g));
    int h = im->stem.g.ho;
    if (ss_pool2d_init(&im->pool, n, c0, h, h, 3, 2, 1)) return -1;
    size_t pooled = (size_t)c0 * im->pool.ho * im->pool.wo;
    im->pooled = act(b, n * pooled);
    im->argmax = act(b, n * pooled);
    h = im->pool.ho;
    int cin = c0;
    size_t blockmax = pooled;
    im->nblocks = 0;
    for (int L = 0; L < nlayers; L++) {
        int planes = width(cfg->width_multiplier, 64 << L);
        for (int i = 0; i < nb[L]; i++) {
            block_t *bl = &im->blocks[im->nblocks++];
            int stride = (i == 0 && L > 0) ? 2 : 1;
            char cn[64], bn[64];
            snprintf(cn, sizeof(cn), "layer%d.%d.conv1", L + 1, i);
            snprintf(bn, sizeof(bn), "layer%d.%d.bn1", L + 1, i);
            if (convbn(b, &bl->c1, cn, bn, n, cin, h, planes, 3, stride, 1)) return -1;
            bl->a1 = act(b, (size_t)n * per_image(&bl->c1.g));
            int ho = bl->c1.g.ho;
            snprintf(cn, sizeof(cn), "layer%d.%d.conv2", L + 1, i);
            snprintf(bn, sizeof(bn), "layer%d.%d.bn2", L + 1, i);
            if (convbn(b, &bl->c2, cn, bn, n, planes, ho, planes, 3, 1, 1)) return -1;
            bl->out = act(b, (size_t)n * per_image(&bl->c2.g));
            bl->has_ds = stride != 1 || cin != planes;
            if (bl->has_ds) {
                snprintf(cn, sizeof(cn), "layer%d.%d.downsample.0", L + 1, i);
                snprintf(bn, sizeof(bn), "layer%d.%d.downsample.1", L + 1, i);
                if (convbn(b, &bl->ds, cn, bn, n, cin, h, planes, 1, stride, 0)) return -1;
                bl->dsn = act(b, (size_t)n * per_image(&bl->ds.g));
            }
            bl->in_size = (size_t)cin * h * h;
            bl->out_size = per_image(&bl->c2.g);
            if (bl->out_size > blockmax) blockmax = bl->out_size;
            cin = planes;
            h = ho;
        }
    }
    im->last_c = cin;
    im->last_hw = h * h;
    m->feature_dim = cin;
    int64_t s2[2];
    if (cfg->num_classes > 0) {
        s2[0] = cfg->num_classes, s2[1] = cin;
        im->fc_w = param(b, "fc.weight", 2, s2);
        im->fc_b = param(b, "fc.bias", 1, s2);
    }
    if (cfg->proj_hidden > 0) {
        s2[0] = cfg->proj_hidden, s2[1] = cin;
        im->p0_w = param(b, "projector.0.weight", 2, s2);
        im->p0_b = param(b, "projector.0.bias", 1, s2);
        s2[0] = cfg->proj_out, s2[1] = cfg->proj_hidden;
        im->p2_w = param(b, "projector.2.weight", 2, s2);
        im->p2_b = param(b, "projector.2.bias", 1, s2);
    }
    size_t head = (size_t)cin;
    if (cfg->num_classes > (int)head) head = (size_t)cfg->num_classes;
    if (cfg->proj_hidden > (int)head) head = (size_t)cfg->proj_hidden;
    if (cfg->proj_out > (int)head) head = (size_t)cfg->proj_out;
    if (head > blockmax) blockmax = head;
    im->blockmax = (size_t)n * blockmax;
    return b->failed ? -1 : 0;
}

/* Largest conv workspace over every conv (forward and backward) at max_batch. */
static size_t max_workspace(ss_resnet_impl_t *im)
{
    size_t w = 0;
    const convbn_t *list[1 + 3 * MAX_BLOCKS];
    int k = 0;
    list[k++] = &im->stem;
    for (int i = 0; i < im->nblocks; i++) {
        list[k++] = &im->blocks[i].c1;
        list[k++] = &im->blocks[i].c2;
        if (im->blocks[i].has_ds) list[k++] = &im->blocks[i].ds;
    }
    for (int i = 0; i < k; i++) {
        size_t f = ss_conv2d_forward_workspace(&list[i]->g);
        size_t g = ss_conv2d_backward_workspace(&list[i]->g);
        if (f > w) w = f;
        if (g > w) w = g;
    }
    return w;
}

static void *alloc_floats(size_t n)
{
    size_t bytes = ((n ? n : 1) * sizeof(float) + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, bytes);
    return p;
}

/* Each conv of the model, for loops that treat them alike. */
static int all_convs(ss_resnet_impl_t *im, convbn_t **list)
{
    int k = 0;
    list[k++] = &im->stem;
    for (int i = 0; i < im->nblocks; i++) {
        list[k++] = &im->blocks[i].c1;
        list[k++] = &im->blocks[i].c2;
        if (im->blocks[i].has_ds) list[k++] = &im->blocks[i].ds;
    }
    return k;
}

ss_resnet_t *ss_resnet_new(const ss_resnet_config_t *cfg, int max_batch, int train)
{
    ss_nn_check_blas();
    if (cfg->depth != 18 && cfg->depth != 34) {
        ss_error(DOM, "depth %d is not supported (18 or 34)", cfg->depth);
        return NULL;
    }
    if (!(cfg->width_multiplier > 0.0) || cfg->width_multiplier > 64.0) {
        ss_error(DOM, "width multiplier %g must be in (0, 64]", cfg->width_multiplier);
        return NULL;
    }
    if (cfg->input_size < 32 || cfg->input_size > 4096) {
        ss_error(DOM, "input size %d must be in [32, 4096] pixels", cfg->input_size);
        return NULL;
    }
    if (max_batch < 1 || cfg->num_classes < 0 || cfg->proj_hidden < 0 || cfg->proj_out < 0 ||
        (cfg->proj_hidden > 0) != (cfg->proj_out > 0)) {
        ss_error(DOM, "bad batch (%d) or head sizes (classes %d, projector %d-%d)", max_batch,
                 cfg->num_classes, cfg->proj_hidden, cfg->proj_out);
        return NULL;
    }
    ss_resnet_t *m = calloc(1, sizeof(*m));
    ss_resnet_impl_t *im = calloc(1, sizeof(*im));
    if (!m || !im) {
        free(m), free(im);
        ss_error(DOM, "out of memory");
        return NULL;
    }
    m->cfg = *cfg;
    m->max_batch = max_batch;
    m->impl = im;
    im->train_capable = train;
    builder_t b = {.m = m};
    if (build(&b)) goto fail; /* counting pass */
    m->table_len = b.nt;
    m->table = calloc((size_t)b.nt, sizeof(*m->table));
    im->names = calloc((size_t)b.nt, sizeof(char *));
    if (!m->table || !im->names) goto oom;
    b.cap_t = (size_t)b.nt;
    if (build(&b)) goto fail; /* naming pass (same offsets) */
    m->num_params = b.np;
    m->num_buffers = b.nb;
    m->num_counters = b.nc;
    m->params = alloc_floats(b.np);
    m->buffers = alloc_floats(b.nb);
    m->counters = calloc((size_t)b.nc, sizeof(int64_t));
    if (!m->params || !m->buffers || !m->counters) goto oom;
    for (int i = 0; i < m->table_len; i++) {
        uintptr_t v = (uintptr_t)m->table[i].data;
        size_t off = v >> 2;
        int fam = (int)(v & 3);
        m->table[i].data = fam == 0   ? (void *)(m->params + off)
                           : fam == 1 ? (void *)(m->buffers + off)
                                      : (void *)(m->counters + off);
    }
    size_t head = (size_t)max_batch;
    im->o_feat = 0;
    im->o_logits = head * (size_t)m->feature_dim;
    im->o_hidden = im->o_logits + head * (size_t)cfg->num_classes;
    im->o_proj = im->o_hidden + head * (size_t)cfg->proj_hidden;
    im->outs = alloc_floats(im->o_proj + head * (size_t)cfg->proj_out);
    im->work_floats = max_workspace(im);
    im->work = alloc_floats(im->work_floats);
    if (!im->outs || !im->work) goto oom;
    if (train) {
        m->grads = alloc_floats(b.np);
        im->act_floats = b.nact;
        im->act = alloc_floats(b.nact);
        /* backward scratch: two ping-pong block gradients plus a region for four more block
         * gradients, which the stem's (larger) gradient reuses. */
        size_t stem = (size_t)max_batch * per_image(&im->stem.g);
        im->gregion = 4 * im->blockmax > stem ? 4 * im->blockmax : stem;
        im->gradbuf = alloc_floats(2 * im->blockmax + im->gregion);
        if (!m->grads || !im->act || !im->gradbuf) goto oom;
        memset(m->grads, 0, b.np * sizeof(float));
    }
    ss_resnet_init_weights(m, cfg->seed);
    return m;
oom:
    ss_error(DOM, "out of memory building a resnet%d (batch %d, %d px)", cfg->depth, max_batch,
             cfg->input_size);
fail:
    ss_resnet_destroy(&m);
    return NULL;
}

void ss_resnet_destroy(ss_resnet_t **pm)
{
    if (!pm || !*pm) return;
    ss_resnet_t *m = *pm;
    ss_resnet_impl_t *im = m->impl;
    if (im) {
        if (im->names)
            for (int i = 0; i < m->table_len; i++)
                free(im->names[i]);
        free(im->names);
        free(im->outs);
        free(im->act);
        free(im->gradbuf);
        free(im->work);
        free(im->folded);
        if (im->infer_owned) free(im->infer);
        free(im);
    }
    free(m->table);
    free(m->params);
    free(m->grads);
    free(m->buffers);
    free(m->counters);
    free(m);
    *pm = NULL;
}

void ss_resnet_init_weights(ss_resnet_t *m, uint64_t seed)
{
    ss_resnet_impl_t *im = m->impl;
    ss_rng_t rng;
    ss_rng_seed(&rng, seed);
    convbn_t *convs[1 + 3 * MAX_BLOCKS];
    int k = all_convs(im, convs);
    for (int i = 0; i < k; i++) {
        convbn_t *c = convs[i];
        /* kaiming_normal_(mode="fan_out", nonlinearity="relu"): std = sqrt(2 / fan_out) */
        size_t fan_out = (size_t)c->g.cout * c->g.kh * c->g.kw;
        size_t nw = fan_out * (size_t)c->g.cin;
        ss_rng_fill_normal(&rng, m->params + c->w, nw, 0.0f, (float)sqrt(2.0 / fan_out));
        for (int j = 0; j < c->g.cout; j++) {
            m->params[c->gamma + j] = 1.0f;
            m->params[c->beta + j] = 0.0f;
            m->buffers[c->rmean + j] = 0.0f;
            m->buffers[c->rvar + j] = 1.0f;
        }
        m->counters[c->counter] = 0;
    }
    /* nn.Linear default: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
    const ss_resnet_config_t *cfg = &m->cfg;
    struct {
        int on, out, in;
        size_t w, b;
    } lin[3] = {{cfg->num_classes > 0, cfg->num_classes, m->feature_dim, im->fc_w, im->fc_b},
                {cfg->proj_hidden > 0, cfg->proj_hidden, m->feature_dim, im->p0_w, im->p0_b},
                {cfg->proj_hidden > 0, cfg->proj_out, cfg->proj_hidden, im->p2_w, im->p2_b}};
    for (int i = 0; i < 3; i++) {
        if (!lin[i].on) continue;
        float bound = (float)(1.0 / sqrt((double)lin[i].in));
        ss_rng_fill_uniform(&rng, m->params + lin[i].w, (size_t)lin[i].out * lin[i].in, -bound,
                            bound);
        ss_rng_fill_uniform(&rng, m->params + lin[i].b, (size_t)lin[i].out, -bound, bound);
    }
    im->folded_valid = 0;
}

void ss_resnet_params_changed(ss_resnet_t *m)
{
    m->impl->folded_valid = 0;
}

void ss_resnet_zero_grad(ss_resnet_t *m)
{
    if (m->grads) memset(m->grads, 0, m->num_params * sizeof(float));
    m->impl->folded_valid = 0; /* a training step is coming: the weights will change */
}

/* ---- training forward / backward --------------------------------------------------------- */

static ss_conv2d_t geom(const convbn_t *c, int n)
{
    ss_conv2d_t g = c->g;
    g.n = n;
    return g;
}

static void convbn_forward_train(ss_resnet_t *m, convbn_t *c, float *out, const float *x, int n,
                                 int relu)
{
    ss_resnet_impl_t *im = m->impl;
    ss_conv2d_t g = geom(c, n);
    float *co = im->act + c->conv_out;
    const float *P = m->params;
    ss_conv2d_forward(&g, co, x, P + c->w, NULL, im->work);
    ss_batchnorm_forward_train(out, im->act + c->save_mean, im->act + c->save_istd,
                               m->buffers + c->rmean, m->buffers + c->rvar,
                               m->counters + c->counter, co, P + c->gamma, P + c->beta, n, g.cout,
                               g.ho * g.wo, BN_MOMENTUM, BN_EPS, relu);
}

/* dout -> (BN backward, masked by relu_out when given) -> conv backward. din nullable.
 * dtmp receives the BN input gradient (may alias dout). */
static void convbn_backward(ss_resnet_t *m, convbn_t *c, float *din, float *dtmp, const float *dout,
                            const float *x, const float *relu_out, int n)
{
    ss_resnet_impl_t *im = m->impl;
    ss_conv2d_t g = geom(c, n);
    const float *P = m->params;
    float *G = m->grads;
    ss_batchnorm_backward(dtmp, G + c->gamma, G + c->beta, dout, im->act + c->conv_out,
                          im->act + c->save_mean, im->act + c->save_istd, P + c->gamma, relu_out, n,
                          g.cout, g.ho * g.wo);
    ss_conv2d_backward(&g, din, G + c->w, NULL, dtmp, x, P + c->w, im->work);
}

static void heads_forward(ss_resnet_t *m, int n)
{
    ss_resnet_impl_t *im = m->impl;
    const ss_resnet_config_t *cfg = &m->cfg;
    const float *P = m->params;
    float *feat = im->outs + im->o_feat;
    int C = m->feature_dim;
    if (cfg->num_classes > 0)
        ss_linear_forward(im->outs + im->o_logits, feat, P + im->fc_w, P + im->fc_b, n, C,
                          cfg->num_classes);
    if (cfg->proj_hidden > 0) {
        float *h = im->outs + im->o_hidden;
        ss_linear_forward(h, feat, P + im->p0_w, P + im->p0_b, n, C, cfg->proj_hidden);
        ss_relu_forward(h, h, (size_t)n * cfg->proj_hidden);
        ss_linear_forward(im->outs + im->o_proj, h, P + im->p2_w, P + im->p2_b, n, cfg->proj_hidden,
                          cfg->proj_out);
    }
}

static void forward_train(ss_resnet_t *m, const float *x, int n)
{
    ss_resnet_impl_t *im = m->impl;
    float *A = im->act;
    convbn_forward_train(m, &im->stem, A + im->stem_act, x, n, 1);
    ss_pool2d_t pg = im->pool;
    pg.n = n;
    ss_maxpool2d_forward(&pg, A + im->pooled, (int32_t *)(void *)(A + im->argmax),
                         A + im->stem_act);
    const float *in = A + im->pooled;
    for (int i = 0; i < im->nblocks; i++) {
        block_t *b = &im->blocks[i];
        float *out = A + b->out;
        convbn_forward_train(m, &b->c1, A + b->a1, in, n, 1);
        convbn_forward_train(m, &b->c2, out, A + b->a1, n, 0);
        const float *idn = in;
        if (b->has_ds) {
            convbn_forward_train(m, &b->ds, A + b->dsn, in, n, 0);
            idn = A + b->dsn;
        }
        ss_add_forward(out, out, idn, (size_t)n * b->out_size, 1);
        in = out;
    }
    ss_avgpool_global_forward(im->outs + im->o_feat, in, n, im->last_c, im->last_hw);
    heads_forward(m, n);
}

int ss_resnet_backward(ss_resnet_t *m, const float *dfeature, const float *dlogits,
                       const float *dproj)
{
    ss_resnet_impl_t *im = m->impl;
    if (!m->grads) return ss_error(DOM, "backward on an inference-only model");
    if (!im->last_train || im->last_n < 1)
        return ss_error(DOM, "backward needs a preceding training forward");
    const ss_resnet_config_t *cfg = &m->cfg;
    int n = im->last_n, C = m->feature_dim;
    const float *P = m->params;
    float *G = m->grads, *A = im->act;
    float *dA = im->gradbuf, *dB = dA + im->blockmax, *R = dB + im->blockmax;
    float *g1 = R, *g2 = R + im->blockmax, *g3 = R + 2 * im->blockmax, *g4 = R + 3 * im->blockmax;
    const float *feat = im->outs + im->o_feat;
    size_t nf = (size_t)n * C;

    /* dfeature (n, C) accumulated in g4 */
    float *df = g4;
    if (dfeature)
        memcpy(df, dfeature, nf * sizeof(float));
    else
        memset(df, 0, nf * sizeof(float));
    if (dlogits && cfg->num_classes > 0) {
        ss_linear_backward(g1, G + im->fc_w, G + im->fc_b, dlogits, feat, P + im->fc_w, n, C,
                           cfg->num_classes);
        ss_add_inplace(df, g1, nf);
    }
    if (dproj && cfg->proj_hidden > 0) {
        const float *h = im->outs + im->o_hidden;
        ss_linear_backward(g2, G + im->p2_w, G + im->p2_b, dproj, h, P + im->p2_w, n,
                           cfg->proj_hidden, cfg->proj_out);
        ss_relu_backward(g2, g2, h, (size_t)n * cfg->proj_hidden);
        ss_linear_backward(g1, G + im->p0_w, G + im->p0_b, g2, feat, P + im->p0_w, n, C,
                           cfg->proj_hidden);
        ss_add_inplace(df, g1, nf);
    }
    float *dout = dA, *dnext = dB;
    ss_avgpool_global_backward(dout, df, n, im->last_c, im->last_hw);
    for (int i = im->nblocks - 1; i >= 0; i--) {
        block_t *b = &im->blocks[i];
        const float *in = i ? A + im->blocks[i - 1].out : A + im->pooled;
        size_t no = (size_t)n * b->out_size;
        ss_add_backward(g1, NULL, dout, A + b->out, no); /* through the final ReLU */
        convbn_backward(m, &b->c2, g3, g2, g1, A + b->a1, NULL, n);
        convbn_backward(m, &b->c1, dnext, g3, g3, in, A + b->a1, n);
        if (b->has_ds) {
            convbn_backward(m, &b->ds, g4, g2, g1, in, NULL, n);
            ss_add_inplace(dnext, g4, (size_t)n * b->in_size);
        } else {
            ss_add_inplace(dnext, g1, no);
        }
        float *t = dout;
        dout = dnext;
        dnext = t;
    }
    ss_pool2d_t pg = im->pool;
    pg.n = n;
    ss_maxpool2d_backward(&pg, R, dout, (const int32_t *)(const void *)(A + im->argmax));
    convbn_backward(m, &im->stem, NULL, R, R, im->last_x, A + im->stem_act, n);
    return 0;
}

/* ---- inference (BN folded into the convolutions) ----------------------------------------- */

static int fold_all(ss_resnet_t *m)
{
    ss_resnet_impl_t *im = m->impl;
    convbn_t *convs[1 + 3 * MAX_BLOCKS];
    int k = all_convs(im, convs);
    if (!im->folded) {
        size_t total = 0;
        for (int i = 0; i < k; i++) {
            convbn_t *c = convs[i];
            c->fw = total;
            total += (size_t)c->g.cout * c->g.cin * c->g.kh * c->g.kw;
            c->fb = total;
            total += ((size_t)c->g.cout + 15) & ~(size_t)15;
            /* Winograd convs (at the largest batch; never at a smaller one if not there) keep
             * their transformed weights: the forward then skips that transform */
            c->has_u = ss_conv_wino_applies_u(&c->g);
            if (c->has_u) {
                c->fu = total;
                total += (ss_conv_wino_weights_floats(&c->g) + 15) & ~(size_t)15;
            }
        }
        im->folded = alloc_floats(total);
        if (!im->folded) return ss_error(DOM, "out of memory for folded weights");
        im->folded_floats = total;
    }
    for (int i = 0; i < k; i++) {
        convbn_t *c = convs[i];
        int kk = c->g.cin * c->g.kh * c->g.kw;
        ss_batchnorm_fold(im->folded + c->fw, im->folded + c->fb, m->params + c->w, NULL,
                          m->params + c->gamma, m->params + c->beta, m->buffers + c->rmean,
                          m->buffers + c->rvar, c->g.cout, kk, BN_EPS);
        if (c->has_u)
            ss_conv_wino_weights(&c->g, im->folded + c->fu, im->folded + c->fw);
    }
    im->folded_valid = 1;
    return 0;
}

static int ensure_infer(ss_resnet_t *m)
{
    ss_resnet_impl_t *im = m->impl;
    if (im->infer) return 0;
    /* three rotating activation slots of the largest tensor (the stem's conv output) */
    size_t slot = ((size_t)m->max_batch * per_image(&im->stem.g) + 15) & ~(size_t)15;
    size_t need = 3 * slot;
    im->infer_slot = slot;
    if (im->act && im->act_floats >= need) {
        im->infer = im->act; /* a later backward needs a new training forward anyway */
        return 0;
    }
    im->infer = alloc_floats(need);
    if (!im->infer) return ss_error(DOM, "out of memory for inference buffers");
    im->infer_owned = 1;
    return 0;
}

static void conv_fused(ss_resnet_t *m, const convbn_t *c, float *out, const float *x,
                       const float *residual, int relu, int n)
{
    ss_resnet_impl_t *im = m->impl;
    ss_conv2d_t g = geom(c, n);
    if (c->has_u && ss_conv_wino_applies_u(&g))
        ss_conv_wino_forward_u(&g, out, x, im->folded + c->fu, im->folded + c->fb, residual,
                               relu, im->work);
    else
        ss_conv2d_forward_fused(&g, out, x, im->folded + c->fw, im->folded + c->fb, residual,
                                relu, im->work);
}

static int forward_eval(ss_resnet_t *m, const float *x, int n)
{
    ss_resnet_impl_t *im = m->impl;
    if (!im->folded_valid && fold_all(m)) return -1;
    if (ensure_infer(m)) return -1;
    float *slot[3] = {im->infer, im->infer + im->infer_slot, im->infer + 2 * im->infer_slot};
    conv_fused(m, &im->stem, slot[0], x, NULL, 1, n);
    ss_pool2d_t pg = im->pool;
    pg.n = n;
    ss_maxpool2d_forward_values(&pg, slot[1], slot[0]);
    int xi = 1; /* slot holding the block input */
    for (int i = 0; i < im->nblocks; i++) {
        block_t *b = &im->blocks[i];
        int ti = (xi + 1) % 3, oi = (xi + 2) % 3;
        conv_fused(m, &b->c1, slot[ti], slot[xi], NULL, 1, n);
        if (b->has_ds) {
            conv_fused(m, &b->ds, slot[oi], slot[xi], NULL, 0, n);
            conv_fused(m, &b->c2, slot[oi], slot[ti], slot[oi], 1, n);
            xi = oi;
        } else { /* the output overwrites the identity in place */
            conv_fused(m, &b->c2, slot[xi], slot[ti], slot[xi], 1, n);
        }
    }
    ss_avgpool_global_forward(im->outs + im->o_feat, slot[xi], n, im->last_c, im->last_hw);
    heads_forward(m, n);
    return 0;
}

int ss_resnet_forward(ss_resnet_t *m, const float *x, int n, int train)
{
    ss_resnet_impl_t *im = m->impl;
    if (n < 1 || n > m->max_batch)
        return ss_error(DOM, "batch of %d images outside [1, %d]", n, m->max_batch);
    im->last_n = 0;
    if (train) {
        if (!im->train_capable) return ss_error(DOM, "training forward on an inference model");
        if (n < 2) return ss_error(DOM, "training batch norm needs at least 2 images");
        im->folded_valid = 0; /* running statistics change */
        forward_train(m, x, n);
    } else if (forward_eval(m, x, n)) {
        return -1;
    }
    im->last_n = n;
    im->last_train = train;
    im->last_x = x;
    return 0;
}

const float *ss_resnet_output(const ss_resnet_t *m, ss_resnet_output_t which, int *dim)
{
    const ss_resnet_impl_t *im = m->impl;
    switch (which) {
    case SS_RESNET_FEATURE:
        if (dim) *dim = m->feature_dim;
        return im->outs + im->o_feat;
    case SS_RESNET_LOGITS:
        if (m->cfg.num_classes <= 0) return NULL;
        if (dim) *dim = m->cfg.num_classes;
        return im->outs + im->o_logits;
    case SS_RESNET_PROJECTION:
        if (m->cfg.proj_hidden <= 0) return NULL;
        if (dim) *dim = m->cfg.proj_out;
        return im->outs + im->o_proj;
    }
    return NULL;
}

size_t ss_resnet_memory_bytes(const ss_resnet_t *m)
{
    const ss_resnet_impl_t *im = m->impl;
    size_t f = m->num_params * (m->grads ? 2 : 1) + m->num_buffers + im->act_floats +
               (im->gradbuf ? 2 * im->blockmax + im->gregion : 0) + im->work_floats +
               im->folded_floats + (im->infer_owned ? 3 * im->infer_slot : 0) + im->o_proj +
               (size_t)m->max_batch * m->cfg.proj_out;
    return f * sizeof(float) + (size_t)m->num_counters * sizeof(int64_t);
}

/* ---- checkpoints --------------------------------------------------------------------------- */

static void meta_from_cfg(const ss_resnet_config_t *cfg, ss_ckpt_meta_t *meta)
{
    memset(meta, 0, sizeof(*meta));
    snprintf(meta->arch, sizeof(meta->arch), "resnet%d", cfg->depth);
    meta->width_multiplier = cfg->width_multiplier;
    meta->input_size = cfg->input_size;
    memcpy(meta->mean, cfg->mean, sizeof(meta->mean));
    memcpy(meta->std, cfg->std, sizeof(meta->std));
    if (cfg->truncate_layer3)
        snprintf(meta->truncate_after, sizeof(meta->truncate_after), "layer3");
}

int ss_resnet_save(const ss_resnet_t *m, const char *path)
{
    ss_ckpt_meta_t meta;
    meta_from_cfg(&m->cfg, &meta);
    return ss_ckpt_save(path, &meta, m->table, m->table_len);
}

static int cfg_from_meta(const ss_ckpt_meta_t *meta, const char *path, ss_resnet_config_t *cfg)
{
    int depth;
    if (!strcmp(meta->arch, "resnet18"))
        depth = 18;
    else if (!strcmp(meta->arch, "resnet34"))
        depth = 34;
    else
        return ss_error(DOM, "%s: arch '%s' is not resnet18 or resnet34", path, meta->arch);
    *cfg = ss_resnet_config_default(depth);
    cfg->width_multiplier = meta->width_multiplier;
    cfg->input_size = meta->input_size;
    memcpy(cfg->mean, meta->mean, sizeof(cfg->mean));
    memcpy(cfg->std, meta->std, sizeof(cfg->std));
    if (meta->truncate_after[0]) {
        if (strcmp(meta->truncate_after, "layer3"))
            return ss_error(DOM, "%s: truncate_after '%s' is not supported (only layer3)", path,
                            meta->truncate_after);
        cfg->truncate_layer3 = 1;
    }
    return 0;
}

int ss_resnet_load(ss_resnet_t *m, const char *path, int flags)
{
    ss_ckpt_meta_t meta;
    ss_resnet_config_t fc;
    if (ss_ckpt_read_meta(path, &meta) || cfg_from_meta(&meta, path, &fc)) return -1;
    const ss_resnet_config_t *c = &m->cfg;
    /* Widths are checked tensor by tensor below (two multipliers can give the same widths). */
    if (fc.depth != c->depth || fc.truncate_layer3 != c->truncate_layer3)
        return ss_error(DOM, "%s: holds %s width %g%s, the model is resnet%d width %g%s", path,
                        meta.arch, fc.width_multiplier, fc.truncate_layer3 ? " (layer3)" : "",
                        c->depth, c->width_multiplier, c->truncate_layer3 ? " (layer3)" : "");
    if (ss_ckpt_load(path, NULL, m->table, m->table_len, flags)) return -1;
    memcpy(m->cfg.mean, fc.mean, sizeof(fc.mean));
    memcpy(m->cfg.std, fc.std, sizeof(fc.std));
    m->impl->folded_valid = 0;
    return 0;
}

int ss_resnet_config_from_checkpoint(const char *path, ss_resnet_config_t *cfg)
{
    ss_ckpt_meta_t meta;
    if (ss_ckpt_read_meta(path, &meta) || cfg_from_meta(&meta, path, cfg)) return -1;
    int nd;
    int64_t sh[SS_CKPT_MAX_DIM];
    int r = ss_ckpt_dataset_shape(path, "fc.weight", &nd, sh);
    if (r < 0) return -1;
    if (r == 0) {
        if (nd != 2) return ss_error(DOM, "%s: fc.weight is not 2-D", path);
        cfg->num_classes = (int)sh[0];
    }
    r = ss_ckpt_dataset_shape(path, "projector.0.weight", &nd, sh);
    if (r < 0) return -1;
    if (r == 0) {
        int64_t s2[SS_CKPT_MAX_DIM];
        int nd2;
        if (nd != 2 || ss_ckpt_dataset_shape(path, "projector.2.weight", &nd2, s2) != 0 || nd2 != 2)
            return ss_error(DOM, "%s: projector.0.weight / projector.2.weight incomplete", path);
        cfg->proj_hidden = (int)sh[0];
        cfg->proj_out = (int)s2[0];
    }
    return 0;
}

ss_resnet_t *ss_resnet_new_from_checkpoint(const char *path, int max_batch, int train)
{
    ss_resnet_config_t cfg;
    if (ss_resnet_config_from_checkpoint(path, &cfg)) return NULL;
    ss_resnet_t *m = ss_resnet_new(&cfg, max_batch, train);
    if (!m) return NULL;
    if (ss_ckpt_load(path, NULL, m->table, m->table_len, SS_CKPT_STRICT)) {
        ss_resnet_destroy(&m);
        return NULL;
    }
    return m;
}

void ss_resnet_preprocess_u8(const ss_resnet_t *m, float *x, const uint8_t *rgb, int n)
{
    int S = m->cfg.input_size;
    size_t per = (size_t)S * S * 3;
    for (int i = 0; i < n; i++)
        ss_nn_normalise_u8(rgb + (size_t)i * per, S, 0, 0, S, m->cfg.mean, m->cfg.std,
                           x + (size_t)i * per);
}
