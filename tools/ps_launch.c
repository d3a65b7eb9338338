/* ps_launch.c - ps-launch: run a whole job on this machine. Starts K
 * servers on ephemeral ports (they report them through ready files in a
 * temporary state directory), then N workers pointed at them; streams
 * progress; stops everything; exits with the job's status. Single thread. */
#include <errno.h>
#include <ftw.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include "ps_curve.h"
#include "ps_err.h"
#include "ps_json.h"
#include "ps_log.h"
#include "ps_proc.h"
#include "ps_time.h"

#define MAX_PROCS 256
#define MAX_SETS 128

typedef struct {
    int n_servers, n_workers;
    const char *config, *server_config, *save_model, *job;
    const char *sets[MAX_SETS];
    const char *server_sets[MAX_SETS];
    int n_sets, n_server_sets;
    char bin_dir[PATH_MAX];
    int64_t timeout_s, ready_timeout_s;
    int keep_state;
    int restart_servers;
    int curve;
} launch_opts_t;

typedef struct {
    pid_t pid;
    int out_fd;          /* worker stdout pipe, -1 if none */
    char buf[65536];
    size_t buf_len;
    char done_line[4096];
    int exited, status;
    int lost;            /* killed by a signal: the job went on without it */
    char name[32];
} proc_t;

typedef struct {
    launch_opts_t o;
    char state_dir[PATH_MAX];
    proc_t servers[MAX_PROCS], workers[MAX_PROCS];
    int ports[MAX_PROCS];   /* each server's port, once ready */
    char endpoints[8192];
} launch_t;

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: ps-launch [--servers K] [--workers N] --config FILE [options]\n"
            "Runs one training job on this machine: K ps-server shards and N ps-worker\n"
            "processes on ports chosen at run time, with a temporary state directory.\n"
            "Streams progress on stderr, rank 0's epoch events and one job summary\n"
            "({\"event\":\"done\",...}, bytes summed over workers) on stdout, stops\n"
            "everything, and exits 0 only if every worker succeeded.\n\n"
            "Options:\n"
            "  --servers K            server shards (default 2)\n"
            "  --workers N            workers (default 2)\n"
            "  --config FILE          the job's worker config (see ps-worker --help)\n"
            "  --set KEY=VALUE        override a worker option (repeatable)\n"
            "  --server-config FILE   config file for every server\n"
            "  --server-set KEY=VALUE override a server option (repeatable)\n"
            "  --save-model DIR       rank 0 writes the trained tables (.npy) and model.json\n"
            "  --job NAME             job name (default: launch)\n"
            "  --timeout S            fail the job if it runs longer (default 7200)\n"
            "  --ready-timeout S      how long servers may take to start (default 30)\n"
            "  --bin-dir DIR          where ps-server and ps-worker are (default: beside ps-launch)\n"
            "  --keep-state           keep the temporary state directory\n"
            "  --curve                CURVE on every socket: a key pair for the servers and one\n"
            "                         per worker, and an allow-list, in the state directory\n"
            "  --restart-servers      restart a server that dies, same command and port; it\n"
            "                         resumes from its checkpoints (see checkpoint_every)\n"
            "  --help                 show this help\n");
}

static int parse_args(launch_opts_t *o, int argc, char **argv)
{
    *o = (launch_opts_t){.n_servers = 2, .n_workers = 2, .job = "launch", .timeout_s = 7200,
                         .ready_timeout_s = 30};
    ssize_t n = readlink("/proc/self/exe", o->bin_dir, sizeof o->bin_dir - 1);
    if (n > 0) {
        o->bin_dir[n] = '\0';
        char *slash = strrchr(o->bin_dir, '/');
        if (slash)
            *slash = '\0';
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--keep-state") == 0) {
            o->keep_state = 1;
            continue;
        }
        if (strcmp(a, "--restart-servers") == 0) {
            o->restart_servers = 1;
            continue;
        }
        if (strcmp(a, "--curve") == 0) {
            o->curve = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "ps-launch: '%s' needs a value (see --help)\n", a);
            return -1;
        }
        i++;
        if (strcmp(a, "--servers") == 0)
            o->n_servers = atoi(v);
        else if (strcmp(a, "--workers") == 0)
            o->n_workers = atoi(v);
        else if (strcmp(a, "--config") == 0)
            o->config = v;
        else if (strcmp(a, "--server-config") == 0)
            o->server_config = v;
        else if (strcmp(a, "--save-model") == 0)
            o->save_model = v;
        else if (strcmp(a, "--job") == 0)
            o->job = v;
        else if (strcmp(a, "--timeout") == 0)
            o->timeout_s = atoll(v);
        else if (strcmp(a, "--ready-timeout") == 0)
            o->ready_timeout_s = atoll(v);
        else if (strcmp(a, "--bin-dir") == 0)
            snprintf(o->bin_dir, sizeof o->bin_dir, "%s", v);
        else if (strcmp(a, "--set") == 0 && o->n_sets < MAX_SETS && strchr(v, '='))
            o->sets[o->n_sets++] = v;
        else if (strcmp(a, "--server-set") == 0 && o->n_server_sets < MAX_SETS && strchr(v, '='))
            o->server_sets[o->n_server_sets++] = v;
        else {
            fprintf(stderr, "ps-launch: unknown or malformed option '%s %s' (see --help)\n", a, v);
            return -1;
        }
    }
    if (o->n_servers < 1 || o->n_servers > MAX_PROCS || o->n_workers < 1 ||
        o->n_workers > MAX_PROCS) {
        fprintf(stderr, "ps-launch: --servers and --workers must be 1..%d\n", MAX_PROCS);
        return -1;
    }
    if (o->timeout_s < 1 || o->ready_timeout_s < 1) {
        fprintf(stderr, "ps-launch: timeouts must be >= 1 s\n");
        return -1;
    }
    return 0;
}

/* argv builder: a fixed array of strings we own. */
typedef struct {
    char *v[4 * MAX_SETS + 32];
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

static void args_free(args_t *a)
{
    for (int i = 0; i < a->n; i++)
        free(a->v[i]);
    a->n = 0;
}

/* Starts argv with stdout to a pipe (if out_fd) and stdin from /dev/null. */
static pid_t spawn(args_t *a, int *out_fd)
{
    int fds[2] = {-1, -1};
    if (out_fd && pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        if (out_fd)
            dup2(fds[1], 1);
        signal(SIGINT, SIG_IGN); /* a terminal's Ctrl-C goes to ps-launch, which stops us */
        execv(a->v[0], a->v);
        fprintf(stderr, "ps-launch: cannot run '%s': %s\n", a->v[0], strerror(errno));
        _exit(EX_UNAVAILABLE);
    }
    if (out_fd) {
        close(fds[1]);
        *out_fd = pid > 0 ? fds[0] : -1;
        if (pid < 0)
            close(fds[0]);
    }
    return pid;
}

/* argv of a child: BIN_DIR/program [--config FILE] [--KEY VALUE for each set]. */
static void args_program(args_t *a, const launch_t *L, const char *program, const char *config,
                         const char *const *sets, int n_sets)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", L->o.bin_dir, program);
    arg(a, path);
    if (config) {
        arg(a, "--config");
        arg(a, config);
    }
    for (int k = 0; k < n_sets; k++)
        arg_set(a, sets[k]);
}

/* Starts server i (port 0 = any; a restart reuses its port). Each server
 * keeps its checkpoints in STATE/server-i. */
static int start_server(launch_t *L, int i, int port)
{
    args_t a = {0};
    char path[PATH_MAX + 64];
    args_program(&a, L, "ps-server", L->o.server_config, L->o.server_sets, L->o.n_server_sets);
    arg_num(&a, "--shard", i);
    arg_num(&a, "--shards", L->o.n_servers);
    arg_num(&a, "--port", port);
    snprintf(path, sizeof path, "%s/server-%d", L->state_dir, i);
    arg(&a, "--state-dir");
    arg(&a, path);
    snprintf(path, sizeof path, "%s/server-%d.sock", L->state_dir, i);
    arg(&a, "--stats-socket");
    arg(&a, path);
    snprintf(path, sizeof path, "%s/server-%d.ready", L->state_dir, i);
    arg(&a, "--ready-file");
    arg(&a, path);
    if (L->o.curve) {
        snprintf(path, sizeof path, "%s/keys/server.secret", L->state_dir);
        arg(&a, "--curve-secret-file");
        arg(&a, path);
        snprintf(path, sizeof path, "%s/keys/allow", L->state_dir);
        arg(&a, "--allow-file");
        arg(&a, path);
    }
    proc_t *p = &L->servers[i];
    *p = (proc_t){.out_fd = -1};
    snprintf(p->name, sizeof p->name, "server %d", i);
    p->pid = spawn(&a, NULL);
    args_free(&a);
    if (p->pid < 0) {
        ps_log(PS_LOG_ERROR, "launch: cannot start %s: %s", p->name, strerror(errno));
        return -1;
    }
    return 0;
}

static int start_servers(launch_t *L)
{
    for (int i = 0; i < L->o.n_servers; i++)
        if (start_server(L, i, 0) != 0)
            return -1;
    return 0;
}

/* Reaps any exited child among procs without blocking. */
static void reap(proc_t *procs, int n)
{
    for (int i = 0; i < n; i++) {
        if (procs[i].pid <= 0 || procs[i].exited)
            continue;
        int status;
        if (waitpid(procs[i].pid, &status, WNOHANG) == procs[i].pid) {
            procs[i].exited = 1;
            procs[i].status = status;
        }
    }
}

static const char *describe_status(int status, char *buf, size_t cap)
{
    if (WIFEXITED(status))
        snprintf(buf, cap, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, cap, "signal %d", WTERMSIG(status));
    else
        snprintf(buf, cap, "status %d", status);
    return buf;
}

/* Waits for every server's ready file (against a deadline, and failing
 * at once if a server exits) and collects the endpoints in shard order. */
static int wait_servers_ready(launch_t *L)
{
    int64_t deadline = ps_time_ms() + L->o.ready_timeout_s * 1000;
    size_t len = 0;
    for (int i = 0; i < L->o.n_servers; i++) {
        char path[PATH_MAX + 64], line[512], ep[512] = "";
        snprintf(path, sizeof path, "%s/server-%d.ready", L->state_dir, i);
        for (;;) {
            FILE *f = fopen(path, "r");
            if (f) {
                while (fgets(line, sizeof line, f))
                    sscanf(line, "endpoint %511s", ep);
                fclose(f);
                break;
            }
            reap(L->servers, L->o.n_servers);
            if (L->servers[i].exited) {
                char why[64];
                ps_log(PS_LOG_ERROR, "launch: server %d exited before it was ready (%s)", i,
                       describe_status(L->servers[i].status, why, sizeof why));
                return -1;
            }
            if (ps_time_ms() > deadline || stop_signal) {
                ps_log(PS_LOG_ERROR, "launch: server %d (pid %d) not ready after %lld s", i,
                       (int)L->servers[i].pid, (long long)L->o.ready_timeout_s);
                return -1;
            }
            poll(NULL, 0, 20);
        }
        len += (size_t)snprintf(L->endpoints + len, sizeof L->endpoints - len, "%s%s",
                                i ? "," : "", ep);
        const char *colon = strrchr(ep, ':');
        L->ports[i] = colon ? atoi(colon + 1) : 0;
    }
    ps_log(PS_LOG_INFO, "launch: %d servers ready: %s; stats sockets %s/server-N.sock (ps-ctl -s)",
           L->o.n_servers, L->endpoints, L->state_dir);
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
    for (int r = 0; r < L->o.n_workers; r++) {
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

static int start_workers(launch_t *L)
{
    for (int r = 0; r < L->o.n_workers; r++) {
        args_t a = {0};
        args_program(&a, L, "ps-worker", L->o.config, L->o.sets, L->o.n_sets);
        arg(&a, "--servers");
        arg(&a, L->endpoints);
        arg(&a, "--job");
        arg(&a, L->o.job);
        arg_num(&a, "--rank", r);
        arg_num(&a, "--world", L->o.n_workers);
        if (L->o.save_model && r == 0) {
            arg(&a, "--save-model");
            arg(&a, L->o.save_model);
        }
        if (L->o.curve) {
            char path[PATH_MAX + 64];
            snprintf(path, sizeof path, "%s/keys/server.pub", L->state_dir);
            arg(&a, "--curve-server-key-file");
            arg(&a, path);
            snprintf(path, sizeof path, "%s/keys/worker-%d.secret", L->state_dir, r);
            arg(&a, "--curve-secret-file");
            arg(&a, path);
        }
        proc_t *p = &L->workers[r];
        snprintf(p->name, sizeof p->name, "worker %d", r);
        p->pid = spawn(&a, &p->out_fd);
        args_free(&a);
        if (p->pid < 0) {
            ps_log(PS_LOG_ERROR, "launch: cannot start %s: %s", p->name, strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* Handles one complete stdout line of worker r. */
static void worker_line(proc_t *p, int rank, const char *line)
{
    if (strstr(line, "\"event\":\"done\"")) {
        snprintf(p->done_line, sizeof p->done_line, "%s", line);
    } else if (rank == 0) {
        fputs(line, stdout);
        fputc('\n', stdout);
        fflush(stdout);
    }
}

static void drain_worker(proc_t *p, int rank)
{
    for (;;) {
        if (p->buf_len == sizeof p->buf - 1)
            p->buf_len = 0; /* an absurd line; drop it rather than stall */
        ssize_t n = read(p->out_fd, p->buf + p->buf_len, sizeof p->buf - 1 - p->buf_len);
        if (n <= 0) {
            if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                close(p->out_fd);
                p->out_fd = -1;
            }
            return;
        }
        p->buf_len += (size_t)n;
        p->buf[p->buf_len] = '\0';
        char *start = p->buf, *nl;
        while ((nl = strchr(start, '\n'))) {
            *nl = '\0';
            worker_line(p, rank, start);
            start = nl + 1;
        }
        p->buf_len = (size_t)(p->buf + p->buf_len - start);
        memmove(p->buf, start, p->buf_len);
        if ((size_t)n < sizeof p->buf / 2)
            return;
    }
}

/* Runs until every worker has exited (and its output is read), a worker
 * fails, a server dies, the deadline passes or a signal arrives. */
static int supervise(launch_t *L)
{
    int64_t deadline = ps_time_ms() + L->o.timeout_s * 1000;
    for (;;) {
        struct pollfd fds[MAX_PROCS];
        int idx[MAX_PROCS], n = 0;
        for (int r = 0; r < L->o.n_workers; r++) {
            if (L->workers[r].out_fd >= 0) {
                fds[n] = (struct pollfd){L->workers[r].out_fd, POLLIN, 0};
                idx[n++] = r;
            }
        }
        poll(fds, (nfds_t)n, 200);
        for (int i = 0; i < n; i++)
            if (fds[i].revents)
                drain_worker(&L->workers[idx[i]], idx[i]);
        reap(L->workers, L->o.n_workers);
        reap(L->servers, L->o.n_servers);
        int running = 0;
        char why[64];
        for (int r = 0; r < L->o.n_workers; r++) {
            proc_t *p = &L->workers[r];
            if (!p->exited || p->out_fd >= 0) {
                running++;
                continue;
            }
            if (WIFSIGNALED(p->status) && !p->lost) {
                /* a killed worker is a lost machine: the servers declare it
                 * dead after their heartbeat timeout and the others go on */
                p->lost = 1;
                ps_log(PS_LOG_WARN, "launch: worker %d (pid %d) lost: %s; the job goes on without it",
                       r, (int)p->pid, describe_status(p->status, why, sizeof why));
            } else if (!p->lost && WEXITSTATUS(p->status) != 0) {
                ps_log(PS_LOG_ERROR, "launch: worker %d (pid %d) failed: %s; stopping the job", r,
                       (int)p->pid, describe_status(p->status, why, sizeof why));
                return WEXITSTATUS(p->status);
            }
        }
        if (!running) {
            for (int r = 0; r < L->o.n_workers; r++)
                if (!L->workers[r].lost)
                    return 0;
            ps_log(PS_LOG_ERROR, "launch: every worker was lost");
            return 1;
        }
        for (int i = 0; i < L->o.n_servers; i++) {
            if (!L->servers[i].exited)
                continue;
            describe_status(L->servers[i].status, why, sizeof why);
            if (!L->o.restart_servers) {
                ps_log(PS_LOG_ERROR, "launch: server %d (pid %d) died during the job: %s", i,
                       (int)L->servers[i].pid, why);
                return 1;
            }
            ps_log(PS_LOG_WARN, "launch: server %d (pid %d) died (%s); restarting it on port %d", i,
                   (int)L->servers[i].pid, why, L->ports[i]);
            if (start_server(L, i, L->ports[i]) != 0)
                return 1;
        }
        if (stop_signal) {
            ps_log(PS_LOG_ERROR, "launch: stopped by signal %d", (int)stop_signal);
            return 128 + stop_signal;
        }
        if (ps_time_ms() > deadline) {
            ps_log(PS_LOG_ERROR, "launch: job still running after --timeout %lld s (%d workers left)",
                   (long long)L->o.timeout_s, running);
            return 1;
        }
    }
}

/* SIGTERM, then SIGKILL after grace_ms, for every child still running. */
static void stop_all(proc_t *procs, int n, int64_t grace_ms)
{
    for (int i = 0; i < n; i++)
        if (procs[i].pid > 0 && !procs[i].exited)
            kill(procs[i].pid, SIGTERM);
    int64_t deadline = ps_time_ms() + grace_ms;
    for (;;) {
        reap(procs, n);
        int left = 0;
        for (int i = 0; i < n; i++)
            left += procs[i].pid > 0 && !procs[i].exited;
        if (!left)
            return;
        if (ps_time_ms() > deadline) {
            for (int i = 0; i < n; i++) {
                if (procs[i].pid > 0 && !procs[i].exited) {
                    ps_log(PS_LOG_WARN, "launch: %s (pid %d) ignored SIGTERM; killing it",
                           procs[i].name, (int)procs[i].pid);
                    kill(procs[i].pid, SIGKILL);
                    waitpid(procs[i].pid, &procs[i].status, 0);
                    procs[i].exited = 1;
                }
            }
            return;
        }
        poll(NULL, 0, 20);
    }
}

static double field(const char *line, const char *key)
{
    double v = 0;
    ps_json_get_number(line, key, &v);
    return v;
}

static void print_summary(launch_t *L, double wall_s)
{
    /* rank 0's figures, or the lowest surviving rank's if rank 0 was lost */
    const char *r0 = "";
    char lost[512] = "";
    size_t lost_len = 0;
    for (int r = L->o.n_workers - 1; r >= 0; r--)
        if (!L->workers[r].lost)
            r0 = L->workers[r].done_line;
    for (int r = 0; r < L->o.n_workers; r++)
        if (L->workers[r].lost && lost_len < sizeof lost - 16)
            lost_len += (size_t)snprintf(lost + lost_len, sizeof lost - lost_len, "%s%d",
                                         lost_len ? "," : "", r);
    double sent = 0, recv = 0, samples = 0, sps = 0;
    for (int r = 0; r < L->o.n_workers; r++) {
        const char *l = L->workers[r].done_line;
        sent += field(l, "bytes_sent");
        recv += field(l, "bytes_received");
        samples += field(l, "samples");
        sps += field(l, "samples_per_s");
    }
    char model[64] = "?", precision[16] = "fp32", metrics[512] = "";
    ps_json_get_string(r0, "model", model, sizeof model);
    ps_json_get_string(r0, "precision", precision, sizeof precision);
    /* val_* come from rank 0 only, which holds the validation split's metrics */
    const char *val_line = L->workers[0].lost ? "" : L->workers[0].done_line;
    static const char *keys[] = {"test_loss", "test_accuracy", "test_mae", "test_auc",
                                 "test_logloss", "val_loss", "val_accuracy", "val_mae",
                                 "val_auc", "val_logloss"};
    size_t len = 0;
    for (int k = 0; k < 10; k++) {
        const char *src = k < 5 ? r0 : val_line;
        double v;
        if (ps_json_get_number(src, keys[k], &v) == 0)
            len += (size_t)snprintf(metrics + len, sizeof metrics - len, ",\"%s\":%.6f", keys[k], v);
    }
    printf("{\"event\":\"done\",\"model\":\"%s\",\"precision\":\"%s\",\"skipped_steps\":%.0f,"
           "\"servers\":%d,\"workers\":%d,\"epochs\":%.0f,"
           "\"steps\":%.0f,\"samples\":%.0f%s,\"wall_s\":%.3f,\"samples_per_s\":%.1f,"
           "\"bytes_sent\":%.0f,\"bytes_received\":%.0f,\"lost_workers\":[%s]}\n",
           model, precision, field(r0, "skipped_steps"), L->o.n_servers, L->o.n_workers, field(r0, "epochs"), field(r0, "steps"), samples,
           metrics, wall_s, sps, sent, recv, lost);
    fflush(stdout);
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

int main(int argc, char **argv)
{
    static launch_t L;
    ps_log_init("ps-launch", PS_LOG_INFO);
    if (parse_args(&L.o, argc, argv) != 0)
        return EX_USAGE;
    ps_proc_on_stop(on_signal);
    const char *tmp = getenv("TMPDIR");
    snprintf(L.state_dir, sizeof L.state_dir, "%s/ps-launch.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(L.state_dir)) {
        fprintf(stderr, "ps-launch: cannot create state directory '%s': %s\n", L.state_dir,
                strerror(errno));
        return EX_CANTCREAT;
    }
    double t0 = ps_time_wall_s();
    int rc = (!L.o.curve || make_keys(&L) == 0) && start_servers(&L) == 0 &&
                     wait_servers_ready(&L) == 0
                 ? 0
                 : EX_UNAVAILABLE;
    if (rc == 0) {
        ps_log(PS_LOG_INFO, "launch: starting %d workers (job '%s')", L.o.n_workers, L.o.job);
        rc = start_workers(&L) == 0 ? supervise(&L) : EX_OSERR;
    }
    stop_all(L.workers, L.o.n_workers, 5000);
    for (int r = 0; r < L.o.n_workers; r++)
        if (L.workers[r].out_fd >= 0)
            close(L.workers[r].out_fd);
    stop_all(L.servers, L.o.n_servers, 5000);
    for (int i = 0; rc == 0 && i < L.o.n_servers; i++) {
        int st = L.servers[i].status;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            char why[64];
            ps_log(PS_LOG_ERROR, "launch: server %d (pid %d) did not shut down cleanly: %s", i,
                   (int)L.servers[i].pid, describe_status(st, why, sizeof why));
            rc = 1;
        }
    }
    if (rc == 0)
        print_summary(&L, ps_time_wall_s() - t0);
    if (!L.o.keep_state)
        remove_state_dir(L.state_dir);
    else
        ps_log(PS_LOG_INFO, "launch: state kept in '%s'", L.state_dir);
    ps_log(rc == 0 ? PS_LOG_INFO : PS_LOG_ERROR, "launch: job %s (%.1f s)",
           rc == 0 ? "finished" : "failed", ps_time_wall_s() - t0);
    return rc;
}
