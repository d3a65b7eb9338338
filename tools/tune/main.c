/* main.c - ps-tune: hyperparameter search whose trials are real
 * distributed training jobs (ps-launch: K servers, N workers each). This
 * file holds the options and the loop that keeps --parallel jobs running;
 * tune.h describes the study. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "ps_log.h"
#include "ps_proc.h"
#include "ps_time.h"
#include "tune.h"

#define O tune_opts_t
static const ps_opt_t tune_opts[] = {
    PS_OPT_STR("space", O, space_file, "", "the search space: `key SPEC` lines (required)"),
    PS_OPT_STR("config", O, config, "", "the job's worker config (required)"),
    PS_OPT_STR("study", O, study, "", "the study's directory (required)"),
    PS_OPT_NAMES("strategy", O, strategy, "random", tune_strategy_names, "search strategy"),
    PS_OPT_INT("max_trials", O, max_trials, "0", 0, TUNE_MAX_TRIALS,
               "configurations to try; 0 = 12 (grid: always the whole product)"),
    PS_OPT_NAMES("objective", O, objective, "val_accuracy", tune_objective_names,
                 "validation metric to optimise, any val_ field of the trainers' events "
                 "(accuracy and auc are maximised, the rest minimised)"),
    PS_OPT_DBL("epochs", O, epochs, "0", 0, 1e6,
               "epochs per trial (hyperband: the most any trial gets); a whole number; 0 = the "
               "space file's fixed epochs, else the job config's"),
    PS_OPT_DBL("min_epochs", O, min_epochs, "0", 0, 1e6,
               "hyperband: the smallest rung; 0 = epochs / eta^2"),
    PS_OPT_DBL("eta", O, eta, "3", 1.01, 100, "hyperband: keep the top 1/eta at each rung"),
    PS_OPT_INT("executions_per_trial", O, executions, "1", 1, 100,
               "run each configuration this many times (seeds differ) and average"),
    PS_OPT_INT("parallel", O, parallel, "1", 1, TUNE_MAX_PARALLEL, "trials at once"),
    PS_OPT_DBL("val_fraction", O, val_fraction, "0.1", 1e-6, 0.999999,
               "validation split of the training data"),
    PS_OPT_INT("servers", O, servers, "1", 1, 256, "servers of each trial's job"),
    PS_OPT_INT("workers", O, workers, "2", 1, 256, "workers of each trial's job"),
    PS_OPT_LIST("set", O, sets, "KEY=VALUE: a worker option every trial gets"),
    PS_OPT_INT("seed", O, seed, "1", 0, 1LL << 62, "sampling seed"),
    PS_OPT_INT("grid_points", O, grid_points, "3", 1, 1000, "grid: points of float/log ranges"),
    PS_OPT_INT("grid_cap", O, grid_cap, "1000", 1, TUNE_MAX_TRIALS,
               "grid: refuse a product above this"),
    PS_OPT_INT("best", O, best_n, "3", 0, 1000, "export the best N models to STUDY/best"),
    PS_OPT_DBL("trial_timeout", O, timeout_s, "3600", 1, 1e9, "fail a trial that runs longer (s)"),
    PS_OPT_BOOL("resume", O, resume, "no", "continue the study in STUDY (skips ended trials)"),
    PS_OPT_STR("bin_dir", O, bin_dir, "", "where ps-launch is (default: beside ps-tune)"),
};
#undef O

static const ps_optset_t tune_optset = {
    "ps-tune",
    "Usage: ps-tune --space FILE --config JOB.conf --study DIR [options]\n"
    "Searches hyperparameters by running each trial as a real ps-launch job (own\n"
    "ports, own state), selecting on a validation split of the training data.\n"
    "Space file: one `key SPEC` per line, `#` comments. SPEC is int(lo, hi[, step]),\n"
    "float(lo, hi), log(lo, hi) (log-uniform), choice(a, b, ...), or a plain value\n"
    "that every trial gets. Any ps-worker option can be searched.",
    tune_opts,
    sizeof tune_opts / sizeof tune_opts[0],
};

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

static int parse_args(study_t *st, int argc, char **argv)
{
    ps_errbuf_t err;
    int rc = ps_config_load_args(&tune_optset, &st->o, argc, argv,
                                 &(ps_args_t){.config_is_option = true}, NULL, &err);
    if (rc == PS_CONFIG_HELP)
        exit(0);
    const char *why = rc != PS_OK ? err.msg : NULL;
    if (!why && (!*st->o.space_file || !*st->o.config || !*st->o.study))
        why = "--space, --config and --study are required";
    else if (!why && st->o.epochs != floor(st->o.epochs))
        why = "--epochs must be a whole number";
    for (int i = 0; !why && i < st->o.sets.n; i++)
        if (!strchr(st->o.sets.v[i], '='))
            why = "--set takes KEY=VALUE";
    if (why) {
        fprintf(stderr, "ps-tune: %s\n", why);
        return -1;
    }
    st->maximize = st->o.objective == TUNE_OBJ_VAL_ACCURACY || st->o.objective == TUNE_OBJ_VAL_AUC;
    if (!*st->o.bin_dir)
        ps_child_bin_dir(st->o.bin_dir, sizeof st->o.bin_dir);
    return 0;
}

/* The study directory, fresh or resumed; returns the executions replayed
 * or -1 (logged). */
static int open_study(study_t *st)
{
    char path[PS_OPT_STR_MAX + 32];
    snprintf(path, sizeof path, "%s/journal.jsonl", st->o.study);
    if (!st->o.resume && access(path, F_OK) == 0) {
        fprintf(stderr,
                "ps-tune: '%s' already holds a study: --resume it or choose another --study\n",
                st->o.study);
        return -1;
    }
    mkdir(st->o.study, 0755);
    snprintf(path, sizeof path, "%s/trials", st->o.study);
    mkdir(path, 0755);
    int replayed = st->o.resume ? tune_replay(st) : 0;
    return tune_journal_open(st, replayed == 0) == 0 ? replayed : -1;
}

/* Starts the next executions until --parallel run; false if none is left. */
static bool start_more(study_t *st, running_t *run, int *n_run, int *next_job)
{
    int n_jobs = st->n_trials * (int)st->o.executions;
    while (*n_run < st->o.parallel && *next_job < n_jobs) {
        int id = *next_job / (int)st->o.executions, exec = *next_job % (int)st->o.executions;
        (*next_job)++;
        trial_t *t = &st->trials[id];
        if (st->exec_done[id * st->o.executions + exec] || t->status == TUNE_STOPPED ||
            t->status == TUNE_FAILED)
            continue;
        running_t *r = &run[*n_run];
        if (tune_launch(st, r, id, exec) != 0) {
            ps_log(PS_LOG_ERROR, "trial %d: cannot start ps-launch: %s", id, strerror(errno));
            tune_account(st, id, exec, TUNE_FAILED, "cannot start ps-launch", NAN, 0, 0, NULL, 0,
                         false, 0);
            continue;
        }
        char p[1024];
        tune_params_text(st, t, p, sizeof p);
        if (t->bracket >= 0)
            ps_log(PS_LOG_INFO, "trial %d.%d started (bracket %d, first rung %.3g epochs): %s", id,
                   exec, t->bracket, tune_rung_epochs(st, t->bracket, 0), p);
        else
            ps_log(PS_LOG_INFO, "trial %d.%d started: %s", id, exec, p);
        (*n_run)++;
    }
    return *n_run > 0;
}

/* Runs every execution not yet ended, --parallel at a time. */
static void run_study(study_t *st, running_t *run, int *n_run)
{
    int next_job = 0;
    while (!stop_signal && start_more(st, run, n_run, &next_job)) {
        struct pollfd pfd[TUNE_MAX_PARALLEL];
        for (int i = 0; i < *n_run; i++)
            pfd[i] = (struct pollfd){run[i].child.out_fd, POLLIN, 0};
        if (poll(pfd, (nfds_t)*n_run, 1000) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < *n_run; i++) {
            if (!(pfd[i].revents & (POLLIN | POLLHUP)) || !tune_drain(st, &run[i]))
                continue;
            tune_finish(st, &run[i], &stop_signal);
            run[i] = run[--*n_run];
            pfd[i] = pfd[*n_run];
            i--;
        }
    }
}

int main(int argc, char **argv)
{
    static study_t st;
    ps_log_init("ps-tune", PS_LOG_INFO);
    if (parse_args(&st, argc, argv) != 0)
        return EX_USAGE;
    if (access(st.o.config, R_OK) != 0) {
        fprintf(stderr, "ps-tune: cannot read config '%s': %s\n", st.o.config, strerror(errno));
        return EX_NOINPUT;
    }
    if (tune_load_space(&st, st.o.space_file) != 0 || tune_check(&st, st.o.epochs > 0) != 0 ||
        tune_plan(&st) != 0)
        return EX_USAGE;
    int replayed = open_study(&st);
    if (replayed < 0)
        return EX_CANTCREAT;
    ps_log(PS_LOG_INFO,
           "study '%s': %s over %d trials x %lld executions, %g epochs each%s (%d replayed)",
           st.o.study, tune_strategy_names[st.o.strategy], st.n_trials, (long long)st.o.executions,
           st.o.epochs, st.o.strategy == TUNE_HYPERBAND ? ", early stopping at rungs" : "",
           replayed);
    ps_proc_on_stop(on_signal);
    double t0 = ps_time_wall_s();
    static running_t run[TUNE_MAX_PARALLEL];
    int n_run = 0;
    run_study(&st, run, &n_run);
    if (stop_signal) {
        for (int i = 0; i < n_run; i++)
            ps_child_signal(&run[i].child, SIGTERM);
        for (int i = 0; i < n_run; i++)
            tune_finish(&st, &run[i], &stop_signal);
        ps_log(PS_LOG_WARN, "interrupted by signal %d: ps-tune --resume continues the study",
               (int)stop_signal);
        fclose(st.journal);
        return 128 + (int)stop_signal;
    }
    fclose(st.journal);
    if (tune_report(&st, ps_time_wall_s() - t0) == 0) {
        ps_log(PS_LOG_ERROR, "study '%s': no trial finished (%s): nothing was learned", st.o.study,
               tune_first_error(&st));
        return EX_SOFTWARE;
    }
    return 0;
}
