// quant_q4x16_avx512vnni.c: the repacked Q4_0 product (quant_q4x16.h) with AVX512-VNNI. Per
// block of 16 rows: four loads of 64 bytes, each register's low nibbles one quad of the 16 rows
// and its high nibbles the quad 16 elements on; each quad times its activation quad broadcast
// (vpdpbusd: unsigned nibble x signed byte, four products summed per int32 lane), the lanes
// are the rows, and the first chain starts from -8 x the activation block's sum. The loops over
// the blocks (broadcasts, prefetch, the float steps per row: (float)s * (d_w * d_a), added)
// are quant_x16_avx512vnni.h's, shared with Q8_0 and Q5_0.
#include "quant_q4x16.h"
#include "quant_x16_avx512vnni.h"

// One block's int32 sums of 16 rows with the activation's eight quads broadcast (b) and the
// offset's start (base = -8 * sum): each quad's product into its own accumulator (the chains of
// vpdpbusd stay short), joined at the end.
TGT static inline __m512i block16(const uint8_t *q, const __m512i *b, __m512i base) {
    const __m512i m = _mm512_set1_epi8(0x0f);
    const __m512i v0 = _mm512_loadu_si512((const void *)q), v1 = _mm512_loadu_si512((const void *)(q + 64));
    const __m512i v2 = _mm512_loadu_si512((const void *)(q + 128)), v3 = _mm512_loadu_si512((const void *)(q + 192));
    __m512i s0 = _mm512_dpbusd_epi32(base, _mm512_and_si512(v0, m), b[0]);
    __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(v1, m), b[1]);
    __m512i s2 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(v2, m), b[2]);
    __m512i s3 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(v3, m), b[3]);
    s0 = _mm512_dpbusd_epi32(s0, _mm512_and_si512(_mm512_srli_epi16(v0, 4), m), b[4]);
    s1 = _mm512_dpbusd_epi32(s1, _mm512_and_si512(_mm512_srli_epi16(v1, 4), m), b[5]);
    s2 = _mm512_dpbusd_epi32(s2, _mm512_and_si512(_mm512_srli_epi16(v2, 4), m), b[6]);
    s3 = _mm512_dpbusd_epi32(s3, _mm512_and_si512(_mm512_srli_epi16(v3, 4), m), b[7]);
    return _mm512_add_epi32(_mm512_add_epi32(s0, s1), _mm512_add_epi32(s2, s3));
}

// 256 bytes of quants a group block, nine cache lines a pair's block (2 x 288 bytes); the
// nibbles' offset 8. Two groups a call broadcast each activation quad once for 32 rows (the
// broadcasts were a fifth of the one-group loop's instructions; one core from memory: 20.7 ->
// 22.5 GB/s).
static const X16Layout Q4 = {G3_Q4X16_QUANT_BYTES, 9, 8};

TGT void g3_q4x16_gemv_avx512vnni(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a, int nrows) {
    x16_gemv(y, group, nb, a, nrows, block16, Q4);
}

TGT void g3_q4x16_gemv2_avx512vnni(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a) {
    x16_gemv2(y, group, nb, a, block16, Q4);
}
