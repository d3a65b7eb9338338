/* ps_stats.c - see ps_stats.h. Each section is one ps_doc (or ps_rows)
 * built here from the server's state; the text, JSON and Prometheus forms
 * are renderings of it, so no field is written twice. */
#include "ps_stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ps_checkpoint.h"
#include "ps_config.h"
#include "ps_doc.h"
#include "ps_replica.h"
#include "ps_server_int.h"
#include "ps_time.h"

static const double bucket_le[PS_STATS_N_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                     0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                                     1,      2.5,     5,      10};

const double *ps_hist_bounds(void)
{
    return bucket_le;
}

void ps_hist_observe(ps_hist_t *h, int64_t ns)
{
    double s = (double)ns / 1e9;
    int b = 0;
    while (b < PS_STATS_N_BUCKETS && s > bucket_le[b])
        b++;
    h->counts[b]++;
    h->count++;
    h->sum_s += s;
}

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

static uint32_t workers_alive(const ps_server_t *srv)
{
    uint32_t alive = 0;
    for (size_t i = 0; i < srv->jobs.n; i++)
        alive += ps_job_alive(srv->jobs.all[i]);
    return alive;
}

#define COUNTER(n, h) (&(ps_metric_t){n, PS_METRIC_COUNTER, h, {NULL}})
#define GAUGE(n, h) (&(ps_metric_t){n, PS_METRIC_GAUGE, h, {NULL}})

static void doc_server(ps_doc_t *d, const ps_server_t *srv, int64_t now)
{
    char shard[32], inc[32];
    snprintf(shard, sizeof shard, "%lld", (long long)srv->cfg.shard);
    snprintf(inc, sizeof inc, "%llx", (unsigned long long)srv->incarnation);
    ps_doc_section(d, "server");
    ps_doc_str(d, "version", PS_VERSION);
    ps_doc_metric_only(d, 1,
                       &(ps_metric_t){"ps_build_info",
                                      PS_METRIC_GAUGE,
                                      "Build of this ps-server.",
                                      {"version", PS_VERSION, "role", "server", "shard", shard}});
    ps_doc_int(d, "pid", getpid(), NULL);
    ps_doc_real(d, "uptime_s", (double)(now - srv->started_ms) / 1000.0, 1,
                GAUGE("ps_uptime_seconds", "Time since this process started."));
    ps_doc_str(d, "role", "server");
    ps_doc_int(d, "shard", srv->cfg.shard, NULL);
    ps_doc_int(d, "shards", srv->cfg.shards, NULL);
    ps_doc_str(d, "endpoint", srv->endpoint);
    ps_doc_str(d, "incarnation", inc);
}

static void doc_jobs(ps_doc_t *d, const ps_server_t *srv)
{
    ps_doc_section(d, "jobs");
    ps_doc_int(d, "jobs", (int64_t)srv->jobs.n, GAUGE("ps_jobs", "Jobs served."));
    ps_doc_int(d, "workers_alive", workers_alive(srv), NULL);
    ps_doc_int(d, "jobs_finished", (int64_t)srv->jobs.finished, NULL);
    ps_doc_str(d, "last_job", srv->jobs.last_name);
    ps_doc_int(d, "last_job_clock", srv->jobs.last_clock, NULL);
    ps_doc_group(d, "clocks", "clock_",
                 &(ps_metric_t){"ps_job_clock",
                                PS_METRIC_GAUGE,
                                "Lowest chunk clock of a job on this shard.",
                                {"job"}});
    for (size_t i = 0; i < srv->jobs.n; i++)
        ps_doc_int(d, ps_job_name(srv->jobs.all[i]), ps_job_resume_clock(srv->jobs.all[i]), NULL);
    ps_doc_group_end(d);
}

static void doc_requests(ps_doc_t *d, const ps_server_stats_t *st)
{
    ps_doc_section(d, "requests");
    ps_doc_group(
        d, "requests", "requests_",
        &(ps_metric_t){"ps_requests_total", PS_METRIC_COUNTER, "Requests handled, by op.", {"op"}});
    for (int op = 1; op <= PS__OP__REPLICA_DROP; op++)
        ps_doc_int(d, ps_op_name(op), (int64_t)st->requests[op], NULL);
    ps_doc_group_end(d);
    ps_doc_int(d, "bytes_received", (int64_t)st->bytes_in,
               COUNTER("ps_received_bytes_total", "Bytes received in requests."));
    ps_doc_int(d, "bytes_sent", (int64_t)st->bytes_out,
               COUNTER("ps_sent_bytes_total", "Bytes sent in replies."));
    ps_doc_int(d, "shm_regions", (int64_t)st->shm_regions,
               GAUGE("ps_shm_regions", "Same-host workers' shared regions mapped."));
    ps_doc_int(d, "shm_requests", (int64_t)st->shm_requests,
               COUNTER("ps_shm_requests_total",
                       "Data requests whose values went through a shared region."));
    ps_doc_int(d, "shm_refused", (int64_t)st->shm_refused,
               COUNTER("ps_shm_refused_total", "Shared region offers not mapped."));
    ps_doc_int(d, "bell_requests", (int64_t)st->bell_requests,
               COUNTER("ps_bell_requests_total",
                       "Request headers taken from same-host workers' doorbell pipes."));
    ps_doc_int(d, "bell_replies", (int64_t)st->bell_replies,
               COUNTER("ps_bell_replies_total",
                       "Reply headers sent up same-host workers' doorbell pipes."));
}

static void doc_errors(ps_doc_t *d, const ps_server_stats_t *st)
{
    static const char help[] = "Requests refused, by error code.";
    ps_doc_section(d, "errors");
    ps_doc_int(d, "errors", (int64_t)st->errors, NULL);
    ps_doc_int(d, "nonfinite_pushes", (int64_t)st->nonfinite_pushes, NULL);
    ps_doc_group(d, "errors_by_code", "errors_",
                 &(ps_metric_t){"ps_errors_total", PS_METRIC_COUNTER, help, {"code"}});
    for (int code = 1; code <= PS_N_ERRORS; code++) {
        /* text and JSON list the codes seen; /metrics every code */
        if (st->errors_by_code[code])
            ps_doc_int(d, ps_errname(-code), (int64_t)st->errors_by_code[code], NULL);
        else
            ps_doc_metric_only(
                d, 0,
                &(ps_metric_t){
                    "ps_errors_total", PS_METRIC_COUNTER, help, {"code", ps_errname(-code)}});
    }
    ps_doc_group_end(d);
}

static void doc_security(ps_doc_t *d, const ps_server_t *srv)
{
    static const char help[] = "CURVE handshakes, by ZAP verdict.";
    ps_zap_t *zap = srv->zap;
    ps_doc_section(d, "security");
    ps_doc_str(d, "security", zap ? "curve" : "plain");
    ps_doc_int(d, "keys_allowed", zap ? (int64_t)ps_zap_keys(zap) : 0, NULL);
    ps_metric_t acc = {"ps_handshakes_total", PS_METRIC_COUNTER, help, {"result", "accepted"}};
    ps_metric_t ref = {"ps_handshakes_total", PS_METRIC_COUNTER, help, {"result", "refused"}};
    ps_doc_int(d, "handshakes_accepted", zap ? (int64_t)ps_zap_accepted(zap) : 0,
               zap ? &acc : NULL);
    ps_doc_int(d, "handshakes_refused", zap ? (int64_t)ps_zap_refused(zap) : 0, zap ? &ref : NULL);
    ps_doc_int(d, "handshake_failures", (int64_t)srv->stats.handshake_failures,
               COUNTER("ps_handshake_failures_total",
                       "Connections that failed the handshake (e.g. plain text to CURVE)."));
}

/* Replicated checkpoints: ours sent to holders, theirs held here. */
static void doc_replication(ps_doc_t *d, const ps_server_t *srv, int64_t now)
{
    static const char help[] = "Checkpoint files replicated to holder shards, by result.";
    const ps_server_stats_t *st = &srv->stats;
    psrv_replica_status_t rs;
    psrv_replicator_status(srv->replicator, &rs);
    ps_doc_section(d, "replication");
    ps_doc_int(d, "replicas_acked", (int64_t)rs.files_acked,
               &(ps_metric_t){"ps_replicas_total", PS_METRIC_COUNTER, help, {"result", "acked"}});
    ps_doc_int(d, "replicas_refused", (int64_t)rs.files_refused,
               &(ps_metric_t){"ps_replicas_total", PS_METRIC_COUNTER, help, {"result", "refused"}});
    ps_doc_int(d, "replicas_failed", (int64_t)rs.files_failed,
               &(ps_metric_t){"ps_replicas_total", PS_METRIC_COUNTER, help, {"result", "failed"}});
    ps_doc_int(d, "replicas_skipped", (int64_t)rs.files_skipped,
               &(ps_metric_t){"ps_replicas_total", PS_METRIC_COUNTER, help, {"result", "skipped"}});
    ps_doc_int(d, "replica_bytes_acked", (int64_t)rs.bytes_acked, NULL);
    ps_doc_int(d, "replica_drops_acked", (int64_t)rs.drops_acked, NULL);
    ps_doc_int(d, "replica_drops_pending", (int64_t)rs.drops_pending, NULL);
    ps_doc_int(d, "replica_drops_failed", (int64_t)rs.drops_failed, NULL);
    ps_doc_int(d, "replica_bytes_queued", (int64_t)rs.bytes_queued,
               GAUGE("ps_replica_queued_bytes", "Checkpoint bytes waiting to be replicated."));
    ps_doc_real(d, "last_replica_ack_age_s",
                rs.last_ack_ms[0] ? (double)(now - rs.last_ack_ms[0]) / 1000.0 : -1, 1, NULL);
    ps_doc_str(d, "replica_holder_error", rs.last_error[0]);
    ps_doc_int(d, "replicas_held", (int64_t)st->replicas_stored,
               COUNTER("ps_replicas_held_total", "Replicas of other shards' checkpoints stored."));
    ps_doc_int(
        d, "replicas_held_refused", (int64_t)st->replicas_refused,
        COUNTER("ps_replicas_held_refused_total", "Replicas refused here (bad CRC, full disk)."));
    ps_doc_int(d, "replicas_served", (int64_t)st->replicas_served, NULL);
    ps_doc_str(d, "replica_store_error", st->replica_error);
    ps_doc_int(d, "replica_fetched_files", (int64_t)st->replica_fetched_files, NULL);
    ps_doc_int(d, "replica_fetch_ms", st->replica_fetch_ms, NULL);
}

static void doc_memory_checkpoints(ps_doc_t *d, const ps_server_t *srv, int64_t now)
{
    static const char help[] = "Checkpoints written, by result.";
    const ps_server_stats_t *st = &srv->stats;
    ps_doc_section(d, "memory");
    ps_doc_int(d, "rss_bytes", rss_bytes(),
               GAUGE("ps_resident_memory_bytes", "Resident set size."));
    size_t tables = 0;
    for (size_t j = 0; j < srv->jobs.n; j++)
        tables += ps_job_bytes(srv->jobs.all[j]);
    ps_doc_int(d, "tables_bytes", (int64_t)tables,
               GAUGE("ps_table_memory_bytes", "Bytes of every job's tables on this shard."));
    ps_doc_int(d, "budget_bytes", (int64_t)srv->shard_budget,
               GAUGE("ps_memory_budget_bytes", "max_shard_mb in bytes."));
    ps_doc_int(d, "job_budget_bytes", (int64_t)srv->job_budget, NULL);
    ps_doc_int(d, "open_fds", srv->stats.open_fds,
               GAUGE("ps_open_fds", "Descriptors open (checked once a second)."));
    ps_doc_int(d, "fd_limit", srv->stats.fd_limit, GAUGE("ps_fd_limit", "RLIMIT_NOFILE."));
    ps_doc_int(d, "fd_low_warnings", (int64_t)srv->stats.fd_low_warnings,
               COUNTER("ps_fd_low_total", "Seconds with open descriptors above 90% of the limit."));

    ps_doc_section(d, "checkpoint");
    ps_doc_str(d, "state_dir", srv->cfg.state_dir);
    ps_doc_int(d, "checkpoint_every", srv->cfg.checkpoint_every, NULL);
    ps_doc_int(d, "checkpoints_written", (int64_t)st->checkpoints_written,
               &(ps_metric_t){"ps_checkpoints_total", PS_METRIC_COUNTER, help, {"result", "ok"}});
    ps_doc_int(
        d, "checkpoints_failed", (int64_t)st->checkpoints_failed,
        &(ps_metric_t){"ps_checkpoints_total", PS_METRIC_COUNTER, help, {"result", "failed"}});
    ps_doc_real(d, "last_checkpoint_age_s",
                st->last_checkpoint_ms ? (double)(now - st->last_checkpoint_ms) / 1000.0 : -1, 1,
                NULL);
    doc_replication(d, srv, now);
}

/* Gauges and histograms only /metrics shows. */
static void doc_metrics_only(ps_doc_t *d, const ps_server_t *srv)
{
    for (size_t i = 0; i < srv->jobs.n; i++) {
        const ps_job_t *job = srv->jobs.all[i];
        for (uint32_t id = 0; id < ps_job_n_tables(job); id++) {
            const ps_sparse_t *sp = ps_job_sparse(job, id);
            if (sp)
                ps_doc_metric_only(
                    d, (double)ps_sparse_keys(sp),
                    &(ps_metric_t){"ps_sparse_keys",
                                   PS_METRIC_GAUGE,
                                   "Keys a sparse table holds on this shard.",
                                   {"job", ps_job_name(job), "table", ps_sparse_name(sp)}});
        }
    }
    const ps_hist_t *h = &srv->stats.push_latency;
    ps_doc_histogram(d, "ps_push_seconds", "Time from receiving a push to applying or keeping it.",
                     bucket_le, h->counts, PS_STATS_N_BUCKETS, h->sum_s, h->count);
    h = &srv->stats.pull_latency;
    ps_doc_histogram(d, "ps_pull_seconds",
                     "Time from receiving a pull to answering it (barrier waits included).",
                     bucket_le, h->counts, PS_STATS_N_BUCKETS, h->sum_s, h->count);
}

/* The `show info` document, with the metric-only samples at its end. */
static ps_doc_t *info_doc(ps_server_t *srv, int64_t now, bool with_metrics)
{
    ps_doc_t *d = ps_doc_new();
    doc_server(d, srv, now);
    doc_jobs(d, srv);
    doc_requests(d, &srv->stats);
    doc_errors(d, &srv->stats);
    doc_security(d, srv);
    doc_memory_checkpoints(d, srv, now);
    if (with_metrics)
        doc_metrics_only(d, srv);
    return d;
}

char *psrv_stats_info_json(ps_server_t *srv)
{
    ps_doc_t *d = info_doc(srv, ps_time_ms(), false);
    char *json = ps_doc_json(d);
    ps_doc_destroy(&d);
    return json;
}

static const ps_col_t worker_cols[] = {
    {"job", NULL, -12, 0, 0, false},
    {"rank", NULL, 4, 0, 0, false},
    {"state", NULL, -7, 0, 0, false},
    {"address", NULL, -16, 0, 0, false},
    {"clock", NULL, 8, 0, 0, false},
    {"staleness", NULL, 9, 0, 0, false},
    {"heartbeat_age_ms", "heartbeat_ms", 12, 0, 0, false},
    {"samples_per_s", "samples/s", 12, 0, 1, false},
    {"loss", NULL, 9, 4, 6, false},
    /* the ps-worker process: its rank in the whole world (a pipeline
     * stage's job has the replica as rank) and its stage, "-" for none */
    {"worker", NULL, 6, 0, 0, false},
    {"stage", NULL, -5, 0, 0, false},
};

static void publish_workers(ps_server_t *srv, int64_t now)
{
    ps_rows_t *t = ps_rows_new(worker_cols, sizeof worker_cols / sizeof worker_cols[0]);
    for (size_t i = 0; i < srv->jobs.n; i++) {
        const ps_job_t *job = srv->jobs.all[i];
        int64_t top = ps_job_max_clock(job);
        for (uint32_t r = 0; r < ps_job_world(job); r++) {
            const ps_rank_t *rk = ps_job_rank(job, r);
            int64_t clock = ps_job_rank_clock(job, r);
            ps_rows_add(t);
            ps_rows_str(t, ps_job_name(job));
            ps_rows_int(t, r);
            ps_rows_str(t, ps_job_rank_state(job, r));
            ps_rows_str2(t, *rk->peer ? rk->peer : "-", rk->peer);
            ps_rows_int(t, clock);
            ps_rows_int(t, top - clock);
            ps_rows_int(t, now - rk->last_seen_ms);
            ps_rows_real(t, rk->samples_per_s);
            ps_rows_real(t, rk->loss);
            ps_rows_int(t, rk->n_stages ? rk->world_rank : r);
            char stage[24] = "-";
            if (rk->n_stages)
                snprintf(stage, sizeof stage, "%u/%u", rk->stage, rk->n_stages);
            ps_rows_str(t, stage);
        }
    }
    ps_statsd_publish(srv->statsd, PS_STATS_WORKERS, ps_rows_text(t), ps_rows_json(t));
    ps_rows_destroy(&t);
}

/* shape, chunks and elements differ between dense and sparse rows in
 * JSON: each row adds its own fields. */
static const ps_col_t table_cols[] = {
    {"job", NULL, -12, 0, 0, false},      {"id", NULL, 3, 0, 0, false},
    {"name", NULL, -12, 0, 0, false},     {"kind", NULL, -6, 0, 0, false},
    {"shape", NULL, -14, 0, 0, true},     {"dtype", NULL, -5, 0, 0, false},
    {"chunks", NULL, 6, 0, 0, true},      {"elems_here", NULL, 12, 0, 0, true},
    {"optimizer", NULL, -9, 0, 0, false}, {"bytes", NULL, 12, 0, 0, false},
};

/* One row of `show tables` for this shard's chunks of dense table e. */
static void dense_row(ps_rows_t *t, const ps_job_t *job, uint32_t id, const ps_job_table_t *e)
{
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
        return;
    int ndim;
    const uint64_t *shape = ps_table_shape(any, &ndim);
    char dims[96] = "", chunks[32];
    size_t dl = 0;
    for (int k = 0; k < ndim && dl < sizeof dims; k++)
        dl += (size_t)snprintf(dims + dl, sizeof dims - dl, "%s%llu", k ? "x" : "",
                               (unsigned long long)shape[k]);
    snprintf(chunks, sizeof chunks, "%u/%u", held, e->n_chunks);
    ps_rows_add(t);
    ps_rows_str(t, ps_job_name(job));
    ps_rows_int(t, id);
    ps_rows_str(t, ps_table_name(any));
    ps_rows_str(t, "dense");
    ps_rows_str(t, dims);
    ps_rows_str(t, "f32");
    ps_rows_str(t, chunks);
    ps_rows_int(t, (int64_t)here);
    ps_rows_str(t, ps_optim_name(ps_table_optim(any)->kind));
    ps_rows_int(t, (int64_t)bytes);
    ps_rows_json_str(t, "shape", dims);
    ps_rows_json_int(t, "chunks_here", held);
    ps_rows_json_int(t, "chunks", e->n_chunks);
    ps_rows_json_int(t, "elems_here", (int64_t)here);
}

static void sparse_row(ps_rows_t *t, const ps_job_t *job, uint32_t id, const ps_sparse_t *sp)
{
    char dims[32];
    snprintf(dims, sizeof dims, "dim %u", ps_sparse_dim(sp));
    ps_rows_add(t);
    ps_rows_str(t, ps_job_name(job));
    ps_rows_int(t, id);
    ps_rows_str(t, ps_sparse_name(sp));
    ps_rows_str(t, "sparse");
    ps_rows_str(t, dims);
    ps_rows_str(t, "f32");
    ps_rows_str(t, "-");
    ps_rows_int(t, (int64_t)ps_sparse_keys(sp));
    ps_rows_str(t, ps_optim_name(ps_sparse_optim(sp)->kind));
    ps_rows_int(t, (int64_t)ps_sparse_bytes(sp));
    ps_rows_json_int(t, "dim", ps_sparse_dim(sp));
    ps_rows_json_int(t, "keys_here", (int64_t)ps_sparse_keys(sp));
}

static void publish_tables(ps_server_t *srv)
{
    ps_rows_t *t = ps_rows_new(table_cols, sizeof table_cols / sizeof table_cols[0]);
    for (size_t i = 0; i < srv->jobs.n; i++) {
        const ps_job_t *job = srv->jobs.all[i];
        for (uint32_t id = 0; id < ps_job_n_tables(job); id++) {
            const ps_job_table_t *e = ps_job_table(job, id);
            if (e->sparse)
                sparse_row(t, job, id, e->sparse);
            else
                dense_row(t, job, id, e);
        }
    }
    ps_statsd_publish(srv->statsd, PS_STATS_TABLES, ps_rows_text(t), ps_rows_json(t));
    ps_rows_destroy(&t);
}

static const ps_col_t ckpt_cols[] = {
    {"shard", NULL, 5, 0, 0, false}, {"for_shard", NULL, 9, 0, 0, false},
    {"kind", NULL, -7, 0, 0, false}, {"job", NULL, -12, 0, 0, false},
    {"clock", NULL, 8, 0, 0, false}, {"bytes", NULL, 10, 0, 0, false},
    {"base", NULL, 6, 0, 0, false},  {"acked_by", NULL, -10, 0, 0, false},
};

/* One row of `show checkpoints`: job's file at clock in dir. */
static void ckpt_row(ps_rows_t *t, ps_server_t *srv, const char *dir, const char *job,
                     int64_t clock, int64_t owner, bool own)
{
    uint32_t crc = 0, base_crc, holders[PSRV_REPLICA_MAX];
    int64_t base = -1;
    ps_ckpt_file_head(dir, job, clock, &crc, &base, &base_crc);
    char path[PS_OPT_STR_MAX + 200], acked[160] = "";
    snprintf(path, sizeof path, "%s/%s/ckpt-%012lld.psc", dir, job, (long long)clock);
    uint32_t n = own ? psrv_replicator_holders(srv->replicator, holders) : 0;
    size_t al = 0;
    for (uint32_t i = 0; i < n && al < sizeof acked - 16; i++)
        if (psrv_replicator_acked(srv->replicator, i, job, clock, crc))
            al +=
                (size_t)snprintf(acked + al, sizeof acked - al, "%s%u", al ? "," : "", holders[i]);
    struct stat st;
    ps_rows_add(t);
    ps_rows_int(t, srv->cfg.shard);
    ps_rows_int(t, owner);
    ps_rows_str(t, own ? "own" : "replica");
    ps_rows_str(t, job);
    ps_rows_int(t, clock);
    ps_rows_int(t, stat(path, &st) == 0 ? (int64_t)st.st_size : -1);
    ps_rows_int(t, base);
    ps_rows_str(t, own ? (*acked ? acked : "-") : "");
}

/* The rows of one directory of checkpoints: ours (own), with the holders
 * that acknowledged each, or the replicas held for shard owner. */
static void ckpt_rows(ps_rows_t *t, ps_server_t *srv, const char *dir, int64_t owner, bool own)
{
    char **jobs;
    int n_jobs = ps_ckpt_list_jobs(dir, &jobs);
    for (int j = 0; j < n_jobs; j++) {
        int64_t *clocks;
        int n = ps_ckpt_list_clocks(dir, jobs[j], &clocks);
        for (int k = 0; k < n; k++)
            ckpt_row(t, srv, dir, jobs[j], clocks[k], owner, own);
        free(clocks);
        free(jobs[j]);
    }
    free(jobs);
}

/* `show checkpoints`: this shard's files and the replicas it holds for
 * each other shard. Lists directories: at most once a second, and at once
 * after a replica came or went. */
static void publish_checkpoints(ps_server_t *srv, int64_t now)
{
    if (!*srv->cfg.state_dir || (srv->ckpt_listed_ms && now - srv->ckpt_listed_ms < 1000))
        return;
    srv->ckpt_listed_ms = now;
    ps_rows_t *t = ps_rows_new(ckpt_cols, sizeof ckpt_cols / sizeof ckpt_cols[0]);
    ckpt_rows(t, srv, srv->cfg.state_dir, srv->cfg.shard, true);
    for (int64_t s = 0; s < srv->cfg.shards; s++) {
        char dir[PS_OPT_STR_MAX + 64];
        psrv_replica_dir(srv->cfg.state_dir, (uint32_t)s, dir, sizeof dir);
        if (s != srv->cfg.shard)
            ckpt_rows(t, srv, dir, s, false);
    }
    ps_statsd_publish(srv->statsd, PS_STATS_CHECKPOINTS, ps_rows_text(t), ps_rows_json(t));
    ps_rows_destroy(&t);
}

void psrv_stats_publish_config(ps_server_t *srv)
{
    if (!srv->statsd)
        return;
    size_t need = ps_config_format(&ps_server_optset, &srv->cfg, NULL, 0);
    char *text = ps_xmalloc(need + 1);
    ps_config_format(&ps_server_optset, &srv->cfg, text, need + 1);
    ps_statsd_publish(srv->statsd, PS_STATS_CONFIG, text,
                      ps_config_json(&ps_server_optset, &srv->cfg));
}

void psrv_stats_publish(ps_server_t *srv)
{
    if (!srv->statsd)
        return;
    int64_t now = ps_time_ms();
    ps_doc_t *d = info_doc(srv, now, true);
    ps_statsd_publish(srv->statsd, PS_STATS_INFO, ps_doc_text(d), ps_doc_json(d));
    ps_statsd_publish(srv->statsd, PS_STATS_METRICS, ps_doc_prometheus(d), NULL);
    ps_doc_destroy(&d);
    publish_workers(srv, now);
    publish_tables(srv);
    publish_checkpoints(srv, now);
}
