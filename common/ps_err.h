/* ps_err.h - error codes shared by every module and carried in replies.
 * The numbers are stable: they travel on the wire in Header.status. */
#ifndef PS_ERR_H
#define PS_ERR_H

#include <stddef.h>

#define PS_ERR_MAP(XX)                                    \
    XX(ENOMEM, -1, "out of memory")                       \
    XX(EINVAL, -2, "invalid argument")                    \
    XX(ERANGE, -3, "value out of range")                  \
    XX(EPROTO, -4, "malformed message")                   \
    XX(EAGAIN, -5, "resource busy, try again")            \
    XX(ETIME, -6, "deadline expired")                     \
    XX(ENET, -7, "transport failure")                     \
    XX(EVERSION, -8, "protocol version mismatch")         \
    XX(ENOTABLE, -9, "unknown table")                     \
    XX(ENOJOB, -10, "unknown job")                        \
    XX(ECONFLICT, -11, "conflicts with existing state")   \
    XX(ENONFINITE, -12, "non-finite value")               \
    XX(EIO, -13, "i/o error")                             \
    XX(EFORMAT, -14, "bad file format")                   \
    XX(EINTR, -15, "interrupted")                         \
    XX(EDEAD, -16, "declared dead; send HELLO to rejoin") \
    XX(ERESTARTED, -17, "server restarted; send HELLO")   \
    XX(ESTALE, -18, "job was rolled back; send HELLO")    \
    XX(ENOCKPT, -19, "no such checkpoint")                \
    XX(EPERM, -20, "not permitted for this key's role")   \
    XX(EAUTH, -21, "authentication refused")              \
    XX(EWORLD, -22, "the job's world is incomplete")      \
    XX(EFINISHED, -23, "the job has finished")

typedef enum {
    PS_OK = 0,
#define XX(name, val, msg) PS_##name = val,
    PS_ERR_MAP(XX)
#undef XX
} ps_err_t;

/* The number of error codes (-1 .. -PS_N_ERRORS). */
#define PS_ERR_COUNT(name, val, msg) +1
#define PS_N_ERRORS (0 PS_ERR_MAP(PS_ERR_COUNT))

/* ps-worker's exit status when the job it joins had already finished
 * (PS_EFINISHED): nothing was trained. ps-launch takes it from a worker it
 * restarted as "that rank's part was done". */
#define PS_EXIT_JOB_FINISHED 3

/* Message for a PS_* code; never NULL (unknown codes get a generic text). */
const char *ps_strerror(int err);
/* Stable short name of a code ("EPROTO"), for counters; never NULL. */
const char *ps_errname(int err);

/* Human-readable detail for errors a person must act on (config, files, peers). */
typedef struct {
    int code;
    char msg[512];
} ps_errbuf_t;

/* Formats the detail into err (if not NULL) and returns code, so callers can
 * write `return ps_err_set(err, PS_EINVAL, "...", ...)`. */
int ps_err_set(ps_errbuf_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* malloc/calloc/realloc/strdup that log and abort on failure: only for small
 * allocations whose size we choose. Peer-sized buffers use plain malloc. */
void *ps_xmalloc(size_t n);
void *ps_xcalloc(size_t n, size_t size);
void *ps_xrealloc(void *p, size_t n);
char *ps_xstrdup(const char *s);

#endif
