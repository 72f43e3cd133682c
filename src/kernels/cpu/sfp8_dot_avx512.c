// sfp8_dot_avx512.c: SFP8 kernels with AVX-512 F (see sfp8_dot.h). A code's f32 pattern is
// (c << 21) + 0x34000000 for c in [1, 64) and (c << 20) + 0x38000000 for c in [64, 128)
// (tensor/sfp8.h), c == 0 is zero, bit 7 the sign: a few integer ops per 16 weights, no table.
#include <immintrin.h>

#include "../../tensor/sfp8.h"
#include "sfp8_dot.h"

#define TGT __attribute__((target("avx512f")))

TGT static inline __m512 decode16(const uint8_t *w) {
    const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)w));
    const __m512i c = _mm512_and_si512(b, _mm512_set1_epi32(0x7f));
    const __mmask16 large = _mm512_cmpge_epi32_mask(c, _mm512_set1_epi32(64));
    const __mmask16 nonzero = _mm512_test_epi32_mask(c, c);
    __m512i bits = _mm512_add_epi32(_mm512_slli_epi32(c, 21), _mm512_set1_epi32(0x34000000));
    bits = _mm512_mask_add_epi32(bits, large, _mm512_slli_epi32(c, 20), _mm512_set1_epi32(0x38000000));
    bits = _mm512_maskz_or_epi32(nonzero, bits, _mm512_slli_epi32(_mm512_and_si512(b, _mm512_set1_epi32(0x80)), 24));
    return _mm512_castsi512_ps(bits);
}

TGT static float dot_avx512(const uint8_t *w, const float *x, int64_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 64 <= n; k += 64) {
        a0 = _mm512_fmadd_ps(decode16(w + k), _mm512_loadu_ps(x + k), a0);
        a1 = _mm512_fmadd_ps(decode16(w + k + 16), _mm512_loadu_ps(x + k + 16), a1);
        a2 = _mm512_fmadd_ps(decode16(w + k + 32), _mm512_loadu_ps(x + k + 32), a2);
        a3 = _mm512_fmadd_ps(decode16(w + k + 48), _mm512_loadu_ps(x + k + 48), a3);
    }
    for (; k + 16 <= n; k += 16) a0 = _mm512_fmadd_ps(decode16(w + k), _mm512_loadu_ps(x + k), a0);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    for (; k < n; k++) s += g3_sfp8_decode(w[k]) * x[k];
    return s;
}

TGT static void to_f32_avx512(float *dst, const uint8_t *w, int64_t n) {
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) _mm512_storeu_ps(dst + k, decode16(w + k));
    for (; k < n; k++) dst[k] = g3_sfp8_decode(w[k]);
}

void g3_sfp8_fill_avx512(G3Sfp8Kernels *k) {
    k->dot = dot_avx512;
    k->to_f32 = to_f32_avx512;
}
