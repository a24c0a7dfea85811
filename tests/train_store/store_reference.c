/* train.store: the reference cells — every field a function of the index (h5py_store.py mirrors
 * it) — and the writer and checker of a reference store, shared by the cases. */
#define _XOPEN_SOURCE 700
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "slidestream/error.h"
#include "slidestream/train_store.h"

#include "../check.h"
#include "store_test.h"

/* ---- the reference cells: every field a function of the index (h5py_read.py mirrors it) -- */

/* Pixel (y, x, c) = (7 i + 3 y + 5 x + 11 c) mod 256, and the first four bytes carry i
 * (little-endian), so two crops never look alike. */
void make_crop(int64_t i, int C, uint8_t *out)
{
    for (int y = 0; y < C; y++)
        for (int x = 0; x < C; x++)
            for (int c = 0; c < 3; c++)
                out[((size_t)y * C + x) * 3 + c] =
                    (uint8_t)((7 * i + 3 * y + 5 * x + 11 * c) & 255);
    for (int b = 0; b < 4 && b < C * C * 3; b++)
        out[b] = (uint8_t)(i >> (8 * b));
}

uint32_t ref_bag(int64_t i)
{
    return 100 + (uint32_t)(i % 7) * 10; /* bags 100 .. 160, interleaved */
}

/* Half the cells come from three slides, the other half each from its own image file. */
void ref_info(int64_t i, int64_t n, char *source, size_t size, ss_crop_info_t *info)
{
    if (i < n / 2)
        snprintf(source, size, "slide_%d", (int)(i % 3));
    else
        snprintf(source, size, "cells/img_%05lld.png", (long long)i);
    *info = (ss_crop_info_t){.bag_id = ref_bag(i),
                             .label = (int32_t)(i % 3) - 1,
                             .cell_id = 0x100000000ull * (uint64_t)(i % 5) + (uint64_t)i,
                             .x = i * 17 - 500,
                             .y = i * 3 + 1000000000000ll,
                             .source = source};
}

const char *const splits[3] = {"train", "val", "test"};

/* Bags 100..140 recorded before the cells, 160 and 999 (no cells) after, 150 never (its entry
 * comes from its cells): the table order is 100, 110, 120, 130, 140, 150, 160, 999. */
void add_bags(ss_crop_writer_t *w, int after)
{
    char name[32];
    for (uint32_t id = after ? 160 : 100; id <= (after ? 160u : 140u); id += 10) {
        snprintf(name, sizeof name, "bag-%u", id);
        CHECK(ss_crop_writer_add_bag(w, id, name, (int)(id / 10) % 2, splits[id / 10 % 3]) == 0,
              "add_bag %u: %s", id, ss_error_buffer());
    }
    if (after) CHECK(ss_crop_writer_add_bag(w, 999, "empty bag", 0, NULL) == 0, "add_bag 999");
}

/* The reference store of n cells of side C at path; 0 on success. */
int write_ref(const char *path, int64_t n, int C)
{
    ss_crop_writer_t *w = ss_crop_writer_new(path, C);
    if (!w) return -1;
    add_bags(w, 0);
    uint8_t *crop = malloc((size_t)C * C * 3);
    char source[64];
    ss_crop_info_t info;
    int rc = 0;
    for (int64_t i = 0; i < n && !rc; i++) {
        make_crop(i, C, crop);
        ref_info(i, n, source, sizeof source, &info);
        rc = ss_crop_writer_add(w, crop, C, &info);
    }
    free(crop);
    if (rc) {
        ss_crop_writer_abort(&w);
        return -1;
    }
    CHECK(ss_crop_writer_count(w) == n, "writer count %lld", (long long)ss_crop_writer_count(w));
    add_bags(w, 1);
    return ss_crop_writer_finish(&w);
}

/* Checks every field, the bag table and every crop of a reference store. */
void check_ref(const char *path, int64_t n, int C)
{
    ss_crop_store_t *s = ss_crop_store_open(path, C);
    CHECK(s != NULL, "open %s: %s", path, ss_error_buffer());
    if (!s) return;
    CHECK(ss_crop_store_count(s) == n && ss_crop_store_crop_size(s) == C, "count %lld size %d",
          (long long)ss_crop_store_count(s), ss_crop_store_crop_size(s));
    CHECK(!strcmp(ss_crop_store_path(s), path), "path");

    static const uint32_t order[] = {100, 110, 120, 130, 140, 150, 160, 999};
    CHECK(ss_crop_store_nbags(s) == 8, "nbags %d", ss_crop_store_nbags(s));
    for (int b = 0; b < ss_crop_store_nbags(s) && b < 8; b++) {
        uint32_t id = ss_crop_store_bag_id(s, b);
        CHECK(id == order[b], "bag %d id %u", b, id);
        char name[32];
        snprintf(name, sizeof name, "bag-%u", id);
        if (id == 150) {
            CHECK(!strcmp(ss_crop_store_bag_name(s, b), "") &&
                      ss_crop_store_bag_label(s, b) == -1 &&
                      !strcmp(ss_crop_store_bag_split(s, b), ""),
                  "implied bag 150: '%s' %d", ss_crop_store_bag_name(s, b),
                  ss_crop_store_bag_label(s, b));
        } else if (id == 999) {
            CHECK(!strcmp(ss_crop_store_bag_name(s, b), "empty bag") &&
                      !strcmp(ss_crop_store_bag_split(s, b), ""),
                  "bag 999");
        } else {
            CHECK(!strcmp(ss_crop_store_bag_name(s, b), name) &&
                      ss_crop_store_bag_label(s, b) == (int)(id / 10) % 2 &&
                      !strcmp(ss_crop_store_bag_split(s, b), splits[id / 10 % 3]),
                  "bag %u: '%s' %d '%s'", id, ss_crop_store_bag_name(s, b),
                  ss_crop_store_bag_label(s, b), ss_crop_store_bag_split(s, b));
        }
        /* bag cells: ascending, exactly those with this bag */
        int64_t m = -1;
        const int64_t *cells = ss_crop_store_bag_cells(s, b, &m);
        int64_t want = 0;
        for (int64_t i = 0; i < n; i++)
            want += ref_bag(i) == id;
        CHECK(m == want, "bag %u has %lld cells, want %lld", id, (long long)m, (long long)want);
        for (int64_t k = 0; k < m && k < want; k++) {
            CHECK(ref_bag(cells[k]) == id && (k == 0 || cells[k] > cells[k - 1]),
                  "bag %u cell %lld = %lld", id, (long long)k, (long long)cells[k]);
            if (check_failures > 20) break;
        }
    }

    size_t cb = (size_t)C * C * 3;
    uint8_t *want = malloc(cb), *got = malloc(cb);
    char source[64];
    ss_crop_info_t ref, info;
    for (int64_t i = 0; i < n && check_failures < 20; i++) {
        ref_info(i, n, source, sizeof source, &ref);
        ss_crop_store_info(s, i, &info);
        CHECK(info.bag_id == ref.bag_id && info.label == ref.label && info.cell_id == ref.cell_id &&
                  info.x == ref.x && info.y == ref.y && !strcmp(info.source, ref.source),
              "cell %lld: bag %u label %d id %llu (%lld, %lld) '%s'", (long long)i, info.bag_id,
              info.label, (unsigned long long)info.cell_id, (long long)info.x, (long long)info.y,
              info.source);
        int64_t x, y;
        ss_crop_store_centre(s, i, &x, &y);
        CHECK(ss_crop_store_label(s, i) == ref.label && ss_crop_store_bag(s, i) == ref.bag_id &&
                  ss_crop_store_cell_id(s, i) == ref.cell_id && x == ref.x && y == ref.y &&
                  !strcmp(ss_crop_store_source(s, i), ref.source) &&
                  ss_crop_store_bag_id(s, ss_crop_store_bag_index(s, i)) == ref.bag_id,
              "accessors of cell %lld", (long long)i);
        make_crop(i, C, want);
        CHECK(ss_crop_store_read(s, i, got) == 0, "read %lld: %s", (long long)i, ss_error_buffer());
        CHECK(!memcmp(got, want, cb), "crop %lld differs", (long long)i);
    }

    /* read_many: shuffled, with repeats, out[k] = crop idx[k] */
    if (n > 0) {
        enum { M = 97 };
        int64_t idx[M];
        uint64_t r = 12345;
        for (int k = 0; k < M; k++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            idx[k] = (int64_t)((r >> 33) % (uint64_t)n);
        }
        idx[5] = idx[60]; /* a repeat, apart */
        idx[7] = idx[8];  /* and adjacent */
        uint8_t *many = malloc(M * cb);
        CHECK(ss_crop_store_read_many(s, idx, M, many) == 0, "read_many: %s", ss_error_buffer());
        for (int k = 0; k < M; k++) {
            make_crop(idx[k], C, want);
            CHECK(!memcmp(many + (size_t)k * cb, want, cb), "read_many[%d] = crop %lld differs", k,
                  (long long)idx[k]);
        }
        free(many);
    }
    ss_error_clear();
    CHECK(ss_crop_store_read(s, n, got) == -1 && strstr(ss_error_last(), "out of range"),
          "read past the end: %s", ss_error_last());
    int64_t bad_idx[2] = {0, -1};
    CHECK(ss_crop_store_read_many(s, bad_idx, 2, got) == -1 &&
              strstr(ss_error_last(), "crop -1 out of range"),
          "read_many -1: %s", ss_error_last());
    ss_error_clear();
    free(want);
    free(got);
    ss_crop_store_close(&s);
    CHECK(s == NULL, "close NULLs the pointer");
}

int store_reference_failures(void)
{
    return check_failures;
}
