/* ps_shm.c - see ps_shm.h. */
#include "ps_shm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHM_NAME "ps-shm"
#define SHM_MAGIC 0x314d485350535000ULL /* "\0PSPSHM1" */
#define SHM_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

typedef struct {
    uint64_t magic, nonce, bytes;
} shm_header_t;

void ps_shm_host(ps_shm_host_t *h)
{
    memset(h, 0, sizeof *h);
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f) {
        if (!fgets(h->boot_id, sizeof h->boot_id, f))
            h->boot_id[0] = '\0';
        h->boot_id[strcspn(h->boot_id, "\n")] = '\0';
        fclose(f);
    }
    struct stat st;
    if (stat("/proc/self/ns/pid", &st) == 0)
        h->pid_ns = (uint64_t)st.st_ino;
    h->uid = (uint32_t)getuid();
}

const char *ps_shm_same_host(const char *boot_id, uint64_t pid_ns, uint32_t uid)
{
    ps_shm_host_t me;
    ps_shm_host(&me);
    if (!*me.boot_id || !me.pid_ns)
        return "this host's boot id or pid namespace is unreadable";
    if (!boot_id || strcmp(boot_id, me.boot_id) != 0)
        return "another host (or another boot)";
    /* /proc/<pid> names another process in another pid namespace */
    if (pid_ns != me.pid_ns)
        return "another pid namespace";
    if (uid != me.uid)
        return "another user";
    return NULL;
}

int ps_shm_create(uint64_t bytes, uint64_t nonce, int *fd, void **base, ps_errbuf_t *err)
{
    *fd = -1;
    *base = NULL;
    if (bytes < PS_SHM_HEADER_BYTES)
        return ps_err_set(err, PS_EINVAL, "shared region of %llu bytes is below its header",
                          (unsigned long long)bytes);
    /* no name in /dev/shm: the memory goes when the last holder does */
    int f = memfd_create(SHM_NAME, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (f < 0)
        return ps_err_set(err, PS_EIO, "cannot create a shared region: memfd_create: %s",
                          strerror(errno));
    void *p = MAP_FAILED;
    if (ftruncate(f, (off_t)bytes) != 0 || fcntl(f, F_ADD_SEALS, SHM_SEALS) != 0 ||
        (p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0)) == MAP_FAILED) {
        int e = errno;
        close(f);
        return ps_err_set(err, PS_EIO, "cannot create a shared region of %llu bytes: %s",
                          (unsigned long long)bytes, strerror(e));
    }
    shm_header_t h = {SHM_MAGIC, nonce, bytes};
    memcpy(p, &h, sizeof h);
    *fd = f;
    *base = p;
    return PS_OK;
}

/* Is descriptor f the kind of region ps_shm_create makes, of our user? */
static int check_region(int f, const char *path, uint64_t bytes, ps_errbuf_t *err)
{
    struct stat st;
    if (fstat(f, &st) != 0 || !S_ISREG(st.st_mode))
        return ps_err_set(err, PS_EINVAL, "'%s' is not a regular file", path);
    if (st.st_uid != getuid())
        return ps_err_set(err, PS_EPERM, "'%s' belongs to uid %u, not ours (%u)", path,
                          (unsigned)st.st_uid, (unsigned)getuid());
    if ((uint64_t)st.st_size != bytes)
        return ps_err_set(err, PS_EINVAL, "'%s' has %lld bytes, the offer says %llu", path,
                          (long long)st.st_size, (unsigned long long)bytes);
    /* a region that could shrink could take our mapping away under us (SIGBUS) */
    int seals = fcntl(f, F_GET_SEALS);
    if (seals < 0 || (seals & SHM_SEALS) != SHM_SEALS)
        return ps_err_set(err, PS_EINVAL, "'%s' is not a sealed memfd", path);
    return PS_OK;
}

int ps_shm_attach(int32_t pid, int32_t fd, uint64_t bytes, uint64_t nonce, void **base,
                  ps_errbuf_t *err)
{
    *base = NULL;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)pid, (int)fd);
    if (pid <= 0 || fd < 0 || bytes < PS_SHM_HEADER_BYTES || bytes > (1ULL << 40))
        return ps_err_set(err, PS_EINVAL, "offer of region '%s' (%llu bytes) is out of range", path,
                          (unsigned long long)bytes);
    int f = open(path, O_RDWR | O_CLOEXEC);
    if (f < 0)
        return ps_err_set(err, PS_EPERM, "cannot open '%s': %s", path, strerror(errno));
    int rc = check_region(f, path, bytes, err);
    void *p = MAP_FAILED;
    if (rc == PS_OK &&
        (p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0)) == MAP_FAILED)
        rc = ps_err_set(err, PS_EIO, "cannot map '%s': %s", path, strerror(errno));
    close(f);
    if (rc != PS_OK)
        return rc;
    shm_header_t h;
    memcpy(&h, p, sizeof h);
    if (h.magic != SHM_MAGIC || h.nonce != nonce || h.bytes != bytes) {
        munmap(p, bytes);
        return ps_err_set(err, PS_EINVAL, "'%s' is not the region offered (header differs)", path);
    }
    *base = p;
    return PS_OK;
}

void ps_shm_unmap(void **base, uint64_t bytes)
{
    if (*base)
        munmap(*base, bytes);
    *base = NULL;
}
