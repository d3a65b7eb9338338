/* ps_job.h - ONE job as one shard sees it: its ranks (who joined, who is
 * live, done, gone or dead, and what their heartbeats said), the chunks of
 * its tables that live on this shard, its clocks and generation, and the
 * pulls parked until its consistency model allows them. No sockets: the
 * server's handlers drive it, and unit tests drive it directly. Server
 * loop thread only.
 *
 * A rank counts in every barrier (it is "live") from the job's creation
 * until it says DONE or BYE or is declared dead; a rank that never showed
 * up times out like a silent one. */
#ifndef PS_JOB_H
#define PS_JOB_H

#include <stdbool.h>
#include <stdint.h>

#include "ps_loss_scale.h"
#include "ps_pending.h"
#include "ps_sparse.h"
#include "ps_table.h"

#define PS_JOB_NAME_MAX 64

typedef struct ps_job ps_job_t;

/* A table of the job: the chunks of a dense table that live on this shard
 * (the others NULL), or this shard's part of a sparse table. */
typedef struct {
    uint64_t n_elems; /* dense: elements of the whole table; 0 = not dense */
    uint32_t n_chunks;
    ps_table_t **chunks; /* n_chunks entries */
    ps_sparse_t *sparse;
} ps_job_table_t;

/* What the shard knows of one rank. */
typedef struct {
    bool joined, done, left, dead;
    uint64_t owner;                /* the worker_incarnation of the process that holds it */
    int64_t last_seen_ms;          /* last request, or the job's creation */
    int64_t dead_since_ms;         /* when it was declared dead */
    char peer[48];                 /* address of its last HELLO */
    double samples, samples_per_s; /* from heartbeats */
    double loss;
    int64_t samples_at_ms;
    uint32_t world_rank, stage, n_stages; /* a pipeline stage's place (n_stages > 1) */
} ps_rank_t;

/* New job of world ranks under max_staleness; its ranks count as seen at
 * now_ms. name is copied (callers checked it: ps_name_check_job). */
ps_job_t *ps_job_new(const char *name, uint32_t world, int max_staleness, int64_t now_ms);

/* ---- identity ---- */

/* The job's id (minted when the job was created on shard 0; 0 = none yet)
 * and its fingerprint ("key=value" lines of the options that define it). */
uint64_t ps_job_id(const ps_job_t *job);
void ps_job_set_id(ps_job_t *job, uint64_t id);
const char *ps_job_fingerprint(const ps_job_t *job);
void ps_job_set_fingerprint(ps_job_t *job, const char *fingerprint);
/* Compares a worker's fingerprint with the job's: true if they agree, else
 * false with why = "option 'lr' is '0.5' in this job, '0.02' in the
 * worker" (the first line that differs, or one only one side has). A job
 * or worker without a fingerprint agrees with anything. */
bool ps_job_same_config(const ps_job_t *job, const char *fingerprint, char *why, size_t cap);
/* Frees the job, its tables and its parked pulls; NULL-safe, sets *job NULL. */
void ps_job_destroy(ps_job_t **job);

const char *ps_job_name(const ps_job_t *job);
uint32_t ps_job_world(const ps_job_t *job);
int ps_job_max_staleness(const ps_job_t *job);
/* Bumped by every ROLLBACK; requests of another generation are stale. */
uint64_t ps_job_generation(const ps_job_t *job);
void ps_job_set_generation(ps_job_t *job, uint64_t generation);

/* ---- ranks ---- */

/* The process owner (a worker_incarnation; 0 = a client that sends none)
 * claims rank (< world) from peer: granted if the rank is free, already
 * its own, or held by a process declared dead (a restarted worker takes
 * over); a rank that was done or dead counts in the barriers again.
 * PS_OK and *rejoin (it had joined before), or PS_EAGAIN with why naming
 * the live process that holds it. */
int ps_job_claim(ps_job_t *job, uint32_t rank, uint64_t owner, const char *peer, int64_t now_ms,
                 bool *rejoin, char *why, size_t cap);
/* Does the process owner hold rank? (A request of another process gets
 * EDEAD: it was replaced.) Owner 0 matches any. */
bool ps_job_owns(const ps_job_t *job, uint32_t rank, uint64_t owner);
/* A request of rank arrived. */
void ps_job_seen(ps_job_t *job, uint32_t rank, int64_t now_ms);
/* A heartbeat of a rank not declared dead: it is seen, and its progress
 * (samples trained so far, latest loss) is kept for the stats. */
void ps_job_heartbeat(ps_job_t *job, uint32_t rank, double samples, double loss, int64_t now_ms);
/* rank said DONE (bye false) or BYE (bye true): it leaves the barriers. */
void ps_job_finish_rank(ps_job_t *job, uint32_t rank, bool bye);
/* Called for each rank the sweep declares dead, with how long it was silent. */
typedef void (*ps_job_dead_fn)(void *ctx, const ps_job_t *job, uint32_t rank, int64_t silent_ms);
/* Declares dead every rank that joined, has not left, is not dead yet and
 * was silent for more than timeout_ms (on_dead, if not NULL, hears of each;
 * a done rank too: it heartbeats until BYE, and one killed after DONE must
 * be replaceable; it is in no barrier and never a world problem);
 * returns how many. Their later requests are refused until they HELLO
 * again. Under SSP/ASP they leave the barriers (run ps_job_recheck next);
 * under BSP they stay in them: the round waits for the rank to come back,
 * so the model stays the one an uninterrupted run makes, until
 * ps_job_world_problem says the wait is over. A rank that never joined is
 * not declared dead: the world is still assembling. */
uint32_t ps_job_sweep(ps_job_t *job, int64_t now_ms, int64_t timeout_ms, ps_job_dead_fn on_dead,
                      void *ctx);
const ps_rank_t *ps_job_rank(const ps_job_t *job, uint32_t rank);
/* The pipeline place a rank's HELLO gave (n_stages <= 1: not a stage; the
 * others are then ignored), for `show workers`. */
void ps_job_set_rank_stage(ps_job_t *job, uint32_t rank, uint32_t world_rank, uint32_t stage,
                           uint32_t n_stages);
/* "live", "waiting" (not joined yet), "done", "left" or "dead". */
const char *ps_job_rank_state(const ps_job_t *job, uint32_t rank);
/* Per rank: 1 while it counts in the barriers (world entries). */
const uint8_t *ps_job_live(const ps_job_t *job);
/* Every rank said DONE or was declared dead. */
bool ps_job_all_done(const ps_job_t *job);
/* Every rank said BYE: the job's end (silence never is). */
bool ps_job_all_left(const ps_job_t *job);
/* Ranks that joined and have neither left nor died. */
uint32_t ps_job_alive(const ps_job_t *job);
/* Every rank silent as of now is treated as seen now (the server itself
 * did not run: stopped, or the host stalled), so no rank is declared dead
 * for a silence the server could not hear. */
void ps_job_forgive_silence(ps_job_t *job, int64_t now_ms);
/* BSP: why the job cannot go on (into why, returning it), or NULL: a rank
 * dead for more than lost_ms, or one that never joined within assemble_ms
 * of the job's creation. SSP/ASP go on without lost ranks: always NULL. */
const char *ps_job_world_problem(const ps_job_t *job, int64_t now_ms, int64_t lost_ms,
                                 int64_t assemble_ms, char *why, size_t cap);
/* A ROLLBACK to a clock before rank said DONE: rank is back in the
 * barriers (not done), to replay the steps after that clock; until it
 * HELLOs again and pushes, the rounds wait for it. A rank that said BYE
 * stays gone; one declared dead keeps that state (the claim of its
 * restarted worker clears it). */
void ps_job_reopen_rank(ps_job_t *job, uint32_t rank);
/* BSP, a rank that rejoins (HELLO again: it forgot its requests and
 * replays from the job's clock): drops what it pushed into the rounds in
 * progress, so each waits for its replayed push. Kept, that push would
 * let a round complete before the replay, whose pull then reads the
 * newer parameters (a shard restart left the shards at one clock, and a
 * model no uninterrupted run makes). Returns how many tables it touched. */
uint32_t ps_job_forget_rank_pushes(ps_job_t *job, uint32_t rank);
/* Puts rank's membership back as a checkpoint saved it (done, left, dead). */
void ps_job_restore_rank(ps_job_t *job, uint32_t rank, bool done, bool left, bool dead,
                         int64_t now_ms);

/* ---- tables ---- */

uint32_t ps_job_n_tables(const ps_job_t *job);
/* The entry of table_id (NULL if beyond the ones made so far). */
const ps_job_table_t *ps_job_table(const ps_job_t *job, uint32_t table_id);
/* The entry of table_id, made (empty) if new. */
ps_job_table_t *ps_job_slot(ps_job_t *job, uint32_t table_id);
/* The entry of dense table table_id with room for n_chunks chunks, made if
 * new; NULL if the id holds a sparse table or a dense one of another size. */
ps_job_table_t *ps_job_dense(ps_job_t *job, uint32_t table_id, uint64_t n_elems, uint32_t n_chunks);
/* This shard's chunk of a dense table, or NULL. */
ps_table_t *ps_job_chunk(const ps_job_t *job, uint32_t table_id, uint32_t chunk);
/* Bytes this shard holds for the job's tables (dense chunks and sparse
 * rows with their optimizer state). */
size_t ps_job_bytes(const ps_job_t *job);
/* Who created the job (a CURVE key or an address: ps_job_set_creator), for
 * the per-client job limit; "" if unknown. */
const char *ps_job_creator(const ps_job_t *job);
void ps_job_set_creator(ps_job_t *job, const char *who);
/* The sparse table table_id, or NULL. */
ps_sparse_t *ps_job_sparse(const ps_job_t *job, uint32_t table_id);
/* Every chunk this shard holds, in table then chunk order, into a new
 * array (caller frees) and their chunk indexes into *chunk_ids (likewise).
 * Returns the count. */
uint32_t ps_job_chunks(const ps_job_t *job, ps_table_t ***chunks, uint32_t **chunk_ids);
/* Every sparse table of the job, in table id order, into a new array
 * (caller frees). Returns the count. */
uint32_t ps_job_sparse_tables(const ps_job_t *job, ps_sparse_t ***tables);

/* ---- clocks and consistency ---- */

/* The job's clock on this shard: the oldest any chunk still waits for (0
 * for a job without tables); under SSP/ASP over the ranks still in the
 * barriers, so a lost worker does not freeze it (checkpoints are named by
 * it). */
int64_t ps_job_resume_clock(const ps_job_t *job);
/* The newest chunk clock (0 without tables). */
int64_t ps_job_max_clock(const ps_job_t *job);
/* Rank's pushes as this shard sees them: the lowest over its chunks. */
int64_t ps_job_rank_clock(const ps_job_t *job, uint32_t rank);
/* Completes every BSP round the live ranks allow (after a rank left the
 * barriers). True if any did. */
bool ps_job_recheck(ps_job_t *job);
/* Completes chunk t's BSP round if every live rank pushed it (as
 * ps_table_try_complete), advancing the job's loss scaler once per round
 * (on the first chunk this shard holds). True if it completed. */
bool ps_job_complete_chunk(ps_job_t *job, ps_table_t *t);
/* The clock a worker of rank resumes at when it (re)joins: BSP, the
 * oldest round any chunk waits for; SSP/ASP, the rank's own position. */
int64_t ps_job_rank_resume_clock(const ps_job_t *job, uint32_t rank);
/* May this parked pull be answered now (its table's consistency and, with
 * PS_FLAG_AFTER_ALL_DONE, every rank done)? */
bool ps_job_pull_ready(const ps_job_t *job, const ps_pull_t *pull);
/* The job's parked pulls. */
ps_pending_t *ps_job_pending(ps_job_t *job);

/* ---- housekeeping the server keeps per job ---- */

/* The clock at which the next periodic checkpoint is due. */
int64_t ps_job_next_checkpoint(const ps_job_t *job);
void ps_job_set_next_checkpoint(ps_job_t *job, int64_t clock);
/* What the next checkpoint of the job's sparse rows can build on: the
 * clock of the last one written (-1: the next must be full, as at the
 * start, after a restore elsewhere or a failed write) and how many deltas
 * were written since the last full one. */
typedef struct {
    int64_t base;
    uint32_t deltas;
} ps_job_ckpt_chain_t;
ps_job_ckpt_chain_t *ps_job_ckpt_chain(ps_job_t *job);
/* True once per clock: the first skip of each clock is logged, not every
 * rank's. */
bool ps_job_first_skip(ps_job_t *job, int64_t clock);
/* fp16 jobs: the shard's replica of the workers' loss scaler (NULL if the
 * job has none), set up from the HELLO that created the job. */
const ps_loss_scale_t *ps_job_scaler(const ps_job_t *job);
/* Sets it (at creation, or from a checkpoint: its state at the clock of
 * the job's first chunk), or clears it (NULL). */
void ps_job_set_scaler(ps_job_t *job, const ps_loss_scale_t *scaler);
/* Its state at clock (the latest if clock is older than the history kept);
 * NULL if the job has none. */
const ps_loss_scale_t *ps_job_scaler_at(const ps_job_t *job, int64_t clock);
/* The clock the current generation rolled back to (-1: none). */
int64_t ps_job_rollback_clock(const ps_job_t *job);
void ps_job_set_rollback_clock(ps_job_t *job, int64_t clock);
/* When the job was created here, and when a rank was last alive in it. */
int64_t ps_job_created_ms(const ps_job_t *job);
int64_t ps_job_last_alive_ms(const ps_job_t *job);

#endif
