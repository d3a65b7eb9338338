/* main.c - ps-server: parse config, build the server, run the loop, tear down. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "ps_log.h"
#include "ps_proc.h"
#include "ps_server.h"

static volatile sig_atomic_t stop_signal, reload_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

static void on_hangup(int sig)
{
    (void)sig;
    reload_signal = 1;
}

int main(int argc, char **argv)
{
    static ps_server_config_t cfg;
    ps_errbuf_t err;
    int rc = ps_config_load(&ps_server_optset, &cfg, argc, argv, &err);
    if (rc == PS_CONFIG_HELP)
        return 0;
    if (rc == PS_OK)
        rc = ps_server_config_validate(&cfg, &err);
    if (rc != PS_OK) {
        fprintf(stderr, "ps-server: %s\n", err.msg);
        return EX_CONFIG;
    }
    ps_log_init("ps-server", (ps_log_level_t)cfg.log_level);
    if (*cfg.log_file && ps_log_open_file(cfg.log_file) != 0) {
        fprintf(stderr, "ps-server: cannot open log file '%s'\n", cfg.log_file);
        return EX_CANTCREAT;
    }
    ps_proc_keep_buffers();
    ps_proc_on_stop(on_signal);
    ps_proc_on_reload(on_hangup);
    ps_server_watch_stop(&stop_signal);

    ps_server_t *srv = ps_server_new(&cfg, &err);
    if (!srv) {
        ps_log(PS_LOG_ERROR, "shard %lld: %s", (long long)cfg.shard, err.msg);
        return EX_OSERR;
    }
    ps_log(PS_LOG_INFO, "ready: endpoint '%s' shard %lld of %lld", ps_server_endpoint(srv),
           (long long)cfg.shard, (long long)cfg.shards);
    rc = ps_server_run(srv, &stop_signal, &reload_signal);
    if (stop_signal)
        ps_log(PS_LOG_INFO, "shutdown: signal %d", (int)stop_signal);
    /* the request in hand is finished; keep every job's state for a restart */
    if (*cfg.state_dir && ps_server_checkpoint_all(srv) != 0)
        rc = PS_EIO;
    ps_server_destroy(&srv);
    return rc == PS_OK ? 0 : EX_SOFTWARE;
}
