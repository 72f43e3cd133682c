// sgemm_avx2.c: the AVX2 f32 micro-kernel of the blocked GEMM (sgemm.c): a 6 x 16 tile of
// C in 12 ymm accumulators. Edge tiles are computed in full into a local buffer (the packed
// panels are zero-padded) and only their valid part is written to C.
#include <immintrin.h>
#include <string.h>

#include "kernels_cpu.h"

#define TGT __attribute__((target("avx2,fma")))
#define MR 6
#define NR 16

TGT static void micro_6x16(int K, const float *a, const float *b, float *c, int ldc, int mr, int nr, int accumulate) {
    __m256 acc[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    // Fetch the C tile while the k loop runs: its rows are ldc apart, often a power of two
    // of bytes, and a miss on each of them at the end stalled dW (accumulating) GEMMs.
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        _mm_prefetch((const char *)(c + (size_t)r * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + (size_t)r * ldc + NR - 1), _MM_HINT_T0);
    }
    for (int k = 0; k < K; k++) {
        __m256 b0 = _mm256_loadu_ps(b + (size_t)k * NR), b1 = _mm256_loadu_ps(b + (size_t)k * NR + 8);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m256 av = _mm256_broadcast_ss(a + (size_t)k * MR + r);
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

void g3_cpu_kernels_avx2_sgemm(G3CpuKernels *k) {
    k->sgemm_micro = micro_6x16;
    k->sgemm_mr = MR;
    k->sgemm_nr = NR;
}
