/* ps_inflight.c - the client's requests in flight and the one loop that
 * waits for their replies.
 *
 * Gradients are sent zero-copy (zmq_msg_init_data) straight from the
 * caller's buffer; a free callback counts them back, and ps_client_wait
 * does not return while ZeroMQ still holds one, so the caller may reuse
 * the buffer as soon as it returns. Every request carries a deadline; a
 * data request whose deadline passes is resent unchanged (the server
 * deduplicates pushes by rank and clock), up to opts.retries times, each
 * time waiting twice as long. */
#include "ps_client_int.h"

#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "ps_log.h"
#include "ps_time.h"

bool pscl_stop_requested(const ps_client_t *c)
{
    if (c->opts.stop && *c->opts.stop)
        return true;
    struct pollfd p = {.fd = c->opts.stop_fd, .events = POLLIN};
    return c->opts.stop_fd > 0 && poll(&p, 1, 0) == 1 && (p.revents & (POLLIN | POLLHUP));
}

void pscl_header_init(ps_client_t *c, Ps__Header *h, int op)
{
    ps__header__init(h);
    h->version = PS_PROTOCOL_VERSION;
    h->op = op;
    h->request_id = c->next_id++;
    h->job = c->job;
    h->rank = c->opts.rank;
    h->dtype = c->opts.dtype;
    h->generation = c->generation;
    h->worker_incarnation = c->worker_incarnation;
}

pscl_table_t *pscl_table(ps_client_t *c, uint32_t id)
{
    if (id >= c->n_tables) {
        c->tables = ps_xrealloc(c->tables, (id + 1) * sizeof *c->tables);
        memset(c->tables + c->n_tables, 0, (id + 1 - c->n_tables) * sizeof *c->tables);
        c->n_tables = id + 1;
    }
    return &c->tables[id];
}

static pscl_inflight_t *track(ps_client_t *c, uint32_t shard, const Ps__Header *h)
{
    if (c->n_inflight == c->cap_inflight) {
        c->cap_inflight = c->cap_inflight ? c->cap_inflight * 2 : 32;
        c->inflight = ps_xrealloc(c->inflight, c->cap_inflight * sizeof *c->inflight);
    }
    pscl_inflight_t *f = &c->inflight[c->n_inflight++];
    *f = (pscl_inflight_t){.request_id = h->request_id,
                           .shard = shard,
                           .table_id = h->table_id,
                           .chunk = h->chunk,
                           .op = h->op,
                           .clock = h->clock,
                           .deadline_ms = ps_time_ms() + c->opts.timeout_ms,
                           .attempts = 1,
                           .flags = h->flags,
                           .n_samples = h->n_samples,
                           .grad_scale = h->grad_scale};
    c->requests++;
    return f;
}

static void release_zero_copy(void *data, void *hint)
{
    (void)data;
    atomic_fetch_sub((atomic_int *)hint, 1);
}

int pscl_zero_copy_held(const ps_client_t *c)
{
    int n = 0;
    for (uint32_t s = 0; s < c->n_shards; s++)
        n += atomic_load(&c->zero_copy_held[s]);
    return n;
}

int ps_client_buffers_held(const ps_client_t *c)
{
    return pscl_zero_copy_held(c);
}

/* Sends one zero-copy frame to shard s; ZeroMQ lets go of buf later
 * (zero_copy_held[s]). */
static int send_zero_copy(ps_client_t *c, uint32_t s, const void *buf, size_t bytes, int more)
{
    zmq_msg_t m;
    atomic_fetch_add(&c->zero_copy_held[s], 1);
    zmq_msg_init_data(&m, (void *)buf, bytes, release_zero_copy, &c->zero_copy_held[s]);
    int n = ps_wire_send_msg(c->socks[s], &m, more);
    if (n >= 0)
        c->bytes_sent += (uint64_t)n;
    return n;
}

/* The frames of every request: header, then (sparse ops) h->n_elems keys,
 * then n_values values of the header's dtype; keys and values zero-copy.
 * A push whose values are in the shared region sends only its header. */
static int send_frames(ps_client_t *c, uint32_t shard, Ps__Header *h, const uint64_t *keys,
                       const void *values, uint64_t n_values, bool *rung)
{
    void *s = c->socks[shard];
    if ((h->flags & PS_FLAG_SHM) && h->shm_offset)
        values = NULL;
    h->incarnation = atomic_load(&c->incarnation[shard]);
    *rung = pscl_bell_send(c, shard, h, keys || values);
    if (*rung) {
        c->bytes_sent += ps__header__get_packed_size(h);
        return PS_OK;
    }
    int n = ps_wire_send_header(s, h, keys || values);
    if (n < 0)
        return n;
    c->bytes_sent += (uint64_t)n;
    if (keys && (n = send_zero_copy(c, shard, keys, h->n_elems * sizeof *keys,
                                    values ? ZMQ_SNDMORE : 0)) < 0)
        return n;
    if (values && (n = send_zero_copy(c, shard, values, n_values * ps_dtype_size(h->dtype), 0)) < 0)
        return n;
    return PS_OK;
}

pscl_inflight_t *pscl_send(ps_client_t *c, uint32_t shard, Ps__Header *h, const uint64_t *keys,
                           const void *values, uint64_t n_values, float *dst, uint64_t dst_offset,
                           uint64_t dst_len, int *rc)
{
    bool rung;
    *rc = send_frames(c, shard, h, keys, values, n_values, &rung);
    if (*rc != PS_OK)
        return NULL;
    pscl_inflight_t *f = track(c, shard, h);
    f->rung = rung;
    f->values = values;
    f->n_values = n_values;
    f->keys = keys;
    f->dst = dst;
    f->offset = dst_offset;
    f->len = dst_len;
    return f;
}

/* Sends request f again, unchanged (same id, clock and values): the server
 * deduplicates pushes by worker and clock, so a retry is never applied
 * twice, and a second reply to the same id is ignored. */
static int resend(ps_client_t *c, pscl_inflight_t *f)
{
    Ps__Header h;
    pscl_header_init(c, &h, f->op);
    h.request_id = f->request_id; /* the same id as the first attempt */
    h.table_id = f->table_id;
    h.chunk = f->chunk;
    h.clock = f->clock;
    /* over TCP: the first attempt keeps the region's slots (ps_client_shm.c) */
    h.flags = f->flags & ~PS_FLAG_SHM;
    h.offset = f->keys ? 0 : f->offset;
    h.n_elems = f->len;
    h.n_samples = f->n_samples;
    h.grad_scale = f->grad_scale;
    if (f->keys)
        h.dtype = PS__DTYPE__F32; /* sparse rows always travel as f32 */
    bool rung;                    /* never: a resend has no PS_FLAG_SHM */
    int rc = send_frames(c, f->shard, &h, f->keys, f->values, f->n_values, &rung);
    f->rung = false;
    return rc < 0 ? rc : PS_OK;
}

static bool has_table(int op)
{
    return op == PS__OP__INIT_TABLE || op == PS__OP__PULL || op == PS__OP__PUSH ||
           op == PS__OP__PUSH_PULL || op == PS__OP__SPARSE_PULL || op == PS__OP__SPARSE_PUSH;
}

static int describe(ps_client_t *c, ps_errbuf_t *err, const pscl_inflight_t *f, int code,
                    const char *what)
{
    if (!has_table(f->op))
        return ps_err_set(err, code, "worker %u: shard %u '%s' refused %s: %s", c->opts.rank,
                          f->shard, c->endpoints[f->shard], ps_op_name(f->op), what);
    const char *tname = f->table_id < c->n_tables ? c->tables[f->table_id].name : "";
    return ps_err_set(err, code,
                      "worker %u: shard %u '%s': %s table %u '%s' chunk %u clock %lld: %s",
                      c->opts.rank, f->shard, c->endpoints[f->shard], ps_op_name(f->op),
                      f->table_id, tname, f->chunk, (long long)f->clock, what);
}

static pscl_inflight_t *find_inflight(ps_client_t *c, uint64_t id)
{
    for (size_t i = 0; i < c->n_inflight; i++)
        if (c->inflight[i].request_id == id)
            return &c->inflight[i];
    return NULL;
}

/* What HELLO, ROLLBACK and admin replies say, kept for their caller. */
static void keep_answer(ps_client_t *c, const pscl_inflight_t *f, const Ps__Header *h)
{
    pscl_answer_t *a = &c->answers[f->shard];
    free(a->message);
    free(a->checkpoints);
    *a = (pscl_answer_t){.status = h->status,
                         .shard = h->shard,
                         .n_shards = h->n_shards,
                         .flags = h->flags,
                         .clock = h->clock,
                         .max_clock = h->max_clock,
                         .rollback_clock = h->rollback_clock,
                         .generation = h->generation,
                         .incarnation = h->incarnation,
                         .job_id = h->job_id,
                         .loss_scale = h->loss_scale,
                         .scale_window = h->loss_scale_window,
                         .scale_good = h->scale_good_steps,
                         .scale_skipped = h->scale_skipped};
    snprintf(a->text, sizeof a->text, "%s", h->status && h->message ? h->message : "");
    snprintf(a->shm_refused, sizeof a->shm_refused, "%s", h->shm_refused ? h->shm_refused : "");
    a->n_checkpoints = h->n_checkpoints;
    a->checkpoints = ps_xmalloc((h->n_checkpoints ? h->n_checkpoints : 1) * sizeof(int64_t));
    if (h->n_checkpoints)
        memcpy(a->checkpoints, h->checkpoints, h->n_checkpoints * sizeof(int64_t));
    if (f->op == PS__OP__STATS && h->message)
        a->message = ps_xstrdup(h->message);
}

/* Writes the values of a data reply where its request said. */
static int take_values(ps_client_t *c, const pscl_inflight_t *f, const Ps__Header *h,
                       zmq_msg_t *vals, ps_errbuf_t *err)
{
    size_t bytes = vals ? zmq_msg_size(vals) : 0;
    if (f->scatter) {
        size_t row = f->dim * sizeof(float);
        if (h->n_elems != f->len || h->dtype != PS__DTYPE__F32 || bytes != f->len * row)
            return describe(c, err, f, PS_EPROTO, "sparse reply does not carry the rows asked for");
        const char *rows = vals ? zmq_msg_data(vals) : NULL;
        for (uint64_t i = 0; i < f->len; i++)
            memcpy(f->dst + f->scatter[i] * f->dim, rows + i * row, row);
        return PS_OK;
    }
    const void *src = vals ? zmq_msg_data(vals) : NULL;
    if (h->flags & PS_FLAG_SHM_VALUES) {
        src = pscl_shm_reply_values(c, f, h);
        bytes = src && !vals ? f->len * ps_dtype_size(c->opts.dtype) : 0;
        c->bytes_received += bytes; /* moved, by whichever path */
    }
    if (h->offset != f->offset || h->n_elems != f->len || h->dtype != (Ps__DType)c->opts.dtype ||
        bytes != f->len * ps_dtype_size(c->opts.dtype))
        return describe(c, err, f, PS_EPROTO, "reply does not carry the slice asked for");
    return ps_wire_decode(h->dtype, src, f->dst + f->offset, f->len, 1.0f);
}

/* Handles reply h (its values frame vals, NULL if none) from shard;
 * PS_OK or an error about its request (which may be a server's
 * PS_EAGAIN). Frees h. */
static int handle_reply(ps_client_t *c, uint32_t shard, Ps__Header *h, zmq_msg_t *vals,
                        ps_errbuf_t *err)
{
    c->handshake_breaks[shard] = 0;
    pscl_inflight_t *f = find_inflight(c, h->request_id);
    int rc = PS_OK;
    if (!f) {
        /* a late reply to a request we gave up on */
    } else if (h->status != 0) {
        char what[600];
        snprintf(what, sizeof what, "%s: %s", ps_strerror(h->status), h->message);
        rc = describe(c, err, f, h->status, what);
        if (!has_table(f->op))
            keep_answer(c, f, h);
    } else if (!has_table(f->op)) {
        keep_answer(c, f, h);
    } else if (f->dst) {
        rc = take_values(c, f, h, vals, err);
    }
    if (f) {
        c->reply_flags |= h->flags & ~(PS_FLAG_SHM | PS_FLAG_SHM_VALUES | PS_FLAG_BELL);
        *f = c->inflight[--c->n_inflight];
    }
    pscl_shm_release(c, h); /* after its values were taken */
    ps__header__free_unpacked(h, NULL);
    return rc;
}

/* Handles one reply from shard (*none: there was none queued); as
 * handle_reply. */
static int take_reply(ps_client_t *c, uint32_t shard, bool *none, ps_errbuf_t *err)
{
    ps_wire_msg_t m;
    int rc = ps_wire_recv(c->socks[shard], &m, ZMQ_DONTWAIT);
    *none = rc == PS_EAGAIN;
    if (*none)
        return PS_OK;
    c->bytes_received += ps_wire_msg_bytes(&m);
    Ps__Header *h = m.n_parts >= 1 ? ps_wire_unpack_header(&m.parts[0]) : NULL;
    if (rc != PS_OK || !h) {
        ps_wire_msg_close(&m);
        if (h)
            ps__header__free_unpacked(h, NULL);
        return ps_err_set(err, PS_EPROTO, "worker %u: shard %u '%s' sent a malformed reply",
                          c->opts.rank, shard, c->endpoints[shard]);
    }
    rc = handle_reply(c, shard, h, m.n_parts == 2 ? &m.parts[1] : NULL, err);
    ps_wire_msg_close(&m);
    return rc;
}

typedef struct {
    ps_client_t *c;
    uint32_t shard;
    ps_errbuf_t *err;
    bool reply_failed; /* a reply said no (its error is the take's) */
} bell_ctx_t;

/* One reply header out of a doorbell; PS_EPROTO (and no err) if it is
 * not a header: the pipe is garbage. */
static int take_bell_frame(void *arg, const uint8_t *frame, size_t len)
{
    bell_ctx_t *b = arg;
    b->c->bytes_received += len;
    Ps__Header *h = ps__header__unpack(NULL, len, frame);
    if (!h)
        return PS_EPROTO;
    int rc = handle_reply(b->c, b->shard, h, NULL, b->err);
    b->reply_failed = rc != PS_OK;
    return rc;
}

/* Resends, oldest first (the shard takes a chunk's pushes in clock
 * order), shard's requests in flight that went down its doorbell (rung)
 * or that used its region at all. */
static int resend_to(ps_client_t *c, uint32_t shard, bool every_region_request, ps_errbuf_t *err)
{
    for (uint64_t last = 0;;) {
        pscl_inflight_t *next = NULL;
        for (size_t i = 0; i < c->n_inflight; i++) {
            pscl_inflight_t *f = &c->inflight[i];
            bool picked = every_region_request ? (f->flags & PS_FLAG_SHM) != 0 : f->rung;
            if (f->shard == shard && picked && f->request_id > last &&
                (!next || f->request_id < next->request_id))
                next = f;
        }
        if (!next)
            return PS_OK;
        last = next->request_id;
        if (resend(c, next) != PS_OK)
            return describe(c, err, next, PS_ENET, "cannot resend");
    }
}

/* Takes the replies in shard's doorbell. A shard that let go of it (it
 * declared us dead or its process is gone, saw garbage) reads nothing of
 * what we rang since: those requests are resent over ZeroMQ now, not at
 * their deadlines (a rejoin must hear EDEAD at once). Garbage in the
 * reply pipe (no shard writes that): we let go too, and resend every
 * request whose reply could have been lost in it. */
static int take_bell(ps_client_t *c, uint32_t shard, ps_errbuf_t *err)
{
    bell_ctx_t b = {c, shard, err, false};
    int rc = ps_bell_take(&c->shm[shard].reader, c->shm[shard].answer_fd, take_bell_frame, &b);
    if (rc == PS_OK || b.reply_failed || (rc != PS_ENET && rc != PS_EPROTO))
        return rc;
    pscl_bell_gone(c, shard, rc == PS_EPROTO);
    return resend_to(c, shard, rc == PS_EPROTO, err);
}

/* Is a request for table (PSCL_ALL_TABLES: any) still waiting for its reply? */
static bool awaiting(const ps_client_t *c, uint32_t table)
{
    if (table == PSCL_ALL_TABLES)
        return c->n_inflight > 0;
    for (size_t i = 0; i < c->n_inflight; i++)
        if (c->inflight[i].table_id == table && has_table(c->inflight[i].op))
            return true;
    return false;
}

/* A request whose deadline passed: resent, or the error that ends the
 * wait (no retries left, or an op that is never resent). */
static int expire(ps_client_t *c, pscl_inflight_t *f, int64_t now, ps_errbuf_t *err)
{
    int64_t waited = f->waited_ms + c->opts.timeout_ms * (1LL << (f->attempts - 1));
    if (!has_table(f->op) || f->op == PS__OP__INIT_TABLE || f->attempts > c->opts.retries) {
        char what[200];
        if (!has_table(f->op))
            return ps_err_set(err, PS_ETIME,
                              "worker %u: shard %u '%s': no reply to %s after %lld ms (is "
                              "ps-server running there?)",
                              c->opts.rank, f->shard, c->endpoints[f->shard], ps_op_name(f->op),
                              (long long)waited);
        snprintf(what, sizeof what, "no reply after %lld ms and %d attempts", (long long)waited,
                 f->attempts);
        return describe(c, err, f, PS_ETIME, what);
    }
    f->waited_ms = waited;
    f->attempts++;
    f->deadline_ms = now + c->opts.timeout_ms * (1LL << (f->attempts - 1));
    ps_log(PS_LOG_WARN,
           "worker %u: no reply from shard %u '%s' to %s table %u clock %lld after "
           "%lld ms; resending (attempt %d of %d)",
           c->opts.rank, f->shard, c->endpoints[f->shard], ps_op_name(f->op), f->table_id,
           (long long)f->clock, (long long)waited, f->attempts, c->opts.retries + 1);
    if (resend(c, f) != PS_OK)
        return describe(c, err, f, PS_ENET, "cannot resend");
    return PS_OK;
}

/* Every 5 s of waiting, one line saying what is awaited from whom: a wait
 * is never silent (a shard that is not up yet, a stalled barrier). */
static void log_waiting(ps_client_t *c, const pscl_inflight_t *f, int64_t now)
{
    int64_t waited =
        f->waited_ms + (now - (f->deadline_ms - c->opts.timeout_ms * (1LL << (f->attempts - 1))));
    if (waited < 5000 || now - c->last_log_ms < 5000)
        return;
    c->last_log_ms = now;
    if (has_table(f->op))
        ps_log(PS_LOG_NOTICE,
               "worker %u: waiting %lld s for shard %u '%s': %s table %u chunk %u "
               "clock %lld (%zu requests in flight)",
               c->opts.rank, (long long)(waited / 1000), f->shard, c->endpoints[f->shard],
               ps_op_name(f->op), f->table_id, f->chunk, (long long)f->clock, c->n_inflight);
    else
        ps_log(PS_LOG_NOTICE, "worker %u: waiting %lld s for shard %u '%s' to answer %s",
               c->opts.rank, (long long)(waited / 1000), f->shard, c->endpoints[f->shard],
               ps_op_name(f->op));
}

/* Deadlines of the requests in flight, and shards gone silent; sets *next
 * to the nearest deadline. */
static int check_deadlines(ps_client_t *c, int64_t now, int64_t *next, ps_errbuf_t *err)
{
    *next = INT64_MAX;
    if (c->n_inflight)
        log_waiting(c, &c->inflight[0], now);
    for (size_t i = 0; i < c->n_inflight; i++) {
        pscl_inflight_t *f = &c->inflight[i];
        int rc = f->deadline_ms <= now ? expire(c, f, now, err) : PS_OK;
        if (rc != PS_OK)
            return rc;
        if (f->deadline_ms < *next)
            *next = f->deadline_ms;
        /* a shard that answers no heartbeat is gone: say so now rather
         * than at the request's deadline */
        int64_t last = atomic_load(&c->last_reply_ms[f->shard]);
        if (c->has_heartbeat && c->opts.server_timeout_ms && last &&
            now - last > c->opts.server_timeout_ms) {
            char what[160];
            snprintf(what, sizeof what,
                     "shard silent for %lld ms (no heartbeat replies): is ps-server running?",
                     (long long)(now - last));
            return describe(c, err, f, PS_ETIME, what);
        }
    }
    if (pscl_stop_requested(c))
        return ps_err_set(err, PS_EINTR, "worker %u: interrupted with %zu requests in flight",
                          c->opts.rank, c->n_inflight);
    /* a restarted shard is news for a data request; a HELLO is how one
     * learns the new incarnation */
    int restarted = c->joining ? 0 : atomic_load(&c->restarted);
    if (restarted)
        return ps_err_set(err, PS_ERESTARTED, "worker %u: shard %d '%s' restarted", c->opts.rank,
                          restarted - 1, c->endpoints[restarted - 1]);
    return PS_OK;
}

/* Takes what poll found: handshake failures, then replies (the
 * doorbells' are items [n_items, n_items + n_bells)). */
static int take_ready(ps_client_t *c, zmq_pollitem_t *items, int n_items, int n_bells,
                      const uint32_t *bell_shards, ps_errbuf_t *err)
{
    for (int i = 0; i < n_bells; i++) {
        if (!items[n_items + i].revents)
            continue;
        int rc = take_bell(c, bell_shards[i], err);
        if (rc != PS_OK)
            return rc;
    }
    for (int i = (int)c->n_shards; i < n_items; i++) {
        if (!(items[i].revents & ZMQ_POLLIN) || !items[i].socket)
            continue;
        for (uint32_t s = 0; s < c->n_shards; s++)
            if (c->monitors[s] == items[i].socket && pscl_handshake_failure(c, s, err) != PS_OK)
                return PS_EAUTH;
    }
    for (uint32_t i = 0; i < c->n_shards; i++) {
        if (!(items[i].revents & ZMQ_POLLIN))
            continue;
        bool none = false;
        while (!none) {
            int rc = take_reply(c, i, &none, err);
            if (rc != PS_OK)
                return rc;
        }
    }
    return PS_OK;
}

/* Replies a doorbell reader holds from an earlier take that stopped at
 * an error: poll would not wake for them (the pipe is empty). */
static int take_pending(ps_client_t *c, int n_bells, const uint32_t *bell_shards, ps_errbuf_t *err)
{
    for (int i = 0; i < n_bells; i++) {
        int rc = pscl_bell_pending(c, bell_shards[i]) ? take_bell(c, bell_shards[i], err) : PS_OK;
        if (rc != PS_OK)
            return rc;
    }
    return PS_OK;
}

int pscl_wait(ps_client_t *c, uint32_t table, ps_errbuf_t *err)
{
    zmq_pollitem_t items[3 * PSCL_MAX_SHARDS + 1];
    uint32_t bell_shards[PSCL_MAX_SHARDS];
    int n_items = 0;
    for (uint32_t i = 0; i < c->n_shards; i++)
        items[n_items++] = (zmq_pollitem_t){c->socks[i], 0, ZMQ_POLLIN, 0};
    for (uint32_t i = 0; i < c->n_shards; i++)
        if (c->monitors[i])
            items[n_items++] = (zmq_pollitem_t){c->monitors[i], 0, ZMQ_POLLIN, 0};
    /* the stop descriptor wakes the poll; check_deadlines then says so */
    if (c->opts.stop_fd > 0)
        items[n_items++] = (zmq_pollitem_t){NULL, c->opts.stop_fd, ZMQ_POLLIN, 0};
    /* the doorbells last: a HELLO within this wait may open or close one */
    int n_bells = 0;
    while (awaiting(c, table)) {
        n_bells = pscl_bell_items(c, items + n_items, bell_shards, PSCL_MAX_SHARDS);
        int rc = take_pending(c, n_bells, bell_shards, err);
        if (rc != PS_OK)
            return rc;
        if (!awaiting(c, table))
            break;
        int64_t now = ps_time_ms(), next;
        if ((rc = check_deadlines(c, now, &next, err)) != PS_OK)
            return rc;
        /* wake at least every 100 ms to notice a stop request */
        int64_t wait_ms = next - now < 100 ? next - now : 100;
        int n = zmq_poll(items, n_items + n_bells, (long)(wait_ms > 0 ? wait_ms : 0));
        if (n < 0 && zmq_errno() != EINTR)
            return ps_err_set(err, PS_ENET, "worker %u: poll failed: %s", c->opts.rank,
                              zmq_strerror(zmq_errno()));
        if (n > 0 && (rc = take_ready(c, items, n_items, n_bells, bell_shards, err)) != PS_OK)
            return rc;
    }
    return PS_OK;
}

int pscl_broadcast(ps_client_t *c, int op, ps_errbuf_t *err)
{
    for (uint32_t s = 0; s < c->n_shards; s++) {
        Ps__Header h;
        pscl_header_init(c, &h, op);
        int rc;
        if (!pscl_send(c, s, &h, NULL, NULL, 0, NULL, 0, 0, &rc))
            return ps_err_set(err, rc, "worker %u: cannot send %s to shard %u '%s'", c->opts.rank,
                              ps_op_name(op), s, c->endpoints[s]);
    }
    return ps_client_wait(c, err);
}

int ps_client_wait_table(ps_client_t *c, uint32_t id, ps_errbuf_t *err)
{
    return pscl_wait(c, id, err);
}

int ps_client_wait(ps_client_t *c, ps_errbuf_t *err)
{
    c->reply_flags = 0;
    int rc = pscl_wait(c, PSCL_ALL_TABLES, err);
    if (rc != PS_OK)
        return rc;
    /* Every reply is in, so every request was read by its server; the I/O
     * thread lets go of the zero-copy buffers right after. */
    int64_t deadline = ps_time_ms() + c->opts.timeout_ms;
    while (pscl_zero_copy_held(c) > 0) {
        if (ps_time_ms() > deadline)
            return ps_err_set(err, PS_ETIME, "worker %u: ZeroMQ still holds %d send buffers",
                              c->opts.rank, pscl_zero_copy_held(c));
        sched_yield();
    }
    c->n_stages_used = 0; /* no sparse op is in flight any more */
    return PS_OK;
}

void ps_client_reset(ps_client_t *c)
{
    c->n_inflight = 0;
    /* A request to a shard that is gone stays queued in ZeroMQ until the
     * shard is back, and is then sent from the caller's buffer, which the
     * caller may have freed by then: a socket that still holds a buffer is
     * replaced, and its queue dropped. */
    for (uint32_t s = 0; s < c->n_shards; s++)
        if (atomic_load(&c->zero_copy_held[s]) > 0 && !pscl_reopen_shard(c, s))
            ps_log(PS_LOG_ERROR, "worker %u: cannot open a new socket to shard %u '%s': %s",
                   c->opts.rank, s, c->endpoints[s], zmq_strerror(zmq_errno()));
    /* the I/O threads drop the old queues at once */
    int64_t deadline = ps_time_ms() + c->opts.timeout_ms;
    while (pscl_zero_copy_held(c) > 0 && ps_time_ms() < deadline)
        sched_yield();
    if (pscl_zero_copy_held(c) > 0) {
        /* cannot happen (the drop needs no peer); the stages stay taken,
         * so no sparse op writes over one ZeroMQ still reads */
        ps_log(PS_LOG_ERROR,
               "worker %u: ZeroMQ still holds %d of our send buffers %lld ms after a reset",
               c->opts.rank, pscl_zero_copy_held(c), (long long)c->opts.timeout_ms);
        return;
    }
    c->n_stages_used = 0; /* the late replies are ignored */
}

uint32_t ps_client_reply_flags(const ps_client_t *c)
{
    return c->reply_flags;
}
