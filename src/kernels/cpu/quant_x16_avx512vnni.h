// quant_x16_avx512vnni.h: what the AVX512-VNNI kernels of the repacked Q4_0, Q8_0 and Q5_0 groups
// (quant_q4x16_avx512vnni.c, quant_q8x16_avx512vnni.c, quant_q5x16_avx512vnni.c) share; included by those files only
// (and by quant_q4kx16_avx512vnni.c for quad, the prefetch and TGT: its loops are its own).
// The groups differ in how a block's 16 rows of quads are made (bytes as they are, or nibbles
// with their fifth bits) and in the offset the first chain starts from; the loops over the
// blocks (the activation's quads broadcast once a block, the prefetch, the scales' float
// steps, one group or two) are the same, so each file gives its block16 and its layout's sizes
// and these loops do the rest. Per row the float steps are the reference's: (float)s * (d_w *
// d_a), added block by block. The groups lie in pairs, block by block (quant_x16.h).
#ifndef G3_QUANT_X16_AVX512VNNI_H
#define G3_QUANT_X16_AVX512VNNI_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "quant_dot.h"

// How far ahead the kernels prefetch, and into which cache; -D flags for experiments (a build
// with -DX16_PF=8192, or 4096 / 8192 / 16384 with _MM_HINT_T1 / T2, decoded 1B Q4_0 within the
// noise of this one, 2026-12-08: docs/quantization.md).
#ifndef X16_HINT
#define X16_HINT _MM_HINT_T0
#endif
#ifndef X16_PF
#define X16_PF 2048
#endif
#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c")))

TGT static inline __m512i quad(const int8_t *qs) {
    int32_t v;
    memcpy(&v, qs, 4);
    return _mm512_set1_epi32(v);
}

// The `lines` cache lines X16_PF ahead of a block's quants asked for now: the hardware prefetcher
// alone leaves one core well below the memory's speed (Q4_0's groups: ~14 against 18.7 GB/s).
// always_inline: gcc 12 finds a function of prefetches alone free of side effects ("const")
// and deletes its calls, so a plain inline one left the kernels with no prefetch at all.
TGT static inline __attribute__((always_inline)) void x16_prefetch(const uint8_t *q, int lines) {
#pragma GCC unroll 16
    for (int i = 0; i < lines; i++) _mm_prefetch((const char *)q + X16_PF + 64 * i, X16_HINT);
}

// A block's int32 sums of 16 rows: its quants q, the activation's eight quads broadcast b, and
// the first chain's start base (-offset x the activation block's sum).
typedef __m512i (*X16Block)(const uint8_t *q, const __m512i *b, __m512i base);

// A layout (quant_x16.h: pairs of groups, block by block): bytes of a group block's quants (its
// 16 f16 scales follow them), cache lines of a pair's block (both groups'), the offset.
typedef struct {
    int quant_bytes, lines, off;
} X16Layout;

// y[r] for r < nrows (<= 16) of one group (quant_q4x16.h's signature): its blocks are every
// other group block of its pair's stream, so the prefetch takes the lines of its half.
TGT static inline __attribute__((always_inline)) void x16_gemv(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a,
                                                               int nrows, X16Block block16, const X16Layout L) {
    const int stride = 2 * (L.quant_bytes + 32);
    const uint8_t *q = group;
    __m512 acc = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++, q += stride) {
        x16_prefetch(q, L.lines / 2 + 1);
        __m512i bq[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) bq[i] = quad(a[b].qs + 4 * i);
        const __m512i s = block16(q, bq, _mm512_set1_epi32(-L.off * a[b].sum));
        const __m512 d = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(q + L.quant_bytes))), _mm512_set1_ps(a[b].d));
        acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_cvtepi32_ps(s), d));
    }
    if (nrows >= 16) _mm512_storeu_ps(y, acc);
    else _mm512_mask_storeu_ps(y, (__mmask16)((1u << nrows) - 1), acc);
}

// y[0..31]: a pair's two groups (group: the first), each activation quad broadcast once for 32
// rows, the pair's bytes read as one stream; per row the same sums and float steps as x16_gemv.
TGT static inline __attribute__((always_inline)) void x16_gemv2(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a,
                                                                X16Block block16, const X16Layout L) {
    const int bb = L.quant_bytes + 32;  // a group block: quants, then 16 f16 scales
    const uint8_t *q = group;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++, q += 2 * bb) {
        x16_prefetch(q, L.lines);
        __m512i bq[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) bq[i] = quad(a[b].qs + 4 * i);
        const __m512i base = _mm512_set1_epi32(-L.off * a[b].sum);
        const __m512i s0 = block16(q, bq, base), s1 = block16(q + bb, bq, base);
        const __m512 ad = _mm512_set1_ps(a[b].d);
        const __m512 d0 = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(q + L.quant_bytes))), ad);
        const __m512 d1 = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(q + bb + L.quant_bytes))), ad);
        acc0 = _mm512_add_ps(acc0, _mm512_mul_ps(_mm512_cvtepi32_ps(s0), d0));
        acc1 = _mm512_add_ps(acc1, _mm512_mul_ps(_mm512_cvtepi32_ps(s1), d1));
    }
    _mm512_storeu_ps(y, acc0);
    _mm512_storeu_ps(y + 16, acc1);
}

#endif
