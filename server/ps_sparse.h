/* ps_sparse.h - this shard's part of one sparse table: 64-bit keys -> rows
 * of `dim` floats with their optimizer state, created on first touch with a
 * start value that depends only on (seed, table, key), so every run and
 * every restart agrees. Rows sit in blocks of 64Ki rows (no allocation per
 * key); the key index is a ps_hashmap. Consistency as for dense tables:
 * BSP stashes each rank's push of the round and applies them in rank order
 * once all live ranks pushed; SSP/ASP apply at once. Server loop only.
 *
 * Gradients are applied as sums (not means over the batch): the per-key
 * optimizers (Adagrad, FTRL) scale each coordinate by its own history, and
 * dividing by the batch size would shrink a rare key's step by that size. */
#ifndef PS_SPARSE_H
#define PS_SPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "ps_err.h"
#include "ps_optim_spec.h"
#include "ps_round.h"

typedef struct ps_sparse ps_sparse_t;

typedef struct {
    const char *name;
    uint32_t id;
    uint32_t dim;          /* floats per row, >= 1 */
    ps_optim_spec_t optim; /* any (dense ones row-wise, constant lr), or FTRL */
    uint64_t seed;
    double init_scale; /* rows start uniform in [-s, s]; FTRL needs 0 */
    uint32_t world;
    int max_staleness; /* 0 BSP, > 0 SSP, -1 ASP */
} ps_sparse_params_t;

/* NULL with err set if the parameters are invalid. */
ps_sparse_t *ps_sparse_new(const ps_sparse_params_t *p, ps_errbuf_t *err);
void ps_sparse_destroy(ps_sparse_t **t);

const char *ps_sparse_name(const ps_sparse_t *t);
uint32_t ps_sparse_dim(const ps_sparse_t *t);
/* Distinct keys held (rows created). */
uint64_t ps_sparse_keys(const ps_sparse_t *t);
/* Bytes held: rows with their optimizer state, the key index, stashes. */
size_t ps_sparse_bytes(const ps_sparse_t *t);
/* Bytes one more row takes (its value, optimizer state and index slot). */
size_t ps_sparse_row_bytes(const ps_sparse_t *t);
const ps_optim_spec_t *ps_sparse_optim(const ps_sparse_t *t);
/* Same name, dim and optimizer kind: a second definition of the table. */
bool ps_sparse_same_layout(const ps_sparse_t *t, const char *name, uint32_t dim);

/* The start value of element j of key's row (what a new row holds). */
float ps_sparse_init_value(uint64_t seed, uint32_t table_id, uint64_t key, uint32_t j,
                           double init_scale);

/* Copies the rows of keys[0..n) into out (n * dim floats), creating rows on
 * first touch. PS_ERANGE if the table would exceed its row limit. */
int ps_sparse_pull(ps_sparse_t *t, const uint64_t *keys, uint64_t n, float *out);
/* As ps_sparse_pull, but a key without a row reads its start value and no
 * row is made (evaluation on keys never trained). */
void ps_sparse_peek(const ps_sparse_t *t, const uint64_t *keys, uint64_t n, float *out);
/* Accepts rank's push of clock: keys (n uint64) and grads (n * dim floats,
 * sums over the batch). BSP: both messages are kept (ownership moves) until
 * the round completes; SSP/ASP: applied at once. A push of a clock already
 * accepted is a retry: PS_OK, not applied again. PS_ERANGE for a clock
 * ahead of the one expected. The caller has checked the sizes. */
int ps_sparse_push(ps_sparse_t *t, uint32_t rank, int64_t clock, zmq_msg_t *keys, zmq_msg_t *grads);
/* BSP: completes the round if every live rank pushed it (applies the kept
 * pushes in rank order); true if it did. */
bool ps_sparse_try_complete(ps_sparse_t *t, const uint8_t *live);
/* As ps_table_ready_clock: a pull of clock c may be answered once this is
 * >= c - max_staleness. */
int64_t ps_sparse_ready_clock(const ps_sparse_t *t, const uint8_t *live);
int64_t ps_sparse_worker_clock(const ps_sparse_t *t, uint32_t rank);
/* The table's round (its clocks), read-only. */
const ps_round_t *ps_sparse_round(const ps_sparse_t *t);
/* BSP: drops rank's push kept for the round in progress (ps_round_forget);
 * true if there was one. */
bool ps_sparse_forget_rank(ps_sparse_t *t, uint32_t rank);

/* ---- checkpoints ----
 * A row is dirty from the moment it is made or updated until
 * ps_sparse_clear_dirty: an incremental checkpoint writes the dirty rows
 * only. */
typedef struct {
    uint32_t id, dim, stride; /* stride: floats of a row as stored (value, state) */
    const char *name;
    const ps_optim_spec_t *optim;
    uint64_t seed;
    double init_scale;
    uint32_t world;
    int64_t clock;         /* BSP rounds applied */
    const int64_t *pushes; /* per rank */
} ps_sparse_layout_t;

void ps_sparse_layout(const ps_sparse_t *t, ps_sparse_layout_t *out);
/* Calls fn with each row's key and its stride floats (borrowed for the
 * call), every row or only the dirty ones, in no particular order; fn must
 * not change the table. */
typedef void (*ps_sparse_row_fn)(uint64_t key, const float *row, void *ctx);
void ps_sparse_each_row(const ps_sparse_t *t, bool dirty_only, ps_sparse_row_fn fn, void *ctx);
uint32_t ps_sparse_n_dirty(const ps_sparse_t *t);
void ps_sparse_clear_dirty(ps_sparse_t *t);
/* Empties the table (rows, stash) for a restore. */
void ps_sparse_clear(ps_sparse_t *t);
/* Puts key's row back as saved (stride floats), made if new, then marks
 * it clean. PS_ERANGE past the row limit. */
int ps_sparse_put_row(ps_sparse_t *t, uint64_t key, const float *row);
/* Puts the round's clocks back (after the rows); drops a round in progress. */
void ps_sparse_restore_round(ps_sparse_t *t, int64_t clock, const int64_t *pushes);
/* Applies one gradient row to key's row (creating it): the optimizer step
 * itself (FTRL here; the dense optimizers through ps_optim_step on the row,
 * with a per-row step count for Adam), exposed for tests and the
 * benchmark's in-process baseline. */
int ps_sparse_apply(ps_sparse_t *t, uint64_t key, const float *grad);

#endif
