/* ps_json.c - minimal JSON helpers for event lines. */
#include "ps_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_err.h"

size_t ps_json_utf8_len(const unsigned char *s)
{
    if (s[0] < 0x80)
        return 1;
    size_t n = s[0] >= 0xf0 && s[0] <= 0xf4   ? 4
               : s[0] >= 0xe0 && s[0] < 0xf0 ? 3
               : s[0] >= 0xc2 && s[0] < 0xe0 ? 2
                                             : 0;
    for (size_t k = 1; k < n; k++)
        if ((s[k] & 0xc0) != 0x80)
            return 0;
    if (n == 3 && ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0)))
        return 0; /* overlong, or a UTF-16 surrogate */
    if (n == 4 && ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90)))
        return 0; /* overlong, or above U+10FFFF */
    return n;
}

char *ps_json_utf8(const char *s)
{
    size_t len = strlen(s);
    char *out = ps_xmalloc(len * 3 + 1), *o = out;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t n = ps_json_utf8_len(p);
        if (n) {
            memcpy(o, p, n);
            o += n;
            p += n;
        } else {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3;
            p++;
        }
    }
    *o = '\0';
    return out;
}

json_t *ps_json_string(const char *s)
{
    char *clean = ps_json_utf8(s ? s : "");
    json_t *v = json_string(clean);
    free(clean);
    return v ? v : json_string("");
}

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
