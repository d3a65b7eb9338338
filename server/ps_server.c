/* ps_server.c - one ps-server process: its lifecycle (sockets, restore,
 * stats thread, ready file) and the poll loop, with server_cron() for the
 * periodic work (dead-rank sweep, checkpoint writer, stats, systemd). The
 * loop thread owns everything; requests go to ps_handler. */
#include "ps_server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <zmq.h>

#include "ps_access.h"
#include "ps_budget.h"
#include "ps_file.h"
#include "ps_handler.h"
#include "ps_jobs.h"
#include "ps_log.h"
#include "ps_proc.h"
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
    if (*cfg->state_dir)
        psrv_jobs_restore(srv);
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
    ps_statsd_stop(&srv->statsd);
    psrv_jobs_free_all(srv);
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
        if (rc != PS_EAGAIN && rc != PS_ENET)
            psrv_handle(srv, &msg, rc);
        ps_wire_msg_close(&msg);
        if (rc == PS_EAGAIN || rc == PS_ENET)
            break;
    }
}

int ps_server_run(ps_server_t *srv, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload)
{
    notify_t n = {0, 0, ps_notify_watchdog_ms()};
    char ready[600];
    snprintf(ready, sizeof ready, "READY=1\nSTATUS=serving shard %lld of %lld on %s",
             (long long)srv->cfg.shard, (long long)srv->cfg.shards, srv->endpoint);
    ps_notify(ready);
    int64_t next_cron = ps_time_ms() + srv->cfg.poll_ms;
    zmq_pollitem_t items[2] = {{srv->router, 0, ZMQ_POLLIN, 0}, {srv->monitor, 0, ZMQ_POLLIN, 0}};
    while (!stopping(srv, stop)) {
        if (zmq_poll(items, srv->monitor ? 2 : 1, (long)srv->cfg.poll_ms) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            ps_log(PS_LOG_ERROR, "shard %lld: poll failed: %s", (long long)srv->cfg.shard,
                   zmq_strerror(zmq_errno()));
            return PS_ENET;
        }
        if (reload && *reload) {
            *reload = 0;
            psrv_access_reload(srv);
        }
        if (srv->monitor && (items[1].revents & ZMQ_POLLIN))
            psrv_access_drain(srv);
        drain_router(srv, stop);
        if (ps_time_ms() >= next_cron) {
            server_cron(srv, &n);
            next_cron = ps_time_ms() + srv->cfg.poll_ms;
        }
    }
    return PS_OK;
}
