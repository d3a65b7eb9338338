/* fuzz_event.c - any bytes as an event line on a worker's stdout, which
 * ps-launch and ps-tune parse (a --worker-command is a foreign program and
 * may print anything). A line that parses must format and parse back to
 * the same event: its kind, every field it has, their numbers (to the
 * 10 significant digits events are printed with). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ps_event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = malloc(size + 1);
    if (!line)
        return 0;
    memcpy(line, data, size);
    line[size] = '\0';
    ps_event_t ev, back;
    if (ps_event_parse(line, &ev) == 0) {
        char *text = ps_event_format(&ev);
        if (ps_event_parse(text, &back) != 0 || back.kind != ev.kind)
            __builtin_trap();
        for (int f = 0; f < PS_EF_COUNT; f++) {
            if (ps_event_has(&ev, f) != ps_event_has(&back, f))
                __builtin_trap();
            double a = ps_event_num(&ev, f, 0), b = ps_event_num(&back, f, 0);
            if (fabs(a - b) > 1e-9 * fabs(a))
                __builtin_trap();
        }
        ps_event_fini(&back);
        free(text);
    }
    ps_event_fini(&ev);
    free(line);
    return 0;
}
