/* trial.c - one execution of a trial as a real ps-launch job: its config
 * file, its command, what its event lines say (with hyperband stopping it
 * at a rung), and how it ended. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ps_log.h"
#include "ps_time.h"
#include "tune.h"

static void trial_dir(const study_t *st, int id, int exec, char *out, size_t cap)
{
    snprintf(out, cap, "%s/trials/%04d-%d", st->o.study, id, exec);
}

/* A value as a config file reads it back: quoted when it would not be. */
static void put_value(FILE *f, const char *key, const char *v)
{
    bool plain = *v && v[0] != '"' && !strchr(v, '#') && v[strlen(v) - 1] != ' ' && v[0] != ' ';
    if (plain) {
        fprintf(f, "%s %s\n", key, v);
        return;
    }
    fprintf(f, "%s \"", key);
    for (const char *p = v; *p; p++)
        fprintf(f, *p == '"' || *p == '\\' ? "\\%c" : "%c", *p);
    fprintf(f, "\"\n");
}

/* DIR/trial.conf: the job's config, then the study's settings and this
 * trial's values (later lines win). */
static int write_trial_conf(const study_t *st, int id, int exec, const char *dir)
{
    char path[PS_OPT_STR_MAX + 64];
    snprintf(path, sizeof path, "%s/trial.conf", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f,
            "# ps-tune trial %d execution %d: the job's config, then the study's settings\n"
            "# and this trial's values (later lines win); ps-launch adds epochs and seed\n",
            id, exec);
    FILE *base = fopen(st->o.config, "r");
    if (base) {
        char line[4096];
        while (fgets(line, sizeof line, base))
            fputs(line, f);
        fclose(base);
    }
    fprintf(f, "\n# ps-tune\nval_fraction %g\n", st->o.val_fraction);
    for (int i = 0; i < st->o.sets.n; i++) {
        char kv[PS_OPT_STR_MAX];
        snprintf(kv, sizeof kv, "%s", st->o.sets.v[i]);
        char *eq = strchr(kv, '=');
        if (eq) {
            *eq = '\0';
            put_value(f, kv, eq + 1);
        }
    }
    for (int i = 0; i < st->n_params; i++)
        put_value(f, st->params[i].name, st->trials[id].values[i]);
    return fclose(f);
}

/* A trial's ps-launch command line, built one argument after another. */
typedef struct {
    char text[24][PS_OPT_STR_MAX + 64];
    char *v[25]; /* NULL-terminated */
    int n;
} trial_args_t;

static void arg(trial_args_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void arg(trial_args_t *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->text[a->n], sizeof a->text[a->n], fmt, ap);
    va_end(ap);
    a->v[a->n] = a->text[a->n];
    a->v[++a->n] = NULL;
}

int tune_launch(study_t *st, running_t *r, int id, int exec)
{
    char dir[PS_OPT_STR_MAX + 32], log_path[PS_OPT_STR_MAX + 64];
    trial_dir(st, id, exec, dir, sizeof dir);
    mkdir(dir, 0755);
    if (write_trial_conf(st, id, exec, dir) != 0)
        return -1;
    /* hyperband: an evaluation at every rung; otherwise a few per epoch
     * for the learning curves */
    double evals = st->o.strategy == TUNE_HYPERBAND
                       ? ceil(pow(st->o.eta, st->s_max) / st->o.epochs - 1e-9)
                       : 4;
    static trial_args_t a;
    a.n = 0;
    arg(&a, "%s/ps-launch", st->o.bin_dir);
    arg(&a, "--servers");
    arg(&a, "%lld", (long long)st->o.servers);
    arg(&a, "--workers");
    arg(&a, "%lld", (long long)st->o.workers);
    arg(&a, "--config");
    arg(&a, "%s/trial.conf", dir);
    arg(&a, "--job");
    arg(&a, "trial-%d-%d", id, exec);
    arg(&a, "--timeout");
    arg(&a, "%.0f", st->o.timeout_s);
    arg(&a, "--save-model");
    arg(&a, "%s/model", dir);
    arg(&a, "--set");
    arg(&a, "epochs=%.0f", ceil(st->o.epochs));
    arg(&a, "--set");
    arg(&a, "seed=%llu",
        (unsigned long long)((uint64_t)st->o.seed * 1000003ULL + (uint64_t)exec + 1));
    arg(&a, "--set");
    arg(&a, "evals_per_epoch=%.0f", evals);
    char **argv = a.v;
    snprintf(log_path, sizeof log_path, "%s/launch.log", dir);
    memset(r, 0, sizeof *r);
    r->trial = id;
    r->exec = exec;
    r->t0 = ps_time_wall_s();
    char name[48];
    snprintf(name, sizeof name, "trial %d.%d", id, exec);
    /* its own process group, so a stuck job is killed whole; it hears of our death */
    ps_child_spawn_t how = {.pipe_stdout = true, .stderr_path = log_path, .own_group = true};
    return ps_child_start(&r->child, name, argv, &how);
}

/* An eval or epoch event's objective: the learning curve, and hyperband's
 * rungs, which may stop the trial. */
static void take_metric(study_t *st, running_t *r, double epoch, double m)
{
    if (r->have_metric && epoch <= r->last_epoch + 1e-9)
        return; /* the epoch event repeats the last eval */
    r->last_epoch = epoch;
    r->last_metric = m;
    r->have_metric = true;
    if (r->n_curve < TUNE_MAX_CURVE) {
        r->curve[r->n_curve][0] = epoch;
        r->curve[r->n_curve][1] = m;
        r->n_curve++;
    }
    int s = st->trials[r->trial].bracket;
    if (s < 0 || r->stopped_early)
        return;
    /* rungs of bracket s: k = 0 .. s, the last being the full budget */
    while (r->next_rung <= s && epoch >= tune_rung_epochs(st, s, r->next_rung) * (1 - 1e-3)) {
        int k = r->next_rung++;
        tune_record_rung(st, s, k, m);
        if (k < s && !tune_promote(st, s, k, m)) {
            r->stopped_early = true;
            ps_child_signal(&r->child, SIGTERM); /* ps-launch stops its job */
            break;
        }
    }
}

static ps_event_field_t objective_field(const study_t *st)
{
    return ps_event_field_find(tune_objective_names[st->o.objective]);
}

/* The test-set twin of the objective (val_accuracy -> test_accuracy). */
static ps_event_field_t test_field(const study_t *st)
{
    char key[64];
    snprintf(key, sizeof key, "test_%s", tune_objective_names[st->o.objective] + 4);
    return ps_event_field_find(key);
}

typedef struct {
    study_t *st;
    running_t *r;
} line_ctx_t;

/* One line of a trial's stdout. */
static void trial_line(void *ctx, ps_child_t *c, char *line)
{
    (void)c;
    study_t *st = ((line_ctx_t *)ctx)->st;
    running_t *r = ((line_ctx_t *)ctx)->r;
    ps_event_t ev;
    if (ps_event_parse(line, &ev) != 0) {
        ps_event_fini(&ev);
        return;
    }
    if (ev.kind == PS_EVENT_START) {
        r->spe = ps_event_num(&ev, PS_EF_STEPS_PER_EPOCH, 0);
    } else if ((ev.kind == PS_EVENT_EVAL || ev.kind == PS_EVENT_EPOCH) &&
               ps_event_has(&ev, objective_field(st)) && ps_event_has(&ev, PS_EF_EPOCH)) {
        take_metric(st, r, ps_event_num(&ev, PS_EF_EPOCH, 0),
                    ps_event_num(&ev, objective_field(st), NAN));
    } else if (ev.kind == PS_EVENT_DONE) {
        r->has_test = ps_event_has(&ev, test_field(st));
        r->test_metric = ps_event_num(&ev, test_field(st), 0);
        ps_event_fini(&r->done);
        r->done = ev;
        r->has_done = true;
        return;
    }
    ps_event_fini(&ev);
}

bool tune_drain(study_t *st, running_t *r)
{
    line_ctx_t ctx = {st, r};
    ps_child_read_lines(&r->child, trial_line, &ctx);
    return r->child.out_fd < 0;
}

/* Waits (30 s at most, then kills the job) for the ended job's status. */
static int wait_exit(running_t *r)
{
    int64_t deadline = ps_time_ms() + 30000;
    while (!ps_child_reap(&r->child)) {
        if (ps_time_ms() > deadline) {
            ps_child_signal(&r->child, SIGKILL);
            waitpid(r->child.pid, &r->child.status, 0);
            break;
        }
        usleep(20000);
    }
    return r->child.status;
}

/* The first error line of a trial's log, without its time and process
 * ("worker 0: cannot read ..."), into out; "" if there is none. */
static void first_error(const study_t *st, const running_t *r, char *out, size_t cap)
{
    char path[PS_OPT_STR_MAX + 64], line[1024];
    snprintf(path, sizeof path, "%s/trials/%04d-%d/launch.log", st->o.study, r->trial, r->exec);
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f)) {
        char *e = strstr(line, "] E ");
        if (!e)
            continue;
        e[4 + strcspn(e + 4, "\r\n")] = '\0';
        snprintf(out, cap, "%s: ", e + 4);
        break;
    }
    if (f)
        fclose(f);
}

/* Why a job failed: its first error, naming its log. */
static void failure_text(const study_t *st, const running_t *r, int wst, char *error, size_t cap)
{
    char dir[48], cause[160]; /* dir: relative to the study */
    snprintf(dir, sizeof dir, "trials/%04d-%d", r->trial, r->exec);
    first_error(st, r, cause, sizeof cause);
    if (WIFSIGNALED(wst))
        snprintf(error, cap, "%sps-launch killed by signal %d (see %s/launch.log)", cause,
                 WTERMSIG(wst), dir);
    else if (!r->have_metric)
        snprintf(error, cap, "%sno %s reported, exit %d (see %s/launch.log)", cause,
                 tune_objective_names[st->o.objective], WIFEXITED(wst) ? WEXITSTATUS(wst) : -1,
                 dir);
    else
        snprintf(error, cap, "%sps-launch exit %d (see %s/launch.log)", cause,
                 WIFEXITED(wst) ? WEXITSTATUS(wst) : -1, dir);
}

void tune_finish(study_t *st, running_t *r, volatile sig_atomic_t *stop)
{
    int wst = wait_exit(r);
    double wall = ps_time_wall_s() - r->t0;
    tune_status_t status = TUNE_FINISHED;
    char error[256] = "";
    double final = r->have_metric ? r->last_metric : NAN;
    double epochs = r->have_metric ? r->last_epoch : 0;
    if (r->stopped_early) {
        status = TUNE_STOPPED;
    } else if (!WIFEXITED(wst) || WEXITSTATUS(wst) != 0 || !r->has_done || !r->have_metric) {
        status = TUNE_FAILED;
        failure_text(st, r, wst, error, sizeof error);
        final = NAN;
    } else if (r->spe > 0 && ps_event_has(&r->done, PS_EF_STEPS)) {
        epochs = ps_event_num(&r->done, PS_EF_STEPS, 0) / r->spe;
    }
    ps_event_fini(&r->done);
    if (*stop) /* interrupted by us: not an outcome; --resume reruns it */
        return;
    tune_journal_write(st, r, status, error, final, epochs, wall);
    tune_account(st, r->trial, r->exec, status, error, final, epochs, wall,
                 (const double(*)[2])r->curve, r->n_curve, r->has_test, r->test_metric);
    ps_log(*error ? PS_LOG_WARN : PS_LOG_INFO,
           "trial %d.%d %s: %s %.4f after %.2f epochs (%.1f s)%s%s", r->trial, r->exec,
           tune_status_names[status], tune_objective_names[st->o.objective],
           isfinite(final) ? final : NAN, epochs, wall, *error ? ": " : "", error);
}
