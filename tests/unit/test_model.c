/* test_model.c - every model's gradients against finite differences, and
 * the property BSP exactness rests on: gradient sums of batch slices add up
 * to the gradient sum of the whole batch. Seeded; the seed is printed on
 * failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_model.h"
#include "ps_rng.h"

#define SEED 12345
#define B 6

static void fill(ps_rng_t *rng, float *x, size_t n, double scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(ps_rng_normal(rng) * scale);
}

/* Central differences on a sample of every table's parameters. */
static void check_gradients(ps_model_spec_t spec, const char *what)
{
    ps_rng_t rng;
    ps_rng_seed(&rng, SEED);
    ps_errbuf_t err;
    ps_model_t *m = ps_model_new(&spec, B, &err);
    assert_non_null(m);
    ps_model_init_params(m, SEED);
    for (uint32_t t = 0; t < ps_model_n_tables(m); t++) /* non-zero biases too */
        if (t % 2)
            fill(&rng, ps_model_params(m, t), ps_model_table_len(m, t), 0.1);
    size_t in = spec.dims[0], out = spec.dims[spec.n_layers];
    float x[B * 8], y[B];
    fill(&rng, x, B * in, 1.0);
    for (int i = 0; i < B; i++)
        y[i] = spec.head == PS_HEAD_MSE && out == 1 ? (float)ps_rng_normal(&rng)
                                                    : (float)ps_rng_below(&rng, out);
    ps_model_train_batch(m, x, y, B, NULL, NULL, NULL);
    for (uint32_t t = 0; t < ps_model_n_tables(m); t++) {
        float *w = ps_model_params(m, t);
        const float *g = ps_model_grads(m, t);
        for (uint64_t i = 0; i < ps_model_table_len(m, t); i += 3) {
            const float h = 1e-2f;
            float saved = w[i];
            w[i] = saved + h;
            double up = ps_model_loss(m, x, y, B);
            w[i] = saved - h;
            double down = ps_model_loss(m, x, y, B);
            w[i] = saved;
            double numeric = (up - down) / (2 * h);
            double tol = 2e-2 + 2e-2 * fabs(numeric);
            if (fabs(numeric - g[i]) > tol) {
                fprintf(stderr, "%s: seed %d table %u elem %llu: analytic %g numeric %g\n", what,
                        SEED, t, (unsigned long long)i, g[i], numeric);
                fail();
            }
        }
    }
    ps_model_destroy(&m);
}

static ps_model_spec_t mlp(ps_act_t act, ps_head_t head, size_t out)
{
    ps_model_spec_t s = {.n_layers = 3, .dims = {5, 7, 4, out}, .act = act, .head = head};
    return s;
}

static void test_linear_regression_gradients(void **state)
{
    (void)state;
    ps_model_spec_t s = {.n_layers = 1, .dims = {5, 1}, .head = PS_HEAD_MSE};
    check_gradients(s, "linear");
}

static void test_logistic_regression_gradients(void **state)
{
    (void)state;
    ps_model_spec_t s = {.n_layers = 1, .dims = {5, 1}, .head = PS_HEAD_SIGMOID_BCE};
    check_gradients(s, "logistic");
}

static void test_softmax_regression_gradients(void **state)
{
    (void)state;
    ps_model_spec_t s = {.n_layers = 1, .dims = {5, 3}, .head = PS_HEAD_SOFTMAX_CE};
    check_gradients(s, "softmax");
}

static void test_mlp_gradients_every_activation_and_head(void **state)
{
    (void)state;
    check_gradients(mlp(PS_ACT_RELU, PS_HEAD_SOFTMAX_CE, 3), "mlp relu ce");
    check_gradients(mlp(PS_ACT_TANH, PS_HEAD_SOFTMAX_CE, 3), "mlp tanh ce");
    check_gradients(mlp(PS_ACT_SIGMOID, PS_HEAD_SOFTMAX_CE, 3), "mlp sigmoid ce");
    check_gradients(mlp(PS_ACT_TANH, PS_HEAD_MSE, 3), "mlp tanh mse one-hot");
    check_gradients(mlp(PS_ACT_RELU, PS_HEAD_MSE, 1), "mlp relu mse regression");
}

static void test_slice_gradients_sum_to_batch_gradient(void **state)
{
    (void)state;
    ps_model_spec_t s = mlp(PS_ACT_RELU, PS_HEAD_SOFTMAX_CE, 3);
    ps_errbuf_t err;
    ps_model_t *m = ps_model_new(&s, B, &err);
    ps_model_init_params(m, 3);
    ps_rng_t rng;
    ps_rng_seed(&rng, SEED);
    float x[B * 5], y[B];
    fill(&rng, x, sizeof x / sizeof x[0], 1.0);
    for (int i = 0; i < B; i++)
        y[i] = (float)ps_rng_below(&rng, 3);
    uint32_t nt = ps_model_n_tables(m);
    float *whole[8], *parts[8];
    for (uint32_t t = 0; t < nt; t++) {
        size_t n = ps_model_table_len(m, t);
        whole[t] = malloc(n * sizeof(float));
        parts[t] = calloc(n, sizeof(float));
    }
    double loss_whole = ps_model_train_batch(m, x, y, B, NULL, NULL, NULL);
    for (uint32_t t = 0; t < nt; t++)
        memcpy(whole[t], ps_model_grads(m, t), ps_model_table_len(m, t) * sizeof(float));
    double loss_parts = ps_model_train_batch(m, x, y, 2, NULL, NULL, NULL);
    for (uint32_t t = 0; t < nt; t++)
        for (uint64_t i = 0; i < ps_model_table_len(m, t); i++)
            parts[t][i] += ps_model_grads(m, t)[i];
    loss_parts += ps_model_train_batch(m, x + 2 * 5, y + 2, B - 2, NULL, NULL, NULL);
    for (uint32_t t = 0; t < nt; t++)
        for (uint64_t i = 0; i < ps_model_table_len(m, t); i++) {
            parts[t][i] += ps_model_grads(m, t)[i];
            assert_true(fabsf(parts[t][i] - whole[t][i]) < 1e-5f);
        }
    assert_true(fabs(loss_parts - loss_whole) < 1e-6 * fabs(loss_whole) + 1e-9);
    for (uint32_t t = 0; t < nt; t++) {
        free(whole[t]);
        free(parts[t]);
    }
    ps_model_destroy(&m);
}

static int n_ready;
static uint32_t ready_order[16];
static void count_ready(void *ctx, uint32_t id)
{
    (void)ctx;
    ready_order[n_ready++] = id;
}

static void test_gradients_are_announced_last_layer_first(void **state)
{
    (void)state;
    ps_model_spec_t s = mlp(PS_ACT_RELU, PS_HEAD_SOFTMAX_CE, 3);
    ps_errbuf_t err;
    ps_model_t *m = ps_model_new(&s, B, &err);
    float x[B * 5] = {0}, y[B] = {0};
    n_ready = 0;
    ps_model_train_batch(m, x, y, B, NULL, count_ready, NULL);
    /* per layer from the last: bias, then W */
    static const uint32_t expect[6] = {5, 4, 3, 2, 1, 0};
    assert_int_equal(n_ready, 6);
    assert_memory_equal(ready_order, expect, sizeof expect);
    n_ready = 0;
    ps_model_train_batch(m, x, y, 0, NULL, count_ready, NULL); /* empty slice: zero grads */
    assert_int_equal(n_ready, 6);
    assert_true(ps_model_grads(m, 0)[0] == 0.0f);
    ps_model_destroy(&m);
}

static int n_needed, stop_at_need = -1;
static uint32_t need_order[16];
static int record_need(void *ctx, uint32_t id)
{
    (void)ctx;
    need_order[n_needed++] = id;
    return n_needed == stop_at_need ? -1 : 0;
}

/* Row-block slices: they tile each table, forward asks for them in the
 * order backward hands them over, and the gradients are those of the
 * unsliced model (the blocked sums differ only in rounding). */
static void test_row_block_slices(void **state)
{
    (void)state;
    ps_model_spec_t s = {.n_layers = 2, .dims = {10, 6, 3}, .act = PS_ACT_TANH,
                         .head = PS_HEAD_SOFTMAX_CE, .slice_elems = 20};
    ps_errbuf_t err;
    ps_model_t *m = ps_model_new(&s, B, &err);
    s.slice_elems = 0;
    ps_model_t *whole = ps_model_new(&s, B, &err);
    assert_non_null(m);
    assert_non_null(whole);
    /* W1 (10 x 6 = 60 floats) in blocks of <= 3 rows: 3, 3, 2, 2; W2 (18) whole */
    assert_int_equal(ps_model_n_slices(m), 7);
    assert_int_equal(ps_model_n_slices(whole), 4);
    static const char *names[7] = {"dense1.W[0:3]", "dense1.W[3:6]", "dense1.W[6:8]",
                                   "dense1.W[8:10]", "dense1.b", "dense2.W", "dense2.b"};
    static const uint64_t rows[4] = {3, 3, 2, 2};
    char name[64];
    uint64_t shape[2], off = 0;
    for (uint32_t i = 0; i < 7; i++)
        assert_string_equal(ps_model_slice_name(m, i, name, sizeof name), names[i]);
    for (uint32_t i = 0; i < 4; i++) {
        assert_int_equal(ps_model_slice_shape(m, i, shape), 2);
        assert_int_equal(shape[0], rows[i]);
        assert_int_equal(shape[1], 6);
        assert_ptr_equal(ps_model_slice_params(m, i), ps_model_params(m, 0) + off);
        assert_ptr_equal(ps_model_slice_grads(m, i), ps_model_grads(m, 0) + off);
        off += ps_model_slice_len(m, i);
    }
    assert_int_equal(off, ps_model_table_len(m, 0));
    assert_ptr_equal(ps_model_slice_params(m, 4), ps_model_params(m, 1));

    ps_rng_t rng;
    ps_rng_seed(&rng, SEED);
    ps_model_init_params(m, SEED);
    ps_model_init_params(whole, SEED);
    float x[B * 10], y[B];
    fill(&rng, x, B * 10, 1.0);
    for (int i = 0; i < B; i++)
        y[i] = (float)ps_rng_below(&rng, 3);
    n_needed = n_ready = 0;
    double loss = ps_model_train_batch(m, x, y, B, record_need, count_ready, NULL);
    double loss_whole = ps_model_train_batch(whole, x, y, B, NULL, NULL, NULL);
    static const uint32_t need_expect[7] = {4, 0, 1, 2, 3, 6, 5};
    static const uint32_t ready_expect[7] = {6, 5, 4, 0, 1, 2, 3};
    assert_int_equal(n_needed, 7);
    assert_memory_equal(need_order, need_expect, sizeof need_expect);
    assert_int_equal(n_ready, 7);
    assert_memory_equal(ready_order, ready_expect, sizeof ready_expect);
    assert_true(fabs(loss - loss_whole) < 1e-5 * fabs(loss_whole));
    for (uint32_t t = 0; t < 4; t++)
        for (uint64_t i = 0; i < ps_model_table_len(m, t); i++)
            assert_true(fabsf(ps_model_grads(m, t)[i] - ps_model_grads(whole, t)[i]) < 1e-5f);

    /* a failed wait abandons the batch: no more waits, no gradients */
    n_needed = n_ready = 0;
    stop_at_need = 3;
    assert_true(isnan(ps_model_train_batch(m, x, y, B, record_need, count_ready, NULL)));
    assert_int_equal(n_needed, 3);
    assert_int_equal(n_ready, 0);
    stop_at_need = -1;
    ps_model_destroy(&m);
    ps_model_destroy(&whole);
}

static void test_evaluate_counts_accuracy(void **state)
{
    (void)state;
    ps_model_spec_t s = {.n_layers = 1, .dims = {2, 2}, .head = PS_HEAD_SOFTMAX_CE};
    ps_errbuf_t err;
    ps_model_t *m = ps_model_new(&s, 2, &err);
    float *w = ps_model_params(m, 0); /* identity: class = argmax of the input */
    w[0] = 1, w[1] = 0, w[2] = 0, w[3] = 1;
    float x[] = {1, 0, 0, 1, 2, 0};
    float y[] = {0, 1, 1};
    ps_dataset_t ds = {.n = 3, .d = 2, .x = x, .y = y, .n_classes = 2};
    ps_eval_t ev;
    ps_model_evaluate(m, &ds, &ev);
    assert_int_equal(ev.n, 3);
    assert_true(fabs(ev.accuracy - 2.0 / 3.0) < 1e-9);
    ps_model_destroy(&m);
}

static void test_invalid_specs_are_refused(void **state)
{
    (void)state;
    ps_errbuf_t err;
    ps_model_spec_t s = {.n_layers = 1, .dims = {2, 3}, .head = PS_HEAD_SIGMOID_BCE};
    assert_null(ps_model_new(&s, 4, &err));
    s = (ps_model_spec_t){.n_layers = 0};
    assert_null(ps_model_new(&s, 4, &err));
    s = (ps_model_spec_t){.n_layers = 1, .dims = {2, 1}, .head = PS_HEAD_SOFTMAX_CE};
    assert_null(ps_model_new(&s, 4, &err));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_regression_gradients),
        cmocka_unit_test(test_logistic_regression_gradients),
        cmocka_unit_test(test_softmax_regression_gradients),
        cmocka_unit_test(test_mlp_gradients_every_activation_and_head),
        cmocka_unit_test(test_slice_gradients_sum_to_batch_gradient),
        cmocka_unit_test(test_gradients_are_announced_last_layer_first),
        cmocka_unit_test(test_row_block_slices),
        cmocka_unit_test(test_evaluate_counts_accuracy),
        cmocka_unit_test(test_invalid_specs_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
