// sfp8.h: gemma.cpp's SFP ("switched floating point"), one byte per weight, no block scale.
// Our own implementation from the format's definition (gemma.cpp compression/types.h,
// SfpStream, and compression/sfp-inl.h); see docs/quantization.md, "SFP8".
//
//   bit 7: sign. Bits 0-6: c (0 .. 127), the magnitude:
//     c == 0           zero (0x80, "-0", is reserved: never written; read as zero)
//     c in [1, 64)     (1 + (c & 3) / 4) * 2^((c >> 2) - 23)   2-bit mantissa, 2^-23 .. 1.75 * 2^-8
//     c in [64, 128)   (1 + (c & 7) / 8) * 2^((c >> 3) - 15)   3-bit mantissa, 2^-7  .. 1.875
// The magnitudes increase with c, so the code order is the value order. A code is the top bits
// of the value's bf16/f32 pattern: f32 bits = (c << 21) + 0x34000000 for c < 64, (c << 20) +
// 0x38000000 above (the fast decoders use that).
// Encoding (the reference, g3_sfp8_encode): round to the nearest representable value, ties to
// the even code (low bit 0, which is also round-half-to-even on the mantissa); magnitudes above
// 1.875 saturate to +-1.875 (gemma.cpp scales such tensors first: we do not, see convert);
// NaN encodes as 0. A result of magnitude zero is always 0x00.
#ifndef G3_SFP8_H
#define G3_SFP8_H

#include <stdint.h>

#define G3_SFP8_MAX 1.875f

float g3_sfp8_decode(uint8_t b);
uint8_t g3_sfp8_encode(float x);
// The traits table's row converters (any n).
void g3_sfp8_to_f32(float *dst, const void *src, int64_t n);
void g3_sfp8_from_f32(void *dst, const float *src, int64_t n);

#endif
