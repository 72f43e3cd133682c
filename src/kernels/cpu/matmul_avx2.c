// matmul_avx2.c: exact y = x . w^T with AVX2 + FMA + F16C, weights f32, bf16 or f16 used
// in place; the same tiling as matmul_avx512.c on 8-lane vectors. AVX2 has no 16-bit
// masked loads, so K tails (K % 8) are summed in scalar code and added after the
// horizontal reduction.
#include <immintrin.h>
#include <stdlib.h>

#include "kernels_cpu.h"
#include "../../tensor/dtype.h"

#define TGT __attribute__((target("avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT

enum { WF32, WBF16, WF16 };

INL __m256 load_w(const void *w, size_t i, int dt) {
    if (dt == WF32) return _mm256_loadu_ps((const float *)w + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
    if (dt == WF16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

INL float w_scalar(const void *w, size_t i, int dt) {
    if (dt == WF32) return ((const float *)w)[i];
    if (dt == WF16) return g3_f16_to_f32(((const uint16_t *)w)[i]);
    return g3_bf16_to_f32(((const uint16_t *)w)[i]);
}

INL __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

INL void tile(int RT, int RN, int dt, float *y, const float *x, const void *w, int K, int N, int t0, int n0) {
    __m256 acc[8][8];  // fixed size (not [RT][RN]) so that gcc keeps them in registers
#pragma GCC unroll 8
    for (int r = 0; r < RT; r++)
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) acc[r][j] = _mm256_setzero_ps();
    const float *xr = x + (size_t)t0 * K;
    size_t wr = (size_t)n0 * K;
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 xv[8];
#pragma GCC unroll 8
        for (int r = 0; r < RT; r++) xv[r] = _mm256_loadu_ps(xr + (size_t)r * K + k);
#pragma GCC unroll 8
        for (int j = 0; j < RN; j++) {
            __m256 wv = load_w(w, wr + (size_t)j * K + k, dt);
#pragma GCC unroll 8
            for (int r = 0; r < RT; r++) acc[r][j] = _mm256_fmadd_ps(xv[r], wv, acc[r][j]);
        }
    }
    int kt = k;
#pragma GCC unroll 8
    for (int r = 0; r < RT; r++) {
        float out[8];
        __m256 z = _mm256_setzero_ps();
        for (int j = 0; j < RN; j += 4) {
            __m128 s = hsum4(acc[r][j], j + 1 < RN ? acc[r][j + 1] : z, j + 2 < RN ? acc[r][j + 2] : z,
                             j + 3 < RN ? acc[r][j + 3] : z);
            _mm_storeu_ps(out + j, s);
        }
        for (int j = 0; j < RN; j++) {
            float s = out[j];
            for (int kk = kt; kk < K; kk++) s += xr[(size_t)r * K + kk] * w_scalar(w, wr + (size_t)j * K + kk, dt);
            y[(size_t)(t0 + r) * N + n0 + j] = s;
        }
    }
}

// ---- one row (decode, T = 1) ----
// Decode is a pure stream over the weights. On Zen 3 the tile above, which walks 8 weight
// rows side by side, streamed at 55-70% of the read bandwidth; one row at a time, as one
// sequential stream per thread, reaches ~95%. bf16 rows are widened with one unpack per 8
// values (unpacklo/hi against zero put each bf16 in the high half of a float lane), which
// takes the values of a 16-block in the order 0-3, 8-11 | 4-7, 12-15; x is permuted the same
// way once per call (xp), so the products pair up and no shuffle is needed per weight.

static _Thread_local float *xp_buf;
static _Thread_local long xp_cap;

// xp[T][K]: each row of x with each block of 16 in unpack order; tails (K % 16) stay in place.
static const float *permute_x(const float *x, int T, int K) {
    if ((long)T * K > xp_cap) {
        free(xp_buf);
        xp_buf = aligned_alloc(64, ((size_t)T * K * sizeof(float) + 63) & ~(size_t)63);
        xp_cap = xp_buf ? (long)T * K : 0;
        if (!xp_buf) return NULL;
    }
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * K;
        float *d = xp_buf + (size_t)t * K;
        int k = 0;
        for (; k + 16 <= K; k += 16)
            for (int i = 0; i < 4; i++) {
                d[k + i] = xr[k + i];
                d[k + 4 + i] = xr[k + 8 + i];
                d[k + 8 + i] = xr[k + 4 + i];
                d[k + 12 + i] = xr[k + 12 + i];
            }
        for (; k < K; k++) d[k] = xr[k];
    }
    return xp_buf;
}

INL float hsum(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    return _mm_cvtss_f32(_mm_add_ss(a, _mm_movehdup_ps(a)));
}

INL __m256 bf16_lo(__m256i v) { return _mm256_castsi256_ps(_mm256_unpacklo_epi16(_mm256_setzero_si256(), v)); }
INL __m256 bf16_hi(__m256i v) { return _mm256_castsi256_ps(_mm256_unpackhi_epi16(_mm256_setzero_si256(), v)); }

// y[n] for n0 <= n < n1, one weight row at a time. xp is the permuted x for bf16, x itself
// for f32 and f16 (whose loads keep the natural order).
INL void gemv_rows(int dt, float *y, const float *xp, const void *w, int K, int n0, int n1) {
    for (int n = n0; n < n1; n++) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        size_t row = (size_t)n * K;
        int k = 0;
        if (dt == WBF16) {
            const uint16_t *r = (const uint16_t *)w + row;
            for (; k + 32 <= K; k += 32) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(r + k)), u = _mm256_loadu_si256((const __m256i *)(r + k + 16));
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(xp + k), bf16_lo(v), a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(xp + k + 8), bf16_hi(v), a1);
                a2 = _mm256_fmadd_ps(_mm256_loadu_ps(xp + k + 16), bf16_lo(u), a2);
                a3 = _mm256_fmadd_ps(_mm256_loadu_ps(xp + k + 24), bf16_hi(u), a3);
            }
            for (; k + 16 <= K; k += 16) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(r + k));
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(xp + k), bf16_lo(v), a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(xp + k + 8), bf16_hi(v), a1);
            }
        } else {
            for (; k + 32 <= K; k += 32) {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(xp + k), load_w(w, row + k, dt), a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(xp + k + 8), load_w(w, row + k + 8, dt), a1);
                a2 = _mm256_fmadd_ps(_mm256_loadu_ps(xp + k + 16), load_w(w, row + k + 16, dt), a2);
                a3 = _mm256_fmadd_ps(_mm256_loadu_ps(xp + k + 24), load_w(w, row + k + 24, dt), a3);
            }
            for (; k + 8 <= K; k += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(xp + k), load_w(w, row + k, dt), a0);
        }
        float sum = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for (; k < K; k++) sum += xp[k] * w_scalar(w, row + k, dt);
        y[n] = sum;
    }
}

// A few rows (batched decode, T <= 8): still one weight row at a time, widened once per group
// of up to 4 x rows and multiplied into each, so the weights stream once from memory; the
// tiles below re-read each weight block per 3 rows and, measured on a 600 MB output head,
// streamed 25-35% slower at T = 2..4. Only while 4 rows of x fit in L1 (K <= 1536): for the
// long rows of down_proj the tiles win.
INL void gemv_group(int G, float *y, const float *xp, const uint16_t *r, int K, int N, int n) {
    __m256 a[4][2];
#pragma GCC unroll 4
    for (int t = 0; t < G; t++) a[t][0] = a[t][1] = _mm256_setzero_ps();
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(r + k));
        __m256 lo = bf16_lo(v), hi = bf16_hi(v);
#pragma GCC unroll 4
        for (int t = 0; t < G; t++) {
            a[t][0] = _mm256_fmadd_ps(_mm256_loadu_ps(xp + (size_t)t * K + k), lo, a[t][0]);
            a[t][1] = _mm256_fmadd_ps(_mm256_loadu_ps(xp + (size_t)t * K + k + 8), hi, a[t][1]);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < G; t++) {
        float sum = hsum(_mm256_add_ps(a[t][0], a[t][1]));
        for (int kk = k; kk < K; kk++) sum += xp[(size_t)t * K + kk] * g3_bf16_to_f32(r[kk]);
        y[(size_t)t * N + n] = sum;
    }
}

INL void gemv_rows_multi(float *y, const float *xp, const uint16_t *w, int T, int K, int N, int n0, int n1) {
    for (int n = n0; n < n1; n++) {
        const uint16_t *r = w + (size_t)n * K;
        int t = 0;
        for (; t + 4 <= T; t += 4) gemv_group(4, y + (size_t)t * N, xp + (size_t)t * K, r, K, N, n);
        switch (T - t) {
        case 3: gemv_group(3, y + (size_t)t * N, xp + (size_t)t * K, r, K, N, n); break;
        case 2: gemv_group(2, y + (size_t)t * N, xp + (size_t)t * K, r, K, N, n); break;
        case 1: gemv_group(1, y + (size_t)t * N, xp + (size_t)t * K, r, K, N, n); break;
        }
    }
}

#define ROWBLOCK(RT, RN, dt)                                                              \
    do {                                                                                  \
        int n = nb;                                                                       \
        for (; n + RN <= ne; n += RN) tile(RT, RN, dt, y, xf, w, K, N, t, n);             \
        for (; n < ne; n++) tile(RT, 1, dt, y, xf, w, K, N, t, n);                        \
    } while (0)

INL void mm_range(int dt, float *y, const void *x, const void *w, int T, int K, int N, int n0, int n1) {
    const float *xf = x;
    if (T == 1) {
        const float *xp = dt == WBF16 ? permute_x(xf, 1, K) : xf;
        if (xp) {
            gemv_rows(dt, y, xp, w, K, n0, n1);
            return;
        }
    }
    if (dt == WBF16 && T <= 8 && K <= 1536) {
        const float *xp = permute_x(xf, T, K);
        if (xp) {
            gemv_rows_multi(y, xp, w, T, K, N, n0, n1);
            return;
        }
    }
    int esize = dt == WF32 ? 4 : 2;
    int nbk = (int)((256 * 1024) / ((size_t)K * esize));
    nbk = nbk < 8 ? 8 : nbk & ~7;
    for (int nb = n0; nb < n1; nb += nbk) {
        int ne = nb + nbk < n1 ? nb + nbk : n1;
        int t = 0;
        if (T == 1) {
            ROWBLOCK(1, 8, dt);
            continue;
        }
        for (; t + 3 <= T; t += 3) ROWBLOCK(3, 4, dt);
        switch (T - t) {
        case 2: ROWBLOCK(2, 4, dt); break;
        case 1: ROWBLOCK(1, 4, dt); break;
        }
    }
}

TGT static void mm_f32(float *y, const void *x, const void *w, int T, int K, int N, int n0, int n1) { mm_range(WF32, y, x, w, T, K, N, n0, n1); }
TGT static void mm_bf16(float *y, const void *x, const void *w, int T, int K, int N, int n0, int n1) { mm_range(WBF16, y, x, w, T, K, N, n0, n1); }
TGT static void mm_f16(float *y, const void *x, const void *w, int T, int K, int N, int n0, int n1) { mm_range(WF16, y, x, w, T, K, N, n0, n1); }

void g3_cpu_kernels_avx2(G3CpuKernels *k) {
    k->mm_f32 = mm_f32;
    k->mm_bf16 = mm_bf16;
    k->mm_f16 = mm_f16;
    g3_cpu_kernels_avx2_sgemm(k);
}
