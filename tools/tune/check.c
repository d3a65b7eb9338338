/* check.c - ps-tune's checks before any trial runs. A typo in a space key
 * or a value ps-worker would refuse fails every trial, each after starting
 * a whole job, with the reason buried in trials/ (issue 15): the same
 * option table ps-worker parses with says so up front instead. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_log.h"
#include "ps_worker.h"
#include "tune.h"

/* value for key, as ps-worker would take it; 0 or -1 (printed, after where). */
static int check_value(const char *where, const char *key, const char *value)
{
    static ps_worker_config_t scratch;
    ps_config_defaults(&ps_worker_optset, &scratch);
    ps_errbuf_t err;
    if (!ps_config_find(&ps_worker_optset, key)) {
        fprintf(stderr,
                "ps-tune: %s: '%s' is not a ps-worker option (ps-worker --help lists them)\n",
                where, key);
        return -1;
    }
    if (ps_config_set(&ps_worker_optset, &scratch, key, value, &err) != PS_OK) {
        fprintf(stderr, "ps-tune: %s: %s\n", where, err.msg);
        return -1;
    }
    return 0;
}

/* Every value a parameter can take that ps-worker would parse: the fixed
 * value, each choice, a range's ends. */
static int check_param(const study_t *st, const param_t *p)
{
    char where[PS_OPT_STR_MAX + 32], v[TUNE_VAL_LEN];
    snprintf(where, sizeof where, "%s:%d", st->o.space_file, p->line);
    switch (p->kind) {
    case P_FIXED:
        return check_value(where, p->name, p->fixed);
    case P_CHOICE:
        for (int k = 0; k < p->n_choices; k++)
            if (check_value(where, p->name, p->choices[k]) != 0)
                return -1;
        return 0;
    default:
        snprintf(v, sizeof v, p->kind == P_INT ? "%.0f" : "%.17g", p->lo);
        if (check_value(where, p->name, v) != 0)
            return -1;
        snprintf(v, sizeof v, p->kind == P_INT ? "%.0f" : "%.17g", p->hi);
        return check_value(where, p->name, v);
    }
}

/* The options ps-tune sets on every trial itself. */
static bool owned_by_tune(const char *key)
{
    return strcmp(key, "seed") == 0 || strcmp(key, "val_fraction") == 0 ||
           strcmp(key, "evals_per_epoch") == 0;
}

int tune_check(study_t *st, bool epochs_given)
{
    static ps_worker_config_t job;
    ps_config_defaults(&ps_worker_optset, &job);
    ps_errbuf_t err;
    if (ps_config_load_file(&ps_worker_optset, &job, st->o.config, &err) != PS_OK) {
        fprintf(stderr, "ps-tune: job config: %s\n", err.msg);
        return -1;
    }
    const param_t *space_epochs = NULL;
    for (int i = 0; i < st->n_params; i++) {
        const param_t *p = &st->params[i];
        if (check_param(st, p) != 0)
            return -1;
        if (owned_by_tune(p->name)) {
            fprintf(stderr,
                    "ps-tune: %s:%d: '%s' is set by ps-tune on every trial (--seed, "
                    "--val-fraction)\n",
                    st->o.space_file, p->line, p->name);
            return -1;
        }
        if (strcmp(p->name, "epochs") == 0) {
            if (tune_searched(p)) {
                fprintf(stderr,
                        "ps-tune: %s:%d: epochs is the study's budget, not a "
                        "hyperparameter: give it one value (here, in the config or --epochs)\n",
                        st->o.space_file, p->line);
                return -1;
            }
            space_epochs = p;
        }
    }
    for (int i = 0; i < st->o.sets.n; i++) {
        char kv[PS_OPT_STR_MAX], where[PS_OPT_STR_MAX + 16];
        snprintf(kv, sizeof kv, "%s", st->o.sets.v[i]);
        char *eq = strchr(kv, '=');
        *eq = '\0';
        snprintf(where, sizeof where, "--set %s", st->o.sets.v[i]);
        if (check_value(where, kv, eq + 1) != 0)
            return -1;
        if (strcmp(kv, "epochs") == 0) {
            fprintf(stderr, "ps-tune: --set epochs: use --epochs (the study's budget)\n");
            return -1;
        }
    }
    double from_space = space_epochs ? strtod(space_epochs->fixed, NULL) : 0;
    double chosen = epochs_given ? st->o.epochs : from_space > 0 ? from_space : (double)job.epochs;
    const char *source = epochs_given     ? "--epochs"
                         : from_space > 0 ? "the space file"
                                          : "the job config";
    if (chosen != floor(chosen) || chosen < 1) {
        fprintf(stderr, "ps-tune: epochs %g (from %s) must be a whole number >= 1\n", chosen,
                source);
        return -1;
    }
    if (from_space > 0 && from_space != chosen)
        ps_log(PS_LOG_NOTICE, "epochs %g from %s wins over the space file's %g", chosen, source,
               from_space);
    if ((double)job.epochs != chosen)
        ps_log(PS_LOG_NOTICE, "epochs %g from %s wins over the job config's %lld", chosen, source,
               (long long)job.epochs);
    st->o.epochs = chosen;
    return 0;
}
