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
#include "ps_curve.h"
#include "ps_time.h"
#include "ps_wire.h"

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: ps-ctl (-s SOCKET | -t HOST:PORT) [--json] [--timeout MS] COMMAND...\n"
            "Talks to a ps-server's stats socket.\n\n"
            "Commands:\n"
            "  show info | show workers | show tables | show config   (add --json for JSON)\n"
            "  metrics        Prometheus text format\n"
            "  save           checkpoint every job now\n"
            "  help           the server's own command list\n\n"
            "Options:\n"
            "Or: ps-ctl -e tcp://HOST:PORT [--server-key FILE --key FILE] info|save|shutdown\n"
            "  over the request socket (CURVE if keys are given): info = show info json\n"
            "  (monitor, admin), save = checkpoint now, shutdown = checkpoint and exit (admin)\n\n"
            "  -s SOCKET      UNIX stats socket (server option stats_socket)\n"
            "  -t HOST:PORT   TCP stats port (server option stats_port)\n"
            "  --json         ask for the JSON form of a show command\n"
            "  --timeout MS   give up after this long (default 5000)\n"
            "  -e ENDPOINT    a server's request endpoint (tcp://HOST:PORT)\n"
            "  --server-key F the server's public key file (ps-keygen's .pub)\n"
            "  --key F        our key pair (ps-keygen's .secret), on the server's allow-list\n");
}

static int connect_to(const char *unix_path, const char *tcp)
{
    int fd;
    if (unix_path) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        if (strlen(unix_path) >= sizeof a.sun_path)
            return -1;
        strcpy(a.sun_path, unix_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
            close(fd);
            return -1;
        }
        return fd;
    }
    char host[256];
    snprintf(host, sizeof host, "%s", tcp);
    char *colon = strrchr(host, ':');
    if (!colon)
        return -1;
    *colon = '\0';
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
        return -1;
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
        fprintf(stderr, "ps-ctl: with -e the commands are info, save and shutdown, not '%s'\n", cmd);
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
    ps_client_opts_t o = {.job = "", .world = 1, .timeout_ms = timeout_ms,
                          .curve_server_key = server.public_z85,
                          .curve_public_key = own.public_z85, .curve_secret_key = own.secret_z85};
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
    const char *unix_path = NULL, *tcp = NULL, *endpoint = NULL, *server_key = NULL, *key = NULL;
    int json = 0;
    long timeout_ms = 5000;
    char cmd[1024] = "";
    size_t len = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc) {
            unix_path = argv[++i];
        } else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) {
            tcp = argv[++i];
        } else if (strcmp(argv[i], "-e") == 0 && i + 1 < argc) {
            endpoint = argv[++i];
        } else if (strcmp(argv[i], "--server-key") == 0 && i + 1 < argc) {
            server_key = argv[++i];
        } else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc) {
            key = argv[++i];
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            timeout_ms = atol(argv[++i]);
        } else {
            len += (size_t)snprintf(cmd + len, sizeof cmd - len, "%s%s", len ? " " : "", argv[i]);
        }
    }
    if (endpoint && len)
        return remote(endpoint, server_key, key, cmd, timeout_ms);
    if ((!unix_path && !tcp) || !len) {
        usage(stderr);
        return EX_USAGE;
    }
    if (json)
        len += (size_t)snprintf(cmd + len, sizeof cmd - len, " json");
    snprintf(cmd + len, sizeof cmd - len, "\n");
    int fd = connect_to(unix_path, tcp);
    if (fd < 0) {
        fprintf(stderr, "ps-ctl: cannot connect to '%s': %s\n", unix_path ? unix_path : tcp,
                strerror(errno));
        return EX_UNAVAILABLE;
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
