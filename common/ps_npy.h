/* ps_npy.h - NumPy .npy files (format 1.0, little-endian float32, C order),
 * so users can numpy.load() trained tables. Any thread. */
#ifndef PS_NPY_H
#define PS_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "ps_err.h"

#define PS_NPY_MAX_DIMS 8

/* Writes data (product of shape elements) to path via a temp file + rename.
 * PS_EIO with the path and cause in err on failure. */
int ps_npy_write(const char *path, const float *data, const uint64_t *shape, int ndim,
                 ps_errbuf_t *err);
/* Reads a '<f4' C-order .npy file. On success *data (caller frees), shape and
 * *ndim are set. PS_EIO / PS_EFORMAT with the reason in err. */
int ps_npy_read(const char *path, float **data, uint64_t shape[PS_NPY_MAX_DIMS], int *ndim,
                ps_errbuf_t *err);

#endif
