// quant_x16_avx512vnni.h: what the AVX512-VNNI kernels of the repacked Q4_0, Q8_0 and Q5_0 groups
// (quant_q4x16_avx512vnni.c, quant_q8x16_avx512vnni.c, quant_q5x16_avx512vnni.c) share; included by those files only
// (and by quant_q4kx16_avx512vnni.c for quad, the prefetch and TGT: its loops are its own).
// The groups differ in how a block's 16 rows of quads are made (bytes as they are, or nibbles
// with their fifth bits) and in the offset the first chain starts from; the loops over the
// blocks (the activation's quads broadcast once a block, the prefetch, the scales' float
// steps, one group or two) are the same, so each file gives its block16 and its layout's sizes
// and these loops do the rest. Per row the float steps are the reference's: (float)s * (d_w *
// d_a), added block by block.
#ifndef G3_QUANT_X16_AVX512VNNI_H
#define G3_QUANT_X16_AVX512VNNI_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "quant_dot.h"

#ifndef PF
#define PF 2048
#endif
#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c")))

TGT static inline __m512i quad(const int8_t *qs) {
    int32_t v;
    memcpy(&v, qs, 4);
    return _mm512_set1_epi32(v);
}

// The `lines` cache lines PF ahead of a block's quants asked for now: the hardware prefetcher
// alone leaves one core well below the memory's speed (Q4_0's groups: ~14 against 18.7 GB/s).
// always_inline: gcc 12 finds a function of prefetches alone free of side effects ("const")
// and deletes its calls, so a plain inline one left the kernels with no prefetch at all.
TGT static inline __attribute__((always_inline)) void x16_prefetch(const uint8_t *q, int lines) {
#pragma GCC unroll 16
    for (int i = 0; i < lines; i++) _mm_prefetch((const char *)q + PF + 64 * i, _MM_HINT_T0);
}

// A block's int32 sums of 16 rows: its quants q, the activation's eight quads broadcast b, and
// the first chain's start base (-offset x the activation block's sum).
typedef __m512i (*X16Block)(const uint8_t *q, const __m512i *b, __m512i base);

// A layout: bytes of a block's quants, cache lines to prefetch a block, the offset.
typedef struct {
    int quant_bytes, lines, off;
} X16Layout;

// y[r] for r < nrows (<= 16) of one group (quant_q4x16.h's signature).
TGT static inline __attribute__((always_inline)) void x16_gemv(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a,
                                                               int nrows, X16Block block16, const X16Layout L) {
    const uint8_t *q = group, *sc = group + (size_t)nb * L.quant_bytes;
    __m512 acc = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++, q += L.quant_bytes, sc += 32) {
        x16_prefetch(q, L.lines);
        __m512i bq[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) bq[i] = quad(a[b].qs + 4 * i);
        const __m512i s = block16(q, bq, _mm512_set1_epi32(-L.off * a[b].sum));
        const __m512 d = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)sc)), _mm512_set1_ps(a[b].d));
        acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_cvtepi32_ps(s), d));
    }
    if (nrows >= 16) _mm512_storeu_ps(y, acc);
    else _mm512_mask_storeu_ps(y, (__mmask16)((1u << nrows) - 1), acc);
}

// y[0..31]: two consecutive full groups, each activation quad broadcast once for 32 rows; per
// row the same sums and float steps as x16_gemv.
TGT static inline __attribute__((always_inline)) void x16_gemv2(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a,
                                                                X16Block block16, const X16Layout L) {
    const size_t gb = (size_t)nb * (L.quant_bytes + 32);  // one group's bytes: the quants, then 16 f16 scales a block
    const uint8_t *q = group, *sc = group + (size_t)nb * L.quant_bytes;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++, q += L.quant_bytes, sc += 32) {
        x16_prefetch(q, L.lines);
        x16_prefetch(q + gb, L.lines);
        __m512i bq[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) bq[i] = quad(a[b].qs + 4 * i);
        const __m512i base = _mm512_set1_epi32(-L.off * a[b].sum);
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

#endif
