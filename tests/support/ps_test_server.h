/* ps_test_server.h - runs the real server core on a thread of the test
 * process, bound to 127.0.0.1 on a run-time port. */
#ifndef PS_TEST_SERVER_H
#define PS_TEST_SERVER_H

#include <pthread.h>
#include <signal.h>

#include "ps_server.h"

typedef struct {
    ps_server_t *srv;
    pthread_t thread;
} ps_test_server_t;

/* Starts shard `shard` of `shards`; returns 0 or -1. */
int ps_test_server_start(ps_test_server_t *ts, int shard, int shards);
/* Same, with a stats socket at stats_path (for tests that read counters). */
int ps_test_server_start_stats(ps_test_server_t *ts, int shard, int shards, const char *stats_path);
/* The defaults those use: shard of shards, poll_ms 20, errors only in the
 * log, no state directory. Change fields, then ps_test_server_start_config. */
void ps_test_server_config(ps_server_config_t *cfg, int shard, int shards);
int ps_test_server_start_config(ps_test_server_t *ts, const ps_server_config_t *cfg);
/* Stops the loop, joins the thread, frees the server. */
void ps_test_server_stop(ps_test_server_t *ts);

#endif
