/* slidestream — labelled cells of plain images: read annotation files and crop every labelled cell
 * into a cell folder (`slidestream cells from-labels`).
 *
 * Label formats (one label = a centre and a class):
 *   - SS_LABELS_POINTS: one text file per image, LABELS/<stem>.txt, lines `x y class` separated
 *     by blanks (the Chula RBC-12 layout); x, y are 0-based image pixels.
 *   - SS_LABELS_VOC: one Pascal VOC XML per image, LABELS/<stem>.xml; every <object>'s <name>
 *     and <bndbox> (1-based xmin..xmax, as the VOC devkit) gives the centre of its box.
 *   - SS_LABELS_CSV: one file for many images, a header naming `image,x,y,class` (any order,
 *     other columns ignored); image is a path relative to the images folder.
 * Images pair with their label file by file stem (points, VOC); decoders sniff the content, so an
 * image whose suffix lies about its format still loads.
 *
 * The cell folder written: OUT/<class>/<source>_<n>.png, n the label's position (0-based) in its
 * image's labels, and OUT/cells.csv, one row per crop:
 *   path,class,source,image,x,y,padded
 * path relative to OUT; source the image's name (its stem, prefixed with the input's number when
 * two inputs share a stem); image its absolute path; x, y the labelled centre in it; padded 1 when
 * the crop reached beyond the image and edge pixels were repeated. Crops are written under a hidden
 * temporary name and renamed, cells.csv as cells.csv.tmp renamed at the end: an interrupted run
 * never leaves a partial PNG that looks complete, and no cells.csv.
 *
 * Ownership: lists own their strings (ss_label_list_free); inputs are borrowed.
 */
#ifndef SLIDESTREAM_CELLS_LABELS_H
#define SLIDESTREAM_CELLS_LABELS_H

#include <stddef.h>

typedef enum { SS_LABELS_POINTS = 0, SS_LABELS_VOC = 1, SS_LABELS_CSV = 2 } ss_labels_format_t;

/* "points", "voc", "csv"; an error naming the value otherwise. */
int ss_labels_format_parse(const char *name, ss_labels_format_t *out);
const char *ss_labels_format_name(ss_labels_format_t f);

typedef struct {
    double x, y; /* centre, 0-based image pixels */
    char *cls;   /* class as labelled; a plain folder name */
    char *image; /* SS_LABELS_CSV only: the row's image column; NULL otherwise */
    int line;    /* where the label starts in its file (1-based) */
} ss_label_t;

typedef struct {
    ss_label_t *v;
    size_t n, cap;
} ss_label_list_t;

/* Appends a label, copying the strings (image may be NULL). */
int ss_label_list_push(ss_label_list_t *l, double x, double y, const char *cls, const char *image,
                       int line);
void ss_label_list_free(ss_label_list_t *l);

/* Reads one label file, appending its labels to `out`. A malformed line or object is reported
 * as a warning naming file:line, counted in *n_bad and skipped; -1 (error names the file) when
 * the file cannot be read at all or (VOC) is not well-formed XML. */
int ss_labels_read_points(const char *path, ss_label_list_t *out, size_t *n_bad);
int ss_labels_read_voc(const char *path, ss_label_list_t *out, size_t *n_bad);
int ss_labels_read_csv(const char *path, ss_label_list_t *out, size_t *n_bad);

/* 1 when `cls` is usable as a folder name: 1-64 characters of [A-Za-z0-9_.+-], not starting
 * with '.'. */
int ss_label_class_ok(const char *cls);

/* ---- cropping every labelled cell into a cell folder ---- */

typedef enum { SS_BORDER_PAD = 0, SS_BORDER_SKIP = 1 } ss_border_t;

typedef struct {
    ss_labels_format_t format;
    const char *images; /* folder of images; SS_LABELS_CSV: NULL = the CSV file's folder */
    const char *labels; /* folder of label files; SS_LABELS_CSV: the CSV file */
} ss_labels_input_t;

typedef struct {
    int size;            /* crop side in pixels */
    ss_border_t border;  /* a crop reaching beyond the image: edge pixels repeated, or skipped */
    const char *classes; /* comma list of the classes to write; NULL = all */
} ss_crop_opts_t;

typedef struct {
    size_t images;            /* images whose label file was read */
    size_t images_empty;      /* of which the label file holds no label (named) */
    size_t images_unreadable; /* could not be decoded (named in a warning) */
    size_t images_unlabelled; /* no label file (points, VOC; named) */
    size_t labels_orphan;     /* label files (or CSV images) without an image (named) */
    size_t label_files_bad;   /* label files that could not be read at all (named) */
    size_t lines_malformed;   /* labels skipped: malformed or outside their image (file:line) */
    size_t cells_written, cells_padded, cells_skipped; /* skipped: at the border with skip */
    size_t cells_unselected; /* labelled with a class not in opts.classes */
    char **classes;          /* classes written, sorted */
    size_t *per_class;       /* cells written per class */
    size_t n_classes;
} ss_crop_report_t;

/* Crops every labelled cell of every input into out_dir, which must not exist or be empty.
 * Inputs are checked before anything is written (a missing folder or file is an error naming
 * it). Per-image faults (unreadable images, unreadable label files, malformed lines) are warned,
 * counted in *r and the run goes on; -1 only for what stops the run (the inputs, the output
 * folder, a failed write). Shows progress over images unless quiet. Free r with
 * ss_crop_report_free. */
int ss_cells_from_labels(const ss_labels_input_t *inputs, size_t n_inputs, const char *out_dir,
                         const ss_crop_opts_t *o, int quiet, ss_crop_report_t *r);
void ss_crop_report_free(ss_crop_report_t *r);

#endif
