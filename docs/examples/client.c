/* client.c - the smallest complete program on libps_client: one worker
 * defines a 4-float table with server-side SGD (lr 0.5), pushes the
 * gradient sum 2.0 per element over 2 samples for clock 0, reads back the
 * parameters of clock 1 (1 - 0.5 * 2/2 = 0.5) and leaves the job.
 *
 *   cc client.c $(pkg-config --cflags --libs ps-client) -o client
 *   ps-server --port 7000 &   ./client tcp://127.0.0.1:7000
 */
#include <ps_client.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    ps_client_opts_t opts;
    ps_client_opts_defaults(&opts);
    opts.job = "example"; /* rank 0 of world 1, BSP */
    opts.fingerprint = "program=client.c\n";
    ps_errbuf_t err = {0};
    ps_client_t *c = ps_client_new(argc > 1 ? argv[1] : "tcp://127.0.0.1:7000", &opts, &err);
    if (!c) {
        fprintf(stderr, "client: %s\n", err.msg);
        return 1;
    }
    int64_t clock;
    float w[4] = {1, 1, 1, 1}, grad[4] = {2, 2, 2, 2};
    uint64_t shape[1] = {4};
    ps_optim_spec_t sgd = {.kind = PS_OPTIM_SGD, .lr = 0.5};
    int rc = ps_client_hello(c, &clock, &err);
    if (rc == PS_OK)
        rc = ps_client_init_table(c, 0, "w", shape, 1, &sgd, w, &err);
    if (rc == PS_OK && (rc = ps_client_push_pull(c, 0, clock, grad, 2, 1.0f, 0, w)) == PS_OK)
        rc = ps_client_wait(c, &err);
    if (rc == PS_OK)
        printf("clock %lld -> %lld: w = %g %g %g %g\n", (long long)clock, (long long)clock + 1,
               w[0], w[1], w[2], w[3]);
    else
        fprintf(stderr, "client: %s (%s)\n", err.msg, ps_errname(rc));
    ps_client_stop_heartbeats(c);
    ps_client_bye(c, &err);
    ps_client_destroy(&c);
    return rc == PS_OK ? 0 : 1;
}
