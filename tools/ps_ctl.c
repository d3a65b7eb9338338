/* ps_ctl.c - ps-ctl: client of the stats socket. Sends one command, prints
 * the reply (which ends with an empty line), exits 0 if the server answered
 * without "error:". Every wait has a deadline. */
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

#include "ps_time.h"

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
            "  -s SOCKET      UNIX stats socket (server option stats_socket)\n"
            "  -t HOST:PORT   TCP stats port (server option stats_port)\n"
            "  --json         ask for the JSON form of a show command\n"
            "  --timeout MS   give up after this long (default 5000)\n");
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

int main(int argc, char **argv)
{
    const char *unix_path = NULL, *tcp = NULL;
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
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            timeout_ms = atol(argv[++i]);
        } else {
            len += (size_t)snprintf(cmd + len, sizeof cmd - len, "%s%s", len ? " " : "", argv[i]);
        }
    }
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
