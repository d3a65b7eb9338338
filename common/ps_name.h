/* ps_name.h - what a name from outside may be. Job and table names end up
 * in file paths (a job's checkpoint directory), JSON, Prometheus labels,
 * the stats text protocol and log lines, so they are held to a small
 * charset that is safe in all of them; everything else that is written is
 * escaped anyway (ps_doc, ps_json). Any thread. */
#ifndef PS_NAME_H
#define PS_NAME_H

#include <stdbool.h>

#include "ps_err.h"

#define PS_NAME_MAX 63 /* bytes, without the terminating NUL */

/* A job name: 1 to 63 of [A-Za-z0-9._-], not starting with '.' or '-'
 * (so never "..", a hidden file, or an option). PS_EINVAL with err saying
 * which byte is wrong. */
int ps_name_check_job(const char *name, ps_errbuf_t *err);
/* A table name: 1 to 63 of [A-Za-z0-9._:-] and the brackets of a slice
 * ("dense1.W[0:112]"), not starting with '.'. */
int ps_name_check_table(const char *name, ps_errbuf_t *err);

#endif
