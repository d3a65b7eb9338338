/* test_sparse.c - the sparse table's pieces: the hash map (growth while
 * reading, collisions), the key -> shard map (stable, balanced), and the
 * table (start values, FTRL against a reference, BSP rounds, retries). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ps_hashmap.h"
#include "ps_optim.h"
#include "ps_shardmap.h"
#include "ps_sparse.h"

static void test_hashmap_grows_without_losing_keys(void **state)
{
    (void)state;
    ps_hashmap_t m;
    ps_hashmap_init(&m, 10);
    const uint32_t n = 300000;
    int grew_while_reading = 0;
    for (uint32_t i = 0; i < n; i++) {
        int inserted;
        uint64_t key = (uint64_t)i * 0x9e3779b97f4a7c15ULL; /* spread, never repeated */
        assert_int_equal(ps_hashmap_get_or_insert(&m, key, i, &inserted), i);
        assert_true(inserted);
        grew_while_reading |= m.old != NULL;
        /* every key so far is still found, also in the middle of a growth */
        if (i % 997 == 0)
            for (uint32_t j = 0; j <= i; j += 101)
                assert_int_equal(ps_hashmap_get(&m, (uint64_t)j * 0x9e3779b97f4a7c15ULL), j);
    }
    assert_true(grew_while_reading);
    assert_int_equal(m.count, n);
    int inserted;
    assert_int_equal(ps_hashmap_get_or_insert(&m, 5 * 0x9e3779b97f4a7c15ULL, 99, &inserted), 5);
    assert_false(inserted);
    assert_int_equal(ps_hashmap_get(&m, 12345), PS_HASHMAP_NONE);
    assert_true(m.count <= m.cap / 4 * 3);
    ps_hashmap_free(&m);
}

static void count_visit(uint64_t key, uint32_t row, void *ctx)
{
    uint8_t *seen = ctx;
    assert_int_equal(key, (uint64_t)row * 0x9e3779b97f4a7c15ULL);
    assert_int_equal(seen[row], 0);
    seen[row] = 1;
}

/* ps_hashmap_each visits every key once, also halfway through a growth
 * (keys then sit in the new array or in the old one's uncopied part). */
static void test_hashmap_each_visits_every_key_once(void **state)
{
    (void)state;
    ps_hashmap_t m;
    ps_hashmap_init(&m, 10);
    const uint32_t n = 50000;
    uint8_t *seen = calloc(n, 1);
    int checked_mid_growth = 0;
    for (uint32_t i = 0; i < n; i++) {
        int inserted;
        ps_hashmap_get_or_insert(&m, (uint64_t)i * 0x9e3779b97f4a7c15ULL, i, &inserted);
        if (i % 1009 == 0 || (m.old && i % 7 == 0) || i == n - 1) {
            memset(seen, 0, n);
            ps_hashmap_each(&m, count_visit, seen);
            for (uint32_t j = 0; j < n; j++)
                assert_int_equal(seen[j], j <= i);
            checked_mid_growth |= m.old != NULL;
        }
    }
    assert_true(checked_mid_growth);
    free(seen);
    ps_hashmap_free(&m);
}

static void test_hashmap_collisions(void **state)
{
    (void)state;
    /* 40 keys that all hash to the same home slot of a 64-slot map */
    uint64_t keys[40];
    int n = 0;
    for (uint64_t k = 1; n < 40; k++)
        if (ps_hashmap_home(k, 64) == 7)
            keys[n++] = k;
    ps_hashmap_t m;
    ps_hashmap_init(&m, 1);
    assert_int_equal(m.cap, 64);
    for (int i = 0; i < n; i++) {
        int inserted;
        ps_hashmap_get_or_insert(&m, keys[i], (uint32_t)i, &inserted);
        assert_true(inserted);
    }
    for (int i = 0; i < n; i++)
        assert_int_equal(ps_hashmap_get(&m, keys[i]), i);
    ps_hashmap_free(&m);
}

static void test_key_shards_are_stable_and_balanced(void **state)
{
    (void)state;
    /* pinned: if these change, a new build sends existing keys to other
     * shards than the servers already hold them on */
    static const struct {
        uint64_t key;
        uint32_t shards, shard;
    } pinned[] = {{1ULL, 4, 0},     {2ULL, 4, 3},       {3ULL, 4, 2},
                  {12345ULL, 4, 1}, {1ULL << 40, 7, 1}, {0xdeadbeefULL, 16, 12}};
    for (size_t i = 0; i < sizeof pinned / sizeof pinned[0]; i++)
        assert_int_equal(ps_shardmap_key_shard(pinned[i].key, pinned[i].shards), pinned[i].shard);
    uint64_t counts[4] = {0};
    for (uint64_t k = 0; k < 1000000; k++)
        counts[ps_shardmap_key_shard(k * 7919, 4)]++;
    for (int s = 0; s < 4; s++)
        assert_true(fabs((double)counts[s] - 250000) < 250000 * 0.01);
}

static ps_sparse_t *table(ps_optim_kind_t kind, uint32_t dim, double init, int staleness)
{
    ps_sparse_params_t p = {.name = "t",
                            .id = 3,
                            .dim = dim,
                            .seed = 42,
                            .init_scale = init,
                            .world = 2,
                            .max_staleness = staleness};
    p.optim = (ps_optim_spec_t){
        .kind = kind, .lr = 0.5, .eps = 1e-8, .l1 = 0.1, .l2 = 0.2, .ftrl_beta = 1};
    ps_errbuf_t err;
    ps_sparse_t *t = ps_sparse_new(&p, &err);
    assert_non_null(t);
    return t;
}

static void test_rows_start_from_seed_table_and_key(void **state)
{
    (void)state;
    ps_sparse_t *a = table(PS_OPTIM_ADAGRAD, 4, 0.1, -1), *b = table(PS_OPTIM_ADAGRAD, 4, 0.1, -1);
    uint64_t keys[3] = {7, 1ULL << 50, 7};
    float ra[12], rb[12];
    assert_int_equal(ps_sparse_pull(a, keys, 3, ra), PS_OK);
    assert_int_equal(ps_sparse_pull(b, keys + 1, 1, rb), PS_OK);
    assert_memory_equal(ra + 4, rb, 4 * sizeof(float)); /* same key, another table instance */
    assert_memory_equal(ra, ra + 8, 4 * sizeof(float)); /* same key twice */
    assert_true(ra[0] != ra[4]);
    for (int i = 0; i < 8; i++)
        assert_true(fabsf(ra[i]) <= 0.1f);
    assert_int_equal(ps_sparse_keys(a), 2);
    ps_sparse_destroy(&a);
    ps_sparse_destroy(&b);
}

/* FTRL-proximal as in McMahan et al. 2013, in double precision. */
static double ftrl_ref(const double *g, int n)
{
    double z = 0, nn = 0, w = 0, alpha = 0.5, beta = 1, l1 = 0.1, l2 = 0.2;
    for (int i = 0; i < n; i++) {
        double sigma = (sqrt(nn + g[i] * g[i]) - sqrt(nn)) / alpha;
        z += g[i] - sigma * w;
        nn += g[i] * g[i];
        w = fabs(z) <= l1 ? 0 : -(z - (z > 0 ? l1 : -l1)) / ((beta + sqrt(nn)) / alpha + l2);
    }
    return w;
}

static void test_ftrl_matches_reference(void **state)
{
    (void)state;
    ps_sparse_t *t = table(PS_OPTIM_FTRL, 1, 0, -1);
    double g[6] = {0.05, 0.8, -0.3, 1.5, 0.2, -0.05};
    for (int i = 0; i < 6; i++) {
        float gf = (float)g[i];
        assert_int_equal(ps_sparse_apply(t, 99, &gf), PS_OK);
        float w;
        uint64_t key = 99;
        ps_sparse_pull(t, &key, 1, &w);
        assert_true(fabs(w - ftrl_ref(g, i + 1)) < 1e-5);
    }
    float w0;
    uint64_t k0 = 99;
    ps_sparse_pull(t, &k0, 1, &w0);
    assert_true(w0 != 0); /* the check could fail: L1 did not zero it */
    ps_sparse_destroy(&t);
}

static void make_push(zmq_msg_t *k, zmq_msg_t *v, uint64_t key, float g)
{
    zmq_msg_init_size(k, 8);
    memcpy(zmq_msg_data(k), &key, 8);
    zmq_msg_init_size(v, 4);
    memcpy(zmq_msg_data(v), &g, 4);
}

static void test_bsp_round_waits_for_every_live_rank(void **state)
{
    (void)state;
    ps_sparse_t *t = table(PS_OPTIM_SGD, 1, 0, 0);
    uint8_t live[2] = {1, 1};
    zmq_msg_t k, v;
    make_push(&k, &v, 5, 1.0f);
    assert_int_equal(ps_sparse_push(t, 0, 0, &k, &v), PS_OK);
    zmq_msg_close(&k);
    zmq_msg_close(&v);
    assert_false(ps_sparse_try_complete(t, live));
    assert_int_equal(ps_sparse_ready_clock(t, live), 0);
    make_push(&k, &v, 5, 1.0f); /* rank 0 retries clock 0: not applied twice */
    assert_int_equal(ps_sparse_push(t, 0, 0, &k, &v), PS_OK);
    zmq_msg_close(&k);
    zmq_msg_close(&v);
    make_push(&k, &v, 5, 3.0f);
    assert_int_equal(ps_sparse_push(t, 1, 1, &k, &v), PS_ERANGE); /* ahead of its clock */
    assert_int_equal(ps_sparse_push(t, 1, 0, &k, &v), PS_OK);
    zmq_msg_close(&k);
    zmq_msg_close(&v);
    assert_true(ps_sparse_try_complete(t, live));
    assert_int_equal(ps_sparse_ready_clock(t, live), 1);
    float w;
    uint64_t key = 5;
    ps_sparse_pull(t, &key, 1, &w);
    assert_true(fabsf(w - (-0.5f * 1.0f - 0.5f * 3.0f)) < 1e-6f); /* both pushes, once each */
    ps_sparse_destroy(&t);
}

/* A rank that rejoins replays its step: ps_sparse_forget_rank takes back
 * its kept push, the round waits again for it, and the replayed gradient,
 * not the forgotten one, is applied. */
static void test_a_forgotten_rank_is_waited_for_and_its_replay_applied(void **state)
{
    (void)state;
    ps_sparse_t *t = table(PS_OPTIM_SGD, 1, 0, 0);
    uint8_t live[2] = {1, 1};
    zmq_msg_t k, v;
    make_push(&k, &v, 5, 100.0f); /* the push the rejoin forgets */
    assert_int_equal(ps_sparse_push(t, 0, 0, &k, &v), PS_OK);
    zmq_msg_close(&k);
    zmq_msg_close(&v);
    assert_false(ps_sparse_forget_rank(t, 2)); /* no such rank */
    assert_true(ps_sparse_forget_rank(t, 0));
    assert_false(ps_sparse_forget_rank(t, 0)); /* nothing kept any more */
    assert_int_equal(ps_sparse_worker_clock(t, 0), 0);
    make_push(&k, &v, 5, 3.0f);
    assert_int_equal(ps_sparse_push(t, 1, 0, &k, &v), PS_OK);
    zmq_msg_close(&k);
    zmq_msg_close(&v);
    assert_false(ps_sparse_try_complete(t, live)); /* waits for rank 0's replay */
    make_push(&k, &v, 5, 1.0f);
    assert_int_equal(ps_sparse_push(t, 0, 0, &k, &v), PS_OK);
    zmq_msg_close(&k);
    zmq_msg_close(&v);
    assert_true(ps_sparse_try_complete(t, live));
    float w;
    uint64_t key = 5;
    ps_sparse_pull(t, &key, 1, &w);
    assert_true(fabsf(w - (-0.5f * 1.0f - 0.5f * 3.0f)) < 1e-6f); /* the replay, not 100 */
    ps_sparse_destroy(&t);
}

/* A BSP round of a sparse table is one optimizer step on the sum of the
 * ranks' gradients, per key: the update one worker makes with the whole
 * global batch. FTRL and Adagrad are not linear in the gradient, so two
 * half updates in turn would give another model (they did, before). */
static void test_bsp_round_steps_once_on_the_summed_gradient(void **state)
{
    (void)state;
    const ps_optim_kind_t kinds[] = {PS_OPTIM_FTRL, PS_OPTIM_ADAGRAD, PS_OPTIM_ADAM};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        ps_sparse_t *two = table(kinds[i], 1, 0, 0), *one = table(kinds[i], 1, 0, 0);
        uint8_t both[2] = {1, 1}, only0[2] = {1, 0};
        zmq_msg_t k, v;
        for (int64_t clock = 0; clock < 3; clock++) {
            float g0 = 0.7f + (float)clock, g1 = -0.2f;
            make_push(&k, &v, 5, g0);
            assert_int_equal(ps_sparse_push(two, 0, clock, &k, &v), PS_OK);
            make_push(&k, &v, 5, g1);
            assert_int_equal(ps_sparse_push(two, 1, clock, &k, &v), PS_OK);
            assert_true(ps_sparse_try_complete(two, both));
            make_push(&k, &v, 5, g0 + g1);
            assert_int_equal(ps_sparse_push(one, 0, clock, &k, &v), PS_OK);
            assert_true(ps_sparse_try_complete(one, only0));
        }
        float w2, w1;
        uint64_t key = 5;
        ps_sparse_pull(two, &key, 1, &w2);
        ps_sparse_pull(one, &key, 1, &w1);
        if (w2 != w1)
            fail_msg("optimizer %d: two ranks' round gives %.9g, one rank with the sum %.9g",
                     (int)kinds[i], (double)w2, (double)w1);
        ps_sparse_destroy(&two);
        ps_sparse_destroy(&one);
    }
}

/* Every dense optimizer works row-wise: a row updated at every step
 * follows exactly what the dense optimizer does to the same numbers. */
static void test_dense_optimizers_row_wise(void **state)
{
    (void)state;
    static const ps_optim_kind_t kinds[] = {PS_OPTIM_SGD,     PS_OPTIM_MOMENTUM, PS_OPTIM_ADAGRAD,
                                            PS_OPTIM_RMSPROP, PS_OPTIM_ADAM,     PS_OPTIM_ADAMW};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        ps_optim_spec_t spec = {.kind = kinds[k],
                                .lr = 0.05,
                                .momentum = 0.9,
                                .beta1 = 0.9,
                                .beta2 = 0.99,
                                .eps = 1e-6,
                                .rho = 0.9,
                                .weight_decay = 0.01};
        ps_sparse_params_t p = {.name = "rows",
                                .id = 1,
                                .dim = 3,
                                .seed = 5,
                                .init_scale = 0.5,
                                .world = 1,
                                .max_staleness = -1,
                                .optim = spec};
        ps_errbuf_t err;
        ps_sparse_t *t = ps_sparse_new(&p, &err);
        assert_non_null(t);
        ps_optim_t dense;
        assert_int_equal(ps_optim_init(&dense, &spec, 3), PS_OK);
        float w[3];
        uint64_t key = 77;
        ps_sparse_pull(t, &key, 1, w); /* the row's start value */
        for (int s = 0; s < 6; s++) {
            float g[3] = {0.3f * (float)(s - 2), -0.1f, 1.0f / (float)(s + 1)};
            ps_optim_step(&dense, w, g, 1.0f);
            assert_int_equal(ps_sparse_apply(t, key, g), PS_OK);
            float row[3];
            ps_sparse_pull(t, &key, 1, row);
            for (int j = 0; j < 3; j++)
                if (fabsf(row[j] - w[j]) > 1e-6f)
                    fail_msg("%s step %d elem %d: row %g, dense %g", ps_optim_name(kinds[k]), s, j,
                             (double)row[j], (double)w[j]);
        }
        ps_optim_fini(&dense);
        ps_sparse_destroy(&t);
    }
}

static void test_invalid_tables_are_refused(void **state)
{
    (void)state;
    ps_sparse_params_t p = {.name = "x", .dim = 0, .world = 1};
    p.optim = (ps_optim_spec_t){.kind = PS_OPTIM_SGD, .lr = 0.1};
    ps_errbuf_t err;
    assert_null(ps_sparse_new(&p, &err));
    p.dim = 1;
    p.optim.schedule = PS_SCHED_COSINE;
    p.optim.total_steps = 10;
    assert_null(ps_sparse_new(&p, &err));
    assert_non_null(strstr(err.msg, "constant learning rate"));
    p.optim.schedule = PS_SCHED_CONSTANT;
    p.optim.kind = PS_OPTIM_ADAM; /* beta1 0 is fine; eps 0 is not */
    assert_null(ps_sparse_new(&p, &err));
    assert_non_null(strstr(err.msg, "eps"));
    p.optim.kind = PS_OPTIM_FTRL;
    p.init_scale = 0.1;
    assert_null(ps_sparse_new(&p, &err));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hashmap_grows_without_losing_keys),
        cmocka_unit_test(test_hashmap_each_visits_every_key_once),
        cmocka_unit_test(test_hashmap_collisions),
        cmocka_unit_test(test_key_shards_are_stable_and_balanced),
        cmocka_unit_test(test_rows_start_from_seed_table_and_key),
        cmocka_unit_test(test_ftrl_matches_reference),
        cmocka_unit_test(test_bsp_round_waits_for_every_live_rank),
        cmocka_unit_test(test_a_forgotten_rank_is_waited_for_and_its_replay_applied),
        cmocka_unit_test(test_bsp_round_steps_once_on_the_summed_gradient),
        cmocka_unit_test(test_dense_optimizers_row_wise),
        cmocka_unit_test(test_invalid_tables_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
