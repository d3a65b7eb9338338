/* ps_convert.c - ps-convert: CSV, LIBSVM or IDX training data to the
 * compact binary records ps-worker streams (data_format records;
 * worker/ps_recfile.h, docs/data.md), in bounded memory: the input is
 * read by the streamed reader itself (one partition, file order), so a
 * bad line is reported as training would report it (FILE:LINE: reason). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "ps_config.h"
#include "ps_recfile.h"
#include "ps_stream.h"

#define BATCH 4096

typedef struct {
    int from; /* 0 csv, 1 libsvm, 2 idx */
    char input[PS_OPT_STR_MAX], labels[PS_OPT_STR_MAX], out[PS_OPT_STR_MAX];
    int64_t label_column, parts;
    int dtype; /* 0 auto, 1 u8, 2 f32 */
} convert_config_t;

#define C convert_config_t
static const ps_opt_t convert_opts[] = {
    PS_OPT_ENUM("from", C, from, "csv", "csv|libsvm|idx", "the input's format"),
    PS_OPT_STR("input", C, input, "", "the input: a CSV or LIBSVM file, or IDX images (gzip ok)"),
    PS_OPT_STR("labels", C, labels, "", "idx: the label file"),
    PS_OPT_INT("label_column", C, label_column, "-1", -65536, 65535,
               "csv: the label's column; negative counts from the end"),
    PS_OPT_ENUM("dtype", C, dtype, "auto", "auto|u8|f32",
                "dense features as stored: auto = u8 for IDX (byte / 255), f32 for CSV"),
    PS_OPT_STR("out", C, out, "", "the records file (parts > 1: OUT.00000, OUT.00001, ...)"),
    PS_OPT_INT("parts", C, parts, "1", 1, 100000,
               "files to write: record i goes to file i % parts (one partition each)"),
};
#undef C

static const ps_optset_t convert_optset = {
    "ps-convert",
    "Usage: ps-convert --from csv|libsvm|idx --input FILE [--labels FILE] --out FILE\n"
    "Converts training data to ps-worker's binary records (data_format records):\n"
    "a checked header, then fixed-size records (dense) or records and an index\n"
    "(sparse), each with a CRC32, so a worker reads exactly its byte range and\n"
    "parses nothing. Prints what it wrote as JSON on stdout.",
    convert_opts,
    sizeof convert_opts / sizeof convert_opts[0],
};

/* The input as a stream of batches in file order (one partition). */
static ps_stream_t *open_input(const convert_config_t *c, ps_errbuf_t *err)
{
    static const int formats[] = {PS_STREAM_CSV, PS_STREAM_LIBSVM, PS_STREAM_IDX};
    ps_stream_opts_t o = {
        .train_data = c->input,
        .format = formats[c->from],
        .train_labels = c->labels,
        .label_column = (int)c->label_column,
        .n_classes = 1, /* not used: no label limit is set */
        .hash_bits = 0, /* the indices as they are: ps-worker hashes them */
        .rank = 0,
        .world = 1,
        .n_partitions = 1,
        .batch_size = BATCH,
        .epochs = 1,
        .seed = 1,
        .shuffle_window = 1,
        .prefetch = 4,
        .wait_timeout_ms = 600000,
    };
    ps_stream_t *s = ps_stream_new(&o, err);
    if (s && ps_stream_start(s, 0, err) != PS_OK)
        ps_stream_destroy(&s);
    return s;
}

/* Features that are bytes / 255 (IDX pixels) back to the bytes; an error
 * naming the record if one is not. */
static int to_bytes(const float *x, size_t d, uint64_t record, uint8_t *bytes, ps_errbuf_t *err)
{
    for (size_t j = 0; j < d; j++) {
        long v = lrintf(x[j] * 255.0f);
        if (v < 0 || v > 255 || (float)v * PS_DATA_PIXEL_SCALE != x[j])
            return ps_err_set(err, PS_EFORMAT,
                              "record %llu, feature %zu: %g is not a byte / 255 (use --dtype f32)",
                              (unsigned long long)record, j + 1, (double)x[j]);
        bytes[j] = (uint8_t)v;
    }
    return PS_OK;
}

/* The samples of a batch into the files, record i to file i % parts. */
static int write_batch(const convert_config_t *c, ps_rec_writer_t *w, uint64_t *written,
                       const ps_stream_batch_t *b, size_t d, uint8_t *bytes, ps_errbuf_t *err)
{
    size_t n = b->data.n + b->dense.n;
    for (size_t i = 0; i < n; i++) {
        ps_rec_writer_t *out = &w[*written % (uint64_t)c->parts];
        int rc;
        if (b->data.n) {
            const ps_svm_t *s = &b->data;
            uint64_t first = s->row_ptr[i];
            rc = ps_rec_write_sparse(out, s->y[i], s->keys + first, s->vals + first,
                                     (uint32_t)(s->row_ptr[i + 1] - first), err);
        } else {
            const float *x = b->dense.x + i * d;
            rc = out->h.dtype == PS_REC_U8 ? to_bytes(x, d, *written, bytes, err) : PS_OK;
            if (rc == PS_OK)
                rc = ps_rec_write_dense(out, b->dense.y[i], bytes, x, err);
        }
        if (rc != PS_OK)
            return rc;
        (*written)++;
    }
    return PS_OK;
}

/* Opens the parts output files for records like the stream's. */
static int open_outputs(const convert_config_t *c, const ps_stream_t *s, ps_rec_writer_t *w,
                        ps_errbuf_t *err)
{
    bool sparse = ps_stream_is_sparse(s);
    uint32_t dtype = c->dtype ? (uint32_t)c->dtype : c->from == 2 ? PS_REC_U8 : PS_REC_F32;
    for (int64_t p = 0; p < c->parts; p++) {
        char path[PS_OPT_STR_MAX + 32];
        if (c->parts == 1)
            snprintf(path, sizeof path, "%s", c->out);
        else
            snprintf(path, sizeof path, "%s.%05d", c->out, (int)p);
        int rc = ps_rec_writer_open(&w[p], path, sparse ? PS_REC_SPARSE : PS_REC_DENSE,
                                    (uint32_t)ps_stream_row_len(s), dtype, err);
        if (rc != PS_OK)
            return rc;
    }
    return PS_OK;
}

static int convert(const convert_config_t *c, ps_rec_writer_t *w, uint64_t *written,
                   ps_errbuf_t *err)
{
    ps_stream_t *s = open_input(c, err);
    if (!s)
        return err->code;
    size_t d = ps_stream_row_len(s);
    uint8_t *bytes = ps_xmalloc(d + 1);
    int rc = open_outputs(c, s, w, err);
    const ps_stream_batch_t *b;
    while (rc == PS_OK && (rc = ps_stream_next(s, &b, err)) == 1)
        rc = write_batch(c, w, written, b, d, bytes, err);
    free(bytes);
    ps_stream_destroy(&s);
    return rc;
}

int main(int argc, char **argv)
{
    convert_config_t c;
    ps_errbuf_t err = {0};
    int rc = ps_config_load(&convert_optset, &c, argc, argv, &err);
    if (rc == PS_CONFIG_HELP)
        return 0;
    if (rc == PS_OK && (!*c.input || !*c.out))
        rc = ps_err_set(&err, PS_EINVAL, "--input and --out are required");
    if (rc == PS_OK && (c.from == 2) != !!*c.labels)
        rc = ps_err_set(&err, PS_EINVAL, "--labels is for --from idx, and idx needs it");
    if (rc == PS_OK && c.from == 1 && c.dtype == 1)
        rc = ps_err_set(&err, PS_EINVAL, "--dtype u8: LIBSVM values are stored as f32");
    if (rc != PS_OK) {
        fprintf(stderr, "ps-convert: %s\n", err.msg);
        return EX_USAGE;
    }
    ps_rec_writer_t *w = ps_xcalloc((size_t)c.parts, sizeof *w);
    uint64_t written = 0;
    rc = convert(&c, w, &written, &err);
    uint64_t bytes = 0;
    for (int64_t p = 0; p < c.parts; p++) {
        bytes += w[p].at + (w[p].h.kind == PS_REC_SPARSE ? (w[p].h.n + 1) * 8 : 0);
        if (rc != PS_OK)
            ps_rec_writer_abort(&w[p]);
        else if (w[p].f)
            rc = ps_rec_writer_close(&w[p], &err);
    }
    free(w);
    if (rc != PS_OK) {
        fprintf(stderr, "ps-convert: %s\n", err.msg);
        return rc == PS_EIO ? EX_IOERR : EX_DATAERR;
    }
    printf("{\"records\":%llu,\"files\":%lld,\"bytes\":%llu}\n", (unsigned long long)written,
           (long long)c.parts, (unsigned long long)bytes);
    return 0;
}
