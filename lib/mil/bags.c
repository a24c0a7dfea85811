/* The bag set of a cache folder (mil_train.h): one bag per <slide_id>.h5, metadata at open,
 * features loaded on demand so a folder of large bags is walked in bounded memory. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/cache.h"
#include "slidestream/error.h"
#include "slidestream/mil_train.h"

#define DOM "mil"

static int by_id(const void *a, const void *b)
{
    return strcmp(((const ss_mil_bag_t *)a)->id, ((const ss_mil_bag_t *)b)->id);
}

int ss_mil_bags_open(const char *dir, ss_mil_bags_t *out)
{
    memset(out, 0, sizeof *out);
    DIR *d = opendir(dir);
    if (!d) return ss_error_system(DOM, "cannot read the cache folder %s", dir);
    size_t cap = 0;
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".h5") || e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ss_cache_reader_t *r = ss_cache_open(path);
        if (!r) {
            rc = -1;
            break;
        }
        const ss_cache_meta_t *meta = ss_cache_meta(r);
        int dim = ss_cache_dim(r);
        if (out->n && dim != out->dim) {
            rc = ss_error(DOM, "%s: features of width %d, and %s has %d: one cache folder "
                               "holds one encoder's embeddings",
                          path, dim, out->bags[0].path, out->dim);
        } else if (out->n == cap) {
            cap = cap ? 2 * cap : 64;
            ss_mil_bag_t *nb = realloc(out->bags, cap * sizeof *nb);
            if (!nb) rc = ss_error(DOM, "out of memory");
            else out->bags = nb;
        }
        if (!rc) {
            ss_mil_bag_t *b = &out->bags[out->n++];
            memset(b, 0, sizeof *b);
            snprintf(b->id, sizeof b->id, "%s", meta->slide_id ? meta->slide_id : e->d_name);
            snprintf(b->split, sizeof b->split, "%s", meta->split ? meta->split : "");
            snprintf(b->path, sizeof b->path, "%s", path);
            b->label = meta->label;
            b->n = ss_cache_rows(r);
            out->dim = dim;
        }
        ss_cache_close(&r);
    }
    closedir(d);
    if (!rc && out->n == 0) rc = ss_error(DOM, "the cache folder %s has no .h5 files", dir);
    if (rc) {
        ss_mil_bags_free(out);
        return -1;
    }
    qsort(out->bags, out->n, sizeof *out->bags, by_id);
    return 0;
}

int ss_mil_bag_load(ss_mil_bag_t *b, int dim)
{
    if (b->x) return 0;
    if (b->n < 1) return ss_error(DOM, "%s: an empty bag (no cells)", b->path);
    ss_cache_reader_t *r = ss_cache_open(b->path);
    if (!r) return -1;
    b->x = malloc((size_t)b->n * dim * sizeof(float));
    b->centres = malloc((size_t)b->n * 2 * sizeof(int64_t));
    b->cell_ids = malloc((size_t)b->n * sizeof(uint64_t));
    int rc = 0;
    if (!b->x || !b->centres || !b->cell_ids)
        rc = ss_error(DOM, "%s: out of memory for %lld cells", b->path, (long long)b->n);
    for (int64_t s = 0; !rc && s < b->n; s += SS_CACHE_CHUNK_ROWS) {
        int k = (int)(b->n - s < SS_CACHE_CHUNK_ROWS ? b->n - s : SS_CACHE_CHUNK_ROWS);
        rc = ss_cache_read(r, s, k, b->x + (size_t)s * dim, NULL, b->centres + 2 * s,
                           b->cell_ids + s, NULL, NULL);
    }
    ss_cache_close(&r);
    if (rc) ss_mil_bag_unload(b);
    return rc;
}

void ss_mil_bag_unload(ss_mil_bag_t *b)
{
    free(b->x), free(b->centres), free(b->cell_ids);
    b->x = NULL, b->centres = NULL, b->cell_ids = NULL;
}

size_t ss_mil_bags_keep_split(ss_mil_bags_t *bags, const char *split)
{
    size_t k = 0;
    for (size_t i = 0; i < bags->n; i++) {
        if (strcmp(bags->bags[i].split, split)) {
            ss_mil_bag_unload(&bags->bags[i]);
            continue;
        }
        bags->bags[k++] = bags->bags[i];
    }
    bags->n = k;
    return k;
}

void ss_mil_bags_free(ss_mil_bags_t *bags)
{
    for (size_t i = 0; i < bags->n; i++) ss_mil_bag_unload(&bags->bags[i]);
    free(bags->bags);
    memset(bags, 0, sizeof *bags);
}
