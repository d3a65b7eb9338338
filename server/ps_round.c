/* ps_round.c - see ps_round.h. */
#include "ps_round.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "ps_err.h"

int ps_round_init(ps_round_t *r, uint32_t world, int max_staleness)
{
    *r = (ps_round_t){.world = world, .max_staleness = max_staleness, .last_skipped = -1};
    r->pushes = calloc(world ? world : 1, sizeof *r->pushes);
    r->slot = calloc(world ? world : 1, 1);
    if (!r->pushes || !r->slot) {
        ps_round_fini(r);
        return PS_ENOMEM;
    }
    return PS_OK;
}

void ps_round_fini(ps_round_t *r)
{
    free(r->pushes);
    free(r->slot);
    r->pushes = NULL;
    r->slot = NULL;
}

ps_round_verdict_t ps_round_offer(ps_round_t *r, uint32_t rank, int64_t clock, bool has_values)
{
    assert(rank < r->world);
    if (r->max_staleness != 0) {
        if (clock < r->pushes[rank])
            return PS_ROUND_RETRY;
        if (clock > r->pushes[rank])
            return PS_ROUND_AHEAD;
        r->pushes[rank]++;
        return PS_ROUND_APPLY;
    }
    if (clock < r->clock || (clock == r->clock && r->slot[rank] != PS_ROUND_NONE))
        return PS_ROUND_RETRY;
    if (clock > r->clock)
        return PS_ROUND_AHEAD;
    r->slot[rank] = has_values ? PS_ROUND_VALUES : PS_ROUND_SKIP;
    r->pushes[rank] = clock + 1;
    return PS_ROUND_KEEP;
}

bool ps_round_forget(ps_round_t *r, uint32_t rank)
{
    if (r->max_staleness != 0 || rank >= r->world || r->slot[rank] == PS_ROUND_NONE)
        return false;
    r->slot[rank] = PS_ROUND_NONE;
    r->pushes[rank] = r->clock;
    return true;
}

bool ps_round_is_complete(const ps_round_t *r, const uint8_t *live)
{
    if (r->max_staleness != 0)
        return false;
    bool any = false;
    for (uint32_t k = 0; k < r->world; k++) {
        if (live[k] && r->slot[k] == PS_ROUND_NONE)
            return false;
        any |= r->slot[k] != PS_ROUND_NONE;
    }
    return any;
}

bool ps_round_is_skipped(const ps_round_t *r)
{
    for (uint32_t k = 0; k < r->world; k++)
        if (r->slot[k] == PS_ROUND_SKIP)
            return true;
    return false;
}

void ps_round_close(ps_round_t *r)
{
    if (ps_round_is_skipped(r))
        r->last_skipped = r->clock;
    memset(r->slot, PS_ROUND_NONE, r->world);
    r->clock++;
}

int64_t ps_round_clock(const ps_round_t *r)
{
    if (r->max_staleness == 0)
        return r->clock;
    int64_t low = INT64_MAX;
    for (uint32_t k = 0; k < r->world; k++)
        low = r->pushes[k] < low ? r->pushes[k] : low;
    return low;
}

int64_t ps_round_ready_clock(const ps_round_t *r, const uint8_t *live)
{
    if (r->max_staleness == 0)
        return r->clock;
    int64_t low = INT64_MAX;
    for (uint32_t k = 0; k < r->world; k++)
        if (live[k] && r->pushes[k] < low)
            low = r->pushes[k];
    return low;
}

int64_t ps_round_rank_clock(const ps_round_t *r, uint32_t rank)
{
    return rank < r->world ? r->pushes[rank] : -1;
}

void ps_round_restore(ps_round_t *r, int64_t clock, const int64_t *pushes)
{
    memcpy(r->pushes, pushes, r->world * sizeof *r->pushes);
    memset(r->slot, PS_ROUND_NONE, r->world);
    r->clock = clock;
    r->last_skipped = -1;
}
