/* ps_layer_int.h - shared by the layer files (ps_layer.c, ps_layers_*.c)
 * and nothing else: each kind's constructor, a guarded sgemm, and the
 * affine map that dense and attention are made of. Worker thread only. */
#ifndef PS_LAYER_INT_H
#define PS_LAYER_INT_H

#include <string.h>

#include "ps_layer.h"

/* Constructors, one per kind (ps_layer_new dispatches on desc->kind). They
 * set in, out and max_batch; ps_layer_new sets the rest of the base. */
typedef ps_layer_t *(*pswk_layer_new_fn)(const ps_layer_desc_t *d, ps_shape_t in, ps_tables_t *t,
                                         size_t max_batch, ps_errbuf_t *err);
ps_layer_t *pswk_dense_new(const ps_layer_desc_t *d, ps_shape_t in, ps_tables_t *t,
                           size_t max_batch, ps_errbuf_t *err);
ps_layer_t *pswk_conv2d_new(const ps_layer_desc_t *d, ps_shape_t in, ps_tables_t *t,
                            size_t max_batch, ps_errbuf_t *err);
ps_layer_t *pswk_pool_new(const ps_layer_desc_t *d, ps_shape_t in, ps_tables_t *t, size_t max_batch,
                          ps_errbuf_t *err);
ps_layer_t *pswk_flatten_new(const ps_layer_desc_t *d, ps_shape_t in, ps_tables_t *t,
                             size_t max_batch, ps_errbuf_t *err);
ps_layer_t *pswk_act_new(const ps_layer_desc_t *d, ps_shape_t in, ps_tables_t *t, size_t max_batch,
                         ps_errbuf_t *err);
ps_layer_t *pswk_dropout_new(const ps_layer_desc_t *d, ps_shape_t in, ps_tables_t *t,
                             size_t max_batch, ps_errbuf_t *err);
ps_layer_t *pswk_layernorm_new(const ps_layer_desc_t *d, ps_shape_t in, ps_tables_t *t,
                               size_t max_batch, ps_errbuf_t *err);
ps_layer_t *pswk_embed_new(const ps_layer_desc_t *d, ps_shape_t in, ps_tables_t *t,
                           size_t max_batch, ps_errbuf_t *err);
ps_layer_t *pswk_posembed_new(const ps_layer_desc_t *d, ps_shape_t in, ps_tables_t *t,
                              size_t max_batch, ps_errbuf_t *err);
ps_layer_t *pswk_attention_new(const ps_layer_desc_t *d, ps_shape_t in, ps_tables_t *t,
                               size_t max_batch, ps_errbuf_t *err);
ps_layer_t *pswk_loss_new(const ps_layer_desc_t *d, ps_shape_t in, ps_tables_t *t, size_t max_batch,
                          ps_errbuf_t *err);

/* Test hook: the im2col buffer limit (floats) of conv2d layers made from
 * now on; returns the previous one. */
size_t pswk_conv_set_chunk_floats(size_t n);

/* Row-major C = alpha op(A) op(B) + beta C, C M x N, K the inner size.
 * Unlike a bare cblas_sgemm it is exact at the edges: M or N == 0 does
 * nothing, K == 0 sets C = beta C (so C = 0 for beta 0, which an empty
 * batch's gradients rely on). */
void pswk_gemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
               const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
               size_t ldc);

/* A layer's scratch buffer of bytes, counted in l->scratch_bytes (what a
 * memory budget adds up, ps_net_stage_memory): every buffer a layer keeps
 * for its passes comes from here. */
static inline void *pswk_scratch(ps_layer_t *l, size_t bytes)
{
    l->scratch_bytes += bytes;
    return ps_xmalloc(bytes ? bytes : 1);
}

/* Where a backward begins a gradient of n floats: zeroed, unless the pass
 * accumulates (the layer then adds to what g holds). */
static inline void pswk_grad_begin(const ps_pass_t *p, float *g, size_t n)
{
    if (!p->accumulate)
        memset(g, 0, n * sizeof(float));
}

/* y = x W + bias on rows of in floats, W in x out (table "PREFIX.W"), bias
 * out (table "PREFIX.b", if has_bias). */
typedef struct {
    uint32_t w, b;
    size_t in, out;
    bool has_bias;
} pswk_linear_t;

/* Declares the tables; w_init for W and b_init for the bias. */
void pswk_linear_declare(pswk_linear_t *lin, ps_tables_t *t, const char *prefix, size_t in,
                         size_t out, bool has_bias, ps_init_t w_init, ps_init_t b_init);
/* Asks for the bias, then W block by block, each applied as it arrives
 * (ps_model's order). -1 if a need abandoned the pass. */
int pswk_linear_forward(const pswk_linear_t *lin, ps_pass_t *p, const float *x, float *y,
                        size_t rows);
/* Bias gradient, then W's block by block, each announced when final; then
 * dx = dy W^T if dx is not NULL. */
void pswk_linear_backward(const pswk_linear_t *lin, ps_pass_t *p, const float *x, const float *dy,
                          float *dx, size_t rows);

/* Built twice, for AVX2 and the x86-64 baseline, picked at load time, as
 * ps_optim_step_to (server/ps_optim.c, which says why GCC only and not
 * under TSan): for element-wise loops that are compute-bound. The same IEEE
 * operations either way (C11 mode does not contract to FMA), so results do
 * not depend on the CPU. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define PSWK_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PSWK_VECTOR_CLONES
#endif

/* e^x within 1.5 ulp for x in [-87, 88] (clamped outside), with no call, so
 * loops over it vectorise (expf does not without -ffast-math). 2^n by the
 * exponent bits times a degree-7 Taylor polynomial of e^r, |r| <= ln2 / 2
 * (truncation r^8/8! < 6e-9). */
static inline float pswk_expf(float x)
{
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    float n = (x * 1.44269504f + magic) - magic;
    /* ln 2 = 355/512 - 2.12194440e-4: n * 355/512 is exact */
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p =
        ((((((r * (1.0f / 5040) + 1.0f / 720) * r + 1.0f / 120) * r + 1.0f / 24) * r + 1.0f / 6) *
              r +
          0.5f) *
             r +
         1.0f) *
            r +
        1.0f;
    int32_t bits = ((int32_t)n + 127) * (1 << 23);
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* "PREFIX.suffix" into buf (PS_TABLE_NAME_MAX). */
const char *pswk_table_name(char *buf, const char *prefix, const char *suffix);

#endif
