// bf16w_gemm.h: the product of many activation rows (prefill) with bf16 weights W [N, K] as
// stored, in the fast mode's arithmetic (activations rounded to bf16, products exact, f32
// sums), for backend/cpu/linear_bf16.c.
//
// Why not the row kernel (matmul_avx512bf16.c's 4 x 4 tiles): it loads a weight row and an
// activation row per 32 products and sums each tile's lanes at the end, so it waits on its
// loads (~35% of the vdpbf16ps peak in a 1B prefill). Here a panel of 32 weight rows is packed
// once per call as bf16 pairs, [pair][row]: two 512-bit registers hold one pair of 32 rows, an
// activation pair broadcast against them (vdpbf16ps) gives 32 rows' partial sums, and a tile of
// 8 activation rows x 32 weight rows keeps 16 accumulators whose lanes are the outputs (no
// horizontal sums): per pair 2 loads and 8 broadcasts for 16 vdpbf16ps.
// Files: bf16w_gemm_scalar.c (packer, reference tile), bf16w_gemm_avx512bf16.c (the tile and
// the activation rounding with AVX512-BF16).
#ifndef G3_BF16W_GEMM_H
#define G3_BF16W_GEMM_H

#include <stdint.h>

enum {
    G3_BF16W_ROWS = 32,  // weight rows per panel
    G3_BF16W_RT = 8,     // activation rows per tile
    G3_BF16W_KC = 1152,  // depth per panel chunk (even): 576 pairs x 32 rows x 4 bytes = 72 KB, in L2
};

// Pack rows 0..nrows-1 (<= 32; the rest zero) of bf16 weights (row n at w + n * ldw), elements
// k0 .. k0 + kc - 1 (an odd kc's last pair padded with zero), into p[(kc + 1) / 2][32] pair
// words (low half: the even element).
void g3_bf16w_pack(uint32_t *p, const uint16_t *w, int64_t ldw, int nrows, int k0, int kc);
// The same words with AVX-512 (16 x 16 transposes; full panels, the rest through the reference).
void g3_bf16w_pack_avx512bf16(uint32_t *p, const uint16_t *w, int64_t ldw, int nrows, int k0, int kc);

// y[r * ldy + j] (+= when add) sum over pairs a < kd of x pair (r, a) . panel pair (a, j), for
// r < R (<= 8), j < ncols (<= 32); x row r's pairs at (const uint32_t *)(x + r * ldx) (ldx in
// bf16 elements, even).
typedef void (*G3Bf16wTile)(float *y, int64_t ldy, const uint32_t *p, int kd, const uint16_t *x, int64_t ldx, int R, int ncols,
                            int add);
void g3_bf16w_tile_ref(float *y, int64_t ldy, const uint32_t *p, int kd, const uint16_t *x, int64_t ldx, int R, int ncols, int add);
void g3_bf16w_tile_avx512bf16(float *y, int64_t ldy, const uint32_t *p, int kd, const uint16_t *x, int64_t ldx, int R, int ncols,
                              int add);

// x [R, K] f32 -> dst [R, ldd] bf16 rounded to nearest even (ldd >= K; elements K..ldd-1 zero).
void g3_bf16w_round_rows(uint16_t *dst, int64_t ldd, const float *x, int R, int K);
void g3_bf16w_round_rows_avx512bf16(uint16_t *dst, int64_t ldd, const float *x, int R, int K);

#endif
