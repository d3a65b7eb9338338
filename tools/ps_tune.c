/* ps_tune.c - ps-tune: hyperparameter search whose trials are real
 * distributed training jobs (ps-launch: K servers, N workers each).
 *
 * A study is a directory: journal.jsonl (append-only, one line per ended
 * trial execution, fsync'd), trials/<id>-<exec>/ (each job's output, its
 * config and its exported model), best/ (links to the best trials),
 * report.svg and summary.json. Trial i's configuration is a pure function
 * of (seed, i), so --resume replays the journal and runs only what is
 * missing; early-stopping decisions are replayed from the rung results the
 * journal holds.
 *
 * Strategies: grid (the Cartesian product), random (seeded), hyperband
 * (brackets of successive halving over epochs; a trial reports its
 * validation metric at every rung and is stopped there unless it is in the
 * top 1/eta of the results seen so far at that budget, in any bracket -
 * asynchronous promotion, so no trial ever waits or restarts). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include "ps_json.h"
#include "ps_log.h"
#include "ps_proc.h"
#include "ps_rng.h"
#include "ps_time.h"

#define MAX_PARAMS 32
#define MAX_CHOICES 32
#define MAX_TRIALS 10000
#define MAX_CURVE 256
#define MAX_RUNGS 8
#define MAX_PARALLEL 16
#define VAL_LEN 128

typedef enum { P_FIXED, P_INT, P_FLOAT, P_LOG, P_CHOICE } param_kind_t;

typedef struct {
    char name[64];
    param_kind_t kind;
    double lo, hi, step; /* INT (step 0 = 1), FLOAT, LOG */
    char choices[MAX_CHOICES][VAL_LEN];
    int n_choices;
    char fixed[VAL_LEN];
} param_t;

typedef struct {
    const char *space_file, *config, *study, *strategy, *objective, *bin_dir_arg;
    int max_trials, parallel, executions, servers, workers, best_n, grid_points, grid_cap;
    double epochs, min_epochs, eta, val_fraction, timeout_s;
    uint64_t seed;
    bool resume;
    const char *sets[64];
    int n_sets;
    char bin_dir[4096];
} opts_t;

/* One configuration (a trial) and what its executions reported. */
typedef struct {
    char values[MAX_PARAMS][VAL_LEN]; /* per searched or fixed param */
    int bracket;                      /* hyperband; -1 otherwise */
    int n_exec_done;
    double final_sum;                 /* of finished executions' final metric */
    int n_final;
    double epochs_spent;
    double wall_s;
    double test_metric; /* execution 0's test score (reported, never used to select) */
    bool has_test;
    char status[16]; /* "" (not ended), finished, stopped, failed */
    char error[256];
    double curve[MAX_CURVE][2]; /* execution 0's (epoch, metric) points */
    int n_curve;
} trial_t;

/* A running ps-launch. */
typedef struct {
    pid_t pid;
    int fd;
    int trial, exec;
    char buf[65536];
    size_t len;
    double t0;
    double spe; /* steps per epoch, from the start event */
    double last_epoch, last_metric;
    bool have_metric;
    int next_rung;
    bool stopped_early;
    double test_metric;
    bool has_test;
    char done_line[4096];
    double curve[MAX_CURVE][2];
    int n_curve;
} running_t;

static param_t params[MAX_PARAMS];
static int n_params;
static trial_t *trials;
static int n_trials;
static opts_t O;
static bool maximize;
static double rungs[MAX_RUNGS]; /* hyperband: epochs at rung k of the deepest bracket */
static int s_max;
/* rung results per budget level j (epochs R * eta^-j, any bracket), replayed
 * on resume: results at the same budget are comparable whatever the bracket */
static double *rung_seen[MAX_RUNGS];
static int rung_n[MAX_RUNGS], rung_cap[MAX_RUNGS];
static FILE *journal;
static unsigned char *exec_done; /* [trial * executions + exec] ended (run or replayed) */
static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: ps-tune --space FILE --config JOB.conf --study DIR [options]\n"
            "Searches hyperparameters by running each trial as a real ps-launch job (own\n"
            "ports, own state), selecting on a validation split of the training data.\n\n"
            "Space file: one `key SPEC` per line, `#` comments. SPEC is int(lo, hi[, step]),\n"
            "float(lo, hi), log(lo, hi) (log-uniform), choice(a, b, ...), or a plain value\n"
            "that every trial gets. Any ps-worker option can be searched.\n\n"
            "Options:\n"
            "  --strategy S          grid | random | hyperband (default random)\n"
            "  --max-trials N        configurations to try (default 12; grid: the product)\n"
            "  --objective M         val_accuracy | val_loss | val_mae | val_auc (default\n"
            "                        val_accuracy; loss and mae are minimised)\n"
            "  --epochs R            epochs per trial (hyperband: the most any trial gets;\n"
            "                        default 1)\n"
            "  --min-epochs r        hyperband: the smallest rung (default R/9)\n"
            "  --eta E               hyperband: keep the top 1/E at each rung (default 3)\n"
            "  --executions-per-trial E  run each configuration E times (seeds differ), average\n"
            "  --parallel P          trials at once (default 1)\n"
            "  --val-fraction F      validation split of the training data (default 0.1)\n"
            "  --servers K --workers N  size of each trial's job (default 1 and 2)\n"
            "  --set KEY=VALUE       fixed worker option for every trial (repeatable)\n"
            "  --seed S              sampling seed (default 1)\n"
            "  --grid-points G       grid: points for float/log ranges (default 3)\n"
            "  --grid-cap C          grid: refuse a product above C (default 1000)\n"
            "  --best N              export the best N models to DIR/best (default 3)\n"
            "  --trial-timeout S     fail a trial that runs longer (default 3600)\n"
            "  --resume              continue the study in DIR (skips ended trials)\n"
            "  --bin-dir DIR         where ps-launch is (default: beside ps-tune)\n");
}

/* ---- the search space -------------------------------------------------- */

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
static int split_args(char *inside, char out[][VAL_LEN], int cap)
{
    int n = 0;
    char *save = NULL;
    for (char *w = strtok_r(inside, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        if (n == cap)
            return -1;
        snprintf(out[n++], VAL_LEN, "%s", trim(w));
    }
    return n;
}

static int parse_number(const char *s, double *v)
{
    char *end;
    *v = strtod(s, &end);
    return end != s && *trim(end) == '\0' && isfinite(*v) ? 0 : -1;
}

static int load_space(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "ps-tune: cannot read space file '%s': %s\n", path, strerror(errno));
        return -1;
    }
    char line[1024];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *s = trim(line);
        if (!*s)
            continue;
        char *sp = s + strcspn(s, " \t");
        if (!*sp) {
            fprintf(stderr, "ps-tune: %s:%d: expected 'key SPEC'\n", path, lineno);
            goto fail;
        }
        *sp = '\0';
        char *spec = trim(sp + 1);
        if (n_params == MAX_PARAMS) {
            fprintf(stderr, "ps-tune: %s:%d: more than %d parameters\n", path, lineno, MAX_PARAMS);
            goto fail;
        }
        param_t *p = &params[n_params];
        memset(p, 0, sizeof *p);
        snprintf(p->name, sizeof p->name, "%s", s);
        for (char *c = p->name; *c; c++)
            if (*c == '-')
                *c = '_';
        char *open = strchr(spec, '(');
        size_t speclen = strlen(spec);
        if (!open || spec[speclen - 1] != ')') {
            p->kind = P_FIXED;
            snprintf(p->fixed, sizeof p->fixed, "%s", spec);
            n_params++;
            continue;
        }
        *open = '\0';
        spec[speclen - 1] = '\0';
        char args[MAX_CHOICES][VAL_LEN];
        int n = split_args(open + 1, args, MAX_CHOICES);
        const char *kind = trim(spec);
        double a[3] = {0, 0, 0};
        bool numeric = true;
        for (int i = 0; i < n && i < 3; i++)
            numeric = numeric && parse_number(args[i], &a[i]) == 0;
        if (strcmp(kind, "choice") == 0 && n >= 1) {
            p->kind = P_CHOICE;
            p->n_choices = n;
            memcpy(p->choices, args, sizeof args[0] * (size_t)n);
        } else if (strcmp(kind, "int") == 0 && (n == 2 || n == 3) && numeric && a[0] <= a[1] &&
                   a[0] == floor(a[0]) && a[1] == floor(a[1]) && (n == 2 || a[2] >= 1)) {
            p->kind = P_INT;
            p->lo = a[0];
            p->hi = a[1];
            p->step = n == 3 ? floor(a[2]) : 1;
        } else if (strcmp(kind, "float") == 0 && n == 2 && numeric && a[0] < a[1]) {
            p->kind = P_FLOAT;
            p->lo = a[0];
            p->hi = a[1];
        } else if (strcmp(kind, "log") == 0 && n == 2 && numeric && a[0] > 0 && a[0] < a[1]) {
            p->kind = P_LOG;
            p->lo = a[0];
            p->hi = a[1];
        } else {
            fprintf(stderr,
                    "ps-tune: %s:%d: '%s': expected int(lo, hi[, step]), float(lo, hi), "
                    "log(lo, hi) with 0 < lo < hi, or choice(a, b, ...)\n",
                    path, lineno, kind);
            goto fail;
        }
        n_params++;
    }
    fclose(f);
    return 0;
fail:
    fclose(f);
    return -1;
}

static bool searched(const param_t *p)
{
    return p->kind != P_FIXED;
}

static void format_number(double v, bool integer, char *out)
{
    if (integer)
        snprintf(out, VAL_LEN, "%.0f", v);
    else
        snprintf(out, VAL_LEN, "%.6g", v);
}

/* Trial id's values: a pure function of (seed, id). */
static void sample(int id, trial_t *t)
{
    ps_rng_t rng;
    ps_rng_seed(&rng, ps_rng_mix(O.seed, (uint64_t)id));
    for (int i = 0; i < n_params; i++) {
        const param_t *p = &params[i];
        double u = ps_rng_uniform(&rng);
        switch (p->kind) {
        case P_FIXED:
            snprintf(t->values[i], VAL_LEN, "%s", p->fixed);
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
            snprintf(t->values[i], VAL_LEN, "%s", p->choices[(int)(u * p->n_choices)]);
            break;
        }
    }
}

/* Grid values of parameter p: count, and value k into out. */
static int grid_count(const param_t *p)
{
    switch (p->kind) {
    case P_INT:
        return (int)((p->hi - p->lo) / p->step) + 1;
    case P_FLOAT:
    case P_LOG:
        return O.grid_points;
    case P_CHOICE:
        return p->n_choices;
    default:
        return 1;
    }
}

static void grid_value(const param_t *p, int k, char *out)
{
    int g = O.grid_points;
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
        snprintf(out, VAL_LEN, "%s", p->choices[k]);
        break;
    default:
        snprintf(out, VAL_LEN, "%s", p->fixed);
    }
}

/* Grid trial id: mixed-radix digits of id, first parameter slowest. */
static void grid_trial(int id, trial_t *t)
{
    int rest = id;
    for (int i = n_params - 1; i >= 0; i--) {
        int c = grid_count(&params[i]);
        grid_value(&params[i], rest % c, t->values[i]);
        rest /= c;
    }
}

/* ---- hyperband brackets ------------------------------------------------ */

/* Bracket of trial id under hyperband: brackets s = s_max .. 0 in turn, n_s
 * = ceil((s_max+1)/(s+1) * eta^s) configurations each, cycling. */
static int bracket_of(int id)
{
    int total = 0;
    for (int s = s_max; s >= 0; s--)
        total += (int)ceil((double)(s_max + 1) / (s + 1) * pow(O.eta, s));
    int k = id % total;
    for (int s = s_max; s >= 0; s--) {
        int n = (int)ceil((double)(s_max + 1) / (s + 1) * pow(O.eta, s));
        if (k < n)
            return s;
        k -= n;
    }
    return 0;
}

/* Epochs at rung k (0 = first) of bracket s: R * eta^(k - s). */
static double rung_epochs(int s, int k)
{
    return O.epochs * pow(O.eta, k - s);
}

/* Rung k of bracket s is budget level s - k. */
static void record_rung(int s, int k, double metric)
{
    int j = s - k;
    if (rung_n[j] == rung_cap[j]) {
        rung_cap[j] = rung_cap[j] ? rung_cap[j] * 2 : 16;
        rung_seen[j] = realloc(rung_seen[j], (size_t)rung_cap[j] * sizeof(double));
        if (!rung_seen[j])
            abort();
    }
    rung_seen[j][rung_n[j]++] = metric;
}

static bool better(double a, double b)
{
    return maximize ? a > b : a < b;
}

/* After recording metric at rung k of bracket s: does the trial go on?
 * Yes if it is in the top floor(n / eta) of the n results at that budget,
 * or the best so far (so one of the first results at a budget goes on: a
 * trial cannot wait for later ones, as synchronous halving would). */
static bool promote(int s, int k, double metric)
{
    int j = s - k, n = rung_n[j], beaten_by = 0;
    for (int i = 0; i < n; i++)
        beaten_by += better(rung_seen[j][i], metric);
    int keep = (int)floor((double)n / O.eta);
    return beaten_by < (keep > 1 ? keep : 1);
}

/* ---- trials as jobs ------------------------------------------------------ */

static void trial_dir(int id, int exec, char *out, size_t cap)
{
    snprintf(out, cap, "%s/trials/%04d-%d", O.study, id, exec);
}

static int write_trial_conf(int id, int exec, const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/trial.conf", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "# ps-tune trial %d execution %d: %s, then the study's settings and this\n"
               "# trial's values (later lines win); ps-launch adds epochs and seed\n",
            id, exec, O.config);
    FILE *base = fopen(O.config, "r");
    if (base) {
        char line[1024];
        while (fgets(line, sizeof line, base))
            fputs(line, f);
        fclose(base);
    }
    fprintf(f, "\n# ps-tune\nval_fraction %g\n", O.val_fraction);
    for (int i = 0; i < O.n_sets; i++) {
        char kv[512];
        snprintf(kv, sizeof kv, "%s", O.sets[i]);
        char *eq = strchr(kv, '=');
        if (eq) {
            *eq = ' ';
            fprintf(f, "%s\n", kv);
        }
    }
    for (int i = 0; i < n_params; i++)
        fprintf(f, "%s %s\n", params[i].name, trials[id].values[i]);
    return fclose(f);
}

static pid_t launch(int id, int exec, int *out_fd)
{
    char dir[4096], path[4200], err_path[4200];
    trial_dir(id, exec, dir, sizeof dir);
    mkdir(dir, 0755);
    if (write_trial_conf(id, exec, dir) != 0)
        return -1;
    char *argv[256];
    int n = 0;
    static char strs[64][4300];
    int ns = 0;
#define S(...) (snprintf(strs[ns], sizeof strs[ns], __VA_ARGS__), strs[ns++])
    argv[n++] = S("%s/ps-launch", O.bin_dir);
    argv[n++] = "--servers";
    argv[n++] = S("%d", O.servers);
    argv[n++] = "--workers";
    argv[n++] = S("%d", O.workers);
    argv[n++] = "--config";
    snprintf(path, sizeof path, "%s/trial.conf", dir);
    argv[n++] = S("%s", path);
    argv[n++] = "--job";
    argv[n++] = S("trial-%d-%d", id, exec);
    argv[n++] = "--timeout";
    argv[n++] = S("%.0f", O.timeout_s);
    argv[n++] = "--save-model";
    argv[n++] = S("%s/model", dir);
    argv[n++] = "--set";
    argv[n++] = S("epochs=%.0f", ceil(O.epochs));
    argv[n++] = "--set";
    argv[n++] = S("seed=%llu", (unsigned long long)(O.seed * 1000003ULL + (uint64_t)exec + 1));
    /* hyperband: an evaluation at every rung; otherwise a few per epoch
     * for the learning curves */
    argv[n++] = "--set";
    if (strcmp(O.strategy, "hyperband") == 0)
        argv[n++] = S("evals_per_epoch=%.0f", ceil(pow(O.eta, s_max) / O.epochs - 1e-9));
    else
        argv[n++] = S("evals_per_epoch=4");
#undef S
    argv[n] = NULL;
    int p[2];
    if (pipe(p) != 0)
        return -1;
    snprintf(err_path, sizeof err_path, "%s/launch.log", dir);
    pid_t pid = fork();
    if (pid == 0) {
        /* its own process group (so a stuck job can be killed whole), and it
         * hears about our death */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        dup2(p[1], STDOUT_FILENO);
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (e >= 0)
            dup2(e, STDERR_FILENO);
        close(p[0]);
        close(p[1]);
        execv(argv[0], argv);
        fprintf(stderr, "ps-tune: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        return -1;
    }
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    *out_fd = p[0];
    return pid;
}

static const char *metric_key(void)
{
    return O.objective;
}

/* The test-set twin of the objective ("val_accuracy" -> "test_accuracy"). */
static const char *test_key(void)
{
    static char key[64];
    snprintf(key, sizeof key, "test_%s", O.objective + 4);
    return key;
}

/* Handles one line of a trial's stdout; may decide to stop it early. */
static void trial_line(running_t *r, const char *line)
{
    double v;
    if (strstr(line, "\"event\":\"start\"")) {
        if (ps_json_get_number(line, "steps_per_epoch", &v) == 0)
            r->spe = v;
    } else if (strstr(line, "\"event\":\"eval\"") || strstr(line, "\"event\":\"epoch\"")) {
        double epoch, m;
        if (ps_json_get_number(line, metric_key(), &m) != 0)
            return;
        if (strstr(line, "\"event\":\"eval\""))
            ps_json_get_number(line, "epoch", &epoch);
        else if (ps_json_get_number(line, "epoch", &epoch) != 0)
            return;
        if (r->have_metric && epoch <= r->last_epoch + 1e-9)
            return; /* the epoch event repeats the last eval */
        r->last_epoch = epoch;
        r->last_metric = m;
        r->have_metric = true;
        if (r->n_curve < MAX_CURVE) {
            r->curve[r->n_curve][0] = epoch;
            r->curve[r->n_curve][1] = m;
            r->n_curve++;
        }
        int s = trials[r->trial].bracket;
        if (s < 0 || r->stopped_early)
            return;
        /* rungs of bracket s: k = 0 .. s, the last being the full budget */
        while (r->next_rung <= s && epoch >= rung_epochs(s, r->next_rung) * (1 - 1e-3)) {
            int k = r->next_rung++;
            record_rung(s, k, m);
            if (k < s && !promote(s, k, m)) {
                r->stopped_early = true;
                kill(-r->pid, SIGTERM); /* ps-launch stops its job */
                break;
            }
        }
    } else if (strstr(line, "\"event\":\"done\"")) {
        snprintf(r->done_line, sizeof r->done_line, "%.4095s", line);
        if (ps_json_get_number(line, test_key(), &v) == 0) {
            r->test_metric = v;
            r->has_test = true;
        }
    }
}

static void journal_write(int id, int exec, const running_t *r, const char *status,
                          const char *error, double final, double epochs, double wall)
{
    trial_t *t = &trials[id];
    char q[600];
    fprintf(journal,
            "{\"type\":\"trial\",\"trial_id\":%d,\"execution\":%d,\"bracket\":%d,\"status\":\"%s\","
            "\"final\":%.6f,\"has_final\":%d,\"epochs_spent\":%.4f,\"wall_s\":%.3f,",
            id, exec, t->bracket, status, isfinite(final) ? final : 0, isfinite(final) ? 1 : 0,
            epochs, wall);
    if (r->has_test)
        fprintf(journal, "\"test_metric\":%.6f,", r->test_metric);
    fprintf(journal, "\"error\":%s,\"objective\":\"%s\",\"rungs\":[", ps_json_quote(error, q, sizeof q),
            O.objective);
    /* the rung results this execution contributed, for --resume to replay */
    int s = t->bracket, first = 1;
    for (int k = 0; s >= 0 && k < r->next_rung; k++) {
        double at = rung_epochs(s, k), m = NAN;
        for (int c = 0; c < r->n_curve; c++)
            if (r->curve[c][0] >= at * (1 - 1e-3)) {
                m = r->curve[c][1];
                break;
            }
        if (isfinite(m)) {
            fprintf(journal, "%s[%d,%.6f]", first ? "" : ",", k, m);
            first = 0;
        }
    }
    fprintf(journal, "],\"curve\":[");
    for (int c = 0; c < r->n_curve; c++)
        fprintf(journal, "%s[%.4f,%.6f]", c ? "," : "", r->curve[c][0], r->curve[c][1]);
    fprintf(journal, "],\"params\":{");
    for (int i = 0; i < n_params; i++)
        if (searched(&params[i]))
            fprintf(journal, "%s\"%s\":%s", i ? "," : "", params[i].name,
                    ps_json_quote(t->values[i], q, sizeof q));
    fprintf(journal, "}}\n");
    fflush(journal);
    fsync(fileno(journal));
}

/* Folds one ended execution into its trial. */
static void account(int id, int exec, const char *status, const char *error, double final,
                    double epochs, double wall, const double (*curve)[2], int n_curve,
                    bool has_test, double test_metric)
{
    trial_t *t = &trials[id];
    if (exec_done[id * O.executions + exec])
        return; /* a duplicate journal line */
    exec_done[id * O.executions + exec] = 1;
    t->n_exec_done++;
    t->epochs_spent += epochs;
    t->wall_s += wall;
    if (isfinite(final)) {
        t->final_sum += final;
        t->n_final++;
    }
    if (exec == 0) {
        t->n_curve = n_curve < MAX_CURVE ? n_curve : MAX_CURVE;
        memcpy(t->curve, curve, (size_t)t->n_curve * sizeof t->curve[0]);
        t->has_test = has_test;
        t->test_metric = test_metric;
    }
    /* failed beats stopped beats finished: the worst outcome names the trial */
    if (strcmp(status, "failed") == 0 || !t->status[0] ||
        (strcmp(status, "stopped") == 0 && strcmp(t->status, "finished") == 0))
        snprintf(t->status, sizeof t->status, "%s", status);
    if (error && *error)
        snprintf(t->error, sizeof t->error, "%s", error);
}

static void finish_running(running_t *r)
{
    int st = 0;
    int64_t deadline = ps_time_ms() + 30000;
    while (waitpid(r->pid, &st, WNOHANG) == 0) {
        if (ps_time_ms() > deadline) {
            kill(-r->pid, SIGKILL);
            waitpid(r->pid, &st, 0);
            break;
        }
        usleep(20000);
    }
    close(r->fd);
    double wall = ps_time_wall_s() - r->t0;
    const char *status = "finished";
    char error[256] = "";
    double final = r->have_metric ? r->last_metric : NAN;
    double epochs = r->have_metric ? r->last_epoch : 0;
    if (r->stopped_early) {
        status = "stopped";
    } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !r->done_line[0] || !r->have_metric) {
        status = "failed";
        char dir[48]; /* relative to the study */
        snprintf(dir, sizeof dir, "trials/%04d-%d", r->trial, r->exec);
        if (WIFSIGNALED(st))
            snprintf(error, sizeof error, "ps-launch killed by signal %d (see %s/launch.log)",
                     WTERMSIG(st), dir);
        else if (!r->have_metric)
            snprintf(error, sizeof error, "no %s reported, exit %d (see %s/launch.log)",
                     O.objective, WIFEXITED(st) ? WEXITSTATUS(st) : -1, dir);
        else
            snprintf(error, sizeof error, "ps-launch exit %d (see %s/launch.log)",
                     WIFEXITED(st) ? WEXITSTATUS(st) : -1, dir);
        final = NAN;
    } else {
        double steps;
        if (r->spe > 0 && ps_json_get_number(r->done_line, "steps", &steps) == 0)
            epochs = steps / r->spe;
    }
    if (stop_signal) /* interrupted by us: not an outcome; --resume reruns it */
        return;
    journal_write(r->trial, r->exec, r, status, error, final, epochs, wall);
    account(r->trial, r->exec, status, error, final, epochs, wall, (const double(*)[2])r->curve,
            r->n_curve, r->has_test, r->test_metric);
    ps_log(*error ? PS_LOG_WARN : PS_LOG_INFO, "trial %d.%d %s: %s %.4f after %.2f epochs (%.1f s)%s%s",
           r->trial, r->exec, status, O.objective, isfinite(final) ? final : NAN, epochs, wall,
           *error ? ": " : "", error);
}

static void drain(running_t *r, bool *eof)
{
    for (;;) {
        ssize_t n = read(r->fd, r->buf + r->len, sizeof r->buf - r->len - 1);
        if (n == 0) {
            *eof = true;
            return;
        }
        if (n < 0)
            return;
        r->len += (size_t)n;
        r->buf[r->len] = '\0';
        char *start = r->buf, *nl;
        while ((nl = strchr(start, '\n'))) {
            *nl = '\0';
            trial_line(r, start);
            start = nl + 1;
        }
        r->len = (size_t)(r->buf + r->len - start);
        memmove(r->buf, start, r->len);
        if (r->len >= sizeof r->buf - 1)
            r->len = 0; /* a line longer than we care about */
    }
}

/* ---- resume -------------------------------------------------------------- */

/* Parses "[[a,b],[c,d]]" starting at p into pairs; returns the count. */
static int parse_pairs(const char *p, double (*out)[2], int cap)
{
    int n = 0;
    if (!p || *p != '[')
        return 0;
    p++;
    while (*p == '[' && n < cap) {
        char *end;
        out[n][0] = strtod(p + 1, &end);
        if (*end != ',')
            break;
        out[n][1] = strtod(end + 1, &end);
        if (*end != ']')
            break;
        n++;
        p = end + 1;
        if (*p == ',')
            p++;
    }
    return n;
}

static int replay_journal(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/journal.jsonl", O.study);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    static char line[1 << 16];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strstr(line, "\"type\":\"trial\""))
            continue;
        double id, exec, final, has_final, epochs, wall, test = 0;
        char status[16] = "", error[256] = "";
        if (ps_json_get_number(line, "trial_id", &id) != 0 ||
            ps_json_get_number(line, "execution", &exec) != 0 || id < 0 || id >= n_trials)
            continue;
        ps_json_get_number(line, "final", &final);
        ps_json_get_number(line, "has_final", &has_final);
        ps_json_get_number(line, "epochs_spent", &epochs);
        ps_json_get_number(line, "wall_s", &wall);
        bool has_test = ps_json_get_number(line, "test_metric", &test) == 0;
        ps_json_get_string(line, "status", status, sizeof status);
        ps_json_get_string(line, "error", error, sizeof error);
        double curve[MAX_CURVE][2], rung_pairs[MAX_RUNGS][2];
        const char *c = strstr(line, "\"curve\":");
        int nc = parse_pairs(c ? c + 8 : NULL, curve, MAX_CURVE);
        const char *rp = strstr(line, "\"rungs\":");
        int nr = parse_pairs(rp ? rp + 8 : NULL, rung_pairs, MAX_RUNGS);
        int s = trials[(int)id].bracket;
        for (int k = 0; s >= 0 && k < nr; k++)
            if ((int)rung_pairs[k][0] <= s)
                record_rung(s, (int)rung_pairs[k][0], rung_pairs[k][1]);
        account((int)id, (int)exec, status, error, has_final ? final : NAN, epochs, wall,
                (const double(*)[2])curve, nc, has_test, test);
        n++;
    }
    fclose(f);
    return n;
}

/* ---- results --------------------------------------------------------------- */

static double trial_metric(const trial_t *t)
{
    return t->n_final ? t->final_sum / t->n_final : NAN;
}

/* Whether t may be the answer: every execution finished (not stopped). */
static bool eligible(const trial_t *t)
{
    return strcmp(t->status, "finished") == 0 && t->n_final > 0;
}

static int cmp_rank(const void *a, const void *b)
{
    const trial_t *x = &trials[*(const int *)a], *y = &trials[*(const int *)b];
    bool ex = eligible(x), ey = eligible(y);
    if (ex != ey)
        return ex ? -1 : 1;
    double mx = trial_metric(x), my = trial_metric(y);
    if (!isfinite(mx) || !isfinite(my))
        return isfinite(mx) ? -1 : isfinite(my) ? 1 : 0;
    return better(mx, my) ? -1 : better(my, mx) ? 1 : 0;
}

static void params_text(const trial_t *t, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < n_params && len < cap; i++)
        if (searched(&params[i]))
            len += (size_t)snprintf(out + len, cap - len, "%s%s=%s", len ? " " : "", params[i].name,
                                    t->values[i]);
}

/* SVG: the objective of every trial (best in red), and the learning curves. */
static int write_svg(const int *order, int n)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/report.svg", O.study);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    const int W = 900, H = 760, L = 80, R = 30, T1 = 60, H1 = 250, T2 = 400, H2 = 300;
    double lo = INFINITY, hi = -INFINITY, emax = O.epochs;
    for (int i = 0; i < n_trials; i++) {
        double m = trial_metric(&trials[i]);
        if (isfinite(m)) {
            lo = fmin(lo, m);
            hi = fmax(hi, m);
        }
        for (int c = 0; c < trials[i].n_curve; c++) {
            lo = fmin(lo, trials[i].curve[c][1]);
            hi = fmax(hi, trials[i].curve[c][1]);
            emax = fmax(emax, trials[i].curve[c][0]);
        }
    }
    if (!isfinite(lo)) {
        lo = 0;
        hi = 1;
    }
    if (hi - lo < 1e-9)
        hi = lo + 1e-3;
    double pad = (hi - lo) * 0.05;
    lo -= pad;
    hi += pad;
    int best = n > 0 && eligible(&trials[order[0]]) ? order[0] : -1;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
               "<text x=\"%d\" y=\"28\" font-size=\"18\">ps-tune: %s, %s (%s is %s)</text>\n",
            W, H, W, H, L, O.strategy, O.study, O.objective, maximize ? "maximised" : "minimised");
    /* panel 1: objective per trial */
    int n_x = n_trials > 1 ? n_trials - 1 : 1;
#define PX1(i) (L + (double)(i) * (W - L - R) / n_x)
#define PY(v, top, h) ((top) + (h) - ((v) - lo) / (hi - lo) * (h))
    for (int panel = 0; panel < 2; panel++) {
        int top = panel ? T2 : T1, h = panel ? H2 : H1;
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#888\"/>\n",
                L, top, W - L - R, h);
        for (int k = 0; k <= 4; k++) {
            double v = lo + (hi - lo) * k / 4;
            fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.4g</text>\n", L - 6,
                    PY(v, top, h) + 4, v);
            fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>\n", L,
                    W - R, PY(v, top, h), PY(v, top, h));
        }
        fprintf(f, "<text x=\"%d\" y=\"%d\">%s</text>\n", L, top - 8,
                panel ? "learning curves (validation, per evaluation)" : "final objective per trial");
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">trial</text>\n", (L + W - R) / 2,
            T1 + H1 + 32);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">epochs</text>\n", (L + W - R) / 2,
            T2 + H2 + 32);
    for (int i = 0; i < n_trials; i++) {
        if (i % ((n_trials + 9) / 10) == 0)
            fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", PX1(i),
                    T1 + H1 + 16, i);
        double m = trial_metric(&trials[i]);
        if (!isfinite(m))
            continue;
        const char *color = i == best ? "#d62728" : strcmp(trials[i].status, "stopped") == 0 ? "#aaa" : "#1f77b4";
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%d\" fill=\"%s\"><title>trial %d: %.4f (%s)</title></circle>\n",
                PX1(i), PY(m, T1, H1), i == best ? 6 : 4, color, i, m, trials[i].status);
    }
    for (int k = 0; k <= 4; k++) {
        double e = emax * k / 4;
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.3g</text>\n",
                L + e / emax * (W - L - R), T2 + H2 + 16, e);
    }
    for (int pass = 0; pass < 2; pass++) /* the best last, on top */
        for (int i = 0; i < n_trials; i++) {
            const trial_t *t = &trials[i];
            if ((i == best) != (pass == 1) || t->n_curve == 0)
                continue;
            fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%s\" points=\"",
                    i == best ? "#d62728" : "#9ab", i == best ? "2.5" : "1");
            for (int c = 0; c < t->n_curve; c++)
                fprintf(f, "%s%.1f,%.1f", c ? " " : "", L + t->curve[c][0] / emax * (W - L - R),
                        PY(t->curve[c][1], T2, H2));
            fprintf(f, "\"><title>trial %d</title></polyline>\n", i);
        }
#undef PX1
#undef PY
    if (best >= 0) {
        char p[1024], q[2048];
        params_text(&trials[best], p, sizeof p);
        size_t j = 0;
        for (const char *s = p; *s && j < sizeof q - 8; s++) { /* XML-escape */
            const char *rep = *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : *s == '&' ? "&amp;" : NULL;
            if (rep) {
                memcpy(q + j, rep, strlen(rep));
                j += strlen(rep);
            } else {
                q[j++] = *s;
            }
        }
        q[j] = '\0';
        fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"#d62728\">best: trial %d, %s %.4f: %s</text>\n", L,
                H - 12, best, O.objective, trial_metric(&trials[best]), q);
    }
    fprintf(f, "</svg>\n");
    return fclose(f);
}

static void export_best(const int *order, int n)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/best", O.study);
    mkdir(dir, 0755);
    for (int k = 0; k < O.best_n && k < n; k++) {
        int id = order[k];
        if (!eligible(&trials[id]))
            break;
        char link[4300], target[64];
        snprintf(link, sizeof link, "%s/%d", dir, k + 1);
        snprintf(target, sizeof target, "../trials/%04d-0", id);
        unlink(link);
        if (symlink(target, link) != 0)
            ps_log(PS_LOG_WARN, "cannot link %s: %s", link, strerror(errno));
    }
}

static void report(double wall)
{
    int *order = malloc((size_t)n_trials * sizeof *order);
    if (!order)
        return;
    for (int i = 0; i < n_trials; i++)
        order[i] = i;
    qsort(order, (size_t)n_trials, sizeof *order, cmp_rank);
    double epochs = 0;
    int finished = 0, stopped = 0, failed = 0;
    for (int i = 0; i < n_trials; i++) {
        epochs += trials[i].epochs_spent;
        finished += strcmp(trials[i].status, "finished") == 0;
        stopped += strcmp(trials[i].status, "stopped") == 0;
        failed += strcmp(trials[i].status, "failed") == 0;
    }
    printf("\n%-6s %-10s %-9s %-8s %-8s %s\n", "trial", O.objective, "status", "epochs", "wall_s",
           "parameters");
    for (int k = 0; k < n_trials && k < 10; k++) {
        const trial_t *t = &trials[order[k]];
        char p[1024];
        params_text(t, p, sizeof p);
        printf("%-6d %-10.4f %-9s %-8.2f %-8.1f %s%s%s\n", order[k], trial_metric(t), t->status,
               t->epochs_spent, t->wall_s, p, *t->error ? "  # " : "", t->error);
    }
    double full = (double)n_trials * O.executions * O.epochs;
    printf("\n%s: %d trials (%d finished, %d stopped early, %d failed), %.2f epochs spent = %.0f%% "
           "of %d x %g epochs, wall %.1f s\n",
           O.strategy, n_trials, finished, stopped, failed, epochs, 100.0 * epochs / full,
           n_trials * O.executions, O.epochs, wall);
    const trial_t *b = n_trials && eligible(&trials[order[0]]) ? &trials[order[0]] : NULL;
    char p[1024] = "";
    if (b) {
        params_text(b, p, sizeof p);
        printf("best: trial %d, %s %.4f (validation, used to select): %s\n", order[0], O.objective,
               trial_metric(b), p);
        if (b->has_test)
            printf("best configuration on the test set (reported only, never used to select): "
                   "%s %.4f\n",
                   test_key(), b->test_metric);
    } else {
        printf("no trial finished\n");
    }
    export_best(order, n_trials);
    if (write_svg(order, n_trials) != 0)
        ps_log(PS_LOG_WARN, "cannot write %s/report.svg", O.study);
    char path[4200], q[2048];
    snprintf(path, sizeof path, "%s/summary.json", O.study);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f,
                "{\"strategy\":\"%s\",\"objective\":\"%s\",\"trials\":%d,\"finished\":%d,"
                "\"stopped\":%d,\"failed\":%d,\"epochs_spent\":%.4f,\"epochs_if_all_full\":%.4f,"
                "\"wall_s\":%.3f,\"best_trial\":%d,\"best_metric\":%.6f,\"best_params\":%s",
                O.strategy, O.objective, n_trials, finished, stopped, failed, epochs, full, wall,
                b ? order[0] : -1, b ? trial_metric(b) : 0, ps_json_quote(p, q, sizeof q));
        if (b && b->has_test)
            fprintf(f, ",\"best_%s\":%.6f", test_key(), b->test_metric);
        fprintf(f, "}\n");
        fclose(f);
    }
    free(order);
}

/* ---- main ------------------------------------------------------------------ */

static int parse_args(int argc, char **argv)
{
    O = (opts_t){.strategy = "random", .objective = "val_accuracy", .max_trials = -1, .parallel = 1,
                 .executions = 1, .servers = 1, .workers = 2, .best_n = 3, .grid_points = 3,
                 .grid_cap = 1000, .epochs = 1, .eta = 3, .val_fraction = 0.1, .timeout_s = 3600,
                 .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--resume") == 0) {
            O.resume = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "ps-tune: '%s' needs a value (see --help)\n", a);
            return -1;
        }
        i++;
        if (strcmp(a, "--space") == 0) O.space_file = v;
        else if (strcmp(a, "--config") == 0) O.config = v;
        else if (strcmp(a, "--study") == 0) O.study = v;
        else if (strcmp(a, "--strategy") == 0) O.strategy = v;
        else if (strcmp(a, "--objective") == 0) O.objective = v;
        else if (strcmp(a, "--max-trials") == 0) O.max_trials = atoi(v);
        else if (strcmp(a, "--parallel") == 0) O.parallel = atoi(v);
        else if (strcmp(a, "--executions-per-trial") == 0) O.executions = atoi(v);
        else if (strcmp(a, "--servers") == 0) O.servers = atoi(v);
        else if (strcmp(a, "--workers") == 0) O.workers = atoi(v);
        else if (strcmp(a, "--best") == 0) O.best_n = atoi(v);
        else if (strcmp(a, "--grid-points") == 0) O.grid_points = atoi(v);
        else if (strcmp(a, "--grid-cap") == 0) O.grid_cap = atoi(v);
        else if (strcmp(a, "--epochs") == 0) O.epochs = atof(v);
        else if (strcmp(a, "--min-epochs") == 0) O.min_epochs = atof(v);
        else if (strcmp(a, "--eta") == 0) O.eta = atof(v);
        else if (strcmp(a, "--val-fraction") == 0) O.val_fraction = atof(v);
        else if (strcmp(a, "--trial-timeout") == 0) O.timeout_s = atof(v);
        else if (strcmp(a, "--seed") == 0) O.seed = strtoull(v, NULL, 10);
        else if (strcmp(a, "--bin-dir") == 0) O.bin_dir_arg = v;
        else if (strcmp(a, "--set") == 0 && O.n_sets < 64) O.sets[O.n_sets++] = v;
        else {
            fprintf(stderr, "ps-tune: unknown option '%s' (see --help)\n", a);
            return -1;
        }
    }
    const char *why = NULL;
    if (!O.space_file || !O.config || !O.study)
        why = "--space, --config and --study are required";
    else if (strcmp(O.strategy, "grid") && strcmp(O.strategy, "random") && strcmp(O.strategy, "hyperband"))
        why = "--strategy must be grid, random or hyperband";
    else if (strcmp(O.objective, "val_accuracy") && strcmp(O.objective, "val_loss") &&
             strcmp(O.objective, "val_mae") && strcmp(O.objective, "val_auc"))
        why = "--objective must be val_accuracy, val_loss, val_mae or val_auc";
    else if (O.parallel < 1 || O.parallel > MAX_PARALLEL)
        why = "--parallel must be 1 to 16";
    else if (O.executions < 1 || O.servers < 1 || O.workers < 1 || O.grid_points < 1)
        why = "--executions-per-trial, --servers, --workers, --grid-points must be >= 1";
    else if (!(O.epochs >= 1) || O.epochs != floor(O.epochs) || !(O.eta > 1) ||
             !(O.val_fraction > 0 && O.val_fraction < 1))
        why = "--epochs must be a whole number >= 1, --eta > 1, --val-fraction in (0, 1)";
    if (why) {
        fprintf(stderr, "ps-tune: %s\n", why);
        return -1;
    }
    maximize = strcmp(O.objective, "val_accuracy") == 0 || strcmp(O.objective, "val_auc") == 0;
    if (O.bin_dir_arg) {
        snprintf(O.bin_dir, sizeof O.bin_dir, "%s", O.bin_dir_arg);
    } else {
        ssize_t n = readlink("/proc/self/exe", O.bin_dir, sizeof O.bin_dir - 1);
        O.bin_dir[n > 0 ? n : 0] = '\0';
        char *slash = strrchr(O.bin_dir, '/');
        if (slash)
            *slash = '\0';
    }
    return 0;
}

static int plan(void)
{
    if (strcmp(O.strategy, "grid") == 0) {
        double product = 1;
        for (int i = 0; i < n_params; i++)
            product *= grid_count(&params[i]);
        if (product > O.grid_cap) {
            fprintf(stderr, "ps-tune: the grid has %.0f points, above --grid-cap %d: narrow the "
                            "space or use random\n", product, O.grid_cap);
            return -1;
        }
        n_trials = (int)product;
        if (O.max_trials > 0 && O.max_trials < n_trials)
            fprintf(stderr, "ps-tune: grid runs all %d points (--max-trials %d ignored)\n",
                    n_trials, O.max_trials);
    } else {
        n_trials = O.max_trials > 0 ? O.max_trials : 12;
        if (n_trials > MAX_TRIALS)
            n_trials = MAX_TRIALS;
    }
    if (strcmp(O.strategy, "hyperband") == 0) {
        double rmin = O.min_epochs > 0 ? O.min_epochs : O.epochs / (O.eta * O.eta);
        s_max = (int)floor(log(O.epochs / rmin) / log(O.eta) + 1e-9);
        if (s_max < 0)
            s_max = 0;
        if (s_max >= MAX_RUNGS)
            s_max = MAX_RUNGS - 1;
        for (int k = 0; k <= s_max; k++)
            rungs[k] = rung_epochs(s_max, k);
    }
    trials = calloc((size_t)n_trials, sizeof *trials);
    exec_done = calloc((size_t)n_trials * (size_t)O.executions, 1);
    if (!trials || !exec_done)
        return -1;
    for (int id = 0; id < n_trials; id++) {
        if (strcmp(O.strategy, "grid") == 0)
            grid_trial(id, &trials[id]);
        else
            sample(id, &trials[id]);
        trials[id].bracket = strcmp(O.strategy, "hyperband") == 0 ? bracket_of(id) : -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    ps_log_init("ps-tune", PS_LOG_INFO);
    if (parse_args(argc, argv) != 0 || load_space(O.space_file) != 0 || plan() != 0)
        return EX_USAGE;
    if (access(O.config, R_OK) != 0) {
        fprintf(stderr, "ps-tune: cannot read config '%s': %s\n", O.config, strerror(errno));
        return EX_NOINPUT;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/journal.jsonl", O.study);
    if (!O.resume && access(path, F_OK) == 0) {
        fprintf(stderr, "ps-tune: '%s' already holds a study: --resume it or choose another --study\n",
                O.study);
        return EX_CANTCREAT;
    }
    mkdir(O.study, 0755);
    snprintf(path, sizeof path, "%s/trials", O.study);
    mkdir(path, 0755);
    int replayed = O.resume ? replay_journal() : 0;
    snprintf(path, sizeof path, "%s/journal.jsonl", O.study);
    journal = fopen(path, "a");
    if (!journal) {
        fprintf(stderr, "ps-tune: cannot write '%s': %s\n", path, strerror(errno));
        return EX_CANTCREAT;
    }
    if (!replayed) {
        char q[4200];
        fprintf(journal, "{\"type\":\"study\",\"strategy\":\"%s\",\"objective\":\"%s\",\"trials\":%d,"
                         "\"executions_per_trial\":%d,\"epochs\":%g,\"eta\":%g,\"seed\":%llu,"
                         "\"config\":%s}\n",
                O.strategy, O.objective, n_trials, O.executions, O.epochs, O.eta,
                (unsigned long long)O.seed, ps_json_quote(O.config, q, sizeof q));
        fflush(journal);
    }
    ps_log(PS_LOG_INFO, "study '%s': %s over %d trials x %d executions, %g epochs each%s (%d replayed)",
           O.study, O.strategy, n_trials, O.executions, O.epochs,
           strcmp(O.strategy, "hyperband") == 0 ? ", early stopping at rungs" : "", replayed);
    ps_proc_on_stop(on_signal);
    double t0 = ps_time_wall_s();
    running_t *run = calloc(MAX_PARALLEL, sizeof *run);
    int n_run = 0, next_job = 0, n_jobs = n_trials * O.executions;
    while (!stop_signal) {
        /* jobs in order: trial 0 execution 0, 1, ..; trial 1 ... */
        while (n_run < O.parallel && next_job < n_jobs) {
            int id = next_job / O.executions, exec = next_job % O.executions;
            next_job++;
            trial_t *t = &trials[id];
            if (exec_done[id * O.executions + exec] || strcmp(t->status, "stopped") == 0 ||
                strcmp(t->status, "failed") == 0)
                continue;
            running_t *r = &run[n_run];
            memset(r, 0, sizeof *r);
            r->trial = id;
            r->exec = exec;
            r->t0 = ps_time_wall_s();
            r->pid = launch(id, exec, &r->fd);
            if (r->pid < 0) {
                ps_log(PS_LOG_ERROR, "trial %d: cannot start ps-launch: %s", id, strerror(errno));
                account(id, exec, "failed", "cannot start ps-launch", NAN, 0, 0, NULL, 0, false, 0);
                continue;
            }
            char p[1024];
            params_text(t, p, sizeof p);
            if (t->bracket >= 0)
                ps_log(PS_LOG_INFO, "trial %d.%d started (bracket %d, first rung %.3g epochs): %s",
                       id, exec, t->bracket, rung_epochs(t->bracket, 0), p);
            else
                ps_log(PS_LOG_INFO, "trial %d.%d started: %s", id, exec, p);
            n_run++;
        }
        if (n_run <= 0)
            break;
        struct pollfd pfd[MAX_PARALLEL];
        for (int i = 0; i < n_run; i++)
            pfd[i] = (struct pollfd){run[i].fd, POLLIN, 0};
        if (poll(pfd, (nfds_t)n_run, 1000) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n_run; i++) {
            if (!(pfd[i].revents & (POLLIN | POLLHUP)))
                continue;
            bool eof = false;
            drain(&run[i], &eof);
            if (eof) {
                finish_running(&run[i]);
                run[i] = run[--n_run];
                pfd[i] = pfd[n_run];
                i--;
            }
        }
    }
    if (stop_signal) {
        for (int i = 0; i < n_run; i++)
            kill(-run[i].pid, SIGTERM);
        for (int i = 0; i < n_run; i++)
            finish_running(&run[i]);
        ps_log(PS_LOG_WARN, "interrupted by signal %d: ps-tune --resume continues the study",
               (int)stop_signal);
        fclose(journal);
        free(run);
        return 128 + (int)stop_signal;
    }
    fclose(journal);
    free(run);
    report(ps_time_wall_s() - t0);
    return 0;
}
