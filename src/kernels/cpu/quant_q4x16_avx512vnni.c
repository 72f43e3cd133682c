// quant_q4x16_avx512vnni.c: the repacked Q4_0 product (quant_q4x16.h) with AVX512-VNNI. Per
// block of 16 rows: four loads of 64 bytes, each register's low nibbles one quad of the 16 rows
// and its high nibbles the quad 16 elements on; each quad times its activation quad broadcast
// (vpdpbusd: unsigned nibble x signed byte, four products summed per int32 lane), the lanes
// are the rows. The float steps per row are the reference's: (float)s * (d_w * d_a), added.
#include <immintrin.h>

#include <string.h>

#include "quant_q4x16.h"

#ifndef PF
#define PF 2048
#endif
#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c")))

TGT static inline __m512i quad(const int8_t *qs) {
    int32_t v;
    memcpy(&v, qs, 4);
    return _mm512_set1_epi32(v);
}

// One block's int32 sums of the 16 rows: four registers of 64 bytes, each quad's product
// into its own accumulator (the chains of vpdpbusd stay short), joined at the end.
TGT static inline __m512i block16(const uint8_t *q, const int8_t *aq, int32_t sum, __m512i m) {
    const __m512i v0 = _mm512_loadu_si512((const void *)q), v1 = _mm512_loadu_si512((const void *)(q + 64));
    const __m512i v2 = _mm512_loadu_si512((const void *)(q + 128)), v3 = _mm512_loadu_si512((const void *)(q + 192));
    __m512i s0 = _mm512_dpbusd_epi32(_mm512_set1_epi32(-8 * sum), _mm512_and_si512(v0, m), quad(aq));
    __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(v1, m), quad(aq + 4));
    __m512i s2 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(v2, m), quad(aq + 8));
    __m512i s3 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(v3, m), quad(aq + 12));
    s0 = _mm512_dpbusd_epi32(s0, _mm512_and_si512(_mm512_srli_epi16(v0, 4), m), quad(aq + 16));
    s1 = _mm512_dpbusd_epi32(s1, _mm512_and_si512(_mm512_srli_epi16(v1, 4), m), quad(aq + 20));
    s2 = _mm512_dpbusd_epi32(s2, _mm512_and_si512(_mm512_srli_epi16(v2, 4), m), quad(aq + 24));
    s3 = _mm512_dpbusd_epi32(s3, _mm512_and_si512(_mm512_srli_epi16(v3, 4), m), quad(aq + 28));
    return _mm512_add_epi32(_mm512_add_epi32(s0, s1), _mm512_add_epi32(s2, s3));
}

TGT void g3_q4x16_gemv_avx512vnni(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a, int nrows) {
    const uint8_t *q = group, *sc = group + (size_t)nb * 256;
    const __m512i m = _mm512_set1_epi8(0x0f);
    __m512 acc = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++, q += 256, sc += 32) {
        // the bytes PF ahead asked for now: the hardware prefetcher alone left one core at
        // ~14 GB/s from memory (the ggml rows' kernel: 16)
        _mm_prefetch((const char *)q + PF, _MM_HINT_T0);
        _mm_prefetch((const char *)q + PF + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)q + PF + 128, _MM_HINT_T0);
        _mm_prefetch((const char *)q + PF + 192, _MM_HINT_T0);
        const __m512i s = block16(q, a[b].qs, a[b].sum, m);
        const __m512 d = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)sc)), _mm512_set1_ps(a[b].d));
        acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_cvtepi32_ps(s), d));
    }
    if (nrows >= 16) _mm512_storeu_ps(y, acc);
    else _mm512_mask_storeu_ps(y, (__mmask16)((1u << nrows) - 1), acc);
}

// One block's int32 sums of 16 rows with the activation's eight quads already broadcast (b)
// and the offset's start (base = -8 * sum): the same sums as block16.
TGT static inline __m512i block16b(const uint8_t *q, const __m512i *b, __m512i base, __m512i m) {
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

// Two consecutive groups: each activation quad broadcast once for 32 rows (the broadcasts were
// a fifth of the one-group loop's instructions; one core from memory: 20.7 -> 22.5 GB/s). Per
// row the same sums and float steps as g3_q4x16_gemv_avx512vnni.
TGT void g3_q4x16_gemv2_avx512vnni(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a) {
    const size_t gb = (size_t)nb * G3_Q4X16_BLOCK_BYTES;  // one group's bytes
    const uint8_t *q = group, *sc = group + (size_t)nb * 256;
    const __m512i m = _mm512_set1_epi8(0x0f);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++, q += 256, sc += 32) {
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            _mm_prefetch((const char *)q + PF + 64 * i, _MM_HINT_T0);
            _mm_prefetch((const char *)q + gb + PF + 64 * i, _MM_HINT_T0);
        }
        __m512i bq[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) bq[i] = quad(a[b].qs + 4 * i);
        const __m512i base = _mm512_set1_epi32(-8 * a[b].sum);
        const __m512i s0 = block16b(q, bq, base, m), s1 = block16b(q + gb, bq, base, m);
        const __m512 ad = _mm512_set1_ps(a[b].d);
        const __m512 d0 = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)sc)), ad);
        const __m512 d1 = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sc + gb))), ad);
        acc0 = _mm512_add_ps(acc0, _mm512_mul_ps(_mm512_cvtepi32_ps(s0), d0));
        acc1 = _mm512_add_ps(acc1, _mm512_mul_ps(_mm512_cvtepi32_ps(s1), d1));
    }
    _mm512_storeu_ps(y, acc0);
    _mm512_storeu_ps(y + 16, acc1);
}
