/* ps_proc.c - signal setup for the daemons and tools. */
#include "ps_proc.h"

#include <signal.h>
#include <string.h>

void ps_proc_on_stop(void (*on_stop)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

void ps_proc_on_reload(void (*on_reload)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_reload;
    sigaction(SIGHUP, &sa, NULL);
}
