/* ps_half.c - half-precision conversions.
 *
 * Scalar fp32 -> fp16 works on the bit pattern: rebias the exponent, then
 * round the dropped mantissa bits to nearest-even; values below the normal
 * range are shifted into a subnormal with the same rounding. bf16 is the top
 * half of an fp32 with the low half rounded to nearest-even.
 * Vector paths are compiled with target attributes, so the library builds
 * for any x86-64 and picks them only if the CPU has them. */
#include "ps_half.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define PS_HAVE_X86 1
#endif

static int force_scalar;

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t ps_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t exp = (x >> 23) & 0xffu, mant = x & 0x7fffffu;
    if (exp == 0xff) /* inf, or NaN made quiet with its top payload bits */
        return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u | (mant >> 13) : 0));
    int32_t e = (int32_t)exp - 127 + 15;
    if (e >= 0x1f)
        return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) {
        if (e < -10) /* below half the smallest subnormal: rounds to 0 */
            return sign;
        mant |= 0x800000u; /* implicit bit */
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = mant >> shift, rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1u)))
            half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = ((uint32_t)e << 10) | (mant >> 13), rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
        h++; /* may carry into the exponent, up to infinity: that is right */
    return (uint16_t)(sign | h);
}

float ps_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0x1f)
        return bits_f32(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        if (!mant)
            return bits_f32(sign);
        /* subnormal: mant * 2^-24, exact in fp32 */
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 127 - 15) << 23) | (mant << 13));
}

uint16_t ps_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: keep sign and top payload, make quiet */
        return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

float ps_bf16_to_f32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

#ifdef PS_HAVE_X86
__attribute__((target("avx2,f16c"))) static void f32_to_f16_f16c(const float *s, uint16_t *d,
                                                                 size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(d + i), h);
    }
    for (; i < n; i++)
        d[i] = ps_f32_to_f16(s[i]);
}

__attribute__((target("avx2,f16c"))) static void f16_to_f32_f16c(const uint16_t *s, float *d,
                                                                 size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
    for (; i < n; i++)
        d[i] = ps_f16_to_f32(s[i]);
}

/* bf16 rounding in integer lanes: x + 0x7fff + lsb, NaNs blended back in. */
__attribute__((target("avx2"))) static void f32_to_bf16_avx2(const float *s, uint16_t *d, size_t n)
{
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
    const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    const __m256i quiet = _mm256_set1_epi32(0x400000);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i r[2];
        for (int k = 0; k < 2; k++) {
            __m256i x = _mm256_castps_si256(_mm256_loadu_ps(s + i + 8 * k));
            __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), one);
            __m256i rounded = _mm256_add_epi32(x, _mm256_add_epi32(bias, lsb));
            __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(x, abs_mask), inf);
            __m256i nan = _mm256_or_si256(x, quiet);
            r[k] = _mm256_srli_epi32(_mm256_blendv_epi8(rounded, nan, is_nan), 16);
        }
        /* pack 2 x 8 u32 (each < 2^16) into 16 u16, fixing AVX2's lane order */
        __m256i packed = _mm256_packus_epi32(r[0], r[1]);
        packed = _mm256_permute4x64_epi64(packed, 0xD8);
        _mm256_storeu_si256((__m256i *)(d + i), packed);
    }
    for (; i < n; i++)
        d[i] = ps_f32_to_bf16(s[i]);
}

__attribute__((target("avx2"))) static void bf16_to_f32_avx2(const uint16_t *s, float *d, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + i)));
        _mm256_storeu_ps(d + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
    }
    for (; i < n; i++)
        d[i] = ps_bf16_to_f32(s[i]);
}

/* CPUID by hand: clang 14's __builtin_cpu_supports does not know "f16c".
 * AVX state must also be enabled by the OS (OSXSAVE, XCR0 bits 1 and 2). */
static int cpu_has(int want_f16c)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE) || !(c & bit_AVX))
        return 0;
    unsigned lo, hi;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 6) != 6)
        return 0;
    if (want_f16c && !(c & bit_F16C))
        return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return 0;
    return (b & bit_AVX2) != 0;
}

/* CPUID is asked once: in a virtual machine every CPUID instruction traps
 * to the hypervisor, and the conversions are called per 4096-value block
 * (bf16 replies spent more time in CPUID than converting). 0 = not asked
 * yet, else 1 + the answer. Racing first calls store the same value. */
static _Atomic int f16c_known, avx2_known;

static int cpu_has_cached(_Atomic int *known, int want_f16c)
{
    int v = atomic_load_explicit(known, memory_order_relaxed);
    if (!v) {
        v = 1 + cpu_has(want_f16c);
        atomic_store_explicit(known, v, memory_order_relaxed);
    }
    return v - 1;
}

static int has_f16c(void)
{
    return !force_scalar && cpu_has_cached(&f16c_known, 1);
}

static int has_avx2(void)
{
    return !force_scalar && cpu_has_cached(&avx2_known, 0);
}
#else
static int has_f16c(void)
{
    return 0;
}
static int has_avx2(void)
{
    return 0;
}
#endif

void ps_half_force_scalar(int on)
{
    force_scalar = on;
}

const char *ps_half_paths(void)
{
    if (has_f16c())
        return "f16c+avx2";
    return has_avx2() ? "avx2" : "scalar";
}

void ps_f32_to_f16_n(const float *src, uint16_t *dst, size_t n)
{
#ifdef PS_HAVE_X86
    if (has_f16c())
        return f32_to_f16_f16c(src, dst, n);
#endif
    for (size_t i = 0; i < n; i++)
        dst[i] = ps_f32_to_f16(src[i]);
}

void ps_f16_to_f32_n(const uint16_t *src, float *dst, size_t n)
{
#ifdef PS_HAVE_X86
    if (has_f16c())
        return f16_to_f32_f16c(src, dst, n);
#endif
    for (size_t i = 0; i < n; i++)
        dst[i] = ps_f16_to_f32(src[i]);
}

void ps_f32_to_f16_scaled_n(const float *src, uint16_t *dst, size_t n, float scale)
{
    float buf[256];
    for (size_t i = 0; i < n; i += 256) {
        size_t m = n - i < 256 ? n - i : 256;
        for (size_t k = 0; k < m; k++)
            buf[k] = src[i + k] * scale;
        ps_f32_to_f16_n(buf, dst + i, m);
    }
}

void ps_f16_to_f32_scaled_n(const uint16_t *src, float *dst, size_t n, float scale)
{
    ps_f16_to_f32_n(src, dst, n);
    if (scale != 1.0f)
        for (size_t i = 0; i < n; i++)
            dst[i] *= scale;
}

int ps_f16_overflows(const float *src, size_t n, float scale)
{
    /* 65520 and above round to infinity; NaN fails the comparison too */
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        bad |= !(fabsf(src[i] * scale) < 65520.0f);
    return bad;
}

void ps_f32_to_bf16_n(const float *src, uint16_t *dst, size_t n)
{
#ifdef PS_HAVE_X86
    if (has_avx2())
        return f32_to_bf16_avx2(src, dst, n);
#endif
    for (size_t i = 0; i < n; i++)
        dst[i] = ps_f32_to_bf16(src[i]);
}

void ps_bf16_to_f32_n(const uint16_t *src, float *dst, size_t n)
{
#ifdef PS_HAVE_X86
    if (has_avx2())
        return bf16_to_f32_avx2(src, dst, n);
#endif
    for (size_t i = 0; i < n; i++)
        dst[i] = ps_bf16_to_f32(src[i]);
}
