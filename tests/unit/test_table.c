/* test_table.c - BSP rounds, duplicates and SSP/ASP clocks of a table slice. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "ps_table.h"

static ps_table_t *make(int staleness, uint32_t world)
{
    static const uint64_t shape[1] = {3};
    const float init[3] = {1, 2, 3};
    ps_table_params_t p = {.name = "t", .id = 0, .n_total = 3, .shape = shape, .ndim = 1,
                           .offset = 0, .len = 3, .world = world, .max_staleness = staleness};
    p.optim = (ps_optim_spec_t){.kind = PS_OPTIM_SGD, .lr = 1.0};
    ps_errbuf_t err;
    ps_table_t *t = ps_table_new(&p, init, &err);
    assert_non_null(t);
    return t;
}

static void grad_msg(zmq_msg_t *m, float a, float b, float c)
{
    float g[3] = {a, b, c};
    zmq_msg_init_size(m, sizeof g);
    memcpy(zmq_msg_data(m), g, sizeof g);
}

static void test_bsp_round_waits_for_every_live_worker(void **state)
{
    (void)state;
    ps_table_t *t = make(0, 2);
    uint8_t live[2] = {1, 1};
    zmq_msg_t m;
    grad_msg(&m, 2, 2, 2);
    assert_int_equal(ps_table_push(t, 1, 0, &m, 2), PS_OK);
    zmq_msg_close(&m);
    assert_false(ps_table_try_complete(t, live));
    assert_int_equal(ps_table_ready_clock(t, live), 0);
    /* a retry of the same push is not counted twice */
    grad_msg(&m, 100, 100, 100);
    assert_int_equal(ps_table_push(t, 1, 0, &m, 2), PS_OK);
    zmq_msg_close(&m);
    grad_msg(&m, 4, 0, -2);
    assert_int_equal(ps_table_push(t, 0, 0, &m, 2), PS_OK);
    zmq_msg_close(&m);
    assert_true(ps_table_try_complete(t, live));
    assert_int_equal(ps_table_ready_clock(t, live), 1);
    /* w -= lr * (g0 + g1) / 4 */
    const float *w = ps_table_params(t);
    assert_true(fabsf(w[0] - (1 - 6.0f / 4)) < 1e-6f);
    assert_true(fabsf(w[1] - (2 - 2.0f / 4)) < 1e-6f);
    assert_true(fabsf(w[2] - (3 - 0.0f / 4)) < 1e-6f);
    assert_int_equal(ps_table_updates(t), 1);
    /* a late duplicate of clock 0 is ignored; a push from the future is not */
    grad_msg(&m, 9, 9, 9);
    assert_int_equal(ps_table_push(t, 0, 0, &m, 2), PS_OK);
    assert_int_equal(ps_table_push(t, 0, 5, &m, 2), PS_ERANGE);
    zmq_msg_close(&m);
    assert_true(fabsf(ps_table_params(t)[0] + 0.5f) < 1e-6f);
    ps_table_destroy(&t);
    ps_table_destroy(&t);
}

static void test_bsp_round_skips_workers_that_are_done(void **state)
{
    (void)state;
    ps_table_t *t = make(0, 3);
    uint8_t live[3] = {1, 0, 1};
    zmq_msg_t m;
    grad_msg(&m, 1, 1, 1);
    ps_table_push(t, 0, 0, &m, 1);
    zmq_msg_close(&m);
    assert_false(ps_table_try_complete(t, live));
    grad_msg(&m, 1, 1, 1);
    ps_table_push(t, 2, 0, &m, 1);
    zmq_msg_close(&m);
    assert_true(ps_table_try_complete(t, live));
    assert_true(fabsf(ps_table_params(t)[0] - 0.0f) < 1e-6f);
    ps_table_destroy(&t);
}

static void test_bsp_keeps_pushes_until_destroyed_without_leaks(void **state)
{
    (void)state;
    ps_table_t *t = make(0, 2);
    zmq_msg_t m;
    grad_msg(&m, 1, 1, 1);
    ps_table_push(t, 0, 0, &m, 1);
    zmq_msg_close(&m);
    ps_table_destroy(&t); /* stashed push freed: ASan would say otherwise */
    assert_null(t);
}

static void test_ssp_applies_at_once_and_tracks_min_clock(void **state)
{
    (void)state;
    ps_table_t *t = make(2, 2);
    uint8_t live[2] = {1, 1};
    zmq_msg_t m;
    for (int c = 0; c < 3; c++) {
        grad_msg(&m, 1, 0, 0);
        assert_int_equal(ps_table_push(t, 0, c, &m, 1), PS_OK);
        zmq_msg_close(&m);
    }
    assert_int_equal(ps_table_updates(t), 3);
    assert_true(fabsf(ps_table_params(t)[0] - (1 - 3)) < 1e-6f);
    assert_int_equal(ps_table_ready_clock(t, live), 0); /* rank 1 has pushed nothing */
    live[1] = 0;
    assert_int_equal(ps_table_ready_clock(t, live), 3);
    live[0] = 0;
    assert_int_equal(ps_table_ready_clock(t, live), INT64_MAX);
    grad_msg(&m, 1, 0, 0);
    assert_int_equal(ps_table_push(t, 0, 7, &m, 1), PS_ERANGE);
    assert_int_equal(ps_table_push(t, 0, 1, &m, 1), PS_OK); /* duplicate */
    zmq_msg_close(&m);
    assert_int_equal(ps_table_updates(t), 3);
    ps_table_destroy(&t);
}

static void assert_floats(const float *v, float a, float b, float c)
{
    assert_true(v[0] == a && v[1] == b && v[2] == c);
}

/* A reply lent the parameters keeps the values it was given while updates
 * go on; once no reply holds a buffer, updates go back to working in place. */
static void test_lent_parameters_survive_updates(void **state)
{
    (void)state;
    ps_table_t *t = make(-1, 1); /* ASP, SGD lr 1, w = {1, 2, 3} */
    zmq_msg_t r1, r2, g;
    assert_int_equal(ps_table_lend_params(t, &r1), PS_OK);
    assert_int_equal(zmq_msg_size(&r1), 3 * sizeof(float));
    grad_msg(&g, 1, 1, 1);
    assert_int_equal(ps_table_push(t, 0, 0, &g, 1), PS_OK);
    assert_floats(zmq_msg_data(&r1), 1, 2, 3);
    assert_floats(ps_table_params(t), 0, 1, 2);
    /* both buffers in flight: the next update needs a third */
    assert_int_equal(ps_table_lend_params(t, &r2), PS_OK);
    assert_int_equal(ps_table_push(t, 0, 1, &g, 1), PS_OK);
    assert_floats(zmq_msg_data(&r1), 1, 2, 3);
    assert_floats(zmq_msg_data(&r2), 0, 1, 2);
    assert_floats(ps_table_params(t), -1, 0, 1);
    zmq_msg_close(&r1); /* the buffer the table let go is freed here */
    /* nothing lent any more from the current buffer: in place */
    const float *before = ps_table_params(t);
    assert_int_equal(ps_table_push(t, 0, 2, &g, 1), PS_OK);
    assert_ptr_equal(ps_table_params(t), before);
    assert_floats(ps_table_params(t), -2, -1, 0);
    assert_floats(zmq_msg_data(&r2), 0, 1, 2);
    zmq_msg_close(&g);
    ps_table_destroy(&t); /* r2 still holds its buffer... */
    assert_floats(zmq_msg_data(&r2), 0, 1, 2);
    zmq_msg_close(&r2); /* ...and frees it (ASan: no leak, no use after free) */
}

static void test_invalid_optimizer_is_refused(void **state)
{
    (void)state;
    static const uint64_t shape[1] = {1};
    const float init[1] = {0};
    ps_table_params_t p = {.name = "bad", .n_total = 1, .shape = shape, .ndim = 1, .len = 1,
                           .world = 1};
    p.optim = (ps_optim_spec_t){.kind = PS_OPTIM_SGD, .lr = -1};
    ps_errbuf_t err;
    assert_null(ps_table_new(&p, init, &err));
    assert_int_equal(err.code, PS_EINVAL);
}

/* A round of 2, 3 and 4 pushes (pushed out of rank order) lands bitwise
 * where one SGD step on their sum taken in rank order does, the sum
 * ((g0 + g1) + g2) + g3: the shard adds the last push inside the
 * optimizer's loop and the others in an accumulator, and neither may
 * change the order. */
static void test_bsp_round_sums_in_rank_order(void **state)
{
    (void)state;
    /* floats are 8 apart at 1e8: each 4 added to it alone rounds away
     * (to even), two 4s added first would not */
    static const float g[4][3] = {{1e8f, 0.1f, -3.0f},
                                  {4.0f, 0.2f, 7e7f},
                                  {4.0f, 1e-7f, 1.5f},
                                  {4.0f, 0.3f, -7e7f}};
    for (uint32_t world = 2; world <= 4; world++) {
        ps_table_t *t = make(0, world);
        uint8_t live[4] = {1, 1, 1, 1};
        for (uint32_t k = world; k-- > 0;) { /* the last rank first */
            zmq_msg_t m;
            grad_msg(&m, g[k][0], g[k][1], g[k][2]);
            assert_int_equal(ps_table_push(t, k, 0, &m, 1), PS_OK);
            zmq_msg_close(&m);
        }
        assert_true(ps_table_try_complete(t, live));
        const float init[3] = {1, 2, 3};
        for (int i = 0; i < 3; i++) {
            float sum = g[0][i];
            for (uint32_t k = 1; k < world; k++)
                sum += g[k][i];
            /* make()'s SGD, lr 1: w - 1 * (sum * (1 / samples) + 0 * w) */
            float want = init[i] - 1.0f * (sum * (1.0f / (float)world) + 0.0f * init[i]);
            assert_memory_equal(&ps_table_params(t)[i], &want, sizeof want);
        }
        ps_table_destroy(&t);
    }
}

/* A BSP table of one or two workers holds no accumulator (two pushes are
 * summed as the optimizer reads them): before, every BSP table carried
 * one float per parameter it never used. Three workers need it. */
static void test_the_accumulator_is_only_for_three_workers_or_more(void **state)
{
    (void)state;
    for (uint32_t world = 1; world <= 3; world++) {
        ps_table_t *bsp = make(0, world), *ssp = make(1, world);
        size_t extra = world > 2 ? 3 * sizeof(float) : 0;
        assert_int_equal(ps_table_bytes(bsp), ps_table_bytes(ssp) + extra);
        ps_table_destroy(&bsp);
        ps_table_destroy(&ssp);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bsp_round_sums_in_rank_order),
        cmocka_unit_test(test_the_accumulator_is_only_for_three_workers_or_more),
        cmocka_unit_test(test_bsp_round_waits_for_every_live_worker),
        cmocka_unit_test(test_bsp_round_skips_workers_that_are_done),
        cmocka_unit_test(test_bsp_keeps_pushes_until_destroyed_without_leaks),
        cmocka_unit_test(test_ssp_applies_at_once_and_tracks_min_clock),
        cmocka_unit_test(test_invalid_optimizer_is_refused),
        cmocka_unit_test(test_lent_parameters_survive_updates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
