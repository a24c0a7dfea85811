/* slidestream — optimisers, learning-rate schedules and gradient clipping (NN core).
 *
 * Optimisers work on flat float arrays: the model's one parameter allocation, its one gradient
 * allocation, and the optimiser's state, itself one allocation (ss_optim_t owns it). The update
 * rules follow PyTorch's (torch.optim.SGD / Adam / AdamW, single-tensor path, no amsgrad, no
 * nesterov, dampening 0), so a step matches PyTorch to float rounding.
 */
#ifndef SLIDESTREAM_NN_OPTIM_H
#define SLIDESTREAM_NN_OPTIM_H

#include <stddef.h>

typedef enum { SS_OPTIM_SGD, SS_OPTIM_ADAM, SS_OPTIM_ADAMW } ss_optim_kind_t;

typedef struct {
    ss_optim_kind_t kind;
    float lr;                /* base learning rate (a step may override it, see ss_optim_step) */
    float momentum;          /* SGD only; 0 = plain SGD */
    float weight_decay;      /* SGD/Adam: L2 added to the gradient; AdamW: decoupled decay */
    float beta1, beta2, eps; /* Adam/AdamW; ss_optim_config_default fills 0.9, 0.999, 1e-8 */
} ss_optim_config_t;

/* Defaults as PyTorch's constructors: momentum 0, wd 0 (AdamW: 1e-2), betas, eps 1e-8. */
ss_optim_config_t ss_optim_config_default(ss_optim_kind_t kind, float lr);

typedef struct ss_optim {
    ss_optim_config_t cfg;
    size_t n;     /* number of parameters */
    long step;    /* steps taken so far */
    float *state; /* one allocation: SGD momentum buffer (n), or Adam m (n) then v (n) */
} ss_optim_t;

ss_optim_t *ss_optim_new(const ss_optim_config_t *cfg, size_t n);
void ss_optim_destroy(ss_optim_t **po);
/* Forget the moments and the step count. */
void ss_optim_reset(ss_optim_t *o);
/* One update of params (n) from grads (n) with learning rate lr (pass o->cfg.lr for the base). */
void ss_optim_step(ss_optim_t *o, float *params, const float *grads, float lr);

/* The raw update rules, for callers that keep their own state.
 * SGD: d = g + wd*p; buf = step==0 ? d : momentum*buf + d; p -= lr*buf (buf unused if momentum
 * is 0). `step` = number of earlier steps. */
void ss_sgd_update(float *params, float *buf, const float *grads, size_t n, float lr,
                   float momentum, float weight_decay, long step);
/* Adam (decoupled = 0: g += wd*p) / AdamW (decoupled = 1: p *= 1 - lr*wd). t = 1-based step.
 * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= (lr / (1-b1^t)) * m / (sqrt(v)/sqrt(1-b2^t) + eps). */
void ss_adam_update(float *params, float *m, float *v, const float *grads, size_t n, float lr,
                    float beta1, float beta2, float eps, float weight_decay, int decoupled, long t);

/* Linear warm-up from warmup_start_lr to base_lr over `warmup` steps (step 0 gives
 * warmup_start_lr), then cosine decay from base_lr to min_lr, reached at step `total`
 * (and held after). */
double ss_lr_warmup_cosine(long step, long warmup, long total, double base_lr,
                           double warmup_start_lr, double min_lr);

/* SLAM-AGS LambdaLR factor (specs/methods.md §6.3) for 0-based `epoch`:
 * (e+1)/W for e < W, else 0.5 (1 + cos(pi (e-W) / (E-W))). The lr is base_lr times this. */
double ss_lr_slam_ags_factor(long epoch, long warmup_epochs, long num_epochs);

/* torch.nn.utils.clip_grad_norm_ (L2): total = |grads|; if max_norm/(total+1e-6) < 1 the
 * gradients are scaled by it. Returns the total norm before clipping. */
double ss_clip_grad_norm(float *grads, size_t n, double max_norm);

#endif
