// quant_dot_avx2.c: quant_dot.h's dot products with AVX2. Per block, the 32 int8 products are
// made by vpmaddubsw, which multiplies unsigned by signed bytes: Q8_0 feeds it |w| and a with
// w's sign moved onto it (vpsignb); Q4_0's nibbles are unsigned already (the -8 comes off once
// per block through the activation sum). Pairs of products fit int16 (2 x 128 x 127 < 2^15);
// vpmaddwd sums them into eight int32, which become float and are scaled by the block's two
// scales into a vector accumulator.
#include <immintrin.h>

#include "quant_dot.h"

#define TGT __attribute__((target("avx2,fma,f16c")))

TGT static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// the 32 nibbles of a Q4_0 block as bytes in element order: low nibbles 0..15, high 16..31
TGT static inline __m256i q4_bytes(const uint8_t *qs) {
    __m128i b = _mm_loadu_si128((const __m128i *)qs), m = _mm_set1_epi8(0x0f);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
}

TGT static float dot_q8_0(const void *w, const G3BlockQ8A *a, int nb) {
    const G3BlockQ8_0 *b = w;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 1 < nb; i += 2) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)b[i].qs), a0 = _mm256_loadu_si256((const __m256i *)a[i].qs);
        __m256i w1 = _mm256_loadu_si256((const __m256i *)b[i + 1].qs), a1 = _mm256_loadu_si256((const __m256i *)a[i + 1].qs);
        __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w0, w0), _mm256_sign_epi8(a0, w0)), ones);
        __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w1, w1), _mm256_sign_epi8(a1, w1)), ones);
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(_cvtsh_ss(b[i].d) * a[i].d), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(_cvtsh_ss(b[i + 1].d) * a[i + 1].d), acc1);
    }
    for (; i < nb; i++) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)b[i].qs), a0 = _mm256_loadu_si256((const __m256i *)a[i].qs);
        __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w0, w0), _mm256_sign_epi8(a0, w0)), ones);
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(_cvtsh_ss(b[i].d) * a[i].d), acc0);
    }
    return hsum256(_mm256_add_ps(acc0, acc1));
}

TGT static float dot_q4_0(const void *w, const G3BlockQ8A *a, int nb) {
    const G3BlockQ4_0 *b = w;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float off = 0.0f;  // sum over blocks of scale * sum(a): the -8 of every weight
    int i = 0;
    for (; i + 1 < nb; i += 2) {
        float s0 = _cvtsh_ss(b[i].d) * a[i].d, s1 = _cvtsh_ss(b[i + 1].d) * a[i + 1].d;
        __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(q4_bytes(b[i].qs), _mm256_loadu_si256((const __m256i *)a[i].qs)), ones);
        __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(q4_bytes(b[i + 1].qs), _mm256_loadu_si256((const __m256i *)a[i + 1].qs)), ones);
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(s0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(s1), acc1);
        off += s0 * (float)a[i].sum + s1 * (float)a[i + 1].sum;
    }
    for (; i < nb; i++) {
        float s0 = _cvtsh_ss(b[i].d) * a[i].d;
        __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(q4_bytes(b[i].qs), _mm256_loadu_si256((const __m256i *)a[i].qs)), ones);
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(s0), acc0);
        off += s0 * (float)a[i].sum;
    }
    return hsum256(_mm256_add_ps(acc0, acc1)) - 8.0f * off;
}

void g3_qdot_fill_avx2(G3QDotTable *t) {
    t->q8_0 = dot_q8_0;
    t->q4_0 = dot_q4_0;
}
