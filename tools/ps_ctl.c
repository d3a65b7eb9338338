/* ps_ctl.c - ps-ctl: client of the stats socket. Sends one command, prints
 * the reply (which ends with an empty line), exits 0 if the server answered
 * without "error:". Every wait has a deadline.
 *
 * With -e ENDPOINT it talks to the server's request socket instead (over
 * CURVE with --server-key and --key), for the remote operations a role
 * grants: info (monitor), save and shutdown (admin). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sysexits.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "ps_client.h"
#include "ps_config.h"
#include "ps_curve.h"
#include "ps_time.h"
#include "ps_wire.h"

typedef struct {
    char socket[PS_OPT_STR_MAX], tcp[PS_OPT_STR_MAX], endpoint[PS_OPT_STR_MAX];
    char server_key[PS_OPT_STR_MAX], key[PS_OPT_STR_MAX];
    bool json;
    int64_t timeout_ms;
} ctl_opts_t;

#define O ctl_opts_t
static const ps_opt_t ctl_opts[] = {
    PS_OPT_STR_ALIAS("socket", "-s", O, socket, "",
                     "UNIX stats socket (server option stats_socket)"),
    PS_OPT_STR_ALIAS("tcp", "-t", O, tcp, "",
                     "HOST:PORT of a TCP stats port (server option stats_port)"),
    PS_OPT_BOOL("json", O, json, "no", "ask for the JSON form of a show command"),
    PS_OPT_INT("timeout", O, timeout_ms, "5000", 1, 86400000, "give up after this long (ms)"),
    PS_OPT_STR_ALIAS("endpoint", "-e", O, endpoint, "",
                     "a server's request endpoint (tcp://HOST:PORT): info, save, shutdown"),
    PS_OPT_STR("server_key", O, server_key, "", "the server's public key file (ps-keygen's .pub)"),
    PS_OPT_STR("key", O, key, "", "our key pair (ps-keygen's .secret), on the server's allow-list"),
};
#undef O

static const ps_optset_t ctl_optset = {
    "ps-ctl",
    "Usage: ps-ctl (-s SOCKET | -t HOST:PORT) [--json] [--timeout MS] COMMAND...\n"
    "Talks to a ps-server's (or ps-worker's) stats socket. Commands:\n"
    "  show info | show workers | show tables | show config | show checkpoints\n"
    "                                                         (--json for JSON)\n"
    "  metrics        Prometheus text format\n"
    "  save           checkpoint every job now\n"
    "  drop JOB       end job JOB on this shard: tables, checkpoints and the\n"
    "                 memory that it finished are removed (UNIX socket only)\n"
    "  help           the server's own command list\n"
    "Or: ps-ctl -e tcp://HOST:PORT [--server-key FILE --key FILE] info|save|shutdown\n"
    "  over the request socket (CURVE if keys are given): info = show info json\n"
    "  (monitor, admin), save = checkpoint now, shutdown = checkpoint and exit (admin)",
    ctl_opts,
    sizeof ctl_opts / sizeof ctl_opts[0],
};

/* A connected stream socket, or -1 with *why saying what went wrong. */
static int connect_to(const char *unix_path, const char *tcp, const char **why)
{
    int fd;
    *why = NULL;
    if (unix_path) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        if (strlen(unix_path) >= sizeof a.sun_path) {
            *why = "path too long for a UNIX socket";
            return -1;
        }
        strcpy(a.sun_path, unix_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
            close(fd);
            return -1;
        }
        return fd;
    }
    char host[PS_OPT_STR_MAX];
    snprintf(host, sizeof host, "%s", tcp);
    char *colon = strrchr(host, ':'), *end;
    long port = colon ? strtol(colon + 1, &end, 10) : 0;
    if (!colon || *end || port < 1 || port > 65535) {
        *why = "expected HOST:PORT with a port 1 to 65535";
        return -1;
    }
    *colon = '\0';
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        *why = "HOST must be an IPv4 address (the stats port binds 127.0.0.1)";
        return -1;
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One operator request over the server's request socket, through the
 * client library; prints the reply's document (info) or "ok". */
static int remote(const char *endpoint, const char *server_key_file, const char *key_file,
                  const char *cmd, long timeout_ms)
{
    int op = strcmp(cmd, "info") == 0       ? PS__OP__STATS
             : strcmp(cmd, "save") == 0     ? PS__OP__SAVE
             : strcmp(cmd, "shutdown") == 0 ? PS__OP__SHUTDOWN
                                            : 0;
    if (!op) {
        fprintf(stderr, "ps-ctl: with -e the commands are info, save and shutdown, not '%s'\n",
                cmd);
        return EX_USAGE;
    }
    ps_curve_keys_t server = {0}, own = {0};
    ps_errbuf_t err;
    if (!server_key_file != !key_file) {
        fprintf(stderr, "ps-ctl: CURVE needs both --server-key and --key\n");
        return EX_USAGE;
    }
    if (server_key_file && (ps_curve_load(server_key_file, false, &server, &err) != PS_OK ||
                            ps_curve_load(key_file, true, &own, &err) != PS_OK)) {
        fprintf(stderr, "ps-ctl: %s\n", err.msg);
        return EX_CONFIG;
    }
    ps_client_opts_t o = {.job = "",
                          .world = 1,
                          .timeout_ms = timeout_ms,
                          .curve_server_key = server.public_z85,
                          .curve_public_key = own.public_z85,
                          .curve_secret_key = own.secret_z85};
    ps_client_t *c = ps_client_new(endpoint, &o, &err);
    memset(own.secret_z85, 0, sizeof own.secret_z85);
    if (!c) {
        fprintf(stderr, "ps-ctl: %s\n", err.msg);
        return EX_USAGE;
    }
    char *message = NULL;
    int rc = ps_client_admin(c, 0, op, &message, &err);
    ps_client_destroy(&c);
    if (rc != PS_OK) {
        fprintf(stderr, "ps-ctl: %s%s\n", err.msg,
                rc == PS_ETIME && server_key_file ? " (is our key on its allow-list?)" : "");
        free(message);
        return rc == PS_ETIME || rc == PS_ENET ? EX_UNAVAILABLE : 1;
    }
    printf("%s\n", op == PS__OP__STATS && message ? message : "ok");
    free(message);
    return 0;
}

int main(int argc, char **argv)
{
    ctl_opts_t o;
    ps_errbuf_t err;
    int first;
    int rc = ps_config_load_args(&ctl_optset, &o, argc, argv, &(ps_args_t){.positional = true},
                                 &first, &err);
    if (rc == PS_CONFIG_HELP)
        return 0;
    if (rc != PS_OK) {
        fprintf(stderr, "ps-ctl: %s\n", err.msg);
        return EX_USAGE;
    }
    char cmd[1024] = "";
    size_t len = 0;
    for (int i = first; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) /* also after the command, as always */
            o.json = true;
        else
            len += (size_t)snprintf(cmd + len, sizeof cmd - len, "%s%s", len ? " " : "", argv[i]);
    }
    const char *unix_path = *o.socket ? o.socket : NULL, *tcp = *o.tcp ? o.tcp : NULL;
    long timeout_ms = (long)o.timeout_ms;
    if (*o.endpoint && len)
        return remote(o.endpoint, *o.server_key ? o.server_key : NULL, *o.key ? o.key : NULL, cmd,
                      timeout_ms);
    if ((!unix_path && !tcp) || !len) {
        ps_config_help(&ctl_optset, stderr);
        return EX_USAGE;
    }
    if (o.json)
        len += (size_t)snprintf(cmd + len, sizeof cmd - len, " json");
    snprintf(cmd + len, sizeof cmd - len, "\n");
    const char *why;
    int fd = connect_to(unix_path, tcp, &why);
    if (fd < 0) {
        fprintf(stderr, "ps-ctl: cannot connect to '%s': %s\n", unix_path ? unix_path : tcp,
                why ? why : strerror(errno));
        return why ? EX_USAGE : EX_UNAVAILABLE;
    }
    if (write(fd, cmd, strlen(cmd)) < 0) {
        fprintf(stderr, "ps-ctl: cannot send: %s\n", strerror(errno));
        return EX_IOERR;
    }
    char *reply = NULL;
    size_t n = 0, cap = 0;
    int64_t deadline = ps_time_ms() + timeout_ms;
    for (;;) {
        if (n >= 2 && reply[n - 1] == '\n' && reply[n - 2] == '\n')
            break;
        struct pollfd p = {fd, POLLIN, 0};
        int64_t left = deadline - ps_time_ms();
        if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
            fprintf(stderr, "ps-ctl: no complete reply from '%s' to '%.*s' after %ld ms\n",
                    unix_path ? unix_path : tcp, (int)strlen(cmd) - 1, cmd, timeout_ms);
            return EX_UNAVAILABLE;
        }
        if (cap - n < 65536) {
            cap = cap * 2 + 65536;
            reply = realloc(reply, cap);
            if (!reply)
                return EX_OSERR;
        }
        ssize_t got = read(fd, reply + n, cap - n - 1);
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    close(fd);
    if (n >= 1 && reply[n - 1] == '\n')
        n--; /* drop the terminating empty line */
    fwrite(reply, 1, n, stdout);
    int failed = n >= 6 && strncmp(reply, "error:", 6) == 0;
    free(reply);
    return failed ? 1 : 0;
}
