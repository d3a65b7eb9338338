/* test_checkpoint.c - checkpoint files: round trip of parameters, optimizer
 * state and clocks; the newest K kept; a corrupt (flipped byte) or
 * truncated newest file skipped with a warning naming it; sparse tables
 * in full and incremental files, chains kept whole and loaded whole. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ps_checkpoint.h"
#include "ps_log.h"
#include "ps_time.h"

static char dir[] = "/tmp/ps_test_ckpt_XXXXXX";
static char logpath[300];

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir))
        return -1;
    snprintf(logpath, sizeof logpath, "%s/log", dir);
    ps_log_init("test", PS_LOG_INFO);
    return ps_log_open_file(logpath);
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static ps_table_t *make_table(uint64_t len, float base)
{
    uint64_t shape[1] = {len};
    float *init = malloc(len * sizeof(float));
    for (uint64_t i = 0; i < len; i++)
        init[i] = base + (float)i;
    ps_table_params_t p = {.name = "w",
                           .id = 0,
                           .n_total = len,
                           .shape = shape,
                           .ndim = 1,
                           .offset = 0,
                           .len = len,
                           .world = 2,
                           .max_staleness = 0};
    p.optim = (ps_optim_spec_t){
        .kind = PS_OPTIM_ADAM, .lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    ps_errbuf_t err;
    ps_table_t *t = ps_table_new(&p, init, &err);
    free(init);
    assert_non_null(t);
    return t;
}

/* One BSP round with gradient g from both ranks. */
static void round_of(ps_table_t *t, float g, int64_t clock)
{
    uint8_t live[2] = {1, 1};
    for (uint32_t r = 0; r < 2; r++) {
        zmq_msg_t m;
        uint64_t len = ps_table_len(t);
        zmq_msg_init_size(&m, len * sizeof(float));
        float *v = zmq_msg_data(&m);
        for (uint64_t i = 0; i < len; i++)
            v[i] = g;
        assert_int_equal(ps_table_push(t, r, clock, &m, 1), PS_OK);
        zmq_msg_close(&m);
    }
    assert_true(ps_table_try_complete(t, live));
}

static void write_at(ps_table_t *t, int64_t clock, int keep)
{
    ps_ckpt_job_t job = {.job = "j",
                         .world = 2,
                         .max_staleness = 0,
                         .generation = 3,
                         .shard = 0,
                         .n_shards = 1,
                         .clock = clock};
    uint32_t ids[1] = {0};
    ps_errbuf_t err;
    assert_int_equal(ps_ckpt_write(dir, &job, &t, ids, 1, NULL, keep, &err), PS_OK);
}

static bool log_mentions(const char *what)
{
    FILE *f = fopen(logpath, "r");
    char line[2048];
    bool found = false;
    while (f && fgets(line, sizeof line, f))
        found |= strstr(line, what) != NULL;
    if (f)
        fclose(f);
    return found;
}

static void test_round_trip_and_corrupt_files_are_skipped(void **state)
{
    (void)state;
    ps_table_t *t = make_table(1000, 1.0f);
    float saved[3][1000];
    for (int c = 1; c <= 3; c++) {
        round_of(t, 0.5f * (float)c, c - 1);
        write_at(t, c * 10, 3);
        memcpy(saved[c - 1], ps_table_params(t), sizeof saved[0]);
    }
    ps_ckpt_t ck;
    ps_errbuf_t err;
    assert_int_equal(ps_ckpt_load(dir, "j", -1, &ck, &err), PS_OK);
    assert_int_equal(ck.job.clock, 30);
    assert_int_equal(ck.job.generation, 3);
    assert_int_equal(ck.n_chunks, 1);
    assert_memory_equal(ck.chunks[0].state.params, saved[2], sizeof saved[2]);
    assert_int_equal(ck.chunks[0].state.updates, 3);
    assert_int_equal(ck.chunks[0].state.clock, 3);
    assert_non_null(ck.chunks[0].state.v); /* Adam state travels too */
    /* restoring into a fresh table gives back the exact state */
    ps_table_t *back = make_table(1000, 0.0f);
    assert_int_equal(ps_table_set_state(back, &ck.chunks[0].state), PS_OK);
    assert_memory_equal(ps_table_params(back), saved[2], sizeof saved[2]);
    assert_int_equal(ps_table_updates(back), 3);
    ps_ckpt_free(&ck);
    ps_ckpt_free(&ck);

    /* flip a byte in the newest: skipped with a warning, the previous loads */
    char path[400];
    snprintf(path, sizeof path, "%s/j/ckpt-%012d.psc", dir, 30);
    FILE *f = fopen(path, "r+b");
    fseek(f, 5000, SEEK_SET);
    int byte = fgetc(f);
    fseek(f, 5000, SEEK_SET);
    fputc(byte ^ 0x40, f);
    fclose(f);
    assert_int_equal(ps_ckpt_load(dir, "j", -1, &ck, &err), PS_OK);
    assert_int_equal(ck.job.clock, 20);
    assert_memory_equal(ck.chunks[0].state.params, saved[1], sizeof saved[1]);
    ps_ckpt_free(&ck);
    assert_true(log_mentions("ckpt-000000000030.psc' skipped"));
    assert_true(log_mentions("checksum mismatch"));

    /* truncate the next one as well: the oldest loads */
    snprintf(path, sizeof path, "%s/j/ckpt-%012d.psc", dir, 20);
    assert_int_equal(truncate(path, 3000), 0);
    assert_int_equal(ps_ckpt_load(dir, "j", -1, &ck, &err), PS_OK);
    assert_int_equal(ck.job.clock, 10);
    ps_ckpt_free(&ck);
    assert_true(log_mentions("ckpt-000000000020.psc' skipped"));
    assert_true(log_mentions("truncated"));
    /* asking for an exact clock that is corrupt fails cleanly */
    assert_int_equal(ps_ckpt_load(dir, "j", 30, &ck, &err), PS_ENOJOB);
    ps_table_destroy(&t);
    ps_table_destroy(&back);
}

static void test_only_the_newest_k_are_kept(void **state)
{
    (void)state;
    ps_table_t *t = make_table(10, 0.0f);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s/k; mkdir -p %s", dir, dir);
    assert_int_equal(system(cmd), 0);
    ps_ckpt_job_t job = {.job = "k", .world = 2, .shard = 0, .n_shards = 1};
    uint32_t ids[1] = {0};
    ps_errbuf_t err;
    for (int c = 1; c <= 5; c++) {
        job.clock = c;
        assert_int_equal(ps_ckpt_write(dir, &job, &t, ids, 1, NULL, 2, &err), PS_OK);
    }
    char path[400];
    struct stat st;
    snprintf(path, sizeof path, "%s/k/ckpt-%012d.psc", dir, 3);
    assert_int_not_equal(stat(path, &st), 0);
    snprintf(path, sizeof path, "%s/k/ckpt-%012d.psc", dir, 4);
    assert_int_equal(stat(path, &st), 0);
    ps_ckpt_remove_job(dir, "k");
    snprintf(path, sizeof path, "%s/k", dir);
    assert_int_not_equal(stat(path, &st), 0);
    ps_table_destroy(&t);
}

/* A writer killed before its rename leaves its temporary file (up to a
 * whole checkpoint; before, nothing ever removed it). The next write
 * deletes such files, and nothing else in the job's directory. */
static void test_a_dead_writers_partial_file_is_deleted(void **state)
{
    (void)state;
    ps_table_t *t = make_table(10, 0.0f);
    char cmd[300], dead[400], other[400], path[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s/d; mkdir -p %s/d", dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(dead, sizeof dead, "%s/d/.ckpt-000000000003.psc.tmp.00000000deadbeef", dir);
    snprintf(other, sizeof other, "%s/d/.incoming-000000000003.psc.tmp.00000000deadbeef", dir);
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(i ? other : dead, "w");
        assert_non_null(f);
        fputs("partial", f);
        fclose(f);
    }
    ps_ckpt_job_t job = {.job = "d", .world = 1, .shard = 0, .n_shards = 1, .clock = 4};
    uint32_t ids[1] = {0};
    ps_errbuf_t err;
    assert_int_equal(ps_ckpt_write(dir, &job, &t, ids, 1, NULL, 2, &err), PS_OK);
    struct stat st;
    assert_int_not_equal(stat(dead, &st), 0);
    /* a received file's temporary: another writer's, not ours to delete */
    assert_int_equal(stat(other, &st), 0);
    snprintf(path, sizeof path, "%s/d/ckpt-%012d.psc", dir, 4);
    assert_int_equal(stat(path, &st), 0);
    ps_table_destroy(&t);
}

/* Not a timing assertion: prints the write time and size of a shard of the
 * demo MLP (235,146 parameters with Adam state, half of them) for the notes. */
static void test_demo_sized_checkpoint_is_written(void **state)
{
    (void)state;
    ps_table_t *t = make_table(117573, 0.0f);
    ps_ckpt_job_t job = {.job = "demo", .world = 2, .shard = 0, .n_shards = 1, .clock = 1};
    uint32_t ids[1] = {0};
    ps_errbuf_t err;
    int64_t t0 = ps_time_ns();
    assert_int_equal(ps_ckpt_write(dir, &job, &t, ids, 1, NULL, 1, &err), PS_OK);
    double ms = (double)(ps_time_ns() - t0) / 1e6;
    char path[400];
    struct stat st;
    snprintf(path, sizeof path, "%s/demo/ckpt-%012d.psc", dir, 1);
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size > 117573 * 12);
    printf("demo shard checkpoint: %lld bytes written and fsynced in %.1f ms\n",
           (long long)st.st_size, ms);
    ps_table_destroy(&t);
}

/* Every field of the optimizer spec comes back from a checkpoint, the
 * regularisation of FTRL-style specs (l1, l2, ftrl_beta) included: a
 * restored shard must apply the same optimizer as before the crash. */
static void test_every_optimizer_field_round_trips(void **state)
{
    (void)state;
    uint64_t shape[1] = {8};
    float init[8] = {0};
    ps_optim_spec_t spec = {.kind = PS_OPTIM_ADAMW,
                            .lr = 0.25,
                            .momentum = 0.5,
                            .nesterov = true,
                            .beta1 = 0.8,
                            .beta2 = 0.95,
                            .eps = 1e-6,
                            .weight_decay = 0.01,
                            .rho = 0.7,
                            .schedule = PS_SCHED_COSINE,
                            .step_size = 17,
                            .gamma = 0.3,
                            .warmup_steps = 5,
                            .total_steps = 99,
                            .min_lr = 0.001,
                            .l1 = 0.125,
                            .l2 = 0.0625,
                            .ftrl_beta = 1.5};
    ps_table_params_t p = {.name = "opt",
                           .id = 4,
                           .n_total = 8,
                           .shape = shape,
                           .ndim = 1,
                           .offset = 0,
                           .len = 8,
                           .world = 1,
                           .max_staleness = 0,
                           .optim = spec};
    ps_errbuf_t err;
    ps_table_t *t = ps_table_new(&p, init, &err);
    assert_non_null(t);
    ps_ckpt_job_t job = {.job = "opt", .world = 1, .shard = 0, .n_shards = 1, .clock = 0};
    uint32_t ids[1] = {0};
    assert_int_equal(ps_ckpt_write(dir, &job, &t, ids, 1, NULL, 1, &err), PS_OK);
    ps_ckpt_t ck;
    assert_int_equal(ps_ckpt_load(dir, "opt", -1, &ck, &err), PS_OK);
    const ps_optim_spec_t *o = &ck.chunks[0].optim;
    assert_int_equal(o->kind, spec.kind);
    assert_true(o->lr == spec.lr && o->momentum == spec.momentum && o->nesterov);
    assert_true(o->beta1 == spec.beta1 && o->beta2 == spec.beta2 && o->eps == spec.eps);
    assert_true(o->weight_decay == spec.weight_decay && o->rho == spec.rho);
    assert_int_equal(o->schedule, spec.schedule);
    assert_int_equal(o->step_size, 17);
    assert_true(o->gamma == spec.gamma && o->min_lr == spec.min_lr);
    assert_int_equal(o->warmup_steps, 5);
    assert_int_equal(o->total_steps, 99);
    assert_true(o->l1 == spec.l1);
    assert_true(o->l2 == spec.l2);
    assert_true(o->ftrl_beta == spec.ftrl_beta);
    ps_ckpt_free(&ck);
    ps_table_destroy(&t);
}

/* After a rollback to clock c the newer files belong to an undone history:
 * they go, so a second crash never rolls back to a clock that no longer
 * exists on every shard. A job's end removes its own files only. */
static void test_rollback_leftovers_and_other_ids(void **state)
{
    (void)state;
    ps_table_t *t = make_table(10, 0.0f);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s/r", dir);
    assert_int_equal(system(cmd), 0);
    ps_ckpt_job_t job = {.job = "r", .world = 2, .shard = 0, .n_shards = 1, .id = 7};
    uint32_t ids[1] = {0};
    ps_errbuf_t err;
    for (int c = 10; c <= 40; c += 10) {
        job.clock = c;
        assert_int_equal(ps_ckpt_write(dir, &job, &t, ids, 1, NULL, 10, &err), PS_OK);
    }
    ps_ckpt_remove_after(dir, "r", 20);
    int64_t *clocks;
    int n = ps_ckpt_list_clocks(dir, "r", &clocks);
    assert_int_equal(n, 2);
    assert_int_equal(clocks[0], 10);
    assert_int_equal(clocks[1], 20);
    free(clocks);
    /* another job of the same name (id 8) writes clock 30 */
    job.id = 8;
    job.clock = 30;
    assert_int_equal(ps_ckpt_write(dir, &job, &t, ids, 1, NULL, 10, &err), PS_OK);
    ps_ckpt_remove_job_id(dir, "r", 7);
    n = ps_ckpt_list_clocks(dir, "r", &clocks);
    assert_int_equal(n, 1);
    assert_int_equal(clocks[0], 30);
    free(clocks);
    ps_ckpt_remove_job(dir, "r");
    ps_table_destroy(&t);
}

static ps_sparse_t *make_sparse(void)
{
    ps_sparse_params_t p = {.name = "emb",
                            .id = 1,
                            .dim = 3,
                            .seed = 5,
                            .init_scale = 0.1,
                            .world = 2,
                            .max_staleness = 0};
    p.optim = (ps_optim_spec_t){
        .kind = PS_OPTIM_ADAM, .lr = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    ps_errbuf_t err;
    ps_sparse_t *t = ps_sparse_new(&p, &err);
    assert_non_null(t);
    return t;
}

static void touch_keys(ps_sparse_t *t, uint64_t from, uint64_t to, float g)
{
    float grad[3] = {g, -g, 2 * g};
    for (uint64_t k = from; k <= to; k++)
        assert_int_equal(ps_sparse_apply(t, k, grad), PS_OK);
}

/* A checkpoint of the sparse table at clock, its rows all (base -1) or
 * those changed since base; then the rows are clean, as after a fork. */
static void write_sparse_at(ps_sparse_t *t, int64_t clock, int64_t base, int keep)
{
    ps_ckpt_job_t job = {
        .job = "sp", .world = 2, .shard = 0, .n_shards = 1, .clock = clock, .id = 11};
    ps_sparse_t *tables[1] = {t};
    ps_ckpt_sparse_set_t set = {tables, 1, base};
    ps_errbuf_t err;
    assert_int_equal(ps_ckpt_write(dir, &job, NULL, NULL, 0, &set, keep, &err), PS_OK);
    ps_sparse_clear_dirty(t);
}

typedef struct {
    uint64_t keys[256];
    float rows[256][16];
    uint32_t n, stride;
} rows_t;

static void collect(uint64_t key, const float *row, void *ctx)
{
    rows_t *r = ctx;
    assert_true(r->n < 256 && r->stride <= 16);
    r->keys[r->n] = key;
    memcpy(r->rows[r->n++], row, r->stride * sizeof(float));
}

static void rows_of(const ps_sparse_t *t, bool dirty_only, rows_t *r)
{
    ps_sparse_layout_t l;
    ps_sparse_layout(t, &l);
    memset(r, 0, sizeof *r);
    r->stride = l.stride;
    ps_sparse_each_row(t, dirty_only, collect, r);
}

/* Every row of a is in b, bit for bit, and they hold as many. */
static void assert_same_rows(const ps_sparse_t *a, const ps_sparse_t *b)
{
    static rows_t ra, rb;
    rows_of(a, false, &ra);
    rows_of(b, false, &rb);
    assert_int_equal(ra.n, ps_sparse_keys(a));
    assert_int_equal(ra.n, rb.n);
    for (uint32_t i = 0; i < ra.n; i++) {
        uint32_t j = 0;
        while (j < rb.n && rb.keys[j] != ra.keys[i])
            j++;
        assert_true(j < rb.n);
        assert_memory_equal(ra.rows[i], rb.rows[j], ra.stride * sizeof(float));
    }
}

static bool ckpt_exists(const char *job, int64_t clock)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s/ckpt-%012lld.psc", dir, job, (long long)clock);
    return access(path, F_OK) == 0;
}

static void test_sparse_full_and_incremental(void **state)
{
    (void)state;
    ps_sparse_t *t = make_sparse();
    touch_keys(t, 1, 100, 0.5f);
    write_sparse_at(t, 10, -1, 1);
    touch_keys(t, 50, 150, -0.25f); /* 51 updated, 50 made */
    assert_int_equal(ps_sparse_n_dirty(t), 101);
    static rows_t dirty;
    rows_of(t, true, &dirty);
    assert_int_equal(dirty.n, 101);
    for (uint32_t i = 0; i < dirty.n; i++)
        assert_true(dirty.keys[i] >= 50 && dirty.keys[i] <= 150);
    write_sparse_at(t, 20, 10, 1);
    touch_keys(t, 1, 5, 1.0f);
    write_sparse_at(t, 30, 20, 1);
    /* keep 1, but the newest is a delta on 20, itself one on 10 */
    assert_true(ckpt_exists("sp", 10) && ckpt_exists("sp", 20) && ckpt_exists("sp", 30));

    ps_ckpt_t ck;
    ps_errbuf_t err;
    assert_int_equal(ps_ckpt_load(dir, "sp", -1, &ck, &err), PS_OK);
    assert_int_equal(ck.job.clock, 30);
    assert_int_equal(ck.base_clock, 20);
    assert_non_null(ck.base);
    assert_non_null(ck.base->base);
    assert_int_equal(ck.n_sparse, 1);
    assert_int_equal(ck.sparse[0].n_rows, 5);
    assert_int_equal(ck.base->sparse[0].n_rows, 101);
    assert_int_equal(ck.base->base->sparse[0].n_rows, 100);
    ps_sparse_t *back = make_sparse();
    touch_keys(back, 1000, 1010, 3.0f); /* rows the restore must not mix in... */
    ps_sparse_clear(back);              /* ...once the table is emptied for it */
    assert_int_equal(ps_ckpt_sparse_rows(&ck, 1, back, &err), PS_OK);
    assert_same_rows(t, back);
    assert_int_equal(ps_sparse_n_dirty(back), 0);
    ps_ckpt_free(&ck);

    /* the middle of the chain lost: the newest cannot be read, the full
     * file under it can */
    char path[512];
    snprintf(path, sizeof path, "%s/sp/ckpt-%012d.psc", dir, 20);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(ps_ckpt_load(dir, "sp", -1, &ck, &err), PS_OK);
    assert_int_equal(ck.job.clock, 10);
    assert_null(ck.base);
    assert_int_equal(ck.sparse[0].n_rows, 100);
    ps_ckpt_free(&ck);
    assert_true(log_mentions("ckpt-000000000030.psc' skipped: a delta on"));

    /* a full file ends the chains before it */
    write_sparse_at(t, 40, -1, 1);
    assert_true(ckpt_exists("sp", 40));
    assert_false(ckpt_exists("sp", 30) || ckpt_exists("sp", 10));
    ps_ckpt_remove_job(dir, "sp");
    ps_sparse_destroy(&back);
    ps_sparse_destroy(&t);
}

static void copy_file(const char *from, const char *to)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    assert_int_equal(system(cmd), 0);
}

/* What a reviewer found: a base rewritten after its delta was written, a
 * file written below the newest clock (SSP clocks can fall), a file
 * renamed to another clock (a cycle), and a base of another shard. */
static void test_sparse_chain_links_are_checked(void **state)
{
    (void)state;
    ps_sparse_t *t = make_sparse();
    ps_ckpt_t ck;
    ps_errbuf_t err;
    char a[512], b[512];
    touch_keys(t, 1, 10, 0.5f);
    write_sparse_at(t, 10, -1, 5);
    touch_keys(t, 3, 4, 1.0f);
    write_sparse_at(t, 20, 10, 5);
    /* the base at 10 rewritten with other rows: the delta at 20 no longer
     * builds on what it was written on, so the load falls back to 10 */
    touch_keys(t, 5, 5, 2.0f);
    write_sparse_at(t, 10, -1, 5);
    assert_int_equal(ps_ckpt_load(dir, "sp", -1, &ck, &err), PS_OK);
    assert_int_equal(ck.job.clock, 10);
    ps_ckpt_free(&ck);
    assert_true(log_mentions("was rewritten since (another CRC)"));

    /* keep 1: a file written at clock 15, below the newest (20), stays,
     * and so does a delta on it */
    write_sparse_at(t, 15, -1, 1);
    assert_true(ckpt_exists("sp", 15));
    touch_keys(t, 6, 6, 1.0f);
    write_sparse_at(t, 16, 15, 1);
    assert_true(ckpt_exists("sp", 15) && ckpt_exists("sp", 16));
    assert_int_equal(ps_ckpt_load(dir, "sp", 16, &ck, &err), PS_OK);
    assert_int_equal(ck.base_clock, 15);
    ps_ckpt_free(&ck);

    /* the delta at 16 copied to the name of its own base: a cycle 15 -> 15
     * that must end in an error, not a stack overflow */
    snprintf(a, sizeof a, "%s/sp/ckpt-%012d.psc", dir, 16);
    snprintf(b, sizeof b, "%s/sp/ckpt-%012d.psc", dir, 15);
    copy_file(a, b);
    assert_int_equal(ps_ckpt_load(dir, "sp", 16, &ck, &err), PS_ENOJOB);
    assert_true(log_mentions("not the one its name says"));
    ps_ckpt_remove_job(dir, "sp");

    /* a delta on a full file of another shard (same job id) */
    ps_ckpt_job_t job = {.job = "sp", .world = 2, .shard = 1, .n_shards = 2, .clock = 10, .id = 11};
    ps_sparse_t *tables[1] = {t};
    ps_ckpt_sparse_set_t full = {tables, 1, -1}, delta = {tables, 1, 10};
    assert_int_equal(ps_ckpt_write(dir, &job, NULL, NULL, 0, &full, 5, &err), PS_OK);
    job.shard = 0;
    job.clock = 20;
    assert_int_equal(ps_ckpt_write(dir, &job, NULL, NULL, 0, &delta, 5, &err), PS_OK);
    assert_int_equal(ps_ckpt_load(dir, "sp", 20, &ck, &err), PS_ENOJOB);
    assert_true(log_mentions("is of another shard or world"));
    ps_ckpt_remove_job(dir, "sp");
    ps_sparse_destroy(&t);
}

/* A delta received whole (a replica) is stored only on top of its base
 * file with the CRC it names: else ENOCKPT, naming the base, and nothing
 * is stored. */
static void test_store_file_refuses_a_delta_without_its_base(void **state)
{
    (void)state;
    ps_sparse_t *t = make_sparse();
    touch_keys(t, 1, 20, 0.5f);
    write_sparse_at(t, 10, -1, 5);
    touch_keys(t, 5, 30, -0.5f);
    write_sparse_at(t, 20, 10, 5);
    void *b10, *b20;
    size_t l10, l20;
    ps_errbuf_t err;
    assert_int_equal(ps_ckpt_read_file(dir, "sp", 10, &b10, &l10, &err), PS_OK);
    assert_int_equal(ps_ckpt_read_file(dir, "sp", 20, &b20, &l20, &err), PS_OK);
    char held[600], path[700];
    snprintf(held, sizeof held, "%s/held", dir);
    snprintf(path, sizeof path, "%s/sp/ckpt-%012d.psc", held, 20);
    assert_int_equal(ps_ckpt_store_file(held, "sp", 20, 0, b20, l20, 5, &err), PS_ENOCKPT);
    assert_non_null(strstr(err.msg, "a delta on clock 10"));
    assert_non_null(strstr(err.msg, "missing"));
    assert_int_equal(access(path, F_OK), -1);
    /* a base of another CRC (rewritten since) will not do either */
    touch_keys(t, 1, 3, 2.0f);
    write_sparse_at(t, 10, -1, 5);
    void *other;
    size_t lo;
    assert_int_equal(ps_ckpt_read_file(dir, "sp", 10, &other, &lo, &err), PS_OK);
    assert_int_equal(ps_ckpt_store_file(held, "sp", 10, 0, other, lo, 5, &err), PS_OK);
    assert_int_equal(ps_ckpt_store_file(held, "sp", 20, 0, b20, l20, 5, &err), PS_ENOCKPT);
    assert_non_null(strstr(err.msg, "another one"));
    assert_int_equal(ps_ckpt_store_file(held, "sp", 10, 0, b10, l10, 5, &err), PS_OK);
    assert_int_equal(ps_ckpt_store_file(held, "sp", 20, 0, b20, l20, 5, &err), PS_OK);
    assert_int_equal(access(path, F_OK), 0);
    free(b10);
    free(b20);
    free(other);
    ps_ckpt_remove_job(held, "sp");
    rmdir(held);
    ps_ckpt_remove_job(dir, "sp");
    ps_sparse_destroy(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_corrupt_files_are_skipped),
        cmocka_unit_test(test_only_the_newest_k_are_kept),
        cmocka_unit_test(test_a_dead_writers_partial_file_is_deleted),
        cmocka_unit_test(test_demo_sized_checkpoint_is_written),
        cmocka_unit_test(test_every_optimizer_field_round_trips),
        cmocka_unit_test(test_rollback_leftovers_and_other_ids),
        cmocka_unit_test(test_sparse_full_and_incremental),
        cmocka_unit_test(test_sparse_chain_links_are_checked),
        cmocka_unit_test(test_store_file_refuses_a_delta_without_its_base),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
