/* test_pending.c - parked pulls: each keeps its own copy of the requester's
 * identity and keys, is answered exactly once when ready, and a flush
 * answers the rest (a rollback). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "ps_pending.h"

typedef struct {
    int64_t ready_below; /* pulls of a clock below this are ready */
    char seen[64];       /* identities answered, in order */
    size_t n_seen;
} ctx_t;

static bool ready(void *ctx, const ps_pull_t *p)
{
    return p->clock < ((ctx_t *)ctx)->ready_below;
}

static void answer(void *ctx, ps_pull_t *p)
{
    ctx_t *c = ctx;
    c->seen[c->n_seen++] = *(const char *)zmq_msg_data(&p->identity);
    /* the frames are still ours to read while we answer */
    assert_int_equal(zmq_msg_size(&p->identity), 1);
}

static void park(ps_pending_t *q, char who, int64_t clock)
{
    zmq_msg_t id;
    zmq_msg_init_size(&id, 1);
    *(char *)zmq_msg_data(&id) = who;
    ps_pull_t *p = ps_pending_park(q, &id);
    zmq_msg_close(&id); /* the list holds its own copy */
    p->clock = clock;
    assert_int_equal(zmq_msg_size(&p->keys), 0);
}

static void test_ready_pulls_are_answered_once(void **state)
{
    (void)state;
    ps_pending_t q;
    ps_pending_init(&q);
    ctx_t c = {.ready_below = 0};
    for (int i = 0; i < 40; i++) /* more than the first allocation */
        park(&q, (char)('a' + i % 26), i % 4);
    assert_int_equal(ps_pending_serve(&q, ready, answer, &c), 0);
    c.ready_below = 2;
    assert_int_equal(ps_pending_serve(&q, ready, answer, &c), 20);
    assert_int_equal(ps_pending_serve(&q, ready, answer, &c), 0); /* not twice */
    assert_int_equal(q.n, 20);
    for (size_t i = 0; i < q.n; i++)
        assert_true(q.pulls[i].clock >= 2);
    assert_int_equal(ps_pending_flush(&q, answer, &c), 20);
    assert_int_equal(q.n, 0);
    assert_int_equal(c.n_seen, 40);
    ps_pending_fini(&q);
}

static void test_fini_frees_what_is_parked(void **state)
{
    (void)state;
    ps_pending_t q;
    ps_pending_init(&q);
    park(&q, 'x', 5);
    ps_pull_t *p = &q.pulls[0];
    zmq_msg_close(&p->keys);
    zmq_msg_init_size(&p->keys, 16);
    ps_pending_fini(&q); /* closes identity and keys (ASan/Valgrind check it) */
    ps_pending_fini(&q);
    assert_int_equal(q.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ready_pulls_are_answered_once),
        cmocka_unit_test(test_fini_frees_what_is_parked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
