/* ps_svm.h - LIBSVM / SVMlight text data for sparse models: one sample per
 * line, `LABEL INDEX:VALUE ...`, labels {0, 1} or {-1, +1} (read as 0/1),
 * indices 0- or 1-based (they are only hashed), `#` starts a comment, gzip
 * is detected. Feature indices are hashed into hash_bits bits (the keys of
 * the sparse table); hash_bits 0 keeps them as they are. Stored as CSR.
 * Worker thread only. */
#ifndef PS_SVM_H
#define PS_SVM_H

#include <stddef.h>
#include <stdint.h>

#include "ps_err.h"

typedef struct {
    size_t n;          /* samples */
    size_t nnz;        /* features over all samples */
    uint64_t *row_ptr; /* n + 1: sample i's features are [row_ptr[i], row_ptr[i+1]) */
    uint64_t *keys;    /* nnz hashed feature keys */
    float *vals;       /* nnz values */
    float *y;          /* n labels, 0 or 1 */
} ps_svm_t;

/* One sample as parsed: its features in keys/vals (owned, grown as needed:
 * reuse one row for many lines so parsing allocates nothing in the steady
 * state). */
typedef struct {
    float y;    /* 0 or 1 */
    size_t nf;  /* features */
    size_t cap; /* room in keys and vals */
    uint64_t *keys;
    float *vals;
} ps_svm_row_t;

/* The key of feature index under hash_bits (1..62; 0 = the index itself). */
uint64_t ps_svm_key(uint64_t index, int hash_bits);
/* Reads path. PS_EFORMAT with "PATH:LINE: reason" on a malformed line (bad
 * label, a feature without ':', a bad index or a non-finite value); PS_EIO
 * if the file cannot be read. */
int ps_svm_load(const char *path, int hash_bits, ps_svm_t *out, ps_errbuf_t *err);
void ps_svm_free(ps_svm_t *d);
/* Parses one line (NUL-terminated; its '\n', a '\r' and a `#` comment are
 * allowed; the line is modified) into row. Returns 1 for a sample, 0 for a
 * blank or comment-only line, PS_EFORMAT with the reason in err (no file or
 * line: the caller prefixes where it read the line). */
int ps_svm_parse_line(char *line, int hash_bits, ps_svm_row_t *row, ps_errbuf_t *err);
/* Frees row's arrays; safe twice. */
void ps_svm_row_fini(ps_svm_row_t *row);

#endif
