/* test_export.c - model.json + .npy written by ps_export_model load back
 * into the same net (tables, spec or GPT config), and what is wrong with a
 * directory that does not load is named: the file and the reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ps_export.h"
#include "ps_npy.h"
#include "ps_onnx.h"

typedef struct {
    char dir[64];
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/ps-test-export.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static ps_net_t *build(const ps_netdesc_t *d)
{
    ps_netspec_t spec;
    ps_errbuf_t err;
    assert_int_equal(ps_netdesc_spec(d, &spec, &err), PS_OK);
    ps_net_t *net = ps_net_new(&spec, 4, 0, &err);
    ps_netspec_fini(&spec);
    assert_non_null(net);
    ps_net_init_params(net, 5);
    return net;
}

static void save(const char *dir, const ps_netdesc_t *d, ps_net_t *net)
{
    ps_errbuf_t err;
    ps_export_info_t info = {d->is_gpt ? "gpt" : "net", d, 12, 5, NULL};
    if (ps_export_model(dir, &info, net, &err) != PS_OK)
        fail_msg("%s", err.msg);
}

static void check_round_trip(const char *dir, const ps_netdesc_t *d)
{
    ps_net_t *net = build(d);
    save(dir, d, net);
    ps_netdesc_t back;
    ps_errbuf_t err;
    ps_net_t *loaded = ps_export_load(dir, 2, &back, &err);
    if (!loaded)
        fail_msg("%s", err.msg);
    assert_int_equal(back.is_gpt, d->is_gpt);
    if (d->is_gpt)
        assert_memory_equal(&back.gpt, &d->gpt, sizeof d->gpt);
    else
        assert_string_equal(back.layers, d->layers);
    assert_int_equal(ps_net_n_tables(loaded), ps_net_n_tables(net));
    for (uint32_t t = 0; t < ps_net_n_tables(net); t++)
        assert_memory_equal(ps_net_params(loaded, t), ps_net_params(net, t),
                            ps_net_table_len(net, t) * sizeof(float));
    assert_int_equal(ps_net_max_batch(loaded), 2);
    ps_net_destroy(&loaded);
    ps_net_destroy(&net);
}

static void test_a_spec_and_a_gpt_load_back_as_saved(void **state)
{
    fixture_t *f = *state;
    ps_netdesc_t cnn = {.input = "2x8x8",
                        .layers = "conv2d(4,3,pad=1) relu maxpool(2) flatten dropout(0.1) "
                                  "dense(6) residual[ layernorm dense(6) gelu ] dense(3) "
                                  "cross_entropy"};
    check_round_trip(f->dir, &cnn);
    ps_netdesc_t gpt = {.is_gpt = true, .gpt = {2, 2, 16, 8, 0.1}};
    check_round_trip(f->dir, &gpt);
}

static void expect_load_error(const char *dir, const char *needle)
{
    ps_errbuf_t err = {0};
    assert_null(ps_export_load(dir, 1, NULL, &err));
    if (!strstr(err.msg, needle))
        fail_msg("error '%s' lacks '%s'", err.msg, needle);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void test_what_does_not_load_is_named(void **state)
{
    fixture_t *f = *state;
    expect_load_error(f->dir, "model.json"); /* none there yet */
    write_file(f->dir, "model.json", "{\"spec\": 3}");
    expect_load_error(f->dir, "neither a gpt object nor a spec");
    write_file(f->dir, "model.json", "{\"gpt\": {\"n_layer\": 0}}");
    expect_load_error(f->dir, "gpt.n_layer is not a size");
    write_file(f->dir, "model.json",
               "{\"spec\": {\"input\": \"4\", \"layers\": \"dense(2) conv3d relu mse\"}}");
    expect_load_error(f->dir, "unknown layer 'conv3d'");
    ps_netdesc_t d = {.input = "4", .layers = "dense(3) relu dense(2) mse"};
    ps_net_t *net = build(&d);
    save(f->dir, &d, net);
    ps_net_destroy(&net);
    /* a table of another shape */
    char path[128];
    ps_errbuf_t err;
    float v[6] = {0};
    snprintf(path, sizeof path, "%s/dense2.W.npy", f->dir);
    assert_int_equal(ps_npy_write(path, v, (uint64_t[]){2, 3}, 2, &err), PS_OK);
    expect_load_error(f->dir, "dense2.W.npy': not the shape");
    /* a table missing */
    unlink(path);
    expect_load_error(f->dir, "dense2.W.npy");
}

static void test_onnx_is_written_when_the_build_has_it(void **state)
{
    fixture_t *f = *state;
    ps_netdesc_t d = {.input = "1x6x6",
                      .layers = "conv2d(2,3) gelu avgpool(2) flatten dense(3) "
                                "cross_entropy"};
    ps_net_t *net = build(&d);
    char path[128];
    ps_errbuf_t err;
    snprintf(path, sizeof path, "%s/m.onnx", f->dir);
    int rc = ps_onnx_write(path, &d, net, &err);
    ps_net_destroy(&net);
    if (!ps_onnx_available()) {
        assert_int_equal(rc, PS_EINVAL);
        assert_non_null(strstr(err.msg, "no ONNX support"));
        return;
    }
    assert_int_equal(rc, PS_OK);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fclose(fp);
    /* the tables alone are 2*9 + 2 + 8*3 + 3 floats */
    assert_true(len > 47 * 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_spec_and_a_gpt_load_back_as_saved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_what_does_not_load_is_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_onnx_is_written_when_the_build_has_it, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
