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
    k->sgemm_micro_rowa = NULL;  // the AVX2 one is 6 rows; MR is 8 here
    k->sgemm_pack_a = NULL;  // the AVX2 one packs 6 rows; the driver's loop does 8
    k->sgemm_pack_bt = NULL;  // the AVX2 one packs 16 columns; NR is 32 here
    k->sgemm_mr = MR;
    k->sgemm_nr = NR;
}
