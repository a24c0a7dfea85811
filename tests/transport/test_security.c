/* transport.security.* — CURVE on tcp between real ZeroMQ sockets of this process, each side
 * with its own ss_security_t: key files (made, checked, refused as data), the bind policy, a
 * trusted client that gets through, an untrusted one refused and logged with its address, the
 * server-key rule, and private ipc/run directories.
 *   test_security CASE SCRATCH_DIR    CASE: keys, files, bind, curve, ipc, rundir
 * What the transport prints (refusals, warnings) goes to stderr: cases capture it into a file
 * and look for the lines a user would read. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "slidestream/error.h"
#include "slidestream/log.h"
#include "slidestream/transport.h"

#include "../check.h"
#include "../scratch.h"

/* ---- helpers ---------------------------------------------------------------------------- */

static char cap_path[1024];
static int cap_saved = -1;

/* Send stderr to a file until capture_end (what the ZAP thread prints lands there too). */
static void capture_begin(const char *name)
{
    snprintf(cap_path, sizeof cap_path, "%s/%s.stderr", scratch, name);
    fflush(stderr);
    cap_saved = dup(2);
    int fd = open(cap_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);
}

/* What was captured so far (static buffer). */
static const char *captured(void)
{
    static char buf[16384];
    fflush(stderr);
    buf[0] = '\0';
    FILE *f = fopen(cap_path, "r");
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        fclose(f);
    }
    return buf;
}

static void capture_end(void)
{
    fflush(stderr);
    dup2(cap_saved, 2);
    close(cap_saved);
    fputs(captured(), stderr); /* keep it in the test's log */
}

/* Wait up to `seconds` for `want` to appear in the captured stderr. */
static int captured_within(const char *want, double seconds)
{
    for (double t0 = ss_now(); ss_now() - t0 < seconds; usleep(20000))
        if (strstr(captured(), want)) return 1;
    return 0;
}

static void path_in(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", scratch, name);
}

static void write_text(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        CHECK(0, "cannot write %s", path);
        return;
    }
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

static void read_text(const char *path, char *out, size_t n)
{
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return;
    size_t k = fread(out, 1, n - 1, f);
    out[k] = '\0';
    fclose(f);
}

static unsigned mode_of(const char *path)
{
    struct stat st;
    return stat(path, &st) ? 0u : (unsigned)(st.st_mode & 07777);
}

/* A key pair in scratch/NAME; returns its directory (static, one of 8 slots). */
static const char *pair(const char *name)
{
    static char dirs[8][1024];
    static int next;
    char *d = dirs[next++ % 8];
    path_in(d, sizeof dirs[0], name);
    CHECK(ss_keys_new(d, 0, NULL) == 0, "keys new %s: %s", d, ss_error_buffer());
    return d;
}

/* Copy DIR/key.pub to PATH. */
static void copy_pub(const char *dir, const char *path)
{
    char src[1100], text[1024];
    snprintf(src, sizeof src, "%s/key.pub", dir);
    read_text(src, text, sizeof text);
    write_text(path, text, 0644);
}

/* ss_security_new must fail with a message containing `want`. */
static void expect_refused(const char *what, const char *keys, const char *trust, int insecure,
                           const char *want)
{
    ss_error_clear();
    ss_security_t *s = ss_security_new(keys, trust, insecure, "test");
    CHECK(s == NULL, "%s: accepted", what);
    CHECK(strstr(ss_error_buffer(), want) != NULL, "%s: error '%s' lacks '%s'", what,
          ss_error_buffer(), want);
    if (!s) printf("ok: %s: %s", what, ss_error_buffer());
    ss_security_destroy(&s);
    ss_error_clear();
}

/* ---- keys: `keys new` files and modes, no silent overwrite ----------------------------- */

static void case_keys(void)
{
    char dir[1024], pub[1100], sec[1100], text[1024];
    path_in(dir, sizeof dir, "k/nested");
    snprintf(pub, sizeof pub, "%s/key.pub", dir);
    snprintf(sec, sizeof sec, "%s/key.secret", dir);
    char z85[41] = "";
    CHECK(ss_keys_new(dir, 0, z85) == 0, "keys new: %s", ss_error_buffer());
    CHECK(mode_of(dir) == 0700, "key directory mode %04o, want 0700", mode_of(dir));
    CHECK(mode_of(sec) == 0600, "key.secret mode %04o, want 0600", mode_of(sec));
    CHECK(mode_of(pub) == 0644, "key.pub mode %04o, want 0644", mode_of(pub));
    read_text(pub, text, sizeof text);
    CHECK(strlen(z85) == 40 && strstr(text, z85), "key.pub does not hold %s: %s", z85, text);
    ss_security_t *s = ss_security_new(dir, NULL, 0, "test");
    CHECK(s && !strcmp(ss_security_public_key(s), z85), "the pair does not load: %s",
          ss_error_buffer());
    ss_security_destroy(&s);

    ss_error_clear();
    CHECK(ss_keys_new(dir, 0, NULL) == -1, "an existing pair was replaced without --force");
    CHECK(strstr(ss_error_buffer(), "already holds a key pair") &&
              strstr(ss_error_buffer(), "--force"),
          "the refusal does not say why: %s", ss_error_buffer());
    char again[1024];
    read_text(pub, again, sizeof again);
    CHECK(!strcmp(text, again), "the refused call changed key.pub");
    ss_error_clear();
    char z2[41] = "";
    CHECK(ss_keys_new(dir, 1, z2) == 0 && strcmp(z2, z85), "--force did not make a new pair");
    CHECK(mode_of(sec) == 0600, "key.secret after --force: mode %04o", mode_of(sec));
}

/* ---- files: broken key files and flags refused with the file or value named (as data) -- */

static void case_files(void)
{
    const char *good = pair("good"), *other = pair("other");
    char goodpub[1100];
    snprintf(goodpub, sizeof goodpub, "%s/key.pub", good);
    char key_line[64];
    {
        char text[1024];
        read_text(goodpub, text, sizeof text);
        const char *k = strrchr(text, '\n');
        while (k > text && k[-1] != '\n')
            k--; /* the last line holds the key */
        snprintf(key_line, sizeof key_line, "%.40s", k);
    }
    /* A directory whose files are written as given: key.secret copied from `good` with `mode`,
     * key.pub with `pub` (NULL: good's). */
    static const struct {
        const char *what, *pub;
        unsigned secret_mode;
        const char *want;
    } bad[] = {
        {"secret key readable by others", NULL, 0644, "can be read by other users (mode 0644)"},
        {"secret key readable by the group", NULL, 0640, "chmod 600"},
        {"public key not Z85", "# c\nnot a key at all\n", 0600, "key.pub:2: not a CURVE key"},
        {"public key too short", "abcde\n", 0600, "not a CURVE key"},
        {"empty public key", "# only a comment\n\n", 0600, "key.pub: no key in the file"},
        {"two keys in one file", "~\n~\n", 0600, "a second key"},
        {"public key of another pair", "OTHER", 0600, "is not the public half of"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char dir[1024], path[1100], text[2048], sec_text[1024];
        snprintf(dir, sizeof dir, "%s/bad%zu", scratch, i);
        mkdir(dir, 0700);
        snprintf(path, sizeof path, "%s/key.secret", good);
        read_text(path, sec_text, sizeof sec_text);
        snprintf(path, sizeof path, "%s/key.secret", dir);
        write_text(path, sec_text, bad[i].secret_mode);
        snprintf(path, sizeof path, "%s/key.pub", dir);
        if (!bad[i].pub) {
            copy_pub(good, path);
        } else if (!strcmp(bad[i].pub, "OTHER")) {
            copy_pub(other, path);
        } else {
            /* ~ (not a Z85 character) stands for a valid key line */
            snprintf(text, sizeof text, "%s", bad[i].pub);
            for (char *k; (k = strchr(text, '~'));) {
                char rest[2048];
                snprintf(rest, sizeof rest, "%s", k + 1);
                snprintf(k, sizeof text - (size_t)(k - text), "%s%s", key_line, rest);
            }
            write_text(path, text, 0644);
        }
        expect_refused(bad[i].what, dir, NULL, 0, bad[i].want);
    }
    char missing[1024], empty_trust[1024], junk_pub[1024];
    path_in(missing, sizeof missing, "no-such-dir");
    expect_refused("--keys names no directory", missing, NULL, 0, "not a directory");
    expect_refused("--trust without --keys", NULL, goodpub, 0, "needs --keys");
    expect_refused("--insecure with --keys", good, NULL, 1, "choose one");
    path_in(empty_trust, sizeof empty_trust, "empty-trust");
    mkdir(empty_trust, 0755);
    expect_refused("a --trust directory without keys", good, empty_trust, 0, "no *.pub");
    expect_refused("a --trust path that does not exist", good, missing, 0, "no-such-dir");
    path_in(junk_pub, sizeof junk_pub, "junk.pub");
    write_text(junk_pub, "junk\n", 0644);
    expect_refused("a --trust file that is no key", good, junk_pub, 0,
                   "junk.pub:1: not a CURVE key");
}

/* ---- bind: no keys, non-loopback tcp refused (with how to fix it); --insecure warns ---- */

static void case_bind(void)
{
    static const char *refused[] = {
        "@tcp://0.0.0.0:*",          "@tcp://*:*",      "@tcp://[::]:*", "@tcp://192.0.2.1:5555",
        "@tcp://node7.example:5555", "@tcp://eth0:5555"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        ss_error_clear();
        ss_sock_t *s = ss_sock_new_secure(SS_PULL, refused[i], 1, 10, NULL);
        CHECK(s == NULL, "%s: bound without keys", refused[i]);
        const char *e = ss_error_buffer();
        CHECK(strstr(e, "refusing to bind") && strstr(e, "slidestream keys new DIR") &&
                  strstr(e, "--keys") && strstr(e, "--insecure") && strstr(e, refused[i] + 1),
              "%s: the refusal does not say how to fix it: %s", refused[i], e);
        ss_sock_destroy(&s);
    }
    printf("ok: %s", ss_error_buffer());
    ss_error_clear();
    /* Loopback binds and every connect stay allowed without keys. */
    /* (libzmq binds addresses and interfaces, not "localhost": the policy allows it, the bind
     * itself would fail.) */
    static const char *allowed[] = {"@tcp://127.0.0.1:*", "@tcp://127.0.0.2:*",
                                    ">tcp://192.0.2.1:5555", ">tcp://node7.example:5555"};
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++) {
        ss_sock_t *s = ss_sock_new_secure(SS_PULL, allowed[i], 1, 10, NULL);
        CHECK(s != NULL, "%s: refused without keys: %s", allowed[i], ss_error_buffer());
        ss_sock_destroy(&s);
    }
    /* The process-wide security (the default of ss_sock_new) applies the same policy. */
    ss_error_clear();
    ss_sock_t *s = ss_sock_new(SS_PULL, "@tcp://0.0.0.0:*", 1, 10);
    CHECK(s == NULL, "ss_sock_new bound 0.0.0.0 without keys");
    ss_sock_destroy(&s);
    ss_error_clear();
    ss_security_t *insecure = ss_security_new(NULL, NULL, 1, "bindtest");
    capture_begin("insecure");
    s = ss_sock_new_secure(SS_PULL, "@tcp://0.0.0.0:*", 1, 10, insecure);
    const char *warn = captured();
    int warned = strstr(warn, "warning: bindtest: binding tcp://0.0.0.0:* without keys "
                              "(--insecure)") != NULL;
    capture_end();
    CHECK(s != NULL, "--insecure did not allow the bind: %s", ss_error_buffer());
    CHECK(warned, "--insecure bound without the warning");
    ss_sock_destroy(&s);
    ss_security_destroy(&insecure);
    ss_transport_term();
}

/* ---- curve: trusted clients pass messages, others are refused and logged -------------- */

/* Send one text message from a client with `csec` to the server at `ep`; 1 when the server
 * got it (and it is intact) within `seconds`. */
static int delivered(ss_sock_t *server, const char *ep, const ss_security_t *csec, double seconds)
{
    char cep[600];
    snprintf(cep, sizeof cep, ">%s", ep);
    ss_sock_t *c = ss_sock_new_secure(SS_PUSH, cep, 0, 10, csec);
    if (!c) {
        CHECK(0, "client for %s: %s", ep, ss_error_buffer());
        return 0;
    }
    ss_sock_set_linger(c, 0);
    ss_msg_header_t h = ss_msg_header_init(SS_MSG_SLIDE);
    static volatile int no_stop;
    CHECK(ss_sock_send_text(c, &h, "slide=curve-test", &no_stop) == 0, "send: %s",
          ss_error_buffer());
    ss_msg_t m;
    char why[128];
    int got = ss_sock_recv(server, &m, (int)(seconds * 1000), why, sizeof why) == 1;
    if (got) {
        char v[64] = "";
        ss_text_get(m.data, m.size, "slide", v, sizeof v);
        CHECK(m.h.type == SS_MSG_SLIDE && !strcmp(v, "curve-test"), "the message changed: %s", v);
        ss_msg_release(&m);
    }
    ss_sock_destroy(&c);
    return got;
}

static void case_curve(void)
{
    const char *srv = pair("server"), *cli = pair("client"), *stranger = pair("stranger");
    char clients[1024], p[1100], srvpub[1100], strangerpub[1100];
    path_in(clients, sizeof clients, "clients");
    mkdir(clients, 0755);
    snprintf(p, sizeof p, "%s/worker1.pub", clients);
    copy_pub(cli, p);
    snprintf(srvpub, sizeof srvpub, "%s/key.pub", srv);
    snprintf(strangerpub, sizeof strangerpub, "%s/key.pub", stranger);

    ss_security_t *ssec = ss_security_new(srv, clients, 0, "collector");
    ss_security_t *csec = ss_security_new(cli, srvpub, 0, "worker");        /* trusted */
    ss_security_t *same = ss_security_new(srv, NULL, 0, "sibling");         /* the server's pair */
    ss_security_t *xsec = ss_security_new(stranger, srvpub, 0, "intruder"); /* unknown key */
    ss_security_t *wrong = ss_security_new(cli, strangerpub, 0, "misled");  /* wrong server key */
    CHECK(ssec && csec && same && xsec && wrong, "securities: %s", ss_error_buffer());
    if (!ssec || !csec || !same || !xsec || !wrong) goto out;

    ss_sock_t *server = ss_sock_new_secure(SS_PULL, "@tcp://127.0.0.1:*", 1, 100, ssec);
    CHECK(server != NULL, "server bind: %s", ss_error_buffer());
    if (!server) goto out;
    char ep[512];
    snprintf(ep, sizeof ep, "%s", ss_sock_last_endpoint(server));
    const char *port = strrchr(ep, ':');
    char want[700];
    snprintf(want, sizeof want,
             "refused a peer at 127.0.0.1 on tcp://127.0.0.1:*: its public key %s "
             "is not trusted",
             ss_security_public_key(xsec));

    capture_begin("curve");
    int ok_trusted = delivered(server, ep, csec, 5);
    int ok_same = delivered(server, ep, same, 5);
    int ok_stranger = delivered(server, ep, xsec, 1.5);
    int logged = captured_within(want, 5);
    int client_told = captured_within("slidestream intruder: tcp://127.0.0.1", 5) &&
                      captured_within("refused this stage's key", 1);
    int ok_wrong = delivered(server, ep, wrong, 1.5);
    int wrong_told = captured_within("slidestream misled: the CURVE handshake with the server", 5);
    /* A plain client (no keys) against the CURVE server. */
    int ok_plain = delivered(server, ep, NULL, 1.5);
    int plain_told = captured_within("spoke without CURVE", 5) ||
                     captured_within("hung up during the CURVE handshake", 0.1);
    capture_end();

    CHECK(ok_trusted, "a client with a trusted key (%s) got nothing through", port);
    CHECK(ok_same, "a client with the server's own pair got nothing through");
    CHECK(!ok_stranger, "a client with an unknown key got a message through");
    CHECK(logged, "the refusal was not logged as '%s'", want);
    CHECK(client_told, "the refused client did not say that its key was refused");
    CHECK(!ok_wrong, "a client expecting another server key got a message through");
    CHECK(wrong_told, "the client with the wrong server key did not say so");
    CHECK(!ok_plain, "a client without keys got a message through to a CURVE server");
    CHECK(plain_told, "the server did not report the peer without CURVE");

    /* The server-key rule: a --trust directory names keys by host. */
    char hosts[1024];
    path_in(hosts, sizeof hosts, "hosts");
    mkdir(hosts, 0755);
    snprintf(p, sizeof p, "%s/127.0.0.1.pub", hosts);
    copy_pub(srv, p);
    snprintf(p, sizeof p, "%s/elsewhere.pub", hosts);
    copy_pub(stranger, p);
    ss_security_t *byhost = ss_security_new(cli, hosts, 0, "byhost");
    CHECK(byhost && delivered(server, ep, byhost, 5),
          "a client whose --trust holds 127.0.0.1.pub did not reach the server: %s",
          ss_error_buffer());
    ss_error_clear();
    ss_sock_t *none =
        byhost ? ss_sock_new_secure(SS_PUSH, ">tcp://node9.example:5555", 0, 10, byhost) : NULL;
    CHECK(none == NULL && strstr(ss_error_buffer(), "has no node9.example.pub"),
          "a connect to a host without a key in --trust: %s", ss_error_buffer());
    ss_sock_destroy(&none);
    ss_security_destroy(&byhost);
    ss_sock_destroy(&server);
out:
    ss_error_clear();
    ss_security_destroy(&ssec);
    ss_security_destroy(&csec);
    ss_security_destroy(&same);
    ss_security_destroy(&xsec);
    ss_security_destroy(&wrong);
    ss_transport_term();
}

/* ---- ipc: a bind in a directory others can enter draws a warning ---------------------- */

static void case_ipc(void)
{
    char open_dir[1024], private_dir[1024], ep[1200];
    path_in(open_dir, sizeof open_dir, "open");
    path_in(private_dir, sizeof private_dir, "private");
    mkdir(open_dir, 0755);
    chmod(open_dir, 0755);
    mkdir(private_dir, 0700);
    capture_begin("ipc");
    snprintf(ep, sizeof ep, "@ipc://%s/a.ipc", private_dir);
    ss_sock_t *a = ss_sock_new(SS_PULL, ep, 1, 10);
    int quiet = strstr(captured(), "other users can enter") == NULL;
    snprintf(ep, sizeof ep, "@ipc://%s/b.ipc", open_dir);
    ss_sock_t *b = ss_sock_new(SS_PULL, ep, 1, 10);
    int warned = strstr(captured(), "other users can enter") && strstr(captured(), open_dir) &&
                 strstr(captured(), "mode 0755");
    capture_end();
    CHECK(a && b, "ipc binds: %s", ss_error_buffer());
    CHECK(quiet, "a bind in a 0700 directory drew a warning");
    CHECK(warned, "a bind in a 0755 directory drew no warning");
    ss_sock_destroy(&a);
    ss_sock_destroy(&b);
    ss_transport_term();
}

/* ---- rundir: made 0700, an open one closed with a warning, a file refused -------------- */

static void case_rundir(void)
{
    char fresh[1024], open_dir[1024], file[1024];
    path_in(fresh, sizeof fresh, "runs/fresh");
    CHECK(ss_rundir_prepare(fresh) == 0, "prepare %s: %s", fresh, ss_error_buffer());
    CHECK(mode_of(fresh) == 0700, "a new run directory is mode %04o", mode_of(fresh));
    path_in(open_dir, sizeof open_dir, "runs/open");
    mkdir(open_dir, 0777);
    chmod(open_dir, 0755);
    capture_begin("rundir");
    CHECK(ss_rundir_prepare(open_dir) == 0, "prepare %s: %s", open_dir, ss_error_buffer());
    int warned = strstr(captured(), "was mode 0755") != NULL;
    capture_end();
    CHECK(mode_of(open_dir) == 0700, "an open run directory stayed mode %04o", mode_of(open_dir));
    CHECK(warned, "closing an open run directory drew no warning");
    path_in(file, sizeof file, "runs/file");
    write_text(file, "x", 0644);
    ss_error_clear();
    CHECK(ss_rundir_prepare(file) == -1 && strstr(ss_error_buffer(), "not a directory"),
          "a file as run directory: %s", ss_error_buffer());
    ss_error_clear();
}

int main(int argc, char **argv)
{
    int shared, rc = scratch_begin(argc, argv, &shared);
    if (rc) return rc;
    struct {
        const char *name;
        void (*fn)(void);
    } cases[] = {{"keys", case_keys},   {"files", case_files}, {"bind", case_bind},
                 {"curve", case_curve}, {"ipc", case_ipc},     {"rundir", case_rundir}};
    size_t i = 0;
    while (i < sizeof cases / sizeof cases[0] && strcmp(argv[1], cases[i].name))
        i++;
    if (i == sizeof cases / sizeof cases[0]) {
        fprintf(stderr, "unknown case %s\n", argv[1]);
        return 2;
    }
    if (!zmq_has("curve")) {
        printf("transport.security.%s: SKIP: this libzmq has no CURVE\n", argv[1]);
        return 77;
    }
    cases[i].fn();
    return scratch_end("transport.security", argv[1], check_failures, shared);
}
