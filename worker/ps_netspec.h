/* ps_netspec.h - what a net is made of: the input shape and the list of
 * layers, parsed from the two lines a user writes in a job config, or made
 * by the GPT builder. ps_net_new checks the shapes and builds it. Startup
 * thread only.
 *
 * input: the shape of one sample, whose floats are one data row:
 *   784          a vector of 784 features
 *   1x28x28      an image: channels x rows x columns (C*H*W floats, C order)
 *   128x64       a sequence: positions x features
 *   tokens(128)  a language-model window: a row of 129 whole numbers (byte
 *                values); the inputs are the first 128, the targets the
 *                last 128 (each position predicts the next token)
 *
 * layers: words separated by spaces, each with optional arguments in
 * parentheses (spaces allowed there), positional first, then name=value:
 *   dense(out, bias=1)              affine map (W in x out); on a sequence per position
 *   conv2d(out, k, stride=1, pad=0, bias=1)   k x k kernels, W out x C x k x k
 *   maxpool(k, stride=k)  avgpool(k, stride=k)   no padding; floor, as PyTorch
 *   flatten                         image or sequence -> vector
 *   relu  gelu  tanh  sigmoid       gelu is the exact erf form (nn.GELU())
 *   dropout(p)                      inverted dropout; off outside training
 *   layernorm(eps=1e-5)             over the last dim; gain g, bias b
 *   embed(vocab, dim)               tokens -> sequence of dim-vectors
 *   posembed                        adds a learned vector per position
 *   attention(heads)                causal multi-head self-attention
 *   residual[ LAYERS ]              y = x + LAYERS(x); brackets nest
 *   cross_entropy  mse  bce         the loss, last and only there
 * e.g. `conv2d(32,3,pad=1) relu maxpool(2) conv2d(64,3,pad=1) relu
 * maxpool(2) flatten dense(128) relu dense(10) cross_entropy`.
 *
 * The loss states the head: cross_entropy on a vector of C >= 2 scores
 * (labels 0..C-1), or on a sequence of vocabulary scores with tokens input;
 * mse on one output (regression) or on C outputs (one-hot class targets,
 * a classifier); bce on one logit (labels > 0 are positive).
 *
 * Tables are named by kind and count from 1 in spec order: dense1.W,
 * dense1.b, conv1.W, conv1.b, ln1.g, ln1.b, embed1.W, pos1.W, attn1.qkv.W,
 * attn1.qkv.b, attn1.proj.W, attn1.proj.b. */
#ifndef PS_NETSPEC_H
#define PS_NETSPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps_err.h"
#include "ps_layer.h"

typedef struct {
    ps_shape_t input;
    ps_layer_desc_t *layers; /* n_layers; residual opens a bracket, PS_LAYER_END closes it */
    size_t n_layers;
} ps_netspec_t;

/* Parses input and layers (borrowed) into spec (zeroed first; the caller
 * finis it, on failure too). PS_EINVAL with err naming the layer by
 * position and text and what is wrong: an unknown word or argument, a bad
 * value, a bracket, a missing or misplaced loss. Shapes are checked by
 * ps_net_new. */
int ps_netspec_parse(const char *input, const char *layers, ps_netspec_t *spec, ps_errbuf_t *err);
/* Frees the layer list; safe twice and on a zeroed spec. */
void ps_netspec_fini(ps_netspec_t *spec);

#define PS_GPT_VOCAB 256

typedef struct {
    uint32_t n_layer, n_head, n_embd, block_size;
    double dropout; /* after the embeddings and each residual branch; 0: none */
} ps_gpt_config_t;

/* A byte-level GPT (nanoGPT's layout): input tokens(block_size); wte (256 x
 * n_embd) and wpe (block_size x n_embd) embeddings; n_layer pre-norm blocks
 * "blocks.i": x + attn(ln1(x)), then x + mlp(ln2(x)) with mlp = proj(gelu(fc)),
 * fc n_embd -> 4 n_embd; final layer norm ln_f; an UNTIED head (n_embd x
 * 256, no bias); cross-entropy on the next byte. Init as nanoGPT: every
 * weight N(0, 0.02), the residual projections (attn.proj, mlp.proj) N(0,
 * 0.02 / sqrt(2 n_layer)), biases 0, layer norms 1 and 0. PS_EINVAL if a
 * size is 0 or n_head does not divide n_embd. */
int ps_netspec_gpt(const ps_gpt_config_t *cfg, ps_netspec_t *spec, ps_errbuf_t *err);

#define PS_NETDESC_TEXT_MAX 1024

/* A model as a user writes it: a spec's two lines, or a GPT config. What
 * model.json records and ps-generate rebuilds a net from. */
typedef struct {
    bool is_gpt;
    ps_gpt_config_t gpt;             /* is_gpt */
    char input[PS_NETDESC_TEXT_MAX]; /* otherwise: the spec */
    char layers[PS_NETDESC_TEXT_MAX];
} ps_netdesc_t;

/* The spec desc stands for, by ps_netspec_parse or ps_netspec_gpt (their
 * errors; the caller finis spec, on failure too). */
int ps_netdesc_spec(const ps_netdesc_t *desc, ps_netspec_t *spec, ps_errbuf_t *err);

#endif
