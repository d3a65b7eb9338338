/* ps_round.h - the consistency engine of one table slice (dense chunk or
 * sparse table): which pushes count, when a BSP round is complete, and
 * which clock a pull may read. One rule for dense and sparse tables; the
 * tables keep the pushed values themselves. Server loop thread only.
 *
 * BSP (max_staleness 0): a round gathers one push of the round's clock
 * from every live rank; a push of an older clock, or a second push of the
 * current clock, is a retry (counted once); a push of a later clock is an
 * error. A rank that is not live (done, left, dead) is not waited for, and
 * when it comes back it pushes the round in progress, whatever it pushed
 * last. SSP / ASP: each rank's pushes are applied in order as they come;
 * rank r's n-th push must carry clock n (older: a retry; later: an error).
 *
 * A pull of clock c may be answered once ps_round_ready_clock() >= c -
 * max_staleness. */
#ifndef PS_ROUND_H
#define PS_ROUND_H

#include <stdbool.h>
#include <stdint.h>

/* What a rank put into the BSP round in progress. */
typedef enum {
    PS_ROUND_NONE = 0,   /* nothing yet */
    PS_ROUND_VALUES = 1, /* a gradient, which the table keeps */
    PS_ROUND_SKIP = 2,   /* a skip (fp16 overflow): the whole round is skipped */
} ps_round_slot_t;

/* What the table must do with a push (ps_round_offer). */
typedef enum {
    PS_ROUND_RETRY, /* already counted: acknowledge, change nothing */
    PS_ROUND_KEEP,  /* BSP: keep the values until the round completes */
    PS_ROUND_APPLY, /* SSP/ASP: apply the values now */
    PS_ROUND_AHEAD, /* a clock this rank may not push yet: refuse (PS_ERANGE) */
} ps_round_verdict_t;

typedef struct {
    uint32_t world;
    int max_staleness;    /* 0 BSP, > 0 SSP, -1 ASP */
    int64_t clock;        /* BSP: rounds completed */
    int64_t *pushes;      /* per rank: the clock after its newest push counted */
    uint8_t *slot;        /* BSP: per rank, a ps_round_slot_t of the round in progress */
    int64_t last_skipped; /* BSP: clock of the newest skipped round, -1 if none */
} ps_round_t;

/* Sets up an empty round for world ranks. PS_ENOMEM if allocation fails
 * (r is then safe to fini). */
int ps_round_init(ps_round_t *r, uint32_t world, int max_staleness);
/* Frees the arrays; safe twice. */
void ps_round_fini(ps_round_t *r);

/* Judges rank's push of clock (has_values false: a skip) and records it
 * unless it is a retry or ahead. rank < world (the caller checked). */
ps_round_verdict_t ps_round_offer(ps_round_t *r, uint32_t rank, int64_t clock, bool has_values);
/* BSP: every rank with live[rank] has put something into the round in
 * progress, and at least one rank has. Always false for SSP/ASP. */
bool ps_round_is_complete(const ps_round_t *r, const uint8_t *live);
/* BSP: some rank of the round in progress sent a skip. */
bool ps_round_is_skipped(const ps_round_t *r);
/* BSP: ends the round in progress (the caller has applied or discarded the
 * values it kept): clears every slot, notes a skipped round, clock + 1. */
void ps_round_close(ps_round_t *r);

/* BSP: takes back rank's part of the round in progress, as if it had not
 * pushed yet; true if it had (the caller drops the values it kept). A
 * rank that rejoins replays the step: the round must wait for that push,
 * whose gradient reads the parameters it pulls now. False for SSP/ASP. */
bool ps_round_forget(ps_round_t *r, uint32_t rank);

/* BSP: rounds completed. SSP/ASP: the lowest clock over all ranks. */
int64_t ps_round_clock(const ps_round_t *r);
/* The newest clock every live rank's pushes are reflected in. BSP: rounds
 * completed. SSP/ASP: the lowest clock over live ranks (INT64_MAX if none
 * is live). */
int64_t ps_round_ready_clock(const ps_round_t *r, const uint8_t *live);
/* The clock after rank's newest counted push (what it pushed so far). */
int64_t ps_round_rank_clock(const ps_round_t *r, uint32_t rank);

/* Puts saved clocks back (a checkpoint): clock and world per-rank pushes;
 * drops the round in progress (the caller drops the values it kept). */
void ps_round_restore(ps_round_t *r, int64_t clock, const int64_t *pushes);

#endif
