/* ps_handler_replica.c - the holder's side of replicated checkpoints
 * (REPLICA_PUT, REPLICA_LIST, REPLICA_GET, REPLICA_DROP), on the loop
 * thread. Replicas live in STATE_DIR/.replicas/shard-OWNER/JOB/, apart from
 * this shard's own checkpoints, bounded by checkpoint_keep like them. The
 * sending side and the fetch are ps_replica.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "ps_checkpoint.h"
#include "ps_handler.h"
#include "ps_log.h"
#include "ps_name.h"
#include "ps_reply.h"
#include "ps_replica.h"
#include "ps_replica_int.h"
#include "ps_replica_store.h"
#include "ps_time.h"

/* The owner's directory of rq's replicas into dir, or the error reply:
 * the owner must be another shard of this job's layout, the job name (it
 * becomes a path) a valid one. */
static psrv_reply_t *replica_target(ps_server_t *srv, psrv_request_t *rq, bool needs_job, char *dir,
                                    size_t cap)
{
    const Ps__Header *h = rq->hdr;
    if (!*srv->cfg.state_dir)
        return psrv_fail(rq, PS_ENOCKPT, "shard %lld has no state_dir: it holds no replicas",
                         (long long)srv->cfg.shard);
    if (h->n_shards != srv->cfg.shards || h->shard >= h->n_shards || h->shard == srv->cfg.shard)
        return psrv_fail(rq, PS_EINVAL, "replica of shard %u of %u: this is shard %lld of %lld",
                         h->shard, h->n_shards, (long long)srv->cfg.shard,
                         (long long)srv->cfg.shards);
    ps_errbuf_t err;
    if (needs_job && ps_name_check_job(h->job, &err) != PS_OK)
        return psrv_fail(rq, PS_EINVAL, "%s", err.msg);
    psrv_replica_dir(srv->cfg.state_dir, h->shard, dir, cap);
    return NULL;
}

/* Is this shard one of owner's holders (owner + 1 ... owner + R, mod
 * shards, R = checkpoint_replicas capped at shards - 1)? */
static bool holds_for(const ps_server_t *srv, uint32_t owner)
{
    int64_t shards = srv->cfg.shards, r = srv->cfg.checkpoint_replicas;
    if (r > shards - 1)
        r = shards - 1;
    for (int64_t k = 1; k <= r; k++)
        if ((owner + k) % shards == srv->cfg.shard)
            return true;
    return false;
}

static psrv_reply_t *refuse_put(ps_server_t *srv, uint32_t owner, const char *peer,
                                psrv_request_t *rq, int code, const char *why)
{
    srv->stats.replicas_refused++;
    snprintf(srv->stats.replica_error, sizeof srv->stats.replica_error, "%.500s", why);
    ps_log(PS_LOG_WARN, "shard %lld: replica from shard %u (%s) refused: %s",
           (long long)srv->cfg.shard, owner, peer, why);
    return psrv_fail(rq, code, "holder shard %lld: %s", (long long)srv->cfg.shard, why);
}

/* REPLICA_PUT: queued for the store thread (ps_replica_store.h), which
 * checks the bytes' CRC (a mismatch is refused with EFORMAT: the sender
 * sends it again) and writes the file; the answer leaves from
 * psrv_replica_answer once it is in place. A queue already past
 * replica_inflight_mb is refused with EAGAIN (the sender's next checkpoint
 * carries what this one would). */
static psrv_reply_t *handle_put(ps_server_t *srv, psrv_request_t *rq)
{
    const Ps__Header *h = rq->hdr;
    char dir[PS_OPT_STR_MAX + 64];
    psrv_reply_t *bad = replica_target(srv, rq, true, dir, sizeof dir);
    if (bad)
        return bad;
    if (!rq->values || h->clock < 0)
        return psrv_fail(rq, PS_EPROTO, "REPLICA_PUT without a file or a clock");
    if (!holds_for(srv, h->shard))
        return refuse_put(srv, h->shard, psrv_request_peer(rq), rq, PS_EPERM,
                          "this shard is not one of its holders (checkpoint_replicas)");
    if (!srv->replica_store)
        return psrv_fail(rq, PS_EINVAL, "shard %lld holds no replicas: it has no peers",
                         (long long)srv->cfg.shard);
    if (psrv_replica_store_put(srv->replica_store, &rq->msg->parts[0], dir, h, rq->values) != PS_OK)
        return refuse_put(srv, rq->hdr->shard, psrv_request_peer(rq), rq, PS_EAGAIN,
                          "busy: replicas queued for writing past replica_inflight_mb");
    return NULL;
}

void psrv_replica_answer(ps_server_t *srv)
{
    psrv_replica_done_t d;
    while (srv->replica_store && psrv_replica_store_next(srv->replica_store, &d)) {
        Ps__Header h = PS__HEADER__INIT;
        h.version = PS_PROTOCOL_VERSION;
        h.op = PS__OP__REPLICA_PUT;
        h.request_id = d.request_id;
        h.clock = d.clock;
        h.status = d.status;
        char message[700] = "";
        if (d.status != PS_OK) {
            srv->stats.replicas_refused++;
            snprintf(srv->stats.replica_error, sizeof srv->stats.replica_error, "%.500s",
                     d.message);
            ps_log(PS_LOG_WARN, "shard %lld: replica from shard %u refused: %s",
                   (long long)srv->cfg.shard, d.owner, d.message);
            snprintf(message, sizeof message, "holder shard %lld: %s", (long long)srv->cfg.shard,
                     d.message);
            h.message = message;
        } else {
            srv->stats.replicas_stored++;
            srv->stats.replica_bytes_stored += d.bytes;
            srv->stats.replica_error[0] = 0;
            srv->ckpt_listed_ms = 0; /* show checkpoints: list again */
        }
        psrv_send(srv, &d.identity, &h, NULL);
        zmq_msg_close(&d.identity);
    }
}

/* One LIST line per replica of job held in dir into *text (grown). */
static void list_job(const char *dir, const char *job, char **text, size_t *cap, size_t *len)
{
    int64_t *clocks = NULL;
    int n = ps_ckpt_list_clocks(dir, job, &clocks);
    for (int k = 0; k < n; k++) {
        uint64_t id, generation, bytes;
        if (!ps_ckpt_file_ident(dir, job, clocks[k], &id, &generation, &bytes))
            continue; /* gone meanwhile */
        if (*len + PS_JOB_NAME_MAX + 96 > *cap)
            *text = ps_xrealloc(*text, *cap *= 2);
        *len += (size_t)snprintf(*text + *len, *cap - *len, "%s %lld %llu %llu %llu\n", job,
                                 (long long)clocks[k], (unsigned long long)bytes,
                                 (unsigned long long)id, (unsigned long long)generation);
    }
    free(clocks);
}

/* REPLICA_LIST: "JOB CLOCK BYTES JOB_ID GENERATION" per replica held for
 * the owner, each job's clocks ascending (the order a fetch stores them
 * in); the id and generation are the file's job record's. */
static psrv_reply_t *handle_list(ps_server_t *srv, psrv_request_t *rq)
{
    char dir[PS_OPT_STR_MAX + 64];
    psrv_reply_t *bad = replica_target(srv, rq, false, dir, sizeof dir);
    if (bad)
        return bad;
    char **jobs;
    int n_jobs = ps_ckpt_list_jobs(dir, &jobs);
    size_t cap = 256, len = 0;
    char *text = ps_xmalloc(cap);
    text[0] = 0;
    for (int j = 0; j < n_jobs; j++) {
        ps_errbuf_t err;
        if (ps_name_check_job(jobs[j], &err) == PS_OK)
            list_job(dir, jobs[j], &text, &cap, &len);
        free(jobs[j]);
    }
    free(jobs);
    psrv_reply_t *rep = psrv_ok(rq);
    rep->document = text;
    rep->hdr.message = text;
    return rep;
}

/* REPLICA_GET: the file, read back through ps_ckpt_read first (a replica
 * this disk corrupted is refused, not served), with its CRC. */
static psrv_reply_t *handle_get(ps_server_t *srv, psrv_request_t *rq)
{
    const Ps__Header *h = rq->hdr;
    char dir[PS_OPT_STR_MAX + 64];
    psrv_reply_t *bad = replica_target(srv, rq, true, dir, sizeof dir);
    if (bad)
        return bad;
    void *bytes;
    size_t len;
    ps_errbuf_t err;
    int rc = ps_ckpt_read_file(dir, h->job, h->clock, &bytes, &len, &err);
    if (rc != PS_OK)
        return psrv_fail(rq, rc == PS_EIO ? PS_ENOCKPT : rc, "holder shard %lld: %s",
                         (long long)srv->cfg.shard, err.msg);
    psrv_reply_t *rep = psrv_ok(rq);
    rep->hdr.crc = (uint32_t)crc32(crc32(0, NULL, 0), bytes, (uInt)len);
    /* sent from the buffer it was read into: ZeroMQ frees it */
    zmq_msg_init_data(&rep->values, bytes, len, psrv_replica_free_bytes, NULL);
    rep->has_values = true;
    srv->stats.replicas_served++;
    return rep;
}

/* REPLICA_DROP: generation 0: the job (job_id, never 0) ended on the
 * owner, its replicas of that id go; generation > 0: the owner rolled the
 * job back to clock as that generation, the replicas after clock go. */
static psrv_reply_t *handle_drop(ps_server_t *srv, psrv_request_t *rq)
{
    const Ps__Header *h = rq->hdr;
    char dir[PS_OPT_STR_MAX + 64];
    psrv_reply_t *bad = replica_target(srv, rq, true, dir, sizeof dir);
    if (bad)
        return bad;
    if (h->generation > 0) {
        if (h->clock < 0)
            return psrv_fail(rq, PS_EINVAL, "REPLICA_DROP of a rollback to clock %lld",
                             (long long)h->clock);
        ps_ckpt_remove_after(dir, h->job, h->clock);
        ps_log(PS_LOG_INFO,
               "shard %lld: job '%s' of shard %u rolled back to clock %lld (generation %llu): "
               "its replicas after it dropped",
               (long long)srv->cfg.shard, h->job, h->shard, (long long)h->clock,
               (unsigned long long)h->generation);
    } else {
        if (!h->job_id)
            return psrv_fail(rq, PS_EINVAL,
                             "REPLICA_DROP of job '%s' without a job_id (0 would be every id)",
                             h->job);
        ps_ckpt_remove_job_id(dir, h->job, h->job_id);
    }
    srv->ckpt_listed_ms = 0;
    return psrv_ok(rq);
}

psrv_reply_t *psrv_handle_replica(ps_server_t *srv, psrv_request_t *rq)
{
    switch (rq->hdr->op) {
    case PS__OP__REPLICA_PUT:
        return handle_put(srv, rq);
    case PS__OP__REPLICA_LIST:
        return handle_list(srv, rq);
    case PS__OP__REPLICA_GET:
        return handle_get(srv, rq);
    default:
        return handle_drop(srv, rq);
    }
}
