// quant_q8x16.h: Q8_0 weights repacked at load, 16 rows interleaved ("Q8_0x16"), for decode's
// matrix-vector product and as the source of the prefill GEMM's panels (as quant_q4x16.h for
// Q4_0).
//
// Why: ggml's Q8_0 row is blocks of 34 bytes (an f16 scale, 32 int8); one dot product per row
// loads two blocks into one register, moves the weights' signs onto the activations (a masked
// negate: vpdpbusd multiplies unsigned by signed bytes), spreads two scales over the halves by
// a permute, and ends every row with a horizontal sum: at 2 threads decode reached 73-83% of
// the read bandwidth, the rest spent on those instructions. Here a group of 16 rows is stored
// so that one 512-bit load holds one 4-element quad of all 16 rows: an activation quad
// broadcast against it (vpdpbusd) gives the 16 rows' partial sums in the 16 int32 lanes, so a
// block of 16 rows x 32 elements is 8 loads, 8 vpdpbusd and one scale step, and the 16 results
// land in one register (no horizontal sums).
//
// The sign: the weights are stored as unsigned bytes u = q + 128 (q ^ 0x80), so vpdpbusd's
// unsigned operand needs no work at run time, and per block
//   sum_j q_j a_j = sum_j u_j a_j - 128 sum_j a_j
// where sum_j a_j is the activation block's own sum (G3BlockQ8A.sum): the accumulator starts at
// -128 * sum, and the int32 result is exactly the reference's (|u a| <= 255 * 127, 32 of them
// and the start stay far inside int32; vpdpbusd does not saturate).
//
// Layout of an [N, K] Q8_0 weight (nb = K / 32 blocks a row): groups of 16 rows (the count
// padded to even with zero rows: zero bytes and zero scales, as the GEMM's panels), stored in
// pairs block by block (quant_x16.h); a group block, 544 bytes:
//   quants   [8][16][4] bytes: quad j, row r, byte i = row r's q[4j + i] + 128
//   scales   [16] f16: block b's scale of each row
// So a block's quants are, byte for byte, the GEMM's panel block (quant_gemm.h: [quad][row][4],
// Q8_0's bytes + 128): the panel is a copy. The file's bytes stay as they are (saving, convert,
// exact mode read them); the model keeps the repacked copy beside them (model/repack.c).
// Files: quant_q8x16_scalar.c (repack, reference products, GEMM panel from a group; plain C),
// quant_q8x16_avx512vnni.c (the products with vpdpbusd: one group, two groups; their loops are
// quant_x16_avx512vnni.h's, shared with Q5_0).
#ifndef G3_QUANT_Q8X16_H
#define G3_QUANT_Q8X16_H

#include <stdint.h>

#include "quant_dot.h"
#include "quant_gemm.h"
#include "quant_x16.h"

enum { G3_Q8X16_ROWS = 16, G3_Q8X16_QUANT_BYTES = 16 * 32, G3_Q8X16_BLOCK_BYTES = 16 * 34 };  // per group block

// Bytes of the repacked form of N rows of nb blocks.
static inline int64_t g3_q8x16_bytes(int64_t N, int nb) {
    return g3_x16_bytes(N, nb, G3_Q8X16_BLOCK_BYTES);
}
// Group g of a repacked weight of nb blocks a row.
static inline const uint8_t *g3_q8x16_group(const void *packed, int64_t g, int nb) {
    return g3_x16_group(packed, g, nb, G3_Q8X16_BLOCK_BYTES);
}

// Repack rows 0..N-1 of a Q8_0 weight (row n at w + n * row_bytes, nb blocks) into out
// (g3_q8x16_bytes(N, nb) bytes).
void g3_q8x16_pack(void *out, const void *w, int64_t row_bytes, int64_t N, int nb);

// y[r] = row r of the group . the activation blocks a (nb of them), for r < nrows (<= 16):
// per row the same integer block sums and the same float steps as g3_qdot_q8_0_ref on the
// ggml row, so every kernel gives that reference's results exactly.
typedef void (*G3Q8x16Gemv)(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a, int nrows);
void g3_q8x16_gemv_ref(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a, int nrows);
void g3_q8x16_gemv_avx512vnni(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a, int nrows);
// The kernel of a quant_dot.h level (G3_QDOT_*): VNNI's, else the reference.
G3Q8x16Gemv g3_q8x16_gemv(int level);
// y[0..31] = the 32 rows of a pair's two groups (group: the first; both full) . a: per row
// what G3Q8x16Gemv gives (so g3_qdot_q8_0_ref's results exactly), each activation quad
// broadcast once for 32 rows.
typedef void (*G3Q8x16Gemv2)(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a);
void g3_q8x16_gemv2_ref(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a);
void g3_q8x16_gemv2_avx512vnni(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a);
G3Q8x16Gemv2 g3_q8x16_gemv2(int level);

// The GEMM's panel (quant_gemm.h, 16 rows) of a group: what g3_qgemm_pack makes of the same
// 16 ggml rows.
void g3_q8x16_to_panel(G3QPanelBlock *p, const uint8_t *group, int nb);

#endif
