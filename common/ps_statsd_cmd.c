/* ps_statsd_cmd.c - what the stats thread answers: the line protocol (one
 * table of commands, every reply ending with an empty line) and HTTP's
 * GET|HEAD /metrics. See ps_statsd.h. */
#include "ps_statsd_int.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    bool unix_only; /* destroys state: only over the UNIX socket, whose file
                       permissions say who may */
};

static char *cmd_help(ps_statsd_t *sd, const stats_cmd_t *cmd, char **args, int n_args,
                      bool is_json);
static char *cmd_action(ps_statsd_t *sd, const stats_cmd_t *cmd, char **args, int n_args,
                        bool is_json);
static void escape_text(const char *s, char *out, size_t cap);
static char *cmd_section(ps_statsd_t *sd, const stats_cmd_t *cmd, char **args, int n_args,
                         bool is_json);
static char *cmd_save(ps_statsd_t *sd, const stats_cmd_t *cmd, char **args, int n_args,
                      bool is_json);

/* One line per command; help is generated from this table. */
static const stats_cmd_t commands[] = {
    {"help", "", 0, -1, cmd_help, "this list", false},
    {"show info", "[json]", 0, PS_STATS_INFO, cmd_section,
     "version, uptime, requests, bytes, errors, memory, checkpoints", false},
    {"show workers", "[json]", 0, PS_STATS_WORKERS, cmd_section,
     "per worker: rank, address, clock, staleness, heartbeat age", false},
    {"show tables", "[json]", 0, PS_STATS_TABLES, cmd_section,
     "per table: shape, elements on this shard, optimizer, bytes", false},
    {"show config", "[json]", 0, PS_STATS_CONFIG, cmd_section, "the configuration in force", false},
    {"show checkpoints", "[json]", 0, PS_STATS_CHECKPOINTS, cmd_section,
     "per checkpoint file: whose (own, or a replica held for another shard), job, clock, "
     "bytes, the holders that acknowledged it",
     false},
    {"metrics", "", 0, PS_STATS_METRICS, cmd_section, "Prometheus text format", false},
    {"save", "", 0, -1, cmd_save, "checkpoint every job now", false},
    {"drop", "JOB", 1, -1, cmd_action,
     "end job JOB on this shard: tables and checkpoints removed (UNIX socket only)", true},
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

/* A command the daemon's loop carries out: queued for it. */
static char *cmd_action(ps_statsd_t *sd, const stats_cmd_t *cmd, char **args, int n_args,
                        bool is_json)
{
    (void)is_json;
    char esc[PS_STATSD_LINE_MAX * 4], out[PS_STATSD_LINE_MAX * 4 + 128];
    escape_text(n_args ? args[0] : "", esc, sizeof esc);
    pthread_mutex_lock(&sd->lock);
    bool takes = sd->has_actions;
    bool queued =
        takes && sd->n_actions_in - sd->n_actions_out < PS_STATSD_ACTION_MAX && n_args == 1;
    if (queued) {
        ps_statsd_action_t *a = &sd->actions[sd->n_actions_in++ % PS_STATSD_ACTION_MAX];
        snprintf(a->verb, sizeof a->verb, "%s", cmd->words);
        snprintf(a->arg, sizeof a->arg, "%s", args[0]);
    }
    pthread_mutex_unlock(&sd->lock);
    if (queued)
        snprintf(out, sizeof out, "ok: %s of '%s' requested (the server log says what was done)\n",
                 cmd->words, esc);
    else
        snprintf(out, sizeof out, "error: %s\n",
                 !takes ? "this process takes no such command" : "too many requests queued");
    return strdup(out);
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
static char *answer_body(ps_statsd_t *sd, char *line, bool is_unix)
{
    char *words[8], *save = NULL;
    int n = 0;
    for (char *w = strtok_r(line, " \t", &save); w && n < 8; w = strtok_r(NULL, " \t", &save))
        words[n++] = w;
    bool is_json = n > 1 && strcmp(words[n - 1], "json") == 0;
    int n_used = 0;
    const stats_cmd_t *cmd = find_command(words, n - (is_json ? 1 : 0), &n_used);
    if (cmd && cmd->unix_only && !is_unix) {
        char msg[160];
        snprintf(msg, sizeof msg, "error: '%s' is taken on the UNIX stats socket only\n",
                 cmd->words);
        return strdup(msg);
    }
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
    char *body = answer_body(c->sd, line, c->is_unix);
    if (!body) {
        pssd_client_close(c);
        return;
    }
    size_t len = strlen(body);
    bool has_nl = len && body[len - 1] == '\n';
    char *out = realloc(body, len + 3);
    if (!out) {
        free(body);
        pssd_client_close(c);
        return;
    }
    if (!has_nl)
        out[len++] = '\n';
    out[len++] = '\n';
    pssd_client_send(c, out, len);
    free(out);
}

/* After the client's EOF: once every complete line is answered and the
 * replies are on the wire, shut down and close. */
static void line_finish(client_t *c)
{
    if (c->is_closing || c->queued_bytes || memchr(c->buf, '\n', c->len))
        return;
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, &c->h.stream, pssd_on_shutdown) != 0)
        pssd_client_close(c);
    c->is_done = true; /* a partial last line has no answer; shut down only once */
}

/* Answers every complete line in the buffer while the client's replies fit
 * under max_queued_bytes; reads on only while they do. */
void pssd_line_process(client_t *c)
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
            pssd_client_send(c, msg, sizeof msg - 1);
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
        c->is_reading = uv_read_start(&c->h.stream, pssd_on_alloc, pssd_on_read) == 0;
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
    uv_timer_start(&c->timer, pssd_on_timeout, (uint64_t)c->sd->opts.http_timeout_ms, 0);
    pssd_client_send(c, head, (size_t)h);
    if (!is_head && !c->is_closing)
        pssd_client_send(c, body, blen);
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
        pssd_client_close(c);
        return;
    }
    http_reply(c, "200 OK", "", body, is_head);
    free(body);
}

void pssd_http_process(client_t *c)
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
