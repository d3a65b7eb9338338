/* ps_checkpoint_dir.c - a job's checkpoint files: listing, pruning that
 * keeps chains whole, loading a file with the chain under it, restoring
 * sparse rows from a chain, and removal. One file's format: ps_checkpoint.c. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ps_checkpoint.h"
#include "ps_checkpoint_int.h"
#include "ps_file.h"
#include "ps_log.h"

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the ckpt-*.psc files in jobdir (caller frees). */
static int list_ckpts(const char *jobdir, char ***out)
{
    DIR *d = opendir(jobdir);
    int n = 0, cap = 0;
    *out = NULL;
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "ckpt-", 5) != 0 || len < 9 || strcmp(e->d_name + len - 4, ".psc"))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            *out = ps_xrealloc(*out, (size_t)cap * sizeof **out);
        }
        (*out)[n++] = ps_xstrdup(e->d_name);
    }
    closedir(d);
    if (n)
        qsort(*out, (size_t)n, sizeof **out, cmp_names);
    return n;
}

static void free_names(char **names, int n)
{
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* The base clock in a checkpoint's head: -1 for a self-contained file
 * (every format before 4 too). */
static int64_t peek_base(const char *path)
{
    uint32_t crc, base_crc;
    int64_t base;
    return psck_peek_head(path, &crc, &base, &base_crc) ? base : -1;
}

/* Deletes all but the newest keep checkpoints in jobdir and the files
 * they are deltas on (a base is older than its deltas: one pass from the
 * newest keeps every chain whole). */
static void prune(const char *jobdir, int keep, int64_t written)
{
    char **names, path[1200];
    int n = list_ckpts(jobdir, &names);
    bool *kept = calloc((size_t)(n ? n : 1), sizeof *kept);
    if (!kept) {
        free_names(names, n);
        return; /* keep everything rather than break a chain */
    }
    for (int i = n - 1; i >= 0; i--) {
        /* the file just written stays even if its clock is not among the
         * newest (SSP/ASP clocks can fall when a rank comes back) */
        if (i + keep >= n || atoll(names[i] + 5) == written)
            kept[i] = true;
        if (!kept[i])
            continue;
        snprintf(path, sizeof path, "%s/%s", jobdir, names[i]);
        int64_t base = peek_base(path);
        for (int j = i - 1; base >= 0 && j >= 0; j--)
            if (atoll(names[j] + 5) == base)
                kept[j] = true;
    }
    for (int i = 0; i < n; i++) {
        if (kept[i])
            continue;
        snprintf(path, sizeof path, "%s/%s", jobdir, names[i]);
        unlink(path);
    }
    free(kept);
    free_names(names, n);
}

/* Deletes the temporary files of checkpoint writers that died before
 * their rename (ps_file.c names them .ckpt-CLOCK.psc.tmp.RANDOM): each is
 * up to a whole checkpoint, and nothing else would ever remove them. Only
 * from a writer before it starts its own file: one writer runs at a time
 * (ps_snapshot.c), so any such file in jobdir is a dead one's. */
static void remove_dead_writers_files(const char *jobdir)
{
    DIR *d = opendir(jobdir);
    if (!d)
        return;
    char path[1300];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, ".ckpt-", 6) != 0 || !strstr(e->d_name, ".psc.tmp."))
            continue;
        snprintf(path, sizeof path, "%s/%s", jobdir, e->d_name);
        n += unlink(path) == 0;
    }
    closedir(d);
    if (n)
        ps_log(PS_LOG_NOTICE, "%s: deleted %d partial checkpoint files of writers that died",
               jobdir, n);
}

int ps_ckpt_write(const char *dir, const ps_ckpt_job_t *job, ps_table_t *const *chunks,
                  const uint32_t *chunk_ids, uint32_t n_chunks, const ps_ckpt_sparse_set_t *sparse,
                  int keep, ps_errbuf_t *err)
{
    char jobdir[1024];
    /* first: on a disk that dead writers' files filled, this write needs
     * their room */
    snprintf(jobdir, sizeof jobdir, "%s/%s", dir, job->job);
    remove_dead_writers_files(jobdir);
    int rc =
        psck_write_file(dir, job, chunks, chunk_ids, n_chunks, sparse, jobdir, sizeof jobdir, err);
    if (rc == PS_OK)
        prune(jobdir, keep, job->clock);
    return rc;
}

/* Why base is not the file the delta d names, or NULL if it is: the same
 * payload (CRC), job, shard and world, and each sparse table in both
 * laid out alike. */
static const char *link_mismatch(const ps_ckpt_t *d, const ps_ckpt_t *base)
{
    if (base->crc != d->base_crc)
        return "was rewritten since (another CRC)";
    if (base->job.id != d->job.id || strcmp(base->job.job, d->job.job))
        return "belongs to another job";
    if (base->job.shard != d->job.shard || base->job.n_shards != d->job.n_shards ||
        base->job.world != d->job.world)
        return "is of another shard or world";
    for (uint32_t i = 0; i < d->n_sparse; i++)
        for (uint32_t k = 0; k < base->n_sparse; k++) {
            const ps_ckpt_sparse_t *a = &d->sparse[i], *b = &base->sparse[k];
            if (a->table_id == b->table_id &&
                (a->dim != b->dim || a->stride != b->stride || strcmp(a->name, b->name) ||
                 a->optim.kind != b->optim.kind))
                return "lays out a sparse table otherwise";
        }
    return NULL;
}

/* Reads path and, if it is a delta, the chain of files under it (each
 * base older than the file on it, so the chain ends). */
static int read_chain(const char *jobdir, const char *path, int64_t clock, ps_ckpt_t *out,
                      ps_errbuf_t *err)
{
    if (ps_ckpt_read(path, out, err) != PS_OK)
        return PS_EFORMAT;
    /* a file holds the clock its name says; with base < clock inside each
     * file, the clocks fall along a chain, so it ends */
    if (out->job.clock != clock) {
        ps_err_set(err, PS_EFORMAT, "'%s' holds clock %lld, not the one its name says", path,
                   (long long)out->job.clock);
        ps_ckpt_free(out);
        return PS_EFORMAT;
    }
    if (out->base_clock < 0)
        return PS_OK;
    char base_path[1100];
    snprintf(base_path, sizeof base_path, "%s/ckpt-%012lld.psc", jobdir,
             (long long)out->base_clock);
    out->base = ps_xmalloc(sizeof *out->base);
    ps_errbuf_t why;
    if (read_chain(jobdir, base_path, out->base_clock, out->base, &why) != PS_OK) {
        free(out->base);
        out->base = NULL;
        ps_err_set(err, PS_EFORMAT, "a delta on '%s', which cannot be read: %s", base_path,
                   why.msg);
        ps_ckpt_free(out);
        return PS_EFORMAT;
    }
    const char *bad = link_mismatch(out, out->base);
    if (bad) {
        ps_err_set(err, PS_EFORMAT, "a delta on '%s', which %s", base_path, bad);
        ps_ckpt_free(out);
        return PS_EFORMAT;
    }
    return PS_OK;
}

int ps_ckpt_load(const char *dir, const char *job, int64_t clock, ps_ckpt_t *out, ps_errbuf_t *err)
{
    char jobdir[1024], path[1100];
    snprintf(jobdir, sizeof jobdir, "%s/%s", dir, job);
    char **names;
    int n = list_ckpts(jobdir, &names);
    int rc = ps_err_set(err, PS_ENOJOB, "no valid checkpoint of job '%s'%s in '%s'", job,
                        clock >= 0 ? " at that clock" : "", jobdir);
    for (int i = n - 1; i >= 0; i--) {
        if (clock >= 0 && atoll(names[i] + 5) != clock)
            continue;
        snprintf(path, sizeof path, "%s/%s", jobdir, names[i]);
        ps_errbuf_t why;
        if (read_chain(jobdir, path, atoll(names[i] + 5), out, &why) == PS_OK) {
            rc = PS_OK;
            break;
        }
        ps_log(PS_LOG_WARN, "checkpoint '%s' skipped: %s", path, why.msg);
    }
    free_names(names, n);
    return rc;
}

/* The record of table_id in checkpoint ck, or NULL. */
static const ps_ckpt_sparse_t *find_sparse(const ps_ckpt_t *ck, uint32_t table_id)
{
    for (uint32_t i = 0; i < ck->n_sparse; i++)
        if (ck->sparse[i].table_id == table_id)
            return &ck->sparse[i];
    return NULL;
}

static int put_rows(ps_sparse_t *t, const ps_ckpt_t *ck, uint32_t table_id, uint32_t stride,
                    float *row, ps_errbuf_t *err)
{
    if (ck->base && put_rows(t, ck->base, table_id, stride, row, err) != PS_OK)
        return err->code;
    const ps_ckpt_sparse_t *s = find_sparse(ck, table_id);
    if (!s)
        return PS_OK; /* made after that file was written */
    if (s->stride != stride)
        return ps_err_set(err, PS_ECONFLICT, "sparse table '%s': rows of %u floats, then %u",
                          s->name, s->stride, stride);
    size_t row_bytes = sizeof(uint64_t) + (size_t)stride * sizeof(float);
    for (uint64_t i = 0; i < s->n_rows; i++) {
        const char *at = s->rows + i * row_bytes;
        uint64_t key;
        memcpy(&key, at, sizeof key);
        memcpy(row, at + sizeof key, (size_t)stride * sizeof(float));
        if (ps_sparse_put_row(t, key, row) != PS_OK)
            return ps_err_set(err, PS_ERANGE, "sparse table '%s': more rows than it may hold",
                              s->name);
    }
    return PS_OK;
}

int ps_ckpt_sparse_rows(const ps_ckpt_t *ck, uint32_t table_id, ps_sparse_t *t, ps_errbuf_t *err)
{
    ps_sparse_layout_t l;
    ps_sparse_layout(t, &l);
    float *row = ps_xmalloc((size_t)l.stride * sizeof(float));
    int rc = put_rows(t, ck, table_id, l.stride, row, err);
    free(row);
    return rc;
}

/* The job id and generation in a checkpoint's job record, read without
 * the rest of the file (id 0 for formats before 3; both 0 for a file too
 * short to say). */
static void peek_ident(const char *path, uint64_t *id, uint64_t *generation)
{
    FILE *f = fopen(path, "rb");
    char head[PSCK_HEAD_BYTES + 2 + 64 + 4 + 4 + 8 + 4 + 4 + 8 + 8];
    size_t n = f ? fread(head, 1, sizeof head, f) : 0;
    if (f)
        fclose(f);
    uint32_t format = 0;
    uint16_t name_len = 0;
    *id = *generation = 0;
    if (n < PSCK_HEAD_BYTES_V3 + 2)
        return;
    memcpy(&format, head + 8, 4);
    size_t hb = psck_head_bytes(format);
    if (n < hb + 2)
        return;
    memcpy(&name_len, head + hb, 2);
    size_t gen_at = hb + 2 + name_len + 4 + 4;
    if (gen_at + 8 <= n)
        memcpy(generation, head + gen_at, 8);
    size_t at = gen_at + 8 + 4 + 4 + 8;
    if (format >= 3 && at + 8 <= n)
        memcpy(id, head + at, 8);
}

static uint64_t peek_id(const char *path)
{
    uint64_t id, generation;
    peek_ident(path, &id, &generation);
    return id;
}

bool ps_ckpt_file_ident(const char *dir, const char *job, int64_t clock, uint64_t *id,
                        uint64_t *generation, uint64_t *bytes)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s/ckpt-%012lld.psc", dir, job, (long long)clock);
    struct stat st;
    if (stat(path, &st) != 0)
        return false;
    *bytes = (uint64_t)st.st_size;
    peek_ident(path, id, generation);
    return true;
}

void ps_ckpt_remove_job_id(const char *dir, const char *job, uint64_t id)
{
    char jobdir[1024], path[1100];
    snprintf(jobdir, sizeof jobdir, "%s/%s", dir, job);
    char **names;
    int n = list_ckpts(jobdir, &names);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", jobdir, names[i]);
        if (!id || peek_id(path) == id)
            unlink(path);
    }
    free_names(names, n);
    rmdir(jobdir); /* only if nothing else is left */
}

void ps_ckpt_remove_job(const char *dir, const char *job)
{
    ps_ckpt_remove_job_id(dir, job, 0);
}

void ps_ckpt_remove_after(const char *dir, const char *job, int64_t clock)
{
    char jobdir[1024], path[1100];
    snprintf(jobdir, sizeof jobdir, "%s/%s", dir, job);
    char **names;
    int n = list_ckpts(jobdir, &names);
    for (int i = 0; i < n; i++) {
        if (atoll(names[i] + 5) <= clock)
            continue;
        snprintf(path, sizeof path, "%s/%s", jobdir, names[i]);
        unlink(path);
    }
    free_names(names, n);
}

int ps_ckpt_list_clocks(const char *dir, const char *job, int64_t **clocks)
{
    char jobdir[1024];
    snprintf(jobdir, sizeof jobdir, "%s/%s", dir, job);
    char **names;
    int n = list_ckpts(jobdir, &names);
    *clocks = ps_xmalloc((size_t)(n ? n : 1) * sizeof **clocks);
    for (int i = 0; i < n; i++)
        (*clocks)[i] = atoll(names[i] + 5);
    free_names(names, n);
    return n;
}

int ps_ckpt_list_jobs(const char *dir, char ***names)
{
    DIR *d = opendir(dir);
    int n = 0;
    *names = NULL;
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        *names = ps_xrealloc(*names, (size_t)(n + 1) * sizeof **names);
        (*names)[n++] = ps_xstrdup(e->d_name);
    }
    closedir(d);
    return n;
}

bool ps_ckpt_file_head(const char *dir, const char *job, int64_t clock, uint32_t *crc,
                       int64_t *base_clock, uint32_t *base_crc)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s/ckpt-%012lld.psc", dir, job, (long long)clock);
    return psck_peek_head(path, crc, base_clock, base_crc);
}

/* mkdir -p of dir/job (a replica's directory: DIR is STATE/.replicas/shard-N). */
static int make_job_dir(const char *dir, const char *job, char *jobdir, size_t cap,
                        ps_errbuf_t *err)
{
    char path[1024];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(path, 0750) != 0 && errno != EEXIST)
            return ps_err_set(err, PS_EIO, "cannot create '%s': %s", path, strerror(errno));
        *p = '/';
    }
    if (mkdir(path, 0750) != 0 && errno != EEXIST)
        return ps_err_set(err, PS_EIO, "cannot create '%s': %s", path, strerror(errno));
    snprintf(jobdir, cap, "%s/%s", dir, job);
    if (mkdir(jobdir, 0750) != 0 && errno != EEXIST)
        return ps_err_set(err, PS_EIO, "cannot create '%s': %s", jobdir, strerror(errno));
    return PS_OK;
}

/* Why the file just read is not the one a sender announced, or NULL. */
static const char *announced_mismatch(const ps_ckpt_t *ck, const char *job, int64_t clock,
                                      uint32_t shard)
{
    if (strcmp(ck->job.job, job))
        return "holds another job";
    if (ck->job.clock != clock)
        return "holds another clock";
    if (ck->job.shard != shard)
        return "is another shard's";
    return NULL;
}

int ps_ckpt_store_file(const char *dir, const char *job, int64_t clock, uint32_t shard,
                       const void *bytes, size_t len, int keep, ps_errbuf_t *err)
{
    char jobdir[1024], tmp[1200], path[1200];
    int rc = make_job_dir(dir, job, jobdir, sizeof jobdir, err);
    if (rc != PS_OK)
        return rc;
    snprintf(tmp, sizeof tmp, "%s/incoming-%012lld.psc", jobdir, (long long)clock);
    snprintf(path, sizeof path, "%s/ckpt-%012lld.psc", jobdir, (long long)clock);
    if ((rc = ps_file_write_all(tmp, bytes, len, 0640, err)) != PS_OK)
        return rc;
    ps_ckpt_t ck;
    ps_errbuf_t why;
    if (ps_ckpt_read(tmp, &ck, &why) != PS_OK) {
        unlink(tmp);
        return ps_err_set(err, PS_EFORMAT, "refused: %s", why.msg);
    }
    const char *bad = announced_mismatch(&ck, job, clock, shard);
    int64_t base = ck.base_clock;
    uint32_t want_crc = ck.base_crc;
    ps_ckpt_free(&ck);
    if (bad) {
        unlink(tmp);
        return ps_err_set(err, PS_EFORMAT, "refused '%s': it %s", path, bad);
    }
    uint32_t have_crc = 0, b_crc;
    int64_t b_base;
    bool have = base >= 0 && ps_ckpt_file_head(dir, job, base, &have_crc, &b_base, &b_crc);
    if (base >= 0 && (!have || have_crc != want_crc)) {
        unlink(tmp);
        return ps_err_set(err, PS_ENOCKPT,
                          "refused '%s': a delta on clock %lld (CRC %08x), whose file is %s here",
                          path, (long long)base, want_crc, have ? "another one" : "missing");
    }
    if (rename(tmp, path) != 0) {
        rc = ps_err_set(err, PS_EIO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        unlink(tmp);
        return rc;
    }
    int dfd = open(jobdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    /* a file at clock starts history over from there (a rollback undid
     * what came after it) */
    ps_ckpt_remove_after(dir, job, clock);
    prune(jobdir, keep, clock);
    return PS_OK;
}

int ps_ckpt_read_file(const char *dir, const char *job, int64_t clock, void **bytes, size_t *len,
                      ps_errbuf_t *err)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s/ckpt-%012lld.psc", dir, job, (long long)clock);
    *bytes = NULL;
    *len = 0;
    ps_ckpt_t ck;
    if (ps_ckpt_read(path, &ck, err) != PS_OK)
        return err->code;
    ps_ckpt_free(&ck);
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0) {
        if (f)
            fclose(f);
        return ps_err_set(err, PS_EIO, "cannot read '%s': %s", path, strerror(errno));
    }
    *bytes = malloc((size_t)st.st_size ? (size_t)st.st_size : 1);
    if (!*bytes) {
        fclose(f);
        return ps_err_set(err, PS_ENOMEM, "'%s': cannot allocate %lld bytes", path,
                          (long long)st.st_size);
    }
    *len = fread(*bytes, 1, (size_t)st.st_size, f);
    fclose(f);
    if (*len != (size_t)st.st_size) {
        free(*bytes);
        *bytes = NULL;
        return ps_err_set(err, PS_EIO, "'%s': short read", path);
    }
    return PS_OK;
}
