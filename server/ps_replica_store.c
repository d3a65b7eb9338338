/* ps_replica_store.c - see ps_replica_store.h. Two lists under one lock:
 * queued (loop -> thread) and done (thread -> loop); the thread wakes the
 * loop with one byte on an inproc PAIR. */
#include "ps_replica_store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "ps_checkpoint.h"
#include "ps_job.h"
#include "ps_log.h"

typedef struct item {
    struct item *next;
    zmq_msg_t identity, values;
    char dir[1100], job[PS_JOB_NAME_MAX];
    uint64_t request_id, announced_bytes;
    uint32_t owner, crc;
    int64_t clock;
    int status;
    char message[600];
} item_t;

struct psrv_replica_store {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake_thread;
    item_t *queued, *queued_tail, *done, *done_tail;
    size_t queued_bytes, max_bytes;
    int keep;
    bool stop;
    void *wake_loop, *wake_thread_side; /* PAIR ends: the loop's, the thread's */
};

static void push(item_t **head, item_t **tail, item_t *it)
{
    it->next = NULL;
    if (*tail)
        (*tail)->next = it;
    else
        *head = it;
    *tail = it;
}

static item_t *pop(item_t **head, item_t **tail)
{
    item_t *it = *head;
    if (it && !(*head = it->next))
        *tail = NULL;
    return it;
}

/* The thread's work on one replica: the bytes' CRC, then the file. */
static void store_one(psrv_replica_store_t *s, item_t *it)
{
    const void *bytes = zmq_msg_data(&it->values);
    size_t len = zmq_msg_size(&it->values);
    uint32_t crc = (uint32_t)crc32(crc32(0, NULL, 0), bytes, (uInt)len);
    if (crc != it->crc || len != it->announced_bytes) {
        it->status = PS_EFORMAT;
        snprintf(it->message, sizeof it->message,
                 "job '%s' clock %lld arrived with CRC %08x (%zu bytes), sent as %08x (%llu "
                 "bytes)",
                 it->job, (long long)it->clock, crc, len, it->crc,
                 (unsigned long long)it->announced_bytes);
        return;
    }
    ps_errbuf_t err;
    it->status =
        ps_ckpt_store_file(it->dir, it->job, it->clock, it->owner, bytes, len, s->keep, &err);
    snprintf(it->message, sizeof it->message, "%s", it->status == PS_OK ? "" : err.msg);
}

static void *store_main(void *arg)
{
    psrv_replica_store_t *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->stop && !s->queued)
            pthread_cond_wait(&s->wake_thread, &s->lock);
        if (s->stop)
            break;
        item_t *it = pop(&s->queued, &s->queued_tail);
        pthread_mutex_unlock(&s->lock);
        store_one(s, it);
        size_t len = zmq_msg_size(&it->values);
        zmq_msg_close(&it->values);
        zmq_msg_init(&it->values);
        pthread_mutex_lock(&s->lock);
        s->queued_bytes -= len;
        push(&s->done, &s->done_tail, it);
        zmq_send(s->wake_thread_side, "", 0, ZMQ_DONTWAIT);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

psrv_replica_store_t *psrv_replica_store_start(void *ctx, size_t max_bytes, int keep)
{
    psrv_replica_store_t *s = ps_xcalloc(1, sizeof *s);
    s->max_bytes = max_bytes;
    s->keep = keep;
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://ps-replica-store-%p", (void *)s);
    s->wake_loop = zmq_socket(ctx, ZMQ_PAIR);
    s->wake_thread_side = zmq_socket(ctx, ZMQ_PAIR);
    int zero = 0;
    zmq_setsockopt(s->wake_loop, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s->wake_thread_side, ZMQ_LINGER, &zero, sizeof zero);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake_thread, NULL);
    if (zmq_bind(s->wake_loop, ep) != 0 || zmq_connect(s->wake_thread_side, ep) != 0 ||
        pthread_create(&s->thread, NULL, store_main, s) != 0) {
        zmq_close(s->wake_loop);
        zmq_close(s->wake_thread_side);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->wake_thread);
        free(s);
        return NULL;
    }
    return s;
}

void *psrv_replica_store_wake(psrv_replica_store_t *s)
{
    return s->wake_loop;
}

int psrv_replica_store_put(psrv_replica_store_t *s, const zmq_msg_t *identity, const char *dir,
                           const Ps__Header *h, zmq_msg_t *values)
{
    size_t len = zmq_msg_size(values);
    pthread_mutex_lock(&s->lock);
    bool full = s->queued && s->queued_bytes + len > s->max_bytes;
    pthread_mutex_unlock(&s->lock);
    if (full)
        return PS_EAGAIN;
    item_t *it = ps_xcalloc(1, sizeof *it);
    zmq_msg_init(&it->identity);
    zmq_msg_copy(&it->identity, (zmq_msg_t *)identity);
    zmq_msg_init(&it->values);
    zmq_msg_move(&it->values, values);
    snprintf(it->dir, sizeof it->dir, "%s", dir);
    snprintf(it->job, sizeof it->job, "%s", h->job);
    it->request_id = h->request_id;
    it->announced_bytes = h->n_elems;
    it->owner = h->shard;
    it->crc = h->crc;
    it->clock = h->clock;
    pthread_mutex_lock(&s->lock);
    s->queued_bytes += len;
    push(&s->queued, &s->queued_tail, it);
    pthread_cond_signal(&s->wake_thread);
    pthread_mutex_unlock(&s->lock);
    return PS_OK;
}

bool psrv_replica_store_next(psrv_replica_store_t *s, psrv_replica_done_t *out)
{
    char drain[8];
    while (zmq_recv(s->wake_loop, drain, sizeof drain, ZMQ_DONTWAIT) >= 0)
        ;
    pthread_mutex_lock(&s->lock);
    item_t *it = pop(&s->done, &s->done_tail);
    pthread_mutex_unlock(&s->lock);
    if (!it)
        return false;
    zmq_msg_init(&out->identity);
    zmq_msg_move(&out->identity, &it->identity);
    out->request_id = it->request_id;
    out->owner = it->owner;
    out->clock = it->clock;
    out->bytes = (size_t)it->announced_bytes;
    out->status = it->status;
    snprintf(out->message, sizeof out->message, "%s", it->message);
    zmq_msg_close(&it->values);
    free(it);
    return true;
}

static void free_list(item_t *it)
{
    while (it) {
        item_t *next = it->next;
        zmq_msg_close(&it->identity);
        zmq_msg_close(&it->values);
        free(it);
        it = next;
    }
}

void psrv_replica_store_stop(psrv_replica_store_t **sp)
{
    psrv_replica_store_t *s = *sp;
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    pthread_cond_signal(&s->wake_thread);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    free_list(s->queued);
    free_list(s->done);
    zmq_close(s->wake_loop);
    zmq_close(s->wake_thread_side);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake_thread);
    free(s);
    *sp = NULL;
}
