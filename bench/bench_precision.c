/* bench_precision.c - push+pull throughput in parameters/s for fp32, fp16
 * and bf16 on the wire (one worker, one shard over TCP on 127.0.0.1, server
 * core on a thread of this process), and conversion throughput against
 * memcpy of the same fp32 bytes. Every figure is a ratio to a baseline
 * measured in the same run. Prints JSON lines.
 * Usage: bench_precision [--quick] [--seconds S] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_client.h"
#include "ps_half.h"
#include "ps_log.h"
#include "ps_test_server.h"
#include "ps_time.h"

static const char *dtype_name[] = {"fp32", "fp16", "bf16"};

/* Round trips of n params per second for one dtype. */
static double push_pull_rate(ps_test_server_t *ts, size_t n, int dtype, double seconds)
{
    char job[64];
    snprintf(job, sizeof job, "bench-%zu-%d", n, dtype);
    ps_client_opts_t o = {.job = job, .world = 1, .max_staleness = -1, .timeout_ms = 60000, .dtype = dtype};
    ps_errbuf_t err;
    ps_client_t *c = ps_client_new(ps_server_endpoint(ts->srv), &o, &err);
    float *params = calloc(n, sizeof(float)), *grad = calloc(n, sizeof(float));
    for (size_t i = 0; i < n; i++)
        grad[i] = (float)(i % 100) * 1e-3f;
    uint64_t shape[1] = {n};
    ps_optim_spec_t sgd = {.kind = PS_OPTIM_SGD, .lr = 1e-3};
    if (!c || ps_client_hello(c, NULL, &err) || ps_client_init_table(c, 0, "t", shape, 1, &sgd, params, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    int64_t clock = 0;
    double t0 = ps_time_wall_s(), t;
    do {
        ps_client_push_pull(c, 0, clock, grad, 1, 1.0f, 0, params);
        if (ps_client_wait(c, &err) != PS_OK) {
            fprintf(stderr, "bench: %s\n", err.msg);
            exit(1);
        }
        clock++;
        t = ps_time_wall_s() - t0;
    } while (t < seconds || clock < 3);
    ps_client_bye(c, &err);
    ps_client_destroy(&c);
    free(params);
    free(grad);
    return (double)n * (double)clock / t;
}

static double gbps(void (*fn)(const void *, void *, size_t), const void *src, void *dst, size_t n,
                   double seconds)
{
    int reps = 0;
    double t0 = ps_time_wall_s(), t;
    do {
        fn(src, dst, n);
        reps++;
        t = ps_time_wall_s() - t0;
    } while (t < seconds || reps < 3);
    return (double)n * 4.0 * reps / t / 1e9; /* fp32-side bytes */
}

static void do_memcpy(const void *s, void *d, size_t n) { memcpy(d, s, n * 4); }
static void do_to_f16(const void *s, void *d, size_t n) { ps_f32_to_f16_n(s, d, n); }
static void do_from_f16(const void *s, void *d, size_t n) { ps_f16_to_f32_n(s, d, n); }
static void do_to_bf16(const void *s, void *d, size_t n) { ps_f32_to_bf16_n(s, d, n); }
static void do_from_bf16(const void *s, void *d, size_t n) { ps_bf16_to_f32_n(s, d, n); }

int main(int argc, char **argv)
{
    double seconds = 1.0;
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1, seconds = 0.05;
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_precision [--quick] [--seconds S]\n");
            return 2;
        }
    }
    ps_log_init("bench", PS_LOG_ERROR);
    ps_test_server_t ts;
    if (ps_test_server_start(&ts, 0, 1) != 0)
        return 1;
    static const size_t sizes[] = {1 << 16, 1 << 18, 1 << 20, 1 << 22, 1 << 24};
    size_t n_sizes = quick ? 2 : 5;
    for (size_t s = 0; s < n_sizes; s++) {
        double base = push_pull_rate(&ts, sizes[s], 0, seconds);
        printf("{\"bench\":\"push_pull\",\"dtype\":\"fp32\",\"params\":%zu,\"params_per_s\":%.4g,"
               "\"baseline\":\"fp32\",\"ratio\":1}\n", sizes[s], base);
        for (int d = 1; d <= 2; d++) {
            double r = push_pull_rate(&ts, sizes[s], d, seconds);
            printf("{\"bench\":\"push_pull\",\"dtype\":\"%s\",\"params\":%zu,\"params_per_s\":%.4g,"
                   "\"baseline\":\"fp32\",\"ratio\":%.3f}\n", dtype_name[d], sizes[s], r, r / base);
        }
        fflush(stdout);
    }
    ps_test_server_stop(&ts);

    size_t n = quick ? 1 << 16 : 1 << 22;
    float *f = malloc(n * 4), *g = malloc(n * 4);
    uint16_t *h = malloc(n * 2);
    for (size_t i = 0; i < n; i++)
        f[i] = (float)i * 1e-3f - 100.0f;
    double mc = gbps(do_memcpy, f, g, n, seconds);
    struct { const char *name; void (*fn)(const void *, void *, size_t); int from_half; } conv[] = {
        {"f32_to_f16", do_to_f16, 0}, {"f16_to_f32", do_from_f16, 1},
        {"f32_to_bf16", do_to_bf16, 0}, {"bf16_to_f32", do_from_bf16, 1},
    };
    printf("{\"bench\":\"convert\",\"op\":\"memcpy\",\"elems\":%zu,\"gb_per_s\":%.3f,\"ratio\":1}\n", n, mc);
    for (int k = 0; k < 2; k++) {
        ps_half_force_scalar(k);
        for (int i = 0; i < 4; i++) {
            double r = conv[i].from_half ? gbps(conv[i].fn, h, g, n, seconds)
                                         : gbps(conv[i].fn, f, h, n, seconds);
            printf("{\"bench\":\"convert\",\"op\":\"%s\",\"path\":\"%s\",\"elems\":%zu,"
                   "\"gb_per_s\":%.3f,\"baseline\":\"memcpy\",\"ratio\":%.3f}\n",
                   conv[i].name, k ? "scalar" : ps_half_paths(), n, r, r / mc);
        }
    }
    free(f);
    free(g);
    free(h);
    return 0;
}
