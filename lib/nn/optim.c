/* slidestream — SGD/Adam/AdamW with PyTorch's update rules, lr schedules, grad-norm clipping.
 * The optimiser owns one state allocation (momentum buffer, or Adam's m and v back to back);
 * parameters and gradients stay the model's.
 */
#include "slidestream/nn_optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/error.h"

ss_optim_config_t ss_optim_config_default(ss_optim_kind_t kind, float lr)
{
    ss_optim_config_t c = {.kind = kind,
                           .lr = lr,
                           .momentum = 0.0f,
                           .weight_decay = 0.0f,
                           .beta1 = 0.9f,
                           .beta2 = 0.999f,
                           .eps = 1e-8f};
    if (kind == SS_OPTIM_ADAMW) c.weight_decay = 1e-2f;
    return c;
}

ss_optim_t *ss_optim_new(const ss_optim_config_t *cfg, size_t n)
{
    ss_optim_t *o = calloc(1, sizeof(*o));
    if (!o) {
        ss_error("nn.optim", "out of memory");
        return NULL;
    }
    o->cfg = *cfg;
    o->n = n;
    size_t copies = cfg->kind == SS_OPTIM_SGD ? (cfg->momentum != 0.0f) : 2;
    if (copies && n) {
        o->state = calloc(copies * n, sizeof(float));
        if (!o->state) {
            free(o);
            ss_error("nn.optim", "out of memory for %zu optimiser state floats", copies * n);
            return NULL;
        }
    }
    return o;
}

void ss_optim_destroy(ss_optim_t **po)
{
    if (!po || !*po) return;
    free((*po)->state);
    free(*po);
    *po = NULL;
}

void ss_optim_reset(ss_optim_t *o)
{
    size_t copies = o->cfg.kind == SS_OPTIM_SGD ? (o->cfg.momentum != 0.0f) : 2;
    if (o->state) memset(o->state, 0, copies * o->n * sizeof(float));
    o->step = 0;
}

void ss_sgd_update(float *params, float *buf, const float *grads, size_t n, float lr,
                   float momentum, float weight_decay, long step)
{
    /* element-wise: threading cannot change the result */
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float d = grads[i];
        if (weight_decay != 0.0f) d += weight_decay * params[i];
        if (momentum != 0.0f) {
            d = step == 0 ? d : momentum * buf[i] + d; /* PyTorch: first buffer = clone(d) */
            buf[i] = d;
        }
        params[i] -= lr * d;
    }
}

void ss_adam_update(float *params, float *m, float *v, const float *grads, size_t n, float lr,
                    float beta1, float beta2, float eps, float weight_decay, int decoupled, long t)
{
    /* Bias corrections in double, as PyTorch computes them on Python floats. */
    double bc1 = 1.0 - pow(beta1, (double)t);
    double bc2_sqrt = sqrt(1.0 - pow(beta2, (double)t));
    float step_size = (float)(lr / bc1);
    float inv_bc2 = (float)(1.0 / bc2_sqrt);
    float decay = decoupled ? 1.0f - lr * weight_decay : 1.0f;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float g = grads[i];
        if (decoupled)
            params[i] *= decay;
        else if (weight_decay != 0.0f)
            g += weight_decay * params[i];
        m[i] = beta1 * m[i] + (1.0f - beta1) * g;
        v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
        float denom = sqrtf(v[i]) * inv_bc2 + eps;
        params[i] -= step_size * m[i] / denom;
    }
}

void ss_optim_step(ss_optim_t *o, float *params, const float *grads, float lr)
{
    const ss_optim_config_t *c = &o->cfg;
    if (c->kind == SS_OPTIM_SGD) {
        ss_sgd_update(params, o->state, grads, o->n, lr, c->momentum, c->weight_decay, o->step);
    } else {
        ss_adam_update(params, o->state, o->state + o->n, grads, o->n, lr, c->beta1, c->beta2,
                       c->eps, c->weight_decay, c->kind == SS_OPTIM_ADAMW, o->step + 1);
    }
    o->step++;
}

double ss_lr_warmup_cosine(long step, long warmup, long total, double base_lr,
                           double warmup_start_lr, double min_lr)
{
    if (step < 0) step = 0;
    if (step < warmup)
        return warmup_start_lr + (base_lr - warmup_start_lr) * (double)step / (double)warmup;
    if (total <= warmup) return base_lr;
    double p = (double)(step - warmup) / (double)(total - warmup);
    if (p > 1.0) p = 1.0;
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + cos(M_PI * p));
}

double ss_lr_slam_ags_factor(long epoch, long warmup_epochs, long num_epochs)
{
    if (epoch < warmup_epochs) return (double)(epoch + 1) / (double)warmup_epochs;
    return 0.5 * (1.0 + cos(M_PI * (double)(epoch - warmup_epochs) /
                            (double)(num_epochs - warmup_epochs)));
}

double ss_clip_grad_norm(float *grads, size_t n, double max_norm)
{
    double ss = 0.0;
    for (size_t i = 0; i < n; i++)
        ss += (double)grads[i] * grads[i];
    double total = sqrt(ss);
    double coef = max_norm / (total + 1e-6);
    if (coef < 1.0) {
        float f = (float)coef;
        for (size_t i = 0; i < n; i++)
            grads[i] *= f;
    }
    return total;
}
