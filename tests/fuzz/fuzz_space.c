/* fuzz_space.c - any bytes as a ps-tune space file: tune_load_space must
 * refuse it (-1) or give parameters whose every draw is well formed (a
 * range with lo <= hi, choices within their count, a value that fits). */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "tune.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    if (fd < 0)
        return 0;
    static study_t st;
    memset(&st, 0, sizeof st);
    st.o.seed = 1;
    st.o.grid_points = 3;
    if (tune_load_space(&st, path) == 0) {
        if (st.n_params > TUNE_MAX_PARAMS)
            __builtin_trap();
        for (int i = 0; i < st.n_params; i++) {
            const param_t *p = &st.params[i];
            if ((p->kind == P_CHOICE && (p->n_choices < 1 || p->n_choices > TUNE_MAX_CHOICES)) ||
                ((p->kind == P_INT || p->kind == P_FLOAT || p->kind == P_LOG) && !(p->lo <= p->hi)) ||
                !memchr(p->name, '\0', sizeof p->name))
                __builtin_trap();
        }
        for (int id = 0; id < 4; id++) {
            trial_t t;
            memset(&t, 0, sizeof t);
            tune_sample(&st, id, &t);
            for (int i = 0; i < st.n_params; i++)
                if (!memchr(t.values[i], '\0', sizeof t.values[i]))
                    __builtin_trap();
        }
    }
    close(fd);
    return 0;
}
