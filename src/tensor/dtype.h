// dtype.h: the element types gemma3.c reads and writes, their traits, and their conversions.
// bf16 is the top half of an f32; f16 is IEEE half. Conversions here are the scalar
// references; kernels may convert in bulk with SIMD.
//
// Every byte count in the project comes from the traits table (g3_type_row_bytes,
// g3_type_bytes), never from "elements x element size": a quantized type stores blocks
// of `block` elements in `block_bytes` bytes, so a row of n elements is n / block blocks.
// Adding a type: docs/architecture.md, "Adding a weight type".
#ifndef G3_DTYPE_H
#define G3_DTYPE_H

#include <stdint.h>
#include <string.h>

// Q8_0 ... Q6_K are ggml's block types (quant.h), read from and written to GGUF files; SFP8 is
// gemma.cpp's switched floating point (sfp8.h), one byte per weight, a safetensors-side type.
typedef enum {
    G3_F32 = 0, G3_BF16, G3_F16, G3_F64, G3_I64, G3_I32, G3_U8, G3_I8, G3_Q8_0, G3_Q4_0,
    G3_Q4_1, G3_Q5_0, G3_Q5_1, G3_Q4_K, G3_Q5_K, G3_Q6_K, G3_SFP8, G3_DTYPE_COUNT
} G3DType;

// Backends, as bits of G3TypeTraits.linear_backends.
enum { G3_BACKEND_CPU = 0, G3_BACKEND_CUDA = 1 };

typedef struct {
    const char *name;        // safetensors / display name: "F32", "BF16", ...
    int block;               // elements per block (1 for plain types; 32 for ggml's Q8_0 later)
    int block_bytes;         // bytes per block
    int is_float;            // 1: a weight type (to_f32 exists and gives real values)
    uint32_t linear_backends;// bit (1u << G3_BACKEND_CPU) / (1u << G3_BACKEND_CUDA): backends with a linear kernel for this type
    void (*to_f32)(float *dst, const void *src, int64_t n);     // n a multiple of block (the scalar reference)
    void (*from_f32)(void *dst, const float *src, int64_t n);   // the reference converter/quantizer; NULL if none
} G3TypeTraits;

// The traits of t; NULL for a value outside the enum. Non-weight types (F64, integers) have
// is_float 0 and no linear kernel; their to_f32 still converts values (for g3_to_f32) and
// their from_f32 is NULL.
const G3TypeTraits *g3_type(G3DType t);
// Bytes of n elements of t (a row); -1 if n is negative or not a multiple of the block,
// t is unknown, or the count overflows int64.
int64_t g3_type_row_bytes(G3DType t, int64_t n);
// The same for a whole tensor of numel elements (-1 likewise).
int64_t g3_type_bytes(G3DType t, int64_t numel);

// Quantized types store blocks whose layout the file format fixes (ggml's Q8_0: an f16 scale
// and 32 int8, 34 bytes). Each block struct is declared next to its converters followed by
//     G3_BLOCK_SIZE_CHECK(G3BlockQ8_0, 34);
// so that a compiler adding padding is a build error, not a silent misread of every weight.
// The traits entry's block_bytes must be the same number (tests/test_dtype.c checks the table).
#define G3_BLOCK_SIZE_CHECK(type, bytes) \
    _Static_assert(sizeof(type) == (bytes), #type " must be " #bytes " bytes: the file format fixes its layout")

// Size in bytes of one element (0 for a block type or an unknown value), the safetensors
// name, and the reverse lookup (-1 if unknown). Prefer g3_type_row_bytes for byte counts.
int g3_dtype_size(G3DType t);
const char *g3_dtype_name(G3DType t);
int g3_dtype_from_name(const char *name, size_t len);

static inline float g3_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// Round to nearest even, as PyTorch does; NaN stays NaN.
static inline uint16_t g3_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

float g3_f16_to_f32(uint16_t h);
uint16_t g3_f32_to_f16(float f);

// Converts n elements of type t at src to f32 (g3_type(t)->to_f32; nothing for an unknown t).
void g3_to_f32(float *dst, const void *src, G3DType t, size_t n);

#endif
