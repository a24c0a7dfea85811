/* Parity-test driver: applies ss_aug_apply to one 8-bit image for each case of a case file and
 * writes the (3, S, S) float32 outputs back to back, for parity.py to compare with torchvision.
 *   aug_driver IMAGE.rgb CASES OUT.f32
 * IMAGE.rgb: h x w x 3 bytes. CASES: a first line "w h S", then one case a line:
 *   x0 y0 hflip jitter rot90 OPS brightness contrast saturation hue m0 m1 m2 s0 s1 s2
 * OPS names the jitter ops in order, letters b c s h, or "-" for none. Exit code 0 on success,
 * 1 with a message on anything malformed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/error.h"
#include "slidestream/train_augment.h"

static int parse_ops(const char *s, ss_aug_params_t *p)
{
    p->n_ops = 0;
    if (!strcmp(s, "-")) return 0;
    for (; *s; s++) {
        if (p->n_ops == 4) return -1;
        const char *k = strchr("bcsh", *s);
        if (!k) return -1;
        p->ops[p->n_ops++] = (ss_aug_op_t)(k - "bcsh");
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: aug_driver IMAGE.rgb CASES OUT.f32\n");
        return 1;
    }
    FILE *img = fopen(argv[1], "rb"), *cases = fopen(argv[2], "r"), *out = fopen(argv[3], "wb");
    if (!img || !cases || !out) {
        fprintf(stderr, "aug_driver: cannot open the files\n");
        return 1;
    }
    int w, h, S;
    if (fscanf(cases, "%d %d %d", &w, &h, &S) != 3 || w < 1 || h < 1 || S < 1 || w > 8192 ||
        h > 8192) {
        fprintf(stderr, "aug_driver: bad header in %s\n", argv[2]);
        return 1;
    }
    size_t nb = (size_t)w * h * 3;
    uint8_t *rgb = malloc(nb);
    float *x = malloc(sizeof(float) * 3 * (size_t)S * S);
    if (!rgb || !x || fread(rgb, 1, nb, img) != nb) {
        fprintf(stderr, "aug_driver: %s is not %dx%d RGB\n", argv[1], w, h);
        return 1;
    }
    int n = 0, rc = 0;
    for (;;) {
        ss_aug_params_t p = {0};
        char ops[16];
        double mean[3], std[3];
        int k =
            fscanf(cases, "%d %d %d %d %d %15s %f %f %f %f %lf %lf %lf %lf %lf %lf", &p.x0, &p.y0,
                   &p.hflip, &p.jitter, &p.rot90, ops, &p.brightness, &p.contrast, &p.saturation,
                   &p.hue, &mean[0], &mean[1], &mean[2], &std[0], &std[1], &std[2]);
        if (k == EOF) break;
        if (k != 16 || parse_ops(ops, &p)) {
            fprintf(stderr, "aug_driver: case %d is malformed\n", n);
            rc = 1;
            break;
        }
        if (ss_aug_apply(&p, rgb, w, h, S, mean, std, x)) {
            ss_error_report(NULL);
            rc = 1;
            break;
        }
        fwrite(x, sizeof(float), 3 * (size_t)S * S, out);
        n++;
    }
    if (fclose(out)) rc = 1;
    fclose(img), fclose(cases);
    free(rgb), free(x);
    return rc;
}
