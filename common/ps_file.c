/* ps_file.c - temp file + fsync + rename + directory fsync, the one way ps
 * replaces a file. Any thread; fork-safe. */
#include "ps_file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define PS_FILE_TRIES 64

struct ps_file {
    FILE *stream;
    int fd;
    char path[PATH_MAX];
    char tmp[PATH_MAX];
    char dir[PATH_MAX];
};

static uint64_t random_suffix(void)
{
    uint64_t r;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) == (ssize_t)sizeof r)
        return r;
    /* no entropy yet (early boot): still unique enough with O_EXCL retries */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20);
}

/* Splits path into pf->dir and the base name; 0, or -1 if too long. */
static int split_path(ps_file_t *pf, const char *path, const char **base)
{
    if ((size_t)snprintf(pf->path, sizeof pf->path, "%s", path) >= sizeof pf->path)
        return -1;
    const char *slash = strrchr(pf->path, '/');
    if (!slash) {
        snprintf(pf->dir, sizeof pf->dir, ".");
        *base = pf->path;
    } else {
        size_t dlen = slash == pf->path ? 1 : (size_t)(slash - pf->path);
        snprintf(pf->dir, sizeof pf->dir, "%.*s", (int)dlen, pf->path);
        *base = slash + 1;
    }
    return **base ? 0 : -1;
}

ps_file_t *ps_file_create(const char *path, mode_t mode, ps_errbuf_t *err)
{
    ps_file_t *pf = calloc(1, sizeof *pf);
    if (!pf) {
        ps_err_set(err, PS_EIO, "cannot write '%s': out of memory", path);
        return NULL;
    }
    pf->fd = -1;
    const char *base;
    if (split_path(pf, path, &base) != 0) {
        ps_err_set(err, PS_EIO, "cannot write '%.200s': not a file name or too long", path);
        free(pf);
        return NULL;
    }
    size_t dir_len = strlen(pf->path) - strlen(base);
    int e = EEXIST;
    for (int i = 0; i < PS_FILE_TRIES && pf->fd < 0 && e == EEXIST; i++) {
        int n = snprintf(pf->tmp, sizeof pf->tmp, "%.*s.%s.tmp.%016llx", (int)dir_len, pf->path,
                         base, (unsigned long long)random_suffix());
        if (n < 0 || (size_t)n >= sizeof pf->tmp) {
            e = ENAMETOOLONG;
            break;
        }
        pf->fd = open(pf->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        e = pf->fd < 0 ? errno : 0;
    }
    if (pf->fd >= 0 && !(pf->stream = fdopen(pf->fd, "wb")))
        e = errno;
    if (!pf->stream) {
        ps_err_set(err, PS_EIO, "cannot write '%s': %s", path, strerror(e ? e : EEXIST));
        ps_file_abort(&pf);
        return NULL;
    }
    return pf;
}

FILE *ps_file_stream(ps_file_t *pf)
{
    return pf->stream;
}

int ps_file_fd(const ps_file_t *pf)
{
    return pf->fd;
}

/* fsync of the directory makes the rename durable. File systems that cannot
 * fsync a directory (EINVAL) order the rename themselves. */
static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd) != 0 && errno != EINVAL ? -1 : 0;
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

int ps_file_commit(ps_file_t **pfp, ps_errbuf_t *err)
{
    ps_file_t *pf = *pfp;
    *pfp = NULL;
    int e = 0;
    if (fflush(pf->stream) != 0 || ferror(pf->stream))
        e = errno ? errno : EIO;
    else if (fsync(pf->fd) != 0)
        e = errno;
    FILE *stream = pf->stream;
    pf->stream = NULL;
    pf->fd = -1;
    if (fclose(stream) != 0 && !e)
        e = errno;
    if (!e && rename(pf->tmp, pf->path) != 0)
        e = errno;
    if (e) {
        unlink(pf->tmp);
        ps_err_set(err, PS_EIO, "cannot write '%s': %s", pf->path, strerror(e));
        free(pf);
        return PS_EIO;
    }
    int rc = PS_OK;
    if (sync_dir(pf->dir) != 0)
        rc = ps_err_set(err, PS_EIO, "cannot sync directory '%s' of '%s': %s", pf->dir, pf->path,
                        strerror(errno));
    free(pf);
    return rc;
}

void ps_file_abort(ps_file_t **pfp)
{
    ps_file_t *pf = *pfp;
    if (!pf)
        return;
    if (pf->stream)
        fclose(pf->stream);
    else if (pf->fd >= 0)
        close(pf->fd);
    if (pf->fd >= 0 || pf->stream)
        unlink(pf->tmp);
    free(pf);
    *pfp = NULL;
}

int ps_file_write_all(const char *path, const void *data, size_t len, mode_t mode, ps_errbuf_t *err)
{
    ps_file_t *pf = ps_file_create(path, mode, err);
    if (!pf)
        return PS_EIO;
    if (len && fwrite(data, 1, len, pf->stream) != len) {
        int e = errno;
        ps_file_abort(&pf);
        return ps_err_set(err, PS_EIO, "cannot write '%s': %s", path, strerror(e ? e : EIO));
    }
    return ps_file_commit(&pf, err);
}
