/* ps_onnx.c - see ps_onnx.h. */
#include "ps_onnx.h"

bool ps_onnx_available(void)
{
    return false;
}

int ps_onnx_write(const char *path, const ps_netdesc_t *desc, const ps_net_t *net,
                  ps_errbuf_t *err)
{
    (void)desc, (void)net;
    return ps_err_set(err, PS_EINVAL, "cannot write '%s': this build has no ONNX support", path);
}
