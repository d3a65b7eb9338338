/* ps_layers_loss.c - the losses a net ends in, on the logits of its last
 * layer: softmax cross-entropy (one class per sample, or over a sequence
 * one target per position), mean squared error, and sigmoid binary
 * cross-entropy. The same formulas as ps_model's heads. */
#include <math.h>
#include <stdlib.h>

#include "ps_layer_int.h"

typedef struct {
    ps_layer_t base;
    size_t rows, width; /* per sample: positions (1 for a vector) x logits */
} loss_t;

/* Labels are whole numbers below n (ps_net_check_data checks a data set);
 * others are clamped into range, never read out of it. */
static size_t class_of(float v, size_t n)
{
    if (!(v >= 0))
        return 0;
    return v >= (float)n ? n - 1 : (size_t)v;
}

/* -log softmax(z)[c] of one row; dz (if not NULL) = (softmax - onehot) * w. */
static double ce_row(const float *z, size_t n, size_t c, float w, float *dz)
{
    float mx = z[0];
    for (size_t j = 1; j < n; j++)
        mx = z[j] > mx ? z[j] : mx;
    double sum = 0;
    for (size_t j = 0; j < n; j++)
        sum += exp((double)(z[j] - mx));
    for (size_t j = 0; dz && j < n; j++)
        dz[j] = ((float)(exp((double)(z[j] - mx)) / sum) - (j == c ? 1.0f : 0.0f)) * w;
    return log(sum) - (double)(z[c] - mx);
}

/* A sequence's loss is the mean over its positions, so the per-sample sum
 * the server divides by the sample count is nanoGPT's mean over tokens. */
static double ce_loss(ps_layer_t *l, const float *z, const float *tg, size_t b, float *dz)
{
    loss_t *ls = (loss_t *)l;
    double loss = 0;
    float w = 1.0f / (float)ls->rows;
    for (size_t r = 0; r < b * ls->rows; r++) {
        size_t c = class_of(tg[r], ls->width);
        loss += ce_row(z + r * ls->width, ls->width, c, ls->rows > 1 ? w : 1.0f,
                       dz ? dz + r * ls->width : NULL);
    }
    return ls->rows > 1 ? loss / (double)ls->rows : loss;
}

/* One output: (z - y)^2. Several: one-hot targets of class y, the mean of
 * the squared errors over the outputs. */
static double mse_loss(ps_layer_t *l, const float *z, const float *tg, size_t b, float *dz)
{
    loss_t *ls = (loss_t *)l;
    size_t out = ls->width;
    double loss = 0;
    for (size_t i = 0; i < b; i++)
        for (size_t j = 0; j < out; j++) {
            float target = out == 1 ? tg[i] : (float)(class_of(tg[i], out) == j);
            float e = z[i * out + j] - target;
            loss += (double)e * e / (double)out;
            if (dz)
                dz[i * out + j] = 2.0f * e / (float)out;
        }
    return loss;
}

/* Labels > 0 count as 1. log(1 + e^-|z|) keeps it finite for any z. */
static double bce_loss(ps_layer_t *l, const float *z, const float *tg, size_t b, float *dz)
{
    (void)l;
    double loss = 0;
    for (size_t i = 0; i < b; i++) {
        double t = tg[i] > 0 ? 1.0 : 0.0, zz = z[i];
        loss += (zz > 0 ? zz : 0) - zz * t + log1p(exp(-fabs(zz)));
        if (dz)
            dz[i] = (float)(1.0 / (1.0 + exp(-zz)) - t);
    }
    return loss;
}

static void loss_destroy(ps_layer_t *l)
{
    free(l);
}

static const ps_layer_ops_t ce_ops = {NULL, NULL, ce_loss, loss_destroy};
static const ps_layer_ops_t mse_ops = {NULL, NULL, mse_loss, loss_destroy};
static const ps_layer_ops_t bce_ops = {NULL, NULL, bce_loss, loss_destroy};

ps_layer_t *pswk_loss_new(const ps_layer_desc_t *desc, ps_shape_t in, ps_tables_t *t,
                          size_t max_batch, ps_errbuf_t *err)
{
    char s[64];
    (void)t, (void)max_batch;
    bool seq_ok = desc->kind == PS_LAYER_CROSS_ENTROPY;
    if (in.kind != PS_SHAPE_VEC && !(seq_ok && in.kind == PS_SHAPE_SEQ)) {
        ps_err_set(err, PS_EINVAL, "needs %s, got %s",
                   seq_ok ? "a vector of class scores or a sequence of them" : "a vector",
                   ps_shape_str(in, s, sizeof s));
        return NULL;
    }
    size_t width = in.kind == PS_SHAPE_VEC ? in.d[0] : in.d[1];
    if (desc->kind == PS_LAYER_CROSS_ENTROPY && width < 2) {
        ps_err_set(err, PS_EINVAL, "needs >= 2 class scores, got %s",
                   ps_shape_str(in, s, sizeof s));
        return NULL;
    }
    if (desc->kind == PS_LAYER_BCE && width != 1) {
        ps_err_set(err, PS_EINVAL, "needs one output (a logit), got %s",
                   ps_shape_str(in, s, sizeof s));
        return NULL;
    }
    loss_t *ls = ps_xcalloc(1, sizeof *ls);
    ls->base.ops = desc->kind == PS_LAYER_CROSS_ENTROPY ? &ce_ops
                   : desc->kind == PS_LAYER_MSE         ? &mse_ops
                                                        : &bce_ops;
    ls->base.out = in;
    ls->rows = in.kind == PS_SHAPE_SEQ ? in.d[0] : 1;
    ls->width = width;
    return &ls->base;
}
