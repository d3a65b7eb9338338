/* ps_replica_link.c - what the sender and the fetch share (ps_replica.h,
 * ps_replica_int.h): the replication settings, where replicas live, and one
 * request to a peer shard with its reply, under a deadline. */
#include "ps_replica.h"
#include "ps_replica_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zmq.h>
#include "ps_checkpoint.h"
#include "ps_job.h"
#include "ps_log.h"
#include "ps_name.h"
#include "ps_time.h"
#include "ps_wire.h"

int psrv_replica_config(const ps_server_config_t *cfg, psrv_replica_cfg_t *out, ps_errbuf_t *err)
{
    memset(out, 0, sizeof *out);
    snprintf(out->state_dir, sizeof out->state_dir, "%s", cfg->state_dir);
    out->shard = (uint32_t)cfg->shard;
    out->n_shards = (uint32_t)cfg->shards;
    out->keep = (int)cfg->checkpoint_keep;
    out->timeout_ms = cfg->replica_timeout_ms;
    out->max_inflight_bytes = (size_t)cfg->replica_inflight_mb << 20;
    if (!*cfg->peers || !*cfg->state_dir || cfg->shards < 2)
        return PS_OK;
    uint32_t n = (uint32_t)cfg->checkpoint_replicas;
    if (n > out->n_shards - 1)
        n = out->n_shards - 1;
    char list[PS_OPT_STR_MAX];
    snprintf(list, sizeof list, "%s", cfg->peers);
    char *endpoints[1024], *save = NULL;
    uint32_t n_ep = 0;
    for (char *tok = strtok_r(list, ",", &save); tok && n_ep < 1024;
         tok = strtok_r(NULL, ",", &save))
        endpoints[n_ep++] = tok;
    if (n_ep != out->n_shards)
        return ps_err_set(err, PS_EINVAL, "peers lists %u endpoints; shards is %u", n_ep,
                          out->n_shards);
    for (uint32_t i = 0; i < n; i++) {
        out->holder[i] = (out->shard + 1 + i) % out->n_shards;
        snprintf(out->endpoint[i], sizeof out->endpoint[i], "%s", endpoints[out->holder[i]]);
    }
    out->n_holders = n;
    if (!*cfg->curve_secret_file)
        return PS_OK;
    out->curve = true;
    int rc = ps_curve_load(cfg->curve_secret_file, true, &out->keys, err);
    if (rc != PS_OK)
        return rc;
    snprintf(out->server_key, sizeof out->server_key, "%s", out->keys.public_z85);
    if (*cfg->peer_key_file) {
        ps_curve_keys_t peer;
        if ((rc = ps_curve_load(cfg->peer_key_file, false, &peer, err)) != PS_OK)
            return rc;
        snprintf(out->server_key, sizeof out->server_key, "%s", peer.public_z85);
    }
    return PS_OK;
}

void psrv_replica_dir(const char *state_dir, uint32_t owner, char *out, size_t cap)
{
    snprintf(out, cap, "%s/.replicas/shard-%u", state_dir, owner);
}

/* A request header of op about job (NULL: none) of shard `shard` of n_shards. */
Ps__Header psrv_replica_header(int op, const char *job, uint64_t job_id, uint32_t shard,
                               uint32_t n_shards)
{
    Ps__Header h = PS__HEADER__INIT;
    h.version = PS_PROTOCOL_VERSION;
    h.op = op;
    h.job = job ? (char *)job : (char *)"";
    h.job_id = job_id;
    h.shard = shard;
    h.n_shards = n_shards;
    return h;
}

/* ---- one request and its reply, with a deadline ---- */

/* A DEALER to endpoint (CURVE if the shards use it). NULL if it cannot be
 * made (why says so). */
void *psrv_replica_open_peer(void *ctx, const psrv_replica_cfg_t *cfg, const char *endpoint,
                             char *why, size_t cap)
{
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0, send_ms = (int)cfg->timeout_ms;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &send_ms, sizeof send_ms); /* a full pipe never blocks us */
    ps_errbuf_t err;
    if (cfg->curve && ps_curve_client_socket(s, cfg->server_key, cfg->keys.public_z85,
                                             cfg->keys.secret_z85, &err) != PS_OK) {
        snprintf(why, cap, "%s", err.msg);
        zmq_close(s);
        return NULL;
    }
    if (zmq_connect(s, endpoint) != 0) {
        snprintf(why, cap, "cannot connect to '%s': %s", endpoint, zmq_strerror(zmq_errno()));
        zmq_close(s);
        return NULL;
    }
    return s;
}

void psrv_replica_free_bytes(void *data, void *hint)
{
    (void)hint;
    free(data);
}

/* Sends h (and bytes, owned from here on, if not NULL) and waits until
 * deadline_ms for the reply to h->request_id: PS_OK with *reply set (the
 * caller closes it), PS_ETIME, PS_EINTR (*cancel was set: the wait is cut
 * into slices of 50 ms to look at it), or PS_ENET; why says what happened. */
int psrv_replica_call(void *s, const Ps__Header *h, void *bytes, size_t len, int64_t deadline_ms,
                      const atomic_bool *cancel, ps_wire_msg_t *reply, char *why, size_t cap)
{
    if (ps_wire_send_header(s, h, bytes ? ZMQ_SNDMORE : 0) < 0) {
        free(bytes);
        snprintf(why, cap, "cannot send %s: %s", ps_op_name(h->op), zmq_strerror(zmq_errno()));
        return PS_ENET;
    }
    if (bytes) {
        zmq_msg_t m;
        zmq_msg_init_data(&m, bytes, len, psrv_replica_free_bytes, NULL);
        if (ps_wire_send_msg(s, &m, 0) < 0) {
            snprintf(why, cap, "cannot send %s: %s", ps_op_name(h->op), zmq_strerror(zmq_errno()));
            return PS_ENET;
        }
    }
    for (;;) {
        int64_t left = deadline_ms - ps_time_ms();
        zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
        if (cancel && atomic_load(cancel)) {
            snprintf(why, cap, "%s given up: stopping", ps_op_name(h->op));
            return PS_EINTR;
        }
        if (left <= 0) {
            snprintf(why, cap, "no answer to %s within %s", ps_op_name(h->op),
                     "replica_timeout_ms");
            return PS_ETIME;
        }
        if (zmq_poll(&it, 1, (long)(left < 50 ? left : 50)) <= 0 || !(it.revents & ZMQ_POLLIN))
            continue; /* a slice passed, or EINTR */
        if (ps_wire_recv(s, reply, 0) != PS_OK || reply->n_parts < 1) {
            ps_wire_msg_close(reply);
            continue;
        }
        Ps__Header *r = ps_wire_unpack_header(&reply->parts[0]);
        bool ours = r && r->request_id == h->request_id;
        if (r)
            ps__header__free_unpacked(r, NULL);
        if (ours)
            return PS_OK;
        ps_wire_msg_close(reply); /* a late answer to a request given up on */
    }
}
