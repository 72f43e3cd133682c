// quant_gemm.h: the int8 GEMM of block-quantized weights with many activation rows (prefill),
// for the fast path of the quantized linear layer (backend/cpu/linear_quant.c). Where the dot
// kernels of quant_dot.h unpack each weight block once per activation row, here a panel of 16
// weight rows is unpacked once per call into a common form (unsigned bytes, float scales) and
// every activation row passes over it:
//   panel block (16 rows x 32 elements): q[j][n][0..3] = row n's elements 4j..4j+3 as unsigned
//   bytes, so one 512-bit register holds quad j of all 16 rows; an activation's four bytes
//   broadcast against it give all 16 rows' partial sums in one vpdpbusd (int32 per row).
//   weight = scale * (q - off) + bias: off an integer per type (Q8_0 128 after adding 128 to
//   its signed bytes, Q4_0 8, Q5_0 16, Q6_K 32, else 0), bias the mins (Q4_1 / Q5_1 / Q4_K /
//   Q5_K); Q6_K's 16-long sub-blocks give two scales per block (halves).
// So per block and row: sum = sum(q a) - off * sum(a) in int32, then one float multiply-add.
// Files, one ISA each:
//   quant_gemm_scalar.c        the packers (plain C, every type), the reference panel kernel
//   quant_gemm_avx512vnni.c    vpdpbusd, 16 rows x up to 8 activation rows per tile
//   quant_gemm_avx2.c          vpmaddubsw / vpmaddwd on two 8-row halves; Q8_0 (whose unsigned
//                              bytes would saturate the int16 pair sums) as |w| times the
//                              activation with w's sign, its own kernel
#ifndef G3_QUANT_GEMM_H
#define G3_QUANT_GEMM_H

#include <stdint.h>

#include "../../tensor/dtype.h"

// An activation block for the GEMM: x ~= qs * d as quant_dot.h's G3BlockQ8A, with the sums of
// elements 0-15 and 16-31 apart (Q6_K's halves take different scales).
typedef struct {
    float d;
    int16_t s[2];
    int8_t qs[32];
} G3BlockQ8G;

enum { G3_QG_ROWS = 16 };  // weight rows per panel

typedef struct {
    uint8_t q[8][G3_QG_ROWS][4];  // [quad][row][byte]: row's elements 4 quad .. 4 quad + 3
    float scale[2][G3_QG_ROWS];   // per row: elements 0-15's scale, 16-31's (equal but for Q6_K)
    float bias[G3_QG_ROWS];       // per row: times the activation block's sum (0 without mins)
} G3QPanelBlock;

// How a type's panel blocks are read.
typedef struct {
    int off;     // subtracted from every q
    int halves;  // 1: scale[1] differs from scale[0] (Q6_K)
    int bias;    // 1: bias is used
} G3QGemmKind;

// The kind of a block type, 0; -1 for a type without a packer.
int g3_qgemm_kind(G3DType type, G3QGemmKind *kind);

// x[nb * 32] -> nb activation blocks, rounded as g3_quantize_q8a (d = max|x| / 127).
void g3_quantize_q8g(G3BlockQ8G *a, const float *x, int nb);
void g3_quantize_q8g_avx512(G3BlockQ8G *a, const float *x, int nb);  // the same bytes for finite x
typedef void (*G3QGemmQuant)(G3BlockQ8G *a, const float *x, int nb);
G3QGemmQuant g3_qgemm_quantizer(int level);  // a level's (G3_QDOT_*) quantizer

// Pack rows 0..nrows-1 (nrows <= 16; the rest zero) of a weight of `type`, row n at
// w + n * row_bytes, blocks 0..nb-1 of 32 (the K-quants: nb a multiple of 8), into p[nb].
void g3_qgemm_pack(G3QPanelBlock *p, G3DType type, const void *w, int64_t row_bytes, int nrows, int nb);

// Asks the memory for the bytes g3_qgemm_pack will read (a hint, for the next panel while this
// one's product runs: read row after row when its turn comes, each 4 KB page of a cold weight
// would wait out the memory's latency alone, as the hardware prefetcher stops at page ends).
void g3_qgemm_prefetch(G3DType type, const void *w, int64_t row_bytes, int nrows, int nb);

// y[r * ldy + n] = sum_k W[n, k] X[r, k] for r < R, n < ncols (<= 16): p one packed panel of nb
// blocks, a the R rows' activation blocks (row r at a + r * nb).
typedef void (*G3QGemmPanel)(float *y, int64_t ldy, const G3QPanelBlock *p, int nb, const G3BlockQ8G *a, int R, int ncols,
                             const G3QGemmKind *kind);

void g3_qgemm_panel_ref(float *y, int64_t ldy, const G3QPanelBlock *p, int nb, const G3BlockQ8G *a, int R, int ncols,
                        const G3QGemmKind *kind);
void g3_qgemm_panel_avx2(float *y, int64_t ldy, const G3QPanelBlock *p, int nb, const G3BlockQ8G *a, int R, int ncols,
                         const G3QGemmKind *kind);
void g3_qgemm_panel_avx2_q8(float *y, int64_t ldy, const G3QPanelBlock *p, int nb, const G3BlockQ8G *a, int R, int ncols,
                            const G3QGemmKind *kind);
void g3_qgemm_panel_avx512vnni(float *y, int64_t ldy, const G3QPanelBlock *p, int nb, const G3BlockQ8G *a, int R, int ncols,
                               const G3QGemmKind *kind);

// The panel kernel of a quant_dot.h level (G3_QDOT_*) for a type: NULL where the level has none
// for it.
G3QGemmPanel g3_qgemm_kernel(int level, G3DType type);

#endif
