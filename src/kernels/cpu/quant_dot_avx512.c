// quant_dot_avx512.c: quant_dot.h's dot products with AVX-512 (F, BW, VL, DQ): two blocks per
// 512-bit register, each half scaled by its block's scales. AVX-512 has no vpsignb, so Q8_0's
// sign moves onto the activations by a masked negate (mask: the weights' sign bits).
#include <immintrin.h>

#include <string.h>

#include "quant_dot.h"
#include "quant_gemm.h"

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

// the sums of each four products of unsigned bytes u (< 128) and signed bytes a, sixteen int32
TGT static inline __m512i dot64(__m512i u, __m512i a) {
    return _mm512_madd_epi16(_mm512_maddubs_epi16(u, a), _mm512_set1_epi16(1));
}

TGT static inline __m512i join(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }

// the nibbles of two Q4-style blocks as bytes in element order: [lo0 hi0 lo1 hi1] from
// [lo0 lo1 hi0 hi1] by a lane shuffle
TGT static inline __m512i q4_bytes2(const uint8_t *qs0, const uint8_t *qs1) {
    __m256i v = _mm256_loadu2_m128i((const __m128i *)qs1, (const __m128i *)qs0), m = _mm256_set1_epi8(0x0f);
    __m512i w = join(_mm256_and_si256(v, m), _mm256_and_si256(_mm256_srli_epi16(v, 4), m));
    return _mm512_shuffle_i64x2(w, w, _MM_SHUFFLE(3, 1, 2, 0));
}

// Q5_0's fifth bits of two blocks as 0x10 in the bytes of the elements that have them
TGT static inline __m512i q5_high2(const uint8_t *qh0, const uint8_t *qh1) {
    return _mm512_maskz_mov_epi8((__mmask64)g3_q5_qh(qh0) | (__mmask64)g3_q5_qh(qh1) << 32, _mm512_set1_epi8(0x10));
}

TGT static float dot_q5_0(const void *w, const G3BlockQ8A *a, int nb) {
    const G3BlockQ5_0 *b = w;
    __m512 acc = _mm512_setzero_ps();
    float off = 0.0f;
    int i = 0;
    for (; i + 1 < nb; i += 2) {
        float s0 = _cvtsh_ss(b[i].d) * a[i].d, s1 = _cvtsh_ss(b[i + 1].d) * a[i + 1].d;
        __m512i wv = _mm512_or_si512(q4_bytes2(b[i].qs, b[i + 1].qs), q5_high2(b[i].qh, b[i + 1].qh));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot64(wv, pair256(a[i].qs, a[i + 1].qs))), scales2(s0, s1), acc);
        off += s0 * (float)a[i].sum + s1 * (float)a[i + 1].sum;
    }
    if (i < nb) {  // the last odd block: a zero weight half against a zero activation half
        float s0 = _cvtsh_ss(b[i].d) * a[i].d;
        __m512i wv = _mm512_or_si512(join(q4_bytes(b[i].qs), _mm256_setzero_si256()),
                                     _mm512_maskz_mov_epi8((__mmask64)g3_q5_qh(b[i].qh), _mm512_set1_epi8(0x10)));
        __m512i av = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a[i].qs));
        av = _mm512_inserti64x4(av, _mm256_setzero_si256(), 1);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot64(wv, av)), scales2(s0, 0.0f), acc);
        off += s0 * (float)a[i].sum;
    }
    return _mm512_reduce_add_ps(acc) - 16.0f * off;
}

// Q4_K / Q5_K: the 32 bytes qs[32c ...] give sub-blocks 2c (low nibbles) and 2c + 1 (high) in
// one register; Q5_K's bits 2c and 2c + 1 of qh[l] on top as 0x10.
TGT static inline __attribute__((always_inline)) float dot_k(const uint8_t *qs, const uint8_t *qhp, const uint8_t *packed, uint16_t d16, uint16_t dmin16,
                       const G3BlockQ8A *a, __m512 *acc) {
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
            __m256i h = _mm256_srli_epi16(qh, 2 * c);
            lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(h, 4), b4));
            hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(h, 3), b4));
        }
        const G3BlockQ8A *a0 = a + 2 * c, *a1 = a0 + 1;
        __m512i p = dot64(join(lo, hi), pair256(a0->qs, a1->qs));
        *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), scales2(d * (float)sc[2 * c] * a0->d, d * (float)sc[2 * c + 1] * a1->d), *acc);
        off += (float)m[2 * c] * a0->d * (float)a0->sum + (float)m[2 * c + 1] * a1->d * (float)a1->sum;
    }
    return dmin * off;
}

TGT static float dot_q4_k(const void *w, const G3BlockQ8A *a, int nb) {
    const G3BlockQ4_K *b = w;
    __m512 acc = _mm512_setzero_ps();
    float off = 0.0f;
    for (int i = 0; i < nb / 8; i++) off += dot_k(b[i].qs, NULL, b[i].scales, b[i].d, b[i].dmin, a + 8 * i, &acc);
    return _mm512_reduce_add_ps(acc) - off;
}

TGT static float dot_q5_k(const void *w, const G3BlockQ8A *a, int nb) {
    const G3BlockQ5_K *b = w;
    __m512 acc = _mm512_setzero_ps();
    float off = 0.0f;
    for (int i = 0; i < nb / 8; i++) off += dot_k(b[i].qs, b[i].qh, b[i].scales, b[i].d, b[i].dmin, a + 8 * i, &acc);
    return _mm512_reduce_add_ps(acc) - off;
}

// Q6_K: q (unsigned 6-bit) of two activation blocks against them, each 16 scaled by its int8
// scale (sc4: the four scales of the two blocks): sixteen int32
TGT static inline __m512i q6_pair(__m512i q, __m512i av, int sc4) {
        // int16 pair sums of (q - 32) a; words 8s..8s+7 take the register's s-th scale of 16
        __m512i p16 = _mm512_sub_epi16(_mm512_maddubs_epi16(q, av), _mm512_maddubs_epi16(_mm512_set1_epi8(32), av));
        const __m256i pick = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
        __m512i s16 = _mm512_cvtepi8_epi16(_mm256_shuffle_epi8(_mm256_set1_epi32(sc4), pick));
        return _mm512_madd_epi16(p16, s16);
}

TGT static float dot_q6_k(const void *w, const G3BlockQ8A *a, int nb) {
    const G3BlockQ6_K *b = w;
    const __m256i low = _mm256_set1_epi8(0x0f), two = _mm256_set1_epi8(0x30);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (int i = 0; i < nb / 8; i++) {
        const float d = _cvtsh_ss(b[i].d);
        for (int h = 0; h < 2; h++) {
            __m256i ql0 = _mm256_loadu_si256((const __m256i *)(b[i].ql + 64 * h));
            __m256i ql1 = _mm256_loadu_si256((const __m256i *)(b[i].ql + 64 * h + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(b[i].qh + 32 * h));
            __m512i q01 = join(_mm256_or_si256(_mm256_and_si256(ql0, low), _mm256_and_si256(_mm256_slli_epi16(qh, 4), two)),
                               _mm256_or_si256(_mm256_and_si256(ql1, low), _mm256_and_si256(_mm256_slli_epi16(qh, 2), two)));
            __m512i q23 = join(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low), _mm256_and_si256(qh, two)),
                               _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low), _mm256_and_si256(_mm256_srli_epi16(qh, 2), two)));
            const G3BlockQ8A *ak = a + 8 * i + 4 * h;
            int sc01, sc23;
            memcpy(&sc01, b[i].scales + 8 * h, 4);
            memcpy(&sc23, b[i].scales + 8 * h + 4, 4);
            __m512i p01 = q6_pair(q01, pair256(ak[0].qs, ak[1].qs), sc01), p23 = q6_pair(q23, pair256(ak[2].qs, ak[3].qs), sc23);
            acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p01), scales2(d * ak[0].d, d * ak[1].d), acc0);
            acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p23), scales2(d * ak[2].d, d * ak[3].d), acc1);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

void g3_qdot_fill_avx512(G3QDotTable *t) {
    t->q8_0 = dot_q8_0;
    t->q4_0 = dot_q4_0;
    t->q5_0 = dot_q5_0;  // Q4_1 / Q5_1: the AVX2 kernels (rare in files; the table below's)
    t->q4_k = dot_q4_k;
    t->q5_k = dot_q5_k;
    t->q6_k = dot_q6_k;
}

// One block of 32 activations to int8 as the scalar quantizers do it (g3_quantize_q8a and
// g3_quantize_q8g): the same d, rounding (the current mode, nearest even, as nearbyintf) and
// bytes for finite x; a block with NaN or inf gives some finite bytes, never UB. q0, q1: the two
// halves' int32 values, from which each format takes its sums.
static inline TGT float q8_block(int8_t *qs, const float *x, __m512i *q0, __m512i *q1) {
    const __m512 lim = _mm512_set1_ps(127.5f);  // rounds to 127 at most (127.5 itself to 128, even)
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
    const __m512 s0 = _mm512_mul_ps(v0, _mm512_set1_ps(id)), s1 = _mm512_mul_ps(v1, _mm512_set1_ps(id));
    // |s| < 127.5 (NaN compares false): those round to int32 (|q| <= 127; the largest may be
    // 127.00001 after the reciprocal), the rest become 0, as the reference's test after rounding
    *q0 = _mm512_maskz_cvtps_epi32(_mm512_cmp_ps_mask(_mm512_abs_ps(s0), lim, _CMP_LT_OQ), s0);
    *q1 = _mm512_maskz_cvtps_epi32(_mm512_cmp_ps_mask(_mm512_abs_ps(s1), lim, _CMP_LT_OQ), s1);
    _mm_storeu_si128((__m128i *)qs, _mm512_cvtsepi32_epi8(*q0));
    _mm_storeu_si128((__m128i *)(qs + 16), _mm512_cvtsepi32_epi8(*q1));
    return d == d && d <= 3.0e38f ? d : 0.0f;
}

// g3_quantize_q8a (decode's blocks: one sum) with AVX-512.
TGT void g3_quantize_q8a_avx512(G3BlockQ8A *a, const float *x, int nb) {
    for (int i = 0; i < nb; i++, x += 32) {
        __m512i q0, q1;
        a[i].d = q8_block(a[i].qs, x, &q0, &q1);
        a[i].sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    }
}

// g3_quantize_q8g (the int8 GEMM's blocks, quant_gemm.h: a sum per half) with AVX-512; used at
// the AVX-512 level without VNNI too.
TGT void g3_quantize_q8g_avx512(G3BlockQ8G *a, const float *x, int nb) {
    for (int i = 0; i < nb; i++, x += 32) {
        __m512i q0, q1;
        a[i].d = q8_block(a[i].qs, x, &q0, &q1);
        a[i].s[0] = (int16_t)_mm512_reduce_add_epi32(q0), a[i].s[1] = (int16_t)_mm512_reduce_add_epi32(q1);
    }
}
