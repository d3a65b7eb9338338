/* ps_layer.c - shapes, the table of layer kinds, the pass helpers and the
 * constructor dispatch; the guarded sgemm the layers share. */
#include "ps_layer.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ps_layer_int.h"

size_t ps_shape_len(ps_shape_t s)
{
    switch (s.kind) {
    case PS_SHAPE_VEC:
    case PS_SHAPE_TOKENS:
        return s.d[0];
    case PS_SHAPE_SEQ:
        return (size_t)s.d[0] * s.d[1];
    case PS_SHAPE_IMG:
        return (size_t)s.d[0] * s.d[1] * s.d[2];
    }
    return 0;
}

const char *ps_shape_str(ps_shape_t s, char *buf, size_t cap)
{
    switch (s.kind) {
    case PS_SHAPE_VEC:
        snprintf(buf, cap, "[%u]", s.d[0]);
        break;
    case PS_SHAPE_TOKENS:
        snprintf(buf, cap, "[%u tokens]", s.d[0]);
        break;
    case PS_SHAPE_SEQ:
        snprintf(buf, cap, "[%u positions x %u]", s.d[0], s.d[1]);
        break;
    case PS_SHAPE_IMG:
        snprintf(buf, cap, "[%ux%ux%u]", s.d[0], s.d[1], s.d[2]);
        break;
    }
    return buf;
}

bool ps_shape_equal(ps_shape_t a, ps_shape_t b)
{
    int n = a.kind == PS_SHAPE_IMG ? 3 : a.kind == PS_SHAPE_SEQ ? 2 : 1;
    for (int i = 0; i < n; i++)
        if (a.d[i] != b.d[i])
            return false;
    return a.kind == b.kind;
}

#define NO_ARGS        \
    0, 0, {NULL}, {0}, \
    {                  \
        false          \
    }
static const struct {
    ps_layer_kind_info_t info;
    pswk_layer_new_fn new_fn;
} kinds[PS_LAYER_N_KINDS] = {
    [PS_LAYER_DENSE] = {{"dense", "dense", 2, 1, {"out", "bias"}, {0, 1}, {true, true}, false},
                        pswk_dense_new},
    [PS_LAYER_CONV2D] = {{"conv2d",
                          "conv",
                          5,
                          2,
                          {"out", "k", "stride", "pad", "bias"},
                          {0, 0, 1, 0, 1},
                          {true, true, true, true, true},
                          false},
                         pswk_conv2d_new},
    [PS_LAYER_MAXPOOL] = {{"maxpool", NULL, 2, 1, {"k", "stride"}, {0, 0}, {true, true}, false},
                          pswk_pool_new},
    [PS_LAYER_AVGPOOL] = {{"avgpool", NULL, 2, 1, {"k", "stride"}, {0, 0}, {true, true}, false},
                          pswk_pool_new},
    [PS_LAYER_FLATTEN] = {{"flatten", NULL, NO_ARGS, false}, pswk_flatten_new},
    [PS_LAYER_RELU] = {{"relu", NULL, NO_ARGS, false}, pswk_act_new},
    [PS_LAYER_GELU] = {{"gelu", NULL, NO_ARGS, false}, pswk_act_new},
    [PS_LAYER_TANH] = {{"tanh", NULL, NO_ARGS, false}, pswk_act_new},
    [PS_LAYER_SIGMOID] = {{"sigmoid", NULL, NO_ARGS, false}, pswk_act_new},
    [PS_LAYER_DROPOUT] = {{"dropout", NULL, 1, 1, {"p"}, {0}, {false}, false}, pswk_dropout_new},
    [PS_LAYER_LAYERNORM] = {{"layernorm", "ln", 1, 0, {"eps"}, {1e-5}, {false}, false},
                            pswk_layernorm_new},
    [PS_LAYER_EMBED] = {{"embed", "embed", 2, 2, {"vocab", "dim"}, {0, 0}, {true, true}, false},
                        pswk_embed_new},
    [PS_LAYER_POSEMBED] = {{"posembed", "pos", NO_ARGS, false}, pswk_posembed_new},
    [PS_LAYER_ATTENTION] = {{"attention", "attn", 1, 1, {"heads"}, {0}, {true}, false},
                            pswk_attention_new},
    [PS_LAYER_RESIDUAL] = {{"residual", NULL, NO_ARGS, false}, NULL},
    [PS_LAYER_END] = {{"]", NULL, NO_ARGS, false}, NULL},
    [PS_LAYER_CROSS_ENTROPY] = {{"cross_entropy", NULL, NO_ARGS, true}, pswk_loss_new},
    [PS_LAYER_MSE] = {{"mse", NULL, NO_ARGS, true}, pswk_loss_new},
    [PS_LAYER_BCE] = {{"bce", NULL, NO_ARGS, true}, pswk_loss_new},
};

const ps_layer_kind_info_t *ps_layer_kind_info(ps_layer_kind_t kind)
{
    return &kinds[kind].info;
}

int ps_layer_kind_find(const char *word, size_t len)
{
    for (int k = 0; k < PS_LAYER_N_KINDS; k++)
        if (strlen(kinds[k].info.word) == len && memcmp(kinds[k].info.word, word, len) == 0)
            return k;
    return -1;
}

void ps_layer_desc_init(ps_layer_desc_t *d, ps_layer_kind_t kind, const char *name)
{
    memset(d, 0, sizeof *d);
    d->kind = kind;
    memcpy(d->arg, kinds[kind].info.defaults, sizeof d->arg);
    snprintf(d->name, sizeof d->name, "%s", name ? name : "");
    snprintf(d->text, sizeof d->text, "%s", kinds[kind].info.word);
}

ps_layer_t *ps_layer_new(const ps_layer_desc_t *desc, ps_shape_t in, ps_tables_t *tables,
                         uint32_t index, size_t max_batch, ps_errbuf_t *err)
{
    pswk_layer_new_fn fn = kinds[desc->kind].new_fn;
    if (!fn) {
        ps_err_set(err, PS_EINVAL, "'%s' is not a layer", kinds[desc->kind].info.word);
        return NULL;
    }
    ps_layer_t *l = fn(desc, in, tables, max_batch, err);
    if (l) {
        l->kind = desc->kind;
        l->in = in;
        l->index = index;
        l->max_batch = max_batch;
    }
    return l;
}

void ps_layer_destroy(ps_layer_t **lp)
{
    if (!*lp)
        return;
    (*lp)->ops->destroy(*lp);
    *lp = NULL;
}

ps_init_t ps_layer_torch_init(uint64_t fan_in)
{
    return (ps_init_t){PS_INIT_UNIFORM, fan_in ? 1.0 / sqrt((double)fan_in) : 0};
}

int ps_pass_need_block(ps_pass_t *p, uint32_t id, uint32_t i)
{
    if (!p->need)
        return 0;
    return p->need(p->ctx, ps_tables_first_slice(p->tables, id) + i) ? -1 : 0;
}

void ps_pass_ready_block(ps_pass_t *p, uint32_t id, uint32_t i)
{
    if (p->ready)
        p->ready(p->ctx, ps_tables_first_slice(p->tables, id) + i);
}

int ps_pass_need_table(ps_pass_t *p, uint32_t id)
{
    for (uint32_t i = 0; i < ps_tables_n_blocks(p->tables, id); i++)
        if (ps_pass_need_block(p, id, i) != 0)
            return -1;
    return 0;
}

void ps_pass_ready_table(ps_pass_t *p, uint32_t id)
{
    for (uint32_t i = 0; i < ps_tables_n_blocks(p->tables, id); i++)
        ps_pass_ready_block(p, id, i);
}

void pswk_gemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
               const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
               size_t ldc)
{
    if (m == 0 || n == 0)
        return;
    if (k == 0) {
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++)
                c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j];
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k, alpha, a, (int)lda, b,
                (int)ldb, beta, c, (int)ldc);
}

const char *pswk_table_name(char *buf, const char *prefix, const char *suffix)
{
    snprintf(buf, PS_TABLE_NAME_MAX, "%s.%s", prefix, suffix);
    return buf;
}
