/* ps_jobs.c - see ps_jobs.h. */
#include "ps_jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_checkpoint.h"
#include "ps_log.h"
#include "ps_reply.h"
#include "ps_snapshot.h"
#include "ps_time.h"

ps_job_t *psrv_jobs_find(ps_server_t *srv, const char *name)
{
    for (size_t i = 0; i < srv->jobs.n; i++)
        if (strcmp(ps_job_name(srv->jobs.all[i]), name) == 0)
            return srv->jobs.all[i];
    return NULL;
}

void psrv_jobs_add(ps_server_t *srv, ps_job_t *job)
{
    srv->jobs.all = ps_xrealloc(srv->jobs.all, (srv->jobs.n + 1) * sizeof *srv->jobs.all);
    srv->jobs.all[srv->jobs.n++] = job;
}

void psrv_jobs_drop(ps_server_t *srv, ps_job_t *job)
{
    psrv_jobs_t *js = &srv->jobs;
    snprintf(js->last_name, sizeof js->last_name, "%s", ps_job_name(job));
    js->last_clock = ps_job_resume_clock(job);
    js->finished++;
    for (size_t i = 0; i < js->n; i++) {
        if (js->all[i] == job) {
            js->all[i] = js->all[--js->n];
            break;
        }
    }
    ps_log(PS_LOG_INFO, "job '%s': all %u workers left or died; tables dropped", ps_job_name(job),
           ps_job_world(job));
    psrv_snapshot_remove_job(srv, ps_job_name(job));
    ps_job_destroy(&job);
}

void psrv_jobs_restore(ps_server_t *srv)
{
    char **names;
    int n = ps_ckpt_list_jobs(srv->cfg.state_dir, &names);
    for (int i = 0; i < n; i++) {
        ps_errbuf_t err;
        ps_job_t *job = NULL;
        if (psrv_jobs_find(srv, names[i]) || srv->jobs.n >= (size_t)srv->cfg.max_jobs)
            ps_err_set(&err, PS_EAGAIN, "job '%s' not restored: %s", names[i],
                       psrv_jobs_find(srv, names[i]) ? "already here" : "max_jobs reached");
        else
            job = psrv_snapshot_load_job(srv, names[i], &err);
        if (job)
            psrv_jobs_add(srv, job);
        else
            ps_log(PS_LOG_WARN, "shard %lld: %s", (long long)srv->cfg.shard, err.msg);
        free(names[i]);
    }
    free(names);
}

void psrv_jobs_free_all(ps_server_t *srv)
{
    for (size_t i = 0; i < srv->jobs.n; i++)
        ps_job_destroy(&srv->jobs.all[i]);
    free(srv->jobs.all);
    srv->jobs.all = NULL;
    srv->jobs.n = 0;
}

typedef struct {
    ps_server_t *srv;
    ps_job_t *job;
} serve_ctx_t;

static bool pull_ready(void *ctx, const ps_pull_t *pull)
{
    return ps_job_pull_ready(((serve_ctx_t *)ctx)->job, pull);
}

static void answer_pull(void *ctx, ps_pull_t *pull)
{
    serve_ctx_t *sc = ctx;
    if (zmq_msg_size(&pull->keys))
        psrv_reply_rows(sc->srv, pull, ps_job_sparse(sc->job, pull->table_id));
    else
        psrv_reply_params(sc->srv, pull, ps_job_chunk(sc->job, pull->table_id, pull->chunk));
}

void psrv_jobs_serve(ps_server_t *srv, ps_job_t *job)
{
    serve_ctx_t sc = {srv, job};
    ps_pending_serve(ps_job_pending(job), pull_ready, answer_pull, &sc);
}

void psrv_jobs_recheck(ps_server_t *srv, ps_job_t *job)
{
    ps_job_recheck(job);
    psrv_jobs_serve(srv, job);
}

static void log_dead(void *ctx, const ps_job_t *job, uint32_t rank, int64_t silent_ms)
{
    (void)ctx;
    ps_log(PS_LOG_WARN, "job '%s': worker %u declared dead: %s for %lld ms", ps_job_name(job), rank,
           ps_job_rank(job, rank)->joined ? "silent" : "never joined", (long long)silent_ms);
}

void psrv_jobs_sweep(ps_server_t *srv)
{
    int64_t now = ps_time_ms();
    for (size_t j = 0; j < srv->jobs.n; j++) {
        ps_job_t *job = srv->jobs.all[j];
        if (ps_job_sweep(job, now, srv->cfg.heartbeat_timeout_ms, log_dead, NULL))
            psrv_jobs_recheck(srv, job);
    }
    /* a job whose every rank left or died is over */
    for (size_t j = 0; j < srv->jobs.n;) {
        ps_job_t *job = srv->jobs.all[j];
        if (ps_job_all_gone(job) && ps_job_pending(job)->n == 0)
            psrv_jobs_drop(srv, job);
        else
            j++;
    }
}
