/* ps_loss_scale.h - dynamic loss scaling for fp16 gradients: gradients are
 * multiplied by the scale before they are rounded to fp16, so small ones do
 * not flush to zero; on overflow the step is skipped and the scale halved;
 * after `window` clean steps it doubles. Plain data; any thread.
 *
 * Under BSP every worker sees the same sequence of skipped steps (the server
 * marks a round skipped if any worker overflowed), so all scalers agree;
 * the shards run the same scaler over the rounds they apply, keep it in
 * their checkpoints and hand it to a worker that restarts or rolls back,
 * so the scale replays exactly. */
#ifndef PS_LOSS_SCALE_H
#define PS_LOSS_SCALE_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    float scale;
    int64_t window;     /* clean steps before the scale doubles */
    int64_t clean;      /* clean steps since the last change */
    uint64_t n_skipped; /* steps skipped so far */
} ps_loss_scale_t;

/* Starts at init_scale (> 0), doubling after window (>= 1) clean steps. */
void ps_loss_scale_init(ps_loss_scale_t *ls, float init_scale, int64_t window);
/* Records a finished step. skipped: its update was dropped for overflow.
 * Returns true if the scale changed. The scale never drops below 2^-24 nor
 * rises above 2^24. */
bool ps_loss_scale_update(ps_loss_scale_t *ls, bool skipped);

#endif
