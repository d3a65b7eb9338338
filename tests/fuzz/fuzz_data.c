/* fuzz_data.c - any bytes as training data: an IDX image and label file
 * pair (gzip or plain), a CSV file, a LIBSVM file and ps-convert records
 * (dense and sparse), loaded whole and streamed (ps_stream: the IDX pair,
 * the CSV and the records read by 2 workers). Readers must load it or fail
 * with PS_EFORMAT / PS_EIO; a loaded set must be internally consistent.
 *
 * Input: a little-endian uint16 length L, then L bytes of the IDX image
 * file, then the label file; the whole input is also read as CSV, as
 * LIBSVM and as records. */
#include <string.h>

#include "fuzz_util.h"
#include "ps_data.h"
#include "ps_recfile.h"
#include "ps_stream.h"
#include "ps_svm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const ps_dataset_t *ds)
{
    for (size_t i = 0; i < ds->n; i++) /* touch every value: ASan checks the bounds */
        if (ds->y[i] != ds->y[i] && ds->d && ds->x[i * ds->d] != ds->x[i * ds->d])
            __builtin_trap();
}

/* Streams data as format, each of 2 workers to its end or its error. */
static void stream_all(int format, const char *data, const char *labels)
{
    for (uint32_t rank = 0; rank < 2; rank++) {
        ps_stream_opts_t o = {.train_data = data,
                              .format = format,
                              .train_labels = labels,
                              .label_column = -1,
                              .hash_bits = 20,
                              .rank = rank,
                              .world = 2,
                              .batch_size = 4,
                              .epochs = 1,
                              .seed = 1,
                              .shuffle_window = 3,
                              .prefetch = 2,
                              .wait_timeout_ms = 10000};
        ps_errbuf_t err;
        ps_stream_t *s = ps_stream_new(&o, &err);
        if (!s)
            continue;
        ps_stream_set_label_limit(s, 10);
        const ps_stream_batch_t *b;
        size_t d = ps_stream_row_len(s);
        int rc = ps_stream_start(s, 0, &err);
        while (rc == PS_OK && (rc = ps_stream_next(s, &b, &err)) == 1) {
            rc = PS_OK;
            for (size_t i = 0; i < b->dense.n * d; i++) /* touch every value */
                if (b->dense.x[i] != b->dense.x[i])
                    __builtin_trap();
            if (b->data.n && b->data.row_ptr[b->data.n] != b->data.nnz)
                __builtin_trap();
        }
        if (rc == PS_ETIME)
            __builtin_trap(); /* a reader that hangs */
        ps_stream_destroy(&s);
    }
}

static void records(const char *path)
{
    ps_errbuf_t err;
    ps_dataset_t ds;
    if (ps_rec_load_dense(path, &ds, &err) == PS_OK) {
        check(&ds);
        ps_data_free(&ds);
    }
    ps_svm_t svm;
    if (ps_rec_load_sparse(path, 20, &svm, &err) == PS_OK) {
        if (svm.row_ptr[svm.n] != svm.nnz)
            __builtin_trap();
        ps_svm_free(&svm);
    }
    stream_all(PS_STREAM_RECORDS, path, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t split = (size_t)data[0] | (size_t)data[1] << 8;
    if (split > size - 2)
        split = size - 2;
    char images[64], labels[64], csv[64];
    int fi = fuzz_memfile(data + 2, split, images, sizeof images);
    int fl = fuzz_memfile(data + 2 + split, size - 2 - split, labels, sizeof labels);
    int fc = fuzz_memfile(data, size, csv, sizeof csv);
    ps_errbuf_t err;
    ps_dataset_t ds;
    if (fi >= 0 && fl >= 0) {
        memset(&ds, 0, sizeof ds);
        if (ps_data_load_idx(images, labels, &ds, &err) == PS_OK)
            check(&ds);
        ps_data_free(&ds);
    }
    if (fc >= 0) {
        for (int col = -1; col <= 0; col++) {
            memset(&ds, 0, sizeof ds);
            if (ps_data_load_csv(csv, col, &ds, &err) == PS_OK)
                check(&ds);
            ps_data_free(&ds);
        }
    }
    if (fc >= 0) {
        ps_svm_t svm;
        for (int bits = 0; bits <= 20; bits += 20)
            if (ps_svm_load(csv, bits, &svm, &err) == PS_OK) {
                /* a loaded set is consistent CSR: touch every entry */
                if (svm.row_ptr[svm.n] != svm.nnz)
                    __builtin_trap();
                for (size_t i = 0; i < svm.nnz; i++)
                    if (svm.vals[i] != svm.vals[i])
                        __builtin_trap();
                ps_svm_free(&svm);
            }
    }
    if (fi >= 0 && fl >= 0)
        stream_all(PS_STREAM_IDX, images, labels);
    if (fc >= 0) {
        stream_all(PS_STREAM_CSV, csv, NULL);
        records(csv);
    }
    if (fi >= 0)
        close(fi);
    if (fl >= 0)
        close(fl);
    if (fc >= 0)
        close(fc);
    return 0;
}
