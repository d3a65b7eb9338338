/* ps_trainer_int.h - the dense trainer's state, shared by its files
 * (ps_trainer.c: joining, the steps, recovery, the end; ps_trainer_data.c:
 * the data and the net it trains) and nothing else. Functions here carry
 * the worker's private prefix pswk_. Worker main thread only. */
#ifndef PS_TRAINER_INT_H
#define PS_TRAINER_INT_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "ps_client.h"
#include "ps_data.h"
#include "ps_event.h"
#include "ps_loss_scale.h"
#include "ps_net.h"
#include "ps_pipe.h"
#include "ps_statsd.h"
#include "ps_stream.h"
#include "ps_text.h"
#include "ps_trace.h"
#include "ps_worker.h"

typedef struct {
    const ps_worker_config_t *cfg;
    volatile sig_atomic_t *stop;
    uint32_t rank, world;
    ps_dataset_t train, test;
    ps_text_t *text;      /* data_format text: the training windows (train unused) */
    ps_stream_t *stream;  /* stream yes: the training batches (train holds no samples) */
    uint32_t epochs_seen; /* stream: passes all of this worker's partitions finished */
    size_t n_train;       /* samples of an epoch: rows of train, windows of text, or (stream)
                            the whole data set's if known */
    ps_netdesc_t desc;
    ps_net_t *net;
    ps_client_t *client;
    uint32_t *order;  /* this epoch's shuffle */
    ps_dataset_t val; /* split off the training data (val_fraction) */
    float *bx, *by;   /* batch buffers */
    uint64_t *keys;   /* dropout keys of this worker's part of the batch */
    int64_t clock;    /* steps pushed so far */
    size_t cur_batch; /* samples in the step being pushed */
    int send_rc;
    int wait_rc; /* a wait in forward failed: why (detail in wait_err) */
    ps_errbuf_t wait_err;
    ps_loss_scale_t scaler; /* fp16 only */
    uint64_t samples;       /* samples trained by this worker */
    int64_t server_wait_ns; /* blocked on the servers' replies in training, so far */
    double t_start;
    double t_train;      /* when the first step started */
    unsigned recoveries; /* rejoins and rollbacks so far */
    bool is_tty;         /* stderr is a terminal: a live progress line */
    ps_statsd_t *statsd; /* optional stats socket */
    double last_publish;
    double last_loss;
    char fingerprint[4096]; /* the options that define the job (ps_worker_fingerprint) */
    /* pipeline_stages > 1: rank and world above are the replica and the
     * replicas (the data partition and the stage job's ranks) */
    uint32_t world_rank, stage, n_stages;
    char stage_job[PS_OPT_STR_MAX + 16]; /* JOB.stage<s>: this stage's job on the servers */
    ps_pipe_t *pipe;
    size_t in_len, out_len; /* floats per sample into and out of this stage */
    size_t data_row;        /* floats per data row (bx), whatever the stage's input */
    float *pin;             /* stage > 0: the step's inputs (the backward reads them) */
    float *pdy;             /* before the last stage: a micro-batch's output gradient */
    /* before the last stage, unless pipeline_recompute: micro-batch m's
     * net, its activations kept for its backward (micro_net[0] is net, the
     * others its siblings); NULL: one net, forward recomputed in backward */
    ps_net_t **micro_net;
    /* stage > 0, the step's last micro-batch: the tables its backward made
     * final, pushed once its input gradient is on its way (pipe_defer) */
    uint32_t *deferred;
    size_t n_deferred;
    int64_t pipe_step_ns;   /* time in pipeline training steps */
    int64_t pipe_wait_ns;   /* of which waiting for stage peers */
    uint32_t sync_round;    /* the last sync round (ps_trainer_sync.c) */
    bool pipe_finished;     /* every stage finished training: no round any more */
    unsigned nockpt_rounds; /* rounds begun again for a checkpoint gone meanwhile */
    ps_trace_t *trace;      /* trace_dir: the timeline; NULL = off */
} trainer_t;

/* The trainer's callbacks to the net (ps_trainer_hooks.c): push a slice whose
 * gradient is final; wait for a slice's parameters before forward reads it. */
void pswk_grad_ready(void *ctx, uint32_t id);
int pswk_params_needed(void *ctx, uint32_t id);
/* A training step that began at t0_ns (ps_time_ns) ended, done (the
 * clock moved on) or abandoned: its span in the timeline (around every
 * span it made, so they nest either way; arg the step's clock), and a
 * done step counts towards trace_steps, after which the file may be
 * complete (a failure to write it is logged; training goes on). */
void pswk_trace_step(trainer_t *tr, int64_t t0_ns, bool done);

/* pipeline_stages > 1 (ps_trainer_pipe.c). The stage's net: the split
 * (stage_layers or the balance) of spec, this stage's layers for
 * micro-batches of batch_size / micro_batches, the buffers a step needs.
 * Errors name the option and the position. */
int pswk_pipe_build_net(trainer_t *tr, const ps_netspec_t *spec, ps_errbuf_t *err);
/* Links to the stage peers (ps_pipe_new with the job's options). */
int pswk_pipe_open(trainer_t *tr, ps_errbuf_t *err);
/* One step of the GPipe schedule (docs/architecture.md, "Pipeline
 * stages"); as the data-parallel step, pushes each slice once. Errors name
 * the peer, or are the servers'. */
int pswk_pipe_step(trainer_t *tr, uint64_t step, double *loss_sum, ps_errbuf_t *err);
/* Replica 0: every stage writes its tables into save_model; stage 0, once
 * the stages after it say so, the model.json of the whole net. */
int pswk_pipe_export(trainer_t *tr, ps_errbuf_t *err);
/* The summary's pipeline fields. */
void pswk_pipe_report(const trainer_t *tr, ps_event_t *ev);
/* Frees what pswk_pipe_build_net and pswk_pipe_open made. */
void pswk_pipe_free(trainer_t *tr);
/* ps_trainer_sync.c. A stage met the recoverable error why (its text in
 * err), or a neighbour announced a recovery: every stage of the replica
 * agrees on the clock to resume at (the lowest any stage's job recovers
 * to), brings its job there and refetch(tr, clock)es its parameters;
 * tr->clock is then where to train on. An error names the stage and the
 * peer; after pswk_pipe_finish passed, a failure fails the job. */
int pswk_pipe_recover(trainer_t *tr, int why,
                      int (*refetch)(void *ctx, int64_t clock, ps_errbuf_t *err), ps_errbuf_t *err);
/* The barrier after training: the same round at this stage's clock. PS_OK
 * with *resumed false when every stage finished; *resumed true when one
 * recovered meanwhile (tr->clock: where to train on, parameters pulled). */
int pswk_pipe_finish(trainer_t *tr, int (*refetch)(void *ctx, int64_t clock, ps_errbuf_t *err),
                     bool *resumed, ps_errbuf_t *err);

/* The job's data as cfg says: training rows (or, for data_format text,
 * windows of a corpus, the held-out tail as the validation set), the
 * validation split and the test set. Sets train, val, test, text and
 * n_train; with stream yes the stream of this worker's partitions instead
 * of train's rows (train says only their width and classes; only rank 0
 * holds the test set). Errors name the file. */
int pswk_trainer_load_data(trainer_t *tr, ps_errbuf_t *err);
/* What of the training set this worker keeps in memory (PS_DATA_*): all
 * of it, or on a pipeline stage only what it reads (the first stage the
 * features, the last the labels, a middle one neither: the count and the
 * shared order are enough). A text corpus is kept whole (both ends read
 * its bytes: inputs and targets). */
unsigned pswk_data_keep(const trainer_t *tr);
/* Floats per gathered row of the step's batch (bx): a data row, or none
 * on a pipeline stage that keeps no rows. Needs data_row (build_net). */
static inline size_t pswk_step_row(const trainer_t *tr)
{
    /* a pipeline stage after the first takes activations: it gathers data
     * rows only if it holds them (a corpus: the last reads its targets) */
    if (tr->n_stages > 1 && !tr->text && !tr->train.x && !tr->train.x8)
        return 0;
    return tr->data_row;
}
/* memory_budget_mb (ps_trainer_budget.c): with spec's items [lo, hi) at
 * max_batch samples, what this worker will hold (the process so far, the
 * net's parameters, gradients, n_nets times its activations and scratch
 * (a stage keeping each micro-batch's activations), the step's
 * buffers, same_host slots) against the budget, before any of the net is
 * allocated. PS_ENOMEM naming the option, the estimate, each part and
 * pipeline_stages when it exceeds it; logs the estimate otherwise; PS_OK
 * at once without a budget. */
int pswk_check_budget(trainer_t *tr, const ps_netspec_t *spec, size_t lo, size_t hi,
                      size_t max_batch, size_t n_nets, ps_errbuf_t *err);
/* The net cfg describes, checked against the loaded data (row length,
 * labels, tokens; a stream checks each label as it reads it) and
 * initialised from the seed; the batch buffers for batch_size samples.
 * Errors name the option and the layer, or the file and the sample that
 * does not fit. */
int pswk_trainer_build_net(trainer_t *tr, ps_errbuf_t *err);

/* The worker that logs progress, evaluates and reports for the job: rank 0
 * (with pipeline stages, replica 0's stage 0; each stage's replica 0
 * exports its tables). */
static inline bool pswk_is_lead(const trainer_t *tr)
{
    return tr->rank == 0 && tr->stage == 0;
}

/* Steps of one epoch of the in-memory training set (the last may be
 * short); streamed, one pass of the longest partition (ps_trainer_data.c). */
uint64_t pswk_steps_per_epoch(const trainer_t *tr);
/* ps_trainer_report.c: the metrics of ds (test or validation set) into ev;
 * nothing if the set is empty. */
void pswk_add_metrics(const trainer_t *tr, const ps_dataset_t *ds, ps_eval_set_t set,
                      ps_event_t *ev);
/* The epoch event and log line (test metrics if evaluate; reader_s: the time
 * training waited for the data reader, or < 0 without a stream). */
void pswk_report_epoch(trainer_t *tr, int64_t epoch, double train_loss, uint64_t n, double epoch_s,
                       double wait_s, double reader_s, bool evaluate);
/* A mid-epoch evaluation event (validation and test metrics, wall time
 * since training began). */
void pswk_report_eval(trainer_t *tr);

#endif
