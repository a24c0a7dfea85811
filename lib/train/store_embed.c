/* Embedding a crop store into embedding caches: every bag of the store becomes one cache file
 * (cache.h), its cells centre-cut to the encoder's input size and normalised exactly as the
 * encoder stage does (nn_preprocess.h), so a trained encoder's view of the store matches what
 * the live pipeline would have written. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/cache.h"
#include "slidestream/encoder_id.h"
#include "slidestream/error.h"
#include "slidestream/log.h"
#include "slidestream/nn_preprocess.h"
#include "slidestream/nn_resnet.h"
#include "slidestream/train_store.h"

#define EMBED_BATCH 64

int ss_crop_store_embed(const char *store_path, const char *ckpt, const char *feature,
                        const char *cache_dir, int quiet)
{
    ss_encoder_id_t id;
    if (ss_encoder_id(ckpt, feature, &id)) return -1;
    const ss_resnet_output_t which = strcmp(feature, "projection") ? SS_RESNET_FEATURE : SS_RESNET_PROJECTION;
    ss_crop_store_t *s = ss_crop_store_open(store_path, 0);
    if (!s) return -1;
    ss_resnet_t *m = ss_resnet_new_from_checkpoint(ckpt, EMBED_BATCH, 0);
    const int C = ss_crop_store_crop_size(s), S = m ? m->cfg.input_size : 0;
    const size_t per = (size_t)3 * S * S;
    uint8_t *crops = malloc((size_t)EMBED_BATCH * C * C * 3);
    float *x = malloc((size_t)EMBED_BATCH * per * sizeof *x);
    int64_t *coords = malloc((size_t)EMBED_BATCH * 4 * sizeof *coords), *centres = coords + 2 * EMBED_BATCH;
    uint64_t *cids = malloc((size_t)EMBED_BATCH * sizeof *cids);
    int rc = 0, kept = 0, made = 0;
    int64_t cells = 0;
    if (!m) rc = -1;
    else if (!crops || !x || !coords || !cids) rc = ss_error("cropstore", "out of memory");
    else if (C < S)
        rc = ss_error("cropstore", "%s holds %d px crops, smaller than the encoder's input %d px",
                      store_path, C, S);
    for (int b = 0; !rc && b < ss_crop_store_nbags(s); b++) {
        const char *name = ss_crop_store_bag_name(s, b);
        char why[256];
        if (ss_cache_check(cache_dir, name, id.hash, id.feature, id.preprocessing, why, sizeof why) == 1) {
            kept++;
            continue;
        }
        ss_cache_meta_t meta = {.slide_id = name,
                                .label = ss_crop_store_bag_label(s, b),
                                .split = ss_crop_store_bag_split(s, b),
                                .patch_size = S,
                                .patch_size_level0 = S,
                                .encoder = id.encoder,
                                .encoder_hash = id.hash,
                                .feature = id.feature,
                                .preprocessing = id.preprocessing,
                                .dim = id.dim};
        ss_cache_writer_t *w = ss_cache_writer_new(cache_dir, &meta);
        if (!w) {
            rc = -1;
            break;
        }
        int64_t n = 0;
        const int64_t *idx = ss_crop_store_bag_cells(s, b, &n);
        for (int64_t i0 = 0; !rc && i0 < n; i0 += EMBED_BATCH) {
            int nb = (int)(n - i0 < EMBED_BATCH ? n - i0 : EMBED_BATCH);
            if (ss_crop_store_read_many(s, idx + i0, nb, crops)) {
                rc = -1;
                break;
            }
            for (int k = 0; k < nb; k++) {
                ss_nn_normalise_u8(crops + (size_t)k * C * C * 3, C, ss_nn_centre_offset(C, S),
                                   ss_nn_centre_offset(C, S), S, m->cfg.mean, m->cfg.std,
                                   x + (size_t)k * per);
                ss_crop_store_centre(s, idx[i0 + k], &centres[2 * k], &centres[2 * k + 1]);
                coords[2 * k] = centres[2 * k] - S / 2;
                coords[2 * k + 1] = centres[2 * k + 1] - S / 2;
                cids[k] = ss_crop_store_cell_id(s, idx[i0 + k]);
            }
            int dim = 0;
            if (ss_resnet_forward(m, x, nb, 0)) {
                rc = -1;
                break;
            }
            const float *feat = ss_resnet_output(m, which, &dim);
            if (ss_cache_writer_add(w, nb, feat, coords, centres, cids, NULL, NULL)) rc = -1;
        }
        if (rc)
            ss_cache_writer_abort(&w);
        else if (ss_cache_writer_finish(&w))
            rc = -1;
        made += !rc;
        cells += rc ? 0 : n;
    }
    if (!rc && !quiet)
        ss_info("embed: %d bags (%lld cells) of %s -> %s/<bag>.h5 (%s %s, D = %d)%s", made,
                (long long)cells, store_path, cache_dir, id.encoder, id.feature, id.dim,
                kept ? "; bags already cached with this encoder kept" : "");
    free(crops);
    free(x);
    free(coords);
    free(cids);
    ss_resnet_destroy(&m);
    ss_crop_store_close(&s);
    return rc;
}
