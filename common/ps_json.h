/* ps_json.h - just enough JSON for our one-line event records: escape a
 * string for output, and read a top-level number or string field back from
 * a flat object that we printed ourselves. Any thread. */
#ifndef PS_JSON_H
#define PS_JSON_H

#include <stddef.h>

/* Writes s as a JSON string literal (with quotes) into buf; returns buf. */
char *ps_json_quote(const char *s, char *buf, size_t cap);
/* Finds "key": NUMBER in a flat object. 0 and *out set, or -1 if absent or
 * not a number. */
int ps_json_get_number(const char *line, const char *key, double *out);
/* Finds "key": "STRING" (no escapes inside). 0 and buf set, or -1. */
int ps_json_get_string(const char *line, const char *key, char *buf, size_t cap);

#endif
