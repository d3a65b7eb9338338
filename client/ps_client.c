/* ps_client.c - the client's life (new, destroy), joining a job (HELLO,
 * recovery after a restart or rollback) and the dense table ops. Requests
 * and the wait loop are in ps_inflight.c, connections in ps_conn.c,
 * heartbeats in ps_heartbeat.c, sparse ops in ps_client_sparse.c. */
#include "ps_client_int.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "ps_log.h"
#include "ps_name.h"

#include "ps_shardmap.h"
#include "ps_time.h"

/* Copies the CURVE keys of opts (40 Z85 characters each) into c. */
static int take_keys(ps_client_t *c, const ps_client_opts_t *opts, ps_errbuf_t *err)
{
    if (!opts->curve_server_key || !*opts->curve_server_key)
        return PS_OK;
    if (strlen(opts->curve_server_key) != 40 || !opts->curve_public_key ||
        strlen(opts->curve_public_key) != 40 || !opts->curve_secret_key ||
        strlen(opts->curve_secret_key) != 40)
        return ps_err_set(err, PS_EINVAL,
                          "CURVE needs the server's public key and our key pair "
                          "(40 Z85 characters each)");
    memcpy(c->curve_server, opts->curve_server_key, 41);
    memcpy(c->curve_public, opts->curve_public_key, 41);
    memcpy(c->curve_secret, opts->curve_secret_key, 41);
    return PS_OK;
}

ps_client_t *ps_client_new(const char *endpoints, const ps_client_opts_t *opts, ps_errbuf_t *err)
{
    ps_client_t *c = ps_xcalloc(1, sizeof *c);
    c->opts = *opts;
    snprintf(c->job, sizeof c->job, "%s", opts->job ? opts->job : "");
    c->opts.job = c->job;
    c->ctx = zmq_ctx_new();
    c->next_id = 1;
    for (uint32_t s = 0; s < PSCL_MAX_SHARDS; s++)
        atomic_init(&c->zero_copy_held[s], 0);
    atomic_init(&c->restarted, 0);
    int rc = take_keys(c, opts, err);
    c->opts.curve_server_key = c->opts.curve_public_key = c->opts.curve_secret_key = NULL;
    c->fingerprint = ps_xstrdup(opts->fingerprint ? opts->fingerprint : "");
    c->opts.fingerprint = c->fingerprint;
    /* this process's claim on its rank: any 64 bits but 0, new at each start */
    c->worker_incarnation = ((uint64_t)ps_time_ns() * 0x9e3779b97f4a7c15ULL) ^
                            ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)c;
    c->worker_incarnation |= 1;
    char *list = ps_xstrdup(endpoints), *save = NULL;
    for (char *ep = strtok_r(list, ",", &save); rc == PS_OK && ep; ep = strtok_r(NULL, ",", &save))
        rc = pscl_add_shard(c, ep, err);
    free(list);
    if (rc == PS_OK && c->n_shards == 0)
        rc = ps_err_set(err, PS_EINVAL, "no server endpoints given");
    if (rc != PS_OK) {
        ps_client_destroy(&c);
        return NULL;
    }
    c->incarnation = ps_xcalloc(c->n_shards, sizeof *c->incarnation);
    c->last_reply_ms = ps_xcalloc(c->n_shards, sizeof *c->last_reply_ms);
    c->min_clock = ps_xcalloc(c->n_shards, sizeof *c->min_clock);
    c->max_clock = ps_xcalloc(c->n_shards, sizeof *c->max_clock);
    c->shard_generation = ps_xcalloc(c->n_shards, sizeof *c->shard_generation);
    c->handshake_breaks = ps_xcalloc(c->n_shards, sizeof *c->handshake_breaks);
    c->answers = ps_xcalloc(c->n_shards, sizeof *c->answers);
    return c;
}

static void free_stage(pscl_stage_t *st)
{
    free(st->keys);
    free(st->pos);
    free(st->vals);
    free(st->off);
}

void ps_client_destroy(ps_client_t **cp)
{
    ps_client_t *c = *cp;
    if (!c)
        return;
    ps_client_stop_heartbeats(c);
    for (uint32_t s = 0; c->answers && s < c->n_shards; s++) {
        free(c->answers[s].message);
        free(c->answers[s].checkpoints);
    }
    free(c->fingerprint);
    pscl_shm_close(c); /* before the shards: it walks n_shards */
    pscl_close_shards(c);
    /* before the buffers below are freed: the I/O threads may still be
     * sending from them (tables' wire buffers, sparse stages) until the
     * context has closed every socket */
    while (zmq_ctx_term(c->ctx) != 0 && zmq_errno() == EINTR)
        ;
    memset(c->curve_secret, 0, sizeof c->curve_secret);
    for (uint32_t i = 0; i < c->n_tables; i++) {
        free(c->tables[i].wire);
        free(c->tables[i].slots);
    }
    free(c->tables);
    free(c->inflight);
    free(c->answers);
    free((void *)c->incarnation);
    free((void *)c->last_reply_ms);
    free(c->min_clock);
    free(c->max_clock);
    free(c->shard_generation);
    free(c->handshake_breaks);
    for (size_t i = 0; i < c->cap_stages; i++)
        free_stage(&c->stages[i]);
    free(c->stages);
    free(c);
    *cp = NULL;
}

uint32_t ps_client_n_shards(const ps_client_t *c)
{
    return c->n_shards;
}

int ps_client_set_fingerprint(ps_client_t *c, const char *fingerprint)
{
    if (c->said_hello)
        return PS_EINVAL; /* a HELLO went out with the old one */
    free(c->fingerprint);
    c->fingerprint = ps_xstrdup(fingerprint ? fingerprint : "");
    c->opts.fingerprint = c->fingerprint;
    return PS_OK;
}
uint64_t ps_client_requests(const ps_client_t *c)
{
    return c->requests;
}

uint64_t ps_client_bytes_sent(const ps_client_t *c)
{
    return c->bytes_sent + atomic_load(&((ps_client_t *)c)->hb_bytes_sent);
}

uint64_t ps_client_bytes_received(const ps_client_t *c)
{
    return c->bytes_received + atomic_load(&((ps_client_t *)c)->hb_bytes_received);
}

/* ---- joining ---- */

/* Checks shard s's HELLO answer and takes its clocks. */
static int take_hello(ps_client_t *c, uint32_t s, ps_errbuf_t *err)
{
    const pscl_answer_t *a = &c->answers[s];
    if (a->shard != s || a->n_shards != c->n_shards)
        return ps_err_set(err, PS_ECONFLICT,
                          "worker %u: server '%s' is shard %u of %u, but is listed as %u of %u",
                          c->opts.rank, c->endpoints[s], a->shard, a->n_shards, s, c->n_shards);
    if (s > 0 && a->job_id && a->job_id != c->job_id)
        return ps_err_set(err, PS_ECONFLICT,
                          "worker %u: shard %u '%s' holds job '%s' as id %016llx at clock %lld, "
                          "shard 0 '%s' as id %016llx at clock %lld: they hold different jobs",
                          c->opts.rank, s, c->endpoints[s], c->job, (unsigned long long)a->job_id,
                          (long long)a->clock, c->endpoints[0], (unsigned long long)c->job_id,
                          (long long)c->min_clock[0]);
    uint64_t before = atomic_load(&c->incarnation[s]);
    pscl_shm_take_hello(c, s, a->flags, a->shm_refused, before && before != a->incarnation);
    atomic_store(&c->incarnation[s], a->incarnation);
    c->min_clock[s] = a->clock;
    c->max_clock[s] = a->max_clock;
    c->shard_generation[s] = a->generation;
    if (s == 0 || a->generation > c->generation)
        c->generation = a->generation;
    return PS_OK;
}

static void send_hello(ps_client_t *c, uint32_t s, uint32_t flags)
{
    Ps__Header h;
    pscl_header_init(c, &h, PS__OP__HELLO);
    h.world_size = c->opts.world;
    h.max_staleness = c->opts.max_staleness;
    h.job_id = c->job_id;
    h.shard = s; /* where we list it: a server started with the wrong index refuses */
    h.n_shards = c->n_shards;
    h.clock = s == 0 ? 0 : c->min_clock[0];
    h.flags = flags;
    h.fingerprint = c->fingerprint;
    h.loss_scale = c->opts.loss_scale;
    h.loss_scale_window = (uint64_t)c->opts.loss_scale_window;
    h.world_rank = c->world_rank;
    h.stage = c->stage;
    h.n_stages = c->n_stages;
    Ps__ShmOffer offer;
    pscl_shm_offer(c, s, &h, &offer);
    int rc;
    pscl_send(c, s, &h, NULL, NULL, 0, NULL, 0, 0, &rc);
}

/* HELLO to shards [first, last], until every one answers or timeout_ms
 * passes: sent again every PSCL_HELLO_ATTEMPT_MS (a HELLO that went to a
 * shard killed before it answered is lost with its connection, and its
 * restarted process never sees it; a HELLO twice is as one: the second
 * takes back no push, since the caller pushes only after all answered), and while a
 * rank is still held by a live process of ours that is not yet declared
 * dead (PS_EAGAIN). */
static int hello_shards(ps_client_t *c, uint32_t first, uint32_t last, uint32_t flags,
                        ps_errbuf_t *err)
{
    int64_t timeout_ms = c->opts.timeout_ms, start = ps_time_ms(), deadline = start + timeout_ms;
    ps_errbuf_t busy = {0}; /* the last "rank held" refusal: it says more than a timeout */
    for (;;) {
        /* the requests' deadlines are set as they are sent */
        int64_t left = deadline - ps_time_ms();
        c->opts.timeout_ms =
            left < PSCL_HELLO_ATTEMPT_MS ? (left > 1 ? left : 1) : PSCL_HELLO_ATTEMPT_MS;
        for (uint32_t s = first; s <= last; s++)
            send_hello(c, s, flags);
        c->joining = true;
        int rc = pscl_wait(c, PSCL_ALL_TABLES, err);
        c->opts.timeout_ms = timeout_ms;
        c->joining = false;
        if (rc != PS_EAGAIN && rc != PS_ETIME)
            return rc;
        ps_client_reset(c);
        int64_t now = ps_time_ms();
        if (rc == PS_EAGAIN)
            busy = *err;
        if (now >= deadline || pscl_stop_requested(c)) {
            if (rc == PS_ETIME && busy.code) {
                *err = busy;
                return PS_EAGAIN;
            }
            if (rc == PS_ETIME) {
                char why[sizeof err->msg];
                snprintf(why, sizeof why, "%s", err->msg);
                ps_err_set(err, PS_ETIME, "%s (%lld ms in all)", why, (long long)(now - start));
            }
            return rc;
        }
        if (rc == PS_EAGAIN) {
            ps_log(PS_LOG_NOTICE, "%s; retrying", err->msg);
            poll(NULL, 0, 500);
        } else if (now - c->last_log_ms >= 5000) {
            c->last_log_ms = now;
            ps_log(PS_LOG_NOTICE, "%s; %lld s so far, sending HELLO again", err->msg,
                   (long long)((now - start) / 1000));
        }
    }
}

/* Shard 0 answered ENOJOB to the job id we know: it restarted with nothing
 * of the job (killed before its first checkpoint). If every other shard
 * holds that job with no round done, nothing was trained yet: shard 0 takes
 * the job back under its id, and the workers define the tables again from
 * their seeded init. Otherwise the ENOJOB stands. */
static int recreate_on_shard0(ps_client_t *c, ps_errbuf_t *err)
{
    ps_errbuf_t refused = *err;
    int rc = hello_shards(c, 1, c->n_shards - 1, 0, err);
    for (uint32_t s = 1; rc == PS_OK && s < c->n_shards; s++)
        if (c->answers[s].job_id != c->job_id || !(c->answers[s].flags & PS_FLAG_FRESH))
            rc = PS_ENOJOB;
    if (rc != PS_OK) {
        *err = refused;
        return PS_ENOJOB;
    }
    ps_log(PS_LOG_NOTICE,
           "worker %u: shard 0 lost job '%s' before any round was done; it takes the job "
           "back (id %016llx) and the tables are defined again",
           c->opts.rank, c->job, (unsigned long long)c->job_id);
    return hello_shards(c, 0, 0, PS_FLAG_NEW_JOB, err);
}

int ps_client_hello(ps_client_t *c, int64_t *clock, ps_errbuf_t *err)
{
    /* after a failed wait: the HELLOs' wait must not resend the old
     * requests from (or write their replies into) buffers the caller may
     * have let go of */
    if (c->n_inflight > 0)
        ps_client_reset(c);
    c->generation = 0;
    c->said_hello = true;
    int rc = pscl_start_heartbeats(c, err);
    if (rc != PS_OK)
        return rc;
    /* shard 0 first: it creates the job (with an id) or names the one it holds */
    rc = hello_shards(c, 0, 0, 0, err);
    if (rc == PS_ENOJOB && c->job_id && c->n_shards > 1)
        rc = recreate_on_shard0(c, err);
    if (rc != PS_OK || (rc = take_hello(c, 0, err)) != PS_OK)
        return rc;
    c->job_id = c->answers[0].job_id;
    uint32_t flags = (c->answers[0].flags & PS_FLAG_FRESH) ? PS_FLAG_NEW_JOB : 0;
    if (c->n_shards > 1 && (rc = hello_shards(c, 1, c->n_shards - 1, flags, err)) != PS_OK)
        return rc;
    int64_t resume = INT64_MAX;
    for (uint32_t s = 0; rc == PS_OK && s < c->n_shards; s++) {
        rc = s ? take_hello(c, s, err) : PS_OK;
        resume = c->min_clock[s] < resume ? c->min_clock[s] : resume;
    }
    if (rc != PS_OK)
        return rc;
    if (clock)
        *clock = resume == INT64_MAX ? 0 : resume;
    atomic_store(&c->restarted, 0);
    for (uint32_t s = 0; s < c->n_shards; s++)
        atomic_store(&c->last_reply_ms[s], ps_time_ms()); /* HELLO was answered just now */
    return PS_OK;
}

void ps_client_set_stage(ps_client_t *c, uint32_t world_rank, uint32_t stage, uint32_t n_stages)
{
    c->world_rank = world_rank;
    c->stage = stage;
    c->n_stages = n_stages;
}

uint64_t ps_client_job_id(const ps_client_t *c)
{
    return c->job_id;
}

bool ps_client_loss_scale(const ps_client_t *c, double *scale, int64_t *clean, uint64_t *skipped)
{
    /* the shard at the lowest clock: the clock the worker resumes at */
    const pscl_answer_t *a = &c->answers[0];
    for (uint32_t s = 1; s < c->n_shards; s++)
        if (c->answers[s].loss_scale > 0 && c->answers[s].clock < a->clock)
            a = &c->answers[s];
    if (!(a->loss_scale > 0))
        return false;
    *scale = a->loss_scale;
    *clean = (int64_t)a->scale_good;
    *skipped = a->scale_skipped;
    return true;
}

/* Is clock among shard s's checkpoints? */
static bool holds(const pscl_answer_t *a, int64_t clock)
{
    for (size_t k = 0; k < a->n_checkpoints; k++)
        if (a->checkpoints[k] == clock)
            return true;
    return false;
}

/* The rollback target: the newest checkpoint clock, at most low, that
 * every shard holds; -1 with err naming what each shard holds if none. */
static int64_t common_checkpoint(ps_client_t *c, int64_t low, ps_errbuf_t *err)
{
    int64_t best = -1;
    const pscl_answer_t *a0 = &c->answers[0];
    for (size_t k = 0; k < a0->n_checkpoints; k++) {
        int64_t clock = a0->checkpoints[k];
        bool everywhere = clock <= low;
        for (uint32_t s = 1; everywhere && s < c->n_shards; s++)
            everywhere = holds(&c->answers[s], clock);
        if (everywhere && clock > best)
            best = clock;
    }
    if (best >= 0)
        return best;
    char list[400] = "";
    size_t len = 0;
    for (uint32_t s = 0; s < c->n_shards && len < sizeof list; s++) {
        const pscl_answer_t *a = &c->answers[s];
        len += (size_t)snprintf(list + len, sizeof list - len,
                                "%sshard %u at clock %lld holds %zu "
                                "checkpoints (newest %lld)",
                                s ? "; " : "", s, (long long)a->clock, a->n_checkpoints,
                                a->n_checkpoints ? (long long)a->checkpoints[a->n_checkpoints - 1]
                                                 : -1LL);
    }
    ps_err_set(err, PS_ENOCKPT,
               "worker %u: job '%s': the shards are at different clocks and hold no checkpoint in "
               "common to roll back to (%s): the model cannot be made whole",
               c->opts.rank, c->job, list);
    return -1;
}

/* Forgets the requests in flight and HELLOs every shard: the lowest clock
 * and the highest any chunk reached, the generations' range. */
static int hello_again(ps_client_t *c, int64_t *low, int64_t *high, uint64_t *gen_min,
                       uint64_t *gen_max, ps_errbuf_t *err)
{
    ps_client_reset(c);
    int rc = ps_client_hello(c, low, err);
    if (rc != PS_OK)
        return rc;
    *gen_min = UINT64_MAX;
    *gen_max = 0;
    *high = 0;
    for (uint32_t s = 0; s < c->n_shards; s++) {
        *gen_min = c->shard_generation[s] < *gen_min ? c->shard_generation[s] : *gen_min;
        *gen_max = c->shard_generation[s] > *gen_max ? c->shard_generation[s] : *gen_max;
        *high = c->max_clock[s] > *high ? c->max_clock[s] : *high;
    }
    return PS_OK;
}

/* Did shard s take our rollback (to, target)? Its own acknowledgement:
 * that generation, rolled back to that clock, or restored from a
 * checkpoint of that generation at that clock (a restart forgets the
 * rollback's clock). */
static bool took_rollback(const pscl_answer_t *a, int64_t to, uint64_t target)
{
    return a->generation == target &&
           (a->rollback_clock == to || (a->rollback_clock < 0 && a->clock == to));
}

/* ROLLBACK of every shard to checkpoint `to` as generation target; waits
 * for every reply. PS_ESTALE, naming the shard, if one says another
 * rollback reached it first: a shard that has a generation already only
 * acknowledges, so two workers that started rollbacks of one generation
 * to different clocks (a checkpoint landed between their HELLOs) can
 * leave the shards at two clocks, and the job must be recovered again. */
static int send_rollback(ps_client_t *c, int64_t to, uint64_t target, ps_errbuf_t *err)
{
    int rc;
    if (c->before_rollback)
        c->before_rollback(c, c->before_rollback_arg);
    ps_log(PS_LOG_NOTICE,
           "worker %u: job '%s': rolling back every shard to clock %lld "
           "(generation %llu)",
           c->opts.rank, c->job, (long long)to, (unsigned long long)target);
    for (uint32_t s = 0; s < c->n_shards; s++) {
        Ps__Header h;
        pscl_header_init(c, &h, PS__OP__ROLLBACK);
        h.clock = to;
        h.generation = target;
        if (!pscl_send(c, s, &h, NULL, NULL, 0, NULL, 0, 0, &rc))
            return ps_err_set(err, rc, "worker %u: cannot send ROLLBACK to shard %u", c->opts.rank,
                              s);
    }
    if ((rc = ps_client_wait(c, err)) != PS_OK)
        return rc;
    for (uint32_t s = 0; s < c->n_shards; s++) {
        const pscl_answer_t *a = &c->answers[s];
        if (!took_rollback(a, to, target))
            return ps_err_set(err, PS_ESTALE,
                              "worker %u: job '%s': shard %u is at generation %llu, rolled back "
                              "to clock %lld, not this rollback's generation %llu to clock %lld: "
                              "another rollback reached it first",
                              c->opts.rank, c->job, s, (unsigned long long)a->generation,
                              (long long)a->rollback_clock, (unsigned long long)target,
                              (long long)to);
    }
    c->generation = target;
    return PS_OK;
}

/* One attempt of ps_client_recover. */
static int recover_once(ps_client_t *c, bool exact, int64_t *clock, ps_errbuf_t *err)
{
    int64_t low, high;
    uint64_t gen_min, gen_max;
    int rc = hello_again(c, &low, &high, &gen_min, &gen_max, err);
    if (rc != PS_OK)
        return rc;
    /* Consistent: one generation, and no chunk ahead of the lowest (or, when
     * not exact, at most one round ahead: it ignores the replayed pushes,
     * but the replayed step reads its newer parameters). */
    *clock = low;
    if (gen_min == gen_max && high <= low + (exact ? 0 : 1))
        return PS_OK;
    /* A rollback half done by another worker is finished at its generation
     * and its clock; otherwise a new one starts, to the newest checkpoint
     * every shard holds. The shards that already did just acknowledge. */
    uint64_t target = gen_min == gen_max ? gen_max + 1 : gen_max;
    int64_t to = -1;
    for (uint32_t s = 0; gen_min != gen_max && s < c->n_shards; s++)
        if (c->shard_generation[s] == gen_max && c->answers[s].rollback_clock >= 0)
            to = c->answers[s].rollback_clock;
    if (to < 0 && (to = common_checkpoint(c, low, err)) < 0)
        return PS_ENOCKPT;
    if ((rc = send_rollback(c, to, target, err)) != PS_OK)
        return rc;
    *clock = to;
    return PS_OK;
}

/* A recovery that another worker's rollback cut short (PS_ESTALE) is begun
 * again at once: it finds the shards at two clocks and rolls them back
 * once more, as the next generation. After this many tries the caller
 * gets the PS_ESTALE (ps-worker recovers again, up to its own limit). */
#define PSCL_ROLLBACK_ATTEMPTS 4

int ps_client_recover(ps_client_t *c, bool exact, int64_t *clock, ps_errbuf_t *err)
{
    for (int attempt = 1;; attempt++) {
        int rc = recover_once(c, exact, clock, err);
        if (rc != PS_ESTALE || attempt == PSCL_ROLLBACK_ATTEMPTS)
            return rc;
        ps_log(PS_LOG_NOTICE, "%s; recovering again", err->msg);
    }
}

static int newest_first(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

size_t ps_client_resume_points(const ps_client_t *c, int64_t at, int64_t *out, size_t cap)
{
    if (cap == 0)
        return 0;
    size_t n = 0;
    out[n++] = at;
    const pscl_answer_t *a0 = &c->answers[0];
    /* newest first: with more checkpoints than cap, the old ones go */
    for (size_t k = a0->n_checkpoints; k-- > 0 && n < cap;) {
        int64_t clock = a0->checkpoints[k];
        bool everywhere = clock < at;
        for (uint32_t s = 1; everywhere && s < c->n_shards; s++)
            everywhere = holds(&c->answers[s], clock);
        if (everywhere)
            out[n++] = clock;
    }
    qsort(out, n, sizeof *out, newest_first);
    return n;
}

/* One attempt of ps_client_rollback_to. */
static int rollback_to_once(ps_client_t *c, int64_t to, ps_errbuf_t *err)
{
    int64_t low, high;
    uint64_t gen_min, gen_max;
    int rc = hello_again(c, &low, &high, &gen_min, &gen_max, err);
    if (rc != PS_OK)
        return rc;
    if (gen_min == gen_max && low == to && high <= to)
        return PS_OK; /* there already (another rank of the job brought it) */
    for (uint32_t s = 0; s < c->n_shards; s++)
        if (!holds(&c->answers[s], to))
            return ps_err_set(err, PS_ENOCKPT,
                              "worker %u: job '%s': shard %u (at clock %lld) holds no checkpoint "
                              "of clock %lld to roll back to",
                              c->opts.rank, c->job, s, (long long)c->answers[s].clock,
                              (long long)to);
    /* another rank's rollback to this clock, half done, is finished at its
     * generation rather than raced by a newer one */
    bool half_done = gen_min != gen_max;
    for (uint32_t s = 0; half_done && s < c->n_shards; s++)
        if (c->shard_generation[s] == gen_max && c->answers[s].rollback_clock != to)
            half_done = false;
    return send_rollback(c, to, half_done ? gen_max : gen_max + 1, err);
}

int ps_client_rollback_to(ps_client_t *c, int64_t to, ps_errbuf_t *err)
{
    for (int attempt = 1;; attempt++) {
        int rc = rollback_to_once(c, to, err);
        if (rc != PS_ESTALE || attempt == PSCL_ROLLBACK_ATTEMPTS)
            return rc;
        ps_log(PS_LOG_NOTICE, "%s; rolling back again", err->msg);
    }
}

int ps_client_done(ps_client_t *c, ps_errbuf_t *err)
{
    return pscl_broadcast(c, PS__OP__DONE, err);
}

int ps_client_bye(ps_client_t *c, ps_errbuf_t *err)
{
    /* nothing waits on a BYE's answer but the exit: keep it short */
    int64_t timeout_ms = c->opts.timeout_ms;
    if (c->opts.timeout_ms > PS_CLIENT_BYE_TIMEOUT_MS)
        c->opts.timeout_ms = PS_CLIENT_BYE_TIMEOUT_MS;
    int rc = pscl_broadcast(c, PS__OP__BYE, err);
    c->opts.timeout_ms = timeout_ms;
    return rc;
}

int ps_client_admin(ps_client_t *c, uint32_t shard, int op, char **message, ps_errbuf_t *err)
{
    if (message)
        *message = NULL;
    if (shard >= c->n_shards ||
        (op != PS__OP__STATS && op != PS__OP__SAVE && op != PS__OP__SHUTDOWN))
        return ps_err_set(err, PS_EINVAL,
                          "admin requests are STATS, SAVE and SHUTDOWN to a "
                          "listed shard");
    Ps__Header h;
    pscl_header_init(c, &h, op);
    int rc;
    if (!pscl_send(c, shard, &h, NULL, NULL, 0, NULL, 0, 0, &rc))
        return ps_err_set(err, rc, "cannot send %s to '%s'", ps_op_name(op), c->endpoints[shard]);
    if ((rc = ps_client_wait(c, err)) != PS_OK)
        return rc;
    if (message) {
        *message = c->answers[shard].message;
        c->answers[shard].message = NULL;
    }
    return PS_OK;
}

/* ---- dense tables ---- */

int ps_client_init_table(ps_client_t *c, uint32_t id, const char *name, const uint64_t *shape,
                         int ndim, const ps_optim_spec_t *optim, const float *init,
                         ps_errbuf_t *err)
{
    /* checked here too: a long name would be cut to fit, silently */
    if (ps_name_check_table(name, err) != PS_OK)
        return PS_EINVAL;
    pscl_table_t *t = pscl_table(c, id);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_elems = 1;
    for (int i = 0; i < ndim; i++)
        t->n_elems *= shape[i];
    t->defined = 1;
    if (c->opts.dtype != PS__DTYPE__F32 && !t->wire)
        t->wire = ps_xmalloc(t->n_elems * sizeof(uint16_t));
    Ps__OptimSpec wire_optim;
    ps_optim_spec_to_wire(optim, &wire_optim);
    Ps__TableSpec spec;
    ps__table_spec__init(&spec);
    spec.name = t->name;
    spec.n_elems = t->n_elems;
    spec.shape = (uint64_t *)shape;
    spec.n_shape = (size_t)ndim;
    spec.optim = &wire_optim;
    uint32_t n_chunks = ps_shardmap_n_chunks(t->n_elems, c->n_shards);
    for (uint32_t k = 0; k < n_chunks; k++) {
        ps_chunk_t ch = ps_shardmap_chunk(t->n_elems, id, k, c->n_shards);
        Ps__Header h;
        pscl_header_init(c, &h, PS__OP__INIT_TABLE);
        h.table_id = id;
        h.chunk = k;
        h.table = &spec;
        h.offset = ch.offset;
        h.n_elems = ch.len;
        h.dtype = PS__DTYPE__F32; /* initial values travel exact */
        int rc;
        if (!pscl_send(c, ch.shard, &h, NULL, init + ch.offset, ch.len, NULL, 0, 0, &rc))
            return ps_err_set(err, rc, "worker %u: cannot send INIT_TABLE to shard %u",
                              c->opts.rank, ch.shard);
    }
    return ps_client_wait(c, err);
}

/* The values to send for grad in the client's dtype (the table's wire
 * buffer, or grad itself for fp32); *grad_scale becomes what the server
 * must divide out. NULL if grad is NULL. */
static const void *encode_grad(ps_client_t *c, pscl_table_t *t, const float *grad,
                               float *grad_scale)
{
    if (!grad || c->opts.dtype == PS__DTYPE__F32)
        return grad;
    if (c->opts.dtype == PS__DTYPE__BF16)
        *grad_scale = 1; /* bf16 has fp32's range: no scaling */
    ps_wire_encode(c->opts.dtype, grad, t->wire, t->n_elems, *grad_scale);
    return t->wire;
}

static int send_table_op(ps_client_t *c, int op, uint32_t id, int64_t clock, uint32_t flags,
                         const float *grad, uint64_t n_samples, float grad_scale, float *params)
{
    if (id >= c->n_tables || c->tables[id].defined != 1)
        return PS_ENOTABLE;
    pscl_table_t *t = &c->tables[id];
    if (grad && c->opts.dtype == PS__DTYPE__F32 && grad_scale != 1.0f)
        return PS_EINVAL; /* fp32 pushes are never scaled */
    const void *wire = encode_grad(c, t, grad, &grad_scale);
    size_t dsize = ps_dtype_size(c->opts.dtype);
    uint32_t n_chunks = ps_shardmap_n_chunks(t->n_elems, c->n_shards);
    for (uint32_t k = 0; k < n_chunks; k++) {
        ps_chunk_t ch = ps_shardmap_chunk(t->n_elems, id, k, c->n_shards);
        Ps__Header h;
        pscl_header_init(c, &h, op);
        h.table_id = id;
        h.chunk = k;
        h.clock = clock;
        h.flags = flags;
        h.offset = ch.offset;
        h.n_elems = ch.len;
        h.n_samples = n_samples;
        h.grad_scale = grad_scale;
        const void *vals = wire ? (const char *)wire + ch.offset * dsize : NULL;
        pscl_shm_prepare(c, ch.shard, t, &h, vals, ch.len, params != NULL);
        int rc;
        if (!pscl_send(c, ch.shard, &h, NULL, vals, ch.len, params, ch.offset, ch.len, &rc))
            return rc;
    }
    return PS_OK;
}

int ps_client_push_pull(ps_client_t *c, uint32_t id, int64_t clock, const float *grad,
                        uint64_t n_samples, float grad_scale, uint32_t flags, float *params)
{
    return send_table_op(c, PS__OP__PUSH_PULL, id, clock, flags, grad, n_samples, grad_scale,
                         params);
}

int ps_client_push(ps_client_t *c, uint32_t id, int64_t clock, const float *grad,
                   uint64_t n_samples, float grad_scale, uint32_t flags)
{
    return send_table_op(c, PS__OP__PUSH, id, clock, flags, grad, n_samples, grad_scale, NULL);
}

int ps_client_pull(ps_client_t *c, uint32_t id, int64_t clock, uint32_t flags, float *params)
{
    return send_table_op(c, PS__OP__PULL, id, clock, flags, NULL, 0, 1.0f, params);
}
