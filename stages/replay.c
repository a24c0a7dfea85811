/* replay — streams HDF5 embedding caches back into the pipeline exactly as live encoding would:
 * for each file, the bag's SLIDE description and counts to the collector, and one EMBED
 * message per row with the cell's keys and geometry. Downstream stages cannot tell the two
 * sources apart, so aggregators are trained and re-run without touching the slides.
 *   data out:    PUSH --out (binds by default): EMBED messages
 *   control out: PUSH --control (connects) to the collector: SLIDE, COUNT, ERROR, END
 * Arguments are cache files or folders of them (*.h5, sorted). A file that fails to open is
 * reported and skipped. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"
#include "slidestream/args.h"
#include "slidestream/cache.h"
#include "slidestream/log.h"
#include "slidestream/transport.h"

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Expand folders into their *.h5 files (sorted); keep files as given. */
static char **collect(int n, char **args, size_t *count)
{
    char **list = NULL;
    size_t k = 0, cap = 0;
    for (int i = 0; i < n; i++) {
        struct stat sb;
        int is_dir = stat(args[i], &sb) == 0 && S_ISDIR(sb.st_mode);
        size_t first = k;
        DIR *d = is_dir ? opendir(args[i]) : NULL;
        struct dirent *e;
        for (int once = !is_dir;;) {
            const char *name = NULL;
            char path[4096];
            if (once) {
                snprintf(path, sizeof path, "%s", args[i]);
                name = path;
            } else {
                if (!d || !(e = readdir(d))) break;
                size_t l = strlen(e->d_name);
                if (l < 4 || strcmp(e->d_name + l - 3, ".h5")) continue;
                snprintf(path, sizeof path, "%s/%s", args[i], e->d_name);
                name = path;
            }
            if (k == cap) {
                cap = cap ? 2 * cap : 64;
                char **nl = realloc(list, cap * sizeof *nl);
                if (!nl) break;
                list = nl;
            }
            list[k++] = strdup(name);
            if (once) break;
        }
        if (d) closedir(d);
        qsort(list + first, k - first, sizeof *list, cmp_str);
    }
    *count = k;
    return list;
}

/* Stream one file as bag `idx`. 0 sent, -1 failed (reported), -2 stop. */
static int replay_file(ss_stage_t *st, ss_sock_t *out, ss_sock_t *ctl, const char *path,
                       uint32_t idx, const char *split)
{
    volatile int *stop = ss_stage_stop_flag(st);
    ss_cache_reader_t *r = ss_cache_open(path);
    if (r && !ss_cache_is_complete(r)) {
        ss_error("replay", "%s is not marked complete", path);
        ss_cache_close(&r);
    }
    if (!r) {
        char msg[1024];
        snprintf(msg, sizeof msg, "cache '%s' skipped: %s", path, ss_error_last());
        ss_error_clear();
        ss_stage_fault(st, "%s", msg);
        ss_msg_header_t e = ss_msg_header_init(SS_MSG_ERROR);
        e.slide = idx;
        return ss_sock_send_text(ctl, &e, msg, stop) ? -2 : -1;
    }
    const ss_cache_meta_t *m = ss_cache_meta(r);
    if (split && strcmp(split, m->split ? m->split : "")) {
        ss_cache_close(&r);
        return 1;
    }
    int64_t n = ss_cache_rows(r);
    int dim = ss_cache_dim(r);
    char text[2048];
    snprintf(text, sizeof text, "id=%s\npath=%s\nlabel=%d\nsplit=%s\nmpp=%.6f\ntarget_mpp=%.6f\n"
             "encoder=%s\nencoder_hash=%s\nfeature=%s\nsource=cache\n",
             m->slide_id, path, m->label, m->split ? m->split : "", m->slide_mpp, m->target_mpp,
             m->encoder ? m->encoder : "", m->encoder_hash ? m->encoder_hash : "",
             m->feature ? m->feature : "");
    ss_msg_header_t sh = ss_msg_header_init(SS_MSG_SLIDE);
    sh.slide = sh.bag = idx;
    sh.label = m->label;
    if (ss_sock_send_text(ctl, &sh, text, stop)) goto stop;
    int block = SS_CACHE_CHUNK_ROWS;
    float *f = malloc((size_t)block * dim * sizeof *f);
    int64_t *centres = malloc((size_t)block * 2 * sizeof *centres);
    uint64_t *ids = malloc((size_t)block * sizeof *ids);
    int32_t *bb = malloc((size_t)block * 4 * sizeof *bb);
    uint32_t *areas = malloc((size_t)block * sizeof *areas);
    int rc = 0;
    int64_t nsent = 0;
    if (!f || !centres || !ids || !bb || !areas) rc = ss_error("replay", "out of memory");
    double scale = m->patch_size > 0 && m->patch_size_level0 > 0
                       ? (double)m->patch_size_level0 / m->patch_size : 1.0;
    for (int64_t s = 0; s < n && !rc; s += block) {
        int k = n - s < block ? (int)(n - s) : block;
        if (ss_cache_read(r, s, k, f, NULL, centres, ids, bb, areas)) {
            rc = -1;
            break;
        }
        for (int i = 0; i < k; i++) {
            ss_msg_header_t h = ss_msg_header_init(SS_MSG_EMBED);
            uint32_t d = (uint32_t)dim;
            ss_msg_header_set_payload(&h, SS_DT_F32, 1, &d);
            h.slide = h.bag = idx;
            h.label = m->label;
            h.item = ids[i];
            h.x = centres[2 * i];
            h.y = centres[2 * i + 1];
            h.aux[0] = bb[4 * i];
            h.aux[1] = bb[4 * i + 1];
            h.aux[2] = bb[4 * i + 2] - bb[4 * i];
            h.aux[3] = bb[4 * i + 3] - bb[4 * i + 1];
            h.area = areas[i];
            h.crop = (uint16_t)(m->patch_size > 0 && m->patch_size < 65536 ? m->patch_size : 0);
            h.scale = (float)scale;
            h.extra = (uint32_t)llround(m->target_mpp * 1000.0);
            int sr = ss_sock_send(out, &h, f + (size_t)i * dim, stop);
            if (sr) {
                rc = sr > 0 ? -2 : -1;
                break;
            }
            ss_stage_counts(st)->out++;
            nsent++;
        }
        ss_stage_tick(st);
    }
    free(f), free(centres), free(ids), free(bb), free(areas);
    if (rc == -2) goto stop;
    if (rc) {
        char msg[1024];
        snprintf(msg, sizeof msg, "cache '%s': %s", path, ss_error_last());
        ss_error_clear();
        ss_stage_fault(st, "%s", msg);
    }
    /* Announce what was sent, so the collector can tell a complete bag. */
    ss_msg_header_t c = ss_msg_header_init(SS_MSG_COUNT);
    c.slide = c.bag = idx;
    c.label = m->label;
    c.flags = SS_COUNT_PARTS;
    c.item = 1;
    if (ss_sock_send(ctl, &c, NULL, stop)) goto stop;
    c.flags = SS_COUNT_ITEMS;
    c.item = (uint64_t)nsent; /* what went out; a read fault is reported above */
    if (ss_sock_send(ctl, &c, NULL, stop)) goto stop;
    ss_cache_close(&r);
    return rc ? -1 : 0;
stop:
    ss_cache_close(&r);
    return -2;
}

int ss_main_replay(int argc, char **argv)
{
    const char *out_ep = NULL, *ctl_ep = NULL, *split = NULL;
    int hwm = 1000;
    ss_stage_args_t sa = {0};
    ss_arg_t args[] = {
        {"--out", SS_ARG_STRING, &out_ep, "EP", "embeddings (PUSH, binds)", 0, 0},
        {"--control", SS_ARG_STRING, &ctl_ep, "EP", "the collector's announcements (PUSH, connects)", 0, 0},
        {"--split", SS_ARG_STRING, &split, "NAME", "only bags of this split (train, test, ...)", 0, 0},
        {"--hwm", SS_ARG_INT, &hwm, "N", "send high-water mark (default 1000)", 1, 10000000},
        SS_STAGE_ARGS(sa),
        {0},
    };
    int npos = 0;
    char **pos = NULL;
    int rc = ss_args_parse(argc, argv,
                           "--out EP --control EP [--split NAME] CACHE.h5|DIR...\n\n"
                           "Streams embedding caches as live encoding would.",
                           args, &npos, &pos);
    if (rc) return rc > 0 ? 0 : (ss_error_report(NULL), 2);
    if (ss_args_require("replay", "--out", out_ep) || ss_args_require("replay", "--control", ctl_ep) ||
        npos == 0) {
        if (npos == 0) ss_error("replay", "no cache files or folders given");
        free(pos);
        ss_error_report(NULL);
        return 2;
    }
    ss_log_set_quiet(sa.quiet);
    ss_cache_hdf5_quiet();
    size_t nfiles = 0;
    char **files = collect(npos, pos, &nfiles);
    free(pos);
    ss_stage_t *st = ss_stage_open("replay", &sa);
    ss_sock_t *out = st ? ss_sock_new(SS_PUSH, out_ep, 1, hwm) : NULL;
    ss_sock_t *ctl = out ? ss_sock_new(SS_PUSH, ctl_ep, 0, 100000) : NULL;
    if (!ctl) {
        ss_error_report("replay: cannot start");
        ss_sock_destroy(&out);
        ss_stage_destroy(&st);
        for (size_t i = 0; i < nfiles; i++) free(files[i]);
        free(files);
        return 1;
    }
    ss_stage_set_unit(st, "embeddings", 0);
    uint64_t sent = 0, failed = 0;
    int stopped = 0;
    for (size_t i = 0; i < nfiles && !stopped; i++) {
        int r = replay_file(st, out, ctl, files[i], (uint32_t)i, split);
        if (r == -2) stopped = 1;
        else if (r == 0) sent++;
        else if (r < 0) failed++;
    }
    if (!stopped) {
        ss_msg_header_t e = ss_msg_header_init(SS_MSG_END);
        e.item = sent;
        ss_sock_send(ctl, &e, NULL, ss_stage_stop_flag(st));
    }
    ss_info("replay: %llu bags streamed, %llu failed, %llu embeddings", (unsigned long long)sent,
            (unsigned long long)failed, (unsigned long long)ss_stage_counts(st)->out);
    ss_stage_flush_status(st, stopped ? "stopped" : "done");
    for (size_t i = 0; i < nfiles; i++) free(files[i]);
    free(files);
    ss_sock_destroy(&ctl);
    ss_sock_destroy(&out);
    ss_stage_destroy(&st);
    return stopped ? 1 : 0; /* failed files are faults in the report, not a dead stage */
}
