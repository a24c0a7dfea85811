/* slidestream — training losses with their gradients (NN core).
 *
 * Every loss writes its scalar value to *loss and, when the gradient pointer is non-NULL,
 * OVERWRITES it with d(loss)/d(input) (the loss starts a backward pass, so nothing is
 * accumulated). Embedding losses take un-normalised vectors and L2-normalise inside, like
 * torch.nn.functional.normalize (eps 1e-12); their gradients are w.r.t. the un-normalised
 * inputs. Scratch memory is caller-provided: ask the *_workspace() function for its size in
 * floats. Reductions run in double.
 */
#ifndef SLIDESTREAM_NN_LOSS_H
#define SLIDESTREAM_NN_LOSS_H

#include <stddef.h>

/* Softmax cross-entropy, mean over the batch (torch.nn.functional.cross_entropy).
 * logits (B, C), labels (B) in [0, C); dlogits (B, C) or NULL. No workspace. */
int ss_loss_cross_entropy(float *loss, float *dlogits, const float *logits, const int *labels,
                          int B, int C);

/* NT-Xent (SimCLR) as SLAM-AGS `nt_xent_loss` (specs/methods.md §6.2).
 * z (N, d), N = 2n rows INTERLEAVED: rows 2i and 2i+1 are the two views of image i.
 * With u = z/|z| and s_kl = u_k.u_l / tau:
 *   L = -(1/N) sum_k [ s_{k,k^1} - log sum_{l != k} exp(s_kl) ].
 * dz (N, d) or NULL. workspace: ss_loss_ntxent_workspace(N, d) floats. */
size_t ss_loss_ntxent_workspace(int N, int d);
int ss_loss_ntxent(float *loss, float *dz, const float *z, int N, int d, float tau,
                   float *workspace);

/* SLAM-AGS / WeakSupCon similarity loss on negative-bag embeddings (§6.2).
 * z (N, d), N = 2m rows in VIEW-MAJOR order (rows 0..m-1 view 1, m..2m-1 view 2; the loss
 * is symmetric in the rows, so the order only matters for documentation).
 * Computes the code's formula -(tau/tau_b) mean_k mean_{l!=k} (s_kl - max_j s_kj) with the
 * row max treated as a constant; this equals (1/tau_b) mean_{k!=l} (1 - u_k.u_l).
 * The reference uses tau = tau_b = 0.07. dz (N, d) or NULL.
 * workspace: ss_loss_similarity_workspace(N, d) floats. */
size_t ss_loss_similarity_workspace(int N, int d);
int ss_loss_similarity(float *loss, float *dz, const float *z, int N, int d, float tau,
                       float tau_base, float *workspace);

#endif
