/* test_dstream.c - the streamed reader's dense formats and the binary
 * records (ps_stream.h, ps_recfile.h): IDX record ranges (plain and gzip)
 * cover every record once, one reader of N partitions sees the N readers'
 * batches side by side, records read back what was written and name the
 * record and byte of damage, CSV byte ranges and their errors, the label
 * limit, sparse records read as the LIBSVM text they came from, and a
 * text corpus's windows: the corpus's bytes at their offsets, once each,
 * in the partition of their first byte, and errors naming file and byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ps_recfile.h"
#include "ps_stream.h"

#define N 1000
#define D 4

static char dir[64], images[96], labels[96], images_gz[96], labels_gz[96], recs[96];

static void put_be32(FILE *f, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    fwrite(b, 1, 4, f);
}

/* Sample i: pixels (i & 255, i >> 8, 7, 255), label i % 10. */
static void sample_bytes(int i, uint8_t *px)
{
    px[0] = (uint8_t)(i & 255);
    px[1] = (uint8_t)(i >> 8);
    px[2] = 7;
    px[3] = 255;
}

static void write_idx(void)
{
    FILE *fi = fopen(images, "wb"), *fl = fopen(labels, "wb");
    assert_non_null(fi);
    assert_non_null(fl);
    put_be32(fi, 0x0803);
    put_be32(fi, N);
    put_be32(fi, 2);
    put_be32(fi, 2);
    put_be32(fl, 0x0801);
    put_be32(fl, N);
    for (int i = 0; i < N; i++) {
        uint8_t px[D], y = (uint8_t)(i % 10);
        sample_bytes(i, px);
        fwrite(px, 1, D, fi);
        fwrite(&y, 1, 1, fl);
    }
    fclose(fi);
    fclose(fl);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "gzip -c '%s' > '%s' && gzip -c '%s' > '%s'", images, images_gz,
             labels, labels_gz);
    assert_int_equal(system(cmd), 0);
}

static void write_records(const char *path)
{
    ps_rec_writer_t w;
    ps_errbuf_t err;
    assert_int_equal(ps_rec_writer_open(&w, path, PS_REC_DENSE, D, PS_REC_U8, &err), PS_OK);
    for (int i = 0; i < N; i++) {
        uint8_t px[D];
        sample_bytes(i, px);
        assert_int_equal(ps_rec_write_dense(&w, (float)(i % 10), px, NULL, &err), PS_OK);
    }
    assert_int_equal(ps_rec_writer_close(&w, &err), PS_OK);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/ps-test-dstream-%d", (int)getpid());
    mkdir(dir, 0700);
    snprintf(images, sizeof images, "%s/img.idx", dir);
    snprintf(labels, sizeof labels, "%s/lab.idx", dir);
    snprintf(images_gz, sizeof images_gz, "%s/img.idx.gz", dir);
    snprintf(labels_gz, sizeof labels_gz, "%s/lab.idx.gz", dir);
    snprintf(recs, sizeof recs, "%s/all.rec", dir);
    write_idx();
    write_records(recs);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

static ps_stream_opts_t opts(int format, const char *data, const char *labs, uint32_t rank,
                             uint32_t world, uint32_t parts, uint64_t batch, uint32_t window)
{
    return (ps_stream_opts_t){.train_data = data,
                              .format = format,
                              .train_labels = labs,
                              .label_column = -1,
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

/* The sample id of dense sample i of b (from its first two features). */
static long dense_id(const ps_stream_batch_t *b, size_t d, size_t i)
{
    const float *x = b->dense.x + i * d;
    return lrintf(x[0] * 255.0f) + 256 * lrintf(x[1] * 255.0f);
}

/* The ids of the whole stream into ids (-1 after each batch if sep);
 * checks each sample's label and fixed features. Returns how many. */
static size_t read_ids(const ps_stream_opts_t *o, long *ids, size_t cap, bool sep,
                       uint64_t *batches)
{
    ps_errbuf_t err;
    ps_stream_t *s = ps_stream_new(o, &err);
    if (!s)
        fail_msg("%s", err.msg);
    assert_false(ps_stream_is_sparse(s));
    assert_int_equal(ps_stream_row_len(s), D);
    assert_int_equal(ps_stream_n_classes(s), 10);
    assert_int_equal(ps_stream_start(s, 0, &err), PS_OK);
    const ps_stream_batch_t *b;
    size_t n = 0;
    int rc;
    uint64_t step = 0;
    while ((rc = ps_stream_next(s, &b, &err)) == 1) {
        assert_int_equal(b->index, step++);
        for (size_t i = 0; i < b->dense.n; i++) {
            long id = dense_id(b, D, i);
            assert_true(n < cap);
            assert_true(id >= 0 && id < N);
            assert_float_equal(b->dense.y[i], (float)(id % 10), 0);
            assert_float_equal(b->dense.x[i * D + 2], 7.0f / 255.0f, 1e-7);
            assert_float_equal(b->dense.x[i * D + 3], 1.0f, 0);
            ids[n++] = id;
        }
        if (sep) {
            assert_true(n < cap);
            ids[n++] = -1;
        }
    }
    if (rc != 0)
        fail_msg("%s", err.msg);
    if (batches)
        *batches = step;
    ps_stream_destroy(&s);
    return n;
}

static void test_idx_record_ranges_cover_every_record_once(void **state)
{
    (void)state;
    static long ids[2 * N];
    const char *img[2] = {images, images_gz}, *lab[2] = {labels, labels_gz};
    for (int z = 0; z < 2; z++) {
        for (uint32_t parts = 1; parts <= 7; parts += 3) {
            int seen[N] = {0};
            for (uint32_t r = 0; r < parts; r++) {
                ps_stream_opts_t o = opts(PS_STREAM_IDX, img[z], lab[z], r, parts, 0, 16, 1);
                o.epochs = 1;
                size_t n = read_ids(&o, ids, 2 * N, false, NULL);
                assert_int_equal(n, N * (r + 1) / parts - N * r / parts);
                for (size_t i = 0; i < n; i++) {
                    assert_int_equal(ids[i], (long)(N * r / parts + i)); /* file order */
                    seen[ids[i]]++;
                }
            }
            for (int i = 0; i < N; i++)
                if (seen[i] != 1)
                    fail_msg("%s, %u partitions: record %d read %d times", img[z], parts, i,
                             seen[i]);
        }
    }
}

/* One reader of 3 partitions with batch 30 sees, batch by batch, the
 * three readers' batches of 10 side by side, over 2 passes; the job's
 * step count is known in advance and is the one seen. */
static void check_side_by_side(int format, const char *data, const char *labs)
{
    static long one[3 * N], each[3][2 * N];
    size_t n_each[3], pos[3] = {0};
    uint64_t batches_one, steps;
    ps_stream_opts_t o = opts(format, data, labs, 0, 1, 3, 30, 50);
    size_t n_one = read_ids(&o, one, 3 * N, true, &batches_one);
    ps_errbuf_t err;
    ps_stream_t *s = ps_stream_new(&o, &err);
    assert_non_null(s);
    steps = ps_stream_job_steps(s);
    assert_int_equal(ps_stream_steps_per_pass(s), 34); /* ceil(334 / 10) */
    assert_int_equal(ps_stream_n_samples(s), N);
    ps_stream_destroy(&s);
    assert_int_equal(batches_one, steps);
    for (uint32_t r = 0; r < 3; r++) {
        o = opts(format, data, labs, r, 3, 0, 10, 50);
        n_each[r] = read_ids(&o, each[r], 2 * N, true, NULL);
    }
    size_t i = 0;
    while (i < n_one) {
        for (int r = 0; r < 3; r++) {
            if (pos[r] >= n_each[r])
                continue;
            for (; each[r][pos[r]] != -1; i++, pos[r]++)
                assert_int_equal(one[i], each[r][pos[r]]);
            pos[r]++;
        }
        assert_int_equal(one[i], -1);
        i++;
    }
    for (int r = 0; r < 3; r++)
        assert_int_equal(pos[r], n_each[r]);
    assert_int_equal(n_one - batches_one, 2 * N);
}

static void test_one_idx_reader_of_n_partitions_is_n_readers(void **state)
{
    (void)state;
    check_side_by_side(PS_STREAM_IDX, images_gz, labels_gz);
}

static void test_records_read_as_the_idx_they_came_from(void **state)
{
    (void)state;
    check_side_by_side(PS_STREAM_RECORDS, recs, NULL);
    static long a[2 * N + 400], b[2 * N + 400];
    ps_stream_opts_t o = opts(PS_STREAM_IDX, images, labels, 1, 2, 0, 16, 100);
    size_t na = read_ids(&o, a, 2 * N + 400, true, NULL);
    o = opts(PS_STREAM_RECORDS, recs, NULL, 1, 2, 0, 16, 100);
    size_t nb = read_ids(&o, b, 2 * N + 400, true, NULL);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof *a);
}

/* A stream that must fail: its error message. */
static void stream_error(const ps_stream_opts_t *o, int want_rc, char *msg, size_t cap)
{
    ps_errbuf_t err = {0};
    ps_stream_t *s = ps_stream_new(o, &err);
    int rc = s ? ps_stream_start(s, 0, &err) : err.code;
    const ps_stream_batch_t *b;
    while (rc == PS_OK && (rc = ps_stream_next(s, &b, &err)) == 1)
        rc = PS_OK;
    assert_int_equal(rc, want_rc);
    snprintf(msg, cap, "%s", err.msg);
    if (s) /* it stays failed */
        assert_int_equal(ps_stream_next(s, &b, &err), want_rc);
    ps_stream_destroy(&s);
}

static void copy_file(const char *from, const char *to)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    assert_int_equal(system(cmd), 0);
}

static void test_damaged_records_name_the_record_and_byte(void **state)
{
    (void)state;
    char bad[128], msg[512], want[512];
    snprintf(bad, sizeof bad, "%s/bad.rec", dir);
    uint32_t rb = ps_rec_dense_bytes(D, PS_REC_U8);
    /* a flipped byte in record 700: the worker reading it fails there */
    copy_file(recs, bad);
    FILE *f = fopen(bad, "r+b");
    assert_non_null(f);
    long at = PS_REC_HEADER_BYTES + 700L * rb;
    fseek(f, at + 5, SEEK_SET);
    fputc(0x5a, f);
    fclose(f);
    ps_stream_opts_t o = opts(PS_STREAM_RECORDS, bad, NULL, 1, 2, 0, 16, 1);
    stream_error(&o, PS_EFORMAT, msg, sizeof msg);
    snprintf(want, sizeof want,
             "%s: record 700 (byte %ld): checksum mismatch: the record is damaged", bad, at);
    assert_string_equal(msg, want);
    o.rank = 0; /* the other half is clean */
    static long ids[2 * N];
    assert_int_equal(read_ids(&o, ids, 2 * N, false, NULL), N);
    /* truncated: the header promises more than the file has */
    assert_int_equal(truncate(bad, at), 0);
    stream_error(&o, PS_EFORMAT, msg, sizeof msg);
    assert_non_null(strstr(msg, "truncated or damaged"));
    assert_non_null(strstr(msg, bad));
    /* not a records file, and a damaged header */
    o.train_data = images;
    stream_error(&o, PS_EFORMAT, msg, sizeof msg);
    assert_non_null(strstr(msg, "byte 0: not a ps-convert record file (bad magic)"));
    copy_file(recs, bad);
    f = fopen(bad, "r+b");
    fseek(f, 24, SEEK_SET);
    fputc(0x01, f);
    fclose(f);
    o.train_data = bad;
    stream_error(&o, PS_EFORMAT, msg, sizeof msg);
    assert_non_null(strstr(msg, "header checksum mismatch"));
}

static void test_csv_ranges_cover_every_line_and_errors_say_where(void **state)
{
    (void)state;
    char csv[128], msg[512], want[512];
    snprintf(csv, sizeof csv, "%s/d.csv", dir);
    FILE *f = fopen(csv, "w");
    assert_non_null(f);
    fprintf(f, "a,b,label\n");
    for (int i = 0; i < N; i++)
        fprintf(f, "%d,%d.5,%d\n", i, i * 2, i % 3);
    long at = ftell(f);
    fprintf(f, "1,x,1\n");
    fclose(f);
    for (uint32_t parts = 1; parts <= 4; parts++) {
        int seen[N] = {0};
        for (uint32_t r = 0; r < parts; r++) {
            ps_stream_opts_t o = opts(PS_STREAM_CSV, csv, NULL, r, parts, 0, 8, 1);
            o.epochs = 1;
            ps_errbuf_t err;
            ps_stream_t *s = ps_stream_new(&o, &err);
            assert_non_null(s);
            assert_int_equal(ps_stream_row_len(s), 2);
            assert_int_equal(ps_stream_job_steps(s), 0); /* text: not known */
            assert_int_equal(ps_stream_start(s, 0, &err), PS_OK);
            const ps_stream_batch_t *b;
            int rc;
            while ((rc = ps_stream_next(s, &b, &err)) == 1)
                for (size_t i = 0; i < b->dense.n; i++) {
                    int id = (int)b->dense.x[i * 2];
                    assert_float_equal(b->dense.x[i * 2 + 1], id * 2 + 0.5f, 0);
                    assert_float_equal(b->dense.y[i], (float)(id % 3), 0);
                    seen[id]++;
                }
            /* the bad last line is in the last range */
            assert_int_equal(rc, r == parts - 1 ? PS_EFORMAT : 0);
            if (parts == 1)
                snprintf(want, sizeof want, "%s:%d: field 2 'x' is not a number", csv, N + 2);
            else
                snprintf(want, sizeof want, "%s: byte %ld: field 2 'x' is not a number", csv, at);
            if (rc)
                assert_string_equal(err.msg, want);
            ps_stream_destroy(&s);
        }
        /* the batch the bad line was read for is lost with the stream */
        for (int i = 0; i < N; i++)
            if (seen[i] != 1 && (i < N - 8 || seen[i] > 1))
                fail_msg("%u ranges: line of sample %d read %d times", parts, i, seen[i]);
    }
    /* a label limit: labels are classes below it */
    ps_stream_opts_t o = opts(PS_STREAM_CSV, csv, NULL, 0, 1, 0, 8, 1);
    ps_errbuf_t err;
    ps_stream_t *s = ps_stream_new(&o, &err);
    assert_non_null(s);
    ps_stream_set_label_limit(s, 2);
    assert_int_equal(ps_stream_start(s, 0, &err), PS_OK);
    const ps_stream_batch_t *b;
    int rc;
    while ((rc = ps_stream_next(s, &b, &err)) == 1)
        ;
    assert_int_equal(rc, PS_EFORMAT);
    snprintf(want, sizeof want, "%s:4: label 2 is not a class 0..1", csv);
    assert_string_equal(err.msg, want);
    ps_stream_destroy(&s);
    /* a label column that is not there */
    o.label_column = 3;
    stream_error(&o, PS_EFORMAT, msg, sizeof msg);
    assert_non_null(strstr(msg, "3 columns; need features and the label column 3"));
}

/* The sparse samples of a stream, as text: "y k:v k:v|" per sample. */
static size_t sparse_text(const ps_stream_opts_t *o, char *out, size_t cap)
{
    ps_errbuf_t err;
    ps_stream_t *s = ps_stream_new(o, &err);
    if (!s)
        fail_msg("%s", err.msg);
    assert_true(ps_stream_is_sparse(s));
    assert_int_equal(ps_stream_start(s, 0, &err), PS_OK);
    const ps_stream_batch_t *b;
    size_t len = 0;
    int rc;
    while ((rc = ps_stream_next(s, &b, &err)) == 1)
        for (size_t i = 0; i < b->data.n; i++) {
            len += (size_t)snprintf(out + len, cap - len, "%g", (double)b->data.y[i]);
            for (uint64_t j = b->data.row_ptr[i]; j < b->data.row_ptr[i + 1]; j++)
                len +=
                    (size_t)snprintf(out + len, cap - len, " %llu:%g",
                                     (unsigned long long)b->data.keys[j], (double)b->data.vals[j]);
            len += (size_t)snprintf(out + len, cap - len, "|");
            assert_true(len < cap);
        }
    assert_int_equal(rc, 0);
    ps_stream_destroy(&s);
    return len;
}

static void test_sparse_records_read_as_their_libsvm(void **state)
{
    (void)state;
    char svm[128], rec[128];
    snprintf(svm, sizeof svm, "%s/s.svm", dir);
    snprintf(rec, sizeof rec, "%s/s.rec", dir);
    FILE *f = fopen(svm, "w");
    ps_rec_writer_t w;
    ps_errbuf_t err;
    assert_int_equal(ps_rec_writer_open(&w, rec, PS_REC_SPARSE, 0, 0, &err), PS_OK);
    for (int i = 0; i < N; i++) {
        uint64_t idx[3] = {(uint64_t)i, 123456789, (uint64_t)i * 7};
        float vals[3] = {1, 0.5f, -2};
        uint32_t nf = i % 5 == 0 ? 0 : i % 3 + 1;
        fprintf(f, "%s", i % 2 ? "+1" : "-1");
        for (uint32_t j = 0; j < nf; j++)
            fprintf(f, " %llu:%g", (unsigned long long)idx[j], (double)vals[j]);
        fprintf(f, "\n");
        assert_int_equal(ps_rec_write_sparse(&w, (float)(i % 2), idx, vals, nf, &err), PS_OK);
    }
    fclose(f);
    assert_int_equal(ps_rec_writer_close(&w, &err), PS_OK);
    static char a[200000], b[200000];
    ps_stream_opts_t o = opts(PS_STREAM_LIBSVM, svm, NULL, 0, 1, 0, 16, 64);
    o.hash_bits = 20;
    size_t na = sparse_text(&o, a, sizeof a);
    o.format = PS_STREAM_RECORDS;
    o.train_data = rec;
    size_t nb = sparse_text(&o, b, sizeof b);
    assert_true(na > 1000);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    /* record ranges through the index: 3 readers read every sample once */
    size_t total = 0;
    for (uint32_t r = 0; r < 3; r++) {
        o = opts(PS_STREAM_RECORDS, rec, NULL, r, 3, 0, 16, 64);
        o.epochs = 1;
        size_t len = sparse_text(&o, b, sizeof b);
        for (size_t i = 0; i < len; i++)
            total += b[i] == '|';
    }
    assert_int_equal(total, N);
    /* the whole file as a test set */
    ps_svm_t d;
    assert_int_equal(ps_rec_load_sparse(rec, 20, &d, &err), PS_OK);
    assert_int_equal(d.n, N);
    assert_int_equal(d.row_ptr[1] - d.row_ptr[0], 0);
    assert_int_equal(d.keys[d.row_ptr[1]], ps_svm_key(1, 20));
    ps_svm_free(&d);
    ps_dataset_t ds;
    assert_int_equal(ps_rec_load_sparse(recs, 20, &d, &err), PS_EFORMAT);
    assert_non_null(strstr(err.msg, "holds dense records"));
    assert_int_equal(ps_rec_load_dense(recs, &ds, &err), PS_OK);
    assert_int_equal(ds.n, N);
    assert_int_equal(ds.n_classes, 10);
    assert_float_equal(ds.x[999 * D + 1], 3.0f / 255.0f, 1e-7);
    ps_data_free(&ds);
}

#define TB 16 /* the text tests' block_size: windows of 17 bytes */

/* n pseudo-random bytes (no 17-byte run repeats, in practice) into path. */
static void write_corpus(const char *path, size_t n, uint32_t seed, uint8_t *out)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        out[i] = (uint8_t)(seed >> 24);
    }
    assert_int_equal(fwrite(out, 1, n, f), n);
    fclose(f);
}

/* Reads a text stream whole (1 epoch); each window must be row bytes of
 * files[its partition] (as floats 0..255) at a multiple of stride, inside
 * the partition's byte range [lo, hi) (hi 0: the whole file); counts them
 * in seen[partition][window]. Returns the windows read. */
static size_t read_windows(const ps_stream_opts_t *o, const uint8_t *const *files,
                           const size_t *sizes, const uint64_t (*range)[2], size_t stride,
                           int (*seen)[1024])
{
    ps_errbuf_t err;
    ps_stream_t *s = ps_stream_new(o, &err);
    if (!s)
        fail_msg("%s", err.msg);
    assert_int_equal(ps_stream_row_len(s), TB + 1);
    assert_int_equal(ps_stream_start(s, 0, &err), PS_OK);
    const ps_stream_batch_t *b;
    size_t n = 0;
    uint64_t steps = 0;
    int rc;
    while ((rc = ps_stream_next(s, &b, &err)) == 1) {
        steps++;
        for (size_t i = 0; i < b->dense.n; i++) {
            uint8_t w[TB + 1];
            for (size_t j = 0; j < TB + 1; j++) {
                float v = b->dense.x[i * (TB + 1) + j];
                assert_true(v >= 0 && v <= 255 && v == floorf(v)); /* tokens, not byte / 255 */
                w[j] = (uint8_t)v;
            }
            assert_float_equal(b->dense.y[i], 0, 0);
            uint32_t part = (uint32_t)(b->dense.place[i] >> 32);
            const uint8_t *at = memmem(files[part], sizes[part], w, sizeof w);
            assert_non_null(at);
            size_t off = (size_t)(at - files[part]);
            assert_int_equal(off % stride, 0);
            assert_true(off >= range[part][0]);
            assert_true(range[part][1] == 0 || off < range[part][1]);
            assert_true(off / stride < 1024);
            seen[part][off / stride]++;
            n++;
        }
    }
    if (rc != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(ps_stream_job_steps(s), ps_stream_steps_per_pass(s));
    assert_true(steps <= ps_stream_job_steps(s));
    ps_stream_destroy(&s);
    return n;
}

static ps_stream_opts_t text_opts(const char *data, uint32_t rank, uint32_t world, uint32_t parts,
                                  size_t stride)
{
    ps_stream_opts_t o = opts(PS_STREAM_TEXT, data, NULL, rank, world, parts, 8, 5);
    o.epochs = 1;
    o.block_size = TB;
    o.text_stride = stride;
    return o;
}

static void test_text_windows_are_the_corpus_bytes_at_their_offsets(void **state)
{
    (void)state;
    enum { S = 5003 };
    static uint8_t one[S], f0[900], f2[2000], junk[100];
    char path[128], tdir[128], name[192];
    snprintf(path, sizeof path, "%s/corpus.txt", dir);
    write_corpus(path, S, 1, one);
    /* byte ranges of one file, read by as many workers or by one */
    size_t strides[] = {0, 5, 40}; /* block_size (windows share a byte), overlapping, gaps */
    for (size_t si = 0; si < 3; si++) {
        size_t stride = strides[si] ? strides[si] : TB;
        size_t want = (S - TB - 1) / stride + 1;
        for (uint32_t parts = 1; parts <= 4; parts++) {
            static int seen[4][1024];
            const uint8_t *files[4] = {one, one, one, one};
            size_t sizes[4] = {S, S, S, S};
            uint64_t range[4][2];
            for (uint32_t p = 0; p < parts; p++) {
                range[p][0] = (uint64_t)S * p / parts;
                range[p][1] = (uint64_t)S * (p + 1) / parts;
            }
            for (uint32_t world = 1; world <= parts; world += parts - 1 ? parts - 1 : 1) {
                memset(seen, 0, sizeof seen);
                size_t n = 0;
                for (uint32_t r = 0; r < world; r++) {
                    ps_stream_opts_t o = text_opts(path, r, world, parts, strides[si]);
                    n += read_windows(&o, files, sizes, (const uint64_t(*)[2])range, stride, seen);
                }
                assert_int_equal(n, want);
                for (size_t k = 0; k < want; k++) {
                    uint32_t p = 0;
                    while (p + 1 < parts && k * stride >= range[p][1])
                        p++;
                    if (seen[p][k] != 1)
                        fail_msg("stride %zu, %u ranges, %u readers: window %zu (byte %zu) of "
                                 "range %u read %d times",
                                 stride, parts, world, k, k * stride, p, seen[p][k]);
                }
            }
        }
    }
    /* a directory: ps_text's files (no dot files, no *.dat), one partition
     * each; a window never crosses a file; one too short for a window is
     * an empty partition */
    snprintf(tdir, sizeof tdir, "%s/corpus.d", dir);
    mkdir(tdir, 0700);
    snprintf(name, sizeof name, "%s/a", tdir);
    write_corpus(name, sizeof f0, 2, f0);
    snprintf(name, sizeof name, "%s/b", tdir);
    write_corpus(name, 10, 3, junk);
    snprintf(name, sizeof name, "%s/c", tdir);
    write_corpus(name, sizeof f2, 4, f2);
    snprintf(name, sizeof name, "%s/.hidden", tdir);
    write_corpus(name, 100, 5, junk);
    snprintf(name, sizeof name, "%s/c.dat", tdir);
    write_corpus(name, 100, 6, junk);
    const uint8_t *files[3] = {f0, junk, f2};
    size_t sizes[3] = {sizeof f0, 10, sizeof f2};
    uint64_t range[3][2] = {{0, 0}, {0, 0}, {0, 0}};
    static int seen[4][1024];
    memset(seen, 0, sizeof seen);
    ps_stream_opts_t o = text_opts(tdir, 0, 1, 0, 7);
    ps_errbuf_t err;
    ps_stream_t *s = ps_stream_new(&o, &err);
    assert_non_null(s);
    size_t w0 = (sizeof f0 - TB - 1) / 7 + 1, w2 = (sizeof f2 - TB - 1) / 7 + 1;
    assert_int_equal(ps_stream_n_samples(s), w0 + w2);
    assert_int_equal(ps_stream_n_parts(s), 3);
    ps_stream_destroy(&s);
    assert_int_equal(read_windows(&o, files, sizes, (const uint64_t(*)[2])range, 7, seen), w0 + w2);
    for (size_t k = 0; k < w0; k++)
        assert_int_equal(seen[0][k], 1);
    for (size_t k = 0; k < w2; k++)
        assert_int_equal(seen[2][k], 1);
    /* partitions must be the files' count */
    char msg[512];
    o.n_partitions = 2;
    stream_error(&o, PS_EINVAL, msg, sizeof msg);
    assert_non_null(strstr(msg, "names 3 files, one partition each"));
}

static void test_text_errors_name_the_file_and_byte(void **state)
{
    (void)state;
    char path[128], msg[512], want[512];
    snprintf(path, sizeof path, "%s/plain.txt", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (int i = 0; i < 1000; i++)
        fputc(i == 100 ? 200 : 'a', f);
    fclose(f);
    /* a byte outside the model's vocabulary: window 6 [96, 113) holds it */
    ps_stream_opts_t o = text_opts(path, 0, 1, 0, 0);
    o.shuffle_window = 1;
    ps_errbuf_t err;
    ps_stream_t *s = ps_stream_new(&o, &err);
    assert_non_null(s);
    ps_stream_set_token_limit(s, 128);
    assert_int_equal(ps_stream_start(s, 0, &err), PS_OK);
    const ps_stream_batch_t *b;
    int rc;
    while ((rc = ps_stream_next(s, &b, &err)) == 1)
        ;
    assert_int_equal(rc, PS_EFORMAT);
    snprintf(want, sizeof want,
             "%s: window 6 (byte 96): byte 200 at offset 100 is not below the vocabulary 128 of "
             "the model (text is bytes: embed(256, ...))",
             path);
    assert_string_equal(err.msg, want);
    ps_stream_destroy(&s);
    /* the file shrank after its windows were counted: window 31 [496, 513) */
    s = ps_stream_new(&o, &err);
    assert_non_null(s);
    assert_int_equal(truncate(path, 500), 0);
    assert_int_equal(ps_stream_start(s, 0, &err), PS_OK);
    while ((rc = ps_stream_next(s, &b, &err)) == 1)
        ;
    assert_int_equal(rc, PS_EFORMAT);
    snprintf(want, sizeof want,
             "%s: window 31 (byte 496): the file ends at byte 500, inside the window: it is "
             "shorter than when the job started",
             path);
    assert_string_equal(err.msg, want);
    ps_stream_destroy(&s);
    /* too short for one window, and nothing there */
    assert_int_equal(truncate(path, TB), 0);
    stream_error(&o, PS_EFORMAT, msg, sizeof msg);
    snprintf(want, sizeof want,
             "train_data '%s': no file holds one window of %d bytes (block_size + 1)", path,
             TB + 1);
    assert_string_equal(msg, want);
    snprintf(path, sizeof path, "%s/none.txt", dir);
    stream_error(&o, PS_EIO, msg, sizeof msg);
    assert_non_null(strstr(msg, path));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idx_record_ranges_cover_every_record_once),
        cmocka_unit_test(test_one_idx_reader_of_n_partitions_is_n_readers),
        cmocka_unit_test(test_records_read_as_the_idx_they_came_from),
        cmocka_unit_test(test_damaged_records_name_the_record_and_byte),
        cmocka_unit_test(test_csv_ranges_cover_every_line_and_errors_say_where),
        cmocka_unit_test(test_sparse_records_read_as_their_libsvm),
        cmocka_unit_test(test_text_windows_are_the_corpus_bytes_at_their_offsets),
        cmocka_unit_test(test_text_errors_name_the_file_and_byte),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
