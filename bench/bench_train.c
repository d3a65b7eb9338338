/* bench_train.c - training throughput of the Fashion-MNIST MLP:
 *   baseline: one process, no server: the same ps_net forward/backward and
 *             the same ps_optim update code, applied in place;
 *   ps 1x1:   ps-launch with 1 shard and 1 worker (BSP);
 *   ps 1x2:   1 shard and 2 workers, the same per-worker batch (scaling);
 * both on the same-host path (shared regions and their doorbells, the
 * default), again with the headers over ZeroMQ (same_host_bell=no on the
 * shard) and over loopback TCP (same_host=no) for comparison.
 * All at per-worker batch 64, one BLAS thread per process, one epoch.
 * Samples/s of the distributed runs come from rank 0's epoch event (training
 * time only, like the baseline's). The seven take turns for --rounds
 * rounds; JSON lines give the medians and their ratios, and for the
 * distributed runs the cores the whole launch kept busy and the kernel's
 * share of that CPU (loopback TCP copies: what bounds them on 2 cores).
 * Usage: bench_train [--quick] [--rounds N] [--bin-dir DIR] [--config FILE] */
#include <cblas.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "ps_blas.h"
#include "ps_data.h"
#include "ps_event.h"
#include "ps_log.h"
#include "ps_net.h"
#include "ps_optim.h"
#include "ps_rng.h"
#include "ps_time.h"

extern void openblas_set_num_threads(int n);

#define FM "/usr/share/datasets/fashion-mnist"

static double baseline(size_t steps, size_t batch)
{
    ps_dataset_t ds;
    ps_errbuf_t err;
    if (ps_data_load_idx(FM "/train-images-idx3-ubyte.gz", FM "/train-labels-idx1-ubyte.gz", &ds,
                         &err) != PS_OK) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    ps_netspec_t spec;
    ps_net_t *m = NULL;
    if (ps_netspec_parse("784", "dense(256) relu dense(128) relu dense(10) cross_entropy", &spec,
                         &err) == PS_OK)
        m = ps_net_new(&spec, batch, 0, &err);
    ps_netspec_fini(&spec);
    if (!m) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    ps_net_init_params(m, 1);
    ps_optim_spec_t adam = {
        .kind = PS_OPTIM_ADAM, .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    ps_optim_t opt[6];
    for (uint32_t t = 0; t < 6; t++)
        ps_optim_init(&opt[t], &adam, ps_net_table_len(m, t));
    uint32_t *order = malloc(ds.n * sizeof *order);
    for (size_t i = 0; i < ds.n; i++)
        order[i] = (uint32_t)i;
    ps_rng_t rng;
    ps_rng_seed(&rng, 1);
    ps_rng_shuffle_u32(&rng, order, ds.n);
    float *x = malloc(batch * ds.d * sizeof(float)), *y = malloc(batch * sizeof(float));
    double t0 = ps_time_wall_s();
    for (size_t s = 0; s < steps; s++) {
        size_t start = (s * batch) % (ds.n - batch);
        ps_data_gather(&ds, order + start, batch, x, y);
        ps_net_train_batch(m, x, y, batch, NULL, NULL, NULL);
        for (uint32_t t = 0; t < 6; t++)
            ps_optim_step(&opt[t], ps_net_params(m, t), ps_net_grads(m, t), 1.0f / (float)batch);
    }
    double rate = (double)(steps * batch) / (ps_time_wall_s() - t0);
    for (uint32_t t = 0; t < 6; t++)
        ps_optim_fini(&opt[t]);
    ps_net_destroy(&m);
    ps_data_free(&ds);
    free(order);
    free(x);
    free(y);
    return rate;
}

/* CPU of the finished children (ps-launch and everything it waited for). */
static void children_cpu(double *user, double *sys)
{
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    *user = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec;
    *sys = (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

typedef struct {
    double cores; /* CPU seconds of the whole launch per wall second */
    double sys;   /* share of that CPU spent in the kernel */
} launch_cpu_t;

/* Runs ps-launch and returns rank 0's epoch samples/s; *cpu gets what the
 * launch (servers, workers, data loading included) cost in CPU. */
/* The three paths a launch may take. */
typedef enum { PATH_BELL, PATH_NO_BELL, PATH_TCP } path_t;

static double launch(const char *bin_dir, const char *config, int workers, long steps, path_t path,
                     launch_cpu_t *cpu)
{
    static const char *const args[] = {
        [PATH_BELL] = "",
        [PATH_NO_BELL] = "--server_set same_host_bell=no",
        [PATH_TCP] = "--set same_host=no",
    };
    double u0, s0, u1, s1, t0 = ps_time_wall_s();
    children_cpu(&u0, &s0);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s/ps-launch --servers 1 --workers %d --config %s --set batch_size=64 "
             "--set epochs=1 --set eval_every=0 --set max_steps=%ld --set progress_every_s=0 "
             "%s 2>/dev/null",
             bin_dir, workers, config, steps, args[path]);
    FILE *p = popen(cmd, "r");
    char line[4096];
    double rate = -1;
    while (p && fgets(line, sizeof line, p)) {
        ps_event_t ev;
        if (ps_event_parse(line, &ev) == 0 && ev.kind == PS_EVENT_EPOCH &&
            ps_event_has(&ev, PS_EF_SAMPLES_PER_S))
            rate = ps_event_num(&ev, PS_EF_SAMPLES_PER_S, -1);
        ps_event_fini(&ev);
    }
    if (!p || pclose(p) != 0 || rate < 0) {
        fprintf(stderr, "bench: '%s' failed\n", cmd);
        exit(1);
    }
    children_cpu(&u1, &s1);
    double used = (u1 - u0) + (s1 - s0);
    cpu->cores = used / (ps_time_wall_s() - t0);
    cpu->sys = used > 0 ? (s1 - s0) / used : 0;
    return rate;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    const char *bin_dir = "build/bin", *config = "deploy/examples/fashion-mlp.conf";
    long steps = 0; /* whole epoch */
    int rounds = 3;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            steps = 40, rounds = 1;
        else if (strcmp(argv[i], "--bin-dir") == 0 && i + 1 < argc)
            bin_dir = argv[++i];
        else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            config = argv[++i];
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else {
            fprintf(stderr,
                    "usage: bench_train [--quick] [--rounds N] [--bin-dir DIR] [--config FILE]\n"
                    "  N: rounds of (in-process, 1x1, 1x2, the two without doorbells, the two "
                    "over tcp), medians reported (default 3)\n");
            return 2;
        }
    }
    if (rounds < 1 || rounds > 100) {
        fprintf(stderr, "bench_train: --rounds must be 1 to 100\n");
        return 2;
    }
    ps_log_init("bench", PS_LOG_ERROR);
    /* the kernels the workers run (blas_core auto), or the baseline is the
     * generic ones on a CPU newer than OpenBLAS (Sapphire Rapids: 2.5x
     * slower sgemm); the workers inherit the choice */
    ps_blas_select("bench", PS_BLAS_CORE_AUTO, argv);
    openblas_set_num_threads(1);
    /* One epoch at batch 64 is 938 steps; --quick stops after 40 (the
     * worker still reports that partial epoch). The three setups take turns
     * so that a shared machine's slow minutes hit all of them. */
    size_t n_steps = steps ? (size_t)steps : 938;
    double base[100], one[100], two[100], cores1[100], cores2[100], sys1[100], sys2[100];
    double one_tcp[100], two_tcp[100], r1[100], r2[100], rt1[100], rt2[100];
    double one_nb[100], two_nb[100], rb1[100], rb2[100];
    for (int r = 0; r < rounds; r++) {
        launch_cpu_t c1, c2, ct;
        base[r] = baseline(n_steps, 64);
        one[r] = launch(bin_dir, config, 1, steps, PATH_BELL, &c1);
        two[r] = launch(bin_dir, config, 2, steps, PATH_BELL, &c2);
        one_nb[r] = launch(bin_dir, config, 1, steps, PATH_NO_BELL, &ct);
        two_nb[r] = launch(bin_dir, config, 2, steps, PATH_NO_BELL, &ct);
        one_tcp[r] = launch(bin_dir, config, 1, steps, PATH_TCP, &ct);
        two_tcp[r] = launch(bin_dir, config, 2, steps, PATH_TCP, &ct);
        cores1[r] = c1.cores, sys1[r] = c1.sys, cores2[r] = c2.cores, sys2[r] = c2.sys;
        /* each round's own ratios too: their spread says how much the machine moved */
        r1[r] = one[r] / base[r], r2[r] = two[r] / one[r];
        rt1[r] = one[r] / one_tcp[r], rt2[r] = two[r] / two_tcp[r];
        rb1[r] = one[r] / one_nb[r], rb2[r] = two[r] / two_nb[r];
        fprintf(stderr,
                "bench_train: round %d: in-process %.0f, 1x1 %.0f (no doorbell %.0f, tcp %.0f), "
                "1x2 %.0f (no doorbell %.0f, tcp %.0f) samples/s; 1x1/in-process %.3f, "
                "1x2/1x1 %.3f\n",
                r + 1, base[r], one[r], one_nb[r], one_tcp[r], two[r], two_nb[r], two_tcp[r], r1[r],
                r2[r]);
    }
    double b = median(base, rounds), o = median(one, rounds), t = median(two, rounds);
    double ot = median(one_tcp, rounds), tt = median(two_tcp, rounds);
    printf("{\"bench\":\"train\",\"setup\":\"in-process\",\"samples_per_s\":%.1f,\"rounds\":%d,"
           "\"ratio\":1}\n",
           b, rounds);
    /* cpu_cores: what the whole launch kept busy (of this machine's cores),
     * sys_share: how much of it the kernel took - the bound on 2 cores */
    printf("{\"bench\":\"train\",\"setup\":\"1 shard x 1 worker\",\"samples_per_s\":%.1f,"
           "\"rounds\":%d,\"baseline\":\"in-process\",\"ratio\":%.3f,\"cpu_cores\":%.2f,"
           "\"sys_share\":%.2f}\n",
           o, rounds, o / b, median(cores1, rounds), median(sys1, rounds));
    printf("{\"bench\":\"train\",\"setup\":\"1 shard x 2 workers\",\"samples_per_s\":%.1f,"
           "\"rounds\":%d,\"baseline\":\"1 shard x 1 worker\",\"ratio\":%.3f,\"cpu_cores\":%.2f,"
           "\"sys_share\":%.2f}\n",
           t, rounds, t / o, median(cores2, rounds), median(sys2, rounds));
    printf("{\"bench\":\"train\",\"setup\":\"1 shard x 1 worker, no doorbell\","
           "\"samples_per_s\":%.1f,\"rounds\":%d,\"baseline\":\"in-process\",\"ratio\":%.3f,"
           "\"doorbell_over_none\":%.3f}\n",
           median(one_nb, rounds), rounds, median(one_nb, rounds) / b, median(rb1, rounds));
    printf("{\"bench\":\"train\",\"setup\":\"1 shard x 2 workers, no doorbell\","
           "\"samples_per_s\":%.1f,\"rounds\":%d,\"baseline\":\"1 shard x 1 worker, no "
           "doorbell\",\"ratio\":%.3f,\"doorbell_over_none\":%.3f}\n",
           median(two_nb, rounds), rounds, median(two_nb, rounds) / median(one_nb, rounds),
           median(rb2, rounds));
    printf("{\"bench\":\"train\",\"setup\":\"1 shard x 1 worker, tcp\",\"samples_per_s\":%.1f,"
           "\"rounds\":%d,\"baseline\":\"in-process\",\"ratio\":%.3f,"
           "\"shared_over_tcp\":%.3f}\n",
           ot, rounds, ot / b, median(rt1, rounds));
    printf("{\"bench\":\"train\",\"setup\":\"1 shard x 2 workers, tcp\",\"samples_per_s\":%.1f,"
           "\"rounds\":%d,\"baseline\":\"1 shard x 1 worker, tcp\",\"ratio\":%.3f,"
           "\"shared_over_tcp\":%.3f}\n",
           tt, rounds, tt / ot, median(rt2, rounds));
    /* the medians of each round's own ratios (interleaved: one round's runs
     * saw the same machine) */
    printf("{\"bench\":\"train\",\"setup\":\"per-round ratios\",\"rounds\":%d,"
           "\"one_over_in_process\":%.3f,\"two_over_one\":%.3f}\n",
           rounds, median(r1, rounds), median(r2, rounds));
    return 0;
}
