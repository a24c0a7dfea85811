/* cells.unit — checks the cell detector and its helpers on a painted smear whose truth is known:
 * lymphocytes, a three-lobed neutrophil (one cell), two touching nuclei (two cells), red cells
 * (one touching pair), platelets, on pale glass at 0.25 µm/px. Also: tile ownership (tiles with
 * overlapping margins give each cell exactly once), crops, GeoJSON, gallery, and the
 * pre-cropped cell-folder stream (sorted, a PNG named .jpg, a corrupt file skipped).
 * Exit status 0 = all checks passed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slidestream/cells.h"
#include "slidestream/error.h"

#include "../check.h"


#define W 800
#define H 600
#define MPP 0.25

static uint8_t img[H][W][3];
static uint32_t rng = 12345;

static int noise(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (int)(rng >> 28) - 8; /* -8..7 */
}

static void disc(double cx, double cy, double r, const uint8_t c[3])
{
    for (int y = (int)(cy - r - 1); y <= (int)(cy + r + 1); y++)
        for (int x = (int)(cx - r - 1); x <= (int)(cx + r + 1); x++)
            if (x >= 0 && y >= 0 && x < W && y < H && hypot(x - cx, y - cy) <= r)
                memcpy(img[y][x], c, 3);
}

typedef struct {
    double x, y, r;
} truth_t;

static truth_t nucleated[32];
static int n_nucleated;
static int n_red;

static void paint(void)
{
    static const uint8_t glass[3] = {226, 222, 230}, rbc[3] = {214, 138, 150},
                         pallor[3] = {222, 175, 185}, nuc[3] = {84, 50, 140},
                         cyto[3] = {176, 184, 222}, ncyto[3] = {216, 200, 216},
                         plt[3] = {160, 110, 180};
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            memcpy(img[y][x], glass, 3);
    double um = 1.0 / MPP;
    /* Red cells on a loose grid, leaving room for the white cells. */
    for (int gy = 0; gy < 6; gy++)
        for (int gx = 0; gx < 9; gx++) {
            double x = 45 + gx * 88, y = 45 + gy * 100;
            if ((gx % 3 == 1) && (gy % 2 == 1)) continue; /* white-cell slots */
            disc(x, y, 3.75 * um, rbc);
            disc(x, y, 1.2 * um, pallor);
            n_red++;
        }
    /* A touching red pair (centres 6.5 µm apart). */
    disc(140, 560, 3.75 * um, rbc);
    disc(140 + 6.5 * um, 560, 3.75 * um, rbc);
    n_red += 2;
    /* White-cell slots: x = 133, 397, 661 at y = 145, 345, 545 (545 row has no slots). */
    int k = 0;
    for (int gy = 1; gy < 6; gy += 2)
        for (int gx = 1; gx < 9; gx += 3) {
            double x = 45 + gx * 88, y = 45 + gy * 100;
            if (gy == 5) continue;
            if (k == 0) { /* neutrophil: three lobes in a pale cytoplasm */
                disc(x, y, 6 * um, ncyto);
                for (int l = 0; l < 3; l++) {
                    double a = l * 2.0944;
                    disc(x + 2.6 * um * cos(a), y + 2.6 * um * sin(a), 1.7 * um, nuc);
                }
                nucleated[n_nucleated++] = (truth_t){x, y, 6 * um};
            } else if (k == 1) { /* two lymphocytes pressed together: nuclei 0.3 µm apart,
                                    closer than the lobe gap, so only the split separates them */
                disc(x - 3.75 * um, y, 5 * um, cyto);
                disc(x + 3.75 * um, y, 5 * um, cyto);
                disc(x - 3.75 * um, y, 3.6 * um, nuc);
                disc(x + 3.75 * um, y, 3.6 * um, nuc);
                nucleated[n_nucleated++] = (truth_t){x - 3.75 * um, y, 3.6 * um};
                nucleated[n_nucleated++] = (truth_t){x + 3.75 * um, y, 3.6 * um};
            } else {
                disc(x, y, 5 * um, cyto);
                disc(x, y, 3.5 * um, nuc);
                nucleated[n_nucleated++] = (truth_t){x, y, 5 * um};
            }
            k++;
        }
    /* Platelets: small and purple, to be rejected as nucleated cells. */
    disc(90, 300, 1.2 * um, plt);
    disc(500, 95, 1.0 * um, plt);
    disc(720, 400, 1.3 * um, plt);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++) {
                int v = img[y][x][c] + noise();
                img[y][x][c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
}

/* One-to-one greedy match of truth to nucleated detections within the truth radius. */
static int count_matched(const ss_cell_t *c, size_t n)
{
    int used[256] = {0}, m = 0;
    for (int i = 0; i < n_nucleated; i++)
        for (size_t j = 0; j < n && j < 256; j++) {
            if (used[j] || c[j].kind != SS_CELL_NUCLEATED) continue;
            if (hypot(c[j].x - nucleated[i].x, c[j].y - nucleated[i].y) <= nucleated[i].r) {
                used[j] = 1;
                m++;
                break;
            }
        }
    return m;
}

static void test_nucleated(void)
{
    ss_cells_params_t p;
    ss_cells_params_default(&p, SS_CELLS_NUCLEATED);
    ss_cell_list_t l = {0};
    CHECK(!ss_cells_detect(&img[0][0][0], W, H, MPP, &p, &l), "detect: %s", ss_error_last());
    int m = count_matched(l.cells, l.n);
    for (size_t i = 0; i < l.n; i++)
        printf("  cell (%.0f, %.0f) nucleus %.1f um2\n", l.cells[i].x, l.cells[i].y,
               l.cells[i].nucleus_area * MPP * MPP);
    printf("nucleated: truth %d, detections %zu, matched %d\n", n_nucleated, l.n, m);
    CHECK(m == n_nucleated && (int)l.n == n_nucleated,
          "expected exactly the %d nucleated cells (got %zu, matched %d)", n_nucleated, l.n, m);
    for (size_t i = 1; i < l.n; i++)
        CHECK(l.cells[i - 1].y <= l.cells[i].y, "cells not sorted by y");
    ss_cell_list_free(&l);
}

static void test_all(void)
{
    ss_cells_params_t p;
    ss_cells_params_default(&p, SS_CELLS_ALL);
    ss_cell_list_t l = {0};
    CHECK(!ss_cells_detect(&img[0][0][0], W, H, MPP, &p, &l), "detect all: %s", ss_error_last());
    int red = 0, nuc = 0;
    for (size_t i = 0; i < l.n; i++)
        red += l.cells[i].kind == SS_CELL_RED, nuc += l.cells[i].kind == SS_CELL_NUCLEATED;
    printf("all cells: red truth %d, red detections %d, nucleated detections %d\n", n_red, red,
           nuc);
    CHECK(red == n_red, "expected %d red cells, got %d", n_red, red);
    CHECK(nuc >= n_nucleated - 1, "white cells missing in --cells all (%d)", nuc);
    ss_cell_list_free(&l);
}

/* Tiles of 300 px whose cores form a 200 px grid partition the picture; each cell must come
 * from exactly one tile and match the whole-picture detection. */
static void test_tiles(void)
{
    ss_cells_params_t p;
    ss_cells_params_default(&p, SS_CELLS_NUCLEATED);
    ss_cell_list_t whole = {0}, tiled = {0};
    CHECK(!ss_cells_calibrate(&img[0][0][0], W, H, &p), "calibrate");
    CHECK(!ss_cells_detect(&img[0][0][0], W, H, MPP, &p, &whole), "detect");
    const int T = 300, core = 200, margin = 50;
    uint8_t *tile = malloc((size_t)T * T * 3);
    for (int cy = 0; cy < H; cy += core)
        for (int cx = 0; cx < W; cx += core) {
            int x0 = cx - margin, y0 = cy - margin;
            for (int y = 0; y < T; y++)
                for (int x = 0; x < T; x++) {
                    int sx = x0 + x, sy = y0 + y;
                    uint8_t *d = tile + ((size_t)y * T + x) * 3;
                    if (sx < 0 || sy < 0 || sx >= W || sy >= H)
                        memset(d, 255, 3);
                    else
                        memcpy(d, img[sy][sx], 3);
                }
            ss_cells_tile_t t = {x0, y0, 1.0, cx, cy, core, core};
            CHECK(!ss_cells_detect_tile(tile, T, T, MPP, &t, &p, &tiled), "tile");
        }
    free(tile);
    int dup = 0, missing = 0;
    for (size_t i = 0; i < whole.n; i++) {
        int hits = 0;
        for (size_t j = 0; j < tiled.n; j++)
            hits +=
                hypot(whole.cells[i].x - tiled.cells[j].x, whole.cells[i].y - tiled.cells[j].y) < 2;
        dup += hits > 1, missing += hits == 0;
    }
    printf("tiles: whole picture %zu cells, tiles %zu cells, duplicated %d, missing %d\n", whole.n,
           tiled.n, dup, missing);
    CHECK(tiled.n == whole.n && !dup && !missing, "tiling changed the cells");
    /* A scaled tile reports level-0 coordinates: tile pixel (i) ↦ x0 + (i + ½)·s − ½. */
    ss_cells_tile_t t2 = {1000, 2000, 2.0, 0, 0, 100000, 100000};
    double px, py;
    ss_cells_tile_to_pixels(&t2, 1000 + 10.5 * 2 - 0.5, 2000 + 4.5 * 2 - 0.5, &px, &py);
    CHECK(fabs(px - 10) < 1e-9 && fabs(py - 4) < 1e-9, "tile_to_pixels (%g, %g)", px, py);
    ss_cell_list_free(&whole);
    ss_cell_list_free(&tiled);
}

static void test_crop_and_pictures(const char *dir)
{
    uint8_t saved[3];
    memcpy(saved, img[100][200], 3);
    img[100][200][0] = 1, img[100][200][1] = 2, img[100][200][2] = 3;
    uint8_t *crop = malloc(96 * 96 * 3 * 5);
    ss_cells_crop(&img[0][0][0], W, H, 200, 100, 96, crop);
    CHECK(!memcmp(crop + (48 * 96 + 48) * 3, "\1\2\3", 3), "crop is not centred");
    memcpy(img[100][200], saved, 3);
    ss_cells_crop(&img[0][0][0], W, H, 0, 0, 96, crop + 96 * 96 * 3);
    CHECK(!memcmp(crop + 96 * 96 * 3, img[0][0], 3),
          "crop outside the picture must repeat the edge");
    for (int i = 2; i < 5; i++)
        ss_cells_crop(&img[0][0][0], W, H, 100 * i, 300, 96, crop + (size_t)i * 96 * 96 * 3);
    char path[1024];
    snprintf(path, sizeof path, "%s/gallery.png", dir);
    CHECK(!ss_cells_gallery_save(path, crop, 5, 96, 4), "gallery: %s", ss_error_last());
    uint8_t *back;
    int w, h;
    CHECK(!ss_image_load_rgb(path, &back, &w, &h), "gallery reload");
    CHECK(w == 4 * 98 + 2 && h == 2 * 98 + 2, "gallery size %dx%d", w, h);
    free(back);
    free(crop);

    ss_cells_params_t p;
    ss_cells_params_default(&p, SS_CELLS_NUCLEATED);
    ss_cell_list_t l = {0};
    ss_cells_detect(&img[0][0][0], W, H, MPP, &p, &l);
    uint8_t *ov = malloc(sizeof img);
    memcpy(ov, img, sizeof img);
    ss_cells_draw_overlay(ov, W, H, l.cells, l.n, 1.0);
    CHECK(memcmp(ov, img, sizeof img) != 0, "overlay drew nothing");
    snprintf(path, sizeof path, "%s/overlay.png", dir);
    CHECK(!ss_image_save_rgb(path, ov, W, H), "overlay save: %s", ss_error_last());
    free(ov);

    snprintf(path, sizeof path, "%s/cells.geojson", dir);
    FILE *f = fopen(path, "w");
    int first = 1;
    CHECK(!ss_geojson_begin(f) &&
              !ss_geojson_add_cells(f, l.cells, l.n, MPP, "pa\"int\".png", &first) &&
              !ss_geojson_end(f),
          "geojson");
    fclose(f);
    const char *py = getenv("SS_PYTHON");
    if (py && !access(py, X_OK)) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd,
                 "%s -c \"import json,sys; d=json.load(open(sys.argv[1])); f=d['features']; "
                 "assert d['type']=='FeatureCollection' and len(f)==%zu; "
                 "p=f[0]['properties']; assert p['objectType']=='detection' and "
                 "p['classification']['name']=='Nucleated' and p['measurements']['area_um2']>0; "
                 "r=f[0]['geometry']['coordinates'][0]; assert r[0]==r[-1]\" %s",
                 py, l.n, path);
        CHECK(system(cmd) == 0, "GeoJSON does not parse as expected (%s)", path);
    }
    ss_cell_list_free(&l);
}

static void test_folder(const char *dir)
{
    char root[1024], path[1200];
    snprintf(root, sizeof root, "%s/cellsets", dir);
    const char *dirs[] = {"", "/LYT", "/BLA", "/.hidden"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "mkdir -p '%s%s'", root, dirs[i]);
        if (system(path)) CHECK(0, "mkdir");
    }
    uint8_t px[8 * 6 * 3];
    memset(px, 90, sizeof px);
    snprintf(path, sizeof path, "%s/LYT/a.png", root);
    CHECK(!ss_image_save_rgb(path, px, 8, 6), "save");
    snprintf(path, sizeof path, "%s/BLA/b1.png", root);
    CHECK(!ss_image_save_rgb(path, px, 8, 6), "save");
    /* A PNG named .jpg (as Chula's 722.jpg): loaders must go by content. */
    snprintf(path, sizeof path, "%s/LYT/c.png", root);
    CHECK(!ss_image_save_rgb(path, px, 8, 6), "save");
    char to[1200];
    snprintf(to, sizeof to, "%s/LYT/c.jpg", root);
    rename(path, to);
    snprintf(path, sizeof path, "%s/LYT/bad.png", root);
    FILE *f = fopen(path, "w");
    fputs("not a picture", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/LYT/notes.txt", root);
    f = fopen(path, "w");
    fputs("ignored", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/.hidden/x.png", root);
    CHECK(!ss_image_save_rgb(path, px, 8, 6), "save");

    ss_cell_folder_t *cf;
    CHECK(!ss_cell_folder_open(root, &cf), "open folder: %s", ss_error_last());
    if (!cf) return;
    CHECK(ss_cell_folder_count(cf) == 4, "expected 4 images, got %zu", ss_cell_folder_count(cf));
    const char *want[] = {"BLA/b1.png", "LYT/a.png", "LYT/bad.png", "LYT/c.jpg"};
    int rcs[] = {1, 1, -1, 1};
    for (int i = 0; i < 4; i++) {
        ss_cell_item_t it;
        int r = ss_cell_folder_next(cf, &it);
        CHECK(r == rcs[i], "item %d: rc %d (%s)", i, r, ss_error_last());
        if (r < 0) {
            CHECK(strstr(ss_error_last(), "bad.png") != NULL, "error does not name the file: %s",
                  ss_error_last());
            ss_error_clear();
            continue;
        }
        CHECK(strstr(it.path, want[i]) != NULL, "item %d is %s, want %s", i, it.path, want[i]);
        CHECK(it.w == 8 && it.h == 6 && it.rgb[0] == 90, "item %d pixels", i);
        CHECK(!strncmp(it.class_code, want[i], 3), "item %d class %s", i, it.class_code);
    }
    ss_cell_item_t it;
    CHECK(ss_cell_folder_next(cf, &it) == 0, "stream does not end");
    ss_cell_folder_destroy(&cf);
    CHECK(cf == NULL, "destroy must clear the pointer");
    CHECK(ss_cell_folder_open("/nonexistent/cells", &cf) == -1 &&
              strstr(ss_error_last(), "/nonexistent/cells"),
          "missing folder error");
    ss_error_clear();
}

static void test_bad_input(void)
{
    ss_cell_list_t l = {0};
    CHECK(ss_cells_detect(&img[0][0][0], W, H, 0, NULL, &l) == -1, "mpp 0 accepted");
    CHECK(ss_cells_detect(&img[0][0][0], 0, H, MPP, NULL, &l) == -1, "empty image accepted");
    ss_error_clear();
    uint8_t *rgb;
    int w, h;
    CHECK(ss_image_load_rgb("/nonexistent.png", &rgb, &w, &h) == -1 &&
              strstr(ss_error_last(), "/nonexistent.png"),
          "missing image error must name it");
    ss_error_clear();
}

int main(void)
{
    char dir[] = "/tmp/ss_cells_testXXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    paint();
    test_nucleated();
    test_all();
    test_tiles();
    test_crop_and_pictures(dir);
    test_folder(dir);
    test_bad_input();
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    printf("%s (%d check_failures)\n", check_failures ? "FAILED" : "ok", check_failures);
    return check_failures ? 1 : 0;
}
