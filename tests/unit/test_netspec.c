/* test_netspec.c - the spec parser and the shape checks of ps_net_new:
 * what a valid spec builds (tables, shapes, names), and errors that name
 * the layer by position and text and say what is wrong; the GPT builder's
 * tables and init; the old models as specs. */
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

#define SEED 4242

static ps_net_t *build(const char *input, const char *layers, ps_errbuf_t *err)
{
    ps_netspec_t spec;
    ps_net_t *net = NULL;
    if (ps_netspec_parse(input, layers, &spec, err) == PS_OK)
        net = ps_net_new(&spec, 2, 0, err);
    ps_netspec_fini(&spec);
    return net;
}

/* The spec fails (parse or shapes) with every fragment in the message. */
static void expect_error(const char *input, const char *layers, const char *want1,
                         const char *want2)
{
    ps_errbuf_t err = {0};
    ps_net_t *net = build(input, layers, &err);
    if (net || !strstr(err.msg, want1) || (want2 && !strstr(err.msg, want2)))
        fprintf(stderr, "spec '%s' / '%s': got '%s', want '%s' and '%s'\n", input, layers, err.msg,
                want1, want2 ? want2 : "");
    assert_null(net);
    assert_non_null(strstr(err.msg, want1));
    if (want2)
        assert_non_null(strstr(err.msg, want2));
}

static void test_cnn_spec_builds_tables_and_shapes(void **state)
{
    (void)state;
    ps_errbuf_t err = {0};
    ps_net_t *net = build("1x28x28",
                          "conv2d(32,3,pad=1) relu maxpool(2) conv2d(64, 3, pad=1) relu maxpool(2) "
                          "flatten dense(128) relu dense(10) cross_entropy",
                          &err);
    assert_non_null(net);
    static const char *names[] = {"conv1.W", "conv1.b", "conv2.W", "conv2.b",
                                  "dense1.W", "dense1.b", "dense2.W", "dense2.b"};
    static const uint64_t shapes[][4] = {{32, 1, 3, 3}, {32}, {64, 32, 3, 3}, {64},
                                         {3136, 128},   {128}, {128, 10},     {10}};
    static const int ndims[] = {4, 1, 4, 1, 2, 1, 2, 1};
    assert_int_equal(ps_net_n_tables(net), 8);
    char name[64];
    uint64_t shape[4], total = 0;
    for (uint32_t t = 0; t < 8; t++) {
        assert_string_equal(ps_net_table_name(net, t, name, sizeof name), names[t]);
        assert_int_equal(ps_net_table_shape(net, t, shape), ndims[t]);
        assert_memory_equal(shape, shapes[t], (size_t)ndims[t] * sizeof(uint64_t));
        total += ps_net_table_len(net, t);
    }
    assert_int_equal(ps_net_n_params(net), total);
    assert_int_equal(total, 32 * 9 + 32 + 64 * 32 * 9 + 64 + 3136 * 128 + 128 + 1280 + 10);
    assert_int_equal(ps_net_input_len(net), 784);
    assert_int_equal(ps_net_output_shape(net).d[0], 10);
    assert_int_equal(ps_net_task(net), PS_NET_CLASSIFIER);
    ps_net_destroy(&net);
}

static void test_parser_fills_defaults_and_named_arguments(void **state)
{
    (void)state;
    ps_netspec_t spec;
    ps_errbuf_t err;
    assert_int_equal(ps_netspec_parse(" 3x8x8 ", "conv2d(4, 5, pad=2) maxpool(2,stride=1) "
                                                 "dropout(0.25) flatten dense(out=3,bias=0) mse",
                                      &spec, &err),
                     PS_OK);
    assert_int_equal(spec.input.kind, PS_SHAPE_IMG);
    assert_int_equal(spec.n_layers, 6);
    const ps_layer_desc_t *c = &spec.layers[0];
    assert_int_equal(c->kind, PS_LAYER_CONV2D);
    assert_true(c->arg[0] == 4 && c->arg[1] == 5 && c->arg[2] == 1 && c->arg[3] == 2 &&
                c->arg[4] == 1);
    assert_string_equal(c->text, "conv2d(4, 5, pad=2)");
    assert_int_equal(c->pos, 1);
    assert_string_equal(c->name, "conv1");
    assert_true(spec.layers[1].arg[0] == 2 && spec.layers[1].arg[1] == 1);
    assert_true(spec.layers[2].arg[0] == 0.25);
    assert_true(spec.layers[4].arg[0] == 3 && spec.layers[4].arg[1] == 0);
    assert_string_equal(spec.layers[4].name, "dense1");
    ps_netspec_fini(&spec);
    ps_netspec_fini(&spec); /* twice is safe */
}

static void test_input_shapes(void **state)
{
    (void)state;
    ps_netspec_t spec;
    ps_errbuf_t err;
    static const struct {
        const char *text;
        ps_shape_kind_t kind;
        uint32_t d0, d1, d2;
    } ok[] = {{"784", PS_SHAPE_VEC, 784, 0, 0},
              {"128x64", PS_SHAPE_SEQ, 128, 64, 0},
              {"1x28x28", PS_SHAPE_IMG, 1, 28, 28},
              {"tokens(128)", PS_SHAPE_TOKENS, 128, 0, 0}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_int_equal(ps_netspec_parse(ok[i].text, "relu mse", &spec, &err), PS_OK);
        assert_int_equal(spec.input.kind, ok[i].kind);
        assert_true(spec.input.d[0] == ok[i].d0 && spec.input.d[1] == ok[i].d1 &&
                    spec.input.d[2] == ok[i].d2);
        ps_netspec_fini(&spec);
    }
    static const char *bad[] = {"", "abc", "0", "1x0x3", "1x2x3x4", "28x", "tokens(0)",
                                "tokens()", "-5", "1.5", "16777216x16777216x16777216"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(ps_netspec_parse(bad[i], "relu mse", &spec, &err), PS_EINVAL);
        assert_non_null(strstr(err.msg, "input '"));
        ps_netspec_fini(&spec);
    }
}

static void test_syntax_errors_name_the_layer(void **state)
{
    (void)state;
    expect_error("10", "dense(4) conv3d(2) mse", "layer 2 'conv3d(2)'", "unknown layer 'conv3d'");
    expect_error("1x8x8", "conv2d(8,3,pod=1) flatten mse", "layer 1 'conv2d(8,3,pod=1)'",
                 "unknown argument 'pod' (conv2d(out, k, stride=1, pad=0, bias=1))");
    expect_error("1x8x8", "conv2d(0,3) flatten mse", "layer 1 'conv2d(0,3)'",
                 "'out' = '0' must be a whole number 1..");
    expect_error("10", "dense(ten) mse", "layer 1 'dense(ten)'", "'ten' is not a number");
    expect_error("10", "dense(2.5) mse", "layer 1", "must be a whole number");
    expect_error("1x8x8", "relu conv2d(32) flatten mse", "layer 2 'conv2d(32)'",
                 "missing argument 'k'");
    expect_error("10", "dense mse", "layer 1 'dense'", "needs arguments: dense(out, bias=1)");
    expect_error("10", "relu(1) mse", "layer 1 'relu(1)'", "takes no arguments");
    expect_error("10", "dense(3,1,2) mse", "layer 1", "too many arguments");
    expect_error("10", "dense(3,out=4) mse", "layer 1", "'out' given twice");
    expect_error("10", "dense(3 relu mse", "layer 1", "'(' without ')'");
    expect_error("10", "dense(3) residual relu mse", "layer 2 'residual'", "needs '[ layers ]'");
    expect_error("10", "dense(3) ] mse", "layer 2 ']'", "no 'residual[' to close");
    expect_error("10", "dense(3) residual[ relu mse", "layer 4 'mse'",
                 "a loss must come last, outside brackets");
    expect_error("10", "dense(3) residual[ relu", "'residual[' at layer 2 is never closed", NULL);
    expect_error("10", "mse dense(3)", "layer 1 'mse'", "a loss must come last");
    expect_error("10", "dense(3) relu", "the last one must be the loss", "not 'relu'");
    expect_error("10", "", "the last one must be the loss", NULL);
    expect_error("10", "mse", "a layer must come before the loss", NULL);
    expect_error("10", "dense(3) , mse", "layer 2 ','", "not a layer name");
}

static void test_shape_mismatches_name_the_layer_and_shapes(void **state)
{
    (void)state;
    expect_error("1x28x28", "conv2d(8,3,stride=2) relu dense(10) cross_entropy",
                 "layer 3 'dense(10)'", "needs a vector or a sequence, got [8x13x13]: put flatten");
    expect_error("1x4x4", "conv2d(8,5) flatten mse", "layer 1 'conv2d(8,5)'",
                 "kernel 5 does not fit input [1x4x4] with pad 0");
    expect_error("1x8x8", "conv2d(2,3) maxpool(7) flatten mse", "layer 2 'maxpool(7)'",
                 "window 7 does not fit input [2x6x6]");
    expect_error("100", "conv2d(4,3) flatten mse", "layer 1 'conv2d(4,3)'",
                 "needs an image (channels x rows x columns), got [100]");
    expect_error("16", "dense(16) residual[ dense(8) ] mse", "layer 4 ']'",
                 "the residual branch maps [16] to [8]");
    expect_error("tokens(8)", "embed(50,12) attention(5) dense(50) cross_entropy",
                 "layer 2 'attention(5)'", "5 heads do not divide the width 12");
    expect_error("8x12", "dense(5) cross_entropy", "layer 2 'cross_entropy'",
                 "targets are its next tokens: needs input tokens(8)");
    expect_error("10", "embed(5,4) flatten mse", "layer 1 'embed(5,4)'", "needs tokens");
    expect_error("tokens(4)", "relu mse", "layer 1 'relu'", "embed them first");
    expect_error("10", "dense(3) bce", "layer 2 'bce'", "needs one output (a logit), got [3]");
    expect_error("10", "dense(1) cross_entropy", "layer 2", "needs >= 2 class scores");
    expect_error("10", "dense(4) dropout(1.5) dense(2) mse", "layer 2 'dropout(1.5)'",
                 "p must be in [0, 1)");
    expect_error("6", "posembed dense(2) mse", "layer 1 'posembed'", "needs a sequence, got [6]");
    expect_error("1x8x8", "conv2d(2,3,stride=0) flatten mse", "layer 1 'conv2d(2,3,stride=0)'",
                 "k and stride must be >= 1");
    expect_error("tokens(65536)", "embed(10,8) attention(2) dense(10) cross_entropy",
                 "layer 2 'attention(2)'", "more than 2^28 attention weights");
    expect_error("4096x64", "dense(16777216) flatten mse", "layer 1 'dense(16777216)'",
                 "68719476736 floats per sample, more than 268435456");
#ifndef __SANITIZE_ADDRESS__ /* ASan aborts on a request this size instead of failing it */
    expect_error("16777216", "dense(16777216) mse", "cannot allocate 281474993487872 parameters",
                 NULL);
#endif
}

static void test_old_models_as_specs(void **state)
{
    (void)state;
    static const struct {
        const char *layers;
        ps_net_task_t task;
    } m[] = {
        {"dense(1) mse", PS_NET_REGRESSOR},                             /* linear */
        {"dense(1) bce", PS_NET_CLASSIFIER},                            /* logistic */
        {"dense(10) cross_entropy", PS_NET_CLASSIFIER},                 /* softmax */
        {"dense(256) relu dense(128) relu dense(10) cross_entropy", PS_NET_CLASSIFIER}, /* mlp */
        {"dense(64) tanh dense(10) mse", PS_NET_CLASSIFIER}, /* mlp, one-hot mse */
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        ps_errbuf_t err = {0};
        ps_net_t *net = build("784", m[i].layers, &err);
        assert_non_null(net);
        assert_int_equal(ps_net_task(net), m[i].task);
        assert_int_equal(ps_net_is_classifier(net), m[i].task == PS_NET_CLASSIFIER);
        ps_net_destroy(&net);
    }
}

static void test_gpt_builder_tables_and_size(void **state)
{
    (void)state;
    const uint32_t L = 4, H = 4, D = 128, T = 128;
    ps_gpt_config_t cfg = {.n_layer = L, .n_head = H, .n_embd = D, .block_size = T};
    ps_netspec_t spec;
    ps_errbuf_t err;
    assert_int_equal(ps_netspec_gpt(&cfg, &spec, &err), PS_OK);
    ps_net_t *net = ps_net_new(&spec, 1, 0, &err);
    ps_netspec_fini(&spec);
    assert_non_null(net);
    static const char *first[] = {"wte.W", "wpe.W", "blocks.0.ln1.g", "blocks.0.ln1.b",
                                  "blocks.0.attn.qkv.W", "blocks.0.attn.qkv.b",
                                  "blocks.0.attn.proj.W", "blocks.0.attn.proj.b",
                                  "blocks.0.ln2.g", "blocks.0.ln2.b", "blocks.0.mlp.fc.W",
                                  "blocks.0.mlp.fc.b", "blocks.0.mlp.proj.W", "blocks.0.mlp.proj.b"};
    char name[64];
    for (uint32_t t = 0; t < sizeof first / sizeof first[0]; t++)
        assert_string_equal(ps_net_table_name(net, t, name, sizeof name), first[t]);
    uint32_t n = ps_net_n_tables(net);
    assert_int_equal(n, 2 + 12 * L + 3);
    assert_string_equal(ps_net_table_name(net, n - 3, name, sizeof name), "ln_f.g");
    assert_string_equal(ps_net_table_name(net, n - 1, name, sizeof name), "head.W");
    uint64_t per_block = 4 * D + (D * 3 * D + 3 * D) + (D * D + D) + (D * 4 * D + 4 * D) +
                         (4 * D * D + D);
    assert_int_equal(ps_net_n_params(net), 256 * D + T * D + L * per_block + 2 * D + D * 256);
    assert_int_equal(ps_net_input_len(net), T + 1);
    assert_int_equal(ps_net_task(net), PS_NET_LANGUAGE_MODEL);

    /* nanoGPT's init: N(0, 0.02), residual projections N(0, 0.02/sqrt(2L)) */
    ps_net_init_params(net, SEED);
    static const struct {
        uint32_t table;
        double std;
    } st[] = {{0, 0.02}, {4, 0.02}, {6, 0.02 / sqrt(8.0)}, {10, 0.02}, {12, 0.02 / sqrt(8.0)}};
    for (size_t i = 0; i < sizeof st / sizeof st[0]; i++) {
        const float *w = ps_net_params(net, st[i].table);
        uint64_t len = ps_net_table_len(net, st[i].table);
        double s2 = 0;
        for (uint64_t j = 0; j < len; j++)
            s2 += (double)w[j] * w[j];
        double std = sqrt(s2 / (double)len);
        if (fabs(std - st[i].std) > 0.03 * st[i].std)
            fprintf(stderr, "seed %d table %u: std %g, want %g\n", SEED, st[i].table, std,
                    st[i].std);
        assert_true(fabs(std - st[i].std) <= 0.03 * st[i].std);
    }
    assert_true(ps_net_params(net, 2)[5] == 1.0f && ps_net_params(net, 3)[5] == 0.0f);
    assert_true(ps_net_params(net, 5)[7] == 0.0f); /* qkv bias */
    ps_net_destroy(&net);
}

static void test_gpt_builder_refuses_bad_sizes(void **state)
{
    (void)state;
    ps_netspec_t spec;
    ps_errbuf_t err;
    ps_gpt_config_t cfg = {.n_layer = 2, .n_head = 3, .n_embd = 16, .block_size = 8};
    assert_int_equal(ps_netspec_gpt(&cfg, &spec, &err), PS_EINVAL);
    assert_non_null(strstr(err.msg, "n_head 3 does not divide n_embd 16"));
    ps_netspec_fini(&spec);
    cfg = (ps_gpt_config_t){.n_layer = 0, .n_head = 2, .n_embd = 16, .block_size = 8};
    assert_int_equal(ps_netspec_gpt(&cfg, &spec, &err), PS_EINVAL);
    ps_netspec_fini(&spec);
    cfg = (ps_gpt_config_t){.n_layer = 1, .n_head = 2, .n_embd = 16, .block_size = 8,
                            .dropout = 1.0};
    assert_int_equal(ps_netspec_gpt(&cfg, &spec, &err), PS_EINVAL);
    ps_netspec_fini(&spec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cnn_spec_builds_tables_and_shapes),
        cmocka_unit_test(test_parser_fills_defaults_and_named_arguments),
        cmocka_unit_test(test_input_shapes),
        cmocka_unit_test(test_syntax_errors_name_the_layer),
        cmocka_unit_test(test_shape_mismatches_name_the_layer_and_shapes),
        cmocka_unit_test(test_old_models_as_specs),
        cmocka_unit_test(test_gpt_builder_tables_and_size),
        cmocka_unit_test(test_gpt_builder_refuses_bad_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
