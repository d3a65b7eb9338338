/* ps_onnx.c - see ps_onnx.h.
 *
 * The writer walks the spec the net was built from (ps_netdesc_spec) with
 * the net's shapes and emits nodes into one graph; every message, string
 * and array it makes is allocated through the builder, which frees them
 * all at the end (protobuf-c messages built by hand own nothing). A layer
 * maps to:
 *   dense       MatMul (x [.., in] . W [in, out]), Add b
 *   conv2d      Conv (W is already [out, C, k, k]), pads and strides
 *   maxpool     MaxPool / AveragePool, no padding, floor
 *   flatten     Flatten(axis 1)
 *   gelu        0.5 x (1 + Erf(x / sqrt 2)), the erf form ps computes
 *   layernorm   LayerNormalization(axis -1)
 *   embed       Gather(W, tokens)
 *   posembed    Add W [T, D]
 *   attention   qkv map, Split in three, Reshape to heads, Transpose,
 *               MatMul, scale, causal mask (-inf above the diagonal), Softmax,
 *               MatMul, back to [N, T, D], proj map
 *   residual    Add of the branch's output and its input
 *   dropout     nothing (off outside training); the loss: nothing
 * Initializers are little-endian raw data, as the format requires. */
#include "ps_onnx.h"

#ifndef PS_HAVE_ONNX

bool ps_onnx_available(void)
{
    return false;
}

int ps_onnx_write(const char *path, const ps_netdesc_t *desc, const ps_net_t *net, ps_errbuf_t *err)
{
    (void)desc, (void)net;
    return ps_err_set(err, PS_EINVAL,
                      "cannot write '%s': this build has no ONNX support (onnx.proto from "
                      "Debian's python3-onnx was not found when it was configured)",
                      path);
}

#else

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx.pb-c.h"
#include "ps_file.h"

#define OPSET 17
#define IR_VERSION 8

typedef struct {
    void **blocks; /* everything allocated, freed by ob_free */
    size_t n_blocks, cap_blocks;
    Onnx__NodeProto **nodes;
    size_t n_nodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t n_inits, cap_inits;
    unsigned n_values; /* fresh value names */
    const ps_net_t *net;
} ob_t;

static void *ob_alloc(ob_t *b, size_t bytes)
{
    if (b->n_blocks == b->cap_blocks) {
        b->cap_blocks = b->cap_blocks ? 2 * b->cap_blocks : 256;
        b->blocks = ps_xrealloc(b->blocks, b->cap_blocks * sizeof *b->blocks);
    }
    return b->blocks[b->n_blocks++] = ps_xcalloc(1, bytes ? bytes : 1);
}

static void ob_free(ob_t *b)
{
    for (size_t i = 0; i < b->n_blocks; i++)
        free(b->blocks[i]);
    free(b->blocks);
    free(b->nodes);
    free(b->inits);
}

static char *ob_str(ob_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *ob_str(ob_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = ob_alloc(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* ---- attributes ---- */

static Onnx__AttributeProto *attr_new(ob_t *b, const char *name,
                                      Onnx__AttributeProto__AttributeType t)
{
    Onnx__AttributeProto *a = ob_alloc(b, sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = ob_str(b, "%s", name);
    a->has_type = 1;
    a->type = t;
    return a;
}

static Onnx__AttributeProto *attr_int(ob_t *b, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = attr_new(b, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    a->has_i = 1;
    a->i = v;
    return a;
}

static Onnx__AttributeProto *attr_float(ob_t *b, const char *name, float v)
{
    Onnx__AttributeProto *a = attr_new(b, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    a->has_f = 1;
    a->f = v;
    return a;
}

static Onnx__AttributeProto *attr_ints(ob_t *b, const char *name, const int64_t *v, size_t n)
{
    Onnx__AttributeProto *a = attr_new(b, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->ints = ob_alloc(b, n * sizeof *v);
    memcpy(a->ints, v, n * sizeof *v);
    a->n_ints = n;
    return a;
}

/* ---- nodes ---- */

/* A node op(in...) with n_out fresh outputs named after hint; returns
 * the node (its outputs are node->output[i]). */
static Onnx__NodeProto *node_n(ob_t *b, const char *op, const char *hint, const char *const *in,
                               size_t n_in, size_t n_out, Onnx__AttributeProto **attrs,
                               size_t n_attrs)
{
    Onnx__NodeProto *nd = ob_alloc(b, sizeof *nd);
    onnx__node_proto__init(nd);
    nd->op_type = ob_str(b, "%s", op);
    nd->name = ob_str(b, "%s_%u", hint, b->n_values);
    nd->input = ob_alloc(b, n_in * sizeof *nd->input);
    for (size_t i = 0; i < n_in; i++)
        nd->input[i] = ob_str(b, "%s", in[i]);
    nd->n_input = n_in;
    nd->output = ob_alloc(b, n_out * sizeof *nd->output);
    for (size_t i = 0; i < n_out; i++)
        nd->output[i] = ob_str(b, "%s_%u", hint, b->n_values++);
    nd->n_output = n_out;
    if (n_attrs) {
        nd->attribute = ob_alloc(b, n_attrs * sizeof *nd->attribute);
        memcpy(nd->attribute, attrs, n_attrs * sizeof *attrs);
        nd->n_attribute = n_attrs;
    }
    if (b->n_nodes == b->cap_nodes) {
        b->cap_nodes = b->cap_nodes ? 2 * b->cap_nodes : 64;
        b->nodes = ps_xrealloc(b->nodes, b->cap_nodes * sizeof *b->nodes);
    }
    b->nodes[b->n_nodes++] = nd;
    return nd;
}

#define IN(...)                         \
    (const char *const[]){__VA_ARGS__}, \
        sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)
#define ATTRS(...)                           \
    (Onnx__AttributeProto *[]){__VA_ARGS__}, \
        sizeof((Onnx__AttributeProto *[]){__VA_ARGS__}) / sizeof(void *)
#define NO_ATTRS NULL, 0

/* One output: its name. */
static const char *node1(ob_t *b, const char *op, const char *hint, const char *const *in,
                         size_t n_in, Onnx__AttributeProto **attrs, size_t n_attrs)
{
    return node_n(b, op, hint, in, n_in, 1, attrs, n_attrs)->output[0];
}

/* ---- initializers ---- */

static Onnx__TensorProto *init_new(ob_t *b, const char *name, const int64_t *dims, size_t ndim,
                                   int32_t type)
{
    Onnx__TensorProto *t = ob_alloc(b, sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = ob_str(b, "%s", name);
    t->dims = ob_alloc(b, ndim * sizeof *dims);
    if (ndim) /* a scalar has no dims (and dims may be NULL) */
        memcpy(t->dims, dims, ndim * sizeof *dims);
    t->n_dims = ndim;
    t->has_data_type = 1;
    t->data_type = type;
    if (b->n_inits == b->cap_inits) {
        b->cap_inits = b->cap_inits ? 2 * b->cap_inits : 64;
        b->inits = ps_xrealloc(b->inits, b->cap_inits * sizeof *b->inits);
    }
    b->inits[b->n_inits++] = t;
    return t;
}

/* Float initializer of n values as little-endian raw data. */
static const char *init_floats(ob_t *b, const char *name, const int64_t *dims, size_t ndim,
                               const float *v, size_t n)
{
    Onnx__TensorProto *t = init_new(b, name, dims, ndim, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
    uint8_t *raw = ob_alloc(b, n * 4);
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int k = 0; k < 4; k++)
            raw[4 * i + (size_t)k] = (uint8_t)(u >> (8 * k));
    }
    t->has_raw_data = 1;
    t->raw_data.data = raw;
    t->raw_data.len = n * 4;
    return t->name;
}

static const char *init_scalar(ob_t *b, const char *name, float v)
{
    return init_floats(b, name, NULL, 0, &v, 1);
}

static const char *init_ints(ob_t *b, const char *name, const int64_t *v, size_t n)
{
    int64_t dims[1] = {(int64_t)n};
    Onnx__TensorProto *t = init_new(b, name, dims, 1, ONNX__TENSOR_PROTO__DATA_TYPE__INT64);
    t->int64_data = ob_alloc(b, n * sizeof *v);
    memcpy(t->int64_data, v, n * sizeof *v);
    t->n_int64_data = n;
    return t->name;
}

/* Table name of the net as an initializer with its own shape. */
static const char *init_table(ob_t *b, const char *name)
{
    const ps_net_t *net = b->net;
    for (uint32_t id = 0; id < ps_net_n_tables(net); id++) {
        char tn[PS_TABLE_NAME_MAX];
        if (strcmp(ps_net_table_name(net, id, tn, sizeof tn), name) != 0)
            continue;
        uint64_t shape[PS_TABLE_MAX_DIMS];
        int64_t dims[PS_TABLE_MAX_DIMS];
        int nd = ps_net_table_shape(net, id, shape);
        for (int k = 0; k < nd; k++)
            dims[k] = (int64_t)shape[k];
        /* params are only read; the net API hands them out mutable */
        return init_floats(b, name, dims, (size_t)nd, ps_net_params((ps_net_t *)net, id),
                           ps_net_table_len(net, id));
    }
    assert(!"a layer's table is missing from its net");
    return NULL;
}

/* ---- layers ---- */

/* x . W (+ b): prefix's tables. */
static const char *affine(ob_t *b, const char *x, const char *prefix, bool has_bias)
{
    char name[PS_TABLE_NAME_MAX + 8];
    snprintf(name, sizeof name, "%s.W", prefix);
    const char *y = node1(b, "MatMul", prefix, IN(x, init_table(b, name)), NO_ATTRS);
    if (!has_bias)
        return y;
    snprintf(name, sizeof name, "%s.b", prefix);
    return node1(b, "Add", prefix, IN(y, init_table(b, name)), NO_ATTRS);
}

static const char *conv(ob_t *b, const char *x, const ps_layer_desc_t *d)
{
    int64_t k = (int64_t)d->arg[1], s = (int64_t)d->arg[2], p = (int64_t)d->arg[3];
    char w[PS_TABLE_NAME_MAX + 8], bias[PS_TABLE_NAME_MAX + 8];
    snprintf(w, sizeof w, "%s.W", d->name);
    snprintf(bias, sizeof bias, "%s.b", d->name);
    Onnx__AttributeProto *attrs[3] = {attr_ints(b, "kernel_shape", (int64_t[]){k, k}, 2),
                                      attr_ints(b, "strides", (int64_t[]){s, s}, 2),
                                      attr_ints(b, "pads", (int64_t[]){p, p, p, p}, 4)};
    if (d->arg[4] != 0)
        return node1(b, "Conv", d->name, IN(x, init_table(b, w), init_table(b, bias)), attrs, 3);
    return node1(b, "Conv", d->name, IN(x, init_table(b, w)), attrs, 3);
}

static const char *pool(ob_t *b, const char *x, const ps_layer_desc_t *d)
{
    int64_t k = (int64_t)d->arg[0], s = d->arg[1] > 0 ? (int64_t)d->arg[1] : k;
    return node1(b, d->kind == PS_LAYER_MAXPOOL ? "MaxPool" : "AveragePool", "pool", IN(x),
                 ATTRS(attr_ints(b, "kernel_shape", (int64_t[]){k, k}, 2),
                       attr_ints(b, "strides", (int64_t[]){s, s}, 2)));
}

/* Scalar constants, each made once. */
typedef struct {
    const char *sqrt2, *one, *half;
} consts_t;

static const char *gelu(ob_t *b, const char *x, consts_t *c)
{
    if (!c->sqrt2) {
        c->sqrt2 = init_scalar(b, "const.sqrt2", (float)M_SQRT2);
        c->one = init_scalar(b, "const.one", 1.0f);
        c->half = init_scalar(b, "const.half", 0.5f);
    }
    const char *e =
        node1(b, "Erf", "gelu", IN(node1(b, "Div", "gelu", IN(x, c->sqrt2), NO_ATTRS)), NO_ATTRS);
    const char *phi = node1(b, "Add", "gelu", IN(e, c->one), NO_ATTRS);
    return node1(b, "Mul", "gelu", IN(node1(b, "Mul", "gelu", IN(x, phi), NO_ATTRS), c->half),
                 NO_ATTRS);
}

static const char *layernorm(ob_t *b, const char *x, const ps_layer_desc_t *d)
{
    char g[PS_TABLE_NAME_MAX + 8], bias[PS_TABLE_NAME_MAX + 8];
    snprintf(g, sizeof g, "%s.g", d->name);
    snprintf(bias, sizeof bias, "%s.b", d->name);
    return node1(b, "LayerNormalization", d->name, IN(x, init_table(b, g), init_table(b, bias)),
                 ATTRS(attr_int(b, "axis", -1), attr_float(b, "epsilon", (float)d->arg[0])));
}

/* Causal multi-head self-attention on x [N, T, D]. */
static const char *attention(ob_t *b, const char *x, const ps_layer_desc_t *d, ps_shape_t s)
{
    int64_t t = s.d[0], dm = s.d[1], h = (int64_t)d->arg[0], hd = dm / h;
    char pre[PS_TABLE_NAME_MAX + 8];
    snprintf(pre, sizeof pre, "%s.qkv", d->name);
    const char *qkv = affine(b, x, pre, true);
    const char *split = init_ints(b, ob_str(b, "%s.split", d->name), (int64_t[]){dm, dm, dm}, 3);
    Onnx__NodeProto *sp =
        node_n(b, "Split", d->name, IN(qkv, split), 3, ATTRS(attr_int(b, "axis", 2)));
    const char *heads = init_ints(b, ob_str(b, "%s.heads", d->name), (int64_t[]){0, t, h, hd}, 4);
    const char *qkv_h[3];
    static const int64_t perm_q[4] = {0, 2, 1, 3}, perm_k[4] = {0, 2, 3, 1};
    for (int i = 0; i < 3; i++) {
        const char *r = node1(b, "Reshape", d->name, IN(sp->output[i], heads), NO_ATTRS);
        qkv_h[i] = node1(b, "Transpose", d->name, IN(r),
                         ATTRS(attr_ints(b, "perm", i == 1 ? perm_k : perm_q, 4)));
    }
    float *mask = ob_alloc(b, (size_t)(t * t) * sizeof(float));
    for (int64_t i = 0; i < t; i++)
        for (int64_t j = i + 1; j < t; j++)
            mask[i * t + j] = -INFINITY;
    const char *m =
        init_floats(b, ob_str(b, "%s.mask", d->name), (int64_t[]){t, t}, 2, mask, (size_t)(t * t));
    const char *scale = init_scalar(b, ob_str(b, "%s.scale", d->name), 1.0f / sqrtf((float)hd));
    const char *sc = node1(b, "MatMul", d->name, IN(qkv_h[0], qkv_h[1]), NO_ATTRS);
    sc = node1(b, "Mul", d->name, IN(sc, scale), NO_ATTRS);
    sc = node1(b, "Add", d->name, IN(sc, m), NO_ATTRS);
    const char *p = node1(b, "Softmax", d->name, IN(sc), ATTRS(attr_int(b, "axis", -1)));
    const char *o = node1(b, "MatMul", d->name, IN(p, qkv_h[2]), NO_ATTRS);
    o = node1(b, "Transpose", d->name, IN(o), ATTRS(attr_ints(b, "perm", perm_q, 4)));
    const char *back = init_ints(b, ob_str(b, "%s.merge", d->name), (int64_t[]){0, t, dm}, 3);
    o = node1(b, "Reshape", d->name, IN(o, back), NO_ATTRS);
    snprintf(pre, sizeof pre, "%s.proj", d->name);
    return affine(b, o, pre, true);
}

static const char *act_op(ps_layer_kind_t k)
{
    return k == PS_LAYER_RELU ? "Relu" : k == PS_LAYER_TANH ? "Tanh" : "Sigmoid";
}

/* Layer d on value x (shape in), its output's name. */
static const char *layer(ob_t *b, const char *x, const ps_layer_desc_t *d, ps_shape_t in,
                         consts_t *c)
{
    char name[PS_TABLE_NAME_MAX + 8];
    switch (d->kind) {
    case PS_LAYER_DENSE:
        return affine(b, x, d->name, d->arg[1] != 0);
    case PS_LAYER_CONV2D:
        return conv(b, x, d);
    case PS_LAYER_MAXPOOL:
    case PS_LAYER_AVGPOOL:
        return pool(b, x, d);
    case PS_LAYER_FLATTEN:
        return node1(b, "Flatten", "flatten", IN(x), ATTRS(attr_int(b, "axis", 1)));
    case PS_LAYER_RELU:
    case PS_LAYER_TANH:
    case PS_LAYER_SIGMOID:
        return node1(b, act_op(d->kind), "act", IN(x), NO_ATTRS);
    case PS_LAYER_GELU:
        return gelu(b, x, c);
    case PS_LAYER_LAYERNORM:
        return layernorm(b, x, d);
    case PS_LAYER_EMBED:
        snprintf(name, sizeof name, "%s.W", d->name);
        return node1(b, "Gather", d->name, IN(init_table(b, name), x),
                     ATTRS(attr_int(b, "axis", 0)));
    case PS_LAYER_POSEMBED:
        snprintf(name, sizeof name, "%s.W", d->name);
        return node1(b, "Add", d->name, IN(x, init_table(b, name)), NO_ATTRS);
    case PS_LAYER_ATTENTION:
        return attention(b, x, d, in);
    default: /* dropout (off outside training), the loss */
        return x;
    }
}

/* The spec's items in order; a residual adds its input back at ']'. */
static const char *graph(ob_t *b, const ps_netspec_t *spec, const char *x)
{
    const char *taps[64];
    int depth = 0;
    consts_t c = {0};
    ps_shape_t in = ps_net_input_shape(b->net);
    for (size_t i = 0; i < spec->n_layers; i++) {
        const ps_layer_desc_t *d = &spec->layers[i];
        if (d->kind == PS_LAYER_RESIDUAL) {
            assert(depth < 64);
            taps[depth++] = x;
        } else if (d->kind == PS_LAYER_END) {
            x = node1(b, "Add", "residual", IN(x, taps[--depth]), NO_ATTRS);
        } else {
            x = layer(b, x, d, in, &c);
        }
        in = ps_net_item_shape(b->net, i);
    }
    return x;
}

/* ---- the model ---- */

/* A value of type elem and shape [N, s...]. */
static Onnx__ValueInfoProto *value_info(ob_t *b, const char *name, int32_t elem, ps_shape_t s)
{
    int n = s.kind == PS_SHAPE_IMG ? 3 : s.kind == PS_SHAPE_SEQ ? 2 : 1;
    Onnx__TensorShapeProto *shape = ob_alloc(b, sizeof *shape);
    onnx__tensor_shape_proto__init(shape);
    shape->dim = ob_alloc(b, (size_t)(n + 1) * sizeof *shape->dim);
    shape->n_dim = (size_t)n + 1;
    for (int k = 0; k <= n; k++) {
        Onnx__TensorShapeProto__Dimension *dim = ob_alloc(b, sizeof *dim);
        onnx__tensor_shape_proto__dimension__init(dim);
        if (k == 0) {
            dim->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dim->dim_param = ob_str(b, "N");
        } else {
            dim->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dim->dim_value = s.d[k - 1];
        }
        shape->dim[k] = dim;
    }
    Onnx__TypeProto__Tensor *tt = ob_alloc(b, sizeof *tt);
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1;
    tt->elem_type = elem;
    tt->shape = shape;
    Onnx__TypeProto *type = ob_alloc(b, sizeof *type);
    onnx__type_proto__init(type);
    type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    type->tensor_type = tt;
    Onnx__ValueInfoProto *v = ob_alloc(b, sizeof *v);
    onnx__value_info_proto__init(v);
    v->name = ob_str(b, "%s", name);
    v->type = type;
    return v;
}

static Onnx__GraphProto *make_graph(ob_t *b, const ps_netspec_t *spec)
{
    ps_shape_t in = ps_net_input_shape(b->net);
    bool tokens = in.kind == PS_SHAPE_TOKENS;
    const char *x = tokens ? "tokens" : "x";
    const char *z = graph(b, spec, x);
    Onnx__NodeProto *out = node_n(b, "Identity", "logits", IN(z), 1, NO_ATTRS);
    out->output[0] = ob_str(b, "logits");
    Onnx__GraphProto *g = ob_alloc(b, sizeof *g);
    onnx__graph_proto__init(g);
    g->name = ob_str(b, "ps");
    g->node = b->nodes;
    g->n_node = b->n_nodes;
    g->initializer = b->inits;
    g->n_initializer = b->n_inits;
    g->input = ob_alloc(b, sizeof *g->input);
    g->input[0] = value_info(
        b, x, tokens ? ONNX__TENSOR_PROTO__DATA_TYPE__INT64 : ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT,
        in);
    g->n_input = 1;
    g->output = ob_alloc(b, sizeof *g->output);
    g->output[0] =
        value_info(b, "logits", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, ps_net_output_shape(b->net));
    g->n_output = 1;
    return g;
}

bool ps_onnx_available(void)
{
    return true;
}

int ps_onnx_write(const char *path, const ps_netdesc_t *desc, const ps_net_t *net, ps_errbuf_t *err)
{
    ps_netspec_t spec;
    int rc = ps_netdesc_spec(desc, &spec, err);
    if (rc != PS_OK) {
        ps_netspec_fini(&spec);
        return rc;
    }
    ob_t b = {.net = net};
    Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT;
    Onnx__OperatorSetIdProto *opsets[1] = {&opset};
    opset.domain = "";
    opset.has_version = 1;
    opset.version = OPSET;
    Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
    model.has_ir_version = 1;
    model.ir_version = IR_VERSION;
    model.opset_import = opsets;
    model.n_opset_import = 1;
    model.producer_name = "ps";
    model.producer_version = PS_VERSION;
    model.graph = make_graph(&b, &spec);
    ps_netspec_fini(&spec);
    size_t len = onnx__model_proto__get_packed_size(&model);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        rc = ps_err_set(err, PS_ENOMEM, "cannot write '%s': out of memory (%zu bytes)", path, len);
    else if (onnx__model_proto__pack(&model, buf) != len)
        rc = ps_err_set(err, PS_EINVAL, "cannot write '%s': the model did not pack", path);
    else
        rc = ps_file_write_all(path, buf, len, 0644, err);
    free(buf);
    ob_free(&b);
    return rc;
}

#endif
