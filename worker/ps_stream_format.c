/* ps_stream_format.c - what a sample is in each format (CSV, IDX,
 * records, text windows; LIBSVM through ps_svm) and how one is read into a
 * partition's window, and the shapes and partitions each format gives when
 * a stream is made. */
#include "ps_stream_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "ps_data.h"
#include "ps_recfile.h"
#include "ps_rng.h"
#include "ps_text.h"
#include "ps_time.h"

unsigned char *pssm_slot_at(const ps_stream_t *s, const part_reader_t *p, uint32_t i)
{
    return p->slots + (size_t)i * s->slot_bytes;
}

/* A dense sample's label: finite, and a class index below the limit if set. */
static int check_label(const ps_stream_t *s, float y, ps_errbuf_t *why)
{
    if (!isfinite(y))
        return ps_err_set(why, PS_EFORMAT, "label is not a finite number");
    if (s->label_limit && (y < 0 || y != floorf(y) || y >= (float)s->label_limit))
        return ps_err_set(why, PS_EFORMAT, "label %g is not a class 0..%u", (double)y,
                          s->label_limit - 1);
    return PS_OK;
}

/* A CSV line into slot: 1, or 0 for a blank line or the header (a first
 * line of a file that is not all numbers). */
static int parse_csv(const ps_stream_t *s, const char *line, uint64_t at, unsigned char *slot,
                     ps_errbuf_t *why)
{
    float y = 0;
    int rc =
        ps_data_csv_parse_line(line, s->n_cols, s->label_col, (float *)(void *)(slot + 4), &y, why);
    if (rc < 0 && at == 0)
        return 0;
    if (rc <= 0)
        return rc;
    memcpy(slot, &y, 4);
    return check_label(s, y, why) == PS_OK ? 1 : PS_EFORMAT;
}

/* The next sample of a text partition into the window's next place: 1, 0
 * at the range's end, or an error naming the line. */
static int read_text(ps_stream_t *s, part_reader_t *p, ps_errbuf_t *err)
{
    for (;;) {
        char *line = NULL;
        uint64_t at = 0;
        int rc = pssm_next_line(p, &line, &at, err);
        if (rc <= 0)
            return rc;
        ps_errbuf_t why = {0};
        if (s->sparse)
            rc = ps_svm_parse_line(line, s->o.hash_bits, &p->rows[p->n_window], &why);
        else
            rc = parse_csv(s, line, at, pssm_slot_at(s, p, p->n_window), &why);
        if (rc < 0)
            return pssm_located(p, at, rc, why.msg, err);
        if (rc > 0)
            return 1;
    }
}

/* len bytes of r for a record that must be there (the header promised
 * it): 1, or PS_EFORMAT naming the byte where the file ends. */
static int take_record(const part_reader_t *p, src_t *r, size_t len, const unsigned char **at,
                       ps_errbuf_t *err)
{
    size_t have;
    int rc = pssm_src_peek(r, len, at, &have, err);
    if (rc != 0)
        return rc;
    char msg[160];
    snprintf(msg, sizeof msg, "'%s' ends at byte %llu: truncated (its header promises more)",
             r->path, (unsigned long long)(r->offset + have));
    return pssm_located(p, p->src.offset, PS_EFORMAT, msg, err);
}

/* An IDX image and its label into the window's next place. */
static int read_idx(ps_stream_t *s, part_reader_t *p, ps_errbuf_t *err)
{
    const unsigned char *px = NULL, *lb = NULL;
    uint64_t at = p->src.offset;
    int rc = take_record(p, &p->src, s->d, &px, err);
    if (rc == 1)
        rc = take_record(p, &p->lab, 1, &lb, err);
    if (rc != 1)
        return rc;
    unsigned char *slot = pssm_slot_at(s, p, p->n_window);
    float y = lb[0];
    memcpy(slot, &y, 4);
    memcpy(slot + 4, px, s->d);
    pssm_src_skip(&p->src, s->d);
    pssm_src_skip(&p->lab, 1);
    ps_errbuf_t why = {0};
    if (check_label(s, y, &why) != PS_OK)
        return pssm_located(p, at, PS_EFORMAT, why.msg, err);
    return 1;
}

/* A dense record: its checksum, its values, then into the window. */
static int read_dense_record(ps_stream_t *s, part_reader_t *p, ps_errbuf_t *err)
{
    const unsigned char *rec = NULL;
    uint64_t at = p->src.offset;
    int rc = take_record(p, &p->src, s->rec.record_bytes, &rec, err);
    if (rc != 1)
        return rc;
    if (!ps_rec_crc_ok(rec, s->rec.record_bytes))
        return pssm_located(p, at, PS_EFORMAT, "checksum mismatch: the record is damaged", err);
    unsigned char *slot = pssm_slot_at(s, p, p->n_window);
    memcpy(slot, rec, s->slot_bytes);
    pssm_src_skip(&p->src, s->rec.record_bytes);
    float y;
    memcpy(&y, slot, 4);
    ps_errbuf_t why = {0};
    rc = check_label(s, y, &why);
    const float *x = (const float *)(const void *)(slot + 4);
    for (size_t j = 0; rc == PS_OK && s->esize == 4 && j < s->d; j++)
        if (!isfinite(x[j]))
            rc = ps_err_set(&why, PS_EFORMAT, "feature %zu is not a finite number", j + 1);
    return rc == PS_OK ? 1 : pssm_located(p, at, rc, why.msg, err);
}

/* A sparse record's features into row (keys hashed as LIBSVM's are). */
static int decode_sparse(const ps_stream_t *s, const unsigned char *rec, uint32_t nf,
                         ps_svm_row_t *row, ps_errbuf_t *why)
{
    float y;
    memcpy(&y, rec, 4);
    if (y != 0 && y != 1)
        return ps_err_set(why, PS_EFORMAT, "label %g is not 0 or 1", (double)y);
    if (nf > row->cap) {
        row->cap = nf * 2;
        row->keys = ps_xrealloc(row->keys, row->cap * sizeof *row->keys);
        row->vals = ps_xrealloc(row->vals, row->cap * sizeof *row->vals);
    }
    for (uint32_t j = 0; j < nf; j++) {
        uint64_t index;
        memcpy(&index, rec + 8 + (size_t)j * 12, 8);
        memcpy(&row->vals[j], rec + 8 + (size_t)j * 12 + 8, 4);
        if (!isfinite(row->vals[j]))
            return ps_err_set(why, PS_EFORMAT, "feature %u's value is not finite", j + 1);
        row->keys[j] = ps_svm_key(index, s->o.hash_bits);
    }
    row->y = y;
    row->nf = nf;
    return PS_OK;
}

/* A sparse record: its size against its range, its checksum, its row. */
static int read_sparse_record(ps_stream_t *s, part_reader_t *p, ps_errbuf_t *err)
{
    const unsigned char *rec = NULL;
    uint64_t at = p->src.offset;
    int rc = take_record(p, &p->src, 8, &rec, err);
    if (rc != 1)
        return rc;
    uint32_t nf;
    memcpy(&nf, rec + 4, 4);
    size_t len = 8 + (size_t)nf * 12 + 4;
    if (len > p->part->end - at)
        return pssm_located(p, at, PS_EFORMAT, "record runs past its range's end: damaged", err);
    if ((rc = take_record(p, &p->src, len, &rec, err)) != 1)
        return rc;
    if (!ps_rec_crc_ok(rec, len))
        return pssm_located(p, at, PS_EFORMAT, "checksum mismatch: the record is damaged", err);
    ps_errbuf_t why = {0};
    if ((rc = decode_sparse(s, rec, nf, &p->rows[p->n_window], &why)) != PS_OK)
        return pssm_located(p, at, rc, why.msg, err);
    pssm_src_skip(&p->src, len);
    return 1;
}

/* A window that must be there (the file's size said so when the stream
 * was made): PS_EFORMAT naming the file and where it now ends. */
static int window_gone(const part_reader_t *p, uint64_t at, size_t have, ps_errbuf_t *err)
{
    char msg[200];
    snprintf(msg, sizeof msg,
             "the file ends at byte %llu, inside the window: it is shorter than when the job "
             "started",
             (unsigned long long)(at + have));
    return pssm_located(p, at, PS_EFORMAT, msg, err);
}

/* A text corpus window into the window's next place: its bytes (each
 * below the token limit), label 0; then the reader moves on to the next
 * window's start (stride bytes on; the windows may overlap). */
static int read_window(ps_stream_t *s, part_reader_t *p, ps_errbuf_t *err)
{
    const unsigned char *w = NULL;
    size_t have = 0;
    uint64_t at = p->src.offset;
    int rc = pssm_src_peek(&p->src, s->d, &w, &have, err);
    if (rc != 1)
        return rc < 0 ? rc : window_gone(p, at, have, err);
    unsigned char *slot = pssm_slot_at(s, p, p->n_window);
    memset(slot, 0, 4); /* the label: 0.0f */
    memcpy(slot + 4, w, s->d);
    for (size_t j = 0; s->token_limit && s->token_limit < 256 && j < s->d; j++) {
        if (w[j] < s->token_limit)
            continue;
        char msg[200];
        snprintf(msg, sizeof msg,
                 "byte %u at offset %llu is not below the vocabulary %u of the model (text is "
                 "bytes: embed(256, ...))",
                 w[j], (unsigned long long)(at + j), s->token_limit);
        return pssm_located(p, at, PS_EFORMAT, msg, err);
    }
    if (p->done + 1 == p->part->count)
        return 1; /* the last: its range's bytes end with it */
    if ((rc = pssm_src_peek(&p->src, s->stride, &w, &have, err)) != 1)
        return rc < 0 ? rc : window_gone(p, at, have, err);
    pssm_src_skip(&p->src, s->stride);
    return 1;
}

/* The next sample of p into its window's next place: 1, 0 at the end of
 * its range, or an error. */
int pssm_read_sample(ps_stream_t *s, part_reader_t *p, ps_errbuf_t *err)
{
    if (p->part->count == UINT64_MAX)
        return read_text(s, p, err);
    if (p->done == p->part->count)
        return 0;
    int rc = p->windows                     ? read_window(s, p, err)
             : s->o.format == PS_STREAM_IDX ? read_idx(s, p, err)
             : s->sparse                    ? read_sparse_record(s, p, err)
                                            : read_dense_record(s, p, err);
    p->done += rc == 1;
    return rc;
}

/* CSV: the columns of the first line of partition 0 (a header counts). */
static int probe_csv(ps_stream_t *s, ps_errbuf_t *err)
{
    part_reader_t p = {.part = &s->all.parts[0], .src = {.fd = -1, .bytes_read = &s->bytes_read}};
    char *line = NULL;
    uint64_t at = 0;
    int rc = pssm_src_open(&p.src, p.part->path, 0, UINT64_MAX, err);
    while (rc == PS_OK && (rc = pssm_next_line(&p, &line, &at, err)) == 1 &&
           !ps_data_csv_fields(line))
        ;
    size_t nf = rc == 1 ? ps_data_csv_fields(line) : 0;
    pssm_src_fini(&p.src);
    if (rc < 0)
        return rc;
    int lc = s->o.label_column;
    size_t col = lc < 0 ? (size_t)((int64_t)nf + lc) : (size_t)lc;
    if (nf < 2 || col >= nf)
        return ps_err_set(err, PS_EFORMAT,
                          "%s:%llu: %zu columns; need features and the label column %d",
                          p.part->path, (unsigned long long)p.lineno, nf, lc);
    s->n_cols = nf;
    s->label_col = col;
    s->d = nf - 1;
    s->esize = 4;
    s->n_classes = s->o.n_classes;
    return PS_OK;
}

/* 1 + the largest of the n label bytes at byte from of path. */
static int scan_labels(ps_stream_t *s, const char *path, uint64_t from, uint64_t n,
                       ps_errbuf_t *err)
{
    src_t r = {.fd = -1, .bytes_read = &s->bytes_read};
    int rc = pssm_src_open(&r, path, from, from + n, err);
    uint64_t seen = 0;
    unsigned max = 0;
    while (rc == PS_OK && seen < n) {
        if (r.pos == r.len && r.at_eof)
            break;
        if (r.pos == r.len && (rc = pssm_src_refill(&r, err)) != PS_OK)
            break;
        for (; r.pos < r.len && seen < n; r.pos++, seen++)
            max = (unsigned char)r.buf[r.pos] > max ? (unsigned char)r.buf[r.pos] : max;
    }
    pssm_src_fini(&r);
    if (rc == PS_OK && seen < n)
        rc = ps_err_set(err, PS_EFORMAT,
                        "'%s': truncated: header promises %llu labels, file has %llu", path,
                        (unsigned long long)n, (unsigned long long)seen);
    s->n_classes = max + 1;
    return rc;
}

/* IDX: one images file and its labels, cut into partitions record ranges. */
static int idx_parts(ps_stream_t *s, ps_errbuf_t *err)
{
    const ps_stream_opts_t *o = &s->o;
    if (ps_stream_names_many(o->train_data))
        return ps_err_set(err, PS_EINVAL,
                          "train_data '%s': IDX data is one images file (cut into record "
                          "ranges); for many files convert them with ps-convert (data_format "
                          "records)",
                          o->train_data);
    uint32_t idims[8], ldims[8];
    int indim, lndim;
    uint64_t ioff, loff;
    int rc = ps_data_idx_header(o->train_data, 2, 4, idims, &indim, &ioff, err);
    if (rc == PS_OK)
        rc = ps_data_idx_header(o->train_labels, 1, 1, ldims, &lndim, &loff, err);
    if (rc != PS_OK)
        return rc;
    uint64_t n = idims[0], d = 1;
    for (int i = 1; i < indim && d <= MAX_ROW; i++)
        d *= idims[i];
    if (d > MAX_ROW)
        return ps_err_set(err, PS_EFORMAT, "'%s': images of more than %u values are not streamed",
                          o->train_data, MAX_ROW);
    if (ldims[0] != n)
        return ps_err_set(err, PS_EFORMAT, "'%s' has %u labels but '%s' has %llu images",
                          o->train_labels, ldims[0], o->train_data, (unsigned long long)n);
    uint32_t np = o->n_partitions ? o->n_partitions : o->world;
    s->all.parts = ps_xcalloc(np, sizeof *s->all.parts);
    s->all.n = np;
    for (uint32_t p = 0; p < np; p++) {
        uint64_t first = n * p / np, count = n * (p + 1) / np - first;
        s->all.parts[p] = (ps_part_t){ps_xstrdup(o->train_data),
                                      ioff + first * d,
                                      ioff + (first + count) * d,
                                      ps_xstrdup(o->train_labels),
                                      loff + first,
                                      first,
                                      count};
    }
    s->d = d;
    s->esize = 1;
    s->n_samples = n;
    if (o->n_classes) {
        s->n_classes = o->n_classes;
        return PS_OK;
    }
    return scan_labels(s, o->train_labels, loff, n, err);
}

/* A records file's header, checked against the first file's. */
static int rec_header(ps_stream_t *s, const char *path, size_t i, ps_rec_header_t *h,
                      ps_errbuf_t *err)
{
    uint64_t bytes;
    int rc = ps_rec_header_read(path, h, &bytes, err);
    if (rc != PS_OK)
        return rc;
    if (i == 0) {
        s->rec = *h;
        s->n_classes = h->n_classes;
        return PS_OK;
    }
    if (h->kind != s->rec.kind || h->dtype != s->rec.dtype || h->d != s->rec.d)
        return ps_err_set(err, PS_EFORMAT,
                          "'%s': records of kind %u, dtype %u, %u features, but '%s' has kind "
                          "%u, dtype %u, %u features",
                          path, h->kind, h->dtype, h->d, s->all.parts[0].path, s->rec.kind,
                          s->rec.dtype, s->rec.d);
    if (h->n_classes == 0 || s->n_classes == 0)
        s->n_classes = 0;
    else if (h->n_classes > s->n_classes)
        s->n_classes = h->n_classes;
    return PS_OK;
}

/* Records first..first+count of path as partition p. */
static int rec_part(ps_stream_t *s, size_t p, const char *path, const ps_rec_header_t *h,
                    uint64_t first, uint64_t count, ps_errbuf_t *err)
{
    ps_part_t *part = &s->all.parts[p];
    *part = (ps_part_t){.path = ps_xstrdup(path), .first = first, .count = count};
    if (h->kind == PS_REC_DENSE) {
        part->start = PS_REC_HEADER_BYTES + first * h->record_bytes;
        part->end = part->start + count * h->record_bytes;
        return PS_OK;
    }
    return ps_rec_sparse_range(path, h, first, first + count, &part->start, &part->end, err);
}

/* records: one partition per file, or one file cut into record ranges. */
static int rec_parts(ps_stream_t *s, ps_errbuf_t *err)
{
    const ps_stream_opts_t *o = &s->o;
    ps_partlist_t files = {0};
    int rc = PS_OK;
    if (ps_stream_names_many(o->train_data))
        rc = ps_stream_partitions(o->train_data, o->n_partitions, o->world, &files, err);
    else
        rc = pssm_split_file(o->train_data, 1, &files, err);
    if (rc != PS_OK)
        return rc;
    bool one = !ps_stream_names_many(o->train_data);
    uint32_t np = one ? (o->n_partitions ? o->n_partitions : o->world) : (uint32_t)files.n;
    s->all.parts = ps_xcalloc(np, sizeof *s->all.parts);
    s->all.n = np;
    ps_rec_header_t h;
    for (size_t i = 0; rc == PS_OK && i < files.n; i++) {
        if ((rc = rec_header(s, files.parts[i].path, i, &h, err)) != PS_OK)
            break;
        s->n_samples += h.n;
        for (uint32_t p = 0; one && rc == PS_OK && p < np; p++)
            rc = rec_part(s, p, files.parts[i].path, &h, h.n * p / np,
                          h.n * (p + 1) / np - h.n * p / np, err);
        if (!one)
            rc = rec_part(s, i, files.parts[i].path, &h, 0, h.n, err);
    }
    ps_partlist_fini(&files);
    if (rc != PS_OK)
        return rc;
    if (s->rec.d > MAX_ROW)
        return ps_err_set(err, PS_EFORMAT, "'%s': records of more than %u values are not streamed",
                          o->train_data, MAX_ROW);
    s->d = s->rec.d;
    s->esize = s->rec.dtype == PS_REC_U8 ? 1 : 4;
    if (o->n_classes)
        s->n_classes = o->n_classes;
    return PS_OK;
}

/* Partition part's windows: those of its file (size bytes) starting at a
 * multiple of stride in [from, to) whose row bytes the file holds. */
static void text_windows(ps_part_t *part, uint64_t size, uint64_t from, uint64_t to, uint64_t row,
                         uint64_t stride)
{
    uint64_t k0 = (from + stride - 1) / stride, k1 = (to + stride - 1) / stride;
    uint64_t in_file = size >= row ? (size - row) / stride + 1 : 0;
    if (k1 > in_file)
        k1 = in_file;
    part->first = k0;
    part->count = k1 > k0 ? k1 - k0 : 0;
    part->start = k0 * stride;
    part->end = part->count ? (k1 - 1) * stride + row : part->start;
}

/* A text corpus's files (or one file's byte ranges), before their windows. */
static int text_files(ps_stream_t *s, ps_errbuf_t *err)
{
    const ps_stream_opts_t *o = &s->o;
    struct stat st;
    if (ps_stream_names_many(o->train_data) && stat(o->train_data, &st) != 0)
        return ps_stream_partitions(o->train_data, o->n_partitions, o->world, &s->all, err);
    if (stat(o->train_data, &st) != 0)
        return ps_err_set(err, PS_EIO, "cannot read '%s': %s", o->train_data, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        uint32_t n = o->n_partitions ? o->n_partitions : o->world;
        uint64_t size = (uint64_t)st.st_size;
        s->all.parts = ps_xcalloc(n, sizeof *s->all.parts);
        s->all.n = n;
        for (uint32_t p = 0; p < n; p++)
            s->all.parts[p] = (ps_part_t){.path = ps_xstrdup(o->train_data),
                                          .start = size * p / n,
                                          .end = size * (p + 1) / n};
        return PS_OK;
    }
    char **paths = NULL;
    size_t n = 0;
    int rc = ps_text_dir_files(o->train_data, &paths, &n, err);
    s->all.parts = ps_xcalloc(n + 1, sizeof *s->all.parts);
    s->all.n = n;
    for (size_t i = 0; i < n; i++) /* whole files: [0, size) once their sizes are known */
        s->all.parts[i] = (ps_part_t){.path = paths[i], .end = UINT64_MAX};
    free(paths);
    if (rc == PS_OK && n == 0)
        rc = ps_err_set(err, PS_EFORMAT, "train_data '%s' has no data files", o->train_data);
    if (rc == PS_OK && o->n_partitions && o->n_partitions != n)
        rc = ps_err_set(err, PS_EINVAL,
                        "partitions %u: train_data '%s' names %zu files, one partition each",
                        (unsigned)o->n_partitions, o->train_data, n);
    return rc;
}

/* A text corpus: its partitions and their windows, counted from the sizes. */
static int text_parts(ps_stream_t *s, ps_errbuf_t *err)
{
    const ps_stream_opts_t *o = &s->o;
    if (o->block_size == 0 || o->block_size >= MAX_ROW)
        return ps_err_set(err, PS_EINVAL, "'%s': a text window needs block_size 1..%u",
                          o->train_data, MAX_ROW - 1);
    int rc = text_files(s, err);
    if (rc != PS_OK)
        return rc;
    uint64_t row = o->block_size + 1;
    s->stride = o->text_stride ? o->text_stride : o->block_size;
    for (size_t i = 0; i < s->all.n; i++) {
        ps_part_t *part = &s->all.parts[i];
        struct stat st;
        if (stat(part->path, &st) != 0)
            return ps_err_set(err, PS_EIO, "cannot read '%s': %s", part->path, strerror(errno));
        uint64_t size = (uint64_t)st.st_size;
        text_windows(part, size, part->start, part->end == UINT64_MAX ? size : part->end, row,
                     s->stride);
        s->n_samples += part->count;
    }
    if (s->n_samples == 0)
        return ps_err_set(err, PS_EFORMAT,
                          "train_data '%s': no file holds one window of %llu bytes (block_size "
                          "+ 1)",
                          o->train_data, (unsigned long long)row);
    s->d = (size_t)row;
    s->esize = 1;
    s->byte_scale = 1; /* the bytes are tokens, not intensities */
    s->n_classes = 0;
    return PS_OK;
}

/* The partitions of the data set and what a sample is. */
int pssm_make_parts(ps_stream_t *s, ps_errbuf_t *err)
{
    const ps_stream_opts_t *o = &s->o;
    int rc;
    switch (o->format) {
    case PS_STREAM_IDX:
        return idx_parts(s, err);
    case PS_STREAM_RECORDS:
        rc = rec_parts(s, err);
        s->sparse = rc == PS_OK && s->rec.kind == PS_REC_SPARSE;
        return rc;
    case PS_STREAM_TEXT:
        return text_parts(s, err);
    case PS_STREAM_CSV:
        rc = ps_stream_partitions(o->train_data, o->n_partitions, o->world, &s->all, err);
        return rc == PS_OK ? probe_csv(s, err) : rc;
    default:
        s->sparse = true;
        return ps_stream_partitions(o->train_data, o->n_partitions, o->world, &s->all, err);
    }
}
