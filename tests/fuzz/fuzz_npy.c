/* fuzz_npy.c - any bytes as a .npy file: ps_npy_read must return PS_OK with
 * exactly as many floats as its shape says, or an error naming the file. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "ps_npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile float sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    if (fd < 0)
        return 0;
    float *values;
    uint64_t shape[PS_NPY_MAX_DIMS];
    int ndim;
    ps_errbuf_t err;
    if (ps_npy_read(path, &values, shape, &ndim, &err) == PS_OK) {
        uint64_t n = 1;
        for (int i = 0; i < ndim; i++)
            n *= shape[i];
        if (n * sizeof(float) > size)
            __builtin_trap(); /* more floats than the file holds */
        for (uint64_t i = 0; i < n; i++) /* every float is readable (ASan checks the buffer) */
            sink += values[i];
        free(values);
    } else if (values != NULL || !strstr(err.msg, path)) {
        __builtin_trap();
    }
    close(fd);
    return 0;
}
