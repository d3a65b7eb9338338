/* ps_half.h - fp32 <-> fp16 (IEEE binary16) and fp32 <-> bf16 conversion,
 * round-to-nearest-even, with subnormals, infinities and NaN handled. Bulk
 * converters pick a vector path at run time (F16C, AVX2, AVX-512) and fall
 * back to the portable scalar code, which gives the same bits. Any thread. */
#ifndef PS_HALF_H
#define PS_HALF_H

#include <stddef.h>
#include <stdint.h>

/* Scalar reference conversions. NaN stays NaN (quiet, sign and top payload
 * bits kept); overflow rounds to infinity; tiny values to subnormals or 0. */
uint16_t ps_f32_to_f16(float f);
float ps_f16_to_f32(uint16_t h);
uint16_t ps_f32_to_bf16(float f);
float ps_bf16_to_f32(uint16_t h);

/* Bulk conversions of n elements (src and dst must not overlap). */
void ps_f32_to_f16_n(const float *src, uint16_t *dst, size_t n);
void ps_f16_to_f32_n(const uint16_t *src, float *dst, size_t n);
void ps_f32_to_bf16_n(const float *src, uint16_t *dst, size_t n);
void ps_bf16_to_f32_n(const uint16_t *src, float *dst, size_t n);

/* Fused scale and convert: dst = fp16(src * scale), and dst = fp32(src) *
 * scale, rounding once as the separate steps would. The fp16 loss scaler
 * scales gradients on their way to the wire and the server unscales them. */
void ps_f32_to_f16_scaled_n(const float *src, uint16_t *dst, size_t n, float scale);
void ps_f16_to_f32_scaled_n(const uint16_t *src, float *dst, size_t n, float scale);
/* True if any src[i] * scale is non-finite or beyond fp16's largest finite
 * value once rounded (an fp16 overflow). */
int ps_f16_overflows(const float *src, size_t n, float scale);

/* Which paths the bulk converters use on this CPU ("f16c+avx2", "scalar").
 * ps_half_force_scalar(1) makes them use the scalar code (tests, benches). */
const char *ps_half_paths(void);
void ps_half_force_scalar(int on);

#endif
