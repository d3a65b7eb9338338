/* ps_json.h - the project's JSON is written and read by jansson (Debian's
 * libjansson: strict UTF-8 on input, every string escaped on output);
 * these helpers make any bytes from outside safe to put into it. Any
 * thread. */
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

#endif
