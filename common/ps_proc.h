/* ps_proc.h - process plumbing shared by the binaries' main(). */
#ifndef PS_PROC_H
#define PS_PROC_H

/* Routes SIGTERM and SIGINT to on_stop (which should only set a flag) and
 * ignores SIGPIPE, so a vanished peer is an error return, not a death. */
void ps_proc_on_stop(void (*on_stop)(int));
/* Routes SIGHUP to on_reload (which should only set a flag). */
void ps_proc_on_reload(void (*on_reload)(int));

#endif
