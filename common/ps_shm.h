/* ps_shm.h - the shared regions of the same-host data path: a worker
 * creates one sealed memfd per shard connection, the shard maps it through
 * /proc/<pid>/fd/<fd>. Both sides use these functions; any thread (they
 * keep no state). See docs/architecture.md "Same host". */
#ifndef PS_SHM_H
#define PS_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps_err.h"

/* The region's first bytes: who made it and its size, so the shard knows
 * it mapped the region the HELLO offered. Values start past it. */
#define PS_SHM_HEADER_BYTES 4096u
/* Every slot starts on a cache line. */
#define PS_SHM_ALIGN 64u

/* What identifies this host's boot and this process's view of it. */
typedef struct {
    char boot_id[40]; /* /proc/sys/kernel/random/boot_id, "" if unreadable */
    uint64_t pid_ns;  /* inode of /proc/self/ns/pid, 0 if unreadable */
    uint32_t uid;
} ps_shm_host_t;

/* Reads this process's host identity. */
void ps_shm_host(ps_shm_host_t *h);
/* NULL if a peer with identity (boot_id, pid_ns, uid) shares our host,
 * boot, pid namespace and user; else why not (a static string). */
const char *ps_shm_same_host(const char *boot_id, uint64_t pid_ns, uint32_t uid);

/* Creates a region of bytes (>= PS_SHM_HEADER_BYTES) with nonce in its
 * header: a memfd sealed against shrinking and growing (a peer never finds
 * its mapping cut short) and mapped here. *fd and *base are the caller's
 * (ps_shm_unmap, close). PS_EIO with err on failure. */
int ps_shm_create(uint64_t bytes, uint64_t nonce, int *fd, void **base, ps_errbuf_t *err);
/* Maps the region that process pid holds as fd: it must be a memfd made
 * by ps_shm_create (sealed, bytes long, our user's) whose header carries
 * nonce. The descriptor is closed before returning (the mapping keeps the
 * memory). PS_EPERM or PS_EINVAL with err saying why. */
int ps_shm_attach(int32_t pid, int32_t fd, uint64_t bytes, uint64_t nonce, void **base,
                  ps_errbuf_t *err);
/* Unmaps a region of bytes at *base and sets *base to NULL; NULL-safe. */
void ps_shm_unmap(void **base, uint64_t bytes);

#endif
