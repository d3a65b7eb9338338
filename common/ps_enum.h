/* ps_enum.h - enums whose names come from one list. A module writes its
 * enum as an X-macro map, XX(SUFFIX, "name"), and gets from that one map
 * the enum, a NULL-terminated array of names (which option tables take,
 * see PS_OPT_NAMES in ps_config.h) and the value -> name lookup, so a
 * new value cannot be forgotten in one of them. Any thread. */
#ifndef PS_ENUM_H
#define PS_ENUM_H

#include <string.h>

/* Expands a map into enum members PREFIX_SUFFIX, numbered from 0. */
#define PS_ENUM_MEMBER(prefix, e) prefix##e,
/* Expands a map into its names, for `static const char *const x[] = {MAP(PS_ENUM_NAME) NULL}`. */
#define PS_ENUM_NAME(e, s) s,

/* The index of name in names (NULL-terminated), or -1. */
static inline int ps_enum_find(const char *const *names, const char *name)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

/* names[v] if v is a value of the enum, else fallback. */
static inline const char *ps_enum_name(const char *const *names, int v, const char *fallback)
{
    for (int i = 0; names[i]; i++)
        if (i == v)
            return names[i];
    return fallback;
}

#endif
