/* slidestream cells — tools for cell folders (DIR/<class>/<cell>.png, the input of embed, bags
 * simulate and the trainer).
 *
 *   slidestream cells from-labels --format points|voc|csv --images DIR --labels DIR|FILE
 *                                 [--images DIR --labels DIR|FILE ...] --out DIR
 *                                 (--size PX | --size-um U --mpp M) [--border pad|skip]
 *                                 [--classes C,...] [--quiet]
 *
 * from-labels crops every labelled cell of annotated photos (lib/cells/from_labels.c); this main
 * only reads flags and reports. Exit 0: done; 1: done, but an image or a label file could not be
 * read (named on stderr), or the run stopped; 2: usage error. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "slidestream/args.h"
#include "slidestream/cells_labels.h"
#include "slidestream/error.h"
#include "slidestream/log.h"

static const char USAGE[] =
    "usage: slidestream cells <mode> [options]\n"
    "\n"
    "modes:\n"
    "  from-labels   crop every labelled cell of annotated images into a cell folder\n"
    "\n"
    "`slidestream cells <mode> --help` gives the mode's flags.\n";

static const char USAGE_FROM_LABELS[] =
    "--format points|voc|csv --images DIR --labels DIR|FILE\n"
    "                         [--images DIR --labels DIR|FILE ...] --out DIR\n"
    "                         (--size PX | --size-um U --mpp M) [--border pad|skip]\n"
    "                         [--classes C,...] [--quiet]\n"
    "\n"
    "Crops a square around every labelled cell into OUT/<class>/<source>_<n>.png (a cell folder\n"
    "for embed, bags simulate and the trainer), and lists the crops in OUT/cells.csv:\n"
    "  path,class,source,image,x,y,padded\n"
    "path relative to OUT, source the image's stem (prefixed with its input's number, 1-based,\n"
    "when two inputs share a stem), image its absolute path, x,y the labelled centre, padded 1\n"
    "when the crop reached beyond the image. n counts the image's labels from 0.\n"
    "\n"
    "Label formats (images pair with label files by file stem; content decides an image's\n"
    "format, not its suffix):\n"
    "  points  LABELS/<stem>.txt, lines 'x y class' (Chula RBC-12); 0-based pixels\n"
    "  voc     LABELS/<stem>.xml, Pascal VOC: each <object>'s <name>, centre of its <bndbox>\n"
    "          (1-based VOC pixels, shifted to 0-based)\n"
    "  csv     FILE with a header naming image,x,y,class (any order, other columns ignored);\n"
    "          image relative to --images (default: the CSV's folder); 0-based pixels\n"
    "--images/--labels pairs repeat to gather several datasets into one folder (for csv,\n"
    "--images may be left out of every pair). OUT must not exist or be empty.\n"
    "\n"
    "Crop size: --size PX, or --size-um U with the images' --mpp M (PX = round(U / M)). The\n"
    "crop's pixel (PX/2, PX/2) is the labelled centre (rounded). A cell closer to the border\n"
    "than PX/2 is padded (edge pixels repeated, as the cell-cropper does) or skipped.\n"
    "\n"
    "Unreadable images and label files, images without labels, labels without images and\n"
    "malformed label lines (file:line) are named on stderr and counted in the summary; the run\n"
    "goes on. Exit status 1 when an image or a label file could not be read.";

static int main_from_labels(int argc, char **argv)
{
    /* --images and --labels repeat in pairs: gathered here, the rest goes to ss_args_parse */
    const char **images = calloc((size_t)argc + 1, sizeof *images);
    const char **labels = calloc((size_t)argc + 1, sizeof *labels);
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    ss_labels_input_t *in = calloc((size_t)argc + 1, sizeof *in);
    if (!images || !labels || !rest || !in) {
        free(images), free(labels), free(rest), free(in);
        fprintf(stderr, "slidestream cells from-labels: out of memory\n");
        return 1;
    }
    int ni = 0, nl = 0, nrest = 0, code = 2;
    rest[nrest++] = "cells from-labels";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int is_img = !strncmp(a, "--images", 8) && (!a[8] || a[8] == '=');
        int is_lab = !strncmp(a, "--labels", 8) && (!a[8] || a[8] == '=');
        if (!is_img && !is_lab) {
            rest[nrest++] = argv[i];
            continue;
        }
        const char *v = a[8] == '=' ? a + 9 : i + 1 < argc ? argv[++i] : NULL;
        if (!v || !*v) {
            ss_error("cells from-labels", "%s needs a value (%s)", is_img ? "--images" : "--labels",
                     is_img ? "DIR" : "DIR|FILE");
            goto usage;
        }
        if (is_img)
            images[ni++] = v;
        else
            labels[nl++] = v;
    }
    const char *format = NULL, *out = NULL, *border = "pad", *classes = NULL, *dummy = NULL;
    double size_um = 0, mpp = 0;
    int size = 0, quiet = 0;
    ss_arg_t args[] = {
        {"--format", SS_ARG_STRING, &format, "F", "label format: points, voc or csv", 0, 0},
        {"--images", SS_ARG_STRING, &dummy, "DIR", "folder of images (repeat with --labels)", 0, 0},
        {"--labels", SS_ARG_STRING, &dummy, "DIR|FILE",
         "their label files (points, voc) or CSV file (csv)", 0, 0},
        {"--out", SS_ARG_STRING, &out, "DIR", "cell folder to create (new or empty)", 0, 0},
        {"--size", SS_ARG_INT, &size, "PX", "crop side in pixels", 1, 8192},
        {"--size-um", SS_ARG_DOUBLE, &size_um, "U", "crop side in microns (needs --mpp)", 1e-6,
         1e6},
        {"--mpp", SS_ARG_DOUBLE, &mpp, "M", "the images' microns per pixel", 1e-6, 1e3},
        {"--border", SS_ARG_STRING, &border, "pad|skip",
         "cells nearer the border than half a crop: pad (default) or skip", 0, 0},
        {"--classes", SS_ARG_STRING, &classes, "C,...", "crop only these classes (default all)", 0,
         0},
        {"--quiet", SS_ARG_FLAG, &quiet, NULL, "no progress lines", 0, 0},
        {0},
    };
    int rc = ss_args_parse(nrest, rest, USAGE_FROM_LABELS, args, NULL, NULL);
    if (rc > 0) {
        code = 0;
        goto done;
    }
    if (rc) goto usage;
    ss_labels_format_t fmt;
    if (ss_args_require("cells from-labels", "--format", format) ||
        ss_labels_format_parse(format, &fmt) || ss_args_require("cells from-labels", "--out", out))
        goto usage;
    if (nl == 0) {
        ss_error("cells from-labels", "--labels is required (see slidestream cells from-labels "
                                      "--help)");
        goto usage;
    }
    if (ni != nl && !(fmt == SS_LABELS_CSV && ni == 0)) {
        ss_error("cells from-labels",
                 "%d --images for %d --labels: give them in pairs (--images DIR --labels %s)", ni,
                 nl, fmt == SS_LABELS_CSV ? "FILE" : "DIR");
        goto usage;
    }
    if (size && size_um) {
        ss_error("cells from-labels", "give the crop size once: --size PX or --size-um U");
        goto usage;
    }
    if (size_um && !mpp) {
        ss_error("cells from-labels",
                 "--size-um %g needs --mpp, the images' microns per pixel (photos rarely say)",
                 size_um);
        goto usage;
    }
    if (mpp && !size_um) {
        ss_error("cells from-labels", "--mpp is used with --size-um only (with --size PX, "
                                      "drop it)");
        goto usage;
    }
    if (!size && !size_um) {
        ss_error("cells from-labels", "the crop size is required: --size PX, or --size-um U "
                                      "with --mpp M");
        goto usage;
    }
    if (size_um) {
        double px = round(size_um / mpp);
        if (px < 1 || px > 8192) {
            ss_error("cells from-labels", "--size-um %g at --mpp %g is %.0f px, out of [1, 8192]",
                     size_um, mpp, px);
            goto usage;
        }
        size = (int)px;
    }
    ss_crop_opts_t o = {.size = size, .classes = classes};
    if (!strcmp(border, "skip")) {
        o.border = SS_BORDER_SKIP;
    } else if (strcmp(border, "pad")) {
        ss_error("cells from-labels", "--border: '%s' is neither pad nor skip", border);
        goto usage;
    }
    for (int k = 0; k < nl; k++)
        in[k] = (ss_labels_input_t){fmt, ni ? images[k] : NULL, labels[k]};
    ss_log_set_quiet(quiet);
    ss_crop_report_t r;
    double t0 = ss_now();
    if (ss_cells_from_labels(in, (size_t)nl, out, &o, quiet, &r)) {
        ss_error_report("cells from-labels failed");
        ss_crop_report_free(&r);
        code = 1;
        goto done;
    }
    printf("cells from-labels: %zu cells of %zu images -> %s/<class>/*.png (%dx%d px",
           r.cells_written, r.images, out, size, size);
    if (size_um) printf(" = %g um at %g um/px", size_um, mpp);
    printf(") and %s/cells.csv in %.1f s\n  per class:", out, ss_now() - t0);
    for (size_t c = 0; c < r.n_classes; c++)
        printf(" %s:%zu", r.classes[c], r.per_class[c]);
    if (!r.n_classes) printf(" none");
    printf("\n  border: %zu %s\n", o.border == SS_BORDER_PAD ? r.cells_padded : r.cells_skipped,
           o.border == SS_BORDER_PAD ? "padded (edge pixels repeated)" : "skipped");
    printf("  skipped: %zu unreadable images, %zu unreadable label files, %zu malformed labels, "
           "%zu images without labels, %zu label files without an image, %zu empty label files",
           r.images_unreadable, r.label_files_bad, r.lines_malformed, r.images_unlabelled,
           r.labels_orphan, r.images_empty);
    if (classes) printf(", %zu cells of other classes", r.cells_unselected);
    printf("\n");
    code = r.images_unreadable || r.label_files_bad ? 1 : 0;
    ss_crop_report_free(&r);
    goto done;
usage:
    ss_error_report(NULL);
done:
    free(images), free(labels), free(rest), free(in);
    return code;
}

int ss_main_cells(int argc, char **argv)
{
    if (argc < 2) {
        fputs(USAGE, stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "from-labels")) return main_from_labels(argc - 1, argv + 1);
    fprintf(stderr, "slidestream cells: unknown mode '%s' (see slidestream cells --help)\n",
            argv[1]);
    return 2;
}
