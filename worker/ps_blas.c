/* ps_blas.c - run-time choice of OpenBLAS's kernel set (see ps_blas.h). */
#include "ps_blas.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ps_log.h"

/* OpenBLAS extension, declared here because Debian's cblas.h may not. */
extern char *openblas_get_corename(void);

const char *const ps_blas_core_names[] = {PS_BLAS_CORE_MAP(PS_ENUM_NAME) NULL};

/* Set by the run that executed itself again, read by the next run: what
 * OpenBLAS had picked on its own, so the log can say why kernels changed. */
#define PS_BLAS_PICKED_ENV "PS_BLAS_OPENBLAS_PICKED"

const char *ps_blas_core_running(void)
{
    const char *name = openblas_get_corename();
    return name ? name : "unknown";
}

static int cpu_runs_avx512(void)
{
#if defined(__x86_64__) || defined(__i386__)
    /* GCC's checks include the OS's XCR0 bits, so a hypervisor that hides
     * the AVX-512 register state makes these false. */
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}

static int cpu_runs_avx2(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

const char *ps_blas_auto_core(const char *picked)
{
    if (strcmp(picked, "Prescott") != 0)
        return picked;
    if (cpu_runs_avx512())
        return "SkylakeX";
    if (cpu_runs_avx2())
        return "Haswell";
    return picked;
}

void ps_blas_select(const char *prog, ps_blas_core_t choice, char **argv)
{
    const char *running = ps_blas_core_running();
    const char *user = getenv("OPENBLAS_CORETYPE");
    const char *picked_before = getenv(PS_BLAS_PICKED_ENV);
    if (picked_before) {
        /* The second run: say what the first one did, then forget it so
         * programs this one starts do not repeat it. */
        ps_log(PS_LOG_INFO, "%s: OpenBLAS picked '%s' for this CPU; blas_core %s runs '%s'", prog,
               picked_before, ps_blas_core_names[choice], user ? user : "?");
        if (user && strcmp(running, user) != 0)
            ps_log(PS_LOG_WARN, "%s: OpenBLAS did not take OPENBLAS_CORETYPE=%s", prog, user);
        unsetenv(PS_BLAS_PICKED_ENV);
        return;
    }
    const char *want = choice == PS_BLAS_CORE_AUTO       ? ps_blas_auto_core(running)
                       : choice == PS_BLAS_CORE_OPENBLAS ? running
                                                         : ps_blas_core_names[choice];
    if (user || strcmp(want, running) == 0) {
        if (user)
            ps_log(PS_LOG_INFO, "%s: OpenBLAS core '%s' (OPENBLAS_CORETYPE=%s is set)", prog,
                   running, user);
        else if (strcmp(running, "Prescott") == 0 && strcmp(ps_blas_auto_core(running), running))
            ps_log(PS_LOG_INFO,
                   "%s: OpenBLAS core 'Prescott' are its generic kernels; "
                   "blas_core auto would run '%s' on this CPU",
                   prog, ps_blas_auto_core(running));
        return;
    }
    if (setenv("OPENBLAS_CORETYPE", want, 1) != 0 || setenv(PS_BLAS_PICKED_ENV, running, 1) != 0) {
        ps_log(PS_LOG_WARN, "%s: cannot set OPENBLAS_CORETYPE: %s; running OpenBLAS core '%s'",
               prog, strerror(errno), running);
        return;
    }
    /* The binary's own path, not /proc/self/exe: the kernel names the
     * process after the file executed, and ps, top and journald should
     * still see ps-worker, not "exe". */
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len > 0) {
        self[len] = '\0';
        execv(self, argv);
    }
    ps_log(PS_LOG_WARN,
           "%s: cannot execute itself again with OPENBLAS_CORETYPE=%s: %s; running "
           "OpenBLAS core '%s'",
           prog, want, strerror(errno), running);
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv(PS_BLAS_PICKED_ENV);
}
