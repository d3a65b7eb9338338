/* ps_trainer_report.c - what the dense trainer reports: its epoch and
 * evaluation events and log lines, with the metrics of its data sets. */
#include <stdio.h>

#include "ps_log.h"
#include "ps_report.h"
#include "ps_time.h"
#include "ps_trainer_int.h"

/* The metrics of ds (test or validation set) into ev; nothing if the set
 * is empty. */
void pswk_add_metrics(const trainer_t *tr, const ps_dataset_t *ds, ps_eval_set_t set,
                      ps_event_t *ev)
{
    if (!ds->n)
        return;
    ps_net_eval_t e;
    ps_net_evaluate(tr->net, ds, &e);
    ps_report_metrics(ev, set, &e, ps_net_task(tr->net));
}

/* reader_s: the time training waited for the data reader (a stream), or < 0. */
void pswk_report_epoch(trainer_t *tr, int64_t epoch, double train_loss, uint64_t n, double epoch_s,
                       double wait_s, double reader_s, bool evaluate)
{
    ps_event_t ev;
    ps_event_init(&ev, PS_EVENT_EPOCH);
    char human[128] = "";
    if (evaluate && tr->test.n) {
        ps_net_eval_t e;
        ps_net_evaluate(tr->net, &tr->test, &e);
        human[0] = ' ';
        ps_report_metrics_text("test", &e, ps_net_task(tr->net), human + 1, sizeof human - 1);
        ps_report_metrics(&ev, PS_EVAL_TEST, &e, ps_net_task(tr->net));
    }
    if (pswk_is_lead(tr))
        pswk_add_metrics(tr, &tr->val, PS_EVAL_VAL, &ev);
    double sps = epoch_s > 0 ? (double)n * tr->world / epoch_s : 0;
    char reader[64] = "";
    if (reader_s >= 0)
        snprintf(reader, sizeof reader, ", %.3f s for data", reader_s);
    ps_log(pswk_is_lead(tr) || reader_s >= 0 ? PS_LOG_INFO : PS_LOG_DEBUG,
           "worker %u: epoch %lld/%lld train_loss %.4f%s samples/s %.0f (%.2f s, %.2f s of it "
           "waiting for the servers%s)",
           tr->rank, (long long)epoch, (long long)tr->cfg->epochs, train_loss, human, sps, epoch_s,
           wait_s, reader);
    ps_event_set_int(&ev, PS_EF_RANK, tr->rank);
    ps_event_set_num(&ev, PS_EF_EPOCH, (double)epoch);
    ps_event_set_int(&ev, PS_EF_STEPS, tr->clock);
    ps_event_set_num(&ev, PS_EF_TRAIN_LOSS, train_loss);
    ps_event_set_num(&ev, PS_EF_EPOCH_S, epoch_s);
    ps_event_set_num(&ev, PS_EF_SERVER_WAIT_S, wait_s);
    ps_event_set_num(&ev, PS_EF_SAMPLES_PER_S, sps);
    if (reader_s >= 0)
        ps_event_set_num(&ev, PS_EF_READER_WAIT_S, reader_s);
    ps_event_print(&ev, stdout);
    ps_event_fini(&ev);
}

/* Mid-epoch evaluation for learning curves and time-to-accuracy figures;
 * wall_s counts from the start of training (after setup). */
void pswk_report_eval(trainer_t *tr)
{
    if (!tr->test.n && !tr->val.n)
        return;
    ps_event_t ev;
    ps_event_init(&ev, PS_EVENT_EVAL);
    ps_event_set_int(&ev, PS_EF_RANK, tr->rank);
    ps_event_set_int(&ev, PS_EF_STEPS, tr->clock);
    ps_event_set_num(&ev, PS_EF_EPOCH,
                     tr->stream ? (double)tr->epochs_seen
                                : (double)tr->clock / (double)pswk_steps_per_epoch(tr));
    pswk_add_metrics(tr, &tr->val, PS_EVAL_VAL, &ev);
    pswk_add_metrics(tr, &tr->test, PS_EVAL_TEST, &ev);
    ps_event_set_num(&ev, PS_EF_WALL_S, ps_time_wall_s() - tr->t_train);
    ps_event_print(&ev, stdout);
    ps_event_fini(&ev);
}
