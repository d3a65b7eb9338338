/* test_data.c - IDX and CSV readers on good and malformed files. */
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
#include <zlib.h>

#include "ps_data.h"

static char dir[] = "/tmp/ps_test_data_XXXXXX";

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

static void write_gz(const char *name, const void *data, size_t len)
{
    gzFile f = gzopen(path_of(name), "wb");
    assert_non_null(f);
    assert_int_equal(gzwrite(f, data, (unsigned)len), (int)len);
    gzclose(f);
}

static void write_text(const char *name, const char *text)
{
    FILE *f = fopen(path_of(name), "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* 3 images of 2x2 and their labels. */
static void write_idx_pair(const char *img, const char *lab, size_t img_bytes, uint8_t label_n)
{
    unsigned char images[16 + 12] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2};
    for (int i = 0; i < 12; i++)
        images[16 + i] = (unsigned char)(i * 20);
    unsigned char labels[8 + 3] = {0, 0, 8, 1, 0, 0, 0, label_n, 2, 0, 1};
    write_gz(img, images, img_bytes);
    write_gz(lab, labels, sizeof labels);
}

static void test_idx_reads_images_and_labels(void **state)
{
    (void)state;
    write_idx_pair("i.gz", "l.gz", 28, 3);
    ps_dataset_t ds;
    ps_errbuf_t err;
    assert_int_equal(ps_data_load_idx(path_of("i.gz"), path_of("l.gz"), &ds, &err), PS_OK);
    assert_int_equal(ds.n, 3);
    assert_int_equal(ds.d, 4);
    assert_int_equal(ds.n_classes, 3);
    assert_true(fabsf(ds.x[5] - 100.0f / 255.0f) < 1e-7f);
    assert_true(ds.y[0] == 2.0f && ds.y[2] == 1.0f);
    ps_data_free(&ds);
    ps_data_free(&ds);
}

/* Pixels kept as bytes (a quarter of the memory) give, batch by batch
 * and after a split, the very floats the float loader gives. */
static void test_idx_bytes_gather_the_same_floats(void **state)
{
    (void)state;
    write_idx_pair("b.gz", "bl.gz", 28, 3);
    ps_dataset_t f, b, fv, bv;
    ps_errbuf_t err;
    assert_int_equal(ps_data_load_idx(path_of("b.gz"), path_of("bl.gz"), &f, &err), PS_OK);
    assert_int_equal(ps_data_load_idx_bytes(path_of("b.gz"), path_of("bl.gz"), &b, &err), PS_OK);
    assert_null(b.x);
    assert_non_null(b.x8);
    assert_int_equal(b.n, 3);
    assert_int_equal(b.n_classes, 3);
    const uint32_t idx[3] = {2, 0, 1};
    float xf[12], yf[3], xb[12], yb[3];
    ps_data_gather(&f, idx, 3, xf, yf);
    ps_data_gather(&b, idx, 3, xb, yb);
    assert_memory_equal(xf, xb, sizeof xf);
    assert_memory_equal(yf, yb, sizeof yf);
    for (size_t k = 0; k < 12; k++)
        assert_true(ps_data_value(&b, k) == f.x[k]);
    assert_int_equal(ps_data_split(&f, 0.34, 0, 9, &fv, &err), PS_OK);
    assert_int_equal(ps_data_split(&b, 0.34, 0, 9, &bv, &err), PS_OK);
    assert_int_equal(b.n, 2);
    assert_memory_equal(f.x, b.x, b.n * b.d * sizeof *b.x);
    assert_memory_equal(fv.x, bv.x, bv.n * bv.d * sizeof *bv.x);
    ps_data_free(&f);
    ps_data_free(&fv);
    ps_data_free(&bv);
    ps_data_free(&b);
    assert_int_equal(ps_data_load_idx_bytes(path_of("b.gz"), path_of("bl.gz"), &b, &err), PS_OK);
    ps_data_widen(&b);
    assert_null(b.x8);
    ps_data_load_idx(path_of("b.gz"), path_of("bl.gz"), &f, &err);
    assert_memory_equal(f.x, b.x, 12 * sizeof *b.x);
    ps_data_free(&f);
    ps_data_free(&b);
}

/* A pipeline stage's part of a set: the features only (stage 0), the
 * labels only (the last), neither (a middle one); each with the count, the
 * width and the class count of the whole; gather and split fill only the
 * parts held, the same values as the whole set's. */
static void test_parts_keep_only_what_a_stage_reads(void **state)
{
    (void)state;
    write_idx_pair("p.gz", "pl.gz", 28, 3);
    write_text("p.csv", "1,0,2\n3,1,4\n5,2,6\n");
    ps_dataset_t all, xs, ys, none, c_all, c_x, c_y;
    ps_errbuf_t err;
    const char *img = path_of("p.gz"), *lab = path_of("pl.gz");
    assert_int_equal(ps_data_load_idx_bytes(img, lab, &all, &err), PS_OK);
    assert_int_equal(ps_data_load_idx_part(img, lab, true, PS_DATA_FEATURES, &xs, &err), PS_OK);
    assert_int_equal(ps_data_load_idx_part(img, lab, true, PS_DATA_LABELS, &ys, &err), PS_OK);
    assert_int_equal(ps_data_load_idx_part(img, lab, false, 0, &none, &err), PS_OK);
    assert_non_null(xs.x8);
    assert_null(xs.y);
    assert_true(!ys.x && !ys.x8 && ys.y);
    assert_true(!none.x && !none.x8 && !none.y);
    for (const ps_dataset_t *p = &xs; p; p = p == &xs ? &ys : p == &ys ? &none : NULL) {
        assert_int_equal(p->n, 3);
        assert_int_equal(p->d, 4);
        assert_int_equal(p->n_classes, 3);
    }
    const uint32_t idx[3] = {2, 0, 1};
    float xa[12], ya[3], xp[12] = {0}, yp[3] = {0};
    ps_data_gather(&all, idx, 3, xa, ya);
    ps_data_gather(&xs, idx, 3, xp, NULL);
    ps_data_gather(&ys, idx, 3, NULL, yp);
    ps_data_gather(&none, idx, 3, NULL, NULL);
    assert_memory_equal(xa, xp, sizeof xa);
    assert_memory_equal(ya, yp, sizeof ya);
    ps_dataset_t v;
    assert_int_equal(ps_data_split(&ys, 0, 2, 9, &v, &err), PS_OK); /* train_subset 2 */
    assert_true(ys.n == 2 && !ys.x && ys.y);
    assert_int_equal(ps_data_load_csv(path_of("p.csv"), 1, &c_all, &err), PS_OK);
    assert_int_equal(ps_data_load_csv_part(path_of("p.csv"), 1, PS_DATA_FEATURES, &c_x, &err),
                     PS_OK);
    assert_int_equal(ps_data_load_csv_part(path_of("p.csv"), 1, PS_DATA_LABELS, &c_y, &err),
                     PS_OK);
    assert_true(c_x.n == 3 && c_x.d == 2 && c_x.x && !c_x.y && c_x.n_classes == 3);
    assert_true(c_y.n == 3 && c_y.d == 2 && !c_y.x && c_y.y && c_y.n_classes == 3);
    assert_memory_equal(c_x.x, c_all.x, 6 * sizeof(float));
    assert_memory_equal(c_y.y, c_all.y, 3 * sizeof(float));
    ps_dataset_t *sets[] = {&all, &xs, &ys, &none, &c_all, &c_x, &c_y};
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++)
        ps_data_free(sets[i]);
}

static void test_idx_truncated_names_the_file(void **state)
{
    (void)state;
    write_idx_pair("ti.gz", "tl.gz", 20, 3);
    ps_dataset_t ds;
    ps_errbuf_t err;
    assert_int_equal(ps_data_load_idx(path_of("ti.gz"), path_of("tl.gz"), &ds, &err), PS_EFORMAT);
    assert_non_null(strstr(err.msg, "ti.gz"));
    assert_non_null(strstr(err.msg, "truncated"));
    assert_null(ds.x);
}

static void test_idx_bad_magic_and_count_mismatch(void **state)
{
    (void)state;
    write_gz("bad.gz", "\x12\x34\x08\x03", 4);
    write_idx_pair("i2.gz", "l2.gz", 28, 4);
    ps_dataset_t ds;
    ps_errbuf_t err;
    assert_int_equal(ps_data_load_idx(path_of("bad.gz"), path_of("l2.gz"), &ds, &err), PS_EFORMAT);
    assert_non_null(strstr(err.msg, "bad magic"));
    assert_int_equal(ps_data_load_idx(path_of("i2.gz"), path_of("l2.gz"), &ds, &err), PS_EFORMAT);
    assert_non_null(strstr(err.msg, "4 labels"));
    assert_int_equal(ps_data_load_idx(path_of("missing.gz"), path_of("l2.gz"), &ds, &err), PS_EIO);
    assert_non_null(strstr(err.msg, "missing.gz"));
}

static void test_csv_with_header_and_label_column(void **state)
{
    (void)state;
    write_text("a.csv", "f1,label,f2\n1.5,0,2\n-1,1,3e2\n\n4,2,5\n");
    ps_dataset_t ds;
    ps_errbuf_t err;
    assert_int_equal(ps_data_load_csv(path_of("a.csv"), 1, &ds, &err), PS_OK);
    assert_int_equal(ds.n, 3);
    assert_int_equal(ds.d, 2);
    assert_true(ds.x[0] == 1.5f && ds.x[1] == 2.0f && ds.x[3] == 300.0f);
    assert_true(ds.y[2] == 2.0f);
    assert_int_equal(ds.n_classes, 3);
    ps_data_free(&ds);
    write_text("r.csv", "1,2,0.5\n3,4,-7.25\n");
    assert_int_equal(ps_data_load_csv(path_of("r.csv"), -1, &ds, &err), PS_OK);
    assert_int_equal(ds.n_classes, 0); /* real-valued targets */
    assert_true(ds.y[1] == -7.25f);
    ps_data_free(&ds);
}

static void test_csv_ragged_and_non_numbers_name_file_and_line(void **state)
{
    (void)state;
    ps_dataset_t ds;
    ps_errbuf_t err;
    write_text("rag.csv", "1,2,3\n4,5\n");
    assert_int_equal(ps_data_load_csv(path_of("rag.csv"), -1, &ds, &err), PS_EFORMAT);
    assert_non_null(strstr(err.msg, "rag.csv:2:"));
    write_text("nan.csv", "1,2,3\n4,abc,6\n");
    assert_int_equal(ps_data_load_csv(path_of("nan.csv"), -1, &ds, &err), PS_EFORMAT);
    assert_non_null(strstr(err.msg, "nan.csv:2: field 2 'abc'"));
    write_text("empty.csv", "x,y\n");
    assert_int_equal(ps_data_load_csv(path_of("empty.csv"), -1, &ds, &err), PS_EFORMAT);
    write_text("inf.csv", "1,inf\n");
    assert_int_equal(ps_data_load_csv(path_of("inf.csv"), -1, &ds, &err), PS_EFORMAT);
}

static void test_standardize_and_gather(void **state)
{
    (void)state;
    float x[] = {1, 10, 3, 10, 5, 10};
    float y[] = {0, 1, 2};
    ps_dataset_t ds = {.n = 3, .d = 2, .x = x, .y = y};
    ps_data_standardize(&ds, NULL, NULL);
    assert_true(x[2] == 0.0f && x[0] < 0 && x[4] > 0);
    assert_true(x[1] == 0.0f); /* constant feature: centred only */
    uint32_t idx[2] = {2, 0};
    float bx[4], by[2];
    ps_data_gather(&ds, idx, 2, bx, by);
    assert_true(bx[0] == x[4] && by[0] == 2.0f && by[1] == 0.0f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idx_reads_images_and_labels),
        cmocka_unit_test(test_idx_bytes_gather_the_same_floats),
        cmocka_unit_test(test_parts_keep_only_what_a_stage_reads),
        cmocka_unit_test(test_idx_truncated_names_the_file),
        cmocka_unit_test(test_idx_bad_magic_and_count_mismatch),
        cmocka_unit_test(test_csv_with_header_and_label_column),
        cmocka_unit_test(test_csv_ragged_and_non_numbers_name_file_and_line),
        cmocka_unit_test(test_standardize_and_gather),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
