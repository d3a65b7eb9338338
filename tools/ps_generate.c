/* ps_generate.c - ps-generate: loads a language model ps-worker exported
 * (--save-model DIR of model gpt, or of a tokens(T) spec) and prints the
 * prompt followed by sampled bytes on stdout. Seeded: the same model,
 * prompt and options print the same text.
 *
 * Each new byte comes from one forward pass over the last block_size bytes
 * of the text so far (causal attention: a shorter text is padded on the
 * right, and the padding cannot reach the position that is read), its
 * scores divided by the temperature, cut to the top_k largest, softmax,
 * one draw. Temperature 0 takes the largest score. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "ps_blas.h"
#include "ps_config.h"
#include "ps_export.h"
#include "ps_log.h"
#include "ps_rng.h"

extern void openblas_set_num_threads(int n);

typedef struct {
    char model[PS_OPT_STR_MAX], prompt[PS_OPT_STR_MAX];
    int64_t length, top_k, seed, blas_threads;
    int blas_core; /* ps_blas_core_t */
    double temperature;
} gen_config_t;

#define G gen_config_t
static const ps_opt_t gen_opts[] = {
    PS_OPT_STR("model", G, model, "", "directory ps-worker --save-model wrote (model.json)"),
    PS_OPT_STR("prompt", G, prompt, "", "text to continue; empty = start from a newline"),
    PS_OPT_INT("length", G, length, "200", 0, 1 << 24, "bytes to generate"),
    PS_OPT_DBL("temperature", G, temperature, "0.8", 0, 100,
               "scores are divided by this before the softmax; 0 = always the likeliest byte"),
    PS_OPT_INT("top_k", G, top_k, "0", 0, 256, "sample among the k likeliest bytes; 0 = all"),
    PS_OPT_INT("seed", G, seed, "1", 0, 1LL << 62, "seed of the draws"),
    PS_OPT_INT("blas_threads", G, blas_threads, "1", 1, 256, "OpenBLAS threads"),
    PS_OPT_NAMES("blas_core", G, blas_core, "auto", ps_blas_core_names,
                 "OpenBLAS kernel set, as ps-worker's blas_core"),
};
#undef G

static const ps_optset_t gen_optset = {
    "ps-generate",
    "Usage: ps-generate --model DIR [--prompt TEXT] [--length N] [--temperature T]\n"
    "                   [--top-k K] [--seed S]\n"
    "Continues the prompt with bytes sampled from a language model that\n"
    "ps-worker exported (model gpt, or a tokens(T) spec; --save-model DIR) and\n"
    "prints the prompt and the continuation on stdout. Seeded: the same\n"
    "model, prompt and options print the same text.",
    gen_opts,
    sizeof gen_opts / sizeof gen_opts[0],
};

/* A byte from scores z[0..v) (v <= 256). */
static int sample(const float *z, int v, const gen_config_t *c, ps_rng_t *rng)
{
    int idx[256];
    double p[256];
    for (int j = 0; j < v; j++)
        idx[j] = j;
    /* the k largest first (selection; v is at most 256) */
    int k = c->top_k > 0 && c->top_k < v ? (int)c->top_k : v;
    for (int i = 0; i < k; i++)
        for (int j = i + 1; j < v; j++)
            if (z[idx[j]] > z[idx[i]]) {
                int t = idx[i];
                idx[i] = idx[j];
                idx[j] = t;
            }
    if (c->temperature <= 0)
        return idx[0];
    double sum = 0;
    for (int i = 0; i < k; i++)
        sum += p[i] = exp(((double)z[idx[i]] - z[idx[0]]) / c->temperature);
    double u = ps_rng_uniform(rng) * sum;
    for (int i = 0; i < k; i++)
        if ((u -= p[i]) < 0)
            return idx[i];
    return idx[k - 1];
}

/* Prints c->length sampled bytes after text[0..n) (n >= 1, the buffer has
 * room for n + length bytes). */
static void generate(ps_net_t *net, const gen_config_t *c, unsigned char *text, size_t n)
{
    size_t t = ps_net_input_shape(net).d[0], v = ps_net_output_shape(net).d[1];
    /* a spec may embed fewer values than it scores */
    int drawable = (int)(v < ps_net_token_limit(net) ? v : ps_net_token_limit(net));
    float *row = calloc(t + 1, sizeof(float)), label = 0;
    ps_rng_t rng;
    ps_rng_seed(&rng, (uint64_t)c->seed);
    for (int64_t i = 0; i < c->length; i++, n++) {
        size_t from = n > t ? n - t : 0, len = n - from;
        for (size_t j = 0; j <= t; j++)
            row[j] = j < len ? (float)text[from + j] : 0.0f;
        ps_net_forward(net, row, &label, 1, false);
        text[n] = (unsigned char)sample(ps_net_output(net) + (len - 1) * v, drawable, c, &rng);
        fputc(text[n], stdout);
        fflush(stdout);
    }
    free(row);
}

int main(int argc, char **argv)
{
    gen_config_t c;
    ps_errbuf_t err;
    int rc = ps_config_load(&gen_optset, &c, argc, argv, &err);
    if (rc == PS_CONFIG_HELP)
        return 0;
    if (rc == PS_OK && !*c.model)
        rc = ps_err_set(&err, PS_EINVAL, "--model is required (a directory of model.json)");
    if (rc != PS_OK) {
        fprintf(stderr, "ps-generate: %s\n", err.msg);
        return EX_USAGE;
    }
    ps_log_init("ps-generate", PS_LOG_INFO);
    ps_blas_select("ps-generate", (ps_blas_core_t)c.blas_core, argv);
    openblas_set_num_threads((int)c.blas_threads);
    ps_net_t *net = ps_export_load(c.model, 1, NULL, &err);
    if (!net) {
        fprintf(stderr, "ps-generate: %s\n", err.msg);
        return EX_DATAERR;
    }
    if (ps_net_task(net) != PS_NET_LANGUAGE_MODEL || ps_net_output_shape(net).d[1] > 256) {
        fprintf(stderr,
                "ps-generate: '%s' is not a byte-level language model (model gpt, or a "
                "tokens(T) spec with 256 scores)\n",
                c.model);
        ps_net_destroy(&net);
        return EX_DATAERR;
    }
    size_t n = strlen(c.prompt);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)c.prompt[i] >= ps_net_token_limit(net)) {
            fprintf(stderr,
                    "ps-generate: prompt byte %zu (%u) is not below the model's "
                    "vocabulary %u\n",
                    i, (unsigned char)c.prompt[i], ps_net_token_limit(net));
            ps_net_destroy(&net);
            return EX_USAGE;
        }
    unsigned char *text = malloc((n ? n : 1) + (size_t)c.length);
    if (!text)
        return EX_OSERR;
    memcpy(text, n ? c.prompt : "\n", n ? n : 1);
    fwrite(c.prompt, 1, n, stdout);
    generate(net, &c, text, n ? n : 1);
    fputc('\n', stdout);
    free(text);
    ps_net_destroy(&net);
    return 0;
}
