/* ps_text.c - corpus loading (a file or a directory of files), the
 * train/validation split, window rows. */
#include "ps_text.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ps_rng.h"

struct ps_text {
    uint8_t *bytes;
    size_t n, n_train;
    size_t block, stride;
    uint32_t n_windows;
};

/* Appends the file at path to *buf (*len bytes so far, *cap allocated). */
static int read_file(const char *path, uint8_t **buf, size_t *len, size_t *cap, ps_errbuf_t *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return ps_err_set(err, PS_EIO, "cannot open '%s': %s", path, strerror(errno));
    int rc = PS_OK;
    for (;;) {
        if (*cap - *len < 65536) {
            size_t ncap = *cap ? 2 * *cap : 1 << 20;
            uint8_t *nb = realloc(*buf, ncap);
            if (!nb) {
                rc = ps_err_set(err, PS_ENOMEM, "cannot read '%s': out of memory", path);
                break;
            }
            *buf = nb;
            *cap = ncap;
        }
        size_t got = fread(*buf + *len, 1, *cap - *len, f);
        *len += got;
        if (got == 0) {
            if (ferror(f))
                rc = ps_err_set(err, PS_EIO, "cannot read '%s': %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    return rc;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_data_file(const char *dir, const char *name)
{
    size_t len = strlen(name);
    char path[4096];
    struct stat st;
    if (name[0] == '.' || (len >= 4 && strcmp(name + len - 4, ".dat") == 0))
        return false;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* *names = dir's data files in name order, *n of them (the caller frees
 * each and the array). */
static int list_dir(const char *dir, char ***names_out, size_t *n, ps_errbuf_t *err)
{
    *n = 0;
    *names_out = NULL;
    DIR *d = opendir(dir);
    if (!d)
        return ps_err_set(err, PS_EIO, "cannot open '%s': %s", dir, strerror(errno));
    char **names = NULL;
    size_t ncap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!is_data_file(dir, e->d_name))
            continue;
        if (*n == ncap) {
            ncap = ncap ? 2 * ncap : 64;
            names = ps_xrealloc(names, ncap * sizeof *names);
        }
        names[(*n)++] = ps_xstrdup(e->d_name);
    }
    closedir(d);
    if (*n)
        qsort(names, *n, sizeof *names, by_name);
    *names_out = names;
    return PS_OK;
}

/* The data files of dir in name order, joined. */
static int read_dir(const char *dir, uint8_t **buf, size_t *len, size_t *cap, ps_errbuf_t *err)
{
    size_t n;
    char **names;
    int rc = list_dir(dir, &names, &n, err);
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (rc == PS_OK)
            rc = read_file(path, buf, len, cap, err);
        free(names[i]);
    }
    free(names);
    return rc;
}

int ps_text_dir_files(const char *dir, char ***paths, size_t *n, ps_errbuf_t *err)
{
    int rc = list_dir(dir, paths, n, err);
    for (size_t i = 0; rc == PS_OK && i < *n; i++) {
        size_t len = strlen(dir) + strlen((*paths)[i]) + 2;
        char *full = ps_xmalloc(len);
        snprintf(full, len, "%s/%s", dir, (*paths)[i]);
        free((*paths)[i]);
        (*paths)[i] = full;
    }
    return rc;
}

int ps_text_corpus_size(const char *path, uint64_t *bytes, uint64_t *files)
{
    struct stat st;
    *bytes = *files = 0;
    if (stat(path, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        *bytes = (uint64_t)st.st_size;
        *files = 1;
        return 0;
    }
    ps_errbuf_t err;
    size_t n;
    char **names;
    if (list_dir(path, &names, &n, &err) != PS_OK)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char file[4096];
        snprintf(file, sizeof file, "%s/%s", path, names[i]);
        if (stat(file, &st) == 0) {
            *bytes += (uint64_t)st.st_size;
            ++*files;
        }
        free(names[i]);
    }
    free(names);
    return 0;
}

/* Train and validation parts each hold at least one window. */
static int split(ps_text_t *t, const char *path, double frac, ps_errbuf_t *err)
{
    size_t row = t->block + 1;
    size_t n_val = (size_t)llround(frac * (double)t->n);
    if (frac > 0 && n_val < row)
        return ps_err_set(err, PS_EFORMAT,
                          "'%s' has %zu bytes: a validation part of %g of them is shorter than "
                          "one window of %zu bytes",
                          path, t->n, frac, row);
    t->n_train = t->n - n_val;
    if (t->n_train < row)
        return ps_err_set(err, PS_EFORMAT,
                          "'%s' has %zu bytes: %zu left for training, shorter than one window "
                          "of %zu bytes",
                          path, t->n, t->n_train, row);
    uint64_t windows = (t->n_train - row) / t->stride + 1;
    if (windows > UINT32_MAX)
        return ps_err_set(err, PS_ERANGE, "'%s': %llu windows, more than 2^32 (raise stride)", path,
                          (unsigned long long)windows);
    t->n_windows = (uint32_t)windows;
    return PS_OK;
}

ps_text_t *ps_text_open(const char *path, const ps_text_opts_t *opts, ps_errbuf_t *err)
{
    struct stat st;
    ps_text_t *t = ps_xcalloc(1, sizeof *t);
    size_t cap = 0;
    int rc;
    t->block = opts->block_size;
    t->stride = opts->stride ? opts->stride : 1;
    if (t->block == 0 || !(opts->val_fraction >= 0 && opts->val_fraction < 1)) {
        ps_err_set(err, PS_EINVAL, "'%s': block_size must be >= 1 and val_fraction in [0, 1)",
                   path);
        goto fail;
    }
    if (stat(path, &st) != 0) {
        ps_err_set(err, PS_EIO, "cannot open '%s': %s", path, strerror(errno));
        goto fail;
    }
    rc = S_ISDIR(st.st_mode) ? read_dir(path, &t->bytes, &t->n, &cap, err)
                             : read_file(path, &t->bytes, &t->n, &cap, err);
    if (rc != PS_OK)
        goto fail;
    if (t->n == 0) {
        ps_err_set(err, PS_EFORMAT, "'%s' is empty%s", path,
                   S_ISDIR(st.st_mode) ? " (no data files)" : "");
        goto fail;
    }
    if (split(t, path, opts->val_fraction, err) != PS_OK)
        goto fail;
    return t;
fail:
    ps_text_destroy(&t);
    return NULL;
}

void ps_text_destroy(ps_text_t **tp)
{
    if (!*tp)
        return;
    free((*tp)->bytes);
    free(*tp);
    *tp = NULL;
}

size_t ps_text_n_bytes(const ps_text_t *t)
{
    return t->n;
}
size_t ps_text_n_train_bytes(const ps_text_t *t)
{
    return t->n_train;
}
size_t ps_text_n_val_bytes(const ps_text_t *t)
{
    return t->n - t->n_train;
}
const uint8_t *ps_text_bytes(const ps_text_t *t)
{
    return t->bytes;
}
size_t ps_text_row_len(const ps_text_t *t)
{
    return t->block + 1;
}
uint32_t ps_text_n_windows(const ps_text_t *t)
{
    return t->n_windows;
}

void ps_text_epoch_order(const ps_text_t *t, uint64_t seed, uint64_t epoch, uint32_t *order)
{
    ps_rng_t rng;
    for (uint32_t i = 0; i < t->n_windows; i++)
        order[i] = i;
    ps_rng_seed(&rng, ps_rng_mix(seed, epoch));
    ps_rng_shuffle_u32(&rng, order, t->n_windows);
}

static void put_row(const uint8_t *src, size_t len, float *dst)
{
    for (size_t j = 0; j < len; j++)
        dst[j] = (float)src[j];
}

void ps_text_gather(const ps_text_t *t, const uint32_t *idx, size_t n, float *x, float *y)
{
    size_t row = t->block + 1;
    for (size_t i = 0; i < n; i++)
        put_row(t->bytes + (size_t)idx[i] * t->stride, row, x + i * row);
    if (y)
        memset(y, 0, n * sizeof *y);
}

/* Consecutive windows every block bytes over bytes[from, from + n). */
static void windows_dataset(const ps_text_t *t, size_t from, size_t n, ps_dataset_t *ds)
{
    size_t row = t->block + 1;
    memset(ds, 0, sizeof *ds);
    ds->d = row;
    if (n < row)
        return;
    ds->n = (n - row) / t->block + 1;
    ds->x = ps_xmalloc(ds->n * row * sizeof(float));
    ds->y = ps_xcalloc(ds->n, sizeof(float));
    for (size_t i = 0; i < ds->n; i++)
        put_row(t->bytes + from + i * t->block, row, ds->x + i * row);
}

void ps_text_val_dataset(const ps_text_t *t, ps_dataset_t *ds)
{
    windows_dataset(t, t->n_train, t->n - t->n_train, ds);
}

void ps_text_all_dataset(const ps_text_t *t, ps_dataset_t *ds)
{
    windows_dataset(t, 0, t->n, ds);
}
