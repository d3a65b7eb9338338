/* ps_layers_norm.c - layer norm over the last dim (features of a vector,
 * or of each position of a sequence), as nn.LayerNorm(d) with its gain 1
 * and bias 0 at init.
 *
 * Batch norm is left out on purpose: its statistics are those of the batch
 * a worker holds, so N workers with batch b would not compute the model of
 * one worker with batch N*b unless the workers exchanged statistics in the
 * middle of forward (sync batch norm), a round trip the parameter server
 * has no operation for. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ps_layer_int.h"

typedef struct {
    ps_layer_t base;
    uint32_t g, bias; /* tables "PREFIX.g" and "PREFIX.b", d each */
    size_t d, rows;   /* rows per sample */
    double eps;
    float *xhat; /* max_batch x len: normalised inputs */
    float *rstd; /* max_batch x rows: 1 / sqrt(var + eps) */
} ln_t;

static int ln_forward(ps_layer_t *l, const float *x, float *y, size_t b, ps_pass_t *p)
{
    ln_t *n = (ln_t *)l;
    if (ps_pass_need_table(p, n->g) != 0 || ps_pass_need_table(p, n->bias) != 0)
        return -1;
    const float *g = ps_tables_params(p->tables, n->g), *be = ps_tables_params(p->tables, n->bias);
    for (size_t r = 0; r < b * n->rows; r++) {
        const float *xr = x + r * n->d;
        double mean = 0, var = 0;
        for (size_t j = 0; j < n->d; j++)
            mean += xr[j];
        mean /= (double)n->d;
        for (size_t j = 0; j < n->d; j++)
            var += ((double)xr[j] - mean) * ((double)xr[j] - mean);
        var /= (double)n->d; /* biased, as PyTorch */
        float rstd = (float)(1.0 / sqrt(var + n->eps));
        float *xh = n->xhat + r * n->d, *yr = y + r * n->d;
        for (size_t j = 0; j < n->d; j++) {
            xh[j] = (float)((double)xr[j] - mean) * rstd;
            yr[j] = xh[j] * g[j] + be[j];
        }
        n->rstd[r] = rstd;
    }
    return 0;
}

/* dx = rstd (dxh - mean(dxh) - xhat mean(dxh xhat)), dxh = dy g. */
static void ln_backward(ps_layer_t *l, const float *x, const float *y, const float *dy, float *dx,
                        size_t b, ps_pass_t *p)
{
    ln_t *n = (ln_t *)l;
    (void)x, (void)y;
    const float *g = ps_tables_params(p->tables, n->g);
    float *dg = ps_tables_grads(p->tables, n->g), *db = ps_tables_grads(p->tables, n->bias);
    pswk_grad_begin(p, dg, n->d);
    pswk_grad_begin(p, db, n->d);
    for (size_t r = 0; r < b * n->rows; r++) {
        const float *dyr = dy + r * n->d, *xh = n->xhat + r * n->d;
        double s1 = 0, s2 = 0;
        for (size_t j = 0; j < n->d; j++) {
            dg[j] += dyr[j] * xh[j];
            db[j] += dyr[j];
            double dxh = (double)dyr[j] * g[j];
            s1 += dxh;
            s2 += dxh * xh[j];
        }
        if (!dx)
            continue;
        s1 /= (double)n->d;
        s2 /= (double)n->d;
        float *dxr = dx + r * n->d;
        for (size_t j = 0; j < n->d; j++)
            dxr[j] = (float)(n->rstd[r] * ((double)dyr[j] * g[j] - s1 - xh[j] * s2));
    }
    ps_pass_ready_table(p, n->g);
    ps_pass_ready_table(p, n->bias);
}

static void ln_destroy(ps_layer_t *l)
{
    ln_t *n = (ln_t *)l;
    free(n->xhat);
    free(n->rstd);
    free(n);
}

static const ps_layer_ops_t ln_ops = {ln_forward, ln_backward, NULL, ln_destroy};

ps_layer_t *pswk_layernorm_new(const ps_layer_desc_t *desc, ps_shape_t in, ps_tables_t *t,
                               size_t max_batch, ps_errbuf_t *err)
{
    char s[64];
    if (in.kind != PS_SHAPE_VEC && in.kind != PS_SHAPE_SEQ) {
        ps_err_set(err, PS_EINVAL, "needs a vector or a sequence, got %s",
                   ps_shape_str(in, s, sizeof s));
        return NULL;
    }
    if (!(desc->arg[0] > 0)) {
        ps_err_set(err, PS_EINVAL, "eps must be > 0, not %g", desc->arg[0]);
        return NULL;
    }
    ln_t *n = ps_xcalloc(1, sizeof *n);
    n->base.ops = &ln_ops;
    n->base.out = in;
    n->d = in.kind == PS_SHAPE_VEC ? in.d[0] : in.d[1];
    n->rows = in.kind == PS_SHAPE_VEC ? 1 : in.d[0];
    n->eps = desc->arg[0];
    n->xhat = pswk_scratch(&n->base, max_batch * ps_shape_len(in) * sizeof(float));
    n->rstd = pswk_scratch(&n->base, max_batch * n->rows * sizeof(float));
    char name[PS_TABLE_NAME_MAX];
    uint64_t shape[1] = {n->d};
    n->g = ps_tables_add(t, pswk_table_name(name, desc->name, "g"), 1, shape,
                         (ps_init_t){PS_INIT_ONE, 0});
    n->bias = ps_tables_add(t, pswk_table_name(name, desc->name, "b"), 1, shape,
                            (ps_init_t){PS_INIT_ZERO, 0});
    return &n->base;
}
