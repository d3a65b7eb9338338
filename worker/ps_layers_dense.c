/* ps_layers_dense.c - the affine map y = x W + b (W in x out, row-major,
 * the layout of ps_model's "denseK.W") and the dense layer made of it. On a
 * sequence it maps every position alike, as nn.Linear does. */
#include <stdlib.h>
#include <string.h>

#include "ps_layer_int.h"

void pswk_linear_declare(pswk_linear_t *lin, ps_tables_t *t, const char *prefix, size_t in,
                         size_t out, bool has_bias, ps_init_t w_init, ps_init_t b_init)
{
    char name[PS_TABLE_NAME_MAX];
    uint64_t wshape[2] = {in, out}, bshape[1] = {out};
    lin->in = in;
    lin->out = out;
    lin->has_bias = has_bias;
    lin->w = ps_tables_add(t, pswk_table_name(name, prefix, "W"), 2, wshape, w_init);
    lin->b = has_bias ? ps_tables_add(t, pswk_table_name(name, prefix, "b"), 1, bshape, b_init)
                      : UINT32_MAX;
}

/* Row blocks of W are the slices: block r of rows [r0, r0 + n) contributes
 * x[:, r0:r0+n] W[r0:r0+n, :], so forward can start on the first block
 * while later ones are still on the wire. */
int pswk_linear_forward(const pswk_linear_t *lin, ps_pass_t *p, const float *x, float *y,
                        size_t rows)
{
    const ps_tables_t *t = p->tables;
    size_t k = lin->in, o = lin->out;
    float beta = 0;
    if (lin->has_bias) {
        if (ps_pass_need_table(p, lin->b) != 0)
            return -1;
        const float *bias = ps_tables_params(t, lin->b);
        for (size_t i = 0; i < rows; i++)
            memcpy(y + i * o, bias, o * sizeof(float));
        beta = 1;
    }
    const float *w = ps_tables_params(t, lin->w);
    uint32_t nb = ps_tables_n_blocks(t, lin->w), s0 = ps_tables_first_slice(t, lin->w);
    for (uint32_t i = 0; i < nb; i++) {
        uint64_t r0, nr;
        if (ps_pass_need_block(p, lin->w, i) != 0)
            return -1;
        ps_tables_slice_rows(t, s0 + i, &r0, &nr);
        pswk_gemm(false, false, rows, o, nr, 1.0f, x + r0, k, w + r0 * o, o, beta, y, o);
        beta = 1;
    }
    return 0;
}

void pswk_linear_backward(const pswk_linear_t *lin, ps_pass_t *p, const float *x, const float *dy,
                          float *dx, size_t rows)
{
    const ps_tables_t *t = p->tables;
    size_t k = lin->in, o = lin->out;
    if (lin->has_bias) {
        float *db = ps_tables_grads(t, lin->b);
        pswk_grad_begin(p, db, o);
        for (size_t i = 0; i < rows; i++)
            for (size_t j = 0; j < o; j++)
                db[j] += dy[i * o + j];
        ps_pass_ready_table(p, lin->b);
    }
    float *dw = ps_tables_grads(t, lin->w);
    uint32_t nb = ps_tables_n_blocks(t, lin->w), s0 = ps_tables_first_slice(t, lin->w);
    for (uint32_t i = 0; i < nb; i++) {
        uint64_t r0, nr;
        ps_tables_slice_rows(t, s0 + i, &r0, &nr);
        pswk_gemm(true, false, nr, o, rows, 1.0f, x + r0, k, dy, o, p->accumulate ? 1.0f : 0.0f,
                  dw + r0 * o, o);
        ps_pass_ready_block(p, lin->w, i);
    }
    if (dx)
        pswk_gemm(false, true, rows, k, o, 1.0f, dy, o, ps_tables_params(t, lin->w), o, 0.0f, dx,
                  k);
}

typedef struct {
    ps_layer_t base;
    pswk_linear_t lin;
    size_t positions; /* rows per sample: 1, or a sequence's length */
} dense_t;

static int dense_forward(ps_layer_t *l, const float *x, float *y, size_t b, ps_pass_t *p)
{
    dense_t *d = (dense_t *)l;
    return pswk_linear_forward(&d->lin, p, x, y, b * d->positions);
}

static void dense_backward(ps_layer_t *l, const float *x, const float *y, const float *dy,
                           float *dx, size_t b, ps_pass_t *p)
{
    dense_t *d = (dense_t *)l;
    (void)y;
    pswk_linear_backward(&d->lin, p, x, dy, dx, b * d->positions);
}

static void dense_destroy(ps_layer_t *l)
{
    free(l);
}

static const ps_layer_ops_t dense_ops = {dense_forward, dense_backward, NULL, dense_destroy};

ps_layer_t *pswk_dense_new(const ps_layer_desc_t *desc, ps_shape_t in, ps_tables_t *t,
                           size_t max_batch, ps_errbuf_t *err)
{
    (void)max_batch;
    if (in.kind != PS_SHAPE_VEC && in.kind != PS_SHAPE_SEQ) {
        char s[64];
        ps_err_set(err, PS_EINVAL, "needs a vector or a sequence, got %s%s",
                   ps_shape_str(in, s, sizeof s),
                   in.kind == PS_SHAPE_IMG ? ": put flatten before it" : "");
        return NULL;
    }
    size_t k = in.kind == PS_SHAPE_VEC ? in.d[0] : in.d[1];
    size_t out = (size_t)desc->arg[0];
    dense_t *d = ps_xcalloc(1, sizeof *d);
    d->base.ops = &dense_ops;
    d->positions = in.kind == PS_SHAPE_SEQ ? in.d[0] : 1;
    d->base.out = in;
    d->base.out.d[in.kind == PS_SHAPE_VEC ? 0 : 1] = (uint32_t)out;
    ps_init_t wi = ps_layer_torch_init(k), bi = wi;
    if (desc->init_std > 0) {
        wi = (ps_init_t){PS_INIT_NORMAL, desc->init_std};
        bi = (ps_init_t){PS_INIT_ZERO, 0};
    }
    pswk_linear_declare(&d->lin, t, desc->name, k, out, desc->arg[1] != 0, wi, bi);
    return &d->base;
}
