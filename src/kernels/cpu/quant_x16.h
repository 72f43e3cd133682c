// quant_x16.h: where the groups of the repacked Q4_0, Q8_0 and Q5_0 weights lie (quant_q4x16.h,
// quant_q8x16.h, quant_q5x16.h): groups of 16 rows, stored two by two, block by block.
//
// Why pairs: decode's kernel takes two groups a call (each activation quad broadcast once for
// 32 rows). With each group's quants stored whole and then its scales, a call read four streams
// (two groups' quants, two groups' scales), each restarting at every call; stored as pairs block
// by block, a call reads one stream, and the next pair continues it. Measured on the 2-core
// Zen 5 machine (2026-12-08, 4B's 2560-wide rows, 1 GB of Q4_0, 2 threads, 21 interleaved
// passes): 34.5 -> 40.1 GB/s (+16%); 1B's 1152-wide rows 34.5 -> 40.8 (docs/quantization.md).
//
// Layout, bb = a group block's bytes (its 16 rows' quants of one 32-element block, then their
// 16 f16 scales), nb blocks a row:
//   pair p (groups 2p and 2p + 1) at base + p * nb * 2bb:  for b < nb: [group 2p's block b]
//   [group 2p + 1's block b]
// the group count padded to an even one (zero rows: zero quants, zero scales). So group g's
// block b is at g3_x16_group(...) + b * 2bb, and a pair's second group starts bb after its
// first.
#ifndef G3_QUANT_X16_H
#define G3_QUANT_X16_H

#include <stdint.h>

// Bytes of N rows repacked: (N / 16 rounded up to even) groups of nb blocks of bb bytes.
static inline int64_t g3_x16_bytes(int64_t N, int nb, int bb) {
    return (N + 31) / 32 * 2 * (int64_t)nb * bb;
}

// Group g's first block.
static inline const uint8_t *g3_x16_group(const void *packed, int64_t g, int nb, int bb) {
    return (const uint8_t *)packed + (g >> 1) * 2 * (int64_t)nb * bb + (g & 1) * bb;
}

#endif
