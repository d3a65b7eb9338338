/* test_npy.c - .npy writer and reader agree, headers are aligned. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ps_npy.h"

static void test_round_trip_2d_and_1d(void **state)
{
    (void)state;
    const char *path = "/tmp/ps_test_npy.npy";
    float data[6] = {1, 2, 3, 4, 5, -6.5f};
    uint64_t shape[2] = {2, 3};
    ps_errbuf_t err;
    for (int ndim = 1; ndim <= 2; ndim++) {
        uint64_t s[2] = {ndim == 1 ? 6 : shape[0], shape[1]};
        assert_int_equal(ps_npy_write(path, data, s, ndim, &err), PS_OK);
        float *back;
        uint64_t got[PS_NPY_MAX_DIMS];
        int got_ndim;
        assert_int_equal(ps_npy_read(path, &back, got, &got_ndim, &err), PS_OK);
        assert_int_equal(got_ndim, ndim);
        assert_int_equal(got[0], s[0]);
        assert_memory_equal(back, data, sizeof data);
        free(back);
        FILE *f = fopen(path, "rb");
        unsigned char head[10];
        assert_int_equal(fread(head, 1, 10, f), 10);
        fclose(f);
        assert_int_equal((10 + head[8] + 256 * head[9]) % 64, 0);
    }
    unlink(path);
}

static void test_reader_rejects_other_files(void **state)
{
    (void)state;
    const char *path = "/tmp/ps_test_npy_bad.npy";
    FILE *f = fopen(path, "w");
    fputs("not numpy", f);
    fclose(f);
    float *data;
    uint64_t shape[PS_NPY_MAX_DIMS];
    int ndim;
    ps_errbuf_t err;
    assert_int_equal(ps_npy_read(path, &data, shape, &ndim, &err), PS_EFORMAT);
    assert_non_null(strstr(err.msg, path));
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_2d_and_1d),
        cmocka_unit_test(test_reader_rejects_other_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
