/* ps_optim_spec.h - what a table's server-side optimizer is, as chosen by the
 * job: built by the worker from its config, sent with INIT_TABLE, applied by
 * the server. Plain data; any thread. */
#ifndef PS_OPTIM_SPEC_H
#define PS_OPTIM_SPEC_H

#include <stdbool.h>
#include <stdint.h>

#include "ps.pb-c.h"

typedef enum {
    PS_OPTIM_SGD = 0,
    PS_OPTIM_MOMENTUM = 1,
    PS_OPTIM_ADAGRAD = 2,
    PS_OPTIM_RMSPROP = 3,
    PS_OPTIM_ADAM = 4,
    PS_OPTIM_ADAMW = 5,
    PS_OPTIM_FTRL = 6, /* sparse tables only */
} ps_optim_kind_t;

typedef enum {
    PS_SCHED_CONSTANT = 0,
    PS_SCHED_STEP = 1,
    PS_SCHED_COSINE = 2,
} ps_sched_kind_t;

typedef struct {
    ps_optim_kind_t kind;
    double lr;
    double momentum;       /* MOMENTUM */
    bool nesterov;         /* MOMENTUM */
    double beta1, beta2;   /* ADAM(W) */
    double eps;            /* ADAGRAD, RMSPROP, ADAM(W) */
    double weight_decay;   /* L2 added to the gradient; decoupled for ADAMW */
    double rho;            /* RMSPROP */
    ps_sched_kind_t schedule;
    uint64_t step_size;    /* STEP: lr *= gamma every step_size updates */
    double gamma;          /* STEP */
    uint64_t warmup_steps; /* linear warm-up, before the schedule */
    uint64_t total_steps;  /* COSINE: updates from lr down to min_lr */
    double min_lr;         /* COSINE */
    double l1, l2;         /* FTRL regularisation */
    double ftrl_beta;      /* FTRL: rate = lr / (ftrl_beta + sqrt(n)) */
} ps_optim_spec_t;
/* Returns NULL if the spec is valid, else a static reason ("lr must be > 0"). */
const char *ps_optim_spec_check(const ps_optim_spec_t *spec);
/* Name of a kind ("adam"), for stats and logs. */
const char *ps_optim_name(ps_optim_kind_t kind);
/* Copies between the plain spec and its wire form (wire fields borrowed). */
void ps_optim_spec_to_wire(const ps_optim_spec_t *spec, Ps__OptimSpec *wire);
void ps_optim_spec_from_wire(const Ps__OptimSpec *wire, ps_optim_spec_t *spec);

#endif
