// vops.c: see vops.h.
#include "vops.h"

#include <math.h>

void g3_vops_layernorm(float *y, const float *x, const float *w, const float *b, int R, int n, float eps) {
#pragma omp parallel for schedule(static) if ((long)R * n > 32768)
    for (int r = 0; r < R; r++) {
        const float *xr = x + (long)r * n;
        float *yr = y + (long)r * n;
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
}

void g3_vops_bias(float *y, const float *b, int R, int n) {
#pragma omp parallel for schedule(static) if ((long)R * n > 65536)
    for (int r = 0; r < R; r++)
        for (int i = 0; i < n; i++) y[(long)r * n + i] += b[i];
}

void g3_vops_gelu(float *x, long n, int erf_form) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (long i = 0; i < n; i++) {
        const float v = x[i];
        x[i] = erf_form ? 0.5f * v * (1.0f + erff(v * 0.70710678118654752f))
                        : 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
    }
}

void g3_vops_softmax_scaled(float *x, int R, int n, float scale) {
#pragma omp parallel for schedule(static) if ((long)R * n > 32768)
    for (int r = 0; r < R; r++) {
        float *xr = x + (long)r * n;
        float mx = -INFINITY;
        for (int i = 0; i < n; i++) mx = fmaxf(mx, xr[i] * scale);
        double sum = 0;
        for (int i = 0; i < n; i++) sum += xr[i] = expf(xr[i] * scale - mx);
        const float inv = (float)(1.0 / sum);
        for (int i = 0; i < n; i++) xr[i] *= inv;
    }
}
