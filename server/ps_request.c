/* ps_request.c - see ps_request.h. */
#include "ps_request.h"

#include <math.h>

#include "ps_jobs.h"
#include "ps_reply.h"
#include "ps_time.h"

ps_job_t *psrv_request_job(ps_server_t *srv, psrv_request_t *rq)
{
    const Ps__Header *h = rq->hdr;
    ps_job_t *job = psrv_jobs_find(srv, h->job);
    if (!job) {
        psrv_fail(rq, PS_ENOJOB, "job '%s' is not known here (send HELLO first)", h->job);
        return NULL;
    }
    if (h->rank >= ps_job_world(job)) {
        psrv_fail(rq, PS_ERANGE, "rank %u is outside job '%s' of %u workers", h->rank,
                  ps_job_name(job), ps_job_world(job));
        return NULL;
    }
    if (!ps_job_owns(job, h->rank, h->worker_incarnation)) {
        psrv_fail(rq, PS_EDEAD,
                  "worker %u of job '%s' was taken over by another process (at "
                  "'%s')",
                  h->rank, ps_job_name(job), ps_job_rank(job, h->rank)->peer);
        return NULL;
    }
    ps_job_seen(job, h->rank, ps_time_ms());
    if (ps_job_rank(job, h->rank)->dead && h->op != PS__OP__BYE) {
        psrv_fail(rq, PS_EDEAD, "worker %u of job '%s' was declared dead", h->rank,
                  ps_job_name(job));
        return NULL;
    }
    return job;
}

ps_table_t *psrv_request_chunk(ps_server_t *srv, psrv_request_t *rq, ps_job_t *job)
{
    uint32_t id = rq->hdr->table_id, chunk = rq->hdr->chunk;
    ps_table_t *t = ps_job_chunk(job, id, chunk);
    if (!t)
        psrv_fail(rq, PS_ENOTABLE, "table %u chunk %u is not defined on shard %lld in job '%s'", id,
                  chunk, (long long)srv->cfg.shard, ps_job_name(job));
    return t;
}

bool psrv_request_current(psrv_request_t *rq, const ps_job_t *job)
{
    if (rq->hdr->generation == ps_job_generation(job))
        return true;
    psrv_fail(rq, PS_ESTALE, "job '%s' is at generation %llu, request at %llu", ps_job_name(job),
              (unsigned long long)ps_job_generation(job), (unsigned long long)rq->hdr->generation);
    return false;
}

bool psrv_request_values(psrv_request_t *rq, uint64_t offset, uint64_t len, bool has_values)
{
    const Ps__Header *h = rq->hdr;
    size_t dsize = ps_dtype_size(h->dtype);
    if (!dsize)
        return psrv_fail(rq, PS_EPROTO, "unknown dtype %d", h->dtype), false;
    if (h->offset != offset || h->n_elems != len)
        return psrv_fail(rq, PS_ERANGE,
                         "slice [%llu, +%llu) does not match this shard's [%llu, +%llu)",
                         (unsigned long long)h->offset, (unsigned long long)h->n_elems,
                         (unsigned long long)offset, (unsigned long long)len),
               false;
    if (!has_values) {
        if (rq->values)
            return psrv_fail(rq, PS_EPROTO, "unexpected values frame"), false;
        return true;
    }
    if (!rq->values)
        return psrv_fail(rq, PS_EPROTO, "%s without a values frame", ps_op_name(h->op)), false;
    size_t bytes = zmq_msg_size(rq->values);
    if (bytes != len * dsize)
        return psrv_fail(rq, PS_EPROTO, "values frame has %zu bytes, header says %llu", bytes,
                         (unsigned long long)(len * dsize)),
               false;
    if (!isfinite(h->grad_scale) || h->grad_scale < 0)
        return psrv_fail(rq, PS_ERANGE, "grad_scale %g is not a positive number", h->grad_scale),
               false;
    int rc = ps_wire_to_f32(rq->values, h->dtype, len, h->grad_scale);
    if (rc != PS_OK)
        return psrv_fail(rq, rc, "cannot convert %llu values to fp32", (unsigned long long)len),
               false;
    return true;
}

/* Built for AVX2 too, picked at load time, as ps_optim_step_to is (its
 * comment says why not with clang or TSan): it reads every pushed value,
 * and the SSE2 loop alone was as much of a 1 MB push's profile as the
 * optimizer step (bench_pushpull, 5.6%). */
/* inf and NaN are the floats whose exponent bits are all ones; an integer
 * test per lane vectorises (a float reduction would not, at -O2). */
static inline uint32_t nonfinite_bits(uint32_t x)
{
    return (x & 0x7f800000u) == 0x7f800000u;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
__attribute__((target_clones("avx2", "default")))
#endif
bool psrv_all_finite(const float *v, uint64_t n)
{
    const uint32_t *u = (const uint32_t *)v;
    uint32_t bad = 0;
    for (uint64_t i = 0; i < n; i++)
        bad |= nonfinite_bits(u[i]);
    return bad == 0;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
__attribute__((target_clones("avx2", "default")))
#endif
bool psrv_copy_finite(float *restrict dst, const float *restrict src, uint64_t n)
{
    const uint32_t *u = (const uint32_t *)src;
    uint32_t *restrict out = (uint32_t *)dst, bad = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t x = u[i];
        out[i] = x;
        bad |= nonfinite_bits(x);
    }
    return bad == 0;
}
