/* ps_time.h - monotonic clock and deadlines; any thread. */
#ifndef PS_TIME_H
#define PS_TIME_H

#include <stdint.h>

/* Milliseconds / nanoseconds of CLOCK_MONOTONIC. */
int64_t ps_time_ms(void);
int64_t ps_time_ns(void);
/* Seconds since the epoch, as a double (wall clock, for summaries). */
double ps_time_wall_s(void);
/* Milliseconds left until deadline_ms (a ps_time_ms() value), never below 0. */
int64_t ps_deadline_left_ms(int64_t deadline_ms);

#endif
