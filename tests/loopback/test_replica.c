/* test_replica.c - replicated checkpoints over real sockets on 127.0.0.1:
 * a holder (the server core on a thread) refuses a replica whose bytes
 * fail their CRC or do not read back as a checkpoint, stores a good one,
 * lists and serves it, and reports a full disk; the fetch of a new machine
 * asks again for a file that arrived with a bad CRC; the sender sends a
 * refused file again, and its offers never wait for a holder that does not
 * answer (bounded bytes queued). Fake holders are ROUTER sockets of the
 * test. Every wait has a deadline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zmq.h>

#include "ps_checkpoint.h"
#include "ps_log.h"
#include "ps_replica.h"
#include "ps_test_server.h"
#include "ps_time.h"
#include "ps_wire.h"

static char root[] = "/tmp/ps_test_replica_XXXXXX";

static int setup(void **state)
{
    (void)state;
    ps_log_init("test", PS_LOG_ERROR);
    return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "%s/small", root);
    umount(cmd); /* if a failed test left it mounted */
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    return system(cmd) == 0 ? 0 : -1;
}

/* A checkpoint of job "j" shard `shard` of 2 at clock, n floats, written
 * under dir; returns its bytes (caller frees) and length. */
static void *make_file(const char *dir, uint32_t shard, int64_t clock, uint64_t n, size_t *len)
{
    uint64_t shape[1] = {n};
    float *init = calloc(n, sizeof(float));
    for (uint64_t i = 0; i < n; i++)
        init[i] = (float)i * 0.5f + (float)clock;
    ps_table_params_t p = {.name = "w",
                           .id = 0,
                           .n_total = n,
                           .shape = shape,
                           .ndim = 1,
                           .offset = 0,
                           .len = n,
                           .world = 2,
                           .max_staleness = 0};
    p.optim = (ps_optim_spec_t){.kind = PS_OPTIM_SGD, .lr = 0.1};
    ps_errbuf_t err;
    ps_table_t *t = ps_table_new(&p, init, &err);
    free(init);
    assert_non_null(t);
    ps_ckpt_job_t job = {.job = "j", .world = 2, .shard = shard, .n_shards = 2, .clock = clock};
    uint32_t ids[1] = {0};
    assert_int_equal(ps_ckpt_write(dir, &job, &t, ids, 1, NULL, 3, &err), PS_OK);
    ps_table_destroy(&t);
    void *bytes;
    assert_int_equal(ps_ckpt_read_file(dir, "j", clock, &bytes, len, &err), PS_OK);
    return bytes;
}

static uint32_t crc_of(const void *b, size_t n)
{
    return (uint32_t)crc32(crc32(0, NULL, 0), b, (uInt)n);
}

/* One request to the server at endpoint; returns the reply's status, its
 * message in msg and its values frame (if any) in *values. */
static int ask(void *ctx, const char *endpoint, Ps__Header *h, const void *bytes, size_t len,
               char *msg, size_t cap, zmq_msg_t *values)
{
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_connect(s, endpoint), 0);
    h->version = PS_PROTOCOL_VERSION;
    assert_true(ps_wire_send_header(s, h, bytes ? ZMQ_SNDMORE : 0) > 0);
    if (bytes)
        assert_true(ps_wire_send_copy(s, bytes, len, 0) >= 0);
    zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
    assert_int_equal(zmq_poll(&it, 1, 10000), 1); /* the holder answers within 10 s */
    ps_wire_msg_t m;
    assert_int_equal(ps_wire_recv(s, &m, 0), PS_OK);
    Ps__Header *r = ps_wire_unpack_header(&m.parts[0]);
    assert_non_null(r);
    int status = r->status;
    snprintf(msg, cap, "%s", r->message ? r->message : "");
    if (values && m.n_parts == 2) {
        zmq_msg_init(values);
        zmq_msg_copy(values, &m.parts[1]);
        h->crc = r->crc;
    }
    ps__header__free_unpacked(r, NULL);
    ps_wire_msg_close(&m);
    zmq_close(s);
    return status;
}

static Ps__Header put_header(int64_t clock, size_t len, uint32_t crc)
{
    Ps__Header h = PS__HEADER__INIT;
    h.op = PS__OP__REPLICA_PUT;
    h.job = "j";
    h.shard = 1;
    h.n_shards = 2;
    h.clock = clock;
    h.n_elems = len;
    h.crc = crc;
    return h;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void start_holder(ps_test_server_t *ts, const char *state_dir)
{
    ps_server_config_t cfg;
    ps_test_server_config(&cfg, 0, 2);
    snprintf(cfg.state_dir, sizeof cfg.state_dir, "%s", state_dir);
    /* a holder has peers; shard 1's port takes no connection: the start's
     * fetch gives up on it after replica_timeout_ms */
    snprintf(cfg.peers, sizeof cfg.peers, "tcp://127.0.0.1:1,tcp://127.0.0.1:1");
    cfg.replica_timeout_ms = 200;
    assert_int_equal(ps_test_server_start_config(ts, &cfg), 0);
}

static void test_holder_refuses_bad_crc_stores_lists_and_serves(void **state)
{
    (void)state;
    char src[300], held[300], path[600], msg[600];
    snprintf(src, sizeof src, "%s/src1", root);
    snprintf(held, sizeof held, "%s/holder", root);
    size_t len;
    char *bytes = make_file(src, 1, 20, 1000, &len);
    ps_test_server_t ts;
    start_holder(&ts, held);
    void *ctx = zmq_ctx_new();
    const char *ep = ps_server_endpoint(ts.srv);
    snprintf(path, sizeof path, "%s/.replicas/shard-1/j/ckpt-%012d.psc", held, 20);

    Ps__Header h = put_header(20, len, crc_of(bytes, len) ^ 1); /* damaged on the way */
    assert_int_equal(ask(ctx, ep, &h, bytes, len, msg, sizeof msg, NULL), PS_EFORMAT);
    assert_non_null(strstr(msg, "CRC"));
    assert_false(exists(path));

    bytes[len - 1] ^= 0x40; /* damaged before the CRC was taken: the file itself is bad */
    h = put_header(20, len, crc_of(bytes, len));
    assert_int_equal(ask(ctx, ep, &h, bytes, len, msg, sizeof msg, NULL), PS_EFORMAT);
    assert_false(exists(path));
    bytes[len - 1] ^= 0x40;

    h = put_header(20, len, crc_of(bytes, len));
    h.job = "../x"; /* a name from outside never becomes a path */
    assert_int_equal(ask(ctx, ep, &h, bytes, len, msg, sizeof msg, NULL), PS_EINVAL);

    h = put_header(20, len, crc_of(bytes, len));
    assert_int_equal(ask(ctx, ep, &h, bytes, len, msg, sizeof msg, NULL), PS_OK);
    assert_true(exists(path));

    Ps__Header l = PS__HEADER__INIT;
    l.op = PS__OP__REPLICA_LIST;
    l.shard = 1;
    l.n_shards = 2;
    assert_int_equal(ask(ctx, ep, &l, NULL, 0, msg, sizeof msg, NULL), PS_OK);
    char want[64];
    snprintf(want, sizeof want, "j 20 %zu 0 0\n", len); /* JOB CLOCK BYTES JOB_ID GENERATION */
    assert_string_equal(msg, want);

    Ps__Header g = PS__HEADER__INIT;
    g.op = PS__OP__REPLICA_GET;
    g.job = "j";
    g.shard = 1;
    g.n_shards = 2;
    g.clock = 20;
    zmq_msg_t got;
    assert_int_equal(ask(ctx, ep, &g, NULL, 0, msg, sizeof msg, &got), PS_OK);
    assert_int_equal(zmq_msg_size(&got), len);
    assert_memory_equal(zmq_msg_data(&got), bytes, len);
    assert_int_equal(g.crc, crc_of(bytes, len));
    zmq_msg_close(&got);

    g.clock = 30; /* not held */
    assert_int_equal(ask(ctx, ep, &g, NULL, 0, msg, sizeof msg, NULL), PS_ENOCKPT);
    zmq_ctx_term(ctx);
    ps_test_server_stop(&ts);
    free(bytes);
}

/* A holder whose disk is full says so, naming the file and the cause. */
static void test_holder_reports_full_disk(void **state)
{
    (void)state;
    char src[300], held[300], msg[600];
    snprintf(src, sizeof src, "%s/src2", root);
    snprintf(held, sizeof held, "%s/small", root);
    mkdir(held, 0700);
    if (mount("tmpfs", held, "tmpfs", 0, "size=64k") != 0)
        skip(); /* not root, or no tmpfs: nothing to fill here */
    size_t len;
    void *bytes = make_file(src, 1, 10, 40000, &len); /* 160 KB of floats and state */
    ps_test_server_t ts;
    start_holder(&ts, held);
    void *ctx = zmq_ctx_new();
    Ps__Header h = put_header(10, len, crc_of(bytes, len));
    int rc = ask(ctx, ps_server_endpoint(ts.srv), &h, bytes, len, msg, sizeof msg, NULL);
    zmq_ctx_term(ctx);
    ps_test_server_stop(&ts);
    umount(held);
    free(bytes);
    assert_int_equal(rc, PS_EIO);
    assert_non_null(strstr(msg, "No space left on device"));
    assert_non_null(strstr(msg, "holder shard 0"));
}

/* ---- fake holders for the fetch and the sender ---- */

typedef struct {
    void *ctx, *sock;
    char endpoint[128];
    pthread_t thread;
    atomic_int stop;
    atomic_int gets, puts;
    int bad_gets;     /* GET replies whose CRC field is wrong, first */
    int refuse_puts;  /* PUTs refused with EFORMAT, first */
    int silent_drops; /* DROPs left unanswered, first */
    atomic_int drops;
    bool silent;       /* answers no PUT */
    bool silent_lists; /* answers no LIST */
    int delay_ms;      /* before each answer */
    const char *list;  /* the LIST reply; NULL: "j 20\n" */
    const void *file;
    size_t file_len;
} fake_t;

static void fake_reply(fake_t *f, zmq_msg_t *id, Ps__Header *r, const void *bytes, size_t len)
{
    zmq_msg_t copy;
    zmq_msg_init(&copy);
    zmq_msg_copy(&copy, id);
    zmq_msg_send(&copy, f->sock, ZMQ_SNDMORE);
    ps_wire_send_header(f->sock, r, bytes ? ZMQ_SNDMORE : 0);
    if (bytes)
        ps_wire_send_copy(f->sock, bytes, len, 0);
}

static void fake_answer(fake_t *f, ps_wire_msg_t *m)
{
    if (f->delay_ms)
        usleep((useconds_t)f->delay_ms * 1000);
    Ps__Header *h = ps_wire_unpack_header(&m->parts[1]);
    Ps__Header r = PS__HEADER__INIT;
    r.op = h->op;
    r.request_id = h->request_id;
    if (h->op == PS__OP__REPLICA_LIST) {
        r.message = f->list ? (char *)f->list : "j 20\n";
        if (!f->silent_lists)
            fake_reply(f, &m->parts[0], &r, NULL, 0);
    } else if (h->op == PS__OP__REPLICA_GET) {
        int n = atomic_fetch_add(&f->gets, 1);
        r.crc = crc_of(f->file, f->file_len) ^ (n < f->bad_gets ? 0x10u : 0);
        fake_reply(f, &m->parts[0], &r, f->file, f->file_len);
    } else if (h->op == PS__OP__REPLICA_PUT) {
        int n = atomic_fetch_add(&f->puts, 1);
        if (n < f->refuse_puts) {
            r.status = PS_EFORMAT;
            r.message = "arrived with another CRC";
        }
        if (!f->silent)
            fake_reply(f, &m->parts[0], &r, NULL, 0);
    } else if (h->op == PS__OP__REPLICA_DROP) {
        if (atomic_fetch_add(&f->drops, 1) >= f->silent_drops)
            fake_reply(f, &m->parts[0], &r, NULL, 0);
    }
    ps__header__free_unpacked(h, NULL);
}

static void *fake_main(void *arg)
{
    fake_t *f = arg;
    while (!atomic_load(&f->stop)) {
        zmq_pollitem_t it = {f->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 20) <= 0)
            continue;
        ps_wire_msg_t m;
        if (ps_wire_recv(f->sock, &m, 0) == PS_OK && m.n_parts >= 2)
            fake_answer(f, &m);
        ps_wire_msg_close(&m);
    }
    return NULL;
}

static void fake_start(fake_t *f)
{
    f->ctx = zmq_ctx_new();
    f->sock = zmq_socket(f->ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(f->sock, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_bind(f->sock, "tcp://127.0.0.1:*"), 0);
    size_t n = sizeof f->endpoint;
    zmq_getsockopt(f->sock, ZMQ_LAST_ENDPOINT, f->endpoint, &n);
    atomic_init(&f->stop, 0);
    atomic_init(&f->gets, 0);
    atomic_init(&f->puts, 0);
    atomic_init(&f->drops, 0);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_stop(fake_t *f)
{
    atomic_store(&f->stop, 1);
    pthread_join(f->thread, NULL);
    zmq_close(f->sock);
    zmq_ctx_term(f->ctx);
}

/* Shard `shard` of 2, replicating to (or fetching from) the fake. */
static psrv_replica_cfg_t cfg_for(const char *state_dir, uint32_t shard, const fake_t *f,
                                  int64_t timeout_ms)
{
    psrv_replica_cfg_t c = {.shard = shard,
                            .n_shards = 2,
                            .n_holders = 1,
                            .keep = 3,
                            .timeout_ms = timeout_ms,
                            .max_inflight_bytes = 8u << 20};
    c.holder[0] = (shard + 1) % 2;
    snprintf(c.state_dir, sizeof c.state_dir, "%s", state_dir);
    snprintf(c.endpoint[0], sizeof c.endpoint[0], "%s", f->endpoint);
    return c;
}

static void test_fetch_asks_again_for_a_file_with_a_bad_crc(void **state)
{
    (void)state;
    char src[300], fresh[300], path[600], why[800];
    snprintf(src, sizeof src, "%s/src3", root);
    snprintf(fresh, sizeof fresh, "%s/fresh", root);
    mkdir(fresh, 0700);
    size_t len;
    void *bytes = make_file(src, 1, 20, 500, &len);
    fake_t f = {.bad_gets = 2, .file = bytes, .file_len = len};
    fake_start(&f);
    psrv_replica_cfg_t c = cfg_for(fresh, 1, &f, 5000);
    ps_errbuf_t err;
    void *ctx = zmq_ctx_new();
    assert_int_equal(psrv_replica_fetch(ctx, &c, NULL, why, sizeof why, &err), 1);
    zmq_ctx_term(ctx);
    fake_stop(&f);
    assert_int_equal(atomic_load(&f.gets), 3); /* two bad copies refused, the third stored */
    snprintf(path, sizeof path, "%s/j/ckpt-%012d.psc", fresh, 20);
    assert_true(exists(path));
    ps_ckpt_t ck;
    assert_int_equal(ps_ckpt_load(fresh, "j", 20, &ck, &err), PS_OK);
    assert_int_equal(ck.job.shard, 1);
    ps_ckpt_free(&ck);
    free(bytes);
}

/* Polls cond until it holds or deadline_ms passes. */
#define WAIT_UNTIL(cond, deadline_ms)                  \
    do {                                               \
        int64_t until_ = ps_time_ms() + (deadline_ms); \
        while (!(cond) && ps_time_ms() < until_)       \
            usleep(5000);                              \
    } while (0)

static void test_sender_sends_a_refused_file_again(void **state)
{
    (void)state;
    char own[300];
    snprintf(own, sizeof own, "%s/own4", root);
    size_t len;
    free(make_file(own, 0, 20, 500, &len));
    uint32_t crc = 0, base_crc;
    int64_t base;
    assert_true(ps_ckpt_file_head(own, "j", 20, &crc, &base, &base_crc));
    fake_t f = {.refuse_puts = 1};
    fake_start(&f);
    psrv_replica_cfg_t c = cfg_for(own, 0, &f, 5000);
    void *ctx = zmq_ctx_new();
    psrv_replicator_t *r = psrv_replicator_start(ctx, &c);
    assert_false(psrv_replicator_acked(r, 0, "j", 20, crc));
    psrv_replicator_offer(r, "j", 7, 20);
    WAIT_UNTIL(psrv_replicator_acked(r, 0, "j", 20, crc), 10000);
    assert_true(psrv_replicator_acked(r, 0, "j", 20, crc));
    assert_int_equal(atomic_load(&f.puts), 2);
    psrv_replica_status_t st;
    psrv_replicator_status(r, &st);
    assert_int_equal(st.files_refused, 1);
    assert_int_equal(st.files_acked, 1);
    psrv_replicator_stop(&r);
    zmq_ctx_term(ctx);
    fake_stop(&f);
}

/* A holder that takes the bytes and never answers (slow or hung): offers
 * return at once, the queue stays within its bound by skipping the oldest
 * files, and stopping does not wait out replica_timeout_ms. */
static void test_offers_never_wait_for_a_silent_holder(void **state)
{
    (void)state;
    char own[300];
    snprintf(own, sizeof own, "%s/own5", root);
    size_t len;
    for (int64_t clock = 10; clock <= 80; clock += 10)
        free(make_file(own, 0, clock, 100000, &len)); /* ~400 KB each; keep 3 */
    fake_t f = {.silent = true};
    fake_start(&f);
    psrv_replica_cfg_t c = cfg_for(own, 0, &f, 600000); /* 10 minutes */
    c.max_inflight_bytes = 2 * len;
    void *ctx = zmq_ctx_new();
    psrv_replicator_t *r = psrv_replicator_start(ctx, &c);
    psrv_replicator_offer(r, "j", 7, 60);
    WAIT_UNTIL(atomic_load(&f.puts) >= 1, 10000); /* the holder has it, and says nothing */
    assert_true(atomic_load(&f.puts) >= 1);
    int64_t t0 = ps_time_ms();
    for (int i = 0; i < 50; i++)
        psrv_replicator_offer(r, "j", 7, i % 2 ? 70 : 80);
    int64_t offers_ms = ps_time_ms() - t0;
    psrv_replica_status_t st;
    psrv_replicator_status(r, &st);
    t0 = ps_time_ms();
    psrv_replicator_stop(&r);
    int64_t stop_ms = ps_time_ms() - t0;
    zmq_ctx_term(ctx);
    fake_stop(&f);
    assert_true(offers_ms < 1000); /* 50 offers while the holder is silent */
    assert_true(st.files_skipped >= 48);
    assert_true(st.bytes_queued <= 3 * len); /* the bound, plus the newest file */
    assert_int_equal(st.files_acked, 0);
    assert_true(stop_ms < 2000);
}

/* A holder of owner 0's replicas (shard 1 of 2). */
static void start_holder_of_0(ps_test_server_t *ts, const char *state_dir)
{
    ps_server_config_t cfg;
    ps_test_server_config(&cfg, 1, 2);
    snprintf(cfg.state_dir, sizeof cfg.state_dir, "%s", state_dir);
    snprintf(cfg.peers, sizeof cfg.peers, "tcp://127.0.0.1:1,tcp://127.0.0.1:1");
    cfg.replica_timeout_ms = 200;
    assert_int_equal(ps_test_server_start_config(ts, &cfg), 0);
}

static void held_path(char *out, size_t cap, const char *held, uint32_t owner, int clock)
{
    snprintf(out, cap, "%s/.replicas/shard-%u/j/ckpt-%012d.psc", held, owner, clock);
}

/* The holder's side of a rollback: REPLICA_DROP with a generation drops
 * the replicas after its clock and keeps the rest; a DROP of an ended job
 * must name its id (0 would be every id's). */
static void test_holder_drops_what_a_rollback_undid(void **state)
{
    (void)state;
    char own[300], held[300], p110[700], p120[700], msg[600];
    snprintf(own, sizeof own, "%s/own6", root);
    snprintf(held, sizeof held, "%s/held6", root);
    ps_test_server_t ts;
    start_holder_of_0(&ts, held);
    void *ctx = zmq_ctx_new();
    const char *ep = ps_server_endpoint(ts.srv);
    for (int64_t clock = 100; clock <= 120; clock += 10) {
        size_t len;
        void *b = make_file(own, 0, clock, 100, &len);
        Ps__Header h = put_header(clock, len, crc_of(b, len));
        h.shard = 0;
        assert_int_equal(ask(ctx, ep, &h, b, len, msg, sizeof msg, NULL), PS_OK);
        free(b);
    }
    held_path(p110, sizeof p110, held, 0, 110);
    held_path(p120, sizeof p120, held, 0, 120);
    assert_true(exists(p120));
    Ps__Header d = PS__HEADER__INIT;
    d.op = PS__OP__REPLICA_DROP;
    d.job = "j";
    d.shard = 0;
    d.n_shards = 2;
    assert_int_equal(ask(ctx, ep, &d, NULL, 0, msg, sizeof msg, NULL), PS_EINVAL);
    assert_non_null(strstr(msg, "job_id"));
    assert_true(exists(p110)); /* the id-0 DROP deleted nothing */
    d.generation = 1;
    d.clock = 110;
    assert_int_equal(ask(ctx, ep, &d, NULL, 0, msg, sizeof msg, NULL), PS_OK);
    assert_false(exists(p120));
    assert_true(exists(p110));
    zmq_ctx_term(ctx);
    ps_test_server_stop(&ts);
}

/* The sender's side: a rollback offered after files 100..120 were
 * acknowledged reaches the holder in order (120 goes), and the 120 of the
 * new history written after it is sent again (its old acknowledgement is
 * forgotten) and stays. */
static void test_rollback_reaches_the_holders_in_order(void **state)
{
    (void)state;
    char own[300], held[300], p110[700], p120[700];
    snprintf(own, sizeof own, "%s/own7", root);
    snprintf(held, sizeof held, "%s/held7", root);
    ps_test_server_t ts;
    start_holder_of_0(&ts, held);
    size_t len;
    for (int64_t clock = 100; clock <= 120; clock += 10)
        free(make_file(own, 0, clock, 100, &len));
    fake_t none = {0};
    snprintf(none.endpoint, sizeof none.endpoint, "%s", ps_server_endpoint(ts.srv));
    psrv_replica_cfg_t c = cfg_for(own, 0, &none, 5000);
    void *ctx = zmq_ctx_new();
    psrv_replicator_t *r = psrv_replicator_start(ctx, &c);
    uint32_t crc120, base_crc;
    int64_t base;
    assert_true(ps_ckpt_file_head(own, "j", 120, &crc120, &base, &base_crc));
    for (int64_t clock = 100; clock <= 120; clock += 10)
        psrv_replicator_offer(r, "j", 0, clock);
    WAIT_UNTIL(psrv_replicator_acked(r, 0, "j", 120, crc120), 10000);
    assert_true(psrv_replicator_acked(r, 0, "j", 120, crc120));
    held_path(p110, sizeof p110, held, 0, 110);
    held_path(p120, sizeof p120, held, 0, 120);
    assert_true(exists(p120));

    /* the rollback, as psrv_snapshot_rollback does it, then the new 120 */
    ps_ckpt_remove_after(own, "j", 110);
    psrv_replicator_offer_rollback(r, "j", 0, 110, 1);
    psrv_replica_status_t st;
    WAIT_UNTIL((psrv_replicator_status(r, &st), st.drops_acked == 1), 10000);
    assert_int_equal(st.drops_acked, 1);
    assert_false(exists(p120)); /* gone with the rollback */
    assert_true(exists(p110));
    assert_false(psrv_replicator_acked(r, 0, "j", 120, crc120));
    free(make_file(own, 0, 120, 100, &len));
    psrv_replicator_offer(r, "j", 0, 120);
    WAIT_UNTIL(psrv_replicator_acked(r, 0, "j", 120, crc120), 10000);
    assert_true(psrv_replicator_acked(r, 0, "j", 120, crc120));
    assert_true(exists(p120));
    psrv_replicator_stop(&r);
    zmq_ctx_term(ctx);
    ps_test_server_stop(&ts);
}

/* A DROP whose answer is lost is sent again until acknowledged. */
static void test_a_lost_drop_is_sent_again(void **state)
{
    (void)state;
    char own[300];
    snprintf(own, sizeof own, "%s/own8", root);
    mkdir(own, 0700);
    fake_t f = {.silent_drops = 2};
    fake_start(&f);
    psrv_replica_cfg_t c = cfg_for(own, 0, &f, 200);
    void *ctx = zmq_ctx_new();
    psrv_replicator_t *r = psrv_replicator_start(ctx, &c);
    psrv_replicator_offer_drop(r, "j", 7);
    psrv_replica_status_t st;
    WAIT_UNTIL((psrv_replicator_status(r, &st), st.drops_acked == 1), 15000);
    psrv_replicator_stop(&r);
    zmq_ctx_term(ctx);
    fake_stop(&f);
    assert_int_equal(st.drops_acked, 1);
    assert_int_equal(st.drops_pending, 0);
    assert_int_equal(atomic_load(&f.drops), 3); /* two unanswered, the third acknowledged */
}

/* Replica ops only where replication is configured, a PUT only from an
 * owner this shard holds for (owner s is held by s + 1 ... s + R). */
static void test_replica_ops_need_peers_and_a_held_owner(void **state)
{
    (void)state;
    char src[300], held[300], msg[600];
    snprintf(src, sizeof src, "%s/src9", root);
    snprintf(held, sizeof held, "%s/held9", root);
    size_t len;
    void *b = make_file(src, 1, 20, 100, &len);
    void *ctx = zmq_ctx_new();

    ps_test_server_t lone; /* no peers: replicates nothing, holds nothing */
    ps_server_config_t cfg;
    ps_test_server_config(&cfg, 0, 2);
    snprintf(cfg.state_dir, sizeof cfg.state_dir, "%s", held);
    assert_int_equal(ps_test_server_start_config(&lone, &cfg), 0);
    Ps__Header h = put_header(20, len, crc_of(b, len));
    assert_int_equal(ask(ctx, ps_server_endpoint(lone.srv), &h, b, len, msg, sizeof msg, NULL),
                     PS_EPERM);
    assert_non_null(strstr(msg, "no peers"));
    Ps__Header d = PS__HEADER__INIT;
    d.op = PS__OP__REPLICA_DROP;
    d.job = "j";
    d.shard = 1;
    d.n_shards = 2;
    d.job_id = 7;
    assert_int_equal(ask(ctx, ps_server_endpoint(lone.srv), &d, NULL, 0, msg, sizeof msg, NULL),
                     PS_EPERM);
    ps_test_server_stop(&lone);

    ps_test_server_t ts; /* shard 2 of 3, R = 1: holds for shard 1 only */
    ps_test_server_config(&cfg, 2, 3);
    snprintf(cfg.state_dir, sizeof cfg.state_dir, "%s", held);
    snprintf(cfg.peers, sizeof cfg.peers, "tcp://127.0.0.1:1,tcp://127.0.0.1:1,tcp://127.0.0.1:1");
    cfg.replica_timeout_ms = 200;
    assert_int_equal(ps_test_server_start_config(&ts, &cfg), 0);
    void *b0 = make_file(src, 0, 30, 100, &len); /* make_file's files say "of 2": */
    h = put_header(30, len, crc_of(b0, len));
    h.shard = 0;
    h.n_shards = 3;
    assert_int_equal(ask(ctx, ps_server_endpoint(ts.srv), &h, b0, len, msg, sizeof msg, NULL),
                     PS_EPERM);
    assert_non_null(strstr(msg, "not one of its holders"));
    zmq_ctx_term(ctx);
    ps_test_server_stop(&ts);
    free(b0);
    free(b);
}

/* A checkpoint of job "j" of shard `shard` of n_shards at clock (id 9,
 * generation gen; its values say clock and gen), written under dir;
 * returns its bytes (caller frees). */
static void *make_ckpt(const char *dir, uint32_t shard, uint32_t n_shards, int64_t clock,
                       uint64_t gen, size_t *len)
{
    uint64_t n = 100, shape[1] = {n};
    float init[100];
    for (uint64_t i = 0; i < n; i++)
        init[i] = (float)clock + 1000.0f * (float)gen;
    ps_table_params_t p = {
        .name = "w", .id = 0, .n_total = n, .shape = shape, .ndim = 1, .len = n, .world = 2};
    p.optim = (ps_optim_spec_t){.kind = PS_OPTIM_SGD, .lr = 0.1};
    ps_errbuf_t err;
    ps_table_t *t = ps_table_new(&p, init, &err);
    assert_non_null(t);
    ps_ckpt_job_t job = {.job = "j",
                         .world = 2,
                         .generation = gen,
                         .shard = shard,
                         .n_shards = n_shards,
                         .clock = clock,
                         .id = 9};
    uint32_t ids[1] = {0};
    assert_int_equal(ps_ckpt_write(dir, &job, &t, ids, 1, NULL, 10, &err), PS_OK);
    ps_table_destroy(&t);
    void *bytes;
    assert_int_equal(ps_ckpt_read_file(dir, "j", clock, &bytes, len, &err), PS_OK);
    return bytes;
}

/* Shard `shard` of 3 holding for both others (checkpoint_replicas 2). */
static void start_holder_of_3(ps_test_server_t *ts, const char *state_dir, int shard)
{
    ps_server_config_t cfg;
    ps_test_server_config(&cfg, shard, 3);
    snprintf(cfg.state_dir, sizeof cfg.state_dir, "%s", state_dir);
    snprintf(cfg.peers, sizeof cfg.peers, "tcp://127.0.0.1:1,tcp://127.0.0.1:1,tcp://127.0.0.1:1");
    cfg.checkpoint_replicas = 2;
    cfg.replica_timeout_ms = 200;
    assert_int_equal(ps_test_server_start_config(ts, &cfg), 0);
}

/* Stores owner 0's checkpoint of clock (generation gen) on the holder. */
static void put_ckpt(void *ctx, const char *ep, const char *src, int64_t clock, uint64_t gen)
{
    size_t len;
    void *b = make_ckpt(src, 0, 3, clock, gen, &len);
    Ps__Header h = put_header(clock, len, crc_of(b, len));
    h.shard = 0;
    h.n_shards = 3;
    h.job_id = 9;
    char msg[600];
    assert_int_equal(ask(ctx, ep, &h, b, len, msg, sizeof msg, NULL), PS_OK);
    free(b);
}

static psrv_replica_cfg_t cfg_of_3(const char *state_dir, const char *ep1, const char *ep2)
{
    psrv_replica_cfg_t c = {
        .shard = 0, .n_shards = 3, .n_holders = 2, .keep = 10, .timeout_ms = 2000};
    snprintf(c.state_dir, sizeof c.state_dir, "%s", state_dir);
    c.holder[0] = 1;
    c.holder[1] = 2;
    snprintf(c.endpoint[0], sizeof c.endpoint[0], "%s", ep1);
    snprintf(c.endpoint[1], sizeof c.endpoint[1], "%s", ep2);
    return c;
}

static void fresh_path(char *out, size_t cap, const char *fresh, int clock)
{
    snprintf(out, cap, "%s/j/ckpt-%012d.psc", fresh, clock);
}

/* The fetch's choices among two holders of owner 0 (of 3): `a` and `b`
 * list what each holds (clock, generation pairs, -1 ends), `rot` names a
 * clock whose file rots on holder 1's disk (-1: none). */
typedef struct {
    int64_t a[4][2], b[4][2];
    int64_t rot;
} layout_t;

static int fetch_from_layout(const char *name, const layout_t *l, char *fresh, size_t cap)
{
    char src[300], h1[300], h2[300], path[700], why[800];
    snprintf(src, sizeof src, "%s/%s-src", root, name);
    snprintf(h1, sizeof h1, "%s/%s-h1", root, name);
    snprintf(h2, sizeof h2, "%s/%s-h2", root, name);
    snprintf(fresh, cap, "%s/%s-fresh", root, name);
    mkdir(fresh, 0750);
    ps_test_server_t t1, t2;
    start_holder_of_3(&t1, h1, 1);
    start_holder_of_3(&t2, h2, 2);
    void *ctx = zmq_ctx_new();
    for (int k = 0; l->a[k][0] >= 0; k++)
        put_ckpt(ctx, ps_server_endpoint(t1.srv), src, l->a[k][0], (uint64_t)l->a[k][1]);
    for (int k = 0; l->b[k][0] >= 0; k++)
        put_ckpt(ctx, ps_server_endpoint(t2.srv), src, l->b[k][0], (uint64_t)l->b[k][1]);
    if (l->rot >= 0) {
        held_path(path, sizeof path, h1, 0, (int)l->rot);
        FILE *f = fopen(path, "r+b");
        assert_non_null(f);
        fseek(f, -3, SEEK_END);
        fputc('X', f);
        fclose(f);
    }
    psrv_replica_cfg_t c = cfg_of_3(fresh, ps_server_endpoint(t1.srv), ps_server_endpoint(t2.srv));
    ps_errbuf_t err;
    int n = psrv_replica_fetch(ctx, &c, NULL, why, sizeof why, &err);
    zmq_ctx_term(ctx);
    ps_test_server_stop(&t1);
    ps_test_server_stop(&t2);
    return n;
}

/* Holder 1's newest file rotted on its disk and holder 2 has nothing: the
 * older file fetched is not left behind (no partial state_dir restoring
 * an older clock than the log says). */
static void test_a_partial_fetch_leaves_nothing(void **state)
{
    (void)state;
    layout_t l = {.a = {{10, 0}, {20, 0}, {-1, 0}}, .b = {{-1, 0}}, .rot = 20};
    char fresh[300], path[700];
    assert_int_equal(fetch_from_layout("partial", &l, fresh, sizeof fresh), 0);
    fresh_path(path, sizeof path, fresh, 10);
    assert_false(exists(path));
    snprintf(path, sizeof path, "%s/.fetching/j", fresh);
    assert_false(exists(path));
}

/* ... and with holder 2 holding the whole copy, that one is taken. */
static void test_a_partial_copy_falls_back_to_the_next_holder(void **state)
{
    (void)state;
    layout_t l = {.a = {{10, 0}, {20, 0}, {-1, 0}}, .b = {{10, 0}, {20, 0}, {-1, 0}}, .rot = 20};
    char fresh[300], path[700];
    assert_int_equal(fetch_from_layout("fallback", &l, fresh, sizeof fresh), 2);
    fresh_path(path, sizeof path, fresh, 20);
    assert_true(exists(path));
}

/* Holder 1 missed clock 20 (it was down), holder 2 has it: the newest
 * copy is taken, not the first holder's. */
static void test_the_newest_holder_wins(void **state)
{
    (void)state;
    layout_t l = {.a = {{10, 0}, {-1, 0}}, .b = {{10, 0}, {20, 0}, {-1, 0}}, .rot = -1};
    char fresh[300], path[700];
    assert_int_equal(fetch_from_layout("newest", &l, fresh, sizeof fresh), 2);
    fresh_path(path, sizeof path, fresh, 20);
    assert_true(exists(path));
    ps_ckpt_t ck;
    ps_errbuf_t err;
    assert_int_equal(ps_ckpt_load(fresh, "j", -1, &ck, &err), PS_OK);
    assert_int_equal(ck.job.clock, 20);
    ps_ckpt_free(&ck);
}

/* A rollback to 110 (generation 1) reached holder 2 (it has the new 110)
 * but not holder 1 (the old 110 and 120 of generation 0): the new history
 * wins over the higher clock of the undone one. */
static void test_a_later_generation_wins_over_a_later_clock(void **state)
{
    (void)state;
    layout_t l = {.a = {{110, 0}, {120, 0}, {-1, 0}}, .b = {{110, 1}, {-1, 0}}, .rot = -1};
    char fresh[300], path[700];
    assert_int_equal(fetch_from_layout("generation", &l, fresh, sizeof fresh), 1);
    fresh_path(path, sizeof path, fresh, 120);
    assert_false(exists(path));
    ps_ckpt_t ck;
    ps_errbuf_t err;
    assert_int_equal(ps_ckpt_load(fresh, "j", -1, &ck, &err), PS_OK);
    assert_int_equal(ck.job.clock, 110);
    assert_int_equal(ck.job.generation, 1);
    ps_ckpt_free(&ck);
}

typedef struct {
    atomic_bool *flag;
    int64_t after_ms;
} stopper_t;

static void *stop_later(void *arg)
{
    stopper_t *s = arg;
    usleep((useconds_t)s->after_ms * 1000);
    atomic_store(s->flag, true);
    return NULL;
}

/* A holder that never answers its LIST, with a 10-minute timeout: the
 * stop flag ends the fetch at once, with PS_EINTR. */
static void test_the_fetch_stops_on_the_stop_flag(void **state)
{
    (void)state;
    char fresh[300], why[800];
    snprintf(fresh, sizeof fresh, "%s/stopped", root);
    mkdir(fresh, 0700);
    fake_t f = {.silent_lists = true};
    fake_start(&f);
    psrv_replica_cfg_t c = cfg_for(fresh, 1, &f, 600000);
    atomic_bool stop;
    atomic_init(&stop, false);
    stopper_t st = {&stop, 100};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, stop_later, &st), 0);
    void *ctx = zmq_ctx_new();
    ps_errbuf_t err;
    int64_t t0 = ps_time_ms();
    int n = psrv_replica_fetch(ctx, &c, &stop, why, sizeof why, &err);
    int64_t took = ps_time_ms() - t0;
    pthread_join(t, NULL);
    zmq_ctx_term(ctx);
    fake_stop(&f);
    assert_int_equal(n, PS_EINTR);
    assert_non_null(strstr(err.msg, "stopped"));
    assert_true(took < 5000);
}

/* Owner 0's sparse checkpoint of job "j" at clock: all rows (base -1) or
 * those changed since base; then its rows are clean. */
static void write_sparse(const char *dir, ps_sparse_t *t, int64_t clock, int64_t base)
{
    ps_ckpt_job_t job = {.job = "j", .world = 2, .shard = 0, .n_shards = 2, .clock = clock};
    ps_sparse_t *tables[1] = {t};
    ps_ckpt_sparse_set_t set = {tables, 1, base};
    ps_errbuf_t err;
    assert_int_equal(ps_ckpt_write(dir, &job, NULL, NULL, 0, &set, 5, &err), PS_OK);
    ps_sparse_clear_dirty(t);
}

static void touch(ps_sparse_t *t, uint64_t from, uint64_t to)
{
    float grad[2] = {0.5f, -0.5f};
    for (uint64_t k = from; k <= to; k++)
        assert_int_equal(ps_sparse_apply(t, k, grad), PS_OK);
}

/* The holder lost the files of a chain it had acknowledged (a replaced
 * disk): the next delta is refused for its missing base, and the sender
 * sends the chain again from its full file. */
static void test_a_refused_delta_brings_its_chain_again(void **state)
{
    (void)state;
    char own[300], held[300], p10[700], p30[700], cmd[800];
    snprintf(own, sizeof own, "%s/own10", root);
    snprintf(held, sizeof held, "%s/held10", root);
    ps_sparse_params_t sp = {
        .name = "emb", .id = 1, .dim = 2, .seed = 5, .init_scale = 0.1, .world = 2};
    sp.optim = (ps_optim_spec_t){.kind = PS_OPTIM_SGD, .lr = 0.1};
    ps_errbuf_t err;
    ps_sparse_t *t = ps_sparse_new(&sp, &err);
    assert_non_null(t);
    touch(t, 1, 50);
    write_sparse(own, t, 10, -1);
    touch(t, 40, 60);
    write_sparse(own, t, 20, 10);
    ps_test_server_t ts;
    start_holder_of_0(&ts, held);
    fake_t none = {0};
    snprintf(none.endpoint, sizeof none.endpoint, "%s", ps_server_endpoint(ts.srv));
    psrv_replica_cfg_t c = cfg_for(own, 0, &none, 5000);
    void *ctx = zmq_ctx_new();
    psrv_replicator_t *r = psrv_replicator_start(ctx, &c);
    uint32_t crc, base_crc;
    int64_t base;
    assert_true(ps_ckpt_file_head(own, "j", 20, &crc, &base, &base_crc));
    assert_int_equal(base, 10);
    psrv_replicator_offer(r, "j", 0, 20); /* brings 10 along */
    WAIT_UNTIL(psrv_replicator_acked(r, 0, "j", 20, crc), 10000);
    assert_true(psrv_replicator_acked(r, 0, "j", 20, crc));
    snprintf(cmd, sizeof cmd, "rm -rf %s/.replicas", held);
    assert_int_equal(system(cmd), 0);
    touch(t, 55, 70);
    write_sparse(own, t, 30, 20);
    assert_true(ps_ckpt_file_head(own, "j", 30, &crc, &base, &base_crc));
    psrv_replicator_offer(r, "j", 0, 30);
    WAIT_UNTIL(psrv_replicator_acked(r, 0, "j", 30, crc), 10000);
    assert_true(psrv_replicator_acked(r, 0, "j", 30, crc));
    psrv_replica_status_t st;
    psrv_replicator_status(r, &st);
    psrv_replicator_stop(&r);
    zmq_ctx_term(ctx);
    ps_test_server_stop(&ts);
    ps_sparse_destroy(&t);
    assert_int_equal(st.files_refused, 1);   /* 30, for want of 20 */
    assert_int_equal(st.files_acked, 2 + 3); /* 10, 20; then 10, 20, 30 again */
    held_path(p10, sizeof p10, held, 0, 10);
    held_path(p30, sizeof p30, held, 0, 30);
    assert_true(exists(p10));
    assert_true(exists(p30));
    ps_ckpt_t ck;
    char dir[400];
    psrv_replica_dir(held, 0, dir, sizeof dir);
    assert_int_equal(ps_ckpt_load(dir, "j", 30, &ck, &err), PS_OK);
    ps_ckpt_free(&ck);
}

/* A holder that answers every request, slowly and always with a bad CRC:
 * each request is within replica_timeout_ms (300), the whole fetch is
 * not; it ends by 6 x 300 ms with PS_EINTR, not after the 10 files' 30
 * tries (about 7.5 s). */
static void test_the_fetch_ends_by_its_deadline(void **state)
{
    (void)state;
    char src[300], fresh[300], why[800];
    snprintf(src, sizeof src, "%s/src11", root);
    snprintf(fresh, sizeof fresh, "%s/late", root);
    mkdir(fresh, 0700);
    size_t len;
    void *bytes = make_file(src, 1, 20, 100, &len);
    fake_t f = {.delay_ms = 250,
                .bad_gets = 1000,
                .file = bytes,
                .file_len = len,
                .list = "j 10\nj 20\nj 30\nj 40\nj 50\nj 60\nj 70\nj 80\nj 90\nj 100\n"};
    fake_start(&f);
    psrv_replica_cfg_t c = cfg_for(fresh, 1, &f, 300);
    void *ctx = zmq_ctx_new();
    ps_errbuf_t err;
    int64_t t0 = ps_time_ms();
    int n = psrv_replica_fetch(ctx, &c, NULL, why, sizeof why, &err);
    int64_t took = ps_time_ms() - t0;
    zmq_ctx_term(ctx);
    fake_stop(&f);
    free(bytes);
    assert_int_equal(n, PS_EINTR);
    assert_non_null(strstr(err.msg, "deadline"));
    assert_true(took >= 6 * 300 - 50 && took < 3000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_holder_refuses_bad_crc_stores_lists_and_serves),
        cmocka_unit_test(test_holder_reports_full_disk),
        cmocka_unit_test(test_fetch_asks_again_for_a_file_with_a_bad_crc),
        cmocka_unit_test(test_sender_sends_a_refused_file_again),
        cmocka_unit_test(test_offers_never_wait_for_a_silent_holder),
        cmocka_unit_test(test_holder_drops_what_a_rollback_undid),
        cmocka_unit_test(test_rollback_reaches_the_holders_in_order),
        cmocka_unit_test(test_a_lost_drop_is_sent_again),
        cmocka_unit_test(test_replica_ops_need_peers_and_a_held_owner),
        cmocka_unit_test(test_a_partial_fetch_leaves_nothing),
        cmocka_unit_test(test_a_partial_copy_falls_back_to_the_next_holder),
        cmocka_unit_test(test_the_newest_holder_wins),
        cmocka_unit_test(test_a_later_generation_wins_over_a_later_clock),
        cmocka_unit_test(test_the_fetch_stops_on_the_stop_flag),
        cmocka_unit_test(test_the_fetch_ends_by_its_deadline),
        cmocka_unit_test(test_a_refused_delta_brings_its_chain_again),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
