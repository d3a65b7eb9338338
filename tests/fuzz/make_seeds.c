/* make_seeds.c - writes the seed corpus of fuzz_request: one well-formed
 * message per op, in the fuzzer's frame format (uint16 length + bytes per
 * frame). Run from the fuzz build: make_seeds tests/fuzz/corpus/request */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_wire.h"

static void put_frame(FILE *f, const void *data, size_t len)
{
    unsigned char n[2] = {(unsigned char)(len & 0xff), (unsigned char)(len >> 8)};
    fwrite(n, 1, 2, f);
    fwrite(data, 1, len, f);
}

/* One message: the header frame, a keys frame if keys, a values frame if values. */
static void write_seed2(const char *dir, const char *name, const Ps__Header *h, const void *keys,
                        size_t klen, const void *values, size_t vlen)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    size_t len = ps__header__get_packed_size(h);
    unsigned char *buf = malloc(len);
    ps__header__pack(h, buf);
    put_frame(f, buf, len);
    if (keys)
        put_frame(f, keys, klen);
    if (values)
        put_frame(f, values, vlen);
    free(buf);
    fclose(f);
}

static void write_seed(const char *dir, const char *name, const Ps__Header *h, const void *values,
                       size_t vlen)
{
    write_seed2(dir, name, h, NULL, 0, values, vlen);
}

static Ps__Header base(int op)
{
    Ps__Header h;
    ps__header__init(&h);
    h.version = PS_PROTOCOL_VERSION;
    h.op = op;
    h.request_id = 7;
    h.job = "fuzz";
    h.rank = 0;
    h.world_size = 2;
    return h;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    float vals[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    uint16_t halves[8] = {0x3c00, 0x4000, 0x4200, 0x4400, 0x4500, 0x4600, 0x4700, 0x4800};
    Ps__Header h = base(PS__OP__HELLO);
    write_seed(dir, "hello", &h, NULL, 0);
    h.max_staleness = -1;
    write_seed(dir, "hello_asp", &h, NULL, 0);

    h = base(PS__OP__INIT_TABLE);
    Ps__TableSpec spec = PS__TABLE_SPEC__INIT;
    Ps__OptimSpec optim = PS__OPTIM_SPEC__INIT;
    uint64_t shape[2] = {2, 4};
    optim.kind = PS__OPTIMIZER__ADAM;
    optim.lr = 0.01;
    optim.beta1 = 0.9;
    optim.beta2 = 0.999;
    optim.eps = 1e-8;
    spec.name = "w";
    spec.n_elems = 8;
    spec.n_shape = 2;
    spec.shape = shape;
    spec.optim = &optim;
    h.table = &spec;
    h.n_elems = 8;
    write_seed(dir, "init_table", &h, vals, sizeof vals);

    h = base(PS__OP__PUSH_PULL);
    h.n_elems = 8;
    h.n_samples = 4;
    h.grad_scale = 1;
    write_seed(dir, "push_pull", &h, vals, sizeof vals);
    h.dtype = PS__DTYPE__F16;
    h.grad_scale = 1024;
    write_seed(dir, "push_pull_f16", &h, halves, sizeof halves);
    h.dtype = PS__DTYPE__BF16;
    write_seed(dir, "push_pull_bf16", &h, halves, sizeof halves);
    h.dtype = PS__DTYPE__F32;
    h.op = PS__OP__PUSH;
    h.clock = 1;
    write_seed(dir, "push", &h, vals, sizeof vals);
    h.flags = PS_FLAG_SKIP;
    write_seed(dir, "push_skip", &h, NULL, 0);

    h = base(PS__OP__PULL);
    h.n_elems = 8;
    h.clock = 1;
    write_seed(dir, "pull", &h, NULL, 0);

    static const struct {
        int op;
        const char *name;
    } simple[] = {{PS__OP__HEARTBEAT, "heartbeat"}, {PS__OP__DONE, "done"}, {PS__OP__BYE, "bye"},
                  {PS__OP__SAVE, "save"},           {PS__OP__STATS, "stats"}};
    for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++) {
        h = base(simple[i].op);
        write_seed(dir, simple[i].name, &h, NULL, 0);
    }
    /* sparse: a table, then pull and push of two keys */
    h = base(PS__OP__INIT_TABLE);
    Ps__TableSpec sspec = PS__TABLE_SPEC__INIT;
    Ps__OptimSpec ftrl = PS__OPTIM_SPEC__INIT;
    ftrl.kind = PS__OPTIMIZER__FTRL;
    ftrl.lr = 0.1;
    ftrl.ftrl_beta = 1;
    sspec.name = "s";
    sspec.sparse = 1;
    sspec.dim = 2;
    sspec.optim = &ftrl;
    h.table = &sspec;
    h.table_id = 1;
    write_seed(dir, "init_sparse", &h, NULL, 0);
    uint64_t keys[2] = {4, 8};
    h = base(PS__OP__SPARSE_PULL);
    h.table_id = 1;
    h.n_elems = 2;
    write_seed2(dir, "sparse_pull", &h, keys, sizeof keys, NULL, 0);
    h.op = PS__OP__SPARSE_PUSH;
    write_seed2(dir, "sparse_push", &h, keys, sizeof keys, vals, 4 * sizeof(float));
    h = base(PS__OP__ROLLBACK);
    h.clock = 0;
    h.generation = 1;
    write_seed(dir, "rollback", &h, NULL, 0);
    return 0;
}
