/* bench_sparse_ckpt.c - what an incremental checkpoint of a sparse table
 * saves over a full one, measured in the same run on the same table.
 *
 * A table of N keys (FTRL, dim 1: a row is its weight and two FTRL
 * accumulators) is written in full, then T rounds of updates to a fraction
 * F of its keys (a fresh sample each round) are each written as a delta on
 * the file before; bytes and seconds per file (temp file, fsync, rename,
 * as the server writes them). Then the chain is loaded into an empty table
 * (the restore a restarted shard does) and checked row for row against the
 * table that was written. Prints one JSON line per measurement and a
 * summary with the ratios delta/full.
 *
 * Usage: bench_sparse_ckpt [--quick] [--keys N] [--fraction F] [--deltas T] [--dir DIR] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ps_checkpoint.h"
#include "ps_log.h"
#include "ps_rng.h"
#include "ps_sparse.h"
#include "ps_time.h"

static ps_sparse_t *new_table(void)
{
    ps_sparse_params_t p = {.name = "clicks", .id = 0, .dim = 1, .world = 1, .max_staleness = 0,
                            .optim = {.kind = PS_OPTIM_FTRL, .lr = 0.1, .ftrl_beta = 1,
                                      .l1 = 0.01}};
    ps_errbuf_t err;
    ps_sparse_t *t = ps_sparse_new(&p, &err);
    if (!t) {
        fprintf(stderr, "bench_sparse_ckpt: %s\n", err.msg);
        exit(1);
    }
    return t;
}

static uint64_t key_of(uint64_t i)
{
    return ps_rng_mix(0x5ca1e, i);
}

static void update(ps_sparse_t *t, uint64_t i, float g)
{
    if (ps_sparse_apply(t, key_of(i), &g) != PS_OK) {
        fprintf(stderr, "bench_sparse_ckpt: row limit reached\n");
        exit(1);
    }
}

static uint64_t file_bytes(const char *dir, int64_t clock)
{
    char path[1200];
    struct stat st;
    snprintf(path, sizeof path, "%s/bench/ckpt-%012lld.psc", dir, (long long)clock);
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* Writes the table at clock (a delta on base, or full with base -1);
 * returns seconds, and the file's bytes in *bytes. */
static double write_at(const char *dir, ps_sparse_t *t, int64_t clock, int64_t base,
                       uint64_t *bytes)
{
    ps_ckpt_job_t job = {.job = "bench", .world = 1, .n_shards = 1, .clock = clock, .id = 1};
    ps_sparse_t *tables[1] = {t};
    ps_ckpt_sparse_set_t set = {tables, 1, base};
    ps_errbuf_t err;
    double t0 = ps_time_wall_s();
    if (ps_ckpt_write(dir, &job, NULL, NULL, 0, &set, 1000, &err) != PS_OK) {
        fprintf(stderr, "bench_sparse_ckpt: %s\n", err.msg);
        exit(1);
    }
    double secs = ps_time_wall_s() - t0;
    ps_sparse_clear_dirty(t);
    *bytes = file_bytes(dir, clock);
    return secs;
}

typedef struct {
    uint64_t *keys;
    float *rows;
    uint64_t n, cap;
    uint32_t stride;
} rows_t;

static void collect(uint64_t key, const float *row, void *ctx)
{
    rows_t *r = ctx;
    if (r->n == r->cap)
        return;
    r->keys[r->n] = key;
    memcpy(r->rows + r->n++ * r->stride, row, r->stride * sizeof(float));
}

static void rows_of(const ps_sparse_t *t, rows_t *r)
{
    ps_sparse_layout_t l;
    ps_sparse_layout(t, &l);
    r->cap = ps_sparse_keys(t);
    r->n = 0;
    r->stride = l.stride;
    r->keys = malloc((r->cap + 1) * sizeof *r->keys);
    r->rows = malloc((r->cap + 1) * l.stride * sizeof *r->rows);
    ps_sparse_each_row(t, false, collect, r);
}

/* Every row of a equals b's row of the same key, and they hold as many. */
static int same_rows(const ps_sparse_t *a, const ps_sparse_t *b)
{
    rows_t ra, rb;
    rows_of(a, &ra);
    rows_of(b, &rb);
    int ok = ra.n == rb.n && ra.n == ps_sparse_keys(a);
    /* b's rows by key, open addressing */
    uint64_t cap = 1;
    while (cap < 2 * rb.n + 2)
        cap <<= 1;
    int64_t *slot = malloc(cap * sizeof *slot);
    memset(slot, 0xff, cap * sizeof *slot);
    for (uint64_t i = 0; i < rb.n; i++) {
        uint64_t h = ps_rng_mix(1, rb.keys[i]) & (cap - 1);
        while (slot[h] >= 0)
            h = (h + 1) & (cap - 1);
        slot[h] = (int64_t)i;
    }
    for (uint64_t i = 0; ok && i < ra.n; i++) {
        uint64_t h = ps_rng_mix(1, ra.keys[i]) & (cap - 1);
        while (slot[h] >= 0 && rb.keys[slot[h]] != ra.keys[i])
            h = (h + 1) & (cap - 1);
        ok = slot[h] >= 0 && memcmp(ra.rows + i * ra.stride, rb.rows + slot[h] * rb.stride,
                                    ra.stride * sizeof(float)) == 0;
    }
    free(slot);
    free(ra.keys);
    free(ra.rows);
    free(rb.keys);
    free(rb.rows);
    return ok;
}

int main(int argc, char **argv)
{
    uint64_t n_keys = 20000000, deltas = 3;
    double fraction = 0.01;
    char dir[1024] = "";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            n_keys = 200000;
            deltas = 2;
        } else if (!strcmp(argv[i], "--keys") && i + 1 < argc) {
            n_keys = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--fraction") && i + 1 < argc) {
            fraction = strtod(argv[++i], NULL);
        } else if (!strcmp(argv[i], "--deltas") && i + 1 < argc) {
            deltas = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
            snprintf(dir, sizeof dir, "%s", argv[++i]);
        } else {
            fprintf(stderr, "usage: bench_sparse_ckpt [--quick] [--keys N] [--fraction F] "
                            "[--deltas T] [--dir DIR]\n");
            return strcmp(argv[i], "--help") ? 64 : 0;
        }
    }
    if (n_keys == 0 || n_keys > UINT32_MAX || fraction <= 0 || fraction > 1) {
        fprintf(stderr, "bench_sparse_ckpt: --keys 1..2^32-1 and --fraction (0, 1]\n");
        return 64;
    }
    char tmp[] = "/tmp/ps_bench_ckpt_XXXXXX";
    if (!*dir) {
        if (!mkdtemp(tmp)) {
            perror("mkdtemp");
            return 1;
        }
        snprintf(dir, sizeof dir, "%s", tmp);
    }
    ps_log_init("bench_sparse_ckpt", PS_LOG_WARN);
    ps_sparse_t *t = new_table();
    for (uint64_t i = 0; i < n_keys; i++)
        update(t, i, 0.5f);
    uint64_t full_bytes, bytes;
    double full_s = write_at(dir, t, 1, -1, &full_bytes);
    printf("{\"file\":\"full\",\"keys\":%llu,\"rows\":%llu,\"bytes\":%llu,\"seconds\":%.4f}\n",
           (unsigned long long)n_keys, (unsigned long long)n_keys,
           (unsigned long long)full_bytes, full_s);
    ps_rng_t rng;
    ps_rng_seed(&rng, 7);
    uint64_t per_round = (uint64_t)(fraction * (double)n_keys);
    double delta_s = 0;
    uint64_t delta_bytes = 0;
    for (uint64_t d = 0; d < deltas; d++) {
        for (uint64_t k = 0; k < per_round; k++)
            update(t, ps_rng_below(&rng, n_keys), -0.25f);
        uint64_t dirty = ps_sparse_n_dirty(t);
        double s = write_at(dir, t, (int64_t)d + 2, (int64_t)d + 1, &bytes);
        delta_s += s;
        delta_bytes += bytes;
        printf("{\"file\":\"delta\",\"base\":%llu,\"rows\":%llu,\"bytes\":%llu,\"seconds\":%.4f}\n",
               (unsigned long long)d + 1, (unsigned long long)dirty, (unsigned long long)bytes, s);
    }
    ps_ckpt_t ck;
    ps_errbuf_t err;
    double t0 = ps_time_wall_s();
    ps_sparse_t *back = new_table();
    if (ps_ckpt_load(dir, "bench", -1, &ck, &err) != PS_OK ||
        ps_ckpt_sparse_rows(&ck, 0, back, &err) != PS_OK) {
        fprintf(stderr, "bench_sparse_ckpt: restore: %s\n", err.msg);
        return 1;
    }
    double restore_s = ps_time_wall_s() - t0;
    ps_ckpt_free(&ck);
    int ok = same_rows(t, back);
    double mean_delta_bytes = deltas ? (double)delta_bytes / (double)deltas : 0;
    double mean_delta_s = deltas ? delta_s / (double)deltas : 0;
    printf("{\"summary\":\"sparse checkpoints\",\"keys\":%llu,\"fraction_updated\":%g,"
           "\"full_bytes\":%llu,\"full_s\":%.4f,\"delta_bytes\":%.0f,\"delta_s\":%.4f,"
           "\"bytes_ratio\":%.4f,\"time_ratio\":%.4f,\"restore_chain_s\":%.4f,"
           "\"restored_rows_equal\":%s}\n",
           (unsigned long long)n_keys, fraction, (unsigned long long)full_bytes, full_s,
           mean_delta_bytes, mean_delta_s, mean_delta_bytes / (double)full_bytes,
           full_s > 0 ? mean_delta_s / full_s : 0, restore_s, ok ? "true" : "false");
    ps_sparse_destroy(&back);
    ps_sparse_destroy(&t);
    ps_ckpt_remove_job(dir, "bench");
    if (dir == strstr(dir, "/tmp/ps_bench_ckpt_"))
        rmdir(dir);
    return ok ? 0 : 1;
}
