/* test_config.c - the option table: defaults, files, flags, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ps_config.h"

typedef struct {
    char name[PS_OPT_STR_MAX];
    int64_t port;
    double lr;
    bool verbose;
    int mode;
} cfg_t;

static const ps_opt_t opts[] = {
    PS_OPT_STR("name", cfg_t, name, "default", "a name"),
    PS_OPT_INT("port", cfg_t, port, "5555", 0, 65535, "a port"),
    PS_OPT_DBL("lr", cfg_t, lr, "0.1", 0, 10, "a rate"),
    PS_OPT_BOOL("verbose", cfg_t, verbose, "no", "chatty"),
    PS_OPT_ENUM("mode", cfg_t, mode, "bsp", "bsp|ssp|asp", "a mode"),
};
static const ps_optset_t set = {"test", "usage", opts, 5};

static char *write_file(const char *text)
{
    char *path = strdup("/tmp/ps_test_config_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_defaults_fill_every_field(void **state)
{
    (void)state;
    cfg_t c;
    memset(&c, 0xff, sizeof c);
    ps_config_defaults(&set, &c);
    assert_string_equal(c.name, "default");
    assert_int_equal(c.port, 5555);
    assert_true(c.lr == 0.1);
    assert_false(c.verbose);
    assert_int_equal(c.mode, 0);
}

static void test_file_sets_values_and_ignores_comments(void **state)
{
    (void)state;
    char *path = write_file("# comment\n\nname  job-a   # trailing\nport 7000\nmode asp\nverbose yes\n");
    cfg_t c;
    ps_errbuf_t err;
    ps_config_defaults(&set, &c);
    assert_int_equal(ps_config_load_file(&set, &c, path, &err), PS_OK);
    assert_string_equal(c.name, "job-a");
    assert_int_equal(c.port, 7000);
    assert_int_equal(c.mode, 2);
    assert_true(c.verbose);
    unlink(path);
    free(path);
}

static void test_bad_line_names_file_and_line(void **state)
{
    (void)state;
    char *path = write_file("name ok\nport 70000\n");
    cfg_t c;
    ps_errbuf_t err;
    ps_config_defaults(&set, &c);
    assert_int_equal(ps_config_load_file(&set, &c, path, &err), PS_ERANGE);
    char want[300];
    snprintf(want, sizeof want, "%s:2: 'port 70000'", path);
    assert_non_null(strstr(err.msg, want));
    unlink(path);
    free(path);
}

static void test_unknown_key_and_bad_number_are_errors(void **state)
{
    (void)state;
    cfg_t c;
    ps_errbuf_t err;
    ps_config_defaults(&set, &c);
    assert_int_equal(ps_config_set(&set, &c, "nope", "1", &err), PS_EINVAL);
    assert_non_null(strstr(err.msg, "unknown option 'nope'"));
    assert_int_equal(ps_config_set(&set, &c, "lr", "abc", &err), PS_EINVAL);
    assert_int_equal(ps_config_set(&set, &c, "mode", "xsp", &err), PS_EINVAL);
    assert_int_equal(ps_config_set(&set, &c, "verbose", "maybe", &err), PS_EINVAL);
    assert_int_equal(ps_config_set(&set, &c, "port", "12x", &err), PS_EINVAL);
}

static void test_missing_value_in_file_is_an_error(void **state)
{
    (void)state;
    char *path = write_file("port\n");
    cfg_t c;
    ps_errbuf_t err;
    ps_config_defaults(&set, &c);
    assert_int_equal(ps_config_load_file(&set, &c, path, &err), PS_EINVAL);
    assert_non_null(strstr(err.msg, ":1:"));
    unlink(path);
    free(path);
}

static void test_flags_win_over_file_and_accept_dashes(void **state)
{
    (void)state;
    char *path = write_file("port 7000\nlr 0.5\n");
    char *argv[] = {"prog", "--port=8000", "--config", path, "--verbose", "--mode", "ssp", NULL};
    cfg_t c;
    ps_errbuf_t err;
    assert_int_equal(ps_config_load(&set, &c, 7, argv, &err), PS_OK);
    assert_int_equal(c.port, 8000);
    assert_true(c.lr == 0.5);
    assert_true(c.verbose);
    assert_int_equal(c.mode, 1);
    unlink(path);
    free(path);
}

static void test_positional_argument_is_rejected(void **state)
{
    (void)state;
    char *argv[] = {"prog", "stray", NULL};
    cfg_t c;
    ps_errbuf_t err;
    assert_int_equal(ps_config_load(&set, &c, 2, argv, &err), PS_EINVAL);
    assert_non_null(strstr(err.msg, "stray"));
}

static void test_format_round_trips_through_set(void **state)
{
    (void)state;
    cfg_t a, b;
    ps_errbuf_t err;
    ps_config_defaults(&set, &a);
    ps_config_set(&set, &a, "mode", "asp", &err);
    ps_config_set(&set, &a, "lr", "0.0123", &err);
    char buf[2048];
    ps_config_format(&set, &a, buf, sizeof buf);
    char *path = write_file(buf);
    ps_config_defaults(&set, &b);
    assert_int_equal(ps_config_load_file(&set, &b, path, &err), PS_OK);
    assert_string_equal(a.name, b.name);
    assert_int_equal(a.port, b.port);
    assert_true(a.lr == b.lr);
    assert_int_equal(a.verbose, b.verbose);
    assert_int_equal(a.mode, b.mode);
    unlink(path);
    free(path);
}

static int load_text(const char *text, cfg_t *c, ps_errbuf_t *err)
{
    char *path = write_file(text);
    ps_config_defaults(&set, c);
    int rc = ps_config_load_file(&set, c, path, err);
    if (rc != PS_OK && !strstr(err->msg, path))
        fail_msg("error does not name the file: %s", err->msg);
    unlink(path);
    free(path);
    return rc;
}

static void test_hash_inside_a_word_is_part_of_the_value(void **state)
{
    (void)state;
    cfg_t c;
    ps_errbuf_t err;
    assert_int_equal(load_text("name /x/run#1/a.csv\n", &c, &err), PS_OK);
    assert_string_equal(c.name, "/x/run#1/a.csv");
    assert_int_equal(load_text("name /x/run#1/a.csv # the data\n", &c, &err), PS_OK);
    assert_string_equal(c.name, "/x/run#1/a.csv");
    assert_int_equal(load_text("name a#b\t# tab before the comment\n", &c, &err), PS_OK);
    assert_string_equal(c.name, "a#b");
    assert_int_equal(load_text("  # indented comment\nport 7000#\n", &c, &err), PS_EINVAL);
    assert_non_null(strstr(err.msg, ":2:"));
}

static void test_quoted_values_keep_spaces_hashes_and_escapes(void **state)
{
    (void)state;
    cfg_t c;
    ps_errbuf_t err;
    assert_int_equal(load_text("name \"  a # b  \"  # comment\n", &c, &err), PS_OK);
    assert_string_equal(c.name, "  a # b  ");
    assert_int_equal(load_text("name \"say \\\"hi\\\" C:\\\\x\"\n", &c, &err), PS_OK);
    assert_string_equal(c.name, "say \"hi\" C:\\x");
    assert_int_equal(load_text("name \"\"\n", &c, &err), PS_OK);
    assert_string_equal(c.name, "");
    assert_int_equal(load_text("port \"7001\"\n", &c, &err), PS_OK);
    assert_int_equal(c.port, 7001);
}

static void test_malformed_quotes_are_errors_naming_the_line(void **state)
{
    (void)state;
    cfg_t c;
    ps_errbuf_t err;
    assert_int_equal(load_text("port 1\nname \"open\n", &c, &err), PS_EINVAL);
    assert_non_null(strstr(err.msg, ":2:"));
    assert_non_null(strstr(err.msg, "unterminated quote"));
    assert_int_equal(load_text("name \"a\" b\n", &c, &err), PS_EINVAL);
    assert_non_null(strstr(err.msg, "text after the closing quote"));
    assert_int_equal(load_text("name \"a\\n\"\n", &c, &err), PS_EINVAL);
    assert_non_null(strstr(err.msg, ":1:"));
    assert_int_equal(load_text("name \"a\"# no space\n", &c, &err), PS_EINVAL);
}

static void test_overlong_line_is_an_error_not_two_lines(void **state)
{
    (void)state;
    cfg_t c;
    ps_errbuf_t err;
    char *text = malloc(6000);
    memset(text, 'x', 5990);
    memcpy(text, "name ", 5);
    memcpy(text + 5000, " port 1\n", 9);
    assert_int_equal(load_text(text, &c, &err), PS_EINVAL);
    assert_non_null(strstr(err.msg, ":1:"));
    assert_non_null(strstr(err.msg, "longer than"));
    free(text);
}

static void test_format_quotes_what_would_not_read_back(void **state)
{
    (void)state;
    static const char *values[] = {"", " lead", "trail ", "a #b", "\"q\"", "#x", "b\\s\"",
                                   "/x/run#1"};
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        cfg_t a, b;
        ps_errbuf_t err;
        ps_config_defaults(&set, &a);
        assert_int_equal(ps_config_set(&set, &a, "name", values[i], &err), PS_OK);
        char buf[2048];
        ps_config_format(&set, &a, buf, sizeof buf);
        if (load_text(buf, &b, &err) != PS_OK)
            fail_msg("'%s' does not read back: %s", values[i], err.msg);
        assert_string_equal(b.name, values[i]);
    }
}

static void test_version_prints_prog_and_version(void **state)
{
    (void)state;
    char *argv[] = {"prog", "--port", "1", "--version", NULL};
    cfg_t c;
    ps_errbuf_t err;
    fflush(stdout);
    int saved = dup(1);
    char *path = write_file("");
    FILE *out = fopen(path, "w");
    dup2(fileno(out), 1);
    int rc = ps_config_load(&set, &c, 4, argv, &err);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    fclose(out);
    assert_int_equal(rc, PS_CONFIG_HELP);
    FILE *in = fopen(path, "r");
    char line[128] = "";
    assert_non_null(fgets(line, sizeof line, in));
    fclose(in);
    assert_string_equal(line, "test " PS_VERSION "\n");
    unlink(path);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_fill_every_field),
        cmocka_unit_test(test_file_sets_values_and_ignores_comments),
        cmocka_unit_test(test_bad_line_names_file_and_line),
        cmocka_unit_test(test_unknown_key_and_bad_number_are_errors),
        cmocka_unit_test(test_missing_value_in_file_is_an_error),
        cmocka_unit_test(test_flags_win_over_file_and_accept_dashes),
        cmocka_unit_test(test_positional_argument_is_rejected),
        cmocka_unit_test(test_format_round_trips_through_set),
        cmocka_unit_test(test_hash_inside_a_word_is_part_of_the_value),
        cmocka_unit_test(test_quoted_values_keep_spaces_hashes_and_escapes),
        cmocka_unit_test(test_malformed_quotes_are_errors_naming_the_line),
        cmocka_unit_test(test_overlong_line_is_an_error_not_two_lines),
        cmocka_unit_test(test_format_quotes_what_would_not_read_back),
        cmocka_unit_test(test_version_prints_prog_and_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
