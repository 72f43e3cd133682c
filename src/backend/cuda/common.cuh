// common.cuh: what every CUDA file of the backend shares: the context, error reporting,
// 16-byte weight loads with their conversion to f32, and warp reductions. Internal to
// src/backend/cuda (the interface is g3cuda.h).
#ifndef G3_CUDA_COMMON_CUH
#define G3_CUDA_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "g3cuda.h"

extern "C" int g3_errorf(const char *fmt, ...);

struct G3Cuda {
    int dev, sms;
    int pdl;  // programmatic dependent launch for the streaming GEMV (sm_90+, G3_CUDA_PDL != 0)
    int smem_optin;  // shared memory a block may opt in to (bytes)
    int xent_smem;   // the cross-entropy may keep its row in shared memory (G3_CUDA_XENT_SMEM != 0)
    char name[256];
    cudaStream_t stream;
    cublasHandle_t blas;
    void *scratch;  // grown on demand (g3cu_scratch), shared by the ops of one stream
    size_t scratch_bytes;
    void *blas_ws;  // cuBLAS's own workspace, fixed so that its calls can be captured in graphs
};

// Scratch of at least `bytes` (NULL + error): valid until the next op that asks for scratch.
void *g3cu_scratch(G3Cuda *cu, size_t bytes);

// Reports a failed launch by the kernel's name (the launch error; faults inside the kernel
// surface at the next sync).
static inline int g3cu_launched(const char *what) {
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? 0 : g3_errorf("cuda %s: %s", what, cudaGetErrorString(e));
}
static inline int g3cu_check(cudaError_t e, const char *what) {
    return e == cudaSuccess ? 0 : g3_errorf("cuda %s: %s", what, cudaGetErrorString(e));
}

// ---- weights: one 16-byte chunk in, E floats out ----
// bf16 is the top half of an f32, so widening is a shift (exact); f16 through the hardware
// conversion (exact too). Weight loads bypass L1 (read once: they would only evict x).
template <typename WT> struct Chunk;
struct Bf16 {};
struct F16 {};
template <> struct Chunk<float> {
    enum { E = 4 };
    static __device__ __forceinline__ void widen(const uint4 u, float *o) {
        o[0] = __uint_as_float(u.x); o[1] = __uint_as_float(u.y);
        o[2] = __uint_as_float(u.z); o[3] = __uint_as_float(u.w);
    }
    static __device__ __forceinline__ float one(const void *p, long i) { return ((const float *)p)[i]; }
};
template <> struct Chunk<Bf16> {
    enum { E = 8 };
    static __device__ __forceinline__ void widen(const uint4 u, float *o) {
        const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int i = 0; i < 4; i++) { o[2 * i] = __uint_as_float(w[i] << 16); o[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u); }
    }
    static __device__ __forceinline__ float one(const void *p, long i) {
        return __uint_as_float((uint32_t)((const uint16_t *)p)[i] << 16);
    }
};
template <> struct Chunk<F16> {
    enum { E = 8 };
    static __device__ __forceinline__ void widen(const uint4 u, float *o) {
        const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            __half2 h = *(const __half2 *)&w[i];
            float2 f = __half22float2(h);
            o[2 * i] = f.x; o[2 * i + 1] = f.y;
        }
    }
    static __device__ __forceinline__ float one(const void *p, long i) { return __half2float(((const __half *)p)[i]); }
};

// A 16-byte load that does not allocate in L1 (streamed weights), through the read-only path.
static __device__ __forceinline__ uint4 ld_stream(const void *p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}

static __device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
static __device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
static __device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Programmatic dependent launch (sm_90): a kernel launched with the attribute may start while
// the one before it still runs, and waits here before it reads what that one wrote; a kernel
// that lets its successor start early says so with pdl_trigger. Both are no-ops for kernels
// launched without the attribute, and below sm_90.
static __device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
static __device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
static __device__ __forceinline__ void prefetch_l2(const void *p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }

// GELU as the CPU reference (ops.c) writes it, with the GPU's tanhf/erff (within 2 ulp of libm)
static __device__ __forceinline__ float gelu(float x, int erf_form) {
    if (erf_form) return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
    const float k = 0.7978845608028654f;  // sqrt(2/pi)
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

// Sum of v over a block of NT threads (a multiple of 32), in double, warps then their partials
// (every thread gets the total); the max likewise. Each call's shared slots are its own.
template <int NT> static __device__ __forceinline__ double block_sum_nt(double v) {
    __shared__ double part[NT / 32];
    __shared__ double total;
    v = warp_sum_d(v);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x < 32) {
        double s = threadIdx.x < NT / 32 ? part[threadIdx.x] : 0.0;
        s = warp_sum_d(s);
        if (threadIdx.x == 0) total = s;
    }
    __syncthreads();
    const double t = total;
    __syncthreads();  // part / total are reused by the next call
    return t;
}
template <int NT> static __device__ __forceinline__ float block_max_nt(float v) {
    __shared__ float part[NT / 32];
    __shared__ float total;
    v = warp_max(v);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x < 32) {
        float s = threadIdx.x < NT / 32 ? part[threadIdx.x] : -INFINITY;
        s = warp_max(s);
        if (threadIdx.x == 0) total = s;
    }
    __syncthreads();
    const float t = total;
    __syncthreads();
    return t;
}

// f32 -> bf16 bits, round to nearest even, NaN kept NaN: the CPU's g3_f32_to_bf16.
static __device__ __forceinline__ uint16_t to_bf16(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline int g3cu_blocks(long n, int per) { return (int)((n + per - 1) / per); }
// Blocks of 256 threads for a grid-stride loop over n elements: one per 256 elements, at most
// eight per multiprocessor (enough to fill the card; the loop takes the rest), at least one.
static inline int g3cu_grid(const G3Cuda *cu, long n) {
    const long b = (n + 255) / 256, cap = (long)cu->sms * 8;
    return (int)(b < 1 ? 1 : b < cap ? b : cap);
}

#endif
