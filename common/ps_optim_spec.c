/* ps_optim_spec.c - optimizer spec checks and wire conversion. */
#include "ps_optim_spec.h"

#include <math.h>

const char *ps_optim_name(ps_optim_kind_t kind)
{
    static const char *names[] = {"sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw", "ftrl"};
    return (unsigned)kind < 7 ? names[kind] : "unknown";
}

const char *ps_optim_spec_check(const ps_optim_spec_t *s)
{
    if ((unsigned)s->kind > PS_OPTIM_ADAMW)
        return s->kind == PS_OPTIM_FTRL ? "ftrl is for sparse tables" : "unknown optimizer";
    if (!(s->lr > 0) || !isfinite(s->lr))
        return "lr must be > 0";
    if (s->momentum < 0 || s->momentum >= 1)
        return "momentum must be in [0, 1)";
    if (s->weight_decay < 0)
        return "weight_decay must be >= 0";
    if ((s->kind == PS_OPTIM_ADAM || s->kind == PS_OPTIM_ADAMW) &&
        (s->beta1 < 0 || s->beta1 >= 1 || s->beta2 < 0 || s->beta2 >= 1))
        return "beta1 and beta2 must be in [0, 1)";
    if (s->kind == PS_OPTIM_RMSPROP && (s->rho < 0 || s->rho >= 1))
        return "rho must be in [0, 1)";
    if (s->kind >= PS_OPTIM_ADAGRAD && !(s->eps > 0))
        return "eps must be > 0";
    if ((unsigned)s->schedule > PS_SCHED_COSINE)
        return "unknown schedule";
    if (s->schedule == PS_SCHED_STEP && (s->step_size == 0 || !(s->gamma > 0)))
        return "step schedule needs step_size > 0 and gamma > 0";
    if (s->schedule == PS_SCHED_COSINE && s->total_steps == 0)
        return "cosine schedule needs total_steps > 0";
    return NULL;
}
void ps_optim_spec_to_wire(const ps_optim_spec_t *s, Ps__OptimSpec *o)
{
    ps__optim_spec__init(o);
    o->kind = (Ps__Optimizer)s->kind;
    o->lr = s->lr;
    o->momentum = s->momentum;
    o->nesterov = s->nesterov;
    o->beta1 = s->beta1;
    o->beta2 = s->beta2;
    o->eps = s->eps;
    o->weight_decay = s->weight_decay;
    o->rho = s->rho;
    o->schedule = (Ps__Schedule)s->schedule;
    o->step_size = s->step_size;
    o->gamma = s->gamma;
    o->warmup_steps = s->warmup_steps;
    o->total_steps = s->total_steps;
    o->min_lr = s->min_lr;
    o->l1 = s->l1;
    o->l2 = s->l2;
    o->ftrl_beta = s->ftrl_beta;
}

void ps_optim_spec_from_wire(const Ps__OptimSpec *o, ps_optim_spec_t *s)
{
    *s = (ps_optim_spec_t){
        .kind = (ps_optim_kind_t)o->kind, .lr = o->lr, .momentum = o->momentum,
        .nesterov = o->nesterov, .beta1 = o->beta1, .beta2 = o->beta2, .eps = o->eps,
        .weight_decay = o->weight_decay, .rho = o->rho, .schedule = (ps_sched_kind_t)o->schedule,
        .step_size = o->step_size, .gamma = o->gamma, .warmup_steps = o->warmup_steps,
        .total_steps = o->total_steps, .min_lr = o->min_lr, .l1 = o->l1, .l2 = o->l2,
        .ftrl_beta = o->ftrl_beta,
    };
}
