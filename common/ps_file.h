/* ps_file.h - replace a file atomically and durably: write a fresh temp file
 * beside the target, fsync it, rename it over the target, fsync the
 * directory. Any thread, and a forked child (no locks, no state shared
 * between handles).
 *
 * Contract:
 * - The temp file is created in the target's own directory (rename is atomic
 *   only within one file system) as ".NAME.tmp.XXXXXXXX" (a leading dot and a
 *   random suffix), with open(O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC): it
 *   is always a new inode this process created, never an existing file or a
 *   symlink planted under a guessable name. A name that exists already is
 *   skipped for another random one (at most 64 tries, then PS_EIO).
 * - Its permissions are `mode` less the umask, fixed at creation: the data
 *   is never readable by more than mode allows, even for a moment.
 * - Readers of the target see the old file or the complete new one, never a
 *   mix; after ps_file_commit returns PS_OK the new file survives a crash or
 *   power loss (file and directory entry fsynced).
 * - On any failure, and on ps_file_abort, the temp file is unlinked and the
 *   target is untouched. A crash between create and commit can leave a
 *   ".NAME.tmp.*" file behind; code that scans a directory must ignore names
 *   starting with '.', and may delete such leftovers at startup.
 * - The target path itself is replaced by rename(2): if it is a symlink, the
 *   link is replaced, not its destination.
 * Errors name the target path and the cause, e.g.
 *   "cannot write '/var/lib/ps/x.npy': No space left on device". */
#ifndef PS_FILE_H
#define PS_FILE_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "ps_err.h"

typedef struct ps_file ps_file_t;

/* Starts replacing path: creates its temp file (see above). NULL with err
 * set (PS_EIO) if the directory is missing, read-only, full or hostile. */
ps_file_t *ps_file_create(const char *path, mode_t mode, ps_errbuf_t *err);
/* The temp file as a stdio stream ("wb"), owned by pf: write with fwrite or
 * fprintf; never fclose it. Write errors are collected and reported by
 * ps_file_commit. */
FILE *ps_file_stream(ps_file_t *pf);
/* The temp file's descriptor, for write(2) or sendfile(2); owned by pf. Do
 * not mix with the stream without fflush(ps_file_stream(pf)) first. */
int ps_file_fd(const ps_file_t *pf);
/* Flushes, fsyncs and closes the temp file, renames it over the target and
 * fsyncs the directory. Takes ownership: *pfp is freed and set to NULL
 * whatever the result. PS_OK, or PS_EIO with the path and cause in err: the
 * temp file is then removed and the target untouched, except when only the
 * directory fsync failed (err says so): the new file is then in place but
 * its name may not survive a power loss. */
int ps_file_commit(ps_file_t **pfp, ps_errbuf_t *err);
/* Gives up: closes and unlinks the temp file, frees *pfp and sets it to NULL.
 * NULL-safe and safe to call twice. */
void ps_file_abort(ps_file_t **pfp);

/* The whole sequence for a buffer already in memory (ready files, small
 * state): create, write len bytes of data, commit. PS_OK or PS_EIO. */
int ps_file_write_all(const char *path, const void *data, size_t len, mode_t mode,
                      ps_errbuf_t *err);

#endif
