/* ps_export.c - see ps_export.h. model.json is built and read with
 * jansson, so a table or model name with any bytes still makes valid JSON.
 *
 * The graph is the spec's items in order: a layer is {"kind", "name" (its
 * table prefix, if it has tables), "args" (every argument of the kind, by
 * name, defaults filled in, a pool's stride resolved), "shape" (the
 * per-sample shape it outputs)}; a residual is {"kind": "residual",
 * "body": [...], "shape"}; the loss comes last. */
#include "ps_export.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ps_file.h"
#include "ps_json.h"
#include "ps_npy.h"

static const char *const shape_kinds[] = {[PS_SHAPE_VEC] = "vector",
                                          [PS_SHAPE_SEQ] = "sequence",
                                          [PS_SHAPE_IMG] = "image",
                                          [PS_SHAPE_TOKENS] = "tokens"};
static const char *const task_names[] = {[PS_NET_CLASSIFIER] = "classifier",
                                         [PS_NET_REGRESSOR] = "regressor",
                                         [PS_NET_LANGUAGE_MODEL] = "language_model"};

static json_t *shape_json(ps_shape_t s)
{
    json_t *dims = json_array();
    int n = s.kind == PS_SHAPE_IMG ? 3 : s.kind == PS_SHAPE_SEQ ? 2 : 1;
    for (int k = 0; k < n; k++)
        json_array_append_new(dims, json_integer(s.d[k]));
    return dims;
}

static json_t *shape_obj(ps_shape_t s)
{
    json_t *o = json_object();
    json_object_set_new(o, "kind", json_string(shape_kinds[s.kind]));
    json_object_set_new(o, "shape", shape_json(s));
    return o;
}

static json_t *args_json(const ps_layer_desc_t *d)
{
    const ps_layer_kind_info_t *ki = ps_layer_kind_info(d->kind);
    json_t *args = json_object();
    for (int i = 0; i < ki->n_args; i++) {
        double v = d->arg[i];
        if ((d->kind == PS_LAYER_MAXPOOL || d->kind == PS_LAYER_AVGPOOL) && i == 1 && v == 0)
            v = d->arg[0]; /* stride 0: the kernel size */
        json_object_set_new(args, ki->arg_names[i],
                            ki->is_int[i] ? json_integer((json_int_t)v) : json_real(v));
    }
    return args;
}

/* The items of spec from *i to the end or the ']' closing the current
 * residual (consumed), appended to list. */
static void graph_items(const ps_netspec_t *spec, const ps_net_t *net, size_t *i, json_t *list)
{
    while (*i < spec->n_layers) {
        const ps_layer_desc_t *d = &spec->layers[*i];
        size_t at = (*i)++;
        if (d->kind == PS_LAYER_END)
            return;
        json_t *o = json_object();
        json_object_set_new(o, "kind", json_string(ps_layer_kind_info(d->kind)->word));
        if (d->kind == PS_LAYER_RESIDUAL) {
            json_t *body = json_array();
            graph_items(spec, net, i, body);
            json_object_set_new(o, "body", body);
            json_object_set_new(o, "shape", shape_json(ps_net_item_shape(net, *i - 1)));
        } else {
            if (*d->name)
                json_object_set_new(o, "name", ps_json_string(d->name));
            json_object_set_new(o, "args", args_json(d));
            json_object_set_new(o, "shape", shape_json(ps_net_item_shape(net, at)));
        }
        json_array_append_new(list, o);
    }
}

static void describe(json_t *root, const ps_netdesc_t *desc, const ps_net_t *net,
                     const ps_netspec_t *spec)
{
    json_object_set_new(root, "format", json_string("ps-model 2"));
    json_object_set_new(root, "task", json_string(task_names[ps_net_task(net)]));
    if (desc->is_gpt) {
        const ps_gpt_config_t *g = &desc->gpt;
        json_t *o = json_object();
        json_object_set_new(o, "n_layer", json_integer(g->n_layer));
        json_object_set_new(o, "n_head", json_integer(g->n_head));
        json_object_set_new(o, "n_embd", json_integer(g->n_embd));
        json_object_set_new(o, "block_size", json_integer(g->block_size));
        json_object_set_new(o, "dropout", json_real(g->dropout));
        json_object_set_new(o, "vocab", json_integer(PS_GPT_VOCAB));
        json_object_set_new(root, "gpt", o);
    } else {
        json_t *o = json_object();
        json_object_set_new(o, "input", ps_json_string(desc->input));
        json_object_set_new(o, "layers", ps_json_string(desc->layers));
        json_object_set_new(root, "spec", o);
    }
    json_t *in = shape_obj(ps_net_input_shape(net));
    json_object_set_new(in, "row_len", json_integer((json_int_t)ps_net_input_len(net)));
    json_object_set_new(root, "input", in);
    json_t *graph = json_array();
    size_t i = 0;
    graph_items(spec, net, &i, graph);
    json_object_set_new(root, "graph", graph);
    json_object_set_new(root, "output", shape_obj(ps_net_output_shape(net)));
}

/* Lists every table in tables (may be NULL) and, if is_writing, writes it
 * as DIR/NAME.npy. */
static int write_tables(const char *dir, ps_net_t *net, json_t *tables, bool is_writing,
                        ps_errbuf_t *err)
{
    char path[PATH_MAX];
    for (uint32_t id = 0; id < ps_net_n_tables(net); id++) {
        char name[PS_TABLE_NAME_MAX], file[PS_TABLE_NAME_MAX + 8];
        uint64_t shape[PS_TABLE_MAX_DIMS];
        int ndim = ps_net_table_shape(net, id, shape);
        ps_net_table_name(net, id, name, sizeof name);
        snprintf(file, sizeof file, "%s.npy", name);
        snprintf(path, sizeof path, "%s/%s", dir, file);
        int rc = is_writing ? ps_npy_write(path, ps_net_params(net, id), shape, ndim, err) : PS_OK;
        if (rc != PS_OK)
            return rc;
        if (!tables)
            continue;
        json_t *dims = json_array();
        for (int k = 0; k < ndim; k++)
            json_array_append_new(dims, json_integer((json_int_t)shape[k]));
        json_t *t = json_object();
        json_object_set_new(t, "name", ps_json_string(name));
        json_object_set_new(t, "file", ps_json_string(file));
        json_object_set_new(t, "shape", dims);
        json_array_append_new(tables, t);
    }
    return PS_OK;
}

static void run_info(json_t *root, const ps_export_info_t *info, ps_net_task_t task)
{
    json_object_set_new(root, "model", ps_json_string(info->model));
    json_object_set_new(root, "steps", json_integer(info->steps));
    json_object_set_new(root, "seed", json_integer(info->seed));
    const ps_net_eval_t *e = info->test;
    if (!e || !e->n)
        return;
    json_object_set_new(root, "test_loss", json_real(e->loss));
    if (task == PS_NET_REGRESSOR)
        json_object_set_new(root, "test_mae", json_real(e->mae));
    else
        json_object_set_new(root, "test_accuracy", json_real(e->accuracy));
    if (task == PS_NET_LANGUAGE_MODEL)
        json_object_set_new(root, "test_bpb", json_real(e->bits_per_byte));
}

static int make_dir(const char *dir, ps_errbuf_t *err)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return ps_err_set(err, PS_EIO, "cannot create model directory '%s': %s", dir,
                          strerror(errno));
    return PS_OK;
}

int ps_export_tables(const char *dir, ps_net_t *net, ps_errbuf_t *err)
{
    int rc = make_dir(dir, err);
    return rc == PS_OK ? write_tables(dir, net, NULL, true, err) : rc;
}

int ps_export_model(const char *dir, const ps_export_info_t *info, ps_net_t *net, ps_errbuf_t *err)
{
    return ps_export_model_json(dir, info, net, true, err);
}

int ps_export_model_json(const char *dir, const ps_export_info_t *info, ps_net_t *net,
                         bool is_writing_tables, ps_errbuf_t *err)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return ps_err_set(err, PS_EIO, "cannot create model directory '%s': %s", dir,
                          strerror(errno));
    ps_netspec_t spec;
    int rc = ps_netdesc_spec(info->desc, &spec, err);
    json_t *root = json_object(), *tables = json_array();
    if (rc == PS_OK) {
        run_info(root, info, ps_net_task(net));
        describe(root, info->desc, net, &spec);
        json_object_set_new(root, "tables", tables);
        rc = write_tables(dir, net, tables, is_writing_tables, err);
    } else {
        json_decref(tables);
    }
    ps_netspec_fini(&spec);
    char *text = rc == PS_OK ? json_dumps(root, JSON_INDENT(1) | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(root);
    if (rc != PS_OK)
        return rc;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/model.json", dir);
    if (!text)
        return ps_err_set(err, PS_ENOMEM, "cannot write '%s': out of memory", path);
    /* written last and atomically: a model.json means a complete model */
    rc = ps_file_write_all(path, text, strlen(text), 0644, err);
    free(text);
    return rc;
}

/* The description in root: "gpt" or "spec". */
static int read_desc(json_t *root, const char *path, ps_netdesc_t *d, ps_errbuf_t *err)
{
    memset(d, 0, sizeof *d);
    json_t *g = json_object_get(root, "gpt"), *s = json_object_get(root, "spec");
    if (json_is_object(g)) {
        json_int_t v[4];
        static const char *const keys[4] = {"n_layer", "n_head", "n_embd", "block_size"};
        for (int k = 0; k < 4; k++) {
            json_t *x = json_object_get(g, keys[k]);
            v[k] = json_is_integer(x) ? json_integer_value(x) : 0;
            if (v[k] < 1 || v[k] > 65536)
                return ps_err_set(err, PS_EFORMAT, "'%s': gpt.%s is not a size 1..65536", path,
                                  keys[k]);
        }
        json_t *p = json_object_get(g, "dropout");
        d->is_gpt = true;
        d->gpt = (ps_gpt_config_t){(uint32_t)v[0], (uint32_t)v[1], (uint32_t)v[2], (uint32_t)v[3],
                                   json_is_number(p) ? json_number_value(p) : 0};
        return PS_OK;
    }
    json_t *in = json_is_object(s) ? json_object_get(s, "input") : NULL;
    json_t *layers = json_is_object(s) ? json_object_get(s, "layers") : NULL;
    if (!json_is_string(in) || !json_is_string(layers) ||
        json_string_length(in) >= sizeof d->input || json_string_length(layers) >= sizeof d->layers)
        return ps_err_set(err, PS_EFORMAT,
                          "'%s': neither a gpt object nor a spec with input and layers strings",
                          path);
    snprintf(d->input, sizeof d->input, "%s", json_string_value(in));
    snprintf(d->layers, sizeof d->layers, "%s", json_string_value(layers));
    return PS_OK;
}

/* Table id's values from DIR/NAME.npy, which must have its shape. */
static int load_table(ps_net_t *net, uint32_t id, const char *dir, ps_errbuf_t *err)
{
    char name[PS_TABLE_NAME_MAX], path[PATH_MAX];
    uint64_t want[PS_TABLE_MAX_DIMS], got[PS_NPY_MAX_DIMS];
    int ndim = ps_net_table_shape(net, id, want), got_ndim;
    snprintf(path, sizeof path, "%s/%s.npy", dir, ps_net_table_name(net, id, name, sizeof name));
    float *data;
    int rc = ps_npy_read(path, &data, got, &got_ndim, err);
    if (rc != PS_OK)
        return rc;
    if (got_ndim != ndim || memcmp(got, want, (size_t)ndim * sizeof *want) != 0)
        rc = ps_err_set(err, PS_EFORMAT, "'%s': not the shape table '%s' has in this model", path,
                        name);
    else
        memcpy(ps_net_params(net, id), data, ps_net_table_len(net, id) * sizeof(float));
    free(data);
    return rc;
}

ps_net_t *ps_export_load(const char *dir, size_t max_batch, ps_netdesc_t *desc_out,
                         ps_errbuf_t *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/model.json", dir);
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        ps_err_set(err, root ? PS_EFORMAT : PS_EIO, "cannot read '%s': %s", path,
                   root ? "not a JSON object" : jerr.text);
        json_decref(root);
        return NULL;
    }
    ps_netdesc_t desc;
    ps_netspec_t spec = {0};
    ps_net_t *net = NULL;
    int rc = read_desc(root, path, &desc, err);
    json_decref(root);
    if (rc == PS_OK && ((rc = ps_netdesc_spec(&desc, &spec, err)) != PS_OK ||
                        !(net = ps_net_new(&spec, max_batch, 0, err)))) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err ? err->msg : "");
        rc = ps_err_set(err, PS_EFORMAT, "'%s': %s", path, why);
    }
    ps_netspec_fini(&spec);
    for (uint32_t id = 0; rc == PS_OK && id < ps_net_n_tables(net); id++)
        rc = load_table(net, id, dir, err);
    if (rc != PS_OK) {
        ps_net_destroy(&net);
        return NULL;
    }
    if (desc_out)
        *desc_out = desc;
    return net;
}
