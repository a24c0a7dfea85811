/* slidestream cache — the output file of `slidestream embed`: `features` float32 (N, D) and
 * `names` (N) variable-length UTF-8 strings (the input paths), with the encoder's identity as
 * root attributes. Written whole to PATH.tmp, then renamed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache_internal.h"
#include "slidestream/cache.h"
#include "slidestream/error.h"

int ss_embed_file_write(const char *path, int n, int dim, const float *features,
                        const char *const *names, const char *encoder, const char *encoder_hash,
                        const char *feature, const char *preprocessing)
{
    if (!path || n < 0 || dim <= 0 || (n > 0 && (!features || !names)))
        return ss_error("cache", "embed file: invalid arguments");
    char *tmp = cache_strf("%s.tmp", path);
    if (!tmp) return ss_error("cache", "out of memory");
    h5quiet_t q = h5q_begin();
    int rc = -1;
    hid_t f = -1, sp = -1, d = -1, st = -1, sp2 = -1, d2 = -1;
    f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        h5_fail(tmp, "cannot create file");
        goto done;
    }
    hsize_t dims[2] = {(hsize_t)n, (hsize_t)dim};
    sp = H5Screate_simple(2, dims, NULL);
    d = sp >= 0 ? H5Dcreate2(f, "features", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                             H5P_DEFAULT)
                : -1;
    if (d < 0 || (n > 0 && H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                    features) < 0)) {
        h5_fail(tmp, "cannot write 'features'");
        goto done;
    }
    st = H5Tcopy(H5T_C_S1);
    if (st < 0 || H5Tset_size(st, H5T_VARIABLE) < 0 || H5Tset_cset(st, H5T_CSET_UTF8) < 0) {
        h5_fail(tmp, "cannot make a string type");
        goto done;
    }
    hsize_t nd[1] = {(hsize_t)n};
    sp2 = H5Screate_simple(1, nd, NULL);
    d2 = sp2 >= 0 ? H5Dcreate2(f, "names", st, sp2, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    if (d2 < 0 || (n > 0 && H5Dwrite(d2, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, names) < 0)) {
        h5_fail(tmp, "cannot write 'names'");
        goto done;
    }
    if (h5_attr_str(f, "encoder", encoder) || h5_attr_str(f, "encoder_hash", encoder_hash) ||
        h5_attr_str(f, "feature", feature) || h5_attr_str(f, "preprocessing", preprocessing) ||
        h5_attr_str(d, "encoder", encoder) || h5_attr_str(d, "encoder_hash", encoder_hash) ||
        h5_attr_str(d, "feature", feature)) {
        h5_fail(tmp, "cannot write attributes");
        goto done;
    }
    int bad_close = H5Dclose(d) < 0;
    d = -1;
    bad_close |= H5Dclose(d2) < 0;
    d2 = -1;
    bad_close |= H5Fclose(f) < 0;
    f = -1;
    if (bad_close) {
        h5_fail(tmp, "cannot close the file (disk full?)");
        goto done;
    }
    if (cache_fsync_path(tmp, 0)) goto done;
    if (rename(tmp, path) < 0) {
        ss_error_system("cache", "cannot rename %s to %s", tmp, path);
        goto done;
    }
    rc = 0;
done:
    if (d2 >= 0) H5Dclose(d2);
    if (sp2 >= 0) H5Sclose(sp2);
    if (st >= 0) H5Tclose(st);
    if (d >= 0) H5Dclose(d);
    if (sp >= 0) H5Sclose(sp);
    if (f >= 0) H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    h5q_end(q);
    if (rc) unlink(tmp);
    free(tmp);
    return rc;
}
