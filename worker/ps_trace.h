/* ps_trace.h - a worker's timeline (trace_dir): what each step spent its
 * time on (computing, waiting for a server, for the stage before or after,
 * pushing) as spans in Chrome's trace-event JSON, one file per worker,
 * which Perfetto (ui.perfetto.dev) and chrome://tracing open, and
 * tools/trace_summary.py sums up. Timestamps are CLOCK_MONOTONIC in
 * microseconds, so the files of workers on one host line up in one view;
 * files from other hosts each keep their own clock. Training thread only. */
#ifndef PS_TRACE_H
#define PS_TRACE_H

#include <stdint.h>

#include "ps_err.h"

typedef struct ps_trace ps_trace_t;

/* Span names: one list, so the summary tool and the docs say the same. */
#define PS_TRACE_SPANS(X)                                                                      \
    X(PS_SPAN_STEP, "step")                   /* one training step (arg clock) */              \
    X(PS_SPAN_TRAIN, "forward+backward")      /* the whole net's pass, or the last stage's */  \
    X(PS_SPAN_FORWARD, "forward")             /* a stage's forward of a micro-batch */         \
    X(PS_SPAN_BACKWARD, "backward")           /* a stage's backward of a micro-batch */        \
    X(PS_SPAN_WAIT_SERVER, "wait server")     /* a table's reply was not in yet (arg table) */ \
    X(PS_SPAN_WAIT_PREV, "wait stage before") /* activations of a micro-batch */               \
    X(PS_SPAN_WAIT_NEXT, "wait stage after")  /* their gradient */                             \
    X(PS_SPAN_SEND, "send")                   /* to the next or previous stage */              \
    X(PS_SPAN_PUSH, "push")                   /* a table's gradient handed to the client */

#define PS_TRACE_ENUM(e, name) e,
typedef enum { PS_TRACE_SPANS(PS_TRACE_ENUM) PS_SPAN_COUNT } ps_span_t;
#undef PS_TRACE_ENUM

/* Starts DIR/worker-RANK.json (DIR is made if missing, one level) for the
 * first n_steps (>= 1) steps; label names the process in the viewer (the
 * caller's own text, JSON-escaped here). NULL with err (PS_EIO naming
 * trace_dir and the path) if the file cannot be created. */
ps_trace_t *ps_trace_open(const char *dir, uint32_t rank, const char *label, uint64_t n_steps,
                          ps_errbuf_t *err);
/* Records span kind over [begin_ns, end_ns) (ps_time_ns values) with an
 * integer argument (the micro-batch, table or clock; negative: none). No-op
 * on a NULL trace and after the traced steps. */
void ps_trace_span(ps_trace_t *t, ps_span_t kind, int64_t begin_ns, int64_t end_ns, int64_t arg);
/* True while spans are being recorded (a caller may skip the clock reads
 * a span needs when it is not). */
int ps_trace_on(const ps_trace_t *t);
/* A step is done; after the n_steps-th, or as soon as a write to the
 * file has failed (a full disk), the file is completed and renamed into
 * place (nothing more is recorded). PS_OK, or PS_EIO with err naming the
 * file (trace then stops). NULL-safe. */
int ps_trace_step_done(ps_trace_t *t, ps_errbuf_t *err);
/* Completes the file if the job ran fewer steps, frees *tp and sets it to
 * NULL. PS_OK or PS_EIO as above; NULL-safe. */
int ps_trace_close(ps_trace_t **tp, ps_errbuf_t *err);

#endif
