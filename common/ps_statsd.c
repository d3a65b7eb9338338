/* ps_statsd.c - libuv stats server on its own thread and loop. Handles live
 * inside the structs that own them; a client (a stream and a timer) is freed
 * when both of its handles' close callbacks have run.
 *
 * Every client is bounded (see ps_statsd.h): a fixed input buffer, a byte
 * count of replies not yet on the wire that stops reading over a limit, one
 * timer that closes it when it makes no progress, and caps on how many may
 * be connected. Over a cap the connection is accepted (so the kernel's
 * backlog drains and libuv does not spin on it), told why in one
 * non-blocking write, and closed. */
#include "ps_statsd.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "ps_statsd_int.h"

void ps_statsd_opts_defaults(ps_statsd_opts_t *o)
{
    o->max_clients = 64;
    o->idle_timeout_ms = 10000; /* HAProxy's stats timeout */
    o->max_queued_bytes = 1 << 20;
    o->max_http_clients = 32;
    o->max_http_per_ip = 16;
    o->http_timeout_ms = 10000;
}

/* ---- client lifetime ---- */

static void on_handle_closed(uv_handle_t *h)
{
    client_t *c = h->data;
    if (--c->n_open_handles > 0)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->sd->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

void pssd_client_close(client_t *c)
{
    if (c->is_closing)
        return;
    c->is_closing = true;
    if (c->kind == CLIENT_HTTP)
        c->sd->n_http--;
    else
        c->sd->n_line--;
    uv_close((uv_handle_t *)&c->h, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

void pssd_on_timeout(uv_timer_t *t)
{
    client_t *c = t->data;
    if (c->kind == CLIENT_HTTP && !c->is_answered) {
        static const char msg[] = "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                                  "Content-Length: 0\r\n\r\n";
        uv_buf_t b = uv_buf_init((char *)msg, sizeof msg - 1);
        uv_try_write(&c->h.stream, &b, 1);
    }
    atomic_fetch_add(&c->sd->n_refused, 1);
    pssd_client_close(c);
}

/* Progress (a command answered, a reply drained) restarts a line client's
 * idle timer; an HTTP client's deadlines are fixed, not renewed by bytes. */
void pssd_touch(client_t *c)
{
    if (c->kind == CLIENT_LINE && !c->is_closing)
        uv_timer_start(&c->timer, pssd_on_timeout, (uint64_t)c->sd->opts.idle_timeout_ms, 0);
}

/* ---- writing with backpressure ---- */

void pssd_on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    pssd_client_close(req->data);
}

static void on_written(uv_write_t *req, int status)
{
    write_t *w = (write_t *)req;
    client_t *c = w->c;
    c->queued_bytes -= w->len;
    free(w);
    if (c->is_closing)
        return;
    if (status < 0) {
        pssd_client_close(c);
        return;
    }
    if (c->kind == CLIENT_HTTP) {
        if (c->queued_bytes == 0) {
            c->shutdown_req.data = c;
            if (uv_shutdown(&c->shutdown_req, &c->h.stream, pssd_on_shutdown) != 0)
                pssd_client_close(c);
        }
        return;
    }
    pssd_touch(c);
    if (!c->is_reading && c->queued_bytes <= c->sd->opts.max_queued_bytes / 2)
        pssd_line_process(c); /* commands left in the buffer, then reading again */
}

/* Queues len bytes of data (copied) for the client. */
void pssd_client_send(client_t *c, const char *data, size_t len)
{
    write_t *w = malloc(sizeof *w + len);
    if (!w) {
        pssd_client_close(c);
        return;
    }
    w->c = c;
    w->len = len;
    memcpy(w->data, data, len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    if (uv_write(&w->req, &c->h.stream, &b, 1, on_written) != 0) {
        free(w);
        pssd_client_close(c);
        return;
    }
    c->queued_bytes += len;
}

void pssd_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    client_t *c = h->data;
    (void)suggested;
    buf->base = c->buf + c->len;
    /* an HTTP head keeps a byte for its terminating NUL */
    buf->len = c->cap - c->len - (c->kind == CLIENT_HTTP);
}

void pssd_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    client_t *c = s->data;
    (void)buf;
    if (n == 0 || c->is_closing)
        return;
    if (n == UV_EOF && c->kind == CLIENT_LINE) {
        /* `printf 'show info\n' | nc -U`: answer what was sent, then close */
        uv_read_stop(s);
        c->is_reading = false;
        c->is_eof = true;
        pssd_line_process(c);
        return;
    }
    if (n < 0) {
        pssd_client_close(c);
        return;
    }
    c->len += (size_t)n;
    if (c->kind == CLIENT_HTTP)
        pssd_http_process(c);
    else
        pssd_line_process(c);
}

/* ---- accepting ---- */

static void peer_address(client_t *c)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    memset(c->peer, 0, sizeof c->peer);
    if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET)
        memcpy(c->peer, &((struct sockaddr_in *)&ss)->sin_addr, 4);
    else if (ss.ss_family == AF_INET6)
        memcpy(c->peer, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
}

static int n_http_from(const ps_statsd_t *sd, const client_t *c)
{
    int n = 0;
    for (const client_t *o = sd->clients; o; o = o->next)
        n += o != c && !o->is_closing && o->kind == CLIENT_HTTP &&
             memcmp(o->peer, c->peer, sizeof c->peer) == 0;
    return n;
}

/* Over a limit: say so without waiting for the peer, and close. */
static void refuse(client_t *c, const char *msg)
{
    uv_buf_t b = uv_buf_init((char *)msg, (unsigned)strlen(msg));
    uv_try_write(&c->h.stream, &b, 1);
    atomic_fetch_add(&c->sd->n_refused, 1);
    pssd_client_close(c);
}

static void on_connection(uv_stream_t *server, int status, client_kind_t kind, int is_pipe)
{
    if (status < 0)
        return;
    ps_statsd_t *sd = server->data;
    size_t cap = kind == CLIENT_HTTP ? PS_STATSD_HTTP_HEAD_MAX + 1 : PS_STATSD_LINE_MAX;
    client_t *c = calloc(1, sizeof *c + cap);
    if (!c)
        return; /* libuv's EMFILE/ENOMEM handling drops the pending connection */
    c->sd = sd;
    c->kind = kind;
    c->cap = cap;
    c->is_unix = is_pipe;
    if (is_pipe)
        uv_pipe_init(&sd->loop, &c->h.pipe, 0);
    else
        uv_tcp_init(&sd->loop, &c->h.tcp);
    uv_timer_init(&sd->loop, &c->timer);
    c->h.stream.data = c;
    c->timer.data = c;
    c->n_open_handles = 2;
    c->next = sd->clients;
    if (sd->clients)
        sd->clients->prev = c;
    sd->clients = c;
    if (kind == CLIENT_HTTP)
        sd->n_http++;
    else
        sd->n_line++;
    if (uv_accept(server, &c->h.stream) != 0) {
        pssd_client_close(c);
        return;
    }
    if (kind == CLIENT_HTTP) {
        peer_address(c);
        if (sd->n_http > sd->opts.max_http_clients ||
            n_http_from(sd, c) >= sd->opts.max_http_per_ip) {
            refuse(c, "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                      "Retry-After: 1\r\nContent-Length: 0\r\n\r\n");
            return;
        }
        uv_timer_start(&c->timer, pssd_on_timeout, (uint64_t)sd->opts.http_timeout_ms, 0);
    } else {
        if (sd->n_line > sd->opts.max_clients) {
            refuse(c, "error: too many clients\n\n");
            return;
        }
        pssd_touch(c);
    }
    c->is_reading = uv_read_start(&c->h.stream, pssd_on_alloc, pssd_on_read) == 0;
    if (!c->is_reading)
        pssd_client_close(c);
}

static void on_unix_conn(uv_stream_t *s, int status)
{
    on_connection(s, status, CLIENT_LINE, 1);
}
static void on_tcp_conn(uv_stream_t *s, int status)
{
    on_connection(s, status, CLIENT_LINE, 0);
}
static void on_http_conn(uv_stream_t *s, int status)
{
    on_connection(s, status, CLIENT_HTTP, 0);
}

/* ---- thread, start, stop ---- */

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void on_stop(uv_async_t *a)
{
    ps_statsd_t *sd = a->data;
    /* clients first (their close callbacks free them), then the listeners
     * and this async, which live inside ps_statsd_t */
    for (client_t *c = sd->clients; c; c = c->next)
        pssd_client_close(c);
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
        rc = uv_listen((uv_stream_t *)srv, 128, cb);
    if (rc != 0)
        return ps_err_set(err, PS_ENET, "cannot listen on '127.0.0.1:%d': %s", port,
                          uv_strerror(rc));
    struct sockaddr_in got;
    int len = sizeof got;
    uv_tcp_getsockname(srv, (struct sockaddr *)&got, &len);
    *bound = ntohs(got.sin_port);
    return PS_OK;
}

static int listen_unix(ps_statsd_t *sd, const char *unix_path, ps_errbuf_t *err)
{
    snprintf(sd->unix_path, sizeof sd->unix_path, "%s", unix_path);
    unlink(unix_path); /* a stale socket from a previous run */
    uv_pipe_init(&sd->loop, &sd->unix_srv, 0);
    sd->unix_srv.data = sd;
    mode_t old = umask(0117); /* the socket file gets mode 0660 */
    int rc = uv_pipe_bind(&sd->unix_srv, unix_path);
    umask(old);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&sd->unix_srv, 128, on_unix_conn);
    if (rc != 0)
        return ps_err_set(err, PS_ENET, "cannot listen on stats socket '%s': %s", unix_path,
                          uv_strerror(rc));
    chmod(unix_path, 0660);
    sd->has_unix = 1;
    return PS_OK;
}

ps_statsd_t *ps_statsd_start(const char *unix_path, int tcp_port, int http_port,
                             atomic_int *save_flag, ps_errbuf_t *err)
{
    return ps_statsd_start_opts(unix_path, tcp_port, http_port, save_flag, NULL, err);
}

ps_statsd_t *ps_statsd_start_opts(const char *unix_path, int tcp_port, int http_port,
                                  atomic_int *save_flag, const ps_statsd_opts_t *opts,
                                  ps_errbuf_t *err)
{
    ps_statsd_t *sd = ps_xcalloc(1, sizeof *sd);
    sd->tcp_port = sd->http_port = -1;
    sd->save_flag = save_flag;
    if (opts)
        sd->opts = *opts;
    else
        ps_statsd_opts_defaults(&sd->opts);
    atomic_init(&sd->n_refused, 0);
    pthread_mutex_init(&sd->lock, NULL);
    uv_loop_init(&sd->loop);
    uv_async_init(&sd->loop, &sd->stop_async, on_stop);
    sd->stop_async.data = sd;
    if (unix_path && *unix_path && listen_unix(sd, unix_path, err) != PS_OK)
        goto fail;
    if (tcp_port >= 0 && listen_tcp(sd, &sd->tcp_srv, tcp_port, on_tcp_conn, &sd->tcp_port, err))
        goto fail;
    if (http_port >= 0 &&
        listen_tcp(sd, &sd->http_srv, http_port, on_http_conn, &sd->http_port, err))
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

void ps_statsd_enable_actions(ps_statsd_t *sd)
{
    pthread_mutex_lock(&sd->lock);
    sd->has_actions = true;
    pthread_mutex_unlock(&sd->lock);
}

bool ps_statsd_next_action(ps_statsd_t *sd, ps_statsd_action_t *out)
{
    pthread_mutex_lock(&sd->lock);
    bool any = sd->n_actions_out != sd->n_actions_in;
    if (any)
        *out = sd->actions[sd->n_actions_out++ % PS_STATSD_ACTION_MAX];
    pthread_mutex_unlock(&sd->lock);
    return any;
}

int ps_statsd_tcp_port(const ps_statsd_t *sd)
{
    return sd->tcp_port;
}
int ps_statsd_http_port(const ps_statsd_t *sd)
{
    return sd->http_port;
}

unsigned long ps_statsd_n_refused(const ps_statsd_t *sd)
{
    return atomic_load(&((ps_statsd_t *)sd)->n_refused);
}

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
