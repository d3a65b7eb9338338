/* ps_pending.c - see ps_pending.h. */
#include "ps_pending.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ps_err.h"

void ps_pending_init(ps_pending_t *p)
{
    *p = (ps_pending_t){0};
}

static void close_pull(ps_pull_t *pull)
{
    zmq_msg_close(&pull->identity);
    zmq_msg_close(&pull->keys);
}

void ps_pending_fini(ps_pending_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        close_pull(&p->pulls[i]);
    free(p->pulls);
    *p = (ps_pending_t){0};
}

ps_pull_t *ps_pending_park(ps_pending_t *p, zmq_msg_t *identity)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 16;
        p->pulls = ps_xrealloc(p->pulls, p->cap * sizeof *p->pulls);
    }
    ps_pull_t *pull = &p->pulls[p->n++];
    memset(pull, 0, sizeof *pull);
    zmq_msg_init(&pull->identity);
    zmq_msg_copy(&pull->identity, identity);
    zmq_msg_init(&pull->keys);
    return pull;
}

/* Answers pull i and fills its place with the last one. */
static void take(ps_pending_t *p, size_t i, ps_pull_answer_fn answer, void *ctx)
{
    answer(ctx, &p->pulls[i]);
    close_pull(&p->pulls[i]);
    p->pulls[i] = p->pulls[--p->n];
}

size_t ps_pending_serve(ps_pending_t *p, ps_pull_ready_fn ready, ps_pull_answer_fn answer,
                        void *ctx)
{
    size_t served = 0, i = 0;
    while (i < p->n) {
        if (!ready(ctx, &p->pulls[i])) {
            i++;
            continue;
        }
        take(p, i, answer, ctx);
        served++;
    }
    return served;
}

size_t ps_pending_flush(ps_pending_t *p, ps_pull_answer_fn answer, void *ctx)
{
    size_t n = p->n;
    while (p->n)
        take(p, p->n - 1, answer, ctx);
    return n;
}
