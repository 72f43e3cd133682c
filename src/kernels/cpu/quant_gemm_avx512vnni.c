// quant_gemm_avx512vnni.c: quant_gemm.h's panel kernel with AVX512-VNNI. Per panel block the
// eight quad registers (16 rows x 4 bytes each) are loaded once and serve a tile of up to 8
// activation rows: each row's eight 4-byte groups broadcast against them (vpdpbusd, the
// broadcast folded into its memory operand) sum the block for all 16 rows in int32, starting
// from -off * sum(a); then one convert, the scale, and a multiply-add by the row's scale into
// its accumulator of 16 outputs.
#include <immintrin.h>

#include <string.h>

#include "quant_gemm.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma")))

enum { RT = 8 };  // activation rows per tile

TGT static inline __m512i quad(const G3BlockQ8G *a, int j) {
    int32_t v;
    memcpy(&v, a->qs + 4 * j, 4);
    return _mm512_set1_epi32(v);
}

TGT static inline __attribute__((always_inline)) void tile(float *y, int64_t ldy, const G3QPanelBlock *p, int nb,
                                                           const G3BlockQ8G *a, const int rt, int ncols, const int off,
                                                           const int halves, const int bias) {
    __m512 acc[RT];
#pragma GCC unroll 8
    for (int t = 0; t < rt; t++) acc[t] = _mm512_setzero_ps();
    for (int i = 0; i < nb; i++) {
        const G3QPanelBlock *pb = p + i;
        __m512i w[8];
    #pragma GCC unroll 8
        for (int j = 0; j < 8; j++) w[j] = _mm512_loadu_si512(pb->q[j]);
        const __m512 sc0 = _mm512_loadu_ps(pb->scale[0]);
        const __m512 sc1 = halves ? _mm512_loadu_ps(pb->scale[1]) : sc0, bi = bias ? _mm512_loadu_ps(pb->bias) : sc0;
    #pragma GCC unroll 8
        for (int t = 0; t < rt; t++) {
            const G3BlockQ8G *ai = a + (int64_t)t * nb + i;
            __m512 v;
            if (halves) {
                __m512i s0 = _mm512_set1_epi32(-off * ai->s[0]), s1 = _mm512_set1_epi32(-off * ai->s[1]);
            #pragma GCC unroll 8
                for (int j = 0; j < 4; j++) s0 = _mm512_dpbusd_epi32(s0, w[j], quad(ai, j));
            #pragma GCC unroll 8
                for (int j = 4; j < 8; j++) s1 = _mm512_dpbusd_epi32(s1, w[j], quad(ai, j));
                v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1), sc1, _mm512_mul_ps(_mm512_cvtepi32_ps(s0), sc0));
            } else {
                const int sum = ai->s[0] + ai->s[1];
                __m512i s0 = _mm512_set1_epi32(-off * sum), s1 = _mm512_setzero_si512();  // two chains
            #pragma GCC unroll 8
                for (int j = 0; j < 8; j += 2) {
                    s0 = _mm512_dpbusd_epi32(s0, w[j], quad(ai, j));
                    s1 = _mm512_dpbusd_epi32(s1, w[j + 1], quad(ai, j + 1));
                }
                v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), sc0);
                if (bias) v = _mm512_fmadd_ps(bi, _mm512_set1_ps((float)sum), v);
            }
            acc[t] = _mm512_fmadd_ps(v, _mm512_set1_ps(ai->d), acc[t]);
        }
    }
    const __mmask16 m = ncols >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << ncols) - 1);
#pragma GCC unroll 8
    for (int t = 0; t < rt; t++) _mm512_mask_storeu_ps(y + t * ldy, m, acc[t]);
}

// one variant per kind (offset only, mins, Q6_K's halves); full tiles, then one of the rest
#define PANEL(NAME, HALVES, BIAS)                                                                                        \
    TGT static void NAME(float *y, int64_t ldy, const G3QPanelBlock *p, int nb, const G3BlockQ8G *a, int R, int ncols, \
                         int off) {                                                                                      \
        int r = 0;                                                                                                       \
        for (; r + RT <= R; r += RT) tile(y + r * ldy, ldy, p, nb, a + (int64_t)r * nb, RT, ncols, off, HALVES, BIAS);  \
        switch (R - r) {                                                                                                 \
        case 7: tile(y + r * ldy, ldy, p, nb, a + (int64_t)r * nb, 7, ncols, off, HALVES, BIAS); break;                  \
        case 6: tile(y + r * ldy, ldy, p, nb, a + (int64_t)r * nb, 6, ncols, off, HALVES, BIAS); break;                  \
        case 5: tile(y + r * ldy, ldy, p, nb, a + (int64_t)r * nb, 5, ncols, off, HALVES, BIAS); break;                  \
        case 4: tile(y + r * ldy, ldy, p, nb, a + (int64_t)r * nb, 4, ncols, off, HALVES, BIAS); break;                  \
        case 3: tile(y + r * ldy, ldy, p, nb, a + (int64_t)r * nb, 3, ncols, off, HALVES, BIAS); break;                  \
        case 2: tile(y + r * ldy, ldy, p, nb, a + (int64_t)r * nb, 2, ncols, off, HALVES, BIAS); break;                  \
        case 1: tile(y + r * ldy, ldy, p, nb, a + (int64_t)r * nb, 1, ncols, off, HALVES, BIAS); break;                  \
        default: break;                                                                                                  \
        }                                                                                                                \
    }
PANEL(panel_off, 0, 0)
PANEL(panel_bias, 0, 1)
PANEL(panel_halves, 1, 0)

void g3_qgemm_panel_avx512vnni(float *y, int64_t ldy, const G3QPanelBlock *p, int nb, const G3BlockQ8G *a, int R, int ncols,
                               const G3QGemmKind *kind) {
    if (kind->halves) panel_halves(y, ldy, p, nb, a, R, ncols, kind->off);
    else if (kind->bias) panel_bias(y, ldy, p, nb, a, R, ncols, kind->off);
    else panel_off(y, ldy, p, nb, a, R, ncols, kind->off);
}
