/* Encoder identity for cache files (see include/slidestream/encoder_id.h). */
#include "slidestream/encoder_id.h"

#include <stdio.h>
#include <string.h>

#include "slidestream/cache.h"
#include "slidestream/error.h"
#include "slidestream/nn_checkpoint.h"

int ss_encoder_id(const char *checkpoint, const char *feature, ss_encoder_id_t *id)
{
    memset(id, 0, sizeof *id);
    if (strcmp(feature, "pooled") && strcmp(feature, "projection"))
        return ss_error("encoder", "feature '%s': want pooled or projection", feature);
    ss_ckpt_meta_t m;
    if (ss_ckpt_read_meta(checkpoint, &m) || ss_file_digest(checkpoint, id->hash)) return -1;
    int n = snprintf(id->encoder, sizeof id->encoder, "%s", m.arch);
    if (m.width_multiplier != 1.0 && n > 0 && (size_t)n < sizeof id->encoder)
        n += snprintf(id->encoder + n, sizeof id->encoder - (size_t)n, "-w%g", m.width_multiplier);
    if (m.truncate_after[0] && n > 0 && (size_t)n < sizeof id->encoder)
        snprintf(id->encoder + n, sizeof id->encoder - (size_t)n, "-%s", m.truncate_after);
    snprintf(id->feature, sizeof id->feature, "%s", feature);
    snprintf(id->preprocessing, sizeof id->preprocessing,
             "input=%d;mean=%.6g,%.6g,%.6g;std=%.6g,%.6g,%.6g", m.input_size, m.mean[0],
             m.mean[1], m.mean[2], m.std[0], m.std[1], m.std[2]);
    id->input_size = m.input_size;
    /* The embedding width, from the tensor that produces it. */
    const char *src = !strcmp(feature, "projection") ? "projector.2.weight"
                      : m.truncate_after[0]          ? "layer3.0.bn1.weight"
                                                     : "layer4.0.bn1.weight";
    int nd = 0;
    int64_t shape[SS_CKPT_MAX_DIM];
    if (ss_ckpt_dataset_shape(checkpoint, src, &nd, shape) || nd < 1)
        return ss_error("encoder", "%s: no '%s' tensor, so it has no %s embedding", checkpoint,
                        src, feature);
    id->dim = (int)shape[0];
    return 0;
}
