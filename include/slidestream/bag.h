/* slidestream — bag-builder: group cells into labelled bags for multiple-instance learning.
 *
 * Simulation mode implements the witness-rate protocol (specs/methods.md §7): from folders of
 * labelled single-cell images (one folder per class code), build bags of B cells, half negative
 * (normal cells only) and half positive (exactly round(WR·B) abnormal "witness" cells, the rest
 * normal). Cells are drawn without replacement after one seeded shuffle of each pool, so no cell
 * appears in two bags, and test bags are drawn from cells no training bag uses.
 *
 * Ownership: a cell set owns its paths; a plan refers to cells by index into the set it was
 * built from and must not outlive it.
 */
#ifndef SLIDESTREAM_BAG_H
#define SLIDESTREAM_BAG_H

#include <stddef.h>
#include <stdint.h>

/* ---- labelled cell images ---- */

typedef struct {
    char *path;    /* absolute: realpath(DIR)/<CODE>/<file> */
    char *cell_id; /* "<CODE>/<file>": unique within the set */
    char *cls;     /* class code = folder name */
    int abnormal;  /* 0 when cls is one of the normal codes */
    int source;    /* index into the set's sources, -1 when the folder does not say */
} ss_cell_image_t;

typedef struct {
    ss_cell_image_t *cells; /* sorted by (class, file name): independent of directory order */
    size_t n;
    size_t n_normal, n_abnormal;
    char **classes; /* class codes found, sorted */
    size_t n_classes;
    char **sources; /* source images named by DIR/cells.csv (ss_cell_sources_*: sorted) */
    size_t n_sources;
    size_t n_unsourced; /* cells cells.csv does not list (all of them when it is absent) */
} ss_cellset_t;

/* Scans dir/<CODE>/ for images (.png .jpg .jpeg .bmp .tif .tiff). normal_codes is a comma list
 * ("LYT" when NULL); every other folder is abnormal. Each normal code must have a folder.
 * When dir/cells.csv exists (as `slidestream cells from-labels` writes it: a header naming at
 * least `path` (relative to dir, "<CODE>/<file>") and `source`), each listed cell gets its
 * source image, so bags can be drawn with train and test from disjoint images. Rows naming no
 * image of the folder are ignored; a cells.csv without those columns records no sources. */
int ss_cellset_load(const char *dir, const char *normal_codes, ss_cellset_t **out);
void ss_cellset_destroy(ss_cellset_t **cs);

/* ---- simulated bags ---- */

typedef struct {
    int n_bags;          /* training bags: half negative, half positive (must be even) */
    int by_source;       /* train and test cells from disjoint source images (needs sources) */
    int n_test_bags;     /* test bags from cells disjoint from the training bags (even; 0 = none) */
    int bag_size;        /* B: cells per bag */
    double witness_rate; /* WR: a positive bag holds round(WR·B) abnormal cells (halves round up) */
    uint64_t seed;
} ss_bag_sim_opts_t;

void ss_bag_sim_opts_default(ss_bag_sim_opts_t *o);

enum { SS_BAG_TRAIN = 0, SS_BAG_TEST = 1 };

typedef struct {
    char id[40];   /* normal_000, abnormal_000; test bags normal_test_000, abnormal_test_000 */
    int label;     /* 1 = positive (abnormal) */
    int split;     /* SS_BAG_TRAIN or SS_BAG_TEST */
    int n_witness; /* abnormal cells in the bag */
    size_t n_cells;
    size_t *cells; /* (n_cells) indices into the cell set, in bag order */
} ss_bag_t;

typedef struct {
    ss_bag_t *bags; /* train negatives, train positives, test negatives, test positives */
    size_t n;
    int witnesses_per_positive; /* round(WR·B) */
} ss_bag_plan_t;

/* Number of witness cells per positive bag for (wr, b): round half up, robust to the binary
 * representation of wr (0.005 × 100 gives 1). */
int ss_bag_witness_count(double wr, int bag_size);

/* Builds the bags. Fails with a message naming what is short (cells needed vs available) or
 * which option is out of range. */
int ss_bag_simulate(const ss_cellset_t *cs, const ss_bag_sim_opts_t *o, ss_bag_plan_t **out);
void ss_bag_plan_destroy(ss_bag_plan_t **plan);

/* Writes out_dir/bags.csv (bag_id,label,split,n_cells,n_witness) and out_dir/bag_cells.csv
 * (bag_id,cell_id,path,class,instance_label), each under a temporary name renamed when
 * complete; out_dir is created. */
int ss_bag_plan_write(const ss_bag_plan_t *plan, const ss_cellset_t *cs, const char *out_dir);

/* Also materialises the bags as folders of symbolic links, the layout the reference scripts
 * read: out_dir/<train|test>/<bag_id>/<file name> -> the cell image. */
int ss_bag_plan_link(const ss_bag_plan_t *plan, const ss_cellset_t *cs, const char *out_dir);

#endif
