// rng.c: splitmix64 seeding and xoshiro256** (Blackman & Vigna), as in their reference code.
#include "rng.h"

void g3_rng_seed(G3Rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) {
        r->s[i] = g3_mix64(x);
        x += 0x9e3779b97f4a7c15ull;
    }
}

void g3_rng_seed3(G3Rng *r, uint64_t seed, uint64_t a, uint64_t b) {
    // Chained mixing so that (a, b) and (b, a) give different streams.
    g3_rng_seed(r, g3_mix64(g3_mix64(seed ^ 0x5851f42d4c957f2dull) ^ a) ^ g3_mix64(b + 0x2545f4914f6cdd1dull));
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t g3_rng_next(G3Rng *r) {
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

uint64_t g3_rng_below(G3Rng *r, uint64_t n) {
    // Rejection from the top of the range: values >= limit would bias small residues.
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = g3_rng_next(r);
    while (x >= limit);
    return x % n;
}

double g3_rng_uniform(G3Rng *r) { return (double)(g3_rng_next(r) >> 11) * 0x1.0p-53; }
