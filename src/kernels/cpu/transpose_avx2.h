// transpose_avx2.h: the 8 x 8 f32 register transpose that the GEMM packing routines of both
// x86 ISA files build on (sgemm_avx2.c, sgemm_avx512.c, the bf16 pair packing too). Inline,
// so it takes the caller's target; it needs AVX (the AVX-512 files call it from their
// AVX-512 functions).
#ifndef G3_TRANSPOSE_AVX2_H
#define G3_TRANSPOSE_AVX2_H

#include <immintrin.h>
#include <stddef.h>

// 8 vectors of 8 floats (or of any 32-bit values) transposed: out[k] holds element k of each r[i].
__attribute__((target("avx2"), always_inline)) static inline void g3_transpose_8x8_reg(__m256 out[8], const __m256 r[8]) {
    __m256 t[8];
#pragma GCC unroll 4
    for (int i = 0; i < 8; i += 2) t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]), t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    // u: per 128-bit lane, 4 rows at one k (rows 0-3 from t0..t3, rows 4-7 from t4..t7)
    __m256 u0 = _mm256_shuffle_ps(t[0], t[2], 0x44), u1 = _mm256_shuffle_ps(t[0], t[2], 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t[1], t[3], 0x44), u3 = _mm256_shuffle_ps(t[1], t[3], 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t[4], t[6], 0x44), u5 = _mm256_shuffle_ps(t[4], t[6], 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t[5], t[7], 0x44), u7 = _mm256_shuffle_ps(t[5], t[7], 0xEE);
    out[0] = _mm256_permute2f128_ps(u0, u4, 0x20), out[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    out[1] = _mm256_permute2f128_ps(u1, u5, 0x20), out[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    out[2] = _mm256_permute2f128_ps(u2, u6, 0x20), out[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    out[3] = _mm256_permute2f128_ps(u3, u7, 0x20), out[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// 8 rows of 8 floats (stride ld) transposed: out[k] holds element k of each row.
__attribute__((target("avx2"), always_inline)) static inline void g3_transpose_8x8(__m256 out[8], const float *s, size_t ld) {
    __m256 r[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(s + i * ld);
    g3_transpose_8x8_reg(out, r);
}

#endif
