/* slidestream — what DTFD-MIL (lib/mil/dtfd.c, specs/methods.md §5) adds to the MIL contract of
 * mil.h: the tier and module of each state_dict tensor (the reference trains tier 1 and tier 2
 * with two Adam optimisers and clips the gradient norm to 5 per module), the two losses of the
 * last backward, and a test hook that fixes the next pseudo-bag partition.
 *
 * State_dict names: the reference saves {'classifier', 'dim_reduction', 'attention',
 * 'att_classifier'} as four module state_dicts; a slidestream checkpoint flattens that dict
 * with "." into root datasets, in that order:
 *   classifier.fc.{weight,bias}                               tier 1, module 0  (2, L), (2)
 *   dim_reduction.fc1.weight                                  tier 1, module 1  (L, dim)
 *   attention.attention_{V,U}.0.{weight,bias}                 tier 1, module 2  (A, L), (A)
 *   attention.attention_weights.{weight,bias}                 tier 1, module 2  (1, A), (1)
 *   att_classifier.attention.<as attention>                   tier 2, module 3
 *   att_classifier.classifier.fc.{weight,bias}                tier 2, module 3  (2, L), (2)
 * with L = cfg.hidden (512) and A = cfg.attn (128).
 */
#ifndef SLIDESTREAM_MIL_DTFD_H
#define SLIDESTREAM_MIL_DTFD_H

#include "slidestream/mil.h"

enum {
    SS_DTFD_CLASSIFIER,     /* tier-1 pseudo-bag classifier */
    SS_DTFD_DIM_REDUCTION,  /* tier-1 Linear(dim -> L, no bias) + ReLU */
    SS_DTFD_ATTENTION,      /* tier-1 gated attention */
    SS_DTFD_ATT_CLASSIFIER, /* tier 2: gated attention + classifier over the distilled features */
    SS_DTFD_MODULES
};

/* The module (SS_DTFD_*) of table tensor `index` of a DTFD model; -1 for a bad index or a
 * model of another architecture. */
int ss_mil_dtfd_module(const ss_mil_t *m, int index);
/* The tier (1 or 2) of table tensor `index`: its optimiser in the reference. -1 as above. */
int ss_mil_dtfd_tier(const ss_mil_t *m, int index);

/* The two losses of the last backward (backward returns their sum): loss0 = the tier-1 mean
 * cross-entropy over pseudo-bags, loss1 = the tier-2 cross-entropy. -1 before any backward. */
int ss_mil_dtfd_losses(const ss_mil_t *m, double *loss0, double *loss1);

/* Test hook: the next train forward on a bag of n cells uses `order` (a permutation of
 * 0..n-1) instead of shuffling with m->rng, and draws nothing from m->rng. The pseudo-bags are
 * then np.array_split(order, min(groups, n)). -1 (ss_error) when order is not a permutation. */
int ss_mil_dtfd_set_next_order(ss_mil_t *m, const int *order, int n);
/* The order of the last train forward (n cells), NULL before any. Valid until the next
 * forward. */
const int *ss_mil_dtfd_last_order(const ss_mil_t *m, int *n);

#endif
