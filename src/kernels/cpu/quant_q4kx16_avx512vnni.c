// quant_q4kx16_avx512vnni.c: the repacked Q4_K product (quant_q4kx16.h) with AVX512-VNNI. Per
// pair of sub-blocks (2c, 2c + 1) of 16 rows: eight loads of 64 bytes, each register's low
// nibbles one quad of sub-block 2c for the 16 rows and its high nibbles the same quad of 2c + 1;
// each times its activation quad broadcast (vpdpbusd), the int32 lanes are the rows. Then per
// sub-block the reference's float steps on 16 rows at once, in its order (qdot_k in
// quant_dot_scalar.c): a_j.d (d sc_j s - dmin m_j sum_j), added into the super-block's sum,
// which is added into the row's; sc_j and m_j one byte a row, widened by one vpmovzxbd each.
// quad() and the prefetch distance are quant_x16_avx512vnni.h's; the loops are this file's
// (a super-block's scales and mins are per sub-block, not per block as Q8_0 / Q5_0's).
#include "quant_q4kx16.h"
#include "quant_x16_avx512vnni.h"

// The int32 sums of sub-blocks 2c (lo) and 2c + 1 (hi) of 16 rows: q the pair's 512 bytes,
// blo / bhi the activation blocks' eight quads broadcast. The high nibbles are taken in place
// (v & 0xf0, 16 x the nibble: vpdpbusd's unsigned bytes reach 255) and the sum divided by 16 at
// the end, exactly (a multiple of 16): one shift a sub-block instead of one a register. Two
// chains a sub-block (vpdpbusd's latency is several cycles), joined at the end.
TGT static inline __attribute__((always_inline)) __m512i pair16(const uint8_t *q, const __m512i *blo, const __m512i *bhi, __m512i *shi) {
    const __m512i ml = _mm512_set1_epi8(0x0f), mh = _mm512_set1_epi8((char)0xf0);
    __m512i l0 = _mm512_setzero_si512(), l1 = l0, h0 = l0, h1 = l0;
#pragma GCC unroll 4
    for (int h = 0; h < 8; h += 2) {
        const __m512i v0 = _mm512_loadu_si512((const void *)(q + 64 * h)), v1 = _mm512_loadu_si512((const void *)(q + 64 * h + 64));
        l0 = _mm512_dpbusd_epi32(l0, _mm512_and_si512(v0, ml), blo[h]);
        l1 = _mm512_dpbusd_epi32(l1, _mm512_and_si512(v1, ml), blo[h + 1]);
        h0 = _mm512_dpbusd_epi32(h0, _mm512_and_si512(v0, mh), bhi[h]);
        h1 = _mm512_dpbusd_epi32(h1, _mm512_and_si512(v1, mh), bhi[h + 1]);
    }
    *shi = _mm512_srai_epi32(_mm512_add_epi32(h0, h1), 4);
    return _mm512_add_epi32(l0, l1);
}

// Sub-block j's part of 16 rows: a_j.d (d sc_j s - dmin m_j sum_j), as the reference rounds it.
TGT static inline __attribute__((always_inline)) __m512 sub16(const uint8_t *sb, int j, __m512i s, __m512 d, __m512 dmin, const G3BlockQ8A *aj) {
    const __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(sb + G3_Q4KX16_SCALES + 16 * j))));
    const __m512 mn = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(sb + G3_Q4KX16_MINS + 16 * j))));
    const __m512 t = _mm512_sub_ps(_mm512_mul_ps(_mm512_mul_ps(d, sc), _mm512_cvtepi32_ps(s)),
                                   _mm512_mul_ps(_mm512_mul_ps(dmin, mn), _mm512_set1_ps((float)aj->sum)));
    return _mm512_mul_ps(_mm512_set1_ps(aj->d), t);
}

// G (1 or 2) consecutive groups, gb bytes apart: each activation quad broadcast once for 16 G
// rows. acc[g] gets group g's 16 results.
TGT static inline __attribute__((always_inline)) void gemv_g(__m512 *acc, const uint8_t *group, int nb, const G3BlockQ8A *a, int G,
                                                             size_t gb) {
    for (int g = 0; g < G; g++) acc[g] = _mm512_setzero_ps();
    // (unrolled: the broadcasts stay in registers, not stack arrays)
    for (int i = 0; i < nb / 8; i++) {
        const uint8_t *sb = group + (size_t)i * G3_Q4KX16_SUPER_BYTES;
        __m512 d[2], dmin[2], sacc[2];
        for (int g = 0; g < G; g++) {
            d[g] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sb + g * gb + G3_Q4KX16_D)));
            dmin[g] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sb + g * gb + G3_Q4KX16_DMIN)));
            sacc[g] = _mm512_setzero_ps();
        }
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            // the super-block's 37 lines, X16_PF ahead: the nibbles' 8 a pair, the scales' 5 with the last
            for (int g = 0; g < G; g++) {
                x16_prefetch(sb + g * gb + 512 * c, 8);
                if (c == 3) x16_prefetch(sb + g * gb + G3_Q4KX16_SCALES, 5);
            }
            const G3BlockQ8A *a0 = a + 8 * i + 2 * c, *a1 = a0 + 1;
            __m512i blo[8], bhi[8];
#pragma GCC unroll 8
            for (int h = 0; h < 8; h++) blo[h] = quad(a0->qs + 4 * h), bhi[h] = quad(a1->qs + 4 * h);
#pragma GCC unroll 2
            for (int g = 0; g < G; g++) {
                __m512i shi;
                const __m512i slo = pair16(sb + g * gb + 512 * c, blo, bhi, &shi);
                sacc[g] = _mm512_add_ps(sacc[g], sub16(sb + g * gb, 2 * c, slo, d[g], dmin[g], a0));
                sacc[g] = _mm512_add_ps(sacc[g], sub16(sb + g * gb, 2 * c + 1, shi, d[g], dmin[g], a1));
            }
        }
        for (int g = 0; g < G; g++) acc[g] = _mm512_add_ps(acc[g], sacc[g]);
    }
}

TGT void g3_q4kx16_gemv_avx512vnni(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a, int nrows) {
    __m512 acc[1];
    gemv_g(acc, group, nb, a, 1, 0);
    if (nrows >= 16) _mm512_storeu_ps(y, acc[0]);
    else _mm512_mask_storeu_ps(y, (__mmask16)((1u << nrows) - 1), acc[0]);
}

// Two consecutive groups: each activation quad broadcast once for 32 rows (as Q4_0's).
TGT void g3_q4kx16_gemv2_avx512vnni(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a) {
    __m512 acc[2];
    gemv_g(acc, group, nb, a, 2, (size_t)(nb / 8) * G3_Q4KX16_SUPER_BYTES);
    _mm512_storeu_ps(y, acc[0]);
    _mm512_storeu_ps(y + 16, acc[1]);
}

// The GEMM's panels of a group (g3_q4kx16_to_panel's bytes and floats): per block j the pair's
// eight registers' nibbles (low for even j, high for odd) stored as the panel's quads, and the
// 16 rows' d sc_j and -dmin m_j from the bytes widened (as the reference: f32 d times the
// integer, the min's sign on dmin first).
TGT void g3_q4kx16_to_panel_avx512vnni(G3QPanelBlock *p, const uint8_t *group, int nb) {
    const __m512i m = _mm512_set1_epi8(0x0f);
    for (int i = 0; i < nb / 8; i++) {
        const uint8_t *sb = group + (size_t)i * G3_Q4KX16_SUPER_BYTES;
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sb + G3_Q4KX16_D)));
        // -dmin by its sign bit (0 - dmin gives +0 for dmin +0, where the reference's -dmin is -0)
        const __m512 ndmin = _mm512_xor_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sb + G3_Q4KX16_DMIN))), _mm512_set1_ps(-0.0f));
        for (int j = 0; j < 8; j++) {
            G3QPanelBlock *b = p + 8 * i + j;
            const uint8_t *q = sb + (size_t)(j / 2) * 512;
            for (int h = 0; h < 8; h++) {
                const __m512i v = _mm512_loadu_si512((const void *)(q + 64 * h));
                _mm512_storeu_si512((void *)b->q[h], _mm512_and_si512(j & 1 ? _mm512_srli_epi16(v, 4) : v, m));
            }
            const __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(sb + G3_Q4KX16_SCALES + 16 * j))));
            const __m512 mn = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(sb + G3_Q4KX16_MINS + 16 * j))));
            const __m512 s = _mm512_mul_ps(d, sc);
            _mm512_storeu_ps(b->scale[0], s);
            _mm512_storeu_ps(b->scale[1], s);
            _mm512_storeu_ps(b->bias, _mm512_mul_ps(ndmin, mn));
        }
    }
}
