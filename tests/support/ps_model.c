/* ps_model.c - dense network forward/backward with cblas_sgemm (the
 * retired trainer model, kept as a reference for tests).
 * Row-major throughout: activations are batch x width, W is in x out. */
#include "ps_model.h"

#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_metric.h"
#include "ps_rng.h"

const char *const ps_act_names[] = {PS_ACT_MAP(PS_ENUM_NAME) NULL};
const char *const ps_head_names[] = {PS_HEAD_MAP(PS_ENUM_NAME) NULL};

/* A slice: rows [row0, row0 + rows) of W_l (table 2l), or all of b_l
 * (table 2l + 1, rows 0). */
typedef struct {
    uint32_t table;
    uint64_t row0, rows;
} slice_t;

struct ps_model {
    ps_model_spec_t spec;
    size_t max_batch;
    slice_t *slices;
    uint32_t n_slices;
    uint32_t first_slice[PS_MODEL_MAX_LAYERS]; /* W_l's first block; b_l follows its last */
    uint32_t n_blocks[PS_MODEL_MAX_LAYERS];
    float *params[2 * PS_MODEL_MAX_LAYERS];
    float *grads[2 * PS_MODEL_MAX_LAYERS];
    float *z[PS_MODEL_MAX_LAYERS];  /* pre-activations, batch x dims[l+1] */
    float *a[PS_MODEL_MAX_LAYERS];  /* activations of hidden layers */
    float *dz, *dz_prev;            /* batch x max width */
};

static size_t max_width(const ps_model_spec_t *s)
{
    size_t w = 0;
    for (int l = 0; l <= s->n_layers; l++)
        if (s->dims[l] > w)
            w = s->dims[l];
    return w;
}

/* Row blocks of nearly equal size (they differ by at most one row), each
 * of at most about slice_elems floats but never less than a row. */
static void make_slices(ps_model_t *m)
{
    const ps_model_spec_t *s = &m->spec;
    size_t cap = 0;
    for (int l = 0; l < s->n_layers; l++) {
        size_t k = s->dims[l], o = s->dims[l + 1], nb = 1;
        if (s->slice_elems && k * o > s->slice_elems) {
            size_t rows = s->slice_elems / o ? s->slice_elems / o : 1;
            nb = (k + rows - 1) / rows;
        }
        m->first_slice[l] = (uint32_t)cap;
        m->n_blocks[l] = (uint32_t)nb;
        cap += nb + 1;
    }
    m->slices = ps_xcalloc(cap, sizeof *m->slices);
    for (int l = 0; l < s->n_layers; l++) {
        size_t k = s->dims[l], nb = m->n_blocks[l], row = 0;
        slice_t *sl = &m->slices[m->first_slice[l]];
        for (size_t i = 0; i < nb; i++) {
            size_t rows = k / nb + (i < k % nb);
            sl[i] = (slice_t){(uint32_t)(2 * l), row, rows};
            row += rows;
        }
        sl[nb] = (slice_t){(uint32_t)(2 * l + 1), 0, 0};
    }
    m->n_slices = (uint32_t)cap;
}

ps_model_t *ps_model_new(const ps_model_spec_t *spec, size_t max_batch, ps_errbuf_t *err)
{
    if (spec->n_layers < 1 || spec->n_layers > PS_MODEL_MAX_LAYERS || max_batch == 0) {
        ps_err_set(err, PS_EINVAL, "model needs 1 to %d layers", PS_MODEL_MAX_LAYERS);
        return NULL;
    }
    for (int l = 0; l <= spec->n_layers; l++) {
        if (spec->dims[l] == 0 || spec->dims[l] > (1u << 24)) {
            ps_err_set(err, PS_EINVAL, "layer width %zu is out of range", spec->dims[l]);
            return NULL;
        }
    }
    size_t out = spec->dims[spec->n_layers];
    if (spec->head == PS_HEAD_SIGMOID_BCE && out != 1) {
        ps_err_set(err, PS_EINVAL, "a sigmoid head has one output, not %zu", out);
        return NULL;
    }
    if (spec->head == PS_HEAD_SOFTMAX_CE && out < 2) {
        ps_err_set(err, PS_EINVAL, "a softmax head needs >= 2 classes");
        return NULL;
    }
    ps_model_t *m = ps_xcalloc(1, sizeof *m);
    m->spec = *spec;
    m->max_batch = max_batch;
    for (int l = 0; l < spec->n_layers; l++) {
        size_t in = spec->dims[l], o = spec->dims[l + 1];
        m->params[2 * l] = ps_xcalloc(in * o, sizeof(float));
        m->grads[2 * l] = ps_xcalloc(in * o, sizeof(float));
        m->params[2 * l + 1] = ps_xcalloc(o, sizeof(float));
        m->grads[2 * l + 1] = ps_xcalloc(o, sizeof(float));
        m->z[l] = ps_xcalloc(max_batch * o, sizeof(float));
        m->a[l] = ps_xcalloc(max_batch * o, sizeof(float));
    }
    m->dz = ps_xcalloc(max_batch * max_width(spec), sizeof(float));
    m->dz_prev = ps_xcalloc(max_batch * max_width(spec), sizeof(float));
    make_slices(m);
    return m;
}

void ps_model_destroy(ps_model_t **mp)
{
    ps_model_t *m = *mp;
    if (!m)
        return;
    for (int i = 0; i < 2 * m->spec.n_layers; i++) {
        free(m->params[i]);
        free(m->grads[i]);
    }
    for (int l = 0; l < m->spec.n_layers; l++) {
        free(m->z[l]);
        free(m->a[l]);
    }
    free(m->dz);
    free(m->dz_prev);
    free(m->slices);
    free(m);
    *mp = NULL;
}

uint32_t ps_model_n_tables(const ps_model_t *m) { return 2 * (uint32_t)m->spec.n_layers; }
float *ps_model_params(ps_model_t *m, uint32_t id) { return m->params[id]; }
float *ps_model_grads(ps_model_t *m, uint32_t id) { return m->grads[id]; }
int ps_model_is_classifier(const ps_model_t *m)
{
    return m->spec.head != PS_HEAD_MSE || m->spec.dims[m->spec.n_layers] > 1;
}

const char *ps_model_table_name(const ps_model_t *m, uint32_t id, char *buf, size_t cap)
{
    (void)m;
    snprintf(buf, cap, "dense%u.%s", id / 2 + 1, id % 2 ? "b" : "W");
    return buf;
}

int ps_model_table_shape(const ps_model_t *m, uint32_t id, uint64_t shape[2])
{
    size_t l = id / 2;
    if (id % 2) {
        shape[0] = m->spec.dims[l + 1];
        return 1;
    }
    shape[0] = m->spec.dims[l];
    shape[1] = m->spec.dims[l + 1];
    return 2;
}

uint64_t ps_model_table_len(const ps_model_t *m, uint32_t id)
{
    uint64_t shape[2];
    return ps_model_table_shape(m, id, shape) == 1 ? shape[0] : shape[0] * shape[1];
}

uint64_t ps_model_n_params(const ps_model_t *m)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < ps_model_n_tables(m); i++)
        n += ps_model_table_len(m, i);
    return n;
}

uint32_t ps_model_n_slices(const ps_model_t *m) { return m->n_slices; }

static bool is_block(const ps_model_t *m, uint32_t slice)
{
    return m->slices[slice].table % 2 == 0 && m->n_blocks[m->slices[slice].table / 2] > 1;
}

const char *ps_model_slice_name(const ps_model_t *m, uint32_t slice, char *buf, size_t cap)
{
    const slice_t *sl = &m->slices[slice];
    ps_model_table_name(m, sl->table, buf, cap);
    if (is_block(m, slice)) {
        size_t len = strlen(buf);
        snprintf(buf + len, cap - len, "[%llu:%llu]", (unsigned long long)sl->row0,
                 (unsigned long long)(sl->row0 + sl->rows));
    }
    return buf;
}

int ps_model_slice_shape(const ps_model_t *m, uint32_t slice, uint64_t shape[2])
{
    const slice_t *sl = &m->slices[slice];
    int ndim = ps_model_table_shape(m, sl->table, shape);
    if (ndim == 2)
        shape[0] = sl->rows;
    return ndim;
}

uint64_t ps_model_slice_len(const ps_model_t *m, uint32_t slice)
{
    uint64_t shape[2];
    return ps_model_slice_shape(m, slice, shape) == 1 ? shape[0] : shape[0] * shape[1];
}

static size_t slice_offset(const ps_model_t *m, uint32_t slice)
{
    const slice_t *sl = &m->slices[slice];
    return sl->rows ? sl->row0 * m->spec.dims[sl->table / 2 + 1] : 0;
}

float *ps_model_slice_params(ps_model_t *m, uint32_t slice)
{
    return m->params[m->slices[slice].table] + slice_offset(m, slice);
}

float *ps_model_slice_grads(ps_model_t *m, uint32_t slice)
{
    return m->grads[m->slices[slice].table] + slice_offset(m, slice);
}

void ps_model_init_params(ps_model_t *m, uint64_t seed)
{
    for (int l = 0; l < m->spec.n_layers; l++) {
        size_t in = m->spec.dims[l], out = m->spec.dims[l + 1];
        bool relu_follows = l + 1 < m->spec.n_layers && m->spec.act == PS_ACT_RELU;
        double limit = relu_follows ? sqrt(6.0 / (double)in) : sqrt(6.0 / (double)(in + out));
        ps_rng_t rng;
        ps_rng_seed(&rng, ps_rng_mix(seed, (uint64_t)(2 * l)));
        for (size_t i = 0; i < in * out; i++)
            m->params[2 * l][i] = (float)((2.0 * ps_rng_uniform(&rng) - 1.0) * limit);
        memset(m->params[2 * l + 1], 0, out * sizeof(float));
    }
}

static void activate(ps_act_t act, const float *z, float *a, size_t n)
{
    switch (act) {
    case PS_ACT_RELU:
        for (size_t i = 0; i < n; i++)
            a[i] = z[i] > 0 ? z[i] : 0;
        break;
    case PS_ACT_TANH:
        for (size_t i = 0; i < n; i++)
            a[i] = tanhf(z[i]);
        break;
    case PS_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++)
            a[i] = 1.0f / (1.0f + expf(-z[i]));
        break;
    }
}

/* dz *= act'(z), using the stored activation a = act(z). */
static void activate_backward(ps_act_t act, const float *z, const float *a, float *dz, size_t n)
{
    switch (act) {
    case PS_ACT_RELU:
        for (size_t i = 0; i < n; i++)
            dz[i] = z[i] > 0 ? dz[i] : 0;
        break;
    case PS_ACT_TANH:
        for (size_t i = 0; i < n; i++)
            dz[i] *= 1.0f - a[i] * a[i];
        break;
    case PS_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++)
            dz[i] *= a[i] * (1.0f - a[i]);
        break;
    }
}

/* z[l] = input W_l + b_l for every layer; hidden layers activated into a[l].
 * W_l is applied block by block (the sum over its row blocks), each block
 * once need says its values are in. -1 if need abandoned the pass. */
static int forward(ps_model_t *m, const float *x, size_t b, ps_params_needed_fn need, void *ctx)
{
    const float *in = x;
    for (int l = 0; l < m->spec.n_layers; l++) {
        size_t k = m->spec.dims[l], o = m->spec.dims[l + 1];
        uint32_t s0 = m->first_slice[l], nb = m->n_blocks[l];
        float *z = m->z[l];
        if (need && need(ctx, s0 + nb) != 0)
            return -1;
        for (size_t i = 0; i < b; i++)
            memcpy(z + i * o, m->params[2 * l + 1], o * sizeof(float));
        for (uint32_t s = s0; s < s0 + nb; s++) {
            const slice_t *sl = &m->slices[s];
            if (need && need(ctx, s) != 0)
                return -1;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)b, (int)o, (int)sl->rows,
                        1.0f, in + sl->row0, (int)k, m->params[2 * l] + sl->row0 * o, (int)o, 1.0f,
                        z, (int)o);
        }
        if (l + 1 < m->spec.n_layers) {
            activate(m->spec.act, z, m->a[l], b * o);
            in = m->a[l];
        }
    }
    return 0;
}

static float head_target(float y, size_t j, size_t out)
{
    return out == 1 ? y : (float)((size_t)y == j);
}

/* Loss of the last layer's z for b samples; if dz is not NULL also the
 * gradient of the summed loss with respect to z. */
/* The loss of one sample's outputs zi against label y, and its gradient
 * into di (if not NULL), for each head. */
static double softmax_ce(const float *zi, float y, size_t out, float *di)
{
    float mx = zi[0];
    for (size_t j = 1; j < out; j++)
        mx = zi[j] > mx ? zi[j] : mx;
    double sum = 0;
    for (size_t j = 0; j < out; j++)
        sum += exp((double)(zi[j] - mx));
    size_t c = (size_t)y;
    for (size_t j = 0; di && j < out; j++)
        di[j] = (float)(exp((double)(zi[j] - mx)) / sum) - (j == c ? 1.0f : 0.0f);
    return log(sum) - (double)(zi[c] - mx);
}

static double sigmoid_bce(const float *zi, float y, float *di)
{
    double t = y > 0 ? 1.0 : 0.0, zz = zi[0];
    if (di)
        di[0] = (float)(1.0 / (1.0 + exp(-zz)) - t);
    return (zz > 0 ? zz : 0) - zz * t + log1p(exp(-fabs(zz)));
}

static double mse(const float *zi, float y, size_t out, float *di)
{
    double loss = 0;
    for (size_t j = 0; j < out; j++) {
        float e = zi[j] - head_target(y, j, out);
        loss += (double)e * e / (double)out;
        if (di)
            di[j] = 2.0f * e / (float)out;
    }
    return loss;
}

static double head_loss(const ps_model_t *m, const float *y, size_t b, float *dz)
{
    size_t out = m->spec.dims[m->spec.n_layers];
    const float *z = m->z[m->spec.n_layers - 1];
    double loss = 0;
    for (size_t i = 0; i < b; i++) {
        const float *zi = z + i * out;
        float *di = dz ? dz + i * out : NULL;
        switch (m->spec.head) {
        case PS_HEAD_SOFTMAX_CE:
            loss += softmax_ce(zi, y[i], out, di);
            break;
        case PS_HEAD_SIGMOID_BCE:
            loss += sigmoid_bce(zi, y[i], di);
            break;
        case PS_HEAD_MSE:
            loss += mse(zi, y[i], out, di);
            break;
        }
    }
    return loss;
}

double ps_model_loss(ps_model_t *m, const float *x, const float *y, size_t b)
{
    if (b == 0)
        return 0;
    forward(m, x, b, NULL, NULL);
    return head_loss(m, y, b, NULL);
}

double ps_model_train_batch(ps_model_t *m, const float *x, const float *y, size_t b,
                            ps_params_needed_fn need, ps_grad_ready_fn ready, void *ctx)
{
    int L = m->spec.n_layers;
    if (b == 0) {
        for (int l = L - 1; l >= 0; l--) {
            uint32_t s0 = m->first_slice[l], nb = m->n_blocks[l];
            memset(m->grads[2 * l], 0, ps_model_table_len(m, (uint32_t)(2 * l)) * sizeof(float));
            memset(m->grads[2 * l + 1], 0, m->spec.dims[l + 1] * sizeof(float));
            for (uint32_t i = 0; ready && i <= nb; i++)
                ready(ctx, i == 0 ? s0 + nb : s0 + i - 1);
        }
        return 0;
    }
    if (forward(m, x, b, need, ctx) != 0)
        return NAN;
    double loss = head_loss(m, y, b, m->dz);
    for (int l = L - 1; l >= 0; l--) {
        size_t k = m->spec.dims[l], o = m->spec.dims[l + 1];
        uint32_t s0 = m->first_slice[l], nb = m->n_blocks[l];
        const float *in = l > 0 ? m->a[l - 1] : x;
        /* db = column sums of dz, then dW = in^T dz block by block, each
         * handed over as soon as it is final */
        float *db = m->grads[2 * l + 1];
        memset(db, 0, o * sizeof(float));
        for (size_t i = 0; i < b; i++)
            for (size_t j = 0; j < o; j++)
                db[j] += m->dz[i * o + j];
        if (ready)
            ready(ctx, s0 + nb);
        for (uint32_t s = s0; s < s0 + nb; s++) {
            const slice_t *sl = &m->slices[s];
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)sl->rows, (int)o, (int)b,
                        1.0f, in + sl->row0, (int)k, m->dz, (int)o, 0.0f,
                        m->grads[2 * l] + sl->row0 * o, (int)o);
            if (ready)
                ready(ctx, s);
        }
        if (l > 0) {
            /* d(in) = dz W^T, then through the activation. W is only read:
             * a pushed slice's new values land during need, in forward. */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)b, (int)k, (int)o, 1.0f,
                        m->dz, (int)o, m->params[2 * l], (int)o, 0.0f, m->dz_prev, (int)k);
            activate_backward(m->spec.act, m->z[l - 1], m->a[l - 1], m->dz_prev, b * k);
            float *t = m->dz;
            m->dz = m->dz_prev;
            m->dz_prev = t;
        }
    }
    return loss;
}

/* The index of the largest of z[0..n). */
static size_t argmax(const float *z, size_t n)
{
    size_t best = 0;
    for (size_t j = 1; j < n; j++)
        if (z[j] > z[best])
            best = j;
    return best;
}

typedef struct {
    size_t correct;
    double abs_err;
    float *scores; /* binary heads: every sample's logit, for the AUC */
} tally_t;

/* Scores the head's outputs z of b samples starting at start. */
static void score_batch(const ps_model_t *m, const float *z, const float *y, size_t start,
                        size_t b, tally_t *t)
{
    size_t n_out = m->spec.dims[m->spec.n_layers];
    for (size_t i = 0; i < b; i++) {
        const float *zi = z + i * n_out;
        if (t->scores) {
            t->correct += (zi[0] >= 0) == (y[i] > 0);
            t->scores[start + i] = zi[0];
        } else if (n_out == 1) {
            t->abs_err += fabs((double)zi[0] - y[i]);
        } else {
            t->correct += argmax(zi, n_out) == (size_t)y[i];
        }
    }
}

void ps_model_evaluate(ps_model_t *m, const ps_dataset_t *ds, ps_eval_t *out)
{
    size_t n_out = m->spec.dims[m->spec.n_layers];
    double loss = 0;
    memset(out, 0, sizeof *out);
    bool binary = n_out == 1 && m->spec.head == PS_HEAD_SIGMOID_BCE;
    tally_t t = {0, 0, binary && ds->n ? ps_xmalloc(ds->n * sizeof *t.scores) : NULL};
    for (size_t start = 0; start < ds->n; start += m->max_batch) {
        size_t b = ds->n - start < m->max_batch ? ds->n - start : m->max_batch;
        const float *x = ds->x + start * ds->d, *y = ds->y + start;
        loss += ps_model_loss(m, x, y, b);
        score_batch(m, m->z[m->spec.n_layers - 1], y, start, b, &t);
    }
    out->n = ds->n;
    if (ds->n) {
        out->loss = loss / (double)ds->n;
        out->accuracy = (double)t.correct / (double)ds->n;
        out->mae = t.abs_err / (double)ds->n;
    }
    if (t.scores) {
        out->auc = ps_metric_auc(t.scores, ds->y, ds->n);
        free(t.scores);
    }
}
