/* ps_doorbells.h - taking the requests same-host workers ring down their
 * doorbells (ps_bell.h; the pipes belong to their regions, ps_regions.h)
 * and handing each to the handler as if it had come over the router from
 * the worker's HELLO socket. The loop polls the doorbells beside the
 * router. Loop thread only. */
#ifndef PS_DOORBELLS_H
#define PS_DOORBELLS_H

#include "ps_server_int.h"

/* Takes what waits in region id's doorbell. One whose worker closed it
 * (its process is gone) or wrote garbage is closed; the region stays. */
void psrv_doorbells_take(ps_server_t *srv, uint64_t id);
/* The same for the doorbell of the worker whose socket has routing id
 * identity, if it has one: called before each router message, so what
 * that worker rang before it sent the message is handled first. */
void psrv_doorbells_take_of(ps_server_t *srv, zmq_msg_t *identity);

#endif
