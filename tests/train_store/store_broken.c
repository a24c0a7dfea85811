/* train.store: broken files as data, junk anywhere in a store, write failures (a full disk). */
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

long file_size(const char *p)
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

void case_badfiles(void)
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
void case_junk(void)
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

void case_diskfull(void)
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

int store_broken_failures(void)
{
    return check_failures;
}
