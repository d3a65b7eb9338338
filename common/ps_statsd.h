/* ps_statsd.h - the stats socket: a libuv thread that serves text commands
 * (HAProxy/Redis style) on a UNIX socket and optionally TCP on loopback, and
 * Prometheus' GET /metrics over HTTP. It never touches the daemon's state:
 * the daemon's loop publishes immutable snapshots of each section and the
 * thread serves the latest, so the training loop never waits for a reader.
 *
 * Protocol (one command per line, every reply ends with an empty line):
 *   help | show info|workers|tables|config [json] | metrics | save | drop JOB
 * A trailing `json` is accepted (and ignored) after any command.
 *
 * Hostile clients (docs/security.md): every client costs bounded memory and
 * time. Line protocol: at most max_clients at once (over that: one
 * "error: too many clients" line, then closed), a command line of at most
 * PS_STATSD_LINE_MAX bytes (longer: an error reply, the rest of the line is
 * dropped), closed after idle_timeout_ms without a command or a drained
 * reply, and no reading while more than max_queued_bytes of replies wait
 * for the client to read them (so a client that writes but never reads
 * stalls only itself). HTTP: GET or HEAD of /metrics only, the request head
 * (at most PS_STATSD_HTTP_HEAD_MAX bytes, else 431) must arrive within
 * http_timeout_ms of the connection (else 408), the reply must be taken
 * within the same time again, at most max_http_clients at once and
 * max_http_per_ip from one address (over that: 503); one request per
 * connection (Connection: close). */
#ifndef PS_STATSD_H
#define PS_STATSD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "ps_err.h"

#define PS_STATSD_LINE_MAX 512       /* a command line, newline included */
#define PS_STATSD_HTTP_HEAD_MAX 8192 /* request line + headers, as nginx's default buffers */

typedef struct ps_statsd ps_statsd_t;

typedef enum {
    PS_STATS_INFO,
    PS_STATS_WORKERS,
    PS_STATS_TABLES,
    PS_STATS_CONFIG,
    PS_STATS_METRICS, /* Prometheus text exposition 0.0.4 */
    PS_STATS_CHECKPOINTS,
    PS_STATS_N_SECTIONS
} ps_stats_section_t;

/* Limits; ps_statsd_opts_defaults fills in the values ps_statsd_start uses. */
typedef struct {
    int max_clients;         /* line-protocol clients, UNIX and TCP together (64) */
    int idle_timeout_ms;     /* line protocol: close after this long without progress (10000) */
    size_t max_queued_bytes; /* per client: stop reading while more replies wait (1 MiB) */
    int max_http_clients;    /* HTTP connections at once (32) */
    int max_http_per_ip;     /* HTTP connections from one address (16) */
    int http_timeout_ms;     /* to send the request head, and again to take the reply (10000) */
} ps_statsd_opts_t;

void ps_statsd_opts_defaults(ps_statsd_opts_t *opts);

/* Starts the thread. unix_path may be "" (none; else created with mode
 * 0660, replacing a stale socket file); tcp_port / http_port < 0 = none,
 * 0 = any free port, bound to 127.0.0.1. NULL with err naming the address
 * that failed. save_flag (may be NULL) is set to 1 by a `save` command.
 * Uses the default limits. */
ps_statsd_t *ps_statsd_start(const char *unix_path, int tcp_port, int http_port,
                             atomic_int *save_flag, ps_errbuf_t *err);
/* The same with explicit limits (opts is copied; NULL = defaults). */
ps_statsd_t *ps_statsd_start_opts(const char *unix_path, int tcp_port, int http_port,
                                  atomic_int *save_flag, const ps_statsd_opts_t *opts,
                                  ps_errbuf_t *err);
/* Replaces a section's text and JSON (NUL-terminated, malloc'd; ownership
 * passes here; json may be NULL). Any thread; takes a mutex only to swap. */
void ps_statsd_publish(ps_statsd_t *sd, ps_stats_section_t section, char *text, char *json);
/* Ports actually bound (-1 if not listening). */
int ps_statsd_tcp_port(const ps_statsd_t *sd);
int ps_statsd_http_port(const ps_statsd_t *sd);
/* Connections refused or closed by a limit since start (any thread). */
unsigned long ps_statsd_n_refused(const ps_statsd_t *sd);
/* Commands the daemon's loop carries out (`drop JOB`): the stats thread
 * only queues them (at most PS_STATSD_ACTION_MAX waiting; over that the
 * command is refused) and answers that the request was taken. */
#define PS_STATSD_ACTION_MAX 16
typedef struct {
    char verb[16];                /* "drop" */
    char arg[PS_STATSD_LINE_MAX]; /* its argument (a job name) */
} ps_statsd_action_t;
/* Accepts action commands from now on (a daemon that has none leaves
 * them refused). Call before clients may connect, from any thread. */
void ps_statsd_enable_actions(ps_statsd_t *sd);
/* Takes the oldest queued action: true and *out set, or false if none.
 * Any thread (the daemon's loop). */
bool ps_statsd_next_action(ps_statsd_t *sd, ps_statsd_action_t *out);
/* Stops the thread, closes and unlinks the sockets; NULL-safe. Returns at
 * once whatever the clients do (pending replies are dropped). */
void ps_statsd_stop(ps_statsd_t **sd);

#endif
