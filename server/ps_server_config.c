/* ps_server_config.c - see ps_server_config.h. */
#include "ps_server_config.h"

#include "ps_curve.h"
#include "ps_log.h"

static const ps_opt_t server_opts[] = {
    PS_OPT_STR("bind", ps_server_config_t, bind_addr, "127.0.0.1", "address to bind"),
    PS_OPT_INT("port", ps_server_config_t, port, "0", 0, 65535, "TCP port; 0 = any free port"),
    PS_OPT_INT("shard", ps_server_config_t, shard, "0", 0, 1023, "this server's shard index"),
    PS_OPT_INT("shards", ps_server_config_t, shards, "1", 1, 1024, "number of shards (servers)"),
    PS_OPT_STR("ready_file", ps_server_config_t, ready_file, "",
               "once bound, write 'endpoint ADDR' here (temp file + rename)"),
    PS_OPT_NAMES("log_level", ps_server_config_t, log_level, "info", ps_log_level_names,
                 "least severe level logged"),
    PS_OPT_STR("log_file", ps_server_config_t, log_file, "", "log here instead of stderr"),
    PS_OPT_INT("max_jobs", ps_server_config_t, max_jobs, "16", 1, 4096, "jobs served at once"),
    PS_OPT_INT("max_tables", ps_server_config_t, max_tables, "1024", 1, 1 << 20, "tables per job"),
    PS_OPT_INT("max_message_mb", ps_server_config_t, max_message_mb, "1024", 1, 1 << 20,
               "largest request accepted (ZMQ_MAXMSGSIZE), MiB"),
    PS_OPT_INT("io_threads", ps_server_config_t, io_threads, "1", 1, 64, "ZeroMQ I/O threads"),
    PS_OPT_INT("poll_ms", ps_server_config_t, poll_ms, "100", 1, 10000,
               "loop wake-up interval for signals and housekeeping"),
    PS_OPT_INT("heartbeat_timeout_ms", ps_server_config_t, heartbeat_timeout_ms, "10000", 100,
               86400000,
               "a worker silent this long is declared dead (SSP/ASP: the others go on "
               "without it; BSP: the round waits for it to come back)"),
    PS_OPT_INT("lost_rank_timeout_ms", ps_server_config_t, lost_rank_timeout_ms, "60000", 100,
               86400000,
               "BSP: a dead worker not back this long fails the job's waiting pulls "
               "(EWORLD), naming it; the job resumes if the whole world rejoins"),
    PS_OPT_INT("assemble_timeout_ms", ps_server_config_t, assemble_timeout_ms, "300000", 100,
               86400000,
               "BSP: a worker that never joined this long after the job's creation "
               "fails the job's waiting pulls (EWORLD)"),
    PS_OPT_INT("job_ttl_s", ps_server_config_t, job_ttl_s, "86400", 1, 1LL << 31,
               "a job with no live worker this long is unloaded (its checkpoints stay; a HELLO "
               "restores it); only every rank's BYE or ps-ctl drop ends a job"),
    PS_OPT_INT("finished_job_ttl_s", ps_server_config_t, finished_job_ttl_s, "3600", 0, 1LL << 31,
               "a finished job is remembered this long: a late worker of it is "
               "refused (EFINISHED) instead of starting the job again alone"),
    PS_OPT_STR("state_dir", ps_server_config_t, state_dir, "",
               "checkpoint directory (one per shard); empty = no checkpoints"),
    PS_OPT_INT("checkpoint_every", ps_server_config_t, checkpoint_every, "0", 0, 1LL << 40,
               "checkpoint each job every N clocks (and at shutdown); 0 = only at shutdown"),
    PS_OPT_INT("checkpoint_keep", ps_server_config_t, checkpoint_keep, "3", 1, 1000,
               "checkpoints kept per job (and the files their sparse rows build on)"),
    PS_OPT_INT("sparse_full_every", ps_server_config_t, sparse_full_every, "8", 1, 1000,
               "every Nth checkpoint holds all of a job's sparse rows, the others only "
               "the rows made or updated since the previous one; 1 = always all"),
    PS_OPT_STR("peers", ps_server_config_t, peers, "",
               "every shard's endpoint in shard order, comma-separated (the workers' --servers): "
               "where checkpoints are replicated to and fetched from; empty = no replication"),
    PS_OPT_INT("checkpoint_replicas", ps_server_config_t, checkpoint_replicas, "1", 0, 16,
               "with peers: each checkpoint file is copied to the next N shards (at most "
               "shards - 1); a shard started with an empty state_dir fetches its own from them"),
    PS_OPT_INT("replica_inflight_mb", ps_server_config_t, replica_inflight_mb, "256", 1, 1 << 20,
               "checkpoint bytes queued for replication; past it the oldest queued file is "
               "skipped (the next one carries what it needs)"),
    PS_OPT_INT("replica_timeout_ms", ps_server_config_t, replica_timeout_ms, "10000", 100, 3600000,
               "a holder that has not acknowledged a replica (or answered a fetch) this long is "
               "given up on for that file"),
    PS_OPT_STR("peer_key_file", ps_server_config_t, peer_key_file, "",
               "with CURVE: the other shards' server public key (default: this server's own, "
               "for shards sharing one key pair); each holder's allow_file lists this server's "
               "key with role shard"),
    PS_OPT_STR("stats_socket", ps_server_config_t, stats_socket, "",
               "UNIX stats socket path (mode 0660); empty = none (see ps-ctl)"),
    PS_OPT_INT("stats_port", ps_server_config_t, stats_port, "-1", -1, 65535,
               "stats commands over TCP on 127.0.0.1; 0 = any free port, -1 = off"),
    PS_OPT_INT("metrics_port", ps_server_config_t, metrics_port, "-1", -1, 65535,
               "Prometheus GET /metrics on 127.0.0.1; 0 = any free port, -1 = off"),
    PS_OPT_STR("curve_secret_file", ps_server_config_t, curve_secret_file, "",
               "this server's CURVE key pair (ps-keygen; mode 0600); set = CURVE on every socket"),
    PS_OPT_STR("allow_file", ps_server_config_t, allow_file, "",
               "with CURVE: 'ROLE KEY [NAME]' per client key (worker|admin|monitor|shard); SIGHUP "
               "re-reads"),
    PS_OPT_BOOL("insecure", ps_server_config_t, insecure, "no",
                "allow binding a non-loopback address without CURVE (anyone reaching the port "
                "can overwrite the model)"),
    PS_OPT_BOOL("same_host", ps_server_config_t, same_host, "yes",
                "map the shared region a worker on this host offers at HELLO (same boot, pid "
                "namespace and user), so its dense pushes and pulls skip TCP; no = TCP only"),
    PS_OPT_BOOL("same_host_bell", ps_server_config_t, same_host_bell, "yes",
                "with same_host: take the headers of requests that use a worker's region through "
                "its pipes (one wakeup each way) rather than ZeroMQ; no = ZeroMQ carries them"),
    PS_OPT_INT("max_table_elems", ps_server_config_t, max_table_elems, "4294967296", 1, 1LL << 48,
               "largest table a job may define (elements, all shards)"),
    PS_OPT_INT("max_request_keys", ps_server_config_t, max_request_keys, "1048576", 1, 1LL << 30,
               "most keys one sparse request may carry"),
    PS_OPT_INT("max_sparse_keys", ps_server_config_t, max_sparse_keys, "1000000000", 1,
               4294967293LL, "most keys one sparse table may hold on this shard"),
    PS_OPT_INT("max_shard_mb", ps_server_config_t, max_shard_mb, "0", 0, 1LL << 40,
               "memory the tables of every job may take on this shard (MiB; 0 = 90% of the "
               "machine's memory); beyond it INIT_TABLE and new sparse rows get ENOMEM"),
    PS_OPT_INT("max_job_mb", ps_server_config_t, max_job_mb, "0", 0, 1LL << 40,
               "memory one job's tables may take on this shard (MiB; 0 = max_shard_mb)"),
    PS_OPT_INT("handshake_timeout_ms", ps_server_config_t, handshake_timeout_ms, "5000", 100,
               3600000, "close a connection that has not finished its handshake after this long"),
    PS_OPT_INT("max_jobs_per_client", ps_server_config_t, max_jobs_per_client, "8", 1, 4096,
               "jobs one client (its CURVE key, else its address) may create on this shard"),
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
    if (*cfg->peers) {
        int n = 1;
        for (const char *p = cfg->peers; *p; p++)
            n += *p == ',';
        if (n != cfg->shards)
            return ps_err_set(err, PS_EINVAL, "peers lists %d endpoints; shards is %lld", n,
                              (long long)cfg->shards);
        if (cfg->checkpoint_replicas && !*cfg->state_dir)
            return ps_err_set(err, PS_EINVAL, "peers with checkpoint_replicas needs a state_dir");
    }
    return PS_OK;
}
