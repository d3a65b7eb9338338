/* ps_config.h - one option table drives the config file parser, the flag
 * parser, --help and the stats socket's config dump. Used at startup only.
 *
 * Order (later wins): defaults, then `--config FILE`, then `--key value` /
 * `--key=value` flags.
 *
 * File syntax, one option per line: `key value`. The value is the rest of
 * the line, trimmed, up to a comment; a `#` starts a comment only at the
 * start of a line or after whitespace (`/x/run#1/a.csv` is one value). A
 * value in double quotes is taken literally (spaces, ` #`, an empty "")
 * with \" and \\ as its only escapes; nothing but a comment may follow the
 * closing quote. Errors name FILE:LINE, the line and the reason. */
#ifndef PS_CONFIG_H
#define PS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ps_err.h"

#define PS_OPT_STR_MAX 512

typedef enum {
    PS_OPT_T_STR,  /* char[PS_OPT_STR_MAX] */
    PS_OPT_T_INT,  /* int64_t, within [min, max] */
    PS_OPT_T_DBL,  /* double, within [min, max] */
    PS_OPT_T_BOOL, /* bool: yes/no, true/false, on/off, 1/0 */
    PS_OPT_T_ENUM, /* int: index into choices "a|b|c", or into names */
    PS_OPT_T_LIST, /* ps_opt_list_t: a repeatable option, one value per use */
} ps_opt_type_t;

#define PS_OPT_LIST_MAX 128
/* The values a repeatable option was given, in order. */
typedef struct {
    int n;
    char v[PS_OPT_LIST_MAX][PS_OPT_STR_MAX];
} ps_opt_list_t;

typedef struct {
    const char *name;
    ps_opt_type_t type;
    size_t offset;
    size_t size;         /* sizeof the field, checked against type */
    const char *def;     /* default, as text in the file syntax */
    double min, max;     /* INT and DBL bounds */
    const char *choices; /* ENUM given as "a|b|c" */
    const char *help;
    const char *const *names; /* ENUM given as an enum's NULL-terminated names (ps_enum.h) */
    const char *alias;        /* a short flag that means the same ("-s"), or NULL */
} ps_opt_t;

#define PS_OPT_FIELD(T, f) offsetof(T, f), sizeof(((T *)0)->f)
#define PS_OPT_STR(name, T, f, def, help)                                         \
    {                                                                             \
        name, PS_OPT_T_STR, PS_OPT_FIELD(T, f), def, 0, 0, NULL, help, NULL, NULL \
    }
/* A text option with a short flag too (alias "-s"). */
#define PS_OPT_STR_ALIAS(name, alias, T, f, def, help)                             \
    {                                                                              \
        name, PS_OPT_T_STR, PS_OPT_FIELD(T, f), def, 0, 0, NULL, help, NULL, alias \
    }
/* A repeatable option (field: ps_opt_list_t); no default. */
#define PS_OPT_LIST(name, T, f, help)                                             \
    {                                                                             \
        name, PS_OPT_T_LIST, PS_OPT_FIELD(T, f), "", 0, 0, NULL, help, NULL, NULL \
    }
#define PS_OPT_INT(name, T, f, def, lo, hi, help)                                   \
    {                                                                               \
        name, PS_OPT_T_INT, PS_OPT_FIELD(T, f), def, lo, hi, NULL, help, NULL, NULL \
    }
#define PS_OPT_DBL(name, T, f, def, lo, hi, help)                                   \
    {                                                                               \
        name, PS_OPT_T_DBL, PS_OPT_FIELD(T, f), def, lo, hi, NULL, help, NULL, NULL \
    }
#define PS_OPT_BOOL(name, T, f, def, help)                                         \
    {                                                                              \
        name, PS_OPT_T_BOOL, PS_OPT_FIELD(T, f), def, 0, 0, NULL, help, NULL, NULL \
    }
#define PS_OPT_ENUM(name, T, f, def, choices, help)                                   \
    {                                                                                 \
        name, PS_OPT_T_ENUM, PS_OPT_FIELD(T, f), def, 0, 0, choices, help, NULL, NULL \
    }
/* An enum option whose values are the names of an enum (ps_enum.h): the
 * option table, the enum and its name function share one list. */
#define PS_OPT_NAMES(name, T, f, def, names, help)                                  \
    {                                                                               \
        name, PS_OPT_T_ENUM, PS_OPT_FIELD(T, f), def, 0, 0, NULL, help, names, NULL \
    }

typedef struct {
    const char *prog;  /* program name for --help */
    const char *usage; /* one paragraph shown by --help before the options */
    const ps_opt_t *opts;
    size_t n_opts;
} ps_optset_t;

/* How a tool's command line differs from a daemon's (ps_config_load_args). */
typedef struct {
    /* positional arguments follow the flags (ps-ctl's command words) */
    bool positional;
    /* --config is one of the tool's options (a config it passes on), not a
     * file of the tool's own options */
    bool config_is_option;
} ps_args_t;

/* ps_config_load returns this (not an error) after answering --help or
 * --version on stdout; the program then exits 0. */
#define PS_CONFIG_HELP 1

/* Fills cfg with every option's default. Returns PS_OK (defaults are ours;
 * a bad default is a bug and asserts). */
int ps_config_defaults(const ps_optset_t *set, void *cfg);
/* Finds an option by name; NULL if none. */
const ps_opt_t *ps_config_find(const ps_optset_t *set, const char *key);
/* Parses value for key into cfg. PS_EINVAL (unknown key, bad value) or
 * PS_ERANGE (out of bounds) with the reason in err. */
int ps_config_set(const ps_optset_t *set, void *cfg, const char *key, const char *value,
                  ps_errbuf_t *err);
/* Applies every `key value` line of path. On a bad line returns its code with
 * err = "PATH:LINE: 'TEXT': reason". PS_EIO if the file cannot be read. */
int ps_config_load_file(const ps_optset_t *set, void *cfg, const char *path, ps_errbuf_t *err);
/* Defaults, then --config FILE (wherever it is in argv), then the flags.
 * Returns PS_OK, PS_CONFIG_HELP after printing help (--help, -h) or
 * "PROG VERSION" (--version) on stdout, or an error naming the flag or file
 * line. Positional arguments are errors. */
int ps_config_load(const ps_optset_t *set, void *cfg, int argc, char **argv, ps_errbuf_t *err);
/* ps_config_load for a tool, as how says: with positional arguments,
 * *first is set to the index in argv of the first one (argc if none) and
 * they are left to the caller; the flags before them are parsed as
 * ps_config_load does (short aliases too). how NULL: as ps_config_load. */
int ps_config_load_args(const ps_optset_t *set, void *cfg, int argc, char **argv,
                        const ps_args_t *how, int *first, ps_errbuf_t *err);
/* Prints usage and every option with type, default and help. */
void ps_config_help(const ps_optset_t *set, FILE *out);
/* Writes one `key value` line per option into buf (NUL-terminated, truncated
 * to cap), quoting values that would not read back bare (empty, edge
 * spaces, a leading quote, a ` #`). Returns the length it needed. */
size_t ps_config_format(const ps_optset_t *set, const void *cfg, char *buf, size_t cap);
/* Every option and its value as one JSON object (`show config json`):
 * ints, numbers and booleans as such, the rest as strings. Malloc'd, with
 * a final newline; the caller frees. */
char *ps_config_json(const ps_optset_t *set, const void *cfg);
/* The text of the current value of one option into buf. */
void ps_config_value_str(const ps_opt_t *opt, const void *cfg, char *buf, size_t cap);

#endif
