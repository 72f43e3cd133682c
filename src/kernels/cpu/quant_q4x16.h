// quant_q4x16.h: Q4_0 weights repacked at load, 16 rows interleaved ("Q4_0x16"), for decode's
// matrix-vector product and as the source of the prefill GEMM's panels.
//
// Why: ggml's Q4_0 row is blocks of 18 bytes (an f16 scale, 16 bytes of nibbles); one dot
// product per row makes every block pay for its own unpacking, its scale, a permute to place
// the scale, and every row a horizontal sum at the end: at 2 threads decode was bound by those
// instructions, not by the memory (x0.89 of llama.cpp, which repacks Q4_0 at load too). Here a
// group of 16 rows is stored so that one 512-bit load holds one 4-element quad of all 16 rows:
// an activation quad broadcast against it (vpdpbusd) gives the 16 rows' partial sums in the 16
// int32 lanes, so a block of 16 rows x 32 elements is 4 loads, 8 vpdpbusd and one scale step,
// and the 16 results land in one register (no horizontal sums).
//
// Layout of an [N, K] Q4_0 weight (nb = K / 32 blocks a row): groups of 16 rows (the count
// padded to even with zero rows), stored in pairs block by block (quant_x16.h); a group block,
// 288 bytes:
//   nibbles  [4][16][4] bytes: register h, row r, byte i = byte 4h + i of row r's block b as
//            ggml stores it (low nibble: element 4h + i; high: 16 + 4h + i)
//   scales   [16] f16: block b's scale of each row
// So the bytes are ggml's, moved, not changed: the repack is a transpose of 4-byte groups.
// The file's bytes stay as they are (saving, convert, exact mode read them); the model keeps the
// repacked copy beside them (model/repack.c).
// Files: quant_q4x16_scalar.c (repack, reference products, GEMM panel from a group; plain C),
// quant_q4x16_avx512vnni.c (the products with vpdpbusd: one group, two groups).
#ifndef G3_QUANT_Q4X16_H
#define G3_QUANT_Q4X16_H

#include <stdint.h>

#include "quant_dot.h"
#include "quant_gemm.h"
#include "quant_x16.h"

enum { G3_Q4X16_ROWS = 16, G3_Q4X16_QUANT_BYTES = 256, G3_Q4X16_BLOCK_BYTES = 16 * 18 };  // rows per group; a group block's quants, all its bytes

// Bytes of the repacked form of N rows of nb blocks.
static inline int64_t g3_q4x16_bytes(int64_t N, int nb) {
    return g3_x16_bytes(N, nb, G3_Q4X16_BLOCK_BYTES);
}
// Group g of a repacked weight of nb blocks a row.
static inline const uint8_t *g3_q4x16_group(const void *packed, int64_t g, int nb) {
    return g3_x16_group(packed, g, nb, G3_Q4X16_BLOCK_BYTES);
}

// Repack rows 0..N-1 of a Q4_0 weight (row n at w + n * row_bytes, nb blocks) into out
// (g3_q4x16_bytes(N, nb) bytes).
void g3_q4x16_pack(void *out, const void *w, int64_t row_bytes, int64_t N, int nb);

// y[r] = row r of the group . the activation blocks a (nb of them), for r < nrows (<= 16):
// per row the same integer block sums and the same float steps as g3_qdot_q4_0_ref on the
// ggml row, so every kernel gives that reference's results exactly.
typedef void (*G3Q4x16Gemv)(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a, int nrows);
void g3_q4x16_gemv_ref(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a, int nrows);
void g3_q4x16_gemv_avx512vnni(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a, int nrows);
// The kernel of a quant_dot.h level (G3_QDOT_*): VNNI's, else the reference.
G3Q4x16Gemv g3_q4x16_gemv(int level);
// y[0..31] = the 32 rows of a pair's two groups (group: the first, an even one; both full) . a:
// per row what G3Q4x16Gemv gives (so g3_qdot_q4_0_ref's results exactly). One group's loop
// broadcasts each activation quad for 16 rows; this one for 32.
typedef void (*G3Q4x16Gemv2)(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a);
void g3_q4x16_gemv2_ref(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a);
void g3_q4x16_gemv2_avx512vnni(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a);
G3Q4x16Gemv2 g3_q4x16_gemv2(int level);

// The GEMM's panel (quant_gemm.h, 16 rows) of a group: what g3_qgemm_pack makes of the same
// 16 ggml rows.
void g3_q4x16_to_panel(G3QPanelBlock *p, const uint8_t *group, int nb);

#endif
