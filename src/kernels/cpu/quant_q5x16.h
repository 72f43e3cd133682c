// quant_q5x16.h: Q5_0 weights repacked at load, 16 rows interleaved ("Q5_0x16"), for decode's
// matrix-vector product and as the source of the prefill GEMM's panels (as quant_q4x16.h for
// Q4_0). Most of a Gemma 3 1B "Q4_K_M" file is Q5_0: its 1152-wide rows are not whole K-quant
// super-blocks, so q, k, v, gate and up fall back from Q4_K to Q5_0.
//
// Why: as for Q4_0, one dot product per ggml row pays per block for its unpacking, its scale,
// the fifth bits spread to bytes, and per row a horizontal sum. Here one 512-bit load holds one
// quad of all 16 rows, and the fifth bits come as ready byte masks: per block of 16 rows, 4
// loads, 8 nibble extractions, 8 mask loads (kmovq) each adding 16 to the bytes whose fifth bit
// is set (one masked vpaddb), 8 vpdpbusd and one scale step; the 16 results in one register.
//
// Layout of an [N, K] Q5_0 weight (nb = K / 32 blocks a row): groups of 16 rows (the count
// padded to even with zero rows), stored in pairs block by block (quant_x16.h); a group block,
// 352 bytes:
//   nibbles  [4][16][4] bytes: register h, row r, byte i = qs[4h + i] of row r's block b as
//            ggml stores it (low nibble: element 4h + i; high: 16 + 4h + i), as Q4_0x16
//   masks    [8] uint64 (little-endian): mask j's bit 4r + i = the fifth bit of row r's
//            element 4j + i (j < 4: the low nibbles of register j; j >= 4: elements
//            16 + 4(j - 4) + i, the high nibbles of register j - 4), i.e. bit 4j + i of its qh
//   scales   [16] f16: block b's scale of each row
// So the bytes are ggml's, moved (qh's bits regrouped by quad), same count: 352 = 16 x 22.
// The file's bytes stay as they are (saving, convert, exact mode read them); the model keeps the
// repacked copy beside them (model/repack.c).
// Files: quant_q5x16_scalar.c (repack, reference products, GEMM panel from a group; plain C),
// quant_q5x16_avx512vnni.c (the products with vpdpbusd: one group, two groups; their loops are
// quant_x16_avx512vnni.h's, shared with Q8_0).
#ifndef G3_QUANT_Q5X16_H
#define G3_QUANT_Q5X16_H

#include <stdint.h>

#include "quant_dot.h"
#include "quant_gemm.h"
#include "quant_x16.h"

enum { G3_Q5X16_ROWS = 16, G3_Q5X16_QUANT_BYTES = 320, G3_Q5X16_BLOCK_BYTES = 16 * 22 };  // per group block

// Bytes of the repacked form of N rows of nb blocks.
static inline int64_t g3_q5x16_bytes(int64_t N, int nb) {
    return g3_x16_bytes(N, nb, G3_Q5X16_BLOCK_BYTES);
}
// Group g of a repacked weight of nb blocks a row.
static inline const uint8_t *g3_q5x16_group(const void *packed, int64_t g, int nb) {
    return g3_x16_group(packed, g, nb, G3_Q5X16_BLOCK_BYTES);
}

// Repack rows 0..N-1 of a Q5_0 weight (row n at w + n * row_bytes, nb blocks) into out
// (g3_q5x16_bytes(N, nb) bytes).
void g3_q5x16_pack(void *out, const void *w, int64_t row_bytes, int64_t N, int nb);

// y[r] = row r of the group . the activation blocks a (nb of them), for r < nrows (<= 16):
// per row the same integer block sums and the same float steps as g3_qdot_q5_0_ref on the
// ggml row, so every kernel gives that reference's results exactly. (The same signatures as
// quant_q4x16.h's.)
typedef void (*G3Q5x16Gemv)(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a, int nrows);
void g3_q5x16_gemv_ref(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a, int nrows);
void g3_q5x16_gemv_avx512vnni(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a, int nrows);
G3Q5x16Gemv g3_q5x16_gemv(int level);  // VNNI's, else the reference
// y[0..31] = the 32 rows of a pair's two groups (group: the first; both full) . a, each
// activation quad broadcast once for 32 rows.
typedef void (*G3Q5x16Gemv2)(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a);
void g3_q5x16_gemv2_ref(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a);
void g3_q5x16_gemv2_avx512vnni(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a);
G3Q5x16Gemv2 g3_q5x16_gemv2(int level);

// The GEMM's panel (quant_gemm.h, 16 rows) of a group: what g3_qgemm_pack makes of the same
// 16 ggml rows. The VNNI one builds each quad in a register as the product does (the plain-C
// one, 512 bit steps a block, halved a 1B Q5_0 prefill); the level's choice as above.
typedef void (*G3Q5x16Panel)(G3QPanelBlock *p, const uint8_t *group, int nb);
void g3_q5x16_to_panel(G3QPanelBlock *p, const uint8_t *group, int nb);
void g3_q5x16_to_panel_avx512vnni(G3QPanelBlock *p, const uint8_t *group, int nb);
G3Q5x16Panel g3_q5x16_to_panel_fn(int level);

#endif
