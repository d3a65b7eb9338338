/* ps_layer.h - the layer interface of the worker's layer library: sample
 * shapes, layer descriptions (what a spec or a builder asks for), the
 * forward/backward contract every layer keeps, and the pass through which
 * layers ask for parameters and hand over gradients. Worker thread only.
 *
 * A batch of activations is b samples of one shape, row-major, sample after
 * sample. Gradients of parameters are SUMS over the batch. */
#ifndef PS_LAYER_H
#define PS_LAYER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps_err.h"
#include "ps_tables.h"

typedef enum {
    PS_SHAPE_VEC = 0,    /* d[0] features */
    PS_SHAPE_SEQ = 1,    /* d[0] positions x d[1] features */
    PS_SHAPE_IMG = 2,    /* d[0] channels x d[1] rows x d[2] columns */
    PS_SHAPE_TOKENS = 3, /* d[0] positions, each a whole number (a token id) */
} ps_shape_kind_t;

typedef struct {
    ps_shape_kind_t kind;
    uint32_t d[3];
} ps_shape_t;

/* Floats per sample. */
size_t ps_shape_len(ps_shape_t s);
/* "[784]", "[128 positions x 64]", "[1x28x28]", "[128 tokens]" into buf. */
const char *ps_shape_str(ps_shape_t s, char *buf, size_t cap);
bool ps_shape_equal(ps_shape_t a, ps_shape_t b);

/* Every kind a spec can name. PS_LAYER_END is the ']' closing a residual. */
typedef enum {
    PS_LAYER_DENSE = 0,
    PS_LAYER_CONV2D,
    PS_LAYER_MAXPOOL,
    PS_LAYER_AVGPOOL,
    PS_LAYER_FLATTEN,
    PS_LAYER_RELU,
    PS_LAYER_GELU,
    PS_LAYER_TANH,
    PS_LAYER_SIGMOID,
    PS_LAYER_DROPOUT,
    PS_LAYER_LAYERNORM,
    PS_LAYER_EMBED,
    PS_LAYER_POSEMBED,
    PS_LAYER_ATTENTION,
    PS_LAYER_RESIDUAL,
    PS_LAYER_END,
    PS_LAYER_CROSS_ENTROPY,
    PS_LAYER_MSE,
    PS_LAYER_BCE,
    PS_LAYER_N_KINDS
} ps_layer_kind_t;

#define PS_LAYER_MAX_ARGS 5
#define PS_LAYER_TEXT_MAX 96

/* One layer as asked for. */
typedef struct {
    ps_layer_kind_t kind;
    double arg[PS_LAYER_MAX_ARGS]; /* in the kind's argument order, defaults filled in */
    /* > 0: weights N(0, init_std^2) and biases 0 (the GPT's init); 0: PyTorch's
     * defaults. An attention layer's output projection uses proj_std. */
    double init_std, proj_std;
    int pos;                           /* 1-based place in the spec; 0 if built in code */
    char name[PS_TABLE_NAME_MAX - 16]; /* table prefix: "conv1", "blocks.0.attn" */
    char text[PS_LAYER_TEXT_MAX];      /* as written, for errors: "conv2d(64,3,pad=1)" */
} ps_layer_desc_t;

/* What the spec language knows of a kind: its word, its arguments in order
 * (the first n_required must be given), which are whole numbers, the table
 * prefix its instances are named by ("dense" -> "dense1", NULL: no tables). */
typedef struct {
    const char *word;
    const char *prefix;
    int n_args, n_required;
    const char *arg_names[PS_LAYER_MAX_ARGS];
    double defaults[PS_LAYER_MAX_ARGS];
    bool is_int[PS_LAYER_MAX_ARGS];
    bool is_loss;
} ps_layer_kind_info_t;

const ps_layer_kind_info_t *ps_layer_kind_info(ps_layer_kind_t kind);
/* Kind named by word[0..len), or -1. */
int ps_layer_kind_find(const char *word, size_t len);
/* A desc of kind with its defaults, position 0 and the given table prefix
 * (may be NULL); text is the kind's word. */
void ps_layer_desc_init(ps_layer_desc_t *d, ps_layer_kind_t kind, const char *name);

/* A forward or backward pass: the callbacks of the trainer and what the
 * layers read besides their inputs. */
typedef struct {
    const ps_tables_t *tables;
    ps_params_needed_fn need; /* may be NULL */
    ps_grad_ready_fn ready;   /* may be NULL */
    void *ctx;
    bool is_training;           /* dropout active */
    const uint64_t *sample_key; /* b keys: sample i's dropout masks derive from key i */
    /* backward adds this batch's gradients to those already there instead
     * of overwriting them (a pipeline stage's micro-batches after the
     * first: their sum without a copy of the gradients) */
    bool accumulate;
} ps_pass_t;

/* need for every block of table id in row order; -1 as soon as one
 * abandons the pass, else 0. */
int ps_pass_need_table(ps_pass_t *p, uint32_t id);
/* need / ready of block i of table id. */
int ps_pass_need_block(ps_pass_t *p, uint32_t id, uint32_t i);
void ps_pass_ready_block(ps_pass_t *p, uint32_t id, uint32_t i);
void ps_pass_ready_table(ps_pass_t *p, uint32_t id);

typedef struct ps_layer ps_layer_t;

/* The contract of every layer:
 * - forward: y (b x out) from x (b x in). Before reading a parameter block
 *   it calls need for it, in the layer's order; returns 0, or -1 at once if
 *   a need abandoned the pass.
 * - backward: from forward's x and y and dy (b x out), sets dx (b x in; NULL:
 *   not wanted) and the layer's gradients (sums over the batch:
 *   overwritten, or added to what they hold if p->accumulate), calling ready for each block once, as soon as its gradient is
 *   final (an affine map: bias, then W's blocks, as forward asked for them;
 *   a layer of several maps does them last one first). Parameters are only
 *   read: new values land while forward waits in need.
 *   b == 0 is valid: the gradients become 0 (stay, if p->accumulate) and
 *   every block is announced.
 * - loss (losses only, forward and backward NULL): the summed loss of b
 *   samples of logits z against targets; dz (may be NULL) gets its
 *   gradient. targets: one per sample (a class, a value), or for a
 *   sequence one per position.
 * - destroy frees the layer. */
typedef struct {
    int (*forward)(ps_layer_t *l, const float *x, float *y, size_t b, ps_pass_t *p);
    void (*backward)(ps_layer_t *l, const float *x, const float *y, const float *dy, float *dx,
                     size_t b, ps_pass_t *p);
    double (*loss)(ps_layer_t *l, const float *z, const float *targets, size_t b, float *dz);
    void (*destroy)(ps_layer_t *l);
} ps_layer_ops_t;

/* The part every layer struct starts with. Visible because the layers live
 * in several files (ps_layers_*.c); users go through ps_net. */
struct ps_layer {
    const ps_layer_ops_t *ops;
    ps_layer_kind_t kind;
    ps_shape_t in, out;
    uint32_t index;       /* place in its net: a dropout layer's stream */
    size_t max_batch;     /* scratch is sized for this many samples */
    size_t scratch_bytes; /* what the layer allocated for its passes (pswk_scratch) */
};

/* A new layer for desc on input shape in, declaring its tables in tables,
 * scratch for max_batch samples. NULL with the reason in err (no layer
 * prefix: the net adds the position and text) if the shape does not fit. */
ps_layer_t *ps_layer_new(const ps_layer_desc_t *desc, ps_shape_t in, ps_tables_t *tables,
                         uint32_t index, size_t max_batch, ps_errbuf_t *err);
/* Frees *layer_p and sets it to NULL. Safe with NULL or twice. */
void ps_layer_destroy(ps_layer_t **layer_p);

/* PyTorch's default init of nn.Linear and nn.Conv2d, weights and biases
 * alike: kaiming_uniform(a = sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
ps_init_t ps_layer_torch_init(uint64_t fan_in);

#endif
