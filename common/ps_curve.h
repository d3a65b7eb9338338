/* ps_curve.h - CURVE keys and the ZAP handler that decides who may talk to
 * a server, and in which role.
 *
 * Key files are text (ps-keygen writes them): `public KEY` and, in the
 * secret file only, `secret KEY`, each KEY 40 characters of Z85. The
 * allow-list file has one `ROLE KEY [NAME]` line per client key, ROLE one
 * of worker, admin, monitor, shard; a word starting with `#` starts a comment
 * (Z85 itself may contain '#').
 *
 * The ZAP handler runs on its own thread in the server's ZeroMQ context. It
 * answers every CURVE handshake: a key on the list gets User-Id
 * "ROLE:NAME", which the server reads from each request it receives (so the
 * role travels with the connection and cannot be claimed by the client);
 * any other key is refused (ZAP 400) and logged once with peer address and
 * key. The User-Id carries the key ("worker:KEY"), so the role in force is
 * looked up again at each request. */
#ifndef PS_CURVE_H
#define PS_CURVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps_err.h"

#define PS_Z85_KEY_LEN 40

typedef struct {
    char public_z85[PS_Z85_KEY_LEN + 1];
    char secret_z85[PS_Z85_KEY_LEN + 1]; /* "" for a public key file */
} ps_curve_keys_t;

typedef enum {
    PS_ROLE_NONE = 0, /* not authenticated (plain-text transport) */
    PS_ROLE_WORKER,   /* push, pull and the rest of a training job */
    PS_ROLE_ADMIN,    /* everything a worker may, plus SAVE and SHUTDOWN */
    PS_ROLE_MONITOR,  /* STATS only: reads, changes nothing */
    PS_ROLE_SHARD,    /* another shard of the job: the REPLICA_* ops only */
} ps_role_t;

/* "worker", "admin", "monitor", "shard" (or "none"). */
const char *ps_role_name(ps_role_t role);
/* Whether a bind address reaches this host only: 127.0.0.0/8, ::1,
 * localhost, or the interface lo. "*" and 0.0.0.0 are not. */
bool ps_is_loopback(const char *bind_addr);

/* "worker" -> PS_ROLE_WORKER ...; PS_ROLE_NONE for anything else. */
ps_role_t ps_role_parse(const char *name);

/* Makes a new key pair and writes BASE.pub (mode 0644) and BASE.secret
 * (mode 0600, created exclusively: an existing file is never overwritten).
 * keys (if not NULL) receives the pair. */
int ps_curve_keygen(const char *base, ps_curve_keys_t *keys, ps_errbuf_t *err);
/* Reads a key file. want_secret: the file must hold a secret key (the
 * public one is derived if absent) and must not be readable by group or
 * others. Errors name the file and line. */
int ps_curve_load(const char *path, bool want_secret, ps_curve_keys_t *keys, ps_errbuf_t *err);

typedef struct ps_zap ps_zap_t;

/* Loads allow_path and starts the handler in ctx. Binds the ZAP endpoint
 * before returning, so a caller that binds its CURVE sockets afterwards
 * never serves a handshake nobody checks. NULL with err set if the file is
 * bad or the endpoint is taken. */
ps_zap_t *ps_zap_start(void *ctx, const char *allow_path, ps_errbuf_t *err);
/* Re-reads the allow-list (SIGHUP). On error the old list stays in force
 * and err says why. New handshakes see the new list; a connection whose key
 * was removed is refused from its next request on (see ps_zap_role). */
int ps_zap_reload(ps_zap_t *zap, ps_errbuf_t *err);
/* The role the list in force gives the key named in user_id (a request's
 * User-Id metadata, "ROLE:KEY"); PS_ROLE_NONE if the key is not on it any
 * more. What a server checks per request, so that a key removed (or given
 * another role) by a reload loses its established connections too.
 * Thread-safe. */
ps_role_t ps_zap_role(ps_zap_t *zap, const char *user_id);
/* The NAME given to the key of user_id on the list ("" if none); copied
 * into buf. For log lines. */
void ps_zap_name(ps_zap_t *zap, const char *user_id, char *buf, size_t cap);
/* Handshakes accepted and refused so far; thread-safe. */
uint64_t ps_zap_accepted(const ps_zap_t *zap);
uint64_t ps_zap_refused(const ps_zap_t *zap);
/* Number of keys on the list in force. */
size_t ps_zap_keys(ps_zap_t *zap);
/* Stops the thread and closes its socket; NULL-safe, sets *zap to NULL.
 * Call before terminating ctx. */
void ps_zap_stop(ps_zap_t **zap);

/* ---- sockets ---- */

/* Makes sock a CURVE server with secret_z85 (before it binds). PS_ENET
 * with err naming the ZeroMQ error. Clients are checked by the ZAP
 * handler of the socket's context (domain "ps"). */
int ps_curve_server_socket(void *sock, const char *secret_z85, ps_errbuf_t *err);
/* Makes sock a CURVE client of the server with public key server_z85,
 * with the key pair public_z85/secret_z85 (before it connects). */
int ps_curve_client_socket(void *sock, const char *server_z85, const char *public_z85,
                           const char *secret_z85, ps_errbuf_t *err);

/* A handshake that failed, as a socket monitor reports it. */
typedef struct {
    uint16_t event; /* ZMQ_EVENT_HANDSHAKE_FAILED_* */
    uint32_t value; /* the ZMTP error code */
    char addr[256]; /* the peer's endpoint as the monitor gives it */
} ps_handshake_event_t;

/* A PAIR socket in ctx receiving sock's failed handshakes (auth, protocol,
 * no detail), or NULL if the monitor cannot be set up. The caller closes
 * it (after zmq_socket_monitor(sock, NULL, 0)). */
void *ps_handshake_monitor(void *ctx, void *sock);
/* Reads one event from such a monitor without waiting: PS_OK, or
 * PS_EAGAIN if none is queued. */
int ps_handshake_read(void *monitor, ps_handshake_event_t *ev);

#endif
