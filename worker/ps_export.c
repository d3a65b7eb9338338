/* ps_export.c - see ps_export.h. model.json is built with jansson, so a
 * table or model name with any bytes still makes valid JSON. */
#include "ps_export.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ps_file.h"
#include "ps_json.h"
#include "ps_log.h"
#include "ps_npy.h"

/* Writes every table as DIR/NAME.npy and lists them in tables. */
static int write_tables(const char *dir, ps_model_t *model, json_t *tables, ps_errbuf_t *err)
{
    char path[PS_OPT_STR_MAX + 128];
    for (uint32_t id = 0; id < ps_model_n_tables(model); id++) {
        char name[64], file[80];
        uint64_t shape[2];
        int ndim = ps_model_table_shape(model, id, shape);
        ps_model_table_name(model, id, name, sizeof name);
        snprintf(file, sizeof file, "%s.npy", name);
        snprintf(path, sizeof path, "%s/%s", dir, file);
        int rc = ps_npy_write(path, ps_model_params(model, id), shape, ndim, err);
        if (rc != PS_OK)
            return rc;
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

int ps_export_model(const ps_worker_config_t *cfg, ps_model_t *model, size_t n_inputs,
                    uint32_t n_classes, int64_t steps, const ps_eval_t *ev, ps_errbuf_t *err)
{
    const char *dir = cfg->save_model;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return ps_err_set(err, PS_EIO, "cannot create model directory '%s': %s", dir,
                          strerror(errno));
    json_t *root = json_object(), *tables = json_array();
    json_object_set_new(root, "model", ps_json_string(ps_worker_model_name(cfg)));
    json_object_set_new(root, "tables", tables);
    int rc = write_tables(dir, model, tables, err);
    ps_model_spec_t spec;
    if (rc == PS_OK)
        rc = ps_worker_model_spec(cfg, n_inputs, n_classes >= 2 ? n_classes : 1, &spec, err);
    if (rc != PS_OK) {
        json_decref(root);
        return rc;
    }
    json_object_set_new(root, "layers", json_integer(spec.n_layers));
    json_object_set_new(root, "activation", json_string(ps_enum_name(ps_act_names, spec.act, "?")));
    json_object_set_new(root, "head", json_string(ps_enum_name(ps_head_names, spec.head, "?")));
    json_object_set_new(root, "inputs", json_integer((json_int_t)spec.dims[0]));
    json_object_set_new(root, "outputs", json_integer((json_int_t)spec.dims[spec.n_layers]));
    json_object_set_new(root, "steps", json_integer(steps));
    json_object_set_new(root, "seed", json_integer(cfg->seed));
    json_object_set_new(root, "test_loss", json_real(ev->loss));
    json_object_set_new(root, "test_accuracy", json_real(ev->accuracy));
    json_object_set_new(root, "test_mae", json_real(ev->mae));
    char path[PS_OPT_STR_MAX + 32];
    snprintf(path, sizeof path, "%s/model.json", dir);
    /* written last and atomically: a model.json means a complete model */
    ps_file_t *pf = ps_file_create(path, 0644, err);
    if (!pf)
        rc = PS_EIO;
    else if (json_dumpf(root, ps_file_stream(pf), JSON_INDENT(1) | JSON_REAL_PRECISION(10)) != 0) {
        ps_file_abort(&pf);
        rc = ps_err_set(err, PS_EIO, "cannot write '%s': %s", path, strerror(errno));
    } else
        rc = ps_file_commit(&pf, err);
    json_decref(root);
    if (rc == PS_OK)
        ps_log(PS_LOG_INFO, "worker %lld: model saved to '%s'", (long long)cfg->rank, dir);
    return rc;
}
