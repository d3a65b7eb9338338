/* ps_event.h - the event lines a trainer prints on stdout (one JSON object
 * per line: {"event":"epoch",...}) and the launcher and tuner read back.
 * One schema for both sides: every field any event may carry is listed
 * once below with its type, producers set fields by id and consumers get
 * them by id, so a field cannot be spelt two ways. JSON goes through
 * jansson both ways (escaped on output, parsed strictly on input). Any
 * thread; an event belongs to its caller. */
#ifndef PS_EVENT_H
#define PS_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ps_enum.h"

#define PS_EVENT_KIND_MAP(XX) \
    XX(START, "start")        \
    XX(EPOCH, "epoch")        \
    XX(EVAL, "eval")          \
    XX(DONE, "done")
#define PS_EVENT_KIND_MEMBER(e, s) PS_ENUM_MEMBER(PS_EVENT_, e)
typedef enum { PS_EVENT_KIND_MAP(PS_EVENT_KIND_MEMBER) PS_EVENT_UNKNOWN } ps_event_kind_t;
extern const char *const ps_event_kind_names[];

/* The metrics an evaluation reports, each as test_NAME and val_NAME. */
#define PS_EVAL_METRIC_MAP(XX) \
    XX(LOSS, "loss")           \
    XX(ACCURACY, "accuracy")   \
    XX(MAE, "mae")             \
    XX(AUC, "auc")             \
    XX(LOGLOSS, "logloss")     \
    XX(BPB, "bpb")

/* pipeline_stages: a stage's replica and stage, its time computing and
 * waiting for its peers in training steps, the bubble (that wait over the
 * steps' time); ps-launch: each stage's busy time (its busiest replica's)
 * and the mean bubble. */
#define PS_EVENT_PIPELINE_FIELDS(XX)            \
    XX(REPLICA, "replica", INT)                 \
    XX(STAGE, "stage", INT)                     \
    XX(STAGE_BUSY_S, "stage_busy_s", NUM)       \
    XX(PIPE_WAIT_S, "pipe_wait_s", NUM)         \
    XX(BUBBLE_FRACTION, "bubble_fraction", NUM) \
    XX(STAGE_BUSY_MS, "stage_busy_ms", INTS)

/* Every field: XX(ID, "name", TYPE), TYPE one of INT (int64), NUM
 * (double), STR, INTS (array of int64). */
#define PS_EVENT_FIELD_MAP(XX)                  \
    XX(MODEL, "model", STR)                     \
    XX(PRECISION, "precision", STR)             \
    XX(SKIPPED_STEPS, "skipped_steps", INT)     \
    XX(SERVERS, "servers", INT)                 \
    XX(WORKERS, "workers", INT)                 \
    XX(RANK, "rank", INT)                       \
    XX(WORLD, "world", INT)                     \
    XX(EPOCH, "epoch", NUM)                     \
    XX(EPOCHS, "epochs", INT)                   \
    XX(STEPS, "steps", INT)                     \
    XX(STEPS_PER_EPOCH, "steps_per_epoch", INT) \
    XX(TOTAL_STEPS, "total_steps", INT)         \
    XX(TRAIN_SAMPLES, "train_samples", INT)     \
    XX(VAL_SAMPLES, "val_samples", INT)         \
    XX(TEST_SAMPLES, "test_samples", INT)       \
    XX(SAMPLES, "samples", INT)                 \
    XX(TRAIN_LOSS, "train_loss", NUM)           \
    PS_EVAL_METRIC_MAP(PS_EVENT_TEST_FIELD)     \
    PS_EVAL_METRIC_MAP(PS_EVENT_VAL_FIELD)      \
    XX(EPOCH_S, "epoch_s", NUM)                 \
    XX(SERVER_WAIT_S, "server_wait_s", NUM)     \
    XX(WALL_S, "wall_s", NUM)                   \
    XX(SAMPLES_PER_S, "samples_per_s", NUM)     \
    XX(BYTES_SENT, "bytes_sent", INT)           \
    XX(BYTES_RECEIVED, "bytes_received", INT)   \
    XX(SHM_REQUESTS, "shm_requests", INT)       \
    XX(BELL_REQUESTS, "bell_requests", INT)     \
    XX(KEYS_PULLED, "keys_pulled", INT)         \
    XX(LOST_WORKERS, "lost_workers", INTS)      \
    XX(WORKER_RESTARTS, "worker_restarts", INT) \
    XX(READER_WAIT_S, "reader_wait_s", NUM)     \
    XX(DATA_BYTES, "data_bytes", INT)           \
    XX(IO_RCHAR, "io_rchar", INT)               \
    XX(IO_READ_BYTES, "io_read_bytes", INT)     \
    XX(READER_CPU_S, "reader_cpu_s", NUM)       \
    PS_EVENT_PIPELINE_FIELDS(XX)                \
    XX(PEAK_RSS_BYTES, "peak_rss_bytes", INT) /* a worker's; ps-launch: its largest */

typedef enum {
#define PS_EVENT_TEST_FIELD(e, s) PS_EF_TEST_##e,
#define PS_EVENT_VAL_FIELD(e, s) PS_EF_VAL_##e,
#define XX(id, name, type) PS_EF_##id,
    PS_EVENT_FIELD_MAP(XX)
#undef XX
#undef PS_EVENT_TEST_FIELD
#undef PS_EVENT_VAL_FIELD
        PS_EF_COUNT
} ps_event_field_t;

/* Which evaluation a metric field belongs to. */
typedef enum { PS_EVAL_TEST, PS_EVAL_VAL } ps_eval_set_t;
/* The field of metric index k (0 = loss, ... in PS_EVAL_METRIC_MAP order)
 * for set; PS_EF_COUNT if k is out of range. */
ps_event_field_t ps_event_metric_field(ps_eval_set_t set, int k);
/* The number of metrics in PS_EVAL_METRIC_MAP. */
int ps_event_n_metrics(void);

/* A field's name ("test_accuracy"), and the field of a name (PS_EF_COUNT
 * if none). */
const char *ps_event_field_name(ps_event_field_t f);
ps_event_field_t ps_event_field_find(const char *name);

typedef struct {
    ps_event_kind_t kind;
    bool has[PS_EF_COUNT];
    int64_t i[PS_EF_COUNT];
    double num[PS_EF_COUNT];
    char *str[PS_EF_COUNT];     /* owned */
    int64_t *ints[PS_EF_COUNT]; /* owned */
    size_t n_ints[PS_EF_COUNT];
} ps_event_t;

/* An empty event of kind. */
void ps_event_init(ps_event_t *ev, ps_event_kind_t kind);
/* Frees the strings and arrays; safe twice. */
void ps_event_fini(ps_event_t *ev);
/* Setters: a field of another type than the schema's is a bug (assert).
 * A non-finite number is left out (JSON has none). */
void ps_event_set_int(ps_event_t *ev, ps_event_field_t f, int64_t v);
void ps_event_set_num(ps_event_t *ev, ps_event_field_t f, double v);
void ps_event_set_str(ps_event_t *ev, ps_event_field_t f, const char *v);
void ps_event_set_ints(ps_event_t *ev, ps_event_field_t f, const int64_t *v, size_t n);
/* Copies field f of src (if it has it) into dst. */
void ps_event_copy_field(ps_event_t *dst, const ps_event_t *src, ps_event_field_t f);

/* Writes the event as one line to out and flushes it. */
void ps_event_print(const ps_event_t *ev, FILE *out);
/* The line (without newline) as a malloc'd string. */
char *ps_event_format(const ps_event_t *ev);

/* Doubles of magnitude below this convert to int64 exactly as C defines
 * (it is under 2^63); a number read from a worker beyond it does not. */
#define PS_EVENT_INT64_LIMIT 9.2e18

/* Parses a line: 0 and *ev set (kind PS_EVENT_UNKNOWN for an object whose
 * "event" is not one of ours); -1 if the line is not a JSON object with
 * a string "event". Unknown fields are ignored; a field of the wrong type
 * is left unset, and so is an INT field given a number outside int64
 * (a fraction is truncated). ev must be fini'd in either case. */
int ps_event_parse(const char *line, ps_event_t *ev);
/* Getters: the value, or fallback / NULL if the event lacks the field.
 * INT and NUM fields read as numbers either way. */
bool ps_event_has(const ps_event_t *ev, ps_event_field_t f);
double ps_event_num(const ps_event_t *ev, ps_event_field_t f, double fallback);
const char *ps_event_str(const ps_event_t *ev, ps_event_field_t f);

#endif
