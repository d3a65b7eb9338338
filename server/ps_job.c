/* ps_job.c - see ps_job.h. */
#include "ps_job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_wire.h"

/* Rounds of the scaler's past kept: a worker rejoining a round behind the
 * first chunk (it pushed some chunks of the round before it was lost)
 * still gets the state of its own clock. */
#define SCALER_HISTORY 8

struct ps_job {
    char name[PS_JOB_NAME_MAX];
    uint64_t id;
    char *fingerprint;
    uint32_t world;
    int max_staleness;
    int64_t created_ms;
    bool has_scaler;
    ps_loss_scale_t scaler; /* fp16: advanced once per round of the first chunk */
    ps_loss_scale_t scaler_at[SCALER_HISTORY]; /* its state at clock k, at k % SCALER_HISTORY */
    int64_t scaler_clock[SCALER_HISTORY];
    int64_t rollback_clock;
    ps_rank_t *ranks;
    uint8_t *live; /* per rank: counts in the barriers */
    ps_job_table_t *tables;
    uint32_t n_tables;         /* capacity of tables[] (ids below it) */
    int64_t skip_logged_clock; /* newest skipped clock already logged */
    uint64_t generation;
    int64_t next_ckpt_clock;
    ps_job_ckpt_chain_t ckpt_chain;
    ps_pending_t pending;
    char creator[64]; /* CURVE key or address of the client that created it */
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
    job->rollback_clock = -1;
    job->ckpt_chain.base = -1;
    job->created_ms = now_ms;
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
    free(job->fingerprint);
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
ps_job_ckpt_chain_t *ps_job_ckpt_chain(ps_job_t *job)
{
    return &job->ckpt_chain;
}
const uint8_t *ps_job_live(const ps_job_t *job)
{
    return job->live;
}
const ps_rank_t *ps_job_rank(const ps_job_t *job, uint32_t r)
{
    return &job->ranks[r];
}

void ps_job_set_rank_stage(ps_job_t *job, uint32_t rank, uint32_t world_rank, uint32_t stage,
                           uint32_t n_stages)
{
    ps_rank_t *r = &job->ranks[rank];
    bool piped = n_stages > 1 && stage < n_stages;
    r->world_rank = piped ? world_rank : rank;
    r->stage = piped ? stage : 0;
    r->n_stages = piped ? n_stages : 0;
}

uint64_t ps_job_id(const ps_job_t *job)
{
    return job->id;
}

void ps_job_set_id(ps_job_t *job, uint64_t id)
{
    job->id = id;
}

const char *ps_job_fingerprint(const ps_job_t *job)
{
    return job->fingerprint ? job->fingerprint : "";
}

void ps_job_set_fingerprint(ps_job_t *job, const char *fingerprint)
{
    free(job->fingerprint);
    job->fingerprint = ps_xstrdup(fingerprint ? fingerprint : "");
}

/* The line for key in a fingerprint ("" if absent), into buf. */
static void value_of(const char *fp, const char *key, size_t key_len, char *buf, size_t cap)
{
    buf[0] = '\0';
    for (const char *p = fp; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, key, key_len) == 0 && p[key_len] == '=') {
            snprintf(buf, cap, "%.*s", (int)strcspn(p + key_len + 1, "\n"), p + key_len + 1);
            return;
        }
    }
}

/* The first key of a that b gives another value (or lacks); false if none. */
static bool first_difference(const char *a, const char *b, char *why, size_t cap, bool a_is_job)
{
    for (const char *p = a; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        size_t key_len = strcspn(p, "=\n");
        char va[256], vb[256];
        value_of(a, p, key_len, va, sizeof va);
        value_of(b, p, key_len, vb, sizeof vb);
        if (strcmp(va, vb) != 0) {
            snprintf(why, cap, "option '%.*s' is '%s' in this job, '%s' in the worker",
                     (int)key_len, p, a_is_job ? va : vb, a_is_job ? vb : va);
            return true;
        }
    }
    return false;
}

bool ps_job_same_config(const ps_job_t *job, const char *fingerprint, char *why, size_t cap)
{
    const char *mine = ps_job_fingerprint(job);
    if (!*mine || !fingerprint || !*fingerprint)
        return true;
    return !first_difference(mine, fingerprint, why, cap, true) &&
           !first_difference(fingerprint, mine, why, cap, false);
}

const ps_loss_scale_t *ps_job_scaler(const ps_job_t *job)
{
    return job->has_scaler ? &job->scaler : NULL;
}

/* Notes the scaler's state as the state at clock. */
static void note_scaler(ps_job_t *job, int64_t clock)
{
    int64_t k = clock % SCALER_HISTORY;
    job->scaler_at[k] = job->scaler;
    job->scaler_clock[k] = clock;
}

static const ps_table_t *driver_chunk(const ps_job_t *job);

void ps_job_set_scaler(ps_job_t *job, const ps_loss_scale_t *scaler)
{
    job->has_scaler = scaler != NULL;
    if (!scaler)
        return;
    job->scaler = *scaler;
    for (int k = 0; k < SCALER_HISTORY; k++)
        job->scaler_clock[k] = -1;
    const ps_table_t *d = driver_chunk(job);
    note_scaler(job, d ? ps_table_clock(d) : 0);
}

const ps_loss_scale_t *ps_job_scaler_at(const ps_job_t *job, int64_t clock)
{
    if (!job->has_scaler)
        return NULL;
    int64_t k = clock % SCALER_HISTORY;
    return clock >= 0 && job->scaler_clock[k] == clock ? &job->scaler_at[k] : &job->scaler;
}

int64_t ps_job_rollback_clock(const ps_job_t *job)
{
    return job->rollback_clock;
}

void ps_job_set_rollback_clock(ps_job_t *job, int64_t clock)
{
    job->rollback_clock = clock;
}

int64_t ps_job_created_ms(const ps_job_t *job)
{
    return job->created_ms;
}

int64_t ps_job_last_alive_ms(const ps_job_t *job)
{
    int64_t last = job->created_ms;
    for (uint32_t k = 0; k < job->world; k++)
        if (job->ranks[k].last_seen_ms > last)
            last = job->ranks[k].last_seen_ms;
    return last;
}

bool ps_job_first_skip(ps_job_t *job, int64_t clock)
{
    if (clock <= job->skip_logged_clock)
        return false;
    job->skip_logged_clock = clock;
    return true;
}

/* ---- ranks ---- */

int ps_job_claim(ps_job_t *job, uint32_t rank, uint64_t owner, const char *peer, int64_t now_ms,
                 bool *rejoin, char *why, size_t cap)
{
    ps_rank_t *r = &job->ranks[rank];
    bool other = r->joined && r->owner && owner && r->owner != owner;
    if (other && !r->dead && !r->left) {
        snprintf(why, cap,
                 "worker %u of job '%s' is held by a live process at '%s' (seen %lld ms ago): "
                 "a second one may take it only once that one is declared dead",
                 rank, job->name, r->peer, (long long)(now_ms - r->last_seen_ms));
        return PS_EAGAIN;
    }
    *rejoin = r->joined;
    snprintf(r->peer, sizeof r->peer, "%s", peer);
    r->joined = true;
    r->owner = owner;
    r->last_seen_ms = now_ms;
    if (r->dead || r->done) {
        r->dead = r->done = r->left = false;
        job->live[rank] = 1;
    }
    return PS_OK;
}

bool ps_job_owns(const ps_job_t *job, uint32_t rank, uint64_t owner)
{
    const ps_rank_t *r = &job->ranks[rank];
    return !owner || !r->owner || r->owner == owner;
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
        /* a done rank is swept too (it heartbeats until BYE): one killed
         * after DONE must be replaceable by a restarted process */
        if (!r->joined || r->dead || r->left || now_ms - r->last_seen_ms <= timeout_ms)
            continue;
        r->dead = true;
        r->dead_since_ms = now_ms;
        if (job->max_staleness != 0 || r->done)
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

bool ps_job_all_left(const ps_job_t *job)
{
    for (uint32_t k = 0; k < job->world; k++)
        if (!job->ranks[k].left)
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

void ps_job_forgive_silence(ps_job_t *job, int64_t now_ms)
{
    for (uint32_t k = 0; k < job->world; k++)
        if (!job->ranks[k].dead)
            job->ranks[k].last_seen_ms = now_ms;
}

const char *ps_job_world_problem(const ps_job_t *job, int64_t now_ms, int64_t lost_ms,
                                 int64_t assemble_ms, char *why, size_t cap)
{
    if (job->max_staleness != 0)
        return NULL;
    for (uint32_t k = 0; k < job->world; k++) {
        const ps_rank_t *r = &job->ranks[k];
        if (r->dead && !r->done && now_ms - r->dead_since_ms > lost_ms) {
            snprintf(
                why, cap,
                "worker %u of job '%s' was lost (silent since %lld ms ago, last from '%s') and "
                "did not come back within lost_rank_timeout_ms %lld: under BSP the job "
                "cannot go on without it and stay exact",
                k, job->name, (long long)(now_ms - r->last_seen_ms), r->peer, (long long)lost_ms);
            return why;
        }
        if (!r->joined && !r->done && now_ms - job->created_ms > assemble_ms) {
            snprintf(why, cap,
                     "worker %u of job '%s' never joined within assemble_timeout_ms %lld (world "
                     "%u): the job's world is incomplete",
                     k, job->name, (long long)assemble_ms, job->world);
            return why;
        }
    }
    return NULL;
}

void ps_job_reopen_rank(ps_job_t *job, uint32_t rank)
{
    ps_rank_t *r = &job->ranks[rank];
    if (!r->done || r->left)
        return;
    r->done = false;
    job->live[rank] = !(r->dead && job->max_staleness != 0);
}

uint32_t ps_job_forget_rank_pushes(ps_job_t *job, uint32_t rank)
{
    uint32_t n = 0;
    for (uint32_t i = 0; rank < job->world && i < job->n_tables; i++) {
        ps_job_table_t *e = &job->tables[i];
        for (uint32_t c = 0; c < e->n_chunks; c++)
            n += e->chunks[c] && ps_table_forget_rank(e->chunks[c], rank);
        n += e->sparse && ps_sparse_forget_rank(e->sparse, rank);
    }
    return n;
}

void ps_job_restore_rank(ps_job_t *job, uint32_t rank, bool done, bool left, bool dead,
                         int64_t now_ms)
{
    ps_rank_t *r = &job->ranks[rank];
    r->done = done;
    r->left = left;
    r->dead = dead;
    r->joined = done || left || dead;
    r->dead_since_ms = now_ms;
    job->live[rank] = !(done || (dead && job->max_staleness != 0));
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

size_t ps_job_bytes(const ps_job_t *job)
{
    size_t n = 0;
    for (uint32_t i = 0; i < job->n_tables; i++) {
        const ps_job_table_t *e = &job->tables[i];
        if (e->sparse)
            n += ps_sparse_bytes(e->sparse);
        for (uint32_t c = 0; c < e->n_chunks; c++)
            if (e->chunks[c])
                n += ps_table_bytes(e->chunks[c]);
    }
    return n;
}

const char *ps_job_creator(const ps_job_t *job)
{
    return job->creator;
}

void ps_job_set_creator(ps_job_t *job, const char *who)
{
    snprintf(job->creator, sizeof job->creator, "%s", who);
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

uint32_t ps_job_sparse_tables(const ps_job_t *job, ps_sparse_t ***tables)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < job->n_tables; i++)
        n += job->tables[i].sparse != NULL;
    *tables = ps_xmalloc((n ? n : 1) * sizeof **tables);
    uint32_t k = 0;
    for (uint32_t i = 0; i < job->n_tables; i++)
        if (job->tables[i].sparse)
            (*tables)[k++] = job->tables[i].sparse;
    return n;
}

/* ---- clocks and consistency ---- */

/* Folds f over the rounds of every table the shard holds of the job (dense
 * chunks and sparse tables): the lowest (or, want_max, the highest) value,
 * or none if it holds none. */
static int64_t fold_rounds(const ps_job_t *job, bool want_max, int64_t none,
                           int64_t (*f)(const ps_job_t *, const ps_round_t *, uint32_t),
                           uint32_t arg)
{
    int64_t acc = want_max ? INT64_MIN : INT64_MAX;
    for (uint32_t i = 0; i < job->n_tables; i++) {
        const ps_job_table_t *e = &job->tables[i];
        for (uint32_t c = 0; c <= e->n_chunks; c++) {
            const ps_round_t *r = c < e->n_chunks
                                      ? (e->chunks[c] ? ps_table_round(e->chunks[c]) : NULL)
                                      : (e->sparse ? ps_sparse_round(e->sparse) : NULL);
            if (!r)
                continue;
            int64_t v = f(job, r, arg);
            acc = want_max ? (v > acc ? v : acc) : (v < acc ? v : acc);
        }
    }
    return acc == (want_max ? INT64_MIN : INT64_MAX) ? none : acc;
}

static int64_t round_clock(const ps_job_t *job, const ps_round_t *r, uint32_t unused)
{
    (void)job;
    (void)unused;
    return ps_round_clock(r);
}

static int64_t round_rank_clock(const ps_job_t *job, const ps_round_t *r, uint32_t rank)
{
    (void)job;
    return ps_round_rank_clock(r, rank);
}

/* SSP/ASP: the lowest clock of the round's live ranks; with none live
 * (every rank done or lost) the furthest any rank got, so the job's clock
 * (and its checkpoints) never fall back when its last live worker ends. */
static int64_t round_live_clock(const ps_job_t *job, const ps_round_t *r, uint32_t unused)
{
    (void)unused;
    int64_t c = ps_round_ready_clock(r, job->live);
    if (c != INT64_MAX)
        return c;
    int64_t top = ps_round_clock(r);
    for (uint32_t k = 0; k < job->world; k++) {
        int64_t v = ps_round_rank_clock(r, k);
        top = v > top ? v : top;
    }
    return top;
}

int64_t ps_job_resume_clock(const ps_job_t *job)
{
    return fold_rounds(job, false, 0, job->max_staleness == 0 ? round_clock : round_live_clock, 0);
}

int64_t ps_job_rank_resume_clock(const ps_job_t *job, uint32_t rank)
{
    return job->max_staleness == 0 ? ps_job_resume_clock(job) : ps_job_rank_clock(job, rank);
}

int64_t ps_job_max_clock(const ps_job_t *job)
{
    int64_t top = fold_rounds(job, true, 0, round_clock, 0);
    return top > 0 ? top : 0;
}

int64_t ps_job_rank_clock(const ps_job_t *job, uint32_t rank)
{
    return fold_rounds(job, false, 0, round_rank_clock, rank);
}

/* The first chunk this shard holds: its rounds drive the job's scaler. */
static const ps_table_t *driver_chunk(const ps_job_t *job)
{
    for (uint32_t i = 0; i < job->n_tables; i++)
        for (uint32_t c = 0; c < job->tables[i].n_chunks; c++)
            if (job->tables[i].chunks[c])
                return job->tables[i].chunks[c];
    return NULL;
}

bool ps_job_complete_chunk(ps_job_t *job, ps_table_t *t)
{
    int64_t round = ps_table_clock(t);
    if (!ps_table_try_complete(t, job->live))
        return false;
    if (job->has_scaler && t == driver_chunk(job)) {
        ps_loss_scale_update(&job->scaler, ps_table_last_skipped_round(t) == round);
        note_scaler(job, round + 1);
    }
    return true;
}

bool ps_job_recheck(ps_job_t *job)
{
    bool any = false;
    for (uint32_t i = 0; i < job->n_tables; i++) {
        ps_job_table_t *e = &job->tables[i];
        for (uint32_t c = 0; c < e->n_chunks; c++)
            if (e->chunks[c])
                any |= ps_job_complete_chunk(job, e->chunks[c]);
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
    if (p->sparse)
        ready = ps_sparse_ready_clock(ps_job_sparse(job, p->table_id), job->live);
    else
        ready = ps_table_ready_clock(ps_job_chunk(job, p->table_id, p->chunk), job->live);
    return ready >= p->clock - job->max_staleness;
}
