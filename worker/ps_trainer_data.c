/* ps_trainer_data.c - what the dense trainer trains on and with: the
 * data sets of the config (IDX, CSV, or a text corpus as windows) and the
 * net it describes, checked against each other before anything is sent. */
#include "ps_trainer_int.h"

#include <stdio.h>
#include <stdlib.h>

#include "ps_log.h"
#include "ps_recfile.h"

/* A text corpus's window length is the model's: its tokens(T) input. */
static int text_block(trainer_t *tr, size_t *block, ps_errbuf_t *err)
{
    ps_netspec_t spec = {0};
    int rc = ps_worker_model_desc(tr->cfg, 0, 0, &tr->desc, err);
    if (rc == PS_OK)
        rc = ps_netdesc_spec(&tr->desc, &spec, err);
    *block = spec.input.d[0];
    ps_netspec_fini(&spec);
    return rc;
}

/* A test corpus, read whole: its windows every block bytes. */
static int load_text_test(trainer_t *tr, size_t block, ps_errbuf_t *err)
{
    ps_text_opts_t o = {block, 0, block};
    ps_text_t *test = ps_text_open(tr->cfg->test_data, &o, err);
    if (!test)
        return err->code;
    ps_text_all_dataset(test, &tr->test);
    ps_text_destroy(&test);
    return PS_OK;
}

/* A text corpus: training windows, the held-out tail as the validation
 * set, a test corpus if given. */
static int load_text(trainer_t *tr, ps_errbuf_t *err)
{
    const ps_worker_config_t *c = tr->cfg;
    size_t block;
    int rc = text_block(tr, &block, err);
    if (rc != PS_OK)
        return rc;
    ps_text_opts_t o = {block, c->val_fraction, c->text_stride ? (size_t)c->text_stride : block};
    if (!(tr->text = ps_text_open(c->train_data, &o, err)))
        return err->code;
    ps_text_val_dataset(tr->text, &tr->val);
    tr->n_train = ps_text_n_windows(tr->text);
    tr->train.d = ps_text_row_len(tr->text);
    return *c->test_data ? load_text_test(tr, block, err) : PS_OK;
}

/* The test set of a dense job, in memory, in the training data's format. */
static int load_test(trainer_t *tr, ps_errbuf_t *err)
{
    const ps_worker_config_t *c = tr->cfg;
    int rc;
    if (c->data_format == PS_FORMAT_IDX)
        rc = ps_data_load_idx(c->test_data, c->test_labels, &tr->test, err);
    else if (c->data_format == PS_FORMAT_RECORDS)
        rc = ps_rec_load_dense(c->test_data, &tr->test, err);
    else
        rc = ps_data_load_csv(c->test_data, (int)c->label_column, &tr->test, err);
    if (rc == PS_OK && tr->test.d != tr->train.d)
        rc = ps_err_set(err, PS_EFORMAT, "'%s' has %zu features but '%s' has %zu", c->test_data,
                        tr->test.d, c->train_data, tr->train.d);
    return rc;
}

/* stream yes: this worker's partitions as a stream (started once the job
 * says at which clock); train gets their width and class count. */
static int open_stream(trainer_t *tr, ps_errbuf_t *err)
{
    const ps_worker_config_t *c = tr->cfg;
    static const int formats[] = {[PS_FORMAT_IDX] = PS_STREAM_IDX,
                                  [PS_FORMAT_CSV] = PS_STREAM_CSV,
                                  [PS_FORMAT_RECORDS] = PS_STREAM_RECORDS,
                                  [PS_FORMAT_TEXT] = PS_STREAM_TEXT};
    bool text = c->data_format == PS_FORMAT_TEXT;
    size_t block = 0;
    int rc = text ? text_block(tr, &block, err) : PS_OK;
    if (rc != PS_OK)
        return rc;
    ps_stream_opts_t o = {
        .train_data = c->train_data,
        .format = formats[c->data_format],
        .train_labels = c->train_labels,
        .label_column = (int)c->label_column,
        .n_classes = (uint32_t)c->classes,
        .rank = tr->rank,
        .world = tr->world,
        .n_partitions = (uint32_t)c->partitions,
        .batch_size = (uint64_t)c->batch_size,
        .epochs = (uint32_t)c->epochs,
        .seed = (uint64_t)c->seed,
        .shuffle_window = (uint32_t)c->shuffle_window,
        .prefetch = (uint32_t)c->prefetch_batches,
        .wait_timeout_ms = c->reader_timeout_ms,
        .block_size = block,
        .text_stride = (size_t)c->text_stride,
    };
    if (!(tr->stream = ps_stream_new(&o, err)))
        return err->code ? err->code : PS_EINVAL;
    if (ps_stream_is_sparse(tr->stream))
        return ps_err_set(err, PS_EFORMAT,
                          "'%s' holds sparse records: they are for models sparse_lr and fm",
                          c->train_data);
    tr->train.d = ps_stream_row_len(tr->stream);
    tr->train.n_classes = ps_stream_n_classes(tr->stream);
    tr->n_train = (size_t)ps_stream_n_samples(tr->stream);
    if (!ps_stream_n_parts(tr->stream))
        ps_log(PS_LOG_WARN, "worker %u: no partition of '%s' is this worker's (world %u)", tr->rank,
               c->train_data, tr->world);
    /* only rank 0 evaluates while streaming, so only it holds the test set */
    if (!*c->test_data || tr->rank != 0)
        return PS_OK;
    return text ? load_text_test(tr, block, err) : load_test(tr, err);
}

/* Streamed: one pass of the longest partition (1 if unknown: CSV). */
uint64_t pswk_steps_per_epoch(const trainer_t *tr)
{
    if (tr->stream) {
        uint64_t spp = ps_stream_steps_per_pass(tr->stream);
        return spp ? spp : 1;
    }
    uint64_t g = (uint64_t)tr->world * (uint64_t)tr->cfg->batch_size;
    return (tr->n_train + g - 1) / g;
}

unsigned pswk_data_keep(const trainer_t *tr)
{
    if (tr->n_stages == 1)
        return PS_DATA_ALL;
    return (tr->stage == 0 ? PS_DATA_FEATURES : 0u) |
           (tr->stage + 1 == tr->n_stages ? PS_DATA_LABELS : 0u);
}

int pswk_trainer_load_data(trainer_t *tr, ps_errbuf_t *err)
{
    const ps_worker_config_t *c = tr->cfg;
    int rc;
    if (c->stream)
        return open_stream(tr, err);
    if (c->data_format == PS_FORMAT_TEXT)
        return load_text(tr, err);
    /* the training images stay bytes until a batch is gathered (a quarter
     * of the memory); standardizing needs them as floats */
    unsigned keep = pswk_data_keep(tr);
    if (c->data_format == PS_FORMAT_IDX)
        rc = ps_data_load_idx_part(c->train_data, c->train_labels, !c->standardize, keep,
                                   &tr->train, err);
    else
        rc = ps_data_load_csv_part(c->train_data, (int)c->label_column, keep, &tr->train, err);
    if (rc == PS_OK && (c->val_fraction > 0 || c->train_subset > 0))
        rc = ps_data_split(&tr->train, c->val_fraction, (size_t)c->train_subset,
                           (uint64_t)c->split_seed, &tr->val, err);
    tr->n_train = tr->train.n;
    if (rc != PS_OK || !*c->test_data)
        return rc;
    return load_test(tr, err);
}

/* Every byte of the corpus must be a token the net knows (a spec may
 * embed fewer than 256 values). */
static int check_text(const trainer_t *tr, ps_errbuf_t *err)
{
    uint32_t limit = ps_net_token_limit(tr->net);
    const uint8_t *b = ps_text_bytes(tr->text);
    for (size_t i = 0; limit < 256 && i < ps_text_n_bytes(tr->text); i++)
        if (b[i] >= limit)
            return ps_err_set(err, PS_EFORMAT,
                              "'%s': byte %u at offset %zu is not below the vocabulary %u of "
                              "the model (text is bytes: embed(256, ...))",
                              tr->cfg->train_data, b[i], i, limit);
    return PS_OK;
}

/* The data must fit the net: row length, labels, tokens. */
static int check_data(const trainer_t *tr, ps_errbuf_t *err)
{
    const ps_worker_config_t *c = tr->cfg;
    char what[PS_OPT_STR_MAX + 64];
    int rc = PS_OK;
    if (tr->text) {
        rc = check_text(tr, err);
    } else {
        snprintf(what, sizeof what, "'%s'", c->train_data);
        rc = ps_net_check_data(tr->net, &tr->train, what, err);
    }
    snprintf(what, sizeof what, "the validation part of '%s'", c->train_data);
    if (rc == PS_OK && tr->val.n)
        rc = ps_net_check_data(tr->net, &tr->val, what, err);
    snprintf(what, sizeof what, "'%s'", c->test_data);
    if (rc == PS_OK && tr->test.n)
        rc = ps_net_check_data(tr->net, &tr->test, what, err);
    return rc;
}

/* The net the config describes, checked against the data; buffers for a
 * batch of batch_size (the most a worker gets in one step). */
int pswk_trainer_build_net(trainer_t *tr, ps_errbuf_t *err)
{
    const ps_worker_config_t *c = tr->cfg;
    ps_netspec_t spec = {0};
    size_t b = (size_t)c->batch_size, n_out = 0;
    /* a fixed model's outputs follow from the labels and the task; a spec
     * and a gpt say their own */
    bool fixed = !*c->layers && c->model != PS_MODEL_GPT && c->model != PS_MODEL_NET;
    int rc = fixed ? ps_worker_outputs(c, tr->train.n_classes, &n_out, err) : PS_OK;
    if (rc == PS_OK)
        rc = ps_worker_model_desc(c, tr->train.d, n_out, &tr->desc, err);
    if (rc == PS_OK && (rc = ps_netdesc_spec(&tr->desc, &spec, err)) == PS_OK) {
        tr->data_row =
            spec.input.kind == PS_SHAPE_TOKENS ? ps_shape_len(spec.input) + 1 : tr->train.d;
        if (tr->n_stages > 1)
            rc = pswk_pipe_build_net(tr, &spec, err);
        else if ((rc = pswk_check_budget(tr, &spec, 0, spec.n_layers, b, 1, err)) != PS_OK)
            ; /* refused before the net is allocated */
        else if (!(tr->net = ps_net_new(&spec, b, (size_t)c->slice_elems, err)))
            rc = err->code;
    }
    ps_netspec_fini(&spec);
    if (rc != PS_OK)
        return ps_worker_model_err(c, rc, err);
    if ((rc = check_data(tr, err)) != PS_OK)
        return rc;
    ps_net_init_params(tr->net, (uint64_t)c->seed);
    if (tr->stream) {
        ps_stream_set_label_limit(tr->stream, ps_net_label_limit(tr->net));
        ps_stream_set_token_limit(tr->stream, ps_net_token_limit(tr->net));
    }
    size_t n_order = tr->stream || !tr->n_train ? 1 : tr->n_train; /* a stream has no order */
    tr->order = ps_xmalloc(n_order * sizeof *tr->order);
    size_t row = pswk_step_row(tr);
    tr->bx = ps_xmalloc((b * row + 1) * sizeof(float));
    tr->by = ps_xmalloc(b * sizeof(float));
    tr->keys = ps_xmalloc(b * sizeof *tr->keys);
    return PS_OK;
}
