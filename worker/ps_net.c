/* ps_net.c - a net as a list of nodes: layers, and the adds that close
 * residuals. Node i maps activation i to activation i + 1; an add also
 * reads the activation its residual opened at (its tap). */
#include "ps_net.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_metric.h"
#include "ps_rng.h"

#define NO_TAP UINT32_MAX

typedef struct {
    ps_layer_t *layer; /* NULL: an add */
    uint32_t tap;      /* an add: the activation the residual opened at */
} node_t;

struct ps_net {
    ps_tables_t *tables;
    node_t *nodes;
    uint32_t n_nodes, cap_nodes;
    ps_layer_t *loss;
    ps_shape_t *shape; /* n_nodes + 1: shape[i] is node i's input */
    float **act;       /* n_nodes + 1: act[i + 1] node i's output; act[0] the tokens */
    float **skip;      /* n_nodes + 1: the gradient a residual adds back at its tap */
    bool *skip_set;
    float *ga, *gb;         /* gradient ping-pong, max_batch x the largest activation */
    float *targets;         /* tokens input: max_batch x T, the next tokens */
    uint64_t *keys;         /* max_batch dropout keys */
    ps_shape_t *item_shape; /* n_items: the shape after each spec item */
    size_t n_items;
    const float *x; /* the pass's input rows (borrowed for the call) */
    size_t max_batch, row_len;
    ps_shape_t input;
    ps_net_task_t task;
    uint32_t token_limit; /* tokens input: values must be below this */
    /* A pipeline stage: spec items [item_lo, item_hi); its nodes are numbered
     * (dropout streams) from node_base, as in the whole net. */
    size_t item_lo, item_hi;
    uint32_t node_base;
    bool want_dx0;         /* a stage after the first: backward makes the input's gradient */
    const float *dx_in;    /* that gradient after a backward (ga or gb) */
    bool is_shapes_only;   /* ps_net_new_shapes: no buffers */
    ps_shape_t spec_input; /* the whole net's input (a language model's stages: tokens) */
    bool accumulate;       /* backward adds to the gradients (ps_net_set_accumulate) */
    bool shares_tables;    /* ps_net_new_sibling: tables are the owner's, not freed here */
};

static const float *act_in(const ps_net_t *net, uint32_t i)
{
    return i == 0 && net->input.kind != PS_SHAPE_TOKENS ? net->x : net->act[i];
}

static void add_node(ps_net_t *net, ps_layer_t *layer, uint32_t tap, ps_shape_t out)
{
    if (net->n_nodes == net->cap_nodes) {
        net->cap_nodes *= 2;
        net->nodes = ps_xrealloc(net->nodes, net->cap_nodes * sizeof *net->nodes);
        net->shape = ps_xrealloc(net->shape, (net->cap_nodes + 1) * sizeof *net->shape);
    }
    net->nodes[net->n_nodes] = (node_t){layer, tap};
    net->shape[++net->n_nodes] = out;
}

/* The loss, and what the net is for. */
static int add_loss(ps_net_t *net, const ps_layer_desc_t *d, ps_errbuf_t *err)
{
    ps_shape_t in = net->shape[net->n_nodes];
    net->loss =
        ps_layer_new(d, in, net->tables, net->node_base + net->n_nodes, net->max_batch, err);
    if (!net->loss)
        return PS_EINVAL;
    if (in.kind == PS_SHAPE_SEQ) {
        if (net->spec_input.kind != PS_SHAPE_TOKENS || in.d[0] != net->spec_input.d[0])
            return ps_err_set(err, PS_EINVAL,
                              "a sequence's targets are its next tokens: needs input tokens(%u)",
                              in.d[0]);
        net->task = PS_NET_LANGUAGE_MODEL;
        if (in.d[1] < net->token_limit)
            net->token_limit = in.d[1];
    } else if (d->kind == PS_LAYER_MSE && in.d[0] == 1) {
        net->task = PS_NET_REGRESSOR;
    } else {
        net->task = PS_NET_CLASSIFIER;
    }
    return PS_OK;
}

/* One desc: a layer, a residual opened (its tap pushed) or closed (an add). */
static int add_desc(ps_net_t *net, const ps_layer_desc_t *d, uint32_t *taps, int *depth,
                    ps_errbuf_t *err)
{
    ps_shape_t cur = net->shape[net->n_nodes];
    char a[64], b[64];
    if (d->kind == PS_LAYER_RESIDUAL) {
        taps[(*depth)++] = net->n_nodes;
        return PS_OK;
    }
    if (d->kind == PS_LAYER_END) {
        uint32_t tap = taps[--*depth];
        if (!ps_shape_equal(net->shape[tap], cur))
            return ps_err_set(
                err, PS_EINVAL, "the residual branch maps %s to %s: a residual must keep the shape",
                ps_shape_str(net->shape[tap], a, sizeof a), ps_shape_str(cur, b, sizeof b));
        add_node(net, NULL, tap, cur);
        return PS_OK;
    }
    if (ps_layer_kind_info(d->kind)->is_loss)
        return add_loss(net, d, err);
    ps_layer_t *l =
        ps_layer_new(d, cur, net->tables, net->node_base + net->n_nodes, net->max_batch, err);
    if (!l)
        return PS_EINVAL;
    size_t len = ps_shape_len(l->out);
    if (len > PS_NET_MAX_SAMPLE_FLOATS) {
        ps_layer_destroy(&l);
        return ps_err_set(err, PS_EINVAL, "%zu floats per sample, more than %u", len,
                          PS_NET_MAX_SAMPLE_FLOATS);
    }
    if (d->kind == PS_LAYER_EMBED && d->arg[0] < net->token_limit)
        net->token_limit = (uint32_t)d->arg[0];
    add_node(net, l, NO_TAP, l->out);
    return PS_OK;
}

/* A pass buffer of bytes: allocated if alloc, counted in *total either
 * way (so the buffers and their estimate, ps_net_stage_memory, are one
 * list). */
static void *pass_buffer(bool alloc, size_t bytes, uint64_t *total)
{
    *total += bytes;
    return alloc ? ps_xmalloc(bytes ? bytes : 1) : NULL;
}

/* The pass buffers (activations, residual gradients, the gradient
 * ping-pong, targets, keys), allocated if alloc; returns their bytes. */
static uint64_t pass_buffers(ps_net_t *net, bool alloc)
{
    size_t n = net->n_nodes + 1, widest = 0, mb = net->max_batch;
    uint64_t total = 0;
    bool *skip = ps_xcalloc(n, sizeof *skip);
    if (alloc) {
        net->act = ps_xcalloc(n, sizeof *net->act);
        net->skip = ps_xcalloc(n, sizeof *net->skip);
        net->skip_set = ps_xcalloc(n, sizeof *net->skip_set);
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = ps_shape_len(net->shape[i]);
        widest = len > widest ? len : widest;
        if (i == 0 && net->input.kind != PS_SHAPE_TOKENS)
            continue; /* the input rows are the caller's */
        float *buf = pass_buffer(alloc, mb * len * sizeof(float), &total);
        if (alloc)
            net->act[i] = buf;
    }
    for (uint32_t i = 0; i < net->n_nodes; i++) {
        uint32_t tap = net->nodes[i].tap;
        if (tap == NO_TAP || skip[tap])
            continue;
        skip[tap] = true;
        float *buf = pass_buffer(alloc, mb * ps_shape_len(net->shape[tap]) * sizeof(float), &total);
        if (alloc)
            net->skip[tap] = buf;
    }
    free(skip);
    net->ga = pass_buffer(alloc, mb * widest * sizeof(float), &total);
    net->gb = pass_buffer(alloc, mb * widest * sizeof(float), &total);
    if (net->spec_input.kind == PS_SHAPE_TOKENS)
        net->targets = pass_buffer(alloc, mb * net->spec_input.d[0] * sizeof(float), &total);
    net->keys = pass_buffer(alloc, mb * sizeof *net->keys, &total);
    for (size_t i = 0; alloc && i < mb; i++)
        net->keys[i] = i;
    return total;
}

static void alloc_buffers(ps_net_t *net)
{
    pass_buffers(net, true);
}

/* Every desc of the net's items in order, checking the structure the
 * parser also checks (a spec can be built in code). err names the layer. */
static int add_descs(ps_net_t *net, const ps_netspec_t *spec, ps_errbuf_t *err)
{
    uint32_t taps[64];
    int depth = 0;
    for (size_t i = net->item_lo; i < net->item_hi; i++) {
        const ps_layer_desc_t *d = &spec->layers[i];
        bool is_loss = ps_layer_kind_info(d->kind)->is_loss, is_last = i + 1 == spec->n_layers;
        if ((d->kind == PS_LAYER_RESIDUAL && depth == 64) ||
            (d->kind == PS_LAYER_END && depth == 0) || is_loss != is_last)
            return ps_err_set(err, PS_EINVAL, "layer %d '%s': misplaced (brackets or loss)", d->pos,
                              d->text);
        if (add_desc(net, d, taps, &depth, err) != PS_OK) {
            char why[sizeof err->msg];
            snprintf(why, sizeof why, "%s", err ? err->msg : "");
            return ps_err_set(err, PS_EINVAL, "layer %d '%s': %s", d->pos, d->text, why);
        }
        net->item_shape[i] = net->shape[net->n_nodes];
    }
    bool wants_loss = net->item_hi == spec->n_layers;
    if (depth != 0 || !net->loss != !wants_loss || net->n_nodes == 0)
        return ps_err_set(err, PS_EINVAL,
                          "a net needs layers, closed residuals and a loss at the end");
    return PS_OK;
}

/* One item of a walk: its shape effect, nodes and tables (declared in
 * scratch, max_batch 1). */
static int walk_one(const ps_layer_desc_t *d, ps_tables_t *scratch, ps_shape_t *cur,
                    uint32_t *nodes, int *depth, ps_errbuf_t *err)
{
    if (d->kind == PS_LAYER_RESIDUAL) {
        ++*depth;
        return PS_OK;
    }
    if (d->kind == PS_LAYER_END) {
        --*depth;
        ++*nodes;
        return PS_OK;
    }
    if (ps_layer_kind_info(d->kind)->is_loss)
        return PS_OK;
    ps_layer_t *l = ps_layer_new(d, *cur, scratch, *nodes, 1, err);
    if (!l) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err ? err->msg : "");
        return ps_err_set(err, PS_EINVAL, "layer %d '%s': %s", d->pos, d->text, why);
    }
    *cur = l->out;
    ++*nodes;
    ps_layer_destroy(&l);
    return PS_OK;
}

/* Items [0, upto) of spec walked without buffers: the shape after them,
 * the nodes and tables they make; items (may be NULL) gets each one's
 * costs for ps_stage_split. */
static int walk_items(const ps_netspec_t *spec, size_t upto, ps_stage_item_t *items,
                      ps_shape_t *shape, uint32_t *n_nodes, uint32_t *n_tables, ps_errbuf_t *err)
{
    ps_tables_t *scratch = ps_tables_new();
    ps_shape_t cur = spec->input;
    uint32_t nodes = 0;
    int depth = 0, rc = PS_OK;
    for (size_t i = 0; i < upto && rc == PS_OK; i++) {
        const ps_layer_desc_t *d = &spec->layers[i];
        uint64_t before = ps_tables_n_params(scratch);
        rc = walk_one(d, scratch, &cur, &nodes, &depth, err);
        if (items)
            items[i] = (ps_stage_item_t){ps_tables_n_params(scratch) - before, ps_shape_len(cur),
                                         depth == 0 && i + 1 < spec->n_layers, d->pos, d->text};
    }
    *shape = cur;
    *n_nodes = nodes;
    *n_tables = ps_tables_n_tables(scratch);
    ps_tables_destroy(&scratch);
    return rc;
}

int ps_net_stage_items(const ps_netspec_t *spec, ps_stage_item_t *items, ps_errbuf_t *err)
{
    ps_shape_t shape;
    uint32_t nodes, tables;
    return walk_items(spec, spec->n_layers, items, &shape, &nodes, &tables, err);
}

/* The layers of items [lo, hi) on their input shape, tables declared,
 * nothing allocated for a pass yet. */
static ps_net_t *net_build(const ps_netspec_t *spec, size_t lo, size_t hi, size_t max_batch,
                           ps_errbuf_t *err)
{
    if (max_batch == 0 || spec->n_layers == 0 || lo >= hi || hi > spec->n_layers) {
        ps_err_set(err, PS_EINVAL, "a net needs layers and max_batch >= 1");
        return NULL;
    }
    if (ps_shape_len(spec->input) > PS_NET_MAX_SAMPLE_FLOATS) {
        ps_err_set(err, PS_EINVAL, "input: %zu floats per sample, more than %u",
                   ps_shape_len(spec->input), PS_NET_MAX_SAMPLE_FLOATS);
        return NULL;
    }
    ps_shape_t in = spec->input;
    uint32_t nodes = 0, tables = 0;
    if (lo > 0 && walk_items(spec, lo, NULL, &in, &nodes, &tables, err) != PS_OK)
        return NULL;
    ps_net_t *net = ps_xcalloc(1, sizeof *net);
    net->tables = ps_tables_new();
    ps_tables_set_id_base(net->tables, tables);
    net->item_lo = lo;
    net->item_hi = hi;
    net->node_base = nodes;
    net->want_dx0 = lo > 0;
    net->max_batch = max_batch;
    net->input = in;
    net->spec_input = spec->input;
    net->token_limit = UINT32_MAX;
    net->row_len = ps_shape_len(in) + (in.kind == PS_SHAPE_TOKENS);
    net->cap_nodes = 32;
    net->nodes = ps_xmalloc(net->cap_nodes * sizeof *net->nodes);
    net->shape = ps_xmalloc((net->cap_nodes + 1) * sizeof *net->shape);
    net->shape[0] = in;
    net->n_items = spec->n_layers;
    net->item_shape = ps_xcalloc(spec->n_layers, sizeof *net->item_shape);
    if (add_descs(net, spec, err) != PS_OK)
        ps_net_destroy(&net);
    return net;
}

ps_net_t *ps_net_new_shapes(const ps_netspec_t *spec, ps_errbuf_t *err)
{
    ps_net_t *net = net_build(spec, 0, spec->n_layers, 1, err);
    if (net)
        net->is_shapes_only = true;
    return net;
}

ps_net_t *ps_net_new(const ps_netspec_t *spec, size_t max_batch, size_t slice_elems,
                     ps_errbuf_t *err)
{
    return ps_net_new_stage(spec, 0, spec->n_layers, max_batch, slice_elems, err);
}

ps_net_t *ps_net_new_stage(const ps_netspec_t *spec, size_t lo, size_t hi, size_t max_batch,
                           size_t slice_elems, ps_errbuf_t *err)
{
    ps_net_t *net = net_build(spec, lo, hi, max_batch, err);
    if (!net)
        return NULL;
    if (ps_tables_freeze(net->tables, slice_elems) != PS_OK) {
        ps_err_set(err, PS_ENOMEM, "cannot allocate %llu parameters (twice, with gradients)",
                   (unsigned long long)ps_tables_n_params(net->tables));
        goto fail;
    }
    alloc_buffers(net);
    return net;
fail:
    ps_net_destroy(&net);
    return NULL;
}

/* The same layers on the same shapes and the same tables: what a sibling
 * must have before it may read its owner's buffers. */
static bool same_layout(const ps_net_t *a, const ps_net_t *b)
{
    uint32_t n = ps_tables_n_tables(a->tables);
    if (n != ps_tables_n_tables(b->tables) || a->n_nodes != b->n_nodes ||
        !ps_shape_equal(a->input, b->input))
        return false;
    for (uint32_t id = 0; id < n; id++)
        if (strcmp(ps_tables_name(a->tables, id), ps_tables_name(b->tables, id)) != 0 ||
            ps_tables_len(a->tables, id) != ps_tables_len(b->tables, id))
            return false;
    for (uint32_t i = 0; i < a->n_nodes; i++) {
        const ps_layer_t *la = a->nodes[i].layer, *lb = b->nodes[i].layer;
        if (!la != !lb || (la && la->kind != lb->kind) ||
            !ps_shape_equal(a->shape[i + 1], b->shape[i + 1]))
            return false;
    }
    return true;
}

ps_net_t *ps_net_new_sibling(const ps_netspec_t *spec, ps_net_t *owner, ps_errbuf_t *err)
{
    assert(!owner->is_shapes_only && !owner->shares_tables);
    ps_net_t *net = net_build(spec, owner->item_lo, owner->item_hi, owner->max_batch, err);
    if (!net)
        return NULL;
    if (!same_layout(net, owner)) {
        ps_err_set(err, PS_EINVAL, "a sibling net needs the spec its owner was built from");
        ps_net_destroy(&net);
        return NULL;
    }
    /* the layers keep table ids only and read the buffers through each
     * pass's tables, so the owner's serve both nets */
    ps_tables_destroy(&net->tables);
    net->tables = owner->tables;
    net->shares_tables = true;
    alloc_buffers(net);
    return net;
}

int ps_net_stage_memory(const ps_netspec_t *spec, size_t lo, size_t hi, size_t max_batch,
                        ps_net_mem_t *mem, ps_errbuf_t *err)
{
    memset(mem, 0, sizeof *mem);
    ps_net_t *net = net_build(spec, lo, hi, max_batch, err);
    if (!net)
        return err->code ? err->code : PS_EINVAL;
    mem->params = ps_tables_n_params(net->tables) * sizeof(float);
    mem->grads = mem->params;
    mem->activations = pass_buffers(net, false);
    for (uint32_t i = 0; i < net->n_nodes; i++)
        mem->scratch += net->nodes[i].layer ? net->nodes[i].layer->scratch_bytes : 0;
    mem->scratch += net->loss ? net->loss->scratch_bytes : 0;
    mem->in_len = net->row_len;
    mem->out_len = ps_shape_len(net->shape[net->n_nodes]);
    ps_net_destroy(&net);
    return PS_OK;
}

void ps_net_destroy(ps_net_t **np)
{
    ps_net_t *net = *np;
    if (!net)
        return;
    for (uint32_t i = 0; i < net->n_nodes; i++)
        ps_layer_destroy(&net->nodes[i].layer);
    ps_layer_destroy(&net->loss);
    for (uint32_t i = 0; net->act && i <= net->n_nodes; i++) {
        free(net->act[i]);
        free(net->skip[i]);
    }
    free(net->act);
    free(net->skip);
    free(net->skip_set);
    free(net->nodes);
    free(net->shape);
    free(net->ga);
    free(net->gb);
    free(net->targets);
    free(net->keys);
    free(net->item_shape);
    if (!net->shares_tables)
        ps_tables_destroy(&net->tables);
    free(net);
    *np = NULL;
}

size_t ps_net_input_len(const ps_net_t *net)
{
    return net->row_len;
}
ps_shape_t ps_net_input_shape(const ps_net_t *net)
{
    return net->input;
}
ps_shape_t ps_net_output_shape(const ps_net_t *net)
{
    return net->shape[net->n_nodes];
}
ps_net_task_t ps_net_task(const ps_net_t *net)
{
    return net->task;
}
int ps_net_is_classifier(const ps_net_t *net)
{
    return net->task == PS_NET_CLASSIFIER;
}
size_t ps_net_max_batch(const ps_net_t *net)
{
    return net->max_batch;
}
uint32_t ps_net_n_tables(const ps_net_t *net)
{
    return ps_tables_n_tables(net->tables);
}
uint64_t ps_net_table_len(const ps_net_t *net, uint32_t id)
{
    return ps_tables_len(net->tables, id);
}
float *ps_net_params(ps_net_t *net, uint32_t id)
{
    return ps_tables_params(net->tables, id);
}
float *ps_net_grads(ps_net_t *net, uint32_t id)
{
    return ps_tables_grads(net->tables, id);
}
uint64_t ps_net_n_params(const ps_net_t *net)
{
    return ps_tables_n_params(net->tables);
}
uint32_t ps_net_n_slices(const ps_net_t *net)
{
    return ps_tables_n_slices(net->tables);
}
const float *ps_net_output(const ps_net_t *net)
{
    return net->act[net->n_nodes];
}
uint32_t ps_net_token_limit(const ps_net_t *net)
{
    return net->token_limit;
}

ps_shape_t ps_net_item_shape(const ps_net_t *net, size_t i)
{
    assert(i < net->n_items);
    return net->item_shape[i];
}
void ps_net_init_params(ps_net_t *net, uint64_t seed)
{
    ps_tables_init(net->tables, seed);
}

const char *ps_net_table_name(const ps_net_t *net, uint32_t id, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", ps_tables_name(net->tables, id));
    return buf;
}

int ps_net_table_shape(const ps_net_t *net, uint32_t id, uint64_t shape[PS_TABLE_MAX_DIMS])
{
    return ps_tables_shape(net->tables, id, shape);
}

const char *ps_net_slice_name(const ps_net_t *net, uint32_t slice, char *buf, size_t cap)
{
    return ps_tables_slice_name(net->tables, slice, buf, cap);
}

int ps_net_slice_shape(const ps_net_t *net, uint32_t slice, uint64_t shape[PS_TABLE_MAX_DIMS])
{
    return ps_tables_slice_shape(net->tables, slice, shape);
}

uint64_t ps_net_slice_len(const ps_net_t *net, uint32_t slice)
{
    return ps_tables_slice_len(net->tables, slice);
}

float *ps_net_slice_params(ps_net_t *net, uint32_t slice)
{
    return ps_tables_slice_params(net->tables, slice);
}

float *ps_net_slice_grads(ps_net_t *net, uint32_t slice)
{
    return ps_tables_slice_grads(net->tables, slice);
}

void ps_net_set_sample_keys(ps_net_t *net, const uint64_t *keys, size_t n)
{
    assert(n <= net->max_batch);
    memcpy(net->keys, keys, n * sizeof *keys);
}

uint64_t ps_net_sample_key(uint64_t seed, uint64_t step, uint64_t sample)
{
    return ps_rng_mix(ps_rng_mix(seed, step), sample);
}

/* Token rows: inputs x[0..T) into act[0], targets x[1..T] apart. */
static void split_tokens(ps_net_t *net, const float *x, size_t b)
{
    size_t t = net->input.d[0];
    for (size_t i = 0; i < b; i++) {
        memcpy(net->act[0] + i * t, x + i * (t + 1), t * sizeof(float));
        memcpy(net->targets + i * t, x + i * (t + 1) + 1, t * sizeof(float));
    }
}

static int forward(ps_net_t *net, const float *x, size_t b, ps_pass_t *pass)
{
    net->x = x;
    if (net->input.kind == PS_SHAPE_TOKENS)
        split_tokens(net, x, b);
    for (uint32_t i = 0; i < net->n_nodes; i++) {
        const node_t *nd = &net->nodes[i];
        const float *in = act_in(net, i);
        float *out = net->act[i + 1];
        if (nd->layer) {
            if (nd->layer->ops->forward(nd->layer, in, out, b, pass) != 0)
                return -1;
            continue;
        }
        const float *skip = act_in(net, nd->tap);
        size_t n = b * ps_shape_len(net->shape[i + 1]);
        for (size_t j = 0; j < n; j++)
            out[j] = in[j] + skip[j];
    }
    return 0;
}

static void add_to(float *dst, const float *src, size_t n)
{
    for (size_t j = 0; j < n; j++)
        dst[j] += src[j];
}

/* From the loss gradient in ga to the first layer. An add passes its
 * gradient through and keeps a copy for its tap, added in once the
 * backward pass reaches the tap. The net's input gets no gradient. */
static void backward(ps_net_t *net, size_t b, ps_pass_t *pass)
{
    float *dy = net->ga, *dx = net->gb;
    memset(net->skip_set, 0, (net->n_nodes + 1) * sizeof *net->skip_set);
    for (uint32_t i = net->n_nodes; i-- > 0;) {
        const node_t *nd = &net->nodes[i];
        size_t n = b * ps_shape_len(net->shape[i + 1]);
        if (nd->layer) {
            nd->layer->ops->backward(nd->layer, act_in(net, i), net->act[i + 1], dy,
                                     i > 0 || net->want_dx0 ? dx : NULL, b, pass);
            float *t = dy;
            dy = dx;
            dx = t;
        } else if (nd->tap > 0 || net->want_dx0) {
            if (net->skip_set[nd->tap])
                add_to(net->skip[nd->tap], dy, n);
            else
                memcpy(net->skip[nd->tap], dy, n * sizeof(float));
            net->skip_set[nd->tap] = true;
        }
        if ((i > 0 || net->want_dx0) && net->skip_set[i])
            add_to(dy, net->skip[i], b * ps_shape_len(net->shape[i]));
    }
    net->dx_in = net->want_dx0 ? dy : NULL;
}

static const float *targets_of(const ps_net_t *net, const float *y)
{
    return net->spec_input.kind == PS_SHAPE_TOKENS ? net->targets : y;
}

void ps_net_set_targets(ps_net_t *net, const float *rows, size_t b)
{
    assert(b <= net->max_batch && net->targets);
    size_t t = net->spec_input.d[0];
    for (size_t i = 0; i < b; i++)
        memcpy(net->targets + i * t, rows + i * (t + 1) + 1, t * sizeof(float));
}

double ps_net_train_batch(ps_net_t *net, const float *x, const float *y, size_t b,
                          ps_params_needed_fn need, ps_grad_ready_fn ready, void *ctx)
{
    assert(b <= net->max_batch);
    ps_pass_t pass = {net->tables, need, ready, ctx, true, net->keys, net->accumulate};
    if (b == 0) {
        backward(net, 0, &pass);
        return 0;
    }
    if (forward(net, x, b, &pass) != 0)
        return NAN;
    double loss =
        net->loss->ops->loss(net->loss, net->act[net->n_nodes], targets_of(net, y), b, net->ga);
    backward(net, b, &pass);
    return loss;
}

double ps_net_forward(ps_net_t *net, const float *x, const float *y, size_t b, bool is_training)
{
    assert(b <= net->max_batch);
    ps_pass_t pass = {net->tables, NULL, NULL, NULL, is_training, net->keys, false};
    if (b == 0)
        return 0;
    forward(net, x, b, &pass);
    return net->loss->ops->loss(net->loss, net->act[net->n_nodes], targets_of(net, y), b, NULL);
}

double ps_net_loss(ps_net_t *net, const float *x, const float *y, size_t b)
{
    return ps_net_forward(net, x, y, b, false);
}

static bool is_index_below(float v, uint32_t n)
{
    return v >= 0 && v < (float)n && v == floorf(v);
}

/* Every value of a token input is a token the net embeds. */
static int check_tokens(const ps_net_t *net, const ps_dataset_t *ds, const char *what,
                        ps_errbuf_t *err)
{
    for (size_t k = 0; k < ds->n * ds->d; k++)
        if (!is_index_below(ps_data_value(ds, k), net->token_limit))
            return ps_err_set(err, PS_EFORMAT,
                              "%s: sample %zu value %zu is %g, not a token below %u", what,
                              k / ds->d, k % ds->d, (double)ps_data_value(ds, k), net->token_limit);
    return PS_OK;
}

int ps_net_check_data(const ps_net_t *net, const ps_dataset_t *ds, const char *what,
                      ps_errbuf_t *err)
{
    char s[64];
    if (net->item_lo == 0 && ds->d != net->row_len)
        return ps_err_set(err, PS_EFORMAT, "%s has %zu values per sample but input %s needs %zu",
                          what, ds->d, ps_shape_str(net->input, s, sizeof s), net->row_len);
    if (net->input.kind == PS_SHAPE_TOKENS)
        return check_tokens(net, ds, what, err);
    if (!net->loss)
        return PS_OK; /* a pipeline stage before the last: the labels are not its */
    ps_shape_t out = ps_net_output_shape(net);
    bool labels = net->task == PS_NET_CLASSIFIER && net->loss->kind != PS_LAYER_BCE;
    for (size_t i = 0; labels && i < ds->n; i++)
        if (!is_index_below(ds->y[i], out.d[0]))
            return ps_err_set(err, PS_EFORMAT, "%s: sample %zu has label %g, not a class 0..%u",
                              what, i, (double)ds->y[i], out.d[0] - 1);
    return PS_OK;
}

uint32_t ps_net_label_limit(const ps_net_t *net)
{
    if (net->input.kind == PS_SHAPE_TOKENS || net->task != PS_NET_CLASSIFIER ||
        net->loss->kind == PS_LAYER_BCE)
        return 0;
    return ps_net_output_shape(net).d[0];
}

static size_t argmax(const float *z, size_t n)
{
    size_t best = 0;
    for (size_t j = 1; j < n; j++)
        if (z[j] > z[best])
            best = j;
    return best;
}

/* Correct predictions (and absolute errors) of the b samples just run. */
static void score_batch(const ps_net_t *net, const float *y, size_t b, float *scores,
                        size_t *correct, double *abs_err)
{
    ps_shape_t out = ps_net_output_shape(net);
    const float *z = ps_net_output(net);
    if (net->task == PS_NET_LANGUAGE_MODEL) {
        size_t t = out.d[0], v = out.d[1];
        for (size_t r = 0; r < b * t; r++)
            *correct += argmax(z + r * v, v) == (size_t)net->targets[r];
        return;
    }
    size_t w = out.d[0];
    for (size_t i = 0; i < b; i++) {
        const float *zi = z + i * w;
        if (net->loss->kind == PS_LAYER_BCE) {
            *correct += (zi[0] >= 0) == (y[i] > 0);
            scores[i] = zi[0];
        } else if (net->task == PS_NET_REGRESSOR) {
            *abs_err += fabs((double)zi[0] - y[i]);
        } else {
            *correct += argmax(zi, w) == (size_t)y[i];
        }
    }
}

void ps_net_evaluate(ps_net_t *net, const ps_dataset_t *ds, ps_net_eval_t *out)
{
    assert(ds->x || !ds->x8); /* a set of bytes (ps_data_load_idx_bytes) is widened first */
    double loss = 0, abs_err = 0;
    size_t correct = 0;
    bool binary = net->loss->kind == PS_LAYER_BCE;
    float *scores = binary && ds->n ? ps_xmalloc(ds->n * sizeof *scores) : NULL;
    memset(out, 0, sizeof *out);
    for (size_t start = 0; start < ds->n; start += net->max_batch) {
        size_t b = ds->n - start < net->max_batch ? ds->n - start : net->max_batch;
        const float *y = ds->y ? ds->y + start : NULL;
        loss += ps_net_loss(net, ds->x + start * ds->d, y, b);
        score_batch(net, y, b, scores ? scores + start : NULL, &correct, &abs_err);
    }
    out->n = ds->n;
    if (!ds->n)
        goto done;
    out->loss = loss / (double)ds->n;
    out->mae = abs_err / (double)ds->n;
    if (net->task == PS_NET_LANGUAGE_MODEL) {
        out->accuracy = (double)correct / ((double)ds->n * net->input.d[0]);
        out->bits_per_byte = out->loss / M_LN2;
    } else {
        out->accuracy = (double)correct / (double)ds->n;
    }
    if (scores)
        out->auc = ps_metric_auc(scores, ds->y, ds->n);
done:
    free(scores);
}

bool ps_net_has_loss(const ps_net_t *net)
{
    return net->loss != NULL;
}

int ps_net_stage_forward(ps_net_t *net, const float *x, size_t b, bool is_training,
                         ps_params_needed_fn need, void *ctx)
{
    assert(b <= net->max_batch && !net->is_shapes_only);
    ps_pass_t pass = {net->tables, need, NULL, ctx, is_training, net->keys, false};
    return b == 0 ? 0 : forward(net, x, b, &pass);
}

void ps_net_stage_backward(ps_net_t *net, const float *dy, size_t b, ps_grad_ready_fn ready,
                           void *ctx)
{
    assert(b <= net->max_batch && !net->loss && !net->is_shapes_only);
    ps_pass_t pass = {net->tables, NULL, ready, ctx, true, net->keys, net->accumulate};
    memcpy(net->ga, dy, b * ps_shape_len(net->shape[net->n_nodes]) * sizeof(float));
    backward(net, b, &pass);
}

void ps_net_set_accumulate(ps_net_t *net, bool on)
{
    net->accumulate = on;
}

const float *ps_net_input_grad(const ps_net_t *net)
{
    return net->dx_in;
}
