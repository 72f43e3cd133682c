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
static _Thread_local int xp_cap;

// xp: x with each block of 16 in unpack order; tails (K % 16) stay in place.
static const float *permute_x(const float *x, int K) {
    if (K > xp_cap) {
        free(xp_buf);
        xp_buf = aligned_alloc(64, ((size_t)K * sizeof(float) + 63) & ~(size_t)63);
        xp_cap = xp_buf ? K : 0;
        if (!xp_buf) return NULL;
    }
    int k = 0;
    for (; k + 16 <= K; k += 16)
        for (int i = 0; i < 4; i++) {
            xp_buf[k + i] = x[k + i];
            xp_buf[k + 4 + i] = x[k + 8 + i];
            xp_buf[k + 8 + i] = x[k + 4 + i];
            xp_buf[k + 12 + i] = x[k + 12 + i];
        }
    for (; k < K; k++) xp_buf[k] = x[k];
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

// Several rows (T >= 3, bf16/f16 weights): blocks of KC columns of NB weight rows are widened
// to f32 once, into a per-thread scratch that stays in L2, and f32 tiles run over them.
// Widening inside the tiles cost two vector ALU ops per 8 weights for every 3 rows, on the
// pipes the FMAs need; and cutting K into chunks keeps the 3 x rows of a tile in L1 for long
// rows (K = 6912 in down_proj), where otherwise x and w both streamed from L2.
enum { KC2 = 1024, NB2 = 48, LDW = KC2 + 16 };  // 48 x 1040 f32 = 195 KB of widened weights (rows padded: no 4 KB aliasing)

static _Thread_local float *wf_buf;  // [NB2][LDW]

// y[t0+r][n] (+)= x[t0+r][0:kw] . wf[n][0:kw] over an RT x RN tile; wf rows are LDW apart,
// x rows ldx, y rows ldy. acc: add to y (K chunks after the first).
INL void tile_f32(int RT, int RN, float *y, int ldy, const float *x, int ldx, const float *wf, int kw, int acc) {
    __m256 a[3][4];
#pragma GCC unroll 3
    for (int r = 0; r < RT; r++)
#pragma GCC unroll 4
        for (int j = 0; j < RN; j++) a[r][j] = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= kw; k += 8) {
        __m256 xv[3];
#pragma GCC unroll 3
        for (int r = 0; r < RT; r++) xv[r] = _mm256_loadu_ps(x + (size_t)r * ldx + k);
#pragma GCC unroll 4
        for (int j = 0; j < RN; j++) {
            __m256 wv = _mm256_loadu_ps(wf + (size_t)j * LDW + k);
#pragma GCC unroll 3
            for (int r = 0; r < RT; r++) a[r][j] = _mm256_fmadd_ps(xv[r], wv, a[r][j]);
        }
    }
#pragma GCC unroll 3
    for (int r = 0; r < RT; r++) {
        float out[4];
        __m256 z = _mm256_setzero_ps();
        _mm_storeu_ps(out, hsum4(a[r][0], RN > 1 ? a[r][1] : z, RN > 2 ? a[r][2] : z, RN > 3 ? a[r][3] : z));
        for (int j = 0; j < RN; j++) {
            float sum = out[j];
            for (int kk = k; kk < kw; kk++) sum += x[(size_t)r * ldx + kk] * wf[(size_t)j * LDW + kk];
            y[(size_t)r * ldy + j] = acc ? y[(size_t)r * ldy + j] + sum : sum;
        }
    }
}

// Returns 0, or -1 if the scratch cannot be had (the caller then uses the plain tiles).
TGT static int mm_widened(int dt, float *y, const float *x, const void *w, int T, int K, int N, int n0, int n1) {
    if (!wf_buf && !(wf_buf = aligned_alloc(64, (size_t)NB2 * LDW * sizeof(float)))) return -1;
    for (int nb = n0; nb < n1; nb += NB2) {
        int m = n1 - nb < NB2 ? n1 - nb : NB2;
        for (int k0 = 0; k0 < K; k0 += KC2) {
            int kw = K - k0 < KC2 ? K - k0 : KC2;
            for (int j = 0; j < m; j++) {
                size_t src = (size_t)(nb + j) * K + k0;
                float *d = wf_buf + (size_t)j * LDW;
                int i = 0;
                for (; i + 8 <= kw; i += 8) _mm256_storeu_ps(d + i, load_w(w, src + i, dt));
                for (; i < kw; i++) d[i] = w_scalar(w, src + i, dt);
            }
            int t = 0;
            for (; t + 3 <= T; t += 3) {
                int n = 0;
                for (; n + 4 <= m; n += 4) tile_f32(3, 4, y + (size_t)t * N + nb + n, N, x + (size_t)t * K + k0, K, wf_buf + (size_t)n * LDW, kw, k0 > 0);
                for (; n < m; n++) tile_f32(3, 1, y + (size_t)t * N + nb + n, N, x + (size_t)t * K + k0, K, wf_buf + (size_t)n * LDW, kw, k0 > 0);
            }
            for (; t < T; t++) {
                int n = 0;
                for (; n + 4 <= m; n += 4) tile_f32(1, 4, y + (size_t)t * N + nb + n, N, x + (size_t)t * K + k0, K, wf_buf + (size_t)n * LDW, kw, k0 > 0);
                for (; n < m; n++) tile_f32(1, 1, y + (size_t)t * N + nb + n, N, x + (size_t)t * K + k0, K, wf_buf + (size_t)n * LDW, kw, k0 > 0);
            }
        }
    }
    return 0;
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
        const float *xp = dt == WBF16 ? permute_x(xf, K) : xf;
        if (xp) {
            gemv_rows(dt, y, xp, w, K, n0, n1);
            return;
        }
    }
    int esize = dt == WF32 ? 4 : 2;
    int nbk = (int)((256 * 1024) / ((size_t)K * esize));
    nbk = nbk < 8 ? 8 : nbk & ~7;
    if (dt != WF32 && T >= 3 && mm_widened(dt, y, xf, w, T, K, N, n0, n1) == 0) return;
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
