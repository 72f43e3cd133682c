// ops.c: row-wise kernels and the vector primitives (see ops.h).
#include "ops.h"

#include <immintrin.h>
#include <math.h>

#include "../base/base.h"
#include "kernels.h"
#include "cpu/vexp.h"

void g3_rmsnorm_ref(float *y, const float *x, const float *w1p, int n, float eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) y[i] = x[i] * r * w1p[i];
}

// The sum of squares in sixteen float lanes, each over n/16 terms, then combined in double:
// a relative error near 1e-7 for the widths norms see (256 to 5376), where the reference's
// element-by-element double conversion cost as much as a small matrix product.
__attribute__((target("avx512f"))) static void rmsnorm_avx512(float *y, const float *x, const float *w1p, int n, float eps) {
    __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 u = _mm512_loadu_ps(x + i), v = _mm512_loadu_ps(x + i + 16);
        a = _mm512_fmadd_ps(u, u, a);
        b = _mm512_fmadd_ps(v, v, b);
    }
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 u = _mm512_maskz_loadu_ps(m, x + i);
        a = _mm512_fmadd_ps(u, u, a);
    }
    float la[16], lb[16];
    _mm512_storeu_ps(la, a);
    _mm512_storeu_ps(lb, b);
    double ss = 0;
    for (int k = 0; k < 16; k++) ss += (double)la[k] + lb[k];
    __m512 r = _mm512_set1_ps((float)(1.0 / sqrt(ss / n + eps)));
    for (i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), r), _mm512_maskz_loadu_ps(m, w1p + i));
        _mm512_mask_storeu_ps(y + i, m, v);
    }
}

// AVX2 + FMA versions of the same kernels, for CPUs without AVX-512 (Zen 2/3, Haswell to
// Alder Lake): 8 lanes; whole vectors with plain loads and stores, the row tail alone through
// maskload/maskstore (on Zen, vmaskmovps stores are microcoded: using them for every vector
// made GeGLU 2.3x slower).
__attribute__((target("avx2,fma"))) static float hsum256(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    return _mm_cvtss_f32(_mm_add_ss(a, _mm_movehdup_ps(a)));
}

__attribute__((target("avx2,fma"))) static void rmsnorm_avx2(float *y, const float *x, const float *w1p, int n, float eps) {
    __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 u = _mm256_loadu_ps(x + i), v = _mm256_loadu_ps(x + i + 8);
        a = _mm256_fmadd_ps(u, u, a);
        b = _mm256_fmadd_ps(v, v, b);
    }
    for (; i < n; i += 8) {
        __m256 u = _mm256_maskload_ps(x + i, tail8(n - i));
        a = _mm256_fmadd_ps(u, u, a);
    }
    float la[8], lb[8];
    _mm256_storeu_ps(la, a);
    _mm256_storeu_ps(lb, b);
    double ss = 0;
    for (int k = 0; k < 8; k++) ss += (double)la[k] + lb[k];
    __m256 r = _mm256_set1_ps((float)(1.0 / sqrt(ss / n + eps)));
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), r), _mm256_loadu_ps(w1p + i)));
    if (i < n) {
        __m256i m = tail8(n - i);
        _mm256_maskstore_ps(y + i, m, _mm256_mul_ps(_mm256_mul_ps(_mm256_maskload_ps(x + i, m), r), _mm256_maskload_ps(w1p + i, m)));
    }
}

__attribute__((target("avx2,fma"))) static inline __m256 gelu_tanh_8(__m256 x) {
    const __m256 k2 = _mm256_set1_ps(-2.0f * 0.7978845608028654f), c = _mm256_set1_ps(0.044715f), one = _mm256_set1_ps(1.0f);
    __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
    __m256 t = _mm256_mul_ps(k2, _mm256_fmadd_ps(c, x3, x));  // -2u
    return _mm256_div_ps(x, _mm256_add_ps(one, exp256(t)));
}

__attribute__((target("avx2,fma"))) static void geglu_tanh_avx2(float *g, const float *u, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(g + i, _mm256_mul_ps(gelu_tanh_8(_mm256_loadu_ps(g + i)), _mm256_loadu_ps(u + i)));
    if (i < n) {
        __m256i m = tail8(n - i);
        _mm256_maskstore_ps(g + i, m, _mm256_mul_ps(gelu_tanh_8(_mm256_maskload_ps(g + i, m)), _mm256_maskload_ps(u + i, m)));
    }
}

__attribute__((target("avx2,fma"))) static float softmax_avx2(float *x, int n) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 vmx = ninf;
    int i = 0;
    for (; i + 8 <= n; i += 8) vmx = _mm256_max_ps(vmx, _mm256_loadu_ps(x + i));
    const int nt = n - i;  // tail lanes (0..7), read and written masked
    const __m256i mt = tail8(nt);
    if (nt) vmx = _mm256_max_ps(vmx, _mm256_blendv_ps(ninf, _mm256_maskload_ps(x + i, mt), _mm256_castsi256_ps(mt)));
    float mx = hmax8(vmx);
    if (mx == -INFINITY) {
        for (i = 0; i < n; i++) x[i] = 0;
        return -INFINITY;
    }
    __m256 vm = _mm256_set1_ps(mx), acc = _mm256_setzero_ps();
    for (i = 0; i < n; i += 8) {
        int tail = n - i < 8;
        __m256 v = tail ? _mm256_blendv_ps(ninf, _mm256_maskload_ps(x + i, mt), _mm256_castsi256_ps(mt)) : _mm256_loadu_ps(x + i);
        // -inf entries (masked positions, lanes past n) get exactly 0: exp256 alone would give ~1e-38
        __m256 live = _mm256_cmp_ps(v, ninf, _CMP_NEQ_UQ);
        __m256 e = _mm256_and_ps(live, exp256(_mm256_sub_ps(v, vm)));
        acc = _mm256_add_ps(acc, e);
        if (tail) _mm256_maskstore_ps(x + i, mt, e);
        else _mm256_storeu_ps(x + i, e);
    }
    const double sum = hsum256(acc);
    __m256 inv = _mm256_set1_ps((float)(1.0 / sum));
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    if (nt) _mm256_maskstore_ps(x + i, mt, _mm256_mul_ps(_mm256_maskload_ps(x + i, mt), inv));
    return (float)(mx + log(sum));
}

__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i < n; i += 8) {
        __m256i m = tail8(n - i);
        s0 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m), s0);
    }
    return hsum256(_mm256_add_ps(s0, s1));
}

__attribute__((target("avx2,fma"))) static void axpy_avx2(float *y, float a, const float *x, int n) {
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    if (i < n) {
        __m256i m = tail8(n - i);
        _mm256_maskstore_ps(y + i, m, _mm256_fmadd_ps(va, _mm256_maskload_ps(x + i, m), _mm256_maskload_ps(y + i, m)));
    }
}

// 2: AVX-512, 1: AVX2 + FMA, 0: the scalar references. Set by g3_kernels_init (the one CPU
// detection, which tests also use to cap the level); until then, that is called on first use.
static int isa = -1;
static void detect(void) {
    if (isa < 0) {
#pragma omp critical(g3_ops_detect)
        if (isa < 0) g3_kernels_init(G3_ISA_AVX512BF16);
    }
}

void g3_ops_set_level(int level) { isa = level; }

int g3_ops_isa(void) {
    detect();
    return isa;
}

void g3_rmsnorm(float *y, const float *x, const float *w1p, int n, float eps) {
    detect();
    if (isa == 2) rmsnorm_avx512(y, x, w1p, n, eps);
    else if (isa == 1) rmsnorm_avx2(y, x, w1p, n, eps);
    else g3_rmsnorm_ref(y, x, w1p, n, eps);
}

void g3_rmsnorm_rows(float *y, const float *x, const float *w1p, int rows, int n, float eps) {
#pragma omp parallel for if (rows > 16) schedule(static)
    for (int r = 0; r < rows; r++) g3_rmsnorm(y + (long)r * n, x + (long)r * n, w1p, n, eps);
}

float g3_gelu_tanh(float x) {
    const float k = 0.7978845608028654f;  // sqrt(2/pi)
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

void g3_geglu_ref(float *g, const float *u, long n, int erf_form) {
    for (long i = 0; i < n; i++) {
        float x = g[i];
        float a = erf_form ? 0.5f * x * (1.0f + erff(x * 0.7071067811865476f)) : g3_gelu_tanh(x);
        g[i] = a * u[i];
    }
}

// gelu_tanh(x) = 0.5 x (1 + tanh(u)) = x * sigmoid(2u) = x / (1 + e^(-2u)), u = k (x + 0.044715 x^3):
// one exponential and one division per element instead of libm's tanhf.
__attribute__((target("avx512f"))) static void geglu_tanh_avx512(float *g, const float *u, long n) {
    const __m512 k2 = _mm512_set1_ps(-2.0f * 0.7978845608028654f), c = _mm512_set1_ps(0.044715f), one = _mm512_set1_ps(1.0f);
    long i = 0;
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 x = _mm512_maskz_loadu_ps(m, g + i);
        __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
        __m512 t = _mm512_mul_ps(k2, _mm512_fmadd_ps(c, x3, x));  // -2u
        __m512 y = _mm512_div_ps(x, _mm512_add_ps(one, exp512(t)));
        _mm512_mask_storeu_ps(g + i, m, _mm512_mul_ps(y, _mm512_maskz_loadu_ps(m, u + i)));
    }
}

void g3_geglu(float *g, const float *u, long n, int erf_form) {
    detect();
    const long CH = 16384;  // contiguous chunks per thread task
    long nch = (n + CH - 1) / CH;
#pragma omp parallel for if (n > 65536) schedule(static)
    for (long ch = 0; ch < nch; ch++) {
        long a = ch * CH, len = G3_MIN(CH, n - a);
        if (isa == 2 && !erf_form) geglu_tanh_avx512(g + a, u + a, len);
        else if (isa == 1 && !erf_form) geglu_tanh_avx2(g + a, u + a, len);
        else g3_geglu_ref(g + a, u + a, len, erf_form);
    }
}

float g3_softmax_ref(float *x, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    if (mx == -INFINITY) {  // nothing visible: all zero rather than NaN
        for (int i = 0; i < n; i++) x[i] = 0;
        return -INFINITY;
    }
    double sum = 0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
    return (float)(mx + log(sum));
}

// The same with exp512: prefill attention takes T^2/2 exponentials per head, and libm's
// scalar expf made the softmax cost as much as the score GEMM. Lane sums are float (n is at
// most the context, so the rounding stays near 1e-7 relative).
__attribute__((target("avx512f"))) static float softmax_avx512(float *x, int n) {
    __m512 vmx = _mm512_set1_ps(-INFINITY);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        vmx = _mm512_max_ps(vmx, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), m, x + i));
    }
    float mx = _mm512_reduce_max_ps(vmx);
    if (mx == -INFINITY) {
        for (int i = 0; i < n; i++) x[i] = 0;
        return -INFINITY;
    }
    __m512 vm = _mm512_set1_ps(mx), acc = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        // -inf entries (masked positions, and lanes past n) get exactly 0
        __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), m, x + i);
        __mmask16 live = _mm512_cmp_ps_mask(v, _mm512_set1_ps(-INFINITY), _CMP_NEQ_UQ);
        __m512 e = _mm512_maskz_mov_ps(live, exp512(_mm512_sub_ps(v, vm)));
        acc = _mm512_add_ps(acc, e);
        _mm512_mask_storeu_ps(x + i, m, e);
    }
    const double sum = _mm512_reduce_add_ps(acc);
    __m512 inv = _mm512_set1_ps((float)(1.0 / sum));
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
    }
    return (float)(mx + log(sum));
}

float g3_softmax(float *x, int n) {
    detect();
    return isa == 2 ? softmax_avx512(x, n) : isa == 1 ? softmax_avx2(x, n) : g3_softmax_ref(x, n);
}

void g3_rope_angles(float *c, float *s, int pos, int hd, double base, double scale) {
    for (int d = 0; d < hd / 2; d++) {
        double inv_freq = pow(base, -2.0 * d / hd) / scale;
        double a = pos * inv_freq;
        c[d] = (float)cos(a);
        s[d] = (float)sin(a);
    }
}

void g3_rope(float *x, int nheads, int hd, const float *c, const float *s) {
    int h2 = hd / 2;
    for (int h = 0; h < nheads; h++) {
        float *v = x + (long)h * hd;
        for (int d = 0; d < h2; d++) {
            float a = v[d], b = v[d + h2];
            v[d] = a * c[d] - b * s[d];
            v[d + h2] = b * c[d] + a * s[d];
        }
    }
}

void g3_softcap(float *x, long n, float cap) {
    float inv = 1.0f / cap;
    for (long i = 0; i < n; i++) x[i] = tanhf(x[i] * inv) * cap;
}

// ---- vector primitives ----

float g3_dot_ref(const float *a, const float *b, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

void g3_axpy_ref(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

__attribute__((target("avx512f"))) static float dot_avx512(const float *a, const float *b, int n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

__attribute__((target("avx512f"))) static void axpy_avx512(float *y, float a, const float *x, int n) {
    __m512 va = _mm512_set1_ps(a);
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

float g3_dot(const float *a, const float *b, int n) {
    detect();
    return isa == 2 ? dot_avx512(a, b, n) : isa == 1 ? dot_avx2(a, b, n) : g3_dot_ref(a, b, n);
}

void g3_axpy(float *y, float a, const float *x, int n) {
    detect();
    if (isa == 2) axpy_avx512(y, a, x, n);
    else if (isa == 1) axpy_avx2(y, a, x, n);
    else g3_axpy_ref(y, a, x, n);
}
