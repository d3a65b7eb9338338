/* ps_time.c - monotonic clock helpers. */
#include "ps_time.h"

#include <sys/time.h>
#include <time.h>

int64_t ps_time_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t ps_time_ms(void)
{
    return ps_time_ns() / 1000000;
}

double ps_time_wall_s(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

int64_t ps_deadline_left_ms(int64_t deadline_ms)
{
    int64_t left = deadline_ms - ps_time_ms();
    return left > 0 ? left : 0;
}
