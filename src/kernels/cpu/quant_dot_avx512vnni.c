// quant_dot_avx512vnni.c: quant_dot.h's dot products with AVX512-VNNI: two blocks per
// 512-bit register, vpdpbusd multiplying unsigned by signed bytes and summing each four into
// int32 in one instruction (no int16 step); each half scaled by its block's scales. As in
// quant_dot_avx512.c, Q8_0's sign moves onto the activations by a masked negate.
#include <immintrin.h>

#include <string.h>

#include "quant_dot.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c")))

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

// The scales of two blocks, f16 weight scale times activation scale, side by side: [s0 s1 0 0];
// with sums, += [s0 sum0, s1 sum1] onto *offv (the offset formats' part, taken off at the end).
TGT static inline __m128 scale_pair(uint16_t d0, uint16_t d1, const G3BlockQ8A *a, __m128 *offv) {
    const __m128i dw16 = _mm_insert_epi16(_mm_cvtsi32_si128(d0), d1, 1);
    const __m128 da = _mm_insert_ps(_mm_load_ss(&a[0].d), _mm_load_ss(&a[1].d), 0x10);
    const __m128 s = _mm_mul_ps(_mm_cvtph_ps(dw16), da);
    if (offv) *offv = _mm_fmadd_ps(s, _mm_cvtepi32_ps(_mm_insert_epi32(_mm_cvtsi32_si128(a[0].sum), a[1].sum, 1)), *offv);
    return s;
}

// [s0 x 8, s1 x 8] from scale_pair's register: the halves of a two-block product
TGT static inline __m512 spread_pair(__m128 s) {
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1), _mm512_castps128_ps512(s));
}

TGT static inline float sum2(__m128 v) { return _mm_cvtss_f32(v) + _mm_cvtss_f32(_mm_shuffle_ps(v, v, 1)); }

TGT static float dot_q8_0(const void *w, const G3BlockQ8A *a, int nb) {
    const G3BlockQ8_0 *b = w;
    const __m512i zero = _mm512_setzero_si512();
    __m512 acc = _mm512_setzero_ps();
    int i = 0;
    for (; i + 1 < nb; i += 2) {
        __m512i wv = pair256(b[i].qs, b[i + 1].qs), av = pair256(a[i].qs, a[i + 1].qs);
        __m512i sa = _mm512_mask_sub_epi8(av, _mm512_movepi8_mask(wv), zero, av);
        __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(wv), sa);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), spread_pair(scale_pair(b[i].d, b[i + 1].d, a + i, NULL)), acc);
    }
    float r = _mm512_reduce_add_ps(acc);
    for (; i < nb; i++) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)b[i].qs), a0 = _mm256_loadu_si256((const __m256i *)a[i].qs);
        __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(w0), _mm256_sign_epi8(a0, w0));
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
        r += (float)_mm_cvtsi128_si32(s) * (_cvtsh_ss(b[i].d) * a[i].d);
    }
    return r;
}

// Q4_0 (Q8_0, Q5_0 alike), decode's kernel: two blocks a step; their two scales made side by
// side in one register and spread to the halves by a permute, the offset's part (scale x
// activation sum) summed in a vector too: no scalar float work per block (+30% over scalar
// scales in a single-thread measurement on Zen 5).
TGT static float dot_q4_0(const void *w, const G3BlockQ8A *a, int nb) {
    const G3BlockQ4_0 *b = w;
    __m512 acc = _mm512_setzero_ps();
    __m128 offv = _mm_setzero_ps();
    float off = 0.0f;
    int i = 0;
    for (; i + 1 < nb; i += 2) {
        const __m128 s = scale_pair(b[i].d, b[i + 1].d, a + i, &offv);
        __m512i wv = _mm512_inserti64x4(_mm512_castsi256_si512(q4_bytes(b[i].qs)), q4_bytes(b[i + 1].qs), 1);
        __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv, pair256(a[i].qs, a[i + 1].qs));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), spread_pair(s), acc);
    }
    off = sum2(offv);
    float r = _mm512_reduce_add_ps(acc);
    for (; i < nb; i++) {
        float s0 = _cvtsh_ss(b[i].d) * a[i].d;
        __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q4_bytes(b[i].qs), _mm256_loadu_si256((const __m256i *)a[i].qs));
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
        r += (float)_mm_cvtsi128_si32(s) * s0;
        off += s0 * (float)a[i].sum;
    }
    return r - 8.0f * off;
}

// the sums of each four products of unsigned bytes u and signed bytes a, sixteen int32
TGT static inline __m512i dot64(__m512i u, __m512i a) { return _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, a); }

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
    __m128 offv = _mm_setzero_ps();
    for (; i + 1 < nb; i += 2) {
        const __m128 s = scale_pair(b[i].d, b[i + 1].d, a + i, &offv);
        __m512i wv = _mm512_or_si512(q4_bytes2(b[i].qs, b[i + 1].qs), q5_high2(b[i].qh, b[i + 1].qh));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot64(wv, pair256(a[i].qs, a[i + 1].qs))), spread_pair(s), acc);
    }
    off = sum2(offv);
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
// one register; Q5_K's bits 2c and 2c + 1 of qh[l] on top as 0x10. The eight sub-blocks' scales
// (d sc_j A_j.d) are made as one vector and spread pairwise to the register halves by permutes;
// the mins' part (dmin m_j A_j.d sum_j) adds up in a vector (*offv), taken off at the end.
TGT static inline __attribute__((always_inline)) void dot_k(const uint8_t *qs, const uint8_t *qhp, const uint8_t *packed, uint16_t d16, uint16_t dmin16,
                       const G3BlockQ8A *a, __m512 *acc, __m256 *offv) {
    uint8_t sc[8], m[8];
    g3_k_scales(packed, sc, m);
    const __m256 da = _mm256_setr_ps(a[0].d, a[1].d, a[2].d, a[3].d, a[4].d, a[5].d, a[6].d, a[7].d);
    const __m256 sum = _mm256_cvtepi32_ps(_mm256_setr_epi32(a[0].sum, a[1].sum, a[2].sum, a[3].sum, a[4].sum, a[5].sum, a[6].sum, a[7].sum));
    int64_t sc8, m8;
    memcpy(&sc8, sc, 8), memcpy(&m8, m, 8);
    const __m256 scf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(sc8)));
    const __m256 mf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(m8)));
    const __m256 s = _mm256_mul_ps(_mm256_mul_ps(scf, da), _mm256_set1_ps(_cvtsh_ss(d16)));
    *offv = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_mul_ps(mf, da), _mm256_set1_ps(_cvtsh_ss(dmin16))), sum, *offv);
    const __m512 s512 = _mm512_castps256_ps512(s);
    const __m256i low = _mm256_set1_epi8(0x0f), b4 = _mm256_set1_epi8(0x10);
    const __m256i qh = qhp ? _mm256_loadu_si256((const __m256i *)qhp) : _mm256_setzero_si256();
    __m512i pick = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
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
        *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_permutexvar_ps(pick, s512), *acc);
        pick = _mm512_add_epi32(pick, _mm512_set1_epi32(2));
    }
}

TGT static inline float hsum8(__m256 v) {
    float t[8];
    memcpy(t, &v, sizeof t);
    return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
}

TGT static float dot_q4_k(const void *w, const G3BlockQ8A *a, int nb) {
    const G3BlockQ4_K *b = w;
    __m512 acc = _mm512_setzero_ps();
    __m256 off = _mm256_setzero_ps();
    for (int i = 0; i < nb / 8; i++) dot_k(b[i].qs, NULL, b[i].scales, b[i].d, b[i].dmin, a + 8 * i, &acc, &off);
    return _mm512_reduce_add_ps(acc) - hsum8(off);
}

TGT static float dot_q5_k(const void *w, const G3BlockQ8A *a, int nb) {
    const G3BlockQ5_K *b = w;
    __m512 acc = _mm512_setzero_ps();
    __m256 off = _mm256_setzero_ps();
    for (int i = 0; i < nb / 8; i++) dot_k(b[i].qs, b[i].qh, b[i].scales, b[i].d, b[i].dmin, a + 8 * i, &acc, &off);
    return _mm512_reduce_add_ps(acc) - hsum8(off);
}

// Q6_K: q (unsigned 6-bit) of two activation blocks against them, each 16 scaled by its int8
// scale (sc4: the four scales of the two blocks): sixteen int32
TGT static inline __m512i q6_pair(__m512i q, __m512i av, int sc4) {
        // vpdpbusd sums fours: int32 lane j covers elements 4j..4j+3, so lanes 4s..4s+3 take the
        // register's s-th scale of 16 (vpmulld)
        __m512i p = _mm512_sub_epi32(dot64(q, av), dot64(_mm512_set1_epi8(32), av));
        __m512i s32 = _mm512_cvtepi8_epi32(_mm_shuffle_epi8(_mm_cvtsi32_si128(sc4), _mm_set_epi8(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0)));
        return _mm512_mullo_epi32(p, s32);
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

void g3_qdot_fill_avx512vnni(G3QDotTable *t) {
    t->q8_0 = dot_q8_0;
    t->q4_0 = dot_q4_0;
    t->q5_0 = dot_q5_0;  // Q4_1 / Q5_1: the AVX2 kernels (rare in files; the table below's)
    t->q4_k = dot_q4_k;
    t->q5_k = dot_q5_k;
    t->q6_k = dot_q6_k;
}
