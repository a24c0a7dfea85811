/* slidestream — torchvision-exact ResNet-18/34 encoders with optional classifier and projection
 * head, for training and inference on the CPU (NN core).
 *
 * Memory, llm.c style: parameters, their gradients, the BN running statistics (buffers) and the
 * activations each live in ONE allocation. `table` views them as the PyTorch state_dict (same
 * names, shapes and order), which is what checkpoint I/O uses; optimisers and gradient surgery
 * treat `params`/`grads` as flat arrays of `num_params` floats (the table's float parameters
 * are contiguous in state_dict order inside them).
 *
 * Use: m = ss_resnet_new(&cfg, max_batch, train); ss_resnet_forward(m, x, n, 1);
 * ss_resnet_backward(m, ...); optimiser step on m->params / m->grads; ss_resnet_zero_grad(m).
 * Input x is (n, 3, S, S) float, already normalised ((rgb - mean)/std), S = cfg.input_size.
 * A model built with train = 0 holds no gradients or training activations.
 */
#ifndef SLIDESTREAM_NN_RESNET_H
#define SLIDESTREAM_NN_RESNET_H

#include <stddef.h>
#include <stdint.h>

#include "slidestream/nn_checkpoint.h"

typedef struct {
    int depth;               /* 18 or 34 */
    double width_multiplier; /* channels round(64*m*2^i), at least 1; 1.0 = torchvision */
    int truncate_layer3;     /* 1: no layer4; the feature is layer3's pooled output */
    int input_size;          /* S >= 32 */
    int num_classes;         /* fc: Linear(feature, num_classes); 0 = none */
    int proj_hidden;         /* projector: Linear(feature, hidden) - ReLU - Linear(hidden, out) */
    int proj_out;            /* both 0 = none */
    double mean[3], std[3];  /* preprocessing, stored in checkpoints */
    uint64_t seed;           /* weight initialisation */
} ss_resnet_config_t;

/* depth 18, width 1, no truncation, 224 px, no heads, ImageNet mean/std, seed 0. */
ss_resnet_config_t ss_resnet_config_default(int depth);

typedef enum {
    SS_RESNET_FEATURE,    /* pooled encoder output (n, feature_dim) */
    SS_RESNET_LOGITS,     /* fc output (n, num_classes) */
    SS_RESNET_PROJECTION, /* projector output (n, proj_out) */
} ss_resnet_output_t;

typedef struct ss_resnet_impl ss_resnet_impl_t;

typedef struct ss_resnet {
    ss_resnet_config_t cfg;
    int max_batch;
    int feature_dim;
    float *params; /* (num_params) every learnable tensor, state_dict order */
    float *grads;  /* (num_params) same layout; NULL for an inference-only model */
    size_t num_params;
    float *buffers; /* (num_buffers) BN running_mean / running_var */
    size_t num_buffers;
    int64_t *counters; /* (num_counters) BN num_batches_tracked */
    int num_counters;
    ss_ckpt_tensor_t *table; /* (table_len) the state_dict, pointing into the above */
    int table_len;
    ss_resnet_impl_t *impl;
} ss_resnet_t;

/* Validates cfg, allocates, and initialises the weights like torchvision (kaiming_normal
 * fan_out for convs, BN 1/0, Linear's default uniform) from cfg->seed. train = 0 builds an
 * inference-only model. NULL on error (ss_error). */
ss_resnet_t *ss_resnet_new(const ss_resnet_config_t *cfg, int max_batch, int train);
void ss_resnet_destroy(ss_resnet_t **pm);

/* Re-initialise all weights and buffers from seed. */
void ss_resnet_init_weights(ss_resnet_t *m, uint64_t seed);

/* x (n, 3, S, S) -> outputs (see ss_resnet_output). train = 1: BN on batch statistics (running
 * stats updated), activations kept for backward; train = 0: BN on running statistics, folded
 * into the convolutions. n in [1, max_batch] (n >= 2 for training BN). After a training
 * forward, x must stay valid until the backward (the stem's weight gradient reads it). An eval
 * forward may reuse the training activations: run a training forward before the next backward. */
int ss_resnet_forward(ss_resnet_t *m, const float *x, int n, int train);

/* Pointer to an output of the last forward (n rows); *dim gets its width. NULL if the model
 * has no such head. */
const float *ss_resnet_output(const ss_resnet_t *m, ss_resnet_output_t which, int *dim);

/* Backward of the last TRAINING forward. Gradients w.r.t. the outputs, each nullable: dfeature
 * (n, feature_dim), dlogits (n, num_classes), dproj (n, proj_out); they are summed at the
 * feature. Parameter gradients are ACCUMULATED into m->grads (PyTorch semantics). */
int ss_resnet_backward(ss_resnet_t *m, const float *dfeature, const float *dlogits,
                       const float *dproj);

void ss_resnet_zero_grad(ss_resnet_t *m);

/* Call after changing m->params or m->buffers directly (optimiser step, copying weights) so
 * that the next eval forward re-folds BN into the convolutions. Train forwards, zero_grad and
 * loads do it for you. */
void ss_resnet_params_changed(ss_resnet_t *m);

/* Checkpoint I/O (nn_checkpoint.h format). Save writes cfg's attributes. */
int ss_resnet_save(const ss_resnet_t *m, const char *path);
/* Load into an existing model; its architecture must match the file's (every name and shape
 * is checked; flags as ss_ckpt_load). */
int ss_resnet_load(ss_resnet_t *m, const char *path, int flags);
/* Build a model from a checkpoint: arch, width, truncation, input size and mean/std from the
 * attributes; the heads from the presence and shapes of fc.* and projector.*. */
ss_resnet_t *ss_resnet_new_from_checkpoint(const char *path, int max_batch, int train);

/* The configuration a checkpoint describes (as ss_resnet_new_from_checkpoint uses it), so a
 * caller can change what does not affect the weights (input_size, seed) before ss_resnet_new
 * and ss_resnet_load. */
int ss_resnet_config_from_checkpoint(const char *path, ss_resnet_config_t *cfg);

/* Preprocessing: rgb (n, S, S, 3) interleaved 8-bit pixels -> x (n, 3, S, S) float,
 * x = (rgb/255 - mean) / std with the model's mean/std, S = cfg.input_size (ss_nn_normalise_u8
 * per crop, nn_preprocess.h). */
void ss_resnet_preprocess_u8(const ss_resnet_t *m, float *x, const uint8_t *rgb, int n);

/* Bytes held by the model's allocations (parameters, gradients, buffers, activations). */
size_t ss_resnet_memory_bytes(const ss_resnet_t *m);

#endif
