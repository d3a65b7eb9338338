/* ps_optim.c - optimizer kernels. Each kernel is one tight loop over the
 * slice that the compiler vectorises; the per-update scalars (lr, bias
 * corrections) are computed once outside it. */
#include "ps_optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "ps_err.h"

size_t ps_optim_state_bytes_per_elem(ps_optim_kind_t kind)
{
    switch (kind) {
    case PS_OPTIM_SGD:
        return 0;
    case PS_OPTIM_ADAM:
    case PS_OPTIM_ADAMW:
        return 8;
    default:
        return 4;
    }
}

int ps_optim_init(ps_optim_t *opt, const ps_optim_spec_t *spec, size_t len)
{
    memset(opt, 0, sizeof *opt);
    opt->spec = *spec;
    opt->len = len;
    size_t per = ps_optim_state_bytes_per_elem(spec->kind) / sizeof(float);
    if (per >= 1 && !(opt->m = calloc(len ? len : 1, sizeof(float))))
        return PS_ENOMEM;
    if (per >= 2 && !(opt->v = calloc(len ? len : 1, sizeof(float)))) {
        ps_optim_fini(opt);
        return PS_ENOMEM;
    }
    return PS_OK;
}

void ps_optim_fini(ps_optim_t *opt)
{
    free(opt->m);
    free(opt->v);
    opt->m = opt->v = NULL;
}

double ps_optim_lr(const ps_optim_spec_t *s, uint64_t t)
{
    if (s->warmup_steps && t < s->warmup_steps)
        return s->lr * (double)(t + 1) / (double)s->warmup_steps;
    uint64_t u = t - s->warmup_steps;
    switch (s->schedule) {
    case PS_SCHED_STEP:
        return s->lr * pow(s->gamma, (double)(u / s->step_size));
    case PS_SCHED_COSINE: {
        double frac = u >= s->total_steps ? 1.0 : (double)u / (double)s->total_steps;
        return s->min_lr + (s->lr - s->min_lr) * 0.5 * (1.0 + cos(M_PI * frac));
    }
    default:
        return s->lr;
    }
}

/* Subnormal floats are flushed to zero while a step runs (FTZ and DAZ):
 * Adam's first moment of a weight whose input is rarely non-zero (a border
 * pixel) decays by beta1 a step into the subnormal range, where every
 * operation on it takes a microcode assist of about a hundred cycles. On
 * the Fashion-MNIST MLP that made the shard's Adam a fifth of a 1 x 1
 * job's CPU after 750 steps, and the job 1.7x slower. A subnormal is below
 * 1.2e-38: flushing it moves no weight by anything a float of its size can
 * show. TensorFlow's CPU kernels run with the same flags. The control
 * register is written only if the flags are not set already, so a caller
 * that brackets many small steps (sparse rows) pays for it once. Other
 * CPUs than x86 (SSE) run the steps as they are. */
#define FLUSH_FLAGS (_MM_FLUSH_ZERO_ON | 0x0040u /* DAZ */)

ps_optim_fp_t ps_optim_fp_enter(void)
{
#if defined(__SSE__)
    unsigned int csr = _mm_getcsr();
    if ((csr & FLUSH_FLAGS) != FLUSH_FLAGS) {
        _mm_setcsr(csr | FLUSH_FLAGS);
        return (ps_optim_fp_t){csr, true};
    }
#endif
    return (ps_optim_fp_t){0, false};
}

void ps_optim_fp_leave(ps_optim_fp_t fp)
{
#if defined(__SSE__)
    if (fp.changed)
        _mm_setcsr(fp.saved);
#else
    (void)fp;
#endif
}

/* The update's kernels, inlined twice into ps_optim_step_to below: once
 * with more == NULL and once without, so each copy's loops read one or two
 * gradient streams and no loop tests which (GCC unswitches loops only at
 * -O3). GRAD(i) is the summed gradient in the order a separate pass would
 * add it, so a fused round is bitwise the one it replaces. */
#define GRAD(i) (more ? g[i] + more[i] : g[i])
static inline __attribute__((always_inline)) void step_kernel(ps_optim_t *opt, const float *src,
                                                              float *dst, const float *restrict g,
                                                              const float *restrict more,
                                                              float scale)
{
    const ps_optim_spec_t *s = &opt->spec;
    const size_t n = opt->len;
    const float lr = (float)ps_optim_lr(s, opt->t);
    const float wd = (float)s->weight_decay;
    float *restrict m = opt->m, *restrict v = opt->v;
    opt->t++;

    switch (s->kind) {
    case PS_OPTIM_SGD:
        for (size_t i = 0; i < n; i++)
            dst[i] = src[i] - lr * (GRAD(i) * scale + wd * src[i]);
        break;
    case PS_OPTIM_MOMENTUM: {
        const float mu = (float)s->momentum;
        if (s->nesterov) {
            for (size_t i = 0; i < n; i++) {
                float gi = GRAD(i) * scale + wd * src[i];
                m[i] = mu * m[i] + gi;
                dst[i] = src[i] - lr * (gi + mu * m[i]);
            }
        } else {
            for (size_t i = 0; i < n; i++) {
                m[i] = mu * m[i] + GRAD(i) * scale + wd * src[i];
                dst[i] = src[i] - lr * m[i];
            }
        }
        break;
    }
    case PS_OPTIM_ADAGRAD: {
        const float eps = (float)s->eps;
        for (size_t i = 0; i < n; i++) {
            float gi = GRAD(i) * scale + wd * src[i];
            m[i] += gi * gi;
            dst[i] = src[i] - lr * gi / (sqrtf(m[i]) + eps);
        }
        break;
    }
    case PS_OPTIM_RMSPROP: {
        const float rho = (float)s->rho, eps = (float)s->eps;
        for (size_t i = 0; i < n; i++) {
            float gi = GRAD(i) * scale + wd * src[i];
            m[i] = rho * m[i] + (1 - rho) * gi * gi;
            dst[i] = src[i] - lr * gi / (sqrtf(m[i]) + eps);
        }
        break;
    }
    case PS_OPTIM_ADAM:
    case PS_OPTIM_ADAMW: {
        const float b1 = (float)s->beta1, b2 = (float)s->beta2, eps = (float)s->eps;
        const double t = (double)opt->t;
        const float step = (float)((double)lr / (1.0 - pow(s->beta1, t)));
        const float inv_bc2 = (float)(1.0 / sqrt(1.0 - pow(s->beta2, t)));
        const float l2 = s->kind == PS_OPTIM_ADAM ? wd : 0.0f;
        const float decay = s->kind == PS_OPTIM_ADAMW ? 1.0f - lr * wd : 1.0f;
        for (size_t i = 0; i < n; i++) {
            float gi = GRAD(i) * scale + l2 * src[i];
            m[i] = b1 * m[i] + (1 - b1) * gi;
            v[i] = b2 * v[i] + (1 - b2) * gi * gi;
            dst[i] = src[i] * decay - step * m[i] / (sqrtf(v[i]) * inv_bc2 + eps);
        }
        break;
    }
    case PS_OPTIM_FTRL: /* sparse tables only (ps_sparse.c); dense specs refuse it */
        break;
    }
}
#undef GRAD

/* src and dst may be the same array, so neither is restrict; GCC checks
 * for overlap at run time and still takes the vector loop. Built twice, for
 * AVX2 and for the x86-64 baseline, picked at load time: 8 lanes instead of
 * 4, and the same IEEE operations (no FMA), so results do not depend on the
 * CPU. GCC only: clang 14 names the dispatcher so that other files' calls
 * do not link. Not under ThreadSanitizer: the resolver runs while the
 * dynamic linker relocates, before TSan's runtime is up, and crashed there. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
__attribute__((target_clones("avx2", "default")))
#endif
void ps_optim_step_to(ps_optim_t *opt, const float *src, float *dst, const float *restrict g,
                      const float *restrict more, float scale)
{
    ps_optim_fp_t fp = ps_optim_fp_enter();
    if (more)
        step_kernel(opt, src, dst, g, more, scale);
    else
        step_kernel(opt, src, dst, g, NULL, scale);
    ps_optim_fp_leave(fp);
}

void ps_optim_step(ps_optim_t *opt, float *w, const float *g, float scale)
{
    ps_optim_step_to(opt, w, w, g, NULL, scale);
}
