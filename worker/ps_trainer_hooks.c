/* ps_trainer_hooks.c - what the dense trainer's steps call back into
 * (both ps_trainer.c's and ps_trainer_pipe.c's): the net's push and wait
 * callbacks, and a finished step's span in the timeline. Worker main
 * thread only. */
#include "ps_client.h"
#include "ps_log.h"
#include "ps_net.h"
#include "ps_time.h"
#include "ps_trace.h"
#include "ps_trainer_int.h"

/* Waits for a server shorter than this are not spans of the timeline. */
#define PSWK_TRACE_MIN_WAIT_NS 1000

/* The wire tables are the model's slices: table id == slice id. */
void pswk_grad_ready(void *ctx, uint32_t id)
{
    trainer_t *tr = ctx;
    if (tr->send_rc != PS_OK)
        return;
    int64_t t0 = ps_trace_on(tr->trace) ? ps_time_ns() : 0;
    tr->send_rc = ps_client_push_pull(tr->client, id, tr->clock, ps_net_slice_grads(tr->net, id),
                                      tr->cur_batch, 1.0f, 0, ps_net_slice_params(tr->net, id));
    if (t0)
        ps_trace_span(tr->trace, PS_SPAN_PUSH, t0, ps_time_ns(), id);
}

/* Forward is about to read slice id: its reply from the last step must be
 * in. The replies of later slices keep arriving while this one computes. */
int pswk_params_needed(void *ctx, uint32_t id)
{
    trainer_t *tr = ctx;
    int64_t t0 = ps_time_ns();
    tr->wait_rc = ps_client_wait_table(tr->client, id, &tr->wait_err);
    int64_t t1 = ps_time_ns();
    tr->server_wait_ns += t1 - t0;
    /* a reply already in costs a few hundred ns: not a wait worth a span */
    if (t1 - t0 >= PSWK_TRACE_MIN_WAIT_NS)
        ps_trace_span(tr->trace, PS_SPAN_WAIT_SERVER, t0, t1, id);
    return tr->wait_rc;
}

void pswk_trace_step(trainer_t *tr, int64_t t0_ns, bool done)
{
    if (!ps_trace_on(tr->trace))
        return;
    ps_errbuf_t err;
    ps_trace_span(tr->trace, PS_SPAN_STEP, t0_ns, ps_time_ns(), done ? tr->clock - 1 : tr->clock);
    if (!done)
        return;
    if (ps_trace_step_done(tr->trace, &err) != PS_OK)
        ps_log(PS_LOG_WARN, "worker %u: %s (training goes on)", tr->world_rank, err.msg);
    else if (!ps_trace_on(tr->trace))
        ps_log(PS_LOG_INFO, "worker %u: timeline of %lld steps written (trace_dir)", tr->world_rank,
               (long long)tr->cfg->trace_steps);
}
