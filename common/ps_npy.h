/* ps_npy.h - NumPy .npy files (format 1.0, little-endian float32, C order),
 * so users can numpy.load() trained tables. Any thread. */
#ifndef PS_NPY_H
#define PS_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "ps_err.h"

#define PS_NPY_MAX_DIMS 8

/* Writes data (product of shape elements) to path, replaced atomically and
 * durably through ps_file (mode 0644 less the umask). The values are written
 * little-endian ('<f4') on any host. PS_EINVAL for more than
 * PS_NPY_MAX_DIMS dims; PS_EIO with the path and cause in err. */
int ps_npy_write(const char *path, const float *data, const uint64_t *shape, int ndim,
                 ps_errbuf_t *err);
/* Reads a '<f4' C-order .npy file (format 1.0). The header must be exactly
 * NumPy's dict ('descr' '<f4', 'fortran_order' False, 'shape' of at most
 * PS_NPY_MAX_DIMS dims), the element count must not overflow, and the data
 * must be exactly count * 4 bytes to the end of the file (checked before
 * anything is allocated). On success *data (caller frees; native order),
 * shape and *ndim are set. PS_EIO / PS_EFORMAT / PS_ENOMEM with the path
 * and reason in err; *data is NULL then. */
int ps_npy_read(const char *path, float **data, uint64_t shape[PS_NPY_MAX_DIMS], int *ndim,
                ps_errbuf_t *err);

#endif
