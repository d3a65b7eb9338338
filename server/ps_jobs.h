/* ps_jobs.h - the jobs this shard serves: find, add and drop them, answer
 * the pulls their clocks now allow, and sweep ranks that fell silent. Loop
 * thread only. */
#ifndef PS_JOBS_H
#define PS_JOBS_H

#include "ps_server_int.h"

/* The job named name, or NULL. */
ps_job_t *psrv_jobs_find(ps_server_t *srv, const char *name);
/* Adds job (ownership moves to the server). */
void psrv_jobs_add(ps_server_t *srv, ps_job_t *job);
/* Ends a job whose ranks all left: remembers it for show info, removes
 * its checkpoints, frees it. */
void psrv_jobs_drop(ps_server_t *srv, ps_job_t *job);
/* At start: every job with a checkpoint under state_dir comes back at its
 * newest valid one (what cannot be restored is logged and left alone). */
void psrv_jobs_restore(ps_server_t *srv);
/* Frees every job (shutdown); their checkpoints stay. */
void psrv_jobs_free_all(ps_server_t *srv);

/* Answers every parked pull of job that its consistency model now allows. */
void psrv_jobs_serve(ps_server_t *srv, ps_job_t *job);
/* After a rank left the barriers: completes the rounds it held up and
 * serves what they allow. */
void psrv_jobs_recheck(ps_server_t *srv, ps_job_t *job);
/* Declares dead every rank silent past heartbeat_timeout_ms (logged), lets
 * the barriers go on without them, and drops jobs whose every rank left
 * or died. */
void psrv_jobs_sweep(ps_server_t *srv);

#endif
