/* ps_log.c - timestamped log lines; a single write() per line keeps lines
 * from different threads and processes whole. */
#include "ps_log.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int ps_log_level_current = PS_LOG_INFO;
static char log_progname[32] = "ps";
static int log_fd = 2;
/* When stderr is journald's stream, journald adds the time and pid; we add <N>. */
static int log_is_journal;

/* systemd.exec(5): JOURNAL_STREAM is "DEVICE:INODE" of the stream systemd
 * connected; it is inherited by children whose stderr went elsewhere
 * (`ps-server 2>file` run from a unit's shell), so it counts only when fd 2
 * is still that very stream. */
static int stderr_is_journal(void)
{
    const char *env = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    int used = 0;
    if (!env || sscanf(env, "%llu:%llu%n", &dev, &ino, &used) != 2 || env[used] != '\0')
        return 0;
    struct stat st;
    if (fstat(2, &st) != 0)
        return 0;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void ps_log_init(const char *progname, ps_log_level_t level)
{
    snprintf(log_progname, sizeof log_progname, "%s", progname);
    ps_log_level_current = (int)level;
    log_is_journal = stderr_is_journal();
}

const char *const ps_log_level_names[] = {PS_LOG_LEVEL_MAP(PS_ENUM_NAME) NULL};

int ps_log_level_parse(const char *name)
{
    for (int i = 0; ps_log_level_names[i]; i++)
        if (strcasecmp(name, ps_log_level_names[i]) == 0)
            return i;
    return -1;
}

int ps_log_fd(void)
{
    return log_fd;
}

int ps_log_open_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        return -1;
    log_fd = fd;
    log_is_journal = 0;
    return 0;
}

void ps_log_write(ps_log_level_t level, const char *fmt, ...)
{
    static const char letters[] = "DINWE";
    static const int syslog_prio[] = {7, 6, 5, 4, 3};
    char line[2048];
    size_t n;

    if (log_is_journal) {
        n = (size_t)snprintf(line, sizeof line, "<%d>", syslog_prio[level]);
    } else {
        struct timeval tv;
        struct tm tm;
        gettimeofday(&tv, NULL);
        gmtime_r(&tv.tv_sec, &tm);
        n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
        n +=
            (size_t)snprintf(line + n, sizeof line - n, ".%03dZ %s[%d] %c ",
                             (int)(tv.tv_usec / 1000), log_progname, (int)getpid(), letters[level]);
    }
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (m < 0)
        msg[0] = '\0';
    /* one event, one line: control bytes from outside (a name, a peer's
     * text) are written as \xNN, so they can neither end the line early
     * and forge another nor reach a terminal as escape sequences */
    for (const unsigned char *p = (const unsigned char *)msg; *p && n < sizeof line - 6; p++) {
        if (*p < 0x20 || *p == 0x7f)
            n += (size_t)snprintf(line + n, sizeof line - n, "\\x%02x", *p);
        else
            line[n++] = (char)*p;
    }
    line[n++] = '\n';
    ssize_t w = write(log_fd, line, n);
    (void)w;
}
