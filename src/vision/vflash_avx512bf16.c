// vflash_avx512bf16.c: vflash.h's kernels with AVX512-BF16: the 8 x 32 tile on vdpbf16ps (16
// accumulators, the 32 lanes the queries), the softmax chunk down the lanes (maxima, sums and
// 2^x on whole registers), and the packers (vcvtne2ps2bf16 rounds to nearest even, as the
// references' g3_f32_to_bf16 does for normal numbers; denormals become zero).
#include <immintrin.h>
#include <math.h>

#include "../kernels/cpu/transpose_avx2.h"
#include "vflash.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))

TGT static inline __mmask16 first(int n) { return n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

// 16 pair words (x0[i], x1[i]), i < 16: both rounded into one vector (x0's words low, x1's
// high) and the words interleaved.
TGT static inline __m512i pairs16(__m512 x0, __m512 x1) {
    const __m512i inter = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19,
                                           3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(inter, (__m512i)_mm512_cvtne2ps_pbh(x1, x0));
}

// Eight rows at a time, 16 values of each: rounded into 8 pair words (in a row, consecutive
// bf16 are the pairs), the 8 x 8 words transposed in registers, 8 words stored per pair.
TGT static void pack_rows(uint32_t *p, int w, const float *x, int64_t ldx, int n, int hd) {
    const int kd = (hd + 1) / 2;
    for (int g = 0; g < w; g += 8)
        for (int k = 0; k < hd; k += 16) {
            const __mmask16 m = first(hd - k);
            __m256 r[8], t[8];
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++)
                r[i] = g + i < n ? _mm256_castsi256_ps((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x + (int64_t)(g + i) * ldx + k)))
                                 : _mm256_setzero_ps();
            g3_transpose_8x8_reg(t, r);
            const int nw = kd - k / 2 < 8 ? kd - k / 2 : 8;
            for (int i = 0; i < nw; i++) _mm256_storeu_ps((float *)(p + (size_t)(k / 2 + i) * w + g), t[i]);
        }
}

// A pair of keys' rows at a time: 16 dims of each into 16 pair words, 8 to each of two panels.
TGT static void pack_cols8(uint32_t *p, size_t pstride, const float *v, int64_t ldv, int nvalid, int nk, int hd, int hdp) {
    for (int k2 = 0; k2 < nk / 2; k2++) {
        const int j = 2 * k2;
        const float *r0 = v + (int64_t)j * ldv, *r1 = r0 + ldv;
        for (int d = 0; d < hdp; d += 16) {
            const __mmask16 m = first(hd - d);
            const __m512 x0 = j < nvalid ? _mm512_maskz_loadu_ps(m, r0 + d) : _mm512_setzero_ps();
            const __m512 x1 = j + 1 < nvalid ? _mm512_maskz_loadu_ps(m, r1 + d) : _mm512_setzero_ps();
            const __m512i wv = pairs16(x0, x1);
            uint32_t *dst = p + (size_t)(d / G3_VF_KR) * pstride + (size_t)k2 * G3_VF_KR;
            _mm256_storeu_si256((__m256i *)dst, _mm512_castsi512_si256(wv));
            if (d + 8 < hdp) _mm256_storeu_si256((__m256i *)(dst + pstride), _mm512_extracti64x4_epi64(wv, 1));
        }
    }
}

// The 8 x 32 tile's sums over kd pair steps, in acc[row][half].
TGT static inline __attribute__((always_inline)) void tile_sums(__m512 acc[G3_VF_KR][2], const uint32_t *a, const uint32_t *b, int kd) {
#pragma GCC unroll 8
    for (int r = 0; r < G3_VF_KR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int k = 0; k < kd; k++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + (size_t)k * G3_VF_LANES);
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + (size_t)k * G3_VF_LANES + 16);
#pragma GCC unroll 8
        for (int r = 0; r < G3_VF_KR; r++) {
            const __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[(size_t)k * G3_VF_KR + r]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
        }
    }
}

TGT static void tile(float *c, int64_t ldc, const uint32_t *a, const uint32_t *b, int kd, const float *alpha) {
    __m512 acc[G3_VF_KR][2];
    tile_sums(acc, a, b, kd);
    if (alpha) {
        const __m512 a0 = _mm512_loadu_ps(alpha), a1 = _mm512_loadu_ps(alpha + 16);
#pragma GCC unroll 8
        for (int r = 0; r < G3_VF_KR; r++) {
            float *cr = c + (int64_t)r * ldc;
            _mm512_storeu_ps(cr, _mm512_fmadd_ps(a0, _mm512_loadu_ps(cr), acc[r][0]));
            _mm512_storeu_ps(cr + 16, _mm512_fmadd_ps(a1, _mm512_loadu_ps(cr + 16), acc[r][1]));
        }
    } else {
#pragma GCC unroll 8
        for (int r = 0; r < G3_VF_KR; r++) {
            _mm512_storeu_ps(c + (int64_t)r * ldc, acc[r][0]);
            _mm512_storeu_ps(c + (int64_t)r * ldc + 16, acc[r][1]);
        }
    }
}

// Each panel's tile stored and folded into the lanes' maxima while in registers (the rows of
// the last panel past valid left out).
TGT static void scores(float *s, const uint32_t *k, const uint32_t *q, int kd, int rows, int valid, float *smax) {
    __m512 x0 = _mm512_set1_ps(-INFINITY), x1 = x0;
    for (int r0 = 0; r0 < rows; r0 += G3_VF_KR) {
        __m512 acc[G3_VF_KR][2];
        tile_sums(acc, k + (size_t)r0 * kd, q, kd);
        float *sr = s + (size_t)r0 * G3_VF_LANES;
#pragma GCC unroll 8
        for (int r = 0; r < G3_VF_KR; r++) {
            _mm512_storeu_ps(sr + (size_t)r * G3_VF_LANES, acc[r][0]);
            _mm512_storeu_ps(sr + (size_t)r * G3_VF_LANES + 16, acc[r][1]);
        }
        if (r0 + G3_VF_KR <= valid) {
#pragma GCC unroll 8
            for (int r = 0; r < G3_VF_KR; r++) x0 = _mm512_max_ps(x0, acc[r][0]), x1 = _mm512_max_ps(x1, acc[r][1]);
        } else {
            for (int r = 0; r < valid - r0; r++) x0 = _mm512_max_ps(x0, acc[r][0]), x1 = _mm512_max_ps(x1, acc[r][1]);
        }
    }
    _mm512_storeu_ps(smax, x0);
    _mm512_storeu_ps(smax + 16, x1);
}

// 2^t for t <= 0 (finite): t = n + f with |f| <= 1/2, 2^f = e^(f ln 2) by its Taylor series
// to f^5 (relative error < 3e-6, a thousandth of bf16's rounding), times 2^n by scalef (0 far
// below 2^-149).
TGT static inline __m512 exp2_neg(__m512 t) {
    const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(1.3333558146428443e-3f);                  // ln2^5 / 120
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618129107628477e-3f));   // ln2^4 / 24
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550410866482158e-2f));   // ln2^3 / 6
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.2402265069591007f));     // ln2^2 / 2
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.6931471805599453f));     // ln2
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

TGT static void softmax(uint32_t *p, const float *s, int rows, int valid, float c, const float *smax, float *m, float *l, float *alpha) {
    const __m512 vc = _mm512_set1_ps(c), m0 = _mm512_loadu_ps(m), m1 = _mm512_loadu_ps(m + 16);
    const __m512 x0 = _mm512_max_ps(m0, _mm512_mul_ps(vc, _mm512_loadu_ps(smax))), x1 = _mm512_max_ps(m1, _mm512_mul_ps(vc, _mm512_loadu_ps(smax + 16)));
    // m = -inf before the first chunk: its alpha (m - mx = -inf) clamped to 2^-127 (times zeros)
    const __m512 lo = _mm512_set1_ps(-127.0f);
    const __m512 a0 = exp2_neg(_mm512_max_ps(_mm512_sub_ps(m0, x0), lo)), a1 = exp2_neg(_mm512_max_ps(_mm512_sub_ps(m1, x1), lo));
    const __m512 n0 = _mm512_sub_ps(_mm512_setzero_ps(), x0), n1 = _mm512_sub_ps(_mm512_setzero_ps(), x1);
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    int r = 0;
    for (; r + 2 <= valid; r += 2) {
        const float *sr = s + (size_t)r * G3_VF_LANES;
        const __m512 e00 = exp2_neg(_mm512_fmadd_ps(vc, _mm512_loadu_ps(sr), n0)), e01 = exp2_neg(_mm512_fmadd_ps(vc, _mm512_loadu_ps(sr + 16), n1));
        const __m512 e10 = exp2_neg(_mm512_fmadd_ps(vc, _mm512_loadu_ps(sr + 32), n0)), e11 = exp2_neg(_mm512_fmadd_ps(vc, _mm512_loadu_ps(sr + 48), n1));
        s0 = _mm512_add_ps(s0, _mm512_add_ps(e00, e10));
        s1 = _mm512_add_ps(s1, _mm512_add_ps(e01, e11));
        _mm512_storeu_si512(p + (size_t)r / 2 * G3_VF_LANES, pairs16(e00, e10));
        _mm512_storeu_si512(p + (size_t)r / 2 * G3_VF_LANES + 16, pairs16(e01, e11));
    }
    for (; r < rows; r += 2) {  // the padding keys' rows (and an odd valid's last key)
        __m512 e00 = _mm512_setzero_ps(), e01 = e00;
        if (r < valid) {
            e00 = exp2_neg(_mm512_fmadd_ps(vc, _mm512_loadu_ps(s + (size_t)r * G3_VF_LANES), n0));
            e01 = exp2_neg(_mm512_fmadd_ps(vc, _mm512_loadu_ps(s + (size_t)r * G3_VF_LANES + 16), n1));
        }
        s0 = _mm512_add_ps(s0, e00);
        s1 = _mm512_add_ps(s1, e01);
        _mm512_storeu_si512(p + (size_t)r / 2 * G3_VF_LANES, pairs16(e00, _mm512_setzero_ps()));
        _mm512_storeu_si512(p + (size_t)r / 2 * G3_VF_LANES + 16, pairs16(e01, _mm512_setzero_ps()));
    }
    _mm512_storeu_ps(alpha, a0);
    _mm512_storeu_ps(alpha + 16, a1);
    _mm512_storeu_ps(l, _mm512_fmadd_ps(a0, _mm512_loadu_ps(l), s0));
    _mm512_storeu_ps(l + 16, _mm512_fmadd_ps(a1, _mm512_loadu_ps(l + 16), s1));
    _mm512_storeu_ps(m, x0);
    _mm512_storeu_ps(m + 16, x1);
}

// 8 dims x 8 lanes at a time transposed in registers, each lane (now a row) times 1 / l.
TGT static void unpack(float *out, int64_t ldo, const float *o, const float *l, int nq, int hd) {
    float inv[G3_VF_LANES];
    for (int j = 0; j < nq; j++) inv[j] = 1.0f / l[j];
    for (int d = 0; d < hd; d += 8) {
        const __mmask8 dm = hd - d >= 8 ? 0xff : (__mmask8)((1u << (hd - d)) - 1);
        for (int j0 = 0; j0 < nq; j0 += 8) {
            __m256 r[8], t[8];
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(o + (size_t)(d + i) * G3_VF_LANES + j0);
            g3_transpose_8x8_reg(t, r);
            const int nj = nq - j0 < 8 ? nq - j0 : 8;
            for (int i = 0; i < nj; i++)
                _mm256_mask_storeu_ps(out + (int64_t)(j0 + i) * ldo + d, dm, _mm256_mul_ps(t[i], _mm256_set1_ps(inv[j0 + i])));
        }
    }
}

static const G3VFlashKernels kernels = {pack_rows, pack_cols8, tile, scores, softmax, unpack};

const G3VFlashKernels *g3_vflash_avx512bf16(void) { return &kernels; }
