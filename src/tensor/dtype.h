// dtype.h: the element types gemma3.c reads and writes, and their conversions.
// bf16 is the top half of an f32; f16 is IEEE half. Conversions here are the scalar
// references; kernels may convert in bulk with SIMD.
#ifndef G3_DTYPE_H
#define G3_DTYPE_H

#include <stdint.h>
#include <string.h>

typedef enum { G3_F32 = 0, G3_BF16, G3_F16, G3_F64, G3_I64, G3_I32, G3_U8, G3_I8, G3_DTYPE_COUNT } G3DType;

// Size in bytes of one element, the safetensors name, and the reverse lookup (-1 if unknown).
int g3_dtype_size(G3DType t);
const char *g3_dtype_name(G3DType t);
int g3_dtype_from_name(const char *name, size_t len);

enum { G3_BACKEND_CPU = 0, G3_BACKEND_CUDA = 1 };

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

// Converts n elements of type t at src to f32.
void g3_to_f32(float *dst, const void *src, G3DType t, size_t n);

#endif
