/* The MIL model object (mil.h): configuration, the architectures' registry, the one
 * allocation each for parameters and gradients with the state_dict table over them, and
 * checkpoints. The architectures' maths is in abmil.c, pamil.c, abmilx.c, dtfd.c. */
#include <stdlib.h>
#include <string.h>

#include "mil_internal.h"
#include "slidestream/error.h"

#define DOM "mil"

/* Architectures built into this library (NULL: not yet). */
static const ss_mil_ops_t *const archs[SS_MIL_ARCH_COUNT] = {
    [SS_MIL_ABMIL] = &ss_mil_abmil_ops,
    [SS_MIL_PAMIL] = &ss_mil_pamil_ops,
    [SS_MIL_ABMILX] = &ss_mil_abmilx_ops,
    [SS_MIL_DTFD] = &ss_mil_dtfd_ops,
};

static const char *const arch_names[SS_MIL_ARCH_COUNT] = {"abmil", "pamil", "abmilx", "dtfd"};

ss_mil_config_t ss_mil_config_default(ss_mil_arch_t arch, int dim)
{
    ss_mil_config_t c = {0};
    c.arch = arch;
    c.dim = dim;
    c.hidden = 512;
    c.attn = arch == SS_MIL_PAMIL ? 256 : arch == SS_MIL_ABMILX ? 0 : 128;
    c.heads = 8;
    c.protos = 10;
    c.groups = 4;
    c.seed = 1;
    return c;
}

int ss_mil_arch_parse(const char *name, ss_mil_arch_t *arch)
{
    for (int i = 0; i < SS_MIL_ARCH_COUNT; i++)
        if (name && !strcmp(name, arch_names[i])) {
            *arch = (ss_mil_arch_t)i;
            return 0;
        }
    return ss_error(DOM, "unknown architecture '%s' (want abmil, pamil, abmilx or dtfd)",
                    name ? name : "(none)");
}

const char *ss_mil_arch_name(ss_mil_arch_t arch)
{
    return (unsigned)arch < SS_MIL_ARCH_COUNT ? arch_names[arch] : "?";
}

ss_mil_t *ss_mil_new(const ss_mil_config_t *cfg)
{
    if ((unsigned)cfg->arch >= SS_MIL_ARCH_COUNT || !archs[cfg->arch]) {
        ss_error(DOM, "architecture %s is not built into this slidestream",
                 ss_mil_arch_name(cfg->arch));
        return NULL;
    }
    if (cfg->dim < 1 || cfg->hidden < 1 || cfg->attn < 0 || cfg->heads < 1 || cfg->protos < 1 ||
        cfg->groups < 1) {
        ss_error(DOM, "%s: dim %d, hidden %d, attn %d, heads %d, protos %d, groups %d: all must "
                      "be positive", ss_mil_arch_name(cfg->arch), cfg->dim, cfg->hidden, cfg->attn,
                 cfg->heads, cfg->protos, cfg->groups);
        return NULL;
    }
    const ss_mil_ops_t *ops = archs[cfg->arch];
    int n = ops->layout(cfg, NULL);
    if (n < 1) return NULL;
    ss_mil_t *m = calloc(1, sizeof *m);
    if (!m) goto oom;
    m->cfg = *cfg;
    m->ops = ops;
    m->specs = calloc((size_t)n, sizeof *m->specs);
    m->table = calloc((size_t)n, sizeof *m->table);
    if (!m->specs || !m->table) goto oom;
    if (ops->layout(cfg, m->specs) != n) {
        ss_mil_destroy(&m);
        return NULL;
    }
    m->table_len = n;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        size_t k = 1;
        for (int d = 0; d < m->specs[i].ndim; d++) k *= (size_t)m->specs[i].shape[d];
        total += k;
    }
    m->num_params = total;
    m->params = calloc(total, sizeof(float));
    m->grads = calloc(total, sizeof(float));
    if (!m->params || !m->grads) goto oom;
    for (int i = 0, off = 0; i < n; i++) {
        ss_ckpt_tensor_t *t = &m->table[i];
        t->name = m->specs[i].name;
        t->dtype = SS_DTYPE_F32;
        t->ndim = m->specs[i].ndim;
        memcpy(t->shape, m->specs[i].shape, sizeof t->shape);
        t->data = m->params + off;
        off += (int)ss_ckpt_numel(t);
    }
    ss_rng_t init;
    ss_rng_seed(&init, cfg->seed);
    ss_rng_seed(&m->rng, cfg->seed ^ 0x6d696c2d72756eull);
    ops->init(m, &init);
    return m;
oom:
    ss_mil_destroy(&m);
    ss_error(DOM, "out of memory");
    return NULL;
}

void ss_mil_destroy(ss_mil_t **pm)
{
    ss_mil_t *m = pm ? *pm : NULL;
    if (!m) return;
    if (m->ops && m->ops->release) m->ops->release(m);
    free(m->params), free(m->grads), free(m->table), free(m->specs);
    free(m);
    *pm = NULL;
}

int ss_mil_forward(ss_mil_t *m, const float *x, int n, int train, float *logits,
                   float *attention)
{
    if (n < 1) return ss_error(DOM, "an empty bag (no cells)");
    return m->ops->forward(m, x, n, train, logits, attention);
}

int ss_mil_backward(ss_mil_t *m, int y, double *loss)
{
    if (y != 0 && y != 1) return ss_error(DOM, "bag label %d: want 0 or 1", y);
    return m->ops->backward(m, y, loss);
}

void ss_mil_zero_grad(ss_mil_t *m)
{
    memset(m->grads, 0, m->num_params * sizeof(float));
}

int ss_mil_tensor(const ss_mil_t *m, const char *name)
{
    for (int i = 0; i < m->table_len; i++)
        if (!strcmp(m->table[i].name, name)) return i;
    return -1;
}

float *ss_mil_param(ss_mil_t *m, int index)
{
    return (float *)m->table[index].data;
}

float *ss_mil_grad(ss_mil_t *m, int index)
{
    return m->grads + ((float *)m->table[index].data - m->params);
}

/* ---- checkpoints ---------------------------------------------------------------------------- */

enum { A_FORMAT, A_ARCH, A_DIM, A_HIDDEN, A_ATTN, A_HEADS, A_PROTOS, A_GROUPS, A_PROTO_PRED,
       A_INST_PRED, A_COUNT };

static void attrs_of(const ss_mil_config_t *c, ss_ckpt_attr_t a[A_COUNT])
{
    a[A_FORMAT] = (ss_ckpt_attr_t){"format", "slidestream-mil", 0};
    a[A_ARCH] = (ss_ckpt_attr_t){"arch", ss_mil_arch_name(c->arch), 0};
    a[A_DIM] = (ss_ckpt_attr_t){"dim", NULL, c->dim};
    a[A_HIDDEN] = (ss_ckpt_attr_t){"hidden", NULL, c->hidden};
    a[A_ATTN] = (ss_ckpt_attr_t){"attn", NULL, c->attn};
    a[A_HEADS] = (ss_ckpt_attr_t){"heads", NULL, c->heads};
    a[A_PROTOS] = (ss_ckpt_attr_t){"protos", NULL, c->protos};
    a[A_GROUPS] = (ss_ckpt_attr_t){"groups", NULL, c->groups};
    a[A_PROTO_PRED] = (ss_ckpt_attr_t){"proto_pred", NULL, c->proto_pred};
    a[A_INST_PRED] = (ss_ckpt_attr_t){"inst_pred", NULL, c->inst_pred};
}

int ss_mil_save(const ss_mil_t *m, const char *path)
{
    ss_ckpt_attr_t a[A_COUNT];
    attrs_of(&m->cfg, a);
    return ss_ckpt_save_attrs(path, NULL, a, A_COUNT, m->table, m->table_len);
}

static int as_int(const char *path, const ss_ckpt_attr_t *a, int lo, int hi, int *out)
{
    if (!(a->value >= lo && a->value <= hi) || a->value != (double)(int)a->value)
        return ss_error(DOM, "%s: attribute %s = %g is out of range [%d, %d]", path, a->name,
                        a->value, lo, hi);
    *out = (int)a->value;
    return 0;
}

ss_mil_t *ss_mil_load(const char *path)
{
    ss_ckpt_attr_t a[A_COUNT];
    ss_mil_config_t c = {0};
    attrs_of(&c, a); /* names; the strings mark which attributes are text */
    char text[2048];
    if (ss_ckpt_read_attrs(path, a, A_COUNT, text, sizeof text)) {
        ss_error(DOM, "%s is not a MIL checkpoint (make one with `slidestream mil init`)", path);
        return NULL;
    }
    if (strcmp(a[A_FORMAT].text, "slidestream-mil")) {
        ss_error(DOM, "%s: format '%s', not a slidestream-mil checkpoint", path, a[A_FORMAT].text);
        return NULL;
    }
    if (ss_mil_arch_parse(a[A_ARCH].text, &c.arch) ||
        as_int(path, &a[A_DIM], 1, 1 << 20, &c.dim) ||
        as_int(path, &a[A_HIDDEN], 1, 1 << 20, &c.hidden) ||
        as_int(path, &a[A_ATTN], 0, 1 << 20, &c.attn) ||
        as_int(path, &a[A_HEADS], 1, 4096, &c.heads) ||
        as_int(path, &a[A_PROTOS], 1, 1 << 20, &c.protos) ||
        as_int(path, &a[A_GROUPS], 1, 1 << 20, &c.groups) ||
        as_int(path, &a[A_PROTO_PRED], 0, 1, &c.proto_pred) ||
        as_int(path, &a[A_INST_PRED], 0, 1, &c.inst_pred)) {
        ss_error(DOM, "%s: bad architecture attributes", path);
        return NULL;
    }
    ss_mil_t *m = ss_mil_new(&c);
    if (!m) return NULL;
    if (ss_ckpt_load(path, NULL, m->table, m->table_len, SS_CKPT_STRICT)) {
        ss_mil_destroy(&m);
        return NULL;
    }
    return m;
}
