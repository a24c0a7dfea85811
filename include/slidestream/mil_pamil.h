/* slidestream — PAMIL specifics (the architecture itself is `ss_mil_new` with arch
 * SS_MIL_PAMIL; specs/methods.md §3.1 and §3.3).
 *
 * The model is SLAM-AGS's PAMIL.py module, binary bags: size small [dim, hidden, attn],
 * K = cfg.protos trainable prototypes P (K, dim) initialised N(0, 1), fc = Linear + ReLU,
 * L2-normalised p̃ = fc(P) and h̃ = fc(X), gated prototype attention S = (tanh(W_a p̃) ·
 * sigmoid(W_b h̃)^T)^T (n, K), per-class attention A_raw = (S W_c^T + b_c)^T (2, n),
 * α_c = softmax over cells, M_c = normalise(Σ α_c h̃), weight-normed heads Linear(hidden, 1).
 * Training loss, for bag label y:
 *   CE(logits, y) + 0.005 (1 - c_inst) + 0.005 (1 - c_proto)
 *   [+ 0.1 ER      with proto_pred: logits = 0.5 bag + 0.5 prototype-branch logits]
 *   [+ 0.5 L_inst  with inst_pred:  CLAM-style, k = min(8, n)]
 * Two bugs of the reference are fixed here:
 *  (a) the instance loss ranks the cells of class c by class c's own attention row (the
 *      reference uses the last class's row for every class);
 *  (b) the prototype scores s_k = max_n S[n, k] are scaled by max_k |s_k| (not max_k s_k),
 *      so a bag whose scores are all negative keeps their ranking (the reference's division
 *      by a negative maximum reverses it). All scores zero: no scaling.
 */
#ifndef SLIDESTREAM_MIL_PAMIL_H
#define SLIDESTREAM_MIL_PAMIL_H

#include <stdint.h>

#include "slidestream/mil.h"

/* Loss weights and constants of SLAM-AGS's PAMIL.py defaults. */
#define SS_PAMIL_LAMBDA_CLST 0.005 /* (1 - c_inst) */
#define SS_PAMIL_LAMBDA_PC 0.005   /* (1 - c_proto) */
#define SS_PAMIL_LAMBDA_ER 0.1     /* ER, with proto_pred */
#define SS_PAMIL_LAMBDA_INST 0.5   /* instance loss, with inst_pred */
#define SS_PAMIL_PROTO_WEIGHT 0.5  /* fused logits = (1 - w) bag + w prototype branch */
#define SS_PAMIL_K_SAMPLE 8        /* instance loss: top/bottom k = min(8, n) cells */

/* Prototype initialisation as the original PAMIL (Jiashuai-Liu/PAMIL): k-means per bag with
 * k = min(n, 8) on the raw embeddings, the centres of all bags pooled, then k-means on the
 * pool with k = cfg.protos; the result replaces the prototypes (proto, (K, dim)).
 * bags[b] is (sizes[b], dim) floats; empty bags are skipped. Each k-means starts from
 * k-means++ seeding and runs Lloyd iterations until the assignment stops changing (at most
 * 100); an emptied cluster takes the point farthest from its centre. Deterministic for a
 * seed (and independent of the thread count). -1 (ss_error) when m is not PAMIL, or the pool
 * holds fewer than K centres. */
int ss_mil_pamil_kmeans_init(ss_mil_t *m, const float *const *bags, const int *sizes, int nbags,
                             uint64_t seed);

#endif
