/* ps_stream_int.h - what the stream's files share (ps_stream.c: the
 * batches, the reader thread and the API; ps_partition.c: which files and
 * ranges the partitions are; ps_stream_src.c: the buffered sources and a
 * partition's position in its files; ps_stream_format.c: what a sample is
 * in each format and how one is read). Not an API. */
#ifndef PS_STREAM_INT_H
#define PS_STREAM_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <zlib.h>

#include "ps_recfile.h"
#include "ps_rng.h"
#include "ps_stream.h"

#define READ_CHUNK (1 << 20)
#define MAX_ROW (1u << 24) /* dense values per sample: a 4096 x 4096 image */

/* A buffered reader of one file: plain from a byte offset, or gzip. */
typedef struct {
    const char *path;
    int fd;    /* a plain file, or */
    gzFile gz; /* a gzip one */
    char *buf;
    size_t len, pos, cap;
    bool at_eof;                  /* nothing more to read in this pass */
    bool raw;                     /* a text corpus: a gzip file's bytes are its bytes */
    uint64_t offset;              /* file offset (uncompressed) of buf[pos] */
    uint64_t limit;               /* read nothing at or past it (records: their range's end) */
    _Atomic uint64_t *bytes_read; /* the stream's count */
} src_t;

/* One of this worker's partitions as the reader thread reads it. */
typedef struct {
    const ps_part_t *part;
    uint32_t id;          /* the partition's number in the data set */
    uint32_t batch;       /* samples per batch from it */
    src_t src, lab;       /* the data; IDX: the labels */
    uint64_t lineno;      /* text: lines read in this pass (the file's line if whole) */
    uint64_t done;        /* IDX, records: records read in this pass */
    ps_svm_row_t *rows;   /* sparse: the window's shuffle_window rows */
    unsigned char *slots; /* dense: the window's slots, grown as it fills */
    uint32_t cap_slots;
    uint32_t n_window; /* slots holding a sample */
    ps_rng_t rng;
    uint32_t passes_done;
    bool in_pass, exhausted;
    bool windows; /* a text corpus: its records are windows of bytes */
} part_reader_t;

/* A batch of the ring with the capacities of its arrays. */
typedef struct {
    ps_stream_batch_t b;
    size_t cap_n, cap_nnz;
} batch_slot_t;

struct ps_stream {
    ps_stream_opts_t o;
    ps_partlist_t all;
    part_reader_t *mine;
    size_t n_mine;
    /* what a sample is */
    bool sparse;
    size_t d;                 /* dense: features */
    uint32_t esize;           /* dense: bytes per stored feature: 1 (byte / 255) or 4 (f32) */
    size_t slot_bytes;        /* dense: 4 + d * esize */
    uint32_t n_classes;       /* as ps_stream_n_classes */
    uint32_t label_limit;     /* dense: labels below it; 0 = any */
    float byte_scale;         /* dense bytes as floats: byte * it (1 / 255, or 1 for tokens) */
    uint32_t token_limit;     /* a text corpus: bytes below it; 0 = any */
    size_t stride;            /* a text corpus: bytes from a window's start to the next's */
    size_t n_cols, label_col; /* CSV */
    ps_rec_header_t rec;      /* records: the first file's header */
    uint64_t n_samples;       /* 0 = unknown */
    /* the ring: slots[(head + i) % prefetch]; the consumer holds head while holding */
    batch_slot_t *slots;
    pthread_mutex_t mu;
    pthread_cond_t ready, room; /* a batch was published / a slot was freed */
    uint32_t head, n_ready;
    bool holding, ended, stopping, has_thread;
    int reader_rc;
    ps_errbuf_t reader_err;
    pthread_t thread;
    uint64_t skip;
    _Atomic uint64_t bytes_read;
    double wait_s;
    double cpu_done_s; /* CPU time of the reader threads that ended (under mu) */
    bool cpu_added;    /* the running thread's is in cpu_done_s (under mu) */
};

/* ---- ps_partition.c ---- */
/* Whether path starts with the gzip magic bytes. */
bool pssm_is_gzip(const char *path);
/* One file cut into n byte ranges. */
int pssm_split_file(const char *path, uint32_t n, ps_partlist_t *out, ps_errbuf_t *err);

/* ---- ps_stream_src.c ---- */
/* Closes r's file and frees its buffer. */
void pssm_src_fini(src_t *r);
/* Opens r at byte `from` of path (a gzip file: inflated up to it), to be
 * read up to byte limit (UINT64_MAX: the end). */
int pssm_src_open(src_t *r, const char *path, uint64_t from, uint64_t limit, ps_errbuf_t *err);
/* Reads more of r's file into its buffer (keeping the unread tail). */
int pssm_src_refill(src_t *r, ps_errbuf_t *err);
/* The next len bytes of r, in its buffer (valid until the next call), not
 * consumed: 1, 0 if the file ends first (*have: how many it has). */
int pssm_src_peek(src_t *r, size_t len, const unsigned char **at, size_t *have, ps_errbuf_t *err);
/* Consumes len bytes of r that src_peek showed. */
void pssm_src_skip(src_t *r, size_t len);
/* Closes p's data and label sources (its window stays). */
void pssm_close_part(part_reader_t *p);
/* Where an error in p happened: "PATH:LINE" (a whole text file), "PATH:
 * byte N" (a byte range), "PATH: record R (byte N)" (IDX, records). */
int pssm_where(const part_reader_t *p, uint64_t at, char *buf, size_t cap);
/* err = "WHERE: why" for a sample of p at byte at. */
int pssm_located(const part_reader_t *p, uint64_t at, int rc, const char *why, ps_errbuf_t *err);
/* Opens p for a pass: its file(s) at its first line or record. */
int pssm_open_pass(ps_stream_t *s, part_reader_t *p, ps_errbuf_t *err);
/* The next line of p's range into *line (NUL-terminated, in p's buffer,
 * valid until the next call) and its file offset; 0 at the range's end. */
int pssm_next_line(part_reader_t *p, char **line, uint64_t *line_offset, ps_errbuf_t *err);

/* ---- ps_stream_format.c ---- */
/* Dense: slot i of p's shuffle window ([label f32][features]). */
unsigned char *pssm_slot_at(const ps_stream_t *s, const part_reader_t *p, uint32_t i);
/* The next sample of p into its window's next place: 1, 0 at the end of
 * its range, or an error. */
int pssm_read_sample(ps_stream_t *s, part_reader_t *p, ps_errbuf_t *err);
/* The partitions of the data set and what a sample is. */
int pssm_make_parts(ps_stream_t *s, ps_errbuf_t *err);

#endif
