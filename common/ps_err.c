/* ps_err.c - error messages and aborting allocators; any thread. */
#include "ps_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *ps_strerror(int err)
{
    switch (err) {
    case PS_OK:
        return "ok";
#define XX(name, val, msg) \
    case PS_##name:        \
        return msg;
        PS_ERR_MAP(XX)
#undef XX
    }
    return "unknown error";
}

const char *ps_errname(int err)
{
    switch (err) {
    case PS_OK:
        return "OK";
#define XX(name, val, msg) \
    case PS_##name:        \
        return #name;
        PS_ERR_MAP(XX)
#undef XX
    }
    return "EUNKNOWN";
}

int ps_err_set(ps_errbuf_t *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

static void *check_alloc(void *p, size_t n)
{
    if (!p && n) {
        fprintf(stderr, "fatal: out of memory allocating %zu bytes\n", n);
        abort();
    }
    return p;
}

void *ps_xmalloc(size_t n)
{
    return check_alloc(malloc(n ? n : 1), n);
}

void *ps_xcalloc(size_t n, size_t size)
{
    return check_alloc(calloc(n ? n : 1, size ? size : 1), n * size);
}

void *ps_xrealloc(void *p, size_t n)
{
    return check_alloc(realloc(p, n ? n : 1), n);
}

char *ps_xstrdup(const char *s)
{
    return check_alloc(strdup(s), strlen(s) + 1);
}
