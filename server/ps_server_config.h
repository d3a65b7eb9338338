/* ps_server_config.h - ps-server's configuration: the option table behind
 * its config file, flags, --help and `show config`, and the checks across
 * options. Startup thread; read-only once the server runs. */
#ifndef PS_SERVER_CONFIG_H
#define PS_SERVER_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "ps_config.h"
#include "ps_err.h"

typedef struct {
    char bind_addr[PS_OPT_STR_MAX];
    int64_t port;
    int64_t shard;
    int64_t shards;
    char ready_file[PS_OPT_STR_MAX];
    int log_level;
    char log_file[PS_OPT_STR_MAX];
    int64_t max_jobs;
    int64_t max_tables;
    int64_t max_message_mb;
    int64_t io_threads;
    int64_t poll_ms;
    int64_t heartbeat_timeout_ms;
    int64_t lost_rank_timeout_ms;
    int64_t assemble_timeout_ms;
    int64_t job_ttl_s;
    int64_t finished_job_ttl_s;
    char state_dir[PS_OPT_STR_MAX];
    int64_t checkpoint_every;
    int64_t checkpoint_keep;
    int64_t sparse_full_every;
    char peers[PS_OPT_STR_MAX]; /* "tcp://A:P,tcp://B:P": shard i's endpoint is the ith */
    int64_t checkpoint_replicas;
    int64_t replica_inflight_mb;
    int64_t replica_timeout_ms;
    char peer_key_file[PS_OPT_STR_MAX];
    char stats_socket[PS_OPT_STR_MAX];
    int64_t stats_port;
    int64_t metrics_port;
    char curve_secret_file[PS_OPT_STR_MAX];
    char allow_file[PS_OPT_STR_MAX];
    bool insecure;
    bool same_host;
    bool same_host_bell;
    int64_t max_table_elems;
    int64_t max_request_keys;
    int64_t max_sparse_keys;
    int64_t max_job_mb, max_shard_mb; /* memory budgets; 0: see the option's help */
    int64_t max_jobs_per_client;
    int64_t handshake_timeout_ms;
} ps_server_config_t;

/* The option table of ps-server (for --help, files and flags). */
extern const ps_optset_t ps_server_optset;

/* Cross-field checks after defaults, file and flags. */
int ps_server_config_validate(const ps_server_config_t *cfg, ps_errbuf_t *err);

#endif
