/* ps_netspec.c - the spec parser (input shape, layer words with their
 * arguments, residual brackets) and the GPT builder. */
#include "ps_netspec.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DIM (1u << 24)
#define MAX_DEPTH 16

void ps_netspec_fini(ps_netspec_t *spec)
{
    free(spec->layers);
    spec->layers = NULL;
    spec->n_layers = 0;
}

static ps_layer_desc_t *push(ps_netspec_t *spec, size_t *cap)
{
    if (spec->n_layers == *cap) {
        *cap = *cap ? 2 * *cap : 16;
        spec->layers = ps_xrealloc(spec->layers, *cap * sizeof *spec->layers);
    }
    return &spec->layers[spec->n_layers++];
}

/* A whole number in [lo, MAX_DIM] spanning s[0..len). */
static bool parse_dim(const char *s, size_t len, uint32_t lo, uint32_t *out)
{
    char buf[32], *end;
    if (len == 0 || len >= sizeof buf || !isdigit((unsigned char)s[0]))
        return false;
    memcpy(buf, s, len);
    buf[len] = 0;
    unsigned long v = strtoul(buf, &end, 10);
    if (*end || v < lo || v > MAX_DIM)
        return false;
    *out = (uint32_t)v;
    return true;
}

static int parse_input(const char *input, ps_shape_t *shape, ps_errbuf_t *err)
{
    size_t len = input ? strlen(input) : 0;
    while (len && isspace((unsigned char)input[len - 1]))
        len--;
    while (len && isspace((unsigned char)*input))
        input++, len--;
    memset(shape, 0, sizeof *shape);
    if (len > 8 && memcmp(input, "tokens(", 7) == 0 && input[len - 1] == ')') {
        shape->kind = PS_SHAPE_TOKENS;
        if (parse_dim(input + 7, len - 8, 1, &shape->d[0]))
            return PS_OK;
        return ps_err_set(err, PS_EINVAL, "input '%.*s': tokens(T) needs a length 1..%u", (int)len,
                          input, MAX_DIM);
    }
    int n = 0;
    const char *p = input, *end = input + len;
    while (p < end && n < 3) {
        const char *x = memchr(p, 'x', (size_t)(end - p));
        const char *stop = x ? x : end;
        if (!parse_dim(p, (size_t)(stop - p), 1, &shape->d[n]))
            break;
        n++;
        p = x ? x + 1 : end;
        if (!x)
            break;
    }
    if (len == 0 || n == 0 || p != end || input[len - 1] == 'x')
        return ps_err_set(err, PS_EINVAL,
                          "input '%.*s': not a shape (784, 1x28x28, 128x64 or tokens(128))",
                          (int)len, input ? input : "");
    shape->kind = n == 1 ? PS_SHAPE_VEC : n == 2 ? PS_SHAPE_SEQ : PS_SHAPE_IMG;
    /* each dim is <= 2^24, so checking as it grows keeps the product exact */
    uint64_t floats = 1;
    for (int i = 0; i < n; i++)
        if ((floats *= shape->d[i]) > MAX_DIM * (uint64_t)64)
            return ps_err_set(err, PS_EINVAL, "input '%.*s': more than 2^30 floats per sample",
                              (int)len, input);
    return PS_OK;
}

/* "conv2d(out, k, stride=1, pad=0, bias=1)" */
static const char *usage(const ps_layer_kind_info_t *ki, char *buf, size_t cap)
{
    size_t len = (size_t)snprintf(buf, cap, "%s", ki->word);
    for (int i = 0; i < ki->n_args && len < cap; i++) {
        const char *sep = i == 0 ? "(" : ", ";
        if (i < ki->n_required)
            len += (size_t)snprintf(buf + len, cap - len, "%s%s", sep, ki->arg_names[i]);
        else
            len += (size_t)snprintf(buf + len, cap - len, "%s%s=%g", sep, ki->arg_names[i],
                                    ki->defaults[i]);
    }
    if (ki->n_args && len < cap)
        snprintf(buf + len, cap - len, ")");
    return buf;
}

/* Integer arguments: whole numbers, >= 1 if required, else >= 0 (0 keeps a
 * meaning: no padding, no bias, default stride). */
static int set_arg(ps_layer_desc_t *d, int i, const char *val, size_t len, ps_errbuf_t *err)
{
    const ps_layer_kind_info_t *ki = ps_layer_kind_info(d->kind);
    char buf[48], *end;
    if (len == 0 || len >= sizeof buf)
        return ps_err_set(err, PS_EINVAL, "argument '%s' needs a value", ki->arg_names[i]);
    memcpy(buf, val, len);
    buf[len] = 0;
    double v = strtod(buf, &end);
    if (*end || !isfinite(v))
        return ps_err_set(err, PS_EINVAL, "argument '%s' = '%s' is not a number", ki->arg_names[i],
                          buf);
    double lo = i < ki->n_required ? 1 : 0;
    if (ki->is_int[i] && (v != floor(v) || v < lo || v > MAX_DIM))
        return ps_err_set(err, PS_EINVAL, "argument '%s' = '%s' must be a whole number %s..%u",
                          ki->arg_names[i], buf, lo > 0 ? "1" : "0", MAX_DIM);
    d->arg[i] = v;
    return PS_OK;
}

static int find_arg(const ps_layer_kind_info_t *ki, const char *name, size_t len)
{
    for (int i = 0; i < ki->n_args; i++)
        if (strlen(ki->arg_names[i]) == len && memcmp(ki->arg_names[i], name, len) == 0)
            return i;
    return -1;
}

/* One argument a[0..len) of d; *n_pos counts the positional ones so far. */
static int parse_one_arg(ps_layer_desc_t *d, const char *a, size_t len, int *n_pos, bool *given,
                         ps_errbuf_t *err)
{
    const ps_layer_kind_info_t *ki = ps_layer_kind_info(d->kind);
    char use[160];
    while (len && isspace((unsigned char)a[len - 1]))
        len--;
    while (len && isspace((unsigned char)*a))
        a++, len--;
    const char *eq = memchr(a, '=', len);
    int i;
    if (eq) {
        size_t nl = (size_t)(eq - a);
        while (nl && isspace((unsigned char)a[nl - 1]))
            nl--;
        if ((i = find_arg(ki, a, nl)) < 0)
            return ps_err_set(err, PS_EINVAL, "unknown argument '%.*s' (%s)", (int)nl, a,
                              usage(ki, use, sizeof use));
        *n_pos = ki->n_args; /* nothing positional after a name */
        len -= (size_t)(eq + 1 - a);
        a = eq + 1;
        while (len && isspace((unsigned char)*a))
            a++, len--;
    } else {
        if (*n_pos >= ki->n_args)
            return ps_err_set(err, PS_EINVAL, "too many arguments (%s)",
                              usage(ki, use, sizeof use));
        i = (*n_pos)++;
    }
    if (given[i])
        return ps_err_set(err, PS_EINVAL, "argument '%s' given twice", ki->arg_names[i]);
    given[i] = true;
    return set_arg(d, i, a, len, err);
}

/* The text between the parentheses, s[0..len). */
static int parse_args(ps_layer_desc_t *d, const char *s, size_t len, ps_errbuf_t *err)
{
    const ps_layer_kind_info_t *ki = ps_layer_kind_info(d->kind);
    bool given[PS_LAYER_MAX_ARGS] = {false};
    int n_pos = 0;
    char use[160];
    if (ki->n_args == 0)
        return ps_err_set(err, PS_EINVAL, "%s takes no arguments", ki->word);
    const char *p = s, *end = s + len;
    while (p <= end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        int rc = parse_one_arg(d, p, (size_t)(stop - p), &n_pos, given, err);
        if (rc != PS_OK)
            return rc;
        p = stop + 1;
    }
    for (int i = 0; i < ki->n_required; i++)
        if (!given[i])
            return ps_err_set(err, PS_EINVAL, "missing argument '%s' (%s)", ki->arg_names[i],
                              usage(ki, use, sizeof use));
    return PS_OK;
}

typedef struct {
    const char *p;
    int pos;             /* items so far */
    int open[MAX_DEPTH]; /* positions of the open brackets */
    int depth;
    unsigned count[PS_LAYER_N_KINDS]; /* for table names */
} parser_t;

/* Prefixes the reason already in err with the layer: "layer 3
 * 'conv2d(0,3)': " + the reason. */
static int layer_err(ps_errbuf_t *err, const ps_layer_desc_t *d, int rc)
{
    char why[sizeof err->msg];
    snprintf(why, sizeof why, "%s", err ? err->msg : "");
    return ps_err_set(err, rc, "layer %d '%s': %s", d->pos, d->text, why);
}

/* PS_EINVAL for layer d with the reason fmt. */
static int item_err(ps_errbuf_t *err, const ps_layer_desc_t *d, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int item_err(ps_errbuf_t *err, const ps_layer_desc_t *d, const char *fmt, ...)
{
    char why[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return ps_err_set(err, PS_EINVAL, "layer %d '%s': %s", d->pos, d->text, why);
}

/* The end of the item from start: its word ends at *wend, then its
 * "(...)" if any; a '(' never closed ends at the next '(' or the end. */
static const char *item_end(const char *start, const char **wend)
{
    const char *q = start;
    while (isalnum((unsigned char)*q) || *q == '_')
        q++;
    *wend = q;
    if (*q != '(')
        return q;
    for (q++; *q && *q != ')' && *q != '('; q++)
        ;
    return *q == ')' ? q + 1 : q;
}

/* "dense, conv2d, ..., residual[...], cross_entropy, mse, bce" */
static const char *known_words(char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = 0;
    for (int k = 0; k < PS_LAYER_N_KINDS && len < cap; k++)
        if (k != PS_LAYER_END)
            len += (size_t)snprintf(buf + len, cap - len, "%s%s%s", k ? ", " : "",
                                    ps_layer_kind_info((ps_layer_kind_t)k)->word,
                                    k == PS_LAYER_RESIDUAL ? "[...]" : "");
    return buf;
}

/* d's arguments (the text after its word, wend .. end) and table name. */
static int parse_rest(parser_t *ps, ps_layer_desc_t *d, const char *wend, const char *end,
                      ps_errbuf_t *err)
{
    const ps_layer_kind_info_t *ki = ps_layer_kind_info(d->kind);
    char use[160];
    if (*wend == '(') {
        if (end[-1] != ')')
            return item_err(err, d, "'(' without ')'");
        if (parse_args(d, wend + 1, (size_t)(end - 1 - (wend + 1)), err) != PS_OK)
            return layer_err(err, d, PS_EINVAL);
    } else if (ki->n_required > 0) {
        return item_err(err, d, "needs arguments: %s", usage(ki, use, sizeof use));
    }
    if (ki->prefix)
        snprintf(d->name, sizeof d->name, "%s%u", ki->prefix, ++ps->count[d->kind]);
    return PS_OK;
}

/* The item at ps->p: a word with optional (args), or ']'. */
static int parse_item(parser_t *ps, ps_layer_desc_t *d, ps_errbuf_t *err)
{
    const char *start = ps->p, *wend = start;
    const char *end = *start == ']' ? start + 1 : item_end(start, &wend);
    int kind = *start == ']'  ? PS_LAYER_END
               : wend > start ? ps_layer_kind_find(start, (size_t)(wend - start))
                              : -1;
    ps_layer_desc_init(d, kind < 0 ? PS_LAYER_END : (ps_layer_kind_t)kind, NULL);
    d->pos = ++ps->pos;
    ps->p = end;
    if (*start == ']')
        return PS_OK;
    snprintf(d->text, sizeof d->text, "%.*s", (int)(end - start), start);
    if (wend == start) {
        snprintf(d->text, sizeof d->text, "%c", *start);
        ps->p = start + 1;
        return item_err(err, d, "not a layer name");
    }
    if (kind < 0 || kind == PS_LAYER_END) {
        char known[400];
        return item_err(err, d, "unknown layer '%.*s' (known: %s)", (int)(wend - start), start,
                        known_words(known, sizeof known));
    }
    return parse_rest(ps, d, wend, end, err);
}

/* Brackets and the loss: residual must be followed by '[', every '['
 * closed, the loss last and outside brackets. */
static int check_structure(parser_t *ps, ps_layer_desc_t *d, bool is_last, ps_errbuf_t *err)
{
    const ps_layer_kind_info_t *ki = ps_layer_kind_info(d->kind);
    if (d->kind == PS_LAYER_RESIDUAL) {
        while (isspace((unsigned char)*ps->p))
            ps->p++;
        if (*ps->p != '[')
            return item_err(err, d, "residual needs '[ layers ]'");
        ps->p++;
        if (ps->depth == MAX_DEPTH)
            return item_err(err, d, "more than %d nested residuals", MAX_DEPTH);
        ps->open[ps->depth++] = d->pos;
    } else if (d->kind == PS_LAYER_END) {
        if (ps->depth == 0)
            return item_err(err, d, "no 'residual[' to close");
        ps->depth--;
    } else if (ki->is_loss && (!is_last || ps->depth > 0)) {
        return item_err(err, d, "a loss must come last, outside brackets");
    }
    return PS_OK;
}

int ps_netspec_parse(const char *input, const char *layers, ps_netspec_t *spec, ps_errbuf_t *err)
{
    memset(spec, 0, sizeof *spec);
    int rc = parse_input(input, &spec->input, err);
    if (rc != PS_OK)
        return rc;
    parser_t ps = {.p = layers ? layers : ""};
    size_t cap = 0;
    for (;;) {
        while (isspace((unsigned char)*ps.p))
            ps.p++;
        if (!*ps.p)
            break;
        ps_layer_desc_t *d = push(spec, &cap);
        if ((rc = parse_item(&ps, d, err)) != PS_OK)
            return rc;
        const char *rest = ps.p;
        while (isspace((unsigned char)*rest))
            rest++;
        if ((rc = check_structure(&ps, d, *rest == 0, err)) != PS_OK)
            return rc;
    }
    if (ps.depth > 0)
        return ps_err_set(err, PS_EINVAL, "layers: 'residual[' at layer %d is never closed",
                          ps.open[ps.depth - 1]);
    if (spec->n_layers == 0 || !ps_layer_kind_info(spec->layers[spec->n_layers - 1].kind)->is_loss)
        return ps_err_set(err, PS_EINVAL,
                          "layers: the last one must be the loss (cross_entropy, mse or bce)%s%s%s",
                          spec->n_layers ? ", not '" : "",
                          spec->n_layers ? spec->layers[spec->n_layers - 1].text : "",
                          spec->n_layers ? "'" : "");
    if (spec->n_layers == 1)
        return ps_err_set(err, PS_EINVAL, "layers: a layer must come before the loss");
    return PS_OK;
}

/* GPT builder: each desc gets a name and, for errors, "word name" as text. */
static ps_layer_desc_t *gpt_add(ps_netspec_t *spec, size_t *cap, ps_layer_kind_t kind,
                                const char *name, double init_std)
{
    ps_layer_desc_t *d = push(spec, cap);
    ps_layer_desc_init(d, kind, name);
    d->pos = (int)spec->n_layers;
    d->init_std = init_std;
    if (name)
        snprintf(d->text, sizeof d->text, "%s %s", ps_layer_kind_info(kind)->word, name);
    return d;
}

static void gpt_dropout(ps_netspec_t *spec, size_t *cap, double p)
{
    if (p > 0)
        gpt_add(spec, cap, PS_LAYER_DROPOUT, NULL, 0)->arg[0] = p;
}

static void gpt_block(ps_netspec_t *spec, size_t *cap, const ps_gpt_config_t *c, uint32_t i)
{
    const double std = 0.02, proj_std = 0.02 / sqrt(2.0 * c->n_layer);
    char name[PS_TABLE_NAME_MAX];
    gpt_add(spec, cap, PS_LAYER_RESIDUAL, NULL, 0);
    snprintf(name, sizeof name, "blocks.%u.ln1", i);
    gpt_add(spec, cap, PS_LAYER_LAYERNORM, name, 0);
    snprintf(name, sizeof name, "blocks.%u.attn", i);
    ps_layer_desc_t *a = gpt_add(spec, cap, PS_LAYER_ATTENTION, name, std);
    a->arg[0] = c->n_head;
    a->proj_std = proj_std;
    gpt_dropout(spec, cap, c->dropout);
    gpt_add(spec, cap, PS_LAYER_END, NULL, 0);
    gpt_add(spec, cap, PS_LAYER_RESIDUAL, NULL, 0);
    snprintf(name, sizeof name, "blocks.%u.ln2", i);
    gpt_add(spec, cap, PS_LAYER_LAYERNORM, name, 0);
    snprintf(name, sizeof name, "blocks.%u.mlp.fc", i);
    gpt_add(spec, cap, PS_LAYER_DENSE, name, std)->arg[0] = 4.0 * c->n_embd;
    gpt_add(spec, cap, PS_LAYER_GELU, NULL, 0);
    snprintf(name, sizeof name, "blocks.%u.mlp.proj", i);
    gpt_add(spec, cap, PS_LAYER_DENSE, name, proj_std)->arg[0] = c->n_embd;
    gpt_dropout(spec, cap, c->dropout);
    gpt_add(spec, cap, PS_LAYER_END, NULL, 0);
}

int ps_netspec_gpt(const ps_gpt_config_t *c, ps_netspec_t *spec, ps_errbuf_t *err)
{
    memset(spec, 0, sizeof *spec);
    if (!c->n_layer || !c->n_head || !c->n_embd || !c->block_size || c->n_layer > 256 ||
        c->n_embd > 65536 || c->block_size > 65536)
        return ps_err_set(err, PS_EINVAL,
                          "gpt: n_layer (1..256), n_head, n_embd (..65536) and block_size "
                          "(..65536) must be set");
    if (c->n_embd % c->n_head)
        return ps_err_set(err, PS_EINVAL, "gpt: n_head %u does not divide n_embd %u", c->n_head,
                          c->n_embd);
    if (!(c->dropout >= 0 && c->dropout < 1))
        return ps_err_set(err, PS_EINVAL, "gpt: dropout must be in [0, 1), not %g", c->dropout);
    size_t cap = 0;
    spec->input = (ps_shape_t){PS_SHAPE_TOKENS, {c->block_size, 0, 0}};
    ps_layer_desc_t *e = gpt_add(spec, &cap, PS_LAYER_EMBED, "wte", 0.02);
    e->arg[0] = PS_GPT_VOCAB;
    e->arg[1] = c->n_embd;
    gpt_add(spec, &cap, PS_LAYER_POSEMBED, "wpe", 0.02);
    gpt_dropout(spec, &cap, c->dropout);
    for (uint32_t i = 0; i < c->n_layer; i++)
        gpt_block(spec, &cap, c, i);
    gpt_add(spec, &cap, PS_LAYER_LAYERNORM, "ln_f", 0);
    ps_layer_desc_t *h = gpt_add(spec, &cap, PS_LAYER_DENSE, "head", 0.02);
    h->arg[0] = PS_GPT_VOCAB;
    h->arg[1] = 0; /* no bias, as nanoGPT's lm_head */
    gpt_add(spec, &cap, PS_LAYER_CROSS_ENTROPY, NULL, 0);
    return PS_OK;
}

int ps_netdesc_spec(const ps_netdesc_t *desc, ps_netspec_t *spec, ps_errbuf_t *err)
{
    if (desc->is_gpt)
        return ps_netspec_gpt(&desc->gpt, spec, err);
    return ps_netspec_parse(desc->input, desc->layers, spec, err);
}
