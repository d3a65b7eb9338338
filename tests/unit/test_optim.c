/* test_optim.c - every optimizer and schedule against values worked out by
 * hand (w0 = 1, gradient sum 1.0 over 2 samples = mean 0.5, two steps). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#include "ps_optim.h"

static ps_optim_spec_t base(ps_optim_kind_t kind, double lr)
{
    ps_optim_spec_t s = {.kind = kind, .lr = lr, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-10,
                         .rho = 0.9, .gamma = 0.1, .step_size = 1};
    return s;
}

/* Two updates of one weight; returns w after each. */
static void run2(ps_optim_spec_t s, float out[2])
{
    ps_optim_t opt;
    float w = 1.0f;
    const float g = 1.0f;
    assert_null(ps_optim_spec_check(&s));
    assert_int_equal(ps_optim_init(&opt, &s, 1), 0);
    ps_optim_step(&opt, &w, &g, 0.5f);
    out[0] = w;
    ps_optim_step(&opt, &w, &g, 0.5f);
    out[1] = w;
    assert_int_equal(opt.t, 2);
    ps_optim_fini(&opt);
    ps_optim_fini(&opt);
}

#define assert_close(a, b) assert_true(fabs((double)(a) - (double)(b)) < 1e-5)

static void test_sgd(void **state)
{
    (void)state;
    float w[2];
    run2(base(PS_OPTIM_SGD, 0.1), w);
    assert_close(w[0], 0.95);
    assert_close(w[1], 0.90);
    ps_optim_spec_t s = base(PS_OPTIM_SGD, 0.1);
    s.weight_decay = 0.01;
    run2(s, w);
    assert_close(w[0], 1 - 0.1 * (0.5 + 0.01));
}

static void test_momentum_and_nesterov(void **state)
{
    (void)state;
    float w[2];
    ps_optim_spec_t s = base(PS_OPTIM_MOMENTUM, 0.1);
    s.momentum = 0.9;
    run2(s, w);
    assert_close(w[0], 0.95);
    assert_close(w[1], 0.855);
    s.nesterov = true;
    run2(s, w);
    assert_close(w[0], 0.905);
    assert_close(w[1], 0.7695);
}

static void test_adagrad(void **state)
{
    (void)state;
    float w[2];
    run2(base(PS_OPTIM_ADAGRAD, 0.1), w);
    assert_close(w[0], 0.9);
    assert_close(w[1], 0.9 - 0.05 / sqrt(0.5));
}

static void test_rmsprop(void **state)
{
    (void)state;
    float w[2];
    run2(base(PS_OPTIM_RMSPROP, 0.1), w);
    assert_close(w[0], 1 - 0.05 / sqrt(0.025));
    assert_close(w[1], 1 - 0.05 / sqrt(0.025) - 0.05 / sqrt(0.0475));
}

static void test_adam_and_adamw(void **state)
{
    (void)state;
    float w[2];
    ps_optim_spec_t s = base(PS_OPTIM_ADAM, 0.1);
    s.eps = 1e-8;
    run2(s, w);
    /* bias correction makes both steps exactly lr * sign(g) */
    assert_close(w[0], 0.9);
    assert_close(w[1], 0.8);
    s.kind = PS_OPTIM_ADAMW;
    s.weight_decay = 0.1;
    run2(s, w);
    assert_close(w[0], 1.0 * (1 - 0.1 * 0.1) - 0.1);
}

static void test_schedules(void **state)
{
    (void)state;
    ps_optim_spec_t s = base(PS_OPTIM_SGD, 1.0);
    s.schedule = PS_SCHED_STEP;
    s.step_size = 2;
    s.gamma = 0.5;
    assert_close(ps_optim_lr(&s, 1), 1.0);
    assert_close(ps_optim_lr(&s, 2), 0.5);
    assert_close(ps_optim_lr(&s, 4), 0.25);
    s.schedule = PS_SCHED_COSINE;
    s.total_steps = 10;
    s.min_lr = 0;
    assert_close(ps_optim_lr(&s, 0), 1.0);
    assert_close(ps_optim_lr(&s, 5), 0.5);
    assert_close(ps_optim_lr(&s, 10), 0.0);
    assert_close(ps_optim_lr(&s, 20), 0.0);
    s.warmup_steps = 4;
    assert_close(ps_optim_lr(&s, 0), 0.25);
    assert_close(ps_optim_lr(&s, 3), 1.0);
    assert_close(ps_optim_lr(&s, 4), 1.0); /* cosine starts after warm-up */
}

/* Every dense optimizer, for the tests that must hold for each. */
static const ps_optim_kind_t every_kind[] = {PS_OPTIM_SGD,     PS_OPTIM_MOMENTUM, PS_OPTIM_ADAGRAD,
                                             PS_OPTIM_RMSPROP, PS_OPTIM_ADAM,     PS_OPTIM_ADAMW};
#define N_KINDS (sizeof every_kind / sizeof every_kind[0])

/* Two optimizers of every_kind[k] over n elements with one spec (lr 0.05,
 * momentum 0.9, weight decay 0.01), to be stepped side by side. */
static void init_twins(size_t k, size_t n, bool nesterov, ps_optim_t *a, ps_optim_t *b)
{
    ps_optim_spec_t s = base(every_kind[k], 0.05);
    s.momentum = 0.9;
    s.nesterov = nesterov;
    s.weight_decay = 0.01;
    assert_int_equal(ps_optim_init(a, &s, n), 0);
    assert_int_equal(ps_optim_init(b, &s, n), 0);
}

/* Writing the update elsewhere (as a table does while a reply sends its
 * parameters) must give the very bits of the in-place update and leave the
 * source alone, for every optimizer, over lengths that exercise the vector
 * loop and its tail. */
static void test_step_to_matches_in_place(void **state)
{
    (void)state;
    enum { N = 1000 + 7 };
    static float w0[N], g[N], in_place[N], src[N], dst[N];
    for (int i = 0; i < N; i++) {
        w0[i] = sinf((float)i * 0.37f);
        g[i] = cosf((float)i * 1.3f) * (float)(i % 5);
    }
    for (size_t k = 0; k < N_KINDS; k++) {
        ps_optim_t a, b;
        init_twins(k, N, false, &a, &b);
        memcpy(in_place, w0, sizeof w0);
        memcpy(src, w0, sizeof w0);
        for (int step = 0; step < 3; step++) {
            ps_optim_step(&a, in_place, g, 0.25f);
            ps_optim_step_to(&b, src, dst, g, NULL, 0.25f);
            assert_memory_equal(in_place, dst, sizeof dst);
            memcpy(src, dst, sizeof dst);
            memset(dst, 0xff, sizeof dst); /* NaNs: a stale read would show */
        }
        ps_optim_step_to(&b, src, dst, g, NULL, 0.25f);
        assert_memory_not_equal(src, dst, sizeof dst);
        ps_optim_fini(&a);
        ps_optim_fini(&b);
    }
}

/* Two gradients handed over apart (a BSP round of two pushes) must give
 * the very bits of their sum handed over as one, for every optimizer: the
 * shard's fused round may not move a model by one rounding. */
static void test_two_gradients_match_their_sum(void **state)
{
    (void)state;
    enum { N = 1000 + 7 };
    static float w0[N], g1[N], g2[N], sum[N], a_w[N], b_w[N];
    for (int i = 0; i < N; i++) {
        w0[i] = sinf((float)i * 0.37f);
        /* magnitudes far apart, so g1 + g2 rounds and a different order
         * of operations would show in the bits */
        g1[i] = cosf((float)i * 1.3f) * (float)(i % 5) * 1e3f;
        g2[i] = sinf((float)i * 0.71f) * 1e-3f;
        sum[i] = g1[i] + g2[i];
    }
    for (size_t k = 0; k < N_KINDS; k++) {
        ps_optim_t a, b;
        init_twins(k, N, k % 2 == 1, &a, &b);
        memcpy(a_w, w0, sizeof w0);
        memcpy(b_w, w0, sizeof w0);
        for (int step = 0; step < 3; step++) {
            ps_optim_step_to(&a, a_w, a_w, sum, NULL, 0.5f);
            ps_optim_step_to(&b, b_w, b_w, g1, g2, 0.5f);
            assert_memory_equal(a_w, b_w, sizeof a_w);
        }
        assert_memory_not_equal(a_w, w0, sizeof w0);
        ps_optim_fini(&a);
        ps_optim_fini(&b);
    }
}

/* A moment decaying below FLT_MIN, and a subnormal gradient, leave zeros,
 * never subnormals (each operation on one costs a microcode assist), and
 * the caller's floating-point flags come back as they were. Valgrind does
 * not model the flush flags, so there only the flags are checked. */
static void test_subnormals_are_flushed(void **state)
{
    (void)state;
    enum { N = 64 + 3 };
    static float w[N], g[N];
    ps_optim_spec_t s = base(PS_OPTIM_ADAM, 1e-3);
    ps_optim_t opt;
    assert_int_equal(ps_optim_init(&opt, &s, N), 0);
    for (int i = 0; i < N; i++) {
        w[i] = 1.0f;
        g[i] = 0.0f;
        opt.m[i] = FLT_MIN * (1.0f + (float)i / (10 * N)); /* 0.9 of it is subnormal */
        opt.v[i] = 1.0f;
    }
#if defined(__x86_64__) || defined(__i386__)
    const unsigned int controls = ~0x3fu; /* not the sticky exception flags */
    const unsigned int csr = _mm_getcsr() & controls;
#endif
    ps_optim_step(&opt, w, g, 1.0f);
    for (int i = 0; i < N; i++)
        g[i] = FLT_MIN / 4; /* subnormal, read as zero: scaled by 2^24 it would be normal */
    ps_optim_step(&opt, w, g, 16777216.0f);
#if defined(__x86_64__) || defined(__i386__)
    assert_int_equal(_mm_getcsr() & controls, csr);
#endif
    if (RUNNING_ON_VALGRIND) {
        printf("test_subnormals_are_flushed: under Valgrind, which does not flush: flags only\n");
    } else {
        for (int i = 0; i < N; i++) {
            assert_true(opt.m[i] == 0.0f);
            assert_int_not_equal(fpclassify(opt.v[i]), FP_SUBNORMAL);
            assert_int_not_equal(fpclassify(w[i]), FP_SUBNORMAL);
        }
    }
    ps_optim_fini(&opt);
}

static void test_spec_check_rejects_nonsense(void **state)
{
    (void)state;
    ps_optim_spec_t s = base(PS_OPTIM_SGD, 0.0);
    assert_non_null(ps_optim_spec_check(&s));
    s = base(PS_OPTIM_ADAM, 0.1);
    s.beta1 = 1.0;
    assert_non_null(ps_optim_spec_check(&s));
    s = base(PS_OPTIM_ADAM, 0.1);
    s.eps = 1e-39; /* subnormal: flushed to zero in the step */
    assert_non_null(ps_optim_spec_check(&s));
    s = base(PS_OPTIM_SGD, 0.1);
    s.kind = (ps_optim_kind_t)42;
    assert_non_null(ps_optim_spec_check(&s));
    s = base(PS_OPTIM_SGD, 0.1);
    s.schedule = PS_SCHED_COSINE;
    s.total_steps = 0;
    assert_non_null(ps_optim_spec_check(&s));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd),
        cmocka_unit_test(test_momentum_and_nesterov),
        cmocka_unit_test(test_adagrad),
        cmocka_unit_test(test_rmsprop),
        cmocka_unit_test(test_adam_and_adamw),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_spec_check_rejects_nonsense),
        cmocka_unit_test(test_step_to_matches_in_place),
        cmocka_unit_test(test_two_gradients_match_their_sum),
        cmocka_unit_test(test_subnormals_are_flushed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
