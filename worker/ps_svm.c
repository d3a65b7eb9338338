/* ps_svm.c - see ps_svm.h. */
#include "ps_svm.h"

#include <errno.h>
#include <stdbool.h>
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

void ps_svm_row_fini(ps_svm_row_t *row)
{
    free(row->keys);
    free(row->vals);
    memset(row, 0, sizeof *row);
}

static bool is_field_end(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\0';
}

int ps_svm_parse_line(char *line, int hash_bits, ps_svm_row_t *row, ps_errbuf_t *err)
{
    char *hash = strchr(line, '#');
    if (hash)
        *hash = '\0';
    char *p = line, *end;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\n' || *p == '\r' || *p == '\0')
        return 0;
    double label = strtod(p, &end);
    if (end == p || !is_field_end(*end) || !(label == 1 || label == 0 || label == -1))
        return ps_err_set(err, PS_EFORMAT, "label must be 0, 1, -1 or +1");
    row->y = label > 0 ? 1.0f : 0.0f;
    row->nf = 0;
    for (p = end;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\n' || *p == '\r' || *p == '\0')
            return 1;
        errno = 0;
        unsigned long long index = *p >= '0' && *p <= '9' ? strtoull(p, &end, 10) : 0;
        if (*p < '0' || *p > '9' || errno || *end != ':')
            return ps_err_set(err, PS_EFORMAT, "feature '%.*s' is not INDEX:VALUE", token_len(p),
                              p);
        p = end + 1;
        double v = strtod(p, &end);
        if (end == p || !isfinite(v) || !is_field_end(*end))
            return ps_err_set(err, PS_EFORMAT, "feature %llu has no finite value", index);
        p = end;
        if (row->nf == row->cap) {
            row->cap = row->cap ? row->cap * 2 : 16;
            row->keys = ps_xrealloc(row->keys, row->cap * sizeof *row->keys);
            row->vals = ps_xrealloc(row->vals, row->cap * sizeof *row->vals);
        }
        row->keys[row->nf] = ps_svm_key(index, hash_bits);
        row->vals[row->nf] = (float)v;
        row->nf++;
    }
}

/* Appends row to d (its capacities in cap_*). */
static void append_row(ps_svm_t *d, const ps_svm_row_t *row, size_t *cap_rows, size_t *cap_nnz,
                       size_t *cap_y)
{
    grow((void **)&d->y, cap_y, d->n + 1, sizeof *d->y);
    d->y[d->n] = row->y;
    if (d->nnz + row->nf > *cap_nnz) {
        size_t cap = *cap_nnz;
        grow((void **)&d->keys, &cap, d->nnz + row->nf, sizeof *d->keys);
        grow((void **)&d->vals, cap_nnz, d->nnz + row->nf, sizeof *d->vals);
    }
    if (row->nf) { /* a row without features: d->keys may still be NULL */
        memcpy(d->keys + d->nnz, row->keys, row->nf * sizeof *d->keys);
        memcpy(d->vals + d->nnz, row->vals, row->nf * sizeof *d->vals);
    }
    d->nnz += row->nf;
    d->n++;
    grow((void **)&d->row_ptr, cap_rows, d->n + 1, sizeof *d->row_ptr);
    d->row_ptr[d->n] = d->nnz;
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
    ps_svm_row_t row = {0};
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
        ps_errbuf_t why;
        int got = ps_svm_parse_line(line, hash_bits, &row, &why);
        if (got < 0) {
            rc = ps_err_set(err, got, "%s:%llu: %s", path, (unsigned long long)lineno, why.msg);
            break;
        }
        if (got)
            append_row(out, &row, &cap_rows, &cap_nnz, &cap_y);
    }
    int gz_err;
    const char *gz_msg = gzerror(f, &gz_err);
    if (rc == PS_OK && gz_err != Z_OK && gz_err != Z_STREAM_END)
        rc = ps_err_set(err, PS_EIO, "'%s': %s", path, gz_msg);
    gzclose(f);
    free(line);
    ps_svm_row_fini(&row);
    if (rc == PS_OK && out->n == 0)
        rc = ps_err_set(err, PS_EFORMAT, "'%s' has no samples", path);
    if (rc != PS_OK)
        ps_svm_free(out);
    return rc;
}
