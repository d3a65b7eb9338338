/* space.c - ps-tune's search space: the space file, and the values of each
 * trial (seeded random draws, or grid points). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_log.h"
#include "ps_rng.h"
#include "tune.h"

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
        *--e = '\0';
    return s;
}

/* Splits "a, b, c" (inside the parentheses) into trimmed words. */
static int split_args(char *inside, char out[][TUNE_VAL_LEN], int cap)
{
    int n = 0;
    char *save = NULL;
    for (char *w = strtok_r(inside, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        if (n == cap)
            return -1;
        snprintf(out[n++], TUNE_VAL_LEN, "%s", trim(w));
    }
    return n;
}

static int parse_number(const char *s, double *v)
{
    char *end;
    *v = strtod(s, &end);
    return end != s && *trim(end) == '\0' && isfinite(*v) ? 0 : -1;
}

/* p from "KIND(ARGS)": 0, or -1 if the spec is not a valid one. */
static int parse_range(param_t *p, char *spec, char *open)
{
    size_t speclen = strlen(spec);
    *open = '\0';
    spec[speclen - 1] = '\0';
    char args[TUNE_MAX_CHOICES][TUNE_VAL_LEN];
    int n = split_args(open + 1, args, TUNE_MAX_CHOICES);
    const char *kind = trim(spec);
    double a[3] = {0, 0, 0};
    bool numeric = n >= 0;
    for (int i = 0; i < n && i < 3; i++)
        numeric = numeric && parse_number(args[i], &a[i]) == 0;
    if (strcmp(kind, "choice") == 0 && n >= 1) {
        p->kind = P_CHOICE;
        p->n_choices = n;
        memcpy(p->choices, args, sizeof args[0] * (size_t)n);
    } else if (strcmp(kind, "int") == 0 && (n == 2 || n == 3) && numeric && a[0] <= a[1] &&
               a[0] == floor(a[0]) && a[1] == floor(a[1]) && (n == 2 || a[2] >= 1) &&
               fabs(a[0]) <= TUNE_INT_MAX && fabs(a[1]) <= TUNE_INT_MAX &&
               (a[1] - a[0]) / (n == 3 ? floor(a[2]) : 1) < TUNE_INT_POINTS) {
        *p = (param_t){.kind = P_INT, .lo = a[0], .hi = a[1], .step = n == 3 ? floor(a[2]) : 1};
    } else if (strcmp(kind, "float") == 0 && n == 2 && numeric && a[0] < a[1]) {
        *p = (param_t){.kind = P_FLOAT, .lo = a[0], .hi = a[1]};
    } else if (strcmp(kind, "log") == 0 && n == 2 && numeric && a[0] > 0 && a[0] < a[1]) {
        *p = (param_t){.kind = P_LOG, .lo = a[0], .hi = a[1]};
    } else {
        return -1;
    }
    return 0;
}

/* One `key SPEC` line into p; 0, or -1 with why set. */
static int parse_line(char *s, param_t *p, const char **why)
{
    char *sp = s + strcspn(s, " \t");
    if (!*sp)
        return *why = "expected 'key SPEC'", -1;
    *sp = '\0';
    char *spec = trim(sp + 1), name[64];
    snprintf(name, sizeof name, "%s", s);
    for (char *c = name; *c; c++)
        if (*c == '-')
            *c = '_';
    char *open = strchr(spec, '(');
    size_t speclen = strlen(spec);
    if (!open || spec[speclen - 1] != ')') {
        *p = (param_t){.kind = P_FIXED};
        snprintf(p->fixed, sizeof p->fixed, "%s", spec);
    } else if (parse_range(p, spec, open) != 0) {
        return *why = "expected int(lo, hi[, step]) (|lo|, |hi| <= 1e15, at most 1e9 points), "
                      "float(lo, hi), log(lo, hi) with 0 < lo < hi, or choice(a, b, ...)",
               -1;
    }
    snprintf(p->name, sizeof p->name, "%s", name);
    return 0;
}

int tune_load_space(study_t *st, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "ps-tune: cannot read space file '%s': %s\n", path, strerror(errno));
        return -1;
    }
    char line[1024];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *s = trim(line);
        if (!*s)
            continue;
        const char *why = "more than 32 parameters";
        if (st->n_params == TUNE_MAX_PARAMS || parse_line(s, &st->params[st->n_params], &why)) {
            fprintf(stderr, "ps-tune: %s:%d: %s\n", path, lineno, why);
            rc = -1;
        } else {
            st->params[st->n_params++].line = lineno;
        }
    }
    fclose(f);
    return rc;
}

bool tune_searched(const param_t *p)
{
    return p->kind != P_FIXED;
}

static void format_number(double v, bool integer, char *out)
{
    if (integer)
        snprintf(out, TUNE_VAL_LEN, "%.0f", v);
    else
        snprintf(out, TUNE_VAL_LEN, "%.6g", v);
}

void tune_sample(const study_t *st, int id, trial_t *t)
{
    ps_rng_t rng;
    ps_rng_seed(&rng, ps_rng_mix((uint64_t)st->o.seed, (uint64_t)id));
    for (int i = 0; i < st->n_params; i++) {
        const param_t *p = &st->params[i];
        double u = ps_rng_uniform(&rng);
        switch (p->kind) {
        case P_FIXED:
            snprintf(t->values[i], TUNE_VAL_LEN, "%s", p->fixed);
            break;
        case P_INT: {
            uint64_t n = (uint64_t)((p->hi - p->lo) / p->step) + 1;
            format_number(p->lo + p->step * (double)(uint64_t)(u * (double)n), true, t->values[i]);
            break;
        }
        case P_FLOAT:
            format_number(p->lo + u * (p->hi - p->lo), false, t->values[i]);
            break;
        case P_LOG:
            format_number(exp(log(p->lo) + u * (log(p->hi) - log(p->lo))), false, t->values[i]);
            break;
        case P_CHOICE:
            snprintf(t->values[i], TUNE_VAL_LEN, "%s", p->choices[(int)(u * p->n_choices)]);
            break;
        }
    }
}

int tune_grid_count(const study_t *st, const param_t *p)
{
    switch (p->kind) {
    case P_INT:
        return (int)((p->hi - p->lo) / p->step) + 1;
    case P_FLOAT:
    case P_LOG:
        return (int)st->o.grid_points;
    case P_CHOICE:
        return p->n_choices;
    default:
        return 1;
    }
}

static void grid_value(const study_t *st, const param_t *p, int k, char *out)
{
    int g = (int)st->o.grid_points;
    double f = g > 1 ? (double)k / (double)(g - 1) : 0.5;
    switch (p->kind) {
    case P_INT:
        format_number(p->lo + p->step * k, true, out);
        break;
    case P_FLOAT:
        format_number(p->lo + f * (p->hi - p->lo), false, out);
        break;
    case P_LOG:
        format_number(exp(log(p->lo) + f * (log(p->hi) - log(p->lo))), false, out);
        break;
    case P_CHOICE:
        snprintf(out, TUNE_VAL_LEN, "%s", p->choices[k]);
        break;
    default:
        snprintf(out, TUNE_VAL_LEN, "%s", p->fixed);
    }
}

/* Grid trial id: mixed-radix digits of id, first parameter slowest. */
void tune_grid_trial(const study_t *st, int id, trial_t *t)
{
    int rest = id;
    for (int i = st->n_params - 1; i >= 0; i--) {
        int c = tune_grid_count(st, &st->params[i]);
        grid_value(st, &st->params[i], rest % c, t->values[i]);
        rest /= c;
    }
}

void tune_params_text(const study_t *st, const trial_t *t, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < st->n_params && len < cap; i++)
        if (tune_searched(&st->params[i]))
            len += (size_t)snprintf(out + len, cap - len, "%s%s=%s", len ? " " : "",
                                    st->params[i].name, t->values[i]);
}
