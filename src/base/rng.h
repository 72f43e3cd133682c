// rng.h: the project's random numbers (training data order, sampling, init): splitmix64 (seeding, hashing counters) and
// xoshiro256** (streams). Small and explicit so that the state can be saved in a checkpoint and
// every draw reproduced exactly: batch sampling seeds a fresh stream from (seed, step, micro-step),
// so the data order is a pure function of those numbers and resume is bit-exact.
#ifndef G3_RNG_H
#define G3_RNG_H

#include <stdint.h>

typedef struct { uint64_t s[4]; } G3Rng;

// splitmix64's output function: a good 64-bit mixer (a bijection), for hashing counters.
static inline uint64_t g3_mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// Seeds the four words from splitmix64 (never all zero).
void g3_rng_seed(G3Rng *r, uint64_t seed);
// A stream for the counter tuple (seed, a, b): independent streams for each training step and
// micro-step without keeping any state between them.
void g3_rng_seed3(G3Rng *r, uint64_t seed, uint64_t a, uint64_t b);
uint64_t g3_rng_next(G3Rng *r);
// Uniform integer in [0, n) without modulo bias (n > 0).
uint64_t g3_rng_below(G3Rng *r, uint64_t n);
// Uniform double in [0, 1) with 53 random bits.
double g3_rng_uniform(G3Rng *r);

#endif
