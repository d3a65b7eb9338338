/* ps_export.h - a trained net on disk and back: one .npy file per table
 * and a model.json that describes the net well enough to rebuild it in
 * NumPy or PyTorch (docs/models.md, "The export"): the spec (input and
 * layers) or the GPT config, the graph those expand to (every layer with
 * its arguments, table prefix and output shape, residuals nested), the
 * tables, and the run that made it. ps-generate and the tests load it
 * back. Worker thread (or a tool's main thread). */
#ifndef PS_EXPORT_H
#define PS_EXPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps_err.h"
#include "ps_net.h"
#include "ps_netspec.h"

typedef struct {
    const char *model;        /* the config's name for it: "mlp", "net", "gpt" */
    const ps_netdesc_t *desc; /* what the net was built from */
    int64_t steps, seed;
    const ps_net_eval_t *test; /* the test set's figures; NULL: none */
} ps_export_info_t;

/* Writes net's tables and model.json into dir (created if missing; files
 * replaced atomically). PS_EIO with err naming the file. */
int ps_export_model(const char *dir, const ps_export_info_t *info, ps_net_t *net, ps_errbuf_t *err);
/* A pipeline's pieces: every stage writes its tables' .npy files into dir
 * (ps_export_tables), then one writes model.json from the whole net's
 * shapes (ps_net_new_shapes), listing every table without writing any
 * (is_writing_tables false; true is ps_export_model). Errors as above. */
int ps_export_tables(const char *dir, ps_net_t *net, ps_errbuf_t *err);
int ps_export_model_json(const char *dir, const ps_export_info_t *info, ps_net_t *net,
                         bool is_writing_tables, ps_errbuf_t *err);

/* Reads dir/model.json, builds the net it describes with buffers for
 * max_batch samples and loads every table from its .npy file. desc (may be
 * NULL) gets the description. NULL with err naming the file and what is
 * wrong: unreadable, not JSON, no spec or gpt object, a spec that does not
 * build, a table missing or of another shape. */
ps_net_t *ps_export_load(const char *dir, size_t max_batch, ps_netdesc_t *desc, ps_errbuf_t *err);

#endif
