/* journal.c - the study's journal: one JSON object per line, written with
 * jansson (so any error text or value stays valid JSON) and read back with
 * it on --resume; every line is flushed and fsync'd, so a crash loses at
 * most the executions that were running. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ps_json.h"
#include "ps_log.h"
#include "tune.h"

static json_t *pairs(const double (*v)[2], int n, bool int_first)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) {
        json_t *p = json_array();
        json_array_append_new(p,
                              int_first ? json_integer((json_int_t)v[i][0]) : json_real(v[i][0]));
        json_array_append_new(p, json_real(v[i][1]));
        json_array_append_new(a, p);
    }
    return a;
}

static void append_line(study_t *st, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(o);
    if (!s)
        return;
    fprintf(st->journal, "%s\n", s);
    free(s);
    fflush(st->journal);
    fsync(fileno(st->journal));
}

int tune_journal_open(study_t *st, bool fresh)
{
    char path[PS_OPT_STR_MAX + 32];
    snprintf(path, sizeof path, "%s/journal.jsonl", st->o.study);
    st->journal = fopen(path, "a");
    if (!st->journal) {
        ps_log(PS_LOG_ERROR, "ps-tune: cannot write '%s'", path);
        return -1;
    }
    if (!fresh)
        return 0;
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string("study"));
    json_object_set_new(o, "strategy", json_string(tune_strategy_names[st->o.strategy]));
    json_object_set_new(o, "objective", json_string(tune_objective_names[st->o.objective]));
    json_object_set_new(o, "trials", json_integer(st->n_trials));
    json_object_set_new(o, "executions_per_trial", json_integer(st->o.executions));
    json_object_set_new(o, "epochs", json_real(st->o.epochs));
    json_object_set_new(o, "eta", json_real(st->o.eta));
    json_object_set_new(o, "seed", json_integer(st->o.seed));
    json_object_set_new(o, "config", ps_json_string(st->o.config));
    append_line(st, o);
    return 0;
}

/* The rung results execution r contributed, for --resume to replay. */
static int rung_results(const study_t *st, const running_t *r, double (*out)[2])
{
    int s = st->trials[r->trial].bracket, n = 0;
    for (int k = 0; s >= 0 && k < r->next_rung && n < TUNE_MAX_RUNGS; k++) {
        double at = tune_rung_epochs(st, s, k), m = NAN;
        for (int c = 0; c < r->n_curve && isnan(m); c++)
            if (r->curve[c][0] >= at * (1 - 1e-3))
                m = r->curve[c][1];
        if (isfinite(m)) {
            out[n][0] = k;
            out[n++][1] = m;
        }
    }
    return n;
}

void tune_journal_write(study_t *st, const running_t *r, tune_status_t status, const char *error,
                        double final, double epochs, double wall)
{
    const trial_t *t = &st->trials[r->trial];
    json_t *o = json_object(), *params = json_object();
    json_object_set_new(o, "type", json_string("trial"));
    json_object_set_new(o, "trial_id", json_integer(r->trial));
    json_object_set_new(o, "execution", json_integer(r->exec));
    json_object_set_new(o, "bracket", json_integer(t->bracket));
    json_object_set_new(o, "status", json_string(tune_status_names[status]));
    if (isfinite(final))
        json_object_set_new(o, "final", json_real(final));
    json_object_set_new(o, "epochs_spent", json_real(epochs));
    json_object_set_new(o, "wall_s", json_real(wall));
    if (r->has_test && isfinite(r->test_metric))
        json_object_set_new(o, "test_metric", json_real(r->test_metric));
    json_object_set_new(o, "error", ps_json_string(error));
    json_object_set_new(o, "objective", json_string(tune_objective_names[st->o.objective]));
    double rungs[TUNE_MAX_RUNGS][2];
    json_object_set_new(o, "rungs",
                        pairs((const double(*)[2])rungs, rung_results(st, r, rungs), true));
    json_object_set_new(o, "curve", pairs((const double(*)[2])r->curve, r->n_curve, false));
    for (int i = 0; i < st->n_params; i++)
        if (tune_searched(&st->params[i]))
            json_object_set_new(params, st->params[i].name, ps_json_string(t->values[i]));
    json_object_set_new(o, "params", params);
    append_line(st, o);
}

/* [[a, b], ...] into out (at most cap pairs); returns the count. */
static int read_pairs(json_t *a, double (*out)[2], int cap)
{
    int n = 0;
    for (size_t i = 0; json_is_array(a) && i < json_array_size(a) && n < cap; i++) {
        json_t *p = json_array_get(a, i);
        if (!json_is_array(p) || json_array_size(p) != 2 || !json_is_number(json_array_get(p, 0)) ||
            !json_is_number(json_array_get(p, 1)))
            continue;
        out[n][0] = json_number_value(json_array_get(p, 0));
        out[n++][1] = json_number_value(json_array_get(p, 1));
    }
    return n;
}

static double num_or(json_t *o, const char *key, double fallback)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : fallback;
}

/* One trial line of the journal, folded in; false if it is not one. */
static bool replay_line(study_t *st, json_t *o)
{
    json_t *type = json_object_get(o, "type");
    if (!json_is_string(type) || strcmp(json_string_value(type), "trial") != 0)
        return false;
    double id = num_or(o, "trial_id", -1), exec = num_or(o, "execution", -1);
    if (id < 0 || id >= st->n_trials || exec < 0 || exec >= (double)st->o.executions)
        return false;
    json_t *jst = json_object_get(o, "status"), *jerr = json_object_get(o, "error");
    int status = json_is_string(jst) ? ps_enum_find(tune_status_names, json_string_value(jst)) : -1;
    double curve[TUNE_MAX_CURVE][2], rungs[TUNE_MAX_RUNGS][2];
    int nc = read_pairs(json_object_get(o, "curve"), curve, TUNE_MAX_CURVE);
    int nr = read_pairs(json_object_get(o, "rungs"), rungs, TUNE_MAX_RUNGS);
    int s = st->trials[(int)id].bracket;
    for (int k = 0; s >= 0 && k < nr; k++)
        if (rungs[k][0] >= 0 && rungs[k][0] <= s) /* compared as doubles: any number may come */
            tune_record_rung(st, s, (int)rungs[k][0], rungs[k][1]);
    json_t *test = json_object_get(o, "test_metric");
    /* journals before 0.2 wrote "final":0 with "has_final":0 for no result */
    double final = num_or(o, "has_final", 1) ? num_or(o, "final", NAN) : NAN;
    tune_account(st, (int)id, (int)exec, status > 0 ? (tune_status_t)status : TUNE_FAILED,
                 json_is_string(jerr) ? json_string_value(jerr) : "", final,
                 num_or(o, "epochs_spent", 0), num_or(o, "wall_s", 0), (const double(*)[2])curve,
                 nc, json_is_number(test), json_is_number(test) ? json_number_value(test) : 0);
    return true;
}

int tune_replay(study_t *st)
{
    char path[PS_OPT_STR_MAX + 32];
    snprintf(path, sizeof path, "%s/journal.jsonl", st->o.study);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    static char line[1 << 20];
    int n = 0, lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr);
        if (!o) {
            ps_log(PS_LOG_WARN, "%s:%d: not JSON (%s); line skipped", path, lineno, jerr.text);
            continue;
        }
        n += replay_line(st, o);
        json_decref(o);
    }
    fclose(f);
    return n;
}
