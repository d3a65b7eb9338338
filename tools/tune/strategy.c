/* strategy.c - how many trials a study runs and which ones, and
 * hyperband's brackets, rungs and asynchronous promotion. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "ps_err.h"
#include "tune.h"

const char *const tune_strategy_names[] = {TUNE_STRATEGY_MAP(PS_ENUM_NAME) NULL};
const char *const tune_objective_names[] = {PS_EVAL_METRIC_MAP(TUNE_OBJECTIVE_NAME) NULL};
const char *const tune_status_names[] = {TUNE_STATUS_MAP(PS_ENUM_NAME) NULL};

/* Configurations in bracket s: ceil((s_max+1)/(s+1) * eta^s). */
static int bracket_size(const study_t *st, int s)
{
    return (int)ceil((double)(st->s_max + 1) / (s + 1) * pow(st->o.eta, s));
}

/* Bracket of trial id under hyperband: brackets s = s_max .. 0 in turn,
 * cycling. */
static int bracket_of(const study_t *st, int id)
{
    int total = 0;
    for (int s = st->s_max; s >= 0; s--)
        total += bracket_size(st, s);
    int k = id % total;
    for (int s = st->s_max; s >= 0; s--) {
        int n = bracket_size(st, s);
        if (k < n)
            return s;
        k -= n;
    }
    return 0;
}

double tune_rung_epochs(const study_t *st, int s, int k)
{
    return st->o.epochs * pow(st->o.eta, k - s);
}

/* Rung k of bracket s is budget level s - k. */
void tune_record_rung(study_t *st, int s, int k, double metric)
{
    int j = s - k;
    if (st->rung_n[j] == st->rung_cap[j]) {
        st->rung_cap[j] = st->rung_cap[j] ? st->rung_cap[j] * 2 : 16;
        st->rung_seen[j] = ps_xrealloc(st->rung_seen[j], (size_t)st->rung_cap[j] * sizeof(double));
    }
    st->rung_seen[j][st->rung_n[j]++] = metric;
}

bool tune_better(const study_t *st, double a, double b)
{
    return st->maximize ? a > b : a < b;
}

/* Yes if the trial is in the top floor(n / eta) of the n results at that
 * budget, or the best so far (so one of the first results at a budget
 * goes on: a trial cannot wait for later ones, as synchronous halving
 * would). */
bool tune_promote(const study_t *st, int s, int k, double metric)
{
    int j = s - k, n = st->rung_n[j], beaten_by = 0;
    for (int i = 0; i < n; i++)
        beaten_by += tune_better(st, st->rung_seen[j][i], metric);
    int keep = (int)floor((double)n / st->o.eta);
    return beaten_by < (keep > 1 ? keep : 1);
}

/* The number of trials: the grid's product, or --max-trials. */
static int count_trials(study_t *st)
{
    if (st->o.strategy != TUNE_GRID)
        return st->o.max_trials > 0 ? (int)st->o.max_trials : 12;
    double product = 1;
    for (int i = 0; i < st->n_params; i++)
        product *= tune_grid_count(st, &st->params[i]);
    if (product > (double)st->o.grid_cap) {
        fprintf(stderr,
                "ps-tune: the grid has %.0f points, above --grid-cap %lld: narrow the "
                "space or use random\n",
                product, (long long)st->o.grid_cap);
        return -1;
    }
    if (st->o.max_trials > 0 && st->o.max_trials < product)
        fprintf(stderr, "ps-tune: grid runs all %.0f points (--max-trials %lld ignored)\n", product,
                (long long)st->o.max_trials);
    return (int)product;
}

int tune_plan(study_t *st)
{
    st->n_trials = count_trials(st);
    if (st->n_trials < 0)
        return -1;
    if (st->n_trials > TUNE_MAX_TRIALS)
        st->n_trials = TUNE_MAX_TRIALS;
    if (st->o.strategy == TUNE_HYPERBAND) {
        double rmin =
            st->o.min_epochs > 0 ? st->o.min_epochs : st->o.epochs / (st->o.eta * st->o.eta);
        st->s_max = (int)floor(log(st->o.epochs / rmin) / log(st->o.eta) + 1e-9);
        st->s_max = st->s_max < 0                 ? 0
                    : st->s_max >= TUNE_MAX_RUNGS ? TUNE_MAX_RUNGS - 1
                                                  : st->s_max;
        for (int k = 0; k <= st->s_max; k++)
            st->rungs[k] = tune_rung_epochs(st, st->s_max, k);
    }
    st->trials = ps_xcalloc((size_t)st->n_trials, sizeof *st->trials);
    st->exec_done = ps_xcalloc((size_t)st->n_trials * (size_t)st->o.executions, 1);
    for (int id = 0; id < st->n_trials; id++) {
        if (st->o.strategy == TUNE_GRID)
            tune_grid_trial(st, id, &st->trials[id]);
        else
            tune_sample(st, id, &st->trials[id]);
        st->trials[id].bracket = st->o.strategy == TUNE_HYPERBAND ? bracket_of(st, id) : -1;
    }
    return 0;
}
