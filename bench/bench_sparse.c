/* bench_sparse.c - sparse push+pull throughput in keys/s.
 *
 * Throughput mode (default): one client (ASP, FTRL, dim 1) pulls then
 * pushes batches of B distinct keys (B = 10^3, 10^4, 10^5) against 1 and
 * against 4 shards (server cores on threads of this process, TCP on
 * 127.0.0.1). Baseline, measured in the same run: the very same key
 * batches through a local in-process sparse table (the same hash map and
 * FTRL step: pull, then apply each gradient row), so the ratio is what the
 * network, the framing and the shard split cost. Keys are drawn from a
 * universe of 20 x B, so batches mix new and known keys.
 *
 * Scale mode: --endpoints EP,EP,.. --keys N pushes N distinct keys in
 * batches of --batch to running servers (bench/run_sparse_scale.sh starts
 * them and reads their key counts and memory). With --seconds S it then
 * trains on the full table for S seconds: each clock pulls and pushes a
 * batch of known keys, the steady state of a job whose table has N keys
 * (bench/run_ckpt_per_minute.sh measures what checkpoints cost there).
 *
 * Usage: bench_sparse [--quick] [--seconds S]
 *        bench_sparse --endpoints LIST --keys N [--batch B] [--seconds S]
 * Prints JSON lines. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_client.h"
#include "ps_log.h"
#include "ps_rng.h"
#include "ps_sparse.h"
#include "ps_test_server.h"
#include "ps_time.h"

static double seconds = 1.0;
static int seconds_given;

static ps_optim_spec_t ftrl(void)
{
    return (ps_optim_spec_t){.kind = PS_OPTIM_FTRL, .lr = 0.1, .ftrl_beta = 1, .l1 = 0.01};
}

/* Distinct keys for round r: B draws from a universe of 20 B (a fresh
 * permutation window, so no key repeats inside a batch). */
static void batch_keys(uint64_t *keys, uint64_t b, uint64_t round)
{
    uint64_t universe = 20 * b, start = (round * 7919 * b) % universe;
    for (uint64_t i = 0; i < b; i++)
        keys[i] = ps_rng_mix(0xbe7c4, (start + i) % universe);
}

static double local_keys_per_s(uint64_t b, uint64_t *keys, float *rows, float *grads)
{
    ps_sparse_params_t p = {.name = "local", .dim = 1, .world = 1, .max_staleness = -1,
                            .optim = ftrl()};
    ps_errbuf_t err;
    ps_sparse_t *t = ps_sparse_new(&p, &err);
    uint64_t done = 0, round = 0;
    double t0 = ps_time_wall_s(), el;
    do {
        batch_keys(keys, b, round++);
        ps_sparse_pull(t, keys, b, rows);
        for (uint64_t i = 0; i < b; i++)
            ps_sparse_apply(t, keys[i], &grads[i]);
        done += b;
    } while ((el = ps_time_wall_s() - t0) < seconds);
    ps_sparse_destroy(&t);
    return (double)done / el;
}

static double ps_keys_per_s(const char *endpoints, uint64_t b, uint64_t *keys, float *rows,
                            float *grads, const char *job)
{
    ps_client_opts_t o = {.job = job, .world = 1, .max_staleness = -1, .timeout_ms = 60000};
    ps_errbuf_t err;
    ps_client_t *c = ps_client_new(endpoints, &o, &err);
    ps_optim_spec_t spec = ftrl();
    if (!c || ps_client_hello(c, NULL, &err) != PS_OK ||
        ps_client_init_sparse(c, 0, "bench", 1, &spec, 0, 1, &err) != PS_OK) {
        fprintf(stderr, "bench_sparse: %s\n", err.msg);
        exit(1);
    }
    uint64_t done = 0, round = 0;
    double t0 = ps_time_wall_s(), el;
    do {
        batch_keys(keys, b, round);
        if (ps_client_sparse_pull(c, 0, (int64_t)round, 0, keys, b, rows) != PS_OK ||
            ps_client_wait(c, &err) != PS_OK ||
            ps_client_sparse_push(c, 0, (int64_t)round, keys, b, grads) != PS_OK ||
            ps_client_wait(c, &err) != PS_OK) {
            fprintf(stderr, "bench_sparse: %s\n", err.msg);
            exit(1);
        }
        round++;
        done += b;
    } while ((el = ps_time_wall_s() - t0) < seconds);
    ps_client_bye(c, &err);
    ps_client_destroy(&c);
    return (double)done / el;
}

/* The steady phase: clocks of pull + push over known keys for `seconds`,
 * each batch a window of b consecutive key indices (distinct inside it),
 * windows moving by a prime stride so every key comes back. */
static int steady(ps_client_t *c, uint64_t n, uint64_t b, uint64_t *keys, float *grads,
                  int64_t clock)
{
    ps_errbuf_t err;
    uint64_t m = b < n ? b : n, done = 0;
    float *rows = malloc(m * sizeof *rows);
    int64_t first = clock;
    double t0 = ps_time_wall_s(), el;
    do {
        uint64_t start = ((uint64_t)(clock - first) * 7919 * m) % n;
        for (uint64_t i = 0; i < m; i++)
            keys[i] = ps_rng_mix(0x5ca1e, (start + i) % n);
        if (ps_client_sparse_pull(c, 0, clock, 0, keys, m, rows) != PS_OK ||
            ps_client_wait(c, &err) != PS_OK ||
            ps_client_sparse_push(c, 0, clock, keys, m, grads) != PS_OK ||
            ps_client_wait(c, &err) != PS_OK) {
            fprintf(stderr, "bench_sparse: steady clock %lld: %s\n", (long long)clock, err.msg);
            free(rows);
            return 1;
        }
        clock++;
        done += m;
    } while ((el = ps_time_wall_s() - t0) < seconds);
    free(rows);
    printf("{\"bench\":\"sparse_steady\",\"keys\":%llu,\"batch\":%llu,\"clocks\":%lld,"
           "\"seconds\":%.2f,\"clocks_per_s\":%.3f,\"keys_per_s\":%.0f}\n",
           (unsigned long long)n, (unsigned long long)m, (long long)(clock - first), el,
           (double)(clock - first) / el, (double)done / el);
    fflush(stdout);
    return 0;
}

static int scale(const char *endpoints, uint64_t n, uint64_t b)
{
    ps_client_opts_t o = {.job = "scale", .world = 1, .max_staleness = -1, .timeout_ms = 120000,
                          .heartbeat_ms = 1000};
    ps_errbuf_t err;
    ps_client_t *c = ps_client_new(endpoints, &o, &err);
    ps_optim_spec_t spec = ftrl();
    if (!c || ps_client_hello(c, NULL, &err) != PS_OK ||
        ps_client_init_sparse(c, 0, "scale", 1, &spec, 0, 1, &err) != PS_OK) {
        fprintf(stderr, "bench_sparse: %s\n", err.msg);
        return 1;
    }
    uint64_t *keys = malloc(b * sizeof *keys);
    float *grads = malloc(b * sizeof *grads);
    for (uint64_t i = 0; i < b; i++)
        grads[i] = 0.5f;
    double t0 = ps_time_wall_s();
    int64_t clock = 0;
    for (uint64_t a = 0; a < n; a += b, clock++) {
        uint64_t m = n - a < b ? n - a : b;
        for (uint64_t i = 0; i < m; i++)
            keys[i] = ps_rng_mix(0x5ca1e, a + i); /* distinct: mix is a bijection of a+i */
        if (ps_client_sparse_push(c, 0, clock, keys, m, grads) != PS_OK ||
            ps_client_wait(c, &err) != PS_OK) {
            fprintf(stderr, "bench_sparse: push at key %llu: %s\n", (unsigned long long)a, err.msg);
            return 1;
        }
    }
    double el = ps_time_wall_s() - t0;
    if (seconds_given && steady(c, n, b, keys, grads, clock) != 0)
        return 1;
    printf("{\"bench\":\"sparse_scale\",\"keys\":%llu,\"batch\":%llu,\"shards\":%u,\"seconds\":%.2f,"
           "\"keys_per_s\":%.0f}\n",
           (unsigned long long)n, (unsigned long long)b, ps_client_n_shards(c), el, (double)n / el);
    fflush(stdout);
    /* stay joined: the job (and its keys) lives while we do; the script
     * reads the servers' numbers, then signals us to leave */
    if (getenv("PS_BENCH_HOLD")) {
        char line[16];
        if (!fgets(line, sizeof line, stdin))
            line[0] = '\0';
    }
    ps_client_bye(c, &err);
    ps_client_destroy(&c);
    free(keys);
    free(grads);
    return 0;
}

int main(int argc, char **argv)
{
    const char *endpoints = NULL;
    uint64_t keys_total = 0, batch = 100000;
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            quick = 1;
            seconds = 0.2;
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = atof(argv[++i]);
            seconds_given = 1;
        } else if (strcmp(argv[i], "--endpoints") == 0 && i + 1 < argc) {
            endpoints = argv[++i];
        } else if (strcmp(argv[i], "--keys") == 0 && i + 1 < argc) {
            keys_total = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
            batch = strtoull(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "usage: bench_sparse [--quick] [--seconds S] | --endpoints LIST "
                            "--keys N [--batch B] [--seconds S]\n");
            return 2;
        }
    }
    ps_log_init("bench", PS_LOG_WARN);
    if (endpoints)
        return scale(endpoints, keys_total, batch);
    ps_test_server_t srv[4];
    for (int s = 0; s < 4; s++)
        if (ps_test_server_start(&srv[s], s, 4) != 0)
            return 1;
    ps_test_server_t one;
    if (ps_test_server_start(&one, 0, 1) != 0)
        return 1;
    char eps4[1024];
    size_t len = 0;
    for (int s = 0; s < 4; s++)
        len += (size_t)snprintf(eps4 + len, sizeof eps4 - len, "%s%s", s ? "," : "",
                                ps_server_endpoint(srv[s].srv));
    uint64_t sizes[3] = {1000, 10000, 100000};
    uint64_t *keys = malloc(100000 * sizeof *keys);
    float *rows = malloc(100000 * sizeof *rows), *grads = malloc(100000 * sizeof *grads);
    for (int i = 0; i < 100000; i++)
        grads[i] = 0.01f * (float)(i % 7 - 3);
    int runs = 0;
    for (int k = 0; k < 3; k++) {
        uint64_t b = sizes[k];
        if (quick && b > 10000)
            break;
        double local = local_keys_per_s(b, keys, rows, grads);
        for (int shards = 1; shards <= 4; shards += 3) {
            char job[32];
            snprintf(job, sizeof job, "b%llu-s%d", (unsigned long long)b, shards);
            double ps = ps_keys_per_s(shards == 1 ? ps_server_endpoint(one.srv) : eps4, b, keys, rows,
                                      grads, job);
            printf("{\"bench\":\"sparse_pushpull\",\"batch_keys\":%llu,\"shards\":%d,"
                   "\"ps_keys_per_s\":%.0f,\"local_table_keys_per_s\":%.0f,\"ratio\":%.3f}\n",
                   (unsigned long long)b, shards, ps, local, ps / local);
            fflush(stdout);
            runs++;
        }
    }
    free(keys);
    free(rows);
    free(grads);
    for (int s = 0; s < 4; s++)
        ps_test_server_stop(&srv[s]);
    ps_test_server_stop(&one);
    return runs ? 0 : 1;
}
