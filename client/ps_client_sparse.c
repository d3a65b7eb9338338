/* ps_client_sparse.c - the sparse table ops: keys are grouped by the
 * shard they hash to (ps_shardmap_key_shard) with a counting sort, each
 * shard's part goes out as one request (keys and rows zero-copy from a
 * staging buffer kept until the replies are in), and the rows of a pull's
 * replies are scattered back to the caller's order. */
#include "ps_client_int.h"

#include <stdio.h>
#include <string.h>

#include "ps_name.h"
#include "ps_shardmap.h"

int ps_client_init_sparse(ps_client_t *c, uint32_t id, const char *name, uint32_t dim,
                          const ps_optim_spec_t *optim, double init_scale, uint64_t seed,
                          ps_errbuf_t *err)
{
    if (ps_name_check_table(name, err) != PS_OK)
        return PS_EINVAL;
    pscl_table_t *t = pscl_table(c, id);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_elems = dim; /* per row */
    t->defined = 2;   /* sparse */
    Ps__OptimSpec wire_optim;
    ps_optim_spec_to_wire(optim, &wire_optim);
    Ps__TableSpec spec;
    ps__table_spec__init(&spec);
    spec.name = t->name;
    spec.optim = &wire_optim;
    spec.sparse = 1;
    spec.dim = dim;
    spec.init_scale = init_scale;
    spec.seed = seed;
    for (uint32_t s = 0; s < c->n_shards; s++) {
        Ps__Header h;
        pscl_header_init(c, &h, PS__OP__INIT_TABLE);
        h.table_id = id;
        h.table = &spec;
        int rc;
        if (!pscl_send(c, s, &h, NULL, NULL, 0, NULL, 0, 0, &rc))
            return ps_err_set(err, rc, "worker %u: cannot send INIT_TABLE to shard %u",
                              c->opts.rank, s);
    }
    return ps_client_wait(c, err);
}

static void stage_reserve(pscl_stage_t *st, uint64_t n, uint64_t n_vals, uint32_t n_shards)
{
    if (n > st->cap) {
        st->cap = n * 2;
        st->keys = ps_xrealloc(st->keys, st->cap * sizeof *st->keys);
        st->pos = ps_xrealloc(st->pos, st->cap * sizeof *st->pos);
    }
    if (n_vals > st->vcap) {
        st->vcap = n_vals * 2;
        st->vals = ps_xrealloc(st->vals, st->vcap * sizeof *st->vals);
    }
    if (!st->off)
        st->off = ps_xmalloc((n_shards + 1) * sizeof *st->off);
}

/* Groups keys (and their gradient rows) by shard: a counting sort, O(n). */
static void stage_keys(ps_client_t *c, pscl_stage_t *st, const uint64_t *keys, uint64_t n,
                       const float *grads, uint32_t dim)
{
    stage_reserve(st, n, grads ? n * dim : 0, c->n_shards);
    uint64_t *off = st->off;
    memset(off, 0, (c->n_shards + 1) * sizeof *off);
    for (uint64_t i = 0; i < n; i++)
        off[ps_shardmap_key_shard(keys[i], c->n_shards) + 1]++;
    for (uint32_t s = 0; s < c->n_shards; s++)
        off[s + 1] += off[s];
    /* fill with a moving cursor per shard, then restore the offsets */
    for (uint64_t i = 0; i < n; i++) {
        uint32_t s = ps_shardmap_key_shard(keys[i], c->n_shards);
        uint64_t at = off[s]++;
        st->keys[at] = keys[i];
        st->pos[at] = i;
        if (grads)
            memcpy(st->vals + at * dim, grads + i * dim, dim * sizeof(float));
    }
    for (uint32_t s = c->n_shards; s > 0; s--)
        off[s] = off[s - 1];
    off[0] = 0;
}

/* A staging area no request in flight uses (see pscl_stage_t). */
static pscl_stage_t *take_stage(ps_client_t *c)
{
    if (c->n_stages_used == c->cap_stages) {
        size_t cap = c->cap_stages ? c->cap_stages * 2 : 2;
        c->stages = ps_xrealloc(c->stages, cap * sizeof *c->stages);
        memset(c->stages + c->cap_stages, 0, (cap - c->cap_stages) * sizeof *c->stages);
        c->cap_stages = cap;
    }
    return &c->stages[c->n_stages_used++];
}

static int send_sparse(ps_client_t *c, int op, uint32_t id, int64_t clock, uint32_t flags,
                       const uint64_t *keys, uint64_t n, const float *grads, float *rows)
{
    if (id >= c->n_tables || c->tables[id].defined != 2)
        return PS_ENOTABLE;
    uint32_t dim = (uint32_t)c->tables[id].n_elems;
    pscl_stage_t *st = take_stage(c);
    stage_keys(c, st, keys, n, grads, dim);
    for (uint32_t s = 0; s < c->n_shards; s++) {
        uint64_t a = st->off[s], len = st->off[s + 1] - a;
        /* every shard gets the request, keys or none: a push counts the
         * rank's clock there (a BSP round waits for every live rank's), and
         * a pull of clock c waits there for round c-1, so no push of c can
         * reach a shard still gathering c-1 */
        Ps__Header h;
        pscl_header_init(c, &h, op);
        h.dtype = PS__DTYPE__F32;
        h.table_id = id;
        h.clock = clock;
        h.flags = flags;
        h.n_elems = len;
        const float *vals = grads ? st->vals + a * dim : NULL;
        int rc;
        pscl_inflight_t *f =
            pscl_send(c, s, &h, st->keys + a, vals, len * dim, grads ? NULL : rows, 0, len, &rc);
        if (!f)
            return rc;
        f->scatter = grads ? NULL : st->pos + a;
        f->dim = dim;
    }
    return PS_OK;
}

int ps_client_sparse_pull(ps_client_t *c, uint32_t id, int64_t clock, uint32_t flags,
                          const uint64_t *keys, uint64_t n, float *rows)
{
    return send_sparse(c, PS__OP__SPARSE_PULL, id, clock, flags, keys, n, NULL, rows);
}

int ps_client_sparse_push(ps_client_t *c, uint32_t id, int64_t clock, const uint64_t *keys,
                          uint64_t n, const float *grads)
{
    return send_sparse(c, PS__OP__SPARSE_PUSH, id, clock, 0, keys, n, grads, NULL);
}
