/* test_half.c - fp16/bf16 conversions: exhaustive round trips, reference
 * rounding on edge cases, and vector paths bit-identical to scalar. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ps_half.h"
#include "ps_rng.h"

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_every_half_round_trips(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = ps_f16_to_f32((uint16_t)h);
        uint16_t back = ps_f32_to_f16(f);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) { /* NaN: stays NaN, becomes quiet */
            assert_true(isnan(f));
            assert_int_equal(back, h | 0x200);
        } else {
            assert_int_equal(back, h);
        }
        uint16_t b = ps_f32_to_bf16(ps_bf16_to_f32((uint16_t)h));
        if ((h & 0x7f80) == 0x7f80 && (h & 0x7f))
            assert_int_equal(b, h | 0x40);
        else
            assert_int_equal(b, h);
    }
}

static void test_f16_edge_cases_round_to_nearest_even(void **state)
{
    (void)state;
    assert_int_equal(ps_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(ps_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(ps_f32_to_f16(65504.0f), 0x7bff);          /* max half */
    assert_int_equal(ps_f32_to_f16(65519.0f), 0x7bff);          /* below the tie: down */
    assert_int_equal(ps_f32_to_f16(65520.0f), 0x7c00);          /* tie to even: overflow */
    assert_int_equal(ps_f32_to_f16(1e9f), 0x7c00);
    assert_int_equal(ps_f32_to_f16(-INFINITY), 0xfc00);
    /* 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1.0) */
    assert_int_equal(ps_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    /* 1 + 3*2^-11 is halfway between 1+2^-10 and 1+2^-9: to even (1+2^-9) */
    assert_int_equal(ps_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
    assert_int_equal(ps_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01); /* above tie: up */
    assert_int_equal(ps_f32_to_f16(0x1p-24f), 0x0001);          /* smallest subnormal */
    assert_int_equal(ps_f32_to_f16(0x1p-25f), 0x0000);          /* tie: to even 0 */
    assert_int_equal(ps_f32_to_f16(0x1.8p-25f), 0x0001);        /* above tie */
    assert_int_equal(ps_f32_to_f16(3 * 0x1p-25f), 0x0002);      /* 1.5 ulp: tie to even 2 */
    assert_int_equal(ps_f32_to_f16(0x1p-14f), 0x0400);          /* smallest normal */
    assert_int_equal(ps_f32_to_f16(0x1p-14f - 0x1p-25f), 0x0400); /* rounds up into normal */
    assert_int_equal(ps_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(ps_f32_to_f16(1e-30f), 0x0000);
    assert_true(isnan(ps_f16_to_f32(ps_f32_to_f16(NAN))));
    assert_true(ps_f16_to_f32(0x0001) == 0x1p-24f);
    assert_true(ps_f16_to_f32(0x7c00) == INFINITY);
}

static void test_bf16_edge_cases(void **state)
{
    (void)state;
    assert_int_equal(ps_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(ps_f32_to_bf16(from_bits(0x3f808000)), 0x3f80); /* tie to even: down */
    assert_int_equal(ps_f32_to_bf16(from_bits(0x3f818000)), 0x3f82); /* tie to even: up */
    assert_int_equal(ps_f32_to_bf16(from_bits(0x3f808001)), 0x3f81);
    assert_int_equal(ps_f32_to_bf16(from_bits(0x7f7fffff)), 0x7f80); /* max float rounds to inf */
    assert_int_equal(ps_f32_to_bf16(INFINITY), 0x7f80);
    assert_int_equal(ps_f32_to_bf16(from_bits(0x00000001)), 0x0000); /* fp32 subnormal */
    assert_int_equal(ps_f32_to_bf16(from_bits(0x00018000)), 0x0002);
    assert_int_equal(ps_f32_to_bf16(from_bits(0x7f800001)), 0x7fc0); /* sNaN -> qNaN */
    assert_int_equal(ps_f32_to_bf16(from_bits(0xffc12345)), 0xffc1);
}

/* The bulk (vector) converters give the scalar bits, on edge cases and on
 * random bit patterns of every kind (NaN, inf, subnormal, normal). */
static void test_vector_paths_match_scalar(void **state)
{
    (void)state;
    enum { N = 1 << 20 };
    float *src = malloc(N * sizeof(float)), *back = malloc(N * sizeof(float));
    uint16_t *h = malloc(N * sizeof(uint16_t)), *ref = malloc(N * sizeof(uint16_t));
    ps_rng_t rng;
    ps_rng_seed(&rng, 99);
    for (size_t i = 0; i < N; i++)
        src[i] = from_bits((uint32_t)ps_rng_next(&rng));
    const float edges[] = {0.0f, -0.0f, 65504.0f, 65520.0f, 0x1p-24f, 0x1p-25f, INFINITY, NAN,
                           1.0f + 0x1p-11f, from_bits(0x3f808000), from_bits(0x7f800001)};
    memcpy(src, edges, sizeof edges);
    ps_f32_to_f16_n(src, h, N);
    for (size_t i = 0; i < N; i++)
        ref[i] = ps_f32_to_f16(src[i]);
    assert_memory_equal(h, ref, N * sizeof(uint16_t));
    ps_f16_to_f32_n(h, back, N);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(bits(back[i]), bits(ps_f16_to_f32(h[i])));
    ps_f32_to_bf16_n(src, h, N);
    for (size_t i = 0; i < N; i++)
        ref[i] = ps_f32_to_bf16(src[i]);
    assert_memory_equal(h, ref, N * sizeof(uint16_t));
    ps_bf16_to_f32_n(h, back, N);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(bits(back[i]), (uint32_t)h[i] << 16);
    /* odd lengths exercise the scalar tails */
    ps_f32_to_bf16_n(src + 1, h, 37);
    for (size_t i = 0; i < 37; i++)
        assert_int_equal(h[i], ps_f32_to_bf16(src[1 + i]));
    free(src);
    free(back);
    free(h);
    free(ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_half_round_trips),
        cmocka_unit_test(test_f16_edge_cases_round_to_nearest_even),
        cmocka_unit_test(test_bf16_edge_cases),
        cmocka_unit_test(test_vector_paths_match_scalar),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
