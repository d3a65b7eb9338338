/* ps_replica.c - see ps_replica.h. The sender runs on its own thread with
 * its own sockets; the fetch runs on the loop thread before it serves. */
#include "ps_replica.h"

#include <pthread.h>
#include <stdatomic.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zmq.h>

#include "ps_checkpoint.h"
#include "ps_job.h"
#include "ps_log.h"
#include "ps_name.h"
#include "ps_time.h"
#include "ps_wire.h"

#define QUEUE_MAX 64
#define ACKED_MAX 64
#define CHAIN_MAX 1000
#define REFUSED_RETRIES 3
#define PENDING_MAX 16   /* drops awaiting one holder's acknowledgement */
#define CONTROL_TRIES 10 /* a drop is given up after this many tries */
#define RETRY_MS 1000    /* between a pending drop's tries */

int psrv_replica_config(const ps_server_config_t *cfg, psrv_replica_cfg_t *out, ps_errbuf_t *err)
{
    memset(out, 0, sizeof *out);
    snprintf(out->state_dir, sizeof out->state_dir, "%s", cfg->state_dir);
    out->shard = (uint32_t)cfg->shard;
    out->n_shards = (uint32_t)cfg->shards;
    out->keep = (int)cfg->checkpoint_keep;
    out->timeout_ms = cfg->replica_timeout_ms;
    out->max_inflight_bytes = (size_t)cfg->replica_inflight_mb << 20;
    if (!*cfg->peers || !*cfg->state_dir || cfg->shards < 2)
        return PS_OK;
    uint32_t n = (uint32_t)cfg->checkpoint_replicas;
    if (n > out->n_shards - 1)
        n = out->n_shards - 1;
    char list[PS_OPT_STR_MAX];
    snprintf(list, sizeof list, "%s", cfg->peers);
    char *endpoints[1024], *save = NULL;
    uint32_t n_ep = 0;
    for (char *tok = strtok_r(list, ",", &save); tok && n_ep < 1024;
         tok = strtok_r(NULL, ",", &save))
        endpoints[n_ep++] = tok;
    if (n_ep != out->n_shards)
        return ps_err_set(err, PS_EINVAL, "peers lists %u endpoints; shards is %u", n_ep,
                          out->n_shards);
    for (uint32_t i = 0; i < n; i++) {
        out->holder[i] = (out->shard + 1 + i) % out->n_shards;
        snprintf(out->endpoint[i], sizeof out->endpoint[i], "%s", endpoints[out->holder[i]]);
    }
    out->n_holders = n;
    if (!*cfg->curve_secret_file)
        return PS_OK;
    out->curve = true;
    int rc = ps_curve_load(cfg->curve_secret_file, true, &out->keys, err);
    if (rc != PS_OK)
        return rc;
    snprintf(out->server_key, sizeof out->server_key, "%s", out->keys.public_z85);
    if (*cfg->peer_key_file) {
        ps_curve_keys_t peer;
        if ((rc = ps_curve_load(cfg->peer_key_file, false, &peer, err)) != PS_OK)
            return rc;
        snprintf(out->server_key, sizeof out->server_key, "%s", peer.public_z85);
    }
    return PS_OK;
}

void psrv_replica_dir(const char *state_dir, uint32_t owner, char *out, size_t cap)
{
    snprintf(out, cap, "%s/.replicas/shard-%u", state_dir, owner);
}

/* A request header of op about job (NULL: none) of shard `shard` of n_shards. */
static Ps__Header replica_header(int op, const char *job, uint64_t job_id, uint32_t shard,
                                 uint32_t n_shards)
{
    Ps__Header h = PS__HEADER__INIT;
    h.version = PS_PROTOCOL_VERSION;
    h.op = op;
    h.job = job ? (char *)job : (char *)"";
    h.job_id = job_id;
    h.shard = shard;
    h.n_shards = n_shards;
    return h;
}

/* ---- one request and its reply, with a deadline ---- */

/* A DEALER to endpoint (CURVE if the shards use it). NULL if it cannot be
 * made (why says so). */
static void *open_peer(void *ctx, const psrv_replica_cfg_t *cfg, const char *endpoint, char *why,
                       size_t cap)
{
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0, send_ms = (int)cfg->timeout_ms;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &send_ms, sizeof send_ms); /* a full pipe never blocks us */
    ps_errbuf_t err;
    if (cfg->curve && ps_curve_client_socket(s, cfg->server_key, cfg->keys.public_z85,
                                             cfg->keys.secret_z85, &err) != PS_OK) {
        snprintf(why, cap, "%s", err.msg);
        zmq_close(s);
        return NULL;
    }
    if (zmq_connect(s, endpoint) != 0) {
        snprintf(why, cap, "cannot connect to '%s': %s", endpoint, zmq_strerror(zmq_errno()));
        zmq_close(s);
        return NULL;
    }
    return s;
}

static void free_bytes(void *data, void *hint)
{
    (void)hint;
    free(data);
}

/* Sends h (and bytes, owned from here on, if not NULL) and waits until
 * deadline_ms for the reply to h->request_id: PS_OK with *reply set (the
 * caller closes it), PS_ETIME, PS_EINTR (*cancel was set: the wait is cut
 * into slices of 50 ms to look at it), or PS_ENET; why says what happened. */
static int call_peer(void *s, const Ps__Header *h, void *bytes, size_t len, int64_t deadline_ms,
                     const atomic_bool *cancel, ps_wire_msg_t *reply, char *why, size_t cap)
{
    if (ps_wire_send_header(s, h, bytes ? ZMQ_SNDMORE : 0) < 0) {
        free(bytes);
        snprintf(why, cap, "cannot send %s: %s", ps_op_name(h->op), zmq_strerror(zmq_errno()));
        return PS_ENET;
    }
    if (bytes) {
        zmq_msg_t m;
        zmq_msg_init_data(&m, bytes, len, free_bytes, NULL);
        if (ps_wire_send_msg(s, &m, 0) < 0) {
            snprintf(why, cap, "cannot send %s: %s", ps_op_name(h->op), zmq_strerror(zmq_errno()));
            return PS_ENET;
        }
    }
    for (;;) {
        int64_t left = deadline_ms - ps_time_ms();
        zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
        if (cancel && atomic_load(cancel)) {
            snprintf(why, cap, "%s given up: stopping", ps_op_name(h->op));
            return PS_EINTR;
        }
        if (left <= 0) {
            snprintf(why, cap, "no answer to %s within %s", ps_op_name(h->op),
                     "replica_timeout_ms");
            return PS_ETIME;
        }
        if (zmq_poll(&it, 1, (long)(left < 50 ? left : 50)) <= 0 || !(it.revents & ZMQ_POLLIN))
            continue; /* a slice passed, or EINTR */
        if (ps_wire_recv(s, reply, 0) != PS_OK || reply->n_parts < 1) {
            ps_wire_msg_close(reply);
            continue;
        }
        Ps__Header *r = ps_wire_unpack_header(&reply->parts[0]);
        bool ours = r && r->request_id == h->request_id;
        if (r)
            ps__header__free_unpacked(r, NULL);
        if (ours)
            return PS_OK;
        ps_wire_msg_close(reply); /* a late answer to a request given up on */
    }
}

/* ---- the sender thread ---- */

typedef enum {
    E_FILE,     /* the checkpoint at clock was written */
    E_DROP,     /* the job (job_id) ended: its replicas go */
    E_ROLLBACK, /* the job was rolled back to clock as generation: later replicas go */
} kind_t;

typedef struct {
    kind_t kind;
    char job[PS_JOB_NAME_MAX];
    uint64_t job_id, generation;
    int64_t clock;
    size_t bytes;
} entry_t;

typedef struct {
    char job[PS_JOB_NAME_MAX]; /* "": forgotten */
    int64_t clock;
    uint32_t crc;
} acked_t;

/* A DROP not yet acknowledged by a holder: tried again until it is, up to
 * CONTROL_TRIES times; no file goes to that holder before it. */
typedef struct {
    entry_t e;
    int tries;
} pending_t;

typedef struct {
    void *sock; /* the thread's; NULL until needed, or after a timeout */
    acked_t acked[ACKED_MAX];
    uint32_t n_acked; /* a ring: the newest ACKED_MAX */
    bool down;        /* the last request failed: logged once until one works */
    pending_t pending[PENDING_MAX];
    uint32_t n_pending;
    int64_t next_try_ms; /* when the pending DROPs are tried again */
} holder_t;

struct psrv_replicator {
    psrv_replica_cfg_t cfg;
    void *ctx;
    pthread_t thread;
    pthread_mutex_t lock; /* guards everything below, and holders' acked rings */
    pthread_cond_t wake;
    bool stop;
    atomic_bool cancel; /* set with stop: a wait for a holder ends early */
    entry_t queue[QUEUE_MAX];
    uint32_t head, n;
    size_t queued_bytes, sending_bytes;
    uint64_t seq;
    holder_t holders[PSRV_REPLICA_MAX];
    psrv_replica_status_t st;
};

static bool is_acked(psrv_replicator_t *r, uint32_t i, const char *job, int64_t clock, uint32_t crc)
{
    const holder_t *h = &r->holders[i];
    uint32_t n = h->n_acked < ACKED_MAX ? h->n_acked : ACKED_MAX;
    for (uint32_t k = 0; k < n; k++)
        if (h->acked[k].clock == clock && h->acked[k].crc == crc && !strcmp(h->acked[k].job, job))
            return true;
    return false;
}

/* Forgets holder i's acknowledgements of job's files after clock (-1:
 * all): the holder no longer has them, or said it lacks one. */
static void forget_acked(psrv_replicator_t *r, uint32_t i, const char *job, int64_t after)
{
    holder_t *h = &r->holders[i];
    pthread_mutex_lock(&r->lock);
    for (uint32_t k = 0; k < ACKED_MAX; k++)
        if (h->acked[k].clock > after && !strcmp(h->acked[k].job, job))
            h->acked[k].job[0] = 0;
    pthread_mutex_unlock(&r->lock);
}

bool psrv_replicator_acked(psrv_replicator_t *r, uint32_t i, const char *job, int64_t clock,
                           uint32_t crc)
{
    if (!r || i >= r->cfg.n_holders)
        return false;
    pthread_mutex_lock(&r->lock);
    bool yes = is_acked(r, i, job, clock, crc);
    pthread_mutex_unlock(&r->lock);
    return yes;
}

static void note_trouble(psrv_replicator_t *r, uint32_t i, const char *what, const char *why)
{
    holder_t *h = &r->holders[i];
    pthread_mutex_lock(&r->lock);
    snprintf(r->st.last_error[i], sizeof r->st.last_error[i], "%s: %.200s", what, why);
    pthread_mutex_unlock(&r->lock);
    if (!h->down)
        ps_log(PS_LOG_WARN, "shard %u: replica holder shard %u ('%s'): %s: %s (training goes on)",
               r->cfg.shard, r->cfg.holder[i], r->cfg.endpoint[i], what, why);
    h->down = true;
}

static void note_up(psrv_replicator_t *r, uint32_t i)
{
    holder_t *h = &r->holders[i];
    if (h->down)
        ps_log(PS_LOG_NOTICE, "shard %u: replica holder shard %u ('%s') acknowledges again",
               r->cfg.shard, r->cfg.holder[i], r->cfg.endpoint[i]);
    h->down = false;
}

static void note_acked(psrv_replicator_t *r, uint32_t i, const char *job, int64_t clock,
                       uint32_t crc, size_t len)
{
    holder_t *h = &r->holders[i];
    pthread_mutex_lock(&r->lock);
    acked_t *a = &h->acked[h->n_acked++ % ACKED_MAX];
    snprintf(a->job, sizeof a->job, "%s", job);
    a->clock = clock;
    a->crc = crc;
    r->st.files_acked++;
    r->st.bytes_acked += len;
    r->st.last_ack_ms[i] = ps_time_ms();
    r->st.last_error[i][0] = 0;
    pthread_mutex_unlock(&r->lock);
    note_up(r, i);
}

/* One request to holder i: PS_OK with the reply's status in *status (and
 * its message in why), or the transport's failure (the socket is then
 * closed, so a late answer cannot be taken for the next one's). */
static int ask_holder(psrv_replicator_t *r, uint32_t i, Ps__Header *h, void *bytes, size_t len,
                      int *status, char *why, size_t cap)
{
    holder_t *hd = &r->holders[i];
    if (!hd->sock && !(hd->sock = open_peer(r->ctx, &r->cfg, r->cfg.endpoint[i], why, cap))) {
        free(bytes);
        return PS_ENET;
    }
    h->request_id = ++r->seq;
    ps_wire_msg_t reply = {0};
    int rc = call_peer(hd->sock, h, bytes, len, ps_time_ms() + r->cfg.timeout_ms, &r->cancel,
                       &reply, why, cap);
    if (rc != PS_OK) {
        zmq_close(hd->sock);
        hd->sock = NULL;
        return rc;
    }
    Ps__Header *rh = ps_wire_unpack_header(&reply.parts[0]);
    *status = rh->status;
    snprintf(why, cap, "%s", rh->message && *rh->message ? rh->message : ps_strerror(rh->status));
    ps__header__free_unpacked(rh, NULL);
    ps_wire_msg_close(&reply);
    return PS_OK;
}

/* Sends job's file at clock to holder i until it is acknowledged, refused
 * REFUSED_RETRIES times (its CRC failed on arrival each time: re-sent), or
 * the holder fails. PS_OK if acknowledged, PS_ENOCKPT if the holder lacks
 * the file's base (the chain must go again from its full file), else the
 * failure. */
static int send_file(psrv_replicator_t *r, uint32_t i, const entry_t *e, int64_t clock)
{
    char why[512];
    for (int attempt = 0; attempt < REFUSED_RETRIES; attempt++) {
        void *bytes;
        size_t len;
        ps_errbuf_t err;
        if (ps_ckpt_read_file(r->cfg.state_dir, e->job, clock, &bytes, &len, &err) != PS_OK) {
            note_trouble(r, i, "cannot send a checkpoint", err.msg);
            return err.code;
        }
        uint32_t payload_crc = 0, base_crc;
        int64_t base;
        ps_ckpt_file_head(r->cfg.state_dir, e->job, clock, &payload_crc, &base, &base_crc);
        Ps__Header h =
            replica_header(PS__OP__REPLICA_PUT, e->job, e->job_id, r->cfg.shard, r->cfg.n_shards);
        h.clock = clock;
        h.n_elems = len;
        h.crc = (uint32_t)crc32(crc32(0, NULL, 0), bytes, (uInt)len);
        int status = PS_OK, rc = ask_holder(r, i, &h, bytes, len, &status, why, sizeof why);
        if (rc != PS_OK) {
            pthread_mutex_lock(&r->lock);
            r->st.files_failed++;
            pthread_mutex_unlock(&r->lock);
            note_trouble(r, i, "replica not acknowledged", why);
            return rc;
        }
        if (status == PS_OK) {
            note_acked(r, i, e->job, clock, payload_crc, len);
            return PS_OK;
        }
        pthread_mutex_lock(&r->lock);
        r->st.files_refused++;
        pthread_mutex_unlock(&r->lock);
        if (status != PS_EFORMAT) { /* a full disk, a missing base: the same bytes will not do */
            note_trouble(r, i, "replica refused", why);
            return status;
        }
        ps_log(PS_LOG_WARN,
               "shard %u: replica holder shard %u refused job '%s' clock %lld: %s; "
               "sending it again",
               r->cfg.shard, r->cfg.holder[i], e->job, (long long)clock, why);
    }
    note_trouble(r, i, "replica refused every time", why);
    return PS_EFORMAT;
}

/* The files of e's chain holder i has not acknowledged into chain, newest
 * first; returns how many. */
static int unacked_chain(psrv_replicator_t *r, uint32_t i, const entry_t *e, int64_t *chain)
{
    int n = 0;
    for (int64_t c = e->clock; c >= 0 && n < CHAIN_MAX;) {
        uint32_t crc, base_crc;
        int64_t base;
        if (!ps_ckpt_file_head(r->cfg.state_dir, e->job, c, &crc, &base, &base_crc))
            break; /* pruned meanwhile: a newer file is queued */
        pthread_mutex_lock(&r->lock);
        bool done = is_acked(r, i, e->job, c, crc);
        pthread_mutex_unlock(&r->lock);
        if (done)
            break;
        chain[n++] = c;
        c = base;
    }
    return n;
}

/* Sends e's file to holder i, preceded by the files of its chain the
 * holder has not acknowledged (oldest first: a delta is stored only on
 * top of its base). A holder that says it lacks a base (its files were
 * lost or pruned since it acknowledged them) gets the whole chain again,
 * once, from its full file. */
static void send_chain(psrv_replicator_t *r, uint32_t i, const entry_t *e)
{
    int64_t chain[CHAIN_MAX];
    for (int round = 0; round < 2; round++) {
        int rc = PS_OK;
        for (int k = unacked_chain(r, i, e, chain) - 1; k >= 0 && rc == PS_OK; k--)
            rc = send_file(r, i, e, chain[k]);
        if (rc != PS_ENOCKPT)
            return;
        forget_acked(r, i, e->job, -1);
        ps_log(PS_LOG_WARN,
               "shard %u: replica holder shard %u lacks a base of job '%s' clock %lld: "
               "sending the chain again from its full file",
               r->cfg.shard, r->cfg.holder[i], e->job, (long long)e->clock);
    }
}

/* Sends the DROP of e (an ended job, or a rollback) to holder i; true
 * once acknowledged. */
static bool send_control(psrv_replicator_t *r, uint32_t i, const entry_t *e)
{
    Ps__Header h =
        replica_header(PS__OP__REPLICA_DROP, e->job, e->job_id, r->cfg.shard, r->cfg.n_shards);
    if (e->kind == E_ROLLBACK) {
        h.clock = e->clock;
        h.generation = e->generation;
    }
    char why[512];
    int status = PS_OK;
    int rc = ask_holder(r, i, &h, NULL, 0, &status, why, sizeof why);
    if (rc == PS_OK && status == PS_OK) {
        forget_acked(r, i, e->job, e->kind == E_ROLLBACK ? e->clock : -1);
        pthread_mutex_lock(&r->lock);
        r->st.drops_acked++;
        pthread_mutex_unlock(&r->lock);
        note_up(r, i);
        return true;
    }
    note_trouble(r, i,
                 e->kind == E_ROLLBACK ? "dropping the replicas a rollback undid"
                                       : "dropping the replicas of an ended job",
                 why);
    return false;
}

static void remove_pending(holder_t *h, uint32_t k)
{
    memmove(&h->pending[k], &h->pending[k + 1], (h->n_pending - k - 1) * sizeof *h->pending);
    h->n_pending--;
}

/* Tries holder i's pending DROPs, oldest first, while they are
 * acknowledged; one tried CONTROL_TRIES times is given up (logged,
 * counted). True if none is left: files may go to the holder. */
static bool flush_pending(psrv_replicator_t *r, uint32_t i)
{
    holder_t *h = &r->holders[i];
    while (h->n_pending) {
        pending_t *p = &h->pending[0];
        if (send_control(r, i, &p->e)) {
            remove_pending(h, 0);
            continue;
        }
        h->next_try_ms = ps_time_ms() + RETRY_MS;
        if (++p->tries < CONTROL_TRIES)
            return false;
        ps_log(PS_LOG_ERROR,
               "shard %u: replica holder shard %u ('%s') never acknowledged the drop of job "
               "'%s'%s in %d tries: given up (it may keep replicas the owner no longer has)",
               r->cfg.shard, r->cfg.holder[i], r->cfg.endpoint[i], p->e.job,
               p->e.kind == E_ROLLBACK ? " after a rollback" : "", CONTROL_TRIES);
        pthread_mutex_lock(&r->lock);
        r->st.drops_failed++;
        pthread_mutex_unlock(&r->lock);
        remove_pending(h, 0);
    }
    return true;
}

static void add_pending(psrv_replicator_t *r, uint32_t i, const entry_t *e)
{
    holder_t *h = &r->holders[i];
    if (h->n_pending == PENDING_MAX) {
        ps_log(PS_LOG_ERROR,
               "shard %u: %d drops pending for replica holder shard %u: the oldest, of job "
               "'%s', given up",
               r->cfg.shard, PENDING_MAX, r->cfg.holder[i], h->pending[0].e.job);
        pthread_mutex_lock(&r->lock);
        r->st.drops_failed++;
        pthread_mutex_unlock(&r->lock);
        remove_pending(h, 0);
    }
    h->pending[h->n_pending++] = (pending_t){.e = *e};
}

static void send_entry(psrv_replicator_t *r, const entry_t *e)
{
    for (uint32_t i = 0; i < r->cfg.n_holders; i++) {
        if (e->kind != E_FILE)
            add_pending(r, i, e);
        /* a file goes only after the drops queued before it: a rollback's
         * drop coming after its file would delete it */
        if (!flush_pending(r, i)) {
            if (e->kind == E_FILE) {
                pthread_mutex_lock(&r->lock);
                r->st.files_failed++;
                pthread_mutex_unlock(&r->lock);
            }
            continue;
        }
        if (e->kind == E_FILE)
            send_chain(r, i, e);
    }
}

/* The drops due again, tried (the thread's lock is not held). */
static void retry_pending(psrv_replicator_t *r)
{
    int64_t now = ps_time_ms();
    for (uint32_t i = 0; i < r->cfg.n_holders; i++)
        if (r->holders[i].n_pending && r->holders[i].next_try_ms <= now)
            flush_pending(r, i);
}

static uint32_t total_pending(psrv_replicator_t *r)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->cfg.n_holders; i++)
        n += r->holders[i].n_pending;
    return n;
}

/* Waits (lock held) for an entry, or RETRY_MS if drops are pending. */
static void wait_for_work(psrv_replicator_t *r)
{
    while (!r->stop && !r->n) {
        if (!r->st.drops_pending) {
            pthread_cond_wait(&r->wake, &r->lock);
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)RETRY_MS % 1000 * 1000000L;
        ts.tv_sec += RETRY_MS / 1000 + ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        if (pthread_cond_timedwait(&r->wake, &r->lock, &ts) != 0)
            return; /* time to try the pending drops again */
    }
}

static void *sender_main(void *arg)
{
    psrv_replicator_t *r = arg;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        wait_for_work(r);
        if (r->stop)
            break;
        entry_t e = {.kind = E_FILE, .clock = -1};
        bool have = r->n > 0;
        if (have) {
            e = r->queue[r->head];
            r->head = (r->head + 1) % QUEUE_MAX;
            r->n--;
            r->queued_bytes -= e.bytes;
            r->sending_bytes = e.bytes;
        }
        pthread_mutex_unlock(&r->lock);
        if (have)
            send_entry(r, &e);
        else
            retry_pending(r);
        uint32_t pending = total_pending(r);
        pthread_mutex_lock(&r->lock);
        r->sending_bytes = 0;
        r->st.drops_pending = pending;
    }
    pthread_mutex_unlock(&r->lock);
    for (uint32_t i = 0; i < r->cfg.n_holders; i++)
        if (r->holders[i].sock)
            zmq_close(r->holders[i].sock);
    return NULL;
}

psrv_replicator_t *psrv_replicator_start(void *ctx, const psrv_replica_cfg_t *cfg)
{
    if (!cfg->n_holders)
        return NULL;
    psrv_replicator_t *r = ps_xcalloc(1, sizeof *r);
    r->cfg = *cfg;
    r->ctx = ctx;
    atomic_init(&r->cancel, false);
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->wake, NULL);
    if (pthread_create(&r->thread, NULL, sender_main, r) != 0) {
        ps_log(PS_LOG_ERROR,
               "shard %u: cannot start the replication thread; checkpoints are "
               "not replicated",
               cfg->shard);
        pthread_mutex_destroy(&r->lock);
        pthread_cond_destroy(&r->wake);
        free(r);
        return NULL;
    }
    return r;
}

/* The index (from head) of the oldest queued file, or -1 if only drops
 * are queued. Lock held. */
static int oldest_file(const psrv_replicator_t *r)
{
    for (uint32_t k = 0; k < r->n; k++)
        if (r->queue[(r->head + k) % QUEUE_MAX].kind == E_FILE)
            return (int)k;
    return -1;
}

/* Removes the queued entry k places from head, keeping the order. */
static void remove_queued(psrv_replicator_t *r, uint32_t k)
{
    for (; k + 1 < r->n; k++)
        r->queue[(r->head + k) % QUEUE_MAX] = r->queue[(r->head + k + 1) % QUEUE_MAX];
    r->n--;
}

/* Queues e, skipping the oldest queued files while the bound is passed
 * (the newest always goes in: it carries what the skipped ones would);
 * a drop is never skipped. */
static void enqueue(psrv_replicator_t *r, const entry_t *e)
{
    pthread_mutex_lock(&r->lock);
    while (r->n && (r->n == QUEUE_MAX ||
                    r->queued_bytes + r->sending_bytes + e->bytes > r->cfg.max_inflight_bytes)) {
        int k = oldest_file(r);
        if (k < 0)
            break;
        r->queued_bytes -= r->queue[(r->head + (uint32_t)k) % QUEUE_MAX].bytes;
        remove_queued(r, (uint32_t)k);
        r->st.files_skipped++;
    }
    if (r->n < QUEUE_MAX) {
        r->queue[(r->head + r->n) % QUEUE_MAX] = *e;
        r->n++;
        r->queued_bytes += e->bytes;
        pthread_cond_signal(&r->wake);
    } else {
        if (e->kind != E_FILE)
            ps_log(PS_LOG_ERROR, "shard %u: %d drops queued: the drop of job '%s' is lost",
                   r->cfg.shard, QUEUE_MAX, e->job);
        r->st.files_skipped += e->kind == E_FILE;
        r->st.drops_failed += e->kind != E_FILE;
    }
    pthread_mutex_unlock(&r->lock);
}

void psrv_replicator_offer(psrv_replicator_t *r, const char *job, uint64_t job_id, int64_t clock)
{
    if (!r)
        return;
    entry_t e = {.kind = E_FILE, .job_id = job_id, .clock = clock};
    snprintf(e.job, sizeof e.job, "%s", job);
    char path[1200];
    snprintf(path, sizeof path, "%s/%s/ckpt-%012lld.psc", r->cfg.state_dir, job, (long long)clock);
    FILE *f = fopen(path, "rb");
    if (f) {
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        e.bytes = size > 0 ? (size_t)size : 0;
        fclose(f);
    }
    enqueue(r, &e);
}

void psrv_replicator_offer_drop(psrv_replicator_t *r, const char *job, uint64_t job_id)
{
    if (!r)
        return;
    entry_t e = {.kind = E_DROP, .job_id = job_id, .clock = -1};
    snprintf(e.job, sizeof e.job, "%s", job);
    enqueue(r, &e);
}

void psrv_replicator_offer_rollback(psrv_replicator_t *r, const char *job, uint64_t job_id,
                                    int64_t clock, uint64_t generation)
{
    if (!r)
        return;
    entry_t e = {.kind = E_ROLLBACK,
                 .job_id = job_id,
                 .clock = clock,
                 .generation = generation ? generation : 1};
    snprintf(e.job, sizeof e.job, "%s", job);
    enqueue(r, &e);
}

uint32_t psrv_replicator_holders(const psrv_replicator_t *r, uint32_t *shards)
{
    if (!r)
        return 0;
    memcpy(shards, r->cfg.holder, r->cfg.n_holders * sizeof *shards);
    return r->cfg.n_holders;
}

void psrv_replicator_status(psrv_replicator_t *r, psrv_replica_status_t *out)
{
    memset(out, 0, sizeof *out);
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    *out = r->st;
    out->bytes_queued = r->queued_bytes + r->sending_bytes;
    pthread_mutex_unlock(&r->lock);
}

void psrv_replicator_stop(psrv_replicator_t **rp)
{
    psrv_replicator_t *r = *rp;
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->stop = true;
    atomic_store(&r->cancel, true);
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->wake);
    memset(r->cfg.keys.secret_z85, 0, sizeof r->cfg.keys.secret_z85);
    free(r);
    *rp = NULL;
}

/* ---- the fetch of a new machine ---- */

/* One line of a holder's REPLICA_LIST. */
typedef struct {
    char job[PS_JOB_NAME_MAX];
    int64_t clock;
    uint64_t bytes, id, generation;
} listed_t;

/* What one holder said it holds for us. */
typedef struct {
    uint32_t i; /* cfg->holder[i] */
    void *sock; /* NULL: did not answer (why says so) */
    listed_t *files;
    int n;
    uint64_t seq;
    char why[512];
} source_t;

/* The fetch's shared state: the overall deadline and the stop flag. */
typedef struct {
    void *ctx;
    const psrv_replica_cfg_t *cfg;
    int64_t deadline_ms;
    const atomic_bool *stop;
    char staging[PS_OPT_STR_MAX + 32];
} fetch_t;

static int64_t call_deadline(const fetch_t *f)
{
    int64_t d = ps_time_ms() + f->cfg->timeout_ms;
    return d < f->deadline_ms ? d : f->deadline_ms;
}

/* Fetches job's file at clock from src into the staging directory,
 * re-requesting it while its CRC fails (up to REFUSED_RETRIES times).
 * PS_OK, PS_EFORMAT (every copy was bad), PS_EIO (our disk: err), or the
 * transport's code; why says what. */
static int fetch_file(fetch_t *f, source_t *src, const char *job, int64_t clock, size_t *bytes_in,
                      char *why, size_t cap, ps_errbuf_t *err)
{
    const psrv_replica_cfg_t *cfg = f->cfg;
    for (int attempt = 0; attempt < REFUSED_RETRIES; attempt++) {
        Ps__Header h = replica_header(PS__OP__REPLICA_GET, job, 0, cfg->shard, cfg->n_shards);
        h.request_id = ++src->seq;
        h.clock = clock;
        ps_wire_msg_t reply = {0};
        int rc = call_peer(src->sock, &h, NULL, 0, call_deadline(f), f->stop, &reply, why, cap);
        if (rc != PS_OK)
            return rc;
        Ps__Header *rh = ps_wire_unpack_header(&reply.parts[0]);
        int status = rh->status;
        uint32_t want = rh->crc;
        snprintf(why, cap, "%s", rh->message && *rh->message ? rh->message : "");
        ps__header__free_unpacked(rh, NULL);
        if (status != PS_OK || reply.n_parts != 2) {
            ps_wire_msg_close(&reply);
            if (status == PS_OK)
                snprintf(why, cap, "REPLICA_GET reply without the file");
            return status != PS_OK ? status : PS_EPROTO;
        }
        const void *bytes = zmq_msg_data(&reply.parts[1]);
        size_t len = zmq_msg_size(&reply.parts[1]);
        uint32_t got = (uint32_t)crc32(crc32(0, NULL, 0), bytes, (uInt)len);
        if (got != want) {
            ps_wire_msg_close(&reply);
            ps_log(PS_LOG_WARN,
                   "shard %u: job '%s' clock %lld fetched with CRC %08x, the "
                   "holder sent %08x: asking again",
                   cfg->shard, job, (long long)clock, got, want);
            snprintf(why, cap, "job '%s' clock %lld failed its CRC %d times", job, (long long)clock,
                     attempt + 1);
            continue;
        }
        rc = ps_ckpt_store_file(f->staging, job, clock, cfg->shard, bytes, len, cfg->keep, err);
        ps_wire_msg_close(&reply);
        *bytes_in += len;
        if (rc == PS_EFORMAT) {
            snprintf(why, cap, "%s", err->msg);
            continue;
        }
        if (rc != PS_OK)
            snprintf(why, cap, "%s", err->msg);
        return rc;
    }
    return PS_EFORMAT;
}

/* Parses a REPLICA_LIST reply into src->files ("JOB CLOCK [BYTES JOB_ID
 * GENERATION]" lines). PS_EPROTO on a bad line. */
static int parse_list(source_t *src, const char *text)
{
    char *list = ps_xstrdup(text), *save = NULL;
    int rc = PS_OK;
    for (char *line = strtok_r(list, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        listed_t l = {0};
        long long clock;
        unsigned long long bytes = 0, id = 0, gen = 0;
        ps_errbuf_t bad;
        if (sscanf(line, "%63s %lld %llu %llu %llu", l.job, &clock, &bytes, &id, &gen) < 2 ||
            clock < 0 || ps_name_check_job(l.job, &bad) != PS_OK) {
            snprintf(src->why, sizeof src->why, "REPLICA_LIST reply has a bad line: '%.100s'",
                     line);
            rc = PS_EPROTO;
            break;
        }
        l.clock = clock;
        l.bytes = bytes;
        l.id = id;
        l.generation = gen;
        src->files = ps_xrealloc(src->files, (size_t)(src->n + 1) * sizeof *src->files);
        src->files[src->n++] = l;
    }
    free(list);
    return rc;
}

/* Asks holder src->i for the list of what it holds for us. PS_OK, or the
 * failure (src->why says it; the socket is then closed). */
static int list_source(fetch_t *f, source_t *src)
{
    const psrv_replica_cfg_t *cfg = f->cfg;
    src->sock = open_peer(f->ctx, cfg, cfg->endpoint[src->i], src->why, sizeof src->why);
    if (!src->sock)
        return PS_ENET;
    Ps__Header h = replica_header(PS__OP__REPLICA_LIST, NULL, 0, cfg->shard, cfg->n_shards);
    h.request_id = ++src->seq;
    ps_wire_msg_t reply = {0};
    int rc = call_peer(src->sock, &h, NULL, 0, call_deadline(f), f->stop, &reply, src->why,
                       sizeof src->why);
    if (rc == PS_OK) {
        Ps__Header *rh = ps_wire_unpack_header(&reply.parts[0]);
        ps_wire_msg_close(&reply);
        rc = rh->status;
        if (rc != PS_OK)
            snprintf(src->why, sizeof src->why, "REPLICA_LIST refused: %s",
                     rh->message ? rh->message : "");
        else
            rc = parse_list(src, rh->message ? rh->message : "");
        ps__header__free_unpacked(rh, NULL);
    }
    if (rc != PS_OK) {
        zmq_close(src->sock);
        src->sock = NULL;
    }
    return rc;
}

/* The newest file src lists of job (NULL if none): its clocks ascend. */
static const listed_t *newest_of(const source_t *src, const char *job)
{
    const listed_t *best = NULL;
    for (int k = 0; k < src->n; k++)
        if (!strcmp(src->files[k].job, job))
            best = &src->files[k];
    return best;
}

/* Is a newer than b: a later generation (b's files after a rollback's
 * clock are the undone history), then a later clock? */
static bool newer(const listed_t *a, const listed_t *b)
{
    if (a->generation != b->generation)
        return a->generation > b->generation;
    return a->clock > b->clock;
}

static void remove_staged(const fetch_t *f, const char *job)
{
    ps_ckpt_remove_job(f->staging, job);
}

/* Fetches job's files of the newest one's id from src into staging,
 * oldest first, checks that the newest one loads with its whole chain
 * (ps_ckpt_load), then renames the job's directory into state_dir. The
 * number of files, 0 if this holder's copy is not complete (logged, and
 * staging emptied), or PS_EIO / PS_ENOMEM (our disk) / PS_EINTR
 * (stopped, or the fetch's deadline passed). */
static int fetch_job(fetch_t *f, source_t *src, const char *job, size_t *bytes_in, ps_errbuf_t *err)
{
    const psrv_replica_cfg_t *cfg = f->cfg;
    const listed_t *top = newest_of(src, job);
    char why[512] = "";
    int n = 0, rc = PS_OK;
    int64_t failed_clock = -1;
    for (int k = 0; k < src->n && rc != PS_EIO && rc != PS_ENOMEM; k++) {
        const listed_t *l = &src->files[k];
        if (strcmp(l->job, job) || l->id != top->id)
            continue; /* another job of the same name: never mixed in */
        if ((f->stop && atomic_load(f->stop)) || ps_time_ms() >= f->deadline_ms) {
            rc = PS_EINTR;
            snprintf(why, sizeof why, "%s",
                     f->stop && atomic_load(f->stop) ? "stopped" : "the fetch's deadline passed");
            failed_clock = l->clock;
            break;
        }
        rc = fetch_file(f, src, job, l->clock, bytes_in, why, sizeof why, err);
        if (rc == PS_OK) {
            n++;
            continue;
        }
        failed_clock = l->clock;
        if (rc == PS_ETIME || rc == PS_ENET || rc == PS_EINTR)
            break; /* the holder is gone: the rest would fail too */
    }
    if (rc == PS_EIO || rc == PS_ENOMEM) {
        remove_staged(f, job);
        return rc;
    }
    ps_ckpt_t ck;
    ps_errbuf_t lerr;
    bool whole = ps_ckpt_load(f->staging, job, top->clock, &ck, &lerr) == PS_OK;
    if (whole) {
        whole = ck.job.shard == cfg->shard && ck.job.id == top->id;
        if (!whole)
            snprintf(lerr.msg, sizeof lerr.msg, "clock %lld is of shard %u, job id %llu",
                     (long long)top->clock, ck.job.shard, (unsigned long long)ck.job.id);
        ps_ckpt_free(&ck);
    }
    char from[1100], to[1100];
    snprintf(from, sizeof from, "%s/%s", f->staging, job);
    snprintf(to, sizeof to, "%s/%s", cfg->state_dir, job);
    if (whole && rename(from, to) != 0) {
        remove_staged(f, job);
        return ps_err_set(err, PS_EIO, "cannot rename '%s' to '%s': %s", from, to, strerror(errno));
    }
    if (whole) {
        if (failed_clock >= 0)
            ps_log(PS_LOG_WARN,
                   "shard %u: job '%s': an older file (clock %lld) from shard %u was not "
                   "fetched: %s",
                   cfg->shard, job, (long long)failed_clock, cfg->holder[src->i], why);
        return n;
    }
    char failure[700] = "";
    if (failed_clock >= 0)
        snprintf(failure, sizeof failure, "; the file of clock %lld failed: %s",
                 (long long)failed_clock, why);
    ps_log(PS_LOG_WARN,
           "shard %u: job '%s' from shard %u ('%s') is %s (%d files fetched%s); its clock %lld "
           "does not load: %s; discarded, trying the next holder",
           cfg->shard, job, cfg->holder[src->i], cfg->endpoint[src->i], n ? "partial" : "missing",
           n, failure, (long long)top->clock, lerr.msg);
    remove_staged(f, job);
    bool over = (f->stop && atomic_load(f->stop)) || ps_time_ms() >= f->deadline_ms;
    return rc == PS_EINTR || over ? PS_EINTR : 0;
}

/* Fetches job from the holder whose newest file of it is newest (see
 * newer), else the next one. Files fetched, 0 if no holder's copy was
 * complete (logged), or a negative code. */
static int fetch_best(fetch_t *f, source_t *srcs, uint32_t n_src, const char *job, size_t *bytes_in,
                      ps_errbuf_t *err)
{
    bool tried[PSRV_REPLICA_MAX] = {0};
    for (;;) {
        int best = -1;
        for (uint32_t s = 0; s < n_src; s++) {
            const listed_t *t = srcs[s].sock && !tried[s] ? newest_of(&srcs[s], job) : NULL;
            if (t && (best < 0 || newer(t, newest_of(&srcs[best], job))))
                best = (int)s;
        }
        if (best < 0) {
            ps_log(PS_LOG_ERROR,
                   "shard %u: job '%s': no holder has a complete copy of it; not restored",
                   f->cfg->shard, job);
            return 0;
        }
        tried[best] = true;
        const listed_t *t = newest_of(&srcs[best], job);
        int64_t t0 = ps_time_ms();
        size_t before = *bytes_in;
        int n = fetch_job(f, &srcs[best], job, bytes_in, err);
        if (n > 0)
            ps_log(PS_LOG_NOTICE,
                   "shard %u: job '%s': fetched %d checkpoint files (%zu bytes) from shard %u "
                   "('%s') in %lld ms, up to clock %lld (generation %llu)",
                   f->cfg->shard, job, n, *bytes_in - before, f->cfg->holder[srcs[best].i],
                   f->cfg->endpoint[srcs[best].i], (long long)(ps_time_ms() - t0),
                   (long long)t->clock, (unsigned long long)t->generation);
        if (n != 0)
            return n;
    }
}

/* Has a job of that name come up before index k of srcs[s]'s files? */
static bool seen_before(const source_t *srcs, uint32_t s, int k)
{
    const char *job = srcs[s].files[k].job;
    for (uint32_t t = 0; t <= s; t++)
        for (int m = 0; m < (t == s ? k : srcs[t].n); m++)
            if (!strcmp(srcs[t].files[m].job, job))
                return true;
    return false;
}

/* Every job any holder lists, each fetched by fetch_best. */
static int fetch_all(fetch_t *f, source_t *srcs, uint32_t n_src, size_t *bytes_in, ps_errbuf_t *err)
{
    int total = 0;
    for (uint32_t s = 0; s < n_src; s++)
        for (int k = 0; k < srcs[s].n; k++) {
            if (!srcs[s].sock || seen_before(srcs, s, k))
                continue;
            int n = fetch_best(f, srcs, n_src, srcs[s].files[k].job, bytes_in, err);
            if (n < 0)
                return n;
            total += n;
        }
    return total;
}

int psrv_replica_fetch(void *ctx, const psrv_replica_cfg_t *cfg, const atomic_bool *stop, char *why,
                       size_t why_cap, ps_errbuf_t *err)
{
    *why = 0;
    fetch_t f = {.ctx = ctx,
                 .cfg = cfg,
                 .deadline_ms = ps_time_ms() + cfg->timeout_ms * PSRV_FETCH_DEADLINE_FACTOR,
                 .stop = stop};
    snprintf(f.staging, sizeof f.staging, "%s/.fetching", cfg->state_dir);
    char **left;
    int n_left = ps_ckpt_list_jobs(f.staging, &left); /* an earlier fetch's, cut short */
    for (int k = 0; k < n_left; k++) {
        ps_ckpt_remove_job(f.staging, left[k]);
        free(left[k]);
    }
    free(left);
    source_t srcs[PSRV_REPLICA_MAX];
    uint32_t answered = 0;
    size_t len = 0;
    for (uint32_t i = 0; i < cfg->n_holders; i++) {
        srcs[i] = (source_t){.i = i};
        if (list_source(&f, &srcs[i]) == PS_OK) {
            answered++;
            continue;
        }
        ps_log(PS_LOG_WARN, "shard %u: holder shard %u ('%s') lists nothing: %s", cfg->shard,
               cfg->holder[i], cfg->endpoint[i], srcs[i].why);
        len +=
            (size_t)snprintf(why + len, len < why_cap ? why_cap - len : 0, "%sshard %u ('%s'): %s",
                             len ? "; " : "", cfg->holder[i], cfg->endpoint[i], srcs[i].why);
        if (len >= why_cap)
            len = why_cap - 1;
    }
    size_t bytes = 0;
    bool over = (stop && atomic_load(stop)) || ps_time_ms() >= f.deadline_ms;
    int n = over ? PS_EINTR : fetch_all(&f, srcs, cfg->n_holders, &bytes, err);
    for (uint32_t i = 0; i < cfg->n_holders; i++) {
        if (srcs[i].sock)
            zmq_close(srcs[i].sock);
        free(srcs[i].files);
    }
    rmdir(f.staging); /* empty: every job was moved or removed */
    if (n == PS_EINTR)
        return ps_err_set(err, PS_EINTR,
                          "shard %u: the startup fetch %s; the jobs not yet fetched are not "
                          "restored",
                          cfg->shard,
                          stop && atomic_load(stop) ? "was stopped" : "passed its deadline");
    if (n == 0 && answered)
        snprintf(why + len, len < why_cap ? why_cap - len : 0,
                 "%s%u holder(s) answered; none has a complete checkpoint for us", len ? "; " : "",
                 answered);
    return n;
}
