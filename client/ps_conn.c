/* ps_conn.c - the client's connections: one DEALER per shard (CURVE when
 * the client has keys) and a monitor of its handshakes, so a shard that
 * refuses us is reported at once, with the reason. */
#include "ps_client_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "ps_curve.h"

void *pscl_open_socket(ps_client_t *c, const char *ep)
{
    void *s = zmq_socket(c->ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    if (c->curve_server[0] && ps_curve_client_socket(s, c->curve_server, c->curve_public,
                                                     c->curve_secret, NULL) != PS_OK) {
        zmq_close(s);
        return NULL;
    }
    if (zmq_connect(s, ep) != 0) {
        zmq_close(s);
        return NULL;
    }
    return s;
}

int pscl_add_shard(ps_client_t *c, const char *ep, ps_errbuf_t *err)
{
    if (c->n_shards >= PSCL_MAX_SHARDS)
        return ps_err_set(err, PS_EINVAL, "more than %d server endpoints", PSCL_MAX_SHARDS);
    void *s = pscl_open_socket(c, ep);
    if (!s)
        return ps_err_set(err, PS_EINVAL, "bad server endpoint '%s': %s", ep,
                          zmq_strerror(zmq_errno()));
    uint32_t n = c->n_shards;
    c->socks = ps_xrealloc(c->socks, (n + 1) * sizeof *c->socks);
    c->monitors = ps_xrealloc(c->monitors, (n + 1) * sizeof *c->monitors);
    c->endpoints = ps_xrealloc(c->endpoints, (n + 1) * sizeof *c->endpoints);
    c->socks[n] = s;
    c->endpoints[n] = ps_xstrdup(ep);
    c->monitors[n] = ps_handshake_monitor(c->ctx, s);
    c->n_shards++;
    return PS_OK;
}

int pscl_handshake_failure(ps_client_t *c, uint32_t s, ps_errbuf_t *err)
{
    int rc = PS_OK;
    ps_handshake_event_t ev;
    while (c->monitors[s] && ps_handshake_read(c->monitors[s], &ev) == PS_OK) {
        const char *why;
        if (ev.event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
            why = "refused our CURVE key (not on its allow-list?)";
        else if (!c->curve_server[0] && ev.event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL &&
                 ++c->handshake_breaks[s] < PSCL_HANDSHAKE_BREAKS)
            /* a shard killed or stopped mid-handshake breaks it off once;
             * one that wants CURVE breaks off every reconnect */
            continue;
        else if (!c->curve_server[0])
            /* the server drops a plain-text greeting without a word */
            why = "broke off the handshake: it requires CURVE (set curve_server_key_file and "
                  "curve_secret_file)";
        else if (ev.value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
            why = "speaks plain text but we use CURVE";
        else
            why = "broke off the CURVE handshake (wrong server key?)";
        rc = ps_err_set(err, PS_EAUTH, "worker %u: shard %u '%s' %s (ZMTP event %u, code %u)",
                        c->opts.rank, s, c->endpoints[s], why, ev.event, ev.value);
    }
    return rc;
}

bool pscl_reopen_shard(ps_client_t *c, uint32_t s)
{
    void *fresh = pscl_open_socket(c, c->endpoints[s]);
    if (!fresh)
        return false;
    zmq_socket_monitor(c->socks[s], NULL, 0);
    zmq_close(c->socks[s]); /* ZMQ_LINGER 0: its queue is dropped, not sent */
    if (c->monitors[s])
        zmq_close(c->monitors[s]);
    c->socks[s] = fresh;
    c->monitors[s] = ps_handshake_monitor(c->ctx, fresh);
    c->handshake_breaks[s] = 0;
    return true;
}

void pscl_close_shards(ps_client_t *c)
{
    for (uint32_t i = 0; i < c->n_shards; i++) {
        zmq_socket_monitor(c->socks[i], NULL, 0);
        zmq_close(c->socks[i]);
        if (c->monitors[i])
            zmq_close(c->monitors[i]);
        free(c->endpoints[i]);
    }
    free(c->socks);
    free(c->monitors);
    free(c->endpoints);
    c->socks = c->monitors = NULL;
    c->endpoints = NULL;
    c->n_shards = 0;
}
