/* ps_request.h - validation of a request before any handler acts on it:
 * its job and rank, its table chunk, its generation, its frames against
 * the header and the table's layout, its dtype, and that its values are
 * finite. Each check either passes (and may hand back what it found) or
 * fills the request's reply with the error, naming what is wrong. Loop
 * thread only. */
#ifndef PS_REQUEST_H
#define PS_REQUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "ps_server_int.h"

/* The job the request names, with its rank in range and not declared dead
 * (BYE is let through for a dead rank); marks the rank as seen. NULL with
 * the reply set to the error otherwise. */
ps_job_t *psrv_request_job(ps_server_t *srv, psrv_request_t *rq);
/* The chunk of a dense table the request addresses; NULL with the error. */
ps_table_t *psrv_request_chunk(ps_server_t *srv, psrv_request_t *rq, ps_job_t *job);
/* The request is of the job's current generation (else PS_ESTALE). */
bool psrv_request_current(psrv_request_t *rq, const ps_job_t *job);
/* The request addresses exactly [offset, offset + len) and, if has_values,
 * its values frame holds that many elements of its dtype; the frame is
 * then turned into aligned fp32 (grad_scale divided out). */
bool psrv_request_values(psrv_request_t *rq, uint64_t offset, uint64_t len, bool has_values);
/* No inf or NaN among v[0..n). */
bool psrv_all_finite(const float *v, uint64_t n);
/* Copies n floats from src to dst (not overlapping) and says, as
 * psrv_all_finite would of them, whether none is inf or NaN: one pass
 * where a copy and a check would make two. */
bool psrv_copy_finite(float *dst, const float *src, uint64_t n);

#endif
