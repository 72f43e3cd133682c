// quant_q6kx16.h: Q6_K weights repacked at load, 16 rows interleaved ("Q6_Kx16"), for decode's
// matrix-vector product and as the source of the prefill GEMM's panels (as quant_q4kx16.h for
// Q4_K). Gemma 3 "Q4_K_M" files keep some matrices in Q6_K (v, down of some layers; in 1B: 81
// of its 762 MiB).
//
// Why: as for Q4_K, the per-row kernel spreads each block's scales over the register and sums
// each row horizontally at the end. Here one 512-bit load holds one quad of all 16 rows: a load
// of low bits gives the low nibbles of two activation blocks' quads, a load of high bits the top
// two bits of four blocks' quads, so a super-block of 16 rows is 48 loads, and each activation
// quad broadcast against the assembled 6-bit values (vpdpbusd) gives the 16 rows' partial sums
// in the 16 int32 lanes.
//
// ggml's super-block (256 elements): activation block k = 4h + g (h < 2, g < 4) holds elements
// 128h + 32g + l; its q is a nibble of ql[64h + 32 (g & 1) + l] (low for g < 2) with bits 2g,
// 2g + 1 of qh[32h + l] on top, minus 32; its halves of 16 take the int8 scales 2k and 2k + 1.
// Layout of an [N, K] Q6_K weight (ns = K / 256 super-blocks a row), groups of 16 rows (the
// last one padded with zero rows), group g at base + g * ns * 3360; super-block i of a group at
// i * 3360:
//   low      [4 t][8 j][16 r][4] bytes (at 0): t = 2h + p, byte i = ql[64h + 32p + 4j + i] of
//            row r (low nibble: quad j of block 4h + p; high: of block 4h + p + 2)
//   high     [2 h][8 j][16 r][4] bytes (at 2048): byte i = qh[32h + 4j + i] of row r (bits 2g,
//            2g + 1: quad j of block 4h + g)
//   scales   [16 s][16 r] int8 (at 3072): scale s of row r
//   d        [16 r] f16 (at 3328)
// So the bytes are ggml's, moved, not changed, same count: 3360 = 16 x 210 (6.5625 bits a
// weight). The file's bytes stay as they are (saving, convert, exact mode read them); the model
// keeps the repacked copy beside them (model/repack.c).
// Files: quant_q6kx16_scalar.c (repack, reference products, GEMM panel from a group; plain C),
// quant_q6kx16_avx512vnni.c (the products with vpdpbusd: one group, two groups).
#ifndef G3_QUANT_Q6KX16_H
#define G3_QUANT_Q6KX16_H

#include <stdint.h>

#include "quant_dot.h"
#include "quant_gemm.h"
#include "quant_q4x16.h"  // the product types G3Q4x16Gemv / Gemv2

enum {
    G3_Q6KX16_ROWS = 16,
    G3_Q6KX16_SUPER_BYTES = 3360,  // a group's super-block: 16 rows x 256 elements
    G3_Q6KX16_HIGH = 2048,         // offsets in it: the high bits, the scales, d
    G3_Q6KX16_SCALES = 3072,
    G3_Q6KX16_D = 3328,
    G3_Q6KX16_BLOCK_BYTES = G3_Q6KX16_SUPER_BYTES / 8  // a group's bytes per 32-element block (G3X16)
};

// Bytes of the repacked form of N rows of nb blocks of 32 (nb a multiple of 8).
static inline int64_t g3_q6kx16_bytes(int64_t N, int nb) {
    return (N + G3_Q6KX16_ROWS - 1) / G3_Q6KX16_ROWS * (int64_t)(nb / 8) * G3_Q6KX16_SUPER_BYTES;
}
// Group g of a repacked weight of nb blocks a row.
static inline const uint8_t *g3_q6kx16_group(const void *packed, int64_t g, int nb) {
    return (const uint8_t *)packed + g * (int64_t)(nb / 8) * G3_Q6KX16_SUPER_BYTES;
}

// Repack rows 0..N-1 of a Q6_K weight (row n at w + n * row_bytes, nb blocks of 32) into out
// (g3_q6kx16_bytes(N, nb) bytes).
void g3_q6kx16_pack(void *out, const void *w, int64_t row_bytes, int64_t N, int nb);

// y[r] = row r of the group . the activation blocks a (nb of them), for r < nrows (<= 16):
// per row the same integer half-block sums and the same float steps, in the same order, as
// g3_qdot_q6_k_ref on the ggml row, so every kernel gives that reference's results exactly.
void g3_q6kx16_gemv_ref(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a, int nrows);
void g3_q6kx16_gemv_avx512vnni(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a, int nrows);
G3Q4x16Gemv g3_q6kx16_gemv(int level);  // VNNI's, else the reference
// y[0..31] = the 32 rows of two consecutive full groups . a, each activation quad broadcast
// once for 32 rows.
void g3_q6kx16_gemv2_ref(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a);
void g3_q6kx16_gemv2_avx512vnni(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a);
G3Q4x16Gemv2 g3_q6kx16_gemv2(int level);

// The GEMM's panel (quant_gemm.h, 16 rows) of a group: what g3_qgemm_pack makes of the same
// 16 ggml rows (block 8i + k: its 6-bit q, scales d sc_2k and d sc_2k+1, no bias). The VNNI
// level's assembles each quad of 16 rows in a register as the product does (the plain-C one,
// an element at a time, is a reference); the level's choice as the products'.
typedef void (*G3Q6Kx16Panel)(G3QPanelBlock *p, const uint8_t *group, int nb);
void g3_q6kx16_to_panel(G3QPanelBlock *p, const uint8_t *group, int nb);
void g3_q6kx16_to_panel_avx512vnni(G3QPanelBlock *p, const uint8_t *group, int nb);
G3Q6Kx16Panel g3_q6kx16_to_panel_fn(int level);

#endif
