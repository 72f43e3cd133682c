// sgemm_avx512.c: the AVX-512 f32 micro-kernel of the blocked GEMM (sgemm.c): an 8 x 32
// tile of C in 16 zmm accumulators; per step of k, two vectors of the packed B panel and
// eight broadcasts of the packed A panel. Edges (mr < 8, nr < 32) are handled by masked
// loads and stores of C, so the packed panels are the only thing padded.
#include <immintrin.h>

#include "kernels_cpu.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define MR 8
#define NR 32

TGT static void micro_8x32(int K, const float *a, const float *b, float *c, int ldc, int mr, int nr, int accumulate) {
    __m512 acc[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
        __m512 b0 = _mm512_loadu_ps(b + (size_t)k * NR), b1 = _mm512_loadu_ps(b + (size_t)k * NR + 16);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_set1_ps(a[(size_t)k * MR + r]);
            acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
        }
    }
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

void g3_cpu_kernels_avx512_sgemm(G3CpuKernels *k) {
    k->sgemm_micro = micro_8x32;
    k->sgemm_mr = MR;
    k->sgemm_nr = NR;
}
