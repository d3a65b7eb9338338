/* ps_heartbeat.c - the heartbeat thread: its own DEALER per shard (ZeroMQ
 * sockets belong to one thread), a HEARTBEAT to every shard each period
 * carrying the progress the trainer reported, replies read only for the
 * shard's incarnation (a change means the shard restarted) and the time
 * of the last one (a shard that answers none is gone). It runs while the
 * main thread computes or waits, so only a process that is really stopped
 * or gone falls silent. */
#include "ps_client_int.h"

#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "ps_time.h"

static void send_heartbeats(ps_client_t *c, void **socks)
{
    for (uint32_t s = 0; s < c->n_shards; s++) {
        /* built here, not by pscl_header_init: the main thread may be
         * changing the generation this very moment */
        Ps__Header h;
        ps__header__init(&h);
        h.version = PS_PROTOCOL_VERSION;
        h.op = PS__OP__HEARTBEAT;
        h.job = c->job;
        h.rank = c->opts.rank;
        h.worker_incarnation = c->worker_incarnation;
        h.n_samples = atomic_load(&c->report_samples);
        uint64_t bits = atomic_load(&c->report_loss_bits);
        memcpy(&h.loss, &bits, sizeof h.loss);
        /* never blocking: a shard whose handshake failed (a refused key)
         * leaves the socket no pipe to queue on, and a blocking send then
         * waits forever, and so did the join in ps_client_stop_heartbeats
         * (seen under TSan: a refused worker that never exited). A
         * heartbeat that cannot be queued is skipped; the next one comes
         * heartbeat_ms later. */
        size_t len = ps__header__get_packed_size(&h);
        zmq_msg_t msg;
        if (zmq_msg_init_size(&msg, len) != 0)
            continue;
        ps__header__pack(&h, zmq_msg_data(&msg));
        int n = zmq_msg_send(&msg, socks[s], ZMQ_DONTWAIT);
        if (n < 0)
            zmq_msg_close(&msg);
        else
            atomic_fetch_add(&c->hb_bytes_sent, (uint64_t)n);
    }
}

static void take_replies(ps_client_t *c, void *sock, uint32_t s)
{
    ps_wire_msg_t m;
    while (ps_wire_recv(sock, &m, ZMQ_DONTWAIT) != PS_EAGAIN) {
        atomic_fetch_add(&c->hb_bytes_received, ps_wire_msg_bytes(&m));
        Ps__Header *r = m.n_parts ? ps_wire_unpack_header(&m.parts[0]) : NULL;
        uint64_t known = atomic_load(&c->incarnation[s]);
        atomic_store(&c->last_reply_ms[s], ps_time_ms());
        if (r && r->incarnation && known && r->incarnation != known)
            atomic_store(&c->restarted, (int)s + 1);
        if (r)
            ps__header__free_unpacked(r, NULL);
        ps_wire_msg_close(&m);
    }
}

static void *heartbeat_run(void *arg)
{
    ps_client_t *c = arg;
    void **socks = ps_xcalloc(c->n_shards, sizeof *socks);
    zmq_pollitem_t *items = ps_xcalloc(c->n_shards, sizeof *items);
    for (uint32_t s = 0; s < c->n_shards; s++) {
        socks[s] = pscl_open_socket(c, c->endpoints[s]);
        items[s] = (zmq_pollitem_t){socks[s], 0, ZMQ_POLLIN, 0};
    }
    int64_t next = 0;
    while (!atomic_load(&c->heartbeat_stop)) {
        if (ps_time_ms() >= next) {
            send_heartbeats(c, socks);
            next = ps_time_ms() + c->opts.heartbeat_ms;
        }
        if (zmq_poll(items, (int)c->n_shards, 50) <= 0)
            continue;
        for (uint32_t s = 0; s < c->n_shards; s++)
            if (items[s].revents & ZMQ_POLLIN)
                take_replies(c, socks[s], s);
    }
    for (uint32_t s = 0; s < c->n_shards; s++)
        zmq_close(socks[s]);
    free(socks);
    free(items);
    return NULL;
}

int pscl_start_heartbeats(ps_client_t *c, ps_errbuf_t *err)
{
    if (c->opts.heartbeat_ms <= 0 || c->has_heartbeat)
        return PS_OK;
    atomic_init(&c->heartbeat_stop, 0);
    if (pthread_create(&c->heartbeat_thread, NULL, heartbeat_run, c) != 0)
        return ps_err_set(err, PS_ENOMEM, "worker %u: cannot start the heartbeat thread",
                          c->opts.rank);
    c->has_heartbeat = 1;
    return PS_OK;
}

void ps_client_stop_heartbeats(ps_client_t *c)
{
    if (c->has_heartbeat) {
        atomic_store(&c->heartbeat_stop, 1);
        pthread_join(c->heartbeat_thread, NULL);
        c->has_heartbeat = 0;
    }
}

void ps_client_report(ps_client_t *c, uint64_t samples, double loss)
{
    uint64_t bits;
    memcpy(&bits, &loss, sizeof bits);
    atomic_store(&c->report_samples, samples);
    atomic_store(&c->report_loss_bits, bits);
}
