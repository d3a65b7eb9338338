/* ps_pipe.c - stage-to-stage links: two PULL sockets bound per stage (from
 * the stage before, from the stage after), a PUSH connected to each
 * neighbour's, endpoints exchanged through files in the rendezvous
 * directory. Headers travel in the workers' byte order (all x86-64 here,
 * little-endian), checked by a magic word.
 *
 * Between plain-text stages on one host a sender writes to its receiver's
 * FIFO instead (DIR/JOB.rank<R>.from-before, .from-after, made by the
 * receiver before it publishes): the hand-over is then one write and one
 * wake-up, not a trip through four ZeroMQ threads, which is most of what a
 * micro-batch's hand-over costs (bench/README.md, run_pipeline.sh). The
 * receiver reads both, the FIFO and its PULL socket; each sender uses one of
 * them for its life, so order holds. While a stage waits (to send or to
 * receive) it reads whatever its FIFOs hold into memory, so two stages
 * writing to each other never wait on each other. */
#include "ps_pipe.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "ps_curve.h"
#include "ps_fifo.h"
#include "ps_file.h"
#include "ps_log.h"
#include "ps_shm.h"
#include "ps_time.h"

#define PIPE_MAGIC 0x50535050u /* "PSPP" */
#define EP_MAX 256
#define POLL_SLICE_MS 100

typedef struct {
    uint32_t magic, kind, micro, pad;
    int64_t clock;
    uint64_t n_samples;
    double loss;
} wire_hdr_t;

enum { PREV = 0, NEXT = 1 }; /* the neighbour a socket talks to */

struct ps_pipe {
    ps_pipe_opts_t o;
    char dir[PATH_MAX], job[256], bind[EP_MAX], pub[64], sec[64];
    void *ctx;
    void *in[2];  /* PULL: what comes from the stage before / after */
    void *out[2]; /* PUSH: to the stage before / after */
    char in_ep[2][EP_MAX], peer_ep[2][EP_MAX], peer_key[2][64];
    ps_fifo_t fin[2], fout[2];        /* the same-host links, by side */
    char fifo_in[2][PATH_MAX + 300];  /* the FIFOs this stage made (to remove) */
    char fifo_out[2][PATH_MAX + 300]; /* the neighbours' FIFOs written to */
    bool peer_fifo[2];                /* the neighbour offers a FIFO for us */
    char peer_boot[2][40];            /* ... and is on this host if these match */
    unsigned long long peer_pid_ns[2];
    unsigned peer_uid[2];
    char file[PATH_MAX + 300];
    char key_file[PATH_MAX + 300], allow_file[PATH_MAX + 300]; /* CURVE */
    ps_zap_t *zap; /* CURVE: takes only the neighbours' keys */
    int64_t wait_ns;
    uint32_t begun_round;     /* the last sync round this stage began */
    uint32_t announced_round; /* the newest round a neighbour's ABORT announced */
    bool announced_by[2];     /* which neighbours announced it */
};

static const char *side_name(int side)
{
    return side == PREV ? "the stage before" : "the stage after";
}

static bool has(const ps_pipe_t *p, int side)
{
    return side == PREV ? p->o.stage > 0 : p->o.stage + 1 < p->o.n_stages;
}

static uint32_t peer_rank(const ps_pipe_t *p, int side)
{
    return side == PREV ? p->o.rank - 1 : p->o.rank + 1;
}

static int zerr(ps_errbuf_t *err, const char *what, const char *ep)
{
    return ps_err_set(err, PS_ENET, "pipeline: cannot %s '%s': %s", what, ep,
                      zmq_strerror(zmq_errno()));
}

static int bind_in(ps_pipe_t *p, int side, ps_errbuf_t *err)
{
    char ep[EP_MAX + 16];
    size_t len = EP_MAX;
    p->in[side] = zmq_socket(p->ctx, ZMQ_PULL);
    int linger = 0; /* nothing goes out of a PULL */
    zmq_setsockopt(p->in[side], ZMQ_LINGER, &linger, sizeof linger);
    if (*p->sec && ps_curve_server_socket(p->in[side], p->sec, err) != PS_OK)
        return err->code;
    snprintf(ep, sizeof ep, "tcp://%s:*", p->bind);
    if (zmq_bind(p->in[side], ep) != 0)
        return zerr(err, "bind", ep);
    if (zmq_getsockopt(p->in[side], ZMQ_LAST_ENDPOINT, p->in_ep[side], &len) != 0)
        return zerr(err, "read the endpoint of", ep);
    return PS_OK;
}

/* DIR/JOB.rank<R>: "fwd EP", "bwd EP" (the sockets that take FWD and BWD
 * messages), "key Z85" with CURVE, "host BOOT_ID PID_NS UID" and "fifo B A"
 * (yes or -: a FIFO takes what comes from the stage before, after). */
static int publish(ps_pipe_t *p, ps_errbuf_t *err)
{
    char text[3 * EP_MAX + 256];
    ps_shm_host_t me;
    ps_shm_host(&me);
    snprintf(text, sizeof text, "fwd %s\nbwd %s\nkey %s\nhost %s %llu %u\nfifo %s %s\n",
             has(p, PREV) ? p->in_ep[PREV] : "-", has(p, NEXT) ? p->in_ep[NEXT] : "-",
             *p->pub ? p->pub : "-", *me.boot_id ? me.boot_id : "-", (unsigned long long)me.pid_ns,
             me.uid, p->fin[PREV].fd >= 0 ? "yes" : "-", p->fin[NEXT].fd >= 0 ? "yes" : "-");
    snprintf(p->file, sizeof p->file, "%s/%s.rank%u", p->dir, p->job, p->o.rank);
    return ps_file_write_all(p->file, text, strlen(text), 0644, err);
}

static const char *fifo_suffix(int from_side)
{
    return from_side == PREV ? "from-before" : "from-after";
}

/* Makes the FIFO that takes what comes from side. False, with a warning,
 * if the system will not: the neighbour then sends over ZeroMQ. */
static bool fifo_offer(ps_pipe_t *p, int side)
{
    char *path = p->fifo_in[side];
    snprintf(path, sizeof p->fifo_in[side], "%s/%s.rank%u.%s", p->dir, p->job, p->o.rank,
             fifo_suffix(side));
    const char *why = ps_fifo_make(&p->fin[side], path);
    if (!why)
        return true;
    ps_log(PS_LOG_WARN, "pipeline: worker %u: cannot make the FIFO '%s' (%s); %s sends over ZeroMQ",
           p->o.rank, path, why, side_name(side));
    *path = '\0';
    return false;
}

/* NULL if this stage writes to side's FIFO, else why not. */
static const char *fifo_refusal(const ps_pipe_t *p, int side)
{
    if (!p->o.same_host)
        return "pipeline_same_host is off";
    if (*p->sec)
        return "the job uses CURVE";
    if (!p->peer_fifo[side])
        return "it offers no FIFO";
    return ps_shm_same_host(p->peer_boot[side], (uint64_t)p->peer_pid_ns[side], p->peer_uid[side]);
}

/* Opens side's FIFO for writing; refuses it, with why in a log line, where
 * a step's messages would not fit in it at once. */
static bool fifo_connect(ps_pipe_t *p, int side)
{
    uint64_t bytes = side == NEXT ? p->o.message_bytes_to_next : p->o.message_bytes_to_prev;
    uint32_t messages = p->o.step_messages ? p->o.step_messages : 1;
    char *path = p->fifo_out[side];
    snprintf(path, sizeof p->fifo_out[side], "%s/%s.rank%u.%s", p->dir, p->job, peer_rank(p, side),
             fifo_suffix(side == NEXT ? PREV : NEXT));
    ps_fifo_t *f = &p->fout[side];
    const char *why = ps_fifo_open_writer(f, path);
    if (!why && ps_fifo_fits(f, messages, sizeof(wire_hdr_t) + bytes))
        return true;
    if (why)
        ps_log(PS_LOG_WARN,
               "pipeline: worker %u: cannot open the FIFO '%s' (%s); sending over ZeroMQ",
               p->o.rank, path, why);
    else
        ps_log(PS_LOG_INFO,
               "pipeline: worker %u (stage %u) sends to %s (rank %u) over ZeroMQ: a step's %u "
               "messages of up to %llu bytes take more than the FIFO's %zu bytes",
               p->o.rank, p->o.stage, side_name(side), peer_rank(p, side), messages,
               (unsigned long long)bytes, f->room);
    ps_fifo_close(f);
    *path = '\0';
    return false;
}

/* The neighbour's file, if it is there and whole: the endpoint that takes
 * what this stage sends it (a stage before takes BWD, one after FWD). */
static bool read_peer(ps_pipe_t *p, int side, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char fwd[EP_MAX], bwd[EP_MAX], key[64], boot[40], before[4], after[4];
    unsigned long long pid_ns = 0;
    unsigned uid = 0;
    int n = fscanf(f, "fwd %255s bwd %255s key %63s host %39s %llu %u fifo %3s %3s", fwd, bwd, key,
                   boot, &pid_ns, &uid, before, after);
    fclose(f);
    if (n != 3 && n != 8) /* 3: a worker from before the FIFOs */
        return false;
    snprintf(p->peer_ep[side], EP_MAX, "%s", side == PREV ? bwd : fwd);
    snprintf(p->peer_key[side], sizeof p->peer_key[side], "%s", key);
    /* the stage before takes what we send in its FIFO from the stage after */
    p->peer_fifo[side] = n == 8 && strcmp(side == PREV ? after : before, "yes") == 0;
    if (n == 8) {
        snprintf(p->peer_boot[side], sizeof p->peer_boot[side], "%s", boot);
        p->peer_pid_ns[side] = pid_ns;
        p->peer_uid[side] = uid;
    }
    return strcmp(p->peer_ep[side], "-") != 0;
}

static void nap_ms(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits for the neighbour's file (it binds and publishes as this worker
 * does), then connects a PUSH to it. */
static int connect_out(ps_pipe_t *p, int side, ps_errbuf_t *err)
{
    char path[PATH_MAX + 300];
    snprintf(path, sizeof path, "%s/%s.rank%u", p->dir, p->job, peer_rank(p, side));
    int64_t deadline = ps_time_ms() + p->o.timeout_ms;
    while (!read_peer(p, side, path)) {
        if (p->o.stop && *p->o.stop)
            return ps_err_set(err, PS_EINTR, "pipeline: stopped while waiting for '%s'", path);
        if (ps_time_ms() > deadline)
            return ps_err_set(err, PS_ETIME,
                              "pipeline: worker %u (replica %u, stage %u): %s (rank %u) did not "
                              "publish '%s' within %lld ms",
                              p->o.rank, p->o.replica, p->o.stage, side_name(side),
                              peer_rank(p, side), path, (long long)p->o.timeout_ms);
        nap_ms(20);
    }
    const char *why = fifo_refusal(p, side);
    if (!why && fifo_connect(p, side)) {
        ps_log(PS_LOG_INFO, "pipeline: worker %u (stage %u) sends to %s (rank %u) through '%s'",
               p->o.rank, p->o.stage, side_name(side), peer_rank(p, side), p->fifo_out[side]);
        return PS_OK;
    }
    if (why)
        ps_log(PS_LOG_INFO, "pipeline: worker %u (stage %u) sends to %s (rank %u) over ZeroMQ: %s",
               p->o.rank, p->o.stage, side_name(side), peer_rank(p, side), why);
    p->out[side] = zmq_socket(p->ctx, ZMQ_PUSH);
    int linger = p->o.timeout_ms < 5000 ? (int)p->o.timeout_ms : 5000;
    zmq_setsockopt(p->out[side], ZMQ_LINGER, &linger, sizeof linger);
    if (*p->sec && strcmp(p->peer_key[side], "-") == 0)
        return ps_err_set(err, PS_EAUTH, "pipeline: '%s' has no CURVE key but this job uses CURVE",
                          path);
    if (*p->sec &&
        ps_curve_client_socket(p->out[side], p->peer_key[side], p->pub, p->sec, err) != PS_OK)
        return err->code;
    if (zmq_connect(p->out[side], p->peer_ep[side]) != 0)
        return zerr(err, "connect to", p->peer_ep[side]);
    return PS_OK;
}

/* The neighbour's DIR/JOB.rank<R>.key ("key Z85"), once it is there. */
static bool read_key(const char *path, char *key, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char k[64];
    int n = fscanf(f, "key %63s", k);
    fclose(f);
    if (n != 1 || strlen(k) != PS_Z85_KEY_LEN)
        return false;
    snprintf(key, cap, "%s", k);
    return true;
}

/* CURVE: a stage's PULL sockets take only its neighbours. Each worker
 * publishes its public key first (it is known before any bind), waits for
 * its neighbours', lists them in an allow-list and starts a ZAP handler
 * on it before it binds, so no handshake is served unchecked. */
static int start_zap(ps_pipe_t *p, ps_errbuf_t *err)
{
    char text[128], allow[512] = "";
    snprintf(p->key_file, sizeof p->key_file, "%s/%s.rank%u.key", p->dir, p->job, p->o.rank);
    snprintf(text, sizeof text, "key %s\n", p->pub);
    if (ps_file_write_all(p->key_file, text, strlen(text), 0644, err) != PS_OK)
        return err->code;
    for (int side = PREV; side <= NEXT; side++) {
        if (!has(p, side))
            continue;
        char path[PATH_MAX + 300], key[64];
        snprintf(path, sizeof path, "%s/%s.rank%u.key", p->dir, p->job, peer_rank(p, side));
        int64_t deadline = ps_time_ms() + p->o.timeout_ms;
        while (!read_key(path, key, sizeof key)) {
            if ((p->o.stop && *p->o.stop) || ps_time_ms() > deadline)
                return ps_err_set(err, PS_ETIME,
                                  "pipeline: worker %u (replica %u, stage %u): %s (rank %u) did "
                                  "not publish its key '%s' within %lld ms",
                                  p->o.rank, p->o.replica, p->o.stage, side_name(side),
                                  peer_rank(p, side), path, (long long)p->o.timeout_ms);
            nap_ms(20);
        }
        size_t len = strlen(allow);
        snprintf(allow + len, sizeof allow - len, "worker %s rank%u\n", key, peer_rank(p, side));
    }
    snprintf(p->allow_file, sizeof p->allow_file, "%s/%s.rank%u.allow", p->dir, p->job, p->o.rank);
    if (ps_file_write_all(p->allow_file, allow, strlen(allow), 0600, err) != PS_OK)
        return err->code;
    p->zap = ps_zap_start(p->ctx, p->allow_file, err);
    return p->zap ? PS_OK : err->code;
}

static int pipe_open(ps_pipe_t *p, ps_errbuf_t *err)
{
    if (!*p->sec && !ps_is_loopback(p->bind))
        return ps_err_set(err, PS_EINVAL,
                          "pipeline_bind '%s': plain text stays on loopback; give the workers "
                          "CURVE keys (curve_secret_file) to bind elsewhere",
                          p->bind);
    p->ctx = zmq_ctx_new();
    if (*p->sec && start_zap(p, err) != PS_OK)
        return err->code;
    for (int side = PREV; side <= NEXT; side++) {
        if (has(p, side) && bind_in(p, side, err) != PS_OK)
            return err->code;
        if (has(p, side) && p->o.same_host && !*p->sec)
            fifo_offer(p, side);
    }
    if (publish(p, err) != PS_OK)
        return err->code;
    for (int side = PREV; side <= NEXT; side++)
        if (has(p, side) && connect_out(p, side, err) != PS_OK)
            return err->code;
    return PS_OK;
}

ps_pipe_t *ps_pipe_new(const ps_pipe_opts_t *o, ps_errbuf_t *err)
{
    ps_pipe_t *p = ps_xcalloc(1, sizeof *p);
    p->o = *o;
    for (int side = PREV; side <= NEXT; side++) {
        ps_fifo_init(&p->fin[side]);
        ps_fifo_init(&p->fout[side]);
    }
    snprintf(p->dir, sizeof p->dir, "%s", o->dir);
    snprintf(p->job, sizeof p->job, "%s", o->job);
    snprintf(p->bind, sizeof p->bind, "%s", o->bind);
    snprintf(p->pub, sizeof p->pub, "%s", o->curve_public ? o->curve_public : "");
    snprintf(p->sec, sizeof p->sec, "%s", o->curve_secret ? o->curve_secret : "");
    if (pipe_open(p, err) != PS_OK)
        ps_pipe_destroy(&p);
    return p;
}

static void fifo_drain_out(ps_pipe_t *p, int64_t deadline);

void ps_pipe_destroy(ps_pipe_t **pp)
{
    ps_pipe_t *p = *pp;
    if (!p)
        return;
    /* what the FIFOs could not take yet, as ZeroMQ's linger does */
    fifo_drain_out(p, ps_time_ms() + (p->o.timeout_ms < 5000 ? p->o.timeout_ms : 5000));
    for (int side = PREV; side <= NEXT; side++) {
        if (p->in[side])
            zmq_close(p->in[side]);
        if (p->out[side])
            zmq_close(p->out[side]);
        ps_fifo_close(&p->fin[side]);
        ps_fifo_close(&p->fout[side]);
        if (*p->fifo_in[side])
            unlink(p->fifo_in[side]);
    }
    ps_zap_stop(&p->zap);
    if (p->ctx)
        zmq_ctx_term(p->ctx);
    if (*p->file)
        unlink(p->file);
    if (*p->key_file)
        unlink(p->key_file);
    if (*p->allow_file)
        unlink(p->allow_file);
    free(p);
    *pp = NULL;
}

static const char *kind_name(uint32_t kind)
{
    static const char *const names[] = {
        "?",     "activations",         "gradients",          "saved",
        "abort", "sync (lowest clock)", "sync (resume clock)"};
    return kind < sizeof names / sizeof names[0] ? names[kind] : "?";
}

static bool is_sync(uint32_t kind)
{
    return kind == PS_PIPE_ABORT || kind == PS_PIPE_SYNC_UP || kind == PS_PIPE_SYNC_DOWN;
}

static bool any_pending(const ps_pipe_t *p)
{
    return ps_fifo_pending(&p->fout[PREV]) || ps_fifo_pending(&p->fout[NEXT]);
}

/* Waits, in slices (the stop flag), until side `in` (-1: none) may have a
 * message or ZeroMQ socket out[out] (-1: none) may take one; with neither,
 * until the FIFOs have taken every byte their senders' buffers hold.
 * Meanwhile those buffers are written out as the FIFOs take them, and
 * what comes in by FIFO is read into memory, so two stages writing to each
 * other never wait on each other. The time counts as waiting. PS_OK,
 * PS_ETIME, PS_EINTR; PS_ENET if a FIFO's write fails. */
static int wait_io(ps_pipe_t *p, int in, int out, int64_t deadline)
{
    int64_t t0 = ps_time_ns();
    int rc = PS_ETIME;
    for (;;) {
        zmq_pollitem_t it[8];
        int n = 0;
        if (in >= 0 && p->in[in])
            it[n++] = (zmq_pollitem_t){p->in[in], 0, ZMQ_POLLIN, 0};
        if (in >= 0 && p->fin[in].fd >= 0)
            it[n++] = (zmq_pollitem_t){NULL, p->fin[in].fd, ZMQ_POLLIN, 0};
        if (out >= 0 && p->out[out])
            it[n++] = (zmq_pollitem_t){p->out[out], 0, ZMQ_POLLOUT, 0};
        int wanted = n;
        if (wanted == 0 && !any_pending(p)) {
            rc = PS_OK; /* every buffer is out */
            break;
        }
        for (int side = PREV; side <= NEXT; side++) {
            if (ps_fifo_pending(&p->fout[side]))
                it[n++] = (zmq_pollitem_t){NULL, p->fout[side].fd, ZMQ_POLLOUT, 0};
            if (side != in && p->fin[side].fd >= 0)
                it[n++] = (zmq_pollitem_t){NULL, p->fin[side].fd, ZMQ_POLLIN, 0};
        }
        int64_t left = deadline - ps_time_ms();
        zmq_poll(it, n, left < POLL_SLICE_MS ? (left > 0 ? left : 0) : POLL_SLICE_MS);
        if (ps_fifo_flush(&p->fout[PREV]) != PS_OK || ps_fifo_flush(&p->fout[NEXT]) != PS_OK) {
            rc = PS_ENET;
            break;
        }
        for (int side = PREV; side <= NEXT; side++)
            if (side != in)
                ps_fifo_fill(&p->fin[side]);
        bool done = false;
        for (int i = 0; i < wanted; i++)
            done = done || it[i].revents;
        if (done || (wanted == 0 && !any_pending(p))) {
            rc = PS_OK;
            break;
        }
        if (p->o.stop && *p->o.stop) {
            rc = PS_EINTR;
            break;
        }
        if (left <= 0)
            break;
    }
    p->wait_ns += ps_time_ns() - t0;
    return rc;
}

static void fifo_drain_out(ps_pipe_t *p, int64_t deadline)
{
    (void)wait_io(p, -1, -1, deadline);
}

static int peer_err(const ps_pipe_t *p, int rc, int side, const char *what, const ps_pipe_msg_t *m,
                    int64_t timeout_ms, ps_errbuf_t *err)
{
    uint32_t peer_stage = side == PREV ? p->o.stage - 1 : p->o.stage + 1;
    if (rc == PS_EINTR)
        return ps_err_set(err, rc,
                          "pipeline: worker %u (replica %u, stage %u): stopped while %s %s of "
                          "clock %lld micro-batch %u (%s stage %u, rank %u)",
                          p->o.rank, p->o.replica, p->o.stage, what, kind_name(m->kind),
                          (long long)m->clock, m->micro, side == PREV ? "from" : "to", peer_stage,
                          peer_rank(p, side));
    /* sending: where to; waiting: the peer's endpoint names its process */
    bool sending = strcmp(what, "sending") == 0;
    const char *peer = sending && *p->fifo_out[side] ? p->fifo_out[side] : p->peer_ep[side];
    if (rc == PS_ENET)
        return ps_err_set(err, rc,
                          "pipeline: worker %u (replica %u, stage %u): %s %s of clock %lld "
                          "micro-batch %u: cannot write to the FIFO of a neighbour (%s)",
                          p->o.rank, p->o.replica, p->o.stage, what, kind_name(m->kind),
                          (long long)m->clock, m->micro, strerror(errno));
    return ps_err_set(err, rc,
                      "pipeline: worker %u (replica %u, stage %u): %s %s of clock %lld "
                      "micro-batch %u: %s stage %u (rank %u, '%s') did not answer within %lld ms",
                      p->o.rank, p->o.replica, p->o.stage, what, kind_name(m->kind),
                      (long long)m->clock, m->micro, side_name(side), peer_stage,
                      peer_rank(p, side), peer, (long long)timeout_ms);
}

static int send_to(ps_pipe_t *p, int side, const ps_pipe_msg_t *m, const void *data, size_t bytes,
                   ps_errbuf_t *err);

int ps_pipe_send(ps_pipe_t *p, const ps_pipe_msg_t *m, const float *data, size_t n_floats,
                 ps_errbuf_t *err)
{
    int side = m->kind == PS_PIPE_FWD || m->kind == PS_PIPE_SYNC_UP ? NEXT : PREV;
    return send_to(p, side, m, data, n_floats * sizeof(float), err);
}

/* Writes the message into side's FIFO. What the FIFO cannot take at once
 * (only where the step's sizes given to ps_pipe_new were short of the
 * truth) waits in the sender's buffer, and this waits, by the deadline,
 * until the receiver has read enough: without a thread of its own to write
 * it later, a sender that went back to computing would hold it back. */
static int fifo_send(ps_pipe_t *p, int side, const ps_pipe_msg_t *m, const wire_hdr_t *h,
                     const void *data, size_t bytes, ps_errbuf_t *err)
{
    ps_fifo_t *f = &p->fout[side];
    int rc = ps_fifo_write(f, h, sizeof *h, data, bytes);
    if (rc == PS_EINVAL) /* the receiver would take it for garbage */
        return ps_err_set(err, PS_EINVAL,
                          "pipeline: worker %u (stage %u): %s of %zu bytes for %s, above its "
                          "FIFO's %zu (ps_pipe_opts_t's message sizes were too small)",
                          p->o.rank, p->o.stage, kind_name(m->kind), bytes, side_name(side),
                          f->room);
    if (rc == PS_OK)
        rc = wait_io(p, -1, -1, ps_time_ms() + p->o.timeout_ms);
    return rc == PS_OK ? PS_OK : peer_err(p, rc, side, "sending", m, p->o.timeout_ms, err);
}

static int send_to(ps_pipe_t *p, int side, const ps_pipe_msg_t *m, const void *data, size_t bytes,
                   ps_errbuf_t *err)
{
    wire_hdr_t h = {PIPE_MAGIC, m->kind, m->micro, 0, m->clock, m->n_samples, m->loss};
    if (p->fout[side].fd >= 0)
        return fifo_send(p, side, m, &h, data, bytes, err);
    if (!p->out[side])
        return ps_err_set(err, PS_EINVAL, "pipeline: stage %u has no %s", p->o.stage,
                          side_name(side));
    int rc = wait_io(p, -1, side, ps_time_ms() + p->o.timeout_ms);
    if (rc != PS_OK)
        return peer_err(p, rc, side, "sending", m, p->o.timeout_ms, err);
    if (zmq_send(p->out[side], &h, sizeof h, ZMQ_SNDMORE | ZMQ_DONTWAIT) != (int)sizeof h ||
        zmq_send(p->out[side], data, bytes, ZMQ_DONTWAIT) < 0)
        return zerr(err, "send to", p->peer_ep[side]);
    return PS_OK;
}

/* The two frames of a message that has arrived; 1 if none has after all
 * (under ZAP a PULL can poll readable for the handshake of a new
 * connection, which recv then skips); -1 if it is not one of ours (size,
 * magic, a missing value frame). */
static int take(void *sock, wire_hdr_t *h, zmq_msg_t *values)
{
    zmq_msg_t hm;
    zmq_msg_init(&hm);
    int n = zmq_msg_recv(&hm, sock, ZMQ_DONTWAIT);
    if (n < 0 && zmq_errno() == EAGAIN) {
        zmq_msg_close(&hm);
        return 1;
    }
    bool ok = n == (int)sizeof *h && zmq_msg_more(&hm);
    if (ok)
        memcpy(h, zmq_msg_data(&hm), sizeof *h);
    zmq_msg_close(&hm);
    if (!ok || h->magic != PIPE_MAGIC)
        return -1;
    return zmq_msg_recv(values, sock, ZMQ_DONTWAIT) < 0 ? -1 : 0;
}

/* As take, from a FIFO: 0 with *h (values into data if they fit cap bytes;
 * *got_bytes their size), 1 if none is whole yet, -1 if not one of ours. */
static int fifo_msg(ps_fifo_t *f, wire_hdr_t *h, void *data, size_t cap, size_t *got_bytes)
{
    const void *msg;
    size_t len;
    int got = ps_fifo_take(f, &msg, &len);
    if (got != 0)
        return got;
    if (len < sizeof *h)
        return -1;
    memcpy(h, msg, sizeof *h);
    if (h->magic != PIPE_MAGIC)
        return -1;
    *got_bytes = len - sizeof *h;
    if (data && *got_bytes && *got_bytes <= cap)
        memcpy(data, (const char *)msg + sizeof *h, *got_bytes);
    return 0;
}

/* The next message from side into *h (its values into data when they
 * fit its cap bytes; *got_bytes their size), by the deadline. */
static int next_msg(ps_pipe_t *p, int side, int64_t deadline, wire_hdr_t *h, void *data, size_t cap,
                    size_t *got_bytes)
{
    zmq_msg_t v;
    int rc, got;
    for (;;) {
        /* a sender uses one of the two for its life: order holds */
        if ((got = fifo_msg(&p->fin[side], h, data, cap, got_bytes)) != 1)
            return got == 0 ? PS_OK : PS_EPROTO;
        zmq_msg_init(&v);
        if ((got = take(p->in[side], h, &v)) != 1)
            break;
        zmq_msg_close(&v); /* readable, but nothing to read: wait on */
        if ((rc = wait_io(p, side, -1, deadline)) != PS_OK)
            return rc;
    }
    rc = got == 0 ? PS_OK : PS_EPROTO;
    *got_bytes = zmq_msg_size(&v);
    if (rc == PS_OK && data && *got_bytes <= cap && *got_bytes)
        memcpy(data, zmq_msg_data(&v), *got_bytes);
    zmq_msg_close(&v);
    return rc;
}

static int malformed(const ps_pipe_t *p, int side, ps_errbuf_t *err)
{
    return ps_err_set(err, PS_EPROTO,
                      "pipeline: worker %u (stage %u): a malformed message from %s (rank %u)",
                      p->o.rank, p->o.stage, side_name(side), peer_rank(p, side));
}

static int out_of_step(const ps_pipe_t *p, int side, const ps_pipe_msg_t *want, size_t n_floats,
                       const wire_hdr_t *h, size_t got_bytes, ps_errbuf_t *err)
{
    return ps_err_set(err, PS_EPROTO,
                      "pipeline: worker %u (replica %u, stage %u): out of step with %s "
                      "(rank %u): awaited %s of clock %lld micro-batch %u (%zu floats), got "
                      "%s of clock %lld micro-batch %u (%zu bytes)",
                      p->o.rank, p->o.replica, p->o.stage, side_name(side), peer_rank(p, side),
                      kind_name(want->kind), (long long)want->clock, want->micro, n_floats,
                      kind_name(h->kind), (long long)h->clock, h->micro, got_bytes);
}

int ps_pipe_recv(ps_pipe_t *p, const ps_pipe_msg_t *want, float *data, size_t n_floats,
                 ps_pipe_msg_t *got, ps_errbuf_t *err)
{
    int side = want->kind == PS_PIPE_FWD ? PREV : NEXT;
    if (!p->in[side])
        return ps_err_set(err, PS_EINVAL, "pipeline: stage %u has no %s", p->o.stage,
                          side_name(side));
    wire_hdr_t h;
    size_t got_bytes;
    int rc;
    /* an ABORT of a round already begun is left over from it: dropped */
    do {
        rc = next_msg(p, side, ps_time_ms() + p->o.timeout_ms, &h, data, n_floats * sizeof(float),
                      &got_bytes);
    } while (rc == PS_OK && h.kind == PS_PIPE_ABORT && h.micro <= p->begun_round);
    if (rc == PS_EPROTO)
        return malformed(p, side, err);
    if (rc != PS_OK)
        return peer_err(p, rc, side, "waiting for", want, p->o.timeout_ms, err);
    if (h.kind == PS_PIPE_ABORT) {
        if (p->announced_round != h.micro)
            p->announced_by[PREV] = p->announced_by[NEXT] = false;
        p->announced_round = h.micro;
        p->announced_by[side] = true;
        return ps_err_set(err, PS_ESTALE,
                          "pipeline: %s (stage %u, rank %u) is recovering (sync round %u)",
                          side_name(side), side == PREV ? p->o.stage - 1 : p->o.stage + 1,
                          peer_rank(p, side), h.micro);
    }
    if (h.kind != want->kind || h.clock != want->clock || h.micro != want->micro ||
        got_bytes != n_floats * sizeof(float))
        return out_of_step(p, side, want, n_floats, &h, got_bytes, err);
    *got = (ps_pipe_msg_t){h.kind, h.micro, h.clock, h.n_samples, h.loss};
    return PS_OK;
}

int ps_pipe_begin_round(ps_pipe_t *p, uint32_t round, bool notify, ps_errbuf_t *err)
{
    p->begun_round = round;
    if (!notify)
        return PS_OK;
    bool told = p->announced_round == round;
    ps_pipe_msg_t m = {PS_PIPE_ABORT, round, 0, 0, 0};
    for (int side = PREV; side <= NEXT; side++) {
        if (!has(p, side) || (told && p->announced_by[side]))
            continue;
        int rc = send_to(p, side, &m, NULL, 0, err);
        if (rc != PS_OK)
            return rc;
    }
    return PS_OK;
}

uint32_t ps_pipe_announced_round(const ps_pipe_t *p)
{
    return p->announced_round > p->begun_round ? p->announced_round : 0;
}

int ps_pipe_sync_send(ps_pipe_t *p, const ps_pipe_msg_t *m, const int64_t *clocks, size_t n,
                      ps_errbuf_t *err)
{
    return send_to(p, m->kind == PS_PIPE_SYNC_UP ? NEXT : PREV, m, clocks, n * sizeof *clocks, err);
}

int ps_pipe_sync_recv(ps_pipe_t *p, const ps_pipe_msg_t *want, int64_t timeout_ms,
                      ps_pipe_msg_t *got, int64_t *clocks, size_t cap, size_t *n, ps_errbuf_t *err)
{
    int side = want->kind == PS_PIPE_SYNC_UP ? PREV : NEXT;
    if (!p->in[side])
        return ps_err_set(err, PS_EINVAL, "pipeline: stage %u has no %s", p->o.stage,
                          side_name(side));
    int64_t deadline = ps_time_ms() + timeout_ms;
    wire_hdr_t h;
    size_t got_bytes;
    for (;;) {
        int rc = next_msg(p, side, deadline, &h, clocks, cap * sizeof *clocks, &got_bytes);
        if (rc == PS_EPROTO)
            return malformed(p, side, err);
        if (rc != PS_OK)
            return peer_err(p, rc, side, "waiting for", want, timeout_ms, err);
        if (!is_sync(h.kind) || (h.kind == PS_PIPE_ABORT && h.micro <= want->micro))
            continue; /* what the abandoned step (or this round's notice) left */
        if (h.kind != want->kind || h.micro != want->micro || got_bytes % sizeof *clocks ||
            got_bytes > cap * sizeof *clocks)
            return out_of_step(p, side, want, 0, &h, got_bytes, err);
        *got = (ps_pipe_msg_t){h.kind, h.micro, h.clock, h.n_samples, h.loss};
        *n = got_bytes / sizeof *clocks;
        return PS_OK;
    }
}

int64_t ps_pipe_wait_ns(const ps_pipe_t *p)
{
    return p->wait_ns;
}

const char *ps_pipe_transport(const ps_pipe_t *p, bool to_next)
{
    int side = to_next ? NEXT : PREV;
    return p->fout[side].fd >= 0 ? "fifo" : p->out[side] ? "zeromq" : "none";
}
