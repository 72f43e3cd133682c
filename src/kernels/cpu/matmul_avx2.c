// matmul_avx2.c: exact y = x . w^T with AVX2 + FMA + F16C, weights f32, bf16 or f16 used
// in place; the same tiling as matmul_avx512.c on 8-lane vectors. AVX2 has no 16-bit
// masked loads, so K tails (K % 8) are summed in scalar code and added after the
// horizontal reduction.
#include <immintrin.h>

#include "kernels_cpu.h"
#include "../../tensor/dtype.h"

#define TGT __attribute__((target("avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT

enum { WF32, WBF16, WF16 };

INL __m256 load_w(const void *w, size_t i, int dt) {
    if (dt == WF32) return _mm256_loadu_ps((const float *)w + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
    if (dt == WF16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

INL float w_scalar(const void *w, size_t i, int dt) {
    if (dt == WF32) return ((const float *)w)[i];
    if (dt == WF16) return g3_f16_to_f32(((const uint16_t *)w)[i]);
    return g3_bf16_to_f32(((const uint16_t *)w)[i]);
}

INL __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

INL void tile(int RT, int RN, int dt, float *y, const float *x, const void *w, int K, int N, int t0, int n0) {
    __m256 acc[8][8];  // fixed size (not [RT][RN]) so that gcc keeps them in registers
#pragma GCC unroll 8
    for (int r = 0; r < RT; r++)
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) acc[r][j] = _mm256_setzero_ps();
    const float *xr = x + (size_t)t0 * K;
    size_t wr = (size_t)n0 * K;
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 xv[8];
#pragma GCC unroll 8
        for (int r = 0; r < RT; r++) xv[r] = _mm256_loadu_ps(xr + (size_t)r * K + k);
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) {
            __m256 wv = load_w(w, wr + (size_t)j * K + k, dt);
#pragma GCC unroll 8
            for (int r = 0; r < RT; r++) acc[r][j] = _mm256_fmadd_ps(xv[r], wv, acc[r][j]);
        }
    }
    int kt = k;
#pragma GCC unroll 8
    for (int r = 0; r < RT; r++) {
        float out[8];
        __m256 z = _mm256_setzero_ps();
        for (int j = 0; j < RN; j += 4) {
            __m128 s = hsum4(acc[r][j], j + 1 < RN ? acc[r][j + 1] : z, j + 2 < RN ? acc[r][j + 2] : z,
                             j + 3 < RN ? acc[r][j + 3] : z);
            _mm_storeu_ps(out + j, s);
        }
        for (int j = 0; j < RN; j++) {
            float s = out[j];
            for (int kk = kt; kk < K; kk++) s += xr[(size_t)r * K + kk] * w_scalar(w, wr + (size_t)j * K + kk, dt);
            y[(size_t)(t0 + r) * N + n0 + j] = s;
        }
    }
}

#define ROWBLOCK(RT, RN, dt)                                                              \
    do {                                                                                  \
        int n = nb;                                                                       \
        for (; n + RN <= ne; n += RN) tile(RT, RN, dt, y, xf, w, K, N, t, n);             \
        for (; n < ne; n++) tile(RT, 1, dt, y, xf, w, K, N, t, n);                        \
    } while (0)

INL void mm_range(int dt, float *y, const void *x, const void *w, int T, int K, int N, int n0, int n1) {
    const float *xf = x;
    int esize = dt == WF32 ? 4 : 2;
    int nbk = (int)((256 * 1024) / ((size_t)K * esize));
    nbk = nbk < 8 ? 8 : nbk & ~7;
    for (int nb = n0; nb < n1; nb += nbk) {
        int ne = nb + nbk < n1 ? nb + nbk : n1;
        int t = 0;
        if (T == 1) {
            ROWBLOCK(1, 8, dt);
            continue;
        }
        for (; t + 3 <= T; t += 3) ROWBLOCK(3, 4, dt);
        switch (T - t) {
        case 2: ROWBLOCK(2, 4, dt); break;
        case 1: ROWBLOCK(1, 4, dt); break;
        }
    }
}

TGT static void mm_f32(float *y, const void *x, const void *w, int T, int K, int N, int n0, int n1) { mm_range(WF32, y, x, w, T, K, N, n0, n1); }
TGT static void mm_bf16(float *y, const void *x, const void *w, int T, int K, int N, int n0, int n1) { mm_range(WBF16, y, x, w, T, K, N, n0, n1); }
TGT static void mm_f16(float *y, const void *x, const void *w, int T, int K, int N, int n0, int n1) { mm_range(WF16, y, x, w, T, K, N, n0, n1); }

void g3_cpu_kernels_avx2(G3CpuKernels *k) {
    k->mm_f32 = mm_f32;
    k->mm_bf16 = mm_bf16;
    k->mm_f16 = mm_f16;
    g3_cpu_kernels_avx2_sgemm(k);
}
