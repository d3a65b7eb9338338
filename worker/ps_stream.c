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

/* Fills p's window from its file, up to shuffle_window samples. */
static int fill_window(ps_stream_t *s, part_reader_t *p, ps_errbuf_t *err)
{
    while (p->n_window < s->o.shuffle_window) {
        if (!s->sparse && p->n_window == p->cap_slots) { /* doubled from 1: see append_dense */
            uint32_t cap = p->cap_slots ? p->cap_slots * 2 : 1;
            p->cap_slots = cap < s->o.shuffle_window ? cap : s->o.shuffle_window;
            p->slots = ps_xrealloc(p->slots, (size_t)p->cap_slots * s->slot_bytes);
        }
        int rc = pssm_read_sample(s, p, err);
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
        append_dense(s, slot, pssm_slot_at(s, p, j), (uint64_t)p->id << 32 | i);
        if (j != last)
            memcpy(pssm_slot_at(s, p, j), pssm_slot_at(s, p, last), s->slot_bytes);
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
        if ((rc = pssm_open_pass(s, p, err)) != PS_OK || (rc = fill_window(s, p, err)) != PS_OK)
            return rc;
        p->in_pass = true;
        if (p->n_window == 0) { /* an empty partition has no passes at all */
            p->exhausted = true;
            p->passes_done = s->o.epochs;
            pssm_close_part(p);
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
        pssm_close_part(p);
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
        pssm_close_part(p);
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
    if (pssm_make_parts(s, err) != PS_OK) {
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
        pssm_src_fini(&p->src);
        pssm_src_fini(&p->lab);
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
