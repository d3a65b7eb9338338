/* ps_json.c - minimal JSON helpers for event lines. */
#include "ps_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *ps_json_quote(const char *s, char *buf, size_t cap)
{
    size_t n = 0;
    if (cap < 3) {
        if (cap)
            buf[0] = '\0';
        return buf;
    }
    buf[n++] = '"';
    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(buf + n, cap - n, "\\u%04x", c);
        } else {
            buf[n++] = (char)c;
        }
    }
    buf[n++] = '"';
    buf[n] = '\0';
    return buf;
}

static const char *find_value(const char *line, const char *key)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    while (*p == ' ')
        p++;
    return p;
}

int ps_json_get_number(const char *line, const char *key, double *out)
{
    const char *p = find_value(line, key);
    if (!p)
        return -1;
    char *end;
    double v = strtod(p, &end);
    if (end == p)
        return -1;
    *out = v;
    return 0;
}

int ps_json_get_string(const char *line, const char *key, char *buf, size_t cap)
{
    const char *p = find_value(line, key);
    if (!p || *p != '"')
        return -1;
    const char *end = strchr(p + 1, '"');
    if (!end)
        return -1;
    snprintf(buf, cap, "%.*s", (int)(end - p - 1), p + 1);
    return 0;
}
