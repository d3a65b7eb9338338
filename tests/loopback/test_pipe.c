/* test_pipe.c - the links between pipeline stages (worker/ps_pipe.c) over
 * 127.0.0.1: two stages of one process (stage 0 on a thread while they
 * meet) find each other through a directory and pass messages in order; a
 * message out of step is refused; a wait past its deadline names the
 * peer; with CURVE a sender whose key is not the neighbour's is refused by
 * the ZAP handler, while the neighbour gets through. Every test runs
 * twice: over ZeroMQ only, and with the same-host FIFOs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "ps_pipe.h"

typedef struct {
    ps_pipe_opts_t o;
    ps_pipe_t *p;
    ps_errbuf_t err;
    char pub[41], sec[41];
} stage_t;

static char dir[64];
/* the run of the group: stages on one host use FIFOs, or ZeroMQ only */
static bool same_host;

static void *open_thread(void *arg)
{
    stage_t *s = arg;
    s->p = ps_pipe_new(&s->o, &s->err);
    return NULL;
}

static void init_stage(stage_t *s, uint32_t stage, int64_t timeout_ms, bool curve)
{
    memset(s, 0, sizeof *s);
    if (curve)
        assert_int_equal(zmq_curve_keypair(s->pub, s->sec), 0);
    s->o = (ps_pipe_opts_t){dir,
                            "t",
                            "127.0.0.1",
                            stage,
                            stage,
                            2,
                            0,
                            timeout_ms,
                            NULL,
                            curve ? s->pub : NULL,
                            curve ? s->sec : NULL,
                            same_host,
                            0,
                            0,
                            0};
}

/* Stage 0 (on a thread) and stage 1 meet, with a step of `messages`
 * messages of `bytes` each way (0: unsaid). */
static void open_sized(stage_t *a, stage_t *b, int64_t timeout_ms, bool curve, uint32_t messages,
                       uint64_t bytes)
{
    snprintf(dir, sizeof dir, "/tmp/ps-test-pipe.XXXXXX");
    assert_non_null(mkdtemp(dir));
    init_stage(a, 0, timeout_ms, curve);
    init_stage(b, 1, timeout_ms, curve);
    a->o.step_messages = b->o.step_messages = messages;
    a->o.message_bytes_to_next = b->o.message_bytes_to_prev = bytes;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, open_thread, a), 0);
    b->p = ps_pipe_new(&b->o, &b->err);
    pthread_join(t, NULL);
    if (!a->p || !b->p)
        fprintf(stderr, "stage 0: %s; stage 1: %s\n", a->err.msg, b->err.msg);
    assert_non_null(a->p);
    assert_non_null(b->p);
}

static void open_pair(stage_t *a, stage_t *b, int64_t timeout_ms, bool curve)
{
    open_sized(a, b, timeout_ms, curve, 0, 0);
}

static void close_pair(stage_t *a, stage_t *b)
{
    ps_pipe_destroy(&a->p);
    ps_pipe_destroy(&b->p);
    rmdir(dir); /* empty: each stage removes its files */
}

static void test_messages_pass_in_order(void **state)
{
    (void)state;
    stage_t a, b;
    open_pair(&a, &b, 5000, false);
    ps_errbuf_t err = {0};
    const float x[3] = {1, 2, 3};
    float got[3] = {0};
    for (uint32_t m = 0; m < 2; m++) {
        ps_pipe_msg_t msg = {PS_PIPE_FWD, m, 5, 3, 0};
        assert_int_equal(ps_pipe_send(a.p, &msg, x, 3, &err), PS_OK);
    }
    for (uint32_t m = 0; m < 2; m++) {
        ps_pipe_msg_t want = {PS_PIPE_FWD, m, 5, 3, 0}, h;
        assert_int_equal(ps_pipe_recv(b.p, &want, got, 3, &h, &err), PS_OK);
        assert_true(got[0] == 1 && got[2] == 3);
        assert_int_equal(h.n_samples, 3);
    }
    ps_pipe_msg_t back = {PS_PIPE_BWD, 0, 5, 3, 2.5}, h;
    assert_int_equal(ps_pipe_send(b.p, &back, x, 3, &err), PS_OK);
    assert_int_equal(ps_pipe_recv(a.p, &back, got, 3, &h, &err), PS_OK);
    assert_true(h.loss == 2.5);
    /* out of step: clock 6 micro-batch 1 where 6/0 is awaited */
    ps_pipe_msg_t ahead = {PS_PIPE_FWD, 1, 6, 3, 0}, want = {PS_PIPE_FWD, 0, 6, 3, 0};
    assert_int_equal(ps_pipe_send(a.p, &ahead, x, 3, &err), PS_OK);
    assert_int_equal(ps_pipe_recv(b.p, &want, got, 3, &h, &err), PS_EPROTO);
    assert_non_null(strstr(err.msg, "out of step"));
    close_pair(&a, &b);
}

static void test_wait_past_deadline_names_the_peer(void **state)
{
    (void)state;
    stage_t a, b;
    open_pair(&a, &b, 300, false);
    ps_errbuf_t err = {0};
    float got[1];
    ps_pipe_msg_t want = {PS_PIPE_FWD, 0, 7, 1, 0}, h;
    assert_int_equal(ps_pipe_recv(b.p, &want, got, 1, &h, &err), PS_ETIME);
    assert_non_null(strstr(err.msg, "worker 1 (replica 0, stage 1): waiting for activations of "
                                    "clock 7 micro-batch 0: the stage before stage 0 (rank 0, "));
    assert_non_null(strstr(err.msg, "did not answer within 300 ms"));
    close_pair(&a, &b);
}

/* A sync round: an ABORT ends the receiver's wait for activations with
 * PS_ESTALE naming the stage; what the abandoned step left in the queue
 * (activations, the round's own ABORT) is dropped before the round's
 * SYNC_UP, whose clocks arrive whole; the one announced is not told again. */
static void test_sync_round_drops_the_abandoned_step(void **state)
{
    (void)state;
    stage_t a, b;
    open_pair(&a, &b, 2000, false);
    ps_errbuf_t err = {0};
    const float x[2] = {1, 2};
    float got[2];
    ps_pipe_msg_t h;
    /* stage 1 recovers: stage 0, waiting for gradients, hears of it */
    assert_int_equal(ps_pipe_begin_round(b.p, 1, true, &err), PS_OK);
    ps_pipe_msg_t want_bwd = {PS_PIPE_BWD, 0, 9, 2, 0};
    assert_int_equal(ps_pipe_recv(a.p, &want_bwd, got, 2, &h, &err), PS_ESTALE);
    assert_non_null(
        strstr(err.msg, "the stage after (stage 1, rank 1) is recovering (sync round 1)"));
    assert_int_equal(ps_pipe_announced_round(a.p), 1);
    /* stage 0 had sent activations of the step; then joins round 1: stage 1
     * told it, so no ABORT goes back (stage 0 has no stage before) */
    ps_pipe_msg_t fwd = {PS_PIPE_FWD, 0, 9, 2, 0};
    assert_int_equal(ps_pipe_send(a.p, &fwd, x, 2, &err), PS_OK);
    assert_int_equal(ps_pipe_begin_round(a.p, 1, true, &err), PS_OK);
    assert_int_equal(ps_pipe_announced_round(a.p), 0);
    const int64_t clocks[3] = {200, 180, 160};
    ps_pipe_msg_t up = {PS_PIPE_SYNC_UP, 1, 200, PS_PIPE_RECOVERING, 0};
    assert_int_equal(ps_pipe_sync_send(a.p, &up, clocks, 3, &err), PS_OK);
    int64_t in[8];
    size_t n = 0;
    assert_int_equal(ps_pipe_sync_recv(b.p, &up, 2000, &h, in, 8, &n, &err), PS_OK);
    assert_int_equal(n, 3);
    assert_true(in[0] == 200 && in[2] == 160);
    assert_int_equal(h.n_samples, PS_PIPE_RECOVERING);
    /* back down; a sync message of another round is out of step */
    ps_pipe_msg_t down = {PS_PIPE_SYNC_DOWN, 1, 180, PS_PIPE_RECOVERING, 0};
    assert_int_equal(ps_pipe_sync_send(b.p, &down, NULL, 0, &err), PS_OK);
    assert_int_equal(ps_pipe_sync_recv(a.p, &down, 2000, &h, in, 8, &n, &err), PS_OK);
    assert_int_equal(h.clock, 180);
    assert_int_equal(n, 0);
    ps_pipe_msg_t stray = {PS_PIPE_SYNC_UP, 7, 0, 0, 0};
    assert_int_equal(ps_pipe_sync_send(a.p, &stray, NULL, 0, &err), PS_OK);
    assert_int_equal(ps_pipe_sync_recv(b.p, &up, 2000, &h, in, 8, &n, &err), PS_EPROTO);
    /* a round's wait has its own deadline, and names it */
    assert_int_equal(ps_pipe_sync_recv(a.p, &down, 200, &h, in, 8, &n, &err), PS_ETIME);
    assert_non_null(strstr(err.msg, "did not answer within 200 ms"));
    close_pair(&a, &b);
}

typedef struct {
    ps_pipe_t *p;
    const float *x;
    float *got;
    size_t n;        /* floats a message */
    uint32_t n_msgs; /* each way */
    int rc;
    ps_errbuf_t err;
} stage0_job_t;

/* Stage 0 as a trainer runs it: its activations on, then it waits for their
 * gradients. */
static void *stage0_thread(void *arg)
{
    stage0_job_t *j = arg;
    ps_pipe_msg_t h;
    for (uint32_t m = 0; j->rc == PS_OK && m < j->n_msgs; m++) {
        ps_pipe_msg_t fwd = {PS_PIPE_FWD, m, 3, 1, 0};
        j->rc = ps_pipe_send(j->p, &fwd, j->x + (size_t)m * j->n, j->n, &j->err);
    }
    for (uint32_t m = 0; j->rc == PS_OK && m < j->n_msgs; m++) {
        ps_pipe_msg_t bwd = {PS_PIPE_BWD, m, 3, 1, 0};
        j->rc = ps_pipe_recv(j->p, &bwd, j->got + (size_t)m * j->n, j->n, &h, &j->err);
    }
    return NULL;
}

/* 3 MB each way, in 12 messages of 256 KB, three times what the kernel's
 * FIFO holds, sent by the two stages to each other at once: each, waiting
 * for its own to be read, reads what comes its way, so neither waits on
 * the other, and every message arrives whole and in order. Both sides say
 * they took the FIFOs; the stages' files and FIFOs go with them. */
static void test_big_messages_cross_whole_and_in_order(void **state)
{
    (void)state;
    /* ZeroMQ's I/O threads buffer for both; and ThreadSanitizer, checking
     * every ZeroMQ buffer of megabytes against its suppressions, takes
     * minutes there */
    if (!same_host)
        skip();
    stage_t a, b;
    open_pair(&a, &b, 20000, false);
    assert_string_equal(ps_pipe_transport(a.p, true), "fifo");
    assert_string_equal(ps_pipe_transport(b.p, false), "fifo");
    assert_string_equal(ps_pipe_transport(a.p, false), "none");
    assert_string_equal(ps_pipe_transport(b.p, true), "none");
    enum { MSGS = 12, N = 64 << 10, ALL = MSGS * N };
    float *fwd = malloc(ALL * sizeof(float)), *bwd = malloc(ALL * sizeof(float));
    float *got = malloc(ALL * sizeof(float)), *got0 = malloc(ALL * sizeof(float));
    assert_true(fwd && bwd && got && got0);
    for (size_t i = 0; i < ALL; i++) {
        fwd[i] = (float)i;
        bwd[i] = -(float)i;
    }
    ps_errbuf_t err = {0};
    stage0_job_t j = {a.p, fwd, got0, N, MSGS, PS_OK, {0}};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, stage0_thread, &j), 0);
    int rc = PS_OK;
    for (uint32_t m = 0; rc == PS_OK && m < MSGS; m++) {
        ps_pipe_msg_t back = {PS_PIPE_BWD, m, 3, 1, 0};
        rc = ps_pipe_send(b.p, &back, bwd + (size_t)m * N, N, &err);
    }
    ps_pipe_msg_t h;
    for (uint32_t m = 0; rc == PS_OK && m < MSGS; m++) {
        ps_pipe_msg_t want = {PS_PIPE_FWD, m, 3, 1, 0};
        rc = ps_pipe_recv(b.p, &want, got + (size_t)m * N, N, &h, &err);
    }
    pthread_join(t, NULL);
    if (rc != PS_OK || j.rc != PS_OK)
        fail_msg("stage 1: %d (%s); stage 0: %d (%s)", rc, err.msg, j.rc, j.err.msg);
    assert_memory_equal(got, fwd, ALL * sizeof(float));
    assert_memory_equal(got0, bwd, ALL * sizeof(float));
    free(fwd);
    free(bwd);
    free(got);
    free(got0);
    ps_pipe_destroy(&a.p);
    ps_pipe_destroy(&b.p);
    assert_int_equal(rmdir(dir), 0); /* nothing left: files, keys, FIFOs */
}

/* A link takes a FIFO only if a whole step fits in it, counted in the
 * kernel's pages (a message may leave part of its last page empty): then
 * no send of the step waits for the receiver, who may be busy elsewhere.
 * 60 messages of 16 KB are 983040 bytes, under the FIFO's 1 MB, but take
 * 60 x 6 pages and 16 for the sync messages, 376 of its 256; 40 of them
 * fit. One message of 8 MB does not. */
static void test_a_link_takes_a_fifo_only_where_a_step_fits(void **state)
{
    (void)state;
    if (!same_host)
        skip();
    stage_t a, b;
    open_sized(&a, &b, 5000, false, 1, 8 << 20);
    assert_string_equal(ps_pipe_transport(a.p, true), "zeromq");
    assert_string_equal(ps_pipe_transport(b.p, false), "zeromq");
    close_pair(&a, &b);
    open_sized(&a, &b, 5000, false, 60, 16 << 10);
    assert_string_equal(ps_pipe_transport(a.p, true), "zeromq");
    close_pair(&a, &b);
    /* 40 x 16 KB, with no one reading: every send returns at once */
    open_sized(&a, &b, 300, false, 40, 16 << 10);
    assert_string_equal(ps_pipe_transport(a.p, true), "fifo");
    enum { N = 4096, MSGS = 40 };
    static float x[N], got[N];
    ps_errbuf_t err = {0};
    ps_pipe_msg_t h;
    for (uint32_t m = 0; m < MSGS; m++) {
        x[0] = (float)m;
        ps_pipe_msg_t msg = {PS_PIPE_FWD, m, 1, 1, 0};
        if (ps_pipe_send(a.p, &msg, x, N, &err) != PS_OK)
            fail_msg("send %u of %u waited for the receiver: %s", m, MSGS, err.msg);
    }
    for (uint32_t m = 0; m < MSGS; m++) {
        ps_pipe_msg_t want = {PS_PIPE_FWD, m, 1, 1, 0};
        assert_int_equal(ps_pipe_recv(b.p, &want, got, N, &h, &err), PS_OK);
        assert_true(got[0] == (float)m);
    }
    close_pair(&a, &b);
}

/* Garbage in a FIFO (here a header that claims 16 GB of values) is a
 * malformed message at once, not a wait, nor an allocation of its size. */
static void test_garbage_in_a_fifo_is_malformed(void **state)
{
    (void)state;
    if (!same_host)
        skip();
    stage_t a, b;
    open_pair(&a, &b, 5000, false);
    char path[128];
    snprintf(path, sizeof path, "%s/t.rank1.from-before", dir);
    int fd = open(path, O_WRONLY | O_NONBLOCK);
    assert_true(fd >= 0);
    struct {
        uint64_t bytes; /* the length of the message, then its header */
        uint32_t magic, kind, micro, pad;
        int64_t clock;
        uint64_t n_samples;
        double loss;
    } bad = {(uint64_t)1 << 34, 0x50535050u, PS_PIPE_FWD, 0, 0, 1, 1, 0};
    assert_int_equal(write(fd, &bad, sizeof bad), (int)sizeof bad);
    close(fd);
    ps_errbuf_t err = {0};
    float got[1];
    ps_pipe_msg_t want = {PS_PIPE_FWD, 0, 1, 1, 0}, h;
    assert_int_equal(ps_pipe_recv(b.p, &want, got, 1, &h, &err), PS_EPROTO);
    assert_non_null(strstr(err.msg, "malformed"));
    close_pair(&a, &b);
}

/* Stage 1's endpoint for FWD, from its file. */
static void fwd_endpoint(char *ep, size_t cap)
{
    char path[128], bwd[256], key[64];
    snprintf(path, sizeof path, "%s/t.rank1", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "fwd %255s bwd %255s key %63s", ep, bwd, key), 3);
    fclose(f);
    assert_true(strlen(ep) < cap);
}

static void test_curve_refuses_a_stranger(void **state)
{
    (void)state;
    stage_t a, b;
    open_pair(&a, &b, 600, true);
    char ep[256], pub[41], sec[41];
    fwd_endpoint(ep, sizeof ep);
    assert_int_equal(zmq_curve_keypair(pub, sec), 0);
    void *ctx = zmq_ctx_new(), *rogue = zmq_socket(ctx, ZMQ_PUSH);
    int zero = 0;
    zmq_setsockopt(rogue, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(rogue, ZMQ_CURVE_SERVERKEY, b.pub, 40);
    zmq_setsockopt(rogue, ZMQ_CURVE_PUBLICKEY, pub, 40);
    zmq_setsockopt(rogue, ZMQ_CURVE_SECRETKEY, sec, 40);
    assert_int_equal(zmq_connect(rogue, ep), 0);
    char junk[40] = "not from the stage before";
    zmq_send(rogue, junk, sizeof junk, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(rogue, junk, sizeof junk, ZMQ_DONTWAIT);
    /* nothing reaches stage 1: the wait ends at its deadline (a message
     * that got through would be refused as malformed, PS_EPROTO) */
    ps_errbuf_t err = {0};
    float got[1] = {0};
    ps_pipe_msg_t want = {PS_PIPE_FWD, 0, 1, 1, 0}, h;
    assert_int_equal(ps_pipe_recv(b.p, &want, got, 1, &h, &err), PS_ETIME);
    /* the neighbour, over CURVE, does get through */
    const float x[1] = {4};
    assert_int_equal(ps_pipe_send(a.p, &want, x, 1, &err), PS_OK);
    assert_int_equal(ps_pipe_recv(b.p, &want, got, 1, &h, &err), PS_OK);
    assert_true(got[0] == 4);
    zmq_close(rogue);
    zmq_ctx_term(ctx);
    close_pair(&a, &b);
}

static int zeromq_only(void **state)
{
    (void)state;
    same_host = false;
    return 0;
}

static int with_fifos(void **state)
{
    (void)state;
    same_host = true;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_messages_pass_in_order),
        cmocka_unit_test(test_wait_past_deadline_names_the_peer),
        cmocka_unit_test(test_sync_round_drops_the_abandoned_step),
        cmocka_unit_test(test_curve_refuses_a_stranger),
        cmocka_unit_test(test_big_messages_cross_whole_and_in_order),
        cmocka_unit_test(test_a_link_takes_a_fifo_only_where_a_step_fits),
        cmocka_unit_test(test_garbage_in_a_fifo_is_malformed),
    };
    int failed = cmocka_run_group_tests_name("zeromq", tests, zeromq_only, NULL);
    return failed + cmocka_run_group_tests_name("same host: FIFOs", tests, with_fifos, NULL);
}
