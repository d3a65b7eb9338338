/* ps_npy.c - .npy format 1.0 writer and reader for float32 arrays. The bytes
 * on disk are little-endian ('<f4') whatever the host's order. */
#include "ps_npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ps_file.h"

#define NPY_MAGIC_BYTES 10
#define NPY_MAX_HEADER 4096 /* ours are < 256; NumPy's own stay far below */

static int host_is_big_endian(void)
{
    return __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__;
}

static void swap_f32(void *p, size_t n)
{
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++, b += 4) {
        unsigned char t0 = b[0], t1 = b[1];
        b[0] = b[3];
        b[1] = b[2];
        b[2] = t1;
        b[3] = t0;
    }
}

/* n floats as little-endian bytes; converted in blocks on a big-endian host. */
static int write_le_f32(FILE *f, const float *data, size_t n)
{
    if (!host_is_big_endian())
        return fwrite(data, sizeof(float), n, f) == n ? 0 : -1;
    float block[1024];
    for (size_t done = 0; done < n;) {
        size_t k = n - done < 1024 ? n - done : 1024;
        memcpy(block, data + done, k * sizeof(float));
        swap_f32(block, k);
        if (fwrite(block, sizeof(float), k, f) != k)
            return -1;
        done += k;
    }
    return 0;
}

/* The header dict, space-padded and '\n'-terminated so that magic + length +
 * header is a multiple of 64 bytes. Returns its length, or 0 if too long. */
static size_t format_header(char *dict, size_t cap, const uint64_t *shape, int ndim)
{
    int len = snprintf(dict, cap, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (int i = 0; i < ndim && (size_t)len < cap; i++)
        len += snprintf(dict + len, cap - (size_t)len, "%llu,%s", (unsigned long long)shape[i],
                        i + 1 < ndim ? " " : "");
    if (ndim > 1)
        len--; /* a 1-d shape keeps its trailing comma: (10,) */
    if ((size_t)len < cap)
        len += snprintf(dict + len, cap - (size_t)len, "), }");
    size_t total = NPY_MAGIC_BYTES + (size_t)len + 1;
    size_t pad = (64 - total % 64) % 64;
    if ((size_t)len + pad + 2 > cap)
        return 0;
    memset(dict + len, ' ', pad);
    dict[(size_t)len + pad] = '\n';
    return (size_t)len + pad + 1;
}

int ps_npy_write(const char *path, const float *data, const uint64_t *shape, int ndim,
                 ps_errbuf_t *err)
{
    char dict[512];
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    size_t hlen = ndim <= PS_NPY_MAX_DIMS ? format_header(dict, sizeof dict, shape, ndim) : 0;
    if (!hlen)
        return ps_err_set(err, PS_EINVAL, "cannot write '%s': shape of %d dims", path, ndim);
    unsigned char head[NPY_MAGIC_BYTES] = {0x93,
                                           'N',
                                           'U',
                                           'M',
                                           'P',
                                           'Y',
                                           1,
                                           0,
                                           (unsigned char)(hlen & 0xff),
                                           (unsigned char)(hlen >> 8)};
    ps_file_t *pf = ps_file_create(path, 0644, err);
    if (!pf)
        return PS_EIO;
    FILE *f = ps_file_stream(pf);
    if (fwrite(head, 1, sizeof head, f) != sizeof head || fwrite(dict, 1, hlen, f) != hlen ||
        write_le_f32(f, data, n) != 0) {
        int e = errno;
        ps_file_abort(&pf);
        return ps_err_set(err, PS_EIO, "cannot write '%s': %s", path, strerror(e ? e : EIO));
    }
    return ps_file_commit(&pf, err);
}

/* The header is a Python dict literal with exactly the keys 'descr',
 * 'fortran_order' and 'shape' (any order, as NumPy writes them). The parser
 * below accepts that literal and nothing else: quoted keys, a quoted descr,
 * True/False, a tuple of decimal integers, optional trailing commas. */
typedef struct {
    const char *p, *end;
} npy_cursor_t;

static void skip_space(npy_cursor_t *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
        c->p++;
}

static int eat(npy_cursor_t *c, char ch)
{
    skip_space(c);
    if (c->p < c->end && *c->p == ch)
        return c->p++, 1;
    return 0;
}

/* A '...' literal into out (cap bytes); 0, or -1. */
static int quoted(npy_cursor_t *c, char *out, size_t cap)
{
    skip_space(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return -1;
    char q = *c->p++;
    size_t len = 0;
    while (c->p < c->end && *c->p != q && len + 1 < cap)
        out[len++] = *c->p++;
    out[len] = '\0';
    return c->p < c->end && *c->p == q ? (c->p++, 0) : -1;
}

static int parse_tuple(npy_cursor_t *c, uint64_t shape[PS_NPY_MAX_DIMS], int *ndim)
{
    if (!eat(c, '('))
        return -1;
    *ndim = 0;
    while (!eat(c, ')')) {
        skip_space(c);
        if (*ndim == PS_NPY_MAX_DIMS || c->p >= c->end || *c->p < '0' || *c->p > '9')
            return -1;
        uint64_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *c->p - '0', &v))
                return -1;
            c->p++;
        }
        shape[(*ndim)++] = v;
        if (!eat(c, ',')) {
            if (!eat(c, ')'))
                return -1;
            break;
        }
    }
    return 0;
}

static int parse_header(const char *hdr, size_t len, uint64_t shape[PS_NPY_MAX_DIMS], int *ndim)
{
    npy_cursor_t c = {hdr, hdr + len};
    int seen = 0; /* bits: descr, fortran_order, shape */
    if (!eat(&c, '{'))
        return -1;
    while (!eat(&c, '}')) {
        char key[32], val[32];
        if (quoted(&c, key, sizeof key) != 0 || !eat(&c, ':'))
            return -1;
        if (strcmp(key, "descr") == 0 && !(seen & 1)) {
            if (quoted(&c, val, sizeof val) != 0 || strcmp(val, "<f4") != 0)
                return -1;
            seen |= 1;
        } else if (strcmp(key, "fortran_order") == 0 && !(seen & 2)) {
            skip_space(&c);
            if ((size_t)(c.end - c.p) < 5 || strncmp(c.p, "False", 5) != 0)
                return -1;
            c.p += 5;
            seen |= 2;
        } else if (strcmp(key, "shape") == 0 && !(seen & 4)) {
            if (parse_tuple(&c, shape, ndim) != 0)
                return -1;
            seen |= 4;
        } else {
            return -1;
        }
        if (!eat(&c, ',')) {
            if (!eat(&c, '}'))
                return -1;
            break;
        }
    }
    skip_space(&c);
    /* the padding ends with one newline, and nothing may follow it */
    return seen == 7 && c.p + 1 == c.end && *c.p == '\n' ? 0 : -1;
}

/* Element count of shape; -1 if its bytes do not fit in a size_t. */
static int shape_elems(const uint64_t *shape, int ndim, size_t *n)
{
    uint64_t count = 1;
    for (int i = 0; i < ndim; i++)
        if (__builtin_mul_overflow(count, shape[i], &count))
            return -1;
    if (count > (uint64_t)(SIZE_MAX / sizeof(float)))
        return -1;
    *n = (size_t)count;
    return 0;
}

/* Reads the magic, the header and the shape; *data_off is where data starts. */
static int read_header(FILE *f, const char *path, uint64_t shape[PS_NPY_MAX_DIMS], int *ndim,
                       long *data_off, ps_errbuf_t *err)
{
    unsigned char head[NPY_MAGIC_BYTES];
    char hdr[NPY_MAX_HEADER];
    if (fread(head, 1, sizeof head, f) != sizeof head || memcmp(head, "\x93NUMPY", 6) != 0 ||
        head[6] != 1 || head[7] != 0)
        return ps_err_set(err, PS_EFORMAT, "'%s': not a version 1.0 .npy file", path);
    size_t hlen = (size_t)head[8] | ((size_t)head[9] << 8);
    if (hlen == 0 || hlen > sizeof hdr || fread(hdr, 1, hlen, f) != hlen)
        return ps_err_set(err, PS_EFORMAT, "'%s': truncated or oversized header", path);
    if (memchr(hdr, '\0', hlen) || parse_header(hdr, hlen, shape, ndim) != 0)
        return ps_err_set(err, PS_EFORMAT,
                          "'%s': header is not a C-order little-endian float32 array "
                          "(only '<f4', fortran_order False, up to %d dims)",
                          path, PS_NPY_MAX_DIMS);
    *data_off = (long)(sizeof head + hlen);
    return PS_OK;
}

int ps_npy_read(const char *path, float **data, uint64_t shape[PS_NPY_MAX_DIMS], int *ndim,
                ps_errbuf_t *err)
{
    *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return ps_err_set(err, PS_EIO, "cannot read '%s': %s", path, strerror(errno));
    long off;
    size_t n;
    struct stat st;
    int rc = read_header(f, path, shape, ndim, &off, err);
    if (rc != PS_OK)
        goto out;
    rc = PS_EFORMAT;
    if (shape_elems(shape, *ndim, &n) != 0) {
        ps_err_set(err, rc, "'%s': shape's element count overflows", path);
        goto out;
    }
    /* the size check comes before the allocation: a crafted shape cannot
     * make us allocate more than the file holds */
    if (fstat(fileno(f), &st) != 0 || st.st_size < off ||
        (uint64_t)(st.st_size - off) != (uint64_t)n * sizeof(float)) {
        ps_err_set(err, rc, "'%s': %lld data bytes, the shape needs %llu", path,
                   (long long)(st.st_size - off), (unsigned long long)n * sizeof(float));
        goto out;
    }
    if (!(*data = malloc(n * sizeof(float) + 1))) {
        rc = ps_err_set(err, PS_ENOMEM, "'%s': cannot allocate %zu floats", path, n);
        goto out;
    }
    if (fread(*data, sizeof(float), n, f) != n) {
        free(*data);
        *data = NULL;
        ps_err_set(err, rc, "'%s': truncated data (expected %zu floats)", path, n);
        goto out;
    }
    if (host_is_big_endian())
        swap_f32(*data, n);
    rc = PS_OK;
out:
    fclose(f);
    return rc;
}
