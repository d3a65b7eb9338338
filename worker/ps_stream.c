/* ps_stream.c - see ps_stream.h. The trainer thread calls the API; one
 * reader thread per stream reads, parses, shuffles and batches.
 *
 * Shuffle: each partition holds a window of W parsed samples; the next
 * sample of a pass is a seeded uniform pick from the window, whose slot is
 * then refilled from the file. W = 1 is file order; W >= the partition's
 * samples is a full shuffle. The seed is (seed, partition, pass), so a
 * partition's sample order depends on the partition alone.
 *
 * Reading: each file of a partition goes through a buffered source: a
 * plain file from a byte offset (lseek), or a gzip file inflated from its
 * start, since gzip cannot be seeked: the bytes before a range are
 * inflated and dropped, each pass (so readers of ranges of one .gz file
 * each inflate it up to their range's end; memory stays bounded, the bytes
 * read do not). A text corpus's files are bytes, gzip or not (as ps_text
 * reads them), so they are always read plain.
 *
 * Memory: W samples per partition (sparse rows keep their arrays; dense
 * slots are [label f32][features as stored: bytes or floats], grown as
 * the window fills), `prefetch` batches, one read buffer per file. */
#include "ps_stream.h"

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

#define READ_CHUNK (1 << 20)
#define MAX_ROW (1u << 24) /* dense values per sample: a 4096 x 4096 image */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void ps_partlist_fini(ps_partlist_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->parts[i].path);
        free(l->parts[i].labels);
    }
    free(l->parts);
    memset(l, 0, sizeof *l);
}

bool ps_stream_names_many(const char *train_data)
{
    struct stat st;
    return strpbrk(train_data, "*?[") || (stat(train_data, &st) == 0 && S_ISDIR(st.st_mode));
}

/* The regular files of dir (no dot files), sorted, into names[0..*n). */
static int list_dir(const char *dir, char ***names, size_t *n, ps_errbuf_t *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return ps_err_set(err, PS_EIO, "cannot read directory '%s': %s", dir, strerror(errno));
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *names = ps_xrealloc(*names, cap * sizeof **names);
        }
        (*names)[(*n)++] = ps_xstrdup(path);
    }
    closedir(d);
    qsort(*names, *n, sizeof **names, cmp_str);
    return PS_OK;
}

static bool is_gzip(const char *path)
{
    unsigned char magic[2] = {0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    size_t got = fread(magic, 1, 2, f);
    fclose(f);
    return got == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
}

/* One file cut into n byte ranges. */
static int split_file(const char *path, uint32_t n, ps_partlist_t *out, ps_errbuf_t *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return ps_err_set(err, PS_EIO, "cannot read '%s': %s", path, strerror(errno));
    if (n > 1 && is_gzip(path))
        return ps_err_set(err, PS_EINVAL,
                          "'%s' is gzip-compressed and cannot be cut into %u byte ranges: give "
                          "the data as several files (a directory or a pattern)",
                          path, n);
    uint64_t size = (uint64_t)st.st_size;
    out->parts = ps_xcalloc(n, sizeof *out->parts);
    out->n = n;
    for (uint32_t p = 0; p < n; p++) {
        out->parts[p] = (ps_part_t){.path = ps_xstrdup(path),
                                    .start = size * p / n,
                                    .end = n == 1 ? UINT64_MAX : size * (p + 1) / n,
                                    .count = UINT64_MAX};
    }
    return PS_OK;
}

int ps_stream_partitions(const char *train_data, uint32_t n_partitions, uint32_t world,
                         ps_partlist_t *out, ps_errbuf_t *err)
{
    memset(out, 0, sizeof *out);
    if (!ps_stream_names_many(train_data))
        return split_file(train_data, n_partitions ? n_partitions : world, out, err);
    char **names = NULL;
    size_t n = 0;
    struct stat st;
    int rc = PS_OK;
    if (stat(train_data, &st) == 0 && S_ISDIR(st.st_mode)) {
        rc = list_dir(train_data, &names, &n, err);
    } else {
        glob_t g;
        if (glob(train_data, 0, NULL, &g) == 0) {
            names = ps_xcalloc(g.gl_pathc + 1, sizeof *names);
            for (size_t i = 0; i < g.gl_pathc; i++)
                names[n++] = ps_xstrdup(g.gl_pathv[i]); /* glob sorts */
        }
        globfree(&g);
    }
    if (rc == PS_OK && n == 0)
        rc = ps_err_set(err, PS_EINVAL, "train_data '%s' names no files", train_data);
    if (rc == PS_OK && n_partitions && n_partitions != n)
        rc = ps_err_set(err, PS_EINVAL,
                        "partitions %u: train_data '%s' names %zu files, one partition each",
                        n_partitions, train_data, n);
    if (rc == PS_OK) {
        out->parts = ps_xcalloc(n, sizeof *out->parts);
        out->n = n;
        for (size_t i = 0; i < n; i++)
            out->parts[i] = (ps_part_t){.path = names[i], .end = UINT64_MAX, .count = UINT64_MAX};
    } else {
        for (size_t i = 0; i < n; i++)
            free(names[i]);
    }
    free(names);
    return rc;
}

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

static void src_close(src_t *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    if (r->gz)
        gzclose(r->gz);
    r->gz = NULL;
}

static void src_fini(src_t *r)
{
    src_close(r);
    free(r->buf);
    r->buf = NULL;
    r->cap = 0;
}

/* Opens r at byte `from` of path (a gzip file: inflated up to it), to be
 * read up to byte limit (UINT64_MAX: the end). */
static int src_open(src_t *r, const char *path, uint64_t from, uint64_t limit, ps_errbuf_t *err)
{
    src_close(r);
    r->path = path;
    r->len = r->pos = 0;
    r->at_eof = false;
    r->offset = from;
    r->limit = limit;
    if (!r->raw && is_gzip(path)) {
        r->gz = gzopen(path, "rb");
        if (!r->gz)
            return ps_err_set(err, PS_EIO, "cannot read '%s': %s", path, strerror(errno));
        gzbuffer(r->gz, 1 << 17);
        if (from && gzseek(r->gz, (z_off_t)from, SEEK_SET) != (z_off_t)from) {
            int e;
            return ps_err_set(err, PS_EFORMAT, "'%s': cannot inflate up to byte %llu: %s", path,
                              (unsigned long long)from, gzerror(r->gz, &e));
        }
        atomic_fetch_add(r->bytes_read, from);
        return PS_OK;
    }
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0 || lseek(r->fd, (off_t)from, SEEK_SET) < 0)
        return ps_err_set(err, PS_EIO, "cannot read '%s': %s", path, strerror(errno));
    return PS_OK;
}

/* Reads more of r's file into its buffer (keeping the unread tail). */
static int src_refill(src_t *r, ps_errbuf_t *err)
{
    if (r->pos) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->pos = 0;
    }
    if (r->cap - r->len < READ_CHUNK / 2) {
        r->cap = r->cap ? r->cap * 2 : READ_CHUNK;
        r->buf = ps_xrealloc(r->buf, r->cap + 1);
    }
    size_t want = r->cap - r->len;
    uint64_t end = r->offset + r->len; /* the file offset of the next byte read */
    if (r->limit != UINT64_MAX)
        want = end >= r->limit ? 0 : r->limit - end < want ? (size_t)(r->limit - end) : want;
    ssize_t got = 0;
    if (want == 0) {
        got = 0; /* the limit: as if the file ended there */
    } else if (r->gz) {
        got = gzread(r->gz, r->buf + r->len, (unsigned)want);
        if (got < 0) {
            int e;
            const char *msg = gzerror(r->gz, &e);
            return ps_err_set(err, PS_EIO, "cannot read '%s' after byte %llu: %s", r->path,
                              (unsigned long long)(r->offset + r->len), msg);
        }
    } else {
        do
            got = read(r->fd, r->buf + r->len, want);
        while (got < 0 && errno == EINTR);
        if (got < 0)
            return ps_err_set(err, PS_EIO, "cannot read '%s' at byte %llu: %s", r->path,
                              (unsigned long long)(r->offset + r->len), strerror(errno));
    }
    atomic_fetch_add(r->bytes_read, (uint64_t)got);
    r->len += (size_t)got;
    if (got == 0)
        r->at_eof = true;
    return PS_OK;
}

/* The next len bytes of r, in its buffer (valid until the next call), not
 * consumed: 1, 0 if the file ends first (*have: how many it has). */
static int src_peek(src_t *r, size_t len, const unsigned char **at, size_t *have, ps_errbuf_t *err)
{
    while (r->len - r->pos < len && !r->at_eof) {
        int rc = src_refill(r, err);
        if (rc != PS_OK)
            return rc;
    }
    *have = r->len - r->pos;
    *at = (const unsigned char *)r->buf + r->pos;
    return *have >= len ? 1 : 0;
}

static void src_skip(src_t *r, size_t len)
{
    r->pos += len;
    r->offset += len;
}

static void close_part(part_reader_t *p)
{
    src_close(&p->src);
    src_close(&p->lab);
}

/* Where an error in p happened: "PATH:LINE" (a whole text file), "PATH:
 * byte N" (a byte range), "PATH: record R (byte N)" (IDX, records). */
static int where(const part_reader_t *p, uint64_t at, char *buf, size_t cap)
{
    const ps_part_t *part = p->part;
    if (p->windows)
        return snprintf(buf, cap, "%s: window %llu (byte %llu)", part->path,
                        (unsigned long long)(part->first + p->done), (unsigned long long)at);
    if (part->count != UINT64_MAX)
        return snprintf(buf, cap, "%s: record %llu (byte %llu)", part->path,
                        (unsigned long long)(part->first + p->done), (unsigned long long)at);
    if (part->end == UINT64_MAX)
        return snprintf(buf, cap, "%s:%llu", part->path, (unsigned long long)p->lineno);
    return snprintf(buf, cap, "%s: byte %llu", part->path, (unsigned long long)at);
}

/* err = "WHERE: why" for a sample of p at byte at. */
static int located(const part_reader_t *p, uint64_t at, int rc, const char *why, ps_errbuf_t *err)
{
    char loc[4200];
    where(p, at, loc, sizeof loc);
    return ps_err_set(err, rc, "%s: %s", loc, why);
}

/* Opens p for a pass: its file(s) at its first line or record. */
static int open_pass(ps_stream_t *s, part_reader_t *p, ps_errbuf_t *err)
{
    const ps_part_t *part = p->part;
    p->lineno = p->done = 0;
    p->n_window = 0;
    ps_rng_seed(&p->rng, ps_rng_mix(ps_rng_mix(s->o.seed, p->id), p->passes_done + 1));
    if (part->labels) {
        int rc = src_open(&p->lab, part->labels, part->labels_start,
                          part->labels_start + part->count, err);
        if (rc != PS_OK)
            return rc;
    }
    if (part->count != UINT64_MAX) /* records: exactly their bytes */
        return src_open(&p->src, part->path, part->start, part->end, err);
    /* a text range's first line starts after the first '\n' at or after start - 1 */
    uint64_t from = part->start ? part->start - 1 : 0;
    return src_open(&p->src, part->path, from, UINT64_MAX, err);
}

/* The first '\n' in the unread part of r's buffer, or NULL. */
static char *unread_newline(const src_t *r)
{
    if (r->pos >= r->len)
        return NULL;
    return memchr(r->buf + r->pos, '\n', r->len - r->pos);
}

/* Drops the tail of the line before a text range (the reader starts one
 * byte early, so a range starting at a line's first byte keeps it). */
static int skip_to_range(part_reader_t *p, ps_errbuf_t *err)
{
    src_t *r = &p->src;
    while (r->offset < p->part->start) {
        char *nl = unread_newline(r);
        if (nl) {
            src_skip(r, (size_t)(nl + 1 - (r->buf + r->pos)));
            return PS_OK;
        }
        src_skip(r, r->len - r->pos);
        if (r->at_eof)
            return PS_OK;
        int rc = src_refill(r, err);
        if (rc != PS_OK)
            return rc;
    }
    return PS_OK;
}

/* The next line of p's range into *line (NUL-terminated, in p's buffer,
 * valid until the next call) and its file offset; 0 at the range's end. */
static int next_line(part_reader_t *p, char **line, uint64_t *line_offset, ps_errbuf_t *err)
{
    src_t *r = &p->src;
    int rc = skip_to_range(p, err);
    if (rc != PS_OK)
        return rc;
    if (r->offset < p->part->start || r->offset >= p->part->end)
        return 0;
    for (;;) {
        char *nl = unread_newline(r);
        if (nl || (r->at_eof && r->pos < r->len)) {
            char *start = r->buf + r->pos, *stop = nl ? nl : r->buf + r->len;
            *stop = '\0';
            *line = start;
            *line_offset = r->offset;
            src_skip(r, (size_t)(stop - start) + (nl ? 1 : 0));
            p->lineno++;
            return 1;
        }
        if (r->at_eof)
            return 0;
        if ((rc = src_refill(r, err)) != PS_OK)
            return rc;
    }
}

static unsigned char *slot_at(const ps_stream_t *s, const part_reader_t *p, uint32_t i)
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
        int rc = next_line(p, &line, &at, err);
        if (rc <= 0)
            return rc;
        ps_errbuf_t why = {0};
        if (s->sparse)
            rc = ps_svm_parse_line(line, s->o.hash_bits, &p->rows[p->n_window], &why);
        else
            rc = parse_csv(s, line, at, slot_at(s, p, p->n_window), &why);
        if (rc < 0)
            return located(p, at, rc, why.msg, err);
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
    int rc = src_peek(r, len, at, &have, err);
    if (rc != 0)
        return rc;
    char msg[160];
    snprintf(msg, sizeof msg, "'%s' ends at byte %llu: truncated (its header promises more)",
             r->path, (unsigned long long)(r->offset + have));
    return located(p, p->src.offset, PS_EFORMAT, msg, err);
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
    unsigned char *slot = slot_at(s, p, p->n_window);
    float y = lb[0];
    memcpy(slot, &y, 4);
    memcpy(slot + 4, px, s->d);
    src_skip(&p->src, s->d);
    src_skip(&p->lab, 1);
    ps_errbuf_t why = {0};
    if (check_label(s, y, &why) != PS_OK)
        return located(p, at, PS_EFORMAT, why.msg, err);
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
        return located(p, at, PS_EFORMAT, "checksum mismatch: the record is damaged", err);
    unsigned char *slot = slot_at(s, p, p->n_window);
    memcpy(slot, rec, s->slot_bytes);
    src_skip(&p->src, s->rec.record_bytes);
    float y;
    memcpy(&y, slot, 4);
    ps_errbuf_t why = {0};
    rc = check_label(s, y, &why);
    const float *x = (const float *)(const void *)(slot + 4);
    for (size_t j = 0; rc == PS_OK && s->esize == 4 && j < s->d; j++)
        if (!isfinite(x[j]))
            rc = ps_err_set(&why, PS_EFORMAT, "feature %zu is not a finite number", j + 1);
    return rc == PS_OK ? 1 : located(p, at, rc, why.msg, err);
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
        return located(p, at, PS_EFORMAT, "record runs past its range's end: damaged", err);
    if ((rc = take_record(p, &p->src, len, &rec, err)) != 1)
        return rc;
    if (!ps_rec_crc_ok(rec, len))
        return located(p, at, PS_EFORMAT, "checksum mismatch: the record is damaged", err);
    ps_errbuf_t why = {0};
    if ((rc = decode_sparse(s, rec, nf, &p->rows[p->n_window], &why)) != PS_OK)
        return located(p, at, rc, why.msg, err);
    src_skip(&p->src, len);
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
    return located(p, at, PS_EFORMAT, msg, err);
}

/* A text corpus window into the window's next place: its bytes (each
 * below the token limit), label 0; then the reader moves on to the next
 * window's start (stride bytes on; the windows may overlap). */
static int read_window(ps_stream_t *s, part_reader_t *p, ps_errbuf_t *err)
{
    const unsigned char *w = NULL;
    size_t have = 0;
    uint64_t at = p->src.offset;
    int rc = src_peek(&p->src, s->d, &w, &have, err);
    if (rc != 1)
        return rc < 0 ? rc : window_gone(p, at, have, err);
    unsigned char *slot = slot_at(s, p, p->n_window);
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
        return located(p, at, PS_EFORMAT, msg, err);
    }
    if (p->done + 1 == p->part->count)
        return 1; /* the last: its range's bytes end with it */
    if ((rc = src_peek(&p->src, s->stride, &w, &have, err)) != 1)
        return rc < 0 ? rc : window_gone(p, at, have, err);
    src_skip(&p->src, s->stride);
    return 1;
}

/* The next sample of p into its window's next place: 1, 0 at the end of
 * its range, or an error. */
static int read_sample(ps_stream_t *s, part_reader_t *p, ps_errbuf_t *err)
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

/* Fills p's window from its file, up to shuffle_window samples. */
static int fill_window(ps_stream_t *s, part_reader_t *p, ps_errbuf_t *err)
{
    while (p->n_window < s->o.shuffle_window) {
        if (!s->sparse && p->n_window == p->cap_slots) { /* doubled from 1: see append_dense */
            uint32_t cap = p->cap_slots ? p->cap_slots * 2 : 1;
            p->cap_slots = cap < s->o.shuffle_window ? cap : s->o.shuffle_window;
            p->slots = ps_xrealloc(p->slots, (size_t)p->cap_slots * s->slot_bytes);
        }
        int rc = read_sample(s, p, err);
        if (rc <= 0)
            return rc;
        p->n_window++;
    }
    return PS_OK;
}

static void append_sparse(ps_svm_t *d, const ps_svm_row_t *row, size_t *cap_n, size_t *cap_nnz)
{
    if (d->n + 2 > *cap_n) {
        *cap_n = (d->n + 2) * 2;
        d->y = ps_xrealloc(d->y, *cap_n * sizeof *d->y);
        d->row_ptr = ps_xrealloc(d->row_ptr, *cap_n * sizeof *d->row_ptr);
    }
    if (d->nnz + row->nf > *cap_nnz) {
        *cap_nnz = (d->nnz + row->nf) * 2;
        d->keys = ps_xrealloc(d->keys, *cap_nnz * sizeof *d->keys);
        d->vals = ps_xrealloc(d->vals, *cap_nnz * sizeof *d->vals);
    }
    if (d->n == 0)
        d->row_ptr[0] = 0;
    d->y[d->n] = row->y;
    if (row->nf) { /* a sample without features may have no arrays at all */
        memcpy(d->keys + d->nnz, row->keys, row->nf * sizeof *d->keys);
        memcpy(d->vals + d->nnz, row->vals, row->nf * sizeof *d->vals);
    }
    d->nnz += row->nf;
    d->row_ptr[++d->n] = d->nnz;
}

/* A dense slot as floats at the end of batch b (its arrays hold batch_size). */
static void append_dense(const ps_stream_t *s, batch_slot_t *bs, const unsigned char *slot,
                         uint64_t place)
{
    ps_stream_batch_t *b = &bs->b;
    if (b->dense.n == bs->cap_n) { /* grown with what was read, not with what a header says */
        bs->cap_n = bs->cap_n ? bs->cap_n * 2 : 8;
        if (bs->cap_n > s->o.batch_size)
            bs->cap_n = (size_t)s->o.batch_size;
        b->dense.x = ps_xrealloc(b->dense.x, bs->cap_n * s->d * sizeof *b->dense.x);
        b->dense.y = ps_xrealloc(b->dense.y, bs->cap_n * sizeof *b->dense.y);
        b->dense.place = ps_xrealloc(b->dense.place, bs->cap_n * sizeof *b->dense.place);
    }
    size_t i = b->dense.n++;
    float *x = b->dense.x + i * s->d;
    memcpy(&b->dense.y[i], slot, 4);
    b->dense.place[i] = place;
    if (s->esize == 4) {
        memcpy(x, slot + 4, s->d * sizeof *x);
        return;
    }
    for (size_t j = 0; j < s->d; j++)
        x[j] = (float)slot[4 + j] * s->byte_scale;
}

/* Moves window sample j of p to the batch; the last sample takes its place. */
static void pick(ps_stream_t *s, part_reader_t *p, uint32_t j, uint32_t i, batch_slot_t *slot)
{
    uint32_t last = p->n_window - 1;
    if (s->sparse) {
        append_sparse(&slot->b.data, &p->rows[j], &slot->cap_n, &slot->cap_nnz);
        ps_svm_row_t used = p->rows[j]; /* to the end, to be refilled: it keeps its arrays */
        p->rows[j] = p->rows[last];
        p->rows[last] = used;
    } else {
        append_dense(s, slot, slot_at(s, p, j), (uint64_t)p->id << 32 | i);
        if (j != last)
            memcpy(slot_at(s, p, j), slot_at(s, p, last), s->slot_bytes);
    }
    p->n_window = last;
}

/* Partition p's part of the batch being built in slot: starts its next
 * pass if the last one ended, then moves up to p->batch samples from its
 * window. */
static int take(ps_stream_t *s, part_reader_t *p, batch_slot_t *slot, ps_errbuf_t *err)
{
    int rc;
    if (p->exhausted)
        return PS_OK;
    if (!p->in_pass) {
        if ((rc = open_pass(s, p, err)) != PS_OK || (rc = fill_window(s, p, err)) != PS_OK)
            return rc;
        p->in_pass = true;
        if (p->n_window == 0) { /* an empty partition has no passes at all */
            p->exhausted = true;
            p->passes_done = s->o.epochs;
            close_part(p);
            return PS_OK;
        }
    }
    for (uint32_t i = 0; i < p->batch && p->n_window; i++) {
        pick(s, p, (uint32_t)ps_rng_below(&p->rng, p->n_window), i, slot);
        if ((rc = fill_window(s, p, err)) != PS_OK)
            return rc;
    }
    if (p->n_window == 0) {
        p->in_pass = false;
        if (++p->passes_done >= s->o.epochs)
            p->exhausted = true;
        close_part(p);
    }
    return PS_OK;
}

/* The worker's next batch into slot (its arrays reused): returns 1, or 0
 * when no partition has any left. */
static int build(ps_stream_t *s, batch_slot_t *slot, uint64_t index, uint64_t samples_before,
                 ps_errbuf_t *err)
{
    ps_stream_batch_t *b = &slot->b;
    b->data.n = b->data.nnz = 0;
    b->dense.n = 0;
    b->index = index;
    b->samples_before = samples_before;
    uint32_t epochs_done = s->o.epochs;
    b->epochs_before = s->o.epochs;
    for (size_t j = 0; j < s->n_mine; j++)
        if (s->mine[j].passes_done < b->epochs_before)
            b->epochs_before = s->mine[j].passes_done;
    bool any_left = false;
    for (size_t j = 0; j < s->n_mine; j++) {
        part_reader_t *p = &s->mine[j];
        int rc = take(s, p, slot, err);
        if (rc != PS_OK)
            return rc;
        if (p->passes_done < epochs_done)
            epochs_done = p->passes_done;
        any_left |= !p->exhausted;
    }
    b->epochs_done = epochs_done;
    return b->data.n + b->dense.n > 0 || any_left ? 1 : 0;
}

static void reset_parts(ps_stream_t *s)
{
    for (size_t j = 0; j < s->n_mine; j++) {
        part_reader_t *p = &s->mine[j];
        close_part(p);
        p->n_window = 0;
        p->passes_done = 0;
        p->in_pass = p->exhausted = false;
    }
}

/* The reader thread: batches into free slots of the ring until the end, an
 * error or a stop. The first s->skip batches are built and dropped. It
 * sleeps only when the ring is full, and ps_stream_next wakes it only once
 * half of the ring is free, so it builds batches in runs rather than one
 * per step (each wake-up on a busy machine can preempt training). */
static void reader_loop(ps_stream_t *s)
{
    ps_errbuf_t err = {0};
    uint64_t samples = 0;
    int rc = 1;
    for (uint64_t index = 0;; index++) {
        pthread_mutex_lock(&s->mu);
        while (!s->stopping && s->n_ready + s->holding >= s->o.prefetch)
            pthread_cond_wait(&s->room, &s->mu); /* woken by ps_stream_next or a stop */
        bool stop = s->stopping;
        uint32_t at = (s->head + s->n_ready + s->holding) % s->o.prefetch;
        pthread_mutex_unlock(&s->mu);
        if (stop)
            return;
        /* only this thread touches slots outside [head, head + n_ready + holding) */
        batch_slot_t *slot = &s->slots[at];
        while ((rc = build(s, slot, index, samples, &err)) == 1 && index < s->skip) {
            samples += slot->b.data.n + slot->b.dense.n;
            index++;
            pthread_mutex_lock(&s->mu);
            stop = s->stopping;
            pthread_mutex_unlock(&s->mu);
            if (stop)
                return;
        }
        if (rc != 1)
            break;
        samples += slot->b.data.n + slot->b.dense.n;
        pthread_mutex_lock(&s->mu);
        s->n_ready++;
        pthread_cond_signal(&s->ready);
        pthread_mutex_unlock(&s->mu);
    }
    pthread_mutex_lock(&s->mu);
    s->ended = true;
    s->reader_rc = rc;
    if (rc < 0)
        s->reader_err = err;
    pthread_cond_signal(&s->ready);
    pthread_mutex_unlock(&s->mu);
}

static double thread_cpu_s(clockid_t clock)
{
    struct timespec ts;
    return clock_gettime(clock, &ts) == 0 ? (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 : 0;
}

static void *reader_main(void *arg)
{
    ps_stream_t *s = arg;
    reader_loop(s);
    double cpu = thread_cpu_s(CLOCK_THREAD_CPUTIME_ID);
    pthread_mutex_lock(&s->mu);
    s->cpu_done_s += cpu;
    s->cpu_added = true;
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* CSV: the columns of the first line of partition 0 (a header counts). */
static int probe_csv(ps_stream_t *s, ps_errbuf_t *err)
{
    part_reader_t p = {.part = &s->all.parts[0], .src = {.fd = -1, .bytes_read = &s->bytes_read}};
    char *line = NULL;
    uint64_t at = 0;
    int rc = src_open(&p.src, p.part->path, 0, UINT64_MAX, err);
    while (rc == PS_OK && (rc = next_line(&p, &line, &at, err)) == 1 && !ps_data_csv_fields(line))
        ;
    size_t nf = rc == 1 ? ps_data_csv_fields(line) : 0;
    src_fini(&p.src);
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
    int rc = src_open(&r, path, from, from + n, err);
    uint64_t seen = 0;
    unsigned max = 0;
    while (rc == PS_OK && seen < n) {
        if (r.pos == r.len && r.at_eof)
            break;
        if (r.pos == r.len && (rc = src_refill(&r, err)) != PS_OK)
            break;
        for (; r.pos < r.len && seen < n; r.pos++, seen++)
            max = (unsigned char)r.buf[r.pos] > max ? (unsigned char)r.buf[r.pos] : max;
    }
    src_fini(&r);
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
        rc = split_file(o->train_data, 1, &files, err);
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
static int make_parts(ps_stream_t *s, ps_errbuf_t *err)
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

/* The ring of batches (their arrays grow as samples come). */
static void make_ring(ps_stream_t *s)
{
    s->slots = ps_xcalloc(s->o.prefetch, sizeof *s->slots);
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->ready, &ca);
    pthread_cond_init(&s->room, NULL);
    pthread_condattr_destroy(&ca);
}

ps_stream_t *ps_stream_new(const ps_stream_opts_t *opts, ps_errbuf_t *err)
{
    ps_stream_t *s = ps_xcalloc(1, sizeof *s);
    s->o = *opts;
    if (s->o.prefetch < 1)
        s->o.prefetch = 1;
    if (s->o.shuffle_window < 1)
        s->o.shuffle_window = 1;
    s->byte_scale = PS_DATA_PIXEL_SCALE;
    if (make_parts(s, err) != PS_OK) {
        ps_partlist_fini(&s->all);
        free(s);
        return NULL;
    }
    s->slot_bytes = 4 + s->d * s->esize;
    s->mine = ps_xcalloc(s->all.n / opts->world + 1, sizeof *s->mine);
    bool text = opts->format == PS_STREAM_TEXT;
    for (size_t p = opts->rank; p < s->all.n; p += opts->world)
        s->mine[s->n_mine++] =
            (part_reader_t){.part = &s->all.parts[p],
                            .id = (uint32_t)p,
                            .src = {.fd = -1, .bytes_read = &s->bytes_read, .raw = text},
                            .lab = {.fd = -1, .bytes_read = &s->bytes_read},
                            .windows = text};
    if (s->n_mine && opts->batch_size < s->n_mine) {
        ps_err_set(err, PS_EINVAL, "batch_size %llu is below the %zu partitions worker %u reads",
                   (unsigned long long)opts->batch_size, s->n_mine, opts->rank);
        ps_stream_destroy(&s);
        return NULL;
    }
    for (size_t j = 0; j < s->n_mine; j++) {
        part_reader_t *p = &s->mine[j];
        p->batch = (uint32_t)(opts->batch_size / s->n_mine + (j < opts->batch_size % s->n_mine));
        if (s->sparse)
            p->rows = ps_xcalloc(s->o.shuffle_window, sizeof *p->rows);
    }
    make_ring(s);
    return s;
}

static void stop_reader(ps_stream_t *s)
{
    if (!s->has_thread)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->room);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    s->has_thread = false;
}

int ps_stream_start(ps_stream_t *s, uint64_t skip, ps_errbuf_t *err)
{
    stop_reader(s);
    reset_parts(s);
    s->head = s->n_ready = 0;
    s->holding = s->ended = s->stopping = s->cpu_added = false;
    s->reader_rc = 0;
    s->skip = skip;
    /* signals go to the trainer thread, whose loop checks the stop flag */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&s->thread, NULL, reader_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0)
        return ps_err_set(err, PS_ENOMEM, "cannot start the data reader thread: %s", strerror(e));
    s->has_thread = true;
    return PS_OK;
}

int ps_stream_next(ps_stream_t *s, const ps_stream_batch_t **batch, ps_errbuf_t *err)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += s->o.wait_timeout_ms / 1000;
    deadline.tv_nsec += (s->o.wait_timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&s->mu);
    if (s->holding) {
        s->holding = false;
        s->head = (s->head + 1) % s->o.prefetch;
        if (s->n_ready <= s->o.prefetch / 2)
            pthread_cond_signal(&s->room);
    }
    int rc = 0;
    int64_t t0 = !s->n_ready && !s->ended ? ps_time_ns() : 0; /* only a real wait counts */
    while (!s->n_ready && !s->ended && rc == 0)
        rc = pthread_cond_timedwait(&s->ready, &s->mu, &deadline);
    if (t0)
        s->wait_s += (double)(ps_time_ns() - t0) / 1e9;
    if (s->n_ready) {
        s->n_ready--;
        s->holding = true;
        *batch = &s->slots[s->head].b;
        rc = 1;
    } else if (s->ended) {
        rc = s->reader_rc;
        if (rc < 0)
            ps_err_set(err, rc, "%s", s->reader_err.msg);
    } else {
        rc = ps_err_set(err, PS_ETIME,
                        "worker %u: no training batch from the data reader in %lld ms", s->o.rank,
                        (long long)s->o.wait_timeout_ms);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void ps_stream_destroy(ps_stream_t **sp)
{
    ps_stream_t *s = *sp;
    if (!s)
        return;
    stop_reader(s);
    for (size_t j = 0; j < s->n_mine; j++) {
        part_reader_t *p = &s->mine[j];
        src_fini(&p->src);
        src_fini(&p->lab);
        for (uint32_t i = 0; p->rows && i < s->o.shuffle_window; i++)
            ps_svm_row_fini(&p->rows[i]);
        free(p->rows);
        free(p->slots);
    }
    if (s->slots) {
        for (uint32_t i = 0; i < s->o.prefetch; i++) {
            ps_svm_free(&s->slots[i].b.data);
            free(s->slots[i].b.dense.x);
            free(s->slots[i].b.dense.y);
            free(s->slots[i].b.dense.place);
        }
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->ready);
        pthread_cond_destroy(&s->room);
    }
    free(s->slots);
    free(s->mine);
    ps_partlist_fini(&s->all);
    free(s);
    *sp = NULL;
}

/* Partition p's share of its reader's batch (ps_stream_new's rule). */
static uint64_t share_of(const ps_stream_t *s, size_t p)
{
    uint64_t world = s->o.world, r = p % world, j = p / world, b = s->o.batch_size;
    uint64_t k = (s->all.n - r + world - 1) / world; /* the partitions rank r reads */
    return b / k + (j < b % k);
}

/* The most batches one pass of any partition takes; 0 if a size is unknown. */
uint64_t ps_stream_steps_per_pass(const ps_stream_t *s)
{
    uint64_t most = 0;
    for (size_t p = 0; p < s->all.n; p++) {
        uint64_t count = s->all.parts[p].count, share = share_of(s, p);
        if (count == UINT64_MAX)
            return 0;
        if (share && (count + share - 1) / share > most)
            most = (count + share - 1) / share;
    }
    return most;
}

uint64_t ps_stream_job_steps(const ps_stream_t *s)
{
    return ps_stream_steps_per_pass(s) * s->o.epochs;
}

double ps_stream_wait_s(const ps_stream_t *s)
{
    return s->wait_s;
}

double ps_stream_reader_cpu_s(ps_stream_t *s)
{
    pthread_mutex_lock(&s->mu);
    double cpu = s->cpu_done_s;
    clockid_t clock;
    if (s->has_thread && !s->cpu_added && pthread_getcpuclockid(s->thread, &clock) == 0)
        cpu += thread_cpu_s(clock);
    pthread_mutex_unlock(&s->mu);
    return cpu;
}

uint64_t ps_stream_bytes_read(const ps_stream_t *s)
{
    return atomic_load(&s->bytes_read);
}

size_t ps_stream_n_parts(const ps_stream_t *s)
{
    return s->n_mine;
}

bool ps_stream_is_sparse(const ps_stream_t *s)
{
    return s->sparse;
}

size_t ps_stream_row_len(const ps_stream_t *s)
{
    return s->d;
}

uint32_t ps_stream_n_classes(const ps_stream_t *s)
{
    return s->n_classes;
}

uint64_t ps_stream_n_samples(const ps_stream_t *s)
{
    return s->n_samples;
}

void ps_stream_set_label_limit(ps_stream_t *s, uint32_t limit)
{
    s->label_limit = limit;
}

void ps_stream_set_token_limit(ps_stream_t *s, uint32_t limit)
{
    s->token_limit = limit;
}
