/* ps_stage.h - how a pipeline (pipeline_stages P) cuts a net's spec into P
 * contiguous stages: balanced by parameter count, or where stage_layers
 * says. Pure functions over the items' costs (ps_net_stage_items makes
 * them); startup thread only. */
#ifndef PS_STAGE_H
#define PS_STAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps_err.h"

#define PS_STAGE_MAX 64

/* One spec item (a layer, a residual bracket, the loss) as the split sees it. */
typedef struct {
    uint64_t n_params;   /* parameters it declares */
    uint64_t act_floats; /* floats per sample of the activation after it */
    bool can_cut_after;  /* a stage may end after it: outside every residual, not the last */
    int pos;             /* 1-based place in the spec (what errors and stage_layers say) */
    const char *text;    /* as written, for errors (borrowed) */
} ps_stage_item_t;

/* Cuts items[0..n) into n_stages (1..PS_STAGE_MAX) stages: stage s owns
 * items [first[s], first[s + 1]), first[0] = 0, first[n_stages] = n (first
 * has n_stages + 1 entries). user NULL: the cut that minimises the largest
 * stage's parameters, and among those the smallest sum of the activations
 * crossing the cuts (the earliest such cut on a tie). Else user holds the
 * n_stages - 1 positions (items' pos) where stages 1.. begin. Every stage
 * must own a parameter. PS_EINVAL with err naming stage_layers, the
 * position and the reason: not in the spec, not ascending, inside a
 * residual or at the start, a stage without parameters; or that no such
 * cut exists for n_stages. */
int ps_stage_split(const ps_stage_item_t *items, size_t n, uint32_t n_stages, const int64_t *user,
                   size_t *first, ps_errbuf_t *err);

/* Parses stage_layers ("3,7": n_stages - 1 whole numbers) into out.
 * PS_EINVAL naming the option: another count, or not a number. */
int ps_stage_parse(const char *text, uint32_t n_stages, int64_t *out, ps_errbuf_t *err);

#endif
