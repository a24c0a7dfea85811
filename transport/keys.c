/* CURVE key files: making a pair (`slidestream keys new`), reading one key with its checks, and
 * loading the set of trusted public keys. A key file holds '#' comments and one line of 40 Z85
 * characters; a secret key file must be private to its owner (mode 0600 or stricter). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "security_internal.h"
#include "slidestream/error.h"

#define KEY_FILE_MAX 4096
#define TRUST_MAX 4096

static void wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

int ss_key_read(const char *path, int secret, uint8_t key[SS_KEY_BYTES])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT && secret)
            return ss_error("keys",
                            "%s: no such file (make a key pair with `slidestream keys "
                            "new DIR`)",
                            path);
        return ss_error_system("keys", "cannot open %s", path);
    }
    struct stat st;
    if (fstat(fd, &st)) {
        close(fd);
        return ss_error_system("keys", "cannot stat %s", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ss_error("keys", "%s: not a regular file", path);
    }
    if (secret && (st.st_mode & 077)) {
        close(fd);
        return ss_error("keys",
                        "%s: the secret key can be read by other users (mode %04o); "
                        "make it private with `chmod 600 %s`",
                        path, (unsigned)(st.st_mode & 07777), path);
    }
    if (st.st_size > KEY_FILE_MAX) {
        close(fd);
        return ss_error("keys", "%s: %lld bytes, too large for a key file", path,
                        (long long)st.st_size);
    }
    char buf[KEY_FILE_MAX + 1];
    ssize_t n = read(fd, buf, KEY_FILE_MAX);
    close(fd);
    if (n < 0) return ss_error_system("keys", "cannot read %s", path);
    buf[n] = '\0';
    int found = 0, rc = 0, lineno = 0;
    for (char *line = buf, *next; line && !rc; line = next) {
        lineno++;
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
            line[--len] = '\0';
        while (*line == ' ' || *line == '\t')
            line++, len--;
        if (!*line || *line == '#') continue;
        if (found)
            rc = ss_error("keys", "%s:%d: a second key (a key file holds one)", path, lineno);
        else if (len != SS_KEY_Z85 - 1 || !zmq_z85_decode(key, line))
            rc = ss_error("keys",
                          "%s:%d: not a CURVE key (want 40 Z85 characters, as "
                          "`slidestream keys new` writes)",
                          path, lineno);
        found = 1;
    }
    wipe(buf, sizeof buf);
    if (!rc && !found) rc = ss_error("keys", "%s: no key in the file", path);
    if (rc) wipe(key, SS_KEY_BYTES);
    return rc;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const ss_peer_key_t *)a)->name, ((const ss_peer_key_t *)b)->name);
}

static int add_key(const char *path, const char *file, ss_peer_key_t **keys, size_t *n)
{
    if (*n == TRUST_MAX) return ss_error("keys", "%s: more than %d public keys", path, TRUST_MAX);
    ss_peer_key_t *k = realloc(*keys, (*n + 1) * sizeof **keys);
    if (!k) return ss_error("keys", "out of memory");
    *keys = k;
    ss_peer_key_t *e = &k[*n];
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    size_t len = strlen(base);
    if (len > 4 && !strcmp(base + len - 4, ".pub")) len -= 4;
    if (len >= sizeof e->name) return ss_error("keys", "%s: file name too long", file);
    memcpy(e->name, base, len);
    e->name[len] = '\0';
    if (ss_key_read(file, 0, e->key)) return -1;
    (*n)++;
    return 0;
}

int ss_trust_load(const char *path, ss_peer_key_t **keys, size_t *n, int *is_dir)
{
    *keys = NULL;
    *n = 0;
    struct stat st;
    if (stat(path, &st)) return ss_error_system("keys", "--trust %s", path);
    *is_dir = S_ISDIR(st.st_mode);
    if (!*is_dir) return add_key(path, path, keys, n);
    DIR *d = opendir(path);
    if (!d) return ss_error_system("keys", "cannot open the directory %s", path);
    int rc = 0;
    struct dirent *de;
    while (!rc && (de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len <= 4 || strcmp(de->d_name + len - 4, ".pub")) continue;
        char file[4096];
        snprintf(file, sizeof file, "%s/%s", path, de->d_name);
        rc = add_key(path, file, keys, n);
    }
    closedir(d);
    if (!rc && *n == 0)
        rc = ss_error("keys", "--trust %s: the directory holds no *.pub public keys", path);
    if (rc) {
        free(*keys);
        *keys = NULL;
        *n = 0;
        return -1;
    }
    qsort(*keys, *n, sizeof **keys, by_name);
    return 0;
}

/* mkdir -p, new directories 0700 (a key directory is nobody else's business). */
static int make_dir(const char *dir)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return ss_error("keys", "%s: path too long", dir);
    for (char *p = buf + 1;; p++) {
        if (*p && *p != '/') continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0700) && errno != EEXIST)
            return ss_error_system("keys", "cannot create %s", buf);
        *p = c;
        if (!c) break;
    }
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) return ss_error("keys", "%s: not a directory", dir);
    return 0;
}

/* Write `text` to path through a temporary file in the same directory and a rename, so a
 * crash never leaves half a key. */
static int write_file(const char *dir, const char *path, const char *text, mode_t mode)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/.key.XXXXXX", dir);
    int fd = mkstemp(tmp); /* created 0600 */
    if (fd < 0) return ss_error_system("keys", "cannot create a file in %s", dir);
    size_t len = strlen(text);
    int rc = write(fd, text, len) != (ssize_t)len || fchmod(fd, mode) || fsync(fd);
    if (close(fd)) rc = 1;
    if (!rc && rename(tmp, path)) rc = 1;
    if (rc) {
        ss_error_system("keys", "cannot write %s", path);
        unlink(tmp);
        return -1;
    }
    return 0;
}

int ss_keys_new(const char *dir, int force, char *pub_z85)
{
    if (!zmq_has("curve"))
        return ss_error("keys", "this libzmq was built without CURVE security (libsodium)");
    if (!dir || !*dir) return ss_error("keys", "which directory?");
    char pub_path[4096], sec_path[4096];
    if (snprintf(pub_path, sizeof pub_path, "%s/key.pub", dir) >= (int)sizeof pub_path ||
        snprintf(sec_path, sizeof sec_path, "%s/key.secret", dir) >= (int)sizeof sec_path)
        return ss_error("keys", "%s: path too long", dir);
    if (!force && (access(pub_path, F_OK) == 0 || access(sec_path, F_OK) == 0))
        return ss_error("keys",
                        "%s already holds a key pair (key.pub, key.secret); --force "
                        "replaces it, and peers that trust the old key.pub will refuse "
                        "the new one",
                        dir);
    if (make_dir(dir)) return -1;
    char pub[SS_KEY_Z85], sec[SS_KEY_Z85];
    if (zmq_curve_keypair(pub, sec))
        return ss_error("keys", "zmq_curve_keypair: %s", zmq_strerror(errno));
    char text[512];
    snprintf(text, sizeof text,
             "# slidestream CURVE secret key: private to this stage's user, never copied to a\n"
             "# machine you do not trust. Its public half is key.pub.\n%s\n",
             sec);
    int rc = write_file(dir, sec_path, text, 0600);
    wipe(text, sizeof text);
    wipe(sec, sizeof sec);
    if (rc) return -1;
    snprintf(text, sizeof text,
             "# slidestream CURVE public key: give it to the stages that should trust this one\n"
             "# (their --trust directory, named after this machine: HOST.pub).\n%s\n",
             pub);
    if (write_file(dir, pub_path, text, 0644)) return -1;
    if (pub_z85) memcpy(pub_z85, pub, SS_KEY_Z85);
    return 0;
}
