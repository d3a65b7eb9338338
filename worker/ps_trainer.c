/* ps_trainer.c - the worker's step loop.
 *
 * Partitioning: epoch e visits the training set in the order of a shuffle
 * seeded by (seed, e). Step t of the epoch covers the global batch
 * [t*G, t*G + g) of that order, G = world * batch_size (g < G only for the
 * last step). Worker r takes the r-th of world equal slices of it. Every
 * worker therefore runs the same number of steps, and under BSP the server's
 * sum over workers is exactly the gradient of the global batch: N workers
 * with batch b train the same model as one worker with batch N*b. A
 * dropout mask is keyed by (seed, step, the sample's place in the global
 * batch), so it holds with dropout too.
 *
 * Text data is a set of windows (ps_text): the same shuffle over window
 * numbers, the same cut.
 *
 * Streamed (stream yes, ps_stream.h): no worker holds the training set; a
 * reader thread hands this worker batch after batch of its own partitions,
 * batch c being the concatenation of batch c of each, so the global batch
 * of clock c is every partition's batch c in partition order, whoever reads
 * them: N workers with batch b train what one worker reading all N
 * partitions with batch N*b trains. A dropout mask is keyed by (seed, step,
 * the sample's partition and place in that partition's share). A worker
 * whose partitions run out sends DONE and the BSP barrier goes on without
 * it. Going back to a clock restarts the reader there. */
#include "ps_trainer.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ps_client.h"
#include "ps_half.h"
#include "ps_onnx.h"
#include "ps_text.h"
#include "ps_loss_scale.h"
#include "ps_log.h"
#include "ps_event.h"
#include "ps_export.h"
#include "ps_report.h"
#include "ps_proc.h"
#include "ps_rng.h"
#include "ps_sparse_trainer.h"
#include "ps_trainer_int.h"
#include "ps_statsd.h"
#include "ps_time.h"
#include "ps_wire.h"

/* Every reply in: before anything but forward reads the parameters. */
static int settle(trainer_t *tr, ps_errbuf_t *err)
{
    int64_t t0 = ps_time_ns();
    int rc = ps_client_wait(tr->client, err);
    tr->server_wait_ns += ps_time_ns() - t0;
    return rc;
}

/* fp16: after the whole backward pass, either every table goes out scaled
 * by the loss scale, or (if any scaled gradient would overflow fp16) every
 * table goes out as a skip. */
static void push_scaled(trainer_t *tr)
{
    float scale = tr->scaler.scale;
    uint32_t n = ps_net_n_slices(tr->net);
    bool overflow = false;
    for (uint32_t id = 0; id < n && !overflow; id++)
        overflow =
            ps_f16_overflows(ps_net_slice_grads(tr->net, id), ps_net_slice_len(tr->net, id), scale);
    for (uint32_t id = 0; id < n && tr->send_rc == PS_OK; id++)
        tr->send_rc = ps_client_push_pull(
            tr->client, id, tr->clock, overflow ? NULL : ps_net_slice_grads(tr->net, id),
            tr->cur_batch, scale, overflow ? PS_FLAG_SKIP : 0, ps_net_slice_params(tr->net, id));
}

/* The job's steps: all its epochs, or max_steps; for a CSV stream (no
 * count known) max_steps or 1: its schedules do not need the count. */
static uint64_t job_steps(const trainer_t *tr)
{
    const ps_worker_config_t *c = tr->cfg;
    uint64_t steps = tr->stream ? ps_stream_job_steps(tr->stream)
                                : pswk_steps_per_epoch(tr) * (uint64_t)c->epochs;
    if (c->max_steps && ((uint64_t)c->max_steps < steps || !steps))
        steps = (uint64_t)c->max_steps;
    return steps ? steps : 1;
}

/* fp16: the shards run the loss scaler over the rounds they apply; after
 * a HELLO or a rollback take their state, so a worker that joins late or
 * replays steps uses the scale an uninterrupted run would have used. */
static void adopt_scaler(trainer_t *tr)
{
    double scale;
    int64_t clean;
    uint64_t skipped;
    if (!ps_client_loss_scale(tr->client, &scale, &clean, &skipped))
        return;
    if ((float)scale != tr->scaler.scale || clean != tr->scaler.clean)
        ps_log(PS_LOG_INFO,
               "worker %u: loss scale %g (%lld clean steps) from the shards at clock %lld",
               tr->rank, scale, (long long)clean, (long long)tr->clock);
    tr->scaler.scale = (float)scale;
    tr->scaler.clean = clean;
    tr->scaler.n_skipped = skipped;
}

/* Joins the job: HELLO (and under BSP, or after a failed try, the shards
 * brought to one clock: see recover), the tables defined from this
 * worker's seeded init (the first worker's wins; a later one only checks
 * them), and the parameters pulled from where the job is: a worker
 * (re)started into a running job resumes there, with the loss scale the
 * job had there. */
static int join(trainer_t *tr, bool again, ps_errbuf_t *err)
{
    const ps_worker_config_t *c = tr->cfg;
    int64_t start_clock;
    int rc = c->max_staleness == 0 || again ? ps_client_recover(tr->client, true, &start_clock, err)
                                            : ps_client_hello(tr->client, &start_clock, err);
    if (rc != PS_OK)
        return rc;
    tr->clock = start_clock;
    if (c->precision == PS__DTYPE__F16)
        adopt_scaler(tr);
    uint64_t steps = job_steps(tr);
    /* Under SSP/ASP every worker's push is an update of its own. */
    uint64_t updates = c->max_staleness == 0 ? steps : steps * tr->world;
    ps_optim_spec_t optim;
    ps_worker_optim_spec(c, updates, &optim);
    /* a failed try may have pulled some parameters over the init */
    ps_net_init_params(tr->net, (uint64_t)c->seed);
    for (uint32_t id = 0; id < ps_net_n_slices(tr->net); id++) {
        char name[PS_TABLE_NAME_MAX + 32];
        uint64_t shape[PS_TABLE_MAX_DIMS];
        int ndim = ps_net_slice_shape(tr->net, id, shape);
        ps_net_slice_name(tr->net, id, name, sizeof name);
        rc = ps_client_init_table(tr->client, id, name, shape, ndim, &optim,
                                  ps_net_slice_params(tr->net, id), err);
        if (rc != PS_OK)
            return rc;
    }
    for (uint32_t id = 0; id < ps_net_n_slices(tr->net); id++)
        ps_client_pull(tr->client, id, tr->clock, 0, ps_net_slice_params(tr->net, id));
    return ps_client_wait(tr->client, err);
}

static int setup(trainer_t *tr, ps_errbuf_t *err)
{
    const ps_worker_config_t *c = tr->cfg;
    ps_worker_keys_t keys;
    ps_client_opts_t co;
    int rc = ps_worker_client_opts(c, tr->rank, tr->world, tr->stop, c->precision, &keys, &co, err);
    if (rc != PS_OK)
        return rc;
    ps_worker_fingerprint(c, tr->fingerprint, sizeof tr->fingerprint);
    co.fingerprint = tr->fingerprint;
    if (tr->n_stages > 1)
        co.job = tr->stage_job;
    if (c->precision == PS__DTYPE__F16) {
        co.loss_scale = c->loss_scale;
        co.loss_scale_window = c->loss_scale_window;
    }
    ps_loss_scale_init(&tr->scaler, (float)c->loss_scale, c->loss_scale_window);
    tr->client = ps_client_new(c->servers, &co, err);
    if (!tr->client)
        return PS_EINVAL;
    ps_client_set_same_host(tr->client, c->same_host);
    if (tr->n_stages > 1)
        ps_client_set_stage(tr->client, tr->world_rank, tr->stage, tr->n_stages);
    /* the reader fills its windows while the job is joined (a job that
     * turns out to be past clock 0 restarts it there) */
    if (tr->stream && (rc = ps_stream_start(tr->stream, 0, err)) != PS_OK)
        return rc;
    for (int tries = 1;; tries++) {
        rc = join(tr, tries > 1, err);
        if (!ps_worker_recoverable(rc) || tries == 100)
            break;
        ps_log(PS_LOG_WARN, "worker %u: joining job '%s' failed (%s); again", tr->rank, c->job,
               err->msg);
    }
    if (rc != PS_OK)
        return rc;
    if (tr->stream) {
        ps_log(PS_LOG_INFO,
               "worker %u: job '%s': model %s, %llu parameters over %u shards; streaming %zu "
               "partitions of '%s' (window %lld, %lld batches ahead), %llu steps in the job%s",
               tr->rank, c->job, ps_worker_model_name(c),
               (unsigned long long)ps_net_n_params(tr->net), ps_client_n_shards(tr->client),
               ps_stream_n_parts(tr->stream), c->train_data, (long long)c->shuffle_window,
               (long long)c->prefetch_batches, (unsigned long long)job_steps(tr),
               ps_stream_job_steps(tr->stream) ? "" : " (not known before its end)");
        return tr->clock ? ps_stream_start(tr->stream, (uint64_t)tr->clock, err) : PS_OK;
    }
    ps_log(PS_LOG_INFO,
           "worker %u: job '%s': model %s, %llu parameters in %u tables (%u slices on the wire) "
           "over %u shards; %zu training samples, %llu steps per epoch",
           tr->rank, c->job, ps_worker_model_name(c), (unsigned long long)ps_net_n_params(tr->net),
           ps_net_n_tables(tr->net), ps_net_n_slices(tr->net), ps_client_n_shards(tr->client),
           tr->n_train, (unsigned long long)pswk_steps_per_epoch(tr));
    return rc;
}

/* This worker's part of the step's batch, from position lo of the epoch's
 * order, and its dropout keys: sample i is at place first + i of the
 * global batch. */
static void gather(trainer_t *tr, uint64_t lo, uint64_t first)
{
    size_t n = tr->cur_batch;
    if (tr->text)
        ps_text_gather(tr->text, tr->order + lo, n, tr->bx, tr->by);
    else
        ps_data_gather(&tr->train, tr->order + lo, n, tr->bx, tr->by);
    for (size_t i = 0; i < n; i++)
        tr->keys[i] = ps_net_sample_key((uint64_t)tr->cfg->seed, (uint64_t)tr->clock, first + i);
    ps_net_set_sample_keys(tr->net, tr->keys, n);
}

/* One step: gather this worker's part of the batch; forward, waiting for
 * each slice's new parameters (pulled by the last step) just before it is
 * read; backprop, pushing each slice as its gradient is final. The step
 * ends with the pulls in flight: they arrive while the next batch is
 * gathered and the first layers compute. fp16 waits for all at the end (the
 * loss scale needs every reply's flags). */
static int run_step(trainer_t *tr, const float *x, const float *y, double *loss_sum,
                    ps_errbuf_t *err);

static int train_step(trainer_t *tr, uint64_t step, double *loss_sum, ps_errbuf_t *err)
{
    if (tr->n_stages > 1)
        return pswk_pipe_step(tr, step, loss_sum, err);
    uint64_t g_full = (uint64_t)tr->world * (uint64_t)tr->cfg->batch_size;
    uint64_t start = step * g_full;
    uint64_t g = tr->n_train - start < g_full ? tr->n_train - start : g_full;
    uint64_t lo = start + tr->rank * g / tr->world, hi = start + (tr->rank + 1) * g / tr->world;
    tr->cur_batch = (size_t)(hi - lo);
    gather(tr, lo, lo - start);
    return run_step(tr, tr->bx, tr->by, loss_sum, err);
}

/* A streamed batch: its samples, their dropout keys, the step. */
static int stream_batch_step(trainer_t *tr, const ps_stream_batch_t *b, double *loss_sum,
                             ps_errbuf_t *err)
{
    assert(b->index == (uint64_t)tr->clock);
    tr->cur_batch = b->dense.n;
    for (size_t i = 0; i < b->dense.n; i++)
        tr->keys[i] =
            ps_net_sample_key((uint64_t)tr->cfg->seed, (uint64_t)tr->clock, b->dense.place[i]);
    ps_net_set_sample_keys(tr->net, tr->keys, b->dense.n);
    int rc = run_step(tr, b->dense.x, b->dense.y, loss_sum, err);
    if (rc == PS_OK)
        tr->samples = b->samples_before + b->dense.n;
    return rc;
}

/* The step on the batch x, y of cur_batch samples (see train_step). */
static int run_step(trainer_t *tr, const float *x, const float *y, double *loss_sum,
                    ps_errbuf_t *err)
{
    /* Forward waits for each slice before it pushes it again; a batch with
     * no samples runs no forward, so it waits for all here: never two
     * requests of one slice in flight. */
    if (tr->cur_batch == 0) {
        int rc = settle(tr, err);
        if (rc != PS_OK)
            return rc;
    }
    tr->send_rc = PS_OK;
    tr->wait_rc = PS_OK;
    bool fp16 = tr->cfg->precision == PS__DTYPE__F16;
    /* fp16 decides "overflow or not" for the whole step before sending any
     * table, so it gives up the push-as-you-go overlap. */
    int64_t t_pass = ps_time_ns();
    double loss = ps_net_train_batch(tr->net, x, y, tr->cur_batch, pswk_params_needed,
                                     fp16 ? NULL : pswk_grad_ready, tr);
    ps_trace_span(tr->trace, PS_SPAN_TRAIN, t_pass, ps_time_ns(), -1);
    if (tr->wait_rc != PS_OK) {
        *err = tr->wait_err;
        return tr->wait_rc;
    }
    *loss_sum += loss;
    if (fp16)
        push_scaled(tr);
    if (tr->send_rc != PS_OK)
        return ps_err_set(err, tr->send_rc, "worker %u: cannot send push of clock %lld: %s",
                          tr->rank, (long long)tr->clock, ps_strerror(tr->send_rc));
    if (fp16) {
        int rc = ps_client_wait(tr->client, err);
        if (rc != PS_OK)
            return rc;
        bool skipped = (ps_client_reply_flags(tr->client) & PS_FLAG_SKIPPED) != 0;
        if (ps_loss_scale_update(&tr->scaler, skipped) && skipped && tr->rank == 0)
            ps_log(PS_LOG_NOTICE,
                   "worker 0: fp16 overflow at clock %lld: step skipped, loss "
                   "scale now %g",
                   (long long)tr->clock, (double)tr->scaler.scale);
    }
    tr->clock++;
    tr->samples += tr->cur_batch;
    return PS_OK;
}

/* The worker's stats socket: info and metrics, at most twice a second. */
static void publish_stats(trainer_t *tr, int64_t epoch, bool force)
{
    double now = ps_time_wall_s();
    if (!tr->statsd || (!force && now - tr->last_publish < 0.5))
        return;
    tr->last_publish = now;
    double wall = now - tr->t_start;
    ps_progress_t p = {
        .epoch = epoch,
        .clock = tr->clock,
        .samples = tr->samples,
        .samples_per_s = wall > 0 ? (double)tr->samples / wall : 0,
        .loss = tr->last_loss,
        .uptime_s = wall,
        .loss_scale = tr->scaler.scale,
        .skipped_steps = tr->scaler.n_skipped,
        .recoveries = tr->recoveries,
        .bytes_sent = ps_client_bytes_sent(tr->client),
        .bytes_received = ps_client_bytes_received(tr->client),
        .requests = ps_client_requests(tr->client),
    };
    ps_report_progress(tr->statsd, tr->cfg, tr->rank, tr->world, &p);
}

/* Text windows too: this is ps_text_epoch_order's shuffle. */
static void shuffle_epoch(trainer_t *tr, int64_t epoch)
{
    ps_rng_t rng;
    ps_rng_seed(&rng, ps_rng_mix((uint64_t)tr->cfg->seed, (uint64_t)epoch));
    for (size_t i = 0; i < tr->n_train; i++)
        tr->order[i] = (uint32_t)i;
    ps_rng_shuffle_u32(&rng, tr->order, tr->n_train);
}

/* Reads every slice's parameters at clock (the recovery's refetch). */
static int pull_params(void *ctx, int64_t clock, ps_errbuf_t *err)
{
    trainer_t *tr = ctx;
    int rc = PS_OK;
    for (uint32_t id = 0; rc == PS_OK && id < ps_net_n_slices(tr->net); id++)
        rc = ps_client_pull(tr->client, id, clock, 0, ps_net_slice_params(tr->net, id));
    return rc == PS_OK ? ps_client_wait(tr->client, err) : rc;
}

/* The servers declared this worker dead (it was stopped or cut off past
 * their heartbeat timeout), a shard restarted from a checkpoint, or the job
 * was rolled back: rejoin, let the client bring every shard to one clock,
 * and resume there. The data position follows from the clock, so the steps
 * replayed are the very steps of an uninterrupted run. Under BSP that
 * needs every chunk at the resume clock exactly: a worker that died after
 * pushing some tables of a step let those chunks complete the round, and
 * the replayed step must read their parameters from before it, which only
 * a rollback to a checkpoint gives back. */
static int recover(trainer_t *tr, int why, ps_errbuf_t *err)
{
    if (tr->n_stages > 1)
        return pswk_pipe_recover(tr, why, pull_params, err);
    int64_t clock;
    int rc = ps_worker_recover(tr->client, tr->cfg, tr->rank, why, tr->clock, &tr->recoveries,
                               pull_params, tr, &clock, err);
    if (rc != PS_OK)
        return rc;
    tr->clock = clock;
    if (tr->cfg->precision == PS__DTYPE__F16)
        adopt_scaler(tr);
    return tr->stream ? ps_stream_start(tr->stream, (uint64_t)clock, err) : PS_OK;
}

typedef struct {
    int64_t epoch; /* 0: none started */
    double t0, last_progress, loss_sum;
    uint64_t n0;      /* tr->samples when it started */
    int64_t wait0_ns; /* tr->server_wait_ns when it started */
    double reader0_s; /* stream: the reader wait when it started */
} epoch_t;

static void end_epoch(trainer_t *tr, const epoch_t *e)
{
    if (!e->epoch)
        return;
    uint64_t n = tr->samples - e->n0;
    const ps_worker_config_t *c = tr->cfg;
    bool eval = pswk_is_lead(tr) && c->eval_every && e->epoch % c->eval_every == 0;
    double reader = tr->stream ? ps_stream_wait_s(tr->stream) - e->reader0_s : -1;
    pswk_report_epoch(tr, e->epoch, n ? e->loss_sum / (double)n : 0, n, ps_time_wall_s() - e->t0,
                      (double)(tr->server_wait_ns - e->wait0_ns) / 1e9, reader, eval);
}

/* On a terminal, rank 0 keeps one live line up to date (\r, 4 times a
 * second); elsewhere progress goes to the log every progress_every_s. */
static void tty_progress(trainer_t *tr, epoch_t *e, uint64_t step, uint64_t spe, double now)
{
    static double last;
    if (now - last < 0.25 && step + 1 < spe)
        return;
    last = now;
    int width = 30, filled = (int)((double)(step + 1) * width / (double)spe);
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[width] = '\0';
    uint64_t n = tr->samples - e->n0;
    fprintf(stderr, "\repoch %lld/%lld [%s] %5.1f%% loss %.4f %8.0f samples/s%s",
            (long long)e->epoch, (long long)tr->cfg->epochs, bar,
            100.0 * (double)(step + 1) / (double)spe, e->loss_sum / (double)(n ? n : 1),
            (double)n * tr->world / (now - e->t0 + 1e-9), step + 1 == spe ? "\n" : "");
}

static void log_progress(trainer_t *tr, epoch_t *e, uint64_t step, uint64_t spe)
{
    double now = ps_time_wall_s();
    if (pswk_is_lead(tr) && tr->is_tty) {
        tty_progress(tr, e, step, spe, now);
        return;
    }
    if (!pswk_is_lead(tr) || !tr->cfg->progress_every_s ||
        now - e->last_progress < (double)tr->cfg->progress_every_s)
        return;
    e->last_progress = now;
    uint64_t n = tr->samples - e->n0;
    ps_log(PS_LOG_INFO, "worker 0: epoch %lld step %llu/%llu loss %.4f samples/s %.0f",
           (long long)e->epoch, (unsigned long long)step + 1, (unsigned long long)spe,
           e->loss_sum / (double)(n ? n : 1), (double)n * tr->world / (now - e->t0));
}

/* Steps are numbered globally by the clock: epoch = clock / steps_per_epoch
 * + 1, step = clock % steps_per_epoch, so a worker can resume anywhere. */
static int train(trainer_t *tr, volatile sig_atomic_t *stop, int64_t *epochs_run, ps_errbuf_t *err)
{
    const ps_worker_config_t *c = tr->cfg;
    uint64_t spe = pswk_steps_per_epoch(tr);
    uint64_t total = spe * (uint64_t)c->epochs;
    if (c->max_steps && (uint64_t)c->max_steps < total)
        total = (uint64_t)c->max_steps;
    /* evals_per_epoch: rungs for ps-tune's early stopping, whatever the
     * data size; eval_every_steps: a fixed cadence */
    uint64_t eval_every_steps = (uint64_t)c->eval_every_steps;
    if (c->evals_per_epoch)
        eval_every_steps = (spe + (uint64_t)c->evals_per_epoch - 1) / (uint64_t)c->evals_per_epoch;
    if (pswk_is_lead(tr) && tr->t_train == 0)
        ps_report_start(spe, total, tr->n_train, tr->val.n, tr->test.n);
    if (tr->t_train == 0)
        tr->t_train = ps_time_wall_s();
    epoch_t e = {0};
    while ((uint64_t)tr->clock < total) {
        if (*stop)
            return ps_err_set(err, PS_EINTR, "worker %u: stopped by signal", tr->rank);
        int64_t epoch = (int64_t)((uint64_t)tr->clock / spe) + 1;
        uint64_t step = (uint64_t)tr->clock % spe;
        if (epoch != e.epoch) {
            end_epoch(tr, &e);
            shuffle_epoch(tr, epoch);
            e = (epoch_t){.epoch = epoch,
                          .t0 = ps_time_wall_s(),
                          .last_progress = ps_time_wall_s(),
                          .n0 = tr->samples,
                          .wait0_ns = tr->server_wait_ns};
            *epochs_run = epoch;
        }
        int64_t t0 = ps_time_ns();
        int rc = train_step(tr, step, &e.loss_sum, err);
        pswk_trace_step(tr, t0, rc == PS_OK);
        /* evaluation and the end of an epoch read the parameters */
        bool eval_now = pswk_is_lead(tr) && eval_every_steps && tr->clock % eval_every_steps == 0;
        if (rc == PS_OK &&
            (eval_now || (uint64_t)tr->clock % spe == 0 || (uint64_t)tr->clock >= total))
            rc = settle(tr, err);
        if (ps_worker_recoverable(rc))
            rc = recover(tr, rc, err);
        if (rc != PS_OK)
            return rc;
        if (pswk_is_lead(tr) && eval_every_steps && tr->clock % eval_every_steps == 0)
            pswk_report_eval(tr);
        log_progress(tr, &e, step, spe);
        uint64_t n = tr->samples - e.n0;
        tr->last_loss = n ? e.loss_sum / (double)n : 0;
        ps_client_report(tr->client, tr->samples, tr->last_loss);
        publish_stats(tr, e.epoch, false);
    }
    end_epoch(tr, &e);
    publish_stats(tr, e.epoch, true);
    return PS_OK;
}

/* Streamed: batch after batch of the reader, each trained at its clock.
 * An epoch ends with the batch after which every partition of the worker
 * has finished one more pass; the worker is done when its partitions are
 * (or at max_steps). evals_per_epoch counts one pass of the longest
 * partition (known for IDX and records). */
static int train_stream(trainer_t *tr, volatile sig_atomic_t *stop, int64_t *epochs_run,
                        ps_errbuf_t *err)
{
    const ps_worker_config_t *c = tr->cfg;
    uint64_t spp = ps_stream_steps_per_pass(tr->stream), spe = pswk_steps_per_epoch(tr);
    uint64_t total = c->max_steps ? (uint64_t)c->max_steps : UINT64_MAX;
    uint64_t eval_every_steps = (uint64_t)c->eval_every_steps;
    if (c->evals_per_epoch && spp)
        eval_every_steps = (spp + (uint64_t)c->evals_per_epoch - 1) / (uint64_t)c->evals_per_epoch;
    if (tr->rank == 0 && tr->t_train == 0)
        ps_report_start(spp, ps_stream_job_steps(tr->stream) ? job_steps(tr) : 0, tr->n_train, 0,
                        tr->test.n);
    if (tr->t_train == 0)
        tr->t_train = ps_time_wall_s();
    epoch_t e = {0};
    while ((uint64_t)tr->clock < total) {
        if (*stop)
            return ps_err_set(err, PS_EINTR, "worker %u: stopped by signal", tr->rank);
        const ps_stream_batch_t *b;
        /* an epoch starts before its first batch: a wait for it is the epoch's */
        double t_mark = ps_time_wall_s(), wait_mark = ps_stream_wait_s(tr->stream);
        int rc = ps_stream_next(tr->stream, &b, err);
        if (rc == 0)
            break; /* this worker's partitions are done */
        if (rc < 0)
            return rc;
        if (!e.epoch) {
            e = (epoch_t){.epoch = b->epochs_before + 1,
                          .t0 = t_mark,
                          .last_progress = t_mark,
                          .n0 = b->samples_before,
                          .wait0_ns = tr->server_wait_ns,
                          .reader0_s = wait_mark};
            *epochs_run = e.epoch;
        }
        bool epoch_end = b->epochs_done > b->epochs_before;
        int64_t t0 = ps_time_ns();
        rc = stream_batch_step(tr, b, &e.loss_sum, err);
        pswk_trace_step(tr, t0, rc == PS_OK);
        bool eval_now = tr->rank == 0 && eval_every_steps && tr->clock % eval_every_steps == 0;
        if (rc == PS_OK && (eval_now || epoch_end || (uint64_t)tr->clock >= total))
            rc = settle(tr, err);
        if (ps_worker_recoverable(rc) && (rc = recover(tr, rc, err)) == PS_OK) {
            e.epoch = 0; /* the reader restarted at the clock recovery gave */
            continue;
        }
        if (rc != PS_OK)
            return rc;
        tr->epochs_seen = b->epochs_done;
        if (eval_now)
            pswk_report_eval(tr);
        if (spp)
            log_progress(tr, &e, ((uint64_t)tr->clock - 1) % spe, spe);
        uint64_t n = tr->samples - e.n0;
        tr->last_loss = n ? e.loss_sum / (double)n : 0;
        ps_client_report(tr->client, tr->samples, tr->last_loss);
        publish_stats(tr, e.epoch, false);
        if (epoch_end) {
            end_epoch(tr, &e);
            e.epoch = 0;
        }
    }
    end_epoch(tr, &e);
    publish_stats(tr, e.epoch, true);
    return PS_OK;
}

/* After the last step (and, with pipeline stages, the barrier of the
 * stages): say DONE and read the final model once every worker is done. A shard that restarts or a rollback meanwhile sends the worker
 * back to training from the clock recovery gives (the steps after it are
 * replayed); only a model every worker finished is read. */
static int train_to_the_end(trainer_t *tr, volatile sig_atomic_t *stop, int64_t *epochs_run,
                            ps_errbuf_t *err)
{
    for (;;) {
        int rc =
            tr->stream ? train_stream(tr, stop, epochs_run, err) : train(tr, stop, epochs_run, err);
        bool resumed = false;
        /* pipeline stages: none leaves while another may need it to replay */
        if (rc == PS_OK && tr->n_stages > 1 && !tr->pipe_finished) {
            ps_failpoint("pipeline.before_barrier");
            rc = pswk_pipe_finish(tr, pull_params, &resumed, err);
        }
        if (ps_worker_recoverable(rc) && (rc = recover(tr, rc, err)) == PS_OK)
            continue;
        if (rc != PS_OK)
            return rc;
        if (resumed)
            continue;
        rc = ps_client_done(tr->client, err);
        for (uint32_t id = 0; rc == PS_OK && id < ps_net_n_slices(tr->net); id++)
            rc = ps_client_pull(tr->client, id, tr->clock, PS_FLAG_AFTER_ALL_DONE,
                                ps_net_slice_params(tr->net, id));
        if (rc == PS_OK)
            rc = ps_client_wait(tr->client, err);
        if (!ps_worker_recoverable(rc))
            return rc;
        ps_log(PS_LOG_WARN, "worker %u: the final model was not complete: %s", tr->rank, err->msg);
        if ((rc = recover(tr, rc, err)) != PS_OK)
            return rc;
    }
}

/* Rank 0 writes the final model: tables and model.json (with the test
 * figures, if any), ONNX. */
static int export_model(trainer_t *tr, const ps_net_eval_t *test, ps_errbuf_t *err)
{
    const ps_worker_config_t *c = tr->cfg;
    int rc = PS_OK;
    if (tr->n_stages > 1)
        return pswk_pipe_export(tr, err);
    if (*c->save_model) {
        ps_export_info_t info = {ps_worker_model_name(c), &tr->desc, tr->clock, c->seed,
                                 tr->test.n ? test : NULL};
        if ((rc = ps_export_model(c->save_model, &info, tr->net, err)) == PS_OK)
            ps_log(PS_LOG_INFO, "worker %u: model saved to '%s'", tr->rank, c->save_model);
    }
    if (rc == PS_OK && *c->export_onnx &&
        (rc = ps_onnx_write(c->export_onnx, &tr->desc, tr->net, err)) == PS_OK)
        ps_log(PS_LOG_INFO, "worker %u: ONNX model written to '%s'", tr->rank, c->export_onnx);
    return rc;
}

/* With the final model read: evaluate it (once: the export and the done
 * event share it), export it (rank 0), leave. The model is final whatever
 * BYE's fate: a shard that misses it ends the job at its job_ttl_s, so a
 * failed BYE is a warning, not an error. */
static int finish(trainer_t *tr, int64_t epochs_run, ps_errbuf_t *err)
{
    int rc;
    ps_net_eval_t test = {0};
    if (tr->test.n)
        ps_net_evaluate(tr->net, &tr->test, &test);
    if (tr->rank == 0 && (rc = export_model(tr, &test, err)) != PS_OK) /* each stage's */
        return rc;
    ps_failpoint("worker.before_bye");
    ps_client_stop_heartbeats(tr->client);
    ps_errbuf_t bye_err = {0};
    if (ps_client_bye(tr->client, &bye_err) != PS_OK)
        ps_log(PS_LOG_WARN,
               "worker %u: the model is final but BYE failed (%s); the shards end the "
               "job at their job_ttl_s",
               tr->rank, bye_err.msg);
    ps_event_t done;
    ps_report_summary(&done, tr->cfg, tr->rank, tr->world, epochs_run, tr->clock, tr->samples,
                      ps_time_wall_s() - tr->t_start, tr->client);
    ps_event_set_int(&done, PS_EF_SKIPPED_STEPS, (int64_t)tr->scaler.n_skipped);
    if (tr->n_stages > 1)
        pswk_pipe_report(tr, &done);
    char reader[160] = "";
    if (tr->stream)
        snprintf(reader, sizeof reader,
                 "; read %llu bytes of data, the reader thread used %.2f CPU-s, training waited "
                 "%.3f s for it",
                 (unsigned long long)ps_stream_bytes_read(tr->stream),
                 ps_stream_reader_cpu_s(tr->stream), ps_stream_wait_s(tr->stream));
    ps_log(PS_LOG_INFO, "worker %u: peak RSS %.1f MB%s", tr->rank,
           (double)ps_report_peak_rss_bytes() / 1e6, reader);
    if (tr->test.n)
        ps_report_metrics(&done, PS_EVAL_TEST, &test, ps_net_task(tr->net));
    if (pswk_is_lead(tr))
        pswk_add_metrics(tr, &tr->val, PS_EVAL_VAL, &done);
    if (tr->stream)
        ps_report_stream(&done, tr->stream);
    ps_event_print(&done, stdout);
    ps_event_fini(&done);
    return PS_OK;
}

/* trace_dir: the timeline, named for the viewer by this worker's place. */
static int open_trace(trainer_t *tr, ps_errbuf_t *err)
{
    char label[96];
    if (tr->n_stages > 1)
        snprintf(label, sizeof label, "worker %u (replica %u, stage %u of %u)", tr->world_rank,
                 tr->rank, tr->stage, tr->n_stages);
    else
        snprintf(label, sizeof label, "worker %u", tr->world_rank);
    tr->trace = ps_trace_open(tr->cfg->trace_dir, tr->world_rank, label,
                              (uint64_t)tr->cfg->trace_steps, err);
    return tr->trace ? PS_OK : err->code;
}

int ps_trainer_run(const ps_worker_config_t *cfg, volatile sig_atomic_t *stop, ps_errbuf_t *err)
{
    if (PS_MODEL_IS_SPARSE(cfg->model))
        return ps_sparse_trainer_run(cfg, stop, err);
    /* a pipeline: the data partition and the stage job go by replica */
    uint32_t p = (uint32_t)cfg->pipeline_stages;
    trainer_t tr = {.cfg = cfg,
                    .stop = stop,
                    .is_tty = isatty(2) && cfg->progress_every_s > 0,
                    .rank = (uint32_t)cfg->rank / p,
                    .world = (uint32_t)cfg->world / p,
                    .world_rank = (uint32_t)cfg->rank,
                    .stage = (uint32_t)cfg->rank % p,
                    .n_stages = p};
    snprintf(tr.stage_job, sizeof tr.stage_job, "%s.stage%u", cfg->job, tr.stage);
    tr.t_start = ps_time_wall_s();
    int64_t epochs_run = 0;
    int rc = pswk_trainer_load_data(&tr, err);
    if (rc == PS_OK && cfg->standardize)
        ps_data_standardize(&tr.train, tr.test.n ? &tr.test : NULL, tr.val.n ? &tr.val : NULL);
    if (rc == PS_OK)
        rc = pswk_trainer_build_net(&tr, err);
    /* before the stage links: a trace_dir that fails stops this stage
     * before its peers wait for it */
    if (rc == PS_OK && *cfg->trace_dir)
        rc = open_trace(&tr, err);
    if (rc == PS_OK && p > 1)
        rc = pswk_pipe_open(&tr, err);
    if (rc == PS_OK)
        rc = setup(&tr, err);
    if (rc == PS_OK && *cfg->stats_socket) {
        if (!(tr.statsd = ps_statsd_start(cfg->stats_socket, -1, -1, NULL, err)))
            rc = err->code;
        else
            ps_report_static(tr.statsd, cfg, tr.net);
    }
    if (rc == PS_OK)
        rc = train_to_the_end(&tr, stop, &epochs_run, err);
    if (rc == PS_OK)
        rc = finish(&tr, epochs_run, err);
    ps_errbuf_t trace_err;
    if (ps_trace_close(&tr.trace, &trace_err) != PS_OK)
        ps_log(PS_LOG_WARN, "worker %u: %s", tr.world_rank, trace_err.msg);
    ps_statsd_stop(&tr.statsd);
    ps_client_destroy(&tr.client);
    pswk_pipe_free(&tr);
    ps_net_destroy(&tr.net);
    ps_stream_destroy(&tr.stream);
    ps_text_destroy(&tr.text);
    ps_data_free(&tr.train);
    ps_data_free(&tr.test);
    ps_data_free(&tr.val);
    free(tr.order);
    free(tr.bx);
    free(tr.by);
    free(tr.keys);
    return rc;
}
