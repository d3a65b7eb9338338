/* ps_snapshot.c - see ps_snapshot.h. */
#include "ps_snapshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ps_checkpoint.h"
#include "ps_log.h"
#include "ps_shardmap.h"
#include "ps_time.h"

/* Writes a checkpoint of job in this process. */
static int write_job(ps_server_t *srv, ps_job_t *job, ps_errbuf_t *err)
{
    ps_ckpt_job_t cj = {.world = ps_job_world(job),
                        .max_staleness = ps_job_max_staleness(job),
                        .generation = ps_job_generation(job),
                        .shard = (uint32_t)srv->cfg.shard,
                        .n_shards = (uint32_t)srv->cfg.shards,
                        .clock = ps_job_resume_clock(job)};
    snprintf(cj.job, sizeof cj.job, "%s", ps_job_name(job));
    ps_table_t **chunks;
    uint32_t *ids;
    uint32_t n = ps_job_chunks(job, &chunks, &ids);
    int rc =
        ps_ckpt_write(srv->cfg.state_dir, &cj, chunks, ids, n, (int)srv->cfg.checkpoint_keep, err);
    free(chunks);
    free(ids);
    return rc;
}

void psrv_snapshot_reap(ps_server_t *srv, bool block)
{
    int status;
    if (srv->ckpt_child <= 0 || waitpid(srv->ckpt_child, &status, block ? 0 : WNOHANG) <= 0)
        return;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        ps_log(PS_LOG_ERROR, "shard %lld: checkpoint writer (pid %d) failed",
               (long long)srv->cfg.shard, (int)srv->ckpt_child);
        srv->stats.checkpoints_failed++;
    } else {
        srv->stats.checkpoints_written++;
        srv->stats.last_checkpoint_ms = ps_time_ms();
    }
    srv->ckpt_child = 0;
}

static int64_t next_multiple(int64_t clock, int64_t every)
{
    return (clock / every + 1) * every;
}

/* Under BSP the lowest chunk clock reaches c only once every chunk is at
 * exactly c (no worker pushes c before it has every table at c), so the
 * file is a consistent cut, taken at the same clocks on every shard. */
void psrv_snapshot_maybe(ps_server_t *srv, ps_job_t *job)
{
    if (!*srv->cfg.state_dir || !srv->cfg.checkpoint_every)
        return;
    int64_t clock = ps_job_resume_clock(job);
    if (clock < ps_job_next_checkpoint(job))
        return;
    ps_job_set_next_checkpoint(job, next_multiple(clock, srv->cfg.checkpoint_every));
    psrv_snapshot_reap(srv, true); /* one writer at a time */
    pid_t pid = fork();
    if (pid == 0) {
        ps_errbuf_t err;
        int rc = write_job(srv, job, &err);
        if (rc != PS_OK)
            ps_log(PS_LOG_ERROR, "shard %lld: %s", (long long)srv->cfg.shard, err.msg);
        _exit(rc == PS_OK ? 0 : 1);
    }
    if (pid < 0) {
        ps_errbuf_t err;
        if (write_job(srv, job, &err) != PS_OK)
            ps_log(PS_LOG_ERROR, "shard %lld: %s", (long long)srv->cfg.shard, err.msg);
        return;
    }
    srv->ckpt_child = pid;
}

int psrv_snapshot_all(ps_server_t *srv)
{
    int failed = 0;
    psrv_snapshot_reap(srv, true);
    for (size_t j = 0; *srv->cfg.state_dir && j < srv->jobs.n; j++) {
        ps_job_t *job = srv->jobs.all[j];
        ps_errbuf_t err;
        if (write_job(srv, job, &err) != PS_OK) {
            ps_log(PS_LOG_ERROR, "shard %lld: %s", (long long)srv->cfg.shard, err.msg);
            failed++;
            srv->stats.checkpoints_failed++;
        } else {
            srv->stats.checkpoints_written++;
            srv->stats.last_checkpoint_ms = ps_time_ms();
            ps_log(PS_LOG_INFO, "job '%s': checkpoint written at clock %lld", ps_job_name(job),
                   (long long)ps_job_resume_clock(job));
        }
    }
    return failed;
}

/* Puts the chunks of a checkpoint into job (creating missing ones). */
static int restore_chunks(ps_server_t *srv, ps_job_t *job, const ps_ckpt_t *ck, ps_errbuf_t *err)
{
    uint32_t shards = (uint32_t)srv->cfg.shards;
    for (uint32_t i = 0; i < ck->n_chunks; i++) {
        const ps_ckpt_chunk_t *c = &ck->chunks[i];
        uint32_t n_chunks = ps_shardmap_n_chunks(c->n_total, shards);
        ps_chunk_t where = c->chunk < n_chunks
                               ? ps_shardmap_chunk(c->n_total, c->table_id, c->chunk, shards)
                               : (ps_chunk_t){0, 0, UINT32_MAX};
        ps_job_table_t *e = ps_job_dense(job, c->table_id, c->n_total, n_chunks);
        if (!e || where.shard != srv->cfg.shard || where.offset != c->offset ||
            where.len != c->state.len)
            return ps_err_set(err, PS_ECONFLICT, "chunk %u of table '%s' does not fit this shard",
                              c->chunk, c->name);
        ps_table_t *t = e->chunks[c->chunk];
        if (!t) {
            ps_table_params_t p = {.name = c->name,
                                   .id = c->table_id,
                                   .n_total = c->n_total,
                                   .shape = c->shape,
                                   .ndim = c->ndim,
                                   .offset = c->offset,
                                   .len = c->state.len,
                                   .optim = c->optim,
                                   .world = ps_job_world(job),
                                   .max_staleness = ps_job_max_staleness(job)};
            if (!(t = e->chunks[c->chunk] = ps_table_new(&p, c->state.params, err)))
                return err->code;
        }
        if (ps_table_set_state(t, &c->state) != PS_OK)
            return ps_err_set(err, PS_ECONFLICT, "chunk %u of table '%s' has another layout",
                              c->chunk, c->name);
    }
    return PS_OK;
}

/* The job of checkpoint ck, restored; NULL with err set if it does not fit. */
static ps_job_t *restore_job(ps_server_t *srv, const ps_ckpt_t *ck, ps_errbuf_t *err)
{
    ps_job_t *job = ps_job_new(ck->job.job, ck->job.world, ck->job.max_staleness, ps_time_ms());
    ps_job_set_generation(job, ck->job.generation);
    if (restore_chunks(srv, job, ck, err) != PS_OK) {
        ps_job_destroy(&job);
        return NULL;
    }
    int64_t clock = ps_job_resume_clock(job);
    if (srv->cfg.checkpoint_every)
        ps_job_set_next_checkpoint(job, next_multiple(clock, srv->cfg.checkpoint_every));
    ps_log(PS_LOG_INFO,
           "job '%s': restored from checkpoint at clock %lld (%u chunks, generation %llu)",
           ps_job_name(job), (long long)clock, ck->n_chunks,
           (unsigned long long)ps_job_generation(job));
    return job;
}

ps_job_t *psrv_snapshot_load_job(ps_server_t *srv, const char *name, ps_errbuf_t *err)
{
    ps_ckpt_t ck;
    if (ps_ckpt_load(srv->cfg.state_dir, name, -1, &ck, err) != PS_OK)
        return NULL;
    ps_job_t *job = NULL;
    if (ck.job.shard != srv->cfg.shard || ck.job.n_shards != srv->cfg.shards)
        ps_err_set(err, PS_ECONFLICT, "checkpoint of job '%s' is for shard %u of %u; ignored",
                   ck.job.job, ck.job.shard, ck.job.n_shards);
    else
        job = restore_job(srv, &ck, err);
    ps_ckpt_free(&ck);
    return job;
}

int psrv_snapshot_rollback(ps_server_t *srv, ps_job_t *job, int64_t clock, ps_errbuf_t *err)
{
    ps_ckpt_t ck;
    psrv_snapshot_reap(srv, true); /* the checkpoint asked for may be being written */
    if (!*srv->cfg.state_dir ||
        ps_ckpt_load(srv->cfg.state_dir, ps_job_name(job), clock, &ck, err) != PS_OK)
        return ps_err_set(err, PS_ENOCKPT, "shard %lld has no checkpoint of job '%s' at clock %lld",
                          (long long)srv->cfg.shard, ps_job_name(job), (long long)clock);
    int rc = restore_chunks(srv, job, &ck, err);
    ps_ckpt_free(&ck);
    if (rc == PS_OK && srv->cfg.checkpoint_every)
        ps_job_set_next_checkpoint(job, next_multiple(clock, srv->cfg.checkpoint_every));
    return rc;
}

void psrv_snapshot_remove_job(ps_server_t *srv, const char *job)
{
    if (!*srv->cfg.state_dir)
        return;
    psrv_snapshot_reap(srv, true);
    ps_ckpt_remove_job(srv->cfg.state_dir, job);
}
