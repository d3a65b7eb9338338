/* ps_report.h - what a trainer tells the world: its event lines on stdout
 * (the schema of ps_event.h) and the sections of its stats socket (info,
 * metrics, tables, config: each built once with ps_doc). Worker thread. */
#ifndef PS_REPORT_H
#define PS_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps_client.h"
#include "ps_event.h"
#include "ps_net.h"
#include "ps_statsd.h"
#include "ps_stream.h"
#include "ps_worker.h"

/* Progress figures for the stats socket. */
typedef struct {
    int64_t epoch, clock;
    uint64_t samples;
    double samples_per_s, loss, uptime_s;
    double loss_scale;      /* fp16 */
    uint64_t skipped_steps; /* fp16 overflows */
    unsigned recoveries;
    uint64_t bytes_sent, bytes_received, requests;
} ps_progress_t;

/* Rank 0's {"event":"start"} line. */
void ps_report_start(uint64_t steps_per_epoch, uint64_t total_steps, size_t train_samples,
                     size_t val_samples, size_t test_samples);
/* The evaluation e of a test or validation set into ev, the task's
 * metrics: loss; accuracy (a classifier's, or a language model's next-byte
 * accuracy); MAE (a regressor); bits per byte (a language model); the AUC
 * of a bce head. */
void ps_report_metrics(ps_event_t *ev, ps_eval_set_t set, const ps_net_eval_t *e,
                       ps_net_task_t task);
/* "test_loss 0.3120 test_acc 0.8890" (or test_mae, test_bpb) into buf. */
const char *ps_report_metrics_text(const char *set, const ps_net_eval_t *e, ps_net_task_t task,
                                   char *buf, size_t cap);
/* This process's peak resident set so far (getrusage), in bytes. */
int64_t ps_report_peak_rss_bytes(void);
/* This process's rchar and read_bytes from /proc/self/io (0 where it
 * cannot be read). */
void ps_report_proc_io(int64_t *rchar, int64_t *read_bytes);
/* A streamed job's reading, set in its done event ev: the time training
 * waited for the reader, the data bytes read, /proc/self/io's rchar and
 * read_bytes, and the reader thread's CPU time. */
void ps_report_stream(ps_event_t *ev, ps_stream_t *s);
/* A {"event":"done"} event with the fields every trainer reports (model,
 * precision, rank, world, epochs, steps, samples, wall time, rate, bytes,
 * peak RSS):
 * the caller adds its metrics, prints and finis it. */
void ps_report_summary(ps_event_t *ev, const ps_worker_config_t *cfg, uint32_t rank, uint32_t world,
                       int64_t epochs, int64_t steps, uint64_t samples, double wall_s,
                       const ps_client_t *client);

/* The stats sections that do not change: the model's tables, the config. */
void ps_report_static(ps_statsd_t *sd, const ps_worker_config_t *cfg, const ps_net_t *net);
/* The stats sections that do: info and metrics. */
void ps_report_progress(ps_statsd_t *sd, const ps_worker_config_t *cfg, uint32_t rank,
                        uint32_t world, const ps_progress_t *p);

#endif
