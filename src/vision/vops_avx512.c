// vops_avx512.c: the tower's row-wise ops on 16 lanes (vops.h). Sums in f32 (two or four
// accumulators), exponentials by exp512 (kernels/cpu/vexp.h, relative error < 2e-8): on
// 4096 x 4096 scores per head and 4096 x 4304 GELUs per layer, libm's expf and tanhf were
// most of the row-wise time.
#include <immintrin.h>
#include <math.h>

#include "../kernels/cpu/vexp.h"
#include "vops.h"

#define AVX512 __attribute__((target("avx512f")))

AVX512 static inline __mmask16 tail(int r) { return (__mmask16)((1u << r) - 1); }

AVX512 void g3_vops_layernorm_avx512(float *y, const float *x, const float *w, const float *b, int n, float eps) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(x + i + 16));
    }
    for (; i < n; i += 16) s0 = _mm512_add_ps(s0, _mm512_maskz_loadu_ps(tail(n - i < 16 ? n - i : 16), x + i));
    const float mean = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)) / n;
    const __m512 vm = _mm512_set1_ps(mean);
    s0 = s1 = _mm512_setzero_ps();
    for (i = 0; i + 32 <= n; i += 32) {
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + i), vm), d1 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vm);
        s0 = _mm512_fmadd_ps(d0, d0, s0);
        s1 = _mm512_fmadd_ps(d1, d1, s1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = tail(n - i < 16 ? n - i : 16);
        __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + i), vm);
        s0 = _mm512_fmadd_ps(d, d, s0);
    }
    const float var = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)) / n;
    const __m512 vr = _mm512_set1_ps(1.0f / sqrtf(var + eps));
    for (i = 0; i < n; i += 16) {
        __mmask16 m = tail(n - i < 16 ? n - i : 16);
        __m512 t = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm), vr);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(t, _mm512_maskz_loadu_ps(m, w + i), _mm512_maskz_loadu_ps(m, b + i)));
    }
}

// gelu_tanh(t) = 0.5 t (1 + tanh u) = t / (1 + e^(-2u)), u = k (t + 0.044715 t^3).
AVX512 void g3_vops_bias_gelu_tanh_avx512(float *x, const float *b, int n) {
    const __m512 k2 = _mm512_set1_ps(-2.0f * 0.79788456080286536f), c = _mm512_set1_ps(0.044715f), one = _mm512_set1_ps(1.0f);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail(n - i < 16 ? n - i : 16);
        __m512 t = _mm512_add_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, b + i));
        __m512 u = _mm512_mul_ps(k2, _mm512_fmadd_ps(_mm512_mul_ps(c, t), _mm512_mul_ps(t, t), t));
        _mm512_mask_storeu_ps(x + i, m, _mm512_div_ps(t, _mm512_add_ps(one, exp512(u))));
    }
}

AVX512 float g3_vops_softmax_exp_avx512(float *x, int n, float scale) {
    __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + i));
        m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + i + 16));
    }
    for (; i < n; i += 16) m0 = _mm512_mask_max_ps(m0, tail(n - i < 16 ? n - i : 16), m0, _mm512_maskz_loadu_ps(tail(n - i < 16 ? n - i : 16), x + i));
    const __m512 vs = _mm512_set1_ps(scale), vm = _mm512_set1_ps(_mm512_reduce_max_ps(_mm512_max_ps(m0, m1)) * scale);
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    for (i = 0; i + 32 <= n; i += 32) {
        __m512 e0 = exp512(_mm512_fmsub_ps(_mm512_loadu_ps(x + i), vs, vm));
        __m512 e1 = exp512(_mm512_fmsub_ps(_mm512_loadu_ps(x + i + 16), vs, vm));
        _mm512_storeu_ps(x + i, e0);
        _mm512_storeu_ps(x + i + 16, e1);
        s0 = _mm512_add_ps(s0, e0);
        s1 = _mm512_add_ps(s1, e1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = tail(n - i < 16 ? n - i : 16);
        __m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(m, x + i), vs, vm)));
        _mm512_mask_storeu_ps(x + i, m, e);
        s0 = _mm512_add_ps(s0, e);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}
