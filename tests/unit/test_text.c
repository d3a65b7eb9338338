/* test_text.c - the byte-level corpus: split, windows, the epoch shuffle,
 * the validation set, directories of files, and errors that name the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ps_text.h"

static char dir[] = "/tmp/ps_test_text_XXXXXX";

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *path_of(const char *name)
{
    static char buf[8][256];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

/* 100 bytes 0..99 (as chars): 20 validation bytes, 80 for training. */
static ps_text_t *open_counting(size_t block, size_t stride)
{
    char buf[100];
    for (int i = 0; i < 100; i++)
        buf[i] = (char)i;
    write_file(path_of("count"), buf, sizeof buf);
    ps_text_opts_t o = {.block_size = block, .val_fraction = 0.2, .stride = stride};
    ps_errbuf_t err;
    ps_text_t *t = ps_text_open(path_of("count"), &o, &err);
    assert_non_null(t);
    return t;
}

static void test_split_and_windows(void **state)
{
    (void)state;
    ps_text_t *t = open_counting(4, 0);
    assert_int_equal(ps_text_n_bytes(t), 100);
    assert_int_equal(ps_text_n_train_bytes(t), 80);
    assert_int_equal(ps_text_n_val_bytes(t), 20);
    assert_int_equal(ps_text_row_len(t), 5);
    assert_int_equal(ps_text_n_windows(t), 76); /* starts 0..75, all inside the training part */
    uint32_t idx[2] = {75, 3};
    float x[10], y[2] = {9, 9};
    ps_text_gather(t, idx, 2, x, y);
    for (int j = 0; j < 5; j++) {
        assert_true(x[j] == (float)(75 + j));
        assert_true(x[5 + j] == (float)(3 + j));
    }
    assert_true(y[0] == 0 && y[1] == 0);
    ps_text_destroy(&t);
    ps_text_destroy(&t); /* twice is safe */

    t = open_counting(4, 3); /* starts 0, 3, ..., 75 */
    assert_int_equal(ps_text_n_windows(t), 26);
    idx[0] = 25;
    ps_text_gather(t, idx, 1, x, NULL);
    assert_true(x[0] == 75.0f && x[4] == 79.0f);
    ps_text_destroy(&t);
}

static void test_epoch_order_is_a_seeded_permutation(void **state)
{
    (void)state;
    ps_text_t *t = open_counting(4, 0);
    uint32_t n = ps_text_n_windows(t), a[76], b[76], c[76];
    ps_text_epoch_order(t, 7, 0, a);
    ps_text_epoch_order(t, 7, 0, b);
    ps_text_epoch_order(t, 7, 1, c);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
    int seen[76] = {0};
    for (uint32_t i = 0; i < n; i++)
        seen[a[i]]++;
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(seen[i], 1);
    ps_text_destroy(&t);
}

static void test_validation_windows_cover_the_tail(void **state)
{
    (void)state;
    ps_text_t *t = open_counting(4, 0);
    ps_dataset_t ds;
    ps_text_val_dataset(t, &ds);
    /* bytes 80..99: windows from 80, 84, 88, 92 (96 + 5 would run past the end) */
    assert_int_equal(ds.n, 4);
    assert_int_equal(ds.d, 5);
    for (size_t i = 0; i < ds.n; i++)
        for (size_t j = 0; j < 5; j++)
            assert_true(ds.x[i * 5 + j] == (float)(80 + 4 * i + j));
    free(ds.x);
    free(ds.y);
    ps_text_destroy(&t);
}

/* A test corpus: both parts, windows every block_size bytes from 0. */
static void test_all_windows_cover_the_whole_corpus(void **state)
{
    (void)state;
    ps_text_t *t = open_counting(4, 0);
    ps_dataset_t ds;
    ps_text_all_dataset(t, &ds);
    /* windows from 0, 4, ..., 92 (96 + 5 would run past byte 99) */
    assert_int_equal(ds.n, 24);
    assert_int_equal(ds.d, 5);
    for (size_t i = 0; i < ds.n; i++)
        for (size_t j = 0; j < 5; j++)
            assert_true(ds.x[i * 5 + j] == (float)(4 * i + j));
    free(ds.x);
    free(ds.y);
    ps_text_destroy(&t);
}

static void test_directory_joins_data_files_in_name_order(void **state)
{
    (void)state;
    char sub[300];
    snprintf(sub, sizeof sub, "%s/corpus", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    char p[400];
    snprintf(p, sizeof p, "%s/b", sub);
    write_file(p, "BBBB", 4);
    snprintf(p, sizeof p, "%s/a", sub);
    write_file(p, "AAAAAA", 6);
    snprintf(p, sizeof p, "%s/a.dat", sub); /* strfile index: skipped */
    write_file(p, "xxxxxxxx", 8);
    snprintf(p, sizeof p, "%s/.hidden", sub);
    write_file(p, "hh", 2);
    char target[400];
    snprintf(target, sizeof target, "%s/a", sub);
    snprintf(p, sizeof p, "%s/a.u8", sub); /* symlink to a: skipped */
    assert_int_equal(symlink(target, p), 0);
    ps_text_opts_t o = {.block_size = 3};
    ps_errbuf_t err;
    ps_text_t *t = ps_text_open(sub, &o, &err);
    assert_non_null(t);
    assert_int_equal(ps_text_n_bytes(t), 10);
    assert_memory_equal(ps_text_bytes(t), "AAAAAABBBB", 10);
    assert_int_equal(ps_text_n_val_bytes(t), 0);
    ps_dataset_t ds;
    ps_text_val_dataset(t, &ds);
    assert_int_equal(ds.n, 0);
    ps_text_destroy(&t);
}

static void test_errors_name_the_file(void **state)
{
    (void)state;
    ps_errbuf_t err;
    ps_text_opts_t o = {.block_size = 8, .val_fraction = 0.1};
    assert_null(ps_text_open(path_of("missing"), &o, &err));
    assert_non_null(strstr(err.msg, "cannot open '"));
    assert_non_null(strstr(err.msg, "/missing': No such file"));
    write_file(path_of("empty"), "", 0);
    assert_null(ps_text_open(path_of("empty"), &o, &err));
    assert_non_null(strstr(err.msg, "/empty' is empty"));
    write_file(path_of("short"), "0123456789abcdef", 16);
    assert_null(ps_text_open(path_of("short"), &o, &err)); /* 2 validation bytes < 9 */
    assert_non_null(strstr(err.msg, "/short' has 16 bytes"));
    o.val_fraction = 0;
    o.block_size = 16;
    assert_null(ps_text_open(path_of("short"), &o, &err)); /* a window is 17 bytes */
    assert_non_null(strstr(err.msg, "shorter than one window of 17 bytes"));
    o.block_size = 0;
    assert_null(ps_text_open(path_of("short"), &o, &err));
    assert_non_null(strstr(err.msg, "block_size must be >= 1"));
}

static void test_fortunes_corpus_loads_when_installed(void **state)
{
    (void)state;
    const char *fortunes = "/usr/share/games/fortunes";
    if (access(fortunes, R_OK) != 0)
        skip();
    ps_text_opts_t o = {.block_size = 128, .val_fraction = 0.1};
    ps_errbuf_t err;
    ps_text_t *t = ps_text_open(fortunes, &o, &err);
    assert_non_null(t);
    assert_true(ps_text_n_bytes(t) > 1000000);
    assert_true(ps_text_n_val_bytes(t) > 100000);
    ps_text_destroy(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_and_windows),
        cmocka_unit_test(test_epoch_order_is_a_seeded_permutation),
        cmocka_unit_test(test_validation_windows_cover_the_tail),
        cmocka_unit_test(test_all_windows_cover_the_whole_corpus),
        cmocka_unit_test(test_directory_joins_data_files_in_name_order),
        cmocka_unit_test(test_errors_name_the_file),
        cmocka_unit_test(test_fortunes_corpus_loads_when_installed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
