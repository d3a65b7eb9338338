/* fuzz_data.c - any bytes as training data: an IDX image and label file
 * pair (gzip or plain), a CSV file and a LIBSVM file. Readers must load it or fail with
 * PS_EFORMAT / PS_EIO; a loaded set must be internally consistent.
 *
 * Input: a little-endian uint16 length L, then L bytes of the IDX image
 * file, then the label file; the whole input is also read as CSV and as
 * LIBSVM. */
#include <string.h>

#include "fuzz_util.h"
#include "ps_data.h"
#include "ps_svm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const ps_dataset_t *ds)
{
    for (size_t i = 0; i < ds->n; i++) /* touch every value: ASan checks the bounds */
        if (ds->y[i] != ds->y[i] && ds->d && ds->x[i * ds->d] != ds->x[i * ds->d])
            __builtin_trap();
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
    if (fi >= 0)
        close(fi);
    if (fl >= 0)
        close(fl);
    if (fc >= 0)
        close(fc);
    return 0;
}
