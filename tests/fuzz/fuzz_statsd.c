/* fuzz_statsd.c - any bytes sent to the stats thread, over the line
 * protocol (UNIX socket) or HTTP (/metrics port), in chunks, then EOF. The
 * thread must answer only with whole replies (each ending in an empty line,
 * or one HTTP response) and close; the sanitizers watch its buffers.
 * Input: byte 0 picks the protocol (even: line, odd: HTTP) and the chunk
 * size (byte 0 / 2 + 1); the rest is what the client sends. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "fuzz_util.h"
#include "ps_statsd.h"
#include "ps_time.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ps_statsd_t *sd;
static char sock_path[108];

static void start_once(void)
{
    if (sd)
        return;
    snprintf(sock_path, sizeof sock_path, "/tmp/fuzz_statsd.%d.sock", (int)getpid());
    ps_statsd_opts_t o;
    ps_statsd_opts_defaults(&o);
    o.max_queued_bytes = 4096; /* backpressure on the fuzzer's small replies too */
    ps_errbuf_t err;
    static atomic_int save_flag;
    sd = ps_statsd_start_opts(sock_path, -1, 0, &save_flag, &o, &err);
    if (!sd)
        abort();
    ps_statsd_publish(sd, PS_STATS_INFO, strdup("# server\nversion:fuzz\n"), strdup("{}"));
    ps_statsd_publish(sd, PS_STATS_METRICS, strdup("ps_up 1\n"), NULL);
}

static int connect_to(int is_http)
{
    int fd;
    if (is_http) {
        struct sockaddr_in a = {.sin_family = AF_INET};
        a.sin_port = htons((uint16_t)ps_statsd_http_port(sd));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
            abort();
    } else {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        snprintf(a.sun_path, sizeof a.sun_path, "%s", sock_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
            abort();
    }
    return fd;
}

/* Reads everything until the server closes; aborts past the deadline (the
 * server must close a client that sent EOF). Returns the bytes (malloc'd). */
static char *drain(int fd, size_t *len, const uint8_t *to_send, size_t n_send, size_t chunk)
{
    size_t cap = 1 << 16, n = 0, sent = 0;
    char *buf = malloc(cap);
    /* under 10 s, fuzz.sh's per-input limit; 5 s tripped once with other
     * jobs busy on both cores, the input itself taking 2-16 ms */
    int64_t deadline = ps_time_ms() + 8000;
    for (;;) {
        struct pollfd p = {fd, POLLIN | (sent < n_send ? POLLOUT : 0), 0};
        if (ps_time_ms() > deadline) {
            fprintf(stderr, "fuzz_statsd: the server never closed a client that sent EOF\n");
            __builtin_trap();
        }
        /* libFuzzer's SIGALRM (its -timeout watchdog, every few seconds)
         * interrupts poll and recv: that is no finding, wait again */
        int ready = poll(&p, 1, 1000);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready < 0) {
            fprintf(stderr, "fuzz_statsd: poll: %s\n", strerror(errno));
            __builtin_trap();
        }
        if ((p.revents & POLLOUT) && sent < n_send) {
            size_t k = n_send - sent < chunk ? n_send - sent : chunk;
            ssize_t w = send(fd, to_send + sent, k, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            sent = w > 0 ? sent + (size_t)w : n_send; /* closed on us: stop sending */
            if (sent == n_send)
                shutdown(fd, SHUT_WR);
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            if (cap - n < 4096)
                buf = realloc(buf, cap *= 2);
            ssize_t got = recv(fd, buf + n, cap - n - 1, 0);
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0)
                break;
            n += (size_t)got;
        }
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    start_once();
    int is_http = data[0] & 1;
    size_t chunk = (size_t)(data[0] >> 1) + 1;
    int fd = connect_to(is_http);
    if (size == 1)
        shutdown(fd, SHUT_WR);
    size_t n;
    char *out = drain(fd, &n, data + 1, size - 1, chunk);
    close(fd);
    if (is_http) {
        if (n && strncmp(out, "HTTP/1.1 ", 9) != 0)
            __builtin_trap();
    } else if (n && (n < 2 || out[n - 1] != '\n' || out[n - 2] != '\n')) {
        __builtin_trap(); /* a reply cut short */
    }
    free(out);
    return 0;
}
