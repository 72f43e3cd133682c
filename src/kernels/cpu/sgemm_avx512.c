// sgemm_avx512.c: the AVX-512 f32 micro-kernel of the blocked GEMM (sgemm.c): an 8 x 32
// tile of C in 16 zmm accumulators; per step of k, two vectors of the packed B panel and
// eight broadcasts of the packed A panel (or of A in place). Edges (mr < 8, nr < 32) are
// handled by masked loads and stores of C, so the packed panels are the only thing padded.
// Then the bf16 GEMM's micro-kernel and packing (AVX512-BF16), on the same tile.
#include <immintrin.h>

#include "kernels_cpu.h"
#include "transpose_avx2.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define MR 8
#define NR 32

// Fetches the C tile's rows (ldc apart, often a power of two of bytes) while the k loop runs:
// missing on each at the end stalled the tile (as in the AVX2 tile).
TGT static inline __attribute__((always_inline)) void prefetch_tile(const float *c, int ldc, int mr) {
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        _mm_prefetch((const char *)(c + (size_t)(r < mr ? r : 0) * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + (size_t)(r < mr ? r : 0) * ldc + NR - 1), _MM_HINT_T0);
    }
}

// c[mr, nr] (+)= the tile's sums, by masked loads and stores at the edges.
TGT static inline __attribute__((always_inline)) void store_tile(__m512 acc[MR][2], float *c, int ldc, int mr, int nr,
                                                                  int accumulate) {
    __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? 0xffff : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        if (r >= mr) break;
        float *cr = c + (size_t)r * ldc;
        __m512 c0 = acc[r][0], c1 = acc[r][1];
        if (accumulate) {
            c0 = _mm512_add_ps(c0, _mm512_maskz_loadu_ps(m0, cr));
            c1 = _mm512_add_ps(c1, _mm512_maskz_loadu_ps(m1, cr + 16));
        }
        _mm512_mask_storeu_ps(cr, m0, c0);
        _mm512_mask_storeu_ps(cr + 16, m1, c1);
    }
}

// The tile's body for A read as a[r * rs + k * ks]: packed (rs 1, ks MR) or in place in a
// row-major A (rs lda, ks 1), where the rows past mr point at row 0 (their sums are dropped).
// In place is told by ks = 1, not rs: with K = 1, lda is 1 too (the rows past mr were read
// past the end of A, which AddressSanitizer caught at M = K = 1).
TGT static inline __attribute__((always_inline)) void tile_8x32(int K, const float *a, size_t rs, size_t ks, const float *b,
                                                                 float *c, int ldc, int mr, int nr, int accumulate) {
    __m512 acc[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    prefetch_tile(c, ldc, mr);
    const float *ar[MR];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) ar[r] = a + (ks != 1 || r < mr ? r : 0) * rs;  // packed (ks = MR): zero-padded rows
    for (int k = 0; k < K; k++) {
        __m512 b0 = _mm512_loadu_ps(b + (size_t)k * NR), b1 = _mm512_loadu_ps(b + (size_t)k * NR + 16);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_set1_ps(ar[r][(size_t)k * ks]);
            acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    store_tile(acc, c, ldc, mr, nr, accumulate);
}

TGT static void micro_8x32(int K, const float *a, const float *b, float *c, int ldc, int mr, int nr, int accumulate) {
    tile_8x32(K, a, 1, MR, b, c, ldc, mr, nr, accumulate);
}

// A in place (row-major, row stride lda): no packing, for products whose A is short-rowed.
TGT static void micro_8x32_rowa(int K, const float *a, int lda, const float *b, float *c, int ldc, int mr, int nr, int accumulate) {
    tile_8x32(K, a, (size_t)lda, 1, b, c, ldc, mr, nr, accumulate);
}

// Packs 8 rows of A (stride lda) as kc steps of 8: each 8 x 8 block transposed in registers
// (the driver's loop moves one float at a time: 8% of a (b) training step on Zen 5).
TGT static void pack_a_8(float *d, const float *A, int lda, int kc) {
    int k = 0;
    for (; k + 8 <= kc; k += 8) {
        __m256 t[8];
        g3_transpose_8x8(t, A + k, (size_t)lda);
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) _mm256_storeu_ps(d + (size_t)(k + i) * MR, t[i]);
    }
    for (; k < kc; k++)
        for (int r = 0; r < MR; r++) d[(size_t)k * MR + r] = A[(size_t)r * lda + k];
}

// Packs 32 columns of a transposed B (32 rows of B's storage, stride ldb) as kc steps of 32:
// four 8 x 8 blocks transposed in registers per 8 k (the driver's loop, one float at a time,
// was 5% of a (b) training step on Zen 5: the forward products, whose weights are [N, K]).
TGT static void pack_bt_32(float *d, const float *B, int ldb, int kc) {
    int k = 0;
    for (; k + 8 <= kc; k += 8) {
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) {
            __m256 t[8];
            g3_transpose_8x8(t, B + (size_t)(8 * q) * ldb + k, (size_t)ldb);
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) _mm256_storeu_ps(d + (size_t)(k + i) * NR + 8 * q, t[i]);
        }
    }
    for (; k < kc; k++)
        for (int c = 0; c < NR; c++) d[(size_t)k * NR + c] = B[(size_t)c * ldb + k];
}

// C[MM, N] (+)= op(A)[MM, K] . B[K, N] for MM <= 4 rows, B not transposed (attention's
// P . V in decode): 64 columns of C at a time in 4 x 4 accumulators, B streamed once,
// nothing packed.
static inline __attribute__((always_inline)) TGT void small_m(int MM, int ta, int M, int N, int K, const float *A,
                                                              const float *B, float *C, int accumulate) {
    for (int j = 0; j < N; j += 64) {
        __mmask16 m[4];
        for (int v = 0; v < 4; v++) {
            int left = N - j - 16 * v;
            m[v] = left >= 16 ? 0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
        }
        __m512 acc[4][4];
#pragma GCC unroll 4
        for (int r = 0; r < MM; r++)
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) acc[r][v] = _mm512_setzero_ps();
        for (int k = 0; k < K; k++) {
            const float *b = B + (size_t)k * N + j;
            __m512 bv[4];
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) bv[v] = _mm512_maskz_loadu_ps(m[v], b + 16 * v);
#pragma GCC unroll 4
            for (int r = 0; r < MM; r++) {
                __m512 a = _mm512_set1_ps(ta ? A[(size_t)k * M + r] : A[(size_t)r * K + k]);
#pragma GCC unroll 4
                for (int v = 0; v < 4; v++) acc[r][v] = _mm512_fmadd_ps(a, bv[v], acc[r][v]);
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < MM; r++)
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) {
                float *c = C + (size_t)r * N + j + 16 * v;
                __m512 o = acc[r][v];
                if (accumulate) o = _mm512_add_ps(o, _mm512_maskz_loadu_ps(m[v], c));
                _mm512_mask_storeu_ps(c, m[v], o);
            }
    }
}

TGT static void sgemm_small_m(int ta, int M, int N, int K, const float *A, const float *B, float *C, int accumulate) {
    switch (M) {
    case 1: small_m(1, ta, M, N, K, A, B, C, accumulate); break;
    case 2: small_m(2, ta, M, N, K, A, B, C, accumulate); break;
    case 3: small_m(3, ta, M, N, K, A, B, C, accumulate); break;
    default: small_m(4, ta, M, N, K, A, B, C, accumulate); break;
    }
}

void g3_cpu_kernels_avx512_sgemm(G3CpuKernels *k) {
    k->sgemm_small_m = sgemm_small_m;
    k->sgemm_micro = micro_8x32;
    k->sgemm_micro_rowa = micro_8x32_rowa;
    k->sgemm_pack_a = pack_a_8;
    k->sgemm_pack_bt = pack_bt_32;
    k->sgemm_mr = MR;
    k->sgemm_nr = NR;
    k->sgemm_kc = 1024;
}

// ---- bf16 GEMM (AVX512-BF16) ----
// vdpbf16ps adds the two products of a pair of bf16 to each f32 lane: per step of k (a pair
// word), the same 8 x 32 tile as above does twice the work of an f32 step. Products of two
// bf16 are exact in f32; the instruction treats denormal inputs as zero.
#define TGT_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))

TGT_BF16 static void micro_bf16_8x32(int KD, const uint32_t *a, const uint32_t *b, float *c, int ldc, int mr, int nr,
                                     int accumulate) {
    __m512 acc[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    prefetch_tile(c, ldc, mr);
    for (int k = 0; k < KD; k++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + (size_t)k * NR), b1 = (__m512bh)_mm512_loadu_si512(b + (size_t)k * NR + 16);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[(size_t)k * MR + r]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
        }
    }
    store_tile(acc, c, ldc, mr, nr, accumulate);
}

// 16 floats (those of mask m, the rest zero) as 8 pair words in the lanes of a __m256.
TGT_BF16 static inline __attribute__((always_inline)) __m256 pairs_of_16(const float *s, __mmask16 m) {
    return _mm256_castsi256_ps((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, s)));
}

// n rows of S, k along the row: per 16 k of 8 rows, 8 x 8 pair words transposed in registers.
TGT_BF16 static void pack_rows_bf16(uint32_t *d, const float *S, int lds, int n, int kc) {
    for (int g = 0; g < n; g += 8)
        for (int k = 0; k < kc; k += 16) {
            int left = kc - k, nw = left >= 16 ? 8 : (left + 1) / 2;
            __mmask16 m = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
            __m256 r[8], t[8];
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) r[i] = pairs_of_16(S + (size_t)(g + i) * lds + k, m);
            g3_transpose_8x8_reg(t, r);
            for (int i = 0; i < nw; i++) _mm256_storeu_ps((float *)(d + (size_t)(k / 2 + i) * n + g), t[i]);
        }
}

// Columns of S [K, *]: per pair of rows, 16 columns of each rounded into one vector and
// their words interleaved (a word shuffle) into 16 pair words.
TGT_BF16 static void pack_cols_bf16(uint32_t *d, const float *S, int lds, int n, int w, size_t pstride, int kc) {
    __m512i inter = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4,
                                     19, 3, 18, 2, 17, 1, 16, 0);
    int kd = (kc + 1) / 2;
    for (int k2 = 0; k2 < kd; k2++) {
        const float *r0 = S + (size_t)(2 * k2) * lds, *r1 = r0 + lds;
        int has1 = 2 * k2 + 1 < kc;
        for (int c = 0; c < n; c += 16) {  // rows kilobytes apart: fetched ahead (see sgemm.c's PREFETCH_ROWS)
            _mm_prefetch((const char *)(r0 + (size_t)8 * lds + c), _MM_HINT_T0);
            _mm_prefetch((const char *)(r1 + (size_t)8 * lds + c), _MM_HINT_T0);
        }
        for (int c = 0; c < n; c += 16) {
            __mmask16 m = n - c >= 16 ? 0xffff : 0xff;
            __m512 x0 = _mm512_maskz_loadu_ps(m, r0 + c), x1 = has1 ? _mm512_maskz_loadu_ps(m, r1 + c) : _mm512_setzero_ps();
            __m512i v = _mm512_permutexvar_epi16(inter, (__m512i)_mm512_cvtne2ps_pbh(x1, x0));  // x0's words, then x1's
            if (w == 8) {
                _mm256_storeu_si256((__m256i *)(d + (size_t)(c / 8) * pstride + (size_t)k2 * 8), _mm512_castsi512_si256(v));
                if (m == 0xffff)
                    _mm256_storeu_si256((__m256i *)(d + (size_t)(c / 8 + 1) * pstride + (size_t)k2 * 8), _mm512_extracti64x4_epi64(v, 1));
            } else {
                _mm512_mask_storeu_epi32(d + (size_t)(c / w) * pstride + (size_t)k2 * w + c % w, m, v);
            }
        }
    }
}

void g3_cpu_kernels_avx512bf16_gemm(G3CpuKernels *k) {
    k->bgemm_micro = micro_bf16_8x32;
    k->bgemm_pack_rows = pack_rows_bf16;
    k->bgemm_pack_cols = pack_cols_bf16;
}
