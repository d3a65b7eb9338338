/* ps_sparse_trainer.h - training loop of the sparse models (sparse_lr, fm)
 * on LIBSVM data against sparse tables. */
#ifndef PS_SPARSE_TRAINER_H
#define PS_SPARSE_TRAINER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "ps_err.h"
#include "ps_worker.h"

/* Log-loss of one sample and, if grad_bias is not NULL, its gradient added
 * into grad_bias (1 float) and grads[j] (the row of feature j). The model:
 * logit = bias[0] + sum_j rows[j][0] x[j] + (k > 0: the factorization
 * machine's pairwise term over rows[j][1..k]). scratch holds k floats;
 * logit_out (if not NULL) gets the logit. */
double ps_sparse_sample_loss(uint32_t k, const float *bias, const float *const *rows,
                             const float *x, size_t nf, float y, float *scratch, double *logit_out,
                             float *grad_bias, float *const *grads);
/* Runs the job cfg describes (a model for which PS_MODEL_IS_SPARSE) to the
 * end: prints epoch events (test_auc, test_logloss) and the done summary on
 * stdout as ps_trainer_run does. PS_OK or the first error, in err. */
int ps_sparse_trainer_run(const ps_worker_config_t *cfg, volatile sig_atomic_t *stop,
                          ps_errbuf_t *err);

#endif
