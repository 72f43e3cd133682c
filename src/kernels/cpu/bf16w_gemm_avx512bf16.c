// bf16w_gemm_avx512bf16.c: bf16w_gemm.h's tile with vdpbf16ps (8 activation rows x 32 weight
// rows, 16 accumulators) and the activation rounding (vcvtneps2bf16, nearest even).
#include <immintrin.h>

#include <string.h>

#include "bf16w_gemm.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#define INL static inline __attribute__((always_inline)) TGT

INL __m512bh bcast(const uint16_t *xp) {
    uint32_t v;
    memcpy(&v, xp, 4);
    return (__m512bh)_mm512_set1_epi32((int)v);
}

INL void tile(int RT, float *y, int64_t ldy, const uint32_t *p, int kd, const uint16_t *x, int64_t ldx, int ncols, int add) {
    __m512 a0[G3_BF16W_RT], a1[G3_BF16W_RT];
#pragma GCC unroll 8
    for (int r = 0; r < RT; r++) a0[r] = _mm512_setzero_ps(), a1[r] = _mm512_setzero_ps();
    for (int a = 0; a < kd; a++, p += G3_BF16W_ROWS) {
        const __m512bh w0 = (__m512bh)_mm512_loadu_si512((const void *)p), w1 = (__m512bh)_mm512_loadu_si512((const void *)(p + 16));
#pragma GCC unroll 8
        for (int r = 0; r < RT; r++) {
            const __m512bh xv = bcast(x + (int64_t)r * ldx + 2 * a);
            a0[r] = _mm512_dpbf16_ps(a0[r], xv, w0);
            a1[r] = _mm512_dpbf16_ps(a1[r], xv, w1);
        }
    }
    const __mmask16 m0 = ncols >= 16 ? 0xffff : (__mmask16)((1u << ncols) - 1);
    const __mmask16 m1 = ncols >= 32 ? 0xffff : ncols <= 16 ? 0 : (__mmask16)((1u << (ncols - 16)) - 1);
#pragma GCC unroll 8
    for (int r = 0; r < RT; r++) {
        float *o = y + (int64_t)r * ldy;
        __m512 v0 = a0[r], v1 = a1[r];
        if (add) v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, o)), v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, o + 16));
        _mm512_mask_storeu_ps(o, m0, v0);
        _mm512_mask_storeu_ps(o + 16, m1, v1);
    }
}

TGT void g3_bf16w_tile_avx512bf16(float *y, int64_t ldy, const uint32_t *p, int kd, const uint16_t *x, int64_t ldx, int R, int ncols,
                                  int add) {
    switch (R) {
    case 8: tile(8, y, ldy, p, kd, x, ldx, ncols, add); break;
    case 7: tile(7, y, ldy, p, kd, x, ldx, ncols, add); break;
    case 6: tile(6, y, ldy, p, kd, x, ldx, ncols, add); break;
    case 5: tile(5, y, ldy, p, kd, x, ldx, ncols, add); break;
    case 4: tile(4, y, ldy, p, kd, x, ldx, ncols, add); break;
    case 3: tile(3, y, ldy, p, kd, x, ldx, ncols, add); break;
    case 2: tile(2, y, ldy, p, kd, x, ldx, ncols, add); break;
    case 1: tile(1, y, ldy, p, kd, x, ldx, ncols, add); break;
    default: break;
    }
}

TGT void g3_bf16w_round_rows_avx512bf16(uint16_t *dst, int64_t ldd, const float *x, int R, int K) {
    for (int r = 0; r < R; r++) {
        uint16_t *d = dst + (int64_t)r * ldd;
        const float *s = x + (int64_t)r * K;
        int k = 0;
        for (; k + 16 <= K; k += 16) _mm256_storeu_si256((__m256i *)(d + k), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(s + k)));
        if (k < K) {
            const __mmask16 m = (__mmask16)((1u << (K - k)) - 1);
            _mm256_mask_storeu_epi16(d + k, m, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, s + k)));
        }
        for (int64_t j = K; j < ldd; j++) d[j] = 0;
    }
}
