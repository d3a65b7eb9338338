/* ps_statsd_int.h - the stats thread's structs, for common/ps_statsd*.c
 * only (private prefix pssd_): ps_statsd.c holds the clients' lifetime,
 * writing with backpressure, accepting and the thread; ps_statsd_cmd.c the
 * line protocol's command table and HTTP's GET /metrics. Stats thread
 * only, but for the sections, which publish swaps under the lock. */
#ifndef PS_STATSD_INT_H
#define PS_STATSD_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <uv.h>

#include "ps_statsd.h"

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
    bool has_actions; /* the daemon takes actions (ps_statsd_enable_actions) */
    ps_statsd_action_t actions[PS_STATSD_ACTION_MAX]; /* a ring, under lock */
    unsigned n_actions_in, n_actions_out;
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
    bool is_unix;           /* came over the UNIX socket (may send actions) */
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

/* Closes both of c's handles; it is freed once both close callbacks ran. */
void pssd_client_close(client_t *c);
/* Resets c's idle timer: it made progress. */
void pssd_touch(client_t *c);
/* Queues len bytes of data to c (copied), counting them against its
 * write limit (reading stops over it). */
void pssd_client_send(client_t *c, const char *data, size_t len);
/* Answers every complete line in c's buffer (line protocol). */
void pssd_line_process(client_t *c);
/* Answers c's request once its head is complete (HTTP). */
void pssd_http_process(client_t *c);
/* libuv callbacks: a shutdown finished (then close), a client made no
 * progress in time (close). */
void pssd_on_shutdown(uv_shutdown_t *req, int status);
void pssd_on_timeout(uv_timer_t *t);
/* libuv's read callbacks for every client. */
void pssd_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
void pssd_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

#endif
