/* ps_rng.h - small deterministic PRNG (xoshiro256**, seeded by splitmix64).
 * The same seed gives the same stream on every machine: initial weights and
 * data shuffles depend on it for reproducible runs. Not thread-safe per state. */
#ifndef PS_RNG_H
#define PS_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} ps_rng_t;

/* Mixes any number of 64-bit words into one seed (order matters). */
uint64_t ps_rng_mix(uint64_t a, uint64_t b);
void ps_rng_seed(ps_rng_t *rng, uint64_t seed);
uint64_t ps_rng_next(ps_rng_t *rng);
/* Uniform in [0, 1). */
double ps_rng_uniform(ps_rng_t *rng);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint64_t ps_rng_below(ps_rng_t *rng, uint64_t n);
/* Standard normal (Box-Muller). */
double ps_rng_normal(ps_rng_t *rng);
/* Fisher-Yates shuffle of idx[0..n). */
void ps_rng_shuffle_u32(ps_rng_t *rng, uint32_t *idx, size_t n);

#endif
