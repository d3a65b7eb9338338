/* test_svm.c - the LIBSVM reader (labels, comments, 0/1-based indices,
 * hashing, malformed lines named by file:line) and the sparse models'
 * gradients against finite differences (logistic regression and the
 * factorization machine). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ps_metric.h"
#include "ps_rng.h"
#include "ps_sparse_trainer.h"
#include "ps_svm.h"

static char path[64];

static void write_file(const char *text)
{
    snprintf(path, sizeof path, "/tmp/ps-test-svm-%d.svm", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_reads_labels_comments_and_indices(void **state)
{
    (void)state;
    write_file("# a comment line\n"
               "+1 0:1 7:0.5 # trailing comment\n"
               "\n"
               "-1 3:2\n"
               "0 1:1e-3 2:-4\n"
               "1");
    ps_svm_t d;
    ps_errbuf_t err;
    assert_int_equal(ps_svm_load(path, 0, &d, &err), PS_OK);
    assert_int_equal(d.n, 4);
    assert_int_equal(d.nnz, 5);
    float y[4] = {1, 0, 0, 1};
    assert_memory_equal(d.y, y, sizeof y);
    assert_int_equal(d.row_ptr[1], 2);
    assert_int_equal(d.row_ptr[4], 5); /* the last sample has no features */
    assert_int_equal(d.keys[0], 0);
    assert_int_equal(d.keys[1], 7);
    assert_true(d.vals[1] == 0.5f && d.vals[4] == -4.0f);
    ps_svm_free(&d);
    /* hashed: the same index always gives the same key, within hash_bits */
    assert_int_equal(ps_svm_load(path, 10, &d, &err), PS_OK);
    assert_int_equal(d.keys[1], ps_svm_key(7, 10));
    for (size_t i = 0; i < d.nnz; i++)
        assert_true(d.keys[i] < 1024);
    ps_svm_free(&d);
    unlink(path);
}

/* Samples with a label and no feature, first in the file: nothing has
 * been allocated for keys yet (fuzz_data found the copy of zero features
 * to NULL + 0, undefined behaviour, in the ASan/UBSan build). */
static void test_samples_without_features_come_first(void **state)
{
    (void)state;
    write_file("1\n0\n1 4:2\n");
    ps_svm_t d;
    ps_errbuf_t err;
    assert_int_equal(ps_svm_load(path, 0, &d, &err), PS_OK);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.nnz, 1);
    assert_int_equal(d.row_ptr[2], 0);
    assert_int_equal(d.keys[0], 4);
    ps_svm_free(&d);
    unlink(path);
}

static void expect_error(const char *text, const char *where, const char *why)
{
    write_file(text);
    ps_svm_t d;
    ps_errbuf_t err;
    assert_int_equal(ps_svm_load(path, 20, &d, &err), PS_EFORMAT);
    char want[128];
    snprintf(want, sizeof want, *where ? "%s:%s" : "%s%s", path, where);
    if (!strstr(err.msg, want) || !strstr(err.msg, why))
        fail_msg("'%s' lacks '%s' or '%s'", err.msg, want, why);
    unlink(path);
}

static void test_malformed_lines_name_file_and_line(void **state)
{
    (void)state;
    expect_error("1 1:1\n2 3:1\n", "2:", "label");
    expect_error("1 1:1\n0 3:1\nx 1:1\n", "3:", "label");
    expect_error("1 1:1 4\n", "1:", "INDEX:VALUE");
    expect_error("1 1:1\n1 a:1\n", "2:", "INDEX:VALUE");
    expect_error("1 1:nan\n", "1:", "no finite value");
    expect_error("1 1:\n", "1:", "no finite value");
    expect_error("1 1:2x\n", "1:", "no finite value");
    expect_error("# only a comment\n\n", "", "no samples");
}

/* Loss of the sample as a function of one parameter, for finite differences. */
static double loss_at(uint32_t k, float *bias, float **rows, const float *x, size_t nf, float y)
{
    float scratch[16];
    return ps_sparse_sample_loss(k, bias, (const float *const *)rows, x, nf, y, scratch, NULL, NULL,
                                 NULL);
}

static void check_gradients(uint32_t k)
{
    ps_rng_t rng;
    ps_rng_seed(&rng, 3 + k);
    enum { NF = 5 };
    uint32_t dim = 1 + k;
    float store[NF][9], bias[9] = {0.3f}, x[NF];
    float *rows[NF];
    for (int j = 0; j < NF; j++) {
        rows[j] = store[j];
        x[j] = (float)(ps_rng_uniform(&rng) * 2 - 0.5);
        for (uint32_t f = 0; f < dim; f++)
            store[j][f] = (float)(ps_rng_normal(&rng) * 0.5);
    }
    for (int label = 0; label <= 1; label++) {
        float gstore[NF][9] = {{0}}, gbias[9] = {0}, scratch[16];
        float *grads[NF];
        for (int j = 0; j < NF; j++)
            grads[j] = gstore[j];
        ps_sparse_sample_loss(k, bias, (const float *const *)rows, x, NF, (float)label, scratch,
                              NULL, gbias, grads);
        const double h = 1e-3;
        for (int j = -1; j < NF; j++) {
            for (uint32_t f = 0; f < (j < 0 ? 1 : dim); f++) {
                float *p = j < 0 ? &bias[0] : &store[j][f];
                float saved = *p;
                *p = (float)(saved + h);
                double up = loss_at(k, bias, rows, x, NF, (float)label);
                *p = (float)(saved - h);
                double down = loss_at(k, bias, rows, x, NF, (float)label);
                *p = saved;
                double numeric = (up - down) / (2 * h);
                double analytic = j < 0 ? gbias[0] : gstore[j][f];
                if (fabs(numeric - analytic) > 2e-3 * (1 + fabs(numeric)))
                    fail_msg("k %u label %d row %d elem %u: analytic %g, numeric %g", k, label, j,
                             f, analytic, numeric);
            }
        }
    }
}

static void test_auc(void **state)
{
    (void)state;
    float s[4] = {0.1f, 0.4f, 0.35f, 0.8f}, y[4] = {0, 0, 1, 1};
    assert_true(fabs(ps_metric_auc(s, y, 4) - 0.75) < 1e-12); /* 3 of 4 pairs ordered */
    float tie[4] = {1, 1, 1, 1};
    assert_true(fabs(ps_metric_auc(tie, y, 4) - 0.5) < 1e-12);
    float one_class[2] = {1, 1};
    assert_true(ps_metric_auc(s, one_class, 2) == 0);
}

static void test_lr_gradient_matches_finite_differences(void **state)
{
    (void)state;
    check_gradients(0);
}

static void test_fm_gradient_matches_finite_differences(void **state)
{
    (void)state;
    check_gradients(4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_labels_comments_and_indices),
        cmocka_unit_test(test_samples_without_features_come_first),
        cmocka_unit_test(test_malformed_lines_name_file_and_line),
        cmocka_unit_test(test_auc),
        cmocka_unit_test(test_lr_gradient_matches_finite_differences),
        cmocka_unit_test(test_fm_gradient_matches_finite_differences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
