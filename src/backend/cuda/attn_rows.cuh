// attn_rows.cuh: the simple batch attention for training, forward and backward, a warp per row:
// a warp takes one query row (forward, dq) or one key row (dk, dv), a lane owns dimensions lane,
// lane + 32, ...; dot products are warp sums; the scores never reach memory (backward
// recomputes them from q, k and the saved log-sum-exp).
//   forward:  s_j = cap(q . k_j * scale), p_j = exp(s_j - lse), out = sum p_j v_j
//   backward: dp_j = dout . v_j, D = sum_j p_j dp_j, ds_j = p_j (dp_j - D) cap'(s_j) scale,
//             dq = sum_j ds_j k_j, dk_j = sum over the rows that see j of ds_j q, dv_j = ... p_j dout
// Which keys a row sees is the Vis policy's: the causal band (attn_train.cu, where these
// kernels are also the reference of the tiled ones) or a block mask (attn_mask.cu: packed
// examples, Set Block Decoding). Vis gives a query row t's key range lo(t)..hi(t), a key row
// j's query range qlo(j)..qhi(j), and sees(b, t, j) inside them. No atomics: dk and dv are
// summed by the key row's own warp, so results do not depend on scheduling.
#ifndef G3_CUDA_ATTN_ROWS_CUH
#define G3_CUDA_ATTN_ROWS_CUH

#include <math.h>

#include "attn.cuh"

namespace attn_rows {

enum { MAXE = 8, WPB = 8 };  // dims per lane (HD <= 256), warps per block

// The causal band with the sliding window (the tiled and tensor-core kernels' rule).
struct Causal {
    int T, window;
    __device__ int lo(int t) const { return window > 0 ? max(0, t - window + 1) : 0; }
    __device__ int hi(int t) const { return t; }
    __device__ int qlo(int j) const { return j; }
    __device__ int qhi(int j) const { return window > 0 ? min(T - 1, j + window - 1) : T - 1; }
    __device__ bool sees(int, int, int) const { return true; }
};

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
template <int E, typename Vis>
__global__ void __launch_bounds__(WPB * 32) rows_fwd_k(float *__restrict__ out, float *__restrict__ lse, const float *__restrict__ q,
                                                      const float *__restrict__ k, const float *__restrict__ v, Vis vis, G3CuTrainAttn a) {
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
    for (int j = vis.lo(t); j <= vis.hi(t); j++) {
        if (!vis.sees(b, t, j)) continue;  // the same for every lane: the warp stays converged
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
template <int E, typename Vis>
__global__ void __launch_bounds__(WPB * 32) rows_dq_k(float *__restrict__ dq, float *__restrict__ Dv, const float *__restrict__ dout,
                                                     const float *__restrict__ q, const float *__restrict__ k,
                                                     const float *__restrict__ v, const float *__restrict__ lse, Vis vis,
                                                     G3CuTrainAttn a) {
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
    for (int j = vis.lo(t); j <= vis.hi(t); j++) {
        if (!vis.sees(b, t, j)) continue;  // the same for every lane: the warp stays converged
        const float p = expf(cap_of(dot_row<E>(qv, kb + j * KD, hd, lane) * a.scale, a) - L);
        D += (double)p * dot_row<E>(dov, vb + j * KD, hd, lane);
    }
    const float Df = (float)D;
    if (lane == 0) Dv[((long)b * a.NH + h) * a.T + t] = Df;
#pragma unroll
    for (int e = 0; e < E; e++) acc[e] = 0.f;
    for (int j = vis.lo(t); j <= vis.hi(t); j++) {
        if (!vis.sees(b, t, j)) continue;  // the same for every lane: the warp stays converged
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
template <int E, typename Vis>
__global__ void __launch_bounds__(WPB * 32) rows_dkv_k(float *__restrict__ dk, float *__restrict__ dv, const float *__restrict__ Dv,
                                                      const float *__restrict__ dout, const float *__restrict__ q,
                                                      const float *__restrict__ k, const float *__restrict__ v,
                                                      const float *__restrict__ lse, Vis vis, G3CuTrainAttn a) {
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
    for (int g = 0; g < G; g++) {
        const int h = kh * G + g;
        const float *lr = lse + ((long)b * a.NH + h) * a.T, *Dr = Dv + ((long)b * a.NH + h) * a.T;
        for (int t = vis.qlo(j); t <= vis.qhi(j); t++) {
            if (!vis.sees(b, t, j)) continue;
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

}  // namespace attn_rows

// E = dims per lane, the smallest that holds HD
#define ATTN_ROWS_E(HD, CALL)                                \
    do {                                                     \
        const int e_ = ((HD) + 31) / 32;                     \
        if (e_ <= 1) { constexpr int E = 1; CALL; }          \
        else if (e_ <= 2) { constexpr int E = 2; CALL; }     \
        else if (e_ <= 4) { constexpr int E = 4; CALL; }     \
        else { constexpr int E = 8; CALL; }                  \
    } while (0)

#endif
