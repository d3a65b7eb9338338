/* ps_snapshot.h - when this shard's checkpoints are written and read back:
 * every checkpoint_every clocks by a forked writer (a copy-on-write view of
 * memory, so the loop keeps serving), at shutdown and on SAVE in the loop
 * itself; every job with a checkpoint is restored at start; ROLLBACK
 * reloads one. The file format is ps_checkpoint's. Loop thread only. */
#ifndef PS_SNAPSHOT_H
#define PS_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

#include "ps_server_int.h"

/* Checkpoints job in a forked writer if its lowest chunk clock reached the
 * next multiple of checkpoint_every (no-op without state_dir). */
void psrv_snapshot_maybe(ps_server_t *srv, ps_job_t *job);
/* Checkpoints job in a forked writer now that every rank is done (no-op
 * without state_dir or checkpoint_every): a shard restarted after the last
 * step serves the final model and the done ranks, so no worker replays. */
void psrv_snapshot_final(ps_server_t *srv, ps_job_t *job);
/* Writes a checkpoint of every job now, in this thread (shutdown, SAVE).
 * Returns the number that failed (each logged). */
int psrv_snapshot_all(ps_server_t *srv);
/* Collects a finished writer (block: wait for it) and counts its result. */
void psrv_snapshot_reap(ps_server_t *srv, bool block);
/* The job named name as its newest valid checkpoint holds it (corrupt
 * files are skipped with a warning each); NULL with err set if there is
 * none, or it is another shard's, or it does not fit this shard. */
ps_job_t *psrv_snapshot_load_job(ps_server_t *srv, const char *name, ps_errbuf_t *err);
/* Puts job back to its checkpoint of exactly clock (ROLLBACK, to become
 * generation): chunks and the fp16 scaler; checkpoints newer than clock
 * are deleted, here and (queued for the replicator) on the holders, and
 * clock is the job's rollback clock. PS_ENOCKPT if this shard has none, or
 * an error with err saying why it does not fit. */
int psrv_snapshot_rollback(ps_server_t *srv, ps_job_t *job, int64_t clock, uint64_t generation,
                           ps_errbuf_t *err);
/* Deletes the checkpoints of a job that ended (its id's; no-op without
 * state_dir). */
void psrv_snapshot_remove_job(ps_server_t *srv, const ps_job_t *job);
/* The clocks of the checkpoints this shard holds for job (ascending, a new
 * array the caller frees; NULL and 0 without state_dir). */
int psrv_snapshot_clocks(ps_server_t *srv, const char *job, int64_t **clocks);
/* Puts those clocks in rep's `checkpoints` (storage rep->clocks, freed
 * once sent): HELLO and ROLLBACK replies both carry them, so a worker
 * choosing where to resume (a pipeline's stages) knows what each shard
 * holds after a rollback as well as after a HELLO. */
void psrv_snapshot_reply_clocks(ps_server_t *srv, const ps_job_t *job, psrv_reply_t *rep);

#endif
