/* nn.checkpoint — HDF5 round trip of a small tensor table with attributes, and the errors a
 * wrong file must produce (naming the tensor). Negative cases are data: a mutation of the
 * table plus the text the error must contain. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../check.h"
#include "slidestream/error.h"
#include "slidestream/nn_checkpoint.h"

int main(int argc, char **argv)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/nn_ckpt_test_%ld.h5", argc > 1 ? argv[1] : ".",
             (long)getpid());
    float w[2 * 3 * 1 * 1], b[2];
    int64_t count = 7;
    for (int i = 0; i < 6; i++)
        w[i] = (float)i * 0.5f - 1.0f;
    b[0] = 3.25f, b[1] = -0.125f;
    ss_ckpt_tensor_t t[3] = {
        {"conv1.weight", SS_DTYPE_F32, 4, {2, 3, 1, 1}, w},
        {"bn1.bias", SS_DTYPE_F32, 1, {2}, b},
        {"bn1.num_batches_tracked", SS_DTYPE_I64, 0, {0}, &count},
    };
    ss_ckpt_meta_t meta = {.arch = "resnet18",
                           .width_multiplier = 0.25,
                           .input_size = 64,
                           .mean = {0.6009, 0.5513, 0.7394},
                           .std = {0.1982, 0.2448, 0.1076},
                           .truncate_after = "layer3"};
    CHECK(ss_ckpt_save(path, &meta, t, 3) == 0, "%s", ss_error_last());

    float w2[6] = {0}, b2[2] = {0};
    int64_t c2 = 0;
    ss_ckpt_tensor_t t2[3] = {t[0], t[1], t[2]};
    t2[0].data = w2, t2[1].data = b2, t2[2].data = &c2;
    ss_ckpt_meta_t m2;
    CHECK(ss_ckpt_load(path, &m2, t2, 3, SS_CKPT_STRICT) == 0, "%s", ss_error_last());
    CHECK(!memcmp(w, w2, sizeof(w)) && !memcmp(b, b2, sizeof(b)) && c2 == 7, "round trip");
    CHECK(!strcmp(m2.arch, "resnet18") && m2.width_multiplier == 0.25 && m2.input_size == 64,
          "meta");
    CHECK(m2.mean[2] == 0.7394 && m2.std[0] == 0.1982, "mean/std");
    CHECK(!strcmp(m2.truncate_after, "layer3"), "truncate_after '%s'", m2.truncate_after);

    /* Negative cases. */
    struct {
        const char *what;
        int drop;       /* drop this table entry (the file then has an extra tensor) */
        int reshape;    /* entry whose first dim is changed */
        int add_absent; /* ask for a tensor the file lacks */
        int flags;
        const char *expect; /* substring of the error; NULL = must succeed */
    } cases[] = {
        {"wrong shape", -1, 0, 0, 0,
         "'conv1.weight' has shape (2, 3, 1, 1), the model expects (3, 3, 1, 1)"},
        {"extra tensor", 1, -1, 0, 0, "unexpected tensor 'bn1.bias'"},
        {"extra ignored", 1, -1, 0, SS_CKPT_IGNORE_EXTRA, NULL},
        {"missing tensor", -1, -1, 1, 0, "tensor 'fc.weight' is missing"},
        {"missing allowed", -1, -1, 1, SS_CKPT_ALLOW_MISSING, NULL},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        ss_ckpt_tensor_t tt[4];
        int n = 0;
        for (int i = 0; i < 3; i++)
            if (i != cases[k].drop) tt[n++] = t2[i];
        float fcw[4];
        if (cases[k].add_absent)
            tt[n++] = (ss_ckpt_tensor_t){"fc.weight", SS_DTYPE_F32, 2, {2, 2}, fcw};
        if (cases[k].reshape >= 0) tt[cases[k].reshape].shape[0] = 3;
        float big[9];
        if (cases[k].reshape == 0) tt[0].data = big;
        ss_error_clear();
        int rc = ss_ckpt_load(path, NULL, tt, n, cases[k].flags);
        if (cases[k].expect) {
            CHECK(rc == -1, "%s: should fail", cases[k].what);
            CHECK(strstr(ss_error_buffer(), cases[k].expect) != NULL, "%s: error was '%s'",
                  cases[k].what, ss_error_buffer());
        } else {
            CHECK(rc == 0, "%s: %s", cases[k].what, ss_error_buffer());
        }
    }
    ss_error_clear();
    CHECK(ss_ckpt_load("/nonexistent/x.h5", NULL, t2, 3, 0) == -1, "missing file");
    CHECK(strstr(ss_error_buffer(), "/nonexistent/x.h5") != NULL, "names the file");
    ss_error_clear();
    unlink(path);
    return check_exit("nn.checkpoint");
}
