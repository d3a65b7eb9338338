/* ps_child.c - see ps_child.h. */
#include "ps_child.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ps_log.h"
#include "ps_time.h"

/* In the child, before exec: its file descriptors and signals. */
static void child_setup(const ps_child_spawn_t *how, int out_w, const sigset_t *parent_mask)
{
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0)
        dup2(devnull, 0);
    if (out_w >= 0)
        dup2(out_w, 1);
    if (how->stderr_path) {
        int e = open(how->stderr_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (e >= 0)
            dup2(e, 2);
    }
    if (how->own_group) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
    }
    if (how->ignore_sigint)
        signal(SIGINT, SIG_IGN);
    /* forked with SIGTERM and SIGINT blocked (ps_child_start); the mask
     * survives execv and a signal blocked stays pending: a program of ours
     * unblocks them once its handler is in place, a foreign one now */
    if (how->foreign) {
        signal(SIGTERM, SIG_DFL); /* not our handler: a pending stop kills it */
        if (!how->ignore_sigint)
            signal(SIGINT, SIG_DFL);
        sigprocmask(SIG_SETMASK, parent_mask, NULL);
    }
}

int ps_child_start(ps_child_t *c, const char *name, char *const argv[], const ps_child_spawn_t *how)
{
    *c = (ps_child_t){.out_fd = -1, .own_group = how->own_group};
    snprintf(c->name, sizeof c->name, "%s", name);
    int fds[2] = {-1, -1};
    if (how->pipe_stdout && pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    /* blocked before the fork, so that no stop reaches the child between
     * fork and exec, when it has our handler but not our flag to set */
    sigset_t stop, was;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigprocmask(SIG_BLOCK, &stop, &was);
    pid_t pid = fork();
    if (pid == 0) {
        child_setup(how, fds[1], &was);
        execv(argv[0], argv);
        fprintf(stderr, "cannot run '%s': %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    sigprocmask(SIG_SETMASK, &was, NULL);
    if (fds[1] >= 0)
        close(fds[1]);
    if (pid < 0) {
        if (fds[0] >= 0)
            close(fds[0]);
        return -1;
    }
    c->pid = pid;
    if (fds[0] >= 0) {
        fcntl(fds[0], F_SETFL, O_NONBLOCK);
        c->out_fd = fds[0];
    }
    return 0;
}

/* Hands every complete line in the buffer to on_line; keeps the rest. */
static void split_lines(ps_child_t *c, void (*on_line)(void *, ps_child_t *, char *), void *ctx)
{
    char *start = c->buf, *nl;
    while ((nl = memchr(start, '\n', (size_t)(c->buf + c->buf_len - start)))) {
        *nl = '\0';
        on_line(ctx, c, start);
        start = nl + 1;
    }
    c->buf_len = (size_t)(c->buf + c->buf_len - start);
    memmove(c->buf, start, c->buf_len);
}

void ps_child_read_lines(ps_child_t *c, void (*on_line)(void *ctx, ps_child_t *c, char *line),
                         void *ctx)
{
    while (c->out_fd >= 0) {
        if (c->buf_len == sizeof c->buf - 1)
            c->buf_len = 0; /* an absurd line: drop it rather than stall */
        ssize_t n = read(c->out_fd, c->buf + c->buf_len, sizeof c->buf - 1 - c->buf_len);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            return;
        if (n <= 0) {
            close(c->out_fd);
            c->out_fd = -1;
            return;
        }
        c->buf_len += (size_t)n;
        c->buf[c->buf_len] = '\0';
        split_lines(c, on_line, ctx);
    }
}

bool ps_child_reap(ps_child_t *c)
{
    if (c->pid <= 0 || c->exited)
        return c->exited;
    if (waitpid(c->pid, &c->status, WNOHANG) == c->pid)
        c->exited = true;
    return c->exited;
}

void ps_child_signal(ps_child_t *c, int sig)
{
    if (c->pid > 0 && !c->exited)
        kill(c->own_group ? -c->pid : c->pid, sig);
}

void ps_child_stop_all(ps_child_t *cs, size_t n, int64_t grace_ms)
{
    for (size_t i = 0; i < n; i++)
        ps_child_signal(&cs[i], SIGTERM);
    int64_t deadline = ps_time_ms() + grace_ms;
    for (;;) {
        size_t left = 0;
        for (size_t i = 0; i < n; i++)
            left += cs[i].pid > 0 && !ps_child_reap(&cs[i]);
        if (!left)
            return;
        if (ps_time_ms() > deadline)
            break;
        poll(NULL, 0, 20);
    }
    for (size_t i = 0; i < n; i++) {
        if (cs[i].pid <= 0 || cs[i].exited)
            continue;
        ps_log(PS_LOG_WARN, "%s (pid %d) ignored SIGTERM; killing it", cs[i].name, (int)cs[i].pid);
        ps_child_signal(&cs[i], SIGKILL);
        waitpid(cs[i].pid, &cs[i].status, 0);
        cs[i].exited = true;
    }
}

const char *ps_child_describe(int status, char *buf, size_t cap)
{
    if (WIFEXITED(status))
        snprintf(buf, cap, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, cap, "signal %d", WTERMSIG(status));
    else
        snprintf(buf, cap, "status %d", status);
    return buf;
}

void ps_child_bin_dir(char *buf, size_t cap)
{
    ssize_t n = readlink("/proc/self/exe", buf, cap - 1);
    buf[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(buf, '/');
    if (slash)
        *slash = '\0';
}
