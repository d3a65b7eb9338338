/* ps_replica_store.h - the holder's writer of replicas: a thread that
 * checks each received replica's CRC and stores it (ps_ckpt_store_file:
 * write, fsync, read back, rename, prune), so a slow disk on the holder
 * never holds up the holder's own loop and the training it serves. The
 * loop queues a REPLICA_PUT (psrv_replica_store_put) and, when the wake
 * socket is readable, takes the finished ones (psrv_replica_store_next) and
 * answers their senders: the acknowledgement leaves only once the file is
 * in place. */
#ifndef PS_REPLICA_STORE_H
#define PS_REPLICA_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "ps_wire.h"

typedef struct psrv_replica_store psrv_replica_store_t;

/* Starts the thread; replicas queued but not yet stored are bounded by
 * max_bytes; keep is checkpoint_keep. NULL if the thread or its wake
 * socket cannot be made. */
psrv_replica_store_t *psrv_replica_store_start(void *ctx, size_t max_bytes, int keep);
/* The PAIR socket the loop polls: readable when a store finished (drain it
 * with psrv_replica_store_next). Borrowed. */
void *psrv_replica_store_wake(psrv_replica_store_t *s);
/* Loop thread: queues h's file (values moves to the store; identity is
 * copied) for DIR/JOB. PS_OK, or PS_EAGAIN if max_bytes would be passed
 * (values is then left alone). */
int psrv_replica_store_put(psrv_replica_store_t *s, const zmq_msg_t *identity, const char *dir,
                           const Ps__Header *h, zmq_msg_t *values);

/* A finished store: whom to answer and with what. */
typedef struct {
    zmq_msg_t identity; /* the caller closes it */
    uint64_t request_id;
    uint32_t owner; /* the shard the replica is of */
    int64_t clock;
    size_t bytes;
    int status; /* PS_OK, PS_EFORMAT (CRC or contents), PS_EIO (disk: message names it) */
    char message[600];
} psrv_replica_done_t;
/* Loop thread: the next finished store into out; false if none. */
bool psrv_replica_store_next(psrv_replica_store_t *s, psrv_replica_done_t *out);
/* Stops the thread once the store under way is done (queued ones are
 * dropped, unanswered: their senders time out and send again) and frees
 * s; NULL-safe, sets *sp to NULL. Before the context is terminated. */
void psrv_replica_store_stop(psrv_replica_store_t **sp);

#endif
