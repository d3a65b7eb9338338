/* test_statsd.c - the stats thread against hostile clients: long and partial
 * requests, hundreds of slow clients, a client that floods commands and
 * never reads. Memory stays bounded, others are answered, stop is prompt.
 * Sockets on 127.0.0.1 and in a temp dir; every wait has a deadline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ps_statsd.h"
#include "ps_time.h"

typedef struct {
    ps_statsd_t *sd;
    atomic_int save_flag;
    char dir[64];
    char sock[128];
} fixture_t;

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

static int connect_unix(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%.100s", path);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static int connect_tcp(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Sends what a client over the cap may not get to send: the server
 * refuses and closes it at once, so the send may fail (EPIPE, reset). */
static void send_best_effort(int fd, const char *s, size_t len)
{
    (void)!send(fd, s, len, MSG_NOSIGNAL);
}

static void send_all(int fd, const char *s, size_t len)
{
    while (len) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
        assert_true(n > 0);
        s += n;
        len -= (size_t)n;
    }
}

/* Reads until the peer closes, `end` appears, or timeout_ms passes. Returns
 * what arrived (malloc'd); *closed tells whether the peer closed. */
static char *read_reply(int fd, const char *end, int timeout_ms, int *closed)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    int64_t deadline = ps_time_ms() + timeout_ms;
    *closed = 0;
    for (;;) {
        buf[n] = '\0';
        if (end && strstr(buf, end))
            break;
        int64_t left = deadline - ps_time_ms();
        struct pollfd p = {fd, POLLIN, 0};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        if (cap - n < 4096)
            buf = realloc(buf, cap *= 2);
        ssize_t got = recv(fd, buf + n, cap - n - 1, 0);
        if (got <= 0) {
            *closed = 1;
            break;
        }
        n += (size_t)got;
    }
    return buf;
}

static char *ask(fixture_t *f, const char *cmd)
{
    int fd = connect_unix(f->sock);
    send_all(fd, cmd, strlen(cmd));
    int closed;
    char *r = read_reply(fd, "\n\n", 5000, &closed);
    close(fd);
    return r;
}

/* Waits until the peer closes fd (EOF or reset); 1 if it did in time. */
static int closed_within(int fd, int timeout_ms)
{
    int64_t deadline = ps_time_ms() + timeout_ms;
    char buf[4096];
    for (;;) {
        int64_t left = deadline - ps_time_ms();
        struct pollfd p = {fd, POLLIN, 0};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            return 0;
        if (recv(fd, buf, sizeof buf, 0) <= 0)
            return 1;
    }
}

static int setup_opts(void **state, const ps_statsd_opts_t *opts)
{
    fixture_t *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/ps_test_statsd_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->sock, sizeof f->sock, "%s/stats.sock", f->dir);
    atomic_init(&f->save_flag, 0);
    ps_errbuf_t err;
    f->sd = ps_statsd_start_opts(f->sock, 0, 0, &f->save_flag, opts, &err);
    if (!f->sd)
        fail_msg("%s", err.msg);
    ps_statsd_publish(f->sd, PS_STATS_INFO, strdup("# server\nversion:test\n"),
                      strdup("{\"version\":\"test\"}"));
    ps_statsd_publish(f->sd, PS_STATS_METRICS, strdup("ps_up 1\n"), NULL);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_opts(state, NULL);
}

/* Short limits, so the timeouts show within the test's time. */
static int setup_tight(void **state)
{
    ps_statsd_opts_t o;
    ps_statsd_opts_defaults(&o);
    o.idle_timeout_ms = 300;
    o.http_timeout_ms = 300;
    o.max_queued_bytes = 64 << 10;
    return setup_opts(state, &o);
}

static int setup_slow(void **state)
{
    ps_statsd_opts_t o;
    ps_statsd_opts_defaults(&o);
    o.idle_timeout_ms = 1500;
    o.http_timeout_ms = 1500;
    return setup_opts(state, &o);
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    ps_statsd_stop(&f->sd);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void test_commands_come_from_the_table(void **state)
{
    fixture_t *f = *state;
    char *r = ask(f, "help\n");
    assert_non_null(strstr(r, "  show workers [json]"));
    assert_non_null(strstr(r, "  save "));
    free(r);
    r = ask(f, "show info\n");
    assert_string_equal(r, "# server\nversion:test\n\n");
    free(r);
    r = ask(f, "show info json\r\n");
    assert_string_equal(r, "{\"version\":\"test\"}\n\n");
    free(r);
    r = ask(f, "metrics json\n"); /* ps-ctl --json metrics */
    assert_string_equal(r, "ps_up 1\n\n");
    free(r);
    r = ask(f, "save\n");
    assert_string_equal(r, "ok: checkpoint requested\n\n");
    assert_int_equal(atomic_load(&f->save_flag), 1);
    free(r);
    r = ask(f, "show   nonsense\x1b[2J\n");
    assert_string_equal(r, "error: unknown command 'show   nonsense\\x1b[2J' (try help)\n\n");
    free(r);
    r = ask(f, "show info extra\n");
    assert_non_null(strstr(r, "error: bad arguments to command 'show info extra'"));
    free(r);
}

static void test_overlong_line_is_refused_and_the_next_answered(void **state)
{
    fixture_t *f = *state;
    int fd = connect_unix(f->sock);
    char line[3000];
    memset(line, 'x', sizeof line);
    send_all(fd, line, sizeof line);
    send_all(fd, "\nshow info\n", 11);
    int closed;
    char *r = read_reply(fd, "version:test\n\n", 5000, &closed);
    assert_non_null(strstr(r, "error: command longer than 511 bytes\n\n"));
    assert_non_null(strstr(r, "# server\nversion:test\n\n"));
    free(r);
    close(fd);
}

static void test_replies_are_finished_after_the_client_half_closes(void **state)
{
    fixture_t *f = *state;
    char *big = malloc(4 << 20);
    memset(big, 'm', (4 << 20) - 2);
    big[(4 << 20) - 2] = '\n';
    big[(4 << 20) - 1] = '\0';
    ps_statsd_publish(f->sd, PS_STATS_METRICS, big, NULL);
    int fd = connect_unix(f->sock);
    send_all(fd, "metrics\nshow info\n", 18);
    shutdown(fd, SHUT_WR); /* printf ... | nc -U */
    int closed;
    char *r = read_reply(fd, NULL, 10000, &closed);
    assert_true(closed);
    if (strlen(r) != (4u << 20) + 23) /* 4 MiB of metrics, then 23 of info */
        fail_msg("got %zu bytes, tail '%s'", strlen(r), r + strlen(r) - 30);
    assert_non_null(strstr(r + (4 << 20), "version:test\n\n"));
    free(r);
    close(fd);
}

static char *http_get(int port, const char *request, int *closed)
{
    int fd = connect_tcp(port);
    send_all(fd, request, strlen(request));
    char *r = read_reply(fd, NULL, 5000, closed);
    close(fd);
    return r;
}

/* What Chromium 120 sends for a typed URL: 628 bytes, over the old 511. */
static const char chromium_request[] =
    "GET /metrics HTTP/1.1\r\n"
    "Host: 127.0.0.1:9100\r\n"
    "Connection: keep-alive\r\n"
    "sec-ch-ua: \"Chromium\";v=\"120\", \"Not?A_Brand\";v=\"8\"\r\n"
    "sec-ch-ua-mobile: ?0\r\n"
    "sec-ch-ua-platform: \"Linux\"\r\n"
    "Upgrade-Insecure-Requests: 1\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.6099.224 Safari/537.36\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7\r\n"
    "Sec-Fetch-Site: none\r\n"
    "Sec-Fetch-Mode: navigate\r\n"
    "Sec-Fetch-User: ?1\r\n"
    "Sec-Fetch-Dest: document\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "\r\n";

static void test_http_serves_browser_sized_requests(void **state)
{
    fixture_t *f = *state;
    int port = ps_statsd_http_port(f->sd), closed;
    assert_true(strlen(chromium_request) > 600);
    char *r = http_get(port, chromium_request, &closed);
    assert_true(closed);
    assert_true(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_non_null(strstr(r, "Content-Length: 8\r\n"));
    assert_non_null(strstr(r, "\r\n\r\nps_up 1\n"));
    free(r);
    r = http_get(port, "HEAD /metrics?x=1 HTTP/1.0\r\n\r\n", &closed);
    assert_true(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_null(strstr(r, "ps_up"));
    free(r);
    r = http_get(port, "GET /other HTTP/1.1\r\nHost: x\r\n\r\n", &closed);
    assert_true(strncmp(r, "HTTP/1.1 404 ", 13) == 0);
    free(r);
    r = http_get(port, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &closed);
    assert_true(strncmp(r, "HTTP/1.1 405 ", 13) == 0);
    assert_non_null(strstr(r, "Allow: GET, HEAD\r\n"));
    free(r);
    r = http_get(port, "GET /metrics SPDY/9\r\n\r\n", &closed);
    assert_true(strncmp(r, "HTTP/1.1 400 ", 13) == 0);
    free(r);
}

static void test_http_head_too_large_gets_431(void **state)
{
    fixture_t *f = *state;
    char *req = malloc(20000);
    int n = sprintf(req, "GET /metrics HTTP/1.1\r\n");
    while (n < 19000)
        n += sprintf(req + n, "X-Filler: %0100d\r\n", 0);
    int fd = connect_tcp(ps_statsd_http_port(f->sd));
    send(fd, req, (size_t)n, MSG_NOSIGNAL); /* the server may stop reading part-way */
    int closed;
    char *r = read_reply(fd, NULL, 5000, &closed);
    assert_true(strncmp(r, "HTTP/1.1 431 ", 13) == 0);
    assert_true(closed);
    free(r);
    free(req);
    close(fd);
}

static void test_http_big_reply_arrives_whole(void **state)
{
    fixture_t *f = *state;
    size_t len = 3 << 20;
    char *big = malloc(len + 1);
    memset(big, 'a', len);
    big[len] = '\0';
    ps_statsd_publish(f->sd, PS_STATS_METRICS, big, NULL);
    int closed;
    char *r = http_get(ps_statsd_http_port(f->sd), "GET /metrics HTTP/1.0\r\n\r\n", &closed);
    char *body = strstr(r, "\r\n\r\n");
    assert_non_null(body);
    assert_int_equal(strlen(body + 4), len);
    free(r);
}

static void test_slow_clients_are_capped_and_timed_out(void **state)
{
    fixture_t *f = *state; /* slow: 1.5 s timeouts, 64 line and 32 HTTP clients */
    enum { N = 300 };
    static int line_fd[N], http_fd[N];
    int port = ps_statsd_http_port(f->sd), line_refused = 0, http_refused = 0;
    for (int i = 0; i < N; i++) {
        line_fd[i] = connect_unix(f->sock);
        http_fd[i] = connect_tcp(port);
    }
    /* the refusals are written at accept: read them as they arrive, until
     * all are in or 1.2 s pass (less than the 1.5 s after which the
     * accepted ones time out); then the accepted ones send half a request
     * each (a refused one is closed, and writing to it would reset the
     * connection and lose its refusal) */
    static bool line_done[N], http_done[N];
    int64_t deadline = ps_time_ms() + 1200;
    while ((line_refused < N - 64 || http_refused < N - 32) && ps_time_ms() < deadline) {
        for (int i = 0; i < N; i++) {
            char buf[256] = "";
            if (!line_done[i] && recv(line_fd[i], buf, sizeof buf - 1, MSG_DONTWAIT) > 0)
                line_refused += line_done[i] = strstr(buf, "error: too many clients") != NULL;
            memset(buf, 0, sizeof buf);
            if (!http_done[i] && recv(http_fd[i], buf, sizeof buf - 1, MSG_DONTWAIT) > 0)
                http_refused += http_done[i] = strncmp(buf, "HTTP/1.1 503 ", 13) == 0;
        }
        poll(NULL, 0, 10);
    }
    for (int i = 0; i < N; i++) {
        if (!line_done[i])
            send_best_effort(line_fd[i], "show in", 7); /* never finished */
        if (!http_done[i])
            send_best_effort(http_fd[i], "GET /metr", 9);
    }
    assert_int_equal(line_refused, N - 64);
    assert_true(http_refused >= N - 32); /* 16 per address: all are 127.0.0.1 */
    /* /metrics and commands are answered again once the slow ones time out */
    for (int i = 0; i < N; i++) {
        assert_true(closed_within(line_fd[i], 5000));
        assert_true(closed_within(http_fd[i], 5000));
        close(line_fd[i]);
        close(http_fd[i]);
    }
    char *r = ask(f, "show info\n");
    assert_string_equal(r, "# server\nversion:test\n\n");
    free(r);
    int closed;
    r = http_get(port, "GET /metrics HTTP/1.1\r\n\r\n", &closed);
    assert_true(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
    free(r);
    assert_true(ps_statsd_n_refused(f->sd) >= 2 * N - 64 - 32);
}

static void test_flooding_client_keeps_memory_bounded(void **state)
{
    fixture_t *f = *state; /* tight: at most 64 KiB of replies queued per client */
    char *info = malloc(8192);
    memset(info, 'i', 8190);
    info[8190] = '\n';
    info[8191] = '\0';
    ps_statsd_publish(f->sd, PS_STATS_INFO, info, NULL);
    long before = rss_kb();
    int fd = connect_unix(f->sock);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    /* 16 MB of commands, never reading a reply: 2 M replies of 8 KB were asked for */
    static const char cmds[] = "show info\nshow info\nshow info\nshow info\n";
    size_t sent = 0;
    int64_t deadline = ps_time_ms() + 3000;
    while (sent < (16u << 20) && ps_time_ms() < deadline) {
        ssize_t n = send(fd, cmds, sizeof cmds - 1, MSG_NOSIGNAL);
        if (n > 0)
            sent += (size_t)n;
        else
            poll(NULL, 0, 1);
    }
    /* the server stopped reading: our sends block long before 16 MB */
    assert_true(sent < (8u << 20));
    int64_t t0 = ps_time_ms();
    char *r = ask(f, "help\n");
    assert_non_null(strstr(r, "commands:"));
    assert_true(ps_time_ms() - t0 < 1000);
    free(r);
    long grown = rss_kb() - before;
    print_message("flood: %zu bytes of commands accepted, RSS grew %ld KB\n", sent, grown);
    assert_true(grown < 16 * 1024);
    /* idle: its replies do not drain, so it is closed after the timeout */
    assert_true(closed_within(fd, 3000));
    close(fd);
}

static void test_stop_is_prompt_with_clients_connected(void **state)
{
    fixture_t *f = *state;
    int fds[40];
    for (int i = 0; i < 20; i++) {
        fds[i] = connect_unix(f->sock);
        send_all(fds[i], "show info\nshow in", 17);
        fds[20 + i] = connect_tcp(ps_statsd_http_port(f->sd));
        send_all(fds[20 + i], "GET /", 5);
    }
    char *r = ask(f, "help\n");
    free(r);
    int64_t t0 = ps_time_ms();
    ps_statsd_stop(&f->sd);
    assert_true(ps_time_ms() - t0 < 1000);
    assert_null(f->sd);
    for (int i = 0; i < 40; i++) {
        assert_true(closed_within(fds[i], 1000));
        close(fds[i]);
    }
}

int main(void)
{
    struct rlimit rl;
    /* 600 client sockets here plus the server's side of each */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096) {
        rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commands_come_from_the_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overlong_line_is_refused_and_the_next_answered, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_replies_are_finished_after_the_client_half_closes,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_serves_browser_sized_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_head_too_large_gets_431, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_big_reply_arrives_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_clients_are_capped_and_timed_out, setup_slow,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_flooding_client_keeps_memory_bounded, setup_tight,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stop_is_prompt_with_clients_connected, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
