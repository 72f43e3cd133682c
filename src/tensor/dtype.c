// dtype.c: element sizes, names and scalar conversions.
#include "dtype.h"

static const struct { const char *name; int size; } dtypes[G3_DTYPE_COUNT] = {
    [G3_F32] = {"F32", 4}, [G3_BF16] = {"BF16", 2}, [G3_F16] = {"F16", 2}, [G3_F64] = {"F64", 8},
    [G3_I64] = {"I64", 8}, [G3_I32] = {"I32", 4},   [G3_U8] = {"U8", 1},    [G3_I8] = {"I8", 1},
};

int g3_dtype_size(G3DType t) { return (unsigned)t < G3_DTYPE_COUNT ? dtypes[t].size : 0; }
const char *g3_dtype_name(G3DType t) { return (unsigned)t < G3_DTYPE_COUNT ? dtypes[t].name : "?"; }

int g3_dtype_from_name(const char *name, size_t len) {
    for (int i = 0; i < G3_DTYPE_COUNT; i++)
        if (strlen(dtypes[i].name) == len && memcmp(dtypes[i].name, name, len) == 0) return i;
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
    switch (t) {
    case G3_F32: memcpy(dst, src, n * 4); break;
    case G3_BF16: for (size_t i = 0; i < n; i++) dst[i] = g3_bf16_to_f32(((const uint16_t *)src)[i]); break;
    case G3_F16: for (size_t i = 0; i < n; i++) dst[i] = g3_f16_to_f32(((const uint16_t *)src)[i]); break;
    case G3_F64: for (size_t i = 0; i < n; i++) dst[i] = (float)((const double *)src)[i]; break;
    case G3_I64: for (size_t i = 0; i < n; i++) dst[i] = (float)((const int64_t *)src)[i]; break;
    case G3_I32: for (size_t i = 0; i < n; i++) dst[i] = (float)((const int32_t *)src)[i]; break;
    case G3_U8: for (size_t i = 0; i < n; i++) dst[i] = ((const uint8_t *)src)[i]; break;
    case G3_I8: for (size_t i = 0; i < n; i++) dst[i] = ((const int8_t *)src)[i]; break;
    default: break;
    }
}
