/* test_file.c - ps_file: atomic, durable replacement through a fresh temp file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ps_file.h"

static int setup_dir(void **state)
{
    char *dir = strdup("/tmp/ps_test_file_XXXXXX");
    assert_non_null(mkdtemp(dir));
    *state = dir;
    return 0;
}

static int teardown_dir(void **state)
{
    char *dir = *state;
    DIR *d = opendir(dir);
    char path[512];
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    if (d)
        closedir(d);
    rmdir(dir);
    free(dir);
    return 0;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

static char *slurp(const char *path)
{
    static char buf[256];
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_write_all_replaces_target_and_leaves_no_temp(void **state)
{
    const char *dir = *state;
    char path[256];
    snprintf(path, sizeof path, "%s/ready", dir);
    ps_errbuf_t err;
    assert_int_equal(ps_file_write_all(path, "old\n", 4, 0644, &err), PS_OK);
    assert_int_equal(ps_file_write_all(path, "new\n", 4, 0644, &err), PS_OK);
    assert_string_equal(slurp(path), "new\n");
    assert_int_equal(count_entries(dir), 1);
}

static void test_mode_is_set_at_creation_less_umask(void **state)
{
    const char *dir = *state;
    char path[256];
    snprintf(path, sizeof path, "%s/secret", dir);
    ps_errbuf_t err;
    mode_t old = umask(022);
    ps_file_t *pf = ps_file_create(path, 0666, &err);
    assert_non_null(pf);
    struct stat st;
    assert_int_equal(fstat(ps_file_fd(pf), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644); /* before any byte is written */
    ps_file_abort(&pf);
    assert_int_equal(ps_file_write_all(path, "k", 1, 0600, &err), PS_OK);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    umask(old);
}

static void test_abort_keeps_target_and_removes_temp(void **state)
{
    const char *dir = *state;
    char path[256];
    snprintf(path, sizeof path, "%s/ckpt", dir);
    ps_errbuf_t err;
    assert_int_equal(ps_file_write_all(path, "v1", 2, 0644, &err), PS_OK);
    ps_file_t *pf = ps_file_create(path, 0644, &err);
    assert_non_null(pf);
    fputs("half-written", ps_file_stream(pf));
    assert_int_equal(count_entries(dir), 2); /* the temp is beside the target */
    assert_string_equal(slurp(path), "v1");
    ps_file_abort(&pf);
    assert_null(pf);
    ps_file_abort(&pf); /* twice is fine */
    assert_string_equal(slurp(path), "v1");
    assert_int_equal(count_entries(dir), 1);
}

static void test_temp_is_hidden_and_new(void **state)
{
    const char *dir = *state;
    char path[256];
    snprintf(path, sizeof path, "%s/x.npy", dir);
    ps_errbuf_t err;
    ps_file_t *pf = ps_file_create(path, 0644, &err);
    assert_non_null(pf);
    DIR *d = opendir(dir);
    int hidden = 0;
    for (struct dirent *e; (e = readdir(d));)
        hidden += strncmp(e->d_name, ".x.npy.tmp.", 11) == 0;
    closedir(d);
    assert_int_equal(hidden, 1);
    fputs("data", ps_file_stream(pf));
    assert_int_equal(ps_file_commit(&pf, &err), PS_OK);
    assert_null(pf);
    assert_string_equal(slurp(path), "data");
    assert_int_equal(count_entries(dir), 1);
}

static void test_missing_directory_is_an_error_naming_the_path(void **state)
{
    const char *dir = *state;
    char path[256];
    snprintf(path, sizeof path, "%s/no/such/file", dir);
    ps_errbuf_t err;
    assert_null(ps_file_create(path, 0644, &err));
    assert_int_equal(ps_file_write_all(path, "x", 1, 0644, &err), PS_EIO);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "No such file or directory"));
    assert_int_equal(ps_file_write_all("", "x", 1, 0644, &err), PS_EIO);
    snprintf(path, sizeof path, "%s/", dir);
    assert_int_equal(ps_file_write_all(path, "x", 1, 0644, &err), PS_EIO);
}

static void test_relative_name_lands_in_the_current_directory(void **state)
{
    const char *dir = *state;
    char cwd[512];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    ps_errbuf_t err;
    assert_int_equal(ps_file_write_all("rel", "r", 1, 0644, &err), PS_OK);
    assert_int_equal(chdir(cwd), 0);
    char path[256];
    snprintf(path, sizeof path, "%s/rel", dir);
    assert_string_equal(slurp(path), "r");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_all_replaces_target_and_leaves_no_temp,
                                        setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_mode_is_set_at_creation_less_umask, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_abort_keeps_target_and_removes_temp, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_temp_is_hidden_and_new, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_missing_directory_is_an_error_naming_the_path,
                                        setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_relative_name_lands_in_the_current_directory,
                                        setup_dir, teardown_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
