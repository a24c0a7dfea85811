/* cache.* tests: round trips (multi-chunk, empty), crash safety, resume checks, foreign
 * (CLAM/TRIDENT-style) files, bad files, write failures, SHA-256 vectors. One executable;
 * argv[1] picks the case, argv[2] is a scratch directory. `write-sample DIR` writes the file
 * the h5py test reads. */
#define _XOPEN_SOURCE 700 /* nftw, in ../scratch.h */
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "slidestream/cache.h"
#include "slidestream/error.h"

#include "../check.h"
#include "../scratch.h"

static char *pathf(const char *fmt, const char *a)
{
    static char buf[4][1200];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/", scratch);
    size_t l = strlen(buf[k]);
    snprintf(buf[k] + l, sizeof buf[k] - l, fmt, a);
    return buf[k];
}

static int exists(const char *p)
{
    return access(p, F_OK) == 0;
}

static ss_cache_meta_t sample_meta(const char *slide, int dim)
{
    ss_cache_meta_t m = {
        .slide_id = slide,
        .label = 1,
        .split = "train",
        .patch_size = 96,
        .patch_size_level0 = 192,
        .target_mpp = 0.5,
        .slide_mpp = 0.25,
        .encoder = "resnet18",
        .encoder_hash = "00ff",
        .feature = "pooled",
        .preprocessing = "input=96;mean=0.485,0.456,0.406;std=0.229,0.224,0.225",
        .dim = dim,
    };
    return m;
}

typedef struct {
    int n, dim;
    float *f;
    int64_t *co, *ce;
    uint64_t *id;
    int32_t *bb;
    uint32_t *ar;
} rows_t;

static rows_t make_rows(int n, int dim, unsigned seed)
{
    rows_t r = {n, dim, malloc(sizeof(float) * (size_t)(n ? n : 1) * (size_t)dim),
                malloc(sizeof(int64_t) * 2 * (size_t)(n ? n : 1)),
                malloc(sizeof(int64_t) * 2 * (size_t)(n ? n : 1)),
                malloc(sizeof(uint64_t) * (size_t)(n ? n : 1)),
                malloc(sizeof(int32_t) * 4 * (size_t)(n ? n : 1)),
                malloc(sizeof(uint32_t) * (size_t)(n ? n : 1))};
    uint64_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < (size_t)n * (size_t)dim; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t bits = (uint32_t)(s >> 32);
        /* arbitrary finite floats incl. negative zero and subnormals: test bit identity */
        if ((bits & 0x7f800000u) == 0x7f800000u) bits &= 0xbfffffffu;
        memcpy(&r.f[i], &bits, 4);
    }
    for (int i = 0; i < n; i++) {
        r.co[2 * i] = (int64_t)i * 37 + 5000000000ll;
        r.co[2 * i + 1] = (int64_t)i * 11;
        r.ce[2 * i] = r.co[2 * i] + 96;
        r.ce[2 * i + 1] = r.co[2 * i + 1] + 96;
        r.id[i] = 0xF000000000000000ull + (uint64_t)i * 3;
        for (int k = 0; k < 4; k++) r.bb[4 * i + k] = -i * 4 - k;
        r.ar[i] = 4000000000u - (uint32_t)i;
    }
    return r;
}

static void free_rows(rows_t *r)
{
    free(r->f);
    free(r->co);
    free(r->ce);
    free(r->id);
    free(r->bb);
    free(r->ar);
}

/* Writes rows in uneven batches (1, 2, 3, ... rows) so buffering crosses chunk edges. */
static int write_file(const char *slide, rows_t *r, int with_opt)
{
    ss_cache_meta_t m = sample_meta(slide, r->dim);
    ss_cache_writer_t *w = ss_cache_writer_new(scratch, &m);
    if (!w) return -1;
    int at = 0, step = 1;
    while (at < r->n) {
        int k = step < r->n - at ? step : r->n - at;
        if (ss_cache_writer_add(w, k, r->f + (size_t)at * r->dim, r->co + 2 * at, r->ce + 2 * at,
                                r->id + at, with_opt ? r->bb + 4 * at : NULL,
                                with_opt ? r->ar + at : NULL)) {
            ss_cache_writer_abort(&w);
            return -1;
        }
        at += k;
        step = step * 3 + 1;
        if (step > 1500) step = 7;
    }
    CHECK(ss_cache_writer_rows(w) == r->n, "rows %lld", (long long)ss_cache_writer_rows(w));
    return ss_cache_writer_finish(&w);
}

static void verify(const char *path, rows_t *r, int with_opt, int block)
{
    ss_cache_reader_t *rd = ss_cache_open(path);
    CHECK(rd != NULL, "open %s: %s", path, ss_error_buffer());
    if (!rd) return;
    const ss_cache_meta_t *m = ss_cache_meta(rd);
    CHECK(ss_cache_rows(rd) == r->n, "rows %lld want %d", (long long)ss_cache_rows(rd), r->n);
    CHECK(ss_cache_dim(rd) == r->dim, "dim %d", ss_cache_dim(rd));
    CHECK(ss_cache_is_complete(rd), "not complete");
    CHECK(m->label == 1 && !strcmp(m->split, "train") && m->patch_size == 96 &&
              m->patch_size_level0 == 192 && m->target_mpp == 0.5 && m->slide_mpp == 0.25,
          "meta numbers");
    CHECK(!strcmp(m->encoder, "resnet18") && !strcmp(m->encoder_hash, "00ff") &&
              !strcmp(m->feature, "pooled") && !strncmp(m->preprocessing, "input=96;", 9),
          "meta strings '%s' '%s' '%s' '%s'", m->encoder, m->encoder_hash, m->feature,
          m->preprocessing);
    CHECK(ss_cache_has_bboxes(rd) == with_opt && ss_cache_has_areas(rd) == with_opt, "optional");
    int D = r->dim;
    float *f = malloc(sizeof(float) * (size_t)block * D);
    int64_t co[2 * 4096], ce[2 * 4096];
    uint64_t id[4096];
    int32_t bb[4 * 4096];
    uint32_t ar[4096];
    int bad_f = 0, bad_o = 0;
    for (int at = 0; at < r->n; at += block) {
        int k = block < r->n - at ? block : r->n - at;
        if (ss_cache_read(rd, at, k, f, co, ce, id, bb, ar)) {
            CHECK(0, "read at %d: %s", at, ss_error_buffer());
            break;
        }
        if (memcmp(f, r->f + (size_t)at * D, sizeof(float) * (size_t)k * D)) bad_f++;
        if (memcmp(co, r->co + 2 * at, 16 * (size_t)k) || memcmp(ce, r->ce + 2 * at, 16 * (size_t)k) ||
            memcmp(id, r->id + at, 8 * (size_t)k))
            bad_o++;
        if (with_opt &&
            (memcmp(bb, r->bb + 4 * at, 16 * (size_t)k) || memcmp(ar, r->ar + at, 4 * (size_t)k)))
            bad_o++;
        if (!with_opt)
            for (int i = 0; i < k; i++)
                if (ar[i] || bb[4 * i]) bad_o++;
    }
    CHECK(bad_f == 0, "%d feature blocks differ", bad_f);
    CHECK(bad_o == 0, "%d key blocks differ", bad_o);
    CHECK(ss_cache_read(rd, r->n, 1, f, NULL, NULL, NULL, NULL, NULL) == -1, "read past end");
    ss_error_clear();
    free(f);
    ss_cache_close(&rd);
    CHECK(rd == NULL, "close clears");
}

static void case_roundtrip(void)
{
    rows_t r = make_rows(5000, 37, 1);
    CHECK(write_file("slideA", &r, 1) == 0, "write: %s", ss_error_buffer());
    CHECK(exists(pathf("%s.h5", "slideA")) && !exists(pathf("%s.h5.tmp", "slideA")), "renamed");
    verify(pathf("%s.h5", "slideA"), &r, 1, 333);
    verify(pathf("%s.h5", "slideA"), &r, 1, 4096);
    free_rows(&r);
    /* without the optional columns, wide features (chunk rows shrink below the default) */
    rows_t r2 = make_rows(1500, 1024, 2);
    CHECK(write_file("slideB", &r2, 0) == 0, "write: %s", ss_error_buffer());
    verify(pathf("%s.h5", "slideB"), &r2, 0, 1024);
    free_rows(&r2);
    char why[300];
    CHECK(ss_cache_check(scratch, "slideA", "00ff", "pooled", NULL, why, sizeof why) == 1, "%s",
          why);
    /* mixing optional columns between adds is refused */
    ss_cache_meta_t m = sample_meta("mixed", 4);
    ss_cache_writer_t *w = ss_cache_writer_new(scratch, &m);
    rows_t r3 = make_rows(4, 4, 3);
    CHECK(ss_cache_writer_add(w, 2, r3.f, r3.co, r3.ce, r3.id, r3.bb, NULL) == 0, "add");
    CHECK(ss_cache_writer_add(w, 2, r3.f, r3.co, r3.ce, r3.id, NULL, NULL) == -1, "mixed ok?");
    CHECK(strstr(ss_error_last(), "mixed.h5.tmp") != NULL, "names file: %s", ss_error_last());
    ss_error_clear();
    CHECK(ss_cache_writer_finish(&w) == -1 && w == NULL, "finish after failure");
    ss_error_clear();
    CHECK(!exists(pathf("%s.h5", "mixed")) && !exists(pathf("%s.h5.tmp", "mixed")), "no files");
    free_rows(&r3);
}

static void case_empty(void)
{
    ss_cache_meta_t m = sample_meta("empty", 16);
    ss_cache_writer_t *w = ss_cache_writer_new(scratch, &m);
    CHECK(w != NULL, "new: %s", ss_error_buffer());
    CHECK(ss_cache_writer_add(w, 0, NULL, NULL, NULL, NULL, NULL, NULL) == 0, "add 0");
    CHECK(ss_cache_writer_finish(&w) == 0, "finish: %s", ss_error_buffer());
    ss_cache_reader_t *r = ss_cache_open(pathf("%s.h5", "empty"));
    CHECK(r != NULL, "open: %s", ss_error_buffer());
    if (r) {
        CHECK(ss_cache_rows(r) == 0 && ss_cache_dim(r) == 16 && ss_cache_is_complete(r), "shape");
        CHECK(ss_cache_read(r, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL) == 0, "read 0");
        ss_cache_close(&r);
    }
    char why[200];
    CHECK(ss_cache_check(scratch, "empty", "00ff", "pooled", m.preprocessing, why, sizeof why) == 1,
          "%s", why);
}

static void case_crash(void)
{
    rows_t r = make_rows(3000, 8, 4);
    char why[300];
    /* abort leaves nothing */
    ss_cache_meta_t m = sample_meta("aborted", 8);
    ss_cache_writer_t *w = ss_cache_writer_new(scratch, &m);
    CHECK(w && ss_cache_writer_add(w, 3000, r.f, r.co, r.ce, r.id, NULL, NULL) == 0, "add");
    CHECK(exists(pathf("%s.h5.tmp", "aborted")), "tmp exists while writing");
    CHECK(ss_cache_check(scratch, "aborted", NULL, NULL, NULL, why, sizeof why) == 0 &&
              !strncmp(why, "missing", 7),
          "in-progress .tmp reported as %s", why);
    ss_cache_writer_abort(&w);
    CHECK(w == NULL, "abort clears");
    CHECK(!exists(pathf("%s.h5", "aborted")) && !exists(pathf("%s.h5.tmp", "aborted")), "clean");

    /* a writer killed mid-slide (child _exits without finishing) leaves only a .tmp */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        ss_cache_meta_t mc = sample_meta("killed", 8);
        ss_cache_writer_t *wc = ss_cache_writer_new(scratch, &mc);
        if (!wc || ss_cache_writer_add(wc, 3000, r.f, r.co, r.ce, r.id, NULL, NULL)) _exit(3);
        raise(SIGKILL);
        _exit(4);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFSIGNALED(st), "child status %d", st);
    CHECK(!exists(pathf("%s.h5", "killed")) && exists(pathf("%s.h5.tmp", "killed")), "only tmp");
    CHECK(ss_cache_check(scratch, "killed", NULL, NULL, NULL, why, sizeof why) == 0 &&
              strstr(why, "partial .tmp"),
          "killed: %s", why);
    /* even renamed by hand, a killed writer's file never looks complete */
    char hand[1200];
    snprintf(hand, sizeof hand, "%s", pathf("%s.h5", "killed"));
    CHECK(rename(pathf("%s.h5.tmp", "killed"), hand) == 0, "rename");
    CHECK(ss_cache_check(scratch, "killed", NULL, NULL, NULL, why, sizeof why) == 0, "%s", why);
    printf("killed file renamed by hand: %s\n", why);
    CHECK(unlink(hand) == 0, "unlink");
    /* a new writer for the slide replaces a stale tmp; discard_partial removes one */
    pid = fork();
    if (pid == 0) {
        ss_cache_meta_t mc = sample_meta("killed", 8);
        ss_cache_writer_t *wc = ss_cache_writer_new(scratch, &mc);
        if (!wc) _exit(3);
        raise(SIGKILL);
        _exit(4);
    }
    waitpid(pid, &st, 0);
    CHECK(ss_cache_discard_partial(scratch, "killed") == 1, "discard");
    CHECK(ss_cache_discard_partial(scratch, "killed") == 0, "discard twice");
    CHECK(!exists(pathf("%s.h5.tmp", "killed")), "tmp gone");

    /* a finished file whose complete flag is removed reads as partial */
    CHECK(write_file("nocomplete", &r, 0) == 0, "write: %s", ss_error_buffer());
    hid_t f = H5Fopen(pathf("%s.h5", "nocomplete"), H5F_ACC_RDWR, H5P_DEFAULT);
    CHECK(f >= 0 && H5Adelete(f, "complete") >= 0, "delete attr");
    H5Fclose(f);
    CHECK(ss_cache_check(scratch, "nocomplete", NULL, NULL, NULL, why, sizeof why) == 0 &&
              !strncmp(why, "partial", 7),
          "nocomplete: %s", why);
    ss_cache_reader_t *rd = ss_cache_open(pathf("%s.h5", "nocomplete"));
    CHECK(rd && !ss_cache_is_complete(rd), "opens, not complete");
    ss_cache_close(&rd);

    /* a truncated file is unreadable, not complete */
    CHECK(write_file("trunc", &r, 0) == 0, "write");
    struct stat sb;
    stat(pathf("%s.h5", "trunc"), &sb);
    CHECK(truncate(pathf("%s.h5", "trunc"), sb.st_size / 2) == 0, "truncate");
    CHECK(ss_cache_check(scratch, "trunc", NULL, NULL, NULL, why, sizeof why) == 0 &&
              !strncmp(why, "unreadable", 10),
          "trunc: %s", why);
    printf("truncated: %s\n", why);
    CHECK(ss_error_buffer()[0] == '\0', "check leaves no error: %s", ss_error_buffer());
    free_rows(&r);
}

static void case_check(void)
{
    rows_t r = make_rows(10, 8, 5);
    CHECK(write_file("s1", &r, 0) == 0, "write");
    char why[400];
    const char *pre = sample_meta("x", 1).preprocessing;
    CHECK(ss_cache_check(scratch, "s1", "00ff", "pooled", pre, why, sizeof why) == 1, "%s", why);
    CHECK(ss_cache_check(scratch, "s1", NULL, NULL, NULL, why, sizeof why) == 1, "%s", why);
    CHECK(ss_cache_check(scratch, "s1", "abcd", "pooled", pre, why, sizeof why) == 0 &&
              strstr(why, "different encoder") && strstr(why, "abcd"),
          "%s", why);
    CHECK(ss_cache_check(scratch, "s1", "00ff", "projection", pre, why, sizeof why) == 0 &&
              strstr(why, "different feature"),
          "%s", why);
    CHECK(ss_cache_check(scratch, "s1", "00ff", "pooled", "input=64", why, sizeof why) == 0 &&
              strstr(why, "different preprocessing"),
          "%s", why);
    CHECK(ss_cache_check(scratch, "nothere", NULL, NULL, NULL, why, sizeof why) == 0 &&
              !strcmp(why, "missing"),
          "%s", why);
    CHECK(ss_cache_check(scratch, "../x", NULL, NULL, NULL, why, sizeof why) == -1, "bad id");
    ss_error_clear();
    /* redoing a slide with another encoder: the old file stays valid until the new one is
     * finished (an abort keeps it), then the rename replaces it */
    ss_cache_meta_t m2 = sample_meta("s1", 8);
    m2.encoder_hash = "beef";
    ss_cache_writer_t *w = ss_cache_writer_new(scratch, &m2);
    CHECK(w && ss_cache_writer_add(w, 10, r.f, r.co, r.ce, r.id, NULL, NULL) == 0, "add");
    CHECK(ss_cache_check(scratch, "s1", "00ff", NULL, NULL, why, sizeof why) == 1, "%s", why);
    ss_cache_writer_abort(&w);
    CHECK(ss_cache_check(scratch, "s1", "00ff", NULL, NULL, why, sizeof why) == 1, "%s", why);
    w = ss_cache_writer_new(scratch, &m2);
    CHECK(w && ss_cache_writer_add(w, 10, r.f, r.co, r.ce, r.id, NULL, NULL) == 0, "add");
    CHECK(ss_cache_writer_finish(&w) == 0, "finish: %s", ss_error_buffer());
    CHECK(ss_cache_check(scratch, "s1", "beef", NULL, NULL, why, sizeof why) == 1, "%s", why);
    CHECK(ss_cache_check(scratch, "s1", "00ff", NULL, NULL, why, sizeof why) == 0, "%s", why);
    free_rows(&r);
}

/* A TRIDENT/CLAM-style file: only features (float64 here) and coords (int32) + attrs. */
static void case_foreign(void)
{
    const char *p = pathf("%s.h5", "trident_slide");
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    double feats[3 * 5];
    int32_t coords[3 * 2];
    for (int i = 0; i < 15; i++) feats[i] = i * 0.5;
    for (int i = 0; i < 6; i++) coords[i] = 1000 * i;
    hsize_t d1[2] = {3, 5}, d2[2] = {3, 2};
    hid_t s1 = H5Screate_simple(2, d1, NULL), s2 = H5Screate_simple(2, d2, NULL);
    hid_t a = H5Dcreate2(f, "features", H5T_IEEE_F64LE, s1, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t b = H5Dcreate2(f, "coords", H5T_STD_I32LE, s2, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(a, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, feats);
    H5Dwrite(b, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, coords);
    hid_t sc = H5Screate(H5S_SCALAR);
    int64_t ps0 = 512;
    int64_t mag = 20;
    hid_t at = H5Acreate2(b, "patch_size_level0", H5T_STD_I64LE, sc, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(at, H5T_NATIVE_INT64, &ps0);
    H5Aclose(at);
    at = H5Acreate2(b, "target_magnification", H5T_STD_I64LE, sc, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(at, H5T_NATIVE_INT64, &mag);
    H5Aclose(at);
    /* TRIDENT writes None as the string 'None': must read as absent, not crash */
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, 5);
    at = H5Acreate2(b, "level0_magnification", st, sc, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(at, st, "None");
    H5Aclose(at);
    H5Tclose(st);
    H5Sclose(sc);
    H5Dclose(a);
    H5Dclose(b);
    H5Sclose(s1);
    H5Sclose(s2);
    H5Fclose(f);

    ss_cache_reader_t *r = ss_cache_open(p);
    CHECK(r != NULL, "open foreign: %s", ss_error_buffer());
    if (!r) return;
    const ss_cache_meta_t *m = ss_cache_meta(r);
    CHECK(ss_cache_rows(r) == 3 && ss_cache_dim(r) == 5, "shape");
    CHECK(!strcmp(m->slide_id, "trident_slide") && m->label == -1 && m->split[0] == 0,
          "meta defaults '%s' %d", m->slide_id, m->label);
    CHECK(m->patch_size_level0 == 512 && m->target_mpp == 0.5 && m->slide_mpp == 0,
          "derived mpp %g %g", m->target_mpp, m->slide_mpp);
    CHECK(!ss_cache_is_complete(r), "foreign is not 'complete'");
    float fo[15];
    int64_t co[6], ce[6];
    uint64_t ids[3];
    CHECK(ss_cache_read(r, 0, 3, fo, co, ce, ids, NULL, NULL) == 0, "read: %s", ss_error_buffer());
    for (int i = 0; i < 15; i++) CHECK(fo[i] == (float)(i * 0.5), "f[%d]", i);
    for (int i = 0; i < 6; i++) CHECK(co[i] == 1000 * i && ce[i] == 1000 * i + 256, "c[%d]", i);
    for (int i = 0; i < 3; i++) CHECK(ids[i] == (uint64_t)i, "id[%d]", i);
    CHECK(ss_cache_read(r, 1, 2, NULL, NULL, NULL, ids, NULL, NULL) == 0 && ids[0] == 1, "ids@1");
    ss_cache_close(&r);
    char why[300];
    CHECK(ss_cache_check(scratch, "trident_slide", NULL, NULL, NULL, why, sizeof why) == 0 &&
              strstr(why, "not a slidestream cache"),
          "%s", why);
}

static void expect_open_error(const char *path, const char *needle)
{
    ss_error_clear();
    ss_cache_reader_t *r = ss_cache_open(path);
    CHECK(r == NULL, "%s opened", path);
    ss_cache_close(&r);
    const char *e = ss_error_last();
    CHECK(strstr(e, path) && strstr(e, needle), "error for %s lacks '%s': %s", path, needle, e);
    printf("expected error: %s\n", e);
    ss_error_clear();
}

static void case_badfiles(void)
{
    const char *txt = pathf("%s", "notes.h5");
    FILE *f = fopen(txt, "w");
    fputs("not hdf5\n", f);
    fclose(f);
    expect_open_error(txt, "not an HDF5 file");
    expect_open_error(pathf("%s", "absent.h5"), "No such file");

    hsize_t d1[2] = {4, 3}, d2[2] = {5, 2}, d3[1] = {4};
    /* rows disagree */
    const char *p = pathf("%s", "rows.h5");
    hid_t h = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t s1 = H5Screate_simple(2, d1, NULL), s2 = H5Screate_simple(2, d2, NULL),
          s3 = H5Screate_simple(1, d3, NULL);
    H5Dclose(H5Dcreate2(h, "features", H5T_IEEE_F32LE, s1, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Dclose(H5Dcreate2(h, "coords", H5T_STD_I64LE, s2, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Fclose(h);
    expect_open_error(p, "coords");
    /* integer features */
    p = pathf("%s", "intfeat.h5");
    h = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(H5Dcreate2(h, "features", H5T_STD_I32LE, s1, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Fclose(h);
    expect_open_error(p, "features");
    /* no coords */
    p = pathf("%s", "nocoords.h5");
    h = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(H5Dcreate2(h, "features", H5T_IEEE_F32LE, s1, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Fclose(h);
    expect_open_error(p, "no 'coords'");
    /* 1-D coords */
    p = pathf("%s", "coords1d.h5");
    h = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(H5Dcreate2(h, "features", H5T_IEEE_F32LE, s1, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Dclose(H5Dcreate2(h, "coords", H5T_STD_I64LE, s3, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Fclose(h);
    expect_open_error(p, "(N, 2)");
    H5Sclose(s1);
    H5Sclose(s2);
    H5Sclose(s3);
    /* another format */
    rows_t r = make_rows(3, 3, 6);
    CHECK(write_file("otherfmt", &r, 0) == 0, "write");
    p = pathf("%s.h5", "otherfmt");
    h = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Adelete(h, "format");
    hid_t st = H5Tcopy(H5T_C_S1), sc = H5Screate(H5S_SCALAR);
    H5Tset_size(st, 4);
    hid_t a = H5Acreate2(h, "format", st, sc, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, st, "zarr");
    H5Aclose(a);
    H5Tclose(st);
    H5Sclose(sc);
    H5Fclose(h);
    expect_open_error(p, "not a slidestream cache");
    free_rows(&r);
}

static void case_unwritable(void)
{
    /* a directory that cannot exist (under a regular file): works even as root */
    const char *file = pathf("%s", "plainfile");
    FILE *f = fopen(file, "w");
    fclose(f);
    char dir[1300];
    snprintf(dir, sizeof dir, "%s/sub", file);
    ss_cache_meta_t m = sample_meta("s", 4);
    ss_error_clear();
    ss_cache_writer_t *w = ss_cache_writer_new(dir, &m);
    CHECK(w == NULL, "writer in %s", dir);
    CHECK(strstr(ss_error_buffer(), "plainfile"), "error names the path: %s", ss_error_buffer());
    printf("expected error: %s", ss_error_buffer());
    ss_error_clear();
    /* read-only directory (not enforced for root) */
    char ro[1300];
    snprintf(ro, sizeof ro, "%s/readonly", scratch);
    mkdir(ro, 0755);
    chmod(ro, 0555);
    if (access(ro, W_OK) < 0) {
        w = ss_cache_writer_new(ro, &m);
        CHECK(w == NULL, "writer in read-only dir");
        CHECK(strstr(ss_error_buffer(), "readonly/s.h5.tmp") &&
                  strstr(ss_error_buffer(), "Permission denied"),
              "error: %s", ss_error_buffer());
        printf("expected error: %s", ss_error_buffer());
        ss_error_clear();
        ss_cache_writer_abort(&w);
    } else {
        printf("read-only directory check skipped (running as root)\n");
    }
    chmod(ro, 0755);
    /* invalid slide ids */
    m.slide_id = "a/b";
    CHECK(ss_cache_writer_new(scratch, &m) == NULL, "slash id");
    m.slide_id = "..";
    CHECK(ss_cache_writer_new(scratch, &m) == NULL, "dotdot id");
    m = sample_meta("s", 0);
    CHECK(ss_cache_writer_new(scratch, &m) == NULL, "dim 0");
    ss_error_clear();
}

/* A full disk, simulated with RLIMIT_FSIZE in a child: writes fail with EFBIG. */
static void case_diskfull(void)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {200 * 1024, 200 * 1024};
        if (setrlimit(RLIMIT_FSIZE, &rl)) _exit(5);
        rows_t r = make_rows(4096, 256, 7); /* 4 MiB of features: cannot fit */
        ss_cache_meta_t m = sample_meta("full", 256);
        ss_cache_writer_t *w = ss_cache_writer_new(scratch, &m);
        if (!w) _exit(6);
        int failed = 0;
        for (int i = 0; i < 4 && !failed; i++)
            failed = ss_cache_writer_add(w, 1024, r.f + (size_t)i * 1024 * 256, r.co + 2048 * i,
                                         r.ce + 2048 * i, r.id + 1024 * i, NULL, NULL) != 0;
        if (failed) {
            fprintf(stderr, "add failed as expected: %s", ss_error_buffer());
            if (!strstr(ss_error_buffer(), "full.h5.tmp")) _exit(7);
            ss_cache_writer_abort(&w);
        } else if (ss_cache_writer_finish(&w) == 0) {
            _exit(8); /* must not succeed */
        } else {
            fprintf(stderr, "finish failed as expected: %s", ss_error_buffer());
            if (!strstr(ss_error_buffer(), "full.h5")) _exit(7);
        }
        free_rows(&r);
        ss_error_clear();
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
    CHECK(!exists(pathf("%s.h5", "full")) && !exists(pathf("%s.h5.tmp", "full")),
          "nothing left after a full disk");
}

static void hex(const uint8_t d[32], char out[65])
{
    for (int i = 0; i < 32; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static void case_digest(void)
{
    struct {
        const char *msg;
        const char *want;
    } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    uint8_t d[32];
    char h[65];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        ss_sha256(v[i].msg, strlen(v[i].msg), d);
        hex(d, h);
        CHECK(!strcmp(h, v[i].want), "sha256('%s') = %s", v[i].msg, h);
    }
    /* one million 'a' through the file path (crosses the 64 KiB read size) */
    const char *p = pathf("%s", "million_a");
    FILE *f = fopen(p, "wb");
    for (int i = 0; i < 1000000; i++) fputc('a', f);
    fclose(f);
    CHECK(ss_file_digest(p, h) == 0, "digest");
    CHECK(!strcmp(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"), "%s", h);
    CHECK(ss_file_digest(pathf("%s", "absent"), h) == -1 && strstr(ss_error_last(), "absent"),
          "missing file");
    ss_error_clear();
    /* lengths around the padding boundary agree with a byte-at-a-time reference split */
    char buf[130];
    memset(buf, 'x', sizeof buf);
    for (int n = 50; n < 130; n++) {
        uint8_t a[32];
        ss_sha256(buf, (size_t)n, a);
        FILE *g = fopen(p, "wb");
        fwrite(buf, 1, (size_t)n, g);
        fclose(g);
        char ha[65], hf[65];
        hex(a, ha);
        ss_file_digest(p, hf);
        CHECK(!strcmp(ha, hf), "length %d", n);
    }
}

/* The file the h5py test reads: 300 rows, D = 24, bboxes/areas present; plus an empty one. */
static void case_write_sample(void)
{
    rows_t r = make_rows(300, 24, 9);
    for (int i = 0; i < 300 * 24; i++) r.f[i] = (float)i * 0.25f;
    CHECK(write_file("sample", &r, 1) == 0, "write: %s", ss_error_buffer());
    free_rows(&r);
    ss_cache_meta_t m = sample_meta("sample_empty", 24);
    ss_cache_writer_t *w = ss_cache_writer_new(scratch, &m);
    CHECK(w && ss_cache_writer_finish(&w) == 0, "empty: %s", ss_error_buffer());
}

/* A TRIDENT-style file written by h5py (h5py_read.sh makes it): 5 x 8 features = i * 0.5,
 * coords[i] = (100 i, 7 i), patch_size_level0 512, magnifications 40 / 20. */
static void case_read_foreign(void)
{
    const char *p = pathf("%s", "trident.h5");
    ss_cache_reader_t *r = ss_cache_open(p);
    CHECK(r != NULL, "open: %s", ss_error_buffer());
    if (!r) return;
    const ss_cache_meta_t *m = ss_cache_meta(r);
    CHECK(ss_cache_rows(r) == 5 && ss_cache_dim(r) == 8, "shape");
    CHECK(m->patch_size == 256 && m->patch_size_level0 == 512, "sizes %d %lld", m->patch_size,
          (long long)m->patch_size_level0);
    CHECK(m->target_mpp == 0.5 && m->slide_mpp == 0.25, "mpp %g %g", m->target_mpp, m->slide_mpp);
    CHECK(!strcmp(m->encoder, "conch_v15") && !strcmp(m->slide_id, "trident"), "'%s' '%s'",
          m->encoder, m->slide_id);
    float f[40];
    int64_t co[10], ce[10];
    uint64_t id[5];
    CHECK(ss_cache_read(r, 0, 5, f, co, ce, id, NULL, NULL) == 0, "read: %s", ss_error_buffer());
    for (int i = 0; i < 40; i++) CHECK(f[i] == (float)i * 0.5f, "f[%d] = %g", i, f[i]);
    for (int i = 0; i < 5; i++)
        CHECK(co[2 * i] == 100 * i && co[2 * i + 1] == 7 * i && ce[2 * i] == 100 * i + 256 &&
                  id[i] == (uint64_t)i,
              "row %d", i);
    ss_cache_close(&r);
}

int main(int argc, char **argv)
{
    int shared, rc = scratch_begin(argc, argv, &shared);
    if (rc) return rc;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* the bad-file helpers expect failures */
    struct {
        const char *name;
        void (*fn)(void);
    } cases[] = {{"roundtrip", case_roundtrip}, {"empty", case_empty},
                 {"crash", case_crash},         {"check", case_check},
                 {"foreign", case_foreign},     {"badfiles", case_badfiles},
                 {"unwritable", case_unwritable}, {"diskfull", case_diskfull},
                 {"digest", case_digest},       {"write-sample", case_write_sample},
                 {"read-foreign", case_read_foreign}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (strcmp(argv[1], cases[i].name)) continue;
        cases[i].fn();
        return scratch_end("cache", argv[1], check_failures, shared);
    }
    fprintf(stderr, "unknown case %s\n", argv[1]);
    return 2;
}
