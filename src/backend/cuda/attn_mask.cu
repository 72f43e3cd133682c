// attn_mask.cu: batch attention under a block mask (backend.h's attention_masked and
// attention_masked_backward, G3AttnMask): packed examples (`train --pack`: each row's
// segments attend within themselves, positions restarting) and Set Block Decoding's layout
// ([clean ; noisy copy]). The mask is not a band, so every query row walks all T keys and
// skips those it does not see; a warp takes one query row (forward, dq) or one key row (dk,
// dv), a lane owns dimensions lane, lane + 32, ...: attn_train.cu's simple kernels with the
// mask test in place of the causal range, and its formulas:
//   forward:  s_j = cap(q . k_j * scale), p_j = exp(s_j - lse), out = sum p_j v_j
//   backward: dp_j = dout . v_j, D = sum_j p_j dp_j, ds_j = p_j (dp_j - D) cap'(s_j) scale,
//             dq = sum_j ds_j k_j, dk_j = sum over the rows that see j of ds_j q, dv_j = ... p_j dout
// D is recomputed from the scores (the masked backward is not given the forward's out). No
// atomics: dk and dv are summed by the key row's own warp, so the result does not depend on
// scheduling. Correct and simple, not fast: T^2 work per (sequence, head) whatever the mask
// (the CPU's masked attention does the same square).
#include <math.h>

#include "common.cuh"

extern "C" {
#include "../backend.h"
}

namespace {

enum { MAXE = 8, WPB = 8 };  // dims per lane (HD <= 256), warps per block

struct Shape {
    int B, T, NH, NKV, HD, window;
    float scale, softcap;
};

// backend.h's g3_attn_mask_sees over device arrays: rows q, k of sequence b
__device__ __forceinline__ bool sees(const G3CuMask &m, int b, int q, int k, int window) {
    const long o = (long)b * m.stride;
    if (m.seg && m.seg[o + q] != m.seg[o + k]) return false;
    const int pq = m.pos[o + q], pk = m.pos[o + k];
    if (window > 0 && pq - pk >= window) return false;
    if (!m.noisy || !m.noisy[o + q]) return (!m.noisy || !m.noisy[o + k]) && pk <= pq;
    return m.noisy[o + k] ? m.block[o + k] == m.block[o + q] : m.block[o + k] < m.block[o + q];
}

__device__ __forceinline__ float cap_of(float s, const Shape &a) { return a.softcap > 0 ? tanhf(s / a.softcap) * a.softcap : s; }

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
__global__ void __launch_bounds__(WPB * 32) mask_fwd_k(float *__restrict__ out, float *__restrict__ lse, const float *__restrict__ q,
                                                      const float *__restrict__ k, const float *__restrict__ v, G3CuMask m, Shape a) {
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
    for (int j = 0; j < a.T; j++) {
        if (!sees(m, b, t, j, a.window)) continue;  // the same for every lane: the warp stays converged
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
        if (d < hd) o[d] = acc[e] / l;  // every row sees itself: l > 0
    }
    if (lane == 0) lse[((long)b * a.NH + h) * a.T + t] = mx + logf(l);
}

// one warp per query row: D = sum_j p_j dp_j (kept for dk/dv), then dq
template <int E>
__global__ void __launch_bounds__(WPB * 32) mask_dq_k(float *__restrict__ dq, float *__restrict__ Dv, const float *__restrict__ dout,
                                                     const float *__restrict__ q, const float *__restrict__ k,
                                                     const float *__restrict__ v, const float *__restrict__ lse, G3CuMask m, Shape a) {
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
    for (int j = 0; j < a.T; j++) {
        if (!sees(m, b, t, j, a.window)) continue;
        const float p = expf(cap_of(dot_row<E>(qv, kb + j * KD, hd, lane) * a.scale, a) - L);
        D += (double)p * dot_row<E>(dov, vb + j * KD, hd, lane);
    }
    const float Df = (float)D;
    if (lane == 0) Dv[((long)b * a.NH + h) * a.T + t] = Df;
#pragma unroll
    for (int e = 0; e < E; e++) acc[e] = 0.f;
    for (int j = 0; j < a.T; j++) {
        if (!sees(m, b, t, j, a.window)) continue;
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
__global__ void __launch_bounds__(WPB * 32) mask_dkv_k(float *__restrict__ dk, float *__restrict__ dv, const float *__restrict__ Dv,
                                                      const float *__restrict__ dout, const float *__restrict__ q,
                                                      const float *__restrict__ k, const float *__restrict__ v,
                                                      const float *__restrict__ lse, G3CuMask m, Shape a) {
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
        for (int t = 0; t < a.T; t++) {
            if (!sees(m, b, t, j, a.window)) continue;
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

int check(const Shape &a, const G3CuMask *m, const char *what) {
    if (a.B < 1 || a.T < 1 || a.NH < 1 || a.NKV < 1 || a.NH % a.NKV || a.HD < 1 || a.HD > 32 * MAXE)
        return g3_errorf("cuda %s: unsupported shape B %d T %d heads %d/%d head_dim %d (at most %d)", what, a.B, a.T, a.NH, a.NKV,
                         a.HD, 32 * MAXE);
    if (!m->pos || (m->noisy && !m->block) || (m->stride != 0 && m->stride != a.T))
        return g3_errorf("cuda %s: a mask needs positions (and blocks with noisy rows), stride 0 or T", what);
    return 0;
}

#define DISPATCH_E(HD, CALL)                                 \
    do {                                                     \
        const int e_ = ((HD) + 31) / 32;                     \
        if (e_ <= 1) { constexpr int E = 1; CALL; }          \
        else if (e_ <= 2) { constexpr int E = 2; CALL; }     \
        else if (e_ <= 4) { constexpr int E = 4; CALL; }     \
        else { constexpr int E = 8; CALL; }                  \
    } while (0)

}  // namespace

extern "C" int g3cu_attention_masked(G3Cuda *cu, float *out, float *lse, const float *q, const float *k, const float *v,
                                     const G3CuMask *m, int B, int T, int NH, int NKV, int HD, int window, float scale,
                                     float softcap) {
    const Shape a = {B, T, NH, NKV, HD, window, scale, softcap};
    if (check(a, m, "masked attention")) return -1;
    const long rows = (long)B * NH * T;
    DISPATCH_E(HD, (mask_fwd_k<E><<<(unsigned)((rows + WPB - 1) / WPB), WPB * 32, 0, cu->stream>>>(out, lse, q, k, v, *m, a)));
    return g3cu_launched("masked attention");
}

extern "C" int g3cu_attention_masked_backward(G3Cuda *cu, float *dq, float *dk, float *dv, const float *dout, const float *q,
                                              const float *k, const float *v, const float *lse, const G3CuMask *m, int B, int T,
                                              int NH, int NKV, int HD, int window, float scale, float softcap) {
    const Shape a = {B, T, NH, NKV, HD, window, scale, softcap};
    if (check(a, m, "masked attention backward")) return -1;
    const long rows = (long)B * NH * T, krows = (long)B * NKV * T;
    float *D = (float *)g3cu_scratch(cu, (size_t)rows * sizeof(float));
    if (!D) return -1;
    DISPATCH_E(HD, (mask_dq_k<E><<<(unsigned)((rows + WPB - 1) / WPB), WPB * 32, 0, cu->stream>>>(dq, D, dout, q, k, v, lse, *m, a)));
    if (g3cu_launched("masked attention backward (dq)")) return -1;
    DISPATCH_E(HD, (mask_dkv_k<E><<<(unsigned)((krows + WPB - 1) / WPB), WPB * 32, 0, cu->stream>>>(dk, dv, D, dout, q, k, v, lse, *m, a)));
    return g3cu_launched("masked attention backward (dk, dv)");
}
