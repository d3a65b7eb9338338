/* ps_checkpoint_int.h - what ps_checkpoint_dir.c (a job's files) takes
 * from ps_checkpoint.c (one file): the head's layout, the file writer. */
#ifndef PS_CHECKPOINT_INT_H
#define PS_CHECKPOINT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps_checkpoint.h"

#define PSCK_MAGIC "PSCKPT\0\0"
/* 2: the optimizer record holds every field (1 lacked l1, l2, ftrl_beta);
 * 3: the job record holds its id, fingerprint, ranks and fp16 scaler;
 * 4: the head holds a base clock and the sparse tables follow the chunks */
#define PSCK_FORMAT 4
/* format 4: + i64 base clock, u32 the base file's CRC, u32 0 (24 before) */
#define PSCK_HEAD_BYTES 40
#define PSCK_HEAD_BYTES_V3 24

/* The head's length in a file of that format. */
uint32_t psck_head_bytes(uint32_t format);
/* A file's head, read without the rest: its payload CRC and (format 4)
 * the clock and CRC of the file it is a delta on (base -1: none). False if
 * the file cannot be read or is not a checkpoint. */
bool psck_peek_head(const char *path, uint32_t *crc, int64_t *base, uint32_t *base_crc);
/* Writes one checkpoint file, DIR/JOB/ckpt-CLOCK.psc (temp file, fsync,
 * rename, fsync of the directory), and the job's directory into jobdir.
 * ps_ckpt_write is this, then the pruning. */
int psck_write_file(const char *dir, const ps_ckpt_job_t *job, ps_table_t *const *chunks,
                    const uint32_t *chunk_ids, uint32_t n_chunks,
                    const ps_ckpt_sparse_set_t *sparse, char *jobdir, size_t jobdir_cap,
                    ps_errbuf_t *err);

#endif
