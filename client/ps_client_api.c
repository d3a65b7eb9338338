/* ps_client_api.c - the installed API's small pieces: option defaults,
 * struct sizes for bindings, the version, key files. Any thread. */
#include "ps_client_int.h"

#include <string.h>

#include "ps_curve.h"
#include "ps_log.h"

/* The API's constants are the wire's own numbers. */
_Static_assert(PS_DTYPE_F32 == PS__DTYPE__F32 && PS_DTYPE_F16 == PS__DTYPE__F16 &&
                   PS_DTYPE_BF16 == PS__DTYPE__BF16,
               "PS_DTYPE_* differ from ps.DType");
_Static_assert((int)PS_OPTIM_ADAMW == (int)PS__OPTIMIZER__ADAMW &&
                   (int)PS_OPTIM_FTRL == (int)PS__OPTIMIZER__FTRL &&
                   (int)PS_SCHED_COSINE == (int)PS__SCHEDULE__COSINE,
               "ps_optim_types.h differs from ps.Optimizer / ps.Schedule");

void ps_client_opts_defaults(ps_client_opts_t *o)
{
    *o = (ps_client_opts_t){.world = 1,
                            .timeout_ms = 60000,
                            .dtype = PS_DTYPE_F32,
                            .heartbeat_ms = 1000,
                            .server_timeout_ms = 15000,
                            .retries = 2,
                            .loss_scale_window = 2000};
}

size_t ps_client_sizeof(const char *name)
{
    static const struct {
        const char *name;
        size_t size;
    } sizes[] = {{"ps_client_opts_t", sizeof(ps_client_opts_t)},
                 {"ps_optim_spec_t", sizeof(ps_optim_spec_t)},
                 {"ps_errbuf_t", sizeof(ps_errbuf_t)}};
    for (size_t i = 0; name && i < sizeof sizes / sizeof sizes[0]; i++)
        if (strcmp(sizes[i].name, name) == 0)
            return sizes[i].size;
    return 0;
}

const char *ps_client_version(void)
{
    return PS_VERSION;
}

int ps_client_load_key(const char *path, char *public_z85, char *secret_z85, ps_errbuf_t *err)
{
    ps_curve_keys_t keys;
    int rc = ps_curve_load(path, secret_z85 != NULL, &keys, err);
    if (rc != PS_OK)
        return rc;
    memcpy(public_z85, keys.public_z85, sizeof keys.public_z85);
    if (secret_z85)
        memcpy(secret_z85, keys.secret_z85, sizeof keys.secret_z85);
    memset(keys.secret_z85, 0, sizeof keys.secret_z85);
    return PS_OK;
}

int ps_client_log_init(const char *progname, const char *level)
{
    int lv = level ? ps_log_level_parse(level) : ps_log_level_current;
    if (lv < 0)
        return PS_EINVAL;
    ps_log_init(progname ? progname : "ps", (ps_log_level_t)lv);
    return PS_OK;
}
