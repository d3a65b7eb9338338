/* ps_loss_scale.c - the loss scaler's state machine. */
#include "ps_loss_scale.h"

#define MIN_SCALE 0x1p-24f
#define MAX_SCALE 0x1p24f

void ps_loss_scale_init(ps_loss_scale_t *ls, float init_scale, int64_t window)
{
    ls->scale = init_scale;
    ls->window = window < 1 ? 1 : window;
    ls->clean = 0;
    ls->n_skipped = 0;
}

bool ps_loss_scale_update(ps_loss_scale_t *ls, bool skipped)
{
    float before = ls->scale;
    if (skipped) {
        ls->n_skipped++;
        ls->clean = 0;
        if (ls->scale * 0.5f >= MIN_SCALE)
            ls->scale *= 0.5f;
    } else if (++ls->clean >= ls->window) {
        ls->clean = 0;
        if (ls->scale * 2.0f <= MAX_SCALE)
            ls->scale *= 2.0f;
    }
    return ls->scale != before;
}
