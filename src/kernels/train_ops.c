// train_ops.c: forward/backward pairs of the training ops (see train_ops.h). Reductions that
// the reference is sensitive to (norm means, softmax sums, norm weight gradients) run in double.
#include "train_ops.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "../base/base.h"
#include "../kernels/kernels.h"
#include "../kernels/ops.h"
#include "../kernels/cpu/vexp.h"
#include "cpu/widen.h"

#define AVX2 __attribute__((target("avx2,fma")))
#define AVX512 __attribute__((target("avx512f")))

// ---- embedding ----

void g3_embedding_forward(float *x, const int32_t *ids, const float *E, int rows, int C, float scale) {
#pragma omp parallel for if ((long)rows * C > 16384) schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *e = E + (long)ids[r] * C;
        float *xr = x + (long)r * C;
        for (int i = 0; i < C; i++) xr[i] = e[i] * scale;
    }
}

void g3_embedding_backward(float *dE, const float *dx, const int32_t *ids, int rows, int C, float scale) {
    for (int r = 0; r < rows; r++) g3_axpy(dE + (long)ids[r] * C, scale, dx + (long)r * C, C);
}

// ---- RMSNorm ----

void g3_rmsnorm_forward_ref(float *y, float *rstd, const float *x, const float *w, int rows, int n, float eps) {
#pragma omp parallel for if ((long)rows * n > 16384) schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (long)r * n;
        float *yr = y + (long)r * n;
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        float rs = (float)(1.0 / sqrt(ss / n + eps));
        if (rstd) rstd[r] = rs;
        for (int i = 0; i < n; i++) yr[i] = xr[i] * rs * (1.0f + w[i]);
    }
}

enum { DW_BLOCK = 64 };  // columns per dw block of the reference (at most)

// dw[0, nb) += sum over rows of dy * x * rstd, for nb <= DW_BLOCK columns at dy, x (stride n).
static void rmsnorm_dw_block(float *dw, const float *dy, const float *x, const float *rstd, int rows, int n, int nb) {
    double acc[DW_BLOCK] = {0};
    for (int r = 0; r < rows; r++) {
        const float *dyr = dy + (long)r * n, *xr = x + (long)r * n;
        double rs = rstd[r];
        for (int i = 0; i < nb; i++) acc[i] += (double)dyr[i] * xr[i] * rs;
    }
    for (int i = 0; i < nb; i++) dw[i] += (float)acc[i];
}

void g3_rmsnorm_backward_ref(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd,
                             int rows, int n, int accumulate) {
    // dw first: columns in blocks, each block owned by one thread (no races, and the sum
    // order does not depend on the thread count).
#pragma omp parallel for if (dw && (long)rows * n > 32768) schedule(static)
    for (int i0 = 0; i0 < (dw ? n : 0); i0 += DW_BLOCK) rmsnorm_dw_block(dw + i0, dy + i0, x + i0, rstd, rows, n, G3_MIN(DW_BLOCK, n - i0));
    // dx = rstd * dy * (1+w) - x * rstd^3 / n * sum(dy * (1+w) * x)
#pragma omp parallel for if ((long)rows * n > 16384) schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *dyr = dy + (long)r * n, *xr = x + (long)r * n;
        float *dxr = dx + (long)r * n;
        double s = 0;
        for (int i = 0; i < n; i++) s += (double)dyr[i] * (1.0f + w[i]) * xr[i];
        float rs = rstd[r], c = (float)(s * rs * rs * rs / n);
        if (accumulate)
            for (int i = 0; i < n; i++) dxr[i] += rs * dyr[i] * (1.0f + w[i]) - xr[i] * c;
        else
            for (int i = 0; i < n; i++) dxr[i] = rs * dyr[i] * (1.0f + w[i]) - xr[i] * c;
    }
}

// AVX2 versions: the same sums in double lanes (4 per vector, each float widened exactly) and
// the same float products in the same order; only the order of the double additions differs.
// gcc -O2 left the scalar loops scalar: with RMSNorm's many calls per layer they were ~5% of
// a training step.

// Per row / per column block, so that the OpenMP loops stay in plain functions (clang does
// not carry a function's target attribute into the loop bodies it outlines).
AVX2 static float rmsnorm_row_avx2(float *yr, const float *xr, const float *w, int n, float eps) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256d a0 = _mm256_setzero_pd(), a1 = a0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(xr + i);
        __m256d l = lo_pd(v), h = hi_pd(v);
        a0 = _mm256_fmadd_pd(l, l, a0);
        a1 = _mm256_fmadd_pd(h, h, a1);
    }
    double ss = hsum_pd(_mm256_add_pd(a0, a1));
    for (int j = i; j < n; j++) ss += (double)xr[j] * xr[j];
    float rs = (float)(1.0 / sqrt(ss / n + eps));
    __m256 vrs = _mm256_set1_ps(rs);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(yr + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + i), vrs), _mm256_add_ps(one, _mm256_loadu_ps(w + i))));
    for (; i < n; i++) yr[i] = xr[i] * rs * (1.0f + w[i]);
    return rs;
}

enum { DW_CB = 32 };  // columns per dw block of the AVX2 backward: 8 double accumulators in registers

// dw[0, DW_CB) += sum over rows of dy * x * rstd, for the DW_CB columns at dy, x (stride n).
AVX2 static void rmsnorm_dw_block_avx2(float *dw, const float *dy, const float *x, const float *rstd, int rows, int n) {
    __m256d acc[8];
    for (int k = 0; k < 8; k++) acc[k] = _mm256_setzero_pd();
    for (int r = 0; r < rows; r++) {
        const float *dyr = dy + (long)r * n, *xr = x + (long)r * n;
        __m256d rs = _mm256_set1_pd(rstd[r]);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            __m256 d = _mm256_loadu_ps(dyr + 8 * k), v = _mm256_loadu_ps(xr + 8 * k);
            acc[2 * k] = _mm256_fmadd_pd(_mm256_mul_pd(lo_pd(d), lo_pd(v)), rs, acc[2 * k]);
            acc[2 * k + 1] = _mm256_fmadd_pd(_mm256_mul_pd(hi_pd(d), hi_pd(v)), rs, acc[2 * k + 1]);
        }
    }
    for (int k = 0; k < 4; k++) {
        double l[4], h[4];
        _mm256_storeu_pd(l, acc[2 * k]);
        _mm256_storeu_pd(h, acc[2 * k + 1]);
        for (int j = 0; j < 4; j++) dw[8 * k + j] += (float)l[j], dw[8 * k + 4 + j] += (float)h[j];
    }
}

AVX2 static void rmsnorm_dx_row_avx2(float *dxr, const float *dyr, const float *xr, const float *w, float rs, int n, int accumulate) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256d s0 = _mm256_setzero_pd(), s1 = s0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 d = _mm256_loadu_ps(dyr + i), w1 = _mm256_add_ps(one, _mm256_loadu_ps(w + i)), v = _mm256_loadu_ps(xr + i);
        s0 = _mm256_fmadd_pd(_mm256_mul_pd(lo_pd(d), lo_pd(w1)), lo_pd(v), s0);
        s1 = _mm256_fmadd_pd(_mm256_mul_pd(hi_pd(d), hi_pd(w1)), hi_pd(v), s1);
    }
    double s = hsum_pd(_mm256_add_pd(s0, s1));
    for (int j = i; j < n; j++) s += (double)dyr[j] * (1.0f + w[j]) * xr[j];
    float c = (float)(s * rs * rs * rs / n);
    __m256 vrs = _mm256_set1_ps(rs), vc = _mm256_set1_ps(c);
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 g = _mm256_sub_ps(_mm256_mul_ps(_mm256_mul_ps(vrs, _mm256_loadu_ps(dyr + i)), _mm256_add_ps(one, _mm256_loadu_ps(w + i))),
                                 _mm256_mul_ps(_mm256_loadu_ps(xr + i), vc));
        if (accumulate) g = _mm256_add_ps(_mm256_loadu_ps(dxr + i), g);
        _mm256_storeu_ps(dxr + i, g);
    }
    for (; i < n; i++) {
        float g = rs * dyr[i] * (1.0f + w[i]) - xr[i] * c;
        dxr[i] = accumulate ? dxr[i] + g : g;
    }
}

// AVX-512 versions: the same sums in 8 double lanes a vector, the same float products.
// Widening to double is the cost here (the rows are in cache): 16 floats a step instead of 8.

AVX512 static float rmsnorm_row_avx512(float *yr, const float *xr, const float *w, int n, float eps) {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512d a0 = _mm512_setzero_pd(), a1 = a0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(xr + i);
        __m512d l = lo_pd16(v), h = hi_pd16(v);
        a0 = _mm512_fmadd_pd(l, l, a0);
        a1 = _mm512_fmadd_pd(h, h, a1);
    }
    double ss = _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
    for (int j = i; j < n; j++) ss += (double)xr[j] * xr[j];
    float rs = (float)(1.0 / sqrt(ss / n + eps));
    __m512 vrs = _mm512_set1_ps(rs);
    for (i = 0; i + 16 <= n; i += 16)
        _mm512_storeu_ps(yr + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(xr + i), vrs), _mm512_add_ps(one, _mm512_loadu_ps(w + i))));
    for (; i < n; i++) yr[i] = xr[i] * rs * (1.0f + w[i]);
    return rs;
}

// dw[0, DW_CB) += sum over rows of dy * x * rstd, for the DW_CB = 32 columns at dy, x (stride n).
AVX512 static void rmsnorm_dw_block_avx512(float *dw, const float *dy, const float *x, const float *rstd, int rows, int n) {
    __m512d acc[4] = {_mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd()};
    for (int r = 0; r < rows; r++) {
        const float *dyr = dy + (long)r * n, *xr = x + (long)r * n;
        __m512d rs = _mm512_set1_pd(rstd[r]);
#pragma GCC unroll 2
        for (int k = 0; k < 2; k++) {
            __m512 d = _mm512_loadu_ps(dyr + 16 * k), v = _mm512_loadu_ps(xr + 16 * k);
            acc[2 * k] = _mm512_fmadd_pd(_mm512_mul_pd(lo_pd16(d), lo_pd16(v)), rs, acc[2 * k]);
            acc[2 * k + 1] = _mm512_fmadd_pd(_mm512_mul_pd(hi_pd16(d), hi_pd16(v)), rs, acc[2 * k + 1]);
        }
    }
    for (int k = 0; k < 4; k++) {
        double l[8];
        _mm512_storeu_pd(l, acc[k]);
        for (int j = 0; j < 8; j++) dw[8 * k + j] += (float)l[j];
    }
}

AVX512 static void rmsnorm_dx_row_avx512(float *dxr, const float *dyr, const float *xr, const float *w, float rs, int n,
                                         int accumulate) {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512d s0 = _mm512_setzero_pd(), s1 = s0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 d = _mm512_loadu_ps(dyr + i), w1 = _mm512_add_ps(one, _mm512_loadu_ps(w + i)), v = _mm512_loadu_ps(xr + i);
        s0 = _mm512_fmadd_pd(_mm512_mul_pd(lo_pd16(d), lo_pd16(w1)), lo_pd16(v), s0);
        s1 = _mm512_fmadd_pd(_mm512_mul_pd(hi_pd16(d), hi_pd16(w1)), hi_pd16(v), s1);
    }
    double s = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
    for (int j = i; j < n; j++) s += (double)dyr[j] * (1.0f + w[j]) * xr[j];
    float c = (float)(s * rs * rs * rs / n);
    __m512 vrs = _mm512_set1_ps(rs), vc = _mm512_set1_ps(c);
    for (i = 0; i + 16 <= n; i += 16) {
        __m512 g = _mm512_sub_ps(_mm512_mul_ps(_mm512_mul_ps(vrs, _mm512_loadu_ps(dyr + i)), _mm512_add_ps(one, _mm512_loadu_ps(w + i))),
                                 _mm512_mul_ps(_mm512_loadu_ps(xr + i), vc));
        if (accumulate) g = _mm512_add_ps(_mm512_loadu_ps(dxr + i), g);
        _mm512_storeu_ps(dxr + i, g);
    }
    for (; i < n; i++) {
        float g = rs * dyr[i] * (1.0f + w[i]) - xr[i] * c;
        dxr[i] = accumulate ? dxr[i] + g : g;
    }
}

void g3_rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int rows, int n, float eps) {
    int isa = g3_ops_isa();
    if (isa < 1) {
        g3_rmsnorm_forward_ref(y, rstd, x, w, rows, n, eps);
        return;
    }
#pragma omp parallel for if ((long)rows * n > 16384) schedule(static)
    for (int r = 0; r < rows; r++) {
        float rs = isa >= 2 ? rmsnorm_row_avx512(y + (long)r * n, x + (long)r * n, w, n, eps)
                            : rmsnorm_row_avx2(y + (long)r * n, x + (long)r * n, w, n, eps);
        if (rstd) rstd[r] = rs;
    }
}

void g3_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd,
                         int rows, int n, int accumulate) {
    int isa = g3_ops_isa();
    if (isa < 1) {
        g3_rmsnorm_backward_ref(dx, dw, dy, x, w, rstd, rows, n, accumulate);
        return;
    }
#pragma omp parallel for if (dw && (long)rows * n > 32768) schedule(static)
    for (int i0 = 0; i0 < (dw ? n : 0); i0 += DW_CB) {
        int nb = G3_MIN(DW_CB, n - i0);
        if (nb == DW_CB && isa >= 2) rmsnorm_dw_block_avx512(dw + i0, dy + i0, x + i0, rstd, rows, n);
        else if (nb == DW_CB) rmsnorm_dw_block_avx2(dw + i0, dy + i0, x + i0, rstd, rows, n);
        else rmsnorm_dw_block(dw + i0, dy + i0, x + i0, rstd, rows, n, nb);  // the last, partial block
    }
#pragma omp parallel for if ((long)rows * n > 16384) schedule(static)
    for (int r = 0; r < rows; r++) {
        float *dxr = dx + (long)r * n;
        const float *dyr = dy + (long)r * n, *xr = x + (long)r * n;
        if (isa >= 2) rmsnorm_dx_row_avx512(dxr, dyr, xr, w, rstd[r], n, accumulate);
        else rmsnorm_dx_row_avx2(dxr, dyr, xr, w, rstd[r], n, accumulate);
    }
}

// ---- RoPE ----

void g3_rope_forward(float *x, const float *cos, const float *sin, int B, int T, int nheads, int HD) {
#pragma omp parallel for if ((long)B * T * nheads * HD > 16384) schedule(static)
    for (long r = 0; r < (long)B * T; r++) {
        long t = r % T;
        g3_rope(x + r * nheads * HD, nheads, HD, cos + t * (HD / 2), sin + t * (HD / 2));
    }
}

void g3_rope_backward(float *dx, const float *cos, const float *sin, int B, int T, int nheads, int HD) {
    const int h2 = HD / 2;
    // forward: y_d = a c - b s, y_{d+h2} = b c + a s; its transpose rotates by -angle
#pragma omp parallel for if ((long)B * T * nheads * HD > 16384) schedule(static)
    for (long r = 0; r < (long)B * T; r++) {
        const float *c = cos + (r % T) * h2, *s = sin + (r % T) * h2;
        for (int h = 0; h < nheads; h++) {
            float *v = dx + (r * nheads + h) * HD;
            for (int d = 0; d < h2; d++) {
                float ya = v[d], yb = v[d + h2];
                v[d] = ya * c[d] + yb * s[d];
                v[d + h2] = yb * c[d] - ya * s[d];
            }
        }
    }
}

// ---- GeGLU ----

static inline void gelu_and_grad(float x, int erf_form, float *f, float *df) {
    if (erf_form) {
        float cdf = 0.5f * (1.0f + erff(x * 0.7071067811865476f));
        *f = x * cdf;
        *df = cdf + x * 0.3989422804014327f * expf(-0.5f * x * x);  // x * pdf(x)
    } else {
        const float k = 0.7978845608028654f, c = 0.044715f;  // sqrt(2/pi)
        float th = tanhf(k * (x + c * x * x * x));
        *f = 0.5f * x * (1.0f + th);
        *df = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * k * (1.0f + 3.0f * c * x * x);
    }
}

void g3_geglu_forward_ref(float *a, const float *g, const float *u, long n, int erf_form) {
    for (long i = 0; i < n; i++) {
        float x = g[i];
        float f = erf_form ? 0.5f * x * (1.0f + erff(x * 0.7071067811865476f)) : g3_gelu_tanh(x);
        a[i] = f * u[i];
    }
}

void g3_geglu_backward_ref(float *dg, float *du, const float *da, const float *g, const float *u, long n, int erf_form) {
    for (long i = 0; i < n; i++) {
        float f, df, d = da[i];
        gelu_and_grad(g[i], erf_form, &f, &df);
        dg[i] = d * u[i] * df;
        du[i] = d * f;
    }
}

// 16 elements of GeGLU (a where a is non-NULL, dg and du where dg is), the tail masked.
AVX512 static inline __attribute__((always_inline)) void geglu_tanh_16(float *a, float *dg, float *du, const float *da,
                                                                        const float *g, const float *u, __mmask16 m, int tail) {
    const __m512 k = _mm512_set1_ps(0.7978845608028654f), c = _mm512_set1_ps(0.044715f), c3 = _mm512_set1_ps(3 * 0.044715f);
    const __m512 one = _mm512_set1_ps(1.0f), m2k = _mm512_set1_ps(-2.0f * 0.7978845608028654f), two = _mm512_set1_ps(2.0f);
    __m512 x = tail ? _mm512_maskz_loadu_ps(m, g) : _mm512_loadu_ps(g), uu = tail ? _mm512_maskz_loadu_ps(m, u) : _mm512_loadu_ps(u);
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 e = exp512(_mm512_mul_ps(m2k, _mm512_fmadd_ps(_mm512_mul_ps(c, x2), x, x)));  // e^(-2u)
    __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, e));
    __m512 f = _mm512_mul_ps(x, s);
    if (a) {
        if (tail) _mm512_mask_storeu_ps(a, m, _mm512_mul_ps(f, uu));
        else _mm512_storeu_ps(a, _mm512_mul_ps(f, uu));
    }
    if (!dg) return;
    __m512 ds = _mm512_mul_ps(_mm512_mul_ps(two, x), _mm512_mul_ps(_mm512_mul_ps(s, s), e));  // s (1 - s) = e s^2, no cancellation
    __m512 df = _mm512_fmadd_ps(ds, _mm512_mul_ps(k, _mm512_fmadd_ps(c3, x2, one)), s);
    __m512 d = tail ? _mm512_maskz_loadu_ps(m, da) : _mm512_loadu_ps(da);
    __m512 vg = _mm512_mul_ps(_mm512_mul_ps(d, uu), df), vu = _mm512_mul_ps(d, f);
    if (tail) _mm512_mask_storeu_ps(dg, m, vg), _mm512_mask_storeu_ps(du, m, vu);
    else _mm512_storeu_ps(dg, vg), _mm512_storeu_ps(du, vu);
}

// The tanh form through s = sigmoid(2u) = (1 + tanh u) / 2, u = k (x + c x^3), one exp512
// per element: gelu = x s, gelu' = s + 2 x s (1 - s) k (1 + 3 c x^2). libm's tanhf was a
// quarter of a training step. Whole vectors use plain loads and stores, the tail masked ones.
AVX512 static void geglu_tanh_fb_avx512(float *a, float *dg, float *du, const float *da, const float *g,
                                                                    const float *u, long n) {
    long i = 0;
    for (; i + 16 <= n; i += 16)
        geglu_tanh_16(a ? a + i : NULL, dg ? dg + i : NULL, dg ? du + i : NULL, dg ? da + i : NULL, g + i, u + i, 0xffff, 0);
    if (i < n)
        geglu_tanh_16(a ? a + i : NULL, dg ? dg + i : NULL, dg ? du + i : NULL, dg ? da + i : NULL, g + i, u + i,
                      (__mmask16)((1u << (n - i)) - 1), 1);
}

// The same in 8 lanes with AVX2 + FMA. Whole vectors use plain loads and stores: on Zen,
// vmaskmovps stores are microcoded and made every element cost several times more; the
// masked forms are kept for the tail alone.
AVX2 static inline void geglu_tanh_8(float *a, float *dg, float *du, const float *da,
                                                                    __m256 x, __m256 uu, __m256i m, int tail) {
    const __m256 k = _mm256_set1_ps(0.7978845608028654f), c3 = _mm256_set1_ps(3 * 0.044715f);
    const __m256 one = _mm256_set1_ps(1.0f), m2k = _mm256_set1_ps(-2.0f * 0.7978845608028654f), two = _mm256_set1_ps(2.0f);
    __m256 x2 = _mm256_mul_ps(x, x);
    __m256 e = exp256(_mm256_mul_ps(m2k, _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(0.044715f), x2), x, x)));  // e^(-2u)
    __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, e));
    __m256 f = _mm256_mul_ps(x, s);
    if (a) {
        if (tail) _mm256_maskstore_ps(a, m, _mm256_mul_ps(f, uu));
        else _mm256_storeu_ps(a, _mm256_mul_ps(f, uu));
    }
    if (!dg) return;
    __m256 ds = _mm256_mul_ps(_mm256_mul_ps(two, x), _mm256_mul_ps(_mm256_mul_ps(s, s), e));
    __m256 df = _mm256_fmadd_ps(ds, _mm256_mul_ps(k, _mm256_fmadd_ps(c3, x2, one)), s);
    __m256 d = tail ? _mm256_maskload_ps(da, m) : _mm256_loadu_ps(da);
    if (tail) {
        _mm256_maskstore_ps(dg, m, _mm256_mul_ps(_mm256_mul_ps(d, uu), df));
        _mm256_maskstore_ps(du, m, _mm256_mul_ps(d, f));
    } else {
        _mm256_storeu_ps(dg, _mm256_mul_ps(_mm256_mul_ps(d, uu), df));
        _mm256_storeu_ps(du, _mm256_mul_ps(d, f));
    }
}

AVX2 static void geglu_tanh_fb_avx2(float *a, float *dg, float *du, const float *da, const float *g,
                                                                   const float *u, long n) {
    const __m256i all = _mm256_set1_epi32(-1);
    long i = 0;
    for (; i + 8 <= n; i += 8)
        geglu_tanh_8(a ? a + i : NULL, dg ? dg + i : NULL, du ? du + i : NULL, da ? da + i : NULL,
                     _mm256_loadu_ps(g + i), _mm256_loadu_ps(u + i), all, 0);
    if (i < n) {
        __m256i m = tail8(n - i);
        geglu_tanh_8(a ? a + i : NULL, dg ? dg + i : NULL, du ? du + i : NULL, da ? da + i : NULL,
                     _mm256_maskload_ps(g + i, m), _mm256_maskload_ps(u + i, m), m, 1);
    }
}

// The row-wise kernels' level (ops.h: 2 AVX-512, 1 AVX2 + FMA, 0 scalar); the erf form has
// only the scalar reference.
static int fast_tanh(int erf_form) { return erf_form ? 0 : g3_ops_isa(); }

// One serial span: a = gelu(g) u where a is non-NULL, and dg, du from da where dg is
// non-NULL (dg may be da). Every element is computed on its own, so a span's results are
// the same bits however the elements are grouped into spans.
static void geglu_span(float *a, float *dg, float *du, const float *da, const float *g, const float *u, long n,
                       int erf_form, int fast) {
    if (fast == 2) geglu_tanh_fb_avx512(a, dg, du, da, g, u, n);
    else if (fast == 1) geglu_tanh_fb_avx2(a, dg, du, da, g, u, n);
    else {
        if (a) g3_geglu_forward_ref(a, g, u, n, erf_form);
        if (dg) g3_geglu_backward_ref(dg, du, da, g, u, n, erf_form);
    }
}

#define GEGLU_CHUNK 16384  // contiguous elements per thread task

void g3_geglu_forward(float *a, const float *g, const float *u, long n, int erf_form) {
    long nch = (n + GEGLU_CHUNK - 1) / GEGLU_CHUNK;
    int fast = fast_tanh(erf_form);
#pragma omp parallel for if (n > 65536) schedule(static)
    for (long ch = 0; ch < nch; ch++) {
        long o = ch * GEGLU_CHUNK, len = G3_MIN(GEGLU_CHUNK, n - o);
        geglu_span(a + o, NULL, NULL, NULL, g + o, u + o, len, erf_form, fast);
    }
}

void g3_geglu_backward(float *dg, float *du, const float *da, const float *g, const float *u, long n, int erf_form) {
    long nch = (n + GEGLU_CHUNK - 1) / GEGLU_CHUNK;
    int fast = fast_tanh(erf_form);
#pragma omp parallel for if (n > 65536) schedule(static)
    for (long ch = 0; ch < nch; ch++) {
        long o = ch * GEGLU_CHUNK, len = G3_MIN(GEGLU_CHUNK, n - o);
        geglu_span(NULL, dg + o, du + o, da + o, g + o, u + o, len, erf_form, fast);
    }
}

void g3_geglu_epi(void *ctx, int i0, int j0, int m, int n) {
    const G3GegluEpi *e = ctx;
    int fast = fast_tanh(e->erf_form);
    for (int i = i0; i < i0 + m; i++) {
        size_t o = (size_t)i * e->ld + j0;
        geglu_span(e->a ? e->a + o : NULL, e->dg ? e->dg + o : NULL, e->dg ? e->du + o : NULL, e->dg ? e->dg + o : NULL,
                   e->g + o, e->u + o, n, e->erf_form, fast);
    }
}

// The block's g (and, in the backward, u) come from memory, written long before: fetched
// while the product computes the block, they are in cache when g3_geglu_epi runs.
void g3_geglu_epi_prefetch(void *ctx, int i0, int j0, int m, int n) {
    const G3GegluEpi *e = ctx;
    for (int i = i0; i < i0 + m; i++)
        for (int j = j0; j < j0 + n; j += 16) {
            size_t o = (size_t)i * e->ld + j;
            __builtin_prefetch(e->g + o);
            if (e->dg) __builtin_prefetch(e->u + o);
        }
}

// ---- softcap ----

void g3_softcap_forward(float *y, const float *x, long n, float cap) {
    float inv = 1.0f / cap;
    for (long i = 0; i < n; i++) y[i] = tanhf(x[i] * inv) * cap;
}

void g3_softcap_backward(float *dx, const float *dy, const float *y, long n, float cap) {
    float inv = 1.0f / cap;
    for (long i = 0; i < n; i++) {
        float t = y[i] * inv;
        dx[i] = dy[i] * (1.0f - t * t);
    }
}

// ---- cross-entropy ----

// log(sum(exp(z))) with f32 exponentials (relative error ~1e-7 each) summed in double:
// exact enough for a loss held to 1e-6, and several times faster than double exp over a
// 262144-entry vocabulary.
static double logsumexp_ref(const float *z, int V, float *mxo) {
    float mx = -INFINITY;
    for (int i = 0; i < V; i++) mx = z[i] > mx ? z[i] : mx;
    double sum = 0;
    for (int i = 0; i < V; i++) sum += expf(z[i] - mx);
    *mxo = mx;
    return mx + log(sum);
}

// d loss / d z_i times dscale for one entry: (p_i - [i is the target]) through the cap's derivative.
static inline float ce_grad(float z, float mx, float shift, float dscale, float softcap, int is_target) {
    float d = expf((z - mx) - shift) * dscale - (is_target ? dscale : 0.0f);
    if (softcap > 0) {
        float t = z / softcap;
        d *= 1.0f - t * t;
    }
    return d;
}

double g3_crossentropy_forward_backward_ref(float *dz, const float *z, int target, int V, float softcap, float dscale) {
    float mx;
    if (softcap > 0) {  // cap in place in dz; the cap's derivative is read back from the capped value
        g3_softcap_forward(dz, z, V, softcap);
        z = dz;
    }
    double lse = logsumexp_ref(z, V, &mx), loss = lse - z[target];
    const float shift = (float)(lse - mx);  // exp(z - lse) = exp((z - mx) - shift), both terms small
    for (int i = 0; i < V; i++) dz[i] = ce_grad(z[i], mx, shift, dscale, softcap, i == target);
    return loss;
}

// The same with exp256 (relative error < 2e-8, against libm's expf ~1e-7) on 8 lanes, sums
// in double lanes: libm's scalar expf over the vocabulary, twice per row, was ~7% of a
// training step at V = 8192. The target's entry is fixed up after the vector loop.
AVX2 static double logsumexp_avx2(const float *z, int V, float *mxo) {
    __m256 vmx = _mm256_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 8 <= V; i += 8) vmx = _mm256_max_ps(vmx, _mm256_loadu_ps(z + i));
    float mx = hmax8(vmx);
    for (int j = i; j < V; j++) mx = z[j] > mx ? z[j] : mx;
    __m256 vm = _mm256_set1_ps(mx);
    __m256d s0 = _mm256_setzero_pd(), s1 = s0;
    for (i = 0; i + 8 <= V; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(z + i), vm));
        s0 = _mm256_add_pd(s0, lo_pd(e));
        s1 = _mm256_add_pd(s1, hi_pd(e));
    }
    double sum = hsum_pd(_mm256_add_pd(s0, s1));
    for (int j = i; j < V; j++) sum += expf(z[j] - mx);
    *mxo = mx;
    return mx + log(sum);
}

AVX2 static double crossentropy_fb_avx2(float *dz, const float *z, int target, int V, float softcap, float dscale) {
    float mx;
    if (softcap > 0) {
        g3_softcap_forward(dz, z, V, softcap);
        z = dz;
    }
    double lse = logsumexp_avx2(z, V, &mx);
    const float zt = z[target], shift = (float)(lse - mx);  // zt read before dz (maybe z) is overwritten
    const __m256 vm = _mm256_set1_ps(mx), vs = _mm256_set1_ps(shift), vd = _mm256_set1_ps(dscale), one = _mm256_set1_ps(1.0f);
    const __m256 inv = _mm256_set1_ps(softcap > 0 ? 1.0f / softcap : 0.0f);
    int i = 0;
    for (; i + 8 <= V; i += 8) {
        __m256 v = _mm256_loadu_ps(z + i);
        __m256 d = _mm256_mul_ps(exp256(_mm256_sub_ps(_mm256_sub_ps(v, vm), vs)), vd);
        if (softcap > 0) {
            __m256 t = _mm256_mul_ps(v, inv);
            d = _mm256_mul_ps(d, _mm256_fnmadd_ps(t, t, one));
        }
        _mm256_storeu_ps(dz + i, d);
    }
    for (; i < V; i++) dz[i] = ce_grad(z[i], mx, shift, dscale, softcap, 0);
    dz[target] = ce_grad(zt, mx, shift, dscale, softcap, 1);
    return lse - zt;
}

// And with exp512 on 16 lanes: the rows are in L1, so the two exponential passes are
// compute-bound, and the 8-lane version was 1.9% of a shape (a) step on Zen 5.
AVX512 static double logsumexp_avx512(const float *z, int V, float *mxo) {
    __m512 vmx = _mm512_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 16 <= V; i += 16) vmx = _mm512_max_ps(vmx, _mm512_loadu_ps(z + i));
    float mx = _mm512_reduce_max_ps(vmx);
    for (int j = i; j < V; j++) mx = z[j] > mx ? z[j] : mx;
    __m512 vm = _mm512_set1_ps(mx);
    __m512d s0 = _mm512_setzero_pd(), s1 = s0;
    for (i = 0; i + 16 <= V; i += 16) {
        __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(z + i), vm));
        s0 = _mm512_add_pd(s0, lo_pd16(e));
        s1 = _mm512_add_pd(s1, hi_pd16(e));
    }
    double sum = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
    for (int j = i; j < V; j++) sum += expf(z[j] - mx);
    *mxo = mx;
    return mx + log(sum);
}

AVX512 static double crossentropy_fb_avx512(float *dz, const float *z, int target, int V, float softcap, float dscale) {
    float mx;
    if (softcap > 0) {
        g3_softcap_forward(dz, z, V, softcap);
        z = dz;
    }
    double lse = logsumexp_avx512(z, V, &mx);
    const float zt = z[target], shift = (float)(lse - mx);  // zt read before dz (maybe z) is overwritten
    const __m512 vm = _mm512_set1_ps(mx), vs = _mm512_set1_ps(shift), vd = _mm512_set1_ps(dscale), one = _mm512_set1_ps(1.0f);
    const __m512 inv = _mm512_set1_ps(softcap > 0 ? 1.0f / softcap : 0.0f);
    int i = 0;
    for (; i + 16 <= V; i += 16) {
        __m512 v = _mm512_loadu_ps(z + i);
        __m512 d = _mm512_mul_ps(exp512(_mm512_sub_ps(_mm512_sub_ps(v, vm), vs)), vd);
        if (softcap > 0) {
            __m512 t = _mm512_mul_ps(v, inv);
            d = _mm512_mul_ps(d, _mm512_fnmadd_ps(t, t, one));
        }
        _mm512_storeu_ps(dz + i, d);
    }
    for (; i < V; i++) dz[i] = ce_grad(z[i], mx, shift, dscale, softcap, 0);
    dz[target] = ce_grad(zt, mx, shift, dscale, softcap, 1);
    return lse - zt;
}

double g3_crossentropy_forward(const float *z, int target, int V) {
    float mx;
    int isa = g3_ops_isa();
    double lse = isa >= 2 ? logsumexp_avx512(z, V, &mx) : isa == 1 ? logsumexp_avx2(z, V, &mx) : logsumexp_ref(z, V, &mx);
    return lse - z[target];
}

double g3_crossentropy_forward_backward(float *dz, const float *z, int target, int V, float softcap, float dscale) {
    int isa = g3_ops_isa();
    if (isa >= 2) return crossentropy_fb_avx512(dz, z, target, V, softcap, dscale);
    if (isa == 1) return crossentropy_fb_avx2(dz, z, target, V, softcap, dscale);
    return g3_crossentropy_forward_backward_ref(dz, z, target, V, softcap, dscale);
}
