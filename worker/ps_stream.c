/* ps_stream.c - see ps_stream.h. The trainer thread calls the API; one
 * reader thread per stream reads, parses, shuffles and batches.
 *
 * Shuffle: each partition holds a window of W parsed samples; the next
 * sample of a pass is a seeded uniform pick from the window, whose slot is
 * then refilled from the file. W = 1 is file order; W >= the partition's
 * samples is a full shuffle. The seed is (seed, partition, pass), so a
 * partition's sample order depends on the partition alone.
 *
 * Memory: W samples per partition (each slot keeps its arrays, so the
 * steady state allocates nothing), `prefetch` batches, one read buffer. */
#include "ps_stream.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
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

#include "ps_rng.h"
#include "ps_time.h"

#define READ_CHUNK (1 << 20)

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void ps_partlist_fini(ps_partlist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->parts[i].path);
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
        out->parts[p].path = ps_xstrdup(path);
        out->parts[p].start = size * p / n;
        out->parts[p].end = n == 1 ? UINT64_MAX : size * (p + 1) / n;
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
            out->parts[i] = (ps_part_t){names[i], 0, UINT64_MAX};
    } else {
        for (size_t i = 0; i < n; i++)
            free(names[i]);
    }
    free(names);
    return rc;
}

/* One of this worker's partitions as the reader thread reads it. */
typedef struct {
    const ps_part_t *part;
    uint32_t id;    /* the partition's number in the data set */
    uint32_t batch; /* samples per batch from it */
    int fd;         /* a byte range, or */
    gzFile gz;      /* a whole file (plain or gzip) */
    char *buf;
    size_t buf_len, buf_pos, buf_cap;
    bool at_eof;          /* nothing more to read in this pass */
    uint64_t offset;      /* file offset of buf[buf_pos] */
    uint64_t lineno;      /* lines read in this pass (the file's line if whole) */
    ps_svm_row_t *window; /* shuffle_window slots */
    uint32_t n_window;    /* slots holding a sample */
    ps_rng_t rng;
    uint32_t passes_done;
    bool in_pass, exhausted;
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
};

static void close_part(part_reader_t *p)
{
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
    if (p->gz)
        gzclose(p->gz);
    p->gz = NULL;
}

/* Where an error in p happened: "PATH:LINE" (whole file) or "PATH: byte N". */
static int where(const part_reader_t *p, uint64_t line_offset, char *buf, size_t cap)
{
    if (p->part->end == UINT64_MAX)
        return snprintf(buf, cap, "%s:%llu", p->part->path, (unsigned long long)p->lineno);
    return snprintf(buf, cap, "%s: byte %llu", p->part->path, (unsigned long long)line_offset);
}

/* Opens p for a pass: the file at the first line of its range. */
static int open_pass(ps_stream_t *s, part_reader_t *p, ps_errbuf_t *err)
{
    const ps_part_t *part = p->part;
    close_part(p);
    p->buf_len = p->buf_pos = 0;
    p->at_eof = false;
    p->lineno = 0;
    p->n_window = 0;
    p->offset = part->start;
    ps_rng_seed(&p->rng, ps_rng_mix(ps_rng_mix(s->o.seed, p->id), p->passes_done + 1));
    if (part->end == UINT64_MAX) {
        p->gz = gzopen(part->path, "rb");
        if (!p->gz)
            return ps_err_set(err, PS_EIO, "cannot read '%s': %s", part->path, strerror(errno));
        gzbuffer(p->gz, 1 << 17);
        return PS_OK;
    }
    p->fd = open(part->path, O_RDONLY | O_CLOEXEC);
    /* the range's first line starts after the first '\n' at or after start - 1 */
    uint64_t from = part->start ? part->start - 1 : 0;
    if (p->fd < 0 || lseek(p->fd, (off_t)from, SEEK_SET) < 0)
        return ps_err_set(err, PS_EIO, "cannot read '%s': %s", part->path, strerror(errno));
    p->offset = from;
    return PS_OK;
}

/* Reads more of p's file into its buffer (keeping the unread tail). */
static int refill(ps_stream_t *s, part_reader_t *p, ps_errbuf_t *err)
{
    if (p->buf_pos) {
        memmove(p->buf, p->buf + p->buf_pos, p->buf_len - p->buf_pos);
        p->buf_len -= p->buf_pos;
        p->buf_pos = 0;
    }
    if (p->buf_cap - p->buf_len < READ_CHUNK / 2) {
        p->buf_cap = p->buf_cap ? p->buf_cap * 2 : READ_CHUNK;
        p->buf = ps_xrealloc(p->buf, p->buf_cap + 1);
    }
    size_t want = p->buf_cap - p->buf_len;
    ssize_t got;
    if (p->gz) {
        got = gzread(p->gz, p->buf + p->buf_len, (unsigned)want);
        if (got < 0) {
            int e;
            const char *msg = gzerror(p->gz, &e);
            return ps_err_set(err, PS_EIO, "cannot read '%s' after byte %llu: %s", p->part->path,
                              (unsigned long long)(p->offset + p->buf_len), msg);
        }
    } else {
        do
            got = read(p->fd, p->buf + p->buf_len, want);
        while (got < 0 && errno == EINTR);
        if (got < 0)
            return ps_err_set(err, PS_EIO, "cannot read '%s' at byte %llu: %s", p->part->path,
                              (unsigned long long)(p->offset + p->buf_len), strerror(errno));
    }
    atomic_fetch_add(&s->bytes_read, (uint64_t)got);
    p->buf_len += (size_t)got;
    if (got == 0)
        p->at_eof = true;
    return PS_OK;
}

/* The first '\n' in the unread part of p's buffer, or NULL. */
static char *unread_newline(const part_reader_t *p)
{
    if (p->buf_pos >= p->buf_len)
        return NULL;
    return memchr(p->buf + p->buf_pos, '\n', p->buf_len - p->buf_pos);
}

/* The next line of p's range into *line (NUL-terminated, in p's buffer,
 * valid until the next call) and its file offset; 0 at the range's end. */
static int next_line(ps_stream_t *s, part_reader_t *p, char **line, uint64_t *line_offset,
                     ps_errbuf_t *err)
{
    int rc;
    if (p->offset < p->part->start) { /* drop the tail of the line before the range */
        for (;;) {
            char *nl = unread_newline(p);
            if (nl) {
                p->offset += (uint64_t)(nl + 1 - (p->buf + p->buf_pos));
                p->buf_pos = (size_t)(nl + 1 - p->buf);
                break;
            }
            p->offset += p->buf_len - p->buf_pos;
            p->buf_pos = p->buf_len;
            if (p->at_eof)
                return 0;
            if ((rc = refill(s, p, err)) != PS_OK)
                return rc;
        }
    }
    if (p->offset >= p->part->end)
        return 0;
    for (;;) {
        char *start = p->buf + p->buf_pos;
        char *nl = unread_newline(p);
        if (nl || (p->at_eof && p->buf_pos < p->buf_len)) {
            char *stop = nl ? nl : p->buf + p->buf_len;
            *stop = '\0';
            *line = start;
            *line_offset = p->offset;
            size_t used = (size_t)(stop - start) + (nl ? 1 : 0);
            p->buf_pos += used;
            p->offset += used;
            p->lineno++;
            return 1;
        }
        if (p->at_eof)
            return 0;
        if ((rc = refill(s, p, err)) != PS_OK)
            return rc;
    }
}

/* Fills p's window from its file, up to shuffle_window samples. */
static int fill_window(ps_stream_t *s, part_reader_t *p, ps_errbuf_t *err)
{
    while (p->n_window < s->o.shuffle_window) {
        char *line = NULL;
        uint64_t at = 0;
        int rc = next_line(s, p, &line, &at, err);
        if (rc <= 0)
            return rc;
        ps_errbuf_t why;
        rc = ps_svm_parse_line(line, s->o.hash_bits, &p->window[p->n_window], &why);
        if (rc < 0) {
            char loc[4200];
            where(p, at, loc, sizeof loc);
            return ps_err_set(err, rc, "%s: %s", loc, why.msg);
        }
        p->n_window += (uint32_t)rc;
    }
    return PS_OK;
}

static void append(ps_svm_t *d, const ps_svm_row_t *row, size_t *cap_n, size_t *cap_nnz)
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
    memcpy(d->keys + d->nnz, row->keys, row->nf * sizeof *d->keys);
    memcpy(d->vals + d->nnz, row->vals, row->nf * sizeof *d->vals);
    d->nnz += row->nf;
    d->row_ptr[++d->n] = d->nnz;
}

/* Partition p's part of the batch being built in d: starts its next pass
 * if the last one ended, then moves up to p->batch samples from its window. */
static int take(ps_stream_t *s, part_reader_t *p, ps_svm_t *d, size_t *cap_n, size_t *cap_nnz,
                ps_errbuf_t *err)
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
        uint32_t j = (uint32_t)ps_rng_below(&p->rng, p->n_window);
        append(d, &p->window[j], cap_n, cap_nnz);
        ps_svm_row_t used = p->window[j];
        p->window[j] = p->window[p->n_window - 1];
        p->window[--p->n_window] = used;
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
    b->index = index;
    b->samples_before = samples_before;
    uint32_t epochs_done = s->o.epochs;
    bool any_left = false;
    for (size_t j = 0; j < s->n_mine; j++) {
        part_reader_t *p = &s->mine[j];
        int rc = take(s, p, &b->data, &slot->cap_n, &slot->cap_nnz, err);
        if (rc != PS_OK)
            return rc;
        if (p->passes_done < epochs_done)
            epochs_done = p->passes_done;
        any_left |= !p->exhausted;
    }
    b->epochs_done = epochs_done;
    return b->data.n > 0 || any_left ? 1 : 0;
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
 * error or a stop. The first s->skip batches are built and dropped. */
static void *reader_main(void *arg)
{
    ps_stream_t *s = arg;
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
            return NULL;
        /* only this thread touches slots outside [head, head + n_ready + holding) */
        batch_slot_t *slot = &s->slots[at];
        while ((rc = build(s, slot, index, samples, &err)) == 1 && index < s->skip) {
            samples += slot->b.data.n;
            index++;
            pthread_mutex_lock(&s->mu);
            stop = s->stopping;
            pthread_mutex_unlock(&s->mu);
            if (stop)
                return NULL;
        }
        if (rc != 1)
            break;
        samples += slot->b.data.n;
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
    return NULL;
}

ps_stream_t *ps_stream_new(const ps_stream_opts_t *opts, ps_errbuf_t *err)
{
    ps_stream_t *s = ps_xcalloc(1, sizeof *s);
    s->o = *opts;
    if (s->o.prefetch < 1)
        s->o.prefetch = 1;
    if (s->o.shuffle_window < 1)
        s->o.shuffle_window = 1;
    if (ps_stream_partitions(opts->train_data, opts->n_partitions, opts->world, &s->all, err) !=
        PS_OK) {
        free(s);
        return NULL;
    }
    s->mine = ps_xcalloc(s->all.n / opts->world + 1, sizeof *s->mine);
    for (size_t p = opts->rank; p < s->all.n; p += opts->world)
        s->mine[s->n_mine++] =
            (part_reader_t){.part = &s->all.parts[p], .id = (uint32_t)p, .fd = -1};
    if (s->n_mine && opts->batch_size < s->n_mine) {
        ps_err_set(err, PS_EINVAL, "batch_size %llu is below the %zu partitions worker %u reads",
                   (unsigned long long)opts->batch_size, s->n_mine, opts->rank);
        ps_stream_destroy(&s);
        return NULL;
    }
    for (size_t j = 0; j < s->n_mine; j++) {
        part_reader_t *p = &s->mine[j];
        p->batch = (uint32_t)(opts->batch_size / s->n_mine + (j < opts->batch_size % s->n_mine));
        p->window = ps_xcalloc(s->o.shuffle_window, sizeof *p->window);
    }
    s->slots = ps_xcalloc(s->o.prefetch, sizeof *s->slots);
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->ready, &ca);
    pthread_cond_init(&s->room, NULL);
    pthread_condattr_destroy(&ca);
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
    s->holding = s->ended = s->stopping = false;
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
    int64_t t0 = ps_time_ns();
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
        pthread_cond_signal(&s->room);
    }
    int rc = 0;
    while (!s->n_ready && !s->ended && rc == 0)
        rc = pthread_cond_timedwait(&s->ready, &s->mu, &deadline);
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
    s->wait_s += (double)(ps_time_ns() - t0) / 1e9;
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
        close_part(p);
        for (uint32_t i = 0; p->window && i < s->o.shuffle_window; i++)
            ps_svm_row_fini(&p->window[i]);
        free(p->window);
        free(p->buf);
    }
    if (s->slots) {
        for (uint32_t i = 0; i < s->o.prefetch; i++)
            ps_svm_free(&s->slots[i].b.data);
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

double ps_stream_wait_s(const ps_stream_t *s)
{
    return s->wait_s;
}

uint64_t ps_stream_bytes_read(const ps_stream_t *s)
{
    return atomic_load(&s->bytes_read);
}

size_t ps_stream_n_parts(const ps_stream_t *s)
{
    return s->n_mine;
}
