/* ps_regions.c - see ps_regions.h. */
#include "ps_regions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_log.h"
#include "ps_shm.h"

static void unmap_at(ps_server_t *srv, size_t i, const char *why)
{
    psrv_region_t *r = &srv->regions[i];
    ps_log(PS_LOG_INFO, "job '%s': worker %u's shared region unmapped (%s)", r->job, r->rank, why);
    ps_shm_unmap(&r->base, r->bytes);
    srv->regions[i] = srv->regions[--srv->n_regions];
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
                     const Ps__ShmOffer *o, ps_errbuf_t *err)
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
                         .bytes = o->bytes};
    snprintf(r->job, sizeof r->job, "%s", job);
    ps_log(PS_LOG_INFO, "job '%s': worker %u's shared region mapped (%llu MiB; same host)", job,
           rank, (unsigned long long)(o->bytes >> 20));
    return PS_OK;
}

void psrv_regions_hello(ps_server_t *srv, const ps_job_t *job, const Ps__Header *h,
                        psrv_reply_t *rep)
{
    const Ps__ShmOffer *o = h->shm;
    if (!o)
        return;
    const char *name = ps_job_name(job);
    long i = find_rank(srv, name, h->rank);
    if (i >= 0 && srv->regions[i].owner == h->worker_incarnation &&
        srv->regions[i].nonce == o->nonce) {
        rep->hdr.flags |= PS_FLAG_SHM; /* a HELLO again (a rejoin, a resend) */
        return;
    }
    if (i >= 0)
        unmap_at(srv, (size_t)i, "the rank has a new process");
    ps_errbuf_t err = {0};
    int rc = srv->cfg.same_host ? map_offer(srv, name, h->rank, h->worker_incarnation, o, &err)
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
