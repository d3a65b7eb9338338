/* ps_checkpoint.h - checkpoint files of one job on one shard: every chunk
 * of every table this shard holds, with optimizer state and clocks.
 * Written by a forked child (copy-on-write snapshot of the loop's memory)
 * or, at shutdown, by the loop itself; read at startup and on ROLLBACK.
 *
 * File: DIR/JOB/ckpt-CLOCK.psc (CLOCK zero-padded), little-endian:
 *   "PSCKPT\0\0" | u32 format (4) | u32 crc32(payload) | u64 payload bytes |
 *   (format 4:) i64 base clock | u32 base CRC | u32 0 | payload
 * The base clock is -1 for a self-contained file, else the clock of the
 * checkpoint its sparse tables' rows are a delta on (rows made or updated
 * since then; that file may itself be a delta, up to a full one), which
 * must still hold the payload CRC named here. Format 4
 * adds the sparse tables after the chunks: layout, clocks and rows (key,
 * then value and optimizer state).
 * The payload lists the job (name, world, staleness, generation, shard,
 * clock; from format 3 its id, fingerprint, each rank's membership and the
 * fp16 loss scaler) and each chunk (table id, chunk, name, shape,
 * optimizer spec, slice, clocks, parameters and state). A file whose length
 * or checksum is wrong is skipped with a warning naming it. Formats 1 and 2
 * are still read. Written through ps_file (an O_EXCL temp file beside the
 * target, fsync, rename, directory fsync). */
#ifndef PS_CHECKPOINT_H
#define PS_CHECKPOINT_H

#include <stdbool.h>
#include <stdint.h>

#include "ps_err.h"
#include "ps_optim_spec.h"
#include "ps_sparse.h"
#include "ps_table.h"

/* A rank's membership as a checkpoint keeps it. */
#define PS_CKPT_RANK_DONE 0x1u
#define PS_CKPT_RANK_LEFT 0x2u
#define PS_CKPT_RANK_DEAD 0x4u

typedef struct {
    char job[64];
    uint32_t world;
    int max_staleness;
    uint64_t generation; /* bumped by every ROLLBACK */
    uint32_t shard, n_shards;
    int64_t clock;             /* the lowest chunk clock: what the file is named by */
    uint64_t id;               /* the job's id (0 in files of format 1 and 2) */
    const char *fingerprint;   /* "" if none; read: owned by the ps_ckpt_t */
    const uint8_t *rank_state; /* world PS_CKPT_RANK_* flags, or NULL: all live */
    bool has_scaler;
    double scale;
    int64_t scale_window, scale_clean;
    uint64_t scale_skipped;
} ps_ckpt_job_t;

/* One chunk as read from a file (arrays owned by the ps_ckpt_t). */
typedef struct {
    uint32_t table_id, chunk;
    char name[64];
    uint64_t n_total, shape[PS_TABLE_MAX_DIMS];
    int ndim;
    ps_optim_spec_t optim;
    uint64_t offset;
    ps_table_state_t state;
} ps_ckpt_chunk_t;

/* One sparse table as read from a file (pointers into the ps_ckpt_t). */
typedef struct {
    uint32_t table_id, dim, stride, world;
    char name[64];
    ps_optim_spec_t optim;
    uint64_t seed;
    double init_scale;
    int64_t clock;
    const int64_t *pushes; /* world entries, unaligned */
    uint8_t delta;         /* rows made or updated since the base only */
    uint64_t n_rows;       /* rows in this record */
    const char *rows;      /* n_rows x (u64 key, stride floats), unaligned */
} ps_ckpt_sparse_t;

typedef struct ps_ckpt {
    ps_ckpt_job_t job;
    ps_ckpt_chunk_t *chunks;
    uint32_t n_chunks;
    ps_ckpt_sparse_t *sparse;
    uint32_t n_sparse;
    int64_t base_clock;   /* -1: self-contained */
    uint32_t crc;         /* this file's payload CRC */
    uint32_t base_crc;    /* the base file's payload CRC, as this file names it */
    struct ps_ckpt *base; /* ps_ckpt_load: the file it is a delta on (recursively) */
    void *buf;            /* the file's payload; the records point into it */
    char *fingerprint;    /* job.fingerprint's storage */
} ps_ckpt_t;

/* What a checkpoint writes of the sparse tables: all rows, or (base_clock
 * >= 0) only those made or updated since the checkpoint of base_clock. */
typedef struct {
    ps_sparse_t *const *tables;
    uint32_t n;
    int64_t base_clock;
} ps_ckpt_sparse_set_t;

/* Writes a checkpoint of the given chunks and sparse tables (sparse may be
 * NULL) to DIR/JOB/ckpt-CLOCK.psc: temp file, fsync, rename, fsync of the
 * directory; then deletes all but the newest `keep` checkpoints of the job
 * and the files they are deltas on. PS_EIO with err naming the file. */
int ps_ckpt_write(const char *dir, const ps_ckpt_job_t *job, ps_table_t *const *chunks,
                  const uint32_t *chunk_ids, uint32_t n_chunks, const ps_ckpt_sparse_set_t *sparse,
                  int keep, ps_errbuf_t *err);
/* Reads one file. PS_EIO / PS_EFORMAT (bad magic, length, checksum) with
 * err naming it. */
int ps_ckpt_read(const char *path, ps_ckpt_t *out, ps_errbuf_t *err);
/* Frees what ps_ckpt_read allocated; safe twice. */
void ps_ckpt_free(ps_ckpt_t *c);
/* Loads the newest valid checkpoint of job dir DIR/JOB (clock == -1) or the
 * one with exactly that clock, with the files it is a delta on (out->base,
 * recursively), skipping corrupt ones, or ones whose base is missing or
 * corrupt, with a warning each. PS_ENOJOB if there is none. */
int ps_ckpt_load(const char *dir, const char *job, int64_t clock, ps_ckpt_t *out, ps_errbuf_t *err);
/* Puts the rows of sparse table table_id from ck and the files it is a
 * delta on into t (made if new, else overwritten), oldest file first, so
 * the newest row wins; t's rows are marked clean. PS_ECONFLICT if a file
 * stores rows of another width than t, PS_ERANGE past t's row limit. */
int ps_ckpt_sparse_rows(const ps_ckpt_t *ck, uint32_t table_id, ps_sparse_t *t, ps_errbuf_t *err);
/* Deletes every checkpoint of job, and its directory. */
void ps_ckpt_remove_job(const char *dir, const char *job);
/* Deletes the checkpoints of job whose id is id (0: any id), and the
 * directory if nothing else is left in it: a job that ended never removes
 * the files of another job of the same name. */
void ps_ckpt_remove_job_id(const char *dir, const char *job, uint64_t id);
/* Deletes the checkpoints of job newer than clock (after a rollback to it:
 * they belong to a history that was undone). */
void ps_ckpt_remove_after(const char *dir, const char *job, int64_t clock);
/* The clocks of job's checkpoint files, ascending, into a new array (the
 * caller frees); returns the count. Files are not validated. */
int ps_ckpt_list_clocks(const char *dir, const char *job, int64_t **clocks);
/* Names of the job directories under dir (for startup); caller frees each
 * and the array. Returns the count (0 if none or unreadable). */
int ps_ckpt_list_jobs(const char *dir, char ***names);

/* ---- whole files, for replication (server/ps_replica.c) ---- */

/* The head of DIR/JOB/ckpt-CLOCK.psc without the rest: its payload CRC and
 * the clock and CRC of the file its sparse rows are a delta on (base -1:
 * self-contained). False if it cannot be read or is not a checkpoint. */
bool ps_ckpt_file_head(const char *dir, const char *job, int64_t clock, uint32_t *crc,
                       int64_t *base_clock, uint32_t *base_crc);
/* The job id and generation in DIR/JOB/ckpt-CLOCK.psc's job record and
 * the file's size, without reading the rest (id 0 before format 3). False
 * if there is no such file. */
bool ps_ckpt_file_ident(const char *dir, const char *job, int64_t clock, uint64_t *id,
                        uint64_t *generation, uint64_t *bytes);
/* Stores a checkpoint file received whole (a replica, or one fetched back)
 * as DIR/JOB/ckpt-CLOCK.psc, making DIR and DIR/JOB if needed: written
 * beside it, read back through ps_ckpt_read (magic, length, payload CRC,
 * records) and refused unless it holds that job, clock and shard; then
 * renamed into place, the files after clock deleted (a file at clock
 * starts history over: a rollback undid the rest) and all but the newest
 * keep pruned, chains kept whole. PS_EIO (err names the file and cause, a
 * full disk among them), PS_EFORMAT (what is wrong with the bytes) or
 * PS_ENOCKPT (a delta whose base file, with the payload CRC the delta
 * names, is not in DIR/JOB: nothing is stored; send the chain from its
 * full file). */
int ps_ckpt_store_file(const char *dir, const char *job, int64_t clock, uint32_t shard,
                       const void *bytes, size_t len, int keep, ps_errbuf_t *err);
/* The bytes of DIR/JOB/ckpt-CLOCK.psc, once ps_ckpt_read found it sound,
 * into a new buffer (*bytes, the caller frees) of *len bytes. PS_EIO,
 * PS_EFORMAT (corrupt: err says how) or PS_ENOMEM. */
int ps_ckpt_read_file(const char *dir, const char *job, int64_t clock, void **bytes, size_t *len,
                      ps_errbuf_t *err);

#endif
