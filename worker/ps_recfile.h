/* ps_recfile.h - the compact binary record format (ps-convert writes it,
 * the streamed readers of ps_stream.c read it; docs/data.md): a 64-byte
 * header, then the records, all little-endian.
 *
 * dense:  fixed-size records [label f32][d features, u8 or f32][crc32 u32];
 *         a u8 feature's value is byte / 255 (IDX pixels as they were);
 * sparse: [label f32][nf u32][nf x (index u64, value f32)][crc32 u32],
 *         then an index of n + 1 u64 record offsets (the last one is the
 *         index's own offset), so a record range is a byte range.
 * A record's crc32 covers its bytes before it; the header's covers its
 * first 60 bytes. Any thread (no state). */
#ifndef PS_RECFILE_H
#define PS_RECFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ps_data.h"
#include "ps_err.h"
#include "ps_svm.h"

#define PS_REC_MAGIC "PSRECRD\n" /* 8 bytes */
#define PS_REC_VERSION 1
#define PS_REC_HEADER_BYTES 64

typedef enum { PS_REC_DENSE = 1, PS_REC_SPARSE = 2 } ps_rec_kind_t;
typedef enum { PS_REC_U8 = 1, PS_REC_F32 = 2 } ps_rec_dtype_t;

typedef struct {
    uint32_t kind;         /* ps_rec_kind_t */
    uint32_t dtype;        /* ps_rec_dtype_t of dense features (sparse: F32) */
    uint32_t d;            /* dense: features per record; sparse: 0 */
    uint64_t n;            /* records */
    uint32_t n_classes;    /* 1 + largest label if all are whole numbers 0..65535, else 0 */
    uint32_t record_bytes; /* dense: bytes per record; sparse: 0 */
    uint64_t index_offset; /* sparse: byte offset of the index; dense: 0 */
    uint64_t nnz;          /* sparse: features over all records; dense: 0 */
} ps_rec_header_t;

/* Bytes of one dense record of d features of dtype. */
uint32_t ps_rec_dense_bytes(uint32_t d, uint32_t dtype);
/* The header as its 64 bytes (with their crc32). */
void ps_rec_header_encode(const ps_rec_header_t *h, unsigned char out[PS_REC_HEADER_BYTES]);
/* Reads and checks path's header: magic, version, crc32, kind, dtype, and
 * the sizes against file_bytes (the file's size). PS_EFORMAT naming path
 * and what is wrong ("'x.rec': not a ps-convert record file (bad magic)");
 * PS_EIO if it cannot be read. */
int ps_rec_header_read(const char *path, ps_rec_header_t *h, uint64_t *file_bytes,
                       ps_errbuf_t *err);
/* The byte offsets of sparse records first and last (last <= n: last == n
 * is the end of the records) from path's index; errors name the file and
 * the index entry. */
int ps_rec_sparse_range(const char *path, const ps_rec_header_t *h, uint64_t first, uint64_t last,
                        uint64_t *start, uint64_t *end, ps_errbuf_t *err);
/* Whether the record bytes rec[0..len) end with the crc32 of the rest. */
bool ps_rec_crc_ok(const unsigned char *rec, size_t len);

/* Reads a whole dense records file into ds (floats; u8 features become
 * byte / 255), checking every record's checksum; for test sets, which are
 * held in memory. Errors name the file and the record. */
int ps_rec_load_dense(const char *path, ps_dataset_t *ds, ps_errbuf_t *err);
/* The same for a sparse records file, its indices hashed into hash_bits
 * as ps_svm_load hashes them. */
int ps_rec_load_sparse(const char *path, int hash_bits, ps_svm_t *d, ps_errbuf_t *err);

/* A record file being written (ps-convert, the parse bench). */
typedef struct {
    FILE *f;
    char *path;
    ps_rec_header_t h;
    uint64_t *offsets; /* sparse: each record's offset */
    size_t cap_offsets;
    uint64_t at; /* bytes written */
    uint32_t max_label;
    bool labels_are_classes;
    unsigned char *buf;
    size_t cap_buf;
} ps_rec_writer_t;

/* Creates path (truncating it) for records of kind (dense: d features of
 * dtype). PS_EIO naming the path. */
int ps_rec_writer_open(ps_rec_writer_t *w, const char *path, uint32_t kind, uint32_t d,
                       uint32_t dtype, ps_errbuf_t *err);
/* Appends a dense record: d features from u8 (dtype U8) or f32 (F32). */
int ps_rec_write_dense(ps_rec_writer_t *w, float label, const uint8_t *u8, const float *f32,
                       ps_errbuf_t *err);
/* Appends a sparse record of nf (index, value) pairs. */
int ps_rec_write_sparse(ps_rec_writer_t *w, float label, const uint64_t *index, const float *vals,
                        uint32_t nf, ps_errbuf_t *err);
/* Writes the index (sparse) and the final header, closes the file. Frees
 * w's buffers whatever happens; PS_EIO naming the path. */
int ps_rec_writer_close(ps_rec_writer_t *w, ps_errbuf_t *err);
/* Closes and removes a half-written file (after an error). */
void ps_rec_writer_abort(ps_rec_writer_t *w);

#endif
