/* ps_client_int.h - the client struct and its request tracker, for the
 * files of client/ only (connections, the in-flight tracker and its one
 * wait loop, heartbeats, dense and sparse ops). Private prefix pscl_. The
 * thread that drives the client owns everything here but the fields
 * marked as shared with the heartbeat thread. */
#ifndef PS_CLIENT_INT_H
#define PS_CLIENT_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ps_client.h"
#include "ps_bell.h"
#include "ps_optim_spec.h"
#include "ps_shm.h"
#include "ps_wire.h"

#define PSCL_MAX_SHARDS 1024
/* Plain-text handshakes a shard may break off (with no detail) in a row
 * before it counts as one that requires CURVE: a shard killed mid-handshake
 * breaks off one. */
#define PSCL_HANDSHAKE_BREAKS 3
/* A HELLO not answered this long is sent again (see hello_shards). */
#define PSCL_HELLO_ATTEMPT_MS 2000

/* A chunk's two slots in its shard's shared region: the values a push
 * leaves there and the values its reply brings. A slot is busy from the
 * send of a request that uses it until the reply to that very request
 * (PS_FLAG_SHM) arrives, so the worker never rewrites what the shard may
 * still read and the shard never writes what the worker is reading; while
 * busy, other requests of the chunk go over TCP. */
typedef struct {
    uint64_t push_off, pull_off;   /* byte offsets in the region; 0: none */
    uint64_t push_busy, pull_busy; /* the request id holding the slot, 0: free */
} pscl_slot_t;

typedef struct {
    char name[64];
    uint64_t n_elems;   /* dense: the whole table; sparse: floats per row */
    int defined;        /* 0 no, 1 dense, 2 sparse */
    uint16_t *wire;     /* n_elems half values being sent (F16/BF16 clients) */
    pscl_slot_t *slots; /* per chunk, made at its first request on a shared region */
    uint32_t n_slots;
} pscl_table_t;

/* The same-host path to one shard (ps_client_shm.c). */
typedef struct {
    int fd;               /* the region's memfd, -1 if none */
    void *base;           /* its mapping here */
    uint64_t bytes, used; /* slots are cut from [PS_SHM_HEADER_BYTES, used) */
    uint64_t nonce;       /* in the region's header and the offer */
    bool accepted;        /* the shard's last HELLO reply mapped it */
    bool answered;        /* a HELLO reply came (its verdict was logged) */
    /* The doorbell (ps_bell.h): requests go down bell[1], replies come up
     * answer_fd. Both ends of the request pipe stay open here, so a write
     * never raises SIGPIPE when the shard is gone (the pipe fills, the
     * header goes over ZeroMQ). The reply pipe's only writer is the shard
     * (it opens answer_fd for writing): end-of-file on it says the shard
     * let go of the doorbell (it closed it, or died). */
    int bell[2], answer_fd; /* -1: none */
    bool bell_on;           /* the shard's last HELLO reply opened them */
    ps_bell_reader_t reader;
} pscl_shm_t;

/* One request waiting for its reply. */
typedef struct {
    uint64_t request_id;
    uint32_t shard;
    uint32_t table_id;
    uint32_t chunk;
    int op;
    int64_t clock;
    float *dst; /* where the reply's values go (NULL: none expected) */
    uint64_t offset, len;
    int64_t deadline_ms;
    int64_t waited_ms; /* over all attempts so far */
    int attempts;
    bool rung; /* the first attempt went down the shard's doorbell */
    /* what a resend needs (never for HELLO or INIT_TABLE) */
    uint32_t flags;
    uint64_t n_samples;
    double grad_scale;
    const void *values;
    uint64_t n_values;
    /* sparse ops: the keys frame, and where the reply's rows go */
    const uint64_t *keys;
    const uint64_t *scatter; /* row i of the reply -> dst + scatter[i] * dim */
    uint32_t dim;
} pscl_inflight_t;

/* What the last HELLO, ROLLBACK or admin reply of a shard said. */
typedef struct {
    int status;
    char text[512]; /* the reply's message on an error */
    uint32_t shard, n_shards, flags;
    int64_t clock, max_clock, rollback_clock;
    uint64_t generation, incarnation, job_id;
    int64_t *checkpoints; /* HELLO, ROLLBACK: this shard's checkpoint clocks, malloc'd */
    size_t n_checkpoints;
    double loss_scale;
    uint64_t scale_window, scale_good, scale_skipped;
    char *message;         /* admin replies (STATS): the document, malloc'd */
    char shm_refused[256]; /* HELLO: why the shard did not map our region */
} pscl_answer_t;

/* A sparse request's keys grouped by shard: shard s's keys are
 * keys[off[s] .. off[s+1]), pos[] their positions in the caller's array,
 * vals[] (push) their gradient rows in the same order. Each sparse op in
 * flight has its own (its frames are sent zero-copy from it, and a pull's
 * replies are scattered through its pos[]); all are in use until
 * ps_client_wait returns or the client is reset, then reused. */
typedef struct {
    uint64_t *keys, *pos;
    float *vals;
    uint64_t *off;
    size_t cap, vcap;
} pscl_stage_t;

struct ps_client {
    ps_client_opts_t opts;
    uint32_t world_rank, stage, n_stages; /* ps_client_set_stage; n_stages 0: not a stage */
    char job[64];
    void *ctx;
    void **socks;
    void **monitors; /* per shard: PAIR receiving that socket's handshake failures */
    char **endpoints;
    char curve_server[41], curve_public[41], curve_secret[41];
    uint32_t n_shards;
    pscl_table_t *tables;
    uint32_t n_tables;
    pscl_inflight_t *inflight;
    size_t n_inflight, cap_inflight;
    pscl_answer_t *answers; /* per shard */
    uint64_t next_id;
    /* per shard: the caller's buffers ZeroMQ still holds (sent zero-copy,
     * not yet let go); fixed, since its I/O threads count them back */
    atomic_int zero_copy_held[PSCL_MAX_SHARDS];
    uint64_t bytes_sent, bytes_received, requests;
    uint32_t reply_flags;
    uint64_t generation; /* sent with every request */
    /* tests: runs after a recovery's HELLOs, before its ROLLBACKs (where
     * another worker's rollback can race ours) */
    void (*before_rollback)(ps_client_t *c, void *arg);
    void *before_rollback_arg;
    uint64_t job_id;             /* the job's id, from shard 0's HELLO */
    uint64_t worker_incarnation; /* this process's, sent with every request */
    char *fingerprint;           /* opts.fingerprint's copy */
    bool joining;                /* HELLOs in flight: a restarted shard is expected */
    bool said_hello;             /* a HELLO went out (the fingerprint is fixed) */
    int64_t *min_clock, *max_clock;
    uint64_t *shard_generation;
    uint32_t *handshake_breaks; /* per shard: handshakes broken off since its last reply */
    pscl_stage_t *stages;       /* [0, n_stages_used) belong to sparse ops in flight */
    size_t n_stages_used, cap_stages;
    int64_t last_log_ms;    /* the wait loop's last "still waiting" line */
    bool shm_off;           /* ps_client_set_same_host(c, false): TCP only */
    pscl_shm_t *shm;        /* per shard */
    ps_shm_host_t shm_host; /* what the offers say of this host (their strings point here) */
    uint64_t shm_requests;  /* data requests whose values went through a region */
    uint64_t bell_requests; /* ... whose header went down a doorbell */
    /* shared with the heartbeat thread */
    pthread_t heartbeat_thread;
    int has_heartbeat;
    atomic_int heartbeat_stop;
    _Atomic uint64_t *incarnation;  /* per shard, from the last HELLO */
    _Atomic int64_t *last_reply_ms; /* per shard: last heartbeat reply */
    atomic_int restarted;           /* 1 + index of a shard seen restarted, or 0 */
    _Atomic uint64_t report_samples, report_loss_bits;
    _Atomic uint64_t hb_bytes_sent, hb_bytes_received;
};

/* ---- connections (ps_conn.c) ---- */

/* A DEALER to ep, with CURVE if the client has keys; NULL if ep is bad. */
void *pscl_open_socket(ps_client_t *c, const char *ep);
/* Adds shard n_shards at ep (socket and handshake monitor). */
int pscl_add_shard(ps_client_t *c, const char *ep, ps_errbuf_t *err);
/* Reads shard s's failed handshakes: PS_EAUTH with the reason if there was
 * one, else PS_OK. */
int pscl_handshake_failure(ps_client_t *c, uint32_t s, ps_errbuf_t *err);
/* Closes every socket and monitor. */
void pscl_close_shards(ps_client_t *c);
/* Closes shard s's socket and opens a new one to the same endpoint: what
 * ZeroMQ still queued on the old one (for a peer gone, until it is back)
 * is dropped, and with it the caller's buffers. The shard sees a new peer
 * and must be sent a HELLO. False when the new socket cannot be made
 * (the old one is then kept). */
bool pscl_reopen_shard(ps_client_t *c, uint32_t s);
/* How many of the caller's buffers ZeroMQ holds, over every shard. */
int pscl_zero_copy_held(const ps_client_t *c);

/* ---- requests (ps_inflight.c) ---- */

void pscl_header_init(ps_client_t *c, Ps__Header *h, int op);
/* *opts.stop set, or opts.stop_fd readable (or hung up). */
bool pscl_stop_requested(const ps_client_t *c);
/* Sends the frames of a request (header, keys, values; keys and values
 * zero-copy) and tracks it; values/dst as in pscl_inflight_t. Returns the
 * tracked entry, or NULL with *rc set if the send failed. */
pscl_inflight_t *pscl_send(ps_client_t *c, uint32_t shard, Ps__Header *h, const uint64_t *keys,
                           const void *values, uint64_t n_values, float *dst, uint64_t dst_offset,
                           uint64_t dst_len, int *rc);
/* The one wait loop: takes replies (of any table, as they come) until no
 * request for table (PSCL_ALL_TABLES: any) is in flight; resends requests
 * whose deadline passed, fails on a silent shard, a refused handshake, a
 * restarted shard or a stop request. */
#define PSCL_ALL_TABLES UINT32_MAX
int pscl_wait(ps_client_t *c, uint32_t table, ps_errbuf_t *err);
/* Sends op (no values) to every shard and waits for every reply. */
int pscl_broadcast(ps_client_t *c, int op, ps_errbuf_t *err);
pscl_table_t *pscl_table(ps_client_t *c, uint32_t id);

/* ---- the same-host path (ps_client_shm.c) ---- */

/* Puts shard s's region offer into HELLO header h (o is its storage),
 * making the region at the first call; nothing if the path is off or no
 * region can be made (logged once). */
void pscl_shm_offer(ps_client_t *c, uint32_t s, Ps__Header *h, Ps__ShmOffer *o);
/* Takes shard s's HELLO answer: whether it mapped the region (a refusal
 * is logged once with the shard's reason). A shard of a new incarnation
 * is a new process: every slot busy with its predecessor is free. */
void pscl_shm_take_hello(ps_client_t *c, uint32_t s, uint32_t flags, const char *refused,
                         bool new_incarnation);
/* Moves data request h (chunk of table t, values n elements or NULL,
 * with_reply: it expects values back) onto shard s's region if both of
 * the chunk's slots it needs are free: the values are copied into the
 * push slot, PS_FLAG_SHM and the offsets set in h, the slots marked busy
 * with h's request id. Otherwise h is left as it is (TCP). */
void pscl_shm_prepare(ps_client_t *c, uint32_t s, pscl_table_t *t, Ps__Header *h,
                      const void *values, uint64_t n, bool with_reply);
/* The values a PS_FLAG_SHM_VALUES reply h (to request f) left in the
 * region, or NULL if the reply's slot is not the one f holds. */
const void *pscl_shm_reply_values(ps_client_t *c, const pscl_inflight_t *f, const Ps__Header *h);
/* Reply h from shard s answers a request that used the region: frees the
 * slots that request held (a late reply too). */
void pscl_shm_release(ps_client_t *c, const Ps__Header *h);
/* Sends request header h to shard s down its doorbell if h uses the
 * region (PS_FLAG_SHM) and carries no frames after it: true if it went,
 * false (nothing sent: no doorbell, pipe full) to send it over ZeroMQ. */
bool pscl_bell_send(ps_client_t *c, uint32_t s, const Ps__Header *h, bool more_frames);
/* Shard s's doorbell is done with: the shard let go of it (end-of-file
 * on the reply pipe), or, ours, garbage came up it and we close both
 * pipes (the shard then reads end-of-file; new ones are offered at the
 * next HELLO). What was rung and not read is taken back (its slots
 * freed); no header goes down it until a HELLO reply opens it again. */
void pscl_bell_gone(ps_client_t *c, uint32_t s, bool ours);
/* The doorbells pscl_wait polls: appends an item per shard with one (at
 * most max) and the shard to shards; returns how many. */
int pscl_bell_items(ps_client_t *c, zmq_pollitem_t *items, uint32_t *shards, int max);
/* Does shard s's doorbell reader hold a whole reply not yet taken (a
 * take that stopped at an error reply leaves the rest there)? */
bool pscl_bell_pending(const ps_client_t *c, uint32_t s);
/* Unmaps and closes every region and doorbell. */
void pscl_shm_close(ps_client_t *c);

/* ---- heartbeats (ps_heartbeat.c) ---- */

/* Starts the heartbeat thread (once). */
int pscl_start_heartbeats(ps_client_t *c, ps_errbuf_t *err);

#endif
