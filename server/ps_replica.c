/* ps_replica.c - the sender of replicated checkpoints (see ps_replica.h):
 * a thread with its own sockets that offers each checkpoint file, with the
 * chain under it, to this shard's holders and keeps what they acked. */
#include "ps_replica.h"
#include "ps_replica_int.h"

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
#define PENDING_MAX 16   /* drops awaiting one holder's acknowledgement */
#define CONTROL_TRIES 10 /* a drop is given up after this many tries */
#define RETRY_MS 1000    /* between a pending drop's tries */

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
    if (!hd->sock &&
        !(hd->sock = psrv_replica_open_peer(r->ctx, &r->cfg, r->cfg.endpoint[i], why, cap))) {
        free(bytes);
        return PS_ENET;
    }
    h->request_id = ++r->seq;
    ps_wire_msg_t reply = {0};
    int rc = psrv_replica_call(hd->sock, h, bytes, len, ps_time_ms() + r->cfg.timeout_ms,
                               &r->cancel, &reply, why, cap);
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
 * PSRV_REPLICA_REFUSED_RETRIES times (its CRC failed on arrival each time: re-sent), or
 * the holder fails. PS_OK if acknowledged, PS_ENOCKPT if the holder lacks
 * the file's base (the chain must go again from its full file), else the
 * failure. */
static int send_file(psrv_replicator_t *r, uint32_t i, const entry_t *e, int64_t clock)
{
    char why[512];
    for (int attempt = 0; attempt < PSRV_REPLICA_REFUSED_RETRIES; attempt++) {
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
        Ps__Header h = psrv_replica_header(PS__OP__REPLICA_PUT, e->job, e->job_id, r->cfg.shard,
                                           r->cfg.n_shards);
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
        psrv_replica_header(PS__OP__REPLICA_DROP, e->job, e->job_id, r->cfg.shard, r->cfg.n_shards);
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
