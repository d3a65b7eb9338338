/* ps_datagen.c - ps-datagen: writes synthetic data sets with a known ground
 * truth, for examples and tests where no real data set fits.
 *   regression: y = x.w + b + noise, x ~ N(0, 1), heavy-tailed scales so
 *               standardisation matters
 *   binary:     label = 1 with probability sigmoid(x.w + b) */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "ps_config.h"
#include "ps_rng.h"

typedef struct {
    int kind;
    int64_t rows, test_rows, features, seed;
    double noise;
    char out[PS_OPT_STR_MAX], test_out[PS_OPT_STR_MAX];
} gen_config_t;

static const ps_opt_t gen_opts[] = {
    PS_OPT_ENUM("kind", gen_config_t, kind, "regression", "regression|binary", "what to generate"),
    PS_OPT_INT("rows", gen_config_t, rows, "10000", 1, 1LL << 32, "training rows"),
    PS_OPT_INT("test_rows", gen_config_t, test_rows, "2000", 0, 1LL << 32, "test rows"),
    PS_OPT_INT("features", gen_config_t, features, "20", 1, 1 << 20, "features per row"),
    PS_OPT_INT("seed", gen_config_t, seed, "7", 0, 1LL << 62, "random seed"),
    PS_OPT_DBL("noise", gen_config_t, noise, "0.5", 0, 1e6, "regression: noise std"),
    PS_OPT_STR("out", gen_config_t, out, "train.csv", "training CSV"),
    PS_OPT_STR("test_out", gen_config_t, test_out, "test.csv", "test CSV"),
};

static const ps_optset_t gen_optset = {
    "ps-datagen",
    "Usage: ps-datagen [--kind regression|binary] [--rows N] [--out FILE] ...\n"
    "Writes a synthetic CSV data set (features..., label; header line first)\n"
    "drawn from a known model, and prints that model as JSON on stdout.",
    gen_opts,
    sizeof gen_opts / sizeof gen_opts[0],
};

static int write_set(const gen_config_t *c, const char *path, int64_t rows, const double *w,
                     double b, const double *scale, ps_rng_t *rng)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "ps-datagen: cannot write '%s': %s\n", path, strerror(errno));
        return -1;
    }
    for (int64_t j = 0; j < c->features; j++)
        fprintf(f, "x%lld,", (long long)j);
    fprintf(f, "y\n");
    for (int64_t i = 0; i < rows; i++) {
        double dot = b;
        for (int64_t j = 0; j < c->features; j++) {
            double x = ps_rng_normal(rng) * scale[j];
            dot += x * w[j];
            fprintf(f, "%.6g,", x);
        }
        if (c->kind == 0)
            fprintf(f, "%.6g\n", dot + c->noise * ps_rng_normal(rng));
        else
            fprintf(f, "%d\n", ps_rng_uniform(rng) < 1.0 / (1.0 + exp(-dot)));
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "ps-datagen: cannot write '%s': %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    gen_config_t c;
    ps_errbuf_t err;
    int rc = ps_config_load(&gen_optset, &c, argc, argv, &err);
    if (rc == PS_CONFIG_HELP)
        return 0;
    if (rc != PS_OK) {
        fprintf(stderr, "ps-datagen: %s\n", err.msg);
        return EX_USAGE;
    }
    ps_rng_t rng;
    ps_rng_seed(&rng, (uint64_t)c.seed);
    double *w = malloc((size_t)c.features * sizeof *w);
    double *scale = malloc((size_t)c.features * sizeof *scale);
    if (!w || !scale)
        return EX_OSERR;
    for (int64_t j = 0; j < c.features; j++) {
        w[j] = ps_rng_normal(&rng) * (c.kind == 0 ? 2.0 : 1.0 / sqrt((double)c.features) * 2.0);
        scale[j] = exp(ps_rng_normal(&rng)); /* features on different scales */
        w[j] /= scale[j];
    }
    double b = c.kind == 0 ? 3.0 : 0.2;
    if (write_set(&c, c.out, c.rows, w, b, scale, &rng) != 0 ||
        (c.test_rows && write_set(&c, c.test_out, c.test_rows, w, b, scale, &rng) != 0))
        return EX_CANTCREAT;
    printf("{\"kind\":\"%s\",\"features\":%lld,\"bias\":%.9g,\"noise\":%.9g,\"weights\":[",
           c.kind == 0 ? "regression" : "binary", (long long)c.features, b, c.noise);
    for (int64_t j = 0; j < c.features; j++)
        printf("%s%.9g", j ? "," : "", w[j]);
    printf("]}\n");
    free(w);
    free(scale);
    return 0;
}
