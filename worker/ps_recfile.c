/* ps_recfile.c - see ps_recfile.h. Records are written and read as the
 * host's bytes, which must be little-endian (checked at compile time). */
#include "ps_recfile.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the record format is little-endian; this host is not"
#endif

/* A header's counts beyond these are damage, not data. */
#define MAX_D (1u << 28)
#define MAX_N (1ULL << 48)

static void put32(unsigned char *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static void put64(unsigned char *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static uint32_t get32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static uint32_t crc(const unsigned char *p, size_t len)
{
    uLong c = crc32(0L, Z_NULL, 0);
    while (len > 0) { /* crc32 takes a uInt length */
        uInt chunk = len > (1u << 30) ? (1u << 30) : (uInt)len;
        c = crc32(c, p, chunk);
        p += chunk;
        len -= chunk;
    }
    return (uint32_t)c;
}

uint32_t ps_rec_dense_bytes(uint32_t d, uint32_t dtype)
{
    return 4 + d * (dtype == PS_REC_U8 ? 1 : 4) + 4;
}

bool ps_rec_crc_ok(const unsigned char *rec, size_t len)
{
    return len >= 4 && crc(rec, len - 4) == get32(rec + len - 4);
}

void ps_rec_header_encode(const ps_rec_header_t *h, unsigned char out[PS_REC_HEADER_BYTES])
{
    memset(out, 0, PS_REC_HEADER_BYTES);
    memcpy(out, PS_REC_MAGIC, 8);
    put32(out + 8, PS_REC_VERSION);
    put32(out + 12, h->kind);
    put32(out + 16, h->dtype);
    put32(out + 20, h->d);
    put64(out + 24, h->n);
    put32(out + 32, h->n_classes);
    put32(out + 36, h->record_bytes);
    put64(out + 40, h->index_offset);
    put64(out + 48, h->nnz);
    put32(out + 60, crc(out, 60));
}

/* The header's fields against each other and the file's size. */
static int check_header(const char *path, const ps_rec_header_t *h, uint64_t size, ps_errbuf_t *err)
{
    if (h->kind == PS_REC_DENSE) {
        if ((h->dtype != PS_REC_U8 && h->dtype != PS_REC_F32) || h->d == 0 || h->d > MAX_D ||
            h->record_bytes != ps_rec_dense_bytes(h->d, h->dtype))
            return ps_err_set(err, PS_EFORMAT,
                              "'%s': header: dense records of %u features of dtype %u in %u "
                              "bytes do not fit together",
                              path, h->d, h->dtype, h->record_bytes);
        if (h->n > MAX_N || PS_REC_HEADER_BYTES + h->n * h->record_bytes != size)
            return ps_err_set(err, PS_EFORMAT,
                              "'%s': header promises %llu records of %u bytes (%llu bytes in "
                              "all) but the file has %llu bytes: truncated or damaged",
                              path, (unsigned long long)h->n, h->record_bytes,
                              (unsigned long long)(PS_REC_HEADER_BYTES + h->n * h->record_bytes),
                              (unsigned long long)size);
        return PS_OK;
    }
    if (h->kind != PS_REC_SPARSE)
        return ps_err_set(err, PS_EFORMAT, "'%s': header: unknown record kind %u", path, h->kind);
    if (h->n > MAX_N || h->index_offset < PS_REC_HEADER_BYTES || h->nnz > size / 12 ||
        h->index_offset + (h->n + 1) * 8 != size)
        return ps_err_set(err, PS_EFORMAT,
                          "'%s': header: an index of %llu records at byte %llu (%llu features) "
                          "does not end the file's %llu bytes: truncated or damaged",
                          path, (unsigned long long)h->n, (unsigned long long)h->index_offset,
                          (unsigned long long)h->nnz, (unsigned long long)size);
    return PS_OK;
}

int ps_rec_header_read(const char *path, ps_rec_header_t *h, uint64_t *file_bytes, ps_errbuf_t *err)
{
    unsigned char b[PS_REC_HEADER_BYTES];
    struct stat st;
    FILE *f = fopen(path, "rb");
    if (!f || fstat(fileno(f), &st) != 0) {
        int e = errno;
        if (f)
            fclose(f);
        return ps_err_set(err, PS_EIO, "cannot read '%s': %s", path, strerror(e));
    }
    size_t got = fread(b, 1, sizeof b, f);
    fclose(f);
    if (got < 8 || memcmp(b, PS_REC_MAGIC, 8) != 0)
        return ps_err_set(err, PS_EFORMAT, "'%s': byte 0: not a ps-convert record file (bad magic)",
                          path);
    if (got < sizeof b)
        return ps_err_set(err, PS_EFORMAT, "'%s': truncated header (%zu of %d bytes)", path, got,
                          PS_REC_HEADER_BYTES);
    if (get32(b + 8) != PS_REC_VERSION)
        return ps_err_set(err, PS_EFORMAT, "'%s': byte 8: record format version %u, expected %d",
                          path, get32(b + 8), PS_REC_VERSION);
    if (crc(b, 60) != get32(b + 60))
        return ps_err_set(err, PS_EFORMAT, "'%s': byte 60: header checksum mismatch (damaged)",
                          path);
    *h = (ps_rec_header_t){get32(b + 12), get32(b + 16), get32(b + 20), get64(b + 24),
                           get32(b + 32), get32(b + 36), get64(b + 40), get64(b + 48)};
    *file_bytes = (uint64_t)st.st_size;
    return check_header(path, h, *file_bytes, err);
}

int ps_rec_sparse_range(const char *path, const ps_rec_header_t *h, uint64_t first, uint64_t last,
                        uint64_t *start, uint64_t *end, ps_errbuf_t *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return ps_err_set(err, PS_EIO, "cannot read '%s': %s", path, strerror(errno));
    unsigned char b[8];
    uint64_t at[2] = {first, last}, off[2];
    int rc = PS_OK;
    for (int i = 0; i < 2 && rc == PS_OK; i++) {
        uint64_t pos = h->index_offset + at[i] * 8;
        if (fseeko(f, (off_t)pos, SEEK_SET) != 0 || fread(b, 1, 8, f) != 8)
            rc = ps_err_set(err, PS_EIO, "cannot read '%s' at byte %llu (index entry %llu)", path,
                            (unsigned long long)pos, (unsigned long long)at[i]);
        else
            off[i] = get64(b);
    }
    fclose(f);
    if (rc != PS_OK)
        return rc;
    if (off[0] < PS_REC_HEADER_BYTES || off[0] > off[1] || off[1] > h->index_offset)
        return ps_err_set(err, PS_EFORMAT,
                          "'%s': index entries %llu and %llu (bytes %llu, %llu) are out of order "
                          "or past the records: damaged",
                          path, (unsigned long long)first, (unsigned long long)last,
                          (unsigned long long)off[0], (unsigned long long)off[1]);
    *start = off[0];
    *end = off[1];
    return PS_OK;
}

int ps_rec_writer_open(ps_rec_writer_t *w, const char *path, uint32_t kind, uint32_t d,
                       uint32_t dtype, ps_errbuf_t *err)
{
    memset(w, 0, sizeof *w);
    w->h.kind = kind;
    w->h.dtype = kind == PS_REC_DENSE ? dtype : PS_REC_F32;
    w->h.d = kind == PS_REC_DENSE ? d : 0;
    w->h.record_bytes = kind == PS_REC_DENSE ? ps_rec_dense_bytes(d, dtype) : 0;
    w->labels_are_classes = true;
    w->f = fopen(path, "wb");
    if (!w->f)
        return ps_err_set(err, PS_EIO, "cannot write '%s': %s", path, strerror(errno));
    w->path = ps_xstrdup(path);
    unsigned char head[PS_REC_HEADER_BYTES] = {0}; /* the real one at the end */
    if (fwrite(head, 1, sizeof head, w->f) != sizeof head) {
        ps_rec_writer_abort(w);
        return ps_err_set(err, PS_EIO, "cannot write '%s': %s", path, strerror(errno));
    }
    w->at = PS_REC_HEADER_BYTES;
    return PS_OK;
}

static void note_label(ps_rec_writer_t *w, float label)
{
    if (label < 0 || label != floorf(label) || label > 65535)
        w->labels_are_classes = false;
    else if ((uint32_t)label > w->max_label)
        w->max_label = (uint32_t)label;
}

static unsigned char *room(ps_rec_writer_t *w, size_t len)
{
    if (len > w->cap_buf) {
        w->cap_buf = len * 2;
        w->buf = ps_xrealloc(w->buf, w->cap_buf);
    }
    return w->buf;
}

/* Seals rec[0..len - 4) with its crc32 and appends it. */
static int emit(ps_rec_writer_t *w, unsigned char *rec, size_t len, ps_errbuf_t *err)
{
    put32(rec + len - 4, crc(rec, len - 4));
    if (fwrite(rec, 1, len, w->f) != len)
        return ps_err_set(err, PS_EIO, "cannot write '%s' at byte %llu: %s", w->path,
                          (unsigned long long)w->at, strerror(errno));
    w->at += len;
    w->h.n++;
    return PS_OK;
}

int ps_rec_write_dense(ps_rec_writer_t *w, float label, const uint8_t *u8, const float *f32,
                       ps_errbuf_t *err)
{
    unsigned char *rec = room(w, w->h.record_bytes);
    memcpy(rec, &label, 4);
    if (w->h.dtype == PS_REC_U8)
        memcpy(rec + 4, u8, w->h.d);
    else
        memcpy(rec + 4, f32, (size_t)w->h.d * 4);
    note_label(w, label);
    return emit(w, rec, w->h.record_bytes, err);
}

int ps_rec_write_sparse(ps_rec_writer_t *w, float label, const uint64_t *index, const float *vals,
                        uint32_t nf, ps_errbuf_t *err)
{
    size_t len = 8 + (size_t)nf * 12 + 4;
    unsigned char *rec = room(w, len);
    memcpy(rec, &label, 4);
    put32(rec + 4, nf);
    for (uint32_t j = 0; j < nf; j++) {
        put64(rec + 8 + (size_t)j * 12, index[j]);
        memcpy(rec + 8 + (size_t)j * 12 + 8, &vals[j], 4);
    }
    if (w->h.n == w->cap_offsets) {
        w->cap_offsets = w->cap_offsets ? w->cap_offsets * 2 : 4096;
        w->offsets = ps_xrealloc(w->offsets, w->cap_offsets * sizeof *w->offsets);
    }
    w->offsets[w->h.n] = w->at;
    w->h.nnz += nf;
    note_label(w, label);
    return emit(w, rec, len, err);
}

/* The index (sparse): every record's offset, then the index's own. */
static int write_index(ps_rec_writer_t *w)
{
    w->h.index_offset = w->at;
    unsigned char b[8];
    for (uint64_t i = 0; i <= w->h.n; i++) {
        put64(b, i < w->h.n ? w->offsets[i] : w->at);
        if (fwrite(b, 1, 8, w->f) != 8)
            return -1;
    }
    return 0;
}

int ps_rec_writer_close(ps_rec_writer_t *w, ps_errbuf_t *err)
{
    int bad = w->h.kind == PS_REC_SPARSE ? write_index(w) : 0;
    w->h.n_classes = w->labels_are_classes && w->h.n ? w->max_label + 1 : 0;
    unsigned char head[PS_REC_HEADER_BYTES];
    ps_rec_header_encode(&w->h, head);
    if (!bad &&
        (fseeko(w->f, 0, SEEK_SET) != 0 || fwrite(head, 1, sizeof head, w->f) != sizeof head))
        bad = -1;
    int e = errno;
    if (fclose(w->f) != 0 && !bad) {
        bad = -1;
        e = errno;
    }
    w->f = NULL;
    int rc = bad ? ps_err_set(err, PS_EIO, "cannot write '%s': %s", w->path, strerror(e)) : PS_OK;
    if (bad)
        unlink(w->path);
    free(w->path);
    free(w->offsets);
    free(w->buf);
    memset(w, 0, sizeof *w);
    return rc;
}

void ps_rec_writer_abort(ps_rec_writer_t *w)
{
    if (w->f)
        fclose(w->f);
    if (w->path)
        unlink(w->path);
    free(w->path);
    free(w->offsets);
    free(w->buf);
    memset(w, 0, sizeof *w);
}

/* The records of an open file, one by one: *rec (in a buffer of r's,
 * valid until the next call) and its length; 0 after the last. */
typedef struct {
    FILE *f;
    const char *path;
    ps_rec_header_t h;
    uint64_t i, at; /* the next record and its byte */
    unsigned char *buf;
    size_t cap;
} rec_reader_t;

static int next_record(rec_reader_t *r, const unsigned char **rec, size_t *len, ps_errbuf_t *err)
{
    if (r->i == r->h.n)
        return 0;
    size_t want = r->h.kind == PS_REC_DENSE ? r->h.record_bytes : 8;
    for (int part = 0; part < 2; part++) {
        if (want > r->cap) {
            r->cap = want * 2;
            r->buf = ps_xrealloc(r->buf, r->cap);
        }
        size_t have = part ? 8 : 0;
        if (fread(r->buf + have, 1, want - have, r->f) != want - have)
            return ps_err_set(err, PS_EFORMAT, "%s: record %llu (byte %llu): truncated", r->path,
                              (unsigned long long)r->i, (unsigned long long)r->at);
        if (r->h.kind == PS_REC_DENSE || part)
            break;
        want = 8 + (size_t)get32(r->buf + 4) * 12 + 4;
        if (want > r->h.index_offset - r->at)
            return ps_err_set(err, PS_EFORMAT,
                              "%s: record %llu (byte %llu): runs past the records: damaged",
                              r->path, (unsigned long long)r->i, (unsigned long long)r->at);
    }
    if (!ps_rec_crc_ok(r->buf, want))
        return ps_err_set(err, PS_EFORMAT,
                          "%s: record %llu (byte %llu): checksum mismatch: damaged", r->path,
                          (unsigned long long)r->i, (unsigned long long)r->at);
    *rec = r->buf;
    *len = want;
    r->i++;
    r->at += want;
    return 1;
}

static int open_records(rec_reader_t *r, const char *path, uint32_t kind, ps_errbuf_t *err)
{
    uint64_t bytes;
    memset(r, 0, sizeof *r);
    r->path = path;
    int rc = ps_rec_header_read(path, &r->h, &bytes, err);
    if (rc != PS_OK)
        return rc;
    if (r->h.kind != kind)
        return ps_err_set(err, PS_EFORMAT, "'%s' holds %s records; %s ones are needed here", path,
                          r->h.kind == PS_REC_DENSE ? "dense" : "sparse",
                          kind == PS_REC_DENSE ? "dense" : "sparse");
    r->f = fopen(path, "rb");
    if (!r->f || fseeko(r->f, PS_REC_HEADER_BYTES, SEEK_SET) != 0)
        return ps_err_set(err, PS_EIO, "cannot read '%s': %s", path, strerror(errno));
    r->at = PS_REC_HEADER_BYTES;
    return PS_OK;
}

static void close_records(rec_reader_t *r)
{
    if (r->f)
        fclose(r->f);
    free(r->buf);
    memset(r, 0, sizeof *r);
}

int ps_rec_load_dense(const char *path, ps_dataset_t *ds, ps_errbuf_t *err)
{
    rec_reader_t r;
    memset(ds, 0, sizeof *ds);
    int rc = open_records(&r, path, PS_REC_DENSE, err);
    size_t d = r.h.d;
    if (rc == PS_OK) {
        size_t count = r.h.n * d;
        ds->x = ps_xmalloc((count ? count : 1) * sizeof(float));
        ds->y = ps_xmalloc((r.h.n ? r.h.n : 1) * sizeof(float));
        ds->d = d;
        ds->n_classes = r.h.n_classes;
    }
    const unsigned char *rec;
    size_t len;
    while (rc == PS_OK && (rc = next_record(&r, &rec, &len, err)) == 1) {
        float *x = ds->x + ds->n * d;
        memcpy(&ds->y[ds->n], rec, 4);
        if (r.h.dtype == PS_REC_F32)
            memcpy(x, rec + 4, d * sizeof *x);
        for (size_t j = 0; r.h.dtype == PS_REC_U8 && j < d; j++)
            x[j] = (float)rec[4 + j] * PS_DATA_PIXEL_SCALE;
        ds->n++;
        rc = PS_OK;
    }
    close_records(&r);
    if (rc != PS_OK)
        ps_data_free(ds);
    return rc;
}

int ps_rec_load_sparse(const char *path, int hash_bits, ps_svm_t *d, ps_errbuf_t *err)
{
    rec_reader_t r;
    memset(d, 0, sizeof *d);
    int rc = open_records(&r, path, PS_REC_SPARSE, err);
    if (rc == PS_OK) {
        d->y = ps_xmalloc((r.h.n + 1) * sizeof *d->y);
        d->row_ptr = ps_xcalloc(r.h.n + 1, sizeof *d->row_ptr);
        d->keys = ps_xmalloc((r.h.nnz + 1) * sizeof *d->keys);
        d->vals = ps_xmalloc((r.h.nnz + 1) * sizeof *d->vals);
    }
    const unsigned char *rec;
    size_t len;
    while (rc == PS_OK && (rc = next_record(&r, &rec, &len, err)) == 1) {
        uint32_t nf = get32(rec + 4);
        rc = d->nnz + nf > r.h.nnz
                 ? ps_err_set(err, PS_EFORMAT,
                              "%s: record %llu: more features than the "
                              "header's %llu: damaged",
                              path, (unsigned long long)d->n, (unsigned long long)r.h.nnz)
                 : PS_OK;
        for (uint32_t j = 0; rc == PS_OK && j < nf; j++) {
            d->keys[d->nnz] = ps_svm_key(get64(rec + 8 + (size_t)j * 12), hash_bits);
            memcpy(&d->vals[d->nnz++], rec + 8 + (size_t)j * 12 + 8, 4);
        }
        memcpy(&d->y[d->n], rec, 4);
        d->row_ptr[++d->n] = d->nnz;
    }
    close_records(&r);
    if (rc != PS_OK)
        ps_svm_free(d);
    return rc;
}
