// attn.cuh: what the attention kernels share: where a key/value row lives (the cache ring
// for positions before the row's segment, this call's k/v rows for the segment's own), the
// score transform (scale, optional softcap) and the visible range of a query position.
#ifndef G3_CUDA_ATTN_CUH
#define G3_CUDA_ATTN_CUH

#include "common.cuh"

// Row of key position kp of kv head kh, for a segment of slot seq whose first position
// first_pos is the call's row row0.
__device__ __forceinline__ const float *kv_row(const float *cache, const float *fresh, const G3CuAttn &a, int seq, int kh,
                                               int row0, int first_pos, int kp) {
    if (kp < first_pos) return cache + (((long)seq * a.nkv + kh) * a.cap + kp % a.cap) * a.hd;
    return fresh + ((long)(row0 + kp - first_pos) * a.nkv + kh) * a.hd;
}

// The CPU's masked(): scale first, then the softcap.
__device__ __forceinline__ float score_of(float dot, const G3CuAttn &a) {
    float s = dot * a.scale;
    return a.softcap > 0 ? tanhf(s / a.softcap) * a.softcap : s;
}

// First visible key of a query at position p (the last is p itself).
__device__ __forceinline__ int first_key(int p, const G3CuAttn &a) { return a.window > 0 ? max(0, p - a.window + 1) : 0; }

int g3cu_attn_check(const G3CuAttn *a, const char *what);

// Training's batch attention (attn_train.cu, attn_mma_train.cu): B sequences of T rows from
// position 0, q [B*T][NH*HD], k/v [B*T][NKV*HD], lse and D [B][NH][T].
struct G3CuTrainAttn {
    int B, T, NH, NKV, HD, window;
    float scale, softcap;
};
__device__ __forceinline__ float cap_of(float s, const G3CuTrainAttn &a) { return a.softcap > 0 ? tanhf(s / a.softcap) * a.softcap : s; }
// first key row t sees (the last is t itself)
__device__ __forceinline__ int lo_of(int t, const G3CuTrainAttn &a) { return a.window > 0 ? max(0, t - a.window + 1) : 0; }

#endif
