// elementwise.cu: GeGLU, the residual add and the softcap: one pass each, four floats per
// thread per step (16-byte loads and stores) in a grid sized to the card and walked
// grid-stride, since these are bound by memory alone. The formulas are the CPU reference's
// (ops.c), in the same order, with the GPU's tanhf/erff/expf (within 2 ulp of libm).
#include "common.cuh"

// The vector loop runs only where both pointers are 16-byte aligned; the scalar loop takes
// the rest (and everything when they are not).
template <typename Op>
__global__ void map2_k(float *__restrict__ y, const float *__restrict__ x, long n, Op op) {
    const long tid = (long)blockIdx.x * blockDim.x + threadIdx.x, nth = (long)gridDim.x * blockDim.x;
    long nv = ((uintptr_t)y % 16 == 0 && (x == NULL || (uintptr_t)x % 16 == 0)) ? n / 4 : 0;
    for (long i = tid; i < nv; i += nth) {
        float4 a = ((float4 *)y)[i], b = x ? ((const float4 *)x)[i] : make_float4(0, 0, 0, 0);
        a.x = op(a.x, b.x); a.y = op(a.y, b.y); a.z = op(a.z, b.z); a.w = op(a.w, b.w);
        ((float4 *)y)[i] = a;
    }
    for (long i = nv * 4 + tid; i < n; i += nth) y[i] = op(y[i], x ? x[i] : 0.f);
}

struct GegluOp {
    int erf_form;
    __device__ float operator()(float g, float u) const { return gelu(g, erf_form) * u; }
};
struct AddOp {
    __device__ float operator()(float y, float x) const { return y + x; }
};
struct AxpyOp {
    float alpha;
    __device__ float operator()(float y, float x) const { return fmaf(alpha, x, y); }
};
struct SoftcapOp {
    float cap, inv;
    __device__ float operator()(float y, float) const { return tanhf(y * inv) * cap; }
};

template <typename Op>
static int map2(G3Cuda *cu, float *y, const float *x, long n, Op op, const char *what) {
    if (n < 0) return g3_errorf("cuda %s: negative length", what);
    if (n == 0) return 0;
    long b = (n / 4 + 255) / 256, cap = (long)cu->sms * 8;
    map2_k<<<(int)(b < 1 ? 1 : b < cap ? b : cap), 256, 0, cu->stream>>>(y, x, n, op);
    return g3cu_launched(what);
}

extern "C" int g3cu_geglu(G3Cuda *cu, float *g, const float *u, long n, int erf_form) {
    return map2(cu, g, u, n, GegluOp{erf_form}, "geglu");
}
extern "C" int g3cu_add(G3Cuda *cu, float *y, const float *x, long n) { return map2(cu, y, x, n, AddOp{}, "add"); }
extern "C" int g3cu_axpy(G3Cuda *cu, float *y, float alpha, const float *x, long n) {
    return map2(cu, y, x, n, AxpyOp{alpha}, "axpy");
}
extern "C" int g3cu_softcap(G3Cuda *cu, float *x, long n, float cap) {
    if (!(cap > 0)) return g3_errorf("cuda softcap: cap %g must be positive", cap);
    return map2(cu, x, (const float *)NULL, n, SoftcapOp{cap, 1.0f / cap}, "softcap");
}
