/* ps_worker.c - ps-worker options and their interpretation. */
#include "ps_worker.h"

#include "ps_blas.h"
#include "ps_log.h"
#include "ps_name.h"
#include "ps_onnx.h"
#include "ps_stage.h"
#include "ps_stream.h"
#include "ps_text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *const ps_model_kind_names[] = {PS_MODEL_KIND_MAP(PS_ENUM_NAME) NULL};
const char *const ps_format_names[] = {PS_FORMAT_MAP(PS_ENUM_NAME) NULL};
const char *const ps_loss_names[] = {PS_LOSS_MAP(PS_ENUM_NAME) NULL};
const char *const ps_activation_names[] = {PS_ACTIVATION_MAP(PS_ENUM_NAME) NULL};
const char *const ps_precision_names[] = {PS_PRECISION_MAP(PS_ENUM_NAME) NULL};
const char *const ps_task_names[] = {PS_TASK_MAP(PS_ENUM_NAME) NULL};

#define W ps_worker_config_t
static const ps_opt_t worker_opts[] = {
    PS_OPT_STR("servers", W, servers, "", "comma-separated server endpoints, shard 0 first"),
    PS_OPT_STR("job", W, job, "default", "job name shared by all workers of one job"),
    PS_OPT_INT("rank", W, rank, "-1", -1, 65535, "this worker's rank; -1 = from environment or 0"),
    PS_OPT_INT("world", W, world, "-1", -1, 65536, "number of workers; -1 = from environment or 1"),
    PS_OPT_NAMES("model", W, model, "mlp", ps_model_kind_names,
                 "model to train (sparse_lr, fm: LIBSVM data on a sparse table; net: the "
                 "layers spec; gpt: a byte-level GPT on data_format text)"),
    PS_OPT_STR("hidden", W, hidden, "256,128", "mlp hidden layer widths, comma-separated"),
    PS_OPT_NAMES("activation", W, activation, "relu", ps_activation_names, "mlp hidden activation"),
    PS_OPT_NAMES("loss", W, loss, "auto", ps_loss_names,
                 "mlp head: softmax cross-entropy or MSE (regression, or one-hot targets)"),
    PS_OPT_NAMES("task", W, task, "auto", ps_task_names,
                 "what the labels are; auto: the model says (linear: regression, logistic and "
                 "softmax: classes), and an mlp infers it from the labels, saying so"),
    PS_OPT_NAMES("data_format", W, data_format, "idx", ps_format_names, "format of the data files"),
    PS_OPT_INT("hash_bits", W, hash_bits, "24", 0, 62,
               "libsvm: hash feature indices into this many bits (0 = use them as keys)"),
    PS_OPT_INT("fm_dim", W, fm_dim, "8", 1, 256, "fm: factor dimension"),
    PS_OPT_DBL("init_scale", W, init_scale, "0.01", 0, 10,
               "sparse: start values uniform in [-s, s] (fm factors; ftrl starts at 0)"),
    PS_OPT_DBL("l1", W, optim.l1, "0", 0, 1e6, "ftrl: L1 regularisation"),
    PS_OPT_DBL("l2", W, optim.l2, "0", 0, 1e6, "ftrl: L2 regularisation"),
    PS_OPT_DBL("ftrl_beta", W, optim.ftrl_beta, "1", 0, 1e6,
               "ftrl: beta of the per-coordinate rate"),
    PS_OPT_STR("train_data", W, train_data, "",
               "training features (IDX images or CSV), or a text file or directory"),
    PS_OPT_STR("train_labels", W, train_labels, "", "training labels (IDX only)"),
    PS_OPT_STR("test_data", W, test_data, "", "test features; empty = no evaluation"),
    PS_OPT_STR("test_labels", W, test_labels, "", "test labels (IDX only)"),
    PS_OPT_INT("label_column", W, label_column, "-1", -65536, 65535,
               "CSV label column; negative counts from the end"),
    PS_OPT_BOOL("standardize", W, standardize, "no", "scale features to mean 0, std 1"),
    PS_OPT_INT("epochs", W, epochs, "10", 1, 1000000, "passes over the training data"),
    PS_OPT_INT("batch_size", W, batch_size, "64", 1, 1 << 20, "samples per step per worker"),
    PS_OPT_INT("max_steps", W, max_steps, "0", 0, 1LL << 62,
               "stop after this many steps; 0 = no limit"),
    PS_OPT_INT("seed", W, seed, "1", 0, 1LL << 62, "seed of weights and shuffles"),
    PS_OPT_NAMES("optimizer", W, optim.kind, "sgd", ps_optim_names,
                 "server-side optimizer (ftrl: sparse models only)"),
    PS_OPT_DBL("lr", W, optim.lr, "0.01", 1e-12, 1e6, "learning rate"),
    PS_OPT_DBL("momentum", W, optim.momentum, "0.9", 0, 0.999999, "momentum factor"),
    PS_OPT_BOOL("nesterov", W, optim.nesterov, "no", "Nesterov momentum"),
    PS_OPT_DBL("beta1", W, optim.beta1, "0.9", 0, 0.999999, "Adam first-moment decay"),
    PS_OPT_DBL("beta2", W, optim.beta2, "0.999", 0, 0.999999999, "Adam second-moment decay"),
    PS_OPT_DBL("eps", W, optim.eps, "1e-8", 1e-30, 1, "Adam/Adagrad/RMSprop epsilon"),
    PS_OPT_DBL("weight_decay", W, optim.weight_decay, "0", 0, 1e3,
               "L2 weight decay (decoupled for adamw)"),
    PS_OPT_DBL("rho", W, optim.rho, "0.99", 0, 0.999999, "RMSprop decay"),
    PS_OPT_NAMES("lr_schedule", W, optim.schedule, "constant", ps_sched_names,
                 "learning-rate schedule"),
    PS_OPT_INT("lr_step_size", W, optim.step_size, "1000", 1, 1LL << 62,
               "step schedule: updates between decays"),
    PS_OPT_DBL("lr_gamma", W, optim.gamma, "0.1", 1e-9, 1, "step schedule: decay factor"),
    PS_OPT_DBL("min_lr", W, optim.min_lr, "0", 0, 1e6, "cosine schedule: final learning rate"),
    PS_OPT_INT("warmup_steps", W, optim.warmup_steps, "0", 0, 1LL << 62, "linear warm-up updates"),
    PS_OPT_INT("max_staleness", W, max_staleness, "0", -1, 1000000,
               "0 = BSP (synchronous), s > 0 = SSP, -1 = ASP (asynchronous)"),
    PS_OPT_INT("request_timeout_ms", W, request_timeout_ms, "60000", 10, 86400000,
               "deadline for each reply from a server"),
    PS_OPT_INT("eval_every", W, eval_every, "1", 0, 1000000,
               "rank 0 evaluates the test set every N epochs; 0 = only at the end"),
    PS_OPT_STR("save_model", W, save_model, "", "rank 0 writes .npy tables and model.json here"),
    PS_OPT_INT("blas_threads", W, blas_threads, "1", 1, 256, "OpenBLAS threads"),
    PS_OPT_NAMES("blas_core", W, blas_core, "auto", ps_blas_core_names,
                 "OpenBLAS kernel set: auto = OpenBLAS's pick, unless that is its generic "
                 "Prescott on a CPU with AVX2/AVX-512 (then Haswell/SkylakeX); openblas = "
                 "always OpenBLAS's pick; or a family name"),
    PS_OPT_NAMES("log_level", W, log_level, "info", ps_log_level_names,
                 "least severe level logged"),
    PS_OPT_INT("progress_every_s", W, progress_every_s, "5", 0, 86400,
               "rank 0 logs a progress line this often within an epoch; 0 = never"),
    PS_OPT_NAMES("precision", W, precision, "fp32", ps_precision_names,
                 "values on the wire; the server keeps fp32 master weights and state"),
    PS_OPT_DBL("loss_scale", W, loss_scale, "65536", 1e-6, 1e12,
               "fp16: initial dynamic loss scale"),
    PS_OPT_INT("loss_scale_window", W, loss_scale_window, "2000", 1, 1000000000,
               "fp16: clean steps before the loss scale doubles"),
    PS_OPT_INT("heartbeat_ms", W, heartbeat_ms, "1000", 10, 3600000,
               "heartbeat period; keep well below the servers' heartbeat_timeout_ms"),
    PS_OPT_INT("server_timeout_ms", W, server_timeout_ms, "15000", 0, 86400000,
               "fail a wait at once when a shard answers no heartbeat this long; 0 = off"),
    PS_OPT_INT("request_retries", W, request_retries, "2", 0, 100,
               "resends of a request whose deadline passed (each waits twice as long)"),
    PS_OPT_BOOL("same_host", W, same_host, "yes",
                "offer each shard a shared memory region at HELLO: a shard on this host (same "
                "boot, pid namespace and user) then takes dense pushes and pulls through it "
                "instead of TCP; no = TCP only"),
    PS_OPT_STR("stats_socket", W, stats_socket, "",
               "UNIX stats socket path (ps-ctl -s PATH show info); empty = none"),
    PS_OPT_INT("eval_every_steps", W, eval_every_steps, "0", 0, 1000000000,
               "rank 0 also evaluates every N steps ({\"event\":\"eval\"} lines); 0 = off"),
    PS_OPT_DBL("val_fraction", W, val_fraction, "0", 0, 0.9,
               "hold out this fraction of the training data for validation (val_* metrics)"),
    PS_OPT_INT("train_subset", W, train_subset, "0", 0, 1LL << 40,
               "train on only this many samples (after the validation split); 0 = all"),
    PS_OPT_INT("split_seed", W, split_seed, "20261129", 0, 1LL << 62,
               "seed of the validation split (the same split in every trial)"),
    PS_OPT_INT("evals_per_epoch", W, evals_per_epoch, "0", 0, 10000,
               "rank 0 evaluates this many times per epoch ({\"event\":\"eval\"}); 0 = off"),
    PS_OPT_INT("slice_elems", W, slice_elems, "32768", 0, 1LL << 40,
               "weight matrices above this many floats travel as row blocks of about this "
               "size, each pushed as soon as backprop makes it and awaited only when the "
               "forward pass reads it (overlap); 0 = one piece per matrix"),
    PS_OPT_STR("curve_server_key_file", W, curve_server_key_file, "",
               "the servers' CURVE public key (ps-keygen's .pub); set = CURVE to every shard"),
    PS_OPT_STR("curve_secret_file", W, curve_secret_file, "",
               "this worker's CURVE key pair (ps-keygen's .secret, mode 0600)"),
    PS_OPT_STR("input", W, input, "",
               "layers spec: the shape of one sample (784, 1x28x28, 128x64, tokens(128)); "
               "empty = the data's features as a vector"),
    PS_OPT_STR("layers", W, layers, "",
               "the model as layers, the loss last (docs/models.md), e.g. 'conv2d(32,3,pad=1) "
               "relu maxpool(2) flatten dense(10) cross_entropy'; set = model net"),
    PS_OPT_INT("n_layer", W, n_layer, "4", 1, 256, "model gpt: transformer blocks"),
    PS_OPT_INT("n_head", W, n_head, "4", 1, 65536, "model gpt: attention heads (divide n_embd)"),
    PS_OPT_INT("n_embd", W, n_embd, "128", 1, 65536, "model gpt: width of the residual stream"),
    PS_OPT_INT("block_size", W, block_size, "128", 1, 65536,
               "model gpt: context in bytes (a text window is block_size + 1 bytes)"),
    PS_OPT_DBL("dropout", W, dropout, "0", 0, 0.99,
               "model gpt: dropout after the embeddings and each residual branch"),
    PS_OPT_INT("text_stride", W, text_stride, "0", 0, 1 << 30,
               "data_format text: a training window starts every N bytes; 0 = every block "
               "(each byte is predicted once an epoch)"),
    PS_OPT_BOOL("stream", W, stream, "no",
                "each worker streams only its partitions of train_data (a file, a directory "
                "or a pattern; libsvm, csv, idx, records, text) in bounded memory "
                "(docs/data.md)"),
    PS_OPT_INT(
        "partitions", W, partitions, "0", 0, 1 << 20,
        "stream: ranges one train_data file is cut into (libsvm, csv, text: byte ranges; IDX, "
        "records: record ranges; 0 = world); several files are one partition each"),
    PS_OPT_INT("shuffle_window", W, shuffle_window, "16384", 1, 1 << 24,
               "stream: samples each partition is shuffled among (1 = file order)"),
    PS_OPT_INT("prefetch_batches", W, prefetch_batches, "4", 1, 1024,
               "stream: batches the reader thread keeps ready"),
    PS_OPT_INT("reader_timeout_ms", W, reader_timeout_ms, "60000", 10, 86400000,
               "stream: longest wait for the reader's next batch"),
    PS_OPT_INT("classes", W, classes, "0", 0, 1 << 20,
               "stream, dense data: the class count of the labels (0 = as the data says: a "
               "records header, the IDX label file; a streamed CSV classifier needs it)"),
    PS_OPT_STR("export_onnx", W, export_onnx, "",
               "rank 0 writes the trained model here as ONNX (opset 17, logits out)"),
    /* pipeline stages (docs/architecture.md, "Pipeline stages") */
    PS_OPT_INT("pipeline_stages", W, pipeline_stages, "1", 1, PS_STAGE_MAX,
               "stages the model is cut into: rank r is replica r/P, stage r%P (1 = none)"),
    PS_OPT_INT("micro_batches", W, micro_batches, "4", 1, 1 << 20,
               "pipeline: micro-batches a stage's batch is cut into (GPipe schedule)"),
    PS_OPT_BOOL("pipeline_recompute", W, pipeline_recompute, "no",
                "pipeline: a stage before the last keeps one micro-batch's activations and "
                "recomputes each forward in backward (less memory, about 1/3 more compute) "
                "instead of keeping all micro_batches of them"),
    PS_OPT_STR("stage_layers", W, stage_layers, "",
               "pipeline: layer positions where stages 2..P begin; empty = balance parameters"),
    PS_OPT_STR("pipeline_dir", W, pipeline_dir, "",
               "pipeline: directory all workers share to find their stage peers"),
    PS_OPT_STR("pipeline_bind", W, pipeline_bind, "127.0.0.1",
               "pipeline: address this worker binds for its peers (off loopback: CURVE)"),
    PS_OPT_INT("pipeline_timeout_ms", W, pipeline_timeout_ms, "30000", 10, 86400000,
               "pipeline: longest wait for a stage peer (its file, a message)"),
    PS_OPT_BOOL("pipeline_same_host", W, pipeline_same_host, "yes",
                "pipeline: without CURVE, a stage peer on this host (same boot, pid namespace "
                "and user) is sent to through a FIFO in pipeline_dir, not ZeroMQ"),
    PS_OPT_INT("memory_budget_mb", W, memory_budget_mb, "0", 0, 1LL << 40,
               "dense models: refuse to start when this worker would hold more than this many "
               "MB (parameters, gradients, activations, data, buffers: estimated before it "
               "allocates; pipeline_stages splits a model that does not fit); 0 = no budget"),
    /* the timeline (docs/operations.md, "A step's timeline") */
    PS_OPT_STR("trace_dir", W, trace_dir, "",
               "dense models: write the first trace_steps steps' timeline (compute, waits for "
               "servers and stages, pushes) to DIR/worker-RANK.json, Chrome trace-event JSON "
               "for Perfetto or tools/trace_summary.py; empty = off"),
    PS_OPT_INT("trace_steps", W, trace_steps, "100", 1, 10000,
               "trace_dir: steps traced (each some tens of spans, a few KB)"),
};
#undef W

const ps_optset_t ps_worker_optset = {
    "ps-worker",
    "Usage: ps-worker --servers EP[,EP...] [--config FILE] [--OPTION VALUE ...]\n"
    "Trains its partition of the data against the parameter servers: pulls\n"
    "parameters, computes gradients with OpenBLAS, pushes them. Prints progress\n"
    "on stderr, JSON epoch events and a final {\"event\":\"done\",...} line on stdout.\n"
    "Data partitioning: every global batch of world*batch_size samples (from a\n"
    "shuffle seeded by seed and epoch) is cut into world equal slices and\n"
    "worker r takes slice r, so BSP with N workers equals one worker with N\n"
    "times the batch.",
    worker_opts,
    sizeof worker_opts / sizeof worker_opts[0],
};

static int64_t env_int(const char *const *names, int64_t fallback)
{
    for (; *names; names++) {
        const char *v = getenv(*names);
        if (v && *v)
            return strtoll(v, NULL, 10);
    }
    return fallback;
}

void ps_worker_config_env(ps_worker_config_t *cfg)
{
    static const char *ranks[] = {"PS_RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", NULL};
    static const char *worlds[] = {"PS_WORLD", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", NULL};
    if (cfg->rank < 0)
        cfg->rank = env_int(ranks, 0);
    if (cfg->world < 0)
        cfg->world = env_int(worlds, 1);
}

/* Which options go together: a spec is model net, text data trains a
 * language model. */
static int validate_model_options(const ps_worker_config_t *c, ps_errbuf_t *err)
{
    bool has_layers = *c->layers != 0, text = c->data_format == PS_FORMAT_TEXT;
    if (c->model == PS_MODEL_NET && !has_layers)
        return ps_err_set(err, PS_EINVAL, "model net needs layers (the spec: docs/models.md)");
    if (has_layers && c->model != PS_MODEL_NET && c->model != PS_MODEL_MLP)
        return ps_err_set(err, PS_EINVAL,
                          "layers: set with model '%s': a spec is a model of its own (model "
                          "net, or leave model out)",
                          ps_worker_model_name(c));
    if (*c->input && !has_layers)
        return ps_err_set(err, PS_EINVAL, "input: only for a layers spec (model net)");
    if (has_layers && c->loss != PS_LOSS_AUTO)
        return ps_err_set(err, PS_EINVAL, "loss: a layers spec names its loss as its last layer");
    if (c->task != PS_TASK_AUTO && (has_layers || c->model == PS_MODEL_GPT))
        return ps_err_set(err, PS_EINVAL,
                          "task: for the fixed models; a layers spec or a gpt is what its loss "
                          "says");
    if (c->model == PS_MODEL_GPT && !text)
        return ps_err_set(err, PS_EINVAL, "model gpt: trains on data_format text");
    if (*c->export_onnx && !ps_onnx_available())
        return ps_err_set(err, PS_EINVAL,
                          "export_onnx: this build has no ONNX support (Debian's python3-onnx "
                          "ships the onnx.proto it is generated from)");
    if (!text)
        return PS_OK;
    if (c->model != PS_MODEL_GPT && !(has_layers && *c->input))
        return ps_err_set(err, PS_EINVAL,
                          "data_format text: needs a language model: model gpt, or input "
                          "tokens(T) and layers");
    if (*c->train_labels || *c->test_labels || c->train_subset || c->standardize)
        return ps_err_set(err, PS_EINVAL,
                          "data_format text: takes no train_labels, test_labels, train_subset "
                          "or standardize");
    return PS_OK;
}

/* The spec's words and arguments, before any data is read (the shapes are
 * checked once the data says how wide a row is). */
static int validate_model(const ps_worker_config_t *c, ps_errbuf_t *err)
{
    int rc = validate_model_options(c, err);
    if (rc != PS_OK)
        return rc;
    ps_netdesc_t desc;
    ps_netspec_t spec = {0};
    rc = ps_worker_model_desc(c, 1, 2, &desc, err);
    if (rc == PS_OK && (rc = ps_netdesc_spec(&desc, &spec, err)) != PS_OK)
        rc = ps_worker_model_err(c, rc, err);
    if (rc == PS_OK && c->data_format == PS_FORMAT_TEXT && spec.input.kind != PS_SHAPE_TOKENS)
        rc = ps_err_set(err, PS_EINVAL, "input '%s': data_format text needs tokens(T)", c->input);
    ps_netspec_fini(&spec);
    return rc;
}

/* A streamed dense job: what its format lets it know in advance. CSV has
 * no record count, so no step count and no class count (a text corpus's
 * windows are counted from its files' sizes). */
static int validate_stream_dense(const ps_worker_config_t *c, ps_errbuf_t *err)
{
    bool csv = c->data_format == PS_FORMAT_CSV;
    if (c->standardize)
        return ps_err_set(err, PS_EINVAL,
                          "standardize: needs the whole training set's mean and deviation; a "
                          "streamed job never holds it (scale the data when it is written)");
    if (csv && c->optim.schedule != PS_SCHED_CONSTANT && c->optim.schedule != PS_SCHED_STEP)
        return ps_err_set(err, PS_EINVAL,
                          "lr_schedule %s: needs the job's step count, which a streamed CSV job "
                          "knows only at its end (ps-convert the data to records, or lr_schedule "
                          "constant or step)",
                          ps_enum_name(ps_sched_names, c->optim.schedule, "?"));
    bool class_model =
        c->model == PS_MODEL_SOFTMAX || (c->model == PS_MODEL_MLP && !*c->layers &&
                                         c->task != PS_TASK_REGRESSION && c->loss != PS_LOSS_MSE);
    if (csv && !c->classes && class_model)
        return ps_err_set(err, PS_EINVAL,
                          "classes: a streamed CSV job does not see every label before it "
                          "starts: set classes N for a classifier (or task regression)");
    return PS_OK;
}

/* What a streamed job cannot do (yet): the options that need the whole
 * data set in memory. */
static int validate_stream(const ps_worker_config_t *cfg, ps_errbuf_t *err)
{
    if (!cfg->stream) {
        /* a text corpus directory is one corpus: ps_text joins its files */
        if (cfg->data_format != PS_FORMAT_TEXT && ps_stream_names_many(cfg->train_data))
            return ps_err_set(err, PS_EINVAL,
                              "train_data '%s' names several files: they are read with stream yes",
                              cfg->train_data);
        if (cfg->data_format == PS_FORMAT_RECORDS)
            return ps_err_set(err, PS_EINVAL, "data_format records: read with stream yes");
        if (cfg->classes)
            return ps_err_set(err, PS_EINVAL,
                              "classes: for stream yes (in memory the labels say it)");
        return PS_OK;
    }
    if (cfg->val_fraction > 0)
        return ps_err_set(err, PS_EINVAL,
                          "val_fraction: a streamed job has no validation split (it needs every "
                          "sample on every worker)");
    if (cfg->train_subset)
        return ps_err_set(err, PS_EINVAL,
                          "train_subset: a streamed job reads its partitions whole");
    bool sized = cfg->data_format == PS_FORMAT_IDX || cfg->data_format == PS_FORMAT_RECORDS ||
                 cfg->data_format == PS_FORMAT_TEXT;
    if (cfg->evals_per_epoch && !sized)
        return ps_err_set(err, PS_EINVAL,
                          "evals_per_epoch: a streamed %s job does not know its epoch's length "
                          "before the end; use eval_every_steps (or idx or records data)",
                          ps_enum_name(ps_format_names, cfg->data_format, "?"));
    return PS_MODEL_IS_SPARSE(cfg->model) ? PS_OK : validate_stream_dense(cfg, err);
}

/* What a pipeline needs, and what it cannot do yet (said, not ignored). */
static int validate_pipeline(const ps_worker_config_t *c, ps_errbuf_t *err)
{
    if (c->pipeline_stages == 1)
        return *c->stage_layers ? ps_err_set(err, PS_EINVAL, "stage_layers: needs pipeline_stages")
                                : PS_OK;
    if (c->world % c->pipeline_stages != 0)
        return ps_err_set(err, PS_EINVAL,
                          "pipeline_stages %lld: the world of %lld workers must be a multiple of "
                          "it (replicas x stages)",
                          (long long)c->pipeline_stages, (long long)c->world);
    char stage_job[PS_OPT_STR_MAX + 32];
    ps_errbuf_t bad;
    snprintf(stage_job, sizeof stage_job, "%s.stage%lld", c->job,
             (long long)c->pipeline_stages - 1);
    if (ps_name_check_job(stage_job, &bad) != PS_OK)
        return ps_err_set(err, PS_EINVAL, "job: each stage is a job '%s' on the servers: %s",
                          stage_job, bad.msg);
    if (!*c->pipeline_dir)
        return ps_err_set(err, PS_EINVAL,
                          "pipeline_stages: needs pipeline_dir, a directory every worker of the "
                          "job can read (ps-launch gives one)");
    if (c->micro_batches > c->batch_size)
        return ps_err_set(err, PS_EINVAL,
                          "micro_batches %lld: more than batch_size %lld (a micro-batch would "
                          "be empty)",
                          (long long)c->micro_batches, (long long)c->batch_size);
    if (c->precision == PS_PRECISION_FP16)
        return ps_err_set(err, PS_EINVAL,
                          "precision fp16: not with pipeline_stages (each stage's loss scaler "
                          "would skip on its own; bf16 needs none)");
    if (*c->test_data || c->val_fraction > 0 || c->evals_per_epoch)
        return ps_err_set(err, PS_EINVAL,
                          "test_data, val_fraction, evals_per_epoch: a pipeline does not "
                          "evaluate yet (the forward pass across stages is built for training "
                          "only); evaluate the exported model");
    if (*c->export_onnx)
        return ps_err_set(err, PS_EINVAL,
                          "export_onnx: not with pipeline_stages (no stage "
                          "holds the whole model); use save_model");
    return PS_OK;
}

int ps_worker_config_validate(const ps_worker_config_t *cfg, ps_errbuf_t *err)
{
    if (!*cfg->servers)
        return ps_err_set(err, PS_EINVAL, "--servers is required (comma-separated endpoints)");
    if (cfg->world < 1 || cfg->rank < 0 || cfg->rank >= cfg->world)
        return ps_err_set(err, PS_EINVAL, "rank %lld must be below world %lld",
                          (long long)cfg->rank, (long long)cfg->world);
    if (!*cfg->train_data)
        return ps_err_set(err, PS_EINVAL, "train_data is required");
    if (!*cfg->curve_server_key_file != !*cfg->curve_secret_file)
        return ps_err_set(err, PS_EINVAL,
                          "CURVE needs both curve_server_key_file and curve_secret_file");
    if (cfg->data_format == PS_FORMAT_IDX && !*cfg->train_labels)
        return ps_err_set(err, PS_EINVAL, "train_labels is required for IDX data");
    if (cfg->data_format == PS_FORMAT_IDX && *cfg->test_data && !*cfg->test_labels)
        return ps_err_set(err, PS_EINVAL, "test_labels is required for IDX test data");
    ps_errbuf_t bad_name;
    if (ps_name_check_job(cfg->job, &bad_name) != PS_OK)
        return ps_err_set(err, PS_EINVAL, "job: %s", bad_name.msg);
    ps_optim_spec_t spec;
    bool sparse = PS_MODEL_IS_SPARSE(cfg->model);
    bool records = cfg->data_format == PS_FORMAT_RECORDS;
    if (!records && sparse != (cfg->data_format == PS_FORMAT_LIBSVM))
        return ps_err_set(err, PS_EINVAL,
                          "models sparse_lr and fm take data_format libsvm (or records), and "
                          "libsvm data takes one of them");
    if (!sparse && cfg->optim.kind == PS_OPTIM_FTRL)
        return ps_err_set(err, PS_EINVAL, "optimizer ftrl is for the sparse models");
    if (sparse && cfg->optim.schedule != PS_SCHED_CONSTANT)
        return ps_err_set(err, PS_EINVAL,
                          "sparse models take lr_schedule constant (a row is "
                          "updated only when its key comes up)");
    if (sparse && cfg->memory_budget_mb)
        return ps_err_set(err, PS_EINVAL,
                          "memory_budget_mb: for the dense models (a sparse model's rows live on "
                          "the shards and grow with the data)");
    if (sparse && *cfg->trace_dir)
        return ps_err_set(err, PS_EINVAL,
                          "trace_dir: for the dense models (a sparse step's time is the shards')");
    if (sparse && cfg->pipeline_stages > 1)
        return ps_err_set(err, PS_EINVAL,
                          "pipeline_stages: for the dense models (a sparse model lives on the "
                          "shards)");
    int rc = validate_stream(cfg, err);
    if (rc != PS_OK || sparse)
        return rc;
    if (cfg->stream && cfg->pipeline_stages > 1)
        return ps_err_set(err, PS_EINVAL,
                          "stream: not with pipeline_stages yet (every stage of a replica reads "
                          "the rows of its batch; streamed, they would need one reader)");
    rc = validate_pipeline(cfg, err);
    if (rc != PS_OK)
        return rc;
    ps_worker_optim_spec(cfg, 1, &spec);
    const char *why = ps_optim_spec_check(&spec);
    if (why)
        return ps_err_set(err, PS_EINVAL, "optimizer: %s", why);
    return validate_model(cfg, err);
}

int ps_worker_client_opts(const ps_worker_config_t *c, uint32_t rank, uint32_t world,
                          volatile sig_atomic_t *stop, int dtype, ps_worker_keys_t *keys,
                          ps_client_opts_t *out, ps_errbuf_t *err)
{
    memset(keys, 0, sizeof *keys);
    if (*c->curve_server_key_file) {
        int rc = ps_curve_load(c->curve_server_key_file, false, &keys->server, err);
        if (rc == PS_OK)
            rc = ps_curve_load(c->curve_secret_file, true, &keys->own, err);
        if (rc != PS_OK)
            return rc;
    }
    *out = (ps_client_opts_t){
        .job = c->job,
        .rank = rank,
        .world = world,
        .max_staleness = (int)c->max_staleness,
        .timeout_ms = c->request_timeout_ms,
        .stop = stop,
        .dtype = dtype,
        .heartbeat_ms = c->heartbeat_ms,
        .server_timeout_ms = c->server_timeout_ms,
        .retries = (int)c->request_retries,
        .curve_server_key = keys->server.public_z85,
        .curve_public_key = keys->own.public_z85,
        .curve_secret_key = keys->own.secret_z85,
    };
    return PS_OK;
}

bool ps_worker_recoverable(int rc)
{
    return rc == PS_EDEAD || rc == PS_ERESTARTED || rc == PS_ESTALE;
}

const char *ps_worker_recovery_cause(int rc)
{
    return rc == PS_EDEAD        ? "the servers declared this worker dead"
           : rc == PS_ERESTARTED ? "a shard restarted"
                                 : "the job was rolled back";
}

int ps_worker_recover(ps_client_t *client, const ps_worker_config_t *cfg, uint32_t rank, int why,
                      int64_t at, unsigned *recoveries,
                      int (*refetch)(void *ctx, int64_t clock, ps_errbuf_t *err), void *ctx,
                      int64_t *clock, ps_errbuf_t *err)
{
    ps_log(PS_LOG_WARN, "worker %u: %s at clock %lld; recovering", rank,
           ps_worker_recovery_cause(why), (long long)at);
    int rc;
    /* a recovery can itself be cut short (a shard restarts, or declares us
     * dead, during the rollback): again, from the start */
    do {
        if (*recoveries >= 100)
            return ps_err_set(err, why, "worker %u: giving up after %u recoveries: %s", rank,
                              *recoveries, err->msg);
        (*recoveries)++;
        bool exact = why == PS_ERESTARTED || cfg->max_staleness == 0;
        rc = ps_client_recover(client, exact, clock, err);
        if (rc == PS_OK && refetch)
            rc = refetch(ctx, *clock, err);
        if (ps_worker_recoverable(rc)) {
            ps_log(PS_LOG_WARN, "worker %u: recovery cut short (%s); again", rank, err->msg);
            why = rc;
        }
    } while (ps_worker_recoverable(rc));
    if (rc == PS_OK)
        ps_log(PS_LOG_NOTICE, "worker %u: rejoined at clock %lld (was at %lld)", rank,
               (long long)*clock, (long long)at);
    return rc;
}

const char *ps_worker_model_name(const ps_worker_config_t *cfg)
{
    int m = *cfg->layers && cfg->model == PS_MODEL_MLP ? PS_MODEL_NET : cfg->model;
    return ps_enum_name(ps_model_kind_names, m, "?");
}

const char *ps_worker_model_option(const ps_worker_config_t *cfg)
{
    return cfg->model == PS_MODEL_GPT ? "gpt" : *cfg->layers ? "layers" : "model";
}

int ps_worker_model_err(const ps_worker_config_t *cfg, int rc, ps_errbuf_t *err)
{
    const char *opt = ps_worker_model_option(cfg);
    if (!err || strncmp(err->msg, "layer ", 6) != 0)
        return rc;
    char why[sizeof err->msg];
    snprintf(why, sizeof why, "%s", err->msg);
    return ps_err_set(err, rc, "%s%s%s: %s", opt, *opt == 'm' ? " " : "",
                      *opt == 'm' ? ps_worker_model_name(cfg) : "", why);
}

/* The fixed models as the specs they are: "dense(256) relu dense(128)
 * relu dense(10) cross_entropy" for the MLP of the demo. */
static int fixed_model_layers(const ps_worker_config_t *cfg, size_t n_out, char *buf, size_t cap,
                              ps_errbuf_t *err)
{
    size_t len = 0;
    /* one output of an mlp is a regression (ps_worker_outputs) */
    const char *loss = cfg->loss == PS_LOSS_MSE || n_out < 2 ? "mse" : "cross_entropy";
    if (cfg->model == PS_MODEL_LINEAR || cfg->model == PS_MODEL_LOGISTIC) {
        n_out = 1;
        loss = cfg->model == PS_MODEL_LINEAR ? "mse" : "bce";
    } else if (cfg->model == PS_MODEL_SOFTMAX) {
        loss = "cross_entropy";
    }
    if (strcmp(loss, "cross_entropy") == 0 && n_out < 2)
        return ps_err_set(err, PS_EINVAL,
                          "model '%s' needs class labels 0..C-1 (C >= 2) in the training data",
                          ps_worker_model_name(cfg));
    if (cfg->model == PS_MODEL_MLP) {
        char list[PS_OPT_STR_MAX], *save = NULL;
        const char *act = ps_enum_name(ps_activation_names, cfg->activation, "relu");
        int n = 0;
        snprintf(list, sizeof list, "%s", cfg->hidden);
        for (char *w = strtok_r(list, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
            char *end;
            long v = strtol(w, &end, 10);
            if (*end || v < 1 || v > (1 << 20))
                return ps_err_set(err, PS_EINVAL, "hidden: '%s' is not a layer width", w);
            if (++n > PS_WORKER_MAX_HIDDEN)
                return ps_err_set(err, PS_EINVAL, "hidden: more than %d layers",
                                  PS_WORKER_MAX_HIDDEN);
            len += (size_t)snprintf(buf + len, cap - len, "dense(%ld) %s ", v, act);
        }
    }
    snprintf(buf + len, cap - len, "dense(%zu) %s", n_out, loss);
    return PS_OK;
}

int ps_worker_model_desc(const ps_worker_config_t *cfg, size_t n_features, size_t n_outputs,
                         ps_netdesc_t *desc, ps_errbuf_t *err)
{
    memset(desc, 0, sizeof *desc);
    if (cfg->model == PS_MODEL_GPT) {
        desc->is_gpt = true;
        desc->gpt =
            (ps_gpt_config_t){(uint32_t)cfg->n_layer, (uint32_t)cfg->n_head, (uint32_t)cfg->n_embd,
                              (uint32_t)cfg->block_size, cfg->dropout};
        return PS_OK;
    }
    if (*cfg->input)
        snprintf(desc->input, sizeof desc->input, "%s", cfg->input);
    else
        snprintf(desc->input, sizeof desc->input, "%zu", n_features);
    if (!*cfg->layers)
        return fixed_model_layers(cfg, n_outputs, desc->layers, sizeof desc->layers, err);
    snprintf(desc->layers, sizeof desc->layers, "%s", cfg->layers);
    return PS_OK;
}

void ps_worker_optim_spec(const ps_worker_config_t *cfg, uint64_t total_updates, ps_optim_spec_t *s)
{
    uint64_t warmup = cfg->optim.warmup_steps;
    *s = cfg->optim;
    if (s->kind != PS_OPTIM_MOMENTUM)
        s->momentum = 0; /* its default is for the momentum optimizer only */
    s->total_steps = total_updates > warmup ? total_updates - warmup : 1;
}

int ps_worker_outputs(const ps_worker_config_t *cfg, uint32_t n_classes, size_t *n_outputs,
                      ps_errbuf_t *err)
{
    bool classes = n_classes >= 2;
    int task = cfg->task;
    const char *labels = *cfg->train_labels ? cfg->train_labels : cfg->train_data;
    if (task == PS_TASK_AUTO && cfg->model == PS_MODEL_MLP) {
        task = classes && cfg->loss != PS_LOSS_MSE ? PS_TASK_CLASSIFICATION : PS_TASK_REGRESSION;
        if (classes && cfg->loss == PS_LOSS_MSE)
            ps_log(PS_LOG_NOTICE,
                   "task auto: the labels of '%s' are whole numbers 0..%u and the loss is mse: "
                   "training a regression on them (set task classification for MSE on one-hot "
                   "classes)",
                   labels, n_classes - 1);
        else if (classes)
            ps_log(PS_LOG_NOTICE,
                   "task auto: the labels of '%s' are whole numbers 0..%u: training a classifier "
                   "of %u classes (set task regression if they are a target to predict)",
                   labels, n_classes - 1, n_classes);
        else
            ps_log(PS_LOG_NOTICE,
                   "task auto: the labels of '%s' are not class ids: regression "
                   "(mse)",
                   labels);
    }
    bool regression_model = cfg->model == PS_MODEL_LINEAR;
    bool classifier_model = cfg->model == PS_MODEL_LOGISTIC || cfg->model == PS_MODEL_SOFTMAX;
    if (task == PS_TASK_REGRESSION && classifier_model)
        return ps_err_set(err, PS_EINVAL,
                          "task regression: model %s is a classifier (use mlp or "
                          "linear)",
                          ps_worker_model_name(cfg));
    if (task == PS_TASK_CLASSIFICATION && regression_model)
        return ps_err_set(err, PS_EINVAL,
                          "task classification: model linear is a regression "
                          "(use softmax, logistic or mlp)");
    if (task == PS_TASK_REGRESSION && cfg->loss == PS_LOSS_CE)
        return ps_err_set(err, PS_EINVAL, "task regression takes loss mse (or auto), not ce");
    if (task == PS_TASK_CLASSIFICATION && cfg->model != PS_MODEL_LOGISTIC && !classes)
        return ps_err_set(err, PS_EFORMAT,
                          "task classification: the labels of '%s' are not "
                          "class ids 0..C-1 with C >= 2",
                          labels);
    if (cfg->model == PS_MODEL_MLP && task == PS_TASK_REGRESSION)
        *n_outputs = 1;
    else
        *n_outputs = classes ? n_classes : 1;
    return PS_OK;
}

/* The options whose values define a job: workers of one job agree on them. */
static const char *const job_options[] = {
    "model", "hidden", "activation", "loss", "task", "data_format", "train_data", "train_labels",
    "label_column", "standardize", "hash_bits", "fm_dim", "init_scale", "epochs", "batch_size",
    "max_steps", "seed", "optimizer", "lr", "momentum", "nesterov", "beta1", "beta2", "eps",
    "weight_decay", "rho", "lr_schedule", "lr_step_size", "lr_gamma", "min_lr", "warmup_steps",
    "l1", "l2", "ftrl_beta", "max_staleness", "precision", "loss_scale", "loss_scale_window",
    "val_fraction", "train_subset", "split_seed", "slice_elems",
    /* the layer nets: a spec, a GPT, the windows of a text corpus */
    "input", "layers", "n_layer", "n_head", "n_embd", "block_size", "dropout", "text_stride",
    /* streamed input: which samples make each step's batch */
    "stream", "partitions", "shuffle_window", "classes",
    /* the pipeline: which layers a stage job's tables are */
    "pipeline_stages", "micro_batches", "stage_layers", NULL};

/* The bytes and files a train_data pattern (stream yes) matches. */
static int pattern_size(const char *pattern, uint64_t *bytes, uint64_t *files)
{
    ps_partlist_t l;
    ps_errbuf_t err;
    *bytes = *files = 0;
    if (ps_stream_partitions(pattern, 0, 1, &l, &err) != PS_OK)
        return -1;
    for (size_t i = 0; i < l.n; i++) {
        struct stat st;
        if (stat(l.parts[i].path, &st) == 0) {
            *bytes += (uint64_t)st.st_size;
            ++*files;
        }
    }
    ps_partlist_fini(&l);
    return 0;
}

void ps_worker_fingerprint(const ps_worker_config_t *cfg, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; job_options[i] && len < cap; i++) {
        const ps_opt_t *opt = ps_config_find(&ps_worker_optset, job_options[i]);
        char value[PS_OPT_STR_MAX];
        ps_config_value_str(opt, cfg, value, sizeof value);
        len += (size_t)snprintf(buf + len, cap - len, "%s=%s\n", opt->name, value);
    }
    /* What the data is, not only its name: a corpus directory is the sum
     * of the files the text reader joins (a directory's own size does not
     * change when a file in it grows). */
    uint64_t bytes, files;
    bool sized = ps_text_corpus_size(cfg->train_data, &bytes, &files) == 0;
    if (!sized && ps_stream_names_many(cfg->train_data))
        sized = pattern_size(cfg->train_data, &bytes, &files) == 0;
    if (len < cap && sized)
        len += (size_t)snprintf(buf + len, cap - len, "train_data.bytes=%llu\n",
                                (unsigned long long)bytes);
    if (len < cap && sized && ps_stream_names_many(cfg->train_data))
        snprintf(buf + len, cap - len, "train_data.files=%llu\n", (unsigned long long)files);
}
