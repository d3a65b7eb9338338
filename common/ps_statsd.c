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

typedef enum { CLIENT_LINE, CLIENT_HTTP } client_kind_t;

typedef struct client client_t;

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
    ps_statsd_opts_t opts;
    client_t *clients; /* every client not yet freed (stats thread only) */
    int n_line, n_http;
    atomic_ulong n_refused;
};

struct client {
    union {
        uv_stream_t stream;
        uv_pipe_t pipe;
        uv_tcp_t tcp;
    } h;
    uv_timer_t timer;
    uv_shutdown_t shutdown_req;
    ps_statsd_t *sd;
    client_t *prev, *next;
    client_kind_t kind;
    int n_open_handles; /* the client is freed when this drops to 0 */
    bool is_closing;
    bool is_reading;
    bool is_discarding;     /* dropping the rest of an over-long line */
    bool is_answered;       /* HTTP: the reply is queued, no more reading */
    bool is_eof;            /* line: the client sent EOF; finish its replies, then close */
    bool is_done;           /* line: shut down after EOF, nothing more to do */
    unsigned char peer[16]; /* HTTP: the peer's address, for the per-address cap */
    size_t queued_bytes;    /* written to libuv, not yet on the wire */
    size_t len, cap;
    char buf[]; /* cap bytes: a command line or an HTTP request head */
};

typedef struct {
    uv_write_t req;
    client_t *c;
    size_t len;
    char data[];
} write_t;

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

static void client_close(client_t *c)
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

static void on_timeout(uv_timer_t *t)
{
    client_t *c = t->data;
    if (c->kind == CLIENT_HTTP && !c->is_answered) {
        static const char msg[] = "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                                  "Content-Length: 0\r\n\r\n";
        uv_buf_t b = uv_buf_init((char *)msg, sizeof msg - 1);
        uv_try_write(&c->h.stream, &b, 1);
    }
    atomic_fetch_add(&c->sd->n_refused, 1);
    client_close(c);
}

/* Progress (a command answered, a reply drained) restarts a line client's
 * idle timer; an HTTP client's deadlines are fixed, not renewed by bytes. */
static void touch(client_t *c)
{
    if (c->kind == CLIENT_LINE && !c->is_closing)
        uv_timer_start(&c->timer, on_timeout, (uint64_t)c->sd->opts.idle_timeout_ms, 0);
}

/* ---- writing with backpressure ---- */

static void line_process(client_t *c);

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    client_close(req->data);
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
        client_close(c);
        return;
    }
    if (c->kind == CLIENT_HTTP) {
        if (c->queued_bytes == 0) {
            c->shutdown_req.data = c;
            if (uv_shutdown(&c->shutdown_req, &c->h.stream, on_shutdown) != 0)
                client_close(c);
        }
        return;
    }
    touch(c);
    if (!c->is_reading && c->queued_bytes <= c->sd->opts.max_queued_bytes / 2)
        line_process(c); /* commands left in the buffer, then reading again */
}

/* Queues len bytes of data (copied) for the client. */
static void client_send(client_t *c, const char *data, size_t len)
{
    write_t *w = malloc(sizeof *w + len);
    if (!w) {
        client_close(c);
        return;
    }
    w->c = c;
    w->len = len;
    memcpy(w->data, data, len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    if (uv_write(&w->req, &c->h.stream, &b, 1, on_written) != 0) {
        free(w);
        client_close(c);
        return;
    }
    c->queued_bytes += len;
}

/* ---- the line protocol: one table of commands ---- */

typedef struct stats_cmd stats_cmd_t;
/* Writes the reply body (malloc'd, NULL = out of memory) for a command
 * whose words matched; args are the words after them (json removed). */
typedef char *(*stats_cmd_fn)(ps_statsd_t *sd, const stats_cmd_t *cmd, char **args, int n_args,
                              bool is_json);

struct stats_cmd {
    const char *words; /* "show info": the words that select it */
    const char *args;  /* shown by help: "[json]", "JOB" */
    int n_args;        /* words expected after `words` */
    int section;       /* for cmd_section */
    stats_cmd_fn fn;
    const char *help;
};

static char *cmd_help(ps_statsd_t *sd, const stats_cmd_t *cmd, char **args, int n_args,
                      bool is_json);
static char *cmd_section(ps_statsd_t *sd, const stats_cmd_t *cmd, char **args, int n_args,
                         bool is_json);
static char *cmd_save(ps_statsd_t *sd, const stats_cmd_t *cmd, char **args, int n_args,
                      bool is_json);

/* One line per command; help is generated from this table. */
static const stats_cmd_t commands[] = {
    {"help", "", 0, -1, cmd_help, "this list"},
    {"show info", "[json]", 0, PS_STATS_INFO, cmd_section,
     "version, uptime, requests, bytes, errors, memory, checkpoints"},
    {"show workers", "[json]", 0, PS_STATS_WORKERS, cmd_section,
     "per worker: rank, address, clock, staleness, heartbeat age"},
    {"show tables", "[json]", 0, PS_STATS_TABLES, cmd_section,
     "per table: shape, elements on this shard, optimizer, bytes"},
    {"show config", "[json]", 0, PS_STATS_CONFIG, cmd_section, "the configuration in force"},
    {"metrics", "", 0, PS_STATS_METRICS, cmd_section, "Prometheus text format"},
    {"save", "", 0, -1, cmd_save, "checkpoint every job now"},
};
#define N_COMMANDS (sizeof commands / sizeof *commands)

static char *section_copy(ps_statsd_t *sd, int s, bool is_json)
{
    pthread_mutex_lock(&sd->lock);
    const char *src = is_json ? sd->json[s] : sd->text[s];
    char *copy = strdup(src ? src : (is_json ? "{}" : ""));
    pthread_mutex_unlock(&sd->lock);
    return copy;
}

static char *cmd_section(ps_statsd_t *sd, const stats_cmd_t *cmd, char **args, int n_args,
                         bool is_json)
{
    (void)args;
    (void)n_args;
    /* `json` after a section that has no JSON form (metrics) is ignored */
    return section_copy(sd, cmd->section, is_json && strcmp(cmd->args, "[json]") == 0);
}

static char *cmd_save(ps_statsd_t *sd, const stats_cmd_t *cmd, char **args, int n_args,
                      bool is_json)
{
    (void)cmd;
    (void)args;
    (void)n_args;
    (void)is_json;
    if (sd->save_flag)
        atomic_store(sd->save_flag, 1);
    return strdup(sd->save_flag ? "ok: checkpoint requested\n"
                                : "error: this process keeps no checkpoints\n");
}

static char *cmd_help(ps_statsd_t *sd, const stats_cmd_t *cmd, char **args, int n_args,
                      bool is_json)
{
    (void)sd;
    (void)cmd;
    (void)args;
    (void)n_args;
    (void)is_json;
    char *out = malloc(128 * (N_COMMANDS + 2));
    if (!out)
        return NULL;
    size_t n = (size_t)sprintf(out, "commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) {
        char head[64];
        snprintf(head, sizeof head, "%s %s", commands[i].words, commands[i].args);
        n += (size_t)sprintf(out + n, "  %-25.25s %.90s\n", head, commands[i].help);
    }
    sprintf(out + n, "every reply ends with an empty line\n");
    return out;
}

/* Copies s into out with bytes outside printable ASCII as \xNN: a reply
 * that echoes a client's bytes stays one line of text. */
static void escape_text(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    for (; *s && n + 5 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch >= 0x20 && ch < 0x7f && ch != '\\')
            out[n++] = (char)ch;
        else
            n += (size_t)snprintf(out + n, cap - n, "\\x%02x", ch);
    }
    out[n] = '\0';
}

/* The command-table entry for words[0..n), or NULL; *n_used = its words. */
static const stats_cmd_t *find_command(char **words, int n, int *n_used)
{
    for (size_t i = 0; i < N_COMMANDS; i++) {
        char spec[64];
        snprintf(spec, sizeof spec, "%s", commands[i].words);
        int k = 0;
        char *save = NULL;
        bool ok = true;
        for (char *w = strtok_r(spec, " ", &save); w && ok; w = strtok_r(NULL, " ", &save), k++)
            ok = k < n && strcmp(w, words[k]) == 0;
        if (ok) {
            *n_used = k;
            return &commands[i];
        }
    }
    return NULL;
}

/* The reply body to one command line (malloc'd; NULL if out of memory). */
static char *answer_body(ps_statsd_t *sd, char *line)
{
    char *words[8], *save = NULL;
    int n = 0;
    for (char *w = strtok_r(line, " \t", &save); w && n < 8; w = strtok_r(NULL, " \t", &save))
        words[n++] = w;
    bool is_json = n > 1 && strcmp(words[n - 1], "json") == 0;
    int n_used = 0;
    const stats_cmd_t *cmd = find_command(words, n - (is_json ? 1 : 0), &n_used);
    if (cmd && n - (is_json ? 1 : 0) - n_used == cmd->n_args)
        return cmd->fn(sd, cmd, words + n_used, cmd->n_args, is_json);
    char shown[256], msg[400];
    for (int i = 1; i < n; i++) /* strtok_r cut the words apart: join them again */
        words[i - 1][strlen(words[i - 1])] = ' ';
    escape_text(n ? words[0] : "", shown, sizeof shown);
    snprintf(msg, sizeof msg, "error: %s command '%.200s' (try help)\n",
             cmd ? "bad arguments to" : "unknown", shown);
    return strdup(msg);
}

/* Queues the reply to one line, with its terminating empty line. */
static void answer_line(client_t *c, char *line)
{
    char *body = answer_body(c->sd, line);
    if (!body) {
        client_close(c);
        return;
    }
    size_t len = strlen(body);
    bool has_nl = len && body[len - 1] == '\n';
    char *out = realloc(body, len + 3);
    if (!out) {
        free(body);
        client_close(c);
        return;
    }
    if (!has_nl)
        out[len++] = '\n';
    out[len++] = '\n';
    client_send(c, out, len);
    free(out);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    client_t *c = h->data;
    (void)suggested;
    buf->base = c->buf + c->len;
    /* an HTTP head keeps a byte for its terminating NUL */
    buf->len = c->cap - c->len - (c->kind == CLIENT_HTTP);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

/* After the client's EOF: once every complete line is answered and the
 * replies are on the wire, shut down and close. */
static void line_finish(client_t *c)
{
    if (c->is_closing || c->queued_bytes || memchr(c->buf, '\n', c->len))
        return;
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, &c->h.stream, on_shutdown) != 0)
        client_close(c);
    c->is_done = true; /* a partial last line has no answer; shut down only once */
}

/* Answers every complete line in the buffer while the client's replies fit
 * under max_queued_bytes; reads on only while they do. */
static void line_process(client_t *c)
{
    size_t limit = c->sd->opts.max_queued_bytes;
    char *nl;
    if (c->is_done)
        return;
    while (!c->is_closing && c->queued_bytes <= limit && (nl = memchr(c->buf, '\n', c->len))) {
        size_t used = (size_t)(nl + 1 - c->buf);
        *nl = '\0';
        if (nl > c->buf && nl[-1] == '\r')
            nl[-1] = '\0';
        if (c->is_discarding) {
            c->is_discarding = false;
            static const char msg[] = "error: command longer than 511 bytes\n\n";
            client_send(c, msg, sizeof msg - 1);
        } else if (c->buf[strspn(c->buf, " \t")]) {
            answer_line(c, c->buf);
        }
        if (c->is_closing)
            return;
        memmove(c->buf, c->buf + used, c->len - used);
        c->len -= used;
    }
    if (c->len == c->cap && !memchr(c->buf, '\n', c->len)) {
        c->is_discarding = true; /* a full buffer and no newline: drop up to the next one */
        c->len = 0;
    }
    if (c->is_eof) {
        line_finish(c);
        return;
    }
    bool want_read = c->queued_bytes <= limit;
    if (want_read && !c->is_reading)
        c->is_reading = uv_read_start(&c->h.stream, on_alloc, on_read) == 0;
    else if (!want_read && c->is_reading)
        c->is_reading = uv_read_stop(&c->h.stream) != 0;
}

/* ---- HTTP: GET|HEAD /metrics, one request per connection ---- */

static void http_reply(client_t *c, const char *status, const char *extra, const char *body,
                       bool is_head)
{
    size_t blen = strlen(body);
    char head[512];
    int h =
        snprintf(head, sizeof head,
                 "HTTP/1.1 %s\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                 "Content-Length: %zu\r\nCache-Control: no-store\r\n%sConnection: close\r\n\r\n",
                 status, blen, extra);
    c->is_answered = true;
    if (c->is_reading)
        c->is_reading = uv_read_stop(&c->h.stream) != 0;
    /* a fresh deadline to take the reply */
    uv_timer_start(&c->timer, on_timeout, (uint64_t)c->sd->opts.http_timeout_ms, 0);
    client_send(c, head, (size_t)h);
    if (!is_head && !c->is_closing)
        client_send(c, body, blen);
}

/* The request head is complete (c->buf, NUL-terminated): parse its request
 * line (RFC 9112: METHOD SP TARGET SP HTTP/1.x) and answer. The header
 * fields are not needed and are not interpreted. */
static void http_answer(client_t *c)
{
    char method[16], target[256], version[16];
    int used = 0;
    if (sscanf(c->buf, "%15[A-Z] %255[^ \r\n] %15[^\r\n]%n", method, target, version, &used) != 3 ||
        (c->buf[used] != '\r' && c->buf[used] != '\n') || strncmp(version, "HTTP/1.", 7) != 0 ||
        !strchr("01", version[7]) || version[8]) {
        http_reply(c, "400 Bad Request", "", "bad request line\n", false);
        return;
    }
    bool is_head = strcmp(method, "HEAD") == 0;
    if (!is_head && strcmp(method, "GET") != 0) {
        http_reply(c, "405 Method Not Allowed", "Allow: GET, HEAD\r\n", "only GET and HEAD\n",
                   false);
        return;
    }
    size_t plen = strcspn(target, "?");
    if (plen != 8 || strncmp(target, "/metrics", 8) != 0) {
        http_reply(c, "404 Not Found", "", "not found: try GET /metrics\n", is_head);
        return;
    }
    char *body = section_copy(c->sd, PS_STATS_METRICS, false);
    if (!body) {
        client_close(c);
        return;
    }
    http_reply(c, "200 OK", "", body, is_head);
    free(body);
}

static void http_process(client_t *c)
{
    c->buf[c->len] = '\0';
    if (memchr(c->buf, '\0', c->len)) {
        http_reply(c, "400 Bad Request", "", "NUL in request\n", false);
        return;
    }
    if (strstr(c->buf, "\r\n\r\n") || strstr(c->buf, "\n\n"))
        http_answer(c);
    else if (c->len == c->cap - 1)
        http_reply(c, "431 Request Header Fields Too Large", "", "request head too large\n", false);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
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
        line_process(c);
        return;
    }
    if (n < 0) {
        client_close(c);
        return;
    }
    c->len += (size_t)n;
    if (c->kind == CLIENT_HTTP)
        http_process(c);
    else
        line_process(c);
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
    client_close(c);
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
        client_close(c);
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
        uv_timer_start(&c->timer, on_timeout, (uint64_t)sd->opts.http_timeout_ms, 0);
    } else {
        if (sd->n_line > sd->opts.max_clients) {
            refuse(c, "error: too many clients\n\n");
            return;
        }
        touch(c);
    }
    c->is_reading = uv_read_start(&c->h.stream, on_alloc, on_read) == 0;
    if (!c->is_reading)
        client_close(c);
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
        client_close(c);
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
