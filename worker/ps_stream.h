/* ps_stream.h - one worker's LIBSVM training data as a stream: the data set
 * (one file, a directory or a glob) is cut into partitions (the files, or
 * byte ranges of one file at line boundaries); a reader thread reads only
 * this worker's partitions, parses them, shuffles each in a window and
 * forms batches a few steps ahead of training, so memory does not grow with
 * the data set. The trainer thread calls every function here; the reader
 * thread is private to ps_stream.c. docs/data.md has the rules. */
#ifndef PS_STREAM_H
#define PS_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps_err.h"
#include "ps_svm.h"

/* One partition: the lines of path whose first byte lies in [start, end). */
typedef struct {
    char *path;
    uint64_t start, end; /* end UINT64_MAX: to the end of the file (gzip allowed) */
} ps_part_t;

typedef struct {
    ps_part_t *parts;
    size_t n;
} ps_partlist_t;

/* The partitions of train_data, numbered in this order:
 * - a directory: its regular files whose names do not start with '.',
 *   sorted by name, one partition each;
 * - a pattern with '*', '?' or '[': its matches (glob(3)), sorted, one each;
 * - one file: n_partitions byte ranges of equal size (0 = world), the
 *   range p being [p*S/n, (p+1)*S/n) of its S bytes; a line belongs to the
 *   range its first byte lies in. A gzip file cannot be cut (one range).
 * With several files n_partitions must be 0 or their number. Errors name
 * the path: nothing matched, a gzip file cut, a count that does not fit. */
int ps_stream_partitions(const char *train_data, uint32_t n_partitions, uint32_t world,
                         ps_partlist_t *out, ps_errbuf_t *err);
void ps_partlist_fini(ps_partlist_t *l);
/* Whether train_data names a directory or a pattern (several files). */
bool ps_stream_names_many(const char *train_data);

typedef struct {
    const char *train_data;
    int hash_bits;
    uint32_t rank, world;
    uint32_t n_partitions;   /* as ps_stream_partitions takes it */
    uint64_t batch_size;     /* samples per step of this worker, over its partitions */
    uint32_t epochs;         /* passes over each partition */
    uint64_t seed;           /* with the partition and the pass, seeds each window */
    uint32_t shuffle_window; /* samples held per partition; 1 = file order */
    uint32_t prefetch;       /* batches the reader keeps ready (>= 1) */
    int64_t wait_timeout_ms; /* ps_stream_next's deadline for one batch */
} ps_stream_opts_t;

typedef struct ps_stream ps_stream_t;

/* One batch: step `index` of this worker. Partition j of the worker (its
 * j-th in partition order) gives the next b_j samples of its current pass,
 * b_j = batch_size / k (+1 for the first batch_size % k of its k
 * partitions); a pass that ends gives a short batch and the next batch
 * starts the next pass; a partition past its last pass gives none. So a
 * partition's batches depend on the partition alone, whoever reads it. */
typedef struct {
    ps_svm_t data;           /* the samples, partition by partition in partition order */
    uint64_t index;          /* the step, from 0 */
    uint64_t samples_before; /* this worker's samples in the steps before */
    uint32_t epochs_done;    /* passes all of this worker's partitions have finished after it */
} ps_stream_batch_t;

/* A stream of this worker's partitions (partition p is rank p % world's).
 * PS_EINVAL if batch_size is below the worker's partition count; errors of
 * ps_stream_partitions. Starts no thread. */
ps_stream_t *ps_stream_new(const ps_stream_opts_t *opts, ps_errbuf_t *err);
/* Frees *s (stopping its thread) and sets it to NULL; NULL and twice are fine. */
void ps_stream_destroy(ps_stream_t **s);
/* (Re)starts the reader at batch `skip` (a running one is stopped first):
 * batches 0..skip-1 are read and dropped, so batch i is always the same
 * batch. PS_ENOMEM if the thread cannot start. */
int ps_stream_start(ps_stream_t *s, uint64_t skip, ps_errbuf_t *err);
/* The next batch into *batch (borrowed until the next call, ps_stream_start
 * or destroy): returns 1, or 0 at the end (every partition past its last
 * pass), or an error: the reader's (PS_EFORMAT "PATH:LINE: reason" or
 * "PATH: byte N: reason", PS_EIO naming the file and offset), PS_ETIME if
 * no batch came within wait_timeout_ms. After an error the stream stays
 * failed: a partition that fails mid-epoch never yields a short epoch. */
int ps_stream_next(ps_stream_t *s, const ps_stream_batch_t **batch, ps_errbuf_t *err);
/* Seconds ps_stream_next spent waiting for the reader, since the stream was made. */
double ps_stream_wait_s(const ps_stream_t *s);
/* Bytes the reader read from the data files (uncompressed for gzip) so far. */
uint64_t ps_stream_bytes_read(const ps_stream_t *s);
/* This worker's partition count. */
size_t ps_stream_n_parts(const ps_stream_t *s);

#endif
