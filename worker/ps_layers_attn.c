/* ps_layers_attn.c - causal multi-head self-attention on a sequence
 * (positions x d): qkv = x Wqkv + bqkv (d -> 3d: queries, keys, values,
 * head h in columns h*d/H .. (h+1)*d/H of each), per head softmax(q k^T /
 * sqrt(d/H)) over positions <= the query's, times v; heads side by side,
 * then y = a Wproj + bproj. nanoGPT's CausalSelfAttention without its
 * dropouts (put dropout layers around it instead). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ps_layer_int.h"

typedef struct {
    ps_layer_t base;
    pswk_linear_t qkv, proj;
    size_t t, d, heads, hd;
    float scale;   /* 1 / sqrt(hd) */
    float *qkvbuf; /* max_batch x t x 3d */
    float *prob;   /* max_batch x heads x t x t: attention weights, 0 above the diagonal */
    float *att;    /* max_batch x t x d: heads' outputs side by side */
    float *dqkv, *datt, *dprob; /* backward; dprob t x t */
} attn_t;

/* Row i of s (t x t) becomes softmax over its first i + 1 entries. */
PSWK_VECTOR_CLONES
static void causal_softmax(float *s, size_t t)
{
    for (size_t i = 0; i < t; i++) {
        float *r = s + i * t, mx = r[0];
        for (size_t j = 1; j <= i; j++)
            mx = r[j] > mx ? r[j] : mx;
        float sum = 0;
        for (size_t j = 0; j <= i; j++) /* apart from the sum, so it vectorises */
            r[j] = pswk_expf(r[j] - mx);
        for (size_t j = 0; j <= i; j++)
            sum += r[j];
        float inv = 1.0f / sum;
        for (size_t j = 0; j <= i; j++)
            r[j] *= inv;
        memset(r + i + 1, 0, (t - i - 1) * sizeof(float));
    }
}

static int attn_forward(ps_layer_t *l, const float *x, float *y, size_t b, ps_pass_t *p)
{
    attn_t *a = (attn_t *)l;
    size_t t = a->t, d = a->d, hd = a->hd, ld = 3 * d;
    if (pswk_linear_forward(&a->qkv, p, x, a->qkvbuf, b * t) != 0)
        return -1;
    for (size_t n = 0; n < b; n++)
        for (size_t h = 0; h < a->heads; h++) {
            const float *q = a->qkvbuf + n * t * ld + h * hd, *k = q + d, *v = q + 2 * d;
            float *pr = a->prob + (n * a->heads + h) * t * t;
            pswk_gemm(false, true, t, t, hd, a->scale, q, ld, k, ld, 0.0f, pr, t);
            causal_softmax(pr, t);
            pswk_gemm(false, false, t, hd, t, 1.0f, pr, t, v, ld, 0.0f, a->att + n * t * d + h * hd,
                      d);
        }
    return pswk_linear_forward(&a->proj, p, a->att, y, b * t);
}

/* Per head: dv = P^T do, dP = do v^T, dS = P (dP - rowsum(P dP)),
 * dq = dS k / sqrt(hd), dk = dS^T q / sqrt(hd). */
static void attn_backward(ps_layer_t *l, const float *x, const float *y, const float *dy, float *dx,
                          size_t b, ps_pass_t *p)
{
    attn_t *a = (attn_t *)l;
    (void)y;
    size_t t = a->t, d = a->d, hd = a->hd, ld = 3 * d;
    pswk_linear_backward(&a->proj, p, a->att, dy, a->datt, b * t);
    for (size_t n = 0; n < b; n++)
        for (size_t h = 0; h < a->heads; h++) {
            size_t off = n * t * ld + h * hd;
            const float *q = a->qkvbuf + off, *k = q + d, *v = q + 2 * d;
            float *dq = a->dqkv + off, *dk = dq + d, *dv = dq + 2 * d;
            const float *pr = a->prob + (n * a->heads + h) * t * t;
            const float *dout = a->datt + n * t * d + h * hd;
            pswk_gemm(true, false, t, hd, t, 1.0f, pr, t, dout, d, 0.0f, dv, ld);
            pswk_gemm(false, true, t, t, hd, 1.0f, dout, d, v, ld, 0.0f, a->dprob, t);
            for (size_t i = 0; i < t; i++) {
                float *r = a->dprob + i * t;
                const float *pi = pr + i * t;
                float dot = 0;
                for (size_t j = 0; j <= i; j++)
                    dot += pi[j] * r[j];
                for (size_t j = 0; j <= i; j++)
                    r[j] = pi[j] * (r[j] - dot);
                memset(r + i + 1, 0, (t - i - 1) * sizeof(float));
            }
            pswk_gemm(false, false, t, hd, t, a->scale, a->dprob, t, k, ld, 0.0f, dq, ld);
            pswk_gemm(true, false, t, hd, t, a->scale, a->dprob, t, q, ld, 0.0f, dk, ld);
        }
    pswk_linear_backward(&a->qkv, p, x, a->dqkv, dx, b * t);
}

static void attn_destroy(ps_layer_t *l)
{
    attn_t *a = (attn_t *)l;
    free(a->qkvbuf);
    free(a->prob);
    free(a->att);
    free(a->dqkv);
    free(a->datt);
    free(a->dprob);
    free(a);
}

static const ps_layer_ops_t attn_ops = {attn_forward, attn_backward, NULL, attn_destroy};

ps_layer_t *pswk_attention_new(const ps_layer_desc_t *desc, ps_shape_t in, ps_tables_t *t,
                               size_t max_batch, ps_errbuf_t *err)
{
    char s[64];
    size_t heads = (size_t)desc->arg[0];
    if (in.kind != PS_SHAPE_SEQ) {
        ps_err_set(err, PS_EINVAL, "needs a sequence, got %s", ps_shape_str(in, s, sizeof s));
        return NULL;
    }
    if (in.d[1] % heads) {
        ps_err_set(err, PS_EINVAL, "%zu heads do not divide the width %u of %s", heads, in.d[1],
                   ps_shape_str(in, s, sizeof s));
        return NULL;
    }
    if ((uint64_t)in.d[0] * in.d[0] * heads > ((uint64_t)1 << 28)) {
        ps_err_set(err, PS_EINVAL,
                   "%u positions x %zu heads are more than 2^28 attention "
                   "weights per sample",
                   in.d[0], heads);
        return NULL;
    }
    attn_t *a = ps_xcalloc(1, sizeof *a);
    a->base.ops = &attn_ops;
    a->base.out = in;
    a->t = in.d[0], a->d = in.d[1], a->heads = heads, a->hd = a->d / heads;
    a->scale = (float)(1.0 / sqrt((double)a->hd));
    size_t bt = max_batch * a->t;
    a->qkvbuf = pswk_scratch(&a->base, bt * 3 * a->d * sizeof(float));
    a->dqkv = pswk_scratch(&a->base, bt * 3 * a->d * sizeof(float));
    a->att = pswk_scratch(&a->base, bt * a->d * sizeof(float));
    a->datt = pswk_scratch(&a->base, bt * a->d * sizeof(float));
    a->prob = pswk_scratch(&a->base, max_batch * heads * a->t * a->t * sizeof(float));
    a->dprob = pswk_scratch(&a->base, a->t * a->t * sizeof(float));

    char prefix[PS_TABLE_NAME_MAX];
    ps_init_t wi = ps_layer_torch_init(a->d), bi = wi, pi = wi;
    if (desc->init_std > 0) {
        wi = (ps_init_t){PS_INIT_NORMAL, desc->init_std};
        pi = (ps_init_t){PS_INIT_NORMAL, desc->proj_std > 0 ? desc->proj_std : desc->init_std};
        bi = (ps_init_t){PS_INIT_ZERO, 0};
    }
    pswk_linear_declare(&a->qkv, t, pswk_table_name(prefix, desc->name, "qkv"), a->d, 3 * a->d,
                        true, wi, bi);
    pswk_linear_declare(&a->proj, t, pswk_table_name(prefix, desc->name, "proj"), a->d, a->d, true,
                        pi, bi);
    return &a->base;
}
