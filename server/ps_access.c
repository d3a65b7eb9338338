/* ps_access.c - see ps_access.h. */
#include "ps_access.h"

#include <string.h>

#include "ps_log.h"
#include "ps_reply.h"

int psrv_access_setup(ps_server_t *srv, ps_errbuf_t *err)
{
    ps_curve_keys_t keys;
    int rc = ps_curve_load(srv->cfg.curve_secret_file, true, &keys, err);
    if (rc != PS_OK)
        return rc;
    srv->zap = ps_zap_start(srv->ctx, srv->cfg.allow_file, err);
    if (!srv->zap)
        return err ? err->code : PS_EINVAL;
    rc = ps_curve_server_socket(srv->router, keys.secret_z85, err);
    memset(keys.secret_z85, 0, sizeof keys.secret_z85);
    if (rc != PS_OK)
        return rc;
    ps_log(PS_LOG_INFO, "shard %lld: CURVE server key %s", (long long)srv->cfg.shard,
           keys.public_z85);
    return PS_OK;
}

void psrv_access_watch(ps_server_t *srv)
{
    srv->monitor = ps_handshake_monitor(srv->ctx, srv->router);
}

/* What each role may ask for. Plain text (no CURVE; only served on
 * loopback unless the operator said `insecure`) may do what a worker may
 * and SAVE, as the local stats socket may: stopping a daemon over the
 * network takes an authenticated admin key (locally there is SIGTERM). */
static bool is_replica_op(int op)
{
    return op >= PS__OP__REPLICA_PUT && op <= PS__OP__REPLICA_DROP;
}

/* ... and the replicas of checkpoints are the other shards' business
 * only (role shard): neither a worker nor an admin key may overwrite or
 * delete them. Plain text may send them only to a shard with `peers`
 * (replication configured): without CURVE, replication trusts the
 * network, as the rest of the protocol does (docs/security.md). */
static bool role_permits(ps_role_t role, int op)
{
    switch (role) {
    case PS_ROLE_NONE:
        return op != PS__OP__SHUTDOWN;
    case PS_ROLE_ADMIN:
        return !is_replica_op(op);
    case PS_ROLE_WORKER:
        return op != PS__OP__SAVE && op != PS__OP__SHUTDOWN && !is_replica_op(op);
    case PS_ROLE_SHARD:
        return is_replica_op(op);
    case PS_ROLE_MONITOR:
        return op == PS__OP__STATS;
    default:
        return false;
    }
}

bool psrv_access_permitted(ps_server_t *srv, psrv_request_t *rq)
{
    int op = rq->hdr->op;
    if (!srv->zap) {
        if (is_replica_op(op) && !*srv->cfg.peers) {
            psrv_fail(rq, PS_EPERM, "%s from %s: shard %lld has no peers (it replicates nothing)",
                      ps_op_name(op), psrv_request_peer(rq), (long long)srv->cfg.shard);
            return false;
        }
        if (role_permits(PS_ROLE_NONE, op))
            return true;
        psrv_fail(rq, PS_EPERM, "%s needs CURVE and an admin key (locally: SIGTERM)",
                  ps_op_name(op));
        return false;
    }
    const char *user_id = psrv_request_user(rq);
    ps_role_t role = ps_zap_role(srv->zap, user_id);
    if (role == PS_ROLE_NONE) {
        psrv_fail(rq, PS_EAUTH, "the key of %s is not on shard %lld's allow-list any more",
                  psrv_request_peer(rq), (long long)srv->cfg.shard);
        return false;
    }
    if (!role_permits(role, op)) {
        char name[64];
        ps_zap_name(srv->zap, user_id, name, sizeof name);
        psrv_fail(rq, PS_EPERM, "key '%s' of %s has role %s, which may not %s", name,
                  psrv_request_peer(rq), ps_role_name(role), ps_op_name(op));
        return false;
    }
    return true;
}

void psrv_access_drain(ps_server_t *srv)
{
    static const char *const why[3] = {
        "the ZAP handler refused the client's key",
        "security mechanism mismatch: a plain-text client at a CURVE server, or the reverse",
        "protocol error (wrong server key, or not a ps client)"};
    ps_handshake_event_t ev;
    while (srv->monitor && ps_handshake_read(srv->monitor, &ev) == PS_OK) {
        srv->stats.handshake_failures++;
        int kind = ev.event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH              ? 0
                   : ev.value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH ? 1
                                                                            : 2;
        uint64_t n = ++srv->stats.handshake_failures_by_kind[kind];
        if (n == 1 || n % 1000 == 0)
            ps_log(PS_LOG_WARN,
                   "shard %lld: handshake failed on %s: %s (event %u, code %u; %llu so far)",
                   (long long)srv->cfg.shard, ev.addr, why[kind], ev.event, ev.value,
                   (unsigned long long)n);
    }
}

void psrv_access_reload(ps_server_t *srv)
{
    if (!srv->zap) {
        ps_log(PS_LOG_INFO, "shard %lld: SIGHUP: CURVE is off, nothing to reload",
               (long long)srv->cfg.shard);
        return;
    }
    ps_errbuf_t err;
    if (ps_zap_reload(srv->zap, &err) != PS_OK)
        ps_log(PS_LOG_ERROR, "shard %lld: SIGHUP: %s; the previous allow-list stays in force",
               (long long)srv->cfg.shard, err.msg);
    else
        ps_log(PS_LOG_NOTICE, "shard %lld: SIGHUP: allow-list '%s' reloaded, %zu keys",
               (long long)srv->cfg.shard, srv->cfg.allow_file, ps_zap_keys(srv->zap));
}

void psrv_access_stop(ps_server_t *srv)
{
    if (srv->monitor) {
        zmq_socket_monitor(srv->router, NULL, 0);
        zmq_close(srv->monitor);
        srv->monitor = NULL;
    }
    ps_zap_stop(&srv->zap);
}
