/* tiler — opens each slide of a manifest (or the slides given as arguments), resolves its mpp,
 * skips empty glass and streams overlapping tiles at the target resolution.
 *   data out:    PUSH --out (binds by default): TILE messages
 *   control out: PUSH --control (connects by default) to the collector: SLIDE, COUNT, ERROR, END
 * An unreadable slide or tile is reported (stderr, an ERROR message, the run report) and the
 * stage goes on with the rest. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"
#include "slidestream/args.h"
#include "slidestream/cache.h"
#include "slidestream/encoder_id.h"
#include "slidestream/log.h"
#include "slidestream/manifest.h"
#include "slidestream/slide.h"
#include "slidestream/transport.h"

static int send_error(ss_sock_t *ctl, uint32_t slide, const char *text, volatile int *stop)
{
    ss_msg_header_t h = ss_msg_header_init(SS_MSG_ERROR);
    h.slide = slide;
    return ss_sock_send_text(ctl, &h, text, stop);
}

/* Stream one slide. Returns the number of tiles sent, or -1 when the slide failed (already
 * reported) and -2 when the stage must stop. */
static int64_t tile_slide(ss_stage_t *st, ss_sock_t *out, ss_sock_t *ctl, uint32_t idx,
                          const ss_manifest_row_t *row, const ss_tiling_opts_t *opts,
                          double flag_mpp, const char *geojson_dir)
{
    volatile int *stop = ss_stage_stop_flag(st);
    double mpp_override = row->mpp > 0 ? row->mpp : flag_mpp;
    const char *src = row->mpp > 0 ? "manifest" : "flag";
    ss_slide_t *s = ss_slide_open(row->path, mpp_override, src);
    ss_tiler_t *t = s ? ss_tiler_new(s, opts) : NULL;
    if (!t) {
        char msg[1024];
        snprintf(msg, sizeof msg, "slide '%s' (%s) skipped: %s", row->slide_id, row->path,
                 ss_error_last());
        ss_error_clear();
        ss_stage_fault(st, "%s", msg);
        send_error(ctl, idx, msg, stop);
        ss_slide_destroy(&s);
        return -1;
    }
    const ss_slide_info_t *info = ss_slide_info(s);
    ss_tiler_stats_t ts;
    ss_tiler_stats(t, &ts);
    if (geojson_dir && ss_tiler_mask(t)) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.mask.geojson", geojson_dir, row->slide_id);
        if (ss_mask_write_geojson(ss_tiler_mask(t), path)) {
            ss_stage_fault(st, "slide '%s': %s", row->slide_id, ss_error_last());
            ss_error_clear();
        }
    }
    char text[4096];
    snprintf(text, sizeof text,
             "id=%s\npath=%s\nlabel=%d\nsplit=%s\nmpp=%.6f\nmpp_source=%s\nwidth=%lld\n"
             "height=%lld\ntarget_mpp=%.6f\ntile=%d\noverlap=%d\ngrid=%lld\nkept=%lld\n"
             "skipped_empty=%lld\nformat=%s\n",
             row->slide_id, row->path, row->label, row->split, info->mpp_x, info->mpp_source,
             (long long)info->width, (long long)info->height, ts.target_mpp, opts->tile_px,
             ts.overlap_px, (long long)ts.grid, (long long)ts.kept, (long long)ts.skipped_empty,
             info->format);
    ss_msg_header_t sh = ss_msg_header_init(SS_MSG_SLIDE);
    sh.slide = idx;
    sh.label = row->label;
    if (ss_sock_send_text(ctl, &sh, text, stop)) goto stopped;
    ss_info("tiler: slide '%s': %lldx%lld, mpp %.4f (%s), %lld tiles of %d px at %.3f mpp "
            "(%lld empty skipped)", row->slide_id, (long long)info->width, (long long)info->height,
            info->mpp_x, info->mpp_source, (long long)ts.kept, opts->tile_px, ts.target_mpp,
            (long long)ts.skipped_empty);

    size_t T = (size_t)opts->tile_px;
    uint8_t *rgb = malloc(T * T * 3);
    if (!rgb) {
        ss_stage_fault(st, "slide '%s': out of memory", row->slide_id);
        ss_tiler_destroy(&t);
        ss_slide_destroy(&s);
        return -1;
    }
    ss_stage_set_unit(st, "tiles", ss_stage_counts(st)->out + (uint64_t)ts.kept);
    uint32_t part = 0;
    ss_tile_t tile;
    int64_t failed = 0;
    while (ss_tiler_next(t, &tile) == 1) {
        if (ss_stage_stopping(st)) break;
        if (ss_tiler_read(t, &tile, rgb)) {
            char msg[1024];
            snprintf(msg, sizeof msg, "slide '%s': tile %lld skipped: %s", row->slide_id,
                     (long long)tile.index, ss_error_last());
            ss_error_clear();
            ss_stage_fault(st, "%s", msg);
            send_error(ctl, idx, msg, stop);
            failed++;
            if (ss_slide_is_dead(s)) break;
            continue;
        }
        ss_msg_header_t h = ss_msg_header_init(SS_MSG_TILE);
        uint32_t dims[3] = {(uint32_t)T, (uint32_t)T, 3};
        ss_msg_header_set_payload(&h, SS_DT_U8, 3, dims);
        h.slide = idx;
        h.part = part;
        h.item = part;
        h.label = row->label;
        h.x = tile.x0;
        h.y = tile.y0;
        h.aux[0] = (int32_t)(tile.core_x - tile.x0);
        h.aux[1] = (int32_t)(tile.core_y - tile.y0);
        h.aux[2] = (int32_t)tile.core_w;
        h.aux[3] = (int32_t)tile.core_h;
        h.scale = (float)tile.scale_x;
        h.extra = (uint32_t)(tile.target_mpp * 1000.0 + 0.5);
        int r = ss_sock_send(out, &h, rgb, stop);
        if (r) {
            free(rgb);
            goto stopped;
        }
        part++;
        ss_stage_counts(st)->out++;
        ss_stage_tick(st);
    }
    free(rgb);
    if (ss_stage_stopping(st)) goto stopped;
    if (ss_slide_is_dead(s)) {
        char msg[512];
        snprintf(msg, sizeof msg, "slide '%s': the slide became unreadable after %u tiles; %lld "
                 "tiles were not read", row->slide_id, part, (long long)(ts.kept - part - failed));
        ss_stage_fault(st, "%s", msg);
        send_error(ctl, idx, msg, stop);
    }
    ss_msg_header_t ch = ss_msg_header_init(SS_MSG_COUNT);
    ch.slide = idx;
    ch.flags = SS_COUNT_PARTS;
    ch.item = part;
    ch.label = row->label;
    if (ss_sock_send(ctl, &ch, NULL, stop)) goto stopped;
    ss_tiler_destroy(&t);
    ss_slide_destroy(&s);
    return part;
stopped:
    ss_tiler_destroy(&t);
    ss_slide_destroy(&s);
    return -2;
}

int ss_main_tiler(int argc, char **argv)
{
    const char *manifest = NULL, *out_ep = NULL, *ctl_ep = NULL, *geojson_dir = NULL;
    const char *cache_dir = NULL, *ckpt = NULL, *feature = "pooled";
    double flag_mpp = 0;
    int hwm = 64, no_mask = 0;
    ss_tiling_opts_t opts;
    ss_tiling_opts_default(&opts);
    opts.target_mpp = 0;
    ss_stage_args_t sa = {0};
    ss_arg_t args[] = {
        {"--manifest", SS_ARG_STRING, &manifest, "CSV", "slides: slide_id,path,label[,split][,mpp]", 0, 0},
        {"--out", SS_ARG_STRING, &out_ep, "EP", "tile stream (PUSH, binds)", 0, 0},
        {"--control", SS_ARG_STRING, &ctl_ep, "EP", "the collector's announcements (PUSH, connects)", 0, 0},
        {"--target-mpp", SS_ARG_DOUBLE, &opts.target_mpp, "M", "microns per tile pixel (default: each slide's own)", 0.01, 100},
        {"--tile", SS_ARG_INT, &opts.tile_px, "PX", "tile size in target pixels (default 512)", 32, 8192},
        {"--overlap-um", SS_ARG_DOUBLE, &opts.overlap_um, "UM", "overlap >= largest cell diameter (default 20)", 0, 1000},
        {"--mpp", SS_ARG_DOUBLE, &flag_mpp, "M", "mpp for slides that do not store one", 0.01, 100},
        {"--no-mask", SS_ARG_FLAG, &no_mask, NULL, "tile empty glass too", 0, 0},
        {"--geojson-dir", SS_ARG_STRING, &geojson_dir, "DIR", "write each slide's foreground mask as QuPath GeoJSON", 0, 0},
        {"--hwm", SS_ARG_INT, &hwm, "N", "send high-water mark in tiles (default 64)", 1, 100000},
        {"--cache-dir", SS_ARG_STRING, &cache_dir, "DIR", "resume: skip slides whose embedding cache is complete", 0, 0},
        {"--checkpoint", SS_ARG_STRING, &ckpt, "CK.h5", "with --cache-dir: the encoder the cache must come from", 0, 0},
        {"--feature", SS_ARG_STRING, &feature, "pooled|projection", "with --cache-dir: the embedding kind (default pooled)", 0, 0},
        SS_STAGE_ARGS(sa),
        {0},
    };
    int npos = 0;
    char **pos = NULL;
    int rc = ss_args_parse(argc, argv,
                           "(--manifest CSV | SLIDE...) --out EP --control EP [options]\n\n"
                           "Streams overlapping tiles of each slide at the target resolution.",
                           args, &npos, &pos);
    if (rc) return rc > 0 ? 0 : (ss_error_report(NULL), 2);
    if ((!manifest) == (npos == 0)) {
        free(pos);
        ss_error_report("tiler: give either --manifest CSV or slide paths");
        return 2;
    }
    if (ss_args_require("tiler", "--out", out_ep) || ss_args_require("tiler", "--control", ctl_ep)) {
        free(pos);
        ss_error_report(NULL);
        return 2;
    }
    opts.use_mask = !no_mask;
    ss_log_set_quiet(sa.quiet);
    ss_manifest_t *m = manifest ? ss_manifest_load(manifest) : ss_manifest_from_paths(npos, pos);
    free(pos);
    if (!m) {
        ss_error_report(NULL);
        return 2;
    }
    if (geojson_dir) mkdir(geojson_dir, 0777);
    ss_encoder_id_t eid;
    if (cache_dir && (!ckpt || ss_encoder_id(ckpt, feature, &eid))) {
        if (!ckpt) ss_error("tiler", "--cache-dir needs --checkpoint (the cache must match it)");
        ss_error_report(NULL);
        ss_manifest_destroy(&m);
        return 2;
    }
    ss_stage_t *st = ss_stage_open("tiler", &sa);
    ss_sock_t *out = st ? ss_sock_new(SS_PUSH, out_ep, 1, hwm) : NULL;
    ss_sock_t *ctl = out ? ss_sock_new(SS_PUSH, ctl_ep, 0, 10000) : NULL;
    if (!ctl) {
        ss_error_report("tiler: cannot start");
        ss_sock_destroy(&out);
        ss_stage_destroy(&st);
        ss_manifest_destroy(&m);
        return 1;
    }
    ss_stage_set_unit(st, "tiles", 0);
    uint64_t announced = 0, failed = 0;
    int stopped = 0;
    uint64_t cached = 0;
    for (size_t i = 0; i < m->n && !stopped; i++) {
        if (cache_dir) {
            char why[512];
            ss_cache_hdf5_quiet();
            if (ss_cache_discard_partial(cache_dir, m->rows[i].slide_id) > 0)
                ss_info("tiler: slide '%s': removed a partial cache file left by an earlier run",
                        m->rows[i].slide_id);
            if (ss_cache_check(cache_dir, m->rows[i].slide_id, eid.hash, eid.feature,
                               eid.preprocessing, why, sizeof why) == 1) {
                ss_info("tiler: slide '%s': already cached, skipped", m->rows[i].slide_id);
                cached++;
                continue;
            }
        }
        int64_t r = tile_slide(st, out, ctl, (uint32_t)i, &m->rows[i], &opts, flag_mpp, geojson_dir);
        if (r == -2) stopped = 1;
        else if (r < 0) failed++;
        else announced++;
    }
    if (!stopped) {
        ss_msg_header_t h = ss_msg_header_init(SS_MSG_END);
        h.item = announced;
        ss_sock_send(ctl, &h, NULL, ss_stage_stop_flag(st));
    }
    ss_info("tiler: %llu slides tiled, %llu already cached, %llu failed, %llu tiles sent%s",
            (unsigned long long)announced, (unsigned long long)cached, (unsigned long long)failed,
            (unsigned long long)ss_stage_counts(st)->out, stopped ? " (stopped early)" : "");
    ss_stage_flush_status(st, stopped ? "stopped" : "done");
    ss_sock_destroy(&ctl);
    ss_sock_destroy(&out); /* linger lets queued tiles leave */
    ss_stage_destroy(&st);
    ss_manifest_destroy(&m);
    return stopped ? 1 : 0;
}
