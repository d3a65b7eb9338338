/* fuzz_request.c - any multipart message, straight into the server's
 * request handler (decoder, validation, every op's handler).
 *
 * Input: frames, each a little-endian uint16 length and that many bytes.
 * A routing identity frame is put in front, as the ROUTER socket would.
 * One server lives for the whole run, so sequences of requests (HELLO,
 * INIT_TABLE, then PUSH ...) build real state for later inputs. */
#include <stdint.h>
#include <string.h>

#include "ps_log.h"
#include "ps_server.h"
#include "ps_wire.h"

static ps_server_t *srv;

static void start_server(void)
{
    ps_server_config_t cfg;
    ps_errbuf_t err;
    ps_config_defaults(&ps_server_optset, &cfg);
    cfg.max_table_elems = 1 << 22; /* bounded memory over millions of inputs */
    cfg.max_jobs = 8;
    ps_log_init("fuzz", PS_LOG_ERROR + 1); /* silent */
    srv = ps_server_new(&cfg, &err);
    if (!srv)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!srv)
        start_server();
    ps_wire_msg_t msg;
    memset(&msg, 0, sizeof msg);
    zmq_msg_init_size(&msg.parts[0], 5);
    memcpy(zmq_msg_data(&msg.parts[0]), "\0fuzz", 5);
    msg.n_parts = 1;
    size_t at = 0;
    while (at + 2 <= size && msg.n_parts < PS_WIRE_MAX_PARTS) {
        size_t len = (size_t)data[at] | (size_t)data[at + 1] << 8;
        at += 2;
        if (len > size - at)
            len = size - at;
        zmq_msg_init_size(&msg.parts[msg.n_parts], len);
        if (len)
            memcpy(zmq_msg_data(&msg.parts[msg.n_parts]), data + at, len);
        msg.n_parts++;
        at += len;
    }
    ps_server_handle(srv, &msg);
    ps_wire_msg_close(&msg);
    return 0;
}
