/* ps_trainer.h - the worker's training job: load its data, join the job,
 * train under the configured consistency model, evaluate, export, report.
 * Runs on the worker's main thread. */
#ifndef PS_TRAINER_H
#define PS_TRAINER_H

#include <signal.h>

#include "ps_err.h"
#include "ps_worker.h"

/* Runs the whole job. Progress goes to the log (stderr); JSON events and the
 * final {"event":"done",...} summary to stdout. Returns PS_OK, or the first
 * error with err saying what failed (data errors: PS_EIO/PS_EFORMAT naming
 * the file; server errors name the shard and op). Stops early with PS_EINVAL
 * if *stop becomes non-zero. */
int ps_trainer_run(const ps_worker_config_t *cfg, volatile sig_atomic_t *stop, ps_errbuf_t *err);

#endif
