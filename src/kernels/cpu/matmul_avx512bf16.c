// matmul_avx512bf16.c: the fast path for bf16 weights, x rounded to bf16 once per call
// (by the dispatcher, into a scratch buffer) and multiplied with vdpbf16ps: 32 products
// of pairs summed into 16 f32 lanes per instruction. Products of two bf16 values are
// exact in f32, so the only differences from the exact path are x's rounding (~2^-9
// relative per element) and summation order. The instruction treats denormals as zero.
#include <immintrin.h>

#include "kernels_cpu.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))
#define INL static inline __attribute__((always_inline)) TGT

INL __m128 hsum4(__m512 a, __m512 b, __m512 c, __m512 d) {
    __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    __m512 s = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd))),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd))));
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(s), _mm512_extractf32x8_ps(s, 1));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// y[0..RN) = (add ? y : 0) + the lane sums of acc[0..RN).
INL void store_sums(float *y, const __m512 *acc, int RN, int add) {
    if (RN == 1) {
        float s = _mm512_reduce_add_ps(acc[0]);
        y[0] = add ? y[0] + s : s;
        return;
    }
    __m512 z = _mm512_setzero_ps();
    for (int j = 0; j < RN; j += 4) {
        int n = RN - j < 4 ? RN - j : 4;
        __m128 s = hsum4(acc[j], n > 1 ? acc[j + 1] : z, n > 2 ? acc[j + 2] : z, n > 3 ? acc[j + 3] : z);
        if (add) s = _mm_add_ps(s, _mm_maskz_loadu_ps((__mmask8)((1u << n) - 1), y + j));
        if (n == 4) _mm_storeu_ps(y + j, s);
        else _mm_mask_storeu_ps(y + j, (__mmask8)((1u << n) - 1), s);
    }
}

INL __m512bh ld(const uint16_t *p, __mmask32 m) { return (__m512bh)_mm512_maskz_loadu_epi16(m, p); }
INL __m512bh ldf(const uint16_t *p) { return (__m512bh)_mm512_loadu_si512(p); }

// y[t0+r, n0+j] (+)= the dot products over k in [0, kc) of x and w rows of stride K.
INL void tile(int RT, int RN, float *y, const uint16_t *x, const uint16_t *w, int K, int kc, int N, int t0, int n0,
              int add) {
    __m512 acc[8][8];  // fixed size (not [RT][RN]) so that gcc keeps them in registers
#pragma GCC unroll 8
    for (int r = 0; r < RT; r++)
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) acc[r][j] = _mm512_setzero_ps();
    const uint16_t *xr = x + (size_t)t0 * K, *wr = w + (size_t)n0 * K;
    int k = 0;
    for (; k + 32 <= kc; k += 32) {
        __m512bh xv[8];
#pragma GCC unroll 8
        for (int r = 0; r < RT; r++) xv[r] = ldf(xr + (size_t)r * K + k);
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) {
            __m512bh wv = ldf(wr + (size_t)j * K + k);
#pragma GCC unroll 8
            for (int r = 0; r < RT; r++) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], xv[r], wv);
        }
    }
    if (k < kc) {
        __mmask32 m = (__mmask32)((1ull << (kc - k)) - 1);
        __m512bh xv[8];
#pragma GCC unroll 8
        for (int r = 0; r < RT; r++) xv[r] = ld(xr + (size_t)r * K + k, m);
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) {
            __m512bh wv = ld(wr + (size_t)j * K + k, m);
#pragma GCC unroll 8
            for (int r = 0; r < RT; r++) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], xv[r], wv);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < RT; r++) store_sums(y + (size_t)(t0 + r) * N + n0, acc[r], RN, add);
}

#define ROWBLOCK(RT, RN)                                                                  \
    do {                                                                                  \
        int n = nb;                                                                       \
        for (; n + RN <= ne; n += RN) tile(RT, RN, y, xb + k0, wb + k0, K, kc, N, t, n, k0 > 0);                \
        for (; n < ne; n++) tile(RT, 1, y, xb + k0, wb + k0, K, kc, N, t, n, k0 > 0);                           \
    } while (0)

// Decode (T = 1): one w row at a time, four accumulators over K. A single sequential
// stream per thread is what the hardware prefetchers follow best; a 1 x 8 tile (eight
// streams), with or without software prefetch, measured ~15-20% slower on Zen 4.
INL void row1(float *y, const uint16_t *x, const uint16_t *w, int K, int n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const uint16_t *wr = w + (size_t)n * K;
    int k = 0;
    for (; k + 128 <= K; k += 128) {
        a0 = _mm512_dpbf16_ps(a0, ldf(x + k), ldf(wr + k));
        a1 = _mm512_dpbf16_ps(a1, ldf(x + k + 32), ldf(wr + k + 32));
        a2 = _mm512_dpbf16_ps(a2, ldf(x + k + 64), ldf(wr + k + 64));
        a3 = _mm512_dpbf16_ps(a3, ldf(x + k + 96), ldf(wr + k + 96));
    }
    for (; k + 32 <= K; k += 32) a0 = _mm512_dpbf16_ps(a0, ldf(x + k), ldf(wr + k));
    if (k < K) {
        __mmask32 m = (__mmask32)((1ull << (K - k)) - 1);
        a1 = _mm512_dpbf16_ps(a1, ld(x + k, m), ld(wr + k, m));
    }
    y[n] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}
// Rows of K are cut into chunks of at most KC (a multiple of 32) so that a 4-row tile of x
// (4 x KC x 2 bytes = 18 KB) stays in L1 while it meets a block of w rows (~256 KB, in L2);
// later chunks add to the sums of earlier ones. Only K > KC (the 6912-wide down projection)
// is cut, into equal parts.
#define KC 2304

TGT static void mm_bf16_fast(float *y, const void *x, const void *w, int T, int K, int N, int n0, int n1) {
    const uint16_t *xb = x, *wb = w;
    if (T == 1) {
        for (int n = n0; n < n1; n++) row1(y, xb, wb, K, n);
        return;
    }
    int nchunks = (K + KC - 1) / KC, kstep = ((K + nchunks - 1) / nchunks + 31) & ~31;
    int nbk = (int)((256 * 1024) / ((size_t)kstep * 2));
    nbk = nbk < 8 ? 8 : nbk & ~7;
    for (int nb = n0; nb < n1; nb += nbk) {
        int ne = nb + nbk < n1 ? nb + nbk : n1;
        for (int k0 = 0; k0 < K; k0 += kstep) {
            int kc = K - k0 < kstep ? K - k0 : kstep;
            int t = 0;
            for (; t + 4 <= T; t += 4) ROWBLOCK(4, 4);
            switch (T - t) {
            case 3: ROWBLOCK(3, 4); break;
            case 2: ROWBLOCK(2, 4); break;
            case 1: ROWBLOCK(1, 4); break;
            }
        }
    }
}

TGT static void f32_to_bf16(uint16_t *dst, const float *src, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm256_mask_storeu_epi16(dst + i, m, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i)));
    }
}

void g3_cpu_kernels_avx512bf16(G3CpuKernels *k) {
    k->mm_bf16_fast = mm_bf16_fast;
    k->f32_to_bf16 = f32_to_bf16;
    g3_cpu_kernels_avx512bf16_gemm(k);
}
