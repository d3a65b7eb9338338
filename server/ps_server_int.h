/* ps_server_int.h - the server struct and the request being handled, for
 * the files of server/ only (the loop, jobs, handlers, replies, access,
 * snapshots, stats). Functions here carry the private prefix psrv_ (ps__
 * belongs to the code protobuf-c generates). Loop thread only, except
 * where a field says otherwise. */
#ifndef PS_SERVER_INT_H
#define PS_SERVER_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <zmq.h>

#include "ps_curve.h"
#include "ps_job.h"
#include "ps_server.h"
#include "ps_stats.h"
#include "ps_statsd.h"
#include "ps_wire.h"

/* A reply being built by a handler: the header (initialised from the
 * request), an error text, and at most one values frame. */
typedef struct {
    Ps__Header hdr;
    char message[512]; /* hdr.message points here when status != 0 */
    char *document;    /* a longer hdr.message (STATS), freed once sent */
    int64_t *clocks;   /* hdr.checkpoints' storage (HELLO, ROLLBACK), freed once sent */
    zmq_msg_t values;
    bool has_values;
} psrv_reply_t;

/* The request being handled: its frames, its parsed header, and the reply
 * its handler returns. */
typedef struct {
    ps_wire_msg_t *msg;   /* [identity][header][keys][values] */
    Ps__Header *hdr;      /* NULL if the header frame did not parse */
    zmq_msg_t *values;    /* the values frame, NULL if none (or shm_values) */
    zmq_msg_t shm_values; /* a copy of values a worker left in its shared region */
    bool has_shm_values;
    /* the shared region's values were checked for inf and NaN as they were
     * copied out (finite_checked), and finite says what that found */
    bool finite_checked, finite;
    int64_t recv_ns;
    /* the request came through this region's doorbell (NULL: the router);
     * valid while it is handled (no doorbell request may unmap one) */
    const struct psrv_region *bell;
    /* a header-only reply goes up this region's doorbell if it can (0: the
     * router): a doorbell request's, or one that used the region */
    uint64_t answer_region;
    psrv_reply_t reply;
} psrv_request_t;

/* A job that ended (every rank said BYE), remembered a while so a late
 * worker of it is refused rather than starting it again alone. */
typedef struct {
    char name[PS_JOB_NAME_MAX];
    uint64_t id;
    char *fingerprint;
    int64_t clock, ended_ms;
} psrv_finished_t;

#define PSRV_FINISHED_MAX 64
#define PSRV_HELD_MAX 4096 /* requests held while a new machine fetches */

/* The jobs this shard serves. */
typedef struct {
    ps_job_t **all;
    size_t n;
    psrv_finished_t finished_jobs[PSRV_FINISHED_MAX]; /* a ring, newest at (n_ended - 1) */
    uint64_t n_ended;
    char last_name[PS_JOB_NAME_MAX]; /* the newest job that ended, for show info */
    int64_t last_clock;
    uint64_t finished;
    int64_t last_cron_ms; /* when server_cron last ran (to notice a stalled loop) */
} psrv_jobs_t;

struct ps_server {
    ps_server_config_t cfg;
    void *ctx, *router;
    char endpoint[256];
    uint64_t incarnation; /* changes at every start: workers notice restarts */
    int64_t started_ms;
    psrv_jobs_t jobs;
    ps_server_stats_t stats;
    int64_t log_budget_reset_ms;
    int log_budget;                  /* rejected-request log lines left this second */
    size_t shard_budget, job_budget; /* bytes of tables (ps_budget) */
    pid_t ckpt_child;                /* forked checkpoint writer, 0 if none */
    char ckpt_job[64];               /* what it writes: job, clock, final (every rank done) */
    int64_t ckpt_clock;
    uint64_t ckpt_job_id;
    bool ckpt_final;
    bool ckpt_delta; /* its sparse rows are a delta on the job's chain base */
    ps_zap_t *zap;   /* CURVE on: who may connect, in which role */
    void *monitor;   /* PAIR receiving the router's handshake failures */
    ps_statsd_t *statsd;
    atomic_int save_requested;                /* set by the stats thread's `save` */
    atomic_int stop_requested;                /* ps_server_stop, from any thread */
    bool shutdown_requested;                  /* an admin's SHUTDOWN */
    struct psrv_replicator *replicator;       /* copies our checkpoints to holders; NULL: off */
    struct psrv_replica_store *replica_store; /* writes other shards' replicas; NULL: off */
    int64_t ckpt_listed_ms;                   /* when show checkpoints last listed state_dir */
    ps_wire_msg_t *held;                      /* requests that came during a new machine's fetch */
    size_t n_held;
    struct psrv_region *regions; /* same-host workers' shared regions (ps_regions) */
    size_t n_regions, cap_regions;
    uint64_t last_region_id;
};

#endif
