// sgemm_avx2.c: the AVX2 f32 micro-kernel of the blocked GEMM (sgemm.c): a 6 x 16 tile of
// C in 12 ymm accumulators. Edge tiles are computed in full into a local buffer (the packed
// panels are zero-padded) and only their valid part is written to C.
#include <immintrin.h>
#include <string.h>

#include "kernels_cpu.h"
#include "transpose_avx2.h"

#define TGT __attribute__((target("avx2,fma")))
#define MR 6
#define NR 16

// The tile's body for A read as a[r * rs + k * ks]: packed (rs 1, ks MR) or in place in a
// row-major A (rs lda, ks 1), where the rows past mr point at row 0 (their sums are dropped).
// In place is told by ks = 1, not rs: with K = 1, lda is 1 too (the rows past mr were read
// past the end of A, which AddressSanitizer caught at M = K = 1).
TGT static inline __attribute__((always_inline)) void tile_6x16(int K, const float *a, size_t rs, size_t ks, const float *b,
                                                                 float *c, int ldc, int mr, int nr, int accumulate) {
    __m256 acc[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    // Fetch the C tile while the k loop runs: its rows are ldc apart, often a power of two
    // of bytes, and a miss on each of them at the end stalled dW (accumulating) GEMMs.
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        _mm_prefetch((const char *)(c + (size_t)(r < mr ? r : 0) * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + (size_t)(r < mr ? r : 0) * ldc + NR - 1), _MM_HINT_T0);
    }
    const float *ar[MR];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) ar[r] = a + (ks != 1 || r < mr ? r : 0) * rs;  // packed (ks = MR): zero-padded rows
    for (int k = 0; k < K; k++) {
        __m256 b0 = _mm256_loadu_ps(b + (size_t)k * NR), b1 = _mm256_loadu_ps(b + (size_t)k * NR + 8);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m256 av = _mm256_broadcast_ss(ar[r] + (size_t)k * ks);
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    if (mr == MR && nr == NR) {
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            float *cr = c + (size_t)r * ldc;
            __m256 c0 = acc[r][0], c1 = acc[r][1];
            if (accumulate) c0 = _mm256_add_ps(c0, _mm256_loadu_ps(cr)), c1 = _mm256_add_ps(c1, _mm256_loadu_ps(cr + 8));
            _mm256_storeu_ps(cr, c0);
            _mm256_storeu_ps(cr + 8, c1);
        }
        return;
    }
    float tmp[MR][NR];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) _mm256_storeu_ps(tmp[r], acc[r][0]), _mm256_storeu_ps(tmp[r] + 8, acc[r][1]);
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nr; j++) c[(size_t)r * ldc + j] = accumulate ? c[(size_t)r * ldc + j] + tmp[r][j] : tmp[r][j];
}

TGT static void micro_6x16(int K, const float *a, const float *b, float *c, int ldc, int mr, int nr, int accumulate) {
    tile_6x16(K, a, 1, MR, b, c, ldc, mr, nr, accumulate);
}

// A in place (row-major, row stride lda): no packing, for products whose A is short-rowed.
TGT static void micro_6x16_rowa(int K, const float *a, int lda, const float *b, float *c, int ldc, int mr, int nr, int accumulate) {
    tile_6x16(K, a, (size_t)lda, 1, b, c, ldc, mr, nr, accumulate);
}

// Packs 6 rows of A (stride lda) as kc steps of 6 values: 8 k at a time, the 6 x 8 block is
// transposed in registers (rows 6 and 7 zero) and written as 8 runs of 6, where the scalar
// loop made 48 loads and 48 stores (it was the largest part of packing in a training step).
TGT static void pack_a_6(float *d, const float *A, int lda, int kc) {
    const float *s0 = A, *s1 = A + lda, *s2 = A + 2 * (size_t)lda, *s3 = A + 3 * (size_t)lda, *s4 = A + 4 * (size_t)lda,
                *s5 = A + 5 * (size_t)lda;
    const __m256 z = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= kc; k += 8, d += 48) {
        __m256 r0 = _mm256_loadu_ps(s0 + k), r1 = _mm256_loadu_ps(s1 + k), r2 = _mm256_loadu_ps(s2 + k);
        __m256 r3 = _mm256_loadu_ps(s3 + k), r4 = _mm256_loadu_ps(s4 + k), r5 = _mm256_loadu_ps(s5 + k);
        // t: pairs of rows interleaved (k 0,1 | 4,5 and 2,3 | 6,7 per 128-bit lane)
        __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
        __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
        __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
        // u[j]: rows 0-3 at k = j (low lane) and j + 4 (high lane); v[j]: rows 4, 5 (then zeros)
        __m256 u[4] = {_mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xEE), _mm256_shuffle_ps(t1, t3, 0x44),
                       _mm256_shuffle_ps(t1, t3, 0xEE)};
        __m256 v[4] = {_mm256_shuffle_ps(t4, z, 0x44), _mm256_shuffle_ps(t4, z, 0xEE), _mm256_shuffle_ps(t5, z, 0x44),
                       _mm256_shuffle_ps(t5, z, 0xEE)};
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            _mm_storeu_ps(d + 6 * j, _mm256_castps256_ps128(u[j]));
            _mm_storel_epi64((__m128i *)(d + 6 * j + 4), _mm_castps_si128(_mm256_castps256_ps128(v[j])));
            _mm_storeu_ps(d + 6 * (j + 4), _mm256_extractf128_ps(u[j], 1));
            _mm_storel_epi64((__m128i *)(d + 6 * (j + 4) + 4), _mm_castps_si128(_mm256_extractf128_ps(v[j], 1)));
        }
    }
    for (; k < kc; k++, d += 6) d[0] = s0[k], d[1] = s1[k], d[2] = s2[k], d[3] = s3[k], d[4] = s4[k], d[5] = s5[k];
}

// Packs 16 columns of a transposed B (16 rows of B's storage, stride ldb) as kc steps of 16:
// 8 x 8 blocks transposed in registers. The driver's loop moved one float at a time and was
// ~5% of a training step (the forward products, whose weights are [N, K]).
TGT static void pack_bt_16(float *d, const float *B, int ldb, int kc) {
    int k = 0;
    for (; k + 8 <= kc; k += 8) {
        __m256 lo[8], hi[8];
        g3_transpose_8x8(lo, B + k, (size_t)ldb);
        g3_transpose_8x8(hi, B + 8 * (size_t)ldb + k, (size_t)ldb);
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) _mm256_storeu_ps(d + (size_t)(k + i) * NR, lo[i]), _mm256_storeu_ps(d + (size_t)(k + i) * NR + 8, hi[i]);
    }
    for (; k < kc; k++)
        for (int c = 0; c < NR; c++) d[(size_t)k * NR + c] = B[(size_t)c * ldb + k];
}

void g3_cpu_kernels_avx2_sgemm(G3CpuKernels *k) {
    k->sgemm_micro = micro_6x16;
    k->sgemm_micro_rowa = micro_6x16_rowa;
    k->sgemm_pack_a = pack_a_6;
    k->sgemm_pack_bt = pack_bt_16;
    k->sgemm_mr = MR;
    k->sgemm_nr = NR;
    k->sgemm_kc = 256;
}
