/* ps_partition.c - the partitions of a data set: a directory's files, a
 * pattern's matches, or byte ranges of one file (docs/data.md). */
#include "ps_stream_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "ps_data.h"
#include "ps_recfile.h"
#include "ps_rng.h"
#include "ps_text.h"
#include "ps_time.h"

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void ps_partlist_fini(ps_partlist_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->parts[i].path);
        free(l->parts[i].labels);
    }
    free(l->parts);
    memset(l, 0, sizeof *l);
}

bool ps_stream_names_many(const char *train_data)
{
    struct stat st;
    return strpbrk(train_data, "*?[") || (stat(train_data, &st) == 0 && S_ISDIR(st.st_mode));
}

/* The regular files of dir (no dot files), sorted, into names[0..*n). */
static int list_dir(const char *dir, char ***names, size_t *n, ps_errbuf_t *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return ps_err_set(err, PS_EIO, "cannot read directory '%s': %s", dir, strerror(errno));
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *names = ps_xrealloc(*names, cap * sizeof **names);
        }
        (*names)[(*n)++] = ps_xstrdup(path);
    }
    closedir(d);
    qsort(*names, *n, sizeof **names, cmp_str);
    return PS_OK;
}

bool pssm_is_gzip(const char *path)
{
    unsigned char magic[2] = {0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    size_t got = fread(magic, 1, 2, f);
    fclose(f);
    return got == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
}

/* One file cut into n byte ranges. */
int pssm_split_file(const char *path, uint32_t n, ps_partlist_t *out, ps_errbuf_t *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return ps_err_set(err, PS_EIO, "cannot read '%s': %s", path, strerror(errno));
    if (n > 1 && pssm_is_gzip(path))
        return ps_err_set(err, PS_EINVAL,
                          "'%s' is gzip-compressed and cannot be cut into %u byte ranges: give "
                          "the data as several files (a directory or a pattern)",
                          path, n);
    uint64_t size = (uint64_t)st.st_size;
    out->parts = ps_xcalloc(n, sizeof *out->parts);
    out->n = n;
    for (uint32_t p = 0; p < n; p++) {
        out->parts[p] = (ps_part_t){.path = ps_xstrdup(path),
                                    .start = size * p / n,
                                    .end = n == 1 ? UINT64_MAX : size * (p + 1) / n,
                                    .count = UINT64_MAX};
    }
    return PS_OK;
}

int ps_stream_partitions(const char *train_data, uint32_t n_partitions, uint32_t world,
                         ps_partlist_t *out, ps_errbuf_t *err)
{
    memset(out, 0, sizeof *out);
    if (!ps_stream_names_many(train_data))
        return pssm_split_file(train_data, n_partitions ? n_partitions : world, out, err);
    char **names = NULL;
    size_t n = 0;
    struct stat st;
    int rc = PS_OK;
    if (stat(train_data, &st) == 0 && S_ISDIR(st.st_mode)) {
        rc = list_dir(train_data, &names, &n, err);
    } else {
        glob_t g;
        if (glob(train_data, 0, NULL, &g) == 0) {
            names = ps_xcalloc(g.gl_pathc + 1, sizeof *names);
            for (size_t i = 0; i < g.gl_pathc; i++)
                names[n++] = ps_xstrdup(g.gl_pathv[i]); /* glob sorts */
        }
        globfree(&g);
    }
    if (rc == PS_OK && n == 0)
        rc = ps_err_set(err, PS_EINVAL, "train_data '%s' names no files", train_data);
    if (rc == PS_OK && n_partitions && n_partitions != n)
        rc = ps_err_set(err, PS_EINVAL,
                        "partitions %u: train_data '%s' names %zu files, one partition each",
                        n_partitions, train_data, n);
    if (rc == PS_OK) {
        out->parts = ps_xcalloc(n, sizeof *out->parts);
        out->n = n;
        for (size_t i = 0; i < n; i++)
            out->parts[i] = (ps_part_t){.path = names[i], .end = UINT64_MAX, .count = UINT64_MAX};
    } else {
        for (size_t i = 0; i < n; i++)
            free(names[i]);
    }
    free(names);
    return rc;
}
