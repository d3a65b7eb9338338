/* ps_reply.c - see ps_reply.h. */
#include "ps_reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_log.h"
#include "ps_regions.h"
#include "ps_time.h"

/* ZeroMQ's property name of rq's header frame (from the socket it came
 * on), or what its doorbell's HELLO said; fallback if neither has one. */
static const char *request_meta(const psrv_request_t *rq, const char *name, const char *of_bell,
                                const char *fallback)
{
    const char *v = rq->bell                           ? of_bell
                    : rq->msg && rq->msg->n_parts >= 2 ? zmq_msg_gets(&rq->msg->parts[1], name)
                                                       : NULL;
    return v ? v : fallback;
}

const char *psrv_request_peer(const psrv_request_t *rq)
{
    return request_meta(rq, "Peer-Address", rq->bell ? rq->bell->peer : NULL, "?");
}

const char *psrv_request_user(const psrv_request_t *rq)
{
    return request_meta(rq, "User-Id", rq->bell ? rq->bell->user_id : NULL, "");
}

void psrv_send(ps_server_t *srv, zmq_msg_t *identity, Ps__Header *hdr, zmq_msg_t *values_in)
{
    zmq_msg_t id, vals;
    bool values = values_in != NULL;
    if (values) {
        zmq_msg_init(&vals);
        zmq_msg_move(&vals, values_in);
    }
    zmq_msg_init(&id);
    zmq_msg_copy(&id, identity);
    int n1 = ps_wire_send_msg(srv->router, &id, 1);
    int n2 = n1 < 0 ? n1 : ps_wire_send_header(srv->router, hdr, values);
    int n3 = 0;
    if (values)
        n3 = n2 < 0 ? (zmq_msg_close(&vals), n2) : ps_wire_send_msg(srv->router, &vals, 0);
    if (n1 < 0 || n2 < 0 || n3 < 0) {
        /* The peer is gone (ROUTER drops unroutable messages); nothing to undo. */
        ps_log(PS_LOG_DEBUG, "reply to request %llu not sent", (unsigned long long)hdr->request_id);
        return;
    }
    srv->stats.bytes_out += (uint64_t)n2 + (uint64_t)n3;
}

static void header_from(Ps__Header *rep, const Ps__Header *req)
{
    ps__header__init(rep);
    rep->version = PS_PROTOCOL_VERSION;
    rep->op = req ? req->op : PS__OP__OP_NONE;
    rep->request_id = req ? req->request_id : 0;
    rep->table_id = req ? req->table_id : 0;
    rep->chunk = req ? req->chunk : 0;
    rep->clock = req ? req->clock : 0;
}

void psrv_reply_init(psrv_request_t *rq)
{
    header_from(&rq->reply.hdr, rq->hdr);
    /* a reply to a request that used the shared region says so, errors
     * too: the worker's slots are free once it arrives */
    int op = rq->hdr ? rq->hdr->op : 0;
    if (op == PS__OP__PULL || op == PS__OP__PUSH || op == PS__OP__PUSH_PULL)
        rq->reply.hdr.flags = rq->hdr->flags & PS_FLAG_SHM;
    rq->reply.message[0] = '\0';
    rq->reply.document = NULL;
    rq->reply.clocks = NULL;
    rq->reply.has_values = false;
}

psrv_reply_t *psrv_ok(psrv_request_t *rq)
{
    return &rq->reply;
}

psrv_reply_t *psrv_fail(psrv_request_t *rq, int code, const char *fmt, ...)
{
    psrv_reply_t *rep = &rq->reply;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rep->message, sizeof rep->message, fmt, ap);
    va_end(ap);
    if (rep->has_values) {
        zmq_msg_close(&rep->values);
        rep->has_values = false;
    }
    rep->hdr.status = code;
    rep->hdr.message = rep->message;
    return rep;
}

/* Counts a rejected request and logs it, at most 20 lines a second. */
static void note_rejected(ps_server_t *srv, const psrv_request_t *rq, const psrv_reply_t *rep)
{
    int code = rep->hdr.status;
    srv->stats.errors++;
    if (code < 0 && code > -32)
        srv->stats.errors_by_code[-code]++;
    int64_t now = ps_time_ms();
    if (now - srv->log_budget_reset_ms >= 1000) {
        srv->log_budget_reset_ms = now;
        srv->log_budget = 20;
    }
    if (srv->log_budget <= 0)
        return;
    srv->log_budget--;
    ps_log(PS_LOG_WARN, "peer '%s': %s request rejected: %s: %s", psrv_request_peer(rq),
           rq->hdr ? ps_op_name(rq->hdr->op) : "unparsable", ps_errname(code), rep->message);
}

void psrv_reply_send(ps_server_t *srv, psrv_request_t *rq, psrv_reply_t *rep)
{
    if (rep->hdr.status != 0)
        note_rejected(srv, rq, rep);
    if (rep->has_values || !rq->answer_region ||
        !psrv_regions_ring(srv, rq->answer_region, &rep->hdr))
        psrv_send(srv, &rq->msg->parts[0], &rep->hdr, rep->has_values ? &rep->values : NULL);
    rep->has_values = false;
    free(rep->document);
    rep->document = NULL;
    free(rep->clocks);
    rep->clocks = NULL;
}

/* A pull's reply header. */
static void pull_header(Ps__Header *rep, const ps_pull_t *p, int op)
{
    header_from(rep, NULL);
    rep->op = op;
    rep->request_id = p->request_id;
    rep->table_id = p->table_id;
    rep->chunk = p->chunk;
    rep->clock = p->clock;
}

/* The values of pull p written into its worker's shared region, then the
 * header alone sent: false (nothing sent) if the region is gone (the
 * reply then goes over TCP, still marked PS_FLAG_SHM). The worker reads
 * the slot only after this header, and sends no request that may write it
 * before it has read it. */
static bool reply_in_region(ps_server_t *srv, ps_pull_t *p, ps_table_t *t, Ps__Header *rep)
{
    const psrv_region_t *r = psrv_regions_get(srv, p->region_id);
    uint64_t len = ps_table_len(t);
    void *dst = r ? psrv_region_at(r, p->shm_offset, len * ps_dtype_size(p->dtype)) : NULL;
    if (!dst || ps_wire_encode(p->dtype, ps_table_params(t), dst, len, 1.0f) != PS_OK)
        return false;
    rep->flags |= PS_FLAG_SHM_VALUES;
    if (!psrv_regions_ring(srv, p->region_id, rep))
        psrv_send(srv, &p->identity, rep, NULL);
    srv->stats.bytes_out += len * ps_dtype_size(p->dtype); /* moved, by whichever path */
    ps_hist_observe(&srv->stats.pull_latency, ps_time_ns() - p->recv_ns);
    return true;
}

void psrv_reply_params(ps_server_t *srv, ps_pull_t *p, ps_table_t *t)
{
    Ps__Header rep;
    pull_header(&rep, p, PS__OP__PULL);
    rep.dtype = p->dtype;
    rep.flags = p->reply_flags;
    if (ps_table_last_skipped_round(t) == p->clock - 1 && p->clock > 0)
        rep.flags |= PS_FLAG_SKIPPED;
    rep.offset = ps_table_offset(t);
    rep.n_elems = ps_table_len(t);
    if (p->region_id && reply_in_region(srv, p, t, &rep))
        return;
    zmq_msg_t vals;
    /* fp32 goes out as the table's own buffer: no copy, no allocation */
    int rc = p->dtype == PS__DTYPE__F32 ? ps_table_lend_params(t, &vals) : PS_EINVAL;
    if (rc != PS_OK)
        rc = ps_wire_from_f32(&vals, p->dtype, ps_table_params(t), ps_table_len(t));
    if (rc != PS_OK) {
        ps_log(PS_LOG_ERROR, "shard %lld: cannot allocate a %llu-element reply",
               (long long)srv->cfg.shard, (unsigned long long)ps_table_len(t));
        return;
    }
    psrv_send(srv, &p->identity, &rep, &vals);
    ps_hist_observe(&srv->stats.pull_latency, ps_time_ns() - p->recv_ns);
}

void psrv_reply_rows(ps_server_t *srv, ps_pull_t *p, ps_sparse_t *t)
{
    uint64_t n = zmq_msg_size(&p->keys) / sizeof(uint64_t);
    Ps__Header rep;
    pull_header(&rep, p, PS__OP__SPARSE_PULL);
    rep.n_elems = n;
    /* the rows go straight into the reply frame: no buffer to copy from */
    zmq_msg_t vals;
    bool ok = zmq_msg_init_size(&vals, n * ps_sparse_dim(t) * sizeof(float)) == 0;
    float *rows = ok ? zmq_msg_data(&vals) : NULL;
    const uint64_t *keys = zmq_msg_data(&p->keys); /* an aligned copy (see the handler) */
    if (rows && (p->flags & PS_FLAG_NO_CREATE))
        ps_sparse_peek(t, keys, n, rows);
    if (!rows || (!(p->flags & PS_FLAG_NO_CREATE) && ps_sparse_pull(t, keys, n, rows) != PS_OK)) {
        rep.status = rows ? PS_ERANGE : PS_ENOMEM;
        rep.message = rows ? "sparse table is full on this shard" : "out of memory";
        if (ok)
            zmq_msg_close(&vals);
        psrv_send(srv, &p->identity, &rep, NULL);
    } else {
        psrv_send(srv, &p->identity, &rep, &vals);
    }
    ps_hist_observe(&srv->stats.pull_latency, ps_time_ns() - p->recv_ns);
}

void psrv_reply_pull_error(ps_server_t *srv, ps_pull_t *p, int code, const char *message)
{
    Ps__Header rep;
    pull_header(&rep, p, PS__OP__PULL);
    rep.flags = p->reply_flags & PS_FLAG_SHM;
    rep.status = code;
    rep.message = (char *)message;
    if (!p->region_id || !psrv_regions_ring(srv, p->region_id, &rep))
        psrv_send(srv, &p->identity, &rep, NULL);
}
