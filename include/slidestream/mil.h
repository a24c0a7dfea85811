/* slidestream — attention MIL aggregators: ABMIL (gated), PAMIL (as SLAM-AGS uses it), ABMILX
 * and DTFD-MIL (specs/methods.md §1-§5). A bag is X (n, dim): one embedding per cell. A model
 * gives the bag's logits (2 classes) and every cell's attention toward class 1; in training it
 * also gives the architecture's whole loss and accumulates every parameter's gradient.
 *
 * Memory, llm.c style: parameters, gradients and (in ss_mil_train) optimiser state each live in
 * ONE allocation; `table` views the parameters as the reference module's state_dict (same names
 * and shapes), which is what checkpoints use. An architecture keeps its activations in one
 * buffer of its own, grown to the largest bag it has seen (bags differ in size).
 *
 * Attention toward class 1, as `mil predict` reports it (a contract):
 *   abmil   softmax over cells of the attention scores
 *   pamil   softmax over cells of the class-1 row of the per-class attention
 *   abmilx  the mean over heads of each head's softmax over cells
 *   dtfd    softmax over all cells of the tier-1 attention scores
 * Every attention vector sums to 1 over the bag.
 */
#ifndef SLIDESTREAM_MIL_H
#define SLIDESTREAM_MIL_H

#include <stddef.h>
#include <stdint.h>

#include "slidestream/nn_checkpoint.h"
#include "slidestream/nn_layers.h"

typedef enum { SS_MIL_ABMIL, SS_MIL_PAMIL, SS_MIL_ABMILX, SS_MIL_DTFD, SS_MIL_ARCH_COUNT } ss_mil_arch_t;

#define SS_MIL_CLASSES 2 /* bag labels 0 (negative) and 1 (positive) */

typedef struct {
    ss_mil_arch_t arch;
    int dim;        /* D: embedding width of the cache */
    int hidden;     /* the first Linear's width: 512 (PAMIL size small [D, 512, 256]) */
    int attn;       /* attention width: ABMIL 128, PAMIL 256, DTFD 128; ABMILX: 0 = d */
    int heads;      /* ABMILX heads (8) */
    int protos;     /* PAMIL prototypes K (10) */
    int groups;     /* DTFD pseudo-bags (4) */
    int proto_pred; /* PAMIL prototype branch (off) */
    int inst_pred;  /* PAMIL instance loss (off) */
    uint64_t seed;  /* initialisation and the model's own randomness (DTFD's pseudo-bags) */
} ss_mil_config_t;

/* The defaults above for arch on embeddings of width dim. */
ss_mil_config_t ss_mil_config_default(ss_mil_arch_t arch, int dim);
/* "abmil" | "pamil" | "abmilx" | "dtfd" */
int ss_mil_arch_parse(const char *name, ss_mil_arch_t *arch);
const char *ss_mil_arch_name(ss_mil_arch_t arch);

/* One tensor of the state_dict, as an architecture lays it out. */
typedef struct {
    char name[64];
    int ndim;
    int64_t shape[SS_CKPT_MAX_DIM];
} ss_mil_tensor_spec_t;

typedef struct ss_mil ss_mil_t;

/* What an architecture implements (lib/mil/<arch>.c). Parameters are m->params in layout
 * order; an architecture finds its tensors by their index in that order (m->table[i].data). */
typedef struct {
    const char *name;
    /* The state_dict: fills specs[0..count) when specs is not NULL; returns count, or -1
     * (ss_error) on a configuration the architecture refuses. */
    int (*layout)(const ss_mil_config_t *cfg, ss_mil_tensor_spec_t *specs);
    /* Initialise every parameter as the reference module does, from rng. */
    void (*init)(ss_mil_t *m, ss_rng_t *rng);
    /* Forward on bag x (n, dim), n >= 1. logits (2) and attention (n) are written (attention
     * may be NULL). train = 1 keeps what backward needs (and draws the model's randomness). */
    int (*forward)(ss_mil_t *m, const float *x, int n, int train, float *logits,
                   float *attention);
    /* After a train forward: the architecture's whole training loss for bag label y (0/1)
     * into *loss, and its gradient ACCUMULATED into m->grads. */
    int (*backward)(ss_mil_t *m, int y, double *loss);
    /* Free m->impl. */
    void (*release)(ss_mil_t *m);
} ss_mil_ops_t;

struct ss_mil {
    ss_mil_config_t cfg;
    const ss_mil_ops_t *ops;
    float *params; /* (num_params) every learnable tensor, state_dict order */
    float *grads;  /* (num_params) same layout */
    size_t num_params;
    ss_ckpt_tensor_t *table; /* (table_len) the state_dict, pointing into params */
    ss_mil_tensor_spec_t *specs;
    int table_len;
    ss_rng_t rng; /* the model's own randomness (DTFD pseudo-bags), seeded from cfg.seed */
    void *impl;   /* the architecture's activations and scratch */
};

ss_mil_t *ss_mil_new(const ss_mil_config_t *cfg);
void ss_mil_destroy(ss_mil_t **pm);

int ss_mil_forward(ss_mil_t *m, const float *x, int n, int train, float *logits,
                   float *attention);
int ss_mil_backward(ss_mil_t *m, int y, double *loss);
void ss_mil_zero_grad(ss_mil_t *m);
/* Index of the tensor `name` in the table, -1 if absent. */
int ss_mil_tensor(const ss_mil_t *m, const char *name);
/* Pointers to a tensor's parameters and gradients by table index. */
float *ss_mil_param(ss_mil_t *m, int index);
float *ss_mil_grad(ss_mil_t *m, int index);

/* Checkpoints (nn_checkpoint.h format): one dataset per tensor named as the reference's
 * state_dict, root attributes format = "slidestream-mil", arch, dim, hidden, attn, heads,
 * protos, groups, proto_pred, inst_pred. */
int ss_mil_save(const ss_mil_t *m, const char *path);
/* Build a model from a checkpoint (architecture from its attributes; every tensor checked). */
ss_mil_t *ss_mil_load(const char *path);

#endif
