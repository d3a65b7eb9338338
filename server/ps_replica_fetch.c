/* ps_replica_fetch.c - a new machine's fetch of its checkpoints from the
 * shards holding them (see ps_replica.h), on the loop thread before it
 * serves. */
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

/* ---- the fetch of a new machine ---- */

/* One line of a holder's REPLICA_LIST. */
typedef struct {
    char job[PS_JOB_NAME_MAX];
    int64_t clock;
    uint64_t bytes, id, generation;
} listed_t;

/* What one holder said it holds for us. */
typedef struct {
    uint32_t i; /* cfg->holder[i] */
    void *sock; /* NULL: did not answer (why says so) */
    listed_t *files;
    int n;
    uint64_t seq;
    char why[512];
} source_t;

/* The fetch's shared state: the overall deadline and the stop flag. */
typedef struct {
    void *ctx;
    const psrv_replica_cfg_t *cfg;
    int64_t deadline_ms;
    const atomic_bool *stop;
    char staging[PS_OPT_STR_MAX + 32];
} fetch_t;

static int64_t call_deadline(const fetch_t *f)
{
    int64_t d = ps_time_ms() + f->cfg->timeout_ms;
    return d < f->deadline_ms ? d : f->deadline_ms;
}

/* Fetches job's file at clock from src into the staging directory,
 * re-requesting it while its CRC fails (up to PSRV_REPLICA_REFUSED_RETRIES times).
 * PS_OK, PS_EFORMAT (every copy was bad), PS_EIO (our disk: err), or the
 * transport's code; why says what. */
static int fetch_file(fetch_t *f, source_t *src, const char *job, int64_t clock, size_t *bytes_in,
                      char *why, size_t cap, ps_errbuf_t *err)
{
    const psrv_replica_cfg_t *cfg = f->cfg;
    for (int attempt = 0; attempt < PSRV_REPLICA_REFUSED_RETRIES; attempt++) {
        Ps__Header h = psrv_replica_header(PS__OP__REPLICA_GET, job, 0, cfg->shard, cfg->n_shards);
        h.request_id = ++src->seq;
        h.clock = clock;
        ps_wire_msg_t reply = {0};
        int rc =
            psrv_replica_call(src->sock, &h, NULL, 0, call_deadline(f), f->stop, &reply, why, cap);
        if (rc != PS_OK)
            return rc;
        Ps__Header *rh = ps_wire_unpack_header(&reply.parts[0]);
        int status = rh->status;
        uint32_t want = rh->crc;
        snprintf(why, cap, "%s", rh->message && *rh->message ? rh->message : "");
        ps__header__free_unpacked(rh, NULL);
        if (status != PS_OK || reply.n_parts != 2) {
            ps_wire_msg_close(&reply);
            if (status == PS_OK)
                snprintf(why, cap, "REPLICA_GET reply without the file");
            return status != PS_OK ? status : PS_EPROTO;
        }
        const void *bytes = zmq_msg_data(&reply.parts[1]);
        size_t len = zmq_msg_size(&reply.parts[1]);
        uint32_t got = (uint32_t)crc32(crc32(0, NULL, 0), bytes, (uInt)len);
        if (got != want) {
            ps_wire_msg_close(&reply);
            ps_log(PS_LOG_WARN,
                   "shard %u: job '%s' clock %lld fetched with CRC %08x, the "
                   "holder sent %08x: asking again",
                   cfg->shard, job, (long long)clock, got, want);
            snprintf(why, cap, "job '%s' clock %lld failed its CRC %d times", job, (long long)clock,
                     attempt + 1);
            continue;
        }
        rc = ps_ckpt_store_file(f->staging, job, clock, cfg->shard, bytes, len, cfg->keep, err);
        ps_wire_msg_close(&reply);
        *bytes_in += len;
        if (rc == PS_EFORMAT) {
            snprintf(why, cap, "%s", err->msg);
            continue;
        }
        if (rc != PS_OK)
            snprintf(why, cap, "%s", err->msg);
        return rc;
    }
    return PS_EFORMAT;
}

/* Parses a REPLICA_LIST reply into src->files ("JOB CLOCK [BYTES JOB_ID
 * GENERATION]" lines). PS_EPROTO on a bad line. */
static int parse_list(source_t *src, const char *text)
{
    char *list = ps_xstrdup(text), *save = NULL;
    int rc = PS_OK;
    for (char *line = strtok_r(list, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        listed_t l = {0};
        long long clock;
        unsigned long long bytes = 0, id = 0, gen = 0;
        ps_errbuf_t bad;
        if (sscanf(line, "%63s %lld %llu %llu %llu", l.job, &clock, &bytes, &id, &gen) < 2 ||
            clock < 0 || ps_name_check_job(l.job, &bad) != PS_OK) {
            snprintf(src->why, sizeof src->why, "REPLICA_LIST reply has a bad line: '%.100s'",
                     line);
            rc = PS_EPROTO;
            break;
        }
        l.clock = clock;
        l.bytes = bytes;
        l.id = id;
        l.generation = gen;
        src->files = ps_xrealloc(src->files, (size_t)(src->n + 1) * sizeof *src->files);
        src->files[src->n++] = l;
    }
    free(list);
    return rc;
}

/* Asks holder src->i for the list of what it holds for us. PS_OK, or the
 * failure (src->why says it; the socket is then closed). */
static int list_source(fetch_t *f, source_t *src)
{
    const psrv_replica_cfg_t *cfg = f->cfg;
    src->sock =
        psrv_replica_open_peer(f->ctx, cfg, cfg->endpoint[src->i], src->why, sizeof src->why);
    if (!src->sock)
        return PS_ENET;
    Ps__Header h = psrv_replica_header(PS__OP__REPLICA_LIST, NULL, 0, cfg->shard, cfg->n_shards);
    h.request_id = ++src->seq;
    ps_wire_msg_t reply = {0};
    int rc = psrv_replica_call(src->sock, &h, NULL, 0, call_deadline(f), f->stop, &reply, src->why,
                               sizeof src->why);
    if (rc == PS_OK) {
        Ps__Header *rh = ps_wire_unpack_header(&reply.parts[0]);
        ps_wire_msg_close(&reply);
        rc = rh->status;
        if (rc != PS_OK)
            snprintf(src->why, sizeof src->why, "REPLICA_LIST refused: %s",
                     rh->message ? rh->message : "");
        else
            rc = parse_list(src, rh->message ? rh->message : "");
        ps__header__free_unpacked(rh, NULL);
    }
    if (rc != PS_OK) {
        zmq_close(src->sock);
        src->sock = NULL;
    }
    return rc;
}

/* The newest file src lists of job (NULL if none): its clocks ascend. */
static const listed_t *newest_of(const source_t *src, const char *job)
{
    const listed_t *best = NULL;
    for (int k = 0; k < src->n; k++)
        if (!strcmp(src->files[k].job, job))
            best = &src->files[k];
    return best;
}

/* Is a newer than b: a later generation (b's files after a rollback's
 * clock are the undone history), then a later clock? */
static bool newer(const listed_t *a, const listed_t *b)
{
    if (a->generation != b->generation)
        return a->generation > b->generation;
    return a->clock > b->clock;
}

static void remove_staged(const fetch_t *f, const char *job)
{
    ps_ckpt_remove_job(f->staging, job);
}

/* Fetches job's files of the newest one's id from src into staging,
 * oldest first, checks that the newest one loads with its whole chain
 * (ps_ckpt_load), then renames the job's directory into state_dir. The
 * number of files, 0 if this holder's copy is not complete (logged, and
 * staging emptied), or PS_EIO / PS_ENOMEM (our disk) / PS_EINTR
 * (stopped, or the fetch's deadline passed). */
static int fetch_job(fetch_t *f, source_t *src, const char *job, size_t *bytes_in, ps_errbuf_t *err)
{
    const psrv_replica_cfg_t *cfg = f->cfg;
    const listed_t *top = newest_of(src, job);
    char why[512] = "";
    int n = 0, rc = PS_OK;
    int64_t failed_clock = -1;
    for (int k = 0; k < src->n && rc != PS_EIO && rc != PS_ENOMEM; k++) {
        const listed_t *l = &src->files[k];
        if (strcmp(l->job, job) || l->id != top->id)
            continue; /* another job of the same name: never mixed in */
        if ((f->stop && atomic_load(f->stop)) || ps_time_ms() >= f->deadline_ms) {
            rc = PS_EINTR;
            snprintf(why, sizeof why, "%s",
                     f->stop && atomic_load(f->stop) ? "stopped" : "the fetch's deadline passed");
            failed_clock = l->clock;
            break;
        }
        rc = fetch_file(f, src, job, l->clock, bytes_in, why, sizeof why, err);
        if (rc == PS_OK) {
            n++;
            continue;
        }
        failed_clock = l->clock;
        if (rc == PS_ETIME || rc == PS_ENET || rc == PS_EINTR)
            break; /* the holder is gone: the rest would fail too */
    }
    if (rc == PS_EIO || rc == PS_ENOMEM) {
        remove_staged(f, job);
        return rc;
    }
    ps_ckpt_t ck;
    ps_errbuf_t lerr;
    bool whole = ps_ckpt_load(f->staging, job, top->clock, &ck, &lerr) == PS_OK;
    if (whole) {
        whole = ck.job.shard == cfg->shard && ck.job.id == top->id;
        if (!whole)
            snprintf(lerr.msg, sizeof lerr.msg, "clock %lld is of shard %u, job id %llu",
                     (long long)top->clock, ck.job.shard, (unsigned long long)ck.job.id);
        ps_ckpt_free(&ck);
    }
    char from[1100], to[1100];
    snprintf(from, sizeof from, "%s/%s", f->staging, job);
    snprintf(to, sizeof to, "%s/%s", cfg->state_dir, job);
    if (whole && rename(from, to) != 0) {
        remove_staged(f, job);
        return ps_err_set(err, PS_EIO, "cannot rename '%s' to '%s': %s", from, to, strerror(errno));
    }
    if (whole) {
        if (failed_clock >= 0)
            ps_log(PS_LOG_WARN,
                   "shard %u: job '%s': an older file (clock %lld) from shard %u was not "
                   "fetched: %s",
                   cfg->shard, job, (long long)failed_clock, cfg->holder[src->i], why);
        return n;
    }
    char failure[700] = "";
    if (failed_clock >= 0)
        snprintf(failure, sizeof failure, "; the file of clock %lld failed: %s",
                 (long long)failed_clock, why);
    ps_log(PS_LOG_WARN,
           "shard %u: job '%s' from shard %u ('%s') is %s (%d files fetched%s); its clock %lld "
           "does not load: %s; discarded, trying the next holder",
           cfg->shard, job, cfg->holder[src->i], cfg->endpoint[src->i], n ? "partial" : "missing",
           n, failure, (long long)top->clock, lerr.msg);
    remove_staged(f, job);
    bool over = (f->stop && atomic_load(f->stop)) || ps_time_ms() >= f->deadline_ms;
    return rc == PS_EINTR || over ? PS_EINTR : 0;
}

/* Fetches job from the holder whose newest file of it is newest (see
 * newer), else the next one. Files fetched, 0 if no holder's copy was
 * complete (logged), or a negative code. */
static int fetch_best(fetch_t *f, source_t *srcs, uint32_t n_src, const char *job, size_t *bytes_in,
                      ps_errbuf_t *err)
{
    bool tried[PSRV_REPLICA_MAX] = {0};
    for (;;) {
        int best = -1;
        for (uint32_t s = 0; s < n_src; s++) {
            const listed_t *t = srcs[s].sock && !tried[s] ? newest_of(&srcs[s], job) : NULL;
            if (t && (best < 0 || newer(t, newest_of(&srcs[best], job))))
                best = (int)s;
        }
        if (best < 0) {
            ps_log(PS_LOG_ERROR,
                   "shard %u: job '%s': no holder has a complete copy of it; not restored",
                   f->cfg->shard, job);
            return 0;
        }
        tried[best] = true;
        const listed_t *t = newest_of(&srcs[best], job);
        int64_t t0 = ps_time_ms();
        size_t before = *bytes_in;
        int n = fetch_job(f, &srcs[best], job, bytes_in, err);
        if (n > 0)
            ps_log(PS_LOG_NOTICE,
                   "shard %u: job '%s': fetched %d checkpoint files (%zu bytes) from shard %u "
                   "('%s') in %lld ms, up to clock %lld (generation %llu)",
                   f->cfg->shard, job, n, *bytes_in - before, f->cfg->holder[srcs[best].i],
                   f->cfg->endpoint[srcs[best].i], (long long)(ps_time_ms() - t0),
                   (long long)t->clock, (unsigned long long)t->generation);
        if (n != 0)
            return n;
    }
}

/* Has a job of that name come up before index k of srcs[s]'s files? */
static bool seen_before(const source_t *srcs, uint32_t s, int k)
{
    const char *job = srcs[s].files[k].job;
    for (uint32_t t = 0; t <= s; t++)
        for (int m = 0; m < (t == s ? k : srcs[t].n); m++)
            if (!strcmp(srcs[t].files[m].job, job))
                return true;
    return false;
}

/* Every job any holder lists, each fetched by fetch_best. */
static int fetch_all(fetch_t *f, source_t *srcs, uint32_t n_src, size_t *bytes_in, ps_errbuf_t *err)
{
    int total = 0;
    for (uint32_t s = 0; s < n_src; s++)
        for (int k = 0; k < srcs[s].n; k++) {
            if (!srcs[s].sock || seen_before(srcs, s, k))
                continue;
            int n = fetch_best(f, srcs, n_src, srcs[s].files[k].job, bytes_in, err);
            if (n < 0)
                return n;
            total += n;
        }
    return total;
}

int psrv_replica_fetch(void *ctx, const psrv_replica_cfg_t *cfg, const atomic_bool *stop, char *why,
                       size_t why_cap, ps_errbuf_t *err)
{
    *why = 0;
    fetch_t f = {.ctx = ctx,
                 .cfg = cfg,
                 .deadline_ms = ps_time_ms() + cfg->timeout_ms * PSRV_FETCH_DEADLINE_FACTOR,
                 .stop = stop};
    snprintf(f.staging, sizeof f.staging, "%s/.fetching", cfg->state_dir);
    char **left;
    int n_left = ps_ckpt_list_jobs(f.staging, &left); /* an earlier fetch's, cut short */
    for (int k = 0; k < n_left; k++) {
        ps_ckpt_remove_job(f.staging, left[k]);
        free(left[k]);
    }
    free(left);
    source_t srcs[PSRV_REPLICA_MAX];
    uint32_t answered = 0;
    size_t len = 0;
    for (uint32_t i = 0; i < cfg->n_holders; i++) {
        srcs[i] = (source_t){.i = i};
        if (list_source(&f, &srcs[i]) == PS_OK) {
            answered++;
            continue;
        }
        ps_log(PS_LOG_WARN, "shard %u: holder shard %u ('%s') lists nothing: %s", cfg->shard,
               cfg->holder[i], cfg->endpoint[i], srcs[i].why);
        len +=
            (size_t)snprintf(why + len, len < why_cap ? why_cap - len : 0, "%sshard %u ('%s'): %s",
                             len ? "; " : "", cfg->holder[i], cfg->endpoint[i], srcs[i].why);
        if (len >= why_cap)
            len = why_cap - 1;
    }
    size_t bytes = 0;
    bool over = (stop && atomic_load(stop)) || ps_time_ms() >= f.deadline_ms;
    int n = over ? PS_EINTR : fetch_all(&f, srcs, cfg->n_holders, &bytes, err);
    for (uint32_t i = 0; i < cfg->n_holders; i++) {
        if (srcs[i].sock)
            zmq_close(srcs[i].sock);
        free(srcs[i].files);
    }
    rmdir(f.staging); /* empty: every job was moved or removed */
    if (n == PS_EINTR)
        return ps_err_set(err, PS_EINTR,
                          "shard %u: the startup fetch %s; the jobs not yet fetched are not "
                          "restored",
                          cfg->shard,
                          stop && atomic_load(stop) ? "was stopped" : "passed its deadline");
    if (n == 0 && answered)
        snprintf(why + len, len < why_cap ? why_cap - len : 0,
                 "%s%u holder(s) answered; none has a complete checkpoint for us", len ? "; " : "",
                 answered);
    return n;
}
