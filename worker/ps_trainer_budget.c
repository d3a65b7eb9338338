/* ps_trainer_budget.c - memory_budget_mb: before the dense trainer
 * allocates its net, what the worker will hold, part by part, against the
 * budget; a refusal that says what is too large and that pipeline_stages
 * would split it. Worker main thread only. */
#include "ps_trainer_int.h"

#include <stdio.h>

#include "ps_log.h"
#include "ps_report.h"

#define MB 1e6
/* What starts after the check and is not sized by the job: OpenBLAS's
 * work buffers, ZeroMQ's I/O threads and messages in flight, the stats
 * and heartbeat threads. Measured at 1 to 4 MB on the wide MLP
 * (docs/architecture.md, "Memory budget"); twice that, as an allowance. */
#define RUNTIME_BYTES (8 * 1000 * 1000ULL)

static uint64_t set_bytes(const ps_dataset_t *ds)
{
    uint64_t cells = (uint64_t)ds->n * ds->d;
    return (ds->x ? cells * sizeof(float) : 0) + (ds->x8 ? cells : 0) +
           (ds->y ? ds->n * sizeof(float) : 0);
}

/* Bytes of the data this worker keeps (pswk_data_keep): the training rows
 * or a corpus's bytes, the validation and test sets. */
static uint64_t data_bytes(const trainer_t *tr)
{
    return set_bytes(&tr->train) + set_bytes(&tr->val) + set_bytes(&tr->test) +
           (tr->text ? ps_text_n_bytes(tr->text) : 0);
}

/* The step's buffers pswk_trainer_build_net and pswk_pipe_build_net make:
 * the gathered rows, labels, dropout keys, the epoch's order, a stage's
 * kept inputs and output gradient. */
static uint64_t step_bytes(const trainer_t *tr, size_t in_len, size_t out_len, size_t micro)
{
    uint64_t b = (uint64_t)tr->cfg->batch_size;
    uint64_t row = pswk_step_row(tr);
    uint64_t n = b * row * sizeof(float) + b * (sizeof(float) + sizeof(uint64_t)) +
                 (uint64_t)(tr->stream || !tr->n_train ? 1 : tr->n_train) * sizeof(uint32_t);
    if (tr->n_stages > 1 && tr->stage > 0)
        n += b * in_len * sizeof(float);
    if (tr->stage + 1 < tr->n_stages)
        n += micro * out_len * sizeof(float);
    return n;
}

int pswk_check_budget(trainer_t *tr, const ps_netspec_t *spec, size_t lo, size_t hi,
                      size_t max_batch, size_t n_nets, ps_errbuf_t *err)
{
    const ps_worker_config_t *c = tr->cfg;
    if (c->memory_budget_mb == 0)
        return PS_OK;
    ps_net_mem_t m;
    int rc = ps_net_stage_memory(spec, lo, hi, max_batch, &m, err);
    if (rc != PS_OK)
        return rc;
    m.activations *= n_nets;
    m.scratch *= n_nets;
    /* the process so far: libraries, ZeroMQ, OpenBLAS's threads and the
     * data as loaded (its peak: a loader's transient buffers count) */
    uint64_t proc = (uint64_t)ps_report_peak_rss_bytes();
    uint64_t data = data_bytes(tr);
    uint64_t step = step_bytes(tr, m.in_len, m.out_len, max_batch);
    /* same_host: each chunk's push and reply slot in the shared regions,
     * touched once per step (the gradients and parameters at wire width) */
    uint64_t wire = c->precision == PS_PRECISION_FP32 ? 4 : 2;
    uint64_t shm = c->same_host ? 2 * (m.params / sizeof(float)) * wire : 0;
    uint64_t total =
        proc + m.params + m.grads + m.activations + m.scratch + step + shm + RUNTIME_BYTES;
    uint64_t budget = (uint64_t)c->memory_budget_mb * 1000000;
    char parts[768];
    snprintf(
        parts, sizeof parts,
        "the process so far %.1f MB (of which the training data it keeps %.1f MB), "
        "parameters %.1f MB, their gradients %.1f MB, activations at %zu x %zu samples %.1f MB, "
        "layer scratch %.1f MB, step buffers %.1f MB, same_host slots %.1f MB, threads "
        "and libraries after the check %.1f MB",
        (double)proc / MB, (double)data / MB, (double)m.params / MB, (double)m.grads / MB, n_nets,
        max_batch, (double)m.activations / MB, (double)m.scratch / MB, (double)step / MB,
        (double)shm / MB, (double)RUNTIME_BYTES / MB);
    if (total <= budget) {
        ps_log(PS_LOG_INFO, "worker %u: memory estimate %.1f MB within memory_budget_mb %lld: %s",
               tr->world_rank, (double)total / MB, (long long)c->memory_budget_mb, parts);
        return PS_OK;
    }
    if (tr->n_stages > 1)
        return ps_err_set(err, PS_ENOMEM,
                          "memory_budget_mb %lld: stage %u of %u would hold about %.1f MB: %s; "
                          "more pipeline_stages would split it further%s",
                          (long long)c->memory_budget_mb, tr->stage, tr->n_stages,
                          (double)total / MB, parts,
                          n_nets > 1 ? ", pipeline_recompute yes would keep one micro-batch's "
                                       "activations instead of all"
                                     : "");
    return ps_err_set(err, PS_ENOMEM,
                      "memory_budget_mb %lld: this worker would hold about %.1f MB: %s; "
                      "pipeline_stages P would split the model's parameters, gradients and "
                      "activations across P workers",
                      (long long)c->memory_budget_mb, (double)total / MB, parts);
}
