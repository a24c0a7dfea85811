/* embed — embeds cell images without a slide:
 *   slidestream embed --checkpoint CK.h5 [--feature pooled|projection] --out OUT.h5 INPUT...
 * INPUTs are image files (PNG/JPEG/BMP/TIFF; content is sniffed) or folders searched
 * recursively for such files. All images are embedded in path order (byte order). An image
 * larger than the checkpoint's input size is centre-cropped to it; a smaller or unreadable one
 * is reported by name and skipped, and the exit status is then 1. OUT.h5 holds `features`
 * float32 (N, D) and `names` (the paths, same order), written under OUT.h5.tmp and renamed. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "commands.h"
#include "slidestream/args.h"
#include "slidestream/cache.h"
#include "slidestream/cells.h"
#include "slidestream/encoder_id.h"
#include "slidestream/log.h"
#include "slidestream/nn_preprocess.h"
#include "slidestream/nn_resnet.h"
#include "slidestream/train_store.h"

typedef struct {
    char **v;
    size_t n, cap;
} strvec_t;

static int strvec_push(strvec_t *s, const char *p)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        char **v = realloc(s->v, cap * sizeof *v);
        if (!v) return ss_error("embed", "out of memory");
        s->v = v;
        s->cap = cap;
    }
    if (!(s->v[s->n] = strdup(p))) return ss_error("embed", "out of memory");
    s->n++;
    return 0;
}

static void strvec_free(strvec_t *s)
{
    for (size_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

static int is_image_name(const char *name)
{
    static const char *ext[] = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"};
    const char *dot = strrchr(name, '.');
    if (!dot || name[0] == '.') return 0;
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++)
        if (!strcasecmp(dot, ext[i])) return 1;
    return 0;
}

/* Folders: every image file below, recursively (hidden entries skipped). */
static int walk(const char *dir, strvec_t *out, int depth)
{
    if (depth > 64) return ss_error("embed", "%s: folders nested too deeply", dir);
    DIR *d = opendir(dir);
    if (!d) return ss_error_system("embed", "cannot read folder %s", dir);
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        char *p = malloc(len);
        if (!p) {
            rc = ss_error("embed", "out of memory");
            break;
        }
        snprintf(p, len, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", e->d_name);
        struct stat st;
        if (stat(p, &st) == 0) {
            if (S_ISDIR(st.st_mode))
                rc = walk(p, out, depth + 1);
            else if (S_ISREG(st.st_mode) && is_image_name(e->d_name))
                rc = strvec_push(out, p);
        }
        free(p);
    }
    closedir(d);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct {
    ss_resnet_t *m;
    ss_resnet_output_t which;
    int S, dim, batch;
    float *x;           /* (batch, 3, S, S) */
    int nx;             /* images in x */
    float *feat;        /* (cap, dim) */
    size_t nfeat, cap;
    const char **names; /* (cap) borrowed from the path list */
    const char **pending; /* names of the images in x */
} embedder_t;

static int run_batch(embedder_t *e)
{
    if (e->nx == 0) return 0;
    if (ss_resnet_forward(e->m, e->x, e->nx, 0)) return -1;
    int dim = 0;
    const float *y = ss_resnet_output(e->m, e->which, &dim);
    if (!y || dim != e->dim) return ss_error("embed", "model output missing or of width %d", dim);
    if (e->nfeat + (size_t)e->nx > e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 256;
        while (cap < e->nfeat + (size_t)e->nx) cap *= 2;
        float *f = realloc(e->feat, cap * (size_t)e->dim * sizeof *f);
        if (!f) return ss_error("embed", "out of memory");
        e->feat = f;
        const char **nm = realloc(e->names, cap * sizeof *nm);
        if (!nm) return ss_error("embed", "out of memory");
        e->names = nm;
        e->cap = cap;
    }
    memcpy(e->feat + e->nfeat * (size_t)e->dim, y, (size_t)e->nx * (size_t)e->dim * sizeof(float));
    for (int i = 0; i < e->nx; i++) e->names[e->nfeat + (size_t)i] = e->pending[i];
    e->nfeat += (size_t)e->nx;
    e->nx = 0;
    return 0;
}

int ss_main_embed(int argc, char **argv)
{
    const char *ckpt = NULL, *feature = "pooled", *out = NULL, *store = NULL, *cache = NULL;
    int batch = 32, quiet = 0;
    ss_arg_t args[] = {
        {"--checkpoint", SS_ARG_STRING, &ckpt, "CK.h5", "encoder checkpoint (HDF5)", 0, 0},
        {"--feature", SS_ARG_STRING, &feature, "pooled|projection",
         "the pooled encoder output (default) or the projection head's", 0, 0},
        {"--out", SS_ARG_STRING, &out, "OUT.h5", "features (N, D) and names (N)", 0, 0},
        {"--batch", SS_ARG_INT, &batch, "N", "images per forward pass (default 32)", 1, 4096},
        {"--store", SS_ARG_STRING, &store, "CROPS.h5", "instead of images: every bag of a crop store (`slidestream train`'s crops.h5)", 0, 0},
        {"--cache", SS_ARG_STRING, &cache, "DIR", "with --store: one embedding-cache file per bag, DIR/<slide_id>.h5", 0, 0},
        {"--quiet", SS_ARG_FLAG, &quiet, NULL, "no progress lines", 0, 0},
        {0},
    };
    int npos = 0;
    char **pos = NULL;
    int rc = ss_args_parse(argc, argv,
                           "--checkpoint CK.h5 [--feature pooled|projection] --out OUT.h5 "
                           "INPUT...\n"
                           "       slidestream embed --checkpoint CK.h5 --store CROPS.h5 --cache DIR\n\n"
                           "Embeds cell images (files, or folders searched recursively) with a "
                           "ResNet checkpoint.\nImages larger than the checkpoint's input size "
                           "are centre-cropped; smaller ones are refused.\nOUT.h5: features "
                           "float32 (N, D) and names (the paths, sorted in byte order).",
                           args, &npos, &pos);
    if (rc) {
        free(pos);
        return rc > 0 ? 0 : (ss_error_report(NULL), 2);
    }
    if (store || cache) { /* a crop store into embedding caches (e.g. after training on it) */
        free(pos);
        if (!store || !cache || !ckpt || npos) {
            fprintf(stderr, "slidestream: embed: --store CROPS.h5 goes with --cache DIR and "
                            "--checkpoint CK.h5, without INPUTs\n");
            return 2;
        }
        if (strcmp(feature, "pooled") && strcmp(feature, "projection")) {
            fprintf(stderr, "slidestream: embed: --feature must be pooled or projection, not '%s'\n",
                    feature);
            return 2;
        }
        ss_log_set_quiet(quiet);
        if (ss_crop_store_embed(store, ckpt, feature, cache, quiet)) {
            ss_error_report("embed failed");
            return 1;
        }
        return 0;
    }
    if (ss_args_require("embed", "--checkpoint", ckpt) || ss_args_require("embed", "--out", out)) {
        free(pos);
        ss_error_report(NULL);
        return 2;
    }
    ss_resnet_output_t which;
    if (!strcmp(feature, "pooled"))
        which = SS_RESNET_FEATURE;
    else if (!strcmp(feature, "projection"))
        which = SS_RESNET_PROJECTION;
    else {
        free(pos);
        fprintf(stderr, "slidestream: embed: --feature must be pooled or projection, not '%s'\n",
                feature);
        return 2;
    }
    if (npos < 1) {
        free(pos);
        fprintf(stderr, "slidestream: embed: no INPUT given (see --help)\n");
        return 2;
    }
    ss_log_set_quiet(quiet);

    int failed = 0;
    strvec_t files = {0};
    for (int i = 0; i < npos; i++) {
        struct stat st;
        if (stat(pos[i], &st) < 0) {
            ss_error_system("embed", "%s", pos[i]);
            ss_error_report(NULL);
            failed++;
        } else if (S_ISDIR(st.st_mode)) {
            if (walk(pos[i], &files, 0)) {
                ss_error_report(NULL);
                failed++;
            }
        } else if (strvec_push(&files, pos[i])) {
            goto fatal;
        }
    }
    free(pos);
    pos = NULL;
    if (files.n > 1) qsort(files.v, files.n, sizeof *files.v, cmp_str);
    size_t u = 0; /* the same file named twice is embedded once */
    for (size_t i = 0; i < files.n; i++) {
        if (u && !strcmp(files.v[u - 1], files.v[i])) {
            free(files.v[i]);
            continue;
        }
        files.v[u++] = files.v[i];
    }
    files.n = u;
    if (files.n == 0) {
        fprintf(stderr, "slidestream: embed: no images found in the inputs\n");
        strvec_free(&files);
        return 1;
    }

    /* The same identity the cache files carry (architecture, SHA-256, preprocessing). */
    ss_encoder_id_t id;
    if (ss_encoder_id(ckpt, feature, &id)) goto fatal;
    embedder_t e = {0};
    e.which = which;
    e.batch = batch;
    e.m = ss_resnet_new_from_checkpoint(ckpt, batch, 0);
    if (!e.m) goto fatal;
    e.S = e.m->cfg.input_size;
    e.dim = which == SS_RESNET_FEATURE ? e.m->feature_dim : e.m->cfg.proj_out;
    if (e.dim <= 0) {
        ss_error("embed", "%s has no projection head (projector.*): use --feature pooled", ckpt);
        ss_resnet_destroy(&e.m);
        goto fatal;
    }
    size_t per = (size_t)3 * e.S * e.S;
    e.x = malloc((size_t)batch * per * sizeof(float));
    e.pending = malloc((size_t)batch * sizeof *e.pending);
    if (!e.x || !e.pending) {
        ss_error("embed", "out of memory");
        goto fail_model;
    }
    ss_info("embed: %zu images, %s %s feature (D = %d), input %d px", files.n, id.encoder, feature,
            e.dim, e.S);
    ss_progress_t *prog = quiet ? NULL : ss_progress_new("images", files.n);
    for (size_t i = 0; i < files.n; i++) {
        uint8_t *rgb = NULL;
        int w = 0, h = 0;
        if (ss_image_load_rgb(files.v[i], &rgb, &w, &h)) {
            ss_error_report(NULL);
            failed++;
        } else if (w < e.S || h < e.S) {
            fprintf(stderr,
                    "slidestream: embed: %s: image is %dx%d, smaller than the checkpoint's input "
                    "size %dx%d; skipped\n",
                    files.v[i], w, h, e.S, e.S);
            failed++;
        } else {
            ss_nn_normalise_u8(rgb, w, ss_nn_centre_offset(w, e.S), ss_nn_centre_offset(h, e.S),
                               e.S, e.m->cfg.mean, e.m->cfg.std, e.x + (size_t)e.nx * per);
            e.pending[e.nx++] = files.v[i];
        }
        free(rgb);
        if (e.nx == batch && run_batch(&e)) {
            ss_progress_destroy(&prog);
            goto fail_model;
        }
        if (prog) ss_progress_add(prog, 1);
    }
    if (run_batch(&e)) {
        ss_progress_destroy(&prog);
        goto fail_model;
    }
    ss_progress_destroy(&prog);
    if (ss_embed_file_write(out, (int)e.nfeat, e.dim, e.feat, e.names, id.encoder, id.hash,
                            feature, id.preprocessing))
        goto fail_model;
    ss_info("embed: wrote %zu x %d features to %s%s", e.nfeat, e.dim, out,
            failed ? " (some inputs failed)" : "");
    ss_resnet_destroy(&e.m);
    free(e.x);
    free(e.pending);
    free(e.feat);
    free(e.names);
    strvec_free(&files);
    if (failed) fprintf(stderr, "slidestream: embed: %d input(s) failed\n", failed);
    return failed ? 1 : 0;

fail_model:
    ss_resnet_destroy(&e.m);
    free(e.x);
    free(e.pending);
    free(e.feat);
    free(e.names);
fatal:
    free(pos);
    strvec_free(&files);
    ss_error_report("embed failed");
    return 1;
}
