/* train.store: the stores exchanged with h5py (write-sample, read-foreign) and the random-read
 * benchmark (bench; not a test). */
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

void case_write_sample(void)
{
    CHECK(write_ref(pathf("sample.h5"), 300, 16) == 0, "write: %s", ss_error_buffer());
    ss_crop_writer_t *w = ss_crop_writer_new(pathf("sample_empty.h5"), 16);
    CHECK(w && ss_crop_writer_finish(&w) == 0, "empty: %s", ss_error_buffer());
}

/* foreign.h5, written by h5py_read.py like another tool would: the reference cells 0..49 of
 * 16 px with 10 crops a gzip chunk, fixed-length strings and int64 columns. */
void case_read_foreign(void)
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

void case_bench(int argc, char **argv)
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

int store_h5py_failures(void)
{
    return check_failures;
}
