/* ps_config.c - table-driven config: file, flags, help. Startup thread only. */
#include "ps_config.h"

#include "ps_enum.h"
#include "ps_json.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const size_t type_size[] = {
    [PS_OPT_T_STR] = PS_OPT_STR_MAX, [PS_OPT_T_INT] = sizeof(int64_t),
    [PS_OPT_T_DBL] = sizeof(double), [PS_OPT_T_BOOL] = sizeof(bool),
    [PS_OPT_T_ENUM] = sizeof(int),   [PS_OPT_T_LIST] = sizeof(ps_opt_list_t),
};

const ps_opt_t *ps_config_find(const ps_optset_t *set, const char *key)
{
    for (size_t i = 0; i < set->n_opts; i++)
        if (strcmp(set->opts[i].name, key) == 0)
            return &set->opts[i];
    return NULL;
}

/* Index of value among the option's choices, or -1. */
static int enum_index(const ps_opt_t *opt, const char *value)
{
    if (opt->names)
        return ps_enum_find(opt->names, value);
    const char *choices = opt->choices;
    size_t vlen = strlen(value);
    int idx = 0;
    for (const char *p = choices; *p; idx++) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == vlen && strncmp(p, value, len) == 0)
            return idx;
        if (!bar)
            break;
        p = bar + 1;
    }
    return -1;
}

/* "a|b|c", whichever way the option lists its choices. */
static const char *choices_text(const ps_opt_t *opt, char *buf, size_t cap)
{
    if (!opt->names)
        return opt->choices;
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; opt->names[i] && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? "|" : "", opt->names[i]);
    return buf;
}

static int parse_bool(const char *v, bool *out)
{
    static const char *yes[] = {"1", "yes", "true", "on"}, *no[] = {"0", "no", "false", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0)
            return *out = true, 0;
        if (strcasecmp(v, no[i]) == 0)
            return *out = false, 0;
    }
    return -1;
}

static int set_opt(const ps_opt_t *opt, void *cfg, const char *value, ps_errbuf_t *err)
{
    char *field = (char *)cfg + opt->offset;
    char *end;

    switch (opt->type) {
    case PS_OPT_T_LIST: {
        ps_opt_list_t *list = (ps_opt_list_t *)field;
        if (!*value && !err) /* the default: nothing given yet */
            return list->n = 0, PS_OK;
        if (list->n == PS_OPT_LIST_MAX || strlen(value) >= PS_OPT_STR_MAX)
            return ps_err_set(err, PS_ERANGE, "'%s' takes at most %d values of %d bytes", opt->name,
                              PS_OPT_LIST_MAX, PS_OPT_STR_MAX - 1);
        strcpy(list->v[list->n++], value);
        return PS_OK;
    }
    case PS_OPT_T_STR:
        if (strlen(value) >= PS_OPT_STR_MAX)
            return ps_err_set(err, PS_ERANGE, "value of '%s' is longer than %d bytes", opt->name,
                              PS_OPT_STR_MAX - 1);
        strcpy(field, value);
        return PS_OK;
    case PS_OPT_T_INT: {
        errno = 0;
        long long v = strtoll(value, &end, 0);
        if (errno || end == value || *end)
            return ps_err_set(err, PS_EINVAL, "'%s' is not an integer", value);
        if ((double)v < opt->min || (double)v > opt->max)
            return ps_err_set(err, PS_ERANGE, "%s %lld is outside [%.0f, %.0f]", opt->name, v,
                              opt->min, opt->max);
        *(int64_t *)field = v;
        return PS_OK;
    }
    case PS_OPT_T_DBL: {
        errno = 0;
        double v = strtod(value, &end);
        if (errno || end == value || *end || !isfinite(v))
            return ps_err_set(err, PS_EINVAL, "'%s' is not a number", value);
        if (v < opt->min || v > opt->max)
            return ps_err_set(err, PS_ERANGE, "%s %g is outside [%g, %g]", opt->name, v, opt->min,
                              opt->max);
        *(double *)field = v;
        return PS_OK;
    }
    case PS_OPT_T_BOOL:
        if (parse_bool(value, (bool *)field) != 0)
            return ps_err_set(err, PS_EINVAL, "'%s' is not a boolean (yes/no)", value);
        return PS_OK;
    case PS_OPT_T_ENUM: {
        int idx = enum_index(opt, value);
        if (idx < 0) {
            char choices[512];
            return ps_err_set(err, PS_EINVAL, "'%s' is not one of %s", value,
                              choices_text(opt, choices, sizeof choices));
        }
        *(int *)field = idx;
        return PS_OK;
    }
    }
    return ps_err_set(err, PS_EINVAL, "bad option type");
}

int ps_config_defaults(const ps_optset_t *set, void *cfg)
{
    for (size_t i = 0; i < set->n_opts; i++) {
        const ps_opt_t *opt = &set->opts[i];
        assert(opt->size == type_size[opt->type]);
        int rc = set_opt(opt, cfg, opt->def, NULL);
        assert(rc == PS_OK);
        (void)rc;
    }
    return PS_OK;
}

int ps_config_set(const ps_optset_t *set, void *cfg, const char *key, const char *value,
                  ps_errbuf_t *err)
{
    const ps_opt_t *opt = ps_config_find(set, key);
    if (!opt)
        return ps_err_set(err, PS_EINVAL, "unknown option '%s' (see --help)", key);
    return set_opt(opt, cfg, value, err);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* A `#` starts a comment at the start of a line or after whitespace, never
 * inside a word (`/x/run#1/a.csv` is one value) nor inside quotes. */
static int is_comment_at(const char *line, const char *p)
{
    return *p == '#' && (p == line || isspace((unsigned char)p[-1]));
}

/* Unquotes the "..." value starting at p in place (\" and \\ are the only
 * escapes); NULL with *why set if it is malformed. */
static char *unquote(char *line, char *p, const char **why)
{
    char *out = p, *value = p;
    for (p++; *p != '"'; p++) {
        if (!*p || *p == '\n')
            return *why = "unterminated quote", NULL;
        if (*p == '\\') {
            p++;
            if (*p != '"' && *p != '\\')
                return *why = "only \\\" and \\\\ may follow a backslash in quotes", NULL;
        }
        *out++ = *p;
    }
    for (p++; isspace((unsigned char)*p); p++)
        ;
    if (*p && !is_comment_at(line, p))
        return *why = "text after the closing quote", NULL;
    *out = '\0';
    return value;
}

/* Splits one line into key and value (in place). 0: blank or comment; 1: a
 * key with *value (NULL if none); -1 with *why. */
static int split_line(char *line, char **key, char **value, const char **why)
{
    char *p = line;
    while (isspace((unsigned char)*p))
        p++;
    if (!*p || *p == '#')
        return 0;
    *key = p;
    while (*p && !isspace((unsigned char)*p))
        p++;
    char *key_end = p;
    while (isspace((unsigned char)*p))
        p++;
    *key_end = '\0';
    *value = NULL;
    if (!*p || is_comment_at(line, p))
        return 1;
    if (*p == '"')
        return (*value = unquote(line, p, why)) ? 1 : -1;
    *value = p;
    for (; *p; p++)
        if (is_comment_at(line, p))
            break;
    *p = '\0';
    *value = trim(*value);
    return 1;
}

int ps_config_load_file(const ps_optset_t *set, void *cfg, const char *path, ps_errbuf_t *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return ps_err_set(err, PS_EIO, "cannot read config '%s': %s", path, strerror(errno));
    char line[4096];
    int lineno = 0, rc = PS_OK;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char text[4096], *key = NULL, *value = NULL;
        const char *why_split = NULL;
        snprintf(text, sizeof text, "%s", line);
        size_t len = strlen(line);
        int kind = len == sizeof line - 1 && line[len - 1] != '\n' && !feof(f)
                       ? (why_split = "line longer than 4095 bytes", -1)
                       : split_line(line, &key, &value, &why_split);
        if (kind == 0)
            continue;
        ps_errbuf_t why;
        rc = kind < 0 ? ps_err_set(&why, PS_EINVAL, "%s", why_split)
             : value  ? ps_config_set(set, cfg, key, value, &why)
                      : ps_err_set(&why, PS_EINVAL, "option '%s' has no value", key);
        if (rc != PS_OK) {
            ps_err_set(err, rc, "%s:%d: '%.200s': %s", path, lineno, trim(text), why.msg);
            break;
        }
    }
    fclose(f);
    return rc;
}

static void help_with(const ps_optset_t *set, const ps_args_t *how, FILE *out);

/* The option argv[i] names (--key, --key=value or a short alias), its key
 * into key, and its value (next argument or after '='), consuming what it
 * uses. PS_OK, or an error naming the flag. */
static int take_flag(const ps_optset_t *set, int argc, char **argv, int *i, char *key, size_t cap,
                     const char **value, ps_errbuf_t *err)
{
    const char *arg = argv[*i];
    const ps_opt_t *opt = NULL;
    if (strncmp(arg, "--", 2) != 0) {
        for (size_t k = 0; k < set->n_opts && !opt; k++)
            if (set->opts[k].alias && strcmp(set->opts[k].alias, arg) == 0)
                opt = &set->opts[k];
        if (!opt)
            return ps_err_set(err, PS_EINVAL, "unexpected argument '%s' (see --help)", arg);
        snprintf(key, cap, "%s", opt->name);
    } else {
        const char *eq = strchr(arg, '=');
        snprintf(key, cap, "%.*s", eq ? (int)(eq - arg - 2) : (int)strlen(arg + 2), arg + 2);
        /* --ready-file and --ready_file name the same option */
        for (char *k = key; *k; k++)
            if (*k == '-')
                *k = '_';
        if (eq) {
            *value = eq + 1;
            return PS_OK;
        }
        opt = ps_config_find(set, key);
    }
    /* a boolean flag takes the next word only if it is a boolean */
    bool flag_only = false;
    if (opt && opt->type == PS_OPT_T_BOOL)
        flag_only = *i + 1 >= argc || parse_bool(argv[*i + 1], &(bool){false}) != 0;
    if (flag_only)
        *value = "yes";
    else if (*i + 1 < argc)
        *value = argv[++*i];
    else
        return ps_err_set(err, PS_EINVAL, "flag '%s' needs a value", arg);
    return PS_OK;
}

static bool is_flag(const ps_optset_t *set, const char *arg)
{
    if (strncmp(arg, "--", 2) == 0)
        return true;
    for (size_t k = 0; k < set->n_opts; k++)
        if (set->opts[k].alias && strcmp(set->opts[k].alias, arg) == 0)
            return true;
    return false;
}

int ps_config_load_args(const ps_optset_t *set, void *cfg, int argc, char **argv,
                        const ps_args_t *how, int *first, ps_errbuf_t *err)
{
    ps_args_t plain = {false, false};
    if (!how)
        how = &plain;
    ps_config_defaults(set, cfg);
    int end = argc; /* where the positional arguments start */
    for (int i = 1; i < argc; i++) {
        if (how->positional && !is_flag(set, argv[i])) {
            end = i;
            break;
        }
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            help_with(set, how, stdout);
            return PS_CONFIG_HELP;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("%s %s\n", set->prog, PS_VERSION);
            return PS_CONFIG_HELP;
        }
        /* skip the value of a flag that takes one, so it is not taken for a
         * positional argument */
        char key[128];
        const char *value;
        int j = i;
        if (take_flag(set, argc, argv, &j, key, sizeof key, &value, NULL) == PS_OK)
            i = j;
    }
    if (first)
        *first = end;
    for (int i = 1; !how->config_is_option && i < end; i++) {
        const char *path = NULL;
        if (strcmp(argv[i], "--config") == 0 && i + 1 < end)
            path = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            path = argv[i] + 9;
        if (path) {
            int rc = ps_config_load_file(set, cfg, path, err);
            if (rc != PS_OK)
                return rc;
        }
    }
    for (int i = 1; i < end; i++) {
        char key[128];
        const char *value;
        int rc = take_flag(set, end, argv, &i, key, sizeof key, &value, err);
        if (rc != PS_OK)
            return rc;
        if (!how->config_is_option && strcmp(key, "config") == 0)
            continue;
        ps_errbuf_t why;
        rc = ps_config_set(set, cfg, key, value, &why);
        if (rc != PS_OK)
            return ps_err_set(err, rc, "flag '--%s': %s", key, why.msg);
    }
    return PS_OK;
}

int ps_config_load(const ps_optset_t *set, void *cfg, int argc, char **argv, ps_errbuf_t *err)
{
    return ps_config_load_args(set, cfg, argc, argv, NULL, NULL, err);
}

static const char *type_name(const ps_opt_t *opt, char *buf, size_t cap)
{
    static const char *names[] = {"text", "int", "num", "bool", "", "text, repeatable"};
    return opt->type == PS_OPT_T_ENUM ? choices_text(opt, buf, cap) : names[opt->type];
}

static void help_with(const ps_optset_t *set, const ps_args_t *how, FILE *out)
{
    if (how->config_is_option)
        fprintf(out, "%s\n\nOptions (--key value or --key=value, - and _ alike):\n", set->usage);
    else
        fprintf(out,
                "%s\n\nOptions (in a --config file: `key value`; as flags: --key value or "
                "--key=value,\n- and _ alike; flags win over the file):\n",
                set->usage);
    if (!how->config_is_option)
        fprintf(out, "  --%-22s %s\n", "config FILE", "read options from FILE first");
    for (size_t i = 0; i < set->n_opts; i++) {
        const ps_opt_t *o = &set->opts[i];
        char head[700], choices[512];
        snprintf(head, sizeof head, "%s <%s>%s%s", o->name, type_name(o, choices, sizeof choices),
                 o->alias ? ", " : "", o->alias ? o->alias : "");
        fprintf(out, "  --%-22s %s (default: %s)\n", head, o->help, *o->def ? o->def : "\"\"");
    }
    fprintf(out, "  --%-22s %s\n", "help", "show this help");
    fprintf(out, "  --%-22s %s\n", "version", "print the program name and version");
}

void ps_config_help(const ps_optset_t *set, FILE *out)
{
    help_with(set, &(ps_args_t){false, false}, out);
}

void ps_config_value_str(const ps_opt_t *opt, const void *cfg, char *buf, size_t cap)
{
    const char *field = (const char *)cfg + opt->offset;
    switch (opt->type) {
    case PS_OPT_T_STR:
        snprintf(buf, cap, "%s", field);
        break;
    case PS_OPT_T_INT:
        snprintf(buf, cap, "%lld", (long long)*(const int64_t *)field);
        break;
    case PS_OPT_T_DBL:
        snprintf(buf, cap, "%.17g", *(const double *)field);
        break;
    case PS_OPT_T_BOOL:
        snprintf(buf, cap, "%s", *(const bool *)field ? "yes" : "no");
        break;
    case PS_OPT_T_LIST: {
        const ps_opt_list_t *list = (const ps_opt_list_t *)field;
        size_t len = 0;
        buf[0] = '\0';
        for (int k = 0; k < list->n && len < cap; k++)
            len += (size_t)snprintf(buf + len, cap - len, "%s%s", k ? " " : "", list->v[k]);
        break;
    }
    case PS_OPT_T_ENUM: {
        int idx = *(const int *)field;
        if (opt->names) {
            snprintf(buf, cap, "%s", ps_enum_name(opt->names, idx, "?"));
            break;
        }
        const char *p = opt->choices;
        for (int k = 0; k < idx && p; k++) {
            p = strchr(p, '|');
            if (p)
                p++;
        }
        const char *bar = p ? strchr(p, '|') : NULL;
        snprintf(buf, cap, "%.*s", p ? (int)(bar ? (size_t)(bar - p) : strlen(p)) : 0, p ? p : "");
        break;
    }
    }
}

/* value as it must appear in a file to read back as itself: bare when it
 * can, else "..." with \" and \\ escaped. */
static void file_syntax(const char *value, char *out, size_t cap)
{
    size_t len = strlen(value);
    int bare = len > 0 && !isspace((unsigned char)value[0]) && value[0] != '"' && value[0] != '#' &&
               !isspace((unsigned char)value[len - 1]);
    for (const char *p = value + 1; bare && *p; p++)
        if (is_comment_at(value, p))
            bare = 0;
    if (bare || cap < 3) {
        snprintf(out, cap, "%s", value);
        return;
    }
    size_t n = 0;
    out[n++] = '"';
    for (const char *p = value; *p && n + 3 < cap; p++) {
        if (*p == '"' || *p == '\\')
            out[n++] = '\\';
        out[n++] = *p;
    }
    out[n++] = '"';
    out[n] = '\0';
}

size_t ps_config_format(const ps_optset_t *set, const void *cfg, char *buf, size_t cap)
{
    size_t len = 0;
    for (size_t i = 0; i < set->n_opts; i++) {
        const ps_opt_t *opt = &set->opts[i];
        const ps_opt_list_t *list = (const ps_opt_list_t *)((const char *)cfg + opt->offset);
        int n_values = opt->type == PS_OPT_T_LIST ? list->n : 1;
        for (int k = 0; k < n_values; k++) {
            char value[PS_OPT_STR_MAX], quoted[2 * PS_OPT_STR_MAX + 3];
            if (opt->type == PS_OPT_T_LIST)
                snprintf(value, sizeof value, "%s", list->v[k]);
            else
                ps_config_value_str(opt, cfg, value, sizeof value);
            file_syntax(value, quoted, sizeof quoted);
            int n = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0, "%s %s\n",
                             opt->name, quoted);
            len += (size_t)n;
        }
    }
    if (cap && len >= cap)
        buf[cap - 1] = '\0';
    return len;
}

char *ps_config_json(const ps_optset_t *set, const void *cfg)
{
    json_t *o = json_object();
    for (size_t i = 0; i < set->n_opts; i++) {
        const ps_opt_t *opt = &set->opts[i];
        const char *field = (const char *)cfg + opt->offset;
        json_t *v;
        if (opt->type == PS_OPT_T_INT) {
            v = json_integer(*(const int64_t *)field);
        } else if (opt->type == PS_OPT_T_DBL) {
            v = json_real(*(const double *)field);
        } else if (opt->type == PS_OPT_T_BOOL) {
            v = json_boolean(*(const bool *)field);
        } else if (opt->type == PS_OPT_T_LIST) {
            const ps_opt_list_t *list = (const ps_opt_list_t *)field;
            v = json_array();
            for (int k = 0; k < list->n; k++)
                json_array_append_new(v, ps_json_string(list->v[k]));
        } else {
            char value[PS_OPT_STR_MAX];
            ps_config_value_str(opt, cfg, value, sizeof value);
            v = ps_json_string(value);
        }
        json_object_set_new(o, opt->name, v);
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(o);
    size_t n = s ? strlen(s) : 0;
    char *out = ps_xmalloc(n + 2);
    memcpy(out, s ? s : "", n);
    out[n] = '\n';
    out[n + 1] = '\0';
    free(s);
    return out;
}
