// quant.h: ggml's block-quantized types, in ggml's exact layouts, with their scalar reference
// converters (the traits table's to_f32 / from_f32 for G3_Q8_0 and G3_Q4_0).
//
//   Q8_0: blocks of 32: an f16 scale d and 32 int8 q;  x = q * d               (34 bytes, 8.5 bits/weight)
//   Q4_0: blocks of 32: an f16 scale d and 16 bytes;   x = (q - 8) * d, q 4-bit (18 bytes, 4.5 bits/weight)
//         byte j holds element j in its low nibble and element j + 16 in its high nibble.
//
// Two quantizers per type. g3_*_from_f32_simple is the max rule, ggml's quantize_row_*_ref
// rounding exactly (the bytes llama.cpp's reference writes): Q8_0: d = max|x| / 127, q =
// round(x / d); Q4_0: d = m / -8 where m is the x of largest magnitude (sign kept), q = min(15,
// trunc(x / d + 8.5)); the scale is stored in f16 after the q are computed from the f32 d, as
// ggml does. Its error bounds (tests/test_quant.c): Q8_0 |x - x'| <= 0.5 d + 127 d 2^-11; Q4_0
// |x - x'| <= |d| (+ 8 |d| 2^-11), and 0.5 |d| except for values near -m, clamped from 16 to 15.
// g3_*_from_f32 (the traits' from_f32, what `quantize` writes) searches each block's scale (and
// min) for the least squared error and keeps the max rule's block where that is not beaten
// (quant_search.h): never a larger squared error than the max rule's, per block. Every type
// below has the same pair.
#ifndef G3_QUANT_H
#define G3_QUANT_H

#include <stdint.h>

#include "dtype.h"

enum { G3_QK8_0 = 32, G3_QK4_0 = 32 };

typedef struct {
    uint16_t d;            // f16 scale
    int8_t qs[G3_QK8_0];
} G3BlockQ8_0;
G3_BLOCK_SIZE_CHECK(G3BlockQ8_0, 34);

typedef struct {
    uint16_t d;            // f16 scale
    uint8_t qs[G3_QK4_0 / 2];  // nibbles: element j low, element j + 16 high
} G3BlockQ4_0;
G3_BLOCK_SIZE_CHECK(G3BlockQ4_0, 18);

// n a multiple of 32 (the traits' callers guarantee it).
void g3_q8_0_to_f32(float *dst, const void *src, int64_t n);
void g3_q8_0_from_f32(void *dst, const float *src, int64_t n);
void g3_q8_0_from_f32_simple(void *dst, const float *src, int64_t n);
void g3_q4_0_to_f32(float *dst, const void *src, int64_t n);
void g3_q4_0_from_f32(void *dst, const float *src, int64_t n);
void g3_q4_0_from_f32_simple(void *dst, const float *src, int64_t n);

// The other legacy blocks (quant_legacy.c), 32 elements each:
//   Q4_1: f16 d, f16 m, 16 bytes of nibbles (as Q4_0);  x = q * d + m            (20 bytes, 5.0 bits/weight)
//   Q5_0: f16 d, u32 qh (bit j: element j's fifth bit), nibbles as Q4_0; x = (q - 16) * d  (22 bytes, 5.5)
//   Q5_1: f16 d, f16 m, u32 qh, nibbles;                 x = q * d + m            (24 bytes, 6.0)
// Max rules (_simple) as ggml's _ref: Q4_1/Q5_1 d = (max - min) / (15 | 31), m = min, q =
// round-half-up; Q5_0 d = m / -16 for the x of largest magnitude, q = min(31, trunc(x / d + 16.5)).
enum { G3_QK_K = 256 };
typedef struct {
    uint16_t d, m;
    uint8_t qs[16];
} G3BlockQ4_1;
G3_BLOCK_SIZE_CHECK(G3BlockQ4_1, 20);
typedef struct {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[16];
} G3BlockQ5_0;
G3_BLOCK_SIZE_CHECK(G3BlockQ5_0, 22);
typedef struct {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[16];
} G3BlockQ5_1;
G3_BLOCK_SIZE_CHECK(G3BlockQ5_1, 24);

// ggml's K-quants (quant_k.c): super-blocks of 256 elements in sub-blocks with their own
// scales, the scales themselves quantized.
//   Q4_K: f16 d, f16 dmin, 12 bytes of eight 6-bit scales and eight 6-bit mins, 128 bytes of
//         nibbles: each 64 elements, the 32 low nibbles then the 32 high ones of 32 bytes;
//         x = d * sc * q - dmin * m                                                (144 bytes, 4.5 bits/weight)
//   Q5_K: as Q4_K plus qh[32]: element l of the c-th 64 takes bit 2c (first 32) or 2c+1 of qh[l]
//                                                                                  (176 bytes, 5.5)
//   Q6_K: ql[128] low nibbles, qh[64] high 2 bits, int8 scales[16] (one per 16), f16 d;
//         x = d * sc * (q - 32)                                                    (210 bytes, 6.5625)
// The max rules (_simple) take each sub-block's min and max, then quantize the scales (rounded
// up, so the range stays covered); from_f32 searches each sub-block's scale and min, quantizes
// them and refines each pair by a step (quant_search.c): on the default model's matrices its
// squared error is 0.90-0.97 of ggml's quantize_row_*_ref (docs/quantization.md).
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qs[128];
} G3BlockQ4_K;
G3_BLOCK_SIZE_CHECK(G3BlockQ4_K, 144);
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
} G3BlockQ5_K;
G3_BLOCK_SIZE_CHECK(G3BlockQ5_K, 176);
typedef struct {
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    uint16_t d;
} G3BlockQ6_K;
G3_BLOCK_SIZE_CHECK(G3BlockQ6_K, 210);

void g3_q4_1_to_f32(float *dst, const void *src, int64_t n);
void g3_q4_1_from_f32(void *dst, const float *src, int64_t n);
void g3_q4_1_from_f32_simple(void *dst, const float *src, int64_t n);
void g3_q5_0_to_f32(float *dst, const void *src, int64_t n);
void g3_q5_0_from_f32(void *dst, const float *src, int64_t n);
void g3_q5_0_from_f32_simple(void *dst, const float *src, int64_t n);
void g3_q5_1_to_f32(float *dst, const void *src, int64_t n);
void g3_q5_1_from_f32(void *dst, const float *src, int64_t n);
void g3_q5_1_from_f32_simple(void *dst, const float *src, int64_t n);
void g3_q4_k_to_f32(float *dst, const void *src, int64_t n);  // n a multiple of 256
void g3_q4_k_from_f32(void *dst, const float *src, int64_t n);
void g3_q4_k_from_f32_simple(void *dst, const float *src, int64_t n);
void g3_q5_k_to_f32(float *dst, const void *src, int64_t n);
void g3_q5_k_from_f32(void *dst, const float *src, int64_t n);
void g3_q5_k_from_f32_simple(void *dst, const float *src, int64_t n);
void g3_q6_k_to_f32(float *dst, const void *src, int64_t n);
void g3_q6_k_from_f32(void *dst, const float *src, int64_t n);
void g3_q6_k_from_f32_simple(void *dst, const float *src, int64_t n);


// Importance-weighted rounding (quant_weighted.c): row x[n] of type t (n a multiple of its
// block) with a weight per element w[n] >= 0 (a column's importance, quantize_imatrix.h): each
// block's scale (and min) chosen to minimize sum_i w_i (x_i - x'_i)^2 by a small search around
// the max-based scale, kept only where it beats the reference quantizer's block on that
// objective (so it is never worse). Same layouts as the references: ggml and llama.cpp read
// the result. w NULL, a type without a scale choice (F32, F16, BF16), or a block with no
// weight: exactly the reference quantizer's bytes.
int g3_quant_weighted_has(G3DType t);  // 1 for Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K Q6_K
void g3_quant_weighted(G3DType t, void *dst, const float *x, const float *w, int64_t n);

#endif
