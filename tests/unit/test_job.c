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
    ps_table_params_t p = {.name = "w",
                           .n_total = 4,
                           .shape = shape,
                           .ndim = 1,
                           .len = 4,
                           .world = world,
                           .max_staleness = staleness,
                           .optim = {.kind = PS_OPTIM_SGD, .lr = 1}};
    ps_errbuf_t err;
    ps_job_table_t *e = ps_job_dense(job, 0, 4, 1);
    assert_non_null(e);
    e->chunks[0] = ps_table_new(&p, init, &err);
    assert_non_null(e->chunks[0]);
    return job;
}

/* rank joins (owner 1 + rank); returns whether it had joined before. */
static bool join(ps_job_t *job, uint32_t rank, const char *peer, int64_t now)
{
    bool rejoin = false;
    char why[256];
    assert_int_equal(ps_job_claim(job, rank, 1 + rank, peer, now, &rejoin, why, sizeof why), PS_OK);
    return rejoin;
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
    join(s.job, 0, "a", 0);
    join(s.job, 1, "b", 0);
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

/* Under BSP a rank declared dead stays in the barrier: the round waits
 * for it to come back (so the model stays exact), and once it has been
 * lost longer than the timeout the job says why it cannot go on; when the
 * rank rejoins the round completes with its push. */
static void test_bsp_round_waits_for_a_dead_rank(void **state)
{
    (void)state;
    serve_t s = {job_with_table(2, 0), {0}};
    join(s.job, 0, "a", 0);
    join(s.job, 1, "b", 0);
    push(s.job, 0, 0);
    park(s.job, 0, 1, 0);
    ps_job_seen(s.job, 0, 5000);
    assert_int_equal(ps_job_sweep(s.job, 5000, 10000, NULL, NULL), 0);
    assert_int_equal(ps_job_sweep(s.job, 10001, 10000, NULL, NULL), 1); /* rank 1: silent */
    assert_true(ps_job_rank(s.job, 1)->dead);
    assert_string_equal(ps_job_rank_state(s.job, 1), "dead");
    assert_false(ps_job_recheck(s.job)); /* still waiting for it */
    assert_int_equal(serve(&s), 0);
    char why[512];
    assert_null(ps_job_world_problem(s.job, 20000, 60000, 300000, why, sizeof why));
    assert_non_null(ps_job_world_problem(s.job, 80000, 60000, 300000, why, sizeof why));
    assert_non_null(strstr(why, "worker 1"));
    /* it comes back (a SIGCONT, or a restarted process): it rejoins and pushes */
    assert_true(join(s.job, 1, "b2", 80001));
    assert_string_equal(ps_job_rank_state(s.job, 1), "live");
    assert_null(ps_job_world_problem(s.job, 80001, 60000, 300000, why, sizeof why));
    push(s.job, 1, 0);
    assert_int_equal(serve(&s), 1);
    assert_int_equal(ps_job_resume_clock(s.job), 1);
    ps_job_destroy(&s.job);
}

/* Under SSP/ASP a dead rank leaves the barriers and the others go on. */
static void test_ssp_goes_on_without_a_dead_rank(void **state)
{
    (void)state;
    serve_t s = {job_with_table(2, 1), {0}};
    join(s.job, 0, "a", 0);
    join(s.job, 1, "b", 0);
    for (int64_t c = 0; c < 3; c++)
        push(s.job, 0, c);
    park(s.job, 0, 3, 0); /* needs rank 1 at clock 2 */
    assert_int_equal(serve(&s), 0);
    ps_job_seen(s.job, 0, 20000);
    assert_int_equal(ps_job_sweep(s.job, 20000, 10000, NULL, NULL), 1);
    assert_int_equal(serve(&s), 1);
    char why[512];
    assert_null(ps_job_world_problem(s.job, 999999, 1, 1, why, sizeof why));
    /* its clock no longer holds the job's back: checkpoints go on */
    assert_int_equal(ps_job_resume_clock(s.job), 3);
    assert_int_equal(ps_job_rank_resume_clock(s.job, 1), 0); /* it resumes at its own clock */
    ps_job_destroy(&s.job);
}

/* One live owner per rank: a second process is refused until the first is
 * declared dead; then it takes over and the first one's requests fail. */
static void test_a_rank_has_one_live_owner(void **state)
{
    (void)state;
    ps_job_t *job = job_with_table(1, 0);
    bool rejoin;
    char why[512];
    assert_int_equal(ps_job_claim(job, 0, 7, "a", 0, &rejoin, why, sizeof why), PS_OK);
    assert_int_equal(ps_job_claim(job, 0, 7, "a", 10, &rejoin, why, sizeof why), PS_OK);
    assert_true(rejoin);
    assert_int_equal(ps_job_claim(job, 0, 8, "b", 20, &rejoin, why, sizeof why), PS_EAGAIN);
    assert_non_null(strstr(why, "held by a live process at 'a'"));
    assert_true(ps_job_owns(job, 0, 7));
    assert_false(ps_job_owns(job, 0, 8));
    assert_int_equal(ps_job_sweep(job, 20000, 10000, NULL, NULL), 1);
    assert_int_equal(ps_job_claim(job, 0, 8, "b", 20001, &rejoin, why, sizeof why), PS_OK);
    assert_false(ps_job_owns(job, 0, 7));
    ps_job_destroy(&job);
}

/* A rank killed after its DONE is swept like any other, so a restarted
 * process can take it over; being done, it is no world problem. */
static void test_a_done_rank_that_dies_can_be_taken_over(void **state)
{
    (void)state;
    ps_job_t *job = job_with_table(2, 0);
    bool rejoin;
    char why[512];
    join(job, 0, "a", 0);
    join(job, 1, "b", 0);
    ps_job_finish_rank(job, 1, false);
    ps_job_seen(job, 0, 5000);
    assert_int_equal(ps_job_sweep(job, 5000, 2000, NULL, NULL), 1);
    assert_true(ps_job_rank(job, 1)->dead);
    assert_null(ps_job_world_problem(job, 999999, 1000, 300000, why, sizeof why));
    assert_int_equal(ps_job_claim(job, 1, 9, "b2", 5001, &rejoin, why, sizeof why), PS_OK);
    ps_job_destroy(&job);
}

/* The first option that differs is named with both values. */
/* A rollback to a clock before the ranks' DONE puts them back in the
 * barriers (psrv_snapshot_rollback): the first worker back must not close
 * a replayed round alone while the other one has yet to HELLO again. A
 * rank that said BYE stays out. */
static void test_a_rollback_before_done_puts_the_rank_back_in_the_barrier(void **state)
{
    (void)state;
    serve_t s = {job_with_table(3, 0), {0}};
    for (uint32_t r = 0; r < 3; r++)
        join(s.job, r, "a", 0);
    ps_job_finish_rank(s.job, 0, false);
    ps_job_finish_rank(s.job, 1, false);
    ps_job_finish_rank(s.job, 2, true);
    assert_true(ps_job_all_done(s.job));
    for (uint32_t r = 0; r < 3; r++)
        ps_job_reopen_rank(s.job, r);
    assert_false(ps_job_all_done(s.job));
    assert_string_equal(ps_job_rank_state(s.job, 1), "live");
    assert_string_equal(ps_job_rank_state(s.job, 2), "left");
    park(s.job, 0, 1, 0); /* rank 0 replays clock 0 and wants clock 1 */
    push(s.job, 0, 0);
    assert_int_equal(serve(&s), 0); /* rank 1 is in the round again */
    push(s.job, 1, 0);
    assert_int_equal(serve(&s), 1);
    ps_job_destroy(&s.job);
}

static void test_fingerprints_name_the_first_difference(void **state)
{
    (void)state;
    ps_job_t *job = job_with_table(1, 0);
    char why[512];
    ps_job_set_fingerprint(job, "model=mlp\nlr=0.5\nseed=1\n");
    assert_true(ps_job_same_config(job, "model=mlp\nlr=0.5\nseed=1\n", why, sizeof why));
    assert_false(ps_job_same_config(job, "model=mlp\nlr=0.02\nseed=1\n", why, sizeof why));
    assert_string_equal(why, "option 'lr' is '0.5' in this job, '0.02' in the worker");
    assert_false(ps_job_same_config(job, "model=mlp\nlr=0.5\n", why, sizeof why));
    assert_non_null(strstr(why, "'seed'"));
    assert_false(
        ps_job_same_config(job, "model=mlp\nlr=0.5\nseed=1\nbatch_size=32\n", why, sizeof why));
    assert_non_null(strstr(why, "'batch_size' is '' in this job, '32'"));
    ps_job_destroy(&job);
}

/* A server that did not run for a while (SIGSTOP, a stalled host) heard
 * nothing: it forgives that silence instead of declaring every rank dead
 * before it reads their queued heartbeats. */
static void test_a_stalled_server_forgives_the_silence(void **state)
{
    (void)state;
    ps_job_t *job = job_with_table(2, 0);
    join(job, 0, "a", 0);
    join(job, 1, "b", 0);
    ps_job_forgive_silence(job, 12000);
    assert_int_equal(ps_job_sweep(job, 12000, 2000, NULL, NULL), 0);
    assert_int_equal(ps_job_alive(job), 2);
    /* silence after the stall counts as usual */
    assert_int_equal(ps_job_sweep(job, 14001, 2000, NULL, NULL), 2);
    ps_job_destroy(&job);
}

/* A rank that never joined is not dead: the world is still assembling,
 * until assemble_timeout_ms says it never will. */
static void test_a_world_that_never_assembles_is_a_problem(void **state)
{
    (void)state;
    ps_job_t *job = job_with_table(2, 0);
    join(job, 0, "a", 0);
    ps_job_seen(job, 0, 15000);
    assert_int_equal(ps_job_sweep(job, 15000, 2000, NULL, NULL), 0);
    char why[512];
    assert_null(ps_job_world_problem(job, 15000, 60000, 300000, why, sizeof why));
    assert_non_null(ps_job_world_problem(job, 300001, 60000, 300000, why, sizeof why));
    assert_non_null(strstr(why, "worker 1 of job 'j' never joined"));
    ps_job_destroy(&job);
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
    assert_false(ps_job_all_left(s.job));
    assert_int_equal(serve(&s), 1);
    ps_job_finish_rank(s.job, 0, true);
    ps_job_finish_rank(s.job, 1, true);
    assert_true(ps_job_all_left(s.job));
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
        cmocka_unit_test(test_bsp_round_waits_for_a_dead_rank),
        cmocka_unit_test(test_ssp_goes_on_without_a_dead_rank),
        cmocka_unit_test(test_a_rank_has_one_live_owner),
        cmocka_unit_test(test_a_done_rank_that_dies_can_be_taken_over),
        cmocka_unit_test(test_a_rollback_before_done_puts_the_rank_back_in_the_barrier),
        cmocka_unit_test(test_fingerprints_name_the_first_difference),
        cmocka_unit_test(test_a_stalled_server_forgives_the_silence),
        cmocka_unit_test(test_a_world_that_never_assembles_is_a_problem),
        cmocka_unit_test(test_after_all_done_pull_waits_for_every_rank),
        cmocka_unit_test(test_tables_and_clocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
