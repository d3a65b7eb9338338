/* ps_pipe.h - the links between the stages of one pipeline replica
 * (pipeline_stages): activations forward, their gradients back, over
 * ZeroMQ PUSH/PULL (or, between plain-text stages on one host, FIFOs), found
 * through a rendezvous directory, CURVE when the job uses it. Every wait
 * has a deadline whose error names the peer.
 * Worker main thread only. */
#ifndef PS_PIPE_H
#define PS_PIPE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps_err.h"

typedef struct ps_pipe ps_pipe_t;

typedef struct {
    const char *dir;  /* rendezvous: every worker of the job reads and writes here */
    const char *job;  /* the job's name: files JOB.rank<R> */
    const char *bind; /* address to bind and publish (127.0.0.1) */
    uint32_t rank;    /* this worker's rank in the whole world */
    uint32_t stage, n_stages, replica;
    int64_t timeout_ms; /* every wait for a peer (its file, a message, a send) */
    volatile sig_atomic_t *stop;
    /* CURVE: this worker's key pair; NULL: plain text (loopback only) */
    const char *curve_public, *curve_secret;
    /* plain text only: a neighbour on this host (same boot, pid namespace
     * and user) is sent to through a FIFO in dir instead of ZeroMQ (a
     * hand-over then costs one wake-up, not ZeroMQ's chain of threads) */
    bool same_host;
    /* a step's messages each way (its micro-batches) and the largest one's
     * values to the stage after and to the one before: a link takes a FIFO
     * only if a whole step of them fits in it, counted in the kernel's
     * pages, so a send never waits for its receiver to read */
    uint32_t step_messages;
    uint64_t message_bytes_to_next, message_bytes_to_prev;
} ps_pipe_opts_t;

typedef enum {
    PS_PIPE_FWD = 1,   /* activations of a micro-batch, to the next stage */
    PS_PIPE_BWD = 2,   /* their gradient, to the stage before */
    PS_PIPE_SAVED = 3, /* the stages after have written their tables (to the one before) */
    /* a sync round (worker/ps_trainer_sync.c): where the stages resume */
    PS_PIPE_ABORT = 4,    /* a stage is recovering: drop the step in hand (either way) */
    PS_PIPE_SYNC_UP = 5,  /* the clocks every stage up to the sender can resume at, on */
    PS_PIPE_SYNC_DOWN = 6 /* the clock every stage resumes at, to the stage before */
} ps_pipe_kind_t;

/* A message's header; its floats travel in a second frame. */
typedef struct {
    uint32_t kind;  /* ps_pipe_kind_t */
    uint32_t micro; /* the sync messages: the round */
    int64_t clock;
    uint64_t n_samples; /* the sync messages: PS_PIPE_RECOVERING if a stage recovers */
    double loss;        /* BWD: the summed loss of the micro-batch (the last stage's) */
} ps_pipe_msg_t;

#define PS_PIPE_RECOVERING 1u

/* Binds this stage's sockets (one for what comes from the stage before,
 * one for what comes from the stage after), publishes their endpoints (and
 * CURVE public key) as DIR/JOB.rank<R> (temp file, rename), waits for the
 * neighbours' files and connects to them. NULL with err naming the file,
 * peer or address: a bind that fails, a plain-text bind off loopback, a
 * neighbour whose file did not appear within timeout_ms. opts is copied. */
ps_pipe_t *ps_pipe_new(const ps_pipe_opts_t *opts, ps_errbuf_t *err);
/* Closes the sockets (waiting at most timeout_ms for queued messages to
 * leave) and removes this worker's file. NULL-safe; sets *pipe_p to NULL. */
void ps_pipe_destroy(ps_pipe_t **pipe_p);

/* Sends m and n_floats floats (copied) to the next stage (FWD, SYNC_UP) or
 * the one before (BWD, SAVED, SYNC_DOWN). PS_ETIME naming the peer if it takes no message
 * within timeout_ms (gone, or its queue full); PS_EINTR if *stop. */
int ps_pipe_send(ps_pipe_t *p, const ps_pipe_msg_t *m, const float *data, size_t n_floats,
                 ps_errbuf_t *err);
/* Receives the message of kind want->kind (FWD from the stage before; BWD
 * and SAVED from the one after) and checks it is the one expected: clock,
 * micro-batch, and exactly n_floats floats into data (the header's
 * n_samples and loss into *got). PS_ETIME naming this stage, the peer's
 * stage, rank and endpoint and what was awaited; PS_EPROTO if the peer sent
 * another message (the stages are out of step); PS_EINTR if *stop. */
int ps_pipe_recv(ps_pipe_t *p, const ps_pipe_msg_t *want, float *data, size_t n_floats,
                 ps_pipe_msg_t *got, ps_errbuf_t *err);
/* A sync round (ps_trainer_sync.c). ps_pipe_recv, awaiting activations or
 * gradients, that meets an ABORT of a round after the last one begun
 * returns PS_ESTALE ("stage N is recovering") and remembers the round and
 * side: the stage then begins that round too. */
/* Begins sync round `round` here; notify (a recovery, not the barrier at
 * the end): ABORT to every neighbour that has not told us of this round
 * itself. Errors as ps_pipe_send. */
int ps_pipe_begin_round(ps_pipe_t *p, uint32_t round, bool notify, ps_errbuf_t *err);
/* The round a neighbour's ABORT announced (0: none beyond those begun). */
uint32_t ps_pipe_announced_round(const ps_pipe_t *p);
/* Sends the SYNC_UP (to the next stage) or SYNC_DOWN (to the one before)
 * m with clocks[0..n) as its values. Errors as ps_pipe_send. */
int ps_pipe_sync_send(ps_pipe_t *p, const ps_pipe_msg_t *m, const int64_t *clocks, size_t n,
                      ps_errbuf_t *err);
/* Waits up to timeout_ms for the SYNC_UP (from the stage before) or
 * SYNC_DOWN (from the one after) of round want->micro, dropping what the
 * abandoned step left in the queue (activations, gradients, ABORTs of
 * this round or older); its clocks (at most cap) into clocks, *n of them.
 * PS_ETIME naming the peer; PS_EPROTO for a sync message of another round
 * or more than cap clocks. */
int ps_pipe_sync_recv(ps_pipe_t *p, const ps_pipe_msg_t *want, int64_t timeout_ms,
                      ps_pipe_msg_t *got, int64_t *clocks, size_t cap, size_t *n, ps_errbuf_t *err);
/* Time blocked in sends and receives so far (the pipeline's bubble). */
int64_t ps_pipe_wait_ns(const ps_pipe_t *p);
/* How this stage sends to its neighbour before (to_next false) or after:
 * "fifo", "zeromq", or "none" (no such neighbour). */
const char *ps_pipe_transport(const ps_pipe_t *p, bool to_next);

#endif
