/* ps_proc.c - signal setup for the daemons and tools. */
#include "ps_proc.h"

#include <dirent.h>
#include <stdlib.h>
#include <malloc.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>

#include "ps_log.h"

void ps_proc_on_stop(void (*on_stop)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* ps-launch and ps-tune start us with both blocked (tools/ps_child.h):
     * one sent while we started is delivered now, to the handler */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigprocmask(SIG_UNBLOCK, &stop, NULL);
}

void ps_proc_keep_buffers(void)
{
    /* measured (1 shard x 1 worker, 600 steps over TCP): 73.7k page faults
     * per job before, 24.0k after, the data set's own pages being most of
     * what is left; 32 MiB and 256 MiB leave bigger blocks (a table's
     * whole buffers, a checkpoint) to mmap and give big heaps back */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

void ps_proc_on_reload(void (*on_reload)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_reload;
    sigaction(SIGHUP, &sa, NULL);
}

long ps_proc_raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            rl.rlim_cur = was;
    }
    return rl.rlim_cur == RLIM_INFINITY ? -1 : (long)rl.rlim_cur;
}

long ps_proc_open_fds(long *limit)
{
    struct rlimit rl;
    *limit =
        getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? (long)rl.rlim_cur : -1;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

void ps_failpoint(const char *name)
{
    static const char *fired[16]; /* the names (literals) that stopped us once */
    static size_t n_fired;
    for (size_t i = 0; i < n_fired; i++)
        if (strcmp(fired[i], name) == 0)
            return;
    const char *p = getenv("PS_FAILPOINTS");
    size_t len = strlen(name);
    while (p && *p) {
        size_t n = strcspn(p, ",");
        if (n == len && strncmp(p, name, len) == 0) {
            if (n_fired < sizeof fired / sizeof fired[0])
                fired[n_fired++] = name;
            ps_log(PS_LOG_NOTICE, "failpoint '%s' (PS_FAILPOINTS): stopped until SIGCONT", name);
            raise(SIGSTOP);
            return;
        }
        p += n + (p[n] == ',');
    }
}
