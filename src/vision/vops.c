// vops.c: see vops.h. The scalar references, and the dispatch to the AVX-512 versions.
#include "vops.h"

#include <math.h>

#include "../base/base.h"
#include "../kernels/kernels.h"

static int vec(int fast) { return fast && g3_kernels_level() >= G3_ISA_AVX512; }

static void layernorm_row(float *yr, const float *xr, const float *w, const float *b, int n, float eps) {
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++) s += xr[i];
    const double mean = s / n;
    for (int i = 0; i < n; i++) {
        double d = xr[i] - mean;
        ss += d * d;
    }
    const double rstd = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) yr[i] = (float)((xr[i] - mean) * rstd) * w[i] + b[i];
}

void g3_vops_layernorm(float *y, const float *x, const float *w, const float *b, int R, int n, float eps, int fast) {
    const int v = vec(fast);
#pragma omp parallel for schedule(static) if ((long)R * n > 32768)
    for (int r = 0; r < R; r++) {
        if (v) g3_vops_layernorm_avx512(y + (long)r * n, x + (long)r * n, w, b, n, eps);
        else layernorm_row(y + (long)r * n, x + (long)r * n, w, b, n, eps);
    }
}

void g3_vops_bias(float *y, const float *b, int R, int n) {
#pragma omp parallel for schedule(static) if ((long)R * n > 65536)
    for (int r = 0; r < R; r++)
        for (int i = 0; i < n; i++) y[(long)r * n + i] += b[i];
}

void g3_vops_bias_gelu(float *x, const float *b, int R, int n, int erf_form, int fast) {
    const int v = vec(fast) && !erf_form;
#pragma omp parallel for schedule(static) if ((long)R * n > 65536)
    for (int r = 0; r < R; r++) {
        float *xr = x + (long)r * n;
        if (v && b) {
            g3_vops_bias_gelu_tanh_avx512(xr, b, n);
            continue;
        }
        if (v) {  // no bias: the vector kernel over a row of zeros, a chunk at a time
            static const float zero[256];
            for (int i = 0; i < n; i += 256) g3_vops_bias_gelu_tanh_avx512(xr + i, zero, G3_MIN(256, n - i));
            continue;
        }
        for (int i = 0; i < n; i++) {
            const float t = b ? xr[i] + b[i] : xr[i];
            xr[i] = erf_form ? 0.5f * t * (1.0f + erff(t * 0.70710678118654752f))
                             : 0.5f * t * (1.0f + tanhf(0.79788456080286536f * (t + 0.044715f * t * t * t)));
        }
    }
}

float g3_vops_softmax_exp(float *x, int n, float scale, int fast) {
    if (vec(fast)) return g3_vops_softmax_exp_avx512(x, n, scale);
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = fmaxf(mx, x[i] * scale);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += x[i] = expf(x[i] * scale - mx);
    return (float)sum;
}
