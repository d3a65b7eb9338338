/* ps_doc.c - see ps_doc.h. Entries are kept in order and rendered on
 * demand; JSON goes through jansson, which escapes every string. */
#include "ps_doc.h"

#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_err.h"
#include "ps_json.h"

typedef enum { E_SECTION, E_STR, E_INT, E_REAL, E_METRIC, E_HIST, E_GROUP, E_GROUP_END } kind_t;

typedef struct {
    char *name, *help;
    ps_metric_type_t type;
    char *label[2 * PS_METRIC_MAX_LABELS];
} metric_copy_t;

typedef struct {
    kind_t kind;
    char *key;    /* SECTION: title; GROUP: JSON key; HIST: family name */
    char *prefix; /* GROUP: text prefix */
    char *str;
    int64_t i;
    double r;
    int decimals;
    bool has_metric;
    metric_copy_t m; /* the value's own metric, or a GROUP's family */
    double *le;      /* HIST */
    uint64_t *counts;
    size_t n_buckets;
    uint64_t count;
} entry_t;

struct ps_doc {
    entry_t *e;
    size_t n, cap;
    size_t open_group; /* index + 1 of the open GROUP entry, 0 if none */
};

static char *dup_or_null(const char *s)
{
    return s ? ps_xstrdup(s) : NULL;
}

ps_doc_t *ps_doc_new(void)
{
    return ps_xcalloc(1, sizeof(ps_doc_t));
}

static void free_metric(metric_copy_t *m)
{
    free(m->name);
    free(m->help);
    for (int i = 0; i < 2 * PS_METRIC_MAX_LABELS; i++)
        free(m->label[i]);
}

void ps_doc_destroy(ps_doc_t **dp)
{
    ps_doc_t *d = *dp;
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++) {
        entry_t *e = &d->e[i];
        free(e->key);
        free(e->prefix);
        free(e->str);
        free(e->le);
        free(e->counts);
        free_metric(&e->m);
    }
    free(d->e);
    free(d);
    *dp = NULL;
}

static entry_t *add(ps_doc_t *d, kind_t kind, const char *key, const ps_metric_t *m)
{
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 64;
        d->e = ps_xrealloc(d->e, d->cap * sizeof *d->e);
    }
    entry_t *e = &d->e[d->n++];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->key = dup_or_null(key);
    if (m && m->name) {
        e->has_metric = true;
        e->m = (metric_copy_t){ps_xstrdup(m->name), dup_or_null(m->help), m->type, {NULL}};
        for (int i = 0; i < 2 * PS_METRIC_MAX_LABELS && m->label[i]; i += 2) {
            e->m.label[i] = ps_xstrdup(m->label[i]);
            e->m.label[i + 1] = dup_or_null(m->label[i + 1]);
        }
    }
    return e;
}

void ps_doc_section(ps_doc_t *d, const char *title)
{
    add(d, E_SECTION, title, NULL);
}

void ps_doc_str(ps_doc_t *d, const char *key, const char *value)
{
    add(d, E_STR, key, NULL)->str = ps_xstrdup(value ? value : "");
}

void ps_doc_int(ps_doc_t *d, const char *key, int64_t value, const ps_metric_t *m)
{
    add(d, E_INT, key, m)->i = value;
}

void ps_doc_real(ps_doc_t *d, const char *key, double value, int decimals, const ps_metric_t *m)
{
    entry_t *e = add(d, E_REAL, key, m);
    e->r = value;
    e->decimals = decimals;
}

void ps_doc_metric_only(ps_doc_t *d, double value, const ps_metric_t *m)
{
    add(d, E_METRIC, NULL, m)->r = value;
}

void ps_doc_histogram(ps_doc_t *d, const char *name, const char *help, const double *le,
                      const uint64_t *counts, size_t n_buckets, double sum, uint64_t count)
{
    ps_metric_t m = {name, PS_METRIC_NONE, help, {NULL}};
    entry_t *e = add(d, E_HIST, name, &m);
    e->le = ps_xmalloc(n_buckets * sizeof *le);
    memcpy(e->le, le, n_buckets * sizeof *le);
    e->counts = ps_xmalloc((n_buckets + 1) * sizeof *counts);
    memcpy(e->counts, counts, (n_buckets + 1) * sizeof *counts);
    e->n_buckets = n_buckets;
    e->r = sum;
    e->count = count;
}

void ps_doc_group(ps_doc_t *d, const char *json_key, const char *text_prefix,
                  const ps_metric_t *metric)
{
    entry_t *e = add(d, E_GROUP, json_key, metric);
    e->prefix = ps_xstrdup(text_prefix ? text_prefix : "");
    d->open_group = d->n;
}

void ps_doc_group_end(ps_doc_t *d)
{
    add(d, E_GROUP_END, NULL, NULL);
    d->open_group = 0;
}

/* ---- escaping ---- */

char *ps_doc_escape(const char *s, char *buf, size_t cap)
{
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p && o + 5 < cap) {
        size_t n = ps_json_utf8_len(p);
        if (n == 1 && *p >= 0x20 && *p != 0x7f) {
            buf[o++] = (char)*p++;
        } else if (n > 1) {
            memcpy(buf + o, p, n);
            o += n;
            p += n;
        } else {
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", *p++);
        }
    }
    buf[o] = '\0';
    return buf;
}

static double rounded(double v, int decimals)
{
    double f = pow(10, decimals);
    return isfinite(v) ? round(v * f) / f : 0;
}

static json_t *json_num(double v, int decimals)
{
    return json_real(rounded(v, decimals));
}

static char *json_dump(json_t *root)
{
    char *s = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(root);
    if (!s)
        return ps_xstrdup("{}\n");
    size_t n = strlen(s);
    char *out = ps_xmalloc(n + 2);
    memcpy(out, s, n);
    out[n] = '\n';
    out[n + 1] = '\0';
    free(s);
    return out;
}

/* ---- renderings ---- */

typedef struct {
    char *buf;
    size_t len;
    FILE *f;
} text_t;

static void text_open(text_t *t)
{
    t->buf = NULL;
    t->f = open_memstream(&t->buf, &t->len);
    if (!t->f)
        abort(); /* out of memory for a few bytes: as ps_xmalloc does */
}

static char *text_close(text_t *t)
{
    fclose(t->f);
    return t->buf;
}

char *ps_doc_text(const ps_doc_t *d)
{
    text_t t;
    text_open(&t);
    const char *prefix = "";
    char k[512], v[1024];
    for (size_t i = 0; i < d->n; i++) {
        const entry_t *e = &d->e[i];
        switch (e->kind) {
        case E_SECTION:
            fprintf(t.f, "# %s\n", e->key);
            break;
        case E_GROUP:
            prefix = e->prefix;
            break;
        case E_GROUP_END:
            prefix = "";
            break;
        case E_STR:
            fprintf(t.f, "%s%s:%s\n", prefix, ps_doc_escape(e->key, k, sizeof k),
                    ps_doc_escape(e->str, v, sizeof v));
            break;
        case E_INT:
            fprintf(t.f, "%s%s:%lld\n", prefix, ps_doc_escape(e->key, k, sizeof k),
                    (long long)e->i);
            break;
        case E_REAL:
            fprintf(t.f, "%s%s:%.*f\n", prefix, ps_doc_escape(e->key, k, sizeof k), e->decimals,
                    e->r);
            break;
        case E_METRIC:
        case E_HIST:
            break;
        }
    }
    return text_close(&t);
}

char *ps_doc_json(const ps_doc_t *d)
{
    json_t *root = json_object(), *obj = root;
    for (size_t i = 0; i < d->n; i++) {
        const entry_t *e = &d->e[i];
        json_t *v = NULL;
        switch (e->kind) {
        case E_GROUP:
            obj = json_object();
            json_object_set_new(root, e->key, obj);
            continue;
        case E_GROUP_END:
            obj = root;
            continue;
        case E_STR:
            v = ps_json_string(e->str);
            break;
        case E_INT:
            v = json_integer(e->i);
            break;
        case E_REAL:
            v = json_num(e->r, e->decimals);
            break;
        default:
            continue;
        }
        char *key = ps_json_utf8(e->key);
        json_object_set_new(obj, key, v);
        free(key);
    }
    return json_dump(root);
}

/* Prometheus label value: backslash, quote and newline escaped. */
static void put_label_value(FILE *f, const char *s)
{
    char *clean = ps_json_utf8(s);
    for (const char *p = clean; *p; p++) {
        if (*p == '\\' || *p == '"')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else
            fputc(*p, f);
    }
    free(clean);
}

/* The metric of entry i (its own, or its group's with the key as label);
 * NULL if it has none. *group_key is the key to use as label value. */
static const metric_copy_t *metric_of(const ps_doc_t *d, size_t i, const char **group_key)
{
    const entry_t *e = &d->e[i];
    *group_key = NULL;
    if (e->has_metric)
        return &e->m;
    if (e->kind != E_INT && e->kind != E_REAL)
        return NULL;
    for (size_t k = i; k-- > 0;) {
        if (d->e[k].kind == E_GROUP_END)
            return NULL;
        if (d->e[k].kind == E_GROUP) {
            *group_key = e->key;
            return d->e[k].has_metric ? &d->e[k].m : NULL;
        }
    }
    return NULL;
}

static double value_of(const entry_t *e)
{
    return e->kind == E_INT ? (double)e->i : e->r;
}

static void put_sample(FILE *f, const metric_copy_t *m, const char *group_key, double v)
{
    fputs(m->name, f);
    int n = 0;
    for (int k = 0; k < 2 * PS_METRIC_MAX_LABELS; k += 2) {
        if (!m->label[k])
            break;
        const char *val = group_key && k == 0 ? group_key : m->label[k + 1];
        fprintf(f, "%s%s=\"", n++ ? "," : "{", m->label[k]);
        put_label_value(f, val ? val : "");
        fputc('"', f);
    }
    if (n)
        fputc('}', f);
    if (v == floor(v) && fabs(v) < 1e15)
        fprintf(f, " %.0f\n", v);
    else
        fprintf(f, " %.9g\n", v);
}

static void put_histogram(FILE *f, const entry_t *e)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", e->key, e->m.help ? e->m.help : "", e->key);
    uint64_t cum = 0;
    for (size_t b = 0; b < e->n_buckets; b++) {
        cum += e->counts[b];
        fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", e->key, e->le[b], (unsigned long long)cum);
    }
    fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9f\n%s_count %llu\n", e->key,
            (unsigned long long)e->count, e->key, e->r, e->key, (unsigned long long)e->count);
}

char *ps_doc_prometheus(const ps_doc_t *d)
{
    static const char *types[] = {"untyped", "counter", "gauge"};
    text_t t;
    text_open(&t);
    bool *done = ps_xcalloc(d->n ? d->n : 1, sizeof *done);
    for (size_t i = 0; i < d->n; i++) {
        const char *gk;
        const metric_copy_t *m = metric_of(d, i, &gk);
        if (done[i] || (!m && d->e[i].kind != E_HIST))
            continue;
        if (d->e[i].kind == E_HIST) {
            put_histogram(t.f, &d->e[i]);
            continue;
        }
        /* this family's samples, wherever they are in the document */
        fprintf(t.f, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help ? m->help : "", m->name,
                types[m->type]);
        for (size_t j = i; j < d->n; j++) {
            const char *gk2;
            const metric_copy_t *m2 = metric_of(d, j, &gk2);
            if (done[j] || !m2 || d->e[j].kind == E_HIST || strcmp(m2->name, m->name) != 0)
                continue;
            put_sample(t.f, m2, gk2, value_of(&d->e[j]));
            done[j] = true;
        }
    }
    free(done);
    return text_close(&t);
}

/* ---- tables ---- */

typedef struct {
    kind_t kind; /* E_STR, E_INT, E_REAL */
    int col;     /* column index, or -1 for a JSON-only field */
    bool row_start;
    char *key; /* JSON-only fields */
    char *text, *json;
    int64_t i;
    double r;
} cell_t;

struct ps_rows {
    const ps_col_t *cols;
    size_t n_cols;
    cell_t *cells;
    size_t n_cells, cap;
    int next_col; /* column of the next positional cell */
    bool new_row; /* the next cell starts a row */
};

ps_rows_t *ps_rows_new(const ps_col_t *cols, size_t n_cols)
{
    ps_rows_t *t = ps_xcalloc(1, sizeof *t);
    t->cols = cols;
    t->n_cols = n_cols;
    return t;
}

void ps_rows_destroy(ps_rows_t **tp)
{
    ps_rows_t *t = *tp;
    if (!t)
        return;
    for (size_t i = 0; i < t->n_cells; i++) {
        free(t->cells[i].key);
        free(t->cells[i].text);
        free(t->cells[i].json);
    }
    free(t->cells);
    free(t);
    *tp = NULL;
}

void ps_rows_add(ps_rows_t *t)
{
    t->next_col = 0;
    t->new_row = true;
}

static cell_t *cell(ps_rows_t *t, kind_t kind, const char *json_key)
{
    if (t->n_cells == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->cells = ps_xrealloc(t->cells, t->cap * sizeof *t->cells);
    }
    cell_t *c = &t->cells[t->n_cells++];
    *c = (cell_t){.kind = kind, .col = json_key ? -1 : t->next_col, .row_start = t->new_row};
    t->new_row = false;
    if (json_key)
        c->key = ps_xstrdup(json_key);
    else
        t->next_col++;
    return c;
}

void ps_rows_str2(ps_rows_t *t, const char *text_v, const char *json_v)
{
    cell_t *c = cell(t, E_STR, NULL);
    c->text = ps_xstrdup(text_v ? text_v : "");
    c->json = ps_xstrdup(json_v ? json_v : "");
}

void ps_rows_str(ps_rows_t *t, const char *v)
{
    ps_rows_str2(t, v, v);
}

void ps_rows_int(ps_rows_t *t, int64_t v)
{
    cell(t, E_INT, NULL)->i = v;
}

void ps_rows_real(ps_rows_t *t, double v)
{
    cell(t, E_REAL, NULL)->r = v;
}

void ps_rows_json_int(ps_rows_t *t, const char *key, int64_t v)
{
    cell(t, E_INT, key)->i = v;
}

void ps_rows_json_str(ps_rows_t *t, const char *key, const char *v)
{
    cell(t, E_STR, key)->json = ps_xstrdup(v ? v : "");
}

char *ps_rows_text(const ps_rows_t *t)
{
    text_t out;
    text_open(&out);
    for (size_t c = 0; c < t->n_cols; c++)
        fprintf(out.f, "%s%*s", c ? " " : "", t->cols[c].width,
                t->cols[c].title ? t->cols[c].title : t->cols[c].name);
    char esc[1024];
    for (size_t i = 0; i < t->n_cells; i++) {
        const cell_t *c = &t->cells[i];
        if (c->row_start)
            fputc('\n', out.f);
        if (c->col < 0)
            continue;
        const ps_col_t *col = &t->cols[c->col];
        fputs(c->col ? " " : "", out.f);
        if (c->kind == E_STR)
            fprintf(out.f, "%*s", col->width, ps_doc_escape(c->text, esc, sizeof esc));
        else if (c->kind == E_INT)
            fprintf(out.f, "%*lld", col->width, (long long)c->i);
        else
            fprintf(out.f, "%*.*f", col->width, col->decimals, c->r);
    }
    fputc('\n', out.f);
    return text_close(&out);
}

char *ps_rows_json(const ps_rows_t *t)
{
    json_t *arr = json_array(), *row = NULL;
    for (size_t i = 0; i < t->n_cells; i++) {
        const cell_t *c = &t->cells[i];
        if (c->row_start || !row) {
            row = json_object();
            json_array_append_new(arr, row);
        }
        const ps_col_t *col = c->col >= 0 ? &t->cols[c->col] : NULL;
        if (col && col->text_only)
            continue;
        json_t *v = c->kind == E_STR   ? ps_json_string(c->json)
                    : c->kind == E_INT ? json_integer(c->i)
                                       : json_num(c->r, col ? col->json_decimals : 6);
        json_object_set_new(row, col ? col->name : c->key, v);
    }
    return json_dump(arr);
}
