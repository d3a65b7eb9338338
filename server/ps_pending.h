/* ps_pending.h - pulls parked until the consistency model lets them be
 * answered: a pull of a clock ahead of what its table may serve waits here
 * with the requester's identity, and every event that can move a clock
 * asks the list to serve what is now allowed. This is the whole barrier:
 * nothing blocks the loop. Pure bookkeeping (no sockets): the caller says
 * which pulls are ready and answers them. Server loop thread only. */
#ifndef PS_PENDING_H
#define PS_PENDING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

/* One parked pull: what its reply needs. */
typedef struct {
    zmq_msg_t identity; /* routing identity of the requester (a copy) */
    uint64_t request_id;
    uint32_t table_id;
    uint32_t chunk;
    uint32_t rank;
    uint32_t flags;       /* the request's PS_FLAG_* */
    uint32_t reply_flags; /* PS_FLAG_SKIPPED known when parked (SSP/ASP) */
    int64_t recv_ns;      /* when the request arrived, for the latency histogram */
    int dtype;            /* values in the reply */
    int64_t clock;        /* the clock to read */
    bool sparse;          /* a SPARSE_PULL (its keys may be none: it waits for the clock) */
    zmq_msg_t keys;       /* SPARSE_PULL: an aligned copy of the keys; empty for dense */
    uint64_t region_id;   /* the reply's values go to this shared region (0: none)... */
    uint64_t shm_offset;  /* ...at this byte offset, if it is still mapped */
} ps_pull_t;

typedef struct {
    ps_pull_t *pulls;
    size_t n, cap;
} ps_pending_t;

void ps_pending_init(ps_pending_t *p);
/* Closes every parked pull's frames and frees the list; safe twice. */
void ps_pending_fini(ps_pending_t *p);

/* Parks a pull: a zeroed entry with a copy of identity and an empty keys
 * frame, filled in by the caller. Valid until the list next changes. */
ps_pull_t *ps_pending_park(ps_pending_t *p, zmq_msg_t *identity);

/* May this pull be answered now? */
typedef bool (*ps_pull_ready_fn)(void *ctx, const ps_pull_t *pull);
/* Answers the pull (or fails it); its frames are closed afterwards. */
typedef void (*ps_pull_answer_fn)(void *ctx, ps_pull_t *pull);

/* Answers and removes every pull that ready() allows; returns how many. */
size_t ps_pending_serve(ps_pending_t *p, ps_pull_ready_fn ready, ps_pull_answer_fn answer,
                        void *ctx);
/* Answers and removes every pull (a rollback fails them all). */
size_t ps_pending_flush(ps_pending_t *p, ps_pull_answer_fn answer, void *ctx);

#endif
