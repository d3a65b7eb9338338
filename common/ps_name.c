/* ps_name.c - see ps_name.h. */
#include "ps_name.h"

#include <string.h>

static bool in_set(unsigned char c, const char *extra)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr(extra, c));
}

static int check(const char *what, const char *name, const char *extra, ps_errbuf_t *err)
{
    size_t n = strlen(name);
    if (n == 0 || n > PS_NAME_MAX)
        return ps_err_set(err, PS_EINVAL, "%s name must have 1 to %d bytes, not %zu", what,
                          PS_NAME_MAX, n);
    if (name[0] == '.' || name[0] == '-')
        return ps_err_set(err, PS_EINVAL, "%s name must not start with '%c'", what, name[0]);
    for (size_t i = 0; i < n; i++)
        if (!in_set((unsigned char)name[i], extra))
            return ps_err_set(err, PS_EINVAL,
                              "%s name has byte 0x%02x at %zu: only letters, digits and %s are "
                              "allowed",
                              what, (unsigned char)name[i], i, extra);
    return PS_OK;
}

int ps_name_check_job(const char *name, ps_errbuf_t *err)
{
    return check("job", name, "._-", err);
}

int ps_name_check_table(const char *name, ps_errbuf_t *err)
{
    return check("table", name, "._:-[]", err);
}
