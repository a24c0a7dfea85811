/* Internal to lib/mil: the architectures' operation tables (an architecture's file defines its
 * table; mil.c lists it in `archs`) and the small helpers they share (mil_util.c). */
#ifndef SS_MIL_INTERNAL_H
#define SS_MIL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "slidestream/mil.h"

extern const ss_mil_ops_t ss_mil_abmil_ops;
extern const ss_mil_ops_t ss_mil_pamil_ops;
extern const ss_mil_ops_t ss_mil_abmilx_ops;
extern const ss_mil_ops_t ss_mil_dtfd_ops;

/* Fills one state_dict entry (d1 unused when ndim is 1). */
void ss_mil_spec(ss_mil_tensor_spec_t *s, const char *name, int ndim, int64_t d0, int64_t d1);

/* Grows *buf (64-byte aligned, *cap floats) to NEED floats, dropping its contents; -1 with an
 * error naming ARCH and the bag's N cells when memory runs out. */
int ss_mil_buffer_grow(float **buf, size_t *cap, size_t need, const char *arch, int n);

/* Cross-entropy of 2 logits for label y: returns the loss and writes (p - onehot) * scale into
 * dlogit. */
double ss_mil_cross_entropy(float dlogit[SS_MIL_CLASSES], const float logit[SS_MIL_CLASSES], int y,
                            float scale);

#endif
