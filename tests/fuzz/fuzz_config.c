/* fuzz_config.c - any bytes as a config file, for both daemons' option
 * tables: the parser must answer with PS_OK or an error naming the line. */
#include <string.h>

#include "fuzz_util.h"
#include "ps_server.h"
#include "ps_worker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    if (fd < 0)
        return 0;
    static ps_server_config_t scfg;
    static ps_worker_config_t wcfg;
    ps_errbuf_t err;
    ps_config_defaults(&ps_server_optset, &scfg);
    if (ps_config_load_file(&ps_server_optset, &scfg, path, &err) == PS_OK)
        ps_server_config_validate(&scfg, &err);
    else if (!strstr(err.msg, path))
        __builtin_trap(); /* every parse error names the file */
    ps_config_defaults(&ps_worker_optset, &wcfg);
    if (ps_config_load_file(&ps_worker_optset, &wcfg, path, &err) == PS_OK)
        ps_worker_config_validate(&wcfg, &err);
    close(fd);
    return 0;
}
