/* Private to the transport module: key files (keys.c) and the security policy that sock.c
 * applies to every socket before it binds or connects (security.c). */
#ifndef SS_SECURITY_INTERNAL_H
#define SS_SECURITY_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "slidestream/transport.h"

#define SS_KEY_BYTES 32
#define SS_KEY_Z85 41 /* 40 characters and a NUL */

/* A trusted public key and the name of the file it came from (without .pub). */
typedef struct {
    uint8_t key[SS_KEY_BYTES];
    char name[128];
} ss_peer_key_t;

/* Read one CURVE key from a key file: '#' comment lines, blank lines and exactly one line of
 * 40 Z85 characters. A secret key file must not be accessible by group or others. */
int ss_key_read(const char *path, int secret, uint8_t key[SS_KEY_BYTES]);

/* Load trusted public keys from a .pub file or every *.pub in a directory (malloc'd array,
 * sorted by name). *is_dir tells which it was. */
int ss_trust_load(const char *path, ss_peer_key_t **keys, size_t *n, int *is_dir);

/* Called by ss_sock_new_secure on a new socket before it binds or connects to `ep` (without
 * its @ or >): sets the CURVE options for tcp, enforces the bind policy, warns about ipc
 * directories others can enter. `ctx` is the process's context (for the ZAP handler). */
int ss_security_apply(const ss_security_t *sec, void *ctx, void *zs, const char *ep, int bind);

/* Called by ss_sock_destroy before it closes a socket: stop watching its handshakes. */
void ss_security_forget(void *zs);

/* The process-wide security installed by ss_transport_set_security (NULL when none). */
const ss_security_t *ss_security_default(void);

/* After zmq_ctx_term: wait for the ZAP handler thread to end (it ends when the context does)
 * and free the process-wide security. `terminated` is 0 when the context did not finish. */
void ss_security_term(int terminated);

#endif
