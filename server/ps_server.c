/* ps_server.c - one ps-server process: its lifecycle (sockets, restore,
 * stats thread, ready file) and the poll loop, with server_cron() for the
 * periodic work (dead-rank sweep, checkpoint writer, stats, systemd). The
 * loop thread owns everything; requests go to ps_handler. */
#include "ps_server.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <zmq.h>

#include "ps_access.h"
#include "ps_budget.h"
#include "ps_checkpoint.h"
#include "ps_doorbells.h"
#include "ps_file.h"
#include "ps_handler.h"
#include "ps_jobs.h"
#include "ps_log.h"
#include "ps_proc.h"
#include "ps_regions.h"
#include "ps_replica.h"
#include "ps_replica_store.h"
#include "ps_name.h"
#include "ps_notify.h"
#include "ps_server_int.h"
#include "ps_snapshot.h"
#include "ps_time.h"

int ps_server_stats_port(const ps_server_t *srv)
{
    return srv->statsd ? ps_statsd_tcp_port(srv->statsd) : -1;
}

int ps_server_metrics_port(const ps_server_t *srv)
{
    return srv->statsd ? ps_statsd_http_port(srv->statsd) : -1;
}

const char *ps_server_endpoint(const ps_server_t *srv)
{
    return srv->endpoint;
}

int ps_server_checkpoint_all(ps_server_t *srv)
{
    return psrv_snapshot_all(srv);
}

void ps_server_stop(ps_server_t *srv)
{
    atomic_store(&srv->stop_requested, 1);
}

/* "endpoint ADDR", "pid N", "stats_port N", "metrics_port N" (-1 if off):
 * what a supervisor or test needs to reach us, written once all listen. */
static int write_ready_file(const char *path, const ps_server_t *srv, ps_errbuf_t *err)
{
    char text[PS_OPT_STR_MAX + 128];
    int n = snprintf(text, sizeof text, "endpoint %s\npid %d\nstats_port %d\nmetrics_port %d\n",
                     srv->endpoint, (int)getpid(), ps_server_stats_port(srv),
                     ps_server_metrics_port(srv));
    return ps_file_write_all(path, text, (size_t)n, 0644, err);
}

/* The checkpoint directory is made and tried at start: a read-only or
 * full one is found now, not at the first crash. */
static int check_state_dir(const ps_server_t *srv, ps_errbuf_t *err)
{
    const char *dir = srv->cfg.state_dir;
    if (mkdir(dir, 0750) != 0 && errno != EEXIST)
        return ps_err_set(err, PS_EIO, "state_dir '%s': cannot create it: %s", dir,
                          strerror(errno));
    char probe[PS_OPT_STR_MAX + 32];
    snprintf(probe, sizeof probe, "%s/.write-test", dir);
    /* a page of data, fsynced: a full disk fails here too */
    static const char page[4096];
    ps_errbuf_t why;
    if (ps_file_write_all(probe, page, sizeof page, 0600, &why) != PS_OK)
        return ps_err_set(err, PS_EIO, "state_dir '%s' cannot take checkpoints: %s", dir, why.msg);
    unlink(probe);
    struct statvfs vfs;
    if (statvfs(dir, &vfs) == 0) {
        double free_mb = (double)vfs.f_bavail * (double)vfs.f_frsize / (1024.0 * 1024.0);
        ps_log(free_mb < 1024 ? PS_LOG_WARN : PS_LOG_INFO,
               "shard %lld: checkpoints in '%s' (%.0f MiB free)%s", (long long)srv->cfg.shard, dir,
               free_mb, free_mb < 1024 ? ": little room for checkpoints" : "");
    }
    return PS_OK;
}

/* The ROUTER socket, with CURVE if configured, bound to bind:port. */
static int open_router(ps_server_t *srv, ps_errbuf_t *err)
{
    const ps_server_config_t *cfg = &srv->cfg;
    srv->router = zmq_socket(srv->ctx, ZMQ_ROUTER);
    int64_t maxmsg = cfg->max_message_mb * 1024 * 1024;
    int zero = 0, one = 1;
    zmq_setsockopt(srv->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(srv->router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(srv->router, ZMQ_ROUTER_MANDATORY, &zero, sizeof zero);
    zmq_setsockopt(srv->router, ZMQ_ROUTER_HANDOVER, &one, sizeof one);
    /* a connection that never completes its handshake gives its descriptor
     * back after this long (libzmq's default is 30 s) */
    int handshake_ms = (int)cfg->handshake_timeout_ms;
    zmq_setsockopt(srv->router, ZMQ_HANDSHAKE_IVL, &handshake_ms, sizeof handshake_ms);
    if (*cfg->curve_secret_file) {
        int rc = psrv_access_setup(srv, err);
        if (rc != PS_OK)
            return rc;
    }
    psrv_access_watch(srv);
    char ep[600];
    if (cfg->port)
        snprintf(ep, sizeof ep, "tcp://%s:%lld", cfg->bind_addr, (long long)cfg->port);
    else
        snprintf(ep, sizeof ep, "tcp://%s:*", cfg->bind_addr);
    if (zmq_bind(srv->router, ep) != 0)
        return ps_err_set(err, PS_ENET, "cannot bind '%s': %s", ep, zmq_strerror(zmq_errno()));
    size_t len = sizeof srv->endpoint;
    zmq_getsockopt(srv->router, ZMQ_LAST_ENDPOINT, srv->endpoint, &len);
    return PS_OK;
}

/* Does state_dir hold a job's checkpoints? (Replicas are in a hidden
 * directory, not listed.) */
static bool state_dir_has_jobs(const char *dir)
{
    char **names;
    int n = ps_ckpt_list_jobs(dir, &names);
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return n > 0;
}

/* The daemon's stop flag (SIGTERM, SIGINT), watched during the startup
 * fetch: ps_server_run is not called yet. */
static volatile sig_atomic_t *watched_stop;

void ps_server_watch_stop(volatile sig_atomic_t *stop)
{
    watched_stop = stop;
}

/* The fetch of a new machine, on a thread of its own. */
typedef struct {
    void *ctx;
    const psrv_replica_cfg_t *cfg;
    int n; /* files fetched, or a negative PS_E* */
    char why[800];
    ps_errbuf_t err;
    atomic_int done;
    atomic_bool stop; /* set by the loop on a stop signal or ps_server_stop */
} fetch_t;

static void *fetch_main(void *arg)
{
    fetch_t *f = arg;
    f->n = psrv_replica_fetch(f->ctx, f->cfg, &f->stop, f->why, sizeof f->why, &f->err);
    atomic_store(&f->done, 1);
    return NULL;
}

static bool is_replica_request(ps_wire_msg_t *m)
{
    Ps__Header *h = m->n_parts >= 2 ? ps_wire_unpack_header(&m->parts[1]) : NULL;
    bool yes = h && h->op >= PS__OP__REPLICA_PUT && h->op <= PS__OP__REPLICA_DROP;
    if (h)
        ps__header__free_unpacked(h, NULL);
    return yes;
}

/* Moves m into the list of requests held until the restore (at most
 * PSRV_HELD_MAX: past it a request is dropped and its sender's deadline
 * tells it). */
static void hold_request(ps_server_t *srv, ps_wire_msg_t *m)
{
    if (srv->n_held == PSRV_HELD_MAX) {
        ps_wire_msg_close(m);
        return;
    }
    srv->held = ps_xrealloc(srv->held, (srv->n_held + 1) * sizeof *srv->held);
    ps_wire_msg_t *to = &srv->held[srv->n_held++];
    to->n_parts = m->n_parts;
    for (int i = 0; i < m->n_parts; i++) {
        zmq_msg_init(&to->parts[i]);
        zmq_msg_move(&to->parts[i], &m->parts[i]);
    }
    ps_wire_msg_close(m);
}

/* Runs the fetch while the router answers the other shards' REPLICA_*
 * requests (at a cold start of every shard each asks the others while
 * they ask it); every other request is held and handled once what was
 * fetched is restored, so no job is made here before its checkpoints are. */
static int fetch_serving_replicas(ps_server_t *srv, const psrv_replica_cfg_t *cfg, ps_errbuf_t *err)
{
    fetch_t f = {.ctx = srv->ctx, .cfg = cfg};
    atomic_init(&f.done, 0);
    atomic_init(&f.stop, false);
    pthread_t t;
    if (pthread_create(&t, NULL, fetch_main, &f) != 0)
        return ps_err_set(err, PS_ENOMEM, "shard %lld: cannot start the fetch thread",
                          (long long)srv->cfg.shard);
    while (!atomic_load(&f.done)) {
        if ((watched_stop && *watched_stop) || atomic_load(&srv->stop_requested))
            atomic_store(&f.stop, true);
        zmq_pollitem_t it = {srv->router, 0, ZMQ_POLLIN, 0};
        zmq_poll(&it, 1, 20);
        for (;;) {
            ps_wire_msg_t m;
            int rc = ps_wire_recv(srv->router, &m, ZMQ_DONTWAIT);
            if (rc == PS_EAGAIN || rc == PS_ENET)
                break;
            if (rc == PS_OK && !is_replica_request(&m)) {
                hold_request(srv, &m);
                continue;
            }
            psrv_handle(srv, &m, rc);
            ps_wire_msg_close(&m);
        }
    }
    pthread_join(t, NULL);
    if (f.n < 0)
        return ps_err_set(err, f.n, "%s", f.err.msg);
    if (f.n == 0)
        ps_log(PS_LOG_NOTICE,
               "shard %lld: empty state_dir and no complete checkpoint fetched (%s): starting "
               "empty",
               (long long)srv->cfg.shard, f.why);
    srv->stats.replica_fetched_files = (uint64_t)f.n;
    return PS_OK;
}

/* The requests held during the fetch, now that the jobs are restored. */
static void handle_held(ps_server_t *srv)
{
    for (size_t i = 0; i < srv->n_held; i++) {
        psrv_handle(srv, &srv->held[i], PS_OK);
        ps_wire_msg_close(&srv->held[i]);
    }
    free(srv->held);
    srv->held = NULL;
    srv->n_held = 0;
}

/* With peers and checkpoint_replicas: a state_dir without any job is a new
 * machine taking over a lost shard, which first fetches what its holders
 * keep for it (then restores it like its own); then the thread that
 * replicates our checkpoints starts. */
static int start_replication(ps_server_t *srv, ps_errbuf_t *err)
{
    psrv_replica_cfg_t rc;
    int code = psrv_replica_config(&srv->cfg, &rc, err);
    if (code != PS_OK || !rc.n_holders)
        return code;
    srv->replica_store = psrv_replica_store_start(
        srv->ctx, (size_t)srv->cfg.replica_inflight_mb << 20, (int)srv->cfg.checkpoint_keep);
    if (!srv->replica_store)
        return ps_err_set(err, PS_ENOMEM, "shard %lld: cannot start the replica writer",
                          (long long)srv->cfg.shard);
    if (!state_dir_has_jobs(srv->cfg.state_dir)) {
        int64_t t0 = ps_time_ms();
        int r = fetch_serving_replicas(srv, &rc, err);
        if (r != PS_OK)
            return r;
        srv->stats.replica_fetch_ms = ps_time_ms() - t0;
    }
    srv->replicator = psrv_replicator_start(srv->ctx, &rc);
    memset(rc.keys.secret_z85, 0, sizeof rc.keys.secret_z85);
    ps_log(PS_LOG_INFO, "shard %lld: checkpoints replicated to %u shard(s), first '%s'",
           (long long)srv->cfg.shard, rc.n_holders, rc.endpoint[0]);
    return PS_OK;
}

ps_server_t *ps_server_new(const ps_server_config_t *cfg, ps_errbuf_t *err)
{
    ps_server_t *srv = ps_xcalloc(1, sizeof *srv);
    srv->cfg = *cfg;
    srv->incarnation = ((uint64_t)ps_time_ns() << 16) ^ (uint64_t)getpid();
    atomic_init(&srv->save_requested, 0);
    atomic_init(&srv->stop_requested, 0);
    srv->ctx = zmq_ctx_new();
    zmq_ctx_set(srv->ctx, ZMQ_IO_THREADS, (int)cfg->io_threads);
    if (open_router(srv, err) != PS_OK)
        goto fail;
    psrv_budget_init(srv);
    long fds = ps_proc_raise_fd_limit();
    ps_log(PS_LOG_INFO, "shard %lld: up to %ld open descriptors", (long long)cfg->shard, fds);
    if (*cfg->state_dir && check_state_dir(srv, err) != PS_OK)
        goto fail;
    if (*cfg->state_dir && start_replication(srv, err) != PS_OK)
        goto fail;
    if (*cfg->state_dir)
        psrv_jobs_restore(srv);
    handle_held(srv);
    srv->started_ms = ps_time_ms();
    if (*cfg->stats_socket || cfg->stats_port >= 0 || cfg->metrics_port >= 0) {
        srv->statsd =
            ps_statsd_start(cfg->stats_socket, (int)cfg->stats_port, (int)cfg->metrics_port,
                            *cfg->state_dir ? &srv->save_requested : NULL, err);
        if (!srv->statsd)
            goto fail;
        ps_statsd_enable_actions(srv->statsd);
        psrv_stats_publish_config(srv);
        psrv_stats_publish(srv);
    }
    if (*cfg->ready_file && write_ready_file(cfg->ready_file, srv, err) != PS_OK)
        goto fail;
    return srv;
fail:
    ps_server_destroy(&srv);
    return NULL;
}

void ps_server_destroy(ps_server_t **srvp)
{
    ps_server_t *srv = *srvp;
    if (!srv)
        return;
    psrv_snapshot_reap(srv, true);
    psrv_replicator_stop(&srv->replicator);
    psrv_replica_store_stop(&srv->replica_store);
    ps_statsd_stop(&srv->statsd);
    psrv_jobs_free_all(srv);
    psrv_regions_fini(srv);
    for (size_t i = 0; i < srv->n_held; i++)
        ps_wire_msg_close(&srv->held[i]);
    free(srv->held);
    psrv_access_stop(srv);
    if (srv->router)
        zmq_close(srv->router);
    if (srv->ctx)
        zmq_ctx_term(srv->ctx);
    free(srv);
    *srvp = NULL;
}

/* systemd: STATUS every few seconds; WATCHDOG=1 only from this loop, so a
 * stuck loop stops the pings and systemd restarts us. */
typedef struct {
    int64_t next_status, next_dog, dog_ms;
} notify_t;

static void notify_systemd(ps_server_t *srv, int64_t now, notify_t *n)
{
    if (now >= n->next_status) {
        char status[256];
        uint32_t alive = 0;
        for (size_t i = 0; i < srv->jobs.n; i++)
            alive += ps_job_alive(srv->jobs.all[i]);
        snprintf(status, sizeof status,
                 "STATUS=shard %lld/%lld: %zu jobs, %u workers alive, clock %lld",
                 (long long)srv->cfg.shard, (long long)srv->cfg.shards, srv->jobs.n, alive,
                 srv->jobs.n ? (long long)ps_job_resume_clock(srv->jobs.all[0]) : 0LL);
        ps_notify(status);
        n->next_status = now + 2000;
    }
    if (n->dog_ms && now >= n->next_dog) {
        ps_notify("WATCHDOG=1");
        n->next_dog = now + n->dog_ms;
    }
}

/* What operators asked for on the stats socket (`drop JOB`). */
static void take_actions(ps_server_t *srv)
{
    ps_statsd_action_t a;
    while (srv->statsd && ps_statsd_next_action(srv->statsd, &a)) {
        ps_errbuf_t err;
        if (strcmp(a.verb, "drop") != 0)
            continue;
        if (ps_name_check_job(a.arg, &err) != PS_OK)
            ps_log(PS_LOG_WARN, "shard %lld: drop refused: %s", (long long)srv->cfg.shard, err.msg);
        else if (psrv_jobs_drop(srv, a.arg) != PS_OK)
            ps_log(PS_LOG_NOTICE,
                   "shard %lld: drop: no job '%s' here (its checkpoints, if any, "
                   "are removed)",
                   (long long)srv->cfg.shard, a.arg);
    }
}

/* Once a second: descriptors in use. Past 90% of the limit new workers
 * cannot connect (their HELLO hangs with no word on either side): warn,
 * once a minute while it lasts, and count it. */
static void check_fds(ps_server_t *srv, int64_t now)
{
    ps_server_stats_t *st = &srv->stats;
    if (now - st->fd_checked_ms < 1000)
        return;
    st->fd_checked_ms = now;
    srv->stats.open_fds = ps_proc_open_fds(&srv->stats.fd_limit);
    if (srv->stats.open_fds < 0 && errno == EMFILE) /* not even /proc/self/fd could be opened */
        srv->stats.open_fds = srv->stats.fd_limit;
    if (srv->stats.fd_limit <= 0 || srv->stats.open_fds * 10 < srv->stats.fd_limit * 9)
        return;
    st->fd_low_warnings++;
    if (now - st->fd_warned_ms < 60000)
        return;
    st->fd_warned_ms = now;
    ps_log(PS_LOG_WARN,
           "shard %lld: %ld of %ld descriptors open: new connections will fail (raise "
           "LimitNOFILE; connections that never finish their handshake are closed after "
           "handshake_timeout_ms)",
           (long long)srv->cfg.shard, srv->stats.open_fds, srv->stats.fd_limit);
}

/* Every poll_ms: what no request triggers. */
static void server_cron(ps_server_t *srv, notify_t *n)
{
    check_fds(srv, ps_time_ms());
    psrv_snapshot_reap(srv, false);
    take_actions(srv);
    psrv_jobs_sweep(srv);
    psrv_regions_sweep(srv, psrv_jobs_region_gone);
    if (atomic_exchange(&srv->save_requested, 0))
        psrv_snapshot_all(srv);
    psrv_stats_publish(srv);
    notify_systemd(srv, ps_time_ms(), n);
}

static bool stopping(ps_server_t *srv, volatile sig_atomic_t *stop)
{
    return *stop || srv->shutdown_requested || atomic_load(&srv->stop_requested);
}

/* Handles what is queued on the router, at most a burst of 256 messages,
 * so the stop flag is looked at between bursts. */
static void drain_router(ps_server_t *srv, volatile sig_atomic_t *stop)
{
    for (int burst = 0; burst < 256 && !stopping(srv, stop); burst++) {
        ps_wire_msg_t msg;
        int rc = ps_wire_recv(srv->router, &msg, ZMQ_DONTWAIT);
        /* what its sender rang before it comes first (the pipe was
         * written before this message was sent): one worker's requests
         * are handled in the order it sent them, whichever way each came */
        if (rc != PS_EAGAIN && rc != PS_ENET && msg.n_parts >= 1)
            psrv_doorbells_take_of(srv, &msg.parts[0]);
        if (rc != PS_EAGAIN && rc != PS_ENET)
            psrv_handle(srv, &msg, rc);
        ps_wire_msg_close(&msg);
        if (rc == PS_EAGAIN || rc == PS_ENET)
            break;
    }
}

/* The loop's poll items: n_fixed sockets, then the doorbells (ids[i] is
 * the region of item n_fixed + i). */
typedef struct {
    zmq_pollitem_t *items;
    uint64_t *ids;
    size_t n_fixed, cap, cap_ids;
} poll_set_t;

/* Lists the doorbells after the fixed items; returns how many. */
static size_t list_bells(ps_server_t *srv, poll_set_t *ps)
{
    if (ps->cap < ps->n_fixed + srv->n_regions) {
        ps->cap = ps->n_fixed + 2 * srv->n_regions;
        ps->items = ps_xrealloc(ps->items, ps->cap * sizeof *ps->items);
    }
    if (ps->cap_ids < srv->n_regions) {
        ps->cap_ids = 2 * srv->n_regions;
        ps->ids = ps_xrealloc(ps->ids, ps->cap_ids * sizeof *ps->ids);
    }
    return psrv_regions_bells(srv, ps->items + ps->n_fixed, ps->ids, ps->cap - ps->n_fixed);
}

int ps_server_run(ps_server_t *srv, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload)
{
    notify_t n = {0, 0, ps_notify_watchdog_ms()};
    char ready[600];
    snprintf(ready, sizeof ready, "READY=1\nSTATUS=serving shard %lld of %lld on %s",
             (long long)srv->cfg.shard, (long long)srv->cfg.shards, srv->endpoint);
    ps_notify(ready);
    int64_t next_cron = ps_time_ms() + srv->cfg.poll_ms;
    /* the monitor and the replica writer's wake socket only if there;
     * then one item per doorbell, listed again each turn */
    poll_set_t ps = {.items = ps_xmalloc(4 * sizeof *ps.items), .cap = 4};
    ps.items[0] = (zmq_pollitem_t){srv->router, 0, ZMQ_POLLIN, 0};
    int n_items = 1, monitor_at = -1, store_at = -1;
    if (srv->monitor)
        ps.items[monitor_at = n_items++] = (zmq_pollitem_t){srv->monitor, 0, ZMQ_POLLIN, 0};
    if (srv->replica_store)
        ps.items[store_at = n_items++] =
            (zmq_pollitem_t){psrv_replica_store_wake(srv->replica_store), 0, ZMQ_POLLIN, 0};
    ps.n_fixed = (size_t)n_items;
    zmq_pollitem_t *items = ps.items;
    while (!stopping(srv, stop)) {
        size_t n_bells = list_bells(srv, &ps);
        items = ps.items;
        if (zmq_poll(items, (int)(ps.n_fixed + n_bells), (long)srv->cfg.poll_ms) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            ps_log(PS_LOG_ERROR, "shard %lld: poll failed: %s", (long long)srv->cfg.shard,
                   zmq_strerror(zmq_errno()));
            free(ps.items);
            free(ps.ids);
            return PS_ENET;
        }
        for (size_t i = 0; i < n_bells; i++)
            if (items[ps.n_fixed + i].revents)
                psrv_doorbells_take(srv, ps.ids[i]);
        if (reload && *reload) {
            *reload = 0;
            psrv_access_reload(srv);
        }
        if (monitor_at >= 0 && (items[monitor_at].revents & ZMQ_POLLIN))
            psrv_access_drain(srv);
        if (store_at >= 0 && (items[store_at].revents & ZMQ_POLLIN))
            psrv_replica_answer(srv);
        drain_router(srv, stop);
        if (ps_time_ms() >= next_cron) {
            server_cron(srv, &n);
            next_cron = ps_time_ms() + srv->cfg.poll_ms;
        }
    }
    free(ps.items);
    free(ps.ids);
    return PS_OK;
}
