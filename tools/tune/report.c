/* report.c - the study's results: the ranking (printed), best/ (links to
 * the best trials' directories), report.svg (the objective of every trial
 * and the learning curves) and summary.json. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ps_json.h"
#include "ps_log.h"
#include "tune.h"

double tune_trial_metric(const trial_t *t)
{
    return t->n_final ? t->final_sum / t->n_final : NAN;
}

double tune_trial_test(const trial_t *t)
{
    return t->n_test ? t->test_sum / t->n_test : NAN;
}

/* failed beats stopped beats finished: the worst outcome names the trial */
static tune_status_t worse(tune_status_t a, tune_status_t b)
{
    return a > b ? a : b;
}

void tune_account(study_t *st, int id, int exec, tune_status_t status, const char *error,
                  double final, double epochs, double wall, const double (*curve)[2], int n_curve,
                  bool has_test, double test_metric)
{
    trial_t *t = &st->trials[id];
    if (st->exec_done[id * st->o.executions + exec])
        return; /* a duplicate journal line */
    st->exec_done[id * st->o.executions + exec] = 1;
    t->n_exec_done++;
    t->epochs_spent += epochs;
    t->wall_s += wall;
    if (isfinite(final)) {
        t->final_sum += final;
        t->n_final++;
    }
    if (has_test && isfinite(test_metric)) {
        t->test_sum += test_metric;
        t->n_test++;
    }
    if (exec == 0 && curve) {
        t->n_curve = n_curve < TUNE_MAX_CURVE ? n_curve : TUNE_MAX_CURVE;
        memcpy(t->curve, curve, (size_t)t->n_curve * sizeof t->curve[0]);
    }
    t->status = worse(t->status, status);
    if (error && *error)
        snprintf(t->error, sizeof t->error, "%s", error);
}

/* Whether t may be the answer: every execution finished (not stopped). */
static bool eligible(const trial_t *t)
{
    return t->status == TUNE_FINISHED && t->n_final > 0;
}

static const study_t *rank_study; /* qsort's comparison has no context argument */

static int cmp_rank(const void *a, const void *b)
{
    const study_t *st = rank_study;
    const trial_t *x = &st->trials[*(const int *)a], *y = &st->trials[*(const int *)b];
    bool ex = eligible(x), ey = eligible(y);
    if (ex != ey)
        return ex ? -1 : 1;
    double mx = tune_trial_metric(x), my = tune_trial_metric(y);
    if (!isfinite(mx) || !isfinite(my))
        return isfinite(mx) ? -1 : isfinite(my) ? 1 : 0;
    return tune_better(st, mx, my) ? -1 : tune_better(st, my, mx) ? 1 : 0;
}

/* s with XML's special characters as entities, control bytes and invalid
 * UTF-8 as '?': safe in SVG text and attributes. Returns out. */
static char *xml_escape(const char *s, char *out, size_t cap)
{
    size_t j = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && j + 7 < cap;) {
        size_t n = ps_json_utf8_len(p);
        const char *rep = *p == '<'   ? "&lt;"
                          : *p == '>' ? "&gt;"
                          : *p == '&' ? "&amp;"
                          : *p == '"' ? "&quot;"
                                      : NULL;
        if (rep) {
            memcpy(out + j, rep, strlen(rep));
            j += strlen(rep);
            p++;
        } else if (n == 0 || (n == 1 && (*p < 0x20 || *p == 0x7f))) {
            out[j++] = '?';
            p++;
        } else {
            memcpy(out + j, p, n);
            j += n;
            p += n;
        }
    }
    out[j] = '\0';
    return out;
}

/* SVG: the objective of every trial (best in red), and the learning curves. */
static int write_svg(const study_t *st, const int *order, int n)
{
    char path[PS_OPT_STR_MAX + 32];
    snprintf(path, sizeof path, "%s/report.svg", st->o.study);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    const int W = 900, H = 760, L = 80, R = 30, T1 = 60, H1 = 250, T2 = 400, H2 = 300;
    double lo = INFINITY, hi = -INFINITY, emax = st->o.epochs;
    for (int i = 0; i < st->n_trials; i++) {
        double m = tune_trial_metric(&st->trials[i]);
        if (isfinite(m)) {
            lo = fmin(lo, m);
            hi = fmax(hi, m);
        }
        for (int c = 0; c < st->trials[i].n_curve; c++) {
            lo = fmin(lo, st->trials[i].curve[c][1]);
            hi = fmax(hi, st->trials[i].curve[c][1]);
            emax = fmax(emax, st->trials[i].curve[c][0]);
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
    int best = n > 0 && eligible(&st->trials[order[0]]) ? order[0] : -1;
    char study[3 * PS_OPT_STR_MAX];
    xml_escape(st->o.study, study, sizeof study);
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
            "<text x=\"%d\" y=\"28\" font-size=\"18\">ps-tune: %s, %s (%s is %s)</text>\n",
            W, H, W, H, L, tune_strategy_names[st->o.strategy], study,
            tune_objective_names[st->o.objective], st->maximize ? "maximised" : "minimised");
    /* panel 1: objective per trial */
    int n_x = st->n_trials > 1 ? st->n_trials - 1 : 1;
#define PX1(i) (L + (double)(i) * (W - L - R) / n_x)
#define PY(v, top, h) ((top) + (h) - ((v)-lo) / (hi - lo) * (h))
    for (int panel = 0; panel < 2; panel++) {
        int top = panel ? T2 : T1, h = panel ? H2 : H1;
        fprintf(
            f,
            "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#888\"/>\n",
            L, top, W - L - R, h);
        for (int k = 0; k <= 4; k++) {
            double v = lo + (hi - lo) * k / 4;
            fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.4g</text>\n", L - 6,
                    PY(v, top, h) + 4, v);
            fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>\n", L,
                    W - R, PY(v, top, h), PY(v, top, h));
        }
        fprintf(f, "<text x=\"%d\" y=\"%d\">%s</text>\n", L, top - 8,
                panel ? "learning curves (validation, per evaluation)"
                      : "final objective per trial");
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">trial</text>\n", (L + W - R) / 2,
            T1 + H1 + 32);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">epochs</text>\n", (L + W - R) / 2,
            T2 + H2 + 32);
    for (int i = 0; i < st->n_trials; i++) {
        if (i % ((st->n_trials + 9) / 10) == 0)
            fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", PX1(i),
                    T1 + H1 + 16, i);
        double m = tune_trial_metric(&st->trials[i]);
        if (!isfinite(m))
            continue;
        const char *color = i == best                              ? "#d62728"
                            : st->trials[i].status == TUNE_STOPPED ? "#aaa"
                                                                   : "#1f77b4";
        char p[1024], q[3 * 1024]; /* hovering a point shows its values */
        tune_params_text(st, &st->trials[i], p, sizeof p);
        fprintf(f,
                "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%d\" fill=\"%s\"><title>trial %d: %.4f "
                "(%s) %s</title></circle>\n",
                PX1(i), PY(m, T1, H1), i == best ? 6 : 4, color, i, m,
                tune_status_names[st->trials[i].status], xml_escape(p, q, sizeof q));
    }
    for (int k = 0; k <= 4; k++) {
        double e = emax * k / 4;
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.3g</text>\n",
                L + e / emax * (W - L - R), T2 + H2 + 16, e);
    }
    for (int pass = 0; pass < 2; pass++) /* the best last, on top */
        for (int i = 0; i < st->n_trials; i++) {
            const trial_t *t = &st->trials[i];
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
        char p[1024], q[3 * 1024];
        tune_params_text(st, &st->trials[best], p, sizeof p);
        fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"#d62728\">best: trial %d, %s %.4f: %s</text>\n",
                L, H - 12, best, tune_objective_names[st->o.objective],
                tune_trial_metric(&st->trials[best]), xml_escape(p, q, sizeof q));
    }
    fprintf(f, "</svg>\n");
    return fclose(f);
}

static void export_best(const study_t *st, const int *order, int n)
{
    char dir[PS_OPT_STR_MAX + 16];
    snprintf(dir, sizeof dir, "%s/best", st->o.study);
    mkdir(dir, 0755);
    for (int k = 0; k < st->o.best_n && k < n; k++) {
        int id = order[k];
        if (!eligible(&st->trials[id]))
            break;
        char link[PS_OPT_STR_MAX + 32], target[64];
        snprintf(link, sizeof link, "%s/%d", dir, k + 1);
        snprintf(target, sizeof target, "../trials/%04d-0", id);
        unlink(link);
        if (symlink(target, link) != 0)
            ps_log(PS_LOG_WARN, "cannot link %s: %s", link, strerror(errno));
    }
}

typedef struct {
    int finished, stopped, failed;
    double epochs;
} tally_t;

static void print_ranking(const study_t *st, const int *order, const tally_t *n, double wall)
{
    printf("\n%-6s %-10s %-9s %-8s %-8s %s\n", "trial", tune_objective_names[st->o.objective],
           "status", "epochs", "wall_s", "parameters");
    for (int k = 0; k < st->n_trials && k < 10; k++) {
        const trial_t *t = &st->trials[order[k]];
        char p[1024];
        tune_params_text(st, t, p, sizeof p);
        printf("%-6d %-10.4f %-9s %-8.2f %-8.1f %s%s%s\n", order[k], tune_trial_metric(t),
               tune_status_names[t->status], t->epochs_spent, t->wall_s, p, *t->error ? "  # " : "",
               t->error);
    }
    double full = (double)st->n_trials * (double)st->o.executions * st->o.epochs;
    printf("\n%s: %d trials (%d finished, %d stopped early, %d failed), %.2f epochs spent = %.0f%% "
           "of %lld x %g epochs, wall %.1f s\n",
           tune_strategy_names[st->o.strategy], st->n_trials, n->finished, n->stopped, n->failed,
           n->epochs, 100.0 * n->epochs / full, (long long)(st->n_trials * st->o.executions),
           st->o.epochs, wall);
}

static void write_summary(const study_t *st, const int *order, const tally_t *n, double wall)
{
    const trial_t *b =
        st->n_trials && eligible(&st->trials[order[0]]) ? &st->trials[order[0]] : NULL;
    char p[1024] = "", key[64];
    if (b)
        tune_params_text(st, b, p, sizeof p);
    json_t *o = json_object();
    json_object_set_new(o, "strategy", json_string(tune_strategy_names[st->o.strategy]));
    json_object_set_new(o, "objective", json_string(tune_objective_names[st->o.objective]));
    json_object_set_new(o, "trials", json_integer(st->n_trials));
    json_object_set_new(o, "finished", json_integer(n->finished));
    json_object_set_new(o, "stopped", json_integer(n->stopped));
    json_object_set_new(o, "failed", json_integer(n->failed));
    json_object_set_new(o, "epochs_spent", json_real(n->epochs));
    json_object_set_new(o, "epochs_if_all_full",
                        json_real((double)st->n_trials * (double)st->o.executions * st->o.epochs));
    json_object_set_new(o, "wall_s", json_real(wall));
    json_object_set_new(o, "best_trial", json_integer(b ? order[0] : -1));
    json_object_set_new(o, "best_metric", json_real(b ? tune_trial_metric(b) : 0));
    json_object_set_new(o, "best_params", ps_json_string(p));
    snprintf(key, sizeof key, "best_test_%s", tune_objective_names[st->o.objective] + 4);
    if (b && b->n_test)
        json_object_set_new(o, key, json_real(tune_trial_test(b)));
    char path[PS_OPT_STR_MAX + 32];
    snprintf(path, sizeof path, "%s/summary.json", st->o.study);
    if (json_dump_file(o, path, JSON_COMPACT | JSON_REAL_PRECISION(10)) != 0)
        ps_log(PS_LOG_WARN, "cannot write %s", path);
    json_decref(o);
}

int tune_report(study_t *st, double wall)
{
    int *order = ps_xmalloc((size_t)(st->n_trials ? st->n_trials : 1) * sizeof *order);
    for (int i = 0; i < st->n_trials; i++)
        order[i] = i;
    rank_study = st;
    qsort(order, (size_t)st->n_trials, sizeof *order, cmp_rank);
    tally_t n = {0};
    for (int i = 0; i < st->n_trials; i++) {
        n.epochs += st->trials[i].epochs_spent;
        n.finished += st->trials[i].status == TUNE_FINISHED;
        n.stopped += st->trials[i].status == TUNE_STOPPED;
        n.failed += st->trials[i].status == TUNE_FAILED;
    }
    print_ranking(st, order, &n, wall);
    const trial_t *b =
        st->n_trials && eligible(&st->trials[order[0]]) ? &st->trials[order[0]] : NULL;
    if (b) {
        char p[1024];
        tune_params_text(st, b, p, sizeof p);
        printf("best: trial %d, %s %.4f (validation, used to select): %s\n", order[0],
               tune_objective_names[st->o.objective], tune_trial_metric(b), p);
        if (b->n_test)
            printf("best configuration on the test set (reported only, never used to select): "
                   "test_%s %.4f (mean of %d executions)\n",
                   tune_objective_names[st->o.objective] + 4, tune_trial_test(b), b->n_test);
    } else {
        printf("no trial finished\n");
    }
    export_best(st, order, st->n_trials);
    if (write_svg(st, order, st->n_trials) != 0)
        ps_log(PS_LOG_WARN, "cannot write %s/report.svg", st->o.study);
    write_summary(st, order, &n, wall);
    free(order);
    return n.finished;
}

const char *tune_first_error(const study_t *st)
{
    static char text[300];
    for (int i = 0; i < st->n_trials; i++) {
        if (st->trials[i].status == TUNE_FAILED) {
            snprintf(text, sizeof text, "trial %d: %.256s", i,
                     *st->trials[i].error ? st->trials[i].error : "failed");
            return text;
        }
    }
    return "no trial failed, none ran to the end";
}
