// argmax.cu: greedy decoding's choice on the GPU, so that only a token id crosses back to the
// host. One block of 1024 threads per row (a 262,144-entry vocabulary is 1 MB: a few
// microseconds); ties go to the lowest index, and each thread starts from an element it
// owns, so the result is the CPU's `if (x[i] > x[b]) b = i` scan. A row with a NaN or +inf,
// or only -inf, gives -1 (the engine's check of the logits, done where they are).
#include <math.h>

#include "common.cuh"

enum { AM_T = 1024 };

__device__ __forceinline__ void better(float &v, int &i, float v2, int i2) {
    if (v2 > v || (v2 == v && i2 < i)) { v = v2; i = i2; }
}

__global__ void __launch_bounds__(AM_T) argmax_k(int32_t *out, const float *__restrict__ x, int n) {
    __shared__ float sv[AM_T / 32];
    __shared__ int si[AM_T / 32];
    const float *xr = x + (long)blockIdx.x * n;
    int bi = threadIdx.x < n ? threadIdx.x : 0;
    float bv = xr[bi];
    int bad = !(bv < INFINITY);  // NaN or +inf anywhere: no choice (-1), as the host checks
    for (int i = threadIdx.x + AM_T; i < n; i += AM_T) {
        bad |= !(xr[i] < INFINITY);
        better(bv, bi, xr[i], i);
    }
    bad = __syncthreads_or(bad);
    for (int o = 16; o > 0; o >>= 1) better(bv, bi, __shfl_xor_sync(0xffffffffu, bv, o), __shfl_xor_sync(0xffffffffu, bi, o));
    if ((threadIdx.x & 31) == 0) { sv[threadIdx.x >> 5] = bv; si[threadIdx.x >> 5] = bi; }
    __syncthreads();
    if (threadIdx.x < 32) {
        bv = sv[threadIdx.x];
        bi = si[threadIdx.x];
        for (int o = 16; o > 0; o >>= 1) better(bv, bi, __shfl_xor_sync(0xffffffffu, bv, o), __shfl_xor_sync(0xffffffffu, bi, o));
        if (threadIdx.x == 0) out[blockIdx.x] = bad || !(bv > -INFINITY) ? -1 : bi;
    }
}

extern "C" int g3cu_argmax(G3Cuda *cu, int32_t *out, const float *x, int rows, int n) {
    if (rows < 1 || n < 1) return g3_errorf("cuda argmax: bad shape rows %d, n %d", rows, n);
    argmax_k<<<rows, AM_T, 0, cu->stream>>>(out, x, n);
    return g3cu_launched("argmax");
}
