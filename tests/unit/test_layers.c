/* test_layers.c - every layer's gradients against central differences of
 * the loss, in small nets where a layer with parameters sits before the
 * layer under test (so its input gradient is checked too). Seeded; the
 * seed, table and element are printed on failure. */
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

#include "ps_layer_int.h"
#include "ps_net.h"
#include "ps_rng.h"

#define SEED 20240519
#define B 3

static ps_net_t *build(const char *input, const char *layers, size_t max_batch)
{
    ps_netspec_t spec;
    ps_errbuf_t err = {0};
    if (ps_netspec_parse(input, layers, &spec, &err) != PS_OK) {
        fprintf(stderr, "spec '%s': %s\n", layers, err.msg);
        ps_netspec_fini(&spec);
        return NULL;
    }
    ps_net_t *net = ps_net_new(&spec, max_batch, 0, &err);
    if (!net)
        fprintf(stderr, "net '%s': %s\n", layers, err.msg);
    ps_netspec_fini(&spec);
    return net;
}

/* Every parameter moved off its init (biases and gains included), so no
 * test sits on a symmetric point. */
static void perturb(ps_net_t *net, ps_rng_t *rng)
{
    for (uint32_t t = 0; t < ps_net_n_tables(net); t++) {
        float *w = ps_net_params(net, t);
        for (uint64_t i = 0; i < ps_net_table_len(net, t); i++)
            w[i] += (float)(0.3 * ps_rng_normal(rng));
    }
}

/* A batch that fits the net: tokens below the vocabulary, class labels,
 * or regression targets. */
static void make_batch(ps_net_t *net, ps_rng_t *rng, size_t b, uint32_t vocab, float *x, float *y)
{
    size_t d = ps_net_input_len(net);
    ps_shape_t out = ps_net_output_shape(net);
    for (size_t i = 0; i < b * d; i++)
        x[i] = ps_net_input_shape(net).kind == PS_SHAPE_TOKENS ? (float)ps_rng_below(rng, vocab)
                                                               : (float)ps_rng_normal(rng);
    for (size_t i = 0; i < b; i++)
        y[i] = ps_net_task(net) == PS_NET_REGRESSOR ? (float)ps_rng_normal(rng)
               : out.d[0] > 1                       ? (float)ps_rng_below(rng, out.d[0])
                                                    : (float)ps_rng_below(rng, 2);
}

typedef struct {
    double worst; /* largest |analytic - numeric| / (abs_tol + rel_tol |numeric|) */
    int checked;
    int one_sided; /* checks passed by a one-sided difference (a kink on the other side) */
} fd_stats_t;

static bool within(double analytic, double numeric, double slack, fd_stats_t *st)
{
    const double abs_tol = 4e-3, rel_tol = 1e-2;
    double ratio = fabs(numeric - analytic) / (slack * (abs_tol + rel_tol * fabs(numeric)));
    if (slack == 1)
        st->worst = ratio > st->worst ? ratio : st->worst;
    return ratio <= 1;
}

/* Central differences on up to ~60 elements of every table, the loss
 * taken in training mode (the same dropout masks as train_batch). ReLU and
 * max pooling have kinks: when a step crosses one (an argmax changes), the
 * central difference is off but the one-sided difference away from the
 * kink is not, so that one may pass the element; a wrong gradient fails
 * both sides, and the one-sided passes must stay rare. */
static void check_tables(ps_net_t *net, const float *x, const float *y, size_t b, const char *what,
                         fd_stats_t *st)
{
    const float h = 3e-3f;
    double f0 = ps_net_forward(net, x, y, b, true);
    for (uint32_t t = 0; t < ps_net_n_tables(net); t++) {
        float *w = ps_net_params(net, t);
        const float *g = ps_net_grads(net, t);
        uint64_t len = ps_net_table_len(net, t), step = len / 60 + 1;
        char name[64];
        for (uint64_t i = (uint64_t)t % step; i < len; i += step) {
            float saved = w[i];
            w[i] = saved + h;
            double up = ps_net_forward(net, x, y, b, true);
            w[i] = saved - h;
            double down = ps_net_forward(net, x, y, b, true);
            w[i] = saved;
            double numeric = (up - down) / (2.0 * h);
            st->checked++;
            if (within(g[i], numeric, 1, st))
                continue;
            if (within(g[i], (up - f0) / h, 2, st) || within(g[i], (f0 - down) / h, 2, st)) {
                st->one_sided++;
                continue;
            }
            fprintf(stderr, "%s: seed %d table %s elem %llu: analytic %.6g numeric %.6g\n", what,
                    SEED, ps_net_table_name(net, t, name, sizeof name), (unsigned long long)i,
                    (double)g[i], numeric);
            fail();
        }
    }
    if (st->one_sided * 20 > st->checked)
        fprintf(stderr, "%s: seed %d: %d of %d checks passed one-sided only\n", what, SEED,
                st->one_sided, st->checked);
    assert_true(st->one_sided * 20 <= st->checked);
}

static void check_spec(const char *input, const char *layers, uint32_t vocab)
{
    ps_rng_t rng;
    ps_rng_seed(&rng, SEED);
    ps_net_t *net = build(input, layers, B);
    assert_non_null(net);
    ps_net_init_params(net, SEED);
    perturb(net, &rng);
    size_t d = ps_net_input_len(net);
    float *x = malloc(B * d * sizeof(float)), y[B];
    make_batch(net, &rng, B, vocab, x, y);
    uint64_t keys[B] = {11, 22, 33};
    ps_net_set_sample_keys(net, keys, B);
    double loss = ps_net_train_batch(
        net, x, ps_net_input_shape(net).kind == PS_SHAPE_TOKENS ? NULL : y, B, NULL, NULL, NULL);
    assert_true(isfinite(loss));
    double again = ps_net_forward(net, x, y, B, true);
    assert_true(fabs(loss - again) <= 1e-9 * fabs(loss));
    fd_stats_t st = {0};
    check_tables(net, x, y, B, layers, &st);
    assert_true(st.checked > 0);
    free(x);
    ps_net_destroy(&net);
}

static void test_dense_gradients(void **state)
{
    (void)state;
    check_spec("5", "dense(4) tanh dense(3) cross_entropy", 0);
    check_spec("5", "dense(4,bias=0) tanh dense(3) cross_entropy", 0);
    /* on a sequence: one map per position */
    check_spec("3x4", "dense(5) tanh dense(2) flatten mse", 0);
}

static void test_conv2d_gradients_with_stride_and_padding(void **state)
{
    (void)state;
    check_spec("2x7x7",
               "conv2d(3,3,stride=2,pad=1) tanh conv2d(2,2) flatten dense(3) cross_entropy", 0);
    check_spec("1x6x5", "conv2d(2,3,bias=0) tanh conv2d(3,3,pad=2,stride=3) flatten mse", 0);
}

static size_t default_chunk_floats;

/* Restores the im2col limit even when the test failed half way. */
static int restore_chunk(void **state)
{
    (void)state;
    if (default_chunk_floats)
        pswk_conv_set_chunk_floats(default_chunk_floats);
    return 0;
}

/* A batch bigger than conv2d's im2col chunk (the limit lowered to force
 * it): backward redoes im2col per chunk, and gives what one chunk gives. */
static void test_conv2d_in_chunks_matches_one_chunk(void **state)
{
    (void)state;
    const char *layers = "conv2d(3,3,stride=2,pad=1) tanh conv2d(2,3,pad=1) flatten dense(3) "
                         "cross_entropy";
    default_chunk_floats = pswk_conv_set_chunk_floats(27 * 16 * 2); /* two samples of conv1 */
    check_spec("3x7x7", layers, 0);
    ps_net_t *chunked = build("3x7x7", layers, B);
    restore_chunk(NULL);
    ps_net_t *whole = build("3x7x7", layers, B);
    ps_rng_t rng;
    ps_rng_seed(&rng, SEED);
    float x[B * 147], y[B];
    make_batch(whole, &rng, B, 0, x, y);
    ps_net_init_params(chunked, SEED);
    ps_net_init_params(whole, SEED);
    double a = ps_net_train_batch(chunked, x, y, B, NULL, NULL, NULL);
    double b = ps_net_train_batch(whole, x, y, B, NULL, NULL, NULL);
    assert_true(fabs(a - b) <= 1e-6 * fabs(b));
    for (uint32_t t = 0; t < ps_net_n_tables(whole); t++)
        for (uint64_t i = 0; i < ps_net_table_len(whole, t); i++)
            assert_true(fabsf(ps_net_grads(chunked, t)[i] - ps_net_grads(whole, t)[i]) <= 1e-5f);
    ps_net_destroy(&chunked);
    ps_net_destroy(&whole);
}

/* Max pooling against a plain reference, on inputs full of ties (values
 * from {0, 1, 2}) and sizes that leave a column and a row out: the
 * maxima, and the input each gradient goes to (the first maximum of the
 * window, row by row, as PyTorch on the CPU). 2x2 windows of stride 2
 * take a separate, vectorised path; 3x3 of stride 2 the general one. */
static void test_max_pooling_matches_a_reference_with_ties(void **state)
{
    (void)state;
    const size_t b = 2, c = 3, h = 7, w = 9;
    const size_t ks[][2] = {{2, 2}, {3, 2}, {2, 1}};
    ps_rng_t rng;
    ps_rng_seed(&rng, SEED);
    float x[2 * 3 * 7 * 9], dx[2 * 3 * 7 * 9], want_dx[2 * 3 * 7 * 9];
    for (size_t i = 0; i < b * c * h * w; i++)
        x[i] = (float)ps_rng_below(&rng, 3);
    for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
        size_t k = ks[t][0], s = ks[t][1], ho = (h - k) / s + 1, wo = (w - k) / s + 1;
        ps_layer_desc_t d;
        ps_layer_desc_init(&d, PS_LAYER_MAXPOOL, NULL);
        d.arg[0] = (double)k;
        d.arg[1] = (double)s;
        ps_errbuf_t err = {0};
        ps_layer_t *l = ps_layer_new(&d, (ps_shape_t){PS_SHAPE_IMG, {3, 7, 9}}, NULL, 0, b, &err);
        assert_non_null(l);
        float y[2 * 3 * 7 * 9], dy[2 * 3 * 7 * 9];
        assert_int_equal(l->ops->forward(l, x, y, b, NULL), 0);
        memset(want_dx, 0, sizeof want_dx);
        for (size_t n = 0; n < b * c; n++)
            for (size_t oh = 0; oh < ho; oh++)
                for (size_t ow = 0; ow < wo; ow++) {
                    const float *img = x + n * h * w;
                    size_t best = oh * s * w + ow * s;
                    for (size_t i = 0; i < k; i++)
                        for (size_t j = 0; j < k; j++)
                            if (img[(oh * s + i) * w + ow * s + j] > img[best])
                                best = (oh * s + i) * w + ow * s + j;
                    size_t o = n * ho * wo + oh * wo + ow;
                    if (y[o] != img[best])
                        fail_msg("k %zu stride %zu: output %zu is %g, want %g", k, s, o,
                                 (double)y[o], (double)img[best]);
                    dy[o] = (float)(o + 1);
                    want_dx[n * h * w + best] += dy[o];
                }
        l->ops->backward(l, x, y, dy, dx, b, NULL);
        for (size_t i = 0; i < b * c * h * w; i++)
            if (dx[i] != want_dx[i])
                fail_msg("k %zu stride %zu: dx[%zu] is %g, want %g", k, s, i, (double)dx[i],
                         (double)want_dx[i]);
        ps_layer_destroy(&l);
    }
}

static void test_pooling_gradients(void **state)
{
    (void)state;
    check_spec("2x6x6", "conv2d(3,3,pad=1) maxpool(2) flatten dense(3) cross_entropy", 0);
    check_spec("2x7x7", "conv2d(2,3,pad=1) maxpool(3,stride=2) flatten dense(3) cross_entropy", 0);
    check_spec("2x6x6", "conv2d(3,3,pad=1) avgpool(2) flatten dense(3) cross_entropy", 0);
    check_spec("2x7x7", "conv2d(2,3,pad=1) avgpool(3,stride=2) flatten dense(3) cross_entropy", 0);
}

static void test_activation_gradients(void **state)
{
    (void)state;
    check_spec("5", "dense(6) relu dense(3) cross_entropy", 0);
    check_spec("5", "dense(6) gelu dense(3) cross_entropy", 0);
    check_spec("5", "dense(6) tanh dense(3) cross_entropy", 0);
    check_spec("5", "dense(6) sigmoid dense(3) cross_entropy", 0);
}

static void test_dropout_gradients_with_fixed_masks(void **state)
{
    (void)state;
    check_spec("5", "dense(8) tanh dropout(0.3) dense(3) cross_entropy", 0);
    check_spec("2x5x5", "conv2d(2,3,pad=1) dropout(0.5) flatten dense(2) cross_entropy", 0);
}

static void test_layernorm_gradients(void **state)
{
    (void)state;
    check_spec("5", "dense(6) layernorm dense(3) cross_entropy", 0);
    check_spec("3x4", "dense(5) layernorm(eps=0.001) dense(2) flatten mse", 0);
}

static void test_embedding_and_sequence_loss_gradients(void **state)
{
    (void)state;
    check_spec("tokens(5)", "embed(11,6) posembed dense(11) cross_entropy", 11);
}

static void test_attention_gradients(void **state)
{
    (void)state;
    check_spec("tokens(6)", "embed(13,8) posembed attention(2) dense(13) cross_entropy", 13);
    check_spec("tokens(4)", "embed(7,6) attention(1) layernorm attention(3) dense(7) cross_entropy",
               7);
}

static void test_residual_gradients_nested_and_adjacent(void **state)
{
    (void)state;
    check_spec("6",
               "dense(6) residual[ tanh dense(6) ] residual[ residual[ dense(6) ] tanh ] "
               "dense(3) cross_entropy",
               0);
    check_spec("6",
               "dense(6) residual[ ] residual[ dense(6) residual[ tanh ] ] dense(2) "
               "cross_entropy",
               0);
}

static void test_loss_gradients(void **state)
{
    (void)state;
    check_spec("4", "dense(3) tanh dense(1) bce", 0);
    check_spec("4", "dense(3) tanh dense(1) mse", 0);
    check_spec("4", "dense(3) tanh dense(4) mse", 0); /* one-hot targets */
    check_spec("4", "dense(3) tanh dense(4) cross_entropy", 0);
}

static void test_gpt_gradients(void **state)
{
    (void)state;
    ps_gpt_config_t cfg = {.n_layer = 2, .n_head = 2, .n_embd = 8, .block_size = 5};
    ps_netspec_t spec;
    ps_errbuf_t err;
    assert_int_equal(ps_netspec_gpt(&cfg, &spec, &err), PS_OK);
    ps_net_t *net = ps_net_new(&spec, B, 0, &err);
    ps_netspec_fini(&spec);
    assert_non_null(net);
    ps_rng_t rng;
    ps_rng_seed(&rng, SEED);
    ps_net_init_params(net, SEED);
    perturb(net, &rng);
    float x[B * 6], y[B];
    make_batch(net, &rng, B, 256, x, y);
    assert_true(isfinite(ps_net_train_batch(net, x, NULL, B, NULL, NULL, NULL)));
    fd_stats_t st = {0};
    check_tables(net, x, NULL, B, "gpt", &st);
    assert_true(st.checked > 100);
    ps_net_destroy(&net);
}

/* dense1 = dense2 = identity: the logits are the activation of the input. */
static ps_net_t *identity_sandwich(const char *mid, size_t n, size_t b)
{
    char layers[128];
    snprintf(layers, sizeof layers, "dense(%zu) %s dense(%zu) mse", n, mid, n);
    char input[16];
    snprintf(input, sizeof input, "%zu", n);
    ps_net_t *net = build(input, layers, b);
    assert_non_null(net);
    for (uint32_t t = 0; t < ps_net_n_tables(net); t++)
        memset(ps_net_params(net, t), 0, ps_net_table_len(net, t) * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        ps_net_params(net, 0)[i * n + i] = 1;
        ps_net_params(net, 2)[i * n + i] = 1;
    }
    return net;
}

static void test_gelu_is_the_erf_form(void **state)
{
    (void)state;
    ps_net_t *net = identity_sandwich("gelu", 9, 1);
    float x[9], y[1] = {0};
    for (int i = 0; i < 9; i++)
        x[i] = -4.0f + (float)i;
    ps_net_loss(net, x, y, 1);
    const float *z = ps_net_output(net);
    double worst_tanh_gap = 0;
    for (int i = 0; i < 9; i++) {
        double v = x[i], exact = 0.5 * v * (1 + erf(v / sqrt(2.0)));
        double tanh_form = 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
        assert_true(fabs(z[i] - exact) < 1e-6);
        worst_tanh_gap = fmax(worst_tanh_gap, fabs(z[i] - tanh_form));
    }
    assert_true(worst_tanh_gap > 1e-4); /* it is not the tanh approximation */
    ps_net_destroy(&net);
}

static void test_dropout_rate_scale_and_eval_mode(void **state)
{
    (void)state;
    const size_t n = 200, b = 8;
    ps_net_t *net = identity_sandwich("dropout(0.25)", n, b);
    float *x = malloc(b * n * sizeof(float)), y[8] = {0};
    for (size_t i = 0; i < b * n; i++)
        x[i] = 1.0f + (float)(i % 7);
    ps_net_forward(net, x, y, b, true);
    const float *z = ps_net_output(net);
    size_t dropped = 0;
    for (size_t i = 0; i < b * n; i++) {
        if (z[i] == 0)
            dropped++;
        else
            assert_true(fabsf(z[i] - x[i] / 0.75f) < 1e-5f * x[i]);
    }
    double rate = (double)dropped / (double)(b * n);
    if (fabs(rate - 0.25) > 0.04)
        fprintf(stderr, "seed keys 0..7: dropped %.3f, expected 0.25\n", rate);
    assert_true(fabs(rate - 0.25) <= 0.04);
    ps_net_loss(net, x, y, b); /* evaluation: nothing dropped */
    for (size_t i = 0; i < b * n; i++)
        assert_true(ps_net_output(net)[i] == x[i]);
    free(x);
    ps_net_destroy(&net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense_gradients),
        cmocka_unit_test(test_conv2d_gradients_with_stride_and_padding),
        cmocka_unit_test_teardown(test_conv2d_in_chunks_matches_one_chunk, restore_chunk),
        cmocka_unit_test(test_pooling_gradients),
        cmocka_unit_test(test_max_pooling_matches_a_reference_with_ties),
        cmocka_unit_test(test_activation_gradients),
        cmocka_unit_test(test_dropout_gradients_with_fixed_masks),
        cmocka_unit_test(test_layernorm_gradients),
        cmocka_unit_test(test_embedding_and_sequence_loss_gradients),
        cmocka_unit_test(test_attention_gradients),
        cmocka_unit_test(test_residual_gradients_nested_and_adjacent),
        cmocka_unit_test(test_loss_gradients),
        cmocka_unit_test(test_gpt_gradients),
        cmocka_unit_test(test_gelu_is_the_erf_form),
        cmocka_unit_test(test_dropout_rate_scale_and_eval_mode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
