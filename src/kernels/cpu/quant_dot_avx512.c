// quant_dot_avx512.c: quant_dot.h's dot products with AVX-512 (F, BW, VL, DQ): two blocks per
// 512-bit register, each half scaled by its block's scales. AVX-512 has no vpsignb, so Q8_0's
// sign moves onto the activations by a masked negate (mask: the weights' sign bits).
#include <immintrin.h>

#include "quant_dot.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))

TGT static inline __m512i pair256(const int8_t *p0, const int8_t *p1) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p0)),
                              _mm256_loadu_si256((const __m256i *)p1), 1);
}

TGT static inline __m256i q4_bytes(const uint8_t *qs) {
    __m128i b = _mm_loadu_si128((const __m128i *)qs), m = _mm_set1_epi8(0x0f);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
}

TGT static inline __m512 scales2(float s0, float s1) {
    return _mm512_insertf32x8(_mm512_set1_ps(s0), _mm256_set1_ps(s1), 1);
}

TGT static float dot_q8_0(const void *w, const G3BlockQ8A *a, int nb) {
    const G3BlockQ8_0 *b = w;
    const __m512i ones = _mm512_set1_epi16(1), zero = _mm512_setzero_si512();
    __m512 acc = _mm512_setzero_ps();
    int i = 0;
    for (; i + 1 < nb; i += 2) {
        __m512i wv = pair256(b[i].qs, b[i + 1].qs), av = pair256(a[i].qs, a[i + 1].qs);
        __m512i sa = _mm512_mask_sub_epi8(av, _mm512_movepi8_mask(wv), zero, av);
        __m512i p = _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_abs_epi8(wv), sa), ones);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), scales2(_cvtsh_ss(b[i].d) * a[i].d, _cvtsh_ss(b[i + 1].d) * a[i + 1].d), acc);
    }
    float r = _mm512_reduce_add_ps(acc);
    for (; i < nb; i++) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)b[i].qs), a0 = _mm256_loadu_si256((const __m256i *)a[i].qs);
        __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w0), _mm256_sign_epi8(a0, w0)), _mm256_set1_epi16(1));
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
        r += (float)_mm_cvtsi128_si32(s) * (_cvtsh_ss(b[i].d) * a[i].d);
    }
    return r;
}

TGT static float dot_q4_0(const void *w, const G3BlockQ8A *a, int nb) {
    const G3BlockQ4_0 *b = w;
    const __m512i ones = _mm512_set1_epi16(1);
    __m512 acc = _mm512_setzero_ps();
    float off = 0.0f;
    int i = 0;
    for (; i + 1 < nb; i += 2) {
        float s0 = _cvtsh_ss(b[i].d) * a[i].d, s1 = _cvtsh_ss(b[i + 1].d) * a[i + 1].d;
        __m512i wv = _mm512_inserti64x4(_mm512_castsi256_si512(q4_bytes(b[i].qs)), q4_bytes(b[i + 1].qs), 1);
        __m512i p = _mm512_madd_epi16(_mm512_maddubs_epi16(wv, pair256(a[i].qs, a[i + 1].qs)), ones);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), scales2(s0, s1), acc);
        off += s0 * (float)a[i].sum + s1 * (float)a[i + 1].sum;
    }
    float r = _mm512_reduce_add_ps(acc);
    for (; i < nb; i++) {
        float s0 = _cvtsh_ss(b[i].d) * a[i].d;
        __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(q4_bytes(b[i].qs), _mm256_loadu_si256((const __m256i *)a[i].qs)),
                                      _mm256_set1_epi16(1));
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
        r += (float)_mm_cvtsi128_si32(s) * s0;
        off += s0 * (float)a[i].sum;
    }
    return r - 8.0f * off;
}

void g3_qdot_fill_avx512(G3QDotTable *t) {
    t->q8_0 = dot_q8_0;
    t->q4_0 = dot_q4_0;
}
