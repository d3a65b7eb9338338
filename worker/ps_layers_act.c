/* ps_layers_act.c - element-wise layers: ReLU, GELU (the exact erf form,
 * PyTorch's default nn.GELU()), tanh, sigmoid, and dropout. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ps_layer_int.h"
#include "ps_rng.h"

/* Phi(x) = (1 + erf(x / sqrt 2)) / 2 through erfc(z), z = |x| / sqrt 2, by the
 * Chebyshev fit erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z/2), of Numerical
 * Recipes (2nd ed., 6.2; fractional error < 1.2e-7) and pswk_expf. Absolute
 * error of Phi < 2e-7 over all x, as glibc's erff gives in float (2.4e-7);
 * unlike 0.5 (1 + erff) it keeps its relative accuracy in the lower tail.
 * No calls: the GELU loops vectorise (erff was 11% of a GPT step). */
static inline float normal_cdf(float x)
{
    float z = fabsf(x) * (float)M_SQRT1_2, t = 1.0f / (1.0f + 0.5f * z);
    float p =
        -1.26551223f +
        t * (1.00002368f +
             t * (0.37409196f +
                  t * (0.09678418f +
                       t * (-0.18628806f +
                            t * (0.27886807f + t * (-1.13520398f +
                                                    t * (1.48851587f + t * (-0.82215223f +
                                                                            t * 0.17087277f))))))));
    float half_erfc = 0.5f * t * pswk_expf(p - z * z);
    return x >= 0 ? 1.0f - half_erfc : half_erfc;
}

PSWK_VECTOR_CLONES
static void gelu_forward(const float *x, float *y, float *cdf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        cdf[i] = normal_cdf(x[i]);
        y[i] = x[i] * cdf[i];
    }
}

/* GELU'(x) = Phi(x) + x phi(x), phi the normal density; Phi kept from forward. */
PSWK_VECTOR_CLONES
static void gelu_backward(const float *x, const float *cdf, const float *dy, float *dx, size_t n)
{
    const float inv_sqrt_2pi = 0.3989422804014327f;
    for (size_t i = 0; i < n; i++)
        dx[i] = dy[i] * (cdf[i] + x[i] * inv_sqrt_2pi * pswk_expf(-0.5f * x[i] * x[i]));
}

typedef struct {
    ps_layer_t base;
    float *cdf; /* GELU: max_batch x len, Phi(x) of the last forward for backward */
} act_t;

static int act_forward(ps_layer_t *l, const float *x, float *y, size_t b, ps_pass_t *p)
{
    act_t *a = (act_t *)l;
    (void)p;
    size_t n = b * ps_shape_len(l->in);
    switch (l->kind) {
    case PS_LAYER_RELU:
        for (size_t i = 0; i < n; i++)
            y[i] = x[i] > 0 ? x[i] : 0;
        break;
    case PS_LAYER_GELU:
        gelu_forward(x, y, a->cdf, n);
        break;
    case PS_LAYER_TANH:
        for (size_t i = 0; i < n; i++)
            y[i] = tanhf(x[i]);
        break;
    default:
        for (size_t i = 0; i < n; i++)
            y[i] = 1.0f / (1.0f + expf(-x[i]));
        break;
    }
    return 0;
}

static void act_backward(ps_layer_t *l, const float *x, const float *y, const float *dy, float *dx,
                         size_t b, ps_pass_t *p)
{
    act_t *a = (act_t *)l;
    (void)p;
    if (!dx)
        return;
    size_t n = b * ps_shape_len(l->in);
    switch (l->kind) {
    case PS_LAYER_RELU:
        /* both loads unconditional, so the select vectorises (a branch
         * here mispredicts on half the elements) */
        for (size_t i = 0; i < n; i++) {
            float g = dy[i];
            dx[i] = x[i] > 0 ? g : 0.0f;
        }
        break;
    case PS_LAYER_GELU:
        gelu_backward(x, a->cdf, dy, dx, n);
        break;
    case PS_LAYER_TANH:
        for (size_t i = 0; i < n; i++)
            dx[i] = dy[i] * (1.0f - y[i] * y[i]);
        break;
    default:
        for (size_t i = 0; i < n; i++)
            dx[i] = dy[i] * y[i] * (1.0f - y[i]);
        break;
    }
}

static void act_destroy(ps_layer_t *l)
{
    free(((act_t *)l)->cdf);
    free(l);
}

static const ps_layer_ops_t act_ops = {act_forward, act_backward, NULL, act_destroy};

ps_layer_t *pswk_act_new(const ps_layer_desc_t *desc, ps_shape_t in, ps_tables_t *t,
                         size_t max_batch, ps_errbuf_t *err)
{
    (void)t;
    if (in.kind == PS_SHAPE_TOKENS) {
        ps_err_set(err, PS_EINVAL, "needs numbers, got tokens: embed them first");
        return NULL;
    }
    act_t *a = ps_xcalloc(1, sizeof *a);
    a->base.ops = &act_ops;
    a->base.out = in;
    if (desc->kind == PS_LAYER_GELU)
        a->cdf = pswk_scratch(&a->base, max_batch * ps_shape_len(in) * sizeof(float));
    return &a->base;
}

/* Inverted dropout: in training each value is kept with probability 1 - p
 * and scaled by 1 / (1 - p), as nn.Dropout. The mask of sample i in layer
 * L is a pure function of (key_i, L, element): the caller derives key_i
 * from the step and the sample's place in the global batch, so whichever
 * worker computes the sample draws the same mask. */
typedef struct {
    ps_layer_t base;
    float p, scale;
    bool was_training; /* the last forward dropped values */
    uint8_t *keep;     /* max_batch x len */
} dropout_t;

static int dropout_forward(ps_layer_t *l, const float *x, float *y, size_t b, ps_pass_t *p)
{
    dropout_t *d = (dropout_t *)l;
    size_t len = ps_shape_len(l->in);
    d->was_training = p->is_training && d->p > 0;
    if (!d->was_training) {
        memcpy(y, x, b * len * sizeof(float));
        return 0;
    }
    const double threshold = d->p * 16777216.0;
    for (size_t i = 0; i < b; i++) {
        uint64_t key = ps_rng_mix(p->sample_key ? p->sample_key[i] : i, l->index);
        for (size_t e = 0; e < len; e++) {
            uint64_t u = ps_rng_mix(key, e) >> 40; /* 24 uniform bits */
            bool keep = (double)u >= threshold;
            d->keep[i * len + e] = keep;
            y[i * len + e] = keep ? x[i * len + e] * d->scale : 0.0f;
        }
    }
    return 0;
}

static void dropout_backward(ps_layer_t *l, const float *x, const float *y, const float *dy,
                             float *dx, size_t b, ps_pass_t *p)
{
    dropout_t *d = (dropout_t *)l;
    (void)x, (void)y, (void)p;
    if (!dx)
        return;
    size_t n = b * ps_shape_len(l->in);
    if (!d->was_training) {
        memcpy(dx, dy, n * sizeof(float));
        return;
    }
    for (size_t i = 0; i < n; i++)
        dx[i] = d->keep[i] ? dy[i] * d->scale : 0.0f;
}

static void dropout_destroy(ps_layer_t *l)
{
    free(((dropout_t *)l)->keep);
    free(l);
}

static const ps_layer_ops_t dropout_ops = {dropout_forward, dropout_backward, NULL,
                                           dropout_destroy};

ps_layer_t *pswk_dropout_new(const ps_layer_desc_t *desc, ps_shape_t in, ps_tables_t *t,
                             size_t max_batch, ps_errbuf_t *err)
{
    (void)t;
    double p = desc->arg[0];
    if (!(p >= 0 && p < 1)) {
        ps_err_set(err, PS_EINVAL, "p must be in [0, 1), not %g", p);
        return NULL;
    }
    if (in.kind == PS_SHAPE_TOKENS) {
        ps_err_set(err, PS_EINVAL, "needs numbers, got tokens: embed them first");
        return NULL;
    }
    dropout_t *d = ps_xcalloc(1, sizeof *d);
    d->base.ops = &dropout_ops;
    d->base.out = in;
    d->p = (float)p;
    d->scale = (float)(1.0 / (1.0 - p));
    d->keep = pswk_scratch(&d->base, max_batch * ps_shape_len(in));
    return &d->base;
}
