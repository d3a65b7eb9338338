/* ps_log.h - one line per event on stderr (or log_file); any thread.
 * Format: 2024-05-01T12:00:01.123Z ps-server[4121] W shard 3: ... */
#ifndef PS_LOG_H
#define PS_LOG_H

typedef enum {
    PS_LOG_DEBUG = 0,
    PS_LOG_INFO = 1,
    PS_LOG_NOTICE = 2,
    PS_LOG_WARN = 3,
    PS_LOG_ERROR = 4,
} ps_log_level_t;

extern int ps_log_level_current;

/* Sets the program name shown in each line and the minimum level. */
void ps_log_init(const char *progname, ps_log_level_t level);
/* Parses "debug|info|notice|warn|error"; returns -1 if unknown. */
int ps_log_level_parse(const char *name);
/* Appends to path instead of stderr. Returns 0, or -1 with errno set. */
int ps_log_open_file(const char *path);

void ps_log_write(ps_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Checks the level before formatting anything. */
#define ps_log(level, ...)                         \
    do {                                           \
        if ((int)(level) >= ps_log_level_current)  \
            ps_log_write((level), __VA_ARGS__);    \
    } while (0)

#endif
