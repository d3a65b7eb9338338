/* test_client_server.c - the client against a real server core on a thread:
 * precision on the wire, non-finite pushes refused, BSP skip rounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ps_client.h"
#include "ps_client_int.h" /* to stage one side of a race */
#include "ps_half.h"
#include "ps_log.h"
#include "ps_test_server.h"
#include "ps_time.h"
#include "ps_wire.h"

#define N 10000

static ps_test_server_t server;

static int pipes_at_setup; /* open pipes before any client made its doorbell */
static int open_fds_like(const char *prefix);

static int setup(void **state)
{
    (void)state;
    pipes_at_setup = open_fds_like("pipe:");
    ps_log_init("test", PS_LOG_ERROR);
    ps_server_config_t cfg;
    ps_test_server_config(&cfg, 0, 1);
    cfg.max_jobs_per_client = 64; /* every test here is a job from 127.0.0.1 */
    return ps_test_server_start_config(&server, &cfg);
}

static int teardown(void **state)
{
    (void)state;
    ps_test_server_stop(&server);
    return 0;
}

static ps_client_t *client_asp(const char *job, uint32_t rank, uint32_t world, int dtype,
                               int staleness)
{
    ps_client_opts_t o = {.job = job,
                          .rank = rank,
                          .world = world,
                          .timeout_ms = 5000,
                          .dtype = dtype,
                          .max_staleness = staleness};
    ps_errbuf_t err;
    ps_client_t *c = ps_client_new(ps_server_endpoint(server.srv), &o, &err);
    assert_non_null(c);
    assert_int_equal(ps_client_hello(c, NULL, &err), PS_OK);
    return c;
}

static ps_client_t *client(const char *job, uint32_t rank, uint32_t world, int dtype)
{
    return client_asp(job, rank, world, dtype, 0);
}

static void init_table(ps_client_t *c, const float *init)
{
    uint64_t shape[1] = {N};
    ps_optim_spec_t sgd = {.kind = PS_OPTIM_SGD, .lr = 1.0};
    ps_errbuf_t err;
    assert_int_equal(ps_client_init_table(c, 0, "t", shape, 1, &sgd, init, &err), PS_OK);
}

static void test_fp16_and_bf16_pushes_update_fp32_master_weights(void **state)
{
    (void)state;
    static float init[N], grad[N], got[N];
    for (int i = 0; i < N; i++) {
        init[i] = 1.0f + (float)i * 1e-4f; /* not representable in fp16: the server keeps it */
        grad[i] = (float)(i % 7) * 0.25f;
    }
    ps_errbuf_t err;
    for (int dtype = PS__DTYPE__F16; dtype <= PS__DTYPE__BF16; dtype++) {
        char job[16];
        snprintf(job, sizeof job, "prec%d", dtype);
        /* ASP, so rank 1 (below) may read without pushing */
        ps_client_t *c = client_asp(job, 0, 2, dtype, -1);
        init_table(c, init);
        uint64_t sent_before = ps_client_bytes_sent(c);
        /* push grad * 512 in half precision; the server divides by 512 * n_samples */
        assert_int_equal(ps_client_push_pull(c, 0, 0, grad, 2, 512.0f, 0, got), PS_OK);
        assert_int_equal(ps_client_wait(c, &err), PS_OK);
        for (int i = 0; i < N; i++) {
            float want = init[i] - grad[i] / 2;                    /* lr 1, mean over 2 samples */
            float tol = dtype == PS__DTYPE__F16 ? 2e-3f : 1.6e-2f; /* the reply's rounding */
            assert_true(fabsf(got[i] - want) <= tol * fabsf(want));
        }
        /* the same slice pulled as fp32 by another client shows the exact master value
         * (another rank: a rank held by a live process is not given to a second one) */
        ps_client_t *exact = client_asp(job, 1, 2, PS__DTYPE__F32, -1);
        uint64_t shape[1] = {N};
        ps_optim_spec_t sgd = {.kind = PS_OPTIM_SGD, .lr = 1.0};
        assert_int_equal(ps_client_init_table(exact, 0, "t", shape, 1, &sgd, init, &err), PS_OK);
        assert_int_equal(ps_client_pull(exact, 0, 1, 0, got), PS_OK);
        assert_int_equal(ps_client_wait(exact, &err), PS_OK);
        assert_true(fabsf(got[9999] - (init[9999] - grad[9999] / 2)) < 1e-6f);
        /* half precision on the wire: 2 bytes per value plus a small header */
        assert_true(ps_client_bytes_sent(c) - sent_before < N * 2 + 256);
        ps_client_destroy(&exact);
        ps_client_destroy(&c);
    }
}

static void test_non_finite_push_is_refused_and_server_serves_on(void **state)
{
    (void)state;
    static float init[N], grad[N], got[N];
    ps_errbuf_t err;
    /* ASP with two ranks: rank 1 checks the table after rank 0's bad push */
    ps_client_t *c = client_asp("nan", 0, 2, PS__DTYPE__F32, -1);
    init_table(c, init);
    grad[17] = NAN;
    assert_int_equal(ps_client_push_pull(c, 0, 0, grad, 1, 1.0f, 0, got), PS_OK);
    assert_int_equal(ps_client_wait(c, &err), PS_ENONFINITE);
    assert_non_null(strstr(err.msg, "inf or NaN"));
    /* through the shared region (checked as the shard copies it out) */
    assert_true(ps_client_shm_requests(c) >= 1);
    ps_client_destroy(&c);
    /* and so is an inf in the last element of a table whose length is no
     * multiple of a vector's lanes (the copy's scalar tail) */
    grad[17] = 0.0f;
    grad[N - 4] = -INFINITY;
    c = client("inf-last", 0, 1, PS__DTYPE__F32);
    uint64_t odd[1] = {N - 3};
    ps_optim_spec_t sgd = {.kind = PS_OPTIM_SGD, .lr = 1.0};
    assert_int_equal(ps_client_init_table(c, 0, "odd", odd, 1, &sgd, init, &err), PS_OK);
    assert_int_equal(ps_client_push_pull(c, 0, 0, grad, 1, 1.0f, 0, got), PS_OK);
    assert_int_equal(ps_client_wait(c, &err), PS_ENONFINITE);
    assert_true(ps_client_shm_requests(c) >= 1);
    ps_client_destroy(&c);
    grad[N - 4] = 0.0f;
    ps_client_t *other = client_asp("nan", 1, 2, PS__DTYPE__F32, -1);
    /* fp16: a value beyond 65504 becomes inf on the wire and is refused too */
    c = client("inf16", 0, 1, PS__DTYPE__F16);
    init_table(c, init);
    grad[17] = 1e6f;
    assert_int_equal(ps_client_push_pull(c, 0, 0, grad, 1, 1.0f, 0, got), PS_OK);
    assert_int_equal(ps_client_wait(c, &err), PS_ENONFINITE);
    ps_client_destroy(&c);
    /* the table was not touched, and the server still answers */
    init_table(other, init);
    grad[17] = 1.0f;
    assert_int_equal(ps_client_push_pull(other, 0, 0, grad, 1, 1.0f, 0, got), PS_OK);
    assert_int_equal(ps_client_wait(other, &err), PS_OK);
    assert_true(got[17] == -1.0f && got[0] == 0.0f);
    ps_client_destroy(&other);
}

/* After a ROLLBACK the clocks a job can resume at are still every
 * checkpoint at or below the rollback's clock, not that clock alone: the
 * stages of a pipeline that a shard restart left at different clocks meet
 * at an older checkpoint both hold, and with only the clock each had
 * reached there was none (it_pipeline_kill failed now and then, "the
 * stages' jobs hold no clock in common"). */
static void test_resume_points_survive_a_rollback(void **state)
{
    (void)state;
    char dir[] = "/tmp/ps-test-rollback.XXXXXX";
    assert_non_null(mkdtemp(dir));
    ps_server_config_t cfg;
    ps_test_server_config(&cfg, 0, 1);
    snprintf(cfg.state_dir, sizeof cfg.state_dir, "%s", dir);
    cfg.checkpoint_every = 1;
    cfg.checkpoint_keep = 8;
    /* this client sends no heartbeats, so only its requests keep it
     * live, and under Valgrind one round took longer than the default 10 s
     * (CI: EDEAD on the fifth push) */
    cfg.heartbeat_timeout_ms = 600000;
    ps_test_server_t ckpt_server;
    assert_int_equal(ps_test_server_start_config(&ckpt_server, &cfg), 0);
    /* each round waits for the checkpoint writer before it, a forked
     * process: under Valgrind (tools/valgrind.sh) that took over 5 s */
    ps_client_opts_t o = {
        .job = "rb", .rank = 0, .world = 1, .timeout_ms = 120000, .dtype = PS__DTYPE__F32};
    ps_errbuf_t err;
    ps_client_t *c = ps_client_new(ps_server_endpoint(ckpt_server.srv), &o, &err);
    assert_non_null(c);
    assert_int_equal(ps_client_hello(c, NULL, &err), PS_OK);
    static float init[N], grad[N], got[N];
    init_table(c, init);
    for (int64_t clock = 0; clock < 6; clock++) {
        assert_int_equal(ps_client_push_pull(c, 0, clock, grad, 1, 1.0f, 0, got), PS_OK);
        assert_int_equal(ps_client_wait(c, &err), PS_OK);
    }
    int64_t at, before[16], after[16];
    assert_int_equal(ps_client_recover(c, true, &at, &err), PS_OK); /* a HELLO: the list */
    size_t n_before = ps_client_resume_points(c, at, before, 16);
    assert_int_equal(n_before, 7); /* at (6), and a checkpoint of every clock 0..5 */
    int64_t to = before[1];
    assert_int_equal(ps_client_rollback_to(c, to, &err), PS_OK);
    size_t n_after = ps_client_resume_points(c, to, after, 16);
    /* to itself, then every checkpoint older than it that the HELLO listed */
    assert_int_equal(n_after, n_before - 1);
    for (size_t i = 0; i < n_after; i++)
        assert_int_equal(after[i], before[i + 1]);
    ps_client_destroy(&c);
    ps_test_server_stop(&ckpt_server);
    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    assert_int_equal(system(rm), 0);
}

/* The other side of a race: worker B's rollback to clock 4 reaches shard
 * 1 between this worker's HELLOs and its own ROLLBACKs (once). */
static void race_to_4(ps_client_t *c, void *arg)
{
    int *raced = arg;
    if ((*raced)++)
        return;
    Ps__Header h;
    pscl_header_init(c, &h, PS__OP__ROLLBACK);
    h.clock = 4;
    h.generation = c->shard_generation[0]; /* the half-done rollback's */
    int rc;
    ps_errbuf_t err;
    assert_non_null(pscl_send(c, 1, &h, NULL, NULL, 0, NULL, 0, 0, &rc));
    assert_int_equal(ps_client_wait(c, &err), PS_OK);
}

/* Two workers recovering at once may both start a rollback of the same
 * generation, to different clocks. A shard takes whichever reaches it
 * first and only acknowledges the other, so the shards can end at two
 * clocks: the loser must see so and recover again, not resume as if its
 * rollback were done (before, it did: at clock 5, with shard 1 at 4). */
static void test_a_raced_rollback_is_seen_and_recovered(void **state)
{
    (void)state;
    char dir0[] = "/tmp/ps-test-race0.XXXXXX", dir1[] = "/tmp/ps-test-race1.XXXXXX";
    assert_non_null(mkdtemp(dir0));
    assert_non_null(mkdtemp(dir1));
    ps_test_server_t shards[2];
    char eps[256] = "";
    for (int s = 0; s < 2; s++) {
        ps_server_config_t cfg;
        ps_test_server_config(&cfg, s, 2);
        snprintf(cfg.state_dir, sizeof cfg.state_dir, "%s", s ? dir1 : dir0);
        cfg.checkpoint_every = 1;
        cfg.checkpoint_keep = 8;
        cfg.heartbeat_timeout_ms = 600000; /* no heartbeats; Valgrind */
        assert_int_equal(ps_test_server_start_config(&shards[s], &cfg), 0);
        size_t len = strlen(eps);
        snprintf(eps + len, sizeof eps - len, "%s%s", s ? "," : "",
                 ps_server_endpoint(shards[s].srv));
    }
    ps_client_opts_t o = {
        .job = "race", .rank = 0, .world = 1, .timeout_ms = 120000, .dtype = PS__DTYPE__F32};
    ps_errbuf_t err;
    ps_client_t *c = ps_client_new(eps, &o, &err);
    assert_non_null(c);
    assert_int_equal(ps_client_hello(c, NULL, &err), PS_OK);
    static float init[N], grad[N], got[N];
    uint64_t shape[1] = {N};
    ps_optim_spec_t sgd = {.kind = PS_OPTIM_SGD, .lr = 1.0};
    for (uint32_t t = 0; t < 2; t++) /* one table on each shard at least */
        assert_int_equal(ps_client_init_table(c, t, "t", shape, 1, &sgd, init, &err), PS_OK);
    for (int64_t clock = 0; clock < 6; clock++) {
        for (uint32_t t = 0; t < 2; t++)
            assert_int_equal(ps_client_push_pull(c, t, clock, grad, 1, 1.0f, 0, got), PS_OK);
        assert_int_equal(ps_client_wait(c, &err), PS_OK);
    }
    int64_t at;
    assert_int_equal(ps_client_recover(c, true, &at, &err), PS_OK);
    assert_int_equal(at, 6);
    uint64_t next = c->generation + 1;
    /* a rollback to 5 half done: it reached shard 0 only */
    Ps__Header h;
    pscl_header_init(c, &h, PS__OP__ROLLBACK);
    h.clock = 5;
    h.generation = next;
    int rc;
    assert_non_null(pscl_send(c, 0, &h, NULL, NULL, 0, NULL, 0, 0, &rc));
    assert_int_equal(ps_client_wait(c, &err), PS_OK);
    /* this worker finishes it (to 5) while B's, to 4, reaches shard 1 */
    int raced = 0;
    c->before_rollback = race_to_4;
    c->before_rollback_arg = &raced;
    assert_int_equal(ps_client_recover(c, true, &at, &err), PS_OK);
    assert_int_equal(raced, 2); /* a second rollback followed */
    assert_int_equal(at, 4);    /* the newest clock both still hold */
    assert_int_equal(c->generation, next + 1);
    for (uint32_t s = 0; s < 2; s++) {
        assert_int_equal(c->answers[s].generation, next + 1);
        assert_int_equal(c->answers[s].rollback_clock, 4);
    }
    c->before_rollback = NULL;
    int64_t again;
    assert_int_equal(ps_client_recover(c, true, &again, &err), PS_OK);
    assert_int_equal(again, 4); /* consistent: nothing more to roll back */
    assert_int_equal(c->generation, next + 1);
    ps_client_destroy(&c);
    for (int s = 0; s < 2; s++)
        ps_test_server_stop(&shards[s]);
    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf '%s' '%s'", dir0, dir1);
    assert_int_equal(system(rm), 0);
}

/* Waiting for one table: its values are in on return, a table with
 * nothing in flight returns at once, and an error of the awaited table's
 * request comes back from that wait. */
static void test_wait_for_one_table(void **state)
{
    (void)state;
    static float init[N], grad[N], got0[N], got1[N];
    ps_errbuf_t err;
    ps_client_t *c = client("wait1", 0, 1, PS__DTYPE__F32);
    init_table(c, init);
    uint64_t shape[1] = {N};
    ps_optim_spec_t sgd = {.kind = PS_OPTIM_SGD, .lr = 1.0};
    assert_int_equal(ps_client_init_table(c, 1, "u", shape, 1, &sgd, init, &err), PS_OK);
    for (int i = 0; i < N; i++)
        grad[i] = (float)(i % 5);
    assert_int_equal(ps_client_wait_table(c, 0, &err), PS_OK); /* nothing in flight */
    assert_int_equal(ps_client_push_pull(c, 0, 0, grad, 1, 1.0f, 0, got0), PS_OK);
    assert_int_equal(ps_client_push_pull(c, 1, 0, grad, 1, 1.0f, 0, got1), PS_OK);
    assert_int_equal(ps_client_wait_table(c, 0, &err), PS_OK);
    for (int i = 0; i < N; i++)
        assert_true(got0[i] == -(float)(i % 5));
    assert_int_equal(ps_client_wait(c, &err), PS_OK);
    for (int i = 0; i < N; i++)
        assert_true(got1[i] == -(float)(i % 5));
    /* table 1's push is refused (NaN): its wait reports it */
    grad[3] = NAN;
    assert_int_equal(ps_client_push_pull(c, 1, 1, grad, 1, 1.0f, 0, got1), PS_OK);
    assert_int_equal(ps_client_wait_table(c, 1, &err), PS_ENONFINITE);
    assert_non_null(strstr(err.msg, "'u'"));
    ps_client_destroy(&c);
}

static void test_bsp_overflow_on_one_worker_skips_the_step_for_all(void **state)
{
    (void)state;
    static float init[N], grad[N], got0[N], got1[N];
    for (int i = 0; i < N; i++)
        grad[i] = 1.0f;
    ps_errbuf_t err;
    ps_client_t *a = client("skip", 0, 2, PS__DTYPE__F16);
    ps_client_t *b = client("skip", 1, 2, PS__DTYPE__F16);
    init_table(a, init);
    init_table(b, init);
    assert_int_equal(ps_client_push_pull(a, 0, 0, grad, 1, 1.0f, 0, got0), PS_OK);
    assert_int_equal(ps_client_push_pull(b, 0, 0, NULL, 1, 1.0f, PS_FLAG_SKIP, got1), PS_OK);
    assert_int_equal(ps_client_wait(a, &err), PS_OK);
    assert_int_equal(ps_client_wait(b, &err), PS_OK);
    assert_true(ps_client_reply_flags(a) & PS_FLAG_SKIPPED);
    assert_true(ps_client_reply_flags(b) & PS_FLAG_SKIPPED);
    assert_true(got0[5] == 0.0f && got1[5] == 0.0f); /* no update applied */
    /* the next clock applies normally */
    assert_int_equal(ps_client_push_pull(a, 0, 1, grad, 1, 1.0f, 0, got0), PS_OK);
    assert_int_equal(ps_client_push_pull(b, 0, 1, grad, 1, 1.0f, 0, got1), PS_OK);
    assert_int_equal(ps_client_wait(a, &err), PS_OK);
    assert_int_equal(ps_client_wait(b, &err), PS_OK);
    assert_false(ps_client_reply_flags(a) & PS_FLAG_SKIPPED);
    assert_true(got0[5] == -1.0f && got1[5] == -1.0f);
    ps_client_destroy(&a);
    ps_client_destroy(&b);
}

/* A worker that rejoins (HELLO again after it forgot its requests) replays
 * the round it had pushed into: the round waits for that replayed push and
 * applies it, not the one from before. Kept, the old push let the round
 * complete before the replay, whose pull then read the newer parameters:
 * it_sparse_recovery_stream saw the model differ from the uninterrupted
 * run's by 4.6e-4 when a shard restart came between a worker's push and
 * the other's (the job exited 0). */
static void test_a_rejoined_worker_replays_its_push_of_the_round(void **state)
{
    (void)state;
    static float init[N], old_grad[N], grad[N], other[N], got0[N], got1[N];
    for (int i = 0; i < N; i++) {
        old_grad[i] = 1.0f;
        grad[i] = 2.0f;
        other[i] = 4.0f;
    }
    ps_errbuf_t err;
    ps_client_t *a = client("rejoin", 0, 2, PS__DTYPE__F32);
    ps_client_t *b = client("rejoin", 1, 2, PS__DTYPE__F32);
    init_table(a, init);
    init_table(b, init);
    /* b pushes clock 0 (kept: a has not pushed), then recovers */
    assert_int_equal(ps_client_push_pull(b, 0, 0, old_grad, 1, 1.0f, 0, got1), PS_OK);
    int64_t at;
    assert_int_equal(ps_client_recover(b, true, &at, &err), PS_OK);
    assert_int_equal(at, 0);
    /* the replay, then a's push complete the round */
    assert_int_equal(ps_client_push_pull(b, 0, 0, grad, 1, 1.0f, 0, got1), PS_OK);
    assert_int_equal(ps_client_push_pull(a, 0, 0, other, 1, 1.0f, 0, got0), PS_OK);
    assert_int_equal(ps_client_wait(a, &err), PS_OK);
    assert_int_equal(ps_client_wait(b, &err), PS_OK);
    /* SGD, lr 1: 0 - (2 + 4) / 2; the old push would give -(1 + 4) / 2 */
    assert_true(got0[7] == -3.0f && got1[7] == -3.0f);
    ps_client_destroy(&a);
    ps_client_destroy(&b);
}

/* Two sparse pulls in flight at once: each keeps its own keys and row
 * positions until the wait (they used to share one staging buffer, so the
 * second overwrote the keys the first was still sending). */
static void test_two_sparse_pulls_in_flight_keep_their_own_keys(void **state)
{
    (void)state;
    ps_client_t *c = client("sparse2", 0, 1, PS__DTYPE__F32);
    ps_errbuf_t err;
    ps_optim_spec_t sgd = {.kind = PS_OPTIM_SGD, .lr = 0.1};
    assert_int_equal(ps_client_init_sparse(c, 0, "e", 2, &sgd, 0.5, 3, &err), PS_OK);
    enum { NA = 64, NB = 16 };
    uint64_t a[NA], b[NB];
    for (int i = 0; i < NA; i++)
        a[i] = 1000 + (uint64_t)i;
    for (int i = 0; i < NB; i++)
        b[i] = 9000 + (uint64_t)i;
    float alone[NA * 2], ra[NA * 2], rb[NB * 2], b_alone[NB * 2];
    assert_int_equal(ps_client_sparse_pull(c, 0, 0, 0, a, NA, alone), PS_OK);
    assert_int_equal(ps_client_wait(c, &err), PS_OK);
    assert_int_equal(ps_client_sparse_pull(c, 0, 0, 0, b, NB, b_alone), PS_OK);
    assert_int_equal(ps_client_wait(c, &err), PS_OK);
    assert_int_equal(ps_client_sparse_pull(c, 0, 0, 0, a, NA, ra), PS_OK);
    assert_int_equal(ps_client_sparse_pull(c, 0, 0, 0, b, NB, rb), PS_OK);
    assert_int_equal(ps_client_wait(c, &err), PS_OK);
    assert_memory_equal(ra, alone, sizeof ra);
    assert_memory_equal(rb, b_alone, sizeof rb);
    ps_client_destroy(&c);
}

/* Under BSP a pull of a clock the table has moved past is refused
 * (PS_ESTALE): the parameters of that clock are gone, and serving the newer
 * ones would let a replayed step compute from them. Sparse pulls answered
 * such a pull with the newer rows (seen on 3b488d4: PS_OK, the rows of
 * clock 2 for a pull of clock 0). */
static void test_a_pull_of_a_clock_gone_by_is_stale_dense_and_sparse(void **state)
{
    (void)state;
    static float init[N], grad[N], got[N];
    for (int i = 0; i < N; i++)
        grad[i] = 1.0f;
    ps_errbuf_t err;
    ps_client_t *d = client("stale-dense", 0, 1, PS__DTYPE__F32);
    init_table(d, init);
    for (int64_t clock = 0; clock < 2; clock++) {
        assert_int_equal(ps_client_push_pull(d, 0, clock, grad, 1, 1.0f, 0, got), PS_OK);
        assert_int_equal(ps_client_wait(d, &err), PS_OK);
    }
    assert_int_equal(ps_client_pull(d, 0, 0, 0, got), PS_OK);
    assert_int_equal(ps_client_wait(d, &err), PS_ESTALE);
    assert_non_null(strstr(err.msg, "past the clock 0"));
    ps_client_destroy(&d);

    ps_client_t *c = client("stale-sparse", 0, 1, PS__DTYPE__F32);
    ps_optim_spec_t sgd = {.kind = PS_OPTIM_SGD, .lr = 0.5};
    assert_int_equal(ps_client_init_sparse(c, 0, "e", 2, &sgd, 0.5, 3, &err), PS_OK);
    uint64_t keys[3] = {11, 12, 13};
    float g[3 * 2] = {1, 1, 1, 1, 1, 1}, at0[3 * 2], at2[3 * 2], stale[3 * 2];
    assert_int_equal(ps_client_sparse_pull(c, 0, 0, 0, keys, 3, at0), PS_OK);
    assert_int_equal(ps_client_wait(c, &err), PS_OK);
    for (int64_t clock = 0; clock < 2; clock++) {
        assert_int_equal(ps_client_sparse_push(c, 0, clock, keys, 3, g), PS_OK);
        assert_int_equal(ps_client_wait(c, &err), PS_OK);
    }
    assert_int_equal(ps_client_sparse_pull(c, 0, 2, 0, keys, 3, at2), PS_OK);
    assert_int_equal(ps_client_wait(c, &err), PS_OK);
    for (int i = 0; i < 3 * 2; i++) /* SGD on sums, lr 0.5, two pushes of 1 */
        assert_float_equal(at2[i], at0[i] - 1.0f, 1e-6f);
    assert_int_equal(ps_client_sparse_pull(c, 0, 0, 0, keys, 3, stale), PS_OK);
    assert_int_equal(ps_client_wait(c, &err), PS_ESTALE);
    assert_non_null(strstr(err.msg, "past the clock 0"));
    ps_client_destroy(&c);
}

typedef struct {
    int n, status;
    uint64_t id;
} bell_answer_t;

static int take_answer(void *arg, const uint8_t *frame, size_t len)
{
    bell_answer_t *a = arg;
    Ps__Header *h = ps__header__unpack(NULL, len, frame);
    assert_non_null(h);
    a->n++;
    a->status = h->status;
    a->id = h->request_id;
    ps__header__free_unpacked(h, NULL);
    return PS_OK;
}

/* Rings h down c's doorbell to shard 0 and returns the status of the one
 * reply that comes back up it (5 s deadline). */
static int ring_forged(ps_client_t *c, Ps__Header *h)
{
    pscl_shm_t *r = &c->shm[0];
    assert_int_equal(ps_bell_ring(r->bell[1], h), PS_OK);
    bell_answer_t a = {0};
    int64_t deadline = ps_time_ms() + 5000;
    while (a.n == 0 && ps_time_ms() < deadline) {
        struct pollfd p = {.fd = r->answer_fd, .events = POLLIN};
        poll(&p, 1, 50);
        assert_int_equal(ps_bell_take(&r->reader, r->answer_fd, take_answer, &a), PS_OK);
    }
    assert_int_equal(a.n, 1);
    assert_int_equal(a.id, h->request_id);
    return a.status;
}

static void push_pull_all(ps_client_t *c, int64_t clock, const float *grad, float *got, float want)
{
    ps_errbuf_t err;
    assert_int_equal(ps_client_push_pull(c, 0, clock, grad, 1, 1.0f, 0, got), PS_OK);
    assert_int_equal(ps_client_wait(c, &err), PS_OK);
    for (int i = 0; i < N; i++)
        if (got[i] != want)
            fail_msg("value %d is %g, not %g", i, (double)got[i], (double)want);
}

/* This process's descriptors whose link starts with prefix. */
static int open_fds_like(const char *prefix)
{
    int n = 0;
    for (int fd = 0; fd < 4096; fd++) {
        char path[64], link[256];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t len = readlink(path, link, sizeof link - 1);
        if (len > 0) {
            link[len] = '\0';
            n += strncmp(link, prefix, strlen(prefix)) == 0;
        }
    }
    return n;
}

/* Waits (5 s at most) until the open pipes are those of setup(): every
 * doorbell closed on both sides. */
static void wait_pipes_back(void)
{
    int64_t deadline = ps_time_ms() + 5000;
    while (open_fds_like("pipe:") != pipes_at_setup && ps_time_ms() < deadline)
        poll(NULL, 0, 10);
    assert_int_equal(open_fds_like("pipe:"), pipes_at_setup);
}

static void test_a_destroyed_client_leaves_no_region_open(void **state)
{
    (void)state;
    static float init[N], got[N];
    ps_errbuf_t err;
    ps_client_t *c = client("leak", 0, 1, PS__DTYPE__F32);
    init_table(c, init);
    assert_int_equal(ps_client_pull(c, 0, 0, 0, got), PS_OK);
    assert_int_equal(ps_client_wait(c, &err), PS_OK);
    assert_true(ps_client_shm_requests(c) >= 1);
    ps_client_destroy(&c);
    /* the shard (a thread here) closed its copy once it mapped the region */
    assert_int_equal(open_fds_like("/memfd:ps-shm"), 0);
}

/* Queues n heartbeats of another peer at the shard's router: the loop
 * then spends a while draining the router, not looking at the doorbells. */
static void flood_router(void *sock, int n)
{
    Ps__Header h;
    ps__header__init(&h);
    h.version = PS_PROTOCOL_VERSION;
    h.op = PS__OP__HEARTBEAT;
    h.job = "flood";
    for (int i = 0; i < n; i++)
        assert_true(ps_wire_send_header(sock, &h, 0) > 0);
    /* their replies, whenever they come, are not read */
}

/* Two pushes of a chunk in flight: the first takes the region and the
 * doorbell, the second (its slot busy) goes over ZeroMQ with its values,
 * and the shard must still take them in clock order (else the second is
 * AHEAD: ERANGE). Another peer's flood keeps the shard's loop in its
 * router, where the second would overtake the first. */
static void test_a_workers_requests_keep_their_order_across_the_two_paths(void **state)
{
    (void)state;
    static float init[N], grad[N], got[N];
    for (int i = 0; i < N; i++)
        grad[i] = 1.0f / 1024;
    ps_errbuf_t err;
    ps_client_t *c = client_asp("order", 0, 1, PS__DTYPE__F32, 4);
    init_table(c, init);
    void *ctx = zmq_ctx_new();
    void *flood = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(flood, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_connect(flood, ps_server_endpoint(server.srv)), 0);
    for (int64_t clock = 0; clock < 60; clock += 2) {
        flood_router(flood, 300);
        assert_int_equal(ps_client_push(c, 0, clock, grad, 1, 1.0f, 0), PS_OK);
        assert_int_equal(ps_client_push(c, 0, clock + 1, grad, 1, 1.0f, 0), PS_OK);
        if (ps_client_wait(c, &err) != PS_OK)
            fail_msg("pushes of clocks %lld and %lld: %s", (long long)clock, (long long)clock + 1,
                     err.msg);
    }
    assert_true(ps_client_bell_requests(c) >= 30);
    assert_int_equal(ps_client_pull(c, 0, 60, 0, got), PS_OK);
    assert_int_equal(ps_client_wait(c, &err), PS_OK);
    for (int i = 0; i < N; i++)
        assert_true(fabsf(got[i] + 60.0f / 1024) < 1e-5f);
    ps_client_destroy(&c);
    zmq_close(flood);
    zmq_ctx_term(ctx);
}

static void test_the_doorbell_carries_only_its_workers_region_requests(void **state)
{
    (void)state;
    static float init[N], grad[N], got[N];
    for (int i = 0; i < N; i++)
        init[i] = 1.0f, grad[i] = 0.5f;
    ps_errbuf_t err;
    /* the shard's thread closes the pipes of the tests before this one
     * as it reads their end-of-file: counted now, they would be gone by
     * the end */
    wait_pipes_back();
    ps_client_opts_t o = {.job = "bell", .rank = 0, .world = 1, .timeout_ms = 300, .retries = 3};
    ps_client_t *c = ps_client_new(ps_server_endpoint(server.srv), &o, &err);
    assert_non_null(c);
    assert_int_equal(ps_client_hello(c, NULL, &err), PS_OK);
    assert_true(c->shm && c->shm[0].bell_on);
    init_table(c, init);
    push_pull_all(c, 0, grad, got, 0.5f); /* SGD, lr 1, one sample */
    uint64_t rung = ps_client_bell_requests(c);
    assert_true(rung >= 1);
    /* what only the router may carry: another rank's request, a request
     * that does not use the region, a control op */
    Ps__Header h;
    pscl_header_init(c, &h, PS__OP__PULL);
    h.flags = PS_FLAG_SHM;
    h.rank = 1;
    assert_int_equal(ring_forged(c, &h), PS_EPERM);
    pscl_header_init(c, &h, PS__OP__PULL);
    assert_int_equal(ring_forged(c, &h), PS_EPERM);
    pscl_header_init(c, &h, PS__OP__SHUTDOWN);
    h.flags = PS_FLAG_SHM;
    assert_int_equal(ring_forged(c, &h), PS_EPERM);
    /* the shard serves on, through the doorbell */
    push_pull_all(c, 1, grad, got, 0.0f);
    assert_true(ps_client_bell_requests(c) > rung);
    /* garbage: the shard closes the doorbell; what was rung after it is
     * lost there and resent over TCP at its deadline, applied once */
    uint8_t zero[4] = {0};
    assert_int_equal(write(c->shm[0].bell[1], zero, sizeof zero), (ssize_t)sizeof zero);
    push_pull_all(c, 2, grad, got, -0.5f);
    push_pull_all(c, 3, grad, got, -1.0f);
    /* the client heard the shard let go (end-of-file on the reply pipe);
     * a HELLO again opens the same pipes again. (Table 0's slots stay
     * busy with the request the shard dropped with the garbage, so its
     * chunk stays on TCP: a fresh table shows the doorbell.) */
    assert_false(c->shm[0].bell_on);
    assert_int_equal(ps_client_hello(c, NULL, &err), PS_OK);
    assert_true(c->shm[0].bell_on);
    rung = ps_client_bell_requests(c);
    uint64_t shape[1] = {N};
    ps_optim_spec_t sgd = {.kind = PS_OPTIM_SGD, .lr = 1.0};
    assert_int_equal(ps_client_init_table(c, 1, "t1", shape, 1, &sgd, init, &err), PS_OK);
    assert_int_equal(ps_client_pull(c, 1, 0, 0, got), PS_OK);
    assert_int_equal(ps_client_wait(c, &err), PS_OK);
    assert_true(ps_client_bell_requests(c) > rung);
    push_pull_all(c, 4, grad, got, -1.5f);
    /* garbage up the reply pipe: the client lets go (closes both pipes),
     * resends what used the region, and offers new pipes at its next HELLO */
    int forged_answer = ps_bell_open(getpid(), c->shm[0].answer_fd, 1, &err);
    assert_true(forged_answer >= 0);
    assert_int_equal(write(forged_answer, zero, sizeof zero), (ssize_t)sizeof zero);
    close(forged_answer);
    push_pull_all(c, 5, grad, got, -2.0f);
    assert_false(c->shm[0].bell_on);
    assert_int_equal(c->shm[0].answer_fd, -1);
    assert_int_equal(ps_client_hello(c, NULL, &err), PS_OK);
    assert_true(c->shm[0].bell_on && c->shm[0].answer_fd >= 0);
    rung = ps_client_bell_requests(c);
    assert_int_equal(ps_client_init_table(c, 2, "t2", shape, 1, &sgd, init, &err), PS_OK);
    assert_int_equal(ps_client_pull(c, 2, 0, 0, got), PS_OK);
    assert_int_equal(ps_client_wait(c, &err), PS_OK);
    assert_true(ps_client_bell_requests(c) > rung);
    push_pull_all(c, 6, grad, got, -2.5f);
    /* the client lets go of its region and pipes; the shard (a thread
     * here, which closed its copy of the memfd once it mapped it) of the
     * doorbell it closed */
    ps_client_destroy(&c);
    assert_int_equal(open_fds_like("/memfd:ps-shm"), 0);
    /* the shard's thread closes its three once it reads end-of-file */
    wait_pipes_back();
}

/* A push to a shard that is gone stays queued in ZeroMQ, to be sent from
 * the caller's buffer when the shard is back: the buffer is freed by then
 * (as Python frees a gradient's tensor), so a reset lets go of it. */
static void test_a_reset_lets_go_of_buffers_queued_for_a_shard_that_is_gone(void **state)
{
    (void)state;
    char dir[] = "/tmp/ps-test-gone.XXXXXX";
    assert_non_null(mkdtemp(dir));
    ps_server_config_t cfg;
    ps_test_server_config(&cfg, 0, 1);
    snprintf(cfg.state_dir, sizeof cfg.state_dir, "%s", dir); /* back with the job */
    /* a port below the ephemeral range: the client's reconnects to it
     * while it is closed can never connect to themselves, and nothing
     * takes it before the shard is back */
    ps_test_server_t gone;
    int started = -1;
    for (int i = 0; i < 64 && started != 0; i++) {
        cfg.port = 20000 + ((int)getpid() * 31 + i * 997) % 12000;
        started = ps_test_server_start_config(&gone, &cfg);
    }
    assert_int_equal(started, 0);
    char ep[128];
    snprintf(ep, sizeof ep, "%s", ps_server_endpoint(gone.srv));
    ps_client_opts_t o = {.job = "gone", .world = 1, .timeout_ms = 200, .dtype = PS__DTYPE__F32};
    ps_errbuf_t err;
    ps_client_t *c = ps_client_new(ep, &o, &err);
    assert_non_null(c);
    ps_client_set_same_host(c, false); /* values zero-copy, over TCP */
    assert_int_equal(ps_client_hello(c, NULL, &err), PS_OK);
    float *grad = calloc(N, sizeof *grad);
    init_table(c, grad);
    /* it stops as on SIGTERM: the job's state is written, to come back with */
    ps_server_stop(gone.srv);
    pthread_join(gone.thread, NULL);
    assert_int_equal(ps_server_checkpoint_all(gone.srv), 0);
    ps_server_destroy(&gone.srv);
    /* a push written before the client saw the close dies with the
     * connection; the next ones wait for the shard to come back */
    bool held = false;
    for (int64_t clock = 0; clock < 50 && !held; clock++) {
        assert_int_equal(ps_client_push(c, 0, clock, grad, 1, 1.0f, 0), PS_OK);
        assert_int_not_equal(ps_client_wait(c, &err), PS_OK);
        held = ps_client_buffers_held(c) > 0;
        if (!held)
            ps_client_reset(c);
    }
    assert_true(held);
    c->opts.timeout_ms = 30000; /* the reset's own wait (ASan, Valgrind) */
    ps_client_reset(c);
    assert_int_equal(ps_client_buffers_held(c), 0);
    free(grad); /* ASan: a send from it after this is a use after free */
    /* the shard is back where it was: the client rejoins on its new
     * socket, and what the old one queued is never sent */
    assert_int_equal(ps_test_server_start_config(&gone, &cfg), 0);
    int64_t at;
    assert_int_equal(ps_client_hello(c, &at, &err), PS_OK);
    static float ones[N], got[N];
    for (size_t i = 0; i < N; i++)
        ones[i] = 1.0f;
    assert_int_equal(ps_client_push_pull(c, 0, at, ones, 1, 1.0f, 0, got), PS_OK);
    assert_int_equal(ps_client_wait(c, &err), PS_OK);
    assert_float_equal(got[0], -1.0f, 0.0f); /* SGD, lr 1, from zeros */
    assert_float_equal(got[N - 1], -1.0f, 0.0f);
    ps_client_destroy(&c);
    ps_test_server_stop(&gone);
    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    assert_int_equal(system(rm), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp16_and_bf16_pushes_update_fp32_master_weights),
        cmocka_unit_test(test_non_finite_push_is_refused_and_server_serves_on),
        cmocka_unit_test(test_bsp_overflow_on_one_worker_skips_the_step_for_all),
        cmocka_unit_test(test_a_rejoined_worker_replays_its_push_of_the_round),
        cmocka_unit_test(test_wait_for_one_table),
        cmocka_unit_test(test_resume_points_survive_a_rollback),
        cmocka_unit_test(test_a_raced_rollback_is_seen_and_recovered),
        cmocka_unit_test(test_two_sparse_pulls_in_flight_keep_their_own_keys),
        cmocka_unit_test(test_a_pull_of_a_clock_gone_by_is_stale_dense_and_sparse),
        cmocka_unit_test(test_a_destroyed_client_leaves_no_region_open),
        cmocka_unit_test(test_a_workers_requests_keep_their_order_across_the_two_paths),
        cmocka_unit_test(test_the_doorbell_carries_only_its_workers_region_requests),
        cmocka_unit_test(test_a_reset_lets_go_of_buffers_queued_for_a_shard_that_is_gone),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
