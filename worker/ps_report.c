/* ps_report.c - see ps_report.h. */
#include "ps_report.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "ps_config.h"
#include "ps_doc.h"

void ps_report_start(uint64_t steps_per_epoch, uint64_t total_steps, size_t train_samples,
                     size_t val_samples, size_t test_samples)
{
    ps_event_t ev;
    ps_event_init(&ev, PS_EVENT_START);
    ps_event_set_int(&ev, PS_EF_STEPS_PER_EPOCH, (int64_t)steps_per_epoch);
    ps_event_set_int(&ev, PS_EF_TOTAL_STEPS, (int64_t)total_steps);
    ps_event_set_int(&ev, PS_EF_TRAIN_SAMPLES, (int64_t)train_samples);
    ps_event_set_int(&ev, PS_EF_VAL_SAMPLES, (int64_t)val_samples);
    ps_event_set_int(&ev, PS_EF_TEST_SAMPLES, (int64_t)test_samples);
    ps_event_print(&ev, stdout);
    ps_event_fini(&ev);
}

void ps_report_metrics(ps_event_t *ev, ps_eval_set_t set, const ps_net_eval_t *e,
                       ps_net_task_t task)
{
    bool test = set == PS_EVAL_TEST;
    ps_event_set_num(ev, test ? PS_EF_TEST_LOSS : PS_EF_VAL_LOSS, e->loss);
    if (task == PS_NET_REGRESSOR)
        ps_event_set_num(ev, test ? PS_EF_TEST_MAE : PS_EF_VAL_MAE, e->mae);
    else
        ps_event_set_num(ev, test ? PS_EF_TEST_ACCURACY : PS_EF_VAL_ACCURACY, e->accuracy);
    if (task == PS_NET_LANGUAGE_MODEL)
        ps_event_set_num(ev, test ? PS_EF_TEST_BPB : PS_EF_VAL_BPB, e->bits_per_byte);
    if (e->auc > 0)
        ps_event_set_num(ev, test ? PS_EF_TEST_AUC : PS_EF_VAL_AUC, e->auc);
}

const char *ps_report_metrics_text(const char *set, const ps_net_eval_t *e, ps_net_task_t task,
                                   char *buf, size_t cap)
{
    static const char *const second[] = {
        [PS_NET_CLASSIFIER] = "acc", [PS_NET_REGRESSOR] = "mae", [PS_NET_LANGUAGE_MODEL] = "bpb"};
    double v = task == PS_NET_CLASSIFIER  ? e->accuracy
               : task == PS_NET_REGRESSOR ? e->mae
                                          : e->bits_per_byte;
    snprintf(buf, cap, "%s_loss %.4f %s_%s %.4f", set, e->loss, set, second[task], v);
    return buf;
}

int64_t ps_report_peak_rss_bytes(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (int64_t)ru.ru_maxrss * 1024; /* Linux: kilobytes */
}

void ps_report_proc_io(int64_t *rchar, int64_t *read_bytes)
{
    *rchar = *read_bytes = 0;
    FILE *f = fopen("/proc/self/io", "r");
    if (!f)
        return;
    char line[128];
    long long v;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "rchar: %lld", &v) == 1)
            *rchar = v;
        else if (sscanf(line, "read_bytes: %lld", &v) == 1)
            *read_bytes = v;
    }
    fclose(f);
}

void ps_report_summary(ps_event_t *ev, const ps_worker_config_t *cfg, uint32_t rank, uint32_t world,
                       int64_t epochs, int64_t steps, uint64_t samples, double wall_s,
                       const ps_client_t *client)
{
    ps_event_init(ev, PS_EVENT_DONE);
    ps_event_set_str(ev, PS_EF_MODEL, ps_worker_model_name(cfg));
    ps_event_set_str(ev, PS_EF_PRECISION, ps_enum_name(ps_precision_names, cfg->precision, "?"));
    ps_event_set_int(ev, PS_EF_SKIPPED_STEPS, 0);
    ps_event_set_int(ev, PS_EF_RANK, rank);
    ps_event_set_int(ev, PS_EF_WORLD, world);
    ps_event_set_int(ev, PS_EF_EPOCHS, epochs);
    ps_event_set_int(ev, PS_EF_STEPS, steps);
    ps_event_set_int(ev, PS_EF_SAMPLES, (int64_t)samples);
    ps_event_set_num(ev, PS_EF_WALL_S, wall_s);
    ps_event_set_num(ev, PS_EF_SAMPLES_PER_S, wall_s > 0 ? (double)samples / wall_s : 0);
    ps_event_set_int(ev, PS_EF_BYTES_SENT, (int64_t)ps_client_bytes_sent(client));
    ps_event_set_int(ev, PS_EF_BYTES_RECEIVED, (int64_t)ps_client_bytes_received(client));
    ps_event_set_int(ev, PS_EF_SHM_REQUESTS, (int64_t)ps_client_shm_requests(client));
    ps_event_set_int(ev, PS_EF_BELL_REQUESTS, (int64_t)ps_client_bell_requests(client));
    ps_event_set_int(ev, PS_EF_PEAK_RSS_BYTES, ps_report_peak_rss_bytes());
}

static const ps_col_t table_cols[] = {
    {"id", NULL, 3, 0, 0, false},
    {"name", NULL, -12, 0, 0, false},
    {"shape", NULL, -14, 0, 0, false},
    {"elems", NULL, 12, 0, 0, false},
};

void ps_report_static(ps_statsd_t *sd, const ps_worker_config_t *cfg, const ps_net_t *net)
{
    ps_rows_t *t = ps_rows_new(table_cols, sizeof table_cols / sizeof table_cols[0]);
    for (uint32_t id = 0; id < ps_net_n_tables(net); id++) {
        char name[64], dims[96];
        uint64_t shape[PS_TABLE_MAX_DIMS];
        int nd = ps_net_table_shape(net, id, shape);
        size_t len = 0;
        for (int k = 0; k < nd; k++)
            len += (size_t)snprintf(dims + len, sizeof dims - len, "%s%llu", k ? "x" : "",
                                    (unsigned long long)shape[k]);
        ps_rows_add(t);
        ps_rows_int(t, id);
        ps_rows_str(t, ps_net_table_name(net, id, name, sizeof name));
        ps_rows_str(t, dims);
        ps_rows_int(t, (int64_t)ps_net_table_len(net, id));
    }
    ps_statsd_publish(sd, PS_STATS_TABLES, ps_rows_text(t), ps_rows_json(t));
    ps_rows_destroy(&t);
    size_t need = ps_config_format(&ps_worker_optset, cfg, NULL, 0);
    char *text = ps_xmalloc(need + 1);
    ps_config_format(&ps_worker_optset, cfg, text, need + 1);
    ps_statsd_publish(sd, PS_STATS_CONFIG, text, ps_config_json(&ps_worker_optset, cfg));
    ps_statsd_publish(sd, PS_STATS_WORKERS,
                      ps_xstrdup("this is a worker: ask a server for show workers\n"), NULL);
}

#define COUNTER(n, h) (&(ps_metric_t){n, PS_METRIC_COUNTER, h, {NULL}})
#define GAUGE(n, h) (&(ps_metric_t){n, PS_METRIC_GAUGE, h, {NULL}})

void ps_report_progress(ps_statsd_t *sd, const ps_worker_config_t *c, uint32_t rank, uint32_t world,
                        const ps_progress_t *p)
{
    char rank_s[16];
    snprintf(rank_s, sizeof rank_s, "%u", rank);
    ps_doc_t *d = ps_doc_new();
    ps_doc_section(d, "worker");
    ps_doc_str(d, "version", PS_VERSION);
    ps_doc_metric_only(d, 1,
                       &(ps_metric_t){"ps_build_info",
                                      PS_METRIC_GAUGE,
                                      "Build of this ps-worker.",
                                      {"version", PS_VERSION, "role", "worker", "rank", rank_s}});
    ps_doc_int(d, "pid", getpid(), NULL);
    ps_doc_real(d, "uptime_s", p->uptime_s, 1, NULL);
    ps_doc_str(d, "role", "worker");
    ps_doc_str(d, "job", c->job);
    ps_doc_int(d, "rank", rank, NULL);
    ps_doc_int(d, "world", world, NULL);
    ps_doc_str(d, "model", ps_worker_model_name(c));
    ps_doc_str(d, "precision", ps_enum_name(ps_precision_names, c->precision, "?"));
    ps_doc_section(d, "progress");
    ps_doc_int(d, "epoch", p->epoch, NULL);
    ps_doc_int(d, "epochs", c->epochs, NULL);
    ps_doc_int(d, "clock", p->clock, GAUGE("ps_worker_clock", "Steps pushed."));
    ps_doc_int(d, "samples", (int64_t)p->samples,
               COUNTER("ps_worker_samples_total", "Samples trained."));
    ps_doc_real(d, "samples_per_s", p->samples_per_s, 1, NULL);
    ps_doc_real(d, "loss", p->loss, 6,
                GAUGE("ps_worker_loss", "Mean training loss of the current epoch."));
    ps_doc_real(d, "loss_scale", p->loss_scale, 1, NULL);
    ps_doc_int(d, "skipped_steps", (int64_t)p->skipped_steps, NULL);
    ps_doc_int(d, "recoveries", p->recoveries, NULL);
    ps_doc_section(d, "network");
    ps_doc_int(d, "bytes_sent", (int64_t)p->bytes_sent,
               COUNTER("ps_sent_bytes_total", "Bytes sent to servers."));
    ps_doc_int(d, "bytes_received", (int64_t)p->bytes_received,
               COUNTER("ps_received_bytes_total", "Bytes received from servers."));
    ps_doc_int(d, "requests", (int64_t)p->requests, NULL);
    ps_statsd_publish(sd, PS_STATS_INFO, ps_doc_text(d), ps_doc_json(d));
    ps_statsd_publish(sd, PS_STATS_METRICS, ps_doc_prometheus(d), NULL);
    ps_doc_destroy(&d);
}

void ps_report_stream(ps_event_t *ev, ps_stream_t *s)
{
    int64_t rchar, read_bytes;
    ps_report_proc_io(&rchar, &read_bytes);
    ps_event_set_num(ev, PS_EF_READER_WAIT_S, ps_stream_wait_s(s));
    ps_event_set_int(ev, PS_EF_DATA_BYTES, (int64_t)ps_stream_bytes_read(s));
    ps_event_set_int(ev, PS_EF_IO_RCHAR, rchar);
    ps_event_set_int(ev, PS_EF_IO_READ_BYTES, read_bytes);
    ps_event_set_num(ev, PS_EF_READER_CPU_S, ps_stream_reader_cpu_s(s));
}
