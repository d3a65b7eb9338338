/* ps_tables.c - table registry: declaration, one aligned buffer for all
 * parameters and one for all gradients, row-block slices. */
#include "ps_tables.h"

#include <assert.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_err.h"
#include "ps_rng.h"

/* Each table starts on a 64-byte boundary of the shared buffers. */
#define ALIGN_FLOATS 16

typedef struct {
    char name[PS_TABLE_NAME_MAX];
    int ndim;
    uint64_t shape[PS_TABLE_MAX_DIMS];
    uint64_t len;
    uint64_t offset; /* into params / grads, in floats */
    ps_init_t init;
    uint32_t first_slice, n_blocks;
} table_t;

typedef struct {
    uint32_t table;
    uint64_t row0, rows;
} slice_t;

struct ps_tables {
    table_t *tab;
    uint32_t n, cap;
    slice_t *slices;
    uint32_t n_slices;
    float *params, *grads;
    uint64_t total;   /* floats in each buffer, padding included */
    uint32_t id_base; /* init streams count from here (a pipeline stage's tables) */
    bool is_frozen;
};

ps_tables_t *ps_tables_new(void)
{
    return ps_xcalloc(1, sizeof(ps_tables_t));
}

void ps_tables_destroy(ps_tables_t **tp)
{
    ps_tables_t *t = *tp;
    if (!t)
        return;
    free(t->tab);
    free(t->slices);
    free(t->params);
    free(t->grads);
    free(t);
    *tp = NULL;
}

uint32_t ps_tables_add(ps_tables_t *t, const char *name, int ndim, const uint64_t *shape,
                       ps_init_t init)
{
    assert(!t->is_frozen && ndim >= 1 && ndim <= PS_TABLE_MAX_DIMS);
    assert(strlen(name) < PS_TABLE_NAME_MAX);
    for (uint32_t i = 0; i < t->n; i++)
        assert(strcmp(t->tab[i].name, name) != 0);
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 16;
        t->tab = ps_xrealloc(t->tab, t->cap * sizeof *t->tab);
    }
    table_t *tb = &t->tab[t->n];
    memset(tb, 0, sizeof *tb);
    snprintf(tb->name, sizeof tb->name, "%s", name);
    tb->ndim = ndim;
    tb->len = 1;
    for (int d = 0; d < ndim; d++) {
        tb->shape[d] = shape[d];
        tb->len *= shape[d];
    }
    tb->init = init;
    return t->n++;
}

static uint64_t row_len(const table_t *tb)
{
    return tb->ndim == 1 ? 1 : tb->len / tb->shape[0];
}

/* ps_model's make_slices, for any table with rows. */
static uint32_t count_blocks(const table_t *tb, size_t slice_elems)
{
    if (tb->ndim < 2 || !slice_elems || tb->len <= slice_elems)
        return 1;
    uint64_t o = row_len(tb), rows = slice_elems / o ? slice_elems / o : 1;
    return (uint32_t)((tb->shape[0] + rows - 1) / rows);
}

int ps_tables_freeze(ps_tables_t *t, size_t slice_elems)
{
    assert(!t->is_frozen);
    uint32_t n_slices = 0;
    t->total = 0;
    for (uint32_t i = 0; i < t->n; i++) {
        table_t *tb = &t->tab[i];
        tb->offset = t->total;
        t->total += (tb->len + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
        tb->first_slice = n_slices;
        tb->n_blocks = count_blocks(tb, slice_elems);
        n_slices += tb->n_blocks;
    }
    t->slices = ps_xcalloc(n_slices ? n_slices : 1, sizeof *t->slices);
    for (uint32_t i = 0; i < t->n; i++) {
        const table_t *tb = &t->tab[i];
        uint64_t k = tb->ndim == 1 ? tb->len : tb->shape[0], nb = tb->n_blocks, row = 0;
        for (uint64_t b = 0; b < nb; b++) {
            uint64_t rows = k / nb + (b < k % nb);
            t->slices[tb->first_slice + b] = (slice_t){i, row, rows};
            row += rows;
        }
    }
    t->n_slices = n_slices;
    /* sized by a user's model: a checked allocation, not ps_xmalloc */
    size_t bytes = (size_t)(t->total ? t->total : 1) * sizeof(float);
    t->params = aligned_alloc(64, (bytes + 63) / 64 * 64);
    t->grads = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!t->params || !t->grads) {
        free(t->params);
        free(t->grads);
        t->params = t->grads = NULL;
        return PS_ENOMEM;
    }
    memset(t->params, 0, bytes);
    memset(t->grads, 0, bytes);
    t->is_frozen = true;
    return PS_OK;
}

uint32_t ps_tables_n_tables(const ps_tables_t *t)
{
    return t->n;
}
const char *ps_tables_name(const ps_tables_t *t, uint32_t id)
{
    return t->tab[id].name;
}
uint64_t ps_tables_len(const ps_tables_t *t, uint32_t id)
{
    return t->tab[id].len;
}
float *ps_tables_params(const ps_tables_t *t, uint32_t id)
{
    return t->params + t->tab[id].offset;
}
float *ps_tables_grads(const ps_tables_t *t, uint32_t id)
{
    return t->grads + t->tab[id].offset;
}
uint32_t ps_tables_n_slices(const ps_tables_t *t)
{
    return t->n_slices;
}
uint32_t ps_tables_slice_table(const ps_tables_t *t, uint32_t s)
{
    return t->slices[s].table;
}
uint32_t ps_tables_first_slice(const ps_tables_t *t, uint32_t id)
{
    return t->tab[id].first_slice;
}
uint32_t ps_tables_n_blocks(const ps_tables_t *t, uint32_t id)
{
    return t->tab[id].n_blocks;
}

int ps_tables_shape(const ps_tables_t *t, uint32_t id, uint64_t shape[PS_TABLE_MAX_DIMS])
{
    const table_t *tb = &t->tab[id];
    memcpy(shape, tb->shape, sizeof tb->shape);
    return tb->ndim;
}

uint64_t ps_tables_n_params(const ps_tables_t *t)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < t->n; i++)
        n += t->tab[i].len;
    return n;
}

void ps_tables_slice_rows(const ps_tables_t *t, uint32_t slice, uint64_t *row0, uint64_t *rows)
{
    *row0 = t->slices[slice].row0;
    *rows = t->slices[slice].rows;
}

const char *ps_tables_slice_name(const ps_tables_t *t, uint32_t slice, char *buf, size_t cap)
{
    const slice_t *sl = &t->slices[slice];
    const table_t *tb = &t->tab[sl->table];
    if (tb->n_blocks > 1)
        snprintf(buf, cap, "%s[%llu:%llu]", tb->name, (unsigned long long)sl->row0,
                 (unsigned long long)(sl->row0 + sl->rows));
    else
        snprintf(buf, cap, "%s", tb->name);
    return buf;
}

int ps_tables_slice_shape(const ps_tables_t *t, uint32_t slice, uint64_t shape[PS_TABLE_MAX_DIMS])
{
    const slice_t *sl = &t->slices[slice];
    int ndim = ps_tables_shape(t, sl->table, shape);
    shape[0] = sl->rows;
    return ndim;
}

uint64_t ps_tables_slice_len(const ps_tables_t *t, uint32_t slice)
{
    const slice_t *sl = &t->slices[slice];
    return sl->rows * row_len(&t->tab[sl->table]);
}

static uint64_t slice_offset(const ps_tables_t *t, uint32_t slice)
{
    const slice_t *sl = &t->slices[slice];
    const table_t *tb = &t->tab[sl->table];
    return tb->offset + sl->row0 * row_len(tb);
}

float *ps_tables_slice_params(const ps_tables_t *t, uint32_t slice)
{
    return t->params + slice_offset(t, slice);
}

float *ps_tables_slice_grads(const ps_tables_t *t, uint32_t slice)
{
    return t->grads + slice_offset(t, slice);
}

void ps_tables_init(ps_tables_t *t, uint64_t seed)
{
    for (uint32_t i = 0; i < t->n; i++) {
        const table_t *tb = &t->tab[i];
        float *w = ps_tables_params(t, i);
        ps_rng_t rng;
        ps_rng_seed(&rng, ps_rng_mix(seed, (uint64_t)t->id_base + i));
        for (uint64_t j = 0; j < tb->len; j++) {
            switch (tb->init.kind) {
            case PS_INIT_ZERO:
                w[j] = 0;
                break;
            case PS_INIT_ONE:
                w[j] = 1;
                break;
            case PS_INIT_UNIFORM:
                w[j] = (float)((2.0 * ps_rng_uniform(&rng) - 1.0) * tb->init.scale);
                break;
            case PS_INIT_NORMAL:
                w[j] = (float)(ps_rng_normal(&rng) * tb->init.scale);
                break;
            }
        }
    }
}

void ps_tables_set_id_base(ps_tables_t *t, uint32_t base)
{
    t->id_base = base;
}

void ps_tables_zero_grads(ps_tables_t *t)
{
    memset(t->grads, 0, (size_t)t->total * sizeof(float));
}
