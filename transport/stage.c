/* The stage runtime (see include/slidestream/transport.h): signal handling, the shutdown
 * broadcast, periodic status to the launcher and per-item fault records. */
#include "slidestream/transport.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/error.h"
#include "slidestream/log.h"

#define STATUS_EVERY_S 0.5
#define MAX_FAULT_LINES 20

struct ss_stage {
    char name[64];
    ss_sock_t *status;   /* PUSH to the launcher, may be NULL */
    ss_sock_t *shutdown; /* SUB to the broadcast, may be NULL */
    volatile int stop;
    ss_stage_counts_t counts;
    char unit[32];
    uint64_t total;
    char note[256];
    char last_fault[512];
    double start, last_status;
    ss_progress_t *progress;
    uint64_t shown;
};

static volatile sig_atomic_t g_signalled;

static void on_signal(int sig)
{
    g_signalled = sig;
    ss_transport_drop_pending(); /* only sets a flag: async-signal-safe */
}

static void check_shutdown(ss_stage_t *st);

static int stop_check(void *arg)
{
    ss_stage_t *st = arg;
    check_shutdown(st);
    return st->stop;
}

ss_stage_t *ss_stage_new(const char *name, const char *status_ep, const char *shutdown_ep)
{
    ss_stage_t *st = calloc(1, sizeof *st);
    if (!st) {
        ss_error("stage", "out of memory");
        return NULL;
    }
    snprintf(st->name, sizeof st->name, "%s", name);
    snprintf(st->unit, sizeof st->unit, "items");
    st->start = st->last_status = ss_now();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (status_ep && *status_ep && !(st->status = ss_sock_new(SS_PUSH, status_ep, 0, 1000)))
        goto fail;
    if (st->status) ss_sock_set_linger(st->status, 500); /* status is best-effort */
    ss_transport_set_stop_check(stop_check, st);
    if (shutdown_ep && *shutdown_ep &&
        !(st->shutdown = ss_sock_new(SS_SUB, shutdown_ep, 0, 100)))
        goto fail;
    return st;
fail:
    ss_error("stage", "%s: cannot set up its control sockets", name);
    ss_stage_destroy(&st);
    return NULL;
}

ss_stage_t *ss_stage_open(const char *default_name, const ss_stage_args_t *sa)
{
    const char *name = sa->name ? sa->name : default_name;
    ss_security_t *sec = ss_security_new(sa->keys, sa->trust, sa->insecure, name);
    if (!sec) return NULL;
    ss_transport_set_security(&sec);
    return ss_stage_new(name, sa->status, sa->shutdown);
}

void ss_stage_destroy(ss_stage_t **sp)
{
    if (!sp || !*sp) return;
    ss_stage_t *st = *sp;
    ss_transport_set_stop_check(NULL, NULL);
    ss_sock_destroy(&st->status);
    ss_sock_destroy(&st->shutdown);
    if (st->progress) ss_progress_destroy(&st->progress);
    free(st);
    *sp = NULL;
    ss_transport_term();
}

volatile int *ss_stage_stop_flag(ss_stage_t *st)
{
    return &st->stop;
}

static void check_shutdown(ss_stage_t *st)
{
    if (g_signalled) st->stop = 1;
    if (st->stop) ss_transport_drop_pending();
    if (!st->shutdown) return;
    for (;;) {
        ss_msg_t m;
        char why[128];
        int rc = ss_sock_recv(st->shutdown, &m, 0, why, sizeof why);
        if (rc == 1) {
            if (m.h.type == SS_MSG_SHUTDOWN) {
                st->stop = 1;
                ss_transport_drop_pending();
            }
            ss_msg_release(&m);
        } else if (rc != 2) {
            break;
        }
    }
}

int ss_stage_stopping(ss_stage_t *st)
{
    check_shutdown(st);
    return st->stop;
}

static void send_status(ss_stage_t *st, const char *state)
{
    st->last_status = ss_now();
    if (!st->status) return;
    char text[2048];
    snprintf(text, sizeof text,
             "stage=%s\nstate=%s\nunit=%s\ntotal=%llu\nin=%llu\nout=%llu\nerrors=%llu\n"
             "rejected=%llu\nelapsed=%.3f\n%s%s%s",
             st->name, state, st->unit, (unsigned long long)st->total,
             (unsigned long long)st->counts.in, (unsigned long long)st->counts.out,
             (unsigned long long)st->counts.errors, (unsigned long long)st->counts.rejected,
             st->last_status - st->start, st->note, st->last_fault[0] ? "last_fault=" : "",
             st->last_fault);
    ss_msg_header_t h = ss_msg_header_init(SS_MSG_STATS);
    /* Status must never block a stage: drop it if the launcher is not reading. */
    static volatile int never = 1;
    if (ss_sock_send_text(st->status, &h, text, &never) < 0) ss_error_clear();
}

void ss_stage_tick(ss_stage_t *st)
{
    check_shutdown(st);
    if (ss_now() - st->last_status >= STATUS_EVERY_S) send_status(st, "running");
}

int ss_stage_poll(ss_stage_t *st, ss_sock_t **socks, int n, int timeout_ms)
{
    zmq_pollitem_t items[17];
    if (n > 16) n = 16;
    double deadline = timeout_ms < 0 ? 1e300 : ss_now() + timeout_ms / 1000.0;
    for (;;) {
        ss_stage_tick(st);
        if (st->stop) return -2;
        int k = 0;
        for (int i = 0; i < n; i++) {
            items[i].socket = socks[i] ? ss_sock_handle(socks[i]) : NULL;
            items[i].fd = -1; /* a NULL socket with fd -1 is ignored */
            items[i].events = socks[i] ? ZMQ_POLLIN : 0;
            items[i].revents = 0;
            k++;
        }
        if (st->shutdown) {
            items[k].socket = ss_sock_handle(st->shutdown);
            items[k].fd = 0;
            items[k].events = ZMQ_POLLIN;
            items[k].revents = 0;
            k++;
        }
        double left = deadline - ss_now();
        int wait = left > 0.2 ? 200 : (left > 0 ? (int)(left * 1000) : 0);
        int rc = zmq_poll(items, k, wait);
        if (rc > 0)
            for (int i = 0; i < n; i++)
                if (items[i].revents & ZMQ_POLLIN) return i;
        if (ss_now() >= deadline) {
            ss_stage_tick(st);
            return st->stop ? -2 : -1;
        }
    }
}

int ss_stage_next(ss_stage_t *st, ss_sock_t **socks, int n, int timeout_ms, ss_msg_t *m,
                  int *which)
{
    int i = ss_stage_poll(st, socks, n, timeout_ms);
    if (i == -2) return -2;
    if (i < 0) return 0;
    char why[256];
    int r = ss_sock_recv(socks[i], m, 0, why, sizeof why);
    if (r == 2) {
        st->counts.rejected++;
        ss_stage_fault(st, "rejected a malformed message on %s: %s", ss_sock_endpoint(socks[i]),
                       why);
        return 0;
    }
    if (r != 1) {
        ss_error_clear();
        return 0;
    }
    if (which) *which = i;
    return 1;
}

ss_stage_counts_t *ss_stage_counts(ss_stage_t *st)
{
    return &st->counts;
}

void ss_stage_set_unit(ss_stage_t *st, const char *unit, uint64_t total)
{
    snprintf(st->unit, sizeof st->unit, "%s", unit);
    st->total = total;
}

void ss_stage_set_note(ss_stage_t *st, const char *key, const char *value)
{
    snprintf(st->note, sizeof st->note, "%s=%s\n", key, value);
}

void ss_stage_fault(ss_stage_t *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->last_fault, sizeof st->last_fault, fmt, ap);
    va_end(ap);
    for (char *p = st->last_fault; *p; p++)
        if (*p == '\n') *p = ' ';
    st->counts.errors++;
    if (st->counts.errors <= MAX_FAULT_LINES)
        fprintf(stderr, "slidestream %s: %s\n", st->name, st->last_fault);
    else if (st->counts.errors == MAX_FAULT_LINES + 1)
        fprintf(stderr, "slidestream %s: further faults are counted, not printed\n", st->name);
}

void ss_stage_flush_status(ss_stage_t *st, const char *state)
{
    send_status(st, state);
}
