/* ps_regions.h - the shared regions this shard mapped for workers on its
 * own host (the same-host data path): one per (job, rank, worker
 * process), mapped at HELLO, unmapped once that rank left, died or passed
 * to another process, or its job ended. The values of a request that uses
 * a region are copied out of it before anything checks them, and a reply
 * writes the region only just before it is sent, so no pointer into a
 * region outlives the handling of one request or reply, and unmapping is
 * always safe. Loop thread only. */
#ifndef PS_REGIONS_H
#define PS_REGIONS_H

#include <stdint.h>

#include "ps_bell.h"
#include "ps_server_int.h"

/* One mapped region. */
typedef struct psrv_region {
    uint64_t id; /* this shard's name for it, never reused: a parked pull keeps it */
    char job[PS_JOB_NAME_MAX];
    uint32_t rank;
    uint64_t owner; /* the worker_incarnation of the process whose memfd it is */
    uint64_t nonce;
    void *base;
    uint64_t bytes;
    /* The doorbell (ps_bell.h), -1 if none: the worker's request pipe read
     * here, its reply pipe written here, and that pipe's read end held too,
     * so a reply written after the worker died fills the pipe (EAGAIN)
     * rather than raising SIGPIPE. */
    int bell_fd, answer_fd, answer_keep_fd;
    int32_t offered_bell_fd, offered_answer_fd; /* the worker's numbers for them */
    ps_bell_reader_t reader;
    /* What a request through the doorbell is answered and judged as: the
     * HELLO's ZeroMQ routing id (a reply that cannot go up the pipe goes
     * there), its CURVE key ("" without CURVE) and address. */
    uint8_t identity[256];
    size_t identity_len;
    char user_id[96];
    char peer[64];
} psrv_region_t;

/* HELLO h of rank in job, already admitted: maps the worker's region if
 * it offered one and may (same_host on here, same host, boot, pid
 * namespace and user, the region checks out); then rep carries
 * PS_FLAG_SHM, otherwise rep->hdr.shm_refused says why (rep->message holds
 * the text); and opens its doorbell if it offered one (then PS_FLAG_BELL;
 * a doorbell that cannot be opened leaves the region on ZeroMQ headers).
 * A region the rank held for another process is unmapped. */
typedef struct {
    const zmq_msg_t *identity; /* the HELLO's ZeroMQ routing id */
    const char *peer, *user;   /* its address, its CURVE key ("" without) */
} psrv_sender_t;
void psrv_regions_hello(ps_server_t *srv, const ps_job_t *job, const Ps__Header *h,
                        const psrv_sender_t *from, psrv_reply_t *rep);
/* The region of rank in job held by process owner; NULL if none. */
psrv_region_t *psrv_regions_find(ps_server_t *srv, const char *job, uint32_t rank, uint64_t owner);
/* The region of id, NULL if it was unmapped since. */
psrv_region_t *psrv_regions_get(ps_server_t *srv, uint64_t id);
/* [offset, offset + bytes) of r, or NULL if that is not wholly past its
 * header and inside it (or not aligned on PS_SHM_ALIGN). */
void *psrv_region_at(const psrv_region_t *r, uint64_t offset, uint64_t bytes);
/* Why r must be unmapped (its holder is gone), or NULL if it stays. */
typedef const char *(*psrv_region_gone_fn)(ps_server_t *srv, const psrv_region_t *r);
/* The doorbells to poll: appends a pollitem per region that has one to
 * items (at most max) and its region id to ids; returns how many. */
size_t psrv_regions_bells(ps_server_t *srv, zmq_pollitem_t *items, uint64_t *ids, size_t max);
/* Closes region id's doorbell (logged at level with why), if it has one:
 * the worker reads end-of-file on its reply pipe; the region stays. */
void psrv_regions_close_bell(ps_server_t *srv, uint64_t id, int level, const char *why);
/* The region with a doorbell whose HELLO came from the socket with
 * ZeroMQ routing id identity; NULL if none. */
psrv_region_t *psrv_regions_of_sender(ps_server_t *srv, zmq_msg_t *identity);
/* Sends header-only reply hdr up region id's doorbell: false (nothing
 * sent) if the region or its doorbell is gone or the pipe is full; the
 * caller then sends it over the router. */
bool psrv_regions_ring(ps_server_t *srv, uint64_t id, const Ps__Header *hdr);
/* Unmaps every region gone says must go, logging why (server_cron, with
 * psrv_jobs_region_gone: the regions know nothing of jobs). */
void psrv_regions_sweep(ps_server_t *srv, psrv_region_gone_fn gone);
/* Unmaps every region (shutdown); safe twice. */
void psrv_regions_fini(ps_server_t *srv);

#endif
