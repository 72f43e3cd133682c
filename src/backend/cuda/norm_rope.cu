// norm_rope.cu: RMSNorm (plain, and fused with the residual add between sublayers), the RoPE
// tables, and QK-norm + RoPE of q and k in one pass. These are bound by launches and memory
// latency at decode (a row of 1152 floats), so the aim is few launches and one pass: a block
// per row for the norms, a warp per (row, head) for q/k, whose norm and rotation then happen
// in registers. Sums of squares are accumulated in double, as the CPU's reference does, so the
// exact mode agrees with it to rounding; the weights are stored without Gemma's 1 and the
// op adds it, (1 + w), in f32 as the CPU folded it.
#include "common.cuh"

enum { NORM_T = 256 };

__device__ __forceinline__ float rms_scale(double ss, int n, float eps) { return (float)(1.0 / sqrt(ss / n + eps)); }

__global__ void __launch_bounds__(NORM_T) rmsnorm_k(float *y, float *rstd, const float *x, const float *__restrict__ w, int n,
                                                     float eps) {
    pdl_trigger();  // the GEMV after this may start fetching its weights
    const float *xr = x + (long)blockIdx.x * n;
    float *yr = y + (long)blockIdx.x * n;
    double ss = 0;
    for (int i = threadIdx.x; i < n; i += NORM_T) ss += (double)xr[i] * xr[i];
    const float r = rms_scale(block_sum_nt<NORM_T>(ss), n, eps);
    if (rstd && threadIdx.x == 0) rstd[blockIdx.x] = r;
    for (int i = threadIdx.x; i < n; i += NORM_T) yr[i] = xr[i] * r * (1.0f + w[i]);  // each i read then written by one thread
}

extern "C" int g3cu_rmsnorm_rstd(G3Cuda *cu, float *y, float *rstd, const float *x, const float *w, int rows, int n,
                                 float eps) {
    if (rows < 1 || n < 1) return g3_errorf("cuda rmsnorm: bad shape rows %d, n %d", rows, n);
    rmsnorm_k<<<rows, NORM_T, 0, cu->stream>>>(y, rstd, x, w, n, eps);
    return g3cu_launched("rmsnorm");
}
extern "C" int g3cu_rmsnorm(G3Cuda *cu, float *y, const float *x, const float *w, int rows, int n, float eps) {
    return g3cu_rmsnorm_rstd(cu, y, NULL, x, w, rows, n, eps);
}

// x += rmsnorm(t, w_post); xn = rmsnorm(x, w_next): the residual stream is read and written
// once where three ops would make four passes.
__global__ void __launch_bounds__(NORM_T) add_rmsnorm_k(float *x, float *xn, const float *t, const float *__restrict__ wp,
                                                         const float *__restrict__ wn, int n, float eps) {
    pdl_trigger();
    const long o = (long)blockIdx.x * n;
    double ss = 0;
    for (int i = threadIdx.x; i < n; i += NORM_T) ss += (double)t[o + i] * t[o + i];
    const float r = rms_scale(block_sum_nt<NORM_T>(ss), n, eps);
    double ss2 = 0;
    for (int i = threadIdx.x; i < n; i += NORM_T) {
        float v = x[o + i] + t[o + i] * r * (1.0f + wp[i]);
        x[o + i] = v;
        ss2 += (double)v * v;
    }
    if (!wn) return;  // uniform over the block
    const float r2 = rms_scale(block_sum_nt<NORM_T>(ss2), n, eps);
    for (int i = threadIdx.x; i < n; i += NORM_T) xn[o + i] = x[o + i] * r2 * (1.0f + wn[i]);
}

extern "C" int g3cu_add_rmsnorm(G3Cuda *cu, float *x, float *xn, const float *t, const float *w_post, const float *w_next,
                                int rows, int n, float eps) {
    if (rows < 1 || n < 1) return g3_errorf("cuda add_rmsnorm: bad shape rows %d, n %d", rows, n);
    add_rmsnorm_k<<<rows, NORM_T, 0, cu->stream>>>(x, xn, t, w_post, w_next, n, eps);
    return g3cu_launched("add_rmsnorm");
}

// The angles in double, then rounded to f32, as g3_rope_angles: the GPU's double cos/sin
// are within an ulp of libm's, so the f32 tables agree but for rare ties.
__global__ void rope_tables_k(float *c, float *s, const int32_t *pos, int rows, int hd, double base, double scale) {
    const int h2 = hd / 2;
    const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)rows * h2) return;
    const int r = (int)(i / h2), d = (int)(i % h2);
    double a = pos[r] * (pow(base, -2.0 * d / hd) / scale);
    c[i] = (float)cos(a);
    s[i] = (float)sin(a);
}

extern "C" int g3cu_rope_tables(G3Cuda *cu, float *cos, float *sin, const int32_t *pos, int rows, int hd, double base,
                                double scale) {
    if (rows < 1 || hd < 2 || hd % 2) return g3_errorf("cuda rope tables: bad shape rows %d, head dim %d", rows, hd);
    rope_tables_k<<<g3cu_blocks((long)rows * hd / 2, 256), 256, 0, cu->stream>>>(cos, sin, pos, rows, hd, base, scale);
    return g3cu_launched("rope tables");
}

// One warp per (row, head) over the q heads then the k heads of each row. Lane l holds the
// pairs (d, d + hd/2) for d = l + 32 i: the rotation needs both halves in one thread, and
// lanes read consecutive floats of each half.
enum { QK_MAXP = 4 };  // pairs per lane: head dim up to 256
__global__ void qk_norm_rope_k(float *q, float *k, const float *__restrict__ qw, const float *__restrict__ kw,
                               const float *__restrict__ cs, const float *__restrict__ sn, int rows, int nh, int nkv, int hd,
                               float eps) {
    const long wid = ((long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31, heads = nh + nkv, h2 = hd / 2;
    if (wid >= (long)rows * heads) return;
    const int r = (int)(wid / heads), h = (int)(wid % heads);
    float *v = h < nh ? q + ((long)r * nh + h) * hd : k + ((long)r * nkv + (h - nh)) * hd;
    const float *w = h < nh ? qw : kw;
    float a[QK_MAXP], b[QK_MAXP];
    double ss = 0;
#pragma unroll
    for (int i = 0; i < QK_MAXP; i++) {
        int d = lane + 32 * i;
        a[i] = d < h2 ? v[d] : 0.f;
        b[i] = d < h2 ? v[d + h2] : 0.f;
        ss += (double)a[i] * a[i] + (double)b[i] * b[i];
    }
    if (w) {
        const float rs = rms_scale(warp_sum_d(ss), hd, eps);
#pragma unroll
        for (int i = 0; i < QK_MAXP; i++) {
            int d = lane + 32 * i;
            if (d < h2) { a[i] = a[i] * rs * (1.0f + w[d]); b[i] = b[i] * rs * (1.0f + w[d + h2]); }
        }
    }
#pragma unroll
    for (int i = 0; i < QK_MAXP; i++) {
        int d = lane + 32 * i;
        if (d >= h2) continue;
        float x0 = a[i], x1 = b[i];
        if (cs) {
            float c = cs[(long)r * h2 + d], s = sn[(long)r * h2 + d];
            x0 = __fsub_rn(__fmul_rn(a[i], c), __fmul_rn(b[i], s));  // unfused, as the CPU's C
            x1 = __fadd_rn(__fmul_rn(b[i], c), __fmul_rn(a[i], s));
        }
        v[d] = x0;
        v[d + h2] = x1;
    }
}

extern "C" int g3cu_qk_norm_rope(G3Cuda *cu, float *q, float *k, const float *qw, const float *kw, const float *cos,
                                 const float *sin, int rows, int nh, int nkv, int hd, float eps) {
    if (rows < 1 || nh < 1 || nkv < 0 || (nkv > 0 && !k) || hd < 2 || hd % 2 || hd > 2 * 32 * QK_MAXP)
        return g3_errorf("cuda qk_norm_rope: unsupported shape rows %d, heads %d/%d, head dim %d (even, at most %d)", rows, nh,
                         nkv, hd, 2 * 32 * QK_MAXP);
    long warps = (long)rows * (nh + nkv);
    qk_norm_rope_k<<<g3cu_blocks(warps * 32, 256), 256, 0, cu->stream>>>(q, k, qw, kw, cos, sin, rows, nh, nkv, hd, eps);
    return g3cu_launched("qk_norm_rope");
}
