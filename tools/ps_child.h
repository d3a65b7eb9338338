/* ps_child.h - the child processes of a tool (ps-launch's servers and
 * workers, ps-tune's trials): start one with its stdout on a pipe, read
 * that pipe a line at a time, reap it without blocking, stop a group of
 * them (SIGTERM, then SIGKILL after a grace period), and find the
 * binaries installed beside the tool. Single thread. */
#ifndef PS_CHILD_H
#define PS_CHILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PS_CHILD_LINE_MAX 65536

typedef struct {
    char name[48]; /* for log lines: "worker 3", "trial 4.0" */
    pid_t pid;     /* 0: not started */
    int out_fd;    /* its stdout, -1 if not piped or once at EOF */
    bool exited;
    int status;     /* waitpid status once exited */
    bool own_group; /* started in a process group of its own */
    char buf[PS_CHILD_LINE_MAX];
    size_t buf_len;
} ps_child_t;

/* How to start a child. */
typedef struct {
    bool pipe_stdout;        /* stdout to a pipe read with ps_child_read_lines */
    const char *stderr_path; /* stderr to this file (truncated), or NULL: inherited */
    bool own_group;          /* its own process group (stopped as a whole), and it gets
                          * SIGTERM if we die */
    bool ignore_sigint;      /* a terminal's Ctrl-C goes to us, and we stop it */
    bool foreign;            /* not one of our binaries (a --worker-command shell; a
                              * --bin-dir wrapper must exec ours): its
                              * signal mask is left as ours. One of ours starts with
                              * SIGTERM and SIGINT blocked, so that a stop sent while it
                              * is still starting waits in the kernel until its handler
                              * is in place (ps_proc_on_stop unblocks them) instead of
                              * killing it before it can keep its state. */
} ps_child_spawn_t;

/* Starts argv[0] (a path) with argv, stdin from /dev/null. -1 with errno
 * set if it cannot be started (a failing exec shows as exit 127 later). */
int ps_child_start(ps_child_t *c, const char *name, char *const argv[],
                   const ps_child_spawn_t *how);
/* Reads what is in the pipe (non-blocking) and calls on_line for every
 * complete line (without its newline). A line longer than the buffer is
 * dropped. At EOF the pipe is closed and out_fd becomes -1. */
void ps_child_read_lines(ps_child_t *c, void (*on_line)(void *ctx, ps_child_t *c, char *line),
                         void *ctx);
/* Collects the child's exit status if it has exited; true once it has. */
bool ps_child_reap(ps_child_t *c);
/* Sends sig to the child (its group, if it has its own). */
void ps_child_signal(ps_child_t *c, int sig);
/* SIGTERM to every running child of cs[0..n), then SIGKILL to those still
 * running after grace_ms (each logged), and reaps them all. */
void ps_child_stop_all(ps_child_t *cs, size_t n, int64_t grace_ms);
/* "exit status 3", "signal 9". */
const char *ps_child_describe(int status, char *buf, size_t cap);
/* The directory of the running program (/proc/self/exe), into buf. */
void ps_child_bin_dir(char *buf, size_t cap);

#endif
