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
    return true;
}

void pscl_shm_offer(ps_client_t *c, uint32_t s, Ps__Header *h, Ps__ShmOffer *o)
{
    if (c->shm_off)
        return;
    if (!c->shm) {
        c->shm = ps_xcalloc(c->n_shards, sizeof *c->shm);
        for (uint32_t i = 0; i < c->n_shards; i++)
            c->shm[i].fd = -1;
    }
    if (!make_region(c, s))
        return;
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
    if (!r->answered || accepted != r->accepted)
        ps_log(accepted ? PS_LOG_INFO : PS_LOG_NOTICE, "worker %u: shard %u '%s': %s%s",
               c->opts.rank, s, c->endpoints[s],
               accepted ? "same-host path (shared memory)" : "TCP, no same-host path: ",
               accepted ? "" : (refused && *refused ? refused : "the shard offers none"));
    r->accepted = accepted;
    r->answered = true;
    if (new_incarnation)
        free_slots(c, s);
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
    }
    free(c->shm);
    c->shm = NULL;
}
