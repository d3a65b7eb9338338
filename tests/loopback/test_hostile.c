/* test_hostile.c - tens of thousands of random and mutated multipart
 * messages against the real server core: it must not crash, must answer
 * what it can parse with an error, count the errors in its stats, and then
 * serve a well-behaved client correctly. Seeded; the seed is printed.
 * Hostile job and table names are refused where they come in, and every
 * document the server publishes stays valid. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

#include "ps_client.h"
#include <jansson.h>
#include "ps_log.h"
#include "ps_rng.h"
#include "ps_shm.h"
#include "ps_test_server.h"
#include "ps_time.h"
#include "ps_wire.h"

#define SEED 4242
#define N_MESSAGES 30000

static ps_test_server_t server;
static char stats_path[96];

static int setup(void **state)
{
    (void)state;
    ps_log_init("test", PS_LOG_ERROR);
    snprintf(stats_path, sizeof stats_path, "/tmp/ps_test_hostile_%d.sock", (int)getpid());
    return ps_test_server_start_stats(&server, 0, 1, stats_path);
}

static int teardown(void **state)
{
    (void)state;
    ps_test_server_stop(&server);
    return 0;
}

/* A header that is valid protobuf with fields drawn to hit every check. */
static size_t mutated_header(ps_rng_t *rng, uint8_t *buf, size_t cap)
{
    static const char *jobs[] = {
        "hostile", "", "x",
        "a-very-long-job-name-that-goes-on-and-on-for-more-than-sixty-four-bytes"};
    Ps__Header h;
    ps__header__init(&h);
    h.version = ps_rng_below(rng, 8) ? PS_PROTOCOL_VERSION : (uint32_t)ps_rng_next(rng);
    h.op = (Ps__Op)(ps_rng_below(rng, 14));
    h.request_id = ps_rng_next(rng);
    h.job = (char *)jobs[ps_rng_below(rng, 4)];
    h.rank = (uint32_t)ps_rng_below(rng, 4);
    h.world_size = (uint32_t)ps_rng_below(rng, 4);
    h.max_staleness = (int32_t)ps_rng_below(rng, 3) - 1;
    h.table_id = (uint32_t)ps_rng_below(rng, 4);
    h.chunk = (uint32_t)ps_rng_below(rng, 3);
    h.clock = (int64_t)ps_rng_below(rng, 5) - 1;
    h.dtype = (Ps__DType)ps_rng_below(rng, 4);
    h.n_elems = ps_rng_below(rng, 4) ? ps_rng_below(rng, 300) : ps_rng_next(rng);
    h.offset = ps_rng_below(rng, 4) ? 0 : ps_rng_next(rng);
    h.n_samples = ps_rng_below(rng, 5);
    h.flags = (uint32_t)ps_rng_below(rng, 8);
    h.grad_scale = ps_rng_below(rng, 4) ? 0 : (double)(int64_t)ps_rng_next(rng);
    h.generation = ps_rng_below(rng, 4) ? 0 : ps_rng_below(rng, 3);
    uint64_t shape[2] = {ps_rng_below(rng, 20), ps_rng_below(rng, 20)};
    Ps__OptimSpec o;
    ps__optim_spec__init(&o);
    o.kind = (Ps__Optimizer)ps_rng_below(rng, 8);
    o.lr = ps_rng_below(rng, 4) ? 0.1 : -1;
    Ps__TableSpec spec;
    ps__table_spec__init(&spec);
    spec.name = "t";
    spec.n_elems = shape[0] * shape[1];
    spec.shape = shape;
    spec.n_shape = ps_rng_below(rng, 3);
    spec.optim = ps_rng_below(rng, 4) ? &o : NULL;
    if (ps_rng_below(rng, 2))
        h.table = &spec;
    /* the same-host path: its flags and offsets, and offers of our own
     * descriptors (none is a sealed region, so each must be refused) */
    static ps_shm_host_t host;
    if (!*host.boot_id)
        ps_shm_host(&host);
    if (ps_rng_below(rng, 4) == 0)
        h.flags |= (uint32_t)ps_rng_below(rng, 4) << 6;
    h.shm_offset = ps_rng_below(rng, 2) ? ps_rng_below(rng, 1 << 20) : ps_rng_next(rng);
    h.shm_reply_offset = ps_rng_below(rng, 2) ? ps_rng_below(rng, 1 << 20) : ps_rng_next(rng);
    Ps__ShmOffer offer;
    ps__shm_offer__init(&offer);
    offer.boot_id = ps_rng_below(rng, 4) ? host.boot_id : "elsewhere";
    offer.pid_ns = host.pid_ns;
    offer.uid = host.uid;
    offer.pid = ps_rng_below(rng, 4) ? (int32_t)getpid() : (int32_t)ps_rng_below(rng, 1 << 22);
    offer.fd = (int32_t)ps_rng_below(rng, 64) - 1;
    offer.bytes = ps_rng_below(rng, 2) ? 1 << 20 : ps_rng_next(rng);
    offer.nonce = ps_rng_next(rng);
    if (ps_rng_below(rng, 4) == 0)
        h.shm = &offer;
    size_t len = ps__header__get_packed_size(&h);
    if (len > cap)
        return 0;
    ps__header__pack(&h, buf);
    /* sometimes flip a byte: the result may or may not still parse */
    if (len && ps_rng_below(rng, 4) == 0)
        buf[ps_rng_below(rng, len)] ^= (uint8_t)(1 + ps_rng_below(rng, 255));
    return len;
}

static void send_random_message(void *sock, ps_rng_t *rng)
{
    uint8_t buf[4096];
    int n_frames = (int)ps_rng_below(rng, 7); /* 0 = an empty message */
    if (n_frames == 0)
        n_frames = 1;
    for (int f = 0; f < n_frames; f++) {
        size_t len;
        if (f == 0 && ps_rng_below(rng, 4) != 0) {
            len = mutated_header(rng, buf, sizeof buf);
        } else {
            len = ps_rng_below(rng, 3) ? ps_rng_below(rng, 1200) : ps_rng_below(rng, 8);
            for (size_t i = 0; i < len; i++)
                buf[i] = (uint8_t)ps_rng_next(rng);
        }
        zmq_send(sock, buf, len, f + 1 < n_frames ? ZMQ_SNDMORE : 0);
    }
}

static int drain(void *sock, int *errors)
{
    int n = 0;
    for (;;) {
        ps_wire_msg_t m;
        if (ps_wire_recv(sock, &m, ZMQ_DONTWAIT) == PS_EAGAIN)
            return n;
        Ps__Header *h = m.n_parts ? ps_wire_unpack_header(&m.parts[0]) : NULL;
        if (h && h->status != 0)
            (*errors)++;
        if (h)
            ps__header__free_unpacked(h, NULL);
        ps_wire_msg_close(&m);
        n++;
    }
}

/* The reply to one stats command (up to its terminating empty line). */
static char *stats_reply(const char *cmd)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", stats_path);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return NULL;
    }
    assert_int_equal(write(fd, cmd, strlen(cmd)), (ssize_t)strlen(cmd));
    size_t cap = 1 << 20, n = 0;
    char *reply = malloc(cap);
    int64_t deadline = ps_time_ms() + 5000;
    while (n < cap - 1 && ps_time_ms() < deadline) {
        ssize_t got = read(fd, reply + n, cap - 1 - n);
        if (got <= 0)
            break;
        n += (size_t)got;
        reply[n] = '\0';
        if (n >= 2 && reply[n - 1] == '\n' && reply[n - 2] == '\n')
            break;
    }
    close(fd);
    reply[n] = '\0';
    return reply;
}

static double stats_errors(void)
{
    char *reply = stats_reply("show info json\n");
    if (!reply)
        return -1;
    json_t *info = json_loads(reply, JSON_DISABLE_EOF_CHECK, NULL);
    json_t *v = info ? json_object_get(info, "errors") : NULL;
    double errors = json_is_number(v) ? json_number_value(v) : -1;
    json_decref(info);
    free(reply);
    return errors;
}

/* Names full of what breaks JSON, labels, paths, terminals and lines. */
static const char *const hostile_names[] = {
    "a\"b",
    "new\nline\n\nerror: forged",
    "\x1b[31mred\x1b[0m",
    "\xff\xfe\xc3\x28",
    "../../etc",
    "a b",
    "x/y",
    "-rf",
    ".hidden",
    "",
    "0123456789012345678901234567890123456789012345678901234567890123456789"};

/* A HELLO for job `name` on a raw socket; returns the reply's status and
 * copies its message. */
static int raw_hello(void *sock, const char *name, char *msg, size_t cap)
{
    Ps__Header h;
    ps__header__init(&h);
    h.version = PS_PROTOCOL_VERSION;
    h.op = PS__OP__HELLO;
    h.request_id = 7;
    h.job = (char *)name;
    h.world_size = 1;
    uint8_t buf[1024];
    size_t len = ps__header__pack(&h, buf);
    assert_true(zmq_send(sock, buf, len, 0) >= 0);
    zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
    assert_int_equal(zmq_poll(&it, 1, 5000), 1);
    ps_wire_msg_t m;
    assert_int_equal(ps_wire_recv(sock, &m, 0), PS_OK);
    Ps__Header *r = ps_wire_unpack_header(&m.parts[0]);
    assert_non_null(r);
    int status = r->status;
    snprintf(msg, cap, "%s", r->message ? r->message : "");
    ps__header__free_unpacked(r, NULL);
    ps_wire_msg_close(&m);
    return status;
}

/* Every name from outside is held to the name rules where it comes in (a
 * job at HELLO, a table at INIT_TABLE), and the refusal itself carries no
 * raw control byte; the documents the server then publishes all parse. */
static void test_hostile_names_are_refused_and_every_output_stays_valid(void **state)
{
    (void)state;
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_connect(sock, ps_server_endpoint(server.srv)), 0);
    size_t n_names = sizeof hostile_names / sizeof *hostile_names;
    for (size_t i = 0; i < n_names; i++) {
        char msg[600];
        int status = raw_hello(sock, hostile_names[i], msg, sizeof msg);
        assert_true(status == PS_EINVAL || status == PS_EPROTO);
        for (const unsigned char *p = (const unsigned char *)msg; *p; p++)
            assert_true(*p >= 0x20 && *p != 0x7f);
    }
    zmq_close(sock);
    zmq_ctx_term(ctx);
    /* table names, through the client library as any program would */
    ps_client_opts_t o = {.job = "names", .world = 1, .timeout_ms = 5000};
    ps_errbuf_t err;
    ps_client_t *c = ps_client_new(ps_server_endpoint(server.srv), &o, &err);
    assert_non_null(c);
    assert_int_equal(ps_client_hello(c, NULL, &err), PS_OK);
    float init[4] = {0};
    uint64_t shape[1] = {4};
    ps_optim_spec_t sgd = {.kind = PS_OPTIM_SGD, .lr = 1.0};
    for (size_t i = 0; i < n_names; i++) {
        int rc = ps_client_init_table(c, (uint32_t)i, hostile_names[i], shape, 1, &sgd, init, &err);
        if (!(rc == PS_EINVAL || (rc == PS_EPROTO && !*hostile_names[i])))
            fail_msg("table name %zu: rc %d: %s", i, rc, err.msg);
    }
    assert_int_equal(ps_client_init_table(c, 0, "w", shape, 1, &sgd, init, &err), PS_OK);
    ps_client_destroy(&c);
    /* every JSON document parses; text and metrics carry no raw control byte */
    static const char *const docs[] = {"show info json\n", "show workers json\n",
                                       "show tables json\n", "show config json\n"};
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
        char *reply = stats_reply(docs[i]);
        assert_non_null(reply);
        json_error_t jerr;
        json_t *doc = json_loads(reply, JSON_DISABLE_EOF_CHECK, &jerr);
        if (!doc)
            fail_msg("%s is not JSON: %s", docs[i], jerr.text);
        json_decref(doc);
        free(reply);
    }
    /* /metrics as Prometheus reads it */
    char *metrics = stats_reply("metrics\n");
    assert_non_null(metrics);
    char path[128], cmd[300];
    snprintf(path, sizeof path, "/tmp/ps_test_hostile_%d.prom", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(metrics, f);
    fclose(f);
    free(metrics);
    if (system("command -v promtool >/dev/null 2>&1") == 0) {
        snprintf(cmd, sizeof cmd, "promtool check metrics < %s", path);
        assert_int_equal(system(cmd), 0);
    }
    unlink(path);
    static const char *const texts[] = {"show info\n", "show workers\n", "show tables\n",
                                        "metrics\n", "help\n"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        char *reply = stats_reply(texts[i]);
        assert_non_null(reply);
        for (const unsigned char *p = (const unsigned char *)reply; *p; p++)
            assert_true((*p >= 0x20 && *p < 0x7f) || *p == '\n');
        free(reply);
    }
}

static void test_random_and_mutated_messages_leave_the_server_serving(void **state)
{
    (void)state;
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_connect(sock, ps_server_endpoint(server.srv)), 0);
    ps_rng_t rng;
    ps_rng_seed(&rng, SEED);
    int replies = 0, errors = 0;
    for (int i = 0; i < N_MESSAGES; i++) {
        send_random_message(sock, &rng);
        if (i % 256 == 255)
            replies += drain(sock, &errors);
    }
    /* let the server catch up (bounded), then collect what it answered */
    int64_t deadline = ps_time_ms() + 10000;
    int quiet = 0;
    while (ps_time_ms() < deadline && quiet < 5) {
        zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 100) > 0) {
            replies += drain(sock, &errors);
            quiet = 0;
        } else {
            quiet++;
        }
    }
    printf("seed %d: %d messages sent, %d replies, %d error replies\n", SEED, N_MESSAGES, replies,
           errors);
    assert_true(errors > N_MESSAGES / 10);
    zmq_close(sock);
    zmq_ctx_term(ctx);

    /* the server still serves a well-behaved client exactly */
    ps_client_opts_t o = {.job = "after", .world = 1, .timeout_ms = 5000};
    ps_errbuf_t err;
    ps_client_t *c = ps_client_new(ps_server_endpoint(server.srv), &o, &err);
    assert_non_null(c);
    assert_int_equal(ps_client_hello(c, NULL, &err), PS_OK);
    float init[100] = {0}, grad[100], got[100];
    for (int i = 0; i < 100; i++)
        grad[i] = (float)i;
    uint64_t shape[1] = {100};
    ps_optim_spec_t sgd = {.kind = PS_OPTIM_SGD, .lr = 1.0};
    assert_int_equal(ps_client_init_table(c, 0, "w", shape, 1, &sgd, init, &err), PS_OK);
    assert_int_equal(ps_client_push_pull(c, 0, 0, grad, 2, 1.0f, 0, got), PS_OK);
    assert_int_equal(ps_client_wait(c, &err), PS_OK);
    for (int i = 0; i < 100; i++)
        assert_true(got[i] == -(float)i / 2);
    ps_client_destroy(&c);

    /* and it counted the errors in its stats (published every poll) */
    double counted = -1;
    deadline = ps_time_ms() + 5000;
    while (ps_time_ms() < deadline && (counted = stats_errors()) < errors)
        usleep(20000);
    printf("stats: errors %.0f\n", counted);
    assert_true(counted >= errors);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_and_mutated_messages_leave_the_server_serving),
        cmocka_unit_test(test_hostile_names_are_refused_and_every_output_stays_valid),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
