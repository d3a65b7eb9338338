/* ps_access.h - who may talk to this shard, and what each may ask: CURVE
 * on the router with the ZAP handler (which starts first and fails
 * closed), the role of each request's key checked against the allow-list
 * in force (SIGHUP re-reads it), and the log of failed handshakes. Loop
 * thread only (the ZAP handler has its own thread, see ps_curve.h). */
#ifndef PS_ACCESS_H
#define PS_ACCESS_H

#include <stdbool.h>

#include "ps_server_int.h"

/* CURVE server on the router: loads the key pair and starts the ZAP
 * handler before the socket binds. Errors name the key or list file. */
int psrv_access_setup(ps_server_t *srv, ps_errbuf_t *err);
/* Watches the router's handshakes (plain text to CURVE, bad keys). */
void psrv_access_watch(ps_server_t *srv);
/* May rq's key (plain text: anyone on loopback) ask for its op? If not,
 * the reply is set to EAUTH (a key no longer on the list) or EPERM. */
bool psrv_access_permitted(ps_server_t *srv, psrv_request_t *rq);
/* Counts and logs failed handshakes (the first of each kind, then every
 * 1000th: a plain-text client knocking at a CURVE server retries ten
 * times a second). */
void psrv_access_drain(ps_server_t *srv);
/* SIGHUP: re-reads the allow-list; on error the old list stays in force. */
void psrv_access_reload(ps_server_t *srv);
/* Stops the monitor and the ZAP handler (before the context ends). */
void psrv_access_stop(ps_server_t *srv);

#endif
