/* bench_pushpull.c - push+pull bytes/s of ps against a raw ZeroMQ
 * DEALER/ROUTER round trip carrying the same bytes, both measured here, in
 * this run, over TCP on 127.0.0.1.
 *   raw: the client sends n bytes (zero-copy), a ROUTER thread sends the very
 *        frame it received straight back (no copy), the client receives it.
 *   ps:  one worker, PUSH_PULL rounds of a dense fp32 tensor of n bytes
 *        against the server core (ASP, SGD); the reply carries n bytes.
 * Also 2 workers x 2 shards (threads) against 2 raw echo servers.
 * Usage: bench_pushpull [--quick] [--seconds S] [--bytes N]   Prints JSON lines. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "ps_client.h"
#include "ps_log.h"
#include "ps_test_server.h"
#include "ps_time.h"

static double seconds = 1.0;

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

/* Round trips of `bytes` split over n_servers echo servers; returns bytes/s
 * (one direction). */
static double raw_rate(echo_t *servers, int n_servers, size_t bytes)
{
    void *ctx = zmq_ctx_new();
    void *socks[4];
    for (int s = 0; s < n_servers; s++) {
        socks[s] = zmq_socket(ctx, ZMQ_DEALER);
        zmq_connect(socks[s], servers[s].endpoint);
    }
    char *buf = calloc(1, bytes);
    size_t part = bytes / (size_t)n_servers;
    long rounds = 0;
    double t0 = ps_time_wall_s(), t;
    do {
        for (int s = 0; s < n_servers; s++) {
            zmq_msg_t m;
            zmq_msg_init_data(&m, buf + (size_t)s * part, part, NULL, NULL);
            zmq_msg_send(&m, socks[s], 0);
        }
        for (int s = 0; s < n_servers; s++) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            zmq_msg_recv(&m, socks[s], 0);
            zmq_msg_close(&m);
        }
        rounds++;
        t = ps_time_wall_s() - t0;
    } while (t < seconds || rounds < 3);
    for (int s = 0; s < n_servers; s++) {
        int zero = 0;
        zmq_setsockopt(socks[s], ZMQ_LINGER, &zero, sizeof zero);
        zmq_close(socks[s]);
    }
    zmq_ctx_term(ctx);
    free(buf);
    return (double)bytes * (double)rounds / t;
}

/* ---- ps ---- */
typedef struct {
    const char *endpoints;
    uint32_t rank, world;
    size_t n;
    double rate;
} ps_run_t;

static void *ps_run(void *arg)
{
    ps_run_t *r = arg;
    char job[64];
    snprintf(job, sizeof job, "pp-%zu-%u", r->n, r->world);
    ps_client_opts_t o = {.job = job, .rank = r->rank, .world = r->world, .max_staleness = -1, .timeout_ms = 60000};
    ps_errbuf_t err;
    ps_client_t *c = ps_client_new(r->endpoints, &o, &err);
    float *params = calloc(r->n, sizeof(float)), *grad = calloc(r->n, sizeof(float));
    uint64_t shape[1] = {r->n};
    ps_optim_spec_t sgd = {.kind = PS_OPTIM_SGD, .lr = 1e-3};
    if (!c || ps_client_hello(c, NULL, &err) || ps_client_init_table(c, 0, "t", shape, 1, &sgd, params, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    long rounds = 0;
    double t0 = ps_time_wall_s(), t;
    do {
        ps_client_push_pull(c, 0, rounds, grad, 1, 1.0f, 0, params);
        if (ps_client_wait(c, &err) != PS_OK) {
            fprintf(stderr, "bench: %s\n", err.msg);
            exit(1);
        }
        rounds++;
        t = ps_time_wall_s() - t0;
    } while (t < seconds || rounds < 3);
    ps_client_bye(c, &err);
    ps_client_destroy(&c);
    free(params);
    free(grad);
    r->rate = (double)r->n * sizeof(float) * (double)rounds / t;
    return NULL;
}

typedef struct {
    echo_t *servers;
    size_t bytes;
    double rate;
} raw_arg_t;

static void *raw_thread(void *arg)
{
    raw_arg_t *a = arg;
    a->rate = raw_rate(a->servers, 2, a->bytes);
    return NULL;
}

static void report(const char *setup, size_t bytes, double ps, double raw)
{
    printf("{\"bench\":\"push_pull\",\"setup\":\"%s\",\"bytes\":%zu,\"ps_bytes_per_s\":%.4g,"
           "\"baseline\":\"raw_zmq\",\"baseline_bytes_per_s\":%.4g,\"ratio\":%.3f}\n",
           setup, bytes, ps, raw, ps / raw);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int quick = 0;
    size_t only = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1, seconds = 0.05;
        else if (strcmp(argv[i], "--bytes") == 0 && i + 1 < argc)
            only = (size_t)atoll(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_pushpull [--quick] [--seconds S] [--bytes N]\n");
            return 2;
        }
    }
    ps_log_init("bench", PS_LOG_ERROR);
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
        double raw = raw_rate(echo, 1, sizes[i]);
        ps_run_t r = {ps_server_endpoint(srv[0].srv), 0, 1, sizes[i] / 4, 0};
        ps_run(&r);
        report("1 worker x 1 shard", sizes[i], r.rate, raw);
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
        pthread_t th[2];
        raw_arg_t ra[2] = {{echo, sizes[i], 0}, {echo, sizes[i], 0}};
        for (int w = 0; w < 2; w++)
            pthread_create(&th[w], NULL, raw_thread, &ra[w]);
        for (int w = 0; w < 2; w++)
            pthread_join(th[w], NULL);
        ps_run_t r[2] = {{eps, 0, 2, sizes[i] / 4, 0}, {eps, 1, 2, sizes[i] / 4, 0}};
        for (int w = 0; w < 2; w++)
            pthread_create(&th[w], NULL, ps_run, &r[w]);
        for (int w = 0; w < 2; w++)
            pthread_join(th[w], NULL);
        report("2 workers x 2 shards", sizes[i], r[0].rate + r[1].rate, ra[0].rate + ra[1].rate);
    }
    ps_test_server_stop(&srv[0]);
    ps_test_server_stop(&srv[1]);
    echo_stop(&echo[0]);
    echo_stop(&echo[1]);
    return 0;
}
