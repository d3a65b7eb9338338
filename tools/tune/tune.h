/* tune.h - ps-tune's study: the search space, the trials (configurations)
 * and their executions (ps-launch jobs), the strategies that choose them,
 * the journal that makes a study resumable, and the report. One study_t
 * holds it all and is passed to every part. Single thread.
 *
 * A study is a directory: journal.jsonl (append-only, one line per ended
 * trial execution, fsync'd), trials/<id>-<exec>/ (each job's output, its
 * config and its exported model), best/ (links to the best trials),
 * report.svg and summary.json. Trial i's configuration is a pure function
 * of (seed, i), so --resume replays the journal and runs only what is
 * missing; early-stopping decisions are replayed from the rung results the
 * journal holds. */
#ifndef PS_TUNE_H
#define PS_TUNE_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "ps_child.h"
#include "ps_config.h"
#include "ps_enum.h"
#include "ps_event.h"

#define TUNE_MAX_PARAMS 32
#define TUNE_MAX_CHOICES 32
#define TUNE_MAX_TRIALS 10000
#define TUNE_MAX_CURVE 256
#define TUNE_MAX_RUNGS 8
#define TUNE_MAX_PARALLEL 16
#define TUNE_VAL_LEN 128

/* Strategies: grid (the Cartesian product), random (seeded), hyperband
 * (brackets of successive halving over epochs; a trial reports its
 * validation metric at every rung and is stopped there unless it is in
 * the top 1/eta of the results seen so far at that budget, in any
 * bracket: asynchronous promotion, so no trial ever waits or restarts). */
#define TUNE_STRATEGY_MAP(XX) XX(GRID, "grid") XX(RANDOM, "random") XX(HYPERBAND, "hyperband")
#define TUNE_STRATEGY_MEMBER(e, s) PS_ENUM_MEMBER(TUNE_, e)
typedef enum { TUNE_STRATEGY_MAP(TUNE_STRATEGY_MEMBER) } tune_strategy_t;
extern const char *const tune_strategy_names[];

/* What can be optimised: any validation metric of the trainers' events,
 * by its event name (val_ + a PS_EVAL_METRIC_MAP name), so a metric a
 * trainer gains can be tuned without a change here. */
#define TUNE_OBJECTIVE_MEMBER(e, s) TUNE_OBJ_VAL_##e,
#define TUNE_OBJECTIVE_NAME(e, s) "val_" s,
typedef enum { PS_EVAL_METRIC_MAP(TUNE_OBJECTIVE_MEMBER) } tune_objective_t;
extern const char *const tune_objective_names[];

/* How a trial ended; the worst outcome of its executions names it. */
#define TUNE_STATUS_MAP(XX) \
    XX(PENDING, "pending") XX(FINISHED, "finished") XX(STOPPED, "stopped") XX(FAILED, "failed")
#define TUNE_STATUS_MEMBER(e, s) PS_ENUM_MEMBER(TUNE_, e)
typedef enum { TUNE_STATUS_MAP(TUNE_STATUS_MEMBER) } tune_status_t;
extern const char *const tune_status_names[];

typedef enum { P_FIXED, P_INT, P_FLOAT, P_LOG, P_CHOICE } param_kind_t;

/* One line of the space file. */
/* int ranges: ends exactly representable, and few enough points that a
 * count is an int */
#define TUNE_INT_MAX 1e15
#define TUNE_INT_POINTS 1e9

typedef struct {
    char name[64];
    param_kind_t kind;
    double lo, hi, step; /* INT (step 0 = 1), FLOAT, LOG */
    char choices[TUNE_MAX_CHOICES][TUNE_VAL_LEN];
    int n_choices;
    char fixed[TUNE_VAL_LEN];
    int line; /* in the space file, for errors */
} param_t;

/* One configuration (a trial) and what its executions reported. */
typedef struct {
    char values[TUNE_MAX_PARAMS][TUNE_VAL_LEN]; /* per searched or fixed param */
    int bracket;                                /* hyperband; -1 otherwise */
    int n_exec_done;
    double final_sum; /* of finished executions' final metric */
    int n_final;
    double epochs_spent;
    double wall_s;
    double test_sum; /* of the executions' test scores (reported, never used to select) */
    int n_test;
    tune_status_t status;
    char error[256];
    double curve[TUNE_MAX_CURVE][2]; /* execution 0's (epoch, metric) points */
    int n_curve;
} trial_t;

/* A running execution: its ps-launch and what it reported so far. */
typedef struct {
    ps_child_t child;
    int trial, exec;
    double t0;
    double spe; /* steps per epoch, from the start event */
    double last_epoch, last_metric;
    bool have_metric;
    int next_rung;
    bool stopped_early;
    double test_metric;
    bool has_test;
    ps_event_t done;
    bool has_done;
    double curve[TUNE_MAX_CURVE][2];
    int n_curve;
} running_t;

/* ps-tune's options (main.c's option table). */
typedef struct {
    char space_file[PS_OPT_STR_MAX], config[PS_OPT_STR_MAX], study[PS_OPT_STR_MAX];
    char bin_dir[PS_OPT_STR_MAX];
    int strategy;  /* tune_strategy_t */
    int objective; /* tune_objective_t */
    int64_t max_trials, parallel, executions, servers, workers, best_n, grid_points, grid_cap;
    double epochs, min_epochs, eta, val_fraction, timeout_s;
    int64_t seed;
    bool resume;
    ps_opt_list_t sets;
} tune_opts_t;

typedef struct {
    tune_opts_t o;
    param_t params[TUNE_MAX_PARAMS];
    int n_params;
    trial_t *trials;
    int n_trials;
    bool maximize;
    double rungs[TUNE_MAX_RUNGS]; /* hyperband: epochs at rung k of the deepest bracket */
    int s_max;
    /* rung results per budget level j (epochs R * eta^-j, any bracket),
     * replayed on resume: results at one budget compare whatever the bracket */
    double *rung_seen[TUNE_MAX_RUNGS];
    int rung_n[TUNE_MAX_RUNGS], rung_cap[TUNE_MAX_RUNGS];
    FILE *journal;
    unsigned char *exec_done; /* [trial * executions + exec] ended (run or replayed) */
} study_t;

/* ---- space.c ---- */
/* Reads the space file; errors name FILE:LINE. 0 or -1 (logged). */
int tune_load_space(study_t *st, const char *path);
bool tune_searched(const param_t *p);
/* Trial id's values: a pure function of (seed, id), or grid point id. */
void tune_sample(const study_t *st, int id, trial_t *t);
int tune_grid_count(const study_t *st, const param_t *p);
void tune_grid_trial(const study_t *st, int id, trial_t *t);
/* "lr=0.01 hidden=128" of the searched parameters. */
void tune_params_text(const study_t *st, const trial_t *t, char *out, size_t cap);

/* ---- check.c ---- */
/* Before any trial runs: the job config, every space key and value and
 * every --set are checked against ps-worker's own option table (errors
 * name the file and line, or the flag), and the study's epochs are
 * settled: --epochs if given, else the space file's fixed `epochs`, else
 * the job config's; a value that loses to another is logged. 0, or -1
 * (printed). epochs_given: --epochs was on the command line. */
int tune_check(study_t *st, bool epochs_given);

/* ---- strategy.c ---- */
/* Sizes the study (trials, hyperband brackets) and draws every trial. */
int tune_plan(study_t *st);
/* Epochs at rung k (0 = first) of bracket s: R * eta^(k - s). */
double tune_rung_epochs(const study_t *st, int s, int k);
void tune_record_rung(study_t *st, int s, int k, double metric);
/* After recording metric at rung k of bracket s: does the trial go on? */
bool tune_promote(const study_t *st, int s, int k, double metric);
/* a is better than b for the objective. */
bool tune_better(const study_t *st, double a, double b);

/* ---- trial.c ---- */
/* Starts execution exec of trial id as a ps-launch job. 0, or -1 (errno). */
int tune_launch(study_t *st, running_t *r, int id, int exec);
/* Reads what a running job printed; true at EOF. */
bool tune_drain(study_t *st, running_t *r);
/* Waits for an ended job, judges it, journals and accounts it (unless the
 * study was interrupted). */
void tune_finish(study_t *st, running_t *r, volatile sig_atomic_t *stop);
/* ---- report.c ---- */
/* Folds one ended execution into its trial. */
void tune_account(study_t *st, int id, int exec, tune_status_t status, const char *error,
                  double final, double epochs, double wall, const double (*curve)[2], int n_curve,
                  bool has_test, double test_metric);

/* ---- journal.c ---- */
/* Replays DIR/journal.jsonl (--resume); returns the executions replayed. */
int tune_replay(study_t *st);
/* Opens the journal for appending (and writes the study line if new). */
int tune_journal_open(study_t *st, bool fresh);
void tune_journal_write(study_t *st, const running_t *r, tune_status_t status, const char *error,
                        double final, double epochs, double wall);

double tune_trial_metric(const trial_t *t);
double tune_trial_test(const trial_t *t);
/* Prints the ranking, writes best/, report.svg and summary.json; returns
 * the number of trials that finished. */
int tune_report(study_t *st, double wall);
/* The first failed trial's error ("trial 3: ..."), or a note that none
 * failed (every trial stopped early, say). Points into static storage. */
const char *tune_first_error(const study_t *st);

#endif
