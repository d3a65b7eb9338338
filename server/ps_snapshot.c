/* ps_snapshot.c - see ps_snapshot.h. */
#include "ps_snapshot.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ps_checkpoint.h"
#include "ps_log.h"
#include "ps_replica.h"
#include "ps_shardmap.h"
#include "ps_time.h"

/* Writes a checkpoint of job in this process; its sparse rows all, or
 * (base >= 0) those made or updated since the checkpoint of clock base. */
static int write_job(ps_server_t *srv, ps_job_t *job, int64_t base, ps_errbuf_t *err)
{
    uint32_t world = ps_job_world(job);
    uint8_t *ranks = ps_xmalloc(world);
    for (uint32_t r = 0; r < world; r++) {
        const ps_rank_t *rk = ps_job_rank(job, r);
        ranks[r] = (rk->done ? PS_CKPT_RANK_DONE : 0) | (rk->left ? PS_CKPT_RANK_LEFT : 0) |
                   (rk->dead ? PS_CKPT_RANK_DEAD : 0);
    }
    const ps_loss_scale_t *ls = ps_job_scaler(job);
    ps_ckpt_job_t cj = {.world = world,
                        .max_staleness = ps_job_max_staleness(job),
                        .generation = ps_job_generation(job),
                        .shard = (uint32_t)srv->cfg.shard,
                        .n_shards = (uint32_t)srv->cfg.shards,
                        .clock = ps_job_resume_clock(job),
                        .id = ps_job_id(job),
                        .fingerprint = ps_job_fingerprint(job),
                        .rank_state = ranks,
                        .has_scaler = ls != NULL,
                        .scale = ls ? ls->scale : 0,
                        .scale_window = ls ? ls->window : 0,
                        .scale_clean = ls ? ls->clean : 0,
                        .scale_skipped = ls ? ls->n_skipped : 0};
    snprintf(cj.job, sizeof cj.job, "%s", ps_job_name(job));
    ps_table_t **chunks;
    uint32_t *ids;
    uint32_t n = ps_job_chunks(job, &chunks, &ids);
    ps_ckpt_sparse_set_t sparse = {.base_clock = base};
    ps_sparse_t **tables;
    sparse.n = ps_job_sparse_tables(job, &tables);
    sparse.tables = tables;
    int rc = ps_ckpt_write(srv->cfg.state_dir, &cj, chunks, ids, n, &sparse,
                           (int)srv->cfg.checkpoint_keep, err);
    free(tables);
    free(chunks);
    free(ids);
    free(ranks);
    return rc;
}

/* The sparse rows are clean from the moment a checkpoint is taken (what
 * changes next goes in the next delta); the chain moves on once the file
 * is written, and starts over (a full file next) if it was not. */
static void clear_dirty(ps_job_t *job)
{
    ps_sparse_t **tables;
    uint32_t n = ps_job_sparse_tables(job, &tables);
    for (uint32_t i = 0; i < n; i++)
        ps_sparse_clear_dirty(tables[i]);
    free(tables);
}

static void chain_written(ps_job_t *job, int64_t clock, bool delta, bool ok)
{
    ps_job_ckpt_chain_t *chain = ps_job_ckpt_chain(job);
    chain->base = ok ? clock : -1;
    chain->deltas = ok && delta ? chain->deltas + 1 : 0;
}

/* The base of the next checkpoint's sparse rows at clock, or -1 (full):
 * full every sparse_full_every files, when the chain was broken, or when
 * the base would be the file being written (same clock). */
static int64_t next_base(ps_server_t *srv, ps_job_t *job, int64_t clock)
{
    const ps_job_ckpt_chain_t *chain = ps_job_ckpt_chain(job);
    if (chain->base < 0 || chain->base >= clock ||
        chain->deltas + 1 >= (uint64_t)srv->cfg.sparse_full_every)
        return -1;
    ps_sparse_t **tables;
    uint32_t n = ps_job_sparse_tables(job, &tables);
    free(tables);
    return n ? chain->base : -1;
}

void psrv_snapshot_reap(ps_server_t *srv, bool block)
{
    int status;
    if (srv->ckpt_child <= 0 || waitpid(srv->ckpt_child, &status, block ? 0 : WNOHANG) <= 0)
        return;
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    for (size_t j = 0; j < srv->jobs.n; j++) /* the job may have gone meanwhile */
        if (ps_job_id(srv->jobs.all[j]) == srv->ckpt_job_id &&
            !strcmp(ps_job_name(srv->jobs.all[j]), srv->ckpt_job))
            chain_written(srv->jobs.all[j], srv->ckpt_clock, srv->ckpt_delta, ok);
    if (!ok) {
        ps_log(PS_LOG_ERROR, "shard %lld: checkpoint writer (pid %d) failed",
               (long long)srv->cfg.shard, (int)srv->ckpt_child);
        srv->stats.checkpoints_failed++;
    } else {
        srv->stats.checkpoints_written++;
        srv->stats.last_checkpoint_ms = ps_time_ms();
        psrv_replicator_offer(srv->replicator, srv->ckpt_job, srv->ckpt_job_id, srv->ckpt_clock);
        ps_log(srv->ckpt_final ? PS_LOG_INFO : PS_LOG_DEBUG,
               "job '%s': %s%scheckpoint at clock %lld written", srv->ckpt_job,
               srv->ckpt_final ? "final " : "", srv->ckpt_delta ? "incremental " : "",
               (long long)srv->ckpt_clock);
    }
    srv->ckpt_child = 0;
}

static int64_t next_multiple(int64_t clock, int64_t every)
{
    return (clock / every + 1) * every;
}

/* AddressSanitizer's allocator (GCC 12's libasan) takes no lock around
 * fork: a child forked while another thread is inside malloc waits for
 * that lock forever (seen: the replica threads, which allocate a file's
 * bytes right after each checkpoint, made the next writer hang, and the
 * loop with it in the blocking reap). glibc's malloc is fork-safe, so
 * only such builds with those threads running write in the loop instead
 * (the path a failed fork takes). */
static bool fork_is_safe(const ps_server_t *srv)
{
#if defined(__SANITIZE_ADDRESS__)
    return !srv->replicator && !srv->replica_store;
#else
    (void)srv;
    return true;
#endif
}

/* Writes job's checkpoint in a forked child: a copy-on-write view of memory,
 * so the loop keeps serving. One writer at a time. */
static void fork_writer(ps_server_t *srv, ps_job_t *job, bool final)
{
    psrv_snapshot_reap(srv, true);
    snprintf(srv->ckpt_job, sizeof srv->ckpt_job, "%s", ps_job_name(job));
    srv->ckpt_clock = ps_job_resume_clock(job);
    srv->ckpt_job_id = ps_job_id(job);
    srv->ckpt_final = final;
    int64_t base = next_base(srv, job, srv->ckpt_clock);
    srv->ckpt_delta = base >= 0;
    pid_t server_pid = getpid();
    pid_t pid = fork_is_safe(srv) ? fork() : -1;
    if (pid == 0) {
        /* dies with its server: a writer left behind by a kill -9 would go
         * on writing and pruning the state_dir under whatever replaces it
         * (seen: a replacement's emptied state_dir refilled). The getppid
         * test covers a server killed before the prctl. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != server_pid)
            _exit(1);
        /* the child holds copies of every descriptor, the listening socket
         * among them: closed, so a restarted server can bind its port while
         * this one still writes */
        close_range(3, ps_log_fd() > 3 ? (unsigned)ps_log_fd() - 1 : 2, 0);
        close_range((unsigned)ps_log_fd() + 1, ~0U, 0);
        ps_errbuf_t err;
        int rc = write_job(srv, job, base, &err);
        if (rc != PS_OK)
            ps_log(PS_LOG_ERROR, "shard %lld: %s", (long long)srv->cfg.shard, err.msg);
        _exit(rc == PS_OK ? 0 : 1);
    }
    if (pid < 0) {
        ps_errbuf_t err;
        int rc = write_job(srv, job, base, &err);
        if (rc != PS_OK) {
            ps_log(PS_LOG_ERROR, "shard %lld: %s", (long long)srv->cfg.shard, err.msg);
            srv->stats.checkpoints_failed++;
        } else { /* counted and replicated as a child's file is when reaped */
            srv->stats.checkpoints_written++;
            srv->stats.last_checkpoint_ms = ps_time_ms();
            psrv_replicator_offer(srv->replicator, srv->ckpt_job, srv->ckpt_job_id,
                                  srv->ckpt_clock);
        }
        clear_dirty(job);
        chain_written(job, srv->ckpt_clock, base >= 0, rc == PS_OK);
        return;
    }
    clear_dirty(job); /* the child took its copy */
    srv->ckpt_child = pid;
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
    fork_writer(srv, job, false);
}

void psrv_snapshot_final(ps_server_t *srv, ps_job_t *job)
{
    if (!*srv->cfg.state_dir || !srv->cfg.checkpoint_every)
        return;
    ps_log(PS_LOG_INFO, "job '%s': every rank done at clock %lld; writing the final checkpoint",
           ps_job_name(job), (long long)ps_job_resume_clock(job));
    fork_writer(srv, job, true);
}

int psrv_snapshot_all(ps_server_t *srv)
{
    int failed = 0;
    psrv_snapshot_reap(srv, true);
    for (size_t j = 0; *srv->cfg.state_dir && j < srv->jobs.n; j++) {
        ps_job_t *job = srv->jobs.all[j];
        ps_errbuf_t err;
        int64_t clock = ps_job_resume_clock(job);
        int rc = write_job(srv, job, -1, &err);
        clear_dirty(job);
        chain_written(job, clock, false, rc == PS_OK);
        if (rc != PS_OK) {
            ps_log(PS_LOG_ERROR, "shard %lld: %s", (long long)srv->cfg.shard, err.msg);
            failed++;
            srv->stats.checkpoints_failed++;
        } else {
            srv->stats.checkpoints_written++;
            srv->stats.last_checkpoint_ms = ps_time_ms();
            psrv_replicator_offer(srv->replicator, ps_job_name(job), ps_job_id(job), clock);
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
        if (c->table_id >= (uint64_t)srv->cfg.max_tables)
            return ps_err_set(err, PS_ERANGE, "table id %u of '%s' is above max_tables %lld",
                              c->table_id, c->name, (long long)srv->cfg.max_tables);
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

/* The deltas under checkpoint ck (0 for a full file). */
static uint32_t chain_depth(const ps_ckpt_t *ck)
{
    uint32_t n = 0;
    for (const ps_ckpt_t *c = ck; c->base; c = c->base)
        n++;
    return n;
}

/* Puts the sparse tables of checkpoint ck (with the files its rows build
 * on) into job, creating missing ones: rows, then clocks. */
static int restore_sparse(ps_server_t *srv, ps_job_t *job, const ps_ckpt_t *ck, ps_errbuf_t *err)
{
    for (uint32_t i = 0; i < ck->n_sparse; i++) {
        const ps_ckpt_sparse_t *s = &ck->sparse[i];
        /* the file is outside input: bounded as INIT_TABLE would be */
        if (s->table_id >= (uint64_t)srv->cfg.max_tables)
            return ps_err_set(err, PS_ERANGE, "sparse table id %u of '%s' is above max_tables %lld",
                              s->table_id, s->name, (long long)srv->cfg.max_tables);
        ps_job_table_t *e = ps_job_slot(job, s->table_id);
        if (!e || e->n_elems || s->world != ps_job_world(job))
            return ps_err_set(err, PS_ECONFLICT, "sparse table '%s' does not fit the job", s->name);
        if (!e->sparse) {
            ps_sparse_params_t p = {.name = s->name,
                                    .id = s->table_id,
                                    .dim = s->dim,
                                    .optim = s->optim,
                                    .seed = s->seed,
                                    .init_scale = s->init_scale,
                                    .world = ps_job_world(job),
                                    .max_staleness = ps_job_max_staleness(job)};
            if (!(e->sparse = ps_sparse_new(&p, err)))
                return err->code;
        }
        ps_sparse_layout_t l;
        ps_sparse_layout(e->sparse, &l);
        if (!ps_sparse_same_layout(e->sparse, s->name, s->dim) || l.stride != s->stride)
            return ps_err_set(err, PS_ECONFLICT, "sparse table '%s' has another layout", s->name);
        ps_sparse_clear(e->sparse);
        int rc = ps_ckpt_sparse_rows(ck, s->table_id, e->sparse, err);
        if (rc != PS_OK)
            return rc;
        int64_t *pushes = ps_xmalloc(s->world * sizeof *pushes);
        memcpy(pushes, s->pushes, s->world * sizeof *pushes);
        ps_sparse_restore_round(e->sparse, s->clock, pushes);
        free(pushes);
    }
    return PS_OK;
}

/* The job of checkpoint ck, restored; NULL with err set if it does not fit. */
static ps_job_t *restore_job(ps_server_t *srv, const ps_ckpt_t *ck, ps_errbuf_t *err)
{
    int64_t now = ps_time_ms();
    ps_job_t *job = ps_job_new(ck->job.job, ck->job.world, ck->job.max_staleness, now);
    ps_job_set_generation(job, ck->job.generation);
    ps_job_set_id(job, ck->job.id);
    ps_job_set_fingerprint(job, ck->job.fingerprint);
    for (uint32_t r = 0; ck->job.rank_state && r < ck->job.world; r++) {
        uint8_t st = ck->job.rank_state[r];
        ps_job_restore_rank(job, r, st & PS_CKPT_RANK_DONE, st & PS_CKPT_RANK_LEFT,
                            st & PS_CKPT_RANK_DEAD, now);
    }
    if (ck->job.has_scaler) {
        ps_loss_scale_t ls = {(float)ck->job.scale, ck->job.scale_window, ck->job.scale_clean,
                              ck->job.scale_skipped};
        ps_job_set_scaler(job, &ls);
    }
    if (restore_chunks(srv, job, ck, err) != PS_OK || restore_sparse(srv, job, ck, err) != PS_OK) {
        ps_job_destroy(&job);
        return NULL;
    }
    int64_t clock = ps_job_resume_clock(job);
    /* the rows now are the file's: the next checkpoint can build on it,
     * and the deltas under it count towards the next full one */
    *ps_job_ckpt_chain(job) = (ps_job_ckpt_chain_t){ck->job.clock, chain_depth(ck)};
    if (srv->cfg.checkpoint_every)
        ps_job_set_next_checkpoint(job, next_multiple(clock, srv->cfg.checkpoint_every));
    ps_log(PS_LOG_INFO,
           "job '%s': restored from checkpoint at clock %lld (%u chunks, %u sparse tables, "
           "generation %llu)",
           ps_job_name(job), (long long)clock, ck->n_chunks, ck->n_sparse,
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

int psrv_snapshot_rollback(ps_server_t *srv, ps_job_t *job, int64_t clock, uint64_t generation,
                           ps_errbuf_t *err)
{
    ps_ckpt_t ck;
    psrv_snapshot_reap(srv, true); /* the checkpoint asked for may be being written */
    if (!*srv->cfg.state_dir ||
        ps_ckpt_load(srv->cfg.state_dir, ps_job_name(job), clock, &ck, err) != PS_OK)
        return ps_err_set(err, PS_ENOCKPT, "shard %lld has no checkpoint of job '%s' at clock %lld",
                          (long long)srv->cfg.shard, ps_job_name(job), (long long)clock);
    int rc = restore_chunks(srv, job, &ck, err);
    if (rc == PS_OK)
        rc = restore_sparse(srv, job, &ck, err);
    /* a table made after clock keeps rows the file does not hold: the
     * next file holds every row */
    *ps_job_ckpt_chain(job) = (ps_job_ckpt_chain_t){-1, 0};
    if (rc == PS_OK && ck.job.has_scaler) {
        ps_loss_scale_t ls = {(float)ck.job.scale, ck.job.scale_window, ck.job.scale_clean,
                              ck.job.scale_skipped};
        ps_job_set_scaler(job, &ls);
    }
    /* A rank that said DONE after clock replays the steps after it: were
     * it left out of the barriers until its HELLO, the first worker back
     * could close the replayed rounds alone (a model with half the
     * gradients, and nothing would say so). */
    for (uint32_t r = 0; rc == PS_OK && r < ps_job_world(job); r++) {
        bool done_then =
            ck.job.rank_state && r < ck.job.world && (ck.job.rank_state[r] & PS_CKPT_RANK_DONE);
        if (!done_then)
            ps_job_reopen_rank(job, r);
    }
    ps_ckpt_free(&ck);
    if (rc != PS_OK)
        return rc;
    /* what was written after clock belongs to the history being undone */
    ps_ckpt_remove_after(srv->cfg.state_dir, ps_job_name(job), clock);
    /* ... and the holders' copies of it too, before any later file: a
     * replacement fetching them would load the undone history */
    psrv_replicator_offer_rollback(srv->replicator, ps_job_name(job), ps_job_id(job), clock,
                                   generation);
    ps_job_set_rollback_clock(job, clock);
    if (srv->cfg.checkpoint_every)
        ps_job_set_next_checkpoint(job, next_multiple(clock, srv->cfg.checkpoint_every));
    return PS_OK;
}

void psrv_snapshot_remove_job(ps_server_t *srv, const ps_job_t *job)
{
    if (!*srv->cfg.state_dir)
        return;
    psrv_snapshot_reap(srv, true);
    ps_ckpt_remove_job_id(srv->cfg.state_dir, ps_job_name(job), ps_job_id(job));
    psrv_replicator_offer_drop(srv->replicator, ps_job_name(job), ps_job_id(job));
}

int psrv_snapshot_clocks(ps_server_t *srv, const char *job, int64_t **clocks)
{
    *clocks = NULL;
    if (!*srv->cfg.state_dir)
        return 0;
    psrv_snapshot_reap(srv, true); /* a checkpoint being written counts once it is */
    return ps_ckpt_list_clocks(srv->cfg.state_dir, job, clocks);
}

void psrv_snapshot_reply_clocks(ps_server_t *srv, const ps_job_t *job, psrv_reply_t *rep)
{
    int n = psrv_snapshot_clocks(srv, ps_job_name(job), &rep->clocks);
    rep->hdr.n_checkpoints = (size_t)n;
    rep->hdr.checkpoints = rep->clocks;
}
