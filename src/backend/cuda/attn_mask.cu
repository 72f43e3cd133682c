// attn_mask.cu: batch attention under a block mask (backend.h's attention_masked and
// attention_masked_backward, G3AttnMask): packed examples (`train --pack`: each row's
// segments attend within themselves, positions restarting) and Set Block Decoding's layout
// ([clean ; noisy copy]). attn_rows.cuh's warp-per-row kernels with the mask as the
// visibility rule: the mask is not a band, so every query row walks all T keys and skips those
// it does not see. D is recomputed from the scores (the masked backward is not given the
// forward's out). Correct and simple, not fast: T^2 work per (sequence, head) whatever the
// mask (the CPU's masked attention does the same square).
#include <math.h>

#include "attn_rows.cuh"

extern "C" {
#include "../backend.h"
}

namespace {

using attn_rows::MAXE;
using attn_rows::WPB;

typedef G3CuTrainAttn Shape;

// backend.h's g3_attn_mask_sees over device arrays: rows q, k of sequence b; every row walks
// all T keys (and every key all T queries) and skips those it does not see
struct Masked {
    G3CuMask m;
    int T, window;
    __device__ int lo(int) const { return 0; }
    __device__ int hi(int) const { return T - 1; }
    __device__ int qlo(int) const { return 0; }
    __device__ int qhi(int) const { return T - 1; }
    __device__ bool sees(int b, int q, int k) const {
        const long o = (long)b * m.stride;
        if (m.seg && m.seg[o + q] != m.seg[o + k]) return false;
        const int pq = m.pos[o + q], pk = m.pos[o + k];
        if (window > 0 && pq - pk >= window) return false;
        if (!m.noisy || !m.noisy[o + q]) return (!m.noisy || !m.noisy[o + k]) && pk <= pq;
        return m.noisy[o + k] ? m.block[o + k] == m.block[o + q] : m.block[o + k] < m.block[o + q];
    }
};

int check(const Shape &a, const G3CuMask *m, const char *what) {
    if (a.B < 1 || a.T < 1 || a.NH < 1 || a.NKV < 1 || a.NH % a.NKV || a.HD < 1 || a.HD > 32 * MAXE)
        return g3_errorf("cuda %s: unsupported shape B %d T %d heads %d/%d head_dim %d (at most %d)", what, a.B, a.T, a.NH, a.NKV,
                         a.HD, 32 * MAXE);
    if (!m->pos || (m->noisy && !m->block) || (m->stride != 0 && m->stride != a.T))
        return g3_errorf("cuda %s: a mask needs positions (and blocks with noisy rows), stride 0 or T", what);
    return 0;
}

}  // namespace

extern "C" int g3cu_attention_masked(G3Cuda *cu, float *out, float *lse, const float *q, const float *k, const float *v,
                                     const G3CuMask *m, int B, int T, int NH, int NKV, int HD, int window, float scale,
                                     float softcap) {
    const Shape a = {B, T, NH, NKV, HD, window, scale, softcap};
    if (check(a, m, "masked attention")) return -1;
    const long rows = (long)B * NH * T;
    const Masked vis = {*m, T, window};
    ATTN_ROWS_E(HD, (attn_rows::rows_fwd_k<E><<<(unsigned)((rows + WPB - 1) / WPB), WPB * 32, 0, cu->stream>>>(out, lse, q, k, v, vis, a)));
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
    const Masked vis = {*m, T, window};
    ATTN_ROWS_E(HD, (attn_rows::rows_dq_k<E><<<(unsigned)((rows + WPB - 1) / WPB), WPB * 32, 0, cu->stream>>>(dq, D, dout, q, k, v, lse, vis, a)));
    if (g3cu_launched("masked attention backward (dq)")) return -1;
    ATTN_ROWS_E(HD, (attn_rows::rows_dkv_k<E><<<(unsigned)((krows + WPB - 1) / WPB), WPB * 32, 0, cu->stream>>>(dk, dv, D, dout, q, k, v, lse, vis, a)));
    return g3cu_launched("masked attention backward (dk, dv)");
}
