// quant_q6kx16_avx512vnni.c: the repacked Q6_K product (quant_q6kx16.h) with AVX512-VNNI. Per
// half h of a super-block and quad j, for 16 rows: three loads of 64 bytes (the low bits of
// blocks 4h, 4h + 2 and of 4h + 1, 4h + 3; the high bits of all four), each block's 6-bit q
// assembled in its byte (nibble | top two bits shifted to bits 4-5: one vpternlogd), times its
// activation quad broadcast (vpdpbusd: unsigned q x signed a); the int32 lanes are the rows. The
// 32 is taken off as -32 x the activation half's sum, the chains' start. Per block then the
// reference's steps: sc_2k s_0 + sc_2k+1 s_1 in int32 (vpmulld), then acc += (d a.d) (float).
// quad() and the prefetch are quant_x16_avx512vnni.h's.
#include "quant_q6kx16.h"
#include "quant_x16_avx512vnni.h"

// The sum of an activation block's first 16 bytes: psadbw sums unsigned bytes, so each byte
// is moved by 128 (x ^ 0x80) and the 16 x 128 taken back off.
TGT static inline int32_t half_sum(const int8_t *qs) {
    const __m128i x = _mm_xor_si128(_mm_loadu_si128((const __m128i *)qs), _mm_set1_epi8((char)0x80));
    const __m128i s = _mm_sad_epu8(x, _mm_setzero_si128());
    return _mm_cvtsi128_si32(s) + _mm_extract_epi16(s, 4) - 16 * 128;
}

// A | (B & C) (vpternlogd's table for inputs A, B, C: 0xf8)
TGT static inline __m512i or_and(__m512i a, __m512i b, __m512i c) { return _mm512_ternarylogic_epi32(a, b, c, 0xf8); }

// One quad j of half h for 16 rows: block 4h + g's 6-bit q (g < 4) into its chain s[g][j / 4],
// times the activation quad b[g]. l0 / l1: the half's two registers of low bits, hb its high bits.
TGT static inline __attribute__((always_inline)) void quad16(__m512i s[4][2], const uint8_t *l0, const uint8_t *l1, const uint8_t *hb, int j,
                                                             const __m512i b[4]) {
    const __m512i lo = _mm512_set1_epi8(0x0f), top = _mm512_set1_epi8(0x30);
    const __m512i v0 = _mm512_loadu_si512((const void *)(l0 + 64 * j)), v1 = _mm512_loadu_si512((const void *)(l1 + 64 * j));
    const __m512i u = _mm512_loadu_si512((const void *)(hb + 64 * j));
    // block g's top bits (2g, 2g + 1 of each byte) moved to bits 4-5 (16-bit shifts: what
    // crosses into the next byte lands outside bits 4-5, which the mask keeps)
    const __m512i q0 = or_and(_mm512_and_si512(v0, lo), _mm512_slli_epi16(u, 4), top);
    const __m512i q1 = or_and(_mm512_and_si512(v1, lo), _mm512_slli_epi16(u, 2), top);
    const __m512i q2 = or_and(_mm512_and_si512(_mm512_srli_epi16(v0, 4), lo), u, top);
    const __m512i q3 = or_and(_mm512_and_si512(_mm512_srli_epi16(v1, 4), lo), _mm512_srli_epi16(u, 2), top);
    s[0][j / 4] = _mm512_dpbusd_epi32(s[0][j / 4], q0, b[0]);
    s[1][j / 4] = _mm512_dpbusd_epi32(s[1][j / 4], q1, b[1]);
    s[2][j / 4] = _mm512_dpbusd_epi32(s[2][j / 4], q2, b[2]);
    s[3][j / 4] = _mm512_dpbusd_epi32(s[3][j / 4], q3, b[3]);
}

// Block 4h + k's part of 16 rows (q the super-block, s its two half sums): (d a.d) times
// sc_2k s_0 + sc_2k+1 s_1, the int32 sum as the reference makes it.
TGT static inline __attribute__((always_inline)) __m512 block16(const uint8_t *q, int kk, const __m512i s[2], __m512 d, float ad) {
    const __m512i sc0 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + G3_Q6KX16_SCALES + 16 * (2 * kk))));
    const __m512i sc1 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + G3_Q6KX16_SCALES + 16 * (2 * kk + 1))));
    const __m512i is = _mm512_add_epi32(_mm512_mullo_epi32(sc0, s[0]), _mm512_mullo_epi32(sc1, s[1]));
    return _mm512_mul_ps(_mm512_mul_ps(d, _mm512_set1_ps(ad)), _mm512_cvtepi32_ps(is));
}

// G (1 or 2) consecutive groups, gb bytes apart, each activation quad broadcast once for 16 G
// rows; acc[g] gets group g's 16 results. Unrolled throughout: the chains and the broadcasts
// stay in registers.
TGT static inline __attribute__((always_inline)) void gemv_g(__m512 *acc, const uint8_t *group, int nb, const G3BlockQ8A *a, int G,
                                                             size_t gb) {
    for (int g = 0; g < G; g++) acc[g] = _mm512_setzero_ps();
    for (int i = 0; i < nb / 8; i++) {
        const uint8_t *sb = group + (size_t)i * G3_Q6KX16_SUPER_BYTES;
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const G3BlockQ8A *ah = a + 8 * i + 4 * h;
            // the super-block's 53 lines X16_PF ahead, 27 each half (one twice)
#pragma GCC unroll 2
            for (int g = 0; g < G; g++) x16_prefetch(sb + g * gb + 26 * 64 * h, 27);
            __m512i s[2][4][2];  // [group][block 4h + k][half]: from -32 x the activation half's sum
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const int32_t h0 = half_sum(ah[k].qs);
                const __m512i o0 = _mm512_set1_epi32(-32 * h0), o1 = _mm512_set1_epi32(-32 * (ah[k].sum - h0));
#pragma GCC unroll 2
                for (int g = 0; g < G; g++) s[g][k][0] = o0, s[g][k][1] = o1;
            }
            const uint8_t *l0 = sb + (size_t)(2 * h) * 512, *l1 = l0 + 512, *hb = sb + G3_Q6KX16_HIGH + (size_t)h * 512;
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) {
                __m512i b[4];
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) b[k] = quad(ah[k].qs + 4 * j);
#pragma GCC unroll 2
                for (int g = 0; g < G; g++) quad16(s[g], l0 + g * gb, l1 + g * gb, hb + g * gb, j, b);
            }
#pragma GCC unroll 2
            for (int g = 0; g < G; g++) {
                const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sb + g * gb + G3_Q6KX16_D)));
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) acc[g] = _mm512_add_ps(acc[g], block16(sb + g * gb, 4 * h + k, s[g][k], d, ah[k].d));
            }
        }
    }
}

TGT void g3_q6kx16_gemv_avx512vnni(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a, int nrows) {
    __m512 acc[1];
    gemv_g(acc, group, nb, a, 1, 0);
    if (nrows >= 16) _mm512_storeu_ps(y, acc[0]);
    else _mm512_mask_storeu_ps(y, (__mmask16)((1u << nrows) - 1), acc[0]);
}

// Two consecutive groups: each activation quad broadcast, and its half sums made, once for 32
// rows.
TGT void g3_q6kx16_gemv2_avx512vnni(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a) {
    __m512 acc[2];
    gemv_g(acc, group, nb, a, 2, (size_t)(nb / 8) * G3_Q6KX16_SUPER_BYTES);
    _mm512_storeu_ps(y, acc[0]);
    _mm512_storeu_ps(y + 16, acc[1]);
}

// The GEMM's panels of a group (g3_q6kx16_to_panel's bytes and floats): block 4h + g's quads
// assembled as quad16 does, stored as the panel's, and its two scales d sc (f32 d times the
// integer, as the reference).
TGT void g3_q6kx16_to_panel_avx512vnni(G3QPanelBlock *p, const uint8_t *group, int nb) {
    const __m512i lo = _mm512_set1_epi8(0x0f), top = _mm512_set1_epi8(0x30);
    for (int i = 0; i < nb / 8; i++) {
        const uint8_t *sb = group + (size_t)i * G3_Q6KX16_SUPER_BYTES;
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sb + G3_Q6KX16_D)));
        for (int h = 0; h < 2; h++) {
            const uint8_t *l0 = sb + (size_t)(2 * h) * 512, *l1 = l0 + 512, *hb = sb + G3_Q6KX16_HIGH + (size_t)h * 512;
            G3QPanelBlock *b = p + 8 * i + 4 * h;
            for (int j = 0; j < 8; j++) {
                const __m512i v0 = _mm512_loadu_si512((const void *)(l0 + 64 * j)), v1 = _mm512_loadu_si512((const void *)(l1 + 64 * j));
                const __m512i u = _mm512_loadu_si512((const void *)(hb + 64 * j));
                _mm512_storeu_si512((void *)b[0].q[j], or_and(_mm512_and_si512(v0, lo), _mm512_slli_epi16(u, 4), top));
                _mm512_storeu_si512((void *)b[1].q[j], or_and(_mm512_and_si512(v1, lo), _mm512_slli_epi16(u, 2), top));
                _mm512_storeu_si512((void *)b[2].q[j], or_and(_mm512_and_si512(_mm512_srli_epi16(v0, 4), lo), u, top));
                _mm512_storeu_si512((void *)b[3].q[j], or_and(_mm512_and_si512(_mm512_srli_epi16(v1, 4), lo), _mm512_srli_epi16(u, 2), top));
            }
            for (int k = 0; k < 4; k++) {
                const int kk = 4 * h + k;
                for (int half = 0; half < 2; half++) {
                    const __m128i sc = _mm_loadu_si128((const __m128i *)(sb + G3_Q6KX16_SCALES + 16 * (2 * kk + half)));
                    _mm512_storeu_ps(b[k].scale[half], _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(sc))));
                }
                _mm512_storeu_ps(b[k].bias, _mm512_setzero_ps());
            }
        }
    }
}
