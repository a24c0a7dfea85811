/* Transport security (docs/transport-security.md): the CURVE options of tcp sockets, the ZAP
 * handler that admits or refuses CURVE clients by their public key, the refusal of a
 * non-loopback tcp bind without keys, and the private directories of ipc endpoints.
 *
 * Ownership: an ss_security_t belongs to its creator (the process-wide one to the transport,
 * after ss_transport_set_security); it registers itself so that the ZAP handler, a thread of
 * this module, can find it by the ZAP domain of the socket that asks. The handler owns its
 * REP socket and ends when the ZeroMQ context is terminated. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "security_internal.h"
#include "slidestream/error.h"
#include "slidestream/log.h"
#include "slidestream/pipeline.h"

#define MAX_SECURITIES 64
#define MAX_LOGGED 32 /* distinct refused (address, key) pairs printed per security */

struct ss_security {
    int id; /* its ZAP domain prefix */
    char who[64];
    int has_keys, insecure;
    uint8_t pub[SS_KEY_BYTES], secret[SS_KEY_BYTES];
    char pub_z85[SS_KEY_Z85];
    char keys_dir[1024], trust[1024];
    int trust_is_dir;
    ss_peer_key_t *peers;
    size_t npeers;
    /* refusals, guarded by g_lock */
    struct {
        char addr[64];
        uint8_t key[SS_KEY_BYTES];
    } logged[MAX_LOGGED];
    int nlogged;
    unsigned long refused;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static ss_security_t *g_registry[MAX_SECURITIES];
static int g_next_id = 1;
static pthread_t g_thread; /* the security thread: ZAP handler and handshake monitors */
static int g_thread_running;
static ss_security_t *g_default;

static void wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

/* ---- the security object ---------------------------------------------------------------- */

static int load_keys(ss_security_t *s, const char *dir)
{
    if (!zmq_has("curve"))
        return ss_error("keys", "--keys %s: this libzmq was built without CURVE security", dir);
    char sec_path[1100], pub_path[1100];
    snprintf(sec_path, sizeof sec_path, "%s/key.secret", dir);
    snprintf(pub_path, sizeof pub_path, "%s/key.pub", dir);
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode))
        return ss_error("keys",
                        "--keys %s: not a directory (make a key pair with `slidestream "
                        "keys new %s`)",
                        dir, dir);
    if (ss_key_read(sec_path, 1, s->secret) || ss_key_read(pub_path, 0, s->pub)) return -1;
    /* The pair must belong together: a stale key.pub would be handed to peers in vain. */
    char sec_z85[SS_KEY_Z85], derived[SS_KEY_Z85];
    int rc =
        !zmq_z85_encode(sec_z85, s->secret, SS_KEY_BYTES) || zmq_curve_public(derived, sec_z85);
    wipe(sec_z85, sizeof sec_z85);
    if (rc) return ss_error("keys", "%s: cannot derive its public key", sec_path);
    zmq_z85_encode(s->pub_z85, s->pub, SS_KEY_BYTES);
    if (strcmp(derived, s->pub_z85))
        return ss_error("keys",
                        "%s is not the public half of %s (make a new pair with "
                        "`slidestream keys new --force %s`)",
                        pub_path, sec_path, dir);
    s->has_keys = 1;
    return 0;
}

ss_security_t *ss_security_new(const char *keys_dir, const char *trust, int insecure,
                               const char *who)
{
    if (keys_dir && !*keys_dir) {
        ss_error("keys", "--keys: empty directory name");
        return NULL;
    }
    if (trust && !keys_dir) {
        ss_error("keys",
                 "--trust %s needs --keys DIR too (this stage's own key pair; "
                 "`slidestream keys new DIR` makes one)",
                 trust);
        return NULL;
    }
    if (insecure && keys_dir) {
        ss_error("keys",
                 "--insecure and --keys %s: choose one (with keys every tcp socket is "
                 "encrypted)",
                 keys_dir);
        return NULL;
    }
    ss_security_t *s = calloc(1, sizeof *s);
    if (!s) {
        ss_error("keys", "out of memory");
        return NULL;
    }
    snprintf(s->who, sizeof s->who, "%s", who && *who ? who : "transport");
    s->insecure = insecure;
    if (keys_dir) {
        snprintf(s->keys_dir, sizeof s->keys_dir, "%s", keys_dir);
        if (load_keys(s, keys_dir)) goto fail;
    }
    if (trust) {
        snprintf(s->trust, sizeof s->trust, "%s", trust);
        if (ss_trust_load(trust, &s->peers, &s->npeers, &s->trust_is_dir)) goto fail;
    }
    pthread_mutex_lock(&g_lock);
    int slot = -1;
    for (int i = 0; i < MAX_SECURITIES && slot < 0; i++)
        if (!g_registry[i]) slot = i;
    if (slot >= 0) {
        g_registry[slot] = s;
        s->id = g_next_id++;
    }
    pthread_mutex_unlock(&g_lock);
    if (slot < 0) {
        ss_error("keys", "more than %d security settings at once", MAX_SECURITIES);
        goto fail;
    }
    return s;
fail:
    wipe(s->secret, sizeof s->secret);
    free(s->peers);
    free(s);
    return NULL;
}

void ss_security_destroy(ss_security_t **sp)
{
    if (!sp || !*sp) return;
    ss_security_t *s = *sp;
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < MAX_SECURITIES; i++)
        if (g_registry[i] == s) g_registry[i] = NULL;
    pthread_mutex_unlock(&g_lock);
    wipe(s->secret, sizeof s->secret);
    free(s->peers);
    free(s);
    *sp = NULL;
}

const char *ss_security_public_key(const ss_security_t *s)
{
    return s && s->has_keys ? s->pub_z85 : NULL;
}

void ss_transport_set_security(ss_security_t **s)
{
    ss_security_destroy(&g_default);
    if (s) {
        g_default = *s;
        *s = NULL;
    }
}

const ss_security_t *ss_security_default(void)
{
    return g_default;
}

/* ---- the ZAP handler (RFC 27): admits a CURVE client when its key is trusted ------------- */

/* Decide on one request; fills what to print when it is a refusal worth printing. */
static int zap_decide(const char *domain, const char *addr, const char *mech, const uint8_t *key,
                      size_t key_size, char *user, size_t user_size, char *log, size_t log_size)
{
    *log = '\0';
    char *end;
    long id = strtol(domain, &end, 10);
    const char *ep = *end == ' ' ? end + 1 : domain;
    int ok = 0;
    pthread_mutex_lock(&g_lock);
    ss_security_t *s = NULL;
    for (int i = 0; i < MAX_SECURITIES && !s; i++)
        if (g_registry[i] && g_registry[i]->id == id) s = g_registry[i];
    if (s && !strcmp(mech, "CURVE") && key_size == SS_KEY_BYTES) {
        if (!memcmp(key, s->pub, SS_KEY_BYTES)) {
            snprintf(user, user_size, "%s", s->keys_dir);
            ok = 1;
        }
        for (size_t i = 0; !ok && i < s->npeers; i++)
            if (!memcmp(key, s->peers[i].key, SS_KEY_BYTES)) {
                snprintf(user, user_size, "%s", s->peers[i].name);
                ok = 1;
            }
    }
    if (!ok && s) {
        s->refused++;
        int seen = 0;
        for (int i = 0; i < s->nlogged && !seen; i++)
            seen = !strcmp(s->logged[i].addr, addr) &&
                   (key_size != SS_KEY_BYTES || !memcmp(s->logged[i].key, key, SS_KEY_BYTES));
        if (!seen && s->nlogged < MAX_LOGGED) {
            int k = s->nlogged++;
            snprintf(s->logged[k].addr, sizeof s->logged[k].addr, "%s", addr);
            if (key_size == SS_KEY_BYTES) memcpy(s->logged[k].key, key, SS_KEY_BYTES);
            char z85[SS_KEY_Z85] = "?";
            if (key_size == SS_KEY_BYTES) zmq_z85_encode(z85, key, SS_KEY_BYTES);
            snprintf(log, log_size,
                     "slidestream %s: refused a peer at %s on %s: its public key %s is not "
                     "trusted (trusted: %s/key.pub%s%s)%s\n",
                     s->who, addr, ep, z85, s->keys_dir, s->npeers ? " and the keys in " : "",
                     s->npeers ? s->trust : "",
                     s->nlogged == MAX_LOGGED ? "; further refusals are not printed" : "");
        }
    } else if (!s) {
        snprintf(log, log_size, "slidestream: refused a peer at %s: unknown ZAP domain '%s'\n",
                 addr, domain);
    }
    pthread_mutex_unlock(&g_lock);
    return ok;
}

static void frame_text(zmq_msg_t *f, char *out, size_t n)
{
    size_t len = zmq_msg_size(f);
    if (len >= n) len = n - 1;
    memcpy(out, zmq_msg_data(f), len);
    out[len] = '\0';
}

/* Request: version, request id, domain, address, routing id, mechanism, credentials.
 * Reply:   version, request id, status code, status text, user id, metadata. */
static void zap_answer(void *rep, zmq_msg_t *f, int n)
{
    char version[8] = "", domain[256] = "", addr[64] = "", mech[16] = "", user[1100] = "";
    char log[3000] = "";
    int ok = 0;
    if (n >= 7) {
        frame_text(&f[0], version, sizeof version);
        frame_text(&f[2], domain, sizeof domain);
        frame_text(&f[3], addr, sizeof addr);
        frame_text(&f[5], mech, sizeof mech);
        if (!strcmp(version, "1.0"))
            ok = zap_decide(domain, addr, mech, zmq_msg_data(&f[6]), zmq_msg_size(&f[6]), user,
                            sizeof user, log, sizeof log);
    }
    if (*log) fputs(log, stderr);
    const void *id = n >= 2 ? zmq_msg_data(&f[1]) : "";
    size_t id_size = n >= 2 ? zmq_msg_size(&f[1]) : 0;
    const char *text = ok ? "OK" : "key not trusted";
    zmq_send(rep, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(rep, id, id_size, ZMQ_SNDMORE);
    zmq_send(rep, ok ? "200" : "400", 3, ZMQ_SNDMORE);
    zmq_send(rep, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(rep, user, ok ? strlen(user) : 0, ZMQ_SNDMORE);
    zmq_send(rep, "", 0, 0);
}

/* ---- handshake failures: socket monitors, so that neither side of a failed CURVE handshake
 * waits in silence (a refused client is not retried by libzmq) ---------------------------- */

#define MAX_MONITORS 128
#define MONITOR_EVENTS                                                                             \
    (ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |                  \
     ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_SUCCEEDED)

typedef struct {
    void *pair;        /* our end of the monitor; the thread's once registered */
    const void *owner; /* the monitored socket, as an identity only */
    int closing, server;
    struct {
        uint16_t event;
        uint32_t value;
    } printed[8]; /* failures already printed since the last success */
    int nprinted;
    char ep[256], who[64], expect[1100]; /* expect: the server key a client uses, and why */
} monitor_t;

static monitor_t g_monitors[MAX_MONITORS]; /* guarded by g_lock */

static void describe_failure(const monitor_t *m, unsigned event, uint32_t value, char *out,
                             size_t n)
{
    *out = '\0';
    int mismatch = value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH;
    if (m->server) {
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL && mismatch)
            snprintf(out, n,
                     "a peer on %s was refused: it spoke without CURVE (it needs --keys "
                     "too)",
                     m->ep);
        else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
            snprintf(out, n,
                     "a peer on %s failed the CURVE handshake (protocol error 0x%x: "
                     "does it expect another key for this server?)",
                     m->ep, value);
        else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
            snprintf(out, n,
                     "a peer on %s hung up during the CURVE handshake (%s): does it "
                     "run with --keys, and expect this server's key?",
                     m->ep, strerror((int)value));
        return; /* a refused key is printed by the ZAP handler, with the peer's address */
    }
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
        snprintf(out, n,
                 "%s refused this stage's key (status %u): that server's --trust must "
                 "hold this stage's key.pub",
                 m->ep, value);
    else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL && mismatch)
        snprintf(out, n, "%s does not speak CURVE: that stage needs --keys too", m->ep);
    else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
        snprintf(out, n, "the CURVE handshake with %s failed (protocol error 0x%x)", m->ep, value);
    else
        snprintf(out, n,
                 "the CURVE handshake with the server at %s failed (%s): does that "
                 "stage run with --keys, and is its key the one this stage expects (%s)?",
                 m->ep, strerror((int)value), m->expect);
}

/* One monitor event (two frames: event id and value, then an endpoint). */
static void monitor_read(int slot)
{
    zmq_msg_t f[2];
    zmq_msg_init(&f[0]);
    zmq_msg_init(&f[1]);
    void *pair = g_monitors[slot].pair;
    if (zmq_msg_recv(&f[0], pair, ZMQ_DONTWAIT) < 0) goto out;
    if (zmq_msg_more(&f[0]) && zmq_msg_recv(&f[1], pair, ZMQ_DONTWAIT) < 0) goto out;
    if (zmq_msg_size(&f[0]) < 6) goto out;
    uint16_t event;
    uint32_t value;
    memcpy(&event, zmq_msg_data(&f[0]), 2);
    memcpy(&value, (const char *)zmq_msg_data(&f[0]) + 2, 4);
    char line[2048] = "", text[1800];
    pthread_mutex_lock(&g_lock);
    monitor_t *m = &g_monitors[slot];
    int seen = 0;
    for (int i = 0; i < m->nprinted && !seen; i++)
        seen = m->printed[i].event == event && m->printed[i].value == value;
    if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
        m->nprinted = 0;
    } else if (!seen && m->nprinted < 8) {
        describe_failure(m, event, value, text, sizeof text);
        if (*text) {
            m->printed[m->nprinted].event = event;
            m->printed[m->nprinted++].value = value;
            snprintf(line, sizeof line, "slidestream %s: %s\n", m->who, text);
        }
    }
    pthread_mutex_unlock(&g_lock);
    if (*line) fputs(line, stderr);
out:
    zmq_msg_close(&f[0]);
    zmq_msg_close(&f[1]);
}

/* Watch a CURVE socket's handshakes (best effort: without a slot, no messages). */
static void monitor_add(void *ctx, void *zs, const ss_security_t *s, const char *ep, int server,
                        const char *expect)
{
    static int counter;
    char addr[64];
    pthread_mutex_lock(&g_lock);
    int slot = -1;
    for (int i = 0; i < MAX_MONITORS && slot < 0; i++)
        if (!g_monitors[i].pair && !g_monitors[i].owner) slot = i;
    if (slot >= 0) g_monitors[slot].owner = zs; /* reserved */
    snprintf(addr, sizeof addr, "inproc://slidestream-monitor-%d", ++counter);
    pthread_mutex_unlock(&g_lock);
    if (slot < 0) return;
    void *pair = NULL;
    int zero = 0;
    if (zmq_socket_monitor(zs, addr, MONITOR_EVENTS) || !(pair = zmq_socket(ctx, ZMQ_PAIR)) ||
        zmq_setsockopt(pair, ZMQ_LINGER, &zero, sizeof zero) || zmq_connect(pair, addr)) {
        if (pair) zmq_close(pair);
        zmq_socket_monitor(zs, NULL, 0);
        pair = NULL;
    }
    pthread_mutex_lock(&g_lock);
    monitor_t *m = &g_monitors[slot];
    memset(m, 0, sizeof *m);
    if (pair) {
        m->pair = pair; /* from here on the thread's */
        m->owner = zs;
        m->server = server;
        snprintf(m->ep, sizeof m->ep, "%s", ep);
        snprintf(m->who, sizeof m->who, "%s", s->who);
        snprintf(m->expect, sizeof m->expect, "%s", expect ? expect : "");
    }
    pthread_mutex_unlock(&g_lock);
}

void ss_security_forget(void *zs)
{
    int had = 0;
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < MAX_MONITORS; i++)
        if (g_monitors[i].pair && g_monitors[i].owner == zs) {
            g_monitors[i].closing = 1; /* the thread closes its end */
            g_monitors[i].owner = NULL;
            had = 1;
        }
    pthread_mutex_unlock(&g_lock);
    if (had) zmq_socket_monitor(zs, NULL, 0);
}

/* ---- the security thread: ZAP requests and monitor events ------------------------------- */

static void zap_read(void *rep)
{
    zmq_msg_t f[7];
    int n = 0, more = 1, ok = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, rep, 0) < 0) {
            zmq_msg_close(&m);
            if (errno == EINTR) continue;
            ok = 0;
            break;
        }
        more = zmq_msg_more(&m);
        if (n < 7)
            f[n++] = m;
        else
            zmq_msg_close(&m);
    }
    if (ok) zap_answer(rep, f, n);
    for (int i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
}

static void *security_main(void *arg)
{
    void *rep = arg;
    for (;;) {
        zmq_pollitem_t items[1 + MAX_MONITORS];
        int slots[1 + MAX_MONITORS], n = 1;
        items[0] = (zmq_pollitem_t){rep, 0, ZMQ_POLLIN, 0};
        pthread_mutex_lock(&g_lock);
        for (int i = 0; i < MAX_MONITORS; i++) {
            monitor_t *m = &g_monitors[i];
            if (m->pair && m->closing) {
                zmq_close(m->pair);
                memset(m, 0, sizeof *m);
            } else if (m->pair) {
                slots[n] = i;
                items[n++] = (zmq_pollitem_t){m->pair, 0, ZMQ_POLLIN, 0};
            }
        }
        pthread_mutex_unlock(&g_lock);
        /* A short timeout: new monitors join and closed ones leave at the next round. */
        int rc = zmq_poll(items, n, 100);
        if (rc < 0 && errno == EINTR) continue;
        if (rc < 0) break; /* ETERM: the context is ending */
        if (items[0].revents & ZMQ_POLLIN) zap_read(rep);
        for (int k = 1; k < n; k++)
            if (items[k].revents & ZMQ_POLLIN) monitor_read(slots[k]);
    }
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < MAX_MONITORS; i++) {
        if (g_monitors[i].pair) zmq_close(g_monitors[i].pair);
        memset(&g_monitors[i], 0, sizeof g_monitors[i]);
    }
    pthread_mutex_unlock(&g_lock);
    zmq_close(rep);
    return NULL;
}

/* Start the thread before the first CURVE socket binds or connects: without a ZAP handler,
 * libzmq would admit every client. */
static int security_start(void *ctx)
{
    pthread_mutex_lock(&g_lock);
    int rc = 0;
    if (!g_thread_running) {
        void *rep = zmq_socket(ctx, ZMQ_REP);
        int zero = 0;
        if (!rep || zmq_setsockopt(rep, ZMQ_LINGER, &zero, sizeof zero) ||
            zmq_bind(rep, "inproc://zeromq.zap.01")) {
            rc = ss_error("transport", "cannot start the CURVE authentication handler: %s",
                          zmq_strerror(errno));
            if (rep) zmq_close(rep);
        } else {
            /* Signals are for the stage's main thread, never this one. */
            sigset_t all, old;
            sigfillset(&all);
            pthread_sigmask(SIG_SETMASK, &all, &old);
            int e = pthread_create(&g_thread, NULL, security_main, rep);
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            if (e) {
                rc = ss_error("transport", "cannot start the CURVE authentication thread: %s",
                              strerror(e));
                zmq_close(rep);
            } else {
                g_thread_running = 1;
            }
        }
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

void ss_security_term(int terminated)
{
    if (g_thread_running) {
        if (terminated)
            pthread_join(g_thread, NULL);
        else
            pthread_detach(g_thread);
        g_thread_running = 0;
    }
    ss_security_destroy(&g_default);
}

/* ---- the policy applied to each socket -------------------------------------------------- */

/* The host of "tcp://[SOURCE;]HOST:PORT", without IPv6 brackets. */
static int tcp_host(const char *ep, char *host, size_t n)
{
    const char *a = ep + 6, *semi = strchr(a, ';'), *end;
    if (semi) a = semi + 1;
    if (*a == '[')
        end = strchr(++a, ']');
    else
        end = strrchr(a, ':');
    if (!end || end == a || (size_t)(end - a) >= n) return -1;
    memcpy(host, a, (size_t)(end - a));
    host[end - a] = '\0';
    return 0;
}

/* Only literal loopback names count: "*", 0.0.0.0, :: and every other name or interface are
 * reachable from elsewhere (or may be). */
static int is_loopback(const char *host)
{
    if (!strcmp(host, "localhost") || !strcmp(host, "lo")) return 1;
    unsigned char a[16];
    if (inet_pton(AF_INET, host, a) == 1) return a[0] == 127;
    if (inet_pton(AF_INET6, host, a) == 1) {
        static const unsigned char one[16] = {[15] = 1};
        static const unsigned char v4mapped[12] = {[10] = 0xff, [11] = 0xff};
        return !memcmp(a, one, 16) || (!memcmp(a, v4mapped, 12) && a[12] == 127);
    }
    return 0;
}

/* The server key a CURVE client expects (the rule in transport.h and the docs); `why` says
 * where it came from, for messages. */
static int server_key(const ss_security_t *s, const char *ep, const char *host,
                      uint8_t key[SS_KEY_BYTES], char *why, size_t why_size)
{
    if (s->npeers && !s->trust_is_dir) {
        memcpy(key, s->peers[0].key, SS_KEY_BYTES);
        snprintf(why, why_size, "the key in %s", s->trust);
        return 0;
    }
    for (size_t i = 0; i < s->npeers; i++)
        if (!strcmp(s->peers[i].name, host)) {
            memcpy(key, s->peers[i].key, SS_KEY_BYTES);
            snprintf(why, why_size, "%.900s/%.150s.pub", s->trust, host);
            return 0;
        }
    if (is_loopback(host) || !s->npeers) {
        memcpy(key, s->pub, SS_KEY_BYTES);
        snprintf(why, why_size, "this stage's own %s/key.pub", s->keys_dir);
        return 0;
    }
    return ss_error("transport",
                    "cannot connect to %s: which key does the server '%s' use? "
                    "--trust %s has no %s.pub (put the server's key.pub there "
                    "under that name)",
                    ep, host, s->trust, host);
}

static void ipc_check(const ss_security_t *s, const char *path)
{
    static char warned[1024];
    const char *who = s ? s->who : "transport";
    if (path[0] == '@') {
        ss_warn("%s: ipc://%s is an abstract socket that any local user can connect to; "
                "prefer a path in a directory of mode 0700",
                who, path);
        return;
    }
    char dir[1024];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    struct stat st;
    if (stat(dir, &st) || !(st.st_mode & (S_IXGRP | S_IXOTH)) || !strcmp(warned, dir)) return;
    snprintf(warned, sizeof warned, "%s", dir);
    ss_warn("%s: ipc://%s: other users can enter %s (mode %04o) and may connect to its "
            "sockets; keep ipc endpoints in a directory of mode 0700 (as `slidestream run` "
            "makes its run directory)",
            who, path, dir, (unsigned)(st.st_mode & 07777));
}

int ss_security_apply(const ss_security_t *s, void *ctx, void *zs, const char *ep, int bind)
{
    if (!strncmp(ep, "ipc://", 6)) {
        if (bind) ipc_check(s, ep + 6);
        return 0;
    }
    if (strncmp(ep, "tcp://", 6)) return 0;
    char host[256];
    if (tcp_host(ep, host, sizeof host))
        return ss_error("transport", "endpoint '%s': want tcp://HOST:PORT", ep);
    if (!s || !s->has_keys) {
        if (!bind || is_loopback(host)) return 0;
        if (s && s->insecure) {
            ss_warn("%s: binding %s without keys (--insecure): whoever can reach it can read "
                    "this stream and send into it",
                    s->who, ep);
            return 0;
        }
        return ss_error("transport",
                        "refusing to bind %s without keys: whoever can reach it "
                        "could read this stream and send into it. Make a key pair "
                        "with `slidestream keys new DIR` and give every stage "
                        "--keys DIR (and --trust with the peers' public keys), "
                        "bind a loopback address, or pass --insecure on a network "
                        "you trust",
                        ep);
    }
    int rc;
    char why[1100] = "";
    if (security_start(ctx)) return -1;
    if (bind) {
        int one = 1;
        char domain[256];
        snprintf(domain, sizeof domain, "%d %.200s", s->id, ep);
        rc = zmq_setsockopt(zs, ZMQ_CURVE_SERVER, &one, sizeof one) ||
             zmq_setsockopt(zs, ZMQ_CURVE_SECRETKEY, s->secret, SS_KEY_BYTES) ||
             zmq_setsockopt(zs, ZMQ_ZAP_DOMAIN, domain, strlen(domain));
    } else {
        uint8_t server[SS_KEY_BYTES];
        if (server_key(s, ep, host, server, why, sizeof why)) return -1;
        rc = zmq_setsockopt(zs, ZMQ_CURVE_SERVERKEY, server, SS_KEY_BYTES) ||
             zmq_setsockopt(zs, ZMQ_CURVE_PUBLICKEY, s->pub, SS_KEY_BYTES) ||
             zmq_setsockopt(zs, ZMQ_CURVE_SECRETKEY, s->secret, SS_KEY_BYTES);
    }
    if (rc)
        return ss_error("transport", "%s: cannot set the CURVE options: %s", ep,
                        zmq_strerror(errno));
    monitor_add(ctx, zs, s, ep, bind, why);
    return 0;
}

/* ---- run directories -------------------------------------------------------------------- */

int ss_rundir_prepare(const char *dir)
{
    char buf[1024];
    if (!dir || !*dir) return ss_error("run", "empty run directory name");
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return ss_error("run", "run directory '%s': name too long", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0777) && errno != EEXIST)
            return ss_error_system("run", "cannot create %s", buf);
        *p = '/';
    }
    if (mkdir(dir, 0700) && errno != EEXIST) return ss_error_system("run", "cannot create %s", dir);
    struct stat st;
    if (stat(dir, &st)) return ss_error_system("run", "cannot stat %s", dir);
    if (!S_ISDIR(st.st_mode)) return ss_error("run", "run directory %s: not a directory", dir);
    if (st.st_uid != geteuid())
        return ss_error("run",
                        "run directory %s belongs to another user (uid %u): its ipc "
                        "endpoints would be theirs to reach; choose another rundir=",
                        dir, (unsigned)st.st_uid);
    if (st.st_mode & 077) {
        if (chmod(dir, 0700))
            return ss_error_system("run", "cannot make %s private (chmod 700)", dir);
        ss_warn("run directory %s was mode %04o (other users could reach its ipc endpoints); "
                "made it 0700",
                dir, (unsigned)(st.st_mode & 07777));
    }
    return 0;
}

/* ---- a run's security, from the pipeline's built-in variables --------------------------- */

/* The expanded value of a variable ("" when unset). */
static int expanded(const ss_pipeline_t *pl, const char *key, char *out, size_t n)
{
    out[0] = '\0';
    if (!ss_pipeline_var(pl, key)) return 0;
    char text[64], *w[1];
    snprintf(text, sizeof text, "\"${%s}\"", key);
    int k = ss_pipeline_words(pl, text, w, 1);
    if (k < 0) return -1;
    if (k == 1 && snprintf(out, n, "%s", w[0]) >= (int)n)
        k = -1, ss_error("run", "%s=%s: too long", key, w[0]);
    ss_pipeline_free_words(w, k > 0 ? k : 0);
    return k < 0 ? -1 : 0;
}

int ss_pipeline_security(const ss_pipeline_t *pl, ss_pipeline_security_t *rs)
{
    memset(rs, 0, sizeof *rs);
    char ins[16];
    if (expanded(pl, "keys", rs->keys, sizeof rs->keys) ||
        expanded(pl, "trust", rs->trust, sizeof rs->trust) ||
        expanded(pl, "insecure", ins, sizeof ins))
        return -1;
    if (strcmp(ins, "") && strcmp(ins, "0") && strcmp(ins, "1"))
        return ss_error("run", "%s: insecure=%s: want 1 (or 0)", pl->path, ins);
    int insecure = !strcmp(ins, "1");
    ss_security_t *sec = ss_security_new(*rs->keys ? rs->keys : NULL, *rs->trust ? rs->trust : NULL,
                                         insecure, "run");
    if (!sec) return -1;
    ss_transport_set_security(&sec);
    if (*rs->keys) rs->argv[rs->argc++] = "--keys", rs->argv[rs->argc++] = rs->keys;
    if (*rs->trust) rs->argv[rs->argc++] = "--trust", rs->argv[rs->argc++] = rs->trust;
    if (insecure) rs->argv[rs->argc++] = "--insecure";
    return 0;
}
