/* test_stream.c - the partitioned, streamed LIBSVM reader: byte ranges cut
 * at line boundaries cover every line once, a partition's batches do not
 * depend on who reads it (one worker reading N partitions with batch N*b
 * sees the N workers' batches side by side), the windowed shuffle is a
 * permutation per pass, a restart at batch k gives batch k, and errors name
 * the file and line or byte and fail the stream. */
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

#include "ps_stream.h"

static char dir[64], file[96];

/* n lines; line i is sample i: "LABEL i:1" with varying widths */
static void write_samples(const char *path, int n)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < n; i++)
        fprintf(f, "%d %d:1%s\n", i % 2, i, i % 7 == 0 ? " 123456789:0.5 # padding" : "");
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/ps-test-stream-%d", (int)getpid());
    mkdir(dir, 0700);
    snprintf(file, sizeof file, "%s/all.svm", dir);
    write_samples(file, 1000);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

static ps_stream_opts_t opts(const char *data, uint32_t rank, uint32_t world, uint32_t parts,
                             uint64_t batch, uint32_t window)
{
    return (ps_stream_opts_t){.train_data = data,
                              .rank = rank,
                              .world = world,
                              .n_partitions = parts,
                              .batch_size = batch,
                              .epochs = 2,
                              .seed = 7,
                              .shuffle_window = window,
                              .prefetch = 3,
                              .wait_timeout_ms = 10000};
}

/* The sample ids (the first key of each sample) of the whole stream into
 * ids; returns how many. Batches are separated by -1 when sep. */
static size_t read_all(const ps_stream_opts_t *o, long *ids, size_t cap, bool sep)
{
    ps_errbuf_t err;
    ps_stream_t *s = ps_stream_new(o, &err);
    assert_non_null(s);
    assert_int_equal(ps_stream_start(s, 0, &err), PS_OK);
    const ps_stream_batch_t *b;
    size_t n = 0;
    int rc;
    uint64_t step = 0;
    while ((rc = ps_stream_next(s, &b, &err)) == 1) {
        assert_int_equal(b->index, step++);
        for (size_t i = 0; i < b->data.n; i++) {
            assert_true(n < cap);
            ids[n++] = (long)b->data.keys[b->data.row_ptr[i]];
        }
        if (sep) {
            assert_true(n < cap);
            ids[n++] = -1;
        }
    }
    assert_int_equal(rc, 0);
    ps_stream_destroy(&s);
    return n;
}

static void test_byte_ranges_cover_every_line_once(void **state)
{
    (void)state;
    static long ids[4000];
    for (uint32_t parts = 1; parts <= 13; parts += 3) {
        int seen[1000] = {0};
        for (uint32_t p = 0; p < parts; p++) {
            ps_stream_opts_t o = opts(file, p, parts, 0, 16, 1);
            o.epochs = 1;
            size_t n = read_all(&o, ids, 4000, false);
            for (size_t i = 0; i < n; i++) {
                assert_true(ids[i] >= 0 && ids[i] < 1000);
                /* file order within a range (window 1) */
                if (i)
                    assert_true(ids[i] == ids[i - 1] + 1);
                seen[ids[i]]++;
            }
        }
        for (int i = 0; i < 1000; i++)
            if (seen[i] != 1)
                fail_msg("%u partitions: line %d read %d times", parts, i, seen[i]);
    }
}

/* One reader of 3 partitions with batch 3*b sees, batch by batch, the
 * concatenation of the 3 single-partition readers' batches of b, over two
 * passes, with uneven partitions (some end first and then give nothing). */
static void test_one_reader_of_n_partitions_is_n_readers_side_by_side(void **state)
{
    (void)state;
    char glob_pat[128];
    int sizes[3] = {100, 137, 64};
    for (int p = 0; p < 3; p++) {
        char path[128];
        snprintf(path, sizeof path, "%s/part-%d.svm", dir, p);
        write_samples(path, sizes[p]);
    }
    snprintf(glob_pat, sizeof glob_pat, "%s/part-*.svm", dir);
    static long one[2000], each[3][1000];
    size_t n_each[3], pos[3] = {0};
    ps_stream_opts_t o = opts(glob_pat, 0, 1, 0, 30, 50);
    size_t n_one = read_all(&o, one, 2000, true);
    for (uint32_t r = 0; r < 3; r++) {
        o = opts(glob_pat, r, 3, 0, 10, 50);
        n_each[r] = read_all(&o, each[r], 1000, true);
    }
    /* walk the one reader's batches; each is the three readers' next batches */
    size_t i = 0, batches = 0;
    while (i < n_one) {
        for (int r = 0; r < 3; r++) {
            if (pos[r] >= n_each[r])
                continue; /* that partition ended */
            while (each[r][pos[r]] != -1) {
                assert_true(i < n_one);
                assert_int_equal(one[i], each[r][pos[r]]);
                i++, pos[r]++;
            }
            pos[r]++;
        }
        assert_int_equal(one[i], -1);
        i++, batches++;
    }
    for (int r = 0; r < 3; r++)
        assert_int_equal(pos[r], n_each[r]);
    assert_int_equal(batches, 2 * 14); /* the longest partition: 2 passes of ceil(137/10) */
}

static void test_the_window_shuffles_each_pass_into_a_permutation(void **state)
{
    (void)state;
    static long ids[2000];
    ps_stream_opts_t o = opts(file, 0, 1, 1, 64, 4096); /* the window holds it all */
    size_t n = read_all(&o, ids, 2000, false);
    assert_int_equal(n, 2000);
    int in_order = 0;
    for (int pass = 0; pass < 2; pass++) {
        int seen[1000] = {0};
        for (int i = 0; i < 1000; i++) {
            seen[ids[pass * 1000 + i]]++;
            in_order += ids[pass * 1000 + i] == i;
        }
        for (int i = 0; i < 1000; i++)
            assert_int_equal(seen[i], 1);
    }
    assert_true(in_order < 20);
    /* the two passes are shuffled differently */
    assert_memory_not_equal(ids, ids + 1000, 1000 * sizeof *ids);
}

static void test_a_restart_at_batch_k_gives_batch_k(void **state)
{
    (void)state;
    ps_errbuf_t err;
    ps_stream_opts_t o = opts(file, 1, 2, 0, 32, 100);
    ps_stream_t *s = ps_stream_new(&o, &err);
    assert_non_null(s);
    assert_int_equal(ps_stream_start(s, 0, &err), PS_OK);
    const ps_stream_batch_t *b;
    long first[32];
    uint64_t samples_before = 0;
    for (int k = 0; k <= 20; k++) { /* 20 is in the second pass */
        assert_int_equal(ps_stream_next(s, &b, &err), 1);
        samples_before = b->samples_before;
        for (size_t i = 0; i < b->data.n; i++)
            first[i] = (long)b->data.keys[b->data.row_ptr[i]];
    }
    assert_int_equal(ps_stream_start(s, 20, &err), PS_OK);
    assert_int_equal(ps_stream_next(s, &b, &err), 1);
    assert_int_equal(b->index, 20);
    assert_int_equal(b->samples_before, samples_before);
    for (size_t i = 0; i < b->data.n; i++)
        assert_int_equal((long)b->data.keys[b->data.row_ptr[i]], first[i]);
    ps_stream_destroy(&s);
    ps_stream_destroy(&s);
}

/* A recovery sends a worker back to batch k after it trained k and read
 * ahead: for every k of both passes (a batch that spans the two passes
 * among them), the batch it gets is the one an uninterrupted reader got. */
static void test_every_restart_point_gives_its_batch(void **state)
{
    (void)state;
    ps_errbuf_t err;
    ps_stream_opts_t o = opts(file, 1, 2, 0, 32, 100);
    static long all[2048];
    size_t n_all = read_all(&o, all, 2048, true);
    /* where each batch starts in all[] */
    size_t start[64], n_batches = 0, at = 0;
    for (size_t i = 0; i < n_all; i++)
        if (all[i] == -1) {
            start[n_batches++] = at;
            at = i + 1;
        }
    for (uint64_t k = 0; k + 1 < n_batches; k++) {
        ps_stream_t *s = ps_stream_new(&o, &err);
        assert_non_null(s);
        assert_int_equal(ps_stream_start(s, 0, &err), PS_OK);
        const ps_stream_batch_t *b;
        for (uint64_t j = 0; j <= k + 1; j++) /* trained k, began k + 1 */
            assert_int_equal(ps_stream_next(s, &b, &err), 1);
        assert_int_equal(ps_stream_start(s, k, &err), PS_OK);
        assert_int_equal(ps_stream_next(s, &b, &err), 1);
        assert_int_equal(b->index, k);
        for (size_t i = 0; i < b->data.n; i++)
            assert_int_equal((long)b->data.keys[b->data.row_ptr[i]], all[start[k] + i]);
        assert_int_equal(all[start[k] + b->data.n], -1);
        ps_stream_destroy(&s);
    }
}

/* A bad line fails the stream with its place: file:line for a whole file,
 * the byte offset in a range; the batches before it still come. */
static void test_a_bad_line_fails_the_stream_naming_where(void **state)
{
    (void)state;
    char bad[128];
    snprintf(bad, sizeof bad, "%s/bad.svm", dir);
    FILE *f = fopen(bad, "w");
    assert_non_null(f);
    for (int i = 0; i < 500; i++)
        fprintf(f, "1 %d:1\n", i);
    long at = ftell(f);
    fprintf(f, "1 17:1 oops\n1 3:1\n");
    fclose(f);
    for (uint32_t parts = 1; parts <= 2; parts++) {
        ps_errbuf_t err;
        ps_stream_opts_t o = opts(bad, parts - 1, parts, 0, 10, 1);
        ps_stream_t *s = ps_stream_new(&o, &err);
        assert_non_null(s);
        assert_int_equal(ps_stream_start(s, 0, &err), PS_OK);
        const ps_stream_batch_t *b;
        int rc, batches = 0;
        while ((rc = ps_stream_next(s, &b, &err)) == 1)
            batches++;
        assert_int_equal(rc, PS_EFORMAT);
        char want[256];
        if (parts == 1)
            snprintf(want, sizeof want, "%s:501: feature 'oops' is not INDEX:VALUE", bad);
        else
            snprintf(want, sizeof want, "%s: byte %ld: feature 'oops' is not INDEX:VALUE", bad, at);
        assert_string_equal(err.msg, want);
        assert_true(batches >= (parts == 1 ? 49 : 24));
        /* it stays failed */
        assert_int_equal(ps_stream_next(s, &b, &err), PS_EFORMAT);
        ps_stream_destroy(&s);
    }
}

static void test_partition_lists_are_checked(void **state)
{
    (void)state;
    ps_partlist_t l;
    ps_errbuf_t err;
    char pat[128];
    snprintf(pat, sizeof pat, "%s/part-*.svm", dir);
    assert_int_equal(ps_stream_partitions(pat, 0, 2, &l, &err), PS_OK);
    assert_int_equal(l.n, 3);
    assert_non_null(strstr(l.parts[0].path, "part-0"));
    assert_non_null(strstr(l.parts[2].path, "part-2"));
    ps_partlist_fini(&l);
    assert_int_equal(ps_stream_partitions(pat, 2, 2, &l, &err), PS_EINVAL);
    assert_non_null(strstr(err.msg, "names 3 files"));
    snprintf(pat, sizeof pat, "%s/none-*.svm", dir);
    assert_int_equal(ps_stream_partitions(pat, 0, 2, &l, &err), PS_EINVAL);
    assert_non_null(strstr(err.msg, "names no files"));
    /* a directory: its files, sorted */
    assert_int_equal(ps_stream_partitions(dir, 0, 1, &l, &err), PS_OK);
    assert_true(l.n >= 4);
    for (size_t i = 1; i < l.n; i++)
        assert_true(strcmp(l.parts[i - 1].path, l.parts[i].path) < 0);
    ps_partlist_fini(&l);
    /* gzip cannot be cut */
    char gz[128], cmd[300];
    snprintf(gz, sizeof gz, "%s/z.svm.gz", dir);
    snprintf(cmd, sizeof cmd, "gzip -c '%s' > '%s'", file, gz);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(ps_stream_partitions(gz, 2, 2, &l, &err), PS_EINVAL);
    assert_non_null(strstr(err.msg, "gzip"));
    /* but read whole it streams like the plain file */
    static long a[2100], b[2100];
    ps_stream_opts_t o = opts(gz, 0, 1, 0, 50, 30);
    size_t na = read_all(&o, a, 2100, true);
    o.train_data = file;
    size_t nb = read_all(&o, b, 2100, true);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof *a);
    /* batch below the partition count */
    o = opts(pat, 0, 1, 0, 2, 1);
    snprintf(pat, sizeof pat, "%s/part-*.svm", dir);
    o.train_data = pat;
    assert_null(ps_stream_new(&o, &err));
    assert_non_null(strstr(err.msg, "batch_size 2 is below the 3 partitions"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_byte_ranges_cover_every_line_once),
        cmocka_unit_test(test_one_reader_of_n_partitions_is_n_readers_side_by_side),
        cmocka_unit_test(test_the_window_shuffles_each_pass_into_a_permutation),
        cmocka_unit_test(test_a_restart_at_batch_k_gives_batch_k),
        cmocka_unit_test(test_every_restart_point_gives_its_batch),
        cmocka_unit_test(test_a_bad_line_fails_the_stream_naming_where),
        cmocka_unit_test(test_partition_lists_are_checked),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
