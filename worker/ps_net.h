/* ps_net.h - a model built from layers (ps_netspec_t): a sequence of
 * layers with residual connections, ending in a loss. It keeps the contract
 * ps_model.h gives the trainer: parameter tables, slices that are pushed as
 * soon as backward finishes them and waited for just before forward reads
 * them, deterministic init, gradients summed over the batch. Buffers are
 * sized once for max_batch samples; a step allocates nothing. Worker
 * thread only.
 *
 * A sample is one data row of ps_net_input_len floats: the input shape's
 * floats in C order (an image C*H*W), or for tokens(T) T + 1 token values
 * (inputs the first T, targets the last T; y is not read).
 *
 * Slices (see ps_tables.h for how tables are cut) are numbered table by
 * table in the order the layers declare them. Forward asks for them layer
 * by layer from the first; backward announces them layer by layer from the
 * last. Within a dense layer both go bias first, then W's row blocks in
 * order (ps_model's order, so an MLP behaves exactly as ps_model's); an
 * attention layer is two such maps, qkv then proj in forward, proj then qkv
 * in backward; other layers take their tables in declaration order. */
#ifndef PS_NET_H
#define PS_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps_data.h"
#include "ps_layer.h"
#include "ps_netspec.h"
#include "ps_stage.h"
#include "ps_tables.h"

typedef struct ps_net ps_net_t;

/* No activation (the input included) may have more floats per sample. */
#define PS_NET_MAX_SAMPLE_FLOATS (1u << 28)

typedef enum {
    PS_NET_CLASSIFIER = 0,     /* cross_entropy on a vector, bce, mse on C > 1 outputs */
    PS_NET_REGRESSOR = 1,      /* mse on one output */
    PS_NET_LANGUAGE_MODEL = 2, /* cross_entropy over a sequence of next tokens */
} ps_net_task_t;

typedef struct {
    double loss;          /* mean per sample (a sequence: its mean over positions) */
    double accuracy;      /* classifier; language model: next-token accuracy */
    double mae;           /* regressor */
    double auc;           /* bce head: area under the ROC curve; else 0 */
    double bits_per_byte; /* language model: loss / ln 2 (a token is a byte) */
    size_t n;             /* samples */
} ps_net_eval_t;

/* New net with buffers for batches of up to max_batch (>= 1) samples;
 * slice_elems as in ps_tables_freeze. NULL with err set if a layer does not
 * fit the shape it receives: "layer 6 'dense(128)': needs a vector or a
 * sequence, got [64x7x7]: put flatten before it", or an activation is
 * larger than PS_NET_MAX_SAMPLE_FLOATS; PS_ENOMEM in err if the parameters
 * cannot be allocated. spec is borrowed. */
ps_net_t *ps_net_new(const ps_netspec_t *spec, size_t max_batch, size_t slice_elems,
                     ps_errbuf_t *err);
/* Frees *net_p and sets it to NULL. Safe with NULL or twice. */
void ps_net_destroy(ps_net_t **net_p);

/* A pipeline stage: the net of spec items [lo, hi) (lo < hi <= n_layers,
 * both ends outside every residual: ps_stage_split's cuts). Its input is
 * the activation after item lo - 1 (a data row if lo == 0), its output
 * the activation after item hi - 1, and it has the loss only if hi is the
 * end. Tables, their init streams and dropout streams are those the whole
 * net gives the same layers, so a stage computes exactly what the whole
 * net computes on its part. Errors as ps_net_new's. */
ps_net_t *ps_net_new_stage(const ps_netspec_t *spec, size_t lo, size_t hi, size_t max_batch,
                           size_t slice_elems, ps_errbuf_t *err);
/* Another net of owner's layers (same spec, items and max_batch) with its
 * own pass buffers and layer scratch but owner's tables: it reads owner's
 * parameters and writes owner's gradients (as owner's accumulate flag
 * does not reach it, set its own). A pipeline stage keeps one per
 * micro-batch, so each micro-batch's activations wait for its backward.
 * owner must outlive it; destroying it leaves the tables. PS_EINVAL if
 * spec is not owner's. */
ps_net_t *ps_net_new_sibling(const ps_netspec_t *spec, ps_net_t *owner, ps_errbuf_t *err);
/* The whole net's layers, shapes and tables without any buffer (no
 * parameters: only the shape and table accessors and ps_export's model.json
 * may read it). */
ps_net_t *ps_net_new_shapes(const ps_netspec_t *spec, ps_errbuf_t *err);
/* What a net of ps_net_new_stage(spec, lo, hi, max_batch) holds, in bytes
 * (ps_net_new: lo 0, hi n_layers). */
typedef struct {
    uint64_t params; /* its tables' parameters */
    uint64_t grads;  /* their gradients (as many) */
    /* the pass buffers at max_batch: every layer's output, the residuals'
     * gradients, the gradient ping-pong, keys, targets */
    uint64_t activations;
    uint64_t scratch;       /* the layers' own buffers (im2col, attention, norms, masks) */
    size_t in_len, out_len; /* floats per sample in (ps_net_input_len) and out */
} ps_net_mem_t;
/* Fills mem for that net without allocating its parameters, gradients or
 * pass buffers (its layers are built, their scratch allocated untouched,
 * and freed). Errors as ps_net_new_stage's. */
int ps_net_stage_memory(const ps_netspec_t *spec, size_t lo, size_t hi, size_t max_batch,
                        ps_net_mem_t *mem, ps_errbuf_t *err);
/* Each item's costs (spec->n_layers of them) for ps_stage_split: the
 * parameters it declares, the floats per sample after it, whether a stage
 * may end after it. Errors as ps_net_new's (a layer that does not fit its
 * shape). */
int ps_net_stage_items(const ps_netspec_t *spec, ps_stage_item_t *items, ps_errbuf_t *err);
/* The last stage of a language model after the first: its targets (each
 * position's next token) from the b token rows (T + 1 values each) its
 * micro-batch came from, before train_batch. */
void ps_net_set_targets(ps_net_t *net, const float *rows, size_t b);
/* False for a pipeline stage before the last. */
bool ps_net_has_loss(const ps_net_t *net);
/* A stage's forward on b input rows (dropout if is_training, keys as set);
 * the output is ps_net_output. Returns 0, or -1 if need abandoned it. */
int ps_net_stage_forward(ps_net_t *net, const float *x, size_t b, bool is_training,
                         ps_params_needed_fn need, void *ctx);
/* A stage without a loss: backward from dy (b x the output's floats; the
 * last stage_forward's batch) through the layers: gradients SUMS over the
 * b samples (overwritten), ready for every slice as in train_batch. */
void ps_net_stage_backward(ps_net_t *net, const float *dy, size_t b, ps_grad_ready_fn ready,
                           void *ctx);
/* on: the backwards that follow (train_batch, stage_backward) ADD their
 * gradients to those the net holds instead of overwriting them, so the
 * micro-batches of a pipeline step sum in place, with no second buffer
 * (b == 0 then leaves them as they are). off (the default): overwrite. */
void ps_net_set_accumulate(ps_net_t *net, bool on);
/* After a backward (stage_backward or train_batch) of a stage after the
 * first: the gradient of its input, b x ps_net_input_len floats; borrowed,
 * valid until the next pass. NULL for a net that starts at the input. */
const float *ps_net_input_grad(const ps_net_t *net);

/* Floats per data row (see above). */
size_t ps_net_input_len(const ps_net_t *net);
ps_shape_t ps_net_input_shape(const ps_net_t *net);
/* The logits the loss reads, per sample. */
ps_shape_t ps_net_output_shape(const ps_net_t *net);
ps_net_task_t ps_net_task(const ps_net_t *net);
/* True if evaluation reports accuracy (false: MAE, or for a language
 * model loss and bits per byte). */
int ps_net_is_classifier(const ps_net_t *net);
/* Tokens input: every token value must be below this (the smallest
 * vocabulary of the embeddings and of the scores the loss reads);
 * UINT32_MAX for other inputs. */
uint32_t ps_net_token_limit(const ps_net_t *net);
/* The activation shape after item i of the spec the net was built from (a
 * residual's opening bracket or the loss: the shape it received). */
ps_shape_t ps_net_item_shape(const ps_net_t *net, size_t i);
size_t ps_net_max_batch(const ps_net_t *net);

/* Tables, as ps_model's (shapes have up to PS_TABLE_MAX_DIMS dims). */
uint32_t ps_net_n_tables(const ps_net_t *net);
/* "conv1.W" etc. into buf; returns buf. */
const char *ps_net_table_name(const ps_net_t *net, uint32_t id, char *buf, size_t cap);
int ps_net_table_shape(const ps_net_t *net, uint32_t id, uint64_t shape[PS_TABLE_MAX_DIMS]);
uint64_t ps_net_table_len(const ps_net_t *net, uint32_t id);
float *ps_net_params(ps_net_t *net, uint32_t id);
float *ps_net_grads(ps_net_t *net, uint32_t id);
uint64_t ps_net_n_params(const ps_net_t *net);

/* Slices, as ps_model's: "dense1.W[0:112]"; shape with dim 0 cut to the
 * block's rows. */
uint32_t ps_net_n_slices(const ps_net_t *net);
const char *ps_net_slice_name(const ps_net_t *net, uint32_t slice, char *buf, size_t cap);
int ps_net_slice_shape(const ps_net_t *net, uint32_t slice, uint64_t shape[PS_TABLE_MAX_DIMS]);
uint64_t ps_net_slice_len(const ps_net_t *net, uint32_t slice);
float *ps_net_slice_params(ps_net_t *net, uint32_t slice);
float *ps_net_slice_grads(ps_net_t *net, uint32_t slice);

/* Deterministic initial parameters from seed, a stream per table (see
 * ps_tables_init): PyTorch's defaults unless the spec says otherwise (the
 * GPT builder's N(0, 0.02)): dense and conv2d weights and biases
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)), layer norm 1 and 0, embeddings N(0, 1). */
void ps_net_init_params(ps_net_t *net, uint64_t seed);

/* The dropout keys of the samples of the next train batches (copied; n <=
 * max_batch; until changed, sample i has key i). Sample i's masks are a
 * function of keys[i] and the layer alone, so a worker that gives every
 * sample ps_net_sample_key(seed, step, its index in the global batch or
 * the data set) draws the masks any other split of the batch would. */
void ps_net_set_sample_keys(ps_net_t *net, const uint64_t *keys, size_t n);
uint64_t ps_net_sample_key(uint64_t seed, uint64_t step, uint64_t sample);

/* Forward (dropout on) and backward on b samples (b <= max_batch; b == 0:
 * no forward, no need calls, zero gradients, every slice announced).
 * Gradients are SUMS over the batch, so gradients of several workers add up
 * exactly; the server divides by the total sample count. need and ready
 * (each may be NULL) are called once per slice. x is b rows of
 * ps_net_input_len floats; y b labels (NULL for tokens input). Returns the
 * summed loss, or NAN if need abandoned the batch (gradients then unset). */
double ps_net_train_batch(ps_net_t *net, const float *x, const float *y, size_t b,
                          ps_params_needed_fn need, ps_grad_ready_fn ready, void *ctx);
/* Summed loss of b samples, forward only, dropout off. */
double ps_net_loss(ps_net_t *net, const float *x, const float *y, size_t b);
/* Summed loss, forward only, dropout as in training if is_training (the
 * masks of ps_net_set_sample_keys): what train_batch differentiates. */
double ps_net_forward(ps_net_t *net, const float *x, const float *y, size_t b, bool is_training);
/* The last forward's logits, b x ps_shape_len(output shape); borrowed,
 * valid until the next forward. */
const float *ps_net_output(const ps_net_t *net);

/* Checks that ds fits the net: row length, and labels (class indices
 * below the class count for a classifier) or token values (whole numbers
 * below the vocabulary). what names the data for err ("'train.csv'"). */
int ps_net_check_data(const ps_net_t *net, const ps_dataset_t *ds, const char *what,
                      ps_errbuf_t *err);
/* What a label must be below for this net: the class count of a
 * classifier on class indices, else 0 (any value: regression, bce, tokens). */
uint32_t ps_net_label_limit(const ps_net_t *net);
/* Metrics of the task over a whole data set, dropout off, in batches of
 * max_batch. */
void ps_net_evaluate(ps_net_t *net, const ps_dataset_t *ds, ps_net_eval_t *out);

#endif
