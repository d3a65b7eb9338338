/* ps_fifo.h - one end of a one-way link through a FIFO (a named pipe) on
 * this host: length-prefixed messages, non-blocking both ways, a sender's
 * buffer for what the FIFO cannot take at once, a reader's buffer for what
 * it has read and not yet taken. The pipeline's stage links use it between
 * stages on one host (ps_pipe.c); waiting, deadlines and errors that name a
 * peer are theirs. Not thread-safe; one owner per end. */
#ifndef PS_FIFO_H
#define PS_FIFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int fd;               /* reader: the read end; sender: the write end; -1: unused */
    int hold_fd;          /* reader: a write end held, so a read never sees end-of-file
                  * before the sender opens; sender: a read end held, so a
                  * vanished reader is a full FIFO (the caller's deadline),
                  * never EPIPE */
    char *buf;            /* reader: bytes read, not taken; sender: bytes not yet written */
    size_t off, len, cap; /* the bytes are buf[off, len) */
    size_t room;          /* the FIFO's capacity: no message is larger */
} ps_fifo_t;

/* An end that is not open (fd -1): every call below may take it. */
void ps_fifo_init(ps_fifo_t *f);
/* Reader: makes the FIFO at path (mode 0600, replacing what a crashed run
 * left), holds both ends and asks the kernel for 1 MB. NULL, or why not
 * (then f is closed and path removed). */
const char *ps_fifo_make(ps_fifo_t *f, const char *path);
/* Sender: opens the FIFO at path for writing (and a read end, held). NULL,
 * or why not (then f is closed). Both ends refuse a link, a non-FIFO and a
 * FIFO another user owns or may open. */
const char *ps_fifo_open_writer(ps_fifo_t *f, const char *path);
/* Closes both fds and frees the buffer; f is then as ps_fifo_init left it. */
void ps_fifo_close(ps_fifo_t *f);

/* Sender: true if `messages` messages of up to `bytes` bytes each (the
 * caller's header included) fit in the FIFO at once, counted in the
 * kernel's pages (each message's tail may leave a page part empty), with
 * room for 16 pages of small ones besides. */
bool ps_fifo_fits(const ps_fifo_t *f, uint32_t messages, uint64_t bytes);
/* Sender: bytes wait in the buffer. */
bool ps_fifo_pending(const ps_fifo_t *f);
/* Sender: writes what the FIFO takes of the buffer. PS_OK (also when the
 * FIFO is full), PS_ENET with errno kept if a write fails otherwise. */
int ps_fifo_flush(ps_fifo_t *f);
/* Sender: one message of head (head_len bytes) then data (bytes), written
 * as far as the FIFO takes it, the rest kept in the buffer (in order after
 * what was kept before). PS_EINVAL if it is larger than the FIFO (the
 * reader would take it for garbage), PS_ENET as ps_fifo_flush. */
int ps_fifo_write(ps_fifo_t *f, const void *head, size_t head_len, const void *data, size_t bytes);

/* Reader: reads what the FIFO holds into the buffer (at most 64 MB ahead). */
void ps_fifo_fill(ps_fifo_t *f);
/* Reader: fills, then the next whole message: 0 with *msg (valid until the
 * next call on f) and *len; 1 if none is whole yet; -1 if the bytes cannot
 * be a message (a length above the FIFO's room). */
int ps_fifo_take(ps_fifo_t *f, const void **msg, size_t *len);

#endif
