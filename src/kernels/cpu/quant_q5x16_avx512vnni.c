// quant_q5x16_avx512vnni.c: the repacked Q5_0 product (quant_q5x16.h) with AVX512-VNNI. Per
// block of 16 rows: four loads of 64 bytes whose low nibbles are one quad of the 16 rows and
// high nibbles the quad 16 elements on; each quad's fifth bits are a 64-bit mask (one bit per
// byte), loaded into a mask register and added as 16 to the bytes it selects; each quad times
// its activation quad broadcast (vpdpbusd), the lanes are the rows, the first chain starting
// from -16 x the activation block's sum (the offset of 16). The loops over the blocks are
// quant_x16_avx512vnni.h's.
#include "../../tensor/quant.h"
#include "quant_q5x16.h"
#include "quant_x16_avx512vnni.h"

// Quad j's bytes 0..31 (nibbles v, their fifth bits from mask j): v + 16 where the bit is set.
TGT static inline __m512i fifth(__m512i v, const uint8_t *masks, int j, __m512i c16) {
    uint64_t m;
    memcpy(&m, masks + 8 * j, 8);
    return _mm512_mask_add_epi8(v, _cvtu64_mask64(m), v, c16);
}

// One block's int32 sums of 16 rows with the activation's eight quads broadcast (b) and the
// offset's start (base = -16 * sum): four chains of two vpdpbusd each, joined at the end.
TGT static inline __m512i block16(const uint8_t *q, const __m512i *b, __m512i base) {
    const __m512i m = _mm512_set1_epi8(0x0f), c16 = _mm512_set1_epi8(16);
    const uint8_t *mk = q + 256;
    const __m512i v0 = _mm512_loadu_si512((const void *)q), v1 = _mm512_loadu_si512((const void *)(q + 64));
    const __m512i v2 = _mm512_loadu_si512((const void *)(q + 128)), v3 = _mm512_loadu_si512((const void *)(q + 192));
    __m512i s0 = _mm512_dpbusd_epi32(base, fifth(_mm512_and_si512(v0, m), mk, 0, c16), b[0]);
    __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), fifth(_mm512_and_si512(v1, m), mk, 1, c16), b[1]);
    __m512i s2 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), fifth(_mm512_and_si512(v2, m), mk, 2, c16), b[2]);
    __m512i s3 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), fifth(_mm512_and_si512(v3, m), mk, 3, c16), b[3]);
    s0 = _mm512_dpbusd_epi32(s0, fifth(_mm512_and_si512(_mm512_srli_epi16(v0, 4), m), mk, 4, c16), b[4]);
    s1 = _mm512_dpbusd_epi32(s1, fifth(_mm512_and_si512(_mm512_srli_epi16(v1, 4), m), mk, 5, c16), b[5]);
    s2 = _mm512_dpbusd_epi32(s2, fifth(_mm512_and_si512(_mm512_srli_epi16(v2, 4), m), mk, 6, c16), b[6]);
    s3 = _mm512_dpbusd_epi32(s3, fifth(_mm512_and_si512(_mm512_srli_epi16(v3, 4), m), mk, 7, c16), b[7]);
    return _mm512_add_epi32(_mm512_add_epi32(s0, s1), _mm512_add_epi32(s2, s3));
}

static const X16Layout Q5 = {G3_Q5X16_QUANT_BYTES, 11, 16};  // 11 lines a pair's block (2 x 352 bytes); the offset of 16

TGT void g3_q5x16_gemv_avx512vnni(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a, int nrows) {
    x16_gemv(y, group, nb, a, nrows, block16, Q5);
}

// The GEMM's panel of a group: each quad built in a register as block16 builds it, stored.
TGT void g3_q5x16_to_panel_avx512vnni(G3QPanelBlock *p, const uint8_t *group, int nb) {
    const __m512i m = _mm512_set1_epi8(0x0f), c16 = _mm512_set1_epi8(16);
    for (int b = 0; b < nb; b++) {
        const uint8_t *q = group + (size_t)b * 2 * G3_Q5X16_BLOCK_BYTES, *sc = q + G3_Q5X16_QUANT_BYTES;
        for (int h = 0; h < 4; h++) {
            const __m512i v = _mm512_loadu_si512((const void *)(q + 64 * h));
            _mm512_storeu_si512((void *)p[b].q[h], fifth(_mm512_and_si512(v, m), q + 256, h, c16));
            _mm512_storeu_si512((void *)p[b].q[4 + h], fifth(_mm512_and_si512(_mm512_srli_epi16(v, 4), m), q + 256, 4 + h, c16));
        }
        for (int r = 0; r < G3_Q5X16_ROWS; r++) {  // the scales as the reference converts them
            uint16_t d;
            memcpy(&d, sc + 2 * r, 2);
            p[b].scale[0][r] = p[b].scale[1][r] = g3_f16_to_f32(d);
            p[b].bias[r] = 0.0f;
        }
    }
}

// A pair's two groups: each activation quad broadcast once for 32 rows.
TGT void g3_q5x16_gemv2_avx512vnni(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a) {
    x16_gemv2(y, group, nb, a, block16, Q5);
}
