/* ps_jobs.c - see ps_jobs.h. */
#include "ps_jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_checkpoint.h"
#include "ps_log.h"
#include "ps_regions.h"
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

/* Takes job out of the list and frees it (its checkpoints stay). */
static void unlink_job(ps_server_t *srv, ps_job_t *job)
{
    psrv_jobs_t *js = &srv->jobs;
    for (size_t i = 0; i < js->n; i++) {
        if (js->all[i] == job) {
            js->all[i] = js->all[--js->n];
            break;
        }
    }
    ps_job_destroy(&job);
}

/* Remembers a job that ended, for finished_job_ttl_s. */
static void remember(psrv_jobs_t *js, const ps_job_t *job, int64_t now)
{
    psrv_finished_t *f = &js->finished_jobs[js->n_ended++ % PSRV_FINISHED_MAX];
    free(f->fingerprint);
    snprintf(f->name, sizeof f->name, "%s", ps_job_name(job));
    f->id = ps_job_id(job);
    f->fingerprint = ps_xstrdup(ps_job_fingerprint(job));
    f->clock = ps_job_resume_clock(job);
    f->ended_ms = now;
}

void psrv_jobs_finish(ps_server_t *srv, ps_job_t *job)
{
    psrv_jobs_t *js = &srv->jobs;
    snprintf(js->last_name, sizeof js->last_name, "%s", ps_job_name(job));
    js->last_clock = ps_job_resume_clock(job);
    js->finished++;
    remember(js, job, ps_time_ms());
    ps_log(PS_LOG_INFO, "job '%s': all %u workers said BYE at clock %lld; job ended",
           ps_job_name(job), ps_job_world(job), (long long)js->last_clock);
    psrv_snapshot_remove_job(srv, job);
    unlink_job(srv, job);
}

static void fail_dropped(void *ctx, ps_pull_t *pull)
{
    psrv_reply_pull_error(ctx, pull, PS_ENOJOB, "the job was dropped by an operator");
}

/* Forgets that jobs named name ended: an operator's drop lets the name
 * start afresh. */
static void forget(psrv_jobs_t *js, const char *name)
{
    for (size_t k = 0; k < PSRV_FINISHED_MAX; k++)
        if (strcmp(js->finished_jobs[k].name, name) == 0)
            js->finished_jobs[k].name[0] = '\0';
}

int psrv_jobs_drop(ps_server_t *srv, const char *name)
{
    forget(&srv->jobs, name);
    ps_job_t *job = psrv_jobs_find(srv, name);
    if (!job) {
        /* an unloaded job's checkpoints are removed all the same */
        if (*srv->cfg.state_dir)
            ps_ckpt_remove_job(srv->cfg.state_dir, name);
        return PS_ENOJOB;
    }
    ps_pending_flush(ps_job_pending(job), fail_dropped, srv);
    ps_log(PS_LOG_NOTICE, "job '%s': dropped by an operator at clock %lld; checkpoints removed",
           ps_job_name(job), (long long)ps_job_resume_clock(job));
    psrv_snapshot_remove_job(srv, job);
    unlink_job(srv, job);
    return PS_OK;
}

const char *psrv_jobs_finished(ps_server_t *srv, const char *name, const char *fingerprint,
                               ps_errbuf_t *err)
{
    const psrv_jobs_t *js = &srv->jobs;
    int64_t now = ps_time_ms();
    uint64_t n = js->n_ended < PSRV_FINISHED_MAX ? js->n_ended : PSRV_FINISHED_MAX;
    for (uint64_t k = 0; k < n; k++) {
        const psrv_finished_t *f = &js->finished_jobs[(js->n_ended - 1 - k) % PSRV_FINISHED_MAX];
        if (strcmp(f->name, name) != 0 || now - f->ended_ms > srv->cfg.finished_job_ttl_s * 1000)
            continue;
        if (*f->fingerprint && fingerprint && *fingerprint && strcmp(f->fingerprint, fingerprint))
            return NULL; /* another configuration under that name: a new job */
        ps_err_set(err, PS_EFINISHED,
                   "job '%s' with this configuration finished at clock %lld, %lld s ago (every "
                   "worker said BYE): its model is done; a new run needs another job name (or "
                   "'ps-ctl drop %s' on every shard)",
                   name, (long long)f->clock, (long long)((now - f->ended_ms) / 1000), name);
        return err->msg;
    }
    return NULL;
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
    for (int k = 0; k < PSRV_FINISHED_MAX; k++) {
        free(srv->jobs.finished_jobs[k].fingerprint);
        srv->jobs.finished_jobs[k].fingerprint = NULL;
    }
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
    if (pull->sparse)
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
    ps_log(PS_LOG_WARN, "job '%s': worker %u declared dead: silent for %lld ms%s", ps_job_name(job),
           rank, (long long)silent_ms,
           ps_job_max_staleness(job) == 0 ? " (BSP: the round waits for it to come back)" : "");
}

const char *psrv_jobs_world_problem(ps_server_t *srv, const ps_job_t *job, char *why, size_t cap)
{
    return ps_job_world_problem(job, ps_time_ms(), srv->cfg.lost_rank_timeout_ms,
                                srv->cfg.assemble_timeout_ms, why, cap);
}

typedef struct {
    ps_server_t *srv;
    const char *why;
} fail_ctx_t;

static void fail_world(void *ctx, ps_pull_t *pull)
{
    fail_ctx_t *f = ctx;
    psrv_reply_pull_error(f->srv, pull, PS_EWORLD, f->why);
}

/* BSP: a job whose world broke fails the pulls waiting on it (logged once
 * per reason). */
static void check_world(ps_server_t *srv, ps_job_t *job)
{
    char why[512];
    if (!psrv_jobs_world_problem(srv, job, why, sizeof why))
        return;
    fail_ctx_t f = {srv, why};
    if (ps_pending_flush(ps_job_pending(job), fail_world, &f))
        ps_log(PS_LOG_ERROR, "%s", why);
}

void psrv_jobs_sweep(ps_server_t *srv)
{
    int64_t now = ps_time_ms(), gap = now - srv->jobs.last_cron_ms;
    bool stalled = srv->jobs.last_cron_ms && gap > 1000 && gap > srv->cfg.heartbeat_timeout_ms / 4;
    if (stalled)
        ps_log(PS_LOG_WARN,
               "shard %lld: the loop did not run for %lld ms (stopped?); silence "
               "clocks restart now",
               (long long)srv->cfg.shard, (long long)gap);
    srv->jobs.last_cron_ms = now;
    for (size_t j = 0; j < srv->jobs.n; j++) {
        ps_job_t *job = srv->jobs.all[j];
        if (stalled)
            ps_job_forgive_silence(job, now);
        if (ps_job_sweep(job, now, srv->cfg.heartbeat_timeout_ms, log_dead, NULL))
            psrv_jobs_recheck(srv, job);
        check_world(srv, job);
    }
    /* silence never ends a job: one no rank was alive in for job_ttl_s is
     * only unloaded; its checkpoints stay and a HELLO brings it back */
    for (size_t j = 0; j < srv->jobs.n;) {
        ps_job_t *job = srv->jobs.all[j];
        if (ps_job_alive(job) == 0 && ps_job_pending(job)->n == 0 &&
            now - ps_job_last_alive_ms(job) > srv->cfg.job_ttl_s * 1000) {
            ps_log(PS_LOG_NOTICE,
                   "job '%s': no worker alive for %lld s (job_ttl_s); unloaded, "
                   "its checkpoints stay",
                   ps_job_name(job), (long long)((now - ps_job_last_alive_ms(job)) / 1000));
            unlink_job(srv, job);
        } else {
            j++;
        }
    }
}

const char *psrv_jobs_region_gone(ps_server_t *srv, const psrv_region_t *r)
{
    ps_job_t *job = psrv_jobs_find(srv, r->job);
    if (!job)
        return "the job ended here";
    const ps_rank_t *rk = r->rank < ps_job_world(job) ? ps_job_rank(job, r->rank) : NULL;
    if (!rk || rk->left)
        return "the worker left";
    if (rk->dead)
        return "the worker was declared dead";
    if (rk->owner != r->owner)
        return "the rank has a new process";
    return NULL;
}
