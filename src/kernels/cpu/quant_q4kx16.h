// quant_q4kx16.h: Q4_K weights repacked at load, 16 rows interleaved ("Q4_Kx16"), for decode's
// matrix-vector product and as the source of the prefill GEMM's panels (as quant_q4x16.h for
// Q4_0). In Gemma 3 4B / 12B "Q4_K_M" files nearly every matrix is Q4_K or Q6_K.
//
// Why: ggml's Q4_K super-block (256 elements: f16 d and dmin, eight 6-bit scales and mins packed
// in 12 bytes, 128 bytes of nibbles) makes the per-row kernel unpack its scales, spread them
// over the register by permutes and sum each row horizontally at the end. Here one 512-bit load
// holds one quad of all 16 rows for two sub-blocks (low nibbles: sub-block 2c, high: 2c + 1),
// an activation quad broadcast against it (vpdpbusd) gives the 16 rows' partial sums in the 16
// int32 lanes, and the scales and mins are stored decoded, one byte a row, so a sub-block's 16
// scales are one zero-extending load away from a register.
//
// Layout of an [N, K] Q4_K weight (ns = K / 256 super-blocks a row, nb = K / 32 = 8 ns blocks),
// groups of 16 rows (the last one padded with zero rows), group g at base + g * ns * 2368;
// super-block i of a group at i * 2368 (37 cache lines):
//   nibbles  [4 c][8 h][16 r][4] bytes: byte i = qs[32c + 4h + i] of row r's super-block i as
//            ggml stores it (low nibble: element 4h + i of sub-block 2c; high: of 2c + 1)
//   scales   [8 j][16 r] uint8 (at 2048): sub-block j's 6-bit scale of row r (g3_k_scales)
//   mins     [8 j][16 r] uint8 (at 2176): sub-block j's 6-bit min of row r
//   d        [16 r] f16 (at 2304), dmin [16 r] f16 (at 2336): as ggml stores them (a padding
//            row: d +0, dmin -0, so its GEMM bias -dmin m is +0 as in g3_qgemm_pack's zeroed panel)
// So 2368 bytes for 16 x 256 weights: 4.625 bits a weight (ggml's: 4.5; the 12 packed bytes of
// scales become 16). The file's bytes stay as they are (saving, convert, exact mode read them);
// the model keeps the repacked copy beside them (model/repack.c).
// Files: quant_q4kx16_scalar.c (repack, reference products, GEMM panel from a group; plain C),
// quant_q4kx16_avx512vnni.c (the products with vpdpbusd: one group, two groups).
#ifndef G3_QUANT_Q4KX16_H
#define G3_QUANT_Q4KX16_H

#include <stdint.h>

#include "quant_dot.h"
#include "quant_gemm.h"
#include "quant_q4x16.h"  // the product types G3Q4x16Gemv / Gemv2

enum {
    G3_Q4KX16_ROWS = 16,
    G3_Q4KX16_SUPER_BYTES = 2368,  // a group's super-block: 16 rows x 256 elements
    G3_Q4KX16_SCALES = 2048,       // offsets in it: the scales, the mins, d, dmin
    G3_Q4KX16_MINS = 2176,
    G3_Q4KX16_D = 2304,
    G3_Q4KX16_DMIN = 2336,
    G3_Q4KX16_BLOCK_BYTES = G3_Q4KX16_SUPER_BYTES / 8  // a group's bytes per 32-element block (G3X16)
};

// Bytes of the repacked form of N rows of nb blocks of 32 (nb a multiple of 8).
static inline int64_t g3_q4kx16_bytes(int64_t N, int nb) {
    return (N + G3_Q4KX16_ROWS - 1) / G3_Q4KX16_ROWS * (int64_t)(nb / 8) * G3_Q4KX16_SUPER_BYTES;
}
// Group g of a repacked weight of nb blocks a row.
static inline const uint8_t *g3_q4kx16_group(const void *packed, int64_t g, int nb) {
    return (const uint8_t *)packed + g * (int64_t)(nb / 8) * G3_Q4KX16_SUPER_BYTES;
}

// Repack rows 0..N-1 of a Q4_K weight (row n at w + n * row_bytes, nb blocks of 32) into out
// (g3_q4kx16_bytes(N, nb) bytes).
void g3_q4kx16_pack(void *out, const void *w, int64_t row_bytes, int64_t N, int nb);

// y[r] = row r of the group . the activation blocks a (nb of them), for r < nrows (<= 16):
// per row the same integer sub-block sums and the same float steps, in the same order, as
// g3_qdot_q4_k_ref on the ggml row, so every kernel gives that reference's results exactly.
// (The signatures of quant_q4x16.h's, so G3X16 takes them.)
void g3_q4kx16_gemv_ref(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a, int nrows);
void g3_q4kx16_gemv_avx512vnni(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a, int nrows);
G3Q4x16Gemv g3_q4kx16_gemv(int level);  // VNNI's, else the reference
// y[0..31] = the 32 rows of two consecutive full groups . a, each activation quad broadcast
// once for 32 rows.
void g3_q4kx16_gemv2_ref(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a);
void g3_q4kx16_gemv2_avx512vnni(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a);
G3Q4x16Gemv2 g3_q4kx16_gemv2(int level);

// The GEMM's panel (quant_gemm.h, 16 rows) of a group: what g3_qgemm_pack makes of the same
// 16 ggml rows (block 8i + j: sub-block j's nibbles, scale d sc_j, bias -dmin m_j). The VNNI
// level's makes each block's nibbles and 16 scales in registers (the plain-C one, a byte and
// a row at a time, made a 1B Q4_K_M prefill slower repacked than from the ggml rows); the
// level's choice as the products'.
typedef void (*G3Q4Kx16Panel)(G3QPanelBlock *p, const uint8_t *group, int nb);
void g3_q4kx16_to_panel(G3QPanelBlock *p, const uint8_t *group, int nb);
void g3_q4kx16_to_panel_avx512vnni(G3QPanelBlock *p, const uint8_t *group, int nb);
G3Q4Kx16Panel g3_q4kx16_to_panel_fn(int level);

#endif
