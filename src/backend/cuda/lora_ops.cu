// lora_ops.cu: what training a LoRA adapter on the GPU adds to the kernels (issue 19):
//   - LoRA's scale and dropout (backend.h `dropout`): y = mask(x) * scale, or y += it, the
//     mask drawn per element from g3_dropout_keep (backend.h), the same function the CPU
//     backend calls, so both draw the same mask bit for bit and backward redraws forward's;
//   - widening a 16-bit weight to f32 (the input gradient dx = dy . W of a frozen bf16/f16
//     base: cuBLAS's f32 product then runs on the widened copy, the base itself staying as
//     stored).
#include "common.cuh"

extern "C" {
#include "../backend.h"
}

__global__ void dropout_k(float *__restrict__ y, const float *__restrict__ x, long n, float p, float scale, uint64_t seed,
                          uint32_t tag, int accumulate) {
    for (long e = (long)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (long)gridDim.x * blockDim.x) {
        const int keep = g3_dropout_keep(seed, tag, e, p);
        if (accumulate) {  // rounded as the CPU does (no fused multiply-add): the same bits
            if (keep) y[e] = __fadd_rn(y[e], __fmul_rn(x[e], scale));
        } else {
            y[e] = keep ? x[e] * scale : 0.0f;
        }
    }
}

extern "C" int g3cu_dropout(G3Cuda *cu, float *y, const float *x, long n, float p, float scale, uint64_t seed, uint32_t tag,
                            int accumulate) {
    if (n <= 0) return n < 0 ? g3_errorf("cuda dropout: negative length") : 0;
    dropout_k<<<g3cu_grid(cu, n), 256, 0, cu->stream>>>(y, x, n, p, scale, seed, tag, accumulate);
    return g3cu_launched("dropout");
}

template <typename WT>
__global__ void widen16_k(float *__restrict__ o, const void *__restrict__ w, long n) {
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) o[i] = Chunk<WT>::one(w, i);
}

extern "C" int g3cu_widen(G3Cuda *cu, float *o, const void *w, G3DType wt, long n) {
    if (n <= 0) return 0;
    if (wt == G3_BF16) widen16_k<Bf16><<<g3cu_grid(cu, n), 256, 0, cu->stream>>>(o, w, n);
    else if (wt == G3_F16) widen16_k<F16><<<g3cu_grid(cu, n), 256, 0, cu->stream>>>(o, w, n);
    else if (wt == G3_F32) return g3cu_copy(cu, o, w, (size_t)n * sizeof(float));
    else return g3_errorf("cuda widen: no kernel for weights of type %s", g3_dtype_name(wt));
    return g3cu_launched("widen");
}
