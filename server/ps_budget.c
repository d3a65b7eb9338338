/* ps_budget.c - see ps_budget.h. */
#include "ps_budget.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "ps_log.h"
#include "ps_reply.h"

#define MIB (1024.0 * 1024.0)

void psrv_budget_init(ps_server_t *srv)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    double machine = pages > 0 && page > 0 ? (double)pages * (double)page : 0;
    srv->shard_budget = srv->cfg.max_shard_mb ? (size_t)srv->cfg.max_shard_mb * (size_t)MIB
                                              : (size_t)(machine * 0.9);
    srv->job_budget =
        srv->cfg.max_job_mb ? (size_t)srv->cfg.max_job_mb * (size_t)MIB : srv->shard_budget;
    if (srv->job_budget > srv->shard_budget)
        srv->job_budget = srv->shard_budget;
    ps_log(PS_LOG_INFO,
           "shard %lld: memory budget %.0f MiB for all jobs, %.0f MiB per job; %lld "
           "jobs per client",
           (long long)srv->cfg.shard, (double)srv->shard_budget / MIB,
           (double)srv->job_budget / MIB, (long long)srv->cfg.max_jobs_per_client);
}

const char *psrv_budget_memory(const ps_server_t *srv, const ps_job_t *job, size_t bytes,
                               const char *what, char *why, size_t cap)
{
    size_t shard = 0, mine = job ? ps_job_bytes(job) : 0;
    for (size_t j = 0; j < srv->jobs.n; j++)
        shard += ps_job_bytes(srv->jobs.all[j]);
    if (mine + bytes > srv->job_budget) {
        snprintf(why, cap,
                 "%s needs %.1f MiB more, but job '%s' holds %.1f MiB of its %.0f MiB budget on "
                 "shard %lld (max_job_mb)",
                 what, (double)bytes / MIB, job ? ps_job_name(job) : "?", (double)mine / MIB,
                 (double)srv->job_budget / MIB, (long long)srv->cfg.shard);
        return why;
    }
    if (shard + bytes > srv->shard_budget) {
        snprintf(why, cap,
                 "%s needs %.1f MiB more, but the jobs on shard %lld hold %.1f MiB of its %.0f "
                 "MiB budget (max_shard_mb)",
                 what, (double)bytes / MIB, (long long)srv->cfg.shard, (double)shard / MIB,
                 (double)srv->shard_budget / MIB);
        return why;
    }
    return NULL;
}

const char *psrv_budget_new_job(const ps_server_t *srv, const char *who, char *why, size_t cap)
{
    int64_t n = 0;
    for (size_t j = 0; j < srv->jobs.n; j++)
        n += strcmp(ps_job_creator(srv->jobs.all[j]), who) == 0;
    if (n < srv->cfg.max_jobs_per_client)
        return NULL;
    snprintf(why, cap,
             "client '%s' already created %lld jobs on shard %lld (max_jobs_per_client %lld)", who,
             (long long)n, (long long)srv->cfg.shard, (long long)srv->cfg.max_jobs_per_client);
    return why;
}

const char *psrv_budget_client(const psrv_request_t *rq)
{
    const char *user = psrv_request_user(rq);
    return *user ? user : psrv_request_peer(rq);
}
