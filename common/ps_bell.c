/* ps_bell.c - see ps_bell.h. */
#include "ps_bell.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A pipe's default capacity plus one frame: a reader this size takes the
 * whole pipe in one read, so two readers never split a frame. */
#define PIPE_CAP 65536u
#define BELL_READ_CAP (PIPE_CAP + PS_BELL_FRAME_MAX)
/* Reads per ps_bell_take: bounds the work one peer gets per poll. */
#define BELL_READS 4

int ps_bell_pipe(int fds[2], ps_errbuf_t *err)
{
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
        return ps_err_set(err, PS_EIO, "pipe2: %s", strerror(errno));
    /* a pipe holds 16 pages: 64 KiB here, 1 MiB where pages are 64 KiB;
     * it must not hold more than a reader takes in one read */
    fcntl(fds[1], F_SETPIPE_SZ, (int)PIPE_CAP);
    int cap = fcntl(fds[1], F_GETPIPE_SZ);
    if (cap > 0 && (size_t)cap <= PIPE_CAP)
        return PS_OK;
    close(fds[0]);
    close(fds[1]);
    return ps_err_set(err, PS_EIO, "a pipe holds %d bytes, more than one read of %u takes", cap,
                      PIPE_CAP);
}

int ps_bell_open(int32_t pid, int32_t fd, int for_write, ps_errbuf_t *err)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)pid, (int)fd);
    int f = open(path, (for_write ? O_WRONLY : O_RDONLY) | O_NONBLOCK | O_CLOEXEC);
    if (f < 0) {
        ps_err_set(err, PS_EPERM, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(f, &st) != 0 || !S_ISFIFO(st.st_mode) || st.st_uid != getuid()) {
        close(f);
        ps_err_set(err, PS_EPERM, "%s is not a pipe of our user", path);
        return -1;
    }
    return f;
}

int ps_bell_ring(int fd, const Ps__Header *h)
{
    uint8_t frame[PS_BELL_FRAME_MAX];
    size_t len = ps__header__get_packed_size(h);
    if (fd < 0 || len == 0 || len > sizeof frame - 4)
        return PS_EAGAIN;
    uint32_t n = (uint32_t)len;
    for (int i = 0; i < 4; i++)
        frame[i] = (uint8_t)(n >> (8 * i));
    ps__header__pack(h, frame + 4);
    ssize_t w;
    do
        w = write(fd, frame, len + 4);
    while (w < 0 && errno == EINTR);
    /* a write of at most PIPE_BUF bytes is all or nothing */
    return w == (ssize_t)(len + 4) ? PS_OK : PS_EAGAIN;
}

/* Calls fn for each complete frame at the reader's start, then moves what
 * is left of a frame to the front. */
static int take_frames(ps_bell_reader_t *r, ps_bell_frame_fn fn, void *arg)
{
    size_t pos = 0;
    int rc = PS_OK;
    while (rc == PS_OK && r->used - pos >= 4) {
        const uint8_t *p = r->buf + pos;
        uint32_t len =
            (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        if (len == 0 || len > PS_BELL_FRAME_MAX - 4)
            return PS_EPROTO;
        if (r->used - pos < 4 + (size_t)len)
            break;
        pos += 4 + len;
        rc = fn(arg, p + 4, len);
    }
    memmove(r->buf, r->buf + pos, r->used - pos);
    r->used -= pos;
    return rc;
}

int ps_bell_take(ps_bell_reader_t *r, int fd, ps_bell_frame_fn fn, void *arg)
{
    if (!r->buf) {
        r->buf = ps_xmalloc(BELL_READ_CAP);
        r->cap = BELL_READ_CAP;
        r->used = 0;
    }
    /* what an earlier take left (its callback stopped it) comes first */
    int rc = take_frames(r, fn, arg);
    if (rc != PS_OK)
        return rc;
    for (int i = 0; i < BELL_READS; i++) {
        ssize_t n = read(fd, r->buf + r->used, r->cap - r->used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN ? PS_OK : PS_ENET;
        if (n == 0)
            return PS_ENET;
        r->used += (size_t)n;
        if ((rc = take_frames(r, fn, arg)) != PS_OK)
            return rc;
    }
    return PS_OK;
}

void ps_bell_reader_clear(ps_bell_reader_t *r)
{
    r->used = 0;
}

void ps_bell_reader_free(ps_bell_reader_t *r)
{
    free(r->buf);
    r->buf = NULL;
    r->used = r->cap = 0;
}
