/* fuzz_journal.c - any bytes as a study's journal.jsonl replayed by
 * ps-tune --resume: tune_replay must take the lines that are trials of the
 * study and skip the rest, never reading or writing out of bounds, and
 * the report must still be written from whatever it took. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ps_log.h"
#include "tune.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!*dir) {
        snprintf(dir, sizeof dir, "/tmp/fuzz-journal.XXXXXX");
        if (!mkdtemp(dir))
            return 0;
        ps_log_init("fuzz", PS_LOG_ERROR);
    }
    char path[128];
    snprintf(path, sizeof path, "%s/journal.jsonl", dir);
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    static study_t st;
    memset(&st, 0, sizeof st);
    snprintf(st.o.study, sizeof st.o.study, "%s", dir);
    st.o.strategy = TUNE_HYPERBAND;
    st.o.max_trials = 6;
    st.o.executions = 2;
    st.o.epochs = 9;
    st.o.eta = 3;
    st.o.seed = 1;
    st.o.best_n = 0;
    st.n_params = 1;
    st.params[0] = (param_t){.kind = P_LOG, .lo = 1e-3, .hi = 1e-1};
    snprintf(st.params[0].name, sizeof st.params[0].name, "lr");
    if (tune_plan(&st) != 0)
        __builtin_trap();
    int n = tune_replay(&st);
    if (n < 0 || n > st.n_trials * (int)st.o.executions * 1000000)
        __builtin_trap();
    free(st.trials);
    free(st.exec_done);
    for (int k = 0; k < TUNE_MAX_RUNGS; k++)
        free(st.rung_seen[k]);
    return 0;
}
