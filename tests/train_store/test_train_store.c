/* train.store.* tests: the HDF5 crop store (include/slidestream/train_store.h) — round trips,
 * the partial-file protocol (finish, abort, crash), crop-size mismatches, broken files as data,
 * junk anywhere in a store, write failures. One executable: argv[1] picks the case, argv[2] is a
 * scratch directory. `write-sample DIR` writes the store the h5py test reads, `read-foreign DIR`
 * reads the one h5py writes, and `bench DIR [N] [C]` measures random-read speed (not a test). */
#define _XOPEN_SOURCE 700 /* nftw, in ../scratch.h */
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
#include "../scratch.h"

static const char *pathf(const char *name)
{
    static char buf[4][1200];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", scratch, name);
    return buf[k];
}

static int exists(const char *p)
{
    return access(p, F_OK) == 0;
}

/* ---- the reference cells: every field a function of the index (h5py_read.py mirrors it) -- */

/* Pixel (y, x, c) = (7 i + 3 y + 5 x + 11 c) mod 256, and the first four bytes carry i
 * (little-endian), so two crops never look alike. */
static void make_crop(int64_t i, int C, uint8_t *out)
{
    for (int y = 0; y < C; y++)
        for (int x = 0; x < C; x++)
            for (int c = 0; c < 3; c++)
                out[((size_t)y * C + x) * 3 + c] =
                    (uint8_t)((7 * i + 3 * y + 5 * x + 11 * c) & 255);
    for (int b = 0; b < 4 && b < C * C * 3; b++)
        out[b] = (uint8_t)(i >> (8 * b));
}

static uint32_t ref_bag(int64_t i)
{
    return 100 + (uint32_t)(i % 7) * 10; /* bags 100 .. 160, interleaved */
}

/* Half the cells come from three slides, the other half each from its own image file. */
static void ref_info(int64_t i, int64_t n, char *source, size_t size, ss_crop_info_t *info)
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

static const char *const splits[] = {"train", "val", "test"};

/* Bags 100..140 recorded before the cells, 160 and 999 (no cells) after, 150 never (its entry
 * comes from its cells): the table order is 100, 110, 120, 130, 140, 150, 160, 999. */
static void add_bags(ss_crop_writer_t *w, int after)
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
static int write_ref(const char *path, int64_t n, int C)
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
static void check_ref(const char *path, int64_t n, int C)
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

/* ---- cases --------------------------------------------------------------------------- */

/* Many small crops (several block writes and a remainder), 96 px crops (blocks of a few MiB),
 * and an empty store. */
static void case_roundtrip(void)
{
    const char *p = pathf("small.h5");
    CHECK(write_ref(p, 3000, 24) == 0, "write: %s", ss_error_buffer());
    check_ref(p, 3000, 24);
    p = pathf("c96.h5");
    CHECK(write_ref(p, 400, 96) == 0, "write 96: %s", ss_error_buffer());
    check_ref(p, 400, 96);

    p = pathf("empty.h5");
    ss_crop_writer_t *w = ss_crop_writer_new(p, 32);
    CHECK(w && ss_crop_writer_finish(&w) == 0 && w == NULL, "empty: %s", ss_error_buffer());
    ss_crop_store_t *s = ss_crop_store_open(p, 32);
    CHECK(s && ss_crop_store_count(s) == 0 && ss_crop_store_nbags(s) == 0, "empty store: %s",
          ss_error_buffer());
    ss_crop_store_close(&s);

    /* one bag recorded twice: the same details are fine, different ones are refused */
    p = pathf("twice.h5");
    w = ss_crop_writer_new(p, 8);
    CHECK(w != NULL, "writer: %s", ss_error_buffer());
    if (!w) return;
    CHECK(ss_crop_writer_add_bag(w, 5, "a", 1, "train") == 0 &&
              ss_crop_writer_add_bag(w, 5, "a", 1, "train") == 0,
          "same bag twice");
    ss_error_clear();
    CHECK(ss_crop_writer_add_bag(w, 5, "a", 0, "train") == -1 &&
              strstr(ss_error_last(), "bag 5 added twice"),
          "conflicting bag: %s", ss_error_last());
    ss_crop_writer_abort(&w);
    ss_error_clear();
}

/* The store appears under its name only after finish; until then an older store at that path
 * stays intact and readable. */
static void case_finish(void)
{
    const char *p = pathf("store.h5"), *partial = pathf("store.h5.partial");
    CHECK(write_ref(p, 10, 16) == 0, "old store: %s", ss_error_buffer());
    ss_crop_writer_t *w = ss_crop_writer_new(p, 16);
    CHECK(w != NULL, "writer: %s", ss_error_buffer());
    if (!w) return;
    CHECK(!strcmp(ss_crop_writer_path(w), p), "writer path");
    CHECK(exists(partial), "the partial file exists while writing");
    uint8_t crop[16 * 16 * 3];
    for (int i = 0; i < 2500; i++) { /* past a few block writes */
        make_crop(i, 16, crop);
        ss_crop_info_t info = {.bag_id = 1, .label = 1, .cell_id = (uint64_t)i, .source = "s"};
        if (ss_crop_writer_add(w, crop, 16, &info)) {
            CHECK(0, "add: %s", ss_error_buffer());
            break;
        }
    }
    ss_crop_store_t *s = ss_crop_store_open(p, 16);
    CHECK(s && ss_crop_store_count(s) == 10, "old store still there before finish: %s",
          ss_error_buffer());
    ss_crop_store_close(&s);
    CHECK(ss_crop_writer_finish(&w) == 0 && w == NULL, "finish: %s", ss_error_buffer());
    CHECK(!exists(partial), "no partial file after finish");
    s = ss_crop_store_open(p, 16);
    CHECK(s && ss_crop_store_count(s) == 2500 && ss_crop_store_nbags(s) == 1,
          "new store after finish: %s", ss_error_buffer());
    ss_crop_store_close(&s);

    /* a fresh path: nothing under the name until finish */
    p = pathf("fresh.h5");
    w = ss_crop_writer_new(p, 16);
    CHECK(w != NULL, "writer: %s", ss_error_buffer());
    if (!w) return;
    CHECK(!exists(p), "%s exists before finish", p);
    CHECK(ss_crop_writer_finish(&w) == 0 && exists(p), "fresh finish: %s", ss_error_buffer());
}

/* abort deletes the partial file; so does a finish after a failure. A crashed writer leaves
 * only a .partial, which does not open as a store. */
static void case_abort(void)
{
    const char *p = pathf("aborted.h5"), *partial = pathf("aborted.h5.partial");
    ss_crop_writer_t *w = ss_crop_writer_new(p, 20);
    CHECK(w != NULL, "writer: %s", ss_error_buffer());
    if (!w) return;
    uint8_t crop[20 * 20 * 3];
    for (int i = 0; i < 3000; i++) {
        make_crop(i, 20, crop);
        ss_crop_info_t info = {.bag_id = (uint32_t)i / 100, .cell_id = (uint64_t)i};
        if (ss_crop_writer_add(w, crop, 20, &info)) {
            CHECK(0, "add: %s", ss_error_buffer());
            break;
        }
    }
    ss_crop_writer_abort(&w);
    CHECK(w == NULL, "abort NULLs the pointer");
    CHECK(!exists(p) && !exists(partial), "abort leaves nothing");
    ss_crop_writer_abort(&w); /* NULL-safe */

    /* a crash mid-write: the child exits without finishing */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        ss_crop_writer_t *cw = ss_crop_writer_new(pathf("crashed.h5"), 20);
        if (!cw) _exit(3);
        for (int i = 0; i < 3000; i++) {
            make_crop(i, 20, crop);
            ss_crop_info_t info = {.bag_id = 1, .cell_id = (uint64_t)i};
            if (ss_crop_writer_add(cw, crop, 20, &info)) _exit(4);
        }
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "crashing child status %d", st);
    CHECK(!exists(pathf("crashed.h5")) && exists(pathf("crashed.h5.partial")),
          "a crash leaves only the partial file");
    ss_error_clear();
    ss_crop_store_t *s = ss_crop_store_open(pathf("crashed.h5.partial"), 0);
    CHECK(s == NULL && strstr(ss_error_last(), "crashed.h5.partial"),
          "the partial file does not open: %s", ss_error_last());
    printf("expected error: %s\n", ss_error_last());
    ss_crop_store_close(&s);
    ss_error_clear();
}

/* A crop of another size is refused on add (naming both sizes; the writer goes on), and a
 * store of another crop size is refused on open when a size is expected. */
static void case_size(void)
{
    const char *p = pathf("c24.h5");
    ss_crop_writer_t *w = ss_crop_writer_new(p, 24);
    CHECK(w != NULL, "writer: %s", ss_error_buffer());
    if (!w) return;
    uint8_t crop[32 * 32 * 3] = {0};
    ss_crop_info_t info = {.bag_id = 1, .cell_id = 42, .source = "x"};
    ss_error_clear();
    CHECK(ss_crop_writer_add(w, crop, 32, &info) == -1, "a 32 px crop is refused");
    const char *e = ss_error_last();
    CHECK(strstr(e, "32 px") && strstr(e, "24 px") && strstr(e, "c24.h5.partial"),
          "add error names both sizes and the file: %s", e);
    printf("expected error: %s\n", e);
    ss_error_clear();
    CHECK(ss_crop_writer_add(w, crop, 24, &info) == 0, "a 24 px crop after the refusal: %s",
          ss_error_buffer());
    CHECK(ss_crop_writer_finish(&w) == 0, "finish: %s", ss_error_buffer());

    ss_crop_store_t *s = ss_crop_store_open(p, 32);
    CHECK(s == NULL, "opened a 24 px store expecting 32 px");
    e = ss_error_last();
    CHECK(strstr(e, p) && strstr(e, "24 px") && strstr(e, "32 px"),
          "open error names the file and both sizes: %s", e);
    printf("expected error: %s\n", e);
    ss_crop_store_close(&s);
    ss_error_clear();
    s = ss_crop_store_open(p, 0);
    CHECK(s && ss_crop_store_count(s) == 1 && ss_crop_store_crop_size(s) == 24,
          "any size with 0: %s", ss_error_buffer());
    ss_crop_store_close(&s);

    static const int bad_sizes[] = {0, -3, SS_CROPS_MAX_SIZE + 1};
    for (int k = 0; k < 3; k++) {
        ss_error_clear();
        w = ss_crop_writer_new(pathf("bad.h5"), bad_sizes[k]);
        CHECK(w == NULL && strstr(ss_error_last(), "invalid crop size"), "crop size %d: %s",
              bad_sizes[k], ss_error_last());
        ss_crop_writer_abort(&w);
    }
    CHECK(!exists(pathf("bad.h5.partial")), "no partial for a refused size");
    ss_error_clear();
}

/* ---- broken files, as data ------------------------------------------------------------ */

static void copy_file(const char *from, const char *to, long keep /* -1 = all */)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    char buf[65536];
    size_t n;
    long left = keep;
    while (a && b && (n = fread(buf, 1, sizeof buf, a)) > 0) {
        if (keep >= 0 && (long)n > left) n = (size_t)left;
        fwrite(buf, 1, n, b);
        if (keep >= 0 && (left -= (long)n) <= 0) break;
    }
    if (a) fclose(a);
    if (b) fclose(b);
}

static long file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

static void set_attr_i64(hid_t obj, const char *name, int64_t v)
{
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    H5Sclose(sp);
}

static void set_attr_str(hid_t obj, const char *name, const char *v)
{
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    hid_t st = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
    H5Tset_size(st, strlen(v) + 1);
    hid_t a = H5Acreate2(obj, name, st, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, st, v);
    H5Aclose(a);
    H5Tclose(st);
    H5Sclose(sp);
}

/* Replaces dataset `name` by a contiguous one of the given type and shape, filled by values
 * (converted from int64; NULL = zeros). */
static void replace_ds(hid_t f, const char *name, hid_t type, int rank, const hsize_t *dims,
                       const int64_t *values)
{
    if (H5Lexists(f, name, H5P_DEFAULT) > 0) H5Ldelete(f, name, H5P_DEFAULT);
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t n = 1;
    for (int k = 0; k < rank; k++)
        n *= dims[k];
    int64_t *v = calloc(n ? n : 1, sizeof *v);
    if (values) memcpy(v, values, n * sizeof *v);
    H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    free(v);
    H5Dclose(d);
    H5Sclose(sp);
}

/* Mutations of a valid 12-cell store of 8 px crops (bags 100..160 and 999, see add_bags). */
static void m_format(hid_t f)
{
    set_attr_str(f, "format", "slidestream-cache");
}
static void m_no_format(hid_t f)
{
    H5Adelete(f, "format");
}
static void m_version(hid_t f)
{
    set_attr_i64(f, "version", 2);
}
static void m_no_count(hid_t f)
{
    H5Adelete(f, "count");
}
static void m_count(hid_t f)
{
    set_attr_i64(f, "count", 999);
}
static void m_crop_size(hid_t f)
{
    set_attr_i64(f, "crop_size", 0);
}
static void m_no_label(hid_t f)
{
    H5Ldelete(f, "label", H5P_DEFAULT);
}
static void m_no_crops(hid_t f)
{
    H5Ldelete(f, "crops", H5P_DEFAULT);
}

/* Replacement columns: cell 11 in an unknown bag, a bag id twice, a source index past the
 * table. */
static const int64_t unknown_bag[12] = {100, 110, 120, 130, 140, 150, 160, 100, 110, 120, 130, 777};
static const int64_t duplicate_bag[8] = {100, 110, 120, 130, 140, 150, 160, 110};
static const int64_t bad_source[12] = {0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 40};

static void expect_open_error(const char *path, int expect, const char *needle)
{
    ss_error_clear();
    ss_crop_store_t *s = ss_crop_store_open(path, expect);
    CHECK(s == NULL, "%s opened", path);
    ss_crop_store_close(&s);
    const char *e = ss_error_last();
    CHECK(!strncmp(e, "cropstore: ", 11) && strstr(e, path) && strstr(e, needle),
          "error for %s lacks '%s': %s", path, needle, e);
    printf("expected error: %s\n", e);
    ss_error_clear();
}

/* A copy of the good store at p, opened for writing; -1 (a failed check) when it cannot be. */
static hid_t reopen_copy(const char *good, const char *p)
{
    copy_file(good, p, -1);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    CHECK(f >= 0, "reopen %s", p);
    return f;
}

static void case_badfiles(void)
{
    char good[1200]; /* pathf's buffers rotate: keep a copy */
    snprintf(good, sizeof good, "%s", pathf("good.h5"));
    CHECK(write_ref(good, 12, 8) == 0, "write: %s", ss_error_buffer());
    long size = file_size(good);

    /* files that are not crop stores at all */
    struct {
        const char *name, *content; /* content NULL: no file */
        const char *expect;
    } raw[] = {
        {"absent.h5", NULL, "No such file"},
        {"notes.h5", "not an HDF5 file\n", "not an HDF5 file"},
        {"zero.h5", "", "not an HDF5 file"},
    };
    for (size_t k = 0; k < sizeof raw / sizeof raw[0]; k++) {
        const char *p = pathf(raw[k].name);
        if (raw[k].content) {
            FILE *f = fopen(p, "w");
            fputs(raw[k].content, f);
            fclose(f);
        }
        expect_open_error(p, 0, raw[k].expect);
    }

    /* the good store cut short */
    struct {
        const char *name;
        long keep;
        const char *expect;
    } cut[] = {
        {"half.h5", size / 2, "truncated"},
        {"head.h5", 1000, "truncated"},
        {"nearly.h5", size - 1, "truncated"},
        {"tiny.h5", 4, "not an HDF5 file"},
    };
    for (size_t k = 0; k < sizeof cut / sizeof cut[0]; k++) {
        const char *p = pathf(cut[k].name);
        copy_file(good, p, cut[k].keep);
        expect_open_error(p, 0, cut[k].expect);
    }

    /* a plain HDF5 file (h5py-style, no attributes) */
    const char *plain = pathf("plain.h5");
    hid_t f = H5Fcreate(plain, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t d[4] = {3, 8, 8, 3};
    replace_ds(f, "crops", H5T_STD_U8LE, 4, d, NULL);
    H5Fclose(f);
    expect_open_error(plain, 0, "not a slidestream crop store (no 'format' attribute)");

    /* the good store with one thing broken */
    struct {
        const char *name;
        void (*mutate)(hid_t);
        const char *expect;
    } broken[] = {
        {"format.h5", m_format, "not a slidestream crop store (format = 'slidestream-cache')"},
        {"noformat.h5", m_no_format, "no 'format' attribute"},
        {"version.h5", m_version, "unsupported crop store version 2"},
        {"nocount.h5", m_no_count, "'count' attribute (an unfinished store?)"},
        {"count.h5", m_count, "'crops' has 12 crops, but 'count' says 999"},
        {"cropsize.h5", m_crop_size, "invalid 'crop_size' attribute (0)"},
        {"nolabel.h5", m_no_label, "missing dataset 'label'"},
        {"nocrops.h5", m_no_crops, "missing dataset 'crops'"},
    };
    for (size_t k = 0; k < sizeof broken / sizeof broken[0]; k++) {
        const char *p = pathf(broken[k].name);
        if ((f = reopen_copy(good, p)) < 0) continue;
        broken[k].mutate(f);
        H5Fclose(f);
        expect_open_error(p, 0, broken[k].expect);
    }

    /* the good store with one dataset replaced (see replace_ds; values NULL: zeros) */
    struct {
        const char *name;
        struct {
            const char *ds;
            hid_t type;
            int rank;
            hsize_t dims[4];
            const int64_t *values;
        } r;
        const char *expect;
    } replaced[] = {
        {"int16.h5", {"crops", H5T_STD_I16LE, 4, {12, 8, 8, 3}, NULL}, "'crops' is not uint8"},
        {"float.h5",
         {"crops", H5T_IEEE_F32LE, 4, {12, 8, 8, 3}, NULL},
         "'crops' is not an integer array"},
        {"cropshape.h5",
         {"crops", H5T_STD_U8LE, 4, {12, 8, 9, 3}, NULL},
         "'crops' must be (N, 8, 8, 3)"},
        {"centre.h5", {"centre", H5T_STD_I64LE, 2, {12, 3}, NULL}, "'centre' must be (N, 2)"},
        {"bagrows.h5",
         {"bag", H5T_STD_U32LE, 1, {11}, NULL},
         "'bag' has 11 rows, but the store has 12 cells"},
        {"unknownbag.h5",
         {"bag", H5T_STD_U32LE, 1, {12}, unknown_bag},
         "cell 11 belongs to bag 777, which is not in 'bag_ids'"},
        {"dupbag.h5",
         {"bag_ids", H5T_STD_U32LE, 1, {8}, duplicate_bag},
         "bag id 110 appears twice"},
        {"baglabels.h5",
         {"bag_labels", H5T_STD_I32LE, 1, {5}, NULL},
         "'bag_labels' has 5 rows, but the store has 8 bags"},
        {"sourceidx.h5",
         {"source", H5T_STD_I32LE, 1, {12}, bad_source},
         "cell 11 has source index 40"},
        {"sourcetype.h5",
         {"sources", H5T_STD_I32LE, 1, {9}, NULL},
         "'sources' is not a string array"},
    };
    for (size_t k = 0; k < sizeof replaced / sizeof replaced[0]; k++) {
        const char *p = pathf(replaced[k].name);
        if ((f = reopen_copy(good, p)) < 0) continue;
        replace_ds(f, replaced[k].r.ds, replaced[k].r.type, replaced[k].r.rank, replaced[k].r.dims,
                   replaced[k].r.values);
        H5Fclose(f);
        expect_open_error(p, 0, replaced[k].expect);
    }

    ss_error_clear();
}

/* 64 bytes of junk over every part of a store in turn: open fails with an error naming the
 * file, or the store opens (the junk fell on crop data or unused space) and every crop read
 * works or fails that way; never a crash. The 1.10 format's metadata checksums catch most.
 * (libhdf5 1.10.8 leaks a few hundred bytes when a dataset's header fails its checksum; the
 * test's LSan suppression covers libhdf5 for this case only.) */
static void case_junk(void)
{
    char good[1200];
    snprintf(good, sizeof good, "%s", pathf("good.h5"));
    CHECK(write_ref(good, 12, 8) == 0, "write: %s", ss_error_buffer());
    long size = file_size(good);
    char junk[1200];
    snprintf(junk, sizeof junk, "%s", pathf("junk.h5"));
    int opened = 0, refused = 0;
    for (long at = 0; at < size; at += 128) {
        copy_file(good, junk, -1);
        FILE *g = fopen(junk, "r+b");
        unsigned char bytes[64];
        for (int k = 0; k < 64; k++)
            bytes[k] = (unsigned char)(0x5A ^ (k * 37) ^ at);
        fseek(g, at, SEEK_SET);
        fwrite(bytes, 1, sizeof bytes, g);
        fclose(g);
        ss_error_clear();
        ss_crop_store_t *s = ss_crop_store_open(junk, 8);
        if (!s) {
            refused++;
            CHECK(strstr(ss_error_last(), junk), "junk at %ld: %s", at, ss_error_last());
            continue;
        }
        opened++;
        uint8_t out[8 * 8 * 3];
        for (int64_t i = 0; i < ss_crop_store_count(s); i++)
            if (ss_crop_store_read(s, i, out))
                CHECK(strstr(ss_error_last(), junk), "junk at %ld, crop %lld: %s", at, (long long)i,
                      ss_error_last());
        ss_crop_store_close(&s);
    }
    printf("junk sweep: %d placements refused at open, %d opened (junk in crop data or "
           "unused space)\n",
           refused, opened);
    ss_error_clear();
}

/* Write failures: a full disk (a file-size limit) while adding and while finishing, and an
 * unwritable location; each error names the file and nothing is left behind. */
static void diskfull_child(int ncrops)
{
    signal(SIGXFSZ, SIG_IGN); /* write() then fails with EFBIG instead of killing us */
    struct rlimit rl = {200 * 1024, 200 * 1024};
    if (setrlimit(RLIMIT_FSIZE, &rl)) _exit(5);
    ss_crop_writer_t *w = ss_crop_writer_new(pathf("full.h5"), 96);
    if (!w) _exit(6);
    uint8_t *crop = malloc(96 * 96 * 3);
    int failed = 0;
    for (int i = 0; i < ncrops && !failed; i++) {
        make_crop(i, 96, crop);
        ss_crop_info_t info = {.bag_id = 1, .cell_id = (uint64_t)i, .source = "s"};
        failed = ss_crop_writer_add(w, crop, 96, &info) != 0;
    }
    free(crop);
    if (failed) {
        fprintf(stderr, "add failed as expected: %s", ss_error_buffer());
        if (!strstr(ss_error_buffer(), "full.h5.partial")) _exit(7);
        ss_error_clear();
        ss_crop_info_t info = {.bag_id = 1};
        uint8_t one[96 * 96 * 3] = {0};
        if (ss_crop_writer_add(w, one, 96, &info) != -1) _exit(9); /* sticky */
        if (ss_crop_writer_finish(&w) != -1 || w) _exit(10);
    } else if (ss_crop_writer_finish(&w) == 0) {
        _exit(8); /* 96 px crops x ncrops cannot fit in 200 KiB */
    } else {
        fprintf(stderr, "finish failed as expected: %s", ss_error_buffer());
        if (!strstr(ss_error_buffer(), "full.h5")) _exit(7);
    }
    ss_error_clear();
    _exit(failed ? 0 : 1);
}

static void case_diskfull(void)
{
    /* 400 crops: the first block write fails inside add; 50: everything fails in finish */
    static const int counts[] = {400, 50};
    for (int k = 0; k < 2; k++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) diskfull_child(counts[k]);
        int st = 0;
        waitpid(pid, &st, 0);
        int want = k == 0 ? 0 : 1; /* exit 0: failed in add; 1: failed in finish */
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == want, "%d crops: child status %d", counts[k],
              WIFEXITED(st) ? WEXITSTATUS(st) : -st);
        CHECK(!exists(pathf("full.h5")) && !exists(pathf("full.h5.partial")),
              "nothing left after a full disk (%d crops)", counts[k]);
    }
    ss_error_clear();
    const char *nodir = pathf("no/such/dir/store.h5");
    ss_crop_writer_t *w = ss_crop_writer_new(nodir, 16);
    CHECK(w == NULL && strstr(ss_error_last(), "store.h5.partial") &&
              strstr(ss_error_last(), "No such file"),
          "missing directory: %s", ss_error_last());
    printf("expected error: %s\n", ss_error_last());
    ss_crop_writer_abort(&w);
    ss_error_clear();
}

/* The store h5py_read.py checks: 300 cells of 16 px, plus an empty store. */
static void case_write_sample(void)
{
    CHECK(write_ref(pathf("sample.h5"), 300, 16) == 0, "write: %s", ss_error_buffer());
    ss_crop_writer_t *w = ss_crop_writer_new(pathf("sample_empty.h5"), 16);
    CHECK(w && ss_crop_writer_finish(&w) == 0, "empty: %s", ss_error_buffer());
}

/* foreign.h5, written by h5py_read.py like another tool would: the reference cells 0..49 of
 * 16 px with 10 crops a gzip chunk, fixed-length strings and int64 columns. */
static void case_read_foreign(void)
{
    const char *p = pathf("foreign.h5");
    ss_crop_store_t *s = ss_crop_store_open(p, 16);
    CHECK(s != NULL, "open: %s", ss_error_buffer());
    if (!s) return;
    CHECK(ss_crop_store_count(s) == 50 && ss_crop_store_nbags(s) == 7, "count %lld bags %d",
          (long long)ss_crop_store_count(s), ss_crop_store_nbags(s));
    uint8_t want[16 * 16 * 3], got[16 * 16 * 3];
    char source[64];
    ss_crop_info_t ref, info;
    for (int64_t i = 49; i >= 0; i -= 3) {
        ref_info(i, 50, source, sizeof source, &ref);
        ss_crop_store_info(s, i, &info);
        CHECK(info.bag_id == ref.bag_id && info.label == ref.label && info.cell_id == ref.cell_id &&
                  info.x == ref.x && info.y == ref.y && !strcmp(info.source, ref.source),
              "cell %lld: '%s'", (long long)i, info.source);
        make_crop(i, 16, want);
        CHECK(ss_crop_store_read(s, i, got) == 0 && !memcmp(got, want, sizeof got), "crop %lld",
              (long long)i);
    }
    for (int b = 0; b < ss_crop_store_nbags(s); b++) {
        uint32_t id = ss_crop_store_bag_id(s, b);
        char name[32];
        snprintf(name, sizeof name, "bag-%u", id);
        CHECK(id == 100 + 10 * (uint32_t)b && !strcmp(ss_crop_store_bag_name(s, b), name) &&
                  ss_crop_store_bag_label(s, b) == (int)(id / 10) % 2 &&
                  !strcmp(ss_crop_store_bag_split(s, b), splits[id / 10 % 3]),
              "bag %d: %u '%s' %d '%s'", b, id, ss_crop_store_bag_name(s, b),
              ss_crop_store_bag_label(s, b), ss_crop_store_bag_split(s, b));
    }
    ss_crop_store_close(&s);
}

/* bench DIR [N] [C]: write N crops of C px, then random single reads and sorted batches. */
static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Resident set size in MB (Linux), to show that memory stays bounded. */
static double rss_mb(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        fclose(f);
    }
    return (double)resident * (double)sysconf(_SC_PAGESIZE) / 1e6;
}

static void case_bench(int argc, char **argv)
{
    int64_t n = argc > 3 ? atoll(argv[3]) : 20000;
    int C = argc > 4 ? atoi(argv[4]) : 96;
    const char *p = pathf("bench.h5");
    double t0 = now();
    CHECK(write_ref(p, n, C) == 0, "write: %s", ss_error_buffer());
    double tw = now() - t0;
    printf("wrote %lld crops of %d px in %.2f s: %.0f crops/s, %.1f MB (RSS %.0f MB)\n",
           (long long)n, C, tw, (double)n / tw, (double)file_size(p) / 1e6, rss_mb());
    t0 = now();
    ss_crop_store_t *s = ss_crop_store_open(p, C);
    CHECK(s != NULL, "open: %s", ss_error_buffer());
    if (!s) return;
    printf("open %.2f s (RSS %.0f MB)\n", now() - t0, rss_mb());
    enum { BATCH = 256 };
    size_t cb = (size_t)C * C * 3;
    uint8_t *buf = malloc(BATCH * cb);
    int64_t idx[BATCH];
    uint64_t r = 99;
    for (int pass = 0; pass < (getenv("SS_BENCH_PASSES") ? atoi(getenv("SS_BENCH_PASSES")) : 2);
         pass++) {
        int64_t reads = n < 20000 ? n : 20000;
        t0 = now();
        for (int64_t k = 0; k < reads; k++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            if (ss_crop_store_read(s, (int64_t)((r >> 33) % (uint64_t)n), buf)) break;
        }
        double t1 = now() - t0;
        t0 = now();
        int64_t done = 0;
        while (done < reads) {
            for (int k = 0; k < BATCH; k++) {
                r = r * 6364136223846793005ull + 1442695040888963407ull;
                idx[k] = (int64_t)((r >> 33) % (uint64_t)n);
            }
            if (ss_crop_store_read_many(s, idx, BATCH, buf)) break;
            done += BATCH;
        }
        double t2 = now() - t0;
        printf("pass %d: random read %.0f crops/s (%.1f us each); read_many x%d %.0f crops/s "
               "(RSS %.0f MB)\n",
               pass, (double)reads / t1, 1e6 * t1 / (double)reads, BATCH, (double)done / t2,
               rss_mb());
    }
    free(buf);
    ss_crop_store_close(&s);
}

int main(int argc, char **argv)
{
    int shared, rc = scratch_begin(argc, argv, &shared);
    if (rc) return rc;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* the broken-file helpers expect failures */
    if (!strcmp(argv[1], "bench")) {
        case_bench(argc, argv);
    } else {
        struct {
            const char *name;
            void (*fn)(void);
        } cases[] = {{"roundtrip", case_roundtrip},
                     {"finish", case_finish},
                     {"abort", case_abort},
                     {"size", case_size},
                     {"badfiles", case_badfiles},
                     {"junk", case_junk},
                     {"diskfull", case_diskfull},
                     {"write-sample", case_write_sample},
                     {"read-foreign", case_read_foreign}};
        size_t i = 0;
        while (i < sizeof cases / sizeof cases[0] && strcmp(argv[1], cases[i].name))
            i++;
        if (i == sizeof cases / sizeof cases[0]) {
            fprintf(stderr, "unknown case %s\n", argv[1]);
            return 2;
        }
        cases[i].fn();
    }
    if (check_failures) {
        fprintf(stderr, "train.store.%s: %d check(s) failed (files kept in %s)\n", argv[1],
                check_failures, scratch);
        return 1;
    }
    printf("train.store.%s: all checks passed\n", argv[1]);
    if (!shared) scratch_remove();
    return 0;
}
