/* ps_statsd.h - the stats socket: a libuv thread that serves text commands
 * (HAProxy/Redis style) on a UNIX socket and optionally TCP on loopback, and
 * Prometheus' GET /metrics over HTTP. It never touches the daemon's state:
 * the daemon's loop publishes immutable snapshots of each section and the
 * thread serves the latest, so the training loop never waits for a reader.
 *
 * Protocol (one command per line, every reply ends with an empty line):
 *   help | show info|workers|tables|config [json] | metrics | save */
#ifndef PS_STATSD_H
#define PS_STATSD_H

#include <stdatomic.h>

#include "ps_err.h"

typedef struct ps_statsd ps_statsd_t;

typedef enum {
    PS_STATS_INFO,
    PS_STATS_WORKERS,
    PS_STATS_TABLES,
    PS_STATS_CONFIG,
    PS_STATS_METRICS, /* Prometheus text exposition 0.0.4 */
    PS_STATS_N_SECTIONS
} ps_stats_section_t;

/* Starts the thread. unix_path may be "" (none; else created with mode
 * 0660, replacing a stale socket file); tcp_port / http_port < 0 = none,
 * 0 = any free port, bound to 127.0.0.1. NULL with err naming the address
 * that failed. save_flag (may be NULL) is set to 1 by a `save` command. */
ps_statsd_t *ps_statsd_start(const char *unix_path, int tcp_port, int http_port,
                             atomic_int *save_flag, ps_errbuf_t *err);
/* Replaces a section's text and JSON (NUL-terminated, malloc'd; ownership
 * passes here; json may be NULL). Any thread; takes a mutex only to swap. */
void ps_statsd_publish(ps_statsd_t *sd, ps_stats_section_t section, char *text, char *json);
/* Ports actually bound (-1 if not listening). */
int ps_statsd_tcp_port(const ps_statsd_t *sd);
int ps_statsd_http_port(const ps_statsd_t *sd);
/* Stops the thread, closes and unlinks the sockets; NULL-safe. */
void ps_statsd_stop(ps_statsd_t **sd);

#endif
