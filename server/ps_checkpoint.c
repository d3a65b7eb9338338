/* ps_checkpoint.c - one checkpoint file: its writer and its reader (a
 * job's files, chains and pruning: ps_checkpoint_dir.c). The reader checks
 * every length against the bytes left before it reads, so a truncated or
 * corrupted file is an error, never a crash. */
#include "ps_checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "ps_checkpoint_int.h"
#include "ps_file.h"
#include "ps_log.h"

/* The fewest bytes a chunk or sparse table record takes (its fixed fields). */
#define MIN_CHUNK_RECORD 64
#define MIN_SPARSE_RECORD 48
/* A sparse row as stored is at most this many floats (value and state). */
#define MAX_SPARSE_STRIDE (1u << 20)

typedef struct {
    FILE *f; /* the ps_file's stream */
    uLong crc;
    uint64_t bytes;
    int failed;
} writer_t;

static void put(writer_t *w, const void *p, size_t n)
{
    if (!n || w->failed)
        return;
    if (fwrite(p, 1, n, w->f) != n)
        w->failed = 1;
    w->crc = crc32(w->crc, p, (uInt)n);
    w->bytes += n;
}

#define PUT(w, v) put((w), &(v), sizeof(v))

static void put_str(writer_t *w, const char *s)
{
    uint16_t len = (uint16_t)strlen(s);
    PUT(w, len);
    put(w, s, len);
}

static void put_floats(writer_t *w, const float *v, uint64_t n)
{
    /* crc32 takes uInt lengths: feed big arrays in pieces */
    const char *p = (const char *)v;
    uint64_t left = n * sizeof(float);
    while (left) {
        size_t piece = left > (1u << 30) ? (1u << 30) : (size_t)left;
        put(w, p, piece);
        p += piece;
        left -= piece;
    }
}

/* The optimizer spec, field by field from the one list (ps_optim_spec.h). */
static void put_optim(writer_t *w, const ps_optim_spec_t *o)
{
#define PUT_ENUM(f)                   \
    {                                 \
        uint32_t v_ = (uint32_t)o->f; \
        PUT(w, v_);                   \
    }
#define PUT_BOOL(f)                 \
    {                               \
        uint32_t v_ = o->f ? 1 : 0; \
        PUT(w, v_);                 \
    }
#define PUT_DBL(f) PUT(w, o->f);
#define PUT_U64(f) PUT(w, o->f);
#define XX(type, f) PUT_##type(f)
    PS_OPTIM_SPEC_FIELDS(XX)
#undef XX
#undef PUT_ENUM
#undef PUT_BOOL
#undef PUT_DBL
#undef PUT_U64
}

static void put_chunk(writer_t *w, const ps_table_t *t, uint32_t chunk)
{
    ps_table_state_t s;
    ps_table_get_state(t, &s);
    int ndim;
    const uint64_t *shape = ps_table_shape(t, &ndim);
    uint32_t id = ps_table_id(t), nd = (uint32_t)ndim;
    uint64_t n_total = ps_table_n_total(t), offset = ps_table_offset(t);
    uint8_t has_m = s.m != NULL, has_v = s.v != NULL;
    PUT(w, id);
    PUT(w, chunk);
    put_str(w, ps_table_name(t));
    PUT(w, n_total);
    PUT(w, nd);
    put(w, shape, nd * sizeof *shape);
    put_optim(w, ps_table_optim(t));
    PUT(w, offset);
    PUT(w, s.len);
    PUT(w, s.world);
    PUT(w, s.clock);
    put(w, s.pushes, s.world * sizeof *s.pushes);
    PUT(w, s.updates);
    PUT(w, has_m);
    PUT(w, has_v);
    put_floats(w, s.params, s.len);
    if (has_m)
        put_floats(w, s.m, s.len);
    if (has_v)
        put_floats(w, s.v, s.len);
}

typedef struct {
    writer_t *w;
    uint32_t stride;
} put_rows_t;

static void put_row(uint64_t key, const float *row, void *ctx)
{
    put_rows_t *pr = ctx;
    PUT(pr->w, key);
    put_floats(pr->w, row, pr->stride);
}

/* One sparse table: its layout and clocks, then all its rows or (delta)
 * the dirty ones, each as u64 key and stride floats. */
static void put_sparse(writer_t *w, const ps_sparse_t *t, bool delta)
{
    ps_sparse_layout_t l;
    ps_sparse_layout(t, &l);
    uint64_t n = ps_sparse_keys(t);
    uint64_t n_rows = delta ? ps_sparse_n_dirty(t) : n;
    uint8_t is_delta = delta;
    PUT(w, l.id);
    PUT(w, l.dim);
    PUT(w, l.stride);
    PUT(w, l.world);
    put_str(w, l.name);
    put_optim(w, l.optim);
    PUT(w, l.seed);
    PUT(w, l.init_scale);
    PUT(w, l.clock);
    put(w, l.pushes, l.world * sizeof *l.pushes);
    PUT(w, is_delta);
    PUT(w, n_rows);
    put_rows_t pr = {w, l.stride};
    ps_sparse_each_row(t, delta, put_row, &pr);
}

/* The job record (format 3). */
static void put_job(writer_t *w, const ps_ckpt_job_t *job, uint32_t n_chunks)
{
    uint32_t sh = job->shard, nsh = job->n_shards, world = job->world;
    int32_t stale = job->max_staleness;
    put_str(w, job->job);
    PUT(w, world);
    PUT(w, stale);
    PUT(w, job->generation);
    PUT(w, sh);
    PUT(w, nsh);
    PUT(w, job->clock);
    PUT(w, job->id);
    const char *fp = job->fingerprint ? job->fingerprint : "";
    uint32_t fp_len = (uint32_t)strlen(fp);
    PUT(w, fp_len);
    put(w, fp, fp_len);
    for (uint32_t r = 0; r < world; r++) {
        uint8_t st = job->rank_state ? job->rank_state[r] : 0;
        PUT(w, st);
    }
    uint8_t has_scaler = job->has_scaler;
    PUT(w, has_scaler);
    PUT(w, job->scale);
    PUT(w, job->scale_window);
    PUT(w, job->scale_clean);
    PUT(w, job->scale_skipped);
    PUT(w, n_chunks);
}

uint32_t psck_head_bytes(uint32_t format)
{
    return format >= 4 ? PSCK_HEAD_BYTES : PSCK_HEAD_BYTES_V3;
}

bool psck_peek_head(const char *path, uint32_t *crc, int64_t *base, uint32_t *base_crc)
{
    FILE *f = fopen(path, "rb");
    char head[PSCK_HEAD_BYTES];
    size_t n = f ? fread(head, 1, sizeof head, f) : 0;
    if (f)
        fclose(f);
    uint32_t format = 0;
    *base = -1;
    *base_crc = 0;
    if (n < PSCK_HEAD_BYTES_V3 || memcmp(head, PSCK_MAGIC, 8) != 0)
        return false;
    memcpy(&format, head + 8, 4);
    memcpy(crc, head + 12, 4);
    if (format < 4)
        return true;
    if (n < PSCK_HEAD_BYTES)
        return false;
    memcpy(base, head + PSCK_HEAD_BYTES_V3, 8);
    memcpy(base_crc, head + PSCK_HEAD_BYTES_V3 + 8, 4);
    return true;
}

int psck_write_file(const char *dir, const ps_ckpt_job_t *job, ps_table_t *const *chunks,
                    const uint32_t *chunk_ids, uint32_t n_chunks,
                    const ps_ckpt_sparse_set_t *sparse, char *jobdir, size_t jobdir_cap,
                    ps_errbuf_t *err)
{
    char path[1100];
    snprintf(jobdir, jobdir_cap, "%s/%s", dir, job->job);
    if (mkdir(dir, 0750) != 0 && errno != EEXIST)
        return ps_err_set(err, PS_EIO, "cannot create '%s': %s", dir, strerror(errno));
    if (mkdir(jobdir, 0750) != 0 && errno != EEXIST)
        return ps_err_set(err, PS_EIO, "cannot create '%s': %s", jobdir, strerror(errno));
    snprintf(path, sizeof path, "%s/ckpt-%012lld.psc", jobdir, (long long)job->clock);
    ps_file_t *pf = ps_file_create(path, 0640, err);
    if (!pf)
        return PS_EIO;
    writer_t w = {ps_file_stream(pf), crc32(0, NULL, 0), 0, 0};
    char head[PSCK_HEAD_BYTES] = PSCK_MAGIC;
    fwrite(head, 1, PSCK_HEAD_BYTES, w.f); /* filled in below */
    put_job(&w, job, n_chunks);
    for (uint32_t i = 0; i < n_chunks; i++)
        put_chunk(&w, chunks[i], chunk_ids[i]);
    uint32_t n_sparse = sparse ? sparse->n : 0;
    int64_t base = sparse && sparse->n ? sparse->base_clock : -1;
    uint32_t base_crc = 0;
    if (base >= 0) {
        /* a delta names its base by clock and CRC, so a base rewritten
         * since (a lower clock under SSP, a restore) is never built on;
         * with no base to name it holds every row instead */
        char base_path[1100];
        int64_t unused_base;
        uint32_t unused_crc;
        snprintf(base_path, sizeof base_path, "%s/ckpt-%012lld.psc", jobdir, (long long)base);
        if (!psck_peek_head(base_path, &base_crc, &unused_base, &unused_crc))
            base = -1;
    }
    PUT(&w, n_sparse);
    for (uint32_t i = 0; i < n_sparse; i++)
        put_sparse(&w, sparse->tables[i], base >= 0);
    uint32_t format = PSCK_FORMAT, crc = (uint32_t)w.crc;
    memcpy(head + 8, &format, 4);
    memcpy(head + 12, &crc, 4);
    memcpy(head + 16, &w.bytes, 8);
    memcpy(head + PSCK_HEAD_BYTES_V3, &base, 8);
    memcpy(head + PSCK_HEAD_BYTES_V3 + 8, &base_crc, 4);
    if (w.failed || fseek(w.f, 0, SEEK_SET) != 0 ||
        fwrite(head, 1, PSCK_HEAD_BYTES, w.f) != PSCK_HEAD_BYTES) {
        int e = errno;
        ps_file_abort(&pf);
        return ps_err_set(err, PS_EIO, "cannot write checkpoint '%s': %s", path, strerror(e));
    }
    return ps_file_commit(&pf, err) == PS_OK ? PS_OK : PS_EIO;
}

/* ---- reading ---- */

typedef struct {
    const char *p, *end;
    int bad;
} reader_t;

static const void *take(reader_t *r, uint64_t n)
{
    if (r->bad || (uint64_t)(r->end - r->p) < n) {
        r->bad = 1;
        return NULL;
    }
    const void *q = r->p;
    r->p += n;
    return q;
}

#define GET(r, v)                              \
    do {                                       \
        const void *q_ = take((r), sizeof(v)); \
        if (q_)                                \
            memcpy(&(v), q_, sizeof(v));       \
    } while (0)

static void get_str(reader_t *r, char *buf, size_t cap)
{
    uint16_t len = 0;
    GET(r, len);
    const char *s = take(r, len);
    if (!s || len >= cap) {
        r->bad = 1;
        buf[0] = '\0';
        return;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
}

/* Reads the spec as put_optim wrote it; a format-1 file stops after the
 * first PS_OPTIM_SPEC_FIELDS_V1 fields (the rest stay 0). */
static void get_optim(reader_t *r, ps_optim_spec_t *o, uint32_t format)
{
    int n = format == 1 ? PS_OPTIM_SPEC_FIELDS_V1 : 1 << 20, k = 0;
    uint32_t u;
#define GET_ENUM(f)                 \
    if (k++ < n) {                  \
        u = 0;                      \
        GET(r, u);                  \
        o->f = (__typeof__(o->f))u; \
    }
#define GET_BOOL(f)    \
    if (k++ < n) {     \
        u = 0;         \
        GET(r, u);     \
        o->f = u != 0; \
    }
#define GET_DBL(f) \
    if (k++ < n)   \
        GET(r, o->f);
#define GET_U64(f) \
    if (k++ < n)   \
        GET(r, o->f);
#define XX(type, f) GET_##type(f)
    PS_OPTIM_SPEC_FIELDS(XX)
#undef XX
#undef GET_ENUM
#undef GET_BOOL
#undef GET_DBL
#undef GET_U64
}

static void get_chunk(reader_t *r, ps_ckpt_chunk_t *c, uint32_t format)
{
    uint32_t nd = 0;
    uint8_t has_m = 0, has_v = 0;
    GET(r, c->table_id);
    GET(r, c->chunk);
    get_str(r, c->name, sizeof c->name);
    GET(r, c->n_total);
    GET(r, nd);
    if (nd < 1 || nd > PS_TABLE_MAX_DIMS) {
        r->bad = 1;
        return;
    }
    c->ndim = (int)nd;
    const void *shape = take(r, nd * sizeof(uint64_t));
    if (shape)
        memcpy(c->shape, shape, nd * sizeof(uint64_t));
    get_optim(r, &c->optim, format);
    GET(r, c->offset);
    GET(r, c->state.len);
    GET(r, c->state.world);
    GET(r, c->state.clock);
    if (c->state.world == 0 || c->state.world > 65536) {
        r->bad = 1;
        return;
    }
    c->state.pushes = take(r, c->state.world * sizeof(int64_t));
    GET(r, c->state.updates);
    GET(r, has_m);
    GET(r, has_v);
    uint64_t bytes = c->state.len * sizeof(float);
    if (c->state.len > (uint64_t)(r->end - r->p)) {
        r->bad = 1;
        return;
    }
    c->state.params = take(r, bytes);
    c->state.m = has_m ? take(r, bytes) : NULL;
    c->state.v = has_v ? take(r, bytes) : NULL;
}

static void get_sparse(reader_t *r, ps_ckpt_sparse_t *s)
{
    GET(r, s->table_id);
    GET(r, s->dim);
    GET(r, s->stride);
    GET(r, s->world);
    get_str(r, s->name, sizeof s->name);
    get_optim(r, &s->optim, PSCK_FORMAT);
    GET(r, s->seed);
    GET(r, s->init_scale);
    GET(r, s->clock);
    if (s->dim == 0 || s->stride < s->dim || s->stride > MAX_SPARSE_STRIDE || s->world == 0 ||
        s->world > 65536) {
        r->bad = 1;
        return;
    }
    s->pushes = take(r, s->world * sizeof(int64_t));
    GET(r, s->delta);
    GET(r, s->n_rows);
    uint64_t row_bytes = sizeof(uint64_t) + (uint64_t)s->stride * sizeof(float);
    if (r->bad || s->n_rows > (uint64_t)(r->end - r->p) / row_bytes) {
        r->bad = 1;
        return;
    }
    s->rows = take(r, s->n_rows * row_bytes);
}

/* The job record's format-3 fields: id, fingerprint, ranks, scaler. */
static void get_job_v3(reader_t *r, ps_ckpt_t *out)
{
    ps_ckpt_job_t *j = &out->job;
    uint32_t fp_len = 0;
    uint8_t has_scaler = 0;
    GET(r, j->id);
    GET(r, fp_len);
    const char *fp = take(r, fp_len);
    if (j->world == 0 || j->world > 65536) {
        r->bad = 1;
        return;
    }
    j->rank_state = take(r, j->world);
    GET(r, has_scaler);
    GET(r, j->scale);
    GET(r, j->scale_window);
    GET(r, j->scale_clean);
    GET(r, j->scale_skipped);
    j->has_scaler = has_scaler != 0;
    if (fp) {
        out->fingerprint = ps_xmalloc(fp_len + 1);
        memcpy(out->fingerprint, fp, fp_len);
        out->fingerprint[fp_len] = '\0';
        j->fingerprint = out->fingerprint;
    }
}

void ps_ckpt_free(ps_ckpt_t *c)
{
    if (c->base) {
        ps_ckpt_free(c->base);
        free(c->base);
        c->base = NULL;
    }
    free(c->sparse);
    c->sparse = NULL;
    c->n_sparse = 0;
    free(c->chunks);
    free(c->buf);
    free(c->fingerprint);
    c->chunks = NULL;
    c->buf = NULL;
    c->fingerprint = NULL;
    c->n_chunks = 0;
}

int ps_ckpt_read(const char *path, ps_ckpt_t *out, ps_errbuf_t *err)
{
    memset(out, 0, sizeof *out);
    out->job.fingerprint = "";
    out->base_clock = -1;
    FILE *f = fopen(path, "rb");
    if (!f)
        return ps_err_set(err, PS_EIO, "cannot read '%s': %s", path, strerror(errno));
    char head[PSCK_HEAD_BYTES];
    uint32_t format = 0, crc = 0, hb = PSCK_HEAD_BYTES_V3;
    uint64_t len = 0;
    struct stat st;
    int rc = PS_EFORMAT;
    if (fread(head, 1, PSCK_HEAD_BYTES_V3, f) != PSCK_HEAD_BYTES_V3 ||
        memcmp(head, PSCK_MAGIC, 8) != 0) {
        ps_err_set(err, rc, "'%s': not a checkpoint (bad magic)", path);
        goto out;
    }
    memcpy(&format, head + 8, 4);
    memcpy(&crc, head + 12, 4);
    memcpy(&len, head + 16, 8);
    if (format < 1 || format > PSCK_FORMAT) {
        ps_err_set(err, rc, "'%s': format %u, this server reads 1 to %u", path, format,
                   PSCK_FORMAT);
        goto out;
    }
    hb = psck_head_bytes(format);
    if (hb > PSCK_HEAD_BYTES_V3 && fread(head + PSCK_HEAD_BYTES_V3, 1, hb - PSCK_HEAD_BYTES_V3,
                                         f) != hb - PSCK_HEAD_BYTES_V3) {
        ps_err_set(err, rc, "'%s': truncated head", path);
        goto out;
    }
    out->crc = crc;
    if (format >= 4) {
        memcpy(&out->base_clock, head + PSCK_HEAD_BYTES_V3, 8);
        memcpy(&out->base_crc, head + PSCK_HEAD_BYTES_V3 + 8, 4);
    }
    if (fstat(fileno(f), &st) != 0 || (uint64_t)st.st_size != len + hb) {
        ps_err_set(err, rc, "'%s': truncated or padded: %lld bytes, header says %llu", path,
                   (long long)st.st_size, (unsigned long long)(len + hb));
        goto out;
    }
    out->buf = malloc(len ? len : 1);
    if (!out->buf) {
        rc = ps_err_set(err, PS_ENOMEM, "'%s': cannot allocate %llu bytes", path,
                        (unsigned long long)len);
        goto out;
    }
    if (fread(out->buf, 1, len, f) != len) {
        ps_err_set(err, rc, "'%s': short read", path);
        goto out;
    }
    uLong sum = crc32(0, NULL, 0);
    for (uint64_t off = 0; off < len; off += 1u << 30) {
        uint64_t piece = len - off < (1u << 30) ? len - off : (1u << 30);
        sum = crc32(sum, (const Bytef *)out->buf + off, (uInt)piece);
    }
    if ((uint32_t)sum != crc) {
        ps_err_set(err, rc, "'%s': checksum mismatch (corrupt)", path);
        goto out;
    }
    reader_t r = {out->buf, (const char *)out->buf + len, 0};
    ps_ckpt_job_t *j = &out->job;
    int32_t stale = 0;
    get_str(&r, j->job, sizeof j->job);
    GET(&r, j->world);
    GET(&r, stale);
    GET(&r, j->generation);
    GET(&r, j->shard);
    GET(&r, j->n_shards);
    GET(&r, j->clock);
    if (format >= 3)
        get_job_v3(&r, out);
    GET(&r, out->n_chunks);
    j->max_staleness = stale;
    /* a record is at least MIN_*_RECORD bytes: a count the bytes left
     * cannot hold is refused before anything is allocated for it */
    if (r.bad || out->n_chunks > (uint64_t)(r.end - r.p) / MIN_CHUNK_RECORD) {
        ps_err_set(err, rc, "'%s': malformed job record", path);
        goto out;
    }
    out->chunks = calloc(out->n_chunks ? out->n_chunks : 1, sizeof *out->chunks);
    for (uint32_t i = 0; out->chunks && i < out->n_chunks && !r.bad; i++)
        get_chunk(&r, &out->chunks[i], format);
    if (!out->chunks || r.bad) {
        ps_err_set(err, rc, "'%s': malformed chunk records", path);
        goto out;
    }
    if (format >= 4)
        GET(&r, out->n_sparse);
    if (r.bad || out->n_sparse > (uint64_t)(r.end - r.p) / MIN_SPARSE_RECORD ||
        (out->base_clock >= 0 && !out->n_sparse) || out->base_clock >= j->clock) {
        ps_err_set(err, rc, "'%s': malformed sparse section or base clock", path);
        goto out;
    }
    out->sparse = calloc(out->n_sparse ? out->n_sparse : 1, sizeof *out->sparse);
    for (uint32_t i = 0; out->sparse && i < out->n_sparse && !r.bad; i++)
        get_sparse(&r, &out->sparse[i]);
    if (!out->sparse || r.bad || r.p != r.end) {
        ps_err_set(err, rc, "'%s': malformed sparse table records", path);
        goto out;
    }
    rc = PS_OK;
out:
    fclose(f);
    if (rc != PS_OK)
        ps_ckpt_free(out);
    return rc;
}
