/* ps_layers_conv.c - layers on images (channels x rows x columns): conv2d,
 * max and average pooling, and flatten (image or sequence to vector). */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "ps_layer_int.h"

/* The im2col buffers of a conv2d hold at most this many floats (16 MB by
 * default); a bigger batch is done in chunks of samples. */
static size_t conv_chunk_floats = (size_t)1 << 22;

size_t pswk_conv_set_chunk_floats(size_t n)
{
    size_t old = conv_chunk_floats;
    conv_chunk_floats = n;
    return old;
}

typedef struct {
    ps_layer_t base;
    uint32_t w, bias; /* tables: W out x C x k x k (nn.Conv2d's layout), b out */
    bool has_bias;
    size_t c, h, wd, k, stride, pad, out, ho, wo;
    size_t kk;     /* C * k * k: the inner size of the product */
    size_t chunk;  /* samples per im2col chunk */
    bool has_cols; /* cols holds the last forward's whole batch (one chunk) */
    float *cols;   /* kk x chunk * ho * wo */
    float *dcols;  /* kk x chunk * ho * wo, backward */
} conv_t;

/* The output columns [lo, hi) whose input column ow * stride + kj - pad
 * lies inside the image; the others read padding. */
static void valid_cols(const conv_t *cv, size_t kj, size_t *lo, size_t *hi)
{
    size_t s = cv->stride;
    *lo = kj >= cv->pad ? 0 : (cv->pad - kj + s - 1) / s;
    size_t end = cv->wd + cv->pad; /* ow * s + kj < end */
    *hi = end <= kj ? 0 : (end - kj - 1) / s + 1;
    *hi = *hi > cv->wo ? cv->wo : *hi;
    *lo = *lo > *hi ? *hi : *lo;
}

/* One output row of a kernel tap: dst[ow] = src[ow * s] for ow in
 * [lo, hi), 0 elsewhere; src NULL is a row of padding. Rows are short:
 * loops, not memcpy/memset calls. */
static void tap_row(float *dst, const float *src, size_t lo, size_t hi, size_t wo, size_t s)
{
    if (!src)
        lo = hi = wo;
    for (size_t ow = 0; ow < lo; ow++)
        dst[ow] = 0;
    if (s == 1)
        for (size_t ow = lo; ow < hi; ow++)
            dst[ow] = src[ow];
    else
        for (size_t ow = lo; ow < hi; ow++)
            dst[ow] = src[ow * s];
    for (size_t ow = hi; ow < wo; ow++)
        dst[ow] = 0;
}

/* The adjoint of tap_row: src[ow * s] += dst[ow] for ow in [lo, hi). */
static void tap_row_add(float *img_row, const float *g, size_t lo, size_t hi, size_t s)
{
    if (s == 1)
        for (size_t ow = lo; ow < hi; ow++)
            img_row[ow] += g[ow];
    else
        for (size_t ow = lo; ow < hi; ow++)
            img_row[ow * s] += g[ow];
}

/* Row r = (c, ki, kj) of the columns: for each sample and output row, the
 * input under tap (ki, kj) of channel c. */
static void im2col_tap(const conv_t *cv, const float *x, size_t m, size_t r, float *row)
{
    size_t P = cv->ho * cv->wo, s = cv->stride, kj = r % cv->k, ki = r / cv->k % cv->k;
    size_t c = r / (cv->k * cv->k), lo, hi;
    valid_cols(cv, kj, &lo, &hi);
    for (size_t j = 0; j < m; j++) {
        const float *img = x + (j * cv->c + c) * cv->h * cv->wd;
        for (size_t oh = 0; oh < cv->ho; oh++) {
            size_t ih = oh * s + ki;
            bool padding = ih < cv->pad || ih - cv->pad >= cv->h;
            /* src[ow * s] is input column ow * s + kj - pad */
            const float *src = padding ? NULL : img + (ih - cv->pad) * cv->wd + kj - cv->pad;
            tap_row(row + j * P + oh * cv->wo, src, lo, hi, cv->wo, s);
        }
    }
}

/* cols[r][j * P + q] = the input under kernel tap r (= (c, ki, kj)) for
 * output position q of sample j (0 in the padding). */
static void im2col(const conv_t *cv, const float *x, size_t m, float *cols)
{
    size_t ld = m * cv->ho * cv->wo;
    for (size_t r = 0; r < cv->kk; r++)
        im2col_tap(cv, x, m, r, cols + r * ld);
}

/* The adjoint of im2col_tap: dx += row's gradients under tap r. */
static void col2im_tap(const conv_t *cv, const float *row, size_t m, size_t r, float *dx)
{
    size_t P = cv->ho * cv->wo, s = cv->stride, kj = r % cv->k, ki = r / cv->k % cv->k;
    size_t c = r / (cv->k * cv->k), lo, hi;
    valid_cols(cv, kj, &lo, &hi);
    for (size_t j = 0; j < m; j++) {
        float *img = dx + (j * cv->c + c) * cv->h * cv->wd;
        for (size_t oh = 0; oh < cv->ho; oh++) {
            size_t ih = oh * s + ki;
            if (ih < cv->pad || ih - cv->pad >= cv->h)
                continue;
            tap_row_add(img + (ih - cv->pad) * cv->wd + kj - cv->pad, row + j * P + oh * cv->wo, lo,
                        hi, s);
        }
    }
}

/* The adjoint of im2col: dx += the taps' gradients, in place. */
static void col2im(const conv_t *cv, const float *cols, size_t m, float *dx)
{
    size_t ld = m * cv->ho * cv->wo;
    for (size_t r = 0; r < cv->kk; r++)
        col2im_tap(cv, cols + r * ld, m, r, dx);
}

/* Row o of the out x P block y is bias[o] everywhere. */
static void fill_bias(float *y, const float *bias, size_t out, size_t P)
{
    for (size_t o = 0; o < out; o++)
        for (size_t q = 0; q < P; q++)
            y[o * P + q] = bias[o];
}

/* Per chunk of samples: im2col once, then for each sample j
 * Y_j (out x P) = bias + W (out x kk) cols_j (kk x P). */
static int conv_forward(ps_layer_t *l, const float *x, float *y, size_t b, ps_pass_t *p)
{
    conv_t *cv = (conv_t *)l;
    if ((cv->has_bias && ps_pass_need_table(p, cv->bias) != 0) || ps_pass_need_table(p, cv->w) != 0)
        return -1;
    const float *w = ps_tables_params(p->tables, cv->w);
    const float *bias = cv->has_bias ? ps_tables_params(p->tables, cv->bias) : NULL;
    size_t P = cv->ho * cv->wo, in_len = ps_shape_len(l->in), out_len = cv->out * P;
    cv->has_cols = b <= cv->chunk;
    for (size_t n0 = 0; n0 < b; n0 += cv->chunk) {
        size_t m = b - n0 < cv->chunk ? b - n0 : cv->chunk;
        im2col(cv, x + n0 * in_len, m, cv->cols);
        /* One product per sample, straight into its place in y: sample j's
         * columns are a kk x P block of cols (row stride m * P). Starting
         * from the bias (beta 1) spares a pass that moved the whole output
         * from the product's order to the samples' and added the bias. */
        for (size_t j = 0; j < m; j++) {
            float *yj = y + (n0 + j) * out_len;
            if (bias)
                fill_bias(yj, bias, cv->out, P);
            pswk_gemm(false, false, cv->out, P, cv->kk, 1.0f, w, cv->kk, cv->cols + j * P, m * P,
                      bias ? 1.0f : 0.0f, yj, P);
        }
    }
    return 0;
}

/* Eight running sums: one would be a chain of dependent adds (GCC may
 * not reorder a float sum), eight go side by side in one vector. */
static float sum_floats(const float *v, size_t n)
{
    float acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += v[i + k];
    float s = 0;
    for (int k = 0; k < 8; k++)
        s += acc[k];
    for (; i < n; i++)
        s += v[i];
    return s;
}

/* Per chunk, per sample j: dW += dY_j cols_j^T; dcols_j = W^T dY_j, all
 * scattered back by col2im. A batch that fit one chunk still has its
 * columns from forward (backward always follows its own forward, in
 * train_batch); a bigger one runs im2col again rather than keeping every
 * chunk's columns. */
static void conv_backward(ps_layer_t *l, const float *x, const float *y, const float *dy, float *dx,
                          size_t b, ps_pass_t *p)
{
    conv_t *cv = (conv_t *)l;
    (void)y;
    const float *w = ps_tables_params(p->tables, cv->w);
    float *dw = ps_tables_grads(p->tables, cv->w);
    float *db = cv->has_bias ? ps_tables_grads(p->tables, cv->bias) : NULL;
    size_t P = cv->ho * cv->wo, in_len = ps_shape_len(l->in), out_len = cv->out * P;
    pswk_grad_begin(p, dw, cv->out * cv->kk);
    if (db)
        pswk_grad_begin(p, db, cv->out);
    if (dx)
        memset(dx, 0, b * in_len * sizeof(float));
    for (size_t n0 = 0; n0 < b; n0 += cv->chunk) {
        size_t m = b - n0 < cv->chunk ? b - n0 : cv->chunk;
        if (!cv->has_cols)
            im2col(cv, x + n0 * in_len, m, cv->cols);
        /* per sample, like forward: dY_j (out x P) is where dy has it */
        for (size_t j = 0; j < m; j++) {
            const float *dyj = dy + (n0 + j) * out_len;
            for (size_t o = 0; o < cv->out && db; o++)
                db[o] += sum_floats(dyj + o * P, P);
            pswk_gemm(false, true, cv->out, cv->kk, P, 1.0f, dyj, P, cv->cols + j * P, m * P, 1.0f,
                      dw, cv->kk);
            if (dx)
                pswk_gemm(true, false, cv->kk, P, cv->out, 1.0f, w, cv->kk, dyj, P, 0.0f,
                          cv->dcols + j * P, m * P);
        }
        if (dx)
            col2im(cv, cv->dcols, m, dx + n0 * in_len);
    }
    if (cv->has_bias)
        ps_pass_ready_table(p, cv->bias);
    ps_pass_ready_table(p, cv->w);
}

static void conv_destroy(ps_layer_t *l)
{
    conv_t *cv = (conv_t *)l;
    free(cv->cols);
    free(cv->dcols);
    free(cv);
}

static const ps_layer_ops_t conv_ops = {conv_forward, conv_backward, NULL, conv_destroy};

ps_layer_t *pswk_conv2d_new(const ps_layer_desc_t *desc, ps_shape_t in, ps_tables_t *t,
                            size_t max_batch, ps_errbuf_t *err)
{
    char s[64];
    size_t out = (size_t)desc->arg[0], k = (size_t)desc->arg[1], stride = (size_t)desc->arg[2],
           pad = (size_t)desc->arg[3];
    if (in.kind != PS_SHAPE_IMG) {
        ps_err_set(err, PS_EINVAL, "needs an image (channels x rows x columns), got %s",
                   ps_shape_str(in, s, sizeof s));
        return NULL;
    }
    if (in.d[1] + 2 * pad < k || in.d[2] + 2 * pad < k) {
        ps_err_set(err, PS_EINVAL, "kernel %zu does not fit input %s with pad %zu", k,
                   ps_shape_str(in, s, sizeof s), pad);
        return NULL;
    }
    if (k == 0 || stride == 0) {
        ps_err_set(err, PS_EINVAL, "k and stride must be >= 1");
        return NULL;
    }
    uint64_t cols = in.d[0], f[4] = {k, k, (in.d[1] + 2 * pad - k) / stride + 1,
                                     (in.d[2] + 2 * pad - k) / stride + 1};
    for (int i = 0; i < 4; i++) /* saturating: absurd pads must not wrap around */
        cols = __builtin_mul_overflow(cols, f[i], &cols) ? UINT64_MAX : cols;
    if (cols > ((uint64_t)1 << 28)) {
        ps_err_set(err, PS_EINVAL, "more than 2^28 im2col values per sample on %s",
                   ps_shape_str(in, s, sizeof s));
        return NULL;
    }
    conv_t *cv = ps_xcalloc(1, sizeof *cv);
    cv->base.ops = &conv_ops;
    cv->c = in.d[0], cv->h = in.d[1], cv->wd = in.d[2];
    cv->k = k, cv->stride = stride, cv->pad = pad, cv->out = out;
    cv->ho = (cv->h + 2 * pad - k) / stride + 1;
    cv->wo = (cv->wd + 2 * pad - k) / stride + 1;
    cv->kk = cv->c * k * k;
    cv->has_bias = desc->arg[4] != 0;
    cv->base.out = (ps_shape_t){PS_SHAPE_IMG, {(uint32_t)out, (uint32_t)cv->ho, (uint32_t)cv->wo}};
    size_t P = cv->ho * cv->wo, per_sample = cv->kk * P;
    cv->chunk = conv_chunk_floats / per_sample;
    cv->chunk = cv->chunk < 1 ? 1 : cv->chunk > max_batch ? max_batch : cv->chunk;
    cv->cols = pswk_scratch(&cv->base, cv->kk * cv->chunk * P * sizeof(float));
    cv->dcols = pswk_scratch(&cv->base, cv->kk * cv->chunk * P * sizeof(float));

    char name[PS_TABLE_NAME_MAX];
    uint64_t wshape[4] = {out, cv->c, k, k}, bshape[1] = {out};
    ps_init_t wi = ps_layer_torch_init(cv->kk), bi = wi;
    if (desc->init_std > 0) {
        wi = (ps_init_t){PS_INIT_NORMAL, desc->init_std};
        bi = (ps_init_t){PS_INIT_ZERO, 0};
    }
    cv->w = ps_tables_add(t, pswk_table_name(name, desc->name, "W"), 4, wshape, wi);
    if (cv->has_bias)
        cv->bias = ps_tables_add(t, pswk_table_name(name, desc->name, "b"), 1, bshape, bi);
    return &cv->base;
}

typedef struct {
    ps_layer_t base;
    bool is_max;
    size_t c, h, w, k, stride, ho, wo;
    uint32_t *argmax; /* max_batch x out: the input offset (in its channel) of each maximum */
} pool_t;

/* The first maximum of the window wins, as in PyTorch on the CPU. */
static void maxpool_plane(const pool_t *pl, const float *img, float *y, uint32_t *arg)
{
    for (size_t oh = 0; oh < pl->ho; oh++)
        for (size_t ow = 0; ow < pl->wo; ow++) {
            size_t top = oh * pl->stride * pl->w + ow * pl->stride, best = top;
            float m = img[top];
            for (size_t i = 0; i < pl->k; i++) {
                const float *r = img + top + i * pl->w;
                for (size_t j = 0; j < pl->k; j++) { /* selects, not a branch that mispredicts */
                    bool gt = r[j] > m;
                    m = gt ? r[j] : m;
                    best = gt ? top + i * pl->w + j : best;
                }
            }
            y[oh * pl->wo + ow] = m;
            arg[oh * pl->wo + ow] = (uint32_t)best;
        }
}

/* maxpool_plane for the common 2x2 window of stride 2: the same
 * comparisons in the same order (so the same maxima and arguments, ties
 * to the first), but each output independent of its neighbours, so the
 * loop vectorises instead of running one dependent select after another. */
PSWK_VECTOR_CLONES
static void maxpool2_plane(const pool_t *pl, const float *img, float *y, uint32_t *arg)
{
    size_t w = pl->w, wo = pl->wo;
    for (size_t oh = 0; oh < pl->ho; oh++) {
        const float *r0 = img + 2 * oh * w, *r1 = r0 + w;
        float *yr = y + oh * wo;
        uint32_t *ar = arg + oh * wo, top_row = (uint32_t)(2 * oh * w);
        for (size_t ow = 0; ow < wo; ow++) {
            float a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];
            uint32_t top = top_row + (uint32_t)(2 * ow), best = top;
            float m = a;
            best = b > m ? top + 1 : best;
            m = b > m ? b : m;
            best = c > m ? top + (uint32_t)w : best;
            m = c > m ? c : m;
            best = d > m ? top + (uint32_t)w + 1 : best;
            m = d > m ? d : m;
            yr[ow] = m;
            ar[ow] = best;
        }
    }
}

static void avgpool_plane(const pool_t *pl, const float *img, float *y)
{
    float inv = 1.0f / (float)(pl->k * pl->k);
    for (size_t oh = 0; oh < pl->ho; oh++)
        for (size_t ow = 0; ow < pl->wo; ow++) {
            const float *r = img + oh * pl->stride * pl->w + ow * pl->stride;
            float acc = 0;
            for (size_t i = 0; i < pl->k; i++)
                for (size_t j = 0; j < pl->k; j++)
                    acc += r[i * pl->w + j];
            y[oh * pl->wo + ow] = acc * inv;
        }
}

static int pool_forward(ps_layer_t *l, const float *x, float *y, size_t b, ps_pass_t *p)
{
    pool_t *pl = (pool_t *)l;
    (void)p;
    size_t in = pl->h * pl->w, out = pl->ho * pl->wo;
    bool two_by_two = pl->k == 2 && pl->stride == 2;
    for (size_t n = 0; n < b * pl->c; n++) {
        if (pl->is_max && two_by_two)
            maxpool2_plane(pl, x + n * in, y + n * out, pl->argmax + n * out);
        else if (pl->is_max)
            maxpool_plane(pl, x + n * in, y + n * out, pl->argmax + n * out);
        else
            avgpool_plane(pl, x + n * in, y + n * out);
    }
    return 0;
}

/* One plane's gradient: each output's to the input it took. */
static void maxpool_plane_backward(const pool_t *pl, const float *dy, const uint32_t *arg,
                                   float *img)
{
    for (size_t o = 0; o < pl->ho * pl->wo; o++)
        img[arg[o]] += dy[o];
}

/* One plane's gradient: each output's, shared by its window. */
static void avgpool_plane_backward(const pool_t *pl, const float *dy, float *img)
{
    float inv = 1.0f / (float)(pl->k * pl->k);
    for (size_t oh = 0; oh < pl->ho; oh++)
        for (size_t ow = 0; ow < pl->wo; ow++) {
            float g = dy[oh * pl->wo + ow] * inv;
            float *r = img + oh * pl->stride * pl->w + ow * pl->stride;
            for (size_t i = 0; i < pl->k; i++)
                for (size_t j = 0; j < pl->k; j++)
                    r[i * pl->w + j] += g;
        }
}

static void pool_backward(ps_layer_t *l, const float *x, const float *y, const float *dy, float *dx,
                          size_t b, ps_pass_t *p)
{
    pool_t *pl = (pool_t *)l;
    (void)x, (void)y, (void)p;
    if (!dx)
        return;
    memset(dx, 0, b * ps_shape_len(l->in) * sizeof(float));
    for (size_t n = 0; n < b * pl->c; n++) {
        size_t o = n * pl->ho * pl->wo;
        if (pl->is_max)
            maxpool_plane_backward(pl, dy + o, pl->argmax + o, dx + n * pl->h * pl->w);
        else
            avgpool_plane_backward(pl, dy + o, dx + n * pl->h * pl->w);
    }
}

static void pool_destroy(ps_layer_t *l)
{
    free(((pool_t *)l)->argmax);
    free(l);
}

static const ps_layer_ops_t pool_ops = {pool_forward, pool_backward, NULL, pool_destroy};

ps_layer_t *pswk_pool_new(const ps_layer_desc_t *desc, ps_shape_t in, ps_tables_t *t,
                          size_t max_batch, ps_errbuf_t *err)
{
    char s[64];
    (void)t;
    size_t k = (size_t)desc->arg[0], stride = desc->arg[1] > 0 ? (size_t)desc->arg[1] : k;
    if (in.kind != PS_SHAPE_IMG) {
        ps_err_set(err, PS_EINVAL, "needs an image (channels x rows x columns), got %s",
                   ps_shape_str(in, s, sizeof s));
        return NULL;
    }
    if (in.d[1] < k || in.d[2] < k) {
        ps_err_set(err, PS_EINVAL, "window %zu does not fit input %s", k,
                   ps_shape_str(in, s, sizeof s));
        return NULL;
    }
    pool_t *pl = ps_xcalloc(1, sizeof *pl);
    pl->base.ops = &pool_ops;
    pl->is_max = desc->kind == PS_LAYER_MAXPOOL;
    pl->c = in.d[0], pl->h = in.d[1], pl->w = in.d[2], pl->k = k, pl->stride = stride;
    pl->ho = (pl->h - k) / stride + 1;
    pl->wo = (pl->w - k) / stride + 1;
    pl->base.out = (ps_shape_t){PS_SHAPE_IMG, {in.d[0], (uint32_t)pl->ho, (uint32_t)pl->wo}};
    if (pl->is_max)
        pl->argmax =
            pswk_scratch(&pl->base, max_batch * ps_shape_len(pl->base.out) * sizeof(uint32_t));
    return &pl->base;
}

/* Flatten keeps the floats where they are (C order, as torch.flatten). */
static int flatten_forward(ps_layer_t *l, const float *x, float *y, size_t b, ps_pass_t *p)
{
    (void)p;
    memcpy(y, x, b * ps_shape_len(l->in) * sizeof(float));
    return 0;
}

static void flatten_backward(ps_layer_t *l, const float *x, const float *y, const float *dy,
                             float *dx, size_t b, ps_pass_t *p)
{
    (void)x, (void)y, (void)p;
    if (dx)
        memcpy(dx, dy, b * ps_shape_len(l->in) * sizeof(float));
}

static void flatten_destroy(ps_layer_t *l)
{
    free(l);
}

static const ps_layer_ops_t flatten_ops = {flatten_forward, flatten_backward, NULL,
                                           flatten_destroy};

ps_layer_t *pswk_flatten_new(const ps_layer_desc_t *desc, ps_shape_t in, ps_tables_t *t,
                             size_t max_batch, ps_errbuf_t *err)
{
    (void)desc, (void)t, (void)max_batch;
    if (in.kind == PS_SHAPE_TOKENS) {
        ps_err_set(err, PS_EINVAL, "cannot flatten tokens: embed them first");
        return NULL;
    }
    ps_layer_t *l = ps_xcalloc(1, sizeof *l);
    l->ops = &flatten_ops;
    l->out = (ps_shape_t){PS_SHAPE_VEC, {(uint32_t)ps_shape_len(in), 0, 0}};
    return l;
}
