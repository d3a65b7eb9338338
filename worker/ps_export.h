/* ps_export.h - the trained model on disk: one .npy file per table and a
 * model.json that describes the network (layers, activation, head, shapes,
 * the run that made it), enough to rebuild it in NumPy. Worker thread. */
#ifndef PS_EXPORT_H
#define PS_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "ps_err.h"
#include "ps_model.h"
#include "ps_worker.h"

/* Writes model into cfg->save_model (created if missing): its tables, and
 * model.json with n_inputs, the classes (n_classes < 2: one output), the
 * steps trained and the test figures ev. PS_EIO with err naming the file. */
int ps_export_model(const ps_worker_config_t *cfg, ps_model_t *model, size_t n_inputs,
                    uint32_t n_classes, int64_t steps, const ps_eval_t *ev, ps_errbuf_t *err);

#endif
