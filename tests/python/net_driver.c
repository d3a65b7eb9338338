/* net_driver.c - runs a ps_net for the PyTorch comparison and the speed
 * benchmark (tests/python/test_net_torch.py, bench/run_layers_vs_torch.sh).
 *
 *   net_driver dump DIR MODEL [--batch B] [--seed S]
 *     builds MODEL, initialises it from S (then moves every parameter by
 *     0.02 N(0,1), so biases and gains are not at their init), makes a batch,
 *     runs train_batch once and writes into DIR: tables.txt (one line per
 *     table: name ndim dims...), p<i>.npy and g<i>.npy (parameters and
 *     gradients of table i), x.npy, y.npy, out.npy (the logits), loss.txt.
 *   net_driver bench MODEL [--batch B] [--steps N]
 *     times N train_batch calls after 3 warm-up ones; prints one JSON line.
 *   net_driver init DIR MODEL [--seed S]
 *     writes the tables as the trainer starts them (ps_net_init_params of
 *     the job seed) as DIR/NAME.npy: a baseline can start from them.
 *   net_driver order N SEED EPOCH OUT.npy
 *     writes the trainer's order of N samples (or text windows) in EPOCH
 *     (1-based) of a job seeded SEED, as float32 indices (exact below 2^24).
 *   net_driver run MODEL_DIR X.npy OUT.npy
 *     loads an exported model (ps_export_load), runs forward (dropout off)
 *     on the rows of X.npy (b x the input's row length) and writes the
 *     logits (b x the output's floats) to OUT.npy.
 *
 * MODEL is --spec INPUT LAYERS or --gpt N_LAYER,N_HEAD,N_EMBD,BLOCK_SIZE. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ps_export.h"
#include "ps_net.h"
#include "ps_npy.h"
#include "ps_rng.h"

typedef struct {
    const char *mode, *dir, *input, *layers;
    ps_gpt_config_t gpt;
    int is_gpt;
    size_t batch, steps;
    uint64_t seed;
} args_t;

static int usage(void)
{
    fprintf(stderr, "usage: net_driver dump DIR MODEL [--batch B] [--seed S]\n"
                    "       net_driver bench MODEL [--batch B] [--steps N]\n"
                    "       net_driver init DIR MODEL [--seed S]\n"
                    "       net_driver order N SEED EPOCH OUT.npy\n"
                    "       net_driver run MODEL_DIR X.npy OUT.npy\n"
                    "MODEL: --spec INPUT LAYERS | --gpt N_LAYER,N_HEAD,N_EMBD,BLOCK_SIZE\n");
    return 2;
}

static int parse_args(int argc, char **argv, args_t *a)
{
    memset(a, 0, sizeof *a);
    a->batch = 8, a->steps = 20, a->seed = 1;
    if (argc < 2)
        return -1;
    a->mode = argv[1];
    int i = 2;
    if (strcmp(a->mode, "dump") == 0 || strcmp(a->mode, "init") == 0) {
        if (argc < 3)
            return -1;
        a->dir = argv[i++];
    } else if (strcmp(a->mode, "bench") != 0) {
        return -1;
    }
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--spec") == 0 && i + 2 < argc) {
            a->input = argv[++i];
            a->layers = argv[++i];
        } else if (strcmp(argv[i], "--gpt") == 0 && i + 1 < argc) {
            ps_gpt_config_t *g = &a->gpt;
            if (sscanf(argv[++i], "%u,%u,%u,%u", &g->n_layer, &g->n_head, &g->n_embd,
                       &g->block_size) != 4)
                return -1;
            a->is_gpt = 1;
        } else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
            a->batch = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) {
            a->steps = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            a->seed = strtoull(argv[++i], NULL, 10);
        } else {
            return -1;
        }
    }
    return a->batch > 0 && (a->is_gpt || a->layers) ? 0 : -1;
}

static ps_net_t *build(const args_t *a)
{
    ps_netspec_t spec;
    ps_errbuf_t err = {0};
    ps_net_t *net = NULL;
    int rc = a->is_gpt ? ps_netspec_gpt(&a->gpt, &spec, &err)
                       : ps_netspec_parse(a->input, a->layers, &spec, &err);
    if (rc == PS_OK)
        net = ps_net_new(&spec, a->batch, 0, &err);
    ps_netspec_fini(&spec);
    if (!net)
        fprintf(stderr, "net_driver: %s\n", err.msg);
    return net;
}

static void make_batch(ps_net_t *net, uint64_t seed, size_t b, float *x, float *y)
{
    ps_rng_t rng;
    ps_rng_seed(&rng, ps_rng_mix(seed, 99));
    size_t d = ps_net_input_len(net);
    int tokens = ps_net_input_shape(net).kind == PS_SHAPE_TOKENS;
    ps_shape_t out = ps_net_output_shape(net);
    for (size_t i = 0; i < b * d; i++)
        x[i] = tokens ? (float)ps_rng_below(&rng, PS_GPT_VOCAB) : (float)ps_rng_normal(&rng);
    for (size_t i = 0; i < b; i++)
        y[i] = ps_net_task(net) == PS_NET_REGRESSOR ? (float)ps_rng_normal(&rng)
               : out.d[0] > 1                       ? (float)ps_rng_below(&rng, out.d[0])
                                                    : (float)ps_rng_below(&rng, 2);
}

static int write_npy(const char *dir, const char *name, const float *v, const uint64_t *shape,
                     int ndim)
{
    char path[4096];
    ps_errbuf_t err;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (ps_npy_write(path, v, shape, ndim, &err) != PS_OK) {
        fprintf(stderr, "net_driver: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int dump(ps_net_t *net, const args_t *a, const float *x, const float *y)
{
    ps_rng_t rng;
    ps_rng_seed(&rng, ps_rng_mix(a->seed, 7));
    for (uint32_t t = 0; t < ps_net_n_tables(net); t++)
        for (uint64_t i = 0; i < ps_net_table_len(net, t); i++)
            ps_net_params(net, t)[i] += (float)(0.02 * ps_rng_normal(&rng));
    double loss = ps_net_train_batch(net, x, y, a->batch, NULL, NULL, NULL);
    char path[4096], name[64];
    snprintf(path, sizeof path, "%s/tables.txt", a->dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int rc = 0;
    for (uint32_t t = 0; t < ps_net_n_tables(net) && rc == 0; t++) {
        uint64_t shape[PS_TABLE_MAX_DIMS];
        int nd = ps_net_table_shape(net, t, shape);
        fprintf(f, "%s %d", ps_net_table_name(net, t, name, sizeof name), nd);
        for (int k = 0; k < nd; k++)
            fprintf(f, " %llu", (unsigned long long)shape[k]);
        fprintf(f, "\n");
        snprintf(name, sizeof name, "p%u.npy", t);
        rc = write_npy(a->dir, name, ps_net_params(net, t), shape, nd);
        snprintf(name, sizeof name, "g%u.npy", t);
        rc = rc ? rc : write_npy(a->dir, name, ps_net_grads(net, t), shape, nd);
    }
    fclose(f);
    uint64_t xs[2] = {a->batch, ps_net_input_len(net)}, ys[1] = {a->batch};
    uint64_t os[2] = {a->batch, ps_shape_len(ps_net_output_shape(net))};
    rc = rc ? rc : write_npy(a->dir, "x.npy", x, xs, 2);
    rc = rc ? rc : write_npy(a->dir, "y.npy", y, ys, 1);
    rc = rc ? rc : write_npy(a->dir, "out.npy", ps_net_output(net), os, 2);
    snprintf(path, sizeof path, "%s/loss.txt", a->dir);
    if (rc == 0 && (f = fopen(path, "w"))) {
        fprintf(f, "%.17g\n", loss);
        fclose(f);
    }
    return rc;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void bench(ps_net_t *net, const args_t *a, const float *x, const float *y)
{
    ps_net_init_params(net, a->seed);
    for (int i = 0; i < 3; i++)
        ps_net_train_batch(net, x, y, a->batch, NULL, NULL, NULL);
    double t0 = now_s(), loss = 0;
    for (size_t i = 0; i < a->steps; i++)
        loss += ps_net_train_batch(net, x, y, a->batch, NULL, NULL, NULL);
    double ms = (now_s() - t0) * 1e3 / (double)a->steps;
    printf("{\"impl\":\"ps\",\"batch\":%zu,\"steps\":%zu,\"ms_per_step\":%.3f,\"params\":%llu,"
           "\"loss\":%.6f}\n",
           a->batch, a->steps, ms, (unsigned long long)ps_net_n_params(net),
           loss / (double)a->steps);
}

static int run_export(const char *dir, const char *x_path, const char *out_path)
{
    ps_errbuf_t err;
    float *x = NULL;
    uint64_t shape[PS_NPY_MAX_DIMS];
    int ndim;
    if (ps_npy_read(x_path, &x, shape, &ndim, &err) != PS_OK || ndim != 2) {
        fprintf(stderr, "net_driver: %s\n", x ? "X.npy must be 2-D" : err.msg);
        free(x);
        return 1;
    }
    size_t b = (size_t)shape[0];
    ps_net_t *net = ps_export_load(dir, b ? b : 1, NULL, &err);
    int rc = 1;
    if (!net) {
        fprintf(stderr, "net_driver: %s\n", err.msg);
    } else if (shape[1] != ps_net_input_len(net)) {
        fprintf(stderr, "net_driver: rows of %llu values, the model takes %zu\n",
                (unsigned long long)shape[1], ps_net_input_len(net));
    } else {
        float *y = calloc(b ? b : 1, sizeof(float));
        ps_net_forward(net, x, y, b, false);
        uint64_t os[2] = {b, ps_shape_len(ps_net_output_shape(net))};
        rc = ps_npy_write(out_path, ps_net_output(net), os, 2, &err) == PS_OK ? 0 : 1;
        if (rc)
            fprintf(stderr, "net_driver: %s\n", err.msg);
        free(y);
    }
    ps_net_destroy(&net);
    free(x);
    return rc;
}

/* The trainer's shuffle_epoch. */
static int write_order(uint64_t n, uint64_t seed, uint64_t epoch, const char *path)
{
    ps_errbuf_t err;
    uint32_t *idx = malloc((n ? n : 1) * sizeof *idx);
    float *f = malloc((n ? n : 1) * sizeof *f);
    ps_rng_t rng;
    ps_rng_seed(&rng, ps_rng_mix(seed, epoch));
    for (uint64_t i = 0; i < n; i++)
        idx[i] = (uint32_t)i;
    ps_rng_shuffle_u32(&rng, idx, n);
    for (uint64_t i = 0; i < n; i++)
        f[i] = (float)idx[i];
    int rc = ps_npy_write(path, f, &n, 1, &err) == PS_OK ? 0 : 1;
    if (rc)
        fprintf(stderr, "net_driver: %s\n", err.msg);
    free(idx);
    free(f);
    return rc;
}

static int write_init(ps_net_t *net, const args_t *a)
{
    ps_net_init_params(net, a->seed);
    mkdir(a->dir, 0755); /* or it exists: the first write says if not */
    for (uint32_t t = 0; t < ps_net_n_tables(net); t++) {
        char name[64], file[80];
        uint64_t shape[PS_TABLE_MAX_DIMS];
        int nd = ps_net_table_shape(net, t, shape);
        snprintf(file, sizeof file, "%s.npy", ps_net_table_name(net, t, name, sizeof name));
        if (write_npy(a->dir, file, ps_net_params(net, t), shape, nd) != 0)
            return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "run") == 0)
        return run_export(argv[2], argv[3], argv[4]);
    if (argc == 6 && strcmp(argv[1], "order") == 0)
        return write_order(strtoull(argv[2], NULL, 10), strtoull(argv[3], NULL, 10),
                           strtoull(argv[4], NULL, 10), argv[5]);
    args_t a;
    if (parse_args(argc, argv, &a) != 0)
        return usage();
    ps_net_t *net = build(&a);
    if (!net)
        return 1;
    float *x = malloc(a.batch * ps_net_input_len(net) * sizeof(float));
    float *y = malloc(a.batch * sizeof(float));
    make_batch(net, a.seed, a.batch, x, y);
    int rc = 0;
    if (strcmp(a.mode, "init") == 0) {
        rc = write_init(net, &a);
    } else if (a.dir) {
        ps_net_init_params(net, a.seed);
        rc = dump(net, &a, x, y);
    } else {
        bench(net, &a, x, y);
    }
    free(x);
    free(y);
    ps_net_destroy(&net);
    return rc ? 1 : 0;
}
