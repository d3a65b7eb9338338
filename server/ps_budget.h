/* ps_budget.h - what one job and all jobs together may take of this shard:
 * memory for tables (max_job_mb, max_shard_mb) and jobs per client
 * (max_jobs_per_client). A request that would go over is refused before
 * anything is allocated, with ENOMEM (memory) or EAGAIN (jobs) naming the
 * budget, what is in use and what was asked. Loop thread only. */
#ifndef PS_BUDGET_H
#define PS_BUDGET_H

#include <stddef.h>

#include "ps_server_int.h"

/* Sets the budgets in force from the config (0: 90% of the machine's
 * memory for the shard, the shard's for a job) and logs them. */
void psrv_budget_init(ps_server_t *srv);
/* Would job (NULL: a new one) taking `bytes` more go over a memory budget?
 * NULL if not, else the reason (in why). `what` names the request in it. */
const char *psrv_budget_memory(const ps_server_t *srv, const ps_job_t *job, size_t bytes,
                               const char *what, char *why, size_t cap);
/* May client `who` create one more job? NULL if so, else the reason. */
const char *psrv_budget_new_job(const ps_server_t *srv, const char *who, char *why, size_t cap);
/* Who a request comes from, for the per-client limit: its CURVE key's
 * name (z85) under CURVE, else its address. */
const char *psrv_budget_client(const psrv_request_t *rq);

#endif
