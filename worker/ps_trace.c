/* ps_trace.c - the worker's timeline file (see ps_trace.h). Spans go
 * straight to the temp file's stdio buffer as they happen: some tens
 * per step, each one fprintf, so tracing costs well under a microsecond a
 * span and holds nothing in memory. */
#include "ps_trace.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ps_file.h"
#include "ps_json.h"

struct ps_trace {
    ps_file_t *file; /* NULL once the traced steps are written */
    char path[PATH_MAX];
    uint32_t rank;
    uint64_t steps_left;
};

/* err's detail (which names the path) said to be about trace_dir. */
static int about_trace_dir(ps_errbuf_t *err)
{
    ps_errbuf_t e = *err;
    return ps_err_set(err, e.code, "trace_dir: %s", e.msg);
}

#define PS_TRACE_NAME(e, name) name,
static const char *const span_names[PS_SPAN_COUNT] = {PS_TRACE_SPANS(PS_TRACE_NAME)};
#undef PS_TRACE_NAME

ps_trace_t *ps_trace_open(const char *dir, uint32_t rank, const char *label, uint64_t n_steps,
                          ps_errbuf_t *err)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        ps_err_set(err, PS_EIO, "trace_dir '%s': cannot create it: %s", dir, strerror(errno));
        return NULL;
    }
    ps_trace_t *t = ps_xcalloc(1, sizeof *t);
    int n = snprintf(t->path, sizeof t->path, "%s/worker-%u.json", dir, rank);
    if (n < 0 || (size_t)n >= sizeof t->path) {
        ps_err_set(err, PS_EIO, "trace_dir '%s': path too long", dir);
        free(t);
        return NULL;
    }
    if (!(t->file = ps_file_create(t->path, 0644, err))) {
        about_trace_dir(err);
        free(t);
        return NULL;
    }
    t->rank = rank;
    t->steps_left = n_steps ? n_steps : 1;
    json_t *name = ps_json_string(label);
    char *quoted = json_dumps(name, JSON_ENCODE_ANY);
    fprintf(ps_file_stream(t->file),
            "[{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%u,\"tid\":0,"
            "\"args\":{\"name\":%s}}",
            rank, quoted ? quoted : "\"worker\"");
    free(quoted);
    json_decref(name);
    return t;
}

int ps_trace_on(const ps_trace_t *t)
{
    return t && t->file;
}

void ps_trace_span(ps_trace_t *t, ps_span_t kind, int64_t begin_ns, int64_t end_ns, int64_t arg)
{
    if (!ps_trace_on(t) || (unsigned)kind >= PS_SPAN_COUNT)
        return;
    FILE *f = ps_file_stream(t->file);
    int64_t dur = end_ns > begin_ns ? end_ns - begin_ns : 0;
    fprintf(f,
            ",\n{\"name\":\"%s\",\"ph\":\"X\",\"pid\":%u,\"tid\":0,\"ts\":%lld.%03lld,"
            "\"dur\":%lld.%03lld",
            span_names[kind], t->rank, (long long)(begin_ns / 1000), (long long)(begin_ns % 1000),
            (long long)(dur / 1000), (long long)(dur % 1000));
    if (arg >= 0)
        fprintf(f, ",\"args\":{\"%s\":%lld}",
                kind == PS_SPAN_STEP                                  ? "clock"
                : kind == PS_SPAN_WAIT_SERVER || kind == PS_SPAN_PUSH ? "table"
                                                                      : "micro",
                (long long)arg);
    fputc('}', f);
}

/* Closes the array and renames the file into place. */
static int finish(ps_trace_t *t, ps_errbuf_t *err)
{
    if (!t->file)
        return PS_OK;
    fputs("]\n", ps_file_stream(t->file));
    int rc = ps_file_commit(&t->file, err);
    return rc == PS_OK ? PS_OK : about_trace_dir(err);
}

int ps_trace_step_done(ps_trace_t *t, ps_errbuf_t *err)
{
    if (!ps_trace_on(t))
        return PS_OK;
    if (--t->steps_left > 0 && !ferror(ps_file_stream(t->file)))
        return PS_OK;
    return finish(t, err);
}

int ps_trace_close(ps_trace_t **tp, ps_errbuf_t *err)
{
    ps_trace_t *t = *tp;
    if (!t)
        return PS_OK;
    int rc = finish(t, err);
    free(t);
    *tp = NULL;
    return rc;
}
