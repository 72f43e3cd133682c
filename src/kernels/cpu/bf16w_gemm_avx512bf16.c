// bf16w_gemm_avx512bf16.c: bf16w_gemm.h's tile with vdpbf16ps (8 activation rows x 32 weight
// rows, 16 accumulators), the activation rounding (vcvtneps2bf16, nearest even) and the panel
// packer as 16 x 16 transposes of pair words (the plain-C packer, a word at a time, was 17% of
// a 1B prefill beside the tiles' 57%).
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

// The 16 x 16 transpose of 32-bit words: r[i] lane j -> r[j] lane i (unpacks of 32 and 64 bits
// within 128-bit lanes, then two shuffles of 128-bit lanes).
INL void transpose16(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    // r[4b + c] now holds, in 128-bit lane L, words c of rows 4L'..: rows 4q..4q+3 of group b
    // at lane q's position; gather lanes across the four groups
    for (int i = 0; i < 4; i++) {
        const __m512i a = _mm512_shuffle_i32x4(r[i], r[i + 4], 0x88), b = _mm512_shuffle_i32x4(r[i], r[i + 4], 0xdd);
        const __m512i c = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0x88), d = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0xdd);
        t[i] = _mm512_shuffle_i32x4(a, c, 0x88);
        t[i + 8] = _mm512_shuffle_i32x4(a, c, 0xdd);
        t[i + 4] = _mm512_shuffle_i32x4(b, d, 0x88);
        t[i + 12] = _mm512_shuffle_i32x4(b, d, 0xdd);
    }
    for (int i = 0; i < 16; i++) r[i] = t[i];
}

TGT void g3_bf16w_pack_avx512bf16(uint32_t *p, const uint16_t *w, int64_t ldw, int nrows, int k0, int kc) {
    const int full = kc / 2, a16 = nrows == G3_BF16W_ROWS ? full & ~15 : 0;  // pairs done 16 at a time
    for (int a = 0; a < a16; a += 16)
        for (int h = 0; h < 2; h++) {  // rows 16h .. 16h + 15
            __m512i r[16];
            for (int j = 0; j < 16; j++) r[j] = _mm512_loadu_si512((const void *)(w + (int64_t)(16 * h + j) * ldw + k0 + 2 * a));
            transpose16(r);
            for (int i = 0; i < 16; i++) _mm512_storeu_si512((void *)(p + (size_t)(a + i) * G3_BF16W_ROWS + 16 * h), r[i]);
        }
    if (a16 < (kc + 1) / 2)  // the rest (short panels, the last pairs, an odd kc) as the reference does it
        g3_bf16w_pack(p + (size_t)a16 * G3_BF16W_ROWS, w + 2 * a16, ldw, nrows, k0, kc - 2 * a16);
}
