/* test_npy.c - .npy writer and reader agree, headers are aligned. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
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

/* A .npy file of a raw header dict (padded here) followed by n_data bytes. */
static void write_crafted(const char *path, const char *dict, const void *data, size_t n_data)
{
    char hdr[512];
    size_t len = strlen(dict);
    size_t pad = (64 - (10 + len + 1) % 64) % 64;
    memcpy(hdr, dict, len);
    memset(hdr + len, ' ', pad);
    hdr[len + pad] = '\n';
    size_t hlen = len + pad + 1;
    unsigned char head[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                              (unsigned char)(hlen >> 8)};
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(head, 1, 10, f), 10);
    assert_int_equal(fwrite(hdr, 1, hlen, f), hlen);
    if (n_data)
        assert_int_equal(fwrite(data, 1, n_data, f), n_data);
    fclose(f);
}

static int read_crafted(const char *dict, const void *data, size_t n_data, ps_errbuf_t *err)
{
    const char *path = "/tmp/ps_test_npy_crafted.npy";
    write_crafted(path, dict, data, n_data);
    float *back = (float *)1;
    uint64_t shape[PS_NPY_MAX_DIMS];
    int ndim;
    int rc = ps_npy_read(path, &back, shape, &ndim, err);
    if (rc == PS_OK)
        free(back);
    else
        assert_null(back);
    unlink(path);
    return rc;
}

static void test_reader_rejects_shape_whose_count_overflows(void **state)
{
    (void)state;
    float four[4] = {1, 2, 3, 4};
    ps_errbuf_t err;
    /* (2^62 + 1) * 4 elements wraps to 4 in 64 bits: the 16 bytes present
     * must not pass for an array of that shape */
    assert_int_equal(read_crafted("{'descr': '<f4', 'fortran_order': False, "
                                  "'shape': (4611686018427387905, 4), }",
                                  four, sizeof four, &err),
                     PS_EFORMAT);
    assert_non_null(strstr(err.msg, "overflow"));
    /* 2^62 elements of 4 bytes: the byte count overflows */
    assert_int_equal(read_crafted("{'descr': '<f4', 'fortran_order': False, "
                                  "'shape': (4611686018427387904,), }",
                                  four, sizeof four, &err),
                     PS_EFORMAT);
    /* a dimension that does not fit 64 bits */
    assert_int_equal(read_crafted("{'descr': '<f4', 'fortran_order': False, "
                                  "'shape': (99999999999999999999999,), }",
                                  four, sizeof four, &err),
                     PS_EFORMAT);
}

static void test_reader_checks_data_size_against_shape(void **state)
{
    (void)state;
    float three[3] = {1, 2, 3};
    ps_errbuf_t err;
    const char *two = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
    assert_int_equal(read_crafted(two, three, 8, &err), PS_OK);
    assert_int_equal(read_crafted(two, three, 12, &err), PS_EFORMAT); /* trailing bytes */
    assert_non_null(strstr(err.msg, "12 data bytes, the shape needs 8"));
    assert_int_equal(read_crafted(two, three, 7, &err), PS_EFORMAT); /* truncated */
    /* a huge but valid shape is refused before any allocation */
    assert_int_equal(read_crafted("{'descr': '<f4', 'fortran_order': False, "
                                  "'shape': (100000000000,), }",
                                  three, 12, &err),
                     PS_EFORMAT);
}

static void test_reader_parses_the_header_not_substrings(void **state)
{
    (void)state;
    float two[2] = {1, 2};
    ps_errbuf_t err;
    static const char *bad[] = {
        /* '<f4' elsewhere than in descr */
        "{'descr': '>f4', 'x': '<f4', 'fortran_order': False, 'shape': (2,), }",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
        "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }",
        "{'descr': '<f4', 'fortran_order': False, }",
        "{'descr': '<f4', 'shape': (2,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'shape': (1, 2), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,) junk }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,2), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = read_crafted(bad[i], two, sizeof two, &err);
        if (rc != PS_EFORMAT)
            fail_msg("accepted header %s", bad[i]);
    }
    /* NumPy's own spellings: any key order, no trailing comma, scalar shape */
    assert_int_equal(read_crafted("{'shape': (2,), 'fortran_order': False, 'descr': '<f4'}", two,
                                  sizeof two, &err),
                     PS_OK);
    assert_int_equal(read_crafted("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }",
                                  two, sizeof two, &err),
                     PS_OK);
    assert_int_equal(read_crafted("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", two,
                                  4, &err),
                     PS_OK);
}

static void test_writer_writes_little_endian(void **state)
{
    (void)state;
    const char *path = "/tmp/ps_test_npy_le.npy";
    float data[2] = {1.0f, -2.5f}; /* 0x3f800000, 0xc0200000 */
    uint64_t shape[1] = {2};
    ps_errbuf_t err;
    assert_int_equal(ps_npy_write(path, data, shape, 1, &err), PS_OK);
    unsigned char bytes[136];
    FILE *f = fopen(path, "rb");
    assert_int_equal(fread(bytes, 1, sizeof bytes, f), 136); /* 128 header + 8 */
    fclose(f);
    const unsigned char want[8] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x20, 0xc0};
    assert_memory_equal(bytes + 128, want, 8);
    unlink(path);
}

/* The old writer opened "PATH.tmp.PID" with fopen("wb"): a symlink planted
 * under that name made it overwrite the symlink's target. */
static void test_writer_never_follows_a_planted_temp_name(void **state)
{
    (void)state;
    char dir[] = "/tmp/ps_test_npy_dir_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], planted[300], victim[300];
    snprintf(path, sizeof path, "%s/model.npy", dir);
    snprintf(victim, sizeof victim, "%s/victim", dir);
    snprintf(planted, sizeof planted, "%s.tmp.%d", path, (int)getpid());
    FILE *v = fopen(victim, "w");
    fputs("precious", v);
    fclose(v);
    assert_int_equal(symlink(victim, planted), 0);
    float data[2] = {1, 2};
    uint64_t shape[1] = {2};
    ps_errbuf_t err;
    assert_int_equal(ps_npy_write(path, data, shape, 1, &err), PS_OK);
    char got[32] = "";
    v = fopen(victim, "r");
    assert_non_null(fgets(got, sizeof got, v));
    fclose(v);
    assert_string_equal(got, "precious");
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    /* nothing but the three names is left in the directory */
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    assert_int_equal(n, 3);
    unlink(planted);
    unlink(victim);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_2d_and_1d),
        cmocka_unit_test(test_reader_rejects_other_files),
        cmocka_unit_test(test_reader_rejects_shape_whose_count_overflows),
        cmocka_unit_test(test_reader_checks_data_size_against_shape),
        cmocka_unit_test(test_reader_parses_the_header_not_substrings),
        cmocka_unit_test(test_writer_writes_little_endian),
        cmocka_unit_test(test_writer_never_follows_a_planted_temp_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
