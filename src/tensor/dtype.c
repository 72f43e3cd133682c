// dtype.c: the traits table, element names and the scalar conversions (see dtype.h).
#include "dtype.h"

#include <stddef.h>

#include "quant.h"
#include "sfp8.h"

// ---- row converters: the scalar references behind the traits ----

static void f32_to_f32(float *dst, const void *src, int64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }
static void f32_from_f32(void *dst, const float *src, int64_t n) { memcpy(dst, src, (size_t)n * sizeof(float)); }
static void bf16_to_f32(float *dst, const void *src, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = g3_bf16_to_f32(s[i]);
}
static void bf16_from_f32(void *dst, const float *src, int64_t n) {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = g3_f32_to_bf16(src[i]);
}
static void f16_to_f32(float *dst, const void *src, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = g3_f16_to_f32(s[i]);
}
static void f16_from_f32(void *dst, const float *src, int64_t n) {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = g3_f32_to_f16(src[i]);
}
// Not weight types: values only (checkpoint scalars, ids), through memcpy so that an
// unaligned source is no undefined behaviour.
#define VALUES_TO_F32(fn, T)                                              \
    static void fn(float *dst, const void *src, int64_t n) {              \
        const char *s = src;                                              \
        for (int64_t i = 0; i < n; i++) {                                 \
            T v;                                                          \
            memcpy(&v, s + i * (int64_t)sizeof v, sizeof v);              \
            dst[i] = (float)v;                                            \
        }                                                                 \
    }
VALUES_TO_F32(f64_to_f32, double)
VALUES_TO_F32(i64_to_f32, int64_t)
VALUES_TO_F32(i32_to_f32, int32_t)
VALUES_TO_F32(u8_to_f32, uint8_t)
VALUES_TO_F32(i8_to_f32, int8_t)

// The element layouts the table's block_bytes promise.
_Static_assert(sizeof(float) == 4 && sizeof(double) == 8, "f32 and f64 must be IEEE single and double");
_Static_assert(sizeof(uint16_t) == 2, "bf16 and f16 are stored as 16-bit words");

#define CPU (1u << G3_BACKEND_CPU)
#define CPU_CUDA ((1u << G3_BACKEND_CPU) | (1u << G3_BACKEND_CUDA))
static const G3TypeTraits traits[G3_DTYPE_COUNT] = {
    //            name    block bytes float linear    to_f32       from_f32
    [G3_F32] =  {"F32",   1,    4,    1,    CPU_CUDA, f32_to_f32,  f32_from_f32},
    [G3_BF16] = {"BF16",  1,    2,    1,    CPU_CUDA, bf16_to_f32, bf16_from_f32},
    [G3_F16] =  {"F16",   1,    2,    1,    CPU_CUDA, f16_to_f32,  f16_from_f32},
    [G3_F64] =  {"F64",   1,    8,    0,    0,        f64_to_f32,  NULL},
    [G3_I64] =  {"I64",   1,    8,    0,    0,        i64_to_f32,  NULL},
    [G3_I32] =  {"I32",   1,    4,    0,    0,        i32_to_f32,  NULL},
    [G3_U8] =   {"U8",    1,    1,    0,    0,        u8_to_f32,   NULL},
    [G3_I8] =   {"I8",    1,    1,    0,    0,        i8_to_f32,   NULL},
    // ggml's blocks (quant.h): a scalar CPU kernel (backend/cpu/linear_quant.c), none on CUDA yet
    [G3_Q8_0] = {"Q8_0",  32,   34,   1,    CPU,      g3_q8_0_to_f32, g3_q8_0_from_f32},
    [G3_Q4_0] = {"Q4_0",  32,   18,   1,    CPU,      g3_q4_0_to_f32, g3_q4_0_from_f32},
    [G3_Q4_1] = {"Q4_1",  32,   20,   1,    CPU,      g3_q4_1_to_f32, g3_q4_1_from_f32},
    [G3_Q5_0] = {"Q5_0",  32,   22,   1,    CPU,      g3_q5_0_to_f32, g3_q5_0_from_f32},
    [G3_Q5_1] = {"Q5_1",  32,   24,   1,    CPU,      g3_q5_1_to_f32, g3_q5_1_from_f32},
    [G3_Q4_K] = {"Q4_K",  256,  144,  1,    CPU,      g3_q4_k_to_f32, g3_q4_k_from_f32},
    [G3_Q5_K] = {"Q5_K",  256,  176,  1,    CPU,      g3_q5_k_to_f32, g3_q5_k_from_f32},
    [G3_Q6_K] = {"Q6_K",  256,  210,  1,    CPU,      g3_q6_k_to_f32, g3_q6_k_from_f32},
    // gemma.cpp's SFP (sfp8.h): backend/cpu/linear_sfp8.c
    [G3_SFP8] = {"SFP8",  1,    1,    1,    CPU,      g3_sfp8_to_f32, g3_sfp8_from_f32},
};

const G3TypeTraits *g3_type(G3DType t) { return (unsigned)t < G3_DTYPE_COUNT ? &traits[t] : NULL; }

int64_t g3_type_row_bytes(G3DType t, int64_t n) {
    const G3TypeTraits *tt = g3_type(t);
    if (!tt || n < 0 || n % tt->block) return -1;
    int64_t blocks = n / tt->block;
    if (blocks > INT64_MAX / tt->block_bytes) return -1;
    return blocks * tt->block_bytes;
}

int64_t g3_type_bytes(G3DType t, int64_t numel) { return g3_type_row_bytes(t, numel); }

int g3_dtype_size(G3DType t) {
    const G3TypeTraits *tt = g3_type(t);
    return tt && tt->block == 1 ? tt->block_bytes : 0;
}
const char *g3_dtype_name(G3DType t) { return (unsigned)t < G3_DTYPE_COUNT ? traits[t].name : "?"; }

int g3_dtype_from_name(const char *name, size_t len) {
    for (int i = 0; i < G3_DTYPE_COUNT; i++)
        if (strlen(traits[i].name) == len && memcmp(traits[i].name, name, len) == 0) return i;
    return -1;
}

float g3_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else {  // subnormal: normalise
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) { man <<= 1; exp--; }
            u = sign | (exp << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000 | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t g3_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000;
    int32_t exp = (int32_t)((u >> 23) & 0xff) - 127 + 15;
    uint32_t man = u & 0x7fffff;
    if (((u >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)exp << 10) | (man >> 13), rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;  // may carry into the exponent: correct
    return (uint16_t)half;
}

void g3_to_f32(float *dst, const void *src, G3DType t, size_t n) {
    const G3TypeTraits *tt = g3_type(t);
    if (tt) tt->to_f32(dst, src, (int64_t)n);
}
