/* ps_npy.c - .npy format 1.0 writer and reader for float32 arrays. */
#include "ps_npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int ps_npy_write(const char *path, const float *data, const uint64_t *shape, int ndim,
                 ps_errbuf_t *err)
{
    char dict[256], tmp[4096];
    size_t n = 1;
    int len = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (int i = 0; i < ndim; i++) {
        len += snprintf(dict + len, sizeof dict - (size_t)len, "%llu,%s",
                        (unsigned long long)shape[i], i + 1 < ndim ? " " : "");
        n *= shape[i];
    }
    /* A 1-d shape keeps its trailing comma: (10,) */
    if (ndim > 1)
        len--;
    len += snprintf(dict + len, sizeof dict - (size_t)len, "), }");
    /* magic(6) + version(2) + header len(2) + dict + pad + '\n' is a multiple of 64 */
    size_t total = 10 + (size_t)len + 1;
    size_t pad = (64 - total % 64) % 64;
    unsigned char head[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
    uint16_t hlen = (uint16_t)((size_t)len + pad + 1);
    head[8] = (unsigned char)(hlen & 0xff);
    head[9] = (unsigned char)(hlen >> 8);

    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return ps_err_set(err, PS_EIO, "cannot write '%s': %s", tmp, strerror(errno));
    int ok = fwrite(head, 1, 10, f) == 10 && fwrite(dict, 1, (size_t)len, f) == (size_t)len;
    for (size_t i = 0; ok && i < pad; i++)
        ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF && fwrite(data, sizeof(float), n, f) == n;
    if (fclose(f) != 0)
        ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return ps_err_set(err, PS_EIO, "cannot write '%s': %s", path, strerror(e));
    }
    return PS_OK;
}

static int parse_shape(const char *hdr, uint64_t shape[PS_NPY_MAX_DIMS], int *ndim)
{
    const char *p = strstr(hdr, "'shape':");
    if (!p || !(p = strchr(p, '(')))
        return -1;
    p++;
    *ndim = 0;
    while (*p && *p != ')') {
        char *end;
        unsigned long long v = strtoull(p, &end, 10);
        if (end == p)
            return -1;
        if (*ndim == PS_NPY_MAX_DIMS)
            return -1;
        shape[(*ndim)++] = v;
        p = end;
        while (*p == ',' || *p == ' ')
            p++;
    }
    return *p == ')' ? 0 : -1;
}

int ps_npy_read(const char *path, float **data, uint64_t shape[PS_NPY_MAX_DIMS], int *ndim,
                ps_errbuf_t *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return ps_err_set(err, PS_EIO, "cannot read '%s': %s", path, strerror(errno));
    unsigned char head[10];
    char hdr[4096];
    int rc = PS_EFORMAT;
    *data = NULL;
    if (fread(head, 1, 10, f) != 10 || memcmp(head, "\x93NUMPY", 6) != 0 || head[6] != 1) {
        ps_err_set(err, rc, "'%s': not a version 1 .npy file", path);
        goto out;
    }
    size_t hlen = (size_t)head[8] | ((size_t)head[9] << 8);
    if (hlen >= sizeof hdr || fread(hdr, 1, hlen, f) != hlen) {
        ps_err_set(err, rc, "'%s': truncated header", path);
        goto out;
    }
    hdr[hlen] = '\0';
    if (!strstr(hdr, "'<f4'") || strstr(hdr, "'fortran_order': True") ||
        parse_shape(hdr, shape, ndim) != 0) {
        ps_err_set(err, rc, "'%s': only C-order little-endian float32 is supported", path);
        goto out;
    }
    size_t n = 1;
    for (int i = 0; i < *ndim; i++)
        n *= shape[i];
    *data = malloc(n * sizeof(float) + 1);
    if (!*data) {
        rc = ps_err_set(err, PS_ENOMEM, "'%s': cannot allocate %zu floats", path, n);
        goto out;
    }
    if (fread(*data, sizeof(float), n, f) != n) {
        free(*data);
        *data = NULL;
        ps_err_set(err, rc, "'%s': truncated data (expected %zu floats)", path, n);
        goto out;
    }
    rc = PS_OK;
out:
    fclose(f);
    return rc;
}
