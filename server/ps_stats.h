/* ps_stats.h - the shard's counters and latency histograms, and every
 * section the stats socket and /metrics serve (show info, workers, tables,
 * config, metrics), each built once as a ps_doc and rendered as text, JSON
 * and Prometheus from that one source. The loop thread counts and
 * publishes; the stats thread only serves published snapshots. */
#ifndef PS_STATS_H
#define PS_STATS_H

#include <stdint.h>

#define PS_STATS_N_BUCKETS 16

/* A latency histogram: observations per bucket (not cumulative). */
typedef struct {
    uint64_t counts[PS_STATS_N_BUCKETS + 1]; /* last: above every bound */
    uint64_t count;
    double sum_s;
} ps_hist_t;

/* Counters of the loop thread. */
typedef struct {
    uint64_t requests[32]; /* by op */
    uint64_t errors;
    uint64_t errors_by_code[32]; /* by -code */
    uint64_t nonfinite_pushes;
    uint64_t handshake_failures;            /* plain-text or broken clients (monitor events) */
    uint64_t handshake_failures_by_kind[3]; /* auth, mechanism mismatch, other */
    uint64_t fd_low_warnings;               /* times open fds passed 90% of the limit */
    long open_fds, fd_limit;                /* as of the last check */
    int64_t fd_checked_ms, fd_warned_ms;
    uint64_t bytes_in, bytes_out;
    uint64_t checkpoints_written, checkpoints_failed;
    int64_t last_checkpoint_ms;
    uint64_t replicas_stored, replicas_refused, replicas_served; /* held for other shards */
    uint64_t replica_bytes_stored;
    uint64_t replica_fetched_files; /* at start: fetched from a holder (a new machine) */
    int64_t replica_fetch_ms;
    char replica_error[512]; /* why the latest replica was refused; "" once one is stored */
    ps_hist_t push_latency, pull_latency;
    uint64_t shm_regions;  /* shared regions mapped now (gauge) */
    uint64_t shm_requests; /* data requests whose values came or went through one */
    uint64_t shm_refused;  /* region offers not mapped (another host, user, a bad region) */
    uint64_t bell_requests, bell_replies; /* headers that came and went through doorbells */
} ps_server_stats_t;

/* Counts one observation of ns nanoseconds. */
void ps_hist_observe(ps_hist_t *h, int64_t ns);
/* The buckets' upper bounds, in seconds (PS_STATS_N_BUCKETS of them). */
const double *ps_hist_bounds(void);

typedef struct ps_server ps_server_t;

/* Publishes every section to the stats thread (no-op without one). */
void psrv_stats_publish(ps_server_t *srv);
/* Publishes `show config` (once, at start: the config never changes). */
void psrv_stats_publish_config(ps_server_t *srv);
/* The `show info` document as JSON (the STATS op's reply); caller frees. */
char *psrv_stats_info_json(ps_server_t *srv);

#endif
