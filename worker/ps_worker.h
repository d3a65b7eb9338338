/* ps_worker.h - ps-worker's configuration: the option table, rank and world
 * size from flags or the environment (PS_RANK/PS_WORLD, Slurm, Open MPI),
 * and the model the config describes (a layer spec, a GPT, or one of the
 * fixed models, which are specs too). Startup thread only. */
#ifndef PS_WORKER_H
#define PS_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include "ps_config.h"
#include "ps_client.h"
#include "ps_curve.h"
#include "ps_enum.h"
#include "ps_netspec.h"
#include "ps_optim_spec.h"

/* The models (ps_enum.h: one list for the enum, the option and the names). */
#define PS_MODEL_KIND_MAP(XX)                                                         \
    XX(LINEAR, "linear")                                                              \
    XX(LOGISTIC, "logistic")                                                          \
    XX(SOFTMAX, "softmax")                                                            \
    XX(MLP, "mlp")                                                                    \
    XX(SPARSE_LR, "sparse_lr") /* hashed-feature logistic regression, sparse table */ \
    XX(FM, "fm")               /* factorization machine on a sparse table */          \
    XX(NET, "net")             /* the `input` and `layers` spec */                    \
    XX(GPT, "gpt")             /* byte-level GPT: n_layer, n_head, n_embd, block_size */
#define PS_MODEL_KIND_MEMBER(e, s) PS_ENUM_MEMBER(PS_MODEL_, e)
typedef enum { PS_MODEL_KIND_MAP(PS_MODEL_KIND_MEMBER) } ps_model_kind_t;
extern const char *const ps_model_kind_names[];

/* records: ps-convert's binary records (ps_recfile.h), dense or sparse */
#define PS_FORMAT_MAP(XX) \
    XX(IDX, "idx") XX(CSV, "csv") XX(LIBSVM, "libsvm") XX(TEXT, "text") XX(RECORDS, "records")
#define PS_FORMAT_MEMBER(e, s) PS_ENUM_MEMBER(PS_FORMAT_, e)
typedef enum { PS_FORMAT_MAP(PS_FORMAT_MEMBER) } ps_data_format_t;
extern const char *const ps_format_names[];

/* The hidden activation of an MLP: the spec's word for it. */
#define PS_ACTIVATION_MAP(XX) \
    XX(RELU, "relu") XX(TANH, "tanh") XX(SIGMOID, "sigmoid") XX(GELU, "gelu")
#define PS_ACTIVATION_MEMBER(e, s) PS_ENUM_MEMBER(PS_ACTIVATION_, e)
typedef enum { PS_ACTIVATION_MAP(PS_ACTIVATION_MEMBER) } ps_activation_t;
extern const char *const ps_activation_names[];

/* The loss of an MLP head: the model's natural one, cross-entropy, MSE. */
#define PS_LOSS_MAP(XX) XX(AUTO, "auto") XX(CE, "ce") XX(MSE, "mse")
#define PS_LOSS_MEMBER(e, s) PS_ENUM_MEMBER(PS_LOSS_, e)
typedef enum { PS_LOSS_MAP(PS_LOSS_MEMBER) } ps_loss_kind_t;
extern const char *const ps_loss_names[];

/* What the labels are: stated by the config, or inferred (loudly). */
#define PS_TASK_MAP(XX) \
    XX(AUTO, "auto") XX(CLASSIFICATION, "classification") XX(REGRESSION, "regression")
#define PS_TASK_MEMBER(e, s) PS_ENUM_MEMBER(PS_TASK_, e)
typedef enum { PS_TASK_MAP(PS_TASK_MEMBER) } ps_task_t;
extern const char *const ps_task_names[];

/* Values on the wire, in the order of ps.DType (so a precision is a dtype). */
#define PS_PRECISION_MAP(XX) XX(FP32, "fp32") XX(FP16, "fp16") XX(BF16, "bf16")
#define PS_PRECISION_MEMBER(e, s) PS_ENUM_MEMBER(PS_PRECISION_, e)
typedef enum { PS_PRECISION_MAP(PS_PRECISION_MEMBER) } ps_precision_t;
extern const char *const ps_precision_names[];

/* Hidden layers of model mlp. */
#define PS_WORKER_MAX_HIDDEN 15

/* Sparse models run their own step loop (ps_sparse_trainer.c). */
#define PS_MODEL_IS_SPARSE(m) ((m) == PS_MODEL_SPARSE_LR || (m) == PS_MODEL_FM)

typedef struct {
    char servers[PS_OPT_STR_MAX];
    char job[PS_OPT_STR_MAX];
    int64_t rank, world;
    int model; /* ps_model_kind_t */
    char hidden[PS_OPT_STR_MAX];
    int activation;  /* ps_activation_t */
    int loss;        /* ps_loss_kind_t */
    int task;        /* ps_task_t */
    int data_format; /* ps_data_format_t */
    char train_data[PS_OPT_STR_MAX], train_labels[PS_OPT_STR_MAX];
    char test_data[PS_OPT_STR_MAX], test_labels[PS_OPT_STR_MAX];
    int64_t label_column;
    bool standardize;
    int64_t epochs, batch_size, max_steps, seed;
    /* the server-side optimizer, set by its options directly (total_steps
     * follows from the data: see ps_worker_optim_spec) */
    ps_optim_spec_t optim;
    int64_t max_staleness;
    int64_t request_timeout_ms;
    int64_t eval_every;
    char save_model[PS_OPT_STR_MAX];
    int64_t blas_threads;
    int blas_core; /* ps_blas_core_t */
    int log_level;
    int64_t progress_every_s;
    int precision;     /* ps_precision_t (= the wire's Ps__DType) */
    double loss_scale; /* fp16: initial loss scale */
    int64_t loss_scale_window;
    int64_t eval_every_steps;
    int64_t heartbeat_ms;
    int64_t server_timeout_ms;
    int64_t request_retries;
    bool same_host;
    char stats_socket[PS_OPT_STR_MAX];
    int64_t hash_bits; /* libsvm: feature indices hashed into this many bits */
    int64_t fm_dim;    /* fm: factor dimension k */
    double init_scale; /* sparse: rows start uniform in [-s, s] (fm factors) */
    double val_fraction;
    int64_t train_subset;
    int64_t split_seed;
    int64_t evals_per_epoch;
    int64_t slice_elems; /* wire slices of weight matrices (ps_tables_freeze) */
    char curve_server_key_file[PS_OPT_STR_MAX];
    char curve_secret_file[PS_OPT_STR_MAX];
    /* model net: the spec (ps_netspec.h); input empty = the data's features */
    char input[PS_OPT_STR_MAX];
    char layers[PS_OPT_STR_MAX];
    /* model gpt */
    int64_t n_layer, n_head, n_embd, block_size;
    double dropout;
    int64_t text_stride; /* data_format text: windows start every N bytes; 0 = block */
    char export_onnx[PS_OPT_STR_MAX];
    /* streamed input (ps_stream.h) */
    bool stream;
    int64_t partitions, shuffle_window, prefetch_batches, reader_timeout_ms;
    int64_t classes; /* stream, dense: the class count; 0 = as the data says */
    /* pipeline stages (ps_stage.h, ps_pipe.h) */
    int64_t pipeline_stages, micro_batches;
    bool pipeline_recompute;
    char stage_layers[PS_OPT_STR_MAX];
    char pipeline_dir[PS_OPT_STR_MAX], pipeline_bind[PS_OPT_STR_MAX];
    int64_t pipeline_timeout_ms;
    bool pipeline_same_host;
    int64_t memory_budget_mb; /* 0 = none (ps_trainer_budget.c) */
    /* the timeline (ps_trace.h) */
    char trace_dir[PS_OPT_STR_MAX];
    int64_t trace_steps;
} ps_worker_config_t;

extern const ps_optset_t ps_worker_optset;

/* Fills rank/world from PS_RANK/PS_WORLD, SLURM_PROCID/SLURM_NTASKS or
 * OMPI_COMM_WORLD_RANK/SIZE when the flags left them at -1 (else 0 and 1). */
void ps_worker_config_env(ps_worker_config_t *cfg);
/* Cross-field checks: rank < world, files given for the format, etc. */
int ps_worker_config_validate(const ps_worker_config_t *cfg, ps_errbuf_t *err);
/* The dense model the config describes, for data of n_features values per
 * row, as a spec or a GPT config: model net is `input` (empty: n_features)
 * and `layers`; model gpt its options; linear, logistic, softmax and mlp
 * the specs they are (docs/models.md), with n_outputs outputs as
 * ps_worker_outputs gives them (an mlp of one output is a regression: mse;
 * unused by a spec or a gpt). PS_EINVAL with err naming the option:
 * "hidden: 'x' is not a layer width", "model 'softmax' needs class
 * labels". The layers themselves are checked by ps_netdesc_spec and
 * ps_net_new. */
int ps_worker_model_desc(const ps_worker_config_t *cfg, size_t n_features, size_t n_outputs,
                         ps_netdesc_t *desc, ps_errbuf_t *err);
/* The option an error in the model's layers is blamed on: "layers", "gpt"
 * (its options), or "model" for the fixed models. */
const char *ps_worker_model_option(const ps_worker_config_t *cfg);
/* Prefixes err's message with that option if it names a layer ("layers:
 * layer 3 'dense(10)': needs a vector ..."); returns rc. */
int ps_worker_model_err(const ps_worker_config_t *cfg, int rc, ps_errbuf_t *err);
/* The optimizer spec for total_updates updates. */
void ps_worker_optim_spec(const ps_worker_config_t *cfg, uint64_t total_updates,
                          ps_optim_spec_t *spec);
/* Key storage behind a ps_client_opts_t's CURVE strings. */
typedef struct {
    ps_curve_keys_t server, own;
} ps_worker_keys_t;

/* The client options cfg describes for rank of world (timeouts, retries,
 * heartbeats, consistency, dtype) and, if curve_server_key_file is set, the
 * CURVE keys read into *keys (which must outlive ps_client_new). Errors name
 * the key file. */
int ps_worker_client_opts(const ps_worker_config_t *cfg, uint32_t rank, uint32_t world,
                          volatile sig_atomic_t *stop, int dtype, ps_worker_keys_t *keys,
                          ps_client_opts_t *out, ps_errbuf_t *err);

/* The outputs of the model for this training data: the classes, or 1 for
 * regression and binary heads, as cfg's task says (auto: the model's
 * nature, and for an MLP whether the labels are class ids, said in a log
 * line). Errors name the data file and what does not fit. */
int ps_worker_outputs(const ps_worker_config_t *cfg, uint32_t n_classes, size_t *n_outputs,
                      ps_errbuf_t *err);
/* The job's fingerprint: "key=value" lines of every option that defines
 * the job (the model, data, optimizer, batch, seed, precision, layout),
 * and the training file's size, into buf (NUL-terminated, truncated to
 * cap). Workers of one job must agree on it; ranks, addresses, logs and
 * keys are not in it. */
void ps_worker_fingerprint(const ps_worker_config_t *cfg, char *buf, size_t cap);

/* Errors a rejoin repairs (ps_client_recover): this worker declared dead,
 * a shard restarted, the job rolled back. */
bool ps_worker_recoverable(int rc);
/* What happened, for the log line of a recovery from rc. */
const char *ps_worker_recovery_cause(int rc);
/* Recovers a worker of rank at clock `at` from the recoverable error why:
 * ps_client_recover (exact after a shard restart or under BSP), then
 * refetch(ctx, clock) to read its state back there (NULL: nothing to read).
 * A recovery cut short by another recoverable error starts over, at most
 * 100 recoveries in all (*recoveries counts them). *clock: where to resume. */
int ps_worker_recover(ps_client_t *client, const ps_worker_config_t *cfg, uint32_t rank, int why,
                      int64_t at, unsigned *recoveries,
                      int (*refetch)(void *ctx, int64_t clock, ps_errbuf_t *err), void *ctx,
                      int64_t *clock, ps_errbuf_t *err);

/* Name of the configured model kind ("mlp"; "net" when layers is set). */
const char *ps_worker_model_name(const ps_worker_config_t *cfg);

#endif
