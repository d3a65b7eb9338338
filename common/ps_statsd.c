/* ps_statsd.c - libuv stats server on its own thread and loop. Handles live
 * inside the structs that own them; a client struct is freed in its close
 * callback. */
#include "ps_statsd.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#define MAX_LINE 512

struct ps_statsd {
    uv_loop_t loop;
    uv_pipe_t unix_srv;
    uv_tcp_t tcp_srv, http_srv;
    uv_async_t stop_async;
    pthread_t thread;
    pthread_mutex_t lock;
    char *text[PS_STATS_N_SECTIONS], *json[PS_STATS_N_SECTIONS];
    char unix_path[256];
    int has_unix, tcp_port, http_port;
    atomic_int *save_flag;
};

typedef struct {
    union {
        uv_stream_t stream;
        uv_pipe_t pipe;
        uv_tcp_t tcp;
    } h;
    ps_statsd_t *sd;
    int is_http;
    char buf[MAX_LINE];
    size_t len;
} client_t;

typedef struct {
    uv_write_t req;
    char *data;
} write_t;

static void on_client_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_written(uv_write_t *req, int status)
{
    write_t *w = (write_t *)req;
    (void)status;
    free(w->data);
    free(w);
}

/* Takes ownership of data (malloc'd). */
static void send_text(client_t *c, char *data, size_t len)
{
    write_t *w = malloc(sizeof *w);
    if (!w) {
        free(data);
        return;
    }
    w->data = data;
    uv_buf_t b = uv_buf_init(data, (unsigned)len);
    if (uv_write(&w->req, &c->h.stream, &b, 1, on_written) != 0) {
        free(data);
        free(w);
    }
}

static char *section_copy(ps_statsd_t *sd, ps_stats_section_t s, int json)
{
    pthread_mutex_lock(&sd->lock);
    const char *src = json ? sd->json[s] : sd->text[s];
    char *copy = strdup(src ? src : (json ? "{}" : ""));
    pthread_mutex_unlock(&sd->lock);
    return copy;
}

static const char help_text[] =
    "commands:\n"
    "  help                      this list\n"
    "  show info [json]          version, uptime, requests, bytes, errors, memory, checkpoints\n"
    "  show workers [json]       per worker: rank, address, clock, staleness, heartbeat age\n"
    "  show tables [json]        per table: shape, elements on this shard, optimizer, bytes\n"
    "  show config [json]        the configuration in force\n"
    "  metrics                   Prometheus text format\n"
    "  save                      checkpoint every job now\n"
    "every reply ends with an empty line\n";

/* The reply to one command line, with its terminating empty line. */
static char *answer(ps_statsd_t *sd, const char *line)
{
    static const char *names[] = {"info", "workers", "tables", "config"};
    char cmd[MAX_LINE], what[64] = "", fmt[16] = "";
    int n = sscanf(line, "%511s %63s %15s", cmd, what, fmt);
    char *body = NULL;
    if (n >= 1 && strcmp(cmd, "help") == 0) {
        body = strdup(help_text);
    } else if (n >= 1 && strcmp(cmd, "metrics") == 0) {
        body = section_copy(sd, PS_STATS_METRICS, 0);
    } else if (n >= 1 && strcmp(cmd, "save") == 0) {
        if (sd->save_flag)
            atomic_store(sd->save_flag, 1);
        body = strdup(sd->save_flag ? "ok: checkpoint requested\n"
                                    : "error: this process keeps no checkpoints\n");
    } else if (n >= 2 && strcmp(cmd, "show") == 0) {
        for (int s = 0; s < 4 && !body; s++)
            if (strcmp(what, names[s]) == 0)
                body = section_copy(sd, (ps_stats_section_t)s, n == 3 && strcmp(fmt, "json") == 0);
    }
    if (!body) {
        char msg[MAX_LINE + 64];
        snprintf(msg, sizeof msg, "error: unknown command '%.200s' (try help)\n", line);
        body = strdup(msg);
    }
    size_t len = strlen(body);
    char *out = malloc(len + 3);
    if (!out) {
        free(body);
        return NULL;
    }
    memcpy(out, body, len);
    if (len && out[len - 1] != '\n')
        out[len++] = '\n';
    out[len++] = '\n';
    out[len] = '\0';
    free(body);
    return out;
}

static void answer_http(client_t *c)
{
    char *body = strncmp(c->buf, "GET /metrics", 12) == 0 ? section_copy(c->sd, PS_STATS_METRICS, 0)
                                                           : NULL;
    const char *status = body ? "200 OK" : "404 Not Found";
    if (!body)
        body = strdup("not found: try GET /metrics\n");
    size_t blen = strlen(body);
    char *out = malloc(blen + 256);
    if (out) {
        int h = snprintf(out, 256,
                         "HTTP/1.0 %s\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                         status, blen);
        memcpy(out + h, body, blen);
        send_text(c, out, (size_t)h + blen);
    }
    free(body);
    uv_close((uv_handle_t *)&c->h, on_client_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    client_t *c = h->data;
    (void)suggested;
    buf->base = c->buf + c->len;
    buf->len = sizeof c->buf - 1 - c->len;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    client_t *c = s->data;
    (void)buf;
    if (n < 0) {
        uv_close((uv_handle_t *)s, on_client_closed);
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    if (c->is_http) {
        if (strstr(c->buf, "\r\n\r\n") || strstr(c->buf, "\n\n"))
            answer_http(c);
        else if (c->len >= sizeof c->buf - 1)
            uv_close((uv_handle_t *)s, on_client_closed);
        return;
    }
    char *nl;
    while ((nl = strchr(c->buf, '\n'))) {
        *nl = '\0';
        if (nl > c->buf && nl[-1] == '\r')
            nl[-1] = '\0';
        if (*c->buf) {
            char *reply = answer(c->sd, c->buf);
            if (reply)
                send_text(c, reply, strlen(reply));
        }
        size_t used = (size_t)(nl + 1 - c->buf);
        memmove(c->buf, nl + 1, c->len - used + 1);
        c->len -= used;
    }
    if (c->len >= sizeof c->buf - 1) /* a line too long: say so and drop it */
        c->len = 0;
}

static void on_connection(uv_stream_t *server, int status, int is_http, int is_pipe)
{
    if (status < 0)
        return;
    ps_statsd_t *sd = server->data;
    client_t *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->sd = sd;
    c->is_http = is_http;
    if (is_pipe)
        uv_pipe_init(&sd->loop, &c->h.pipe, 0);
    else
        uv_tcp_init(&sd->loop, &c->h.tcp);
    c->h.stream.data = c;
    if (uv_accept(server, &c->h.stream) != 0 || uv_read_start(&c->h.stream, on_alloc, on_read) != 0)
        uv_close((uv_handle_t *)&c->h, on_client_closed);
}

static void on_unix_conn(uv_stream_t *s, int status) { on_connection(s, status, 0, 1); }
static void on_tcp_conn(uv_stream_t *s, int status) { on_connection(s, status, 0, 0); }
static void on_http_conn(uv_stream_t *s, int status) { on_connection(s, status, 1, 0); }

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (uv_is_closing(h))
        return;
    /* a client's handle is the first member of its client_t, which its data
     * points to; the listeners and the async live inside ps_statsd_t */
    uv_close(h, h->data == (void *)h ? on_client_closed : NULL);
}

static void on_stop(uv_async_t *a)
{
    ps_statsd_t *sd = a->data;
    /* client handles own their struct (freed in their close callback) */
    uv_walk(&sd->loop, close_walk, NULL);
}

static void *run(void *arg)
{
    ps_statsd_t *sd = arg;
    uv_run(&sd->loop, UV_RUN_DEFAULT);
    return NULL;
}

static int listen_tcp(ps_statsd_t *sd, uv_tcp_t *srv, int port, uv_connection_cb cb, int *bound,
                      ps_errbuf_t *err)
{
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", port, &addr);
    uv_tcp_init(&sd->loop, srv);
    srv->data = sd;
    int rc = uv_tcp_bind(srv, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)srv, 16, cb);
    if (rc != 0)
        return ps_err_set(err, PS_ENET, "cannot listen on '127.0.0.1:%d': %s", port, uv_strerror(rc));
    struct sockaddr_in got;
    int len = sizeof got;
    uv_tcp_getsockname(srv, (struct sockaddr *)&got, &len);
    *bound = ntohs(got.sin_port);
    return PS_OK;
}

ps_statsd_t *ps_statsd_start(const char *unix_path, int tcp_port, int http_port,
                             atomic_int *save_flag, ps_errbuf_t *err)
{
    ps_statsd_t *sd = ps_xcalloc(1, sizeof *sd);
    sd->tcp_port = sd->http_port = -1;
    sd->save_flag = save_flag;
    pthread_mutex_init(&sd->lock, NULL);
    uv_loop_init(&sd->loop);
    uv_async_init(&sd->loop, &sd->stop_async, on_stop);
    sd->stop_async.data = sd;
    if (unix_path && *unix_path) {
        snprintf(sd->unix_path, sizeof sd->unix_path, "%s", unix_path);
        unlink(unix_path); /* a stale socket from a previous run */
        uv_pipe_init(&sd->loop, &sd->unix_srv, 0);
        sd->unix_srv.data = sd;
        mode_t old = umask(0117); /* the socket file gets mode 0660 */
        int rc = uv_pipe_bind(&sd->unix_srv, unix_path);
        umask(old);
        if (rc == 0)
            rc = uv_listen((uv_stream_t *)&sd->unix_srv, 16, on_unix_conn);
        if (rc != 0) {
            ps_err_set(err, PS_ENET, "cannot listen on stats socket '%s': %s", unix_path,
                       uv_strerror(rc));
            goto fail;
        }
        chmod(unix_path, 0660);
        sd->has_unix = 1;
    }
    if (tcp_port >= 0 && listen_tcp(sd, &sd->tcp_srv, tcp_port, on_tcp_conn, &sd->tcp_port, err))
        goto fail;
    if (http_port >= 0 && listen_tcp(sd, &sd->http_srv, http_port, on_http_conn, &sd->http_port, err))
        goto fail;
    if (pthread_create(&sd->thread, NULL, run, sd) != 0) {
        ps_err_set(err, PS_ENOMEM, "cannot start the stats thread");
        goto fail;
    }
    return sd;
fail:
    uv_walk(&sd->loop, close_walk, NULL);
    uv_run(&sd->loop, UV_RUN_DEFAULT);
    uv_loop_close(&sd->loop);
    if (sd->has_unix)
        unlink(sd->unix_path);
    pthread_mutex_destroy(&sd->lock);
    free(sd);
    return NULL;
}

void ps_statsd_publish(ps_statsd_t *sd, ps_stats_section_t s, char *text, char *json)
{
    pthread_mutex_lock(&sd->lock);
    char *old_text = sd->text[s], *old_json = sd->json[s];
    sd->text[s] = text;
    sd->json[s] = json;
    pthread_mutex_unlock(&sd->lock);
    free(old_text);
    free(old_json);
}

int ps_statsd_tcp_port(const ps_statsd_t *sd) { return sd->tcp_port; }
int ps_statsd_http_port(const ps_statsd_t *sd) { return sd->http_port; }

void ps_statsd_stop(ps_statsd_t **sdp)
{
    ps_statsd_t *sd = *sdp;
    if (!sd)
        return;
    uv_async_send(&sd->stop_async);
    pthread_join(sd->thread, NULL);
    uv_loop_close(&sd->loop);
    if (sd->has_unix)
        unlink(sd->unix_path);
    for (int s = 0; s < PS_STATS_N_SECTIONS; s++) {
        free(sd->text[s]);
        free(sd->json[s]);
    }
    pthread_mutex_destroy(&sd->lock);
    free(sd);
    *sdp = NULL;
}
