/* test_stage.c - the pipeline's split (ps_stage) and stage nets
 * (ps_net_new_stage): the balance by parameters, the user's cut, bad cuts
 * refused with the reason, and a net cut in two computing exactly what
 * the whole net computes (init streams, dropout streams, gradients). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_net.h"
#include "ps_netspec.h"
#include "ps_stage.h"

#define MLP_LAYERS "dense(256) relu dense(128) relu dense(10) cross_entropy"
#define CNN_LAYERS                                                                                 \
    "conv2d(32,3,pad=1) relu maxpool(2) conv2d(64,3,pad=1) relu maxpool(2) flatten dropout(0.25) " \
    "dense(128) relu dense(10) cross_entropy"

typedef struct {
    ps_netspec_t spec;
    ps_stage_item_t items[64];
    size_t first[PS_STAGE_MAX + 1];
    ps_errbuf_t err;
} fix_t;

static void load(fix_t *f, const char *input, const char *layers)
{
    memset(f, 0, sizeof *f);
    assert_int_equal(ps_netspec_parse(input, layers, &f->spec, &f->err), PS_OK);
    assert_true(f->spec.n_layers <= 64);
    assert_int_equal(ps_net_stage_items(&f->spec, f->items, &f->err), PS_OK);
}

static int split(fix_t *f, uint32_t p, const char *user)
{
    int64_t pos[PS_STAGE_MAX];
    if (user && ps_stage_parse(user, p, pos, &f->err) != PS_OK)
        return f->err.code;
    return ps_stage_split(f->items, f->spec.n_layers, p, user ? pos : NULL, f->first, &f->err);
}

static void expect_refused(fix_t *f, uint32_t p, const char *user, const char *why)
{
    int rc = split(f, p, user);
    if (rc == PS_OK || !strstr(f->err.msg, why))
        fprintf(stderr, "stage_layers '%s': got '%s', want '%s'\n", user ? user : "(balance)",
                f->err.msg, why);
    assert_int_equal(rc, PS_EINVAL);
    assert_non_null(strstr(f->err.msg, why));
}

static void test_items_count_parameters_and_activations(void **state)
{
    (void)state;
    fix_t f;
    load(&f, "784", MLP_LAYERS);
    assert_int_equal(f.items[0].n_params, 784 * 256 + 256);
    assert_int_equal(f.items[1].n_params, 0);
    assert_int_equal(f.items[2].n_params, 256 * 128 + 128);
    assert_int_equal(f.items[2].act_floats, 128);
    assert_true(f.items[4].can_cut_after);
    assert_false(f.items[5].can_cut_after); /* the loss ends the net */
    ps_netspec_fini(&f.spec);
}

/* dense1 holds 85% of the MLP: alone in stage 0 for P = 2 and P = 3; the
 * rest is cut where the activation is smallest, the earliest on a tie. */
static void test_balance_mlp(void **state)
{
    (void)state;
    fix_t f;
    load(&f, "784", MLP_LAYERS);
    assert_int_equal(split(&f, 2, NULL), PS_OK);
    assert_int_equal(f.first[0], 0);
    assert_int_equal(f.first[1], 1);
    assert_int_equal(f.first[2], 6);
    assert_int_equal(split(&f, 3, NULL), PS_OK);
    assert_int_equal(f.first[1], 1);
    assert_int_equal(f.first[2], 3);
    assert_int_equal(f.first[3], 6);
    ps_netspec_fini(&f.spec);
}

/* The CNN's convolutions hold 19k parameters, dense1 402k: P = 2 puts the
 * cut before dense1, where the activation is smallest (after the second
 * pooling: 64x7x7), not after a convolution. */
static void test_balance_cnn_cuts_after_pooling(void **state)
{
    (void)state;
    fix_t f;
    load(&f, "1x28x28", CNN_LAYERS);
    assert_int_equal(split(&f, 2, NULL), PS_OK);
    assert_int_equal(f.first[1], 6); /* stage 1 begins at flatten */
    assert_int_equal(f.items[5].act_floats, 64 * 7 * 7);
    assert_int_equal(split(&f, 3, NULL), PS_OK);
    assert_int_equal(f.first[1], 6);
    assert_int_equal(f.first[2], 9); /* dense1 alone, then relu dense2 */
    ps_netspec_fini(&f.spec);
}

static void test_user_boundaries(void **state)
{
    (void)state;
    fix_t f;
    load(&f, "784", MLP_LAYERS);
    assert_int_equal(split(&f, 2, "3"), PS_OK); /* stage 1 begins at dense(128) */
    assert_int_equal(f.first[1], 2);
    assert_int_equal(split(&f, 3, "2,5"), PS_OK);
    assert_int_equal(f.first[1], 1);
    assert_int_equal(f.first[2], 4);
    assert_int_equal(f.first[3], 6);
    ps_netspec_fini(&f.spec);
}

static void test_bad_boundaries_refused(void **state)
{
    (void)state;
    fix_t f;
    load(&f, "784", MLP_LAYERS);
    expect_refused(&f, 2, "99", "position 99 is not a layer");
    expect_refused(&f, 2, "1", "must ascend, after the first layer");
    expect_refused(&f, 3, "5,3", "must ascend");
    expect_refused(&f, 2, "6", "would own no parameters");       /* the loss alone */
    expect_refused(&f, 3, "2,3", "stage 1 (layers 2..2) would own no parameters");
    expect_refused(&f, 3, "2", "needs 2 comma-separated");
    expect_refused(&f, 2, "3,5", "needs 1 comma-separated");
    expect_refused(&f, 2, "x", "needs 1 comma-separated");
    expect_refused(&f, 4, NULL, "cannot be cut into 4 stages"); /* 3 tables of weights */
    ps_netspec_fini(&f.spec);
    load(&f, "8", "dense(8) residual[ dense(8) relu ] dense(2) cross_entropy");
    char inside[16];
    snprintf(inside, sizeof inside, "%d", f.items[2].pos); /* the dense in the residual */
    expect_refused(&f, 2, inside, "inside a residual");
    assert_int_equal(split(&f, 2, NULL), PS_OK); /* the balance cuts around it */
    assert_true(f.first[1] == 1 || f.first[1] >= 5);
    ps_netspec_fini(&f.spec);
}

#define B 5
#define IN 6

/* Whole net vs the same spec cut in two: same initial tables (by name),
 * same loss, same gradients, dropout included. */
static void test_two_stages_compute_the_whole_net(void **state)
{
    (void)state;
    ps_netspec_t spec;
    ps_errbuf_t err = {0};
    assert_int_equal(ps_netspec_parse("6",
                                      "dense(5) relu dropout(0.5) dense(4) tanh dropout(0.3) "
                                      "dense(3) cross_entropy",
                                      &spec, &err),
                     PS_OK);
    ps_net_t *whole = ps_net_new(&spec, B, 0, &err);
    ps_net_t *s0 = ps_net_new_stage(&spec, 0, 3, B, 0, &err);
    ps_net_t *s1 = ps_net_new_stage(&spec, 3, spec.n_layers, B, 0, &err);
    assert_non_null(whole);
    assert_non_null(s0);
    assert_non_null(s1);
    assert_false(ps_net_has_loss(s0));
    assert_true(ps_net_has_loss(s1));
    assert_int_equal(ps_net_input_len(s1), 5);
    ps_net_init_params(whole, 7);
    ps_net_init_params(s0, 7);
    ps_net_init_params(s1, 7);
    assert_int_equal(ps_net_n_tables(s0) + ps_net_n_tables(s1), ps_net_n_tables(whole));
    float x[B * IN], y[B] = {0, 1, 2, 1, 0};
    uint64_t keys[B] = {11, 12, 13, 14, 15};
    for (int i = 0; i < B * IN; i++)
        x[i] = (float)sin(0.7 * i);
    ps_net_set_sample_keys(whole, keys, B);
    ps_net_set_sample_keys(s0, keys, B);
    ps_net_set_sample_keys(s1, keys, B);
    double lw = ps_net_train_batch(whole, x, y, B, NULL, NULL, NULL);
    assert_int_equal(ps_net_stage_forward(s0, x, B, true, NULL, NULL), 0);
    double ls = ps_net_train_batch(s1, ps_net_output(s0), y, B, NULL, NULL, NULL);
    ps_net_stage_backward(s0, ps_net_input_grad(s1), B, NULL, NULL);
    assert_true(fabs(lw - ls) < 1e-9);
    uint32_t n0 = ps_net_n_tables(s0);
    for (uint32_t id = 0; id < ps_net_n_tables(whole); id++) {
        ps_net_t *s = id < n0 ? s0 : s1;
        uint32_t sid = id < n0 ? id : id - n0;
        char a[64], b[64];
        assert_string_equal(ps_net_table_name(whole, id, a, sizeof a),
                            ps_net_table_name(s, sid, b, sizeof b));
        for (uint64_t j = 0; j < ps_net_table_len(whole, id); j++) {
            assert_true(ps_net_params(whole, id)[j] == ps_net_params(s, sid)[j]);
            assert_true(fabsf(ps_net_grads(whole, id)[j] - ps_net_grads(s, sid)[j]) <= 1e-6f);
        }
    }
    ps_net_destroy(&whole);
    ps_net_destroy(&s0);
    ps_net_destroy(&s1);
    ps_netspec_fini(&spec);
}

/* A net of shapes only has the whole net's tables and shapes, no buffers. */
static void test_shapes_only_net(void **state)
{
    (void)state;
    ps_netspec_t spec;
    ps_errbuf_t err = {0};
    assert_int_equal(ps_netspec_parse("784", MLP_LAYERS, &spec, &err), PS_OK);
    ps_net_t *net = ps_net_new_shapes(&spec, &err);
    assert_non_null(net);
    assert_int_equal(ps_net_n_tables(net), 6);
    assert_int_equal(ps_net_n_params(net), 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10);
    assert_int_equal(ps_net_output_shape(net).d[0], 10);
    ps_net_destroy(&net);
    ps_netspec_fini(&spec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_items_count_parameters_and_activations),
        cmocka_unit_test(test_balance_mlp),
        cmocka_unit_test(test_balance_cnn_cuts_after_pooling),
        cmocka_unit_test(test_user_boundaries),
        cmocka_unit_test(test_bad_boundaries_refused),
        cmocka_unit_test(test_two_stages_compute_the_whole_net),
        cmocka_unit_test(test_shapes_only_net),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
