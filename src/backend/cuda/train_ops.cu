// train_ops.cu: the backward halves of the row-wise ops and the loss, for training on the GPU
// (issue 17): RMSNorm backward (with its weight gradient), RoPE backward, GeGLU backward (and
// the MLP-down epilogue that recomputes the GeGLU output beside it), the embedding's scatter,
// and the fused softmax cross-entropy. The formulas are the CPU reference's (kernels/
// train_ops.c) in the same order; row sums go in double as there. Nothing here adds with
// atomics, so a step gives the same bits every time it runs (a resumed run retraces the
// uninterrupted one): RMSNorm's weight gradient goes through per-block partials summed in
// block order, and the embedding's scatter adds each id's rows in row order (the ids are
// grouped on the host, where they come from).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.cuh"
#include "../../kernels/adamw8.h"  // g3_adamw8_code: the quantizer the CPU tests hold to the reference

namespace {

// Sum over the block of v (any blockDim that is a multiple of 32, at most 1024), in double;
// every thread gets the result.
__device__ double block_sum_d(double v, double *sh) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum_d(v);
    __syncthreads();  // sh may still be read from the previous call
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    double s = 0;
    for (int i = 0; i < nw; i++) s += sh[i];
    return s;
}
__device__ float block_max(float v, float *sh) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    float m = -INFINITY;
    for (int i = 0; i < nw; i++) m = fmaxf(m, sh[i]);
    return m;
}

// One warp a row, rows grid-stride over the grid's warps: the row's sum goes through warp
// shuffles, with no block barrier (the block-a-row kernel before waited at two barriers a row:
// 5.0 ms of a GemmaZero step for ~1.5 ms of memory traffic; the QK-norms' rows are only
// head_dim long). With part, each warp adds into its own shared partial row (lane l owns
// columns l, l + 32, ...: no races), and the block's partial is those rows summed in warp order.
__global__ void rmsnorm_bwd_k(float *__restrict__ dx, float *__restrict__ part, const float *__restrict__ dy,
                              const float *__restrict__ x, const float *__restrict__ w, const float *__restrict__ rstd, int R,
                              int n, int accumulate) {
    extern __shared__ float dws[];  // [warps][n] when part
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    float *mine = part ? dws + (long)warp * n : NULL;
    if (part) {
        for (int i = threadIdx.x; i < nw * n; i += blockDim.x) dws[i] = 0.f;
        __syncthreads();
    }
    for (long r = (long)blockIdx.x * nw + warp; r < R; r += (long)gridDim.x * nw) {
        const float *dyr = dy + r * n, *xr = x + r * n;
        const float rs = rstd[r];
        double s = 0;
        for (int i = lane; i < n; i += 32) s += (double)dyr[i] * (1.0f + w[i]) * xr[i];
        s = warp_sum_d(s);
        const float c = (float)(s * rs * rs * rs / n);
        float *dxr = dx + r * n;
        for (int i = lane; i < n; i += 32) {
            const float d = rs * dyr[i] * (1.0f + w[i]) - xr[i] * c;
            dxr[i] = accumulate ? dxr[i] + d : d;
            if (mine) mine[i] += dyr[i] * xr[i] * rs;
        }
    }
    if (part) {
        __syncthreads();
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            float v = 0.f;
            for (int k = 0; k < nw; k++) v += dws[(long)k * n + i];
            part[(long)blockIdx.x * n + i] = v;
        }
    }
}

// dw[i] += the blocks' partials, in block order
__global__ void colsum_k(float *__restrict__ dw, const float *__restrict__ part, int blocks, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float s = 0.f;
    for (int b = 0; b < blocks; b++) s += part[(long)b * n + i];
    dw[i] += s;
}

// forward: y_d = a c - b s, y_{d+h2} = b c + a s; its transpose rotates by -angle
__global__ void rope_bwd_k(float *__restrict__ dx, const float *__restrict__ cs, const float *__restrict__ sn, long R, int nh,
                           int hd) {
    const int h2 = hd / 2;
    const long n = R * nh * h2;
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        const long r = i / ((long)nh * h2);
        const int rem = (int)(i % ((long)nh * h2)), h = rem / h2, d = rem % h2;
        float *v = dx + (r * nh + h) * hd;
        const float c = cs[r * h2 + d], s = sn[r * h2 + d], ya = v[d], yb = v[d + h2];
        v[d] = ya * c + yb * s;
        v[d + h2] = yb * c - ya * s;
    }
}

__device__ __forceinline__ void gelu_and_grad(float x, int erf_form, float *f, float *df) {
    if (erf_form) {
        const float cdf = 0.5f * (1.0f + erff(x * 0.7071067811865476f));
        *f = x * cdf;
        *df = cdf + x * 0.3989422804014327f * expf(-0.5f * x * x);
    } else {
        const float k = 0.7978845608028654f, c = 0.044715f;
        const float th = tanhf(k * (x + c * x * x * x));
        *f = 0.5f * x * (1.0f + th);
        *df = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * k * (1.0f + 3.0f * c * x * x);
    }
}

// dg = da u gelu'(g), du = da gelu(g); with a, also a = gelu(g) u. da may alias dg.
__global__ void geglu_bwd_k(float *__restrict__ a, float *dg, float *__restrict__ du, const float *da, const float *__restrict__ g,
                            const float *__restrict__ u, long n, int erf_form) {
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        float f, df;
        const float d = da[i], uu = u[i];
        gelu_and_grad(g[i], erf_form, &f, &df);
        if (a) a[i] = f * uu;
        dg[i] = d * uu * df;
        du[i] = d * f;
    }
}

// One block per distinct id: its rows (rows[start[u] .. start[u + 1]), ascending) added in order.
__global__ void embed_bwd_k(float *__restrict__ dE, const float *__restrict__ dx, const int32_t *__restrict__ uid,
                            const int32_t *__restrict__ start, const int32_t *__restrict__ rows, int C, float scale) {
    const int u = blockIdx.x, k0 = start[u], k1 = start[u + 1];
    float *row = dE + (long)uid[u] * C;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        float v = row[i];
        for (int k = k0; k < k1; k++) v += dx[(long)rows[k] * C + i] * scale;
        row[i] = v;
    }
}

// One block per row of logits: the cap (in place), the max, the sum of exponentials in
// double, the loss in double; with backward, the row becomes d loss / d z * dscale, and with
// zb also that gradient rounded to bf16 (the operand of the head's two backward products in
// bf16 mode, made where the value is: a pass over 1 GB less per chunk than rounding it later).
// With SM the row is read from global memory once, into shared memory (V floats: up to ~56K
// on Hopper), and the max, the sum and the gradient read it there: three passes over the
// logits became one (GemmaZero's head: 8.1 ms a step, the largest op after the products).
// Same values and the same order of sums either way.
template <bool SM>
__global__ void xent_k(double *__restrict__ loss, float *__restrict__ z, uint16_t *__restrict__ zb, long zbp,
                       const int32_t *__restrict__ targets, int V, float cap, float dscale, int backward) {
    __shared__ double red[32];
    __shared__ float redf[32];
    extern __shared__ float row[];  // SM: [V]
    const int r = blockIdx.x, t = targets[r];
    float *zr = z + (long)r * V;
    const float *src = SM ? row : zr;  // where the passes after the first read the (capped) row
    uint16_t *zbr = zb ? zb + (long)r * zbp : NULL;  // zbp >= V: rows padded to an aligned pitch
    if (t < 0) {
        if (threadIdx.x == 0) loss[r] = 0;
        if (backward) {
            for (int i = threadIdx.x; i < V; i += blockDim.x) zr[i] = 0.f;
            if (zbr)
                for (long i = threadIdx.x; i < zbp; i += blockDim.x) zbr[i] = 0;
        }
        return;
    }
    const float inv = cap > 0 ? 1.0f / cap : 0.f;
    float mx = -INFINITY;
#pragma unroll 4
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float v = zr[i];
        if (cap > 0) {
            v = tanhf(v * inv) * cap;
            if (!SM || !backward) zr[i] = v;
        }
        if (SM) row[i] = v;
        mx = fmaxf(mx, v);
    }
    mx = block_max(mx, redf);  // its barriers also make row[] visible to the block
    double s = 0;
    for (int i = threadIdx.x; i < V; i += blockDim.x) s += expf(src[i] - mx);
    s = block_sum_d(s, red);
    const double lse = mx + log(s);
    const float zt = src[t];  // every thread reads it before any writes below
    __syncthreads();
    if (threadIdx.x == 0) loss[r] = lse - zt;
    if (!backward) return;
    const float shift = (float)(lse - mx);
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        const float v = src[i];
        float d = expf((v - mx) - shift) * dscale - (i == t ? dscale : 0.0f);
        if (cap > 0) {
            const float q = v / cap;
            d *= 1.0f - q * q;
        }
        zr[i] = d;
        if (zbr) zbr[i] = to_bf16(d);
    }
    if (zbr)  // the pitch's padding as zeros: dxf's inner dimension is padded to it (bf16_product)
        for (long i = V + threadIdx.x; i < zbp; i += blockDim.x) zbr[i] = 0;
}

}  // namespace

extern "C" int g3cu_rmsnorm_backward(G3Cuda *cu, float *dx, float *dw, const float *dy, const float *x, const float *w,
                                     const float *rstd, int R, int n, int accumulate) {
    if (R < 1 || n < 1) return R == 0 ? 0 : g3_errorf("cuda rmsnorm backward: bad shape %d x %d", R, n);
    int warps = 8;  // fewer where the warps' partial rows would not fit in 96 KB
    while (dw && warps > 1 && (size_t)warps * n * sizeof(float) > 96 * 1024) warps /= 2;
    const size_t shm = dw ? (size_t)warps * n * sizeof(float) : 0;
    if (shm > 48 * 1024 &&
        g3cu_check(cudaFuncSetAttribute(rmsnorm_bwd_k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shm), "rmsnorm backward"))
        return -1;
    const int threads = warps * 32;
    const long rows_per_block = (R + warps - 1) / warps;
    const int blocks = rows_per_block < cu->sms * 4 ? (int)rows_per_block : cu->sms * 4;
    float *part = NULL;
    if (dw && !(part = (float *)g3cu_scratch(cu, (size_t)blocks * n * sizeof(float)))) return -1;
    rmsnorm_bwd_k<<<blocks, threads, shm, cu->stream>>>(dx, part, dy, x, w, rstd, R, n, accumulate);
    if (g3cu_launched("rmsnorm backward")) return -1;
    if (dw) colsum_k<<<(n + 255) / 256, 256, 0, cu->stream>>>(dw, part, blocks, n);
    return g3cu_launched("rmsnorm backward (weight)");
}

extern "C" int g3cu_rope_backward(G3Cuda *cu, float *dx, const float *cs, const float *sn, int R, int nh, int hd) {
    const long n = (long)R * nh * (hd / 2);
    if (n == 0) return 0;
    rope_bwd_k<<<g3cu_grid(cu, n), 256, 0, cu->stream>>>(dx, cs, sn, R, nh, hd);
    return g3cu_launched("rope backward");
}

extern "C" int g3cu_geglu_backward(G3Cuda *cu, float *a, float *dg, float *du, const float *da, const float *g, const float *u, long n,
                                   int erf_form) {
    if (n == 0) return 0;
    geglu_bwd_k<<<g3cu_grid(cu, n), 256, 0, cu->stream>>>(a, dg, du, da, g, u, n, erf_form);
    return g3cu_launched("geglu backward");
}

extern "C" int g3cu_embed_group(int32_t *g, const int32_t *hid, int R) {
    // a stable sort of row indices by id (merge sort in two buffers: R is a few 10K), then the
    // distinct ids and where each one's rows start
    int32_t *ord = g, *uid = g + R, *start = g + 2 * R;
    for (int r = 0; r < R; r++) ord[r] = r;
    int32_t *x = ord, *y = uid;  // uid doubles as the merge buffer until it is filled
    for (int w = 1; w < R; w *= 2) {
        for (int lo = 0; lo < R; lo += 2 * w) {
            int mid = lo + w < R ? lo + w : R, hi = lo + 2 * w < R ? lo + 2 * w : R, i = lo, j = mid, k = lo;
            while (i < mid && j < hi) y[k++] = hid[x[j]] < hid[x[i]] ? x[j++] : x[i++];
            while (i < mid) y[k++] = x[i++];
            while (j < hi) y[k++] = x[j++];
        }
        int32_t *t = x; x = y; y = t;
    }
    if (x != ord) memcpy(ord, x, sizeof(int32_t) * (size_t)R);
    int nu = 0;
    for (int k = 0; k < R; k++)
        if (k == 0 || hid[ord[k]] != hid[ord[k - 1]]) start[nu++] = k;
    start[nu] = R;
    for (int u = 0; u < nu; u++) uid[u] = hid[ord[start[u]]];
    // packed for one upload: ord [R], uid [nu], start [nu + 1]
    memmove(uid + nu, start, sizeof(int32_t) * (size_t)(nu + 1));
    return nu;
}

extern "C" int g3cu_embed_backward_grouped(G3Cuda *cu, float *dE, const float *dx, const int32_t *d, int nu, int R, int C, float scale) {
    if (nu == 0) return 0;
    embed_bwd_k<<<nu, C < 256 ? ((C + 31) / 32) * 32 : 256, 0, cu->stream>>>(dE, dx, d + R, d + R + nu, d, C, scale);
    return g3cu_launched("embedding backward");
}

extern "C" int g3cu_embed_backward(G3Cuda *cu, float *dE, const float *dx, const int32_t *ids, int R, int C, float scale) {
    if (R == 0) return 0;
    // the rows grouped by id on the host (the ids are few: one per row)
    int32_t *h = (int32_t *)malloc(sizeof(int32_t) * (size_t)(4 * R + 1));
    if (!h) return g3_errorf("cuda embedding backward: out of host memory");
    int32_t *hid = h, *g = h + R;
    int rc = -1;
    if (!g3cu_download(cu, hid, ids, sizeof(int32_t) * (size_t)R)) {
        const int nu = g3cu_embed_group(g, hid, R);
        int32_t *d = (int32_t *)g3cu_scratch(cu, sizeof(int32_t) * (size_t)(R + 2 * nu + 1));
        if (d && !g3cu_upload(cu, d, g, sizeof(int32_t) * (size_t)(R + 2 * nu + 1)) &&
            !(rc = g3cu_embed_backward_grouped(cu, dE, dx, d, nu, R, C, scale)))
            rc = g3cu_sync(cu);  // h is freed below, and the scratch's next user must not overwrite d early
    }
    free(h);
    return rc;
}

extern "C" int g3cu_cross_entropy(G3Cuda *cu, double *loss, float *z, uint16_t *zb, long zb_pitch, const int32_t *targets, int R,
                                  int V, float cap, float dscale, int backward) {
    if (R == 0) return 0;
    if (zb && zb_pitch < V) return g3_errorf("cuda cross-entropy: bf16 row pitch %ld below the vocabulary %d", zb_pitch, V);
    const int nt = V >= 1024 ? 1024 : ((V + 31) / 32) * 32;
    const size_t shm = (size_t)V * sizeof(float);
    if (cu->xent_smem && V >= 1024 && shm + 512 <= (size_t)cu->smem_optin) {
        if (shm > 48 * 1024 &&
            g3cu_check(cudaFuncSetAttribute(xent_k<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shm), "cross-entropy"))
            return -1;
        xent_k<true><<<R, nt, shm, cu->stream>>>(loss, z, backward ? zb : NULL, zb_pitch, targets, V, cap, dscale, backward);
    } else {
        xent_k<false><<<R, nt, 0, cu->stream>>>(loss, z, backward ? zb : NULL, zb_pitch, targets, V, cap, dscale, backward);
    }
    return g3cu_launched("cross-entropy");
}

// ---- the optimizer's element-wise step and the gradient norm ----

namespace {

// optim.c's adamw_one, operation for operation with no contraction into FMAs (__fmul_rn /
// __fadd_rn), and IEEE sqrt and division: the same bits as the CPU's step. With pb, the new
// weight is also written rounded to bf16 there: the copy that training's bf16 products read
// (backend_cuda.cu's weight shadow), made in the pass that has the weight in a register
// instead of a rounding pass per product.
__global__ void adamw_k(float *__restrict__ p, uint16_t *__restrict__ pb, const float *__restrict__ g, float *__restrict__ m,
                        float *__restrict__ v, long n, G3CuAdamW k, float decay_mul) {
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        const float gg = __fmul_rn(g[i], k.scale);
        const float pv = __fmul_rn(p[i], decay_mul);
        const float mv = __fadd_rn(__fmul_rn(k.b1, m[i]), __fmul_rn(k.omb1, gg));
        const float vv = __fadd_rn(__fmul_rn(k.b2, v[i]), __fmul_rn(__fmul_rn(k.omb2, gg), gg));
        const float denom = __fadd_rn(__fmul_rn(__fsqrt_rn(vv), k.inv_sqrt_bc2), k.eps);
        const float pn = __fsub_rn(pv, __fmul_rn(k.step_size, __fdiv_rn(mv, denom)));
        p[i] = pn;
        if (pb) pb[i] = to_bf16(pn);
        m[i] = mv;
        v[i] = vv;
    }
}

// The 8-bit step (kernels/adamw8.c's block step, the same bits): one 8-bit block of
// G3_ADAMW8_BLOCK values per iteration of a thread block, thread j on value j. Decode with
// the block's absmax, adamw_k's operations, then the block's new absmax by a block reduction
// (a max, so its order does not matter; each value is first folded with 0 by fmaxf, which
// drops a NaN as the CPU's running fmaxf from 0 does) and the re-encoding: the CPU's
// 1 / absmax (0 for 0), the product, and the nearest code by the thresholds (g3_adamw8_code).
// The maps and thresholds (g3_adamw8_tables' [4][256]) go to shared memory once per thread
// block: a grid-stride loop over the blocks, so that load is paid once per thread block.
static_assert(G3_ADAMW8_BLOCK == 256, "adamw8_k: one thread per value of a block of 256");
__global__ void __launch_bounds__(256) adamw8_k(float *__restrict__ p, uint16_t *__restrict__ pb, const float *__restrict__ g,
                                                uint8_t *__restrict__ mq, uint8_t *__restrict__ vq, float *__restrict__ mmax,
                                                float *__restrict__ vmax, long n, const float *__restrict__ tables, G3CuAdamW k,
                                                float decay_mul) {
    __shared__ float qs[256], qu[256], ts[256], tu[256];
    const int j = threadIdx.x;
    qs[j] = tables[j], qu[j] = tables[256 + j], ts[j] = tables[512 + j], tu[j] = tables[768 + j];
    __syncthreads();
    const long nb = (n + 255) / 256;
    for (long b = blockIdx.x; b < nb; b += gridDim.x) {
        const long i = b * 256 + j;
        const bool in = i < n;
        const float ma = mmax[b], va = vmax[b];  // read by every thread before the reduction's barrier; thread 0 writes after it
        float mv = 0.0f, vv = 0.0f;
        if (in) {
            const float m = __fmul_rn(qs[mq[i]], ma), v = __fmul_rn(qu[vq[i]], va);
            const float gg = __fmul_rn(g[i], k.scale);
            const float pv = __fmul_rn(p[i], decay_mul);
            mv = __fadd_rn(__fmul_rn(k.b1, m), __fmul_rn(k.omb1, gg));
            vv = __fadd_rn(__fmul_rn(k.b2, v), __fmul_rn(__fmul_rn(k.omb2, gg), gg));
            const float denom = __fadd_rn(__fmul_rn(__fsqrt_rn(vv), k.inv_sqrt_bc2), k.eps);
            const float pn = __fsub_rn(pv, __fmul_rn(k.step_size, __fdiv_rn(mv, denom)));
            p[i] = pn;
            if (pb) pb[i] = to_bf16(pn);
        }
        const float mx = block_max_nt<256>(in ? fmaxf(0.0f, fabsf(mv)) : 0.0f);
        const float vx = block_max_nt<256>(in ? fmaxf(0.0f, vv) : 0.0f);
        if (in) {
            const float mi = mx > 0.0f ? __fdiv_rn(1.0f, mx) : 0.0f, vi = vx > 0.0f ? __fdiv_rn(1.0f, vx) : 0.0f;
            mq[i] = g3_adamw8_code(ts, __fmul_rn(mv, mi));
            vq[i] = g3_adamw8_code(tu, __fmul_rn(vv, vi));
        }
        if (j == 0) mmax[b] = mx, vmax[b] = vx;
    }
}

// per-block partial sums of squares in double; the host adds the partials in block order
__global__ void sumsq_k(double *__restrict__ part, const float *__restrict__ x, long n) {
    __shared__ double red[32];
    double s = 0;
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) s += (double)x[i] * x[i];
    s = block_sum_d(s, red);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

}  // namespace

extern "C" int g3cu_adamw(G3Cuda *cu, float *p, uint16_t *pb, const float *g, float *m, float *v, long n, const G3CuAdamW *k,
                          float decay_mul) {
    if (n <= 0) return 0;
    adamw_k<<<g3cu_grid(cu, n), 256, 0, cu->stream>>>(p, pb, g, m, v, n, *k, decay_mul);
    return g3cu_launched("adamw");
}

extern "C" int g3cu_adamw8(G3Cuda *cu, float *p, uint16_t *pb, const float *g, uint8_t *mq, uint8_t *vq, float *mmax, float *vmax,
                           long n, const float *tables, const G3CuAdamW *k, float decay_mul) {
    if (n <= 0) return 0;
    adamw8_k<<<g3cu_grid(cu, n), 256, 0, cu->stream>>>(p, pb, g, mq, vq, mmax, vmax, n, tables, *k, decay_mul);
    return g3cu_launched("adamw8");
}

extern "C" int g3cu_sumsq(G3Cuda *cu, double *out, const float *x, long n) {
    enum { BLOCKS = 512 };
    double *part = (double *)g3cu_scratch(cu, BLOCKS * sizeof(double));
    double host[BLOCKS];
    if (!part) return -1;
    sumsq_k<<<BLOCKS, 256, 0, cu->stream>>>(part, x, n);
    if (g3cu_launched("sum of squares") || g3cu_download(cu, host, part, sizeof host)) return -1;
    double s = 0;
    for (int i = 0; i < BLOCKS; i++) s += host[i];
    *out = s;
    return 0;
}
