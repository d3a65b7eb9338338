/* ps_event.c - see ps_event.h. */
#include "ps_event.h"

#include <assert.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ps_err.h"
#include "ps_json.h"

typedef enum { T_INT, T_NUM, T_STR, T_INTS } ftype_t;

typedef struct {
    const char *name;
    ftype_t type;
} field_t;

static const field_t fields[PS_EF_COUNT] = {
#define PS_EVENT_TEST_FIELD(e, s) {"test_" s, T_NUM},
#define PS_EVENT_VAL_FIELD(e, s) {"val_" s, T_NUM},
#define XX(id, name, type) {name, T_##type},
    PS_EVENT_FIELD_MAP(XX)
#undef XX
#undef PS_EVENT_TEST_FIELD
#undef PS_EVENT_VAL_FIELD
};

const char *const ps_event_kind_names[] = {PS_EVENT_KIND_MAP(PS_ENUM_NAME) NULL};

#define COUNT_METRIC(e, s) +1
int ps_event_n_metrics(void)
{
    return 0 PS_EVAL_METRIC_MAP(COUNT_METRIC);
}

ps_event_field_t ps_event_metric_field(ps_eval_set_t set, int k)
{
    if (k < 0 || k >= ps_event_n_metrics())
        return PS_EF_COUNT;
    return (ps_event_field_t)((set == PS_EVAL_TEST ? PS_EF_TEST_LOSS : PS_EF_VAL_LOSS) + k);
}

const char *ps_event_field_name(ps_event_field_t f)
{
    return (unsigned)f < PS_EF_COUNT ? fields[f].name : "?";
}

ps_event_field_t ps_event_field_find(const char *name)
{
    for (int f = 0; f < PS_EF_COUNT; f++)
        if (strcmp(fields[f].name, name) == 0)
            return (ps_event_field_t)f;
    return PS_EF_COUNT;
}

void ps_event_init(ps_event_t *ev, ps_event_kind_t kind)
{
    memset(ev, 0, sizeof *ev);
    ev->kind = kind;
}

static void clear_field(ps_event_t *ev, ps_event_field_t f)
{
    free(ev->str[f]);
    free(ev->ints[f]);
    ev->str[f] = NULL;
    ev->ints[f] = NULL;
    ev->n_ints[f] = 0;
    ev->has[f] = false;
}

void ps_event_fini(ps_event_t *ev)
{
    for (int f = 0; f < PS_EF_COUNT; f++)
        clear_field(ev, (ps_event_field_t)f);
}

void ps_event_set_int(ps_event_t *ev, ps_event_field_t f, int64_t v)
{
    assert(fields[f].type == T_INT);
    ev->i[f] = v;
    ev->has[f] = true;
}

void ps_event_set_num(ps_event_t *ev, ps_event_field_t f, double v)
{
    assert(fields[f].type == T_NUM);
    ev->num[f] = v;
    ev->has[f] = isfinite(v);
}

void ps_event_set_str(ps_event_t *ev, ps_event_field_t f, const char *v)
{
    assert(fields[f].type == T_STR);
    clear_field(ev, f);
    ev->str[f] = ps_xstrdup(v ? v : "");
    ev->has[f] = true;
}

void ps_event_set_ints(ps_event_t *ev, ps_event_field_t f, const int64_t *v, size_t n)
{
    assert(fields[f].type == T_INTS);
    clear_field(ev, f);
    ev->ints[f] = ps_xmalloc((n ? n : 1) * sizeof *v);
    if (n)
        memcpy(ev->ints[f], v, n * sizeof *v);
    ev->n_ints[f] = n;
    ev->has[f] = true;
}

void ps_event_copy_field(ps_event_t *dst, const ps_event_t *src, ps_event_field_t f)
{
    if (!src->has[f])
        return;
    switch (fields[f].type) {
    case T_INT:
        ps_event_set_int(dst, f, src->i[f]);
        break;
    case T_NUM:
        ps_event_set_num(dst, f, src->num[f]);
        break;
    case T_STR:
        ps_event_set_str(dst, f, src->str[f]);
        break;
    case T_INTS:
        ps_event_set_ints(dst, f, src->ints[f], src->n_ints[f]);
        break;
    }
}

char *ps_event_format(const ps_event_t *ev)
{
    json_t *o = json_object();
    json_object_set_new(o, "event",
                        json_string(ps_enum_name(ps_event_kind_names, ev->kind, "unknown")));
    for (int f = 0; f < PS_EF_COUNT; f++) {
        if (!ev->has[f])
            continue;
        json_t *v = NULL;
        switch (fields[f].type) {
        case T_INT:
            v = json_integer(ev->i[f]);
            break;
        case T_NUM:
            v = json_real(ev->num[f]);
            break;
        case T_STR:
            v = ps_json_string(ev->str[f]); /* names may hold any bytes */
            break;
        case T_INTS:
            v = json_array();
            for (size_t k = 0; k < ev->n_ints[f]; k++)
                json_array_append_new(v, json_integer(ev->ints[f][k]));
            break;
        }
        json_object_set_new(o, fields[f].name, v);
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(o);
    return s ? s : ps_xstrdup("{\"event\":\"unknown\"}");
}

void ps_event_print(const ps_event_t *ev, FILE *out)
{
    char *s = ps_event_format(ev);
    fprintf(out, "%s\n", s);
    fflush(out);
    free(s);
}

static void take_field(ps_event_t *ev, ps_event_field_t f, json_t *v)
{
    switch (fields[f].type) {
    case T_INT:
        if (json_is_integer(v))
            ps_event_set_int(ev, f, json_integer_value(v));
        else if (json_is_real(v) && fabs(json_real_value(v)) < PS_EVENT_INT64_LIMIT)
            ps_event_set_int(ev, f, (int64_t)json_real_value(v));
        break;
    case T_NUM:
        if (json_is_number(v))
            ps_event_set_num(ev, f, json_number_value(v));
        break;
    case T_STR:
        if (json_is_string(v))
            ps_event_set_str(ev, f, json_string_value(v));
        break;
    case T_INTS: {
        if (!json_is_array(v))
            break;
        size_t n = json_array_size(v);
        int64_t *a = ps_xmalloc((n ? n : 1) * sizeof *a);
        for (size_t k = 0; k < n; k++)
            a[k] = json_is_integer(json_array_get(v, k)) ? json_integer_value(json_array_get(v, k))
                                                         : 0;
        ps_event_set_ints(ev, f, a, n);
        free(a);
        break;
    }
    }
}

int ps_event_parse(const char *line, ps_event_t *ev)
{
    ps_event_init(ev, PS_EVENT_UNKNOWN);
    json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, NULL);
    json_t *kind = o && json_is_object(o) ? json_object_get(o, "event") : NULL;
    if (!kind || !json_is_string(kind)) {
        json_decref(o);
        return -1;
    }
    int k = ps_enum_find(ps_event_kind_names, json_string_value(kind));
    ev->kind = k < 0 ? PS_EVENT_UNKNOWN : (ps_event_kind_t)k;
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        ps_event_field_t f = ps_event_field_find(key);
        if (f != PS_EF_COUNT)
            take_field(ev, f, v);
    }
    json_decref(o);
    return 0;
}

bool ps_event_has(const ps_event_t *ev, ps_event_field_t f)
{
    return (unsigned)f < PS_EF_COUNT && ev->has[f];
}

double ps_event_num(const ps_event_t *ev, ps_event_field_t f, double fallback)
{
    if (!ps_event_has(ev, f))
        return fallback;
    return fields[f].type == T_INT   ? (double)ev->i[f]
           : fields[f].type == T_NUM ? ev->num[f]
                                     : fallback;
}

const char *ps_event_str(const ps_event_t *ev, ps_event_field_t f)
{
    return ps_event_has(ev, f) && fields[f].type == T_STR ? ev->str[f] : NULL;
}
