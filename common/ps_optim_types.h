/* ps_optim_types.h - what a table's server-side optimizer is, as plain data
 * without the wire's generated types: part of the installed client API
 * (ps_client.h), so it includes nothing but the C library. The formulas
 * each kind applies are in docs/protocol.md ("Optimizers"). Any thread. */
#ifndef PS_OPTIM_TYPES_H
#define PS_OPTIM_TYPES_H

#include <stdbool.h>
#include <stdint.h>

/* The optimizers, in the order (and with the numbers) of the wire's
 * ps.Optimizer. */
#define PS_OPTIM_MAP(XX)     \
    XX(SGD, "sgd")           \
    XX(MOMENTUM, "momentum") \
    XX(ADAGRAD, "adagrad")   \
    XX(RMSPROP, "rmsprop")   \
    XX(ADAM, "adam")         \
    XX(ADAMW, "adamw")       \
    XX(FTRL, "ftrl") /* sparse tables only */
#define PS_OPTIM_MEMBER(e, s) PS_OPTIM_##e,
typedef enum { PS_OPTIM_MAP(PS_OPTIM_MEMBER) } ps_optim_kind_t;
/* "sgd" ... "ftrl", NULL. */
extern const char *const ps_optim_names[];

/* Learning-rate schedules, in the order of the wire's ps.Schedule. */
#define PS_SCHED_MAP(XX)     \
    XX(CONSTANT, "constant") \
    XX(STEP, "step")         \
    XX(COSINE, "cosine")
#define PS_SCHED_MEMBER(e, s) PS_SCHED_##e,
typedef enum { PS_SCHED_MAP(PS_SCHED_MEMBER) } ps_sched_kind_t;
extern const char *const ps_sched_names[];

typedef struct {
    ps_optim_kind_t kind;
    double lr;
    double momentum;     /* MOMENTUM */
    bool nesterov;       /* MOMENTUM */
    double beta1, beta2; /* ADAM(W) */
    double eps;          /* ADAGRAD, RMSPROP, ADAM(W) */
    double weight_decay; /* L2 added to the gradient; decoupled for ADAMW */
    double rho;          /* RMSPROP */
    ps_sched_kind_t schedule;
    uint64_t step_size;    /* STEP: lr *= gamma every step_size updates */
    double gamma;          /* STEP */
    uint64_t warmup_steps; /* linear warm-up, before the schedule */
    uint64_t total_steps;  /* COSINE: updates from lr down to min_lr */
    double min_lr;         /* COSINE */
    double l1, l2;         /* FTRL regularisation */
    double ftrl_beta;      /* FTRL: rate = lr / (ftrl_beta + sqrt(n)) */
} ps_optim_spec_t;

/* Every field of ps_optim_spec_t, once, in the order of the checkpoint
 * record: XX(TYPE, field) with TYPE ENUM (stored as u32), BOOL (u32), DBL
 * or U64. The wire message (ps.OptimSpec) has fields of the same names.
 * The wire copy and the checkpoint record are generated from this list,
 * so a field cannot be dropped by one of them; a new field goes at the
 * end (checkpoints of format 1 stop after min_lr). */
#define PS_OPTIM_SPEC_FIELDS(XX) \
    XX(ENUM, kind)               \
    XX(DBL, lr)                  \
    XX(DBL, momentum)            \
    XX(BOOL, nesterov)           \
    XX(DBL, beta1)               \
    XX(DBL, beta2)               \
    XX(DBL, eps)                 \
    XX(DBL, weight_decay)        \
    XX(DBL, rho)                 \
    XX(ENUM, schedule)           \
    XX(U64, step_size)           \
    XX(DBL, gamma)               \
    XX(U64, warmup_steps)        \
    XX(U64, total_steps)         \
    XX(DBL, min_lr)              \
    XX(DBL, l1)                  \
    XX(DBL, l2)                  \
    XX(DBL, ftrl_beta)
/* Fields in checkpoints of format 1 (before l1, l2, ftrl_beta were kept). */
#define PS_OPTIM_SPEC_FIELDS_V1 15

/* Returns NULL if the spec is valid, else a static reason ("lr must be > 0"). */
const char *ps_optim_spec_check(const ps_optim_spec_t *spec);
/* Name of a kind ("adam"), for stats and logs. */
const char *ps_optim_name(ps_optim_kind_t kind);
#endif
