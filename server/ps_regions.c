/* ps_regions.c - see ps_regions.h. */
#include "ps_regions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ps_log.h"
#include "ps_shm.h"

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void close_bell(psrv_region_t *r)
{
    close_fd(&r->bell_fd);
    close_fd(&r->answer_fd);
    close_fd(&r->answer_keep_fd);
    ps_bell_reader_free(&r->reader);
}

static void unmap_at(ps_server_t *srv, size_t i, const char *why)
{
    psrv_region_t *r = &srv->regions[i];
    ps_log(PS_LOG_INFO, "job '%s': worker %u's shared region unmapped (%s)", r->job, r->rank, why);
    ps_shm_unmap(&r->base, r->bytes);
    close_bell(r);
    srv->regions[i] = srv->regions[--srv->n_regions];
}

/* Opens offer o's doorbell for r: both pipes, or neither (logged). */
static bool open_bell(psrv_region_t *r, const Ps__ShmOffer *o)
{
    ps_errbuf_t err = {0};
    r->offered_bell_fd = o->bell_fd;
    r->offered_answer_fd = o->answer_fd;
    r->bell_fd = ps_bell_open(o->pid, o->bell_fd, 0, &err);
    if (r->bell_fd >= 0)
        r->answer_keep_fd = ps_bell_open(o->pid, o->answer_fd, 0, &err);
    if (r->answer_keep_fd >= 0)
        r->answer_fd = ps_bell_open(o->pid, o->answer_fd, 1, &err);
    if (r->answer_fd >= 0)
        return true;
    ps_log(PS_LOG_NOTICE, "job '%s': worker %u: no doorbell, headers over ZeroMQ: %s", r->job,
           r->rank, err.msg);
    close_bell(r);
    return false;
}

static bool offers_bell(const ps_server_t *srv, const Ps__ShmOffer *o)
{
    return o->bell_fd > 0 && o->answer_fd > 0 && srv->cfg.same_host_bell;
}

/* Who sent the HELLO, kept for the requests its doorbell brings. */
static void keep_sender(psrv_region_t *r, const psrv_sender_t *from)
{
    r->identity_len = zmq_msg_size((zmq_msg_t *)from->identity);
    if (r->identity_len > sizeof r->identity)
        r->identity_len = 0; /* ROUTER ids are at most 255 bytes: cannot happen */
    memcpy(r->identity, zmq_msg_data((zmq_msg_t *)from->identity), r->identity_len);
    snprintf(r->user_id, sizeof r->user_id, "%s", from->user);
    snprintf(r->peer, sizeof r->peer, "%s", from->peer);
}

/* The region rank of job holds, whoever its owner; its index or -1. */
static long find_rank(ps_server_t *srv, const char *job, uint32_t rank)
{
    for (size_t i = 0; i < srv->n_regions; i++)
        if (srv->regions[i].rank == rank && strcmp(srv->regions[i].job, job) == 0)
            return (long)i;
    return -1;
}

/* Maps offer o of rank (owner) in job; PS_OK, or the error with err. */
static int map_offer(ps_server_t *srv, const char *job, uint32_t rank, uint64_t owner,
                     const Ps__ShmOffer *o, const psrv_sender_t *from, psrv_reply_t *rep,
                     ps_errbuf_t *err)
{
    const char *other = ps_shm_same_host(o->boot_id, o->pid_ns, o->uid);
    if (other)
        return ps_err_set(err, PS_EPERM, "the worker runs on %s", other);
    void *base;
    int rc = ps_shm_attach(o->pid, o->fd, o->bytes, o->nonce, &base, err);
    if (rc != PS_OK)
        return rc;
    if (srv->n_regions == srv->cap_regions) {
        srv->cap_regions = srv->cap_regions ? 2 * srv->cap_regions : 8;
        srv->regions = ps_xrealloc(srv->regions, srv->cap_regions * sizeof *srv->regions);
    }
    psrv_region_t *r = &srv->regions[srv->n_regions++];
    *r = (psrv_region_t){.id = ++srv->last_region_id,
                         .rank = rank,
                         .owner = owner,
                         .nonce = o->nonce,
                         .base = base,
                         .bytes = o->bytes,
                         .bell_fd = -1,
                         .answer_fd = -1,
                         .answer_keep_fd = -1};
    snprintf(r->job, sizeof r->job, "%s", job);
    keep_sender(r, from);
    bool bell = offers_bell(srv, o) && open_bell(r, o);
    if (bell)
        rep->hdr.flags |= PS_FLAG_BELL;
    ps_log(PS_LOG_INFO, "job '%s': worker %u's shared region mapped (%llu MiB; same host%s)", job,
           rank, (unsigned long long)(o->bytes >> 20), bell ? ", doorbell" : "");
    return PS_OK;
}

void psrv_regions_hello(ps_server_t *srv, const ps_job_t *job, const Ps__Header *h,
                        const psrv_sender_t *from, psrv_reply_t *rep)
{
    const Ps__ShmOffer *o = h->shm;
    if (!o)
        return;
    const char *name = ps_job_name(job);
    long i = find_rank(srv, name, h->rank);
    if (i >= 0 && srv->regions[i].owner == h->worker_incarnation &&
        srv->regions[i].nonce == o->nonce) {
        /* a HELLO again (a rejoin, a resend): replies may now go to
         * another socket of the same process, and a doorbell closed since
         * (or replaced by the worker: other pipes) is opened again */
        psrv_region_t *r = &srv->regions[i];
        keep_sender(r, from);
        bool same_pipes = r->offered_bell_fd == o->bell_fd && r->offered_answer_fd == o->answer_fd;
        if (r->answer_fd >= 0 && !same_pipes)
            close_bell(r);
        if (r->answer_fd < 0 && offers_bell(srv, o) && open_bell(r, o))
            ps_log(PS_LOG_INFO, "job '%s': worker %u's doorbell opened again", r->job, r->rank);
        rep->hdr.flags |= PS_FLAG_SHM | (r->answer_fd >= 0 ? PS_FLAG_BELL : 0);
        return;
    }
    if (i >= 0)
        unmap_at(srv, (size_t)i, "the rank has a new process");
    ps_errbuf_t err = {0};
    int rc = srv->cfg.same_host
                 ? map_offer(srv, name, h->rank, h->worker_incarnation, o, from, rep, &err)
                 : ps_err_set(&err, PS_EPERM, "same_host is off on this shard");
    if (rc == PS_OK) {
        rep->hdr.flags |= PS_FLAG_SHM;
        srv->stats.shm_regions = srv->n_regions;
        return;
    }
    srv->stats.shm_refused++;
    /* the reason is cut to fit rather than the shard's name */
    int n = snprintf(rep->message, sizeof rep->message, "shard %lld: ", (long long)srv->cfg.shard);
    snprintf(rep->message + n, sizeof rep->message - (size_t)n, "%.400s", err.msg);
    rep->hdr.shm_refused = rep->message;
    ps_log(PS_LOG_INFO, "job '%s': worker %u stays on TCP: %s", name, h->rank, err.msg);
}

psrv_region_t *psrv_regions_find(ps_server_t *srv, const char *job, uint32_t rank, uint64_t owner)
{
    long i = find_rank(srv, job, rank);
    return i >= 0 && srv->regions[i].owner == owner ? &srv->regions[i] : NULL;
}

psrv_region_t *psrv_regions_get(ps_server_t *srv, uint64_t id)
{
    for (size_t i = 0; id && i < srv->n_regions; i++)
        if (srv->regions[i].id == id)
            return &srv->regions[i];
    return NULL;
}

void *psrv_region_at(const psrv_region_t *r, uint64_t offset, uint64_t bytes)
{
    if (offset < PS_SHM_HEADER_BYTES || offset % PS_SHM_ALIGN || offset > r->bytes ||
        bytes > r->bytes - offset)
        return NULL;
    return (char *)r->base + offset;
}

size_t psrv_regions_bells(ps_server_t *srv, zmq_pollitem_t *items, uint64_t *ids, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < srv->n_regions && n < max; i++) {
        if (srv->regions[i].bell_fd < 0)
            continue;
        items[n] = (zmq_pollitem_t){NULL, srv->regions[i].bell_fd, ZMQ_POLLIN, 0};
        ids[n++] = srv->regions[i].id;
    }
    return n;
}

void psrv_regions_close_bell(ps_server_t *srv, uint64_t id, int level, const char *why)
{
    psrv_region_t *r = psrv_regions_get(srv, id);
    if (!r || r->bell_fd < 0)
        return;
    ps_log(level, "job '%s': worker %u's doorbell closed (%s)", r->job, r->rank, why);
    close_bell(r);
}

psrv_region_t *psrv_regions_of_sender(ps_server_t *srv, zmq_msg_t *identity)
{
    size_t len = zmq_msg_size(identity);
    const void *bytes = zmq_msg_data(identity);
    for (size_t i = 0; i < srv->n_regions; i++) {
        psrv_region_t *r = &srv->regions[i];
        if (r->bell_fd >= 0 && r->identity_len == len && memcmp(r->identity, bytes, len) == 0)
            return r;
    }
    return NULL;
}

bool psrv_regions_ring(ps_server_t *srv, uint64_t id, const Ps__Header *hdr)
{
    psrv_region_t *r = psrv_regions_get(srv, id);
    if (!r || r->answer_fd < 0 || ps_bell_ring(r->answer_fd, hdr) != PS_OK)
        return false;
    srv->stats.bell_replies++;
    srv->stats.bytes_out += ps__header__get_packed_size(hdr);
    return true;
}

void psrv_regions_sweep(ps_server_t *srv, psrv_region_gone_fn gone)
{
    for (size_t i = srv->n_regions; i-- > 0;) {
        const char *why = gone(srv, &srv->regions[i]);
        if (why)
            unmap_at(srv, i, why);
    }
    srv->stats.shm_regions = srv->n_regions;
}

void psrv_regions_fini(ps_server_t *srv)
{
    while (srv->n_regions)
        unmap_at(srv, srv->n_regions - 1, "shutdown");
    free(srv->regions);
    srv->regions = NULL;
    srv->cap_regions = 0;
}
