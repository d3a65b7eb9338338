/* ps_jobs.h - the jobs this shard serves: find, add and drop them, answer
 * the pulls their clocks now allow, and sweep ranks that fell silent. Loop
 * thread only. */
#ifndef PS_JOBS_H
#define PS_JOBS_H

#include "ps_regions.h"
#include "ps_server_int.h"

/* The job named name, or NULL. */
ps_job_t *psrv_jobs_find(ps_server_t *srv, const char *name);
/* Adds job (ownership moves to the server). */
void psrv_jobs_add(ps_server_t *srv, ps_job_t *job);
/* Ends a job whose ranks all said BYE: remembers it (show info, and to
 * refuse its late workers for finished_job_ttl_s), removes its
 * checkpoints, frees it. */
void psrv_jobs_finish(ps_server_t *srv, ps_job_t *job);
/* Ends a job an operator dropped (ps-ctl drop JOB): its parked pulls fail,
 * its checkpoints are removed, it is freed. PS_ENOJOB if there is none. */
int psrv_jobs_drop(ps_server_t *srv, const char *name);
/* A job of that name and configuration that finished recently: the text
 * that refuses its late worker, or NULL. */
const char *psrv_jobs_finished(ps_server_t *srv, const char *name, const char *fingerprint,
                               ps_errbuf_t *err);
/* At start: every job with a checkpoint under state_dir comes back at its
 * newest valid one (what cannot be restored is logged and left alone). */
void psrv_jobs_restore(ps_server_t *srv);
/* Why region r must go: its job ended here, its rank left or was declared
 * dead, or the rank has a new process; NULL if it stays (the
 * psrv_regions_sweep predicate). */
const char *psrv_jobs_region_gone(ps_server_t *srv, const psrv_region_t *r);
/* Frees every job (shutdown); their checkpoints stay. */
void psrv_jobs_free_all(ps_server_t *srv);

/* Answers every parked pull of job that its consistency model now allows. */
void psrv_jobs_serve(ps_server_t *srv, ps_job_t *job);
/* After a rank left the barriers: completes the rounds it held up and
 * serves what they allow. */
void psrv_jobs_recheck(ps_server_t *srv, ps_job_t *job);
/* Every poll_ms: declares dead every rank silent past heartbeat_timeout_ms
 * (logged; SSP/ASP go on without them); under BSP, once a lost rank is
 * not back within lost_rank_timeout_ms (or one never joined within
 * assemble_timeout_ms) fails the pulls waiting on it (EWORLD, naming it);
 * unloads jobs no rank was alive in for job_ttl_s (their checkpoints stay).
 * Silence is never the end of a job. A loop that was itself stalled (the
 * process stopped) forgives the silence it could not hear. */
void psrv_jobs_sweep(ps_server_t *srv);
/* The reason the BSP job cannot go on now (see ps_job_world_problem), or
 * NULL. */
const char *psrv_jobs_world_problem(ps_server_t *srv, const ps_job_t *job, char *why, size_t cap);

#endif
