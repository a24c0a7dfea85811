/* encoder — a scalable worker: pulls cell crops, normalises them with the checkpoint's mean/std,
 * batches them through the ResNet and pushes one embedding per cell, keyed like the cell.
 *   data in:  PULL --in (connects by default): CELL messages
 *   data out: PUSH --out (connects by default): EMBED messages (same slide/bag/item/geometry)
 * Start any number against one bag-builder, on this machine or others; each cell is embedded
 * by exactly one of them. Crops larger than the checkpoint's input size are centre-cropped;
 * smaller ones are refused (counted, reported), never resized silently. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "slidestream/args.h"
#include "slidestream/log.h"
#include "slidestream/nn_layers.h"
#include "slidestream/nn_preprocess.h"
#include "slidestream/nn_resnet.h"
#include "slidestream/transport.h"

typedef struct {
    ss_resnet_t *model;
    ss_resnet_output_t which;
    int S, batch, n;
    int deterministic;      /* one cell per forward pass: results independent of batching */
    float *y1;              /* (batch, dim) outputs gathered in deterministic mode */
    float *x;               /* (batch, 3, S, S) normalised input */
    ss_msg_header_t *heads; /* (batch) the cells' headers */
} batcher_t;

/* Normalise one crop (h, w, 3 u8) into slot `i`, centre-cropping to S (the caller has refused
 * crops smaller than S). */
static void put_crop(batcher_t *b, int i, const uint8_t *rgb, int w, int h)
{
    int S = b->S;
    ss_nn_normalise_u8(rgb, w, ss_nn_centre_offset(w, S), ss_nn_centre_offset(h, S), S,
                       b->model->cfg.mean, b->model->cfg.std, b->x + (size_t)i * 3 * S * S);
}

/* Run the batch and push its embeddings. 0 ok, 1 stopped, -1 error. */
static int flush(ss_stage_t *st, ss_sock_t *out, batcher_t *b)
{
    if (b->n == 0) return 0;
    int dim = 0;
    const float *y;
    if (b->deterministic) {
        /* The same shapes for every cell, so its embedding is bit-identical however the
         * cells were spread over encoders and batches. */
        size_t in = (size_t)3 * b->S * b->S;
        for (int i = 0; i < b->n; i++) {
            if (ss_resnet_forward(b->model, b->x + i * in, 1, 0)) return -1;
            const float *o = ss_resnet_output(b->model, b->which, &dim);
            if (!o) return ss_error("encoder", "the model has no such output");
            memcpy(b->y1 + (size_t)i * dim, o, (size_t)dim * sizeof *o);
        }
        y = b->y1;
    } else {
        if (ss_resnet_forward(b->model, b->x, b->n, 0)) return -1;
        y = ss_resnet_output(b->model, b->which, &dim);
        if (!y) return ss_error("encoder", "the model has no such output");
    }
    for (int i = 0; i < b->n; i++) {
        ss_msg_header_t h = b->heads[i];
        h.type = SS_MSG_EMBED;
        h.crop = (uint16_t)b->S;
        uint32_t d = (uint32_t)dim;
        ss_msg_header_set_payload(&h, SS_DT_F32, 1, &d);
        int r = ss_sock_send(out, &h, y + (size_t)i * dim, ss_stage_stop_flag(st));
        if (r) {
            b->n = 0;
            return r;
        }
        ss_stage_counts(st)->out++;
    }
    b->n = 0;
    return 0;
}

int ss_main_encoder(int argc, char **argv)
{
    const char *in_ep = NULL, *out_ep = NULL, *ckpt = NULL, *feature = "pooled";
    int batch = 32, threads = 0, hwm = 64, wait_ms = 50;
    batcher_t b = {0};
    ss_stage_args_t sa = {0};
    ss_arg_t args[] = {
        {"--checkpoint", SS_ARG_STRING, &ckpt, "CK.h5", "ResNet checkpoint (HDF5, state_dict names)", 0, 0},
        {"--feature", SS_ARG_STRING, &feature, "pooled|projection", "which vector is the embedding (default pooled)", 0, 0},
        {"--in", SS_ARG_STRING, &in_ep, "EP", "cell crops to pull (PULL, connects)", 0, 0},
        {"--out", SS_ARG_STRING, &out_ep, "EP", "embeddings (PUSH, connects)", 0, 0},
        {"--batch", SS_ARG_INT, &batch, "N", "cells per forward pass (default 32)", 1, 4096},
        {"--wait-ms", SS_ARG_INT, &wait_ms, "MS", "run a partial batch after MS quiet ms (default 50)", 0, 60000},
        {"--deterministic", SS_ARG_FLAG, &b.deterministic, NULL, "one cell per forward pass: embeddings bit-identical whatever the batching (slower)", 0, 0},
        {"--threads", SS_ARG_INT, &threads, "N", "compute threads (default: all cores)", 0, 1024},
        {"--hwm", SS_ARG_INT, &hwm, "N", "high-water mark (default 64)", 1, 1000000},
        SS_STAGE_ARGS(sa),
        {0},
    };
    int rc = ss_args_parse(argc, argv,
                           "--checkpoint CK.h5 --in EP --out EP [options]\n\n"
                           "Embeds cell crops with a ResNet; one EMBED message per CELL.",
                           args, NULL, NULL);
    if (rc) return rc > 0 ? 0 : (ss_error_report(NULL), 2);
    if (ss_args_require("encoder", "--checkpoint", ckpt) || ss_args_require("encoder", "--in", in_ep) ||
        ss_args_require("encoder", "--out", out_ep)) {
        ss_error_report(NULL);
        return 2;
    }
    if (!strcmp(feature, "pooled")) b.which = SS_RESNET_FEATURE;
    else if (!strcmp(feature, "projection")) b.which = SS_RESNET_PROJECTION;
    else {
        fprintf(stderr, "slidestream: encoder: --feature '%s': want pooled or projection\n", feature);
        return 2;
    }
    ss_log_set_quiet(sa.quiet);
    if (threads > 0) ss_nn_set_threads(threads);
    b.model = ss_resnet_new_from_checkpoint(ckpt, batch, 0);
    if (!b.model) {
        ss_error_report(NULL);
        return 1;
    }
    int dim = 0;
    if (b.which == SS_RESNET_PROJECTION && b.model->cfg.proj_out == 0) {
        fprintf(stderr, "slidestream: encoder: %s has no projection head; use --feature pooled\n", ckpt);
        ss_resnet_destroy(&b.model);
        return 2;
    }
    b.S = b.model->cfg.input_size;
    b.batch = batch;
    b.x = malloc((size_t)batch * 3 * b.S * b.S * sizeof *b.x);
    ss_resnet_output(b.model, b.which, &dim);
    b.y1 = b.deterministic ? malloc((size_t)batch * (dim > 0 ? dim : 1) * sizeof *b.y1) : NULL;
    b.heads = malloc((size_t)batch * sizeof *b.heads);
    ss_stage_t *st = ss_stage_open("encoder", &sa);
    ss_sock_t *in = st ? ss_sock_new(SS_PULL, in_ep, 0, hwm) : NULL;
    ss_sock_t *out = in ? ss_sock_new(SS_PUSH, out_ep, 0, hwm) : NULL;
    if (!out || !b.x || !b.heads || (b.deterministic && !b.y1)) {
        ss_error_report("encoder: cannot start");
        ss_sock_destroy(&out);
        ss_sock_destroy(&in);
        ss_stage_destroy(&st);
        free(b.x), free(b.heads), free(b.y1);
        ss_resnet_destroy(&b.model);
        return 1;
    }
    ss_resnet_output(b.model, b.which, &dim);
    ss_info("encoder: %s, input %d px, %s feature, batch %d, %d threads", ckpt, b.S, feature,
            batch, ss_nn_threads());
    ss_stage_set_unit(st, "cells", 0);
    ss_stage_counts_t *c = ss_stage_counts(st);
    int exit_code = 0;
    for (;;) {
        ss_msg_t m;
        int r = ss_stage_next(st, &in, 1, b.n ? wait_ms : 500, &m, NULL);
        if (r == -2) break;
        if (r != 1) {
            int r = flush(st, out, &b);
            if (r > 0) break;
            if (r < 0) {
                ss_error_report(NULL);
                exit_code = 1;
                break;
            }
            continue;
        }
        if (m.h.type != SS_MSG_CELL) {
            c->rejected++;
            ss_stage_fault(st, "expected CELL messages, got %s", ss_msg_type_name(m.h.type));
        } else if ((int)m.h.shape[0] < b.S || (int)m.h.shape[1] < b.S) {
            ss_stage_fault(st, "slide %u cell %llu: crop %ux%u is smaller than the encoder's "
                           "input %d px; set the cropper's --crop to at least %d",
                           m.h.slide, (unsigned long long)m.h.item, m.h.shape[1], m.h.shape[0],
                           b.S, b.S);
        } else {
            c->in++;
            b.heads[b.n] = m.h;
            put_crop(&b, b.n, m.data, (int)m.h.shape[1], (int)m.h.shape[0]);
            b.n++;
        }
        ss_msg_release(&m);
        if (b.n == b.batch) {
            int fr = flush(st, out, &b);
            if (fr > 0) break;
            if (fr < 0) {
                ss_error_report(NULL);
                exit_code = 1;
                break;
            }
        }
    }
    ss_stage_flush_status(st, exit_code ? "failed" : "stopped");
    ss_sock_destroy(&out);
    ss_sock_destroy(&in);
    ss_stage_destroy(&st);
    free(b.x);
    free(b.heads);
    free(b.y1);
    ss_resnet_destroy(&b.model);
    return exit_code;
}
