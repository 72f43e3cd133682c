// quant.h: ggml's block-quantized types, in ggml's exact layouts, with their scalar reference
// converters (the traits table's to_f32 / from_f32 for G3_Q8_0 and G3_Q4_0).
//
//   Q8_0: blocks of 32: an f16 scale d and 32 int8 q;  x = q * d               (34 bytes, 8.5 bits/weight)
//   Q4_0: blocks of 32: an f16 scale d and 16 bytes;   x = (q - 8) * d, q 4-bit (18 bytes, 4.5 bits/weight)
//         byte j holds element j in its low nibble and element j + 16 in its high nibble.
//
// The quantizers follow ggml's quantize_row_*_ref rounding exactly (so a file we write holds
// the bytes llama.cpp's reference would): Q8_0: d = max|x| / 127, q = round(x / d); Q4_0: d =
// m / -8 where m is the x of largest magnitude (sign kept), q = min(15, trunc(x / d + 8.5)).
// The scale is stored in f16 after the q are computed from the f32 d, as ggml does.
// Error bounds (tests/test_quant.c): Q8_0 |x - x'| <= 0.5 d + 127 d 2^-11; Q4_0 |x - x'| <=
// |d| (+ 8 |d| 2^-11), and 0.5 |d| except for values near -m, clamped from 16 to 15.
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
void g3_q4_0_to_f32(float *dst, const void *src, int64_t n);
void g3_q4_0_from_f32(void *dst, const float *src, int64_t n);

#endif
