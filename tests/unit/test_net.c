/* test_net.c - ps_net's contract with the trainer: slices tile the tables,
 * forward asks for each slice before reading it and backward announces
 * each exactly once when final (ps_model's order for an MLP), a batch split
 * over workers sums to the whole batch's gradients (dropout included), an
 * MLP spec computes what ps_model computes, a sibling net keeps its own
 * activations on its owner's tables, metrics, data checks, and PyTorch's
 * default init. Seeded; seeds are printed on failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_model.h"
#include "ps_net.h"
#include "ps_rng.h"

#define SEED 777
#define MAXB 8

static const char *CNN_IN = "2x8x8";
static const char *CNN = "conv2d(4,3,pad=1) relu maxpool(2) conv2d(6,3,stride=2,pad=1) relu "
                         "flatten dropout(0.3) dense(12) relu dense(5) cross_entropy";
static const char *RES_IN = "12";
static const char *RES = "dense(12) residual[ layernorm dense(12) gelu ] residual[ dropout(0.2) "
                         "dense(12) ] dense(4) cross_entropy";

static ps_net_t *build(const char *input, const char *layers, size_t max_batch, size_t slice)
{
    ps_netspec_t spec;
    ps_errbuf_t err = {0};
    ps_net_t *net = NULL;
    if (ps_netspec_parse(input, layers, &spec, &err) == PS_OK)
        net = ps_net_new(&spec, max_batch, slice, &err);
    if (!net)
        fprintf(stderr, "'%s': %s\n", layers, err.msg);
    ps_netspec_fini(&spec);
    return net;
}

static ps_net_t *gpt(double dropout, size_t max_batch, size_t slice)
{
    ps_gpt_config_t cfg = {.n_layer = 2, .n_head = 2, .n_embd = 16, .block_size = 6,
                           .dropout = dropout};
    ps_netspec_t spec;
    ps_errbuf_t err;
    assert_int_equal(ps_netspec_gpt(&cfg, &spec, &err), PS_OK);
    ps_net_t *net = ps_net_new(&spec, max_batch, slice, &err);
    ps_netspec_fini(&spec);
    assert_non_null(net);
    return net;
}

/* b rows and labels that fit the net. */
static void make_batch(ps_net_t *net, uint64_t seed, size_t b, float *x, float *y)
{
    ps_rng_t rng;
    ps_rng_seed(&rng, seed);
    size_t d = ps_net_input_len(net);
    bool tokens = ps_net_input_shape(net).kind == PS_SHAPE_TOKENS;
    for (size_t i = 0; i < b * d; i++)
        x[i] = tokens ? (float)ps_rng_below(&rng, 256) : (float)ps_rng_normal(&rng);
    for (size_t i = 0; i < b; i++)
        y[i] = ps_net_task(net) == PS_NET_REGRESSOR
                   ? (float)ps_rng_normal(&rng)
                   : (float)ps_rng_below(&rng, ps_net_output_shape(net).d[0]);
}

static void test_slices_tile_every_table(void **state)
{
    (void)state;
    ps_net_t *nets[2] = {build(CNN_IN, CNN, MAXB, 50), gpt(0, MAXB, 300)};
    for (int k = 0; k < 2; k++) {
        ps_net_t *net = nets[k];
        assert_non_null(net);
        uint32_t s = 0, blocked = 0;
        for (uint32_t t = 0; t < ps_net_n_tables(net); t++) {
            uint64_t off = 0, shape[4], tshape[4];
            int nd = ps_net_table_shape(net, t, tshape);
            uint64_t rows = 0;
            for (uint32_t first = s; s < ps_net_n_slices(net) &&
                                     ps_net_slice_params(net, s) == ps_net_params(net, t) + off;
                 s++) {
                assert_ptr_equal(ps_net_slice_grads(net, s), ps_net_grads(net, t) + off);
                assert_int_equal(ps_net_slice_shape(net, s, shape), nd);
                assert_memory_equal(shape + 1, tshape + 1, (size_t)(nd - 1) * sizeof(uint64_t));
                assert_true(nd == 1 || ps_net_slice_len(net, s) <= (k ? 300u : 50u) ||
                            shape[0] == 1);
                rows += shape[0];
                off += ps_net_slice_len(net, s);
                blocked += s > first;
                if (off == ps_net_table_len(net, t)) {
                    s++;
                    break;
                }
            }
            assert_int_equal(off, ps_net_table_len(net, t));
            assert_int_equal(rows, tshape[0]);
        }
        assert_int_equal(s, ps_net_n_slices(net));
        assert_true(blocked > 0); /* some tables really are cut */
        ps_net_destroy(&nets[k]);
    }
}

typedef struct {
    uint32_t need[256], ready[256];
    int n_need, n_ready, stop_at;
    ps_net_t *net;
    float *saved;   /* a copy of all parameters, restored slice by slice in need */
    float *at_ready; /* the gradients as they were when announced */
} probe_t;

static int probe_need(void *ctx, uint32_t s)
{
    probe_t *p = ctx;
    p->need[p->n_need++] = s;
    if (p->n_need == p->stop_at)
        return -1;
    if (p->saved) {
        uint64_t off = (uint64_t)(ps_net_slice_params(p->net, s) - ps_net_params(p->net, 0));
        memcpy(ps_net_slice_params(p->net, s), p->saved + off,
               ps_net_slice_len(p->net, s) * sizeof(float));
    }
    return 0;
}

static void probe_ready(void *ctx, uint32_t s)
{
    probe_t *p = ctx;
    p->ready[p->n_ready++] = s;
    if (p->at_ready) {
        uint64_t off = (uint64_t)(ps_net_slice_grads(p->net, s) - ps_net_grads(p->net, 0));
        memcpy(p->at_ready + off, ps_net_slice_grads(p->net, s),
               ps_net_slice_len(p->net, s) * sizeof(float));
    }
}

/* The tables share one buffer (table 0's pointer is its start), so a
 * parameter or gradient's offset from it is stable. */
static uint64_t buffer_floats(ps_net_t *net)
{
    uint32_t last = ps_net_n_tables(net) - 1;
    return (uint64_t)(ps_net_params(net, last) - ps_net_params(net, 0)) +
           ps_net_table_len(net, last);
}

/* Before the batch every parameter is NaN; need restores a slice's values.
 * A read before its need would make the loss NaN. Each slice is asked for
 * once and announced once, and what was announced is the final gradient. */
static void check_overlap_contract(ps_net_t *net, const char *what)
{
    float x[MAXB * 256], y[MAXB];
    make_batch(net, SEED, MAXB, x, y);
    ps_net_init_params(net, SEED);
    uint64_t n = buffer_floats(net);
    probe_t *p = calloc(1, sizeof *p);
    p->net = net;
    p->saved = malloc(n * sizeof(float));
    p->at_ready = calloc(n, sizeof(float));
    memcpy(p->saved, ps_net_params(net, 0), n * sizeof(float));
    double ref = ps_net_train_batch(net, x, y, MAXB, NULL, NULL, NULL);
    for (uint64_t i = 0; i < n; i++)
        ps_net_params(net, 0)[i] = NAN;
    p->stop_at = -1;
    double loss = ps_net_train_batch(net, x, y, MAXB, probe_need, probe_ready, p);
    if (!(fabs(loss - ref) <= 1e-9 * fabs(ref)))
        fprintf(stderr, "%s: loss %g with waits, %g without\n", what, loss, ref);
    assert_true(fabs(loss - ref) <= 1e-9 * fabs(ref));
    uint32_t ns = ps_net_n_slices(net);
    assert_int_equal(p->n_need, ns);
    assert_int_equal(p->n_ready, ns);
    int seen_need[256] = {0}, seen_ready[256] = {0};
    for (uint32_t i = 0; i < ns; i++) {
        seen_need[p->need[i]]++;
        seen_ready[p->ready[i]]++;
    }
    for (uint32_t s = 0; s < ns; s++)
        assert_true(seen_need[s] == 1 && seen_ready[s] == 1);
    for (uint32_t t = 0; t < ps_net_n_tables(net); t++) {
        uint64_t off = (uint64_t)(ps_net_grads(net, t) - ps_net_grads(net, 0));
        assert_memory_equal(p->at_ready + off, ps_net_grads(net, t),
                            ps_net_table_len(net, t) * sizeof(float));
    }
    /* a failed wait abandons the batch: no more waits, nothing announced */
    memset(p, 0, offsetof(probe_t, net));
    p->stop_at = 3;
    assert_true(isnan(ps_net_train_batch(net, x, y, MAXB, probe_need, probe_ready, p)));
    assert_int_equal(p->n_need, 3);
    assert_int_equal(p->n_ready, 0);
    /* an empty batch: zero gradients, every slice announced, no waits */
    memset(p, 0, offsetof(probe_t, net));
    p->stop_at = -1;
    assert_true(ps_net_train_batch(net, x, y, 0, probe_need, probe_ready, p) == 0);
    assert_int_equal(p->n_need, 0);
    assert_int_equal(p->n_ready, ns);
    for (uint32_t t = 0; t < ps_net_n_tables(net); t++)
        for (uint64_t i = 0; i < ps_net_table_len(net, t); i++)
            assert_true(ps_net_grads(net, t)[i] == 0.0f);
    free(p->saved);
    free(p->at_ready);
    free(p);
}

static void test_forward_waits_before_reading_and_backward_announces_final(void **state)
{
    (void)state;
    ps_net_t *net = build(CNN_IN, CNN, MAXB, 50);
    check_overlap_contract(net, "cnn");
    ps_net_destroy(&net);
    net = gpt(0.1, MAXB, 300);
    check_overlap_contract(net, "gpt");
    ps_net_destroy(&net);
    net = build(RES_IN, RES, MAXB, 40);
    check_overlap_contract(net, "residual");
    ps_net_destroy(&net);
}

static int rec_need(void *ctx, uint32_t s)
{
    probe_t *p = ctx;
    p->need[p->n_need++] = s;
    return 0;
}

/* ps_model's own test: W1 10 x 6 in row blocks of <= 3 rows, bias first. */
static void test_mlp_slices_and_order_match_ps_model(void **state)
{
    (void)state;
    ps_model_spec_t ms = {.n_layers = 2, .dims = {10, 6, 3}, .act = PS_ACT_TANH,
                          .head = PS_HEAD_SOFTMAX_CE, .slice_elems = 20};
    ps_errbuf_t err;
    ps_model_t *m = ps_model_new(&ms, MAXB, &err);
    ps_net_t *net = build("10", "dense(6) tanh dense(3) cross_entropy", MAXB, 20);
    assert_non_null(m);
    assert_non_null(net);
    assert_int_equal(ps_net_n_slices(net), ps_model_n_slices(m));
    char a[64], b[64];
    uint64_t sa[4], sb[2];
    for (uint32_t s = 0; s < ps_net_n_slices(net); s++) {
        assert_string_equal(ps_net_slice_name(net, s, a, sizeof a),
                            ps_model_slice_name(m, s, b, sizeof b));
        int nd = ps_net_slice_shape(net, s, sa);
        assert_int_equal(nd, ps_model_slice_shape(m, s, sb));
        assert_memory_equal(sa, sb, (size_t)nd * sizeof(uint64_t));
    }
    float x[MAXB * 10], y[MAXB];
    make_batch(net, SEED, MAXB, x, y);
    probe_t pn = {.stop_at = -1}, pm = {.stop_at = -1};
    ps_net_train_batch(net, x, y, MAXB, rec_need, probe_ready, &pn);
    ps_model_train_batch(m, x, y, MAXB, rec_need, probe_ready, &pm);
    static const uint32_t need_expect[7] = {4, 0, 1, 2, 3, 6, 5};
    static const uint32_t ready_expect[7] = {6, 5, 4, 0, 1, 2, 3};
    assert_int_equal(pn.n_need, 7);
    assert_int_equal(pn.n_ready, 7);
    assert_memory_equal(pn.need, need_expect, sizeof need_expect);
    assert_memory_equal(pn.ready, ready_expect, sizeof ready_expect);
    assert_memory_equal(pn.need, pm.need, sizeof need_expect);
    assert_memory_equal(pn.ready, pm.ready, sizeof ready_expect);
    ps_model_destroy(&m);
    ps_net_destroy(&net);
}

/* Gradient sums of the parts of a batch, each part with its samples'
 * keys, against the whole batch: what N BSP workers push against one. */
static void check_split(ps_net_t *net, const char *what)
{
    const size_t parts[3] = {2, 3, 3}; /* uneven, as the trainer's last step can be */
    float x[MAXB * 256], y[MAXB];
    uint64_t keys[MAXB];
    make_batch(net, SEED + 1, MAXB, x, y);
    for (size_t i = 0; i < MAXB; i++)
        keys[i] = ps_net_sample_key(SEED, 5, 100 + i);
    ps_net_init_params(net, SEED);
    uint64_t n = buffer_floats(net);
    float *whole = malloc(n * sizeof(float)), *sum = calloc(n, sizeof(float));
    ps_net_set_sample_keys(net, keys, MAXB);
    double loss_whole = ps_net_train_batch(net, x, y, MAXB, NULL, NULL, NULL);
    memcpy(whole, ps_net_grads(net, 0), n * sizeof(float));
    double loss_parts = 0;
    size_t d = ps_net_input_len(net), lo = 0;
    for (int k = 0; k < 3; k++) {
        ps_net_set_sample_keys(net, keys + lo, parts[k]);
        loss_parts += ps_net_train_batch(net, x + lo * d, y + lo, parts[k], NULL, NULL, NULL);
        for (uint64_t i = 0; i < n; i++)
            sum[i] += ps_net_grads(net, 0)[i];
        lo += parts[k];
    }
    double worst = 0;
    for (uint64_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)sum[i] - whole[i]));
    if (worst > 1e-5 || fabs(loss_parts - loss_whole) > 1e-6 * fabs(loss_whole))
        fprintf(stderr, "%s: seed %d: max grad diff %g, loss %g vs %g\n", what, SEED, worst,
                loss_parts, loss_whole);
    assert_true(worst <= 1e-5);
    assert_true(fabs(loss_parts - loss_whole) <= 1e-6 * fabs(loss_whole));
    /* the parts summed in place (a pipeline's micro-batches): every layer
     * adds to its gradients, an empty part leaves them, the whole again */
    lo = 0;
    for (int k = 0; k < 3; k++) {
        ps_net_set_accumulate(net, k > 0);
        ps_net_set_sample_keys(net, keys + lo, parts[k]);
        ps_net_train_batch(net, x + lo * d, y + lo, parts[k], NULL, NULL, NULL);
        if (k == 1)
            ps_net_train_batch(net, x, y, 0, NULL, NULL, NULL);
        lo += parts[k];
    }
    ps_net_set_accumulate(net, false);
    worst = 0;
    for (uint64_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)ps_net_grads(net, 0)[i] - whole[i]));
    if (worst > 1e-5)
        fprintf(stderr, "%s: accumulated in place: max grad diff %g\n", what, worst);
    assert_true(worst <= 1e-5);
    /* and the dropout masks matter: other keys, other gradients */
    for (size_t i = 0; i < MAXB; i++)
        keys[i] ^= 0x5555;
    ps_net_set_sample_keys(net, keys, MAXB);
    ps_net_train_batch(net, x, y, MAXB, NULL, NULL, NULL);
    worst = 0;
    for (uint64_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)ps_net_grads(net, 0)[i] - whole[i]));
    assert_true(worst > 1e-3);
    free(whole);
    free(sum);
}

static void test_split_batch_gradients_sum_to_whole_batch_with_dropout(void **state)
{
    (void)state;
    ps_net_t *net = build(CNN_IN, CNN, MAXB, 0);
    check_split(net, "cnn");
    ps_net_destroy(&net);
    net = gpt(0.2, MAXB, 0);
    check_split(net, "gpt");
    ps_net_destroy(&net);
    net = build(RES_IN, RES, MAXB, 0);
    check_split(net, "residual");
    ps_net_destroy(&net);
}

/* A pipeline stage's micro-batches, each in its own net on one set of
 * tables: two forwards, then the two backwards (the second adding), give
 * bit for bit what one net gives running each micro-batch's forward just
 * before its backward, dropout included; the sibling reads and writes the
 * owner's buffers; a sibling of another spec is refused. */
static void test_sibling_keeps_its_activations_on_the_owners_tables(void **state)
{
    (void)state;
    ps_netspec_t spec, other;
    ps_errbuf_t err = {0};
    assert_int_equal(ps_netspec_parse(CNN_IN, CNN, &spec, &err), PS_OK);
    /* the same tables and counts, another layer: still not its owner's */
    const char *gelu = "conv2d(4,3,pad=1) gelu maxpool(2) conv2d(6,3,stride=2,pad=1) relu "
                       "flatten dropout(0.3) dense(12) relu dense(5) cross_entropy";
    assert_int_equal(ps_netspec_parse(CNN_IN, gelu, &other, &err), PS_OK);
    size_t hi = 7; /* conv .. flatten dropout: a first stage with a dropout mask */
    ps_net_t *owner = ps_net_new_stage(&spec, 0, hi, MAXB, 0, &err);
    ps_net_t *ref = ps_net_new_stage(&spec, 0, hi, MAXB, 0, &err);
    assert_non_null(owner);
    assert_non_null(ref);
    ps_net_t *sib = ps_net_new_sibling(&spec, owner, &err);
    assert_non_null(sib);
    assert_null(ps_net_new_sibling(&other, owner, &err));
    assert_int_equal(err.code, PS_EINVAL);
    ps_net_init_params(owner, SEED);
    ps_net_init_params(ref, SEED);
    for (uint32_t t = 0; t < ps_net_n_tables(owner); t++) {
        assert_ptr_equal(ps_net_params(sib, t), ps_net_params(owner, t));
        assert_ptr_equal(ps_net_grads(sib, t), ps_net_grads(owner, t));
    }
    size_t in = ps_net_input_len(owner), out = ps_shape_len(ps_net_output_shape(owner));
    size_t b = MAXB / 2;
    float *x = malloc(2 * b * in * sizeof(float)), *dy = malloc(2 * b * out * sizeof(float));
    ps_rng_t rng;
    ps_rng_seed(&rng, SEED);
    for (size_t i = 0; i < 2 * b * in; i++)
        x[i] = (float)ps_rng_normal(&rng);
    for (size_t i = 0; i < 2 * b * out; i++)
        dy[i] = (float)ps_rng_normal(&rng);
    uint64_t keys[MAXB];
    for (size_t i = 0; i < 2 * b; i++)
        keys[i] = ps_net_sample_key(SEED, 3, i);
    ps_net_t *nets[2] = {owner, sib};
    for (size_t m = 0; m < 2; m++) {
        ps_net_set_sample_keys(nets[m], keys + m * b, b);
        assert_int_equal(ps_net_stage_forward(nets[m], x + m * b * in, b, true, NULL, NULL), 0);
    }
    for (size_t m = 0; m < 2; m++) {
        ps_net_set_accumulate(nets[m], m > 0);
        ps_net_stage_backward(nets[m], dy + m * b * out, b, NULL, NULL);
        ps_net_set_sample_keys(ref, keys + m * b, b);
        assert_int_equal(ps_net_stage_forward(ref, x + m * b * in, b, true, NULL, NULL), 0);
        assert_memory_equal(ps_net_output(ref), ps_net_output(nets[m]), b * out * sizeof(float));
        ps_net_set_accumulate(ref, m > 0);
        ps_net_stage_backward(ref, dy + m * b * out, b, NULL, NULL);
    }
    bool any = false;
    for (uint32_t t = 0; t < ps_net_n_tables(owner); t++) {
        uint64_t n = ps_net_table_len(owner, t);
        assert_memory_equal(ps_net_grads(owner, t), ps_net_grads(ref, t), n * sizeof(float));
        for (uint64_t i = 0; i < n; i++)
            any |= ps_net_grads(owner, t)[i] != 0;
    }
    assert_true(any);
    free(x);
    free(dy);
    ps_net_destroy(&sib);
    assert_non_null(ps_net_params(owner, 0)); /* the owner's tables outlive the sibling */
    ps_net_destroy(&owner);
    ps_net_destroy(&ref);
    ps_netspec_fini(&spec);
    ps_netspec_fini(&other);
}

/* Same weights in ps_model and an MLP spec: the same per-sample losses and
 * the same gradients (the same sgemm calls, so equal to rounding). */
static void check_same_as_ps_model(ps_model_spec_t ms, const char *layers)
{
    ps_errbuf_t err;
    size_t in = ms.dims[0];
    char input[16];
    snprintf(input, sizeof input, "%zu", in);
    ps_model_t *m = ps_model_new(&ms, MAXB, &err);
    ps_net_t *net = build(input, layers, MAXB, ms.slice_elems);
    assert_non_null(m);
    assert_non_null(net);
    assert_int_equal(ps_net_n_tables(net), ps_model_n_tables(m));
    ps_model_init_params(m, SEED);
    for (uint32_t t = 0; t < ps_model_n_tables(m); t++) {
        char a[64], b[64];
        assert_string_equal(ps_net_table_name(net, t, a, sizeof a),
                            ps_model_table_name(m, t, b, sizeof b));
        assert_int_equal(ps_net_table_len(net, t), ps_model_table_len(m, t));
        float *w = ps_model_params(m, t);
        for (uint64_t i = 0; t % 2 && i < ps_model_table_len(m, t); i++)
            w[i] = 0.1f * (float)(i % 5) - 0.2f; /* non-zero biases */
        memcpy(ps_net_params(net, t), w, ps_model_table_len(m, t) * sizeof(float));
    }
    float x[MAXB * 16], y[MAXB];
    ps_rng_t rng;
    ps_rng_seed(&rng, SEED);
    for (size_t i = 0; i < MAXB * in; i++)
        x[i] = (float)ps_rng_normal(&rng);
    size_t out = ms.dims[ms.n_layers];
    for (size_t i = 0; i < MAXB; i++)
        y[i] = out == 1 && ms.head == PS_HEAD_MSE ? (float)ps_rng_normal(&rng)
               : out == 1                         ? (float)ps_rng_below(&rng, 2)
                                                  : (float)ps_rng_below(&rng, out);
    for (size_t i = 0; i < MAXB; i++) {
        double a = ps_model_loss(m, x + i * in, y + i, 1), b = ps_net_loss(net, x + i * in, y + i, 1);
        if (fabs(a - b) > 1e-6 * fabs(a) + 1e-9)
            fprintf(stderr, "'%s' sample %zu: ps_model %.9g ps_net %.9g\n", layers, i, a, b);
        assert_true(fabs(a - b) <= 1e-6 * fabs(a) + 1e-9);
    }
    double lm = ps_model_train_batch(m, x, y, MAXB, NULL, NULL, NULL);
    double ln = ps_net_train_batch(net, x, y, MAXB, NULL, NULL, NULL);
    assert_true(fabs(lm - ln) <= 1e-6 * fabs(lm));
    for (uint32_t t = 0; t < ps_model_n_tables(m); t++)
        for (uint64_t i = 0; i < ps_model_table_len(m, t); i++)
            assert_true(fabsf(ps_model_grads(m, t)[i] - ps_net_grads(net, t)[i]) <=
                        1e-6f * (1.0f + fabsf(ps_model_grads(m, t)[i])));
    assert_int_equal(ps_net_is_classifier(net), ps_model_is_classifier(m));
    ps_model_destroy(&m);
    ps_net_destroy(&net);
}

static void test_old_model_specs_compute_what_ps_model_computes(void **state)
{
    (void)state;
    ps_model_spec_t s = {.n_layers = 3, .dims = {5, 7, 4, 3}, .act = PS_ACT_RELU,
                         .head = PS_HEAD_SOFTMAX_CE};
    check_same_as_ps_model(s, "dense(7) relu dense(4) relu dense(3) cross_entropy");
    s.act = PS_ACT_TANH, s.slice_elems = 10;
    check_same_as_ps_model(s, "dense(7) tanh dense(4) tanh dense(3) cross_entropy");
    s.act = PS_ACT_SIGMOID, s.head = PS_HEAD_MSE;
    check_same_as_ps_model(s, "dense(7) sigmoid dense(4) sigmoid dense(3) mse");
    ps_model_spec_t lin = {.n_layers = 1, .dims = {5, 1}, .head = PS_HEAD_MSE};
    check_same_as_ps_model(lin, "dense(1) mse");
    lin.head = PS_HEAD_SIGMOID_BCE;
    check_same_as_ps_model(lin, "dense(1) bce");
    ps_model_spec_t soft = {.n_layers = 1, .dims = {5, 4}, .head = PS_HEAD_SOFTMAX_CE};
    check_same_as_ps_model(soft, "dense(4) cross_entropy");
}

static void test_evaluate_reports_the_task_metrics(void **state)
{
    (void)state;
    /* classifier: identity weights, class = argmax of the input */
    ps_net_t *net = build("2", "dense(2) cross_entropy", 2, 0);
    float *w = ps_net_params(net, 0);
    w[0] = 1, w[1] = 0, w[2] = 0, w[3] = 1;
    float x[] = {1, 0, 0, 1, 2, 0}, y[] = {0, 1, 1};
    ps_dataset_t ds = {.n = 3, .d = 2, .x = x, .y = y};
    ps_net_eval_t ev;
    ps_net_evaluate(net, &ds, &ev);
    assert_int_equal(ev.n, 3);
    assert_true(fabs(ev.accuracy - 2.0 / 3.0) < 1e-9);
    assert_true(ev.loss > 0);
    ps_net_destroy(&net);

    /* regressor: y = 2 x, predictions off by 1 and 3 */
    net = build("1", "dense(1) mse", 4, 0);
    ps_net_params(net, 0)[0] = 2;
    float rx[] = {1, 2}, ry[] = {3, 1};
    ds = (ps_dataset_t){.n = 2, .d = 1, .x = rx, .y = ry};
    ps_net_evaluate(net, &ds, &ev);
    assert_true(fabs(ev.mae - 2.0) < 1e-6);
    assert_true(fabs(ev.loss - 5.0) < 1e-6);
    assert_false(ps_net_is_classifier(net));
    ps_net_destroy(&net);

    /* binary: scores ranked perfectly */
    net = build("1", "dense(1) bce", 4, 0);
    ps_net_params(net, 0)[0] = 1;
    float bx[] = {-2, -1, 1, 3}, by[] = {0, 0, 1, 1};
    ds = (ps_dataset_t){.n = 4, .d = 1, .x = bx, .y = by};
    ps_net_evaluate(net, &ds, &ev);
    assert_true(fabs(ev.auc - 1.0) < 1e-9 && fabs(ev.accuracy - 1.0) < 1e-9);
    ps_net_destroy(&net);

    /* language model: all-zero weights predict uniformly: 8 bits per byte */
    net = gpt(0, 3, 0);
    float tx[5 * 7];
    for (int i = 0; i < 35; i++)
        tx[i] = (float)((i * 37) % 256);
    ds = (ps_dataset_t){.n = 5, .d = 7, .x = tx, .y = NULL};
    ps_net_evaluate(net, &ds, &ev);
    assert_int_equal(ps_net_task(net), PS_NET_LANGUAGE_MODEL);
    assert_true(fabs(ev.loss - log(256.0)) < 1e-5);
    assert_true(fabs(ev.bits_per_byte - 8.0) < 1e-5);
    ps_net_init_params(net, SEED);
    ps_net_evaluate(net, &ds, &ev);
    assert_true(fabs(ev.bits_per_byte - ev.loss / log(2.0)) < 1e-9);
    assert_true(ev.accuracy >= 0 && ev.accuracy <= 1);
    ps_net_destroy(&net);
}

static void test_check_data_refuses_what_does_not_fit(void **state)
{
    (void)state;
    ps_errbuf_t err;
    ps_net_t *net = build("3", "dense(4) cross_entropy", 2, 0);
    float x[6] = {0}, y[2] = {1, 4};
    ps_dataset_t ds = {.n = 2, .d = 3, .x = x, .y = y};
    assert_int_equal(ps_net_check_data(net, &ds, "'t.csv'", &err), PS_EFORMAT);
    assert_non_null(strstr(err.msg, "'t.csv': sample 1 has label 4, not a class 0..3"));
    y[1] = 3;
    assert_int_equal(ps_net_check_data(net, &ds, "'t.csv'", &err), PS_OK);
    ds.d = 2;
    assert_int_equal(ps_net_check_data(net, &ds, "'t.csv'", &err), PS_EFORMAT);
    assert_non_null(strstr(err.msg, "has 2 values per sample but input [3] needs 3"));
    ps_net_destroy(&net);
    net = gpt(0, 2, 0);
    float tx[7] = {1, 2, 3, 256, 0, 0, 0};
    ds = (ps_dataset_t){.n = 1, .d = 7, .x = tx};
    assert_int_equal(ps_net_check_data(net, &ds, "'corpus'", &err), PS_EFORMAT);
    assert_non_null(strstr(err.msg, "value 3 is 256, not a token below 256"));
    ps_net_destroy(&net);
}

/* U(-1/sqrt(fan_in), 1/sqrt(fan_in)) has std bound / sqrt(3). */
static void check_uniform(ps_net_t *net, uint32_t t, double fan_in)
{
    double bound = 1.0 / sqrt(fan_in), s2 = 0, mx = 0;
    uint64_t len = ps_net_table_len(net, t);
    for (uint64_t i = 0; i < len; i++) {
        double v = ps_net_params(net, t)[i];
        s2 += v * v;
        mx = fmax(mx, fabs(v));
    }
    /* a bias of a few values says little about its std, but fills the range */
    double std = sqrt(s2 / (double)len), want = bound / sqrt(3.0);
    bool ok = mx <= bound && (len < 500 ? mx > 0.5 * bound : fabs(std - want) <= 0.1 * want);
    if (!ok)
        fprintf(stderr, "seed %d table %u: max %g (bound %g) std %g (want %g)\n", SEED, t, mx,
                bound, std, want);
    assert_true(ok);
}

static void test_init_follows_pytorch_defaults_with_a_stream_per_table(void **state)
{
    (void)state;
    ps_net_t *net = build("3x10x10", "conv2d(16,3) flatten dense(64) layernorm dense(10) mse",
                          1, 0);
    ps_net_init_params(net, SEED);
    check_uniform(net, 0, 27);      /* conv1.W, fan_in 3*3*3 */
    check_uniform(net, 1, 27);      /* conv1.b */
    check_uniform(net, 2, 16 * 64); /* dense1.W */
    check_uniform(net, 3, 16 * 64); /* dense1.b */
    check_uniform(net, 6, 64);      /* dense2.W */
    for (int i = 0; i < 64; i++)
        assert_true(ps_net_params(net, 4)[i] == 1.0f && ps_net_params(net, 5)[i] == 0.0f);
    /* same seed, same values; a longer net keeps the tables both have */
    ps_net_t *other = build("3x10x10", "conv2d(16,3) flatten dense(64) layernorm dense(10) relu "
                                       "dense(3) cross_entropy",
                            1, 0);
    ps_net_init_params(other, SEED);
    assert_memory_equal(ps_net_params(net, 2), ps_net_params(other, 2),
                        ps_net_table_len(net, 2) * sizeof(float));
    ps_net_init_params(other, SEED + 1);
    assert_memory_not_equal(ps_net_params(net, 2), ps_net_params(other, 2),
                            ps_net_table_len(net, 2) * sizeof(float));
    ps_net_destroy(&other);
    ps_net_destroy(&net);

    net = build("tokens(4)", "embed(300,20) dense(300) cross_entropy", 1, 0);
    ps_net_init_params(net, SEED);
    double s2 = 0;
    for (int i = 0; i < 6000; i++)
        s2 += (double)ps_net_params(net, 0)[i] * ps_net_params(net, 0)[i];
    assert_true(fabs(sqrt(s2 / 6000) - 1.0) < 0.05); /* nn.Embedding: N(0, 1) */
    ps_net_destroy(&net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slices_tile_every_table),
        cmocka_unit_test(test_forward_waits_before_reading_and_backward_announces_final),
        cmocka_unit_test(test_mlp_slices_and_order_match_ps_model),
        cmocka_unit_test(test_split_batch_gradients_sum_to_whole_batch_with_dropout),
        cmocka_unit_test(test_old_model_specs_compute_what_ps_model_computes),
        cmocka_unit_test(test_sibling_keeps_its_activations_on_the_owners_tables),
        cmocka_unit_test(test_evaluate_reports_the_task_metrics),
        cmocka_unit_test(test_check_data_refuses_what_does_not_fit),
        cmocka_unit_test(test_init_follows_pytorch_defaults_with_a_stream_per_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
