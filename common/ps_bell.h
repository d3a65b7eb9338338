/* ps_bell.h - the same-host doorbell: the header of a request whose values
 * are in the shared region (ps_shm.h), and the header of its reply, written
 * to a pipe instead of a ZeroMQ socket. One write(2) wakes the thread that
 * polls the pipe; over ZeroMQ the same header also crosses both sides' I/O
 * threads, two more wakeups a way (bench/bench_notice: a round trip 4 us
 * through pipes, 110-120 us through ZeroMQ on an idle 2-core VM).
 *
 * A frame is [uint32 length, little-endian][packed ps.Header] and at most
 * PS_BELL_FRAME_MAX (PIPE_BUF) bytes, so one non-blocking write puts it in
 * the pipe whole or not at all: a full pipe, a too big header or a broken
 * pipe make ps_bell_ring return PS_EAGAIN, and the caller sends the header
 * over ZeroMQ instead. Readers never block. Any thread; no state but the
 * reader's buffer. See docs/architecture.md "Same host". */
#ifndef PS_BELL_H
#define PS_BELL_H

#include <stddef.h>
#include <stdint.h>

#include "ps.pb-c.h"
#include "ps_err.h"

#define PS_BELL_FRAME_MAX 4096u /* PIPE_BUF on Linux: writes up to it are atomic */

/* Makes a pipe, both ends non-blocking and close-on-exec, in fds[0] (read)
 * and fds[1] (write). PS_EIO with err on failure. */
int ps_bell_pipe(int fds[2], ps_errbuf_t *err);
/* Opens process pid's descriptor fd again through /proc/<pid>/fd, which
 * must be a pipe, for reading (for_write false) or writing, non-blocking
 * and close-on-exec. Returns the new descriptor, or -1 with err (PS_EPERM:
 * not ours or not a pipe). */
int ps_bell_open(int32_t pid, int32_t fd, int for_write, ps_errbuf_t *err);
/* Writes header h as one frame to the pipe fd: PS_OK, or PS_EAGAIN if it
 * did not go (too big, pipe full or broken): then nothing was written. */
int ps_bell_ring(int fd, const Ps__Header *h);

/* Bytes read from a pipe, not yet taken as frames. */
typedef struct {
    uint8_t *buf;
    size_t used, cap;
} ps_bell_reader_t;

/* Called with each complete frame's header bytes; its return value, if not
 * PS_OK, stops ps_bell_take (the rest stays in the reader). */
typedef int (*ps_bell_frame_fn)(void *arg, const uint8_t *frame, size_t len);

/* Reads what the pipe fd holds (at most a few reads) and calls fn for each
 * complete frame, in order. PS_OK (nothing there is not an error);
 * PS_ENET: every writer closed the pipe (its process is gone) once what
 * it wrote was taken; PS_EPROTO: a frame's length is 0 or above
 * PS_BELL_FRAME_MAX (the pipe is garbage from here on); or what fn
 * returned. */
int ps_bell_take(ps_bell_reader_t *r, int fd, ps_bell_frame_fn fn, void *arg);
/* Forgets every byte read and not taken (a new peer on the same pipe). */
void ps_bell_reader_clear(ps_bell_reader_t *r);
/* Frees the buffer; NULL-safe, safe twice. */
void ps_bell_reader_free(ps_bell_reader_t *r);

#endif
