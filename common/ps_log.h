/* ps_log.h - one line per event on stderr (or log_file); any thread.
 * Format: 2024-05-01T12:00:01.123Z ps-server[4121] W shard 3: ... */
#ifndef PS_LOG_H
#define PS_LOG_H

#include "ps_enum.h"

/* The levels, least severe first (see ps_enum.h). */
#define PS_LOG_LEVEL_MAP(XX) \
    XX(DEBUG, "debug")       \
    XX(INFO, "info")         \
    XX(NOTICE, "notice")     \
    XX(WARN, "warn")         \
    XX(ERROR, "error")

#define PS_LOG_MEMBER(e, s) PS_ENUM_MEMBER(PS_LOG_, e)
typedef enum { PS_LOG_LEVEL_MAP(PS_LOG_MEMBER) } ps_log_level_t;
/* "debug" ... "error", NULL: for option tables. */
extern const char *const ps_log_level_names[];

extern int ps_log_level_current;

/* Sets the program name shown in each line and the minimum level. */
void ps_log_init(const char *progname, ps_log_level_t level);
/* Parses "debug|info|notice|warn|error"; returns -1 if unknown. */
int ps_log_level_parse(const char *name);
/* The descriptor log lines go to (2, or log_file's). */
int ps_log_fd(void);
/* Appends to path instead of stderr. Returns 0, or -1 with errno set. */
int ps_log_open_file(const char *path);

void ps_log_write(ps_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Checks the level before formatting anything. */
#define ps_log(level, ...)                        \
    do {                                          \
        if ((int)(level) >= ps_log_level_current) \
            ps_log_write((level), __VA_ARGS__);   \
    } while (0)

#endif
