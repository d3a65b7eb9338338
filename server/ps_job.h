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
    int64_t last_seen_ms;          /* last request, or the job's creation */
    char peer[48];                 /* address of its last HELLO */
    double samples, samples_per_s; /* from heartbeats */
    double loss;
    int64_t samples_at_ms;
} ps_rank_t;

/* New job of world ranks under max_staleness; its ranks count as seen at
 * now_ms. name is copied (callers checked its length). */
ps_job_t *ps_job_new(const char *name, uint32_t world, int max_staleness, int64_t now_ms);
/* Frees the job, its tables and its parked pulls; NULL-safe, sets *job NULL. */
void ps_job_destroy(ps_job_t **job);

const char *ps_job_name(const ps_job_t *job);
uint32_t ps_job_world(const ps_job_t *job);
int ps_job_max_staleness(const ps_job_t *job);
/* Bumped by every ROLLBACK; requests of another generation are stale. */
uint64_t ps_job_generation(const ps_job_t *job);
void ps_job_set_generation(ps_job_t *job, uint64_t generation);

/* ---- ranks ---- */

/* rank (< world) joins or rejoins from peer: a rank that was done or dead
 * counts in the barriers again. True if it had joined before. */
bool ps_job_join(ps_job_t *job, uint32_t rank, const char *peer, int64_t now_ms);
/* A request of rank arrived. */
void ps_job_seen(ps_job_t *job, uint32_t rank, int64_t now_ms);
/* A heartbeat of a rank not declared dead: it is seen, and its progress
 * (samples trained so far, latest loss) is kept for the stats. */
void ps_job_heartbeat(ps_job_t *job, uint32_t rank, double samples, double loss, int64_t now_ms);
/* rank said DONE (bye false) or BYE (bye true): it leaves the barriers. */
void ps_job_finish_rank(ps_job_t *job, uint32_t rank, bool bye);
/* Called for each rank the sweep declares dead, with how long it was silent. */
typedef void (*ps_job_dead_fn)(void *ctx, const ps_job_t *job, uint32_t rank, int64_t silent_ms);
/* Declares dead every rank that is neither done nor dead and was silent
 * for more than timeout_ms (on_dead, if not NULL, hears of each); returns
 * how many. They leave the barriers (run ps_job_recheck next); their
 * later requests are refused until they HELLO again. */
uint32_t ps_job_sweep(ps_job_t *job, int64_t now_ms, int64_t timeout_ms, ps_job_dead_fn on_dead,
                      void *ctx);
const ps_rank_t *ps_job_rank(const ps_job_t *job, uint32_t rank);
/* "live", "waiting" (not joined yet), "done", "left" or "dead". */
const char *ps_job_rank_state(const ps_job_t *job, uint32_t rank);
/* Per rank: 1 while it counts in the barriers (world entries). */
const uint8_t *ps_job_live(const ps_job_t *job);
/* Every rank said DONE or was declared dead. */
bool ps_job_all_done(const ps_job_t *job);
/* Every rank said BYE or was declared dead. */
bool ps_job_all_gone(const ps_job_t *job);
/* Ranks that joined and have neither left nor died. */
uint32_t ps_job_alive(const ps_job_t *job);

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
/* The sparse table table_id, or NULL. */
ps_sparse_t *ps_job_sparse(const ps_job_t *job, uint32_t table_id);
/* Every chunk this shard holds, in table then chunk order, into a new
 * array (caller frees) and their chunk indexes into *chunk_ids (likewise).
 * Returns the count. */
uint32_t ps_job_chunks(const ps_job_t *job, ps_table_t ***chunks, uint32_t **chunk_ids);

/* ---- clocks and consistency ---- */

/* The clock a (re)joining worker resumes at: the oldest any chunk on this
 * shard still waits for (0 for a job without tables). */
int64_t ps_job_resume_clock(const ps_job_t *job);
/* The newest chunk clock (0 without tables). */
int64_t ps_job_max_clock(const ps_job_t *job);
/* Rank's pushes as this shard sees them: the lowest over its chunks. */
int64_t ps_job_rank_clock(const ps_job_t *job, uint32_t rank);
/* Completes every BSP round the live ranks allow (after a rank left the
 * barriers). True if any did. */
bool ps_job_recheck(ps_job_t *job);
/* May this parked pull be answered now (its table's consistency and, with
 * PS_FLAG_AFTER_ALL_DONE, every rank done)? */
bool ps_job_pull_ready(const ps_job_t *job, const ps_pull_t *pull);
/* The job's parked pulls. */
ps_pending_t *ps_job_pending(ps_job_t *job);

/* ---- housekeeping the server keeps per job ---- */

/* The clock at which the next periodic checkpoint is due. */
int64_t ps_job_next_checkpoint(const ps_job_t *job);
void ps_job_set_next_checkpoint(ps_job_t *job, int64_t clock);
/* True once per clock: the first skip of each clock is logged, not every
 * rank's. */
bool ps_job_first_skip(ps_job_t *job, int64_t clock);

#endif
