// attn_mma.cu: the prefill attention of attn_prefill.cu on the bf16 tensor cores, for the fast
// mode (inference's G3_MM_FAST): flash attention as FlashAttention-2 lays it out. A block of 4
// warps takes 64 query rows of one head (16 per warp) and walks the keys they can see in tiles
// of 64. Q, K and V are rounded to bf16 as they are staged into shared memory, all row major
// (V's fragments for P V come transposed by ldmatrix); S = Q K^T and O += P V are mma.sync m16n8k16
// products with f32 accumulation; the online softmax runs on the f32 scores in registers,
// and P goes from the accumulator layout of S to the operand layout of P V without leaving
// the registers (the two layouts coincide for two adjacent 8-key tiles). The exact mode keeps
// the f32 kernel: rounding q and k to bf16 moves scores by ~1e-3 relative, within the fast
// mode's tolerance, not the exact mode's.

#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>

#include "attn.cuh"
#include "mma.cuh"

namespace {

enum { MQ = 64, MK = 64, MW = 4, MT = MW * 32 };  // query rows per block (16 per warp), keys per tile

template <int HD>
constexpr size_t smem_bytes() {
    return ((size_t)MQ * (HD + 8) + 2 * (size_t)MK * (HD + 8)) * sizeof(__nv_bfloat16);
}

// One row pair's online-softmax step over a tile's scores s[nt][e] (e 0-1: row g, 2-3: row
// g + 8), masked already; rescales the row's output accumulators.
template <int HD>
__device__ __forceinline__ void softmax_step(float (&s)[MK / 8][4], float (&o)[HD / 8][4], float m[2], float l[2]) {
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float tm = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < MK / 8; nt++) tm = fmaxf(tm, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
        const float mn = fmaxf(m[r], quad_max(tm));
        float corr = 1.f, sum = 0.f;
        if (mn > -INFINITY) {
            corr = __expf(m[r] - mn);  // 0 on the first visible tile (m = -inf)
#pragma unroll
            for (int nt = 0; nt < MK / 8; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const float p = __expf(s[nt][2 * r + e] - mn);  // masked: exp(-inf) = 0
                    s[nt][2 * r + e] = p;
                    sum += p;
                }
        } else {
#pragma unroll
            for (int nt = 0; nt < MK / 8; nt++) s[nt][2 * r] = s[nt][2 * r + 1] = 0.f;
        }
        m[r] = mn;
        l[r] = l[r] * corr + sum;  // this lane's share; the quad's shares are added at the end
#pragma unroll
        for (int nd = 0; nd < HD / 8; nd++) {
            o[nd][2 * r] *= corr;
            o[nd][2 * r + 1] *= corr;
        }
    }
}

template <int HD>
__global__ void __launch_bounds__(MT) attn_mma_k(float *__restrict__ out, float *__restrict__ lse, const float *__restrict__ q,
                                                 const float *__restrict__ k, const float *__restrict__ v,
                                                 const float *__restrict__ kc, const float *__restrict__ vc, int row0, int n,
                                                 int seq, int pos0, G3CuAttn a) {
    constexpr int QS = HD + 8;  // padded stride: fragment loads (and ldmatrix rows) hit distinct banks
    extern __shared__ __align__(16) unsigned char smem_raw[];
    __nv_bfloat16 *Qs = reinterpret_cast<__nv_bfloat16 *>(smem_raw);  // [MQ][QS]
    __nv_bfloat16 *Ks = Qs + MQ * QS;                                   // [MK][QS]
    __nv_bfloat16 *Vs = Ks + MK * QS;                                   // [MK][QS]
    // blockIdx.z: the sequence of a batch (training's forward, one launch for all B: a launch
    // per sequence filled 96 of 132 SMs with blocks of very unequal work); 0 for one segment
    row0 += blockIdx.z * n;
    seq += blockIdx.z;
    if (lse) lse += (long)blockIdx.z * a.nh * n;
    // the last query rows first: under the causal band they see the most keys, so the blocks
    // that take longest start first and the short ones fill in behind them
    const int i0 = (gridDim.x - 1 - blockIdx.x) * MQ, h = blockIdx.y, kh = h / (a.nh / a.nkv);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int nrows = min(MQ, n - i0);

    for (int idx = threadIdx.x; idx < MQ * HD / 4; idx += MT) {
        const int i = idx / (HD / 4), d = idx % (HD / 4) * 4;
        float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
        if (i < nrows) x = *reinterpret_cast<const float4 *>(q + ((long)(row0 + i0 + i) * a.nh + h) * HD + d);
        uint32_t *dst = reinterpret_cast<uint32_t *>(Qs + i * QS + d);
        dst[0] = pack_bf16(x.x, x.y);
        dst[1] = pack_bf16(x.z, x.w);
    }

    const int khi = pos0 + i0 + nrows - 1, klo = first_key(pos0 + i0, a);
    const int wr = warp * 16;                          // the warp's first row in the block
    const int p0 = pos0 + i0 + wr + g, p1 = p0 + 8;    // positions of this lane's two rows
    const bool v0 = wr + g < nrows, v1 = wr + g + 8 < nrows;
    const int f0 = first_key(p0, a), f1 = first_key(p1, a);
    const int wlo = pos0 + i0 + wr, whi = min(wlo + 15, khi);  // the warp's positions
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    float o[HD / 8][4];
#pragma unroll
    for (int nd = 0; nd < HD / 8; nd++) o[nd][0] = o[nd][1] = o[nd][2] = o[nd][3] = 0.f;

    for (int kb = klo; kb <= khi; kb += MK) {
        __syncthreads();  // the previous tile is consumed (and, the first time, Qs is written)
        for (int idx = threadIdx.x; idx < MK * HD / 4; idx += MT) {
            const int j = idx / (HD / 4), d = idx % (HD / 4) * 4, kp = kb + j;
            float4 kx = make_float4(0.f, 0.f, 0.f, 0.f), vx = kx;  // zeros past the band: masked, never NaN x 0
            if (kp <= khi) {
                kx = *reinterpret_cast<const float4 *>(kv_row(kc, k, a, seq, kh, row0, pos0, kp) + d);
                vx = *reinterpret_cast<const float4 *>(kv_row(vc, v, a, seq, kh, row0, pos0, kp) + d);
            }
            uint32_t *kd = reinterpret_cast<uint32_t *>(Ks + j * QS + d), *vd = reinterpret_cast<uint32_t *>(Vs + j * QS + d);
            kd[0] = pack_bf16(kx.x, kx.y);
            kd[1] = pack_bf16(kx.z, kx.w);
            vd[0] = pack_bf16(vx.x, vx.y);
            vd[1] = pack_bf16(vx.z, vx.w);
        }
        __syncthreads();
        // a warp whose rows see no key of this tile (causal start, window end) skips it
        if (wr >= nrows || kb > whi || kb + MK - 1 < first_key(wlo, a)) continue;

        float s[MK / 8][4];
#pragma unroll
        for (int nt = 0; nt < MK / 8; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
        for (int ks = 0; ks < HD / 16; ks++) {
            const __nv_bfloat16 *qa = Qs + (wr + g) * QS + ks * 16 + 2 * t;
            const uint32_t af[4] = {ld32(qa), ld32(qa + 8 * QS), ld32(qa + 8), ld32(qa + 8 * QS + 8)};
#pragma unroll
            for (int nt = 0; nt < MK / 8; nt++) {
                const __nv_bfloat16 *kr = Ks + (nt * 8 + g) * QS + ks * 16 + 2 * t;
                mma16816(s[nt], af, ld32(kr), ld32(kr + 8));
            }
        }
#pragma unroll
        for (int nt = 0; nt < MK / 8; nt++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int kp = kb + nt * 8 + 2 * t + e;
                s[nt][e] = v0 && kp <= p0 && kp >= f0 ? score_of(s[nt][e], a) : -INFINITY;
                s[nt][2 + e] = v1 && kp <= p1 && kp >= f1 ? score_of(s[nt][2 + e], a) : -INFINITY;
            }
        softmax_step<HD>(s, o, m, l);
#pragma unroll
        for (int kk = 0; kk < MK / 16; kk++) {
            const uint32_t pf[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                                    pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                    pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int nd = 0; nd < HD / 8; nd += 2) {
                uint32_t vb[4];
                ldsm_b_pair(vb, Vs, QS, kk * 16, nd * 8, lane);
                mma16816(o[nd], pf, vb[0], vb[1]);
                mma16816(o[nd + 1], pf, vb[2], vb[3]);
            }
        }
    }

#pragma unroll
    for (int r = 0; r < 2; r++) {
        const float lt = quad_sum(l[r]);
        const int i = wr + g + 8 * r;
        if (i >= nrows) continue;
        float *orow = out + ((long)(row0 + i0 + i) * a.nh + h) * HD + 2 * t;
        const float inv = 1.f / lt;
#pragma unroll
        for (int nd = 0; nd < HD / 8; nd++)
            *reinterpret_cast<float2 *>(orow + nd * 8) = make_float2(o[nd][2 * r] * inv, o[nd][2 * r + 1] * inv);
        if (lse && t == 0) lse[(long)h * n + i0 + i] = m[r] + logf(lt);
    }
}

template <int HD>
int launch(G3Cuda *cu, float *out, float *lse, const float *q, const float *k, const float *v, const float *kc, const float *vc,
           int row0, int n, int seq, int pos0, const G3CuAttn *a, int nb) {
    const size_t shm = smem_bytes<HD>();
    if (g3cu_check(cudaFuncSetAttribute(attn_mma_k<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shm),
                   "attention (tensor-core prefill) shared memory"))
        return -1;
    attn_mma_k<HD><<<dim3((n + MQ - 1) / MQ, a->nh, nb), MT, shm, cu->stream>>>(out, lse, q, k, v, kc, vc, row0, n, seq, pos0, *a);
    return g3cu_launched("attention (tensor-core prefill)");
}

}  // namespace

extern "C" int g3cu_attn_mma_supported(int hd) { return hd == 64 || hd == 128 || hd == 256; }

extern "C" int g3cu_attn_prefill_mma(G3Cuda *cu, float *out, float *lse, const float *q, const float *k, const float *v,
                                     const float *kc, const float *vc, int row0, int n, int seq, int pos0, const G3CuAttn *a) {
    if (g3cu_attn_check(a, "attention (tensor-core prefill)")) return -1;
    if (n < 1 || row0 < 0 || seq < 0 || pos0 < 0)
        return g3_errorf("cuda attention (tensor-core prefill): bad segment (row %d, %d rows, slot %d, position %d)", row0, n,
                         seq, pos0);
    switch (a->hd) {
    case 64: return launch<64>(cu, out, lse, q, k, v, kc, vc, row0, n, seq, pos0, a, 1);
    case 128: return launch<128>(cu, out, lse, q, k, v, kc, vc, row0, n, seq, pos0, a, 1);
    case 256: return launch<256>(cu, out, lse, q, k, v, kc, vc, row0, n, seq, pos0, a, 1);
    default: return g3_errorf("cuda attention (tensor-core prefill): head dim %d (64, 128 or 256)", a->hd);
    }
}

extern "C" int g3cu_attn_prefill_mma_batch(G3Cuda *cu, float *out, float *lse, const float *q, const float *k, const float *v, int B,
                                           int n, const G3CuAttn *a) {
    if (g3cu_attn_check(a, "attention (tensor-core prefill)")) return -1;
    if (B < 1 || n < 1 || B > 65535) return g3_errorf("cuda attention (tensor-core prefill): bad batch (%d sequences of %d rows)", B, n);
    switch (a->hd) {
    case 64: return launch<64>(cu, out, lse, q, k, v, NULL, NULL, 0, n, 0, 0, a, B);
    case 128: return launch<128>(cu, out, lse, q, k, v, NULL, NULL, 0, n, 0, 0, a, B);
    case 256: return launch<256>(cu, out, lse, q, k, v, NULL, NULL, 0, n, 0, 0, a, B);
    default: return g3_errorf("cuda attention (tensor-core prefill): head dim %d (64, 128 or 256)", a->hd);
    }
}
