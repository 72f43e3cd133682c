// attn_prefill.cu: attention of one segment of many query rows (prefill), tiled as flash
// attention: a block takes BQ query rows of one head, walks the keys they can see in tiles
// of BK (only the band the block's rows see: causal, and inside the window on sliding
// layers), and keeps an online softmax per row in registers, so the scores never reach
// device memory. Tiles of Q, K and V sit in shared memory (K rows padded by one float so
// that 32 lanes reading 32 different keys hit 32 banks); a lane owns one key of the tile for
// the scores and 1/32 of the head dimension for the output. Keys before the segment come
// from the cache ring, the segment's own from this call's k/v rows (attn.cuh), so the cache
// is appended after this (kv_cache.cu). The arithmetic is f32 on the CUDA cores: exact mode
// first; a tensor-core (bf16 mma) variant for the fast mode is the next step (see
// docs/gpu-notes.md). The optional softcap (Gemma 2) applies to the scores as on the CPU.
#include <math.h>

#include "attn.cuh"

enum { BQ = 16, BK = 32, PT = 256, RPW = BQ / (PT / 32), MAXPER = 8 };

__global__ void __launch_bounds__(PT) attn_prefill_k(float *__restrict__ out, const float *__restrict__ q, const float *__restrict__ k,
                                                    const float *__restrict__ v, const float *__restrict__ kc,
                                                    const float *__restrict__ vc, int row0, int n, int seq, int pos0, G3CuAttn a,
                                                    float *__restrict__ lse) {
    extern __shared__ float smem[];
    const int hd = a.hd, per = hd / 32;
    float *Qs = smem;              // [BQ][hd]
    float *Ks = Qs + BQ * hd;      // [BK][hd + 1]
    float *Vs = Ks + BK * (hd + 1);  // [BK][hd]
    const int i0 = blockIdx.x * BQ, h = blockIdx.y, kh = h / (a.nh / a.nkv);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int nrows = min(BQ, n - i0);
    for (int idx = threadIdx.x; idx < BQ * hd; idx += PT) {
        const int i = idx / hd, d = idx % hd;
        Qs[idx] = i < nrows ? q[((long)(row0 + i0 + i) * a.nh + h) * hd + d] : 0.f;
    }
    const int klo = first_key(pos0 + i0, a), khi = pos0 + i0 + nrows - 1;
    float mx[RPW], l[RPW], acc[RPW][MAXPER];
#pragma unroll
    for (int rr = 0; rr < RPW; rr++) {
        mx[rr] = -INFINITY;
        l[rr] = 0.f;
#pragma unroll
        for (int e = 0; e < MAXPER; e++) acc[rr][e] = 0.f;
    }
    for (int kb = klo; kb <= khi; kb += BK) {
        __syncthreads();  // the previous tile is consumed (and, the first time, Qs is written)
        for (int idx = threadIdx.x; idx < BK * hd; idx += PT) {
            const int j = idx / hd, d = idx % hd, kp = kb + j;
            float kv = 0.f, vv = 0.f;  // zeros past the band: masked, but never NaN times 0
            if (kp <= khi) {
                kv = kv_row(kc, k, a, seq, kh, row0, pos0, kp)[d];
                vv = kv_row(vc, v, a, seq, kh, row0, pos0, kp)[d];
            }
            Ks[j * (hd + 1) + d] = kv;
            Vs[j * hd + d] = vv;
        }
        __syncthreads();
        float s[RPW], pr[RPW];
#pragma unroll
        for (int rr = 0; rr < RPW; rr++) s[rr] = 0.f;
        const float *kr = Ks + lane * (hd + 1);
        for (int d = 0; d < hd; d++) {
            const float kd = kr[d];
#pragma unroll
            for (int rr = 0; rr < RPW; rr++) s[rr] = fmaf(Qs[(warp * RPW + rr) * hd + d], kd, s[rr]);
        }
        const int kp = kb + lane;
#pragma unroll
        for (int rr = 0; rr < RPW; rr++) {
            const int i = warp * RPW + rr, pq = pos0 + i0 + i;
            const bool vis = i < nrows && kp <= pq && kp >= first_key(pq, a);
            const float sc = vis ? score_of(s[rr], a) : -INFINITY;
            const float mn = fmaxf(mx[rr], warp_max(sc));
            float corr = 1.f, pe = 0.f;
            if (mn > -INFINITY) {
                corr = expf(mx[rr] - mn);
                pe = vis ? expf(sc - mn) : 0.f;
            }
            mx[rr] = mn;
            l[rr] = l[rr] * corr + warp_sum(pe);
#pragma unroll
            for (int e = 0; e < MAXPER; e++) acc[rr][e] *= corr;
            pr[rr] = pe;
        }
        for (int j = 0; j < BK; j++) {
            float vj[MAXPER];
#pragma unroll
            for (int e = 0; e < MAXPER; e++) vj[e] = e < per ? Vs[j * hd + lane + 32 * e] : 0.f;
#pragma unroll
            for (int rr = 0; rr < RPW; rr++) {
                const float pj = __shfl_sync(0xffffffffu, pr[rr], j);
#pragma unroll
                for (int e = 0; e < MAXPER; e++) acc[rr][e] = fmaf(pj, vj[e], acc[rr][e]);
            }
        }
    }
#pragma unroll
    for (int rr = 0; rr < RPW; rr++) {
        const int i = warp * RPW + rr;
        if (i >= nrows) continue;
        float *o = out + ((long)(row0 + i0 + i) * a.nh + h) * hd;
#pragma unroll
        for (int e = 0; e < MAXPER; e++)
            if (e < per) o[lane + 32 * e] = acc[rr][e] / l[rr];
        if (lse && lane == 0) lse[(long)h * n + i0 + i] = mx[rr] + logf(l[rr]);  // training keeps it for backward
    }
}

extern "C" int g3cu_attn_prefill(G3Cuda *cu, float *out, const float *q, const float *k, const float *v, const float *kc,
                                 const float *vc, int row0, int n, int seq, int pos0, const G3CuAttn *a) {
    return g3cu_attn_prefill_lse(cu, out, NULL, q, k, v, kc, vc, row0, n, seq, pos0, a);
}

extern "C" int g3cu_attn_prefill_lse(G3Cuda *cu, float *out, float *lse, const float *q, const float *k, const float *v,
                                     const float *kc, const float *vc, int row0, int n, int seq, int pos0, const G3CuAttn *a) {
    if (g3cu_attn_check(a, "attention (prefill)")) return -1;
    if (n < 1 || row0 < 0 || seq < 0 || pos0 < 0)
        return g3_errorf("cuda attention (prefill): bad segment (row %d, %d rows, slot %d, position %d)", row0, n, seq, pos0);
    const size_t shm = (size_t)(BQ * a->hd + BK * (a->hd + 1) + BK * a->hd) * sizeof(float);
    if (g3cu_check(cudaFuncSetAttribute(attn_prefill_k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shm),
                   "attention (prefill) shared memory"))
        return -1;
    attn_prefill_k<<<dim3((n + BQ - 1) / BQ, a->nh), PT, shm, cu->stream>>>(out, q, k, v, kc, vc, row0, n, seq, pos0, *a, lse);
    return g3cu_launched("attention (prefill)");
}
