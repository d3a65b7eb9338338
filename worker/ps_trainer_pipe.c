/* ps_trainer_pipe.c - a pipeline stage's part of the dense trainer
 * (pipeline_stages > 1): its net, its links to the stage peers, the GPipe
 * step, the export in pieces. Worker main thread only.
 *
 * A step: the replica's part of the global batch (as a data-parallel
 * worker of rank = replica cuts it) in micro_batches contiguous pieces.
 * Forward: stage 0 runs every micro-batch and sends each output on; a
 * middle stage does the same with what arrives; the last stage runs
 * forward, loss and backward of each as it arrives and sends the input's
 * gradient back. Backward (every stage but the last): per micro-batch, in
 * order, the output gradient arrives and backward runs on the activations
 * its forward left in its own net (micro_net: a sibling per micro-batch,
 * all on the stage's tables), its input gradient sent back. With
 * pipeline_recompute the stage has one net and recomputes each forward
 * from the input kept first (GPipe's re-materialisation: one micro-batch's
 * activations in memory, not micro_batches of them, for a third more
 * compute on the stage). Gradients are summed over the micro-batches in
 * place (the backwards after the first add to the net's gradients: no
 * copy of them); the last micro-batch's backward finishes each slice's
 * sum and pushes it at once, so the push overlaps the rest of backward as
 * in the data-parallel step; a stage after the first holds those pushes
 * until that micro-batch's gradient is sent back (pipe_defer). */
#include "ps_trainer_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_curve.h"
#include "ps_export.h"
#include "ps_log.h"
#include "ps_text.h"
#include "ps_time.h"

static size_t micro_max(const trainer_t *tr)
{
    size_t b = (size_t)tr->cfg->batch_size, m = (size_t)tr->cfg->micro_batches;
    return (b + m - 1) / m;
}

static bool is_last(const trainer_t *tr)
{
    return tr->stage + 1 == tr->n_stages;
}

/* The nets a stage holds activations in: one per micro-batch before the
 * last stage (unless pipeline_recompute), else one. */
static size_t n_nets(const trainer_t *tr)
{
    bool keep = !is_last(tr) && !tr->cfg->pipeline_recompute && tr->cfg->micro_batches > 1;
    return keep ? (size_t)tr->cfg->micro_batches : 1;
}

/* The split and the log line saying what this stage holds. */
static int split(trainer_t *tr, const ps_netspec_t *spec, size_t *lo, size_t *hi, ps_errbuf_t *err)
{
    const ps_worker_config_t *c = tr->cfg;
    ps_stage_item_t *items = ps_xcalloc(spec->n_layers, sizeof *items);
    int64_t user[PS_STAGE_MAX];
    size_t first[PS_STAGE_MAX + 1];
    int rc = ps_net_stage_items(spec, items, err);
    if (rc == PS_OK && *c->stage_layers)
        rc = ps_stage_parse(c->stage_layers, tr->n_stages, user, err);
    if (rc == PS_OK)
        rc = ps_stage_split(items, spec->n_layers, tr->n_stages, *c->stage_layers ? user : NULL,
                            first, err);
    if (rc == PS_OK) {
        *lo = first[tr->stage];
        *hi = first[tr->stage + 1];
        uint64_t n = 0;
        for (size_t i = *lo; i < *hi; i++)
            n += items[i].n_params;
        ps_log(PS_LOG_INFO,
               "worker %u (replica %u, stage %u of %u): layers %d..%d ('%s' .. '%s'), %llu "
               "parameters; %lld micro-batches of up to %zu",
               tr->world_rank, tr->rank, tr->stage, tr->n_stages, items[*lo].pos,
               items[*hi - 1].pos, items[*lo].text, items[*hi - 1].text, (unsigned long long)n,
               (long long)c->micro_batches, micro_max(tr));
    }
    free(items);
    return rc;
}

int pswk_pipe_build_net(trainer_t *tr, const ps_netspec_t *spec, ps_errbuf_t *err)
{
    size_t lo, hi;
    int rc = split(tr, spec, &lo, &hi, err);
    if (rc == PS_OK)
        rc = pswk_check_budget(tr, spec, lo, hi, micro_max(tr), n_nets(tr), err);
    if (rc != PS_OK)
        return rc;
    tr->net = ps_net_new_stage(spec, lo, hi, micro_max(tr), (size_t)tr->cfg->slice_elems, err);
    if (!tr->net)
        return err->code;
    if (n_nets(tr) > 1) {
        tr->micro_net = ps_xcalloc(n_nets(tr), sizeof *tr->micro_net);
        tr->micro_net[0] = tr->net;
        for (size_t m = 1; m < n_nets(tr); m++)
            if (!(tr->micro_net[m] = ps_net_new_sibling(spec, tr->net, err)))
                return err->code;
    }
    size_t b = (size_t)tr->cfg->batch_size;
    tr->in_len = ps_net_input_len(tr->net);
    tr->out_len = ps_shape_len(ps_net_output_shape(tr->net));
    if (tr->stage > 0)
        tr->pin = ps_xmalloc(b * tr->in_len * sizeof(float));
    if (tr->stage + 1 < tr->n_stages)
        tr->pdy = ps_xmalloc(micro_max(tr) * tr->out_len * sizeof(float));
    if (tr->stage > 0)
        tr->deferred = ps_xcalloc(ps_net_n_slices(tr->net), sizeof *tr->deferred);
    return PS_OK;
}

int pswk_pipe_open(trainer_t *tr, ps_errbuf_t *err)
{
    const ps_worker_config_t *c = tr->cfg;
    ps_curve_keys_t own = {0};
    if (*c->curve_secret_file && ps_curve_load(c->curve_secret_file, true, &own, err) != PS_OK)
        return err->code;
    ps_pipe_opts_t o = {
        .dir = c->pipeline_dir,
        .job = c->job,
        .bind = c->pipeline_bind,
        .rank = tr->world_rank,
        .stage = tr->stage,
        .n_stages = tr->n_stages,
        .replica = tr->rank,
        .timeout_ms = c->pipeline_timeout_ms,
        .stop = tr->stop,
        .curve_public = *c->curve_secret_file ? own.public_z85 : NULL,
        .curve_secret = *c->curve_secret_file ? own.secret_z85 : NULL,
        .same_host = c->pipeline_same_host,
        .step_messages = (uint32_t)c->micro_batches,
        .message_bytes_to_next = (uint64_t)micro_max(tr) * tr->out_len * sizeof(float),
        .message_bytes_to_prev = (uint64_t)micro_max(tr) * tr->in_len * sizeof(float),
    };
    tr->pipe = ps_pipe_new(&o, err);
    memset(&own, 0, sizeof own);
    return tr->pipe ? PS_OK : err->code;
}

void pswk_pipe_free(trainer_t *tr)
{
    ps_pipe_destroy(&tr->pipe);
    for (size_t m = 1; tr->micro_net && m < n_nets(tr); m++)
        ps_net_destroy(&tr->micro_net[m]);
    free(tr->micro_net);
    tr->micro_net = NULL;
    free(tr->deferred);
    tr->deferred = NULL;
    free(tr->pin);
    free(tr->pdy);
}

static void micro(const trainer_t *tr, uint32_t m, size_t *off, size_t *len)
{
    size_t n = tr->cur_batch, k = (size_t)tr->cfg->micro_batches;
    *off = m * n / k;
    *len = (m + 1) * n / k - *off;
}

/* The net micro-batch m's forward and backward run in. */
static ps_net_t *net_of(const trainer_t *tr, uint32_t m)
{
    return tr->micro_net ? tr->micro_net[m] : tr->net;
}

/* The last micro-batch's backward on a stage after the first: a table
 * its backward made final waits until the stage before has this
 * micro-batch's gradient. That gradient is what the stage before waits
 * for (its drain), while these tables' replies are read only by this
 * stage's next forward, which comes after that stage's backward and its
 * own push and pull; pushing first put every copy and send into the
 * drain. */
static void pipe_defer(void *ctx, uint32_t id)
{
    trainer_t *tr = ctx;
    if (tr->n_deferred < ps_net_n_slices(tr->net))
        tr->deferred[tr->n_deferred++] = id;
    else /* never: backward makes each table final once */
        pswk_grad_ready(tr, id);
}

/* Pushes what pipe_defer held back, in the order backward made it. */
static void push_deferred(trainer_t *tr)
{
    for (size_t i = 0; i < tr->n_deferred; i++)
        pswk_grad_ready(tr, tr->deferred[i]);
    tr->n_deferred = 0;
}

/* Micro-batch m's backward begins the step's gradient sums (m == 0) or
 * adds to them; only the last one's makes a slice final, to push. */
static ps_grad_ready_fn sum_into(trainer_t *tr, ps_net_t *net, uint32_t m)
{
    ps_net_set_accumulate(net, m > 0);
    if (m + 1 < tr->cfg->micro_batches)
        return NULL;
    return tr->stage > 0 ? pipe_defer : pswk_grad_ready;
}

static const float *input_of(const trainer_t *tr, size_t off)
{
    return tr->stage == 0 ? tr->bx + off * tr->data_row : tr->pin + off * tr->in_len;
}

/* ps_pipe_recv, its wait a span of the timeline. */
static int traced_recv(trainer_t *tr, ps_span_t kind, const ps_pipe_msg_t *want, float *values,
                       size_t n, ps_pipe_msg_t *got, ps_errbuf_t *err)
{
    int64_t t0 = ps_time_ns();
    int rc = ps_pipe_recv(tr->pipe, want, values, n, got, err);
    ps_trace_span(tr->trace, kind, t0, ps_time_ns(), want->micro);
    return rc;
}

/* ps_pipe_send, its time a span of the timeline. */
static int traced_send(trainer_t *tr, const ps_pipe_msg_t *msg, const float *values, size_t n,
                       ps_errbuf_t *err)
{
    int64_t t0 = ps_time_ns();
    int rc = ps_pipe_send(tr->pipe, msg, values, n, err);
    ps_trace_span(tr->trace, PS_SPAN_SEND, t0, ps_time_ns(), msg->micro);
    return rc;
}

/* Micro-batch m's input gradient to the stage before, then the pushes
 * its backward held back (the last micro-batch's). */
static int send_back(trainer_t *tr, const ps_net_t *net, uint32_t m, size_t len, double loss,
                     ps_errbuf_t *err)
{
    if (tr->stage == 0)
        return PS_OK;
    ps_pipe_msg_t msg = {PS_PIPE_BWD, m, tr->clock, len, loss};
    int rc = traced_send(tr, &msg, ps_net_input_grad(net), len * tr->in_len, err);
    push_deferred(tr);
    return rc;
}

static int abandoned(trainer_t *tr, ps_errbuf_t *err)
{
    *err = tr->wait_err;
    return tr->wait_rc;
}

/* Micro-batch m of the forward sweep: its input (the data, or from the
 * stage before), then forward on (or, on the last stage, all of it). */
static int forward_micro(trainer_t *tr, uint32_t m, double *loss, ps_errbuf_t *err)
{
    size_t off, len;
    micro(tr, m, &off, &len);
    if (tr->stage > 0) {
        ps_pipe_msg_t want = {PS_PIPE_FWD, m, tr->clock, len, 0}, got;
        int rc = traced_recv(tr, PS_SPAN_WAIT_PREV, &want, tr->pin + off * tr->in_len,
                             len * tr->in_len, &got, err);
        if (rc != PS_OK)
            return rc;
    }
    int64_t t_pass = ps_time_ns();
    ps_net_t *net = net_of(tr, m);
    ps_net_set_sample_keys(net, tr->keys + off, len);
    if (is_last(tr)) {
        if (tr->text && tr->stage > 0)
            ps_net_set_targets(net, tr->bx + off * tr->data_row, len);
        double l = ps_net_train_batch(net, input_of(tr, off), tr->by + off, len, pswk_params_needed,
                                      sum_into(tr, net, m), tr);
        ps_trace_span(tr->trace, PS_SPAN_TRAIN, t_pass, ps_time_ns(), m);
        if (tr->wait_rc != PS_OK)
            return abandoned(tr, err);
        *loss += l;
        return send_back(tr, net, m, len, l, err);
    }
    if (ps_net_stage_forward(net, input_of(tr, off), len, true, pswk_params_needed, tr) != 0)
        return abandoned(tr, err);
    ps_trace_span(tr->trace, PS_SPAN_FORWARD, t_pass, ps_time_ns(), m);
    ps_pipe_msg_t msg = {PS_PIPE_FWD, m, tr->clock, len, 0};
    return traced_send(tr, &msg, ps_net_output(net), len * tr->out_len, err);
}

/* Micro-batch m of the backward sweep (a stage before the last). */
static int backward_micro(trainer_t *tr, uint32_t m, double *loss, ps_errbuf_t *err)
{
    size_t off, len;
    micro(tr, m, &off, &len);
    ps_pipe_msg_t want = {PS_PIPE_BWD, m, tr->clock, len, 0}, got;
    int rc = traced_recv(tr, PS_SPAN_WAIT_NEXT, &want, tr->pdy, len * tr->out_len, &got, err);
    int64_t t_pass = ps_time_ns();
    if (rc != PS_OK)
        return rc;
    *loss += got.loss;
    ps_net_t *net = net_of(tr, m);
    /* one net for several micro-batches: its activations are the last
     * forward's, so this one's forward again */
    if (!tr->micro_net && tr->cfg->micro_batches > 1) {
        ps_net_set_sample_keys(net, tr->keys + off, len);
        if (ps_net_stage_forward(net, input_of(tr, off), len, true, pswk_params_needed, tr) != 0)
            return abandoned(tr, err);
    }
    ps_net_stage_backward(net, tr->pdy, len, sum_into(tr, net, m), tr);
    ps_trace_span(tr->trace, PS_SPAN_BACKWARD, t_pass, ps_time_ns(), m);
    return send_back(tr, net, m, len, got.loss, err);
}

/* The replica's part of the step's batch and its dropout keys (the data
 * partition of ps_trainer.c's train_step, with rank = replica). */
static void gather(trainer_t *tr, uint64_t step)
{
    uint64_t g_full = (uint64_t)tr->world * (uint64_t)tr->cfg->batch_size;
    uint64_t start = step * g_full;
    uint64_t g = tr->n_train - start < g_full ? tr->n_train - start : g_full;
    uint64_t lo = start + tr->rank * g / tr->world, hi = start + (tr->rank + 1) * g / tr->world;
    tr->cur_batch = (size_t)(hi - lo);
    if (tr->text)
        ps_text_gather(tr->text, tr->order + lo, tr->cur_batch, tr->bx, tr->by);
    else
        ps_data_gather(&tr->train, tr->order + lo, tr->cur_batch, tr->bx, tr->by);
    for (size_t i = 0; i < tr->cur_batch; i++)
        tr->keys[i] =
            ps_net_sample_key((uint64_t)tr->cfg->seed, (uint64_t)tr->clock, lo - start + i);
}

int pswk_pipe_step(trainer_t *tr, uint64_t step, double *loss_sum, ps_errbuf_t *err)
{
    int64_t t0 = ps_time_ns(), w0 = ps_pipe_wait_ns(tr->pipe);
    gather(tr, step);
    /* no forward reads the slices of an empty batch: wait for them here,
     * never two requests of one slice in flight */
    int rc = tr->cur_batch == 0 ? ps_client_wait(tr->client, err) : PS_OK;
    tr->send_rc = PS_OK;
    tr->wait_rc = PS_OK;
    tr->n_deferred = 0;
    double loss = 0;
    uint32_t n_micro = (uint32_t)tr->cfg->micro_batches;
    for (uint32_t m = 0; rc == PS_OK && m < n_micro; m++)
        rc = forward_micro(tr, m, &loss, err);
    for (uint32_t m = 0; rc == PS_OK && !is_last(tr) && m < n_micro; m++)
        rc = backward_micro(tr, m, &loss, err);
    tr->pipe_step_ns += ps_time_ns() - t0;
    tr->pipe_wait_ns += ps_pipe_wait_ns(tr->pipe) - w0;
    if (rc != PS_OK)
        return rc;
    if (tr->send_rc != PS_OK)
        return ps_err_set(
            err, tr->send_rc, "worker %u (stage %u): cannot send push of clock %lld: %s",
            tr->world_rank, tr->stage, (long long)tr->clock, ps_strerror(tr->send_rc));
    *loss_sum += loss;
    tr->clock++;
    tr->samples += tr->cur_batch;
    return PS_OK;
}

/* model.json of the whole net, from its shapes alone (no stage holds its
 * parameters). */
static int write_model_json(trainer_t *tr, ps_errbuf_t *err)
{
    const ps_worker_config_t *c = tr->cfg;
    ps_netspec_t spec = {0};
    ps_net_t *whole = NULL;
    int rc = ps_netdesc_spec(&tr->desc, &spec, err);
    if (rc == PS_OK && !(whole = ps_net_new_shapes(&spec, err)))
        rc = err->code;
    ps_export_info_t info = {ps_worker_model_name(c), &tr->desc, tr->clock, c->seed, NULL};
    if (rc == PS_OK)
        rc = ps_export_model_json(c->save_model, &info, whole, false, err);
    ps_net_destroy(&whole);
    ps_netspec_fini(&spec);
    return rc;
}

int pswk_pipe_export(trainer_t *tr, ps_errbuf_t *err)
{
    const ps_worker_config_t *c = tr->cfg;
    if (!*c->save_model || tr->rank != 0)
        return PS_OK;
    int rc = ps_export_tables(c->save_model, tr->net, err);
    if (rc == PS_OK && !is_last(tr)) {
        ps_pipe_msg_t want = {PS_PIPE_SAVED, 0, tr->clock, 0, 0}, got;
        rc = ps_pipe_recv(tr->pipe, &want, NULL, 0, &got, err);
    }
    if (rc == PS_OK && tr->stage > 0) {
        ps_pipe_msg_t msg = {PS_PIPE_SAVED, 0, tr->clock, 0, 0};
        rc = ps_pipe_send(tr->pipe, &msg, NULL, 0, err);
    }
    if (rc == PS_OK && tr->stage == 0)
        rc = write_model_json(tr, err);
    if (rc == PS_OK)
        ps_log(PS_LOG_INFO, "worker %u (stage %u): %s saved to '%s'", tr->world_rank, tr->stage,
               tr->stage == 0 ? "its tables and model.json" : "its tables", c->save_model);
    return rc;
}

void pswk_pipe_report(const trainer_t *tr, ps_event_t *ev)
{
    double step_s = (double)tr->pipe_step_ns / 1e9;
    double wait_s = (double)tr->pipe_wait_ns / 1e9;
    double server_s = (double)tr->server_wait_ns / 1e9;
    double busy = step_s - wait_s - server_s;
    ps_event_set_int(ev, PS_EF_RANK, tr->world_rank);
    ps_event_set_int(ev, PS_EF_WORLD, (int64_t)tr->world * tr->n_stages);
    ps_event_set_int(ev, PS_EF_REPLICA, tr->rank);
    ps_event_set_int(ev, PS_EF_STAGE, tr->stage);
    ps_event_set_num(ev, PS_EF_STAGE_BUSY_S, busy > 0 ? busy : 0);
    ps_event_set_num(ev, PS_EF_PIPE_WAIT_S, wait_s);
    ps_event_set_num(ev, PS_EF_BUBBLE_FRACTION, step_s > 0 ? wait_s / step_s : 0);
}
