/* ps_blas.h - which OpenBLAS kernel set runs, chosen at run time.
 *
 * Debian's OpenBLAS 0.3.21 is built for every x86 family and picks one
 * kernel set when the library loads, from the CPU's model number. CPUs
 * newer than the library (Sapphire Rapids, for one) get the generic
 * 'Prescott' kernels: sgemm about 2.5x slower although the CPU runs
 * AVX-512. OpenBLAS reads only OPENBLAS_CORETYPE, and only while it loads,
 * so the one way for a running program to get other kernels is to set that
 * variable and execute itself again (same PID, same arguments, same
 * descriptors). ps_blas_select does that, once, before any work. */
#ifndef PS_BLAS_H
#define PS_BLAS_H

#include "ps_enum.h"

/* auto: keep OpenBLAS's pick unless it is Prescott on a CPU that runs
 * AVX2 or AVX-512 (then Haswell or SkylakeX); openblas: always keep
 * OpenBLAS's pick; a family name: run that kernel set. */
#define PS_BLAS_CORE_MAP(XX)     \
    XX(AUTO, "auto")             \
    XX(OPENBLAS, "openblas")     \
    XX(PRESCOTT, "Prescott")     \
    XX(HASWELL, "Haswell")       \
    XX(SKYLAKEX, "SkylakeX")     \
    XX(COOPERLAKE, "Cooperlake") \
    XX(ZEN, "Zen")
#define PS_BLAS_CORE_MEMBER(e, s) PS_ENUM_MEMBER(PS_BLAS_CORE_, e)
typedef enum { PS_BLAS_CORE_MAP(PS_BLAS_CORE_MEMBER) } ps_blas_core_t;
extern const char *const ps_blas_core_names[];

/* The kernel set OpenBLAS is running ("Prescott", "SkylakeX", ...). */
const char *ps_blas_core_running(void);

/* The kernel set `auto` picks for this CPU given that OpenBLAS picked
 * `picked`: "SkylakeX" if picked is "Prescott" and the CPU and the OS run
 * AVX-512 F, CD, BW, DQ and VL; "Haswell" if picked is "Prescott" and they
 * run AVX2 and FMA; otherwise picked itself. Never NULL. */
const char *ps_blas_auto_core(const char *picked);

/* Makes the kernel set the one `choice` asks for, before any BLAS work;
 * prog names the program in the log. If that differs from what runs and
 * OPENBLAS_CORETYPE is unset (a value the user set wins, and the variable
 * being set is what stops a second round), sets OPENBLAS_CORETYPE and
 * executes its own binary (/proc/self/exe's target) with argv: it returns only when nothing had to
 * change or the exec failed (logged as a warning; the job runs on with the
 * kernels it has). Logs one line saying which kernels run and why; call
 * after ps_log_init and before starting threads or opening files. */
void ps_blas_select(const char *prog, ps_blas_core_t choice, char **argv);

#endif
