/* slidestream — the stage runtime: sockets, polling, shutdown, status and counted completion.
 *
 * Endpoints follow the CZMQ convention: "@tcp://0.0.0.0:5555" binds, ">tcp://host:5555" connects, and
 * a bare endpoint takes the socket role's default (stable stages bind, scalable ones connect).
 * Every socket gets an explicit high-water mark and linger. One ZeroMQ context per process.
 *
 * A stage (ss_stage_t) owns the process-wide plumbing: SIGINT/SIGTERM handling, the shutdown
 * broadcast (SUB), the status stream to the launcher (PUSH of STATS messages) and the counters
 * shown in progress lines and run reports. Sends block at the HWM (backpressure) but give up
 * when a shutdown arrives, so no stage hangs on a dead peer.
 */
#ifndef SLIDESTREAM_TRANSPORT_H
#define SLIDESTREAM_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "slidestream/args.h"
#include "slidestream/wire.h"

typedef enum { SS_PUSH, SS_PULL, SS_PUB, SS_SUB } ss_sock_kind_t;

typedef struct ss_sock ss_sock_t;

/* Create a socket and bind or connect it. `default_bind` applies to bare endpoints. `hwm` is
 * the send and receive high-water mark in messages. PUSH sockets linger until their queue is
 * taken (a finished producer loses nothing at exit); everything else lingers 0. After
 * ss_transport_drop_pending() (a stage told to stop), sockets close without lingering. */
ss_sock_t *ss_sock_new(ss_sock_kind_t kind, const char *endpoint, int default_bind, int hwm);
void ss_sock_destroy(ss_sock_t **s);
/* End the process's ZeroMQ context after every socket is closed: waits for queued messages
 * to leave (up to each socket's linger). Mains call it (via ss_stage_destroy) before exit. */
void ss_transport_term(void);
void ss_transport_drop_pending(void);
/* A check polled every 100 ms while a send waits at the HWM: non-zero abandons the send. The
 * stage runtime registers its shutdown/signal check here. */
void ss_transport_set_stop_check(int (*fn)(void *), void *arg);
void ss_sock_set_linger(ss_sock_t *s, int ms);
void *ss_sock_handle(ss_sock_t *s);
const char *ss_sock_endpoint(const ss_sock_t *s); /* as bound/connected, without @/> */
/* For wildcard-port binds ("@tcp://host:*"): the endpoint the system actually chose. */
const char *ss_sock_last_endpoint(ss_sock_t *s);

/* A received, validated message. `data` points into the payload frame (may be unaligned:
 * copy before reading floats). Release with ss_msg_release. */
typedef struct {
    ss_msg_header_t h;
    const void *data;
    size_t size;
    zmq_msg_t frame_; /* private */
    int has_frame_;
} ss_msg_t;

void ss_msg_release(ss_msg_t *m);

/* Send one message (header + payload). Blocks at the HWM until sent or `stop` becomes true;
 * returns 0 when sent, 1 when abandoned because of stop, -1 on error. With *stop already set
 * it sends only if there is room right now (status messages never block a stage). */
int ss_sock_send(ss_sock_t *s, const ss_msg_header_t *h, const void *payload,
                 volatile int *stop);

/* Receive one message if available within timeout_ms (-1 = forever). Returns 1 with *m
 * filled, 0 on timeout/interrupt, -1 on socket error, and 2 when a message arrived but was
 * malformed: it was dropped and *why says why (the caller counts it). */
int ss_sock_recv(ss_sock_t *s, ss_msg_t *m, int timeout_ms, char *why, size_t why_size);

/* Convenience for text payload messages (SLIDE, ERROR, STATS). */
int ss_sock_send_text(ss_sock_t *s, ss_msg_header_t *h, const char *text, volatile int *stop);

/* Read "key=value" from a text payload (lines separated by \n). Copies the value into out
 * and returns 0; -1 when absent. */
int ss_text_get(const void *text, size_t len, const char *key, char *out, size_t out_size);

/* ---- security: CURVE on tcp, private ipc directories (docs/transport-security.md) ------- */

/* A process's transport security: its own CURVE key pair (KEYS/key.pub, KEYS/key.secret), the
 * public keys it trusts (a .pub file or a directory of *.pub files) and whether a tcp bind on a
 * non-loopback address without keys is allowed (--insecure).
 *
 * With keys, every tcp socket speaks CURVE: a binding socket is the CURVE server and accepts
 * only clients whose public key is its own or a trusted one (others are refused, and logged
 * with their address); a connecting socket is the client and authenticates the server by the
 * key its endpoint's host names: TRUST/HOST.pub; else, for a loopback host, this process's own
 * key; else the one trusted key (or its own key when none is). ipc:// and inproc:// are never
 * encrypted; an ipc bind in a directory other users can enter draws a warning.
 * Without keys, a bind on a non-loopback tcp address is refused unless `insecure`. */
typedef struct ss_security ss_security_t;

/* keys_dir NULL: no keys (trust must then be NULL too). `who` names the stage in logs. Errors
 * name the offending file (missing, malformed, a secret key others can read, mismatched pair). */
ss_security_t *ss_security_new(const char *keys_dir, const char *trust, int insecure,
                               const char *who);
void ss_security_destroy(ss_security_t **s);
/* This process's public key in Z85 (40 characters), or NULL without keys. */
const char *ss_security_public_key(const ss_security_t *s);
/* Install the process-wide security every ss_sock_new uses (takes ownership; NULL = none: no
 * keys, no --insecure). Freed by ss_transport_term. */
void ss_transport_set_security(ss_security_t **s);
/* ss_sock_new with an explicit security (NULL = none) instead of the process-wide one. The
 * security must outlive the socket. */
ss_sock_t *ss_sock_new_secure(ss_sock_kind_t kind, const char *endpoint, int default_bind,
                              int hwm, const ss_security_t *sec);

/* Write a new key pair into dir (created 0700 if missing): key.secret (mode 0600) and key.pub.
 * Refuses to replace an existing pair unless `force`. Fills pub_z85 (41 bytes) when not NULL. */
int ss_keys_new(const char *dir, int force, char *pub_z85);

/* Make (or check) a run directory that only its owner can enter: created 0700 (parents as
 * the umask says); an existing one of another user is refused, one that others can enter is
 * made 0700 with a warning. */
int ss_rundir_prepare(const char *dir);

/* ---- stage runtime ---------------------------------------------------------------------- */

typedef struct ss_stage ss_stage_t;

typedef struct {
    uint64_t in, out, errors, rejected;
} ss_stage_counts_t;

/* `name` names the stage in reports; status_ep (PUSH, connects) and shutdown_ep (SUB,
 * connects) may be NULL when the stage runs on its own. Installs SIGINT/SIGTERM handlers. */
ss_stage_t *ss_stage_new(const char *name, const char *status_ep, const char *shutdown_ep);
/* What a stage main calls: the common flags in one place. Installs the process-wide security
 * from --keys/--trust/--insecure, then ss_stage_new with --name (default `default_name`),
 * --status and --shutdown. Call it before creating any socket. */
ss_stage_t *ss_stage_open(const char *default_name, const ss_stage_args_t *sa);
/* Closes the stage's sockets and ends the ZeroMQ context (ss_transport_term): call it last,
 * after the main closed its own sockets. */
void ss_stage_destroy(ss_stage_t **st);

/* Pointer to a flag that becomes non-zero on a signal or a shutdown broadcast; pass it to
 * ss_sock_send. ss_stage_poll and ss_stage_tick refresh it. */
volatile int *ss_stage_stop_flag(ss_stage_t *st);
int ss_stage_stopping(ss_stage_t *st);

/* Wait up to timeout_ms for input on any of `socks` (which may contain NULLs); also watches
 * the shutdown socket and signals. Returns the index of a readable socket, -1 on timeout, -2
 * when the stage must stop. Sends status when due. */
int ss_stage_poll(ss_stage_t *st, ss_sock_t **socks, int n, int timeout_ms);

/* ss_stage_poll + receive: waits up to timeout_ms for a message on any of `socks`. Returns 1
 * with *m filled (and *which = its socket's index), 0 when nothing came, -2 when the stage must
 * stop. A malformed message is counted as rejected, reported, and skipped (returns 0). */
int ss_stage_next(ss_stage_t *st, ss_sock_t **socks, int n, int timeout_ms, ss_msg_t *m,
                  int *which);

/* Let the stage send status when due and check for shutdown; for loops that never poll. */
void ss_stage_tick(ss_stage_t *st);

ss_stage_counts_t *ss_stage_counts(ss_stage_t *st);
/* Units shown in progress ("tiles", "cells") and the expected total if known. */
void ss_stage_set_unit(ss_stage_t *st, const char *unit, uint64_t total);
/* Extra "key=value" appended to status messages (e.g. "missing=3"); replaces the previous. */
void ss_stage_set_note(ss_stage_t *st, const char *key, const char *value);
/* Record one per-item fault: counts it, logs "stage: what" on stderr, keeps it for status. */
void ss_stage_fault(ss_stage_t *st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Send a final status message now (call before exiting). */
void ss_stage_flush_status(ss_stage_t *st, const char *state);

/* ---- counted completion ----------------------------------------------------------------- */

/* The collector's ledger. Producers announce how many parts (tiles) a slide has and how many
 * items (cells) each part yielded; data messages carry (slide, part, item). A slide is
 * complete when every announced part has announced its items and all of them arrived. With
 * parts_are_items, each part is itself the one item (a tile stream). Duplicates (the same
 * slide/item twice) are detected and refused. */
typedef struct ss_tally ss_tally_t;

ss_tally_t *ss_tally_new(int parts_are_items);
void ss_tally_destroy(ss_tally_t **t);
int ss_tally_parts(ss_tally_t *t, uint32_t slide, uint64_t nparts);
int ss_tally_part_items(ss_tally_t *t, uint32_t slide, uint32_t part, uint64_t nitems);
/* Returns 0 for a new item, 1 for a duplicate (not counted), -1 on error. */
int ss_tally_item(ss_tally_t *t, uint32_t slide, uint32_t part, uint64_t item);
int ss_tally_complete(const ss_tally_t *t, uint32_t slide);
/* Apply a COUNT message (parts of a slide, or items of a part). */
int ss_tally_count(ss_tally_t *t, const ss_msg_header_t *h);
uint64_t ss_tally_items(const ss_tally_t *t, uint32_t slide);
/* Slides seen (announced or with data), in increasing id order: fills up to n ids. */
size_t ss_tally_slides(const ss_tally_t *t, uint32_t *ids, size_t n);
/* One line describing what slide `slide` still lacks ("" when complete). */
void ss_tally_describe(const ss_tally_t *t, uint32_t slide, char *buf, size_t n);

#endif
