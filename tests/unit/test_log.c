/* test_log.c - log line format; JOURNAL_STREAM counts only when it names fd 2. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ps_log.h"

/* Points fd 2 at a fresh file, sets JOURNAL_STREAM to env (NULL: the file's
 * own dev:ino, as systemd would), logs one line and returns it (static). */
static const char *log_one_line_of(const char *env, const char *name)
{
    static char got[512];
    char path[] = "/tmp/ps_test_log_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, 2), 2);
    char own[64];
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    snprintf(own, sizeof own, "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", env ? env : own, 1);
    ps_log_init("ps-test", PS_LOG_INFO);
    ps_log(PS_LOG_INFO, "ready: endpoint '%s'", name);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(fd, got, sizeof got - 1, 0);
    assert_true(n > 0);
    got[n] = '\0';
    close(fd);
    unlink(path);
    unsetenv("JOURNAL_STREAM");
    return got;
}

static const char *log_one_line(const char *env)
{
    return log_one_line_of(env, "tcp://x");
}

/* A name from outside with a newline, ESC and DEL stays on its one line,
 * its control bytes written as \xNN: no forged line, no terminal escape. */
static void test_control_bytes_are_escaped(void **state)
{
    (void)state;
    const char *line = log_one_line_of("8:1", "a\n2026-01-01T00:00:00.000Z ps-server[1] E forged\x1b[2J\x7f");
    assert_non_null(strstr(line, "'a\\x0a2026-01-01T00:00:00.000Z ps-server[1] E forged\\x1b[2J\\x7f'\n"));
    assert_null(strchr(line, '\x1b'));
    assert_int_equal(strchr(line, '\n') - line, (long)strlen(line) - 1);
}

static void test_journal_stream_of_another_file_is_ignored(void **state)
{
    (void)state;
    /* `JOURNAL_STREAM=8:1 ps-server 2>file`: a file is not the journal */
    const char *line = log_one_line("8:1");
    assert_true(strncmp(line, "20", 2) == 0);
    assert_non_null(strstr(line, "ps-test["));
    assert_non_null(strstr(line, "] I ready: endpoint 'tcp://x'\n"));
}

static void test_garbage_journal_stream_is_ignored(void **state)
{
    (void)state;
    assert_int_equal(log_one_line("")[0], '2');
    assert_int_equal(log_one_line("x:y")[0], '2');
    assert_int_equal(log_one_line("8:1junk")[0], '2');
}

static void test_journal_stream_naming_fd_2_gets_priorities(void **state)
{
    (void)state;
    assert_string_equal(log_one_line(NULL), "<6>ready: endpoint 'tcp://x'\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_control_bytes_are_escaped),
        cmocka_unit_test(test_journal_stream_of_another_file_is_ignored),
        cmocka_unit_test(test_garbage_journal_stream_is_ignored),
        cmocka_unit_test(test_journal_stream_naming_fd_2_gets_priorities),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
