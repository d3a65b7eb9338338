/* test_budget.c - what one client may take of a shard: memory per job and
 * per shard (dense tables and sparse rows, refused before allocation with
 * ENOMEM naming the budget, the server serving on) and jobs per client. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "ps_client.h"
#include "ps_log.h"
#include "ps_test_server.h"
#include "ps_wire.h"

static ps_client_t *rank_of(const ps_test_server_t *s, const char *job, uint32_t rank,
                            uint32_t world, int64_t timeout_ms)
{
    ps_client_opts_t o = {.job = job, .rank = rank, .world = world, .timeout_ms = timeout_ms,
                          .dtype = PS__DTYPE__F32, .fingerprint = "model=test\n"};
    ps_errbuf_t err;
    ps_client_t *c = ps_client_new(ps_server_endpoint(s->srv), &o, &err);
    assert_non_null(c);
    return c;
}

static ps_client_t *joined(const ps_test_server_t *s, const char *job, int64_t timeout_ms)
{
    return rank_of(s, job, 0, 1, timeout_ms);
}

/* INIT_TABLE of n Adam parameters (20 bytes each on the shard). */
static int init(ps_client_t *c, uint32_t id, uint64_t n, ps_errbuf_t *err)
{
    float *init = calloc(n, sizeof *init);
    uint64_t shape[1] = {n};
    ps_optim_spec_t adam = {.kind = PS_OPTIM_ADAM, .lr = 0.001, .beta1 = 0.9, .beta2 = 0.999,
                            .eps = 1e-8};
    int rc = ps_client_init_table(c, id, "w", shape, 1, &adam, init, err);
    free(init);
    return rc;
}

static void start(ps_test_server_t *s, int64_t job_mb, int64_t shard_mb, int64_t jobs)
{
    ps_server_config_t cfg;
    ps_test_server_config(&cfg, 0, 1);
    cfg.max_job_mb = job_mb;
    cfg.max_shard_mb = shard_mb;
    cfg.max_jobs_per_client = jobs;
    assert_int_equal(ps_test_server_start_config(s, &cfg), 0);
}

static void test_a_job_over_its_memory_budget_is_refused(void **state)
{
    (void)state;
    ps_test_server_t s;
    start(&s, 1, 0, 8);
    ps_client_t *c = joined(&s, "big", 5000);
    ps_errbuf_t err;
    assert_int_equal(ps_client_hello(c, NULL, &err), PS_OK);
    /* 100,000 Adam parameters: 2 MB, over the 1 MiB job budget */
    assert_int_equal(init(c, 0, 100000, &err), PS_ENOMEM);
    assert_non_null(strstr(err.msg, "max_job_mb"));
    assert_non_null(strstr(err.msg, "table 'w' chunk 0 needs"));
    ps_client_destroy(&c);
    /* and the shard serves on: a table within the budget is taken */
    c = joined(&s, "small", 5000);
    assert_int_equal(ps_client_hello(c, NULL, &err), PS_OK);
    assert_int_equal(init(c, 0, 10000, &err), PS_OK);
    ps_client_destroy(&c);
    ps_test_server_stop(&s);
}

static void test_jobs_together_over_the_shard_budget_are_refused(void **state)
{
    (void)state;
    ps_test_server_t s;
    start(&s, 1, 1, 8); /* 1 MiB per job and for the shard */
    ps_errbuf_t err;
    ps_client_t *a = joined(&s, "first", 5000), *b = joined(&s, "second", 5000);
    assert_int_equal(ps_client_hello(a, NULL, &err), PS_OK);
    assert_int_equal(ps_client_hello(b, NULL, &err), PS_OK);
    assert_int_equal(init(a, 0, 40000, &err), PS_OK); /* 0.8 MB */
    assert_int_equal(init(b, 0, 40000, &err), PS_ENOMEM);
    assert_non_null(strstr(err.msg, "max_shard_mb"));
    ps_client_destroy(&b);
    ps_client_destroy(&a);
    ps_test_server_stop(&s);
}

static void test_sparse_rows_over_the_budget_are_refused(void **state)
{
    (void)state;
    ps_test_server_t s;
    start(&s, 1, 0, 8);
    ps_client_t *c = joined(&s, "sparse", 5000);
    ps_errbuf_t err;
    assert_int_equal(ps_client_hello(c, NULL, &err), PS_OK);
    ps_optim_spec_t sgd = {.kind = PS_OPTIM_SGD, .lr = 0.1};
    assert_int_equal(ps_client_init_sparse(c, 0, "emb", 16, &sgd, 0.01, 1, &err), PS_OK);
    enum { N = 4096 };
    static uint64_t keys[N];
    static float rows[N * 16];
    int refused = 0;
    /* 16 floats a row: well under 1 MiB is about 10,000 rows */
    for (int batch = 0; batch < 10 && !refused; batch++) {
        for (int i = 0; i < N; i++)
            keys[i] = (uint64_t)(batch * N + i) * 2654435761u + 1;
        assert_int_equal(ps_client_sparse_pull(c, 0, 0, 0, keys, N, rows), PS_OK);
        int rc = ps_client_wait(c, &err);
        assert_true(rc == PS_OK || rc == PS_ENOMEM);
        refused = rc == PS_ENOMEM;
    }
    assert_true(refused);
    assert_non_null(strstr(err.msg, "keys of sparse table 'emb' needs"));
    assert_non_null(strstr(err.msg, "max_job_mb"));
    ps_client_destroy(&c);
    ps_test_server_stop(&s);
}

static void test_jobs_per_client_are_limited(void **state)
{
    (void)state;
    ps_test_server_t s;
    start(&s, 0, 0, 2);
    ps_errbuf_t err;
    ps_client_t *a = rank_of(&s, "j1", 0, 2, 5000), *b = joined(&s, "j2", 5000),
                *c = joined(&s, "j3", 1000);
    assert_int_equal(ps_client_hello(a, NULL, &err), PS_OK);
    assert_int_equal(ps_client_hello(b, NULL, &err), PS_OK);
    assert_int_equal(ps_client_hello(c, NULL, &err), PS_EAGAIN);
    assert_non_null(strstr(err.msg, "already created 2 jobs"));
    assert_non_null(strstr(err.msg, "max_jobs_per_client 2"));
    ps_client_destroy(&c);
    /* the limit counts jobs, not workers: j1's other rank is welcome */
    ps_client_t *other = rank_of(&s, "j1", 1, 2, 5000);
    assert_int_equal(ps_client_hello(other, NULL, &err), PS_OK);
    ps_client_destroy(&other);
    ps_client_destroy(&a);
    ps_client_destroy(&b);
    ps_test_server_stop(&s);
}

int main(void)
{
    ps_log_init("test", PS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_job_over_its_memory_budget_is_refused),
        cmocka_unit_test(test_jobs_together_over_the_shard_budget_are_refused),
        cmocka_unit_test(test_sparse_rows_over_the_budget_are_refused),
        cmocka_unit_test(test_jobs_per_client_are_limited),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
