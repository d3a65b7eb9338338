/* ps_handler.h - one handler per op, dispatched through a table. A
 * handler validates its request (ps_request), acts on the job (ps_job,
 * ps_table, ps_sparse) and returns the reply to send, or NULL when a
 * parked pull will be answered later (ps_pending). Loop thread only. */
#ifndef PS_HANDLER_H
#define PS_HANDLER_H

#include "ps_server_int.h"

/* Handles one received message ([identity][header][keys][values]);
 * recv_rc is ps_wire_recv's result (PS_EPROTO: too many frames). Every
 * request gets exactly one reply, now or when its pull is served. */
void psrv_handle(ps_server_t *srv, ps_wire_msg_t *msg, int recv_rc);
/* Handles a request that came through region's doorbell (msg is
 * [the HELLO's routing id][header]): it must be that worker's data
 * request on the region (else EPERM), is judged by the HELLO's key, and
 * its header-only reply goes back up the doorbell. */
struct psrv_region;
void psrv_handle_bell(ps_server_t *srv, ps_wire_msg_t *msg, const struct psrv_region *region);

/* HELLO: joining a job (ps_handler_hello.c): identity, configuration,
 * membership. */
psrv_reply_t *psrv_handle_hello(ps_server_t *srv, psrv_request_t *rq);

/* The handlers of the data ops (ps_handler_data.c). */
psrv_reply_t *psrv_handle_init_table(ps_server_t *srv, psrv_request_t *rq);
psrv_reply_t *psrv_handle_push_pull(ps_server_t *srv, psrv_request_t *rq);
psrv_reply_t *psrv_handle_sparse(ps_server_t *srv, psrv_request_t *rq);

/* The REPLICA_* ops, another shard's (ps_handler_replica.c): storing,
 * listing, serving and dropping the replicas this shard holds for it. */
psrv_reply_t *psrv_handle_replica(ps_server_t *srv, psrv_request_t *rq);
/* Answers the REPLICA_PUTs whose files the store thread has finished
 * with (stored, or refused: bad CRC, full disk); loop thread, when the
 * store's wake socket is readable. */
void psrv_replica_answer(ps_server_t *srv);

#endif
