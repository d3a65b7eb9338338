/* test_job_identity.c - one job, one identity, one configuration, against
 * real server cores on threads: a rank has one live owner; workers whose
 * job-defining options or world differ are refused, naming the difference;
 * a finished job refuses its late workers; shards that hold different jobs
 * of one name are never accepted together; a worker waiting for a shard
 * that is not up yet keeps its place on the others; BYE is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ps_client.h"
#include "ps_log.h"
#include "ps_test_server.h"
#include "ps_time.h"
#include "ps_wire.h"

#define N 10000 /* above PS_SHARD_MIN_SPLIT * 2: a chunk on each of two shards */

static const char *const FP_A = "optimizer=sgd\nlr=0.02\nseed=1\n";
static const char *const FP_B = "optimizer=adam\nlr=0.5\nseed=1\n";

static ps_client_t *client_for(const char *endpoints, const char *job, uint32_t rank,
                               uint32_t world, const char *fingerprint, int64_t timeout_ms)
{
    ps_client_opts_t o = {.job = job, .rank = rank, .world = world, .timeout_ms = timeout_ms,
                          .dtype = PS__DTYPE__F32, .heartbeat_ms = 50,
                          .fingerprint = fingerprint};
    ps_errbuf_t err;
    ps_client_t *c = ps_client_new(endpoints, &o, &err);
    assert_non_null(c);
    return c;
}

static void init_table(ps_client_t *c)
{
    uint64_t shape[1] = {N};
    float init[N] = {0};
    ps_optim_spec_t sgd = {.kind = PS_OPTIM_SGD, .lr = 1.0};
    ps_errbuf_t err;
    assert_int_equal(ps_client_init_table(c, 0, "w", shape, 1, &sgd, init, &err), PS_OK);
}

/* One BSP step of a world-1 job at clock. */
static void step(ps_client_t *c, int64_t clock)
{
    float grad[N], params[N];
    for (int i = 0; i < N; i++)
        grad[i] = 0.01f * (float)(i + 1);
    ps_errbuf_t err;
    assert_int_equal(ps_client_push_pull(c, 0, clock, grad, 1, 1.0f, 0, params), PS_OK);
    assert_int_equal(ps_client_wait(c, &err), PS_OK);
}

static void start_assembling(ps_test_server_t *ts, int shard, int shards, int64_t port,
                             int64_t assemble_ms)
{
    ps_server_config_t cfg;
    ps_test_server_config(&cfg, shard, shards);
    cfg.heartbeat_timeout_ms = 400;
    cfg.assemble_timeout_ms = assemble_ms;
    cfg.port = port;
    assert_int_equal(ps_test_server_start_config(ts, &cfg), 0);
}

static void start(ps_test_server_t *ts, int shard, int shards, int64_t port)
{
    start_assembling(ts, shard, shards, port, 300000);
}

static void test_a_second_live_owner_of_a_rank_is_refused(void **state)
{
    (void)state;
    ps_test_server_t s;
    start(&s, 0, 1, 0);
    const char *ep = ps_server_endpoint(s.srv);
    ps_client_t *first = client_for(ep, "owner", 0, 2, FP_A, 5000);
    ps_errbuf_t err;
    assert_int_equal(ps_client_hello(first, NULL, &err), PS_OK);
    /* the first keeps heartbeating: a second process claiming rank 0 is
     * refused for as long as it tries */
    ps_client_t *second = client_for(ep, "owner", 0, 2, FP_A, 1500);
    int64_t t0 = ps_time_ms();
    assert_int_equal(ps_client_hello(second, NULL, &err), PS_EAGAIN);
    assert_true(ps_time_ms() - t0 >= 1500);
    assert_non_null(strstr(err.msg, "worker 0 of job 'owner' is held by a live process"));
    ps_client_destroy(&second);
    ps_client_destroy(&first);
    ps_test_server_stop(&s);
}

static void test_a_dead_owner_is_taken_over(void **state)
{
    (void)state;
    ps_test_server_t s;
    start(&s, 0, 1, 0);
    const char *ep = ps_server_endpoint(s.srv);
    ps_client_t *first = client_for(ep, "takeover", 0, 1, FP_A, 5000);
    ps_errbuf_t err;
    assert_int_equal(ps_client_hello(first, NULL, &err), PS_OK);
    init_table(first);
    step(first, 0);
    ps_client_stop_heartbeats(first);
    /* the old process went silent: the new one waits until it is declared
     * dead (400 ms), then takes over at the job's clock */
    ps_client_t *second = client_for(ep, "takeover", 0, 1, FP_A, 5000);
    int64_t clock = -1;
    assert_int_equal(ps_client_hello(second, &clock, &err), PS_OK);
    assert_int_equal(clock, 1);
    /* the old one is no longer the owner */
    float params[N];
    assert_int_equal(ps_client_pull(first, 0, 1, 0, params), PS_OK);
    assert_int_equal(ps_client_wait(first, &err), PS_EDEAD);
    assert_non_null(strstr(err.msg, "taken over"));
    ps_client_destroy(&first);
    ps_client_destroy(&second);
    ps_test_server_stop(&s);
}

static void test_a_different_configuration_is_refused_naming_the_option(void **state)
{
    (void)state;
    ps_test_server_t s;
    start(&s, 0, 1, 0);
    const char *ep = ps_server_endpoint(s.srv);
    ps_client_t *a = client_for(ep, "config", 0, 2, FP_A, 5000);
    ps_errbuf_t err;
    assert_int_equal(ps_client_hello(a, NULL, &err), PS_OK);
    ps_client_t *b = client_for(ep, "config", 1, 2, FP_B, 5000);
    assert_int_equal(ps_client_hello(b, NULL, &err), PS_ECONFLICT);
    assert_non_null(strstr(err.msg, "optimizer"));
    assert_non_null(strstr(err.msg, "sgd"));
    assert_non_null(strstr(err.msg, "adam"));
    ps_client_destroy(&b);
    ps_client_destroy(&a);
    ps_test_server_stop(&s);
}

static void test_a_different_world_is_refused(void **state)
{
    (void)state;
    ps_test_server_t s;
    start(&s, 0, 1, 0);
    const char *ep = ps_server_endpoint(s.srv);
    ps_client_t *a = client_for(ep, "world", 0, 2, FP_A, 5000);
    ps_errbuf_t err;
    assert_int_equal(ps_client_hello(a, NULL, &err), PS_OK);
    ps_client_t *b = client_for(ep, "world", 1, 3, FP_A, 5000);
    assert_int_equal(ps_client_hello(b, NULL, &err), PS_ECONFLICT);
    assert_non_null(strstr(err.msg, "has 2 workers"));
    ps_client_destroy(&b);
    ps_client_destroy(&a);
    ps_test_server_stop(&s);
}

static void test_a_finished_job_refuses_a_late_worker(void **state)
{
    (void)state;
    ps_test_server_t s;
    start(&s, 0, 1, 0);
    const char *ep = ps_server_endpoint(s.srv);
    ps_client_t *a = client_for(ep, "finished", 0, 1, FP_A, 5000);
    ps_errbuf_t err;
    assert_int_equal(ps_client_hello(a, NULL, &err), PS_OK);
    init_table(a);
    step(a, 0);
    assert_int_equal(ps_client_done(a, &err), PS_OK);
    ps_client_stop_heartbeats(a);
    assert_int_equal(ps_client_bye(a, &err), PS_OK);
    ps_client_destroy(&a);
    ps_client_t *late = client_for(ep, "finished", 0, 1, FP_A, 5000);
    assert_int_equal(ps_client_hello(late, NULL, &err), PS_EFINISHED);
    assert_non_null(strstr(err.msg, "finished at clock 1"));
    ps_client_destroy(&late);
    /* another configuration under that name is another job */
    ps_client_t *other = client_for(ep, "finished", 0, 1, FP_B, 5000);
    assert_int_equal(ps_client_hello(other, NULL, &err), PS_OK);
    ps_client_destroy(&other);
    ps_test_server_stop(&s);
}

static void test_shards_holding_different_jobs_are_refused(void **state)
{
    (void)state;
    ps_test_server_t s0, s1;
    start(&s0, 0, 2, 0);
    start(&s1, 1, 2, 0);
    char eps[512];
    snprintf(eps, sizeof eps, "%s,%s", ps_server_endpoint(s0.srv), ps_server_endpoint(s1.srv));
    ps_client_t *a = client_for(eps, "split", 0, 1, FP_A, 5000);
    ps_errbuf_t err;
    assert_int_equal(ps_client_hello(a, NULL, &err), PS_OK);
    init_table(a);
    for (int64_t k = 0; k < 3; k++)
        step(a, k);
    ps_client_destroy(&a);
    /* shard 0 comes back empty (no state directory); shard 1 still holds
     * the job at clock 3 */
    ps_test_server_stop(&s0);
    start(&s0, 0, 2, 0);
    snprintf(eps, sizeof eps, "%s,%s", ps_server_endpoint(s0.srv), ps_server_endpoint(s1.srv));
    ps_client_t *b = client_for(eps, "split", 0, 1, FP_A, 5000);
    assert_int_equal(ps_client_hello(b, NULL, &err), PS_ECONFLICT);
    assert_non_null(strstr(err.msg, "shard 1 holds job 'split'"));
    assert_non_null(strstr(err.msg, "at clock 3"));
    assert_non_null(strstr(err.msg, "different jobs"));
    ps_client_destroy(&b);
    ps_test_server_stop(&s1);
    ps_test_server_stop(&s0);
}

static void test_a_late_rank_joins_the_same_job(void **state)
{
    (void)state;
    ps_test_server_t s;
    start(&s, 0, 1, 0);
    const char *ep = ps_server_endpoint(s.srv);
    ps_client_t *r0 = client_for(ep, "late-rank", 0, 2, FP_A, 5000);
    ps_errbuf_t err;
    assert_int_equal(ps_client_hello(r0, NULL, &err), PS_OK);
    init_table(r0);
    /* rank 1 loads its data slowly: 3 heartbeat timeouts (the stimulus) */
    poll(NULL, 0, 1200);
    ps_client_t *r1 = client_for(ep, "late-rank", 1, 2, FP_A, 5000);
    int64_t clock = -1;
    assert_int_equal(ps_client_hello(r1, &clock, &err), PS_OK);
    assert_int_equal(clock, 0);
    init_table(r1);
    /* one BSP round of both: it completes only if they are in one job */
    float grad[N] = {0}, p0[N], p1[N];
    assert_int_equal(ps_client_push_pull(r0, 0, 0, grad, 1, 1.0f, 0, p0), PS_OK);
    assert_int_equal(ps_client_push_pull(r1, 0, 0, grad, 1, 1.0f, 0, p1), PS_OK);
    assert_int_equal(ps_client_wait(r0, &err), PS_OK);
    assert_int_equal(ps_client_wait(r1, &err), PS_OK);
    ps_client_destroy(&r1);
    ps_client_destroy(&r0);
    ps_test_server_stop(&s);
}

static void test_a_world_that_never_assembles_fails_loudly(void **state)
{
    (void)state;
    ps_test_server_t s;
    start_assembling(&s, 0, 1, 0, 1000);
    ps_client_t *r0 = client_for(ps_server_endpoint(s.srv), "alone", 0, 2, FP_A, 10000);
    ps_errbuf_t err;
    assert_int_equal(ps_client_hello(r0, NULL, &err), PS_OK);
    init_table(r0);
    float grad[N] = {0}, params[N];
    int64_t t0 = ps_time_ms();
    assert_int_equal(ps_client_push_pull(r0, 0, 0, grad, 1, 1.0f, 0, params), PS_OK);
    assert_int_equal(ps_client_wait(r0, &err), PS_EWORLD);
    assert_true(ps_time_ms() - t0 < 5000);
    assert_non_null(strstr(err.msg, "worker 1 of job 'alone' never joined"));
    ps_client_destroy(&r0);
    ps_test_server_stop(&s);
}

static int port_of(const ps_test_server_t *ts)
{
    const char *ep = ps_server_endpoint(ts->srv);
    return atoi(strrchr(ep, ':') + 1);
}

/* Shard 0 killed before its first checkpoint comes back empty: with no
 * round done anywhere it takes the job back under its id; once a round was
 * done, the job cannot be made whole and the worker is told so. */
static void test_shard0_lost_before_any_round(void **state)
{
    (void)state;
    ps_test_server_t s0, s1;
    start(&s0, 0, 2, 0);
    start(&s1, 1, 2, 0);
    int port0 = port_of(&s0);
    char eps[512];
    snprintf(eps, sizeof eps, "%s,%s", ps_server_endpoint(s0.srv), ps_server_endpoint(s1.srv));
    ps_client_t *a = client_for(eps, "early", 0, 1, FP_A, 5000);
    ps_errbuf_t err;
    assert_int_equal(ps_client_hello(a, NULL, &err), PS_OK);
    init_table(a);
    ps_test_server_stop(&s0);
    start(&s0, 0, 2, port0);
    int64_t clock = -1;
    assert_int_equal(ps_client_recover(a, true, &clock, &err), PS_OK);
    assert_int_equal(clock, 0);
    init_table(a);
    step(a, 0);
    /* now a round was done: an empty shard 0 cannot take the job back */
    ps_test_server_stop(&s0);
    start(&s0, 0, 2, port0);
    assert_int_equal(ps_client_recover(a, true, &clock, &err), PS_ENOJOB);
    assert_non_null(strstr(err.msg, "shard 0 holds no state of job 'early'"));
    ps_client_destroy(&a);
    ps_test_server_stop(&s1);
    ps_test_server_stop(&s0);
}

/* A port nobody listens on now (bound, read, released). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

typedef struct {
    ps_client_t *c;
    int rc;
    ps_errbuf_t err;
} hello_t;

static void *hello_thread(void *arg)
{
    hello_t *h = arg;
    h->rc = ps_client_hello(h->c, NULL, &h->err);
    return NULL;
}

static void test_a_worker_waiting_for_a_shard_keeps_its_place(void **state)
{
    (void)state;
    ps_test_server_t s0, s1;
    start(&s0, 0, 2, 0);
    int port = free_port();
    char eps[512];
    snprintf(eps, sizeof eps, "%s,tcp://127.0.0.1:%d", ps_server_endpoint(s0.srv), port);
    hello_t h = {.c = client_for(eps, "late-shard", 0, 1, FP_A, 10000)};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, hello_thread, &h), 0);
    /* shard 0 accepted the worker; shard 1 comes up after 3 of shard 0's
     * heartbeat timeouts: the stimulus under test, not a wait for a result */
    poll(NULL, 0, 1200);
    start(&s1, 1, 2, port);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(h.rc, PS_OK);
    /* and shard 0 never declared it dead: the job goes on */
    init_table(h.c);
    step(h.c, 0);
    ps_client_destroy(&h.c);
    ps_test_server_stop(&s1);
    ps_test_server_stop(&s0);
}

static void test_bye_is_bounded(void **state)
{
    (void)state;
    ps_test_server_t s;
    start(&s, 0, 1, 0);
    ps_client_t *c = client_for(ps_server_endpoint(s.srv), "bye", 0, 1, FP_A, 60000);
    ps_errbuf_t err;
    assert_int_equal(ps_client_hello(c, NULL, &err), PS_OK);
    ps_client_stop_heartbeats(c);
    ps_test_server_stop(&s);
    int64_t t0 = ps_time_ms();
    assert_int_not_equal(ps_client_bye(c, &err), PS_OK);
    int64_t took = ps_time_ms() - t0;
    assert_true(took < PS_CLIENT_BYE_TIMEOUT_MS + 1500);
    ps_client_destroy(&c);
}

int main(void)
{
    ps_log_init("test", PS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_second_live_owner_of_a_rank_is_refused),
        cmocka_unit_test(test_a_dead_owner_is_taken_over),
        cmocka_unit_test(test_a_different_configuration_is_refused_naming_the_option),
        cmocka_unit_test(test_a_different_world_is_refused),
        cmocka_unit_test(test_a_finished_job_refuses_a_late_worker),
        cmocka_unit_test(test_shards_holding_different_jobs_are_refused),
        cmocka_unit_test(test_shard0_lost_before_any_round),
        cmocka_unit_test(test_a_late_rank_joins_the_same_job),
        cmocka_unit_test(test_a_world_that_never_assembles_fails_loudly),
        cmocka_unit_test(test_a_worker_waiting_for_a_shard_keeps_its_place),
        cmocka_unit_test(test_bye_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
