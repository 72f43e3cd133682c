// attn_train.cu: causal grouped-query attention over B sequences of T rows from position 0,
// forward (keeping each row's log-sum-exp) and backward, for training (backend.h's attention
// and attention_backward). Any head dimension up to 256 (the tiny fixtures have 24): a warp
// takes one query row (forward, dq) or one key row (dk, dv), a lane owns dimensions lane,
// lane + 32, ...; dot products are warp sums. The scores never reach memory: backward
// recomputes them from q, k and the saved log-sum-exp, as flash attention does.
//   forward:  s_j = cap(q . k_j * scale), p_j = exp(s_j - lse), out = sum p_j v_j
//   backward: dp_j = dout . v_j, D = sum_j p_j dp_j, ds_j = p_j (dp_j - D) cap'(s_j) scale,
//             dq = sum_j ds_j k_j, dk_j = sum over the rows that see j of ds_j q, dv_j = ... p_j dout
// Visible keys of query t: max(0, t - window + 1) <= j <= t (window <= 0: all j <= t).
// This straightforward form (CUDA cores, f32) serves every shape and is the reference of the
// tiled kernels below, which take head dims that are multiples of 32 (every Gemma's); a
// tensor-core version is the next step for speed (docs/gpu-notes.md).
#include <math.h>

#include "attn.cuh"

namespace {

enum { MAXE = 8, WPB = 8 };  // dims per lane (HD <= 256), warps per block

typedef G3CuTrainAttn Shape;

template <int E>
__device__ __forceinline__ void load_row(float *r, const float *p, int hd, int lane) {
#pragma unroll
    for (int e = 0; e < E; e++) {
        const int d = lane + 32 * e;
        r[e] = d < hd ? p[d] : 0.f;
    }
}
template <int E>
__device__ __forceinline__ float dot_row(const float *r, const float *p, int hd, int lane) {
    float s = 0.f;
#pragma unroll
    for (int e = 0; e < E; e++) {
        const int d = lane + 32 * e;
        if (d < hd) s = fmaf(r[e], p[d], s);
    }
    return warp_sum(s);
}

// one warp per query row (b, h, t)
template <int E>
__global__ void __launch_bounds__(WPB * 32) attn_fwd_k(float *__restrict__ out, float *__restrict__ lse, const float *__restrict__ q,
                                                      const float *__restrict__ k, const float *__restrict__ v, Shape a) {
    const long row = (long)blockIdx.x * WPB + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= (long)a.B * a.NH * a.T) return;
    const int t = (int)(row % a.T), h = (int)(row / a.T % a.NH), b = (int)(row / ((long)a.T * a.NH));
    const int kh = h / (a.NH / a.NKV), hd = a.HD;
    const long QD = (long)a.NH * hd, KD = (long)a.NKV * hd;
    float qv[E], acc[E];
    load_row<E>(qv, q + ((long)b * a.T + t) * QD + (long)h * hd, hd, lane);
#pragma unroll
    for (int e = 0; e < E; e++) acc[e] = 0.f;
    float mx = -INFINITY, l = 0.f;
    const float *kb = k + (long)b * a.T * KD + (long)kh * hd, *vb = v + (long)b * a.T * KD + (long)kh * hd;
    for (int j = lo_of(t, a); j <= t; j++) {
        const float s = cap_of(dot_row<E>(qv, kb + j * KD, hd, lane) * a.scale, a);
        const float mn = fmaxf(mx, s), corr = expf(mx - mn), p = expf(s - mn);
        l = l * corr + p;
        mx = mn;
        const float *vr = vb + j * KD;
#pragma unroll
        for (int e = 0; e < E; e++) {
            const int d = lane + 32 * e;
            acc[e] = acc[e] * corr + (d < hd ? p * vr[d] : 0.f);
        }
    }
    float *o = out + ((long)b * a.T + t) * QD + (long)h * hd;
#pragma unroll
    for (int e = 0; e < E; e++) {
        const int d = lane + 32 * e;
        if (d < hd) o[d] = acc[e] / l;
    }
    if (lane == 0) lse[((long)b * a.NH + h) * a.T + t] = mx + logf(l);
}

// one warp per query row: D = sum_j p_j dp_j (kept for dk/dv), then dq
template <int E>
__global__ void __launch_bounds__(WPB * 32) attn_dq_k(float *__restrict__ dq, float *__restrict__ Dv, const float *__restrict__ dout,
                                                     const float *__restrict__ q, const float *__restrict__ k,
                                                     const float *__restrict__ v, const float *__restrict__ lse, Shape a) {
    const long row = (long)blockIdx.x * WPB + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= (long)a.B * a.NH * a.T) return;
    const int t = (int)(row % a.T), h = (int)(row / a.T % a.NH), b = (int)(row / ((long)a.T * a.NH));
    const int kh = h / (a.NH / a.NKV), hd = a.HD;
    const long QD = (long)a.NH * hd, KD = (long)a.NKV * hd, qo = ((long)b * a.T + t) * QD + (long)h * hd;
    float qv[E], dov[E], acc[E];
    load_row<E>(qv, q + qo, hd, lane);
    load_row<E>(dov, dout + qo, hd, lane);
    const float L = lse[((long)b * a.NH + h) * a.T + t];
    const float *kb = k + (long)b * a.T * KD + (long)kh * hd, *vb = v + (long)b * a.T * KD + (long)kh * hd;
    double D = 0;
    for (int j = lo_of(t, a); j <= t; j++) {
        const float p = expf(cap_of(dot_row<E>(qv, kb + j * KD, hd, lane) * a.scale, a) - L);
        D += (double)p * dot_row<E>(dov, vb + j * KD, hd, lane);
    }
    const float Df = (float)D;
    if (lane == 0) Dv[((long)b * a.NH + h) * a.T + t] = Df;
#pragma unroll
    for (int e = 0; e < E; e++) acc[e] = 0.f;
    for (int j = lo_of(t, a); j <= t; j++) {
        const float z = cap_of(dot_row<E>(qv, kb + j * KD, hd, lane) * a.scale, a);
        const float p = expf(z - L), dp = dot_row<E>(dov, vb + j * KD, hd, lane);
        const float dcap = a.softcap > 0 ? 1.0f - (z / a.softcap) * (z / a.softcap) : 1.0f;
        const float ds = p * (dp - Df) * dcap * a.scale;
        const float *kr = kb + j * KD;
#pragma unroll
        for (int e = 0; e < E; e++) {
            const int d = lane + 32 * e;
            if (d < hd) acc[e] = fmaf(ds, kr[d], acc[e]);
        }
    }
#pragma unroll
    for (int e = 0; e < E; e++) {
        const int d = lane + 32 * e;
        if (d < hd) dq[qo + d] = acc[e];
    }
}

// one warp per key row (b, kv head, j): the query rows of its group's heads that see j
template <int E>
__global__ void __launch_bounds__(WPB * 32) attn_dkv_k(float *__restrict__ dk, float *__restrict__ dv, const float *__restrict__ Dv,
                                                      const float *__restrict__ dout, const float *__restrict__ q,
                                                      const float *__restrict__ k, const float *__restrict__ v,
                                                      const float *__restrict__ lse, Shape a) {
    const long row = (long)blockIdx.x * WPB + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= (long)a.B * a.NKV * a.T) return;
    const int j = (int)(row % a.T), kh = (int)(row / a.T % a.NKV), b = (int)(row / ((long)a.T * a.NKV));
    const int G = a.NH / a.NKV, hd = a.HD;
    const long QD = (long)a.NH * hd, KD = (long)a.NKV * hd, ko = ((long)b * a.T + j) * KD + (long)kh * hd;
    float kv[E], vv[E], dka[E], dva[E];
    load_row<E>(kv, k + ko, hd, lane);
    load_row<E>(vv, v + ko, hd, lane);
#pragma unroll
    for (int e = 0; e < E; e++) dka[e] = dva[e] = 0.f;
    const int thi = a.window > 0 ? min(a.T - 1, j + a.window - 1) : a.T - 1;
    for (int g = 0; g < G; g++) {
        const int h = kh * G + g;
        const float *lr = lse + ((long)b * a.NH + h) * a.T, *Dr = Dv + ((long)b * a.NH + h) * a.T;
        for (int t = j; t <= thi; t++) {
            const long qo = ((long)b * a.T + t) * QD + (long)h * hd;
            const float *qr = q + qo, *dor = dout + qo;
            const float z = cap_of(dot_row<E>(kv, qr, hd, lane) * a.scale, a);
            const float p = expf(z - lr[t]), dp = dot_row<E>(vv, dor, hd, lane);
            const float dcap = a.softcap > 0 ? 1.0f - (z / a.softcap) * (z / a.softcap) : 1.0f;
            const float ds = p * (dp - Dr[t]) * dcap * a.scale;
#pragma unroll
            for (int e = 0; e < E; e++) {
                const int d = lane + 32 * e;
                if (d < hd) {
                    dva[e] = fmaf(p, dor[d], dva[e]);
                    dka[e] = fmaf(ds, qr[d], dka[e]);
                }
            }
        }
    }
#pragma unroll
    for (int e = 0; e < E; e++) {
        const int d = lane + 32 * e;
        if (d < hd) {
            dk[ko + d] = dka[e];
            dv[ko + d] = dva[e];
        }
    }
}


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

// E = dims per lane, the smallest that holds HD
#define DISPATCH_E(HD, CALL)                  \
    do {                                      \
        const int e_ = ((HD) + 31) / 32;      \
        if (e_ <= 1) { constexpr int E = 1; CALL; } \
        else if (e_ <= 2) { constexpr int E = 2; CALL; } \
        else if (e_ <= 4) { constexpr int E = 4; CALL; } \
        else { constexpr int E = 8; CALL; }   \
    } while (0)

}  // namespace

extern "C" int g3cu_attention_train(G3Cuda *cu, float *out, float *lse, const float *q, const float *k, const float *v, int B, int T,
                                    int NH, int NKV, int HD, int window, float scale, float softcap, int tc) {
    const Shape a = {B, T, NH, NKV, HD, window, scale, softcap};
    if (check(a, "attention (training)")) return -1;
    if (tiled(a)) {  // the prefill kernel (f32 or tensor cores), one segment per sequence
        const G3CuAttn pa = {NH, NKV, HD, T, window > 0 ? window : 0, scale, softcap};
        const int mma = tc && g3cu_attn_mma_supported(HD);
        for (int b = 0; b < B; b++)
            if (mma ? g3cu_attn_prefill_mma(cu, out, lse + (long)b * NH * T, q, k, v, NULL, NULL, b * T, T, b, 0, &pa)
                    : g3cu_attn_prefill_lse(cu, out, lse + (long)b * NH * T, q, k, v, NULL, NULL, b * T, T, b, 0, &pa))
                return -1;
        return 0;
    }
    const long rows = (long)B * NH * T;
    DISPATCH_E(HD, (attn_fwd_k<E><<<(unsigned)((rows + WPB - 1) / WPB), WPB * 32, 0, cu->stream>>>(out, lse, q, k, v, a)));
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
    DISPATCH_E(HD, (attn_dq_k<E><<<(unsigned)((rows + WPB - 1) / WPB), WPB * 32, 0, cu->stream>>>(dq, D, dout, q, k, v, lse, a)));
    if (g3cu_launched("attention backward (dq)")) return -1;
    DISPATCH_E(HD, (attn_dkv_k<E><<<(unsigned)((krows + WPB - 1) / WPB), WPB * 32, 0, cu->stream>>>(dk, dv, D, dout, q, k, v, lse, a)));
    return g3cu_launched("attention backward (dk, dv)");
}
