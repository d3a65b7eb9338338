/* test_loss_scale.c - the fp16 loss scaler's state machine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ps_loss_scale.h"

static void test_overflow_halves_and_clean_steps_double(void **state)
{
    (void)state;
    ps_loss_scale_t ls;
    ps_loss_scale_init(&ls, 65536.0f, 3);
    assert_true(ps_loss_scale_update(&ls, true));
    assert_true(ls.scale == 32768.0f);
    assert_int_equal(ls.n_skipped, 1);
    assert_false(ps_loss_scale_update(&ls, false));
    assert_false(ps_loss_scale_update(&ls, false));
    assert_true(ps_loss_scale_update(&ls, false)); /* third clean step */
    assert_true(ls.scale == 65536.0f);
    /* an overflow resets the clean count */
    ps_loss_scale_update(&ls, false);
    ps_loss_scale_update(&ls, false);
    ps_loss_scale_update(&ls, true);
    assert_true(ls.scale == 32768.0f);
    assert_false(ps_loss_scale_update(&ls, false));
    assert_false(ps_loss_scale_update(&ls, false));
    assert_true(ps_loss_scale_update(&ls, false));
    assert_int_equal(ls.n_skipped, 2);
}

static void test_scale_stays_within_bounds(void **state)
{
    (void)state;
    ps_loss_scale_t ls;
    ps_loss_scale_init(&ls, 1.0f, 1);
    for (int i = 0; i < 100; i++)
        ps_loss_scale_update(&ls, true);
    assert_true(ls.scale == 0x1p-24f);
    assert_false(ps_loss_scale_update(&ls, true));
    for (int i = 0; i < 100; i++)
        ps_loss_scale_update(&ls, false);
    assert_true(ls.scale == 0x1p24f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overflow_halves_and_clean_steps_double),
        cmocka_unit_test(test_scale_stays_within_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
