/* ZeroMQ sockets with explicit HWM/linger, bind/connect from endpoint strings, and message
 * send/receive through the wire schema. One context per process, created on first use and
 * never destroyed (sockets are closed by their owners; the OS reclaims the context). */
#include "slidestream/transport.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "security_internal.h"
#include "slidestream/error.h"

struct ss_sock {
    void *zs;
    ss_sock_kind_t kind;
    char endpoint[512];
    char last[512];
    int bound;
};

static void *g_ctx;
static volatile int g_dropping; /* set when the process is stopping: close without lingering */
static int (*g_stop_check)(void *); /* the stage's shutdown check, polled while a send waits */
static void *g_stop_arg;

void ss_transport_set_stop_check(int (*fn)(void *), void *arg)
{
    g_stop_check = fn;
    g_stop_arg = arg;
}
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void ctx_init(void)
{
    g_ctx = zmq_ctx_new();
}

static void *ctx(void)
{
    pthread_once(&g_once, ctx_init);
    return g_ctx;
}

ss_sock_t *ss_sock_new(ss_sock_kind_t kind, const char *endpoint, int default_bind, int hwm)
{
    return ss_sock_new_secure(kind, endpoint, default_bind, hwm, ss_security_default());
}

ss_sock_t *ss_sock_new_secure(ss_sock_kind_t kind, const char *endpoint, int default_bind,
                              int hwm, const ss_security_t *sec)
{
    static const int types[] = {ZMQ_PUSH, ZMQ_PULL, ZMQ_PUB, ZMQ_SUB};
    if (!endpoint || !*endpoint) {
        ss_error("transport", "empty endpoint");
        return NULL;
    }
    int bind = default_bind;
    const char *ep = endpoint;
    if (*ep == '@') bind = 1, ep++;
    else if (*ep == '>') bind = 0, ep++;
    if (strncmp(ep, "tcp://", 6) && strncmp(ep, "ipc://", 6) && strncmp(ep, "inproc://", 9)) {
        ss_error("transport", "endpoint '%s': want tcp://, ipc:// or inproc:// (optionally "
                              "prefixed by @ to bind or > to connect)", endpoint);
        return NULL;
    }
    if (hwm < 1) hwm = 1;
    void *c = ctx();
    if (!c) {
        ss_error("transport", "cannot create ZeroMQ context: %s", zmq_strerror(errno));
        return NULL;
    }
    ss_sock_t *s = calloc(1, sizeof *s);
    if (!s) {
        ss_error("transport", "out of memory");
        return NULL;
    }
    s->kind = kind;
    s->bound = bind;
    snprintf(s->endpoint, sizeof s->endpoint, "%s", ep);
    s->zs = zmq_socket(c, types[kind]);
    if (!s->zs) {
        ss_error("transport", "zmq_socket: %s", zmq_strerror(errno));
        free(s);
        return NULL;
    }
    /* A PUSH socket keeps its queued messages until a consumer takes them (infinite linger):
     * a producer that finished must not lose its last messages at exit (PUSH/PULL has no
     * end-of-stream). A stage that is told to stop closes with linger 0 instead. */
    int linger = kind == SS_PUSH ? -1 : 0;
    int rc = zmq_setsockopt(s->zs, ZMQ_SNDHWM, &hwm, sizeof hwm) ||
             zmq_setsockopt(s->zs, ZMQ_RCVHWM, &hwm, sizeof hwm) ||
             zmq_setsockopt(s->zs, ZMQ_LINGER, &linger, sizeof linger);
    if (!rc && kind == SS_SUB) rc = zmq_setsockopt(s->zs, ZMQ_SUBSCRIBE, "", 0);
    if (!rc) {
        /* Reconnect quickly: stages start in any order. */
        int ivl = 100;
        rc = zmq_setsockopt(s->zs, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    }
    if (rc) {
        ss_error("transport", "cannot set the options of a socket for %s: %s", ep,
                 zmq_strerror(errno));
    } else if (ss_security_apply(sec, c, s->zs, ep, bind)) {
        rc = -1; /* the policy said why */
    } else if ((rc = bind ? zmq_bind(s->zs, ep) : zmq_connect(s->zs, ep))) {
        ss_error("transport", "cannot %s %s: %s", bind ? "bind" : "connect to", ep,
                 zmq_strerror(errno));
    }
    if (rc) {
        zmq_close(s->zs);
        free(s);
        return NULL;
    }
    return s;
}

void ss_sock_set_linger(ss_sock_t *s, int ms)
{
    zmq_setsockopt(s->zs, ZMQ_LINGER, &ms, sizeof ms);
}

void ss_transport_drop_pending(void)
{
    g_dropping = 1;
}

void ss_transport_term(void)
{
    /* Blocks until every socket is closed and lingering messages have left (bounded by each
     * socket's linger), so the last messages of a stage are not lost at exit. */
    int terminated = 1;
    if (g_ctx) {
        /* Interrupted by a signal: give up on the queue and let the process end. */
        while ((terminated = zmq_ctx_term(g_ctx) == 0) == 0 && errno == EINTR && !g_dropping) {}
        g_ctx = NULL;
        g_once = (pthread_once_t)PTHREAD_ONCE_INIT;
    }
    ss_security_term(terminated); /* the ZAP handler ends with the context */
}

void ss_sock_destroy(ss_sock_t **sp)
{
    if (!sp || !*sp) return;
    if (g_dropping) {
        int zero = 0;
        zmq_setsockopt((*sp)->zs, ZMQ_LINGER, &zero, sizeof zero);
    }
    ss_security_forget((*sp)->zs);
    zmq_close((*sp)->zs);
    free(*sp);
    *sp = NULL;
}

void *ss_sock_handle(ss_sock_t *s)
{
    return s ? s->zs : NULL;
}

const char *ss_sock_endpoint(const ss_sock_t *s)
{
    return s->endpoint;
}

const char *ss_sock_last_endpoint(ss_sock_t *s)
{
    size_t n = sizeof s->last;
    if (zmq_getsockopt(s->zs, ZMQ_LAST_ENDPOINT, s->last, &n)) return s->endpoint;
    return s->last;
}

void ss_msg_release(ss_msg_t *m)
{
    if (m && m->has_frame_) {
        zmq_msg_close(&m->frame_);
        m->has_frame_ = 0;
    }
    if (m) {
        m->data = NULL;
        m->size = 0;
    }
}

/* Wait until the socket can send, checking `stop` every 100 ms (after a first look, so a
 * caller passing an already-set flag gets "send if there is room now"). 0 ready, 1 stopped. */
static int wait_writable(void *zs, volatile int *stop)
{
    for (int first = 1;; first = 0) {
        if (!first && ((stop && *stop) || g_dropping || (g_stop_check && g_stop_check(g_stop_arg))))
            return 1;
        zmq_pollitem_t it = {zs, 0, ZMQ_POLLOUT, 0};
        int rc = zmq_poll(&it, 1, first ? 0 : 100);
        if (rc > 0) return 0;
        if (rc < 0 && errno != EINTR) return -1;
    }
}

int ss_sock_send(ss_sock_t *s, const ss_msg_header_t *h, const void *payload, volatile int *stop)
{
    uint8_t hdr[SS_WIRE_HEADER_SIZE];
    ss_msg_header_encode(h, hdr);
    /* Wait for room first so that the two frames go out together without blocking between
     * them; a multipart message is atomic in ZeroMQ once the first frame is queued. */
    for (;;) {
        int w = wait_writable(s->zs, stop);
        if (w) return w > 0 ? 1 : ss_error("transport", "send on %s: %s", s->endpoint,
                                           zmq_strerror(errno));
        if (zmq_send(s->zs, hdr, sizeof hdr, ZMQ_SNDMORE | ZMQ_DONTWAIT) == (int)sizeof hdr) break;
        if (errno != EAGAIN && errno != EINTR)
            return ss_error("transport", "send on %s: %s", s->endpoint, zmq_strerror(errno));
    }
    for (;;) {
        if (zmq_send(s->zs, payload ? payload : "", h->payload_size, 0) >= 0) return 0;
        if (errno != EINTR)
            return ss_error("transport", "send on %s: %s", s->endpoint, zmq_strerror(errno));
    }
}

int ss_sock_send_text(ss_sock_t *s, ss_msg_header_t *h, const char *text, volatile int *stop)
{
    size_t n = strlen(text);
    if (n > SS_WIRE_MAX_TEXT) n = SS_WIRE_MAX_TEXT;
    uint32_t dim = (uint32_t)n;
    if (n == 0) {
        text = " ";
        dim = 1;
    }
    ss_msg_header_set_payload(h, SS_DT_TEXT, 1, &dim);
    return ss_sock_send(s, h, text, stop);
}

int ss_sock_recv(ss_sock_t *s, ss_msg_t *m, int timeout_ms, char *why, size_t why_size)
{
    memset(m, 0, sizeof *m);
    if (timeout_ms >= 0) {
        zmq_pollitem_t it = {s->zs, 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll(&it, 1, timeout_ms);
        if (rc == 0 || (rc < 0 && errno == EINTR)) return 0;
        if (rc < 0) return ss_error("transport", "poll %s: %s", s->endpoint, zmq_strerror(errno));
    }
    /* Read every frame of the message, whatever it holds, so a malformed message never
     * leaves stray frames behind to corrupt the next one. */
    zmq_msg_t frames[3];
    int n = 0, extra = 0, more = 1;
    while (more) {
        zmq_msg_t f;
        zmq_msg_init(&f);
        if (zmq_msg_recv(&f, s->zs, 0) < 0) {
            int e = errno;
            zmq_msg_close(&f);
            for (int i = 0; i < n; i++) zmq_msg_close(&frames[i]);
            if (e == EINTR && n == 0) return 0;
            return ss_error("transport", "receive on %s: %s", s->endpoint, zmq_strerror(e));
        }
        more = zmq_msg_more(&f);
        if (n < 3) frames[n++] = f;
        else {
            extra++;
            zmq_msg_close(&f);
        }
    }
    int nframes = n + extra;
    ss_msg_header_t h;
    const void *pay = n >= 2 ? zmq_msg_data(&frames[1]) : NULL;
    size_t pay_size = n >= 2 ? zmq_msg_size(&frames[1]) : 0;
    int rc = ss_msg_decode(nframes, zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]), pay,
                           pay_size, &h, why, why_size);
    zmq_msg_close(&frames[0]);
    for (int i = 2; i < n; i++) zmq_msg_close(&frames[i]);
    if (rc) {
        if (n >= 2) zmq_msg_close(&frames[1]);
        return 2;
    }
    m->h = h;
    m->frame_ = frames[1];
    m->has_frame_ = 1;
    m->data = zmq_msg_data(&m->frame_);
    m->size = zmq_msg_size(&m->frame_);
    return 1;
}

int ss_text_get(const void *text, size_t len, const char *key, char *out, size_t out_size)
{
    const char *p = text, *end = p + len;
    size_t klen = strlen(key);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if ((size_t)(le - p) > klen && !memcmp(p, key, klen) && p[klen] == '=') {
            size_t vlen = (size_t)(le - p) - klen - 1;
            if (vlen >= out_size) vlen = out_size ? out_size - 1 : 0;
            if (out_size) {
                memcpy(out, p + klen + 1, vlen);
                out[vlen] = '\0';
            }
            return 0;
        }
        p = le + 1;
    }
    return -1;
}
