/* ps_replica.h - replicated checkpoints, the sending side and the fetch:
 * a thread that copies every checkpoint file this shard writes to the next
 * checkpoint_replicas shards (its holders), and the fetch a shard started
 * with an empty state_dir (a new machine) makes from its holders before it
 * serves. The holders' side (REPLICA_* requests) is ps_handler_replica.c.
 *
 * Replication is asynchronous to training: the loop only queues a file's
 * name; the thread reads it, sends it on a DEALER socket of its own to each
 * holder and waits (replica_timeout_ms) for the holder's acknowledgement,
 * which comes once the holder has checked the bytes' CRC, read the file
 * back and renamed it into place. A file counts as replicated on a holder
 * only then. A delta is preceded by the files of its chain the holder has
 * not acknowledged; a holder that says it lacks a delta's base gets the
 * chain again from its full file. A DROP (an ended job's replicas, or
 * those a rollback undid) is queued with the files, in order, and sent to
 * each holder until acknowledged (every RETRY_MS, up to 10 tries) before
 * any later file goes to that holder. Queued bytes are bounded (replica_inflight_mb): past the
 * bound the oldest queued file is skipped, so a slow or dead holder costs
 * skipped replicas, never a stalled step. */
#ifndef PS_REPLICA_H
#define PS_REPLICA_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ps_curve.h"
#include "ps_err.h"
#include "ps_server_config.h"

#define PSRV_REPLICA_MAX 16 /* checkpoint_replicas' upper bound */

/* What replication needs of the server's configuration. */
typedef struct {
    char state_dir[PS_OPT_STR_MAX];
    uint32_t shard, n_shards;
    uint32_t n_holders;                   /* 0: replication is off */
    uint32_t holder[PSRV_REPLICA_MAX];    /* shard + 1 + i, mod n_shards */
    char endpoint[PSRV_REPLICA_MAX][256]; /* of holder[i] */
    int keep;                             /* checkpoint_keep */
    int64_t timeout_ms;                   /* replica_timeout_ms */
    size_t max_inflight_bytes;            /* replica_inflight_mb */
    bool curve;                           /* the shards speak CURVE */
    char server_key[PS_Z85_KEY_LEN + 1];  /* the holders' public key */
    ps_curve_keys_t keys;                 /* this server's pair, as a client */
} psrv_replica_cfg_t;

/* Fills out from cfg: n_holders = min(checkpoint_replicas, shards - 1),
 * 0 without peers or state_dir; the holders' endpoints from peers; the
 * CURVE keys from curve_secret_file and peer_key_file (default: this
 * server's own public key). PS_EINVAL / PS_EIO with err naming the option
 * or file. */
int psrv_replica_config(const ps_server_config_t *cfg, psrv_replica_cfg_t *out, ps_errbuf_t *err);

/* The directory under state_dir that holds the replicas this shard keeps
 * for shard owner: STATE_DIR/.replicas/shard-OWNER (hidden, so never taken
 * for a job of this shard's own). */
void psrv_replica_dir(const char *state_dir, uint32_t owner, char *out, size_t cap);

/* The startup fetch gives up once replica_timeout_ms times this has
 * passed (each request also has replica_timeout_ms of its own). */
#define PSRV_FETCH_DEADLINE_FACTOR 6

/* Before serving, a shard whose state_dir holds no job (a new machine)
 * fetches what its holders keep for it. It asks every holder for its list
 * (REPLICA_LIST, within timeout_ms each) and, per job, takes the holder
 * whose newest file is newest (a later generation first, then a later
 * clock: the files a rollback undid lose to the new history), fetching
 * every file of that one's job id by REPLICA_GET (CRC checked; a mismatch
 * is asked for again up to 3 times) into STATE_DIR/.fetching/JOB through
 * ps_ckpt_store_file. Only if the newest file then loads with its whole
 * chain (ps_ckpt_load) is the directory renamed to STATE_DIR/JOB; else it
 * is deleted, the holder's copy logged as partial (which holder, which
 * file, why) and the next holder tried. Every wait ends by the overall
 * deadline (timeout_ms x PSRV_FETCH_DEADLINE_FACTOR) or once *stop (may be
 * NULL) is set. Returns the number of files fetched into place (0: nothing
 * complete anywhere, *why then says what each holder said), PS_EINTR
 * (stopped or past the deadline: err says which; what was in place stays),
 * or PS_EIO / PS_ENOMEM if state_dir cannot take them (err names the
 * file). */
int psrv_replica_fetch(void *ctx, const psrv_replica_cfg_t *cfg, const atomic_bool *stop, char *why,
                       size_t why_cap, ps_errbuf_t *err);

typedef struct psrv_replicator psrv_replicator_t;

/* Starts the sender thread with its own sockets in ctx (cfg is copied).
 * NULL if cfg->n_holders is 0. */
psrv_replicator_t *psrv_replicator_start(void *ctx, const psrv_replica_cfg_t *cfg);
/* Loop thread: checkpoint job (id job_id) was written at clock; queue it
 * for every holder (never blocks; may skip the oldest queued file). */
void psrv_replicator_offer(psrv_replicator_t *r, const char *job, uint64_t job_id, int64_t clock);
/* Loop thread: job (id job_id) ended here; its holders drop its replicas. */
void psrv_replicator_offer_drop(psrv_replicator_t *r, const char *job, uint64_t job_id);
/* Loop thread: job was rolled back to clock as generation (> 0) and its
 * own files after clock deleted; its holders drop their replicas after
 * clock too (REPLICA_DROP with generation and clock). Queued in order with
 * the files: no file offered after it reaches a holder before the holder
 * acknowledged the drop. */
void psrv_replicator_offer_rollback(psrv_replicator_t *r, const char *job, uint64_t job_id,
                                    int64_t clock, uint64_t generation);
/* Has holder i acknowledged job's file at clock with payload CRC crc? Any
 * thread. */
bool psrv_replicator_acked(psrv_replicator_t *r, uint32_t i, const char *job, int64_t clock,
                           uint32_t crc);

/* The holders' shard ids into shards (PSRV_REPLICA_MAX entries); returns
 * how many (0 for NULL). Any thread. */
uint32_t psrv_replicator_holders(const psrv_replicator_t *r, uint32_t *shards);

/* Counters and per-holder state, for the stats (any thread: a copy). */
typedef struct {
    uint64_t files_acked, files_refused, files_failed, files_skipped, bytes_acked;
    uint64_t bytes_queued;                  /* now, with the file being sent */
    uint64_t drops_acked, drops_failed;     /* DROPs (ended jobs, rollbacks): given up */
    uint64_t drops_pending;                 /* DROPs sent, not yet acknowledged by a holder */
    int64_t last_ack_ms[PSRV_REPLICA_MAX];  /* 0: never */
    char last_error[PSRV_REPLICA_MAX][256]; /* the holder's latest trouble, "" if none */
} psrv_replica_status_t;
void psrv_replicator_status(psrv_replicator_t *r, psrv_replica_status_t *out);
/* Stops the thread (a wait for a holder under way is given up within 50
 * ms; what is still queued is not sent) and frees r; NULL-safe, sets *rp
 * to NULL. */
void psrv_replicator_stop(psrv_replicator_t **rp);

#endif
