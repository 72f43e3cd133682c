// quant_q8x16_avx512vnni.c: the repacked Q8_0 product (quant_q8x16.h) with AVX512-VNNI. Per
// block of 16 rows: eight loads of 64 bytes, each register one quad of the 16 rows as unsigned
// bytes (q + 128), times its activation quad broadcast (vpdpbusd: unsigned weight x signed
// activation, four products summed per int32 lane); the lanes are the rows, and the first
// chain starts from -128 x the activation block's sum, which takes the 128 back off. The loops
// over the blocks are quant_x16_avx512vnni.h's.
#include "quant_q8x16.h"
#include "quant_x16_avx512vnni.h"

// One block's int32 sums of 16 rows with the activation's eight quads broadcast (b) and the
// offset's start (base = -128 * sum): four chains of two vpdpbusd each (short dependency
// chains: vpdpbusd's latency is several cycles), joined at the end.
TGT static inline __m512i block16(const uint8_t *q, const __m512i *b, __m512i base) {
    __m512i s0 = _mm512_dpbusd_epi32(base, _mm512_loadu_si512((const void *)q), b[0]);
    __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_loadu_si512((const void *)(q + 64)), b[1]);
    __m512i s2 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_loadu_si512((const void *)(q + 128)), b[2]);
    __m512i s3 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_loadu_si512((const void *)(q + 192)), b[3]);
    s0 = _mm512_dpbusd_epi32(s0, _mm512_loadu_si512((const void *)(q + 256)), b[4]);
    s1 = _mm512_dpbusd_epi32(s1, _mm512_loadu_si512((const void *)(q + 320)), b[5]);
    s2 = _mm512_dpbusd_epi32(s2, _mm512_loadu_si512((const void *)(q + 384)), b[6]);
    s3 = _mm512_dpbusd_epi32(s3, _mm512_loadu_si512((const void *)(q + 448)), b[7]);
    return _mm512_add_epi32(_mm512_add_epi32(s0, s1), _mm512_add_epi32(s2, s3));
}

static const X16Layout Q8 = {G3_Q8X16_QUANT_BYTES, 17, 128};  // 17 lines a pair's block (2 x 544 bytes); the + 128

TGT void g3_q8x16_gemv_avx512vnni(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a, int nrows) {
    x16_gemv(y, group, nb, a, nrows, block16, Q8);
}

// A pair's two groups: each activation quad broadcast once for 32 rows (as Q4_0's two-group
// kernel).
TGT void g3_q8x16_gemv2_avx512vnni(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a) {
    x16_gemv2(y, group, nb, a, block16, Q8);
}
