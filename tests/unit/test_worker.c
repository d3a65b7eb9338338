/* test_worker.c - ps-worker's model options: the fixed models are the specs
 * docs/models.md lists, a layers spec is model net, model gpt takes its
 * options, and a bad model stops startup with an error naming the option,
 * the layer and what does not fit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ps_net.h"
#include "ps_worker.h"

/* A config with defaults, a server and data, then key value pairs. */
static void make_cfg(ps_worker_config_t *cfg, const char *const *kv)
{
    ps_errbuf_t err;
    assert_int_equal(ps_config_defaults(&ps_worker_optset, cfg), PS_OK);
    assert_int_equal(ps_config_set(&ps_worker_optset, cfg, "servers", "tcp://127.0.0.1:1", &err),
                     PS_OK);
    assert_int_equal(ps_config_set(&ps_worker_optset, cfg, "train_data", "x", &err), PS_OK);
    assert_int_equal(ps_config_set(&ps_worker_optset, cfg, "train_labels", "y", &err), PS_OK);
    ps_worker_config_env(cfg); /* rank and world */
    for (; kv && kv[0]; kv += 2) {
        if (ps_config_set(&ps_worker_optset, cfg, kv[0], kv[1], &err) != PS_OK)
            fail_msg("%s %s: %s", kv[0], kv[1], err.msg);
    }
}

static void expect_layers(const char *const *kv, size_t n_features, uint32_t n_classes,
                          const char *input, const char *layers)
{
    ps_worker_config_t cfg;
    ps_netdesc_t d;
    ps_errbuf_t err;
    make_cfg(&cfg, kv);
    assert_int_equal(ps_worker_config_validate(&cfg, &err), PS_OK);
    size_t n_out = 0; /* as the trainer: a fixed model's outputs from the labels */
    if (!*cfg.layers)
        assert_int_equal(ps_worker_outputs(&cfg, n_classes, &n_out, &err), PS_OK);
    assert_int_equal(ps_worker_model_desc(&cfg, n_features, n_out, &d, &err), PS_OK);
    assert_false(d.is_gpt);
    assert_string_equal(d.input, input);
    assert_string_equal(d.layers, layers);
}

static void test_fixed_models_are_the_specs_of_the_docs(void **state)
{
    (void)state;
    expect_layers((const char *[]){"model", "mlp", "hidden", "256,128", NULL}, 784, 10, "784",
                  "dense(256) relu dense(128) relu dense(10) cross_entropy");
    expect_layers((const char *[]){"model", "mlp", "hidden", "32", "activation", "tanh", "loss",
                                   "mse", "task", "classification", NULL},
                  20, 3, "20", "dense(32) tanh dense(3) mse");
    /* mse on whole-number labels, task auto: a regression of one output */
    expect_layers(
        (const char *[]){"model", "mlp", "hidden", "32", "activation", "tanh", "loss", "mse", NULL},
        20, 3, "20", "dense(32) tanh dense(1) mse");
    expect_layers((const char *[]){"model", "mlp", "hidden", "16", "data_format", "csv", NULL}, 8,
                  0, "8", "dense(16) relu dense(1) mse");
    expect_layers((const char *[]){"model", "softmax", NULL}, 784, 10, "784",
                  "dense(10) cross_entropy");
    expect_layers((const char *[]){"model", "linear", "data_format", "csv", NULL}, 20, 0, "20",
                  "dense(1) mse");
    expect_layers((const char *[]){"model", "logistic", "data_format", "csv", NULL}, 5, 2, "5",
                  "dense(1) bce");
}

static void test_a_layers_spec_is_model_net(void **state)
{
    (void)state;
    const char *spec = "conv2d(8,3,pad=1) relu maxpool(2) flatten dense(10) cross_entropy";
    expect_layers((const char *[]){"input", "1x28x28", "layers", spec, NULL}, 784, 10, "1x28x28",
                  spec);
    expect_layers((const char *[]){"model", "net", "layers", "dense(4) mse", NULL}, 7, 0, "7",
                  "dense(4) mse");
    ps_worker_config_t cfg;
    make_cfg(&cfg, (const char *[]){"layers", spec, NULL});
    assert_string_equal(ps_worker_model_name(&cfg), "net");
    assert_string_equal(ps_worker_model_option(&cfg), "layers");
}

static void test_model_gpt_takes_its_options(void **state)
{
    (void)state;
    ps_worker_config_t cfg;
    ps_netdesc_t d;
    ps_errbuf_t err;
    make_cfg(&cfg, (const char *[]){"model", "gpt", "data_format", "text", "train_labels", "",
                                    "n_layer", "2", "n_head", "2", "n_embd", "32", "block_size",
                                    "16", "dropout", "0.1", NULL});
    assert_int_equal(ps_worker_config_validate(&cfg, &err), PS_OK);
    assert_int_equal(ps_worker_model_desc(&cfg, 0, 0, &d, &err), PS_OK);
    assert_true(d.is_gpt);
    assert_int_equal(d.gpt.n_layer, 2);
    assert_int_equal(d.gpt.n_head, 2);
    assert_int_equal(d.gpt.n_embd, 32);
    assert_int_equal(d.gpt.block_size, 16);
    assert_true(d.gpt.dropout == 0.1);
}

static void expect_invalid(const char *const *kv, const char *msg_start)
{
    ps_worker_config_t cfg;
    ps_errbuf_t err = {0};
    make_cfg(&cfg, kv);
    assert_int_equal(ps_worker_config_validate(&cfg, &err), PS_EINVAL);
    if (strncmp(err.msg, msg_start, strlen(msg_start)) != 0)
        fail_msg("got '%s', expected it to start with '%s'", err.msg, msg_start);
}

static void test_bad_models_are_refused_naming_the_option(void **state)
{
    (void)state;
    expect_invalid((const char *[]){"layers", "dense(4) conv3d(2) mse", NULL},
                   "layers: layer 2 'conv3d(2)': unknown layer 'conv3d'");
    expect_invalid((const char *[]){"model", "softmax", "layers", "dense(4) mse", NULL},
                   "layers: set with model 'softmax'");
    expect_invalid((const char *[]){"model", "net", NULL}, "model net needs layers");
    expect_invalid((const char *[]){"layers", "dense(4) mse", "task", "regression", NULL},
                   "task: for the fixed models");
    expect_invalid((const char *[]){"input", "784", NULL}, "input: only for a layers spec");
    expect_invalid((const char *[]){"layers", "dense(4) mse", "loss", "ce", NULL},
                   "loss: a layers spec names its loss");
    expect_invalid((const char *[]){"input", "abc", "layers", "dense(4) mse", NULL},
                   "input 'abc': not a shape");
    expect_invalid((const char *[]){"model", "gpt", NULL}, "model gpt: trains on data_format text");
    expect_invalid((const char *[]){"model", "gpt", "data_format", "text", "train_labels", "",
                                    "n_head", "3", NULL},
                   "gpt: n_head 3 does not divide n_embd 128");
    expect_invalid((const char *[]){"data_format", "text", "train_labels", "", "input", "784",
                                    "layers", "dense(4) mse", NULL},
                   "input '784': data_format text needs tokens(T)");
    expect_invalid((const char *[]){"data_format", "text", "train_labels", "", NULL},
                   "data_format text: needs a language model");
    expect_invalid((const char *[]){"model", "mlp", "hidden", "256,x", NULL},
                   "hidden: 'x' is not a layer width");
}

/* The shapes are checked once the data says how wide a row is: the error
 * names the option and the layer, and says what it got. */
static void test_shape_errors_name_the_option_and_the_layer(void **state)
{
    (void)state;
    ps_worker_config_t cfg;
    ps_netdesc_t d;
    ps_netspec_t spec;
    ps_errbuf_t err;
    make_cfg(&cfg, (const char *[]){"input", "1x28x28", "layers",
                                    "conv2d(8,3) relu dense(10) cross_entropy", NULL});
    assert_int_equal(ps_worker_model_desc(&cfg, 784, 10, &d, &err), PS_OK);
    assert_int_equal(ps_netdesc_spec(&d, &spec, &err), PS_OK);
    assert_null(ps_net_new(&spec, 4, 0, &err));
    ps_netspec_fini(&spec);
    assert_int_equal(ps_worker_model_err(&cfg, PS_EINVAL, &err), PS_EINVAL);
    assert_string_equal(err.msg, "layers: layer 3 'dense(10)': needs a vector or a sequence, got "
                                 "[8x26x26]: put flatten before it");
    make_cfg(&cfg, (const char *[]){"model", "mlp", NULL});
    ps_err_set(&err, PS_EINVAL, "layer 1 'dense(0)': why");
    ps_worker_model_err(&cfg, PS_EINVAL, &err);
    assert_string_equal(err.msg, "model mlp: layer 1 'dense(0)': why");
}

/* Every option that changes what a net trains is in the job's
 * fingerprint: a worker started with another spec, GPT shape or text
 * window is refused by the shards instead of joining the job. Options
 * that do not change the model (where it is exported) are not. */
static void test_the_fingerprint_covers_the_net_options(void **state)
{
    (void)state;
    static const char *const changes[][2] = {
        {"layers", "dense(8) relu dense(2) cross_entropy"},
        {"input", "2x4x4"},
        {"n_layer", "2"},
        {"n_head", "2"},
        {"n_embd", "64"},
        {"block_size", "64"},
        {"dropout", "0.1"},
        {"text_stride", "32"},
        {"task", "regression"},
        /* streamed input decides which samples make each step's batch */
        {"stream", "yes"},
        {"partitions", "3"},
        {"shuffle_window", "7"},
        {"classes", "3"},
    };
    ps_worker_config_t base, other;
    char fp_base[4096], fp_other[4096];
    make_cfg(&base, NULL);
    ps_worker_fingerprint(&base, fp_base, sizeof fp_base);
    for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++) {
        make_cfg(&other, (const char *[]){changes[i][0], changes[i][1], NULL});
        ps_worker_fingerprint(&other, fp_other, sizeof fp_other);
        if (strcmp(fp_base, fp_other) == 0)
            fail_msg("%s %s leaves the fingerprint as it was", changes[i][0], changes[i][1]);
    }
    /* nor do how far the reader runs ahead or how long training waits for it */
    static const char *const same[][2] = {
        {"export_onnx", "/tmp/x.onnx"}, {"prefetch_batches", "9"}, {"reader_timeout_ms", "50"}};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        make_cfg(&other, (const char *[]){same[i][0], same[i][1], NULL});
        ps_worker_fingerprint(&other, fp_other, sizeof fp_other);
        assert_string_equal(fp_base, fp_other);
    }
}

/* What a streamed job cannot do is refused at startup, naming the option;
 * several files without stream yes too (the loader reads one file). */
static void test_stream_options_are_checked(void **state)
{
    (void)state;
    static const char *const refused[][9] = {
        {"stream", "yes", "val_fraction", "0.1", "val_fraction"},
        {"stream", "yes", "evals_per_epoch", "2", "evals_per_epoch"},
        {"stream", "yes", "train_subset", "10", "train_subset"},
        {"train_data", "/tmp/part-*.svm", NULL, NULL, "stream yes"},
        {"train_data", "/tmp", NULL, NULL, "stream yes"},
    };
    ps_worker_config_t cfg;
    ps_errbuf_t err;
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        make_cfg(&cfg, (const char *[]){"model", "sparse_lr", "data_format", "libsvm", "optimizer",
                                        "ftrl", refused[i][0], refused[i][1], refused[i][2],
                                        refused[i][3], NULL});
        assert_int_equal(ps_worker_config_validate(&cfg, &err), PS_EINVAL);
        if (!strstr(err.msg, refused[i][4]))
            fail_msg("%s %s: '%s' does not name %s", refused[i][0], refused[i][1], err.msg,
                     refused[i][4]);
    }
    make_cfg(&cfg, (const char *[]){"model", "sparse_lr", "data_format", "libsvm", "optimizer",
                                    "ftrl", "stream", "yes", "train_data", "/tmp/p-*", NULL});
    assert_int_equal(ps_worker_config_validate(&cfg, &err), PS_OK);
    /* a text corpus directory is one corpus (ps_text joins its files), not partitions */
    make_cfg(&cfg, (const char *[]){"model", "gpt", "data_format", "text", "train_data", "/tmp",
                                    "train_labels", "", "test_labels", "", NULL});
    if (ps_worker_config_validate(&cfg, &err) != PS_OK)
        fail_msg("a corpus directory: %s", err.msg);
    /* dense: what the format cannot say in advance, and what needs the whole set */
    static const char *const dense[][9] = {
        {"data_format", "csv", "stream", "yes", "classes: a streamed CSV job"},
        {"data_format", "csv", "lr_schedule", "cosine", "lr_schedule cosine: needs the job's"},
        {"data_format", "csv", "evals_per_epoch", "2", "evals_per_epoch: a streamed csv job"},
        {"data_format", "idx", "standardize", "yes", "standardize: needs the whole"},
        {"data_format", "records", "stream", "no", "data_format records: read with stream yes"},
        {"data_format", "idx", "stream", "no", "classes: for stream yes"},
    };
    for (size_t i = 0; i < sizeof dense / sizeof dense[0]; i++) {
        make_cfg(&cfg, (const char *[]){"stream", "yes", "classes", i == 0 ? "0" : "3", dense[i][0],
                                        dense[i][1], dense[i][2], dense[i][3], NULL});
        assert_int_equal(ps_worker_config_validate(&cfg, &err), PS_EINVAL);
        if (!strstr(err.msg, dense[i][4]))
            fail_msg("%s %s: '%s' does not name '%s'", dense[i][2], dense[i][3], err.msg,
                     dense[i][4]);
    }
    /* and what they can */
    static const char *const fine[][9] = {
        {"data_format", "csv", "classes", "3", "lr_schedule", "step", NULL},
        {"data_format", "csv", "task", "regression", NULL},
        {"data_format", "idx", "lr_schedule", "cosine", "evals_per_epoch", "4", NULL},
        {"data_format", "records", "model", "sparse_lr", "optimizer", "ftrl", NULL},
        {"data_format", "records", "model", "softmax", NULL},
    };
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
        const char *kv[12] = {"stream", "yes"};
        for (int k = 0; fine[i][k]; k++)
            kv[2 + k] = fine[i][k];
        make_cfg(&cfg, kv);
        if (ps_worker_config_validate(&cfg, &err) != PS_OK)
            fail_msg("%s %s: %s", fine[i][0], fine[i][1], err.msg);
    }
    /* a streamed text corpus: its windows are counted, so a cosine schedule
     * and evals_per_epoch work; a validation split does not */
    make_cfg(&cfg, (const char *[]){"stream", "yes", "data_format", "text", "model", "gpt",
                                    "train_labels", "", "val_fraction", "0", "lr_schedule",
                                    "cosine", "evals_per_epoch", "2", NULL});
    if (ps_worker_config_validate(&cfg, &err) != PS_OK)
        fail_msg("streamed text: %s", err.msg);
    make_cfg(&cfg, (const char *[]){"stream", "yes", "data_format", "text", "model", "gpt",
                                    "train_labels", "", "val_fraction", "0.1", NULL});
    assert_int_equal(ps_worker_config_validate(&cfg, &err), PS_EINVAL);
    assert_non_null(strstr(err.msg, "val_fraction: a streamed job has no validation split"));
}

/* A text corpus given as a directory is fingerprinted by what the reader
 * joins: a file that grows changes the job, a file the reader skips
 * ("*.dat", dot files) does not. */
static void test_the_fingerprint_covers_a_corpus_directory(void **state)
{
    (void)state;
    char dir[] = "/tmp/ps-test-corpus.XXXXXX", path[256];
    assert_non_null(mkdtemp(dir));
    const char *const files[] = {"a", "b", "b.dat", ".hidden"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs("some text\n", f);
        fclose(f);
    }
    ps_worker_config_t cfg;
    make_cfg(&cfg, (const char *[]){"data_format", "text", "train_data", dir, NULL});
    char before[4096], after[4096];
    ps_worker_fingerprint(&cfg, before, sizeof before);
    assert_non_null(strstr(before, "train_data.bytes=20\ntrain_data.files=2\n"));
    for (size_t i = 2; i < 4; i++) { /* the reader skips these: no change */
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        FILE *f = fopen(path, "a");
        fputs("more\n", f);
        fclose(f);
    }
    ps_worker_fingerprint(&cfg, after, sizeof after);
    assert_string_equal(before, after);
    snprintf(path, sizeof path, "%s/b", dir);
    FILE *f = fopen(path, "a");
    fputs("x", f);
    fclose(f);
    ps_worker_fingerprint(&cfg, after, sizeof after);
    if (strcmp(before, after) == 0)
        fail_msg("a corpus file grew and the fingerprint stayed:\n%s", after);
    /* a pattern (stream yes) is the files it matches */
    char pattern[300];
    snprintf(pattern, sizeof pattern, "%s/[ab]", dir);
    make_cfg(&cfg, (const char *[]){"data_format", "text", "train_data", pattern, NULL});
    ps_worker_fingerprint(&cfg, after, sizeof after);
    assert_non_null(strstr(after, "train_data.bytes=21\ntrain_data.files=2\n"));
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_models_are_the_specs_of_the_docs),
        cmocka_unit_test(test_a_layers_spec_is_model_net),
        cmocka_unit_test(test_model_gpt_takes_its_options),
        cmocka_unit_test(test_bad_models_are_refused_naming_the_option),
        cmocka_unit_test(test_shape_errors_name_the_option_and_the_layer),
        cmocka_unit_test(test_the_fingerprint_covers_the_net_options),
        cmocka_unit_test(test_the_fingerprint_covers_a_corpus_directory),
        cmocka_unit_test(test_stream_options_are_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
