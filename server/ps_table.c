/* ps_table.c - dense table slice with BSP rounds and SSP/ASP clocks. */
#include "ps_table.h"

#include <stdalign.h>
#include <stdatomic.h>

#include <stdlib.h>
#include <string.h>

#include "ps_log.h"
#include "ps_round.h"

/* Parameters live in reference-counted buffers so that a reply can carry
 * them without a copy: ZeroMQ's I/O thread holds a reference while it sends
 * one, and an update never writes a buffer that is being sent (it writes
 * its result into a free one instead). The table's own reference is one of
 * the count; the last holder frees the buffer. */
typedef struct {
    alignas(64) atomic_int refs;
    float data[]; /* at offset 64: aligned for vector loads */
} param_buf_t;

static param_buf_t *buf_new(uint64_t len)
{
    param_buf_t *b =
        aligned_alloc(64, sizeof *b + ((len ? len : 1) * sizeof(float) + 63) / 64 * 64);
    if (b)
        atomic_init(&b->refs, 1);
    return b;
}

static void buf_unref(param_buf_t *b)
{
    if (b && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
        free(b);
}

/* zmq_free_fn, run by ZeroMQ's I/O thread once the frame is sent. */
static void buf_release(void *data, void *hint)
{
    (void)data;
    buf_unref(hint);
}

/* Only the table holds it: nothing reads it but us. Acquire pairs with the
 * release in buf_unref, so the sender's reads are over before we write. */
static bool buf_is_ours(param_buf_t *b)
{
    return atomic_load_explicit(&b->refs, memory_order_acquire) == 1;
}

struct ps_table {
    char name[PS_TABLE_NAME_MAX];
    uint32_t id;
    uint64_t n_total, offset, len;
    uint64_t shape[PS_TABLE_MAX_DIMS];
    int ndim;
    uint32_t world;
    param_buf_t *cur;   /* the parameters */
    param_buf_t *spare; /* a second buffer for updates while cur is being sent, or NULL */
    ps_optim_t opt;
    ps_round_t round; /* which pushes count, and the clocks */
    /* BSP round in progress: what the ranks whose slot is PS_ROUND_VALUES sent */
    zmq_msg_t *stash; /* per rank: gradient sums of the current clock */
    uint64_t *stash_samples;
    float *accum; /* sum of the round, len floats; world > 2 only */
};

/* Lets go of rank r's values kept for the round in progress, if any. */
static void drop_rank_stash(ps_table_t *t, uint32_t r)
{
    if (t->round.slot[r] == PS_ROUND_VALUES)
        zmq_msg_close(&t->stash[r]);
}

/* Lets go of the values kept for the BSP round in progress. */
static void drop_stash(ps_table_t *t)
{
    for (uint32_t r = 0; t->round.slot && r < t->world; r++)
        drop_rank_stash(t, r);
}

ps_table_t *ps_table_new(const ps_table_params_t *p, const float *init, ps_errbuf_t *err)
{
    const char *why = ps_optim_spec_check(&p->optim);
    if (why) {
        ps_err_set(err, PS_EINVAL, "table '%s': %s", p->name, why);
        return NULL;
    }
    if (p->ndim < 1 || p->ndim > PS_TABLE_MAX_DIMS || p->world == 0 ||
        strlen(p->name) >= PS_TABLE_NAME_MAX) {
        ps_err_set(err, PS_EINVAL, "table '%s': bad name, shape or world size", p->name);
        return NULL;
    }
    ps_table_t *t = calloc(1, sizeof *t);
    if (!t)
        goto oom;
    strcpy(t->name, p->name);
    t->id = p->id;
    t->n_total = p->n_total;
    t->offset = p->offset;
    t->len = p->len;
    t->ndim = p->ndim;
    memcpy(t->shape, p->shape, (size_t)p->ndim * sizeof *p->shape);
    t->world = p->world;
    size_t n = p->len ? p->len : 1;
    t->cur = buf_new(n);
    t->stash = calloc(p->world, sizeof *t->stash);
    t->stash_samples = calloc(p->world, sizeof *t->stash_samples);
    /* only a BSP round of three pushes or more sums into it (round_gradient) */
    bool summing = p->max_staleness == 0 && p->world > 2;
    t->accum = summing ? malloc(n * sizeof(float)) : NULL;
    if (!t->cur || !t->stash || !t->stash_samples || (summing && !t->accum) ||
        ps_round_init(&t->round, p->world, p->max_staleness) != PS_OK ||
        ps_optim_init(&t->opt, &p->optim, p->len) != PS_OK)
        goto oom;
    memcpy(t->cur->data, init, p->len * sizeof(float));
    return t;
oom:
    ps_table_destroy(&t);
    ps_err_set(err, PS_ENOMEM, "table '%s': cannot allocate %llu floats", p->name,
               (unsigned long long)p->len);
    return NULL;
}

void ps_table_destroy(ps_table_t **tp)
{
    ps_table_t *t = *tp;
    if (!t)
        return;
    drop_stash(t);
    ps_round_fini(&t->round);
    ps_optim_fini(&t->opt);
    buf_unref(t->cur);
    buf_unref(t->spare);
    free(t->stash);
    free(t->stash_samples);
    free(t->accum);
    free(t);
    *tp = NULL;
}

const char *ps_table_name(const ps_table_t *t)
{
    return t->name;
}
uint64_t ps_table_n_total(const ps_table_t *t)
{
    return t->n_total;
}
uint64_t ps_table_offset(const ps_table_t *t)
{
    return t->offset;
}
uint64_t ps_table_len(const ps_table_t *t)
{
    return t->len;
}
const float *ps_table_params(const ps_table_t *t)
{
    return t->cur->data;
}

int ps_table_lend_params(ps_table_t *t, zmq_msg_t *msg)
{
    atomic_fetch_add_explicit(&t->cur->refs, 1, memory_order_relaxed);
    if (zmq_msg_init_data(msg, t->cur->data, t->len * sizeof(float), buf_release, t->cur) != 0) {
        buf_unref(t->cur);
        return PS_ENOMEM;
    }
    return PS_OK;
}

/* A buffer the next parameters may be written to: cur itself if no reply is
 * sending it (in place touches the least memory), else the spare if that is
 * free, else a new spare (the busy one is let go; its last sender frees it). */
static param_buf_t *writable_buf(ps_table_t *t)
{
    if (buf_is_ours(t->cur))
        return t->cur;
    if (t->spare && buf_is_ours(t->spare))
        return t->spare;
    buf_unref(t->spare);
    /* A chunk is at most about PS_CHUNK_ELEMS floats (ps_shardmap), a size we
     * choose, so running out here is treated like ps_xmalloc does. */
    t->spare = buf_new(t->len);
    if (!t->spare) {
        ps_log(PS_LOG_ERROR, "table '%s': out of memory for a %llu-float buffer", t->name,
               (unsigned long long)t->len);
        abort();
    }
    return t->spare;
}

/* b (from writable_buf) now holds the parameters. */
static void commit_buf(ps_table_t *t, param_buf_t *b)
{
    if (b != t->cur) {
        t->spare = t->cur;
        t->cur = b;
    }
}

/* One optimizer step from cur into a buffer no reply is reading; the
 * gradient is grad + more (more may be NULL). */
static void apply_update(ps_table_t *t, const float *grad, const float *more, float scale)
{
    param_buf_t *b = writable_buf(t);
    ps_optim_step_to(&t->opt, t->cur->data, b->data, grad, more, scale);
    commit_buf(t, b);
}
uint64_t ps_table_updates(const ps_table_t *t)
{
    return t->opt.t;
}
const ps_optim_spec_t *ps_table_optim(const ps_table_t *t)
{
    return &t->opt.spec;
}

int64_t ps_table_worker_clock(const ps_table_t *t, uint32_t rank)
{
    return ps_round_rank_clock(&t->round, rank);
}

size_t ps_table_bytes(const ps_table_t *t)
{
    size_t per = sizeof(float) + ps_optim_state_bytes_per_elem(t->opt.spec.kind);
    return sizeof *t + t->len * per + (t->accum ? t->len * sizeof(float) : 0) +
           (t->spare ? t->len * sizeof(float) : 0) +
           t->world * (sizeof(int64_t) + sizeof(zmq_msg_t) + 9);
}

bool ps_table_same_layout(const ps_table_t *t, const char *name, uint64_t n_total)
{
    return strcmp(t->name, name) == 0 && t->n_total == n_total;
}

bool ps_table_forget_rank(ps_table_t *t, uint32_t rank)
{
    if (rank >= t->world)
        return false;
    drop_rank_stash(t, rank); /* reads the slot ps_round_forget clears */
    if (!ps_round_forget(&t->round, rank))
        return false;
    t->stash_samples[rank] = 0;
    return true;
}

int ps_table_push(ps_table_t *t, uint32_t rank, int64_t clock, zmq_msg_t *values,
                  uint64_t n_samples)
{
    switch (ps_round_offer(&t->round, rank, clock, values != NULL)) {
    case PS_ROUND_RETRY:
        return PS_OK;
    case PS_ROUND_AHEAD:
        return PS_ERANGE;
    case PS_ROUND_KEEP:
        if (values) {
            zmq_msg_init(&t->stash[rank]);
            zmq_msg_move(&t->stash[rank], values);
        }
        t->stash_samples[rank] = n_samples;
        return PS_OK;
    case PS_ROUND_APPLY:
        if (values && n_samples)
            apply_update(t, zmq_msg_data(values), NULL, 1.0f / (float)n_samples);
        return PS_OK;
    }
    return PS_EINVAL;
}

/* The gradient of a BSP round as *first + *more (more NULL if one push
 * sent values): kept pushes stay in their frames; from the third on, all
 * but the last are summed in rank order into accum (the first two in one
 * pass) and the optimizer adds the last as it reads, so two pushes, the
 * common round, cost no pass of their own. NULL if no push sent values. */
static const float *round_gradient(ps_table_t *t, const float **more)
{
    const float *first = NULL, *last = NULL;
    bool summed = false;
    for (uint32_t r = 0; r < t->world; r++) {
        if (t->round.slot[r] != PS_ROUND_VALUES)
            continue;
        const float *g = zmq_msg_data(&t->stash[r]);
        if (!first) {
            first = g;
        } else if (!last) {
            last = g;
        } else if (!summed) {
            for (uint64_t i = 0; i < t->len; i++)
                t->accum[i] = first[i] + last[i];
            summed = true;
            last = g;
        } else {
            for (uint64_t i = 0; i < t->len; i++)
                t->accum[i] += last[i];
            last = g;
        }
    }
    *more = last;
    return summed ? t->accum : first;
}

bool ps_table_try_complete(ps_table_t *t, const uint8_t *live)
{
    if (!ps_round_is_complete(&t->round, live))
        return false;
    uint64_t samples = 0;
    for (uint32_t r = 0; r < t->world; r++)
        if (t->round.slot[r] == PS_ROUND_VALUES)
            samples += t->stash_samples[r];
    if (!ps_round_is_skipped(&t->round) && samples) {
        /* the accumulator pass (three pushes or more) in the step's own
         * floating-point mode, so a round sums alike however many pushed */
        ps_optim_fp_t fp = ps_optim_fp_enter();
        const float *more, *grad = round_gradient(t, &more);
        apply_update(t, grad, more, 1.0f / (float)samples);
        ps_optim_fp_leave(fp);
    }
    drop_stash(t);
    ps_round_close(&t->round);
    return true;
}

void ps_table_get_state(const ps_table_t *t, ps_table_state_t *s)
{
    *s = (ps_table_state_t){t->len,   t->world,     t->round.clock, t->round.pushes,
                            t->opt.t, t->cur->data, t->opt.m,       t->opt.v};
}

int ps_table_set_state(ps_table_t *t, const ps_table_state_t *s)
{
    if (s->len != t->len || s->world != t->world || (!s->m) != (!t->opt.m) ||
        (!s->v) != (!t->opt.v))
        return PS_ERANGE;
    drop_stash(t);
    ps_round_restore(&t->round, s->clock, s->pushes);
    t->opt.t = s->updates;
    param_buf_t *b = writable_buf(t);
    memcpy(b->data, s->params, t->len * sizeof(float));
    commit_buf(t, b);
    if (t->opt.m)
        memcpy(t->opt.m, s->m, t->len * sizeof(float));
    if (t->opt.v)
        memcpy(t->opt.v, s->v, t->len * sizeof(float));
    return PS_OK;
}

const uint64_t *ps_table_shape(const ps_table_t *t, int *ndim)
{
    *ndim = t->ndim;
    return t->shape;
}

uint32_t ps_table_id(const ps_table_t *t)
{
    return t->id;
}

const ps_round_t *ps_table_round(const ps_table_t *t)
{
    return &t->round;
}

int64_t ps_table_clock(const ps_table_t *t)
{
    return ps_round_clock(&t->round);
}

int64_t ps_table_last_skipped_round(const ps_table_t *t)
{
    return t->round.last_skipped;
}

int64_t ps_table_ready_clock(const ps_table_t *t, const uint8_t *live)
{
    return ps_round_ready_clock(&t->round, live);
}
