/* ps_job.c - see ps_job.h. */
#include "ps_job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_wire.h"

struct ps_job {
    char name[PS_JOB_NAME_MAX];
    uint32_t world;
    int max_staleness;
    ps_rank_t *ranks;
    uint8_t *live; /* per rank: counts in the barriers */
    ps_job_table_t *tables;
    uint32_t n_tables;         /* capacity of tables[] (ids below it) */
    int64_t skip_logged_clock; /* newest skipped clock already logged */
    uint64_t generation;
    int64_t next_ckpt_clock;
    ps_pending_t pending;
};

ps_job_t *ps_job_new(const char *name, uint32_t world, int max_staleness, int64_t now_ms)
{
    ps_job_t *job = ps_xcalloc(1, sizeof *job);
    snprintf(job->name, sizeof job->name, "%s", name);
    job->world = world;
    job->max_staleness = max_staleness;
    job->ranks = ps_xcalloc(world, sizeof *job->ranks);
    job->live = ps_xmalloc(world);
    memset(job->live, 1, world);
    for (uint32_t r = 0; r < world; r++)
        job->ranks[r].last_seen_ms = now_ms; /* a rank that never shows up times out too */
    job->skip_logged_clock = -1;
    ps_pending_init(&job->pending);
    return job;
}

void ps_job_destroy(ps_job_t **jobp)
{
    ps_job_t *job = *jobp;
    if (!job)
        return;
    for (uint32_t i = 0; i < job->n_tables; i++) {
        for (uint32_t c = 0; c < job->tables[i].n_chunks; c++)
            ps_table_destroy(&job->tables[i].chunks[c]);
        free(job->tables[i].chunks);
        ps_sparse_destroy(&job->tables[i].sparse);
    }
    ps_pending_fini(&job->pending);
    free(job->tables);
    free(job->ranks);
    free(job->live);
    free(job);
    *jobp = NULL;
}

const char *ps_job_name(const ps_job_t *job)
{
    return job->name;
}
uint32_t ps_job_world(const ps_job_t *job)
{
    return job->world;
}
int ps_job_max_staleness(const ps_job_t *job)
{
    return job->max_staleness;
}
uint64_t ps_job_generation(const ps_job_t *job)
{
    return job->generation;
}
void ps_job_set_generation(ps_job_t *job, uint64_t g)
{
    job->generation = g;
}
ps_pending_t *ps_job_pending(ps_job_t *job)
{
    return &job->pending;
}
int64_t ps_job_next_checkpoint(const ps_job_t *job)
{
    return job->next_ckpt_clock;
}
void ps_job_set_next_checkpoint(ps_job_t *job, int64_t clock)
{
    job->next_ckpt_clock = clock;
}
const uint8_t *ps_job_live(const ps_job_t *job)
{
    return job->live;
}
const ps_rank_t *ps_job_rank(const ps_job_t *job, uint32_t r)
{
    return &job->ranks[r];
}

bool ps_job_first_skip(ps_job_t *job, int64_t clock)
{
    if (clock <= job->skip_logged_clock)
        return false;
    job->skip_logged_clock = clock;
    return true;
}

/* ---- ranks ---- */

bool ps_job_join(ps_job_t *job, uint32_t rank, const char *peer, int64_t now_ms)
{
    ps_rank_t *r = &job->ranks[rank];
    bool rejoin = r->joined;
    snprintf(r->peer, sizeof r->peer, "%s", peer);
    r->joined = true;
    r->last_seen_ms = now_ms;
    if (r->dead || r->done) {
        r->dead = r->done = r->left = false;
        job->live[rank] = 1;
    }
    return rejoin;
}

void ps_job_seen(ps_job_t *job, uint32_t rank, int64_t now_ms)
{
    job->ranks[rank].last_seen_ms = now_ms;
}

void ps_job_heartbeat(ps_job_t *job, uint32_t rank, double samples, double loss, int64_t now_ms)
{
    ps_rank_t *r = &job->ranks[rank];
    r->last_seen_ms = now_ms;
    if (r->samples_at_ms && now_ms > r->samples_at_ms && samples >= r->samples)
        r->samples_per_s = (samples - r->samples) * 1000.0 / (double)(now_ms - r->samples_at_ms);
    r->samples = samples;
    r->samples_at_ms = now_ms;
    r->loss = loss;
}

void ps_job_finish_rank(ps_job_t *job, uint32_t rank, bool bye)
{
    job->ranks[rank].done = true;
    job->ranks[rank].left |= bye;
    job->live[rank] = 0;
}

uint32_t ps_job_sweep(ps_job_t *job, int64_t now_ms, int64_t timeout_ms, ps_job_dead_fn on_dead,
                      void *ctx)
{
    uint32_t n = 0;
    for (uint32_t k = 0; k < job->world; k++) {
        ps_rank_t *r = &job->ranks[k];
        if (r->dead || r->done || now_ms - r->last_seen_ms <= timeout_ms)
            continue;
        r->dead = true;
        job->live[k] = 0;
        n++;
        if (on_dead)
            on_dead(ctx, job, k, now_ms - r->last_seen_ms);
    }
    return n;
}

const char *ps_job_rank_state(const ps_job_t *job, uint32_t rank)
{
    const ps_rank_t *r = &job->ranks[rank];
    if (r->dead)
        return "dead";
    if (r->left)
        return "left";
    if (r->done)
        return "done";
    return r->joined ? "live" : "waiting";
}

bool ps_job_all_done(const ps_job_t *job)
{
    for (uint32_t k = 0; k < job->world; k++)
        if (!job->ranks[k].done && !job->ranks[k].dead)
            return false;
    return true;
}

bool ps_job_all_gone(const ps_job_t *job)
{
    for (uint32_t k = 0; k < job->world; k++)
        if (!job->ranks[k].left && !job->ranks[k].dead)
            return false;
    return true;
}

uint32_t ps_job_alive(const ps_job_t *job)
{
    uint32_t n = 0;
    for (uint32_t k = 0; k < job->world; k++)
        n += job->ranks[k].joined && !job->ranks[k].dead && !job->ranks[k].left;
    return n;
}

/* ---- tables ---- */

uint32_t ps_job_n_tables(const ps_job_t *job)
{
    return job->n_tables;
}

const ps_job_table_t *ps_job_table(const ps_job_t *job, uint32_t id)
{
    return id < job->n_tables ? &job->tables[id] : NULL;
}

ps_job_table_t *ps_job_slot(ps_job_t *job, uint32_t id)
{
    if (id >= job->n_tables) {
        uint32_t n = id + 1;
        job->tables = ps_xrealloc(job->tables, n * sizeof *job->tables);
        memset(job->tables + job->n_tables, 0, (n - job->n_tables) * sizeof *job->tables);
        job->n_tables = n;
    }
    return &job->tables[id];
}

ps_job_table_t *ps_job_dense(ps_job_t *job, uint32_t id, uint64_t n_elems, uint32_t n_chunks)
{
    ps_job_table_t *e = ps_job_slot(job, id);
    if (e->sparse || (e->n_elems && (e->n_elems != n_elems || e->n_chunks != n_chunks)))
        return NULL;
    if (!e->n_elems) {
        e->n_elems = n_elems;
        e->n_chunks = n_chunks;
        e->chunks = ps_xcalloc(n_chunks, sizeof *e->chunks);
    }
    return e;
}

ps_table_t *ps_job_chunk(const ps_job_t *job, uint32_t id, uint32_t chunk)
{
    if (id >= job->n_tables || chunk >= job->tables[id].n_chunks)
        return NULL;
    return job->tables[id].chunks[chunk];
}

ps_sparse_t *ps_job_sparse(const ps_job_t *job, uint32_t id)
{
    return id < job->n_tables ? job->tables[id].sparse : NULL;
}

uint32_t ps_job_chunks(const ps_job_t *job, ps_table_t ***chunks, uint32_t **chunk_ids)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < job->n_tables; i++)
        for (uint32_t c = 0; c < job->tables[i].n_chunks; c++)
            n += job->tables[i].chunks[c] != NULL;
    *chunks = ps_xmalloc((n ? n : 1) * sizeof **chunks);
    *chunk_ids = ps_xmalloc((n ? n : 1) * sizeof **chunk_ids);
    uint32_t k = 0;
    for (uint32_t i = 0; i < job->n_tables; i++)
        for (uint32_t c = 0; c < job->tables[i].n_chunks; c++)
            if (job->tables[i].chunks[c]) {
                (*chunks)[k] = job->tables[i].chunks[c];
                (*chunk_ids)[k++] = c;
            }
    return n;
}

/* ---- clocks and consistency ---- */

/* min (want_max false) or max of f over every chunk on this shard. */
static int64_t fold_chunks(const ps_job_t *job, bool want_max, int64_t none,
                           int64_t (*f)(const ps_table_t *, uint32_t), uint32_t arg)
{
    int64_t acc = want_max ? INT64_MIN : INT64_MAX;
    for (uint32_t i = 0; i < job->n_tables; i++) {
        const ps_job_table_t *e = &job->tables[i];
        for (uint32_t c = 0; c < e->n_chunks; c++) {
            if (!e->chunks[c])
                continue;
            int64_t v = f(e->chunks[c], arg);
            acc = want_max ? (v > acc ? v : acc) : (v < acc ? v : acc);
        }
    }
    return acc == (want_max ? INT64_MIN : INT64_MAX) ? none : acc;
}

static int64_t chunk_clock(const ps_table_t *t, uint32_t unused)
{
    (void)unused;
    return ps_table_clock(t);
}

int64_t ps_job_resume_clock(const ps_job_t *job)
{
    return fold_chunks(job, false, 0, chunk_clock, 0);
}

int64_t ps_job_max_clock(const ps_job_t *job)
{
    int64_t top = fold_chunks(job, true, 0, chunk_clock, 0);
    return top > 0 ? top : 0;
}

int64_t ps_job_rank_clock(const ps_job_t *job, uint32_t rank)
{
    return fold_chunks(job, false, 0, ps_table_worker_clock, rank);
}

bool ps_job_recheck(ps_job_t *job)
{
    bool any = false;
    for (uint32_t i = 0; i < job->n_tables; i++) {
        ps_job_table_t *e = &job->tables[i];
        for (uint32_t c = 0; c < e->n_chunks; c++)
            if (e->chunks[c])
                any |= ps_table_try_complete(e->chunks[c], job->live);
        if (e->sparse)
            any |= ps_sparse_try_complete(e->sparse, job->live);
    }
    return any;
}

bool ps_job_pull_ready(const ps_job_t *job, const ps_pull_t *p)
{
    if ((p->flags & PS_FLAG_AFTER_ALL_DONE) && !ps_job_all_done(job))
        return false;
    if (job->max_staleness < 0)
        return true;
    int64_t ready;
    if (zmq_msg_size((zmq_msg_t *)&p->keys))
        ready = ps_sparse_ready_clock(ps_job_sparse(job, p->table_id), job->live);
    else
        ready = ps_table_ready_clock(ps_job_chunk(job, p->table_id, p->chunk), job->live);
    return ready >= p->clock - job->max_staleness;
}
