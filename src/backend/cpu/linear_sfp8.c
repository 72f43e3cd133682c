// linear_sfp8.c: the CPU linear layer over gemma.cpp's SFP8 weights (see linear_quant.h).
// Decode streams each weight row once (one byte per weight) through the row dot; prefill widens
// slices of rows to f32 once and lets the f32 GEMM reuse them across the activation rows.
#include <string.h>

#include "../../base/base.h"
#include "../../kernels/cpu/sfp8_dot.h"
#include "../../kernels/kernels.h"
#include "linear_quant.h"

static _Thread_local float *wf_buf, *yt_buf;
static _Thread_local size_t wf_cap, yt_cap;
static _Thread_local uint16_t *xp_buf;  // the activations in the kernel's layout (prep)
static _Thread_local size_t xp_cap;

static float *grow(float **buf, size_t *cap, size_t n) {
    if (n > *cap) {
        g3_free_aligned(*buf);
        *buf = g3_malloc_aligned(n * sizeof **buf);
        *cap = *buf ? n : 0;
    }
    return *buf;
}

static int linear_gemm(float *y, const float *x, const G3Weight *w, int R, const G3Sfp8Kernels *kern) {
    const int N = (int)w->rows, K = (int)w->cols;
    const int S = (int)G3_MIN((int64_t)N, G3_MAX((int64_t)64, ((int64_t)4 << 20) / K));
    float *wf = grow(&wf_buf, &wf_cap, (size_t)S * K), *yt = S < N ? grow(&yt_buf, &yt_cap, (size_t)R * S) : y;
    if (!wf || !yt) return g3_errorf("linear_sfp8: out of memory");
    for (int n0 = 0; n0 < N; n0 += S) {
        const int ns = G3_MIN(S, N - n0);
#pragma omp parallel for schedule(static) if ((long)ns * K > 65536)
        for (int n = 0; n < ns; n++) kern->to_f32(wf + (size_t)n * K, g3_weight_row(w, n0 + n), K);
        g3_sgemm(0, 1, R, ns, K, x, wf, yt, 0);
        if (yt != y)
            for (int r = 0; r < R; r++) memcpy(y + (size_t)r * N + n0, yt + (size_t)r * ns, (size_t)ns * sizeof *y);
    }
    return 0;
}

int g3_cpu_linear_sfp8(float *y, const float *x, const G3Weight *w, int R, int exact) {
    if (w->type != G3_SFP8) return g3_errorf("linear_sfp8: type %s is not SFP8", g3_dtype_name(w->type));
    const int N = (int)w->rows, K = (int)w->cols;
    const G3Sfp8Kernels *kern = exact ? g3_sfp8_kernels_at(G3_SFP8_SCALAR) : g3_sfp8_kernels();
    if (!exact && R >= G3_SFP8_GEMM_MIN_ROWS) return linear_gemm(y, x, w, R, kern);
    if (kern->prep) {  // bf16 activations in the kernel's order, prepared once for all N rows
        const size_t need = (size_t)R * K;
        if (need > xp_cap) {
            g3_free_aligned(xp_buf);
            xp_buf = g3_malloc_aligned(need * sizeof *xp_buf);
            xp_cap = xp_buf ? need : 0;
        }
        if (!xp_buf) return g3_errorf("linear_sfp8: out of memory");
        for (int r = 0; r < R; r++) kern->prep(xp_buf + (size_t)r * K, x + (long)r * K, K);
        const uint16_t *xp = xp_buf;
#pragma omp parallel for schedule(static) if ((long)N * K * R > 65536)
        for (int n = 0; n < N; n++) {
            const uint8_t *row = g3_weight_row(w, n);
            for (int r = 0; r < R; r++) y[(long)r * N + n] = kern->dot_prep(row, xp + (size_t)r * K, x + (long)r * K, K);
        }
        return 0;
    }
#pragma omp parallel for schedule(static) if ((long)N * K * R > 65536)
    for (int n = 0; n < N; n++) {
        const uint8_t *row = g3_weight_row(w, n);
        for (int r = 0; r < R; r++) y[(long)r * N + n] = kern->dot(row, x + (long)r * K, K);
    }
    return 0;
}
