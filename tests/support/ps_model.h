/* ps_model.h - the dense networks the worker trained before ps_net took
 * over (retired from worker/; tests only): linear regression, logistic
 * regression and softmax regression are the networks with no hidden layer
 * and an MSE, sigmoid or softmax head; an MLP adds hidden layers. Forward
 * and backward use OpenBLAS sgemm. Each layer is two tables, "denseK.W"
 * (in x out) and "denseK.b" (out). test_net checks that the specs the old
 * model options map to compute what this computed. */
#ifndef PS_MODEL_H
#define PS_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "ps_data.h"
#include "ps_enum.h"

#define PS_MODEL_MAX_LAYERS 16

#define PS_ACT_MAP(XX) XX(RELU, "relu") XX(TANH, "tanh") XX(SIGMOID, "sigmoid")
#define PS_ACT_MEMBER(e, s) PS_ENUM_MEMBER(PS_ACT_, e)
typedef enum { PS_ACT_MAP(PS_ACT_MEMBER) } ps_act_t;
extern const char *const ps_act_names[];

#define PS_HEAD_MAP(XX)                                                                   \
    XX(SOFTMAX_CE, "softmax_ce")   /* classes; loss = cross-entropy */                    \
    XX(SIGMOID_BCE, "sigmoid_bce") /* one output, labels {0,1} (<= 0 counts as 0) */      \
    XX(MSE, "mse")                 /* one output: regression; several: one-hot targets */
#define PS_HEAD_MEMBER(e, s) PS_ENUM_MEMBER(PS_HEAD_, e)
typedef enum { PS_HEAD_MAP(PS_HEAD_MEMBER) } ps_head_t;
extern const char *const ps_head_names[];

typedef struct {
    int n_layers;                       /* dense layers, >= 1 */
    size_t dims[PS_MODEL_MAX_LAYERS + 1]; /* dims[0] inputs ... dims[n_layers] outputs */
    ps_act_t act;                       /* between hidden layers */
    ps_head_t head;
    /* > 0: a weight matrix of more floats is cut into row blocks of about
     * this many floats, each a slice of its own (see below). 0: one slice
     * per table. */
    size_t slice_elems;
} ps_model_spec_t;

typedef struct ps_model ps_model_t;

typedef struct {
    double loss;     /* mean per sample */
    double accuracy; /* classification heads */
    double mae;      /* regression (MSE head with one output) */
    double auc;      /* binary (sigmoid) head: area under the ROC curve; else 0 */
    size_t n;
} ps_eval_t;

/* Slices are how the parameters travel: each is a contiguous piece of one
 * table (a block of rows of a weight matrix, or a whole table), pushed and
 * pulled on its own. Backward finishes them one by one, last layer first
 * and within a layer its bias, then its row blocks in order; forward needs
 * them in that same order (from the first layer), so a worker can push each
 * slice the moment its gradient is final and wait for each slice's new
 * values only when forward is about to read them. */

/* Called once per slice during backward as soon as its gradient is final. */
typedef void (*ps_grad_ready_fn)(void *ctx, uint32_t slice);
/* Called during forward before a slice's parameters are read; returns 0 to
 * go on, anything else to abandon the batch. */
typedef int (*ps_params_needed_fn)(void *ctx, uint32_t slice);

/* New model with buffers for batches of up to max_batch samples. NULL with
 * err set if the spec is invalid. */
ps_model_t *ps_model_new(const ps_model_spec_t *spec, size_t max_batch, ps_errbuf_t *err);
void ps_model_destroy(ps_model_t **m);

uint32_t ps_model_n_tables(const ps_model_t *m);
/* "dense1.W" etc. into buf; returns buf. */
const char *ps_model_table_name(const ps_model_t *m, uint32_t id, char *buf, size_t cap);
/* Shape of table id into shape[0..2); returns ndim (2 for W, 1 for b). */
int ps_model_table_shape(const ps_model_t *m, uint32_t id, uint64_t shape[2]);
uint64_t ps_model_table_len(const ps_model_t *m, uint32_t id);
/* The model's parameter / gradient buffer of a table (len floats). */
float *ps_model_params(ps_model_t *m, uint32_t id);
float *ps_model_grads(ps_model_t *m, uint32_t id);
uint64_t ps_model_n_params(const ps_model_t *m);

/* Slices, numbered layer by layer: the row blocks of dense1.W, dense1.b,
 * the blocks of dense2.W, ... With one block per matrix they are exactly
 * the tables (slice id == table id). */
uint32_t ps_model_n_slices(const ps_model_t *m);
/* The table's name, with the rows for a block: "dense1.W[112:224]". */
const char *ps_model_slice_name(const ps_model_t *m, uint32_t slice, char *buf, size_t cap);
/* Shape (rows x outputs for a block of W) into shape[0..2); returns ndim. */
int ps_model_slice_shape(const ps_model_t *m, uint32_t slice, uint64_t shape[2]);
uint64_t ps_model_slice_len(const ps_model_t *m, uint32_t slice);
/* The slice's part of its table's parameter / gradient buffer. */
float *ps_model_slice_params(ps_model_t *m, uint32_t slice);
float *ps_model_slice_grads(ps_model_t *m, uint32_t slice);

/* Deterministic initial weights from seed: Glorot uniform (He uniform for
 * ReLU layers) with a stream per table; biases 0. */
void ps_model_init_params(ps_model_t *m, uint64_t seed);

/* Forward and backward on b samples (b <= max_batch; b == 0 gives zero
 * gradients). Gradients are SUMS over the batch, so gradients of several
 * workers add up exactly; the server divides by the total sample count.
 * need and ready (each may be NULL) are called once per slice. Returns the
 * summed loss, or NAN if need abandoned the batch (gradients then unset). */
double ps_model_train_batch(ps_model_t *m, const float *x, const float *y, size_t b,
                            ps_params_needed_fn need, ps_grad_ready_fn ready, void *ctx);
/* Summed loss of b samples, forward only. */
double ps_model_loss(ps_model_t *m, const float *x, const float *y, size_t b);
/* Loss, accuracy or MAE over a whole data set. */
void ps_model_evaluate(ps_model_t *m, const ps_dataset_t *ds, ps_eval_t *out);
/* True if the head reports accuracy (false: MAE). */
int ps_model_is_classifier(const ps_model_t *m);

#endif
