/* test_bell.c - ps_bell, the doorbell's framing: headers rung into a pipe
 * come out whole and in order however the reads cut them; a frame that
 * does not fit one atomic write is refused rather than split; a full
 * pipe refuses without writing part of a frame; a bad length and a closed
 * writer are told apart; a pipe is opened again through /proc only if it
 * is a pipe. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ps_bell.h"

typedef struct {
    uint64_t ids[4096]; /* more than a full pipe's frames of 100 bytes */
    size_t n;
    int stop_at; /* return PS_EAGAIN at this frame (-1: never) */
} seen_t;

static int record(void *arg, const uint8_t *frame, size_t len)
{
    seen_t *s = arg;
    assert_true(s->n < sizeof s->ids / sizeof s->ids[0]);
    Ps__Header *h = ps__header__unpack(NULL, len, frame);
    assert_non_null(h);
    s->ids[s->n++] = h->request_id;
    ps__header__free_unpacked(h, NULL);
    return (int)s->n == s->stop_at ? PS_EAGAIN : PS_OK;
}

static void header(Ps__Header *h, uint64_t id, const char *job)
{
    ps__header__init(h);
    h->op = PS__OP__PUSH_PULL;
    h->request_id = id;
    h->job = (char *)job;
}

static void test_frames_come_out_whole_and_in_order(void **state)
{
    (void)state;
    int p[2];
    ps_errbuf_t err;
    assert_int_equal(ps_bell_pipe(p, &err), PS_OK);
    Ps__Header h;
    for (uint64_t id = 1; id <= 100; id++) {
        header(&h, id, id % 2 ? "a" : "a-longer-job-name");
        assert_int_equal(ps_bell_ring(p[1], &h), PS_OK);
    }
    /* a frame cut in two by the pipe's reader is kept until its rest comes */
    uint8_t raw[64];
    header(&h, 101, "cut");
    size_t len = ps__header__get_packed_size(&h);
    raw[0] = (uint8_t)len, raw[1] = raw[2] = raw[3] = 0;
    ps__header__pack(&h, raw + 4);
    assert_int_equal(write(p[1], raw, 6), 6);
    seen_t s = {.stop_at = -1};
    ps_bell_reader_t r = {0};
    assert_int_equal(ps_bell_take(&r, p[0], record, &s), PS_OK);
    assert_int_equal(s.n, 100);
    for (size_t i = 0; i < s.n; i++)
        assert_int_equal(s.ids[i], i + 1);
    assert_int_equal(r.used, 6);
    assert_int_equal(write(p[1], raw + 6, len - 2), (ssize_t)(len - 2));
    assert_int_equal(ps_bell_take(&r, p[0], record, &s), PS_OK);
    assert_int_equal(s.n, 101);
    assert_int_equal(s.ids[100], 101);
    assert_int_equal(r.used, 0);
    ps_bell_reader_free(&r);
    close(p[0]);
    close(p[1]);
}

static void test_a_callbacks_error_stops_and_keeps_the_rest(void **state)
{
    (void)state;
    int p[2];
    ps_errbuf_t err;
    assert_int_equal(ps_bell_pipe(p, &err), PS_OK);
    Ps__Header h;
    for (uint64_t id = 1; id <= 5; id++) {
        header(&h, id, "j");
        assert_int_equal(ps_bell_ring(p[1], &h), PS_OK);
    }
    seen_t s = {.stop_at = 2};
    ps_bell_reader_t r = {0};
    assert_int_equal(ps_bell_take(&r, p[0], record, &s), PS_EAGAIN);
    assert_int_equal(s.n, 2);
    assert_true(r.used >= 4); /* the pipe is empty now: the rest waits here */
    s.stop_at = -1;
    assert_int_equal(ps_bell_take(&r, p[0], record, &s), PS_OK);
    assert_int_equal(s.n, 5);
    assert_int_equal(s.ids[4], 5);
    ps_bell_reader_free(&r);
    close(p[0]);
    close(p[1]);
}

static void test_too_big_or_full_is_refused_whole(void **state)
{
    (void)state;
    int p[2];
    ps_errbuf_t err;
    assert_int_equal(ps_bell_pipe(p, &err), PS_OK);
    /* a header above PIPE_BUF could be split by a concurrent writer: refused */
    static char big[PS_BELL_FRAME_MAX];
    memset(big, 'x', sizeof big - 1);
    Ps__Header h;
    header(&h, 1, big);
    assert_int_equal(ps_bell_ring(p[1], &h), PS_EAGAIN);
    /* ring until the pipe is full: every frame in it is whole */
    char name[96];
    memset(name, 'f', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    header(&h, 0, name);
    uint64_t rung = 0;
    while (rung < 100000) {
        h.request_id = rung + 1;
        if (ps_bell_ring(p[1], &h) != PS_OK)
            break;
        rung++;
    }
    assert_true(rung > 100 && rung < 100000);
    seen_t s = {.stop_at = -1};
    ps_bell_reader_t r = {0};
    uint64_t taken = 0;
    for (int i = 0; i < 100 && taken < rung; i++) {
        s.n = 0;
        assert_int_equal(ps_bell_take(&r, p[0], record, &s), PS_OK);
        for (size_t k = 0; k < s.n; k++)
            assert_int_equal(s.ids[k], taken + k + 1);
        taken += s.n;
    }
    assert_int_equal(taken, rung);
    assert_int_equal(r.used, 0);
    ps_bell_reader_free(&r);
    /* a ring on a closed descriptor does not go either */
    close(p[1]);
    assert_int_equal(ps_bell_ring(-1, &h), PS_EAGAIN);
    close(p[0]);
}

static void test_a_bad_length_and_a_gone_writer_are_told_apart(void **state)
{
    (void)state;
    int p[2];
    ps_errbuf_t err;
    assert_int_equal(ps_bell_pipe(p, &err), PS_OK);
    Ps__Header h;
    header(&h, 7, "j");
    assert_int_equal(ps_bell_ring(p[1], &h), PS_OK);
    seen_t s = {.stop_at = -1};
    ps_bell_reader_t r = {0};
    close(p[1]); /* the writer's process died after one frame */
    assert_int_equal(ps_bell_take(&r, p[0], record, &s), PS_ENET);
    assert_int_equal(s.n, 1); /* what it wrote before was taken */
    close(p[0]);
    ps_bell_reader_clear(&r);
    /* length 0, and a length above a frame: garbage, whatever follows */
    uint8_t bad[2][8] = {{0, 0, 0, 0, 1, 2, 3, 4}, {0xff, 0xff, 0, 0, 1, 2, 3, 4}};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(ps_bell_pipe(p, &err), PS_OK);
        assert_int_equal(write(p[1], bad[i], sizeof bad[i]), (ssize_t)sizeof bad[i]);
        assert_int_equal(ps_bell_take(&r, p[0], record, &s), PS_EPROTO);
        ps_bell_reader_clear(&r);
        close(p[0]);
        close(p[1]);
    }
    assert_int_equal(s.n, 1);
    ps_bell_reader_free(&r);
    ps_bell_reader_free(&r); /* twice is fine */
}

static void test_only_a_pipe_is_opened_again(void **state)
{
    (void)state;
    int p[2];
    ps_errbuf_t err;
    assert_int_equal(ps_bell_pipe(p, &err), PS_OK);
    /* through /proc, as the shard opens a worker's: the same pipe */
    int rd = ps_bell_open(getpid(), p[1], 0, &err);
    int wr = ps_bell_open(getpid(), p[0], 1, &err);
    assert_true(rd >= 0 && wr >= 0);
    Ps__Header h;
    header(&h, 9, "j");
    assert_int_equal(ps_bell_ring(wr, &h), PS_OK);
    seen_t s = {.stop_at = -1};
    ps_bell_reader_t r = {0};
    assert_int_equal(ps_bell_take(&r, rd, record, &s), PS_OK);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.ids[0], 9);
    ps_bell_reader_free(&r);
    int memfd = memfd_create("not-a-pipe", MFD_CLOEXEC);
    assert_true(memfd >= 0);
    assert_int_equal(ps_bell_open(getpid(), memfd, 0, &err), -1);
    assert_non_null(strstr(err.msg, "not a pipe"));
    assert_int_equal(ps_bell_open(getpid(), 9999, 0, &err), -1);
    assert_non_null(strstr(err.msg, "/fd/9999"));
    close(memfd);
    close(rd);
    close(wr);
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frames_come_out_whole_and_in_order),
        cmocka_unit_test(test_a_callbacks_error_stops_and_keeps_the_rest),
        cmocka_unit_test(test_too_big_or_full_is_refused_whole),
        cmocka_unit_test(test_a_bad_length_and_a_gone_writer_are_told_apart),
        cmocka_unit_test(test_only_a_pipe_is_opened_again),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
