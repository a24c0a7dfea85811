/* tiler_bench: tiles/s of the lib/slide tiler reading every tile of a slide, and the process's
 * peak RSS. bench/run_tiler_bench.sh runs it beside `vips dzsave` on the same slide.
 *
 *   tiler_bench SLIDE [--tile 512] [--overlap-px 0] [--mpp TARGET] [--mask 0|1] [--threads N]
 *
 * With --threads N > 1 each thread opens its own handle and takes every N-th grid row, the way a
 * multi-worker tiler stage would. Prints one line: key=value figures. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "slidestream/error.h"
#include "slidestream/log.h"
#include "slidestream/slide.h"

typedef struct {
    const char *path;
    ss_tiling_opts_t o;
    int nthreads, id;
    int64_t tiles, errors;
    uint64_t checksum;
} job_t;

static void *work(void *arg)
{
    job_t *j = arg;
    ss_slide_t *s = ss_slide_open(j->path, 0, NULL);
    if (!s) {
        ss_error_report(NULL);
        j->errors = -1;
        return NULL;
    }
    ss_tiler_t *t = ss_tiler_new(s, &j->o);
    if (!t) {
        ss_error_report(NULL);
        ss_slide_destroy(&s);
        j->errors = -1;
        return NULL;
    }
    uint8_t *buf = malloc((size_t)j->o.tile_px * j->o.tile_px * 3);
    ss_tile_t tile;
    while (ss_tiler_next(t, &tile) == 1) {
        if (tile.row % j->nthreads != j->id) continue;
        if (ss_tiler_read(t, &tile, buf)) {
            ss_error_report(NULL);
            j->errors++;
            continue;
        }
        j->checksum += buf[(size_t)(tile.size / 2) * tile.size * 3];
        j->tiles++;
    }
    free(buf);
    ss_tiler_destroy(&t);
    ss_slide_destroy(&s);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr,
                "usage: tiler_bench SLIDE [--tile N] [--overlap-px N] [--mpp M] [--mask 0|1] "
                "[--threads N]\n");
        return 2;
    }
    job_t base = {0};
    base.path = argv[1];
    ss_tiling_opts_default(&base.o);
    base.o.overlap_px = 0;
    base.o.overlap_um = 0;
    base.o.use_mask = 0;
    base.nthreads = 1;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--tile"))
            base.o.tile_px = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--overlap-px"))
            base.o.overlap_px = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--mpp"))
            base.o.target_mpp = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--mask"))
            base.o.use_mask = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads"))
            base.nthreads = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "tiler_bench: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (base.nthreads < 1 || base.nthreads > 64) base.nthreads = 1;
    double t0 = ss_now();
    job_t jobs[64];
    pthread_t th[64];
    for (int i = 0; i < base.nthreads; i++) {
        jobs[i] = base;
        jobs[i].id = i;
        pthread_create(&th[i], NULL, work, &jobs[i]);
    }
    int64_t tiles = 0, errors = 0;
    for (int i = 0; i < base.nthreads; i++) {
        pthread_join(th[i], NULL);
        if (jobs[i].errors < 0) return 1;
        tiles += jobs[i].tiles;
        errors += jobs[i].errors;
    }
    double dt = ss_now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    /* CPU seconds make the comparison robust on a shared, loaded machine. */
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec * 1e-6;
    printf("tiles=%lld errors=%lld seconds=%.3f tiles_per_s=%.1f mpix_per_s=%.1f cpu_s=%.2f "
           "tiles_per_cpu_s=%.1f peak_rss_mb=%.1f threads=%d tile=%d overlap_px=%d mask=%d\n",
           (long long)tiles, (long long)errors, dt, tiles / dt,
           tiles * (double)base.o.tile_px * base.o.tile_px / dt / 1e6, cpu, tiles / cpu,
           ru.ru_maxrss / 1024.0, base.nthreads, base.o.tile_px, base.o.overlap_px,
           base.o.use_mask);
    return errors ? 1 : 0;
}
