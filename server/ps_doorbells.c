/* ps_doorbells.c - see ps_doorbells.h. */
#include "ps_doorbells.h"

#include <string.h>

#include "ps_handler.h"
#include "ps_log.h"
#include "ps_regions.h"

typedef struct {
    ps_server_t *srv;
    uint64_t id;
} bell_ctx_t;

/* One request out of a doorbell: handled as the router's would be, from
 * the HELLO's socket. */
static int take_request(void *arg, const uint8_t *frame, size_t len)
{
    bell_ctx_t *b = arg;
    psrv_region_t *r = psrv_regions_get(b->srv, b->id);
    if (!r)
        return PS_ENET; /* cannot happen: see psrv_doorbells_take */
    ps_wire_msg_t m = {.n_parts = 2};
    if (zmq_msg_init_size(&m.parts[0], r->identity_len) != 0 ||
        zmq_msg_init_size(&m.parts[1], len) != 0) {
        m.n_parts = 1;
        ps_wire_msg_close(&m);
        return PS_ENOMEM;
    }
    memcpy(zmq_msg_data(&m.parts[0]), r->identity, r->identity_len);
    memcpy(zmq_msg_data(&m.parts[1]), frame, len);
    psrv_handle_bell(b->srv, &m, r);
    ps_wire_msg_close(&m);
    return PS_OK;
}

void psrv_doorbells_take(ps_server_t *srv, uint64_t id)
{
    psrv_region_t *r = psrv_regions_get(srv, id);
    if (!r || r->bell_fd < 0)
        return;
    bell_ctx_t b = {srv, id};
    /* r (and its reader) stays put while its requests are handled: a
     * doorbell carries only data requests, and no data request maps or
     * unmaps a region (only HELLO and the sweep do) */
    int rc = ps_bell_take(&r->reader, r->bell_fd, take_request, &b);
    if (rc == PS_OK)
        return;
    /* the worker's process is gone (every writer closed), or it wrote
     * what no client writes: closing our end of its reply pipe tells it
     * (end-of-file there), and its headers come over ZeroMQ from now on */
    psrv_regions_close_bell(srv, id, rc == PS_ENET ? PS_LOG_INFO : PS_LOG_WARN,
                            rc == PS_ENET     ? "the worker closed it"
                            : rc == PS_EPROTO ? "a malformed frame"
                                              : "out of memory");
}

void psrv_doorbells_take_of(ps_server_t *srv, zmq_msg_t *identity)
{
    psrv_region_t *r = srv->n_regions ? psrv_regions_of_sender(srv, identity) : NULL;
    if (r)
        psrv_doorbells_take(srv, r->id);
}
