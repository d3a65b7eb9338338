/* ps_client.c - the client's life (new, destroy), joining a job (HELLO,
 * recovery after a restart or rollback) and the dense table ops. Requests
 * and the wait loop are in ps_inflight.c, connections in ps_conn.c,
 * heartbeats in ps_heartbeat.c, sparse ops in ps_client_sparse.c. */
#include "ps_client_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

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
    atomic_init(&c->zero_copy_held, 0);
    atomic_init(&c->restarted, 0);
    int rc = take_keys(c, opts, err);
    c->opts.curve_server_key = c->opts.curve_public_key = c->opts.curve_secret_key = NULL;
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
    for (uint32_t s = 0; c->answers && s < c->n_shards; s++)
        free(c->answers[s].message);
    pscl_close_shards(c);
    memset(c->curve_secret, 0, sizeof c->curve_secret);
    for (uint32_t i = 0; i < c->n_tables; i++)
        free(c->tables[i].wire);
    free(c->tables);
    free(c->inflight);
    free(c->answers);
    free((void *)c->incarnation);
    free((void *)c->last_reply_ms);
    free(c->min_clock);
    free(c->max_clock);
    free(c->shard_generation);
    free_stage(&c->stage_pull);
    free_stage(&c->stage_push);
    zmq_ctx_term(c->ctx);
    free(c);
    *cp = NULL;
}

uint32_t ps_client_n_shards(const ps_client_t *c)
{
    return c->n_shards;
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
    atomic_store(&c->incarnation[s], a->incarnation);
    c->min_clock[s] = a->clock;
    c->max_clock[s] = a->max_clock;
    c->shard_generation[s] = a->generation;
    if (s == 0 || a->generation > c->generation)
        c->generation = a->generation;
    return PS_OK;
}

int ps_client_hello(ps_client_t *c, int64_t *clock, ps_errbuf_t *err)
{
    c->generation = 0;
    for (uint32_t s = 0; s < c->n_shards; s++) {
        Ps__Header h;
        pscl_header_init(c, &h, PS__OP__HELLO);
        h.world_size = c->opts.world;
        h.max_staleness = c->opts.max_staleness;
        int rc;
        if (!pscl_send(c, s, &h, NULL, NULL, 0, NULL, 0, 0, &rc))
            return ps_err_set(err, rc, "worker %u: cannot send HELLO to shard %u '%s'",
                              c->opts.rank, s, c->endpoints[s]);
    }
    c->joining = true;
    int rc = pscl_wait(c, PSCL_ALL_TABLES, err);
    c->joining = false;
    int64_t resume = INT64_MAX;
    for (uint32_t s = 0; rc == PS_OK && s < c->n_shards; s++) {
        rc = take_hello(c, s, err);
        resume = c->min_clock[s] < resume ? c->min_clock[s] : resume;
    }
    if (rc != PS_OK)
        return rc;
    if (clock)
        *clock = resume == INT64_MAX ? 0 : resume;
    atomic_store(&c->restarted, 0);
    for (uint32_t s = 0; s < c->n_shards; s++)
        atomic_store(&c->last_reply_ms[s], ps_time_ms()); /* HELLO was answered just now */
    return pscl_start_heartbeats(c, err);
}

int ps_client_recover(ps_client_t *c, bool exact, int64_t *clock, ps_errbuf_t *err)
{
    ps_client_reset(c);
    int64_t low;
    int rc = ps_client_hello(c, &low, err);
    if (rc != PS_OK)
        return rc;
    uint64_t gen_min = UINT64_MAX, gen_max = 0;
    int64_t high = 0;
    for (uint32_t s = 0; s < c->n_shards; s++) {
        gen_min = c->shard_generation[s] < gen_min ? c->shard_generation[s] : gen_min;
        gen_max = c->shard_generation[s] > gen_max ? c->shard_generation[s] : gen_max;
        high = c->max_clock[s] > high ? c->max_clock[s] : high;
    }
    /* Consistent: one generation, and no chunk ahead of the lowest (or, when
     * not exact, at most one round ahead: it ignores the replayed pushes,
     * but the replayed step reads its newer parameters). */
    *clock = low;
    if (gen_min == gen_max && high <= low + (exact ? 0 : 1))
        return PS_OK;
    /* A rollback half done by another worker is finished at its generation;
     * otherwise a new one starts. Every shard reloads its checkpoint of the
     * lowest clock; the shards that already did just acknowledge. */
    uint64_t target = gen_min == gen_max ? gen_max + 1 : gen_max;
    for (uint32_t s = 0; s < c->n_shards; s++) {
        Ps__Header h;
        pscl_header_init(c, &h, PS__OP__ROLLBACK);
        h.clock = low;
        h.generation = target;
        if (!pscl_send(c, s, &h, NULL, NULL, 0, NULL, 0, 0, &rc))
            return ps_err_set(err, rc, "worker %u: cannot send ROLLBACK to shard %u", c->opts.rank,
                              s);
    }
    if ((rc = ps_client_wait(c, err)) != PS_OK)
        return rc;
    c->generation = target;
    return PS_OK;
}

int ps_client_done(ps_client_t *c, ps_errbuf_t *err)
{
    return pscl_broadcast(c, PS__OP__DONE, err);
}

int ps_client_bye(ps_client_t *c, ps_errbuf_t *err)
{
    return pscl_broadcast(c, PS__OP__BYE, err);
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
        int rc;
        if (!pscl_send(c, ch.shard, &h, NULL, wire ? (const char *)wire + ch.offset * dsize : NULL,
                       ch.len, params, ch.offset, ch.len, &rc))
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

int ps_client_pull(ps_client_t *c, uint32_t id, int64_t clock, uint32_t flags, float *params)
{
    return send_table_op(c, PS__OP__PULL, id, clock, flags, NULL, 0, 1.0f, params);
}
