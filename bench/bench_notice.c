/* bench_notice.c - what a same-host request's notice costs, by transport:
 * the round trip of a 128-byte message between two processes (a parent
 * and a forked child, as a worker and a shard), measured here, in this run.
 *   zmq:   DEALER -> ROUTER over tcp://127.0.0.1, echoed back: the path a
 *          same-host push or pull takes today (its values are in the shared
 *          region; only the header travels), through both processes'
 *          ZeroMQ I/O threads.
 *   pipe:  a pipe each way, the child blocked in read(): a doorbell whose
 *          descriptors the shard opens through /proc/PID/fd, as it does the
 *          region's memfd.
 *   futex: a word in a shared mapping, FUTEX_WAIT / FUTEX_WAKE: the fewest
 *          kernel steps a blocking wake-up can take.
 * The transports take turns in slices of SLICE_S seconds with every
 * connection open all along (#18: the doorbell, not built; this says what
 * it could save). --busy N starts N processes that spin meanwhile, as the
 * workers computing beside a shard on a small host do.
 * Usage: bench_notice [--quick] [--seconds S] [--busy N]. Prints one JSON
 * line. */
#include <errno.h>
#include <pthread.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "ps_time.h"

#define SLICE_S 0.05
#define NOTICE_BYTES 128
#define N_KINDS 3

static const char *const kind_names[N_KINDS] = {"zmq", "pipe", "futex"};

typedef struct {
    void *ctx, *dealer;            /* the parent's side of zmq */
    int to_child[2], to_parent[2]; /* pipe */
    _Atomic uint32_t *word;        /* futex: odd = the child's turn, even = the parent's */
} links_t;

static void futex_wait(_Atomic uint32_t *w, uint32_t seen)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, seen, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *w)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* ---- the child: echoes on all three until the parent closes the pipe ---- */

static void *zmq_echo(void *arg)
{
    void *router = arg;
    for (;;) {
        zmq_msg_t id, body;
        zmq_msg_init(&id);
        zmq_msg_init(&body);
        if (zmq_msg_recv(&id, router, 0) < 0 || zmq_msg_recv(&body, router, 0) < 0)
            return NULL;
        zmq_msg_send(&id, router, ZMQ_SNDMORE);
        zmq_msg_send(&body, router, 0);
    }
}

static void *futex_echo(void *arg)
{
    _Atomic uint32_t *w = arg;
    for (;;) {
        uint32_t v = atomic_load(w);
        if (!(v & 1)) {
            futex_wait(w, v);
            continue;
        }
        atomic_store(w, v + 1);
        futex_wake(w);
    }
    return NULL;
}

static int child_main(links_t *l, const char *endpoint)
{
    void *ctx = zmq_ctx_new();
    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    if (zmq_connect(router, endpoint) != 0)
        return 1;
    pthread_t zt, ft;
    pthread_create(&zt, NULL, zmq_echo, router);
    pthread_create(&ft, NULL, futex_echo, (void *)l->word);
    char buf[NOTICE_BYTES];
    for (;;) { /* the pipe echo runs here; EOF ends the child */
        ssize_t n = read(l->to_child[0], buf, sizeof buf);
        if (n <= 0)
            break;
        if (write(l->to_parent[1], buf, (size_t)n) != n)
            break;
    }
    return 0; /* _exit ends the echo threads with the process */
}

/* ---- the parent: one round trip of each kind ---- */

static int round_trip(links_t *l, int kind)
{
    char buf[NOTICE_BYTES];
    memset(buf, 'n', sizeof buf);
    switch (kind) {
    case 0:
        if (zmq_send(l->dealer, buf, sizeof buf, 0) != (int)sizeof buf ||
            zmq_recv(l->dealer, buf, sizeof buf, 0) != (int)sizeof buf)
            return -1;
        return 0;
    case 1:
        if (write(l->to_child[1], buf, sizeof buf) != (ssize_t)sizeof buf ||
            read(l->to_parent[0], buf, sizeof buf) != (ssize_t)sizeof buf)
            return -1;
        return 0;
    default: {
        uint32_t v = atomic_load(l->word) + 1; /* odd: the child's turn */
        atomic_store(l->word, v);
        futex_wake(l->word);
        uint32_t seen;
        while ((seen = atomic_load(l->word)) == v)
            futex_wait(l->word, seen);
        return 0;
    }
    }
}

static pid_t spin(void)
{
    pid_t p = fork();
    if (p == 0) {
        volatile uint64_t x = 0;
        for (;;)
            x++;
    }
    return p;
}

int main(int argc, char **argv)
{
    double seconds = 3.0;
    int busy = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            seconds = 0.3;
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--busy") == 0 && i + 1 < argc)
            busy = atoi(argv[++i]);
        else {
            printf("usage: bench_notice [--quick] [--seconds S] [--busy N]\n"
                   "  round trips of a 128-byte notice between two processes over\n"
                   "  ZeroMQ TCP, a pipe pair and a futex, interleaved; --busy N\n"
                   "  spinning processes beside them (default 0)\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    links_t l = {0};
    l.word = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (l.word == MAP_FAILED || pipe(l.to_child) != 0 || pipe(l.to_parent) != 0) {
        perror("bench_notice: setup");
        return 1;
    }
    l.ctx = zmq_ctx_new();
    l.dealer = zmq_socket(l.ctx, ZMQ_DEALER);
    char endpoint[128];
    size_t len = sizeof endpoint;
    if (zmq_bind(l.dealer, "tcp://127.0.0.1:*") != 0 ||
        zmq_getsockopt(l.dealer, ZMQ_LAST_ENDPOINT, endpoint, &len) != 0) {
        fprintf(stderr, "bench_notice: bind: %s\n", zmq_strerror(errno));
        return 1;
    }
    pid_t child = fork();
    if (child == 0) {
        close(l.to_child[1]);
        close(l.to_parent[0]);
        _exit(child_main(&l, endpoint));
    }
    close(l.to_child[0]);
    close(l.to_parent[1]);
    /* the first zmq round trip waits for the connection */
    if (round_trip(&l, 0) != 0) {
        fprintf(stderr, "bench_notice: no echo over %s\n", endpoint);
        return 1;
    }
    pid_t spinners[16];
    busy = busy > 16 ? 16 : busy;
    for (int i = 0; i < busy; i++)
        spinners[i] = spin();
    double secs[N_KINDS] = {0};
    long trips[N_KINDS] = {0};
    int slices = (int)(seconds / SLICE_S / N_KINDS);
    for (int s = 0; s < (slices < 2 ? 2 : slices); s++)
        for (int k = 0; k < N_KINDS; k++) {
            int64_t t0 = ps_time_ns(), end = t0 + (int64_t)(SLICE_S * 1e9);
            long n = 0;
            do {
                if (round_trip(&l, k) != 0) {
                    fprintf(stderr, "bench_notice: %s round trip failed\n", kind_names[k]);
                    return 1;
                }
                n++;
            } while (ps_time_ns() < end);
            secs[k] += (double)(ps_time_ns() - t0) / 1e9;
            trips[k] += n;
        }
    for (int i = 0; i < busy; i++) {
        kill(spinners[i], SIGKILL);
        waitpid(spinners[i], NULL, 0);
    }
    close(l.to_child[1]); /* the child's pipe loop sees EOF and ends */
    int status = 0;
    waitpid(child, &status, 0);
    zmq_close(l.dealer);
    zmq_ctx_term(l.ctx);
    double us[N_KINDS];
    for (int k = 0; k < N_KINDS; k++)
        us[k] = trips[k] ? secs[k] / (double)trips[k] * 1e6 : 0;
    printf("{\"bench\":\"notice\",\"busy\":%d,\"zmq_us\":%.2f,\"pipe_us\":%.2f,\"futex_us\":%.2f,"
           "\"pipe_vs_zmq\":%.3f,\"futex_vs_zmq\":%.3f}\n",
           busy, us[0], us[1], us[2], us[1] / us[0], us[2] / us[0]);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
