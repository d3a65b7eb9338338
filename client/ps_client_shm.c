/* ps_client_shm.c - the worker side of the same-host data path: one
 * shared region per shard connection, offered at HELLO, and per chunk a
 * push slot and a reply slot cut from it. A request that uses the region
 * carries only its header; everything else about it (ids, clocks,
 * deadlines, resends, dedup) is as over TCP. Resends always go over TCP
 * (only a request's first attempt uses the region), so each slot has at
 * most one request that may touch it: the one it is busy with. Thread of
 * the client (see ps_client_int.h). */
#include "ps_client_int.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ps_log.h"
#include "ps_shardmap.h"
#include "ps_shm.h"
#include "ps_time.h"

/* Address space only: pages cost memory once a slot touches them, so the
 * size only bounds the chunks that fit (the rest go over TCP). */
#define PSCL_SHM_BYTES (1ULL << 30)

int ps_client_set_same_host(ps_client_t *c, bool on)
{
    if (c->said_hello)
        return PS_EINVAL;
    c->shm_off = !on;
    return PS_OK;
}

uint64_t ps_client_shm_requests(const ps_client_t *c)
{
    return c->shm_requests;
}

uint64_t ps_client_bell_requests(const ps_client_t *c)
{
    return c->bell_requests;
}

static void close_pipes(pscl_shm_t *r)
{
    for (int i = 0; i < 2; i++) {
        if (r->bell[i] >= 0)
            close(r->bell[i]);
        r->bell[i] = -1;
    }
    if (r->answer_fd >= 0)
        close(r->answer_fd);
    r->answer_fd = -1;
    r->bell_on = false;
    ps_bell_reader_free(&r->reader);
}

/* The two pipes; false (logged, none made) if they cannot be. */
static bool make_pipes(ps_client_t *c, uint32_t s, pscl_shm_t *r)
{
    int answer[2] = {-1, -1};
    ps_errbuf_t err;
    if (ps_bell_pipe(r->bell, &err) == PS_OK && ps_bell_pipe(answer, &err) == PS_OK) {
        /* the shard opens the read end again for writing: it alone writes */
        close(answer[1]);
        r->answer_fd = answer[0];
        return true;
    }
    ps_log(PS_LOG_NOTICE, "worker %u: shard %u: no doorbell, headers over ZeroMQ: %s", c->opts.rank,
           s, err.msg);
    close_pipes(r);
    return false;
}

/* A request taken back out of the doorbell: it never reaches the shard,
 * so the slots it holds are free. */
static int take_back(void *arg, const uint8_t *frame, size_t len)
{
    Ps__Header *h = ps__header__unpack(NULL, len, frame);
    if (h) {
        pscl_shm_release(arg, h);
        ps__header__free_unpacked(h, NULL);
    }
    return PS_OK;
}

/* Empties shard s's request pipe. One read takes the whole pipe (the
 * reader holds more than its capacity), so a frame is never split
 * between us and the shard, should it be reading too. */
static void drain_requests(ps_client_t *c, pscl_shm_t *r)
{
    if (r->bell[0] < 0)
        return;
    ps_bell_reader_t back = {0};
    ps_bell_take(&back, r->bell[0], take_back, c);
    ps_bell_reader_free(&back);
}

/* Reads a non-blocking pipe empty (what it held is dropped). */
static void drain(int fd)
{
    char buf[4096];
    for (int i = 0; fd >= 0 && i < 64 && read(fd, buf, sizeof buf) > 0; i++)
        ;
}

/* Makes shard s's region; false (logged) if this host will not. */
static bool make_region(ps_client_t *c, uint32_t s)
{
    pscl_shm_t *r = &c->shm[s];
    if (r->base)
        return true;
    if (r->fd == -2) /* tried and failed: said once */
        return false;
    r->nonce = ((uint64_t)ps_time_ns() * 0x9e3779b97f4a7c15ULL) ^ c->worker_incarnation ^ s;
    ps_errbuf_t err;
    if (ps_shm_create(PSCL_SHM_BYTES, r->nonce, &r->fd, &r->base, &err) != PS_OK) {
        ps_log(PS_LOG_NOTICE, "worker %u: shard %u: no same-host path, TCP only: %s", c->opts.rank,
               s, err.msg);
        r->fd = -2;
        return false;
    }
    r->bytes = PSCL_SHM_BYTES;
    r->used = PS_SHM_HEADER_BYTES;
    make_pipes(c, s, r);
    return true;
}

void pscl_shm_offer(ps_client_t *c, uint32_t s, Ps__Header *h, Ps__ShmOffer *o)
{
    if (c->shm_off)
        return;
    if (!c->shm) {
        c->shm = ps_xcalloc(c->n_shards, sizeof *c->shm);
        for (uint32_t i = 0; i < c->n_shards; i++)
            c->shm[i].fd = c->shm[i].bell[0] = c->shm[i].bell[1] = c->shm[i].answer_fd = -1;
    }
    if (!make_region(c, s))
        return;
    if (c->shm[s].bell[0] < 0) /* closed after garbage: new pipes, new numbers */
        make_pipes(c, s, &c->shm[s]);
    /* A request still in the pipe would reach the shard after this HELLO
     * (the pipe and the socket are two channels): one written while the
     * shard had closed our doorbell (we were declared dead) would then be
     * applied after the rejoin dropped our pushes. Requests go before a
     * HELLO or never (a HELLO follows a reset: nothing waits for them). */
    drain_requests(c, &c->shm[s]);
    if (!*c->shm_host.boot_id)
        ps_shm_host(&c->shm_host);
    ps__shm_offer__init(o);
    o->boot_id = c->shm_host.boot_id;
    o->pid_ns = c->shm_host.pid_ns;
    o->uid = c->shm_host.uid;
    o->pid = (int32_t)getpid();
    o->fd = c->shm[s].fd;
    o->bytes = c->shm[s].bytes;
    o->nonce = c->shm[s].nonce;
    /* the shard reads requests from the one, writes replies to the other */
    o->bell_fd = c->shm[s].bell[0] >= 0 ? c->shm[s].bell[0] : 0;
    o->answer_fd = c->shm[s].answer_fd >= 0 ? c->shm[s].answer_fd : 0;
    h->shm = o;
}

/* Frees every slot of shard s (its process is gone). */
static void free_slots(ps_client_t *c, uint32_t s)
{
    for (uint32_t id = 0; id < c->n_tables; id++) {
        pscl_table_t *t = &c->tables[id];
        for (uint32_t k = 0; k < t->n_slots; k++) {
            if (ps_shardmap_chunk(t->n_elems, id, k, c->n_shards).shard != s)
                continue;
            t->slots[k].push_busy = t->slots[k].pull_busy = 0;
        }
    }
}

void pscl_shm_take_hello(ps_client_t *c, uint32_t s, uint32_t flags, const char *refused,
                         bool new_incarnation)
{
    if (!c->shm || !c->shm[s].base)
        return;
    pscl_shm_t *r = &c->shm[s];
    bool accepted = (flags & PS_FLAG_SHM) != 0;
    bool bell = accepted && (flags & PS_FLAG_BELL) && r->bell[1] >= 0;
    if (!r->answered || accepted != r->accepted || bell != r->bell_on)
        ps_log(accepted ? PS_LOG_INFO : PS_LOG_NOTICE, "worker %u: shard %u '%s': %s%s",
               c->opts.rank, s, c->endpoints[s],
               accepted ? "same-host path (shared memory" : "TCP, no same-host path: ",
               accepted ? (bell ? ", doorbell)" : ")")
                        : (refused && *refused ? refused : "the shard offers none"));
    r->accepted = accepted;
    r->answered = true;
    r->bell_on = bell;
    if (new_incarnation) {
        free_slots(c, s);
        /* what the process before it wrote and we did not take answers
         * nothing now: replies to requests given up on */
        drain(r->answer_fd);
        ps_bell_reader_clear(&r->reader);
    }
}

/* Is a request for chunk k of table id in flight to shard s over ZeroMQ?
 * Then one rung now could overtake it: the shard reads the pipe at once
 * but a ZeroMQ message only once its I/O thread passed it on. (The other
 * way round the shard keeps the order: before each router message it
 * takes what its sender rang.) */
static bool chunk_on_socket(const ps_client_t *c, uint32_t s, uint32_t id, uint32_t k)
{
    for (size_t i = 0; i < c->n_inflight; i++) {
        const pscl_inflight_t *f = &c->inflight[i];
        if (f->shard == s && f->table_id == id && f->chunk == k && !f->rung)
            return true;
    }
    return false;
}

bool pscl_bell_send(ps_client_t *c, uint32_t s, const Ps__Header *h, bool more_frames)
{
    if (more_frames || !(h->flags & PS_FLAG_SHM) || !c->shm || !c->shm[s].bell_on ||
        chunk_on_socket(c, s, h->table_id, h->chunk) || ps_bell_ring(c->shm[s].bell[1], h) != PS_OK)
        return false;
    c->bell_requests++;
    return true;
}

int pscl_bell_items(ps_client_t *c, zmq_pollitem_t *items, uint32_t *shards, int max)
{
    int n = 0;
    for (uint32_t s = 0; c->shm && s < c->n_shards && n < max; s++) {
        if (!c->shm[s].bell_on)
            continue;
        items[n] = (zmq_pollitem_t){NULL, c->shm[s].answer_fd, ZMQ_POLLIN, 0};
        shards[n++] = s;
    }
    return n;
}

void pscl_bell_gone(ps_client_t *c, uint32_t s, bool ours)
{
    pscl_shm_t *r = &c->shm[s];
    if (!r->bell_on)
        return;
    if (ours)
        ps_log(PS_LOG_WARN,
               "worker %u: shard %u '%s': a malformed frame came up our doorbell: closed, "
               "headers over ZeroMQ until the next HELLO",
               c->opts.rank, s, c->endpoints[s]);
    else
        ps_log(PS_LOG_INFO,
               "worker %u: shard %u '%s' closed our doorbell: headers over ZeroMQ until the "
               "next HELLO",
               c->opts.rank, s, c->endpoints[s]);
    r->bell_on = false;
    ps_bell_reader_clear(&r->reader);
    drain_requests(c, r);
    if (ours)
        close_pipes(r);
}

bool pscl_bell_pending(const ps_client_t *c, uint32_t s)
{
    return c->shm && c->shm[s].reader.used >= 4;
}

/* Chunk k's slot of table t (id), its offsets cut from shard s's region
 * at the first use; NULL if the region has no room (the chunk stays on TCP). */
static pscl_slot_t *slot(ps_client_t *c, uint32_t s, pscl_table_t *t, uint32_t id, uint32_t k)
{
    if (!t->slots) {
        t->n_slots = ps_shardmap_n_chunks(t->n_elems, c->n_shards);
        t->slots = ps_xcalloc(t->n_slots, sizeof *t->slots);
    }
    if (k >= t->n_slots)
        return NULL;
    pscl_slot_t *sl = &t->slots[k];
    if (sl->push_off)
        return sl;
    pscl_shm_t *r = &c->shm[s];
    /* room for fp32, the widest dtype */
    uint64_t len = ps_shardmap_chunk(t->n_elems, id, k, c->n_shards).len;
    uint64_t half = (len * sizeof(float) + PS_SHM_ALIGN - 1) / PS_SHM_ALIGN * PS_SHM_ALIGN;
    if (r->used + 2 * half > r->bytes)
        return NULL;
    sl->push_off = r->used;
    sl->pull_off = r->used + half;
    r->used += 2 * half;
    return sl;
}

void pscl_shm_prepare(ps_client_t *c, uint32_t s, pscl_table_t *t, Ps__Header *h,
                      const void *values, uint64_t n, bool with_reply)
{
    if (!c->shm || !c->shm[s].accepted || (!values && !with_reply))
        return;
    pscl_slot_t *sl = slot(c, s, t, h->table_id, h->chunk);
    if (!sl || (values && sl->push_busy) || (with_reply && sl->pull_busy))
        return;
    char *base = c->shm[s].base;
    if (values) {
        memcpy(base + sl->push_off, values, n * ps_dtype_size(h->dtype));
        c->bytes_sent += n * ps_dtype_size(h->dtype); /* moved, by whichever path */
        h->shm_offset = sl->push_off;
        sl->push_busy = h->request_id;
    }
    if (with_reply) {
        h->shm_reply_offset = sl->pull_off;
        sl->pull_busy = h->request_id;
    }
    h->flags |= PS_FLAG_SHM;
    c->shm_requests++;
}

/* The slot of the chunk reply h names, if it has one. */
static pscl_slot_t *reply_slot(ps_client_t *c, const Ps__Header *h)
{
    if (h->table_id >= c->n_tables)
        return NULL;
    pscl_table_t *t = &c->tables[h->table_id];
    return h->chunk < t->n_slots ? &t->slots[h->chunk] : NULL;
}

const void *pscl_shm_reply_values(ps_client_t *c, const pscl_inflight_t *f, const Ps__Header *h)
{
    pscl_slot_t *sl = reply_slot(c, h);
    if (!sl || !c->shm || !c->shm[f->shard].base || !(f->flags & PS_FLAG_SHM) ||
        sl->pull_busy != h->request_id)
        return NULL;
    return (const char *)c->shm[f->shard].base + sl->pull_off;
}

void pscl_shm_release(ps_client_t *c, const Ps__Header *h)
{
    if (!(h->flags & PS_FLAG_SHM))
        return;
    pscl_slot_t *sl = reply_slot(c, h);
    if (!sl)
        return;
    if (sl->push_busy == h->request_id)
        sl->push_busy = 0;
    if (sl->pull_busy == h->request_id)
        sl->pull_busy = 0;
}

void pscl_shm_close(ps_client_t *c)
{
    for (uint32_t s = 0; c->shm && s < c->n_shards; s++) {
        ps_shm_unmap(&c->shm[s].base, c->shm[s].bytes);
        if (c->shm[s].fd >= 0)
            close(c->shm[s].fd);
        close_pipes(&c->shm[s]);
    }
    free(c->shm);
    c->shm = NULL;
}
