/* test_wire.c - framing over a real ZeroMQ socket pair, and the shard map. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <zmq.h>

#include "ps_err.h"
#include "ps_shardmap.h"
#include "ps_wire.h"

typedef struct {
    void *ctx, *a, *b;
} pair_t;

static int setup_pair(void **state)
{
    static pair_t p;
    p.ctx = zmq_ctx_new();
    p.a = zmq_socket(p.ctx, ZMQ_PAIR);
    p.b = zmq_socket(p.ctx, ZMQ_PAIR);
    assert_int_equal(zmq_bind(p.a, "inproc://wire"), 0);
    assert_int_equal(zmq_connect(p.b, "inproc://wire"), 0);
    *state = &p;
    return 0;
}

static int teardown_pair(void **state)
{
    pair_t *p = *state;
    zmq_close(p->a);
    zmq_close(p->b);
    zmq_ctx_term(p->ctx);
    return 0;
}

static void test_header_and_values_round_trip(void **state)
{
    pair_t *p = *state;
    Ps__Header h;
    ps__header__init(&h);
    h.version = PS_PROTOCOL_VERSION;
    h.op = PS__OP__PUSH_PULL;
    h.request_id = 0x123456789abcull;
    h.job = "job";
    h.clock = -3;
    h.n_elems = 4;
    const float vals[4] = {1.5f, -2, 3, 4};
    assert_true(ps_wire_send_header(p->a, &h, 1) > 0);
    assert_int_equal(ps_wire_send_copy(p->a, vals, sizeof vals, 0), (int)sizeof vals);

    ps_wire_msg_t m;
    assert_int_equal(ps_wire_recv(p->b, &m, 0), PS_OK);
    assert_int_equal(m.n_parts, 2);
    Ps__Header *r = ps_wire_unpack_header(&m.parts[0]);
    assert_non_null(r);
    assert_int_equal(r->op, PS__OP__PUSH_PULL);
    assert_int_equal(r->request_id, 0x123456789abcull);
    assert_int_equal(r->clock, -3);
    assert_string_equal(r->job, "job");
    assert_memory_equal(zmq_msg_data(&m.parts[1]), vals, sizeof vals);
    assert_int_equal(ps_wire_msg_bytes(&m), zmq_msg_size(&m.parts[0]) + sizeof vals);
    ps__header__free_unpacked(r, NULL);
    ps_wire_msg_close(&m);
    ps_wire_msg_close(&m); /* safe twice */
}

static void test_too_many_parts_is_eproto_and_drained(void **state)
{
    pair_t *p = *state;
    for (int i = 0; i < PS_WIRE_MAX_PARTS + 3; i++)
        zmq_send(p->a, "x", 1, i + 1 < PS_WIRE_MAX_PARTS + 3 ? ZMQ_SNDMORE : 0);
    zmq_send(p->a, "next", 4, 0);
    ps_wire_msg_t m;
    assert_int_equal(ps_wire_recv(p->b, &m, 0), PS_EPROTO);
    assert_int_equal(m.n_parts, PS_WIRE_MAX_PARTS);
    ps_wire_msg_close(&m);
    /* the next message starts cleanly */
    assert_int_equal(ps_wire_recv(p->b, &m, 0), PS_OK);
    assert_int_equal(m.n_parts, 1);
    assert_int_equal(zmq_msg_size(&m.parts[0]), 4);
    ps_wire_msg_close(&m);
}

static void test_garbage_is_not_a_header(void **state)
{
    (void)state;
    zmq_msg_t part;
    zmq_msg_init_size(&part, 5);
    memcpy(zmq_msg_data(&part), "\xff\xff\xff\xff\xff", 5);
    assert_null(ps_wire_unpack_header(&part));
    zmq_msg_close(&part);
}

static void test_recv_dontwait_on_empty_socket_is_eagain(void **state)
{
    pair_t *p = *state;
    ps_wire_msg_t m;
    assert_int_equal(ps_wire_recv(p->b, &m, ZMQ_DONTWAIT), PS_EAGAIN);
}

static void test_shardmap_covers_large_tables_evenly(void **state)
{
    (void)state;
    const uint64_t sizes[] = {4096 * 2, 200704, 1000003, 12345678};
    for (size_t si = 0; si < 4; si++) {
        for (uint32_t k = 1; k <= 7; k++) {
            uint64_t n = sizes[si], next = 0, per_shard[8] = {0};
            if (n < (uint64_t)PS_SHARD_MIN_SPLIT * k)
                continue;
            uint32_t nc = ps_shardmap_n_chunks(n, k);
            assert_int_equal(nc % k, 0);
            assert_true(nc >= k);
            uint64_t min = UINT64_MAX, max = 0;
            for (uint32_t ch = 0; ch < nc; ch++) {
                ps_chunk_t c = ps_shardmap_chunk(n, 3, ch, k);
                assert_int_equal(c.offset, next); /* contiguous, in order */
                assert_true(c.len <= PS_CHUNK_ELEMS + 1 || nc == k);
                next += c.len;
                per_shard[c.shard] += c.len;
                min = c.len < min ? c.len : min;
                max = c.len > max ? c.len : max;
            }
            assert_int_equal(next, n);
            assert_true(max - min <= 1);
            for (uint32_t s = 0; s < k; s++) /* every shard carries the same load */
                assert_true(per_shard[s] + nc / k >= n / k && per_shard[s] <= n / k + nc / k);
        }
    }
}

static void test_shardmap_keeps_small_tables_whole(void **state)
{
    (void)state;
    for (uint32_t id = 0; id < 10; id++) {
        assert_int_equal(ps_shardmap_n_chunks(1280, 3), 1);
        ps_chunk_t c = ps_shardmap_chunk(1280, id, 0, 3);
        assert_int_equal(c.offset, 0);
        assert_int_equal(c.len, 1280);
        assert_int_equal(c.shard, id % 3);
    }
}

static void test_shardmap_is_stable(void **state)
{
    (void)state;
    /* The map is part of the protocol: pin a few values. */
    assert_int_equal(ps_shardmap_n_chunks(200704, 2), 2);
    assert_int_equal(ps_shardmap_n_chunks(16777216, 2), 64);
    ps_chunk_t c = ps_shardmap_chunk(200704, 0, 1, 2);
    assert_int_equal(c.offset, 100352);
    assert_int_equal(c.shard, 1);
    c = ps_shardmap_chunk(16777216, 5, 63, 4);
    assert_int_equal(c.offset, 63 * 262144);
    assert_int_equal(c.shard, (5 + 63) % 4);
}

static void test_dtype_sizes_and_names(void **state)
{
    (void)state;
    assert_int_equal(ps_dtype_size(PS__DTYPE__F32), 4);
    assert_int_equal(ps_dtype_size(PS__DTYPE__F16), 2);
    assert_int_equal(ps_dtype_size(99), 0);
    assert_string_equal(ps_op_name(PS__OP__PUSH_PULL), "PUSH_PULL");
    assert_string_equal(ps_op_name(999), "UNKNOWN_OP");
    assert_string_equal(ps_errname(PS_EPROTO), "EPROTO");
    assert_string_equal(ps_strerror(-999), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_and_values_round_trip),
        cmocka_unit_test(test_too_many_parts_is_eproto_and_drained),
        cmocka_unit_test(test_garbage_is_not_a_header),
        cmocka_unit_test(test_recv_dontwait_on_empty_socket_is_eagain),
        cmocka_unit_test(test_shardmap_covers_large_tables_evenly),
        cmocka_unit_test(test_shardmap_keeps_small_tables_whole),
        cmocka_unit_test(test_shardmap_is_stable),
        cmocka_unit_test(test_dtype_sizes_and_names),
    };
    return cmocka_run_group_tests(tests, setup_pair, teardown_pair);
}
