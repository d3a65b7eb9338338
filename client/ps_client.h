/* ps_client.h - the client library (libps_client): the only code that
 * speaks the protocol from the worker side. One DEALER socket per shard,
 * many requests in flight, replies matched by request id, a deadline on
 * every wait, heartbeats on a thread of their own. ps-worker, ps-ctl, the
 * Python package and any program that wants to push and pull use it. Not
 * thread-safe: one thread drives a client (different clients may run on
 * different threads).
 *
 * The installed API: this header includes only ps_err.h, ps_optim_types.h
 * and ps_protocol.h (no ZeroMQ or protobuf headers); `pkg-config --cflags
 * --libs ps-client` builds against it. ABI: libps_client.so.1; a change to
 * the layout of ps_client_opts_t, ps_optim_spec_t or ps_errbuf_t, or to a
 * function's signature, bumps the SONAME. Bindings that lay these structs
 * out themselves (the Python package) check ps_client_sizeof first. */
#ifndef PS_CLIENT_H
#define PS_CLIENT_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include <stddef.h>

#include "ps_err.h"
#include "ps_optim_types.h"
#include "ps_protocol.h"

typedef struct ps_client ps_client_t;

typedef struct {
    const char *job;             /* job name shared by all workers of the job */
    uint32_t rank, world;        /* this worker, and how many there are */
    int max_staleness;           /* 0 BSP, > 0 SSP, -1 ASP */
    int64_t timeout_ms;          /* deadline for each reply */
    volatile sig_atomic_t *stop; /* if not NULL: waits end with PS_EINTR once *stop != 0 */
    int dtype;                   /* PS_DTYPE_F32/F16/BF16: values on the wire */
    int64_t heartbeat_ms;        /* > 0: a thread heartbeats every shard this often */
    int64_t server_timeout_ms;   /* with heartbeats: a shard that answers none for this long
                                  fails the wait at once (0 = never) */
    int retries;                 /* resends of a request whose deadline passed, each
                               waiting twice as long (pushes are deduplicated) */
    /* CURVE (all three Z85, 40 characters) or NULL/"" for plain text: the
     * servers' public key and this client's key pair. */
    const char *curve_server_key, *curve_public_key, *curve_secret_key;
    /* "key=value" lines of the options that define the job (NULL: none):
     * every shard refuses a worker whose lines differ from the job's. */
    const char *fingerprint;
    /* fp16 jobs: the loss scaler's settings (0: no scaler); the shards
     * replay it and hand its state back after a restart or rollback. */
    double loss_scale;
    int64_t loss_scale_window;
    /* if > 0: a file descriptor whose becoming readable ends waits with
     * PS_EINTR, like *stop (a self-pipe a signal handler writes to, e.g.
     * Python's signal.set_wakeup_fd); the client never reads it. */
    int stop_fd;
} ps_client_opts_t;

/* The defaults of every option, as ps-worker has them: timeout_ms 60000,
 * heartbeat_ms 1000, server_timeout_ms 15000, retries 2, F32, BSP, rank 0 of
 * world 1, no CURVE, no fingerprint, no stop. job stays NULL: set it. */
void ps_client_opts_defaults(ps_client_opts_t *opts);

/* sizeof of the API's structs by name ("ps_client_opts_t",
 * "ps_optim_spec_t", "ps_errbuf_t"); 0 for any other name. For bindings
 * that must lay them out exactly as this library was built. */
size_t ps_client_sizeof(const char *type_name);
/* The library's version, "0.1.0". */
const char *ps_client_version(void);

/* The client's log lines (stderr: "TIME PROGNAME[PID] L message"):
 * progname (NULL: keep "ps") and the lowest level written, one of "debug",
 * "info", "notice", "warn", "error" (NULL: keep INFO). PS_EINVAL for
 * another level. Call before any client exists; it sets process-wide
 * state. */
int ps_client_log_init(const char *progname, const char *level);

/* Reads a key file written by ps-keygen (`public KEY`, and in a secret
 * file `secret KEY`) into public_z85 and, if secret_z85 is not NULL, the
 * secret key (the file must then hold one). 41 bytes each, NUL-ended.
 * PS_EIO or PS_EFORMAT with err naming the file. */
int ps_client_load_key(const char *path, char *public_z85, char *secret_z85, ps_errbuf_t *err);

/* Connects to the shards listed in endpoints ("tcp://a:1,tcp://b:2", shard i
 * at position i). Connecting does not wait; ps_client_hello does. NULL with
 * err set on a malformed list. A handshake a shard refuses (our key not on
 * its allow-list, or plain text against CURVE) fails the next wait at once
 * with PS_EAUTH, naming the shard and the reason. */
ps_client_t *ps_client_new(const char *endpoints, const ps_client_opts_t *opts, ps_errbuf_t *err);
/* Closes sockets; NULL-safe, sets *c to NULL. */
void ps_client_destroy(ps_client_t **c);
uint32_t ps_client_n_shards(const ps_client_t *c);
/* Replaces opts.fingerprint (copied) before the first ps_client_hello: a
 * binding that learns what defines its job (a model's tables) after
 * connecting. PS_EINVAL once a HELLO was sent. */
int ps_client_set_fingerprint(ps_client_t *c, const char *fingerprint);

/* The same-host data path (on unless turned off here, before the first
 * ps_client_hello; PS_EINVAL after it): at HELLO the client offers each
 * shard a shared memory region, and a shard on the same host, boot and
 * pid namespace, running as the same user, maps it; dense pushes and
 * pulls to that shard then move their values through the region and send
 * only their headers. Every other shard, and every request that cannot
 * use the region, goes over TCP as before. */
int ps_client_set_same_host(ps_client_t *c, bool on);
/* A pipeline stage (n_stages > 1): the process's rank in the whole world
 * and its stage, sent in every HELLO and shown by the servers' `show
 * workers` (opts.rank is then the replica). Call before the first HELLO;
 * a setter rather than fields of ps_client_opts_t, whose layout is ABI. */
void ps_client_set_stage(ps_client_t *c, uint32_t world_rank, uint32_t stage, uint32_t n_stages);
/* Dense data requests whose values went through a shared region. */
uint64_t ps_client_shm_requests(const ps_client_t *c);
/* Of those, the ones whose header went down the shard's doorbell pipe
 * rather than ZeroMQ (the shard opened it at HELLO: same_host_bell). */
uint64_t ps_client_bell_requests(const ps_client_t *c);

/* Joins (or rejoins) the job on every shard: shard 0 first (it creates the
 * job, with an id, or says which one it holds), then the others with that
 * id, so shards that hold different jobs of one name are refused, naming
 * both. Checks each shard's index and count against the endpoint list.
 * *clock (if not NULL) is set to the clock to resume at: the lowest any
 * shard reports (0 for a new job). Heartbeats start before the first
 * HELLO, so a shard that accepted us keeps us while another is awaited. A
 * rank still held by a live process of another incarnation is retried
 * until it is declared dead or timeout_ms passes. Error (naming the shard)
 * on timeout, version, job or configuration mismatch. Under BSP a rejoin
 * takes back this rank's pushes to rounds still in progress: the caller
 * replays from *clock (as ps_client_recover's callers do). Requests
 * still in flight (after a failed wait) are forgotten first, as by
 * ps_client_reset. */
int ps_client_hello(ps_client_t *c, int64_t *clock, ps_errbuf_t *err);
/* The job's id, as shard 0 gave it (0 before a HELLO). */
uint64_t ps_client_job_id(const ps_client_t *c);
/* fp16 jobs: the loss scaler's state at the clock of the last HELLO or
 * rollback, as the shards keep it; false if they keep none. */
bool ps_client_loss_scale(const ps_client_t *c, double *scale, int64_t *clean, uint64_t *skipped);
/* After PS_EDEAD, PS_ERESTARTED or PS_ESTALE: forgets the requests in
 * flight, HELLOs every shard, and if the shards disagree (a restarted shard
 * came back at an older checkpoint, or a rollback is half done) asks them
 * all to roll back to the newest checkpoint every shard holds (a rollback
 * half done is finished at its own clock). *clock is the clock to resume
 * at; the caller re-pulls its parameters there. PS_ENOCKPT, naming each
 * shard's clock and checkpoints, if no checkpoint is common to all.
 * exact: roll back whenever the shards' clocks differ at all (after a shard
 * restart: the lowest clock is then the restored checkpoint, which every
 * shard holds, and a chunk one round ahead would serve parameters newer
 * than the replayed step's). Otherwise a chunk one round ahead is accepted
 * (it ignores the replayed pushes), so a rejoin needs no checkpoint.
 * A rollback that raced another worker's of the same generation (a shard
 * reports the other's clock) is done again as the next; PS_ESTALE, naming
 * the shard and both clocks, if that keeps happening (4 tries): recover
 * again. */
int ps_client_recover(ps_client_t *c, bool exact, int64_t *clock, ps_errbuf_t *err);
/* Brings every shard of the job to checkpoint clock `to` (forgetting the
 * requests in flight, HELLO, then ROLLBACK as a new generation), unless
 * they are all there already, in one generation. Used where workers of
 * several jobs must resume at one clock (the stages of a pipeline: the
 * lowest any stage's job could recover to). PS_ENOCKPT naming the shard
 * if one holds no checkpoint of that clock. Another rank's rollback to
 * `to`, half done, is finished; raced ones as in ps_client_recover. The
 * caller re-pulls there. */
int ps_client_rollback_to(ps_client_t *c, int64_t to, ps_errbuf_t *err);
/* After ps_client_recover brought the job to clock `at`: the clocks it can
 * be brought to without losing a step it holds, newest first, into
 * out[0..cap): `at` itself, then every older checkpoint clock that every
 * shard held, as their last HELLO or ROLLBACK replies listed (a rollback
 * keeps the checkpoints at or below its clock). Returns how many. */
size_t ps_client_resume_points(const ps_client_t *c, int64_t at, int64_t *out, size_t cap);

/* Stops the heartbeat thread (before BYE, so the counts are final). */
void ps_client_stop_heartbeats(ps_client_t *c);

/* Progress carried by the next heartbeats (shown by the servers' stats
 * socket): samples trained so far and the latest loss. Cheap; any time. */
void ps_client_report(ps_client_t *c, uint64_t samples, double loss);

/* Forgets every request in flight (their late replies are ignored), e.g.
 * after PS_EDEAD before rejoining. When it returns ZeroMQ holds none of
 * the caller's buffers, so they may be freed: a shard's socket that still
 * held one (queued for a shard that is gone, to be sent when it is back)
 * is replaced by a new one, and its queue dropped. The shards then see a
 * new peer: HELLO (ps_client_hello, or ps_client_recover, which resets)
 * before any other request. (What the old socket had already written to
 * a shard that is alive but stalled may still reach it after that
 * HELLO: the shard then counts that push, not the replayed one, for its
 * rank and clock.) */
void ps_client_reset(ps_client_t *c);
/* How many of the caller's buffers (gradients, keys: sent zero-copy)
 * ZeroMQ still reads from. 0 once ps_client_wait returned PS_OK, and once
 * ps_client_reset returned. */
int ps_client_buffers_held(const ps_client_t *c);
/* Defines table id (dense, shape[0..ndim), optimizer spec) on every shard
 * that holds part of it, sending that shard's slice of init. The first
 * worker to define a table wins; later definitions must match in name and
 * size. Waits for every reply. */
int ps_client_init_table(ps_client_t *c, uint32_t id, const char *name, const uint64_t *shape,
                         int ndim, const ps_optim_spec_t *optim, const float *init,
                         ps_errbuf_t *err);

/* Starts PUSH_PULL of table id: grad (whole table, sums over n_samples
 * samples) for clock, and asks for the parameters of clock + 1 into params
 * (whole table). On the wire the values are grad * grad_scale in the
 * client's dtype; the server divides the scale out. grad == NULL with
 * PS_FLAG_SKIP in flags skips this step (fp16 overflow). grad must stay
 * untouched and params unread until ps_client_wait returns. */
int ps_client_push_pull(ps_client_t *c, uint32_t id, int64_t clock, const float *grad,
                        uint64_t n_samples, float grad_scale, uint32_t flags, float *params);
/* Starts PUSH of table id: grad (whole table, sums over n_samples samples)
 * for clock, with no parameters back (SSP/ASP workers that pull less
 * often; under BSP a PULL of clock + 1 waits for the round). grad and
 * grad_scale as for ps_client_push_pull; grad stays untouched until
 * ps_client_wait. PS_ENOTABLE if id is not a dense table of this client,
 * PS_EINVAL for an fp32 push with grad_scale != 1. */
int ps_client_push(ps_client_t *c, uint32_t id, int64_t clock, const float *grad,
                   uint64_t n_samples, float grad_scale, uint32_t flags);
/* Starts PULL of table id at clock into params. flags: PS_FLAG_*. */
int ps_client_pull(ps_client_t *c, uint32_t id, int64_t clock, uint32_t flags, float *params);
/* Waits for every request in flight. PS_OK, or the first error with err
 * naming shard, endpoint, op, table and clock (PS_ETIME after timeout_ms of
 * silence on a request). After an error the client should be destroyed,
 * or reset (ps_client_recover): until then ZeroMQ may still read the
 * buffers of the requests that were in flight, so keep them. */
int ps_client_wait(ps_client_t *c, ps_errbuf_t *err);
/* Waits only until no request for table id is in flight (taking whatever
 * replies come meanwhile, with the same deadlines and errors as
 * ps_client_wait): its params are then written and its grad may be
 * changed (the server has read it; ZeroMQ may still hold the buffer for a
 * moment, so do not free it before ps_client_wait). Lets a worker start on
 * the first tables while later ones are still on the way. */
int ps_client_wait_table(ps_client_t *c, uint32_t id, ps_errbuf_t *err);
/* OR of the flags (PS_FLAG_SKIPPED ...) of the replies collected since the
 * last ps_client_wait began. */
uint32_t ps_client_reply_flags(const ps_client_t *c);
/* Tells every shard this worker pushed its last clock (DONE), or that it
 * leaves (BYE); waits for the replies. BYE waits at most
 * PS_CLIENT_BYE_TIMEOUT_MS (or timeout_ms if shorter): it comes after the
 * model is final, and a shard that misses it ends the job at its TTL. */
#define PS_CLIENT_BYE_TIMEOUT_MS 5000
int ps_client_done(ps_client_t *c, ps_errbuf_t *err);
int ps_client_bye(ps_client_t *c, ps_errbuf_t *err);

/* Defines sparse table id (64-bit keys -> rows of dim floats, made on
 * first touch from (seed, id, key) scaled by init_scale) on every shard;
 * the optimizer is SGD, ADAGRAD or FTRL. Waits for every reply. */
int ps_client_init_sparse(ps_client_t *c, uint32_t id, const char *name, uint32_t dim,
                          const ps_optim_spec_t *optim, double init_scale, uint64_t seed,
                          ps_errbuf_t *err);
/* Starts SPARSE_PULL of the rows of keys[0..n) (distinct) at clock, into
 * rows (n * dim floats, row i for keys[i]). Keys go to their shards
 * (ps_shardmap_key_shard); keys, rows stay untouched until ps_client_wait.
 * flags: PS_FLAG_AFTER_ALL_DONE, PS_FLAG_NO_CREATE (keys never trained
 * read their start value and are not stored: for evaluation). */
int ps_client_sparse_pull(ps_client_t *c, uint32_t id, int64_t clock, uint32_t flags,
                          const uint64_t *keys, uint64_t n, float *rows);
/* Starts SPARSE_PUSH of grads (n * dim floats, row i for keys[i], sums over
 * the batch) for clock. The inputs are copied; may be reused at once. */
int ps_client_sparse_push(ps_client_t *c, uint32_t id, int64_t clock, const uint64_t *keys,
                          uint64_t n, const float *grads);

/* An operator's request to one shard: PS__OP__STATS (*message: the shard's
 * `show info json` document, malloc'd), SAVE or SHUTDOWN (message may be
 * NULL). Needs a monitor or admin key with CURVE; without, STATS and SAVE
 * are served on loopback. Errors name the shard and its reply. */
int ps_client_admin(ps_client_t *c, uint32_t shard, int op, char **message, ps_errbuf_t *err);

/* Bytes this client put on and took off the wire, all frames counted,
 * heartbeats included. Call after ps_client_destroy's thread is joined, or
 * accept that heartbeats in flight may be missing. */
uint64_t ps_client_bytes_sent(const ps_client_t *c);
uint64_t ps_client_bytes_received(const ps_client_t *c);
uint64_t ps_client_requests(const ps_client_t *c);

#endif
