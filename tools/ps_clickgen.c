/* ps_clickgen.c - ps-clickgen: writes a synthetic click-like data set in
 * LIBSVM format from a known sparse logistic model, and that model's own
 * test AUC and log-loss (what a trained model should approach).
 *
 * Each sample has `nnz` distinct binary features drawn from a power law
 * (Zipf exponent `zipf`) over `features` ids, so the touched key set is
 * large and skewed like real categorical data; optionally `uniform` more
 * drawn uniformly from 2^40 ids (no signal: to touch many distinct keys in
 * scale runs). The true weight of feature i is a deterministic function of
 * (seed, i), so no table of weights is ever held. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "ps_config.h"
#include "ps_metric.h"
#include "ps_rng.h"

typedef struct {
    int64_t rows, test_rows, features, nnz, uniform, seed, parts;
    double zipf, bias, weight_std;
    char out[PS_OPT_STR_MAX], test_out[PS_OPT_STR_MAX], truth[PS_OPT_STR_MAX];
} click_config_t;

#define C click_config_t
static const ps_opt_t opts[] = {
    PS_OPT_INT("rows", C, rows, "1000000", 1, 1LL << 34, "training samples"),
    PS_OPT_INT("test_rows", C, test_rows, "50000", 1, 1LL << 34, "test samples"),
    PS_OPT_INT("features", C, features, "10000", 1, 1LL << 40, "ids the power law draws from"),
    PS_OPT_INT("nnz", C, nnz, "12", 1, 1000, "power-law features per sample (distinct)"),
    PS_OPT_INT("uniform", C, uniform, "0", 0, 1000,
               "extra features per sample, uniform over 2^40 ids, weight 0"),
    PS_OPT_DBL("zipf", C, zipf, "1.0", 0.5, 3, "power-law exponent of feature frequencies"),
    PS_OPT_DBL("bias", C, bias, "-1", -20, 20, "true bias"),
    PS_OPT_DBL("weight_std", C, weight_std, "0.6", 0, 100, "true weights ~ N(0, std)"),
    PS_OPT_INT("seed", C, seed, "11", 0, 1LL << 62, "random seed"),
    PS_OPT_STR("out", C, out, "train.svm", "training file"),
    PS_OPT_INT("parts", C, parts, "1", 1, 100000,
               "training files OUT.00000, OUT.00001, ... (their concatenation is the one file)"),
    PS_OPT_STR("test_out", C, test_out, "test.svm", "test file"),
    PS_OPT_STR("truth", C, truth, "truth.json", "the true model's test AUC and log-loss (JSON)"),
};
#undef C

static const ps_optset_t optset = {
    "ps-clickgen",
    "Usage: ps-clickgen [--rows N] [--features F] [--nnz K] [--out FILE] ...\n"
    "Writes a synthetic click-like LIBSVM data set drawn from a known sparse logistic\n"
    "model, and the true model's own test AUC and log-loss as JSON (--truth).",
    opts,
    sizeof opts / sizeof opts[0],
};

static double true_weight(const click_config_t *c, uint64_t id)
{
    ps_rng_t r;
    ps_rng_seed(&r, ps_rng_mix((uint64_t)c->seed ^ 0x77, id));
    return ps_rng_normal(&r) * c->weight_std;
}

/* A feature id in [1, F] with P(rank r) ~ r^-s (continuous approximation). */
static uint64_t zipf_id(const click_config_t *c, ps_rng_t *rng)
{
    double u = ps_rng_uniform(rng), F = (double)c->features, s = c->zipf, r;
    if (fabs(s - 1) < 1e-9)
        r = pow(F, u);
    else
        r = pow((pow(F, 1 - s) - 1) * u + 1, 1 / (1 - s));
    uint64_t id = (uint64_t)r;
    return id < 1 ? 1 : id > (uint64_t)F ? (uint64_t)F : id;
}

/* Writes rows samples to path; scores and labels (if not NULL) get each
 * sample's true logit and label. */
static int write_set(const click_config_t *c, const char *path, int64_t rows, ps_rng_t *rng,
                     float *scores, float *labels, double *logloss)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "ps-clickgen: cannot write '%s': %s\n", path, strerror(errno));
        return -1;
    }
    uint64_t *ids = malloc((size_t)(c->nnz + c->uniform) * sizeof *ids);
    double ll = 0;
    for (int64_t i = 0; i < rows; i++) {
        double z = c->bias;
        int64_t k = 0;
        for (int tries = 0; k < c->nnz && tries < 100 * c->nnz; tries++) {
            uint64_t id = zipf_id(c, rng);
            int dup = 0;
            for (int64_t j = 0; j < k && !dup; j++)
                dup = ids[j] == id;
            if (!dup)
                ids[k++] = id;
        }
        for (int64_t j = 0; j < k; j++)
            z += true_weight(c, ids[j]);
        for (int64_t j = 0; j < c->uniform; j++)
            ids[k++] = (uint64_t)c->features + 1 + ps_rng_below(rng, 1ULL << 40);
        double p = 1 / (1 + exp(-z));
        int y = ps_rng_uniform(rng) < p;
        fprintf(f, "%d", y);
        for (int64_t j = 0; j < k; j++)
            fprintf(f, " %llu:1", (unsigned long long)ids[j]);
        fputc('\n', f);
        if (scores) {
            scores[i] = (float)z;
            labels[i] = (float)y;
            ll -= y ? log(fmax(p, 1e-12)) : log(fmax(1 - p, 1e-12));
        }
    }
    free(ids);
    if (logloss)
        *logloss = ll / (double)rows;
    if (fclose(f) != 0) {
        fprintf(stderr, "ps-clickgen: cannot write '%s': %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    click_config_t c;
    ps_errbuf_t err;
    int rc = ps_config_load(&optset, &c, argc, argv, &err);
    if (rc == PS_CONFIG_HELP)
        return 0;
    if (rc != PS_OK) {
        fprintf(stderr, "ps-clickgen: %s\n", err.msg);
        return EX_USAGE;
    }
    if (c.nnz > c.features) {
        fprintf(stderr, "ps-clickgen: nnz %lld is more than features %lld\n", (long long)c.nnz,
                (long long)c.features);
        return EX_USAGE;
    }
    ps_rng_t rng;
    ps_rng_seed(&rng, (uint64_t)c.seed);
    float *scores = malloc((size_t)c.test_rows * sizeof *scores);
    float *labels = malloc((size_t)c.test_rows * sizeof *labels);
    double ll = 0;
    if (!scores || !labels)
        return EX_OSERR;
    /* one random stream through the parts, so they are the one file cut up */
    for (int64_t p = 0; p < c.parts; p++) {
        char path[PS_OPT_STR_MAX + 32];
        if (c.parts == 1)
            snprintf(path, sizeof path, "%s", c.out);
        else
            snprintf(path, sizeof path, "%s.%05lld", c.out, (long long)p);
        int64_t rows = c.rows * (p + 1) / c.parts - c.rows * p / c.parts;
        if (write_set(&c, path, rows, &rng, NULL, NULL, NULL) != 0)
            return EX_CANTCREAT;
    }
    if (write_set(&c, c.test_out, c.test_rows, &rng, scores, labels, &ll) != 0)
        return EX_CANTCREAT;
    double pos = 0;
    for (int64_t i = 0; i < c.test_rows; i++)
        pos += labels[i];
    double a = ps_metric_auc(scores, labels, (size_t)c.test_rows);
    FILE *t = fopen(c.truth, "w");
    if (!t) {
        fprintf(stderr, "ps-clickgen: cannot write '%s': %s\n", c.truth, strerror(errno));
        return EX_CANTCREAT;
    }
    fprintf(t,
            "{\"test_auc\":%.6f,\"test_logloss\":%.6f,\"test_positive_rate\":%.4f,\"rows\":%lld,"
            "\"test_rows\":%lld,\"features\":%lld,\"nnz\":%lld,\"uniform\":%lld,\"zipf\":%g}\n",
            a, ll, pos / (double)c.test_rows, (long long)c.rows, (long long)c.test_rows,
            (long long)c.features, (long long)c.nnz, (long long)c.uniform, c.zipf);
    fclose(t);
    printf("ps-clickgen: %lld + %lld samples; the true model's test AUC %.4f, log-loss %.4f\n",
           (long long)c.rows, (long long)c.test_rows, a, ll);
    free(scores);
    free(labels);
    return 0;
}
