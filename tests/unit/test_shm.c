/* test_shm.c - ps_shm: a region made here is mapped again through
 * /proc/<pid>/fd (one memory, both mappings), and anything that is not the
 * region offered is refused: another nonce or size, a descriptor that is
 * not a sealed memfd, another host's identity. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ps_shm.h"

#define BYTES (1u << 20)

static void test_attached_region_is_the_same_memory(void **state)
{
    (void)state;
    int fd;
    void *mine, *theirs;
    ps_errbuf_t err;
    assert_int_equal(ps_shm_create(BYTES, 42, &fd, &mine, &err), PS_OK);
    assert_int_equal(ps_shm_attach(getpid(), fd, BYTES, 42, &theirs, &err), PS_OK);
    assert_ptr_not_equal(mine, theirs);
    ((volatile char *)mine)[PS_SHM_HEADER_BYTES] = 7;
    assert_int_equal(((volatile char *)theirs)[PS_SHM_HEADER_BYTES], 7);
    ps_shm_unmap(&theirs, BYTES);
    assert_null(theirs);
    ps_shm_unmap(&theirs, BYTES); /* twice is fine */
    ps_shm_unmap(&mine, BYTES);
    close(fd);
}

static void test_another_nonce_or_size_is_refused(void **state)
{
    (void)state;
    int fd;
    void *mine, *theirs;
    ps_errbuf_t err;
    assert_int_equal(ps_shm_create(BYTES, 42, &fd, &mine, &err), PS_OK);
    assert_int_equal(ps_shm_attach(getpid(), fd, BYTES, 43, &theirs, &err), PS_EINVAL);
    assert_null(theirs);
    assert_non_null(strstr(err.msg, "not the region offered"));
    assert_int_equal(ps_shm_attach(getpid(), fd, BYTES / 2, 42, &theirs, &err), PS_EINVAL);
    assert_non_null(strstr(err.msg, "the offer says"));
    assert_int_equal(ps_shm_attach(getpid(), 9999, BYTES, 42, &theirs, &err), PS_EPERM);
    assert_non_null(strstr(err.msg, "/fd/9999"));
    ps_shm_unmap(&mine, BYTES);
    close(fd);
}

static void test_unsealed_memfd_is_refused(void **state)
{
    (void)state;
    /* a region that could shrink under the shard's mapping */
    int fd = memfd_create("ps-shm", MFD_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, BYTES), 0);
    void *theirs;
    ps_errbuf_t err;
    assert_int_equal(ps_shm_attach(getpid(), fd, BYTES, 42, &theirs, &err), PS_EINVAL);
    assert_non_null(strstr(err.msg, "not a sealed memfd"));
    close(fd);
}

static void test_same_host_needs_boot_namespace_and_user(void **state)
{
    (void)state;
    ps_shm_host_t me;
    ps_shm_host(&me);
    assert_true(strlen(me.boot_id) == 36);
    assert_true(me.pid_ns != 0);
    assert_null(ps_shm_same_host(me.boot_id, me.pid_ns, me.uid));
    assert_non_null(ps_shm_same_host("00000000-0000-0000-0000-000000000000", me.pid_ns, me.uid));
    assert_non_null(ps_shm_same_host(NULL, me.pid_ns, me.uid));
    assert_non_null(ps_shm_same_host(me.boot_id, me.pid_ns + 1, me.uid));
    assert_non_null(ps_shm_same_host(me.boot_id, me.pid_ns, me.uid + 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attached_region_is_the_same_memory),
        cmocka_unit_test(test_another_nonce_or_size_is_refused),
        cmocka_unit_test(test_unsealed_memfd_is_refused),
        cmocka_unit_test(test_same_host_needs_boot_namespace_and_user),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
