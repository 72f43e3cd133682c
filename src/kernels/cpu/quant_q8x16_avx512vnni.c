// quant_q8x16_avx512vnni.c: the repacked Q8_0 product (quant_q8x16.h) with AVX512-VNNI. Per
// block of 16 rows: eight loads of 64 bytes, each register one quad of the 16 rows as unsigned
// bytes (q + 128), times its activation quad broadcast (vpdpbusd: unsigned weight x signed
// activation, four products summed per int32 lane); the lanes are the rows, and the first
// chain starts from -128 x the activation block's sum, which takes the 128 back off. The float
// steps per row are the reference's: (float)s * (d_w * d_a), added.
#include <immintrin.h>

#include <string.h>

#include "quant_q8x16.h"

#ifndef PF
#define PF 2048
#endif
#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c")))

TGT static inline __m512i quad(const int8_t *qs) {
    int32_t v;
    memcpy(&v, qs, 4);
    return _mm512_set1_epi32(v);
}

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

// The bytes PF ahead of a block's quants asked for now (eight lines: the block's size). The
// hardware prefetcher alone leaves one core well below the memory's speed (Q4_0's groups: ~14
// against 18.7 GB/s with this).
TGT static inline void prefetch_block(const uint8_t *q) {
    for (int i = 0; i < 8; i++) _mm_prefetch((const char *)q + PF + 64 * i, _MM_HINT_T0);
}

TGT void g3_q8x16_gemv_avx512vnni(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a, int nrows) {
    const uint8_t *q = group, *sc = group + (size_t)nb * G3_Q8X16_QUANT_BYTES;
    __m512 acc = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++, q += G3_Q8X16_QUANT_BYTES, sc += 32) {
        prefetch_block(q);
        __m512i bq[8];
        for (int i = 0; i < 8; i++) bq[i] = quad(a[b].qs + 4 * i);
        const __m512i s = block16(q, bq, _mm512_set1_epi32(-128 * a[b].sum));
        const __m512 d = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)sc)), _mm512_set1_ps(a[b].d));
        acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_cvtepi32_ps(s), d));
    }
    if (nrows >= 16) _mm512_storeu_ps(y, acc);
    else _mm512_mask_storeu_ps(y, (__mmask16)((1u << nrows) - 1), acc);
}

// Two consecutive groups: each activation quad broadcast once for 32 rows (as Q4_0's two-group
// kernel). Per row the same sums and float steps as g3_q8x16_gemv_avx512vnni.
TGT void g3_q8x16_gemv2_avx512vnni(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a) {
    const size_t gb = (size_t)nb * G3_Q8X16_BLOCK_BYTES;  // one group's bytes
    const uint8_t *q = group, *sc = group + (size_t)nb * G3_Q8X16_QUANT_BYTES;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++, q += G3_Q8X16_QUANT_BYTES, sc += 32) {
        prefetch_block(q);
        prefetch_block(q + gb);
        __m512i bq[8];
        for (int i = 0; i < 8; i++) bq[i] = quad(a[b].qs + 4 * i);
        const __m512i base = _mm512_set1_epi32(-128 * a[b].sum);
        const __m512i s0 = block16(q, bq, base), s1 = block16(q + gb, bq, base);
        const __m512 ad = _mm512_set1_ps(a[b].d);
        const __m512 d0 = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)sc)), ad);
        const __m512 d1 = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sc + gb))), ad);
        acc0 = _mm512_add_ps(acc0, _mm512_mul_ps(_mm512_cvtepi32_ps(s0), d0));
        acc1 = _mm512_add_ps(acc1, _mm512_mul_ps(_mm512_cvtepi32_ps(s1), d1));
    }
    _mm512_storeu_ps(y, acc0);
    _mm512_storeu_ps(y + 16, acc1);
}
