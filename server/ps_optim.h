/* ps_optim.h - server-side optimizers with fp32 state, applied to one slice
 * of a table. Used by the server loop thread only. Conventions follow
 * PyTorch's (torch.optim), so results can be compared. */
#ifndef PS_OPTIM_H
#define PS_OPTIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps_optim_spec.h"

typedef struct {
    ps_optim_spec_t spec;
    uint64_t t; /* updates applied so far */
    size_t len; /* elements */
    float *m;   /* momentum / first moment / accumulator; NULL for SGD */
    float *v;   /* second moment (ADAM(W)); NULL otherwise */
} ps_optim_t;

/* Sets up state for len elements (zeroed). PS_ENOMEM if allocation fails. */
int ps_optim_init(ps_optim_t *opt, const ps_optim_spec_t *spec, size_t len);
/* Frees state; safe twice. */
void ps_optim_fini(ps_optim_t *opt);
/* Learning rate of update number t (0-based) under the spec's schedule. */
double ps_optim_lr(const ps_optim_spec_t *spec, uint64_t t);
/* One update: the gradient is grad_sum[i] * grad_scale (grad_scale turns a
 * sum over samples into a mean without a separate pass). w has opt->len
 * elements. Increments opt->t. */
void ps_optim_step(ps_optim_t *opt, float *w, const float *grad_sum, float grad_scale);
/* The same update read from src and written to dst (both opt->len floats;
 * they may be the same array but must not otherwise overlap): lets a table
 * keep the parameters a reply is still sending intact. If grad_more is not
 * NULL the gradient is (grad_sum[i] + grad_more[i]) * grad_scale, bitwise
 * what summing them in a pass of its own first would give (unless an
 * addend is subnormal: the step reads those as zero, see ps_optim_fp_enter),
 * so a BSP round of two pushes reads both where they lie, without an
 * accumulator pass. */
void ps_optim_step_to(ps_optim_t *opt, const float *src, float *dst, const float *grad_sum,
                      const float *grad_more, float grad_scale);
/* What ps_optim_fp_enter changed, for ps_optim_fp_leave. */
typedef struct {
    unsigned int saved; /* the caller's MXCSR */
    bool changed;
} ps_optim_fp_t;
/* Sets the floating-point mode every step runs in (subnormals flushed to
 * zero, on x86; ps_optim.c says why) unless it is set already; every step
 * enters it itself, so this is for a caller that makes many small steps in
 * a row (one per sparse row) and would otherwise switch it each time.
 * Pair each call with ps_optim_fp_leave on the same thread. */
ps_optim_fp_t ps_optim_fp_enter(void);
/* Puts back the mode ps_optim_fp_enter found. */
void ps_optim_fp_leave(ps_optim_fp_t fp);
/* Bytes of optimizer state per element (0, 4 or 8). */
size_t ps_optim_state_bytes_per_elem(ps_optim_kind_t kind);

#endif
