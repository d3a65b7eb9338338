/* ps_proc.h - process plumbing shared by the binaries' main(). */
#ifndef PS_PROC_H
#define PS_PROC_H

/* Routes SIGTERM and SIGINT to on_stop (which should only set a flag) and
 * ignores SIGPIPE, so a vanished peer is an error return, not a death;
 * then unblocks SIGTERM and SIGINT (a parent of ours starts us with them
 * blocked: one that came during startup reaches on_stop now). Call early
 * in main, before the threads of our own: a thread started before it (a
 * library's, at load) keeps them blocked, which is harmless since the
 * main thread takes a signal sent to the process. */
void ps_proc_on_stop(void (*on_stop)(int));
/* Routes SIGHUP to on_reload (which should only set a flag). */
void ps_proc_on_reload(void (*on_reload)(int));

/* Keeps freed message buffers in the process for the next ones: glibc's
 * defaults hand blocks of more than 128 KiB (and a heap top of more than
 * twice that) back to the kernel when freed, so the chunk-sized frames a
 * training step allocates and frees (about 128 KiB to 1 MiB each, every
 * step) were faulted in again at every step. Call once at start, before
 * threads; process-wide (never from the client library). */
void ps_proc_keep_buffers(void);
/* Raises the soft limit on open descriptors to the hard one (a daemon
 * with many peers should not hit 1024 first); returns the limit in force. */
long ps_proc_raise_fd_limit(void);
/* Descriptors open in this process now (counts /proc/self/fd; -1 if it
 * cannot) and the soft limit (*limit). */
long ps_proc_open_fds(long *limit);

/* A named point where a test may freeze this process: if the comma-
 * separated list in $PS_FAILPOINTS names it, logs so and stops the process
 * (SIGSTOP) until a SIGCONT, the first time only (name: a literal), so that a test can act in a window too short
 * to hit from outside (tests/integration/fault_workers.sh kills a shard
 * while every worker stands between the final model and its BYE). Without
 * the variable it costs one getenv. The points: worker.before_bye (both
 * trainers: the final model exported, BYE not yet sent);
 * pipeline.before_barrier (a stage's last step done, the end barrier of
 * the stages not begun). */
void ps_failpoint(const char *name);

#endif
