/* ps_handler_data.c - the handlers of the data ops: INIT_TABLE (dense and
 * sparse), PULL / PUSH / PUSH_PULL on dense chunks, SPARSE_PULL /
 * SPARSE_PUSH. A push is applied (or kept for its BSP round); a pull is
 * parked and answered as soon as its clock is readable, which may be at
 * once. */
#include "ps_handler.h"

#include <string.h>

#include "ps_budget.h"
#include "ps_jobs.h"
#include "ps_log.h"
#include "ps_name.h"
#include "ps_regions.h"
#include "ps_reply.h"
#include "ps_request.h"
#include "ps_shardmap.h"
#include "ps_snapshot.h"
#include "ps_time.h"

/* Parks rq's pull of clock and answers what is ready (this one, maybe);
 * region: where its reply's values go (NULL: over TCP). */
static ps_pull_t *park(psrv_request_t *rq, ps_job_t *job, int64_t clock, uint32_t reply_flags,
                       const psrv_region_t *region)
{
    const Ps__Header *h = rq->hdr;
    ps_pull_t *p = ps_pending_park(ps_job_pending(job), &rq->msg->parts[0]);
    p->request_id = h->request_id;
    p->table_id = h->table_id;
    p->chunk = h->chunk;
    p->rank = h->rank;
    p->flags = h->flags;
    p->reply_flags = reply_flags;
    p->dtype = h->dtype;
    p->clock = clock;
    p->recv_ns = rq->recv_ns;
    if (region) {
        p->region_id = region->id;
        p->shm_offset = h->shm_reply_offset;
        p->reply_flags |= PS_FLAG_SHM;
    }
    return p;
}

/* A request that uses its worker's shared region (PS_FLAG_SHM): the
 * region, with the push's values copied out of it into rq->values (its
 * frame, as if they had come over TCP: nothing the worker does to the
 * region later can change what is checked and applied) and the reply's
 * place in it checked. NULL with the error reply set if it cannot. */
static const psrv_region_t *shm_request(ps_server_t *srv, psrv_request_t *rq, ps_job_t *job,
                                        const ps_table_t *t)
{
    const Ps__Header *h = rq->hdr;
    const psrv_region_t *r =
        psrv_regions_find(srv, ps_job_name(job), h->rank, h->worker_incarnation);
    if (!r)
        return psrv_fail(rq, PS_EPROTO,
                         "worker %u: %s names a shared region this shard has not mapped for it",
                         h->rank, ps_op_name(h->op)),
               NULL;
    rq->answer_region = r->id; /* its reply's header may go up the doorbell */
    uint64_t bytes = ps_table_len(t) * ps_dtype_size(h->dtype);
    bool push = h->op != PS__OP__PULL && !(h->flags & PS_FLAG_SKIP);
    const void *src = push ? psrv_region_at(r, h->shm_offset, bytes) : NULL;
    if ((push && (!src || rq->values)) ||
        (h->op != PS__OP__PUSH && !psrv_region_at(r, h->shm_reply_offset, bytes)))
        return psrv_fail(rq, PS_ERANGE,
                         "worker %u: %s of table '%s': shared region offsets %llu / %llu for "
                         "%llu bytes are outside its region (or a values frame came too)",
                         h->rank, ps_op_name(h->op), ps_table_name(t),
                         (unsigned long long)h->shm_offset, (unsigned long long)h->shm_reply_offset,
                         (unsigned long long)bytes),
               NULL;
    if (push) {
        zmq_msg_init_size(&rq->shm_values, bytes);
        /* fp32 that ps_wire_to_f32 leaves alone or scales down (grad_scale 0
         * or >= 1: a finite value stays finite, inf and NaN stay so) is
         * checked for inf and NaN in the same pass as it is copied */
        if (h->dtype == PS__DTYPE__F32 && (h->grad_scale == 0.0 || h->grad_scale >= 1.0)) {
            rq->finite = psrv_copy_finite(zmq_msg_data(&rq->shm_values), src, ps_table_len(t));
            rq->finite_checked = true;
        } else {
            memcpy(zmq_msg_data(&rq->shm_values), src, bytes);
        }
        rq->has_shm_values = true;
        rq->values = &rq->shm_values;
        srv->stats.bytes_in += bytes; /* moved, by whichever path */
    }
    srv->stats.shm_requests++;
    return r;
}

/* INIT_TABLE of a sparse table: every shard holds the keys that hash to it,
 * so every shard gets the definition (no values frame). */
static psrv_reply_t *init_sparse(ps_server_t *srv, psrv_request_t *rq, ps_job_t *job)
{
    const Ps__Header *h = rq->hdr;
    const Ps__TableSpec *spec = h->table;
    if (h->table_id >= (uint64_t)srv->cfg.max_tables)
        return psrv_fail(rq, PS_ERANGE, "table id %u is above max_tables %lld", h->table_id,
                         (long long)srv->cfg.max_tables);
    ps_errbuf_t bad;
    if (!*spec->name || !spec->optim)
        return psrv_fail(rq, PS_EPROTO, "sparse INIT_TABLE needs a name and an optimizer");
    if (ps_name_check_table(spec->name, &bad) != PS_OK)
        return psrv_fail(rq, PS_EINVAL, "%s", bad.msg);
    if (rq->values)
        return psrv_fail(rq, PS_EPROTO, "sparse INIT_TABLE carries no values");
    ps_job_table_t *e = ps_job_slot(job, h->table_id);
    if (e->n_elems)
        return psrv_fail(rq, PS_ECONFLICT, "table %u is already a dense table", h->table_id);
    if (e->sparse) {
        if (!ps_sparse_same_layout(e->sparse, spec->name, spec->dim))
            return psrv_fail(rq, PS_ECONFLICT, "table %u is already sparse '%s' of dim %u",
                             h->table_id, ps_sparse_name(e->sparse), ps_sparse_dim(e->sparse));
        return psrv_ok(rq);
    }
    ps_sparse_params_t p = {.name = spec->name,
                            .id = h->table_id,
                            .dim = spec->dim,
                            .seed = spec->seed,
                            .init_scale = spec->init_scale,
                            .world = ps_job_world(job),
                            .max_staleness = ps_job_max_staleness(job)};
    ps_optim_spec_from_wire(spec->optim, &p.optim);
    ps_errbuf_t err;
    e->sparse = ps_sparse_new(&p, &err);
    if (!e->sparse)
        return psrv_fail(rq, err.code, "%s", err.msg);
    ps_log(PS_LOG_INFO, "job '%s': sparse table %u '%s' (dim %u, %s)", ps_job_name(job),
           h->table_id, spec->name, spec->dim, ps_optim_name(p.optim.kind));
    return psrv_ok(rq);
}

/* The checks of a dense INIT_TABLE's spec; NULL if it is well formed. */
static psrv_reply_t *check_dense_spec(ps_server_t *srv, psrv_request_t *rq)
{
    const Ps__Header *h = rq->hdr;
    const Ps__TableSpec *spec = h->table;
    ps_errbuf_t bad;
    if (!spec || !*spec->name || spec->n_shape < 1 || spec->n_shape > PS_TABLE_MAX_DIMS)
        return psrv_fail(rq, PS_EPROTO, "INIT_TABLE needs a name and 1 to %d dims",
                         PS_TABLE_MAX_DIMS);
    if (ps_name_check_table(spec->name, &bad) != PS_OK)
        return psrv_fail(rq, PS_EINVAL, "%s", bad.msg);
    if (spec->n_elems > (uint64_t)srv->cfg.max_table_elems)
        return psrv_fail(rq, PS_ERANGE, "table '%s' of %llu elements is above max_table_elems %lld",
                         spec->name, (unsigned long long)spec->n_elems,
                         (long long)srv->cfg.max_table_elems);
    uint64_t prod = 1;
    for (size_t i = 0; i < spec->n_shape; i++)
        prod = spec->shape[i] && prod > UINT64_MAX / spec->shape[i] ? 0 : prod * spec->shape[i];
    if (prod != spec->n_elems || spec->n_elems == 0)
        return psrv_fail(rq, PS_EPROTO, "table '%s': shape does not multiply to %llu", spec->name,
                         (unsigned long long)spec->n_elems);
    if (h->table_id >= (uint64_t)srv->cfg.max_tables)
        return psrv_fail(rq, PS_ERANGE, "table id %u is above max_tables %lld", h->table_id,
                         (long long)srv->cfg.max_tables);
    if (!spec->optim)
        return psrv_fail(rq, PS_EPROTO, "table '%s' has no optimizer", spec->name);
    return NULL;
}

/* A new chunk of a dense table, from the request's values. */
static psrv_reply_t *create_chunk(psrv_request_t *rq, ps_job_t *job, ps_job_table_t *e,
                                  ps_chunk_t slice)
{
    const Ps__Header *h = rq->hdr;
    const Ps__TableSpec *spec = h->table;
    if (!psrv_request_values(rq, slice.offset, slice.len, true))
        return &rq->reply;
    ps_table_params_t p = {
        .name = spec->name,
        .id = h->table_id,
        .n_total = spec->n_elems,
        .shape = spec->shape,
        .ndim = (int)spec->n_shape,
        .offset = slice.offset,
        .len = slice.len,
        .world = ps_job_world(job),
        .max_staleness = ps_job_max_staleness(job),
    };
    ps_optim_spec_from_wire(spec->optim, &p.optim);
    ps_errbuf_t err;
    ps_table_t *t = ps_table_new(&p, zmq_msg_data(rq->values), &err);
    if (!t)
        return psrv_fail(rq, err.code, "%s", err.msg);
    e->chunks[h->chunk] = t;
    ps_log(PS_LOG_DEBUG, "job '%s': table %u '%s' chunk %u holds [%llu, +%llu) of %llu",
           ps_job_name(job), h->table_id, spec->name, h->chunk, (unsigned long long)slice.offset,
           (unsigned long long)slice.len, (unsigned long long)spec->n_elems);
    return NULL;
}

psrv_reply_t *psrv_handle_init_table(ps_server_t *srv, psrv_request_t *rq)
{
    const Ps__Header *h = rq->hdr;
    ps_job_t *job = psrv_request_job(srv, rq);
    if (!job)
        return &rq->reply;
    const Ps__TableSpec *spec = h->table;
    if (spec && spec->sparse)
        return init_sparse(srv, rq, job);
    psrv_reply_t *bad = check_dense_spec(srv, rq);
    if (bad)
        return bad;
    uint32_t shards = (uint32_t)srv->cfg.shards;
    uint32_t n_chunks = ps_shardmap_n_chunks(spec->n_elems, shards);
    if (h->chunk >= n_chunks)
        return psrv_fail(rq, PS_ERANGE, "table '%s' has %u chunks, not %u", spec->name, n_chunks,
                         h->chunk + 1);
    ps_chunk_t slice = ps_shardmap_chunk(spec->n_elems, h->table_id, h->chunk, shards);
    if (slice.shard != srv->cfg.shard)
        return psrv_fail(rq, PS_ERANGE, "chunk %u of table '%s' belongs to shard %u, not %lld",
                         h->chunk, spec->name, slice.shard, (long long)srv->cfg.shard);
    ps_job_table_t *e = ps_job_dense(job, h->table_id, spec->n_elems, n_chunks);
    if (!e)
        return psrv_fail(rq, PS_ECONFLICT, "table %u already has %llu elements, not %llu",
                         h->table_id, (unsigned long long)ps_job_table(job, h->table_id)->n_elems,
                         (unsigned long long)spec->n_elems);
    ps_table_t *existing = e->chunks[h->chunk];
    if (existing && !ps_table_same_layout(existing, spec->name, spec->n_elems))
        return psrv_fail(rq, PS_ECONFLICT, "table %u is already '%s' with %llu elements",
                         h->table_id, ps_table_name(existing),
                         (unsigned long long)ps_table_n_total(existing));
    if (!existing) {
        /* parameters, optimizer state, the BSP sum and the swap buffer */
        ps_optim_spec_t optim;
        ps_optim_spec_from_wire(spec->optim, &optim);
        size_t bytes = slice.len * (3 * sizeof(float) + ps_optim_state_bytes_per_elem(optim.kind));
        char why[400], what[128];
        snprintf(what, sizeof what, "table '%s' chunk %u", spec->name, h->chunk);
        if (psrv_budget_memory(srv, job, bytes, what, why, sizeof why))
            return psrv_fail(rq, PS_ENOMEM, "%s", why);
        if ((bad = create_chunk(rq, job, e, slice)))
            return bad;
    }
    psrv_reply_t *rep = psrv_ok(rq);
    rep->hdr.chunk = h->chunk;
    rep->hdr.offset = slice.offset;
    rep->hdr.n_elems = slice.len;
    return rep;
}

/* The push half of PUSH / PUSH_PULL: checked, then applied or kept for its
 * BSP round. NULL if it went in, else the error reply. */
static psrv_reply_t *take_push(ps_server_t *srv, psrv_request_t *rq, ps_job_t *job, ps_table_t *t,
                               uint32_t *reply_flags)
{
    const Ps__Header *h = rq->hdr;
    bool skip = (h->flags & PS_FLAG_SKIP) != 0;
    if (!psrv_request_values(rq, ps_table_offset(t), ps_table_len(t), !skip))
        return &rq->reply;
    if (ps_job_rank(job, h->rank)->done)
        return psrv_fail(rq, PS_ECONFLICT, "worker %u already said DONE", h->rank);
    if (!skip &&
        !(rq->finite_checked ? rq->finite
                             : psrv_all_finite(zmq_msg_data(rq->values), ps_table_len(t)))) {
        srv->stats.nonfinite_pushes++;
        return psrv_fail(rq, PS_ENONFINITE, "push to table '%s' clock %lld contains inf or NaN",
                         ps_table_name(t), (long long)h->clock);
    }
    if (skip && ps_job_first_skip(job, h->clock))
        ps_log(PS_LOG_NOTICE, "job '%s': worker %u overflowed at clock %lld; step skipped",
               ps_job_name(job), h->rank, (long long)h->clock);
    if (skip && ps_job_max_staleness(job) != 0)
        *reply_flags = PS_FLAG_SKIPPED;
    /* the first push: every table is defined and none has moved, so this
     * is the job's clock-0 checkpoint, the one a shard that dies before
     * the first regular checkpoint is restored from */
    if (h->clock == 0 && ps_job_resume_clock(job) == 0 && ps_job_next_checkpoint(job) == 0)
        psrv_snapshot_maybe(srv, job);
    int rc = ps_table_push(t, h->rank, h->clock, skip ? NULL : rq->values, h->n_samples);
    if (rc != PS_OK)
        return psrv_fail(rq, rc, "push of clock %lld to table '%s' but worker %u is at %lld",
                         (long long)h->clock, ps_table_name(t), h->rank,
                         (long long)ps_table_worker_clock(t, h->rank));
    if (ps_job_complete_chunk(job, t) || ps_job_max_staleness(job) != 0) {
        psrv_jobs_serve(srv, job);
        psrv_snapshot_maybe(srv, job);
    }
    ps_hist_observe(&srv->stats.push_latency, ps_time_ns() - rq->recv_ns);
    return NULL;
}

/* Under BSP the parameters of a clock the table has moved past are gone:
 * serving the newer ones would let a replayed step compute from them (a
 * worker that rejoins while another completes the round). One rule for
 * dense and sparse pulls; NULL if the pull may wait for its clock. */
static psrv_reply_t *refuse_clock_gone(psrv_request_t *rq, const ps_job_t *job, const char *table,
                                       int64_t table_clock)
{
    const Ps__Header *h = rq->hdr;
    if (ps_job_max_staleness(job) != 0 || (h->flags & PS_FLAG_AFTER_ALL_DONE) ||
        table_clock <= h->clock)
        return NULL;
    return psrv_fail(rq, PS_ESTALE,
                     "table '%s' is at clock %lld, past the clock %lld asked for: its "
                     "parameters of that clock are gone (roll back to read them)",
                     table, (long long)table_clock, (long long)h->clock);
}

psrv_reply_t *psrv_handle_push_pull(ps_server_t *srv, psrv_request_t *rq)
{
    const Ps__Header *h = rq->hdr;
    ps_job_t *job = psrv_request_job(srv, rq);
    ps_table_t *t = job ? psrv_request_chunk(srv, rq, job) : NULL;
    if (!t || !psrv_request_current(rq, job))
        return &rq->reply;
    int64_t pull_clock = h->clock;
    uint32_t reply_flags = 0;
    const psrv_region_t *region = NULL;
    if ((h->flags & PS_FLAG_SHM) && !(region = shm_request(srv, rq, job, t)))
        return &rq->reply;
    if (h->op != PS__OP__PULL) {
        psrv_reply_t *bad = take_push(srv, rq, job, t, &reply_flags);
        if (bad)
            return bad;
        pull_clock = h->clock + 1;
    }
    if (h->op == PS__OP__PUSH)
        return psrv_ok(rq);
    if (h->op == PS__OP__PULL) {
        psrv_reply_t *gone = refuse_clock_gone(rq, job, ps_table_name(t), ps_table_clock(t));
        if (gone)
            return gone;
    }
    char why[512];
    if (psrv_jobs_world_problem(srv, job, why, sizeof why))
        return psrv_fail(rq, PS_EWORLD, "%s", why);
    park(rq, job, pull_clock, reply_flags, region);
    psrv_jobs_serve(srv, job);
    return NULL;
}

/* The keys frame of a sparse request: counts agree, every key is this
 * shard's, within the limits. NULL if so, else the error reply. */
static psrv_reply_t *check_keys(ps_server_t *srv, psrv_request_t *rq, const ps_job_t *job,
                                const ps_sparse_t *t)
{
    const Ps__Header *h = rq->hdr;
    zmq_msg_t *keys_msg = &rq->msg->parts[2];
    size_t kbytes = zmq_msg_size(keys_msg);
    uint64_t n = kbytes / sizeof(uint64_t);
    /* no keys is a request too: a push still counts the rank's clock
     * here, a pull still waits for the clock (the client sends both to
     * every shard, whether its batch has keys there or not) */
    if (kbytes % sizeof(uint64_t) || n != h->n_elems)
        return psrv_fail(rq, PS_EPROTO, "keys frame has %zu bytes for n_elems %llu", kbytes,
                         (unsigned long long)h->n_elems);
    if (n > (uint64_t)srv->cfg.max_request_keys)
        return psrv_fail(rq, PS_ERANGE, "%llu keys in one request, above max_request_keys %lld",
                         (unsigned long long)n, (long long)srv->cfg.max_request_keys);
    uint32_t shards = (uint32_t)srv->cfg.shards, me = (uint32_t)srv->cfg.shard;
    const char *kp = zmq_msg_data(keys_msg);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t key;
        memcpy(&key, kp + i * sizeof key, sizeof key);
        if (ps_shardmap_key_shard(key, shards) != me)
            return psrv_fail(rq, PS_ERANGE, "key %llu belongs to shard %u, not %u",
                             (unsigned long long)key, ps_shardmap_key_shard(key, shards), me);
    }
    if (ps_sparse_keys(t) + n > (uint64_t)srv->cfg.max_sparse_keys)
        return psrv_fail(rq, PS_ERANGE, "sparse table '%s' holds %llu keys here, limit %lld",
                         ps_sparse_name(t), (unsigned long long)ps_sparse_keys(t),
                         (long long)srv->cfg.max_sparse_keys);
    /* as if every key were new: a request never takes a budget's last bytes twice */
    char why[400], what[128];
    snprintf(what, sizeof what, "%llu keys of sparse table '%s'", (unsigned long long)n,
             ps_sparse_name(t));
    if (!(h->flags & PS_FLAG_NO_CREATE) &&
        psrv_budget_memory(srv, job, n * ps_sparse_row_bytes(t), what, why, sizeof why))
        return psrv_fail(rq, PS_ENOMEM, "%s", why);
    return NULL;
}

static psrv_reply_t *sparse_push(ps_server_t *srv, psrv_request_t *rq, ps_job_t *job,
                                 ps_sparse_t *t)
{
    const Ps__Header *h = rq->hdr;
    zmq_msg_t *vals = &rq->msg->parts[3];
    uint64_t n = h->n_elems, len = n * ps_sparse_dim(t);
    if (h->dtype != PS__DTYPE__F32)
        return psrv_fail(rq, PS_EPROTO, "sparse gradients travel as f32");
    if (zmq_msg_size(vals) != len * sizeof(float))
        return psrv_fail(rq, PS_EPROTO, "values frame has %zu bytes, %llu keys x dim %u need %llu",
                         zmq_msg_size(vals), (unsigned long long)n, ps_sparse_dim(t),
                         (unsigned long long)(len * sizeof(float)));
    if (ps_job_rank(job, h->rank)->done)
        return psrv_fail(rq, PS_ECONFLICT, "worker %u already said DONE", h->rank);
    rq->values = vals;
    if (ps_wire_to_f32(vals, PS__DTYPE__F32, len, 1.0) != PS_OK ||
        !psrv_all_finite(zmq_msg_data(vals), len)) {
        srv->stats.nonfinite_pushes++;
        return psrv_fail(rq, PS_ENONFINITE, "sparse push to '%s' clock %lld contains inf or NaN",
                         ps_sparse_name(t), (long long)h->clock);
    }
    /* as for a dense push: the job's clock-0 checkpoint */
    if (h->clock == 0 && ps_job_resume_clock(job) == 0 && ps_job_next_checkpoint(job) == 0)
        psrv_snapshot_maybe(srv, job);
    int rc = ps_sparse_push(t, h->rank, h->clock, &rq->msg->parts[2], vals);
    if (rc != PS_OK)
        return psrv_fail(rq, rc, "sparse push of clock %lld to '%s' but worker %u is at %lld",
                         (long long)h->clock, ps_sparse_name(t), h->rank,
                         (long long)ps_sparse_worker_clock(t, h->rank));
    if (ps_sparse_try_complete(t, ps_job_live(job)) || ps_job_max_staleness(job) != 0) {
        psrv_jobs_serve(srv, job);
        psrv_snapshot_maybe(srv, job);
    }
    ps_hist_observe(&srv->stats.push_latency, ps_time_ns() - rq->recv_ns);
    return psrv_ok(rq);
}

/* SPARSE_PULL and SPARSE_PUSH: [header][keys][gradient rows (push)]. */
psrv_reply_t *psrv_handle_sparse(ps_server_t *srv, psrv_request_t *rq)
{
    const Ps__Header *h = rq->hdr;
    ps_job_t *job = psrv_request_job(srv, rq);
    if (!job)
        return &rq->reply;
    ps_sparse_t *t = ps_job_sparse(job, h->table_id);
    if (!t)
        return psrv_fail(rq, PS_ENOTABLE, "table %u is not a sparse table in job '%s'", h->table_id,
                         ps_job_name(job));
    if (!psrv_request_current(rq, job))
        return &rq->reply;
    bool push = h->op == PS__OP__SPARSE_PUSH;
    if (rq->msg->n_parts != (push ? 4 : 3))
        return psrv_fail(rq, PS_EPROTO, "%s needs %s frames, got %d", ps_op_name(h->op),
                         push ? "header, keys and values" : "header and keys",
                         rq->msg->n_parts - 1);
    psrv_reply_t *bad = check_keys(srv, rq, job, t);
    if (bad)
        return bad;
    if (push)
        return sparse_push(srv, rq, job, t);
    /* a pull: parked with an aligned copy of its keys until the clock allows */
    psrv_reply_t *gone =
        refuse_clock_gone(rq, job, ps_sparse_name(t), ps_round_clock(ps_sparse_round(t)));
    if (gone)
        return gone;
    ps_pull_t *p = park(rq, job, h->clock, 0, NULL);
    p->sparse = true;
    zmq_msg_t *keys = &rq->msg->parts[2];
    zmq_msg_close(&p->keys);
    zmq_msg_init_size(&p->keys, zmq_msg_size(keys));
    memcpy(zmq_msg_data(&p->keys), zmq_msg_data(keys), zmq_msg_size(keys));
    psrv_jobs_serve(srv, job);
    return NULL;
}
