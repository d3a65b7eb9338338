/* ps_svm.c - see ps_svm.h. */
#include "ps_svm.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "ps_rng.h"

uint64_t ps_svm_key(uint64_t index, int hash_bits)
{
    if (hash_bits <= 0)
        return index;
    return ps_rng_mix(index, 0x5eed5eedULL) & ((1ULL << hash_bits) - 1);
}

void ps_svm_free(ps_svm_t *d)
{
    free(d->row_ptr);
    free(d->keys);
    free(d->vals);
    free(d->y);
    memset(d, 0, sizeof *d);
}

/* Length of the word at p (at most 40, for error messages). */
static int token_len(const char *p)
{
    size_t n = strcspn(p, " \t\r\n");
    return n > 40 ? 40 : (int)n;
}

static void grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return;
    *cap = need * 2 > 1024 ? need * 2 : 1024;
    *p = ps_xrealloc(*p, *cap * elem);
}

int ps_svm_load(const char *path, int hash_bits, ps_svm_t *out, ps_errbuf_t *err)
{
    memset(out, 0, sizeof *out);
    gzFile f = gzopen(path, "rb");
    if (!f)
        return ps_err_set(err, PS_EIO, "cannot read '%s': %s", path, strerror(errno));
    gzbuffer(f, 1 << 20);
    size_t cap_rows = 0, cap_nnz = 0, cap_y = 0;
    size_t line_cap = 1 << 16;
    char *line = ps_xmalloc(line_cap);
    int rc = PS_OK;
    uint64_t lineno = 0;
    grow((void **)&out->row_ptr, &cap_rows, 1, sizeof *out->row_ptr);
    out->row_ptr[0] = 0;
    for (;;) {
        /* one whole line, however long */
        size_t len = 0;
        line[0] = '\0';
        while (gzgets(f, line + len, (int)(line_cap - len))) {
            len += strlen(line + len);
            if (len && line[len - 1] == '\n')
                break;
            if (len + 1 < line_cap)
                break; /* end of file without a newline */
            line_cap *= 2;
            line = ps_xrealloc(line, line_cap);
        }
        if (len == 0)
            break;
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\n' || *p == '\r' || *p == '\0')
            continue;
        char *end;
        double label = strtod(p, &end);
        if (end == p || (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r' && *end) ||
            !(label == 1 || label == 0 || label == -1)) {
            rc = ps_err_set(err, PS_EFORMAT, "%s:%llu: label must be 0, 1, -1 or +1", path,
                            (unsigned long long)lineno);
            break;
        }
        grow((void **)&out->y, &cap_y, out->n + 1, sizeof *out->y);
        out->y[out->n] = label > 0 ? 1.0f : 0.0f;
        p = end;
        for (;;) {
            while (*p == ' ' || *p == '\t')
                p++;
            if (*p == '\n' || *p == '\r' || *p == '\0')
                break;
            if (*p < '0' || *p > '9') {
                rc = ps_err_set(err, PS_EFORMAT, "%s:%llu: feature '%.*s' is not INDEX:VALUE", path,
                                (unsigned long long)lineno, token_len(p), p);
                break;
            }
            errno = 0;
            unsigned long long index = strtoull(p, &end, 10);
            if (errno || *end != ':') {
                rc = ps_err_set(err, PS_EFORMAT, "%s:%llu: feature '%.*s' is not INDEX:VALUE", path,
                                (unsigned long long)lineno, token_len(p), p);
                break;
            }
            p = end + 1;
            double v = strtod(p, &end);
            if (end == p || !isfinite(v) ||
                (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r' && *end)) {
                rc = ps_err_set(err, PS_EFORMAT, "%s:%llu: feature %llu has no finite value", path,
                                (unsigned long long)lineno, index);
                break;
            }
            p = end;
            if (out->nnz == cap_nnz) {
                cap_nnz = cap_nnz ? cap_nnz * 2 : 4096;
                out->keys = ps_xrealloc(out->keys, cap_nnz * sizeof *out->keys);
                out->vals = ps_xrealloc(out->vals, cap_nnz * sizeof *out->vals);
            }
            out->keys[out->nnz] = ps_svm_key(index, hash_bits);
            out->vals[out->nnz] = (float)v;
            out->nnz++;
        }
        if (rc != PS_OK)
            break;
        out->n++;
        grow((void **)&out->row_ptr, &cap_rows, out->n + 1, sizeof *out->row_ptr);
        out->row_ptr[out->n] = out->nnz;
    }
    int gz_err;
    const char *gz_msg = gzerror(f, &gz_err);
    if (rc == PS_OK && gz_err != Z_OK && gz_err != Z_STREAM_END)
        rc = ps_err_set(err, PS_EIO, "'%s': %s", path, gz_msg);
    gzclose(f);
    free(line);
    if (rc == PS_OK && out->n == 0)
        rc = ps_err_set(err, PS_EFORMAT, "'%s' has no samples", path);
    if (rc != PS_OK)
        ps_svm_free(out);
    return rc;
}
