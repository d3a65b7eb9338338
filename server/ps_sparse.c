/* ps_sparse.c - see ps_sparse.h. */
#include "ps_sparse.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ps_hashmap.h"
#include "ps_optim.h"
#include "ps_rng.h"
#include "ps_round.h"

#define BLOCK_SHIFT 16
#define BLOCK_ROWS (1u << BLOCK_SHIFT)
#define MAX_ROWS (UINT32_MAX - 2)

struct ps_sparse {
    char name[64];
    uint32_t id, dim, stride; /* stride: floats per row, value then optimizer state */
    ps_optim_spec_t optim;
    uint64_t seed;
    double init_scale;
    uint32_t world;
    ps_hashmap_t index;
    float **blocks;
    uint8_t **block_dirty; /* per block: a bit per row, made or updated since the last checkpoint */
    uint32_t n_blocks, cap_blocks;
    uint32_t n_rows, n_dirty;
    ps_round_t round;                    /* which pushes count, and the clocks */
    zmq_msg_t *stash_keys, *stash_grads; /* BSP: per rank with values, the round's push */
    size_t stash_bytes;
};

static uint32_t state_per_elem(ps_optim_kind_t kind)
{
    switch (kind) {
    case PS_OPTIM_SGD:
        return 0;
    case PS_OPTIM_MOMENTUM:
    case PS_OPTIM_ADAGRAD:
    case PS_OPTIM_RMSPROP:
        return 1;
    default: /* ADAM(W): m and v; FTRL: z and n */
        return 2;
    }
}

/* Adam's bias correction needs the row's own step count: one more float
 * at the end of the row holds it (as uint32 bits). */
static bool has_row_steps(ps_optim_kind_t kind)
{
    return kind == PS_OPTIM_ADAM || kind == PS_OPTIM_ADAMW;
}

ps_sparse_t *ps_sparse_new(const ps_sparse_params_t *p, ps_errbuf_t *err)
{
    const ps_optim_spec_t *o = &p->optim;
    if (p->dim < 1 || p->dim > 4096) {
        ps_err_set(err, PS_EINVAL, "sparse table '%s': dim %u must be 1 to 4096", p->name, p->dim);
        return NULL;
    }
    const char *why = o->kind == PS_OPTIM_FTRL ? NULL : ps_optim_spec_check(o);
    if (why || (unsigned)o->kind > PS_OPTIM_FTRL) {
        ps_err_set(err, PS_EINVAL, "sparse table '%s': optimizer: %s", p->name,
                   why ? why : "unknown optimizer");
        return NULL;
    }
    if (o->schedule != PS_SCHED_CONSTANT || o->warmup_steps) {
        ps_err_set(err, PS_EINVAL,
                   "sparse table '%s': rows are updated when their keys come up, "
                   "so only a constant learning rate applies",
                   p->name);
        return NULL;
    }
    if (!(o->lr > 0) || !isfinite(o->lr) || o->l1 < 0 || o->l2 < 0 || o->ftrl_beta < 0 ||
        !(p->init_scale >= 0) || (o->kind == PS_OPTIM_FTRL && p->init_scale != 0)) {
        ps_err_set(err, PS_EINVAL,
                   "sparse table '%s': needs lr > 0, l1, l2, ftrl_beta >= 0, init_scale >= 0 "
                   "(0 for ftrl, whose weights follow from its state)",
                   p->name);
        return NULL;
    }
    ps_sparse_t *t = ps_xcalloc(1, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", p->name);
    t->id = p->id;
    t->dim = p->dim;
    t->stride = p->dim * (1 + state_per_elem(o->kind)) + (has_row_steps(o->kind) ? 1 : 0);
    t->optim = *o;
    t->seed = p->seed;
    t->init_scale = p->init_scale;
    t->world = p->world;
    ps_hashmap_init(&t->index, 1024);
    if (ps_round_init(&t->round, p->world, p->max_staleness) != PS_OK) {
        ps_err_set(err, PS_ENOMEM, "sparse table '%s': out of memory", p->name);
        ps_hashmap_free(&t->index);
        free(t);
        return NULL;
    }
    t->stash_keys = ps_xcalloc(p->world, sizeof *t->stash_keys);
    t->stash_grads = ps_xcalloc(p->world, sizeof *t->stash_grads);
    return t;
}

/* Lets go of rank r's push kept for the round in progress, if it sent
 * values: closed and made empty again, so a second drop is harmless. */
static void drop_rank_stash(ps_sparse_t *t, uint32_t r)
{
    if (t->round.slot[r] != PS_ROUND_VALUES)
        return;
    t->stash_bytes -= zmq_msg_size(&t->stash_keys[r]) + zmq_msg_size(&t->stash_grads[r]);
    zmq_msg_close(&t->stash_keys[r]);
    zmq_msg_close(&t->stash_grads[r]);
    zmq_msg_init(&t->stash_keys[r]);
    zmq_msg_init(&t->stash_grads[r]);
}

/* Lets go of the pushes kept for the BSP round in progress. */
static void drop_stash(ps_sparse_t *t)
{
    for (uint32_t r = 0; r < t->world; r++)
        drop_rank_stash(t, r);
    t->stash_bytes = 0;
}

void ps_sparse_destroy(ps_sparse_t **tp)
{
    ps_sparse_t *t = *tp;
    if (!t)
        return;
    drop_stash(t);
    for (uint32_t b = 0; b < t->n_blocks; b++) {
        free(t->blocks[b]);
        free(t->block_dirty[b]);
    }
    free(t->blocks);
    free(t->block_dirty);
    ps_hashmap_free(&t->index);
    ps_round_fini(&t->round);
    free(t->stash_keys);
    free(t->stash_grads);
    free(t);
    *tp = NULL;
}

const char *ps_sparse_name(const ps_sparse_t *t)
{
    return t->name;
}
uint32_t ps_sparse_dim(const ps_sparse_t *t)
{
    return t->dim;
}
uint64_t ps_sparse_keys(const ps_sparse_t *t)
{
    return t->n_rows;
}
const ps_optim_spec_t *ps_sparse_optim(const ps_sparse_t *t)
{
    return &t->optim;
}

size_t ps_sparse_bytes(const ps_sparse_t *t)
{
    return (size_t)t->n_blocks * BLOCK_ROWS * t->stride * sizeof(float) +
           (size_t)t->n_blocks * BLOCK_ROWS / 8 + ps_hashmap_bytes(&t->index) + t->stash_bytes +
           t->cap_blocks * 2 * sizeof(void *);
}

size_t ps_sparse_row_bytes(const ps_sparse_t *t)
{
    /* the index keeps load below 1/2: two slots of a key and a row number */
    return t->stride * sizeof(float) + 2 * (sizeof(uint64_t) + sizeof(uint32_t));
}

bool ps_sparse_same_layout(const ps_sparse_t *t, const char *name, uint32_t dim)
{
    return strcmp(t->name, name) == 0 && t->dim == dim;
}

float ps_sparse_init_value(uint64_t seed, uint32_t table_id, uint64_t key, uint32_t j,
                           double init_scale)
{
    if (init_scale == 0)
        return 0;
    uint64_t h = ps_rng_mix(ps_rng_mix(ps_rng_mix(seed, table_id), key), j);
    double u = (double)(h >> 11) * (1.0 / 9007199254740992.0); /* [0, 1) */
    return (float)((2 * u - 1) * init_scale);
}

static float *row_at(const ps_sparse_t *t, uint32_t row)
{
    return t->blocks[row >> BLOCK_SHIFT] + (size_t)(row & (BLOCK_ROWS - 1)) * t->stride;
}

static void mark_dirty(ps_sparse_t *t, uint32_t row)
{
    uint8_t *bits = t->block_dirty[row >> BLOCK_SHIFT], bit = (uint8_t)(1u << (row & 7));
    uint32_t at = (row & (BLOCK_ROWS - 1)) >> 3;
    if (!(bits[at] & bit)) {
        bits[at] |= bit;
        t->n_dirty++;
    }
}

/* The row number of key, made (with its start value, dirty) if new;
 * PS_HASHMAP_NONE past the limit. */
static uint32_t touch_row(ps_sparse_t *t, uint64_t key)
{
    if (t->n_rows >= MAX_ROWS)
        return ps_hashmap_get(&t->index, key);
    int inserted;
    uint32_t row = ps_hashmap_get_or_insert(&t->index, key, t->n_rows, &inserted);
    if (!inserted)
        return row;
    if ((row >> BLOCK_SHIFT) >= t->n_blocks) {
        if (t->n_blocks == t->cap_blocks) {
            t->cap_blocks = t->cap_blocks ? t->cap_blocks * 2 : 16;
            t->blocks = ps_xrealloc(t->blocks, t->cap_blocks * sizeof *t->blocks);
            t->block_dirty = ps_xrealloc(t->block_dirty, t->cap_blocks * sizeof *t->block_dirty);
        }
        /* zeroed: optimizer state starts at 0 */
        t->blocks[t->n_blocks] = ps_xcalloc((size_t)BLOCK_ROWS * t->stride, sizeof(float));
        t->block_dirty[t->n_blocks] = ps_xcalloc(BLOCK_ROWS / 8, 1);
        t->n_blocks++;
    }
    t->n_rows++;
    mark_dirty(t, row);
    float *r = row_at(t, row);
    for (uint32_t j = 0; j < t->dim; j++)
        r[j] = ps_sparse_init_value(t->seed, t->id, key, j, t->init_scale);
    return row;
}

/* The row of key, made if new; NULL past the limit. */
static float *touch(ps_sparse_t *t, uint64_t key)
{
    uint32_t row = touch_row(t, key);
    return row == PS_HASHMAP_NONE ? NULL : row_at(t, row);
}

int ps_sparse_pull(ps_sparse_t *t, const uint64_t *keys, uint64_t n, float *out)
{
    for (uint64_t i = 0; i < n; i++) {
        const float *r = touch(t, keys[i]);
        if (!r)
            return PS_ERANGE;
        memcpy(out + i * t->dim, r, t->dim * sizeof(float));
    }
    return PS_OK;
}

void ps_sparse_peek(const ps_sparse_t *t, const uint64_t *keys, uint64_t n, float *out)
{
    for (uint64_t i = 0; i < n; i++) {
        uint32_t row = ps_hashmap_get(&t->index, keys[i]);
        for (uint32_t j = 0; j < t->dim; j++)
            out[i * t->dim + j] =
                row != PS_HASHMAP_NONE
                    ? row_at(t, row)[j]
                    : ps_sparse_init_value(t->seed, t->id, keys[i], j, t->init_scale);
    }
}

static void step_row(const ps_sparse_t *t, float *r, const float *g)
{
    const ps_optim_spec_t *o = &t->optim;
    uint32_t d = t->dim;
    switch (o->kind) {
    case PS_OPTIM_FTRL: {
        float *z = r + d, *nn = r + 2 * d;
        for (uint32_t j = 0; j < d; j++) {
            double gj = g[j], n_old = nn[j], n_new = n_old + gj * gj;
            double sigma = (sqrt(n_new) - sqrt(n_old)) / o->lr;
            z[j] += (float)(gj - sigma * r[j]);
            nn[j] = (float)n_new;
            double zj = z[j];
            r[j] = fabs(zj) <= o->l1 ? 0.0f
                                     : (float)(-(zj - copysign(o->l1, zj)) /
                                               ((o->ftrl_beta + sqrt(n_new)) / o->lr + o->l2));
        }
        break;
    }
    default: {
        /* every dense optimizer, row-wise, through the dense code itself:
         * the row's values, then its state (m, then v) */
        uint32_t steps = 0;
        bool counted = has_row_steps(o->kind);
        if (counted)
            memcpy(&steps, r + t->stride - 1, sizeof steps);
        ps_optim_t view = {.spec = *o,
                           .t = steps,
                           .len = d,
                           .m = state_per_elem(o->kind) >= 1 ? r + d : NULL,
                           .v = state_per_elem(o->kind) >= 2 ? r + 2 * d : NULL};
        ps_optim_step(&view, r, g, 1.0f);
        if (counted) {
            steps = (uint32_t)view.t;
            memcpy(r + t->stride - 1, &steps, sizeof steps);
        }
    }
    }
}

int ps_sparse_apply(ps_sparse_t *t, uint64_t key, const float *grad)
{
    uint32_t row = touch_row(t, key);
    if (row == PS_HASHMAP_NONE)
        return PS_ERANGE;
    step_row(t, row_at(t, row), grad);
    mark_dirty(t, row);
    return PS_OK;
}

static void apply_push(ps_sparse_t *t, const zmq_msg_t *keys, const zmq_msg_t *grads)
{
    uint64_t n = zmq_msg_size((zmq_msg_t *)keys) / sizeof(uint64_t);
    const char *k = zmq_msg_data((zmq_msg_t *)keys);
    const char *g = zmq_msg_data((zmq_msg_t *)grads);
    float row_grad[4096];
    ps_optim_fp_t fp = ps_optim_fp_enter(); /* once, not once a row */
    for (uint64_t i = 0; i < n; i++) {
        uint64_t key;
        memcpy(&key, k + i * sizeof key, sizeof key); /* frames need not be aligned */
        memcpy(row_grad, g + i * t->dim * sizeof(float), t->dim * sizeof(float));
        ps_sparse_apply(t, key, row_grad);
    }
    ps_optim_fp_leave(fp);
}

int ps_sparse_push(ps_sparse_t *t, uint32_t rank, int64_t clock, zmq_msg_t *keys, zmq_msg_t *grads)
{
    switch (ps_round_offer(&t->round, rank, clock, true)) {
    case PS_ROUND_RETRY:
        return PS_OK;
    case PS_ROUND_AHEAD:
        return PS_ERANGE;
    case PS_ROUND_APPLY:
        apply_push(t, keys, grads);
        return PS_OK;
    case PS_ROUND_KEEP:
        zmq_msg_init(&t->stash_keys[rank]);
        zmq_msg_init(&t->stash_grads[rank]);
        zmq_msg_move(&t->stash_keys[rank], keys);
        zmq_msg_move(&t->stash_grads[rank], grads);
        t->stash_bytes += zmq_msg_size(&t->stash_keys[rank]) + zmq_msg_size(&t->stash_grads[rank]);
        return PS_OK;
    }
    return PS_EINVAL;
}

/* BSP: the round's pushes summed key by key (in rank order), then one
 * optimizer step per key: the update one worker makes with the whole
 * global batch. FTRL, Adagrad and Adam are not linear in the gradient, so
 * applying each rank's part in turn would give another model. */
static void apply_round(ps_sparse_t *t)
{
    uint64_t total = 0;
    for (uint32_t r = 0; r < t->world; r++)
        if (t->round.slot[r] == PS_ROUND_VALUES)
            total += zmq_msg_size(&t->stash_keys[r]) / sizeof(uint64_t);
    ps_hashmap_t slot_of;
    ps_hashmap_init(&slot_of, total);
    uint64_t *keys = ps_xmalloc((total ? total : 1) * sizeof *keys);
    float *sums = ps_xcalloc((total ? total : 1) * t->dim, sizeof *sums);
    uint32_t n = 0;
    for (uint32_t r = 0; r < t->world; r++) {
        if (t->round.slot[r] != PS_ROUND_VALUES)
            continue;
        uint64_t m = zmq_msg_size(&t->stash_keys[r]) / sizeof(uint64_t);
        const char *k = zmq_msg_data(&t->stash_keys[r]);
        const char *g = zmq_msg_data(&t->stash_grads[r]);
        for (uint64_t i = 0; i < m; i++) {
            uint64_t key;
            memcpy(&key, k + i * sizeof key, sizeof key); /* frames need not be aligned */
            int inserted = 0;
            uint32_t at = ps_hashmap_get_or_insert(&slot_of, key, n, &inserted);
            if (inserted)
                keys[n++] = key;
            float *sum = sums + (size_t)at * t->dim;
            for (uint32_t j = 0; j < t->dim; j++) {
                float gj;
                memcpy(&gj, g + (i * t->dim + j) * sizeof gj, sizeof gj);
                sum[j] += gj;
            }
        }
    }
    ps_optim_fp_t fp = ps_optim_fp_enter(); /* once, not once a row */
    for (uint32_t i = 0; i < n; i++)
        ps_sparse_apply(t, keys[i], sums + (size_t)i * t->dim);
    ps_optim_fp_leave(fp);
    free(sums);
    free(keys);
    ps_hashmap_free(&slot_of);
}

bool ps_sparse_try_complete(ps_sparse_t *t, const uint8_t *live)
{
    if (!ps_round_is_complete(&t->round, live))
        return false;
    apply_round(t);
    drop_stash(t);
    ps_round_close(&t->round);
    return true;
}

int64_t ps_sparse_ready_clock(const ps_sparse_t *t, const uint8_t *live)
{
    return ps_round_ready_clock(&t->round, live);
}

int64_t ps_sparse_worker_clock(const ps_sparse_t *t, uint32_t rank)
{
    return ps_round_rank_clock(&t->round, rank);
}

const ps_round_t *ps_sparse_round(const ps_sparse_t *t)
{
    return &t->round;
}

bool ps_sparse_forget_rank(ps_sparse_t *t, uint32_t rank)
{
    if (rank >= t->world)
        return false;
    drop_rank_stash(t, rank); /* reads the slot ps_round_forget clears */
    return ps_round_forget(&t->round, rank);
}

void ps_sparse_layout(const ps_sparse_t *t, ps_sparse_layout_t *out)
{
    *out = (ps_sparse_layout_t){.id = t->id,
                                .dim = t->dim,
                                .stride = t->stride,
                                .name = t->name,
                                .optim = &t->optim,
                                .seed = t->seed,
                                .init_scale = t->init_scale,
                                .world = t->world,
                                .clock = t->round.clock,
                                .pushes = t->round.pushes};
}

static bool row_dirty(const ps_sparse_t *t, uint32_t i)
{
    return (t->block_dirty[i >> BLOCK_SHIFT][(i & (BLOCK_ROWS - 1)) >> 3] >> (i & 7)) & 1;
}

typedef struct {
    const ps_sparse_t *t;
    bool dirty_only;
    ps_sparse_row_fn fn;
    void *ctx;
} each_t;

static void each_slot(uint64_t key, uint32_t row, void *ctx)
{
    const each_t *e = ctx;
    if (!e->dirty_only || row_dirty(e->t, row))
        e->fn(key, row_at(e->t, row), e->ctx);
}

/* The keys live in the index only (8 bytes a row fewer than a key per
 * row): a checkpoint walks the index. */
void ps_sparse_each_row(const ps_sparse_t *t, bool dirty_only, ps_sparse_row_fn fn, void *ctx)
{
    each_t e = {t, dirty_only, fn, ctx};
    ps_hashmap_each(&t->index, each_slot, &e);
}

uint32_t ps_sparse_n_dirty(const ps_sparse_t *t)
{
    return t->n_dirty;
}

void ps_sparse_clear_dirty(ps_sparse_t *t)
{
    for (uint32_t b = 0; b < t->n_blocks; b++)
        memset(t->block_dirty[b], 0, BLOCK_ROWS / 8);
    t->n_dirty = 0;
}

void ps_sparse_clear(ps_sparse_t *t)
{
    drop_stash(t);
    for (uint32_t b = 0; b < t->n_blocks; b++) {
        free(t->blocks[b]);
        free(t->block_dirty[b]);
    }
    t->n_blocks = 0;
    t->n_rows = 0;
    t->n_dirty = 0;
    ps_hashmap_free(&t->index);
    ps_hashmap_init(&t->index, 1024);
}

int ps_sparse_put_row(ps_sparse_t *t, uint64_t key, const float *row)
{
    uint32_t i = touch_row(t, key);
    if (i == PS_HASHMAP_NONE)
        return PS_ERANGE;
    memcpy(row_at(t, i), row, t->stride * sizeof(float));
    uint8_t *bits = &t->block_dirty[i >> BLOCK_SHIFT][(i & (BLOCK_ROWS - 1)) >> 3];
    if (*bits & (1u << (i & 7))) {
        *bits &= (uint8_t) ~(1u << (i & 7));
        t->n_dirty--;
    }
    return PS_OK;
}

void ps_sparse_restore_round(ps_sparse_t *t, int64_t clock, const int64_t *pushes)
{
    drop_stash(t);
    ps_round_restore(&t->round, clock, pushes);
}
