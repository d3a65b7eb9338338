/* ps_layers_embed.c - token embedding (tokens -> sequence of vectors, as
 * nn.Embedding, N(0, 1) at init) and learned position embedding (adds a
 * vector per position, N(0, 1) by default like any nn.Embedding). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ps_layer_int.h"

typedef struct {
    ps_layer_t base;
    uint32_t w; /* vocab x dim */
    size_t vocab, dim, t;
} embed_t;

/* Token values are whole numbers below vocab (ps_net_check_data checks a
 * data set); anything else is clamped into range, never read out of it. */
static size_t token_of(float v, size_t vocab)
{
    if (!(v >= 0))
        return 0;
    return v >= (float)vocab ? vocab - 1 : (size_t)v;
}

static int embed_forward(ps_layer_t *l, const float *x, float *y, size_t b, ps_pass_t *p)
{
    embed_t *e = (embed_t *)l;
    if (ps_pass_need_table(p, e->w) != 0)
        return -1;
    const float *w = ps_tables_params(p->tables, e->w);
    for (size_t i = 0; i < b * e->t; i++)
        memcpy(y + i * e->dim, w + token_of(x[i], e->vocab) * e->dim, e->dim * sizeof(float));
    return 0;
}

static void embed_backward(ps_layer_t *l, const float *x, const float *y, const float *dy,
                           float *dx, size_t b, ps_pass_t *p)
{
    embed_t *e = (embed_t *)l;
    (void)y;
    float *dw = ps_tables_grads(p->tables, e->w);
    pswk_grad_begin(p, dw, e->vocab * e->dim);
    for (size_t i = 0; i < b * e->t; i++) {
        float *row = dw + token_of(x[i], e->vocab) * e->dim;
        for (size_t j = 0; j < e->dim; j++)
            row[j] += dy[i * e->dim + j];
    }
    if (dx) /* tokens have no gradient */
        memset(dx, 0, b * e->t * sizeof(float));
    ps_pass_ready_table(p, e->w);
}

static void embed_destroy(ps_layer_t *l)
{
    free(l);
}

static const ps_layer_ops_t embed_ops = {embed_forward, embed_backward, NULL, embed_destroy};

ps_layer_t *pswk_embed_new(const ps_layer_desc_t *desc, ps_shape_t in, ps_tables_t *t,
                           size_t max_batch, ps_errbuf_t *err)
{
    char s[64];
    (void)max_batch;
    if (in.kind != PS_SHAPE_TOKENS) {
        ps_err_set(err, PS_EINVAL, "needs tokens (input tokens(T)), got %s",
                   ps_shape_str(in, s, sizeof s));
        return NULL;
    }
    embed_t *e = ps_xcalloc(1, sizeof *e);
    e->base.ops = &embed_ops;
    e->vocab = (size_t)desc->arg[0];
    e->dim = (size_t)desc->arg[1];
    e->t = in.d[0];
    e->base.out = (ps_shape_t){PS_SHAPE_SEQ, {in.d[0], (uint32_t)e->dim, 0}};
    char name[PS_TABLE_NAME_MAX];
    uint64_t shape[2] = {e->vocab, e->dim};
    ps_init_t init = {PS_INIT_NORMAL, desc->init_std > 0 ? desc->init_std : 1.0};
    e->w = ps_tables_add(t, pswk_table_name(name, desc->name, "W"), 2, shape, init);
    return &e->base;
}

typedef struct {
    ps_layer_t base;
    uint32_t w; /* positions x dim */
    size_t len; /* positions x dim */
} posembed_t;

static int posembed_forward(ps_layer_t *l, const float *x, float *y, size_t b, ps_pass_t *p)
{
    posembed_t *e = (posembed_t *)l;
    if (ps_pass_need_table(p, e->w) != 0)
        return -1;
    const float *w = ps_tables_params(p->tables, e->w);
    for (size_t i = 0; i < b; i++)
        for (size_t j = 0; j < e->len; j++)
            y[i * e->len + j] = x[i * e->len + j] + w[j];
    return 0;
}

static void posembed_backward(ps_layer_t *l, const float *x, const float *y, const float *dy,
                              float *dx, size_t b, ps_pass_t *p)
{
    posembed_t *e = (posembed_t *)l;
    (void)x, (void)y;
    float *dw = ps_tables_grads(p->tables, e->w);
    pswk_grad_begin(p, dw, e->len);
    for (size_t i = 0; i < b; i++)
        for (size_t j = 0; j < e->len; j++)
            dw[j] += dy[i * e->len + j];
    if (dx)
        memcpy(dx, dy, b * e->len * sizeof(float));
    ps_pass_ready_table(p, e->w);
}

static const ps_layer_ops_t posembed_ops = {posembed_forward, posembed_backward, NULL,
                                            embed_destroy};

ps_layer_t *pswk_posembed_new(const ps_layer_desc_t *desc, ps_shape_t in, ps_tables_t *t,
                              size_t max_batch, ps_errbuf_t *err)
{
    char s[64];
    (void)max_batch;
    if (in.kind != PS_SHAPE_SEQ) {
        ps_err_set(err, PS_EINVAL, "needs a sequence, got %s", ps_shape_str(in, s, sizeof s));
        return NULL;
    }
    posembed_t *e = ps_xcalloc(1, sizeof *e);
    e->base.ops = &posembed_ops;
    e->base.out = in;
    e->len = ps_shape_len(in);
    char name[PS_TABLE_NAME_MAX];
    uint64_t shape[2] = {in.d[0], in.d[1]};
    ps_init_t init = {PS_INIT_NORMAL, desc->init_std > 0 ? desc->init_std : 1.0};
    e->w = ps_tables_add(t, pswk_table_name(name, desc->name, "W"), 2, shape, init);
    return &e->base;
}
