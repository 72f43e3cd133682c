// quant_gemm_avx2.c: quant_gemm.h's panel kernel with AVX2. The panel's 16 rows go as two
// passes of 8 (one 256-bit register per quad); per quad pair, vpmaddubsw of the weights and the
// row's broadcast bytes gives int16 pair sums (two quads added: |4 x 63 x 127| < 2^15, for the
// types whose unsigned bytes stay below 64), vpmaddwd by ones the eight rows' int32 sums.
// Q8_0's bytes (its signed values + 128) go up to 255, and 2 x 255 x 127 would saturate the
// int16 pair sums: its kernel takes the signed value w = q - 128 apart into |w| (<= 128) and
// its sign, moved onto the activation (vpsignb), so that each pair sum is at most
// 2 x 128 x 127 < 2^15, and adds the pairs to int32 one quad at a time.
#include <immintrin.h>

#include <string.h>

#include "quant_gemm.h"

#define TGT __attribute__((target("avx2,fma")))

enum { RT = 4 };  // activation rows per tile (16 ymm registers: 8 weight quads, 4 accumulators, temps)

TGT static inline __m256i quad(const G3BlockQ8G *a, int j) {
    int32_t v;
    memcpy(&v, a->qs + 4 * j, 4);
    return _mm256_set1_epi32(v);
}

// the int32 sums of quads j0..j0+3 for the 8 rows, onto s
TGT static inline __m256i sum4(__m256i s, const __m256i *w, const G3BlockQ8G *a, int j0) {
    const __m256i ones = _mm256_set1_epi16(1);
#pragma GCC unroll 8
    for (int j = j0; j < j0 + 4; j += 2) {
        __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(w[j], quad(a, j)), _mm256_maddubs_epi16(w[j + 1], quad(a, j + 1)));
        s = _mm256_add_epi32(s, _mm256_madd_epi16(p, ones));
    }
    return s;
}

// the rt rows' sums of panel rows h*8 .. into y (the columns up to ncols)
TGT static inline __attribute__((always_inline)) void store(float *y, int64_t ldy, const __m256 *acc, const int rt, int h, int ncols) {
    const int nc = ncols - 8 * h;
#pragma GCC unroll 8
    for (int t = 0; t < rt; t++) {
        if (nc >= 8) {
            _mm256_storeu_ps(y + t * ldy + 8 * h, acc[t]);
        } else {
            float tmp[8];
            _mm256_storeu_ps(tmp, acc[t]);
            memcpy(y + t * ldy + 8 * h, tmp, (size_t)nc * sizeof *tmp);
        }
    }
}

// rows h*8 .. h*8+7 of the panel against rt activation rows
TGT static inline __attribute__((always_inline)) void tile(float *y, int64_t ldy, const G3QPanelBlock *p, int nb,
                                                           const G3BlockQ8G *a, const int rt, int h, int ncols, int off,
                                                           const int halves, const int bias) {
    __m256 acc[RT];
#pragma GCC unroll 8
    for (int t = 0; t < rt; t++) acc[t] = _mm256_setzero_ps();
    for (int i = 0; i < nb; i++) {
        const G3QPanelBlock *pb = p + i;
        __m256i w[8];
    #pragma GCC unroll 8
        for (int j = 0; j < 8; j++) w[j] = _mm256_loadu_si256((const __m256i *)pb->q[j][8 * h]);
        const __m256 sc0 = _mm256_loadu_ps(pb->scale[0] + 8 * h);
    #pragma GCC unroll 8
        for (int t = 0; t < rt; t++) {
            const G3BlockQ8G *ai = a + (int64_t)t * nb + i;
            __m256 v;
            if (halves) {
                __m256i s0 = sum4(_mm256_set1_epi32(-off * ai->s[0]), w, ai, 0), s1 = sum4(_mm256_set1_epi32(-off * ai->s[1]), w, ai, 4);
                v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1), _mm256_loadu_ps(pb->scale[1] + 8 * h), _mm256_mul_ps(_mm256_cvtepi32_ps(s0), sc0));
            } else {
                const int sum = ai->s[0] + ai->s[1];
                __m256i s = sum4(sum4(_mm256_set1_epi32(-off * sum), w, ai, 0), w, ai, 4);
                v = _mm256_mul_ps(_mm256_cvtepi32_ps(s), sc0);
                if (bias) v = _mm256_fmadd_ps(_mm256_loadu_ps(pb->bias + 8 * h), _mm256_set1_ps((float)sum), v);
            }
            acc[t] = _mm256_fmadd_ps(v, _mm256_set1_ps(ai->d), acc[t]);
        }
    }
    store(y, ldy, acc, rt, h, ncols);
}

#define PANEL(NAME, HALVES, BIAS)                                                                                        \
    TGT static void NAME(float *y, int64_t ldy, const G3QPanelBlock *p, int nb, const G3BlockQ8G *a, int R, int ncols, \
                         int off) {                                                                                      \
        for (int h = 0; h < 2 && 8 * h < ncols; h++) {                                                                   \
            int r = 0;                                                                                                   \
            for (; r + RT <= R; r += RT) tile(y + r * ldy, ldy, p, nb, a + (int64_t)r * nb, RT, h, ncols, off, HALVES, BIAS); \
            switch (R - r) {                                                                                             \
            case 3: tile(y + r * ldy, ldy, p, nb, a + (int64_t)r * nb, 3, h, ncols, off, HALVES, BIAS); break;           \
            case 2: tile(y + r * ldy, ldy, p, nb, a + (int64_t)r * nb, 2, h, ncols, off, HALVES, BIAS); break;           \
            case 1: tile(y + r * ldy, ldy, p, nb, a + (int64_t)r * nb, 1, h, ncols, off, HALVES, BIAS); break;           \
            default: break;                                                                                              \
            }                                                                                                            \
        }                                                                                                                \
    }
PANEL(panel_off, 0, 0)
PANEL(panel_bias, 0, 1)
PANEL(panel_halves, 1, 0)

// Q8_0: rows h*8 .. h*8+7 of the panel against rt activation rows; the integer sum is
// sum (q - 128) a, the reference's sum(q a) - 128 sum(a), exactly.
TGT static inline __attribute__((always_inline)) void tile_q8(float *y, int64_t ldy, const G3QPanelBlock *p, int nb,
                                                              const G3BlockQ8G *a, const int rt, int h, int ncols) {
    const __m256i ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8((char)0x80);
    __m256 acc[RT];
#pragma GCC unroll 8
    for (int t = 0; t < rt; t++) acc[t] = _mm256_setzero_ps();
    for (int i = 0; i < nb; i++) {
        const G3QPanelBlock *pb = p + i;
        __m256i s[RT];
    #pragma GCC unroll 8
        for (int t = 0; t < rt; t++) s[t] = _mm256_setzero_si256();
    #pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const __m256i w = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)pb->q[j][8 * h]), flip);  // q - 128
            const __m256i wa = _mm256_abs_epi8(w);  // |w| <= 128 (as an unsigned byte)
        #pragma GCC unroll 8
            for (int t = 0; t < rt; t++) {
                const __m256i as = _mm256_sign_epi8(quad(a + (int64_t)t * nb + i, j), w);
                s[t] = _mm256_add_epi32(s[t], _mm256_madd_epi16(_mm256_maddubs_epi16(wa, as), ones));
            }
        }
        const __m256 sc0 = _mm256_loadu_ps(pb->scale[0] + 8 * h);
    #pragma GCC unroll 8
        for (int t = 0; t < rt; t++)
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s[t]), sc0), _mm256_set1_ps(a[(int64_t)t * nb + i].d), acc[t]);
    }
    store(y, ldy, acc, rt, h, ncols);
}

TGT static void panel_q8(float *y, int64_t ldy, const G3QPanelBlock *p, int nb, const G3BlockQ8G *a, int R, int ncols) {
    for (int h = 0; h < 2 && 8 * h < ncols; h++) {
        int r = 0;
        for (; r + RT <= R; r += RT) tile_q8(y + r * ldy, ldy, p, nb, a + (int64_t)r * nb, RT, h, ncols);
        switch (R - r) {
        case 3: tile_q8(y + r * ldy, ldy, p, nb, a + (int64_t)r * nb, 3, h, ncols); break;
        case 2: tile_q8(y + r * ldy, ldy, p, nb, a + (int64_t)r * nb, 2, h, ncols); break;
        case 1: tile_q8(y + r * ldy, ldy, p, nb, a + (int64_t)r * nb, 1, h, ncols); break;
        default: break;
        }
    }
}

void g3_qgemm_panel_avx2_q8(float *y, int64_t ldy, const G3QPanelBlock *p, int nb, const G3BlockQ8G *a, int R, int ncols,
                            const G3QGemmKind *kind) {
    (void)kind;  // Q8_0's: off 128, one scale, no bias
    panel_q8(y, ldy, p, nb, a, R, ncols);
}

void g3_qgemm_panel_avx2(float *y, int64_t ldy, const G3QPanelBlock *p, int nb, const G3BlockQ8G *a, int R, int ncols,
                         const G3QGemmKind *kind) {
    if (kind->halves) panel_halves(y, ldy, p, nb, a, R, ncols, kind->off);
    else if (kind->bias) panel_bias(y, ldy, p, nb, a, R, ncols, kind->off);
    else panel_off(y, ldy, p, nb, a, R, ncols, kind->off);
}
