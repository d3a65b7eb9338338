/* ps_trainer_sync.c - where the stages of a pipeline resume after a
 * failure (pipeline_stages > 1). Worker main thread only.
 *
 * Each stage is a job of its own on the servers (JOB.stage<s>), so after a
 * shard restart, a rollback or a stage declared dead, each stage's job
 * could recover to a clock of its own (a checkpoint every N clocks is taken
 * by every job at the same multiples, but a stage one step ahead may hold
 * one its neighbour does not). A sync round makes them agree:
 *
 * 1. A stage that meets a recoverable error begins round k: ABORT(k) to
 *    each neighbour (which drops the step in hand and begins round k too,
 *    passing it on), then recovers its own job to the clock it can (exact:
 *    ps_client_recover).
 * 2. SYNC_UP: stage 0 sends the clocks its job can resume at (where it
 *    is, and the checkpoints every shard of it holds) on; every stage
 *    passes on those of them its own job can resume at too; the last
 *    stage takes the newest left, R. (A stage one step ahead of the
 *    others cannot go back one step: only to a checkpoint.)
 * 3. SYNC_DOWN: R goes back from the last stage to the first.
 * 4. Every stage whose job is not at R rolls it back there
 *    (ps_client_rollback_to), pulls
 *    its parameters of R and trains on from R: the data position, the
 *    dropout keys and the servers' state follow from the clock, so the
 *    steps replayed are those of an uninterrupted run.
 *
 * The same round, begun by a stage that finished training (no ABORT: its
 * neighbours may still be in their last step; its own clock; the flag
 * that a stage recovers comes with SYNC_UP and SYNC_DOWN), is the barrier
 * at the end: no stage leaves while another could still need it to
 * replay. Messages between two stages are FIFO and
 * a stage sends its ABORT before its sync messages, so what the abandoned
 * step left in a queue is dropped before the round's message arrives.
 * With several replicas, a rollback of a stage's job fails the other
 * replicas' requests (ESTALE): their chains run a round of their own, and
 * arrive at the same clock. */
#include "ps_trainer_int.h"

#include <stdio.h>
#include <string.h>

#include "ps_log.h"

/* A round's waits: a neighbour may first have a shard to HELLO again
 * (request_timeout_ms) before it answers. */
static int64_t round_timeout_ms(const trainer_t *tr)
{
    return tr->cfg->pipeline_timeout_ms + 2 * tr->cfg->request_timeout_ms;
}

#define POINTS_MAX 64 /* resume points a stage offers: its clock, its checkpoints */

/* This stage's own job brought to one clock (exact; after a clean finish
 * that is only a HELLO), *at, and the clocks it can resume at. */
static int own_points(trainer_t *tr, bool recovering, int64_t *at, int64_t *points, size_t *n,
                      ps_errbuf_t *err)
{
    int rc;
    if (recovering)
        tr->recoveries++;
    while (ps_worker_recoverable(rc = ps_client_recover(tr->client, true, at, err)))
        if (++tr->recoveries > 100)
            return ps_err_set(err, rc, "worker %u (stage %u): giving up after %u recoveries: %s",
                              tr->world_rank, tr->stage, tr->recoveries - 1, err->msg);
    if (rc == PS_OK)
        *n = ps_client_resume_points(tr->client, *at, points, POINTS_MAX);
    return rc;
}

/* Keeps the clocks of a[0..na) that are in b[0..nb). */
static size_t intersect(int64_t *a, size_t na, const int64_t *b, size_t nb)
{
    size_t n = 0;
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++)
            if (a[i] == b[j]) {
                a[n++] = a[i];
                break;
            }
    return n;
}

static int nothing_in_common(const trainer_t *tr, int64_t at, const int64_t *points, size_t n,
                             ps_errbuf_t *err)
{
    char list[256] = "";
    size_t len = 0;
    for (size_t i = 0; i < n && len < sizeof list - 24; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%lld", i ? ", " : "",
                                (long long)points[i]);
    return ps_err_set(err, PS_ENOCKPT,
                      "worker %u (replica %u, stage %u): the stages' jobs hold no clock in common "
                      "to resume at (this stage's job is at %lld and can resume at %s): the "
                      "model cannot be made whole; more checkpoint_keep, or a checkpoint_every "
                      "that divides the clocks the stages stop at, keeps one",
                      tr->world_rank, tr->rank, tr->stage, (long long)at, list);
}

/* Steps 2 and 3: the newest clock every stage can resume at, *resume (-1:
 * none), and whether any stage recovers. */
static int agree(trainer_t *tr, uint32_t round, int64_t *points, size_t n, bool recovering,
                 int64_t *resume, bool *any, ps_errbuf_t *err)
{
    bool last = tr->stage + 1 == tr->n_stages;
    int64_t timeout = round_timeout_ms(tr), theirs[POINTS_MAX];
    size_t n_theirs;
    ps_pipe_msg_t m = {PS_PIPE_SYNC_UP, round, -1, recovering ? PS_PIPE_RECOVERING : 0, 0}, got;
    int rc = PS_OK;
    if (tr->stage > 0 && (rc = ps_pipe_sync_recv(tr->pipe, &m, timeout, &got, theirs, POINTS_MAX,
                                                 &n_theirs, err)) == PS_OK) {
        n = intersect(points, n, theirs, n_theirs);
        m.n_samples |= got.n_samples;
    }
    m.clock = n ? points[0] : -1;
    if (rc == PS_OK && !last)
        rc = ps_pipe_sync_send(tr->pipe, &m, points, n, err);
    m.kind = PS_PIPE_SYNC_DOWN;
    if (rc == PS_OK && !last &&
        (rc = ps_pipe_sync_recv(tr->pipe, &m, timeout, &got, theirs, POINTS_MAX, &n_theirs, err)) ==
            PS_OK)
        m = got;
    if (rc == PS_OK && tr->stage > 0)
        rc = ps_pipe_sync_send(tr->pipe, &m, NULL, 0, err);
    *resume = m.clock;
    *any = m.n_samples & PS_PIPE_RECOVERING;
    return rc;
}

/* One round; *resumed: a stage recovered, and this one trains on from
 * tr->clock (its parameters pulled there). */
static int sync_round(trainer_t *tr, bool recovering,
                      int (*refetch)(void *ctx, int64_t clock, ps_errbuf_t *err), bool *resumed,
                      ps_errbuf_t *err)
{
    uint32_t round = ps_pipe_announced_round(tr->pipe);
    round = round ? round : tr->sync_round + 1;
    tr->sync_round = round;
    *resumed = false;
    int64_t at = tr->clock, resume, points[POINTS_MAX], mine[POINTS_MAX];
    size_t n = 0;
    bool any;
    int rc = ps_pipe_begin_round(tr->pipe, round, recovering, err);
    if (rc == PS_OK)
        rc = own_points(tr, recovering, &at, points, &n, err);
    /* a shard that restarted at an older checkpoint after this stage's
     * last step: its job went back, so the stages must replay with it */
    recovering = recovering || at != tr->clock;
    memcpy(mine, points, n * sizeof *points);
    if (rc == PS_OK)
        rc = agree(tr, round, points, n, recovering, &resume, &any, err);
    if (rc == PS_OK && resume < 0)
        return nothing_in_common(tr, at, mine, n, err);
    if (rc != PS_OK || !any)
        return rc;
    if (at != resume)
        rc = ps_client_rollback_to(tr->client, resume, err);
    /* the checkpoint went since the HELLO (a shard restarted again, or
     * another replica's rollback removed it): a new round asks again */
    if (rc == PS_ENOCKPT && tr->nockpt_rounds++ < 3) {
        ps_log(PS_LOG_WARN, "worker %u (stage %u): %s; another sync round", tr->world_rank,
               tr->stage, err->msg);
        rc = PS_ESTALE;
    }
    if (rc == PS_OK)
        rc = refetch(tr, resume, err);
    if (rc != PS_OK)
        return rc;
    ps_log(PS_LOG_NOTICE,
           "worker %u (replica %u, stage %u): the %u stages resume at clock %lld (sync round %u; "
           "this stage was at %lld, its job could resume at %lld)",
           tr->world_rank, tr->rank, tr->stage, tr->n_stages, (long long)resume, round,
           (long long)tr->clock, (long long)at);
    tr->clock = resume;
    *resumed = true;
    return PS_OK;
}

int pswk_pipe_recover(trainer_t *tr, int why,
                      int (*refetch)(void *ctx, int64_t clock, ps_errbuf_t *err), ps_errbuf_t *err)
{
    if (tr->pipe_finished) {
        char what[sizeof err->msg];
        snprintf(what, sizeof what, "%s", err->msg);
        return ps_err_set(err, why,
                          "worker %u (replica %u, stage %u): %s (%s) after every stage had "
                          "finished training: the stages cannot replay together any more; the "
                          "job fails",
                          tr->world_rank, tr->rank, tr->stage, ps_worker_recovery_cause(why), what);
    }
    /* a neighbour's ABORT comes as PS_ESTALE: not a rollback of our job */
    const char *cause = ps_pipe_announced_round(tr->pipe) ? "a neighbouring stage is recovering"
                                                          : ps_worker_recovery_cause(why);
    ps_log(PS_LOG_WARN, "worker %u (replica %u, stage %u): %s at clock %lld (%s); recovering",
           tr->world_rank, tr->rank, tr->stage, cause, (long long)tr->clock, err->msg);
    bool resumed;
    int rc;
    do {
        rc = sync_round(tr, true, refetch, &resumed, err);
    } while (ps_worker_recoverable(rc) && tr->recoveries <= 100);
    return rc;
}

int pswk_pipe_finish(trainer_t *tr, int (*refetch)(void *ctx, int64_t clock, ps_errbuf_t *err),
                     bool *resumed, ps_errbuf_t *err)
{
    int rc = sync_round(tr, false, refetch, resumed, err);
    if (rc == PS_OK && !*resumed)
        tr->pipe_finished = true;
    return rc;
}
