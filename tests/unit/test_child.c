/* test_child.c - ps_child: the children ps-launch and ps-tune start. A
 * stop sent to one of our daemons while it is still starting must reach
 * its handler (a clean exit 0 that keeps its state), not kill it: seen on
 * 954cdab, where ps-launch restarted a shard and stopped the job 3 ms
 * later, and the shard died of the SIGTERM ("did not shut down cleanly").
 * Usage: test_child PS-SERVER-BINARY */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ps_child.h"

static const char *server_bin;
static char log_path[] = "/tmp/ps_test_child_XXXXXX";

/* Reaps c, polling until deadline_s; fails the test if it is still running. */
static void reap_within(ps_child_t *c, int deadline_s)
{
    struct timespec start, now, tick = {0, 5 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (!ps_child_reap(c)) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec > deadline_s) {
            ps_child_signal(c, SIGKILL);
            while (!ps_child_reap(c))
                nanosleep(&tick, NULL);
            fail_msg("%s (pid %d) still running %d s after SIGTERM", c->name, (int)c->pid,
                     deadline_s);
        }
        nanosleep(&tick, NULL);
    }
}

/* SIGTERM at once after the fork, twenty times: each a clean exit 0. */
static void test_stop_while_starting_is_clean(void **state)
{
    (void)state;
    for (int round = 0; round < 20; round++) {
        char *argv[] = {(char *)server_bin, "--shard", "0", "--shards", "1", "--port", "0", NULL};
        ps_child_spawn_t how = {.stderr_path = log_path};
        ps_child_t c;
        assert_int_equal(ps_child_start(&c, "server", argv, &how), 0);
        ps_child_signal(&c, SIGTERM);
        reap_within(&c, 30);
        char why[64];
        if (!WIFEXITED(c.status) || WEXITSTATUS(c.status) != 0)
            fail_msg("round %d: ps-server stopped while starting: %s (log %s)", round,
                     ps_child_describe(c.status, why, sizeof why), log_path);
    }
}

/* A program not of ours (a --worker-command shell) has no handler to wait
 * for: SIGTERM must still end it, as it always did. */
static void test_foreign_child_dies_of_sigterm(void **state)
{
    (void)state;
    char *argv[] = {"/bin/sh", "-c", "exec sleep 60", NULL};
    ps_child_spawn_t how = {.foreign = true};
    ps_child_t c;
    assert_int_equal(ps_child_start(&c, "shell", argv, &how), 0);
    ps_child_signal(&c, SIGTERM);
    reap_within(&c, 30);
    assert_true(WIFSIGNALED(c.status));
    assert_int_equal(WTERMSIG(c.status), SIGTERM);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PS-SERVER-BINARY\n", argv[0]);
        return 2;
    }
    server_bin = argv[1];
    int fd = mkstemp(log_path);
    if (fd < 0) {
        perror(log_path);
        return 2;
    }
    close(fd);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stop_while_starting_is_clean),
        cmocka_unit_test(test_foreign_child_dies_of_sigterm),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (!failed)
        unlink(log_path);
    return failed;
}
