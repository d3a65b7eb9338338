/* test_round.c - the consistency engine alone: BSP rounds (retries, pushes
 * ahead, ranks that leave and come back, skips), SSP/ASP clocks and what
 * a pull may read, the same rule for dense and sparse tables. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "ps_err.h"
#include "ps_round.h"
#include "ps_sparse.h"
#include "ps_table.h"

static void test_bsp_round_completes_when_every_live_rank_pushed(void **state)
{
    (void)state;
    ps_round_t r;
    assert_int_equal(ps_round_init(&r, 3, 0), PS_OK);
    uint8_t live[3] = {1, 1, 1};
    assert_false(ps_round_is_complete(&r, live)); /* nothing pushed: no round */
    assert_int_equal(ps_round_offer(&r, 2, 0, true), PS_ROUND_KEEP);
    assert_int_equal(ps_round_offer(&r, 0, 0, true), PS_ROUND_KEEP);
    assert_false(ps_round_is_complete(&r, live));
    assert_int_equal(ps_round_ready_clock(&r, live), 0);
    /* a retry of the same clock is counted once */
    assert_int_equal(ps_round_offer(&r, 2, 0, true), PS_ROUND_RETRY);
    /* a rank may not push the next round before this one completes */
    assert_int_equal(ps_round_offer(&r, 2, 1, true), PS_ROUND_AHEAD);
    assert_int_equal(ps_round_offer(&r, 1, 0, true), PS_ROUND_KEEP);
    assert_true(ps_round_is_complete(&r, live));
    ps_round_close(&r);
    assert_int_equal(ps_round_clock(&r), 1);
    assert_int_equal(ps_round_ready_clock(&r, live), 1);
    /* a late retry of clock 0 changes nothing */
    assert_int_equal(ps_round_offer(&r, 0, 0, true), PS_ROUND_RETRY);
    assert_false(ps_round_is_complete(&r, live));
    ps_round_fini(&r);
    ps_round_fini(&r);
}

/* A rank that leaves the barriers is not waited for; when it comes back it
 * pushes the round in progress, whatever it pushed last. */
static void test_bsp_rank_that_left_is_not_waited_for_and_may_return(void **state)
{
    (void)state;
    ps_round_t r;
    assert_int_equal(ps_round_init(&r, 2, 0), PS_OK);
    uint8_t live[2] = {1, 1};
    assert_int_equal(ps_round_offer(&r, 0, 0, true), PS_ROUND_KEEP);
    assert_false(ps_round_is_complete(&r, live));
    live[1] = 0; /* rank 1 died */
    assert_true(ps_round_is_complete(&r, live));
    ps_round_close(&r);
    for (int64_t c = 1; c < 4; c++) {
        assert_int_equal(ps_round_offer(&r, 0, c, true), PS_ROUND_KEEP);
        assert_true(ps_round_is_complete(&r, live));
        ps_round_close(&r);
    }
    assert_int_equal(ps_round_rank_clock(&r, 1), 0);
    live[1] = 1; /* it rejoins at the job's clock, 4 */
    assert_int_equal(ps_round_offer(&r, 1, 4, true), PS_ROUND_KEEP);
    assert_false(ps_round_is_complete(&r, live));
    assert_int_equal(ps_round_offer(&r, 0, 4, true), PS_ROUND_KEEP);
    assert_true(ps_round_is_complete(&r, live));
    ps_round_fini(&r);
}

static void test_bsp_skip_marks_the_round(void **state)
{
    (void)state;
    ps_round_t r;
    assert_int_equal(ps_round_init(&r, 2, 0), PS_OK);
    assert_int_equal(ps_round_offer(&r, 0, 0, false), PS_ROUND_KEEP);
    assert_int_equal(ps_round_offer(&r, 1, 0, true), PS_ROUND_KEEP);
    assert_true(ps_round_is_skipped(&r));
    ps_round_close(&r);
    assert_int_equal(r.last_skipped, 0);
    assert_false(ps_round_is_skipped(&r));
    ps_round_fini(&r);
}

static void test_ssp_and_asp_apply_in_order_per_rank(void **state)
{
    (void)state;
    for (int staleness = -1; staleness <= 2; staleness += 3) {
        ps_round_t r;
        assert_int_equal(ps_round_init(&r, 2, staleness), PS_OK);
        uint8_t live[2] = {1, 1};
        assert_int_equal(ps_round_offer(&r, 0, 0, true), PS_ROUND_APPLY);
        assert_int_equal(ps_round_offer(&r, 0, 1, true), PS_ROUND_APPLY);
        assert_int_equal(ps_round_offer(&r, 0, 0, true), PS_ROUND_RETRY);
        assert_int_equal(ps_round_offer(&r, 0, 3, true), PS_ROUND_AHEAD);
        assert_false(ps_round_is_complete(&r, live));
        /* rank 1 has pushed nothing: the job's clock and what pulls read is 0 */
        assert_int_equal(ps_round_clock(&r), 0);
        assert_int_equal(ps_round_ready_clock(&r, live), 0);
        live[1] = 0; /* without rank 1, rank 0's clock is what counts */
        assert_int_equal(ps_round_ready_clock(&r, live), 2);
        live[0] = 0;
        assert_true(ps_round_ready_clock(&r, live) == INT64_MAX);
        ps_round_fini(&r);
    }
}

static void test_restore_drops_the_round_in_progress(void **state)
{
    (void)state;
    ps_round_t r;
    assert_int_equal(ps_round_init(&r, 2, 0), PS_OK);
    uint8_t live[2] = {1, 1};
    assert_int_equal(ps_round_offer(&r, 0, 0, true), PS_ROUND_KEEP);
    int64_t pushes[2] = {7, 7};
    ps_round_restore(&r, 7, pushes);
    assert_int_equal(ps_round_clock(&r), 7);
    assert_false(ps_round_is_complete(&r, live));
    assert_int_equal(ps_round_offer(&r, 0, 6, true), PS_ROUND_RETRY);
    assert_int_equal(ps_round_offer(&r, 0, 7, true), PS_ROUND_KEEP);
    ps_round_fini(&r);
}

static void grad(zmq_msg_t *m, const void *v, size_t n)
{
    zmq_msg_init_size(m, n);
    memcpy(zmq_msg_data(m), v, n);
}

/* The dense and the sparse table follow the one rule: the same sequence
 * of pushes gets the same verdicts from both, and a rank that left and
 * came back pushes the round in progress in both. */
static void test_dense_and_sparse_tables_share_the_rule(void **state)
{
    (void)state;
    static const uint64_t shape[1] = {1};
    float one = 1;
    ps_table_params_t tp = {.name = "d", .n_total = 1, .shape = shape, .ndim = 1, .len = 1,
                            .world = 2, .max_staleness = 0,
                            .optim = {.kind = PS_OPTIM_SGD, .lr = 1}};
    ps_sparse_params_t sp = {.name = "s", .dim = 1, .world = 2, .max_staleness = 0,
                             .optim = {.kind = PS_OPTIM_SGD, .lr = 1}};
    ps_errbuf_t err;
    ps_table_t *t = ps_table_new(&tp, &one, &err);
    ps_sparse_t *s = ps_sparse_new(&sp, &err);
    assert_non_null(t);
    assert_non_null(s);
    uint8_t live[2] = {1, 0}; /* rank 1 is away for three rounds */
    uint64_t key = 9;
    for (int64_t c = 0; c < 3; c++) {
        zmq_msg_t g, k, v;
        grad(&g, &one, 4);
        grad(&k, &key, 8);
        grad(&v, &one, 4);
        assert_int_equal(ps_table_push(t, 0, c, &g, 1), PS_OK);
        assert_int_equal(ps_sparse_push(s, 0, c, &k, &v), PS_OK);
        zmq_msg_close(&g);
        zmq_msg_close(&k);
        zmq_msg_close(&v);
        assert_true(ps_table_try_complete(t, live));
        assert_true(ps_sparse_try_complete(s, live));
    }
    live[1] = 1;
    int64_t clocks[3] = {0, 5, 3}; /* stale, ahead, the round in progress */
    int want[3] = {PS_OK, PS_ERANGE, PS_OK};
    for (int i = 0; i < 3; i++) {
        zmq_msg_t g, k, v;
        grad(&g, &one, 4);
        grad(&k, &key, 8);
        grad(&v, &one, 4);
        assert_int_equal(ps_table_push(t, 1, clocks[i], &g, 1), want[i]);
        assert_int_equal(ps_sparse_push(s, 1, clocks[i], &k, &v), want[i]);
        zmq_msg_close(&g);
        zmq_msg_close(&k);
        zmq_msg_close(&v);
    }
    assert_false(ps_table_try_complete(t, live)); /* rank 0 has not pushed clock 3 */
    assert_false(ps_sparse_try_complete(s, live));
    assert_int_equal(ps_table_ready_clock(t, live), ps_sparse_ready_clock(s, live));
    ps_table_destroy(&t);
    ps_sparse_destroy(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bsp_round_completes_when_every_live_rank_pushed),
        cmocka_unit_test(test_bsp_rank_that_left_is_not_waited_for_and_may_return),
        cmocka_unit_test(test_bsp_skip_marks_the_round),
        cmocka_unit_test(test_ssp_and_asp_apply_in_order_per_rank),
        cmocka_unit_test(test_restore_drops_the_round_in_progress),
        cmocka_unit_test(test_dense_and_sparse_tables_share_the_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
