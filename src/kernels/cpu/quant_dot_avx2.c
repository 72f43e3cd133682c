// quant_dot_avx2.c: quant_dot.h's dot products with AVX2. Per block, the 32 int8 products are
// made by vpmaddubsw, which multiplies unsigned by signed bytes: Q8_0 feeds it |w| and a with
// w's sign moved onto it (vpsignb); Q4_0's nibbles are unsigned already (the -8 comes off once
// per block through the activation sum). Pairs of products fit int16 (2 x 128 x 127 < 2^15);
// vpmaddwd sums them into eight int32, which become float and are scaled by the block's two
// scales into a vector accumulator. Q4_1 / Q5_1's min and Q5_0's -16 come off through the
// activation block sums; the K-quants' sub-block scales fold into each block's float scale
// (Q6_K's two per block by vpmaddwd).
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

// sum of 32 products of unsigned weight bytes u (< 64) and activations a, as eight int32
TGT static inline __m256i dot32(__m256i u, const int8_t *a) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, _mm256_loadu_si256((const __m256i *)a)), _mm256_set1_epi16(1));
}

// Q5_0 / Q5_1's fifth bits as 0x10 in the bytes of the elements that have them: byte i gets
// qh's byte i / 8, tests its bit i % 8
TGT static inline __m256i q5_high(const uint8_t *qhp) {
    const __m256i spread = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)g3_q5_qh(qhp)), spread);
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit), _mm256_set1_epi8(0x10));
}

TGT static float dot_q4_1(const void *w, const G3BlockQ8A *a, int nb) {
    const G3BlockQ4_1 *b = w;
    __m256 acc = _mm256_setzero_ps();
    float off = 0.0f;  // sum over blocks of m A.d sum(a)
    for (int i = 0; i < nb; i++) {
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot32(q4_bytes(b[i].qs), a[i].qs)), _mm256_set1_ps(_cvtsh_ss(b[i].d) * a[i].d), acc);
        off += _cvtsh_ss(b[i].m) * a[i].d * (float)a[i].sum;
    }
    return hsum256(acc) + off;
}

TGT static float dot_q5_0(const void *w, const G3BlockQ8A *a, int nb) {
    const G3BlockQ5_0 *b = w;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float off = 0.0f;  // the -16 of every weight, once per block through sum(a)
    int i = 0;
    for (; i + 1 < nb; i += 2) {
        float s0 = _cvtsh_ss(b[i].d) * a[i].d, s1 = _cvtsh_ss(b[i + 1].d) * a[i + 1].d;
        __m256i p0 = dot32(_mm256_or_si256(q4_bytes(b[i].qs), q5_high(b[i].qh)), a[i].qs);
        __m256i p1 = dot32(_mm256_or_si256(q4_bytes(b[i + 1].qs), q5_high(b[i + 1].qh)), a[i + 1].qs);
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(s0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(s1), acc1);
        off += s0 * (float)a[i].sum + s1 * (float)a[i + 1].sum;
    }
    for (; i < nb; i++) {
        float s0 = _cvtsh_ss(b[i].d) * a[i].d;
        __m256i p0 = dot32(_mm256_or_si256(q4_bytes(b[i].qs), q5_high(b[i].qh)), a[i].qs);
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(s0), acc0);
        off += s0 * (float)a[i].sum;
    }
    return hsum256(_mm256_add_ps(acc0, acc1)) - 16.0f * off;
}

TGT static float dot_q5_1(const void *w, const G3BlockQ8A *a, int nb) {
    const G3BlockQ5_1 *b = w;
    __m256 acc = _mm256_setzero_ps();
    float off = 0.0f;
    for (int i = 0; i < nb; i++) {
        __m256i p = dot32(_mm256_or_si256(q4_bytes(b[i].qs), q5_high(b[i].qh)), a[i].qs);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(_cvtsh_ss(b[i].d) * a[i].d), acc);
        off += _cvtsh_ss(b[i].m) * a[i].d * (float)a[i].sum;
    }
    return hsum256(acc) + off;
}

// Q4_K / Q5_K: the 32 bytes qs[32c ...] hold sub-blocks 2c (low nibbles) and 2c + 1 (high);
// Q5_K's bits 2c and 2c + 1 of qh[l] go on top as 0x10. Sub-block scales are folded into the
// float scale of each int32 block sum; the mins come off through the activation sums.
TGT static inline __attribute__((always_inline)) float dot_k(const uint8_t *qs, const uint8_t *qhp, const uint8_t *packed, uint16_t d16, uint16_t dmin16,
                       const G3BlockQ8A *a, __m256 *acc0, __m256 *acc1) {
    uint8_t sc[8], m[8];
    g3_k_scales(packed, sc, m);
    const float d = _cvtsh_ss(d16), dmin = _cvtsh_ss(dmin16);
    const __m256i low = _mm256_set1_epi8(0x0f), b4 = _mm256_set1_epi8(0x10);
    const __m256i qh = qhp ? _mm256_loadu_si256((const __m256i *)qhp) : _mm256_setzero_si256();
    float off = 0.0f;
    for (int c = 0; c < 4; c++) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
        __m256i lo = _mm256_and_si256(q, low), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
        if (qhp) {
            __m256i h = _mm256_srli_epi16(qh, 2 * c);  // bit 2c of each byte to bit 0, 2c + 1 to bit 1
            lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(h, 4), b4));
            hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(h, 3), b4));
        }
        const G3BlockQ8A *a0 = a + 2 * c, *a1 = a0 + 1;
        *acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot32(lo, a0->qs)), _mm256_set1_ps(d * (float)sc[2 * c] * a0->d), *acc0);
        *acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot32(hi, a1->qs)), _mm256_set1_ps(d * (float)sc[2 * c + 1] * a1->d), *acc1);
        off += (float)m[2 * c] * a0->d * (float)a0->sum + (float)m[2 * c + 1] * a1->d * (float)a1->sum;
    }
    return dmin * off;
}

TGT static float dot_q4_k(const void *w, const G3BlockQ8A *a, int nb) {
    const G3BlockQ4_K *b = w;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float off = 0.0f;
    for (int i = 0; i < nb / 8; i++) off += dot_k(b[i].qs, NULL, b[i].scales, b[i].d, b[i].dmin, a + 8 * i, &acc0, &acc1);
    return hsum256(_mm256_add_ps(acc0, acc1)) - off;
}

TGT static float dot_q5_k(const void *w, const G3BlockQ8A *a, int nb) {
    const G3BlockQ5_K *b = w;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float off = 0.0f;
    for (int i = 0; i < nb / 8; i++) off += dot_k(b[i].qs, b[i].qh, b[i].scales, b[i].d, b[i].dmin, a + 8 * i, &acc0, &acc1);
    return hsum256(_mm256_add_ps(acc0, acc1)) - off;
}

// Q6_K: per half of 128, activation block g's 6-bit q (unsigned 0..63) from a nibble of ql0 /
// ql1 and two bits of qh. maddubs(q, a) - maddubs(32, a) are the int16 pair sums of (q - 32) a
// (|.| <= 2 x 32 x 127 + 2 x 31 x 127, no overflow); vpmaddwd by the two int8 scales of the
// block's halves (words 0-7: elements 0-15) sums them to eight scaled int32.
TGT static float dot_q6_k(const void *w, const G3BlockQ8A *a, int nb) {
    const G3BlockQ6_K *b = w;
    const __m256i low = _mm256_set1_epi8(0x0f), two = _mm256_set1_epi8(0x30), k32 = _mm256_set1_epi8(32);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (int i = 0; i < nb / 8; i++) {
        const float d = _cvtsh_ss(b[i].d);
        const int8_t *sc = b[i].scales;
        for (int h = 0; h < 2; h++) {
            __m256i ql0 = _mm256_loadu_si256((const __m256i *)(b[i].ql + 64 * h));
            __m256i ql1 = _mm256_loadu_si256((const __m256i *)(b[i].ql + 64 * h + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(b[i].qh + 32 * h));
            __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(ql0, low), _mm256_and_si256(_mm256_slli_epi16(qh, 4), two)),
                _mm256_or_si256(_mm256_and_si256(ql1, low), _mm256_and_si256(_mm256_slli_epi16(qh, 2), two)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low), _mm256_and_si256(qh, two)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low), _mm256_and_si256(_mm256_srli_epi16(qh, 2), two)),
            };
            for (int g = 0; g < 4; g++) {
                const int k = 4 * h + g;
                const G3BlockQ8A *ak = a + 8 * i + k;
                __m256i av = _mm256_loadu_si256((const __m256i *)ak->qs);
                __m256i p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(q[g], av), _mm256_maddubs_epi16(k32, av));
                __m256i s16 = _mm256_set_m128i(_mm_set1_epi16(sc[2 * k + 1]), _mm_set1_epi16(sc[2 * k]));
                __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, s16));
                if (g & 1) acc1 = _mm256_fmadd_ps(f, _mm256_set1_ps(d * ak->d), acc1);
                else acc0 = _mm256_fmadd_ps(f, _mm256_set1_ps(d * ak->d), acc0);
            }
        }
    }
    return hsum256(_mm256_add_ps(acc0, acc1));
}

void g3_qdot_fill_avx2(G3QDotTable *t) {
    t->q8_0 = dot_q8_0;
    t->q4_0 = dot_q4_0;
    t->q4_1 = dot_q4_1;
    t->q5_0 = dot_q5_0;
    t->q5_1 = dot_q5_1;
    t->q4_k = dot_q4_k;
    t->q5_k = dot_q5_k;
    t->q6_k = dot_q6_k;
}
