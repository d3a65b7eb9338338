/* ps_checkpoint_int.h - what ps_checkpoint.c (one file) and
 * ps_checkpoint_dir.c (a job's files) share: the head's layout. */
#ifndef PS_CHECKPOINT_INT_H
#define PS_CHECKPOINT_INT_H

#include <stdint.h>

#define PSCK_MAGIC "PSCKPT\0\0"
/* 2: the optimizer record holds every field (1 lacked l1, l2, ftrl_beta);
 * 3: the job record holds its id, fingerprint, ranks and fp16 scaler;
 * 4: the head holds a base clock and the sparse tables follow the chunks */
#define PSCK_FORMAT 4
#define PSCK_HEAD_BYTES 32 /* format 4; 24 before (no base clock) */
#define PSCK_HEAD_BYTES_V3 24

/* The head's length in a file of that format. */
uint32_t psck_head_bytes(uint32_t format);
/* Deletes all but the newest keep checkpoints in jobdir and the files
 * they are deltas on. */
void psck_prune(const char *jobdir, int keep);

#endif
