/* ps_table.c - dense table slice with BSP rounds and SSP/ASP clocks. */
#include "ps_table.h"

#include <stdlib.h>
#include <string.h>

#include "ps_log.h"

struct ps_table {
    char name[PS_TABLE_NAME_MAX];
    uint32_t id;
    uint64_t n_total, offset, len;
    uint64_t shape[PS_TABLE_MAX_DIMS];
    int ndim;
    uint32_t world;
    int max_staleness;
    float *w;
    ps_optim_t opt;
    int64_t clock;         /* BSP rounds applied */
    int64_t *pushes;       /* per rank: pushes accepted */
    /* BSP round in progress */
    zmq_msg_t *stash;      /* per rank: gradient sums of the current clock */
    uint64_t *stash_samples;
    uint8_t *stashed;      /* 1 = values kept, 2 = a skip */
    int64_t last_skipped;  /* clock of the newest skipped BSP round */
    float *accum;          /* sum of the round, len floats */
};

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
    t->max_staleness = p->max_staleness;
    size_t n = p->len ? p->len : 1;
    t->w = malloc(n * sizeof(float));
    t->pushes = calloc(p->world, sizeof *t->pushes);
    t->stash = calloc(p->world, sizeof *t->stash);
    t->stash_samples = calloc(p->world, sizeof *t->stash_samples);
    t->stashed = calloc(p->world, 1);
    t->accum = p->max_staleness == 0 ? malloc(n * sizeof(float)) : NULL;
    if (!t->w || !t->pushes || !t->stash || !t->stash_samples || !t->stashed ||
        (p->max_staleness == 0 && !t->accum) || ps_optim_init(&t->opt, &p->optim, p->len) != PS_OK)
        goto oom;
    memcpy(t->w, init, p->len * sizeof(float));
    t->last_skipped = -1;
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
    for (uint32_t r = 0; t->stashed && r < t->world; r++)
        if (t->stashed[r] == 1)
            zmq_msg_close(&t->stash[r]);
    ps_optim_fini(&t->opt);
    free(t->w);
    free(t->pushes);
    free(t->stash);
    free(t->stash_samples);
    free(t->stashed);
    free(t->accum);
    free(t);
    *tp = NULL;
}

const char *ps_table_name(const ps_table_t *t) { return t->name; }
uint64_t ps_table_n_total(const ps_table_t *t) { return t->n_total; }
uint64_t ps_table_offset(const ps_table_t *t) { return t->offset; }
uint64_t ps_table_len(const ps_table_t *t) { return t->len; }
const float *ps_table_params(const ps_table_t *t) { return t->w; }
uint64_t ps_table_updates(const ps_table_t *t) { return t->opt.t; }
const ps_optim_spec_t *ps_table_optim(const ps_table_t *t) { return &t->opt.spec; }

int64_t ps_table_worker_clock(const ps_table_t *t, uint32_t rank)
{
    return rank < t->world ? t->pushes[rank] : -1;
}

size_t ps_table_bytes(const ps_table_t *t)
{
    size_t per = sizeof(float) + ps_optim_state_bytes_per_elem(t->opt.spec.kind);
    return sizeof *t + t->len * per + (t->accum ? t->len * sizeof(float) : 0) +
           t->world * (sizeof(int64_t) + sizeof(zmq_msg_t) + 9);
}

bool ps_table_same_layout(const ps_table_t *t, const char *name, uint64_t n_total)
{
    return strcmp(t->name, name) == 0 && t->n_total == n_total;
}

int ps_table_push(ps_table_t *t, uint32_t rank, int64_t clock, zmq_msg_t *values,
                  uint64_t n_samples)
{
    if (t->max_staleness == 0) {
        if (clock < t->clock || (clock == t->clock && t->stashed[rank]))
            return PS_OK; /* a retry of a push already counted */
        if (clock > t->clock)
            return PS_ERANGE;
        if (values) {
            zmq_msg_init(&t->stash[rank]);
            zmq_msg_move(&t->stash[rank], values);
        }
        t->stash_samples[rank] = n_samples;
        t->stashed[rank] = values ? 1 : 2;
        t->pushes[rank] = clock + 1;
        return PS_OK;
    }
    if (clock < t->pushes[rank])
        return PS_OK;
    if (clock > t->pushes[rank])
        return PS_ERANGE;
    if (values && n_samples)
        ps_optim_step(&t->opt, t->w, zmq_msg_data(values), 1.0f / (float)n_samples);
    t->pushes[rank]++;
    return PS_OK;
}

bool ps_table_try_complete(ps_table_t *t, const uint8_t *live)
{
    if (t->max_staleness != 0)
        return false;
    uint32_t n_stashed = 0;
    for (uint32_t r = 0; r < t->world; r++) {
        if (live[r] && !t->stashed[r])
            return false;
        n_stashed += t->stashed[r];
    }
    if (n_stashed == 0)
        return false;
    uint64_t samples = 0;
    bool first = true, skip = false;
    for (uint32_t r = 0; r < t->world; r++)
        skip |= t->stashed[r] == 2;
    for (uint32_t r = 0; r < t->world; r++) {
        if (t->stashed[r] != 1 || skip) {
            if (t->stashed[r] == 1)
                zmq_msg_close(&t->stash[r]);
            t->stashed[r] = 0;
            continue;
        }
        const float *g = zmq_msg_data(&t->stash[r]);
        if (first)
            memcpy(t->accum, g, t->len * sizeof(float));
        else
            for (uint64_t i = 0; i < t->len; i++)
                t->accum[i] += g[i];
        first = false;
        samples += t->stash_samples[r];
        zmq_msg_close(&t->stash[r]);
        t->stashed[r] = 0;
    }
    if (skip)
        t->last_skipped = t->clock;
    else if (samples)
        ps_optim_step(&t->opt, t->w, t->accum, 1.0f / (float)samples);
    t->clock++;
    return true;
}

void ps_table_get_state(const ps_table_t *t, ps_table_state_t *s)
{
    *s = (ps_table_state_t){t->len, t->world, t->clock, t->pushes, t->opt.t, t->w, t->opt.m,
                            t->opt.v};
}

int ps_table_set_state(ps_table_t *t, const ps_table_state_t *s)
{
    if (s->len != t->len || s->world != t->world || (!s->m) != (!t->opt.m) ||
        (!s->v) != (!t->opt.v))
        return PS_ERANGE;
    for (uint32_t r = 0; r < t->world; r++) {
        if (t->stashed[r] == 1)
            zmq_msg_close(&t->stash[r]);
        t->stashed[r] = 0;
    }
    memcpy(t->pushes, s->pushes, t->world * sizeof *t->pushes);
    t->clock = s->clock;
    t->opt.t = s->updates;
    memcpy(t->w, s->params, t->len * sizeof(float));
    if (t->opt.m)
        memcpy(t->opt.m, s->m, t->len * sizeof(float));
    if (t->opt.v)
        memcpy(t->opt.v, s->v, t->len * sizeof(float));
    t->last_skipped = -1;
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

int64_t ps_table_clock(const ps_table_t *t)
{
    if (t->max_staleness == 0)
        return t->clock;
    int64_t min = INT64_MAX;
    for (uint32_t r = 0; r < t->world; r++)
        min = t->pushes[r] < min ? t->pushes[r] : min;
    return min;
}

int64_t ps_table_last_skipped_round(const ps_table_t *t)
{
    return t->last_skipped;
}

int64_t ps_table_ready_clock(const ps_table_t *t, const uint8_t *live)
{
    if (t->max_staleness == 0)
        return t->clock;
    int64_t min = INT64_MAX;
    for (uint32_t r = 0; r < t->world; r++)
        if (live[r] && t->pushes[r] < min)
            min = t->pushes[r];
    return min;
}
