/* ps_table.h - this shard's slice of one dense table: fp32 parameters, their
 * optimizer state and the consistency bookkeeping (per-worker clocks, the
 * BSP round in progress). Server loop thread only. */
#ifndef PS_TABLE_H
#define PS_TABLE_H

#include <stdbool.h>
#include <stdint.h>
#include <zmq.h>

#include "ps_err.h"
#include "ps_optim.h"
#include "ps_round.h"

#define PS_TABLE_MAX_DIMS 4
#define PS_TABLE_NAME_MAX 64

typedef struct ps_table ps_table_t;

typedef struct {
    const char *name;
    uint32_t id;
    uint64_t n_total;      /* elements of the whole table, all shards */
    const uint64_t *shape; /* product == n_total */
    int ndim;
    uint64_t offset, len; /* this shard's slice */
    ps_optim_spec_t optim;
    uint32_t world;    /* workers in the job */
    int max_staleness; /* 0 BSP, > 0 SSP, -1 ASP */
} ps_table_params_t;

/* New slice holding a copy of init (len floats). NULL with err set if the
 * parameters are invalid or memory runs out. */
ps_table_t *ps_table_new(const ps_table_params_t *p, const float *init, ps_errbuf_t *err);
/* Frees *t (including any stashed pushes) and sets it to NULL; NULL-safe. */
void ps_table_destroy(ps_table_t **t);

const char *ps_table_name(const ps_table_t *t);
uint64_t ps_table_n_total(const ps_table_t *t);
uint64_t ps_table_offset(const ps_table_t *t);
uint64_t ps_table_len(const ps_table_t *t);
/* Current parameters (len floats); borrowed, valid until the next update. */
const float *ps_table_params(const ps_table_t *t);
/* Makes *msg (uninitialised on entry) a frame of the current parameters
 * without copying them: the frame holds a reference, and later updates
 * write elsewhere until ZeroMQ has sent it (the table then keeps at most
 * one second buffer of its own). Any thread may close the frame.
 * PS_ENOMEM if ZeroMQ cannot make the frame (*msg is then not open). */
int ps_table_lend_params(ps_table_t *t, zmq_msg_t *msg);
/* What a checkpoint holds of a chunk: a read-only view (save) or the values
 * to put back (restore). Arrays have len floats; pushes has world entries.
 * Arrays read from a file may be unaligned: they are only ever memcpy'd. */
typedef struct {
    uint64_t len;
    uint32_t world;
    int64_t clock;               /* BSP rounds applied */
    const int64_t *pushes;       /* per rank: pushes accepted */
    uint64_t updates;            /* optimizer steps applied */
    const float *params, *m, *v; /* m, v NULL if the optimizer has none */
} ps_table_state_t;

/* Borrowed view of the chunk's state, valid until it changes. */
void ps_table_get_state(const ps_table_t *t, ps_table_state_t *s);
/* Puts a saved state back: parameters, optimizer state and clocks; drops
 * any BSP round in progress. PS_ERANGE if sizes do not match the table. */
int ps_table_set_state(ps_table_t *t, const ps_table_state_t *s);
/* The table's layout, for checkpoints. */
const uint64_t *ps_table_shape(const ps_table_t *t, int *ndim);
uint32_t ps_table_id(const ps_table_t *t);

/* BSP: rounds completed (the clock being gathered). SSP/ASP: the lowest
 * clock over all ranks' pushes. */
int64_t ps_table_clock(const ps_table_t *t);
/* Updates applied so far. */
uint64_t ps_table_updates(const ps_table_t *t);
/* Pushes accepted from rank so far (its clock as this slice sees it). */
int64_t ps_table_worker_clock(const ps_table_t *t, uint32_t rank);
const ps_optim_spec_t *ps_table_optim(const ps_table_t *t);
/* Bytes held: parameters (and a second buffer, once replies in flight
 * made one necessary), optimizer state and bookkeeping. */
size_t ps_table_bytes(const ps_table_t *t);
/* True if the spec (name, size, shape) matches this table's. */
bool ps_table_same_layout(const ps_table_t *t, const char *name, uint64_t n_total);

/* Accepts rank's push of clock: *values holds len floats, the gradient
 * summed over n_samples samples. values NULL means the worker skips this
 * step (fp16 overflow): under BSP the whole round is then skipped (no
 * update, the clock still advances); under SSP/ASP the push counts but
 * changes nothing.
 *  - BSP: kept until every live worker has pushed this clock; then
 *    ps_table_try_complete sums them in rank order and applies once.
 *    Ownership of *values passes to the table (it is left empty).
 *  - SSP/ASP: applied at once as a mean over n_samples.
 * A push of a clock already accepted is a duplicate (a retry): PS_OK, not
 * applied again. PS_ERANGE for a clock ahead of the one expected. */
int ps_table_push(ps_table_t *t, uint32_t rank, int64_t clock, zmq_msg_t *values,
                  uint64_t n_samples);
/* BSP: if every rank with live[rank] has pushed the current clock, sums the
 * kept pushes in rank order, applies the optimizer once to the mean over all
 * their samples, advances the clock and returns true. False otherwise (and
 * always for SSP/ASP). */
bool ps_table_try_complete(ps_table_t *t, const uint8_t *live);
/* The chunk's round (its clocks), read-only: the job folds clocks over the
 * rounds of dense chunks and sparse tables alike. */
const ps_round_t *ps_table_round(const ps_table_t *t);
/* BSP: drops rank's push kept for the round in progress (ps_round_forget);
 * true if there was one. */
bool ps_table_forget_rank(ps_table_t *t, uint32_t rank);
/* BSP: the clock of the newest round that was skipped, -1 if none. */
int64_t ps_table_last_skipped_round(const ps_table_t *t);
/* The newest clock every live worker's pushes are reflected in: a pull of
 * clock c may be answered once this is >= c - max_staleness. BSP: rounds
 * applied. SSP/ASP: min over live ranks of pushes accepted (INT64_MAX if no
 * rank is live). */
int64_t ps_table_ready_clock(const ps_table_t *t, const uint8_t *live);

#endif
