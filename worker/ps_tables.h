/* ps_tables.h - the parameter tables of a layered model and their slices,
 * the pieces the parameters travel in. Layers declare tables while a net is
 * built; the set is then frozen and owns one parameter and one gradient
 * buffer per table. Worker thread only. */
#ifndef PS_TABLES_H
#define PS_TABLES_H

#include <stddef.h>
#include <stdint.h>

#define PS_TABLE_MAX_DIMS 4
#define PS_TABLE_NAME_MAX 64

/* The callbacks of ps_model.h, repeated word for word (C11 allows an
 * identical typedef twice) so the trainer drives ps_net and ps_model alike
 * and ps_model.h can be retired.
 * Called once per slice during backward as soon as its gradient is final. */
typedef void (*ps_grad_ready_fn)(void *ctx, uint32_t slice);
/* Called during forward before a slice's parameters are read; returns 0 to
 * go on, anything else to abandon the batch. */
typedef int (*ps_params_needed_fn)(void *ctx, uint32_t slice);

typedef enum {
    PS_INIT_ZERO = 0,
    PS_INIT_ONE = 1,
    PS_INIT_UNIFORM = 2, /* U(-scale, scale) */
    PS_INIT_NORMAL = 3,  /* N(0, scale^2) */
} ps_init_kind_t;

typedef struct {
    ps_init_kind_t kind;
    double scale;
} ps_init_t;

typedef struct ps_tables ps_tables_t;

ps_tables_t *ps_tables_new(void);
/* Frees *tables_p and sets it to NULL. Safe with NULL or twice. */
void ps_tables_destroy(ps_tables_t **tables_p);

/* Declares a table of ndim (1..PS_TABLE_MAX_DIMS) dims named name (copied;
 * unique, < PS_TABLE_NAME_MAX) with its initialiser; returns its id, ids
 * counting from 0 in declaration order. Only before ps_tables_freeze. */
uint32_t ps_tables_add(ps_tables_t *t, const char *name, int ndim, const uint64_t *shape,
                       ps_init_t init);
/* Allocates the zeroed buffers and cuts the slices. A table of ndim >= 2 and
 * more than slice_elems floats (slice_elems > 0) is cut along its first dim
 * into row blocks of nearly equal size (they differ by at most one row),
 * each at most about slice_elems floats but never less than a row; every
 * other table is one slice. Slices are numbered table by table, each
 * table's blocks in row order. This is ps_model's rule, so an MLP gets the
 * same slices from both. PS_ENOMEM if the buffers cannot be had (the
 * tables stay unfrozen). */
int ps_tables_freeze(ps_tables_t *t, size_t slice_elems);

uint32_t ps_tables_n_tables(const ps_tables_t *t);
const char *ps_tables_name(const ps_tables_t *t, uint32_t id);
/* Shape into shape[0..PS_TABLE_MAX_DIMS); returns ndim. */
int ps_tables_shape(const ps_tables_t *t, uint32_t id, uint64_t shape[PS_TABLE_MAX_DIMS]);
uint64_t ps_tables_len(const ps_tables_t *t, uint32_t id);
uint64_t ps_tables_n_params(const ps_tables_t *t);
/* The table's buffers (len floats, row-major); valid until destroy. */
float *ps_tables_params(const ps_tables_t *t, uint32_t id);
float *ps_tables_grads(const ps_tables_t *t, uint32_t id);

uint32_t ps_tables_n_slices(const ps_tables_t *t);
/* Table of a slice, and its rows [row0, row0 + rows) of that table's first
 * dim (a 1-D table: row0 0, rows its length). */
uint32_t ps_tables_slice_table(const ps_tables_t *t, uint32_t slice);
void ps_tables_slice_rows(const ps_tables_t *t, uint32_t slice, uint64_t *row0, uint64_t *rows);
/* The table's name, with the rows for a block: "dense1.W[112:224]". */
const char *ps_tables_slice_name(const ps_tables_t *t, uint32_t slice, char *buf, size_t cap);
/* The table's shape with dim 0 cut to the block's rows; returns ndim. */
int ps_tables_slice_shape(const ps_tables_t *t, uint32_t slice, uint64_t shape[PS_TABLE_MAX_DIMS]);
uint64_t ps_tables_slice_len(const ps_tables_t *t, uint32_t slice);
float *ps_tables_slice_params(const ps_tables_t *t, uint32_t slice);
float *ps_tables_slice_grads(const ps_tables_t *t, uint32_t slice);
/* A table's slices are first_slice .. first_slice + n_blocks - 1. */
uint32_t ps_tables_first_slice(const ps_tables_t *t, uint32_t id);
uint32_t ps_tables_n_blocks(const ps_tables_t *t, uint32_t id);

/* Deterministic initial values: table id draws from its own stream,
 * seeded by ps_rng_mix(seed, id), so one table's values do not depend on
 * the sizes of the others. */
void ps_tables_init(ps_tables_t *t, uint64_t seed);
/* Table id draws from stream base + id instead (default base 0): a
 * pipeline stage holding tables base.. of a whole net initialises them to
 * the whole net's values. */
void ps_tables_set_id_base(ps_tables_t *t, uint32_t base);
/* Sets every gradient to 0. */
void ps_tables_zero_grads(ps_tables_t *t);

#endif
