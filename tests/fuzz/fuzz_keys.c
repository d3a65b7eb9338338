/* fuzz_keys.c - any bytes as a CURVE key file and as an allow-list (the
 * files an operator edits by hand and the server re-reads on SIGHUP). */
#include <sys/stat.h>
#include <zmq.h>

#include "fuzz_util.h"
#include "ps_curve.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    if (fd < 0)
        return 0;
    ps_curve_keys_t keys;
    ps_errbuf_t err;
    ps_curve_load(path, false, &keys, &err);
    fchmod(fd, 0600);
    ps_curve_load(path, true, &keys, &err);
    static void *ctx;
    if (!ctx)
        ctx = zmq_ctx_new();
    ps_zap_t *zap = ps_zap_start(ctx, path, &err);
    if (zap) {
        ps_zap_role(zap, "worker:0000000000000000000000000000000000000000");
        ps_zap_reload(zap, &err);
        ps_zap_stop(&zap);
    }
    close(fd);
    return 0;
}
