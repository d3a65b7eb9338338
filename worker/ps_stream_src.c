/* ps_stream_src.c - buffered sources (a plain file from an offset, or gzip
 * inflated from its start) and a partition's place in its files: passes,
 * lines, and where an offset is for errors. */
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

static void src_close(src_t *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    if (r->gz)
        gzclose(r->gz);
    r->gz = NULL;
}

void pssm_src_fini(src_t *r)
{
    src_close(r);
    free(r->buf);
    r->buf = NULL;
    r->cap = 0;
}

/* Opens r at byte `from` of path (a gzip file: inflated up to it), to be
 * read up to byte limit (UINT64_MAX: the end). */
int pssm_src_open(src_t *r, const char *path, uint64_t from, uint64_t limit, ps_errbuf_t *err)
{
    src_close(r);
    r->path = path;
    r->len = r->pos = 0;
    r->at_eof = false;
    r->offset = from;
    r->limit = limit;
    if (!r->raw && pssm_is_gzip(path)) {
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
int pssm_src_refill(src_t *r, ps_errbuf_t *err)
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
int pssm_src_peek(src_t *r, size_t len, const unsigned char **at, size_t *have, ps_errbuf_t *err)
{
    while (r->len - r->pos < len && !r->at_eof) {
        int rc = pssm_src_refill(r, err);
        if (rc != PS_OK)
            return rc;
    }
    *have = r->len - r->pos;
    *at = (const unsigned char *)r->buf + r->pos;
    return *have >= len ? 1 : 0;
}

void pssm_src_skip(src_t *r, size_t len)
{
    r->pos += len;
    r->offset += len;
}

void pssm_close_part(part_reader_t *p)
{
    src_close(&p->src);
    src_close(&p->lab);
}

/* Where an error in p happened: "PATH:LINE" (a whole text file), "PATH:
 * byte N" (a byte range), "PATH: record R (byte N)" (IDX, records). */
int pssm_where(const part_reader_t *p, uint64_t at, char *buf, size_t cap)
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
int pssm_located(const part_reader_t *p, uint64_t at, int rc, const char *why, ps_errbuf_t *err)
{
    char loc[4200];
    pssm_where(p, at, loc, sizeof loc);
    return ps_err_set(err, rc, "%s: %s", loc, why);
}

/* Opens p for a pass: its file(s) at its first line or record. */
int pssm_open_pass(ps_stream_t *s, part_reader_t *p, ps_errbuf_t *err)
{
    const ps_part_t *part = p->part;
    p->lineno = p->done = 0;
    p->n_window = 0;
    ps_rng_seed(&p->rng, ps_rng_mix(ps_rng_mix(s->o.seed, p->id), p->passes_done + 1));
    if (part->labels) {
        int rc = pssm_src_open(&p->lab, part->labels, part->labels_start,
                               part->labels_start + part->count, err);
        if (rc != PS_OK)
            return rc;
    }
    if (part->count != UINT64_MAX) /* records: exactly their bytes */
        return pssm_src_open(&p->src, part->path, part->start, part->end, err);
    /* a text range's first line starts after the first '\n' at or after start - 1 */
    uint64_t from = part->start ? part->start - 1 : 0;
    return pssm_src_open(&p->src, part->path, from, UINT64_MAX, err);
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
            pssm_src_skip(r, (size_t)(nl + 1 - (r->buf + r->pos)));
            return PS_OK;
        }
        pssm_src_skip(r, r->len - r->pos);
        if (r->at_eof)
            return PS_OK;
        int rc = pssm_src_refill(r, err);
        if (rc != PS_OK)
            return rc;
    }
    return PS_OK;
}

/* The next line of p's range into *line (NUL-terminated, in p's buffer,
 * valid until the next call) and its file offset; 0 at the range's end. */
int pssm_next_line(part_reader_t *p, char **line, uint64_t *line_offset, ps_errbuf_t *err)
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
            pssm_src_skip(r, (size_t)(stop - start) + (nl ? 1 : 0));
            p->lineno++;
            return 1;
        }
        if (r->at_eof)
            return 0;
        if ((rc = pssm_src_refill(r, err)) != PS_OK)
            return rc;
    }
}
