/* Small pieces the architectures share (mil_internal.h): a state_dict entry, the one growing
 * activation buffer, and the 2-class cross-entropy. No state of its own. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mil_internal.h"
#include "slidestream/error.h"

#define DOM "mil"

void ss_mil_spec(ss_mil_tensor_spec_t *s, const char *name, int ndim, int64_t d0, int64_t d1)
{
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->ndim = ndim;
    s->shape[0] = d0;
    s->shape[1] = d1;
}

int ss_mil_buffer_grow(float **buf, size_t *cap, size_t need, const char *arch, int n)
{
    if (need <= *cap) return 0;
    free(*buf);
    *cap = 0;
    *buf = aligned_alloc(64, need * sizeof(float));
    if (!*buf)
        return ss_error(DOM, "%s: out of memory for a bag of %d cells (%.1f MiB)", arch, n,
                        need * 4.0 / 1048576.0);
    *cap = need;
    return 0;
}

double ss_mil_cross_entropy(float dlogit[SS_MIL_CLASSES], const float logit[SS_MIL_CLASSES], int y,
                            float scale)
{
    double mx = fmax(logit[0], logit[1]);
    double e0 = exp(logit[0] - mx), e1 = exp(logit[1] - mx), s = e0 + e1;
    dlogit[0] = (float)((e0 / s - (y == 0)) * scale);
    dlogit[1] = (float)((e1 / s - (y == 1)) * scale);
    return mx + log(s) - logit[y];
}
