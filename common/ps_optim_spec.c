/* ps_optim_spec.c - optimizer spec checks and wire conversion. */
#include "ps_optim_spec.h"

#include <float.h>
#include <math.h>

const char *const ps_optim_names[] = {PS_OPTIM_MAP(PS_ENUM_NAME) NULL};
const char *const ps_sched_names[] = {PS_SCHED_MAP(PS_ENUM_NAME) NULL};

const char *ps_optim_name(ps_optim_kind_t kind)
{
    return ps_enum_name(ps_optim_names, (int)kind, "unknown");
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
    /* the step runs with subnormals flushed to zero (ps_optim.c), so a
     * smaller eps would be 0 there and a weight with no gradient 0 / 0 */
    if (s->kind >= PS_OPTIM_ADAGRAD && !(s->eps >= FLT_MIN))
        return "eps must be at least 1.18e-38 (the smallest normal float)";
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
#define XX(type, f) o->f = (__typeof__(o->f))s->f;
    PS_OPTIM_SPEC_FIELDS(XX)
#undef XX
}

void ps_optim_spec_from_wire(const Ps__OptimSpec *o, ps_optim_spec_t *s)
{
#define XX(type, f) s->f = (__typeof__(s->f))o->f;
    PS_OPTIM_SPEC_FIELDS(XX)
#undef XX
}
