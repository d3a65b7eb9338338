/* ps_handler.c - dispatch, and the handlers of the control ops: HELLO,
 * HEARTBEAT, DONE/BYE, ROLLBACK, STATS, SAVE, SHUTDOWN. The data ops are
 * in ps_handler_data.c. */
#include "ps_handler.h"

#include <stdlib.h>
#include <string.h>

#include "ps_access.h"
#include "ps_jobs.h"
#include "ps_log.h"
#include "ps_regions.h"
#include "ps_reply.h"
#include "ps_request.h"
#include "ps_snapshot.h"
#include "ps_time.h"

/* Keeps a live rank alive; a rank already declared dead must HELLO. */
static psrv_reply_t *handle_heartbeat(ps_server_t *srv, psrv_request_t *rq)
{
    ps_job_t *job = psrv_jobs_find(srv, rq->hdr->job);
    uint32_t r = rq->hdr->rank;
    if (job && r < ps_job_world(job) && !ps_job_rank(job, r)->dead &&
        ps_job_owns(job, r, rq->hdr->worker_incarnation))
        ps_job_heartbeat(job, r, (double)rq->hdr->n_samples, rq->hdr->loss, ps_time_ms());
    psrv_reply_t *rep = psrv_ok(rq);
    rep->hdr.incarnation = srv->incarnation;
    return rep;
}

/* DONE: the rank pushed its last clock; BYE: it leaves. A job whose every
 * rank said BYE is over. */
static psrv_reply_t *handle_done_bye(ps_server_t *srv, psrv_request_t *rq)
{
    const Ps__Header *h = rq->hdr;
    ps_job_t *job = psrv_request_job(srv, rq);
    if (!job)
        return &rq->reply;
    bool was_done = ps_job_all_done(job);
    ps_job_finish_rank(job, h->rank, h->op == PS__OP__BYE);
    if (!was_done && ps_job_all_done(job))
        psrv_snapshot_final(srv, job);
    psrv_jobs_recheck(srv, job);
    if (ps_job_all_left(job))
        psrv_jobs_finish(srv, job);
    return psrv_ok(rq);
}

static void fail_rolled_back(void *ctx, ps_pull_t *pull)
{
    psrv_reply_pull_error(ctx, pull, PS_ESTALE, "the job was rolled back");
}

/* ROLLBACK to clock as generation: reload this shard's checkpoint of that
 * clock, drop rounds in progress and parked pulls (their workers get
 * ESTALE and recover too). Idempotent: a generation already reached is
 * acknowledged without reloading, so every worker may ask. */
static psrv_reply_t *handle_rollback(ps_server_t *srv, psrv_request_t *rq)
{
    const Ps__Header *h = rq->hdr;
    ps_job_t *job = psrv_request_job(srv, rq);
    if (!job)
        return &rq->reply;
    if (h->generation > ps_job_generation(job)) {
        ps_errbuf_t err;
        int rc = psrv_snapshot_rollback(srv, job, h->clock, h->generation, &err);
        if (rc != PS_OK)
            return psrv_fail(rq, rc, "%s", err.msg);
        ps_pending_flush(ps_job_pending(job), fail_rolled_back, srv);
        ps_job_set_generation(job, h->generation);
        ps_log(PS_LOG_NOTICE, "job '%s': rolled back to clock %lld (generation %llu) for worker %u",
               ps_job_name(job), (long long)h->clock, (unsigned long long)h->generation, h->rank);
    }
    psrv_reply_t *rep = psrv_ok(rq);
    rep->hdr.clock = ps_job_resume_clock(job);
    rep->hdr.max_clock = ps_job_max_clock(job);
    rep->hdr.generation = ps_job_generation(job);
    rep->hdr.rollback_clock = ps_job_rollback_clock(job);
    const ps_loss_scale_t *ls = ps_job_scaler_at(job, rep->hdr.clock);
    if (ls) {
        rep->hdr.loss_scale = ls->scale;
        rep->hdr.loss_scale_window = (uint64_t)ls->window;
        rep->hdr.scale_good_steps = (uint64_t)ls->clean;
        rep->hdr.scale_skipped = ls->n_skipped;
    }
    /* the checkpoints held now (after a rollback done here, none above its
     * clock): where a pipeline's stages may still meet */
    psrv_snapshot_reply_clocks(srv, job, rep);
    return rep;
}

/* STATS: the `show info json` document, for monitors reaching us over
 * CURVE (the stats socket itself is local only). */
static psrv_reply_t *handle_stats(ps_server_t *srv, psrv_request_t *rq)
{
    psrv_reply_t *rep = psrv_ok(rq);
    rep->document = psrv_stats_info_json(srv);
    rep->hdr.message = rep->document;
    return rep;
}

static psrv_reply_t *handle_save(ps_server_t *srv, psrv_request_t *rq)
{
    if (!*srv->cfg.state_dir)
        return psrv_fail(rq, PS_ENOCKPT, "shard %lld has no state_dir: checkpoints are off",
                         (long long)srv->cfg.shard);
    int failed = psrv_snapshot_all(srv);
    if (failed)
        return psrv_fail(rq, PS_EIO, "%d checkpoints failed (see the server log)", failed);
    return psrv_ok(rq);
}

/* SHUTDOWN: answered first, then the loop ends and main checkpoints. */
static psrv_reply_t *handle_shutdown(ps_server_t *srv, psrv_request_t *rq)
{
    ps_log(PS_LOG_NOTICE, "shard %lld: SHUTDOWN requested by %s", (long long)srv->cfg.shard,
           psrv_request_peer(rq));
    srv->shutdown_requested = true;
    return psrv_ok(rq);
}

typedef psrv_reply_t *(*handler_fn)(ps_server_t *, psrv_request_t *);

static const handler_fn handlers[] = {
    [PS__OP__HELLO] = psrv_handle_hello,
    [PS__OP__INIT_TABLE] = psrv_handle_init_table,
    [PS__OP__PULL] = psrv_handle_push_pull,
    [PS__OP__PUSH] = psrv_handle_push_pull,
    [PS__OP__PUSH_PULL] = psrv_handle_push_pull,
    [PS__OP__HEARTBEAT] = handle_heartbeat,
    [PS__OP__DONE] = handle_done_bye,
    [PS__OP__BYE] = handle_done_bye,
    [PS__OP__ROLLBACK] = handle_rollback,
    [PS__OP__STATS] = handle_stats,
    [PS__OP__SAVE] = handle_save,
    [PS__OP__SHUTDOWN] = handle_shutdown,
    [PS__OP__SPARSE_PULL] = psrv_handle_sparse,
    [PS__OP__SPARSE_PUSH] = psrv_handle_sparse,
    [PS__OP__REPLICA_PUT] = psrv_handle_replica,
    [PS__OP__REPLICA_LIST] = psrv_handle_replica,
    [PS__OP__REPLICA_GET] = psrv_handle_replica,
    [PS__OP__REPLICA_DROP] = psrv_handle_replica,
};
#define N_HANDLERS (sizeof handlers / sizeof handlers[0])

/* A doorbell is its worker process's alone (it opened the pipe): what
 * comes through it must be that process's data request on its region. */
static bool bell_may_carry(const psrv_request_t *rq)
{
    const Ps__Header *h = rq->hdr;
    bool data_op = h->op == PS__OP__PULL || h->op == PS__OP__PUSH || h->op == PS__OP__PUSH_PULL;
    return data_op && (h->flags & PS_FLAG_SHM) && h->job && strcmp(h->job, rq->bell->job) == 0 &&
           h->rank == rq->bell->rank && h->worker_incarnation == rq->bell->owner;
}

/* The checks every request passes before its handler; NULL if it may go
 * on, else the error reply. */
static psrv_reply_t *admit(ps_server_t *srv, psrv_request_t *rq, int recv_rc)
{
    const Ps__Header *h = rq->hdr;
    if (!h)
        return psrv_fail(rq, PS_EPROTO, "first frame is not a ps.Header");
    if (recv_rc == PS_EPROTO || rq->msg->n_parts > 4 ||
        (rq->msg->n_parts == 4 && h->op != PS__OP__SPARSE_PUSH))
        return psrv_fail(rq, PS_EPROTO, "too many frames");
    if ((unsigned)h->op >= N_HANDLERS || !handlers[h->op])
        return psrv_fail(rq, PS_EPROTO, "unknown op %d", h->op);
    if (rq->bell && !bell_may_carry(rq))
        return psrv_fail(rq, PS_EPERM,
                         "%s came through the doorbell of job '%s' worker %u, which carries only "
                         "that worker's requests that use its shared region",
                         ps_op_name(h->op), rq->bell->job, rq->bell->rank);
    if (!psrv_access_permitted(srv, rq))
        return &rq->reply;
    if (h->incarnation && h->incarnation != srv->incarnation && h->op != PS__OP__HELLO &&
        h->op != PS__OP__HEARTBEAT)
        return psrv_fail(rq, PS_ERESTARTED, "shard %lld restarted (incarnation %llx); HELLO again",
                         (long long)srv->cfg.shard, (unsigned long long)srv->incarnation);
    return NULL;
}

static void handle(ps_server_t *srv, ps_wire_msg_t *msg, int recv_rc, const psrv_region_t *bell)
{
    if (msg->n_parts < 1)
        return;
    psrv_request_t rq = {
        .msg = msg, .recv_ns = ps_time_ns(), .bell = bell, .answer_region = bell ? bell->id : 0};
    if (bell)
        srv->stats.bell_requests++;
    /* the routing identity is ZeroMQ's, not the peer's bytes */
    srv->stats.bytes_in += ps_wire_msg_bytes(msg) - zmq_msg_size(&msg->parts[0]);
    if (msg->n_parts >= 2)
        rq.hdr = ps_wire_unpack_header(&msg->parts[1]);
    psrv_reply_init(&rq);
    psrv_reply_t *rep = admit(srv, &rq, recv_rc);
    if (!rep) {
        rq.values = msg->n_parts == 3 && rq.hdr->op != PS__OP__SPARSE_PULL ? &msg->parts[2] : NULL;
        srv->stats.requests[rq.hdr->op]++;
        rep = handlers[rq.hdr->op](srv, &rq);
    }
    if (rep)
        psrv_reply_send(srv, &rq, rep);
    if (rq.has_shm_values)
        zmq_msg_close(&rq.shm_values);
    if (rq.hdr)
        ps__header__free_unpacked(rq.hdr, NULL);
}

void psrv_handle(ps_server_t *srv, ps_wire_msg_t *msg, int recv_rc)
{
    handle(srv, msg, recv_rc, NULL);
}

void psrv_handle_bell(ps_server_t *srv, ps_wire_msg_t *msg, const psrv_region_t *region)
{
    handle(srv, msg, PS_OK, region);
}

void ps_server_handle(ps_server_t *srv, ps_wire_msg_t *msg)
{
    psrv_handle(srv, msg, msg->n_parts > 4 ? PS_EPROTO : PS_OK);
}
