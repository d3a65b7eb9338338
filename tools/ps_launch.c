/* ps_launch.c - ps-launch: run a whole job on this machine. Starts K
 * servers on ephemeral ports (they report them through ready files in a
 * temporary state directory), then N workers pointed at them; streams
 * progress; stops everything; exits with the job's status. Single thread. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <sysexits.h>
#include <unistd.h>

#include "ps_child.h"
#include "ps_config.h"
#include "ps_curve.h"
#include "ps_err.h"
#include "ps_event.h"
#include "ps_log.h"
#include "ps_proc.h"
#include "ps_time.h"

#define MAX_PROCS 256

typedef struct {
    int64_t servers, workers;
    char config[PS_OPT_STR_MAX], server_config[PS_OPT_STR_MAX];
    char save_model[PS_OPT_STR_MAX], job[PS_OPT_STR_MAX], bin_dir[PS_OPT_STR_MAX];
    char worker_command[PS_OPT_STR_MAX];
    ps_opt_list_t sets, server_sets;
    int64_t timeout_s, ready_timeout_s;
    int64_t max_worker_restarts, max_server_restarts;
    bool keep_state, restart_servers, restart_workers, curve;
} launch_opts_t;

#define O launch_opts_t
static const ps_opt_t launch_opts[] = {
    PS_OPT_INT("servers", O, servers, "0", 0, MAX_PROCS,
               "server shards; 0 = one per 8 cores this process may use, at least 1 (on one "
               "host the shards and workers share memory rather than TCP)"),
    PS_OPT_INT("workers", O, workers, "0", 0, MAX_PROCS,
               "workers; 0 = one per core this process may use (the global batch is workers x "
               "batch_size)"),
    PS_OPT_STR("config", O, config, "", "the job's worker config (see ps-worker --help)"),
    PS_OPT_LIST("set", O, sets, "KEY=VALUE: override a worker option"),
    PS_OPT_STR("server_config", O, server_config, "", "config file for every server"),
    PS_OPT_LIST("server_set", O, server_sets, "KEY=VALUE: override a server option"),
    PS_OPT_STR("save_model", O, save_model, "",
               "rank 0 writes the trained tables (.npy) and model.json here"),
    PS_OPT_STR("job", O, job, "launch", "job name"),
    PS_OPT_STR("worker_command", O, worker_command, "",
               "run this shell command as each worker instead of ps-worker (e.g. 'python3 "
               "train.py'), with PS_SERVERS, PS_JOB, PS_RANK, PS_WORLD (and with --curve "
               "PS_CURVE_SERVER_KEY_FILE, PS_CURVE_SECRET_FILE) in its environment"),
    PS_OPT_INT("timeout", O, timeout_s, "7200", 1, 1LL << 31, "fail the job if it runs longer (s)"),
    PS_OPT_INT("ready_timeout", O, ready_timeout_s, "30", 1, 86400,
               "how long servers may take to start (s)"),
    PS_OPT_STR("bin_dir", O, bin_dir, "",
               "where ps-server and ps-worker are (default: beside "
               "ps-launch)"),
    PS_OPT_BOOL("keep_state", O, keep_state, "no", "keep the temporary state directory"),
    PS_OPT_BOOL("curve", O, curve, "no",
                "CURVE on every socket: a key pair for the servers and one per worker, and an "
                "allow-list, in the state directory"),
    PS_OPT_BOOL("restart_servers", O, restart_servers, "no",
                "restart a server that dies, same command and port; it resumes from its "
                "checkpoints (see checkpoint_every)"),
    PS_OPT_INT("max_server_restarts", O, max_server_restarts, "10", 0, 1000000,
               "with --restart-servers: restarts of one shard before the job fails"),
    PS_OPT_BOOL("restart_workers", O, restart_workers, "no",
                "restart a worker killed by a signal, same command: it takes its rank back once "
                "the servers declare the old process dead, and replays from the job's clock"),
    PS_OPT_INT("max_worker_restarts", O, max_worker_restarts, "10", 0, 1000000,
               "with --restart-workers: restarts of one rank before it counts as lost"),
};
#undef O

static const ps_optset_t launch_optset = {
    "ps-launch",
    "Usage: ps-launch [--servers K] [--workers N] --config FILE [options]\n"
    "       ps-launch [--servers K] [--workers N] --worker-command CMD [options]\n"
    "Runs one training job on this machine: K ps-server shards and N ps-worker\n"
    "processes on ports chosen at run time, with a temporary state directory.\n"
    "Streams progress on stderr, rank 0's epoch events and one job summary\n"
    "({\"event\":\"done\",...}, bytes summed over workers) on stdout, stops\n"
    "everything, and exits 0 only if every worker succeeded.",
    launch_opts,
    sizeof launch_opts / sizeof launch_opts[0],
};

typedef struct {
    ps_event_t done; /* the worker's {"event":"done"} line, once seen */
    bool has_done;
    bool lost;        /* killed by a signal and not restarted */
    int64_t restarts; /* --restart-workers: times this rank was restarted */
    bool finished;    /* a restarted process found the job finished */
} worker_t;

typedef struct {
    launch_opts_t o;
    char state_dir[PATH_MAX];
    ps_child_t servers[MAX_PROCS], workers[MAX_PROCS];
    worker_t wk[MAX_PROCS];
    int ports[MAX_PROCS]; /* each server's port, once ready */
    int64_t server_restarts[MAX_PROCS];
    char endpoints[8192];
} launch_t;

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

/* argv builder: a fixed array of strings we own. */
typedef struct {
    char *v[4 * PS_OPT_LIST_MAX + 32];
    int n;
} args_t;

static void arg(args_t *a, const char *s)
{
    a->v[a->n++] = ps_xstrdup(s);
    a->v[a->n] = NULL;
}

static void arg_set(args_t *a, const char *kv)
{
    const char *eq = strchr(kv, '=');
    char key[256];
    snprintf(key, sizeof key, "--%.*s", (int)(eq - kv), kv);
    arg(a, key);
    arg(a, eq + 1);
}

/* Appends "--flag N". */
static void arg_num(args_t *a, const char *flag, long long n)
{
    char num[32];
    snprintf(num, sizeof num, "%lld", n);
    arg(a, flag);
    arg(a, num);
}

/* Appends "--flag STATE/FMT". */
static void arg_path(args_t *a, const launch_t *L, const char *flag, const char *fmt, int i)
{
    char name[64], path[PATH_MAX + 64];
    snprintf(name, sizeof name, fmt, i);
    snprintf(path, sizeof path, "%s/%s", L->state_dir, name);
    arg(a, flag);
    arg(a, path);
}

static void args_free(args_t *a)
{
    for (int i = 0; i < a->n; i++)
        free(a->v[i]);
    a->n = 0;
}

/* argv of a child: BIN_DIR/program [--config FILE] [--KEY VALUE for each set]. */
static void args_program(args_t *a, const launch_t *L, const char *program, const char *config,
                         const ps_opt_list_t *sets)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", L->o.bin_dir, program);
    arg(a, path);
    if (*config) {
        arg(a, "--config");
        arg(a, config);
    }
    for (int k = 0; k < sets->n; k++)
        arg_set(a, sets->v[k]);
}

/* Starts server i (port 0 = any; a restart reuses its port). Each server
 * keeps its checkpoints in STATE/server-i. */
static int start_server(launch_t *L, int i, int port)
{
    args_t a = {0};
    args_program(&a, L, "ps-server", L->o.server_config, &L->o.server_sets);
    arg_num(&a, "--shard", i);
    arg_num(&a, "--shards", L->o.servers);
    arg_num(&a, "--port", port);
    arg_path(&a, L, "--state-dir", "server-%d", i);
    arg_path(&a, L, "--stats-socket", "server-%d.sock", i);
    arg_path(&a, L, "--ready-file", "server-%d.ready", i);
    if (L->o.curve) {
        arg_path(&a, L, "--curve-secret-file", "keys/server.secret", 0);
        arg_path(&a, L, "--allow-file", "keys/allow", 0);
    }
    char name[32];
    snprintf(name, sizeof name, "server %d", i);
    ps_child_spawn_t how = {.ignore_sigint = true};
    int rc = ps_child_start(&L->servers[i], name, a.v, &how);
    args_free(&a);
    if (rc != 0)
        ps_log(PS_LOG_ERROR, "launch: cannot start %s: %s", name, strerror(errno));
    return rc;
}

static void reap_all(ps_child_t *cs, int n)
{
    for (int i = 0; i < n; i++)
        ps_child_reap(&cs[i]);
}

/* The endpoint in server i's ready file, once it is there ("" until). */
static void read_ready(const launch_t *L, int i, char *ep, size_t cap)
{
    char path[PATH_MAX + 64], line[512];
    snprintf(path, sizeof path, "%s/server-%d.ready", L->state_dir, i);
    ep[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "endpoint ", 9) == 0)
            snprintf(ep, cap, "%.*s", (int)strcspn(line + 9, "\n"), line + 9);
    fclose(f);
}

/* Waits for every server's ready file (against a deadline, and failing
 * at once if a server exits) and collects the endpoints in shard order. */
static int wait_servers_ready(launch_t *L)
{
    int64_t deadline = ps_time_ms() + L->o.ready_timeout_s * 1000;
    size_t len = 0;
    for (int i = 0; i < L->o.servers; i++) {
        char ep[512], why[64];
        for (read_ready(L, i, ep, sizeof ep); !*ep; read_ready(L, i, ep, sizeof ep)) {
            if (ps_child_reap(&L->servers[i])) {
                ps_log(PS_LOG_ERROR, "launch: server %d exited before it was ready (%s)", i,
                       ps_child_describe(L->servers[i].status, why, sizeof why));
                return -1;
            }
            if (ps_time_ms() > deadline || stop_signal) {
                ps_log(PS_LOG_ERROR, "launch: server %d (pid %d) not ready after %lld s", i,
                       (int)L->servers[i].pid, (long long)L->o.ready_timeout_s);
                return -1;
            }
            poll(NULL, 0, 20);
        }
        len += (size_t)snprintf(L->endpoints + len, sizeof L->endpoints - len, "%s%s", i ? "," : "",
                                ep);
        const char *colon = strrchr(ep, ':');
        L->ports[i] = colon ? atoi(colon + 1) : 0;
    }
    ps_log(PS_LOG_INFO, "launch: %d servers ready: %s; stats sockets %s/server-N.sock (ps-ctl -s)",
           (int)L->o.servers, L->endpoints, L->state_dir);
    return 0;
}

/* --curve: STATE/keys/ holds server.{secret,pub}, worker-R.{secret,pub}
 * and the allow-list naming each worker's key. */
static int make_keys(launch_t *L)
{
    char dir[PATH_MAX + 16], base[PATH_MAX + 64];
    snprintf(dir, sizeof dir, "%s/keys", L->state_dir);
    if (mkdir(dir, 0700) != 0) {
        ps_log(PS_LOG_ERROR, "launch: cannot create '%s': %s", dir, strerror(errno));
        return -1;
    }
    ps_errbuf_t err;
    ps_curve_keys_t keys;
    snprintf(base, sizeof base, "%s/server", dir);
    if (ps_curve_keygen(base, &keys, &err) != PS_OK)
        goto fail;
    snprintf(base, sizeof base, "%s/allow", dir);
    FILE *allow = fopen(base, "w");
    if (!allow) {
        ps_err_set(&err, PS_EIO, "cannot write '%s': %s", base, strerror(errno));
        goto fail;
    }
    for (int r = 0; r < L->o.workers; r++) {
        snprintf(base, sizeof base, "%s/worker-%d", dir, r);
        if (ps_curve_keygen(base, &keys, &err) != PS_OK) {
            fclose(allow);
            goto fail;
        }
        fprintf(allow, "worker %s worker-%d\n", keys.public_z85, r);
    }
    memset(keys.secret_z85, 0, sizeof keys.secret_z85);
    if (fclose(allow) != 0) {
        ps_err_set(&err, PS_EIO, "cannot write the allow-list in '%s'", dir);
        goto fail;
    }
    ps_log(PS_LOG_INFO, "launch: CURVE on, keys in '%s'", dir);
    return 0;
fail:
    ps_log(PS_LOG_ERROR, "launch: %s", err.msg);
    return -1;
}

/* The environment of a --worker-command worker, as the psclient package
 * and ps-worker (rank, world) read it: set around the fork, so that only
 * this child sees it. */
static void worker_env(const launch_t *L, int r, bool set)
{
    static const char *const names[] = {
        "PS_SERVERS",          "PS_JOB", "PS_RANK", "PS_WORLD", "PS_CURVE_SERVER_KEY_FILE",
        "PS_CURVE_SECRET_FILE"};
    if (!set) {
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            unsetenv(names[i]);
        return;
    }
    char num[32], path[PATH_MAX + 64];
    setenv("PS_SERVERS", L->endpoints, 1);
    setenv("PS_JOB", L->o.job, 1);
    snprintf(num, sizeof num, "%d", r);
    setenv("PS_RANK", num, 1);
    snprintf(num, sizeof num, "%lld", (long long)L->o.workers);
    setenv("PS_WORLD", num, 1);
    if (L->o.curve) {
        snprintf(path, sizeof path, "%s/keys/server.pub", L->state_dir);
        setenv("PS_CURVE_SERVER_KEY_FILE", path, 1);
        snprintf(path, sizeof path, "%s/keys/worker-%d.secret", L->state_dir, r);
        setenv("PS_CURVE_SECRET_FILE", path, 1);
    }
}

/* A --worker-command worker: /bin/sh -c CMD with the job in its environment. */
static int start_command_worker(launch_t *L, int r, const char *name)
{
    char *argv[] = {"/bin/sh", "-c", L->o.worker_command, NULL};
    /* its own group: stopping it reaches whatever the shell started */
    ps_child_spawn_t how = {
        .pipe_stdout = true, .ignore_sigint = true, .own_group = true, .foreign = true};
    worker_env(L, r, true);
    int rc = ps_child_start(&L->workers[r], name, argv, &how);
    worker_env(L, r, false);
    if (rc != 0)
        ps_log(PS_LOG_ERROR, "launch: cannot start %s: %s", name, strerror(errno));
    else
        ps_log(PS_LOG_INFO, "launch: %s (pid %d): %s", name, (int)L->workers[r].pid,
               L->o.worker_command);
    return rc;
}

/* Starts the worker of rank r (again, after a restart: same command). */
static int start_worker(launch_t *L, int r)
{
    if (*L->o.worker_command) {
        char name[32];
        snprintf(name, sizeof name, "worker %d", r);
        return start_command_worker(L, r, name);
    }
    args_t a = {0};
    args_program(&a, L, "ps-worker", L->o.config, &L->o.sets);
    arg(&a, "--servers");
    arg(&a, L->endpoints);
    arg(&a, "--job");
    arg(&a, L->o.job);
    arg_num(&a, "--rank", r);
    arg_num(&a, "--world", L->o.workers);
    /* every rank: with pipeline_stages replica 0 of each stage writes its
     * tables (a data-parallel worker of rank > 0 writes nothing) */
    if (*L->o.save_model) {
        arg(&a, "--save-model");
        arg(&a, L->o.save_model);
    }
    /* pipeline_stages: where the stages of a replica find each other */
    arg(&a, "--pipeline-dir");
    arg(&a, L->state_dir);
    if (L->o.curve) {
        arg_path(&a, L, "--curve-server-key-file", "keys/server.pub", 0);
        arg_path(&a, L, "--curve-secret-file", "keys/worker-%d.secret", r);
    }
    char name[32];
    snprintf(name, sizeof name, "worker %d", r);
    ps_child_spawn_t how = {.pipe_stdout = true, .ignore_sigint = true};
    int rc = ps_child_start(&L->workers[r], name, a.v, &how);
    args_free(&a);
    if (rc != 0)
        ps_log(PS_LOG_ERROR, "launch: cannot start %s: %s", name, strerror(errno));
    return rc;
}

static int start_workers(launch_t *L)
{
    for (int r = 0; r < L->o.workers; r++)
        if (start_worker(L, r) != 0)
            return -1;
    return 0;
}

/* One complete stdout line of a worker: its done event is kept, rank 0's
 * other lines are passed on. */
static void worker_line(void *ctx, ps_child_t *c, char *line)
{
    launch_t *L = ctx;
    int r = (int)(c - L->workers);
    ps_event_t ev;
    if (ps_event_parse(line, &ev) == 0 && ev.kind == PS_EVENT_DONE) {
        ps_event_fini(&L->wk[r].done);
        L->wk[r].done = ev;
        L->wk[r].has_done = true;
        return;
    }
    ps_event_fini(&ev);
    if (r == 0) {
        fputs(line, stdout);
        fputc('\n', stdout);
        fflush(stdout);
    }
}

/* A worker killed by a signal (a lost machine): restarted with
 * --restart-workers, else lost. Under BSP the servers hold the job for it
 * (lost_rank_timeout_ms) and then fail the other workers, naming it; under
 * SSP/ASP they go on without it. 0, or the job's exit status. */
static int worker_killed(launch_t *L, int r)
{
    ps_child_t *p = &L->workers[r];
    char why[64];
    ps_child_describe(p->status, why, sizeof why);
    if (L->o.restart_workers && L->wk[r].restarts < L->o.max_worker_restarts) {
        L->wk[r].restarts++;
        ps_log(PS_LOG_WARN, "launch: worker %d (pid %d) died (%s); restarting it (%lld of %lld)", r,
               (int)p->pid, why, (long long)L->wk[r].restarts, (long long)L->o.max_worker_restarts);
        return start_worker(L, r) == 0 ? 0 : EX_OSERR;
    }
    L->wk[r].lost = true;
    ps_log(PS_LOG_WARN, "launch: worker %d (pid %d) lost: %s%s", r, (int)p->pid, why,
           L->o.restart_workers ? " (no restarts left)" : " (no --restart-workers)");
    return 0;
}

/* The workers' state: 0 while some run, else the job's exit status. */
static int check_workers(launch_t *L, int *running)
{
    char why[64];
    *running = 0;
    for (int r = 0; r < L->o.workers; r++) {
        ps_child_t *p = &L->workers[r];
        if (!p->exited || p->out_fd >= 0) {
            (*running)++;
            continue;
        }
        if (L->wk[r].lost)
            continue;
        if (WIFSIGNALED(p->status)) {
            int rc = worker_killed(L, r);
            if (rc)
                return rc;
            if (!L->wk[r].lost)
                (*running)++;
        } else if (WEXITSTATUS(p->status) == PS_EXIT_JOB_FINISHED && L->wk[r].restarts &&
                   !L->wk[r].finished) {
            /* killed after its BYE: the restarted process found the job over */
            L->wk[r].finished = true;
            ps_log(PS_LOG_NOTICE,
                   "launch: worker %d (restarted, pid %d) found the job finished: "
                   "its part was done",
                   r, (int)p->pid);
        } else if (WEXITSTATUS(p->status) != 0 && !L->wk[r].finished) {
            ps_log(PS_LOG_ERROR, "launch: worker %d (pid %d) failed: %s; stopping the job", r,
                   (int)p->pid, ps_child_describe(p->status, why, sizeof why));
            return WEXITSTATUS(p->status);
        }
    }
    if (*running)
        return 0;
    for (int r = 0; r < L->o.workers; r++)
        if (!L->wk[r].lost)
            return 0;
    ps_log(PS_LOG_ERROR, "launch: every worker was lost");
    return 1;
}

/* A job that asked for a model has one: rank 0 writes it last, so a
 * missing model.json means rank 0 never finished. */
static int check_model(const launch_t *L, const struct timespec *started)
{
    if (!*L->o.save_model)
        return 0;
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/model.json", L->o.save_model);
    struct stat st;
    if (stat(path, &st) == 0 &&
        (st.st_mtim.tv_sec > started->tv_sec ||
         (st.st_mtim.tv_sec == started->tv_sec && st.st_mtim.tv_nsec >= started->tv_nsec)))
        return 0;
    ps_log(PS_LOG_ERROR, "launch: no model: '%s' is %s (%s)", path,
           access(path, F_OK) == 0 ? "from an earlier run" : "missing",
           L->wk[0].lost ? "worker 0, which saves it, was lost" : "worker 0 did not write it");
    return 1;
}

/* A server that died: restarted (--restart-servers) or the end of the job. */
static int check_servers(launch_t *L)
{
    char why[64];
    for (int i = 0; i < L->o.servers; i++) {
        if (!L->servers[i].exited)
            continue;
        ps_child_describe(L->servers[i].status, why, sizeof why);
        if (!L->o.restart_servers || L->server_restarts[i] >= L->o.max_server_restarts) {
            ps_log(PS_LOG_ERROR, "launch: server %d (pid %d) died during the job: %s%s", i,
                   (int)L->servers[i].pid, why, L->o.restart_servers ? " (no restarts left)" : "");
            return 1;
        }
        L->server_restarts[i]++;
        ps_log(PS_LOG_WARN,
               "launch: server %d (pid %d) died (%s); restarting it on port %d (%lld of %lld)", i,
               (int)L->servers[i].pid, why, L->ports[i], (long long)L->server_restarts[i],
               (long long)L->o.max_server_restarts);
        if (start_server(L, i, L->ports[i]) != 0)
            return 1;
    }
    return 0;
}

/* Runs until every worker has exited (and its output is read), a worker
 * fails, a server dies, the deadline passes or a signal arrives. */
static int supervise(launch_t *L)
{
    int64_t deadline = ps_time_ms() + L->o.timeout_s * 1000;
    for (;;) {
        struct pollfd fds[MAX_PROCS];
        int idx[MAX_PROCS], n = 0;
        for (int r = 0; r < L->o.workers; r++) {
            if (L->workers[r].out_fd >= 0) {
                fds[n] = (struct pollfd){L->workers[r].out_fd, POLLIN, 0};
                idx[n++] = r;
            }
        }
        poll(fds, (nfds_t)n, 200);
        for (int i = 0; i < n; i++)
            if (fds[i].revents)
                ps_child_read_lines(&L->workers[idx[i]], worker_line, L);
        reap_all(L->workers, (int)L->o.workers);
        reap_all(L->servers, (int)L->o.servers);
        int running, rc = check_workers(L, &running);
        if (rc || !running)
            return rc;
        if ((rc = check_servers(L)) != 0)
            return rc;
        if (stop_signal) {
            ps_log(PS_LOG_ERROR, "launch: stopped by signal %d", (int)stop_signal);
            return 128 + stop_signal;
        }
        if (ps_time_ms() > deadline) {
            ps_log(PS_LOG_ERROR,
                   "launch: job still running after --timeout %lld s (%d workers left)",
                   (long long)L->o.timeout_s, running);
            return 1;
        }
    }
}

/* A count summed from the workers' events as an int64: what a foreign
 * worker printed may not fit (0 below, the largest above). */
static int64_t count_of(double v)
{
    return v >= PS_EVENT_INT64_LIMIT ? INT64_MAX : v > 0 ? (int64_t)v : 0;
}

/* pipeline_stages: each stage's busy time (the busiest replica's, ms),
 * the mean bubble fraction, and the samples once (stage 0's), not once per
 * stage. Nothing for a job whose workers report no stage. */
static void pipeline_summary(const launch_t *L, ps_event_t *sum)
{
    int64_t busy[64] = {0}, samples = 0;
    int n_stages = 0, n = 0;
    double bubble = 0;
    for (int r = 0; r < L->o.workers; r++) {
        const ps_event_t *d = &L->wk[r].done;
        double stage = L->wk[r].has_done ? ps_event_num(d, PS_EF_STAGE, -1) : -1;
        if (stage < 0 || stage >= 64)
            continue;
        int s = (int)stage;
        int64_t ms = count_of(ps_event_num(d, PS_EF_STAGE_BUSY_S, 0) * 1000);
        busy[s] = ms > busy[s] ? ms : busy[s];
        n_stages = s + 1 > n_stages ? s + 1 : n_stages;
        bubble += ps_event_num(d, PS_EF_BUBBLE_FRACTION, 0);
        n++;
        if (s == 0)
            samples = count_of((double)samples + ps_event_num(d, PS_EF_SAMPLES, 0));
    }
    if (!n)
        return;
    ps_event_set_int(sum, PS_EF_SAMPLES, samples);
    ps_event_set_ints(sum, PS_EF_STAGE_BUSY_MS, busy, (size_t)n_stages);
    ps_event_set_num(sum, PS_EF_BUBBLE_FRACTION, bubble / n);
}

/* The job's summary: rank 0's figures (or the lowest surviving rank's if
 * rank 0 was lost), val_* from rank 0 only (it holds the validation
 * split), bytes and samples summed over the workers, the largest worker's
 * peak RSS. */
static void print_summary(launch_t *L, double wall_s)
{
    static const ps_event_field_t from_r0[] = {PS_EF_MODEL, PS_EF_PRECISION, PS_EF_SKIPPED_STEPS,
                                               PS_EF_EPOCHS, PS_EF_STEPS};
    const ps_event_t *r0 = NULL;
    for (int r = (int)L->o.workers - 1; r >= 0; r--)
        if (!L->wk[r].lost && L->wk[r].has_done)
            r0 = &L->wk[r].done;
    ps_event_t sum;
    ps_event_init(&sum, PS_EVENT_DONE);
    for (size_t k = 0; r0 && k < sizeof from_r0 / sizeof from_r0[0]; k++)
        ps_event_copy_field(&sum, r0, from_r0[k]);
    ps_event_set_int(&sum, PS_EF_SERVERS, L->o.servers);
    ps_event_set_int(&sum, PS_EF_WORKERS, L->o.workers);
    for (int k = 0; k < ps_event_n_metrics(); k++) {
        if (r0)
            ps_event_copy_field(&sum, r0, ps_event_metric_field(PS_EVAL_TEST, k));
        if (!L->wk[0].lost && L->wk[0].has_done)
            ps_event_copy_field(&sum, &L->wk[0].done, ps_event_metric_field(PS_EVAL_VAL, k));
    }
    double sent = 0, recv = 0, shm = 0, bell = 0, samples = 0, sps = 0, rss = 0;
    int64_t lost[MAX_PROCS], restarts = 0;
    size_t n_lost = 0;
    for (int r = 0; r < L->o.workers; r++) {
        const ps_event_t *d = &L->wk[r].done;
        sent += ps_event_num(d, PS_EF_BYTES_SENT, 0);
        recv += ps_event_num(d, PS_EF_BYTES_RECEIVED, 0);
        shm += ps_event_num(d, PS_EF_SHM_REQUESTS, 0);
        bell += ps_event_num(d, PS_EF_BELL_REQUESTS, 0);
        samples += ps_event_num(d, PS_EF_SAMPLES, 0);
        sps += ps_event_num(d, PS_EF_SAMPLES_PER_S, 0);
        if (ps_event_num(d, PS_EF_PEAK_RSS_BYTES, 0) > rss)
            rss = ps_event_num(d, PS_EF_PEAK_RSS_BYTES, 0);
        if (L->wk[r].lost)
            lost[n_lost++] = r;
        restarts += L->wk[r].restarts;
    }
    ps_event_set_int(&sum, PS_EF_SAMPLES, count_of(samples));
    ps_event_set_num(&sum, PS_EF_WALL_S, wall_s);
    ps_event_set_num(&sum, PS_EF_SAMPLES_PER_S, sps);
    ps_event_set_int(&sum, PS_EF_BYTES_SENT, count_of(sent));
    ps_event_set_int(&sum, PS_EF_BYTES_RECEIVED, count_of(recv));
    ps_event_set_int(&sum, PS_EF_SHM_REQUESTS, count_of(shm));
    ps_event_set_int(&sum, PS_EF_BELL_REQUESTS, count_of(bell));
    ps_event_set_ints(&sum, PS_EF_LOST_WORKERS, lost, n_lost);
    ps_event_set_int(&sum, PS_EF_WORKER_RESTARTS, restarts);
    ps_event_set_int(&sum, PS_EF_PEAK_RSS_BYTES, count_of(rss));
    pipeline_summary(L, &sum);
    ps_event_print(&sum, stdout);
    ps_event_fini(&sum);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    remove(path); /* best effort: keep going */
    return 0;
}

/* Removes the state directory and everything the servers left in it. */
static void remove_state_dir(const char *dir)
{
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Stops the workers, then the servers; a server that did not exit 0 when
 * stopped is a failure of the job. One that had died already, after every
 * worker finished, is not: the workers only finish with the final model. */
static int stop_everything(launch_t *L, int rc)
{
    ps_child_stop_all(L->workers, (size_t)L->o.workers, 5000);
    for (int r = 0; r < L->o.workers; r++)
        if (L->workers[r].out_fd >= 0)
            close(L->workers[r].out_fd);
    reap_all(L->servers, (int)L->o.servers);
    bool died[MAX_PROCS];
    for (int i = 0; i < L->o.servers; i++)
        died[i] = L->servers[i].exited;
    ps_child_stop_all(L->servers, (size_t)L->o.servers, 5000);
    for (int i = 0; rc == 0 && i < L->o.servers; i++) {
        int st = L->servers[i].status;
        char why[64];
        if (died[i] && (!WIFEXITED(st) || WEXITSTATUS(st) != 0)) {
            ps_log(PS_LOG_WARN, "launch: server %d (pid %d) died after the job finished (%s)", i,
                   (int)L->servers[i].pid, ps_child_describe(st, why, sizeof why));
        } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            ps_log(PS_LOG_ERROR, "launch: server %d (pid %d) did not shut down cleanly: %s", i,
                   (int)L->servers[i].pid, ps_child_describe(st, why, sizeof why));
            rc = 1;
        }
    }
    return rc;
}

/* --servers / --workers 0: a layout for the cores we may run on. Workers
 * do the arithmetic, one per core; a shard on the same-host path costs a
 * fraction of one (bench/README.md: a 2-core host trains fastest as
 * 1 shard x 2 workers), so one shard per 8 cores. Said in one line. */
static void pick_layout(launch_opts_t *o)
{
    if (o->servers && o->workers)
        return;
    cpu_set_t set;
    long cores = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
    if (cores < 1)
        cores = sysconf(_SC_NPROCESSORS_ONLN) > 0 ? sysconf(_SC_NPROCESSORS_ONLN) : 1;
    if (!o->servers)
        o->servers = (cores + 7) / 8;
    if (!o->workers)
        o->workers = cores < MAX_PROCS ? cores : MAX_PROCS;
    ps_log(PS_LOG_INFO,
           "layout: %lld shard(s) x %lld worker(s) for the %ld cores here (auto; "
           "--servers and --workers choose)",
           (long long)o->servers, (long long)o->workers, cores);
}

int main(int argc, char **argv)
{
    static launch_t L;
    ps_log_init("ps-launch", PS_LOG_INFO);
    ps_errbuf_t err;
    ps_args_t how = {.config_is_option = true};
    int rc = ps_config_load_args(&launch_optset, &L.o, argc, argv, &how, NULL, &err);
    if (rc == PS_CONFIG_HELP)
        return 0;
    if (rc != PS_OK) {
        fprintf(stderr, "ps-launch: %s\n", err.msg);
        return EX_USAGE;
    }
    for (int k = 0; k < L.o.sets.n + L.o.server_sets.n; k++) {
        const char *kv = k < L.o.sets.n ? L.o.sets.v[k] : L.o.server_sets.v[k - L.o.sets.n];
        if (!strchr(kv, '=')) {
            fprintf(stderr, "ps-launch: '%s' is not KEY=VALUE (--set, --server-set)\n", kv);
            return EX_USAGE;
        }
    }
    if (*L.o.worker_command && (*L.o.config || L.o.sets.n || *L.o.save_model)) {
        fprintf(stderr, "ps-launch: --worker-command runs its own program: --config, --set and "
                        "--save-model are for ps-worker\n");
        return EX_USAGE;
    }
    if (!*L.o.bin_dir)
        ps_child_bin_dir(L.o.bin_dir, sizeof L.o.bin_dir);
    pick_layout(&L.o);
    ps_proc_on_stop(on_signal);
    const char *tmp = getenv("TMPDIR");
    snprintf(L.state_dir, sizeof L.state_dir, "%s/ps-launch.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(L.state_dir)) {
        fprintf(stderr, "ps-launch: cannot create state directory '%s': %s\n", L.state_dir,
                strerror(errno));
        return EX_CANTCREAT;
    }
    double t0 = ps_time_wall_s();
    struct timespec started;
    clock_gettime(CLOCK_REALTIME, &started);
    rc = EX_UNAVAILABLE;
    if (!L.o.curve || make_keys(&L) == 0) {
        rc = 0;
        for (int i = 0; rc == 0 && i < L.o.servers; i++)
            rc = start_server(&L, i, 0) == 0 ? 0 : EX_UNAVAILABLE;
        if (rc == 0 && wait_servers_ready(&L) != 0)
            rc = EX_UNAVAILABLE;
    }
    if (rc == 0) {
        ps_log(PS_LOG_INFO, "launch: starting %d workers (job '%s')", (int)L.o.workers, L.o.job);
        rc = start_workers(&L) == 0 ? supervise(&L) : EX_OSERR;
    }
    rc = stop_everything(&L, rc);
    if (rc == 0)
        rc = check_model(&L, &started);
    if (rc == 0)
        print_summary(&L, ps_time_wall_s() - t0);
    for (int r = 0; r < L.o.workers; r++)
        ps_event_fini(&L.wk[r].done);
    if (!L.o.keep_state)
        remove_state_dir(L.state_dir);
    else
        ps_log(PS_LOG_INFO, "launch: state kept in '%s'", L.state_dir);
    ps_log(rc == 0 ? PS_LOG_INFO : PS_LOG_ERROR, "launch: job %s (%.1f s)",
           rc == 0 ? "finished" : "failed", ps_time_wall_s() - t0);
    return rc;
}
