/* ps_server.c - the shard's request loop: jobs, membership, consistency
 * (BSP rounds, SSP/ASP clocks) and the replies that wait on them.
 *
 * A pull that may not be answered yet (its clock is ahead of what the
 * consistency model allows) is parked with the requester's identity in the
 * job's pending list; every event that can move a clock re-checks the list.
 * This is the whole barrier: nothing blocks the loop. */
#include "ps_server.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "ps_checkpoint.h"
#include "ps_curve.h"
#include "ps_json.h"
#include "ps_log.h"
#include "ps_notify.h"
#include "ps_statsd.h"
#include "ps_shardmap.h"
#include "ps_sparse.h"
#include "ps_table.h"
#include "ps_time.h"
#include "ps_wire.h"

#define JOB_NAME_MAX 64

static const ps_opt_t server_opts[] = {
    PS_OPT_STR("bind", ps_server_config_t, bind_addr, "127.0.0.1", "address to bind"),
    PS_OPT_INT("port", ps_server_config_t, port, "0", 0, 65535, "TCP port; 0 = any free port"),
    PS_OPT_INT("shard", ps_server_config_t, shard, "0", 0, 1023, "this server's shard index"),
    PS_OPT_INT("shards", ps_server_config_t, shards, "1", 1, 1024, "number of shards (servers)"),
    PS_OPT_STR("ready_file", ps_server_config_t, ready_file, "",
               "once bound, write 'endpoint ADDR' here (temp file + rename)"),
    PS_OPT_ENUM("log_level", ps_server_config_t, log_level, "info", "debug|info|notice|warn|error",
                "least severe level logged"),
    PS_OPT_STR("log_file", ps_server_config_t, log_file, "", "log here instead of stderr"),
    PS_OPT_INT("max_jobs", ps_server_config_t, max_jobs, "16", 1, 4096, "jobs served at once"),
    PS_OPT_INT("max_tables", ps_server_config_t, max_tables, "1024", 1, 1 << 20,
               "tables per job"),
    PS_OPT_INT("max_message_mb", ps_server_config_t, max_message_mb, "1024", 1, 1 << 20,
               "largest request accepted (ZMQ_MAXMSGSIZE), MiB"),
    PS_OPT_INT("io_threads", ps_server_config_t, io_threads, "1", 1, 64, "ZeroMQ I/O threads"),
    PS_OPT_INT("poll_ms", ps_server_config_t, poll_ms, "100", 1, 10000,
               "loop wake-up interval for signals and housekeeping"),
    PS_OPT_INT("heartbeat_timeout_ms", ps_server_config_t, heartbeat_timeout_ms, "10000", 100,
               86400000, "a worker silent this long is declared dead and leaves the barriers"),
    PS_OPT_STR("state_dir", ps_server_config_t, state_dir, "",
               "checkpoint directory (one per shard); empty = no checkpoints"),
    PS_OPT_INT("checkpoint_every", ps_server_config_t, checkpoint_every, "0", 0, 1LL << 40,
               "checkpoint each job every N clocks (and at shutdown); 0 = only at shutdown"),
    PS_OPT_INT("checkpoint_keep", ps_server_config_t, checkpoint_keep, "3", 1, 1000,
               "checkpoints kept per job"),
    PS_OPT_STR("stats_socket", ps_server_config_t, stats_socket, "",
               "UNIX stats socket path (mode 0660); empty = none (see ps-ctl)"),
    PS_OPT_INT("stats_port", ps_server_config_t, stats_port, "-1", -1, 65535,
               "stats commands over TCP on 127.0.0.1; 0 = any free port, -1 = off"),
    PS_OPT_INT("metrics_port", ps_server_config_t, metrics_port, "-1", -1, 65535,
               "Prometheus GET /metrics on 127.0.0.1; 0 = any free port, -1 = off"),
    PS_OPT_STR("curve_secret_file", ps_server_config_t, curve_secret_file, "",
               "this server's CURVE key pair (ps-keygen; mode 0600); set = CURVE on every socket"),
    PS_OPT_STR("allow_file", ps_server_config_t, allow_file, "",
               "with CURVE: 'ROLE KEY [NAME]' per client key (worker|admin|monitor); SIGHUP re-reads"),
    PS_OPT_BOOL("insecure", ps_server_config_t, insecure, "no",
                "allow binding a non-loopback address without CURVE (anyone reaching the port "
                "can overwrite the model)"),
    PS_OPT_INT("max_table_elems", ps_server_config_t, max_table_elems, "4294967296", 1,
               1LL << 48, "largest table a job may define (elements, all shards)"),
    PS_OPT_INT("max_request_keys", ps_server_config_t, max_request_keys, "1048576", 1,
               1LL << 30, "most keys one sparse request may carry"),
    PS_OPT_INT("max_sparse_keys", ps_server_config_t, max_sparse_keys, "1000000000", 1,
               4294967293LL, "most keys one sparse table may hold on this shard"),
};

const ps_optset_t ps_server_optset = {
    "ps-server",
    "Usage: ps-server [--config FILE] [--OPTION VALUE ...]\n"
    "One shard of a parameter server: holds its slice of every table, applies\n"
    "the optimizer to pushed gradients, and answers pulls under the job's\n"
    "consistency model (BSP, SSP or ASP).",
    server_opts,
    sizeof server_opts / sizeof server_opts[0],
};

int ps_server_config_validate(const ps_server_config_t *cfg, ps_errbuf_t *err)
{
    if (cfg->shard >= cfg->shards)
        return ps_err_set(err, PS_EINVAL, "shard %lld must be below shards %lld",
                          (long long)cfg->shard, (long long)cfg->shards);
    if (!*cfg->bind_addr)
        return ps_err_set(err, PS_EINVAL, "bind must not be empty");
    if (*cfg->curve_secret_file && !*cfg->allow_file)
        return ps_err_set(err, PS_EINVAL,
                          "curve_secret_file needs allow_file (the client keys let in)");
    if (!*cfg->curve_secret_file && *cfg->allow_file)
        return ps_err_set(err, PS_EINVAL, "allow_file needs curve_secret_file (CURVE is off)");
    if (!*cfg->curve_secret_file && !cfg->insecure && !ps_is_loopback(cfg->bind_addr))
        return ps_err_set(err, PS_EINVAL,
                          "refusing to bind '%s' in plain text: anyone who reaches it could "
                          "overwrite the model. Set curve_secret_file and allow_file (see "
                          "docs/security.md), or insecure yes on a network you trust",
                          cfg->bind_addr);
    return PS_OK;
}

typedef struct {
    zmq_msg_t identity;
    uint64_t request_id;
    uint32_t table_id;
    uint32_t chunk;
    uint32_t rank;
    uint32_t flags;
    uint32_t reply_flags; /* PS_FLAG_SKIPPED known when parked (SSP/ASP) */
    int64_t recv_ns;      /* when the request arrived, for the latency histogram */
    int dtype;            /* values in the reply */
    int64_t clock;
    zmq_msg_t keys;       /* SPARSE_PULL: the keys to answer (empty otherwise) */
} pending_t;

/* A table of a job: its chunks that live on this shard (others NULL). */
typedef struct {
    uint64_t n_elems;   /* 0 = not defined */
    uint32_t n_chunks;
    ps_table_t **chunks;
    ps_sparse_t *sparse; /* a sparse table: this shard's keys (n_elems 0) */
} table_entry_t;

typedef struct {
    char name[JOB_NAME_MAX];
    uint32_t world;
    int max_staleness;
    uint8_t *joined, *live, *done, *left, *dead;
    int64_t *last_seen_ms;  /* per rank: last request (or job creation) */
    char (*peer)[48];       /* per rank: address of its last HELLO */
    double *samples, *samples_per_s, *loss; /* per rank, from heartbeats */
    int64_t *samples_at_ms;
    table_entry_t *tables;
    uint32_t n_tables;  /* capacity of tables[] (ids below it) */
    int64_t skip_logged_clock; /* newest skipped clock already logged */
    uint64_t generation;       /* bumped by every ROLLBACK */
    int64_t next_ckpt_clock;   /* checkpoint when the lowest chunk clock reaches this */
    pending_t *pending;
    size_t n_pending, cap_pending;
} job_t;

#define N_BUCKETS 16
static const double bucket_le[N_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                            0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                            1,      2.5,     5,      10};

/* A Prometheus histogram: cumulative counts are built when published. */
typedef struct {
    uint64_t counts[N_BUCKETS + 1]; /* last: above every bound */
    uint64_t count;
    double sum_s;
} hist_t;

/* Counters of the loop thread; published as snapshots, never shared. */
typedef struct {
    uint64_t requests[16];
    uint64_t errors;
    uint64_t errors_by_code[32];
    uint64_t nonfinite_pushes;
    uint64_t handshake_failures; /* plain-text or broken clients (monitor events) */
    uint64_t handshake_failures_by_kind[3]; /* auth, mechanism mismatch, other */
    uint64_t bytes_in, bytes_out;
    uint64_t checkpoints_written, checkpoints_failed;
    int64_t last_checkpoint_ms;
    hist_t push_latency, pull_latency;
} server_stats_t;

static void hist_observe(hist_t *h, int64_t ns)
{
    double s = (double)ns / 1e9;
    int b = 0;
    while (b < N_BUCKETS && s > bucket_le[b])
        b++;
    h->counts[b]++;
    h->count++;
    h->sum_s += s;
}

struct ps_server {
    ps_server_config_t cfg;
    void *ctx, *router;
    char endpoint[256];
    uint64_t incarnation;
    job_t **jobs;
    size_t n_jobs;
    server_stats_t stats;
    int64_t log_budget_reset_ms;
    int log_budget;
    pid_t ckpt_child;  /* forked checkpoint writer, 0 if none */
    ps_statsd_t *statsd;
    atomic_int save_requested; /* set by the stats thread's `save` */
    char last_job[JOB_NAME_MAX]; /* the newest job that ended, for show info */
    int64_t last_job_clock;
    uint64_t jobs_finished;
    int64_t started_ms;
    ps_zap_t *zap;       /* CURVE on: who may connect, in which role */
    void *monitor;       /* PAIR receiving the router's handshake failures */
    bool shutdown_requested; /* an admin's SHUTDOWN */
    atomic_int stop_requested; /* ps_server_stop, from another thread */
};

/* The request being handled: the parsed header plus its frames. */
typedef struct {
    ps_wire_msg_t *msg;
    Ps__Header *hdr;
    zmq_msg_t *values; /* NULL if the request has none */
    int64_t recv_ns;
} request_t;

/* The sender's address, for logs and HELLO only: looking it up costs a
 * metadata search, so no request on the hot path pays for it. */
static const char *request_peer(const request_t *rq)
{
    const char *addr = rq->msg && rq->msg->n_parts >= 2
                           ? zmq_msg_gets(&rq->msg->parts[1], "Peer-Address")
                           : NULL;
    return addr ? addr : "?";
}

static void reap_ckpt_child(ps_server_t *srv, bool block);
int ps_server_stats_port(const ps_server_t *srv);
int ps_server_metrics_port(const ps_server_t *srv);
static void publish_config(ps_server_t *srv);
static void publish_all(ps_server_t *srv);

/* ---- jobs ---------------------------------------------------------------- */

static void job_destroy(job_t *job)
{
    if (!job)
        return;
    for (uint32_t i = 0; i < job->n_tables; i++) {
        for (uint32_t c = 0; c < job->tables[i].n_chunks; c++)
            ps_table_destroy(&job->tables[i].chunks[c]);
        free(job->tables[i].chunks);
        ps_sparse_destroy(&job->tables[i].sparse);
    }
    for (size_t i = 0; i < job->n_pending; i++) {
        zmq_msg_close(&job->pending[i].identity);
        zmq_msg_close(&job->pending[i].keys);
    }
    free(job->tables);
    free(job->pending);
    free(job->joined);
    free(job->live);
    free(job->done);
    free(job->left);
    free(job->dead);
    free(job->last_seen_ms);
    free(job->peer);
    free(job->samples);
    free(job->samples_per_s);
    free(job->loss);
    free(job->samples_at_ms);
    free(job);
}

static job_t *job_new(const char *name, uint32_t world, int max_staleness)
{
    job_t *job = ps_xcalloc(1, sizeof *job);
    snprintf(job->name, sizeof job->name, "%s", name);
    job->world = world;
    job->max_staleness = max_staleness;
    job->joined = ps_xcalloc(world, 1);
    job->live = ps_xcalloc(world, 1);
    job->done = ps_xcalloc(world, 1);
    job->left = ps_xcalloc(world, 1);
    job->dead = ps_xcalloc(world, 1);
    job->last_seen_ms = ps_xcalloc(world, sizeof *job->last_seen_ms);
    job->peer = ps_xcalloc(world, sizeof *job->peer);
    job->samples = ps_xcalloc(world, sizeof *job->samples);
    job->samples_per_s = ps_xcalloc(world, sizeof *job->samples_per_s);
    job->loss = ps_xcalloc(world, sizeof *job->loss);
    job->samples_at_ms = ps_xcalloc(world, sizeof *job->samples_at_ms);
    int64_t now = ps_time_ms();
    for (uint32_t r = 0; r < world; r++)
        job->last_seen_ms[r] = now; /* a rank that never shows up times out too */
    job->skip_logged_clock = -1;
    /* Until a rank says DONE it counts in every barrier, joined or not yet. */
    memset(job->live, 1, world);
    return job;
}

static job_t *find_job(ps_server_t *srv, const char *name)
{
    for (size_t i = 0; i < srv->n_jobs; i++)
        if (strcmp(srv->jobs[i]->name, name) == 0)
            return srv->jobs[i];
    return NULL;
}

static int64_t job_resume_clock(const job_t *job);

static void drop_job(ps_server_t *srv, job_t *job)
{
    snprintf(srv->last_job, sizeof srv->last_job, "%s", job->name);
    srv->last_job_clock = job_resume_clock(job);
    srv->jobs_finished++;
    for (size_t i = 0; i < srv->n_jobs; i++) {
        if (srv->jobs[i] == job) {
            srv->jobs[i] = srv->jobs[--srv->n_jobs];
            break;
        }
    }
    ps_log(PS_LOG_INFO, "job '%s': all %u workers left or died; tables dropped", job->name,
           job->world);
    if (*srv->cfg.state_dir) {
        reap_ckpt_child(srv, true);
        ps_ckpt_remove_job(srv->cfg.state_dir, job->name);
    }
    job_destroy(job);
}

/* The clock a (re)joining worker should start at: the oldest clock any of
 * this shard's chunks is still waiting for (0 for a new job). */
static int64_t job_resume_clock(const job_t *job)
{
    int64_t clock = INT64_MAX;
    for (uint32_t i = 0; i < job->n_tables; i++)
        for (uint32_t c = 0; c < job->tables[i].n_chunks; c++)
            if (job->tables[i].chunks[c]) {
                int64_t t = ps_table_clock(job->tables[i].chunks[c]);
                clock = t < clock ? t : clock;
            }
    return clock == INT64_MAX ? 0 : clock;
}

static int64_t job_max_clock(const job_t *job)
{
    int64_t clock = 0;
    for (uint32_t i = 0; i < job->n_tables; i++)
        for (uint32_t c = 0; c < job->tables[i].n_chunks; c++)
            if (job->tables[i].chunks[c]) {
                int64_t t = ps_table_clock(job->tables[i].chunks[c]);
                clock = t > clock ? t : clock;
            }
    return clock;
}

/* The entry of table_id, created (with room for n_chunks) if new. NULL if
 * it exists with another size. */
/* The entry of table_id, growing the array (new entries empty). */
static table_entry_t *job_slot(job_t *job, uint32_t table_id)
{
    if (table_id >= job->n_tables) {
        uint32_t n = table_id + 1;
        job->tables = ps_xrealloc(job->tables, n * sizeof *job->tables);
        memset(job->tables + job->n_tables, 0, (n - job->n_tables) * sizeof *job->tables);
        job->n_tables = n;
    }
    return &job->tables[table_id];
}

static table_entry_t *job_entry(job_t *job, uint32_t table_id, uint64_t n_elems,
                                uint32_t n_chunks)
{
    table_entry_t *e = job_slot(job, table_id);
    if (e->sparse || (e->n_elems && (e->n_elems != n_elems || e->n_chunks != n_chunks)))
        return NULL;
    if (!e->n_elems) {
        e->n_elems = n_elems;
        e->n_chunks = n_chunks;
        e->chunks = ps_xcalloc(n_chunks, sizeof *e->chunks);
    }
    return e;
}

/* This shard's chunk of a table, or NULL. */
static ps_table_t *job_chunk(const job_t *job, uint32_t table_id, uint32_t chunk)
{
    if (table_id >= job->n_tables || chunk >= job->tables[table_id].n_chunks)
        return NULL;
    return job->tables[table_id].chunks[chunk];
}

/* Every rank has said DONE or was declared dead. */
static bool all_done(const job_t *job)
{
    for (uint32_t r = 0; r < job->world; r++)
        if (!job->done[r] && !job->dead[r])
            return false;
    return true;
}

/* ---- replies ------------------------------------------------------------- */

/* Sends [identity][header][vals, if not NULL; its ownership moves]. */
static void send_reply_msg(ps_server_t *srv, zmq_msg_t *identity, Ps__Header *rep,
                           zmq_msg_t *vals_in)
{
    zmq_msg_t id, vals;
    bool values = vals_in != NULL;
    if (values) {
        zmq_msg_init(&vals);
        zmq_msg_move(&vals, vals_in);
    }
    zmq_msg_init(&id);
    zmq_msg_copy(&id, identity);
    int n1 = ps_wire_send_msg(srv->router, &id, 1);
    int n2 = n1 < 0 ? n1 : ps_wire_send_header(srv->router, rep, values);
    int n3 = 0;
    if (values)
        n3 = n2 < 0 ? (zmq_msg_close(&vals), n2) : ps_wire_send_msg(srv->router, &vals, 0);
    if (n1 < 0 || n2 < 0 || n3 < 0) {
        /* The peer is gone (ROUTER drops unroutable messages); nothing to undo. */
        ps_log(PS_LOG_DEBUG, "reply to request %llu not sent",
               (unsigned long long)rep->request_id);
        return;
    }
    srv->stats.bytes_out += (uint64_t)n2 + (uint64_t)n3;
}

/* Sends [identity][header][values converted to rep->dtype, if values]. */
static void send_reply(ps_server_t *srv, zmq_msg_t *identity, Ps__Header *rep,
                       const float *values, uint64_t n_values)
{
    zmq_msg_t vals;
    if (values && ps_wire_from_f32(&vals, rep->dtype, values, n_values) != PS_OK) {
        ps_log(PS_LOG_ERROR, "shard %lld: cannot allocate a %llu-element reply",
               (long long)srv->cfg.shard, (unsigned long long)n_values);
        return;
    }
    send_reply_msg(srv, identity, rep, values ? &vals : NULL);
}

static void reply_init(Ps__Header *rep, const Ps__Header *req)
{
    ps__header__init(rep);
    rep->version = PS_PROTOCOL_VERSION;
    rep->op = req ? req->op : PS__OP__OP_NONE;
    rep->request_id = req ? req->request_id : 0;
    rep->table_id = req ? req->table_id : 0;
    rep->chunk = req ? req->chunk : 0;
    rep->clock = req ? req->clock : 0;
}

static int reply_error(ps_server_t *srv, request_t *rq, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Answers a bad request with its status and reason, counts it and logs it
 * (at most 20 lines a second, so a hostile peer cannot flood the log). */
static int reply_error(ps_server_t *srv, request_t *rq, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    srv->stats.errors++;
    if (code < 0 && code > -32)
        srv->stats.errors_by_code[-code]++;
    int64_t now = ps_time_ms();
    if (now - srv->log_budget_reset_ms >= 1000) {
        srv->log_budget_reset_ms = now;
        srv->log_budget = 20;
    }
    if (srv->log_budget > 0) {
        srv->log_budget--;
        ps_log(PS_LOG_WARN, "peer '%s': %s request rejected: %s: %s", request_peer(rq),
               rq->hdr ? ps_op_name(rq->hdr->op) : "unparsable", ps_errname(code), msg);
    }
    Ps__Header rep;
    reply_init(&rep, rq->hdr);
    rep.status = code;
    rep.message = msg;
    send_reply(srv, &rq->msg->parts[0], &rep, NULL, 0);
    return code;
}

static void reply_params(ps_server_t *srv, const pending_t *p, ps_table_t *t)
{
    Ps__Header rep;
    reply_init(&rep, NULL);
    rep.op = PS__OP__PULL;
    rep.request_id = p->request_id;
    rep.table_id = p->table_id;
    rep.chunk = p->chunk;
    rep.clock = p->clock;
    rep.dtype = p->dtype;
    rep.flags = p->reply_flags;
    if (ps_table_last_skipped_round(t) == p->clock - 1 && p->clock > 0)
        rep.flags |= PS_FLAG_SKIPPED;
    rep.offset = ps_table_offset(t);
    rep.n_elems = ps_table_len(t);
    zmq_msg_t vals;
    if (p->dtype == PS__DTYPE__F32 && ps_table_lend_params(t, &vals) == PS_OK) {
        /* fp32 goes out as the table's own buffer: no copy, no allocation */
        send_reply_msg(srv, (zmq_msg_t *)&p->identity, &rep, &vals);
        return;
    }
    send_reply(srv, (zmq_msg_t *)&p->identity, &rep, ps_table_params(t), ps_table_len(t));
}

/* ---- pending pulls ------------------------------------------------------- */

static bool pull_is_ready(const job_t *job, const pending_t *p)
{
    if ((p->flags & PS_FLAG_AFTER_ALL_DONE) && !all_done(job))
        return false;
    if (job->max_staleness < 0)
        return true;
    if (zmq_msg_size((zmq_msg_t *)&p->keys))
        return ps_sparse_ready_clock(job->tables[p->table_id].sparse, job->live) >=
               p->clock - job->max_staleness;
    const ps_table_t *t = job_chunk(job, p->table_id, p->chunk);
    return ps_table_ready_clock(t, job->live) >= p->clock - job->max_staleness;
}

static void reply_sparse(ps_server_t *srv, pending_t *p, ps_sparse_t *t);

/* Answers every parked pull whose clock the consistency model now allows. */
static void serve_pending(ps_server_t *srv, job_t *job)
{
    size_t i = 0;
    while (i < job->n_pending) {
        pending_t *p = &job->pending[i];
        if (!pull_is_ready(job, p)) {
            i++;
            continue;
        }
        if (zmq_msg_size(&p->keys))
            reply_sparse(srv, p, job->tables[p->table_id].sparse);
        else
            reply_params(srv, p, job_chunk(job, p->table_id, p->chunk));
        hist_observe(&srv->stats.pull_latency, ps_time_ns() - p->recv_ns);
        zmq_msg_close(&p->identity);
        zmq_msg_close(&p->keys);
        job->pending[i] = job->pending[--job->n_pending];
    }
}

static void park_pull(job_t *job, request_t *rq, int64_t clock, uint32_t reply_flags)
{
    if (job->n_pending == job->cap_pending) {
        job->cap_pending = job->cap_pending ? job->cap_pending * 2 : 16;
        job->pending = ps_xrealloc(job->pending, job->cap_pending * sizeof *job->pending);
    }
    pending_t *p = &job->pending[job->n_pending++];
    zmq_msg_init(&p->identity);
    zmq_msg_copy(&p->identity, &rq->msg->parts[0]);
    p->request_id = rq->hdr->request_id;
    p->table_id = rq->hdr->table_id;
    p->chunk = rq->hdr->chunk;
    p->rank = rq->hdr->rank;
    p->flags = rq->hdr->flags;
    p->reply_flags = reply_flags;
    p->dtype = rq->hdr->dtype;
    p->clock = clock;
    p->recv_ns = rq->recv_ns;
    zmq_msg_init(&p->keys);
}

/* After a rank stops counting in barriers, rounds it held up may complete. */
static void recheck_job(ps_server_t *srv, job_t *job)
{
    for (uint32_t i = 0; i < job->n_tables; i++) {
        for (uint32_t c = 0; c < job->tables[i].n_chunks; c++)
            if (job->tables[i].chunks[c])
                ps_table_try_complete(job->tables[i].chunks[c], job->live);
        if (job->tables[i].sparse)
            ps_sparse_try_complete(job->tables[i].sparse, job->live);
    }
    serve_pending(srv, job);
}

/* ---- checkpoints --------------------------------------------------------- */

/* Writes a checkpoint of job in this process. */
static int write_job_ckpt(ps_server_t *srv, job_t *job, ps_errbuf_t *err)
{
    ps_ckpt_job_t cj = {.world = job->world, .max_staleness = job->max_staleness,
                        .generation = job->generation, .shard = (uint32_t)srv->cfg.shard,
                        .n_shards = (uint32_t)srv->cfg.shards, .clock = job_resume_clock(job)};
    snprintf(cj.job, sizeof cj.job, "%s", job->name);
    uint32_t n = 0, cap = 0;
    ps_table_t **chunks = NULL;
    uint32_t *ids = NULL;
    for (uint32_t i = 0; i < job->n_tables; i++) {
        for (uint32_t c = 0; c < job->tables[i].n_chunks; c++) {
            if (!job->tables[i].chunks[c])
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                chunks = ps_xrealloc(chunks, cap * sizeof *chunks);
                ids = ps_xrealloc(ids, cap * sizeof *ids);
            }
            chunks[n] = job->tables[i].chunks[c];
            ids[n++] = c;
        }
    }
    int rc = ps_ckpt_write(srv->cfg.state_dir, &cj, chunks, ids, n, (int)srv->cfg.checkpoint_keep,
                           err);
    free(chunks);
    free(ids);
    return rc;
}

static void reap_ckpt_child(ps_server_t *srv, bool block)
{
    int status;
    if (srv->ckpt_child <= 0 || waitpid(srv->ckpt_child, &status, block ? 0 : WNOHANG) <= 0)
        return;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        ps_log(PS_LOG_ERROR, "shard %lld: checkpoint writer (pid %d) failed", (long long)srv->cfg.shard,
               (int)srv->ckpt_child);
        srv->stats.checkpoints_failed++;
    } else {
        srv->stats.checkpoints_written++;
        srv->stats.last_checkpoint_ms = ps_time_ms();
    }
    srv->ckpt_child = 0;
}

/* Every checkpoint_every clocks a forked child writes the job's state from
 * its copy-on-write view of memory while the loop keeps serving. Under BSP
 * the lowest chunk clock reaches c only once every chunk is at exactly c
 * (no worker pushes c before it has every table at c), so the file is a
 * consistent cut, taken at the same clocks on every shard. */
static void maybe_checkpoint(ps_server_t *srv, job_t *job)
{
    if (!*srv->cfg.state_dir || !srv->cfg.checkpoint_every)
        return;
    int64_t clock = job_resume_clock(job);
    if (clock < job->next_ckpt_clock)
        return;
    job->next_ckpt_clock = (clock / srv->cfg.checkpoint_every + 1) * srv->cfg.checkpoint_every;
    reap_ckpt_child(srv, true); /* one writer at a time */
    pid_t pid = fork();
    if (pid == 0) {
        ps_errbuf_t err;
        int rc = write_job_ckpt(srv, job, &err);
        if (rc != PS_OK)
            ps_log(PS_LOG_ERROR, "shard %lld: %s", (long long)srv->cfg.shard, err.msg);
        _exit(rc == PS_OK ? 0 : 1);
    }
    if (pid < 0) {
        ps_errbuf_t err;
        if (write_job_ckpt(srv, job, &err) != PS_OK)
            ps_log(PS_LOG_ERROR, "shard %lld: %s", (long long)srv->cfg.shard, err.msg);
        return;
    }
    srv->ckpt_child = pid;
}

int ps_server_checkpoint_all(ps_server_t *srv)
{
    int failed = 0;
    reap_ckpt_child(srv, true);
    for (size_t j = 0; *srv->cfg.state_dir && j < srv->n_jobs; j++) {
        ps_errbuf_t err;
        if (write_job_ckpt(srv, srv->jobs[j], &err) != PS_OK) {
            ps_log(PS_LOG_ERROR, "shard %lld: %s", (long long)srv->cfg.shard, err.msg);
            failed++;
            srv->stats.checkpoints_failed++;
        } else {
            srv->stats.checkpoints_written++;
            srv->stats.last_checkpoint_ms = ps_time_ms();
            ps_log(PS_LOG_INFO, "job '%s': checkpoint written at clock %lld", srv->jobs[j]->name,
                   (long long)job_resume_clock(srv->jobs[j]));
        }
    }
    return failed;
}

/* Puts the chunks of a checkpoint into job (creating missing ones). */
static int restore_chunks(ps_server_t *srv, job_t *job, const ps_ckpt_t *ck, ps_errbuf_t *err)
{
    uint32_t shards = (uint32_t)srv->cfg.shards;
    for (uint32_t i = 0; i < ck->n_chunks; i++) {
        const ps_ckpt_chunk_t *c = &ck->chunks[i];
        uint32_t n_chunks = ps_shardmap_n_chunks(c->n_total, shards);
        ps_chunk_t where = c->chunk < n_chunks
                               ? ps_shardmap_chunk(c->n_total, c->table_id, c->chunk, shards)
                               : (ps_chunk_t){0, 0, UINT32_MAX};
        table_entry_t *e = job_entry(job, c->table_id, c->n_total, n_chunks);
        if (!e || where.shard != srv->cfg.shard || where.offset != c->offset ||
            where.len != c->state.len)
            return ps_err_set(err, PS_ECONFLICT, "chunk %u of table '%s' does not fit this shard",
                              c->chunk, c->name);
        ps_table_t *t = e->chunks[c->chunk];
        if (!t) {
            ps_table_params_t p = {.name = c->name, .id = c->table_id, .n_total = c->n_total,
                                   .shape = c->shape, .ndim = c->ndim, .offset = c->offset,
                                   .len = c->state.len, .optim = c->optim, .world = job->world,
                                   .max_staleness = job->max_staleness};
            if (!(t = e->chunks[c->chunk] = ps_table_new(&p, c->state.params, err)))
                return err->code;
        }
        if (ps_table_set_state(t, &c->state) != PS_OK)
            return ps_err_set(err, PS_ECONFLICT, "chunk %u of table '%s' has another layout",
                              c->chunk, c->name);
    }
    return PS_OK;
}

/* At startup: every job with a checkpoint under state_dir comes back at
 * its newest valid one (corrupt ones are skipped with a warning). */
static void restore_jobs(ps_server_t *srv)
{
    char **names;
    int n = ps_ckpt_list_jobs(srv->cfg.state_dir, &names);
    for (int i = 0; i < n; i++) {
        ps_ckpt_t ck;
        ps_errbuf_t err;
        if (ps_ckpt_load(srv->cfg.state_dir, names[i], -1, &ck, &err) != PS_OK) {
            ps_log(PS_LOG_WARN, "shard %lld: %s", (long long)srv->cfg.shard, err.msg);
            continue;
        }
        if (ck.job.shard != srv->cfg.shard || ck.job.n_shards != srv->cfg.shards ||
            find_job(srv, ck.job.job) || srv->n_jobs >= (size_t)srv->cfg.max_jobs) {
            ps_log(PS_LOG_WARN, "shard %lld: checkpoint of job '%s' is for shard %u of %u; ignored",
                   (long long)srv->cfg.shard, ck.job.job, ck.job.shard, ck.job.n_shards);
            ps_ckpt_free(&ck);
            continue;
        }
        job_t *job = job_new(ck.job.job, ck.job.world, ck.job.max_staleness);
        job->generation = ck.job.generation;
        if (restore_chunks(srv, job, &ck, &err) != PS_OK) {
            ps_log(PS_LOG_WARN, "shard %lld: job '%s' not restored: %s", (long long)srv->cfg.shard,
                   ck.job.job, err.msg);
            job_destroy(job);
        } else {
            int64_t clock = job_resume_clock(job);
            if (srv->cfg.checkpoint_every)
                job->next_ckpt_clock = (clock / srv->cfg.checkpoint_every + 1) *
                                       srv->cfg.checkpoint_every;
            srv->jobs = ps_xrealloc(srv->jobs, (srv->n_jobs + 1) * sizeof *srv->jobs);
            srv->jobs[srv->n_jobs++] = job;
            ps_log(PS_LOG_INFO, "job '%s': restored from checkpoint at clock %lld (%u chunks, generation %llu)",
                   job->name, (long long)clock, ck.n_chunks, (unsigned long long)job->generation);
        }
        ps_ckpt_free(&ck);
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* ---- request validation -------------------------------------------------- */

/* Finds the job and checks the rank; replies with an error if either fails. */
static job_t *request_job(ps_server_t *srv, request_t *rq)
{
    job_t *job = find_job(srv, rq->hdr->job);
    if (!job) {
        reply_error(srv, rq, PS_ENOJOB, "job '%s' is not known here (send HELLO first)",
                    rq->hdr->job);
        return NULL;
    }
    if (rq->hdr->rank >= job->world) {
        reply_error(srv, rq, PS_ERANGE, "rank %u is outside job '%s' of %u workers",
                    rq->hdr->rank, job->name, job->world);
        return NULL;
    }
    job->last_seen_ms[rq->hdr->rank] = ps_time_ms();
    if (job->dead[rq->hdr->rank] && rq->hdr->op != PS__OP__BYE) {
        reply_error(srv, rq, PS_EDEAD, "worker %u of job '%s' was declared dead", rq->hdr->rank,
                    job->name);
        return NULL;
    }
    return job;
}

static ps_table_t *request_table(ps_server_t *srv, request_t *rq, job_t *job)
{
    uint32_t id = rq->hdr->table_id, chunk = rq->hdr->chunk;
    ps_table_t *t = job_chunk(job, id, chunk);
    if (!t)
        reply_error(srv, rq, PS_ENOTABLE, "table %u chunk %u is not defined on shard %lld in job '%s'",
                    id, chunk, (long long)srv->cfg.shard, job->name);
    return t;
}

/* Checks that the request addresses exactly this shard's slice of the table
 * and, if has_values, that the values frame holds it in the header's dtype;
 * then turns that frame into aligned fp32 (unscaled by grad_scale). */
static int check_values(ps_server_t *srv, request_t *rq, uint64_t offset, uint64_t len,
                        bool has_values)
{
    const Ps__Header *h = rq->hdr;
    size_t dsize = ps_dtype_size(h->dtype);
    if (!dsize)
        return reply_error(srv, rq, PS_EPROTO, "unknown dtype %d", h->dtype);
    if (h->offset != offset || h->n_elems != len)
        return reply_error(srv, rq, PS_ERANGE,
                           "slice [%llu, +%llu) does not match this shard's [%llu, +%llu)",
                           (unsigned long long)h->offset, (unsigned long long)h->n_elems,
                           (unsigned long long)offset, (unsigned long long)len);
    if (!has_values)
        return rq->values ? reply_error(srv, rq, PS_EPROTO, "unexpected values frame") : PS_OK;
    if (!rq->values)
        return reply_error(srv, rq, PS_EPROTO, "%s without a values frame", ps_op_name(h->op));
    size_t bytes = zmq_msg_size(rq->values);
    if (bytes != len * dsize)
        return reply_error(srv, rq, PS_EPROTO, "values frame has %zu bytes, header says %llu",
                           bytes, (unsigned long long)(len * dsize));
    if (!isfinite(h->grad_scale) || h->grad_scale < 0)
        return reply_error(srv, rq, PS_ERANGE, "grad_scale %g is not a positive number",
                           h->grad_scale);
    int rc = ps_wire_to_f32(rq->values, h->dtype, len, h->grad_scale);
    if (rc != PS_OK)
        return reply_error(srv, rq, rc, "cannot convert %llu values to fp32",
                           (unsigned long long)len);
    return PS_OK;
}

static bool all_finite(const float *v, uint64_t n)
{
    /* inf and NaN are the floats whose exponent bits are all ones; an integer
     * OR over the lanes vectorises (a float reduction would not, at -O2). */
    const uint32_t *u = (const uint32_t *)v;
    uint32_t bad = 0;
    for (uint64_t i = 0; i < n; i++)
        bad |= (u[i] & 0x7f800000u) == 0x7f800000u;
    return bad == 0;
}

/* ---- handlers ------------------------------------------------------------ */

static int handle_hello(ps_server_t *srv, request_t *rq)
{
    const Ps__Header *h = rq->hdr;
    if (h->version != PS_PROTOCOL_VERSION)
        return reply_error(srv, rq, PS_EVERSION, "client speaks protocol %u, server %u",
                           h->version, PS_PROTOCOL_VERSION);
    if (!*h->job || strlen(h->job) >= JOB_NAME_MAX)
        return reply_error(srv, rq, PS_EINVAL, "job name must have 1 to %d bytes",
                           JOB_NAME_MAX - 1);
    if (h->world_size == 0 || h->world_size > 65536 || h->rank >= h->world_size)
        return reply_error(srv, rq, PS_ERANGE, "rank %u / world size %u out of range", h->rank,
                           h->world_size);
    job_t *job = find_job(srv, h->job);
    if (job && (job->world != h->world_size || job->max_staleness != h->max_staleness))
        return reply_error(srv, rq, PS_ECONFLICT,
                           "job '%s' has %u workers and max_staleness %d; hello says %u and %d",
                           job->name, job->world, job->max_staleness, h->world_size,
                           h->max_staleness);
    if (!job) {
        if (srv->n_jobs >= (size_t)srv->cfg.max_jobs)
            return reply_error(srv, rq, PS_EAGAIN, "server already serves %zu jobs", srv->n_jobs);
        job = job_new(h->job, h->world_size, h->max_staleness);
        srv->jobs = ps_xrealloc(srv->jobs, (srv->n_jobs + 1) * sizeof *srv->jobs);
        srv->jobs[srv->n_jobs++] = job;
        ps_log(PS_LOG_INFO, "job '%s': created (%u workers, max_staleness %d)", job->name,
               job->world, job->max_staleness);
    }
    bool rejoin = job->joined[h->rank];
    snprintf(job->peer[h->rank], sizeof job->peer[h->rank], "%s", request_peer(rq));
    job->joined[h->rank] = 1;
    job->last_seen_ms[h->rank] = ps_time_ms();
    if (job->dead[h->rank] || job->done[h->rank]) {
        job->dead[h->rank] = 0;
        job->done[h->rank] = 0;
        job->left[h->rank] = 0;
        job->live[h->rank] = 1;
    }
    int64_t clock = job_resume_clock(job);
    ps_log(PS_LOG_INFO, "job '%s': worker %u %s from '%s' at clock %lld", job->name, h->rank,
           rejoin ? "rejoined" : "joined", job->peer[h->rank], (long long)clock);
    Ps__Header rep;
    reply_init(&rep, h);
    rep.clock = clock;
    rep.max_clock = job_max_clock(job);
    rep.generation = job->generation;
    rep.shard = (uint32_t)srv->cfg.shard;
    rep.n_shards = (uint32_t)srv->cfg.shards;
    rep.incarnation = srv->incarnation;
    send_reply(srv, &rq->msg->parts[0], &rep, NULL, 0);
    return PS_OK;
}

/* INIT_TABLE of a sparse table: every shard holds the keys that hash to it,
 * so every shard gets the definition (no values frame). */
static int init_sparse_table(ps_server_t *srv, request_t *rq, job_t *job)
{
    const Ps__Header *h = rq->hdr;
    const Ps__TableSpec *spec = h->table;
    if (h->table_id >= (uint64_t)srv->cfg.max_tables)
        return reply_error(srv, rq, PS_ERANGE, "table id %u is above max_tables %lld",
                           h->table_id, (long long)srv->cfg.max_tables);
    if (!*spec->name || !spec->optim)
        return reply_error(srv, rq, PS_EPROTO, "sparse INIT_TABLE needs a name and an optimizer");
    if (rq->values)
        return reply_error(srv, rq, PS_EPROTO, "sparse INIT_TABLE carries no values");
    table_entry_t *e = job_slot(job, h->table_id);
    if (e->n_elems)
        return reply_error(srv, rq, PS_ECONFLICT, "table %u is already a dense table", h->table_id);
    if (e->sparse) {
        if (!ps_sparse_same_layout(e->sparse, spec->name, spec->dim))
            return reply_error(srv, rq, PS_ECONFLICT, "table %u is already sparse '%s' of dim %u",
                               h->table_id, ps_sparse_name(e->sparse), ps_sparse_dim(e->sparse));
    } else {
        ps_sparse_params_t p = {.name = spec->name, .id = h->table_id, .dim = spec->dim,
                                .seed = spec->seed, .init_scale = spec->init_scale,
                                .world = job->world, .max_staleness = job->max_staleness};
        ps_optim_spec_from_wire(spec->optim, &p.optim);
        ps_errbuf_t err;
        e->sparse = ps_sparse_new(&p, &err);
        if (!e->sparse)
            return reply_error(srv, rq, err.code, "%s", err.msg);
        ps_log(PS_LOG_INFO, "job '%s': sparse table %u '%s' (dim %u, %s)", job->name, h->table_id,
               spec->name, spec->dim, ps_optim_name(p.optim.kind));
        if (*srv->cfg.state_dir)
            ps_log(PS_LOG_WARN, "job '%s': sparse table '%s' is not in checkpoints yet: a restarted "
                   "shard starts its rows over", job->name, spec->name);
    }
    Ps__Header rep;
    reply_init(&rep, h);
    send_reply(srv, &rq->msg->parts[0], &rep, NULL, 0);
    return PS_OK;
}

static void reply_sparse(ps_server_t *srv, pending_t *p, ps_sparse_t *t)
{
    uint64_t n = zmq_msg_size(&p->keys) / sizeof(uint64_t);
    uint32_t dim = ps_sparse_dim(t);
    Ps__Header rep;
    reply_init(&rep, NULL);
    rep.op = PS__OP__SPARSE_PULL;
    rep.request_id = p->request_id;
    rep.table_id = p->table_id;
    rep.clock = p->clock;
    rep.n_elems = n;
    /* the rows go straight into the reply frame: no buffer to copy from */
    zmq_msg_t vals;
    bool ok = zmq_msg_init_size(&vals, n * dim * sizeof(float)) == 0;
    float *rows = ok ? zmq_msg_data(&vals) : NULL;
    const uint64_t *keys = zmq_msg_data(&p->keys); /* a copy we made aligned (see park) */
    if (rows && (p->flags & PS_FLAG_NO_CREATE))
        ps_sparse_peek(t, keys, n, rows);
    if (!rows || (!(p->flags & PS_FLAG_NO_CREATE) && ps_sparse_pull(t, keys, n, rows) != PS_OK)) {
        rep.status = rows ? PS_ERANGE : PS_ENOMEM;
        rep.message = rows ? "sparse table is full on this shard" : "out of memory";
        if (ok)
            zmq_msg_close(&vals);
        send_reply_msg(srv, &p->identity, &rep, NULL);
    } else {
        send_reply_msg(srv, &p->identity, &rep, &vals);
    }
}

/* SPARSE_PULL and SPARSE_PUSH: [header][keys][gradient rows (push)]. Every
 * key must hash to this shard; counts and sizes must agree; no NaN. */
static int handle_sparse(ps_server_t *srv, request_t *rq)
{
    const Ps__Header *h = rq->hdr;
    job_t *job = request_job(srv, rq);
    if (!job)
        return PS_EINVAL;
    ps_sparse_t *t = h->table_id < job->n_tables ? job->tables[h->table_id].sparse : NULL;
    if (!t)
        return reply_error(srv, rq, PS_ENOTABLE, "table %u is not a sparse table in job '%s'",
                           h->table_id, job->name);
    if (h->generation != job->generation)
        return reply_error(srv, rq, PS_ESTALE, "job '%s' is at generation %llu, request at %llu",
                           job->name, (unsigned long long)job->generation,
                           (unsigned long long)h->generation);
    bool push = h->op == PS__OP__SPARSE_PUSH;
    int want_parts = push ? 4 : 3;
    if (rq->msg->n_parts != want_parts)
        return reply_error(srv, rq, PS_EPROTO, "%s needs %s frames, got %d", ps_op_name(h->op),
                           push ? "header, keys and values" : "header and keys",
                           rq->msg->n_parts - 1);
    zmq_msg_t *keys_msg = &rq->msg->parts[2];
    size_t kbytes = zmq_msg_size(keys_msg);
    uint64_t n = kbytes / sizeof(uint64_t);
    if (kbytes % sizeof(uint64_t) || n != h->n_elems || n == 0)
        return reply_error(srv, rq, PS_EPROTO, "keys frame has %zu bytes for n_elems %llu", kbytes,
                           (unsigned long long)h->n_elems);
    if (n > (uint64_t)srv->cfg.max_request_keys)
        return reply_error(srv, rq, PS_ERANGE, "%llu keys in one request, above max_request_keys %lld",
                           (unsigned long long)n, (long long)srv->cfg.max_request_keys);
    uint32_t shards = (uint32_t)srv->cfg.shards, me = (uint32_t)srv->cfg.shard;
    const char *kp = zmq_msg_data(keys_msg);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t key;
        memcpy(&key, kp + i * sizeof key, sizeof key);
        if (ps_shardmap_key_shard(key, shards) != me)
            return reply_error(srv, rq, PS_ERANGE, "key %llu belongs to shard %u, not %u",
                               (unsigned long long)key, ps_shardmap_key_shard(key, shards), me);
    }
    if (ps_sparse_keys(t) + n > (uint64_t)srv->cfg.max_sparse_keys)
        return reply_error(srv, rq, PS_ERANGE, "sparse table '%s' holds %llu keys here, limit %lld",
                           ps_sparse_name(t), (unsigned long long)ps_sparse_keys(t),
                           (long long)srv->cfg.max_sparse_keys);
    int64_t pull_clock = h->clock;
    if (push) {
        zmq_msg_t *vals = &rq->msg->parts[3];
        uint64_t len = n * ps_sparse_dim(t);
        if (h->dtype != PS__DTYPE__F32)
            return reply_error(srv, rq, PS_EPROTO, "sparse gradients travel as f32");
        if (zmq_msg_size(vals) != len * sizeof(float))
            return reply_error(srv, rq, PS_EPROTO, "values frame has %zu bytes, %llu keys x dim %u "
                               "need %llu", zmq_msg_size(vals), (unsigned long long)n,
                               ps_sparse_dim(t), (unsigned long long)(len * sizeof(float)));
        if (job->done[h->rank])
            return reply_error(srv, rq, PS_ECONFLICT, "worker %u already said DONE", h->rank);
        rq->values = vals;
        if (ps_wire_to_f32(vals, PS__DTYPE__F32, len, 1.0) != PS_OK ||
            !all_finite(zmq_msg_data(vals), len)) {
            srv->stats.nonfinite_pushes++;
            return reply_error(srv, rq, PS_ENONFINITE, "sparse push to '%s' clock %lld contains "
                               "inf or NaN", ps_sparse_name(t), (long long)h->clock);
        }
        int rc = ps_sparse_push(t, h->rank, h->clock, keys_msg, vals);
        if (rc != PS_OK)
            return reply_error(srv, rq, rc, "sparse push of clock %lld to '%s' but worker %u is at %lld",
                               (long long)h->clock, ps_sparse_name(t), h->rank,
                               (long long)ps_sparse_worker_clock(t, h->rank));
        if (ps_sparse_try_complete(t, job->live) || job->max_staleness != 0)
            serve_pending(srv, job);
        hist_observe(&srv->stats.push_latency, ps_time_ns() - rq->recv_ns);
        Ps__Header rep;
        reply_init(&rep, h);
        send_reply(srv, &rq->msg->parts[0], &rep, NULL, 0);
        return PS_OK;
    }
    /* a pull: parked with an aligned copy of its keys until the clock allows */
    park_pull(job, rq, pull_clock, 0);
    pending_t *p = &job->pending[job->n_pending - 1];
    zmq_msg_close(&p->keys);
    zmq_msg_init_size(&p->keys, kbytes);
    memcpy(zmq_msg_data(&p->keys), kp, kbytes);
    serve_pending(srv, job);
    return PS_OK;
}

static int handle_init_table(ps_server_t *srv, request_t *rq)
{
    const Ps__Header *h = rq->hdr;
    job_t *job = request_job(srv, rq);
    if (!job)
        return PS_EINVAL;
    const Ps__TableSpec *spec = h->table;
    if (spec && spec->sparse)
        return init_sparse_table(srv, rq, job);
    if (!spec || !*spec->name || spec->n_shape < 1 || spec->n_shape > PS_TABLE_MAX_DIMS)
        return reply_error(srv, rq, PS_EPROTO, "INIT_TABLE needs a name and 1 to %d dims",
                           PS_TABLE_MAX_DIMS);
    if (spec->n_elems > (uint64_t)srv->cfg.max_table_elems)
        return reply_error(srv, rq, PS_ERANGE, "table '%s' of %llu elements is above max_table_elems %lld",
                           spec->name, (unsigned long long)spec->n_elems,
                           (long long)srv->cfg.max_table_elems);
    uint64_t prod = 1;
    for (size_t i = 0; i < spec->n_shape; i++)
        prod = spec->shape[i] && prod > UINT64_MAX / spec->shape[i] ? 0 : prod * spec->shape[i];
    if (prod != spec->n_elems || spec->n_elems == 0)
        return reply_error(srv, rq, PS_EPROTO, "table '%s': shape does not multiply to %llu",
                           spec->name, (unsigned long long)spec->n_elems);
    if (h->table_id >= (uint64_t)srv->cfg.max_tables)
        return reply_error(srv, rq, PS_ERANGE, "table id %u is above max_tables %lld",
                           h->table_id, (long long)srv->cfg.max_tables);
    uint32_t shards = (uint32_t)srv->cfg.shards, n_chunks = ps_shardmap_n_chunks(spec->n_elems, shards);
    if (h->chunk >= n_chunks)
        return reply_error(srv, rq, PS_ERANGE, "table '%s' has %u chunks, not %u", spec->name,
                           n_chunks, h->chunk + 1);
    ps_chunk_t slice = ps_shardmap_chunk(spec->n_elems, h->table_id, h->chunk, shards);
    if (slice.shard != srv->cfg.shard)
        return reply_error(srv, rq, PS_ERANGE, "chunk %u of table '%s' belongs to shard %u, not %lld",
                           h->chunk, spec->name, slice.shard, (long long)srv->cfg.shard);
    table_entry_t *e = job_entry(job, h->table_id, spec->n_elems, n_chunks);
    if (!e)
        return reply_error(srv, rq, PS_ECONFLICT, "table %u already has %llu elements, not %llu",
                           h->table_id, (unsigned long long)job->tables[h->table_id].n_elems,
                           (unsigned long long)spec->n_elems);
    ps_table_t *existing = e->chunks[h->chunk];
    if (existing) {
        if (!ps_table_same_layout(existing, spec->name, spec->n_elems))
            return reply_error(srv, rq, PS_ECONFLICT, "table %u is already '%s' with %llu elements",
                               h->table_id, ps_table_name(existing),
                               (unsigned long long)ps_table_n_total(existing));
    } else {
        if (check_values(srv, rq, slice.offset, slice.len, true) != PS_OK)
            return PS_EINVAL;
        ps_table_params_t p = {
            .name = spec->name, .id = h->table_id, .n_total = spec->n_elems,
            .shape = spec->shape, .ndim = (int)spec->n_shape, .offset = slice.offset,
            .len = slice.len, .world = job->world, .max_staleness = job->max_staleness,
        };
        if (!spec->optim)
            return reply_error(srv, rq, PS_EPROTO, "table '%s' has no optimizer", spec->name);
        ps_optim_spec_from_wire(spec->optim, &p.optim);
        ps_errbuf_t err;
        ps_table_t *t = ps_table_new(&p, zmq_msg_data(rq->values), &err);
        if (!t)
            return reply_error(srv, rq, err.code, "%s", err.msg);
        e->chunks[h->chunk] = t;
        ps_log(PS_LOG_DEBUG, "job '%s': table %u '%s' chunk %u holds [%llu, +%llu) of %llu",
               job->name, h->table_id, spec->name, h->chunk, (unsigned long long)slice.offset,
               (unsigned long long)slice.len, (unsigned long long)spec->n_elems);
    }
    Ps__Header rep;
    reply_init(&rep, h);
    rep.chunk = h->chunk;
    rep.offset = slice.offset;
    rep.n_elems = slice.len;
    send_reply(srv, &rq->msg->parts[0], &rep, NULL, 0);
    return PS_OK;
}

/* PULL, PUSH and PUSH_PULL: a push is applied (or kept for its BSP round),
 * and a pull is answered now or parked until its clock is readable. */
static int handle_push_pull(ps_server_t *srv, request_t *rq)
{
    const Ps__Header *h = rq->hdr;
    job_t *job = request_job(srv, rq);
    ps_table_t *t = job ? request_table(srv, rq, job) : NULL;
    if (!t)
        return PS_EINVAL;
    if (h->generation != job->generation)
        return reply_error(srv, rq, PS_ESTALE, "job '%s' is at generation %llu, request at %llu",
                           job->name, (unsigned long long)job->generation,
                           (unsigned long long)h->generation);
    int64_t pull_clock = h->clock;
    uint32_t reply_flags = 0;
    if (h->op != PS__OP__PULL) {
        bool skip = (h->flags & PS_FLAG_SKIP) != 0;
        if (check_values(srv, rq, ps_table_offset(t), ps_table_len(t), !skip) != PS_OK)
            return PS_EINVAL;
        if (job->done[h->rank])
            return reply_error(srv, rq, PS_ECONFLICT, "worker %u already said DONE", h->rank);
        if (!skip && !all_finite(zmq_msg_data(rq->values), ps_table_len(t))) {
            srv->stats.nonfinite_pushes++;
            return reply_error(srv, rq, PS_ENONFINITE,
                               "push to table '%s' clock %lld contains inf or NaN",
                               ps_table_name(t), (long long)h->clock);
        }
        if (skip && h->clock > job->skip_logged_clock) {
            job->skip_logged_clock = h->clock;
            ps_log(PS_LOG_NOTICE, "job '%s': worker %u overflowed at clock %lld; step skipped",
                   job->name, h->rank, (long long)h->clock);
        }
        if (skip && job->max_staleness != 0)
            reply_flags = PS_FLAG_SKIPPED;
        int rc = ps_table_push(t, h->rank, h->clock, skip ? NULL : rq->values, h->n_samples);
        if (rc != PS_OK)
            return reply_error(srv, rq, rc, "push of clock %lld to table '%s' but worker %u is at %lld",
                               (long long)h->clock, ps_table_name(t), h->rank,
                               (long long)ps_table_worker_clock(t, h->rank));
        if (ps_table_try_complete(t, job->live) || job->max_staleness != 0) {
            serve_pending(srv, job);
            maybe_checkpoint(srv, job);
        }
        hist_observe(&srv->stats.push_latency, ps_time_ns() - rq->recv_ns);
        pull_clock = h->clock + 1;
    }
    if (h->op == PS__OP__PUSH) {
        Ps__Header rep;
        reply_init(&rep, h);
        send_reply(srv, &rq->msg->parts[0], &rep, NULL, 0);
        return PS_OK;
    }
    park_pull(job, rq, pull_clock, reply_flags);
    serve_pending(srv, job);
    return PS_OK;
}

static int handle_done_bye(ps_server_t *srv, request_t *rq)
{
    const Ps__Header *h = rq->hdr;
    job_t *job = request_job(srv, rq);
    if (!job)
        return PS_EINVAL;
    Ps__Header rep;
    reply_init(&rep, h);
    send_reply(srv, &rq->msg->parts[0], &rep, NULL, 0);
    job->done[h->rank] = 1;
    job->live[h->rank] = 0;
    if (h->op == PS__OP__BYE)
        job->left[h->rank] = 1;
    recheck_job(srv, job);
    for (uint32_t r = 0; r < job->world; r++)
        if (!job->left[r] && !job->dead[r])
            return PS_OK;
    drop_job(srv, job);
    return PS_OK;
}

/* ROLLBACK to clock as generation: reload this shard's checkpoint of that
 * clock, drop rounds in progress and parked pulls (their workers get
 * ESTALE and recover too). Idempotent: a generation already reached is
 * acknowledged without reloading, so every worker may ask. */
static int handle_rollback(ps_server_t *srv, request_t *rq)
{
    const Ps__Header *h = rq->hdr;
    job_t *job = request_job(srv, rq);
    if (!job)
        return PS_EINVAL;
    if (h->generation > job->generation) {
        ps_ckpt_t ck;
        ps_errbuf_t err;
        reap_ckpt_child(srv, true); /* the checkpoint asked for may be being written */
        if (!*srv->cfg.state_dir || ps_ckpt_load(srv->cfg.state_dir, job->name, h->clock, &ck, &err) != PS_OK)
            return reply_error(srv, rq, PS_ENOCKPT, "shard %lld has no checkpoint of job '%s' at clock %lld",
                               (long long)srv->cfg.shard, job->name, (long long)h->clock);
        int rc = restore_chunks(srv, job, &ck, &err);
        ps_ckpt_free(&ck);
        if (rc != PS_OK)
            return reply_error(srv, rq, rc, "%s", err.msg);
        for (size_t i = 0; i < job->n_pending; i++) {
            Ps__Header rep;
            reply_init(&rep, NULL);
            rep.request_id = job->pending[i].request_id;
            rep.op = PS__OP__PULL;
            rep.status = PS_ESTALE;
            rep.message = "the job was rolled back";
            send_reply(srv, &job->pending[i].identity, &rep, NULL, 0);
            zmq_msg_close(&job->pending[i].identity);
            zmq_msg_close(&job->pending[i].keys);
        }
        job->n_pending = 0;
        job->generation = h->generation;
        if (srv->cfg.checkpoint_every)
            job->next_ckpt_clock = (h->clock / srv->cfg.checkpoint_every + 1) * srv->cfg.checkpoint_every;
        ps_log(PS_LOG_NOTICE, "job '%s': rolled back to clock %lld (generation %llu) for worker %u",
               job->name, (long long)h->clock, (unsigned long long)h->generation, h->rank);
    }
    Ps__Header rep;
    reply_init(&rep, h);
    rep.clock = job_resume_clock(job);
    rep.max_clock = job_max_clock(job);
    rep.generation = job->generation;
    send_reply(srv, &rq->msg->parts[0], &rep, NULL, 0);
    return PS_OK;
}

static int handle_heartbeat(ps_server_t *srv, request_t *rq)
{
    /* Keeps a live rank alive; a rank already declared dead must HELLO. */
    job_t *job = find_job(srv, rq->hdr->job);
    uint32_t r = rq->hdr->rank;
    if (job && r < job->world && !job->dead[r]) {
        int64_t now = ps_time_ms();
        job->last_seen_ms[r] = now;
        double samples = (double)rq->hdr->n_samples;
        if (job->samples_at_ms[r] && now > job->samples_at_ms[r] && samples >= job->samples[r])
            job->samples_per_s[r] = (samples - job->samples[r]) * 1000.0 /
                                    (double)(now - job->samples_at_ms[r]);
        job->samples[r] = samples;
        job->samples_at_ms[r] = now;
        job->loss[r] = rq->hdr->loss;
    }
    Ps__Header rep;
    reply_init(&rep, rq->hdr);
    rep.incarnation = srv->incarnation;
    send_reply(srv, &rq->msg->parts[0], &rep, NULL, 0);
    return PS_OK;
}

static void build_info(ps_server_t *srv, int64_t now, char **text, char **json);

/* STATS: the `show info json` document, for monitors reaching us over
 * CURVE (the stats socket itself is local only). */
static int handle_stats(ps_server_t *srv, request_t *rq)
{
    char *text, *json;
    build_info(srv, ps_time_ms(), &text, &json);
    Ps__Header rep;
    reply_init(&rep, rq->hdr);
    rep.message = json;
    send_reply(srv, &rq->msg->parts[0], &rep, NULL, 0);
    free(text);
    free(json);
    return PS_OK;
}

static int handle_save(ps_server_t *srv, request_t *rq)
{
    if (!*srv->cfg.state_dir)
        return reply_error(srv, rq, PS_ENOCKPT, "shard %lld has no state_dir: checkpoints are off",
                           (long long)srv->cfg.shard);
    int failed = ps_server_checkpoint_all(srv);
    if (failed)
        return reply_error(srv, rq, PS_EIO, "%d checkpoints failed (see the server log)", failed);
    Ps__Header rep;
    reply_init(&rep, rq->hdr);
    send_reply(srv, &rq->msg->parts[0], &rep, NULL, 0);
    return PS_OK;
}

/* SHUTDOWN: answered first, then the loop ends and main checkpoints. */
static int handle_shutdown(ps_server_t *srv, request_t *rq)
{
    ps_log(PS_LOG_NOTICE, "shard %lld: SHUTDOWN requested by %s", (long long)srv->cfg.shard,
           request_peer(rq));
    srv->shutdown_requested = true;
    Ps__Header rep;
    reply_init(&rep, rq->hdr);
    send_reply(srv, &rq->msg->parts[0], &rep, NULL, 0);
    return PS_OK;
}

/* What each role may ask for. Plain text (no CURVE; only served on
 * loopback unless the operator said `insecure`) may do what a worker may
 * and SAVE, as the local stats socket may: stopping a daemon over the
 * network takes an authenticated admin key (locally there is SIGTERM). */
static bool role_permits(ps_role_t role, int op)
{
    switch (role) {
    case PS_ROLE_NONE:
        return op != PS__OP__SHUTDOWN;
    case PS_ROLE_ADMIN:
        return true;
    case PS_ROLE_WORKER:
        return op != PS__OP__SAVE && op != PS__OP__SHUTDOWN;
    case PS_ROLE_MONITOR:
        return op == PS__OP__STATS;
    default:
        return false;
    }
}

/* With CURVE, the role of the key this request came with, as the list in
 * force says now; replies EAUTH/EPERM and returns false if it may not. */
static bool request_permitted(ps_server_t *srv, request_t *rq)
{
    if (!srv->zap) {
        if (role_permits(PS_ROLE_NONE, rq->hdr->op))
            return true;
        reply_error(srv, rq, PS_EPERM, "%s needs CURVE and an admin key (locally: SIGTERM)",
                    ps_op_name(rq->hdr->op));
        return false;
    }
    const char *user_id = zmq_msg_gets(&rq->msg->parts[1], "User-Id");
    ps_role_t role = ps_zap_role(srv->zap, user_id);
    if (role == PS_ROLE_NONE) {
        reply_error(srv, rq, PS_EAUTH, "the key of %s is not on shard %lld's allow-list any more",
                    request_peer(rq), (long long)srv->cfg.shard);
        return false;
    }
    if (!role_permits(role, rq->hdr->op)) {
        char name[64];
        ps_zap_name(srv->zap, user_id, name, sizeof name);
        reply_error(srv, rq, PS_EPERM, "key '%s' of %s has role %s, which may not %s", name,
                    request_peer(rq), ps_role_name(role), ps_op_name(rq->hdr->op));
        return false;
    }
    return true;
}

typedef int (*handler_fn)(ps_server_t *, request_t *);

static const handler_fn handlers[] = {
    [PS__OP__HELLO] = handle_hello,         [PS__OP__INIT_TABLE] = handle_init_table,
    [PS__OP__PULL] = handle_push_pull,      [PS__OP__PUSH] = handle_push_pull,
    [PS__OP__PUSH_PULL] = handle_push_pull, [PS__OP__HEARTBEAT] = handle_heartbeat,
    [PS__OP__DONE] = handle_done_bye,       [PS__OP__BYE] = handle_done_bye,
    [PS__OP__ROLLBACK] = handle_rollback,  [PS__OP__STATS] = handle_stats,
    [PS__OP__SAVE] = handle_save,          [PS__OP__SHUTDOWN] = handle_shutdown,
    [PS__OP__SPARSE_PULL] = handle_sparse, [PS__OP__SPARSE_PUSH] = handle_sparse,
};
#define N_HANDLERS (sizeof handlers / sizeof handlers[0])

/* Frames after the identity: header, then values (dense ops). */
static void handle_message(ps_server_t *srv, ps_wire_msg_t *msg, int recv_rc);

void ps_server_handle(ps_server_t *srv, ps_wire_msg_t *msg)
{
    handle_message(srv, msg, msg->n_parts > 4 ? PS_EPROTO : PS_OK);
}

static void handle_message(ps_server_t *srv, ps_wire_msg_t *msg, int recv_rc)
{
    request_t rq = {.msg = msg, .recv_ns = ps_time_ns()};
    if (msg->n_parts < 1)
        return;
    /* the routing identity is ZeroMQ's, not the peer's bytes */
    srv->stats.bytes_in += ps_wire_msg_bytes(msg) - zmq_msg_size(&msg->parts[0]);
    if (msg->n_parts >= 2)
        rq.hdr = ps_wire_unpack_header(&msg->parts[1]);
    if (!rq.hdr) {
        reply_error(srv, &rq, PS_EPROTO, "first frame is not a ps.Header");
    } else if (recv_rc == PS_EPROTO || msg->n_parts > 4 ||
               (msg->n_parts == 4 && rq.hdr->op != PS__OP__SPARSE_PUSH)) {
        reply_error(srv, &rq, PS_EPROTO, "too many frames");
    } else if ((unsigned)rq.hdr->op >= N_HANDLERS || !handlers[rq.hdr->op]) {
        reply_error(srv, &rq, PS_EPROTO, "unknown op %d", rq.hdr->op);
    } else if (!request_permitted(srv, &rq)) {
        /* answered */
    } else if (rq.hdr->incarnation && rq.hdr->incarnation != srv->incarnation &&
               rq.hdr->op != PS__OP__HELLO && rq.hdr->op != PS__OP__HEARTBEAT) {
        reply_error(srv, &rq, PS_ERESTARTED, "shard %lld restarted (incarnation %llx); HELLO again",
                    (long long)srv->cfg.shard, (unsigned long long)srv->incarnation);
    } else {
        rq.values = msg->n_parts == 3 && rq.hdr->op != PS__OP__SPARSE_PULL ? &msg->parts[2] : NULL;
        srv->stats.requests[rq.hdr->op]++;
        handlers[rq.hdr->op](srv, &rq);
    }
    if (rq.hdr)
        ps__header__free_unpacked(rq.hdr, NULL);
}

/* ---- lifecycle ----------------------------------------------------------- */

/* "endpoint ADDR", "pid N", "stats_port N", "metrics_port N" (-1 if off):
 * what a supervisor or test needs to reach us, written once all listen. */
static int write_ready_file(const char *path, const ps_server_t *srv, ps_errbuf_t *err)
{
    char tmp[PS_OPT_STR_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return ps_err_set(err, PS_EIO, "cannot write ready file '%s': %s", tmp, strerror(errno));
    fprintf(f, "endpoint %s\npid %d\nstats_port %d\nmetrics_port %d\n", srv->endpoint, (int)getpid(),
            ps_server_stats_port(srv), ps_server_metrics_port(srv));
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        return ps_err_set(err, PS_EIO, "cannot write ready file '%s': %s", path, strerror(errno));
    return PS_OK;
}

/* CURVE server: the ZAP handler is up (and fails closed: no handler, no
 * service) before the socket binds. */
static int setup_curve(ps_server_t *srv, ps_errbuf_t *err)
{
    ps_curve_keys_t keys;
    int rc = ps_curve_load(srv->cfg.curve_secret_file, true, &keys, err);
    if (rc != PS_OK)
        return rc;
    srv->zap = ps_zap_start(srv->ctx, srv->cfg.allow_file, err);
    if (!srv->zap)
        return err ? err->code : PS_EINVAL;
    int one = 1;
    if (zmq_setsockopt(srv->router, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
        zmq_setsockopt(srv->router, ZMQ_CURVE_SECRETKEY, keys.secret_z85, PS_Z85_KEY_LEN) != 0 ||
        zmq_setsockopt(srv->router, ZMQ_ZAP_DOMAIN, "ps", 2) != 0)
        return ps_err_set(err, PS_ENET, "cannot enable CURVE: %s", zmq_strerror(zmq_errno()));
    memset(keys.secret_z85, 0, sizeof keys.secret_z85);
    ps_log(PS_LOG_INFO, "shard %lld: CURVE server key %s", (long long)srv->cfg.shard,
           keys.public_z85);
    return PS_OK;
}

ps_server_t *ps_server_new(const ps_server_config_t *cfg, ps_errbuf_t *err)
{
    ps_server_t *srv = ps_xcalloc(1, sizeof *srv);
    srv->cfg = *cfg;
    srv->incarnation = ((uint64_t)ps_time_ns() << 16) ^ (uint64_t)getpid();
    srv->ctx = zmq_ctx_new();
    zmq_ctx_set(srv->ctx, ZMQ_IO_THREADS, (int)cfg->io_threads);
    srv->router = zmq_socket(srv->ctx, ZMQ_ROUTER);
    int64_t maxmsg = cfg->max_message_mb * 1024 * 1024;
    int zero = 0, one = 1;
    zmq_setsockopt(srv->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(srv->router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(srv->router, ZMQ_ROUTER_MANDATORY, &zero, sizeof zero);
    zmq_setsockopt(srv->router, ZMQ_ROUTER_HANDOVER, &one, sizeof one);
    if (*cfg->curve_secret_file && setup_curve(srv, err) != PS_OK) {
        ps_server_destroy(&srv);
        return NULL;
    }
    /* handshake failures (plain text to CURVE, bad keys) show up here */
    char mon_ep[64];
    snprintf(mon_ep, sizeof mon_ep, "inproc://ps-server-monitor-%p", (void *)srv);
    if (zmq_socket_monitor(srv->router, mon_ep,
                           ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) == 0) {
        srv->monitor = zmq_socket(srv->ctx, ZMQ_PAIR);
        zmq_setsockopt(srv->monitor, ZMQ_LINGER, &zero, sizeof zero);
        zmq_connect(srv->monitor, mon_ep);
    }
    char ep[600];
    if (cfg->port)
        snprintf(ep, sizeof ep, "tcp://%s:%lld", cfg->bind_addr, (long long)cfg->port);
    else
        snprintf(ep, sizeof ep, "tcp://%s:*", cfg->bind_addr);
    if (zmq_bind(srv->router, ep) != 0) {
        ps_err_set(err, PS_ENET, "cannot bind '%s': %s", ep, zmq_strerror(zmq_errno()));
        ps_server_destroy(&srv);
        return NULL;
    }
    size_t len = sizeof srv->endpoint;
    zmq_getsockopt(srv->router, ZMQ_LAST_ENDPOINT, srv->endpoint, &len);
    if (*cfg->state_dir)
        restore_jobs(srv);
    srv->started_ms = ps_time_ms();
    atomic_init(&srv->save_requested, 0);
    atomic_init(&srv->stop_requested, 0);
    if (*cfg->stats_socket || cfg->stats_port >= 0 || cfg->metrics_port >= 0) {
        srv->statsd = ps_statsd_start(cfg->stats_socket, (int)cfg->stats_port, (int)cfg->metrics_port,
                                      *cfg->state_dir ? &srv->save_requested : NULL, err);
        if (!srv->statsd) {
            ps_server_destroy(&srv);
            return NULL;
        }
        publish_config(srv);
        publish_all(srv);
    }
    if (*cfg->ready_file && write_ready_file(cfg->ready_file, srv, err) != PS_OK) {
        ps_server_destroy(&srv);
        return NULL;
    }
    return srv;
}

void ps_server_destroy(ps_server_t **srvp)
{
    ps_server_t *srv = *srvp;
    if (!srv)
        return;
    reap_ckpt_child(srv, true);
    ps_statsd_stop(&srv->statsd);
    for (size_t i = 0; i < srv->n_jobs; i++)
        job_destroy(srv->jobs[i]);
    free(srv->jobs);
    if (srv->router)
        zmq_close(srv->router);
    if (srv->monitor)
        zmq_close(srv->monitor);
    ps_zap_stop(&srv->zap);
    if (srv->ctx)
        zmq_ctx_term(srv->ctx);
    free(srv);
    *srvp = NULL;
}

const char *ps_server_endpoint(const ps_server_t *srv)
{
    return srv->endpoint;
}

/* Declares dead every rank silent past heartbeat_timeout_ms: it stops
 * counting in barriers (rounds it held up complete) and its later requests
 * get EDEAD until it sends HELLO again. */
static void sweep_dead_workers(ps_server_t *srv)
{
    int64_t now = ps_time_ms();
    for (size_t j = 0; j < srv->n_jobs; j++) {
        job_t *job = srv->jobs[j];
        bool changed = false;
        for (uint32_t r = 0; r < job->world; r++) {
            int64_t silent = now - job->last_seen_ms[r];
            if (job->dead[r] || job->done[r] || silent <= srv->cfg.heartbeat_timeout_ms)
                continue;
            job->dead[r] = 1;
            job->live[r] = 0;
            changed = true;
            ps_log(PS_LOG_WARN, "job '%s': worker %u declared dead: %s for %lld ms", job->name, r,
                   job->joined[r] ? "silent" : "never joined", (long long)silent);
        }
        if (changed)
            recheck_job(srv, job);
    }
    /* a job whose every rank left or died is over */
    for (size_t j = 0; j < srv->n_jobs;) {
        job_t *job = srv->jobs[j];
        bool over = true;
        for (uint32_t r = 0; r < job->world && over; r++)
            over = job->left[r] || job->dead[r];
        if (over && job->n_pending == 0)
            drop_job(srv, job);
        else
            j++;
    }
}

/* ---- stats publication (loop thread; the stats thread only serves) ------ */

static long rss_bytes(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * sysconf(_SC_PAGESIZE);
}

static const char *rank_state(const job_t *job, uint32_t r)
{
    if (job->dead[r])
        return "dead";
    if (job->left[r])
        return "left";
    if (job->done[r])
        return "done";
    return job->joined[r] ? "live" : "waiting";
}

/* Pushes of rank r reflected on this shard: the lowest over its chunks. */
static int64_t rank_clock(const job_t *job, uint32_t r)
{
    int64_t clock = INT64_MAX;
    for (uint32_t i = 0; i < job->n_tables; i++)
        for (uint32_t c = 0; c < job->tables[i].n_chunks; c++)
            if (job->tables[i].chunks[c]) {
                int64_t w = ps_table_worker_clock(job->tables[i].chunks[c], r);
                clock = w < clock ? w : clock;
            }
    return clock == INT64_MAX ? 0 : clock;
}

/* The `show info` section, as text and as JSON; the caller frees both. */
static void build_info(ps_server_t *srv, int64_t now, char **textp, char **jsonp)
{
    char *text = NULL, *json = NULL;
    size_t tl, jl;
    FILE *t = open_memstream(&text, &tl), *j = open_memstream(&json, &jl);
    uint32_t alive = 0;
    for (size_t i = 0; i < srv->n_jobs; i++)
        for (uint32_t r = 0; r < srv->jobs[i]->world; r++)
            alive += srv->jobs[i]->joined[r] && !srv->jobs[i]->dead[r] && !srv->jobs[i]->left[r];
    const server_stats_t *st = &srv->stats;
    fprintf(t, "# server\nversion:%s\npid:%d\nuptime_s:%.1f\nrole:server\nshard:%lld\nshards:%lld\n"
               "endpoint:%s\nincarnation:%llx\n# jobs\njobs:%zu\nworkers_alive:%u\n",
            PS_VERSION, (int)getpid(), (double)(now - srv->started_ms) / 1000.0,
            (long long)srv->cfg.shard, (long long)srv->cfg.shards, srv->endpoint,
            (unsigned long long)srv->incarnation, srv->n_jobs, alive);
    fprintf(j, "{\"version\":\"%s\",\"pid\":%d,\"uptime_s\":%.1f,\"role\":\"server\",\"shard\":%lld,"
               "\"shards\":%lld,\"endpoint\":\"%s\",\"jobs\":%zu,\"workers_alive\":%u,"
               "\"jobs_finished\":%llu,\"last_job\":\"%s\",\"last_job_clock\":%lld,\"clocks\":{",
            PS_VERSION, (int)getpid(), (double)(now - srv->started_ms) / 1000.0,
            (long long)srv->cfg.shard, (long long)srv->cfg.shards, srv->endpoint, srv->n_jobs, alive,
            (unsigned long long)srv->jobs_finished, srv->last_job, (long long)srv->last_job_clock);
    fprintf(t, "jobs_finished:%llu\nlast_job:%s\nlast_job_clock:%lld\n",
            (unsigned long long)srv->jobs_finished, srv->last_job, (long long)srv->last_job_clock);
    for (size_t i = 0; i < srv->n_jobs; i++) {
        fprintf(t, "clock_%s:%lld\n", srv->jobs[i]->name, (long long)job_resume_clock(srv->jobs[i]));
        fprintf(j, "%s\"%s\":%lld", i ? "," : "", srv->jobs[i]->name,
                (long long)job_resume_clock(srv->jobs[i]));
    }
    fprintf(t, "# requests\n");
    fprintf(j, "},\"requests\":{");
    for (int op = 1; op <= PS__OP__SPARSE_PUSH; op++) {
        fprintf(t, "requests_%s:%llu\n", ps_op_name(op), (unsigned long long)st->requests[op]);
        fprintf(j, "%s\"%s\":%llu", op > 1 ? "," : "", ps_op_name(op),
                (unsigned long long)st->requests[op]);
    }
    fprintf(t, "bytes_received:%llu\nbytes_sent:%llu\n# errors\nerrors:%llu\nnonfinite_pushes:%llu\n",
            (unsigned long long)st->bytes_in, (unsigned long long)st->bytes_out,
            (unsigned long long)st->errors, (unsigned long long)st->nonfinite_pushes);
    fprintf(j, "},\"bytes_received\":%llu,\"bytes_sent\":%llu,\"errors\":%llu,\"nonfinite_pushes\":%llu,",
            (unsigned long long)st->bytes_in, (unsigned long long)st->bytes_out,
            (unsigned long long)st->errors, (unsigned long long)st->nonfinite_pushes);
    uint64_t accepted = srv->zap ? ps_zap_accepted(srv->zap) : 0;
    uint64_t refused = srv->zap ? ps_zap_refused(srv->zap) : 0;
    size_t keys = srv->zap ? ps_zap_keys(srv->zap) : 0;
    fprintf(t, "# security\nsecurity:%s\nkeys_allowed:%zu\nhandshakes_accepted:%llu\n"
               "handshakes_refused:%llu\nhandshake_failures:%llu\n",
            srv->zap ? "curve" : "plain", keys, (unsigned long long)accepted,
            (unsigned long long)refused, (unsigned long long)st->handshake_failures);
    fprintf(j, "\"security\":\"%s\",\"keys_allowed\":%zu,\"handshakes_accepted\":%llu,"
               "\"handshakes_refused\":%llu,\"handshake_failures\":%llu,",
            srv->zap ? "curve" : "plain", keys, (unsigned long long)accepted,
            (unsigned long long)refused, (unsigned long long)st->handshake_failures);
    fprintf(j, "\"errors_by_code\":{");
    int first = 1;
    for (int code = 1; code < 32; code++) {
        if (!st->errors_by_code[code])
            continue;
        fprintf(t, "errors_%s:%llu\n", ps_errname(-code), (unsigned long long)st->errors_by_code[code]);
        fprintf(j, "%s\"%s\":%llu", first ? "" : ",", ps_errname(-code),
                (unsigned long long)st->errors_by_code[code]);
        first = 0;
    }
    double ckpt_age = st->last_checkpoint_ms ? (double)(now - st->last_checkpoint_ms) / 1000.0 : -1;
    fprintf(t, "# memory\nrss_bytes:%ld\n# checkpoint\nstate_dir:%s\ncheckpoint_every:%lld\n"
               "checkpoints_written:%llu\ncheckpoints_failed:%llu\nlast_checkpoint_age_s:%.1f\n",
            rss_bytes(), srv->cfg.state_dir, (long long)srv->cfg.checkpoint_every,
            (unsigned long long)st->checkpoints_written, (unsigned long long)st->checkpoints_failed,
            ckpt_age);
    fprintf(j, "},\"rss_bytes\":%ld,\"checkpoint_every\":%lld,\"checkpoints_written\":%llu,"
               "\"checkpoints_failed\":%llu,\"last_checkpoint_age_s\":%.1f}\n",
            rss_bytes(), (long long)srv->cfg.checkpoint_every,
            (unsigned long long)st->checkpoints_written, (unsigned long long)st->checkpoints_failed,
            ckpt_age);
    fclose(t);
    fclose(j);
    *textp = text;
    *jsonp = json;
}

static void publish_info(ps_server_t *srv, int64_t now)
{
    char *text, *json;
    build_info(srv, now, &text, &json);
    ps_statsd_publish(srv->statsd, PS_STATS_INFO, text, json);
}

static void publish_workers(ps_server_t *srv, int64_t now)
{
    char *text = NULL, *json = NULL;
    size_t tl, jl;
    FILE *t = open_memstream(&text, &tl), *j = open_memstream(&json, &jl);
    fprintf(t, "%-12s %4s %-7s %-16s %8s %9s %12s %12s %9s\n", "job", "rank", "state", "address",
            "clock", "staleness", "heartbeat_ms", "samples/s", "loss");
    fprintf(j, "[");
    for (size_t i = 0; i < srv->n_jobs; i++) {
        const job_t *job = srv->jobs[i];
        int64_t top = job_max_clock(job);
        for (uint32_t r = 0; r < job->world; r++) {
            int64_t clock = rank_clock(job, r);
            fprintf(t, "%-12s %4u %-7s %-16s %8lld %9lld %12lld %12.0f %9.4f\n", job->name, r,
                    rank_state(job, r), *job->peer[r] ? job->peer[r] : "-", (long long)clock,
                    (long long)(top - clock), (long long)(now - job->last_seen_ms[r]),
                    job->samples_per_s[r], job->loss[r]);
            fprintf(j, "%s{\"job\":\"%s\",\"rank\":%u,\"state\":\"%s\",\"address\":\"%s\",\"clock\":%lld,"
                       "\"staleness\":%lld,\"heartbeat_age_ms\":%lld,\"samples_per_s\":%.1f,\"loss\":%.6f}",
                    i || r ? "," : "", job->name, r, rank_state(job, r), job->peer[r],
                    (long long)clock, (long long)(top - clock),
                    (long long)(now - job->last_seen_ms[r]), job->samples_per_s[r], job->loss[r]);
        }
    }
    fprintf(j, "]\n");
    fclose(t);
    fclose(j);
    ps_statsd_publish(srv->statsd, PS_STATS_WORKERS, text, json);
}

static void publish_tables(ps_server_t *srv)
{
    char *text = NULL, *json = NULL;
    size_t tl, jl;
    FILE *t = open_memstream(&text, &tl), *j = open_memstream(&json, &jl);
    fprintf(t, "%-12s %3s %-12s %-6s %-14s %-5s %6s %12s %-9s %12s\n", "job", "id", "name", "kind",
            "shape", "dtype", "chunks", "elems_here", "optimizer", "bytes");
    fprintf(j, "[");
    int first = 1;
    for (size_t i = 0; i < srv->n_jobs; i++) {
        const job_t *job = srv->jobs[i];
        for (uint32_t id = 0; id < job->n_tables; id++) {
            const table_entry_t *e = &job->tables[id];
            if (e->sparse) {
                const ps_sparse_t *sp = e->sparse;
                const char *opt = ps_optim_name(ps_sparse_optim(sp)->kind);
                fprintf(t, "%-12s %3u %-12s %-6s dim %-10u %-5s %6s %12llu %-9s %12llu\n", job->name,
                        id, ps_sparse_name(sp), "sparse", ps_sparse_dim(sp), "f32", "-",
                        (unsigned long long)ps_sparse_keys(sp), opt,
                        (unsigned long long)ps_sparse_bytes(sp));
                fprintf(j, "%s{\"job\":\"%s\",\"id\":%u,\"name\":\"%s\",\"kind\":\"sparse\",\"dim\":%u,"
                           "\"dtype\":\"f32\",\"keys_here\":%llu,\"optimizer\":\"%s\",\"bytes\":%llu}",
                        first ? "" : ",", job->name, id, ps_sparse_name(sp), ps_sparse_dim(sp),
                        (unsigned long long)ps_sparse_keys(sp), opt,
                        (unsigned long long)ps_sparse_bytes(sp));
                first = 0;
                continue;
            }
            uint64_t here = 0, bytes = 0;
            uint32_t held = 0;
            const ps_table_t *any = NULL;
            for (uint32_t c = 0; c < e->n_chunks; c++) {
                if (!e->chunks[c])
                    continue;
                any = e->chunks[c];
                here += ps_table_len(any);
                bytes += ps_table_bytes(any);
                held++;
            }
            if (!any)
                continue;
            int ndim;
            const uint64_t *shape = ps_table_shape(any, &ndim);
            char dims[64] = "";
            size_t dl = 0;
            for (int d = 0; d < ndim; d++)
                dl += (size_t)snprintf(dims + dl, sizeof dims - dl, "%s%llu", d ? "x" : "",
                                       (unsigned long long)shape[d]);
            const char *opt = ps_optim_name(ps_table_optim(any)->kind);
            fprintf(t, "%-12s %3u %-12s %-6s %-14s %-5s %3u/%-2u %12llu %-9s %12llu\n", job->name, id,
                    ps_table_name(any), "dense", dims, "f32", held, e->n_chunks,
                    (unsigned long long)here, opt, (unsigned long long)bytes);
            fprintf(j, "%s{\"job\":\"%s\",\"id\":%u,\"name\":\"%s\",\"kind\":\"dense\",\"shape\":\"%s\","
                       "\"dtype\":\"f32\",\"chunks_here\":%u,\"chunks\":%u,\"elems_here\":%llu,"
                       "\"optimizer\":\"%s\",\"bytes\":%llu}",
                    first ? "" : ",", job->name, id, ps_table_name(any), dims, held, e->n_chunks,
                    (unsigned long long)here, opt, (unsigned long long)bytes);
            first = 0;
        }
    }
    fprintf(j, "]\n");
    fclose(t);
    fclose(j);
    ps_statsd_publish(srv->statsd, PS_STATS_TABLES, text, json);
}

static void publish_hist(FILE *m, const char *name, const char *help, const hist_t *h)
{
    fprintf(m, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int b = 0; b < N_BUCKETS; b++) {
        cum += h->counts[b];
        fprintf(m, "%s_bucket{le=\"%g\"} %llu\n", name, bucket_le[b], (unsigned long long)cum);
    }
    fprintf(m, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9f\n%s_count %llu\n", name,
            (unsigned long long)h->count, name, h->sum_s, name, (unsigned long long)h->count);
}

static void publish_metrics(ps_server_t *srv, int64_t now)
{
    char *text = NULL;
    size_t tl;
    FILE *m = open_memstream(&text, &tl);
    const server_stats_t *st = &srv->stats;
    fprintf(m, "# HELP ps_build_info Build of this ps-server.\n# TYPE ps_build_info gauge\n"
               "ps_build_info{version=\"%s\",role=\"server\",shard=\"%lld\"} 1\n",
            PS_VERSION, (long long)srv->cfg.shard);
    fprintf(m, "# HELP ps_uptime_seconds Time since this process started.\n# TYPE ps_uptime_seconds gauge\n"
               "ps_uptime_seconds %.3f\n", (double)(now - srv->started_ms) / 1000.0);
    fprintf(m, "# HELP ps_requests_total Requests handled, by op.\n# TYPE ps_requests_total counter\n");
    for (int op = 1; op <= PS__OP__SPARSE_PUSH; op++)
        fprintf(m, "ps_requests_total{op=\"%s\"} %llu\n", ps_op_name(op),
                (unsigned long long)st->requests[op]);
    fprintf(m, "# HELP ps_received_bytes_total Bytes received in requests.\n# TYPE ps_received_bytes_total counter\n"
               "ps_received_bytes_total %llu\n", (unsigned long long)st->bytes_in);
    fprintf(m, "# HELP ps_sent_bytes_total Bytes sent in replies.\n# TYPE ps_sent_bytes_total counter\n"
               "ps_sent_bytes_total %llu\n", (unsigned long long)st->bytes_out);
    fprintf(m, "# HELP ps_errors_total Requests refused, by error code.\n# TYPE ps_errors_total counter\n");
    for (int code = 1; code <= -PS_EAUTH; code++)
        fprintf(m, "ps_errors_total{code=\"%s\"} %llu\n", ps_errname(-code),
                (unsigned long long)st->errors_by_code[code]);
    fprintf(m, "# HELP ps_checkpoints_total Checkpoints written, by result.\n# TYPE ps_checkpoints_total counter\n"
               "ps_checkpoints_total{result=\"ok\"} %llu\nps_checkpoints_total{result=\"failed\"} %llu\n",
            (unsigned long long)st->checkpoints_written, (unsigned long long)st->checkpoints_failed);
    if (srv->zap)
        fprintf(m, "# HELP ps_handshakes_total CURVE handshakes, by ZAP verdict.\n"
                   "# TYPE ps_handshakes_total counter\nps_handshakes_total{result=\"accepted\"} %llu\n"
                   "ps_handshakes_total{result=\"refused\"} %llu\n",
                (unsigned long long)ps_zap_accepted(srv->zap),
                (unsigned long long)ps_zap_refused(srv->zap));
    fprintf(m, "# HELP ps_handshake_failures_total Connections that failed the handshake "
               "(e.g. plain text to CURVE).\n# TYPE ps_handshake_failures_total counter\n"
               "ps_handshake_failures_total %llu\n", (unsigned long long)st->handshake_failures);
    fprintf(m, "# HELP ps_jobs Jobs served.\n# TYPE ps_jobs gauge\nps_jobs %zu\n", srv->n_jobs);
    fprintf(m, "# HELP ps_sparse_keys Keys a sparse table holds on this shard.\n"
               "# TYPE ps_sparse_keys gauge\n");
    for (size_t i = 0; i < srv->n_jobs; i++)
        for (uint32_t id = 0; id < srv->jobs[i]->n_tables; id++)
            if (srv->jobs[i]->tables[id].sparse)
                fprintf(m, "ps_sparse_keys{job=\"%s\",table=\"%s\"} %llu\n", srv->jobs[i]->name,
                        ps_sparse_name(srv->jobs[i]->tables[id].sparse),
                        (unsigned long long)ps_sparse_keys(srv->jobs[i]->tables[id].sparse));
    fprintf(m, "# HELP ps_job_clock Lowest chunk clock of a job on this shard.\n# TYPE ps_job_clock gauge\n");
    for (size_t i = 0; i < srv->n_jobs; i++)
        fprintf(m, "ps_job_clock{job=\"%s\"} %lld\n", srv->jobs[i]->name,
                (long long)job_resume_clock(srv->jobs[i]));
    fprintf(m, "# HELP ps_resident_memory_bytes Resident set size.\n# TYPE ps_resident_memory_bytes gauge\n"
               "ps_resident_memory_bytes %ld\n", rss_bytes());
    publish_hist(m, "ps_push_seconds", "Time from receiving a push to applying or keeping it.",
                 &st->push_latency);
    publish_hist(m, "ps_pull_seconds", "Time from receiving a pull to answering it (barrier waits included).",
                 &st->pull_latency);
    fclose(m);
    ps_statsd_publish(srv->statsd, PS_STATS_METRICS, text, NULL);
}

static void publish_config(ps_server_t *srv)
{
    size_t need = ps_config_format(&ps_server_optset, &srv->cfg, NULL, 0);
    char *text = ps_xmalloc(need + 1);
    ps_config_format(&ps_server_optset, &srv->cfg, text, need + 1);
    char *json = NULL;
    size_t jl;
    FILE *j = open_memstream(&json, &jl);
    fprintf(j, "{");
    for (size_t i = 0; i < ps_server_optset.n_opts; i++) {
        char value[PS_OPT_STR_MAX], quoted[2 * PS_OPT_STR_MAX];
        ps_config_value_str(&ps_server_optset.opts[i], &srv->cfg, value, sizeof value);
        fprintf(j, "%s\"%s\":%s", i ? "," : "", ps_server_optset.opts[i].name,
                ps_json_quote(value, quoted, sizeof quoted));
    }
    fprintf(j, "}\n");
    fclose(j);
    ps_statsd_publish(srv->statsd, PS_STATS_CONFIG, text, json);
}

static void publish_all(ps_server_t *srv)
{
    if (!srv->statsd)
        return;
    int64_t now = ps_time_ms();
    publish_info(srv, now);
    publish_workers(srv, now);
    publish_tables(srv);
    publish_metrics(srv, now);
}

int ps_server_stats_port(const ps_server_t *srv)
{
    return srv->statsd ? ps_statsd_tcp_port(srv->statsd) : -1;
}

int ps_server_metrics_port(const ps_server_t *srv)
{
    return srv->statsd ? ps_statsd_http_port(srv->statsd) : -1;
}

/* systemd: STATUS every few seconds; WATCHDOG=1 only from this loop, so a
 * stuck loop stops the pings and systemd restarts us. */
static void notify_systemd(ps_server_t *srv, int64_t now, int64_t *next_status, int64_t *next_dog,
                           int64_t dog_ms)
{
    if (now >= *next_status) {
        char status[256];
        uint32_t alive = 0;
        for (size_t i = 0; i < srv->n_jobs; i++)
            for (uint32_t r = 0; r < srv->jobs[i]->world; r++)
                alive += srv->jobs[i]->joined[r] && !srv->jobs[i]->dead[r] && !srv->jobs[i]->left[r];
        snprintf(status, sizeof status, "STATUS=shard %lld/%lld: %zu jobs, %u workers alive, clock %lld",
                 (long long)srv->cfg.shard, (long long)srv->cfg.shards, srv->n_jobs, alive,
                 srv->n_jobs ? (long long)job_resume_clock(srv->jobs[0]) : 0LL);
        ps_notify(status);
        *next_status = now + 2000;
    }
    if (dog_ms && now >= *next_dog) {
        ps_notify("WATCHDOG=1");
        *next_dog = now + dog_ms;
    }
}

/* Logs handshake failures (the first of each kind, then every 1000th of it):
 * a plain-text client knocking at a CURVE server retries ten times a
 * second. */
static void drain_monitor(ps_server_t *srv)
{
    zmq_msg_t ev, addr;
    zmq_msg_init(&ev);
    while (zmq_msg_recv(&ev, srv->monitor, ZMQ_DONTWAIT) >= 0) {
        zmq_msg_init(&addr);
        if (zmq_msg_more(&ev))
            zmq_msg_recv(&addr, srv->monitor, 0);
        uint16_t event = 0;
        uint32_t value = 0;
        if (zmq_msg_size(&ev) >= 6) {
            memcpy(&event, zmq_msg_data(&ev), 2);
            memcpy(&value, (char *)zmq_msg_data(&ev) + 2, 4);
        }
        srv->stats.handshake_failures++;
        int kind = event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH                  ? 0
                   : value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH ? 1
                                                                          : 2;
        static const char *const why[3] = {
            "the ZAP handler refused the client's key",
            "security mechanism mismatch: a plain-text client at a CURVE server, or the reverse",
            "protocol error (wrong server key, or not a ps client)"};
        uint64_t n = ++srv->stats.handshake_failures_by_kind[kind];
        if (n == 1 || n % 1000 == 0)
            ps_log(PS_LOG_WARN, "shard %lld: handshake failed on %.*s: %s (event %u, code %u; %llu so far)",
                   (long long)srv->cfg.shard, (int)zmq_msg_size(&addr), (char *)zmq_msg_data(&addr),
                   why[kind], event, value, (unsigned long long)n);
        zmq_msg_close(&addr);
    }
    zmq_msg_close(&ev);
}

static void reload_allow_list(ps_server_t *srv)
{
    if (!srv->zap) {
        ps_log(PS_LOG_INFO, "shard %lld: SIGHUP: CURVE is off, nothing to reload",
               (long long)srv->cfg.shard);
        return;
    }
    ps_errbuf_t err;
    if (ps_zap_reload(srv->zap, &err) != PS_OK)
        ps_log(PS_LOG_ERROR, "shard %lld: SIGHUP: %s; the previous allow-list stays in force",
               (long long)srv->cfg.shard, err.msg);
    else
        ps_log(PS_LOG_NOTICE, "shard %lld: SIGHUP: allow-list '%s' reloaded, %zu keys",
               (long long)srv->cfg.shard, srv->cfg.allow_file, ps_zap_keys(srv->zap));
}

void ps_server_stop(ps_server_t *srv)
{
    atomic_store(&srv->stop_requested, 1);
}

int ps_server_run(ps_server_t *srv, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload)
{
    int64_t next_status = 0, next_dog = 0, dog_ms = ps_notify_watchdog_ms();
    char ready[600];
    snprintf(ready, sizeof ready, "READY=1\nSTATUS=serving shard %lld of %lld on %s",
             (long long)srv->cfg.shard, (long long)srv->cfg.shards, srv->endpoint);
    ps_notify(ready);
    int64_t next_sweep = ps_time_ms() + srv->cfg.poll_ms;
    zmq_pollitem_t items[2] = {{srv->router, 0, ZMQ_POLLIN, 0}, {srv->monitor, 0, ZMQ_POLLIN, 0}};
    while (!*stop && !srv->shutdown_requested && !atomic_load(&srv->stop_requested)) {
        int n = zmq_poll(items, srv->monitor ? 2 : 1, (long)srv->cfg.poll_ms);
        if (n < 0) {
            if (zmq_errno() == EINTR)
                continue;
            ps_log(PS_LOG_ERROR, "shard %lld: poll failed: %s", (long long)srv->cfg.shard,
                   zmq_strerror(zmq_errno()));
            return PS_ENET;
        }
        if (reload && *reload) {
            *reload = 0;
            reload_allow_list(srv);
        }
        if (srv->monitor && (items[1].revents & ZMQ_POLLIN))
            drain_monitor(srv);
        /* Drain what is queued, but look at the stop flag between batches. */
        for (int burst = 0; burst < 256 && !*stop && !srv->shutdown_requested; burst++) {
            ps_wire_msg_t msg;
            int rc = ps_wire_recv(srv->router, &msg, ZMQ_DONTWAIT);
            if (rc == PS_EAGAIN)
                break;
            if (rc == PS_ENET) {
                ps_wire_msg_close(&msg);
                break;
            }
            handle_message(srv, &msg, rc);
            ps_wire_msg_close(&msg);
        }
        if (ps_time_ms() >= next_sweep) {
            reap_ckpt_child(srv, false);
            sweep_dead_workers(srv);
            if (atomic_exchange(&srv->save_requested, 0))
                ps_server_checkpoint_all(srv);
            publish_all(srv);
            notify_systemd(srv, ps_time_ms(), &next_status, &next_dog, dog_ms);
            next_sweep = ps_time_ms() + srv->cfg.poll_ms;
        }
    }
    return PS_OK;
}
