/* ps_server.h - one ps-server process: one shard of K, serving any number of
 * jobs over a ZeroMQ ROUTER socket. The loop thread owns everything here. */
#ifndef PS_SERVER_H
#define PS_SERVER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "ps_err.h"
#include "ps_server_config.h"
#include "ps_wire.h"

typedef struct ps_server ps_server_t;

/* Binds the ROUTER socket and writes the ready file (if configured). NULL
 * with err set if the endpoint cannot be bound. cfg is copied. */
ps_server_t *ps_server_new(const ps_server_config_t *cfg, ps_errbuf_t *err);
/* The daemon's stop flag (set by its SIGTERM handler), watched while
 * ps_server_new fetches a new machine's checkpoints: a stop then ends the
 * fetch and ps_server_new fails with PS_EINTR. Before ps_server_new. */
void ps_server_watch_stop(volatile sig_atomic_t *stop);
/* Closes sockets, frees every job; NULL-safe, sets *srv to NULL. */
void ps_server_destroy(ps_server_t **srv);
/* The stats socket's TCP and HTTP (/metrics) ports actually bound, -1 if off. */
int ps_server_stats_port(const ps_server_t *srv);
int ps_server_metrics_port(const ps_server_t *srv);
/* The endpoint actually bound ("tcp://127.0.0.1:40123"); borrowed. */
const char *ps_server_endpoint(const ps_server_t *srv);
/* Serves requests until *stop becomes non-zero (set by a signal handler) or
 * an admin sends SHUTDOWN. Whenever *reload (if not NULL) is non-zero it is
 * cleared and the CURVE allow-list re-read (SIGHUP). Returns PS_OK, or
 * PS_ENET if the socket fails. */
int ps_server_run(ps_server_t *srv, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload);
/* Asks the loop to end, from any thread (ps_server_run returns within
 * poll_ms). Tests and embedders use it; daemons use the signal flag. */
void ps_server_stop(ps_server_t *srv);
/* Handles one request as the loop would: msg holds the routing identity and
 * the frames after it; replies go out on the server's socket (to nobody, if
 * the identity is not connected). For fuzzing and tests; loop thread only. */
void ps_server_handle(ps_server_t *srv, ps_wire_msg_t *msg);
/* Writes a checkpoint of every job now, in this thread (shutdown, SAVE).
 * Returns the number that failed (each logged). */
int ps_server_checkpoint_all(ps_server_t *srv);

#endif
