/* ps_test_server.c - in-process server for client-level tests and benches. */
#include "ps_test_server.h"

#include <stdio.h>

static void *run(void *arg)
{
    ps_test_server_t *ts = arg;
    static volatile sig_atomic_t never; /* stopped by ps_server_stop instead */
    ps_server_run(ts->srv, &never, NULL);
    return NULL;
}

int ps_test_server_start(ps_test_server_t *ts, int shard, int shards)
{
    return ps_test_server_start_stats(ts, shard, shards, "");
}

void ps_test_server_config(ps_server_config_t *cfg, int shard, int shards)
{
    ps_config_defaults(&ps_server_optset, cfg);
    cfg->shard = shard;
    cfg->shards = shards;
    cfg->poll_ms = 20;
    cfg->log_level = 4; /* errors only: hostile-input tests make many warnings */
}

int ps_test_server_start_config(ps_test_server_t *ts, const ps_server_config_t *cfg)
{
    ps_errbuf_t err;
    ts->srv = ps_server_new(cfg, &err);
    if (!ts->srv) {
        fprintf(stderr, "test server: %s\n", err.msg);
        return -1;
    }
    return pthread_create(&ts->thread, NULL, run, ts) == 0 ? 0 : -1;
}

int ps_test_server_start_stats(ps_test_server_t *ts, int shard, int shards, const char *stats_path)
{
    ps_server_config_t cfg;
    ps_test_server_config(&cfg, shard, shards);
    snprintf(cfg.stats_socket, sizeof cfg.stats_socket, "%s", stats_path);
    return ps_test_server_start_config(ts, &cfg);
}

void ps_test_server_stop(ps_test_server_t *ts)
{
    ps_server_stop(ts->srv);
    pthread_join(ts->thread, NULL);
    ps_server_destroy(&ts->srv);
}
