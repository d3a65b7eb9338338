/* ps_replica_int.h - what the replica sender (ps_replica.c) and the fetch
 * of a new machine (ps_replica_fetch.c) share: one request to a peer shard
 * and its reply (ps_replica_link.c); the holder's handlers
 * (ps_handler_replica.c) hand file bytes to ZeroMQ the same way. Not for
 * the rest of the server. */
#ifndef PS_REPLICA_INT_H
#define PS_REPLICA_INT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "ps_replica.h"
#include "ps_wire.h"

/* A file a peer refused (or whose CRC failed on arrival) is sent or asked
 * for again this many times in all. */
#define PSRV_REPLICA_REFUSED_RETRIES 3

/* A request header of op about job (NULL: none) of shard `shard` of n_shards. */
Ps__Header psrv_replica_header(int op, const char *job, uint64_t job_id, uint32_t shard,
                               uint32_t n_shards);

/* A DEALER to endpoint (CURVE if the shards use it). NULL if it cannot be
 * made (why says so). */
void *psrv_replica_open_peer(void *ctx, const psrv_replica_cfg_t *cfg, const char *endpoint,
                             char *why, size_t cap);

/* A zmq_msg_init_data free callback for malloc'd file bytes: a file of
 * hundreds of MB is sent from the buffer it was read into, not a copy. */
void psrv_replica_free_bytes(void *data, void *hint);

/* Sends h (and bytes, owned from here on, if not NULL) and waits until
 * deadline_ms for the reply to h->request_id: PS_OK with *reply set (the
 * caller closes it), PS_ETIME, PS_EINTR (*cancel was set: the wait is cut
 * into slices of 50 ms to look at it), or PS_ENET; why says what happened. */
int psrv_replica_call(void *s, const Ps__Header *h, void *bytes, size_t len, int64_t deadline_ms,
                      const atomic_bool *cancel, ps_wire_msg_t *reply, char *why, size_t cap);

#endif
