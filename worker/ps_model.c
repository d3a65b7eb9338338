/* ps_model.c - dense network forward/backward with cblas_sgemm.
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

struct ps_model {
    ps_model_spec_t spec;
    size_t max_batch;
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

/* z[l] = input W_l + b_l for every layer; hidden layers activated into a[l]. */
static void forward(ps_model_t *m, const float *x, size_t b)
{
    const float *in = x;
    for (int l = 0; l < m->spec.n_layers; l++) {
        size_t k = m->spec.dims[l], o = m->spec.dims[l + 1];
        float *z = m->z[l];
        for (size_t i = 0; i < b; i++)
            memcpy(z + i * o, m->params[2 * l + 1], o * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)b, (int)o, (int)k, 1.0f, in,
                    (int)k, m->params[2 * l], (int)o, 1.0f, z, (int)o);
        if (l + 1 < m->spec.n_layers) {
            activate(m->spec.act, z, m->a[l], b * o);
            in = m->a[l];
        }
    }
}

static float head_target(float y, size_t j, size_t out)
{
    return out == 1 ? y : (float)((size_t)y == j);
}

/* Loss of the last layer's z for b samples; if dz is not NULL also the
 * gradient of the summed loss with respect to z. */
static double head_loss(const ps_model_t *m, const float *y, size_t b, float *dz)
{
    size_t out = m->spec.dims[m->spec.n_layers];
    const float *z = m->z[m->spec.n_layers - 1];
    double loss = 0;
    for (size_t i = 0; i < b; i++) {
        const float *zi = z + i * out;
        float *di = dz ? dz + i * out : NULL;
        switch (m->spec.head) {
        case PS_HEAD_SOFTMAX_CE: {
            float mx = zi[0];
            for (size_t j = 1; j < out; j++)
                mx = zi[j] > mx ? zi[j] : mx;
            double sum = 0;
            for (size_t j = 0; j < out; j++)
                sum += exp((double)(zi[j] - mx));
            size_t c = (size_t)y[i];
            loss += log(sum) - (double)(zi[c] - mx);
            for (size_t j = 0; di && j < out; j++)
                di[j] = (float)(exp((double)(zi[j] - mx)) / sum) - (j == c ? 1.0f : 0.0f);
            break;
        }
        case PS_HEAD_SIGMOID_BCE: {
            double t = y[i] > 0 ? 1.0 : 0.0, zz = zi[0];
            loss += (zz > 0 ? zz : 0) - zz * t + log1p(exp(-fabs(zz)));
            if (di)
                di[0] = (float)(1.0 / (1.0 + exp(-zz)) - t);
            break;
        }
        case PS_HEAD_MSE:
            for (size_t j = 0; j < out; j++) {
                float e = zi[j] - head_target(y[i], j, out);
                loss += (double)e * e / (double)out;
                if (di)
                    di[j] = 2.0f * e / (float)out;
            }
            break;
        }
    }
    return loss;
}

double ps_model_loss(ps_model_t *m, const float *x, const float *y, size_t b)
{
    if (b == 0)
        return 0;
    forward(m, x, b);
    return head_loss(m, y, b, NULL);
}

double ps_model_train_batch(ps_model_t *m, const float *x, const float *y, size_t b,
                            ps_grad_ready_fn ready, void *ctx)
{
    int L = m->spec.n_layers;
    if (b == 0) {
        for (int t = 2 * L - 1; t >= 0; t--) {
            memset(m->grads[t], 0, ps_model_table_len(m, (uint32_t)t) * sizeof(float));
            if (ready)
                ready(ctx, (uint32_t)t);
        }
        return 0;
    }
    forward(m, x, b);
    double loss = head_loss(m, y, b, m->dz);
    for (int l = L - 1; l >= 0; l--) {
        size_t k = m->spec.dims[l], o = m->spec.dims[l + 1];
        const float *in = l > 0 ? m->a[l - 1] : x;
        /* dW = in^T dz ; db = column sums of dz */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)k, (int)o, (int)b, 1.0f, in,
                    (int)k, m->dz, (int)o, 0.0f, m->grads[2 * l], (int)o);
        float *db = m->grads[2 * l + 1];
        memset(db, 0, o * sizeof(float));
        for (size_t i = 0; i < b; i++)
            for (size_t j = 0; j < o; j++)
                db[j] += m->dz[i * o + j];
        if (l > 0) {
            /* d(in) = dz W^T, then through the activation */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)b, (int)k, (int)o, 1.0f,
                        m->dz, (int)o, m->params[2 * l], (int)o, 0.0f, m->dz_prev, (int)k);
            activate_backward(m->spec.act, m->z[l - 1], m->a[l - 1], m->dz_prev, b * k);
            float *t = m->dz;
            m->dz = m->dz_prev;
            m->dz_prev = t;
        }
        if (ready) {
            ready(ctx, (uint32_t)(2 * l));
            ready(ctx, (uint32_t)(2 * l + 1));
        }
    }
    return loss;
}

void ps_model_evaluate(ps_model_t *m, const ps_dataset_t *ds, ps_eval_t *out)
{
    size_t n_out = m->spec.dims[m->spec.n_layers];
    double loss = 0, abs_err = 0;
    size_t correct = 0;
    memset(out, 0, sizeof *out);
    bool binary = n_out == 1 && m->spec.head == PS_HEAD_SIGMOID_BCE;
    float *scores = binary && ds->n ? ps_xmalloc(ds->n * sizeof *scores) : NULL;
    for (size_t start = 0; start < ds->n; start += m->max_batch) {
        size_t b = ds->n - start < m->max_batch ? ds->n - start : m->max_batch;
        const float *x = ds->x + start * ds->d, *y = ds->y + start;
        loss += ps_model_loss(m, x, y, b);
        const float *z = m->z[m->spec.n_layers - 1];
        for (size_t i = 0; i < b; i++) {
            const float *zi = z + i * n_out;
            if (binary) {
                correct += (zi[0] >= 0) == (y[i] > 0);
                scores[start + i] = zi[0];
            } else if (n_out == 1) {
                abs_err += fabs((double)zi[0] - y[i]);
            } else {
                size_t best = 0;
                for (size_t j = 1; j < n_out; j++)
                    if (zi[j] > zi[best])
                        best = j;
                correct += best == (size_t)y[i];
            }
        }
    }
    out->n = ds->n;
    if (ds->n) {
        out->loss = loss / (double)ds->n;
        out->accuracy = (double)correct / (double)ds->n;
        out->mae = abs_err / (double)ds->n;
    }
    if (scores) {
        out->auc = ps_metric_auc(scores, ds->y, ds->n);
        free(scores);
    }
}
