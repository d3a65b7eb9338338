/* bench_parse.c - parse throughput of the streamed reader per format.
 *
 * The same samples (the first --samples Fashion-MNIST training images, or
 * synthetic images if the data set is not installed) written as: CSV (the
 * pixels as byte / 255 with %.6g, the label last), LIBSVM (the nonzero
 * pixels as INDEX:VALUE), IDX gzip (the images and labels), and
 * ps-convert's records, dense u8 and sparse (from the LIBSVM). Each file is
 * read whole by the worker's own reader (ps_stream: one partition, file
 * order, batches of 256, the reader thread and its prefetch) and timed
 * from start to the last batch: MB/s of the file's bytes and samples/s.
 * The formats take turns, --rounds times, so each sees the same machine;
 * the median of each is printed with its ratio to the dense records'
 * (the baseline, measured in the same run). The files sit in the page
 * cache (just written): this is parsing, not the disk.
 *
 * Usage: bench_parse [--quick] [--samples N] [--rounds R] [--dir DIR]
 * Prints JSON lines. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "ps_data.h"
#include "ps_recfile.h"
#include "ps_rng.h"
#include "ps_stream.h"
#include "ps_time.h"

#define FM "/usr/share/datasets/fashion-mnist/train-"
#define D 784
#define MAX_ROUNDS 15

typedef struct {
    const char *name;
    int format;
    char path[512], labels[512];
    double bytes, mbps[MAX_ROUNDS], sps[MAX_ROUNDS];
} fmt_t;

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "bench_parse: %s: %s\n", what, msg);
    exit(1);
}

/* n images of D bytes and their labels: Fashion-MNIST's, or synthetic. */
static void load_images(size_t n, uint8_t *px, float *y)
{
    ps_dataset_t ds;
    ps_errbuf_t err;
    if (ps_data_load_idx_bytes(FM "images-idx3-ubyte.gz", FM "labels-idx1-ubyte.gz", &ds, &err) ==
            PS_OK &&
        ds.n >= n && ds.d == D) {
        memcpy(px, ds.x8, n * D);
        memcpy(y, ds.y, n * sizeof *y);
        ps_data_free(&ds);
        return;
    }
    fprintf(stderr, "bench_parse: no Fashion-MNIST (%s); synthetic images\n", err.msg);
    ps_rng_t rng;
    ps_rng_seed(&rng, 1);
    for (size_t i = 0; i < n * D; i++) /* half zeros, like the clothes' background */
        px[i] = ps_rng_uniform(&rng) < 0.5 ? 0 : (uint8_t)ps_rng_below(&rng, 256);
    for (size_t i = 0; i < n; i++)
        y[i] = (float)ps_rng_below(&rng, 10);
}

static void write_text(const char *path, size_t n, const uint8_t *px, const float *y, bool svm)
{
    FILE *f = fopen(path, "w");
    if (!f)
        die(path, strerror(errno));
    for (size_t i = 0; i < n; i++) {
        if (svm)
            fprintf(f, "%d", (int)y[i] % 2);
        for (size_t j = 0; j < D; j++) {
            float v = (float)px[i * D + j] * PS_DATA_PIXEL_SCALE;
            if (!svm)
                fprintf(f, "%.6g,", (double)v);
            else if (px[i * D + j])
                fprintf(f, " %zu:%.6g", j + 1, (double)v);
        }
        if (!svm)
            fprintf(f, "%d", (int)y[i]);
        fputc('\n', f);
    }
    if (fclose(f) != 0)
        die(path, strerror(errno));
}

static void put_be32(gzFile f, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    gzwrite(f, b, 4);
}

static void write_idx(const fmt_t *fm, size_t n, const uint8_t *px, const float *y)
{
    gzFile fi = gzopen(fm->path, "wb6"), fl = gzopen(fm->labels, "wb6");
    if (!fi || !fl)
        die(fm->path, "cannot write");
    put_be32(fi, 0x0803);
    put_be32(fi, (uint32_t)n);
    put_be32(fi, 28);
    put_be32(fi, 28);
    gzwrite(fi, px, (unsigned)(n * D));
    put_be32(fl, 0x0801);
    put_be32(fl, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)y[i];
        gzwrite(fl, &b, 1);
    }
    gzclose(fi);
    gzclose(fl);
}

static void write_records(const char *path, size_t n, const uint8_t *px, const float *y,
                          bool sparse)
{
    ps_rec_writer_t w;
    ps_errbuf_t err;
    uint64_t idx[D];
    float vals[D];
    if (ps_rec_writer_open(&w, path, sparse ? PS_REC_SPARSE : PS_REC_DENSE, D, PS_REC_U8, &err))
        die(path, err.msg);
    for (size_t i = 0; i < n; i++) {
        uint32_t nf = 0;
        for (size_t j = 0; sparse && j < D; j++)
            if (px[i * D + j]) {
                idx[nf] = j + 1;
                vals[nf++] = (float)px[i * D + j] * PS_DATA_PIXEL_SCALE;
            }
        int rc = sparse ? ps_rec_write_sparse(&w, (float)((int)y[i] % 2), idx, vals, nf, &err)
                        : ps_rec_write_dense(&w, y[i], px + i * D, NULL, &err);
        if (rc != PS_OK)
            die(path, err.msg);
    }
    if (ps_rec_writer_close(&w, &err) != PS_OK)
        die(path, err.msg);
}

/* Reads fm's file whole; its MB/s and samples/s into round r. */
static void time_read(fmt_t *fm, int r, size_t n)
{
    ps_stream_opts_t o = {.train_data = fm->path,
                          .format = fm->format,
                          .train_labels = fm->labels,
                          .label_column = -1,
                          .n_classes = 10,
                          .hash_bits = 24,
                          .world = 1,
                          .n_partitions = 1,
                          .batch_size = 256,
                          .epochs = 1,
                          .seed = 1,
                          .shuffle_window = 1,
                          .prefetch = 4,
                          .wait_timeout_ms = 600000};
    ps_errbuf_t err;
    double t0 = ps_time_wall_s();
    ps_stream_t *s = ps_stream_new(&o, &err);
    if (!s || ps_stream_start(s, 0, &err) != PS_OK)
        die(fm->path, err.msg);
    const ps_stream_batch_t *b;
    size_t got = 0;
    int rc;
    while ((rc = ps_stream_next(s, &b, &err)) == 1)
        got += b->data.n + b->dense.n;
    double el = ps_time_wall_s() - t0;
    ps_stream_destroy(&s);
    if (rc != 0 || got != n)
        die(fm->path, rc ? err.msg : "short read");
    fm->mbps[r] = fm->bytes / el / 1e6;
    fm->sps[r] = (double)n / el;
}

static double file_bytes(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (double)st.st_size : 0;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    double c[MAX_ROUNDS];
    memcpy(c, v, (size_t)n * sizeof *c);
    qsort(c, (size_t)n, sizeof *c, cmp_dbl);
    return n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    size_t n = 20000;
    int rounds = 3;
    char dir[400] = "";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            n = 2000, rounds = 1;
        else if (strcmp(argv[i], "--samples") == 0 && i + 1 < argc)
            n = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            snprintf(dir, sizeof dir, "%s", argv[++i]);
        else
            die(argv[i], "usage: bench_parse [--quick] [--samples N] [--rounds R] [--dir DIR]");
    }
    if (rounds < 1 || rounds > MAX_ROUNDS || n < 1 || n > 60000)
        die("arguments", "rounds 1..15, samples 1..60000");
    bool own_dir = !*dir;
    if (own_dir) {
        snprintf(dir, sizeof dir, "/tmp/ps-bench-parse.XXXXXX");
        if (!mkdtemp(dir))
            die(dir, strerror(errno));
    }
    uint8_t *px = ps_xmalloc(n * D);
    float *y = ps_xmalloc(n * sizeof *y);
    load_images(n, px, y);
    fmt_t f[] = {{"records", PS_STREAM_RECORDS, "", "", 0, {0}, {0}},
                 {"records_sparse", PS_STREAM_RECORDS, "", "", 0, {0}, {0}},
                 {"idx_gzip", PS_STREAM_IDX, "", "", 0, {0}, {0}},
                 {"csv", PS_STREAM_CSV, "", "", 0, {0}, {0}},
                 {"libsvm", PS_STREAM_LIBSVM, "", "", 0, {0}, {0}}};
    int nf = (int)(sizeof f / sizeof f[0]);
    for (int k = 0; k < nf; k++)
        snprintf(f[k].path, sizeof f[k].path, "%s/data.%s", dir, f[k].name);
    snprintf(f[2].labels, sizeof f[2].labels, "%s/labels.idx.gz", dir);
    write_records(f[0].path, n, px, y, false);
    write_records(f[1].path, n, px, y, true);
    write_idx(&f[2], n, px, y);
    write_text(f[3].path, n, px, y, false);
    write_text(f[4].path, n, px, y, true);
    for (int k = 0; k < nf; k++)
        f[k].bytes = file_bytes(f[k].path) + (*f[k].labels ? file_bytes(f[k].labels) : 0);
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < nf; k++)
            time_read(&f[(k + r) % nf], r, n); /* each round starts with another format */
    double base = median(f[0].sps, rounds);
    for (int k = 0; k < nf; k++) {
        double sps = median(f[k].sps, rounds);
        printf("{\"bench\":\"parse\",\"format\":\"%s\",\"samples\":%zu,\"file_mb\":%.1f,"
               "\"mb_per_s\":%.1f,\"samples_per_s\":%.0f,\"baseline\":\"records\","
               "\"baseline_samples_per_s\":%.0f,\"ratio\":%.3f,\"rounds\":%d}\n",
               f[k].name, n, f[k].bytes / 1e6, median(f[k].mbps, rounds), sps, base, sps / base,
               rounds);
    }
    for (int k = 0; own_dir && k < nf; k++) {
        unlink(f[k].path);
        if (*f[k].labels)
            unlink(f[k].labels);
    }
    if (own_dir)
        rmdir(dir);
    free(px);
    free(y);
    return 0;
}
