/* ps_doc.h - one statistics document, three renderings. A daemon adds
 * each field ONCE, with where it goes, and gets:
 *   - the INFO text of the stats socket: `# section` lines, `key:value`
 *     lines (a group's keys prefixed), control bytes escaped;
 *   - JSON (through jansson: escaped, valid UTF-8 whatever the input): one
 *     object, a group as a nested object;
 *   - Prometheus text format 0.0.4 for the fields that carry a metric:
 *     HELP and TYPE once per family, its samples together, label values
 *     escaped.
 * And a table (ps_rows_t) for row-shaped sections (workers, tables): an
 * aligned text table with a header line, and a JSON array of objects.
 * Any thread; a document belongs to the thread that builds it. */
#ifndef PS_DOC_H
#define PS_DOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    PS_METRIC_NONE = 0,
    PS_METRIC_COUNTER,
    PS_METRIC_GAUGE,
} ps_metric_type_t;

/* Where a value goes to /metrics: family name, HELP text, TYPE, and up to
 * three labels (key, value pairs; a NULL key ends them). */
#define PS_METRIC_MAX_LABELS 3
typedef struct {
    const char *name;
    ps_metric_type_t type;
    const char *help;
    const char *label[2 * PS_METRIC_MAX_LABELS]; /* key0, value0, key1, value1, ... */
} ps_metric_t;

typedef struct ps_doc ps_doc_t;

ps_doc_t *ps_doc_new(void);
/* NULL-safe; sets *d to NULL. */
void ps_doc_destroy(ps_doc_t **d);

/* Starts a section: a `# title` line in the text; nothing in JSON. */
void ps_doc_section(ps_doc_t *d, const char *title);
/* Values, in text and JSON under key (within the open group, if any). m
 * (may be NULL) also makes the value a sample of that metric family. */
void ps_doc_str(ps_doc_t *d, const char *key, const char *value);
void ps_doc_int(ps_doc_t *d, const char *key, int64_t value, const ps_metric_t *m);
/* decimals: digits after the point, in text and JSON alike. */
void ps_doc_real(ps_doc_t *d, const char *key, double value, int decimals, const ps_metric_t *m);
/* A sample only /metrics shows (no text or JSON field). */
void ps_doc_metric_only(ps_doc_t *d, double value, const ps_metric_t *m);
/* A histogram only /metrics shows: n_buckets upper bounds le[] with the
 * count of observations in each (not cumulative; counts[n_buckets] holds
 * those above the last bound), their sum and total count. */
void ps_doc_histogram(ps_doc_t *d, const char *name, const char *help, const double *le,
                      const uint64_t *counts, size_t n_buckets, double sum, uint64_t count);

/* A group: the values up to ps_doc_group_end appear in JSON as the object
 * json_key and in the text as text_prefix + key. With metric set (its
 * label[0] names the label; no value), each value of the group is also a
 * sample of that family with the label set to the value's key. */
void ps_doc_group(ps_doc_t *d, const char *json_key, const char *text_prefix,
                  const ps_metric_t *metric);
void ps_doc_group_end(ps_doc_t *d);

/* Renderings, malloc'd and NUL-terminated (the caller frees). */
char *ps_doc_text(const ps_doc_t *d);
char *ps_doc_json(const ps_doc_t *d);
char *ps_doc_prometheus(const ps_doc_t *d);

/* ---- tables ---- */

typedef struct {
    const char *name;  /* JSON key (and the text header unless title is set) */
    const char *title; /* text header, or NULL */
    int width;         /* text column width; negative: left-aligned */
    int decimals;      /* real columns: digits after the point in the text */
    int json_decimals; /* ... and in JSON */
    bool text_only;    /* not a JSON field (rows add their own, ps_rows_json_*) */
} ps_col_t;

typedef struct ps_rows ps_rows_t;

/* A table of n_cols columns (cols borrowed: static tables). */
ps_rows_t *ps_rows_new(const ps_col_t *cols, size_t n_cols);
void ps_rows_destroy(ps_rows_t **t);
/* Starts a row; then one value per column, in order, and any JSON-only
 * fields of the row. */
void ps_rows_add(ps_rows_t *t);
void ps_rows_str(ps_rows_t *t, const char *v);
/* A text cell of text_v but JSON value json_v (e.g. "-" in the text for
 * an empty address, "" in JSON). */
void ps_rows_str2(ps_rows_t *t, const char *text_v, const char *json_v);
void ps_rows_int(ps_rows_t *t, int64_t v);
void ps_rows_real(ps_rows_t *t, double v);
/* Fields of the current row that only its JSON object has. */
void ps_rows_json_int(ps_rows_t *t, const char *key, int64_t v);
void ps_rows_json_str(ps_rows_t *t, const char *key, const char *v);
char *ps_rows_text(const ps_rows_t *t);
char *ps_rows_json(const ps_rows_t *t);

/* Copies s into buf with every control byte (< 0x20, 0x7f) and every byte
 * that is not part of valid UTF-8 written as \xNN, so a name from outside
 * cannot end a line, forge one, or reach a terminal as an escape
 * sequence. Returns buf. */
char *ps_doc_escape(const char *s, char *buf, size_t cap);

#endif
