/* ps_reply.h - building and sending replies: the ack or error a handler
 * returns, the parameters of a pull (an fp32 chunk lent zero-copy, other
 * dtypes converted), the rows of a sparse pull. Rejected requests are
 * counted by code and logged at most 20 lines a second, so a hostile peer
 * cannot flood the log. Loop thread only. */
#ifndef PS_REPLY_H
#define PS_REPLY_H

#include "ps_server_int.h"

/* Starts rq's reply: a header echoing the request's op, id, table, chunk
 * and clock (all 0 if the header did not parse). */
void psrv_reply_init(psrv_request_t *rq);
/* The handler's plain success: rq's reply as initialised. */
psrv_reply_t *psrv_ok(psrv_request_t *rq);
/* The handler's failure: rq's reply with status code and the message. */
psrv_reply_t *psrv_fail(psrv_request_t *rq, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Sends rep to the requester of rq (its values frame, if any, goes with
 * it): up the doorbell of rq->answer_region if it has no values and the
 * pipe takes it, else over the router; a failure is counted and logged
 * (rate-limited) with the peer. */
void psrv_reply_send(ps_server_t *srv, psrv_request_t *rq, psrv_reply_t *rep);

/* Sends [identity][header][values] (values may be NULL; its ownership
 * moves). A peer that is gone is not an error: ROUTER drops the message. */
void psrv_send(ps_server_t *srv, zmq_msg_t *identity, Ps__Header *hdr, zmq_msg_t *values);
/* Answers a parked pull from table chunk t (PULL) or sparse table sp
 * (SPARSE_PULL), and counts its latency. */
void psrv_reply_params(ps_server_t *srv, ps_pull_t *pull, ps_table_t *t);
void psrv_reply_rows(ps_server_t *srv, ps_pull_t *pull, ps_sparse_t *sp);
/* Fails a parked pull with code and message (e.g. a rollback). */
void psrv_reply_pull_error(ps_server_t *srv, ps_pull_t *pull, int code, const char *message);

/* The sender's address, for logs and HELLO only: it costs a metadata
 * lookup, which no request on the hot path pays. Never NULL. */
const char *psrv_request_peer(const psrv_request_t *rq);
/* The CURVE key (Z85) rq came with, "" without CURVE. Never NULL. */
const char *psrv_request_user(const psrv_request_t *rq);

#endif
