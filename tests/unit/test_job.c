/* test_job.c - one job without sockets: ranks joining, leaving, dying and
 * rejoining; which parked pulls the consistency model lets through under
 * BSP, SSP and ASP; the clocks a rejoining worker resumes at. Drives
 * ps_job and ps_pending directly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "ps_job.h"
#include "ps_shardmap.h"
#include "ps_wire.h"

/* A job of world ranks with one dense table of 4 floats (one chunk). */
static ps_job_t *job_with_table(uint32_t world, int staleness)
{
    ps_job_t *job = ps_job_new("j", world, staleness, 0);
    static const uint64_t shape[1] = {4};
    const float init[4] = {0};
    ps_table_params_t p = {.name = "w", .n_total = 4, .shape = shape, .ndim = 1, .len = 4,
                           .world = world, .max_staleness = staleness,
                           .optim = {.kind = PS_OPTIM_SGD, .lr = 1}};
    ps_errbuf_t err;
    ps_job_table_t *e = ps_job_dense(job, 0, 4, 1);
    assert_non_null(e);
    e->chunks[0] = ps_table_new(&p, init, &err);
    assert_non_null(e->chunks[0]);
    return job;
}

static void push(ps_job_t *job, uint32_t rank, int64_t clock)
{
    zmq_msg_t m;
    zmq_msg_init_size(&m, 16);
    memset(zmq_msg_data(&m), 0, 16);
    assert_int_equal(ps_table_push(ps_job_chunk(job, 0, 0), rank, clock, &m, 1), PS_OK);
    zmq_msg_close(&m);
    ps_table_try_complete(ps_job_chunk(job, 0, 0), ps_job_live(job));
}

/* A parked pull of clock by rank (identity "r<rank>"). */
static void park(ps_job_t *job, uint32_t rank, int64_t clock, uint32_t flags)
{
    zmq_msg_t id;
    zmq_msg_init_size(&id, 2);
    memcpy(zmq_msg_data(&id), (char[]){'r', (char)('0' + rank)}, 2);
    ps_pull_t *p = ps_pending_park(ps_job_pending(job), &id);
    zmq_msg_close(&id);
    p->rank = rank;
    p->clock = clock;
    p->flags = flags;
}

typedef struct {
    ps_job_t *job;
    int answered[8];
} serve_t;

static bool ready(void *ctx, const ps_pull_t *p)
{
    return ps_job_pull_ready(((serve_t *)ctx)->job, p);
}

static void answer(void *ctx, ps_pull_t *p)
{
    ((serve_t *)ctx)->answered[p->rank]++;
}

static size_t serve(serve_t *s)
{
    return ps_pending_serve(ps_job_pending(s->job), ready, answer, s);
}

static void test_bsp_pull_waits_for_the_round(void **state)
{
    (void)state;
    serve_t s = {job_with_table(2, 0), {0}};
    ps_job_join(s.job, 0, "a", 0);
    ps_job_join(s.job, 1, "b", 0);
    park(s.job, 0, 1, 0); /* rank 0 pushed clock 0 and wants clock 1 */
    push(s.job, 0, 0);
    assert_int_equal(serve(&s), 0);
    push(s.job, 1, 0);
    assert_int_equal(serve(&s), 1);
    assert_int_equal(s.answered[0], 1);
    assert_int_equal(ps_pending_flush(ps_job_pending(s.job), answer, &s), 0);
    ps_job_destroy(&s.job);
    ps_job_destroy(&s.job);
}

static void test_ssp_lets_a_rank_run_ahead_by_the_staleness(void **state)
{
    (void)state;
    serve_t s = {job_with_table(2, 2), {0}};
    for (int64_t c = 0; c < 3; c++)
        push(s.job, 0, c);
    park(s.job, 0, 2, 0); /* rank 1 at clock 0: 2 - 2 = 0 is readable */
    park(s.job, 0, 3, 0); /* needs clock 1 from every live rank */
    assert_int_equal(serve(&s), 1);
    push(s.job, 1, 0);
    assert_int_equal(serve(&s), 1);
    ps_job_destroy(&s.job);
}

static void test_asp_never_waits(void **state)
{
    (void)state;
    serve_t s = {job_with_table(2, -1), {0}};
    park(s.job, 1, 1000, 0);
    assert_int_equal(serve(&s), 1);
    ps_job_destroy(&s.job);
}

/* A rank declared dead leaves the barriers: the round it held up
 * completes and the pull waiting on it is answered; once it rejoins it
 * counts in the next round again. */
static void test_dead_rank_leaves_the_barrier_and_rejoins(void **state)
{
    (void)state;
    serve_t s = {job_with_table(2, 0), {0}};
    ps_job_join(s.job, 0, "a", 0);
    ps_job_join(s.job, 1, "b", 0);
    push(s.job, 0, 0);
    park(s.job, 0, 1, 0);
    ps_job_seen(s.job, 0, 5000);
    assert_int_equal(ps_job_sweep(s.job, 5000, 10000, NULL, NULL), 0);
    assert_int_equal(ps_job_sweep(s.job, 10001, 10000, NULL, NULL), 1); /* rank 1: silent */
    assert_true(ps_job_rank(s.job, 1)->dead);
    assert_string_equal(ps_job_rank_state(s.job, 1), "dead");
    assert_false(ps_job_all_done(s.job));
    assert_true(ps_job_recheck(s.job));
    assert_int_equal(serve(&s), 1);
    assert_int_equal(ps_job_resume_clock(s.job), 1);
    /* it comes back: it rejoins, counts in the next round */
    assert_true(ps_job_join(s.job, 1, "b2", 10002));
    assert_string_equal(ps_job_rank_state(s.job, 1), "live");
    push(s.job, 0, 1);
    park(s.job, 0, 2, 0);
    assert_int_equal(serve(&s), 0);
    push(s.job, 1, 1);
    assert_int_equal(serve(&s), 1);
    ps_job_destroy(&s.job);
}

static void test_after_all_done_pull_waits_for_every_rank(void **state)
{
    (void)state;
    serve_t s = {job_with_table(2, -1), {0}};
    park(s.job, 0, 0, PS_FLAG_AFTER_ALL_DONE);
    ps_job_finish_rank(s.job, 0, false);
    assert_int_equal(serve(&s), 0);
    ps_job_finish_rank(s.job, 1, false);
    assert_true(ps_job_all_done(s.job));
    assert_false(ps_job_all_gone(s.job));
    assert_int_equal(serve(&s), 1);
    ps_job_finish_rank(s.job, 0, true);
    ps_job_finish_rank(s.job, 1, true);
    assert_true(ps_job_all_gone(s.job));
    ps_job_destroy(&s.job);
}

static void test_tables_and_clocks(void **state)
{
    (void)state;
    ps_job_t *job = job_with_table(1, 0);
    assert_null(ps_job_dense(job, 0, 8, 1)); /* another size */
    assert_null(ps_job_chunk(job, 3, 0));
    assert_int_equal(ps_job_n_tables(job), 1);
    ps_table_t **chunks;
    uint32_t *ids;
    assert_int_equal(ps_job_chunks(job, &chunks, &ids), 1);
    free(chunks);
    free(ids);
    assert_int_equal(ps_job_max_clock(job), 0);
    push(job, 0, 0);
    push(job, 0, 1);
    assert_int_equal(ps_job_resume_clock(job), 2);
    assert_int_equal(ps_job_rank_clock(job, 0), 2);
    assert_true(ps_job_first_skip(job, 3));
    assert_false(ps_job_first_skip(job, 3));
    ps_job_destroy(&job);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bsp_pull_waits_for_the_round),
        cmocka_unit_test(test_ssp_lets_a_rank_run_ahead_by_the_staleness),
        cmocka_unit_test(test_asp_never_waits),
        cmocka_unit_test(test_dead_rank_leaves_the_barrier_and_rejoins),
        cmocka_unit_test(test_after_all_done_pull_waits_for_every_rank),
        cmocka_unit_test(test_tables_and_clocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
