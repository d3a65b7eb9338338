/* ps_handler_hello.c - HELLO: a worker joins (or rejoins) a job. The job
 * is one thing across the shards: it gets an id when shard 0 creates it,
 * and the worker carries that id to the other shards, so two shards that
 * hold different jobs of one name (one restarted empty, say) are never
 * accepted together. It has one configuration: the first worker's
 * fingerprint, which every later worker must match. A rank has one live
 * owner. A job that finished is remembered, so a late worker does not
 * start it again alone. */
#include "ps_handler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_budget.h"
#include "ps_jobs.h"
#include "ps_log.h"
#include "ps_name.h"
#include "ps_regions.h"
#include "ps_reply.h"
#include "ps_snapshot.h"
#include "ps_time.h"

/* A new job id: any 64 bits but 0, different on every creation. */
static uint64_t mint_id(const ps_server_t *srv)
{
    static uint64_t n;
    uint64_t x = srv->incarnation ^ ((uint64_t)ps_time_ns() * 0x9e3779b97f4a7c15ULL) ^ ++n;
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 29;
    return x ? x : 1;
}

/* The checks of the header alone. NULL if it is a HELLO we can act on. */
static psrv_reply_t *check_hello(const ps_server_t *srv, psrv_request_t *rq)
{
    const Ps__Header *h = rq->hdr;
    /* before any job is looked at: a server started with the wrong --shard
     * must not take a job's state for its own */
    if (h->n_shards &&
        (h->shard != (uint32_t)srv->cfg.shard || h->n_shards != (uint32_t)srv->cfg.shards))
        return psrv_fail(rq, PS_ECONFLICT,
                         "this server is shard %lld of %lld, but worker %u lists it as shard %u "
                         "of %u: check --shard/--shards here and the worker's --servers list",
                         (long long)srv->cfg.shard, (long long)srv->cfg.shards, h->rank, h->shard,
                         h->n_shards);
    ps_errbuf_t err;
    if (h->version != PS_PROTOCOL_VERSION)
        return psrv_fail(rq, PS_EVERSION, "client speaks protocol %u, server %u", h->version,
                         PS_PROTOCOL_VERSION);
    if (ps_name_check_job(h->job, &err) != PS_OK)
        return psrv_fail(rq, PS_EINVAL, "%s", err.msg);
    if (h->world_size == 0 || h->world_size > 65536 || h->rank >= h->world_size)
        return psrv_fail(rq, PS_ERANGE, "rank %u / world size %u out of range", h->rank,
                         h->world_size);
    return NULL;
}

/* A job this shard does not hold: restored from its checkpoints (unloaded
 * after job_ttl_s, say), refused (finished, or held by another shard as
 * the worker says), or created. NULL with the reply set if refused. */
static ps_job_t *find_or_create(ps_server_t *srv, psrv_request_t *rq)
{
    const Ps__Header *h = rq->hdr;
    ps_errbuf_t err;
    ps_job_t *job = *srv->cfg.state_dir ? psrv_snapshot_load_job(srv, h->job, &err) : NULL;
    if (job) {
        psrv_jobs_add(srv, job);
        ps_log(PS_LOG_INFO, "job '%s': restored from its checkpoints for worker %u",
               ps_job_name(job), h->rank);
        return job;
    }
    const char *done = psrv_jobs_finished(srv, h->job, h->fingerprint, &err);
    if (done) {
        psrv_fail(rq, PS_EFINISHED, "%s", done);
        return NULL;
    }
    if (h->job_id && !(h->flags & PS_FLAG_NEW_JOB)) {
        psrv_fail(rq, PS_ENOJOB,
                  "shard %lld holds no state of job '%s' (id %016llx), which shard 0 holds at "
                  "clock %lld: start this shard with the job's state_dir, or end the job (ps-ctl "
                  "drop) on every shard",
                  (long long)srv->cfg.shard, h->job, (unsigned long long)h->job_id,
                  (long long)h->clock);
        return NULL;
    }
    if (srv->jobs.n >= (size_t)srv->cfg.max_jobs) {
        psrv_fail(rq, PS_EAGAIN, "server already serves %zu jobs (max_jobs)", srv->jobs.n);
        return NULL;
    }
    char why[300];
    const char *client = psrv_budget_client(rq);
    if (psrv_budget_new_job(srv, client, why, sizeof why)) {
        psrv_fail(rq, PS_EAGAIN, "%s", why);
        return NULL;
    }
    job = ps_job_new(h->job, h->world_size, h->max_staleness, ps_time_ms());
    ps_job_set_id(job, h->job_id ? h->job_id : mint_id(srv));
    ps_job_set_fingerprint(job, h->fingerprint);
    ps_job_set_creator(job, client);
    if (h->loss_scale > 0) {
        ps_loss_scale_t ls;
        ps_loss_scale_init(&ls, (float)h->loss_scale, (int64_t)h->loss_scale_window);
        ps_job_set_scaler(job, &ls);
    }
    psrv_jobs_add(srv, job);
    ps_log(PS_LOG_INFO, "job '%s': created (id %016llx, %u workers, max_staleness %d)",
           ps_job_name(job), (unsigned long long)ps_job_id(job), ps_job_world(job),
           ps_job_max_staleness(job));
    return job;
}

/* Does the HELLO belong to job (world, consistency, id, configuration)? */
static psrv_reply_t *check_same_job(ps_server_t *srv, psrv_request_t *rq, const ps_job_t *job)
{
    const Ps__Header *h = rq->hdr;
    if (ps_job_world(job) != h->world_size || ps_job_max_staleness(job) != h->max_staleness)
        return psrv_fail(rq, PS_ECONFLICT,
                         "job '%s' has %u workers and max_staleness %d; hello says %u and %d",
                         ps_job_name(job), ps_job_world(job), ps_job_max_staleness(job),
                         h->world_size, h->max_staleness);
    if (h->job_id && h->job_id != ps_job_id(job))
        return psrv_fail(rq, PS_ECONFLICT,
                         "shard %lld holds job '%s' as id %016llx at clock %lld (generation "
                         "%llu), but shard 0 holds it as id %016llx at clock %lld: the shards "
                         "hold different jobs of that name",
                         (long long)srv->cfg.shard, ps_job_name(job),
                         (unsigned long long)ps_job_id(job), (long long)ps_job_resume_clock(job),
                         (unsigned long long)ps_job_generation(job), (unsigned long long)h->job_id,
                         (long long)h->clock);
    char why[400];
    if (!ps_job_same_config(job, h->fingerprint, why, sizeof why))
        return psrv_fail(rq, PS_ECONFLICT,
                         "worker %u does not match job '%s': %s (a second job needs another "
                         "name)",
                         h->rank, ps_job_name(job), why);
    return NULL;
}

/* The reply: where the job is, and what a worker needs to agree with it. */
static psrv_reply_t *welcome(ps_server_t *srv, psrv_request_t *rq, ps_job_t *job)
{
    psrv_reply_t *rep = psrv_ok(rq);
    int64_t top = ps_job_max_clock(job);
    rep->hdr.job_id = ps_job_id(job);
    rep->hdr.clock = ps_job_rank_resume_clock(job, rq->hdr->rank);
    rep->hdr.max_clock = top;
    rep->hdr.generation = ps_job_generation(job);
    rep->hdr.rollback_clock = ps_job_rollback_clock(job);
    rep->hdr.shard = (uint32_t)srv->cfg.shard;
    rep->hdr.n_shards = (uint32_t)srv->cfg.shards;
    rep->hdr.incarnation = srv->incarnation;
    rep->hdr.flags = top == 0 ? PS_FLAG_FRESH : 0;
    const ps_loss_scale_t *ls = ps_job_scaler_at(job, rep->hdr.clock);
    if (ls) {
        rep->hdr.loss_scale = ls->scale;
        rep->hdr.loss_scale_window = (uint64_t)ls->window;
        rep->hdr.scale_good_steps = (uint64_t)ls->clean;
        rep->hdr.scale_skipped = ls->n_skipped;
    }
    psrv_snapshot_reply_clocks(srv, job, rep);
    return rep;
}

psrv_reply_t *psrv_handle_hello(ps_server_t *srv, psrv_request_t *rq)
{
    const Ps__Header *h = rq->hdr;
    psrv_reply_t *bad = check_hello(srv, rq);
    if (bad)
        return bad;
    ps_job_t *job = psrv_jobs_find(srv, h->job);
    if (job && (bad = check_same_job(srv, rq, job)))
        return bad;
    if (!job && !(job = find_or_create(srv, rq)))
        return &rq->reply;
    if (!ps_job_id(job) && h->job_id) /* restored from a checkpoint older than job ids */
        ps_job_set_id(job, h->job_id);
    bool rejoin;
    char why[400];
    if (ps_job_claim(job, h->rank, h->worker_incarnation, psrv_request_peer(rq), ps_time_ms(),
                     &rejoin, why, sizeof why) != PS_OK)
        return psrv_fail(rq, PS_EAGAIN, "%s", why);
    ps_job_set_rank_stage(job, h->rank, h->world_rank, h->stage, h->n_stages);
    uint32_t forgot = rejoin ? ps_job_forget_rank_pushes(job, h->rank) : 0;
    ps_log(PS_LOG_INFO, "job '%s': worker %u %s from '%s' at clock %lld%s", ps_job_name(job),
           h->rank, rejoin ? "rejoined" : "joined", ps_job_rank(job, h->rank)->peer,
           (long long)ps_job_rank_resume_clock(job, h->rank),
           forgot ? " (its pushes to the round in progress dropped: it replays them)" : "");
    psrv_reply_t *rep = welcome(srv, rq, job);
    psrv_sender_t from = {&rq->msg->parts[0], psrv_request_peer(rq), psrv_request_user(rq)};
    psrv_regions_hello(srv, job, h, &from, rep);
    return rep;
}
