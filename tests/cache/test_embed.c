/* Helper for cache.embed (embed_cli.sh):
 *   test_embed mkckpt CK.h5 [proj]         a small ResNet-18 checkpoint (width 0.25, input 64)
 *   test_embed verify CK.h5 OUT.h5 FEATURE BATCH N
 * verify checks OUT.h5 from `slidestream embed`: N rows, names sorted in byte order, features
 * float32 (N, D) bit-identical to a direct ss_resnet_forward of each image's centre crop (run
 * in the same batches), and the encoder hash = SHA-256 of CK.h5. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/cache.h"
#include "slidestream/cells.h"
#include "slidestream/error.h"
#include "slidestream/nn_resnet.h"

#include "../check.h"

static int mkckpt(const char *path, int proj)
{
    ss_resnet_config_t cfg = ss_resnet_config_default(18);
    cfg.width_multiplier = 0.25;
    cfg.input_size = 64;
    cfg.seed = 7;
    if (proj) {
        cfg.proj_hidden = 32;
        cfg.proj_out = 16;
    }
    ss_resnet_t *m = ss_resnet_new(&cfg, 1, 0);
    if (!m) return -1;
    /* Non-trivial BN statistics so the eval forward exercises the folded path. */
    for (size_t i = 0; i < m->num_buffers; i++) m->buffers[i] = 0.5f + 0.001f * (float)(i % 97);
    int rc = ss_resnet_save(m, path);
    ss_resnet_destroy(&m);
    return rc;
}

static char *read_attr_str(hid_t obj, const char *name)
{
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return NULL;
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    char *s = NULL, *out = NULL;
    if (H5Aread(a, t, &s) >= 0 && s) {
        out = strdup(s);
        H5free_memory(s);
    }
    H5Tclose(t);
    H5Aclose(a);
    return out;
}

static int verify(const char *ck, const char *outp, const char *feature, int batch, int want_n)
{
    hid_t f = H5Fopen(outp, H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(f >= 0, "open %s", outp);
    if (f < 0) return 1;
    hid_t df = H5Dopen2(f, "features", H5P_DEFAULT), dn = H5Dopen2(f, "names", H5P_DEFAULT);
    CHECK(df >= 0 && dn >= 0, "datasets");
    hid_t ft = H5Dget_type(df), sp = H5Dget_space(df);
    CHECK(H5Tget_class(ft) == H5T_FLOAT && H5Tget_size(ft) == 4, "features float32");
    hsize_t dims[2] = {0, 0};
    CHECK(H5Sget_simple_extent_ndims(sp) == 2, "rank");
    H5Sget_simple_extent_dims(sp, dims, NULL);
    int n = (int)dims[0], D = (int)dims[1];
    CHECK(n == want_n, "N = %d, want %d", n, want_n);
    float *feat = malloc(sizeof(float) * (size_t)(n ? n : 1) * (size_t)(D ? D : 1));
    if (n) H5Dread(df, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, feat);
    char **names = calloc((size_t)(n ? n : 1), sizeof *names);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    H5Tset_cset(st, H5T_CSET_UTF8);
    if (n) CHECK(H5Dread(dn, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, names) >= 0, "read names");
    for (int i = 1; i < n; i++)
        CHECK(strcmp(names[i - 1], names[i]) < 0, "names not sorted: %s, %s", names[i - 1],
              names[i]);
    char hash[65];
    ss_file_digest(ck, hash);
    char *h = read_attr_str(f, "encoder_hash"), *fe = read_attr_str(f, "feature");
    CHECK(h && !strcmp(h, hash), "encoder_hash %s vs %s", h ? h : "(none)", hash);
    CHECK(fe && !strcmp(fe, feature), "feature attr %s", fe ? fe : "(none)");
    free(h);
    free(fe);

    ss_resnet_t *m = ss_resnet_new_from_checkpoint(ck, batch, 0);
    CHECK(m != NULL, "model: %s", ss_error_buffer());
    int S = m ? m->cfg.input_size : 0;
    size_t per = (size_t)3 * S * S;
    float *x = malloc(sizeof(float) * per * (size_t)batch);
    int mism = 0;
    for (int at = 0; m && at < n; at += batch) {
        int k = n - at < batch ? n - at : batch;
        for (int j = 0; j < k; j++) {
            uint8_t *rgb = NULL;
            int w, hgt;
            CHECK(ss_image_load_rgb(names[at + j], &rgb, &w, &hgt) == 0, "load %s", names[at + j]);
            /* independent crop + normalisation: centre (floor), v * 1/(255 std) - mean/std */
            int ox = (w - S) / 2, oy = (hgt - S) / 2;
            for (int c = 0; c < 3; c++) {
                float sc = (float)(1.0 / (255.0 * m->cfg.std[c]));
                float sh = (float)(-m->cfg.mean[c] / m->cfg.std[c]);
                for (int yy = 0; yy < S; yy++)
                    for (int xx = 0; xx < S; xx++)
                        x[(size_t)j * per + (size_t)c * S * S + (size_t)yy * S + xx] =
                            rgb[((size_t)(oy + yy) * w + (size_t)(ox + xx)) * 3 + c] * sc + sh;
            }
            free(rgb);
        }
        CHECK(ss_resnet_forward(m, x, k, 0) == 0, "forward");
        int dim = 0;
        const float *y = ss_resnet_output(
            m, strcmp(feature, "projection") ? SS_RESNET_FEATURE : SS_RESNET_PROJECTION, &dim);
        CHECK(y && dim == D, "dim %d vs %d", dim, D);
        if (y && dim == D && memcmp(y, feat + (size_t)at * D, sizeof(float) * (size_t)k * D))
            mism++;
    }
    CHECK(mism == 0, "%d batches differ from a direct forward", mism);
    printf("verified %d x %d %s features of %s\n", n, D, feature, outp);
    free(x);
    ss_resnet_destroy(&m);
    if (n) {
        hid_t nsp = H5Dget_space(dn);
        H5Dvlen_reclaim(st, nsp, H5P_DEFAULT, names);
        H5Sclose(nsp);
    }
    free(names);
    free(feat);
    H5Tclose(st);
    H5Tclose(ft);
    H5Sclose(sp);
    H5Dclose(df);
    H5Dclose(dn);
    H5Fclose(f);
    return check_failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "mkckpt")) {
        if (mkckpt(argv[2], argc > 3 && !strcmp(argv[3], "proj"))) {
            ss_error_report(NULL);
            return 1;
        }
        return 0;
    }
    if (argc == 7 && !strcmp(argv[1], "verify"))
        return verify(argv[2], argv[3], argv[4], atoi(argv[5]), atoi(argv[6]));
    fprintf(stderr, "usage: test_embed mkckpt CK.h5 [proj] | verify CK OUT FEATURE BATCH N\n");
    return 2;
}
