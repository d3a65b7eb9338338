/* ps_data.c - IDX and CSV readers. Everything read from a file is checked
 * against the sizes the file itself declares before it is trusted. */
#include "ps_data.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "ps_rng.h"

#define IDX_MAX_ITEMS (1u << 28)

void ps_data_free(ps_dataset_t *ds)
{
    free(ds->x);
    free(ds->x8);
    free(ds->y);
    ds->x = ds->y = NULL;
    ds->x8 = NULL;
    ds->n = ds->d = 0;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads exactly len bytes; -1 on short read. */
static int gz_read_all(gzFile f, void *buf, size_t len)
{
    unsigned char *p = buf;
    while (len > 0) {
        unsigned chunk = len > (1u << 30) ? (1u << 30) : (unsigned)len;
        int n = gzread(f, p, chunk);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads up to want bytes into a buffer that grows with what actually
 * arrives, so a header that promises gigabytes costs nothing until the
 * bytes are there. *got is the count read; NULL if out of memory. */
static unsigned char *gz_read_grow(gzFile f, size_t want, size_t *got)
{
    size_t cap = want < (1u << 20) ? want : (1u << 20), n = 0;
    unsigned char *buf = malloc(cap ? cap : 1);
    while (buf && n < want) {
        if (n == cap) {
            size_t next = cap * 2 < want ? cap * 2 : want;
            unsigned char *grown = realloc(buf, next);
            if (!grown) {
                free(buf);
                return NULL;
            }
            buf = grown;
            cap = next;
        }
        size_t chunk = cap - n > (1u << 30) ? (1u << 30) : cap - n;
        int r = gzread(f, buf + n, (unsigned)chunk);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    *got = n;
    return buf;
}

/* Opens an IDX ubyte file and reads its header: dims[0..ndim). */
static gzFile idx_open(const char *path, int want_ndim_min, int want_ndim_max, uint32_t *dims,
                       int *ndim, ps_errbuf_t *err)
{
    gzFile f = gzopen(path, "rb");
    if (!f) {
        ps_err_set(err, PS_EIO, "cannot read '%s': %s", path, strerror(errno));
        return NULL;
    }
    unsigned char head[4];
    if (gz_read_all(f, head, 4) != 0 || head[0] != 0 || head[1] != 0) {
        ps_err_set(err, PS_EFORMAT, "'%s': bad magic: not an IDX file", path);
        goto fail;
    }
    if (head[2] != 0x08) {
        ps_err_set(err, PS_EFORMAT, "'%s': IDX element type 0x%02x is not ubyte (0x08)", path,
                   head[2]);
        goto fail;
    }
    *ndim = head[3];
    if (*ndim < want_ndim_min || *ndim > want_ndim_max) {
        ps_err_set(err, PS_EFORMAT, "'%s': %d dimensions, expected %d to %d", path, *ndim,
                   want_ndim_min, want_ndim_max);
        goto fail;
    }
    for (int i = 0; i < *ndim; i++) {
        unsigned char b[4];
        if (gz_read_all(f, b, 4) != 0) {
            ps_err_set(err, PS_EFORMAT, "'%s': truncated header", path);
            goto fail;
        }
        dims[i] = be32(b);
        if (dims[i] == 0 || dims[i] > IDX_MAX_ITEMS) {
            ps_err_set(err, PS_EFORMAT, "'%s': dimension %d is %u", path, i, dims[i]);
            goto fail;
        }
    }
    return f;
fail:
    gzclose(f);
    return NULL;
}

int ps_data_idx_header(const char *path, int ndim_min, int ndim_max, uint32_t *dims, int *ndim,
                       uint64_t *data_offset, ps_errbuf_t *err)
{
    gzFile f = idx_open(path, ndim_min, ndim_max, dims, ndim, err);
    if (!f)
        return err->code;
    gzclose(f);
    *data_offset = 4 + 4 * (uint64_t)*ndim;
    return PS_OK;
}

/* ps_data_load_idx, keeping the pixel bytes in x8 if keep_bytes, and of
 * the parts only those keep says (the pixels are not read without
 * PS_DATA_FEATURES; the labels always are, for n_classes). */
static int load_idx(const char *images, const char *labels, bool keep_bytes, unsigned keep,
                    ps_dataset_t *ds, ps_errbuf_t *err)
{
    uint32_t idims[8], ldims[8];
    int indim, lndim, rc = PS_OK;
    unsigned char *buf = NULL;
    memset(ds, 0, sizeof *ds);
    gzFile fi = idx_open(images, 2, 4, idims, &indim, err);
    gzFile fl = fi ? idx_open(labels, 1, 1, ldims, &lndim, err) : NULL;
    if (!fi || !fl) {
        rc = err ? err->code : PS_EFORMAT;
        goto out;
    }
    size_t n = idims[0], d = 1;
    for (int i = 1; i < indim; i++)
        d *= idims[i];
    if (ldims[0] != n) {
        rc = ps_err_set(err, PS_EFORMAT, "'%s' has %u labels but '%s' has %zu images", labels,
                        ldims[0], images, n);
        goto out;
    }
    if (n * d > (size_t)IDX_MAX_ITEMS * 4) {
        rc = ps_err_set(err, PS_ERANGE, "'%s': %zu x %zu values is too large", images, n, d);
        goto out;
    }
    size_t got = n * d;
    bool want_x = keep & PS_DATA_FEATURES;
    buf = want_x ? gz_read_grow(fi, n * d, &got) : malloc(n ? n : 1);
    if (buf && got < n * d) {
        rc = ps_err_set(err, PS_EFORMAT,
                        "'%s': truncated: header promises %zu bytes of pixels, file has %zu",
                        images, n * d, got);
        goto out;
    }
    if (buf && want_x && keep_bytes) {
        ds->x8 = buf; /* the labels get a buffer of their own */
        buf = malloc(n ? n : 1);
    } else if (want_x) {
        ds->x = buf ? malloc(n * d * sizeof(float)) : NULL;
    }
    ds->y = buf ? malloc(n * sizeof(float)) : NULL;
    if (!buf || (want_x && !(ds->x || ds->x8)) || !ds->y) {
        rc = ps_err_set(err, PS_ENOMEM, "'%s': cannot allocate %zu x %zu floats", images, n, d);
        goto out;
    }
    for (size_t i = 0; ds->x && i < n * d; i++)
        ds->x[i] = (float)buf[i] * PS_DATA_PIXEL_SCALE;
    if (gz_read_all(fl, buf, n) != 0) {
        rc = ps_err_set(err, PS_EFORMAT, "'%s': truncated: header promises %zu labels", labels, n);
        goto out;
    }
    uint32_t max_label = 0;
    for (size_t i = 0; i < n; i++) {
        ds->y[i] = buf[i];
        if (buf[i] > max_label)
            max_label = buf[i];
    }
    ds->n = n;
    ds->d = d;
    ds->n_classes = max_label + 1;
    if (!(keep & PS_DATA_LABELS)) {
        free(ds->y);
        ds->y = NULL;
    }
out:
    free(buf);
    if (fi)
        gzclose(fi);
    if (fl)
        gzclose(fl);
    if (rc != PS_OK)
        ps_data_free(ds);
    return rc;
}

int ps_data_load_idx(const char *images, const char *labels, ps_dataset_t *ds, ps_errbuf_t *err)
{
    return load_idx(images, labels, false, PS_DATA_ALL, ds, err);
}

int ps_data_load_idx_bytes(const char *images, const char *labels, ps_dataset_t *ds,
                           ps_errbuf_t *err)
{
    return load_idx(images, labels, true, PS_DATA_ALL, ds, err);
}

int ps_data_load_idx_part(const char *images, const char *labels, bool keep_bytes, unsigned keep,
                          ps_dataset_t *ds, ps_errbuf_t *err)
{
    return load_idx(images, labels, keep_bytes, keep, ds, err);
}

void ps_data_widen(ps_dataset_t *ds)
{
    if (!ds->x8)
        return;
    size_t count = ds->n * ds->d;
    ds->x = ps_xmalloc((count ? count : 1) * sizeof(float));
    for (size_t k = 0; k < ds->n * ds->d; k++)
        ds->x[k] = (float)ds->x8[k] * PS_DATA_PIXEL_SCALE;
    free(ds->x8);
    ds->x8 = NULL;
}

/* Splits line at commas in place; returns the field count (max cap). */
static size_t split_csv(char *line, char **fields, size_t cap)
{
    size_t n = 0;
    char *p = line;
    while (n < cap) {
        fields[n++] = p;
        char *comma = strchr(p, ',');
        if (!comma)
            break;
        *comma = '\0';
        p = comma + 1;
    }
    return n;
}

static int parse_float(const char *s, float *out)
{
    while (isspace((unsigned char)*s))
        s++;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno == ERANGE)
        return -1;
    while (isspace((unsigned char)*end))
        end++;
    if (*end || !isfinite(v))
        return -1;
    *out = (float)v;
    return 0;
}

size_t ps_data_csv_fields(const char *line)
{
    if (!*line)
        return 0;
    size_t n = 1;
    for (const char *p = line; (p = strchr(p, ',')); p++)
        n++;
    return n;
}

/* Field text from p up to the next comma (or the end) into buf; NULL if
 * it does not fit (no number is that long). */
static const char *csv_field(const char *p, char *buf, size_t cap, const char **next)
{
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    *next = comma ? comma + 1 : NULL;
    if (len >= cap)
        return NULL;
    memcpy(buf, p, len);
    buf[len] = '\0';
    return buf;
}

int ps_data_csv_parse_line(const char *line, size_t n_cols, size_t label_col, float *x, float *y,
                           ps_errbuf_t *why)
{
    size_t nf = ps_data_csv_fields(line);
    if (nf == 0 || (nf == 1 && strspn(line, " \t\r") == strlen(line)))
        return 0;
    if (nf != n_cols)
        return ps_err_set(why, PS_EFORMAT, "%zu fields, expected %zu", nf, n_cols);
    const char *p = line;
    char buf[128];
    for (size_t i = 0, k = 0; i < nf; i++) {
        float v;
        const char *field = csv_field(p, buf, sizeof buf, &p);
        if (!field)
            return ps_err_set(why, PS_EFORMAT, "field %zu is not a number (over %zu bytes)", i + 1,
                              sizeof buf - 1);
        if (parse_float(field, &v) != 0)
            return ps_err_set(why, PS_EFORMAT, "field %zu '%.40s' is not a number", i + 1, field);
        if (i == label_col)
            *y = v;
        else
            x[k++] = v;
    }
    return 1;
}

typedef struct {
    float *vals;
    size_t n, cap;
} floatvec_t;

static int push_float(floatvec_t *v, float x)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4096;
        float *p = realloc(v->vals, cap * sizeof(float));
        if (!p)
            return -1;
        v->vals = p;
        v->cap = cap;
    }
    v->vals[v->n++] = x;
    return 0;
}

static void chomp(char *line)
{
    size_t len = strlen(line);
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        line[--len] = '\0';
}

int ps_data_load_csv(const char *path, int label_col, ps_dataset_t *ds, ps_errbuf_t *err)
{
    return ps_data_load_csv_part(path, label_col, PS_DATA_ALL, ds, err);
}

int ps_data_load_csv_part(const char *path, int label_col, unsigned keep, ps_dataset_t *ds,
                          ps_errbuf_t *err)
{
    enum { MAX_FIELDS = 1 << 16 };
    memset(ds, 0, sizeof *ds);
    FILE *f = fopen(path, "r");
    if (!f)
        return ps_err_set(err, PS_EIO, "cannot read '%s': %s", path, strerror(errno));
    char **fields = malloc(MAX_FIELDS * sizeof *fields);
    floatvec_t xs = {0}, ys = {0};
    char *line = NULL;
    size_t line_cap = 0, n_cols = 0, lineno = 0;
    int rc = PS_OK;
    while (getline(&line, &line_cap, f) > 0) {
        lineno++;
        chomp(line);
        if (!*line)
            continue;
        size_t nf = split_csv(line, fields, MAX_FIELDS);
        float vals[1];
        if (n_cols == 0) {
            n_cols = nf;
            size_t lc = label_col < 0 ? (size_t)((int)nf + label_col) : (size_t)label_col;
            if (nf < 2 || lc >= nf) {
                rc = ps_err_set(err, PS_EFORMAT,
                                "%s:%zu: %zu columns; need features and a label column %d", path,
                                lineno, nf, label_col);
                break;
            }
            label_col = (int)lc;
            if (parse_float(fields[0], vals) != 0)
                continue; /* header line */
        }
        if (nf != n_cols) {
            rc = ps_err_set(err, PS_EFORMAT, "%s:%zu: %zu fields, expected %zu like line 1", path,
                            lineno, nf, n_cols);
            break;
        }
        for (size_t i = 0; i < nf && rc == PS_OK; i++) {
            float v;
            if (parse_float(fields[i], &v) != 0)
                rc = ps_err_set(err, PS_EFORMAT, "%s:%zu: field %zu '%.40s' is not a number", path,
                                lineno, i + 1, fields[i]);
            else if (((int)i == label_col || (keep & PS_DATA_FEATURES)) &&
                     push_float((int)i == label_col ? &ys : &xs, v) != 0)
                rc = ps_err_set(err, PS_ENOMEM, "%s:%zu: out of memory", path, lineno);
        }
        if (rc != PS_OK)
            break;
    }
    if (rc == PS_OK && ys.n == 0)
        rc = ps_err_set(err, PS_EFORMAT, "%s: no data rows", path);
    free(line);
    free(fields);
    fclose(f);
    if (rc != PS_OK) {
        free(xs.vals);
        free(ys.vals);
        return rc;
    }
    ds->n = ys.n;
    ds->d = n_cols - 1;
    ds->x = xs.vals;
    ds->y = ys.vals;
    uint32_t max_label = 0;
    for (size_t i = 0; i < ds->n; i++) {
        float y = ds->y[i];
        if (y < 0 || y != floorf(y) || y > 65535) {
            max_label = UINT32_MAX;
            break;
        }
        if ((uint32_t)y > max_label)
            max_label = (uint32_t)y;
    }
    ds->n_classes = max_label == UINT32_MAX ? 0 : max_label + 1;
    if (!(keep & PS_DATA_LABELS)) {
        free(ds->y);
        ds->y = NULL;
    }
    return PS_OK;
}

void ps_data_standardize(ps_dataset_t *train, ps_dataset_t *test, ps_dataset_t *val)
{
    size_t d = train->x ? train->d : 0; /* no features held: nothing to scale */
    for (size_t j = 0; j < d; j++) {
        double sum = 0, sq = 0;
        for (size_t i = 0; i < train->n; i++) {
            double v = train->x[i * d + j];
            sum += v;
            sq += v * v;
        }
        double mean = sum / (double)train->n;
        double var = sq / (double)train->n - mean * mean;
        float inv = var > 1e-12 ? (float)(1.0 / sqrt(var)) : 1.0f;
        for (size_t i = 0; i < train->n; i++)
            train->x[i * d + j] = (train->x[i * d + j] - (float)mean) * inv;
        for (size_t i = 0; test && i < test->n; i++)
            test->x[i * d + j] = (test->x[i * d + j] - (float)mean) * inv;
        for (size_t i = 0; val && i < val->n; i++)
            val->x[i * d + j] = (val->x[i * d + j] - (float)mean) * inv;
    }
}

int ps_data_split(ps_dataset_t *ds, double val_fraction, size_t subset, uint64_t seed,
                  ps_dataset_t *val, ps_errbuf_t *err)
{
    memset(val, 0, sizeof *val);
    size_t n_val = (size_t)(val_fraction * (double)ds->n + 0.5);
    size_t n_train = ds->n - (n_val < ds->n ? n_val : ds->n);
    if (subset && subset < n_train)
        n_train = subset;
    if (n_train == 0)
        return ps_err_set(err, PS_EINVAL,
                          "no training samples left: %zu samples, %zu for validation", ds->n,
                          n_val);
    if (n_val == 0 && n_train == ds->n)
        return PS_OK;
    uint32_t *idx = ps_xmalloc(ds->n * sizeof *idx);
    for (size_t i = 0; i < ds->n; i++)
        idx[i] = (uint32_t)i;
    ps_rng_t rng;
    ps_rng_seed(&rng, seed);
    ps_rng_shuffle_u32(&rng, idx, ds->n);
    ps_dataset_t train = {.n = n_train, .d = ds->d, .n_classes = ds->n_classes};
    bool has_x = ds->x || ds->x8;
    train.x = has_x ? ps_xmalloc((n_train * ds->d + 1) * sizeof(float)) : NULL;
    train.y = ds->y ? ps_xmalloc(n_train * sizeof(float)) : NULL;
    ps_data_gather(ds, idx + n_val, n_train, train.x, train.y);
    if (n_val) {
        *val = (ps_dataset_t){.n = n_val, .d = ds->d, .n_classes = ds->n_classes};
        val->x = has_x ? ps_xmalloc((n_val * ds->d + 1) * sizeof(float)) : NULL;
        val->y = ds->y ? ps_xmalloc(n_val * sizeof(float)) : NULL;
        ps_data_gather(ds, idx, n_val, val->x, val->y);
    }
    free(idx);
    ps_data_free(ds);
    *ds = train;
    return PS_OK;
}

void ps_data_gather(const ps_dataset_t *ds, const uint32_t *idx, size_t n, float *x, float *y)
{
    for (size_t i = 0; i < n; i++) {
        size_t row = (size_t)idx[i] * ds->d;
        if (ds->x)
            memcpy(x + i * ds->d, ds->x + row, ds->d * sizeof(float));
        else if (ds->x8)
            for (size_t j = 0; j < ds->d; j++)
                x[i * ds->d + j] = (float)ds->x8[row + j] * PS_DATA_PIXEL_SCALE;
        if (ds->y)
            y[i] = ds->y[idx[i]];
    }
}
