/* ps_model.h - dense feed-forward networks trained by a worker: linear
 * regression, logistic regression and softmax regression are the networks
 * with no hidden layer and an MSE, sigmoid or softmax head; an MLP adds
 * hidden layers. Forward and backward use OpenBLAS sgemm. Each layer is two
 * tables, "denseK.W" (in x out) and "denseK.b" (out). Worker thread only. */
#ifndef PS_MODEL_H
#define PS_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "ps_data.h"

#define PS_MODEL_MAX_LAYERS 16

typedef enum { PS_ACT_RELU = 0, PS_ACT_TANH = 1, PS_ACT_SIGMOID = 2 } ps_act_t;

typedef enum {
    PS_HEAD_SOFTMAX_CE = 0,  /* classes; loss = cross-entropy */
    PS_HEAD_SIGMOID_BCE = 1, /* one output, labels {0,1} (<= 0 counts as 0) */
    PS_HEAD_MSE = 2,         /* one output: regression; several: one-hot class targets */
} ps_head_t;

typedef struct {
    int n_layers;                       /* dense layers, >= 1 */
    size_t dims[PS_MODEL_MAX_LAYERS + 1]; /* dims[0] inputs ... dims[n_layers] outputs */
    ps_act_t act;                       /* between hidden layers */
    ps_head_t head;
} ps_model_spec_t;

typedef struct ps_model ps_model_t;

typedef struct {
    double loss;     /* mean per sample */
    double accuracy; /* classification heads */
    double mae;      /* regression (MSE head with one output) */
    double auc;      /* binary (sigmoid) head: area under the ROC curve; else 0 */
    size_t n;
} ps_eval_t;

/* Called as soon as a table's gradient is final during backward (last layer
 * first), so it can be pushed while earlier layers still compute. */
typedef void (*ps_grad_ready_fn)(void *ctx, uint32_t table_id);

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

/* Deterministic initial weights from seed: Glorot uniform (He uniform for
 * ReLU layers) with a stream per table; biases 0. */
void ps_model_init_params(ps_model_t *m, uint64_t seed);

/* Forward and backward on b samples (b <= max_batch; b == 0 gives zero
 * gradients). Gradients are SUMS over the batch, so gradients of several
 * workers add up exactly; the server divides by the total sample count.
 * ready (may be NULL) is called once per table. Returns the summed loss. */
double ps_model_train_batch(ps_model_t *m, const float *x, const float *y, size_t b,
                            ps_grad_ready_fn ready, void *ctx);
/* Summed loss of b samples, forward only. */
double ps_model_loss(ps_model_t *m, const float *x, const float *y, size_t b);
/* Loss, accuracy or MAE over a whole data set. */
void ps_model_evaluate(ps_model_t *m, const ps_dataset_t *ds, ps_eval_t *out);
/* True if the head reports accuracy (false: MAE). */
int ps_model_is_classifier(const ps_model_t *m);

#endif
