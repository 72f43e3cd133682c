// attn_mma_train.cu: the training attention's backward (attn_train.cu) on the bf16 tensor
// cores, for training's bf16 mode (the forward is attn_mma.cu's prefill kernel, which keeps
// each row's log-sum-exp). Head dims 64 and 128; others keep the f32 kernels. As there, two
// kernels and no atomics, so a step gives the same bits every run:
//   dq:     a block of 4 warps takes 64 query rows of one head (16 per warp) and walks the
//           keys they see in tiles of 64: S = Q K^T and dP = dO V^T on the tensor cores, then
//           P = exp(cap(S scale) - lse), dS = P (dP - D) cap' scale in registers, and
//           dQ += dS K (dS goes from the accumulator layout to the operand layout in place).
//   dk, dv: a block takes 64 keys of one kv head (16 per warp) and walks, for each query head
//           of the group, the query rows that see them: S^T = K Q^T and dP^T = V dO^T, then
//           dV += P^T dO and dK += dS^T Q, the keys' rows in the accumulators throughout.
// Operands are rounded to bf16 as they are staged into shared memory, row major (fragments
// that pair elements along rows come transposed by ldmatrix, mma.cuh's ldsm_b_pair);
// scores, probabilities and sums stay f32. D = dout . out comes from attn_train.cu.
#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>

#include "attn.cuh"
#include "mma.cuh"

namespace {

enum { TB = 64, NW = 4, NT = NW * 32 };  // rows per tile (16 per warp), warps, threads

typedef G3CuTrainAttn Shape;

// ds = p (dp - D) cap'(z) scale for one visible score, p = exp(z - L), z = cap(s scale)
__device__ __forceinline__ void p_ds(float &s, float &dp, float L, float D, const Shape &a) {
    const float z = cap_of(s * a.scale, a);
    const float p = __expf(z - L);
    const float dcap = a.softcap > 0 ? 1.0f - (z / a.softcap) * (z / a.softcap) : 1.0f;
    s = p;
    dp = p * (dp - D) * dcap * a.scale;
}

// rows r0 .. r0 + n - 1 (zeros past n) of a [T-row, width W] f32 matrix's head slice into a
// row-major bf16 tile (stride HD + 8)
template <int HD>
__device__ __forceinline__ void stage(__nv_bfloat16 *rm, const float *src, long row0, int n, long W) {
    for (int idx = threadIdx.x; idx < TB * HD / 4; idx += NT) {
        const int i = idx / (HD / 4), d = idx % (HD / 4) * 4;
        float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
        if (i < n) x = *reinterpret_cast<const float4 *>(src + (row0 + i) * W + d);
        uint32_t *dst = reinterpret_cast<uint32_t *>(rm + i * (HD + 8) + d);
        dst[0] = pack_bf16(x.x, x.y);
        dst[1] = pack_bf16(x.z, x.w);
    }
}

// c[nt] (nt < TB / 8) += A(16 rows of a, row major) . B(rows of b, row major)^T over HD
template <int HD>
__device__ __forceinline__ void rows_dot(float (&c)[TB / 8][4], const __nv_bfloat16 *a, const __nv_bfloat16 *b, int g, int t) {
#pragma unroll
    for (int ks = 0; ks < HD / 16; ks++) {
        const __nv_bfloat16 *ar = a + g * (HD + 8) + ks * 16 + 2 * t;
        const uint32_t af[4] = {ld32(ar), ld32(ar + 8 * (HD + 8)), ld32(ar + 8), ld32(ar + 8 * (HD + 8) + 8)};
#pragma unroll
        for (int nt = 0; nt < TB / 8; nt++) {
            const __nv_bfloat16 *br = b + (nt * 8 + g) * (HD + 8) + ks * 16 + 2 * t;
            mma16816(c[nt], af, ld32(br), ld32(br + 8));
        }
    }
}

// acc[nd] (nd < HD / 8) += X(16 x TB, in accumulator layout) . B, B row major [TB][HD + 8]
// (its fragments come transposed by ldmatrix: no transposed copy is staged)
template <int HD>
__device__ __forceinline__ void acc_mul(float (&acc)[HD / 8][4], const float (&x)[TB / 8][4], const __nv_bfloat16 *b, int lane) {
#pragma unroll
    for (int kk = 0; kk < TB / 16; kk++) {
        const uint32_t xf[4] = {pack_bf16(x[2 * kk][0], x[2 * kk][1]), pack_bf16(x[2 * kk][2], x[2 * kk][3]),
                                pack_bf16(x[2 * kk + 1][0], x[2 * kk + 1][1]), pack_bf16(x[2 * kk + 1][2], x[2 * kk + 1][3])};
#pragma unroll
        for (int nd = 0; nd < HD / 8; nd += 2) {
            uint32_t bf[4];
            ldsm_b_pair(bf, b, HD + 8, kk * 16, nd * 8, lane);
            mma16816(acc[nd], xf, bf[0], bf[1]);
            mma16816(acc[nd + 1], xf, bf[2], bf[3]);
        }
    }
}

template <int HD>
constexpr size_t dq_smem() {
    return 4 * (size_t)TB * (HD + 8) * sizeof(__nv_bfloat16);
}
template <int HD>
constexpr size_t dkv_smem() {
    return 4 * (size_t)TB * (HD + 8) * sizeof(__nv_bfloat16) + 2 * TB * sizeof(float);
}

template <int HD>
__global__ void __launch_bounds__(NT, 1) dq_mma_k(float *__restrict__ dq, const float *__restrict__ Dv, const float *__restrict__ dout,
                                                  const float *__restrict__ q, const float *__restrict__ k,
                                                  const float *__restrict__ v, const float *__restrict__ lse, Shape a) {
    constexpr int S = HD + 8;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    __nv_bfloat16 *Qs = reinterpret_cast<__nv_bfloat16 *>(smem_raw), *Os = Qs + TB * S, *Ks = Os + TB * S, *Vs = Ks + TB * S;
    // the last query rows (the most keys under the causal band) first: the long blocks start first
    const int i0 = (gridDim.x - 1 - blockIdx.x) * TB, h = blockIdx.y, b = blockIdx.z, kh = h / (a.NH / a.NKV);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, wr = warp * 16;
    const int nrows = min(TB, a.T - i0);
    const long QD = (long)a.NH * HD, KD = (long)a.NKV * HD;
    stage<HD>(Qs, q + (long)h * HD, (long)b * a.T + i0, nrows, QD);
    stage<HD>(Os, dout + (long)h * HD, (long)b * a.T + i0, nrows, QD);
    int tr[2];
    bool ok[2];
    float L[2], D[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        tr[r] = i0 + wr + g + 8 * r;
        ok[r] = wr + g + 8 * r < nrows;
        const long o = ((long)b * a.NH + h) * a.T + (ok[r] ? tr[r] : i0);
        L[r] = lse[o];
        D[r] = Dv[o];
    }
    float acc[HD / 8][4];
#pragma unroll
    for (int nd = 0; nd < HD / 8; nd++) acc[nd][0] = acc[nd][1] = acc[nd][2] = acc[nd][3] = 0.f;
    const int khi = i0 + nrows - 1, wlo = i0 + wr, whi = min(wlo + 15, khi);
    for (int kb = lo_of(i0, a); kb <= khi; kb += TB) {
        __syncthreads();  // the previous tile is consumed (and, the first time, Qs and Os are written)
        const int nk = min(TB, khi - kb + 1);
        stage<HD>(Ks, k + (long)kh * HD, (long)b * a.T + kb, nk, KD);
        stage<HD>(Vs, v + (long)kh * HD, (long)b * a.T + kb, nk, KD);
        __syncthreads();
        if (wr >= nrows || kb > whi || kb + TB - 1 < lo_of(wlo, a)) continue;  // nothing of this tile is visible to the warp
        float s[TB / 8][4], dp[TB / 8][4];
#pragma unroll
        for (int nt = 0; nt < TB / 8; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = dp[nt][0] = dp[nt][1] = dp[nt][2] = dp[nt][3] = 0.f;
        rows_dot<HD>(s, Qs + wr * S, Ks, g, t);
        rows_dot<HD>(dp, Os + wr * S, Vs, g, t);
#pragma unroll
        for (int nt = 0; nt < TB / 8; nt++)
#pragma unroll
            for (int r = 0; r < 2; r++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int kp = kb + nt * 8 + 2 * t + e;
                    if (ok[r] && kp <= tr[r] && kp >= lo_of(tr[r], a)) {
                        p_ds(s[nt][2 * r + e], dp[nt][2 * r + e], L[r], D[r], a);
                    } else {
                        dp[nt][2 * r + e] = 0.f;
                    }
                }
        acc_mul<HD>(acc, dp, Ks, lane);
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        if (!ok[r]) continue;
        float *o = dq + ((long)b * a.T + tr[r]) * QD + (long)h * HD + 2 * t;
#pragma unroll
        for (int nd = 0; nd < HD / 8; nd++) *reinterpret_cast<float2 *>(o + nd * 8) = make_float2(acc[nd][2 * r], acc[nd][2 * r + 1]);
    }
}

template <int HD>
__global__ void __launch_bounds__(NT, 1) dkv_mma_k(float *__restrict__ dk, float *__restrict__ dv, const float *__restrict__ Dv,
                                                   const float *__restrict__ dout, const float *__restrict__ q,
                                                   const float *__restrict__ k, const float *__restrict__ v,
                                                   const float *__restrict__ lse, Shape a) {
    constexpr int S = HD + 8;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    __nv_bfloat16 *Ks = reinterpret_cast<__nv_bfloat16 *>(smem_raw), *Vs = Ks + TB * S, *Qs = Vs + TB * S, *Os = Qs + TB * S;
    float *Ls = reinterpret_cast<float *>(Os + TB * S), *Ds = Ls + TB;
    const int j0 = blockIdx.x * TB, kh = blockIdx.y, b = blockIdx.z, G = a.NH / a.NKV;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, wr = warp * 16;
    const int nk = min(TB, a.T - j0);
    const long QD = (long)a.NH * HD, KD = (long)a.NKV * HD;
    stage<HD>(Ks, k + (long)kh * HD, (long)b * a.T + j0, nk, KD);
    stage<HD>(Vs, v + (long)kh * HD, (long)b * a.T + j0, nk, KD);
    int kp[2];
    bool ok[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        kp[r] = j0 + wr + g + 8 * r;
        ok[r] = wr + g + 8 * r < nk;
    }
    float dka[HD / 8][4], dva[HD / 8][4];
#pragma unroll
    for (int nd = 0; nd < HD / 8; nd++)
#pragma unroll
        for (int e = 0; e < 4; e++) dka[nd][e] = dva[nd][e] = 0.f;
    const int jhi = j0 + nk - 1;
    const int thi = a.window > 0 ? min(a.T - 1, jhi + a.window - 1) : a.T - 1;
    const int wk0 = j0 + wr, wk1 = min(wk0 + 15, jhi);  // the warp's keys
    for (int gi = 0; gi < G; gi++) {
        const int h = kh * G + gi;
        for (int t0 = j0; t0 <= thi; t0 += TB) {
            const int nq = min(TB, thi - t0 + 1);
            __syncthreads();  // the previous tile is consumed (and, the first time, Ks and Vs are written)
            stage<HD>(Qs, q + (long)h * HD, (long)b * a.T + t0, nq, QD);
            stage<HD>(Os, dout + (long)h * HD, (long)b * a.T + t0, nq, QD);
            if (threadIdx.x < TB) {
                const int i = threadIdx.x;
                const long o = ((long)b * a.NH + h) * a.T + t0 + min(i, nq - 1);
                Ls[i] = lse[o];
                Ds[i] = Dv[o];
            }
            __syncthreads();
            // no query of the tile sees a key of the warp: all before its first key, or (window)
            // all past its last key's reach
            if (wr >= nk || t0 + nq - 1 < wk0 || (a.window > 0 && t0 > wk1 + a.window - 1)) continue;
            float s[TB / 8][4], dp[TB / 8][4];
#pragma unroll
            for (int nt = 0; nt < TB / 8; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = dp[nt][0] = dp[nt][1] = dp[nt][2] = dp[nt][3] = 0.f;
            rows_dot<HD>(s, Ks + wr * S, Qs, g, t);   // S^T: the warp's keys x the tile's queries
            rows_dot<HD>(dp, Vs + wr * S, Os, g, t);  // dP^T
#pragma unroll
            for (int nt = 0; nt < TB / 8; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int ci = nt * 8 + 2 * t + e, tq = t0 + ci;
#pragma unroll
                    for (int r = 0; r < 2; r++) {
                        if (ok[r] && ci < nq && kp[r] <= tq && kp[r] >= lo_of(tq, a)) {
                            p_ds(s[nt][2 * r + e], dp[nt][2 * r + e], Ls[ci], Ds[ci], a);
                        } else {
                            s[nt][2 * r + e] = 0.f;
                            dp[nt][2 * r + e] = 0.f;
                        }
                    }
                }
            acc_mul<HD>(dva, s, Os, lane);   // dV += P^T dO
            acc_mul<HD>(dka, dp, Qs, lane);  // dK += dS^T Q
        }
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        if (!ok[r]) continue;
        const long o = ((long)b * a.T + kp[r]) * KD + (long)kh * HD + 2 * t;
#pragma unroll
        for (int nd = 0; nd < HD / 8; nd++) {
            *reinterpret_cast<float2 *>(dk + o + nd * 8) = make_float2(dka[nd][2 * r], dka[nd][2 * r + 1]);
            *reinterpret_cast<float2 *>(dv + o + nd * 8) = make_float2(dva[nd][2 * r], dva[nd][2 * r + 1]);
        }
    }
}

template <int HD>
int launch(G3Cuda *cu, float *dq, float *dk, float *dv, const float *D, const float *dout, const float *q, const float *k,
           const float *v, const float *lse, const Shape &a) {
    if (g3cu_check(cudaFuncSetAttribute(dq_mma_k<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)dq_smem<HD>()),
                   "attention backward (tensor cores)") ||
        g3cu_check(cudaFuncSetAttribute(dkv_mma_k<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)dkv_smem<HD>()),
                   "attention backward (tensor cores)"))
        return -1;
    dq_mma_k<HD><<<dim3((a.T + TB - 1) / TB, a.NH, a.B), NT, dq_smem<HD>(), cu->stream>>>(dq, D, dout, q, k, v, lse, a);
    if (g3cu_launched("attention backward (dq, tensor cores)")) return -1;
    dkv_mma_k<HD><<<dim3((a.T + TB - 1) / TB, a.NKV, a.B), NT, dkv_smem<HD>(), cu->stream>>>(dk, dv, D, dout, q, k, v, lse, a);
    return g3cu_launched("attention backward (dk, dv, tensor cores)");
}

}  // namespace

extern "C" int g3cu_attn_mma_train_supported(int hd) { return hd == 64 || hd == 128; }

extern "C" int g3cu_attn_mma_backward(G3Cuda *cu, float *dq, float *dk, float *dv, const float *D, const float *dout, const float *q,
                                      const float *k, const float *v, const float *lse, int B, int T, int NH, int NKV, int HD,
                                      int window, float scale, float softcap) {
    const Shape a = {B, T, NH, NKV, HD, window, scale, softcap};
    switch (HD) {
    case 64: return launch<64>(cu, dq, dk, dv, D, dout, q, k, v, lse, a);
    case 128: return launch<128>(cu, dq, dk, dv, D, dout, q, k, v, lse, a);
    default: return g3_errorf("cuda attention backward (tensor cores): head dim %d (64 or 128)", HD);
    }
}
