// attn_train.cu: causal grouped-query attention over B sequences of T rows from position 0,
// forward (keeping each row's log-sum-exp) and backward, for training (backend.h's attention
// and attention_backward). Visible keys of query t: max(0, t - window + 1) <= j <= t
// (window <= 0: all j <= t). Any head dimension up to 256 (the tiny fixtures have 24): the
// warp-per-row kernels of attn_rows.cuh under the causal band, which are also the reference
// of the tiled kernels below (head dims that are multiples of 32, every Gemma's) and of the
// tensor-core ones (attn_mma_train.cu).
#include <math.h>

#include "attn_rows.cuh"

namespace {

using attn_rows::MAXE;
using attn_rows::WPB;

typedef G3CuTrainAttn Shape;

// ---- tiled (head dims that are multiples of 32): the forward is attn_prefill.cu's kernel
// (each sequence one segment from position 0, writing lse); the backward is two kernels in
// its style, over tiles in shared memory with a lane per key for the scores:
//   dq:     a block takes TQ query rows of one head and walks the key tiles they see;
//   dk, dv: a block takes TK keys of one kv head and walks the query tiles (of every head of
//           its group) that see them; the tile's probabilities and score gradients go
//           through shared memory, and thread (warp w, lane j) accumulates key j's dims
//           w, w + 8, ... of dk and dv.
// D = dout . out per row (the softmax backward's row term) comes first, from the forward's out.

enum { TQ = 16, TK = 32, TPB = 256, TRPW = TQ / (TPB / 32), TMAXE = 8 };

__global__ void attn_rowdot_k(float *__restrict__ Dv, const float *__restrict__ dout, const float *__restrict__ out, Shape a) {
    const long row = (long)blockIdx.x * WPB + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= (long)a.B * a.NH * a.T) return;
    const int t = (int)(row % a.T), h = (int)(row / a.T % a.NH), b = (int)(row / ((long)a.T * a.NH));
    const long o = ((long)b * a.T + t) * a.NH * a.HD + (long)h * a.HD;
    double s = 0;
    for (int d = lane; d < a.HD; d += 32) s += (double)dout[o + d] * out[o + d];
    s = warp_sum_d(s);
    if (lane == 0) Dv[row] = (float)s;
}

__global__ void __launch_bounds__(TPB) attn_dq_tiled_k(float *__restrict__ dq, const float *__restrict__ Dv,
                                                       const float *__restrict__ dout, const float *__restrict__ q,
                                                       const float *__restrict__ k, const float *__restrict__ v,
                                                       const float *__restrict__ lse, Shape a) {
    extern __shared__ float sm[];
    const int hd = a.HD, per = hd / 32;
    float *Qs = sm, *Os = Qs + TQ * hd, *Ks = Os + TQ * hd, *Vs = Ks + TK * (hd + 1);
    const int i0 = blockIdx.x * TQ, h = blockIdx.y, b = blockIdx.z, kh = h / (a.NH / a.NKV);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nrows = min(TQ, a.T - i0);
    const long QD = (long)a.NH * hd, KD = (long)a.NKV * hd;
    for (int idx = threadIdx.x; idx < TQ * hd; idx += TPB) {
        const int i = idx / hd, d = idx % hd;
        const long o = ((long)b * a.T + i0 + i) * QD + (long)h * hd + d;
        Qs[idx] = i < nrows ? q[o] : 0.f;
        Os[idx] = i < nrows ? dout[o] : 0.f;
    }
    float L[TRPW], D[TRPW], acc[TRPW][TMAXE];
#pragma unroll
    for (int rr = 0; rr < TRPW; rr++) {
        const int i = warp * TRPW + rr;
        const long r = ((long)b * a.NH + h) * a.T + i0 + min(i, nrows - 1);
        L[rr] = lse[r];
        D[rr] = Dv[r];
#pragma unroll
        for (int e = 0; e < TMAXE; e++) acc[rr][e] = 0.f;
    }
    const int klo = lo_of(i0, a), khi = i0 + nrows - 1;
    for (int kb = klo; kb <= khi; kb += TK) {
        __syncthreads();
        for (int idx = threadIdx.x; idx < TK * hd; idx += TPB) {
            const int j = idx / hd, d = idx % hd, kp = kb + j;
            const long o = ((long)b * a.T + kp) * KD + (long)kh * hd + d;
            Ks[j * (hd + 1) + d] = kp <= khi ? k[o] : 0.f;
            Vs[j * (hd + 1) + d] = kp <= khi ? v[o] : 0.f;
        }
        __syncthreads();
        float s[TRPW], dp[TRPW], ds[TRPW];
#pragma unroll
        for (int rr = 0; rr < TRPW; rr++) s[rr] = dp[rr] = 0.f;
        const float *kr = Ks + lane * (hd + 1), *vr = Vs + lane * (hd + 1);
        for (int d = 0; d < hd; d++) {
            const float kd = kr[d], vd = vr[d];
#pragma unroll
            for (int rr = 0; rr < TRPW; rr++) {
                s[rr] = fmaf(Qs[(warp * TRPW + rr) * hd + d], kd, s[rr]);
                dp[rr] = fmaf(Os[(warp * TRPW + rr) * hd + d], vd, dp[rr]);
            }
        }
        const int kp = kb + lane;
#pragma unroll
        for (int rr = 0; rr < TRPW; rr++) {
            const int t = i0 + warp * TRPW + rr;
            const bool vis = warp * TRPW + rr < nrows && kp <= t && kp >= lo_of(t, a);
            const float z = cap_of(s[rr] * a.scale, a);
            const float p = vis ? expf(z - L[rr]) : 0.f;
            const float dcap = a.softcap > 0 ? 1.0f - (z / a.softcap) * (z / a.softcap) : 1.0f;
            ds[rr] = p * (dp[rr] - D[rr]) * dcap * a.scale;
        }
        for (int j = 0; j < TK; j++) {
            float kj[TMAXE];
#pragma unroll
            for (int e = 0; e < TMAXE; e++) kj[e] = e < per ? Ks[j * (hd + 1) + lane + 32 * e] : 0.f;
#pragma unroll
            for (int rr = 0; rr < TRPW; rr++) {
                const float dj = __shfl_sync(0xffffffffu, ds[rr], j);
#pragma unroll
                for (int e = 0; e < TMAXE; e++) acc[rr][e] = fmaf(dj, kj[e], acc[rr][e]);
            }
        }
    }
#pragma unroll
    for (int rr = 0; rr < TRPW; rr++) {
        const int i = warp * TRPW + rr;
        if (i >= nrows) continue;
        float *o = dq + ((long)b * a.T + i0 + i) * QD + (long)h * hd;
#pragma unroll
        for (int e = 0; e < TMAXE; e++)
            if (e < per) o[lane + 32 * e] = acc[rr][e];
    }
}

__global__ void __launch_bounds__(TPB) attn_dkv_tiled_k(float *__restrict__ dk, float *__restrict__ dv, const float *__restrict__ Dv,
                                                        const float *__restrict__ dout, const float *__restrict__ q,
                                                        const float *__restrict__ k, const float *__restrict__ v,
                                                        const float *__restrict__ lse, Shape a) {
    extern __shared__ float sm[];
    const int hd = a.HD, per8 = hd / 8;  // dims per thread in the accumulation (warp w: w, w + 8, ...)
    float *Ks = sm, *Vs = Ks + TK * (hd + 1), *Qs = Vs + TK * (hd + 1), *Os = Qs + TQ * hd;
    float *Ps = Os + TQ * hd, *Ss = Ps + TQ * (TK + 1), *Ls = Ss + TQ * (TK + 1), *Ds = Ls + TQ;
    const int j0 = blockIdx.x * TK, kh = blockIdx.y, b = blockIdx.z, G = a.NH / a.NKV;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nk = min(TK, a.T - j0);
    const long QD = (long)a.NH * hd, KD = (long)a.NKV * hd;
    for (int idx = threadIdx.x; idx < TK * hd; idx += TPB) {
        const int j = idx / hd, d = idx % hd;
        const long o = ((long)b * a.T + j0 + j) * KD + (long)kh * hd + d;
        Ks[j * (hd + 1) + d] = j < nk ? k[o] : 0.f;
        Vs[j * (hd + 1) + d] = j < nk ? v[o] : 0.f;
    }
    float dka[32], dva[32];  // hd / 8 <= 32
#pragma unroll
    for (int e = 0; e < 32; e++) dka[e] = dva[e] = 0.f;
    const int jhi = j0 + nk - 1;
    const int thi = a.window > 0 ? min(a.T - 1, jhi + a.window - 1) : a.T - 1;
    for (int g = 0; g < G; g++) {
        const int h = kh * G + g;
        for (int t0 = j0; t0 <= thi; t0 += TQ) {
            const int nq = min(TQ, thi - t0 + 1);
            __syncthreads();  // the previous tile's Ps/Ss/Qs/Os are consumed
            for (int idx = threadIdx.x; idx < TQ * hd; idx += TPB) {
                const int i = idx / hd, d = idx % hd;
                const long o = ((long)b * a.T + t0 + i) * QD + (long)h * hd + d;
                Qs[idx] = i < nq ? q[o] : 0.f;
                Os[idx] = i < nq ? dout[o] : 0.f;
            }
            if (threadIdx.x < TQ) {
                const int i = threadIdx.x;
                const long r = ((long)b * a.NH + h) * a.T + t0 + min(i, nq - 1);
                Ls[i] = lse[r];
                Ds[i] = Dv[r];
            }
            __syncthreads();
            float s[TRPW], dp[TRPW];
#pragma unroll
            for (int rr = 0; rr < TRPW; rr++) s[rr] = dp[rr] = 0.f;
            const float *kr = Ks + lane * (hd + 1), *vr = Vs + lane * (hd + 1);
            for (int d = 0; d < hd; d++) {
                const float kd = kr[d], vd = vr[d];
#pragma unroll
                for (int rr = 0; rr < TRPW; rr++) {
                    s[rr] = fmaf(Qs[(warp * TRPW + rr) * hd + d], kd, s[rr]);
                    dp[rr] = fmaf(Os[(warp * TRPW + rr) * hd + d], vd, dp[rr]);
                }
            }
            const int kp = j0 + lane;
#pragma unroll
            for (int rr = 0; rr < TRPW; rr++) {
                const int i = warp * TRPW + rr, t = t0 + i;
                const bool vis = i < nq && lane < nk && kp <= t && kp >= lo_of(t, a);
                const float z = cap_of(s[rr] * a.scale, a);
                const float p = vis ? expf(z - Ls[i]) : 0.f;
                const float dcap = a.softcap > 0 ? 1.0f - (z / a.softcap) * (z / a.softcap) : 1.0f;
                Ps[i * (TK + 1) + lane] = p;
                Ss[i * (TK + 1) + lane] = p * (dp[rr] - Ds[i]) * dcap * a.scale;
            }
            __syncthreads();
            for (int i = 0; i < nq; i++) {
                const float pi = Ps[i * (TK + 1) + lane], si = Ss[i * (TK + 1) + lane];
                const float *qi = Qs + i * hd + warp, *oi = Os + i * hd + warp;
#pragma unroll
                for (int e = 0; e < 32; e++)
                    if (e < per8) {
                        dva[e] = fmaf(pi, oi[8 * e], dva[e]);
                        dka[e] = fmaf(si, qi[8 * e], dka[e]);
                    }
            }
        }
    }
    if (lane < nk) {
        const long o = ((long)b * a.T + j0 + lane) * KD + (long)kh * hd + warp;
#pragma unroll
        for (int e = 0; e < 32; e++)
            if (e < per8) {
                dk[o + 8 * e] = dka[e];
                dv[o + 8 * e] = dva[e];
            }
    }
}

bool tiled(const Shape &a) { return a.HD % 32 == 0 && a.HD <= 256; }

int check(const Shape &a, const char *what) {
    if (a.B < 1 || a.T < 1 || a.NH < 1 || a.NKV < 1 || a.NH % a.NKV || a.HD < 2 || a.HD > 32 * MAXE || a.HD % 2)
        return g3_errorf("cuda %s: unsupported shape B %d T %d heads %d/%d head_dim %d (head_dim even, at most %d)", what, a.B, a.T,
                         a.NH, a.NKV, a.HD, 32 * MAXE);
    return 0;
}


}  // namespace

extern "C" int g3cu_attention_train(G3Cuda *cu, float *out, float *lse, const float *q, const float *k, const float *v, int B, int T,
                                    int NH, int NKV, int HD, int window, float scale, float softcap, int tc) {
    const Shape a = {B, T, NH, NKV, HD, window, scale, softcap};
    if (check(a, "attention (training)")) return -1;
    if (tiled(a)) {  // the prefill kernel (f32 or tensor cores), each sequence one segment
        const G3CuAttn pa = {NH, NKV, HD, T, window > 0 ? window : 0, scale, softcap};
        const int mma = tc && g3cu_attn_mma_supported(HD);
        if (mma) return g3cu_attn_prefill_mma_batch(cu, out, lse, q, k, v, B, T, &pa);  // one launch for the batch
        for (int b = 0; b < B; b++)  // the exact mode's f32 kernel, a launch per sequence
            if (g3cu_attn_prefill_lse(cu, out, lse + (long)b * NH * T, q, k, v, NULL, NULL, b * T, T, b, 0, &pa)) return -1;
        return 0;
    }
    const long rows = (long)B * NH * T;
    const attn_rows::Causal vis = {T, window};
    ATTN_ROWS_E(HD, (attn_rows::rows_fwd_k<E><<<(unsigned)((rows + WPB - 1) / WPB), WPB * 32, 0, cu->stream>>>(out, lse, q, k, v, vis, a)));
    return g3cu_launched("attention (training)");
}

extern "C" int g3cu_attention_train_backward(G3Cuda *cu, float *dq, float *dk, float *dv, const float *dout, const float *out, const float *q,
                                             const float *k, const float *v, const float *lse, int B, int T, int NH, int NKV, int HD,
                                             int window, float scale, float softcap, int tc) {
    const Shape a = {B, T, NH, NKV, HD, window, scale, softcap};
    if (check(a, "attention backward")) return -1;
    const long rows = (long)B * NH * T, krows = (long)B * NKV * T;
    float *D = (float *)g3cu_scratch(cu, (size_t)rows * sizeof(float));
    if (!D) return -1;
    if (tc && out && g3cu_attn_mma_train_supported(HD)) {
        attn_rowdot_k<<<(unsigned)((rows + WPB - 1) / WPB), WPB * 32, 0, cu->stream>>>(D, dout, out, a);
        if (g3cu_launched("attention backward (D)")) return -1;
        return g3cu_attn_mma_backward(cu, dq, dk, dv, D, dout, q, k, v, lse, B, T, NH, NKV, HD, window, scale, softcap);
    }
    if (tiled(a) && out) {
        attn_rowdot_k<<<(unsigned)((rows + WPB - 1) / WPB), WPB * 32, 0, cu->stream>>>(D, dout, out, a);
        const size_t shq = (size_t)(2 * TQ * HD + 2 * TK * (HD + 1)) * sizeof(float);
        const size_t shk = (size_t)(2 * TK * (HD + 1) + 2 * TQ * HD + 2 * TQ * (TK + 1) + 2 * TQ) * sizeof(float);
        if (g3cu_launched("attention backward (D)") ||
            g3cu_check(cudaFuncSetAttribute(attn_dq_tiled_k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shq), "attention backward") ||
            g3cu_check(cudaFuncSetAttribute(attn_dkv_tiled_k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shk), "attention backward"))
            return -1;
        attn_dq_tiled_k<<<dim3((T + TQ - 1) / TQ, NH, B), TPB, shq, cu->stream>>>(dq, D, dout, q, k, v, lse, a);
        if (g3cu_launched("attention backward (dq)")) return -1;
        attn_dkv_tiled_k<<<dim3((T + TK - 1) / TK, NKV, B), TPB, shk, cu->stream>>>(dk, dv, D, dout, q, k, v, lse, a);
        return g3cu_launched("attention backward (dk, dv)");
    }
    const attn_rows::Causal vis = {T, window};
    ATTN_ROWS_E(HD, (attn_rows::rows_dq_k<E><<<(unsigned)((rows + WPB - 1) / WPB), WPB * 32, 0, cu->stream>>>(dq, D, dout, q, k, v, lse, vis, a)));
    if (g3cu_launched("attention backward (dq)")) return -1;
    ATTN_ROWS_E(HD, (attn_rows::rows_dkv_k<E><<<(unsigned)((krows + WPB - 1) / WPB), WPB * 32, 0, cu->stream>>>(dk, dv, D, dout, q, k, v, lse, vis, a)));
    return g3cu_launched("attention backward (dk, dv)");
}
