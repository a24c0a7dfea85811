/* train.store: round trips, the partial-file protocol (finish, abort, crash) and crop-size
 * mismatches. */
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

/* ---- cases --------------------------------------------------------------------------- */

/* Many small crops (several block writes and a remainder), 96 px crops (blocks of a few MiB),
 * and an empty store. */
void case_roundtrip(void)
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
void case_finish(void)
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
void case_abort(void)
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
void case_size(void)
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

int store_cases_failures(void)
{
    return check_failures;
}
