/* test_load.c - 64 clients, one shard, ASP: every client pushes a gradient
 * of -1 (SGD, lr 1) to the same table as fast as it can for a bounded
 * time. Afterwards every element must equal the number of pushes the
 * server acknowledged, exactly: no update lost, none applied twice. Prints
 * the push round-trip latency percentiles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_client.h"
#include "ps_log.h"
#include "ps_test_server.h"
#include "ps_time.h"

#define N_CLIENTS 64
#define N_ELEMS 1024
#define RUN_MS 3000
#define MAX_SAMPLES 200000

static ps_test_server_t server;
static atomic_int ready_clients;
static pthread_barrier_t all_pushed; /* every client is done pushing */
static float final_values[N_ELEMS];  /* rank 0's pull after the barrier */
static int final_pulled;

typedef struct {
    uint32_t rank;
    uint64_t acked;
    int failed;
    char error[512];
    int64_t *lat_ns;   /* one per acknowledged push */
    size_t n_lat;
} client_run_t;

static void *client_main(void *arg)
{
    client_run_t *r = arg;
    ps_client_opts_t o = {.job = "load", .rank = r->rank, .world = N_CLIENTS,
                          .max_staleness = -1, .timeout_ms = 30000};
    ps_errbuf_t err;
    ps_client_t *c = ps_client_new(ps_server_endpoint(server.srv), &o, &err);
    if (!c || ps_client_hello(c, NULL, &err) != PS_OK)
        goto fail;
    static const float zeros[N_ELEMS];
    uint64_t shape[1] = {N_ELEMS};
    ps_optim_spec_t sgd = {.kind = PS_OPTIM_SGD, .lr = 1.0};
    if (ps_client_init_table(c, 0, "counts", shape, 1, &sgd, zeros, &err) != PS_OK)
        goto fail;
    float grad[N_ELEMS], params[N_ELEMS];
    for (int i = 0; i < N_ELEMS; i++)
        grad[i] = -1.0f;
    /* start together, so all 64 are pushing at once */
    atomic_fetch_add(&ready_clients, 1);
    int64_t start_deadline = ps_time_ms() + 30000;
    while (atomic_load(&ready_clients) < N_CLIENTS && ps_time_ms() < start_deadline)
        sched_yield();
    int64_t end = ps_time_ms() + RUN_MS, clock;
    for (clock = 0; ps_time_ms() < end; clock++) {
        int64_t t0 = ps_time_ns();
        ps_client_push_pull(c, 0, clock, grad, 1, 1.0f, 0, params);
        if (ps_client_wait(c, &err) != PS_OK)
            goto fail;
        r->acked++;
        if (r->n_lat < MAX_SAMPLES)
            r->lat_ns[r->n_lat++] = ps_time_ns() - t0;
    }
    pthread_barrier_wait(&all_pushed);
    if (r->rank == 0) { /* ASP: a pull is served at once, with every push applied */
        if (ps_client_pull(c, 0, clock, 0, final_values) != PS_OK ||
            ps_client_wait(c, &err) != PS_OK)
            goto fail_after_barrier;
        final_pulled = 1;
    }
    pthread_barrier_wait(&all_pushed);
    if (ps_client_bye(c, &err) != PS_OK)
        goto fail_after_barrier;
    ps_client_destroy(&c);
    return NULL;
fail:
    r->failed = 1;
    snprintf(r->error, sizeof r->error, "%s", err.msg);
    atomic_fetch_add(&ready_clients, 1); /* never hold the others back */
    pthread_barrier_wait(&all_pushed);
    pthread_barrier_wait(&all_pushed);
    ps_client_destroy(&c);
    return NULL;
fail_after_barrier:
    r->failed = 1;
    snprintf(r->error, sizeof r->error, "%s", err.msg);
    if (r->rank == 0 && !final_pulled)
        pthread_barrier_wait(&all_pushed);
    ps_client_destroy(&c);
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void test_64_clients_lose_and_double_nothing(void **state)
{
    (void)state;
    static client_run_t runs[N_CLIENTS];
    pthread_t threads[N_CLIENTS];
    atomic_init(&ready_clients, 0);
    for (uint32_t i = 0; i < N_CLIENTS; i++) {
        runs[i] = (client_run_t){.rank = i, .lat_ns = calloc(MAX_SAMPLES, sizeof(int64_t))};
        assert_non_null(runs[i].lat_ns);
        assert_int_equal(pthread_create(&threads[i], NULL, client_main, &runs[i]), 0);
    }
    uint64_t total = 0;
    size_t n_lat = 0;
    for (int i = 0; i < N_CLIENTS; i++) {
        pthread_join(threads[i], NULL);
        if (runs[i].failed)
            fail_msg("client %d: %s", i, runs[i].error);
        total += runs[i].acked;
        n_lat += runs[i].n_lat;
    }
    assert_true(final_pulled);
    for (int i = 0; i < N_ELEMS; i++)
        if (final_values[i] != (float)total)
            fail_msg("element %d is %.1f after %llu acknowledged pushes", i,
                     (double)final_values[i], (unsigned long long)total);
    int64_t *all = malloc(n_lat * sizeof *all);
    assert_non_null(all);
    size_t k = 0;
    for (int i = 0; i < N_CLIENTS; i++) {
        memcpy(all + k, runs[i].lat_ns, runs[i].n_lat * sizeof *all);
        k += runs[i].n_lat;
        free(runs[i].lat_ns);
    }
    qsort(all, n_lat, sizeof *all, cmp_i64);
    printf("{\"clients\":%d,\"seconds\":%.1f,\"acknowledged_pushes\":%llu,\"pushes_per_s\":%.0f,"
           "\"final_value\":%.0f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f}\n",
           N_CLIENTS, RUN_MS / 1000.0, (unsigned long long)total, (double)total * 1000.0 / RUN_MS,
           (double)final_values[0], (double)all[n_lat / 2] / 1e6,
           (double)all[n_lat * 99 / 100] / 1e6, (double)all[n_lat - 1] / 1e6);
    free(all);
}

int main(void)
{
    ps_log_init("test", PS_LOG_ERROR);
    if (ps_test_server_start(&server, 0, 1) != 0)
        return 1;
    pthread_barrier_init(&all_pushed, NULL, N_CLIENTS);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_64_clients_lose_and_double_nothing),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    ps_test_server_stop(&server);
    pthread_barrier_destroy(&all_pushed);
    return rc;
}
