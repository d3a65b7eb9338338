/* main.c - ps-worker: parse config, run the training job, report. */
#include <cblas.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "ps_blas.h"
#include "ps_log.h"
#include "ps_proc.h"
#include "ps_trainer.h"
#include "ps_worker.h"

/* OpenBLAS extension, declared here because Debian's cblas.h may not. */
extern void openblas_set_num_threads(int n);

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

static int exit_code(int rc)
{
    switch (rc) {
    case PS_EIO:
    case PS_EFORMAT:
        return EX_DATAERR;
    case PS_ETIME:
    case PS_ENET:
        return EX_UNAVAILABLE;
    case PS_EINTR:
        return 128 + (int)stop_signal;
    case PS_EINVAL:
    case PS_ECONFLICT:
        return EX_CONFIG;
    case PS_EAUTH:
    case PS_EPERM:
        return EX_NOPERM;
    case PS_EFINISHED:
        return PS_EXIT_JOB_FINISHED;
    default:
        return EX_SOFTWARE;
    }
}

int main(int argc, char **argv)
{
    static ps_worker_config_t cfg;
    ps_errbuf_t err;
    int rc = ps_config_load(&ps_worker_optset, &cfg, argc, argv, &err);
    if (rc == PS_CONFIG_HELP)
        return 0;
    ps_worker_config_env(&cfg);
    if (rc == PS_OK)
        rc = ps_worker_config_validate(&cfg, &err);
    if (rc != PS_OK) {
        fprintf(stderr, "ps-worker: %s\n", err.msg);
        return EX_CONFIG;
    }
    ps_log_init("ps-worker", (ps_log_level_t)cfg.log_level);
    ps_blas_select("worker", (ps_blas_core_t)cfg.blas_core, argv);
    ps_proc_keep_buffers();
    ps_proc_on_stop(on_signal);
    openblas_set_num_threads((int)cfg.blas_threads);
    ps_log(PS_LOG_INFO, "worker %lld of %lld: OpenBLAS core '%s', %lld thread(s)",
           (long long)cfg.rank, (long long)cfg.world, ps_blas_core_running(),
           (long long)cfg.blas_threads);
    rc = ps_trainer_run(&cfg, &stop_signal, &err);
    if (rc != PS_OK) {
        ps_log(PS_LOG_ERROR, "%s", err.msg);
        return exit_code(rc);
    }
    return 0;
}
