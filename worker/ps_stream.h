/* ps_stream.h - one worker's training data as a stream: the data set (one
 * file, a directory or a glob) is cut into partitions (the files, or ranges
 * of one file: byte ranges at line boundaries for text, record ranges for
 * IDX and ps-convert's records); a reader thread reads only this worker's
 * partitions, parses them, shuffles each in a window and forms batches a
 * few steps ahead of training, so memory does not grow with the data set.
 * Formats: LIBSVM (sparse batches), CSV and IDX (dense batches), records
 * (ps_recfile.h: dense or sparse, as the files say), a byte-level text
 * corpus (dense: windows of bytes, tokens for a language model). The trainer thread
 * calls every function here; the reader thread is private to ps_stream.c.
 * docs/data.md has the rules. */
#ifndef PS_STREAM_H
#define PS_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps_err.h"
#include "ps_svm.h"

typedef enum {
    PS_STREAM_LIBSVM = 0, /* text lines, sparse samples */
    PS_STREAM_CSV,        /* text lines, dense samples */
    PS_STREAM_IDX,        /* an IDX images file and its labels file, dense (bytes) */
    PS_STREAM_RECORDS,    /* ps-convert record files, dense or sparse */
    PS_STREAM_TEXT,       /* a byte corpus (ps_text.h's files), windows of bytes */
} ps_stream_format_t;

/* One partition. Text: the lines of path whose first byte lies in [start,
 * end) (count UINT64_MAX). Records and IDX: count records from record
 * first, the first at byte start of path (and, IDX, its label at byte
 * labels_start of labels). A text corpus: count windows, window first of
 * path (numbered from the file's start) at byte start, the last one
 * ending at byte end. */
typedef struct {
    char *path;
    uint64_t start, end; /* end UINT64_MAX: to the end of the file (gzip allowed) */
    char *labels;        /* IDX: the label file; NULL otherwise */
    uint64_t labels_start;
    uint64_t first, count;
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
 * the path: nothing matched, a gzip file cut, a count that does not fit.
 * (These are the text formats' partitions; ps_stream_new cuts IDX and
 * records files into record ranges instead.) */
int ps_stream_partitions(const char *train_data, uint32_t n_partitions, uint32_t world,
                         ps_partlist_t *out, ps_errbuf_t *err);
void ps_partlist_fini(ps_partlist_t *l);
/* Whether train_data names a directory or a pattern (several files). */
bool ps_stream_names_many(const char *train_data);

typedef struct {
    const char *train_data;
    int format;               /* ps_stream_format_t */
    const char *train_labels; /* IDX: the label file */
    int label_column;         /* CSV: the label's column; negative counts from the end */
    uint32_t n_classes;       /* dense: 0 = as the data says (records header, IDX labels) */
    int hash_bits;
    uint32_t rank, world;
    uint32_t n_partitions;   /* as ps_stream_partitions takes it */
    uint64_t batch_size;     /* samples per step of this worker, over its partitions */
    uint32_t epochs;         /* passes over each partition */
    uint64_t seed;           /* with the partition and the pass, seeds each window */
    uint32_t shuffle_window; /* samples held per partition; 1 = file order */
    uint32_t prefetch;       /* batches the reader keeps ready (>= 1) */
    int64_t wait_timeout_ms; /* ps_stream_next's deadline for one batch */
    size_t block_size;       /* text corpus: a window is block_size + 1 bytes */
    size_t text_stride;      /* text corpus: a window starts every N bytes; 0 = block_size */
} ps_stream_opts_t;

typedef struct ps_stream ps_stream_t;

/* One batch: step `index` of this worker. Partition j of the worker (its
 * j-th in partition order) gives the next b_j samples of its current pass,
 * b_j = batch_size / k (+1 for the first batch_size % k of its k
 * partitions); a pass that ends gives a short batch and the next batch
 * starts the next pass; a partition past its last pass gives none. So a
 * partition's batches depend on the partition alone, whoever reads it. */
typedef struct {
    ps_svm_t data; /* sparse: the samples, partition by partition in partition order */
    struct {
        size_t n;
        float *x;            /* n x row_len features, as floats (IDX and records bytes
                                become byte / 255; a text window's bytes stay 0..255) */
        float *y;            /* n labels */
        uint64_t *place;     /* sample i: its partition << 32 | its place in that one's share */
    } dense;                 /* dense formats: the samples, in the same order */
    uint64_t index;          /* the step, from 0 */
    uint64_t samples_before; /* this worker's samples in the steps before */
    uint32_t epochs_before;  /* passes all of this worker's partitions had finished before it */
    uint32_t epochs_done;    /* ... and after it: an epoch ends with it if this is larger */
} ps_stream_batch_t;

/* A stream of this worker's partitions (partition p is rank p % world's).
 * PS_EINVAL if batch_size is below the worker's partition count; errors of
 * ps_stream_partitions; for CSV, IDX and records the shape of the data is
 * read here (the first line of partition 0, the IDX headers and labels, the
 * records' headers, which must agree), errors naming the file. IDX is one
 * images file: it cannot name several.
 * A text corpus (block_size >= 1): a directory's files are ps_text_dir_files
 * (as ps_text_open reads them), a pattern's its matches, one file n_partitions
 * byte ranges as above (a gzip file is bytes too, as ps_text reads it);
 * a window of block_size + 1 bytes starts at every multiple of the stride
 * of its file and belongs to the partition its first byte lies in (it may
 * read past a range's end, never past its file's); its label is 0. The
 * windows are counted from the files' sizes here: PS_EFORMAT naming the
 * data if there is none. Starts no thread. */
ps_stream_t *ps_stream_new(const ps_stream_opts_t *opts, ps_errbuf_t *err);
/* Whether the batches are sparse (data) or dense (dense). */
bool ps_stream_is_sparse(const ps_stream_t *s);
/* Dense: features per sample. */
size_t ps_stream_row_len(const ps_stream_t *s);
/* Dense: opts' n_classes, or 1 + the largest label if all the data's labels
 * are whole numbers (a records header, a scan of the IDX label file: every
 * worker reads that file once), else 0 (CSV without n_classes). */
uint32_t ps_stream_n_classes(const ps_stream_t *s);
/* Samples in the whole data set, or 0 if unknown (LIBSVM, CSV). */
uint64_t ps_stream_n_samples(const ps_stream_t *s);
/* With the sizes known (IDX, records, a text corpus): the steps of the job (every rank's
 * partitions, each read by its rank with its share of the batch; the
 * longest wins) and of one pass of the longest partition. 0 if unknown. */
uint64_t ps_stream_job_steps(const ps_stream_t *s);
uint64_t ps_stream_steps_per_pass(const ps_stream_t *s);
/* Dense, before ps_stream_start: labels must be whole numbers below limit
 * (a classifier's class count); 0 = any finite value. A label that is not
 * fails the stream, naming its file and line or record. */
void ps_stream_set_label_limit(ps_stream_t *s, uint32_t limit);
/* A text corpus, before ps_stream_start: every byte of a window must be
 * below limit (the model's vocabulary; 0 or 256 = any). One that is not
 * fails the stream, naming its file and byte offset. */
void ps_stream_set_token_limit(ps_stream_t *s, uint32_t limit);
/* Frees *s (stopping its thread) and sets it to NULL; NULL and twice are fine. */
void ps_stream_destroy(ps_stream_t **s);
/* (Re)starts the reader at batch `skip` (a running one is stopped first):
 * batches 0..skip-1 are read and dropped, so batch i is always the same
 * batch. PS_ENOMEM if the thread cannot start. */
int ps_stream_start(ps_stream_t *s, uint64_t skip, ps_errbuf_t *err);
/* The next batch into *batch (borrowed until the next call, ps_stream_start
 * or destroy): returns 1, or 0 at the end (every partition past its last
 * pass), or an error: the reader's (PS_EFORMAT "PATH:LINE: reason",
 * "PATH: byte N: reason" "PATH: record R (byte N): reason" or, a text corpus, "PATH: window W
 * (byte N): reason", PS_EIO
 * naming the file and offset), PS_ETIME if
 * no batch came within wait_timeout_ms. After an error the stream stays
 * failed: a partition that fails mid-epoch never yields a short epoch. */
int ps_stream_next(ps_stream_t *s, const ps_stream_batch_t **batch, ps_errbuf_t *err);
/* Seconds ps_stream_next spent waiting for the reader with no batch ready,
 * since the stream was made. */
double ps_stream_wait_s(const ps_stream_t *s);
/* CPU seconds the reader threads have used so far (it shares the cores
 * with training; its cost shows in the epoch's time, not in the wait). */
double ps_stream_reader_cpu_s(ps_stream_t *s);
/* Bytes the reader read from the data files (uncompressed for gzip) so far. */
uint64_t ps_stream_bytes_read(const ps_stream_t *s);
/* This worker's partition count. */
size_t ps_stream_n_parts(const ps_stream_t *s);

#endif
