/* ps_client.c - request tracking over one DEALER per shard.
 *
 * Gradients are sent zero-copy (zmq_msg_init_data) straight from the
 * caller's buffer; a free callback counts them back, and ps_client_wait
 * does not return while ZeroMQ still holds one, so the caller may reuse
 * the buffer as soon as it returns. */
#include "ps_client.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "ps_half.h"
#include "ps_shardmap.h"
#include "ps_time.h"
#include "ps_wire.h"

#define MAX_SHARDS 1024

typedef struct {
    char name[64];
    uint64_t n_elems;
    int defined;
    uint16_t *wire; /* n_elems half values being sent (F16/BF16 clients) */
} table_info_t;

typedef struct {
    uint64_t request_id;
    uint32_t shard;
    uint32_t table_id;
    uint32_t chunk;
    int op;
    int64_t clock;
    float *dst;        /* where the reply's values go (NULL: none expected) */
    uint64_t offset, len;
    int64_t deadline_ms;
    int64_t waited_ms; /* over all attempts so far */
    int attempts;
    /* what a resend needs (never for INIT_TABLE, whose spec is borrowed) */
    uint32_t flags;
    uint64_t n_samples;
    double grad_scale;
    const void *values;
    uint64_t n_values;
    /* sparse ops: the keys frame, and where the reply's rows go */
    const uint64_t *keys;
    const uint64_t *scatter; /* row i of the reply -> dst + scatter[i] * dim */
    uint32_t dim;
} inflight_t;

/* A sparse request's keys grouped by shard: shard s's keys are
 * keys[off[s] .. off[s+1]), pos[] their positions in the caller's array,
 * vals[] (push) their gradient rows in the same order. Kept until the
 * replies are in (the frames are sent zero-copy). */
typedef struct {
    uint64_t *keys, *pos;
    float *vals;
    uint64_t *off;
    size_t cap, vcap;
} sparse_stage_t;

struct ps_client {
    ps_client_opts_t opts;
    char job[64];
    void *ctx;
    void **socks;
    void **monitors; /* per shard: PAIR receiving that socket's handshake failures */
    char **endpoints;
    char curve_server[41], curve_public[41], curve_secret[41];
    uint32_t n_shards;
    table_info_t *tables;
    uint32_t n_tables;
    inflight_t *inflight;
    size_t n_inflight, cap_inflight;
    uint64_t next_id;
    atomic_int zero_copy_held;
    uint64_t bytes_sent, bytes_received, requests;
    uint32_t reply_flags;
    pthread_t heartbeat_thread;
    int has_heartbeat;
    atomic_int heartbeat_stop;
    /* per shard, from the last HELLO; incarnation is also read by the
     * heartbeat thread, which raises `restarted` when a shard's changes */
    _Atomic uint64_t *incarnation;
    _Atomic int64_t *last_reply_ms; /* per shard: last heartbeat reply (heartbeat thread) */
    int64_t *min_clock, *max_clock;
    uint64_t *shard_generation;
    uint64_t generation;    /* sent with every request */
    atomic_int restarted;   /* 1 + index of a shard seen restarted, or 0 */
    _Atomic uint64_t report_samples, report_loss_bits; /* for heartbeats */
    _Atomic uint64_t hb_bytes_sent, hb_bytes_received;  /* the heartbeat thread's traffic */
    sparse_stage_t stage_pull, stage_push;
};

/* A DEALER to ep, with CURVE if the client has keys. */
static void *open_socket(ps_client_t *c, const char *ep)
{
    void *s = zmq_socket(c->ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    if (c->curve_server[0]) {
        zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, c->curve_server, 40);
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, c->curve_public, 40);
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, c->curve_secret, 40);
    }
    if (zmq_connect(s, ep) != 0) {
        zmq_close(s);
        return NULL;
    }
    return s;
}

/* A PAIR that receives the handshake failures of shard s's socket. */
static void *watch_handshakes(ps_client_t *c, uint32_t s)
{
    char ep[96];
    snprintf(ep, sizeof ep, "inproc://ps-client-%p-%u", (void *)c, s);
    if (zmq_socket_monitor(c->socks[s], ep,
                           ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) != 0)
        return NULL;
    void *m = zmq_socket(c->ctx, ZMQ_PAIR);
    int zero = 0;
    zmq_setsockopt(m, ZMQ_LINGER, &zero, sizeof zero);
    zmq_connect(m, ep);
    return m;
}

/* Reads shard s's handshake failures; PS_EAUTH with the reason if there
 * was one, else PS_OK. */
static int handshake_failure(ps_client_t *c, uint32_t s, ps_errbuf_t *err)
{
    int rc = PS_OK;
    zmq_msg_t ev;
    zmq_msg_init(&ev);
    while (c->monitors[s] && zmq_msg_recv(&ev, c->monitors[s], ZMQ_DONTWAIT) >= 0) {
        uint16_t event = 0;
        uint32_t value = 0;
        if (zmq_msg_size(&ev) >= 6) {
            memcpy(&event, zmq_msg_data(&ev), 2);
            memcpy(&value, (char *)zmq_msg_data(&ev) + 2, 4);
        }
        while (zmq_msg_more(&ev) && zmq_msg_recv(&ev, c->monitors[s], 0) >= 0)
            ;
        const char *why;
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
            why = "refused our CURVE key (not on its allow-list?)";
        else if (!c->curve_server[0])
            /* the server drops a plain-text greeting without a word */
            why = "broke off the handshake: it requires CURVE (set curve_server_key_file and "
                  "curve_secret_file)";
        else if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
            why = "speaks plain text but we use CURVE";
        else
            why = "broke off the CURVE handshake (wrong server key?)";
        rc = ps_err_set(err, PS_EAUTH, "worker %u: shard %u '%s' %s (ZMTP event %u, code %u)",
                        c->opts.rank, s, c->endpoints[s], why, event, value);
    }
    zmq_msg_close(&ev);
    return rc;
}

ps_client_t *ps_client_new(const char *endpoints, const ps_client_opts_t *opts, ps_errbuf_t *err)
{
    ps_client_t *c = ps_xcalloc(1, sizeof *c);
    c->opts = *opts;
    snprintf(c->job, sizeof c->job, "%s", opts->job);
    c->opts.job = c->job;
    c->ctx = zmq_ctx_new();
    c->next_id = 1;
    if (opts->curve_server_key && *opts->curve_server_key) {
        if (strlen(opts->curve_server_key) != 40 || !opts->curve_public_key ||
            strlen(opts->curve_public_key) != 40 || !opts->curve_secret_key ||
            strlen(opts->curve_secret_key) != 40) {
            ps_err_set(err, PS_EINVAL, "CURVE needs the server's public key and our key pair "
                                       "(40 Z85 characters each)");
            goto fail_early;
        }
        memcpy(c->curve_server, opts->curve_server_key, 41);
        memcpy(c->curve_public, opts->curve_public_key, 41);
        memcpy(c->curve_secret, opts->curve_secret_key, 41);
    }
    c->opts.curve_server_key = c->opts.curve_public_key = c->opts.curve_secret_key = NULL;
    atomic_init(&c->zero_copy_held, 0);
    char *list = ps_xstrdup(endpoints), *save = NULL;
    for (char *ep = strtok_r(list, ",", &save); ep; ep = strtok_r(NULL, ",", &save)) {
        if (c->n_shards == MAX_SHARDS) {
            ps_err_set(err, PS_ERANGE, "more than %d servers listed", MAX_SHARDS);
            goto fail;
        }
        void *s = open_socket(c, ep);
        if (!s) {
            ps_err_set(err, PS_EINVAL, "server %u: bad endpoint '%s': %s", c->n_shards, ep,
                       zmq_strerror(zmq_errno()));
            goto fail;
        }
        c->socks = ps_xrealloc(c->socks, (c->n_shards + 1) * sizeof *c->socks);
        c->monitors = ps_xrealloc(c->monitors, (c->n_shards + 1) * sizeof *c->monitors);
        c->endpoints = ps_xrealloc(c->endpoints, (c->n_shards + 1) * sizeof *c->endpoints);
        c->socks[c->n_shards] = s;
        c->endpoints[c->n_shards] = ps_xstrdup(ep);
        c->monitors[c->n_shards] = watch_handshakes(c, c->n_shards);
        c->n_shards++;
    }
    if (c->n_shards == 0) {
        ps_err_set(err, PS_EINVAL, "no server endpoints given");
        goto fail;
    }
    c->incarnation = ps_xcalloc(c->n_shards, sizeof *c->incarnation);
    c->last_reply_ms = ps_xcalloc(c->n_shards, sizeof *c->last_reply_ms);
    c->min_clock = ps_xcalloc(c->n_shards, sizeof *c->min_clock);
    c->max_clock = ps_xcalloc(c->n_shards, sizeof *c->max_clock);
    c->shard_generation = ps_xcalloc(c->n_shards, sizeof *c->shard_generation);
    atomic_init(&c->restarted, 0);
    free(list);
    return c;
fail:
    free(list);
fail_early:
    ps_client_destroy(&c);
    return NULL;
}

void ps_client_destroy(ps_client_t **cp)
{
    ps_client_t *c = *cp;
    if (!c)
        return;
    ps_client_stop_heartbeats(c);
    for (uint32_t i = 0; i < c->n_shards; i++) {
        zmq_socket_monitor(c->socks[i], NULL, 0);
        zmq_close(c->socks[i]);
        if (c->monitors[i])
            zmq_close(c->monitors[i]);
        free(c->endpoints[i]);
    }
    free(c->socks);
    free(c->monitors);
    memset(c->curve_secret, 0, sizeof c->curve_secret);
    free(c->endpoints);
    for (uint32_t i = 0; i < c->n_tables; i++)
        free(c->tables[i].wire);
    free(c->tables);
    free(c->inflight);
    free((void *)c->incarnation);
    free((void *)c->last_reply_ms);
    free(c->min_clock);
    free(c->max_clock);
    free(c->shard_generation);
    sparse_stage_t *stages[2] = {&c->stage_pull, &c->stage_push};
    for (int i = 0; i < 2; i++) {
        free(stages[i]->keys);
        free(stages[i]->pos);
        free(stages[i]->vals);
        free(stages[i]->off);
    }
    zmq_ctx_term(c->ctx);
    free(c);
    *cp = NULL;
}

uint32_t ps_client_n_shards(const ps_client_t *c) { return c->n_shards; }
uint64_t ps_client_bytes_sent(const ps_client_t *c)
{
    return c->bytes_sent + atomic_load(&((ps_client_t *)c)->hb_bytes_sent);
}

uint64_t ps_client_bytes_received(const ps_client_t *c)
{
    return c->bytes_received + atomic_load(&((ps_client_t *)c)->hb_bytes_received);
}
uint64_t ps_client_requests(const ps_client_t *c) { return c->requests; }
uint32_t ps_client_reply_flags(const ps_client_t *c) { return c->reply_flags; }

static void header_init(ps_client_t *c, Ps__Header *h, int op, uint64_t id)
{
    ps__header__init(h);
    h->version = PS_PROTOCOL_VERSION;
    h->op = op;
    h->request_id = id;
    h->job = c->job;
    h->rank = c->opts.rank;
    h->dtype = c->opts.dtype;
    h->generation = c->generation;
}

static inflight_t *track(ps_client_t *c, uint32_t shard, const Ps__Header *h, const void *values,
                         uint64_t n_values, float *dst, uint64_t offset, uint64_t len)
{
    if (c->n_inflight == c->cap_inflight) {
        c->cap_inflight = c->cap_inflight ? c->cap_inflight * 2 : 32;
        c->inflight = ps_xrealloc(c->inflight, c->cap_inflight * sizeof *c->inflight);
    }
    inflight_t *f = &c->inflight[c->n_inflight++];
    *f = (inflight_t){.request_id = h->request_id, .shard = shard, .table_id = h->table_id,
                      .chunk = h->chunk, .op = h->op, .clock = h->clock, .dst = dst,
                      .offset = offset, .len = len,
                      .deadline_ms = ps_time_ms() + c->opts.timeout_ms, .attempts = 1,
                      .flags = h->flags, .n_samples = h->n_samples, .grad_scale = h->grad_scale,
                      .values = values, .n_values = n_values};
    c->requests++;
    return f;
}

static void release_zero_copy(void *data, void *hint)
{
    (void)data;
    atomic_fetch_sub((atomic_int *)hint, 1);
}

/* Sends one zero-copy frame; ZeroMQ lets go of buf later (zero_copy_held). */
static int send_zero_copy(ps_client_t *c, void *sock, const void *buf, size_t bytes, int more)
{
    zmq_msg_t m;
    atomic_fetch_add(&c->zero_copy_held, 1);
    zmq_msg_init_data(&m, (void *)buf, bytes, release_zero_copy, &c->zero_copy_held);
    int n = ps_wire_send_msg(sock, &m, more);
    if (n >= 0)
        c->bytes_sent += (uint64_t)n;
    return n;
}

/* The frames of every request: header, then (sparse ops) h->n_elems keys,
 * then n_values values of the header's dtype; keys and values zero-copy. */
static int send_frames(ps_client_t *c, uint32_t shard, Ps__Header *h, const uint64_t *keys,
                       const void *values, uint64_t n_values)
{
    void *s = c->socks[shard];
    h->incarnation = atomic_load(&c->incarnation[shard]);
    int n = ps_wire_send_header(s, h, keys || values);
    if (n < 0)
        return n;
    c->bytes_sent += (uint64_t)n;
    if (keys && (n = send_zero_copy(c, s, keys, h->n_elems * sizeof *keys, values ? ZMQ_SNDMORE : 0)) < 0)
        return n;
    if (values && (n = send_zero_copy(c, s, values, n_values * ps_dtype_size(h->dtype), 0)) < 0)
        return n;
    return PS_OK;
}

/* Sends header (+ values of the header's dtype, zero-copy) to one shard and
 * tracks it. */
static int send_request(ps_client_t *c, uint32_t shard, Ps__Header *h, const void *values,
                        uint64_t n_values, float *dst, uint64_t dst_offset, uint64_t dst_len)
{
    int rc = send_frames(c, shard, h, NULL, values, n_values);
    if (rc != PS_OK)
        return rc;
    track(c, shard, h, values, n_values, dst, dst_offset, dst_len);
    return PS_OK;
}

/* Sends request f again, unchanged (same id, clock and values): the server
 * deduplicates pushes by worker and clock, so a retry is never applied
 * twice, and a second reply to the same id is ignored. */
static int resend(ps_client_t *c, inflight_t *f)
{
    Ps__Header h;
    header_init(c, &h, f->op, f->request_id);
    h.table_id = f->table_id;
    h.chunk = f->chunk;
    h.clock = f->clock;
    h.flags = f->flags;
    h.offset = f->offset;
    h.n_elems = f->len;
    h.n_samples = f->n_samples;
    h.grad_scale = f->grad_scale;
    if (f->keys)
        h.dtype = PS__DTYPE__F32; /* sparse rows always travel as f32 */
    int rc = send_frames(c, f->shard, &h, f->keys, f->values, f->n_values);
    return rc < 0 ? rc : PS_OK;
}

static inflight_t *find_inflight(ps_client_t *c, uint64_t id)
{
    for (size_t i = 0; i < c->n_inflight; i++)
        if (c->inflight[i].request_id == id)
            return &c->inflight[i];
    return NULL;
}

static int describe(ps_client_t *c, ps_errbuf_t *err, const inflight_t *f, int code,
                    const char *what)
{
    const char *tname = f->table_id < c->n_tables ? c->tables[f->table_id].name : "";
    return ps_err_set(err, code, "worker %u: shard %u '%s': %s table %u '%s' chunk %u clock %lld: %s",
                      c->opts.rank, f->shard, c->endpoints[f->shard], ps_op_name(f->op),
                      f->table_id, tname, f->chunk, (long long)f->clock, what);
}

/* Writes n reply values of dtype into dst (fp32) in one pass. Frame bytes
 * may sit at any address: an odd one is first copied for the u16 reads. */
static void copy_reply(int dtype, const void *src, float *dst, uint64_t n)
{
    if (dtype == PS__DTYPE__F32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    uint16_t bounce[4096];
    for (uint64_t i = 0; i < n; i += 4096) {
        uint64_t m = n - i < 4096 ? n - i : 4096;
        const uint16_t *s = (const uint16_t *)src + i;
        if ((uintptr_t)src & 1u) {
            memcpy(bounce, (const char *)src + i * 2, m * 2);
            s = bounce;
        }
        if (dtype == PS__DTYPE__F16)
            ps_f16_to_f32_n(s, dst + i, m);
        else
            ps_bf16_to_f32_n(s, dst + i, m);
    }
}

/* Handles one reply from shard; PS_OK or an error about its request. */
static int take_reply(ps_client_t *c, uint32_t shard, ps_errbuf_t *err)
{
    ps_wire_msg_t m;
    int rc = ps_wire_recv(c->socks[shard], &m, ZMQ_DONTWAIT);
    if (rc == PS_EAGAIN)
        return PS_EAGAIN;
    c->bytes_received += ps_wire_msg_bytes(&m);
    Ps__Header *h = m.n_parts >= 1 ? ps_wire_unpack_header(&m.parts[0]) : NULL;
    if (rc != PS_OK || !h) {
        ps_wire_msg_close(&m);
        if (h)
            ps__header__free_unpacked(h, NULL);
        return ps_err_set(err, PS_EPROTO, "worker %u: shard %u '%s' sent a malformed reply",
                          c->opts.rank, shard, c->endpoints[shard]);
    }
    inflight_t *f = find_inflight(c, h->request_id);
    if (!f) { /* a late reply to a request we gave up on */
        ps__header__free_unpacked(h, NULL);
        ps_wire_msg_close(&m);
        return PS_OK;
    }
    rc = PS_OK;
    if (h->status != 0) {
        char what[600];
        snprintf(what, sizeof what, "%s: %s", ps_strerror(h->status), h->message);
        rc = describe(c, err, f, h->status, what);
    } else if (f->scatter) {
        size_t bytes = m.n_parts == 2 ? zmq_msg_size(&m.parts[1]) : 0;
        size_t row = f->dim * sizeof(float);
        if (h->n_elems != f->len || h->dtype != PS__DTYPE__F32 || bytes != f->len * row) {
            rc = describe(c, err, f, PS_EPROTO, "sparse reply does not carry the rows asked for");
        } else {
            const char *rows = zmq_msg_data(&m.parts[1]);
            for (uint64_t i = 0; i < f->len; i++)
                memcpy(f->dst + f->scatter[i] * f->dim, rows + i * row, row);
        }
    } else if (f->dst) {
        size_t bytes = m.n_parts == 2 ? zmq_msg_size(&m.parts[1]) : 0;
        if (h->offset != f->offset || h->n_elems != f->len || h->dtype != (Ps__DType)c->opts.dtype ||
            bytes != f->len * ps_dtype_size(c->opts.dtype))
            rc = describe(c, err, f, PS_EPROTO, "reply does not carry the slice asked for");
        else
            copy_reply(h->dtype, zmq_msg_data(&m.parts[1]), f->dst + f->offset, f->len);
    }
    c->reply_flags |= h->flags;
    *f = c->inflight[--c->n_inflight];
    ps__header__free_unpacked(h, NULL);
    ps_wire_msg_close(&m);
    return rc;
}

/* Is a request for table (ALL_TABLES: any) still waiting for its reply? */
#define ALL_TABLES UINT32_MAX
static bool awaiting(const ps_client_t *c, uint32_t table)
{
    if (table == ALL_TABLES)
        return c->n_inflight > 0;
    for (size_t i = 0; i < c->n_inflight; i++)
        if (c->inflight[i].table_id == table)
            return true;
    return false;
}

/* Takes replies (of any table, as they come) until none for table is due;
 * watches every request's deadline meanwhile. */
static int wait_replies(ps_client_t *c, uint32_t table, ps_errbuf_t *err)
{
    zmq_pollitem_t items[2 * MAX_SHARDS];
    int n_items = 0;
    for (uint32_t i = 0; i < c->n_shards; i++)
        items[n_items++] = (zmq_pollitem_t){c->socks[i], 0, ZMQ_POLLIN, 0};
    for (uint32_t i = 0; i < c->n_shards; i++)
        if (c->monitors[i])
            items[n_items++] = (zmq_pollitem_t){c->monitors[i], 0, ZMQ_POLLIN, 0};
    while (awaiting(c, table)) {
        int64_t now = ps_time_ms(), next = INT64_MAX;
        for (size_t i = 0; i < c->n_inflight; i++) {
            inflight_t *f = &c->inflight[i];
            if (f->deadline_ms <= now) {
                int64_t waited = f->waited_ms + c->opts.timeout_ms * (1LL << (f->attempts - 1));
                if (f->attempts > c->opts.retries || f->op == PS__OP__INIT_TABLE) {
                    char what[160];
                    snprintf(what, sizeof what, "no reply after %lld ms and %d attempts",
                             (long long)waited, f->attempts);
                    return describe(c, err, f, PS_ETIME, what);
                }
                f->waited_ms = waited;
                f->attempts++;
                f->deadline_ms = now + c->opts.timeout_ms * (1LL << (f->attempts - 1));
                if (resend(c, f) != PS_OK)
                    return describe(c, err, f, PS_ENET, "cannot resend");
            }
            if (f->deadline_ms < next)
                next = f->deadline_ms;
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
        if (c->opts.stop && *c->opts.stop)
            return ps_err_set(err, PS_EINTR, "worker %u: interrupted with %zu requests in flight",
                              c->opts.rank, c->n_inflight);
        int restarted = atomic_load(&c->restarted);
        if (restarted)
            return ps_err_set(err, PS_ERESTARTED, "worker %u: shard %d '%s' restarted",
                              c->opts.rank, restarted - 1, c->endpoints[restarted - 1]);
        /* Wake at least every 100 ms to notice a stop request. */
        int64_t wait_ms = next - now < 100 ? next - now : 100;
        int n = zmq_poll(items, n_items, (long)wait_ms);
        if (n < 0 && zmq_errno() != EINTR)
            return ps_err_set(err, PS_ENET, "worker %u: poll failed: %s", c->opts.rank,
                              zmq_strerror(zmq_errno()));
        for (int i = (int)c->n_shards; n > 0 && i < n_items; i++) {
            if (!(items[i].revents & ZMQ_POLLIN))
                continue;
            for (uint32_t s = 0; s < c->n_shards; s++)
                if (c->monitors[s] == items[i].socket && handshake_failure(c, s, err) != PS_OK)
                    return PS_EAUTH;
        }
        for (uint32_t i = 0; n > 0 && i < c->n_shards; i++) {
            if (!(items[i].revents & ZMQ_POLLIN))
                continue;
            int rc;
            while ((rc = take_reply(c, i, err)) == PS_OK)
                ;
            if (rc != PS_EAGAIN)
                return rc;
        }
    }
    return PS_OK;
}

int ps_client_wait_table(ps_client_t *c, uint32_t id, ps_errbuf_t *err)
{
    return wait_replies(c, id, err);
}

int ps_client_wait(ps_client_t *c, ps_errbuf_t *err)
{
    c->reply_flags = 0;
    int rc = wait_replies(c, ALL_TABLES, err);
    if (rc != PS_OK)
        return rc;
    /* Every reply is in, so every request was read by its server; the I/O
     * thread lets go of the zero-copy buffers right after. */
    int64_t deadline = ps_time_ms() + c->opts.timeout_ms;
    while (atomic_load(&c->zero_copy_held) > 0) {
        if (ps_time_ms() > deadline)
            return ps_err_set(err, PS_ETIME, "worker %u: ZeroMQ still holds %d send buffers",
                              c->opts.rank, atomic_load(&c->zero_copy_held));
        sched_yield();
    }
    return PS_OK;
}

int ps_client_recover(ps_client_t *c, bool exact, int64_t *clock, ps_errbuf_t *err)
{
    ps_client_reset(c);
    int64_t low;
    int rc = ps_client_hello(c, &low, err);
    if (rc != PS_OK)
        return rc;
    uint64_t gen_min = UINT64_MAX, gen_max = 0;
    int64_t high = 0;
    for (uint32_t s = 0; s < c->n_shards; s++) {
        gen_min = c->shard_generation[s] < gen_min ? c->shard_generation[s] : gen_min;
        gen_max = c->shard_generation[s] > gen_max ? c->shard_generation[s] : gen_max;
        high = c->max_clock[s] > high ? c->max_clock[s] : high;
    }
    /* Consistent: one generation, and no chunk ahead of the lowest (or, when
     * not exact, at most one round ahead: it ignores the replayed pushes,
     * but the replayed step reads its newer parameters). */
    *clock = low;
    if (gen_min == gen_max && high <= low + (exact ? 0 : 1))
        return PS_OK;
    /* A rollback half done by another worker is finished at its generation;
     * otherwise a new one starts. Every shard reloads its checkpoint of the
     * lowest clock; the shards that already did just acknowledge. */
    uint64_t target = gen_min == gen_max ? gen_max + 1 : gen_max;
    for (uint32_t s = 0; s < c->n_shards; s++) {
        Ps__Header h;
        header_init(c, &h, PS__OP__ROLLBACK, c->next_id++);
        h.clock = low;
        h.generation = target;
        if ((rc = send_request(c, s, &h, NULL, 0, NULL, 0, 0)) != PS_OK)
            return ps_err_set(err, rc, "worker %u: cannot send ROLLBACK to shard %u", c->opts.rank, s);
    }
    if ((rc = ps_client_wait(c, err)) != PS_OK)
        return rc;
    c->generation = target;
    return PS_OK;
}

static int broadcast(ps_client_t *c, int op, ps_errbuf_t *err)
{
    for (uint32_t s = 0; s < c->n_shards; s++) {
        Ps__Header h;
        header_init(c, &h, op, c->next_id++);
        int rc = send_request(c, s, &h, NULL, 0, NULL, 0, 0);
        if (rc != PS_OK)
            return ps_err_set(err, rc, "worker %u: cannot send %s to shard %u '%s'",
                              c->opts.rank, ps_op_name(op), s, c->endpoints[s]);
    }
    return ps_client_wait(c, err);
}

/* The heartbeat thread: its own DEALER per shard (ZeroMQ sockets belong to
 * one thread), a HEARTBEAT to every shard each period, replies discarded.
 * It runs while the main thread computes or waits, so only a process that
 * is really stopped or gone falls silent. */
static void *heartbeat_run(void *arg)
{
    ps_client_t *c = arg;
    void **socks = ps_xcalloc(c->n_shards, sizeof *socks);
    zmq_pollitem_t *items = ps_xcalloc(c->n_shards, sizeof *items);
    for (uint32_t s = 0; s < c->n_shards; s++) {
        socks[s] = open_socket(c, c->endpoints[s]);
        items[s] = (zmq_pollitem_t){socks[s], 0, ZMQ_POLLIN, 0};
    }
    int64_t next = 0;
    while (!atomic_load(&c->heartbeat_stop)) {
        if (ps_time_ms() >= next) {
            for (uint32_t s = 0; s < c->n_shards; s++) {
                /* built here, not by header_init: the main thread may be
                 * changing the generation this very moment */
                Ps__Header h;
                ps__header__init(&h);
                h.version = PS_PROTOCOL_VERSION;
                h.op = PS__OP__HEARTBEAT;
                h.job = c->job;
                h.rank = c->opts.rank;
                h.n_samples = atomic_load(&c->report_samples);
                uint64_t bits = atomic_load(&c->report_loss_bits);
                memcpy(&h.loss, &bits, sizeof h.loss);
                int n = ps_wire_send_header(socks[s], &h, 0);
                if (n > 0)
                    atomic_fetch_add(&c->hb_bytes_sent, (uint64_t)n);
            }
            next = ps_time_ms() + c->opts.heartbeat_ms;
        }
        if (zmq_poll(items, (int)c->n_shards, 50) > 0) {
            for (uint32_t s = 0; s < c->n_shards; s++) {
                ps_wire_msg_t m;
                while (ps_wire_recv(socks[s], &m, ZMQ_DONTWAIT) != PS_EAGAIN) {
                    atomic_fetch_add(&c->hb_bytes_received, ps_wire_msg_bytes(&m));
                    Ps__Header *r = m.n_parts ? ps_wire_unpack_header(&m.parts[0]) : NULL;
                    uint64_t known = atomic_load(&c->incarnation[s]);
                    atomic_store(&c->last_reply_ms[s], ps_time_ms());
                    if (r && r->incarnation && known && r->incarnation != known)
                        atomic_store(&c->restarted, (int)s + 1);
                    if (r)
                        ps__header__free_unpacked(r, NULL);
                    ps_wire_msg_close(&m);
                }
            }
        }
    }
    for (uint32_t s = 0; s < c->n_shards; s++)
        zmq_close(socks[s]);
    free(socks);
    free(items);
    return NULL;
}

void ps_client_stop_heartbeats(ps_client_t *c)
{
    if (c->has_heartbeat) {
        atomic_store(&c->heartbeat_stop, 1);
        pthread_join(c->heartbeat_thread, NULL);
        c->has_heartbeat = 0;
    }
}

void ps_client_report(ps_client_t *c, uint64_t samples, double loss)
{
    uint64_t bits;
    memcpy(&bits, &loss, sizeof bits);
    atomic_store(&c->report_samples, samples);
    atomic_store(&c->report_loss_bits, bits);
}

void ps_client_reset(ps_client_t *c)
{
    c->n_inflight = 0;
    int64_t deadline = ps_time_ms() + c->opts.timeout_ms;
    while (atomic_load(&c->zero_copy_held) > 0 && ps_time_ms() < deadline)
        sched_yield();
}

/* Waits (against the request deadline) for the reply to request_id from
 * shard s, dropping late replies to requests given up on. The caller frees
 * the header. NULL with err set on timeout, interruption or a bad reply. */
static Ps__Header *await_reply(ps_client_t *c, uint32_t s, uint64_t request_id, const char *what,
                               ps_errbuf_t *err)
{
    zmq_pollitem_t items[2] = {{c->socks[s], 0, ZMQ_POLLIN, 0}, {c->monitors[s], 0, ZMQ_POLLIN, 0}};
    int64_t deadline = ps_time_ms() + c->opts.timeout_ms;
    while (ps_time_ms() < deadline) {
        if (c->opts.stop && *c->opts.stop) {
            ps_err_set(err, PS_EINTR, "worker %u: interrupted waiting for %s", c->opts.rank, what);
            return NULL;
        }
        int64_t left = ps_deadline_left_ms(deadline);
        if (zmq_poll(items, c->monitors[s] ? 2 : 1, (long)(left < 100 ? left : 100)) <= 0)
            continue;
        if ((items[1].revents & ZMQ_POLLIN) && handshake_failure(c, s, err) != PS_OK)
            return NULL;
        if (!(items[0].revents & ZMQ_POLLIN))
            continue;
        ps_wire_msg_t m;
        int rc = ps_wire_recv(c->socks[s], &m, 0);
        c->bytes_received += ps_wire_msg_bytes(&m);
        Ps__Header *r = rc == PS_OK && m.n_parts >= 1 ? ps_wire_unpack_header(&m.parts[0]) : NULL;
        ps_wire_msg_close(&m);
        if (!r) {
            ps_err_set(err, PS_EPROTO, "worker %u: shard %u '%s': malformed %s reply",
                       c->opts.rank, s, c->endpoints[s], what);
            return NULL;
        }
        if (r->request_id == request_id)
            return r;
        ps__header__free_unpacked(r, NULL); /* a late reply to an abandoned request */
    }
    ps_err_set(err, PS_ETIME,
               "worker %u: shard %u '%s': no reply to %s after %lld ms (is ps-server running there?)",
               c->opts.rank, s, c->endpoints[s], what, (long long)c->opts.timeout_ms);
    return NULL;
}

int ps_client_hello(ps_client_t *c, int64_t *clock, ps_errbuf_t *err)
{
    int64_t resume = INT64_MAX;
    c->generation = 0;
    /* The shard index check needs the replies themselves, so HELLO is sent
     * and collected one shard at a time. */
    for (uint32_t s = 0; s < c->n_shards; s++) {
        Ps__Header h;
        header_init(c, &h, PS__OP__HELLO, c->next_id++);
        h.world_size = c->opts.world;
        h.max_staleness = c->opts.max_staleness;
        int rc = ps_wire_send_header(c->socks[s], &h, 0);
        if (rc < 0)
            return ps_err_set(err, rc, "worker %u: cannot send HELLO to shard %u '%s'",
                              c->opts.rank, s, c->endpoints[s]);
        c->bytes_sent += (uint64_t)rc;
        Ps__Header *r = await_reply(c, s, h.request_id, "HELLO", err);
        if (!r)
            return err ? err->code : PS_ETIME;
        rc = r->status;
        if (rc != 0)
            ps_err_set(err, rc, "worker %u: shard %u '%s' refused HELLO: %s: %s", c->opts.rank, s,
                       c->endpoints[s], ps_strerror(rc), r->message);
        else if (r->shard != s || r->n_shards != c->n_shards)
            rc = ps_err_set(err, PS_ECONFLICT,
                            "worker %u: server '%s' is shard %u of %u, but is listed as %u of %u",
                            c->opts.rank, c->endpoints[s], r->shard, r->n_shards, s, c->n_shards);
        if (r->clock < resume)
            resume = r->clock;
        atomic_store(&c->incarnation[s], r->incarnation);
        c->min_clock[s] = r->clock;
        c->max_clock[s] = r->max_clock;
        c->shard_generation[s] = r->generation;
        if (s == 0 || r->generation > c->generation)
            c->generation = r->generation;
        ps__header__free_unpacked(r, NULL);
        if (rc != 0)
            return rc;
    }
    if (clock)
        *clock = resume == INT64_MAX ? 0 : resume;
    atomic_store(&c->restarted, 0);
    for (uint32_t s = 0; s < c->n_shards; s++)
        atomic_store(&c->last_reply_ms[s], ps_time_ms()); /* HELLO was answered just now */
    if (c->opts.heartbeat_ms > 0 && !c->has_heartbeat) {
        atomic_init(&c->heartbeat_stop, 0);
        if (pthread_create(&c->heartbeat_thread, NULL, heartbeat_run, c) != 0)
            return ps_err_set(err, PS_ENOMEM, "worker %u: cannot start the heartbeat thread",
                              c->opts.rank);
        c->has_heartbeat = 1;
    }
    return PS_OK;
}

static table_info_t *table_info(ps_client_t *c, uint32_t id)
{
    if (id >= c->n_tables) {
        c->tables = ps_xrealloc(c->tables, (id + 1) * sizeof *c->tables);
        memset(c->tables + c->n_tables, 0, (id + 1 - c->n_tables) * sizeof *c->tables);
        c->n_tables = id + 1;
    }
    return &c->tables[id];
}

int ps_client_init_table(ps_client_t *c, uint32_t id, const char *name, const uint64_t *shape,
                         int ndim, const ps_optim_spec_t *optim, const float *init,
                         ps_errbuf_t *err)
{
    table_info_t *t = table_info(c, id);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_elems = 1;
    for (int i = 0; i < ndim; i++)
        t->n_elems *= shape[i];
    t->defined = 1;
    if (c->opts.dtype != PS__DTYPE__F32 && !t->wire)
        t->wire = ps_xmalloc(t->n_elems * sizeof(uint16_t));
    Ps__OptimSpec wire_optim;
    ps_optim_spec_to_wire(optim, &wire_optim);
    Ps__TableSpec spec;
    ps__table_spec__init(&spec);
    spec.name = t->name;
    spec.n_elems = t->n_elems;
    spec.shape = (uint64_t *)shape;
    spec.n_shape = (size_t)ndim;
    spec.optim = &wire_optim;
    uint32_t n_chunks = ps_shardmap_n_chunks(t->n_elems, c->n_shards);
    for (uint32_t k = 0; k < n_chunks; k++) {
        ps_chunk_t ch = ps_shardmap_chunk(t->n_elems, id, k, c->n_shards);
        Ps__Header h;
        header_init(c, &h, PS__OP__INIT_TABLE, c->next_id++);
        h.table_id = id;
        h.chunk = k;
        h.table = &spec;
        h.offset = ch.offset;
        h.n_elems = ch.len;
        h.dtype = PS__DTYPE__F32; /* initial values travel exact */
        int rc = send_request(c, ch.shard, &h, init + ch.offset, ch.len, NULL, 0, 0);
        if (rc != PS_OK)
            return ps_err_set(err, rc, "worker %u: cannot send INIT_TABLE to shard %u",
                              c->opts.rank, ch.shard);
    }
    return ps_client_wait(c, err);
}

static int send_table_op(ps_client_t *c, int op, uint32_t id, int64_t clock, uint32_t flags,
                         const float *grad, uint64_t n_samples, float grad_scale, float *params)
{
    if (id >= c->n_tables || c->tables[id].defined != 1)
        return PS_ENOTABLE;
    table_info_t *t = &c->tables[id];
    uint64_t n = t->n_elems;
    const void *wire = grad;
    size_t dsize = ps_dtype_size(c->opts.dtype);
    if (grad && c->opts.dtype == PS__DTYPE__F16) {
        ps_f32_to_f16_scaled_n(grad, t->wire, n, grad_scale);
        wire = t->wire;
    } else if (grad && c->opts.dtype == PS__DTYPE__BF16) {
        ps_f32_to_bf16_n(grad, t->wire, n); /* bf16 has fp32's range: no scaling */
        wire = t->wire;
        grad_scale = 1;
    } else if (grad && grad_scale != 1.0f) {
        return PS_EINVAL; /* fp32 pushes are never scaled */
    }
    uint32_t n_chunks = ps_shardmap_n_chunks(n, c->n_shards);
    for (uint32_t k = 0; k < n_chunks; k++) {
        ps_chunk_t ch = ps_shardmap_chunk(n, id, k, c->n_shards);
        Ps__Header h;
        header_init(c, &h, op, c->next_id++);
        h.table_id = id;
        h.chunk = k;
        h.clock = clock;
        h.flags = flags;
        h.offset = ch.offset;
        h.n_elems = ch.len;
        h.n_samples = n_samples;
        h.grad_scale = grad_scale;
        int rc = send_request(c, ch.shard, &h, wire ? (const char *)wire + ch.offset * dsize : NULL,
                              ch.len, params, ch.offset, ch.len);
        if (rc != PS_OK)
            return rc;
    }
    return PS_OK;
}

int ps_client_push_pull(ps_client_t *c, uint32_t id, int64_t clock, const float *grad,
                        uint64_t n_samples, float grad_scale, uint32_t flags, float *params)
{
    return send_table_op(c, PS__OP__PUSH_PULL, id, clock, flags, grad, n_samples, grad_scale,
                         params);
}

int ps_client_pull(ps_client_t *c, uint32_t id, int64_t clock, uint32_t flags, float *params)
{
    return send_table_op(c, PS__OP__PULL, id, clock, flags, NULL, 0, 1.0f, params);
}

int ps_client_done(ps_client_t *c, ps_errbuf_t *err)
{
    return broadcast(c, PS__OP__DONE, err);
}

int ps_client_bye(ps_client_t *c, ps_errbuf_t *err)
{
    return broadcast(c, PS__OP__BYE, err);
}

/* ---- sparse tables ----------------------------------------------------- */

int ps_client_init_sparse(ps_client_t *c, uint32_t id, const char *name, uint32_t dim,
                          const ps_optim_spec_t *optim, double init_scale, uint64_t seed,
                          ps_errbuf_t *err)
{
    table_info_t *t = table_info(c, id);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_elems = dim; /* per row */
    t->defined = 2;   /* sparse */
    Ps__OptimSpec wire_optim;
    ps_optim_spec_to_wire(optim, &wire_optim);
    Ps__TableSpec spec;
    ps__table_spec__init(&spec);
    spec.name = t->name;
    spec.optim = &wire_optim;
    spec.sparse = 1;
    spec.dim = dim;
    spec.init_scale = init_scale;
    spec.seed = seed;
    for (uint32_t s = 0; s < c->n_shards; s++) {
        Ps__Header h;
        header_init(c, &h, PS__OP__INIT_TABLE, c->next_id++);
        h.table_id = id;
        h.table = &spec;
        int rc = send_request(c, s, &h, NULL, 0, NULL, 0, 0);
        if (rc != PS_OK)
            return ps_err_set(err, rc, "worker %u: cannot send INIT_TABLE to shard %u",
                              c->opts.rank, s);
    }
    return ps_client_wait(c, err);
}

static void stage_reserve(sparse_stage_t *st, uint64_t n, uint64_t n_vals, uint32_t n_shards)
{
    if (n > st->cap) {
        st->cap = n * 2;
        st->keys = ps_xrealloc(st->keys, st->cap * sizeof *st->keys);
        st->pos = ps_xrealloc(st->pos, st->cap * sizeof *st->pos);
    }
    if (n_vals > st->vcap) {
        st->vcap = n_vals * 2;
        st->vals = ps_xrealloc(st->vals, st->vcap * sizeof *st->vals);
    }
    if (!st->off)
        st->off = ps_xmalloc((n_shards + 1) * sizeof *st->off);
}

/* Groups keys (and their gradient rows) by shard: a counting sort, O(n). */
static void stage_keys(ps_client_t *c, sparse_stage_t *st, const uint64_t *keys, uint64_t n,
                       const float *grads, uint32_t dim)
{
    stage_reserve(st, n, grads ? n * dim : 0, c->n_shards);
    uint64_t *off = st->off;
    memset(off, 0, (c->n_shards + 1) * sizeof *off);
    for (uint64_t i = 0; i < n; i++)
        off[ps_shardmap_key_shard(keys[i], c->n_shards) + 1]++;
    for (uint32_t s = 0; s < c->n_shards; s++)
        off[s + 1] += off[s];
    /* fill with a moving cursor per shard, then restore the offsets */
    for (uint64_t i = 0; i < n; i++) {
        uint32_t s = ps_shardmap_key_shard(keys[i], c->n_shards);
        uint64_t at = off[s]++;
        st->keys[at] = keys[i];
        st->pos[at] = i;
        if (grads)
            memcpy(st->vals + at * dim, grads + i * dim, dim * sizeof(float));
    }
    for (uint32_t s = c->n_shards; s > 0; s--)
        off[s] = off[s - 1];
    off[0] = 0;
}

static int send_sparse(ps_client_t *c, int op, uint32_t id, int64_t clock, uint32_t flags,
                       const uint64_t *keys, uint64_t n, const float *grads, float *rows)
{
    if (id >= c->n_tables || c->tables[id].defined != 2)
        return PS_ENOTABLE;
    uint32_t dim = (uint32_t)c->tables[id].n_elems;
    sparse_stage_t *st = op == PS__OP__SPARSE_PUSH ? &c->stage_push : &c->stage_pull;
    stage_keys(c, st, keys, n, grads, dim);
    for (uint32_t s = 0; s < c->n_shards; s++) {
        uint64_t a = st->off[s], len = st->off[s + 1] - a;
        if (!len)
            continue;
        Ps__Header h;
        header_init(c, &h, op, c->next_id++);
        h.dtype = PS__DTYPE__F32;
        h.table_id = id;
        h.clock = clock;
        h.flags = flags;
        h.n_elems = len;
        const float *vals = grads ? st->vals + a * dim : NULL;
        int rc = send_frames(c, s, &h, st->keys + a, vals, len * dim);
        if (rc != PS_OK)
            return rc;
        inflight_t *f = track(c, s, &h, vals, len * dim, rows, 0, len);
        f->keys = st->keys + a;
        f->scatter = grads ? NULL : st->pos + a;
        f->dim = dim;
        if (grads)
            f->dst = NULL;
    }
    return PS_OK;
}

int ps_client_sparse_pull(ps_client_t *c, uint32_t id, int64_t clock, uint32_t flags,
                          const uint64_t *keys, uint64_t n, float *rows)
{
    return send_sparse(c, PS__OP__SPARSE_PULL, id, clock, flags, keys, n, NULL, rows);
}

int ps_client_sparse_push(ps_client_t *c, uint32_t id, int64_t clock, const uint64_t *keys,
                          uint64_t n, const float *grads)
{
    return send_sparse(c, PS__OP__SPARSE_PUSH, id, clock, 0, keys, n, grads, NULL);
}
