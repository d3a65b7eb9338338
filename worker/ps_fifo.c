/* ps_fifo.c - see ps_fifo.h. A message is a uint64 length (host order: the
 * two ends share a host) and that many bytes. */
#include "ps_fifo.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ps_err.h"

#define FIFO_SIZE (1 << 20) /* asked of the kernel (pipe-max-size's default) */
#define READ_ROOM (64 << 10)
#define SMALL_PAGES 16                 /* a step's ABORT, SYNC and SAVED messages */
#define BACKLOG_MAX ((size_t)64 << 20) /* read ahead into memory, at most */
#define OPEN_FLAGS (O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW)

void ps_fifo_init(ps_fifo_t *f)
{
    *f = (ps_fifo_t){.fd = -1, .hold_fd = -1};
}

void ps_fifo_close(ps_fifo_t *f)
{
    if (f->fd >= 0)
        close(f->fd);
    if (f->hold_fd >= 0)
        close(f->hold_fd);
    free(f->buf);
    ps_fifo_init(f);
}

/* fd is a FIFO of this user's that no one else may open (a path in a
 * directory others can write may have been swapped under us). */
static bool is_ours(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode) && st.st_uid == geteuid() &&
           (st.st_mode & 077) == 0;
}

/* The capacity the kernel gives the FIFO f->fd, into f->room; false if it
 * says none. */
static bool read_room(ps_fifo_t *f)
{
    int room = fcntl(f->fd, F_GETPIPE_SZ);
    f->room = room > 0 ? (size_t)room : 0;
    return f->room > 0;
}

const char *ps_fifo_make(ps_fifo_t *f, const char *path)
{
    ps_fifo_init(f);
    unlink(path); /* a crashed run's */
    const char *why = NULL;
    if (mkfifo(path, 0600) != 0 || (f->fd = open(path, O_RDONLY | OPEN_FLAGS)) < 0 ||
        (f->hold_fd = open(path, O_WRONLY | OPEN_FLAGS)) < 0)
        why = strerror(errno);
    else if (!is_ours(f->fd))
        why = "not a FIFO of this user's alone";
    if (!why) {
        (void)fcntl(f->fd, F_SETPIPE_SZ, FIFO_SIZE); /* the default 64 KB still works */
        if (read_room(f))
            return NULL;
        why = strerror(errno);
    }
    ps_fifo_close(f);
    unlink(path);
    return why;
}

const char *ps_fifo_open_writer(ps_fifo_t *f, const char *path)
{
    ps_fifo_init(f);
    const char *why = NULL;
    if ((f->hold_fd = open(path, O_RDONLY | OPEN_FLAGS)) < 0 ||
        (f->fd = open(path, O_WRONLY | OPEN_FLAGS)) < 0)
        why = strerror(errno);
    else if (!is_ours(f->fd))
        why = "not a FIFO of this user's alone";
    else if (!read_room(f))
        why = strerror(errno);
    if (why)
        ps_fifo_close(f);
    return why;
}

bool ps_fifo_fits(const ps_fifo_t *f, uint32_t messages, uint64_t bytes)
{
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || f->fd < 0)
        return false;
    uint64_t pg = (uint64_t)page;
    uint64_t pages = (uint64_t)messages * ((sizeof(uint64_t) + bytes + pg - 1) / pg + 1);
    return (pages + SMALL_PAGES) * pg <= f->room;
}

bool ps_fifo_pending(const ps_fifo_t *f)
{
    return f->fd >= 0 && f->off < f->len;
}

int ps_fifo_flush(ps_fifo_t *f)
{
    while (ps_fifo_pending(f)) {
        ssize_t n = write(f->fd, f->buf + f->off, f->len - f->off);
        if (n > 0)
            f->off += (size_t)n;
        else if (n < 0 && errno == EINTR)
            continue;
        else if (n < 0 && errno == EAGAIN)
            return PS_OK;
        else
            return PS_ENET;
    }
    f->off = f->len = 0;
    return PS_OK;
}

/* Room for `more` bytes after buf[len]; the bytes before off are dropped
 * only when there is not (a take then costs no move of what follows it). */
static void reserve(ps_fifo_t *f, size_t more)
{
    if (f->cap - f->len >= more)
        return;
    if (f->off) {
        memmove(f->buf, f->buf + f->off, f->len - f->off);
        f->len -= f->off;
        f->off = 0;
    }
    if (f->cap - f->len >= more)
        return;
    size_t cap = f->cap ? f->cap : READ_ROOM;
    while (cap - f->len < more)
        cap *= 2;
    f->buf = ps_xrealloc(f->buf, cap);
    f->cap = cap;
}

/* Appends parts[0..n) to the buffer, skipping their first `skip` bytes. */
static void keep(ps_fifo_t *f, const struct iovec *parts, int n, size_t skip)
{
    for (int i = 0; i < n; i++) {
        size_t len = parts[i].iov_len;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        reserve(f, len - skip);
        memcpy(f->buf + f->len, (const char *)parts[i].iov_base + skip, len - skip);
        f->len += len - skip;
        skip = 0;
    }
}

int ps_fifo_write(ps_fifo_t *f, const void *head, size_t head_len, const void *data, size_t bytes)
{
    uint64_t len = head_len + bytes;
    if (sizeof len + len > f->room)
        return PS_EINVAL;
    if (ps_fifo_flush(f) != PS_OK)
        return PS_ENET;
    struct iovec parts[3] = {{&len, sizeof len}, {(void *)head, head_len}, {(void *)data, bytes}};
    int n = bytes ? 3 : 2;
    size_t done = 0;
    if (!ps_fifo_pending(f)) {
        ssize_t w;
        do
            w = writev(f->fd, parts, n);
        while (w < 0 && errno == EINTR);
        if (w < 0 && errno != EAGAIN)
            return PS_ENET;
        done = w > 0 ? (size_t)w : 0;
    }
    keep(f, parts, n, done);
    return PS_OK;
}

void ps_fifo_fill(ps_fifo_t *f)
{
    if (f->fd < 0)
        return;
    while (f->len - f->off < BACKLOG_MAX) {
        reserve(f, READ_ROOM);
        ssize_t n = read(f->fd, f->buf + f->len, f->cap - f->len);
        if (n > 0)
            f->len += (size_t)n;
        else if (!(n < 0 && errno == EINTR))
            return; /* empty (EAGAIN); never end-of-file: we hold a writer */
    }
}

int ps_fifo_take(ps_fifo_t *f, const void **msg, size_t *len)
{
    ps_fifo_fill(f);
    uint64_t n;
    size_t have = f->fd >= 0 ? f->len - f->off : 0;
    if (have < sizeof n)
        return 1;
    memcpy(&n, f->buf + f->off, sizeof n);
    if (n > f->room) /* no sender writes more */
        return -1;
    if (have - sizeof n < n)
        return 1;
    *msg = f->buf + f->off + sizeof n;
    *len = (size_t)n;
    f->off += sizeof n + (size_t)n;
    if (f->off == f->len) /* the bytes stay where *msg points until the next call */
        f->off = f->len = 0;
    return 0;
}
