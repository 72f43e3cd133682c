// vision_ops.cu: the vision tower's row-wise ops on the GPU (vision_cuda.h): LayerNorm with a
// bias (a block per row, statistics in double as the CPU reference computes them: two passes,
// the mean then the squared deviations) and the bias add with an optional GELU (one
// grid-stride pass; the CPU reference's formulas).
#include "common.cuh"
#include "vision_cuda.h"

enum { LN_T = 256 };

__global__ void __launch_bounds__(LN_T) vis_layernorm_k(float *y, const float *x, const float *__restrict__ w,
                                                         const float *__restrict__ b, int n, float eps) {
    const float *xr = x + (long)blockIdx.x * n;
    float *yr = y + (long)blockIdx.x * n;
    double s = 0;
    for (int i = threadIdx.x; i < n; i += LN_T) s += xr[i];
    const double mean = block_sum_nt<LN_T>(s) / n;
    double ss = 0;
    for (int i = threadIdx.x; i < n; i += LN_T) {
        const double d = xr[i] - mean;
        ss += d * d;
    }
    const double rstd = 1.0 / sqrt(block_sum_nt<LN_T>(ss) / n + eps);
    for (int i = threadIdx.x; i < n; i += LN_T) yr[i] = (float)((xr[i] - mean) * rstd) * w[i] + b[i];  // read then written by one thread
}

extern "C" int g3cu_layernorm(G3Cuda *cu, float *y, const float *x, const float *w, const float *b, int rows, int n, float eps) {
    if (rows < 1 || n < 1) return g3_errorf("cuda layernorm: bad shape rows %d, n %d", rows, n);
    vis_layernorm_k<<<rows, LN_T, 0, cu->stream>>>(y, x, w, b, n, eps);
    return g3cu_launched("layernorm");
}

__global__ void vis_bias_act_k(float *y, const float *__restrict__ b, long total, int n, int act) {
    const long stride = (long)gridDim.x * blockDim.x;
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        float t = y[i];
        if (b) t += b[i % n];
        if (act) t = gelu(t, act == 2);
        y[i] = t;
    }
}

extern "C" int g3cu_bias_act(G3Cuda *cu, float *y, const float *b, long rows, int n, int act) {
    if (rows < 0 || n < 1) return g3_errorf("cuda bias_act: bad shape rows %ld, n %d", rows, n);
    const long total = rows * n;
    if (!total || (!b && !act)) return 0;
    vis_bias_act_k<<<g3cu_grid(cu, total), 256, 0, cu->stream>>>(y, b, total, n, act);
    return g3cu_launched("bias_act");
}
