/* ps_notify.h - systemd's sd_notify protocol without libsystemd: one
 * datagram to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or an
 * abstract name starting with '@'). Any thread. */
#ifndef PS_NOTIFY_H
#define PS_NOTIFY_H

#include <stdint.h>

/* Sends state ("READY=1", "STATUS=...", "WATCHDOG=1", lines joined by \n).
 * Returns 1 if sent, 0 if NOTIFY_SOCKET is unset, -1 on error. */
int ps_notify(const char *state);
/* Half of $WATCHDOG_USEC in ms (the ping period systemd asks for), or 0 if
 * the watchdog is off or meant for another process ($WATCHDOG_PID). */
int64_t ps_notify_watchdog_ms(void);

#endif
