/* ps_sparse_trainer.c - the step loop of the sparse models (sparse_lr, fm)
 * on LIBSVM data: each step a worker collects the distinct keys its batch
 * touches (plus a bias key), pulls just those rows from their shards,
 * computes the gradient rows, and pushes them back. Nothing ever holds the
 * whole key space.
 *
 * Partitioning: sample i belongs to worker i % world; every worker runs
 * the same number of steps per epoch (BSP needs every rank each clock), a
 * short or empty batch still pushes the bias row.
 *
 * Recovery: the batch of a clock is a function of the clock alone (each
 * epoch's order is a seeded shuffle of the one before), so a worker that
 * rejoins, or is sent back by a rollback, replays the very steps of an
 * uninterrupted run; the shards' checkpoints hold the rows.
 *
 * Streamed (stream yes, ps_stream.h): the worker holds no training set; a
 * reader thread hands it batch after batch of its own partitions. Its
 * steps are its longest partition's; once they run out it sends DONE and
 * the BSP barrier stops waiting for it, so uneven partitions never hang a
 * job and each clock's global batch is still a function of the clock.
 * Going back to a clock restarts the reader there (re-reading up to it). */
#include "ps_sparse_trainer.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ps_client.h"
#include "ps_event.h"
#include "ps_log.h"
#include "ps_metric.h"
#include "ps_npy.h"
#include "ps_recfile.h"
#include "ps_report.h"
#include "ps_proc.h"
#include "ps_rng.h"
#include "ps_stream.h"
#include "ps_svm.h"
#include "ps_time.h"
#include "ps_wire.h"

/* hash_bits <= 62, so no hashed feature is ever this key */
#define BIAS_KEY ((1ULL << 63) | 1ULL)
#define EVAL_CHUNK 262144

typedef struct {
    uint64_t key;
    uint32_t occ; /* occurrence index in the batch (nnz order), or UINT32_MAX for the bias */
} key_occ_t;

typedef struct {
    const ps_worker_config_t *cfg;
    uint32_t rank, world, dim, k; /* k: fm factors (0 for sparse_lr) */
    ps_svm_t train, test;
    ps_stream_t *stream; /* stream yes: the training batches; train stays empty */
    uint32_t *iota;      /* 0, 1, ...: a streamed batch's sample indices */
    size_t cap_iota;
    uint32_t epochs_seen;   /* stream: passes finished by all partitions, at the last batch */
    uint32_t *mine;         /* this worker's sample indices, in this epoch's order */
    uint32_t *mine0;        /* ... in the order before any shuffle */
    int64_t shuffled_epoch; /* the epoch whose order mine holds (0: none yet) */
    size_t n_mine;
    uint32_t *val; /* the validation split (indices into train), rank 0 */
    size_t n_val;
    uint32_t *test_idx; /* 0 .. test.n - 1 */
    uint64_t steps_per_epoch;
    ps_client_t *client;
    int64_t clock;
    /* per-step scratch */
    key_occ_t *ko;
    uint64_t *ukeys;
    uint32_t *occ_uid; /* occurrence -> unique index */
    float *rows, *grads, *s;
    size_t cap_occ, cap_u;
    const float **row_ptrs;
    float **grad_ptrs;
    size_t cap_ptrs;
    uint64_t keys_pulled, samples;
    unsigned recoveries;
    double t_start, t_train;
    char fingerprint[4096]; /* the options that define the job (ps_worker_fingerprint) */
} strainer_t;

static int cmp_ko(const void *a, const void *b)
{
    uint64_t x = ((const key_occ_t *)a)->key, y = ((const key_occ_t *)b)->key;
    return (x > y) - (x < y);
}

double ps_sparse_sample_loss(uint32_t k, const float *bias, const float *const *rows,
                             const float *x, size_t nf, float y, float *scratch, double *logit_out,
                             float *grad_bias, float *const *grads)
{
    double z = bias[0], sq = 0;
    for (uint32_t f = 0; f < k; f++)
        scratch[f] = 0;
    for (size_t j = 0; j < nf; j++) {
        const float *r = rows[j];
        double xj = x[j];
        z += r[0] * xj;
        for (uint32_t f = 0; f < k; f++) {
            scratch[f] += (float)(r[1 + f] * xj);
            sq += (double)r[1 + f] * r[1 + f] * xj * xj;
        }
    }
    for (uint32_t f = 0; f < k; f++)
        z += 0.5 * (double)scratch[f] * scratch[f];
    z -= 0.5 * sq;
    if (logit_out)
        *logit_out = z;
    /* log(1 + e^-z) for y = 1, log(1 + e^z) for y = 0, without overflow */
    double m = y > 0.5f ? -z : z;
    double loss = m > 0 ? m + log1p(exp(-m)) : log1p(exp(m));
    if (grad_bias) {
        float g = (float)(1.0 / (1.0 + exp(-z)) - y);
        grad_bias[0] += g;
        for (size_t j = 0; j < nf; j++) {
            const float *r = rows[j];
            float xj = x[j];
            grads[j][0] += g * xj;
            for (uint32_t f = 0; f < k; f++)
                grads[j][1 + f] += g * (xj * scratch[f] - r[1 + f] * xj * xj);
        }
    }
    return loss;
}

/* Loss (and gradient into tr->grads, if grad) of sample i of d whose
 * occurrences' unique indices start at occ_uid. */
static double sample(strainer_t *tr, const ps_svm_t *d, size_t i, const uint32_t *occ_uid,
                     uint32_t bias_uid, bool grad, double *logit_out)
{
    uint64_t first = d->row_ptr[i];
    size_t nf = (size_t)(d->row_ptr[i + 1] - first);
    if (nf > tr->cap_ptrs) {
        tr->cap_ptrs = nf * 2;
        tr->row_ptrs = ps_xrealloc(tr->row_ptrs, tr->cap_ptrs * sizeof *tr->row_ptrs);
        tr->grad_ptrs = ps_xrealloc(tr->grad_ptrs, tr->cap_ptrs * sizeof *tr->grad_ptrs);
    }
    for (size_t j = 0; j < nf; j++) {
        tr->row_ptrs[j] = tr->rows + (size_t)occ_uid[j] * tr->dim;
        tr->grad_ptrs[j] = tr->grads + (size_t)occ_uid[j] * tr->dim;
    }
    return ps_sparse_sample_loss(
        tr->k, tr->rows + (size_t)bias_uid * tr->dim, (const float *const *)tr->row_ptrs,
        d->vals + first, nf, d->y[i], tr->s, logit_out,
        grad ? tr->grads + (size_t)bias_uid * tr->dim : NULL, tr->grad_ptrs);
}

/* The distinct keys of samples idx[0..n) of d (+ the bias key) into
 * tr->ukeys, and each occurrence's unique index into tr->occ_uid (the
 * occurrences in sample order). Returns the number of distinct keys; the
 * bias key's index goes to *bias_uid. O(m log m) in the occurrences. */
static uint64_t collect_keys(strainer_t *tr, const ps_svm_t *d, const uint32_t *idx, size_t n,
                             uint32_t *bias_uid)
{
    uint64_t m = 0;
    for (size_t b = 0; b < n; b++)
        m += d->row_ptr[idx[b] + 1] - d->row_ptr[idx[b]];
    if (m + 1 > tr->cap_occ) {
        tr->cap_occ = (m + 1) * 2;
        tr->ko = ps_xrealloc(tr->ko, tr->cap_occ * sizeof *tr->ko);
        tr->occ_uid = ps_xrealloc(tr->occ_uid, tr->cap_occ * sizeof *tr->occ_uid);
        tr->ukeys = ps_xrealloc(tr->ukeys, tr->cap_occ * sizeof *tr->ukeys);
    }
    uint64_t o = 0;
    for (size_t b = 0; b < n; b++)
        for (uint64_t j = d->row_ptr[idx[b]]; j < d->row_ptr[idx[b] + 1]; j++, o++)
            tr->ko[o] = (key_occ_t){d->keys[j], (uint32_t)o};
    tr->ko[o++] = (key_occ_t){BIAS_KEY, UINT32_MAX};
    qsort(tr->ko, o, sizeof *tr->ko, cmp_ko);
    uint64_t u = 0;
    for (uint64_t i = 0; i < o; i++) {
        if (i == 0 || tr->ko[i].key != tr->ko[i - 1].key)
            tr->ukeys[u++] = tr->ko[i].key;
        if (tr->ko[i].occ == UINT32_MAX)
            *bias_uid = (uint32_t)(u - 1);
        else
            tr->occ_uid[tr->ko[i].occ] = (uint32_t)(u - 1);
    }
    if (u * tr->dim > tr->cap_u) {
        tr->cap_u = u * tr->dim * 2;
        tr->rows = ps_xrealloc(tr->rows, tr->cap_u * sizeof *tr->rows);
        tr->grads = ps_xrealloc(tr->grads, tr->cap_u * sizeof *tr->grads);
    }
    return u;
}

/* One step on samples idx[0..n) of d (n may be 0): pull, gradient, push. */
static int step(strainer_t *tr, const ps_svm_t *d, const uint32_t *idx, size_t n, double *loss_sum,
                ps_errbuf_t *err)
{
    uint32_t bias_uid = 0, dim = tr->dim;
    uint64_t u = collect_keys(tr, d, idx, n, &bias_uid);
    int rc = ps_client_sparse_pull(tr->client, 0, tr->clock, 0, tr->ukeys, u, tr->rows);
    if (rc == PS_OK)
        rc = ps_client_wait(tr->client, err);
    if (rc != PS_OK)
        return rc;
    tr->keys_pulled += u;
    memset(tr->grads, 0, u * dim * sizeof *tr->grads);
    uint64_t occ = 0; /* occ_uid is in batch occurrence order */
    for (size_t b = 0; b < n; b++) {
        *loss_sum += sample(tr, d, idx[b], tr->occ_uid + occ, bias_uid, true, NULL);
        occ += d->row_ptr[idx[b] + 1] - d->row_ptr[idx[b]];
    }
    rc = ps_client_sparse_push(tr->client, 0, tr->clock, tr->ukeys, u, tr->grads);
    if (rc == PS_OK)
        rc = ps_client_wait(tr->client, err);
    if (rc != PS_OK)
        return rc;
    tr->clock++;
    tr->samples += n;
    return PS_OK;
}

typedef struct {
    double auc, logloss, accuracy;
} seval_t;

/* Scores samples idx[0..n) of d with the rows the servers hold now (keys
 * never trained read their start value and are not stored). */
static int evaluate(strainer_t *tr, const ps_svm_t *d, const uint32_t *idx, size_t n,
                    uint32_t flags, seval_t *out, ps_errbuf_t *err)
{
    memset(out, 0, sizeof *out);
    if (!n)
        return PS_OK;
    float *scores = ps_xmalloc(n * sizeof *scores), *labels = ps_xmalloc(n * sizeof *labels);
    double ll = 0;
    size_t correct = 0;
    int rc = PS_OK;
    /* in chunks of samples whose distinct keys stay below EVAL_CHUNK */
    for (size_t a = 0; a < n && rc == PS_OK;) {
        size_t b = a;
        uint64_t occ = 0;
        while (b < n && occ + (d->row_ptr[idx[b] + 1] - d->row_ptr[idx[b]]) < EVAL_CHUNK) {
            occ += d->row_ptr[idx[b] + 1] - d->row_ptr[idx[b]];
            b++;
        }
        if (b == a)
            b = a + 1;
        uint32_t bias_uid = 0;
        uint64_t u = collect_keys(tr, d, idx + a, b - a, &bias_uid);
        rc = ps_client_sparse_pull(tr->client, 0, tr->clock, flags | PS_FLAG_NO_CREATE, tr->ukeys,
                                   u, tr->rows);
        if (rc == PS_OK)
            rc = ps_client_wait(tr->client, err);
        uint64_t o = 0;
        for (size_t i = a; rc == PS_OK && i < b; i++) {
            double z;
            uint32_t s = idx[i];
            ll += sample(tr, d, s, tr->occ_uid + o, bias_uid, false, &z);
            o += d->row_ptr[s + 1] - d->row_ptr[s];
            scores[i] = (float)z;
            labels[i] = d->y[s];
            correct += (z >= 0) == (d->y[s] > 0.5f);
        }
        a = b;
    }
    if (rc == PS_OK) {
        out->auc = ps_metric_auc(scores, labels, n);
        out->logloss = ll / (double)n;
        out->accuracy = (double)correct / (double)n;
    }
    free(scores);
    free(labels);
    return rc;
}

/* The metrics of one evaluation into ev. */
static void add_metrics(ps_event_t *ev, ps_eval_set_t set, const seval_t *e)
{
    bool test = set == PS_EVAL_TEST;
    ps_event_set_num(ev, test ? PS_EF_TEST_AUC : PS_EF_VAL_AUC, e->auc);
    ps_event_set_num(ev, test ? PS_EF_TEST_LOGLOSS : PS_EF_VAL_LOGLOSS, e->logloss);
    ps_event_set_num(ev, test ? PS_EF_TEST_ACCURACY : PS_EF_VAL_ACCURACY, e->accuracy);
}

/* Rank 0: the validation split and the test set, as event fields. */
static int eval_fields(strainer_t *tr, uint32_t flags, ps_event_t *ev, seval_t *test,
                       ps_errbuf_t *err)
{
    seval_t val;
    int rc = PS_OK;
    memset(test, 0, sizeof *test);
    if (tr->n_val && (rc = evaluate(tr, &tr->train, tr->val, tr->n_val, flags, &val, err)) == PS_OK)
        add_metrics(ev, PS_EVAL_VAL, &val);
    if (rc == PS_OK && tr->test.n &&
        (rc = evaluate(tr, &tr->test, tr->test_idx, tr->test.n, flags, test, err)) == PS_OK)
        add_metrics(ev, PS_EVAL_TEST, test);
    return rc;
}

/* Puts the worker at clock as an uninterrupted run would be there: the
 * epoch's sample order (replayed from the first epoch's when going back)
 * and the samples trained before it. */
static int seek(strainer_t *tr, int64_t clock, ps_errbuf_t *err)
{
    if (tr->stream) {
        tr->clock = clock;
        if (clock == 0)
            tr->epochs_seen = 0;
        return ps_stream_start(tr->stream, (uint64_t)clock, err);
    }
    uint64_t spe = tr->steps_per_epoch, b = (uint64_t)tr->cfg->batch_size;
    int64_t epoch = clock / (int64_t)spe + 1;
    if (epoch < tr->shuffled_epoch) {
        memcpy(tr->mine, tr->mine0, tr->n_mine * sizeof *tr->mine);
        tr->shuffled_epoch = 0;
    }
    while (tr->shuffled_epoch < epoch) {
        uint64_t e = (uint64_t)++tr->shuffled_epoch;
        ps_rng_t rng;
        ps_rng_seed(&rng, ps_rng_mix((uint64_t)tr->cfg->seed, e * 1000003 + tr->rank));
        ps_rng_shuffle_u32(&rng, tr->mine, tr->n_mine);
    }
    /* an epoch's steps cover every sample of the worker once */
    uint64_t s = (uint64_t)clock % spe, in_epoch = s * b < tr->n_mine ? s * b : tr->n_mine;
    tr->samples = (uint64_t)(clock / (int64_t)spe) * tr->n_mine + in_epoch;
    tr->clock = clock;
    return PS_OK;
}

/* Joins the job (under BSP, or after a failed try, with the shards
 * brought to one clock: ps_client_recover), defines the sparse table
 * (the first worker's definition wins; a later one only checks it) and
 * goes to the clock the job is at. */
static int join(strainer_t *tr, bool again, ps_errbuf_t *err)
{
    const ps_worker_config_t *c = tr->cfg;
    int64_t start_clock;
    int rc = c->max_staleness == 0 || again ? ps_client_recover(tr->client, true, &start_clock, err)
                                            : ps_client_hello(tr->client, &start_clock, err);
    if (rc != PS_OK)
        return rc;
    ps_optim_spec_t optim;
    /* a constant schedule: the count does not matter (a stream's is unknown) */
    ps_worker_optim_spec(c, tr->steps_per_epoch * (uint64_t)c->epochs, &optim);
    optim.schedule = PS_SCHED_CONSTANT; /* checked by ps_worker_config_validate too */
    optim.warmup_steps = 0;
    double init = c->optim.kind == PS_OPTIM_FTRL || !tr->k ? 0 : c->init_scale;
    rc = ps_client_init_sparse(tr->client, 0, tr->k ? "fm" : "weights", tr->dim, &optim, init,
                               (uint64_t)c->seed, err);
    if (rc != PS_OK)
        return rc;
    if (start_clock)
        ps_log(PS_LOG_NOTICE, "worker %u: job '%s' is at clock %lld; resuming there", tr->rank,
               c->job, (long long)start_clock);
    return seek(tr, start_clock, err);
}

/* After a recoverable error: rejoins (rolling the shards back to a common
 * checkpoint if they disagree) and goes to the clock that gives. */
static int recover(strainer_t *tr, int why, ps_errbuf_t *err)
{
    int64_t clock;
    int rc = ps_worker_recover(tr->client, tr->cfg, tr->rank, why, tr->clock, &tr->recoveries, NULL,
                               NULL, &clock, err);
    if (rc == PS_OK)
        rc = seek(tr, clock, err); /* rows are pulled each step: nothing to read back */
    return rc;
}

/* stream yes: the reader of this worker's partitions (started by seek). */
static int open_stream(strainer_t *tr, ps_errbuf_t *err)
{
    const ps_worker_config_t *c = tr->cfg;
    ps_stream_opts_t o = {
        .train_data = c->train_data,
        .format = c->data_format == PS_FORMAT_RECORDS ? PS_STREAM_RECORDS : PS_STREAM_LIBSVM,
        .hash_bits = (int)c->hash_bits,
        .rank = tr->rank,
        .world = tr->world,
        .n_partitions = (uint32_t)c->partitions,
        .batch_size = (uint64_t)c->batch_size,
        .epochs = (uint32_t)c->epochs,
        .seed = (uint64_t)c->seed,
        .shuffle_window = (uint32_t)c->shuffle_window,
        .prefetch = (uint32_t)c->prefetch_batches,
        .wait_timeout_ms = c->reader_timeout_ms,
    };
    tr->stream = ps_stream_new(&o, err);
    if (!tr->stream)
        return err->code ? err->code : PS_EINVAL;
    if (!ps_stream_is_sparse(tr->stream))
        return ps_err_set(err, PS_EFORMAT,
                          "'%s' holds dense records: they are for the dense models, not %s",
                          c->train_data, ps_worker_model_name(c));
    if (!ps_stream_n_parts(tr->stream))
        ps_log(PS_LOG_WARN, "worker %u: no partition of '%s' is this worker's (world %u)", tr->rank,
               c->train_data, tr->world);
    return PS_OK;
}

static int setup(strainer_t *tr, const ps_worker_config_t *c, volatile sig_atomic_t *stop,
                 ps_errbuf_t *err)
{
    tr->cfg = c;
    tr->rank = (uint32_t)c->rank;
    tr->world = (uint32_t)c->world;
    tr->k = c->model == PS_MODEL_FM ? (uint32_t)c->fm_dim : 0;
    tr->dim = 1 + tr->k;
    tr->s = ps_xcalloc(tr->k + 1, sizeof *tr->s);
    tr->t_start = ps_time_wall_s();
    int rc = c->stream ? open_stream(tr, err)
                       : ps_svm_load(c->train_data, (int)c->hash_bits, &tr->train, err);
    /* streamed, only rank 0 evaluates and needs the test set */
    if (rc == PS_OK && *c->test_data && (!c->stream || tr->rank == 0))
        rc = c->data_format == PS_FORMAT_RECORDS
                 ? ps_rec_load_sparse(c->test_data, (int)c->hash_bits, &tr->test, err)
                 : ps_svm_load(c->test_data, (int)c->hash_bits, &tr->test, err);
    if (rc != PS_OK)
        return rc;
    /* the validation split: a fixed hash of (split_seed, sample), the same
     * on every worker, so no worker trains on it */
    tr->mine = ps_xmalloc((tr->train.n / tr->world + 1) * sizeof *tr->mine);
    tr->val = ps_xmalloc((tr->train.n + 1) * sizeof *tr->val);
    size_t n_train = 0;
    uint64_t cut = (uint64_t)(c->val_fraction * 1e9);
    for (size_t i = 0; i < tr->train.n; i++) {
        if (ps_rng_mix((uint64_t)c->split_seed, i) % 1000000000ULL < cut) {
            tr->val[tr->n_val++] = (uint32_t)i;
            continue;
        }
        if (n_train++ % tr->world == tr->rank)
            tr->mine[tr->n_mine++] = (uint32_t)i;
    }
    if (tr->rank != 0)
        tr->n_val = 0; /* only rank 0 evaluates */
    tr->test_idx = ps_xmalloc((tr->test.n + 1) * sizeof *tr->test_idx);
    for (size_t i = 0; i < tr->test.n; i++)
        tr->test_idx[i] = (uint32_t)i;
    tr->mine0 = ps_xmalloc((tr->n_mine + 1) * sizeof *tr->mine0);
    memcpy(tr->mine0, tr->mine, tr->n_mine * sizeof *tr->mine);
    if (!n_train && !c->stream)
        return ps_err_set(err, PS_EINVAL, "no training samples left after the validation split");
    size_t per_worker = (n_train + tr->world - 1) / tr->world;
    tr->steps_per_epoch = (per_worker + (size_t)c->batch_size - 1) / (size_t)c->batch_size;
    ps_worker_keys_t keys;
    ps_client_opts_t co;
    if ((rc = ps_worker_client_opts(c, tr->rank, tr->world, stop, PS__DTYPE__F32, &keys, &co,
                                    err)) != PS_OK)
        return rc;
    ps_worker_fingerprint(c, tr->fingerprint, sizeof tr->fingerprint);
    co.fingerprint = tr->fingerprint;
    tr->client = ps_client_new(c->servers, &co, err);
    if (!tr->client)
        return PS_EINVAL;
    ps_client_set_same_host(tr->client, c->same_host);
    for (int tries = 1;; tries++) {
        rc = join(tr, tries > 1, err);
        if (!ps_worker_recoverable(rc) || tries == 100)
            break;
        ps_log(PS_LOG_WARN, "worker %u: joining job '%s' failed (%s); again", tr->rank, c->job,
               err->msg);
    }
    if (rc != PS_OK)
        return rc;
    if (c->stream) {
        ps_log(PS_LOG_INFO,
               "worker %u: job '%s': model %s (dim %u), streaming %zu partitions of '%s' "
               "(window %lld, %lld batches ahead), %s over %u shards",
               tr->rank, c->job, ps_worker_model_name(c), tr->dim, ps_stream_n_parts(tr->stream),
               c->train_data, (long long)c->shuffle_window, (long long)c->prefetch_batches,
               ps_optim_name(c->optim.kind), ps_client_n_shards(tr->client));
        return PS_OK;
    }
    ps_log(PS_LOG_INFO,
           "worker %u: job '%s': model %s (dim %u), %zu training samples (%zu here, %zu features), "
           "%llu steps per epoch, %s over %u shards",
           tr->rank, c->job, ps_worker_model_name(c), tr->dim, tr->train.n, tr->n_mine,
           tr->train.nnz, (unsigned long long)tr->steps_per_epoch, ps_optim_name(c->optim.kind),
           ps_client_n_shards(tr->client));
    return PS_OK;
}

/* Prints the epoch event ev (its metrics already in) and logs the epoch. */
static void report(const strainer_t *tr, ps_event_t *ev, int64_t epoch, double train_loss,
                   const seval_t *test, double secs)
{
    ps_event_set_int(ev, PS_EF_RANK, tr->rank);
    ps_event_set_num(ev, PS_EF_EPOCH, (double)epoch);
    ps_event_set_int(ev, PS_EF_STEPS, tr->clock);
    ps_event_set_num(ev, PS_EF_TRAIN_LOSS, train_loss);
    ps_event_set_num(ev, PS_EF_EPOCH_S, secs);
    ps_event_set_int(ev, PS_EF_KEYS_PULLED, (int64_t)tr->keys_pulled);
    ps_event_print(ev, stdout);
    ps_log(PS_LOG_INFO,
           "worker %u: epoch %lld train_logloss %.4f test_auc %.4f test_logloss %.4f "
           "(%.2f s)",
           tr->rank, (long long)epoch, train_loss, test->auc, test->logloss, secs);
}

/* Rank 0's mid-epoch {"event":"eval"} line. */
static int report_eval(strainer_t *tr, ps_errbuf_t *err)
{
    ps_event_t ev;
    seval_t test;
    ps_event_init(&ev, PS_EVENT_EVAL);
    int rc = eval_fields(tr, 0, &ev, &test, err);
    if (rc == PS_OK) {
        ps_event_set_int(&ev, PS_EF_RANK, 0);
        ps_event_set_int(&ev, PS_EF_STEPS, tr->clock);
        ps_event_set_num(&ev, PS_EF_EPOCH,
                         tr->stream ? (double)tr->epochs_seen
                                    : (double)tr->clock / (double)tr->steps_per_epoch);
        ps_event_set_num(&ev, PS_EF_WALL_S, ps_time_wall_s() - tr->t_train);
        ps_event_print(&ev, stdout);
    }
    ps_event_fini(&ev);
    return rc;
}

/* What an epoch's report sums up (from where this process entered it). */
typedef struct {
    int64_t epoch; /* 0: none yet */
    double loss_sum, t0;
    uint64_t samples;
    double wait0; /* stream: the reader wait before the epoch */
} sepoch_t;

/* The step at tr->clock, then rank 0's evaluations that fall on it. */
static int train_step(strainer_t *tr, sepoch_t *e, uint64_t eval_every_steps, uint64_t total,
                      ps_errbuf_t *err)
{
    const ps_worker_config_t *c = tr->cfg;
    uint64_t spe = tr->steps_per_epoch, s = (uint64_t)tr->clock % spe;
    int64_t epoch = tr->clock / (int64_t)spe + 1;
    if (epoch != e->epoch) {
        seek(tr, tr->clock, err); /* this epoch's order: in memory, cannot fail */
        *e = (sepoch_t){epoch, 0, ps_time_wall_s(), 0, 0};
    }
    size_t b = (size_t)c->batch_size;
    size_t a = s * b < tr->n_mine ? s * b : tr->n_mine;
    size_t n = a + b <= tr->n_mine ? b : tr->n_mine - a;
    int rc = step(tr, &tr->train, tr->mine + a, n, &e->loss_sum, err);
    if (rc != PS_OK)
        return rc;
    e->samples += n;
    double train_loss = e->samples ? e->loss_sum / (double)e->samples : 0;
    ps_client_report(tr->client, tr->samples, train_loss);
    bool epoch_end = (uint64_t)tr->clock % spe == 0 || (uint64_t)tr->clock == total;
    if (tr->rank == 0 && eval_every_steps && tr->clock % (int64_t)eval_every_steps == 0 &&
        !epoch_end && (rc = report_eval(tr, err)) != PS_OK)
        return rc;
    if (epoch_end && tr->rank == 0 && c->eval_every && e->epoch % c->eval_every == 0) {
        ps_event_t ev;
        seval_t test;
        ps_event_init(&ev, PS_EVENT_EPOCH);
        if ((rc = eval_fields(tr, 0, &ev, &test, err)) == PS_OK)
            report(tr, &ev, e->epoch, train_loss, &test, ps_time_wall_s() - e->t0);
        ps_event_fini(&ev);
    }
    return rc;
}

/* Streamed: the next batch of the reader, trained at tr->clock; the epoch
 * ends with the batch after which every partition of the worker finished
 * one more pass. Returns 1 (a step), 0 (no batches left) or an error. */
static int stream_step(strainer_t *tr, sepoch_t *e, uint64_t eval_every_steps, ps_errbuf_t *err)
{
    const ps_worker_config_t *c = tr->cfg;
    const ps_stream_batch_t *batch;
    /* an epoch starts before its first batch: a wait for it is the epoch's */
    double t_mark = ps_time_wall_s(), wait_mark = ps_stream_wait_s(tr->stream);
    int rc = ps_stream_next(tr->stream, &batch, err);
    if (rc <= 0)
        return rc;
    assert(batch->index == (uint64_t)tr->clock);
    if (e->epoch == 0)
        *e = (sepoch_t){tr->epochs_seen + 1, 0, t_mark, 0, wait_mark};
    size_t n = batch->data.n;
    if (n > tr->cap_iota) {
        tr->cap_iota = n * 2;
        tr->iota = ps_xrealloc(tr->iota, tr->cap_iota * sizeof *tr->iota);
        for (size_t i = 0; i < tr->cap_iota; i++)
            tr->iota[i] = (uint32_t)i;
    }
    if ((rc = step(tr, &batch->data, tr->iota, n, &e->loss_sum, err)) != PS_OK)
        return rc;
    tr->samples = batch->samples_before + n;
    e->samples += n;
    double train_loss = e->samples ? e->loss_sum / (double)e->samples : 0;
    ps_client_report(tr->client, tr->samples, train_loss);
    bool epoch_end = batch->epochs_done > tr->epochs_seen;
    tr->epochs_seen = batch->epochs_done;
    if (tr->rank == 0 && eval_every_steps && tr->clock % (int64_t)eval_every_steps == 0 &&
        !epoch_end && (rc = report_eval(tr, err)) != PS_OK)
        return rc;
    if (!epoch_end)
        return 1;
    double secs = ps_time_wall_s() - e->t0, wait = ps_stream_wait_s(tr->stream) - e->wait0;
    ps_log(PS_LOG_INFO, "worker %u: epoch %lld: %llu samples, waited %.3f s of %.2f s for data",
           tr->rank, (long long)e->epoch, (unsigned long long)e->samples, wait, secs);
    if (tr->rank == 0 && c->eval_every && e->epoch % c->eval_every == 0) {
        ps_event_t ev;
        seval_t test;
        ps_event_init(&ev, PS_EVENT_EPOCH);
        ps_event_set_num(&ev, PS_EF_READER_WAIT_S, wait);
        if ((rc = eval_fields(tr, 0, &ev, &test, err)) == PS_OK)
            report(tr, &ev, e->epoch, train_loss, &test, secs);
        ps_event_fini(&ev);
    }
    e->epoch = 0; /* the next batch starts the next one */
    return rc == PS_OK ? 1 : rc;
}

static uint64_t total_steps(const strainer_t *tr)
{
    uint64_t total = tr->stream ? UINT64_MAX : tr->steps_per_epoch * (uint64_t)tr->cfg->epochs;
    if (tr->cfg->max_steps && (uint64_t)tr->cfg->max_steps < total)
        total = (uint64_t)tr->cfg->max_steps;
    return total;
}

/* The steps from tr->clock to the last; a recoverable error sends the
 * worker to the clock its recovery gives. */
static int run(strainer_t *tr, volatile sig_atomic_t *stop, ps_errbuf_t *err)
{
    const ps_worker_config_t *c = tr->cfg;
    uint64_t total = total_steps(tr);
    uint64_t eval_every_steps = (uint64_t)c->eval_every_steps;
    if (c->evals_per_epoch && !tr->stream)
        eval_every_steps =
            (tr->steps_per_epoch + (uint64_t)c->evals_per_epoch - 1) / (uint64_t)c->evals_per_epoch;
    sepoch_t e = {0};
    while ((uint64_t)tr->clock < total) {
        if (*stop)
            return ps_err_set(err, PS_EINTR, "worker %u: stopped by signal", tr->rank);
        int rc = tr->stream ? stream_step(tr, &e, eval_every_steps, err)
                            : train_step(tr, &e, eval_every_steps, total, err);
        if (tr->stream && rc == 0)
            return PS_OK; /* the partitions ran out (then DONE) */
        if (rc == 1)
            rc = PS_OK;
        if (ps_worker_recoverable(rc)) {
            rc = recover(tr, rc, err);
            e.epoch = 0; /* its sums start over */
        }
        if (rc != PS_OK)
            return rc;
    }
    return PS_OK;
}

/* Rank 0, save_model set, after every worker is done: the final rows of
 * every key the test set touches (the bias key included), the keys in
 * DIR/sparse_keys.txt (one decimal per line, ascending) and the rows in
 * DIR/sparse_rows.npy (n x dim float32, in the same order): what scoring
 * that data needs. The whole table lives only on the shards. */
static int save_rows(strainer_t *tr, ps_errbuf_t *err)
{
    const char *dir = tr->cfg->save_model;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return ps_err_set(err, PS_EIO, "cannot create '%s': %s", dir, strerror(errno));
    uint32_t bias_uid = 0;
    uint64_t u = collect_keys(tr, &tr->test, tr->test_idx, tr->test.n, &bias_uid);
    int rc =
        ps_client_sparse_pull(tr->client, 0, tr->clock, PS_FLAG_AFTER_ALL_DONE | PS_FLAG_NO_CREATE,
                              tr->ukeys, u, tr->rows);
    if (rc == PS_OK)
        rc = ps_client_wait(tr->client, err);
    if (rc != PS_OK)
        return rc;
    char path[PS_OPT_STR_MAX + 32];
    uint64_t shape[2] = {u, tr->dim};
    snprintf(path, sizeof path, "%s/sparse_rows.npy", dir);
    if ((rc = ps_npy_write(path, tr->rows, shape, 2, err)) != PS_OK)
        return rc;
    snprintf(path, sizeof path, "%s/sparse_keys.txt", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return ps_err_set(err, PS_EIO, "cannot write '%s': %s", path, strerror(errno));
    for (uint64_t i = 0; i < u; i++)
        fprintf(f, "%llu\n", (unsigned long long)tr->ukeys[i]);
    if (fclose(f) != 0)
        return ps_err_set(err, PS_EIO, "cannot write '%s': %s", path, strerror(errno));
    ps_log(PS_LOG_INFO, "worker 0: %llu rows (the test set's keys) saved to '%s'",
           (unsigned long long)u, dir);
    return PS_OK;
}

/* After DONE: the summary in done, and the final model read once every
 * worker is done (rank 0 evaluates it into done and test; the others read
 * one row, to know). On an error done is released. */
static int read_final(strainer_t *tr, ps_event_t *done, seval_t *test, ps_errbuf_t *err)
{
    int64_t spe = (int64_t)tr->steps_per_epoch;
    int64_t epochs = tr->stream ? (int64_t)tr->epochs_seen : (tr->clock + spe - 1) / spe;
    ps_report_summary(done, tr->cfg, tr->rank, tr->world, epochs, tr->clock, tr->samples, 0,
                      tr->client);
    int rc;
    if (tr->rank == 0) {
        rc = eval_fields(tr, PS_FLAG_AFTER_ALL_DONE, done, test, err);
        if (rc == PS_OK && *tr->cfg->save_model && tr->test.n)
            rc = save_rows(tr, err);
    } else {
        uint64_t key = BIAS_KEY;
        rc = ps_client_sparse_pull(tr->client, 0, tr->clock,
                                   PS_FLAG_AFTER_ALL_DONE | PS_FLAG_NO_CREATE, &key, 1, tr->rows);
        if (rc == PS_OK)
            rc = ps_client_wait(tr->client, err);
    }
    if (rc != PS_OK)
        ps_event_fini(done);
    return rc;
}

/* After the last step: DONE, then the final model once every worker is
 * done (rank 0 evaluates it; the others read one row, to know). A shard
 * restart or a rollback meanwhile sends the worker back to the clock its
 * recovery gives, to replay the steps from there. */
static int train_to_the_end(strainer_t *tr, volatile sig_atomic_t *stop, ps_event_t *done,
                            seval_t *test, ps_errbuf_t *err)
{
    for (;;) {
        int rc = run(tr, stop, err);
        if (rc == PS_OK)
            rc = ps_client_done(tr->client, err);
        if (rc == PS_OK)
            rc = read_final(tr, done, test, err);
        if (!ps_worker_recoverable(rc))
            return rc;
        if ((rc = recover(tr, rc, err)) != PS_OK)
            return rc;
    }
}

static int finish(strainer_t *tr, volatile sig_atomic_t *stop, ps_errbuf_t *err)
{
    seval_t test = {0};
    ps_event_t done;
    int rc = train_to_the_end(tr, stop, &done, &test, err);
    if (rc != PS_OK)
        return rc;
    ps_failpoint("worker.before_bye");
    ps_client_stop_heartbeats(tr->client);
    ps_errbuf_t bye_err = {0};
    if (ps_client_bye(tr->client, &bye_err) != PS_OK)
        ps_log(PS_LOG_WARN,
               "worker %u: the model is final but BYE failed (%s); the shards end the "
               "job at their job_ttl_s",
               tr->rank, bye_err.msg);
    /* sparse rows always travel as fp32; bytes and time after BYE, as the
     * dense trainer counts them */
    ps_event_set_str(&done, PS_EF_PRECISION, "fp32");
    double wall = ps_time_wall_s() - tr->t_start;
    ps_event_set_num(&done, PS_EF_WALL_S, wall);
    ps_event_set_num(&done, PS_EF_SAMPLES_PER_S, wall > 0 ? (double)tr->samples / wall : 0);
    ps_event_set_int(&done, PS_EF_BYTES_SENT, (int64_t)ps_client_bytes_sent(tr->client));
    ps_event_set_int(&done, PS_EF_BYTES_RECEIVED, (int64_t)ps_client_bytes_received(tr->client));
    ps_event_set_int(&done, PS_EF_SHM_REQUESTS, (int64_t)ps_client_shm_requests(tr->client));
    ps_event_set_int(&done, PS_EF_BELL_REQUESTS, (int64_t)ps_client_bell_requests(tr->client));
    ps_event_set_int(&done, PS_EF_KEYS_PULLED, (int64_t)tr->keys_pulled);
    if (tr->stream)
        ps_report_stream(&done, tr->stream);
    ps_event_print(&done, stdout);
    ps_event_fini(&done);
    return PS_OK;
}

int ps_sparse_trainer_run(const ps_worker_config_t *cfg, volatile sig_atomic_t *stop,
                          ps_errbuf_t *err)
{
    strainer_t tr = {0};
    int rc = setup(&tr, cfg, stop, err);
    if (rc == PS_OK && tr.rank == 0) /* streamed: the length is known only at the end (0) */
        ps_report_start(tr.stream ? 0 : tr.steps_per_epoch,
                        tr.stream ? (uint64_t)cfg->max_steps : total_steps(&tr),
                        tr.train.n - tr.n_val, tr.n_val, tr.test.n);
    tr.t_train = ps_time_wall_s();
    if (rc == PS_OK)
        rc = finish(&tr, stop, err);
    ps_client_destroy(&tr.client);
    ps_stream_destroy(&tr.stream);
    free(tr.iota);
    ps_svm_free(&tr.train);
    ps_svm_free(&tr.test);
    free(tr.mine);
    free(tr.mine0);
    free(tr.val);
    free(tr.test_idx);
    free(tr.ko);
    free(tr.ukeys);
    free(tr.occ_uid);
    free(tr.rows);
    free(tr.grads);
    free(tr.s);
    free(tr.row_ptrs);
    free(tr.grad_ptrs);
    return rc;
}
