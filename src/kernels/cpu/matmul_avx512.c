// matmul_avx512.c: exact y = x . w^T with AVX-512 (F, BW, VL), weights f32, bf16 or f16
// used in place. Dot-product formulation: x rows and w rows are both contiguous along K,
// so a tile of RT x rows times RN w rows keeps RT*RN vector accumulators, each w vector
// loaded once per tile and each x vector once per tile, and reduces them horizontally at
// the end, four at a time. bf16 is widened exactly (zero-extend, shift left 16), f16 by
// vcvtph2ps; products and sums are f32, so results match the reference to rounding.
// K tails use masked loads (masked-off lanes never fault), so any K and any alignment work.
#include <immintrin.h>

#include "kernels_cpu.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT

enum { WF32, WBF16, WF16 };

// 16 weights from element i of w (of type dt) as f32, lanes outside m zero.
INL __m512 load_w(const void *w, size_t i, int dt, __mmask16 m) {
    if (dt == WF32) return _mm512_maskz_loadu_ps(m, (const float *)w + i);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)w + i);
    if (dt == WF16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// Lane sums of a, b, c, d as one 4-vector.
INL __m128 hsum4(__m512 a, __m512 b, __m512 c, __m512 d) {
    __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    __m512 s = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd))),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd))));
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(s), _mm512_extractf32x8_ps(s, 1));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// Stores the sums of acc[0..RN) (RN <= 8) to y[0..RN).
INL void store_sums(float *y, const __m512 *acc, int RN) {
    if (RN == 1) {
        y[0] = _mm512_reduce_add_ps(acc[0]);
        return;
    }
    __m512 z = _mm512_setzero_ps();
    for (int j = 0; j < RN; j += 4) {
        int n = RN - j < 4 ? RN - j : 4;
        __m128 s = hsum4(acc[j], n > 1 ? acc[j + 1] : z, n > 2 ? acc[j + 2] : z, n > 3 ? acc[j + 3] : z);
        if (n == 4) _mm_storeu_ps(y + j, s);
        else _mm_mask_storeu_ps(y + j, (__mmask8)((1u << n) - 1), s);
    }
}

// y[t0+r, n0+j] for r < RT, j < RN.
INL void tile(int RT, int RN, int dt, float *y, const float *x, const void *w, int K, int N, int t0, int n0) {
    __m512 acc[8][8];  // fixed size (not [RT][RN]) so that gcc keeps them in registers
#pragma GCC unroll 8
    for (int r = 0; r < RT; r++)
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) acc[r][j] = _mm512_setzero_ps();
    const float *xr = x + (size_t)t0 * K;
    size_t wr = (size_t)n0 * K;
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 xv[8];
#pragma GCC unroll 8
        for (int r = 0; r < RT; r++) xv[r] = _mm512_loadu_ps(xr + (size_t)r * K + k);
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) {
            __m512 wv = load_w(w, wr + (size_t)j * K + k, dt, 0xffff);
#pragma GCC unroll 8
            for (int r = 0; r < RT; r++) acc[r][j] = _mm512_fmadd_ps(xv[r], wv, acc[r][j]);
        }
    }
    if (k < K) {
        __mmask16 m = (__mmask16)((1u << (K - k)) - 1);
        __m512 xv[8];
#pragma GCC unroll 8
        for (int r = 0; r < RT; r++) xv[r] = _mm512_maskz_loadu_ps(m, xr + (size_t)r * K + k);
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) {
            __m512 wv = load_w(w, wr + (size_t)j * K + k, dt, m);
#pragma GCC unroll 8
            for (int r = 0; r < RT; r++) acc[r][j] = _mm512_fmadd_ps(xv[r], wv, acc[r][j]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < RT; r++) store_sums(y + (size_t)(t0 + r) * N + n0, acc[r], RN);
}

// Decode (T = 1): one w row at a time, four accumulators over K. A single sequential
// stream per thread is what the hardware prefetchers follow best; several row streams
// at once (a 1 x 8 tile) measured ~20% slower on Zen 4.
INL void row1(int dt, float *y, const float *x, const void *w, int K, int n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t wr = (size_t)n * K;
    int k = 0;
    for (; k + 64 <= K; k += 64) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + k), load_w(w, wr + k, dt, 0xffff), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + k + 16), load_w(w, wr + k + 16, dt, 0xffff), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + k + 32), load_w(w, wr + k + 32, dt, 0xffff), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + k + 48), load_w(w, wr + k + 48, dt, 0xffff), a3);
    }
    for (; k < K; k += 16) {
        __mmask16 m = K - k >= 16 ? 0xffff : (__mmask16)((1u << (K - k)) - 1);
        a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + k), load_w(w, wr + k, dt, m), a0);
    }
    y[n] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

// One row block of RT rows (rt <= RT actual), columns [n0, n1): RN at a time, then singles.
#define ROWBLOCK(RT, RN, dt)                                                              \
    do {                                                                                  \
        int n = nb;                                                                       \
        for (; n + RN <= ne; n += RN) tile(RT, RN, dt, y, xf, w, K, N, t, n);             \
        for (; n < ne; n++) tile(RT, 1, dt, y, xf, w, K, N, t, n);                        \
    } while (0)

// Columns are taken in blocks whose weights (~256 KB) stay in L2 while every row tile of
// x passes over them; for T = 1 that is simply one streaming pass over w.
INL void mm_range(int dt, float *y, const void *x, const void *w, int T, int K, int N, int n0, int n1) {
    const float *xf = x;
    int esize = dt == WF32 ? 4 : 2;
    int nbk = (int)((256 * 1024) / ((size_t)K * esize));
    nbk = nbk < 8 ? 8 : nbk & ~7;
    for (int nb = n0; nb < n1; nb += nbk) {
        int ne = nb + nbk < n1 ? nb + nbk : n1;
        int t = 0;
        if (T == 1) {
            for (int n = nb; n < ne; n++) row1(dt, y, xf, w, K, n);
            continue;
        }
        for (; t + 4 <= T; t += 4) ROWBLOCK(4, 4, dt);
        switch (T - t) {
        case 3: ROWBLOCK(3, 4, dt); break;
        case 2: ROWBLOCK(2, 4, dt); break;
        case 1: ROWBLOCK(1, 4, dt); break;
        }
    }
}

TGT static void mm_f32(float *y, const void *x, const void *w, int T, int K, int N, int n0, int n1) { mm_range(WF32, y, x, w, T, K, N, n0, n1); }
TGT static void mm_bf16(float *y, const void *x, const void *w, int T, int K, int N, int n0, int n1) { mm_range(WBF16, y, x, w, T, K, N, n0, n1); }
TGT static void mm_f16(float *y, const void *x, const void *w, int T, int K, int N, int n0, int n1) { mm_range(WF16, y, x, w, T, K, N, n0, n1); }

void g3_cpu_kernels_avx512(G3CpuKernels *k) {
    k->mm_f32 = mm_f32;
    k->mm_bf16 = mm_bf16;
    k->mm_f16 = mm_f16;
    g3_cpu_kernels_avx512_sgemm(k);
}
