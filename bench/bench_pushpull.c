/* bench_pushpull.c - push+pull bytes/s of ps against a raw ZeroMQ
 * DEALER/ROUTER round trip carrying the same bytes, both measured here, in
 * this run, over TCP on 127.0.0.1.
 *   raw: the client sends n bytes (zero-copy), a ROUTER thread sends the very
 *        frame it received straight back (no copy), the client receives it.
 *   ps:  one worker, PUSH_PULL rounds of a dense fp32 tensor of n bytes
 *        against the server core (ASP, SGD); the reply carries n bytes.
 * Also 2 workers x 2 shards (threads) against 2 raw echo servers.
 *
 * The two are measured in alternating slices of SLICE_S seconds (raw, ps,
 * raw, ps, ...) with every connection open all along, so a shared machine's
 * slow moments hit both alike and the ratio stays put while the absolute
 * figures drift.
 * The ps client never takes the same-host path here (the baseline is TCP),
 * and the process keeps freed buffers as ps-server and ps-worker do.
 * Usage: bench_pushpull [--quick] [--seconds S] [--bytes N] [--slice-elems E]
 * Prints JSON lines. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "ps_client.h"
#include "ps_log.h"
#include "ps_proc.h"
#include "ps_test_server.h"
#include "ps_time.h"

#define SLICE_S 0.025

static double seconds = 2.0;
/* ps-worker's default slice_elems: the worker cuts a tensor into tables of
 * at most this many floats, pushed as separate requests, so the shard's
 * work on one overlaps the transfer of the next; 0 = one table */
static size_t slice_elems = 32768;

/* ---- raw ZeroMQ echo ---- */
typedef struct {
    void *ctx, *router;
    char endpoint[128];
    pthread_t thread;
} echo_t;

static void *echo_run(void *arg)
{
    echo_t *e = arg;
    for (;;) {
        zmq_msg_t id, body;
        zmq_msg_init(&id);
        zmq_msg_init(&body);
        if (zmq_msg_recv(&id, e->router, 0) < 0 || zmq_msg_recv(&body, e->router, 0) < 0)
            break; /* context terminated */
        zmq_msg_send(&id, e->router, ZMQ_SNDMORE);
        zmq_msg_send(&body, e->router, 0);
    }
    return NULL;
}

static void echo_start(echo_t *e)
{
    e->ctx = zmq_ctx_new();
    e->router = zmq_socket(e->ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(e->router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_bind(e->router, "tcp://127.0.0.1:*");
    size_t len = sizeof e->endpoint;
    zmq_getsockopt(e->router, ZMQ_LAST_ENDPOINT, e->endpoint, &len);
    pthread_create(&e->thread, NULL, echo_run, e);
}

static void echo_stop(echo_t *e)
{
    zmq_ctx_shutdown(e->ctx);
    pthread_join(e->thread, NULL);
    zmq_close(e->router);
    zmq_ctx_term(e->ctx);
}

/* ---- one worker's two connections: raw sockets and a ps client ---- */
typedef struct {
    /* in */
    echo_t *echo;
    const char *ps_endpoints;
    uint32_t rank, world, n_shards;
    size_t bytes;                /* per round, split evenly over the shards */
    pthread_barrier_t *barrier;  /* NULL for a single worker */
    /* state */
    void *ctx, *socks[2];
    char *raw_buf;
    ps_client_t *client;
    float *params, *grad;
    uint32_t n_tables;
    size_t table_elems; /* every table's length but maybe the last's */
    long ps_round;
    /* out */
    double raw_s, ps_s;
    long raw_rounds, ps_rounds;
    double raw_cpu_s, ps_cpu_s; /* CPU time of the whole process during the slices */
} worker_t;

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "bench_pushpull: %s: %s\n", what, msg);
    exit(1);
}

static void worker_open(worker_t *w)
{
    w->ctx = zmq_ctx_new();
    for (uint32_t s = 0; s < w->n_shards; s++) {
        w->socks[s] = zmq_socket(w->ctx, ZMQ_DEALER);
        int zero = 0;
        zmq_setsockopt(w->socks[s], ZMQ_LINGER, &zero, sizeof zero);
        zmq_connect(w->socks[s], w->echo[s].endpoint);
    }
    w->raw_buf = calloc(1, w->bytes);
    char job[64];
    snprintf(job, sizeof job, "pp-%zu-%u-%zu", w->bytes, w->world, slice_elems);
    ps_client_opts_t o = {.job = job, .rank = w->rank, .world = w->world, .max_staleness = -1,
                          .timeout_ms = 60000};
    ps_errbuf_t err;
    size_t n = w->bytes / sizeof(float);
    w->params = calloc(n, sizeof(float));
    w->grad = calloc(n, sizeof(float));
    w->table_elems = slice_elems && slice_elems < n ? slice_elems : n;
    w->n_tables = (uint32_t)((n + w->table_elems - 1) / w->table_elems);
    ps_optim_spec_t sgd = {.kind = PS_OPTIM_SGD, .lr = 1e-3};
    w->client = ps_client_new(w->ps_endpoints, &o, &err);
    /* the baseline is a TCP echo: so is what it is compared with (the
     * in-process shards would otherwise take the same-host path) */
    if (w->client)
        ps_client_set_same_host(w->client, false);
    if (!w->client || ps_client_hello(w->client, NULL, &err))
        die("ps client", err.msg);
    for (uint32_t t = 0; t < w->n_tables; t++) {
        size_t off = (size_t)t * w->table_elems;
        uint64_t shape[1] = {n - off < w->table_elems ? n - off : w->table_elems};
        char name[32];
        snprintf(name, sizeof name, "t%u", t);
        if (ps_client_init_table(w->client, t, name, shape, 1, &sgd, w->params + off, &err))
            die("ps client", err.msg);
    }
}

static void worker_close(worker_t *w)
{
    ps_errbuf_t err;
    ps_client_bye(w->client, &err);
    ps_client_destroy(&w->client);
    for (uint32_t s = 0; s < w->n_shards; s++)
        zmq_close(w->socks[s]);
    zmq_ctx_term(w->ctx);
    free(w->raw_buf);
    free(w->params);
    free(w->grad);
}

static void raw_round(worker_t *w)
{
    size_t part = w->bytes / w->n_shards;
    for (uint32_t s = 0; s < w->n_shards; s++) {
        zmq_msg_t m;
        zmq_msg_init_data(&m, w->raw_buf + (size_t)s * part, part, NULL, NULL);
        if (zmq_msg_send(&m, w->socks[s], 0) < 0)
            die("raw send", zmq_strerror(zmq_errno()));
    }
    for (uint32_t s = 0; s < w->n_shards; s++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, w->socks[s], 0) < 0)
            die("raw recv", zmq_strerror(zmq_errno()));
        zmq_msg_close(&m);
    }
}

static void ps_round(worker_t *w)
{
    ps_errbuf_t err;
    for (uint32_t t = 0; t < w->n_tables; t++) {
        size_t off = (size_t)t * w->table_elems;
        ps_client_push_pull(w->client, t, w->ps_round, w->grad + off, 1, 1.0f, 0,
                            w->params + off);
    }
    if (ps_client_wait(w->client, &err) != PS_OK)
        die("ps round", err.msg);
    w->ps_round++;
}

static double process_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Rounds of one kind for SLICE_S seconds (at least one round). */
static void run_slice(worker_t *w, void (*round)(worker_t *), double *secs, long *rounds,
                      double *cpu)
{
    double t0 = ps_time_wall_s(), c0 = process_cpu_s(), t;
    do {
        round(w);
        (*rounds)++;
        t = ps_time_wall_s() - t0;
    } while (t < SLICE_S);
    *secs += t;
    *cpu += process_cpu_s() - c0;
}

static void sync_workers(worker_t *w)
{
    if (w->barrier)
        pthread_barrier_wait(w->barrier);
}

static void *worker_run(void *arg)
{
    worker_t *w = arg;
    worker_open(w);
    raw_round(w); /* warm both paths up: connections, first allocations */
    ps_round(w);
    int slices = (int)(seconds / SLICE_S / 2);
    slices = slices < 2 ? 2 : slices;
    for (int i = 0; i < slices; i++) {
        sync_workers(w);
        run_slice(w, raw_round, &w->raw_s, &w->raw_rounds, &w->raw_cpu_s);
        sync_workers(w);
        run_slice(w, ps_round, &w->ps_s, &w->ps_rounds, &w->ps_cpu_s);
    }
    worker_close(w);
    return NULL;
}

/* ratio: bytes/s of ps over raw. cpu_per_byte_vs_raw: CPU time the process
 * spent per byte moved, ps over raw (rank 0's slices; the workers run the
 * same phase at once): above 1 where ps does work the echo does not. */
static void report(const char *setup, size_t bytes, const worker_t *w, int n)
{
    double ps = 0, raw = 0, ps_bytes = 0, raw_bytes = 0;
    for (int i = 0; i < n; i++) {
        ps += (double)bytes * (double)w[i].ps_rounds / w[i].ps_s;
        raw += (double)bytes * (double)w[i].raw_rounds / w[i].raw_s;
        ps_bytes += (double)bytes * (double)w[i].ps_rounds * (w[0].ps_s / w[i].ps_s);
        raw_bytes += (double)bytes * (double)w[i].raw_rounds * (w[0].raw_s / w[i].raw_s);
    }
    double cpu = (w[0].ps_cpu_s / ps_bytes) / (w[0].raw_cpu_s / raw_bytes);
    printf("{\"bench\":\"push_pull\",\"setup\":\"%s\",\"bytes\":%zu,\"slice_elems\":%zu,"
           "\"ps_bytes_per_s\":%.4g,"
           "\"baseline\":\"raw_zmq\",\"baseline_bytes_per_s\":%.4g,\"ratio\":%.3f,"
           "\"cpu_per_byte_vs_raw\":%.3f}\n",
           setup, bytes, slice_elems, ps, raw, ps / raw, cpu);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int quick = 0;
    size_t only = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1, seconds = 0.1;
        else if (strcmp(argv[i], "--bytes") == 0 && i + 1 < argc)
            only = (size_t)atoll(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--slice-elems") == 0 && i + 1 < argc)
            slice_elems = (size_t)atoll(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_pushpull [--quick] [--seconds S] [--bytes N] "
                            "[--slice-elems E]\n"
                            "  S: seconds of each of raw and ps per size (default 2)\n"
                            "  N: only this tensor size in bytes (65536, 1048576, 4194304, 16777216)\n"
                            "  E: floats per table the tensor is cut into, as ps-worker's\n"
                            "     slice_elems (default 32768; 0 = one table)\n");
            return 2;
        }
    }
    ps_log_init("bench", PS_LOG_ERROR);
    /* as ps-server and ps-worker do at start; the raw echo, in this same
     * process, gets the same allocator */
    ps_proc_keep_buffers();
    static const size_t sizes[] = {64 << 10, 1 << 20, 4 << 20, 16 << 20};
    int n_sizes = quick ? 2 : 4;

    echo_t echo[2];
    ps_test_server_t srv[2];
    echo_start(&echo[0]);
    echo_start(&echo[1]);
    if (ps_test_server_start(&srv[0], 0, 1) != 0)
        return 1;
    for (int i = 0; i < n_sizes; i++) {
        if (only && sizes[i] != only)
            continue;
        worker_t w = {.echo = echo, .ps_endpoints = ps_server_endpoint(srv[0].srv), .rank = 0,
                      .world = 1, .n_shards = 1, .bytes = sizes[i]};
        worker_run(&w);
        report("1 worker x 1 shard", sizes[i], &w, 1);
    }
    ps_test_server_stop(&srv[0]);

    /* 2 workers x 2 shards: each worker moves `bytes`, half to each shard */
    if (ps_test_server_start(&srv[0], 0, 2) != 0 || ps_test_server_start(&srv[1], 1, 2) != 0)
        return 1;
    char eps[512];
    snprintf(eps, sizeof eps, "%s,%s", ps_server_endpoint(srv[0].srv), ps_server_endpoint(srv[1].srv));
    for (int i = 1; i < n_sizes; i++) {
        if (only && sizes[i] != only)
            continue;
        pthread_barrier_t barrier;
        pthread_barrier_init(&barrier, NULL, 2);
        pthread_t th[2];
        worker_t w[2];
        for (uint32_t r = 0; r < 2; r++) {
            w[r] = (worker_t){.echo = echo, .ps_endpoints = eps, .rank = r, .world = 2,
                              .n_shards = 2, .bytes = sizes[i], .barrier = &barrier};
            pthread_create(&th[r], NULL, worker_run, &w[r]);
        }
        for (int r = 0; r < 2; r++)
            pthread_join(th[r], NULL);
        pthread_barrier_destroy(&barrier);
        report("2 workers x 2 shards", sizes[i], w, 2);
    }
    ps_test_server_stop(&srv[0]);
    ps_test_server_stop(&srv[1]);
    echo_stop(&echo[0]);
    echo_stop(&echo[1]);
    return 0;
}
