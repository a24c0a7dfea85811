/* cells_labels.unit — the label readers (points, VOC, CSV) on hand-written files with their
 * malformed lines, and ss_cells_from_labels on generated images whose every pixel encodes its own
 * coordinates (R = 5x, G = 6y), so each crop pixel says exactly where it came from: centres,
 * padding by edge repetition, skipping, the outside-the-image label, an unreadable image, an empty
 * label file, a PNG named .jpg, two inputs sharing a stem, the class filter and the non-empty
 * output refused. Then
 * the cell folder written is read back: each item's source from cells.csv.
 * Exit status 0 = all checks passed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "slidestream/cells.h"
#include "slidestream/cells_labels.h"
#include "slidestream/error.h"

#include "../check.h"

#define W 50
#define H 40
#define S 10

static char dir[] = "/tmp/ss_labels_testXXXXXX";

static void write_file(const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    CHECK(f != NULL, "cannot write %s", p);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static const char *at(const char *name)
{
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static void test_points(void)
{
    write_file("p.txt", "27 242 0\r\n\n 65 218 10 \n1 2\nx 3 0\n4 5 a/b\n7 8 9 10\n1.5 2.25 RBC\n");
    ss_label_list_t l = {0};
    size_t bad = 0;
    CHECK(!ss_labels_read_points(at("p.txt"), &l, &bad), "read: %s", ss_error_last());
    CHECK(l.n == 3 && bad == 4, "%zu labels, %zu bad; want 3, 4", l.n, bad);
    if (l.n == 3) {
        CHECK(l.v[0].x == 27 && l.v[0].y == 242 && !strcmp(l.v[0].cls, "0") && l.v[0].line == 1,
              "first label");
        CHECK(l.v[1].x == 65 && !strcmp(l.v[1].cls, "10") && l.v[1].line == 3, "second label");
        CHECK(l.v[2].x == 1.5 && l.v[2].y == 2.25 && !strcmp(l.v[2].cls, "RBC") && l.v[2].line == 8,
              "third label");
    }
    ss_label_list_free(&l);
    CHECK(ss_labels_read_points(at("missing.txt"), &l, &bad) == -1 &&
              strstr(ss_error_last(), "missing.txt"),
          "a missing label file must be an error naming it");
    ss_error_clear();
}

static void test_voc(void)
{
    write_file("v.xml",
               "<?xml version=\"1.0\"?>\n"
               "<annotation>\n"
               "  <filename>a.jpg</filename>\n"
               "  <object><name>RBC</name>\n"
               "    <bndbox><xmin>11</xmin><ymin>21</ymin><xmax>31</xmax><ymax>41</ymax></bndbox>\n"
               "    <part><name>hand</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax>"
               "<ymax>2</ymax></bndbox></part>\n"
               "  </object>\n"
               "  <object><name>WBC</name><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>5</xmax>"
               "<ymax>9</ymax></bndbox></object>\n"
               "  <object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>3</xmax><ymax>3</ymax>"
               "</bndbox></object>\n"
               "  <object><name>Platelets</name><bndbox><xmin>a</xmin><ymin>1</ymin>"
               "<xmax>3</xmax><ymax>3</ymax></bndbox></object>\n"
               "  <object>\n    <name> WBC </name><difficult>1</difficult>\n"
               "    <bndbox><xmin>100</xmin><ymin>50</ymin><xmax>201</xmax><ymax>151</ymax>"
               "</bndbox>\n  </object>\n"
               "</annotation>\n");
    ss_label_list_t l = {0};
    size_t bad = 0;
    CHECK(!ss_labels_read_voc(at("v.xml"), &l, &bad), "read: %s", ss_error_last());
    CHECK(l.n == 2 && bad == 3, "%zu labels, %zu bad; want 2, 3", l.n, bad);
    if (l.n == 2) {
        /* VOC is 1-based: the box 11..31 is centred on 0-based pixel 20 */
        CHECK(l.v[0].x == 20 && l.v[0].y == 30 && !strcmp(l.v[0].cls, "RBC") && l.v[0].line == 4,
              "RBC at (%g, %g) line %d", l.v[0].x, l.v[0].y, l.v[0].line);
        CHECK(l.v[1].x == 149.5 && l.v[1].y == 99.5 && !strcmp(l.v[1].cls, "WBC") &&
                  l.v[1].line == 11,
              "WBC at (%g, %g) line %d", l.v[1].x, l.v[1].y, l.v[1].line);
    }
    ss_label_list_free(&l);
    write_file("broken.xml", "<annotation>\n<object><name>RBC</name>\n</annotation>\n");
    CHECK(ss_labels_read_voc(at("broken.xml"), &l, &bad) == -1 && l.n == 0 &&
              strstr(ss_error_last(), "broken.xml") && strstr(ss_error_last(), "line 3"),
          "malformed XML: %s", ss_error_last());
    ss_error_clear();
    write_file("svg.xml", "<svg><object/></svg>");
    CHECK(ss_labels_read_voc(at("svg.xml"), &l, &bad) == -1 &&
              strstr(ss_error_last(), "not a Pascal VOC annotation"),
          "a non-VOC root: %s", ss_error_last());
    ss_error_clear();
}

static void test_csv(void)
{
    write_file("c.csv", "class, X ,image,y,note\n"
                        "0,10,a.png,20,first\n"
                        "\"1\",11,\"dir,with comma/b.png\",21,\n"
                        "2,zz,a.png,3,\n"
                        "0,5,,5,\n"
                        "3,1,a.png\n");
    ss_label_list_t l = {0};
    size_t bad = 0;
    CHECK(!ss_labels_read_csv(at("c.csv"), &l, &bad), "read: %s", ss_error_last());
    CHECK(l.n == 2 && bad == 3, "%zu labels, %zu bad; want 2, 3", l.n, bad);
    if (l.n == 2) {
        CHECK(l.v[0].x == 10 && l.v[0].y == 20 && !strcmp(l.v[0].image, "a.png"), "row 2");
        CHECK(!strcmp(l.v[1].image, "dir,with comma/b.png") && !strcmp(l.v[1].cls, "1") &&
                  l.v[1].line == 3,
              "row 3 (quoted)");
    }
    ss_label_list_free(&l);
    write_file("noy.csv", "image,x,class\na.png,1,0\n");
    CHECK(ss_labels_read_csv(at("noy.csv"), &l, &bad) == -1 && strstr(ss_error_last(), "'y'") &&
              strstr(ss_error_last(), "noy.csv:1"),
          "header without y: %s", ss_error_last());
    ss_error_clear();
    ss_labels_format_t f;
    CHECK(ss_labels_format_parse("yolo", &f) == -1 && strstr(ss_error_last(), "'yolo'"),
          "unknown format");
    ss_error_clear();
}

/* R = 5x, G = 6y, B = x + y: each pixel names itself */
static void save_coded(const char *name)
{
    static uint8_t px[H][W][3];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            px[y][x][0] = (uint8_t)(5 * x), px[y][x][1] = (uint8_t)(6 * y),
            px[y][x][2] = (uint8_t)(x + y);
    CHECK(!ss_image_save_rgb(at(name), &px[0][0][0], W, H), "save %s", name);
}

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* The crop at rel (under out) is the S×S window centred on pixel (cx, cy), edges repeated. */
static void check_crop(const char *out, const char *rel, int cx, int cy)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", out, rel);
    uint8_t *rgb = NULL;
    int w, h;
    CHECK(!ss_image_load_rgb(p, &rgb, &w, &h), "crop %s: %s", rel, ss_error_last());
    if (!rgb) return;
    CHECK(w == S && h == S, "crop %s is %dx%d", rel, w, h);
    int wrong = 0;
    for (int y = 0; y < S && w == S && h == S; y++)
        for (int x = 0; x < S; x++) {
            const uint8_t *q = rgb + ((size_t)y * S + x) * 3;
            int sx = clampi(cx - S / 2 + x, 0, W - 1), sy = clampi(cy - S / 2 + y, 0, H - 1);
            wrong += q[0] != 5 * sx || q[1] != 6 * sy;
        }
    CHECK(wrong == 0, "crop %s: %d pixels not from the window centred on (%d, %d)", rel, wrong, cx,
          cy);
    CHECK(rgb[((S / 2) * S + S / 2) * 3] == 5 * cx && rgb[((S / 2) * S + S / 2) * 3 + 1] == 6 * cy,
          "crop %s: centre pixel", rel);
    free(rgb);
}

static int exists(const char *p)
{
    struct stat st;
    return !stat(p, &st);
}

static void make_inputs(void)
{
    const char *dirs[] = {"in1", "in1/img", "in1/lab", "in2", "in2/img", "in2/lab"};
    for (int i = 0; i < 6; i++)
        mkdir(at(dirs[i]), 0777);
    save_coded("in1/img/a.png");
    write_file("in1/lab/a.txt", "25 20 0\n2 20 1\n49 39 0\n60 10 0\noops\n\n10 10 x/y\n"
                                "20.4 15.6 1\n");
    write_file("in1/img/bad.jpg", "not a picture");
    write_file("in1/lab/bad.txt", "5 5 0\n");
    save_coded("in1/img/nolabel.png");
    write_file("in1/lab/orphan.txt", "5 5 0\n");
    save_coded("in1/img/dup.png"); /* two images for one label file: which one is meant? */
    save_coded("in1/img/dup.jpg");
    write_file("in1/lab/dup.txt", "5 5 0\n");
    save_coded("in2/img/a.png"); /* a PNG named .jpg, as Chula's 722.jpg */
    CHECK(!rename(at("in2/img/a.png"), at("in2/img/a.jpg")), "rename");
    write_file("in2/lab/a.txt", "30 30 1\n");
    save_coded("in2/img/e.png");
    write_file("in2/lab/e.txt", "\n"); /* an image with no labelled cell */
}

static void test_crop(void)
{
    make_inputs();
    ss_labels_input_t in[2] = {{SS_LABELS_POINTS, at("in1/img"), at("in1/lab")},
                               {SS_LABELS_POINTS, at("in2/img"), at("in2/lab")}};
    ss_crop_opts_t o = {.size = S, .border = SS_BORDER_PAD};
    ss_crop_report_t r;
    char out[512];
    snprintf(out, sizeof out, "%s/out", dir);
    CHECK(!ss_cells_from_labels(in, 2, out, &o, 1, &r), "run: %s", ss_error_last());
    CHECK(r.cells_written == 5 && r.cells_padded == 2 && r.cells_skipped == 0,
          "written %zu padded %zu skipped %zu; want 5, 2, 0", r.cells_written, r.cells_padded,
          r.cells_skipped);
    CHECK(r.lines_malformed == 3 && r.images_unreadable == 1 && r.images_unlabelled == 1 &&
              r.labels_orphan == 2 && r.images == 4 && r.images_empty == 1,
          "malformed %zu unreadable %zu unlabelled %zu orphans %zu images %zu (%zu empty)",
          r.lines_malformed, r.images_unreadable, r.images_unlabelled, r.labels_orphan, r.images,
          r.images_empty);
    CHECK(r.n_classes == 2 && !strcmp(r.classes[0], "0") && r.per_class[0] == 2 &&
              r.per_class[1] == 3,
          "per class");
    ss_crop_report_free(&r);
    /* both inputs hold an image "a": the sources are numbered by input */
    check_crop(out, "0/1-a_0.png", 25, 20);
    check_crop(out, "1/1-a_1.png", 2, 20);
    check_crop(out, "0/1-a_2.png", 49, 39);
    check_crop(out, "1/1-a_4.png", 20, 16);
    check_crop(out, "1/2-a_0.png", 30, 30);
    char p[600];
    snprintf(p, sizeof p, "%s/0/.1-a_0.png", out);
    CHECK(!exists(p), "a temporary crop was left behind");
    snprintf(p, sizeof p, "%s/cells.csv.tmp", out);
    CHECK(!exists(p), "cells.csv.tmp was left behind");

    /* cells.csv */
    snprintf(p, sizeof p, "%s/cells.csv", out);
    FILE *f = fopen(p, "r");
    CHECK(f != NULL, "no cells.csv");
    char line[1024];
    int rows = 0, padded = 0;
    if (f && fgets(line, sizeof line, f))
        CHECK(!strcmp(line, "path,class,source,image,x,y,padded\n"), "header %s", line);
    while (f && fgets(line, sizeof line, f)) {
        rows++;
        padded += line[strlen(line) - 2] == '1';
        if (!strncmp(line, "1/1-a_4.png,", 12))
            CHECK(strstr(line, ",1,1-a,") && strstr(line, "/in1/img/a.png,20.4,15.6,0\n"), "row %s",
                  line);
    }
    if (f) fclose(f);
    CHECK(rows == 5 && padded == 2, "cells.csv: %d rows, %d padded", rows, padded);

    /* read back: every item knows its source image */
    ss_cell_folder_t *cf = NULL;
    CHECK(!ss_cell_folder_open(out, &cf), "open %s: %s", out, ss_error_last());
    CHECK(cf && ss_cell_sources_count(ss_cell_folder_sources(cf)) == 2, "two sources");
    ss_cell_item_t it;
    int items = 0;
    while (cf && ss_cell_folder_next(cf, &it) == 1) {
        items++;
        int second = strstr(it.path, "/2-a_") != NULL;
        CHECK(it.source && !strcmp(it.source, second ? "2-a" : "1-a") && it.source_index == second,
              "%s: source %s (%d)", it.path, it.source ? it.source : "NULL", it.source_index);
    }
    CHECK(items == 5, "%d items", items);
    ss_cell_folder_destroy(&cf);

    /* the same output again: refused, it would mix two runs */
    CHECK(ss_cells_from_labels(in, 2, out, &o, 1, &r) == -1 &&
              strstr(ss_error_last(), "not empty") && strstr(ss_error_last(), out),
          "a non-empty output folder: %s", ss_error_last());
    ss_error_clear();
    ss_crop_report_free(&r);

    /* skip at the border; only class 1 */
    o.border = SS_BORDER_SKIP;
    o.classes = "1";
    snprintf(out, sizeof out, "%s/out-skip", dir);
    CHECK(!ss_cells_from_labels(in, 2, out, &o, 1, &r), "run: %s", ss_error_last());
    CHECK(r.cells_written == 2 && r.cells_skipped == 1 && r.cells_unselected == 3 &&
              r.n_classes == 1,
          "skip run: written %zu skipped %zu unselected %zu", r.cells_written, r.cells_skipped,
          r.cells_unselected);
    ss_crop_report_free(&r);

    /* a missing labels folder stops the run before anything is written */
    in[1].labels = at("in2/nothing");
    snprintf(out, sizeof out, "%s/out-missing", dir);
    CHECK(ss_cells_from_labels(in, 2, out, &o, 1, &r) == -1 &&
              strstr(ss_error_last(), "in2/nothing") && !exists(out),
          "missing labels folder: %s", ss_error_last());
    ss_error_clear();
    ss_crop_report_free(&r);
}

static void test_sources(void)
{
    mkdir(at("cf"), 0777);
    mkdir(at("cf/N"), 0777);
    save_coded("cf/N/x.png");
    save_coded("cf/N/y.png");
    write_file("cf/cells.csv", "path,source\n./N/x.png,img9\n");
    ss_cell_folder_t *cf = NULL;
    CHECK(!ss_cell_folder_open(at("cf"), &cf), "open: %s", ss_error_last());
    ss_cell_item_t it;
    for (int i = 0; cf && ss_cell_folder_next(cf, &it) == 1; i++)
        CHECK(i == 0 ? it.source_index == 0 && !strcmp(it.source, "img9")
                     : it.source_index == -1 && !it.source,
              "item %d source", i);
    ss_cell_folder_destroy(&cf);
    write_file("cf/cells.csv", "path,class\nN/x.png,N\n"); /* says nothing about sources */
    CHECK(!ss_cell_folder_open(at("cf"), &cf) && !ss_cell_folder_sources(cf),
          "a cells.csv without a source column: %s", ss_error_last());
    ss_cell_folder_destroy(&cf);
    write_file("cf/cells.csv", "path,source\nN/x.png,a\nN/y.png,b\nN/x.png,c\n");
    CHECK(ss_cell_folder_open(at("cf"), &cf) == -1 && strstr(ss_error_last(), "cells.csv:4") &&
              strstr(ss_error_last(), "twice"),
          "a path listed twice: %s", ss_error_last());
    ss_error_clear();
    unlink(at("cf/cells.csv"));
    CHECK(!ss_cell_folder_open(at("cf"), &cf) && !ss_cell_folder_sources(cf), "no cells.csv");
    ss_cell_folder_destroy(&cf);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_points();
    test_voc();
    test_csv();
    test_crop();
    test_sources();
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (!check_failures && system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    return check_exit("cells_labels.unit");
}
