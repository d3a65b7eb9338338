/* ps_json.h - just enough JSON for our one-line event records: escape a
 * string for output, and read a top-level number or string field back from
 * a flat object that we printed ourselves. Any thread. */
#ifndef PS_JSON_H
#define PS_JSON_H

#include <jansson.h>
#include <stddef.h>

/* A copy of s that is valid UTF-8: every byte that is not part of a
 * valid sequence becomes U+FFFD. Malloc'd; the caller frees. */
char *ps_json_utf8(const char *s);
/* A jansson string of s, whatever its bytes (invalid UTF-8 replaced as
 * above; jansson escapes quotes and control bytes). New reference. */
json_t *ps_json_string(const char *s);
/* Length of the valid UTF-8 sequence at s (1 to 4 bytes), or 0 if s does
 * not start one (a stray continuation byte, an overlong form, a
 * surrogate, or a code point above U+10FFFF). */
size_t ps_json_utf8_len(const unsigned char *s);

/* Writes s as a JSON string literal (with quotes) into buf; returns buf. */
char *ps_json_quote(const char *s, char *buf, size_t cap);
/* Finds "key": NUMBER in a flat object. 0 and *out set, or -1 if absent or
 * not a number. */
int ps_json_get_number(const char *line, const char *key, double *out);
/* Finds "key": "STRING" (no escapes inside). 0 and buf set, or -1. */
int ps_json_get_string(const char *line, const char *key, char *buf, size_t cap);

#endif
