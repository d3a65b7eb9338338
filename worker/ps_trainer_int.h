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
#include "ps_loss_scale.h"
#include "ps_net.h"
#include "ps_statsd.h"
#include "ps_stream.h"
#include "ps_text.h"
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
} trainer_t;

/* The job's data as cfg says: training rows (or, for data_format text,
 * windows of a corpus, the held-out tail as the validation set), the
 * validation split and the test set. Sets train, val, test, text and
 * n_train; with stream yes the stream of this worker's partitions instead
 * of train's rows (train says only their width and classes; only rank 0
 * holds the test set). Errors name the file. */
int pswk_trainer_load_data(trainer_t *tr, ps_errbuf_t *err);
/* The net cfg describes, checked against the loaded data (row length,
 * labels, tokens; a stream checks each label as it reads it) and
 * initialised from the seed; the batch buffers for batch_size samples.
 * Errors name the option and the layer, or the file and the sample that
 * does not fit. */
int pswk_trainer_build_net(trainer_t *tr, ps_errbuf_t *err);

#endif
